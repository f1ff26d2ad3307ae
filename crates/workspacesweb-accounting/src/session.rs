//! Plain session records: the only shape of session data above the exporter's `aws` module.

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
