//! `tls_server_config` → a rustls server configuration, and the bounded TLS handshake.
//!
//! The crypto provider is rustls' `aws-lc-rs`, chosen explicitly (never the process default):
//! the AWS SDK already builds it, so TLS adds no native build step.
//!
//! Client authentication (`client_auth_type`):
//! - `NoClientCert` (default): no certificate is asked for; `client_ca_file` is then an error,
//!   as in the toolkit;
//! - `VerifyClientCertIfGiven`: a certificate is asked for, and verified against
//!   `client_ca_file` when the client sends one;
//! - `RequireAndVerifyClientCert`: a certificate signed by `client_ca_file` is required;
//! - `RequestClientCert`, `RequireAnyClientCert`: rejected at load, since rustls verifies every
//!   client certificate it accepts.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig, SupportedProtocolVersion};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use super::{Invalid, RawTls, resolve};

/// A prepared TLS configuration.
pub(in crate::http) struct Tls {
    acceptor: TlsAcceptor,
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
}

/// Client authentication policies the toolkit names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ClientAuth {
    None,
    VerifyIfGiven,
    RequireAndVerify,
}

/// The crypto provider of the exporter's TLS server.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// Where a PEM item comes from: a file (named in errors) or the config itself.
struct Source<'a> {
    key: &'static str,
    bytes: Vec<u8>,
    origin: std::borrow::Cow<'a, str>,
}

/// Reads `file` (resolved against `dir`) or takes `inline`; `None` when neither is set.
fn source(
    dir: &Path,
    file_key: &'static str,
    file: Option<&str>,
    inline_key: &'static str,
    inline: Option<&str>,
) -> Result<Option<Source<'static>>, Invalid> {
    match (
        file.filter(|f| !f.is_empty()),
        inline.filter(|i| !i.is_empty()),
    ) {
        (Some(_), Some(_)) => Err(Invalid::new(
            file_key,
            format!("set either {file_key} or {inline_key}, not both"),
        )),
        (Some(file), None) => {
            let path = resolve(dir, file);
            let bytes = std::fs::read(&path).map_err(|e| {
                Invalid::new(file_key, format!("cannot read {}: {e}", path.display()))
            })?;
            Ok(Some(Source {
                key: file_key,
                bytes,
                origin: path.display().to_string().into(),
            }))
        }
        (None, Some(inline)) => Ok(Some(Source {
            key: inline_key,
            bytes: inline.as_bytes().to_vec(),
            origin: "the inline PEM".into(),
        })),
        (None, None) => Ok(None),
    }
}

/// Builds the TLS configuration; `None` when `tls_server_config` configures no TLS.
pub(in crate::http) fn build(raw: RawTls, dir: &Path) -> Result<Option<Tls>, Invalid> {
    const K: &str = "tls_server_config";
    let unsupported = [
        ("cipher_suites", raw.cipher_suites.is_some()),
        ("curve_preferences", raw.curve_preferences.is_some()),
        ("client_allowed_sans", raw.client_allowed_sans.is_some()),
    ];
    if let Some((name, _)) = unsupported.iter().find(|(_, set)| *set) {
        return Err(Invalid::new(
            format!("{K}.{name}"),
            "not supported by this exporter (rustls chooses safe cipher suites and groups)",
        ));
    }
    let enabled = [
        &raw.cert_file,
        &raw.cert,
        &raw.key_file,
        &raw.key,
        &raw.client_ca_file,
        &raw.client_ca,
        &raw.client_auth_type,
    ]
    .iter()
    .any(|v| v.as_deref().is_some_and(|s| !s.is_empty()));
    if !enabled {
        return Ok(None);
    }

    let client_auth = match raw.client_auth_type.as_deref().unwrap_or("") {
        "" | "NoClientCert" => ClientAuth::None,
        "VerifyClientCertIfGiven" => ClientAuth::VerifyIfGiven,
        "RequireAndVerifyClientCert" => ClientAuth::RequireAndVerify,
        other @ ("RequestClientCert" | "RequireAnyClientCert" | "RequireClientCert") => {
            return Err(Invalid::new(
                format!("{K}.client_auth_type"),
                format!(
                    "{other} is not supported: client certificates are always verified; use VerifyClientCertIfGiven or RequireAndVerifyClientCert with client_ca_file"
                ),
            ));
        }
        other => {
            return Err(Invalid::new(
                format!("{K}.client_auth_type"),
                format!(
                    "unknown value {other:?}; expected NoClientCert, VerifyClientCertIfGiven or RequireAndVerifyClientCert"
                ),
            ));
        }
    };
    let min = version(raw.min_version.as_deref(), "min_version", 12)?;
    let max = version(raw.max_version.as_deref(), "max_version", 13)?;
    if min > max {
        return Err(Invalid::new(
            format!("{K}.min_version"),
            "min_version is higher than max_version",
        ));
    }
    let versions: Vec<&'static SupportedProtocolVersion> =
        [(12, &rustls::version::TLS12), (13, &rustls::version::TLS13)]
            .into_iter()
            .filter(|(v, _)| (min..=max).contains(v))
            .map(|(_, p)| p)
            .collect();

    let cert = source(
        dir,
        "tls_server_config.cert_file",
        raw.cert_file.as_deref(),
        "tls_server_config.cert",
        raw.cert.as_deref(),
    )?
    .ok_or_else(|| Invalid::new(K, "missing one of cert or cert_file"))?;
    let key = source(
        dir,
        "tls_server_config.key_file",
        raw.key_file.as_deref(),
        "tls_server_config.key",
        raw.key.as_deref(),
    )?
    .ok_or_else(|| Invalid::new(K, "missing one of key or key_file"))?;
    let ca = source(
        dir,
        "tls_server_config.client_ca_file",
        raw.client_ca_file.as_deref(),
        "tls_server_config.client_ca",
        raw.client_ca.as_deref(),
    )?;

    let chain = certificates(&cert)?;
    let private_key = PrivateKeyDer::from_pem_slice(&key.bytes).map_err(|e| {
        Invalid::new(
            key.key,
            format!("no usable private key in {}: {e}", key.origin),
        )
    })?;

    let provider = provider();
    let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(&versions)
        .map_err(|e| Invalid::new(format!("{K}.min_version"), e.to_string()))?;
    let builder = match (client_auth, ca) {
        (ClientAuth::None, None) => builder.with_no_client_auth(),
        (ClientAuth::None, Some(ca)) => {
            return Err(Invalid::new(
                ca.key,
                "client CAs are configured without a client_auth_type (use VerifyClientCertIfGiven or RequireAndVerifyClientCert)",
            ));
        }
        (_, None) => {
            return Err(Invalid::new(
                format!("{K}.client_ca_file"),
                "client_auth_type verifies client certificates, so client_ca_file (or client_ca) is required",
            ));
        }
        (policy, Some(ca)) => {
            let mut roots = RootCertStore::empty();
            for certificate in certificates(&ca)? {
                roots.add(certificate).map_err(|e| {
                    Invalid::new(ca.key, format!("bad CA certificate in {}: {e}", ca.origin))
                })?;
            }
            let verifier =
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots), Arc::clone(&provider));
            let verifier = if policy == ClientAuth::VerifyIfGiven {
                verifier.allow_unauthenticated()
            } else {
                verifier
            };
            let verifier = verifier
                .build()
                .map_err(|e| Invalid::new(ca.key, format!("{}: {e}", ca.origin)))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_single_cert(chain, private_key).map_err(|e| {
        Invalid::new(
            key.key,
            format!(
                "the key in {} does not fit the certificate in {}: {e}",
                key.origin, cert.origin
            ),
        )
    })?;
    config.ignore_client_order = raw.prefer_server_cipher_suites.unwrap_or(true);
    // HTTP/1.1 only: a client offering only h2 fails the handshake instead of misparsing.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Some(Tls {
        acceptor: TlsAcceptor::from(Arc::new(config)),
    }))
}

/// Every certificate of a PEM source; at least one.
fn certificates(source: &Source<'_>) -> Result<Vec<CertificateDer<'static>>, Invalid> {
    let certificates = CertificateDer::pem_slice_iter(&source.bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Invalid::new(source.key, format!("bad PEM in {}: {e}", source.origin)))?;
    if certificates.is_empty() {
        return Err(Invalid::new(
            source.key,
            format!("no certificate found in {}", source.origin),
        ));
    }
    Ok(certificates)
}

/// Parses `TLS12`/`TLS13` as 12/13; `default` when unset.
fn version(value: Option<&str>, name: &str, default: u8) -> Result<u8, Invalid> {
    let key = format!("tls_server_config.{name}");
    match value.unwrap_or("") {
        "" => Ok(default),
        "TLS12" => Ok(12),
        "TLS13" => Ok(13),
        old @ ("TLS10" | "TLS11") => Err(Invalid::new(
            key,
            format!("{old} is not supported: this exporter speaks TLS12 and TLS13 only"),
        )),
        other => Err(Invalid::new(
            key,
            format!("unknown TLS version {other:?}; expected TLS12 or TLS13"),
        )),
    }
}
