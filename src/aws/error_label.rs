//! The `error` label of `workspacesweb_api_request_errors_total`: one type, one spelling of each
//! value, and a bounded set of values.
//!
//! A hostile or broken endpoint can answer with any error code; a label taken from it verbatim
//! would let it create any number of series. Only the codes of the service model, of STS and the
//! standard codes of AWS's SDKs are kept; anything else is `other`.

use std::fmt;

/// The `error` label value of a failed request or poll.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ErrorLabel {
    /// An AWS error code from [`KNOWN_CODES`].
    Aws(&'static str),
    /// A request or poll that ran out of time.
    Timeout,
    /// The connection failed.
    Dispatch,
    /// The request could not be signed: no credentials could be loaded (the provider chain
    /// failed, timed out, or found none). Nothing was sent.
    Credentials,
    /// Anything else: a malformed response, a broken paginator, an unknown error code.
    Other,
}

/// The error codes kept as label values: those of the WorkSpaces Web service model, of STS
/// (`AssumeRole`), and the standard ones AWS's SDKs know (throttling, transient, auth).
pub const KNOWN_CODES: &[&str] = &[
    // WorkSpaces Web (service model 2020-07-08).
    "AccessDeniedException",
    "ConflictException",
    "InternalServerException",
    "ResourceNotFoundException",
    "ServiceQuotaExceededException",
    "ThrottlingException",
    "TooManyTagsException",
    "ValidationException",
    // STS AssumeRole.
    "AccessDenied",
    "ExpiredTokenException",
    "IDPCommunicationError",
    "IDPRejectedClaim",
    "InvalidIdentityToken",
    "MalformedPolicyDocument",
    "PackedPolicyTooLarge",
    "RegionDisabledException",
    // Standard codes (throttling, transient and authentication errors of any AWS service).
    "Throttling",
    "ThrottledException",
    "RequestThrottled",
    "RequestThrottledException",
    "RequestLimitExceeded",
    "TooManyRequestsException",
    "ProvisionedThroughputExceededException",
    "TransactionInProgressException",
    "BandwidthLimitExceeded",
    "LimitExceededException",
    "SlowDown",
    "PriorRequestNotComplete",
    "EC2ThrottledException",
    "InternalError",
    "InternalFailure",
    "ServiceUnavailable",
    "ServiceUnavailableException",
    "RequestTimeout",
    "RequestTimeoutException",
    "ExpiredToken",
    "IncompleteSignature",
    "InvalidClientTokenId",
    "InvalidSignatureException",
    "MissingAuthenticationToken",
    "SignatureDoesNotMatch",
    "UnrecognizedClientException",
    "OptInRequired",
];

impl ErrorLabel {
    /// `AccessDeniedException`.
    pub const ACCESS_DENIED: ErrorLabel = ErrorLabel::Aws("AccessDeniedException");
    /// `ResourceNotFoundException`.
    pub const NOT_FOUND: ErrorLabel = ErrorLabel::Aws("ResourceNotFoundException");
    /// `ValidationException`.
    pub const VALIDATION: ErrorLabel = ErrorLabel::Aws("ValidationException");

    /// The label of an AWS error code: itself when known, else [`ErrorLabel::Other`].
    pub fn from_code(code: &str) -> Self {
        KNOWN_CODES
            .iter()
            .find(|k| **k == code)
            .map_or(ErrorLabel::Other, |k| ErrorLabel::Aws(k))
    }

    /// The label value.
    pub fn as_str(&self) -> &'static str {
        match self {
            ErrorLabel::Aws(code) => code,
            ErrorLabel::Timeout => "timeout",
            ErrorLabel::Dispatch => "dispatch",
            ErrorLabel::Credentials => "credentials",
            ErrorLabel::Other => "other",
        }
    }

    /// Whether a poll that failed with this label may resume where it stopped: throttling,
    /// server errors, timeouts and connection failures are transient.
    pub fn is_transient(&self) -> bool {
        match self {
            ErrorLabel::Timeout | ErrorLabel::Dispatch => true,
            ErrorLabel::Credentials | ErrorLabel::Other => false,
            ErrorLabel::Aws(code) => matches!(
                *code,
                "ThrottlingException"
                    | "Throttling"
                    | "ThrottledException"
                    | "RequestThrottled"
                    | "RequestThrottledException"
                    | "RequestLimitExceeded"
                    | "TooManyRequestsException"
                    | "SlowDown"
                    | "InternalServerException"
                    | "InternalError"
                    | "InternalFailure"
                    | "ServiceUnavailable"
                    | "ServiceUnavailableException"
                    | "RequestTimeout"
                    | "RequestTimeoutException"
            ),
        }
    }
}

impl fmt::Display for ErrorLabel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq<&str> for ErrorLabel {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_codes_are_kept_and_anything_else_is_other() {
        assert_eq!(
            ErrorLabel::from_code("ThrottlingException").as_str(),
            "ThrottlingException"
        );
        assert_eq!(
            ErrorLabel::from_code("AccessDenied").as_str(),
            "AccessDenied"
        );
        for invented in [
            "",
            "bad code\n",
            "Invented1",
            "ThrottlingExceptionX",
            "throttlingexception",
        ] {
            assert_eq!(
                ErrorLabel::from_code(invented),
                ErrorLabel::Other,
                "{invented:?}"
            );
        }
        assert_eq!(ErrorLabel::Timeout.to_string(), "timeout");
        assert_eq!(ErrorLabel::Dispatch.to_string(), "dispatch");
        assert_eq!(ErrorLabel::Credentials.to_string(), "credentials");
        assert_eq!(ErrorLabel::Other, "other");
    }

    #[test]
    fn every_known_code_is_a_valid_label_value_of_bounded_length() {
        for code in KNOWN_CODES {
            assert!(code.len() <= 64 && code.chars().all(|c| c.is_ascii_alphanumeric()));
            assert_eq!(ErrorLabel::from_code(code), ErrorLabel::Aws(code));
        }
    }

    #[test]
    fn transient_errors_resume() {
        assert!(ErrorLabel::from_code("ThrottlingException").is_transient());
        assert!(ErrorLabel::from_code("InternalServerException").is_transient());
        assert!(ErrorLabel::Timeout.is_transient());
        assert!(ErrorLabel::Dispatch.is_transient());
        assert!(!ErrorLabel::ACCESS_DENIED.is_transient());
        assert!(!ErrorLabel::Other.is_transient());
        assert!(!ErrorLabel::Credentials.is_transient());
    }
}
