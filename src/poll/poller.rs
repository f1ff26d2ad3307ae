//! One portal's task: its poll loop (the wait, one cycle under a concurrency permit, when the next
//! is due), plan updates, and the snapshot it publishes. The parts of a cycle have rooms of their
//! own: [`super::listing`], [`super::backfill`], [`super::metadata`] and [`super::state`].

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tracing::{debug, info, warn};

use super::backfill::{Backfill, after_first_polls, yields_before_step};
use super::checkpoint::Checkpoint;
use super::listing::{Listing, PollContext};
use super::metadata::Metadata;
use super::state::{LabelFingerprint, Resumed, StateFile, ToSave};
use super::{PollError, PortalPlan, STALE_INTERVALS, Stopped, backoff, jitter, unless_stopped};
use crate::aws::arn::account_of_arn;
use crate::aws::error_text::shown_message;
use crate::aws::{Clients, ErrorLabel, PortalApi, region_of_arn};
use crate::clock::now_ms;
use crate::ledger::Ledger;
use crate::session::UnixMillis;
use crate::snapshot::{PortalSnapshot, StateStatus, Store};
use crate::storage::StateDir;
use crate::users::{LabelMode, UserLabels, label_for};

/// What a portal's task is given by its supervisor, and keeps across a panic.
pub(super) struct TaskParts {
    /// The portal's plan, updated by reloads and discovery.
    pub(super) plan_rx: watch::Receiver<PortalPlan>,
    /// Moves with each configuration reload.
    pub(super) reloads: watch::Receiver<u64>,
    /// Panics of the portal's task so far.
    pub(super) panics: u64,
    /// The state directory (`--storage.path`).
    pub(super) storage: Option<Arc<StateDir>>,
    /// The last good state, kept across panics.
    pub(super) checkpoint: Checkpoint,
}

/// One portal's poll loop and state.
pub(super) struct Poller {
    plan: PortalPlan,
    plan_rx: watch::Receiver<PortalPlan>,
    reloads: watch::Receiver<u64>,
    checkpoint: Checkpoint,
    clients: Clients,
    api: PortalApi,
    store: Arc<Store>,
    /// The portal's account, from its first successful poll (or its state file) on.
    ledger: Option<Ledger>,
    /// Label slots of its users, with per-user series.
    users: Option<UserLabels>,
    listing: Listing,
    backfill: Backfill,
    metadata: Metadata,
    /// Where the accounting state is kept across restarts (`--storage.path`).
    state: Option<StateFile>,
    last_success: Option<Instant>,
    /// Consecutive failed polls (drives the backoff).
    failures: u32,
    snapshot: PortalSnapshot,
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

impl Poller {
    /// The poller of `plan`, resumed from its checkpoint after a panic, else from its state
    /// file when there is a usable one (see [`StateFile::restore`]: its counters appear with the
    /// first poll); publishes its first snapshot.
    pub(super) async fn new(
        plan: PortalPlan,
        clients: Clients,
        api: PortalApi,
        store: Arc<Store>,
        parts: TaskParts,
    ) -> Self {
        let (requests, errors) = api.counters().snapshot();
        let state = parts.storage.map(StateFile::new);
        // A task restarted after a panic keeps the portal's recent polls.
        let recent = store
            .portal(&plan.portal_id)
            .map(|s| s.recent.clone())
            .unwrap_or_default();
        let snapshot = PortalSnapshot {
            portal_id: plan.portal_id.clone(),
            labels: plan.labels.clone(),
            panics: parts.panics,
            api_requests: requests,
            counted_since_ms: Some(api.counters().since_ms()),
            api_errors: errors,
            state: state.as_ref().map(|_| StateStatus::default()),
            recent,
            ..Default::default()
        };
        let mut poller = Poller {
            plan_rx: parts.plan_rx,
            reloads: parts.reloads,
            checkpoint: parts.checkpoint,
            clients,
            api,
            store,
            ledger: None,
            users: plan.per_user.clone().map(UserLabels::new),
            listing: Listing::new(),
            backfill: Backfill::default(),
            metadata: Metadata::new(plan.arn.clone()),
            state,
            last_success: None,
            failures: 0,
            snapshot,
            plan,
        };
        poller.locate();
        if let Some(r) = poller.checkpoint.restore(&poller.plan) {
            // What this process published before the panic (or more): shown again at once.
            poller.resume(r);
            if let Some(ledger) = &poller.ledger {
                poller.snapshot.totals = Some(ledger.totals().clone());
            }
        } else if let Some(state) = &poller.state
            && let Some(r) = state.restore(&poller.plan).await
        {
            poller.resume(r);
            poller.snapshot.state = Some(StateStatus {
                restored: true,
                last_write_unix: None,
            });
        }
        poller.store.publish(poller.snapshot.clone());
        poller
    }

    /// Continues from a saved state: its ledger, label slots, watermark and backfill.
    fn resume(&mut self, r: Resumed) {
        self.ledger = Some(r.ledger);
        self.users = r.users;
        self.listing.resume_at(Some(r.watermark_ms));
        self.backfill = Backfill::resumed(r.backfill_done);
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
                debug!(portal_id = %self.plan.portal_id, "state gauges stale: dropped");
                self.snapshot.active = None;
                self.store.publish(self.snapshot.clone());
                Wake::Again
            }
            changed = self.reloads.changed() => {
                if changed.is_err() {
                    return Wake::Stop;
                }
                self.metadata.ask_again();
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
        self.listing.begin_attempt();
        let waited = self.api.limiter_wait_counter();
        let waited_before = waited.load(Ordering::Relaxed);
        let cx = PollContext {
            api: &self.api,
            plan: &self.plan,
            ledger: self.ledger.as_ref(),
        };
        let polled = self.listing.poll_within(&cx, stop).await?;
        #[cfg(test)]
        crate::supervise::panic_hook::fire(&self.plan.portal_id);
        let took = began.elapsed();
        self.metadata.learn_arn(self.listing.portal_arn());
        let (result, start_ms) = match polled {
            Ok(fetched) => {
                let limit = self.metadata.capacity_limit();
                let start_ms =
                    fetched.apply(&mut self.ledger, &self.plan, limit, &mut self.backfill);
                (Ok(()), start_ms)
            }
            Err(e) => {
                let start_ms = self.listing.failed(&e, now_ms());
                (Err(e), start_ms)
            }
        };
        if result.is_ok() {
            let paced = waited.load(Ordering::Relaxed) > waited_before;
            let polled_before = self.snapshot.polled;
            if (!self.backfill.done() || self.metadata.due_now())
                && yields_before_step(&self.api, &self.store, polled_before, paced)
            {
                // The rate limit makes the backfill step (or `GetPortal`) slow (the poll waited
                // for it, others wait for it, or other portals have yet to be polled once): the
                // poll is saved and published before the step, and the concurrency slot goes
                // back to the line, so that portals waiting for their first poll go before this
                // step (and in the rate limiter, before its pages). Saved and published again
                // after it.
                self.update_user_series(start_ms);
                drop(permit);
                unless_stopped(stop, Box::pin(self.save_state(start_ms))).await?;
                self.finish(Ok(()), start_ms, took);
                let timeout = self.plan.timeout;
                permit = after_first_polls(&self.store, timeout, permits, stop).await?;
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

    /// After a successful poll: a cycle of the monthly-users backfill (until it is complete),
    /// the per-user series, and the portal metadata when due.
    async fn after_success(
        &mut self,
        start_ms: UnixMillis,
        stop: &mut watch::Receiver<bool>,
    ) -> Result<(), Stopped> {
        if !self.backfill.done() {
            let step =
                self.backfill
                    .step_within(&self.api, &self.plan, self.ledger.as_mut(), start_ms);
            unless_stopped(stop, Box::pin(step)).await?;
        }
        // After the backfill step, which may bring sessions the listing did not: the per-user
        // series then agree with the totals published with them.
        self.update_user_series(start_ms);
        let refresh = self
            .metadata
            .refresh(&self.api, &self.plan, self.ledger.as_mut());
        unless_stopped(stop, Box::pin(refresh)).await?;
        self.snapshot.meta = self.metadata.meta(&self.plan);
        Ok(())
    }

    /// Keeps the portal's accounting state (after a successful poll, before its values are
    /// published): in its state file with `--storage.path` (a failed write is counted and
    /// logged; polling goes on), which a task restarted after a panic resumes from as a restarted
    /// exporter does; without it, in its checkpoint in memory.
    async fn save_state(&mut self, start_ms: UnixMillis) {
        let Some(ledger) = &self.ledger else {
            return;
        };
        let portal = ToSave {
            plan: &self.plan,
            ledger,
            watermark_ms: start_ms,
            backfill_done: self.backfill.done(),
            users: self.users.as_ref(),
        };
        let encoded = portal.encode();
        let Some(state) = &mut self.state else {
            match encoded {
                Ok(bytes) => self.checkpoint.keep(bytes),
                Err(e) => {
                    warn!(portal_id = %self.plan.portal_id, error = %e, "the portal's state could not be encoded; a panic would restart it from an older one");
                }
            }
            return;
        };
        let portal_id = self.plan.portal_id.as_str();
        state
            .save(portal_id, encoded, &mut self.snapshot, &self.store)
            .await;
    }

    /// When the next poll is due, given whether this one failed and when it was scheduled.
    fn next_due(&mut self, failed: bool, scheduled: tokio::time::Instant) -> tokio::time::Instant {
        let hint = self.api.counters().take_retry_after();
        let now = tokio::time::Instant::now();
        if failed {
            // A failing portal backs off (full jitter), never sooner than the service asked.
            // An attempt that fetched pages before failing (throttled mid-listing) made
            // progress: it resumes after one interval instead of backing off further.
            self.failures = if self.listing.made_progress() {
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

    /// Takes a new plan from a reload or discovery; the ledger and its counters stay unless the
    /// histogram buckets change (a histogram cannot change its buckets: the portal restarts at T0).
    async fn update_plan(&mut self) {
        let new = self.plan_rx.borrow_and_update().clone();
        self.listing.plan_changed(&self.plan, &new);
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
            self.snapshot.totals = None;
            self.snapshot.monthly_active_users = None;
        }
        if new.native_schema != self.plan.native_schema
            && let Some(ledger) = &mut self.ledger
        {
            let how = ledger.set_native_schema(new.native_schema, crate::clock::now_ms());
            tracing::info!(portal_id = %new.portal_id, from = self.plan.native_schema, to = new.native_schema, outcome = ?how, "native_histogram_schema changed: a lower schema merges the native buckets, a higher one starts them empty");
            self.snapshot.totals = Some(ledger.totals().clone());
        }
        if new.per_user != self.plan.per_user {
            self.rekey_ledger(&new);
            self.users = new.per_user.clone().map(UserLabels::new);
            self.snapshot.users.clear();
            if let Some(ledger) = &mut self.ledger {
                ledger.set_idle_user_ttl(new.ledger_settings().idle_user_ttl_ms);
            }
        }
        self.metadata.plan_changed(&self.plan, &new);
        self.snapshot.labels = new.labels.clone();
        self.plan = new;
        self.snapshot.meta = self.metadata.meta(&self.plan);
        self.locate();
        self.store.publish(self.snapshot.clone());
    }

    /// Brings the ledger's usernames to the label mode of `new` (they are its label values, see
    /// [`crate::users::key_records`]): raw names are hashed in place when the mode becomes
    /// hashed; hashed ones cannot become names again (nor take another salt): then the portal's
    /// ledger restarts at T0, as after a change of buckets.
    fn rekey_ledger(&mut self, new: &PortalPlan) {
        let (then, now) = (
            LabelFingerprint::of_keys(self.plan.per_user.as_ref()),
            LabelFingerprint::of_keys(new.per_user.as_ref()),
        );
        let Some(ledger) = self.ledger.as_ref().filter(|_| then != now) else {
            return;
        };
        let portal_id = new.portal_id.as_str();
        let rekeyed = new
            .per_user
            .as_ref()
            .filter(|_| then == LabelFingerprint::raw())
            .and_then(|u| {
                let mut state = ledger.to_state();
                state.rekey(|name| label_for(&u.mode, name));
                Ledger::from_state(&new.ledger_settings(), state).ok()
            });
        if rekeyed.is_some() {
            info!(
                portal_id,
                "per_user.username is now hashed: the usernames kept are hashed, counters continue"
            );
        } else {
            warn!(
                portal_id,
                "per_user.username or hash_salt changed from hashed (or per_user turned off): hashed usernames cannot be converted, the portal's counters restart"
            );
            self.backfill = Backfill::default();
            self.snapshot.totals = None;
            self.snapshot.monthly_active_users = None;
        }
        self.ledger = rekeyed;
    }

    /// The snapshot's region, account and interval, from the plan and the ARN known so far (an
    /// ARN learned from the sessions brings the account of a portal configured by id).
    fn locate(&mut self) {
        let arn = self.metadata.arn();
        let snap = &mut self.snapshot;
        snap.interval = self.plan.interval;
        snap.region = (self.plan.client.region.as_deref())
            .or_else(|| arn.and_then(region_of_arn))
            .map(str::to_string);
        snap.account_id = arn
            .and_then(account_of_arn)
            .or_else(|| {
                self.plan
                    .client
                    .role_arn
                    .as_deref()
                    .and_then(account_of_arn)
            })
            .map(str::to_string);
    }

    /// After a successful poll (and its backfill step): the ledger evicts its idle users, then
    /// the per-user series follow what it holds.
    fn update_user_series(&mut self, at_ms: UnixMillis) {
        let Some(ledger) = &mut self.ledger else {
            return;
        };
        ledger.evict_idle_users(at_ms);
        if let Some(users) = &mut self.users {
            self.snapshot.users = users.update(ledger);
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
                snap.last_error_message = None;
                snap.last_success_unix = Some(start_ms as f64 / 1000.0);
                self.last_success = Some(Instant::now());
                if let Some(ledger) = &self.ledger {
                    snap.active = Some(ledger.active_summary());
                    snap.totals = Some(ledger.totals().clone());
                    if self.backfill.done() {
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
                let hashed = matches!(
                    self.plan.per_user.as_ref().map(|u| &u.mode),
                    Some(LabelMode::Hashed { .. })
                );
                snap.last_error_message = Some(shown_message(&err.message(), hashed));
                let stale_after = self.plan.interval * STALE_INTERVALS;
                if self.last_success.is_none_or(|t| t.elapsed() >= stale_after) {
                    snap.active = None;
                }
            }
        }
        let (requests, errors) = self.api.counters().snapshot();
        snap.api_requests = requests;
        snap.api_errors = errors;
        let errors_total = snap
            .api_errors
            .values()
            .fold(0u64, |s, n| s.saturating_add(*n));
        let active = snap
            .up
            .then(|| snap.active.as_ref().map(|a| a.sessions))
            .flatten();
        let capacity = snap.meta.as_ref().and_then(|m| m.max_concurrent_sessions);
        snap.recent.record(now_ms(), active, capacity, errors_total);
        self.locate();
        self.store.publish(self.snapshot.clone());
    }
}
