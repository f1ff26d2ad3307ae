//! The first state file format (JSON, `"version": 1`), frozen as it was written, and its
//! conversion to the current one: files written before the compact format still resume their
//! portal. Its usernames are raw whatever the label mode; the caller hashes them when the mode is
//! hashed (see `format::decode`).

use serde::Deserialize;

use super::format::{LabelFingerprint, PortalState};
use crate::ledger::{LedgerState, LooseState, PhaseState, SessionState, UserState};
use crate::session::UnixMillis;
use crate::users::UserLabelsState;

/// A version 1 state file.
#[derive(Debug, Deserialize)]
pub(super) struct V1 {
    portal_id: String,
    written_at_ms: UnixMillis,
    t0_ms: UnixMillis,
    watermark_ms: UnixMillis,
    backfill_done: bool,
    /// The per-user label mode, when per-user series were on.
    pub(super) labels: Option<LabelFingerprint>,
    ledger: Ledger,
    users: Option<Labels>,
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
}

#[derive(Debug, Deserialize)]
struct Labels {
    slots: Vec<(String, Option<(u64, i64)>)>,
    other_started: u64,
    other_ms: i64,
    other_seen: bool,
}

impl V1 {
    /// The same state in the current shape, its usernames raw (`keys` says so).
    pub(super) fn convert(self) -> PortalState {
        let l = self.ledger;
        let mut index = std::collections::HashMap::with_capacity(l.users.len());
        let mut users: Vec<UserState> = Vec::with_capacity(l.users.len());
        for (name, active, started, session_ms, last_seen_ms) in l.users {
            index.insert(name.clone(), users.len() as u32);
            users.push(UserState {
                name,
                active,
                started,
                session_ms,
                last_seen_ms,
                in_month: false,
            });
        }
        let mut user_of = |name: String, seen: UnixMillis| {
            *index.entry(name.clone()).or_insert_with(|| {
                users.push(UserState {
                    name,
                    active: 0,
                    started: 0,
                    session_ms: 0,
                    last_seen_ms: seen,
                    in_month: false,
                });
                users.len() as u32 - 1
            })
        };
        let sessions = l
            .sessions
            .into_iter()
            .map(
                |(id, user, start_ms, end_ms, accrued_ms, phase, incomplete)| SessionState {
                    id,
                    user: user_of(user, start_ms),
                    start_ms,
                    end_ms,
                    accrued_ms,
                    phase,
                    incomplete,
                },
            )
            .collect();
        let mut month_users = Vec::new();
        for name in l.month_users {
            match index.get(&name).and_then(|i| users.get_mut(*i as usize)) {
                Some(u) => u.in_month = true,
                None => month_users.push(name),
            }
        }
        PortalState {
            version: super::format::STATE_VERSION,
            portal_id: self.portal_id,
            written_at_ms: self.written_at_ms,
            t0_ms: self.t0_ms,
            watermark_ms: self.watermark_ms,
            backfill_done: self.backfill_done,
            keys: LabelFingerprint::raw(),
            ledger: LedgerState {
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
            },
            users: self.users.map(|u| UserLabelsState {
                others: u
                    .slots
                    .into_iter()
                    .filter_map(|(name, slot)| slot.map(|(s, ms)| (name, s, ms)))
                    .collect(),
                other_started: u.other_started,
                other_ms: u.other_ms,
                other_seen: u.other_seen,
            }),
        }
    }
}
