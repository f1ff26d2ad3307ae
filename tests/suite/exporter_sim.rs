//! The exporter's poller against the simulator over HTTP, through the real AWS SDK.

use std::time::Duration;

use crate::common::*;
use workspacesweb_exporter::aws::LIST_SESSIONS;
use workspacesweb_exporter::clock::now_ms;
use workspacesweb_exporter::poll::Scheduler;
use workspacesweb_sim::{Clock, Faults, SimConfig, SimSession};

const HOUR: Duration = Duration::from_secs(3600);

fn text(env: &Env) -> String {
    String::from_utf8(
        env.store
            .scrape_text()
            .expect("exposition decompresses")
            .to_vec(),
    )
    .expect("exposition is UTF-8")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn portal_with_250_sessions_paged_at_100() {
    let base = now_ms();
    let env = start(
        SimConfig::new(1)
            .with_clock(Clock::manual(base))
            .with_portal(scripted(GOOD, 250, base, 40)),
    )
    .await;
    let sched = Scheduler::start(
        vec![plan(GOOD, HOUR, 100)],
        &env.clients,
        env.store.clone(),
        4,
    )
    .await;
    let p = wait_portal(&env.store, GOOD, |p| p.polled).await;
    sched.shutdown().await;

    assert!(p.up, "poll failed: {:?}", p.last_error);
    let a = active(&p);
    assert_eq!(a.sessions, 250);
    assert_eq!(a.users, 40);
    let poll_ms = (p.last_success_unix.expect("success time") * 1000.0).round() as i64;
    let oldest = base - 250_000;
    assert!(
        (a.max_age_seconds - (poll_ms - oldest) as f64 / 1000.0).abs() < 0.002,
        "{a:?} poll={poll_ms}"
    );
    // 3 pages of active sessions + 1 (empty) page of the terminated scan, which is also the whole
    // monthly-users backfill: it completes with the poll.
    assert_eq!(env.sim.request_count(GOOD, LIST_SESSIONS), 4);
    assert_eq!(requests(&p, LIST_SESSIONS), 4);
    assert_eq!(p.monthly_active_users, Some(40));
    assert!(p.api_errors.is_empty(), "{:?}", p.api_errors);
    assert!(env.store.status().ready());

    let t = text(&env);
    let labels = format!("{{portal_id=\"{GOOD}\",env=\"test\"}}");
    assert!(
        t.contains(&format!("workspacesweb_active_sessions{labels} 250\n")),
        "{t}"
    );
    assert!(t.contains(&format!("workspacesweb_active_users{labels} 40\n")));
    assert!(t.contains(&format!("workspacesweb_up{labels} 1\n")));
    assert!(t.contains(&format!(
        "workspacesweb_api_requests_total{{portal_id=\"{GOOD}\",env=\"test\",operation=\"ListSessions\"}} 4\n"
    )));
    assert!(t.contains(&format!(
        "workspacesweb_last_successful_poll_timestamp_seconds{labels} "
    )));
    assert!(t.contains(&format!("workspacesweb_poll_duration_seconds{labels} ")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_denied_and_missing_portals_do_not_affect_a_good_one() {
    let base = now_ms();
    let mut denied = scripted(DENIED, 3, base, 40);
    denied.faults = Faults::error("AccessDeniedException");
    let env = start(
        SimConfig::new(2)
            .with_clock(Clock::manual(base))
            .with_portal(scripted(GOOD, 5, base, 40))
            .with_portal(denied),
    )
    .await;
    let plans = vec![
        plan(GOOD, HOUR, 100),
        plan(DENIED, HOUR, 100),
        plan(MISSING, HOUR, 100),
    ];
    let sched = Scheduler::start(plans, &env.clients, env.store.clone(), 4).await;
    tokio::time::timeout(
        Duration::from_secs(60),
        env.store
            .wait_until(|ps| ps.len() == 3 && ps.iter().all(|p| p.polled)),
    )
    .await
    .expect("all portals polled");
    assert!(env.store.status().ready());
    sched.shutdown().await;

    let good = env.store.portal(GOOD).expect("good");
    assert!(good.up);
    assert_eq!(active(&good).sessions, 5);
    assert!(good.api_errors.is_empty());

    let denied = env.store.portal(DENIED).expect("denied");
    assert!(!denied.up);
    assert_eq!(denied.active, None);
    // AccessDenied is not retried: one request, one error.
    assert_eq!(requests(&denied, LIST_SESSIONS), 1);
    assert_eq!(errors(&denied, LIST_SESSIONS, "AccessDeniedException"), 1);
    // What the landing page shows: the operation and the code, never the service's message,
    // which names an account and a role (that stays in the log).
    assert_eq!(
        denied.last_error_code.as_deref(),
        Some("ListSessions AccessDeniedException")
    );
    assert!(
        denied
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("123456789012")),
        "{:?}",
        denied.last_error
    );

    let missing = env.store.portal(MISSING).expect("missing");
    assert!(!missing.up);
    assert_eq!(
        errors(&missing, LIST_SESSIONS, "ResourceNotFoundException"),
        1
    );

    let t = text(&env);
    assert!(t.contains(&format!(
        "workspacesweb_up{{portal_id=\"{DENIED}\",env=\"test\"}} 0\n"
    )));
    assert!(t.contains(&format!(
        "workspacesweb_up{{portal_id=\"{MISSING}\",env=\"test\"}} 0\n"
    )));
    assert!(t.contains(&format!(
        "workspacesweb_api_request_errors_total{{portal_id=\"{DENIED}\",env=\"test\",operation=\"ListSessions\",error=\"AccessDeniedException\"}} 1\n"
    )));
    assert!(t.contains(&format!(
        "workspacesweb_api_request_errors_total{{portal_id=\"{MISSING}\",env=\"test\",operation=\"ListSessions\",error=\"ResourceNotFoundException\"}} 1\n"
    )));
    assert!(!t.contains(&format!(
        "workspacesweb_active_sessions{{portal_id=\"{DENIED}\""
    )));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttled_portal_recovers() {
    let base = now_ms();
    let mut throttled = scripted(THROTTLED, 7, base, 40);
    throttled.faults = Faults::throttle(1.0, 0);
    let env = start(
        SimConfig::new(3)
            .with_clock(Clock::manual(base))
            .with_portal(throttled),
    )
    .await;
    let sched = Scheduler::start(
        vec![plan(THROTTLED, Duration::from_millis(300), 100)],
        &env.clients,
        env.store.clone(),
        4,
    )
    .await;
    let failed = wait_portal(&env.store, THROTTLED, |p| p.polled).await;
    assert!(!failed.up);
    // The SDK retried: every attempt was sent and throttled.
    let throttles = errors(&failed, LIST_SESSIONS, "ThrottlingException");
    assert!(throttles >= 2, "{:?}", failed.api_errors);
    assert_eq!(requests(&failed, LIST_SESSIONS), throttles);
    assert_eq!(env.sim.request_count(THROTTLED, LIST_SESSIONS), throttles);

    env.sim
        .set_faults(THROTTLED, Faults::none())
        .expect("portal exists");
    let ok = wait_portal(&env.store, THROTTLED, |p| p.up).await;
    sched.shutdown().await;
    assert_eq!(active(&ok).sessions, 7);
    assert!(ok.last_error.is_none());
    assert!(requests(&ok, LIST_SESSIONS) > errors(&ok, LIST_SESSIONS, "ThrottlingException"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_portal_keeps_state_then_drops_it_after_five_intervals() {
    let base = now_ms();
    let env = start(
        SimConfig::new(4)
            .with_clock(Clock::manual(base))
            .with_portal(scripted(GOOD, 9, base, 40)),
    )
    .await;
    let interval = Duration::from_millis(400);
    let sched = Scheduler::start(
        vec![plan(GOOD, interval, 100)],
        &env.clients,
        env.store.clone(),
        4,
    )
    .await;
    let first = wait_portal(&env.store, GOOD, |p| p.up).await;
    assert_eq!(active(&first).sessions, 9);

    env.sim
        .set_faults(GOOD, Faults::error("AccessDeniedException"))
        .expect("portal exists");
    let failing = wait_portal(&env.store, GOOD, |p| !p.up).await;
    // Last values are kept while the failure is young.
    assert_eq!(failing.active.map(|a| a.sessions), Some(9));
    let stale = wait_portal(&env.store, GOOD, |p| !p.up && p.active.is_none()).await;
    let dropped_at = now_ms() as f64 / 1000.0;
    sched.shutdown().await;
    assert!(errors(&stale, LIST_SESSIONS, "AccessDeniedException") >= 1);
    // Dropped only once 5 intervals passed without success (on a timer, whatever the backoff of
    // the failing polls meanwhile; `resilience.rs` checks it is not much later either).
    let since_success = dropped_at - stale.last_success_unix.expect("had success");
    assert!(
        since_success >= 5.0 * interval.as_secs_f64(),
        "dropped after {since_success} s"
    );
    assert!(stale.totals.is_some(), "counters stay");
    let t = text(&env);
    assert!(t.contains(&format!(
        "workspacesweb_up{{portal_id=\"{GOOD}\",env=\"test\"}} 0\n"
    )));
    assert!(!t.contains("workspacesweb_active_sessions{"));
    assert!(t.contains(&format!(
        "workspacesweb_api_requests_total{{portal_id=\"{GOOD}\""
    )));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_portal_times_out_without_delaying_a_healthy_one() {
    let base = now_ms();
    let mut slow = scripted(THROTTLED, 2, base, 40);
    slow.faults = Faults {
        latency: Duration::from_secs(5),
        ..Faults::none()
    };
    let env = start(
        SimConfig::new(5)
            .with_clock(Clock::manual(base))
            .with_portal(slow)
            .with_portal(scripted(GOOD, 3, base, 40)),
    )
    .await;
    let mut slow_plan = plan(THROTTLED, HOUR, 100);
    slow_plan.timeout = Duration::from_millis(300);
    let sched = Scheduler::start(
        vec![slow_plan, plan(GOOD, HOUR, 100)],
        &env.clients,
        env.store.clone(),
        4,
    )
    .await;
    let good = wait_portal(&env.store, GOOD, |p| p.polled).await;
    assert!(good.up);
    assert_eq!(active(&good).sessions, 3);
    let slow = wait_portal(&env.store, THROTTLED, |p| p.polled).await;
    sched.shutdown().await;
    assert!(!slow.up);
    assert_eq!(errors(&slow, LIST_SESSIONS, "timeout"), 1);
    assert_eq!(
        slow.last_error_code.as_deref(),
        Some("ListSessions timeout")
    );
    assert!(
        slow.last_error
            .as_deref()
            .unwrap_or("")
            .contains("timed out"),
        "{:?}",
        slow.last_error
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn portal_info_comes_from_get_portal_with_the_arn_learned_from_sessions() {
    let base = now_ms();
    let mut spec = scripted(GOOD, 4, base, 40);
    spec.display_name = "Support \"desk\"".into();
    spec.max_concurrent_sessions = 25;
    let arn = spec.arn();
    let account = spec.account.clone();
    let env = start(
        SimConfig::new(6)
            .with_clock(Clock::manual(base))
            .with_portal(spec),
    )
    .await;
    let sched = Scheduler::start(
        vec![plan(GOOD, HOUR, 100)],
        &env.clients,
        env.store.clone(),
        4,
    )
    .await;
    let p = wait_portal(&env.store, GOOD, |p| p.polled).await;
    sched.shutdown().await;
    assert!(p.up);
    let meta = p.meta.as_ref().expect("metadata");
    assert_eq!(meta.arn, arn);
    assert_eq!(meta.max_concurrent_sessions, Some(25));
    assert_eq!(env.sim.request_count(GOOD, "GetPortal"), 1);
    let t = text(&env);
    assert!(
        t.contains(&format!(
            "workspacesweb_portal_info{{portal_id=\"{GOOD}\",env=\"test\",portal_arn=\"{arn}\",region=\"us-east-1\",account_id=\"{account}\",display_name=\"Support \\\"desk\\\"\",browser_type=\"Chrome\",instance_type=\"standard.regular\"}} 1\n"
        )),
        "{t}"
    );
    assert!(t.contains(&format!(
        "workspacesweb_portal_max_concurrent_sessions{{portal_id=\"{GOOD}\",env=\"test\"}} 25\n"
    )));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_keeps_staying_portals_counters_adds_and_removes() {
    let base = now_ms();
    let env = start(
        SimConfig::new(7)
            .with_clock(Clock::manual(base))
            .with_portal(scripted(GOOD, 5, base, 40))
            .with_portal(scripted(DENIED, 3, base, 40))
            .with_portal(scripted(THROTTLED, 2, base, 40)),
    )
    .await;
    let interval = Duration::from_millis(300);
    let mut sched = Scheduler::start(
        vec![plan(GOOD, interval, 100), plan(DENIED, interval, 100)],
        &env.clients,
        env.store.clone(),
        4,
    )
    .await;
    wait_portal(&env.store, DENIED, |p| p.up).await;
    let first = wait_portal(&env.store, GOOD, |p| p.up).await;
    assert_eq!(active(&first).sessions, 5);
    // The five scripted sessions ran before T0 (the first successful poll): baseline, not starts.
    assert_eq!(first.totals.as_ref().map(|t| t.started), Some(0));

    // Three sessions start on GOOD after T0 (listed once the simulator's clock, still at `base`,
    // reaches them): each counts once.
    let late = now_ms();
    for i in 0..3 {
        env.sim
            .add_session(
                GOOD,
                SimSession::new(SimSession::id_for(100 + i), "late", late + i as i64),
            )
            .expect("portal exists");
    }
    env.sim.clock().set(late + 3);
    let grown = wait_portal(&env.store, GOOD, |p| {
        p.active.is_some_and(|a| a.sessions == 8)
    })
    .await;
    assert_eq!(grown.totals.as_ref().map(|t| t.started), Some(3));

    // One (baseline) session of GOOD ends; the counters see it.
    env.sim
        .end_session(GOOD, &SimSession::id_for(0), base)
        .expect("session exists");
    wait_portal(&env.store, GOOD, |p| {
        p.totals.as_ref().is_some_and(|t| t.terminated == 1)
    })
    .await;

    // Reload: GOOD stays with a new label, DENIED goes, THROTTLED comes.
    let mut good = plan(GOOD, interval, 100);
    good.labels.push(("team".into(), "support".into()));
    let changes = sched
        .apply(vec![good, plan(THROTTLED, interval, 100)])
        .await;
    assert_eq!(changes.added, vec![THROTTLED.to_string()]);
    assert_eq!(changes.updated, vec![GOOD.to_string()]);
    assert_eq!(changes.removed, vec![DENIED.to_string()]);
    assert!(
        env.store.portal(DENIED).is_none(),
        "removed portal keeps no series"
    );
    assert!(!text(&env).contains(DENIED));

    let after = wait_portal(&env.store, GOOD, |p| {
        p.labels.iter().any(|(k, _)| k == "team")
    })
    .await;
    let totals = after.totals.as_ref().expect("counters kept");
    assert_eq!(
        (totals.started, totals.terminated),
        (3, 1),
        "counters survive the reload"
    );
    let added = wait_portal(&env.store, THROTTLED, |p| p.up).await;
    assert_eq!(active(&added).sessions, 2);
    sched.shutdown().await;
    let t = text(&env);
    assert!(t.contains(&format!(
        "workspacesweb_sessions_started_total{{portal_id=\"{GOOD}\",env=\"test\",team=\"support\"}} 3\n"
    )));
}
