//! The simulator's own session shapes and time, independent of the exporter it checks.

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
