//! SDK clients per (region, role, endpoint), and the read operations as plain Rust types.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::Credentials;
use aws_credential_types::provider::SharedCredentialsProvider;
use aws_sdk_workspacesweb::Client;
use aws_sdk_workspacesweb::error::SdkError;
use aws_sdk_workspacesweb::types::{self as sdk};
use aws_smithy_types::DateTime;
use tracing::warn;

use super::credentials::{Attributed, CachedRole, CountedAssumeRole};
use super::error_label::ErrorLabel;
use super::interceptors::{CountingInterceptor, ResponseGuard, api_error};
use super::pagination::{PageStop, check_page, check_token};
use super::ratelimit::{LimitKey, TokenBucket};
use super::types::{
    ApiCounters, ApiError, ClientKey, GET_PORTAL, GET_SESSION, LIST_PORTALS, LIST_SESSIONS,
    ListQuery, MAX_SESSION_ID_BYTES, MAX_USERNAME_CHARS, PortalInfo, Priority, SessionPage,
    SortOrder,
};
use crate::session::{SessionRecord, SessionStatus, UnixMillis};

/// A [`SessionRecord`] from either SDK session type (`SessionSummary`, `Session`): they share
/// accessor names but no trait.
macro_rules! session_record {
    ($s:expr) => {
        SessionRecord {
            id: $s.session_id().map(str::to_string),
            username: $s.username().map(str::to_string),
            status: status($s.status()),
            start_ms: millis($s.start_time()).filter(|t| *t >= EARLIEST_START_MS),
            end_ms: millis($s.end_time()),
        }
    };
}

/// A [`PortalInfo`] from either SDK portal type (`Portal`, `PortalSummary`).
macro_rules! portal_info {
    ($p:expr) => {
        PortalInfo {
            arn: $p.portal_arn().to_string(),
            display_name: $p.display_name().map(str::to_string),
            browser_type: $p.browser_type().map(|b| b.as_str().to_string()),
            instance_type: $p.instance_type().map(|i| i.as_str().to_string()),
            status: $p.portal_status().map(|s| s.as_str().to_string()),
            max_concurrent_sessions: $p.max_concurrent_sessions(),
        }
    };
}

/// The configuration of an SDK client (`$sdk`: the SDK crate) for `$key`, from `$clients`' base:
/// in the key's region, retrying after the service's `Retry-After` and never after an oversized
/// body, with the key's role's shared credentials (the SDK's own cache off: they have theirs) and
/// the key's endpoint.
macro_rules! sdk_config {
    ($clients:expr, $sdk:ident, $key:expr) => {{
        let base = $clients.base_in($key).await;
        let mut conf = $sdk::config::Builder::from(&base)
            .retry_classifier($crate::aws::interceptors::RetryAfterClassifier)
            .retry_classifier($crate::aws::interceptors::BodyLimitClassifier);
        if let Some(role) = $clients.role_credentials($key, &base).await {
            conf = conf
                .credentials_provider(role)
                .identity_cache(aws_config::identity::IdentityCache::no_cache());
        }
        if let Some(url) = &$key.endpoint_url {
            conf = conf.endpoint_url(url.clone());
        }
        conf.build()
    }};
}
pub(super) use sdk_config;

/// A cache of SDK clients, one per [`ClientKey`], over a base SDK configuration, and the
/// client-side rate limits: one [`TokenBucket`] per [`LimitKey`] (region and account).
#[derive(Debug, Clone)]
pub struct Clients {
    base: SdkConfig,
    /// With [`BaseRegion::Configured`]: the SDK's region chain, looked up once when a client
    /// whose key names no region is first built.
    chain_region: Option<Arc<tokio::sync::OnceCell<Option<Region>>>>,
    cache: Arc<tokio::sync::Mutex<HashMap<ClientKey, Client>>>,
    limits: Arc<Mutex<Limits>>,
    /// The assumed-role credentials of each (role, external id), shared by its clients.
    roles: Arc<tokio::sync::Mutex<HashMap<RoleId, CachedRole>>>,
    /// Organizations clients (organization discovery), one per key.
    pub(super) organizations:
        Arc<tokio::sync::Mutex<HashMap<ClientKey, aws_sdk_organizations::Client>>>,
}

/// A role as its credentials are cached: its ARN and external id.
type RoleId = (String, Option<String>);

/// The region of the SDK's base configuration, which its credential providers use too. When the
/// exporter's config names one, the SDK is never asked to find one (no IMDS region probe).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BaseRegion {
    /// `global.region`: also the region of every client whose key names none.
    Global(String),
    /// A region the config names (each portal and discovery entry has its own): for the
    /// credential providers only. A client whose key names no region (a portal added by a
    /// reload) gets the SDK's region chain, looked up then.
    Configured(String),
    /// None configured: the SDK's region chain (environment, profile, IMDS).
    Chain,
}

/// The rate every bucket runs at, and the buckets.
#[derive(Debug, Default)]
pub(super) struct Limits {
    /// Requests per second; `None` (the default of a bare [`Clients`]) sends unpaced.
    rate: Option<f64>,
    buckets: HashMap<LimitKey, Arc<TokenBucket>>,
}

impl Clients {
    /// Clients over the default credential and endpoint chains (env, profile, IMDS, IRSA, ...),
    /// with `region` as the base region (the SDK's region chain only for [`BaseRegion::Chain`]).
    pub async fn from_environment(region: BaseRegion) -> Self {
        let loader = aws_config::defaults(BehaviorVersion::latest());
        match region {
            BaseRegion::Global(r) => Self::new(loader.region(Region::new(r)).load().await),
            BaseRegion::Configured(r) => Self {
                chain_region: Some(Arc::default()),
                ..Self::new(loader.region(Region::new(r)).load().await)
            },
            BaseRegion::Chain => Self::new(loader.load().await),
        }
    }

    /// Clients with fixed dummy credentials against `endpoint_url` (demo and tests): a local simulator,
    /// so retries back off from 20 ms instead of the SDK's 1 s.
    pub async fn with_static_credentials(region: &str, endpoint_url: &str) -> Self {
        let creds = Credentials::new("AKIDEXAMPLE", "demo-secret", None, None, "static");
        let config = aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new(region.to_string()))
            .credentials_provider(SharedCredentialsProvider::new(creds))
            .endpoint_url(endpoint_url)
            .retry_config(
                aws_config::retry::RetryConfig::standard()
                    .with_initial_backoff(std::time::Duration::from_millis(20))
                    .with_max_backoff(std::time::Duration::from_millis(200)),
            )
            .load()
            .await;
        Self::new(config)
    }

    /// Clients over an explicit base configuration.
    pub fn new(base: SdkConfig) -> Self {
        Self {
            base,
            chain_region: None,
            cache: Arc::default(),
            limits: Arc::default(),
            roles: Arc::default(),
            organizations: Arc::default(),
        }
    }

    /// Sets the client-side limit (`global.max_requests_per_second`) of every (region, account)
    /// bucket, existing and future; `None`, or a value that is not a positive number, lifts it.
    /// Clones share the buckets, so a reload takes effect for every portal at once.
    pub fn set_rate(&self, rate: Option<f64>) {
        let rate = rate.filter(|r| r.is_finite() && *r > 0.0);
        let mut limits = self.limits.lock().unwrap_or_else(PoisonError::into_inner);
        limits.rate = rate;
        for bucket in limits.buckets.values() {
            bucket.set_rate(rate);
        }
    }

    /// The current client-side limit, requests per second.
    pub fn rate(&self) -> Option<f64> {
        self.limits
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .rate
    }

    /// The bucket that paces the requests made with `key` (shared by every key of the same
    /// region and account).
    pub fn bucket(&self, key: &ClientKey) -> Arc<TokenBucket> {
        let mut limits = self.limits.lock().unwrap_or_else(PoisonError::into_inner);
        let rate = limits.rate;
        limits
            .buckets
            .entry(LimitKey::of(key))
            .or_insert_with(|| Arc::new(TokenBucket::new(rate, tokio::time::Instant::now())))
            .clone()
    }

    /// The shared client for `key`, created on first use.
    pub async fn client(&self, key: &ClientKey) -> Client {
        let mut cache = self.cache.lock().await;
        if let Some(c) = cache.get(key) {
            return c.clone();
        }
        let client = self.build(key).await;
        cache.insert(key.clone(), client.clone());
        client
    }

    /// The region of a client whose key names none: the base region, or with
    /// [`BaseRegion::Configured`] the SDK's region chain's (looked up once).
    async fn unnamed_region(&self) -> Option<Region> {
        match &self.chain_region {
            Some(cell) => cell
                .get_or_init(|| async {
                    use aws_config::meta::region::ProvideRegion;
                    aws_config::default_provider::region::default_provider()
                        .region()
                        .await
                })
                .await
                .clone(),
            None => self.base.region().cloned(),
        }
    }

    /// The base configuration in `key`'s region (or, when it names none, the region of
    /// [`Clients::unnamed_region`]).
    pub(super) async fn base_in(&self, key: &ClientKey) -> SdkConfig {
        let mut base = self.base.to_builder();
        let region = match &key.region {
            Some(region) => Some(Region::new(region.clone())),
            None => self.unnamed_region().await,
        };
        base.set_region(region);
        base.build()
    }

    /// The credentials of `key`'s role, cached and shared by every client of the role (its
    /// `AssumeRole` goes to STS in the region of the first client that needs it); `None` without
    /// a role.
    pub(super) async fn role_credentials(
        &self,
        key: &ClientKey,
        base: &SdkConfig,
    ) -> Option<CachedRole> {
        let role = key.role_arn.as_ref()?;
        let mut roles = self.roles.lock().await;
        let id = (role.clone(), key.external_id.clone());
        if let Some(cached) = roles.get(&id) {
            return Some(cached.clone());
        }
        let mut provider = aws_config::sts::AssumeRoleProvider::builder(role.clone())
            .session_name("workspacesweb-exporter")
            .configure(base);
        if let Some(ext) = &key.external_id {
            provider = provider.external_id(ext.clone());
        }
        let time = base.time_source().unwrap_or_default();
        let cached = CachedRole::new(CountedAssumeRole(provider.build().await), time);
        roles.insert(id, cached.clone());
        Some(cached)
    }

    async fn build(&self, key: &ClientKey) -> Client {
        Client::from_conf(sdk_config!(self, aws_sdk_workspacesweb, key))
    }

    /// An API handle for one portal, counting into `counters`.
    pub async fn portal_api(
        &self,
        key: &ClientKey,
        portal_id: &str,
        counters: Arc<ApiCounters>,
    ) -> PortalApi {
        PortalApi {
            client: self.client(key).await,
            portal_id: portal_id.to_string(),
            counters,
            bucket: self.bucket(key),
            waited: Arc::default(),
        }
    }
}

/// The API as seen by discovery in one region: `ListPortals`.
#[derive(Debug, Clone)]
pub struct RegionApi {
    client: Client,
    counters: Arc<ApiCounters>,
    bucket: Arc<TokenBucket>,
}

impl Clients {
    /// An API handle for listing the portals reachable with `key`, counting into `counters`.
    pub async fn region_api(&self, key: &ClientKey, counters: Arc<ApiCounters>) -> RegionApi {
        RegionApi {
            client: self.client(key).await,
            counters,
            bucket: self.bucket(key),
        }
    }
}

impl RegionApi {
    /// The counters this handle counts into.
    pub fn counters(&self) -> &Arc<ApiCounters> {
        &self.counters
    }

    /// Fetches one page of `ListPortals` (paced as a poll: it decides what is polled).
    pub async fn list_portals(
        &self,
        max_results: i32,
        next_token: Option<String>,
    ) -> Result<(Vec<PortalInfo>, Option<String>), ApiError> {
        unsent_token(next_token.as_deref(), &self.counters, LIST_PORTALS)?;
        self.bucket.acquire_as(Priority::Poll).await;
        let out = self
            .client
            .list_portals()
            .max_results(max_results)
            .set_next_token(next_token)
            .customize()
            .interceptor(CountingInterceptor::new(
                LIST_PORTALS,
                self.counters.clone(),
            ))
            .send()
            .attributed(&self.counters)
            .await
            .map_err(|e| api_error(LIST_PORTALS, e))?;
        check_page(out.portals().len(), max_results, out.next_token())
            .map_err(|stop| refused(&self.counters, LIST_PORTALS, &stop))?;
        let portals = out.portals().iter().map(|p| portal_info!(p)).collect();
        Ok((portals, out.next_token().map(str::to_string)))
    }
}

/// The API as seen by one portal's poller.
#[derive(Debug, Clone)]
pub struct PortalApi {
    client: Client,
    portal_id: String,
    counters: Arc<ApiCounters>,
    bucket: Arc<TokenBucket>,
    /// Nanoseconds spent (or reserved) waiting for the bucket, in total.
    waited: Arc<std::sync::atomic::AtomicU64>,
}

impl PortalApi {
    fn counting(&self, operation: &'static str) -> CountingInterceptor {
        CountingInterceptor::new(operation, self.counters.clone())
    }

    fn guard(operation: &'static str) -> ResponseGuard {
        ResponseGuard { operation }
    }

    /// Strips records with an oversized username or id (see [`MAX_USERNAME_CHARS`]) and
    /// logs one line per batch that had malformed or unknown-status records (no usernames logged).
    fn screen(&self, operation: &'static str, records: &mut [SessionRecord]) {
        let mut malformed = 0usize;
        let mut unknown_status = 0usize;
        for r in records.iter_mut() {
            let long_name = r.username.as_deref().is_some_and(|u| {
                u.len() > MAX_USERNAME_CHARS && u.chars().count() > MAX_USERNAME_CHARS
            });
            let long_id =
                r.id.as_deref()
                    .is_some_and(|id| id.len() > MAX_SESSION_ID_BYTES);
            if long_name || long_id {
                malformed += 1;
                r.username = None;
                r.id = None;
            } else if matches!(r.status, SessionStatus::Unknown(_)) {
                unknown_status += 1;
            }
        }
        if malformed > 0 || unknown_status > 0 {
            warn!(
                portal_id = %self.portal_id,
                operation,
                malformed,
                unknown_status,
                "session records with an oversized username or id, or an unknown status: counted as incomplete"
            );
        }
    }

    /// The counters this handle counts into.
    pub fn counters(&self) -> &Arc<ApiCounters> {
        &self.counters
    }

    /// Time this handle has spent waiting for the rate limiter, in total (a poll's timeout does
    /// not count it: the exporter's own pacing is not the API being slow).
    pub fn limiter_wait(&self) -> std::time::Duration {
        std::time::Duration::from_nanos(self.waited.load(std::sync::atomic::Ordering::Relaxed))
    }

    /// Whether other requests wait for this handle's rate limiter now (it is what holds them back).
    pub fn limiter_busy(&self) -> bool {
        self.bucket.waiters() > 0
    }

    /// Whether a client-side rate limit paces this handle's requests at all.
    pub fn limiter_set(&self) -> bool {
        self.bucket.is_limited()
    }

    /// A handle on [`limiter_wait`](Self::limiter_wait) that can be read while a call is in flight.
    pub fn limiter_wait_counter(&self) -> Arc<std::sync::atomic::AtomicU64> {
        self.waited.clone()
    }

    /// Waits for a slot of the bucket at `priority`. The expected wait is counted in
    /// [`limiter_wait`](Self::limiter_wait) before waiting (a poll's deadline reads it while the
    /// request waits), and any excess after.
    async fn pace(&self, priority: Priority) {
        let nanos = |d: std::time::Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        let expected = self.bucket.estimate(priority);
        self.waited
            .fetch_add(nanos(expected), std::sync::atomic::Ordering::Relaxed);
        let waited = self.bucket.acquire_as(priority).await;
        if let Some(excess) = waited.checked_sub(expected).filter(|d| !d.is_zero()) {
            self.waited
                .fetch_add(nanos(excess), std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// Fetches one page of `ListSessions`, paced at the query's [`Priority`].
    pub async fn list_sessions(&self, q: &ListQuery) -> Result<SessionPage, ApiError> {
        unsent_token(q.next_token.as_deref(), &self.counters, LIST_SESSIONS)?;
        let mut req = self
            .client
            .list_sessions()
            .portal_id(&self.portal_id)
            .max_results(q.max_results)
            .set_next_token(q.next_token.clone())
            .set_session_id(q.session_id.clone());
        match &q.status {
            Some(SessionStatus::Active) => req = req.status(sdk::SessionStatus::Active),
            Some(SessionStatus::Terminated) => req = req.status(sdk::SessionStatus::Terminated),
            _ => {}
        }
        match q.sort {
            Some(SortOrder::StartTimeAscending) => {
                req = req.sort_by(sdk::SessionSortBy::StartTimeAscending)
            }
            Some(SortOrder::StartTimeDescending) => {
                req = req.sort_by(sdk::SessionSortBy::StartTimeDescending)
            }
            None => {}
        }
        self.pace(q.priority).await;
        // Boxed: the SDK's send future is several KB, and each portal's task would otherwise
        // carry it in its own state between polls (see BENCHMARKS.md, scale model).
        let out = Box::pin(
            req.customize()
                .interceptor(self.counting(LIST_SESSIONS))
                .interceptor(Self::guard(LIST_SESSIONS))
                .send()
                .attributed(&self.counters),
        )
        .await
        .map_err(|e| api_error(LIST_SESSIONS, e))?;
        check_page(out.sessions().len(), q.max_results, out.next_token())
            .map_err(|stop| refused(&self.counters, LIST_SESSIONS, &stop))?;
        let mut sessions: Vec<SessionRecord> = out.sessions().iter().map(summary_record).collect();
        self.screen(LIST_SESSIONS, &mut sessions);
        Ok(SessionPage {
            sessions,
            next_token: out.next_token().map(str::to_string),
            portal_arn: out
                .sessions()
                .iter()
                .find_map(|s| s.portal_arn())
                .map(str::to_string),
        })
    }

    /// Fetches one session (paced as a poll); `Ok(None)` when the service says it does not exist.
    pub async fn get_session(&self, session_id: &str) -> Result<Option<SessionRecord>, ApiError> {
        self.pace(Priority::Poll).await;
        let res = Box::pin(
            self.client
                .get_session()
                .portal_id(&self.portal_id)
                .session_id(session_id)
                .customize()
                .interceptor(self.counting(GET_SESSION))
                .interceptor(Self::guard(GET_SESSION))
                .send()
                .attributed(&self.counters),
        )
        .await;
        match res {
            Ok(out) => {
                let mut record: Vec<SessionRecord> =
                    out.session().map(session_record).into_iter().collect();
                self.screen(GET_SESSION, &mut record);
                Ok(record.pop())
            }
            Err(SdkError::ServiceError(se)) if se.err().is_resource_not_found_exception() => {
                Ok(None)
            }
            Err(e) => Err(api_error(GET_SESSION, e)),
        }
    }

    /// Fetches the portal's metadata by ARN (paced in the background, behind polls).
    pub async fn get_portal(&self, portal_arn: &str) -> Result<Option<PortalInfo>, ApiError> {
        self.pace(Priority::Background).await;
        let out = Box::pin(
            self.client
                .get_portal()
                .portal_arn(portal_arn)
                .customize()
                .interceptor(self.counting(GET_PORTAL))
                .interceptor(Self::guard(GET_PORTAL))
                .send()
                .attributed(&self.counters),
        )
        .await
        .map_err(|e| api_error(GET_PORTAL, e))?;
        Ok(out.portal().map(|p| portal_info!(p)))
    }
}

/// A page refused by the page bounds ([`check_page`]): the listing ends with `error="other"`.
pub(super) fn refused(
    counters: &ApiCounters,
    operation: &'static str,
    stop: &PageStop,
) -> ApiError {
    counters.error(operation, ErrorLabel::Other);
    ApiError {
        operation,
        code: ErrorLabel::Other,
        message: stop.to_string(),
    }
}

/// Refuses to send a `nextToken` longer than the service model allows (the SDK would panic on a
/// long one). Unreachable while every page goes through [`check_page`]; counted as a request
/// that failed before it left, should it ever happen.
fn unsent_token(
    token: Option<&str>,
    counters: &ApiCounters,
    operation: &'static str,
) -> Result<(), ApiError> {
    let Err(stop) = token.map_or(Ok(()), check_token) else {
        return Ok(());
    };
    counters.request(operation);
    Err(refused(counters, operation, &stop))
}

/// 2020-01-01T00:00:00Z: a `startTime` before it reads as missing (WorkSpaces Web did not exist;
/// a `startTime` of 0 would otherwise make `active_session_max_age_seconds` about 1.8e9), so the
/// record counts as incomplete.
const EARLIEST_START_MS: UnixMillis = 1_577_836_800_000;

/// Milliseconds of an API time, rounded to nearest: the SDK parses epoch seconds through f64, so
/// `…400.123` arrives as `…400.122999…`, which `DateTime::to_millis` would truncate.
pub(super) fn millis(t: Option<&DateTime>) -> Option<UnixMillis> {
    let t = t?;
    let sub = (i64::from(t.subsec_nanos()) + 500_000) / 1_000_000;
    t.secs().checked_mul(1000)?.checked_add(sub)
}

pub(super) fn status(s: Option<&sdk::SessionStatus>) -> SessionStatus {
    s.map(|s| SessionStatus::from_wire(s.as_str()))
        .unwrap_or_else(|| SessionStatus::Unknown(String::new()))
}

pub(super) fn summary_record(s: &sdk::SessionSummary) -> SessionRecord {
    session_record!(s)
}

pub(super) fn session_record(s: &sdk::Session) -> SessionRecord {
    session_record!(s)
}

#[cfg(test)]
mod tests {
    use super::*;
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
