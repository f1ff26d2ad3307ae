//! Errors of the simulator's control API (not wire errors).

/// Errors of the simulator's control API (not wire errors).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SimError {
    /// No portal with this id is configured.
    #[error("unknown portal {0}")]
    UnknownPortal(String),
    /// No session with this id in the portal.
    #[error("unknown session {0}")]
    UnknownSession(String),
    /// A session with this id already exists in the portal.
    #[error("duplicate session {0}")]
    DuplicateSession(String),
    /// The simulator serves no organization ([`SimConfig::organization`](crate::SimConfig::organization) is `None`).
    #[error("the simulator serves no organization")]
    NoOrganization,
    /// No account with this id in the organization.
    #[error("unknown account {0}")]
    UnknownAccount(String),
    /// An account with this id is already in the organization.
    #[error("duplicate account {0}")]
    DuplicateAccount(String),
    /// Not a principal ARN of an account (`arn:aws:iam::<12 digits>:...` or `arn:aws:sts::...`).
    #[error("not a principal ARN with an account: {0}")]
    InvalidPrincipal(String),
    /// No root or OU with this id.
    #[error("unknown root or organizational unit {0}")]
    UnknownParent(String),
}
