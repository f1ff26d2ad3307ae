//! `--demo`: an in-process simulator with three demo portals, and the plans that poll it.

use std::net::SocketAddr;
use std::time::Duration;

use crate::aws::ClientKey;
use crate::poll::{DEFAULT_METADATA_REFRESH, PortalPlan};
use crate::sim::{RunningSim, SimConfig, Simulator};
use crate::users::{LabelMode, UserSettings};

/// Poll interval of the demo portals: short, so numbers move while you watch.
pub const DEMO_INTERVAL: Duration = Duration::from_secs(5);

/// Client-side rate limit of the demo: the simulator is local, so higher than the default of 5
/// (`global.max_requests_per_second`), while still showing the limiter at work during the backfill.
pub const DEMO_MAX_REQUESTS_PER_SECOND: f64 = 50.0;

/// Histogram buckets of the demo (the spec's defaults).
pub const DEMO_BUCKETS: [f64; 10] = [
    60.0, 300.0, 900.0, 1800.0, 3600.0, 7200.0, 14400.0, 28800.0, 43200.0, 86400.0,
];

/// A running demo simulator and the portals to poll on it.
pub struct Demo {
    /// The simulator (kept alive for the life of the demo).
    pub sim: Simulator,
    /// Its HTTP server.
    pub running: RunningSim,
    /// One plan per demo portal, pointed at the simulator.
    pub plans: Vec<PortalPlan>,
}

impl Demo {
    /// Starts the simulator on a free loopback port with the demo portals.
    pub async fn start(seed: u64) -> std::io::Result<Demo> {
        let sim = Simulator::new(SimConfig::demo(seed));
        let running = sim.start(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
        let plans = sim
            .portals()
            .into_iter()
            .map(|p| PortalPlan {
                portal_id: p.id.clone(),
                labels: vec![("env".to_string(), "demo".to_string())],
                client: ClientKey {
                    region: Some(p.region.clone()),
                    ..Default::default()
                },
                interval: DEMO_INTERVAL,
                timeout: DEMO_INTERVAL.mul_f64(0.8),
                page_size: 100,
                max_pages: 2000,
                duration_buckets: DEMO_BUCKETS.to_vec(),
                // Demo users are invented, so show them raw (real deployments: `username: hashed`).
                per_user: Some(UserSettings {
                    mode: LabelMode::Raw,
                    max_users: 1000,
                    idle_ttl_ms: 24 * 3_600_000,
                }),
                // Learned from the sessions' portalArn, as for a portal configured by id.
                arn: None,
                metadata_refresh: DEFAULT_METADATA_REFRESH,
            })
            .collect();
        Ok(Demo {
            sim,
            running,
            plans,
        })
    }

    /// Base URL of the simulator.
    pub fn endpoint_url(&self) -> String {
        format!("http://{}", self.running.addr)
    }
}
