//! Organizations' error shape (awsJson1.1): a JSON body with `__type`, `Message` and the error's
//! members. Organizations answers its client errors with HTTP 400 (its API reference lists 400
//! for `AccessDeniedException`, `AWSOrganizationsNotInUseException`,
//! `TooManyRequestsException`, `InvalidInputException`, `ParentNotFoundException`...).

use std::fmt::Write as _;

use hyper::StatusCode;

use crate::access::AuthError;
use crate::api::json::json_str;
use crate::api::{Resp, response};

/// The content type of awsJson1.1.
pub(crate) const JSON_11: &str = "application/x-amz-json-1.1";

/// An Organizations error.
#[derive(Debug)]
pub(crate) struct OrgError {
    /// `__type`.
    pub(crate) code: String,
    /// `Message`.
    pub(crate) message: String,
    /// Further members: name and JSON-encoded value.
    pub(crate) members: Vec<(String, String)>,
}

impl OrgError {
    /// An error with `code` and `message`.
    pub(crate) fn new(code: &str, message: impl Into<String>) -> Self {
        Self {
            code: code.to_string(),
            message: message.into(),
            members: Vec::new(),
        }
    }

    /// `InvalidInputException` with its `Reason` (`MAX_VALUE_EXCEEDED`, `INVALID_NEXT_TOKEN`...).
    pub(crate) fn invalid_input(reason: &str, message: impl Into<String>) -> Self {
        let mut e = Self::new("InvalidInputException", message);
        e.members.push(("Reason".into(), json_str(reason)));
        e
    }

    /// Credentials refused before anything else.
    pub(crate) fn auth(error: AuthError) -> Self {
        Self::new(error.code(), error.message())
    }

    /// An error `code` with its usual message (injected faults, refusals).
    pub(crate) fn usual(code: &str) -> Self {
        let message = match code {
            "AccessDeniedException" => "You don't have permissions to access this resource.",
            "AWSOrganizationsNotInUseException" => {
                "Your account is not a member of an organization."
            }
            "TooManyRequestsException" => {
                "AWS Organizations can't complete your request because too many requests were sent in too short a period of time. Try again later."
            }
            "ServiceException" => {
                "AWS Organizations can't complete your request because of an internal service error. Try again later."
            }
            "ConcurrentModificationException" => {
                "AWS Organizations can't complete your request because it conflicts with another attempt to modify the same entity. Try again later."
            }
            other => return Self::new(other, format!("Injected {other}")),
        };
        Self::new(code, message)
    }

    /// 500 for the service's own failures, 400 for everything else.
    fn status(&self) -> StatusCode {
        match self.code.as_str() {
            "ServiceException" | "InternalFailure" => StatusCode::INTERNAL_SERVER_ERROR,
            "ServiceUnavailable" => StatusCode::SERVICE_UNAVAILABLE,
            "UnknownOperationException" => StatusCode::NOT_FOUND,
            _ => StatusCode::BAD_REQUEST,
        }
    }

    /// The HTTP answer.
    pub(crate) fn into_response(self, request_id: &str) -> Resp {
        let mut body = format!(
            "{{\"__type\":{},\"Message\":{}",
            json_str(&self.code),
            json_str(&self.message)
        );
        for (k, v) in &self.members {
            let _ = write!(body, ",{}:{}", json_str(k), v);
        }
        body.push('}');
        response(self.status(), JSON_11, body, request_id)
    }
}
