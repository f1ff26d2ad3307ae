//! Organization discovery at scale against the in-process simulator; prints one table.
//!
//! ```sh
//! cargo run --release --example organization -- --accounts 500 --regions 3
//! cargo run --release --example organization -- --accounts 500 --regions 3 --latency 100ms
//! ```
//!
//! The simulator serves a generated organization (`--accounts` accounts over the root and OUs
//! three levels deep, one cheap portal per account and region). The exporter's own control loop
//! (the library's `Reconciler`, as the binary runs it) discovers it from a config with one
//! organization entry and every other setting at its default: `max_requests_per_second` 5 per
//! region and account, `concurrency` 4, `interval` 60s. `--latency` delays every answer of the
//! simulator but STS's (WorkSpaces Web and Organizations), as a real endpoint's round trip would.
//!
//! Measured from the start of the control loop: the requests of the first refresh by operation
//! (Organizations pages, `AssumeRole`, `ListPortals`), when the last `ListPortals` was answered
//! (the refresh's wall time), and when the first, median, 90th percentile and last portal
//! finished its first poll, with how many had finished when the refresh ended (first polls start
//! as each account's `ListPortals` answers, not after the whole refresh).

use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use workspacesweb_exporter::aws::Clients;
use workspacesweb_exporter::config;
use workspacesweb_exporter::reconcile::Reconciler;
use workspacesweb_exporter::snapshot::Store;
use workspacesweb_sim::{Faults, RunningSim, SimConfig, Simulator, operation};

const REGIONS: [&str; 4] = ["us-east-1", "eu-west-1", "ap-southeast-2", "us-west-2"];

#[derive(Debug, Parser)]
#[command(
    about = "Organization discovery at scale: requests and time to every portal's first poll"
)]
struct Args {
    /// Accounts in the organization (the management account included).
    #[arg(long, default_value_t = 500)]
    accounts: usize,
    /// Regions listed (1 to 4), one portal per account in each.
    #[arg(long, default_value_t = 3)]
    regions: usize,
    /// Added to every answer of the simulator but STS's.
    #[arg(long, default_value = "0ms", value_parser = humantime::parse_duration)]
    latency: Duration,
    /// Give up after this long.
    #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
    limit: Duration,
}

/// Seconds since `t0`, for the table.
fn secs(t0: Instant, t: Option<Instant>) -> String {
    t.map_or("-".into(), |t| format!("{:.1} s", (t - t0).as_secs_f64()))
}

/// The simulator of the organization, every answer but STS's delayed by `latency`.
async fn organization(args: &Args, regions: &[&str]) -> (Simulator, String, RunningSim) {
    let sim = Simulator::new(SimConfig::generated_organization(
        1,
        args.accounts,
        regions,
        1,
    ));
    let running = sim
        .start(std::net::SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .expect("simulator listens");
    let slow = Faults {
        latency: args.latency,
        ..Faults::none()
    };
    for p in sim.portals() {
        sim.set_faults(&p.id, slow.clone()).expect("portal");
    }
    sim.set_list_portals_faults(slow.clone());
    sim.set_organizations_faults(None, slow);
    let endpoint = running.endpoint_url();
    (sim, endpoint, running)
}

/// When the last `ListPortals` of the first refresh arrived, how many portals had been polled
/// then, and when the first, the median, the 90th percentile and the last portal finished a
/// first poll (20 ms resolution).
struct Marks {
    listed: Option<Instant>,
    polled_when_listed: usize,
    polled: [Option<Instant>; 4],
}

/// Watches the store and the simulator until every portal is polled (or `limit`).
async fn watch(sim: &Simulator, store: &Store, pairs: u64, t0: Instant, limit: Duration) -> Marks {
    let portals = sim.portals().len();
    let thresholds = [1, portals.div_ceil(2), portals * 9 / 10, portals];
    let mut marks = Marks {
        listed: None,
        polled_when_listed: 0,
        polled: [None; 4],
    };
    loop {
        let now = Instant::now();
        let done = store.portals().iter().filter(|p| p.polled && p.up).count();
        if marks.listed.is_none() && sim.operation_count(operation::LIST_PORTALS) >= pairs {
            marks.listed = Some(now);
            marks.polled_when_listed = done;
        }
        for (mark, n) in marks.polled.iter_mut().zip(thresholds) {
            if mark.is_none() && done >= n {
                *mark = Some(now);
            }
        }
        if marks.polled[3].is_some() || now - t0 > limit {
            return marks;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let regions = &REGIONS[..args.regions.clamp(1, REGIONS.len())];
    let (sim, endpoint, _running) = organization(&args, regions).await;
    let yaml = format!(
        "discovery:\n  - organization:\n      role_name: {}\n    regions: [{}]\n    endpoint_url: {endpoint}\n",
        workspacesweb_sim::DEMO_MEMBER_ROLE,
        regions.join(", ")
    );
    let loaded = config::parse(&yaml, "bench").expect("valid config");
    let clients = Clients::with_static_credentials("us-east-1", &endpoint).await;
    let store = Arc::new(Store::new());
    let pairs = (args.accounts * regions.len()) as u64;

    let t0 = Instant::now();
    let r = Reconciler::start(loaded.config, 0, clients, store.clone(), None).await;
    let (_commands, rx) = tokio::sync::mpsc::channel(1);
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(r.run(rx, stop_rx));
    let marks = watch(&sim, &store, pairs, t0, args.limit).await;
    let organizations: u64 = [
        operation::LIST_ACCOUNTS,
        operation::LIST_CHILDREN,
        operation::LIST_ACCOUNTS_FOR_PARENT,
    ]
    .iter()
    .map(|op| sim.operation_count(op))
    .sum();
    println!(
        "| accounts × regions | portals | latency | Organizations pages | AssumeRole | ListPortals | refresh (last ListPortals) | polled then | 1st portal polled | 50 % | 90 % | all | requests in all |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let p = marks.polled;
    println!(
        "| {} × {} | {} | {:?} | {organizations} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
        args.accounts,
        regions.len(),
        sim.portals().len(),
        args.latency,
        sim.operation_count(workspacesweb_sim::ASSUME_ROLE),
        sim.operation_count(operation::LIST_PORTALS),
        secs(t0, marks.listed),
        marks.polled_when_listed,
        secs(t0, p[0]),
        secs(t0, p[1]),
        secs(t0, p[2]),
        secs(t0, p[3]),
        sim.total_requests(),
    );
    let _ = stop.send(true);
    let _ = task.await;
}
