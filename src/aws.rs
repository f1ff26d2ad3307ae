//! AWS access: SDK clients per (region, role, endpoint) and the four read operations, as plain Rust types.
//!
//! This is the only module that imports SDK types. Every HTTP attempt (retries included) is counted in
//! [`ApiCounters`] by an interceptor, and every failure is mapped to the `error` label value of
//! `workspacesweb_api_request_errors_total` in one place: [`error_label`], as an [`ErrorLabel`].
//!
//! Every call (`ListSessions`, `GetSession`, `GetPortal`, `ListPortals`) first waits for a slot of
//! the [`TokenBucket`] of its region and account ([`LimitKey`]), `global.max_requests_per_second`
//! ([`Clients::set_rate`]), so many portals never stampede the API. The SDK's own retries happen
//! inside `send()`, after the slot: they are paced by the SDK's exponential backoff and the
//! service's `Retry-After` ([`RetryAfterClassifier`]), not by the bucket (an interceptor cannot
//! wait), so under throttling a call may use up to 3 attempts for one slot.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

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

/// A [`SessionRecord`] from either SDK session type (`SessionSummary`, `Session`): they share
/// accessor names but no trait.
macro_rules! session_record {
    ($s:expr) => {
        SessionRecord {
            id: $s.session_id().map(str::to_string),
            username: $s.username().map(str::to_string),
            status: status($s.status()),
            start_ms: millis($s.start_time()),
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
        if let Ok(mut m) = self.inner.lock() {
            *m.requests.entry(operation.to_string()).or_default() += 1;
        }
    }

    /// Counts one failed request of `operation` with the `error` label value `code`.
    pub fn error(&self, operation: &str, label: ErrorLabel) {
        if let Ok(mut m) = self.inner.lock() {
            *m.errors
                .entry((operation.to_string(), label.as_str().to_string()))
                .or_default() += 1;
        }
    }

    /// Remembers the service's latest `Retry-After` hint.
    pub fn note_retry_after(&self, delay: std::time::Duration) {
        if let Ok(mut m) = self.inner.lock() {
            m.retry_after = Some(delay);
        }
    }

    /// The latest `Retry-After` hint since the last call, clearing it.
    pub fn take_retry_after(&self) -> Option<std::time::Duration> {
        self.inner
            .lock()
            .ok()
            .and_then(|mut m| m.retry_after.take())
    }

    /// Copies of the request and error counts.
    pub fn snapshot(&self) -> (BTreeMap<String, u64>, BTreeMap<(String, String), u64>) {
        self.inner
            .lock()
            .map(|m| (m.requests.clone(), m.errors.clone()))
            .unwrap_or_default()
    }
}

/// Counts each attempt of one operation, and each failed attempt by error label.
#[derive(Debug)]
struct CountingInterceptor {
    operation: &'static str,
    counters: Arc<ApiCounters>,
}

impl Intercept for CountingInterceptor {
    fn name(&self) -> &'static str {
        "workspacesweb-exporter-counting"
    }

    fn read_before_transmit(
        &self,
        _context: &BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        self.counters.request(self.operation);
        Ok(())
    }

    fn read_after_attempt(
        &self,
        context: &FinalizerInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if let Some(Err(err)) = context.output_or_error()
            && !is_credentials_failure(err)
        {
            let header_code = context
                .response()
                .and_then(|r| r.headers().get("x-amzn-errortype"))
                .map(str::to_string);
            let code = attempt_error_label(err, header_code.as_deref());
            self.counters.error(self.operation, code);
            if let Some(delay) = context
                .response()
                .and_then(|r| retry_after(r.headers().get("retry-after")))
            {
                self.counters.note_retry_after(delay);
            }
        }
        Ok(())
    }
}

/// Longest `Retry-After` honoured; a larger hint is capped (the poll timeout bounds retries anyway).
pub const MAX_RETRY_AFTER: std::time::Duration = std::time::Duration::from_secs(20);

/// Parses a `Retry-After` header given in seconds (the form this service sends), capped.
pub fn retry_after(value: Option<&str>) -> Option<std::time::Duration> {
    let secs: f64 = value?.trim().parse().ok()?;
    (secs.is_finite() && secs >= 0.0)
        .then(|| std::time::Duration::from_secs_f64(secs.min(MAX_RETRY_AFTER.as_secs_f64())))
}

/// Makes the SDK's retries wait what the service asks in `Retry-After` on throttling (429) and
/// internal errors (5xx): the standard strategy honours an explicit delay but never reads the header.
#[derive(Debug, Default)]
struct RetryAfterClassifier;

impl ClassifyRetry for RetryAfterClassifier {
    fn classify_retry(&self, ctx: &InterceptorContext) -> RetryAction {
        let Some(response) = ctx.response() else {
            return RetryAction::NoActionIndicated;
        };
        let status = response.status().as_u16();
        let kind = match status {
            429 => ErrorKind::ThrottlingError,
            500..=599 => ErrorKind::ServerError,
            _ => return RetryAction::NoActionIndicated,
        };
        match retry_after(response.headers().get("retry-after")) {
            Some(delay) => RetryAction::retryable_error_with_explicit_delay(kind, delay),
            None => RetryAction::NoActionIndicated,
        }
    }

    fn name(&self) -> &'static str {
        "workspacesweb-exporter-retry-after"
    }

    fn priority(&self) -> RetryClassifierPriority {
        RetryClassifierPriority::run_after(RetryClassifierPriority::transient_error_classifier())
    }
}

/// Guards against hostile or broken responses of one operation: bounds the body read to
/// [`MAX_RESPONSE_BYTES`], and rejects a successful answer whose required top-level member
/// (`sessions`, `session`, `portal`, `portals`) is missing or null, which the SDK would otherwise
/// silently read as an empty listing (or as "no such session").
#[derive(Debug)]
struct ResponseGuard {
    operation: &'static str,
}

/// Why a response was rejected by [`ResponseGuard`] (the error label is `other`).
#[derive(Debug, thiserror::Error)]
enum MalformedResponse {
    /// The body is longer than [`MAX_RESPONSE_BYTES`].
    #[error("response body of {0} bytes exceeds the limit of {MAX_RESPONSE_BYTES} bytes")]
    TooLarge(u64),
    /// The required member is missing.
    #[error("{operation} response has no `{member}` member")]
    MissingMember {
        operation: &'static str,
        member: &'static str,
    },
}

impl ResponseGuard {
    /// The required top-level member of the operation's output.
    fn required_member(&self) -> Option<&'static str> {
        match self.operation {
            LIST_SESSIONS => Some("sessions"),
            GET_SESSION => Some("session"),
            GET_PORTAL => Some("portal"),
            LIST_PORTALS => Some("portals"),
            _ => None,
        }
    }
}

/// Whether `body` is a JSON object with a non-null member `name`.
fn has_member(body: &[u8], name: &str) -> bool {
    serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(body)
        .is_ok_and(|m| m.get(name).is_some_and(|v| !v.is_null()))
}

impl Intercept for ResponseGuard {
    fn name(&self) -> &'static str {
        "workspacesweb-exporter-response-guard"
    }

    fn modify_before_deserialization(
        &self,
        context: &mut BeforeDeserializationInterceptorContextMut<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let response = context.response_mut();
        let declared = response
            .headers()
            .get("content-length")
            .and_then(|v| v.trim().parse::<u64>().ok());
        if let Some(len) = declared.filter(|l| *l > MAX_RESPONSE_BYTES as u64) {
            return Err(MalformedResponse::TooLarge(len).into());
        }
        // Chunked or lying about its length: stop reading at the limit.
        let body = std::mem::replace(response.body_mut(), SdkBody::taken());
        *response.body_mut() =
            SdkBody::from_body_1_x(http_body_util::Limited::new(body, MAX_RESPONSE_BYTES));
        Ok(())
    }

    fn read_after_deserialization(
        &self,
        context: &AfterDeserializationInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let Ok(output) = context.output_or_error() else {
            return Ok(());
        };
        // Only an empty result needs a look at the raw body.
        let empty = if let Some(o) = output.downcast_ref::<ListSessionsOutput>() {
            o.sessions().is_empty()
        } else if let Some(o) = output.downcast_ref::<GetSessionOutput>() {
            o.session().is_none()
        } else if let Some(o) = output.downcast_ref::<GetPortalOutput>() {
            o.portal().is_none()
        } else if let Some(o) = output.downcast_ref::<ListPortalsOutput>() {
            o.portals().is_empty()
        } else {
            false
        };
        let Some(member) = self.required_member().filter(|_| empty) else {
            return Ok(());
        };
        let body = context.response().body().bytes().unwrap_or_default();
        if has_member(body, member) {
            Ok(())
        } else {
            Err(MalformedResponse::MissingMember {
                operation: self.operation,
                member,
            }
            .into())
        }
    }
}

/// Forbids retrying a response whose body exceeded [`MAX_RESPONSE_BYTES`] (the SDK would retry the
/// read error as transient, reading up to the limit again each time).
#[derive(Debug)]
struct BodyLimitClassifier;

impl ClassifyRetry for BodyLimitClassifier {
    fn classify_retry(&self, ctx: &InterceptorContext) -> RetryAction {
        let Some(Err(err)) = ctx.output_or_error() else {
            return RetryAction::NoActionIndicated;
        };
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
        while let Some(e) = source {
            if e.is::<http_body_util::LengthLimitError>() {
                return RetryAction::RetryForbidden;
            }
            source = e.source();
        }
        RetryAction::NoActionIndicated
    }

    fn name(&self) -> &'static str {
        "workspacesweb-exporter-body-limit"
    }

    fn priority(&self) -> RetryClassifierPriority {
        RetryClassifierPriority::run_after(RetryClassifierPriority::transient_error_classifier())
    }
}

/// The `error` label of one failed attempt, from the orchestrator's error and the raw error-type header.
fn attempt_error_label(err: &OrchestratorError<ErasedError>, header: Option<&str>) -> ErrorLabel {
    if let Some(op) = err.as_operation_error() {
        let code = op
            .downcast_ref::<ListSessionsError>()
            .and_then(|e| e.code())
            .or_else(|| op.downcast_ref::<GetSessionError>().and_then(|e| e.code()))
            .or_else(|| op.downcast_ref::<GetPortalError>().and_then(|e| e.code()))
            .or_else(|| op.downcast_ref::<ListPortalsError>().and_then(|e| e.code()));
        return code
            .or(header.map(normalize_error_type))
            .map_or(ErrorLabel::Other, ErrorLabel::from_code);
    }
    if err.is_timeout_error() {
        return ErrorLabel::Timeout;
    }
    if let Some(conn) = err.as_connector_error() {
        return if conn.is_timeout() {
            ErrorLabel::Timeout
        } else {
            ErrorLabel::Dispatch
        };
    }
    ErrorLabel::Other
}

/// `X-Amzn-ErrorType` may carry `Code:http://...` or `aws.protocols#Code`; keep the bare code.
fn normalize_error_type(raw: &str) -> &str {
    let code = raw.split(':').next().unwrap_or(raw);
    code.rsplit('#').next().unwrap_or(code)
}

/// The `error` label of a whole failed call (after the SDK's retries), in one place.
pub fn error_label<E: ProvideErrorMetadata>(
    err: &SdkError<E, aws_smithy_runtime_api::http::Response>,
) -> ErrorLabel {
    match err {
        SdkError::ServiceError(se) => se
            .err()
            .code()
            .map_or(ErrorLabel::Other, ErrorLabel::from_code),
        SdkError::TimeoutError(_) => ErrorLabel::Timeout,
        SdkError::DispatchFailure(d) if d.is_timeout() => ErrorLabel::Timeout,
        // Not a connection failure: e.g. no credentials to sign with (nothing was sent).
        SdkError::DispatchFailure(d) if d.is_other() => ErrorLabel::Other,
        SdkError::DispatchFailure(_) => ErrorLabel::Dispatch,
        _ => ErrorLabel::Other,
    }
}

fn api_error<E>(
    operation: &'static str,
    err: SdkError<E, aws_smithy_runtime_api::http::Response>,
) -> ApiError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let code = error_label(&err);
    let message = match &err {
        SdkError::ServiceError(se) => match se.err().message() {
            Some(m) => m.to_string(),
            // An unmodeled error, e.g. a malformed response: its cause is the useful part.
            None => error_chain(se.err()),
        },
        other => error_chain(other),
    };
    ApiError {
        operation,
        code,
        message,
    }
}

/// An error and its sources, `: `-separated.
fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
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

/// A cache of SDK clients, one per [`ClientKey`], over a base SDK configuration, and the
/// client-side rate limits: one [`TokenBucket`] per [`LimitKey`] (region and account).
#[derive(Debug, Clone)]
pub struct Clients {
    base: SdkConfig,
    cache: Arc<tokio::sync::Mutex<HashMap<ClientKey, Client>>>,
    limits: Arc<Mutex<Limits>>,
}

/// The rate every bucket runs at, and the buckets.
#[derive(Debug, Default)]
struct Limits {
    /// Requests per second; `None` (the default of a bare [`Clients`]) sends unpaced.
    rate: Option<f64>,
    buckets: HashMap<LimitKey, Arc<TokenBucket>>,
}

impl Clients {
    /// Clients over the default credential, region and endpoint chains (env, profile, IMDS, IRSA, ...).
    pub async fn from_environment() -> Self {
        Self::new(aws_config::defaults(BehaviorVersion::latest()).load().await)
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
            cache: Arc::default(),
            limits: Arc::default(),
        }
    }

    /// Sets the client-side limit (`global.max_requests_per_second`) of every (region, account)
    /// bucket, existing and future; `None`, or a value that is not a positive number, lifts it.
    /// Clones share the buckets, so a reload takes effect for every portal at once.
    pub fn set_rate(&self, rate: Option<f64>) {
        let rate = rate.filter(|r| r.is_finite() && *r > 0.0);
        let mut limits = self.limits.lock().unwrap_or_else(|e| e.into_inner());
        limits.rate = rate;
        for bucket in limits.buckets.values() {
            bucket.set_rate(rate);
        }
    }

    /// The current client-side limit, requests per second.
    pub fn rate(&self) -> Option<f64> {
        self.limits.lock().unwrap_or_else(|e| e.into_inner()).rate
    }

    /// The bucket that paces the requests made with `key` (shared by every key of the same
    /// region and account).
    pub fn bucket(&self, key: &ClientKey) -> Arc<TokenBucket> {
        let mut limits = self.limits.lock().unwrap_or_else(|e| e.into_inner());
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

    async fn build(&self, key: &ClientKey) -> Client {
        let mut base = self.base.to_builder();
        if let Some(region) = &key.region {
            base = base.region(Region::new(region.clone()));
        }
        let base = base.build();
        let mut conf = aws_sdk_workspacesweb::config::Builder::from(&base)
            .retry_classifier(RetryAfterClassifier);
        if let Some(role) = &key.role_arn {
            let mut provider = aws_config::sts::AssumeRoleProvider::builder(role.clone())
                .session_name("workspacesweb-exporter")
                .configure(&base);
            if let Some(ext) = &key.external_id {
                provider = provider.external_id(ext.clone());
            }
            conf = conf.credentials_provider(CountedAssumeRole(provider.build().await));
        }
        if let Some(url) = &key.endpoint_url {
            conf = conf.endpoint_url(url.clone());
        }
        conf = conf.retry_classifier(BodyLimitClassifier);
        Client::from_conf(conf.build())
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

    /// Fetches one page of `ListPortals`.
    pub async fn list_portals(
        &self,
        max_results: i32,
        next_token: Option<String>,
    ) -> Result<(Vec<PortalInfo>, Option<String>), ApiError> {
        self.bucket.acquire().await;
        let out = self
            .client
            .list_portals()
            .max_results(max_results)
            .set_next_token(next_token)
            .customize()
            .interceptor(CountingInterceptor {
                operation: LIST_PORTALS,
                counters: self.counters.clone(),
            })
            .send()
            .attributed(&self.counters)
            .await
            .map_err(|e| api_error(LIST_PORTALS, e))?;
        let portals = out.portals().iter().map(|p| portal_info!(p)).collect();
        Ok((portals, out.next_token().map(str::to_string)))
    }
}

/// What a client-side rate limit is shared by: the region and the account the requests run as.
///
/// The account is the one of `role_arn` when a role is assumed (its ARN names it); without a role,
/// every portal runs as the base credentials, one principal, so they share one bucket per region.
/// A role ARN whose account cannot be read keys by the whole ARN. A different `endpoint_url` is a
/// different service (a local simulator, a VPC endpoint) and gets its own bucket.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LimitKey {
    /// Region (`None`: the SDK's region chain).
    pub region: Option<String>,
    /// Account id of the assumed role, the role ARN itself if unreadable, or `None` (base credentials).
    pub principal: Option<String>,
    /// Endpoint override.
    pub endpoint_url: Option<String>,
}

impl LimitKey {
    /// The bucket key of the requests made with `key`.
    pub fn of(key: &ClientKey) -> Self {
        LimitKey {
            region: key.region.clone(),
            principal: key
                .role_arn
                .as_deref()
                .map(|arn| account_of_arn(arn).unwrap_or(arn).to_string()),
            endpoint_url: key.endpoint_url.clone(),
        }
    }
}

/// The account id of an ARN (`arn:<partition>:<service>:<region>:<account>:<resource>`), when it is 12 digits.
pub fn account_of_arn(arn: &str) -> Option<&str> {
    let ["arn", _, _, _, account, _] = crate::arn::fields(arn)? else {
        return None;
    };
    (account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit())).then_some(account)
}

/// An async token bucket (GCRA, "virtual scheduling"): `rate` requests per second on average,
/// bursts of up to one second's worth (`max(1, rate)` requests) after an idle second.
///
/// Guarantee (unit-tested with synthetic instants): the send times it hands out put at most
/// `rate × W + burst` requests in any window of length `W`. [`acquire`](Self::acquire) reserves
/// a slot and sleeps until it; a caller that gives up while waiting (a poll timeout) still spends
/// its slot, which only ever errs on the slow side. Waiters are served in arrival order.
#[derive(Debug)]
pub struct TokenBucket {
    state: Mutex<BucketState>,
}

#[derive(Debug)]
struct BucketState {
    /// Spacing between two requests at the steady rate; `None`: unlimited.
    emission: Option<std::time::Duration>,
    /// Theoretical arrival time of the next request at the steady rate.
    tat: tokio::time::Instant,
}

impl TokenBucket {
    /// A full bucket at `now` running at `rate` requests per second (`None`: unlimited).
    pub fn new(rate: Option<f64>, now: tokio::time::Instant) -> Self {
        TokenBucket {
            state: Mutex::new(BucketState {
                emission: emission(rate),
                tat: now,
            }),
        }
    }

    /// Changes the rate; requests already scheduled keep their slots.
    pub fn set_rate(&self, rate: Option<f64>) {
        self.lock().emission = emission(rate);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BucketState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Reserves the next slot for a request wanting to go at `now`; returns how long to wait.
    pub fn reserve(&self, now: tokio::time::Instant) -> std::time::Duration {
        let mut s = self.lock();
        let Some(t) = s.emission else {
            return std::time::Duration::ZERO;
        };
        // Burst: one second's worth, at least one request.
        let tolerance = t.max(std::time::Duration::from_secs(1));
        let tat = s.tat.max(now) + t;
        s.tat = tat;
        (tat - tolerance).saturating_duration_since(now)
    }

    /// Waits for a slot (tokio time: a paused test clock applies).
    pub async fn acquire(&self) {
        let wait = self.reserve(tokio::time::Instant::now());
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
}

/// Spacing of one request at `rate` per second, rounded up to the nanosecond (never faster).
fn emission(rate: Option<f64>) -> Option<std::time::Duration> {
    let rate = rate.filter(|r| r.is_finite() && *r > 0.0)?;
    let nanos = (1e9 / rate).ceil();
    Some(std::time::Duration::from_nanos(
        if nanos >= u64::MAX as f64 {
            u64::MAX
        } else {
            nanos as u64
        },
    ))
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
        CountingInterceptor {
            operation,
            counters: self.counters.clone(),
        }
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

    /// A handle on [`limiter_wait`](Self::limiter_wait) that can be read while a call is in flight.
    pub fn limiter_wait_counter(&self) -> Arc<std::sync::atomic::AtomicU64> {
        self.waited.clone()
    }

    async fn pace(&self) {
        let wait = self.bucket.reserve(tokio::time::Instant::now());
        if !wait.is_zero() {
            let nanos = u64::try_from(wait.as_nanos()).unwrap_or(u64::MAX);
            self.waited
                .fetch_add(nanos, std::sync::atomic::Ordering::Relaxed);
            tokio::time::sleep(wait).await;
        }
    }

    /// Fetches one page of `ListSessions`.
    pub async fn list_sessions(&self, q: &ListQuery) -> Result<SessionPage, ApiError> {
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
        self.pace().await;
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

    /// Fetches one session; `Ok(None)` when the service says it does not exist.
    pub async fn get_session(&self, session_id: &str) -> Result<Option<SessionRecord>, ApiError> {
        self.pace().await;
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

    /// Fetches the portal's metadata by ARN.
    pub async fn get_portal(&self, portal_arn: &str) -> Result<Option<PortalInfo>, ApiError> {
        self.pace().await;
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

/// Operation name of STS `AssumeRole`, counted for the portal (or discovery source) whose call
/// needed fresh assumed-role credentials: the SDK caches them per client, so a call is counted
/// only when the cache is empty or expiring, once per client and not per poll.
pub const ASSUME_ROLE: &str = "AssumeRole";

tokio::task_local! {
    /// The counters of the API call being made, for the `AssumeRole` it may trigger.
    static CALLER: Arc<ApiCounters>;
}

/// Runs an API call with its counters in scope, so that [`CountedAssumeRole`] can count the
/// `AssumeRole` the call triggers (the STS client inside `AssumeRoleProvider` accepts no
/// interceptor, and the provider is shared by every portal of a client).
trait Attributed: std::future::Future + Sized {
    fn attributed(
        self,
        counters: &Arc<ApiCounters>,
    ) -> tokio::task::futures::TaskLocalFuture<Arc<ApiCounters>, Self> {
        CALLER.scope(counters.clone(), self)
    }
}

impl<F: std::future::Future> Attributed for F {}

/// `AssumeRoleProvider`, counting each call (and each refusal, by STS error code) into the
/// counters of the API call that needed the credentials.
#[derive(Debug)]
struct CountedAssumeRole(aws_config::sts::AssumeRoleProvider);

impl ProvideCredentials for CountedAssumeRole {
    fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        future::ProvideCredentials::new(async move {
            let counters = CALLER.try_with(Arc::clone).ok();
            if let Some(c) = &counters {
                c.request(ASSUME_ROLE);
            }
            let result = self.0.provide_credentials().await;
            if let (Err(e), Some(c)) = (&result, &counters) {
                c.error(ASSUME_ROLE, credentials_error_label(e));
            }
            result
        })
    }
}

/// Whether an attempt failed because its credentials could not be loaded (e.g. `AssumeRole`
/// refused): nothing was sent, and the refusal is counted under `AssumeRole` instead.
fn is_credentials_failure(err: &OrchestratorError<ErasedError>) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = source {
        if e.is::<CredentialsError>() {
            return true;
        }
        source = e.source();
    }
    false
}

/// The `error` label of a failed `AssumeRole`: the STS error code (`AccessDenied`, ...), or
/// `timeout`, `other`.
fn credentials_error_label(err: &CredentialsError) -> ErrorLabel {
    if matches!(err, CredentialsError::ProviderTimedOut(_)) {
        return ErrorLabel::Timeout;
    }
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = source {
        if let Some(code) = e
            .downcast_ref::<aws_smithy_types::error::ErrorMetadata>()
            .and_then(|m| m.code())
        {
            return ErrorLabel::from_code(code);
        }
        source = e.source();
    }
    ErrorLabel::Other
}

/// Milliseconds of an API time, rounded to nearest: the SDK parses epoch seconds through f64, so
/// `…400.123` arrives as `…400.122999…`, which `DateTime::to_millis` would truncate.
fn millis(t: Option<&DateTime>) -> Option<UnixMillis> {
    let t = t?;
    let sub = (i64::from(t.subsec_nanos()) + 500_000) / 1_000_000;
    t.secs().checked_mul(1000)?.checked_add(sub)
}

fn status(s: Option<&sdk::SessionStatus>) -> SessionStatus {
    s.map(|s| SessionStatus::from_wire(s.as_str()))
        .unwrap_or_else(|| SessionStatus::Unknown(String::new()))
}

fn summary_record(s: &sdk::SessionSummary) -> SessionRecord {
    session_record!(s)
}

fn session_record(s: &sdk::Session) -> SessionRecord {
    session_record!(s)
}

#[cfg(test)]
mod tests {
    use super::*;

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
            let burst = rate.max(1.0);
            for ms in [1u64, 200, 999, 1000, 2500, 10_000, 60_000] {
                let w = Duration::from_millis(ms);
                let n = max_in_window(&s, w);
                let bound = (rate * w.as_secs_f64() + burst).floor() as usize;
                assert!(n <= bound, "rate {rate}: {n} sends in {w:?}, bound {bound}");
            }
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
