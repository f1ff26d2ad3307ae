//! STS `AssumeRole` over the awsQuery protocol.
//!
//! STS requests are `POST /` with a form body
//! (`Action=AssumeRole&Version=2011-06-15&RoleArn=...&RoleSessionName=...&ExternalId=...`), as the
//! SDKs send them when the STS endpoint is the simulator (the base `endpoint_url`). Answers use
//! the real XML shapes: `<AssumeRoleResponse>` with `Credentials` and `AssumedRoleUser`, and
//! `<ErrorResponse><Error><Type>Sender</Type><Code>AccessDenied</Code>...` with status 403.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::time::Duration;

use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::{Method, Request, StatusCode};

use crate::access::{AssumeRoleCall, AuthError, Caller, Issued, credential_scope, role_parts};
use crate::api::{Resp, response};
use crate::locks::read;
use crate::operation::ASSUME_ROLE;
use crate::organization::AccountState;
use crate::state::SimState;

/// Largest STS request body read (real requests are well under 1 KiB).
const MAX_BODY: usize = 64 * 1024;

/// Default `DurationSeconds` (STS: 900 .. 43200, default 3600).
const DEFAULT_DURATION_SECS: u64 = 3600;

/// Whether a request is for STS rather than WorkSpaces Web (awsQuery: `POST /`).
pub(crate) fn is_sts(method: &Method, path: &str) -> bool {
    method == Method::POST && path == "/"
}

/// Escapes text for an XML element.
fn xml_text(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

/// An awsQuery error: `<ErrorResponse><Error><Type>Sender</Type><Code>...`.
#[derive(Debug)]
struct StsError {
    status: StatusCode,
    code: String,
    message: String,
}

impl StsError {
    fn new(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        Self {
            status,
            code: code.to_string(),
            message: message.into(),
        }
    }

    /// Credentials refused before anything else, as STS words it.
    fn auth(error: AuthError) -> Self {
        Self::new(StatusCode::FORBIDDEN, error.query_code(), error.message())
    }

    /// An injected STS error `code` with its usual status.
    fn injected(code: &str) -> Self {
        let (status, message) = match code {
            "Throttling" => (StatusCode::BAD_REQUEST, "Rate exceeded".to_string()),
            "RegionDisabledException" => (
                StatusCode::FORBIDDEN,
                "STS is not activated in this region for this account".to_string(),
            ),
            "InvalidClientTokenId" | "ExpiredToken" => {
                return Self::auth(if code == "ExpiredToken" {
                    AuthError::Expired
                } else {
                    AuthError::Unrecognized
                });
            }
            "InternalFailure" => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "An internal error occurred".to_string(),
            ),
            "ServiceUnavailable" => (
                StatusCode::SERVICE_UNAVAILABLE,
                "Service unavailable".to_string(),
            ),
            other => (StatusCode::BAD_REQUEST, format!("Injected {other}")),
        };
        Self::new(status, code, message)
    }

    fn into_response(self, request_id: &str) -> Resp {
        let kind = if self.status.is_server_error() {
            "Receiver"
        } else {
            "Sender"
        };
        let body = format!(
            "<ErrorResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">\n  <Error>\n    <Type>{kind}</Type>\n    <Code>{}</Code>\n    <Message>{}</Message>\n  </Error>\n  <RequestId>{request_id}</RequestId>\n</ErrorResponse>\n",
            xml_text(&self.code),
            xml_text(&self.message)
        );
        response(self.status, "text/xml", body, request_id)
    }
}

/// A validated `AssumeRole` request.
#[derive(Debug)]
struct AssumeRoleRequest {
    call: AssumeRoleCall,
    duration_secs: u64,
}

/// Validates the form of an `AssumeRole` request signed by `signer`.
fn parse(
    form: &HashMap<String, String>,
    signer: Option<(String, Option<String>)>,
) -> Result<AssumeRoleRequest, StsError> {
    let action = form.get("Action").map(String::as_str).unwrap_or("");
    if action != ASSUME_ROLE {
        return Err(StsError::new(
            StatusCode::BAD_REQUEST,
            "InvalidAction",
            format!("Could not find operation {action} for version 2011-06-15"),
        ));
    }
    if form.get("Version").map(String::as_str) != Some("2011-06-15") {
        return Err(StsError::new(
            StatusCode::BAD_REQUEST,
            "InvalidAction",
            "Could not find operation AssumeRole for the requested version",
        ));
    }
    let Some((caller, region)) = signer else {
        return Err(StsError::new(
            StatusCode::FORBIDDEN,
            "MissingAuthenticationToken",
            "Request is missing Authentication Token",
        ));
    };
    let (Some(role_arn), Some(session_name)) = (form.get("RoleArn"), form.get("RoleSessionName"))
    else {
        return Err(StsError::new(
            StatusCode::BAD_REQUEST,
            "MissingParameter",
            "The request must contain the parameters RoleArn and RoleSessionName",
        ));
    };
    let duration_secs = match form.get("DurationSeconds").map(|d| d.parse::<u64>()) {
        None => DEFAULT_DURATION_SECS,
        Some(Ok(d)) if (900..=43_200).contains(&d) => d,
        Some(_) => {
            return Err(StsError::new(
                StatusCode::BAD_REQUEST,
                "ValidationError",
                "1 validation error detected: Value at 'durationSeconds' failed to satisfy constraint: Member must have value between 900 and 43200",
            ));
        }
    };
    Ok(AssumeRoleRequest {
        call: AssumeRoleCall {
            role_arn: role_arn.clone(),
            external_id: form.get("ExternalId").cloned(),
            session_name: session_name.clone(),
            caller_key_id: Some(caller),
            region,
            issued_key_id: None,
        },
        duration_secs,
    })
}

/// The `<AssumeRoleResponse>` of credentials issued for `role_arn`.
fn assumed(req: &AssumeRoleRequest, issued: &Issued, request_id: &str) -> Resp {
    let (account, role_name) = role_parts(&req.call.role_arn).unwrap_or_default();
    // On the credential clock (the system clock unless a test set another): SDKs compare it
    // with their own time source.
    let expiration = aws_smithy_types::DateTime::from_millis(issued.expires_ms)
        .fmt(aws_smithy_types::date_time::Format::DateTime)
        .unwrap_or_default();
    let mut body = String::with_capacity(1024);
    let _ = write!(
        body,
        "<AssumeRoleResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">\n  <AssumeRoleResult>\n    <SourceIdentity></SourceIdentity>\n    <AssumedRoleUser>\n      <AssumedRoleId>{role_id}:{session}</AssumedRoleId>\n      <Arn>arn:aws:sts::{account}:assumed-role/{role_name}/{session}</Arn>\n    </AssumedRoleUser>\n    <Credentials>\n      <AccessKeyId>{key_id}</AccessKeyId>\n      <SecretAccessKey>{secret}</SecretAccessKey>\n      <SessionToken>{token}</SessionToken>\n      <Expiration>{expiration}</Expiration>\n    </Credentials>\n    <PackedPolicySize>6</PackedPolicySize>\n  </AssumeRoleResult>\n  <ResponseMetadata>\n    <RequestId>{request_id}</RequestId>\n  </ResponseMetadata>\n</AssumeRoleResponse>\n",
        role_id = issued.role_id,
        key_id = issued.key_id,
        secret = issued.secret,
        token = issued.token,
        session = xml_text(&req.call.session_name),
        role_name = xml_text(role_name),
    );
    response(StatusCode::OK, "text/xml", body, request_id)
}

/// Whether the organization lets callers assume `role_arn` of `account`: its management role,
/// or the member role of an active account (with the external id it requires).
fn organization_allows(
    state: &SimState,
    role_arn: &str,
    account: &str,
    external_id: Option<&str>,
) -> bool {
    let org = read(&state.organization);
    let Some(org) = org.as_ref() else {
        return false;
    };
    if org.management_role.as_deref() == Some(role_arn) {
        return true;
    }
    org.member_role_arn(account).as_deref() == Some(role_arn)
        && org
            .account(account)
            .is_some_and(|a| a.state == AccountState::Active)
        && org
            .member_external_id
            .as_deref()
            .is_none_or(|required| external_id == Some(required))
}

/// Decides an `AssumeRole` call: an error set for the role's account, else allowed roles
/// ([`Simulator::allow_role`](crate::Simulator::allow_role), then the organization's) or `AccessDenied`.
fn decide(state: &SimState, caller: &Caller, call: &AssumeRoleCall) -> Result<(), StsError> {
    let denied = || {
        StsError::new(
            StatusCode::FORBIDDEN,
            "AccessDenied",
            format!(
                "User: {} is not authorized to perform: sts:AssumeRole on resource: {}",
                caller.principal("123456789012"),
                call.role_arn
            ),
        )
    };
    let Some((account, _)) = role_parts(&call.role_arn) else {
        return Err(denied());
    };
    let (fault, explicit) = {
        let st = state.access.state();
        (
            st.assume_errors.get(account).cloned(),
            st.roles.get(&call.role_arn).cloned(),
        )
    };
    match fault.as_deref() {
        Some("AccessDenied") => return Err(denied()),
        Some(code) => return Err(StsError::injected(code)),
        None => {}
    }
    let allowed = match explicit {
        Some(required) => required.is_none_or(|r| call.external_id.as_ref() == Some(&r)),
        None => organization_allows(state, &call.role_arn, account, call.external_id.as_deref()),
    };
    if allowed { Ok(()) } else { Err(denied()) }
}

/// Serves one STS request (`POST /`).
pub(crate) async fn serve(state: &SimState, req: Request<Incoming>) -> Resp {
    let request_id = state.traffic.request_id(state.seed);
    let signer = credential_scope(req.headers());
    let auth = state.access.authenticate(req.headers());
    let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => {
            return StsError::new(
                StatusCode::BAD_REQUEST,
                "InvalidParameterValue",
                "The request body is too large or could not be read.",
            )
            .into_response(&request_id);
        }
    };
    let form: HashMap<String, String> = form_urlencoded::parse(&body).into_owned().collect();
    let action = form.get("Action").map(String::as_str).unwrap_or("");
    state.traffic.count("", action);
    let answer = parse(&form, signer).and_then(|req| {
        let caller = auth.map_err(StsError::auth)?;
        match decide(state, &caller, &req.call) {
            Ok(()) => {
                let duration = Duration::from_secs(req.duration_secs);
                let issued = state.access.issue(state.seed, req.call.clone(), duration);
                Ok(assumed(&req, &issued, &request_id))
            }
            Err(e) => {
                state.access.refuse(req.call);
                Err(e)
            }
        }
    });
    answer.unwrap_or_else(|e| e.into_response(&request_id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xml_text_is_escaped() {
        assert_eq!(xml_text("a<b>&\"c'"), "a&lt;b&gt;&amp;&quot;c&apos;");
    }
}
