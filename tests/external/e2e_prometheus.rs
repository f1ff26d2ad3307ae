//! End to end: the real exporter binary in demo mode, scraped by a real Prometheus server.
//! Fails (does not skip) when `CI` is set and Prometheus is missing.

use crate::common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::common::{
    Serving, have_tools_or_skip, http_get, plan, poll_until, prom_query, start, start_prometheus,
    start_prometheus_with,
};
use workspacesweb_exporter::poll::Scheduler;
use workspacesweb_sim::{PortalSpec, SimConfig, SimSession};

#[test]
fn prometheus_scrapes_the_demo_exporter() {
    if !have_tools_or_skip(&["prometheus", "promtool"]) {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let (_exporter, exporter_addr) = common::start_demo_exporter("warn");

    // The exposition is valid for promtool.
    let (status, _, body) = http_get(&exporter_addr, "/metrics").expect("scrape");
    assert_eq!(status, 200);
    let metrics_file = dir.path().join("metrics.txt");
    std::fs::write(&metrics_file, &body).expect("write metrics");
    let check = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::fs::File::open(&metrics_file).expect("open"))
        .output()
        .expect("promtool runs");
    assert!(
        check.status.success(),
        "promtool check metrics failed:\n{}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );

    // Prometheus scrapes it and answers queries.
    let (_prom, prom_addr) = start_prometheus(
        dir.path(),
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: workspacesweb\n    static_configs:\n      - targets: ['{exporter_addr}']\n"
        ),
    );
    let series = poll_until(Duration::from_secs(90), || {
        prom_query(&prom_addr, "workspacesweb_active_sessions", None).filter(|r| r.len() == 3)
    })
    .expect("Prometheus has workspacesweb_active_sessions for the 3 demo portals");
    for s in &series {
        let portal = s["metric"]["portal_id"].as_str().expect("portal_id label");
        assert_eq!(portal.len(), 36, "{s}");
        assert_eq!(s["metric"]["job"], "workspacesweb");
        let value: f64 = s["value"][1]
            .as_str()
            .and_then(|v| v.parse().ok())
            .expect("numeric value");
        assert!(value >= 0.0 && value.fract() == 0.0, "{s}");
    }
    let up = prom_query(&prom_addr, "workspacesweb_up", None).expect("up");
    assert_eq!(up.len(), 3);
    let scrape_ok = prom_query(&prom_addr, "up", None).expect("scrape up");
    assert_eq!(
        scrape_ok[0]["value"][1], "1",
        "Prometheus scraped the exporter"
    );
    assert!(Path::new(&metrics_file).exists());
}

/// The native buckets of schema 3 as a reader of the timeline places a duration: the `i` with
/// `2^((i-1)/8) < d <= 2^(i/8)`.
fn native_bucket(seconds: f64) -> i64 {
    (seconds.log2() * 8.0).ceil() as i64
}

/// A Prometheus 2.42 with `--enable-feature=native-histograms` scrapes the protobuf exposition:
/// `histogram_count` of the duration histogram is the number of sessions of the simulator's
/// timeline that terminated, and its `histogram_quantile(0.5, ...)` lies within one native bucket
/// of the timeline's true median. (The classic series for a Prometheus without the flag are
/// [`prometheus_scrapes_the_demo_exporter`]'s and the dashboard's.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_with_native_histograms_reads_the_exact_durations() {
    if !have_tools_or_skip(&["prometheus", "promtool"]) {
        return;
    }
    const PORTAL: &str = "90000000-0000-4000-8000-0000000000e2";
    let now = workspacesweb_exporter::clock::now_ms();
    // 48 sessions from 1 s to about 8 h long (a factor of 1.2 apart), all ending 3 to 8 s from
    // now: after T0 (the first poll), so each counts as terminated with its exact duration.
    let durations_ms: Vec<i64> = (0..48).map(|i| (1000.0 * 1.2f64.powi(i)) as i64).collect();
    let sessions: Vec<SimSession> = durations_ms
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let end = now + 3_000 + i as i64 * 100;
            SimSession::new(SimSession::id_for(i as u64), format!("u{}", i % 5), end - d).ended(end)
        })
        .collect();
    let env = start(SimConfig::new(42).with_portal(PortalSpec::scripted(PORTAL, sessions))).await;
    let sched = Scheduler::start(
        vec![plan(PORTAL, Duration::from_secs(1), 100)],
        &env.clients,
        env.store.clone(),
        1,
    )
    .await;
    let serving = Serving::start(env.store.clone()).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let (_prom, prom) = start_prometheus_with(
        dir.path(),
        format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: native\n    static_configs:\n      - targets: ['{}']\n",
            serving.addr
        ),
        &["--enable-feature=native-histograms"],
    );
    let value = |q: &str| {
        prom_query(&prom, q, None).and_then(|r| {
            r.first()
                .and_then(|s| s["value"][1].as_str().and_then(|v| v.parse::<f64>().ok()))
        })
    };
    let count = "histogram_count(workspacesweb_session_duration_seconds)";
    let all = poll_until(Duration::from_secs(90), || {
        value(count).filter(|c| *c == 48.0)
    });
    assert_eq!(all, Some(48.0), "histogram_count of the native histogram");
    let sum = value("histogram_sum(workspacesweb_session_duration_seconds)").expect("sum");
    let want_sum: i64 = durations_ms.iter().sum();
    assert_eq!(sum, want_sum as f64 / 1000.0);

    let median =
        value("histogram_quantile(0.5, workspacesweb_session_duration_seconds)").expect("a median");
    let mut sorted: Vec<f64> = durations_ms.iter().map(|d| *d as f64 / 1000.0).collect();
    sorted.sort_by(f64::total_cmp);
    let (low, high) = (sorted[23], sorted[24]);
    let bucket = native_bucket(median);
    assert!(
        (native_bucket(low) - 1..=native_bucket(high) + 1).contains(&bucket),
        "median {median} (bucket {bucket}) vs the timeline's {low}..{high}"
    );
    sched.shutdown().await;
    serving.stop().await;
}
