//! The exporter-toolkit's own web config files (`tests/fixtures/exporter-toolkit/`, see its
//! README for their origin and licence), each loaded as written, and a real TLS handshake per
//! setting: cipher suites, curves, versions, every `client_auth_type`, `client_allowed_sans`,
//! and the rate limit.
//!
//! The files name `server.crt`, `server.key`, `client2_selfsigned.pem` and `tls-ca-chain.pem`;
//! the test writes certificates made here with rcgen under those names beside the copies: an
//! RSA server certificate (the toolkit's cipher lists are RSA suites) signed by a test CA, which
//! both CA file names hold, and client certificates signed by it or self-signed.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{CertificateParams, KeyPair};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{
    ClientConfig, NamedGroup, RootCertStore, SupportedCipherSuite, SupportedProtocolVersion,
};

use workspacesweb_exporter::http::{WebConfigHandle, WebState, load_web_config};

use crate::web_config::{
    BOTH, REALM, Reply, Server, exchange, provider, test_ca, tls_connect, write,
};

const FIXTURES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/exporter-toolkit"
);
const TLS12: &[&SupportedProtocolVersion] = &[&rustls::version::TLS12];
const TLS13: &[&SupportedProtocolVersion] = &[&rustls::version::TLS13];

/// A client identity: PEM certificate and key.
struct Identity {
    cert: String,
    key: String,
}

impl Identity {
    fn new(cert: &rcgen::Certificate, key: &KeyPair) -> Self {
        Self {
            cert: cert.pem(),
            key: key.serialize_pem(),
        }
    }
}

/// The certificates, written to a directory the fixtures are copied into.
struct Toolkit {
    dir: tempfile::TempDir,
    ca: String,
    /// Signed by the CA, SANs `prometheus.test` and `test3`.
    client: Identity,
    /// Signed by the CA, SAN `prometheus.test` only.
    other_client: Identity,
    /// Self-signed, SAN `one`.
    stranger: Identity,
}

fn leaf_params(sans: &[&str]) -> CertificateParams {
    CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        .expect("leaf params")
}

impl Toolkit {
    fn new() -> Self {
        let (ca, issuer) = test_ca("toolkit test CA");

        // An RSA key (aws-lc-rs makes it; rcgen's ring backend cannot).
        let rsa =
            aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).expect("RSA key");
        let rsa_der = aws_lc_rs::encoding::AsDer::<aws_lc_rs::encoding::Pkcs8V1Der>::as_der(&rsa)
            .expect("PKCS#8");
        let server_key = KeyPair::from_pkcs8_der_and_sign_algo(
            &rustls::pki_types::PrivatePkcs8KeyDer::from(rsa_der.as_ref().to_vec()),
            &rcgen::PKCS_RSA_SHA256,
        )
        .expect("rcgen RSA key");
        let server = leaf_params(&["localhost", "127.0.0.1"])
            .signed_by(&server_key, &issuer)
            .expect("server cert");

        let signed = |sans: &[&str]| {
            let key = KeyPair::generate().expect("client key");
            let cert = leaf_params(sans)
                .signed_by(&key, &issuer)
                .expect("client cert");
            Identity::new(&cert, &key)
        };
        let client = signed(&["prometheus.test", "test3"]);
        let other_client = signed(&["prometheus.test"]);
        let stranger = {
            let key = KeyPair::generate().expect("stranger key");
            let cert = leaf_params(&["one"])
                .self_signed(&key)
                .expect("stranger cert");
            Identity::new(&cert, &key)
        };

        let dir = tempfile::tempdir().expect("temp dir");
        write(
            dir.path(),
            "server.crt",
            &format!("{}{}", server.pem(), ca.pem()),
        );
        write(dir.path(), "server.key", &server_key.serialize_pem());
        write(dir.path(), "client2_selfsigned.pem", &ca.pem());
        write(dir.path(), "tls-ca-chain.pem", &ca.pem());
        Self {
            dir,
            ca: ca.pem(),
            client,
            other_client,
            stranger,
        }
    }

    /// Copies the toolkit's `name` beside the certificates; its path.
    fn fixture(&self, name: &str) -> PathBuf {
        let text = std::fs::read_to_string(Path::new(FIXTURES).join(name)).expect("fixture");
        write(self.dir.path(), name, &text)
    }

    fn load(&self, name: &str) -> Result<WebState, String> {
        load_web_config(&self.fixture(name)).map_err(|e| e.to_string())
    }

    /// Loads a web config written here (not a fixture).
    fn load_text(&self, yaml: &str) -> WebState {
        let path = write(self.dir.path(), "own.yml", yaml);
        load_web_config(&path).unwrap_or_else(|e| panic!("{yaml}: {e}"))
    }

    /// A client trusting the CA, speaking `versions`, with `suites`/`groups` when given (all of
    /// the provider's otherwise), presenting `identity` when asked.
    fn client(
        &self,
        versions: &[&'static SupportedProtocolVersion],
        suites: Option<&[SupportedCipherSuite]>,
        groups: Option<&[NamedGroup]>,
        identity: Option<&Identity>,
    ) -> Arc<ClientConfig> {
        let mut p: CryptoProvider = (*provider()).clone();
        if let Some(suites) = suites {
            p.cipher_suites = suites.to_vec();
        }
        if let Some(groups) = groups {
            p.kx_groups.retain(|g| groups.contains(&g.name()));
        }
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(self.ca.as_bytes()) {
            roots.add(cert.expect("CA PEM")).expect("CA certificate");
        }
        let builder = ClientConfig::builder_with_provider(Arc::new(p))
            .with_protocol_versions(versions)
            .expect("versions")
            .with_root_certificates(roots);
        Arc::new(match identity {
            None => builder.with_no_client_auth(),
            Some(id) => builder
                .with_client_auth_cert(
                    CertificateDer::pem_slice_iter(id.cert.as_bytes())
                        .collect::<Result<Vec<_>, _>>()
                        .expect("chain"),
                    PrivateKeyDer::from_pem_slice(id.key.as_bytes()).expect("key"),
                )
                .expect("client identity"),
        })
    }
}

/// What a handshake and one `GET /-/healthy` gave.
#[derive(Debug)]
struct Handshake {
    suite: Option<rustls::CipherSuite>,
    group: Option<NamedGroup>,
    reply: Reply,
}

/// Handshakes with `client` and sends one GET `path`; `Err` if either fails.
async fn handshake(
    addr: SocketAddr,
    client: &Arc<ClientConfig>,
    path: &str,
) -> std::io::Result<Handshake> {
    let stream = tls_connect(addr, client).await?;
    let (_, connection) = stream.get_ref();
    let suite = connection.negotiated_cipher_suite().map(|s| s.suite());
    let group = connection.negotiated_key_exchange_group().map(|g| g.name());
    let reply = exchange(stream, "GET", path, &[]).await?;
    Ok(Handshake {
        suite,
        group,
        reply,
    })
}

async fn serve(state: WebState) -> Server {
    Server::start(WebConfigHandle::new(state), None).await
}

#[tokio::test]
async fn the_documented_example_serves_tls_with_basic_auth() {
    let kit = Toolkit::new();
    let state = kit
        .load("web-config.yml")
        .expect("the documented example loads");
    assert!(state.tls_enabled());
    assert_eq!(state.basic_auth_users(), ["alice", "bob"]);
    let server = serve(state).await;
    let client = kit.client(BOTH, None, None, None);
    let healthy = handshake(server.addr, &client, "/-/healthy")
        .await
        .expect("TLS");
    assert_eq!(healthy.reply.status, 200);
    let metrics = handshake(server.addr, &client, "/metrics")
        .await
        .expect("TLS");
    assert_eq!(metrics.reply.status, 401);
    assert_eq!(metrics.reply.header("www-authenticate"), Some(REALM));
    server.stop().await;
}

#[tokio::test]
async fn cipher_suites_choose_what_is_negotiated() {
    use rustls::crypto::aws_lc_rs::cipher_suite as cs;
    let kit = Toolkit::new();
    // TLS 1.2 only, two ECDHE-RSA AES-GCM suites; a client certificate is asked for, not
    // required (VerifyClientCertIfGiven, against the system's trust store: no CA is named).
    let server = serve(
        kit.load("web_config_noAuth_someCiphers.good.yml")
            .expect("loads"),
    )
    .await;
    let listed = [cs::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384];
    let done = handshake(
        server.addr,
        &kit.client(TLS12, Some(&listed), None, None),
        "/-/healthy",
    )
    .await
    .expect("a listed suite is negotiated");
    assert_eq!(
        done.suite,
        Some(rustls::CipherSuite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384)
    );
    assert_eq!(done.reply.status, 200);
    let unlisted = [cs::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256];
    let refused = handshake(
        server.addr,
        &kit.client(TLS12, Some(&unlisted), None, None),
        "/-/healthy",
    )
    .await;
    assert!(refused.is_err(), "an unlisted suite: {refused:?}");
    let tls13 = handshake(
        server.addr,
        &kit.client(TLS13, None, None, None),
        "/-/healthy",
    )
    .await;
    assert!(tls13.is_err(), "max_version TLS12: {tls13:?}");
    server.stop().await;

    // Go-only suites are refused naming the first one; unknown names too.
    let e = kit
        .load("web_config_noAuth_allCiphers.good.yml")
        .expect_err("CBC suites");
    assert!(e.contains("tls_server_config.cipher_suites[9]"), "{e}");
    assert!(
        e.contains("TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA is not supported"),
        "{e}"
    );
    let e = kit
        .load("web_config_noAuth_inventedCiphers.bad.yml")
        .expect_err("invented");
    assert!(
        e.contains("unknown cipher suite \"TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA2048\""),
        "{e}"
    );
}

#[tokio::test]
async fn curve_preferences_choose_the_key_exchange() {
    let kit = Toolkit::new();
    let yaml = "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  curve_preferences: [CurveP384]\n";
    let server = serve(kit.load_text(yaml)).await;
    let p384 = handshake(
        server.addr,
        &kit.client(BOTH, None, Some(&[NamedGroup::secp384r1]), None),
        "/-/healthy",
    )
    .await
    .expect("P-384 is offered");
    assert_eq!(p384.group, Some(NamedGroup::secp384r1));
    let x25519 = handshake(
        server.addr,
        &kit.client(BOTH, None, Some(&[NamedGroup::X25519]), None),
        "/-/healthy",
    )
    .await;
    assert!(x25519.is_err(), "only P-384 is allowed: {x25519:?}");
    server.stop().await;

    // The toolkit's lists name P-521, which rustls does not implement.
    for name in [
        "web_config_noAuth_allCurves.good.yml",
        "web_config_noAuth_someCurves.good.yml",
    ] {
        let e = kit.load(name).expect_err("P-521");
        assert!(e.contains("CurveP521 is not supported"), "{name}: {e}");
    }
    let e = kit
        .load("web_config_noAuth_inventedCurves.bad.yml")
        .expect_err("invented");
    assert!(e.contains("unknown curve \"CurveP257\""), "{e}");
    let e = kit
        .load("web_config_noAuth_wrongTLSVersion.bad.yml")
        .expect_err("TLS111");
    assert!(
        e.contains("tls_server_config.min_version") && e.contains("\"TLS111\""),
        "{e}"
    );
}

/// Every `client_auth_type`, with the CA of the fixture: whether a client without a
/// certificate, with one the CA signed, and with a self-signed one gets an answer.
#[tokio::test]
async fn every_client_auth_type_asks_requires_and_verifies_as_in_go() {
    let kit = Toolkit::new();
    let cases = [
        ("NoClientCert", [true, true, true]),
        ("RequestClientCert", [true, true, true]),
        ("RequireAnyClientCert", [false, true, true]),
        ("VerifyClientCertIfGiven", [true, true, false]),
        ("RequireAndVerifyClientCert", [false, true, false]),
    ];
    for (policy, expected) in cases {
        let state = if policy == "RequireAnyClientCert" {
            kit.load("tls_config_noAuth.requireanyclientcert.good.yml")
                .expect("loads")
        } else {
            let ca = if policy == "NoClientCert" {
                ""
            } else {
                "  client_ca_file: tls-ca-chain.pem\n"
            };
            kit.load_text(&format!(
                "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  client_auth_type: {policy}\n{ca}"
            ))
        };
        let server = serve(state).await;
        let mut got = Vec::new();
        for identity in [None, Some(&kit.client), Some(&kit.stranger)] {
            let client = kit.client(BOTH, None, None, identity);
            got.push(
                handshake(server.addr, &client, "/-/healthy")
                    .await
                    .is_ok_and(|h| h.reply.status == 200),
            );
        }
        assert_eq!(got, expected, "{policy}: none, CA-signed, self-signed");
        server.stop().await;
    }
}

#[tokio::test]
async fn client_allowed_sans_admit_only_a_listed_name() {
    let kit = Toolkit::new();
    // RequireAndVerifyClientCert with the SANs one, test3, two.
    let server = serve(
        kit.load("web_config_auth_client_san.good.yaml")
            .expect("loads"),
    )
    .await;
    let listed = handshake(
        server.addr,
        &kit.client(BOTH, None, None, Some(&kit.client)),
        "/-/healthy",
    )
    .await;
    assert_eq!(listed.expect("SAN test3 is listed").reply.status, 200);
    let unlisted = handshake(
        server.addr,
        &kit.client(BOTH, None, None, Some(&kit.other_client)),
        "/-/healthy",
    )
    .await;
    assert!(unlisted.is_err(), "only prometheus.test: {unlisted:?}");
    // Self-signed with SAN `one`: listed, but not signed by the CA.
    let stranger = handshake(
        server.addr,
        &kit.client(BOTH, None, None, Some(&kit.stranger)),
        "/-/healthy",
    )
    .await;
    assert!(stranger.is_err(), "{stranger:?}");
    server.stop().await;

    // With RequireAnyClientCert the chain is not verified: the SAN decides.
    let yaml = "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  client_auth_type: RequireAnyClientCert\n  client_allowed_sans: [one]\n";
    let server = serve(kit.load_text(yaml)).await;
    let stranger = handshake(
        server.addr,
        &kit.client(BOTH, None, None, Some(&kit.stranger)),
        "/-/healthy",
    )
    .await;
    assert_eq!(stranger.expect("SAN one").reply.status, 200);
    let client = handshake(
        server.addr,
        &kit.client(BOTH, None, None, Some(&kit.client)),
        "/-/healthy",
    )
    .await;
    assert!(client.is_err(), "{client:?}");
    server.stop().await;

    let e = kit
        .load("web_config_auth_client_san_optional_cert.bad.yaml")
        .expect_err("optional");
    assert!(e.contains("tls_server_config.client_allowed_sans"), "{e}");
}

#[tokio::test]
async fn the_rate_limit_answers_429_once_the_burst_is_spent() {
    let kit = Toolkit::new();
    // The toolkit's burst 0 would refuse every request: refused with a message instead.
    let e = kit
        .load("web_config_rate_limiter_one_second.yaml")
        .expect_err("burst 0");
    assert!(
        e.contains("rate_limit.burst") && e.contains("refuse every request"),
        "{e}"
    );

    let server = serve(kit.load_text("rate_limit:\n  interval: 1h\n  burst: 2\n")).await;
    for _ in 0..2 {
        assert_eq!(server.get("/metrics", &[]).await.status, 200);
    }
    assert_eq!(server.get("/metrics", &[]).await.status, 429);
    assert_eq!(server.get("/", &[]).await.status, 429);
    // Liveness probes are not limited.
    assert_eq!(server.get("/-/healthy", &[]).await.status, 200);
    server.stop().await;
}

#[test]
fn settings_without_effect_are_accepted_with_a_warning_and_costs_above_14_refused() {
    let kit = Toolkit::new();
    let state = kit.load_text(
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  prefer_server_cipher_suites: false\nhttp_server_config:\n  http2: true\n",
    );
    let warnings = state.warnings().join("\n");
    assert!(
        warnings.contains("prefer_server_cipher_suites: false has no effect"),
        "{warnings}"
    );
    assert!(warnings.contains("http2: true has no effect"), "{warnings}");
    // The toolkit's user list has a cost-18 hash (seconds per login): refused, naming it.
    let e = kit.load("web_config_users.good.yml").expect_err("cost 18");
    assert!(
        e.contains("basic_auth_users.bob") && e.contains("bcrypt cost 18"),
        "{e}"
    );
}
