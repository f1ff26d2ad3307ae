//! Per-portal snapshots published by the poller and read by `/metrics`, `/` and `/-/ready`, and
//! the discovery sources' counters: the data only. The exposition module renders and caches the
//! exposition of it; what the process says about itself is its [`Status`].

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, RwLock};

use crate::ledger::{ActiveSummary, Totals};
use crate::recent_polls::RecentPolls;
use crate::status::{Status, read, write};
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
    /// The message of the last failed poll as the landing page may show it (one line, at most
    /// 200 characters, credentials redacted, quoted text hidden with hashed usernames: see
    /// [`crate::aws::error_text`]), cleared by a success.
    pub last_error_message: Option<String>,
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
    /// When its task began counting API requests and panics (their created timestamp).
    pub counted_since_ms: Option<i64>,
    /// Region it is polled in (config, or its ARN); `None` when neither says.
    pub region: Option<String>,
    /// Its account (its ARN's, or the role's it is polled with); `None` until one is known.
    pub account_id: Option<String>,
    /// Its poll interval.
    pub interval: std::time::Duration,
    /// Its polls of the last hour: the landing page's sparkline and error count.
    pub recent: RecentPolls,
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

impl PortalMeta {
    /// The portal's AWS account, from its ARN ("" when the ARN holds none).
    pub fn account_id(&self) -> &str {
        crate::aws::account_of_arn(&self.arn).unwrap_or_default()
    }
}

/// API counters of one discovery source (`ListPortals` in one region; with organization
/// discovery, one region's requests or one account's errors), or the account set of an
/// organization entry.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DiscoverySnapshot {
    /// Labels of its series (`discovery`, `region`; `account_id`; `source` for an account set).
    pub labels: Vec<(String, String)>,
    /// The `source` label of its panics: the discovery entry's index and the region, `0/us-east-1`,
    /// or `1/organization` for an organization entry's task; "" for a snapshot that is no task
    /// (an organization entry's counters by account and region, its account set).
    pub source: String,
    /// Panics of its task.
    pub panics: u64,
    /// Requests by operation.
    pub api_requests: BTreeMap<String, u64>,
    /// Errors by (operation, error code).
    pub api_errors: BTreeMap<(String, String), u64>,
    /// The account set of an organization entry, (id, name) sorted by id (`account_info`,
    /// `discovery_accounts`); `None` for API counters.
    pub accounts: Option<Vec<(String, String)>>,
    /// When its counting began (their created timestamp).
    pub counted_since_ms: Option<i64>,
    /// Portals its last successful listing returned; `None` before one.
    pub portals: Option<usize>,
    /// Unix time its last listing finished, in seconds; `None` before one.
    pub last_listing_unix: Option<f64>,
    /// Operation and error code of its last listing when it failed (the previous list stays).
    pub last_error_code: Option<String>,
}

/// The portal snapshots and discovery counters shared with the HTTP server, and the process's
/// [`Status`], whose change signal every publication moves.
#[derive(Debug, Default)]
pub struct Store {
    portals: RwLock<BTreeMap<String, Arc<PortalSnapshot>>>,
    discovery: RwLock<Vec<DiscoverySnapshot>>,
    status: Status,
}

impl Store {
    /// Creates an empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Readiness, health, reload outcome and state write errors, and the change signal.
    pub fn status(&self) -> &Status {
        &self.status
    }

    /// Waits until `pred` holds for the current snapshots, re-checking after every change.
    pub async fn wait_until(&self, mut pred: impl FnMut(&[Arc<PortalSnapshot>]) -> bool) {
        self.status.wait_for(|| pred(&self.portals())).await;
    }

    /// The snapshot of one portal.
    pub fn portal(&self, portal_id: &str) -> Option<Arc<PortalSnapshot>> {
        read(&self.portals).get(portal_id).cloned()
    }

    /// Declares the portals this replica polls (the snapshots of others go): `/-/ready` waits
    /// for each of them to finish a first poll.
    pub fn set_owned(&self, ids: impl IntoIterator<Item = String>) {
        let ids: BTreeSet<String> = ids.into_iter().collect();
        {
            let mut portals = write(&self.portals);
            portals.retain(|id, _| ids.contains(id));
            self.status
                .declare_owned(ids, |id| portals.get(id).is_some_and(|p| p.polled));
        }
        self.status.changed();
    }

    /// Replaces the snapshot of one portal.
    pub fn publish(&self, snapshot: PortalSnapshot) {
        {
            let mut portals = write(&self.portals);
            self.status.set_polled(&snapshot.portal_id, snapshot.polled);
            portals.insert(snapshot.portal_id.clone(), Arc::new(snapshot));
        }
        self.status.changed();
    }

    /// Drops every series of a portal.
    pub fn remove(&self, portal_id: &str) {
        {
            let mut portals = write(&self.portals);
            self.status.set_polled(portal_id, false);
            portals.remove(portal_id);
        }
        self.status.changed();
    }

    /// All snapshots, ordered by portal id.
    pub fn portals(&self) -> Vec<Arc<PortalSnapshot>> {
        read(&self.portals).values().cloned().collect()
    }

    /// Replaces the discovery counters and the number of sources still awaiting a first listing.
    pub fn set_discovery(&self, sources: Vec<DiscoverySnapshot>, pending: usize) {
        *write(&self.discovery) = sources;
        self.status.set_discovery_pending(pending);
    }

    /// Discovery counters.
    pub fn discovery(&self) -> Vec<DiscoverySnapshot> {
        read(&self.discovery).clone()
    }
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
        let status = store.status();
        assert!(!status.ready(), "nothing declared yet");
        store.set_owned([]);
        assert!(status.ready(), "owning nothing is ready");
        store.set_owned(["p1".to_string()]);
        assert!(!status.ready());
        store.publish(snapshot("p1", false));
        assert!(status.ready(), "a failed first poll counts as polled");
        store.publish(PortalSnapshot {
            polled: false,
            ..snapshot("p1", false)
        });
        assert!(!status.ready(), "a restarted portal task has yet to poll");
        store.publish(snapshot("p1", true));
        store.set_discovery(Vec::new(), 1);
        assert!(!status.ready(), "a discovery source has yet to list");
    }

    /// Poisons every lock of `store`: a thread panics while holding each one for writing.
    fn poison_all(store: &Arc<Store>) {
        let s = Arc::clone(store);
        let outcome = std::thread::spawn(move || {
            let _p = s.portals.write();
            let _d = s.discovery.write();
            panic!("a panic while every store lock is held");
        })
        .join();
        assert!(outcome.is_err());
        assert!(store.portals.is_poisoned() && store.discovery.is_poisoned());
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
        assert!(!store.status().ready(), "p2 not polled yet");
        store.publish(snapshot("p2", false));
        assert!(store.status().ready());
        store.remove("p1");
        let ids: Vec<String> = store
            .portals()
            .iter()
            .map(|p| p.portal_id.clone())
            .collect();
        assert_eq!(ids, ["p2"]);
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
