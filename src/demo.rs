//! `--demo`: an in-process simulator with three demo portals in an AWS Organization of two
//! accounts, and the configuration that polls it. The demo is an ordinary [`Config`]: one
//! organization discovery entry pointed at the simulator's endpoint, and the defaults of every
//! other setting. Its portals are found and polled the way a file's organization entry finds
//! them: `ListAccounts`, `AssumeRole` of the member role in each account, `ListPortals`.
//!
//! The only user of the simulator crate in the exporter. A build without the cargo feature `demo`
//! holds no simulator: there, [`Demo::start`] fails with [`NO_DEMO`].

use std::time::Duration;

use crate::config::Config;
#[cfg(feature = "demo")]
use crate::config::{Access, DiscoveryConfig, Global, OrganizationConfig, PerUser};
#[cfg(feature = "demo")]
use workspacesweb_sim::{DEMO_MEMBER_ROLE, RunningSim, SimConfig, Simulator};

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
    /// Organization discovery of the demo's accounts, pointed at the simulator.
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

/// The configuration of the demo: organization discovery of every account of `sim`'s
/// organization (member role [`DEMO_MEMBER_ROLE`]) in the regions of its portals at
/// `endpoint_url`, the portals polled every [`DEMO_INTERVAL`], labelled `env="demo"`, with
/// per-user series of raw usernames (demo users are invented; real deployments use `username:
/// hashed`); the defaults for everything else.
#[cfg(feature = "demo")]
fn demo_config(sim: &Simulator, endpoint_url: &str) -> Config {
    let mut regions: Vec<String> = sim.portals().into_iter().map(|p| p.region).collect();
    regions.sort();
    regions.dedup();
    let discovery = DiscoveryConfig {
        organization: Some(OrganizationConfig {
            role_name: DEMO_MEMBER_ROLE.to_string(),
            external_id: None,
            role_arn: None,
            ous: Vec::new(),
            exclude_accounts: Vec::new(),
        }),
        regions,
        access: Access {
            endpoint_url: Some(endpoint_url.to_string()),
            ..Access::default()
        },
        refresh: crate::config::DEFAULT_DISCOVERY_REFRESH,
        labels: Default::default(),
    };
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
        discovery: vec![discovery],
        ..Config::default()
    }
}

#[cfg(all(test, feature = "demo"))]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::aws::{ClientKey, PortalInfo};
    use crate::config::{DEFAULT_DISCOVERY_REFRESH, DEFAULT_DURATION_BUCKETS};
    use crate::discovery::SourceKey;
    use crate::reconcile::wanted_plans;
    use crate::users::{LabelMode, UserSettings};
    use workspacesweb_sim::{DEMO_MANAGEMENT_ACCOUNT, DEMO_MEMBER_ACCOUNT};

    /// The demo's portals, as organization discovery finds them (each in its account's listing),
    /// become plans with the defaults of a configuration file (5 s interval, 4 s timeout, the
    /// default page size, page bound and buckets, raw per-user series), each polled as the member
    /// role of its own account, through the same `plan_for` as a file's.
    #[tokio::test]
    async fn the_demo_polls_its_portals_with_the_defaults_of_a_config_file() {
        let sim = Simulator::new(SimConfig::demo(1));
        let config = demo_config(&sim, "http://127.0.0.1:9");
        assert_eq!(config.discovery.len(), 1);
        assert!(config.portals.is_empty());
        let portals = sim.portals();
        let mut found: BTreeMap<SourceKey, Vec<PortalInfo>> = BTreeMap::new();
        for p in &portals {
            let key = SourceKey {
                entry: 0,
                region: p.region.clone(),
                account: Some(p.account.clone()),
            };
            found.entry(key).or_default().push(PortalInfo {
                arn: p.arn.clone(),
                ..PortalInfo::default()
            });
        }
        let accounts: Vec<&str> = portals.iter().map(|p| p.account.as_str()).collect();
        assert!(
            accounts.contains(&DEMO_MANAGEMENT_ACCOUNT) && accounts.contains(&DEMO_MEMBER_ACCOUNT)
        );
        let plans = wanted_plans(&config, 0, &found);
        assert_eq!(plans.len(), portals.len());
        assert!(plans.len() >= 3, "{plans:?}");
        for portal in &portals {
            let plan = plans
                .iter()
                .find(|p| p.portal_id == portal.id)
                .expect("every portal planned");
            assert_eq!(plan.labels, [("env".to_string(), "demo".to_string())]);
            let client = ClientKey {
                region: Some(portal.region.clone()),
                role_arn: Some(format!(
                    "arn:aws:iam::{}:role/{DEMO_MEMBER_ROLE}",
                    portal.account
                )),
                external_id: None,
                endpoint_url: Some("http://127.0.0.1:9".into()),
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
            assert_eq!(
                plan.arn.as_deref(),
                Some(portal.arn.as_str()),
                "from ListPortals"
            );
            assert_eq!(plan.metadata_refresh, DEFAULT_DISCOVERY_REFRESH);
        }
        assert_eq!(config.global.max_requests_per_second, 50.0);
        assert_eq!(config.global.concurrency, 4);
    }
}
