//! Per-portal snapshots published by the poller and read by `/metrics`, `/` and `/-/ready`: the
//! data only. The exposition module renders and caches the exposition of it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::ledger::{ActiveSummary, Totals};
use crate::users::UserSeries;

/// Everything the exposition and the landing page know about one portal, as of its last poll.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PortalSnapshot {
    /// Portal id (the `portal_id` label).
    pub portal_id: String,
    /// Static labels (global merged with per-portal), sorted by name.
    pub labels: Vec<(String, String)>,
    /// Whether the last poll succeeded.
    pub up: bool,
    /// Whether at least one poll has finished (success or failure).
    pub polled: bool,
    /// State gauges; `None` before the first success and after the staleness limit.
    pub active: Option<ActiveSummary>,
    /// Counters since T0; `None` before the first successful poll.
    pub totals: Option<Totals>,
    /// Distinct users in the current UTC month; `None` until the backfill completed.
    pub monthly_active_users: Option<u64>,
    /// Per-user series (empty unless `per_user.enabled`).
    pub users: Vec<UserSeries>,
    /// Wall time of the last poll, in seconds.
    pub poll_duration_seconds: Option<f64>,
    /// Unix time of the last successful poll, in seconds.
    pub last_success_unix: Option<f64>,
    /// Unix time at which the last poll finished, in seconds.
    pub last_poll_unix: Option<f64>,
    /// Error text of the last failed poll, cleared by a success: for logs and tests, never
    /// served (the service's message may name accounts and roles).
    pub last_error: Option<String>,
    /// Operation and error code of the last failed poll (`ListSessions AccessDeniedException`),
    /// cleared by a success: what the landing page shows.
    pub last_error_code: Option<String>,
    /// API requests sent, retries included, by operation.
    pub api_requests: BTreeMap<String, u64>,
    /// API request errors by (operation, error code).
    pub api_errors: BTreeMap<(String, String), u64>,
    /// Portal metadata from `GetPortal`; `None` when unknown or not permitted.
    pub meta: Option<PortalMeta>,
    /// Panics of this portal's task since the exporter started.
    pub panics: u64,
    /// Durable state of the portal; `None` without `--storage.path`.
    pub state: Option<StateStatus>,
}

/// Durable state of one portal (`--storage.path`).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct StateStatus {
    /// Whether the portal resumed from its state file.
    pub restored: bool,
    /// Unix time of the last successful state write, in seconds.
    pub last_write_unix: Option<f64>,
}

/// Portal metadata for `workspacesweb_portal_info` and the capacity gauge.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PortalMeta {
    /// Portal ARN.
    pub arn: String,
    /// Region (from config or the ARN).
    pub region: String,
    /// Display name ("" when unset).
    pub display_name: String,
    /// Browser type ("" when unset).
    pub browser_type: String,
    /// Instance type ("" when unset).
    pub instance_type: String,
    /// `maxConcurrentSessions`, when set.
    pub max_concurrent_sessions: Option<u64>,
}

/// API counters of one discovery source (`ListPortals` in one region).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DiscoverySnapshot {
    /// Labels of its series (`region`).
    pub labels: Vec<(String, String)>,
    /// Requests by operation.
    pub api_requests: BTreeMap<String, u64>,
    /// Errors by (operation, error code).
    pub api_errors: BTreeMap<(String, String), u64>,
}

/// The shared, lock-protected set of portal snapshots plus what readiness needs.
#[derive(Debug)]
pub struct Store {
    portals: RwLock<BTreeMap<String, Arc<PortalSnapshot>>>,
    /// Bumped on every change, so waiters can react to publications instead of polling.
    generation: tokio::sync::watch::Sender<u64>,
    /// The portals this replica polls; `None` until the control loop first declares them.
    owned: RwLock<Option<BTreeSet<String>>>,
    reload: RwLock<ReloadStatus>,
    /// Failed state writes; `None` without `--storage.path`.
    state_write_errors: RwLock<Option<u64>>,
    discovery: RwLock<Vec<DiscoverySnapshot>>,
    /// Discovery sources that have not finished their first listing (readiness waits for them).
    discovery_pending: std::sync::atomic::AtomicUsize,
    /// Bumped by every change that can alter the `workspacesweb_*` exposition.
    version: AtomicU64,
    /// Set when the control loop died (a panic): `/-/healthy` then fails.
    failed: std::sync::atomic::AtomicBool,
}

/// What the exporter-level series show.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ExporterStatus {
    /// Outcome of the last configuration load.
    pub reload: ReloadStatus,
    /// Failed state writes; `None` without `--storage.path`.
    pub state_write_errors: Option<u64>,
}

impl From<ReloadStatus> for ExporterStatus {
    fn from(reload: ReloadStatus) -> Self {
        ExporterStatus {
            reload,
            state_write_errors: None,
        }
    }
}

/// Outcome of the last configuration (re)load.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ReloadStatus {
    /// Whether the last load succeeded.
    pub successful: bool,
    /// Unix time of the last successful load, in seconds.
    pub success_unix: f64,
}

impl Default for Store {
    fn default() -> Self {
        Store {
            portals: RwLock::default(),
            generation: tokio::sync::watch::Sender::new(0),
            owned: RwLock::default(),
            reload: RwLock::default(),
            state_write_errors: RwLock::default(),
            discovery: RwLock::default(),
            discovery_pending: std::sync::atomic::AtomicUsize::new(0),
            version: AtomicU64::new(0),
            failed: std::sync::atomic::AtomicBool::new(false),
        }
    }
}

impl Store {
    /// Creates an empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn changed(&self) {
        self.version.fetch_add(1, Ordering::Release);
        self.generation.send_modify(|g| *g = g.wrapping_add(1));
    }

    /// A receiver notified of every change (the background renderer of the HTTP server waits on it).
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.generation.subscribe()
    }

    /// Waits until `pred` holds for the current snapshots, re-checking after every publication.
    pub async fn wait_until(&self, mut pred: impl FnMut(&[Arc<PortalSnapshot>]) -> bool) {
        let mut rx = self.generation.subscribe();
        loop {
            rx.mark_unchanged();
            if pred(&self.portals()) {
                return;
            }
            if rx.changed().await.is_err() {
                return;
            }
        }
    }

    /// The snapshot of one portal.
    pub fn portal(&self, portal_id: &str) -> Option<Arc<PortalSnapshot>> {
        read(&self.portals).get(portal_id).cloned()
    }

    /// Declares the portals this replica polls; `/-/ready` waits for each of them.
    pub fn set_owned(&self, ids: impl IntoIterator<Item = String>) {
        let ids: BTreeSet<String> = ids.into_iter().collect();
        write(&self.portals).retain(|id, _| ids.contains(id));
        *write(&self.owned) = Some(ids);
        self.changed();
    }

    /// Replaces the snapshot of one portal.
    pub fn publish(&self, snapshot: PortalSnapshot) {
        write(&self.portals).insert(snapshot.portal_id.clone(), Arc::new(snapshot));
        self.changed();
    }

    /// Drops every series of a portal.
    pub fn remove(&self, portal_id: &str) {
        write(&self.portals).remove(portal_id);
        self.changed();
    }

    /// All snapshots, ordered by portal id.
    pub fn portals(&self) -> Vec<Arc<PortalSnapshot>> {
        read(&self.portals).values().cloned().collect()
    }

    /// Replaces the discovery counters and the number of sources still awaiting a first listing.
    pub fn set_discovery(&self, sources: Vec<DiscoverySnapshot>, pending: usize) {
        *write(&self.discovery) = sources;
        self.discovery_pending
            .store(pending, std::sync::atomic::Ordering::Relaxed);
        self.changed();
    }

    /// Discovery counters.
    pub fn discovery(&self) -> Vec<DiscoverySnapshot> {
        read(&self.discovery).clone()
    }

    /// True once the owned portals are declared, every discovery source listed once and every
    /// owned portal finished its first poll (the server answers before the control loop starts).
    pub fn ready(&self) -> bool {
        self.discovery_pending
            .load(std::sync::atomic::Ordering::Relaxed)
            == 0
            && read(&self.owned).is_some()
            && self.first_polls_pending() == 0
    }

    /// How many owned portals have yet to finish their first poll.
    pub fn first_polls_pending(&self) -> usize {
        let (owned, portals) = (read(&self.owned), read(&self.portals));
        owned.as_ref().map_or(0, |o| {
            o.iter()
                .filter(|id| !portals.get(*id).is_some_and(|p| p.polled))
                .count()
        })
    }

    /// Marks the exporter as broken for good (its control loop died): `/-/healthy` fails.
    pub fn set_failed(&self) {
        self.failed.store(true, Ordering::Release);
    }

    /// False once [`set_failed`](Self::set_failed) was called.
    pub fn healthy(&self) -> bool {
        !self.failed.load(Ordering::Acquire)
    }

    /// Records the outcome of a configuration load.
    pub fn set_reload(&self, status: ReloadStatus) {
        *write(&self.reload) = status;
        self.version.fetch_add(1, Ordering::Release);
    }

    /// Outcome of the last configuration load.
    pub fn reload(&self) -> ReloadStatus {
        *read(&self.reload)
    }

    /// Records how many state writes failed so far (`Some(0)` declares durable state on).
    pub fn set_state_write_errors(&self, errors: u64) {
        {
            let mut e = write(&self.state_write_errors);
            if *e == Some(errors) {
                return;
            }
            *e = Some(errors);
        }
        self.version.fetch_add(1, Ordering::Release);
    }

    /// A number that changes whenever the `workspacesweb_*` exposition may have changed.
    pub fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }

    /// The exporter-level series: reload outcome and state write errors.
    pub fn exporter_status(&self) -> ExporterStatus {
        ExporterStatus {
            reload: self.reload(),
            state_write_errors: *read(&self.state_write_errors),
        }
    }
}

// A poisoned lock is recovered, never skipped: every write guarded here replaces or edits the
// data in one step that cannot panic halfway, so the data behind a poisoned lock is consistent.
// Skipping would freeze (writes dropped) or empty (reads defaulted) `/metrics` after one panic
// anywhere; the one way this crate handles poisoning is `unwrap_or_else(PoisonError::into_inner)`.
fn read<T>(lock: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(PoisonError::into_inner)
}

fn write<T>(lock: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(PoisonError::into_inner)
}

/// A polled portal's snapshot with nothing else set (unit tests of the modules that read them).
#[cfg(test)]
pub(crate) fn polled(id: &str, up: bool) -> PortalSnapshot {
    PortalSnapshot {
        portal_id: id.to_string(),
        up,
        polled: true,
        ..PortalSnapshot::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(id: &str, up: bool) -> PortalSnapshot {
        polled(id, up)
    }

    #[test]
    fn not_ready_before_the_owned_portals_are_declared() {
        let store = Store::new();
        assert!(!store.ready(), "nothing declared yet");
        store.set_owned([]);
        assert!(store.ready(), "owning nothing is ready");
        store.set_owned(["p1".to_string()]);
        assert!(!store.ready());
        store.publish(snapshot("p1", false));
        assert!(store.ready(), "a failed first poll counts as polled");
    }

    /// Poisons every lock of `store`: a thread panics while holding each one for writing.
    fn poison_all(store: &Arc<Store>) {
        let s = Arc::clone(store);
        let outcome = std::thread::spawn(move || {
            let _p = s.portals.write();
            let _o = s.owned.write();
            let _r = s.reload.write();
            let _e = s.state_write_errors.write();
            let _d = s.discovery.write();
            panic!("a panic while every store lock is held");
        })
        .join();
        assert!(outcome.is_err());
        assert!(store.portals.is_poisoned() && store.owned.is_poisoned());
        assert!(store.reload.is_poisoned() && store.discovery.is_poisoned());
        assert!(store.state_write_errors.is_poisoned());
    }

    #[test]
    fn a_poisoned_store_still_publishes_and_serves() {
        let store = Arc::new(Store::new());
        store.publish(snapshot("p1", true));
        poison_all(&store);
        // Reads see what was there before the panic...
        assert_eq!(store.portal("p1").map(|p| p.up), Some(true));
        // ...and writes still land: nothing is frozen or emptied.
        store.set_owned(["p1".to_string(), "p2".to_string()]);
        assert!(!store.ready(), "p2 not polled yet");
        store.publish(snapshot("p2", false));
        assert!(store.ready());
        store.remove("p1");
        let ids: Vec<String> = store
            .portals()
            .iter()
            .map(|p| p.portal_id.clone())
            .collect();
        assert_eq!(ids, ["p2"]);
        store.set_reload(ReloadStatus {
            successful: true,
            success_unix: 42.0,
        });
        assert_eq!(store.reload().success_unix, 42.0);
        store.set_state_write_errors(3);
        assert_eq!(store.exporter_status().state_write_errors, Some(3));
        let source = DiscoverySnapshot {
            labels: vec![("region".into(), "eu-west-1".into())],
            api_requests: [("ListPortals".to_string(), 1)].into(),
            ..DiscoverySnapshot::default()
        };
        store.set_discovery(vec![source.clone()], 0);
        assert_eq!(store.discovery(), [source]);
        // And `/metrics` renders them.
        let exposition = crate::exposition::Exposition::new(Arc::clone(&store));
        let text =
            String::from_utf8(exposition.scrape_text().expect("render").to_vec()).expect("utf-8");
        assert!(
            text.contains("workspacesweb_up{portal_id=\"p2\"} 0\n"),
            "{text}"
        );
        assert!(!text.contains("portal_id=\"p1\""), "{text}");
        assert!(text.contains("region=\"eu-west-1\""), "{text}");
    }
}
