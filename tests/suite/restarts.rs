//! Exact across restarts: the real exporter binary, polling
//! an in-process simulator on the system clock through the real SDK, is stopped, killed and
//! restarted, with and without `--storage.path`, and every accounting counter is compared with the
//! ground truth computed from the simulator's timeline.
//!
//! Ground truth . T0 is the start of the exporter's first successful poll of the
//! portal (with storage, `t0_ms` of the state file, kept across restarts); P is the start of the
//! last successful poll (`last_successful_poll_timestamp_seconds`, exact to the millisecond).
//! Then, over the sessions the simulator lists at P:
//! - started: sessions with `startTime >= T0` (sessions running at T0 are the baseline);
//! - terminated: sessions with `endTime >= T0`; the histogram observes their `endTime - startTime`;
//! - session seconds: per session the length of `[max(start, T0), min(end, P)]`, when positive;
//! - per user: the same per username.
//!
//! To make the comparison exact the tests quiesce first: no session starts or ends after a time E
//! (every event is scheduled at or after the moment it is made, never in the past, so no poll has
//! seen a state that a later event contradicts), then they wait for a poll that started more than
//! [`QUIET_MS`] after E, and compare what that poll published.
//!
//! Synchronisation is on `/-/ready`, on the published metrics and on process exits; sleeps only
//! let scheduled session events happen (or make a process live for a chosen time in the chaos
//! test). Every wait is bounded.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::common::poll_until;
use crate::restart_harness::*;
use workspacesweb_exporter::clock::now_ms;
use workspacesweb_sim::PortalSpec;

#[test]
fn stateless_restart_counts_only_sessions_started_after_t0() {
    const PORTAL: &str = "cccccccc-0000-4000-8000-000000000001";
    let began = Instant::now();
    let now = now_ms();
    let sim = start_sim(vec![PortalSpec::scripted(
        PORTAL,
        baseline(
            now,
            &[
                ("alice", 100 * S),
                ("bob", 400 * S),
                ("carol", 1000 * S),
                ("dave", 2000 * S),
                ("alice", 4000 * S),
                ("erin", 8000 * S),
            ],
        ),
    )]);
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(dir.path(), &sim.endpoint, &[PORTAL], FAST, true, "");
    let s = &sim.sim;

    // First process: two sessions start after its T0, one of them ends, one baseline ends.
    let mut a = Exporter::start(&config, None);
    a.wait_ready();
    let first = a.metrics();
    assert_eq!(
        first.portal(STARTED, PORTAL),
        Some(0.0),
        "six sessions running at T0 are the baseline, not starts:\n{}",
        first.dump()
    );
    add(s, PORTAL, 100, "frank", soon());
    add(s, PORTAL, 101, "alice", soon());
    let mut last = end(s, PORTAL, 101, soon() + 300);
    last = last.max(end(s, PORTAL, 0, soon()));
    sleep_past(last);
    let m = a.wait_poll_after(PORTAL, last + QUIET_MS);
    let o = m.observed(PORTAL);
    assert_eq!((o.started, o.terminated), (2, 2), "{}", m.dump());
    a.stop();

    // Downtime: session 100 ends, 102 starts and ends, 103 and 104 start and keep running.
    let mut last = end(s, PORTAL, 100, soon());
    last = last.max(short(s, PORTAL, 102, "bob", soon(), 200));
    last = last.max(add(s, PORTAL, 103, "carol", soon()));
    last = last.max(add(s, PORTAL, 104, "gina", soon()));
    sleep_past(last);

    // Second process, without storage: its own T0 lies between its spawn and its readiness, and
    // no session event happens in between, so the counts do not depend on where exactly.
    let spawned = now_ms();
    let mut b = Exporter::start(&config, None);
    b.wait_ready();
    let ready = now_ms();
    let m = b.metrics();
    let o = m.observed(PORTAL);
    assert_eq!(
        (o.started, o.terminated, o.count),
        (0, 0, 0),
        "nothing started or ended since the second process's T0 (7 sessions running at T0 are its baseline):\n{}",
        m.dump()
    );
    assert!(o.user_started.is_empty(), "{:?}", o.user_started);
    assert_eq!(
        m.portal("workspacesweb_active_sessions", PORTAL),
        Some(7.0),
        "the baseline is still active"
    );

    // After its T0: 105 and 106 start (106 ends); 103 (started in the downtime) and baseline 1 end.
    add(s, PORTAL, 105, "alice", soon());
    let mut last = short(s, PORTAL, 106, "gina", soon(), 250);
    last = last.max(end(s, PORTAL, 103, soon()));
    last = last.max(end(s, PORTAL, 1, soon()));
    sleep_past(last);
    let m = b.wait_poll_after(PORTAL, last + QUIET_MS);
    let o = m.observed(PORTAL);
    let p = m.poll_ms(PORTAL).expect("poll");
    let sessions = s.sessions_at(PORTAL, p);
    let early = truth(&sessions, spawned, p, true);
    let late = truth(&sessions, ready, p, true);
    assert_eq!(
        o.started,
        2,
        "only 105 and 106 started after T0:\n{}",
        m.dump()
    );
    assert_eq!(o.terminated, 3, "106, 103 and baseline 1:\n{}", m.dump());
    // Everything but the session seconds is the same for any T0 in [spawned, ready].
    let mut expected = late.clone();
    expected.session_ms = o.session_ms;
    expected.user_ms = o.user_ms.clone();
    assert_eq!(o, expected, "counters of the second process");
    assert_eq!(
        early.started, late.started,
        "the scenario does not depend on the exact T0"
    );
    assert_eq!(
        o.user_started,
        BTreeMap::from([("alice".to_string(), 1), ("gina".to_string(), 1)]),
    );
    assert!(
        (late.session_ms..=early.session_ms).contains(&o.session_ms),
        "session seconds {} ms, expected within [{}, {}] ms (T0 between spawn {spawned} and ready {ready})",
        o.session_ms,
        late.session_ms,
        early.session_ms
    );
    for (user, ms) in &o.user_ms {
        let lo = late.user_ms.get(user).copied().unwrap_or(0);
        let hi = early.user_ms.get(user).copied().unwrap_or(0);
        assert!(
            (lo..=hi).contains(ms),
            "user {user}: {ms} ms not in [{lo}, {hi}]"
        );
    }
    assert_eq!(
        o.user_ms.keys().collect::<Vec<_>>(),
        late.user_ms.keys().collect::<Vec<_>>()
    );
    b.stop();
    eprintln!("took {:?}", began.elapsed());
}

// ---------------------------------------------------------------------------------------------
// 2. Restart with state
// ---------------------------------------------------------------------------------------------

#[test]
fn restart_with_state_counts_downtime_sessions_exactly_once() {
    const PORTAL: &str = "cccccccc-0000-4000-8000-000000000002";
    let began = Instant::now();
    let now = now_ms();
    let sim = start_sim(vec![PortalSpec::scripted(
        PORTAL,
        baseline(
            now,
            &[
                ("alice", 100 * S),
                ("bob", 400 * S),
                ("carol", 1000 * S),
                ("dave", 2000 * S),
                ("alice", 4000 * S),
                ("bob", 8000 * S),
                ("carol", 20_000 * S),
                ("dave", 50_000 * S),
            ],
        ),
    )]);
    let dir = tempfile::tempdir().expect("tempdir");
    let storage = dir.path().join("state");
    let config = write_config(
        dir.path(),
        &sim.endpoint,
        &[PORTAL],
        FAST,
        true,
        "storage:\n  max_age: 30d\n",
    );
    let s = &sim.sim;

    // First process: 100 starts (and runs into the downtime), 101 starts and ends, 103 starts
    // and runs to the end; baseline 0 ends.
    let mut a = Exporter::start(&config, Some(&storage));
    a.wait_ready();
    let t0 = state_t0(&storage, PORTAL);
    assert_eq!(
        a.metrics().portal(RESTORED, PORTAL),
        Some(0.0),
        "no state to resume at the first start"
    );
    add(s, PORTAL, 100, "erin", soon());
    let mut last = short(s, PORTAL, 101, "alice", soon(), 300);
    last = last.max(add(s, PORTAL, 103, "bob", soon()));
    last = last.max(end(s, PORTAL, 0, soon()));
    sleep_past(last);
    let m = a.wait_poll_after(PORTAL, last + QUIET_MS);
    assert_eq!(
        m.observed(PORTAL),
        truth_at(s, PORTAL, &m, t0, true),
        "first process"
    );
    assert_eq!(m.observed(PORTAL).started, 3, "{}", m.dump());
    let before = m.accounting(PORTAL);
    a.stop();

    // Downtime: 100 (started before it) ends; baseline 1 ends; 104 starts and ends; 105 starts
    // and keeps running (a new user); 106 starts and ends.
    let mut last = end(s, PORTAL, 100, soon());
    last = last.max(end(s, PORTAL, 1, soon() + 50));
    last = last.max(short(s, PORTAL, 104, "carol", soon(), 400));
    last = last.max(add(s, PORTAL, 105, "frank", soon() + 30));
    last = last.max(short(s, PORTAL, 106, "alice", soon() + 60, 150));
    sleep_past(last);
    let downtime_end = now_ms();

    // Second process: resumes from the state.
    let mut b = Exporter::start(&config, Some(&storage));
    b.wait_ready();
    let m = b.metrics();
    assert_eq!(m.portal(RESTORED, PORTAL), Some(1.0), "{}", m.dump());
    assert_eq!(state_t0(&storage, PORTAL), t0, "T0 survives the restart");
    let mut history = History::default();
    history
        .samples
        .extend(before.into_iter().map(|(k, v)| (0, k, v)));
    history.record(1, &m, PORTAL);
    let m = b.wait_poll_after(PORTAL, downtime_end);
    assert_eq!(
        m.observed(PORTAL),
        truth_at(s, PORTAL, &m, t0, true),
        "right after the restart, every downtime session is counted once"
    );
    history.record(1, &m, PORTAL);

    // Life goes on: baseline 2 ends, 107 starts and ends.
    let mut last = end(s, PORTAL, 2, soon());
    last = last.max(short(s, PORTAL, 107, "dave", soon(), 500));
    sleep_past(last);
    let m = b.wait_poll_after(PORTAL, last + QUIET_MS);
    history.record(1, &m, PORTAL);
    let o = m.observed(PORTAL);
    let expected = truth_at(s, PORTAL, &m, t0, true);
    assert_eq!(o, expected, "after the restart, against the timeline");
    // The same, spelled out: 100, 101, 103, 104, 105, 106, 107 started; 0, 101, 100, 1, 104, 106,
    // 2, 107 ended.
    assert_eq!((o.started, o.terminated), (7, 8), "{}", m.dump());
    assert_eq!(
        o.user_started,
        BTreeMap::from([
            ("alice".to_string(), 2),
            ("bob".to_string(), 1),
            ("carol".to_string(), 1),
            ("dave".to_string(), 1),
            ("erin".to_string(), 1),
            ("frank".to_string(), 1),
        ])
    );
    assert!(
        expected.buckets[..4].iter().collect::<BTreeSet<_>>().len() > 1,
        "the histogram has more than one bucket to check: {expected:?}"
    );
    assert_eq!(history.decreases(), Vec::<String>::new());
    b.stop();
    let state = state_json(&storage, PORTAL);
    assert_eq!(state["version"], 2, "{state}");
    assert_eq!(state["portal_id"], PORTAL, "{state}");
    // Session counts and usernames are nobody else's business: 0700 and 0600 (SPEC 9).
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &Path| std::fs::metadata(p).expect("metadata").permissions().mode() & 0o777;
    assert_eq!(mode(&storage), 0o700, "{}", storage.display());
    assert_eq!(mode(&state_path(&storage, PORTAL)), 0o600);
    eprintln!("took {:?}", began.elapsed());
}

// ---------------------------------------------------------------------------------------------
// 3. Chaos: kill -9 at random moments, sessions churning
// ---------------------------------------------------------------------------------------------

#[test]
fn chaos_kill_9_during_churn_keeps_counters_monotonic_and_exact() {
    const PORTAL: &str = "cccccccc-0000-4000-8000-000000000003";
    const USERS: &[&str] = &["ann", "ben", "cat", "dan", "eve"];
    const RESTARTS: usize = 30;
    let began = Instant::now();
    let seed = seed("chaos");
    let mut rng = StdRng::seed_from_u64(seed);
    let now = now_ms();
    let ages = [
        ("ann", 30 * S),
        ("ben", 200 * S),
        ("cat", 700 * S),
        ("dan", 1500 * S),
        ("eve", 3000 * S),
        ("ann", 5000 * S),
        ("ben", 10_000 * S),
        ("cat", 20_000 * S),
        ("dan", 40_000 * S),
        ("eve", 80_000 * S),
    ];
    let sim = start_sim(vec![PortalSpec::scripted(PORTAL, baseline(now, &ages))]);
    let dir = tempfile::tempdir().expect("tempdir");
    let storage = dir.path().join("state");
    let config = write_config(dir.path(), &sim.endpoint, &[PORTAL], FAST, true, "");
    let open = (0..ages.len() as u64)
        .map(|i| (i, now - ages[i as usize].1))
        .collect();
    let churn = Churn::start(&sim.sim, PORTAL, seed ^ 0xC4A0, 1000, USERS, open, 40..200);

    let mut history = History::default();
    let mut never_wrote = 0;
    let mut published = 0;
    for i in 0..RESTARTS {
        // Every fourth process dies young, most likely before its first poll completes.
        let life = if i % 4 == 1 {
            Duration::from_millis(rng.random_range(0..150))
        } else {
            Duration::from_millis(rng.random_range(200..3000))
        };
        let written_before = state_written(&storage, PORTAL);
        let mut e = Exporter::start(&config, Some(&storage));
        let born = Instant::now();
        let mut scrapes = 0;
        while born.elapsed() < life {
            e.assert_running();
            if let Some(m) = e.try_metrics()
                && history.record(i, &m, PORTAL) > 0
            {
                scrapes += 1;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        e.kill9();
        if scrapes > 0 {
            published += 1;
        }
        if state_written(&storage, PORTAL) == written_before {
            never_wrote += 1;
        }
        eprintln!(
            "process {i}: life {life:?}, {scrapes} scrapes with counters{}",
            if state_written(&storage, PORTAL) == written_before {
                ", killed before writing any state"
            } else {
                ""
            }
        );
    }
    let ((added, ended), last) = churn.finish();
    eprintln!(
        "{RESTARTS} kill -9 restarts: {added} sessions added, {ended} ended; {published} processes published counters, {never_wrote} never wrote state"
    );

    // The last process, once quiet.
    let mut e = Exporter::start(&config, Some(&storage));
    e.wait_ready();
    sleep_past(last);
    let m = e.wait_poll_after(PORTAL, last + QUIET_MS);
    history.record(RESTARTS, &m, PORTAL);
    assert_eq!(m.portal(RESTORED, PORTAL), Some(1.0), "{}", m.dump());
    let t0 = state_t0(&storage, PORTAL);
    let o = m.observed(PORTAL);
    let expected = truth_at(&sim.sim, PORTAL, &m, t0, true);
    assert_eq!(
        o, expected,
        "final values against the timeline (seed {seed})"
    );
    assert!(
        expected.started > 20 && expected.terminated > 10,
        "churn was busy enough to mean something: {expected:?}"
    );
    let decreases = history.decreases();
    assert!(
        decreases.is_empty(),
        "counters went down across kill -9 restarts (seed {seed}):\n{}",
        decreases.join("\n")
    );
    assert!(
        published >= RESTARTS / 2,
        "only {published} of {RESTARTS} processes published counters"
    );
    assert!(
        never_wrote >= 1,
        "no process was killed before its first poll completed"
    );
    assert!(
        history.series().len() > 15,
        "the history covers the histogram and per-user series: {:?}",
        history.series()
    );
    assert_eq!(
        corrupt_files(&storage),
        Vec::<String>::new(),
        "kill -9 never leaves a bad state file"
    );
    e.stop();
    eprintln!(
        "{} counter samples, monotonic; took {:?}",
        history.samples.len(),
        began.elapsed()
    );
}

// ---------------------------------------------------------------------------------------------
// 5. Bad state files
// ---------------------------------------------------------------------------------------------

#[test]
fn corrupt_truncated_empty_and_foreign_state_files_are_set_aside() {
    // One portal per kind of bad file, and one whose good state must still resume.
    const GARBAGE: &str = "cccccccc-0000-4000-8000-000000000051";
    const TRUNCATED: &str = "cccccccc-0000-4000-8000-000000000052";
    const EMPTY: &str = "cccccccc-0000-4000-8000-000000000053";
    const VERSION: &str = "cccccccc-0000-4000-8000-000000000054";
    const FOREIGN: &str = "cccccccc-0000-4000-8000-000000000055";
    const GOOD: &str = "cccccccc-0000-4000-8000-000000000056";
    const BAD: [&str; 5] = [GARBAGE, TRUNCATED, EMPTY, VERSION, FOREIGN];
    const ALL: [&str; 6] = [GARBAGE, TRUNCATED, EMPTY, VERSION, FOREIGN, GOOD];
    let began = Instant::now();
    let now = now_ms();
    let sim = start_sim(
        ALL.iter()
            .map(|id| {
                PortalSpec::scripted(*id, baseline(now, &[("ann", 100 * S), ("ben", 5000 * S)]))
            })
            .collect(),
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let storage = dir.path().join("state");
    // Six portals polled at once, every 2 s: room for a loaded machine.
    let config = write_config(
        dir.path(),
        &sim.endpoint,
        &ALL,
        "  interval: 2s\n  timeout: 1500ms\n  concurrency: 6\n",
        true,
        "",
    );

    // A first run leaves a valid state for every portal.
    let mut a = Exporter::start(&config, Some(&storage));
    a.wait_ready();
    a.wait_metrics("a state write of every portal", |m| {
        ALL.iter().all(|id| m.portal(LAST_WRITE, id).is_some())
    });
    a.stop();
    let valid: BTreeMap<&str, Vec<u8>> = ALL
        .iter()
        .map(|id| (*id, std::fs::read(state_path(&storage, id)).expect("state")))
        .collect();
    let old_t0: BTreeMap<&str, i64> = ALL.iter().map(|id| (*id, state_t0(&storage, id))).collect();

    let mut bad: BTreeMap<&str, Vec<u8>> = BTreeMap::new();
    bad.insert(GARBAGE, b"\x00\xffnot json at all {{{\x07".to_vec());
    bad.insert(
        TRUNCATED,
        valid[TRUNCATED][..valid[TRUNCATED].len() / 2].to_vec(),
    );
    bad.insert(EMPTY, Vec::new());
    // A later format: `WSWS`, then a version byte this exporter does not know.
    let mut later = valid[VERSION].clone();
    later[4] = 99;
    bad.insert(VERSION, later);
    bad.insert(FOREIGN, valid[GOOD].clone());
    for (id, bytes) in &bad {
        std::fs::write(state_path(&storage, id), bytes).expect("write bad state");
    }

    let spawned = now_ms();
    let mut b = Exporter::start(&config, Some(&storage));
    b.wait_ready();
    // Every portal polls, is up, and writes a fresh state.
    let m = b.wait_metrics("every portal up with a fresh state write", |m| {
        ALL.iter().all(|id| {
            m.portal(UP, id) == Some(1.0)
                && m.portal(LAST_WRITE, id)
                    .is_some_and(|w| w * 1000.0 > spawned as f64)
        })
    });
    b.assert_running();
    for id in BAD {
        assert_eq!(
            m.portal(RESTORED, id),
            Some(0.0),
            "{id} starts fresh:\n{}",
            m.dump()
        );
    }
    assert_eq!(m.portal(RESTORED, GOOD), Some(1.0), "{}", m.dump());

    let corrupt = corrupt_files(&storage);
    let stderr = b.stderr();
    for id in BAD {
        let kept: Vec<&String> = corrupt
            .iter()
            .filter(|n| n.starts_with(&format!("{id}.state.")))
            .collect();
        assert_eq!(kept.len(), 1, "{id}: one file set aside in {corrupt:?}");
        assert_eq!(
            std::fs::read(storage.join(kept[0])).expect("read .corrupt"),
            bad[id],
            "{id}: the bad file is kept as it was"
        );
        assert!(
            stderr.contains(&format!("{id}.state")),
            "{id}: the log names the file; stderr:\n{stderr}"
        );
        // A fresh state: this portal's, a new T0.
        let state = state_json(&storage, id);
        assert_eq!(state["version"], 2, "{id}: {state}");
        assert_eq!(state["portal_id"], id, "{id}: {state}");
        assert!(
            state_t0(&storage, id) > old_t0[id],
            "{id} starts over with a new T0"
        );
    }
    assert_eq!(corrupt.len(), BAD.len(), "{corrupt:?}");
    assert_eq!(
        state_t0(&storage, GOOD),
        old_t0[GOOD],
        "the good state resumes"
    );
    b.stop();
    eprintln!("took {:?}", began.elapsed());
}

#[test]
fn state_from_incompatible_settings_is_set_aside() {
    const PORTAL: &str = "cccccccc-0000-4000-8000-000000000057";
    let began = Instant::now();
    let sim = start_sim(vec![PortalSpec::scripted(
        PORTAL,
        baseline(now_ms(), &[("ann", 100 * S)]),
    )]);
    let dir = tempfile::tempdir().expect("tempdir");
    let storage = dir.path().join("state");
    // Each run: the settings, whether the state of the run before resumes, and how many files
    // have been set aside after it.
    let runs = [
        (FAST.to_string(), "", None, 0),
        (FAST.to_string(), "", Some(true), 0),
        (
            format!("{FAST}  duration_buckets: [60, 600, 3600]\n"),
            "",
            Some(false),
            1,
        ),
        // Raw usernames are hashed on load: the counters continue (hashed names cannot go back).
        (
            format!("{FAST}  duration_buckets: [60, 600, 3600]\n"),
            "  username: hashed\n  hash_salt: pepper\n",
            Some(true),
            1,
        ),
        (
            format!("{FAST}  duration_buckets: [60, 600, 3600]\n"),
            "  username: hashed\n  hash_salt: salt\n",
            Some(false),
            2,
        ),
        (
            format!("{FAST}  duration_buckets: [60, 600, 3600]\n"),
            "  username: hashed\n  hash_salt: salt\n",
            Some(true),
            2,
        ),
        (
            format!("{FAST}  duration_buckets: [60, 600, 3600]\n"),
            "  username: raw\n",
            Some(false),
            3,
        ),
    ];
    for (i, (global, per_user, resumes, set_aside)) in runs.iter().enumerate() {
        let config = write_config(
            dir.path(),
            &sim.endpoint,
            &[PORTAL],
            global,
            false,
            &format!("per_user:\n  enabled: true\n{per_user}"),
        );
        let spawned = now_ms();
        let mut e = Exporter::start(&config, Some(&storage));
        e.wait_ready();
        let m = e.wait_metrics("a state write", |m| {
            m.portal(LAST_WRITE, PORTAL)
                .is_some_and(|w| w * 1000.0 > spawned as f64)
        });
        if let Some(resumes) = resumes {
            assert_eq!(
                m.portal(RESTORED, PORTAL),
                Some(if *resumes { 1.0 } else { 0.0 }),
                "run {i}: {global}{per_user}"
            );
        }
        assert_eq!(
            corrupt_files(&storage).len(),
            *set_aside,
            "run {i}: {global}{per_user}; stderr:\n{}",
            e.stderr()
        );
        e.stop();
    }
    eprintln!("took {:?}", began.elapsed());
}

#[test]
fn state_older_than_max_age_starts_fresh_and_is_not_set_aside() {
    const PORTAL: &str = "cccccccc-0000-4000-8000-000000000058";
    let began = Instant::now();
    let sim = start_sim(vec![PortalSpec::scripted(
        PORTAL,
        baseline(now_ms(), &[("ann", 100 * S)]),
    )]);
    let dir = tempfile::tempdir().expect("tempdir");
    let storage = dir.path().join("state");
    let config = write_config(
        dir.path(),
        &sim.endpoint,
        &[PORTAL],
        FAST,
        false,
        "storage:\n  max_age: 5s\n",
    );
    let mut a = Exporter::start(&config, Some(&storage));
    a.wait_ready();
    a.stop();
    let t0 = state_t0(&storage, PORTAL);
    let written = state_written(&storage, PORTAL).expect("written_at_ms");

    // Young enough: resumes.
    let mut b = Exporter::start(&config, Some(&storage));
    b.wait_ready();
    assert_eq!(b.metrics().portal(RESTORED, PORTAL), Some(1.0));
    b.kill9();
    let written = state_written(&storage, PORTAL).unwrap_or(written);

    // Older than max_age: a fresh start, the old file is not "corrupt".
    sleep_past(written + 5500);
    let mut c = Exporter::start(&config, Some(&storage));
    c.wait_ready();
    let m = c.wait_metrics("a state write", |m| m.portal(LAST_WRITE, PORTAL).is_some());
    assert_eq!(m.portal(RESTORED, PORTAL), Some(0.0), "{}", m.dump());
    assert!(state_t0(&storage, PORTAL) > t0, "a new T0");
    assert_eq!(corrupt_files(&storage), Vec::<String>::new());
    c.stop();
    eprintln!("took {:?}", began.elapsed());
}

// ---------------------------------------------------------------------------------------------
// 6. Lock, unwritable directory, later write failures
// ---------------------------------------------------------------------------------------------

#[test]
fn second_process_on_the_same_directory_exits_1_naming_the_pid() {
    const PORTAL: &str = "cccccccc-0000-4000-8000-000000000061";
    let began = Instant::now();
    let sim = start_sim(vec![PortalSpec::scripted(
        PORTAL,
        baseline(now_ms(), &[("ann", 100 * S)]),
    )]);
    let dir = tempfile::tempdir().expect("tempdir");
    let storage = dir.path().join("state");
    let config = write_config(dir.path(), &sim.endpoint, &[PORTAL], FAST, false, "");

    let mut a = Exporter::start(&config, Some(&storage));
    a.wait_ready();
    let holder = a.pid();
    assert_eq!(
        std::fs::read_to_string(storage.join("lock"))
            .expect("lock file")
            .trim(),
        holder.to_string(),
        "the lock file holds the holder's pid"
    );

    let mut b = Exporter::start(&config, Some(&storage));
    let status = b.wait_exit();
    let stderr = b.stderr();
    assert_eq!(status.code(), Some(1), "stderr:\n{stderr}");
    assert!(
        stderr.contains(&format!("pid {holder}")),
        "the message names the holder's pid {holder}; stderr:\n{stderr}"
    );

    // The holder is unaffected and keeps writing its state.
    let written = a.metrics().portal(LAST_WRITE, PORTAL).expect("written");
    a.wait_metrics("another state write", |m| {
        m.portal(LAST_WRITE, PORTAL).is_some_and(|w| w > written)
    });

    // kill -9 releases the lock: the next process takes the directory and resumes.
    a.kill9();
    let mut c = Exporter::start(&config, Some(&storage));
    c.wait_ready();
    assert_eq!(c.metrics().portal(RESTORED, PORTAL), Some(1.0));
    assert_eq!(
        std::fs::read_to_string(storage.join("lock"))
            .expect("lock file")
            .trim(),
        c.pid().to_string()
    );
    c.stop();
    eprintln!("took {:?}", began.elapsed());
}

#[test]
fn unwritable_storage_directory_exits_1_at_startup() {
    const PORTAL: &str = "cccccccc-0000-4000-8000-000000000062";
    let began = Instant::now();
    let sim = start_sim(vec![PortalSpec::scripted(PORTAL, Vec::new())]);
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(dir.path(), &sim.endpoint, &[PORTAL], FAST, false, "");
    let file = dir.path().join("file");
    std::fs::write(&file, "a regular file").expect("write file");

    // Tests run as root, for whom permissions are no obstacle: paths are.
    for storage in [file.join("state"), file.clone()] {
        let mut e = Exporter::start(&config, Some(&storage));
        let status = e.wait_exit();
        let stderr = e.stderr();
        assert_eq!(
            status.code(),
            Some(1),
            "--storage.path {}; stderr:\n{stderr}",
            storage.display()
        );
        assert!(
            stderr.contains(&storage.display().to_string()),
            "the message names {}; stderr:\n{stderr}",
            storage.display()
        );
    }
    assert_eq!(
        std::fs::read_to_string(&file).expect("file"),
        "a regular file",
        "the file in the way is left alone"
    );
    eprintln!("took {:?}", began.elapsed());
}

/// SPEC 14: a state directory others can write to, or whose lock file is a symbolic link, is
/// refused at startup (exit 1, the message naming the path and the mode), and nothing outside it
/// is touched.
#[test]
fn a_state_directory_others_can_write_to_or_a_lock_symlink_exits_1() {
    use std::os::unix::fs::PermissionsExt;
    const PORTAL: &str = "cccccccc-0000-4000-8000-000000000064";
    let sim = start_sim(vec![PortalSpec::scripted(PORTAL, Vec::new())]);
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(dir.path(), &sim.endpoint, &[PORTAL], FAST, false, "");
    let open = dir.path().join("open");
    std::fs::create_dir(&open).expect("mkdir");
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    let linked = dir.path().join("linked");
    std::fs::create_dir(&linked).expect("mkdir");
    std::fs::set_permissions(&linked, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    let victim = dir.path().join("victim");
    std::fs::write(&victim, "precious").expect("write");
    std::os::unix::fs::symlink(&victim, linked.join("lock")).expect("symlink");
    for (storage, says) in [(&open, "mode 0777"), (&linked, "is a symbolic link")] {
        let mut e = Exporter::start(&config, Some(storage));
        let status = e.wait_exit();
        let stderr = e.stderr();
        assert_eq!(
            status.code(),
            Some(1),
            "{}; stderr:\n{stderr}",
            storage.display()
        );
        assert!(
            stderr.contains(&storage.display().to_string()) && stderr.contains(says),
            "the message names {} and says {says:?}; stderr:\n{stderr}",
            storage.display()
        );
    }
    assert_eq!(
        std::fs::read_to_string(&victim).expect("victim"),
        "precious"
    );
    assert!(
        !open.join("lock").exists(),
        "nothing written to a 0777 directory"
    );
}

#[test]
fn state_write_failure_later_is_counted_and_polling_goes_on() {
    const PORTAL: &str = "cccccccc-0000-4000-8000-000000000063";
    let began = Instant::now();
    let sim = start_sim(vec![PortalSpec::scripted(
        PORTAL,
        baseline(now_ms(), &[("ann", 100 * S)]),
    )]);
    let dir = tempfile::tempdir().expect("tempdir");
    let storage = dir.path().join("state");
    let config = write_config(dir.path(), &sim.endpoint, &[PORTAL], FAST, false, "");
    let s = &sim.sim;

    let mut e = Exporter::start(&config, Some(&storage));
    e.wait_ready();
    let m = e.wait_metrics("two state writes", |m| {
        m.portal(LAST_WRITE, PORTAL).is_some()
    });
    let first = m.portal(LAST_WRITE, PORTAL).expect("written");
    e.wait_metrics("a second state write", |m| {
        m.portal(LAST_WRITE, PORTAL).is_some_and(|w| w > first)
    });
    assert_eq!(e.metrics().get(WRITE_ERRORS, &[]), Some(0.0));

    // The state file becomes a non-empty directory: renaming a file over it fails.
    let path = state_path(&storage, PORTAL);
    poll_until(LIMIT, || {
        let _ = std::fs::remove_file(&path);
        std::fs::create_dir(&path).ok()
    })
    .expect("replace the state file with a directory");
    std::fs::write(path.join("occupied"), "x").expect("fill the directory");
    let broken = now_ms();

    let m = e.wait_metrics("two write errors", |m| {
        m.get(WRITE_ERRORS, &[]).is_some_and(|n| n >= 2.0)
    });
    assert!(
        m.portal(LAST_WRITE, PORTAL).expect("kept") * 1000.0 <= broken as f64,
        "no write succeeded since the breakage:\n{}",
        m.dump()
    );
    // Polling and serving go on, and the counters still count.
    let started = m.portal(STARTED, PORTAL).expect("started");
    let last = add(s, PORTAL, 100, "ben", soon());
    sleep_past(last);
    let m = e.wait_poll_after(PORTAL, last);
    assert_eq!(m.portal(UP, PORTAL), Some(1.0));
    assert_eq!(
        m.portal(STARTED, PORTAL),
        Some(started + 1.0),
        "{}",
        m.dump()
    );
    assert!(m.get(WRITE_ERRORS, &[]).expect("errors") >= 3.0);

    // Repaired, writes resume and the errors stop.
    std::fs::remove_dir_all(&path).expect("remove the directory");
    let repaired = now_ms();
    let m = e.wait_metrics("a state write after the repair", |m| {
        m.portal(LAST_WRITE, PORTAL)
            .is_some_and(|w| w * 1000.0 > repaired as f64)
    });
    let errors = m.get(WRITE_ERRORS, &[]).expect("errors");
    let w = m.portal(LAST_WRITE, PORTAL).expect("written");
    let m = e.wait_metrics("another state write", |m| {
        m.portal(LAST_WRITE, PORTAL).is_some_and(|x| x > w)
    });
    assert_eq!(m.get(WRITE_ERRORS, &[]), Some(errors), "no new error");
    let state = state_json(&storage, PORTAL);
    assert_eq!(state["portal_id"], PORTAL, "{state}");
    e.stop();
    eprintln!("took {:?}", began.elapsed());
}

/// SPEC 9: "Published counters never go below what an earlier process published." While state
/// writes fail, the exporter goes on publishing counters that are not on disk; a restart resumes
/// from the last state written. It used to publish those older, lower counters at once, until
/// its first poll caught up: Prometheus read the dip as a counter reset and `increase()` counted
/// the sessions again. The resumed counters now appear with the first poll.
#[test]
fn counters_do_not_go_down_when_a_restart_follows_failed_state_writes() {
    const PORTAL: &str = "cccccccc-0000-4000-8000-000000000064";
    let began = Instant::now();
    let sim = start_sim(vec![PortalSpec::scripted(
        PORTAL,
        baseline(now_ms(), &[("ann", 100 * S)]),
    )]);
    let dir = tempfile::tempdir().expect("tempdir");
    let storage = dir.path().join("state");
    let config = write_config(dir.path(), &sim.endpoint, &[PORTAL], FAST, false, "");
    let s = &sim.sim;

    let mut a = Exporter::start(&config, Some(&storage));
    a.wait_ready();
    a.wait_metrics("a state write", |m| m.portal(LAST_WRITE, PORTAL).is_some());
    // Writes fail from now on (as on a full disk), the last state written stays readable: the
    // temp file's name is taken by a non-empty directory.
    let tmp = storage.join(format!(".{PORTAL}.state.tmp"));
    std::fs::create_dir(&tmp).expect("mkdir");
    std::fs::write(tmp.join("occupied"), "x").expect("fill");
    let mut last = 0;
    for n in 100..105 {
        last = add(s, PORTAL, n, "ben", soon());
    }
    sleep_past(last);
    let m = a.wait_metrics("the five sessions counted, writes failing", |m| {
        m.portal(STARTED, PORTAL) == Some(5.0) && m.get(WRITE_ERRORS, &[]).is_some_and(|e| e > 0.0)
    });
    let mut history = History::default();
    history.record(0, &m, PORTAL);
    a.kill9();

    // The next process, scraped as often as possible from its start to its first poll.
    let spawned = now_ms();
    let b = Exporter::start(&config, Some(&storage));
    let polled = poll_until(LIMIT, || {
        let m = b.try_metrics()?;
        history.record(1, &m, PORTAL);
        m.poll_ms(PORTAL).filter(|p| *p > spawned).map(|_| m)
    })
    .expect("a poll of the second process");
    assert_eq!(polled.portal(STARTED, PORTAL), Some(5.0));
    assert_eq!(
        history.decreases(),
        Vec::<String>::new(),
        "the second process published less than the first"
    );
    eprintln!("took {:?}", began.elapsed());
}
