//! Sharding, in one place: which portals each replica polls. The shard index (literal, or from
//! the environment: a number or a StatefulSet hostname), the stable split of portal ids between
//! replicas, the wanted plans of each replica (static and discovered portals, then its shard),
//! `--config.check` of the index source, and two control loops that share the portals of one
//! simulator. (`tests/topology.rs` also shards, with regions, roles and
//! discovery, as part of the AWS topology.)

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use super::config_files::{err, fixture, ok};
use crate::common::run_control_loop as run;
use crate::common::*;
use workspacesweb_exporter::aws::PortalInfo;
use workspacesweb_exporter::clock::now_ms;
use workspacesweb_exporter::config::{self, Config};
use workspacesweb_exporter::discovery::SourceKey;
use workspacesweb_exporter::reconcile::wanted_plans;
use workspacesweb_exporter::snapshot::Store;
use workspacesweb_sim::{Clock, PortalSpec, SimConfig, SimSession};

const ID: &str = "11111111-2222-3333-4444-555555555555";

#[test]
fn sharding_index_and_env() {
    let c = ok(&format!(
        "portals:\n  - id: {ID}\nsharding:\n  total: 3\n  index: 2\n"
    ))
    .config;
    assert_eq!(c.sharding.resolve_shard_index(|_| None).unwrap(), 2);
    assert_eq!(
        err(&format!(
            "portals:\n  - id: {ID}\nsharding:\n  total: 3\n  index: 3\n"
        )),
        "config.yaml:5:10: sharding.index: index 3 must be less than total (3)"
    );
    assert_eq!(
        err(&format!("portals:\n  - id: {ID}\nsharding:\n  total: 0\n")),
        "config.yaml:4:10: sharding.total: must be at least 1, got 0"
    );
    assert_eq!(
        err(&format!(
            "portals:\n  - id: {ID}\nsharding:\n  total: 3\n  index: 1\n  index_from_env: POD\n"
        )),
        "config.yaml:6:19: sharding.index_from_env: set either index or index_from_env, not both"
    );
    assert_eq!(
        err(&format!(
            "portals:\n  - id: {ID}\nsharding:\n  index_from_env: POD-X\n"
        )),
        "config.yaml:4:19: sharding.index_from_env: invalid environment variable name \"POD-X\": expected [A-Za-z_][A-Za-z0-9_]*"
    );

    let loaded = config::load(&fixture("hostname_shard.yaml")).unwrap();
    let file = fixture("hostname_shard.yaml").display().to_string();
    let sh = &loaded.config.sharding;
    let env =
        |value: &'static str| move |name: &str| (name == "HOSTNAME").then(|| value.to_owned());
    assert_eq!(
        sh.resolve_shard_index(env("workspacesweb-exporter-3"))
            .unwrap(),
        3
    );
    assert_eq!(sh.resolve_shard_index(env("2")).unwrap(), 2);
    assert_eq!(sh.resolve_shard_index(env("web-0")).unwrap(), 0);
    assert_eq!(
        sh.resolve_shard_index(env("web-1.web.monitoring.svc.cluster.local"))
            .unwrap(),
        1
    );
    assert_eq!(
        sh.resolve_shard_index(env("web-4"))
            .unwrap_err()
            .to_string(),
        format!(
            "{file}:5:19: sharding.index_from_env: shard index 4 from environment variable HOSTNAME=\"web-4\" must be less than sharding.total (4)"
        )
    );
    assert_eq!(
        sh.resolve_shard_index(env("web")).unwrap_err().to_string(),
        format!(
            "{file}:5:19: sharding.index_from_env: environment variable HOSTNAME=\"web\" is neither a number nor a hostname ending in -<number>"
        )
    );
    assert_eq!(
        sh.resolve_shard_index(|_| None).unwrap_err().to_string(),
        format!("{file}:5:19: sharding.index_from_env: environment variable HOSTNAME is not set")
    );
}

#[test]
fn sharding_splits_portals_between_replicas() {
    let c = ok(&format!("portals:\n  - id: {ID}\nsharding:\n  total: 3\n")).config;
    let ids: Vec<String> = (0..60)
        .map(|i| format!("{i:08}-2222-3333-4444-555555555555"))
        .collect();
    let mut counts = [0; 3];
    for id in &ids {
        let owners: Vec<u32> = (0..3).filter(|&k| c.sharding.owns(k, id)).collect();
        assert_eq!(owners.len(), 1, "{id} must have exactly one owner");
        counts[owners[0] as usize] += 1;
    }
    assert!(counts.iter().all(|&n| n >= 10), "uneven split {counts:?}");
}

const STATIC: &str = "11111111-1111-1111-1111-111111111111";
const FOUND: &str = "22222222-2222-2222-2222-222222222222";

/// A config with one static portal (`kind: static`) and a discovery entry in eu-west-1
/// (`kind: found`), plus `extra`.
fn discovering(extra: &str) -> Config {
    ok(&format!(
        "portals:\n  - id: {STATIC}\n    labels: {{kind: static}}\ndiscovery:\n  - regions: [eu-west-1]\n    labels: {{kind: found}}\n{extra}"
    ))
    .config
}

/// What discovery entry 0 found in eu-west-1: the portals `ids`.
fn found(ids: &[&str]) -> BTreeMap<SourceKey, Vec<PortalInfo>> {
    let key = SourceKey {
        entry: 0,
        region: "eu-west-1".into(),
        account: None,
    };
    let arn = |id: &&str| format!("arn:aws:workspaces-web:eu-west-1:123456789012:portal/{id}");
    let portals = ids
        .iter()
        .map(|id| PortalInfo {
            arn: arn(id),
            ..Default::default()
        })
        .collect();
    [(key, portals)].into()
}

// The wanted plans of a replica: the static portals, the discovered ones not configured
// statically, then those its shard owns.

#[test]
fn static_portals_win_over_discovered_ones() {
    let c = discovering("");
    let plans = wanted_plans(&c, 0, &found(&[STATIC, FOUND]));
    assert_eq!(plans.len(), 2);
    let s = plans
        .iter()
        .find(|p| p.portal_id == STATIC)
        .expect("static");
    assert_eq!(s.labels, vec![("kind".to_string(), "static".to_string())]);
    let f = plans.iter().find(|p| p.portal_id == FOUND).expect("found");
    assert_eq!(f.labels, vec![("kind".to_string(), "found".to_string())]);
    assert_eq!(f.client.region.as_deref(), Some("eu-west-1"));
    assert!(f.arn.as_deref().is_some_and(|a| a.ends_with(FOUND)));
}

#[test]
fn a_portal_no_longer_listed_is_no_longer_wanted() {
    let c = discovering("");
    assert_eq!(wanted_plans(&c, 0, &found(&[FOUND])).len(), 2);
    let plans = wanted_plans(&c, 0, &found(&[]));
    assert_eq!(
        plans
            .iter()
            .map(|p| p.portal_id.as_str())
            .collect::<Vec<_>>(),
        vec![STATIC]
    );
}

#[test]
fn shards_cover_every_portal_exactly_once() {
    let ids: Vec<String> = (0..500u32)
        .map(|i| {
            format!(
                "{i:08x}-0000-4000-8000-{:012x}",
                i.wrapping_mul(2_654_435_761)
            )
        })
        .collect();
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    for total in 1..=5u32 {
        let c = discovering(&format!("sharding:\n  total: {total}\n"));
        let mut seen: BTreeMap<String, u32> = BTreeMap::new();
        for index in 0..total {
            for p in wanted_plans(&c, index, &found(&refs)) {
                *seen.entry(p.portal_id).or_default() += 1;
            }
        }
        assert_eq!(seen.len(), ids.len() + 1, "total={total}");
        assert!(
            seen.values().all(|&n| n == 1),
            "total={total}: a portal polled twice"
        );
        if total > 1 {
            // Every shard gets a fair part (no empty replica).
            for index in 0..total {
                let n = wanted_plans(&c, index, &found(&refs)).len();
                assert!(
                    n > 500 / (total as usize) / 2,
                    "shard {index}/{total} has only {n}"
                );
            }
        }
    }
}

#[test]
fn config_check_accepts_discovery_and_checks_the_shard_index_source() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = super::cli::config_file(
        dir.path(),
        "discovery.yaml",
        "discovery:\n  - regions: [us-east-1]\n",
    );
    let out = super::cli::check(&path);
    assert_eq!(out.code(), Some(0), "stderr:\n{}", out.stderr);

    let path = super::cli::config_file(
        dir.path(),
        "shard.yaml",
        "discovery:\n  - regions: [us-east-1]\nsharding:\n  total: 2\n  index_from_env: WSW_TEST_SHARD_INDEX_UNSET\n",
    );
    let out = super::cli::check(&path);
    assert_eq!(out.code(), Some(1), "stderr:\n{}", out.stderr);
    assert!(
        out.stderr.contains("sharding.index_from_env"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains(&path.display().to_string()),
        "{}",
        out.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_shards_cover_every_portal_exactly_once() {
    let base = now_ms();
    let ids: Vec<String> = (1..=6)
        .map(|i| format!("cccccccc-0000-4000-8000-{i:012}"))
        .collect();
    let mut sim = SimConfig::new(22).with_clock(Clock::manual(base));
    for id in &ids {
        let session = SimSession::new(SimSession::id_for(0), "u0", base - 1000);
        let mut portal = PortalSpec::scripted(id, vec![session]);
        portal.region = "us-east-1".into();
        sim = sim.with_portal(portal);
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
    let write = |dir: &Path, text: String| {
        let path = dir.join("exporter.yaml");
        std::fs::write(&path, text).expect("write config");
        path
    };
    let r0 = run(&write(dir0.path(), cfg(0)), &env.clients).await;
    let r1 = run(&write(dir1.path(), cfg(1)), &env.clients).await;
    let ready = |s: Arc<Store>| async move {
        let s2 = s.clone();
        tokio::time::timeout(
            Duration::from_secs(60),
            s.wait_until(move |ps| s2.status().ready() && ps.iter().all(|p| p.up)),
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
