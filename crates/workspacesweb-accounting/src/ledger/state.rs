//! The ledger as plain data, for durable state: everything needed to continue counting exactly
//! after a restart (T0, every counter, per-user aggregates, the sessions still held, the month's
//! users). Pure: serialization formats and files belong to the caller.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::{
    ActiveSummary, Books, Entry, HashMap, HashSet, Histogram, Ledger, LedgerSettings, LooseKey,
    NO_END, NativeHistogram, NativeResume, Phase, Totals, UserTotals,
};
use crate::session::UnixMillis;

/// A [`Ledger`] as plain data ([`Ledger::to_state`], [`Ledger::from_state`]); `S` is `String`
/// when owned, `&str` when it only borrows the ledger to be written ([`Ledger::view`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LedgerState<S = String> {
    /// T0 of the ledger.
    pub t0_ms: UnixMillis,
    /// `sessions_started_total`.
    pub started: u64,
    /// `sessions_terminated_total`.
    pub terminated: u64,
    /// `session_records_incomplete_total`.
    pub incomplete: u64,
    /// `session_seconds_total`, in exact milliseconds.
    pub session_ms: i64,
    /// Histogram upper bounds (seconds).
    pub duration_bounds: Vec<f64>,
    /// Non-cumulative bucket counts (`duration_bounds.len() + 1`, the last is `+Inf`).
    pub duration_counts: Vec<u64>,
    /// Sum of the observed durations, in exact milliseconds.
    pub duration_sum_ms: i64,
    /// Per-user aggregates: `(username, active, started, session_ms, last_seen_ms)`.
    pub users: Vec<(S, u64, u64, i64, UnixMillis)>,
    /// Sessions held: `(id, username, start_ms, end_ms or null, accrued_ms, phase, incomplete)`.
    pub sessions: Vec<SessionState<S>>,
    /// Untrackable records already counted as incomplete, with when they were last seen.
    pub loose: Vec<(LooseState<S>, UnixMillis)>,
    /// Gauges of the last Active listing.
    pub active: (u64, u64, f64),
    /// The current UTC month `(start, end)`, once a poll was applied.
    pub month: Option<(UnixMillis, UnixMillis)>,
    /// Usernames with a session in that month.
    pub month_users: Vec<S>,
    /// Highest prune bound so far.
    pub pruned_below: UnixMillis,
    /// `active_sessions_peak` of the last poll. Fields from here on were added after the first
    /// state format and default when absent, so older state files still load.
    #[serde(default)]
    pub active_peak: u64,
    /// `at_ms` of the latest poll applied: where the next concurrency interval begins (`None`:
    /// the next poll is treated as the first, its peak is its active count).
    #[serde(default)]
    pub last_poll_ms: Option<UnixMillis>,
    /// The portal's `maxConcurrentSessions` as last known.
    #[serde(default)]
    pub capacity_limit: Option<u64>,
    /// `portal_at_capacity_seconds_total`, in exact milliseconds.
    #[serde(default)]
    pub at_capacity_ms: i64,
    /// The native duration histogram; absent in a state written before it, which resumes with
    /// it empty ([`LedgerState::resume_native`]).
    #[serde(default)]
    pub native: Option<NativeHistogram>,
    /// When each user of `users` was first counted (its series' created timestamp); a user
    /// missing here (a state written before it) takes T0, when every counter was 0.
    #[serde(default = "Vec::new")]
    pub user_created: Vec<(S, UnixMillis)>,
}

impl<S> LedgerState<S> {
    /// The native histogram to resume under `schema`, and what became of the stored one: kept,
    /// merged into a lower schema, or started empty (none stored, or a higher schema) as of the
    /// last poll (the sessions counted since are in it).
    pub fn resume_native(&self, schema: i8) -> (NativeHistogram, NativeResume) {
        let since = self.last_poll_ms.unwrap_or(self.t0_ms);
        match &self.native {
            Some(native) => native.clone().with_schema(schema, since),
            None => (NativeHistogram::new(schema, since), NativeResume::Absent),
        }
    }
}

/// One held session (see [`LedgerState::sessions`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionState<S = String>(
    pub S,
    pub S,
    pub UnixMillis,
    pub Option<UnixMillis>,
    pub i64,
    pub PhaseState,
    pub bool,
);

/// Where a held session stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PhaseState {
    /// In the last Active listing.
    Listed,
    /// Seen Active before, absent from the listing since, not yet resolved.
    Vanished,
    /// Terminated and counted.
    Done,
}

/// Identity of an untrackable record.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum LooseState<S = String> {
    /// By session id.
    Id(S),
    /// By content hash.
    Content(u64),
}

/// Why a [`LedgerState`] cannot be resumed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum StateError {
    /// The histogram buckets differ from the configured ones.
    #[error("duration_buckets changed (state {stored:?}, config {configured:?})")]
    Buckets {
        /// Buckets in the state.
        stored: Vec<f64>,
        /// Buckets configured now.
        configured: Vec<f64>,
    },
    /// The numbers do not add up (a damaged or hand-edited state).
    #[error("inconsistent state: {0}")]
    Inconsistent(&'static str),
}

impl Ledger {
    /// This ledger as plain data, borrowing its strings: what a state write serializes, without
    /// copying or sorting the sessions (the order of the lists is that of the maps).
    pub fn view(&self) -> LedgerState<&str> {
        let b = &self.books;
        let users: Vec<_> = b
            .users
            .iter()
            .map(|(k, u)| (&**k, u.active, u.started, u.session_ms, u.last_seen_ms))
            .collect();
        let sessions: Vec<_> = self
            .sessions
            .iter()
            .map(|(id, e)| {
                SessionState(
                    &**id,
                    &*e.user,
                    e.start_ms,
                    (e.end_ms != NO_END).then_some(e.end_ms),
                    e.accrued_ms,
                    match e.phase {
                        Phase::Listed => PhaseState::Listed,
                        Phase::Vanished => PhaseState::Vanished,
                        Phase::Done => PhaseState::Done,
                    },
                    e.incomplete,
                )
            })
            .collect();
        let loose: Vec<_> = self
            .loose
            .iter()
            .map(|(k, seen)| {
                let k = match k {
                    LooseKey::Id(id) => LooseState::Id(&**id),
                    LooseKey::Content(h) => LooseState::Content(*h),
                };
                (k, *seen)
            })
            .collect();
        let month_users: Vec<&str> = self.month_users.iter().map(|u| &**u).collect();
        let user_created = b.users.iter().map(|(k, u)| (&**k, u.created_ms)).collect();
        LedgerState {
            t0_ms: b.t0_ms,
            started: b.totals.started,
            terminated: b.totals.terminated,
            incomplete: b.totals.incomplete,
            session_ms: b.session_ms,
            duration_bounds: b.totals.durations.bounds.clone(),
            duration_counts: b.totals.durations.counts.clone(),
            duration_sum_ms: b.duration_sum_ms,
            users,
            sessions,
            loose,
            active: (
                self.active.sessions,
                self.active.users,
                self.active.max_age_seconds,
            ),
            month: self.month,
            month_users,
            pruned_below: self.pruned_below,
            active_peak: self.active.peak,
            last_poll_ms: self.last_poll_ms,
            capacity_limit: self.capacity_limit,
            at_capacity_ms: b.at_capacity_ms,
            native: Some(b.totals.native.clone()),
            user_created,
        }
    }

    /// This ledger as owned plain data, every list sorted (equal ledgers give equal states).
    pub fn to_state(&self) -> LedgerState {
        let v = self.view();
        let mut state = LedgerState {
            t0_ms: v.t0_ms,
            started: v.started,
            terminated: v.terminated,
            incomplete: v.incomplete,
            session_ms: v.session_ms,
            duration_bounds: v.duration_bounds,
            duration_counts: v.duration_counts,
            duration_sum_ms: v.duration_sum_ms,
            users: v
                .users
                .into_iter()
                .map(|(n, a, s, ms, seen)| (n.to_owned(), a, s, ms, seen))
                .collect(),
            sessions: v
                .sessions
                .into_iter()
                .map(|SessionState(id, u, s, e, a, p, i)| {
                    SessionState(id.to_owned(), u.to_owned(), s, e, a, p, i)
                })
                .collect(),
            loose: v
                .loose
                .into_iter()
                .map(|(k, seen)| {
                    let k = match k {
                        LooseState::Id(id) => LooseState::Id(id.to_owned()),
                        LooseState::Content(h) => LooseState::Content(h),
                    };
                    (k, seen)
                })
                .collect(),
            active: v.active,
            month: v.month,
            month_users: v.month_users.into_iter().map(str::to_owned).collect(),
            pruned_below: v.pruned_below,
            active_peak: v.active_peak,
            last_poll_ms: v.last_poll_ms,
            capacity_limit: v.capacity_limit,
            at_capacity_ms: v.at_capacity_ms,
            native: v.native,
            user_created: v
                .user_created
                .into_iter()
                .map(|(n, at)| (n.to_owned(), at))
                .collect(),
        };
        state.users.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        state.user_created.sort_unstable();
        state.sessions.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        state.loose.sort_unstable();
        state.month_users.sort_unstable();
        state
    }

    /// A ledger that continues `state` exactly, if it was made with the same `settings` (the
    /// histogram's buckets; the idle-user TTL is taken from `settings`).
    pub fn from_state(settings: &LedgerSettings, state: LedgerState) -> Result<Self, StateError> {
        if state.duration_bounds != settings.duration_buckets {
            return Err(StateError::Buckets {
                stored: state.duration_bounds,
                configured: settings.duration_buckets.clone(),
            });
        }
        let mut books = books_of(&state, settings.native_schema)?;
        let sessions = sessions_of(&mut books, state.sessions);
        let loose = state
            .loose
            .into_iter()
            .map(|(k, seen)| {
                let k = match k {
                    LooseState::Id(id) => LooseKey::Id(id.into_boxed_str()),
                    LooseState::Content(h) => LooseKey::Content(h),
                };
                (k, seen)
            })
            .collect();
        let month_users: HashSet<Box<str>> = state
            .month_users
            .into_iter()
            .map(String::into_boxed_str)
            .collect();
        let (sessions_now, users_now, max_age_seconds) = state.active;
        let mut ledger = Ledger {
            books,
            sessions,
            loose,
            active: ActiveSummary {
                sessions: sessions_now,
                users: users_now,
                max_age_seconds,
                peak: state.active_peak,
            },
            month: state.month,
            month_users,
            pruned_below: state.pruned_below,
            last_poll_ms: state.last_poll_ms,
            capacity_limit: None,
            idle_user_ttl_ms: settings.idle_user_ttl_ms,
        };
        ledger.set_capacity_limit(state.capacity_limit);
        Ok(ledger)
    }
}

/// The counters and per-user aggregates of `state`, checked for consistency.
fn books_of(state: &LedgerState, native_schema: i8) -> Result<Books, StateError> {
    if state.duration_counts.len() != state.duration_bounds.len() + 1 {
        return Err(StateError::Inconsistent(
            "histogram bucket counts do not match its bounds",
        ));
    }
    let count = state
        .duration_counts
        .iter()
        .try_fold(0u64, |a, c| a.checked_add(*c))
        .ok_or(StateError::Inconsistent("histogram count overflows"))?;
    if state.session_ms < 0 || state.duration_sum_ms < 0 || state.at_capacity_ms < 0 {
        return Err(StateError::Inconsistent("negative session time"));
    }
    let durations = Histogram {
        bounds: state.duration_bounds.clone(),
        counts: state.duration_counts.clone(),
        sum: state.duration_sum_ms as f64 / 1000.0,
        count,
    };
    if let Some(native) = &state.native
        && !(native.is_consistent()
            && native.count <= count
            && native.sum_ms <= state.duration_sum_ms)
    {
        return Err(StateError::Inconsistent(
            "native histogram buckets do not add up to its count, or exceed the classic one",
        ));
    }
    let (native, _) = state.resume_native(native_schema);
    let mut books = Books {
        t0_ms: state.t0_ms,
        totals: Totals {
            started: state.started,
            terminated: state.terminated,
            incomplete: state.incomplete,
            session_seconds: state.session_ms as f64 / 1000.0,
            durations,
            at_capacity_seconds: None,
            native,
            t0_ms: state.t0_ms,
        },
        session_ms: state.session_ms,
        duration_sum_ms: state.duration_sum_ms,
        at_capacity_ms: state.at_capacity_ms,
        users: HashMap::default(),
    };
    let created: HashMap<&str, UnixMillis> = state
        .user_created
        .iter()
        .map(|(n, at)| (n.as_str(), *at))
        .collect();
    for (name, active, started, session_ms, last_seen_ms) in &state.users {
        books.users.insert(
            Arc::from(name.as_str()),
            UserTotals {
                active: *active,
                started: *started,
                session_ms: *session_ms,
                session_seconds: *session_ms as f64 / 1000.0,
                last_seen_ms: *last_seen_ms,
                created_ms: created.get(name.as_str()).copied().unwrap_or(state.t0_ms),
            },
        );
    }
    Ok(books)
}

/// The sessions of a state, sharing the username keys of `books`.
fn sessions_of(books: &mut Books, sessions: Vec<SessionState>) -> HashMap<Box<str>, Entry> {
    let mut out = HashMap::default();
    for SessionState(id, user, start_ms, end_ms, accrued_ms, phase, incomplete) in sessions {
        let user = books.user(&user, start_ms);
        let phase = match phase {
            PhaseState::Listed => Phase::Listed,
            PhaseState::Vanished => Phase::Vanished,
            PhaseState::Done => Phase::Done,
        };
        let entry = Entry {
            user,
            start_ms,
            end_ms: end_ms.unwrap_or(NO_END),
            accrued_ms,
            phase,
            incomplete,
        };
        out.insert(id.into_boxed_str(), entry);
    }
    out
}
