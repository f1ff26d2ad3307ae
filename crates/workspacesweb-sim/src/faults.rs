//! Fault injection: what a portal's (or `ListPortals`') answers do wrong, changeable at runtime.

use std::time::Duration;

use bytes::Bytes;

use crate::record::SessionStatus;

/// Faults injected into the requests of one portal (or of `ListPortals`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Faults {
    /// Answer every request with this AWS error code (e.g. `AccessDeniedException`).
    pub error: Option<String>,
    /// Fraction (0..=1) of requests answered with `ThrottlingException`; deterministic per request sequence.
    pub throttle_ratio: f64,
    /// `Retry-After` seconds sent with throttling and internal errors.
    pub retry_after_secs: u32,
    /// Delay added before answering.
    pub latency: Duration,
    /// A broken paginator: `ListSessions`/`ListPortals` return the request's `nextToken` again, forever.
    pub repeat_next_token: bool,
    /// A paginator that never ends: `ListSessions`/`ListPortals` return a fresh `nextToken` on every
    /// page, forever (the pages after the real data are empty).
    pub endless_next_token: bool,
    /// Replaces or pads the body of successful answers (hostile or broken responses).
    pub body: Option<BodyFault>,
    /// When set, the faults apply only to `ListSessions` requests with this `status` filter; every
    /// other request of the portal is answered normally.
    pub only_status: Option<SessionStatus>,
}

/// A broken body sent with status 200 instead of the real one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyFault {
    /// Exactly these bytes (malformed JSON, `{}` without `sessions`, `{"sessions":null}`, non-UTF-8, ...).
    Replace(Bytes),
    /// The real body with an unknown member appended so that the body is this many bytes long
    /// (valid JSON; the real body when it is already longer).
    PadTo(usize),
}

impl Faults {
    /// No faults.
    pub fn none() -> Self {
        Self::default()
    }

    /// Successful answers carry exactly `body` (status 200, `application/json`).
    pub fn body(body: impl Into<Bytes>) -> Self {
        Self {
            body: Some(BodyFault::Replace(body.into())),
            ..Self::default()
        }
    }

    /// Successful answers are padded with an unknown member to `bytes` bytes.
    pub fn padded(bytes: usize) -> Self {
        Self {
            body: Some(BodyFault::PadTo(bytes)),
            ..Self::default()
        }
    }

    /// Listings never end: a fresh `nextToken` on every page.
    pub fn endless_pages() -> Self {
        Self {
            endless_next_token: true,
            ..Self::default()
        }
    }

    /// The same faults, limited to `ListSessions` requests with this `status` filter.
    pub fn only_for(mut self, status: SessionStatus) -> Self {
        self.only_status = Some(status);
        self
    }

    /// Whether these faults apply to a request for `operation` with this `status` query parameter.
    pub(crate) fn applies_to(&self, operation: &str, status: Option<&str>) -> bool {
        match &self.only_status {
            None => true,
            Some(only) => {
                operation == crate::operation::LIST_SESSIONS && status == Some(only.as_str())
            }
        }
    }

    /// Every request fails with `code`.
    pub fn error(code: impl Into<String>) -> Self {
        Self {
            error: Some(code.into()),
            retry_after_secs: 1,
            ..Self::default()
        }
    }

    /// A fraction `ratio` of requests is throttled with `Retry-After: retry_after_secs`.
    pub fn throttle(ratio: f64, retry_after_secs: u32) -> Self {
        Self {
            throttle_ratio: ratio,
            retry_after_secs,
            ..Self::default()
        }
    }
}
