//! Per-user series and monthly active users, through the real SDK against the simulator.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::common::*;
use workspacesweb_exporter::clock::now_ms;
use workspacesweb_exporter::ledger::month_bounds;
use workspacesweb_exporter::poll::Scheduler;
use workspacesweb_exporter::users::{LabelMode, UserSettings};
use workspacesweb_sim::{Clock, PortalSpec, SimConfig, SimSession};

const HOUR: Duration = Duration::from_secs(3600);

fn odd_names() -> Vec<Option<String>> {
    vec![
        Some("quote\"d".into()),
        Some("back\\slash".into()),
        Some("new\nline".into()),
        Some("emoji 😀 ünïcode".into()),
        Some("x".repeat(256)),
        Some(String::new()),
        None,
        Some("plain".into()),
    ]
}

/// One active session per name, starting 1 ms apart from `start`.
fn sessions_with(names: &[Option<String>], start: i64) -> Vec<SimSession> {
    names
        .iter()
        .enumerate()
        .map(|(i, name)| SimSession {
            id: SimSession::id_for(i as u64),
            username: name.clone(),
            start_ms: start + i as i64,
            end_ms: None,
        })
        .collect()
}

fn per_user(mode: LabelMode) -> Option<UserSettings> {
    Some(UserSettings {
        mode,
        max_users: 1000,
        idle_ttl_ms: 24 * 3_600_000,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn odd_usernames_are_escaped_and_promtool_accepts_them() {
    let base = now_ms();
    let names = odd_names();
    // The portal is empty at the first poll (T0); the sessions start after it, so that each counts
    // in its user's `started` (sessions already running at T0 would be the baseline).
    let env = start(
        SimConfig::new(11)
            .with_clock(Clock::manual(base))
            .with_portal(PortalSpec::scripted(GOOD, Vec::new())),
    )
    .await;
    let mut p = plan(GOOD, Duration::from_millis(300), 3);
    p.per_user = per_user(LabelMode::Raw);
    let sched = Scheduler::start(vec![p], &env.clients, env.store.clone(), 1).await;
    let first = wait_portal(&env.store, GOOD, |p| p.polled).await;
    assert!(first.up, "{:?}", first.last_error);
    assert!(first.users.is_empty(), "{:?}", first.users);
    // After T0 (the first poll's first request, before it was published); listed once the
    // simulator's clock, still at `base`, reaches them.
    let late = now_ms();
    for session in sessions_with(&names, late) {
        env.sim.add_session(GOOD, session).expect("portal");
    }
    env.sim.clock().set(late + names.len() as i64);
    let snap = wait_portal(&env.store, GOOD, |p| {
        p.active.is_some_and(|a| a.sessions == names.len() as u64)
    })
    .await;
    sched.shutdown().await;
    assert!(snap.up, "{:?}", snap.last_error);

    // Empty and missing usernames are one user, "__unknown__".
    let users: BTreeSet<&str> = snap.users.iter().map(|u| u.username.as_str()).collect();
    assert_eq!(users.len(), 7, "{users:?}");
    assert!(users.contains("__unknown__"));
    let unknown = snap
        .users
        .iter()
        .find(|u| u.username == "__unknown__")
        .expect("unknown user");
    assert_eq!((unknown.active, unknown.started), (2, 2));
    assert_eq!(active(&snap).users, 7);
    assert_eq!(snap.users.iter().map(|u| u.started).sum::<u64>(), 8);

    let text = env.store.scrape_text().expect("exposition decompresses");
    let t = String::from_utf8(text.to_vec()).expect("utf-8");
    let l = format!("portal_id=\"{GOOD}\",env=\"test\"");
    for expected in [
        "username=\"quote\\\"d\"",
        "username=\"back\\\\slash\"",
        "username=\"new\\nline\"",
        "username=\"emoji 😀 ünïcode\"",
        "username=\"plain\"",
    ] {
        assert!(
            t.contains(&format!(
                "workspacesweb_user_active_sessions{{{l},{expected}}} 1\n"
            )),
            "missing {expected} in\n{t}"
        );
    }
    assert!(t.contains(&format!(
        "workspacesweb_user_active_sessions{{{l},username=\"{}\"}} 1\n",
        "x".repeat(256)
    )));
    assert!(t.contains(&format!(
        "workspacesweb_user_sessions_started_total{{{l},username=\"__unknown__\"}} 2\n"
    )));
    assert!(!t.contains("username=\"\""), "empty label value");
    promtool_check(&text).expect("promtool accepts the exposition");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn monthly_active_users_are_backfilled_across_many_pages() {
    let now = now_ms();
    let (month_start, _) = month_bounds(now);
    let into_month = (now - month_start).max(2);
    let mut sessions = Vec::new();
    let mut expected = BTreeSet::new();
    // 1,200 sessions ended earlier this month, by 60 users: 13 pages of 100 to backfill.
    for i in 0..1200u64 {
        let start = month_start + (into_month / 2) * (i as i64) / 1200;
        let user = format!("month-user-{}", i % 60);
        expected.insert(user.clone());
        sessions.push(SimSession::new(SimSession::id_for(i), user, start).ended(start + 1));
    }
    // Started last month, ended in this one: counts.
    let cross = SimSession::new(
        SimSession::id_for(5000),
        "crosser",
        month_start - 2 * 3_600_000,
    )
    .ended(month_start + (into_month / 2).min(60_000));
    expected.insert("crosser".into());
    sessions.push(cross);
    // Ended before the month: does not count.
    sessions.push(
        SimSession::new(
            SimSession::id_for(5001),
            "last-month",
            month_start - 3 * 3_600_000,
        )
        .ended(month_start - 3_600_000),
    );
    // Active now: counts.
    sessions.push(SimSession::new(
        SimSession::id_for(5002),
        "active-now",
        now - 1000,
    ));
    expected.insert("active-now".into());

    let env = start(
        SimConfig::new(12)
            .with_clock(Clock::manual(now))
            .with_portal(PortalSpec::scripted(GOOD, sessions)),
    )
    .await;
    let sched = Scheduler::start(
        vec![plan(GOOD, HOUR, 100)],
        &env.clients,
        env.store.clone(),
        1,
    )
    .await;
    let snap = wait_portal(&env.store, GOOD, |p| p.polled).await;
    sched.shutdown().await;
    assert!(snap.up, "{:?}", snap.last_error);
    assert_eq!(snap.monthly_active_users, Some(expected.len() as u64));
    // History before T0 does not count in the session counters; the session active at the first
    // poll started before T0 too: tracked (active), but the baseline, not a start.
    assert_eq!(active(&snap).sessions, 1);
    let totals = snap.totals.as_ref().expect("totals");
    assert_eq!((totals.started, totals.terminated), (0, 0));
    let t = String::from_utf8(
        env.store
            .scrape_text()
            .expect("exposition decompresses")
            .to_vec(),
    )
    .expect("utf-8");
    assert!(t.contains(&format!(
        "workspacesweb_monthly_active_users{{portal_id=\"{GOOD}\",env=\"test\"}} {}\n",
        expected.len()
    )));
}

/// With per-user series off (the default), the exporter keeps nothing per user once a user has
/// no session left: a portal with many short-lived usernames stays bounded. Observed through the
/// durable state, which holds the ledger's per-user entries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_per_user_series_idle_users_are_not_kept() {
    use std::sync::Arc;
    use workspacesweb_exporter::storage::StateDir;
    const USERS: u64 = 40;
    let base = now_ms();
    let clock = Clock::manual(base);
    let env = start(
        SimConfig::new(41)
            .with_clock(clock.clone())
            .with_portal(scripted(GOOD, USERS, base - 3_600_000, USERS)),
    )
    .await;
    let dir = tempfile::tempdir().expect("tempdir");
    let storage = Arc::new(StateDir::open(dir.path()).expect("state dir"));
    let mut p = plan(GOOD, Duration::from_millis(300), 100);
    p.per_user = None;
    let mut sched = Scheduler::new(env.clients.clone(), env.store.clone(), 4)
        .with_storage(Some(storage.clone()));
    sched.apply(vec![p]).await;
    let first = wait_portal(&env.store, GOOD, |p| p.up).await;
    assert_eq!(active(&first).sessions, USERS);
    let users_in_state = || -> usize {
        let bytes = storage.read(GOOD).expect("read").expect("a state file");
        let v = workspacesweb_exporter::poll::state::to_json(&bytes).expect("a state file");
        v["ledger"]["users"].as_array().expect("users").len()
    };
    assert_eq!(
        users_in_state(),
        USERS as usize,
        "each has an active session"
    );
    // Every session ends; two polls later (one sees them end, the next finds them idle) no user
    // is kept.
    for s in env.sim.sessions_now(GOOD) {
        env.sim
            .end_session(GOOD, &s.id, base + 1_000)
            .expect("session");
    }
    clock.set(base + 2_000);
    let ended = wait_portal(&env.store, GOOD, |p| {
        p.totals.as_ref().is_some_and(|t| t.terminated == USERS)
    })
    .await;
    let at = ended.last_success_unix.expect("success");
    wait_portal(&env.store, GOOD, |p| {
        p.last_success_unix.is_some_and(|t| t > at)
            && p.state.is_some_and(|s| s.last_write_unix.is_some())
    })
    .await;
    let next = env.store.portal(GOOD).expect("portal");
    let next_at = next.last_success_unix.expect("success");
    wait_portal(&env.store, GOOD, |p| {
        p.last_success_unix.is_some_and(|t| t > next_at)
    })
    .await;
    sched.shutdown().await;
    assert_eq!(users_in_state(), 0, "no user is kept without a session");
    assert_eq!(active(&next).sessions, 0);
}

/// A session that ended between T0 and the first listing, having started long before, is found
/// only by the monthly-users backfill (it is neither Active nor above the scan's watermark). The
/// per-user series published with the first poll include it: they agree with the totals.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_user_series_include_what_the_backfill_finds() {
    let base = now_ms();
    // The simulator runs 10 minutes ahead: the session ends 5 minutes after the exporter's T0
    // and is Terminated at the first poll.
    let clock = Clock::manual(base + 600_000);
    let end = base + 300_000;
    let late = SimSession::new(SimSession::id_for(7), "late", base - 7_200_000).ended(end);
    // History that ended before T0, starting after `late`: with one session per page it is the
    // page where the descending scan crosses its watermark and stops, before `late`.
    let history =
        SimSession::new(SimSession::id_for(8), "history", base - 1_800_000).ended(base - 900_000);
    let env = start(
        SimConfig::new(43)
            .with_clock(clock)
            .with_portal(PortalSpec::scripted(GOOD, vec![late, history])),
    )
    .await;
    let mut p = plan(GOOD, HOUR, 1);
    p.per_user = Some(UserSettings {
        mode: LabelMode::Raw,
        max_users: 100,
        idle_ttl_ms: 24 * 3_600_000,
    });
    let sched = Scheduler::start(vec![p], &env.clients, env.store.clone(), 4).await;
    let first = wait_portal(&env.store, GOOD, |p| p.up).await;
    sched.shutdown().await;
    let totals = first.totals.clone().expect("totals");
    let t0 = (first.last_success_unix.expect("success") * 1000.0).round() as i64;
    assert_eq!(
        (totals.started, totals.terminated),
        (0, 1),
        "a baseline session"
    );
    assert_eq!(totals.session_seconds, (end - t0) as f64 / 1000.0);
    let user = first
        .users
        .iter()
        .find(|u| u.username == "late")
        .unwrap_or_else(|| panic!("no series for the user: {:?}", first.users));
    assert_eq!(user.session_seconds, totals.session_seconds);
}
