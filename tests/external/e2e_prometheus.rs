//! End to end: the real exporter binary in demo mode, scraped by a real Prometheus server.
//! Fails (does not skip) when `CI` is set and Prometheus is missing.

use crate::common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::common::{have_tools_or_skip, http_get, poll_until, prom_query, start_prometheus};

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
