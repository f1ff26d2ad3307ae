//! One portal's poll loop: the incremental listing (see the module docs of [`crate::poll`]), the
//! monthly-users backfill, portal metadata, plan updates, and the snapshot it publishes.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{Semaphore, watch};
use tracing::{debug, info, warn};

use super::{
    BACKFILL_PAGES_PER_CYCLE, BACKFILL_REACH_MS, PollError, PortalPlan, SKEW_MARGIN_MS,
    STALE_INTERVALS, backoff, jitter,
};
use crate::aws::{
    self, Clients, ListQuery, PortalApi, PortalInfo, SortOrder, portal_id_of_arn, region_of_arn,
};
use crate::ledger::{Ledger, LedgerSettings, month_bounds};
use crate::session::{SessionRecord, SessionStatus, UnixMillis, now_ms};
use crate::snapshot::{PortalMeta, PortalSnapshot, Store};
use crate::users::UserLabels;

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
    snapshot: PortalSnapshot,
}

/// Progress of the monthly-active-users backfill: a descending scan of Terminated sessions from
/// the newest down to the month start minus [`BACKFILL_REACH_MS`], a few pages per poll cycle.
#[derive(Debug, Default)]
struct Backfill {
    next_token: Option<String>,
    tokens: HashSet<String>,
    done: bool,
}

impl Poller {
    pub(super) fn new(
        plan: PortalPlan,
        plan_rx: watch::Receiver<PortalPlan>,
        clients: Clients,
        api: PortalApi,
        store: Arc<Store>,
        panics: u64,
    ) -> Self {
        let (requests, errors) = api.counters().snapshot();
        let snapshot = PortalSnapshot {
            portal_id: plan.portal_id.clone(),
            labels: plan.labels.clone(),
            panics,
            api_requests: requests,
            api_errors: errors,
            ..Default::default()
        };
        store.publish(snapshot.clone());
        Poller {
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
            snapshot,
            plan,
        }
    }

    pub(super) async fn run(mut self, permits: Arc<Semaphore>, mut stop: watch::Receiver<bool>) {
        // First poll soon (readiness waits for it), spread a little so portals don't start in lockstep.
        let first = self.plan.interval.min(Duration::from_secs(10)) / 10;
        let mut next = tokio::time::Instant::now() + jitter(first, 1.0);
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(next) => {}
                _ = stop.changed() => return,
                changed = self.plan_rx.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    let old_interval = self.plan.interval;
                    self.update_plan().await;
                    if self.plan.interval < old_interval {
                        next = next.min(tokio::time::Instant::now() + jitter(self.plan.interval, 0.05));
                    }
                    continue;
                }
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
                            warn!(portal_id = %self.plan.portal_id, operation = e.operation(), error = e.label(), detail = %e, "monthly users backfill step failed; resuming next cycle");
                        }
                    }
                    _ = stop.changed() => return,
                }
            }
            if result.is_ok() {
                tokio::select! {
                    _ = self.metadata_step() => {}
                    _ = stop.changed() => return,
                }
            }
            drop(permit);
            let failed = result.is_err();
            self.finish(result, start_ms, took);
            let hint = self.api.counters().take_retry_after();
            let now = tokio::time::Instant::now();
            if failed {
                // A failing portal backs off (full jitter), never sooner than the service asked.
                self.failures = self.failures.saturating_add(1);
                next =
                    now + backoff(self.plan.interval, self.failures).max(hint.unwrap_or_default());
            } else {
                self.failures = 0;
                // Drift-free schedule with ±5% jitter; an overrun poll starts the next one at once.
                next = (scheduled + jitter(self.plan.interval, 0.05)).max(now);
            }
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
                (!super::full_scan()).then_some(watermark),
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
            self.learn_arn(page.portal_arn.as_deref());
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
                        self.backfill.next_token = None;
                        self.backfill.tokens.clear();
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
            match page.next_token {
                Some(t) if !t.is_empty() && !below => {
                    if !self.backfill.tokens.insert(t.clone()) {
                        self.api.counters().error(aws::LIST_SESSIONS, "other");
                        result = Err(PollError::Pagination {
                            operation: aws::LIST_SESSIONS,
                            reason:
                                "the service repeated a nextToken during the monthly users backfill"
                                    .into(),
                        });
                        self.backfill.next_token = None;
                        self.backfill.tokens.clear();
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
        if let Some(ledger) = &self.ledger {
            if self.backfill.done {
                info!(portal_id = %self.plan.portal_id, monthly_active_users = ledger.monthly_active_users(), "monthly users backfill complete");
            }
        }
        result
    }

    /// Takes a new plan from a reload or discovery; the ledger and its counters stay unless the
    /// histogram buckets change (a histogram cannot change its buckets: the portal restarts at T0).
    async fn update_plan(&mut self) {
        let new = self.plan_rx.borrow_and_update().clone();
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
        match tokio::time::timeout(self.plan.timeout, self.api.get_portal(&arn)).await {
            Ok(Ok(info)) => {
                self.info = info;
                self.metadata_due = Some(refresh);
            }
            Ok(Err(e)) if e.is_access_denied() => {
                if !self.metadata_denied_logged {
                    warn!(portal_id, operation = e.operation, error = %e.code, "GetPortal is not permitted; portal info series are absent");
                    self.metadata_denied_logged = true;
                }
                self.info = None;
                self.metadata_due = Some(refresh);
            }
            Ok(Err(e)) if e.code == "ResourceNotFoundException" => {
                self.info = None;
                self.metadata_due = Some(refresh);
            }
            Ok(Err(e)) => {
                debug!(portal_id, operation = e.operation, error = %e.code, detail = %e.message, "GetPortal failed; retrying next cycle");
            }
            Err(_) => {
                self.api.counters().error(aws::GET_PORTAL, "timeout");
                debug!(
                    portal_id,
                    operation = aws::GET_PORTAL,
                    error = "timeout",
                    "GetPortal timed out; retrying next cycle"
                );
            }
        }
        self.snapshot.meta = self.meta();
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
            max_concurrent_sessions: info
                .max_concurrent_sessions
                .and_then(|m| u64::try_from(m).ok()),
        })
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
                    warn!(portal_id, operation = err.operation(), error = err.label(), detail = %err, "poll failed");
                } else {
                    debug!(portal_id, operation = err.operation(), error = err.label(), detail = %err, "poll failed again");
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
