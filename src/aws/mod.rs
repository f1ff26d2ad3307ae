//! AWS access: SDK clients per (region, role, endpoint) and the four read operations, as plain Rust types.
//!
//! This is the only module that imports SDK types. Every HTTP attempt (retries included) is counted in
//! [`ApiCounters`] by an interceptor, and every failure is mapped to the `error` label value of
//! `workspacesweb_api_request_errors_total` in one place: [`error_label`], as an [`ErrorLabel`].
//!
//! Every call (`ListSessions`, `GetSession`, `GetPortal`, `ListPortals`) first waits for a slot of
//! the [`TokenBucket`] of its region and account ([`LimitKey`]), `global.max_requests_per_second`
//! ([`Clients::set_rate`]), so many portals never stampede the API. Polls go first
//! ([`Priority`]): `ListSessions` at the priority of its [`ListQuery`] (the backfill's pages are
//! [`Priority::Background`]), `GetSession` and `ListPortals` as polls, `GetPortal` in the background. The SDK's own retries happen
//! inside `send()`, after the slot: they are paced by the SDK's exponential backoff and the
//! service's `Retry-After` ([`RetryAfterClassifier`]), not by the bucket (an interceptor cannot
//! wait), so under throttling a call may use up to 3 attempts for one slot.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::Credentials;
use aws_credential_types::provider::error::CredentialsError;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider, future};
use aws_sdk_workspacesweb::Client;
use aws_sdk_workspacesweb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_workspacesweb::operation::get_portal::{GetPortalError, GetPortalOutput};
use aws_sdk_workspacesweb::operation::get_session::{GetSessionError, GetSessionOutput};
use aws_sdk_workspacesweb::operation::list_portals::{ListPortalsError, ListPortalsOutput};
use aws_sdk_workspacesweb::operation::list_sessions::{ListSessionsError, ListSessionsOutput};
use aws_sdk_workspacesweb::types::{self as sdk};
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::{
    AfterDeserializationInterceptorContextRef, BeforeDeserializationInterceptorContextMut,
    BeforeTransmitInterceptorContextRef, Error as ErasedError, FinalizerInterceptorContextRef,
    InterceptorContext,
};
use aws_smithy_runtime_api::client::orchestrator::OrchestratorError;
use aws_smithy_runtime_api::client::retries::classifiers::{
    ClassifyRetry, RetryAction, RetryClassifierPriority,
};
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::DateTime;
use aws_smithy_types::body::SdkBody;
use aws_smithy_types::config_bag::ConfigBag;
use aws_smithy_types::retry::ErrorKind;
use tracing::warn;

pub use crate::error_label::ErrorLabel;
use crate::session::{SessionRecord, SessionStatus, UnixMillis};

mod client;
mod credentials;
mod interceptors;
mod ratelimit;

pub use self::client::*;
pub use self::credentials::*;
pub use self::interceptors::*;
pub use self::ratelimit::*;

/// Operation name of `ListSessions` (the `operation` label value).
pub const LIST_SESSIONS: &str = "ListSessions";
/// Operation name of `GetSession`.
pub const GET_SESSION: &str = "GetSession";
/// Operation name of `GetPortal`.
pub const GET_PORTAL: &str = "GetPortal";
/// Operation name of `ListPortals`.
pub const LIST_PORTALS: &str = "ListPortals";

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

/// Requests and errors of one portal, by operation; shared by the interceptor and the poller.
#[derive(Debug, Default)]
pub struct ApiCounters {
    inner: Mutex<CounterMaps>,
}

#[derive(Debug, Default, Clone)]
struct CounterMaps {
    requests: BTreeMap<String, u64>,
    errors: BTreeMap<(String, String), u64>,
    retry_after: Option<std::time::Duration>,
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

    /// Copies of the request and error counts.
    pub fn snapshot(&self) -> (BTreeMap<String, u64>, BTreeMap<(String, String), u64>) {
        let m = self.lock();
        (m.requests.clone(), m.errors.clone())
    }

    /// The counters, recovered when a panic poisoned the lock (the crate's one rule for poisoned
    /// locks: a panic elsewhere must not freeze or empty the API series).
    fn lock(&self) -> MutexGuard<'_, CounterMaps> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The portal id of a WorkSpaces Web portal ARN (`arn:<partition>:workspaces-web:<region>:<account>:portal/<id>`).
pub fn portal_id_of_arn(arn: &str) -> Option<&str> {
    let ["arn", _, "workspaces-web", _, _, resource] = crate::arn::fields(arn)? else {
        return None;
    };
    let id = resource.strip_prefix("portal/")?;
    (id.len() == 36 && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')).then_some(id)
}

/// The region of a WorkSpaces Web ARN.
pub fn region_of_arn(arn: &str) -> Option<&str> {
    portal_id_of_arn(arn)?;
    crate::arn::fields(arn)
        .map(|f| f[3])
        .filter(|r| !r.is_empty())
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

#[cfg(test)]
mod tests {
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
    fn error_type_header_is_reduced_to_the_code() {
        assert_eq!(
            normalize_error_type("ThrottlingException:http://internal.amazon.com/"),
            "ThrottlingException"
        );
        assert_eq!(
            normalize_error_type("aws.protocols#AccessDeniedException"),
            "AccessDeniedException"
        );
        assert_eq!(
            normalize_error_type("ValidationException"),
            "ValidationException"
        );
    }

    #[test]
    fn portal_arns_are_parsed_strictly() {
        let arn = "arn:aws:workspaces-web:eu-west-1:123456789012:portal/11111111-2222-3333-4444-555555555555";
        assert_eq!(
            portal_id_of_arn(arn),
            Some("11111111-2222-3333-4444-555555555555")
        );
        assert_eq!(region_of_arn(arn), Some("eu-west-1"));
        assert_eq!(
            portal_id_of_arn("arn:aws:workspaces-web:eu-west-1:1:browserSettings/x"),
            None
        );
        assert_eq!(portal_id_of_arn("arn:aws:s3:::bucket"), None);
        assert_eq!(
            portal_id_of_arn("portal/11111111-2222-3333-4444-555555555555"),
            None
        );
    }

    #[test]
    fn retry_after_is_parsed_and_capped() {
        use std::time::Duration;
        assert_eq!(retry_after(Some("3")), Some(Duration::from_secs(3)));
        assert_eq!(retry_after(Some(" 0.5 ")), Some(Duration::from_millis(500)));
        assert_eq!(retry_after(Some("3600")), Some(MAX_RETRY_AFTER));
        assert_eq!(retry_after(Some("-1")), None);
        assert_eq!(retry_after(Some("Wed, 21 Oct 2015 07:28:00 GMT")), None);
        assert_eq!(retry_after(None), None);
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

    fn sends(bucket: &TokenBucket, arrivals: &[tokio::time::Instant]) -> Vec<tokio::time::Instant> {
        arrivals.iter().map(|&a| a + bucket.reserve(a)).collect()
    }

    /// Most sends in any closed window of length `w` (windows start at a send).
    fn max_in_window(sends: &[tokio::time::Instant], w: std::time::Duration) -> usize {
        let mut s = sends.to_vec();
        s.sort();
        (0..s.len())
            .map(|i| s[i..].iter().take_while(|&&t| t - s[i] <= w).count())
            .max()
            .unwrap_or(0)
    }

    /// At most `rate × W + burst` sends in windows `W` from 1 ms to a minute.
    fn assert_window_bound(sends: &[tokio::time::Instant], rate: f64) {
        let burst = rate.max(1.0);
        for ms in [1u64, 200, 999, 1000, 2500, 10_000, 60_000] {
            let w = std::time::Duration::from_millis(ms);
            let n = max_in_window(sends, w);
            let bound = (rate * w.as_secs_f64() + burst).floor() as usize;
            assert!(n <= bound, "rate {rate}: {n} sends in {w:?}, bound {bound}");
        }
    }

    #[test]
    fn token_bucket_bounds_every_window() {
        use std::time::Duration;
        let t0 = tokio::time::Instant::now();
        // Bursts of 40 requests at once, idle gaps, and a steady trickle faster than the rate.
        let mut arrivals = Vec::new();
        for burst in 0..5u64 {
            for _ in 0..40 {
                arrivals.push(t0 + Duration::from_secs(burst * 30));
            }
        }
        for i in 0..300u64 {
            arrivals.push(t0 + Duration::from_secs(200) + Duration::from_millis(i * 37));
        }
        arrivals.sort();
        for rate in [5.0, 1.0, 0.5, 13.0] {
            let bucket = TokenBucket::new(Some(rate), t0);
            let s = sends(&bucket, &arrivals);
            assert_window_bound(&s, rate);
            // Never sent before asked, and in arrival order.
            assert!(s.iter().zip(&arrivals).all(|(s, a)| s >= a));
            assert!(s.windows(2).all(|w| w[0] <= w[1]));
        }
    }

    #[test]
    fn token_bucket_allows_one_second_burst_then_paces() {
        use std::time::Duration;
        let t0 = tokio::time::Instant::now();
        let bucket = TokenBucket::new(Some(5.0), t0);
        let waits: Vec<Duration> = (0..8).map(|_| bucket.reserve(t0)).collect();
        assert_eq!(&waits[..5], &[Duration::ZERO; 5]);
        assert_eq!(waits[5], Duration::from_millis(200));
        assert_eq!(waits[7], Duration::from_millis(600));
        // Idle for a long time: the burst is back, not more.
        let later = t0 + Duration::from_secs(100);
        let waits: Vec<Duration> = (0..6).map(|_| bucket.reserve(later)).collect();
        assert_eq!(&waits[..5], &[Duration::ZERO; 5]);
        assert_eq!(waits[5], Duration::from_millis(200));
        // Unlimited never waits; a new rate applies to the next reservation.
        let free = TokenBucket::new(None, t0);
        assert!((0..1000).all(|_| free.reserve(t0).is_zero()));
        free.set_rate(Some(1.0));
        assert!(free.reserve(t0).is_zero());
        assert_eq!(free.reserve(t0), Duration::from_secs(1));
    }

    #[tokio::test]
    async fn token_bucket_acquire_waits_for_its_slot() {
        let t0 = tokio::time::Instant::now();
        let bucket = Arc::new(TokenBucket::new(Some(20.0), t0));
        let mut tasks = Vec::new();
        for _ in 0..23 {
            let b = bucket.clone();
            tasks.push(tokio::spawn(async move {
                b.acquire().await;
                tokio::time::Instant::now()
            }));
        }
        let mut done = Vec::new();
        for t in tasks {
            done.push(t.await.expect("task"));
        }
        // 20 at once, then one every 50 ms: the last one not before 150 ms (a sleep never ends
        // early, so this lower bound cannot flake).
        let last = done.iter().max().copied().expect("some");
        assert!(last - t0 >= std::time::Duration::from_millis(150));
    }

    /// Drives a [`Schedule`] through `arrivals` (sorted by instant) as the async waiters would:
    /// at each instant, arrivals join first, then every waiter asks for its turn until nobody
    /// can go. Returns (index of the request, send instant) in the order the slots were given.
    fn serve(
        rate: f64,
        t0: tokio::time::Instant,
        arrivals: &[(tokio::time::Instant, Priority)],
    ) -> Vec<(usize, tokio::time::Instant)> {
        let mut schedule = Schedule::new(Some(rate), t0);
        let mut waiting: Vec<(usize, Priority, Ticket)> = Vec::new();
        let mut sent = Vec::new();
        let (mut next, mut now) = (0, t0);
        loop {
            while let Some(&(at, priority)) = arrivals.get(next).filter(|(at, _)| *at <= now) {
                match schedule.arrive(priority, at.max(now)) {
                    None => sent.push((next, now)),
                    Some(ticket) => waiting.push((next, priority, ticket)),
                }
                next += 1;
            }
            let mut wake;
            loop {
                let before = waiting.len();
                wake = None;
                waiting.retain(|&(i, priority, ticket)| {
                    match schedule.turn(priority, ticket, now) {
                        Turn::Go => {
                            sent.push((i, now));
                            false
                        }
                        Turn::At(at) => {
                            wake = Some(wake.map_or(at, |w: tokio::time::Instant| w.min(at)));
                            true
                        }
                        Turn::Behind => true,
                    }
                });
                if waiting.len() == before {
                    break;
                }
            }
            let arrival = arrivals.get(next).map(|(at, _)| *at);
            now = match (wake, arrival) {
                (Some(w), Some(a)) => w.min(a),
                (Some(w), None) => w,
                (None, Some(a)) => a,
                (None, None) => break,
            };
        }
        assert!(waiting.is_empty(), "every request is served in the end");
        sent
    }

    #[test]
    fn a_background_request_never_overtakes_a_waiting_poll() {
        use std::time::Duration;
        let t0 = tokio::time::Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        // A backfill of 150 pages queued at once, then a trickle; polls of 3 requests arriving
        // in bursts while it waits (portals' first polls, then their next ones), one of them
        // at the very instant a background slot is due.
        let mut arrivals: Vec<(tokio::time::Instant, Priority)> =
            (0..150).map(|_| (t0, Priority::Background)).collect();
        for k in 0..40u64 {
            arrivals.push((ms(500 + k * 770), Priority::Background));
        }
        for start in [
            0u64, 300, 1_250, 1_400, 6_000, 6_000, 6_200, 20_000, 20_001, 41_000,
        ] {
            for _ in 0..3 {
                arrivals.push((ms(start), Priority::Poll));
            }
        }
        arrivals.push((ms(1_200), Priority::Poll));
        arrivals.sort_by_key(|(at, _)| *at);
        for rate in [5.0, 1.0, 13.0] {
            let sent = serve(rate, t0, &arrivals);
            assert_eq!(sent.len(), arrivals.len());
            let order: HashMap<usize, usize> =
                sent.iter().enumerate().map(|(k, (i, _))| (*i, k)).collect();
            for (k, &(i, at)) in sent.iter().enumerate() {
                assert!(at >= arrivals[i].0, "never sent before asked");
                if arrivals[i].1 != Priority::Background {
                    continue;
                }
                // Every poll that had arrived when this background request went, went before
                // (at one instant, requests arrive in index order, then the waiters are served).
                for (j, &(arrived, priority)) in arrivals.iter().enumerate() {
                    let before = arrived < at || (arrived == at && (j < i || arrivals[i].0 < at));
                    if priority == Priority::Poll && before {
                        assert!(
                            order[&j] < k,
                            "rate {rate}: background request {i} sent at {:?} before poll {j} (arrived {:?})",
                            at - t0,
                            arrived - t0
                        );
                    }
                }
            }
            // Polls among themselves, and background requests among themselves, keep arrival order.
            for class in [Priority::Poll, Priority::Background] {
                let mine: Vec<usize> = sent
                    .iter()
                    .map(|(i, _)| *i)
                    .filter(|i| arrivals[*i].1 == class)
                    .collect();
                assert!(mine.windows(2).all(|w| w[0] < w[1]), "{class:?} in order");
            }
            // The window bound holds for the union of both classes.
            let times: Vec<tokio::time::Instant> = sent.iter().map(|(_, at)| *at).collect();
            assert_window_bound(&times, rate);
            // A poll waits only for the polls ahead of it and for the slot due next: at most
            // (polls still waiting when it arrived + 1) spacings, however many background
            // requests wait.
            let spacing = Duration::from_secs_f64(1.0 / rate);
            let sent_at: HashMap<usize, tokio::time::Instant> = sent.iter().copied().collect();
            for (j, &(arrived, priority)) in arrivals.iter().enumerate() {
                if priority != Priority::Poll {
                    continue;
                }
                let ahead = arrivals
                    .iter()
                    .enumerate()
                    .filter(|&(k, &(a, p))| {
                        p == Priority::Poll && k < j && a <= arrived && sent_at[&k] >= arrived
                    })
                    .count();
                let waited = sent_at[&j] - arrived;
                let most = spacing * (u32::try_from(ahead).expect("few") + 1);
                assert!(
                    waited <= most + Duration::from_micros(1),
                    "rate {rate}: poll {j} waited {waited:?} with {ahead} polls ahead"
                );
            }
        }
    }

    #[test]
    fn a_waiter_that_gives_up_spends_no_slot() {
        use std::time::Duration;
        let t0 = tokio::time::Instant::now();
        let mut s = Schedule::new(Some(5.0), t0);
        assert!(
            (0..5).all(|_| s.arrive(Priority::Poll, t0).is_none()),
            "the burst"
        );
        let a = s.arrive(Priority::Background, t0).expect("waits");
        let b = s.arrive(Priority::Background, t0).expect("waits");
        let p = s.arrive(Priority::Poll, t0).expect("waits");
        let slot = t0 + Duration::from_millis(200);
        assert_eq!(s.turn(Priority::Background, a, t0), Turn::Behind);
        assert_eq!(s.estimate(Priority::Poll, t0), Duration::from_millis(400));
        assert_eq!(s.turn(Priority::Poll, p, t0), Turn::At(slot));
        assert_eq!(s.turn(Priority::Poll, p, slot), Turn::Go);
        assert_eq!(s.waiters(), 2);
        // `a` gives up: `b` takes the very next slot.
        s.leave(Priority::Background, a);
        let next = slot + Duration::from_millis(200);
        assert_eq!(s.turn(Priority::Background, b, slot), Turn::At(next));
        assert_eq!(s.turn(Priority::Background, b, next), Turn::Go);
        assert_eq!(s.waiters(), 0);
    }

    /// A bucket of 20 requests/s (a burst of 20) whose next `taken` slots are reserved now.
    fn bucket_at_20_per_s_with_slots_taken(taken: usize) -> Arc<TokenBucket> {
        let now = tokio::time::Instant::now();
        let bucket = Arc::new(TokenBucket::new(Some(20.0), now));
        for _ in 0..taken {
            bucket.reserve(now);
        }
        bucket
    }

    #[tokio::test]
    async fn acquire_serves_a_later_poll_before_an_earlier_background_request() {
        // Empty the burst: the next slot is 50 ms away.
        let bucket = bucket_at_20_per_s_with_slots_taken(20);
        let order = Arc::new(Mutex::new(Vec::new()));
        let spawn = |priority: Priority| {
            let (bucket, order) = (bucket.clone(), order.clone());
            tokio::spawn(async move {
                bucket.acquire_as(priority).await;
                order.lock().expect("order").push(priority);
            })
        };
        let until_waiting = |n: usize| {
            let bucket = bucket.clone();
            async move {
                while bucket.waiters() < n {
                    tokio::task::yield_now().await;
                }
            }
        };
        let background = spawn(Priority::Background);
        until_waiting(1).await;
        // One more background request that gives up while it waits: it must not delay anyone.
        let quitter = spawn(Priority::Background);
        until_waiting(2).await;
        quitter.abort();
        assert!(quitter.await.is_err_and(|e| e.is_cancelled()));
        assert_eq!(bucket.waiters(), 1);
        let poll = spawn(Priority::Poll);
        until_waiting(2).await;
        poll.await.expect("poll");
        background.await.expect("background");
        assert_eq!(
            *order.lock().expect("order"),
            vec![Priority::Poll, Priority::Background]
        );
        assert_eq!(bucket.waiters(), 0);
    }

    #[tokio::test]
    async fn a_long_line_drains_polls_first_then_in_arrival_order() {
        // The next free slot is half a second away: time enough for everyone to queue.
        let bucket = bucket_at_20_per_s_with_slots_taken(30);
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        // Background requests 0..6 queue first, then polls 6..9: only the first in line is
        // woken at each slot, and nobody is forgotten.
        for (n, priority) in (0..9).map(|n| {
            let p = if n < 6 {
                Priority::Background
            } else {
                Priority::Poll
            };
            (n, p)
        }) {
            let (b, order) = (bucket.clone(), order.clone());
            tasks.push(tokio::spawn(async move {
                b.acquire_as(priority).await;
                order.lock().expect("order").push(n);
            }));
            while bucket.waiters() < n + 1 {
                tokio::task::yield_now().await;
            }
        }
        for t in tasks {
            t.await.expect("served");
        }
        assert_eq!(
            *order.lock().expect("order"),
            vec![6, 7, 8, 0, 1, 2, 3, 4, 5]
        );
    }

    #[test]
    fn limit_keys_share_by_region_and_account() {
        let role = |arn: &str| ClientKey {
            region: Some("eu-west-1".into()),
            role_arn: Some(arn.into()),
            ..Default::default()
        };
        let a = LimitKey::of(&role("arn:aws:iam::123456789012:role/a"));
        let b = LimitKey::of(&role("arn:aws:iam::123456789012:role/b"));
        let c = LimitKey::of(&role("arn:aws:iam::210987654321:role/a"));
        assert_eq!(a, b, "two roles of one account share the account's limit");
        assert_ne!(a, c);
        assert_eq!(a.principal.as_deref(), Some("123456789012"));
        let base = LimitKey::of(&ClientKey {
            region: Some("eu-west-1".into()),
            ..Default::default()
        });
        assert_eq!(base.principal, None);
        assert_eq!(account_of_arn("arn:aws:iam::12:role/x"), None);
        assert_eq!(
            LimitKey::of(&role("not-an-arn")).principal.as_deref(),
            Some("not-an-arn")
        );
    }

    #[tokio::test]
    async fn clients_share_buckets_and_apply_new_rates() {
        let clients = Clients::with_static_credentials("us-east-1", "http://127.0.0.1:9").await;
        let key = ClientKey {
            region: Some("us-east-1".into()),
            ..Default::default()
        };
        let other = ClientKey {
            region: Some("eu-west-1".into()),
            ..Default::default()
        };
        assert!(Arc::ptr_eq(
            &clients.bucket(&key),
            &clients.clone().bucket(&key)
        ));
        assert!(!Arc::ptr_eq(&clients.bucket(&key), &clients.bucket(&other)));
        let now = tokio::time::Instant::now();
        assert!((0..100).all(|_| clients.bucket(&key).reserve(now).is_zero()));
        clients.set_rate(Some(2.0));
        assert_eq!(clients.rate(), Some(2.0));
        let b = clients.bucket(&other);
        let waits: Vec<_> = (0..3).map(|_| b.reserve(now)).collect();
        assert!(waits[0].is_zero() && waits[1].is_zero() && !waits[2].is_zero());
    }
}
