//! What a portal's state file holds (`--storage.path`), and the checks a file passes before it
//! resumes a portal: version, portal id, age, and settings that the counters depend on. Pure:
//! reading and writing the file is [`super::StateFile`]'s business.
//!
//! The format is JSON, versioned by [`STATE_VERSION`]. It holds T0, every counter (the ledger's,
//! its histogram and per-user aggregates, the per-user label slots), the watermark of the next
//! Terminated scan, the sessions the ledger still holds, and the month's users.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::ledger::{Ledger, LedgerSettings, LedgerState};
use crate::session::UnixMillis;
use crate::users::{LabelMode, UserLabels, UserLabelsState, UserSettings};

/// Version of the state file format.
pub const STATE_VERSION: u32 = 1;

/// The per-user label mode a state was written with (the salt only as a digest).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabelFingerprint {
    /// `raw` or `hashed`.
    pub mode: String,
    /// Hex SHA-256 of the salt (hashed mode only).
    pub salt_sha256: Option<String>,
}

impl LabelFingerprint {
    /// The fingerprint of `mode`.
    pub fn of(mode: &LabelMode) -> Self {
        match mode {
            LabelMode::Raw => LabelFingerprint {
                mode: "raw".into(),
                salt_sha256: None,
            },
            LabelMode::Hashed { salt } => LabelFingerprint {
                mode: "hashed".into(),
                salt_sha256: Some(
                    Sha256::digest(salt.as_bytes())
                        .iter()
                        .map(|b| format!("{b:02x}"))
                        .collect(),
                ),
            },
        }
    }
}

/// One portal's state file; `S` is `&str` when it borrows a live ledger to be written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PortalState<S = String> {
    /// [`STATE_VERSION`].
    pub version: u32,
    /// The portal it belongs to.
    pub portal_id: String,
    /// When it was written (epoch ms).
    pub written_at_ms: UnixMillis,
    /// T0 of the portal's counters (epoch ms).
    pub t0_ms: UnixMillis,
    /// Start of the last successful poll: the next Terminated scan reaches back to it (minus the
    /// skew margin).
    pub watermark_ms: UnixMillis,
    /// Whether the month's backfill was complete.
    pub backfill_done: bool,
    /// Per-user label mode, when per-user series were on.
    pub labels: Option<LabelFingerprint>,
    /// The ledger.
    pub ledger: LedgerState<S>,
    /// Per-user label slots, when per-user series were on.
    pub users: Option<UserLabelsState<S>>,
}

/// A state that resumes a portal.
#[derive(Debug)]
pub struct Resumed {
    /// The ledger, continuing T0 and every counter.
    pub ledger: Ledger,
    /// Label slots (present when per-user series are on now).
    pub users: Option<UserLabels>,
    /// Start of the last successful poll recorded.
    pub watermark_ms: UnixMillis,
    /// Whether the month's backfill was complete.
    pub backfill_done: bool,
}

/// Why a state file does not resume its portal.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unusable {
    /// Older than `storage.max_age`: ignored (and overwritten by the next write), not set aside.
    #[error("state is older than storage.max_age ({age_s}s)")]
    Expired {
        /// Its age in seconds.
        age_s: i64,
    },
    /// Anything else: the file is set aside as `*.corrupt`.
    #[error("{0}")]
    Bad(String),
}

/// Serializes a portal's state.
pub fn encode<S: Serialize>(state: &PortalState<S>) -> Result<Vec<u8>, serde_json::Error> {
    serde_json::to_vec(state)
}

/// Reads a state file for `portal_id` and checks it against the settings in force now.
pub fn decode(
    bytes: &[u8],
    portal_id: &str,
    settings: &LedgerSettings,
    per_user: Option<&UserSettings>,
    now_ms: UnixMillis,
    max_age_ms: i64,
) -> Result<Resumed, Unusable> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(Unusable::Bad("empty file".into()));
    }
    #[derive(Deserialize)]
    struct Version {
        version: u32,
    }
    let v: Version = serde_json::from_slice(bytes)
        .map_err(|e| Unusable::Bad(format!("not a state file: {e}")))?;
    if v.version != STATE_VERSION {
        return Err(Unusable::Bad(format!(
            "unknown version {} (this exporter reads version {STATE_VERSION})",
            v.version
        )));
    }
    let state: PortalState = serde_json::from_slice(bytes)
        .map_err(|e| Unusable::Bad(format!("damaged state file: {e}")))?;
    if state.portal_id != portal_id {
        return Err(Unusable::Bad(format!(
            "state of another portal ({:?})",
            state.portal_id
        )));
    }
    if state.t0_ms != state.ledger.t0_ms {
        return Err(Unusable::Bad("inconsistent T0".into()));
    }
    let age_ms = now_ms.saturating_sub(state.written_at_ms);
    if age_ms > max_age_ms {
        return Err(Unusable::Expired {
            age_s: age_ms / 1000,
        });
    }
    let now_labels = per_user.map(|u| LabelFingerprint::of(&u.mode));
    if let (Some(then), Some(now)) = (&state.labels, &now_labels)
        && then != now
    {
        let what = if then.mode != now.mode {
            "per_user.username mode"
        } else {
            "per_user.hash_salt"
        };
        return Err(Unusable::Bad(format!(
            "incompatible settings: {what} changed"
        )));
    }
    let (_, native) = state.ledger.resume_native(settings.native_schema);
    if native != crate::ledger::NativeResume::Kept {
        tracing::info!(portal_id = %state.portal_id, outcome = ?native, schema = settings.native_schema, "native duration buckets: a state without them, or of a higher schema, resumes them empty; of a lower one, merged");
    }
    let ledger = Ledger::from_state(settings, state.ledger)
        .map_err(|e| Unusable::Bad(format!("incompatible settings: {e}")))?;
    let users = per_user.map(|u| match (state.users, &state.labels) {
        (Some(slots), Some(_)) => UserLabels::from_state(u.clone(), slots),
        _ => UserLabels::new(u.clone()),
    });
    Ok(Resumed {
        ledger,
        users,
        watermark_ms: state.watermark_ms,
        backfill_done: state.backfill_done,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::{SessionRecord, SessionStatus};

    const P: &str = "11111111-2222-3333-4444-555555555555";
    const DAY: i64 = 86_400_000;

    fn hashed(salt: &str) -> UserSettings {
        UserSettings {
            mode: LabelMode::Hashed { salt: salt.into() },
            max_users: 10,
            idle_ttl_ms: DAY,
        }
    }

    fn sample(per_user: Option<&UserSettings>) -> (PortalState, Ledger) {
        let mut ledger = Ledger::new(LedgerSettings::default(), 1_000_000);
        let rec = |id: &str, status, start, end| SessionRecord {
            id: Some(id.into()),
            username: Some("alice \"quoted\"\n".into()),
            status,
            start_ms: Some(start),
            end_ms: end,
        };
        ledger.apply_poll(
            1_000_000,
            &[rec("a", SessionStatus::Active, 900_000, None)],
            &[],
        );
        ledger.apply_poll(
            1_060_000,
            &[rec("b", SessionStatus::Active, 1_010_000, None)],
            &[rec(
                "a",
                SessionStatus::Terminated,
                900_000,
                Some(1_050_000),
            )],
        );
        let mut users = per_user.map(|u| UserLabels::new(u.clone()));
        if let Some(u) = &mut users {
            u.update(&ledger);
        }
        let state = PortalState {
            version: STATE_VERSION,
            portal_id: P.into(),
            written_at_ms: 1_060_000,
            t0_ms: ledger.t0_ms(),
            watermark_ms: 1_060_000,
            backfill_done: true,
            labels: per_user.map(|u| LabelFingerprint::of(&u.mode)),
            ledger: ledger.to_state(),
            users: users.map(|u| u.to_state()),
        };
        (state, ledger)
    }

    fn load(bytes: &[u8], per_user: Option<&UserSettings>) -> Result<Resumed, Unusable> {
        decode(
            bytes,
            P,
            &LedgerSettings::default(),
            per_user,
            1_070_000,
            30 * DAY,
        )
    }

    #[test]
    fn a_state_round_trips_to_an_equal_ledger() {
        let u = hashed("salt");
        let (state, ledger) = sample(Some(&u));
        let r = load(&encode(&state).unwrap(), Some(&u)).unwrap();
        assert_eq!(r.ledger.to_state(), ledger.to_state());
        assert_eq!(r.ledger.totals(), ledger.totals());
        assert_eq!(r.ledger.totals().started, 1, "a is the baseline, b a start");
        assert_eq!(r.watermark_ms, 1_060_000);
        assert!(r.backfill_done);
        assert_eq!(r.users.unwrap().to_state(), state.users.unwrap());
    }

    #[test]
    fn the_resumed_ledger_counts_on_exactly() {
        let (state, mut ledger) = sample(None);
        let mut resumed = load(&encode(&state).unwrap(), None).unwrap().ledger;
        let next = [SessionRecord {
            id: Some("c".into()),
            username: None,
            status: SessionStatus::Terminated,
            start_ms: Some(1_061_000),
            end_ms: Some(1_062_000),
        }];
        let a = ledger.apply_poll(1_120_000, &[], &next);
        let b = resumed.apply_poll(1_120_000, &[], &next);
        assert_eq!(a, b);
        assert_eq!(ledger.to_state(), resumed.to_state());
    }

    #[test]
    fn a_state_file_without_the_capacity_fields_still_loads() {
        let (state, ledger) = sample(None);
        let mut json: serde_json::Value = serde_json::from_slice(&encode(&state).unwrap()).unwrap();
        let fields = json["ledger"].as_object_mut().unwrap();
        for key in [
            "active_peak",
            "last_poll_ms",
            "capacity_limit",
            "at_capacity_ms",
        ] {
            assert!(fields.remove(key).is_some(), "{key} is written");
        }
        let r = load(&serde_json::to_vec(&json).unwrap(), None).unwrap();
        assert_eq!(r.ledger.totals(), ledger.totals());
        assert_eq!(r.ledger.at_capacity_ms(), 0);
        assert_eq!(r.ledger.capacity_limit(), None);
    }

    #[test]
    fn bad_files_say_why() {
        let (state, _) = sample(None);
        let good = encode(&state).unwrap();
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (Vec::new(), "empty file"),
            (b"\x00\xffgarbage".to_vec(), "not a state file"),
            (good[..good.len() / 2].to_vec(), "not a state file"),
            (
                encode(&PortalState {
                    version: 999,
                    ..state.clone()
                })
                .unwrap(),
                "unknown version 999",
            ),
            (
                encode(&PortalState {
                    portal_id: "aaaaaaaa-2222-3333-4444-555555555555".into(),
                    ..state.clone()
                })
                .unwrap(),
                "state of another portal",
            ),
        ];
        for (bytes, why) in cases {
            match load(&bytes, None) {
                Err(Unusable::Bad(msg)) => assert!(msg.contains(why), "{msg} lacks {why}"),
                other => panic!("expected Bad({why}), got {other:?}"),
            }
        }
    }

    #[test]
    fn changed_buckets_mode_or_salt_are_incompatible() {
        let u = hashed("salt");
        let (state, _) = sample(Some(&u));
        let bytes = encode(&state).unwrap();
        let other_buckets = LedgerSettings {
            duration_buckets: vec![1.0, 2.0],
            ..LedgerSettings::default()
        };
        let err = decode(&bytes, P, &other_buckets, Some(&u), 1_070_000, 30 * DAY).unwrap_err();
        assert!(
            err.to_string().contains("duration_buckets changed"),
            "{err}"
        );
        let err = load(&bytes, Some(&hashed("pepper"))).unwrap_err();
        assert!(
            err.to_string().contains("per_user.hash_salt changed"),
            "{err}"
        );
        let raw = UserSettings {
            mode: LabelMode::Raw,
            ..u.clone()
        };
        let err = load(&bytes, Some(&raw)).unwrap_err();
        assert!(err.to_string().contains("mode changed"), "{err}");
        // Turning per-user series on or off keeps the counters.
        assert!(load(&bytes, None).is_ok());
    }

    #[test]
    fn an_old_state_is_expired_not_corrupt() {
        let (state, _) = sample(None);
        let r = decode(
            &encode(&state).unwrap(),
            P,
            &LedgerSettings::default(),
            None,
            1_060_000 + 31 * DAY,
            30 * DAY,
        );
        assert!(matches!(r, Err(Unusable::Expired { .. })), "{r:?}");
    }

    #[test]
    fn the_salt_is_not_written() {
        let u = hashed("very-secret-salt");
        let (state, _) = sample(Some(&u));
        let text = String::from_utf8(encode(&state).unwrap()).unwrap();
        assert!(!text.contains("very-secret-salt"));
    }
}
