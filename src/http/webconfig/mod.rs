//! `--web.config.file`: the exporter-toolkit web configuration (TLS, basic auth, extra headers,
//! rate limit).
//!
//! The file is YAML, read strictly: an unknown key is an error that names it. Every key of the
//! toolkit's documented format is accepted:
//!
//! ```yaml
//! tls_server_config:
//!   cert_file: server.crt         # or `cert:` with the PEM inline
//!   key_file: server.key          # or `key:` with the PEM inline
//!   client_ca_file: ca.crt        # or `client_ca:` with the PEM inline
//!   client_auth_type: RequireAndVerifyClientCert  # any of the five Go values, see `client_auth`
//!   client_allowed_sans: [prometheus.example.com] # exact SAN match (DNS, e-mail, IP, URI)
//!   min_version: TLS12            # TLS12 (default) or TLS13
//!   max_version: TLS13            # TLS12 or TLS13 (default)
//!   cipher_suites: [TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256]  # Go names, see `suites`
//!   curve_preferences: [X25519, CurveP256]                   # Go names, see `suites`
//!   prefer_server_cipher_suites: true   # accepted; no effect (a warning says so)
//! http_server_config:
//!   http2: false                  # accepted; the server speaks HTTP/1.1 only
//!   headers:
//!     Strict-Transport-Security: max-age=31536000
//! basic_auth_users:
//!   prometheus: $2y$10$...        # bcrypt hashes
//! rate_limit:
//!   interval: 1s                  # a token comes back every interval
//!   burst: 10                     # tokens at most
//! ```
//!
//! Where rustls cannot do what Go's crypto/tls does, the value is refused with a message that
//! says so, naming the key and the value: `min_version`/`max_version` `TLS10`/`TLS11`, the
//! CBC and RSA-key-exchange cipher suites, `CurveP521`. Other differences from the toolkit:
//! bcrypt costs above 14 are refused (`auth`); `rate_limit.burst` must be at least 1 and
//! `/-/healthy` is not rate limited (`rate_limit`). As in the toolkit, relative file paths are
//! relative to the web config file's directory, TLS is on when any of `cert_file`, `cert`,
//! `key_file`, `key`, `client_ca_file`, `client_ca` or `client_auth_type` is set, and
//! `http_server_config.headers` may only set the toolkit's five headers (`headers`).
//!
//! Certificates and keys are read once, when the file is loaded (at startup and on reload),
//! not at every handshake as the Go toolkit does: a renewed certificate takes effect on reload.
//! A reload may not remove TLS, basic auth or a requirement of verified client certificates
//! that is in force (`reload`).
//!
//! Errors name the web config file and the key. Their [`WebConfigError::public_message`] (what
//! `POST /-/reload` answers) names no other path (a certificate, key or CA file is named by its
//! key), and no error echoes a value of the file (a misplaced password or key stays out of
//! logs and responses).

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use hyper::header::{HeaderName, HeaderValue};
use serde::Deserialize;
use sha2::{Digest, Sha256};

pub(super) mod auth;
mod bcrypt_slot;
mod client_auth;
mod headers;
pub(super) mod rate_limit;
mod reload;
mod suites;
mod tls;

use self::auth::BasicAuth;
use self::rate_limit::{RateLimit, RawRateLimit};
pub use self::reload::WebChange;
pub(super) use self::reload::{carry_over, lowered};
use self::tls::{RawTls, Tls};

/// Why a web config file was rejected: the file, the key at fault and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebConfigError {
    /// The web config file as given.
    pub file: PathBuf,
    /// Key path such as `tls_server_config.cert_file`; empty for the file as a whole.
    pub key: String,
    /// What is wrong, in words that name no path but the web config's and no secret.
    pub message: String,
    /// The same with the path of the certificate, key or CA file at fault, for logs and the
    /// command line; `None` when `message` says it all.
    pub detail: Option<String>,
}

impl WebConfigError {
    /// The error as an HTTP response may show it: no path other than the web config file's.
    pub fn public_message(&self) -> String {
        self.render(&self.message)
    }

    fn render(&self, message: &str) -> String {
        let mut text = format!("web config {}:", self.file.display());
        if !self.key.is_empty() {
            text.push_str(&format!(" {}:", self.key));
        }
        text.push(' ');
        text.push_str(message);
        text
    }
}

impl fmt::Display for WebConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render(self.detail.as_deref().unwrap_or(&self.message)))
    }
}

impl std::error::Error for WebConfigError {}

/// A problem at one key, before the file name is attached.
#[derive(Debug)]
pub(super) struct Invalid {
    /// Key path.
    pub(super) key: String,
    /// What is wrong (no path, no secret).
    pub(super) message: String,
    /// The message with the path of the file at fault.
    pub(super) detail: Option<String>,
}

impl Invalid {
    /// A problem at `key`.
    pub(super) fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            message: message.into(),
            detail: None,
        }
    }

    /// A problem at `key` with a file that `say` describes: `say("the file")` publicly,
    /// `say(path)` in the detail.
    pub(super) fn about_file(
        key: impl Into<String>,
        path: &Path,
        say: impl Fn(&str) -> String,
    ) -> Self {
        Self {
            key: key.into(),
            message: say("the file"),
            detail: Some(say(&path.display().to_string())),
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
    /// `rate_limit`, when it limits anything.
    pub(super) rate_limit: Option<Arc<RateLimit>>,
    /// Settings accepted without effect, in words.
    warnings: Vec<String>,
    /// SHA-256 of the file and of every file it names, as read: equal fingerprints, same config.
    fingerprint: [u8; 32],
    /// The file it was read from.
    pub(super) source: Option<PathBuf>,
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
            .field("rate_limit", &self.rate_limit.is_some())
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

    /// Takes the bcrypt slot as a verification that never ends would (tests of the wait bound);
    /// `None` without basic auth or when the slot is taken.
    #[doc(hidden)]
    pub fn hold_bcrypt_slot(&self) -> Option<impl Drop + Send + use<>> {
        self.auth.as_ref()?.hold_bcrypt_slot()
    }

    /// The extra response headers, in the file's (sorted) order.
    pub fn extra_headers(&self) -> &[(HeaderName, HeaderValue)] {
        &self.headers
    }

    /// Settings the file sets that have no effect here (log them as warnings).
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }
}

/// Reads, checks and prepares a web config file (certificates and keys are read too).
///
/// Synchronous file I/O: on reload, call it from the blocking pool.
pub fn load_web_config(path: &Path) -> Result<WebState, WebConfigError> {
    let fail = |e: Invalid| WebConfigError {
        file: path.to_path_buf(),
        key: e.key,
        message: e.message,
        detail: e.detail,
    };
    let text = std::fs::read_to_string(path)
        .map_err(|e| fail(Invalid::new("", format!("cannot read: {e}"))))?;
    let dir = path.parent().unwrap_or_else(|| Path::new(""));
    let mut state = parse_web_config(&text, dir).map_err(fail)?;
    state.source = Some(path.to_path_buf());
    Ok(state)
}

/// Parses web config text; relative paths in it are resolved against `dir`.
fn parse_web_config(text: &str, dir: &Path) -> Result<WebState, Invalid> {
    let de = serde_norway::Deserializer::from_str(text);
    let raw: Option<RawWebConfig> = serde_path_to_error::deserialize(de).map_err(|e| {
        let key = e.path().to_string();
        let key = if key == "." { String::new() } else { key };
        Invalid::new(key, hide_values(&e.into_inner().to_string()))
    })?;
    let raw = raw.unwrap_or_default();
    let mut read = Sha256::new();
    read.update(text.as_bytes());
    let mut warnings = Vec::new();
    let tls = match raw.tls_server_config {
        Some(t) => tls::build(t, dir, &mut read, &mut warnings)?,
        None => None,
    };
    let auth = match raw.basic_auth_users {
        Some(users) if !users.is_empty() => Some(Arc::new(BasicAuth::new(users)?)),
        _ => None,
    };
    let http = raw.http_server_config.unwrap_or_default();
    if http.http2 == Some(true) {
        warnings.push(
            "http_server_config.http2: true has no effect: the exporter speaks HTTP/1.1 only"
                .to_string(),
        );
    }
    let headers = match http.headers {
        Some(headers) => headers::validate_headers(headers)?,
        None => Vec::new(),
    };
    let rate_limit = rate_limit::build(raw.rate_limit.unwrap_or_default())?.map(Arc::new);
    Ok(WebState {
        tls,
        auth,
        headers,
        rate_limit,
        warnings,
        fingerprint: read.finalize().into(),
        source: None,
    })
}

/// A serde message with the values it quotes replaced by `…`: `invalid type: string "…",
/// expected a map`. Key names (in backquotes after `field`/`variant`) stay.
fn hide_values(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    loop {
        let next = [
            ("string \"", '"'),
            ("integer `", '`'),
            ("floating point `", '`'),
            ("boolean `", '`'),
            ("character `", '`'),
        ]
        .into_iter()
        .filter_map(|(opening, close)| rest.find(opening).map(|at| (at + opening.len(), close)))
        .min_by_key(|(at, _)| *at);
        let Some((start, close)) = next else {
            out.push_str(rest);
            return out;
        };
        out.push_str(&rest[..start]);
        out.push('…');
        rest = &rest[start..];
        // Skip to the closing quote (a string is escaped: skip \" and \\ inside it).
        let mut escaped = false;
        let end = rest
            .char_indices()
            .find(|&(_, c)| {
                let closes = c == close && !escaped;
                escaped = c == '\\' && !escaped;
                closes
            })
            .map_or(rest.len(), |(at, _)| at);
        rest = &rest[end..];
    }
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
    #[serde(default)]
    rate_limit: Option<RawRateLimit>,
}

/// `http_server_config`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHttp {
    /// Accepted for compatibility; the server speaks HTTP/1.1 only.
    #[serde(default)]
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
    fn rate_limit_is_accepted() {
        let state = parse("rate_limit:\n  interval: 1s\n  burst: 5\n").expect("valid");
        assert!(state.rate_limit.is_some());
        let state = parse("rate_limit:\n  burst: 1\n").expect("valid: no interval");
        assert!(state.rate_limit.is_none());
    }

    /// Before: a misplaced secret was echoed by the parser's message (`invalid type: string
    /// "$2y$10$…", expected a map`), into logs and the reload's 400 body.
    #[test]
    fn parse_errors_do_not_echo_values() {
        let hash = "$2y$10$mDwo.lAisC94iLAyP81MCesa29IzH37oigHC/42V2pdJlUprsJPze";
        for text in [
            format!("basic_auth_users: \"{hash}\"\n"),
            format!("tls_server_config: '{hash}'\n"),
            "rate_limit:\n  burst: 12345678\n  interval: [1]\n  extra: 1\n".to_string(),
            "tls_server_config:\n  prefer_server_cipher_suites: 987654\n".to_string(),
        ] {
            let e = parse(&text).expect_err("rejected");
            for secret in [hash, "12345678", "987654"] {
                assert!(!e.message.contains(secret), "{text}: {}", e.message);
            }
        }
        assert_eq!(
            hide_values(r#"invalid type: string "a\"b\\", expected a map at line 1"#),
            "invalid type: string \"…\", expected a map at line 1"
        );
        assert_eq!(
            hide_values("unknown field `ciphers`, expected one of `cert`, `key`"),
            "unknown field `ciphers`, expected one of `cert`, `key`"
        );
        assert_eq!(
            hide_values("invalid type: integer `5`, expected a string"),
            "invalid type: integer `…`, expected a string"
        );
    }

    #[test]
    fn the_fingerprint_follows_the_text() {
        let a = parse("http_server_config:\n  headers:\n    X-Frame-Options: deny\n").unwrap();
        let b = parse("http_server_config:\n  headers:\n    X-Frame-Options: deny\n").unwrap();
        let c =
            parse("http_server_config:\n  headers:\n    X-Frame-Options: sameorigin\n").unwrap();
        assert_eq!(a.fingerprint, b.fingerprint);
        assert_ne!(a.fingerprint, c.fingerprint);
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
