//! Fault injection: what a portal's (or `ListPortals`') answers do wrong, changeable at runtime.

use std::time::Duration;

use bytes::Bytes;

use crate::record::SessionStatus;
use crate::rng::{Rng, fnv, mix};

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
    /// Every `ListSessions`/`ListPortals` page carries a `nextToken` of exactly this many
    /// characters: the real token padded (a padded token up to 2048 characters is still accepted
    /// back), or, on the last page, a token to a further, empty page. Longer than 2048 characters
    /// it breaks the service model's bound, and the simulator refuses it back with
    /// `ValidationException`, as the service would.
    pub next_token_len: Option<usize>,
    /// `ListSessions`/`ListPortals` pages hold up to this many times the request's `maxResults`
    /// (the default page size when absent) instead of at most `maxResults`: a server that ignores
    /// the limit. `None` (or 1): pages respect it.
    pub overfull_factor: Option<usize>,
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

    /// Every listing page carries a `nextToken` of exactly `len` characters (e.g. 3,000 or 70,000).
    pub fn long_next_token(len: usize) -> Self {
        Self {
            next_token_len: Some(len),
            ..Self::default()
        }
    }

    /// Listing pages hold `factor` times the request's `maxResults` (e.g. 5).
    pub fn overfull_pages(factor: usize) -> Self {
        Self {
            overfull_factor: Some(factor),
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

    /// Whether request number `n` of the requests keyed `key` (a portal id, `""` for `ListPortals`,
    /// an Organizations operation) is throttled: deterministic for a seed.
    pub(crate) fn throttles(&self, seed: u64, key: &str, n: u64) -> bool {
        self.throttle_ratio > 0.0
            && Rng::new(mix(seed ^ fnv(key), n)).next_f64() < self.throttle_ratio
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
