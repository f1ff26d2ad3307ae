//! Per-portal snapshots published by the poller and read by `/metrics`, `/` and `/-/ready`, and
//! the exposition rendered from them, cached compressed until the next change.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, RwLock};

use bytes::Bytes;

use crate::deflate::{self, Piece, PieceWriter};
use crate::metrics;

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
    /// Operation and error code of the last failed poll (`ListSessions AccessDeniedException`),
    /// cleared by a success. Never the service's message, which may name accounts and roles: the
    /// landing page shows this; the detail goes to the log.
    pub last_error: Option<String>,
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
    /// The `workspacesweb_*` exposition of some version, and the pieces it was joined from.
    rendered: Mutex<RenderCache>,
    /// The last `process_*` rendering and when it was gathered (see [`PROCESS_MAX_AGE`]).
    process: Mutex<Option<(std::time::Instant, Arc<Piece>)>>,
}

/// What the next rendering can reuse: the last exposition, and each portal's per-user pieces
/// with the snapshot they were rendered from.
#[derive(Debug, Default)]
struct RenderCache {
    last: Option<Arc<Rendered>>,
    users: HashMap<String, UserPieces>,
}

/// One portal's samples of each of [`metrics::USER_FAMILIES`], compressed.
#[derive(Debug)]
struct UserPieces {
    from: Arc<PortalSnapshot>,
    pieces: [Piece; 3],
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
    /// Text format 0.0.4, compressed (see [`crate::deflate`]).
    pub main: Piece,
}

/// The HELP and TYPE lines of each per-user family, compressed once.
static USER_HEADERS: LazyLock<[Piece; 3]> = LazyLock::new(|| {
    metrics::USER_FAMILIES
        .each_ref()
        .map(|f| Piece::compress(f.header().as_bytes()))
});

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
            rendered: Mutex::default(),
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
            *owned = Some(ids);
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

    /// True once the owned portals are declared, every discovery source listed once and every
    /// owned portal finished its first poll (the server answers before the control loop starts).
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
            .as_ref()
            .is_some_and(|o| o.iter().all(|id| portals.get(id).is_some_and(|p| p.polled)))
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

    /// Records how many state writes failed so far (`Some(0)` declares durable state on).
    pub fn set_state_write_errors(&self, errors: u64) {
        if let Ok(mut e) = self.state_write_errors.write() {
            if *e == Some(errors) {
                return;
            }
            *e = Some(errors);
        }
        self.version.fetch_add(1, Ordering::Release);
    }

    /// The exporter-level series: reload outcome and state write errors.
    pub fn exporter_status(&self) -> ExporterStatus {
        ExporterStatus {
            reload: self.reload(),
            state_write_errors: self
                .state_write_errors
                .read()
                .map(|e| *e)
                .unwrap_or_default(),
        }
    }

    /// The full Prometheus text exposition (format 0.0.4) as of now.
    pub fn scrape_text(&self) -> std::io::Result<Bytes> {
        let mut text = self.rendered().main.text()?;
        text.extend_from_slice(&self.process().text()?);
        Ok(Bytes::from(text))
    }

    /// The body of a scrape as of now, as chunks: one gzip stream of the cached `workspacesweb_*`
    /// part and fresh `process_*`, or their text.
    pub fn scrape(&self, gzip: bool) -> std::io::Result<Vec<Bytes>> {
        let main = self.rendered();
        let process = self.process();
        if gzip {
            return Ok(deflate::gzip_chunks(&[&main.main, &process]));
        }
        Ok(vec![
            Bytes::from(main.main.text()?),
            Bytes::from(process.text()?),
        ])
    }

    /// The `workspacesweb_*` exposition of the current snapshots: rendered at most once per
    /// change (concurrent scrapers after a change wait for one rendering and share it). The
    /// per-user samples of a portal whose snapshot did not change are reused as they were.
    pub fn rendered(&self) -> Arc<Rendered> {
        let mut cache = self.rendered.lock().unwrap_or_else(|e| e.into_inner());
        // Read the version before the snapshots: a change racing with the rendering bumps it
        // again, so the next scrape renders once more rather than serving stale series forever.
        let version = self.version.load(Ordering::Acquire);
        if let Some(r) = cache.last.as_ref().filter(|r| r.version == version) {
            return Arc::clone(r);
        }
        let portals = self.portals();
        let mut users = HashMap::with_capacity(portals.len());
        for p in &portals {
            let reused = cache
                .users
                .remove(&p.portal_id)
                .filter(|u| Arc::ptr_eq(&u.from, p));
            let pieces = reused.unwrap_or_else(|| UserPieces {
                from: Arc::clone(p),
                pieces: metrics::USER_FAMILIES.each_ref().map(|f| {
                    let mut piece = PieceWriter::new();
                    metrics::render_user_samples_into(&mut piece, f, p);
                    piece.finish()
                }),
            });
            users.insert(p.portal_id.clone(), pieces);
        }
        // Rendered straight into the compressor: a large head is never in memory as text.
        let mut head = PieceWriter::new();
        metrics::render_head_into(
            &mut head,
            &portals,
            &self.discovery(),
            self.exporter_status(),
        );
        let head = head.finish();
        let mut parts = vec![&head];
        for (i, header) in USER_HEADERS.iter().enumerate() {
            let samples: Vec<&Piece> = portals
                .iter()
                .filter_map(|p| users.get(&p.portal_id).map(|u| &u.pieces[i]))
                .filter(|piece| !piece.is_empty())
                .collect();
            if !samples.is_empty() {
                parts.push(header);
                parts.extend(samples);
            }
        }
        let fresh = Arc::new(Rendered {
            version,
            main: Piece::join(parts.iter().copied()),
        });
        cache.users = users;
        cache.last = Some(Arc::clone(&fresh));
        fresh
    }

    /// The `process_*` families, gathered now or at most [`PROCESS_MAX_AGE`] ago.
    pub fn process(&self) -> Arc<Piece> {
        let mut cached = self.process.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((at, r)) = cached.as_ref()
            && at.elapsed() <= PROCESS_MAX_AGE
        {
            return Arc::clone(r);
        }
        let fresh = Arc::new(Piece::compress(&crate::metrics::render_process()));
        *cached = Some((std::time::Instant::now(), Arc::clone(&fresh)));
        fresh
    }

    /// Whether [`rendered`](Self::rendered) would return its cached rendering without work.
    pub fn rendered_is_fresh(&self) -> bool {
        let cache = self.rendered.lock().unwrap_or_else(|e| e.into_inner());
        cache
            .last
            .as_ref()
            .is_some_and(|r| r.version == self.version.load(Ordering::Acquire))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::users::UserSeries;
    use std::io::Read as _;

    fn snapshot(id: &str, up: bool) -> PortalSnapshot {
        PortalSnapshot {
            portal_id: id.to_string(),
            up,
            polled: true,
            ..PortalSnapshot::default()
        }
    }

    fn with_users(id: &str, n: u64) -> PortalSnapshot {
        PortalSnapshot {
            users: (0..n)
                .map(|i| UserSeries {
                    username: format!("u{i}"),
                    active: i % 2,
                    started: i,
                    session_seconds: i as f64 * 1.5,
                })
                .collect(),
            active: Some(crate::ledger::ActiveSummary::default()),
            ..snapshot(id, true)
        }
    }

    fn gunzip(chunks: &[Bytes]) -> String {
        let stream: Vec<u8> = chunks.iter().flat_map(|c| c.iter().copied()).collect();
        let mut out = String::new();
        flate2::read::GzDecoder::new(&stream[..])
            .read_to_string(&mut out)
            .unwrap();
        out
    }

    fn main_text(store: &Store) -> String {
        String::from_utf8(store.rendered().main.text().unwrap()).unwrap()
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
        let text = main_text(&store);
        assert!(text.contains("portal_id=\"p2\""), "{text}");
        store.set_reload(ReloadStatus {
            successful: true,
            success_unix: 7.0,
        });
        let d = store.rendered();
        assert!(!Arc::ptr_eq(&c, &d), "a reload changes the exporter series");
        assert!(main_text(&store).contains("success_timestamp_seconds 7\n"));
    }

    #[test]
    fn the_assembled_exposition_is_the_plain_rendering_of_the_snapshots() {
        let store = Store::new();
        store.publish(with_users("p1", 50));
        store.publish(snapshot("p2", true));
        store.publish(with_users("p3", 7));
        let expected = metrics::render_main(&store.portals(), &[], store.reload());
        assert_eq!(main_text(&store), expected);
        // A portal that changes gets new pieces; the others keep theirs and the text still matches.
        store.publish(with_users("p1", 3));
        store.remove("p3");
        let expected = metrics::render_main(&store.portals(), &[], store.reload());
        assert_eq!(main_text(&store), expected);
        assert_eq!(
            expected
                .matches("# TYPE workspacesweb_user_sessions_started_total")
                .count(),
            1
        );
        assert!(!expected.contains("p3"));
    }

    #[test]
    fn unchanged_portals_keep_their_compressed_user_pieces() {
        let store = Store::new();
        store.publish(with_users("p1", 20));
        store.publish(with_users("p2", 20));
        store.rendered();
        let before = |store: &Store, id: &str| {
            let cache = store.rendered.lock().unwrap();
            cache.users[id].pieces[1].clone()
        };
        let (p1, p2) = (before(&store, "p1"), before(&store, "p2"));
        store.publish(with_users("p2", 21));
        store.rendered();
        let cache = store.rendered.lock().unwrap();
        assert_eq!(cache.users["p1"].pieces[1], p1, "p1 did not change");
        assert!(Arc::ptr_eq(
            &cache.users["p1"].from,
            &store.portals.read().unwrap()["p1"]
        ));
        assert_ne!(cache.users["p2"].pieces[1], p2, "p2 did");
    }

    #[test]
    fn a_gzip_scrape_is_one_member_of_main_then_process() {
        let store = Store::new();
        store.publish(with_users("p1", 10));
        let gzip = gunzip(&store.scrape(true).unwrap());
        let plain: Vec<u8> = store.scrape(false).unwrap().concat();
        assert_eq!(gzip.as_bytes(), &plain[..]);
        assert!(gzip.starts_with(&main_text(&store)));
        #[cfg(target_os = "linux")]
        assert!(gzip.contains("\nprocess_cpu_seconds_total "), "{gzip}");
    }

    #[test]
    fn scrape_text_is_the_main_part_then_process() {
        let store = Store::new();
        store.publish(snapshot("p1", true));
        let text = store.scrape_text().unwrap();
        assert!(text.starts_with(main_text(&store).as_bytes()));
        #[cfg(target_os = "linux")]
        assert!(
            std::str::from_utf8(&text)
                .unwrap()
                .contains("\nprocess_cpu_seconds_total ")
        );
    }
}
