//! `--demo`: an in-process simulator with three demo portals, and the plans that poll it.
//!
//! The only user of the simulator crate in the exporter. A build without the cargo feature `demo`
//! holds no simulator: there, [`Demo::start`] fails with [`NO_DEMO`].

use std::time::Duration;

#[cfg(feature = "demo")]
use crate::aws::ClientKey;
#[cfg(feature = "demo")]
use crate::poll::DEFAULT_METADATA_REFRESH;
use crate::poll::PortalPlan;
#[cfg(feature = "demo")]
use crate::users::{LabelMode, UserSettings};
#[cfg(feature = "demo")]
use workspacesweb_sim::{PortalInfo, RunningSim, SimConfig, Simulator};

/// Poll interval of the demo portals: short, so numbers move while you watch.
pub const DEMO_INTERVAL: Duration = Duration::from_secs(5);

/// Client-side rate limit of the demo: the simulator is local, so higher than the default of 5
/// (`global.max_requests_per_second`), while still showing the limiter at work during the backfill.
pub const DEMO_MAX_REQUESTS_PER_SECOND: f64 = 50.0;

/// Histogram buckets of the demo (the spec's defaults).
pub const DEMO_BUCKETS: [f64; 10] = [
    60.0, 300.0, 900.0, 1800.0, 3600.0, 7200.0, 14400.0, 28800.0, 43200.0, 86400.0,
];

/// The error of `--demo` in a build without the cargo feature `demo`.
pub const NO_DEMO: &str = "this build has no demo: it was built without the cargo feature `demo` (build with default features)";

/// A running demo simulator and the portals to poll on it.
#[cfg(feature = "demo")]
pub struct Demo {
    /// The simulator (kept alive for the life of the demo).
    pub sim: Simulator,
    /// Its HTTP server.
    pub running: RunningSim,
    /// One plan per demo portal, pointed at the simulator.
    pub plans: Vec<PortalPlan>,
}

#[cfg(feature = "demo")]
impl Demo {
    /// Starts the simulator on a free loopback port with the demo portals.
    pub async fn start(seed: u64) -> std::io::Result<Demo> {
        let sim = Simulator::new(SimConfig::demo(seed));
        let running = sim
            .start(std::net::SocketAddr::from(([127, 0, 0, 1], 0)))
            .await?;
        let plans = sim.portals().iter().map(plan).collect();
        Ok(Demo {
            sim,
            running,
            plans,
        })
    }

    /// Base URL of the simulator.
    pub fn endpoint_url(&self) -> String {
        self.running.endpoint_url()
    }
}

/// The demo in a build without a simulator: it never starts.
#[cfg(not(feature = "demo"))]
pub struct Demo {
    /// Always empty.
    pub plans: Vec<PortalPlan>,
}

#[cfg(not(feature = "demo"))]
impl Demo {
    /// Fails with [`NO_DEMO`]: this build holds no simulator.
    pub async fn start(_seed: u64) -> std::io::Result<Demo> {
        Err(std::io::Error::new(
            std::io::ErrorKind::Unsupported,
            NO_DEMO,
        ))
    }

    /// Never called: no demo starts in this build.
    pub fn endpoint_url(&self) -> String {
        String::new()
    }
}

/// The plan that polls one demo portal.
#[cfg(feature = "demo")]
fn plan(p: &PortalInfo) -> PortalPlan {
    PortalPlan {
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
    }
}
