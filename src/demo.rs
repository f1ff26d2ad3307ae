//! `--demo`: an in-process simulator with three demo portals, and the configuration that polls
//! it. The demo is an ordinary [`Config`] (its portals, pointed at the simulator's endpoint, and
//! the defaults of every other setting): its portals become plans the way a file's do.
//!
//! The only user of the simulator crate in the exporter. A build without the cargo feature `demo`
//! holds no simulator: there, [`Demo::start`] fails with [`NO_DEMO`].

use std::time::Duration;

use crate::config::Config;
#[cfg(feature = "demo")]
use crate::config::{Access, Global, PerUser, PortalConfig};
#[cfg(feature = "demo")]
use workspacesweb_sim::{RunningSim, SimConfig, Simulator};

/// Poll interval of the demo portals: short, so numbers move while you watch.
pub const DEMO_INTERVAL: Duration = Duration::from_secs(5);

/// Client-side rate limit of the demo: the simulator is local, so higher than the default of 5
/// (`global.max_requests_per_second`), while still showing the limiter at work during the backfill.
pub const DEMO_MAX_REQUESTS_PER_SECOND: f64 = 50.0;

/// The error of `--demo` in a build without the cargo feature `demo`.
pub const NO_DEMO: &str = "this build has no demo: it was built without the cargo feature `demo` (build with default features)";

/// A running demo simulator and the configuration that polls it.
#[cfg(feature = "demo")]
pub struct Demo {
    /// The simulator (kept alive for the life of the demo).
    pub sim: Simulator,
    /// Its HTTP server.
    pub running: RunningSim,
    /// The demo portals, pointed at the simulator.
    pub config: Config,
}

#[cfg(feature = "demo")]
impl Demo {
    /// Starts the simulator on a free loopback port with the demo portals.
    pub async fn start(seed: u64) -> std::io::Result<Demo> {
        let sim = Simulator::new(SimConfig::demo(seed));
        let running = sim
            .start(std::net::SocketAddr::from(([127, 0, 0, 1], 0)))
            .await?;
        let config = demo_config(&sim, &running.endpoint_url());
        Ok(Demo {
            sim,
            running,
            config,
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
    /// Never built.
    pub config: Config,
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

/// The configuration of the demo: every portal of `sim` by id (its ARN is learned from its
/// sessions, as for a portal configured by id) in its region at `endpoint_url`, polled every
/// [`DEMO_INTERVAL`], labelled `env="demo"`, with per-user series of raw usernames (demo users are
/// invented; real deployments use `username: hashed`); the defaults for everything else.
#[cfg(feature = "demo")]
fn demo_config(sim: &Simulator, endpoint_url: &str) -> Config {
    let portals = sim
        .portals()
        .into_iter()
        .map(|p| PortalConfig {
            id: p.id,
            arn: None,
            region: Some(p.region),
            access: Access {
                endpoint_url: Some(endpoint_url.to_string()),
                ..Access::default()
            },
            interval: None,
            labels: Default::default(),
        })
        .collect();
    Config {
        global: Global {
            interval: DEMO_INTERVAL,
            labels: [("env".to_string(), "demo".to_string())].into(),
            max_requests_per_second: DEMO_MAX_REQUESTS_PER_SECOND,
            ..Global::default()
        },
        per_user: PerUser {
            enabled: true,
            ..PerUser::default()
        },
        portals,
        ..Config::default()
    }
}

#[cfg(all(test, feature = "demo"))]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::aws::ClientKey;
    use crate::config::{DEFAULT_DISCOVERY_REFRESH, DEFAULT_DURATION_BUCKETS};
    use crate::reconcile::wanted_plans;
    use crate::users::{LabelMode, UserSettings};

    /// The demo's portals become the plans the demo used to build by hand (5 s interval, 4 s
    /// timeout, the default page size, page bound and buckets, raw per-user series), through
    /// the same `plan_for` as a configuration file's.
    #[tokio::test]
    async fn the_demo_polls_its_portals_with_the_defaults_of_a_config_file() {
        let sim = Simulator::new(SimConfig::demo(1));
        let config = demo_config(&sim, "http://127.0.0.1:9");
        let plans = wanted_plans(&config, 0, &BTreeMap::new());
        let portals = sim.portals();
        assert_eq!(plans.len(), portals.len());
        assert!(plans.len() >= 3, "{plans:?}");
        for (plan, portal) in plans.iter().zip(&portals) {
            assert_eq!(plan.portal_id, portal.id);
            assert_eq!(plan.labels, [("env".to_string(), "demo".to_string())]);
            let client = ClientKey {
                region: Some(portal.region.clone()),
                endpoint_url: Some("http://127.0.0.1:9".into()),
                ..ClientKey::default()
            };
            assert_eq!(plan.client, client);
            assert_eq!(plan.interval, DEMO_INTERVAL);
            assert_eq!(plan.timeout, Duration::from_secs(4));
            assert_eq!((plan.page_size, plan.max_pages), (100, 2000));
            assert_eq!(plan.duration_buckets, DEFAULT_DURATION_BUCKETS);
            let per_user = UserSettings {
                mode: LabelMode::Raw,
                max_users: 1000,
                idle_ttl_ms: 24 * 3_600_000,
            };
            assert_eq!(plan.per_user, Some(per_user));
            assert_eq!(plan.arn, None, "learned from the sessions");
            assert_eq!(plan.metadata_refresh, DEFAULT_DISCOVERY_REFRESH);
        }
        assert_eq!(config.global.max_requests_per_second, 50.0);
        assert_eq!(config.global.concurrency, 4);
    }
}
