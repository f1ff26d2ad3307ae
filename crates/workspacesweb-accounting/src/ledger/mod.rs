//! The session ledger: pure `(state, observations, poll time) -> (state, deltas)`.
//!
//! No I/O, no async, no SDK types. The poller calls [`Ledger::apply_poll`] once per successful
//! poll of one portal with everything that poll observed, and reads the aggregates back.
//!
//! # Semantics (SPEC sections 5 and 8)
//!
//! Every session id is counted at most once in `started` and once in `terminated`, however many
//! polls, pages, duplicates or retries carry it. Times are the API's `startTime`/`endTime`
//! (never poll times), in epoch milliseconds; all arithmetic saturates, so absurd timestamps
//! cannot panic or wrap.
//!
//! * **Tracked session**: a record with a `sessionId` and a `startTime` that is either Active in a
//!   poll, or Terminated and *relevant*. A tracked session counts once in `started` when its
//!   `startTime >= T0`; a session already running at T0 is the *baseline*: it is tracked (active
//!   gauges, session seconds from T0, `terminated` and the histogram when it ends) but never
//!   counted as started, so a restart without durable state never counts a running session twice.
//! * **Relevant** (for records not already tracked): an Active record always; another record when
//!   its latest known instant, `max(startTime, endTime)` over the fields present, is `>= T0`
//!   (for a complete record that is `endTime >= T0`). Older records are history: they only feed
//!   monthly active users.
//! * **Terminated**: a tracked session whose Terminated record arrives (or that is
//!   [forgotten](Ledger::forget)) counts once in `terminated`. A session already observed Active
//!   counts even if its `endTime` is before T0 (clock skew), so that
//!   `started + baseline - terminated == sessions still open` always holds.
//! * **Complete** terminated record: `endTime` present and `>= startTime`. Its duration
//!   `endTime - startTime` goes to the histogram and its session seconds become exact.
//!   Otherwise the session counts in `incomplete` and keeps the seconds accrued so far.
//! * **Session seconds**: per session, the length of `[max(start, T0), min(end, at)]`, accrued at
//!   every poll that sees it Active (up to the poll's `at_ms`) and made exact by its complete
//!   Terminated record (up to `endTime`, even if that is later than the poll: the API's clock
//!   wins). *Clamp*: a session's accrued time never decreases. If its `endTime` turns out earlier
//!   than a poll at which it was still listed Active (clock skew), the surplus already counted is
//!   kept, so the counter stays monotonic; the error is bounded by the skew.
//! * **Start in the future** (clock skew): the session counts as started and active; its age is 0
//!   and it accrues seconds only from its `startTime` on.
//! * **Incomplete** counts *sessions*, each at most once: a tracked session whose Terminated
//!   record is incomplete or lacks `startTime`, or that is forgotten; a record with an unknown
//!   status (once per id; the record is otherwise ignored: not active, not terminated, not in
//!   monthly users); a relevant record that cannot be tracked (no `sessionId` or no `startTime`),
//!   which counts only here. Untrackable records are deduplicated by id when they have one, else
//!   by a 64-bit hash of `(username, startTime)` (or of `(username, status, endTime)` when
//!   `startTime` is missing too), so an operator sees one count per bad session rather than one per
//!   poll. At most [`MAX_LOOSE_KEYS`] such keys are remembered; beyond that a bad record may be
//!   counted again at a later poll.
//! * **Active gauges** come from the deduplicated Active listing of the last poll: records with a
//!   `sessionId` (records without one cannot be deduplicated across pages and are left out).
//!   The oldest age uses the records that have a `startTime`.
//! * **Vanished** sessions (Active at an earlier poll, absent from the listing) are no longer
//!   active; they stay [unresolved](Ledger::unresolved) until a Terminated record arrives.
//!   A session seen Terminated first and Active later is shown in the gauges (it is in the
//!   listing) but is not counted again.
//! * **Monthly active users**: see [`Ledger::monthly_active_users`].
//! * **Memory**: see [`Ledger::prune`]. About 120 bytes per tracked session (36-char id).
//!
//! # Concurrency: the peak and the time at capacity
//!
//! Each [`Ledger::apply_poll`] at `at` closes the *interval* `(prev, at]`, where `prev` is the
//! `at` of the previous `apply_poll` (kept in the durable state, so after a restart the interval
//! spans the downtime, whose sessions the first poll lists back to the watermark).
//!
//! * **Timeline**: every tracked session is the half-open span `[startTime, endTime)` of API times;
//!   the concurrency at instant `t` is the number of spans with `start <= t < end`. A session
//!   listed Active, or *vanished and not yet resolved* (no Terminated record yet, e.g. GetSession
//!   could not say), is open (`end = +inf`): it counts as active until its end is known, so an
//!   interval closed before its record arrives may overstate; the figures of an interval are
//!   final when it closes and are never revised. A session terminated without a usable `endTime`
//!   (missing, or before `startTime`) or forgotten is kept out of the timeline entirely, as it is
//!   kept out of durations; records without `sessionId` or `startTime` are never on it.
//! * **Ties**: at one millisecond an end comes before a start (a session ending at `t` and one
//!   starting at `t` are never active together); a session with `endTime == startTime` never
//!   counts.
//! * **Peak** ([`ActiveSummary::peak`]): the highest concurrency at any instant of `(prev, at]`,
//!   i.e. the concurrency just after `prev` and after every start and end inside the interval
//!   (events at `at` itself included), swept over the start and end events of the sessions that
//!   overlap the interval: those open now, those terminated this poll (including sessions that
//!   started and ended between the two polls) and the baseline running since before T0. It is
//!   never below `sessions` of the same poll: the listing is itself an observation at `at`, and it
//!   may hold sessions the timeline lacks (no `startTime`, or a `startTime` after `at` through
//!   clock skew). On the first poll, and when `at <= prev` (the host clock stepped back), it
//!   equals `sessions`.
//! * **Time at capacity** ([`Totals::at_capacity_seconds`], exact in [`Ledger::at_capacity_ms`]):
//!   the measure, in milliseconds, of the instants of `[max(prev, T0), at)` where the concurrency
//!   is at or above the portal's limit, added at each poll while the limit is known
//!   ([`Ledger::set_capacity_limit`]; the limit known when an interval closes applies to all of
//!   it). Integer milliseconds throughout, like session seconds; it never decreases, and an
//!   interval with `at <= prev` adds nothing, so no stretch of time is counted twice.
//! * **Limits**: a record the API lists only after the poll that closes its interval (beyond the
//!   watermark's skew margin) is counted in the counters but not in that interval's figures;
//!   terminated sessions already pruned do not come back. Both need clock skew or listing lag
//!   beyond the margin.
//!
//! # Use by the poller, per portal
//!
//! 1. `Ledger::new(settings, t0)` when the first poll succeeds (T0 = its first request).
//! 2. Each poll at `at`: list every Active session; call [`Ledger::pending`] with that listing;
//!    scan Terminated sessions by start time descending down to the watermark (previous poll
//!    minus the skew margin; on the first poll, the backfill down to the month start); GetSession
//!    the pending sessions that started before the watermark; then
//!    [`Ledger::apply_poll`]`(at, listing, scan + GetSession results + backfill)`.
//!    A GetSession answering 404 is [`Ledger::forget`]; a failed one is simply retried next poll
//!    (the session stays [unresolved](Ledger::unresolved)).
//! 3. After the poll, [`Ledger::prune`]`(at - margin)`.
//! 4. Whenever GetPortal answers (and when a ledger is created), [`Ledger::set_capacity_limit`]
//!    with the portal's `maxConcurrentSessions` (`None` when not permitted or not set).

mod capacity;
mod month;
pub mod native;
mod packed;
mod state;

#[cfg(test)]
mod tests;

use std::hash::{DefaultHasher, Hash, Hasher};

// FxHash (rustc-hash): the keys are session ids and usernames from the AWS API, not from
// scrapers, so a DoS-resistant hasher buys nothing; Fx hashes them several times faster.
use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};
use std::sync::Arc;

use crate::session::{SessionRecord, SessionStatus, UnixMillis};

pub use month::month_bounds;
pub use native::{NativeHistogram, NativeResume};
pub use state::{
    LedgerState, LooseState, MAX_RESTORED_COUNT, PhaseState, SessionState, StateError, UserState,
};

/// Username key used for sessions whose username is missing or empty.
pub const UNKNOWN_USER: &str = "__unknown__";

/// Bound on remembered keys of untrackable incomplete records (see the module docs).
pub const MAX_LOOSE_KEYS: usize = 65_536;

/// Default histogram bounds of `session_duration_seconds` (SPEC section 5).
pub const DEFAULT_DURATION_BUCKETS: [f64; 10] = [
    60.0, 300.0, 900.0, 1800.0, 3600.0, 7200.0, 14400.0, 28800.0, 43200.0, 86400.0,
];

/// Gauges describing the sessions active at the last successful poll.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ActiveSummary {
    /// Sessions with status Active.
    pub sessions: u64,
    /// Distinct usernames among them (missing/empty username counts as one user, `__unknown__`).
    pub users: u64,
    /// Age in seconds of the oldest active session at the poll time (0 when none).
    pub max_age_seconds: f64,
    /// Highest number of sessions active at once between the previous poll and this one, from
    /// API start and end times (see "Concurrency" in the module docs); never below `sessions`.
    pub peak: u64,
}

/// A histogram with fixed upper bounds (seconds), non-cumulative bucket counts.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Histogram {
    /// Upper bounds, strictly increasing; `+Inf` is implicit.
    pub bounds: Vec<f64>,
    /// `counts[i]` observations in bucket i; `counts.len() == bounds.len() + 1` (last is +Inf).
    pub counts: Vec<u64>,
    /// Sum of observed values.
    pub sum: f64,
    /// Number of observations.
    pub count: u64,
}

impl Histogram {
    /// An empty histogram with the given upper bounds.
    pub fn with_bounds(bounds: Vec<f64>) -> Self {
        let counts = vec![0; bounds.len().saturating_add(1)];
        Self {
            bounds,
            counts,
            sum: 0.0,
            count: 0,
        }
    }

    /// Index of the bucket of `value`: the first bound `>= value` (Prometheus `le`), else `+Inf`.
    pub fn bucket_index(&self, value: f64) -> usize {
        self.bounds
            .iter()
            .position(|b| value <= *b)
            .unwrap_or(self.bounds.len())
    }

    /// Counts one observation (`sum` is left to the caller, which keeps it exact).
    fn observe(&mut self, value: f64) {
        let i = self.bucket_index(value);
        if let Some(c) = self.counts.get_mut(i) {
            *c = c.saturating_add(1);
        }
        self.count = self.count.saturating_add(1);
    }
}

/// Counters of one portal since its T0.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Totals {
    /// `sessions_started_total`.
    pub started: u64,
    /// `sessions_terminated_total`.
    pub terminated: u64,
    /// `session_records_incomplete_total`.
    pub incomplete: u64,
    /// `session_seconds_total`.
    pub session_seconds: f64,
    /// `session_duration_seconds`.
    pub durations: Histogram,
    /// `portal_at_capacity_seconds_total`; `None` while the portal's limit is unknown.
    pub at_capacity_seconds: Option<f64>,
    /// The same durations in native (exponential) buckets.
    pub native: NativeHistogram,
    /// T0: when these counters started from zero (their created timestamp).
    pub t0_ms: UnixMillis,
}

/// Settings of a ledger.
#[derive(Debug, Clone, PartialEq)]
pub struct LedgerSettings {
    /// Upper bounds (seconds) of the duration histogram, strictly increasing.
    pub duration_buckets: Vec<f64>,
    /// How long a user with no session left keeps its aggregates after its last activity, in
    /// milliseconds (see [`Ledger::evict_idle_users`]); 0 drops them as soon as they have none.
    pub idle_user_ttl_ms: i64,
    /// Schema of the native duration histogram ([`native`]).
    pub native_schema: i8,
}

impl Default for LedgerSettings {
    fn default() -> Self {
        Self {
            duration_buckets: DEFAULT_DURATION_BUCKETS.to_vec(),
            idle_user_ttl_ms: 0,
            native_schema: native::DEFAULT_SCHEMA,
        }
    }
}

/// What one call changed (for logs and tests; the totals already include it).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PollDeltas {
    /// Sessions counted as started.
    pub started: u64,
    /// Sessions counted as terminated.
    pub terminated: u64,
    /// Sessions or records counted as incomplete.
    pub incomplete: u64,
    /// Session seconds accrued, in milliseconds (exact).
    pub session_ms: i64,
    /// Session seconds accrued.
    pub session_seconds: f64,
    /// Durations (seconds) observed into the histogram.
    pub durations: Vec<f64>,
    /// Milliseconds at capacity added (exact).
    pub at_capacity_ms: i64,
}

/// Raw per-user aggregates, keyed by username (`__unknown__` for missing/empty).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UserTotals {
    /// Sessions of the user in the last Active listing.
    pub active: u64,
    /// Sessions of the user counted in `started`.
    pub started: u64,
    /// Session seconds of the user, in milliseconds (exact; sums over users equal the portal's).
    pub session_ms: i64,
    /// Session seconds of the user (`session_ms / 1000`).
    pub session_seconds: f64,
    /// `at_ms` of the last call at which the user was listed active or any of its counters moved.
    pub last_seen_ms: UnixMillis,
    /// `at_ms` of the call that first counted the user (created timestamp of its series): its
    /// counters were 0 before it.
    pub created_ms: UnixMillis,
}

/// A session the ledger expects a Terminated record for (the poller resolves it with GetSession).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    /// Session id.
    pub id: String,
    /// Its `startTime` as first tracked.
    pub start_ms: UnixMillis,
}

/// Where a tracked session stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// In the last Active listing.
    Listed,
    /// Seen Active before, absent from the listing since, no Terminated record yet.
    Vanished,
    /// Terminated (or forgotten) and counted; kept only to deduplicate until pruned.
    Done,
}

/// Sentinel for an unknown end time.
const NO_END: UnixMillis = UnixMillis::MIN;

/// State of one tracked session.
#[derive(Debug, Clone)]
struct Entry {
    /// Username key, shared with the per-user map.
    user: Arc<str>,
    /// `startTime`.
    start_ms: UnixMillis,
    /// `endTime` once resolved, else [`NO_END`].
    end_ms: UnixMillis,
    /// Session milliseconds already counted for it.
    accrued_ms: i64,
    /// Where it stands.
    phase: Phase,
    /// Whether it has been counted in `incomplete`.
    incomplete: bool,
}

impl Entry {
    /// Its place on the concurrency timeline: `[start, end)`, open-ended while it is listed or
    /// vanished; `None` when it terminated without a usable `endTime` (kept out, as for durations).
    fn span(&self) -> Option<(UnixMillis, Option<UnixMillis>)> {
        match self.phase {
            Phase::Listed | Phase::Vanished => Some((self.start_ms, None)),
            Phase::Done => (self.end_ms != NO_END && self.end_ms >= self.start_ms)
                .then_some((self.start_ms, Some(self.end_ms))),
        }
    }
}

/// Identity of an untrackable record counted in `incomplete`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum LooseKey {
    /// A record with an id (but no start, or an unknown status).
    Id(Box<str>),
    /// A record without id: hash of its content.
    Content(u64),
}

/// The counters proper, separate from the session map so both can be borrowed at once.
#[derive(Debug, Clone)]
struct Books {
    t0_ms: UnixMillis,
    totals: Totals,
    session_ms: i64,
    duration_sum_ms: i64,
    /// `portal_at_capacity_seconds_total` in exact milliseconds.
    at_capacity_ms: i64,
    users: HashMap<Arc<str>, UserTotals>,
}

impl Books {
    /// The shared key of a user, creating its aggregates if needed.
    fn user(&mut self, name: &str, at_ms: UnixMillis) -> Arc<str> {
        if let Some((k, _)) = self.users.get_key_value(name) {
            return k.clone();
        }
        let k: Arc<str> = Arc::from(name);
        self.users.insert(
            k.clone(),
            UserTotals {
                last_seen_ms: at_ms,
                created_ms: at_ms,
                ..UserTotals::default()
            },
        );
        k
    }

    /// A user's aggregates, created if needed, touched at `at_ms`: one lookup when it exists.
    fn user_mut(&mut self, name: &str, at_ms: UnixMillis) -> &mut UserTotals {
        if !self.users.contains_key(name) {
            self.user(name, at_ms);
        }
        let u = self
            .users
            .get_mut(name)
            .expect("the user was inserted just above");
        u.last_seen_ms = u.last_seen_ms.max(at_ms);
        u
    }

    fn touch(&mut self, user: &str, at_ms: UnixMillis) -> Option<&mut UserTotals> {
        let u = self.users.get_mut(user)?;
        u.last_seen_ms = u.last_seen_ms.max(at_ms);
        Some(u)
    }

    /// Counts a newly tracked session in `started` when it started at or after T0; a session
    /// already running at T0 is the baseline, not a start.
    fn started(&mut self, user: &str, start_ms: UnixMillis, at_ms: UnixMillis, d: &mut PollDeltas) {
        if start_ms < self.t0_ms {
            self.touch(user, at_ms);
            return;
        }
        self.totals.started = self.totals.started.saturating_add(1);
        d.started = d.started.saturating_add(1);
        if let Some(u) = self.touch(user, at_ms) {
            u.started = u.started.saturating_add(1);
        }
    }

    fn terminated(&mut self, user: &str, at_ms: UnixMillis, d: &mut PollDeltas) {
        self.totals.terminated = self.totals.terminated.saturating_add(1);
        d.terminated = d.terminated.saturating_add(1);
        self.touch(user, at_ms);
    }

    fn incomplete(&mut self, d: &mut PollDeltas) {
        self.totals.incomplete = self.totals.incomplete.saturating_add(1);
        d.incomplete = d.incomplete.saturating_add(1);
    }

    fn duration(&mut self, ms: i64, d: &mut PollDeltas) {
        let seconds = ms as f64 / 1000.0;
        self.totals.durations.observe(seconds);
        self.totals.native.observe_ms(ms);
        self.duration_sum_ms = self.duration_sum_ms.saturating_add(ms);
        self.totals.durations.sum = self.duration_sum_ms as f64 / 1000.0;
        d.durations.push(seconds);
    }

    /// Raises the session's accrued time to `[max(start, T0), upto]`, never lowering it (the clamp).
    fn accrue(&mut self, e: &mut Entry, upto: UnixMillis, at_ms: UnixMillis, d: &mut PollDeltas) {
        let target = upto.saturating_sub(e.start_ms.max(self.t0_ms)).max(0);
        if target <= e.accrued_ms {
            return;
        }
        let delta = target.saturating_sub(e.accrued_ms);
        e.accrued_ms = target;
        self.session_ms = self.session_ms.saturating_add(delta);
        self.totals.session_seconds = self.session_ms as f64 / 1000.0;
        d.session_ms = d.session_ms.saturating_add(delta);
        d.session_seconds = d.session_ms as f64 / 1000.0;
        if let Some(u) = self.touch(&e.user, at_ms) {
            u.session_ms = u.session_ms.saturating_add(delta);
            u.session_seconds = u.session_ms as f64 / 1000.0;
        }
    }
}

/// The username key of a record: the raw name, or [`UNKNOWN_USER`] when missing or empty.
pub fn user_key(username: Option<&str>) -> &str {
    match username {
        Some(name) if !name.is_empty() => name,
        _ => UNKNOWN_USER,
    }
}

/// Latest instant a record is known to cover: `max(start, end)` over the fields present.
fn latest_known(r: &SessionRecord) -> Option<UnixMillis> {
    match (r.start_ms, r.end_ms) {
        (Some(s), Some(e)) => Some(s.max(e)),
        (s, e) => s.or(e),
    }
}

/// Identity of an untrackable record (see the module docs).
fn loose_key(r: &SessionRecord) -> LooseKey {
    if let Some(id) = &r.id {
        return LooseKey::Id(id.as_str().into());
    }
    let mut h = DefaultHasher::new();
    user_key(r.username.as_deref()).hash(&mut h);
    match r.start_ms {
        Some(s) => s.hash(&mut h),
        None => {
            r.status.as_str().hash(&mut h);
            r.end_ms.hash(&mut h);
        }
    }
    LooseKey::Content(h.finish())
}

/// The exact account of one portal's sessions since its T0.
#[derive(Debug, Clone)]
pub struct Ledger {
    books: Books,
    sessions: HashMap<Box<str>, Entry>,
    loose: HashMap<LooseKey, UnixMillis>,
    active: ActiveSummary,
    month: Option<(UnixMillis, UnixMillis)>,
    month_users: HashSet<Box<str>>,
    pruned_below: UnixMillis,
    /// `at_ms` of the latest [`apply_poll`](Ledger::apply_poll): where the next interval begins.
    last_poll_ms: Option<UnixMillis>,
    /// The portal's `maxConcurrentSessions`, when known.
    capacity_limit: Option<u64>,
    /// [`LedgerSettings::idle_user_ttl_ms`].
    idle_user_ttl_ms: i64,
}

impl Ledger {
    /// A ledger whose counters count from `t0_ms` (the first request of the first successful poll).
    pub fn new(settings: LedgerSettings, t0_ms: UnixMillis) -> Self {
        Self {
            books: Books {
                t0_ms,
                totals: Totals {
                    durations: Histogram::with_bounds(settings.duration_buckets),
                    native: NativeHistogram::new(settings.native_schema, t0_ms),
                    t0_ms,
                    ..Totals::default()
                },
                session_ms: 0,
                duration_sum_ms: 0,
                at_capacity_ms: 0,
                users: HashMap::default(),
            },
            sessions: HashMap::default(),
            loose: HashMap::default(),
            active: ActiveSummary::default(),
            month: None,
            month_users: HashSet::default(),
            pruned_below: UnixMillis::MIN,
            last_poll_ms: None,
            capacity_limit: None,
            idle_user_ttl_ms: settings.idle_user_ttl_ms,
        }
    }

    /// T0 of this ledger.
    pub fn t0_ms(&self) -> UnixMillis {
        self.books.t0_ms
    }

    /// Sessions the poller should resolve with GetSession, given this poll's Active listing:
    /// tracked sessions not yet terminated that are absent from `active` (sorted by id).
    ///
    /// Call it before [`apply_poll`](Self::apply_poll) with the same listing; after the call,
    /// [`unresolved`](Self::unresolved) gives the same set minus what was resolved.
    pub fn pending(&self, active: &[SessionRecord]) -> Vec<Pending> {
        let listed: HashSet<&str> = active
            .iter()
            .filter(|r| r.status == SessionStatus::Active)
            .filter_map(|r| r.id.as_deref())
            .collect();
        let mut out: Vec<Pending> = self
            .sessions
            .iter()
            .filter(|(id, e)| e.phase != Phase::Done && !listed.contains(&***id))
            .map(|(id, e)| Pending {
                id: id.to_string(),
                start_ms: e.start_ms,
            })
            .collect();
        out.sort_by(|a, b| a.id.cmp(&b.id));
        out
    }

    /// Ids of sessions Active at an earlier poll, absent from the last listing, and not yet
    /// resolved by a Terminated record (sorted).
    pub fn unresolved(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .sessions
            .iter()
            .filter(|(_, e)| e.phase == Phase::Vanished)
            .map(|(id, _)| id.to_string())
            .collect();
        out.sort();
        out
    }

    /// Applies one successful poll observed at `at_ms`.
    ///
    /// `active` is the complete Active listing (all pages, duplicates allowed); `other` holds the
    /// Terminated (or other-status) records seen by the same poll: the descending scan, GetSession
    /// results, the backfill (duplicates, any order, old history allowed). A record with another
    /// status inside `active` is handled as if it were in `other`.
    pub fn apply_poll(
        &mut self,
        at_ms: UnixMillis,
        active: &[SessionRecord],
        other: &[SessionRecord],
    ) -> PollDeltas {
        let mut d = PollDeltas::default();
        self.roll_month(at_ms);
        for u in self.books.users.values_mut() {
            u.active = 0;
        }

        // Sessions listed last time are presumed vanished; the loop below re-marks the ones
        // listed now (every id it inserts into `listed` reaches `observe_active(.., true, ..)`).
        // Same result as checking each tracked id against `listed` afterwards, without a lookup.
        for e in self.sessions.values_mut() {
            if e.phase == Phase::Listed {
                e.phase = Phase::Vanished;
            }
        }

        let mut listed: HashSet<&str> =
            HashSet::with_capacity_and_hasher(active.len(), Default::default());
        // Distinct users among the listed sessions: every user's `active` was reset above, so a
        // user is new to this listing exactly when its count leaves 0.
        let mut users_now: u64 = 0;
        let mut oldest: Option<UnixMillis> = None;
        let mut misfiled: Vec<&SessionRecord> = Vec::new();
        for r in active {
            if r.status != SessionStatus::Active {
                misfiled.push(r);
                continue;
            }
            let name = user_key(r.username.as_deref());
            self.add_month_user(name);
            let Some(id) = r.id.as_deref() else {
                self.count_loose(r, at_ms, &mut d);
                continue;
            };
            if !listed.insert(id) {
                continue;
            }
            if let Some(s) = r.start_ms {
                oldest = Some(oldest.map_or(s, |o| o.min(s)));
            }
            let u = self.books.user_mut(name, at_ms);
            if u.active == 0 {
                users_now += 1;
            }
            u.active = u.active.saturating_add(1);
            self.observe_active(id, r, at_ms, true, &mut d);
        }
        self.active = ActiveSummary {
            sessions: listed.len() as u64,
            users: users_now,
            max_age_seconds: oldest.map_or(0, |s| at_ms.saturating_sub(s).max(0)).max(0) as f64
                / 1000.0,
            peak: 0,
        };

        for r in misfiled.into_iter().chain(other) {
            self.observe_other(r, at_ms, &mut d);
        }
        self.close_interval(at_ms, &mut d);
        d
    }

    /// Sets the portal's `maxConcurrentSessions` (`None`: unknown, e.g. GetPortal not permitted).
    ///
    /// The limit applies to the whole interval that the next [`apply_poll`](Self::apply_poll)
    /// closes; `portal_at_capacity_seconds_total` ([`Totals::at_capacity_seconds`]) exists while it
    /// is known. A limit of 0, outside the API's range (1 to 5000), counts as unknown.
    pub fn set_capacity_limit(&mut self, limit: Option<u64>) {
        self.capacity_limit = limit.filter(|l| *l > 0);
        self.books.totals.at_capacity_seconds = self
            .capacity_limit
            .map(|_| self.books.at_capacity_ms as f64 / 1000.0);
    }

    /// Changes [`LedgerSettings::idle_user_ttl_ms`] (the histogram's buckets cannot change).
    pub fn set_idle_user_ttl(&mut self, ttl_ms: i64) {
        self.idle_user_ttl_ms = ttl_ms;
    }

    /// Changes [`LedgerSettings::native_schema`] at `at_ms`: a lower schema merges the native
    /// buckets exactly, a higher one starts them empty (see [`native`]); the classic histogram
    /// and every counter stay.
    pub fn set_native_schema(&mut self, schema: i8, at_ms: UnixMillis) -> NativeResume {
        let native = std::mem::take(&mut self.books.totals.native);
        let (native, how) = native.with_schema(schema, at_ms);
        self.books.totals.native = native;
        how
    }

    /// The limit set by [`set_capacity_limit`](Self::set_capacity_limit), if known.
    pub fn capacity_limit(&self) -> Option<u64> {
        self.capacity_limit
    }

    /// Ends the interval `(last poll, at_ms]`: its peak and its time at capacity.
    fn close_interval(&mut self, at_ms: UnixMillis, d: &mut PollDeltas) {
        let from = self
            .last_poll_ms
            .replace(self.last_poll_ms.map_or(at_ms, |l| l.max(at_ms)));
        self.active.peak = self.active.sessions;
        let Some(from) = from.filter(|f| *f < at_ms) else {
            return;
        };
        let spans = self.sessions.values().filter_map(Entry::span);
        let figures = capacity::evaluate(spans, from, at_ms, self.books.t0_ms, self.capacity_limit);
        self.active.peak = self.active.peak.max(figures.peak);
        if self.capacity_limit.is_some() {
            let b = &mut self.books;
            b.at_capacity_ms = b.at_capacity_ms.saturating_add(figures.at_capacity_ms);
            b.totals.at_capacity_seconds = Some(b.at_capacity_ms as f64 / 1000.0);
            d.at_capacity_ms = figures.at_capacity_ms;
        }
    }

    /// Applies records obtained outside a full poll (a backfill fed in several parts, a late
    /// GetSession answer), observed at `at_ms`. Same rules as the `other` of
    /// [`apply_poll`](Self::apply_poll), but the Active listing and its gauges are left as they are;
    /// an Active record here counts as started and accrues, but is not gauged.
    pub fn apply_records(&mut self, at_ms: UnixMillis, records: &[SessionRecord]) -> PollDeltas {
        let mut d = PollDeltas::default();
        self.roll_month(at_ms);
        for r in records {
            self.observe_other(r, at_ms, &mut d);
        }
        d
    }

    /// Marks an open session as gone without a record (e.g. GetSession answered 404).
    ///
    /// It counts once in `terminated` and in `incomplete`; its session seconds stay as accrued
    /// (up to the last poll that listed it); no duration is observed. Unknown or already
    /// terminated ids change nothing.
    pub fn forget(&mut self, id: &str, at_ms: UnixMillis) -> PollDeltas {
        let mut d = PollDeltas::default();
        if let Some(e) = self.sessions.get_mut(id)
            && e.phase != Phase::Done
        {
            e.phase = Phase::Done;
            self.books.terminated(&e.user, at_ms, &mut d);
            if !e.incomplete {
                e.incomplete = true;
                self.books.incomplete(&mut d);
            }
        }
        d
    }

    /// Forgets what the API can no longer return, bounding memory.
    ///
    /// Contract: call it after a poll with `before_start_ms` no later than the lowest `startTime`
    /// that a future Terminated record of a not-yet-tracked session can have, i.e. the watermark
    /// of the next descending scan (this poll's time minus the skew margin). It drops terminated
    /// sessions that started before it and remembered untrackable records last seen before it.
    /// Open sessions (listed or unresolved) are never dropped. From then on, a Terminated record
    /// of an untracked session whose latest known instant (its `startTime` when present) is
    /// before the highest `before_start_ms` so far is ignored for the counters (it was counted
    /// already, or belongs to history) and only feeds monthly active users. Pruning too high
    /// therefore undercounts sessions that start and end between two polls; it never double
    /// counts. An Active record is always honoured.
    pub fn prune(&mut self, before_start_ms: UnixMillis) {
        self.pruned_below = self.pruned_below.max(before_start_ms);
        self.sessions
            .retain(|_, e| e.phase != Phase::Done || e.start_ms >= before_start_ms);
        self.loose.retain(|_, seen| *seen >= before_start_ms);
    }

    /// Gauges of the last Active listing.
    pub fn active_summary(&self) -> ActiveSummary {
        self.active
    }

    /// Counters since T0.
    pub fn totals(&self) -> &Totals {
        &self.books.totals
    }

    /// `session_seconds_total` in exact milliseconds.
    pub fn session_ms(&self) -> i64 {
        self.books.session_ms
    }

    /// `portal_at_capacity_seconds_total` in exact milliseconds (counted while the limit is known).
    pub fn at_capacity_ms(&self) -> i64 {
        self.books.at_capacity_ms
    }

    /// Raw per-user aggregates (unordered); sums of `started` and `session_ms` equal the totals.
    pub fn users(&self) -> impl Iterator<Item = (&str, &UserTotals)> {
        self.books.users.iter().map(|(k, u)| (&**k, u))
    }

    /// Distinct usernames with a session overlapping the current UTC month (the month of the
    /// latest `at_ms` applied; it never goes back).
    ///
    /// A user counts when a session of theirs is in an Active listing of this month, or when a
    /// Terminated or Active record (any age, tracked or not; unknown status excluded) overlaps the
    /// month: `startTime < month end` (or missing) and its latest known instant
    /// (`max(startTime, endTime)`) `>= month start`. At the first call in a later month the set
    /// restarts with the users of the listing and records of that call, plus remembered
    /// terminated sessions that ended in the new month.
    pub fn monthly_active_users(&self) -> u64 {
        self.month_users.len() as u64
    }

    /// Sessions held in memory (tracked plus remembered untrackable records).
    pub fn tracked_sessions(&self) -> usize {
        self.sessions.len().saturating_add(self.loose.len())
    }

    /// Drops the aggregates of idle users at `at_ms`: no active session, no session still held by
    /// the ledger, and no activity for [`LedgerSettings::idle_user_ttl_ms`] (`last_seen_ms` before
    /// `at_ms` minus it); returns how many were dropped. The one place where users are evicted:
    /// their label series ([`crate::users`]) follow what is left.
    ///
    /// The memory bound for portals with many short-lived usernames: call it after each poll,
    /// after [`prune`](Self::prune), which releases their old sessions. After it, sums over
    /// [`users`](Self::users) equal the totals minus what the dropped users had; a returning user
    /// starts again from zero.
    pub fn evict_idle_users(&mut self, at_ms: UnixMillis) -> usize {
        let before_ms = at_ms.saturating_sub(self.idle_user_ttl_ms);
        let len = self.books.users.len();
        self.books.users.retain(|name, u| {
            u.active > 0 || u.last_seen_ms >= before_ms || Arc::strong_count(name) > 1
        });
        len.saturating_sub(self.books.users.len())
    }

    fn observe_other(&mut self, r: &SessionRecord, at_ms: UnixMillis, d: &mut PollDeltas) {
        match &r.status {
            SessionStatus::Active => {
                self.add_month_user(user_key(r.username.as_deref()));
                match r.id.as_deref() {
                    Some(id) => self.observe_active(id, r, at_ms, false, d),
                    None => self.count_loose(r, at_ms, d),
                }
            }
            SessionStatus::Terminated => self.observe_terminated(r, at_ms, d),
            SessionStatus::Unknown(_) => self.observe_unknown(r, at_ms, d),
        }
    }

    fn roll_month(&mut self, at_ms: UnixMillis) {
        let (start, end) = month_bounds(at_ms);
        if self.month.is_some_and(|(cur, _)| cur >= start) {
            return;
        }
        self.month = Some((start, end));
        self.month_users.clear();
        for e in self.sessions.values() {
            if e.phase == Phase::Done && e.end_ms != NO_END && e.end_ms >= start && e.start_ms < end
            {
                self.month_users.insert((*e.user).into());
            }
        }
    }

    fn add_month_user(&mut self, name: &str) {
        if !self.month_users.contains(name) {
            self.month_users.insert(name.into());
        }
    }

    fn add_month_user_if_overlaps(&mut self, r: &SessionRecord) {
        let Some((start, end)) = self.month else {
            return;
        };
        let begins_in_time = r.start_ms.is_none_or(|s| s < end);
        if begins_in_time && latest_known(r).is_some_and(|l| l >= start) {
            self.add_month_user(user_key(r.username.as_deref()));
        }
    }

    /// An Active record with an id (from the listing, or elsewhere when `listed` is false).
    fn observe_active(
        &mut self,
        id: &str,
        r: &SessionRecord,
        at_ms: UnixMillis,
        listed: bool,
        d: &mut PollDeltas,
    ) {
        if let Some(e) = self.sessions.get_mut(id) {
            if r.start_ms.is_none() && !e.incomplete {
                e.incomplete = true;
                self.books.incomplete(d);
            }
            if e.phase != Phase::Done {
                if listed {
                    e.phase = Phase::Listed;
                }
                self.books.accrue(e, at_ms, at_ms, d);
            }
            return;
        }
        let Some(start_ms) = r.start_ms else {
            self.count_loose(r, at_ms, d);
            return;
        };
        let user = self.books.user(user_key(r.username.as_deref()), at_ms);
        let mut e = Entry {
            user,
            start_ms,
            end_ms: NO_END,
            accrued_ms: 0,
            phase: if listed {
                Phase::Listed
            } else {
                Phase::Vanished
            },
            incomplete: self.take_loose_id(id),
        };
        self.books.started(&e.user, e.start_ms, at_ms, d);
        self.books.accrue(&mut e, at_ms, at_ms, d);
        self.sessions.insert(id.into(), e);
    }

    fn observe_terminated(&mut self, r: &SessionRecord, at_ms: UnixMillis, d: &mut PollDeltas) {
        self.add_month_user_if_overlaps(r);
        let Some(id) = r.id.as_deref() else {
            self.count_loose(r, at_ms, d);
            return;
        };
        let complete_end = match (r.start_ms, r.end_ms) {
            (Some(s), Some(e)) if e >= s => Some((s, e)),
            _ => None,
        };
        if let Some(e) = self.sessions.get_mut(id) {
            if e.phase == Phase::Done {
                return;
            }
            e.phase = Phase::Done;
            self.books.terminated(&e.user, at_ms, d);
            match complete_end {
                Some((s, end)) => {
                    e.start_ms = s;
                    e.end_ms = end;
                    self.books.duration(end.saturating_sub(s), d);
                    self.books.accrue(e, end, at_ms, d);
                }
                None => {
                    e.end_ms = r.end_ms.unwrap_or(NO_END);
                    if !e.incomplete {
                        e.incomplete = true;
                        self.books.incomplete(d);
                    }
                }
            }
            return;
        }
        let Some(start_ms) = r.start_ms else {
            self.count_loose(r, at_ms, d);
            return;
        };
        let latest = latest_known(r).unwrap_or(start_ms);
        if start_ms < self.pruned_below || latest < self.books.t0_ms {
            return;
        }
        let user = self.books.user(user_key(r.username.as_deref()), at_ms);
        let mut e = Entry {
            user,
            start_ms,
            end_ms: r.end_ms.unwrap_or(NO_END),
            accrued_ms: 0,
            phase: Phase::Done,
            incomplete: self.take_loose_id(id),
        };
        self.books.started(&e.user, e.start_ms, at_ms, d);
        self.books.terminated(&e.user, at_ms, d);
        match complete_end {
            Some((s, end)) => {
                self.books.duration(end.saturating_sub(s), d);
                self.books.accrue(&mut e, end, at_ms, d);
            }
            None => {
                if !e.incomplete {
                    e.incomplete = true;
                    self.books.incomplete(d);
                }
            }
        }
        self.sessions.insert(id.into(), e);
    }

    fn observe_unknown(&mut self, r: &SessionRecord, at_ms: UnixMillis, d: &mut PollDeltas) {
        if let Some(e) = r.id.as_deref().and_then(|id| self.sessions.get_mut(id)) {
            if !e.incomplete {
                e.incomplete = true;
                self.books.incomplete(d);
            }
            // A vanished session resolved to a status we cannot read is over as far as the
            // listing is concerned: end it like `forget`, or GetSession would ask for it forever.
            if e.phase == Phase::Vanished {
                e.phase = Phase::Done;
                self.books.terminated(&e.user, at_ms, d);
            }
            return;
        }
        self.count_loose(r, at_ms, d);
    }

    /// Removes the loose key of `id`, if any (no allocation in the usual case of no loose keys).
    fn take_loose_id(&mut self, id: &str) -> bool {
        !self.loose.is_empty() && self.loose.remove(&LooseKey::Id(id.into())).is_some()
    }

    /// A record that cannot be tracked: counts once in `incomplete` when relevant.
    fn count_loose(&mut self, r: &SessionRecord, at_ms: UnixMillis, d: &mut PollDeltas) {
        let is_active = r.status == SessionStatus::Active;
        let latest = latest_known(r);
        if !is_active && latest.is_some_and(|l| l < self.books.t0_ms) {
            return;
        }
        let key = loose_key(r);
        if let Some(seen) = self.loose.get_mut(&key) {
            *seen = (*seen).max(at_ms);
            return;
        }
        if !is_active && latest.is_some_and(|l| l < self.pruned_below) {
            return;
        }
        self.books.incomplete(d);
        if self.loose.len() < MAX_LOOSE_KEYS {
            self.loose.insert(key, at_ms);
        }
    }
}
