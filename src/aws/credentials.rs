//! Assumed-role credentials, with each `AssumeRole` call counted for the API call that needed it.

use std::sync::Arc;

use aws_credential_types::provider::error::CredentialsError;
use aws_credential_types::provider::{ProvideCredentials, future};
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
