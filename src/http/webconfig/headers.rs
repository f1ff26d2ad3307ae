//! `http_server_config.headers`: the response headers the toolkit lets a web config set.

use std::collections::BTreeMap;

use hyper::header::{HeaderName, HeaderValue};

use super::Invalid;

/// Headers the toolkit lets a web config set, with their allowed values (empty: any value).
const ALLOWED_HEADERS: [(&str, &[&str]); 5] = [
    ("Strict-Transport-Security", &[]),
    ("X-Content-Type-Options", &["nosniff"]),
    ("X-Frame-Options", &["deny", "sameorigin"]),
    ("X-XSS-Protection", &[]),
    ("Content-Security-Policy", &[]),
];

/// Checks `http_server_config.headers` against the toolkit's list and HTTP's syntax.
pub(super) fn validate_headers(
    headers: BTreeMap<String, String>,
) -> Result<Vec<(HeaderName, HeaderValue)>, Invalid> {
    let mut out = Vec::with_capacity(headers.len());
    for (name, value) in headers {
        let key = format!("http_server_config.headers.{name}");
        // Header names are case-insensitive in HTTP; the Go toolkit matches them exactly.
        let Some((_, allowed)) = ALLOWED_HEADERS
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(&name))
        else {
            let names: Vec<&str> = ALLOWED_HEADERS.iter().map(|(n, _)| *n).collect();
            return Err(Invalid::new(
                key,
                format!(
                    "this header cannot be configured; allowed: {}",
                    names.join(", ")
                ),
            ));
        };
        if !allowed.is_empty() && !allowed.contains(&value.as_str()) {
            return Err(Invalid::new(
                key,
                format!("invalid value {value:?}; expected one of {allowed:?}"),
            ));
        }
        let header_name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|e| Invalid::new(key.clone(), format!("invalid header name: {e}")))?;
        let header_value = HeaderValue::from_str(&value).map_err(|_| {
            Invalid::new(
                key,
                "invalid header value (control characters or non-ASCII)",
            )
        })?;
        out.push((header_name, header_value));
    }
    Ok(out)
}
