//! One poll's listing, as a state machine that survives a failed attempt: the phases (Active
//! listing, Terminated scan down to the watermark, its extension for vanished sessions, then
//! `GetSession` for the rest), the records fetched so far, the watermark of the next scan, and
//! where the Terminated scan stopped (the backfill continues from there). See the module docs of
//! [`crate::poll`] for why this misses nothing and counts nothing twice.

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tracing::{debug, info, warn};

use super::backfill::Backfill;
use super::vanished::{self, Lookups, MAX_FAILED_LOOKUPS, ScanSoFar};
use super::{PollError, PortalPlan, SKEW_MARGIN_MS, STALE_INTERVALS, ScanEnd, Stopped};
use crate::aws::pagination::PageGuard;
use crate::aws::{self, ApiError, ListQuery, PortalApi, SortOrder, portal_id_of_arn};
use crate::clock::now_ms;
use crate::ledger::{Ledger, Pending};
use crate::session::{SessionRecord, SessionStatus, UnixMillis};
use crate::users::key_records;

/// The listing of one portal's polls: the poll in progress (or cut short), and what the next one
/// starts from.
#[derive(Debug)]
pub(super) struct Listing {
    /// A poll cut short by throttling, a server error or the timeout, resumed by the next attempt.
    progress: Option<Progress>,
    /// Start of the previous successful poll (watermark base).
    last_start_ms: Option<UnixMillis>,
    /// Pages and sessions fetched by the current attempt (a failed attempt that fetched some made
    /// progress: the backoff does not grow).
    fetched: u64,
    /// Operation in flight, for attributing a timeout.
    current_op: &'static str,
    /// The `portalArn` carried by the portal's sessions, once a page brought one naming it.
    portal_arn: Option<String>,
    /// `GetSession` lookups that failed transiently, by session.
    lookups: Lookups,
    /// Whether a settled session was logged at warning level (once per task; later at debug).
    settled_logged: bool,
}

/// Everything one complete poll fetched, for the ledger (applied once, at `start_ms`).
#[derive(Debug)]
pub(super) struct Fetched {
    /// When the poll's first request was sent.
    pub(super) start_ms: UnixMillis,
    /// The Active listing (all pages).
    pub(super) active: Vec<SessionRecord>,
    /// The Terminated scan and the `GetSession` answers.
    pub(super) other: Vec<SessionRecord>,
    /// Sessions `GetSession` says no longer exist.
    pub(super) gone: Vec<String>,
    /// Where the Terminated scan stopped (`None` when the poll never got there).
    pub(super) scan_end: Option<ScanEnd>,
}

impl Fetched {
    /// Applies everything the poll fetched to `ledger`, once, at the time of the poll's first
    /// request (the first successful poll creates the ledger, with the capacity `limit` known),
    /// and returns that time. The scan's end goes to `backfill`.
    pub(super) fn apply(
        self,
        ledger: &mut Option<Ledger>,
        plan: &PortalPlan,
        limit: Option<u64>,
        backfill: &mut Backfill,
    ) -> UnixMillis {
        let Fetched {
            start_ms,
            mut active,
            mut other,
            gone,
            scan_end,
        } = self;
        if let Some(u) = &plan.per_user {
            key_records(&u.mode, &mut active);
            key_records(&u.mode, &mut other);
        }
        let ledger = ledger.get_or_insert_with(|| {
            let mut ledger = Ledger::new(plan.ledger_settings(), start_ms);
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
            && backfill.continue_from(scan, start_ms)
        {
            info!(portal_id = %plan.portal_id, monthly_active_users = ledger.monthly_active_users(), "monthly users backfill complete");
        }
        // The next scan stops at this poll's start minus the margin: nothing below can be new.
        // Not before the backfill is complete: it may still bring sessions that ended after T0.
        if backfill.done() {
            ledger.prune(start_ms - SKEW_MARGIN_MS);
        }
        debug!(portal_id = %plan.portal_id, active = active.len(), terminated_seen = other.len(), started = deltas.started, terminated = deltas.terminated, "poll applied");
        start_ms
    }
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

/// What one poll reads besides the listing state: the API, the plan, and the ledger (which
/// sessions are open).
pub(super) struct PollContext<'a> {
    /// The portal's API.
    pub(super) api: &'a PortalApi,
    /// The portal's plan.
    pub(super) plan: &'a PortalPlan,
    /// The portal's ledger, once it has one.
    pub(super) ledger: Option<&'a Ledger>,
}

impl Listing {
    /// A portal not polled yet.
    pub(super) fn new() -> Self {
        Listing {
            progress: None,
            last_start_ms: None,
            fetched: 0,
            current_op: aws::LIST_SESSIONS,
            portal_arn: None,
            lookups: Lookups::default(),
            settled_logged: false,
        }
    }

    /// Continues after a restart: the next Terminated scan reaches down to `watermark_ms`
    /// (minus the margin), the start of the last successful poll recorded.
    pub(super) fn resume_at(&mut self, watermark_ms: Option<UnixMillis>) {
        self.last_start_ms = watermark_ms;
    }

    /// Follows a new plan: with another endpoint, page size or ledger (buckets), a poll cut short
    /// starts over; with a new ledger, the next scan reaches down to its T0, not the old watermark.
    pub(super) fn plan_changed(&mut self, old: &PortalPlan, new: &PortalPlan) {
        if new.client != old.client
            || new.page_size != old.page_size
            || new.duration_buckets != old.duration_buckets
        {
            self.progress = None;
        }
        if new.duration_buckets != old.duration_buckets {
            self.last_start_ms = None;
        }
    }

    /// A new attempt begins: nothing fetched by it yet.
    pub(super) fn begin_attempt(&mut self) {
        self.fetched = 0;
    }

    /// Whether the last attempt fetched something and its poll can resume (its failure is not
    /// a reason to back off further).
    pub(super) fn made_progress(&self) -> bool {
        self.fetched > 0 && self.progress.is_some()
    }

    /// The `portalArn` that the portal's sessions carry, once seen.
    pub(super) fn portal_arn(&self) -> Option<&str> {
        self.portal_arn.as_deref()
    }

    /// The time of a failed poll: that of its first request when it will resume, else now. A
    /// failure that cannot be resumed drops the partial poll.
    pub(super) fn failed(&mut self, err: &PollError, now: UnixMillis) -> UnixMillis {
        if let Some((id, n)) = self.lookups.poll_failed(err.label().is_transient()) {
            debug!(session_id = %id, failed_polls = n, settled_after = MAX_FAILED_LOOKUPS, "GetSession of a vanished session failed");
        }
        if !resumable(err) {
            self.progress = None;
        }
        self.progress.as_ref().map_or(now, |p| p.start_ms)
    }

    /// One complete poll, possibly resuming one cut short (see [`Progress`]), returning what it
    /// fetched: the ledger is only touched after all I/O succeeded, once, with everything the
    /// attempts fetched, at the time of the poll's first request.
    pub(super) async fn poll(
        &mut self,
        cx: &PollContext<'_>,
        now: UnixMillis,
    ) -> Result<Fetched, PollError> {
        let start_ms = self.begin_or_resume(cx.plan, now);
        if self.phase() == Phase::Active {
            self.list_active(cx).await?;
        }
        if self.phase() == Phase::Terminated {
            self.scan_terminated(cx, start_ms).await?;
        }
        if self.phase() == Phase::Extend {
            self.extend_scan(cx).await?;
        }
        self.resolve_vanished(cx).await?;
        self.lookups.poll_succeeded();
        let Progress {
            start_ms,
            active,
            other,
            gone,
            scan_end,
            ..
        } = self
            .progress
            .take()
            .unwrap_or_else(|| Progress::new(start_ms));
        self.last_start_ms = Some(start_ms);
        Ok(Fetched {
            start_ms,
            active,
            other,
            gone,
            scan_end,
        })
    }

    /// Starts a poll at `now`, or resumes the partial one when it is younger than
    /// [`STALE_INTERVALS`] intervals (an older one would describe a state older than the point at
    /// which the portal's gauges go stale anyway). Returns the time of the poll's first request.
    fn begin_or_resume(&mut self, plan: &PortalPlan, now: UnixMillis) -> UnixMillis {
        let window = plan.interval * STALE_INTERVALS;
        match &self.progress {
            Some(p) if p.began.elapsed() < window => {
                debug!(portal_id = %plan.portal_id, phase = ?p.phase, pages = p.active.len() + p.other.len(), "resuming a poll cut short");
                p.start_ms
            }
            _ => {
                self.progress = Some(Progress::new(now));
                now
            }
        }
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

    /// Lists every Active session (all pages), then moves on to the Terminated scan.
    async fn list_active(&mut self, cx: &PollContext<'_>) -> Result<(), PollError> {
        self.current_op = aws::LIST_SESSIONS;
        let mut query = ListQuery {
            status: Some(SessionStatus::Active),
            max_results: cx.plan.max_results(),
            ..Default::default()
        };
        while self.list_page(cx, &mut query, None).await? {}
        self.next_phase(Phase::Terminated);
        Ok(())
    }

    /// The Terminated scan: newest first.
    fn terminated_query(plan: &PortalPlan) -> ListQuery {
        ListQuery {
            status: Some(SessionStatus::Terminated),
            sort: Some(SortOrder::StartTimeDescending),
            max_results: plan.max_results(),
            ..Default::default()
        }
    }

    /// Lists Terminated sessions newest first down to the watermark, then sets aside the sessions
    /// still open in the ledger that neither listing returned (see [`Self::extend_scan`]). The
    /// token of the rest of the scan is kept for that.
    async fn scan_terminated(
        &mut self,
        cx: &PollContext<'_>,
        start_ms: UnixMillis,
    ) -> Result<(), PollError> {
        self.current_op = aws::LIST_SESSIONS;
        let watermark = self.last_start_ms.unwrap_or(start_ms) - SKEW_MARGIN_MS;
        let stop_below = (!super::full_scan()).then_some(watermark);
        let mut query = Self::terminated_query(cx.plan);
        while self.list_page(cx, &mut query, stop_below).await? {}
        let to_resolve = self.vanished_unseen(cx.ledger);
        if let Some(p) = &mut self.progress {
            p.to_resolve = to_resolve;
            p.phase = Phase::Extend;
        }
        Ok(())
    }

    /// Lists more of the Terminated scan, page by page, while that is estimated cheaper than one
    /// `GetSession` for each vanished session it could still find; the sessions it lists are
    /// resolved by their records. The rest go to [`Self::resolve_vanished`].
    async fn extend_scan(&mut self, cx: &PollContext<'_>) -> Result<(), PollError> {
        self.current_op = aws::LIST_SESSIONS;
        let mut query = Self::terminated_query(cx.plan);
        while self.extension_is_cheaper(cx.plan) {
            let listed = self.progress.as_ref().map_or(0, |p| p.other.len());
            self.list_page(cx, &mut query, None).await?;
            if let Some(p) = &mut self.progress {
                let found: HashSet<&str> = p
                    .other
                    .iter()
                    .skip(listed)
                    .filter_map(|r| r.id.as_deref())
                    .collect();
                p.to_resolve.retain(|v| !found.contains(v.id.as_str()));
                debug!(portal_id = %cx.plan.portal_id, pages = p.guard.pages(), unresolved = p.to_resolve.len(), "Terminated scan extended for vanished sessions");
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
    fn extension_is_cheaper(&self, plan: &PortalPlan) -> bool {
        let Some(p) = &self.progress else {
            return false;
        };
        if p.to_resolve.is_empty()
            || p.next_token.is_none()
            || p.guard.pages().saturating_add(1) >= plan.max_pages
        {
            return false;
        }
        let Some(scan) = ScanSoFar::of(p.other.iter().filter_map(|r| r.start_ms)) else {
            return false;
        };
        vanished::scan_is_cheaper(
            scan,
            p.to_resolve.iter().map(|v| v.start_ms),
            plan.page_size,
        )
    }

    /// Sessions open in the ledger, absent from this poll's Active listing, that the listings of
    /// this poll did not return.
    fn vanished_unseen(&self, ledger: Option<&Ledger>) -> Vec<Pending> {
        let (Some(ledger), Some(p)) = (ledger, &self.progress) else {
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
    /// the poll's Terminated ones; a session that no longer exists, or that cannot be looked up
    /// (see [`vanished::settles`], [`Lookups`]), is settled: the ledger forgets it.
    async fn resolve_vanished(&mut self, cx: &PollContext<'_>) -> Result<(), PollError> {
        self.current_op = aws::GET_SESSION;
        while let Some(id) = self
            .progress
            .as_ref()
            .and_then(|p| p.to_resolve.last().map(|v| v.id.clone()))
        {
            let found = if self.lookups.exhausted(&id) {
                self.log_settled(cx, &id, None);
                None
            } else {
                self.lookups.begin(&id);
                let answer = match cx.api.get_session(&id).await {
                    Ok(found) => found,
                    Err(e) if vanished::settles(&e) => {
                        self.log_settled(cx, &id, Some(&e));
                        None
                    }
                    Err(e) => return Err(e.into()),
                };
                self.fetched += 1;
                answer
            };
            self.lookups.done(&id);
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

    /// Logs a vanished session settled without its record: refused (`refusal`), or after
    /// [`MAX_FAILED_LOOKUPS`] failed polls. At warning level the first time, then at debug.
    fn log_settled(&mut self, cx: &PollContext<'_>, id: &str, refusal: Option<&ApiError>) {
        let portal_id = cx.plan.portal_id.as_str();
        let first = !std::mem::replace(&mut self.settled_logged, true);
        match refusal {
            Some(e) if first => {
                warn!(portal_id, session_id = id, operation = e.operation, error = %e.code, detail = %e.message, "a session that left the Active listing cannot be looked up: settled as terminated, without a duration");
            }
            Some(e) => {
                debug!(portal_id, session_id = id, operation = e.operation, error = %e.code, "vanished session settled");
            }
            None if first => {
                warn!(
                    portal_id,
                    session_id = id,
                    operation = aws::GET_SESSION,
                    failed_polls = MAX_FAILED_LOOKUPS,
                    "a session that left the Active listing could not be looked up in 3 polls: settled as terminated, without a duration"
                );
            }
            None => {
                debug!(
                    portal_id,
                    session_id = id,
                    failed_polls = MAX_FAILED_LOOKUPS,
                    "vanished session settled"
                );
            }
        }
    }

    /// Lists the page of `query` at the poll's current token into the current phase's records,
    /// and returns whether the listing goes on. It ends on its last page or, with `stop_below`,
    /// on the first page whose oldest start is below it (the listing must be sorted by
    /// descending start time); there, the token of the rest stays for [`Self::extend_scan`].
    /// Each page is kept as soon as it arrives, so an attempt cut short (error or timeout) loses
    /// nothing it fetched.
    async fn list_page(
        &mut self,
        cx: &PollContext<'_>,
        query: &mut ListQuery,
        stop_below: Option<UnixMillis>,
    ) -> Result<bool, PollError> {
        query.next_token = self.progress.as_ref().and_then(|p| p.next_token.clone());
        let page = cx.api.list_sessions(query).await?;
        self.fetched += 1;
        if self.portal_arn.is_none()
            && let Some(arn) = &page.portal_arn
            && portal_id_of_arn(arn) == Some(cx.plan.portal_id.as_str())
        {
            self.portal_arn = Some(arn.clone());
        }
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
        match p.guard.next(next, cx.plan.max_pages) {
            Ok(Some(token)) => {
                p.next_token = Some(token);
                Ok(true)
            }
            Ok(None) => {
                p.next_token = rest.filter(|t| !t.is_empty());
                Ok(false)
            }
            Err(stop) => Err(PollError::pagination(cx.api, &stop, "")),
        }
    }

    /// Runs [`Self::poll`] under the plan's timeout. The timeout bounds the time spent on the
    /// API: time waiting for the client-side rate limiter pushes the deadline back by as much,
    /// but never past one interval (a listing that needs longer holds a concurrency slot no
    /// longer, and resumes).
    pub(super) async fn poll_within(
        &mut self,
        cx: &PollContext<'_>,
        stop: &mut watch::Receiver<bool>,
    ) -> Result<Result<Fetched, PollError>, Stopped> {
        let waited = cx.api.limiter_wait_counter();
        let waited_before = waited.load(Ordering::Relaxed);
        let timeout = cx.plan.timeout;
        let longest = cx.plan.interval.max(timeout);
        let outcome = {
            // The step futures are boxed, here and below: inline, the largest of them would
            // be part of this task's state for its whole life, idle between polls included
            // (14 KB of 16 KB per portal; see BENCHMARKS.md, scale model).
            let mut poll = Box::pin(self.poll(cx, now_ms()));
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
        let op = self.current_op;
        Ok(outcome.unwrap_or(Err(PollError::Timeout(timeout, op))))
    }
}
