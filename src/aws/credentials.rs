//! Assumed-role credentials: one cache per role, shared by every client that assumes it (every
//! region and portal of an account), kept until [`REFRESH_BEFORE_EXPIRY`] before they expire;
//! each `AssumeRole` call counted for the API call that needed it.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_credential_types::provider::error::CredentialsError;
use aws_credential_types::provider::{ProvideCredentials, future};
use aws_smithy_async::time::SharedTimeSource;
use aws_smithy_runtime_api::client::interceptors::context::Error as ErasedError;
use aws_smithy_runtime_api::client::orchestrator::OrchestratorError;

use super::error_label::ErrorLabel;
use super::types::ApiCounters;

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
pub(super) trait Attributed: std::future::Future + Sized {
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
pub(super) struct CountedAssumeRole(pub(super) aws_config::sts::AssumeRoleProvider);

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

/// How long before their expiry cached assumed-role credentials are replaced: a request never
/// goes out with credentials that expire within this margin (clock skew, a long poll).
pub const REFRESH_BEFORE_EXPIRY: Duration = Duration::from_secs(300);

/// The credentials of one role, assumed on first use and cached until [`REFRESH_BEFORE_EXPIRY`]
/// before they expire, by the time of the SDK configuration's time source. Clones share the
/// cache: every client of the role uses one (the SDK's own identity cache, which jitters its
/// margin by up to half and is one per client, is off for these clients). Concurrent callers
/// wait for one `AssumeRole`; a failed one is not cached (the next call tries again).
#[derive(Debug, Clone)]
pub(super) struct CachedRole(Arc<CachedRoleInner>);

#[derive(Debug)]
struct CachedRoleInner {
    provider: CountedAssumeRole,
    time: SharedTimeSource,
    cached: tokio::sync::Mutex<Option<Credentials>>,
}

impl CachedRole {
    /// A cache in front of `provider`, reading the time from `time`.
    pub(super) fn new(provider: CountedAssumeRole, time: SharedTimeSource) -> Self {
        CachedRole(Arc::new(CachedRoleInner {
            provider,
            time,
            cached: tokio::sync::Mutex::new(None),
        }))
    }
}

/// Whether `credentials` may still be used at `now`: they expire more than
/// [`REFRESH_BEFORE_EXPIRY`] later (credentials without an expiry always may).
fn fresh(credentials: &Credentials, now: SystemTime) -> bool {
    credentials
        .expiry()
        .is_none_or(|expiry| now + REFRESH_BEFORE_EXPIRY < expiry)
}

impl ProvideCredentials for CachedRole {
    fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        future::ProvideCredentials::new(async move {
            let mut cached = self.0.cached.lock().await;
            if let Some(c) = cached.as_ref().filter(|c| fresh(c, self.0.time.now())) {
                return Ok(c.clone());
            }
            let assumed = self.0.provider.provide_credentials().await?;
            *cached = Some(assumed.clone());
            Ok(assumed)
        })
    }
}

/// Whether an attempt failed because its credentials could not be loaded (e.g. `AssumeRole`
/// refused): nothing was sent, and the refusal is counted under `AssumeRole` instead.
pub(super) fn is_credentials_failure(err: &OrchestratorError<ErasedError>) -> bool {
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
pub(super) fn credentials_error_label(err: &CredentialsError) -> ErrorLabel {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_fresh_until_five_minutes_before_they_expire() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let expiry = t0 + Duration::from_secs(3600);
        let c = Credentials::new("ASIA", "secret", Some("token".into()), Some(expiry), "test");
        assert!(fresh(&c, t0));
        assert!(fresh(
            &c,
            expiry - REFRESH_BEFORE_EXPIRY - Duration::from_secs(1)
        ));
        assert!(!fresh(&c, expiry - REFRESH_BEFORE_EXPIRY));
        assert!(!fresh(&c, expiry));
        assert!(!fresh(&c, expiry + Duration::from_secs(1)));
        let forever = Credentials::new("AKIA", "secret", None, None, "test");
        assert!(fresh(&forever, expiry));
    }
}
