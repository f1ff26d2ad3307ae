//! The cached exposition served on `/metrics`: rendered from the store's snapshots once per change
//! and per format, kept compressed (each portal's per-user series as pieces of their own, reused
//! while the portal does not change), joined into one gzip stream per scrape, with `process_*`
//! appended.
//!
//! [`Exposition`] owns the cache; [`render_after_changes`] is the optional background task that
//! renders, after each change, every format scraped so far, so that scrapes find the rendering
//! ready (the daemon starts it).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};

use bytes::Bytes;

use super::deflate::{self, Piece, PieceWriter};
use super::families::{Board, USER_FAMILIES};
use super::format::Format;
use super::text;
use crate::snapshot::{PortalSnapshot, Store};

/// What the next rendering can reuse: each portal's per-user pieces, per format, with the
/// snapshot they were rendered from. Locked for a whole rendering, and only off the async workers.
#[derive(Debug, Default)]
struct RenderCache {
    users: HashMap<String, UserPieces>,
}

/// One portal's samples of each of [`USER_FAMILIES`], compressed, in each format rendered.
#[derive(Debug)]
struct UserPieces {
    from: Arc<PortalSnapshot>,
    pieces: [Option<[Piece; 3]>; 3],
}

/// A format not scraped for this long is no longer rendered after changes, and its cached
/// rendering is dropped: a Prometheus that scrapes protobuf keeps one format in memory, not the
/// text that every exporter starts with. Longer than any scrape interval in use (Prometheus
/// warns above 5 minutes' staleness); a scrape after it renders on demand, once.
pub const WANTED_FOR: std::time::Duration = std::time::Duration::from_secs(15 * 60);

/// Scrapes within this long of a `process_*` gathering share it: a burst of concurrent scrapers
/// reads /proc once instead of once each. Far below any scrape interval and the 10 ms resolution
/// of the CPU counters, so the values stay as fresh as a per-scrape gathering.
pub const PROCESS_MAX_AGE: std::time::Duration = std::time::Duration::from_millis(50);

/// The `workspacesweb_*` part of the exposition in one format, rendered once per change and
/// shared by every scrape until the next change; `process_*` are appended fresh by each scrape.
#[derive(Debug)]
pub struct Rendered {
    version: u64,
    /// The rendering, compressed (see [`deflate`]).
    pub main: Piece,
}

/// One format's slots of the cache.
#[derive(Debug, Default)]
struct Slots {
    /// The newest `workspacesweb_*` rendering.
    latest: Mutex<Option<Arc<Rendered>>>,
    /// The uncompressed bytes of one rendering's main part, for scrapes without gzip: inflated
    /// once per rendering and shared by every such scrape; only the newest is kept.
    plain: Mutex<Option<(Arc<Rendered>, Bytes)>>,
    /// The last `process_*` rendering and when it was gathered (see [`PROCESS_MAX_AGE`]).
    process: Mutex<Option<(std::time::Instant, Arc<Piece>)>>,
    /// When it was last scraped, in ms since the exposition was made, plus one (0: never): the
    /// background task renders it after changes while it is wanted (see [`WANTED_FOR`]).
    scraped: AtomicU64,
}

/// The store's exposition and its cache.
///
/// Locks: each format's `latest`, `plain` and `process` guard a pointer each and are held only
/// to read or replace it, never while rendering; `rendering` is held for a whole rendering and
/// `inflating` for a whole inflation, and both are taken only by [`rendered_as`](Self::rendered_as)
/// and [`scrape`](Self::scrape), which run on the blocking pool. So a scrape on an async worker
/// ([`scrape_cached`](Self::scrape_cached)) and [`rendered_is_fresh`](Self::rendered_is_fresh)
/// never wait for a rendering in progress.
#[derive(Debug)]
pub struct Exposition {
    store: Arc<Store>,
    /// Per format, in the order of [`Format::ALL`].
    slots: [Slots; 3],
    /// The pieces the next rendering reuses; held while rendering.
    rendering: Mutex<RenderCache>,
    /// Held while inflating, so that concurrent plain scrapes inflate once, not once each.
    inflating: Mutex<()>,
    /// When it was made: the origin of each slot's `scraped`.
    born: std::time::Instant,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Exposition {
    /// The exposition of `store`, nothing rendered yet.
    pub fn new(store: Arc<Store>) -> Self {
        let exposition = Exposition {
            store,
            slots: Default::default(),
            rendering: Mutex::default(),
            inflating: Mutex::default(),
            born: std::time::Instant::now(),
        };
        // Text is wanted from the start (the first scrape finds it rendered), until
        // [`WANTED_FOR`] passes without a text scrape.
        exposition.mark_scraped(Format::Text);
        exposition
    }

    /// The store it renders.
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    fn slots(&self, format: Format) -> &Slots {
        &self.slots[format.index()]
    }

    /// Milliseconds since the exposition was made, plus one (never 0).
    fn age_ms(&self) -> u64 {
        u64::try_from(self.born.elapsed().as_millis())
            .unwrap_or(u64::MAX - 1)
            .saturating_add(1)
    }

    /// Records a scrape of `format` now.
    fn mark_scraped(&self, format: Format) {
        let now = self.age_ms();
        self.slots(format).scraped.fetch_max(now, Ordering::Relaxed);
    }

    /// The full Prometheus text exposition (format 0.0.4) as of now.
    pub fn scrape_text(&self) -> std::io::Result<Bytes> {
        let mut text = self.rendered().main.text()?;
        text.extend_from_slice(&self.process(Format::Text).text()?);
        Ok(Bytes::from(text))
    }

    /// The body of a scrape in `format` as of now, as chunks: one gzip stream of the cached
    /// `workspacesweb_*` part and fresh `process_*`, or their bytes. May render, inflate and
    /// wait for a rendering in progress: call it on the blocking pool.
    pub fn scrape(&self, format: Format, gzip: bool) -> std::io::Result<Vec<Bytes>> {
        self.mark_scraped(format);
        let main = self.rendered_as(format);
        let process = self.process(format);
        if gzip {
            return Ok(deflate::gzip_chunks(&[&main.main, &process]));
        }
        Ok(vec![
            self.plain_of(format, &main)?,
            Bytes::from(process.text()?),
        ])
    }

    /// The body of a scrape if it needs no rendering and no inflation (the rendering is fresh
    /// and, without gzip, its bytes are cached): cheap, and never waits for a rendering or an
    /// inflation in progress, so async workers may call it. `None`: call [`scrape`](Self::scrape)
    /// on the blocking pool.
    pub fn scrape_cached(&self, format: Format, gzip: bool) -> Option<std::io::Result<Vec<Bytes>>> {
        self.mark_scraped(format);
        let main = self.fresh(format)?;
        if gzip {
            let process = self.process(format);
            return Some(Ok(deflate::gzip_chunks(&[&main.main, &process])));
        }
        let plain = self.cached_plain(format, &main)?;
        let process = self.process(format);
        Some(process.text().map(|p| vec![plain, Bytes::from(p)]))
    }

    /// The newest rendering in `format` if it is of the current version.
    fn fresh(&self, format: Format) -> Option<Arc<Rendered>> {
        let latest = lock(&self.slots(format).latest);
        let version = self.store.status().version();
        latest.as_ref().filter(|r| r.version == version).cloned()
    }

    /// The cached bytes of `main`, if it is the one cached.
    fn cached_plain(&self, format: Format, main: &Arc<Rendered>) -> Option<Bytes> {
        let plain = lock(&self.slots(format).plain);
        plain
            .as_ref()
            .filter(|(of, _)| Arc::ptr_eq(of, main))
            .map(|(_, t)| t.clone())
    }

    /// The bytes of `main`, inflated at most once (concurrent callers wait for one inflation).
    /// The cache keeps only the newest: memory holds one copy per format, plus older ones only
    /// while responses still being sent use them.
    fn plain_of(&self, format: Format, main: &Arc<Rendered>) -> std::io::Result<Bytes> {
        if let Some(plain) = self.cached_plain(format, main) {
            return Ok(plain);
        }
        let _inflating = lock(&self.inflating);
        if let Some(plain) = self.cached_plain(format, main) {
            return Ok(plain);
        }
        let plain = Bytes::from(main.main.text()?);
        let mut cached = lock(&self.slots(format).plain);
        // An older rendering's bytes never replace a newer one's.
        if cached
            .as_ref()
            .is_none_or(|(of, _)| of.version <= main.version)
        {
            *cached = Some((Arc::clone(main), plain.clone()));
        }
        Ok(plain)
    }

    /// Holds the rendering lock as a rendering in progress does (tests: a rendering that
    /// never ends).
    #[doc(hidden)]
    pub fn hold_rendering(&self) -> impl Drop + '_ {
        lock(&self.rendering)
    }

    /// The `workspacesweb_*` exposition in the text format 0.0.4 (see [`rendered_as`](Self::rendered_as)).
    pub fn rendered(&self) -> Arc<Rendered> {
        self.rendered_as(Format::Text)
    }

    /// The `workspacesweb_*` exposition of the current snapshots in `format`: rendered at most
    /// once per change (concurrent scrapers after a change wait for one rendering and share it).
    /// The per-user samples of a portal whose snapshot did not change are reused as they were.
    ///
    /// Blocks while another rendering is in progress: never call it on an async worker.
    pub fn rendered_as(&self, format: Format) -> Arc<Rendered> {
        if let Some(fresh) = self.fresh(format) {
            return fresh;
        }
        let mut cache = lock(&self.rendering);
        // Read the version before the snapshots: a change racing with the rendering bumps it
        // again, so the next scrape renders once more rather than serving stale series forever.
        let version = self.store.status().version();
        // Rendered by whoever held the lock before.
        if let Some(fresh) = self.fresh(format).filter(|r| r.version == version) {
            return fresh;
        }
        let portals = self.store.portals();
        let users = user_pieces(&mut cache, &portals, format);
        // Rendered straight into the compressor: a large head is never in memory uncompressed.
        let mut head = PieceWriter::new();
        let discovery = self.store.discovery();
        let board = Board {
            portals: &portals,
            discovery: &discovery,
            status: self.store.status().exporter(),
        };
        format.render_head_into(&mut head, board);
        let head = head.finish();
        let mut heads = Vec::new();
        let mut families: Vec<Vec<&Piece>> = Vec::new();
        for (i, family) in USER_FAMILIES.iter().enumerate() {
            let samples: Vec<&Piece> = portals
                .iter()
                .filter_map(|p| users.get(&p.portal_id))
                .filter_map(|u| u.pieces[format.index()].as_ref().map(|f| &f[i]))
                .filter(|piece| !piece.is_empty())
                .collect();
            if !samples.is_empty() {
                heads.push(format.user_head(family, &samples));
                families.push(samples);
            }
        }
        let mut parts = vec![&head];
        for (head, samples) in heads.iter().zip(&families) {
            parts.push(head);
            parts.extend(samples.iter().copied());
        }
        let fresh = Arc::new(Rendered {
            version,
            main: Piece::join(parts.iter().copied()),
        });
        drop(families);
        cache.users = users;
        let mut latest = lock(&self.slots(format).latest);
        if latest.as_ref().is_none_or(|r| r.version <= version) {
            *latest = Some(Arc::clone(&fresh));
        }
        fresh
    }

    /// The `process_*` families in `format` (with what ends the exposition), gathered now or at
    /// most [`PROCESS_MAX_AGE`] ago. The lock is not held while gathering.
    pub fn process(&self, format: Format) -> Arc<Piece> {
        let slot = &self.slots(format).process;
        {
            let cached = lock(slot);
            if let Some((at, r)) = cached.as_ref()
                && at.elapsed() <= PROCESS_MAX_AGE
            {
                return Arc::clone(r);
            }
        }
        let fresh = Arc::new(Piece::compress(&format.process_and_end()));
        *lock(slot) = Some((std::time::Instant::now(), Arc::clone(&fresh)));
        fresh
    }

    /// Whether [`rendered`](Self::rendered) would return its cached rendering without work.
    /// Never waits for a rendering in progress.
    pub fn rendered_is_fresh(&self) -> bool {
        self.fresh(Format::Text).is_some()
    }

    /// The formats scraped within [`WANTED_FOR`] (text too in its first [`WANTED_FOR`]), the
    /// most recently scraped first: those the background task keeps rendered, in that order, so
    /// that the format a Prometheus scrapes is never behind one that nothing scrapes now.
    fn wanted(&self) -> Vec<Format> {
        self.wanted_at(self.age_ms())
    }

    /// [`wanted`](Self::wanted) at `now` (ms since the exposition was made, plus one).
    fn wanted_at(&self, now: u64) -> Vec<Format> {
        let window = u64::try_from(WANTED_FOR.as_millis()).unwrap_or(u64::MAX);
        let mut wanted: Vec<(u64, Format)> = Format::ALL
            .into_iter()
            .map(|f| (self.slots(f).scraped.load(Ordering::Relaxed), f))
            .filter(|(at, _)| *at != 0 && now.saturating_sub(*at) <= window)
            .collect();
        wanted.sort_by_key(|(at, _)| std::cmp::Reverse(*at));
        wanted.into_iter().map(|(_, f)| f).collect()
    }

    /// Drops the cached renderings of the formats not in `wanted` (their compressed main part,
    /// its bytes and their per-user pieces): memory holds only the formats scraped lately.
    fn forget_unwanted(&self, wanted: &[Format]) {
        let unwanted: Vec<Format> = Format::ALL
            .into_iter()
            .filter(|f| !wanted.contains(f))
            .collect();
        if unwanted
            .iter()
            .all(|f| lock(&self.slots(*f).latest).is_none())
        {
            return;
        }
        let mut cache = lock(&self.rendering);
        for format in unwanted {
            *lock(&self.slots(format).latest) = None;
            *lock(&self.slots(format).plain) = None;
            for user in cache.users.values_mut() {
                user.pieces[format.index()] = None;
            }
        }
    }
}

/// Each portal's per-user pieces in `format`: reused from `cache` while its snapshot is the
/// same (with the pieces of the other formats), rendered otherwise.
fn user_pieces(
    cache: &mut RenderCache,
    portals: &[Arc<PortalSnapshot>],
    format: Format,
) -> HashMap<String, UserPieces> {
    let mut users = HashMap::with_capacity(portals.len());
    for p in portals {
        let mut pieces = cache
            .users
            .remove(&p.portal_id)
            .filter(|u| Arc::ptr_eq(&u.from, p))
            .unwrap_or_else(|| UserPieces {
                from: Arc::clone(p),
                pieces: Default::default(),
            });
        let slot = &mut pieces.pieces[format.index()];
        if slot.is_none() {
            *slot = Some(USER_FAMILIES.each_ref().map(|f| format.user_samples(f, p)));
        }
        users.insert(p.portal_id.clone(), pieces);
    }
    users
}

/// The exposition of `store` rendered now, without cache, as text (`workspacesweb_*` then
/// `process_*`): what a scrape without gzip receives.
pub fn render_text(store: &Store) -> Bytes {
    let (portals, discovery) = (store.portals(), store.discovery());
    text::render(Board {
        portals: &portals,
        discovery: &discovery,
        status: store.status().exporter(),
    })
}

/// Starts [`render_after_changes`] for `exposition`, supervised: a panic is logged and the
/// renderer restarts (a panic of one rendering, on the blocking pool, is caught inside it), so
/// that scrapes keep finding a fresh rendering. Scrapes render themselves meanwhile.
pub fn spawn_renderer(exposition: &Arc<Exposition>) -> tokio::task::JoinHandle<()> {
    use crate::supervise::{RESTART_DELAY, Restarts, supervise};
    let weak = Arc::downgrade(exposition);
    let restarts = Restarts {
        first: RESTART_DELAY,
        stop: None,
    };
    tokio::spawn(supervise(
        restarts,
        move || render_after_changes(weak.clone()),
        |p| {
            tracing::error!(panic = %p.message, restart_in = ?p.restart_in, "the exposition's renderer panicked; restarting it");
        },
    ))
}

/// Renders the exposition (compressed) in every format scraped so far on the blocking pool after
/// each change, so that scrapes find it ready instead of one of them paying for it. Bursts of changes coalesce: after a
/// rendering the next waits at least [`RENDER_GAP_MIN`] and ten times the rendering's own time,
/// which bounds this task to about a tenth of a core however often portals publish (1,000
/// portals); a scrape that finds the rendering stale in between renders it itself.
/// Ends when the exposition is dropped.
pub async fn render_after_changes(exposition: Weak<Exposition>) {
    let Some(mut changes) = exposition.upgrade().map(|e| e.store.status().subscribe()) else {
        return;
    };
    // A renderer restarted after a panic renders what changed while it was down.
    changes.mark_changed();
    while changes.changed().await.is_ok() {
        changes.mark_unchanged();
        let Some(strong) = exposition.upgrade() else {
            return;
        };
        #[cfg(test)]
        crate::supervise::panic_hook::fire(&tests::renderer_key(&strong));
        let began = std::time::Instant::now();
        let rendered = tokio::task::spawn_blocking(move || {
            let wanted = strong.wanted();
            for format in &wanted {
                strong.rendered_as(*format);
            }
            strong.forget_unwanted(&wanted);
        })
        .await;
        if rendered.is_err() {
            tracing::error!("rendering the exposition in the background failed");
        }
        tokio::time::sleep(RENDER_GAP_MIN.max(began.elapsed() * 10)).await;
    }
}

/// Shortest pause between two background renderings.
pub const RENDER_GAP_MIN: std::time::Duration = std::time::Duration::from_millis(50);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::ReloadStatus;
    use crate::users::UserSeries;
    use std::io::Read as _;

    use crate::snapshot::polled as snapshot;

    /// The panic hook's key of the renderer of `exposition`.
    pub(super) fn renderer_key(exposition: &Arc<Exposition>) -> String {
        format!("renderer {:p}", Arc::as_ptr(exposition))
    }

    /// A renderer that panics is restarted: it renders the next change, so scrapes are served
    /// from a fresh rendering again (before, the task ended and only scrapes rendered).
    #[tokio::test]
    async fn a_panicking_renderer_is_restarted() {
        use crate::supervise::panic_hook;
        let e = Arc::new(exposition());
        let key = renderer_key(&e);
        panic_hook::arm(&key);
        let renderer = spawn_renderer(&e);
        e.store().publish(snapshot("p1", true));
        // The armed renderer panics at its first rendering; the restarted one renders the next
        // change by itself.
        let hang_guard = std::time::Duration::from_secs(60);
        tokio::time::timeout(hang_guard, async {
            while panic_hook::armed(&key) {
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
        })
        .await
        .expect("hang guard: the renderer never ran");
        e.store().publish(snapshot("p2", true));
        tokio::time::timeout(hang_guard, async {
            while !e.rendered_is_fresh() {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        })
        .await
        .expect("hang guard: no rendering after the panic");
        assert!(!renderer.is_finished(), "the supervisor still runs");
        renderer.abort();
    }

    fn with_users(id: &str, n: u64) -> PortalSnapshot {
        PortalSnapshot {
            users: (0..n)
                .map(|i| UserSeries {
                    username: format!("u{i}"),
                    active: i % 2,
                    started: i,
                    session_seconds: i as f64 * 1.5,
                    created_ms: 1_000,
                })
                .collect(),
            active: Some(crate::ledger::ActiveSummary::default()),
            ..snapshot(id, true)
        }
    }

    fn exposition() -> Exposition {
        Exposition::new(Arc::new(Store::new()))
    }

    fn gunzip(chunks: &[Bytes]) -> String {
        let stream: Vec<u8> = chunks.iter().flat_map(|c| c.iter().copied()).collect();
        let mut out = String::new();
        flate2::read::GzDecoder::new(&stream[..])
            .read_to_string(&mut out)
            .unwrap();
        out
    }

    /// The plain rendering of the store's `workspacesweb_*` series, without cache.
    fn plain(store: &Store) -> String {
        text::render_main(Board {
            portals: &store.portals(),
            discovery: &[],
            status: store.status().exporter(),
        })
    }

    fn main_text(e: &Exposition) -> String {
        String::from_utf8(e.rendered().main.text().unwrap()).unwrap()
    }

    #[test]
    fn the_main_part_is_rendered_once_per_change() {
        let e = exposition();
        e.store().publish(snapshot("p1", true));
        let a = e.rendered();
        let b = e.rendered();
        assert!(Arc::ptr_eq(&a, &b), "no change, no new rendering");
        assert!(e.rendered_is_fresh());
        e.store().publish(snapshot("p2", false));
        assert!(!e.rendered_is_fresh());
        let c = e.rendered();
        assert!(!Arc::ptr_eq(&a, &c));
        let text = main_text(&e);
        assert!(text.contains("portal_id=\"p2\""), "{text}");
        e.store().status().set_reload(ReloadStatus {
            successful: true,
            success_unix: 7.0,
        });
        let d = e.rendered();
        assert!(!Arc::ptr_eq(&c, &d), "a reload changes the exporter series");
        assert!(main_text(&e).contains("success_timestamp_seconds 7\n"));
    }

    #[test]
    fn the_assembled_exposition_is_the_plain_rendering_of_the_snapshots() {
        let e = exposition();
        let store = e.store();
        store.publish(with_users("p1", 50));
        store.publish(snapshot("p2", true));
        store.publish(with_users("p3", 7));
        let expected = plain(store);
        assert_eq!(main_text(&e), expected);
        // A portal that changes gets new pieces; the others keep theirs and the text still matches.
        store.publish(with_users("p1", 3));
        store.remove("p3");
        let expected = plain(store);
        assert_eq!(main_text(&e), expected);
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
        let e = exposition();
        e.store().publish(with_users("p1", 20));
        e.store().publish(with_users("p2", 20));
        e.rendered();
        let before = |e: &Exposition, id: &str| {
            let cache = e.rendering.lock().unwrap();
            cache.users[id].pieces[0].as_ref().unwrap()[1].clone()
        };
        let (p1, p2) = (before(&e, "p1"), before(&e, "p2"));
        e.store().publish(with_users("p2", 21));
        e.rendered();
        let cache = e.rendering.lock().unwrap();
        assert_eq!(
            cache.users["p1"].pieces[0].as_ref().unwrap()[1],
            p1,
            "p1 did not change"
        );
        assert!(Arc::ptr_eq(
            &cache.users["p1"].from,
            &e.store().portal("p1").unwrap()
        ));
        assert_ne!(
            cache.users["p2"].pieces[0].as_ref().unwrap()[1],
            p2,
            "p2 did"
        );
    }

    #[test]
    fn a_gzip_scrape_is_one_member_of_main_then_process() {
        let e = exposition();
        e.store().publish(with_users("p1", 10));
        let gzip = gunzip(&e.scrape(Format::Text, true).unwrap());
        let plain: Vec<u8> = e.scrape(Format::Text, false).unwrap().concat();
        assert_eq!(gzip.as_bytes(), &plain[..]);
        assert!(gzip.starts_with(&main_text(&e)));
        #[cfg(target_os = "linux")]
        assert!(gzip.contains("\nprocess_cpu_seconds_total "), "{gzip}");
    }

    #[test]
    fn only_formats_scraped_lately_are_kept_most_recent_first() {
        let e = exposition();
        e.store().publish(with_users("p1", 5));
        assert_eq!(e.wanted(), [Format::Text], "text is wanted from the start");
        e.scrape(Format::Protobuf, true).expect("protobuf");
        e.rendered_as(Format::Text);
        let slot = |f: Format| &e.slots[f.index()].scraped;
        slot(Format::Text).store(1, Ordering::Relaxed);
        slot(Format::Protobuf).store(2, Ordering::Relaxed);
        assert_eq!(e.wanted_at(3), [Format::Protobuf, Format::Text]);
        // Text not scraped for WANTED_FOR: the background renders protobuf alone.
        let window = WANTED_FOR.as_millis() as u64;
        assert_eq!(e.wanted_at(window + 2), [Format::Protobuf]);
        assert!(e.wanted_at(window + 3).is_empty());
        let text_before = main_text(&e);
        e.forget_unwanted(&[Format::Protobuf]);
        assert!(lock(&e.slots(Format::Text).latest).is_none());
        assert!(lock(&e.slots(Format::Protobuf).latest).is_some());
        let cache = lock(&e.rendering);
        assert!(!cache.users.is_empty());
        for user in cache.users.values() {
            assert!(user.pieces[Format::Text.index()].is_none());
            assert!(user.pieces[Format::Protobuf.index()].is_some());
        }
        drop(cache);
        // A text scrape after that renders it again, the same.
        assert_eq!(main_text(&e), text_before);
    }

    /// Before, every scrape without gzip inflated its own copy of the text: 100 of them at once
    /// held 100 copies. Now one copy per rendering is shared, and only the newest is kept.
    #[test]
    fn plain_scrapes_share_one_text_per_rendering() {
        let e = exposition();
        e.store().publish(with_users("p1", 200));
        let a = e.scrape(Format::Text, false).unwrap();
        let b = e.scrape(Format::Text, false).unwrap();
        assert_eq!(a[0], b[0]);
        assert_eq!(a[0].as_ptr(), b[0].as_ptr(), "one inflated copy, shared");
        // Served without rendering or inflating once cached.
        let c = e
            .scrape_cached(Format::Text, false)
            .expect("cached")
            .unwrap();
        assert_eq!(c[0].as_ptr(), a[0].as_ptr());
        // A change: a new text replaces the old one in the cache.
        e.store().publish(with_users("p1", 201));
        assert!(
            e.scrape_cached(Format::Text, false).is_none(),
            "stale: needs a rendering"
        );
        let d = e.scrape(Format::Text, false).unwrap();
        assert_ne!(d[0], a[0]);
        let cached = e.slots[0].plain.lock().unwrap();
        let (of, text) = cached.as_ref().expect("one text cached");
        assert_eq!(text.as_ptr(), d[0].as_ptr());
        assert_eq!(of.version, e.store().status().version());
    }

    #[test]
    fn scrape_text_is_the_main_part_then_process_as_rendered_without_cache() {
        let e = exposition();
        e.store().publish(with_users("p1", 5));
        let text = e.scrape_text().unwrap();
        assert!(text.starts_with(main_text(&e).as_bytes()));
        let fresh = render_text(e.store());
        let main = main_text(&e);
        assert_eq!(&fresh[..main.len()], main.as_bytes());
        #[cfg(target_os = "linux")]
        assert!(
            std::str::from_utf8(&text)
                .unwrap()
                .contains("\nprocess_cpu_seconds_total ")
        );
    }
}
