//! `--web.config.file` over real loopback connections: TLS, mutual TLS, basic auth, extra
//! headers, the reload route and seam, the parser's errors, and the binary's exit code.
//!
//! Certificates are made here with rcgen: a CA, a server certificate for 127.0.0.1 and
//! localhost, a client certificate signed by the CA and a self-signed client certificate.

use crate::common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use base64::Engine;
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore, SupportedProtocolVersion};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_rustls::TlsConnector;

use workspacesweb_exporter::exposition::Exposition;
use workspacesweb_exporter::http::{
    self, HttpSettings, HttpTimeouts, ReloadHook, WebConfigHandle, WebOptions, WebState,
    load_web_config,
};
use workspacesweb_exporter::snapshot::Store;

/// Upper bound on any single network step, so that a bug fails the test instead of hanging it.
pub(super) const STEP: Duration = Duration::from_secs(30);
pub(super) const REALM: &str = "Basic realm=\"workspacesweb-exporter\"";

// ---------------------------------------------------------------------------------------------
// Certificates.

/// A PEM certificate (chain) and its key.
pub(super) struct Pair {
    cert: String,
    key: String,
}

/// Everything the tests need, written to a temporary directory.
pub(super) struct Pki {
    pub(super) dir: tempfile::TempDir,
    ca: String,
    client: Pair,
    stranger: Pair,
}

/// A test CA: its certificate, and the issuer that signs with it.
pub(super) fn test_ca(name: &str) -> (rcgen::Certificate, Issuer<'static, KeyPair>) {
    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    let ca_cert = ca_params.self_signed(&ca_key).expect("CA cert");
    (ca_cert, Issuer::new(ca_params, ca_key))
}

impl Pki {
    pub(super) fn new() -> Self {
        let (ca_cert, issuer) = test_ca("test CA");

        let leaf = |names: Vec<String>, cn: &str| -> Pair {
            let key = KeyPair::generate().expect("leaf key");
            let mut params = CertificateParams::new(names).expect("leaf params");
            params
                .distinguished_name
                .push(rcgen::DnType::CommonName, cn);
            let cert = params.signed_by(&key, &issuer).expect("leaf cert");
            Pair {
                cert: cert.pem(),
                key: key.serialize_pem(),
            }
        };
        let server = leaf(vec!["localhost".into(), "127.0.0.1".into()], "server");
        let client = leaf(vec!["prometheus.test".into()], "prometheus");
        let stranger = {
            let key = KeyPair::generate().expect("stranger key");
            let params = CertificateParams::new(vec!["prometheus.test".to_string()])
                .expect("stranger params");
            let cert = params.self_signed(&key).expect("stranger cert");
            Pair {
                cert: cert.pem(),
                key: key.serialize_pem(),
            }
        };

        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir(dir.path().join("tls")).expect("tls dir");
        write(dir.path(), "tls/ca.pem", &ca_cert.pem());
        write(dir.path(), "tls/server.pem", &server.cert);
        write(dir.path(), "tls/server.key", &server.key);
        Self {
            dir,
            ca: ca_cert.pem(),
            client,
            stranger,
        }
    }

    /// Writes a web config next to the certificates and loads it.
    fn load(&self, name: &str, yaml: &str) -> WebState {
        let path = write(self.dir.path(), name, yaml);
        load_web_config(&path).unwrap_or_else(|e| panic!("{name}: {e}"))
    }

    /// Writes a web config and returns the error loading it.
    fn error(&self, name: &str, yaml: &str) -> String {
        let path = write(self.dir.path(), name, yaml);
        load_web_config(&path)
            .expect_err("the web config is rejected")
            .to_string()
    }
}

pub(super) fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write file");
    path
}

/// The certificate paths, relative to the web config file's directory.
pub(super) const TLS: &str =
    "tls_server_config:\n  cert_file: tls/server.pem\n  key_file: tls/server.key\n";

// ---------------------------------------------------------------------------------------------
// Server and clients.

pub(super) struct Server {
    pub(super) addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl Server {
    pub(super) async fn start(web: WebConfigHandle, reload: Option<ReloadHook>) -> Self {
        Self::start_with(web, reload, HttpTimeouts::default()).await
    }

    async fn start_with(
        web: WebConfigHandle,
        reload: Option<ReloadHook>,
        timeouts: HttpTimeouts,
    ) -> Self {
        let settings = HttpSettings {
            listen_addresses: vec!["127.0.0.1:0".to_string()],
            timeouts,
            ..HttpSettings::default()
        };
        let listeners = http::bind(&settings).await.expect("bind loopback");
        let addr = listeners[0].local_addr().expect("local address");
        let (tx, rx) = oneshot::channel::<()>();
        // A replica that owns no portal: ready, with an exposition of exporter series only.
        let store = Arc::new(Store::new());
        store.set_owned([]);
        let task = tokio::spawn(http::serve_with(
            listeners,
            Arc::new(Exposition::new(store)),
            settings,
            WebOptions { web, reload },
            async move {
                let _ = rx.await;
            },
        ));
        Self {
            addr,
            shutdown: Some(tx),
            task,
        }
    }

    pub(super) async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        tokio::time::timeout(STEP, &mut self.task)
            .await
            .expect("serve returns after shutdown")
            .expect("serve does not panic");
    }

    async fn tcp(&self) -> TcpStream {
        tokio::time::timeout(STEP, TcpStream::connect(self.addr))
            .await
            .expect("connect in time")
            .expect("connect")
    }

    /// A plain-HTTP request; `Err` if the server answers no HTTP response.
    async fn plain(&self, method: &str, path: &str, headers: &[(&str, &str)]) -> Reply {
        exchange(self.tcp().await, method, path, headers)
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
    }

    pub(super) async fn get(&self, path: &str, headers: &[(&str, &str)]) -> Reply {
        self.plain("GET", path, headers).await
    }

    /// A request over TLS with `client`; `Err` when the handshake or the exchange fails.
    async fn tls(&self, client: &Arc<ClientConfig>, path: &str) -> std::io::Result<Reply> {
        tls_request(self.addr, client, path, &[]).await
    }
}

/// Connects to `addr`, handshakes as `client` and sends one GET; `Err` on any failure.
async fn tls_request(
    addr: SocketAddr,
    client: &Arc<ClientConfig>,
    path: &str,
    headers: &[(&str, &str)],
) -> std::io::Result<Reply> {
    exchange(tls_connect(addr, client).await?, "GET", path, headers).await
}

/// A connection to `addr` and a TLS handshake as `client` (server name `localhost`), each
/// bounded by [`STEP`].
pub(super) async fn tls_connect(
    addr: SocketAddr,
    client: &Arc<ClientConfig>,
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let tcp = tokio::time::timeout(STEP, TcpStream::connect(addr))
        .await
        .expect("connect in time")?;
    let name = ServerName::try_from("localhost").expect("server name");
    tokio::time::timeout(
        STEP,
        TlsConnector::from(Arc::clone(client)).connect(name, tcp),
    )
    .await
    .expect("handshake ends in time")
}

#[derive(Debug)]
pub(super) struct Reply {
    pub(super) status: u16,
    headers: Vec<(String, String)>,
    pub(super) body: String,
}

impl Reply {
    pub(super) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Sends one request with `Connection: close` and reads the response to the end.
pub(super) async fn exchange<S>(
    mut stream: S,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> std::io::Result<Reply>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut raw = format!("{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n");
    for (name, value) in headers {
        raw.push_str(&format!("{name}: {value}\r\n"));
    }
    raw.push_str("\r\n");
    stream.write_all(raw.as_bytes()).await?;
    stream.flush().await?;
    let mut all = Vec::new();
    let read = tokio::time::timeout(STEP, stream.read_to_end(&mut all))
        .await
        .expect("the server answers and closes in time");
    // A peer that closes without TLS close_notify after a whole response is fine.
    if let Err(e) = read
        && all.is_empty()
    {
        return Err(e);
    }
    parse(&all)
}

fn parse(raw: &[u8]) -> std::io::Result<Reply> {
    let bad =
        |what: &str| std::io::Error::other(format!("{what}: {:?}", String::from_utf8_lossy(raw)));
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| bad("no response head"))?;
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .filter(|l| l.starts_with("HTTP/1.1 "))
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("no status line"))?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
        .collect();
    Ok(Reply {
        status,
        headers,
        body: String::from_utf8_lossy(&raw[split + 4..]).to_string(),
    })
}

pub(super) fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// A TLS client trusting the test CA, speaking `versions`, presenting `identity` if given.
pub(super) fn client(
    pki: &Pki,
    versions: &[&'static SupportedProtocolVersion],
    identity: Option<&Pair>,
) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(pki.ca.as_bytes()) {
        roots.add(cert.expect("CA PEM")).expect("CA certificate");
    }
    let builder = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(versions)
        .expect("versions")
        .with_root_certificates(roots);
    let config = match identity {
        None => builder.with_no_client_auth(),
        Some(pair) => {
            let chain = CertificateDer::pem_slice_iter(pair.cert.as_bytes())
                .collect::<Result<Vec<_>, _>>()
                .expect("client chain");
            let key = PrivateKeyDer::from_pem_slice(pair.key.as_bytes()).expect("client key");
            builder
                .with_client_auth_cert(chain, key)
                .expect("client identity")
        }
    };
    Arc::new(config)
}

pub(super) const BOTH: &[&SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];

pub(super) fn basic(user: &str, password: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

/// A `basic_auth_users` section (cost 4, the lowest, to keep the tests fast).
pub(super) fn users(pairs: &[(&str, &str)]) -> String {
    let mut yaml = String::from("basic_auth_users:\n");
    for (user, password) in pairs {
        let hash = bcrypt::hash(password, 4).expect("bcrypt");
        yaml.push_str(&format!("  {user}: '{hash}'\n"));
    }
    yaml
}

// ---------------------------------------------------------------------------------------------
// TLS.

#[tokio::test]
async fn metrics_are_served_over_tls_and_plain_http_gets_no_answer() {
    let pki = Pki::new();
    let web = pki.load("web.yml", TLS);
    assert!(web.tls_enabled() && !web.basic_auth_enabled());
    let server = Server::start(WebConfigHandle::new(web), None).await;

    let reply = server
        .tls(&client(&pki, BOTH, None), "/metrics")
        .await
        .expect("TLS request");
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.header("content-type"),
        Some(http::EXPOSITION_CONTENT_TYPE)
    );
    assert!(reply.body.contains("# TYPE"), "{}", reply.body);

    // A plain-HTTP client on the TLS port gets no HTTP response.
    let plain = exchange(server.tcp().await, "GET", "/metrics", &[]).await;
    assert!(plain.is_err(), "{plain:?}");
    server.stop().await;
}

#[tokio::test]
async fn mutual_tls_requires_a_client_certificate_signed_by_the_ca() {
    let pki = Pki::new();
    let web = pki.load(
        "web.yml",
        &format!(
            "{TLS}  client_ca_file: tls/ca.pem\n  client_auth_type: RequireAndVerifyClientCert\n"
        ),
    );
    let server = Server::start(WebConfigHandle::new(web), None).await;

    let none = server.tls(&client(&pki, BOTH, None), "/metrics").await;
    assert!(none.is_err(), "no client certificate: {none:?}");
    let stranger = server
        .tls(&client(&pki, BOTH, Some(&pki.stranger)), "/metrics")
        .await;
    assert!(
        stranger.is_err(),
        "self-signed client certificate: {stranger:?}"
    );
    // The same failures over TLS 1.2, where the handshake itself fails.
    let tls12 = &[&rustls::version::TLS12][..];
    assert!(
        server
            .tls(&client(&pki, tls12, None), "/metrics")
            .await
            .is_err()
    );
    assert!(
        server
            .tls(&client(&pki, tls12, Some(&pki.stranger)), "/metrics")
            .await
            .is_err()
    );

    let good = server
        .tls(&client(&pki, BOTH, Some(&pki.client)), "/metrics")
        .await
        .expect("client signed by the CA");
    assert_eq!(good.status, 200);
    server.stop().await;
}

#[tokio::test]
async fn verify_if_given_accepts_no_certificate_but_not_a_bad_one() {
    let pki = Pki::new();
    let web = pki.load(
        "web.yml",
        &format!(
            "{TLS}  client_ca_file: tls/ca.pem\n  client_auth_type: VerifyClientCertIfGiven\n"
        ),
    );
    let server = Server::start(WebConfigHandle::new(web), None).await;
    let none = server
        .tls(&client(&pki, BOTH, None), "/-/healthy")
        .await
        .expect("no certificate is fine");
    assert_eq!(none.status, 200);
    let good = server
        .tls(&client(&pki, BOTH, Some(&pki.client)), "/-/healthy")
        .await
        .expect("good certificate");
    assert_eq!(good.status, 200);
    let bad = server
        .tls(&client(&pki, BOTH, Some(&pki.stranger)), "/-/healthy")
        .await;
    assert!(bad.is_err(), "{bad:?}");
    server.stop().await;
}

#[tokio::test]
async fn min_version_tls13_rejects_a_tls12_only_client() {
    let pki = Pki::new();
    let tls12_only = client(&pki, &[&rustls::version::TLS12], None);
    let tls13_only = client(&pki, &[&rustls::version::TLS13], None);

    // The TLS 1.2 client works against the default (TLS12 and up)...
    let default = Server::start(WebConfigHandle::new(pki.load("web.yml", TLS)), None).await;
    let reply = default
        .tls(&tls12_only, "/-/healthy")
        .await
        .expect("TLS 1.2 by default");
    assert_eq!(reply.status, 200);
    default.stop().await;

    // ...and is refused with min_version: TLS13, while a TLS 1.3 client is served.
    let web = pki.load("web13.yml", &format!("{TLS}  min_version: TLS13\n"));
    let strict = Server::start(WebConfigHandle::new(web), None).await;
    let refused = strict.tls(&tls12_only, "/-/healthy").await;
    assert!(refused.is_err(), "{refused:?}");
    let reply = strict
        .tls(&tls13_only, "/-/healthy")
        .await
        .expect("TLS 1.3 client");
    assert_eq!(reply.status, 200);
    strict.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_tls_client_is_timed_out_without_blocking_others() {
    let pki = Pki::new();
    let timeouts = HttpTimeouts {
        tls_handshake: Duration::from_millis(300),
        ..HttpTimeouts::default()
    };
    let server = Server::start_with(
        WebConfigHandle::new(pki.load("web.yml", TLS)),
        None,
        timeouts,
    )
    .await;
    // Connects and never starts the handshake.
    let mut silent = server.tcp().await;
    // Meanwhile another client is served: the handshake does not hold up accepting.
    let reply = server
        .tls(&client(&pki, BOTH, None), "/-/healthy")
        .await
        .expect("served while another handshake is pending");
    assert_eq!(reply.status, 200);
    // The silent one is closed by the server (read returns EOF or a reset), not left open.
    let mut sink = Vec::new();
    let read = tokio::time::timeout(STEP, silent.read_to_end(&mut sink))
        .await
        .expect("the server closes a silent TLS connection");
    assert!(read.is_err() || sink.is_empty(), "{sink:?}");
    server.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Basic auth and headers.

#[tokio::test]
async fn basic_auth_guards_every_path_but_healthy() {
    let pki = Pki::new();
    let web = pki.load(
        "web.yml",
        &users(&[("prometheus", "s3cret"), ("other", "x")]),
    );
    assert_eq!(web.basic_auth_users(), ["other", "prometheus"]);
    let server = Server::start(WebConfigHandle::new(web), None).await;
    let good = basic("prometheus", "s3cret");
    let auth = [("Authorization", good.as_str())];

    let missing = server.get("/metrics", &[]).await;
    assert_eq!(missing.status, 401);
    assert_eq!(missing.header("www-authenticate"), Some(REALM));
    for wrong in [
        basic("prometheus", "wrong"),
        basic("prometheus", ""),
        basic("nobody", "s3cret"),
        basic("other", "s3cret"),
        "Bearer s3cret".to_string(),
    ] {
        let reply = server
            .get("/metrics", &[("Authorization", wrong.as_str())])
            .await;
        assert_eq!(reply.status, 401, "{wrong}");
        assert_eq!(reply.header("www-authenticate"), Some(REALM));
    }
    // Twice: the second answer comes from the verified-credentials cache.
    for _ in 0..2 {
        let ok = server.get("/metrics", &auth).await;
        assert_eq!(ok.status, 200);
        assert!(ok.body.contains("# TYPE"));
    }

    assert_eq!(server.get("/-/healthy", &[]).await.status, 200);
    assert_eq!(server.plain("HEAD", "/-/healthy", &[]).await.status, 200);
    for path in ["/-/ready", "/", "/nope", "/-/reload"] {
        let reply = server.get(path, &[]).await;
        assert_eq!(reply.status, 401, "{path}");
        assert_eq!(reply.header("www-authenticate"), Some(REALM), "{path}");
    }
    assert_eq!(server.get("/-/ready", &auth).await.status, 200);
    assert_eq!(server.get("/", &auth).await.status, 200);
    assert_eq!(server.get("/nope", &auth).await.status, 404);
    server.stop().await;
}

#[tokio::test]
async fn basic_auth_works_over_tls_too() {
    let pki = Pki::new();
    let web = pki.load("web.yml", &format!("{TLS}{}", users(&[("u", "p")])));
    let server = Server::start(WebConfigHandle::new(web), None).await;
    let config = client(&pki, BOTH, None);
    let unauthenticated = server.tls(&config, "/metrics").await.expect("TLS request");
    assert_eq!(unauthenticated.status, 401);

    let auth = basic("u", "p");
    let reply = tls_request(
        server.addr,
        &config,
        "/metrics",
        &[("Authorization", &auth)],
    )
    .await
    .expect("request");
    assert_eq!(reply.status, 200);
    server.stop().await;
}

#[tokio::test]
async fn extra_headers_are_added_to_every_response() {
    let pki = Pki::new();
    let yaml = format!(
        "http_server_config:\n  headers:\n    Strict-Transport-Security: max-age=31536000\n    X-Frame-Options: deny\n    Content-Security-Policy: \"default-src 'self'\"\n{}",
        users(&[("u", "p")])
    );
    let server = Server::start(WebConfigHandle::new(pki.load("web.yml", &yaml)), None).await;
    let auth = basic("u", "p");
    let auth = [("Authorization", auth.as_str())];
    for (path, headers, status) in [
        ("/metrics", &auth[..], 200),
        ("/nope", &auth[..], 404),
        ("/metrics", &[][..], 401),
        ("/-/healthy", &[][..], 200),
    ] {
        let reply = server.get(path, headers).await;
        assert_eq!(reply.status, status, "{path}");
        assert_eq!(
            reply.header("strict-transport-security"),
            Some("max-age=31536000"),
            "{path}"
        );
        assert_eq!(reply.header("x-frame-options"), Some("deny"), "{path}");
        assert_eq!(
            reply.header("content-security-policy"),
            Some("default-src 'self'"),
            "{path}"
        );
    }
    // The landing page keeps its own, stricter policy (the handler's header wins, as in Go).
    let landing = server.get("/", &auth).await;
    assert_eq!(landing.status, 200);
    assert_eq!(
        landing.header("content-security-policy"),
        Some("default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'")
    );
    assert_eq!(landing.header("x-frame-options"), Some("deny"));
    server.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Reload.

#[tokio::test]
async fn the_reload_route_calls_the_hook_and_reports_its_error() {
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&calls);
    let ok: ReloadHook = Arc::new(move || {
        let counter = Arc::clone(&counter);
        Box::pin(async move {
            counter.fetch_add(1, Ordering::SeqCst);
            Ok(())
        })
    });
    let server = Server::start(WebConfigHandle::default(), Some(ok)).await;
    let reply = server
        .plain("POST", "/-/reload", &[("Content-Length", "0")])
        .await;
    assert_eq!((reply.status, reply.body.as_str()), (200, "OK"));
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    let get = server.get("/-/reload", &[]).await;
    assert_eq!(get.status, 405);
    assert_eq!(get.header("allow"), Some("POST"));
    assert_eq!(calls.load(Ordering::SeqCst), 1, "GET does not reload");
    server.stop().await;

    let failing: ReloadHook = Arc::new(|| {
        Box::pin(async { Err("config.yml:3:5: portals[0].id: not a portal id".to_string()) })
    });
    let server = Server::start(WebConfigHandle::default(), Some(failing)).await;
    let reply = server
        .plain("POST", "/-/reload", &[("Content-Length", "0")])
        .await;
    assert_eq!(reply.status, 400);
    assert_eq!(
        reply.body,
        "config.yml:3:5: portals[0].id: not a portal id\n"
    );
    server.stop().await;
}

#[tokio::test]
async fn replacing_the_web_config_switches_users_and_a_reload_hook_can_do_it() {
    let pki = Pki::new();
    let handle = WebConfigHandle::new(pki.load("web.yml", &users(&[("u", "old")])));
    // The hook re-reads web.yml, as the daemon's reload will.
    let path = pki.dir.path().join("web.yml");
    let hook_handle = handle.clone();
    let hook: ReloadHook = Arc::new(move || {
        let path = path.clone();
        let handle = hook_handle.clone();
        Box::pin(async move {
            let state = load_web_config(&path).map_err(|e| e.to_string())?;
            handle.replace(state);
            Ok(())
        })
    });
    let server = Server::start(handle.clone(), Some(hook)).await;
    let old = basic("u", "old");
    let new = basic("u", "new");
    assert_eq!(
        server
            .get("/metrics", &[("Authorization", &old)])
            .await
            .status,
        200
    );

    // Direct replace(): the old password stops working at once, the new one works.
    let previous = handle.replace(pki.load("web2.yml", &users(&[("u", "new")])));
    assert!(previous.basic_auth_enabled());
    assert_eq!(
        server
            .get("/metrics", &[("Authorization", &old)])
            .await
            .status,
        401
    );
    assert_eq!(
        server
            .get("/metrics", &[("Authorization", &new)])
            .await
            .status,
        200
    );

    // Through the route: web.yml now holds a third password.
    write(pki.dir.path(), "web.yml", &users(&[("u", "third")]));
    let reload = server
        .plain(
            "POST",
            "/-/reload",
            &[("Authorization", &new), ("Content-Length", "0")],
        )
        .await;
    assert_eq!(reload.status, 200);
    assert_eq!(
        server
            .get("/metrics", &[("Authorization", &new)])
            .await
            .status,
        401
    );
    let third = basic("u", "third");
    assert_eq!(
        server
            .get("/metrics", &[("Authorization", &third)])
            .await
            .status,
        200
    );

    // A broken web.yml: 400 naming the problem, and the running config stays.
    write(
        pki.dir.path(),
        "web.yml",
        "basic_auth_users:\n  u: not-a-hash\n",
    );
    let failed = server
        .plain(
            "POST",
            "/-/reload",
            &[("Authorization", &third), ("Content-Length", "0")],
        )
        .await;
    assert_eq!(failed.status, 400);
    assert!(
        failed.body.contains("basic_auth_users.u"),
        "{}",
        failed.body
    );
    assert_eq!(
        server
            .get("/metrics", &[("Authorization", &third)])
            .await
            .status,
        200
    );
    server.stop().await;
}

/// Before: every reload built a new basic-auth state, so Prometheus paid bcrypt again after
/// each one (and a flood of reloads meant a flood of bcrypt). Now a reload that keeps the users
/// keeps their verified logins: with the bcrypt slot held, a cached login still gets in.
#[tokio::test]
async fn verified_logins_survive_a_reload_that_keeps_the_users() {
    let pki = Pki::new();
    let yaml = format!(
        "{}http_server_config:\n  headers:\n    X-Frame-Options: deny\n",
        users(&[("prom", "pw")])
    );
    let web = WebConfigHandle::new(pki.load("web.yml", &yaml));
    let server = Server::start(web.clone(), None).await;
    let good = basic("prom", "pw");
    assert_eq!(
        server
            .get("/metrics", &[("Authorization", &good)])
            .await
            .status,
        200
    );
    // The same users, another header: a changed web config, the same logins.
    let changed = yaml.replace("deny", "sameorigin");
    web.replace(pki.load("web.yml", &changed));
    let held = web.current().hold_bcrypt_slot().expect("the slot is free");
    let reply = server.get("/metrics", &[("Authorization", &good)]).await;
    assert_eq!(reply.status, 200, "served from the cache, no bcrypt");
    assert_eq!(reply.header("x-frame-options"), Some("sameorigin"));
    drop(held);
    server.stop().await;
}

#[tokio::test]
async fn replacing_the_web_config_turns_tls_on_for_new_connections() {
    let pki = Pki::new();
    let handle = WebConfigHandle::default();
    let server = Server::start(handle.clone(), None).await;
    assert_eq!(server.get("/-/healthy", &[]).await.status, 200);
    handle.replace(pki.load("web.yml", TLS));
    let plain = exchange(server.tcp().await, "GET", "/-/healthy", &[]).await;
    assert!(plain.is_err(), "{plain:?}");
    let reply = server
        .tls(&client(&pki, BOTH, None), "/-/healthy")
        .await
        .expect("TLS after replace");
    assert_eq!(reply.status, 200);
    server.stop().await;
}

// ---------------------------------------------------------------------------------------------
// The parser.

#[test]
fn relative_paths_resolve_against_the_web_config_directory() {
    let pki = Pki::new();
    std::fs::create_dir(pki.dir.path().join("conf")).expect("dir");
    let state = pki.load(
        "conf/web.yml",
        "tls_server_config:\n  cert_file: ../tls/server.pem\n  key_file: ../tls/server.key\n",
    );
    assert!(state.tls_enabled());
    // The working directory (the crate root) has no tls/ directory: relative to the file only.
    assert!(!Path::new("tls/server.pem").exists());
    let plain = pki.load("plain.yml", "http_server_config:\n  http2: false\n");
    assert!(!plain.tls_enabled() && !plain.basic_auth_enabled());
}

#[test]
fn an_unknown_key_is_named_with_the_file() {
    let pki = Pki::new();
    let file = pki.dir.path().join("web.yml").display().to_string();
    let e = pki.error(
        "web.yml",
        "tls_server_config:\n  cert_file: a\n  ciphers: [x]\n",
    );
    assert!(e.contains(&file), "{e}");
    assert!(e.contains("tls_server_config.ciphers"), "{e}");
    assert!(e.contains("unknown field `ciphers`"), "{e}");
    let e = pki.error("web.yml", "basic_auth_user:\n  a: b\n");
    assert!(e.contains("unknown field `basic_auth_user`"), "{e}");
}

#[test]
fn a_missing_certificate_file_is_named() {
    let pki = Pki::new();
    let e = pki.error(
        "web.yml",
        "tls_server_config:\n  cert_file: tls/missing.pem\n  key_file: tls/server.key\n",
    );
    let missing = pki.dir.path().join("tls/missing.pem").display().to_string();
    assert!(e.contains("tls_server_config.cert_file"), "{e}");
    assert!(e.contains(&missing), "{e}");
    let e = pki.error(
        "web.yml",
        "tls_server_config:\n  cert_file: tls/server.pem\n",
    );
    assert!(e.contains("missing one of key or key_file"), "{e}");
}

#[test]
fn an_invalid_bcrypt_hash_is_rejected_naming_the_user() {
    let pki = Pki::new();
    let e = pki.error("web.yml", "basic_auth_users:\n  alice: plaintext\n");
    assert!(e.contains("basic_auth_users.alice"), "{e}");
    assert!(e.contains("not a bcrypt hash"), "{e}");
}

#[test]
fn a_bcrypt_cost_above_14_is_rejected_naming_the_user() {
    let pki = Pki::new();
    // A real cost-4 hash with its cost field raised: well-formed, and no need to spend the
    // seconds a cost-15 hash takes to make.
    let cost4 = bcrypt::hash("pw", 4).expect("bcrypt");
    assert!(cost4.starts_with("$2b$04$"));
    let yaml = |cost: &str| {
        format!(
            "basic_auth_users:\n  ok: '{cost4}'\n  slow: '{}'\n",
            cost4.replacen("$04$", &format!("${cost}$"), 1)
        )
    };
    let error = pki.error("cost15.yml", &yaml("15"));
    assert!(error.contains("cost15.yml"), "{error}");
    assert!(error.contains("basic_auth_users.slow"), "{error}");
    assert!(error.contains("bcrypt cost 15"), "{error}");
    assert!(error.contains("4 to 14"), "{error}");
    // 14 is the highest accepted.
    pki.load("cost14.yml", &yaml("14"));
}

/// Before: a request waited for the single bcrypt slot without bound, so a flood of wrong
/// passwords queued every scrape behind it.
#[tokio::test]
async fn a_request_waiting_too_long_for_bcrypt_gets_503() {
    let pki = Pki::new();
    let web = WebConfigHandle::new(pki.load("web.yml", &users(&[("prometheus", "s3cret")])));
    let server = Server::start(web.clone(), None).await;
    let good = basic("prometheus", "s3cret");
    let wrong = basic("prometheus", "guess");
    // A verification that does not end holds the slot.
    let held = web.current().hold_bcrypt_slot().expect("the slot is free");
    for credentials in [&good, &wrong] {
        let reply = tokio::time::timeout(
            Duration::from_secs(15),
            server.get("/metrics", &[("Authorization", credentials.as_str())]),
        )
        .await
        .expect("answered within the slot wait (2 s), not queued without end");
        assert_eq!(reply.status, 503);
        assert_eq!(reply.header("retry-after"), Some("1"));
    }
    // Health needs no credentials and is not affected.
    assert_eq!(server.get("/-/healthy", &[]).await.status, 200);
    drop(held);
    let reply = server
        .get("/metrics", &[("Authorization", good.as_str())])
        .await;
    assert_eq!(reply.status, 200);
    let reply = server
        .get("/metrics", &[("Authorization", wrong.as_str())])
        .await;
    assert_eq!(reply.status, 401);
    server.stop().await;
}

#[test]
fn tls_settings_rustls_cannot_honour_are_rejected_clearly() {
    let pki = Pki::new();
    for (extra, key, words) in [
        (
            "  client_auth_type: Sometimes\n",
            "client_auth_type",
            "unknown value",
        ),
        (
            "  min_version: TLS10\n",
            "min_version",
            "TLS10 is not supported: rustls speaks TLS12 and TLS13 only",
        ),
        (
            "  max_version: TLS14\n",
            "max_version",
            "unknown TLS version",
        ),
        (
            "  min_version: TLS13\n  max_version: TLS12\n",
            "min_version",
            "higher than max_version",
        ),
        (
            "  client_ca_file: tls/ca.pem\n",
            "client_ca_file",
            "without a client_auth_type",
        ),
        (
            "  cipher_suites: [TLS_AES_128_GCM_SHA256, TLS_RSA_WITH_AES_128_CBC_SHA]\n",
            "cipher_suites[1]",
            "TLS_RSA_WITH_AES_128_CBC_SHA is not supported",
        ),
        (
            "  curve_preferences: [X25519, CurveP521]\n",
            "curve_preferences[1]",
            "CurveP521 is not supported",
        ),
        (
            "  client_auth_type: VerifyClientCertIfGiven\n  client_ca_file: tls/ca.pem\n  client_allowed_sans: [x]\n",
            "client_allowed_sans",
            "needs client_auth_type RequireAnyClientCert or RequireAndVerifyClientCert",
        ),
    ] {
        let e = pki.error("web.yml", &format!("{TLS}{extra}"));
        assert!(
            e.contains(&format!("tls_server_config.{key}")),
            "{extra}: {e}"
        );
        assert!(e.contains(words), "{extra}: {e}");
    }
}

#[test]
fn a_key_that_does_not_fit_the_certificate_is_rejected() {
    let pki = Pki::new();
    write(pki.dir.path(), "tls/client.key", &pki.client.key);
    let e = pki.error(
        "web.yml",
        "tls_server_config:\n  cert_file: tls/server.pem\n  key_file: tls/client.key\n",
    );
    assert!(e.contains("tls_server_config.key_file"), "{e}");
    assert!(e.contains("does not fit"), "{e}");
    let e = pki.error(
        "web.yml",
        "tls_server_config:\n  cert_file: tls/server.key\n  key_file: tls/server.key\n",
    );
    assert!(e.contains("no certificate found"), "{e}");
}

// ---------------------------------------------------------------------------------------------
// The binary.

/// Runs the exporter with `args` until it exits (bounded: a hang guard, not a timing check).
fn run_binary(args: &[&str]) -> (Option<i32>, String) {
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_workspacesweb-exporter"))
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start the exporter");
    let mut child = common::Child(child);
    let status = common::poll_until(Duration::from_secs(60), || {
        child.0.try_wait().ok().flatten()
    })
    .expect("the exporter exits");
    let mut stderr = String::new();
    if let Some(mut pipe) = child.0.stderr.take() {
        use std::io::Read;
        pipe.read_to_string(&mut stderr).expect("read stderr");
    }
    (status.code(), stderr)
}

#[test]
fn the_binary_exits_1_on_an_invalid_web_config() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = write(
        dir.path(),
        "web.yml",
        "tls_server_config:\n  cert_file: nowhere.pem\n  key_file: nowhere.key\n",
    );
    let path = path.display().to_string();
    let (code, stderr) = run_binary(&[
        "--demo",
        "--web.listen-address",
        "127.0.0.1:0",
        "--web.config.file",
        &path,
    ]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains(&path), "{stderr}");
    assert!(stderr.contains("tls_server_config.cert_file"), "{stderr}");
    assert!(stderr.contains("nowhere.pem"), "{stderr}");

    let missing = dir.path().join("absent.yml").display().to_string();
    let (code, stderr) = run_binary(&["--demo", "--web.config.file", &missing]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains(&missing) && stderr.contains("cannot read"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_serves_tls_with_basic_auth() {
    let pki = Pki::new();
    let path = write(
        pki.dir.path(),
        "web.yml",
        &format!("{TLS}{}", users(&[("prom", "pw")])),
    );
    let port = common::free_port();
    let address = format!("127.0.0.1:{port}");
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_workspacesweb-exporter"))
        .args([
            "--demo",
            "--web.listen-address",
            &address,
            "--web.config.file",
        ])
        .arg(&path)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start the exporter");
    let _child = common::Child(child);
    let config = client(&pki, BOTH, None);
    let addr: SocketAddr = address.parse().expect("address");
    // Wait for the listener: bounded connection attempts (the process offers no other signal).
    let mut healthy = None;
    for _ in 0..600 {
        if let Ok(reply) = tls_request(addr, &config, "/-/healthy", &[]).await {
            healthy = Some(reply);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let healthy = healthy.expect("the exporter answers over TLS");
    assert_eq!(healthy.status, 200);
    let metrics = tls_request(addr, &config, "/metrics", &[])
        .await
        .expect("request");
    assert_eq!(metrics.status, 401);
    assert_eq!(metrics.header("www-authenticate"), Some(REALM));
}

#[test]
fn config_check_also_checks_the_web_config() {
    let dir = tempfile::tempdir().expect("temp dir");
    let bad = write(dir.path(), "web.yml", "basic_auth_users:\n  bob: hunter2\n");
    let bad = bad.display().to_string();
    let config = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/config/minimal.yaml"
    );
    let (code, stderr) = run_binary(&[
        "--config.check",
        "--config.file",
        config,
        "--web.config.file",
        &bad,
    ]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains(&bad) && stderr.contains("basic_auth_users.bob"),
        "{stderr}"
    );
    let good = write(
        dir.path(),
        "good.yml",
        "http_server_config:\n  http2: false\n",
    );
    let good = good.display().to_string();
    let (code, stderr) = run_binary(&[
        "--config.check",
        "--config.file",
        config,
        "--web.config.file",
        &good,
    ]);
    assert_eq!(code, Some(0), "{stderr}");
}
