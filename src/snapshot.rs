//! Per-portal snapshots published by the poller and read by `/metrics`, `/` and `/-/ready`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};

use bytes::Bytes;

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
    /// Error text of the last failed poll, cleared by a success.
    pub last_error: Option<String>,
    /// API requests sent, retries included, by operation.
    pub api_requests: BTreeMap<String, u64>,
    /// API request errors by (operation, error code).
    pub api_errors: BTreeMap<(String, String), u64>,
    /// Portal metadata from `GetPortal`; `None` when unknown or not permitted.
    pub meta: Option<PortalMeta>,
    /// Panics of this portal's task since the exporter started.
    pub panics: u64,
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
    owned: RwLock<BTreeSet<String>>,
    reload: RwLock<ReloadStatus>,
    discovery: RwLock<Vec<DiscoverySnapshot>>,
    /// Discovery sources that have not finished their first listing (readiness waits for them).
    discovery_pending: std::sync::atomic::AtomicUsize,
    /// Bumped by every change that can alter the `workspacesweb_*` exposition.
    version: AtomicU64,
    /// The `workspacesweb_*` exposition of some version; rebuilt by the first scrape after a change.
    rendered: Mutex<Option<Arc<Rendered>>>,
    /// The last `process_*` rendering and when it was gathered (see [`PROCESS_MAX_AGE`]).
    process: Mutex<Option<(std::time::Instant, Arc<Rendered>)>>,
}

/// Scrapes within this long of a `process_*` gathering share it: a burst of concurrent scrapers
/// reads /proc once instead of once each. Far below any scrape interval and the 10 ms resolution
/// of the CPU counters, so the values stay as fresh as a per-scrape gathering.
pub const PROCESS_MAX_AGE: std::time::Duration = std::time::Duration::from_millis(50);

/// The `workspacesweb_*` part of the exposition, rendered once per change and shared by every
/// scrape until the next change; `process_*` are appended fresh by each scrape.
#[derive(Debug)]
pub struct Rendered {
    version: u64,
    /// Text format 0.0.4.
    pub text: Bytes,
    gzip: OnceLock<Bytes>,
}

impl Rendered {
    /// The text as one gzip member (fast level), compressed once per rendering on first use.
    pub fn gzip(&self) -> std::io::Result<Bytes> {
        if let Some(packed) = self.gzip.get() {
            return Ok(packed.clone());
        }
        let packed = gzip_member(&self.text)?;
        Ok(self.gzip.get_or_init(|| packed).clone())
    }
}

/// One gzip member (RFC 1952) of `body`, at the fast level: members concatenate into a valid
/// multi-member stream, which is how the cached main part and the fresh `process_*` are joined.
pub fn gzip_member(body: &[u8]) -> std::io::Result<Bytes> {
    use std::io::Write as _;
    let mut encoder = flate2::write::GzEncoder::new(
        Vec::with_capacity(body.len() / 4 + 64),
        flate2::Compression::fast(),
    );
    encoder.write_all(body)?;
    Ok(Bytes::from(encoder.finish()?))
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
            discovery: RwLock::default(),
            discovery_pending: std::sync::atomic::AtomicUsize::new(0),
            version: AtomicU64::new(0),
            rendered: Mutex::new(None),
            process: Mutex::new(None),
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
        self.portals
            .read()
            .ok()
            .and_then(|p| p.get(portal_id).cloned())
    }

    /// Declares the portals this replica polls; `/-/ready` waits for each of them.
    pub fn set_owned(&self, ids: impl IntoIterator<Item = String>) {
        let ids: BTreeSet<String> = ids.into_iter().collect();
        if let Ok(mut portals) = self.portals.write() {
            portals.retain(|id, _| ids.contains(id));
        }
        if let Ok(mut owned) = self.owned.write() {
            *owned = ids;
        }
        self.changed();
    }

    /// Replaces the snapshot of one portal.
    pub fn publish(&self, snapshot: PortalSnapshot) {
        if let Ok(mut portals) = self.portals.write() {
            portals.insert(snapshot.portal_id.clone(), Arc::new(snapshot));
        }
        self.changed();
    }

    /// Drops every series of a portal.
    pub fn remove(&self, portal_id: &str) {
        if let Ok(mut portals) = self.portals.write() {
            portals.remove(portal_id);
        }
        self.changed();
    }

    /// All snapshots, ordered by portal id.
    pub fn portals(&self) -> Vec<Arc<PortalSnapshot>> {
        self.portals
            .read()
            .map(|p| p.values().cloned().collect())
            .unwrap_or_default()
    }

    /// Replaces the discovery counters and the number of sources still awaiting a first listing.
    pub fn set_discovery(&self, sources: Vec<DiscoverySnapshot>, pending: usize) {
        if let Ok(mut d) = self.discovery.write() {
            *d = sources;
        }
        self.discovery_pending
            .store(pending, std::sync::atomic::Ordering::Relaxed);
        self.changed();
    }

    /// Discovery counters.
    pub fn discovery(&self) -> Vec<DiscoverySnapshot> {
        self.discovery.read().map(|d| d.clone()).unwrap_or_default()
    }

    /// True once every discovery source listed once and every owned portal finished its first poll.
    pub fn ready(&self) -> bool {
        if self
            .discovery_pending
            .load(std::sync::atomic::Ordering::Relaxed)
            > 0
        {
            return false;
        }
        let (Ok(owned), Ok(portals)) = (self.owned.read(), self.portals.read()) else {
            return false;
        };
        owned
            .iter()
            .all(|id| portals.get(id).is_some_and(|p| p.polled))
    }

    /// Records the outcome of a configuration load.
    pub fn set_reload(&self, status: ReloadStatus) {
        if let Ok(mut r) = self.reload.write() {
            *r = status;
        }
        self.version.fetch_add(1, Ordering::Release);
    }

    /// Outcome of the last configuration load.
    pub fn reload(&self) -> ReloadStatus {
        self.reload.read().map(|r| *r).unwrap_or_default()
    }

    /// The full Prometheus text exposition (format 0.0.4) as of now.
    pub fn scrape_text(&self) -> Bytes {
        let main = self.rendered();
        let process = self.process();
        let process = &process.text;
        let mut out = Vec::with_capacity(main.text.len() + process.len());
        out.extend_from_slice(&main.text);
        out.extend_from_slice(process);
        Bytes::from(out)
    }

    /// The `workspacesweb_*` exposition of the current snapshots: rendered at most once per
    /// change (concurrent scrapers after a change wait for one rendering and share it).
    pub fn rendered(&self) -> Arc<Rendered> {
        let mut cached = self.rendered.lock().unwrap_or_else(|e| e.into_inner());
        // Read the version before the snapshots: a change racing with the rendering bumps it
        // again, so the next scrape renders once more rather than serving stale series forever.
        let version = self.version.load(Ordering::Acquire);
        if let Some(r) = cached.as_ref().filter(|r| r.version == version) {
            return Arc::clone(r);
        }
        let text = crate::metrics::render_main(&self.portals(), &self.discovery(), self.reload());
        let fresh = Arc::new(Rendered {
            version,
            text: Bytes::from(text),
            gzip: OnceLock::new(),
        });
        *cached = Some(Arc::clone(&fresh));
        fresh
    }

    /// The `process_*` families, gathered now or at most [`PROCESS_MAX_AGE`] ago.
    pub fn process(&self) -> Arc<Rendered> {
        let mut cached = self.process.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((at, r)) = cached.as_ref()
            && at.elapsed() <= PROCESS_MAX_AGE
        {
            return Arc::clone(r);
        }
        let fresh = Arc::new(Rendered {
            version: 0,
            text: Bytes::from(crate::metrics::render_process()),
            gzip: OnceLock::new(),
        });
        *cached = Some((std::time::Instant::now(), Arc::clone(&fresh)));
        fresh
    }

    /// Whether [`rendered`](Self::rendered) would return its cached rendering without work.
    pub fn rendered_is_fresh(&self) -> bool {
        let cached = self.rendered.lock().unwrap_or_else(|e| e.into_inner());
        cached
            .as_ref()
            .is_some_and(|r| r.version == self.version.load(Ordering::Acquire))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read as _;

    fn snapshot(id: &str, up: bool) -> PortalSnapshot {
        PortalSnapshot {
            portal_id: id.to_string(),
            up,
            polled: true,
            ..PortalSnapshot::default()
        }
    }

    #[test]
    fn the_main_part_is_rendered_once_per_change() {
        let store = Store::new();
        store.publish(snapshot("p1", true));
        let a = store.rendered();
        let b = store.rendered();
        assert!(Arc::ptr_eq(&a, &b), "no change, no new rendering");
        assert!(store.rendered_is_fresh());
        store.publish(snapshot("p2", false));
        assert!(!store.rendered_is_fresh());
        let c = store.rendered();
        assert!(!Arc::ptr_eq(&a, &c));
        let text = std::str::from_utf8(&c.text).unwrap();
        assert!(text.contains("portal_id=\"p2\""), "{text}");
        store.set_reload(ReloadStatus {
            successful: true,
            success_unix: 7.0,
        });
        let d = store.rendered();
        assert!(!Arc::ptr_eq(&c, &d), "a reload changes the exporter series");
        assert!(
            std::str::from_utf8(&d.text)
                .unwrap()
                .contains("success_timestamp_seconds 7\n")
        );
    }

    #[test]
    fn gzip_is_computed_once_per_rendering() {
        let store = Store::new();
        store.publish(snapshot("p1", true));
        let r = store.rendered();
        let a = r.gzip().unwrap();
        let b = r.gzip().unwrap();
        assert_eq!(a.as_ptr(), b.as_ptr(), "the same shared bytes");
    }

    #[test]
    fn cached_main_plus_fresh_process_members_decode_as_one_stream() {
        let store = Store::new();
        store.publish(snapshot("p1", true));
        let main = store.rendered();
        let process = b"# HELP process_x x\n# TYPE process_x gauge\nprocess_x 1\n";
        let mut stream = main.gzip().unwrap().to_vec();
        stream.extend_from_slice(&gzip_member(process).unwrap());
        let mut out = Vec::new();
        flate2::read::MultiGzDecoder::new(&stream[..])
            .read_to_end(&mut out)
            .unwrap();
        let mut expected = main.text.to_vec();
        expected.extend_from_slice(process);
        assert_eq!(out, expected);
    }

    #[test]
    fn scrape_text_is_the_main_part_then_process() {
        let store = Store::new();
        store.publish(snapshot("p1", true));
        let text = store.scrape_text();
        assert!(text.starts_with(&store.rendered().text));
        #[cfg(target_os = "linux")]
        assert!(
            std::str::from_utf8(&text)
                .unwrap()
                .contains("\nprocess_cpu_seconds_total ")
        );
    }
}
