//! `deploy/compose/`: every file its services mount exists, the Grafana provisioning finds the
//! dashboard, and its Prometheus configuration passes `promtool check config` and, run by a real
//! Prometheus against the demo exporter, scrapes it under the job the alerts expect and loads
//! every rule group.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::common::{have_tools_or_skip, http_get, poll_until, prom_query, start_prometheus};
use serde_norway::Value;

fn compose_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/compose")
}

fn yaml(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_norway::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// `(host source, container target)` of every bind mount of `service`.
fn mounts(compose: &Value, service: &str) -> Vec<(String, String)> {
    compose["services"][service]["volumes"]
        .as_sequence()
        .unwrap_or_else(|| panic!("{service}: no volumes"))
        .iter()
        .map(|v| {
            let spec = v.as_str().expect("short volume syntax");
            let mut parts = spec.split(':');
            let source = parts.next().expect("source").to_string();
            let target = parts.next().expect("target").to_string();
            (source, target)
        })
        .collect()
}

/// The host path mounted at `target` in `service`, or under a mounted parent directory.
fn host_path(compose: &Value, service: &str, target: &str) -> PathBuf {
    mounts(compose, service)
        .into_iter()
        .find_map(|(source, mount)| {
            let rest = target.strip_prefix(&mount)?;
            let source = compose_dir().join(source);
            match rest.strip_prefix('/') {
                _ if rest.is_empty() => Some(source),
                Some(rest) => Some(source.join(rest)),
                None => None,
            }
        })
        .unwrap_or_else(|| panic!("{service}: nothing mounted at {target}"))
}

#[test]
fn compose_mounts_existing_files_and_provisions_the_dashboard() {
    let compose = yaml(&compose_dir().join("compose.yaml"));
    for service in ["exporter", "prometheus", "grafana"] {
        for (source, target) in mounts(&compose, service) {
            if source.starts_with('$') {
                continue; // ${HOME}/.aws: the user's own, optional
            }
            let path = compose_dir().join(&source);
            assert!(
                path.exists(),
                "{service}: {source} (mounted at {target}) does not exist"
            );
        }
    }
    let build = &compose["services"]["exporter"]["build"];
    let context = compose_dir().join(build["context"].as_str().expect("context"));
    assert!(
        context
            .join(build["dockerfile"].as_str().expect("dockerfile"))
            .is_file()
    );
    // Prometheus: the rule files its config names are the shipped ones.
    let prometheus = yaml(&compose_dir().join("prometheus.yml"));
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/prometheus");
    for rule in prometheus["rule_files"].as_sequence().expect("rule_files") {
        let target = format!("/etc/prometheus/{}", rule.as_str().expect("rule file"));
        let host = host_path(&compose, "prometheus", &target);
        let name = host.file_name().expect("file name").to_owned();
        assert_eq!(
            std::fs::canonicalize(&host).expect("rule file exists"),
            std::fs::canonicalize(shipped.join(name)).expect("shipped rule file"),
        );
    }
    // Grafana: the dashboard provider reads the directory where the shipped dashboard is mounted,
    // and the provisioned data source is a Prometheus the dashboard's data source variable accepts.
    let provider = yaml(&host_path(
        &compose,
        "grafana",
        "/etc/grafana/provisioning/dashboards/workspacesweb.yml",
    ));
    let path = provider["providers"][0]["options"]["path"]
        .as_str()
        .expect("provider path");
    let dashboards = host_path(&compose, "grafana", path);
    assert!(dashboards.join("workspacesweb.json").is_file());
    let datasources = yaml(&host_path(
        &compose,
        "grafana",
        "/etc/grafana/provisioning/datasources/prometheus.yml",
    ));
    assert_eq!(
        datasources["datasources"][0]["type"].as_str(),
        Some("prometheus")
    );
    assert_eq!(
        datasources["datasources"][0]["url"].as_str(),
        Some("http://prometheus:9090")
    );
}

#[test]
fn compose_prometheus_config_checks_and_runs_against_the_demo() {
    if !have_tools_or_skip(&["prometheus", "promtool"]) {
        return;
    }
    // The container's layout: prometheus.yml beside rules/ (compose.yaml's mounts).
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(dir.path().join("rules")).expect("rules dir");
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/prometheus");
    for file in ["alerts.yml", "recording.yml"] {
        std::fs::copy(shipped.join(file), dir.path().join("rules").join(file)).expect("copy rules");
    }
    let config = std::fs::read_to_string(compose_dir().join("prometheus.yml")).expect("config");
    std::fs::write(dir.path().join("prometheus.yml"), &config).expect("write config");
    let out = Command::new("promtool")
        .args(["check", "config"])
        .arg(dir.path().join("prometheus.yml"))
        .output()
        .expect("promtool runs");
    assert!(
        out.status.success(),
        "promtool check config:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // The same configuration, pointed at the demo exporter.
    let (_exporter, exporter_addr) = common::start_demo_exporter("warn");
    assert!(config.contains("\"exporter:10049\""));
    let (_prom, prom_addr) =
        start_prometheus(dir.path(), config.replace("exporter:10049", &exporter_addr));
    // The first scrape comes within one scrape_interval (15 s) of the start.
    let up = poll_until(Duration::from_secs(90), || {
        prom_query(&prom_addr, "up{job=\"workspacesweb-exporter\"} == 1", None)
            .filter(|r| r.len() == 1)
    });
    assert!(
        up.is_some(),
        "Prometheus never scraped the exporter as job workspacesweb-exporter"
    );
    let portals = poll_until(Duration::from_secs(90), || {
        prom_query(
            &prom_addr,
            "workspacesweb_up{job=\"workspacesweb-exporter\"}",
            None,
        )
        .filter(|r| r.len() == 3)
    });
    assert!(
        portals.is_some(),
        "no workspacesweb_up for the 3 demo portals"
    );
    // Every rule group of the shipped files is loaded and evaluates without error.
    let expected: usize = ["alerts.yml", "recording.yml"]
        .iter()
        .map(|f| {
            yaml(&shipped.join(f))["groups"]
                .as_sequence()
                .map_or(0, Vec::len)
        })
        .sum();
    let mut last = serde_json::Value::Null;
    let groups = poll_until(Duration::from_secs(90), || {
        let (_, _, body) = http_get(&prom_addr, "/api/v1/rules").ok()?;
        let v: serde_json::Value = serde_json::from_slice(&body).ok()?;
        last = v.clone();
        let groups = v["data"]["groups"].as_array()?.clone();
        // A group evaluates first within its interval: wait for those on the global 15 s one
        // (the daily group runs every 5 minutes), and no rule may have failed.
        let evaluated = groups.iter().all(|g| {
            g["rules"].as_array().is_some_and(|rules| {
                rules.iter().all(|r| {
                    r["health"] == "ok" || (r["health"] == "unknown" && g["interval"] != 15)
                })
            })
        });
        (groups.len() == expected && evaluated).then_some(groups)
    });
    assert!(
        groups.is_some(),
        "Prometheus did not load and evaluate the {expected} shipped rule groups: {last}"
    );
}
