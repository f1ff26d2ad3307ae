//! Keeps the running portals equal to what the configuration and discovery say this replica owns.
//!
//! One control loop owns the [`Scheduler`]. It handles reload requests (SIGHUP, `POST /-/reload`),
//! discovery results and sharding: the wanted plans are the static portals plus the discovered
//! ones (a static entry wins over a discovered one with the same id), kept when the portal id
//! hashes to this replica's shard index. A failed discovery listing keeps the previous list, so a
//! transient error never drops portals; a portal that a successful listing no longer returns
//! loses all its series. Organization entries ([`crate::organization`]) send their account set,
//! then each account × region's portals: an account that leaves the set loses its portals.
//!
//! When a reload restarts the discovery sources, the portals running then are held (polled with
//! their plan, counters kept) until every new source has listed once: a portal the new sources
//! still find keeps its ledger and takes its new plan (e.g. moving from `portals` with a
//! `role_arn` to organization discovery), and one they do not find goes then.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot, watch};
use tracing::info;

use crate::aws::{Account, ApiCounters, ClientKey, Clients, PortalInfo, portal_id_of_arn};
use crate::clock::now_ms;
use crate::config::{Config, DEFAULT_DISCOVERY_REFRESH, PortalTarget, ShardConfig, UsernameMode};
use crate::discovery::{self, Discovered, SourceKey, SourceTask};
use crate::organization::{self, OrgCounters, OrgEvent};
use crate::poll::{PortalPlan, Scheduler};
use crate::snapshot::{DiscoverySnapshot, Store};
use crate::status::Shard;
use crate::storage::StateDir;
use crate::users::{LabelMode, UserSettings};

/// A request to the control loop.
#[derive(Debug)]
pub enum Command {
    /// Put a validated configuration in force (sent by the reloader); the reply says it is.
    Apply(Box<ShardConfig>, oneshot::Sender<()>),
}

/// Per-user settings of `config`, when enabled.
pub fn user_settings(config: &Config) -> Option<UserSettings> {
    let p = &config.per_user;
    p.enabled.then(|| UserSettings {
        mode: match p.username {
            UsernameMode::Raw => LabelMode::Raw,
            UsernameMode::Hashed => LabelMode::Hashed {
                salt: p.hash_salt.clone(),
            },
        },
        max_users: p.max_users,
        idle_ttl_ms: i64::try_from(p.idle_ttl.as_millis()).unwrap_or(i64::MAX),
    })
}

/// The poll plan of one resolved portal target.
pub fn plan_for(
    config: &Config,
    t: PortalTarget,
    metadata_refresh: std::time::Duration,
) -> PortalPlan {
    PortalPlan {
        portal_id: t.id,
        labels: t.labels,
        client: ClientKey {
            region: t.region,
            role_arn: t.access.role_arn,
            external_id: t.access.external_id,
            endpoint_url: t.access.endpoint_url,
        },
        interval: t.interval,
        timeout: t.timeout,
        page_size: config.global.page_size,
        max_pages: config.global.max_pages,
        duration_buckets: config.global.duration_buckets.clone(),
        native_schema: config.global.native_histogram_schema,
        per_user: user_settings(config),
        arn: t.arn,
        metadata_refresh,
    }
}

/// The wanted plans: static portals, then discovered ones not configured statically, each kept
/// only when this replica's shard owns it.
pub fn wanted_plans(
    config: &Config,
    shard_index: u32,
    discovered: &BTreeMap<SourceKey, Vec<PortalInfo>>,
) -> Vec<PortalPlan> {
    let mut plans: BTreeMap<String, PortalPlan> = BTreeMap::new();
    for t in config.targets() {
        plans
            .entry(t.id.clone())
            .or_insert_with(|| plan_for(config, t, DEFAULT_DISCOVERY_REFRESH));
    }
    for (key, portals) in discovered {
        let Some(entry) = config.discovery.get(key.entry) else {
            continue;
        };
        for p in portals {
            let Some(id) = portal_id_of_arn(&p.arn) else {
                continue;
            };
            if !plans.contains_key(id) {
                let place = (key.account.as_deref(), key.region.as_str());
                let t = config.discovered_target(entry, id, Some(&p.arn), place);
                plans.insert(id.to_string(), plan_for(config, t, entry.refresh));
            }
        }
    }
    plans
        .into_values()
        .filter(|p| config.sharding.owns(shard_index, &p.portal_id))
        .collect()
}

/// When a discovery source last listed, and its error if that listing failed.
#[derive(Debug, Clone, Default)]
struct LastListing {
    at_unix: Option<f64>,
    error: Option<String>,
}

/// The control loop's state.
pub struct Reconciler {
    /// The configuration in force: the file's (the reloader applies a new one with
    /// [`Reconciler::apply`]), or the demo's.
    config: Config,
    shard_index: u32,
    clients: Clients,
    store: Arc<Store>,
    scheduler: Scheduler,
    discovered: BTreeMap<SourceKey, Vec<PortalInfo>>,
    pending: std::collections::BTreeSet<SourceKey>,
    sources: Vec<(SourceKey, SourceTask)>,
    /// Bumped each time the discovery sources restart; results of older ones are ignored.
    generation: u64,
    counters: BTreeMap<SourceKey, Arc<ApiCounters>>,
    /// The outcome of each source's last listing, for the landing page.
    listings: BTreeMap<SourceKey, LastListing>,
    events_tx: mpsc::Sender<Discovered>,
    events_rx: mpsc::Receiver<Discovered>,
    /// Organization discovery: the sources, by entry index.
    org_sources: Vec<(usize, SourceTask)>,
    /// Organization entries yet to finish their first refresh.
    org_pending: BTreeSet<usize>,
    /// Counters of each organization entry, kept across reloads while the entry stays one.
    org_counters: BTreeMap<usize, Arc<OrgCounters>>,
    /// The last good account set of each organization entry.
    accounts: BTreeMap<usize, Vec<Account>>,
    org_tx: mpsc::Sender<OrgEvent>,
    org_rx: mpsc::Receiver<OrgEvent>,
    /// The plans running when a reload restarted the discovery sources, kept while a new source
    /// has yet to list once.
    held: Vec<PortalPlan>,
}

impl Reconciler {
    /// Starts the portals of `config` and its discovery sources.
    pub async fn start(
        config: Config,
        shard_index: u32,
        clients: Clients,
        store: Arc<Store>,
        storage: Option<Arc<StateDir>>,
    ) -> Self {
        clients.set_rate(Some(config.global.max_requests_per_second));
        if let Some(dir) = &storage {
            dir.set_max_age(config.storage.max_age);
        }
        let (events_tx, events_rx) = mpsc::channel(64);
        let (org_tx, org_rx) = mpsc::channel(256);
        let mut r = Reconciler {
            scheduler: Scheduler::new(clients.clone(), store.clone(), config.global.concurrency)
                .with_storage(storage),
            config,
            shard_index,
            clients,
            store,
            discovered: BTreeMap::new(),
            pending: Default::default(),
            sources: Vec::new(),
            generation: 0,
            counters: BTreeMap::new(),
            listings: BTreeMap::new(),
            events_tx,
            events_rx,
            org_sources: Vec::new(),
            org_pending: BTreeSet::new(),
            org_counters: BTreeMap::new(),
            accounts: BTreeMap::new(),
            org_tx,
            org_rx,
            held: Vec::new(),
        };
        r.publish_shard();
        r.start_discovery().await;
        r.reconcile().await;
        r
    }

    /// Handles commands and discovery results until `stop` fires, then stops everything.
    pub async fn run(
        mut self,
        mut commands: mpsc::Receiver<Command>,
        mut stop: watch::Receiver<bool>,
    ) {
        loop {
            tokio::select! {
                cmd = commands.recv() => match cmd {
                    Some(Command::Apply(config, reply)) => {
                        self.apply(*config).await;
                        let _ = reply.send(());
                    }
                    None => break,
                },
                Some(event) = self.events_rx.recv() => self.on_discovered(event).await,
                Some(event) = self.org_rx.recv() => self.on_org_events(event).await,
                _ = stop.changed() => break,
            }
        }
        for (_, task) in std::mem::take(&mut self.sources) {
            task.stop().await;
        }
        for (_, task) in std::mem::take(&mut self.org_sources) {
            task.stop().await;
        }
        self.scheduler.shutdown().await;
    }

    async fn on_discovered(&mut self, event: Discovered) {
        let known = event.generation == self.generation
            && self.sources.iter().any(|(k, _)| *k == event.key);
        if !known {
            return; // a late result of a source stopped by a reload
        }
        self.pending.remove(&event.key);
        let listing = self.listings.entry(event.key.clone()).or_default();
        listing.at_unix = Some(now_ms() as f64 / 1000.0);
        match event.result {
            Ok(portals) => {
                listing.error = None;
                self.discovered.insert(event.key, portals);
            }
            Err(e) => listing.error = Some(format!("{} {}", e.operation, e.code)),
        }
        self.reconcile().await;
    }

    /// Puts a validated configuration in force: rate, concurrency, storage settings, discovery
    /// sources (restarted only when they changed) and the portals.
    pub async fn apply(&mut self, loaded: ShardConfig) {
        let ShardConfig {
            config,
            shard_index,
            ..
        } = loaded;
        let discovery_changed = self.config.discovery != config.discovery;
        self.scheduler.set_concurrency(config.global.concurrency);
        self.clients
            .set_rate(Some(config.global.max_requests_per_second));
        if let Some(dir) = self.scheduler.storage() {
            dir.set_max_age(config.storage.max_age);
        }
        self.config = config;
        self.shard_index = shard_index;
        self.scheduler.config_reloaded();
        self.publish_shard();
        if discovery_changed {
            self.held = self.scheduler.plans();
            self.start_discovery().await;
        }
        self.reconcile().await;
    }

    /// (Re)starts one source per (discovery entry, region), and one per organization entry.
    async fn start_discovery(&mut self) {
        for (_, task) in std::mem::take(&mut self.sources) {
            task.stop().await;
        }
        for (_, task) in std::mem::take(&mut self.org_sources) {
            task.stop().await;
        }
        self.discovered.clear();
        self.pending.clear();
        self.org_pending.clear();
        self.listings.clear();
        self.generation += 1;
        let entries = self.config.discovery.clone();
        for (i, entry) in entries.iter().enumerate() {
            if entry.organization.is_some() {
                let counters = self.org_counters.entry(i).or_default().clone();
                let (clients, tx) = (&self.clients, self.org_tx.clone());
                let task = organization::spawn(i, self.generation, entry, clients, counters, tx);
                self.org_sources.push((i, task.await));
                self.org_pending.insert(i);
                continue;
            }
            for region in &entry.regions {
                let key = SourceKey {
                    entry: i,
                    region: region.clone(),
                    account: None,
                };
                let counters = self.counters.entry(key.clone()).or_default().clone();
                let task = discovery::spawn(
                    key.clone(),
                    self.generation,
                    entry,
                    &self.clients,
                    counters,
                    self.events_tx.clone(),
                )
                .await;
                self.pending.insert(key.clone());
                self.sources.push((key, task));
            }
        }
        self.counters
            .retain(|k, _| self.sources.iter().any(|(s, _)| s == k));
        // An organization entry's counters and account set stay until its new source lists.
        self.org_counters
            .retain(|i, _| self.org_sources.iter().any(|(s, _)| s == i));
        self.accounts
            .retain(|i, _| self.org_sources.iter().any(|(s, _)| s == i));
        self.publish_discovery();
    }

    /// Takes `first` and every organization event already waiting, then reconciles once.
    async fn on_org_events(&mut self, first: OrgEvent) {
        let mut replan = self.take_org_event(first);
        while let Ok(event) = self.org_rx.try_recv() {
            replan |= self.take_org_event(event);
        }
        if replan {
            self.reconcile().await;
        } else {
            self.publish_discovery();
        }
    }

    /// Puts the account set of organization entry `entry` in force: the portals and counters of
    /// the accounts that left it go.
    fn take_accounts(&mut self, entry: usize, accounts: Vec<Account>) {
        let ids: BTreeSet<String> = accounts.iter().map(|a| a.id.clone()).collect();
        let before: BTreeSet<&String> = self
            .accounts
            .get(&entry)
            .map(|a| a.iter().map(|a| &a.id).collect())
            .unwrap_or_default();
        let added: Vec<&String> = ids.iter().filter(|a| !before.contains(a)).collect();
        let removed: Vec<&String> = before.into_iter().filter(|a| !ids.contains(*a)).collect();
        if !added.is_empty() || !removed.is_empty() {
            info!(discovery = entry, accounts = ids.len(), added = ?added, removed = ?removed, "organization account set changed");
        }
        self.discovered
            .retain(|k, _| k.entry != entry || k.account.as_ref().is_none_or(|a| ids.contains(a)));
        if let Some(c) = self.org_counters.get(&entry) {
            c.retain_accounts(&ids);
        }
        self.accounts.insert(entry, accounts);
    }

    /// Records one organization event; whether the wanted plans may have changed.
    fn take_org_event(&mut self, event: OrgEvent) -> bool {
        let (entry, generation) = match &event {
            OrgEvent::Accounts {
                entry, generation, ..
            }
            | OrgEvent::Refreshed { entry, generation } => (*entry, *generation),
            OrgEvent::Portals(d) => (d.key.entry, d.generation),
        };
        let known =
            generation == self.generation && self.org_sources.iter().any(|(i, _)| *i == entry);
        if !known {
            return false; // a late result of a source stopped by a reload
        }
        match event {
            OrgEvent::Accounts { accounts, .. } => self.take_accounts(entry, accounts),
            OrgEvent::Portals(d) => match d.result {
                Ok(portals) => {
                    self.discovered.insert(d.key, portals);
                }
                Err(_) => return false,
            },
            OrgEvent::Refreshed { .. } => {
                self.org_pending.remove(&entry);
            }
        }
        true
    }

    /// Tells the landing page the shard in force.
    fn publish_shard(&self) {
        self.store.status().set_shard(Shard {
            index: self.shard_index,
            total: self.config.sharding.total,
        });
    }

    fn publish_discovery(&self) {
        let mut snaps: Vec<DiscoverySnapshot> = self
            .counters
            .iter()
            .map(|(k, c)| {
                let (api_requests, api_errors) = c.snapshot();
                let listing = self.listings.get(k).cloned().unwrap_or_default();
                DiscoverySnapshot {
                    labels: vec![
                        ("discovery".to_string(), k.entry.to_string()),
                        ("region".to_string(), k.region.clone()),
                    ],
                    source: format!("{}/{}", k.entry, k.region),
                    panics: c.panics(),
                    api_requests,
                    api_errors,
                    accounts: None,
                    counted_since_ms: Some(c.since_ms()),
                    portals: self.discovered.get(k).map(Vec::len),
                    last_listing_unix: listing.at_unix,
                    last_error_code: listing.error,
                }
            })
            .collect();
        snaps.extend(self.organization_snapshots());
        self.store
            .set_discovery(snaps, self.pending.len() + self.org_pending.len());
    }

    /// The series of the organization entries: their API counters, and each account set
    /// (labelled `source`, the entry's index, as `discovery` labels the counters).
    fn organization_snapshots(&self) -> Vec<DiscoverySnapshot> {
        let mut snaps = Vec::new();
        for (i, c) in &self.org_counters {
            if let Some(entry) = self.config.discovery.get(*i) {
                snaps.extend(c.snapshots(*i, &organization::organizations_region_of(entry)));
                snaps.push(DiscoverySnapshot {
                    source: format!("{i}/organization"),
                    panics: c.organizations.panics(),
                    counted_since_ms: Some(c.organizations.since_ms()),
                    ..DiscoverySnapshot::default()
                });
            }
        }
        for (i, accounts) in &self.accounts {
            snaps.push(DiscoverySnapshot {
                labels: vec![("source".to_string(), i.to_string())],
                accounts: Some(
                    accounts
                        .iter()
                        .map(|a| (a.id.clone(), a.name.clone()))
                        .collect(),
                ),
                ..DiscoverySnapshot::default()
            });
        }
        snaps
    }

    async fn reconcile(&mut self) {
        let mut plans = wanted_plans(&self.config, self.shard_index, &self.discovered);
        if self.pending.is_empty() && self.org_pending.is_empty() {
            self.held.clear();
        } else {
            let wanted: BTreeSet<String> = plans.iter().map(|p| p.portal_id.clone()).collect();
            plans.extend(
                self.held
                    .iter()
                    .filter(|p| {
                        !wanted.contains(&p.portal_id)
                            && self.config.sharding.owns(self.shard_index, &p.portal_id)
                    })
                    .cloned(),
            );
        }
        self.scheduler.apply(plans).await;
        self.publish_discovery();
        if let Some(dir) = self.scheduler.storage().cloned() {
            let owned: std::collections::BTreeSet<String> =
                self.scheduler.portal_ids().into_iter().collect();
            let _ = tokio::task::spawn_blocking(move || {
                dir.prune(dir.max_age(), &|id| owned.contains(id))
            })
            .await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A discovery source that panics (the test hook fires after its first listing) is counted,
    /// reported as a failed listing (readiness does not wait for it forever) and restarted: its
    /// next listing brings the portal. Before, the source died silently: no more `ListPortals`,
    /// `/-/ready` at 503 for good.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_panicking_discovery_source_is_counted_and_restarted() {
        use workspacesweb_sim::{PortalSpec, SimConfig, Simulator};
        // A region of this test alone: the hook is armed by region.
        let region = "ap-southeast-4";
        let id = "dddddddd-0000-4000-8000-000000000001";
        let portal = PortalSpec {
            region: region.to_string(),
            ..PortalSpec::scripted(id, Vec::new())
        };
        let sim = Simulator::new(SimConfig::new(3).with_portal(portal));
        let running = sim
            .start(std::net::SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .expect("simulator listens");
        let clients = Clients::with_static_credentials(region, &running.endpoint_url()).await;
        let text = format!("discovery:\n  - regions: [{region}]\n    refresh: 1h\n");
        let config = crate::config::parse(&text, "test.yaml")
            .expect("config")
            .config;
        crate::supervise::panic_hook::arm(&format!("discovery {region}"));
        let store = Arc::new(Store::new());
        let reconciler = Reconciler::start(config, 0, clients, store.clone(), None).await;
        let (_commands, commands_rx) = mpsc::channel(1);
        let (stop, stop_rx) = watch::channel(false);
        let task = tokio::spawn(reconciler.run(commands_rx, stop_rx));
        let found = tokio::time::timeout(
            std::time::Duration::from_secs(60),
            store.wait_until(|ps| ps.iter().any(|p| p.portal_id == id && p.up)),
        )
        .await;
        let _ = stop.send(true);
        let _ = task.await;
        assert!(found.is_ok(), "the restarted source never discovered {id}");
        let sources = store.discovery();
        assert_eq!(sources.len(), 1);
        assert_eq!(sources[0].source, format!("0/{region}"));
        assert_eq!(sources[0].panics, 1);
        // Two listings: the one that panicked, and the restarted source's (refresh is 1 h).
        assert_eq!(sources[0].api_requests.get("ListPortals"), Some(&2));
    }

    /// An organization entry's task that panics (the test hook fires after its first account
    /// listing) is counted under `source="0/organization"`, restarted, and its account set and
    /// portals stay: the restarted task lists the accounts again. Before, it was not supervised:
    /// the entry stopped refreshing for good.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_panicking_organization_source_is_counted_and_restarted() {
        use workspacesweb_sim::{DEMO_MEMBER_ROLE, SimConfig, Simulator};
        // A region of this test alone: the hook is armed by the entry's regions.
        let region = "ap-southeast-5";
        let sim = Simulator::new(SimConfig::demo(3));
        let running = sim
            .start(std::net::SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .expect("simulator listens");
        let clients = Clients::with_static_credentials(region, &running.endpoint_url()).await;
        let text = format!(
            "discovery:\n  - organization:\n      role_name: {DEMO_MEMBER_ROLE}\n    regions: [{region}]\n    refresh: 1h\n"
        );
        let config = crate::config::parse(&text, "test.yaml")
            .expect("config")
            .config;
        crate::supervise::panic_hook::arm(&format!("organization {region}"));
        let store = Arc::new(Store::new());
        let reconciler = Reconciler::start(config, 0, clients, store.clone(), None).await;
        let (_commands, commands_rx) = mpsc::channel(1);
        let (stop, stop_rx) = watch::channel(false);
        let task = tokio::spawn(reconciler.run(commands_rx, stop_rx));
        let panicked_and_listed_again = |store: &Store| {
            let sources = store.discovery();
            let panics = sources.iter().find(|s| s.source == "0/organization");
            let listed: u64 = sources
                .iter()
                .filter_map(|s| s.api_requests.get("ListAccounts"))
                .sum();
            panics.is_some_and(|p| p.panics == 1) && listed == 2
        };
        let _ = tokio::time::timeout(
            std::time::Duration::from_secs(60),
            store
                .status()
                .wait_for(|| panicked_and_listed_again(&store)),
        )
        .await;
        let _ = stop.send(true);
        let _ = task.await;
        assert!(panicked_and_listed_again(&store), "{:?}", store.discovery());
        let accounts = store
            .discovery()
            .into_iter()
            .find_map(|s| s.accounts)
            .expect("the account set");
        assert_eq!(accounts.len(), 2, "{accounts:?}");
    }
}
