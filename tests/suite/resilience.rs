//! Resilience: faults injected through the simulator (throttling, server errors, latency), the
//! client-side rate limit, resuming a poll cut short, and isolation between portals and /metrics.
//! No assertion depends on how fast the machine is: waits are bounded hang guards, and rates are
//! checked against the measured span of the run.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use crate::common::*;
use workspacesweb_exporter::aws::LIST_SESSIONS;
use workspacesweb_exporter::clock::now_ms;
use workspacesweb_exporter::poll::Scheduler;
use workspacesweb_sim::{Clock, Faults, LoggedRequest, PortalSpec, SimConfig, SimSession};

const HOUR: Duration = Duration::from_secs(3600);

fn portal_id(i: usize) -> String {
    format!("bbbbbbbb-0000-4000-8000-{i:012}")
}

fn param<'a>(r: &'a LoggedRequest, name: &str) -> Option<&'a str> {
    r.query.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == name).then_some(v)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_portals_in_one_region_share_the_rate_limit() {
    const RATE: f64 = 5.0;
    const PORTALS: usize = 10;
    let base = now_ms();
    let mut sim = SimConfig::new(41).with_clock(Clock::manual(base));
    for i in 0..PORTALS {
        sim = sim.with_portal(scripted(&portal_id(i), 8, base, 7));
    }
    let env = start(sim).await;
    env.sim.log_requests(true);
    env.clients.set_rate(Some(RATE));
    let plans = (0..PORTALS)
        .map(|i| plan(&portal_id(i), HOUR, 10))
        .collect();
    let begun = tokio::time::Instant::now();
    let sched = Scheduler::start(plans, &env.clients, env.store.clone(), PORTALS).await;
    tokio::time::timeout(
        Duration::from_secs(60),
        env.store.wait_until(|ps| {
            ps.len() == PORTALS && ps.iter().all(|p| p.polled && p.meta.is_some())
        }),
    )
    .await
    .expect("every portal polled, its metadata read");
    sched.shutdown().await;

    let log = env.sim.request_log(None);
    // Each portal: 1 page of active sessions, 1 of the terminated scan (also the whole backfill),
    // GetPortal.
    assert_eq!(log.len(), PORTALS * 3);
    for i in 0..PORTALS {
        let p = env.store.portal(&portal_id(i)).expect("published");
        assert!(
            p.up,
            "waiting for the limiter is not a timeout: {:?}",
            p.last_error
        );
        assert_eq!(active(&p).sessions, 8);
    }
    // Every request was sent after `begun`, and arrives no earlier than it was sent: over the whole
    // run, at most RATE per second plus the burst (RATE) went out.
    let last = log.iter().map(|r| r.at).max().expect("requests");
    let span = (last - begun).as_secs_f64();
    let bound = RATE * span + RATE;
    assert!(
        (log.len() as f64) <= bound + 1e-9,
        "{} requests in {span:.2}s: the limit allows {bound:.1}",
        log.len()
    );
    // Without the limiter, 30 requests on loopback take well under a second; with it, at least
    // (30 - burst) / rate = 5 s. Informational: the busiest one-second window.
    let mut times: Vec<_> = log.iter().map(|r| r.at).collect();
    times.sort();
    let busiest = (0..times.len())
        .map(|i| {
            times[i..]
                .iter()
                .take_while(|&&t| t - times[i] <= Duration::from_secs(1))
                .count()
        })
        .max()
        .unwrap_or(0);
    eprintln!(
        "{} requests over {span:.2}s; busiest 1 s window: {busiest} (rate {RATE} + burst {RATE})",
        log.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_throttled_poll_resumes_where_it_stopped_and_counts_each_session_once() {
    const SESSIONS: u64 = 150;
    const PAGE: u32 = 5;
    const PAGES: usize = (SESSIONS as usize).div_ceil(PAGE as usize);
    let base = now_ms();
    // The portal is empty at first: an unthrottled first poll fixes T0. The sessions then start
    // after T0, so that each must count once in `started` (sessions already running at T0 would be
    // the baseline, never counted as started).
    let env = start(
        SimConfig::new(7)
            .with_clock(Clock::manual(base))
            .with_portal(PortalSpec::scripted(THROTTLED, Vec::new())),
    )
    .await;
    // A poll cut short resumes within 5 intervals (10 s); its next attempt comes one interval
    // after the failure.
    let mut p = plan(THROTTLED, Duration::from_secs(2), PAGE);
    p.timeout = Duration::from_millis(1500);
    let sched = Scheduler::start(vec![p], &env.clients, env.store.clone(), 4).await;
    let first = wait_portal(&env.store, THROTTLED, |p| p.up).await;
    assert_eq!(active(&first).sessions, 0);
    assert_eq!(first.totals.as_ref().map(|t| t.started), Some(0));

    // T0 is the first request of that poll, before it was published: the sessions start after it.
    // They are listed once the simulator's clock (still at `base`) reaches them, all at once, while
    // every request is throttled half of the time. The next poll is due about 2 s after the first.
    // (Seed 7 throttles the SDK out of its retries twice in this listing.)
    let t = now_ms();
    for i in 0..SESSIONS {
        env.sim
            .add_session(
                THROTTLED,
                SimSession::new(
                    SimSession::id_for(i),
                    format!("user{}", i % 7),
                    t + i as i64,
                ),
            )
            .expect("portal");
    }
    env.sim
        .set_faults(THROTTLED, Faults::throttle(0.5, 0))
        .expect("portal");
    env.sim.log_requests(true);
    env.sim.clock().set(t + SESSIONS as i64);
    let snap = wait_portal(&env.store, THROTTLED, |p| {
        p.up && p.active.is_some_and(|a| a.sessions == SESSIONS)
    })
    .await;
    sched.shutdown().await;

    // Counters equal the simulator's truth: every listed session, started after T0, counted once.
    let truth = env.sim.sessions_at(THROTTLED, t + SESSIONS as i64);
    assert_eq!(truth.len() as u64, SESSIONS);
    assert!(truth.iter().all(|s| s.start_ms >= t && s.end_ms.is_none()));
    let totals = snap.totals.clone().expect("totals");
    assert_eq!(active(&snap).sessions, SESSIONS);
    assert_eq!(totals.started, SESSIONS);
    assert_eq!(totals.terminated, 0);
    assert!(errors(&snap, LIST_SESSIONS, "ThrottlingException") > 0);

    // The active listing of the first poll that saw the sessions (logged from the moment they
    // appeared), from the simulator's side: every page was answered 200 exactly once (no page
    // fetched twice), although the SDK gave up on some pages (3 throttled attempts in a row) and
    // the poll failed there.
    let log: Vec<LoggedRequest> = env
        .sim
        .request_log(Some(THROTTLED))
        .into_iter()
        .filter(|r| r.operation == LIST_SESSIONS && param(r, "status") == Some("Active"))
        .collect();
    let mut fetched: HashSet<Option<String>> = HashSet::new();
    let mut saved = 0usize;
    let mut resumed = 0usize;
    let mut previous: Option<tokio::time::Instant> = None;
    for r in &log {
        if fetched.len() == PAGES {
            break;
        }
        // The SDK retries within 200 ms; the next attempt of a failed poll comes one interval
        // (2 s) later: a gap of a second marks a new attempt.
        if previous.is_some_and(|t| r.at - t >= Duration::from_secs(1)) {
            resumed += 1;
            // Starting over, this attempt would fetch again every page fetched so far.
            saved += fetched.len();
        }
        previous = Some(r.at);
        let token = param(r, "nextToken").map(str::to_string);
        if r.status == 200 {
            assert!(
                fetched.insert(token.clone()),
                "page {token:?} fetched twice: the poll started over"
            );
        } else {
            assert_eq!(r.status, 429);
        }
    }
    assert_eq!(fetched.len(), PAGES, "the listing completed");
    assert!(
        resumed >= 1 && saved >= 1,
        "the scenario must cut a poll short mid-listing (resumed {resumed} times)"
    );
    let used = log.len();
    eprintln!(
        "active listing: {PAGES} pages, {used} requests, {resumed} attempts resumed; \
         starting over would have re-fetched {saved} pages (>= {} requests)",
        used + saved
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_fail_polls_then_the_portal_recovers_with_exact_counters() {
    let base = now_ms();
    let mut failing = scripted(THROTTLED, 12, base, 7);
    failing.faults = Faults::error("InternalServerException");
    failing.faults.retry_after_secs = 0;
    let env = start(
        SimConfig::new(9)
            .with_clock(Clock::manual(base))
            .with_portal(failing)
            .with_portal(scripted(GOOD, 3, base, 7)),
    )
    .await;
    let fast = |id| {
        let mut p = plan(id, Duration::from_millis(400), 100);
        p.timeout = Duration::from_millis(300);
        p
    };
    let sched = Scheduler::start(
        vec![fast(THROTTLED), fast(GOOD)],
        &env.clients,
        env.store.clone(),
        4,
    )
    .await;
    let down = wait_portal(&env.store, THROTTLED, |p| {
        p.polled && errors(p, LIST_SESSIONS, "InternalServerException") >= 6
    })
    .await;
    assert!(!down.up);
    assert!(down.active.is_none() && down.totals.is_none());
    // The other portal is up meanwhile, untouched.
    let good = wait_portal(&env.store, GOOD, |p| p.up).await;
    assert!(good.api_errors.is_empty(), "{:?}", good.api_errors);
    assert!(!env.store.portal(THROTTLED).expect("failing").up);
    let text = String::from_utf8(
        env.store
            .scrape_text()
            .expect("exposition decompresses")
            .to_vec(),
    )
    .expect("utf-8");
    assert!(text.contains(&format!(
        "workspacesweb_up{{portal_id=\"{THROTTLED}\",env=\"test\"}} 0\n"
    )));
    assert!(text.contains(&format!(
        "workspacesweb_api_request_errors_total{{portal_id=\"{THROTTLED}\",env=\"test\",operation=\"ListSessions\",error=\"InternalServerException\"}} "
    )));

    env.sim
        .set_faults(THROTTLED, Faults::none())
        .expect("known portal");
    let up = wait_portal(&env.store, THROTTLED, |p| p.up).await;
    assert_eq!(active(&up).sessions, 12);
    let totals = up.totals.clone().expect("totals");
    // T0 is the first successful poll: the twelve sessions ran before it (baseline, not starts).
    assert_eq!((totals.started, totals.terminated), (0, 0));
    // A session starting after the recovery is a start, counted once.
    let late = now_ms();
    env.sim
        .add_session(
            THROTTLED,
            SimSession::new(SimSession::id_for(100), "late", late),
        )
        .expect("known portal");
    env.sim.clock().set(late);
    let later = wait_portal(&env.store, THROTTLED, |p| {
        p.active.is_some_and(|a| a.sessions == 13)
    })
    .await;
    sched.shutdown().await;
    assert!(later.up, "{:?}", later.last_error);
    let totals = later.totals.clone().expect("totals");
    assert_eq!((totals.started, totals.terminated), (1, 0));
    let text = String::from_utf8(
        env.store
            .scrape_text()
            .expect("exposition decompresses")
            .to_vec(),
    )
    .expect("utf-8");
    assert!(text.contains(&format!(
        "workspacesweb_up{{portal_id=\"{THROTTLED}\",env=\"test\"}} 1\n"
    )));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_portal_delays_neither_another_portal_nor_metrics_and_its_poll_is_abandoned() {
    const SLOW: &str = "aaaaaaaa-0000-4000-8000-00000000005a";
    let base = now_ms();
    let mut slow = scripted(SLOW, 4, base, 7);
    slow.faults = Faults {
        latency: Duration::from_secs(5),
        ..Faults::none()
    };
    let env = start(
        SimConfig::new(11)
            .with_clock(Clock::manual(base))
            .with_portal(slow)
            .with_portal(scripted(GOOD, 6, base, 7)),
    )
    .await;
    let mut healthy = plan(GOOD, Duration::from_millis(300), 100);
    healthy.timeout = Duration::from_millis(250);
    // Each request of the slow portal takes 5 s: the first page arrives, the second cannot
    // before the timeout.
    let mut slow_plan = plan(SLOW, Duration::from_secs(6), 100);
    slow_plan.timeout = Duration::from_millis(5_500);
    let sched =
        Scheduler::start(vec![slow_plan, healthy], &env.clients, env.store.clone(), 4).await;

    let server = Serving::start(env.store.clone()).await;
    let addr = server.addr.clone();

    // The healthy portal's snapshot updates several times while the slow one is in its first poll.
    let mut last = None;
    for _ in 0..3 {
        let prev = last;
        let p = wait_portal(&env.store, GOOD, |p| {
            p.up && p.last_success_unix.is_some() && p.last_success_unix != prev
        })
        .await;
        last = p.last_success_unix;
    }
    // /metrics answers from the snapshot meanwhile.
    let a = addr.clone();
    let (status, _, body) = tokio::task::spawn_blocking(move || http_get(&a, "/metrics"))
        .await
        .expect("join")
        .expect("scrape");
    let slow_snap = env.store.portal(SLOW).expect("published");
    assert!(
        !slow_snap.polled,
        "the slow portal's first poll is still in flight: the updates and the scrape did not wait for it"
    );
    assert_eq!(status, 200);
    let body = String::from_utf8(body).expect("utf-8");
    assert!(body.contains(&format!(
        "workspacesweb_up{{portal_id=\"{GOOD}\",env=\"test\"}} 1\n"
    )));
    assert!(body.contains(&format!(
        "workspacesweb_active_sessions{{portal_id=\"{GOOD}\",env=\"test\"}} 6\n"
    )));

    // The slow poll is abandoned at its timeout, counted as such...
    let abandoned = wait_portal(&env.store, SLOW, |p| p.polled).await;
    assert!(!abandoned.up);
    assert_eq!(errors(&abandoned, LIST_SESSIONS, "timeout"), 1);
    assert!(
        abandoned
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("timed out")),
        "{:?}",
        abandoned.last_error
    );
    // ... and the next one starts (it resumes after the page the first one fetched).
    let before = env.sim.request_count(SLOW, LIST_SESSIONS);
    let next = poll_until(Duration::from_secs(30), || {
        (env.sim.request_count(SLOW, LIST_SESSIONS) > before).then_some(())
    });
    assert!(
        next.is_some(),
        "the next poll of the slow portal never began"
    );
    assert!(env.store.portal(GOOD).is_some_and(|p| p.up));
    let a = addr.clone();
    let (status, _, _) = tokio::task::spawn_blocking(move || http_get(&a, "/-/healthy"))
        .await
        .expect("join")
        .expect("healthy");
    assert_eq!(status, 200);

    server.stop().await;
    sched.shutdown().await;
    drop(Arc::clone(&env.store));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_credentials_fail_the_poll_without_sending_anything() {
    use workspacesweb_exporter::aws::{ApiCounters, Clients};
    let base = now_ms();
    let env = start(
        SimConfig::new(13)
            .with_clock(Clock::manual(base))
            .with_portal(scripted(GOOD, 2, base, 7)),
    )
    .await;
    // No credentials provider at all (what an empty credential chain resolves to).
    let config = aws_config::SdkConfig::builder()
        .region(aws_config::Region::new("us-east-1"))
        .endpoint_url(env.running.endpoint_url())
        .behavior_version(aws_config::BehaviorVersion::latest())
        .build();
    let clients = Clients::new(config);
    let counters = Arc::new(ApiCounters::default());
    let api = clients
        .portal_api(&plan(GOOD, HOUR, 10).client, GOOD, counters.clone())
        .await;
    let err = api
        .list_sessions(&Default::default())
        .await
        .expect_err("no credentials");
    // Nothing to sign with: not a connection failure, and nothing reaches the service.
    assert_eq!(err.code, "other", "{}", err.message);
    assert!(err.message.contains("identity"), "{}", err.message);
    assert_eq!(env.sim.request_count(GOOD, LIST_SESSIONS), 0);
    let sched = Scheduler::start(vec![plan(GOOD, HOUR, 10)], &clients, env.store.clone(), 1).await;
    let p = wait_portal(&env.store, GOOD, |p| p.polled).await;
    sched.shutdown().await;
    assert!(!p.up);
    assert!(p.last_error.as_deref().is_some_and(|e| e.contains("other")));
    assert_eq!(errors(&p, LIST_SESSIONS, "other"), 1);
    assert_eq!(env.sim.request_count(GOOD, LIST_SESSIONS), 0);
}

/// The state gauges of a failing portal go 5 intervals after its last success (±1 interval), on
/// a timer, whatever the backoff: here the service asks for 20 s between attempts (Retry-After),
/// so an exporter that waited for its next attempt would show them for 20 s or more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_gauges_go_stale_on_time_whatever_the_backoff() {
    let base = now_ms();
    let env = start(
        SimConfig::new(31)
            .with_clock(Clock::manual(base))
            .with_portal(scripted(GOOD, 3, base, 3)),
    )
    .await;
    let mut p = plan(GOOD, Duration::from_secs(1), 100);
    p.timeout = Duration::from_millis(800);
    let sched = Scheduler::start(vec![p], &env.clients, env.store.clone(), 4).await;
    let ok = wait_portal(&env.store, GOOD, |p| p.up && p.active.is_some()).await;
    assert_eq!(active(&ok).sessions, 3);
    env.sim
        .set_faults(GOOD, Faults::throttle(1.0, 20))
        .expect("portal");
    let failing = wait_portal(&env.store, GOOD, |p| !p.up).await;
    assert!(failing.active.is_some(), "kept while fresh");
    // Hang guard well below the 20 s the service asks for between attempts.
    let stale = tokio::time::timeout(
        Duration::from_secs(12),
        env.store.wait_until(|ps| {
            ps.iter()
                .any(|p| p.portal_id == GOOD && !p.up && p.active.is_none())
        }),
    )
    .await;
    let dropped_at = now_ms();
    sched.shutdown().await;
    assert!(
        stale.is_ok(),
        "the state gauges were still shown 12 s after the portal failed"
    );
    let last_success_ms = env
        .store
        .portal(GOOD)
        .and_then(|p| p.last_success_unix)
        .map(|s| (s * 1000.0) as i64)
        .expect("a success");
    let after = dropped_at - last_success_ms;
    assert!(
        (4_000..=9_000).contains(&after),
        "dropped {after} ms after the last success, expected 5 intervals (±1) of 1 s, plus scheduling"
    );
    let snap = env.store.portal(GOOD).expect("portal");
    assert!(snap.totals.is_some(), "counters stay");
}
