//! Keeps the running portals equal to what the configuration and discovery say this replica owns.
//!
//! One control loop owns the [`Scheduler`]. It handles reload requests (SIGHUP, `POST /-/reload`),
//! discovery results and sharding: the wanted plans are the static portals plus the discovered
//! ones (a static entry wins over a discovered one with the same id), kept when the portal id
//! hashes to this replica's shard index. A failed discovery listing keeps the previous list, so a
//! transient error never drops portals; a portal that a successful listing no longer returns
//! loses all its series.

use std::collections::BTreeMap;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot, watch};

use crate::aws::{ApiCounters, ClientKey, Clients, PortalInfo, portal_id_of_arn};
use crate::config::{Config, DEFAULT_DISCOVERY_REFRESH, PortalTarget, ShardConfig, UsernameMode};
use crate::discovery::{self, Discovered, SourceKey, SourceTask};
use crate::poll::{PortalPlan, Scheduler};
use crate::snapshot::{DiscoverySnapshot, Store};
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
                let t = config.discovered_target(entry, id, Some(&p.arn), &key.region);
                plans.insert(id.to_string(), plan_for(config, t, entry.refresh));
            }
        }
    }
    plans
        .into_values()
        .filter(|p| config.sharding.owns(shard_index, &p.portal_id))
        .collect()
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
    events_tx: mpsc::Sender<Discovered>,
    events_rx: mpsc::Receiver<Discovered>,
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
            events_tx,
            events_rx,
        };
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
                _ = stop.changed() => break,
            }
        }
        for (_, task) in std::mem::take(&mut self.sources) {
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
        if let Ok(portals) = event.result {
            self.discovered.insert(event.key, portals);
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
        if discovery_changed {
            self.start_discovery().await;
        }
        self.reconcile().await;
    }

    /// (Re)starts one source per (discovery entry, region).
    async fn start_discovery(&mut self) {
        for (_, task) in std::mem::take(&mut self.sources) {
            task.stop().await;
        }
        self.discovered.clear();
        self.pending.clear();
        self.generation += 1;
        let entries = self.config.discovery.clone();
        for (i, entry) in entries.iter().enumerate() {
            for region in &entry.regions {
                let key = SourceKey {
                    entry: i,
                    region: region.clone(),
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
        self.publish_discovery();
    }

    fn publish_discovery(&self) {
        let snaps = self
            .counters
            .iter()
            .map(|(k, c)| {
                let (api_requests, api_errors) = c.snapshot();
                DiscoverySnapshot {
                    labels: vec![
                        ("discovery".to_string(), k.entry.to_string()),
                        ("region".to_string(), k.region.clone()),
                    ],
                    api_requests,
                    api_errors,
                    counted_since_ms: Some(c.since_ms()),
                }
            })
            .collect();
        self.store.set_discovery(snaps, self.pending.len());
    }

    async fn reconcile(&mut self) {
        let plans = wanted_plans(&self.config, self.shard_index, &self.discovered);
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
