//! The restart test that runs a real Prometheus: no reset and an exact increase() across two
//! restarts with durable state (the harness is `tests/common/restart_harness.rs`).

use std::time::{Duration, Instant};

use crate::common::{self, free_port, poll_until};
use crate::restart_harness::*;
use workspacesweb_exporter::clock::now_ms;
use workspacesweb_sim::PortalSpec;

/// The one value of an instant-vector query.
fn prom_value(prom: &str, q: &str, time: Option<&str>) -> Option<f64> {
    let r = common::prom_query(prom, q, time)?;
    match r.as_slice() {
        [one] => one["value"][1].as_str()?.parse().ok(),
        _ => None,
    }
}

/// The raw samples `(ms, value)` of a range-vector query.
fn prom_samples(prom: &str, q: &str) -> Vec<(i64, f64)> {
    let r = common::prom_query(prom, q, None).unwrap_or_else(|| panic!("query {q}"));
    assert_eq!(r.len(), 1, "{q}: {r:?}");
    r[0]["values"]
        .as_array()
        .expect("values")
        .iter()
        .map(|pair| {
            let t = pair[0].as_f64().expect("timestamp");
            let v: f64 = pair[1].as_str().expect("value").parse().expect("number");
            ((t * 1000.0).round() as i64, v)
        })
        .collect()
}

/// Seconds with milliseconds, as Prometheus takes a time.
fn prom_time(ms: i64) -> String {
    format!("{}.{:03}", ms.div_euclid(1000), ms.rem_euclid(1000))
}

#[test]
fn prometheus_sees_no_reset_across_two_restarts_with_state() {
    const PORTAL: &str = "cccccccc-0000-4000-8000-000000000004";
    const USERS: &[&str] = &["ann", "ben", "cat"];
    if !common::have_tools_or_skip(&["prometheus"]) {
        return;
    }
    let began = Instant::now();
    let now = now_ms();
    let ages = [("ann", 100 * S), ("ben", 1000 * S), ("cat", 10_000 * S)];
    let sim = start_sim(vec![PortalSpec::scripted(PORTAL, baseline(now, &ages))]);
    let dir = tempfile::tempdir().expect("tempdir");
    let storage = dir.path().join("state");
    let config = write_config(dir.path(), &sim.endpoint, &[PORTAL], FAST, false, "");
    let addr = format!("127.0.0.1:{}", free_port());
    let (_prom, prom) = common::start_prometheus(
        dir.path(),
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: restarts\n    static_configs:\n      - targets: ['{addr}']\n"
        ),
    );
    let open = (0..ages.len() as u64)
        .map(|i| (i, now - ages[i as usize].1))
        .collect();
    let churn = Churn::start(&sim.sim, PORTAL, 4, 1000, USERS, open, 150..400);
    let started_q = format!("{STARTED}{{portal_id=\"{PORTAL}\"}}");
    let terminated_q = format!("{TERMINATED}{{portal_id=\"{PORTAL}\"}}");
    // How many samples of the started counter Prometheus holds (a sync signal on its scrapes).
    let samples = || prom_value(&prom, &format!("count_over_time({started_q}[10m])"), None);
    let wait_samples = |n: f64| {
        poll_until(Duration::from_secs(60), || {
            samples().filter(|c| *c >= n).map(|_| ())
        })
        .unwrap_or_else(|| panic!("Prometheus never held {n} samples"))
    };

    // Three processes on the same address: stopped with SIGTERM, then with kill -9.
    let mut a = Exporter::spawn(&config, Some(&storage), &addr);
    a.wait_ready();
    wait_samples(4.0);
    a.stop();
    let mut b = Exporter::spawn(&config, Some(&storage), &addr);
    b.wait_ready();
    wait_samples(samples().unwrap_or(0.0) + 4.0);
    b.kill9();
    let mut c = Exporter::spawn(&config, Some(&storage), &addr);
    c.wait_ready();
    wait_samples(samples().unwrap_or(0.0) + 3.0);
    let ((added, ended), last) = churn.finish();
    sleep_past(last);
    let m = c.wait_poll_after(PORTAL, last + QUIET_MS);
    assert_eq!(m.portal(RESTORED, PORTAL), Some(1.0));
    let o = m.observed(PORTAL);
    let expected = truth_at(&sim.sim, PORTAL, &m, state_t0(&storage, PORTAL), false);
    assert_eq!(o, expected, "final values against the timeline");
    // Prometheus has scraped the final values.
    poll_until(Duration::from_secs(30), || {
        (prom_value(&prom, &started_q, None) == Some(o.started as f64)
            && prom_value(&prom, &terminated_q, None) == Some(o.terminated as f64))
        .then_some(())
    })
    .expect("Prometheus scraped the final values");

    for (name, q, last_value) in [
        ("started", &started_q, o.started),
        ("terminated", &terminated_q, o.terminated),
    ] {
        // The raw samples, then a window from exactly the first to the last (plus 1 ms, so that the
        // first sample is inside whether the range is closed or left-open on the left): nothing to
        // extrapolate.
        let raw = prom_samples(&prom, &format!("{q}[10m]"));
        let (first, last) = (raw[0], raw[raw.len() - 1]);
        assert_eq!(last.1, last_value as f64, "{name}: {raw:?}");
        let window = format!("{}ms", last.0 - first.0 + 1);
        let at = prom_time(last.0);
        let increase = prom_value(&prom, &format!("increase({q}[{window}])"), Some(&at))
            .unwrap_or_else(|| panic!("increase of {name}"));
        let resets = prom_value(&prom, &format!("resets({q}[{window}])"), Some(&at))
            .unwrap_or_else(|| panic!("resets of {name}"));
        eprintln!(
            "{name}: {} samples from {} to {}, increase {increase}, resets {resets}",
            raw.len(),
            first.1,
            last.1
        );
        assert_eq!(resets, 0.0, "{name}: Prometheus saw a reset: {raw:?}");
        assert_eq!(
            increase.round(),
            last.1 - first.1,
            "{name}: increase() over the window: {raw:?}"
        );
        assert!(last.1 > first.1, "{name} moved during the test: {raw:?}");
    }
    // Prometheus really saw three processes.
    let restarts = prom_value(
        &prom,
        "changes(process_start_time_seconds{job=\"restarts\"}[10m])",
        None,
    );
    assert_eq!(restarts, Some(2.0), "two restarts seen by Prometheus");
    eprintln!(
        "{added} sessions added, {ended} ended; took {:?}",
        began.elapsed()
    );
    c.stop();
}
