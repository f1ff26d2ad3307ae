//! What the landing page draws from: the real poller, against the simulator through the AWS SDK,
//! records each poll of the last hour (active sessions, capacity, errors) and where the portal
//! runs (region, account learned from its sessions' ARN). The page itself is checked in
//! `src/http/landing.rs` (its rendering), `cli.rs` (the demo binary) and, drawn by a browser, in
//! `tests/external/landing_chromium.rs`.

use std::time::Duration;

use crate::common::*;
use workspacesweb_exporter::clock::now_ms;
use workspacesweb_exporter::poll::Scheduler;
use workspacesweb_exporter::recent_polls::PollPoint;
use workspacesweb_exporter::snapshot::PortalSnapshot;
use workspacesweb_sim::{Clock, SimConfig};

fn points(p: &PortalSnapshot) -> Vec<PollPoint> {
    p.recent.window(now_ms()).copied().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_poll_is_a_point_failed_ones_a_gap_with_their_errors() {
    let base = now_ms();
    let mut portal = scripted(GOOD, 5, base, 2);
    portal.account = "210987654321".into();
    portal.max_concurrent_sessions = 8;
    let env = start(
        SimConfig::new(7)
            .with_clock(Clock::manual(base))
            .with_portal(portal),
    )
    .await;
    let sched = Scheduler::start(
        vec![plan(GOOD, Duration::from_millis(200), 100)],
        &env.clients,
        env.store.clone(),
        2,
    )
    .await;
    // Two good polls, then ListSessions denied until a failed poll is recorded, then good again.
    wait_portal(&env.store, GOOD, |p| p.recent.len() >= 2).await;
    env.sim
        .set_operation_error(GOOD, "ListSessions", Some("AccessDeniedException"));
    wait_portal(&env.store, GOOD, |p| {
        points(p).last().is_some_and(|x| x.active.is_none())
    })
    .await;
    env.sim.set_operation_error(GOOD, "ListSessions", None);
    let p = wait_portal(&env.store, GOOD, |p| {
        p.up && points(p).last().is_some_and(|x| x.active.is_some())
    })
    .await;
    sched.shutdown().await;

    let points = points(&p);
    assert_eq!(points.len(), p.recent.len(), "all of the last hour");
    assert!(points.windows(2).all(|w| w[0].at_ms <= w[1].at_ms));
    let first_failed = points.iter().position(|x| x.active.is_none());
    let last_failed = points.iter().rposition(|x| x.active.is_none());
    let (Some(first_failed), Some(last_failed)) = (first_failed, last_failed) else {
        panic!("no failed poll recorded: {points:?}");
    };
    assert!(first_failed >= 2, "{points:?}");
    for (i, x) in points.iter().enumerate() {
        if (first_failed..=last_failed).contains(&i) {
            // A failed poll: no value, and its one AccessDenied (not retried) counted with it.
            assert_eq!((x.active, x.errors), (None, 1), "{i}: {points:?}");
        } else {
            assert_eq!((x.active, x.errors), (Some(5), 0), "{i}: {points:?}");
        }
        // GetPortal answered on the first poll: the capacity is known at every point.
        assert_eq!(x.capacity, Some(8), "{i}: {points:?}");
    }
    // The errors of the hour are exactly the portal's error counter.
    let counted: u64 = p.api_errors.values().sum();
    assert_eq!(counted, (last_failed - first_failed + 1) as u64);
    assert_eq!(p.recent.errors_in_window(now_ms()), counted);
    // Where it runs: the plan's region; the account of the ARN learned from its sessions.
    assert_eq!(p.region.as_deref(), Some("us-east-1"));
    assert_eq!(p.account_id.as_deref(), Some("210987654321"));
    assert_eq!(p.interval, Duration::from_millis(200));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_sources_and_the_shard_are_published_for_the_page() {
    const EU1: &str = "eeeeeeee-0000-4000-8000-000000000011";
    const EU2: &str = "eeeeeeee-0000-4000-8000-000000000012";
    let base = now_ms();
    let mut config = SimConfig::new(8).with_clock(Clock::manual(base));
    for id in [EU1, EU2] {
        let mut p = scripted(id, 1, base, 1);
        p.region = "eu-west-1".into();
        config = config.with_portal(p);
    }
    let env = start(config).await;
    env.sim
        .set_list_portals_error("us-west-2", None, Some("AccessDeniedException"));
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("exporter.yaml");
    std::fs::write(
        &path,
        "global:\n  interval: 1h\ndiscovery:\n  - regions: [eu-west-1, us-west-2]\n    refresh: 1h\n",
    )
    .expect("config");
    let running = run_control_loop(&path, &env.clients).await;
    let listed = |store: &workspacesweb_exporter::snapshot::Store| {
        let sources = store.discovery();
        sources.len() == 2 && sources.iter().all(|s| s.last_listing_unix.is_some())
    };
    let store = running.store.clone();
    tokio::time::timeout(
        Duration::from_secs(60),
        store.wait_until(|_| listed(&store)),
    )
    .await
    .expect("both sources listed once");
    let sources = running.store.discovery();
    running.stop().await;

    let region = |s: &&workspacesweb_exporter::snapshot::DiscoverySnapshot, r: &str| {
        s.labels.contains(&("region".to_string(), r.to_string()))
    };
    let eu = sources
        .iter()
        .find(|s| region(s, "eu-west-1"))
        .expect("eu-west-1");
    assert_eq!((eu.portals, eu.last_error_code.as_deref()), (Some(2), None));
    let us = sources
        .iter()
        .find(|s| region(s, "us-west-2"))
        .expect("us-west-2");
    // A failed first listing: nothing found yet, and why.
    assert_eq!(
        (us.portals, us.last_error_code.as_deref()),
        (None, Some("ListPortals AccessDeniedException"))
    );
    assert_eq!(
        store.status().setup().shard,
        Some(workspacesweb_exporter::status::Shard { index: 0, total: 1 })
    );
}
