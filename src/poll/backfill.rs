//! The monthly-active-users backfill: a descending scan of Terminated sessions from the newest
//! down to the month start minus [`BACKFILL_REACH_MS`], a few pages per poll cycle, into the
//! ledger (monthly active users only, unless a session ended after T0). It continues from where
//! the first poll's Terminated scan stopped instead of reading those pages again.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tracing::{info, warn};

use super::{
    BACKFILL_PAGES_PER_CYCLE, BACKFILL_REACH_MS, PollError, PortalPlan, ScanEnd, Stopped,
    unless_stopped,
};
use crate::aws::pagination::PageGuard;
use crate::aws::{self, ErrorLabel, ListQuery, PortalApi, Priority, SortOrder};
use crate::ledger::{Ledger, month_bounds};
use crate::session::{SessionStatus, UnixMillis};
use crate::snapshot::Store;
use crate::users::key_records;

/// Progress of the backfill of one portal.
#[derive(Debug, Default)]
pub(super) struct Backfill {
    next_token: Option<String>,
    /// Pages and tokens of the current scan (bounded by `max_pages`, like any listing).
    guard: PageGuard,
    done: bool,
}

/// Whether a portal publishes a successful poll before its backfill step and gives its
/// concurrency slot back meanwhile: only under a client-side rate limit, when this poll waited
/// for it (`paced`), others wait for it now, or other portals have yet to finish their first poll
/// (`polled_before`: whether this portal had finished one before this poll).
pub(super) fn yields_before_step(
    api: &PortalApi,
    store: &Store,
    polled_before: bool,
    paced: bool,
) -> bool {
    let others_first = store.status().first_polls_pending() > usize::from(!polled_before);
    api.limiter_set() && (paced || api.limiter_busy() || others_first)
}

/// Lets the portals that have yet to ask for a slot for their first poll go first (for at most
/// `timeout`: a discovery that never lists must not stop this one), then takes a concurrency
/// slot again.
pub(super) async fn after_first_polls(
    store: &Arc<Store>,
    timeout: Duration,
    permits: &Arc<Semaphore>,
    stop: &mut watch::Receiver<bool>,
) -> Result<OwnedSemaphorePermit, Stopped> {
    let status = store.status();
    let all_polled = tokio::time::timeout(timeout, status.wait_for(|| status.ready()));
    let _ = unless_stopped(stop, all_polled).await?;
    unless_stopped(stop, permits.clone().acquire_owned())
        .await?
        .map_err(|_| Stopped)
}

/// The oldest start time the backfill of the month of `at_ms` has to reach.
fn backfill_floor(at_ms: UnixMillis) -> UnixMillis {
    month_bounds(at_ms).0 - BACKFILL_REACH_MS
}

impl Backfill {
    /// A backfill already complete (`done`, from a state file) or still to do.
    pub(super) fn resumed(done: bool) -> Self {
        Backfill {
            done,
            ..Backfill::default()
        }
    }

    /// Whether the month's users are complete.
    pub(super) fn done(&self) -> bool {
        self.done
    }

    /// Continues a backfill that has not begun from where a poll's Terminated scan stopped (its
    /// pages are in the ledger already), at `at_ms`; returns whether that completes it.
    pub(super) fn continue_from(&mut self, scan: ScanEnd, at_ms: UnixMillis) -> bool {
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

    /// [`step`](Self::step) under the plan's timeout; a failure is logged, and the scan resumes
    /// next cycle.
    pub(super) async fn step_within(
        &mut self,
        api: &PortalApi,
        plan: &PortalPlan,
        ledger: Option<&mut Ledger>,
        at_ms: UnixMillis,
    ) {
        let step = tokio::time::timeout(plan.timeout, self.step(api, plan, ledger, at_ms)).await;
        if let Err(e) = step.unwrap_or(Err(PollError::Timeout(plan.timeout, aws::LIST_SESSIONS))) {
            warn!(portal_id = %plan.portal_id, operation = e.operation(), error = %e.label(), detail = %e, "monthly users backfill step failed; resuming next cycle");
        }
    }

    /// Reads the next pages of the backfill into `ledger`, at `at_ms`. Pages read before an error
    /// are kept; the scan resumes after them.
    async fn step(
        &mut self,
        api: &PortalApi,
        plan: &PortalPlan,
        mut ledger: Option<&mut Ledger>,
        at_ms: UnixMillis,
    ) -> Result<(), PollError> {
        let floor = backfill_floor(at_ms);
        let mut result = Ok(());
        for _ in 0..BACKFILL_PAGES_PER_CYCLE {
            let query = ListQuery {
                status: Some(SessionStatus::Terminated),
                sort: Some(SortOrder::StartTimeDescending),
                max_results: plan.max_results(),
                next_token: self.next_token.clone(),
                priority: Priority::Background,
                ..Default::default()
            };
            let mut page = match api.list_sessions(&query).await {
                Ok(p) => p,
                Err(e) => {
                    if e.code == ErrorLabel::VALIDATION {
                        // An expired or rejected token: start the scan again (duplicates are harmless).
                        *self = Backfill::default();
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
            if let Some(u) = &plan.per_user {
                key_records(&u.mode, &mut page.sessions);
            }
            if let Some(ledger) = ledger.as_deref_mut() {
                ledger.apply_records(at_ms, &page.sessions);
            }
            let next = page.next_token.filter(|_| !below);
            match self.guard.next(next, plan.max_pages) {
                Ok(Some(t)) => self.next_token = Some(t),
                Ok(None) => {
                    self.done = true;
                    break;
                }
                Err(stop) => {
                    result = Err(PollError::pagination(
                        api,
                        &stop,
                        " during the monthly users backfill",
                    ));
                    // Start the scan again next cycle.
                    *self = Backfill::default();
                    break;
                }
            }
        }
        if let Some(ledger) = ledger
            && self.done
        {
            info!(portal_id = %plan.portal_id, monthly_active_users = ledger.monthly_active_users(), "monthly users backfill complete");
        }
        result
    }
}
