//! The scheduler: one task per portal, a jittered interval, a timeout per poll, a concurrency limit,
//! and the staleness rule. Each successful poll feeds the portal's [`Ledger`] and publishes a snapshot.
//!
//! # One poll (incremental listing)
//!
//! 1. List every `Active` session (all pages).
//! 2. List `Terminated` sessions sorted `StartTimeDescending`, stopping at the first page whose oldest
//!    session started before the *watermark*: the start of the previous successful poll minus
//!    [`SKEW_MARGIN_MS`] (on the first poll, T0 minus the margin).
//! 3. Sessions the ledger still has open (active at an earlier poll, absent from this poll's active
//!    listing) that step 2 did not return are fetched one by one with `GetSession`.
//!
//! Why nothing is missed: a session that terminated since the previous poll either started after the
//! previous poll began (then its start is above the watermark and step 2 returns it, the margin
//! absorbing clock skew between this host and the API), or started before it; in that case it was
//! running while the previous poll listed active sessions, so it is open in the ledger and step 3
//! resolves it. Why nothing is double counted: the ledger deduplicates by session id.
//! Steady-state cost: ceil(active/page) + ceil(new terminated/page) + 1 `ListSessions` calls, plus
//! one `GetSession` per vanished session that started before the watermark.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::Rng;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use crate::aws::{self, ApiError, ClientKey, Clients, ListQuery, PortalApi, SortOrder};
use crate::ledger::{Ledger, LedgerSettings, month_bounds};
use crate::session::{SessionRecord, SessionStatus, UnixMillis, now_ms};
use crate::snapshot::{PortalSnapshot, Store};
use crate::users::{UserLabels, UserSettings};

/// Clock skew allowed between this host and the API when choosing the terminated-scan watermark.
pub const SKEW_MARGIN_MS: UnixMillis = 60_000;

/// State gauges are dropped after this many intervals without a successful poll.
pub const STALE_INTERVALS: u32 = 5;

/// Pages the monthly-active-users backfill reads per poll cycle (it resumes where it stopped).
pub const BACKFILL_PAGES_PER_CYCLE: u32 = 100;

/// How long before the month start the backfill reaches, to find sessions that started in the
/// previous month and ended in this one (longer than the longest session the service allows).
pub const BACKFILL_REACH_MS: UnixMillis = 24 * 3_600_000;

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
    /// Per-user series, when enabled.
    pub per_user: Option<UserSettings>,
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

    /// The `error` label value of this failure.
    pub fn label(&self) -> &str {
        match self {
            PollError::Api(e) => &e.code,
            PollError::Pagination { .. } => "other",
            PollError::Timeout(..) => "timeout",
        }
    }
}

/// Running portal tasks and the means to stop them.
#[derive(Debug)]
pub struct Scheduler {
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Scheduler {
    /// Declares the portals in `store` and starts one task per portal.
    pub async fn start(
        plans: Vec<PortalPlan>,
        clients: &Clients,
        store: Arc<Store>,
        concurrency: usize,
    ) -> Self {
        store.set_owned(plans.iter().map(|p| p.portal_id.clone()));
        let (stop, stop_rx) = watch::channel(false);
        let permits = Arc::new(Semaphore::new(concurrency.max(1)));
        let mut tasks = Vec::with_capacity(plans.len());
        for plan in plans {
            let counters = Arc::new(aws::ApiCounters::default());
            let api = clients
                .portal_api(&plan.client, &plan.portal_id, counters)
                .await;
            let poller = Poller::new(plan, api, store.clone());
            tasks.push(tokio::spawn(poller.run(permits.clone(), stop_rx.clone())));
        }
        Scheduler { stop, tasks }
    }

    /// Stops every task (an in-flight poll is abandoned) and waits for them.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

/// One portal's poll loop and state.
struct Poller {
    plan: PortalPlan,
    api: PortalApi,
    store: Arc<Store>,
    ledger: Option<Ledger>,
    /// Start of the previous successful poll (watermark base).
    last_start_ms: Option<UnixMillis>,
    last_success: Option<Instant>,
    /// Operation in flight, for attributing a timeout.
    current_op: &'static str,
    users: Option<UserLabels>,
    backfill: Backfill,
    snapshot: PortalSnapshot,
}

/// Progress of the monthly-active-users backfill: a descending scan of Terminated sessions from
/// the newest down to the month start minus [`BACKFILL_REACH_MS`], a few pages per poll cycle.
#[derive(Debug, Default)]
struct Backfill {
    next_token: Option<String>,
    tokens: HashSet<String>,
    /// Pages read by the current scan (bounded by `max_pages`, like any listing).
    pages: u32,
    done: bool,
}

impl Poller {
    fn new(plan: PortalPlan, api: PortalApi, store: Arc<Store>) -> Self {
        let snapshot = PortalSnapshot {
            portal_id: plan.portal_id.clone(),
            labels: plan.labels.clone(),
            ..Default::default()
        };
        store.publish(snapshot.clone());
        Poller {
            api,
            store,
            ledger: None,
            last_start_ms: None,
            last_success: None,
            current_op: aws::LIST_SESSIONS,
            users: plan.per_user.clone().map(UserLabels::new),
            backfill: Backfill::default(),
            snapshot,
            plan,
        }
    }

    async fn run(mut self, permits: Arc<Semaphore>, mut stop: watch::Receiver<bool>) {
        // First poll soon (readiness waits for it), spread a little so portals don't start in lockstep.
        let first = self.plan.interval.min(Duration::from_secs(10)) / 10;
        let mut next = tokio::time::Instant::now() + jitter(first, 1.0);
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(next) => {}
                _ = stop.changed() => return,
            }
            let scheduled = next;
            let Ok(permit) = permits.clone().acquire_owned().await else {
                return;
            };
            let began = Instant::now();
            let start_ms = now_ms();
            let result = tokio::select! {
                r = tokio::time::timeout(self.plan.timeout, self.poll(start_ms)) => {
                    match r {
                        Ok(result) => result,
                        Err(_elapsed) => Err(PollError::Timeout(self.plan.timeout, self.current_op)),
                    }
                }
                _ = stop.changed() => return,
            };
            let took = began.elapsed();
            if result.is_ok() && !self.backfill.done {
                tokio::select! {
                    r = tokio::time::timeout(self.plan.timeout, self.backfill_step(start_ms)) => {
                        if let Err(e) = r.unwrap_or(Err(PollError::Timeout(self.plan.timeout, aws::LIST_SESSIONS))) {
                            warn!(portal_id = %self.plan.portal_id, operation = e.operation(), error = e.label(), message = %e, "monthly users backfill step failed; resuming next cycle");
                        }
                    }
                    _ = stop.changed() => return,
                }
            }
            drop(permit);
            self.finish(result, start_ms, took);
            // Drift-free schedule with ±5% jitter; an overrun poll starts the next one at once.
            next = (scheduled + jitter(self.plan.interval, 0.05)).max(tokio::time::Instant::now());
        }
    }

    /// One complete poll; the ledger is only touched after all I/O succeeded.
    async fn poll(&mut self, start_ms: UnixMillis) -> Result<(), PollError> {
        let page_size = i32::try_from(self.plan.page_size).unwrap_or(i32::MAX);
        self.current_op = aws::LIST_SESSIONS;
        let active = self
            .list(
                ListQuery {
                    status: Some(SessionStatus::Active),
                    max_results: page_size,
                    ..Default::default()
                },
                None,
            )
            .await?;
        let watermark = self.last_start_ms.unwrap_or(start_ms) - SKEW_MARGIN_MS;
        let mut other = self
            .list(
                ListQuery {
                    status: Some(SessionStatus::Terminated),
                    sort: Some(SortOrder::StartTimeDescending),
                    max_results: page_size,
                    ..Default::default()
                },
                Some(watermark),
            )
            .await?;
        let seen: HashSet<&str> = active
            .iter()
            .chain(other.iter())
            .filter_map(|r| r.id.as_deref())
            .collect();
        let to_resolve: Vec<String> = self
            .ledger
            .as_ref()
            .map(|l| l.pending(&active))
            .unwrap_or_default()
            .into_iter()
            .map(|p| p.id)
            .filter(|id| !seen.contains(id.as_str()))
            .collect();
        let mut gone = Vec::new();
        self.current_op = aws::GET_SESSION;
        for id in to_resolve {
            match self.api.get_session(&id).await? {
                Some(record) => other.push(record),
                None => gone.push(id),
            }
        }
        let ledger = self.ledger.get_or_insert_with(|| {
            Ledger::new(
                LedgerSettings {
                    duration_buckets: self.plan.duration_buckets.clone(),
                },
                start_ms,
            )
        });
        for id in &gone {
            ledger.forget(id, start_ms);
        }
        let deltas = ledger.apply_poll(start_ms, &active, &other);
        // The next scan stops at this poll's start minus the margin: nothing below can be new.
        // Not before the backfill is complete: it may still bring sessions that ended after T0.
        if self.backfill.done {
            ledger.prune(start_ms - SKEW_MARGIN_MS);
        }
        if let Some(users) = &mut self.users {
            self.snapshot.users = users.update(ledger, start_ms);
        }
        debug!(
            portal_id = %self.plan.portal_id,
            active = active.len(),
            terminated_seen = other.len(),
            started = deltas.started,
            terminated = deltas.terminated,
            "poll applied"
        );
        self.last_start_ms = Some(start_ms);
        Ok(())
    }

    /// Lists all pages of `query`; with `stop_below`, stops after the first page whose oldest start is
    /// below it (the listing must be sorted by descending start time).
    async fn list(
        &mut self,
        mut query: ListQuery,
        stop_below: Option<UnixMillis>,
    ) -> Result<Vec<SessionRecord>, PollError> {
        let mut out = Vec::new();
        let mut tokens = HashSet::new();
        for _ in 0..self.plan.max_pages {
            let page = self.api.list_sessions(&query).await?;
            let reached_watermark = stop_below.is_some_and(|w| {
                page.sessions
                    .iter()
                    .any(|s| s.start_ms.is_some_and(|start| start < w))
            });
            out.extend(page.sessions);
            match page.next_token {
                Some(token) if !token.is_empty() && !reached_watermark => {
                    if !tokens.insert(token.clone()) {
                        self.api.counters().error(aws::LIST_SESSIONS, "other");
                        return Err(PollError::Pagination {
                            operation: aws::LIST_SESSIONS,
                            reason: "the service repeated a nextToken".into(),
                        });
                    }
                    query.next_token = Some(token);
                }
                _ => return Ok(out),
            }
        }
        self.api.counters().error(aws::LIST_SESSIONS, "other");
        Err(PollError::Pagination {
            operation: aws::LIST_SESSIONS,
            reason: format!("more than max_pages={} pages", self.plan.max_pages),
        })
    }

    /// Reads the next pages of the backfill into the ledger (monthly active users only, unless a
    /// session ended after T0). Pages read before an error are kept; the scan resumes after them.
    async fn backfill_step(&mut self, at_ms: UnixMillis) -> Result<(), PollError> {
        let floor = month_bounds(at_ms).0 - BACKFILL_REACH_MS;
        let page_size = i32::try_from(self.plan.page_size).unwrap_or(i32::MAX);
        let mut records = Vec::new();
        let mut result = Ok(());
        for _ in 0..BACKFILL_PAGES_PER_CYCLE {
            let query = ListQuery {
                status: Some(SessionStatus::Terminated),
                sort: Some(SortOrder::StartTimeDescending),
                max_results: page_size,
                next_token: self.backfill.next_token.clone(),
                ..Default::default()
            };
            let page = match self.api.list_sessions(&query).await {
                Ok(p) => p,
                Err(e) => {
                    if e.code == "ValidationException" {
                        // An expired or rejected token: start the scan again (duplicates are harmless).
                        self.backfill = Backfill::default();
                    }
                    result = Err(e.into());
                    break;
                }
            };
            let below = page
                .sessions
                .iter()
                .any(|s| s.start_ms.is_some_and(|t| t < floor));
            records.extend(page.sessions);
            match page.next_token {
                Some(t) if !t.is_empty() && !below => {
                    self.backfill.pages = self.backfill.pages.saturating_add(1);
                    let reason = if !self.backfill.tokens.insert(t.clone()) {
                        Some(
                            "the service repeated a nextToken during the monthly users backfill"
                                .to_string(),
                        )
                    } else if self.backfill.pages >= self.plan.max_pages {
                        // A paginator that never ends would otherwise grow `tokens` forever.
                        Some(format!(
                            "more than max_pages={} pages during the monthly users backfill",
                            self.plan.max_pages
                        ))
                    } else {
                        None
                    };
                    if let Some(reason) = reason {
                        self.api.counters().error(aws::LIST_SESSIONS, "other");
                        result = Err(PollError::Pagination {
                            operation: aws::LIST_SESSIONS,
                            reason,
                        });
                        // Start the scan again next cycle.
                        self.backfill = Backfill::default();
                        break;
                    }
                    self.backfill.next_token = Some(t);
                }
                _ => {
                    self.backfill.done = true;
                    break;
                }
            }
        }
        if let Some(ledger) = &mut self.ledger {
            ledger.apply_records(at_ms, &records);
            if self.backfill.done {
                info!(portal_id = %self.plan.portal_id, monthly_active_users = ledger.monthly_active_users(), "monthly users backfill complete");
            }
        }
        result
    }

    /// Updates the snapshot after a poll and publishes it.
    fn finish(&mut self, result: Result<(), PollError>, start_ms: UnixMillis, took: Duration) {
        let portal_id = self.plan.portal_id.as_str();
        let snap = &mut self.snapshot;
        let was_up = snap.up || !snap.polled;
        snap.polled = true;
        snap.poll_duration_seconds = Some(took.as_secs_f64());
        snap.last_poll_unix = Some(now_ms() as f64 / 1000.0);
        match result {
            Ok(()) => {
                if !snap.up {
                    info!(portal_id, "poll succeeded");
                }
                snap.up = true;
                snap.last_error = None;
                snap.last_success_unix = Some(start_ms as f64 / 1000.0);
                self.last_success = Some(Instant::now());
                if let Some(ledger) = &self.ledger {
                    snap.active = Some(ledger.active_summary());
                    snap.totals = Some(ledger.totals().clone());
                    if self.backfill.done {
                        snap.monthly_active_users = Some(ledger.monthly_active_users());
                    }
                }
            }
            Err(err) => {
                if let PollError::Timeout(..) = err {
                    self.api.counters().error(err.operation(), "timeout");
                }
                if was_up {
                    warn!(portal_id, operation = err.operation(), error = err.label(), message = %err, "poll failed");
                } else {
                    debug!(portal_id, operation = err.operation(), error = err.label(), message = %err, "poll failed again");
                }
                snap.up = false;
                snap.last_error = Some(err.to_string());
                let stale_after = self.plan.interval * STALE_INTERVALS;
                if self.last_success.is_none_or(|t| t.elapsed() >= stale_after) {
                    snap.active = None;
                }
            }
        }
        let (requests, errors) = self.api.counters().snapshot();
        snap.api_requests = requests;
        snap.api_errors = errors;
        self.store.publish(snap.clone());
    }
}

/// `base` scaled by a uniform factor in [1 - spread, 1 + spread] (spread 1.0: [0, 2·base]).
fn jitter(base: Duration, spread: f64) -> Duration {
    let f = rand::rng().random_range((1.0 - spread).max(0.0)..=(1.0 + spread));
    base.mul_f64(f)
}
