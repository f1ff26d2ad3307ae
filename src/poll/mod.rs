//! The scheduler: one task per portal, a jittered interval, a timeout per poll, a concurrency limit,
//! and the staleness rule. Each successful poll feeds the portal's [`Ledger`](crate::ledger::Ledger) and publishes a snapshot.
//!
//! # One poll (incremental listing)
//!
//! 1. List every `Active` session (all pages).
//! 2. List `Terminated` sessions sorted `StartTimeDescending`, stopping at the first page whose oldest
//!    session started before the *watermark*: the start of the previous successful poll minus
//!    [`SKEW_MARGIN_MS`] (on the first poll, T0 minus the margin).
//! 3. Sessions the ledger still has open (active at an earlier poll, absent from this poll's active
//!    listing) that step 2 did not return are *vanished*. The scan of step 2 goes on, page by page,
//!    while the pages it still needs to reach the oldest of them, estimated from the density of
//!    start times it has listed so far, are fewer than the vanished sessions it could still find;
//!    those that it does not find (gone from the listing, past the service's retention, or too
//!    deep to be worth the pages) are fetched one by one with `GetSession`.
//!
//! Why nothing is missed: a session that terminated since the previous poll either started after the
//! previous poll began (then its start is above the watermark and step 2 returns it, the margin
//! absorbing clock skew between this host and the API), or started before it; in that case it was
//! running while the previous poll listed active sessions, so it is open in the ledger and step 3
//! resolves it. Why nothing is double counted: the ledger deduplicates by session id; the older
//! records that the longer scan brings are either tracked or below the ledger's prune point, where
//! they only feed monthly active users.
//! Steady-state cost: ceil(active/page) + ceil(new terminated/page) + 1 `ListSessions` calls, plus,
//! for the vanished sessions that started before the watermark, the cheaper of more pages of the
//! scan and one `GetSession` each.
//!
//! The ledger applies the poll at the time of its first request, which also closes the interval
//! since the previous successful poll: its peak concurrency and time at capacity (see the ledger's
//! module docs). After a successful poll, `GetPortal` (every `metadata_refresh`) refreshes the
//! portal's metadata; each answer also sets the ledger's capacity limit (`maxConcurrentSessions`)
//! for the next interval.
//!
//! # A poll cut short
//!
//! Pages are kept as they arrive. When a poll fails on throttling, a server error, a connection
//! failure or its timeout, the next attempt (one interval later: an attempt that made progress does
//! not grow the backoff) resumes with the same phase and `nextToken`, as long as the partial poll is
//! younger than [`STALE_INTERVALS`] intervals; the ledger then applies everything once, at the time
//! of the poll's first request. Other failures (AccessDenied, a broken paginator, ...) start over.
//! The poll's `timeout` does not count time spent waiting for the client-side rate limiter
//! ([`crate::aws::TokenBucket`]), up to one interval per attempt.

//!
//! The [`Scheduler`] owns one task per portal and reconciles them with a new set of plans
//! ([`Scheduler::apply`]): added portals start, removed ones stop and lose their series, and
//! portals that stay keep their ledger (counters continue) and take the new plan at once.
//! A panic inside a portal's task is caught by its supervisor ([`crate::supervise`]), logged,
//! counted in `workspacesweb_poller_panics_total`, and the portal restarts after a delay that
//! doubles with each consecutive panic, from its last good state: the state it writes to its
//! state file after each successful poll (with `--storage.path`), or the same kept in memory by
//! the supervisor (`checkpoint.rs`), so its counters continue either way.

mod backfill;
mod checkpoint;
mod listing;
mod metadata;
mod poller;
pub mod state;
mod vanished;

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use rand::Rng;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;
use tracing::{error, info};

use crate::aws::pagination::{PageGuard, PageStop};
use crate::aws::{self, ErrorLabel, PortalApi};
use crate::aws::{ApiCounters, ApiError, ClientKey, Clients};
use crate::ledger::LedgerSettings;
use crate::session::UnixMillis;
use crate::snapshot::Store;
use crate::storage::StateDir;
use crate::supervise::{Panicked, RESTART_DELAY, Restarts, supervise};
use crate::users::UserSettings;

use checkpoint::Checkpoint;
use poller::{Poller, TaskParts};
pub use vanished::MAX_FAILED_LOOKUPS;

/// Clock skew allowed between this host and the API when choosing the terminated-scan watermark.
pub const SKEW_MARGIN_MS: UnixMillis = 60_000;

/// State gauges are dropped after this many intervals without a successful poll.
pub const STALE_INTERVALS: u32 = 5;

/// Pages the monthly-active-users backfill reads per poll cycle (it resumes where it stopped).
pub const BACKFILL_PAGES_PER_CYCLE: u32 = 100;

/// How long before the month start the backfill reaches, to find sessions that started in the
/// previous month and ended in this one (longer than the longest session the service allows).
pub const BACKFILL_REACH_MS: UnixMillis = 24 * 3_600_000;

/// Benchmarks only (`examples/loadtest.rs --full-scan`): with `WORKSPACESWEB_BENCH_FULL_SCAN`
/// set, every poll lists all Terminated pages instead of stopping at the watermark, as the
/// scripts this exporter replaces do, so the cost of the incremental listing can be compared.
#[doc(hidden)]
pub fn full_scan() -> bool {
    static FULL_SCAN: std::sync::LazyLock<bool> =
        std::sync::LazyLock::new(|| std::env::var_os("WORKSPACESWEB_BENCH_FULL_SCAN").is_some());
    *FULL_SCAN
}

/// Everything the scheduler needs to poll one portal.
#[derive(Debug, Clone, PartialEq)]
pub struct PortalPlan {
    /// Portal id.
    pub portal_id: String,
    /// Static labels (sorted by name).
    pub labels: Vec<(String, String)>,
    /// Which SDK client to use.
    pub client: ClientKey,
    /// Poll interval.
    pub interval: Duration,
    /// Bound on one poll.
    pub timeout: Duration,
    /// `maxResults` of each page.
    pub page_size: u32,
    /// Pages after which a listing gives up.
    pub max_pages: u32,
    /// Histogram buckets of session durations (seconds).
    pub duration_buckets: Vec<f64>,
    /// Schema of the native duration buckets.
    pub native_schema: i8,
    /// Per-user series, when enabled.
    pub per_user: Option<UserSettings>,
    /// Portal ARN for `GetPortal`, when known from config or discovery (never invented from the id).
    pub arn: Option<String>,
    /// How often portal metadata is refreshed with `GetPortal`.
    pub metadata_refresh: Duration,
}

impl PortalPlan {
    /// `maxResults` of every listing.
    pub fn max_results(&self) -> i32 {
        i32::try_from(self.page_size).unwrap_or(i32::MAX)
    }

    /// The settings of this portal's ledger: its histogram buckets, and how long a user without
    /// a session keeps its aggregates (its per-user series' `idle_ttl`; without per-user series,
    /// nothing reads them: they go at once).
    pub fn ledger_settings(&self) -> LedgerSettings {
        LedgerSettings {
            duration_buckets: self.duration_buckets.clone(),
            idle_user_ttl_ms: self.per_user.as_ref().map_or(0, |u| u.idle_ttl_ms),
            native_schema: self.native_schema,
        }
    }
}

/// Where a poll's Terminated scan stopped. Its pages are the first pages of the backfill's scan
/// (same query, newest first, from the top).
#[derive(Debug)]
struct ScanEnd {
    /// Token of the page after the last one read (`None`: the listing ended).
    rest: Option<String>,
    /// Pages and tokens read.
    guard: PageGuard,
    /// Oldest `startTime` among the pages read.
    oldest_ms: Option<UnixMillis>,
}

/// Why a poll failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PollError {
    /// An API call failed (after the SDK's retries).
    #[error("{0}")]
    Api(#[from] ApiError),
    /// A listing did not terminate properly (repeated token, too many pages).
    #[error("{operation} pagination stopped: {reason}")]
    Pagination {
        /// Operation whose listing stopped.
        operation: &'static str,
        /// What went wrong.
        reason: String,
    },
    /// The poll ran out of time.
    #[error("poll timed out after {0:?} during {1}")]
    Timeout(Duration, &'static str),
}

impl PollError {
    /// The operation that failed.
    pub fn operation(&self) -> &'static str {
        match self {
            PollError::Api(e) => e.operation,
            PollError::Pagination { operation, .. } => operation,
            PollError::Timeout(_, op) => op,
        }
    }

    /// A listing stopped by the page guard (`during`: where, for the message), counted in
    /// `api`'s errors of `ListSessions`.
    pub fn pagination(api: &PortalApi, stop: &PageStop, during: &str) -> Self {
        api.counters().error(aws::LIST_SESSIONS, ErrorLabel::Other);
        PollError::Pagination {
            operation: aws::LIST_SESSIONS,
            reason: format!("{stop}{during}"),
        }
    }

    /// What went wrong, without the operation and label (the service's message, or the cause).
    pub fn message(&self) -> String {
        match self {
            PollError::Api(e) => e.message.clone(),
            PollError::Pagination { reason, .. } => format!("pagination stopped: {reason}"),
            PollError::Timeout(d, _) => format!("the poll timed out after {d:?}"),
        }
    }

    /// The `error` label value of this failure.
    pub fn label(&self) -> ErrorLabel {
        match self {
            PollError::Api(e) => e.code,
            PollError::Pagination { .. } => ErrorLabel::Other,
            PollError::Timeout(..) => ErrorLabel::Timeout,
        }
    }
}

/// What [`Scheduler::apply`] changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    /// Portals started.
    pub added: Vec<String>,
    /// Portals whose plan changed.
    pub updated: Vec<String>,
    /// Portals stopped (their series are gone).
    pub removed: Vec<String>,
}

/// One running portal task.
#[derive(Debug)]
struct Task {
    plan: watch::Sender<PortalPlan>,
    stop: watch::Sender<bool>,
    handle: JoinHandle<()>,
}

/// The running portal tasks, reconciled with plans on start, reload and discovery.
#[derive(Debug)]
pub struct Scheduler {
    clients: Clients,
    store: Arc<Store>,
    limit: Limit,
    tasks: BTreeMap<String, Task>,
    storage: Option<Arc<StateDir>>,
    /// Bumped by each configuration reload (see [`Scheduler::config_reloaded`]).
    reloads: watch::Sender<u64>,
}

impl Scheduler {
    /// A scheduler with no portals yet.
    pub fn new(clients: Clients, store: Arc<Store>, concurrency: usize) -> Self {
        Scheduler {
            clients,
            store,
            limit: Limit::new(concurrency),
            tasks: BTreeMap::new(),
            storage: None,
            reloads: watch::Sender::new(0),
        }
    }

    /// Tells every portal that the configuration was reloaded: what a refusal made them give up
    /// until the next refresh (`GetPortal` after AccessDenied) is asked again at once, so that an
    /// operator who fixed a policy sees it work after a reload.
    pub fn config_reloaded(&self) {
        self.reloads.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Keeps every portal's accounting state in `storage` (`--storage.path`): portals started
    /// from now on resume from their state file and write it after each successful poll.
    pub fn with_storage(mut self, storage: Option<Arc<StateDir>>) -> Self {
        if let Some(dir) = &storage {
            self.store
                .status()
                .set_state_write_errors(dir.write_errors());
        }
        self.storage = storage;
        self
    }

    /// The state directory, if any.
    pub fn storage(&self) -> Option<&Arc<StateDir>> {
        self.storage.as_ref()
    }

    /// A scheduler running `plans`.
    pub async fn start(
        plans: Vec<PortalPlan>,
        clients: &Clients,
        store: Arc<Store>,
        concurrency: usize,
    ) -> Self {
        let mut s = Scheduler::new(clients.clone(), store, concurrency);
        s.apply(plans).await;
        s
    }

    /// Changes how many portals are polled at once. A lower limit takes effect as polls in
    /// flight finish: their permits are retired instead of going back to the pool.
    pub fn set_concurrency(&mut self, concurrency: usize) {
        self.limit.set(concurrency);
    }

    /// Ids of the portals being polled.
    pub fn portal_ids(&self) -> Vec<String> {
        self.tasks.keys().cloned().collect()
    }

    /// The plans of the portals being polled.
    pub fn plans(&self) -> Vec<PortalPlan> {
        self.tasks
            .values()
            .map(|t| t.plan.borrow().clone())
            .collect()
    }

    /// Reconciles the running portals with `plans` (one per portal id; later duplicates are ignored).
    pub async fn apply(&mut self, plans: Vec<PortalPlan>) -> Changes {
        let mut wanted: BTreeMap<String, PortalPlan> = BTreeMap::new();
        for p in plans {
            wanted.entry(p.portal_id.clone()).or_insert(p);
        }
        let mut changes = Changes::default();
        let gone: Vec<String> = self
            .tasks
            .keys()
            .filter(|id| !wanted.contains_key(*id))
            .cloned()
            .collect();
        for id in gone {
            if let Some(task) = self.tasks.remove(&id) {
                let _ = task.stop.send(true);
                let _ = task.handle.await;
            }
            self.store.remove(&id);
            changes.removed.push(id);
        }
        self.store.set_owned(wanted.keys().cloned());
        for (id, plan) in wanted {
            match self.tasks.get(&id) {
                Some(task) => {
                    if *task.plan.borrow() != plan {
                        let _ = task.plan.send(plan);
                        changes.updated.push(id);
                    }
                }
                None => {
                    let task = self.spawn(plan);
                    self.tasks.insert(id.clone(), task);
                    changes.added.push(id);
                }
            }
        }
        if !(changes.added.is_empty() && changes.updated.is_empty() && changes.removed.is_empty()) {
            info!(
                added = changes.added.len(),
                updated = changes.updated.len(),
                removed = changes.removed.len(),
                portals = self.tasks.len(),
                "portals reconciled"
            );
        }
        changes
    }

    fn spawn(&self, plan: PortalPlan) -> Task {
        let (plan_tx, plan_rx) = watch::channel(plan.clone());
        let (stop_tx, stop_rx) = watch::channel(false);
        let counters = Arc::new(ApiCounters::default());
        let panics = Arc::new(AtomicU64::new(0));
        let checkpoint = Checkpoint::default();
        let clients = self.clients.clone();
        let store = self.store.clone();
        let permits = self.limit.permits.clone();
        let storage = self.storage.clone();
        let reloads = self.reloads.subscribe();
        let restarts = Restarts {
            first: RESTART_DELAY,
            stop: Some(stop_rx.clone()),
        };
        let (portal_id, counted) = (plan.portal_id.clone(), panics.clone());
        let on_panic = move |p: &Panicked| {
            let n = counted.fetch_add(1, Ordering::Relaxed) + 1;
            error!(portal_id = %portal_id, panics = n, panic = %p.message, restart_in = ?p.restart_in, "portal task panicked; restarting it from its last successful poll");
        };
        let make = move || {
            let parts = TaskParts {
                plan_rx: plan_rx.clone(),
                reloads: reloads.clone(),
                panics: panics.load(Ordering::Relaxed),
                storage: storage.clone(),
                checkpoint: checkpoint.clone(),
            };
            let stop_rx = stop_rx.clone();
            let clients = clients.clone();
            let store = store.clone();
            let permits = permits.clone();
            let counters = counters.clone();
            async move {
                let plan = parts.plan_rx.borrow().clone();
                // Both boxed: inline, building a client (config loading, credentials) and the
                // poller would each reserve their largest state in this task for its whole life.
                let api =
                    Box::pin(clients.portal_api(&plan.client, &plan.portal_id, counters)).await;
                let poller = Box::pin(Poller::new(plan, clients, api, store, parts)).await;
                Box::pin(poller.run(permits, stop_rx)).await;
            }
        };
        let handle = tokio::spawn(supervise(restarts, make, on_panic));
        Task {
            plan: plan_tx,
            stop: stop_tx,
            handle,
        }
    }

    /// Stops every task (an in-flight poll is abandoned) and waits for them.
    pub async fn shutdown(self) {
        for task in self.tasks.values() {
            let _ = task.stop.send(true);
        }
        for (_, task) in self.tasks {
            let _ = task.handle.await;
        }
    }
}

/// The concurrency limit: a semaphore of `target` permits (one per poll in flight) whose size can
/// be lowered while permits are held.
///
/// `Semaphore::forget_permits` only forgets permits that are free at that moment; when polls hold
/// them all, lowering the limit would change nothing. So the permits that could not be forgotten
/// become a debt, and a retirer task takes them as they come back (it waits in the semaphore's
/// queue: permits released go to it, not to polls queued after it) and forgets them. Invariant:
/// the semaphore's permits (free, held, or being gathered by the retirer) = `target` + debt.
#[derive(Debug)]
struct Limit {
    permits: Arc<Semaphore>,
    target: usize,
    /// Permits still to retire as they come back.
    debt: Arc<AtomicUsize>,
    retirer: Option<JoinHandle<()>>,
}

impl Limit {
    fn new(concurrency: usize) -> Self {
        let target = concurrency.max(1);
        Limit {
            permits: Arc::new(Semaphore::new(target)),
            target,
            debt: Arc::new(AtomicUsize::new(0)),
            retirer: None,
        }
    }

    /// Sets the limit to `concurrency` (at least 1); call from within the runtime.
    fn set(&mut self, concurrency: usize) {
        let target = concurrency.max(1);
        // A retirer waiting for more permits than are now owed would hold them back: stop it
        // (permits it gathered go back to the pool) and start one for the new debt.
        if let Some(retirer) = self.retirer.take() {
            retirer.abort();
        }
        if target > self.target {
            let up = target - self.target;
            let cancelled = take_debt(&self.debt, up);
            self.permits.add_permits(up - cancelled);
        } else if target < self.target {
            let down = self.target - target;
            let forgotten = self.permits.forget_permits(down);
            self.debt.fetch_add(down - forgotten, Ordering::AcqRel);
        }
        self.target = target;
        if self.debt.load(Ordering::Acquire) > 0 {
            self.retirer = Some(tokio::spawn(retire(
                self.permits.clone(),
                self.debt.clone(),
            )));
        }
    }

    /// Waits until the debt is paid (tests only: the permits owed must come back).
    #[cfg(test)]
    async fn settled(&mut self) {
        if let Some(retirer) = self.retirer.take() {
            let _ = retirer.await;
        }
    }
}

impl Drop for Limit {
    fn drop(&mut self) {
        if let Some(retirer) = self.retirer.take() {
            retirer.abort();
        }
    }
}

/// Takes up to `at_most` from `debt`; returns how much it took.
fn take_debt(debt: &AtomicUsize, at_most: usize) -> usize {
    let mut taken = 0;
    let _ = debt.fetch_update(Ordering::AcqRel, Ordering::Acquire, |d| {
        taken = d.min(at_most);
        Some(d - taken)
    });
    taken
}

/// Forgets permits of `permits` as they come back until `debt` is paid.
async fn retire(permits: Arc<Semaphore>, debt: Arc<AtomicUsize>) {
    loop {
        let owed = debt.load(Ordering::Acquire);
        if owed == 0 {
            return;
        }
        let want = u32::try_from(owed).unwrap_or(u32::MAX);
        let Ok(gathered) = permits.acquire_many(want).await else {
            return;
        };
        // The debt may have shrunk meanwhile (a higher limit cancelled part of it).
        let taken = take_debt(&debt, want as usize);
        gathered.forget();
        permits.add_permits(want as usize - taken);
    }
}

/// The task was told to stop while a step was in flight.
struct Stopped;

/// Runs `step` unless the task is told to stop first.
async fn unless_stopped<T>(
    stop: &mut watch::Receiver<bool>,
    step: impl Future<Output = T>,
) -> Result<T, Stopped> {
    tokio::select! {
        r = step => Ok(r),
        _ = stop.changed() => Err(Stopped),
    }
}

/// `base` scaled by a uniform factor in [1 - spread, 1 + spread] (spread 1.0: [0, 2·base]).
pub(crate) fn jitter(base: Duration, spread: f64) -> Duration {
    let f = rand::rng().random_range((1.0 - spread).max(0.0)..=(1.0 + spread));
    base.mul_f64(f)
}

/// Longest wait between two polls of a failing portal (unless its interval is longer).
pub const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// Delay before the next poll after `failures` consecutive failures: exponential with full jitter
/// (a uniform draw up to `interval * 2^(failures-1)`, capped), never shorter than the interval.
pub(crate) fn backoff(interval: Duration, failures: u32) -> Duration {
    let cap = MAX_BACKOFF.max(interval);
    let exp = interval
        .checked_mul(1u32 << failures.saturating_sub(1).min(20))
        .unwrap_or(cap)
        .min(cap);
    let draw = exp.mul_f64(rand::rng().random_range(0.0..=1.0));
    draw.max(interval)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A panic mid-poll (the test hook fires between a poll's listing and its ledger) restarts
    /// the task from its last successful poll, without `--storage.path`: the counters continue
    /// where they were, and what happens after the restart is counted once. Before, the task
    /// restarted with a fresh ledger: the counters started again from 0.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_panic_mid_poll_restarts_the_task_with_its_counters() {
        use workspacesweb_sim::{PortalSpec, SimConfig, SimSession, Simulator};
        let id = "cccccccc-0000-4000-8000-000000000001";
        let now = crate::clock::now_ms();
        let sessions = (0..3)
            .map(|i| SimSession::new(SimSession::id_for(i), "base", now - 60_000 * (i as i64 + 1)))
            .collect();
        let sim = Simulator::new(SimConfig::new(5).with_portal(PortalSpec::scripted(id, sessions)));
        let running = sim
            .start(std::net::SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .expect("simulator listens");
        let clients = Clients::with_static_credentials("us-east-1", &running.endpoint_url()).await;
        let store = Arc::new(Store::new());
        let plan = PortalPlan {
            portal_id: id.to_string(),
            labels: Vec::new(),
            client: ClientKey {
                region: Some("us-east-1".into()),
                ..Default::default()
            },
            interval: Duration::from_millis(300),
            timeout: Duration::from_millis(250),
            page_size: 100,
            max_pages: 100,
            duration_buckets: vec![60.0, 3600.0],
            native_schema: 3,
            per_user: None,
            arn: None,
            metadata_refresh: Duration::from_secs(3600),
        };
        let sched = Scheduler::start(vec![plan], &clients, store.clone(), 1).await;
        let totals = |p: &crate::snapshot::PortalSnapshot| p.totals.clone().unwrap_or_default();
        let wait = |pred: Box<dyn Fn(&crate::snapshot::PortalSnapshot) -> bool + Send>| {
            let store = store.clone();
            async move {
                let found = tokio::time::timeout(
                    Duration::from_secs(60),
                    store.wait_until(|ps| ps.iter().any(|p| p.portal_id == id && pred(p))),
                )
                .await;
                found.unwrap_or_else(|_| panic!("never reached: {:?}", store.portal(id)));
                store.portal(id).expect("published")
            }
        };
        wait(Box::new(|p| p.up)).await;
        // Two sessions start after T0, one of the baseline ends: counted once each.
        let after_t0 = crate::clock::now_ms();
        for i in 10..12 {
            sim.add_session(id, SimSession::new(SimSession::id_for(i), "new", after_t0))
                .expect("portal");
        }
        sim.end_session(id, &SimSession::id_for(0), after_t0)
            .expect("session");
        let before = wait(Box::new(move |p| {
            let t = totals(p);
            t.started == 2 && t.terminated == 1
        }))
        .await;
        crate::supervise::panic_hook::arm(id);
        // Restarted (the first restart waits 1 s), and the counters are there at once.
        let restarted = wait(Box::new(|p| p.panics == 1)).await;
        assert_eq!(totals(&restarted).started, 2, "{restarted:?}");
        assert_eq!(totals(&restarted).terminated, 1);
        // The next polls go on counting from there: one more start, one more end.
        let later = crate::clock::now_ms();
        sim.add_session(id, SimSession::new(SimSession::id_for(12), "new", later))
            .expect("portal");
        sim.end_session(id, &SimSession::id_for(10), later)
            .expect("session");
        let after = wait(Box::new(move |p| {
            p.up && totals(p).started == 3 && totals(p).terminated == 2
        }))
        .await;
        sched.shutdown().await;
        assert_eq!(after.panics, 1);
        assert!(totals(&after).session_seconds >= totals(&before).session_seconds);
        assert_eq!(
            totals(&after).incomplete,
            0,
            "nothing settled without its record"
        );
    }

    /// Lowering the limit while every permit is held: the permits are retired as they come back.
    #[tokio::test]
    async fn a_lower_limit_retires_permits_held_when_it_is_set() {
        let mut limit = Limit::new(4);
        let permits = limit.permits.clone();
        let mut held: Vec<_> = (0..4)
            .map(|_| permits.clone().try_acquire_owned().expect("a free permit"))
            .collect();
        limit.set(1);
        // Three polls finish: their permits are retired, none goes back to the pool.
        held.truncate(1);
        tokio::time::timeout(Duration::from_secs(30), limit.settled())
            .await
            .expect("hang guard: the returned permits were not retired");
        assert_eq!(
            permits.available_permits(),
            0,
            "one poll still holds the one permit"
        );
        assert!(permits.clone().try_acquire_owned().is_err());
        // The last one finishes: one permit, as configured.
        held.clear();
        assert_eq!(permits.available_permits(), 1);
        assert!(permits.clone().try_acquire_many_owned(2).is_err());
        let one = permits.clone().try_acquire_owned().expect("the one permit");
        drop(one);
        assert_eq!(permits.available_permits(), 1);
    }

    /// Raising the limit again before the permits came back cancels what is still owed.
    #[tokio::test]
    async fn raising_the_limit_again_cancels_the_retirement_still_owed() {
        let mut limit = Limit::new(4);
        let permits = limit.permits.clone();
        let held: Vec<_> = (0..4)
            .map(|_| permits.clone().try_acquire_owned().expect("a free permit"))
            .collect();
        limit.set(1);
        limit.set(3);
        drop(held);
        tokio::time::timeout(Duration::from_secs(30), limit.settled())
            .await
            .expect("hang guard");
        assert_eq!(permits.available_permits(), 3);
        limit.set(6);
        assert_eq!(permits.available_permits(), 6);
        limit.set(2);
        assert_eq!(
            permits.available_permits(),
            2,
            "free permits are forgotten at once"
        );
    }

    #[test]
    fn backoff_grows_with_failures_within_bounds() {
        let i = Duration::from_secs(10);
        for _ in 0..200 {
            assert_eq!(backoff(i, 1), i);
            let b3 = backoff(i, 3);
            assert!(b3 >= i && b3 <= i * 4, "{b3:?}");
            let b30 = backoff(i, 30);
            assert!(b30 >= i && b30 <= MAX_BACKOFF, "{b30:?}");
        }
        let long = Duration::from_secs(3600);
        assert_eq!(
            backoff(long, 9),
            long,
            "never shorter than the interval, even above the cap"
        );
        // Full jitter: draws spread over the range instead of clustering at the top.
        let draws: Vec<Duration> = (0..400).map(|_| backoff(i, 5)).collect();
        assert!(draws.iter().any(|d| *d < i * 8) && draws.iter().any(|d| *d > i * 12));
    }

    #[test]
    fn jitter_stays_within_its_spread() {
        for _ in 0..1000 {
            let d = jitter(Duration::from_secs(100), 0.05);
            assert!(
                d >= Duration::from_secs(95) && d <= Duration::from_secs(105),
                "{d:?}"
            );
        }
    }
}
