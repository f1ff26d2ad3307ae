//! Plain session records: the only shape of session data above the `aws` module.

use std::sync::atomic::{AtomicI64, Ordering};

/// Milliseconds since the Unix epoch (UTC). API times are converted to this on entry.
pub type UnixMillis = i64;

/// Status of a session as reported by the API.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SessionStatus {
    /// The session is running.
    Active,
    /// The session has ended.
    Terminated,
    /// A status string this exporter does not know, or none at all (empty string).
    Unknown(String),
}

impl SessionStatus {
    /// Parses the wire value; anything but `Active`/`Terminated` is `Unknown`.
    pub fn from_wire(s: &str) -> Self {
        match s {
            "Active" => Self::Active,
            "Terminated" => Self::Terminated,
            other => Self::Unknown(other.to_string()),
        }
    }

    /// The wire value of this status.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Active => "Active",
            Self::Terminated => "Terminated",
            Self::Unknown(s) => s,
        }
    }
}

/// One session as listed by `ListSessions` or returned by `GetSession`, every field optional as on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRecord {
    /// `sessionId`.
    pub id: Option<String>,
    /// `username` (personal data: never log it above debug).
    pub username: Option<String>,
    /// `status`.
    pub status: SessionStatus,
    /// `startTime`, in milliseconds since the epoch.
    pub start_ms: Option<UnixMillis>,
    /// `endTime`, in milliseconds since the epoch.
    pub end_ms: Option<UnixMillis>,
}

/// The time [`now_ms`] returns instead of the system clock; [`NO_MANUAL_TIME`] when unset.
static MANUAL_NOW_MS: AtomicI64 = AtomicI64::new(NO_MANUAL_TIME);
const NO_MANUAL_TIME: UnixMillis = i64::MIN;

/// Current wall-clock time in milliseconds since the epoch (or the time a test pinned with
/// [`set_manual_now_ms`]). Every timestamp the exporter takes (a poll's start, T0, reloads,
/// state writes) comes from here; durations are measured with `Instant` instead.
pub fn now_ms() -> UnixMillis {
    let manual = MANUAL_NOW_MS.load(Ordering::Relaxed);
    if manual != NO_MANUAL_TIME {
        return manual;
    }
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Test hook, not part of the exporter's interface: pins [`now_ms`] to `ms` for the whole process
/// (`None` returns to the system clock), so that a test running the real poller against the
/// simulator's manual clock gets reproducible timestamps (`tests/golden.rs`). Nothing in the
/// exporter calls it (no flag or config key reaches it); unset, it costs one relaxed load.
/// Process-global: a test binary that sets it must hold no test that needs the real clock.
#[doc(hidden)]
pub fn set_manual_now_ms(ms: Option<UnixMillis>) {
    MANUAL_NOW_MS.store(ms.unwrap_or(NO_MANUAL_TIME), Ordering::Relaxed);
}
