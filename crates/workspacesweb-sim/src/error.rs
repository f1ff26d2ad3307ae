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
}
