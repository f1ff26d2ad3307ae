//! The first state file format (JSON, `"version": 1`), frozen as it was written, and its
//! conversion to the current one: files written before the compact format still resume their
//! portal. Its usernames are raw whatever the label mode; the caller hashes them when the mode is
//! hashed (see `format::decode`).

use serde::Deserialize;

use crate::ledger::{
    LedgerState, LooseState, NativeHistogram, PhaseState, SessionState, UserState,
};
use crate::session::UnixMillis;
use crate::users::UserLabelsState;

/// A version 1 state file.
#[derive(Debug, Deserialize)]
pub(super) struct V1 {
    /// Its header (everything but the ledger and the label slots).
    #[serde(flatten)]
    pub(super) header: Header,
    ledger: Ledger,
    users: Option<Labels>,
}

/// The fields of a version 1 file that the current format keeps as they were.
#[derive(Debug, Deserialize)]
pub(super) struct Header {
    pub(super) portal_id: String,
    pub(super) written_at_ms: UnixMillis,
    pub(super) t0_ms: UnixMillis,
    pub(super) watermark_ms: UnixMillis,
    pub(super) backfill_done: bool,
    /// The per-user label mode (`raw` or `hashed`) and the salt's digest, when per-user series
    /// were on.
    pub(super) labels: Option<Mode>,
}

/// A per-user label mode as version 1 wrote it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub(super) struct Mode {
    pub(super) mode: String,
    pub(super) salt_sha256: Option<String>,
}

/// `(username, active, started, session_ms, last_seen_ms)`.
type User = (String, u64, u64, i64, UnixMillis);
/// `(id, username, start_ms, end_ms, accrued_ms, phase, incomplete)`.
type Session = (
    String,
    String,
    UnixMillis,
    Option<UnixMillis>,
    i64,
    PhaseState,
    bool,
);

#[derive(Debug, Deserialize)]
struct Ledger {
    t0_ms: UnixMillis,
    started: u64,
    terminated: u64,
    incomplete: u64,
    session_ms: i64,
    duration_bounds: Vec<f64>,
    duration_counts: Vec<u64>,
    duration_sum_ms: i64,
    users: Vec<User>,
    sessions: Vec<Session>,
    loose: Vec<(LooseState, UnixMillis)>,
    active: (u64, u64, f64),
    month: Option<(UnixMillis, UnixMillis)>,
    month_users: Vec<String>,
    pruned_below: UnixMillis,
    #[serde(default)]
    active_peak: u64,
    #[serde(default)]
    last_poll_ms: Option<UnixMillis>,
    #[serde(default)]
    capacity_limit: Option<u64>,
    #[serde(default)]
    at_capacity_ms: i64,
    #[serde(default)]
    native: Option<NativeHistogram>,
    #[serde(default)]
    user_created: Vec<(String, UnixMillis)>,
}

#[derive(Debug, Deserialize)]
struct Labels {
    slots: Vec<(String, Option<(u64, i64)>)>,
    other_started: u64,
    other_ms: i64,
    other_seen: bool,
    #[serde(default)]
    other_created_ms: Option<UnixMillis>,
}

impl V1 {
    /// The same state in the current shape, its usernames raw.
    pub(super) fn convert(self) -> (Header, LedgerState, Option<UserLabelsState>) {
        let l = self.ledger;
        let (mut users, sessions, month_users) = users_of(l.users, l.sessions, l.month_users);
        let created: std::collections::HashMap<String, UnixMillis> =
            l.user_created.into_iter().collect();
        for u in &mut users {
            u.created_ms = created.get(&u.name).copied();
        }
        let ledger = LedgerState {
            t0_ms: l.t0_ms,
            started: l.started,
            terminated: l.terminated,
            incomplete: l.incomplete,
            session_ms: l.session_ms,
            duration_bounds: l.duration_bounds,
            duration_counts: l.duration_counts,
            duration_sum_ms: l.duration_sum_ms,
            users,
            sessions,
            loose: l.loose,
            active: l.active,
            month: l.month,
            month_users,
            pruned_below: l.pruned_below,
            active_peak: l.active_peak,
            last_poll_ms: l.last_poll_ms,
            capacity_limit: l.capacity_limit,
            at_capacity_ms: l.at_capacity_ms,
            native: l.native,
        };
        let labels = self.users.map(|u| UserLabelsState {
            others: u
                .slots
                .into_iter()
                .filter_map(|(name, slot)| slot.map(|(s, ms)| (name, s, ms)))
                .collect(),
            other_started: u.other_started,
            other_ms: u.other_ms,
            other_seen: u.other_seen,
            other_created_ms: u.other_created_ms,
        });
        (self.header, ledger, labels)
    }
}

/// The users of a version 1 ledger, its sessions naming them by index, and the month's users
/// that have no aggregates (the others flagged).
fn users_of(
    v1_users: Vec<User>,
    v1_sessions: Vec<Session>,
    v1_month: Vec<String>,
) -> (Vec<UserState>, Vec<SessionState>, Vec<String>) {
    let mut index = std::collections::HashMap::with_capacity(v1_users.len());
    let mut users: Vec<UserState> = Vec::with_capacity(v1_users.len());
    let mut add = |users: &mut Vec<UserState>, name: String, seen: UnixMillis| {
        *index.entry(name.clone()).or_insert_with(|| {
            users.push(UserState {
                name,
                active: 0,
                started: 0,
                session_ms: 0,
                last_seen_ms: seen,
                in_month: false,
                created_ms: None,
            });
            u32::try_from(users.len() - 1).unwrap_or(u32::MAX)
        })
    };
    for (name, active, started, session_ms, last_seen_ms) in v1_users {
        let i = add(&mut users, name, last_seen_ms) as usize;
        if let Some(u) = users.get_mut(i) {
            (u.active, u.started, u.session_ms) = (active, started, session_ms);
        }
    }
    let sessions = v1_sessions
        .into_iter()
        .map(
            |(id, user, start_ms, end_ms, accrued_ms, phase, incomplete)| SessionState {
                id,
                user: add(&mut users, user, start_ms),
                start_ms,
                end_ms,
                accrued_ms,
                phase,
                incomplete,
            },
        )
        .collect();
    let mut month_users = Vec::new();
    for name in v1_month {
        match index.get(&name).and_then(|i| users.get_mut(*i as usize)) {
            Some(u) => u.in_month = true,
            None => month_users.push(name),
        }
    }
    (users, sessions, month_users)
}
