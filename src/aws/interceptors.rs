//! SDK interceptors and retry classifiers: counting every attempt, honouring `Retry-After`,
//! guarding against hostile responses, and mapping failures to their `error` label.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use aws_sdk_organizations::operation::list_accounts::{ListAccountsError, ListAccountsOutput};
use aws_sdk_organizations::operation::list_accounts_for_parent::{
    ListAccountsForParentError, ListAccountsForParentOutput,
};
use aws_sdk_organizations::operation::list_children::{ListChildrenError, ListChildrenOutput};
use aws_sdk_workspacesweb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_workspacesweb::operation::get_portal::{GetPortalError, GetPortalOutput};
use aws_sdk_workspacesweb::operation::get_session::{GetSessionError, GetSessionOutput};
use aws_sdk_workspacesweb::operation::list_portals::{ListPortalsError, ListPortalsOutput};
use aws_sdk_workspacesweb::operation::list_sessions::{ListSessionsError, ListSessionsOutput};
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
use aws_smithy_types::body::SdkBody;
use aws_smithy_types::config_bag::ConfigBag;
use aws_smithy_types::retry::ErrorKind;

use super::credentials::ASSUME_ROLE;
use super::credentials::{CredentialsFailure, credentials_failure, error_chain};
use super::error_label::ErrorLabel;
use super::types::{
    ApiCounters, ApiError, GET_PORTAL, GET_SESSION, LIST_ACCOUNTS, LIST_ACCOUNTS_FOR_PARENT,
    LIST_CHILDREN, LIST_PORTALS, LIST_SESSIONS, MAX_RESPONSE_BYTES,
};

/// Counts each attempt of one operation, and each failed attempt by error label.
///
/// An attempt that fails before it leaves the process (no credentials to sign it with) is
/// counted as a request too, with `error="credentials"`, so that errors never exceed requests;
/// so is a call that fails before its first attempt. An attempt that waited for an `AssumeRole`
/// that failed is counted under `AssumeRole` only (see `credentials.rs`).
#[derive(Debug)]
pub(super) struct CountingInterceptor {
    operation: &'static str,
    counters: Arc<ApiCounters>,
    /// Attempts begun by this call.
    attempts: AtomicU32,
    /// Whether the current attempt was transmitted (and counted as a request then).
    sent: AtomicBool,
}

impl CountingInterceptor {
    /// Counts the attempts of one call of `operation` into `counters`.
    pub(super) fn new(operation: &'static str, counters: Arc<ApiCounters>) -> Self {
        CountingInterceptor {
            operation,
            counters,
            attempts: AtomicU32::new(0),
            sent: AtomicBool::new(false),
        }
    }

    /// Counts a failed attempt (or call) `err`: as a request too when it never left.
    fn failed(&self, err: &OrchestratorError<ErasedError>, header_code: Option<&str>, sent: bool) {
        let label = match credentials_failure(err) {
            Some(CredentialsFailure::AssumeRole(_)) => return,
            Some(CredentialsFailure::Chain(_)) => ErrorLabel::Credentials,
            None => attempt_error_label(err, header_code),
        };
        if !sent {
            self.counters.request(self.operation);
        }
        self.counters.error(self.operation, label);
    }
}

impl Intercept for CountingInterceptor {
    fn name(&self) -> &'static str {
        "workspacesweb-exporter-counting"
    }

    fn read_before_attempt(
        &self,
        _context: &BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        self.attempts.fetch_add(1, Ordering::Relaxed);
        self.sent.store(false, Ordering::Relaxed);
        Ok(())
    }

    fn read_before_transmit(
        &self,
        _context: &BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        self.sent.store(true, Ordering::Relaxed);
        self.counters.request(self.operation);
        Ok(())
    }

    fn read_after_attempt(
        &self,
        context: &FinalizerInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if let Some(Err(err)) = context.output_or_error() {
            let header_code = context
                .response()
                .and_then(|r| r.headers().get("x-amzn-errortype"))
                .map(str::to_string);
            self.failed(
                err,
                header_code.as_deref(),
                self.sent.load(Ordering::Relaxed),
            );
            if let Some(delay) = context
                .response()
                .and_then(|r| retry_after(r.headers().get("retry-after")))
            {
                self.counters.note_retry_after(delay);
            }
        }
        Ok(())
    }

    fn read_after_execution(
        &self,
        context: &FinalizerInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        // A call that failed before any attempt (e.g. its request could not be built).
        if self.attempts.load(Ordering::Relaxed) == 0
            && let Some(Err(err)) = context.output_or_error()
        {
            self.failed(err, None, false);
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
pub(super) struct RetryAfterClassifier;

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
/// (`sessions`, `session`, `portal`, `portals`; Organizations' `Accounts`, `Children`) is missing or null, which the SDK would otherwise
/// silently read as an empty listing (or as "no such session").
#[derive(Debug)]
pub(super) struct ResponseGuard {
    pub(super) operation: &'static str,
}

/// Why a response was rejected by [`ResponseGuard`] (the error label is `other`).
#[derive(Debug, thiserror::Error)]
pub(super) enum MalformedResponse {
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
            LIST_ACCOUNTS | LIST_ACCOUNTS_FOR_PARENT => Some("Accounts"),
            LIST_CHILDREN => Some("Children"),
            _ => None,
        }
    }
}

/// Whether `body` is a JSON object with a non-null member `name`.
pub(super) fn has_member(body: &[u8], name: &str) -> bool {
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
        } else if let Some(o) = output.downcast_ref::<ListAccountsOutput>() {
            o.accounts().is_empty()
        } else if let Some(o) = output.downcast_ref::<ListAccountsForParentOutput>() {
            o.accounts().is_empty()
        } else if let Some(o) = output.downcast_ref::<ListChildrenOutput>() {
            o.children().is_empty()
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
pub(super) struct BodyLimitClassifier;

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
pub(super) fn attempt_error_label(
    err: &OrchestratorError<ErasedError>,
    header: Option<&str>,
) -> ErrorLabel {
    if let Some(op) = err.as_operation_error() {
        let code = op
            .downcast_ref::<ListSessionsError>()
            .and_then(|e| e.code())
            .or_else(|| op.downcast_ref::<GetSessionError>().and_then(|e| e.code()))
            .or_else(|| op.downcast_ref::<GetPortalError>().and_then(|e| e.code()))
            .or_else(|| op.downcast_ref::<ListPortalsError>().and_then(|e| e.code()))
            .or_else(|| {
                op.downcast_ref::<ListAccountsError>()
                    .and_then(|e| e.code())
            })
            .or_else(|| {
                op.downcast_ref::<ListAccountsForParentError>()
                    .and_then(|e| e.code())
            })
            .or_else(|| {
                op.downcast_ref::<ListChildrenError>()
                    .and_then(|e| e.code())
            });
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
pub(super) fn normalize_error_type(raw: &str) -> &str {
    let code = raw.split(':').next().unwrap_or(raw);
    code.rsplit('#').next().unwrap_or(code)
}

/// The `error` label of a whole failed call (after the SDK's retries), in one place.
fn error_label<E: ProvideErrorMetadata>(
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

/// A whole failed call (after the SDK's retries) as the poller sees it: its operation (or
/// `AssumeRole`, when the credentials it needed could not be assumed), `error` label and message.
pub(super) fn api_error<E>(
    operation: &'static str,
    err: SdkError<E, aws_smithy_runtime_api::http::Response>,
) -> ApiError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    match credentials_failure(&err) {
        Some(f @ CredentialsFailure::AssumeRole(failed)) => {
            return ApiError {
                operation: ASSUME_ROLE,
                code: failed.label,
                message: f.message(),
            };
        }
        Some(f @ CredentialsFailure::Chain(_)) => {
            return ApiError {
                operation,
                code: ErrorLabel::Credentials,
                message: f.message(),
            };
        }
        None => {}
    }
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
    fn retry_after_is_parsed_and_capped() {
        use std::time::Duration;
        assert_eq!(retry_after(Some("3")), Some(Duration::from_secs(3)));
        assert_eq!(retry_after(Some(" 0.5 ")), Some(Duration::from_millis(500)));
        assert_eq!(retry_after(Some("3600")), Some(MAX_RETRY_AFTER));
        assert_eq!(retry_after(Some("-1")), None);
        assert_eq!(retry_after(Some("Wed, 21 Oct 2015 07:28:00 GMT")), None);
        assert_eq!(retry_after(None), None);
    }
}
