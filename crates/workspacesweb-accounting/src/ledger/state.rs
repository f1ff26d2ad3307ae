//! The ledger as plain data, for durable state: everything needed to continue counting exactly
//! after a restart (T0, every counter, per-user aggregates, the sessions still held, the month's
//! users), and the checks a restored state passes. Pure: files belong to the caller.
//!
//! # Shape (what a state file's encoder sees)
//!
//! Usernames are written once, in [`LedgerState::users`]: sessions name their user by its index
//! there, and the month's users are a flag on it (plus the few without aggregates). Session ids
//! and usernames that are 36-character UUIDs or 16 hex digits (a hashed label value) serialize as
//! 16 or 8 bytes; any other string as itself.
//!
//! # Adding a field
//!
//! Every struct here serializes as a sequence of its fields, in order, so that a field added **at
//! the end** of a struct with `#[serde(default)]` leaves older files readable (they lack it: it
//! takes its default). That is the one rule: append, with `#[serde(default)]`, never reorder or
//! remove, and fill it in [`Ledger::view`] and [`Ledger::from_state`].

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::{
    ActiveSummary, Books, Entry, HashMap, HashSet, Histogram, Ledger, LedgerSettings, LooseKey,
    NO_END, NativeHistogram, NativeResume, Phase, Totals, UserTotals, month_bounds, packed,
};
use crate::session::UnixMillis;

/// Largest count a restored state may hold (2^53: exact as a float sample, and out of reach of
/// real counting): a forged `u64::MAX` would otherwise be published, and saturate.
pub const MAX_RESTORED_COUNT: u64 = 1 << 53;

/// A [`Ledger`] as plain data ([`Ledger::to_state`], [`Ledger::from_state`]); `S` is `String`
/// when owned, `&str` when it only borrows the ledger to be written ([`Ledger::view`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(bound(
    serialize = "S: AsRef<str> + Serialize",
    deserialize = "S: From<String> + Deserialize<'de>"
))]
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
    /// Every username the ledger knows, with its aggregates.
    #[serde(serialize_with = "packed::warm_list")]
    pub users: Vec<UserState<S>>,
    /// Sessions held.
    #[serde(serialize_with = "packed::warm_list")]
    pub sessions: Vec<SessionState<S>>,
    /// Untrackable records already counted as incomplete, with when they were last seen.
    pub loose: Vec<(LooseState<S>, UnixMillis)>,
    /// Gauges of the last Active listing: sessions, users, oldest age in seconds.
    pub active: (u64, u64, f64),
    /// The current UTC month `(start, end)`, once a poll was applied.
    pub month: Option<(UnixMillis, UnixMillis)>,
    /// Usernames with a session in that month that are not in [`users`](Self::users) (evicted);
    /// the others are flagged there ([`UserState::in_month`]).
    #[serde(with = "packed::list")]
    pub month_users: Vec<S>,
    /// Highest prune bound so far.
    pub pruned_below: UnixMillis,
    /// `active_sessions_peak` of the last poll.
    pub active_peak: u64,
    /// `at_ms` of the latest poll applied: where the next concurrency interval begins (`None`:
    /// the next poll is treated as the first, its peak is its active count).
    pub last_poll_ms: Option<UnixMillis>,
    /// The portal's `maxConcurrentSessions` as last known.
    pub capacity_limit: Option<u64>,
    /// `portal_at_capacity_seconds_total`, in exact milliseconds.
    pub at_capacity_ms: i64,
    /// The native duration histogram; absent in a state written before it, which resumes with
    /// it empty ([`LedgerState::resume_native`]).
    #[serde(default)]
    pub native: Option<NativeHistogram>,
    // Fields added from here on: `#[serde(default)]`, at the end (see the module docs).
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

/// One username and its aggregates (see [`LedgerState::users`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(bound(
    serialize = "S: AsRef<str> + Serialize",
    deserialize = "S: From<String> + Deserialize<'de>"
))]
pub struct UserState<S = String> {
    /// The username key (the label value in hashed mode).
    #[serde(with = "packed")]
    pub name: S,
    /// Its sessions in the last Active listing.
    pub active: u64,
    /// Its sessions counted in `started`.
    pub started: u64,
    /// Its session seconds, in exact milliseconds.
    pub session_ms: i64,
    /// When it was last seen.
    pub last_seen_ms: UnixMillis,
    /// Whether it has a session in the current month.
    pub in_month: bool,
    /// When it was first counted (its series' created timestamp); absent in a state written
    /// before it, when the user takes T0 (every counter was 0 then).
    #[serde(default)]
    pub created_ms: Option<UnixMillis>,
}

/// One held session (see [`LedgerState::sessions`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(bound(
    serialize = "S: AsRef<str> + Serialize",
    deserialize = "S: From<String> + Deserialize<'de>"
))]
pub struct SessionState<S = String> {
    /// `sessionId`.
    #[serde(with = "packed")]
    pub id: S,
    /// Its user: an index into [`LedgerState::users`].
    pub user: u32,
    /// `startTime`.
    pub start_ms: UnixMillis,
    /// `endTime`, once known.
    pub end_ms: Option<UnixMillis>,
    /// Session milliseconds already counted for it.
    pub accrued_ms: i64,
    /// Where it stands.
    pub phase: PhaseState,
    /// Whether it has been counted in `incomplete`.
    pub incomplete: bool,
}

impl<S: AsRef<str>> packed::Keyed for UserState<S> {
    fn key(&self) -> &str {
        self.name.as_ref()
    }
}

impl<S: AsRef<str>> packed::Keyed for SessionState<S> {
    fn key(&self) -> &str {
        self.id.as_ref()
    }
}

/// Where a held session stands (written as 0, 1, 2; read from those or from the names the first
/// state format wrote).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PhaseState {
    /// In the last Active listing.
    Listed,
    /// Seen Active before, absent from the listing since, not yet resolved.
    Vanished,
    /// Terminated and counted.
    Done,
}

impl Serialize for PhaseState {
    fn serialize<Z: serde::Serializer>(&self, z: Z) -> Result<Z::Ok, Z::Error> {
        z.serialize_u8(*self as u8)
    }
}

impl<'de> Deserialize<'de> for PhaseState {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct PhaseVisitor;
        impl serde::de::Visitor<'_> for PhaseVisitor {
            type Value = PhaseState;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("0, 1, 2, Listed, Vanished or Done")
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<PhaseState, E> {
                match v {
                    0 => Ok(PhaseState::Listed),
                    1 => Ok(PhaseState::Vanished),
                    2 => Ok(PhaseState::Done),
                    _ => Err(E::invalid_value(serde::de::Unexpected::Unsigned(v), &self)),
                }
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<PhaseState, E> {
                match v {
                    "Listed" => Ok(PhaseState::Listed),
                    "Vanished" => Ok(PhaseState::Vanished),
                    "Done" => Ok(PhaseState::Done),
                    _ => Err(E::unknown_variant(v, &["Listed", "Vanished", "Done"])),
                }
            }
        }
        d.deserialize_any(PhaseVisitor)
    }
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
    /// The numbers do not add up (a damaged or forged state).
    #[error("inconsistent state: {0}")]
    Inconsistent(String),
}

fn inconsistent(what: impl Into<String>) -> StateError {
    StateError::Inconsistent(what.into())
}

impl Ledger {
    /// This ledger as plain data, borrowing its strings: what a state write serializes, without
    /// copying or sorting the sessions (the order of the lists is that of the maps).
    pub fn view(&self) -> LedgerState<&str> {
        self.plain(false)
    }

    /// This ledger as owned plain data, every list sorted (equal ledgers give equal states).
    pub fn to_state(&self) -> LedgerState {
        let v = self.plain(true);
        let mut state = LedgerState {
            users: v
                .users
                .into_iter()
                .map(|u| UserState {
                    name: u.name.to_owned(),
                    active: u.active,
                    started: u.started,
                    session_ms: u.session_ms,
                    last_seen_ms: u.last_seen_ms,
                    in_month: u.in_month,
                    created_ms: u.created_ms,
                })
                .collect(),
            sessions: v
                .sessions
                .into_iter()
                .map(|s| SessionState {
                    id: s.id.to_owned(),
                    user: s.user,
                    start_ms: s.start_ms,
                    end_ms: s.end_ms,
                    accrued_ms: s.accrued_ms,
                    phase: s.phase,
                    incomplete: s.incomplete,
                })
                .collect(),
            loose: v
                .loose
                .into_iter()
                .map(|(k, seen)| (k.map(str::to_owned), seen))
                .collect(),
            month_users: v.month_users.into_iter().map(str::to_owned).collect(),
            t0_ms: v.t0_ms,
            started: v.started,
            terminated: v.terminated,
            incomplete: v.incomplete,
            session_ms: v.session_ms,
            duration_bounds: v.duration_bounds,
            duration_counts: v.duration_counts,
            duration_sum_ms: v.duration_sum_ms,
            active: v.active,
            month: v.month,
            pruned_below: v.pruned_below,
            active_peak: v.active_peak,
            last_poll_ms: v.last_poll_ms,
            capacity_limit: v.capacity_limit,
            at_capacity_ms: v.at_capacity_ms,
            native: v.native,
        };
        state.sessions.sort_unstable_by(|a, b| a.id.cmp(&b.id));
        state.loose.sort_unstable();
        state.month_users.sort_unstable();
        state
    }

    /// The plain data of [`view`](Self::view) (`sorted`: users by name, for [`to_state`](Self::to_state)).
    fn plain(&self, sorted: bool) -> LedgerState<&str> {
        let b = &self.books;
        let mut names: Vec<(&Arc<str>, &UserTotals)> = b.users.iter().collect();
        if sorted {
            names.sort_unstable_by(|a, b| a.0.cmp(b.0));
        }
        // A session's user is the very `Arc` of its key in `users`: found by address.
        let index: HashMap<*const u8, u32> = names
            .iter()
            .enumerate()
            .map(|(i, (k, _))| (k.as_ptr(), u32::try_from(i).unwrap_or(u32::MAX)))
            .collect();
        let mut users: Vec<UserState<&str>> = names
            .iter()
            .map(|(k, u)| UserState {
                name: &***k,
                active: u.active,
                started: u.started,
                session_ms: u.session_ms,
                last_seen_ms: u.last_seen_ms,
                in_month: false,
                created_ms: Some(u.created_ms),
            })
            .collect();
        let month_users = self.flag_month_users(&mut users, &index);
        let sessions = self
            .sessions
            .iter()
            .map(|(id, e)| session_plain(id, e, &index))
            .collect();
        let loose = self
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
        }
    }

    /// A ledger that continues `state` exactly, if it was made with the same `settings` (the
    /// histogram's buckets; the idle-user TTL is taken from `settings`) and its numbers add up
    /// ([`LedgerState::check`]).
    pub fn from_state(settings: &LedgerSettings, state: LedgerState) -> Result<Self, StateError> {
        if state.duration_bounds != settings.duration_buckets {
            return Err(StateError::Buckets {
                stored: state.duration_bounds,
                configured: settings.duration_buckets.clone(),
            });
        }
        state.check()?;
        let mut books = books_of(&state, settings.native_schema)?;
        let keys: Vec<Arc<str>> = state
            .users
            .iter()
            .map(|u| {
                books
                    .users
                    .get_key_value(u.name.as_str())
                    .map(|(k, _)| k.clone())
                    .unwrap_or_else(|| Arc::from(u.name.as_str()))
            })
            .collect();
        let sessions = sessions_of(&keys, state.sessions)?;
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
        let mut month_users: HashSet<Box<str>> = state
            .month_users
            .into_iter()
            .map(String::into_boxed_str)
            .collect();
        for u in state.users.iter().filter(|u| u.in_month) {
            month_users.insert(u.name.as_str().into());
        }
        books.users.shrink_to_fit();
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

    /// Flags the month's users that have aggregates on their entry in `users` (indexed by the
    /// address of their key) and returns the others: one lookup per month user, where asking
    /// each user whether it is a month user and each month user whether it is a user took two
    /// (each a hash of a string and a comparison with another, both likely cache misses).
    fn flag_month_users<'a>(
        &'a self,
        users: &mut [UserState<&'a str>],
        index: &HashMap<*const u8, u32>,
    ) -> Vec<&'a str> {
        let mut others = Vec::new();
        for m in &self.month_users {
            match self.books.users.get_key_value(&**m) {
                Some((k, _)) => {
                    let i = index
                        .get(&k.as_ptr())
                        .and_then(|&i| users.get_mut(i as usize));
                    if let Some(u) = i {
                        u.in_month = true;
                    }
                }
                None => others.push(&**m),
            }
        }
        others
    }
}

/// A held session as plain data, its user named by its index in `index` (by the key's address).
fn session_plain<'a>(
    id: &'a str,
    e: &Entry,
    index: &HashMap<*const u8, u32>,
) -> SessionState<&'a str> {
    SessionState {
        id,
        user: index.get(&e.user.as_ptr()).copied().unwrap_or(u32::MAX),
        start_ms: e.start_ms,
        end_ms: (e.end_ms != NO_END).then_some(e.end_ms),
        accrued_ms: e.accrued_ms,
        phase: match e.phase {
            Phase::Listed => PhaseState::Listed,
            Phase::Vanished => PhaseState::Vanished,
            Phase::Done => PhaseState::Done,
        },
        incomplete: e.incomplete,
    }
}

impl<S> LooseState<S> {
    fn map<T>(self, f: impl FnOnce(S) -> T) -> LooseState<T> {
        match self {
            LooseState::Id(id) => LooseState::Id(f(id)),
            LooseState::Content(h) => LooseState::Content(h),
        }
    }
}

impl LedgerState {
    /// The same state with every username `name` replaced by `key(name)` (e.g. raw names by their
    /// hashed label values); users that end up with one key are merged, their aggregates summed.
    pub fn rekey(&mut self, key: impl Fn(&str) -> String) {
        let mut index: std::collections::HashMap<String, u32> = std::collections::HashMap::new();
        let mut users: Vec<UserState> = Vec::with_capacity(self.users.len());
        let mut moved = Vec::with_capacity(self.users.len());
        for u in std::mem::take(&mut self.users) {
            let name = key(&u.name);
            let at = *index.entry(name.clone()).or_insert_with(|| {
                users.push(UserState {
                    name,
                    active: 0,
                    started: 0,
                    session_ms: 0,
                    last_seen_ms: u.last_seen_ms,
                    in_month: false,
                    created_ms: u.created_ms,
                });
                u32::try_from(users.len() - 1).unwrap_or(u32::MAX)
            });
            if let Some(m) = users.get_mut(at as usize) {
                m.active = m.active.saturating_add(u.active);
                m.started = m.started.saturating_add(u.started);
                m.session_ms = m.session_ms.saturating_add(u.session_ms);
                m.last_seen_ms = m.last_seen_ms.max(u.last_seen_ms);
                m.in_month |= u.in_month;
                m.created_ms = match (m.created_ms, u.created_ms) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
            }
            moved.push(at);
        }
        for s in &mut self.sessions {
            s.user = moved.get(s.user as usize).copied().unwrap_or(u32::MAX);
        }
        let mut month_users: Vec<String> = self.month_users.iter().map(|u| key(u)).collect();
        month_users.sort_unstable();
        month_users.dedup();
        month_users.retain(|u| match index.get(u) {
            Some(&i) => {
                if let Some(m) = users.get_mut(i as usize) {
                    m.in_month = true;
                }
                false
            }
            None => true,
        });
        self.users = users;
        self.month_users = month_users;
    }

    /// Checks that the numbers add up, so that a damaged or forged state is refused rather than
    /// published: every count at most [`MAX_RESTORED_COUNT`], no negative time, and no counter
    /// below its parts, which are:
    ///
    /// * `started` ≥ the sum of the users' `started`, and ≥ 0 more (evicted users took theirs);
    /// * `session_ms` ≥ the sum of the users' `session_ms`, and ≥ the sum of the held sessions'
    ///   `accrued_ms` (each session's accrued time is in the total once);
    /// * `terminated` ≥ the histogram's count (= the sum of its buckets: each complete terminated
    ///   session is observed once), and that count ≥ the native histogram's, whose buckets add up
    ///   to its own count (it may have started later: a state written before it);
    /// * `incomplete` ≥ the held sessions counted as incomplete;
    /// * the active sessions ≥ the sum of the users' active sessions ≥ the active users;
    ///
    /// and every session names a user that exists, no two users or sessions share a key.
    pub fn check(&self) -> Result<(), StateError> {
        if self.duration_counts.len() != self.duration_bounds.len() + 1 {
            return Err(inconsistent(
                "histogram bucket counts do not match its bounds",
            ));
        }
        let count = self
            .duration_counts
            .iter()
            .try_fold(0u64, |a, c| a.checked_add(*c))
            .ok_or_else(|| inconsistent("histogram count overflows"))?;
        let counts = [
            ("started", self.started),
            ("terminated", self.terminated),
            ("incomplete", self.incomplete),
            ("histogram count", count),
            ("active sessions", self.active.0),
            ("active peak", self.active_peak),
        ];
        for (what, n) in counts {
            if n > MAX_RESTORED_COUNT {
                return Err(inconsistent(format!("{what} {n} is out of range")));
            }
        }
        let times = [self.session_ms, self.duration_sum_ms, self.at_capacity_ms];
        if times.iter().any(|t| *t < 0) {
            return Err(inconsistent("negative session time"));
        }
        if !(self.active.2.is_finite() && self.active.2 >= 0.0) {
            return Err(inconsistent("the oldest active age is not a duration"));
        }
        if count > self.terminated {
            return Err(inconsistent(format!(
                "the histogram counts {count} sessions, more than the {} terminated",
                self.terminated
            )));
        }
        self.check_users()?;
        self.check_sessions()
    }

    fn check_users(&self) -> Result<(), StateError> {
        let (mut started, mut ms, mut active) = (0u64, 0i64, 0u64);
        for u in &self.users {
            if u.started > MAX_RESTORED_COUNT || u.active > MAX_RESTORED_COUNT {
                return Err(inconsistent("a user's count is out of range"));
            }
            if u.session_ms < 0 {
                return Err(inconsistent("a user's session time is negative"));
            }
            started = started.saturating_add(u.started);
            ms = ms.saturating_add(u.session_ms);
            active = active.saturating_add(u.active);
        }
        if started > self.started {
            return Err(inconsistent(format!(
                "the users started {started} sessions, more than the {} started",
                self.started
            )));
        }
        if ms > self.session_ms {
            return Err(inconsistent("the users' session time exceeds the total"));
        }
        if active > self.active.0 || self.active.1 > self.active.0 {
            return Err(inconsistent("more active users than active sessions"));
        }
        let distinct: HashSet<&str> = self.users.iter().map(|u| u.name.as_str()).collect();
        if distinct.len() != self.users.len() {
            return Err(inconsistent("a user is listed twice"));
        }
        Ok(())
    }

    fn check_sessions(&self) -> Result<(), StateError> {
        let (mut accrued, mut incomplete) = (0i64, 0u64);
        for s in &self.sessions {
            if s.user as usize >= self.users.len() {
                return Err(inconsistent("a session names no known user"));
            }
            if s.accrued_ms < 0 {
                return Err(inconsistent("a session's accrued time is negative"));
            }
            accrued = accrued.saturating_add(s.accrued_ms);
            incomplete += u64::from(s.incomplete);
        }
        if accrued > self.session_ms {
            return Err(inconsistent("the sessions' accrued time exceeds the total"));
        }
        if incomplete > self.incomplete {
            return Err(inconsistent(
                "more incomplete sessions held than counted incomplete",
            ));
        }
        if self.loose.len() > super::MAX_LOOSE_KEYS {
            return Err(inconsistent("too many untrackable records"));
        }
        let distinct: HashSet<&str> = self.sessions.iter().map(|s| s.id.as_str()).collect();
        if distinct.len() != self.sessions.len() {
            return Err(inconsistent("a session is listed twice"));
        }
        Ok(())
    }

    /// Checks the state's times against `written_at_ms`, when it was written: its month is a
    /// real UTC month that began by then, and T0, the last poll, the prune bound and every time a
    /// user or record was last seen are no later than that (plus `slack_ms` for a clock step).
    /// A forged future month would freeze the monthly users (the month never rolls), a future
    /// prune bound would ignore every new terminated session.
    pub fn check_times(&self, written_at_ms: UnixMillis, slack_ms: i64) -> Result<(), StateError> {
        let latest = written_at_ms.saturating_add(slack_ms);
        if let Some((start, end)) = self.month {
            if (start, end) != month_bounds(start) {
                return Err(inconsistent("the month is not a calendar month"));
            }
            if start > latest {
                return Err(inconsistent(format!(
                    "the month begins after the state was written ({start} > {written_at_ms})"
                )));
            }
        }
        let times = [
            ("T0", Some(self.t0_ms)),
            ("the last poll", self.last_poll_ms),
            ("the prune bound", Some(self.pruned_below)),
            (
                "a user's last activity",
                self.users.iter().map(|u| u.last_seen_ms).max(),
            ),
            (
                "an untrackable record",
                self.loose.iter().map(|(_, seen)| *seen).max(),
            ),
        ];
        for (what, t) in times {
            if let Some(t) = t.filter(|t| *t > latest) {
                return Err(inconsistent(format!(
                    "{what} is after the state was written ({t} > {written_at_ms})"
                )));
            }
        }
        Ok(())
    }
}

/// The counters and per-user aggregates of `state` (checked by [`LedgerState::check`]).
fn books_of(state: &LedgerState, native_schema: i8) -> Result<Books, StateError> {
    let count = state
        .duration_counts
        .iter()
        .try_fold(0u64, |a, c| a.checked_add(*c))
        .ok_or_else(|| inconsistent("histogram count overflows"))?;
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
        return Err(inconsistent(
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
    books.users.reserve(state.users.len());
    for u in &state.users {
        books.users.insert(
            Arc::from(u.name.as_str()),
            UserTotals {
                active: u.active,
                started: u.started,
                session_ms: u.session_ms,
                session_seconds: u.session_ms as f64 / 1000.0,
                last_seen_ms: u.last_seen_ms,
                created_ms: u.created_ms.unwrap_or(state.t0_ms),
            },
        );
    }
    Ok(books)
}

/// The sessions of a state, sharing the username keys `keys` (by index).
fn sessions_of(
    keys: &[Arc<str>],
    sessions: Vec<SessionState>,
) -> Result<HashMap<Box<str>, Entry>, StateError> {
    let mut out = HashMap::default();
    out.reserve(sessions.len());
    for s in sessions {
        let user = keys
            .get(s.user as usize)
            .cloned()
            .ok_or_else(|| inconsistent("a session names no known user"))?;
        let phase = match s.phase {
            PhaseState::Listed => Phase::Listed,
            PhaseState::Vanished => Phase::Vanished,
            PhaseState::Done => Phase::Done,
        };
        let entry = Entry {
            user,
            start_ms: s.start_ms,
            end_ms: s.end_ms.unwrap_or(NO_END),
            accrued_ms: s.accrued_ms,
            phase,
            incomplete: s.incomplete,
        };
        out.insert(s.id.into_boxed_str(), entry);
    }
    Ok(out)
}
