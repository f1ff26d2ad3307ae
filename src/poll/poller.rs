//! One portal's poll loop: the incremental listing (see the module docs of [`crate::poll`]), the
//! monthly-users backfill, portal metadata, plan updates, and the snapshot it publishes.

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tracing::{debug, info, warn};

use super::{
    BACKFILL_PAGES_PER_CYCLE, BACKFILL_REACH_MS, PollError, PortalPlan, SKEW_MARGIN_MS,
    STALE_INTERVALS, backoff, jitter,
};
use crate::aws::ErrorLabel;
use crate::aws::pagination::{PageGuard, PageStop};
use crate::aws::{
    self, Clients, ListQuery, PortalApi, PortalInfo, SortOrder, portal_id_of_arn, region_of_arn,
};
use crate::clock::now_ms;
use crate::ledger::{Ledger, LedgerSettings, Pending, month_bounds};
use crate::session::{SessionRecord, SessionStatus, UnixMillis};
use crate::snapshot::{PortalMeta, PortalSnapshot, StateStatus, Store};
use crate::storage::StateDir;
use crate::users::UserLabels;

use super::state::{self, LabelFingerprint, PortalState, STATE_VERSION, Unusable};
use super::vanished::{self, ScanSoFar};

/// One portal's poll loop and state.
pub(super) struct Poller {
    plan: PortalPlan,
    plan_rx: watch::Receiver<PortalPlan>,
    clients: Clients,
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
    /// Portal ARN: from the plan, or learned from the `portalArn` of the portal's own sessions.
    arn: Option<String>,
    info: Option<PortalInfo>,
    metadata_due: Option<Instant>,
    metadata_denied_logged: bool,
    /// Consecutive failed polls (drives the backoff).
    failures: u32,
    /// A poll cut short by throttling, a server error or the timeout, resumed by the next attempt.
    progress: Option<Progress>,
    /// Pages and sessions fetched by the current attempt (a failed attempt that fetched some made
    /// progress: the backoff does not grow).
    fetched: u64,
    snapshot: PortalSnapshot,
    /// Where the accounting state is kept across restarts (`--storage.path`).
    storage: Option<Arc<StateDir>>,
    /// Whether the last state write failed (a warning is logged on the first failure only).
    state_write_failing: bool,
}

/// Where a poll is in its listing: what it fetched so far and the token of the current phase.
/// Kept across a failed attempt (see [`resumable`]) so the next one continues from there.
#[derive(Debug)]
struct Progress {
    /// When the poll's first request was sent: the ledger applies the whole poll at this time.
    start_ms: UnixMillis,
    began: Instant,
    phase: Phase,
    active: Vec<SessionRecord>,
    other: Vec<SessionRecord>,
    /// Token of the next page of the current listing.
    next_token: Option<String>,
    /// Pages and tokens of the current listing (bounded by `max_pages` across attempts).
    guard: PageGuard,
    /// Vanished sessions still to resolve: by more of the scan (phase [`Phase::Extend`]), then
    /// with `GetSession` (phase [`Phase::Resolve`]).
    to_resolve: Vec<Pending>,
    /// Sessions `GetSession` says no longer exist.
    gone: Vec<String>,
    /// Where the Terminated scan (with its extension) stopped: a backfill that has not begun
    /// continues from there instead of reading the same pages again.
    scan_end: Option<ScanEnd>,
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Active,
    Terminated,
    /// More of the Terminated scan, while cheaper than `GetSession` (see [`super::vanished`]).
    Extend,
    Resolve,
}

impl Progress {
    fn new(start_ms: UnixMillis) -> Self {
        Progress {
            start_ms,
            began: Instant::now(),
            phase: Phase::Active,
            active: Vec::new(),
            other: Vec::new(),
            next_token: None,
            guard: PageGuard::new(),
            to_resolve: Vec::new(),
            gone: Vec::new(),
            scan_end: None,
        }
    }
}

/// Whether a failed attempt keeps its progress for the next one: throttling, server errors,
/// timeouts and connection failures are transient; anything else (AccessDenied, a rejected token,
/// a broken paginator...) starts the next poll over.
fn resumable(err: &PollError) -> bool {
    err.label().is_transient()
}

/// Why [`Poller::wait_for_turn`] returned.
enum Wake {
    /// The poll is due.
    Due,
    /// Something else happened (a new plan, stale gauges dropped): wait again.
    Again,
    /// The task must stop.
    Stop,
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

/// Progress of the monthly-active-users backfill: a descending scan of Terminated sessions from
/// the newest down to the month start minus [`BACKFILL_REACH_MS`], a few pages per poll cycle.
#[derive(Debug, Default)]
struct Backfill {
    next_token: Option<String>,
    /// Pages and tokens of the current scan (bounded by `max_pages`, like any listing).
    guard: PageGuard,
    done: bool,
}

impl Backfill {
    /// Continues a backfill that has not begun from where a poll's Terminated scan stopped (its
    /// pages are in the ledger already), at `at_ms`; returns whether that completes it.
    fn continue_from(&mut self, scan: ScanEnd, at_ms: UnixMillis) -> bool {
        if self.done || self.next_token.is_some() || self.guard.pages() > 0 {
            return false;
        }
        self.guard = scan.guard;
        if scan.rest.is_none() || scan.oldest_ms.is_some_and(|t| t < backfill_floor(at_ms)) {
            self.done = true;
        } else {
            self.next_token = scan.rest;
        }
        self.done
    }
}

/// The oldest start time the backfill of the month of `at_ms` has to reach.
fn backfill_floor(at_ms: UnixMillis) -> UnixMillis {
    month_bounds(at_ms).0 - BACKFILL_REACH_MS
}

impl Poller {
    pub(super) async fn new(
        plan: PortalPlan,
        plan_rx: watch::Receiver<PortalPlan>,
        clients: Clients,
        api: PortalApi,
        store: Arc<Store>,
        panics: u64,
        storage: Option<Arc<StateDir>>,
    ) -> Self {
        let (requests, errors) = api.counters().snapshot();
        let snapshot = PortalSnapshot {
            portal_id: plan.portal_id.clone(),
            labels: plan.labels.clone(),
            panics,
            api_requests: requests,
            api_errors: errors,
            state: storage.as_ref().map(|_| StateStatus::default()),
            ..Default::default()
        };
        let mut poller = Poller {
            plan_rx,
            clients,
            api,
            store,
            ledger: None,
            last_start_ms: None,
            last_success: None,
            current_op: aws::LIST_SESSIONS,
            users: plan.per_user.clone().map(UserLabels::new),
            backfill: Backfill::default(),
            arn: plan.arn.clone(),
            info: None,
            metadata_due: None,
            metadata_denied_logged: false,
            failures: 0,
            progress: None,
            fetched: 0,
            snapshot,
            plan,
            storage,
            state_write_failing: false,
        };
        poller.restore().await;
        poller.store.publish(poller.snapshot.clone());
        poller
    }

    /// Resumes T0 and every counter from the portal's state file, when there is a usable one;
    /// sets an unusable one aside. The resumed counters appear with the first poll (see below).
    async fn restore(&mut self) {
        let Some(dir) = self.storage.clone() else {
            return;
        };
        let portal_id = self.plan.portal_id.clone();
        let read = {
            let (dir, id) = (dir.clone(), portal_id.clone());
            tokio::task::spawn_blocking(move || dir.read(&id)).await
        };
        let bytes = match read {
            Ok(Ok(Some(bytes))) => bytes,
            Ok(Ok(None)) => return,
            Ok(Err(e)) => {
                let reason = format!("cannot read: {e}");
                let (dir, id) = (dir.clone(), portal_id.clone());
                let _ = tokio::task::spawn_blocking(move || dir.set_aside(&id, &reason)).await;
                return;
            }
            Err(_) => return,
        };
        let settings = LedgerSettings {
            duration_buckets: self.plan.duration_buckets.clone(),
        };
        let max_age_ms = i64::try_from(dir.max_age().as_millis()).unwrap_or(i64::MAX);
        let resumed = state::decode(
            &bytes,
            &portal_id,
            &settings,
            self.plan.per_user.as_ref(),
            now_ms(),
            max_age_ms,
        );
        let r = match resumed {
            Ok(r) => r,
            Err(Unusable::Expired { age_s }) => {
                info!(portal_id = %portal_id, file = %dir.state_file(&portal_id).display(), age_s, "state file older than storage.max_age; the portal starts fresh");
                return;
            }
            Err(Unusable::Bad(reason)) => {
                let _ =
                    tokio::task::spawn_blocking(move || dir.set_aside(&portal_id, &reason)).await;
                return;
            }
        };
        let ledger = r.ledger;
        self.users = r.users;
        self.last_start_ms = Some(r.watermark_ms);
        self.backfill.done = r.backfill_done;
        // The counters are published by the first poll, not now: if the previous process failed
        // to write its last states, it published more than the file holds, and publishing the
        // file's values would show Prometheus a dip (a reset). The first poll re-observes
        // everything since the stored watermark, so its values are at least what any earlier
        // process published; a few seconds without the series cost Prometheus nothing.
        self.snapshot.state = Some(StateStatus {
            restored: true,
            last_write_unix: None,
        });
        info!(portal_id = %portal_id, t0_ms = ledger.t0_ms(), watermark_ms = r.watermark_ms, started = ledger.totals().started, terminated = ledger.totals().terminated, "resumed from the state file");
        self.ledger = Some(ledger);
    }

    /// Writes the portal's accounting state (after a successful poll, before its values are
    /// published). A failure is counted and logged; polling goes on.
    async fn save_state(&mut self, start_ms: UnixMillis) {
        let (Some(dir), Some(ledger)) = (self.storage.clone(), &self.ledger) else {
            return;
        };
        let portal_id = self.plan.portal_id.clone();
        // Serialized here, borrowing the ledger (no copy of its sessions); only the bytes go to
        // the blocking pool for the write and its fsyncs.
        let encoded = state::encode(&PortalState {
            version: STATE_VERSION,
            portal_id: portal_id.clone(),
            written_at_ms: now_ms(),
            t0_ms: ledger.t0_ms(),
            watermark_ms: start_ms,
            backfill_done: self.backfill.done,
            labels: self
                .plan
                .per_user
                .as_ref()
                .map(|u| LabelFingerprint::of(&u.mode)),
            ledger: ledger.view(),
            users: self.users.as_ref().map(UserLabels::view),
        });
        let result = match encoded {
            Ok(bytes) => {
                let dir = dir.clone();
                let id = portal_id.clone();
                tokio::task::spawn_blocking(move || dir.write(&id, &bytes))
                    .await
                    .unwrap_or_else(|e| Err(std::io::Error::other(e)))
            }
            Err(e) => Err(std::io::Error::other(e)),
        };
        match result {
            Ok(()) => {
                if self.state_write_failing {
                    info!(portal_id = %portal_id, "state file written again");
                }
                self.state_write_failing = false;
                let status = self.snapshot.state.get_or_insert_with(StateStatus::default);
                status.last_write_unix = Some(now_ms() as f64 / 1000.0);
            }
            Err(e) => {
                if self.state_write_failing {
                    debug!(portal_id = %portal_id, file = %dir.state_file(&portal_id).display(), error = %e, "state write failed again");
                } else {
                    warn!(portal_id = %portal_id, file = %dir.state_file(&portal_id).display(), error = %e, "state write failed; polling goes on, a restart would resume from the last state written");
                }
                self.state_write_failing = true;
            }
        }
        self.store.set_state_write_errors(dir.write_errors());
    }

    /// The portal's task: each poll in its turn, holding one of `permits`, until told to stop.
    pub(super) async fn run(mut self, permits: Arc<Semaphore>, mut stop: watch::Receiver<bool>) {
        // First poll soon (readiness waits for it), spread a little so portals don't start in lockstep.
        let first = self.plan.interval.min(Duration::from_secs(10)) / 10;
        let mut next = tokio::time::Instant::now() + jitter(first, 1.0);
        loop {
            match self.wait_for_turn(&mut next, &mut stop).await {
                Wake::Due => {}
                Wake::Again => continue,
                Wake::Stop => return,
            }
            let Ok(permit) = permits.clone().acquire_owned().await else {
                return;
            };
            match self.cycle(&permits, permit, next, &mut stop).await {
                Ok(due) => next = due,
                Err(Stopped) => return,
            }
        }
    }

    /// Waits for the poll due at `next`. Meanwhile, drops the state gauges when they go stale and
    /// takes new plans (a shorter interval brings `next` forward).
    async fn wait_for_turn(
        &mut self,
        next: &mut tokio::time::Instant,
        stop: &mut watch::Receiver<bool>,
    ) -> Wake {
        // The state gauges of a failing portal go 5 intervals after its last success, on a
        // timer: a backoff (or a service's Retry-After) may put the next attempt much later.
        let stale_at = self.stale_at();
        tokio::select! {
            _ = tokio::time::sleep_until(*next) => Wake::Due,
            _ = stop.changed() => Wake::Stop,
            _ = tokio::time::sleep_until(stale_at.unwrap_or(*next)), if stale_at.is_some() => {
                self.drop_stale_gauges();
                Wake::Again
            }
            changed = self.plan_rx.changed() => {
                if changed.is_err() {
                    return Wake::Stop;
                }
                let old_interval = self.plan.interval;
                Box::pin(self.update_plan()).await;
                if self.plan.interval < old_interval {
                    *next = (*next).min(tokio::time::Instant::now() + jitter(self.plan.interval, 0.05));
                }
                Wake::Again
            }
        }
    }

    /// One poll cycle holding a concurrency permit: the poll under its timeout, then after a
    /// success the backfill and metadata steps; the state write and the published snapshot come
    /// after the permit is released. Returns when the next poll is due.
    async fn cycle(
        &mut self,
        permits: &Arc<Semaphore>,
        mut permit: OwnedSemaphorePermit,
        scheduled: tokio::time::Instant,
        stop: &mut watch::Receiver<bool>,
    ) -> Result<tokio::time::Instant, Stopped> {
        let began = Instant::now();
        self.fetched = 0;
        let waited = self.api.limiter_wait_counter();
        let waited_before = waited.load(Ordering::Relaxed);
        let result = self.poll_with_timeout(stop).await?;
        let took = began.elapsed();
        let start_ms = self.poll_time(&result);
        let result = result.map(|_| ());
        if result.is_ok() {
            let paced = waited.load(Ordering::Relaxed) > waited_before;
            if !self.backfill.done && self.publish_before_backfill(paced) {
                // The rate limit makes the backfill step slow (the poll waited for it, others
                // wait for it, or other portals have yet to be polled once): the poll is saved
                // and published before the step, and the concurrency slot goes back to the line,
                // so that portals waiting for their first poll go before this step (and in the
                // rate limiter, before its pages). Saved and published again after it.
                self.update_user_series(start_ms);
                drop(permit);
                unless_stopped(stop, Box::pin(self.save_state(start_ms))).await?;
                self.finish(Ok(()), start_ms, took);
                permit = self.after_first_polls(permits, stop).await?;
            }
            self.after_success(start_ms, stop).await?;
        }
        drop(permit);
        if result.is_ok() {
            unless_stopped(stop, Box::pin(self.save_state(start_ms))).await?;
        }
        let failed = result.is_err();
        self.finish(result, start_ms, took);
        Ok(self.next_due(failed, scheduled))
    }

    /// Runs [`Self::poll`] under the plan's timeout. The timeout bounds the time spent on the
    /// API: time waiting for the client-side rate limiter pushes the deadline back by as much,
    /// but never past one interval (a listing that needs longer holds a concurrency slot no
    /// longer, and resumes).
    async fn poll_with_timeout(
        &mut self,
        stop: &mut watch::Receiver<bool>,
    ) -> Result<Result<UnixMillis, PollError>, Stopped> {
        let waited = self.api.limiter_wait_counter();
        let waited_before = waited.load(Ordering::Relaxed);
        let timeout = self.plan.timeout;
        let longest = self.plan.interval.max(timeout);
        let outcome = {
            // The step futures are boxed, here and below: inline, the largest of them would
            // be part of this task's state for its whole life, idle between polls included
            // (14 KB of 16 KB per portal; see BENCHMARKS.md, scale model).
            let mut poll = Box::pin(self.poll(now_ms()));
            let begun = tokio::time::Instant::now();
            let mut deadline = begun + timeout;
            loop {
                tokio::select! {
                    r = &mut poll => break Some(r),
                    _ = tokio::time::sleep_until(deadline) => {
                        let paced = waited.load(Ordering::Relaxed).saturating_sub(waited_before);
                        let extended = (begun + timeout + Duration::from_nanos(paced))
                            .min(begun + longest);
                        if extended > deadline {
                            deadline = extended;
                        } else {
                            break None;
                        }
                    }
                    _ = stop.changed() => return Err(Stopped),
                }
            }
        };
        Ok(outcome.unwrap_or(Err(PollError::Timeout(timeout, self.current_op))))
    }

    /// The poll's time: that of its first request, even when it took several attempts. A failure
    /// that cannot be resumed drops the partial poll.
    fn poll_time(&mut self, result: &Result<UnixMillis, PollError>) -> UnixMillis {
        match result {
            Ok(start_ms) => *start_ms,
            Err(e) => {
                if !resumable(e) {
                    self.progress = None;
                }
                self.progress.as_ref().map_or_else(now_ms, |p| p.start_ms)
            }
        }
    }

    /// Whether to publish a successful poll before its backfill step: only under a client-side
    /// rate limit, when this poll waited for it (`paced`), others wait for it now, or other
    /// portals have yet to finish their first poll.
    fn publish_before_backfill(&self, paced: bool) -> bool {
        let others_first = self.store.first_polls_pending() > usize::from(!self.snapshot.polled);
        self.api.limiter_set() && (paced || self.api.limiter_busy() || others_first)
    }

    /// Lets the portals that have yet to ask for a slot for their first poll go first (for at
    /// most one timeout: a discovery that never lists must not stop this one), then takes a
    /// concurrency slot again.
    async fn after_first_polls(
        &self,
        permits: &Arc<Semaphore>,
        stop: &mut watch::Receiver<bool>,
    ) -> Result<OwnedSemaphorePermit, Stopped> {
        let store = self.store.clone();
        let all_polled =
            tokio::time::timeout(self.plan.timeout, store.wait_until(|_| store.ready()));
        let _ = unless_stopped(stop, all_polled).await?;
        unless_stopped(stop, permits.clone().acquire_owned())
            .await?
            .map_err(|_| Stopped)
    }

    /// After a successful poll: a cycle of the monthly-users backfill (until it is complete),
    /// the per-user series, and the portal metadata when due.
    async fn after_success(
        &mut self,
        start_ms: UnixMillis,
        stop: &mut watch::Receiver<bool>,
    ) -> Result<(), Stopped> {
        if !self.backfill.done {
            let timeout = self.plan.timeout;
            let step = tokio::time::timeout(timeout, Box::pin(self.backfill_step(start_ms)));
            let result = unless_stopped(stop, step).await?;
            if let Err(e) = result.unwrap_or(Err(PollError::Timeout(timeout, aws::LIST_SESSIONS))) {
                warn!(portal_id = %self.plan.portal_id, operation = e.operation(), error = %e.label(), detail = %e, "monthly users backfill step failed; resuming next cycle");
            }
        }
        // After the backfill step, which may bring sessions the listing did not: the per-user
        // series then agree with the totals published with them.
        self.update_user_series(start_ms);
        unless_stopped(stop, Box::pin(self.metadata_step())).await
    }

    /// When the next poll is due, given whether this one failed and when it was scheduled.
    fn next_due(&mut self, failed: bool, scheduled: tokio::time::Instant) -> tokio::time::Instant {
        let hint = self.api.counters().take_retry_after();
        let now = tokio::time::Instant::now();
        if failed {
            // A failing portal backs off (full jitter), never sooner than the service asked.
            // An attempt that fetched pages before failing (throttled mid-listing) made
            // progress: it resumes after one interval instead of backing off further.
            self.failures = if self.fetched > 0 && self.progress.is_some() {
                1
            } else {
                self.failures.saturating_add(1)
            };
            now + backoff(self.plan.interval, self.failures).max(hint.unwrap_or_default())
        } else {
            self.failures = 0;
            // Drift-free schedule with ±5% jitter; an overrun poll starts the next one at once.
            (scheduled + jitter(self.plan.interval, 0.05)).max(now)
        }
    }

    /// One complete poll, possibly resuming one cut short (see [`Progress`]); the ledger is only
    /// touched after all I/O succeeded, once, with everything the attempts fetched, at the time of
    /// the poll's first request, which it returns.
    async fn poll(&mut self, now: UnixMillis) -> Result<UnixMillis, PollError> {
        let start_ms = self.begin_or_resume(now);
        if self.phase() == Phase::Active {
            self.list_active().await?;
        }
        if self.phase() == Phase::Terminated {
            self.scan_terminated(start_ms).await?;
        }
        if self.phase() == Phase::Extend {
            self.extend_scan().await?;
        }
        self.resolve_vanished().await?;
        Ok(self.apply_poll(start_ms))
    }

    /// Starts a poll at `now`, or resumes the partial one when it is younger than
    /// [`STALE_INTERVALS`] intervals (an older one would describe a state older than the point at
    /// which the portal's gauges go stale anyway). Returns the time of the poll's first request.
    fn begin_or_resume(&mut self, now: UnixMillis) -> UnixMillis {
        let window = self.plan.interval * STALE_INTERVALS;
        match &self.progress {
            Some(p) if p.began.elapsed() < window => {
                debug!(portal_id = %self.plan.portal_id, phase = ?p.phase, pages = p.active.len() + p.other.len(), "resuming a poll cut short");
                p.start_ms
            }
            _ => {
                self.progress = Some(Progress::new(now));
                now
            }
        }
    }

    /// `maxResults` of every listing.
    fn page_size(&self) -> i32 {
        i32::try_from(self.plan.page_size).unwrap_or(i32::MAX)
    }

    /// Lists every Active session (all pages), then moves on to the Terminated scan.
    async fn list_active(&mut self) -> Result<(), PollError> {
        self.current_op = aws::LIST_SESSIONS;
        self.list(
            ListQuery {
                status: Some(SessionStatus::Active),
                max_results: self.page_size(),
                ..Default::default()
            },
            None,
        )
        .await?;
        self.next_phase(Phase::Terminated);
        Ok(())
    }

    /// The Terminated scan: newest first.
    fn terminated_query(&self) -> ListQuery {
        ListQuery {
            status: Some(SessionStatus::Terminated),
            sort: Some(SortOrder::StartTimeDescending),
            max_results: self.page_size(),
            ..Default::default()
        }
    }

    /// Lists Terminated sessions newest first down to the watermark, then sets aside the sessions
    /// still open in the ledger that neither listing returned (see [`Self::extend_scan`]). The
    /// token of the rest of the scan is kept for that.
    async fn scan_terminated(&mut self, start_ms: UnixMillis) -> Result<(), PollError> {
        self.current_op = aws::LIST_SESSIONS;
        let watermark = self.last_start_ms.unwrap_or(start_ms) - SKEW_MARGIN_MS;
        self.list(
            self.terminated_query(),
            (!super::full_scan()).then_some(watermark),
        )
        .await?;
        let to_resolve = self.vanished_unseen();
        if let Some(p) = &mut self.progress {
            p.to_resolve = to_resolve;
            p.phase = Phase::Extend;
        }
        Ok(())
    }

    /// Lists more of the Terminated scan, page by page, while that is estimated cheaper than one
    /// `GetSession` for each vanished session it could still find; the sessions it lists are
    /// resolved by their records. The rest go to [`Self::resolve_vanished`].
    async fn extend_scan(&mut self) -> Result<(), PollError> {
        self.current_op = aws::LIST_SESSIONS;
        let mut query = self.terminated_query();
        while self.extension_is_cheaper() {
            let listed = self.progress.as_ref().map_or(0, |p| p.other.len());
            self.list_page(&mut query, None).await?;
            if let Some(p) = &mut self.progress {
                let found: HashSet<&str> = p
                    .other
                    .iter()
                    .skip(listed)
                    .filter_map(|r| r.id.as_deref())
                    .collect();
                p.to_resolve.retain(|v| !found.contains(v.id.as_str()));
                debug!(portal_id = %self.plan.portal_id, pages = p.guard.pages(), unresolved = p.to_resolve.len(), "Terminated scan extended for vanished sessions");
            }
        }
        if let Some(p) = &mut self.progress {
            // Only scan pages are in `other` yet (GetSession answers come after).
            p.scan_end = Some(ScanEnd {
                rest: p.next_token.clone(),
                guard: p.guard.clone(),
                oldest_ms: p.other.iter().filter_map(|r| r.start_ms).min(),
            });
        }
        self.next_phase(Phase::Resolve);
        Ok(())
    }

    /// Whether one more page of the Terminated scan is estimated cheaper than `GetSession` for
    /// the vanished sessions it could find (see [`vanished::scan_is_cheaper`]). Never past the
    /// end of the listing, nor onto the page that `max_pages` would refuse.
    fn extension_is_cheaper(&self) -> bool {
        let Some(p) = &self.progress else {
            return false;
        };
        if p.to_resolve.is_empty()
            || p.next_token.is_none()
            || p.guard.pages().saturating_add(1) >= self.plan.max_pages
        {
            return false;
        }
        let Some(scan) = ScanSoFar::of(p.other.iter().filter_map(|r| r.start_ms)) else {
            return false;
        };
        vanished::scan_is_cheaper(
            scan,
            p.to_resolve.iter().map(|v| v.start_ms),
            self.plan.page_size,
        )
    }

    /// Sessions open in the ledger, absent from this poll's Active listing, that the listings of
    /// this poll did not return.
    fn vanished_unseen(&self) -> Vec<Pending> {
        let (Some(ledger), Some(p)) = (&self.ledger, &self.progress) else {
            return Vec::new();
        };
        let seen: HashSet<&str> = p
            .active
            .iter()
            .chain(p.other.iter())
            .filter_map(|r| r.id.as_deref())
            .collect();
        ledger
            .pending(&p.active)
            .into_iter()
            .filter(|v| !seen.contains(v.id.as_str()))
            .collect()
    }

    /// Fetches the sessions set aside by the scan one by one with `GetSession`: a record joins
    /// the poll's Terminated ones, a session that no longer exists is forgotten.
    async fn resolve_vanished(&mut self) -> Result<(), PollError> {
        self.current_op = aws::GET_SESSION;
        while let Some(id) = self
            .progress
            .as_ref()
            .and_then(|p| p.to_resolve.last().map(|v| v.id.clone()))
        {
            let found = self.api.get_session(&id).await?;
            self.fetched += 1;
            if let Some(p) = &mut self.progress {
                p.to_resolve.pop();
                match found {
                    Some(record) => p.other.push(record),
                    None => p.gone.push(id),
                }
            }
        }
        Ok(())
    }

    /// Applies everything the poll fetched to the ledger, once, at `start_ms` (the time of the
    /// poll's first request), and returns that time.
    fn apply_poll(&mut self, start_ms: UnixMillis) -> UnixMillis {
        let Some(Progress {
            start_ms,
            active,
            other,
            gone,
            scan_end,
            ..
        }) = self.progress.take()
        else {
            return start_ms;
        };
        let limit = self.capacity_limit();
        let ledger = self.ledger.get_or_insert_with(|| {
            let mut ledger = Ledger::new(
                LedgerSettings {
                    duration_buckets: self.plan.duration_buckets.clone(),
                },
                start_ms,
            );
            ledger.set_capacity_limit(limit);
            ledger
        });
        for id in &gone {
            ledger.forget(id, start_ms);
        }
        let deltas = ledger.apply_poll(start_ms, &active, &other);
        // The scan's pages are the backfill's first pages: a backfill not begun yet starts after
        // them (or is complete, when they reach its floor or the end of the listing).
        if let Some(scan) = scan_end
            && self.backfill.continue_from(scan, start_ms)
        {
            info!(portal_id = %self.plan.portal_id, monthly_active_users = ledger.monthly_active_users(), "monthly users backfill complete");
        }
        // The next scan stops at this poll's start minus the margin: nothing below can be new.
        // Not before the backfill is complete: it may still bring sessions that ended after T0.
        if self.backfill.done {
            ledger.prune(start_ms - SKEW_MARGIN_MS);
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
        start_ms
    }

    fn phase(&self) -> Phase {
        self.progress.as_ref().map_or(Phase::Active, |p| p.phase)
    }

    /// Moves the poll to its next phase, whose listing starts at its first page.
    fn next_phase(&mut self, phase: Phase) {
        if let Some(p) = &mut self.progress {
            p.phase = phase;
            p.next_token = None;
            p.guard = PageGuard::new();
        }
    }

    /// Lists the remaining pages of `query` from the poll's current token, into the current
    /// phase's records (see [`Self::list_page`]).
    async fn list(
        &mut self,
        mut query: ListQuery,
        stop_below: Option<UnixMillis>,
    ) -> Result<(), PollError> {
        while self.list_page(&mut query, stop_below).await? {}
        Ok(())
    }

    /// Lists the page of `query` at the poll's current token into the current phase's records,
    /// and returns whether the listing goes on. It ends on its last page or, with `stop_below`,
    /// on the first page whose oldest start is below it (the listing must be sorted by
    /// descending start time); there, the token of the rest stays for [`Self::extend_scan`].
    /// Each page is kept as soon as it arrives, so an attempt cut short (error or timeout) loses
    /// nothing it fetched.
    async fn list_page(
        &mut self,
        query: &mut ListQuery,
        stop_below: Option<UnixMillis>,
    ) -> Result<bool, PollError> {
        query.next_token = self.progress.as_ref().and_then(|p| p.next_token.clone());
        let page = self.api.list_sessions(query).await?;
        self.fetched += 1;
        self.learn_arn(page.portal_arn.as_deref());
        let reached_watermark = stop_below.is_some_and(|w| {
            page.sessions
                .iter()
                .any(|s| s.start_ms.is_some_and(|start| start < w))
        });
        let Some(p) = &mut self.progress else {
            return Ok(false);
        };
        match p.phase {
            Phase::Active => p.active.extend(page.sessions),
            _ => p.other.extend(page.sessions),
        }
        let (next, rest) = if reached_watermark {
            (None, page.next_token)
        } else {
            (page.next_token, None)
        };
        match p.guard.next(next, self.plan.max_pages) {
            Ok(Some(token)) => {
                p.next_token = Some(token);
                Ok(true)
            }
            Ok(None) => {
                p.next_token = rest.filter(|t| !t.is_empty());
                Ok(false)
            }
            Err(stop) => Err(self.pagination_stopped(&stop, "")),
        }
    }

    /// Counts a listing stopped by the page guard and turns it into the poll's error.
    fn pagination_stopped(&self, stop: &PageStop, during: &str) -> PollError {
        self.api
            .counters()
            .error(aws::LIST_SESSIONS, ErrorLabel::Other);
        PollError::Pagination {
            operation: aws::LIST_SESSIONS,
            reason: format!("{stop}{during}"),
        }
    }

    /// Reads the next pages of the backfill into the ledger (monthly active users only, unless a
    /// session ended after T0). Pages read before an error are kept; the scan resumes after them.
    async fn backfill_step(&mut self, at_ms: UnixMillis) -> Result<(), PollError> {
        let floor = backfill_floor(at_ms);
        let page_size = self.page_size();
        let mut result = Ok(());
        for _ in 0..BACKFILL_PAGES_PER_CYCLE {
            let query = ListQuery {
                status: Some(SessionStatus::Terminated),
                sort: Some(SortOrder::StartTimeDescending),
                max_results: page_size,
                next_token: self.backfill.next_token.clone(),
                priority: aws::Priority::Background,
                ..Default::default()
            };
            let page = match self.api.list_sessions(&query).await {
                Ok(p) => p,
                Err(e) => {
                    if e.code == ErrorLabel::VALIDATION {
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
            // Applied before the token moves on: a cycle cut short by the timeout loses no page.
            if let Some(ledger) = &mut self.ledger {
                ledger.apply_records(at_ms, &page.sessions);
            }
            let next = page.next_token.filter(|_| !below);
            match self.backfill.guard.next(next, self.plan.max_pages) {
                Ok(Some(t)) => self.backfill.next_token = Some(t),
                Ok(None) => {
                    self.backfill.done = true;
                    break;
                }
                Err(stop) => {
                    result =
                        Err(self.pagination_stopped(&stop, " during the monthly users backfill"));
                    // Start the scan again next cycle.
                    self.backfill = Backfill::default();
                    break;
                }
            }
        }
        if let Some(ledger) = &self.ledger
            && self.backfill.done
        {
            info!(portal_id = %self.plan.portal_id, monthly_active_users = ledger.monthly_active_users(), "monthly users backfill complete");
        }
        result
    }

    /// Takes a new plan from a reload or discovery; the ledger and its counters stay unless the
    /// histogram buckets change (a histogram cannot change its buckets: the portal restarts at T0).
    async fn update_plan(&mut self) {
        let new = self.plan_rx.borrow_and_update().clone();
        if new.client != self.plan.client
            || new.page_size != self.plan.page_size
            || new.duration_buckets != self.plan.duration_buckets
        {
            // Another endpoint, page size or ledger: a poll cut short starts over.
            self.progress = None;
        }
        if new.client != self.plan.client {
            let counters = self.api.counters().clone();
            self.api = self
                .clients
                .portal_api(&new.client, &new.portal_id, counters)
                .await;
        }
        if new.duration_buckets != self.plan.duration_buckets {
            self.ledger = None;
            self.backfill = Backfill::default();
            self.last_start_ms = None;
            self.snapshot.totals = None;
            self.snapshot.monthly_active_users = None;
        }
        if new.per_user != self.plan.per_user {
            self.users = new.per_user.clone().map(UserLabels::new);
            self.snapshot.users.clear();
        }
        if new.arn.is_some() && new.arn != self.plan.arn {
            self.arn = new.arn.clone();
            self.metadata_due = None;
        }
        if new.metadata_refresh < self.plan.metadata_refresh {
            self.metadata_due = None;
        }
        self.snapshot.labels = new.labels.clone();
        self.plan = new;
        self.snapshot.meta = self.meta();
        self.store.publish(self.snapshot.clone());
    }

    /// Adopts the `portalArn` of the portal's own sessions when it names this portal.
    fn learn_arn(&mut self, arn: Option<&str>) {
        if self.arn.is_none()
            && let Some(arn) = arn
            && portal_id_of_arn(arn) == Some(self.plan.portal_id.as_str())
        {
            self.arn = Some(arn.to_string());
        }
    }

    /// Refreshes portal metadata with `GetPortal` when due. AccessDenied is not a poll failure:
    /// the info series are absent and a warning is logged once.
    async fn metadata_step(&mut self) {
        let Some(arn) = self.arn.clone() else {
            return;
        };
        if self.metadata_due.is_some_and(|due| Instant::now() < due) {
            return;
        }
        let portal_id = self.plan.portal_id.as_str();
        let refresh = Instant::now() + self.plan.metadata_refresh;
        let answer = match tokio::time::timeout(self.plan.timeout, self.api.get_portal(&arn)).await
        {
            Ok(Ok(info)) => Some(info),
            Ok(Err(e)) if e.is_access_denied() => {
                if !self.metadata_denied_logged {
                    warn!(portal_id, operation = e.operation, error = %e.code, "GetPortal is not permitted; portal info series are absent");
                    self.metadata_denied_logged = true;
                }
                Some(None)
            }
            Ok(Err(e)) if e.code == ErrorLabel::NOT_FOUND => Some(None),
            Ok(Err(e)) => {
                debug!(portal_id, operation = e.operation, error = %e.code, detail = %e.message, "GetPortal failed; retrying next cycle");
                None
            }
            Err(_) => {
                self.api
                    .counters()
                    .error(aws::GET_PORTAL, ErrorLabel::Timeout);
                debug!(
                    portal_id,
                    operation = aws::GET_PORTAL,
                    error = %ErrorLabel::Timeout,
                    "GetPortal timed out; retrying next cycle"
                );
                None
            }
        };
        // An answer (the portal, AccessDenied or not found) also tells the ledger the limit for
        // the next interval. Without one, the ledger keeps the limit it knew (restored from the
        // state file included), so the at-capacity counter stays continuous across restarts.
        if let Some(info) = answer {
            self.info = info;
            self.metadata_due = Some(refresh);
            let limit = self.capacity_limit();
            if let Some(ledger) = &mut self.ledger {
                ledger.set_capacity_limit(limit);
            }
        }
        self.snapshot.meta = self.meta();
    }

    /// The portal's `maxConcurrentSessions` per the last GetPortal answer (`None`: unknown).
    fn capacity_limit(&self) -> Option<u64> {
        self.info
            .as_ref()
            .and_then(|i| i.max_concurrent_sessions)
            .and_then(|m| u64::try_from(m).ok())
    }

    /// The `portal_info` labels and capacity, when metadata is known.
    fn meta(&self) -> Option<PortalMeta> {
        let info = self.info.as_ref()?;
        let region = self
            .plan
            .client
            .region
            .clone()
            .or_else(|| region_of_arn(&info.arn).map(str::to_string))
            .unwrap_or_default();
        Some(PortalMeta {
            arn: info.arn.clone(),
            region,
            display_name: info.display_name.clone().unwrap_or_default(),
            browser_type: info.browser_type.clone().unwrap_or_default(),
            instance_type: info.instance_type.clone().unwrap_or_default(),
            max_concurrent_sessions: self.capacity_limit(),
        })
    }

    /// Recomputes the per-user series from the ledger after a successful poll (and its backfill
    /// step), or, without per-user series, forgets the users that have no session left (nothing
    /// reads their totals; a portal with many short-lived usernames would grow without bound).
    fn update_user_series(&mut self, at_ms: UnixMillis) {
        let Some(ledger) = &mut self.ledger else {
            return;
        };
        match &mut self.users {
            Some(users) => self.snapshot.users = users.update(ledger, at_ms),
            None => {
                ledger.evict_idle_users(at_ms);
            }
        }
    }

    /// When the state gauges of this portal go stale: 5 intervals after its last success, while
    /// they are shown and the portal is down.
    fn stale_at(&self) -> Option<tokio::time::Instant> {
        if self.snapshot.up || self.snapshot.active.is_none() {
            return None;
        }
        let last = self.last_success?;
        Some(tokio::time::Instant::from_std(
            last + self.plan.interval * STALE_INTERVALS,
        ))
    }

    /// Drops the state gauges of a portal whose last success is too old, and publishes.
    fn drop_stale_gauges(&mut self) {
        debug!(portal_id = %self.plan.portal_id, "state gauges stale: dropped");
        self.snapshot.active = None;
        self.store.publish(self.snapshot.clone());
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
                snap.last_error_code = None;
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
                    self.api
                        .counters()
                        .error(err.operation(), ErrorLabel::Timeout);
                }
                if was_up {
                    warn!(portal_id, operation = err.operation(), error = %err.label(), detail = %err, "poll failed");
                } else {
                    debug!(portal_id, operation = err.operation(), error = %err.label(), detail = %err, "poll failed again");
                }
                snap.up = false;
                snap.last_error = Some(err.to_string());
                snap.last_error_code = Some(format!("{} {}", err.operation(), err.label()));
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
