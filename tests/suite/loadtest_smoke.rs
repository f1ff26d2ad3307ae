//! Smoke test of the load-test bench (`examples/loadtest.rs`): a few seconds with tiny numbers,
//! asserting only that it runs end to end and prints its table (no figure is checked: timings on
//! a shared CI machine mean nothing).

#[allow(dead_code)]
#[path = "../../examples/loadtest.rs"]
mod loadtest;

use clap::Parser as _;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_loadtest_runs_and_prints_its_table() {
    let exporter = env!("CARGO_BIN_EXE_workspacesweb-exporter");
    for full_scan in [false, true] {
        let mut args = vec![
            "loadtest",
            "--exporter",
            exporter,
            "--portals",
            "2",
            "--active",
            "20",
            "--history",
            "300",
            "--churn",
            "2",
            "--users",
            "10",
            "--per-user",
            "--interval",
            "1s",
            "--duration",
            "3s",
            "--scrapers",
            "3",
            "--scrape-interval",
            "200ms",
            "--warmup-timeout",
            "20s",
            "--quiet",
        ];
        if full_scan {
            args.push("--full-scan");
        }
        let table = loadtest::run(loadtest::Args::parse_from(args)).await;
        println!("{table}");
        let mode = if full_scan {
            "full scan"
        } else {
            "incremental"
        };
        assert!(
            table.starts_with(&format!("| loadtest ({mode}) |")),
            "{table}"
        );
        for row in [
            "| healthy after start (ms) |",
            "| ListSessions per poll per portal |",
            "| GetSession per poll per portal |",
            "| exporter CPU (s per minute) |",
            "| exporter peak RSS, VmHWM (MiB) |",
            "| /metrics p50 / p99 / max (ms) |",
            "| polls on schedule (gap <= 1.1 x interval) |",
        ] {
            assert!(table.contains(row), "missing {row:?} in\n{table}");
        }
    }
}
