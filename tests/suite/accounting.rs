//! Exactness and API-budget tests of the poller + ledger against the simulator, through the real SDK.
//!
//! Design. The exporter polls on the system clock; the simulator runs on a manual clock. Every
//! session is scripted up front (so a step is a single atomic `Clock::set`, which cannot tear a
//! poll in half) and the tests change state right after a poll was published, then wait on the
//! store for the poll that reflects the change. No sleeps, no timing assertions.
//!
//! For exact `session_seconds`, the simulator's clock runs ahead of the system clock (by ten
//! minutes and more). Then no session ever ends before a poll that listed it Active (the ledger's
//! monotonic clamp never applies), so each session contributes exactly
//! `[max(start, T0), end]`, or `[max(start, T0), at]` while open, where T0 and `at` are read back
//! from the snapshots (`last_success_unix` is the poll's start, exact to the millisecond).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use crate::common::*;
use serde_json::json;
use workspacesweb_exporter::aws::{GET_SESSION, LIST_SESSIONS};
use workspacesweb_exporter::clock::now_ms;
use workspacesweb_exporter::exposition::families::Board;
use workspacesweb_exporter::ledger::{DEFAULT_DURATION_BUCKETS, Histogram, month_bounds};
use workspacesweb_exporter::poll::{
    BACKFILL_PAGES_PER_CYCLE, BACKFILL_REACH_MS, SKEW_MARGIN_MS, Scheduler,
};
use workspacesweb_exporter::session::UnixMillis;
use workspacesweb_exporter::snapshot::{PortalSnapshot, Store};
use workspacesweb_exporter::status::ExporterStatus;
use workspacesweb_sim::{Clock, Faults, PortalSpec, SimConfig, SimSession, Simulator};

const S: i64 = 1000;
const P1: &str = "bbbbbbbb-0000-4000-8000-000000000001";
const P2: &str = "bbbbbbbb-0000-4000-8000-000000000002";
const P3: &str = "bbbbbbbb-0000-4000-8000-000000000003";
const P4: &str = "bbbbbbbb-0000-4000-8000-000000000004";
const P5: &str = "bbbbbbbb-0000-4000-8000-000000000005";
const P6: &str = "bbbbbbbb-0000-4000-8000-000000000006";
const P7: &str = "bbbbbbbb-0000-4000-8000-000000000007";
const P8: &str = "bbbbbbbb-0000-4000-8000-000000000008";

/// Start of the poll a snapshot describes (the ledger's `at`), in exact milliseconds.
fn at_ms(p: &PortalSnapshot) -> UnixMillis {
    (p.last_success_unix.expect("a successful poll") * 1000.0).round() as UnixMillis
}

/// The next successful poll after the one that started at `after_ms` for which `pred` holds.
async fn next_success(
    store: &Store,
    portal: &str,
    after_ms: UnixMillis,
    pred: impl Fn(&PortalSnapshot) -> bool,
) -> Arc<PortalSnapshot> {
    wait_portal(store, portal, |p| {
        p.up && p.last_success_unix.is_some() && at_ms(p) > after_ms && pred(p)
    })
    .await
}

/// The totals of a snapshot that has them.
fn totals(p: &PortalSnapshot) -> &workspacesweb_exporter::ledger::Totals {
    p.totals.as_ref().expect("totals after a successful poll")
}

/// A plan with the default (SPEC) duration buckets.
fn plan_for(
    portal: &str,
    interval: Duration,
    page_size: u32,
) -> workspacesweb_exporter::poll::PortalPlan {
    let mut p = plan(portal, interval, page_size);
    p.duration_buckets = DEFAULT_DURATION_BUCKETS.to_vec();
    p
}

/// Epoch seconds of a millisecond time, as a JSON number (the wire form).
fn wire_time(ms: UnixMillis) -> serde_json::Value {
    json!(ms as f64 / 1000.0)
}

/// A histogram over the default buckets holding exactly `durations_ms`.
fn histogram(durations_ms: &[i64]) -> Histogram {
    let mut h = Histogram::with_bounds(DEFAULT_DURATION_BUCKETS.to_vec());
    for &d in durations_ms {
        let i = h.bucket_index(d as f64 / 1000.0);
        h.counts[i] += 1;
        h.count += 1;
    }
    h.sum = durations_ms.iter().sum::<i64>() as f64 / 1000.0;
    h
}

/// Asserts every counter of a snapshot.
#[track_caller]
fn assert_totals(
    p: &PortalSnapshot,
    started: u64,
    terminated: u64,
    incomplete: u64,
    session_ms: i64,
    durations_ms: &[i64],
) {
    let t = totals(p);
    assert_eq!(t.started, started, "started: {t:?}");
    assert_eq!(t.terminated, terminated, "terminated: {t:?}");
    assert_eq!(t.incomplete, incomplete, "incomplete: {t:?}");
    assert_eq!(
        t.session_seconds,
        session_ms as f64 / 1000.0,
        "session_seconds: expected {session_ms} ms, {t:?}"
    );
    assert_eq!(t.durations, histogram(durations_ms), "durations");
}

/// Asserts the active gauges: sessions, users, and the age of the oldest start (exact).
#[track_caller]
fn assert_active(p: &PortalSnapshot, sessions: u64, users: u64, oldest_start: Option<i64>) {
    let a = active(p);
    assert_eq!(a.sessions, sessions, "active sessions: {a:?}");
    assert_eq!(a.users, users, "active users: {a:?}");
    let age = oldest_start.map_or(0.0, |s| (at_ms(p) - s).max(0) as f64 / 1000.0);
    assert_eq!(a.max_age_seconds, age, "max age: {a:?}");
}

// ---------------------------------------------------------------------------------------------
// 1. API budget with 50,000 terminated sessions of history
// ---------------------------------------------------------------------------------------------

/// One step of the budget test: new sessions that start and end between two polls, old
/// sessions (active since long before T0) that end, new sessions that stay active, and how many
/// of the step-1 new active sessions end.
struct BudgetStep {
    new_ended: u64,
    old_ended: u64,
    new_active: u64,
    end_step1_active: bool,
}

/// What one poll cost, measured from consecutive snapshots.
#[derive(Debug, Clone, Copy, PartialEq)]
struct PollCost {
    list_sessions: u64,
    get_session: u64,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_budget_with_50k_terminated_sessions_of_history() {
    const PAGE: u64 = 100;
    const HISTORY: u64 = 50_000;
    const OLD_ACTIVE: u64 = 250;
    const STEP_MS: i64 = 10 * S;
    let steps = [
        BudgetStep {
            new_ended: 40,
            old_ended: 0,
            new_active: 30,
            end_step1_active: false,
        },
        BudgetStep {
            new_ended: 70,
            old_ended: 5,
            new_active: 0,
            end_step1_active: false,
        },
        BudgetStep {
            new_ended: 99,
            old_ended: 20,
            new_active: 0,
            end_step1_active: false,
        },
        BudgetStep {
            new_ended: 0,
            old_ended: 0,
            new_active: 0,
            end_step1_active: false,
        },
        BudgetStep {
            new_ended: 99,
            old_ended: 60,
            new_active: 0,
            end_step1_active: false,
        },
        BudgetStep {
            new_ended: 10,
            old_ended: 1,
            new_active: 0,
            end_step1_active: true,
        },
    ];

    let base = now_ms();
    let clock = Clock::manual(base);
    let mut sessions = Vec::with_capacity(51_000);
    // History: one session a minute going back 34.7 days, the newest 2 min before T0, each 30 s
    // long: all ended before T0 (never counted), all below every watermark.
    for i in 0..HISTORY {
        let start = base - 120 * S - i as i64 * 60 * S;
        sessions.push(
            SimSession::new(SimSession::id_for(i), format!("user{}", i % 500), start)
                .ended(start + 30 * S),
        );
    }
    // Active since ~10 h before T0: ~600 terminated history sessions (6 pages) are listed between
    // them and any watermark, so once they end, they are found by GetSession or by 6 more pages
    // of the scan, whichever is cheaper.
    let mut old: Vec<SimSession> = (0..OLD_ACTIVE)
        .map(|i| {
            SimSession::new(
                SimSession::id_for(100_000 + i),
                format!("user{}", i % 77),
                base - 36_000 * S - i as i64 * S,
            )
        })
        .collect();
    let mut new_sessions = Vec::new();
    let mut old_cursor = 0usize;
    let mut step1_active = Vec::new();
    let mut n = 200_000u64;
    for (s, step) in steps.iter().enumerate() {
        let step_start = base + s as i64 * STEP_MS;
        for k in 0..step.new_ended {
            let start = step_start + S + k as i64 * 10;
            new_sessions.push(
                SimSession::new(SimSession::id_for(n), format!("new{}", k % 13), start)
                    .ended(start + 2 * S),
            );
            n += 1;
        }
        for o in old
            .iter_mut()
            .skip(old_cursor)
            .take(step.old_ended as usize)
        {
            o.end_ms = Some(step_start + 6 * S);
        }
        old_cursor += step.old_ended as usize;
        for k in 0..step.new_active {
            let idx = new_sessions.len();
            new_sessions.push(SimSession::new(
                SimSession::id_for(n),
                format!("act{k}"),
                step_start + 5 * S + k as i64,
            ));
            n += 1;
            if s == 0 {
                step1_active.push(idx);
            }
        }
        if step.end_step1_active {
            for &idx in &step1_active {
                let s1: &mut SimSession = &mut new_sessions[idx];
                s1.end_ms = Some(step_start + 7 * S);
            }
        }
    }
    sessions.extend(old);
    sessions.extend(new_sessions);
    let built = std::time::Instant::now();
    let env = start(
        SimConfig::new(11)
            .with_clock(clock.clone())
            .with_portal(PortalSpec::scripted(P1, sessions)),
    )
    .await;
    eprintln!(
        "budget: simulator with {} sessions built in {:?}",
        HISTORY + OLD_ACTIVE + n - 200_000,
        built.elapsed()
    );
    let sim = env.sim.clone();
    // A cycle of 100 backfill pages may take longer than the interval in a loaded debug build:
    // the timeout must not cut it (that would change the figures; the backfill-timeout test below covers that case).
    // The incremental polls themselves take 10-100 ms, well inside the interval.
    let mut budget_plan = plan_for(P1, Duration::from_millis(600), PAGE as u32);
    budget_plan.timeout = Duration::from_secs(30);
    let sched = Scheduler::start(vec![budget_plan], &env.clients, env.store.clone(), 4).await;

    let truth = |sim: &Simulator, clock: UnixMillis| sim.sessions_at(P1, clock);
    let cost = |prev: &PortalSnapshot, cur: &PortalSnapshot| PollCost {
        list_sessions: requests(cur, LIST_SESSIONS) - requests(prev, LIST_SESSIONS),
        get_session: requests(cur, GET_SESSION) - requests(prev, GET_SESSION),
    };
    // The sim's own count, read as soon as the snapshot is published, must match the exporter's.
    // The next poll may already have sent requests by then (600 ms interval, a loaded machine):
    // the count must then lie between this snapshot's and the next successful poll's.
    let store = env.store.clone();
    let check_sim_counts = async |p: &PortalSnapshot| {
        let ops = [LIST_SESSIONS, GET_SESSION];
        let seen = ops.map(|op| sim.request_count(P1, op));
        if seen == ops.map(|op| requests(p, op)) {
            return;
        }
        let next = next_success(&store, P1, at_ms(p), |_| true).await;
        for (op, seen) in ops.into_iter().zip(seen) {
            assert!(
                requests(p, op) <= seen && seen <= requests(&next, op),
                "{op}: the simulator saw {seen}, the exporter counted {} then {}",
                requests(p, op),
                requests(&next, op)
            );
        }
    };
    // Expected cost of a poll at sim time `clock_now`, whose previous successful poll started at
    // `prev_at` and saw the simulator at `prev_clock`.
    let expected = |prev_at: UnixMillis, prev_clock: UnixMillis, clock_now: UnixMillis| {
        let watermark = prev_at - SKEW_MARGIN_MS;
        let now = truth(&sim, clock_now);
        let active = now.iter().filter(|s| s.end_ms.is_none()).count() as u64;
        let new_terminated = now
            .iter()
            .filter(|s| s.end_ms.is_some() && s.start_ms >= watermark)
            .count() as u64;
        let was_active: BTreeSet<String> = truth(&sim, prev_clock)
            .into_iter()
            .filter(|s| s.end_ms.is_none())
            .map(|s| s.id)
            .collect();
        let vanished_below_watermark: Vec<UnixMillis> = now
            .iter()
            .filter(|s| s.end_ms.is_some() && s.start_ms < watermark && was_active.contains(&s.id))
            .map(|s| s.start_ms)
            .collect();
        // Active pages (an empty listing is one request), then the descending scan: every page
        // holding only sessions above the watermark, plus the page that crosses it.
        let crossing = new_terminated / PAGE;
        let pages = active.div_ceil(PAGE).max(1) + crossing + 1;
        // The vanished sessions cost the cheaper of one GetSession each and the pages after the
        // crossing one down to the page that holds the oldest of them (its position in the
        // listing: the terminated sessions that started after it).
        let vanished = vanished_below_watermark.len() as u64;
        let scan_pages = vanished_below_watermark
            .iter()
            .map(|&start| {
                let newer = now
                    .iter()
                    .filter(|s| s.end_ms.is_some() && s.start_ms > start)
                    .count() as u64;
                newer / PAGE - crossing
            })
            .max()
            .unwrap_or(0);
        let cost = if vanished > 0 && scan_pages < vanished {
            PollCost {
                list_sessions: pages + scan_pages,
                get_session: 0,
            }
        } else {
            PollCost {
                list_sessions: pages,
                get_session: vanished,
            }
        };
        (active, new_terminated, cost)
    };

    // First poll: 3 active pages + 1 page of the scan (no history within a minute of T0), then
    // the first cycle of the monthly-users backfill: a descending scan of Terminated sessions down
    // to the month start minus a day, at most BACKFILL_PAGES_PER_CYCLE pages per poll cycle. The
    // scan's page is the backfill's first page: the backfill goes on from the page after it.
    let first = wait_portal(&env.store, P1, |p| p.up).await;
    check_sim_counts(&first).await;
    let t0 = at_ms(&first);
    let floor = month_bounds(t0).0 - BACKFILL_REACH_MS;
    let at_base = truth(&sim, base);
    let above_floor = at_base
        .iter()
        .filter(|s| s.end_ms.is_some() && s.start_ms >= floor)
        .count() as u64;
    assert!(
        above_floor < HISTORY,
        "the backfill stops before the end of the history"
    );
    let backfill_total = above_floor / PAGE + 1;
    let backfill_own = backfill_total - 1;
    let per_cycle = u64::from(BACKFILL_PAGES_PER_CYCLE);
    let first_cost = PollCost {
        list_sessions: requests(&first, LIST_SESSIONS),
        get_session: requests(&first, GET_SESSION),
    };
    assert_eq!(
        first_cost,
        PollCost {
            list_sessions: 4 + backfill_own.min(per_cycle),
            get_session: 0
        }
    );
    // The old sessions ran before T0: the baseline, not starts.
    assert_totals(&first, 0, 0, 0, 0, &[]);
    assert_eq!(active(&first).sessions, OLD_ACTIVE);
    eprintln!(
        "budget: first poll: ListSessions={} GetSession={} (active={OLD_ACTIVE}, history={HISTORY}, \
         page={PAGE}; 4 for the poll, the rest for the backfill of {above_floor} sessions this month: \
         {backfill_total} pages in all, the first read by the poll)",
        first_cost.list_sessions, first_cost.get_session
    );

    // The rest of the backfill, one cycle per poll; monthly users appear when it completes.
    // (Cycles may follow each other at once here, so only the total is asserted.)
    let mut prev = first;
    while prev.monthly_active_users.is_none() {
        let p = next_success(&env.store, P1, at_ms(&prev), |_| true).await;
        let c = cost(&prev, &p);
        eprintln!(
            "budget: backfill poll(s): ListSessions={} GetSession={}",
            c.list_sessions, c.get_session
        );
        prev = p;
    }
    check_sim_counts(&prev).await;
    let cycles = backfill_own.div_ceil(per_cycle).max(1);
    assert_eq!(
        requests(&prev, LIST_SESSIONS),
        4 * cycles + backfill_own,
        "{cycles} polls of 4 pages and {backfill_own} backfill pages after the poll's first"
    );
    assert_eq!(requests(&prev, GET_SESSION), 0);
    let (month_start, month_end) = month_bounds(at_ms(&prev));
    let month_users: BTreeSet<_> = at_base
        .iter()
        .filter(|s| s.start_ms < month_end && s.end_ms.is_none_or(|e| e >= month_start))
        .map(|s| s.username.clone())
        .collect();
    assert_eq!(prev.monthly_active_users, Some(month_users.len() as u64));

    let mut prev_clock = clock.now_ms();
    let mut started = 0u64;
    let mut terminated = 0u64;
    let mut measured = Vec::new();
    for (s, step) in steps.iter().enumerate() {
        // Apply the step atomically, right after a poll was published.
        let step_clock = base + (s as i64 + 1) * STEP_MS;
        clock.set(step_clock);
        started += step.new_ended + step.new_active;
        terminated += step.new_ended
            + step.old_ended
            + if step.end_step1_active {
                step1_active.len() as u64
            } else {
                0
            };
        let (exp_active, new_term, exp_cost) = expected(at_ms(&prev), prev_clock, step_clock);
        let changed = next_success(&env.store, P1, at_ms(&prev), |p| {
            totals(p).started == started
                && totals(p).terminated == terminated
                && active(p).sessions == exp_active
        })
        .await;
        check_sim_counts(&changed).await;
        let c = cost(&prev, &changed);
        eprintln!(
            "budget: step {}: +{} started&ended, {} old ended, +{} active: active={exp_active} \
             terminated_above_watermark={new_term} -> ListSessions={} GetSession={} (poll took {:.3}s)",
            s + 1,
            step.new_ended,
            step.old_ended,
            step.new_active,
            c.list_sessions,
            c.get_session,
            changed.poll_duration_seconds.unwrap_or(0.0),
        );
        assert_eq!(c, exp_cost, "step {} (first poll after the change)", s + 1);
        assert!(c.list_sessions <= 12, "never anywhere near 500 pages");
        measured.push((c, new_term));

        // The steady poll after it: the same listing, nothing to resolve.
        let (_, new_term2, exp_steady) = expected(at_ms(&changed), step_clock, step_clock);
        let steady = next_success(&env.store, P1, at_ms(&changed), |_| true).await;
        check_sim_counts(&steady).await;
        let c2 = cost(&changed, &steady);
        eprintln!(
            "budget: step {}: steady poll: ListSessions={} GetSession={} (terminated_above_watermark={new_term2})",
            s + 1,
            c2.list_sessions,
            c2.get_session
        );
        assert_eq!(c2, exp_steady, "step {} (steady poll)", s + 1);
        assert_eq!(c2.get_session, 0);
        assert_eq!(totals(&steady).started, started);
        assert_eq!(totals(&steady).terminated, terminated);
        prev = steady;
        prev_clock = step_clock;
    }
    sched.shutdown().await;
    // The figures, as designed: active 280/275/255/255/195/164 and 40/110/209/209/308/348
    // terminated sessions above the watermark. When 20 and 60 old sessions end (steps 3 and 5),
    // the 6 pages of history down to them cost less than 20 or 60 GetSession; 5 (step 2) and 1
    // (step 6) are cheaper one by one.
    let figures: Vec<(u64, u64)> = measured
        .iter()
        .map(|(c, _)| (c.list_sessions, c.get_session))
        .collect();
    assert_eq!(
        figures,
        vec![(4, 0), (5, 5), (12, 0), (6, 0), (12, 0), (6, 1)]
    );
}

// ---------------------------------------------------------------------------------------------
// 2. Exact counters over a scripted timeline
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exact_counters_over_a_scripted_timeline() {
    let base = now_ms();
    // The simulator's "now" runs 10 minutes (and later ~28 h) ahead of the exporter's clock.
    let u = base + 600 * S;
    let clock = Clock::manual(u);
    let id = |n: u64| SimSession::id_for(1_000 + n);
    let mut sessions = vec![
        // Active at T0 (started before it); a1 ends in step 2, a2 in step 1, a3 never.
        SimSession::new(id(1), "alice", base - 7_200 * S).ended(u + 150 * S),
        SimSession::new(id(2), "bob", base - 1_800 * S).ended(u + 50 * S),
        SimSession::new(id(3), "alice", base - 300 * S),
        // Listed Active at the first poll, started after T0; ends in step 1 (31 s).
        SimSession::new(id(4), "carol", u - S).ended(u + 30 * S),
        // Ended 30 s before T0: never counted.
        SimSession::new(id(5), "zed", base - 2_400 * S).ended(base - 30 * S),
        // Step 1: start and end between two polls (45 s, 70 s), an endTime < startTime, and a
        // session that is seen Active, then ends in step 2 (130 s).
        SimSession::new(id(20), "dave", u + 10 * S).ended(u + 55 * S),
        SimSession::new(id(21), "erin", u + 20 * S).ended(u + 90 * S),
        SimSession::new(id(22), "henry", u + 40 * S).ended(u + 35 * S),
        SimSession::new(id(23), "frank", u + 60 * S).ended(u + 190 * S),
        // Step 2: 1.5 s between polls; a session that stays active.
        SimSession::new(id(24), "dave", u + 110 * S).ended(u + 111 * S + 500),
        SimSession::new(id(25), "kate", u + 180 * S),
        // Step 3 (a 27.8 h jump): 50,000 s, 90,000 s (+Inf), exactly 900 s, 900.001 s.
        SimSession::new(id(26), "erin", u + 300 * S).ended(u + 300 * S + 50_000 * S),
        SimSession::new(id(27), "frank", u + 400 * S).ended(u + 400 * S + 90_000 * S),
        SimSession::new(id(28), "dave", u + 500 * S).ended(u + 500 * S + 900 * S),
        SimSession::new(id(29), "dave", u + 600 * S).ended(u + 600 * S + 900 * S + 1),
    ];
    // Old history, ended long before T0.
    for i in 0..5 {
        let start = base - 86_400 * S - i * 3_600 * S;
        sessions.push(SimSession::new(id(10 + i as u64), "old", start).ended(start + 1_800 * S));
    }
    let env = start(
        SimConfig::new(12)
            .with_clock(clock.clone())
            .with_portal(PortalSpec::scripted(P2, sessions)),
    )
    .await;
    let sched = Scheduler::start(
        vec![plan_for(P2, Duration::from_millis(300), 100)],
        &env.clients,
        env.store.clone(),
        4,
    )
    .await;

    // Poll 1 = T0: a1, a2, a3 (alice, bob) and f1 (carol) are active; a1, a2, a3 ran before T0
    // (the baseline), so only f1 counts as started.
    let first = wait_portal(&env.store, P2, |p| p.up).await;
    let t0 = at_ms(&first);
    assert_totals(&first, 1, 0, 0, 0, &[]);
    assert_active(&first, 4, 3, Some(base - 7_200 * S));

    // Step 1.
    let raw_step1 = [
        // No sessionId: counts only as incomplete, once however many polls list it.
        json!({"status": "Terminated", "username": "ghost",
               "startTime": wire_time(u + 5 * S), "endTime": wire_time(u + 8 * S)}),
        // Terminated without endTime.
        json!({"sessionId": id(30), "status": "Terminated", "username": "henry",
               "startTime": wire_time(u + 15 * S)}),
        // Unknown status: never listed under status=Active or status=Terminated, so unseen.
        json!({"sessionId": id(31), "status": "Expired", "username": "ivan",
               "startTime": wire_time(u + 25 * S), "endTime": wire_time(u + 26 * S)}),
        // Active without sessionId: incomplete once, not in the gauges.
        json!({"status": "Active", "username": "ivy", "startTime": wire_time(u + 70 * S)}),
    ];
    // Active with an id the simulator's model does not know: GetSession will answer 404.
    let ghost_active = json!({"sessionId": id(32), "status": "Active", "username": "judy",
                              "startTime": wire_time(u + 65 * S)});
    for r in raw_step1.iter().chain([&ghost_active]) {
        env.sim.add_raw_record(P2, r.clone()).expect("portal");
    }
    clock.set(u + 100 * S);
    let p1 = next_success(&env.store, P2, t0, |p| totals(p).terminated == 6).await;
    let at1 = at_ms(&p1);
    // started: f1 + b1 b2 r3 c1 + no-endTime + 404-to-be (a1 a2 a3 are the baseline);
    // terminated: a2 f1 b1 b2 r3 no-endTime; incomplete: r3, no-endTime, the two records
    // without id.
    let step1_durations = [31 * S, 45 * S, 70 * S, 2_450 * S];
    let step1_ms = 2 * (at1 - t0) + (u + 50 * S - t0) + 31 * S + 45 * S + 70 * S;
    assert_totals(&p1, 7, 6, 4, step1_ms, &step1_durations);
    // a1, a3 (alice), c1 (frank), the 404-to-be (judy).
    assert_active(&p1, 4, 3, Some(base - 7_200 * S));
    assert_eq!(requests(&p1, GET_SESSION), 0);

    // A poll without change counts nothing again (raw records are listed at every poll).
    let p1b = next_success(&env.store, P2, at1, |_| true).await;
    let at1b = at_ms(&p1b);
    assert_totals(&p1b, 7, 6, 4, step1_ms + 2 * (at1b - at1), &step1_durations);

    // Step 2: a1 and c1 end, b3 starts and ends, g1 starts, the judy record disappears.
    env.sim.clear_raw_records(P2).expect("portal");
    for r in &raw_step1 {
        env.sim.add_raw_record(P2, r.clone()).expect("portal");
    }
    clock.set(u + 200 * S);
    let p2 = next_success(&env.store, P2, at1b, |p| totals(p).terminated == 10).await;
    let at2 = at_ms(&p2);
    let step2_durations = [31 * S, 45 * S, 70 * S, 2_450 * S, 7_950 * S, 130 * S, 1_500];
    // a3 still accrues; a1 is exact to its end; the forgotten session keeps what it had (0).
    let step2_ms =
        (at2 - t0) + (u + 150 * S - t0) + (u + 50 * S - t0) + (31 + 45 + 70 + 130) * S + 1_500;
    // terminated += a1, c1, b3, forgotten (404, also incomplete).
    assert_totals(&p2, 9, 10, 5, step2_ms, &step2_durations);
    assert_active(&p2, 2, 2, Some(base - 300 * S));
    assert_eq!(
        requests(&p2, GET_SESSION),
        1,
        "one GetSession, answered 404"
    );
    assert_eq!(errors(&p2, GET_SESSION, "ResourceNotFoundException"), 1);

    // Step 3: four long sessions, one per bucket edge case.
    clock.set(u + 200 * S + 100_000 * S);
    let p3 = next_success(&env.store, P2, at2, |p| totals(p).terminated == 14).await;
    let at3 = at_ms(&p3);
    let mut step3_durations = step2_durations.to_vec();
    step3_durations.extend([50_000 * S, 90_000 * S, 900 * S, 900 * S + 1]);
    let step3_ms = step2_ms - (at2 - t0) + (at3 - t0) + (50_000 + 90_000 + 900 + 900) * S + 1;
    assert_totals(&p3, 13, 14, 5, step3_ms, &step3_durations);
    assert_eq!(
        totals(&p3).durations.counts,
        vec![3, 2, 1, 1, 1, 0, 1, 0, 0, 1, 1],
        "per bucket: 60, 300, 900, 1800, 3600, 7200, 14400, 28800, 43200, 86400, +Inf"
    );
    assert_active(&p3, 2, 2, Some(base - 300 * S));

    // And once more without change: only a3's time moves.
    let p4 = next_success(&env.store, P2, at3, |_| true).await;
    sched.shutdown().await;
    let at4 = at_ms(&p4);
    assert_totals(&p4, 13, 14, 5, step3_ms + (at4 - at3), &step3_durations);
    assert_eq!(requests(&p4, GET_SESSION), 1);
}

/// Sessions that end while far below the watermark are found only by GetSession: their
/// durations and seconds are as exact as those the scan finds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_resolved_by_get_session_are_exact() {
    let base = now_ms();
    let u = base + 600 * S;
    let clock = Clock::manual(u);
    let id = |n: u64| SimSession::id_for(2_000 + n);
    let mut sessions = vec![
        SimSession::new(id(1), "olga", base - 10_800 * S).ended(u + 50 * S),
        SimSession::new(id(2), "oscar", base - 10_860 * S).ended(u + 70 * S),
        SimSession::new(id(3), "olga", base - 14_400 * S),
    ];
    // 30 terminated sessions listed between the watermark and the three above (ended before T0).
    for i in 0..30 {
        let start = base - 7_200 * S + i * 60 * S;
        sessions.push(SimSession::new(id(10 + i as u64), "hist", start).ended(start + 600 * S));
    }
    let env = start(
        SimConfig::new(13)
            .with_clock(clock.clone())
            .with_portal(PortalSpec::scripted(P3, sessions)),
    )
    .await;
    let sched = Scheduler::start(
        vec![plan_for(P3, Duration::from_millis(300), 10)],
        &env.clients,
        env.store.clone(),
        4,
    )
    .await;
    let first = wait_portal(&env.store, P3, |p| p.up).await;
    let t0 = at_ms(&first);
    // All three ran before T0: the baseline, not starts.
    assert_totals(&first, 0, 0, 0, 0, &[]);
    assert_active(&first, 3, 2, Some(base - 14_400 * S));
    // One active page, one page of the scan (it crosses the watermark at once), and the rest of
    // the monthly-users backfill: the 30 terminated sessions are on 3 pages, the scan read the first.
    assert_eq!(requests(&first, LIST_SESSIONS), 2 + 2);
    assert!(first.monthly_active_users.is_some(), "backfill complete");

    let before = next_success(&env.store, P3, t0, |_| true).await;
    assert_eq!(
        requests(&before, LIST_SESSIONS) - requests(&first, LIST_SESSIONS),
        2
    );
    clock.set(u + 100 * S);
    let p = next_success(&env.store, P3, at_ms(&before), |p| {
        totals(p).terminated == 2
    })
    .await;
    let at = at_ms(&p);
    assert_eq!(
        requests(&p, LIST_SESSIONS) - requests(&before, LIST_SESSIONS),
        2
    );
    assert_eq!(
        requests(&p, GET_SESSION) - requests(&before, GET_SESSION),
        2
    );
    let durations = [600 * S + 50 * S + 10_800 * S, 600 * S + 70 * S + 10_860 * S];
    let ms = (u + 50 * S - t0) + (u + 70 * S - t0) + (at - t0);
    assert_totals(&p, 0, 2, 0, ms, &durations);
    assert_active(&p, 1, 1, Some(base - 14_400 * S));

    let after = next_success(&env.store, P3, at, |_| true).await;
    sched.shutdown().await;
    assert_eq!(requests(&after, GET_SESSION), requests(&p, GET_SESSION));
    assert_eq!(
        requests(&after, LIST_SESSIONS) - requests(&p, LIST_SESSIONS),
        2
    );
    assert_totals(&after, 0, 2, 0, ms + (at_ms(&after) - at), &durations);
}

// ---------------------------------------------------------------------------------------------
// 3. Nothing counted twice across retries
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttled_portal_counts_every_session_once() {
    const TICKS: i64 = 70;
    const TICK_MS: i64 = 10 * S;
    let base = now_ms();
    let u = base + 600 * S;
    let clock = Clock::manual(u);
    let id = |n: u64| SimSession::id_for(3_000 + n);
    let mut sessions = Vec::new();
    // Six sessions active at T0; three end during the run.
    for i in 0..6i64 {
        let s = SimSession::new(id(i as u64), format!("u{i}"), base - 3_600 * S - i * 60 * S);
        sessions.push(if i < 3 {
            s.ended(u + (i + 1) * 97 * S)
        } else {
            s
        });
    }
    // 150 sessions ended before T0, listed between the watermark and the six above: once those
    // end, GetSession or more pages of the scan (throttled too, whichever is cheaper: it depends
    // on how many end between two successful polls) find them.
    for i in 0..150i64 {
        let start = base - 3_000 * S + i * 15 * S;
        sessions.push(SimSession::new(id(1_000 + i as u64), "hist", start).ended(start + 60 * S));
    }
    // 120 sessions starting every 5 s over the run, 3 s to 150 s long; every tenth stays open.
    for n in 0..120i64 {
        let start = u + 5 * S + n * 5 * S;
        let s = SimSession::new(id(100 + n as u64), format!("u{}", n % 7), start);
        sessions.push(if n % 10 == 9 {
            s
        } else {
            s.ended(start + ((n * 37) % 50 + 1) * 3 * S)
        });
    }
    let mut spec = PortalSpec::scripted(P4, sessions);
    spec.faults = Faults::throttle(0.5, 0);
    let env = start(
        SimConfig::new(14)
            .with_clock(clock.clone())
            .with_portal(spec),
    )
    .await;
    // An untrackable record, listed at every poll: it counts once. (The simulator lists raw
    // records on the last page whatever their startTime, and the descending scan stops long
    // before the last page here, so a raw Terminated record would never be seen.)
    env.sim
        .add_raw_record(
            P4,
            json!({"status": "Active", "username": "ghost", "startTime": wire_time(u + 3 * S)}),
        )
        .expect("portal");
    let sched = Scheduler::start(
        vec![plan_for(P4, Duration::from_millis(200), 100)],
        &env.clients,
        env.store.clone(),
        4,
    )
    .await;

    // T0: the first successful poll (the only one with no session time yet).
    let first = wait_portal(&env.store, P4, |p| p.up).await;
    let t0 = at_ms(&first);
    // The six ran before T0: the baseline, not starts.
    assert_totals(&first, 0, 0, 1, 0, &[]);

    // Move the simulator on every 40 ms, regardless of the polls (so also in the middle of a
    // poll, between its pages and its retries).
    let mover = {
        let clock = clock.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(40));
            for _ in 0..TICKS {
                tick.tick().await;
                clock.advance(TICK_MS);
            }
        })
    };
    mover.await.expect("mover");
    let done = now_ms();
    let last = next_success(&env.store, P4, done, |_| true).await;
    sched.shutdown().await;
    let at = at_ms(&last);
    let final_clock = clock.now_ms();
    assert_eq!(final_clock, u + TICKS * TICK_MS);

    // The truth at the final clock.
    let truth: Vec<SimSession> = env
        .sim
        .sessions_at(P4, final_clock)
        .into_iter()
        .filter(|s| s.end_ms.is_none_or(|e| e >= t0))
        .collect();
    assert_eq!(truth.len(), 126);
    let mut session_ms = 0;
    let mut durations = Vec::new();
    let mut open = Vec::new();
    for s in &truth {
        let from = s.start_ms.max(t0);
        match s.end_ms {
            Some(e) => {
                session_ms += e - from;
                durations.push(e - s.start_ms);
            }
            None => {
                session_ms += (at - from).max(0);
                open.push(s);
            }
        }
    }
    let users: BTreeSet<_> = open.iter().map(|s| s.username.clone()).collect();
    let oldest = open.iter().map(|s| s.start_ms).min();
    let throttled = errors(&last, LIST_SESSIONS, "ThrottlingException")
        + errors(&last, GET_SESSION, "ThrottlingException");
    eprintln!(
        "throttled: {} ListSessions + {} GetSession requests, {throttled} throttled; \
         started={} terminated={} open={}",
        requests(&last, LIST_SESSIONS),
        requests(&last, GET_SESSION),
        truth.len(),
        durations.len(),
        open.len()
    );
    assert!(
        throttled > 0,
        "the portal was throttled: {:?}",
        last.api_errors
    );
    let started = truth.iter().filter(|s| s.start_ms >= t0).count() as u64;
    assert_eq!(started, truth.len() as u64 - 6, "all but the baseline");
    assert_totals(
        &last,
        started,
        durations.len() as u64,
        1,
        session_ms,
        &durations,
    );
    assert_active(&last, open.len() as u64, users.len() as u64, oldest);
}

// ---------------------------------------------------------------------------------------------
// Monthly-users backfill cut short by the poll timeout
// ---------------------------------------------------------------------------------------------

/// A backfill cycle that runs out of time must not skip the pages it read: every user of the
/// month is counted once the backfill completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backfill_cut_short_by_the_timeout_loses_no_monthly_users() {
    const USERS: i64 = 120;
    let base = now_ms();
    let clock = Clock::manual(base);
    // One short session per user, all overlapping the current month, all ended before T0.
    let sessions = (0..USERS)
        .map(|i| {
            SimSession::new(
                SimSession::id_for(5_000 + i as u64),
                format!("month{i}"),
                base - 600 * S - i * S,
            )
            .ended(base - 60 * S)
        })
        .collect();
    let mut spec = PortalSpec::scripted(P5, sessions);
    // 20 ms per request: a poll (2 requests) fits in the 300 ms timeout, 100 backfill pages don't.
    spec.faults = Faults {
        latency: Duration::from_millis(20),
        ..Faults::none()
    };
    let env = start(SimConfig::new(15).with_clock(clock).with_portal(spec)).await;
    let mut plan = plan_for(P5, Duration::from_millis(500), 2);
    plan.timeout = Duration::from_millis(300);
    let sched = Scheduler::start(vec![plan], &env.clients, env.store.clone(), 4).await;
    let done = wait_portal(&env.store, P5, |p| p.monthly_active_users.is_some()).await;
    sched.shutdown().await;
    let (month_start, _) = month_bounds(at_ms(&done));
    assert!(
        base - 60 * S >= month_start,
        "run again: the month began a minute ago"
    );
    eprintln!(
        "backfill: {} ListSessions requests, monthly_active_users={:?}",
        requests(&done, LIST_SESSIONS),
        done.monthly_active_users
    );
    assert_eq!(done.monthly_active_users, Some(USERS as u64));
    assert_totals(&done, 0, 0, 0, 0, &[]);
}

// ---------------------------------------------------------------------------------------------
// 4. Concurrency between polls: the peak and the time at capacity
// ---------------------------------------------------------------------------------------------

/// A burst that fills the portal between two polls: the sampled `active_sessions` never sees it
/// (the next poll finds its sessions already Terminated), but the peak and the time at capacity,
/// computed from their API start and end times, show it exactly. The limit comes from GetPortal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_between_two_polls_shows_in_the_peak_and_at_capacity_not_in_active_sessions() {
    const LIMIT: u32 = 5;
    let base = now_ms();
    // The simulator's clock stays at `base`, before T0, until the burst is revealed in one step:
    // the burst's sessions start after T0, so no poll before that step can list them.
    let clock = Clock::manual(base);
    let id = |n: u64| SimSession::id_for(6_000 + n);
    let long = vec![
        SimSession::new(id(0), "ann", base - 3_600 * S),
        SimSession::new(id(1), "ben", base - 1_800 * S),
    ];
    let mut spec = PortalSpec::scripted(P6, long);
    spec.max_concurrent_sessions = LIMIT;
    let env = start(
        SimConfig::new(16)
            .with_clock(clock.clone())
            .with_portal(spec),
    )
    .await;
    // Polls 2 s apart (±5%): the burst below lies well inside one interval.
    let sched = Scheduler::start(
        vec![plan_for(P6, Duration::from_secs(2), 100)],
        &env.clients,
        env.store.clone(),
        4,
    )
    .await;

    // A poll after which the limit is known (GetPortal, with the ARN learned from the sessions).
    let before = wait_portal(&env.store, P6, |p| {
        p.up && p
            .totals
            .as_ref()
            .is_some_and(|t| t.at_capacity_seconds.is_some())
    })
    .await;
    let a0 = at_ms(&before);
    assert_eq!(
        before.meta.as_ref().and_then(|m| m.max_concurrent_sessions),
        Some(u64::from(LIMIT))
    );
    assert_eq!((active(&before).sessions, active(&before).peak), (2, 2));
    assert_eq!(totals(&before).at_capacity_seconds, Some(0.0));

    // The burst, 100 ms to 1 s after that poll: with the two long sessions, 5 at once during
    // [300, 800) ms. x3 ends at 700 ms exactly when x4 starts: the end goes first, so the
    // concurrency stays 5 (a start first would make it 6).
    let burst = [(100, 900), (200, 800), (300, 700), (700, 1_000)];
    for (i, (start, end)) in burst.iter().enumerate() {
        let s = SimSession::new(id(10 + i as u64), format!("x{i}"), a0 + start).ended(a0 + end);
        env.sim.add_session(P6, s).expect("portal");
    }
    clock.set(a0 + 1_000);
    let after = next_success(&env.store, P6, a0, |_| true).await;
    let a1 = at_ms(&after);
    assert!(
        a1 >= a0 + 1_000,
        "the burst must lie inside the interval ({a0}, {a1}]"
    );
    assert_eq!(totals(&after).started, 4);
    assert_eq!(totals(&after).terminated, 4);
    // The sample at the poll: the two long sessions only.
    assert_eq!(active(&after).sessions, 2);
    assert_eq!(active(&after).peak, 5);
    assert_eq!(totals(&after).at_capacity_seconds, Some(0.5));
    let text = workspacesweb_exporter::exposition::text::render_main(Board {
        portals: std::slice::from_ref(&after),
        discovery: &[],
        status: ExporterStatus::default(),
    });
    for line in [
        format!("workspacesweb_active_sessions{{portal_id=\"{P6}\",env=\"test\"}} 2\n"),
        format!("workspacesweb_active_sessions_peak{{portal_id=\"{P6}\",env=\"test\"}} 5\n"),
        format!(
            "workspacesweb_portal_at_capacity_seconds_total{{portal_id=\"{P6}\",env=\"test\"}} 0.5\n"
        ),
        format!(
            "workspacesweb_portal_max_concurrent_sessions{{portal_id=\"{P6}\",env=\"test\"}} 5\n"
        ),
    ] {
        assert!(text.contains(&line), "{line} not in\n{text}");
    }

    // The next interval is quiet: the peak falls back, the counter keeps its 0.5 s.
    let quiet = next_success(&env.store, P6, a1, |_| true).await;
    sched.shutdown().await;
    assert_eq!((active(&quiet).sessions, active(&quiet).peak), (2, 2));
    assert_eq!(totals(&quiet).at_capacity_seconds, Some(0.5));
}

// ---------------------------------------------------------------------------------------------
// GetSession answering an unknown status (the simulator cannot produce it: ledger level)
// ---------------------------------------------------------------------------------------------

/// A session that vanished from the Active listing and whose GetSession answers a status this
/// exporter does not know (say `Expired`) has ended, as far as the exporter can tell: it must
/// leave the pending set, or the poller sends one GetSession for it at every poll for 35 days
/// (until the API forgets it), and `terminated` never counts it.
#[test]
fn vanished_session_with_an_unknown_status_is_resolved() {
    use workspacesweb_exporter::ledger::{Ledger, LedgerSettings};
    use workspacesweb_exporter::session::{SessionRecord, SessionStatus};

    let t0 = 1_764_000_000_000;
    let rec = |status: SessionStatus| SessionRecord {
        id: Some(SimSession::id_for(9)),
        username: Some("ulla".into()),
        status,
        start_ms: Some(t0 - 60 * S),
        end_ms: None,
    };
    let mut ledger = Ledger::new(LedgerSettings::default(), t0);
    ledger.apply_poll(t0, &[rec(SessionStatus::Active)], &[]);
    // Next poll: absent from the listing, so the poller asks GetSession, which says "Expired".
    assert_eq!(ledger.pending(&[]).len(), 1);
    ledger.apply_poll(
        t0 + 60 * S,
        &[],
        &[rec(SessionStatus::Unknown("Expired".into()))],
    );
    let t = ledger.totals();
    // It ran before T0: the baseline, not a start.
    assert_eq!((t.started, t.incomplete), (0, 1));
    assert!(
        ledger.pending(&[]).is_empty(),
        "GetSession would be sent again at every poll"
    );
    assert_eq!(t.terminated, 1, "it ended, as far as the exporter can tell");
    assert_eq!(ledger.session_ms(), 0, "listed only at T0: no time accrued");
}

// ---------------------------------------------------------------------------------------------
// 6. Vanished sessions: more pages of the Terminated scan, or one GetSession each
// ---------------------------------------------------------------------------------------------

/// What one poll cost, from the snapshot before it and its own: (ListSessions, GetSession). The
/// simulator counted as much.
#[track_caller]
fn poll_cost(
    sim: &Simulator,
    portal: &str,
    prev: &PortalSnapshot,
    cur: &PortalSnapshot,
) -> (u64, u64) {
    for op in [LIST_SESSIONS, GET_SESSION] {
        assert_eq!(sim.request_count(portal, op), requests(cur, op), "{op}");
    }
    let delta = |op| requests(cur, op) - requests(prev, op);
    (delta(LIST_SESSIONS), delta(GET_SESSION))
}

/// A plan polling every 300 ms whose timeout never cuts a poll (that would change the figures).
fn budget_plan(portal: &str, page_size: u32) -> workspacesweb_exporter::poll::PortalPlan {
    let mut p = plan_for(portal, Duration::from_millis(300), page_size);
    p.timeout = Duration::from_secs(10);
    p
}

/// History for the vanished-session tests: `n` terminated sessions, one a minute from 2 minutes
/// before T0 down, each 30 s long (ended before T0: never counted).
fn minute_history(base: UnixMillis, n: i64, first_id: u64) -> Vec<SimSession> {
    (0..n)
        .map(|i| {
            let start = base - 120 * S - i * 60 * S;
            SimSession::new(SimSession::id_for(first_id + i as u64), "hist", start)
                .ended(start + 30 * S)
        })
        .collect()
}

/// 220 active sessions (page size 100) under a history of one terminated session a minute.
/// When 30 of them end at once, 3 more pages of the Terminated scan find them all, where one
/// GetSession each would cost 30 requests; when one that started 1,000 minutes before T0 ends,
/// one GetSession is cheaper than the 9 pages of history above it. Every counter stays exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vanished_sessions_cost_the_cheaper_of_more_scan_pages_and_get_session() {
    const MIN: i64 = 60 * S;
    let base = now_ms();
    // The simulator runs 10 minutes ahead: no session ends before a poll that listed it.
    let u = base + 600 * S;
    let clock = Clock::manual(u);
    let mut sessions = minute_history(base, 3_000, 100_000);
    // 219 sessions active since 300 to 191 minutes before T0, one every 30 s; every 7th of them
    // (30 sessions, started 300 to 198.5 minutes before T0) ends at u + 50 s. And one session
    // active since 1,000 minutes before T0, which ends at u + 150 s.
    let ending: Vec<u64> = (0..219).step_by(7).take(30).collect();
    let mut open_starts = Vec::new();
    let mut durations = Vec::new();
    for i in 0..219u64 {
        let start = base - 300 * MIN + i as i64 * 30 * S;
        let s = SimSession::new(SimSession::id_for(i), format!("u{}", i % 40), start);
        if ending.contains(&i) {
            sessions.push(s.ended(u + 50 * S));
            durations.push(u + 50 * S - start);
        } else {
            sessions.push(s);
            open_starts.push(start);
        }
    }
    let deep_start = base - 1_000 * MIN;
    sessions.push(SimSession::new(SimSession::id_for(500), "deep", deep_start).ended(u + 150 * S));
    assert_eq!((ending.len(), open_starts.len()), (30, 189));
    let env = start(
        SimConfig::new(17)
            .with_clock(clock.clone())
            .with_portal(PortalSpec::scripted(P7, sessions)),
    )
    .await;
    let sched = Scheduler::start(
        vec![budget_plan(P7, 100)],
        &env.clients,
        env.store.clone(),
        4,
    )
    .await;

    // T0: 220 active, all started before T0 (the baseline); the monthly-users backfill (31
    // pages) completes within the first cycle.
    let first = wait_portal(&env.store, P7, |p| p.up).await;
    let t0 = at_ms(&first);
    assert!(first.monthly_active_users.is_some(), "backfill complete");
    assert_totals(&first, 0, 0, 0, 0, &[]);
    assert_eq!(active(&first).sessions, 220);
    let prev = next_success(&env.store, P7, t0, |_| true).await;
    // A steady poll: 3 Active pages and the first page of the scan, which crosses the watermark.
    assert_eq!(poll_cost(&env.sim, P7, &first, &prev), (4, 0));

    // The 30 end at once.
    clock.set(u + 100 * S);
    let p1 = next_success(&env.store, P7, at_ms(&prev), |p| totals(p).terminated == 30).await;
    // 190 active: 2 pages. The scan's first page holds the history of the last 100 minutes
    // (2 to 101 minutes before T0): one session a minute, so the 30 sessions 300 to 198.5
    // minutes down are estimated about 200 sessions (3 pages) further, fewer than 30 GetSession.
    // The next pages hold the history and the vanished sessions by start time: 102 to 200
    // minutes down (with the first vanished one), then 77 more minutes of history with 22 of
    // them, then the last 7: 3 pages, and not one GetSession (it was 3 ListSessions and 30
    // GetSession before this choice was made).
    assert_eq!(poll_cost(&env.sim, P7, &prev, &p1), (2 + 1 + 3, 0));
    let at1 = at_ms(&p1);
    // Exact: the 30 from T0 to their end, the 190 others from T0 to this poll.
    let ms = 30 * (u + 50 * S - t0) + 190 * (at1 - t0);
    assert_totals(&p1, 0, 30, 0, ms, &durations);
    let open_users: BTreeSet<Option<String>> = env
        .sim
        .sessions_at(P7, u + 100 * S)
        .into_iter()
        .filter(|s| s.end_ms.is_none())
        .map(|s| s.username)
        .collect();
    assert_active(&p1, 190, open_users.len() as u64, Some(deep_start));

    // A steady poll: nothing left to resolve.
    let p1b = next_success(&env.store, P7, at1, |_| true).await;
    assert_eq!(poll_cost(&env.sim, P7, &p1, &p1b), (3, 0));

    // The deep one ends: about 900 sessions of history above it (9 pages) against 1 GetSession.
    clock.set(u + 200 * S);
    let p2 = next_success(&env.store, P7, at_ms(&p1b), |p| totals(p).terminated == 31).await;
    sched.shutdown().await;
    assert_eq!(poll_cost(&env.sim, P7, &p1b, &p2), (3, 1));
    let at2 = at_ms(&p2);
    durations.push(u + 150 * S - deep_start);
    let ms = 30 * (u + 50 * S - t0) + (u + 150 * S - t0) + 189 * (at2 - t0);
    assert_totals(&p2, 0, 31, 0, ms, &durations);
    assert_eq!(active(&p2).sessions, 189);
}

/// Sessions gone from the listing entirely (past the service's retention; here records the
/// simulator drops) are not found by more pages of the scan: they still fall back to
/// GetSession, which says they no longer exist, and the counters stay exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vanished_sessions_gone_from_the_listing_fall_back_to_get_session() {
    const MIN: i64 = 60 * S;
    let base = now_ms();
    let u = base + 600 * S;
    let clock = Clock::manual(u);
    let env = start(
        SimConfig::new(18)
            .with_clock(clock.clone())
            .with_portal(PortalSpec::scripted(P8, minute_history(base, 300, 100_000))),
    )
    .await;
    // Three active sessions the simulator's model does not know: once their records are
    // dropped, no listing holds them and GetSession answers 404, as past the retention.
    let starts = [150 * MIN + 30 * S, 160 * MIN + 30 * S, 170 * MIN + 30 * S];
    for (k, ago) in starts.iter().enumerate() {
        env.sim
            .add_raw_record(
                P8,
                json!({"sessionId": SimSession::id_for(k as u64), "status": "Active",
                       "username": format!("gone{k}"), "startTime": wire_time(base - ago)}),
            )
            .expect("portal");
    }
    let sched = Scheduler::start(
        vec![budget_plan(P8, 100)],
        &env.clients,
        env.store.clone(),
        4,
    )
    .await;
    let first = wait_portal(&env.store, P8, |p| p.up).await;
    let t0 = at_ms(&first);
    assert_totals(&first, 0, 0, 0, 0, &[]);
    assert_eq!(active(&first).sessions, 3);
    let prev = next_success(&env.store, P8, t0, |_| true).await;
    env.sim.clear_raw_records(P8).expect("portal");
    let p = next_success(&env.store, P8, at_ms(&prev), |p| totals(p).terminated == 3).await;
    sched.shutdown().await;
    // An empty Active page and the scan's first page (history 2 to 101 minutes down). The
    // three, 150 to 171 minutes down, are estimated one page further: cheaper than 3
    // GetSession, so that page is listed (102 to 201 minutes down); it passes below them
    // without them, and the three go to GetSession all the same: one page more than GetSession
    // alone, the price of a listing that no longer holds them.
    assert_eq!(poll_cost(&env.sim, P8, &prev, &p), (1 + 1 + 1, 3));
    assert_eq!(errors(&p, GET_SESSION, "ResourceNotFoundException"), 3);
    // Ended, incomplete (no end time), with the time they were listed: T0 to the last poll
    // that listed them.
    assert_totals(&p, 0, 3, 3, 3 * (at_ms(&prev) - t0), &[]);
    assert_eq!(active(&p).sessions, 0);
}

// -------------------------------------------------------------------------------------------------
// The first poll's Terminated scan is the start of the monthly-users backfill
// -------------------------------------------------------------------------------------------------

/// The backfill does not read again what the first poll's Terminated scan read (the same query,
/// newest first, from the top): a month whose ended sessions fit in the scan's pages needs no
/// backfill request at all, and a longer one continues from the scan's `nextToken`. Monthly
/// users are exact either way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_backfill_continues_from_the_first_polls_scan() {
    let base = now_ms();
    // One running session and `ended` sessions that ended in the last hours, by 7 users.
    let portal = |portal_id: &str, first_id: u64, ended: u64| {
        let mut sessions = vec![SimSession::new(
            SimSession::id_for(first_id),
            "runner",
            base - 60 * S,
        )];
        for i in 0..ended {
            let start = base - 3_600 * S - i as i64 * 300 * S;
            sessions.push(
                SimSession::new(
                    SimSession::id_for(first_id + 1 + i),
                    format!("user{}", i % 7),
                    start,
                )
                .ended(start + 120 * S),
            );
        }
        PortalSpec::scripted(portal_id, sessions)
    };
    let env = start(
        SimConfig::new(21)
            .with_clock(Clock::manual(base))
            .with_portal(portal(P4, 4_000, 8))
            .with_portal(portal(P5, 5_000, 25)),
    )
    .await;
    env.sim.log_requests(true);
    let hour = Duration::from_secs(3600);
    let sched = Scheduler::start(
        vec![plan_for(P4, hour, 10), plan_for(P5, hour, 10)],
        &env.clients,
        env.store.clone(),
        4,
    )
    .await;
    // Pages of 10: P4's 8 ended sessions are one Terminated page, P5's 25 are three.
    for (portal_id, terminated_pages) in [(P4, 1), (P5, 3)] {
        let first = wait_portal(&env.store, portal_id, |p| {
            p.up && p.monthly_active_users.is_some()
        })
        .await;
        // Before, the backfill read the scan's first page again: one more ListSessions.
        assert_eq!(
            requests(&first, LIST_SESSIONS),
            1 + terminated_pages,
            "{portal_id}: one Active page and each Terminated page once"
        );
        assert_eq!(first.monthly_active_users, Some(1 + 7), "{portal_id}");
        let log = env.sim.request_log(Some(portal_id));
        let terminated: Vec<&str> = log
            .iter()
            .filter(|r| r.operation == "ListSessions" && r.query.contains("status=Terminated"))
            .map(|r| r.query.as_str())
            .collect();
        assert_eq!(terminated.len() as u64, terminated_pages, "{terminated:?}");
        assert_eq!(
            terminated
                .iter()
                .filter(|q| !q.contains("nextToken"))
                .count(),
            1,
            "{portal_id}: only the poll's scan starts from the top: {terminated:?}"
        );
    }
    sched.shutdown().await;
}
