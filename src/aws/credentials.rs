//! Assumed-role credentials: one cache per role, shared by every client that assumes it (every
//! region and portal of an account), kept until [`REFRESH_BEFORE_EXPIRY`] before they expire;
//! each `AssumeRole` call counted for the API call that needed it.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_credential_types::provider::error::CredentialsError;
use aws_credential_types::provider::{ProvideCredentials, future};
use aws_smithy_async::time::SharedTimeSource;

use super::error_label::ErrorLabel;
use super::types::ApiCounters;

/// Operation name of STS `AssumeRole`, counted for the portal (or discovery source) whose call
/// needed fresh assumed-role credentials: they are cached per role ([`CachedRole`]), so a call is
/// counted only when the cache is empty or expiring, once per role and not per poll.
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
/// counters of the API call that needed the credentials. A refusal is returned as an
/// [`AssumeRoleFailed`], so that the call that needed it is not counted a second time.
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
            self.0.provide_credentials().await.map_err(|e| {
                let label = credentials_error_label(&e);
                if let Some(c) = &counters {
                    c.error(ASSUME_ROLE, label);
                }
                let message = service_message(&e).unwrap_or_else(|| error_chain(&e));
                CredentialsError::provider_error(AssumeRoleFailed {
                    label,
                    message,
                    source: e,
                })
            })
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

/// An `AssumeRole` that failed, already counted under `AssumeRole` with its `error` label.
#[derive(Debug, thiserror::Error)]
#[error("AssumeRole failed: {label}: {message}")]
pub(super) struct AssumeRoleFailed {
    /// The `error` label it was counted with.
    pub(super) label: ErrorLabel,
    /// STS's message, or the cause.
    pub(super) message: String,
    #[source]
    source: CredentialsError,
}

/// Why credentials could not be had for a call.
#[derive(Debug)]
pub(super) enum CredentialsFailure<'a> {
    /// `AssumeRole` failed: counted under `AssumeRole`, with its own label.
    AssumeRole(&'a AssumeRoleFailed),
    /// The provider chain found none, failed or timed out: `error="credentials"`.
    Chain(&'a CredentialsError),
}

impl CredentialsFailure<'_> {
    /// What went wrong, for the poll's last error: STS's message, or what the chain says.
    pub(super) fn message(&self) -> String {
        match self {
            CredentialsFailure::AssumeRole(f) => f.message.clone(),
            CredentialsFailure::Chain(CredentialsError::CredentialsNotLoaded(_)) => {
                "no credentials in the chain (environment, profile, SSO, web identity, ECS, IMDS)"
                    .to_string()
            }
            CredentialsFailure::Chain(e @ CredentialsError::ProviderTimedOut(_)) => {
                format!("loading credentials timed out: {}", error_chain(*e))
            }
            CredentialsFailure::Chain(e) => format!("credentials: {}", error_chain(*e)),
        }
    }
}

/// Whether `err` (or one of its sources) is a failure to get credentials, and which.
pub(super) fn credentials_failure<'a>(
    err: &'a (dyn std::error::Error + 'static),
) -> Option<CredentialsFailure<'a>> {
    let mut chain = None;
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = source {
        if let Some(f) = e.downcast_ref::<AssumeRoleFailed>() {
            return Some(CredentialsFailure::AssumeRole(f));
        }
        if chain.is_none() {
            chain = e.downcast_ref::<CredentialsError>();
        }
        source = e.source();
    }
    chain.map(CredentialsFailure::Chain)
}

/// The `error` label of a failed `AssumeRole`: the STS error code (`AccessDenied`, ...),
/// `credentials` when the call to STS itself could not be signed (no base credentials),
/// `timeout`, or `other`.
pub(super) fn credentials_error_label(err: &CredentialsError) -> ErrorLabel {
    if matches!(err, CredentialsError::ProviderTimedOut(_)) {
        return ErrorLabel::Timeout;
    }
    let mut unsigned = false;
    let mut source = std::error::Error::source(err);
    while let Some(e) = source {
        if let Some(code) = e
            .downcast_ref::<aws_smithy_types::error::ErrorMetadata>()
            .and_then(|m| m.code())
        {
            return ErrorLabel::from_code(code);
        }
        unsigned |= e.is::<CredentialsError>();
        source = e.source();
    }
    if unsigned {
        ErrorLabel::Credentials
    } else {
        ErrorLabel::Other
    }
}

/// The service's message in `err`'s sources (STS's refusal of `AssumeRole`), if any.
fn service_message(err: &CredentialsError) -> Option<String> {
    let mut source = std::error::Error::source(err);
    while let Some(e) = source {
        if let Some(m) = e
            .downcast_ref::<aws_smithy_types::error::ErrorMetadata>()
            .and_then(|m| m.message())
        {
            return Some(m.to_string());
        }
        source = e.source();
    }
    None
}

/// An error and its sources, `: `-separated.
pub(super) fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_told_apart_through_their_sources() {
        let none = CredentialsError::not_loaded("no providers in chain provided credentials");
        let failure = credentials_failure(&none).expect("a credentials failure");
        assert!(matches!(failure, CredentialsFailure::Chain(_)));
        assert!(failure.message().starts_with("no credentials in the chain"));
        // STS could not be called: no base credentials to sign it with.
        let nested = CredentialsError::provider_error(CredentialsError::not_loaded("none"));
        assert_eq!(credentials_error_label(&nested), ErrorLabel::Credentials);
        let refused = CredentialsError::provider_error(AssumeRoleFailed {
            label: ErrorLabel::from_code("AccessDenied"),
            message: "User: x is not authorized to perform: sts:AssumeRole".into(),
            source: nested,
        });
        match credentials_failure(&refused) {
            Some(CredentialsFailure::AssumeRole(f)) => {
                assert_eq!(f.label.as_str(), "AccessDenied");
                assert!(f.message.contains("sts:AssumeRole"));
            }
            other => panic!("{other:?}"),
        }
        let unrelated = std::io::Error::other("connection refused");
        assert!(credentials_failure(&unrelated).is_none());
        assert_eq!(
            credentials_error_label(&CredentialsError::provider_error("bad")),
            ErrorLabel::Other
        );
    }

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
