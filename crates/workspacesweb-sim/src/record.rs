//! The simulator's own session shapes and time, independent of the exporter it checks.

use crate::rng::{Rng, mix};

/// Milliseconds since the Unix epoch (UTC).
pub type UnixMillis = i64;

/// Status of a session on the wire: the service knows exactly these two.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SessionStatus {
    /// The session is running.
    Active,
    /// The session has ended.
    Terminated,
}

impl SessionStatus {
    /// Parses a wire value; `None` for anything but `Active` and `Terminated`.
    pub fn from_wire(s: &str) -> Option<Self> {
        match s {
            "Active" => Some(Self::Active),
            "Terminated" => Some(Self::Terminated),
            _ => None,
        }
    }

    /// The wire value of this status.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Active => "Active",
            Self::Terminated => "Terminated",
        }
    }
}

/// One session: the ground truth of the simulator, and the shape tests build scripted portals from.
///
/// In results of [`Simulator::sessions_at`](crate::Simulator::sessions_at), `end_ms` is `None`
/// for sessions still active at that time.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SimSession {
    /// `sessionId` (36 chars on real AWS; scripted sessions may use anything).
    pub id: String,
    /// `username`; `None` leaves the field out of the wire record.
    pub username: Option<String>,
    /// Start time, milliseconds since the epoch.
    pub start_ms: UnixMillis,
    /// End time; `None` while the session runs.
    pub end_ms: Option<UnixMillis>,
}

impl SimSession {
    /// An active session of `username` that started at `start_ms`.
    pub fn new(id: impl Into<String>, username: impl Into<String>, start_ms: UnixMillis) -> Self {
        Self {
            id: id.into(),
            username: Some(username.into()),
            start_ms,
            end_ms: None,
        }
    }

    /// The same session, ended at `end_ms`.
    pub fn ended(mut self, end_ms: UnixMillis) -> Self {
        self.end_ms = Some(end_ms);
        self
    }

    /// Active when it has no end, else Terminated.
    pub fn status(&self) -> SessionStatus {
        if self.end_ms.is_some() {
            SessionStatus::Terminated
        } else {
            SessionStatus::Active
        }
    }

    /// The status at `at_ms` of a session whose `end_ms` may lie in the future; `None` before it starts.
    pub fn status_at(&self, at_ms: UnixMillis) -> Option<SessionStatus> {
        if self.start_ms > at_ms {
            None
        } else if self.end_ms.is_some_and(|e| e <= at_ms) {
            Some(SessionStatus::Terminated)
        } else {
            Some(SessionStatus::Active)
        }
    }

    /// A UUID-shaped session id derived from `n` (handy for scripted portals).
    pub fn id_for(n: u64) -> String {
        Rng::new(mix(n, 0x5345_5353)).uuid()
    }
}

/// Wall-clock time in milliseconds since the epoch (0 before 1970).
pub fn now_ms() -> UnixMillis {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// The six `:`-separated fields of an ARN (`arn`, partition, service, region, account,
/// resource); the resource keeps any further `:`. `None` with fewer than six fields.
pub(crate) fn arn_fields(arn: &str) -> Option<[&str; 6]> {
    let fields: Vec<&str> = arn.splitn(6, ':').collect();
    fields.try_into().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_arn_has_six_fields_of_which_the_resource_keeps_its_colons() {
        let portal = "arn:aws:workspaces-web:eu-west-1:210987654321:portal/x:y";
        let [prefix, partition, service, region, account, resource] =
            arn_fields(portal).expect("six fields");
        assert_eq!(
            (prefix, partition, service),
            ("arn", "aws", "workspaces-web")
        );
        assert_eq!(
            (region, account, resource),
            ("eu-west-1", "210987654321", "portal/x:y")
        );
        assert_eq!(arn_fields("arn:aws:sts::1"), None);
        assert_eq!(arn_fields("no colons"), None);
    }

    #[test]
    fn status_round_trips_its_two_wire_values_only() {
        for s in [SessionStatus::Active, SessionStatus::Terminated] {
            assert_eq!(SessionStatus::from_wire(s.as_str()), Some(s));
        }
        assert_eq!(SessionStatus::from_wire("Pending"), None);
        assert_eq!(SessionStatus::from_wire(""), None);
    }
}
