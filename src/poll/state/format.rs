//! What a portal's state file holds (`--storage.path`), and the checks a file passes before it
//! resumes a portal: version, portal id, age, the settings that the counters depend on, and the
//! values themselves (SPEC section 14). Pure: reading and writing the file is
//! [`super::StateFile`]'s business.
//!
//! # Format (version 2)
//!
//! `WSWS`, the version as one byte, then a zstd frame (a fast level, with its content size) of a
//! MessagePack encoding of [`PortalState`], every struct as an array of its fields. Usernames are
//! written once (sessions name their user by index, see [`LedgerState`]), session ids and hashed
//! usernames as bytes.
//! At 25,000 users this is 0.6 MB where the JSON of version 1 took 5.7 MB (BENCHMARKS.md).
//!
//! Why this and not a log of changes: one snapshot per write keeps the crash story of the first
//! format (temp file, fsync, rename: either the old state or the new), and `kill -9` exactness
//! with it; why MessagePack and not postcard or bincode: it records how many fields each struct
//! has, so a field appended with `#[serde(default)]` leaves older files readable (the rule is in
//! [`LedgerState`]'s docs); zstd then removes what a self-describing format repeats.
//!
//! Version 1 files (JSON) are read and converted (`v1.rs`).
//!
//! # Usernames at rest
//!
//! [`PortalState::keys`] says how the ledger's usernames are kept: raw, or hashed with the salt
//! whose digest it holds. In hashed mode the ledger is keyed by label values from the start (the
//! poller hashes each record's username before the ledger sees it), so the file holds no raw
//! username. A raw-keyed file (version 1, or written in raw mode or with per-user series off)
//! resumes a hashed-mode portal by hashing its names on load, exactly; a hashed one cannot go back
//! to raw names, another salt, or per-user series off: it is set aside and the portal starts
//! fresh.

use std::io;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::v1::V1;
use crate::ledger::{Ledger, LedgerSettings, LedgerState};
use crate::session::UnixMillis;
use crate::storage::MAX_STATE_FILE_BYTES;
use crate::users::{LabelMode, UserLabels, UserLabelsState, UserSettings, label_for};

/// Version of the state file format.
pub const STATE_VERSION: u32 = 2;

/// The first bytes of a state file of [`STATE_VERSION`] 2 and later (then the version byte).
const MAGIC: &[u8; 4] = b"WSWS";

/// zstd level of a write: a fast level (-3): at 25,000 users it compresses the 1.9 MB of
/// MessagePack to 598 KB in about 3 ms of CPU, where level 1 gave 576 KB in about 4 ms.
const ZSTD_LEVEL: i32 = -3;

/// Room reserved per user and per session for a state's MessagePack (it takes about 40).
const ENCODED_BYTES_PER_ENTRY: usize = 48;

/// How far a restored watermark may reach back: the API lists terminated sessions for about 35
/// days, so an older one cannot resume exactly, and a forged one (`i64::MIN`) would wrap.
pub const MAX_WATERMARK_AGE_MS: i64 = 35 * 86_400_000;

/// How far into the future (a host clock stepped back) a restored time may be.
const CLOCK_SLACK_MS: i64 = 3_600_000;

/// The label mode a state's usernames are kept in (the salt only as a digest).
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
            LabelMode::Raw => Self::raw(),
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

    /// Raw usernames.
    pub fn raw() -> Self {
        LabelFingerprint {
            mode: "raw".into(),
            salt_sha256: None,
        }
    }

    /// The fingerprint of the usernames a portal's ledger keeps under `per_user` (raw when
    /// per-user series are off).
    pub fn of_keys(per_user: Option<&UserSettings>) -> Self {
        per_user.map_or_else(Self::raw, |u| Self::of(&u.mode))
    }
}

/// One portal's state file; `S` is `&str` when it borrows a live ledger to be written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(bound(
    serialize = "S: AsRef<str> + Serialize",
    deserialize = "S: From<String> + Deserialize<'de>"
))]
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
    /// How the ledger's usernames are kept ([`LabelFingerprint::of_keys`]).
    pub keys: LabelFingerprint,
    /// The ledger.
    pub ledger: LedgerState<S>,
    /// Per-user label slots, when per-user series were on.
    pub users: Option<UserLabelsState<S>>,
    // Fields added from here on: `#[serde(default)]`, at the end (see `LedgerState`).
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
    /// What was converted on load: an older format, raw usernames hashed (for the log).
    pub converted: Option<String>,
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

/// Serializes a portal's state (the bytes of its file).
pub fn encode<S: AsRef<str> + Serialize>(state: &PortalState<S>) -> io::Result<Vec<u8>> {
    // Sized for the whole encoding (about 40 bytes a user or session): growing by doubling
    // copied it over and over.
    let entries = state.ledger.users.len() + state.ledger.sessions.len();
    let mut packed = Vec::with_capacity(ENCODED_BYTES_PER_ENTRY * entries + 4096);
    rmp_serde::encode::write(&mut packed, state).map_err(io::Error::other)?;
    let mut z = zstd::bulk::Compressor::new(ZSTD_LEVEL)?;
    z.include_contentsize(true)?;
    let frame = z.compress(&packed)?;
    let mut out = Vec::with_capacity(MAGIC.len() + 1 + frame.len());
    out.extend_from_slice(MAGIC);
    out.push(STATE_VERSION as u8);
    out.extend_from_slice(&frame);
    Ok(out)
}

/// The state in `bytes`, in the current shape (a version 1 file converted), not yet checked.
fn parse(bytes: &[u8]) -> Result<(PortalState, Option<V1Labels>), Unusable> {
    let bad = |what: &str, e: &dyn std::fmt::Display| Unusable::Bad(format!("{what}: {e}"));
    if let Some(rest) = bytes.strip_prefix(MAGIC) {
        let (&v, frame) = rest
            .split_first()
            .ok_or_else(|| Unusable::Bad("damaged state file: no version".into()))?;
        if u32::from(v) != STATE_VERSION {
            return Err(unknown_version(u32::from(v)));
        }
        let size = zstd::zstd_safe::get_frame_content_size(frame)
            .map_err(|e| bad("damaged state file", &format!("{e:?}")))?
            .ok_or_else(|| Unusable::Bad("damaged state file: no content size".into()))?;
        if size > MAX_STATE_FILE_BYTES {
            return Err(Unusable::Bad(format!(
                "the state decompresses to {size} bytes, over the limit of {} MiB",
                MAX_STATE_FILE_BYTES >> 20
            )));
        }
        let packed = zstd::bulk::decompress(frame, size as usize)
            .map_err(|e| bad("damaged state file", &e))?;
        let state = rmp_serde::from_slice(&packed).map_err(|e| bad("damaged state file", &e))?;
        return Ok((state, None));
    }
    #[derive(Deserialize)]
    struct Version {
        version: u32,
    }
    let v: Version = serde_json::from_slice(bytes).map_err(|e| bad("not a state file", &e))?;
    if v.version != 1 {
        return Err(unknown_version(v.version));
    }
    let old: V1 = serde_json::from_slice(bytes).map_err(|e| bad("damaged state file", &e))?;
    let (h, ledger, users) = old.convert();
    let labels = V1Labels(h.labels.map(|m| LabelFingerprint {
        mode: m.mode,
        salt_sha256: m.salt_sha256,
    }));
    let state = PortalState {
        version: STATE_VERSION,
        portal_id: h.portal_id,
        written_at_ms: h.written_at_ms,
        t0_ms: h.t0_ms,
        watermark_ms: h.watermark_ms,
        backfill_done: h.backfill_done,
        keys: LabelFingerprint::raw(),
        ledger,
        users,
    };
    Ok((state, Some(labels)))
}

/// A state file's content as JSON (a version 1 file converted), for inspection and tests: `None`
/// when it is not a state file. Usernames and ids appear as strings.
pub fn to_json(bytes: &[u8]) -> Option<serde_json::Value> {
    serde_json::to_value(parse(bytes).ok()?.0).ok()
}

/// The per-user label mode a version 1 file was written with (`None`: per-user series off).
struct V1Labels(Option<LabelFingerprint>);

fn unknown_version(v: u32) -> Unusable {
    Unusable::Bad(format!(
        "unknown version {v} (this exporter reads versions 1 and {STATE_VERSION})"
    ))
}

/// Reads a state file for `portal_id` and checks it against the settings in force now and the
/// time `now_ms`.
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
    let (mut state, v1) = parse(bytes)?;
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
    check_times(&state, now_ms)?;
    let converted = convert_keys(&mut state, v1, per_user)?;
    let labels_on = state.users.is_some();
    let (_, native) = state.ledger.resume_native(settings.native_schema);
    if native != crate::ledger::NativeResume::Kept {
        tracing::info!(portal_id = %state.portal_id, outcome = ?native, schema = settings.native_schema, "native duration buckets: a state without them, or of a higher schema, resumes them empty; of a lower one, merged");
    }
    let ledger = Ledger::from_state(settings, state.ledger).map_err(|e| match e {
        crate::ledger::StateError::Buckets { .. } => {
            Unusable::Bad(format!("incompatible settings: {e}"))
        }
        crate::ledger::StateError::Inconsistent(_) => Unusable::Bad(e.to_string()),
    })?;
    let users = per_user.map(|u| match state.users {
        Some(slots) if labels_on => UserLabels::from_state(u.clone(), slots, &ledger),
        _ => UserLabels::new(u.clone()),
    });
    Ok(Resumed {
        ledger,
        users,
        watermark_ms: state.watermark_ms,
        backfill_done: state.backfill_done,
        converted,
    })
}

/// The state's times: written no later than now, a watermark within the last 35 days and no
/// later than the write, and the ledger's own times no later than the write.
fn check_times(state: &PortalState, now_ms: UnixMillis) -> Result<(), Unusable> {
    let latest = now_ms.saturating_add(CLOCK_SLACK_MS);
    if state.written_at_ms > latest {
        return Err(Unusable::Bad(format!(
            "written in the future ({} > {now_ms})",
            state.written_at_ms
        )));
    }
    let w = state.watermark_ms;
    if w < now_ms.saturating_sub(MAX_WATERMARK_AGE_MS)
        || w > state.written_at_ms.saturating_add(CLOCK_SLACK_MS)
    {
        return Err(Unusable::Bad(format!(
            "watermark {w} is not within the 35 days before the write ({})",
            state.written_at_ms
        )));
    }
    state
        .ledger
        .check_times(state.written_at_ms, CLOCK_SLACK_MS)
        .map_err(|e| Unusable::Bad(e.to_string()))
}

/// Brings the state's usernames to the mode in force (`per_user`): raw names are hashed when the
/// mode is hashed; anything else that differs is incompatible. Returns what was converted.
fn convert_keys(
    state: &mut PortalState,
    v1: Option<V1Labels>,
    per_user: Option<&UserSettings>,
) -> Result<Option<String>, Unusable> {
    let now = LabelFingerprint::of_keys(per_user);
    let incompatible = |then: &LabelFingerprint, now: &LabelFingerprint| {
        let what = if then.mode != now.mode {
            "per_user.username mode changed"
        } else {
            "per_user.hash_salt changed"
        };
        Unusable::Bad(format!("incompatible settings: {what}"))
    };
    // A version 1 file kept raw names, but its label mode decided its series.
    if let (Some(V1Labels(Some(then))), Some(u)) = (&v1, per_user)
        && *then != LabelFingerprint::of(&u.mode)
    {
        return Err(incompatible(then, &LabelFingerprint::of(&u.mode)));
    }
    let from_v1 = v1.is_some().then(|| "version 1 file".to_string());
    if state.keys == now {
        return Ok(from_v1);
    }
    let (Some(u), true) = (per_user, state.keys == LabelFingerprint::raw()) else {
        if per_user.is_none() {
            return Err(Unusable::Bad(
                "incompatible settings: the usernames are hashed and per_user is now off".into(),
            ));
        }
        return Err(incompatible(&state.keys, &now));
    };
    let key = |name: &str| label_for(&u.mode, name);
    state.ledger.rekey(key);
    if let Some(users) = &mut state.users {
        users.rekey(key);
    }
    state.keys = now;
    Ok(Some(match from_v1 {
        Some(v) => format!("{v}, usernames hashed"),
        None => "usernames hashed".into(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::{SessionRecord, SessionStatus};
    use crate::users::key_records;

    const P: &str = "11111111-2222-3333-4444-555555555555";
    const DAY: i64 = 86_400_000;
    const RAW: &str = "alice \"quoted\"\n";

    fn hashed(salt: &str) -> UserSettings {
        UserSettings {
            mode: LabelMode::Hashed { salt: salt.into() },
            max_users: 10,
            idle_ttl_ms: DAY,
        }
    }

    fn records() -> [(Vec<SessionRecord>, Vec<SessionRecord>); 2] {
        let rec = |id: &str, user: &str, status, start, end| SessionRecord {
            id: Some(id.into()),
            username: Some(user.into()),
            status,
            start_ms: Some(start),
            end_ms: end,
        };
        [
            (
                vec![rec("a", RAW, SessionStatus::Active, 900_000, None)],
                vec![],
            ),
            (
                vec![
                    rec("b", RAW, SessionStatus::Active, 1_010_000, None),
                    rec("c", "bob", SessionStatus::Active, 1_020_000, None),
                ],
                vec![rec(
                    "a",
                    RAW,
                    SessionStatus::Terminated,
                    900_000,
                    Some(1_050_000),
                )],
            ),
        ]
    }

    /// A ledger after two polls, its usernames kept as `keys` says (raw, or hashed as the poller
    /// does), and its state.
    fn sample_keyed(
        per_user: Option<&UserSettings>,
        keys: Option<&LabelMode>,
    ) -> (PortalState, Ledger) {
        let mut ledger = Ledger::new(LedgerSettings::default(), 1_000_000);
        for (at, (mut active, mut other)) in [1_000_000, 1_060_000].into_iter().zip(records()) {
            if let Some(mode) = keys {
                key_records(mode, &mut active);
                key_records(mode, &mut other);
            }
            ledger.apply_poll(at, &active, &other);
        }
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
            keys: keys.map_or_else(LabelFingerprint::raw, LabelFingerprint::of),
            ledger: ledger.to_state(),
            users: users.map(|u| u.to_state()),
        };
        (state, ledger)
    }

    fn sample(per_user: Option<&UserSettings>) -> (PortalState, Ledger) {
        sample_keyed(per_user, per_user.map(|u| &u.mode))
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

    fn bad(r: Result<Resumed, Unusable>) -> String {
        match r {
            Err(Unusable::Bad(msg)) => msg,
            other => panic!("expected a bad state, got {other:?}"),
        }
    }

    /// The MessagePack inside a state file.
    fn unpacked(bytes: &[u8]) -> Vec<u8> {
        zstd::decode_all(&bytes[MAGIC.len() + 1..]).unwrap()
    }

    #[test]
    fn a_state_round_trips_to_an_equal_ledger() {
        let u = hashed("salt");
        let (state, ledger) = sample(Some(&u));
        let r = load(&encode(&state).unwrap(), Some(&u)).unwrap();
        assert_eq!(r.ledger.to_state(), ledger.to_state());
        assert_eq!(r.ledger.totals(), ledger.totals());
        assert_eq!(
            r.ledger.totals().started,
            2,
            "a is the baseline, b and c starts"
        );
        assert_eq!(r.watermark_ms, 1_060_000);
        assert!(r.backfill_done);
        assert_eq!(r.converted, None);
        assert_eq!(r.users.unwrap().to_state(), state.users.unwrap());
    }

    #[test]
    fn the_resumed_ledger_counts_on_exactly() {
        let (state, mut ledger) = sample(None);
        let mut resumed = load(&encode(&state).unwrap(), None).unwrap().ledger;
        let next = [SessionRecord {
            id: Some("d".into()),
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
    fn hashed_mode_keeps_no_raw_username_at_rest() {
        let u = hashed("salt");
        let (state, _) = sample(Some(&u));
        let bytes = encode(&state).unwrap();
        for haystack in [bytes.clone(), unpacked(&bytes)] {
            for raw in [RAW.as_bytes(), b"alice", b"bob"] {
                assert!(
                    !haystack.windows(raw.len()).any(|w| w == raw),
                    "{raw:?} at rest"
                );
            }
        }
        let r = load(&bytes, Some(&u)).unwrap();
        let names: Vec<String> = r.ledger.users().map(|(n, _)| n.to_string()).collect();
        assert!(names.contains(&label_for(&u.mode, "bob")), "{names:?}");
    }

    /// A version 1 file (JSON, raw usernames) of the sample's ledger, as the previous format wrote
    /// it, with the per-user label mode `labels`.
    fn v1_file(labels: Option<&UserSettings>) -> Vec<u8> {
        let (state, _) = sample_keyed(labels, None);
        let l = &state.ledger;
        let name = |i: u32| l.users[i as usize].name.clone();
        let json = serde_json::json!({
            "version": 1,
            "portal_id": P,
            "written_at_ms": state.written_at_ms,
            "t0_ms": state.t0_ms,
            "watermark_ms": state.watermark_ms,
            "backfill_done": true,
            "labels": labels.map(|u| LabelFingerprint::of(&u.mode)),
            "ledger": {
                "t0_ms": l.t0_ms, "started": l.started, "terminated": l.terminated,
                "incomplete": l.incomplete, "session_ms": l.session_ms,
                "duration_bounds": l.duration_bounds, "duration_counts": l.duration_counts,
                "duration_sum_ms": l.duration_sum_ms,
                "users": l.users.iter().map(|u| serde_json::json!([u.name, u.active, u.started, u.session_ms, u.last_seen_ms])).collect::<Vec<_>>(),
                "sessions": l.sessions.iter().map(|s| serde_json::json!([s.id, name(s.user), s.start_ms, s.end_ms, s.accrued_ms, s.phase, s.incomplete])).collect::<Vec<_>>(),
                "loose": [], "active": l.active, "month": l.month,
                "month_users": l.users.iter().filter(|u| u.in_month).map(|u| u.name.clone()).collect::<Vec<_>>(),
                "pruned_below": l.pruned_below,
                "active_peak": l.active_peak, "last_poll_ms": l.last_poll_ms,
                "capacity_limit": l.capacity_limit, "at_capacity_ms": l.at_capacity_ms,
                // What main wrote last in version 1: the native histogram, created timestamps.
                "native": l.native,
                "user_created": l.users.iter().map(|u| serde_json::json!([u.name, u.created_ms])).collect::<Vec<_>>(),
            },
            "users": state.users.as_ref().map(|u| serde_json::json!({
                "slots": l.users.iter().map(|n| {
                    let other = u.others.iter().find(|o| o.0 == n.name).map(|o| (o.1, o.2));
                    serde_json::json!([n.name, other])
                }).collect::<Vec<_>>(),
                "other_started": u.other_started, "other_ms": u.other_ms, "other_seen": u.other_seen,
                "other_created_ms": u.other_created_ms,
            })),
        });
        serde_json::to_vec(&json).unwrap()
    }

    #[test]
    fn a_version_1_file_resumes_with_every_counter() {
        let (_, ledger) = sample(None);
        let r = load(&v1_file(None), None).unwrap();
        assert_eq!(r.ledger.to_state(), ledger.to_state());
        assert_eq!(r.converted.as_deref(), Some("version 1 file"));
    }

    #[test]
    fn a_version_1_file_in_hashed_mode_is_converted_and_per_user_counters_resume() {
        let u = hashed("salt");
        // What the previous version kept: raw names, in hashed mode.
        let r = load(&v1_file(Some(&u)), Some(&u)).unwrap();
        assert_eq!(
            r.converted.as_deref(),
            Some("version 1 file, usernames hashed")
        );
        // The same as a ledger that was keyed by label values from the start.
        let (hashed_from_start, ledger) = sample(Some(&u));
        assert_eq!(r.ledger.to_state(), ledger.to_state());
        let mut labels = r.users.unwrap();
        let mut expected =
            UserLabels::from_state(u.clone(), hashed_from_start.users.unwrap(), &ledger);
        assert_eq!(labels.update(&r.ledger), expected.update(&ledger));
        // And what it writes now holds no raw name.
        let again = encode(&PortalState {
            version: STATE_VERSION,
            portal_id: P.into(),
            written_at_ms: 1_060_000,
            t0_ms: r.ledger.t0_ms(),
            watermark_ms: 1_060_000,
            backfill_done: true,
            keys: LabelFingerprint::of(&u.mode),
            ledger: r.ledger.view(),
            users: Some(labels.view()),
        })
        .unwrap();
        assert!(!unpacked(&again).windows(3).any(|w| w == b"bob"));
    }

    #[test]
    fn a_raw_state_resumes_in_hashed_mode_hashed() {
        let (state, _) = sample(None);
        let u = hashed("salt");
        let r = load(&encode(&state).unwrap(), Some(&u)).unwrap();
        assert_eq!(r.converted.as_deref(), Some("usernames hashed"));
        let (_, keyed) = sample(Some(&u));
        assert_eq!(r.ledger.to_state(), keyed.to_state());
    }

    #[test]
    fn bad_files_say_why() {
        let (state, _) = sample(None);
        let good = encode(&state).unwrap();
        let mut future_version = good.clone();
        future_version[MAGIC.len()] = 9;
        let mut bomb = MAGIC.to_vec();
        bomb.push(STATE_VERSION as u8);
        bomb.extend(
            zstd::bulk::Compressor::new(1)
                .and_then(|mut z| {
                    z.include_contentsize(true)?;
                    z.compress(&vec![0u8; (MAX_STATE_FILE_BYTES + 1) as usize])
                })
                .unwrap(),
        );
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (Vec::new(), "empty file"),
            (b"\x00\xffgarbage".to_vec(), "not a state file"),
            (good[..good.len() / 2].to_vec(), "damaged state file"),
            (future_version, "unknown version 9"),
            (br#"{"version": 3}"#.to_vec(), "unknown version 3"),
            (bomb, "over the limit of 64 MiB"),
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
            let msg = bad(load(&bytes, None));
            assert!(msg.contains(why), "{msg} lacks {why}");
        }
    }

    #[test]
    fn forged_values_are_refused() {
        let (state, _) = sample(None);
        let forged = |f: &dyn Fn(&mut PortalState)| {
            let mut s = state.clone();
            f(&mut s);
            bad(load(&encode(&s).unwrap(), None))
        };
        // A month after the write: monthly users would never roll over.
        let next_year = crate::ledger::month_bounds(1_060_000 + 400 * DAY);
        let msg = forged(&|s| s.ledger.month = Some(next_year));
        assert!(
            msg.contains("the month begins after the state was written"),
            "{msg}"
        );
        let msg = forged(&|s| s.ledger.month = Some((0, 1)));
        assert!(msg.contains("not a calendar month"), "{msg}");
        // Counters at the top of their range, or below their parts.
        let msg = forged(&|s| s.ledger.started = u64::MAX);
        assert!(
            msg.contains("started 18446744073709551615 is out of range"),
            "{msg}"
        );
        let msg = forged(&|s| s.ledger.started = 0);
        assert!(msg.contains("more than the 0 started"), "{msg}");
        let msg = forged(&|s| s.ledger.duration_counts[0] = 5);
        assert!(msg.contains("more than the 1 terminated"), "{msg}");
        let msg = forged(&|s| s.ledger.duration_counts[0] = u64::MAX);
        assert!(msg.contains("histogram count overflows"), "{msg}");
        let msg = forged(&|s| s.ledger.session_ms = 1);
        assert!(msg.contains("exceeds the total"), "{msg}");
        let msg = forged(&|s| s.ledger.sessions[0].user = 99);
        assert!(msg.contains("names no known user"), "{msg}");
        // Watermarks that would wrap, reach back past what the API lists, or lie ahead.
        for w in [i64::MIN, 1_070_000 - 36 * DAY, i64::MAX] {
            let msg = forged(&|s| s.watermark_ms = w);
            assert!(msg.contains("watermark"), "{w}: {msg}");
        }
        let msg = forged(&|s| s.ledger.pruned_below = i64::MAX);
        assert!(msg.contains("the prune bound is after"), "{msg}");
        let msg = forged(&|s| s.written_at_ms = 1_070_000 + DAY);
        assert!(msg.contains("written in the future"), "{msg}");
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
        // Hashed names cannot serve per-user series off (new records would come raw).
        let err = load(&bytes, None).unwrap_err();
        assert!(err.to_string().contains("per_user is now off"), "{err}");
        // Raw names serve per-user series on or off.
        let (raw_state, _) = sample(None);
        let raw_bytes = encode(&raw_state).unwrap();
        assert!(load(&raw_bytes, None).is_ok());
        assert!(load(&raw_bytes, Some(&raw)).is_ok());
        // A version 1 file keeps the checks it had.
        let err = load(&v1_file(Some(&u)), Some(&hashed("pepper"))).unwrap_err();
        assert!(
            err.to_string().contains("per_user.hash_salt changed"),
            "{err}"
        );
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

    /// The rule of `LedgerState`'s docs: a field appended with `#[serde(default)]`, at any depth,
    /// leaves the files written before it readable (they lack it: it takes its default).
    #[test]
    fn a_field_appended_with_a_default_leaves_older_files_readable() {
        #[derive(Serialize)]
        struct Before {
            a: u64,
            inner: Vec<InnerBefore>,
        }
        #[derive(Serialize)]
        struct InnerBefore {
            x: String,
        }
        #[derive(Debug, PartialEq, Deserialize)]
        struct After {
            a: u64,
            inner: Vec<InnerAfter>,
            #[serde(default)]
            added: Option<u64>,
        }
        #[derive(Debug, PartialEq, Deserialize)]
        struct InnerAfter {
            x: String,
            #[serde(default)]
            added: Vec<u64>,
        }
        // As `encode` and `parse` use MessagePack: structs as arrays of their fields.
        let old = rmp_serde::to_vec(&Before {
            a: 7,
            inner: vec![InnerBefore { x: "s".into() }],
        })
        .unwrap();
        let new: After = rmp_serde::from_slice(&old).unwrap();
        assert_eq!(
            new,
            After {
                a: 7,
                inner: vec![InnerAfter {
                    x: "s".into(),
                    added: Vec::new()
                }],
                added: None
            }
        );
    }

    #[test]
    fn the_salt_is_not_written() {
        let u = hashed("very-secret-salt");
        let (state, _) = sample(Some(&u));
        let bytes = encode(&state).unwrap();
        assert!(
            !unpacked(&bytes)
                .windows(16)
                .any(|w| w == b"very-secret-salt")
        );
    }
}
