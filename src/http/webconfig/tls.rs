//! `tls_server_config` → a rustls server configuration, and the bounded TLS handshake.
//!
//! The crypto provider is rustls' `aws-lc-rs`, chosen explicitly (never the process default):
//! the AWS SDK already builds it, so TLS adds no native build step. Versions, cipher suites and
//! curves are in `suites`; client certificates in `client_auth`. The server picks the cipher
//! suite by its own order (the order of `cipher_suites` when given), which is what
//! `prefer_server_cipher_suites: true` asks Go for; the key itself has no effect (Go ignores it
//! since 1.17 too), and a warning says so. ALPN offers `http/1.1` only.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ServerConfig, SupportedProtocolVersion};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use super::client_auth::{self, ClientAuth};
use super::{Invalid, resolve, suites};

const K: &str = "tls_server_config";

/// `tls_server_config` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTls {
    cert_file: Option<String>,
    cert: Option<String>,
    key_file: Option<String>,
    key: Option<String>,
    client_ca_file: Option<String>,
    client_ca: Option<String>,
    client_auth_type: Option<String>,
    client_allowed_sans: Option<Vec<String>>,
    min_version: Option<String>,
    max_version: Option<String>,
    cipher_suites: Option<Vec<String>>,
    curve_preferences: Option<Vec<String>>,
    prefer_server_cipher_suites: Option<bool>,
}

/// A prepared TLS configuration.
pub(in crate::http) struct Tls {
    acceptor: TlsAcceptor,
    /// `RequireAndVerifyClientCert`: only clients with a verified certificate get in.
    verified_clients: bool,
}

impl Tls {
    /// Runs the server side of a handshake, failing after `timeout` (slow or silent clients).
    pub(in crate::http) async fn accept<S>(
        &self,
        stream: S,
        timeout: Duration,
    ) -> std::io::Result<TlsStream<S>>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        match tokio::time::timeout(timeout, self.acceptor.accept(stream)).await {
            Ok(result) => result,
            Err(_) => Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "TLS handshake not finished in time",
            )),
        }
    }

    /// Whether every client must present a certificate that verifies.
    pub(in crate::http) fn requires_verified_client(&self) -> bool {
        self.verified_clients
    }
}

/// Where a PEM item comes from: a file (named in the errors' details) or the config itself.
struct Source {
    key: String,
    bytes: Vec<u8>,
    path: Option<PathBuf>,
}

impl Source {
    /// A problem with this source: `say("the file" | path | "the inline PEM")`.
    fn invalid(&self, say: impl Fn(&str) -> String) -> Invalid {
        match &self.path {
            Some(path) => Invalid::about_file(self.key.clone(), path, say),
            None => Invalid::new(self.key.clone(), say("the inline PEM")),
        }
    }
}

/// Reads `<name>_file` (resolved against `dir`) or takes `<name>` inline; `None` when neither is
/// set. What is read is added to `read` (the fingerprint).
fn source(
    dir: &Path,
    name: &str,
    file: Option<&str>,
    inline: Option<&str>,
    read: &mut Sha256,
) -> Result<Option<Source>, Invalid> {
    let (file_key, inline_key) = (format!("{K}.{name}_file"), format!("{K}.{name}"));
    let found = match (
        file.filter(|f| !f.is_empty()),
        inline.filter(|i| !i.is_empty()),
    ) {
        (Some(_), Some(_)) => {
            return Err(Invalid::new(
                file_key,
                format!("set either {name}_file or {name}, not both"),
            ));
        }
        (Some(file), None) => {
            let path = resolve(dir, file);
            let bytes = std::fs::read(&path).map_err(|e| {
                Invalid::about_file(file_key.clone(), &path, |f| format!("cannot read {f}: {e}"))
            })?;
            Source {
                key: file_key,
                bytes,
                path: Some(path),
            }
        }
        (None, Some(inline)) => Source {
            key: inline_key,
            bytes: inline.as_bytes().to_vec(),
            path: None,
        },
        (None, None) => return Ok(None),
    };
    read.update((found.bytes.len() as u64).to_be_bytes());
    read.update(&found.bytes);
    Ok(Some(found))
}

/// Whether `tls_server_config` turns TLS on (as the toolkit decides it).
fn enabled(raw: &RawTls) -> bool {
    [
        &raw.cert_file,
        &raw.cert,
        &raw.key_file,
        &raw.key,
        &raw.client_ca_file,
        &raw.client_ca,
        &raw.client_auth_type,
    ]
    .iter()
    .any(|v| v.as_deref().is_some_and(|s| !s.is_empty()))
}

/// Builds the TLS configuration; `None` when `tls_server_config` configures no TLS. Every file
/// read is added to `read`; settings without effect are described in `warnings`.
pub(super) fn build(
    raw: RawTls,
    dir: &Path,
    read: &mut Sha256,
    warnings: &mut Vec<String>,
) -> Result<Option<Tls>, Invalid> {
    if !enabled(&raw) {
        return Ok(None);
    }
    let policy = ClientAuth::parse(raw.client_auth_type.as_deref())?;
    let versions = versions(&raw)?;
    let provider = provider(&raw)?;
    if let Some(prefer) = raw.prefer_server_cipher_suites {
        warnings.push(format!(
            "{K}.prefer_server_cipher_suites: {prefer} has no effect: the server always picks \
             by its own order (that of cipher_suites when given), as Go 1.17 and later do"
        ));
    }
    let cert = source(
        dir,
        "cert",
        raw.cert_file.as_deref(),
        raw.cert.as_deref(),
        read,
    )?
    .ok_or_else(|| Invalid::new(K, "missing one of cert or cert_file"))?;
    let key = source(
        dir,
        "key",
        raw.key_file.as_deref(),
        raw.key.as_deref(),
        read,
    )?
    .ok_or_else(|| Invalid::new(K, "missing one of key or key_file"))?;
    let ca = source(
        dir,
        "client_ca",
        raw.client_ca_file.as_deref(),
        raw.client_ca.as_deref(),
        read,
    )?;
    let chain = certificates(&cert)?;
    let private_key = PrivateKeyDer::from_pem_slice(&key.bytes)
        .map_err(|e| key.invalid(|f| format!("no usable private key in {f}: {e}")))?;
    let cas = match &ca {
        Some(ca) => certificates(ca)?,
        None => Vec::new(),
    };
    let verifier =
        client_auth::verifier(policy, cas, raw.client_allowed_sans, &provider, warnings)?;
    let builder = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&versions)
        .map_err(|e| Invalid::new(format!("{K}.cipher_suites"), e.to_string()))?;
    let builder = match verifier {
        Some(verifier) => builder.with_client_cert_verifier(verifier),
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_single_cert(chain, private_key).map_err(|e| {
        key.invalid(|f| format!("the key in {f} does not fit the certificate: {e}"))
    })?;
    config.ignore_client_order = true;
    // HTTP/1.1 only: a client offering only h2 fails the handshake instead of misparsing.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Some(Tls {
        acceptor: TlsAcceptor::from(Arc::new(config)),
        verified_clients: policy == ClientAuth::RequireAndVerify,
    }))
}

/// The protocol versions from `min_version` to `max_version`.
fn versions(raw: &RawTls) -> Result<Vec<&'static SupportedProtocolVersion>, Invalid> {
    let min = suites::version(raw.min_version.as_deref(), "min_version", 12)?;
    let max = suites::version(raw.max_version.as_deref(), "max_version", 13)?;
    if min > max {
        return Err(Invalid::new(
            format!("{K}.min_version"),
            "min_version is higher than max_version",
        ));
    }
    Ok(
        [(12, &rustls::version::TLS12), (13, &rustls::version::TLS13)]
            .into_iter()
            .filter(|(v, _)| (min..=max).contains(v))
            .map(|(_, p)| p)
            .collect(),
    )
}

/// rustls' aws-lc-rs provider, with the cipher suites and curves of the config.
fn provider(raw: &RawTls) -> Result<Arc<CryptoProvider>, Invalid> {
    let mut provider = rustls::crypto::aws_lc_rs::default_provider();
    if let Some(suites) = suites::cipher_suites(raw.cipher_suites.as_deref())? {
        provider.cipher_suites = suites;
    }
    if let Some(groups) = suites::kx_groups(raw.curve_preferences.as_deref())? {
        provider.kx_groups = groups;
    }
    Ok(Arc::new(provider))
}

/// Every certificate of a PEM source; at least one.
fn certificates(source: &Source) -> Result<Vec<CertificateDer<'static>>, Invalid> {
    let certificates = CertificateDer::pem_slice_iter(&source.bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| source.invalid(|f| format!("bad PEM in {f}: {e}")))?;
    if certificates.is_empty() {
        return Err(source.invalid(|f| format!("no certificate found in {f}")));
    }
    Ok(certificates)
}
