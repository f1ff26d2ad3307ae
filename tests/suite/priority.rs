//! Priority in the client-side rate limiter, seen from the simulator's request log: while a
//! portal's first poll is under way, the monthly-users backfill of another portal (and every
//! other background request) waits, although it was queued first. Real SDK over HTTP; the
//! assertions are about the order of the requests, never about how long anything took.

use std::time::Duration;

use crate::common::*;
use workspacesweb_exporter::clock::now_ms;
use workspacesweb_exporter::poll::Scheduler;
use workspacesweb_sim::{Clock, LoggedRequest, PortalSpec, SimConfig, SimSession};

const HOUR: Duration = Duration::from_secs(3600);
const PAGE: u32 = 5;
/// Low enough that one slot (250 ms) is far longer than a request's round trip on loopback.
const RATE: f64 = 4.0;

/// The portal whose backfill is under way when the others start.
const EARLY: &str = "cccccccc-0000-4000-8000-000000000001";
const LATE: [&str; 3] = [
    "cccccccc-0000-4000-8000-000000000002",
    "cccccccc-0000-4000-8000-000000000003",
    "cccccccc-0000-4000-8000-000000000004",
];

/// A portal with `active` running sessions and `ended` terminated ones, all started within the
/// last 20 hours (so every terminated one is in the backfill's reach, whatever the date).
fn portal(id: &str, first_id: u64, active: u64, ended: u64, base: i64) -> PortalSpec {
    let minute = 60_000;
    let mut sessions = Vec::new();
    for i in 0..active {
        let start = base - (i as i64 + 2) * minute;
        sessions.push(SimSession::new(
            SimSession::id_for(first_id + i),
            format!("user{}", i % 9),
            start,
        ));
    }
    for i in 0..ended {
        let start = base - 3_600_000 - (i as i64) * 5 * minute;
        sessions.push(
            SimSession::new(
                SimSession::id_for(first_id + active + i),
                format!("user{}", i % 13),
                start,
            )
            .ended(start + 2 * minute),
        );
    }
    PortalSpec::scripted(id, sessions)
}

fn is(r: &LoggedRequest, operation: &str, status: &str) -> bool {
    r.operation == operation
        && r.query
            .split('&')
            .any(|kv| kv == format!("status={status}"))
}

/// Indices in `log` of the first poll of `portal`: its Active pages, then the first page of its
/// Terminated scan (which reaches the watermark at once: every terminated session is older).
fn first_poll(log: &[LoggedRequest], portal: &str) -> Vec<usize> {
    let mine: Vec<usize> = (0..log.len())
        .filter(|&i| log[i].portal_id == portal)
        .collect();
    let actives = mine
        .iter()
        .take_while(|&&i| is(&log[i], "ListSessions", "Active"))
        .count();
    let scan = mine[actives];
    assert!(
        is(&log[scan], "ListSessions", "Terminated"),
        "the Terminated scan follows the Active pages: {:?}",
        log[scan]
    );
    mine[..=actives].to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_polls_go_before_a_backfill_queued_ahead_of_them() {
    let base = now_ms();
    let mut sim = SimConfig::new(16)
        .with_clock(Clock::manual(base))
        // 150 ended sessions: 30 backfill pages, more than the others' first polls take.
        .with_portal(portal(EARLY, 0, 1, 150, base));
    for (k, id) in LATE.iter().enumerate() {
        // 38 running sessions: 8 Active pages per first poll.
        sim = sim.with_portal(portal(id, 1000 * (k as u64 + 1), 38, 5, base));
    }
    let env = start(sim).await;
    env.sim.log_requests(true);
    env.clients.set_rate(Some(RATE));

    // The early portal alone first; its backfill step may take its time (it waits a lot).
    let mut early = plan(EARLY, HOUR, PAGE);
    early.timeout = Duration::from_secs(300);
    let mut sched = Scheduler::start(vec![early.clone()], &env.clients, env.store.clone(), 8).await;
    let backfill_pages = |log: &[LoggedRequest]| {
        log.iter()
            .filter(|r| r.portal_id == EARLY && is(r, "ListSessions", "Terminated"))
            .count()
            .saturating_sub(1)
    };
    poll_until(Duration::from_secs(60), || {
        (backfill_pages(&env.sim.request_log(None)) >= 2).then_some(())
    })
    .expect("the early portal's backfill is under way");

    // Now the late portals: their first polls meet a backfill that is already waiting.
    let mut plans = vec![early];
    plans.extend(LATE.iter().map(|id| plan(id, HOUR, PAGE)));
    sched.apply(plans).await;
    for id in LATE {
        wait_portal(&env.store, id, |p| p.polled).await;
    }
    let log = env.sim.request_log(None);
    let polls: Vec<Vec<usize>> = LATE.iter().map(|id| first_poll(&log, id)).collect();
    let last_poll_request = polls.iter().flatten().max().copied().expect("polls");
    // Not vacuous: the early backfill was still waiting after the last first-poll request.
    let pending = poll_until(Duration::from_secs(60), || {
        let log = env.sim.request_log(None);
        log.iter()
            .skip(last_poll_request + 1)
            .any(|r| r.portal_id == EARLY && is(r, "ListSessions", "Terminated"))
            .then_some(())
    });
    sched.shutdown().await;
    assert!(
        pending.is_some(),
        "the early backfill went on after the first polls"
    );
    for (id, poll) in LATE.iter().zip(&polls) {
        assert_eq!(poll.len(), 9, "{id}: 8 Active pages and 1 Terminated page");
    }

    // Between two requests of one portal's first poll, a background request (a backfill page or
    // GetPortal, of any portal) can only take a slot that came due while that poll had no request
    // waiting: while its previous answer was still on the way, for a whole slot (250 ms), at the
    // same time as every other poll in progress. With first-in-first-out slots, the waiting
    // backfill page would take every other slot: about one in each of these 24 gaps.
    let poll_requests: std::collections::HashSet<usize> = polls.iter().flatten().copied().collect();
    let background = |i: usize| {
        log[i].operation == "GetPortal"
            || (is(&log[i], "ListSessions", "Terminated") && !poll_requests.contains(&i))
    };
    let mut overtaking = Vec::new();
    for poll in &polls {
        for gap in poll.windows(2) {
            for i in (gap[0] + 1..gap[1]).filter(|&i| background(i)) {
                overtaking.push((i, log[i].portal_id.clone(), log[i].operation.clone()));
            }
        }
    }
    assert!(
        overtaking.len() <= 1,
        "background requests sent while a first poll was waiting: {overtaking:?}"
    );
    // And the early portal's backfill got no slot at all between the first and the last
    // first-poll request, but for such a race.
    let first_poll_request = polls.iter().flatten().min().copied().expect("polls");
    let early_pages_meanwhile = (first_poll_request..last_poll_request)
        .filter(|&i| log[i].portal_id == EARLY)
        .count();
    assert!(
        early_pages_meanwhile <= 1,
        "the early backfill took {early_pages_meanwhile} slots while first polls waited"
    );
}

/// One concurrency slot, three portals, a rate limit: each portal is published as soon as its
/// first poll is done and gives its slot back before its backfill step, which waits until every
/// portal was polled once, so every first poll goes before any backfill page. (Keeping the slot
/// through the backfill step, as before, the first two portals' backfills came before the third
/// portal's first poll.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_rate_limit_every_first_poll_goes_before_any_backfill_step() {
    const PORTALS: [&str; 3] = [
        "dddddddd-0000-4000-8000-000000000001",
        "dddddddd-0000-4000-8000-000000000002",
        "dddddddd-0000-4000-8000-000000000003",
    ];
    let base = now_ms();
    let mut sim = SimConfig::new(17).with_clock(Clock::manual(base));
    for (k, id) in PORTALS.iter().enumerate() {
        // 4 running sessions: one Active page; 15 ended: a backfill of 3 or 4 pages.
        sim = sim.with_portal(portal(id, 1000 * (k as u64 + 1), 4, 15, base));
    }
    let env = start(sim).await;
    env.sim.log_requests(true);
    // A burst of 3: the first portal's poll (2 requests) does not even wait.
    env.clients.set_rate(Some(3.0));
    let plans = PORTALS.iter().map(|id| plan(id, HOUR, PAGE)).collect();
    let sched = Scheduler::start(plans, &env.clients, env.store.clone(), 1).await;
    for id in PORTALS {
        wait_portal(&env.store, id, |p| p.monthly_active_users.is_some()).await;
    }
    sched.shutdown().await;
    let log = env.sim.request_log(None);
    let polls: Vec<Vec<usize>> = PORTALS.iter().map(|id| first_poll(&log, id)).collect();
    let last_poll_request = polls.iter().flatten().max().copied().expect("polls");
    // Portals with a request (backfill page or GetPortal) before the last first-poll request,
    // other than their first poll's.
    let backfilled_first: Vec<&str> = PORTALS
        .iter()
        .zip(&polls)
        .filter(|(id, poll)| {
            let scan = *poll.last().expect("a scan");
            log.iter()
                .enumerate()
                .any(|(i, r)| i > scan && i < last_poll_request && r.portal_id == **id)
        })
        .map(|(id, _)| *id)
        .collect();
    assert!(
        backfilled_first.is_empty(),
        "portals whose backfill went before another's first poll: {backfilled_first:?}"
    );
}

/// One concurrency slot, four portals whose month fits in their first Terminated page (no
/// backfill step), a rate limit: each portal gives its slot back before its `GetPortal`, which
/// waits until every portal was polled once, so every first poll goes before any `GetPortal`.
/// (Keeping the slot through `GetPortal`, as before, each portal's came before the next portal's
/// first poll: a third more requests under the slot, with hundreds of portals discovered at once.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_rate_limit_every_first_poll_goes_before_any_get_portal() {
    const PORTALS: [&str; 4] = [
        "eeeeeeee-0000-4000-8000-000000000001",
        "eeeeeeee-0000-4000-8000-000000000002",
        "eeeeeeee-0000-4000-8000-000000000003",
        "eeeeeeee-0000-4000-8000-000000000004",
    ];
    let base = now_ms();
    let mut sim = SimConfig::new(18).with_clock(Clock::manual(base));
    for (k, id) in PORTALS.iter().enumerate() {
        // 3 running sessions, none ended: one Active page, one empty Terminated page.
        sim = sim.with_portal(portal(id, 1000 * (k as u64 + 1), 3, 0, base));
    }
    let env = start(sim).await;
    env.sim.log_requests(true);
    // Out of the way, but set: the portals yield their slot only under a client-side limit.
    env.clients.set_rate(Some(1000.0));
    let plans = PORTALS.iter().map(|id| plan(id, HOUR, PAGE)).collect();
    let sched = Scheduler::start(plans, &env.clients, env.store.clone(), 1).await;
    for id in PORTALS {
        wait_portal(&env.store, id, |p| p.meta.is_some()).await;
    }
    sched.shutdown().await;
    let log = env.sim.request_log(None);
    let polls: Vec<Vec<usize>> = PORTALS.iter().map(|id| first_poll(&log, id)).collect();
    let last_poll_request = polls.iter().flatten().max().copied().expect("polls");
    let early: Vec<&str> = log[..last_poll_request]
        .iter()
        .filter(|r| r.operation == "GetPortal")
        .map(|r| r.portal_id.as_str())
        .collect();
    assert!(
        early.is_empty(),
        "GetPortal before another portal's first poll: {early:?}"
    );
    assert_eq!(
        log.iter().filter(|r| r.operation == "GetPortal").count(),
        PORTALS.len()
    );
}
