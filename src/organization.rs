//! Organization discovery (SPEC section 12): every `refresh`, one task per `discovery` entry with
//! `organization` lists the organization's accounts (`ListAccounts`, or under `ous`, recursively,
//! `ListChildren` and `ListAccountsForParent`), keeps those that are `ACTIVE` and not excluded,
//! then, for every account × region, assumes the member role and calls `ListPortals`.
//!
//! Each outcome goes to the reconciler as soon as it is known ([`OrgEvent`]): the account set
//! first (on success only: a failed listing keeps the last good set, which the task lists again),
//! then each account × region's portals as its `ListPortals` answers, so that the first polls of
//! an account's portals start while other accounts are still being listed. A failed pair keeps
//! its last good portals and does not touch the others.
//!
//! Counters ([`OrgCounters`]): the Organizations calls carry the entry and the Organizations
//! region; each account × region's `ListPortals` and `AssumeRole` carry the entry and the region,
//! their errors also the account (requests are summed over accounts: one series per region, not
//! per account, for organizations of hundreds of accounts).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::{Semaphore, mpsc, watch};
use tracing::{debug, error, warn};

use crate::aws::pagination::PageGuard;
use crate::aws::partition::{organizations_region, partition_of_region};
use crate::aws::{
    Account, ApiCounters, ApiError, ClientKey, Clients, ErrorLabel, OrganizationsApi,
};
use crate::aws::{LIST_ACCOUNTS, Page};
use crate::config::{DiscoveryConfig, OrganizationConfig};
use crate::discovery::{self, Discovered, SourceKey, SourceTask};
use crate::snapshot::DiscoverySnapshot;
use crate::supervise::{Panicked, RESTART_DELAY, Restarts, supervise};

/// Pages after which one Organizations listing gives up (20,000 accounts).
const MAX_PAGES: u32 = 1000;
/// Most OUs visited under `ous` (Organizations allows 2,000 per organization).
const MAX_UNITS: usize = 2000;
/// Bound on one listing of the accounts.
const ACCOUNTS_TIMEOUT: Duration = Duration::from_secs(120);
/// Account × region listings in flight at once (each has its own rate limit bucket).
const PAIRS_IN_FLIGHT: usize = 16;

/// What an organization source tells the reconciler.
#[derive(Debug, Clone)]
pub enum OrgEvent {
    /// A successful listing of the accounts: `ACTIVE`, under `ous`, not excluded; sorted by id.
    Accounts {
        /// Index of the entry in `discovery`.
        entry: usize,
        /// The generation of sources that produced it.
        generation: u64,
        /// The accounts.
        accounts: Vec<Account>,
    },
    /// The portals of one account in one region (`key.account` is set), or why its listing failed.
    Portals(Discovered),
    /// A refresh ended: every account × region of the set answered.
    Refreshed {
        /// Index of the entry in `discovery`.
        entry: usize,
        /// The generation of sources that produced it.
        generation: u64,
    },
}

/// The API counters of one organization entry, kept across refreshes and reloads.
#[derive(Debug, Default)]
pub struct OrgCounters {
    /// The Organizations calls (and the `AssumeRole` of `organization.role_arn`).
    pub organizations: Arc<ApiCounters>,
    pairs: Mutex<Pairs>,
}

/// Counters of each (account, region), and the requests of accounts that left the set.
#[derive(Debug, Default)]
struct Pairs {
    live: BTreeMap<(String, String), Arc<ApiCounters>>,
    /// Requests by (region, operation) of the pairs forgotten: the sums never go down.
    retired: BTreeMap<(String, String), u64>,
}

impl OrgCounters {
    fn lock(&self) -> std::sync::MutexGuard<'_, Pairs> {
        self.pairs.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The counters of `account` in `region`.
    pub fn pair(&self, account: &str, region: &str) -> Arc<ApiCounters> {
        self.lock()
            .live
            .entry((account.to_string(), region.to_string()))
            .or_default()
            .clone()
    }

    /// Forgets the accounts not in `keep`: their error series go, their requests stay in the
    /// per-region sums.
    pub fn retain_accounts(&self, keep: &BTreeSet<String>) {
        let mut pairs = self.lock();
        let gone: Vec<(String, String)> = pairs
            .live
            .keys()
            .filter(|(account, _)| !keep.contains(account))
            .cloned()
            .collect();
        for key in gone {
            if let Some(c) = pairs.live.remove(&key) {
                for (op, n) in c.snapshot().0 {
                    *pairs.retired.entry((key.1.clone(), op)).or_default() += n;
                }
            }
        }
    }

    /// The series of entry `entry` whose Organizations calls go to `org_region`: requests by
    /// region and operation, errors by account, region, operation and code (Organizations' own
    /// without an account).
    pub fn snapshots(&self, entry: usize, org_region: &str) -> Vec<DiscoverySnapshot> {
        let pairs = self.lock();
        let mut requests: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
        for ((region, op), n) in &pairs.retired {
            *requests
                .entry(region.clone())
                .or_default()
                .entry(op.clone())
                .or_default() += n;
        }
        let (org_requests, org_errors) = self.organizations.snapshot();
        // The per-region sums count from the entry's start (its Organizations counters').
        let since = self.organizations.since_ms();
        for (op, n) in org_requests {
            *requests
                .entry(org_region.to_string())
                .or_default()
                .entry(op)
                .or_default() += n;
        }
        let mut out = Vec::new();
        for ((account, region), c) in &pairs.live {
            let (reqs, errors) = c.snapshot();
            for (op, n) in reqs {
                *requests
                    .entry(region.clone())
                    .or_default()
                    .entry(op)
                    .or_default() += n;
            }
            if !errors.is_empty() {
                out.push(source(
                    entry,
                    Some(account),
                    region,
                    Default::default(),
                    errors,
                    c.since_ms(),
                ));
            }
        }
        let mut errors_by_region: BTreeMap<String, BTreeMap<(String, String), u64>> =
            BTreeMap::new();
        if !org_errors.is_empty() {
            errors_by_region.insert(org_region.to_string(), org_errors);
        }
        for (region, reqs) in requests {
            let errors = errors_by_region.remove(&region).unwrap_or_default();
            out.push(source(entry, None, &region, reqs, errors, since));
        }
        for (region, errors) in errors_by_region {
            out.push(source(
                entry,
                None,
                &region,
                Default::default(),
                errors,
                since,
            ));
        }
        out
    }
}

/// The series of one label set of an organization entry.
fn source(
    entry: usize,
    account: Option<&str>,
    region: &str,
    api_requests: BTreeMap<String, u64>,
    api_errors: BTreeMap<(String, String), u64>,
    since_ms: i64,
) -> DiscoverySnapshot {
    let mut labels = vec![("discovery".to_string(), entry.to_string())];
    if let Some(a) = account {
        labels.push(("account_id".to_string(), a.to_string()));
    }
    labels.push(("region".to_string(), region.to_string()));
    DiscoverySnapshot {
        labels,
        api_requests,
        api_errors,
        counted_since_ms: Some(since_ms),
        ..DiscoverySnapshot::default()
    }
}

/// The region where `entry`'s Organizations calls go: its partition's Organizations region, or
/// its first region for a partition whose endpoint the exporter does not know.
pub fn organizations_region_of(entry: &DiscoveryConfig) -> String {
    let first = entry.regions.first().map_or("us-east-1", String::as_str);
    organizations_region(partition_of_region(first))
        .unwrap_or(first)
        .to_string()
}

/// Where and as whom `entry` calls Organizations.
fn organizations_key(entry: &DiscoveryConfig) -> ClientKey {
    let org = entry.organization.as_ref();
    ClientKey {
        region: Some(organizations_region_of(entry)),
        role_arn: org.and_then(|o| o.role_arn.clone()),
        external_id: None,
        endpoint_url: entry.access.endpoint_url.clone(),
    }
}

/// Every page of one Organizations listing, `page` fetching one from a token; a listing stopped
/// by the page guard is counted in `api`'s errors.
async fn all_pages<T, F, Fut>(
    api: &OrganizationsApi,
    operation: &'static str,
    mut page: F,
) -> Result<Vec<T>, ApiError>
where
    F: FnMut(Option<String>) -> Fut,
    Fut: std::future::Future<Output = Result<Page<T>, ApiError>>,
{
    let mut out = Vec::new();
    let mut token = None;
    let mut guard = PageGuard::new();
    loop {
        let (items, next) = page(token).await?;
        out.extend(items);
        match guard.next(next, MAX_PAGES) {
            Ok(Some(t)) => token = Some(t),
            Ok(None) => return Ok(out),
            Err(stop) => {
                api.counters().error(operation, ErrorLabel::Other);
                return Err(ApiError {
                    operation,
                    code: ErrorLabel::Other,
                    message: format!("pagination stopped: {stop}"),
                });
            }
        }
    }
}

/// The accounts under `ous` (OUs or roots), recursively, each once.
async fn accounts_under(api: &OrganizationsApi, ous: &[String]) -> Result<Vec<Account>, ApiError> {
    let mut queue: VecDeque<String> = ous.iter().cloned().collect();
    let mut visited: BTreeSet<String> = BTreeSet::new();
    let mut accounts = Vec::new();
    while let Some(parent) = queue.pop_front() {
        if !visited.insert(parent.clone()) {
            continue;
        }
        if visited.len() > MAX_UNITS {
            api.counters()
                .error(crate::aws::LIST_CHILDREN, ErrorLabel::Other);
            return Err(ApiError {
                operation: crate::aws::LIST_CHILDREN,
                code: ErrorLabel::Other,
                message: format!("more than {MAX_UNITS} OUs under {}", ous.join(", ")),
            });
        }
        let op = crate::aws::LIST_ACCOUNTS_FOR_PARENT;
        accounts.extend(all_pages(api, op, |t| api.list_accounts_for_parent(&parent, t)).await?);
        let op = crate::aws::LIST_CHILDREN;
        queue.extend(all_pages(api, op, |t| api.list_child_units(&parent, t)).await?);
    }
    Ok(accounts)
}

/// The account set of `org`: listed, then `ACTIVE` and not excluded, each once, sorted by id.
pub async fn list_accounts(
    api: &OrganizationsApi,
    org: &OrganizationConfig,
) -> Result<Vec<Account>, ApiError> {
    let listed = if org.ous.is_empty() {
        all_pages(api, LIST_ACCOUNTS, |t| api.list_accounts(t)).await?
    } else {
        accounts_under(api, &org.ous).await?
    };
    let mut accounts: Vec<Account> = listed
        .into_iter()
        .filter(|a| a.active && org.exclude_accounts.binary_search(&a.id).is_err())
        .collect();
    accounts.sort();
    accounts.dedup_by(|a, b| a.id == b.id);
    Ok(accounts)
}

/// One organization entry's source: what its task needs.
#[derive(Clone)]
struct Source {
    entry: usize,
    generation: u64,
    config: DiscoveryConfig,
    clients: Clients,
    counters: Arc<OrgCounters>,
    tx: mpsc::Sender<OrgEvent>,
}

/// Starts listing the organization of entry `entry` every `config.refresh`, sending each outcome
/// to `tx`, tagged with `generation` (see [`discovery::spawn`]).
pub async fn spawn(
    entry: usize,
    generation: u64,
    config: &DiscoveryConfig,
    clients: &Clients,
    counters: Arc<OrgCounters>,
    tx: mpsc::Sender<OrgEvent>,
) -> SourceTask {
    let source = Source {
        entry,
        generation,
        config: config.clone(),
        clients: clients.clone(),
        counters,
        tx,
    };
    let (stop, stop_rx) = watch::channel(false);
    let restarts = Restarts {
        first: RESTART_DELAY,
        stop: Some(stop_rx.clone()),
    };
    let on_panic = {
        let (counters, tx) = (source.counters.clone(), source.tx.clone());
        move |p: &Panicked| {
            let c = &counters.organizations;
            c.count_panic();
            error!(discovery = entry, panics = c.panics(), panic = %p.message, restart_in = ?p.restart_in, "organization discovery panicked; restarting it, the last good accounts and portals stay in force");
            // Readiness does not wait for this entry's first refresh forever; dropped when the
            // channel is full (the count shows with the next event).
            let _ = tx.try_send(OrgEvent::Refreshed { entry, generation });
        }
    };
    let make = move || source.clone().run(stop_rx.clone());
    let handle = tokio::spawn(supervise(restarts, make, on_panic));
    SourceTask::new(stop, handle)
}

impl Source {
    async fn run(self, mut stop: watch::Receiver<bool>) {
        let Some(org) = self.config.organization.clone() else {
            return;
        };
        let api = self
            .clients
            .organizations_api(
                &organizations_key(&self.config),
                self.counters.organizations.clone(),
            )
            .await;
        let mut last_good: Vec<Account> = Vec::new();
        loop {
            if let Some(accounts) = self.accounts(&api, &org).await {
                let event = OrgEvent::Accounts {
                    entry: self.entry,
                    generation: self.generation,
                    accounts: accounts.clone(),
                };
                if self.tx.send(event).await.is_err() {
                    return;
                }
                last_good = accounts;
            }
            #[cfg(test)]
            crate::supervise::panic_hook::fire(&format!(
                "organization {}",
                self.config.regions.join(",")
            ));
            if !self.list_portals(&last_good).await {
                return;
            }
            let done = OrgEvent::Refreshed {
                entry: self.entry,
                generation: self.generation,
            };
            if self.tx.send(done).await.is_err() {
                return;
            }
            tokio::select! {
                _ = tokio::time::sleep(self.config.refresh) => {}
                _ = stop.changed() => return,
            }
        }
    }

    /// The account set, or `None` (logged, counted) when its listing failed.
    async fn accounts(
        &self,
        api: &OrganizationsApi,
        org: &OrganizationConfig,
    ) -> Option<Vec<Account>> {
        let listed = tokio::time::timeout(ACCOUNTS_TIMEOUT, list_accounts(api, org))
            .await
            .unwrap_or_else(|_| {
                api.counters().error(LIST_ACCOUNTS, ErrorLabel::Timeout);
                Err(ApiError {
                    operation: LIST_ACCOUNTS,
                    code: ErrorLabel::Timeout,
                    message: format!("listing the accounts took longer than {ACCOUNTS_TIMEOUT:?}"),
                })
            });
        match listed {
            Ok(accounts) => {
                debug!(
                    discovery = self.entry,
                    accounts = accounts.len(),
                    "organization accounts listed"
                );
                Some(accounts)
            }
            Err(e) => {
                warn!(discovery = self.entry, operation = e.operation, error = %e.code, detail = %e.message, "listing the organization's accounts failed; keeping the last good set");
                None
            }
        }
    }

    /// `ListPortals` in every region of every account, [`PAIRS_IN_FLIGHT`] at a time, each result
    /// sent as it comes; `false` when the reconciler is gone.
    async fn list_portals(&self, accounts: &[Account]) -> bool {
        let slots = Arc::new(Semaphore::new(PAIRS_IN_FLIGHT));
        let mut tasks = tokio::task::JoinSet::new();
        for account in accounts {
            for region in &self.config.regions {
                let key = SourceKey {
                    entry: self.entry,
                    region: region.clone(),
                    account: Some(account.id.clone()),
                };
                let access = self.config.access_for(Some(&account.id), region);
                let client = ClientKey {
                    region: Some(region.clone()),
                    role_arn: access.role_arn,
                    external_id: access.external_id,
                    endpoint_url: access.endpoint_url,
                };
                let counters = self.counters.pair(&account.id, region);
                let (clients, tx, slots) = (self.clients.clone(), self.tx.clone(), slots.clone());
                let generation = self.generation;
                tasks.spawn(async move {
                    let Ok(_slot) = slots.acquire_owned().await else {
                        return false;
                    };
                    let api = clients.region_api(&client, counters).await;
                    let result = discovery::list_all_bounded(&api).await;
                    match &result {
                        Ok(p) => debug!(account = ?key.account, region = %key.region, portals = p.len(), "portals discovered"),
                        Err(e) => warn!(account = ?key.account, region = %key.region, operation = e.operation, error = %e.code, detail = %e.message, "portal discovery failed for an account; keeping its previous list"),
                    }
                    let event = Discovered { key, generation, result };
                    tx.send(OrgEvent::Portals(event)).await.is_ok()
                });
            }
        }
        let mut open = true;
        while let Some(sent) = tasks.join_next().await {
            open &= sent.unwrap_or(true);
        }
        open
    }
}
