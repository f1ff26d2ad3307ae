//! Operations against the simulator: discovery, reload (keep, add, remove, invalid) and sharding,
//! through the real control loop and the real SDK.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use workspacesweb_exporter::session::now_ms;
use workspacesweb_exporter::sim::{Clock, PortalSpec, SimConfig, SimSession};
use workspacesweb_exporter::snapshot::Store;

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

use common::run_control_loop as run;

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
    assert!(running.store.ready());
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
    assert!(running.store.reload().successful);
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
    assert!(!running.store.reload().successful);
    assert!(running.store.portal(GOOD).is_some_and(|p| p.up));
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_shards_cover_every_portal_exactly_once() {
    let base = now_ms();
    let ids: Vec<String> = (1..=6)
        .map(|i| format!("cccccccc-0000-4000-8000-{i:012}"))
        .collect();
    let mut sim = SimConfig::new(22).with_clock(Clock::manual(base));
    for id in &ids {
        sim = sim.with_portal(portal(id, "us-east-1", 1, base));
    }
    let env = start(sim).await;
    let dir0 = tempfile::tempdir().expect("tempdir");
    let dir1 = tempfile::tempdir().expect("tempdir");
    let portals: String = ids.iter().map(|id| format!("  - id: {id}\n")).collect();
    let cfg = |index: u32| {
        format!(
            "global:\n  region: us-east-1\n  interval: 1s\n  max_requests_per_second: 200\nportals:\n{portals}sharding:\n  total: 2\n  index: {index}\n"
        )
    };
    let r0 = run(&write(dir0.path(), &cfg(0)), &env.clients).await;
    let r1 = run(&write(dir1.path(), &cfg(1)), &env.clients).await;
    let ready = |s: Arc<Store>| async move {
        let s2 = s.clone();
        tokio::time::timeout(
            Duration::from_secs(60),
            s.wait_until(move |ps| s2.ready() && ps.iter().all(|p| p.up)),
        )
        .await
        .expect("ready");
    };
    ready(r0.store.clone()).await;
    ready(r1.store.clone()).await;
    let a: BTreeSet<String> = r0
        .store
        .portals()
        .iter()
        .map(|p| p.portal_id.clone())
        .collect();
    let b: BTreeSet<String> = r1
        .store
        .portals()
        .iter()
        .map(|p| p.portal_id.clone())
        .collect();
    assert!(a.is_disjoint(&b), "{a:?} {b:?}");
    let all: BTreeSet<String> = a.union(&b).cloned().collect();
    assert_eq!(all, ids.iter().cloned().collect());
    assert!(!a.is_empty() && !b.is_empty());
    // Disjoint ownership plus every portal polled: each is covered exactly once.
    for id in &ids {
        assert!(
            env.sim.request_count(id, "ListSessions") > 0,
            "{id} never polled"
        );
    }
    r0.stop().await;
    r1.stop().await;
}
