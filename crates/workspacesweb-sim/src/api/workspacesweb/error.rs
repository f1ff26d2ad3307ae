//! WorkSpaces Web's error shapes (restJson1): `X-Amzn-ErrorType`, a JSON body with `message`
//! and the error's members, and the HTTP status of each code.

use std::fmt::Write as _;

use hyper::StatusCode;
use hyper::header::HeaderValue;

use crate::access::AuthError;
use crate::api::json::json_str;
use crate::api::{Resp, response};

/// Suffix real Coral services append to `X-Amzn-ErrorType` (clients strip everything after `:`).
const ERROR_TYPE_SUFFIX: &str = ":http://internal.amazon.com/coral/com.amazonaws.workspacesweb/";

/// A wire error: code, message and extra body members (already JSON-encoded `"key":value` pairs).
#[derive(Debug)]
pub(crate) struct WireError {
    /// The AWS error code (`ValidationException`...).
    pub(crate) code: String,
    /// `message`.
    pub(crate) message: String,
    /// Further members: name and JSON-encoded value.
    pub(crate) members: Vec<(String, String)>,
    /// `Retry-After` seconds.
    pub(crate) retry_after: Option<u32>,
}

impl WireError {
    /// An error with `code` and `message`.
    pub(crate) fn new(code: &str, message: impl Into<String>) -> Self {
        Self {
            code: code.to_string(),
            message: message.into(),
            members: Vec::new(),
            retry_after: None,
        }
    }

    /// A `ValidationException` about `field`.
    pub(crate) fn validation(field: &str, message: impl Into<String>) -> Self {
        let message = message.into();
        let mut e = Self::new("ValidationException", message.clone());
        e.members
            .push(("reason".into(), json_str("fieldValidationFailed")));
        e.members.push((
            "fieldList".into(),
            format!(
                "[{{\"name\":{},\"message\":{}}}]",
                json_str(field),
                json_str(&message)
            ),
        ));
        e
    }

    /// A `ResourceNotFoundException` for the `kind` (`Portal`, `Session`) with this id.
    pub(crate) fn not_found(kind: &str, id: &str) -> Self {
        let mut e = Self::new(
            "ResourceNotFoundException",
            format!("{kind} not found: {id}"),
        );
        e.members.push(("resourceId".into(), json_str(id)));
        e.members.push(("resourceType".into(), json_str(kind)));
        e
    }

    /// The answer to credentials refused before anything else (the messages of AWS's common errors).
    pub(crate) fn auth(error: AuthError) -> Self {
        Self::new(error.code(), error.message())
    }

    /// An injected error with the usual message and members of its code.
    pub(crate) fn injected(code: &str, retry_after: u32) -> Self {
        let mut e = match code {
            "ThrottlingException" => {
                let mut e = Self::new(code, "Rate exceeded");
                e.members
                    .push(("serviceCode".into(), json_str("workspaces-web")));
                e
            }
            "AccessDeniedException" => Self::new(
                code,
                "User: arn:aws:sts::123456789012:assumed-role/exporter/sim is not authorized to perform this action",
            ),
            "InternalServerException" => Self::new(code, "Internal server error"),
            "ValidationException" => Self::validation("request", "Injected validation failure"),
            "ResourceNotFoundException" => Self::new(code, "Resource not found"),
            other => Self::new(other, format!("Injected {other}")),
        };
        if matches!(code, "ThrottlingException" | "InternalServerException") {
            e.retry_after = Some(retry_after);
        }
        e
    }

    /// The HTTP status of the error's code.
    fn status(&self) -> StatusCode {
        match self.code.as_str() {
            "ValidationException" | "SerializationException" => StatusCode::BAD_REQUEST,
            "AccessDeniedException"
            | "UnrecognizedClientException"
            | "ExpiredTokenException"
            | "MissingAuthenticationTokenException" => StatusCode::FORBIDDEN,
            "ResourceNotFoundException" | "UnknownOperationException" => StatusCode::NOT_FOUND,
            "MethodNotAllowed" => StatusCode::METHOD_NOT_ALLOWED,
            "ConflictException" => StatusCode::CONFLICT,
            "ThrottlingException" | "TooManyRequestsException" => StatusCode::TOO_MANY_REQUESTS,
            "InternalServerException" | "InternalFailure" => StatusCode::INTERNAL_SERVER_ERROR,
            "ServiceUnavailableException" | "ServiceUnavailable" => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::BAD_REQUEST,
        }
    }

    /// The HTTP answer.
    pub(crate) fn into_response(self, request_id: &str) -> Resp {
        let mut body = format!("{{\"message\":{}", json_str(&self.message));
        for (k, v) in &self.members {
            let _ = write!(body, ",{}:{}", json_str(k), v);
        }
        body.push('}');
        let mut resp = response(self.status(), "application/json", body, request_id);
        let h = resp.headers_mut();
        if let Ok(v) = HeaderValue::from_str(&format!("{}{}", self.code, ERROR_TYPE_SUFFIX)) {
            h.insert("x-amzn-errortype", v);
        }
        if let Some(secs) = self.retry_after {
            h.insert(hyper::header::RETRY_AFTER, HeaderValue::from(secs));
        }
        resp
    }
}
