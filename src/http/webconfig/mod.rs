//! `--web.config.file`: the exporter-toolkit web configuration (TLS, basic auth, extra headers).
//!
//! The file is YAML, read strictly: an unknown key is an error that names it. Accepted keys:
//!
//! ```yaml
//! tls_server_config:
//!   cert_file: server.crt         # or `cert:` with the PEM inline
//!   key_file: server.key          # or `key:` with the PEM inline
//!   client_ca_file: ca.crt        # or `client_ca:` with the PEM inline
//!   client_auth_type: RequireAndVerifyClientCert  # NoClientCert (default), VerifyClientCertIfGiven
//!   min_version: TLS12            # TLS12 (default) or TLS13
//!   max_version: TLS13            # TLS12 or TLS13 (default)
//!   prefer_server_cipher_suites: true
//! http_server_config:
//!   http2: true                   # accepted and ignored: the server speaks HTTP/1.1 only
//!   headers:
//!     Strict-Transport-Security: max-age=31536000
//! basic_auth_users:
//!   prometheus: $2y$10$...        # bcrypt hashes
//! ```
//!
//! Differences from the Go toolkit, each rejected with a message rather than ignored:
//! `client_auth_type` `RequestClientCert` and `RequireAnyClientCert` (rustls verifies every
//! client certificate it asks for), `min_version`/`max_version` `TLS10`/`TLS11` (rustls speaks
//! TLS 1.2 and 1.3 only), `cipher_suites`, `curve_preferences`, `client_allowed_sans` and
//! `rate_limit`. As in the toolkit, relative file paths are relative to the web config file's
//! directory, TLS is on when any of `cert_file`, `cert`, `key_file`, `key`, `client_ca_file`,
//! `client_ca` or `client_auth_type` is set, and `http_server_config.headers` may only set
//! `Strict-Transport-Security`, `X-Content-Type-Options` (`nosniff`), `X-Frame-Options`
//! (`deny` or `sameorigin`), `X-XSS-Protection` and `Content-Security-Policy`.
//!
//! Certificates and keys are read once, when the file is loaded (at startup and on reload),
//! not at every handshake as the Go toolkit does: a renewed certificate takes effect on reload.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use hyper::header::{HeaderName, HeaderValue};
use serde::Deserialize;

pub(super) mod auth;
mod tls;

use self::auth::BasicAuth;
use self::tls::Tls;

/// Why a web config file was rejected: the file, the key at fault and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebConfigError {
    /// The web config file as given.
    pub file: PathBuf,
    /// Key path such as `tls_server_config.cert_file`; empty for the file as a whole.
    pub key: String,
    /// What is wrong, in words.
    pub message: String,
}

impl fmt::Display for WebConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "web config {}:", self.file.display())?;
        if !self.key.is_empty() {
            write!(f, " {}:", self.key)?;
        }
        write!(f, " {}", self.message)
    }
}

impl std::error::Error for WebConfigError {}

/// A problem at one key, before the file name is attached.
#[derive(Debug)]
pub(super) struct Invalid {
    /// Key path.
    pub(super) key: String,
    /// What is wrong.
    pub(super) message: String,
}

impl Invalid {
    /// A problem at `key`.
    pub(super) fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            message: message.into(),
        }
    }
}

/// What a web config file configures, ready to serve; [`WebState::default`] is plain HTTP
/// without authentication.
#[derive(Default)]
pub struct WebState {
    /// TLS, when configured.
    pub(super) tls: Option<Tls>,
    /// Basic auth, when `basic_auth_users` is set and not empty.
    pub(super) auth: Option<Arc<BasicAuth>>,
    /// `http_server_config.headers`, added to every response that does not set them itself.
    pub(super) headers: Vec<(HeaderName, HeaderValue)>,
}

impl fmt::Debug for WebState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never prints hashes or keys.
        f.debug_struct("WebState")
            .field("tls", &self.tls_enabled())
            .field(
                "basic_auth_users",
                &self.auth.as_ref().map(|a| a.user_count()),
            )
            .field("headers", &self.headers)
            .finish()
    }
}

impl WebState {
    /// Whether connections are served over TLS.
    pub fn tls_enabled(&self) -> bool {
        self.tls.is_some()
    }

    /// Whether requests (other than `/-/healthy`) need basic-auth credentials.
    pub fn basic_auth_enabled(&self) -> bool {
        self.auth.is_some()
    }

    /// Names of the configured basic-auth users, sorted.
    pub fn basic_auth_users(&self) -> Vec<String> {
        self.auth.as_ref().map(|a| a.users()).unwrap_or_default()
    }

    /// The extra response headers, in the file's (sorted) order.
    pub fn extra_headers(&self) -> &[(HeaderName, HeaderValue)] {
        &self.headers
    }
}

/// Reads, checks and prepares a web config file (certificates and keys are read too).
///
/// Synchronous file I/O: on reload, call it from the blocking pool.
pub fn load_web_config(path: &Path) -> Result<WebState, WebConfigError> {
    let fail = |key: &str, message: String| WebConfigError {
        file: path.to_path_buf(),
        key: key.to_string(),
        message,
    };
    let text = std::fs::read_to_string(path).map_err(|e| fail("", format!("cannot read: {e}")))?;
    let dir = path.parent().unwrap_or_else(|| Path::new(""));
    parse_web_config(&text, dir).map_err(|e| fail(&e.key, e.message))
}

/// Parses web config text; relative paths in it are resolved against `dir`.
fn parse_web_config(text: &str, dir: &Path) -> Result<WebState, Invalid> {
    let de = serde_norway::Deserializer::from_str(text);
    let raw: Option<RawWebConfig> = serde_path_to_error::deserialize(de).map_err(|e| {
        let key = e.path().to_string();
        let key = if key == "." { String::new() } else { key };
        Invalid::new(key, e.into_inner().to_string())
    })?;
    let raw = raw.unwrap_or_default();
    if raw.rate_limit.is_some() {
        return Err(Invalid::new(
            "rate_limit",
            "not supported by this exporter (use --web.max-connections to bound the load)",
        ));
    }
    let tls = match raw.tls_server_config {
        Some(t) => tls::build(t, dir)?,
        None => None,
    };
    let auth = match raw.basic_auth_users {
        Some(users) if !users.is_empty() => Some(Arc::new(BasicAuth::new(users)?)),
        _ => None,
    };
    let headers = match raw.http_server_config.and_then(|h| h.headers) {
        Some(headers) => validate_headers(headers)?,
        None => Vec::new(),
    };
    Ok(WebState { tls, auth, headers })
}

/// Headers the toolkit lets a web config set, with their allowed values (empty: any value).
const ALLOWED_HEADERS: [(&str, &[&str]); 5] = [
    ("Strict-Transport-Security", &[]),
    ("X-Content-Type-Options", &["nosniff"]),
    ("X-Frame-Options", &["deny", "sameorigin"]),
    ("X-XSS-Protection", &[]),
    ("Content-Security-Policy", &[]),
];

/// Checks `http_server_config.headers` against the toolkit's list and HTTP's syntax.
fn validate_headers(
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

/// Resolves a path from the web config against the file's directory (absolute paths stay).
pub(super) fn resolve(dir: &Path, path: &str) -> PathBuf {
    dir.join(path)
}

/// The file's top level.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWebConfig {
    #[serde(default)]
    tls_server_config: Option<RawTls>,
    #[serde(default)]
    http_server_config: Option<RawHttp>,
    #[serde(default)]
    basic_auth_users: Option<BTreeMap<String, String>>,
    /// Known to the toolkit, not supported here: rejected with a message.
    #[serde(default)]
    rate_limit: Option<serde_norway::Value>,
}

/// `tls_server_config`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTls {
    pub(super) cert_file: Option<String>,
    pub(super) cert: Option<String>,
    pub(super) key_file: Option<String>,
    pub(super) key: Option<String>,
    pub(super) client_ca_file: Option<String>,
    pub(super) client_ca: Option<String>,
    pub(super) client_auth_type: Option<String>,
    pub(super) min_version: Option<String>,
    pub(super) max_version: Option<String>,
    pub(super) prefer_server_cipher_suites: Option<bool>,
    /// Known to the toolkit, not supported here: rejected with a message.
    pub(super) cipher_suites: Option<serde_norway::Value>,
    /// Known to the toolkit, not supported here: rejected with a message.
    pub(super) curve_preferences: Option<serde_norway::Value>,
    /// Known to the toolkit, not supported here: rejected with a message.
    pub(super) client_allowed_sans: Option<serde_norway::Value>,
}

/// `http_server_config`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHttp {
    /// Accepted for compatibility; the server speaks HTTP/1.1 only.
    #[serde(default)]
    #[allow(dead_code)]
    http2: Option<bool>,
    #[serde(default)]
    headers: Option<BTreeMap<String, String>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<WebState, Invalid> {
        parse_web_config(text, Path::new("/nonexistent"))
    }

    #[test]
    fn an_empty_file_is_plain_http() {
        for text in ["", "# nothing\n", "{}", "tls_server_config: {}\n"] {
            let state = parse(text).unwrap_or_else(|e| panic!("{text:?}: {e:?}"));
            assert!(
                !state.tls_enabled() && !state.basic_auth_enabled(),
                "{text:?}"
            );
        }
    }

    #[test]
    fn unknown_keys_are_named() {
        let e = parse("tls_server_config:\n  cert_fil: x\n").expect_err("rejected");
        assert_eq!(e.key, "tls_server_config.cert_fil");
        assert!(
            e.message.contains("unknown field `cert_fil`"),
            "{}",
            e.message
        );
        assert!(e.message.contains("line 2"), "{}", e.message);
        let e = parse("basic_auth: {}\n").expect_err("rejected");
        assert!(e.message.contains("basic_auth"), "{}", e.message);
    }

    #[test]
    fn headers_follow_the_toolkit_list() {
        let ok = parse("http_server_config:\n  headers:\n    X-Frame-Options: deny\n    Strict-Transport-Security: max-age=60\n")
            .expect("valid");
        let names: Vec<&str> = ok.headers.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["strict-transport-security", "x-frame-options"]);
        let e = parse("http_server_config:\n  headers:\n    X-Frame-Options: allow\n")
            .expect_err("bad value");
        assert_eq!(e.key, "http_server_config.headers.X-Frame-Options");
        let e =
            parse("http_server_config:\n  headers:\n    Server: me\n").expect_err("not allowed");
        assert_eq!(e.key, "http_server_config.headers.Server");
        let e = parse("http_server_config:\n  headers:\n    Content-Security-Policy: \"a\\nb\"\n")
            .expect_err("control character");
        assert!(e.message.contains("invalid header value"), "{}", e.message);
    }

    #[test]
    fn unsupported_toolkit_options_are_rejected_by_name() {
        let e = parse("rate_limit:\n  burst: 1\n").expect_err("rejected");
        assert_eq!(e.key, "rate_limit");
    }

    #[test]
    fn relative_paths_are_relative_to_the_file() {
        assert_eq!(
            resolve(Path::new("/etc/x"), "tls/a.pem"),
            PathBuf::from("/etc/x/tls/a.pem")
        );
        assert_eq!(
            resolve(Path::new("/etc/x"), "/a.pem"),
            PathBuf::from("/a.pem")
        );
        assert_eq!(resolve(Path::new(""), "a.pem"), PathBuf::from("a.pem"));
    }
}
