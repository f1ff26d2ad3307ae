//! `client_auth_type`, `client_ca_file`/`client_ca` and `client_allowed_sans` → a rustls
//! client-certificate verifier, with Go's meaning for each value:
//!
//! | `client_auth_type` | asks for a certificate | requires one | verifies its chain |
//! |---|---|---|---|
//! | `NoClientCert` (default) | no | no | - |
//! | `RequestClientCert` | yes | no | no |
//! | `RequireAnyClientCert` (or `RequireClientCert`) | yes | yes | no |
//! | `VerifyClientCertIfGiven` | yes | no | yes, when given |
//! | `RequireAndVerifyClientCert` | yes | yes | yes |
//!
//! A certificate that is not verified still proves that the client holds its key (the
//! handshake's signature is checked). Chains are verified against `client_ca_file` (or
//! `client_ca`); without one, against the system's trust store, as Go does (a warning says so:
//! any publicly trusted certificate then passes). A CA with `NoClientCert` is refused, as in the
//! toolkit. `client_allowed_sans` (only with `RequireAnyClientCert` or
//! `RequireAndVerifyClientCert`, as in the toolkit) accepts a certificate only if one of its
//! subject alternative names (DNS name, e-mail address, IP address as Go prints it, URI)
//! equals an entry of the list.

use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, Error, RootCertStore,
    SignatureScheme,
};

use super::Invalid;

const KEY: &str = "tls_server_config.client_auth_type";

/// Go's client authentication policies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ClientAuth {
    None,
    Request,
    RequireAny,
    VerifyIfGiven,
    RequireAndVerify,
}

impl ClientAuth {
    /// Parses `client_auth_type` (empty: `NoClientCert`).
    pub(super) fn parse(value: Option<&str>) -> Result<Self, Invalid> {
        Ok(match value.unwrap_or("") {
            "" | "NoClientCert" => ClientAuth::None,
            "RequestClientCert" => ClientAuth::Request,
            // The toolkit keeps the old name for compatibility.
            "RequireAnyClientCert" | "RequireClientCert" => ClientAuth::RequireAny,
            "VerifyClientCertIfGiven" => ClientAuth::VerifyIfGiven,
            "RequireAndVerifyClientCert" => ClientAuth::RequireAndVerify,
            other => {
                return Err(Invalid::new(
                    KEY,
                    format!(
                        "unknown value {other:?}; expected NoClientCert, RequestClientCert, \
                         RequireAnyClientCert, VerifyClientCertIfGiven or \
                         RequireAndVerifyClientCert"
                    ),
                ));
            }
        })
    }

    fn required(self) -> bool {
        matches!(self, ClientAuth::RequireAny | ClientAuth::RequireAndVerify)
    }
}

/// The verifier for `policy`; `None` for `NoClientCert`. `cas` are the configured client CAs
/// (empty: none configured). Warnings (system trust store in use) go to `warnings`.
pub(super) fn verifier(
    policy: ClientAuth,
    cas: Vec<CertificateDer<'static>>,
    allowed_sans: Option<Vec<String>>,
    provider: &Arc<CryptoProvider>,
    warnings: &mut Vec<String>,
) -> Result<Option<Arc<dyn ClientCertVerifier>>, Invalid> {
    if allowed_sans.is_some() && !policy.required() {
        return Err(Invalid::new(
            "tls_server_config.client_allowed_sans",
            "needs client_auth_type RequireAnyClientCert or RequireAndVerifyClientCert (the \
             other types let a client connect without a certificate, leaving no SAN to match)",
        ));
    }
    let inner: Arc<dyn ClientCertVerifier> = match policy {
        ClientAuth::None if !cas.is_empty() => {
            return Err(Invalid::new(
                "tls_server_config.client_ca_file",
                "client CAs are configured without a client_auth_type that uses them",
            ));
        }
        ClientAuth::None => return Ok(None),
        ClientAuth::Request | ClientAuth::RequireAny => Arc::new(AnyCertificate {
            mandatory: policy == ClientAuth::RequireAny,
            hints: roots(cas, false)?.subjects(),
            provider: Arc::clone(provider),
        }),
        ClientAuth::VerifyIfGiven | ClientAuth::RequireAndVerify => {
            if cas.is_empty() {
                warnings.push(format!(
                    "{KEY}: client certificates are verified against the system's trust store \
                     (no client_ca_file): any publicly trusted certificate passes"
                ));
            }
            let builder = WebPkiClientVerifier::builder_with_provider(
                roots(cas, true)?.into(),
                Arc::clone(provider),
            );
            let builder = if policy == ClientAuth::VerifyIfGiven {
                builder.allow_unauthenticated()
            } else {
                builder
            };
            builder
                .build()
                .map_err(|e| Invalid::new("tls_server_config.client_ca_file", e.to_string()))?
        }
    };
    Ok(Some(match allowed_sans {
        Some(allowed) => Arc::new(AllowedSans { inner, allowed }),
        None => inner,
    }))
}

/// A store of the configured CAs; without any and when `system` is set, the system's.
fn roots(cas: Vec<CertificateDer<'static>>, system: bool) -> Result<RootCertStore, Invalid> {
    let mut store = RootCertStore::empty();
    if cas.is_empty() && system {
        let native = rustls_native_certs::load_native_certs();
        let (added, _) = store.add_parsable_certificates(native.certs);
        if added == 0 {
            return Err(Invalid::new(
                "tls_server_config.client_ca_file",
                "is needed: no client CA is configured and the system's trust store is empty",
            ));
        }
        return Ok(store);
    }
    for ca in cas {
        store.add(ca).map_err(|e| {
            Invalid::new(
                "tls_server_config.client_ca_file",
                format!("a CA certificate is not usable: {e}"),
            )
        })?;
    }
    Ok(store)
}

/// `RequestClientCert` and `RequireAnyClientCert`: any certificate, its chain not verified
/// (the client still proves it holds the key).
#[derive(Debug)]
struct AnyCertificate {
    mandatory: bool,
    hints: Vec<DistinguishedName>,
    provider: Arc<CryptoProvider>,
}

impl ClientCertVerifier for AnyCertificate {
    fn client_auth_mandatory(&self) -> bool {
        self.mandatory
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &self.hints
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// `client_allowed_sans`: `inner`'s verdict, then an exact match of one SAN.
#[derive(Debug)]
struct AllowedSans {
    inner: Arc<dyn ClientCertVerifier>,
    allowed: Vec<String>,
}

impl ClientCertVerifier for AllowedSans {
    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        let verified = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)?;
        let sans = subject_alt_names(end_entity)
            .ok_or(Error::InvalidCertificate(CertificateError::BadEncoding))?;
        if sans.iter().any(|san| self.allowed.contains(san)) {
            Ok(verified)
        } else {
            Err(Error::InvalidCertificate(
                CertificateError::ApplicationVerificationFailure,
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// A certificate's subject alternative names as Go lists them for `client_allowed_sans`: DNS
/// names, e-mail addresses, IP addresses (printed), URIs. `None` if the certificate does not
/// parse.
fn subject_alt_names(der: &CertificateDer<'_>) -> Option<Vec<String>> {
    use x509_parser::extensions::GeneralName;
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).ok()?;
    let Some(sans) = cert.subject_alternative_name().ok()? else {
        return Some(Vec::new());
    };
    Some(
        sans.value
            .general_names
            .iter()
            .filter_map(|name| match name {
                GeneralName::DNSName(s) | GeneralName::RFC822Name(s) | GeneralName::URI(s) => {
                    Some(s.to_string())
                }
                GeneralName::IPAddress(bytes) => ip_string(bytes),
                _ => None,
            })
            .collect(),
    )
}

/// An IP address SAN (4 or 16 bytes) as text.
fn ip_string(bytes: &[u8]) -> Option<String> {
    match bytes.len() {
        4 => <[u8; 4]>::try_from(bytes)
            .ok()
            .map(|b| std::net::Ipv4Addr::from(b).to_string()),
        16 => <[u8; 16]>::try_from(bytes)
            .ok()
            .map(|b| std::net::Ipv6Addr::from(b).to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_go_value_parses_and_others_are_named() {
        for (value, policy) in [
            ("NoClientCert", ClientAuth::None),
            ("RequestClientCert", ClientAuth::Request),
            ("RequireAnyClientCert", ClientAuth::RequireAny),
            ("RequireClientCert", ClientAuth::RequireAny),
            ("VerifyClientCertIfGiven", ClientAuth::VerifyIfGiven),
            ("RequireAndVerifyClientCert", ClientAuth::RequireAndVerify),
        ] {
            assert_eq!(ClientAuth::parse(Some(value)).unwrap(), policy);
        }
        let e = ClientAuth::parse(Some("Sometimes")).unwrap_err();
        assert!(e.message.contains("unknown value \"Sometimes\""));
    }

    #[test]
    fn sans_are_read_as_go_prints_them() {
        let mut params =
            rcgen::CertificateParams::new(vec!["prometheus.test".to_string()]).expect("params");
        params.subject_alt_names.extend([
            rcgen::SanType::IpAddress("10.1.2.3".parse().unwrap()),
            rcgen::SanType::IpAddress("2001:db8::1".parse().unwrap()),
            rcgen::SanType::Rfc822Name("ops@example.com".try_into().unwrap()),
            rcgen::SanType::URI("spiffe://example.com/prometheus".try_into().unwrap()),
        ]);
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = params.self_signed(&key).expect("cert");
        let sans = subject_alt_names(cert.der()).expect("parses");
        assert_eq!(
            sans,
            [
                "prometheus.test",
                "10.1.2.3",
                "2001:db8::1",
                "ops@example.com",
                "spiffe://example.com/prometheus"
            ]
        );
        assert_eq!(
            subject_alt_names(&CertificateDer::from(vec![1, 2, 3])),
            None
        );
    }
}
