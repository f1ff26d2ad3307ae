//! Operations against the simulator: discovery, reload (keep, add, remove, invalid) and sharding,
//! through the real control loop and the real SDK.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::common::*;
use workspacesweb_exporter::clock::now_ms;
use workspacesweb_exporter::snapshot::Store;
use workspacesweb_sim::{Clock, PortalSpec, SimConfig, SimSession};

const EU1: &str = "eeeeeeee-0000-4000-8000-000000000001";
const EU2: &str = "eeeeeeee-0000-4000-8000-000000000002";

fn portal(id: &str, region: &str, n: u64, base: i64) -> PortalSpec {
    let sessions = (0..n)
        .map(|i| {
            SimSession::new(
                SimSession::id_for(i),
                format!("u{i}"),
                base - 1000 * (i as i64 + 1),
            )
        })
        .collect();
    let mut p = PortalSpec::scripted(id, sessions);
    p.region = region.into();
    p
}

fn write(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("exporter.yaml");
    std::fs::write(&path, text).expect("write config");
    path
}

use crate::common::run_control_loop as run;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_then_reload_keeps_adds_removes_and_rejects_invalid() {
    let base = now_ms();
    let env = start(
        SimConfig::new(21)
            .with_clock(Clock::manual(base))
            .with_portal(portal(GOOD, "us-east-1", 4, base))
            .with_portal(portal(EU1, "eu-west-1", 2, base))
            .with_portal(portal(EU2, "eu-west-1", 3, base)),
    )
    .await;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write(
        dir.path(),
        &format!(
            "global:\n  interval: 1s\n  labels: {{env: test}}\nportals:\n  - id: {GOOD}\n    region: us-east-1\ndiscovery:\n  - regions: [eu-west-1]\n    refresh: 1s\n    labels: {{source: discovered}}\n"
        ),
    );
    let running = run(&path, &env.clients).await;
    running.wait(&[GOOD, EU1, EU2], |p| p.up).await;
    assert!(running.store.status().ready());
    let eu1 = running.store.portal(EU1).expect("discovered");
    assert!(
        eu1.labels.contains(&("source".into(), "discovered".into())),
        "{:?}",
        eu1.labels
    );
    assert_eq!(active(&eu1).sessions, 2);
    let text = String::from_utf8(
        running
            .store
            .scrape_text()
            .expect("exposition decompresses")
            .to_vec(),
    )
    .expect("utf-8");
    assert!(
        text.contains("workspacesweb_api_requests_total{discovery=\"0\",region=\"eu-west-1\",operation=\"ListPortals\"}"),
        "{text}"
    );
    let good_before = running
        .store
        .portal(GOOD)
        .expect("good")
        .totals
        .clone()
        .expect("totals");

    // Reload without discovery: the discovered portals go, the static one stays with its counters.
    write(
        dir.path(),
        &format!(
            "global:\n  interval: 1s\n  labels: {{env: test}}\nportals:\n  - id: {GOOD}\n    region: us-east-1\n"
        ),
    );
    running.reload().await.expect("valid reload");
    assert!(running.store.portal(EU1).is_none() && running.store.portal(EU2).is_none());
    assert!(running.store.status().reload().successful);
    let good_after = running
        .store
        .portal(GOOD)
        .expect("good stays")
        .totals
        .clone()
        .expect("totals");
    assert_eq!(good_after.started, good_before.started);

    // An invalid file: 400-worthy error naming the line, and nothing changes.
    write(
        dir.path(),
        "global:\n  interval: 1s\nportals:\n  - id: not-an-id\n",
    );
    let err = running.reload().await.expect_err("invalid config");
    assert!(err.contains("exporter.yaml:4:"), "{err}");
    assert!(err.contains("portals[0].id"), "{err}");
    assert!(!running.store.status().reload().successful);
    assert!(running.store.portal(GOOD).is_some_and(|p| p.up));
    running.stop().await;
}

/// Waits (60 s hang guard) until the simulator has received at least `n` `ListPortals` requests:
/// the listings are then in flight (or answered).
async fn wait_list_portals(sim: &workspacesweb_sim::Simulator, n: u64) {
    tokio::time::timeout(Duration::from_secs(60), async {
        while sim.request_count("", "ListPortals") < n {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap_or_else(|_| {
        panic!(
            "only {} ListPortals requests",
            sim.request_count("", "ListPortals")
        )
    });
}

/// How long stopping or reloading may take at most while discovery is stuck: a hang guard well
/// below the 60 s a listing may last (and Kubernetes' 30 s before SIGKILL), not a speed check.
const PROMPT: Duration = Duration::from_secs(10);

/// A `ListPortals` that does not answer (it would run into the 60 s listing timeout) holds
/// neither a stop (SIGTERM) nor a reload that replaces the discovery source.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listing_in_flight_holds_neither_stop_nor_reload() {
    let base = now_ms();
    let env = start(
        SimConfig::new(23)
            .with_clock(Clock::manual(base))
            .with_portal(portal(EU1, "eu-west-1", 1, base)),
    )
    .await;
    env.sim.set_list_portals_faults(workspacesweb_sim::Faults {
        latency: Duration::from_secs(600),
        ..Default::default()
    });
    let dir = tempfile::tempdir().expect("tempdir");
    let config = |label: &str| {
        format!(
            "global:\n  interval: 1s\ndiscovery:\n  - regions: [eu-west-1]\n    refresh: 1s\n    labels: {{source: {label}}}\n"
        )
    };
    let path = write(dir.path(), &config("first"));
    let running = run(&path, &env.clients).await;
    wait_list_portals(&env.sim, 1).await;

    // A reload that changes the discovery entry restarts its source: the old listing is dropped.
    write(dir.path(), &config("second"));
    tokio::time::timeout(PROMPT, running.reload())
        .await
        .expect("the reload waited for the listing in flight")
        .expect("valid reload");
    wait_list_portals(&env.sim, 2).await;

    tokio::time::timeout(PROMPT, running.stop())
        .await
        .expect("stopping waited for the listing in flight");
}

/// More than 64 discovery sources: the results that do not fit in the control loop's channel
/// wait in their tasks. A reload that restarts the sources while nothing drains the channel
/// (the control loop is busy applying it) must not wait for those sends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sources_blocked_on_a_full_channel_hold_neither_reload_nor_stop() {
    use workspacesweb_exporter::config::{self, ShardConfig};
    use workspacesweb_exporter::reconcile::Reconciler;
    const SOURCES: u64 = 70;
    let base = now_ms();
    let regions: Vec<String> = (1..=SOURCES).map(|i| format!("xx-test-{i}")).collect();
    // One portal in each region, so that every listing finds one.
    let mut sim = SimConfig::new(24).with_clock(Clock::manual(base));
    for (i, region) in regions.iter().enumerate() {
        sim = sim.with_portal(portal(
            &format!("dddddddd-0000-4000-8000-{i:012}"),
            region,
            1,
            base,
        ));
    }
    let env = start(sim).await;
    let text = |regions: &[String]| {
        format!(
            "global:\n  interval: 1s\n  max_requests_per_second: 200\ndiscovery:\n  - regions: [{}]\n    refresh: 1h\n",
            regions.join(", ")
        )
    };
    let parse = |text: String| {
        config::parse(&text, "exporter.yaml")
            .unwrap_or_else(|e| panic!("{e}"))
            .config
    };
    let store = Arc::new(Store::new());
    // Started but not run: nothing drains the channel, as while the control loop applies a reload.
    let mut reconciler = Reconciler::start(
        parse(text(&regions)),
        0,
        env.clients.clone(),
        store.clone(),
        None,
    )
    .await;
    wait_list_portals(&env.sim, SOURCES).await;

    // The same regions through an endpoint where nothing listens: every new listing fails.
    let elsewhere = ShardConfig {
        config: parse(text(&regions).replace(
            "    refresh: 1h\n",
            "    refresh: 1h\n    endpoint_url: http://127.0.0.1:1\n",
        )),
        shard_index: 0,
        warnings: Vec::new(),
    };
    tokio::time::timeout(PROMPT, reconciler.apply(elsewhere))
        .await
        .expect("the reload waited for sources blocked on the full channel");

    // The old sources' results still in the channel (listed through the simulator) must not be
    // taken for the new sources' (which cannot reach anything): no portal is discovered.
    let (_commands, commands_rx) = tokio::sync::mpsc::channel(1);
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(reconciler.run(commands_rx, stop_rx));
    let s = store.clone();
    tokio::time::timeout(
        Duration::from_secs(60),
        store.wait_until(|_| s.status().ready()),
    )
    .await
    .expect("every new source reported (hang guard)");
    assert_eq!(
        store
            .portals()
            .iter()
            .map(|p| p.portal_id.clone())
            .collect::<Vec<_>>(),
        Vec::<String>::new(),
        "portals from a listing of the replaced sources"
    );
    stop.send(true).expect("control loop running");
    tokio::time::timeout(PROMPT, task)
        .await
        .expect("stopping hung")
        .expect("control loop");
}
