//! The plain types the rest of the exporter sees of the API: operation names, limits on what is
//! read, a failed call, per-portal request counters, the queries and answers of the four read
//! operations, where and as whom a portal is reached ([`ClientKey`]), and the [`Priority`] of a
//! request in the rate limiter's line.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use super::error_label::ErrorLabel;
use crate::session::{SessionRecord, SessionStatus};

/// Operation name of `ListSessions` (the `operation` label value).
pub const LIST_SESSIONS: &str = "ListSessions";
/// Operation name of `GetSession`.
pub const GET_SESSION: &str = "GetSession";
/// Operation name of `GetPortal`.
pub const GET_PORTAL: &str = "GetPortal";
/// Operation name of `ListPortals`.
pub const LIST_PORTALS: &str = "ListPortals";
/// Operation name of Organizations' `ListAccounts` (organization discovery).
pub const LIST_ACCOUNTS: &str = "ListAccounts";
/// Operation name of Organizations' `ListAccountsForParent`.
pub const LIST_ACCOUNTS_FOR_PARENT: &str = "ListAccountsForParent";
/// Operation name of Organizations' `ListChildren`.
pub const LIST_CHILDREN: &str = "ListChildren";

/// Largest response body read from the API; a longer one fails the call with `error="other"`
/// (without retries). A full page of 1000 sessions with 256-character usernames is below 2 MiB.
pub const MAX_RESPONSE_BYTES: usize = 8 << 20;

/// Longest `username` accepted (the service model's limit, in characters). A record with a longer
/// one is malformed: its `sessionId` and `username` are dropped, so that the ledger counts it as
/// an untrackable, incomplete record (once) and the huge string is neither kept nor exposed.
pub const MAX_USERNAME_CHARS: usize = 256;

/// Longest `sessionId` accepted, in bytes (the service's ids have 36); a record with a longer one
/// is malformed, as above (the id would otherwise become a ledger key).
pub const MAX_SESSION_ID_BYTES: usize = 128;

/// A failed API call, reduced to what metrics and logs need.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{operation} failed: {code}: {message}")]
pub struct ApiError {
    /// The operation that failed (`ListSessions`, ...).
    pub operation: &'static str,
    /// The `error` label value: the AWS error code, or `timeout`, `dispatch`, `other`.
    pub code: ErrorLabel,
    /// Human-readable detail (never contains credentials).
    pub message: String,
}

impl ApiError {
    /// Whether the error is the service saying the caller may not do this.
    pub fn is_access_denied(&self) -> bool {
        self.code == ErrorLabel::ACCESS_DENIED
    }
}

/// Requests and errors of one portal (or discovery source), by operation; shared by the
/// interceptor and the task; and the panics of a discovery source's task.
#[derive(Debug)]
pub struct ApiCounters {
    inner: Mutex<CounterMaps>,
    /// When counting began (the counters' created timestamp).
    since_ms: i64,
}

impl Default for ApiCounters {
    /// Counters at 0, counting from now.
    fn default() -> Self {
        ApiCounters {
            inner: Mutex::default(),
            since_ms: crate::clock::now_ms(),
        }
    }
}

#[derive(Debug, Default, Clone)]
struct CounterMaps {
    requests: BTreeMap<String, u64>,
    errors: BTreeMap<(String, String), u64>,
    retry_after: Option<std::time::Duration>,
    panics: u64,
}

impl ApiCounters {
    /// Counts one HTTP request sent for `operation`.
    pub fn request(&self, operation: &str) {
        *self
            .lock()
            .requests
            .entry(operation.to_string())
            .or_default() += 1;
    }

    /// Counts one failed request of `operation` with the `error` label value `code`.
    pub fn error(&self, operation: &str, label: ErrorLabel) {
        *self
            .lock()
            .errors
            .entry((operation.to_string(), label.as_str().to_string()))
            .or_default() += 1;
    }

    /// Remembers the service's latest `Retry-After` hint.
    pub fn note_retry_after(&self, delay: std::time::Duration) {
        self.lock().retry_after = Some(delay);
    }

    /// The latest `Retry-After` hint since the last call, clearing it.
    pub fn take_retry_after(&self) -> Option<std::time::Duration> {
        self.lock().retry_after.take()
    }

    /// Counts one panic of the task these counters belong to (a discovery source).
    pub fn count_panic(&self) {
        let mut m = self.lock();
        m.panics = m.panics.saturating_add(1);
    }

    /// Panics counted by [`count_panic`](Self::count_panic).
    pub fn panics(&self) -> u64 {
        self.lock().panics
    }

    /// Copies of the request and error counts.
    pub fn snapshot(&self) -> (BTreeMap<String, u64>, BTreeMap<(String, String), u64>) {
        self.counts()
    }

    /// When counting began: the created timestamp of these counters, in Unix milliseconds.
    pub fn since_ms(&self) -> i64 {
        self.since_ms
    }

    fn counts(&self) -> (BTreeMap<String, u64>, BTreeMap<(String, String), u64>) {
        let m = self.lock();
        (m.requests.clone(), m.errors.clone())
    }

    /// The counters, recovered when a panic poisoned the lock (the crate's one rule for poisoned
    /// locks: a panic elsewhere must not freeze or empty the API series).
    fn lock(&self) -> MutexGuard<'_, CounterMaps> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Sort order of `ListSessions`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortOrder {
    /// Oldest start first.
    StartTimeAscending,
    /// Newest start first.
    StartTimeDescending,
}

/// Filters and position of one `ListSessions` page request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListQuery {
    /// `status` filter (only `Active`/`Terminated` are sent).
    pub status: Option<SessionStatus>,
    /// `sortBy`.
    pub sort: Option<SortOrder>,
    /// `maxResults`.
    pub max_results: i32,
    /// `nextToken` of the previous page.
    pub next_token: Option<String>,
    /// `sessionId` filter.
    pub session_id: Option<String>,
    /// Place in the rate limiter's line: a poll's pages by default, the backfill's behind them.
    pub priority: Priority,
}

/// One page of `ListSessions`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionPage {
    /// The sessions on this page.
    pub sessions: Vec<SessionRecord>,
    /// Token of the next page, if any.
    pub next_token: Option<String>,
    /// The `portalArn` carried by the page's sessions, if any.
    pub portal_arn: Option<String>,
}

/// Portal metadata from `GetPortal`/`ListPortals`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PortalInfo {
    /// Portal ARN.
    pub arn: String,
    /// Display name, if set.
    pub display_name: Option<String>,
    /// Browser type (`Chrome`).
    pub browser_type: Option<String>,
    /// Instance type (`standard.regular`, ...).
    pub instance_type: Option<String>,
    /// Portal status (`Active`, `Pending`, `Incomplete`).
    pub status: Option<String>,
    /// Maximum concurrent sessions, for capacity alerts.
    pub max_concurrent_sessions: Option<i32>,
}

/// Where and as whom to reach the API for one portal.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct ClientKey {
    /// Region; `None` uses the SDK's region chain.
    pub region: Option<String>,
    /// Role to assume with STS on top of the base credentials.
    pub role_arn: Option<String>,
    /// External id for the assumed role.
    pub external_id: Option<String>,
    /// Endpoint override (`endpoint_url` in config).
    pub endpoint_url: Option<String>,
}

/// Which requests a [`TokenBucket`](super::TokenBucket) serves first when several wait for it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum Priority {
    /// A poll's requests (the Active listing, the Terminated scan, `GetSession`) and discovery's
    /// `ListPortals`: what makes the series current. Served first.
    #[default]
    Poll,
    /// Monthly-users backfill pages and portal metadata (`GetPortal`): served only while no
    /// [`Poll`](Self::Poll) request waits, so they take only the capacity the polls leave.
    Background,
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[test]
    fn api_counters_keep_counting_after_a_panic_poisoned_them() {
        let counters = Arc::new(ApiCounters::default());
        counters.request("ListSessions");
        let c = Arc::clone(&counters);
        let outcome = std::thread::spawn(move || {
            let _held = c.inner.lock();
            panic!("a panic while the counters are locked");
        })
        .join();
        assert!(outcome.is_err() && counters.inner.is_poisoned());
        counters.request("ListSessions");
        counters.error("ListSessions", ErrorLabel::Timeout);
        let (requests, errors) = counters.snapshot();
        assert_eq!(requests.get("ListSessions"), Some(&2));
        assert_eq!(errors.len(), 1);
    }

    #[test]
    fn counters_accumulate_by_operation_and_code() {
        let c = ApiCounters::default();
        c.request(LIST_SESSIONS);
        c.request(LIST_SESSIONS);
        c.error(LIST_SESSIONS, ErrorLabel::from_code("ThrottlingException"));
        let (req, err) = c.snapshot();
        assert_eq!(req.get(LIST_SESSIONS), Some(&2));
        assert_eq!(
            err.get(&(LIST_SESSIONS.to_string(), "ThrottlingException".to_string())),
            Some(&1)
        );
    }
}
