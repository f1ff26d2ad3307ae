//! Per-user series: which label value each username gets (raw or hashed), the `max_users` cap with
//! its `__other__` overflow, and the expiry of idle users. Pure: fed from the ledger after each poll.
//!
//! Assignment is decided when a user is first seen and kept until the user is evicted: the first
//! `max_users` users get series of their own; later ones are summed into `username="__other__"`
//! (their contributions are added as deltas, so `__other__` stays monotonic and the per-user sums
//! equal the portal totals). A user the ledger evicted ([`Ledger::evict_idle_users`], after
//! `idle_ttl` without a session) loses its series at the next update; that frees its slot for the
//! next new user. The mapping only reads the ledger. A raw username that is literally `__other__`
//! is counted in the overflow series.
//!
//! The ledger's user keys *are* the label values: in hashed mode the poller hashes each record's
//! username before the ledger sees it ([`key_records`]), so that nothing it keeps (per-user
//! aggregates, the month's users, the label slots, the state file) holds a raw username.

use std::collections::HashMap;
use std::fmt::Write as _;

use sha2::{Digest, Sha256};

use crate::ledger::{Ledger, UNKNOWN_USER};
use crate::session::{SessionRecord, UnixMillis};

/// Label value of the overflow series.
pub const OTHER_USER: &str = "__other__";

/// How usernames become label values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LabelMode {
    /// The username as the API returns it.
    Raw,
    /// First 16 hex characters of SHA-256(salt + username).
    Hashed {
        /// The salt (a secret).
        salt: String,
    },
}

/// Per-user settings of one portal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserSettings {
    /// Raw or hashed label values.
    pub mode: LabelMode,
    /// Users with series of their own; more go to `__other__`.
    pub max_users: usize,
    /// Idle time after which a user's series go away, in milliseconds (the ledger evicts the
    /// user: [`crate::ledger::LedgerSettings::idle_user_ttl_ms`]).
    pub idle_ttl_ms: i64,
}

/// The per-user values of one label value, as exposed.
#[derive(Debug, Clone, PartialEq)]
pub struct UserSeries {
    /// The `username` label value (raw, hashed, `__unknown__` or `__other__`).
    pub username: String,
    /// Active sessions now.
    pub active: u64,
    /// Sessions started since T0.
    pub started: u64,
    /// Session seconds since T0.
    pub session_seconds: f64,
    /// When the series was first counted (its created timestamp): its counters were 0 before.
    pub created_ms: UnixMillis,
}

#[derive(Debug, Clone)]
enum Slot {
    /// A series of its own, labelled with the user's key.
    Own,
    /// Overflow user and the totals of it already added to the overflow series.
    Other { started: u64, session_ms: i64 },
}

/// The label state of one portal's users.
#[derive(Debug, Clone)]
pub struct UserLabels {
    settings: UserSettings,
    slots: HashMap<String, Slot>,
    own: usize,
    other_started: u64,
    other_ms: i64,
    other_seen: bool,
    /// When `__other__` was first counted.
    other_created_ms: Option<UnixMillis>,
}

/// The label value of `username` under `mode` (`__unknown__` is never hashed: it is not a name;
/// nor is `__other__`, which names the overflow series).
pub fn label_for(mode: &LabelMode, username: &str) -> String {
    match mode {
        LabelMode::Raw => username.to_string(),
        LabelMode::Hashed { .. } if username == UNKNOWN_USER || username == OTHER_USER => {
            username.to_string()
        }
        LabelMode::Hashed { salt } => {
            let digest = Sha256::new()
                .chain_update(salt.as_bytes())
                .chain_update(username.as_bytes())
                .finalize();
            let mut hex = String::with_capacity(16);
            for b in digest.iter().take(8) {
                let _ = write!(hex, "{b:02x}");
            }
            hex
        }
    }
}

/// Replaces each record's username by its label value under `mode` (a missing or empty one stays
/// missing: the ledger keys it `__unknown__`). In hashed mode this is what the ledger is fed, so
/// that its users, the month's users, the label slots and the state file hold no raw username.
pub fn key_records(mode: &LabelMode, records: &mut [SessionRecord]) {
    if matches!(mode, LabelMode::Raw) {
        return;
    }
    for r in records {
        if let Some(name) = r.username.as_mut().filter(|n| !n.is_empty()) {
            *name = label_for(mode, name);
        }
    }
}

impl UserLabels {
    /// No users yet.
    pub fn new(settings: UserSettings) -> Self {
        UserLabels {
            settings,
            slots: HashMap::new(),
            own: 0,
            other_started: 0,
            other_ms: 0,
            other_seen: false,
            other_created_ms: None,
        }
    }

    /// Follows the users of `ledger`: drops the slots of users it no longer has (evicted), assigns
    /// new ones, and returns the series to expose, sorted by label value. The ledger's user keys
    /// are the label values ([`key_records`]).
    pub fn update(&mut self, ledger: &Ledger) -> Vec<UserSeries> {
        let present: HashMap<&str, _> = ledger.users().collect();
        self.slots.retain(|name, slot| {
            let keep = present.contains_key(name.as_str());
            if !keep && matches!(slot, Slot::Own) {
                self.own -= 1;
            }
            keep
        });
        let mut out = Vec::new();
        let mut other_active = 0;
        // The users that open `__other__` all count from its creation: the earliest of them.
        let opening = !self.other_seen;
        for (name, totals) in &present {
            let slot = self.slots.entry((*name).to_string()).or_insert_with(|| {
                if self.own < self.settings.max_users && *name != OTHER_USER {
                    self.own += 1;
                    Slot::Own
                } else {
                    Slot::Other {
                        started: 0,
                        session_ms: 0,
                    }
                }
            });
            match slot {
                Slot::Own => out.push(UserSeries {
                    username: (*name).to_string(),
                    active: totals.active,
                    started: totals.started,
                    session_seconds: totals.session_ms as f64 / 1000.0,
                    created_ms: totals.created_ms,
                }),
                Slot::Other {
                    started,
                    session_ms,
                } => {
                    self.other_seen = true;
                    if opening || self.other_created_ms.is_none() {
                        let at = totals.created_ms;
                        self.other_created_ms =
                            Some(self.other_created_ms.map_or(at, |o| o.min(at)));
                    }
                    self.other_started += totals.started.saturating_sub(*started);
                    self.other_ms += totals.session_ms.saturating_sub(*session_ms).max(0);
                    *started = totals.started.max(*started);
                    *session_ms = totals.session_ms.max(*session_ms);
                    other_active += totals.active;
                }
            }
        }
        if self.other_seen {
            out.push(UserSeries {
                username: OTHER_USER.to_string(),
                active: other_active,
                started: self.other_started,
                session_seconds: self.other_ms as f64 / 1000.0,
                created_ms: self.other_created_ms.unwrap_or(ledger.t0_ms()),
            });
        }
        out.sort_by(|a, b| a.username.cmp(&b.username));
        out
    }
}

/// [`UserLabels`] as plain data, for durable state: which users are summed into `__other__`
/// (with what of theirs it already holds) and its totals. Every other user of the ledger has a
/// series of its own (the slots follow the ledger's users at every update, and a state is
/// written after one), so their names are not repeated here.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct UserLabelsState<S = String> {
    /// Users summed into `__other__`: name, then the `started` and session milliseconds of
    /// theirs already added to it.
    pub others: Vec<(S, u64, i64)>,
    /// `__other__` started.
    pub other_started: u64,
    /// `__other__` session milliseconds.
    pub other_ms: i64,
    /// Whether `__other__` has been exposed.
    pub other_seen: bool,
    /// When `__other__` was first counted; absent in a state written before it (T0 then).
    #[serde(default)]
    pub other_created_ms: Option<UnixMillis>,
    // Fields added from here on: `#[serde(default)]`, at the end (see `ledger::LedgerState`).
}

impl UserLabels {
    /// The label state as plain data, borrowing the names (what a state write serializes).
    pub fn view(&self) -> UserLabelsState<&str> {
        let others: Vec<_> = self
            .slots
            .iter()
            .filter_map(|(name, slot)| match slot {
                Slot::Own => None,
                Slot::Other {
                    started,
                    session_ms,
                } => Some((name.as_str(), *started, *session_ms)),
            })
            .collect();
        UserLabelsState {
            others,
            other_started: self.other_started,
            other_ms: self.other_ms,
            other_seen: self.other_seen,
            other_created_ms: self.other_created_ms,
        }
    }

    /// The label state as owned plain data, sorted by name.
    pub fn to_state(&self) -> UserLabelsState {
        let v = self.view();
        let mut others: Vec<_> = v
            .others
            .into_iter()
            .map(|(n, s, ms)| (n.to_owned(), s, ms))
            .collect();
        others.sort_unstable();
        UserLabelsState {
            others,
            other_started: v.other_started,
            other_ms: v.other_ms,
            other_seen: v.other_seen,
            other_created_ms: v.other_created_ms,
        }
    }

    /// Label state that continues `state` under `settings` for the users of `ledger` (the caller
    /// checks that the label mode and salt are those the state was written with): the users of
    /// `state.others` stay in `__other__`, every other user of the ledger has its own series.
    /// Users beyond `max_users` keep the slot they had: a lowered `max_users` applies to users
    /// seen from now on.
    pub fn from_state(settings: UserSettings, state: UserLabelsState, ledger: &Ledger) -> Self {
        let mut slots: HashMap<String, Slot> = state
            .others
            .into_iter()
            .map(|(name, started, session_ms)| {
                (
                    name,
                    Slot::Other {
                        started,
                        session_ms,
                    },
                )
            })
            .collect();
        let mut own = 0;
        for (name, _) in ledger.users() {
            slots.entry(name.to_string()).or_insert_with(|| {
                own += 1;
                Slot::Own
            });
        }
        UserLabels {
            settings,
            slots,
            own,
            other_started: state.other_started,
            other_ms: state.other_ms,
            other_seen: state.other_seen,
            other_created_ms: state.other_created_ms,
        }
    }
}

impl UserLabelsState {
    /// The same state with every username `name` replaced by `key(name)` (see
    /// [`crate::ledger::LedgerState::rekey`]).
    pub fn rekey(&mut self, key: impl Fn(&str) -> String) {
        let mut merged: HashMap<String, (u64, i64)> = HashMap::new();
        for (name, started, ms) in std::mem::take(&mut self.others) {
            let m = merged.entry(key(&name)).or_insert((0, 0));
            m.0 = m.0.saturating_add(started);
            m.1 = m.1.saturating_add(ms);
        }
        self.others = merged.into_iter().map(|(n, (s, ms))| (n, s, ms)).collect();
        self.others.sort_unstable();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::LedgerSettings;
    use crate::session::{SessionRecord, SessionStatus};

    fn active(id: &str, user: &str, start: i64) -> SessionRecord {
        SessionRecord {
            id: Some(id.into()),
            username: Some(user.into()),
            status: SessionStatus::Active,
            start_ms: Some(start),
            end_ms: None,
        }
    }

    fn settings(max_users: usize, mode: LabelMode) -> UserSettings {
        UserSettings {
            mode,
            max_users,
            idle_ttl_ms: 3_600_000,
        }
    }

    #[test]
    fn hashed_label_is_16_hex_of_salted_sha256() {
        let mode = LabelMode::Hashed {
            salt: "pepper".into(),
        };
        // printf 'pepperalice' | sha256sum | cut -c1-16
        assert_eq!(label_for(&mode, "alice"), "b1b68da447843a65");
        assert_ne!(
            label_for(&mode, "alice"),
            label_for(
                &LabelMode::Hashed {
                    salt: "salt".into()
                },
                "alice"
            )
        );
        assert_eq!(label_for(&mode, UNKNOWN_USER), UNKNOWN_USER);
        assert_eq!(label_for(&LabelMode::Raw, "a\"b"), "a\"b");
    }

    #[test]
    fn cap_sends_later_users_to_other_and_sums_stay_exact() {
        let mut ledger = Ledger::new(LedgerSettings::default(), 0);
        let mut labels = UserLabels::new(settings(2, LabelMode::Raw));
        let poll1 = [
            active("s1", "a", 0),
            active("s2", "b", 0),
            active("s3", "c", 0),
            active("s4", "d", 0),
        ];
        ledger.apply_poll(10_000, &poll1, &[]);
        let series = labels.update(&ledger);
        let names: Vec<_> = series.iter().map(|s| s.username.as_str()).collect();
        assert_eq!(names.len(), 3, "{names:?}");
        assert!(names.contains(&OTHER_USER));
        let other = series
            .iter()
            .find(|s| s.username == OTHER_USER)
            .map(|s| (s.active, s.started));
        assert_eq!(other, Some((2, 2)));
        let sum_started: u64 = series.iter().map(|s| s.started).sum();
        let sum_secs: f64 = series.iter().map(|s| s.session_seconds).sum();
        assert_eq!(sum_started, ledger.totals().started);
        assert_eq!(sum_secs, ledger.totals().session_seconds);
        assert_eq!(sum_secs, 40.0);

        // Next poll: the same sessions accrue 10 s more each; still exact, __other__ monotonic.
        ledger.apply_poll(20_000, &poll1, &[]);
        let series = labels.update(&ledger);
        let sum_secs: f64 = series.iter().map(|s| s.session_seconds).sum();
        assert_eq!(sum_secs, 80.0);
        let other = series
            .iter()
            .find(|s| s.username == OTHER_USER)
            .map(|s| s.session_seconds);
        assert_eq!(other, Some(40.0));
    }

    #[test]
    fn idle_users_are_evicted_and_free_their_slot() {
        let idle_ttl_ms = 60_000;
        let mut ledger = Ledger::new(
            LedgerSettings {
                idle_user_ttl_ms: idle_ttl_ms,
                ..LedgerSettings::default()
            },
            0,
        );
        let mut labels = UserLabels::new(UserSettings {
            mode: LabelMode::Raw,
            max_users: 1,
            idle_ttl_ms,
        });
        ledger.apply_poll(1_000, &[active("s1", "a", 0)], &[]);
        assert_eq!(labels.update(&ledger)[0].username, "a");
        let ended = SessionRecord {
            status: SessionStatus::Terminated,
            end_ms: Some(2_000),
            ..active("s1", "a", 0)
        };
        ledger.apply_poll(3_000, &[], &[ended]);
        assert_eq!(labels.update(&ledger)[0].username, "a");
        // Long after: "a" is idle and goes; "b" gets the freed slot instead of __other__.
        ledger.apply_poll(200_000, &[active("s2", "b", 150_000)], &[]);
        ledger.prune(140_000); // as the poller does after each poll: releases s1
        assert_eq!(ledger.evict_idle_users(200_000), 1, "only a is idle");
        let series = labels.update(&ledger);
        let names: Vec<_> = series.iter().map(|s| s.username.as_str()).collect();
        assert_eq!(names, vec!["b"]);
    }

    #[test]
    fn a_raw_user_named_other_goes_to_the_overflow_series() {
        let mut ledger = Ledger::new(LedgerSettings::default(), 0);
        let mut labels = UserLabels::new(settings(10, LabelMode::Raw));
        ledger.apply_poll(
            1_000,
            &[active("s1", OTHER_USER, 0), active("s2", "x", 0)],
            &[],
        );
        let series = labels.update(&ledger);
        assert_eq!(
            series.iter().filter(|s| s.username == OTHER_USER).count(),
            1
        );
        assert_eq!(series.len(), 2);
    }
}
