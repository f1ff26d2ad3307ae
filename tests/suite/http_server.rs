//! The HTTP server over real loopback TCP, driven by hand-written HTTP/1.1 requests.

use std::io::Read;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::common::raw_http;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use workspacesweb_exporter::exposition::Exposition;
use workspacesweb_exporter::http::{
    self, EXPOSITION_CONTENT_TYPE, HttpError, HttpSettings, HttpTimeouts, parse_listen_address,
};
use workspacesweb_exporter::ledger::ActiveSummary;
use workspacesweb_exporter::snapshot::{PortalSnapshot, Store};

/// Upper bound on any single network step, so that a bug fails the test instead of hanging it.
pub(super) const STEP: Duration = Duration::from_secs(30);

const PORTAL_UP: &str = "11111111-2222-3333-4444-555555555555";
const PORTAL_DOWN: &str = "22222222-3333-4444-5555-666666666666";
const PORTAL_PENDING: &str = "33333333-4444-5555-6666-777777777777";

// ---------------------------------------------------------------------------------------------
// A running server and a tiny HTTP/1.1 client.

pub(super) struct Server {
    pub(super) addr: SocketAddr,
    store: Arc<Store>,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl Server {
    async fn start(store: Arc<Store>) -> Self {
        Self::start_with(store, settings()).await
    }

    pub(super) async fn start_with(store: Arc<Store>, settings: HttpSettings) -> Self {
        Self::serve(Arc::new(Exposition::new(store)), settings).await
    }

    /// Serves an exposition the test keeps a handle on.
    async fn serve(exposition: Arc<Exposition>, settings: HttpSettings) -> Self {
        let store = Arc::clone(exposition.store());
        let listeners = http::bind(&settings).await.expect("bind loopback");
        let addr = listeners[0].local_addr().expect("local address");
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(http::serve(listeners, exposition, settings, async move {
            let _ = rx.await;
        }));
        Self {
            addr,
            store,
            shutdown: Some(tx),
            task,
        }
    }

    /// Signals shutdown and waits for `serve` to return.
    pub(super) async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        tokio::time::timeout(STEP, &mut self.task)
            .await
            .expect("serve returns after shutdown")
            .expect("serve does not panic");
    }

    async fn request(&self, method: &str, path: &str, headers: &[(&str, &str)]) -> Reply {
        let mut stream = connect(self.addr).await;
        let mut raw = format!("{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n");
        for (name, value) in headers {
            raw.push_str(&format!("{name}: {value}\r\n"));
        }
        raw.push_str("\r\n");
        stream.write_all(raw.as_bytes()).await.expect("send");
        let reply = read_response(&mut stream, method == "HEAD").await;
        let mut rest = Vec::new();
        tokio::time::timeout(STEP, stream.read_to_end(&mut rest))
            .await
            .expect("server closes the connection")
            .expect("read after response");
        assert!(
            rest.is_empty(),
            "bytes after the response: {:?}",
            String::from_utf8_lossy(&rest)
        );
        reply
    }

    async fn get(&self, path: &str) -> Reply {
        self.request("GET", path, &[]).await
    }
}

pub(super) fn settings() -> HttpSettings {
    HttpSettings {
        listen_addresses: vec!["127.0.0.1:0".to_string()],
        telemetry_path: "/metrics".to_string(),
        max_connections: 512,
        timeouts: HttpTimeouts::default(),
        openmetrics: false,
    }
}

async fn connect(addr: SocketAddr) -> TcpStream {
    tokio::time::timeout(STEP, TcpStream::connect(addr))
        .await
        .expect("connect in time")
        .expect("connect")
}

#[derive(Debug)]
pub(super) struct Reply {
    pub(super) status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn text(&self) -> String {
        String::from_utf8(self.body.clone()).expect("utf-8 body")
    }
}

/// Reads one response (head, then `Content-Length` bytes unless it answers a HEAD request).
pub(super) async fn read_response(
    stream: &mut (impl AsyncRead + Unpin),
    head_request: bool,
) -> Reply {
    tokio::time::timeout(STEP, read_response_inner(stream, head_request))
        .await
        .expect("response in time")
}

async fn read_response_inner(stream: &mut (impl AsyncRead + Unpin), head_request: bool) -> Reply {
    let response = raw_http::read_response(stream, head_request)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        response.header("transfer-encoding").is_none(),
        "the server sends whole bodies with Content-Length"
    );
    Reply {
        status: response.status,
        headers: response.headers,
        body: response.body,
    }
}

fn gunzip(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_end(&mut out)
        .expect("valid gzip");
    out
}

/// The exposition without `process_*` series, which may change between two scrapes.
fn stable_lines(exposition: &[u8]) -> String {
    String::from_utf8_lossy(exposition)
        .lines()
        .filter(|l| !l.contains("process_"))
        .collect::<Vec<_>>()
        .join("\n")
}

// ---------------------------------------------------------------------------------------------
// Portal fixtures.

fn up_portal() -> PortalSnapshot {
    PortalSnapshot {
        portal_id: PORTAL_UP.to_string(),
        labels: vec![("env".to_string(), "prod".to_string())],
        up: true,
        polled: true,
        active: Some(ActiveSummary {
            sessions: 42,
            users: 40,
            max_age_seconds: 3600.0,
            peak: 45,
        }),
        last_poll_unix: Some(1_700_000_000.0),
        last_success_unix: Some(1_700_000_000.0),
        poll_duration_seconds: Some(0.25),
        ..Default::default()
    }
}

fn down_portal() -> PortalSnapshot {
    PortalSnapshot {
        portal_id: PORTAL_DOWN.to_string(),
        labels: vec![("team".to_string(), "support & <ops>".to_string())],
        up: false,
        polled: true,
        last_poll_unix: Some(1_700_000_060.0),
        last_error: Some("User: arn:aws:sts::123456789012:assumed-role/secret".to_string()),
        last_error_code: Some("AccessDeniedException: <script>alert('x')</script>".to_string()),
        ..Default::default()
    }
}

fn pending_portal() -> PortalSnapshot {
    PortalSnapshot {
        portal_id: PORTAL_PENDING.to_string(),
        ..Default::default()
    }
}

pub(super) fn store_with_portals() -> Arc<Store> {
    let store = Arc::new(Store::new());
    store.set_owned([
        PORTAL_UP.to_string(),
        PORTAL_DOWN.to_string(),
        PORTAL_PENDING.to_string(),
    ]);
    store.publish(up_portal());
    store.publish(down_portal());
    store.publish(pending_portal());
    store
}

// ---------------------------------------------------------------------------------------------
// Endpoints.

#[tokio::test]
async fn healthy_answers_200_while_running() {
    let server = Server::start(Arc::new(Store::new())).await;
    let reply = server.get("/-/healthy").await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.text(), "Healthy");
    server.stop().await;
}

#[tokio::test]
async fn ready_is_503_until_every_owned_portal_has_been_polled() {
    let store = Arc::new(Store::new());
    store.set_owned([PORTAL_UP.to_string(), PORTAL_DOWN.to_string()]);
    let server = Server::start(Arc::clone(&store)).await;

    let reply = server.get("/-/ready").await;
    assert_eq!(reply.status, 503);
    // What it waits for, for whoever curls it.
    assert_eq!(
        reply.text(),
        "Not Ready: waiting for 2 portals' first poll\n"
    );
    store.publish(up_portal());
    assert_eq!(
        server.get("/-/ready").await.status,
        503,
        "one portal still pending"
    );
    store.publish(PortalSnapshot {
        polled: false,
        ..down_portal()
    });
    assert_eq!(
        server.get("/-/ready").await.status,
        503,
        "published but not polled"
    );
    // A failed first poll counts as finished.
    store.publish(down_portal());
    let reply = server.get("/-/ready").await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.text(), "Ready");
    server.stop().await;
}

#[tokio::test]
async fn landing_page_shows_version_links_and_every_portal_escaped() {
    let server = Server::start(store_with_portals()).await;
    let reply = server.get("/").await;
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    let page = reply.text();
    assert!(page.contains(workspacesweb_exporter::VERSION), "{page}");
    for link in [
        "href=\"/metrics\"",
        "href=\"/-/healthy\"",
        "href=\"/-/ready\"",
    ] {
        assert!(page.contains(link), "missing {link}");
    }
    for id in [PORTAL_UP, PORTAL_DOWN, PORTAL_PENDING] {
        assert!(page.contains(id), "missing portal {id}");
    }
    assert!(
        page.contains("AccessDeniedException: &lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;")
    );
    assert!(!page.contains("<script"), "unescaped markup from an error");
    assert!(
        !page.contains("123456789012"),
        "the service's message is never shown, only the code"
    );
    assert!(page.contains("support &amp; &lt;ops&gt;"));
    assert!(
        page.contains("2023-11-14T22:13:20Z"),
        "last poll time in UTC"
    );
    assert!(page.contains(">42</td>"), "active sessions");
    assert!(page.contains("pending first poll"));
    assert!(page.contains(">down</td>"));
    assert!(page.contains(">up</td>"));
    server.stop().await;
}

#[tokio::test]
async fn metrics_serve_the_exposition_with_its_content_type() {
    let server = Server::start(store_with_portals()).await;
    let reply = server.get("/metrics").await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("content-type"), Some(EXPOSITION_CONTENT_TYPE));
    assert_eq!(reply.header("vary"), Some("Accept, Accept-Encoding"));
    assert_eq!(reply.header("content-encoding"), None);
    assert_eq!(
        stable_lines(&reply.body),
        stable_lines(&workspacesweb_exporter::exposition::render_text(
            &server.store
        ))
    );
    server.stop().await;
}

#[tokio::test]
async fn metrics_are_gzipped_only_when_the_client_accepts_gzip() {
    let server = Server::start(store_with_portals()).await;
    let identity = server.get("/metrics").await;
    assert_eq!(identity.status, 200);

    for accepted in ["gzip", "deflate, gzip;q=0.8", "*", "x-gzip"] {
        let reply = server
            .request("GET", "/metrics", &[("Accept-Encoding", accepted)])
            .await;
        assert_eq!(reply.status, 200);
        assert_eq!(reply.header("content-encoding"), Some("gzip"), "{accepted}");
        assert_eq!(reply.header("vary"), Some("Accept, Accept-Encoding"));
        assert_eq!(reply.header("content-type"), Some(EXPOSITION_CONTENT_TYPE));
        assert_eq!(
            stable_lines(&gunzip(&reply.body)),
            stable_lines(&identity.body),
            "{accepted}"
        );
    }

    for refused in ["gzip;q=0", "identity", "br", "*;q=0", "gzip;q=0, *"] {
        let reply = server
            .request("GET", "/metrics", &[("Accept-Encoding", refused)])
            .await;
        assert_eq!(reply.status, 200);
        assert_eq!(reply.header("content-encoding"), None, "{refused}");
        assert_eq!(reply.header("vary"), Some("Accept, Accept-Encoding"));
        assert_eq!(stable_lines(&reply.body), stable_lines(&identity.body));
    }
    server.stop().await;
}

#[tokio::test]
async fn head_answers_headers_without_a_body() {
    let server = Server::start(store_with_portals()).await;
    for path in ["/", "/metrics", "/-/healthy", "/-/ready"] {
        // `request` also checks that nothing follows the head before the server closes.
        let reply = server.request("HEAD", path, &[]).await;
        assert_eq!(reply.status, if path == "/-/ready" { 503 } else { 200 });
        assert!(reply.body.is_empty(), "HEAD {path} sent a body");
        assert!(reply.header("content-type").is_some(), "HEAD {path}");
    }
    let page = server.get("/").await;
    let head = server.request("HEAD", "/", &[]).await;
    assert_eq!(
        head.header("content-length"),
        Some(page.body.len().to_string().as_str())
    );
    server.stop().await;
}

#[tokio::test]
async fn other_methods_are_405_with_allow_and_unknown_paths_404() {
    let server = Server::start(store_with_portals()).await;
    for (method, path) in [
        ("POST", "/metrics"),
        ("PUT", "/"),
        ("DELETE", "/-/healthy"),
        ("POST", "/-/ready"),
    ] {
        let reply = server
            .request(method, path, &[("Content-Length", "0")])
            .await;
        assert_eq!(reply.status, 405, "{method} {path}");
        assert_eq!(reply.header("allow"), Some("GET, HEAD"), "{method} {path}");
    }
    // No reload hook (the lifecycle API off): 403, as Prometheus answers; other methods 405.
    let reload = server
        .request("POST", "/-/reload", &[("Content-Length", "0")])
        .await;
    assert_eq!(reload.status, 403);
    assert_eq!(reload.text(), "Lifecycle API is not enabled.\n");
    let reload = server.get("/-/reload").await;
    assert_eq!(reload.status, 405);
    assert_eq!(reload.header("allow"), Some("POST"));

    for path in ["/nope", "/metrics/", "/-/", "/-/healthy/x", "/METRICS"] {
        assert_eq!(server.get(path).await.status, 404, "{path}");
    }
    server.stop().await;
}

#[tokio::test]
async fn a_custom_telemetry_path_is_served_and_linked() {
    let settings = HttpSettings {
        telemetry_path: "/probe/metrics".to_string(),
        ..settings()
    };
    let server = Server::start_with(store_with_portals(), settings).await;
    assert_eq!(server.get("/probe/metrics").await.status, 200);
    assert_eq!(server.get("/metrics").await.status, 404);
    assert!(
        server
            .get("/")
            .await
            .text()
            .contains("href=\"/probe/metrics\"")
    );
    server.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Hostile and broken clients.

#[tokio::test]
async fn malformed_requests_get_400_and_the_server_keeps_serving() {
    let server = Server::start(store_with_portals()).await;
    for garbage in [
        "this is not http\r\n\r\n",
        "GET /metrics HTTP/1.1\r\nBad Header Line\r\n\r\n",
        "\u{0}\u{1}\u{2}\r\n\r\n",
    ] {
        let mut stream = connect(server.addr).await;
        stream.write_all(garbage.as_bytes()).await.expect("send");
        let reply = read_response(&mut stream, false).await;
        assert_eq!(reply.status, 400, "{garbage:?}");
    }
    assert_eq!(server.get("/-/healthy").await.status, 200);
    server.stop().await;
}

#[tokio::test]
async fn an_oversized_request_head_is_refused() {
    let server = Server::start(store_with_portals()).await;
    let mut stream = connect(server.addr).await;
    let huge = "a".repeat(100 * 1024);
    let raw = format!("GET /metrics HTTP/1.1\r\nHost: test\r\nX-Big: {huge}\r\n\r\n");
    // The server may close before reading everything; a failed write is fine.
    let _ = stream.write_all(raw.as_bytes()).await;
    let reply = read_response(&mut stream, false).await;
    assert_eq!(reply.status, 431);
    assert_eq!(server.get("/-/healthy").await.status, 200);
    server.stop().await;
}

#[tokio::test]
async fn request_bodies_on_read_endpoints_are_not_waited_for() {
    let server = Server::start(store_with_portals()).await;
    let mut stream = connect(server.addr).await;
    // Announces a large body and sends none of it: the answer must not wait for it.
    stream
        .write_all(b"GET /-/healthy HTTP/1.1\r\nHost: test\r\nContent-Length: 1000000000\r\n\r\n")
        .await
        .expect("send");
    let reply = read_response(&mut stream, false).await;
    assert_eq!(reply.status, 200);
    server.stop().await;
}

#[tokio::test]
async fn idle_connections_are_closed_after_the_header_read_timeout() {
    let settings = HttpSettings {
        timeouts: HttpTimeouts {
            header_read: Duration::from_millis(200),
            ..HttpTimeouts::default()
        },
        ..settings()
    };
    let server = Server::start_with(store_with_portals(), settings).await;

    // A client that connects and says nothing.
    let mut silent = connect(server.addr).await;
    let mut sink = Vec::new();
    let read = tokio::time::timeout(STEP, silent.read_to_end(&mut sink))
        .await
        .expect("the server closes a silent connection");
    assert!(read.is_err() || sink.is_empty());

    // A keep-alive client that goes idle after one response.
    let mut idle = connect(server.addr).await;
    idle.write_all(b"GET /-/healthy HTTP/1.1\r\nHost: test\r\n\r\n")
        .await
        .expect("send");
    assert_eq!(read_response(&mut idle, false).await.status, 200);
    let mut sink = Vec::new();
    let read = tokio::time::timeout(STEP, idle.read_to_end(&mut sink))
        .await
        .expect("the server closes an idle keep-alive connection");
    assert!(read.is_err() || sink.is_empty());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_answer_with_300_idle_connections_open() {
    let server = Server::start(store_with_portals()).await;
    let mut idle = Vec::with_capacity(300);
    for _ in 0..300 {
        idle.push(connect(server.addr).await);
    }
    // Some idle ones also start a request and stall in the middle of the head.
    for stream in idle.iter_mut().step_by(3) {
        stream
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: te")
            .await
            .expect("send partial head");
    }
    let reply = server.get("/metrics").await;
    assert_eq!(reply.status, 200);
    assert_eq!(server.get("/-/healthy").await.status, 200);
    drop(idle);
    server.stop().await;
}

/// One portal with `n` per-user series: a plain-text exposition of about 130 bytes × 3 × `n`.
fn store_with_users(n: u64) -> Arc<Store> {
    let store = Arc::new(Store::new());
    store.publish(PortalSnapshot {
        users: (0..n)
            .map(|i| workspacesweb_exporter::users::UserSeries {
                username: format!("user-{i:08}@example.com"),
                active: i % 2,
                started: i,
                session_seconds: i as f64,
                created_ms: 1_700_000_000_000,
            })
            .collect(),
        ..up_portal()
    });
    store
}

/// Opens a connection whose receive buffer is tiny, so that the server's writes follow the
/// client's reads.
async fn connect_small_window(addr: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().expect("socket");
    socket
        .set_recv_buffer_size(4096)
        .expect("small receive buffer");
    tokio::time::timeout(STEP, socket.connect(addr))
        .await
        .expect("connect in time")
        .expect("connect")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_reading_steadily_but_slowly_is_cut_off_at_the_write_deadline() {
    let write = Duration::from_secs(1);
    let settings = HttpSettings {
        timeouts: HttpTimeouts {
            write,
            ..HttpTimeouts::default()
        },
        ..settings()
    };
    let server = Server::start_with(store_with_users(60_000), settings).await;
    let mut slow = connect_small_window(server.addr).await;
    slow.write_all(b"GET /metrics HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
        .await
        .expect("send");
    // Reads at most 4 KiB a millisecond: every write of the server makes progress well within
    // the timeout (no pause of the client lasts anywhere near 1 s), but the 20 MB body would
    // take several seconds. Before the deadline was absolute, the whole body arrived.
    let mut received = Vec::new();
    let mut first_byte = None;
    let mut chunk = vec![0u8; 4096];
    let ended = tokio::time::timeout(STEP, async {
        loop {
            match slow.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    first_byte.get_or_insert_with(std::time::Instant::now);
                    received.extend_from_slice(&chunk[..n]);
                }
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await;
    assert!(ended.is_ok(), "the server never closed the connection");
    let head_end = received
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("the response head arrived");
    let head = String::from_utf8_lossy(&received[..head_end]).to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map(|v| v.trim().parse().expect("numeric content-length"))
        .expect("content-length");
    assert!(length > 15_000_000, "exposition of {length} bytes");
    let body = received.len() - head_end - 4;
    assert!(
        body < length,
        "the whole body of {length} bytes arrived: the deadline was extended by each read"
    );
    // Cut off at about the deadline (generous bound: the machine may be busy).
    let lasted = first_byte.expect("some bytes arrived").elapsed();
    assert!(lasted < write * 10, "the response lasted {lasted:?}");
    // The server keeps serving others.
    assert_eq!(server.get("/-/healthy").await.status, 200);
    server.stop().await;
}

/// Before: `rendered_is_fresh` and the rendering shared one std mutex, held for a whole
/// rendering, so a scrape on an async worker blocked that worker until the rendering ended;
/// two such scrapes stopped this two-worker server entirely, `/-/healthy` included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rendering_in_progress_blocks_no_async_worker() {
    let exposition = Arc::new(Exposition::new(store_with_portals()));
    let server = Server::serve(Arc::clone(&exposition), settings()).await;
    let gzip = [("Accept-Encoding", "gzip")];
    let guard = Duration::from_secs(10);
    // A fresh rendering, with its text cached too.
    assert_eq!(server.request("GET", "/metrics", &gzip).await.status, 200);
    assert_eq!(server.get("/metrics").await.status, 200);

    // A rendering that does not end until released.
    let held = exposition.hold_rendering();
    // The fresh rendering is still served, gzipped or not, and health answers.
    for headers in [&gzip[..], &[]] {
        let reply = tokio::time::timeout(guard, server.request("GET", "/metrics", headers))
            .await
            .expect("the fresh rendering is served while another renders");
        assert_eq!(reply.status, 200);
    }
    // After a change, scrapes wait for the rendering, but on the blocking pool: as many of
    // them as there are workers leave the server answering.
    let mut changed = up_portal();
    changed.portal_id = "44444444-5555-6666-7777-888888888888".to_string();
    server.store.publish(changed);
    assert!(!exposition.rendered_is_fresh());
    let addr = server.addr;
    let waiting: Vec<_> = (0..4)
        .map(|_| {
            tokio::spawn(async move {
                let mut stream = connect(addr).await;
                stream
                    .write_all(b"GET /metrics HTTP/1.1\r\nHost: t\r\nAccept-Encoding: gzip\r\nConnection: close\r\n\r\n")
                    .await
                    .expect("send");
                read_response(&mut stream, false).await
            })
        })
        .collect();
    for _ in 0..3 {
        let reply = tokio::time::timeout(guard, server.get("/-/healthy"))
            .await
            .expect("health answers while scrapes wait for a rendering");
        assert_eq!(reply.status, 200);
    }
    assert!(
        waiting.iter().all(|w| !w.is_finished()),
        "nothing rendered the change yet"
    );
    // The rendering ends: the waiting scrapes get the new exposition.
    drop(held);
    for w in waiting {
        let reply = w.await.expect("scrape task");
        assert_eq!(reply.status, 200);
        let body = String::from_utf8(gunzip(&reply.body)).expect("utf-8");
        assert!(body.contains("44444444-5555-6666-7777-888888888888"));
    }
    server.stop().await;
}

/// Before: a request had no deadline; a scrape waiting for a rendering that does not end
/// waited without end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_past_its_deadline_gets_503() {
    let exposition = Arc::new(Exposition::new(store_with_portals()));
    let settings = HttpSettings {
        timeouts: HttpTimeouts {
            request: Duration::from_millis(300),
            ..HttpTimeouts::default()
        },
        ..settings()
    };
    let server = Server::serve(Arc::clone(&exposition), settings).await;
    let held = exposition.hold_rendering();
    // Stale: the scrape needs the rendering that is held.
    let mut changed = up_portal();
    changed.portal_id = "44444444-5555-6666-7777-888888888888".to_string();
    server.store.publish(changed);
    let reply = tokio::time::timeout(Duration::from_secs(10), server.get("/metrics"))
        .await
        .expect("answered at the request deadline");
    assert_eq!(reply.status, 503);
    assert_eq!(server.get("/-/healthy").await.status, 200);
    drop(held);
    let reply = server.get("/metrics").await;
    assert_eq!(reply.status, 200);
    assert!(
        reply
            .text()
            .contains("44444444-5555-6666-7777-888888888888")
    );
    server.stop().await;
}

/// `VmRSS` and `VmHWM` of this process, in bytes.
fn rss_and_peak() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let kib = |key: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
            .expect("a figure in kB")
    };
    (kib("VmRSS:") * 1024, kib("VmHWM:") * 1024)
}

/// Peak memory of 100 concurrent scrapes without gzip at about 77,000 per-user series (the
/// figure in BENCHMARKS.md): `cargo test --test http_server --
/// --ignored --nocapture plain_scrapes_memory`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, not a check: prints peak RSS"]
async fn plain_scrapes_memory() {
    let server = Server::start(store_with_users(25_700)).await;
    let first = server.get("/metrics").await;
    assert_eq!(first.status, 200);
    let text = first.body.len();
    drop(first);
    let (before, _) = rss_and_peak();
    let addr = server.addr;
    let scrapes: Vec<_> = (0..100)
        .map(|_| {
            tokio::spawn(async move {
                let mut stream = connect_small_window(addr).await;
                stream
                    .write_all(b"GET /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
                    .await
                    .expect("send");
                // Read slowly enough that all 100 responses are in flight at once.
                let mut sink = vec![0u8; 64 * 1024];
                let mut total = 0usize;
                let mut first = true;
                loop {
                    match stream.read(&mut sink).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => total += n,
                    }
                    if first {
                        first = false;
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                }
                total
            })
        })
        .collect();
    let mut bytes = 0;
    for s in scrapes {
        bytes += s.await.expect("scrape");
    }
    let (after, peak) = rss_and_peak();
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    println!(
        "plain text {:.1} MiB; 100 scrapes received {:.1} MiB; RSS before {:.1} MiB, after {:.1} MiB, peak {:.1} MiB",
        mib(text as u64),
        mib(bytes as u64),
        mib(before),
        mib(after),
        mib(peak)
    );
    server.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Shutdown.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_the_request_in_flight_finish_then_refuses_connections() {
    // A landing page of several megabytes, so that its response is still being written
    // (the client reads slowly through a small receive buffer) when shutdown is signalled.
    let store = Arc::new(Store::new());
    let error = "ThrottlingException: Rate exceeded <retry>".repeat(12);
    for i in 0..16_000u32 {
        store.publish(PortalSnapshot {
            portal_id: format!("{i:08}-0000-0000-0000-000000000000"),
            polled: true,
            last_error_code: Some(error.clone()),
            ..Default::default()
        });
    }
    let mut server = Server::start(Arc::clone(&store)).await;

    // An idle connection, which shutdown closes.
    let mut idle = connect(server.addr).await;

    let socket = TcpSocket::new_v4().expect("socket");
    socket
        .set_recv_buffer_size(4096)
        .expect("small receive buffer");
    let mut slow = tokio::time::timeout(STEP, socket.connect(server.addr))
        .await
        .expect("connect in time")
        .expect("connect");
    slow.write_all(b"GET / HTTP/1.1\r\nHost: test\r\n\r\n")
        .await
        .expect("send");
    // The response has started: read its first bytes.
    let mut first = vec![0u8; 1024];
    let n = tokio::time::timeout(STEP, slow.read(&mut first))
        .await
        .expect("response starts")
        .expect("read");
    assert!(n > 0);
    first.truncate(n);

    if let Some(tx) = server.shutdown.take() {
        tx.send(()).expect("serve is running");
    }

    // The rest of the response arrives whole, then the server closes the connection.
    let mut rest = Vec::new();
    tokio::time::timeout(STEP, slow.read_to_end(&mut rest))
        .await
        .expect("response completes")
        .expect("read rest");
    first.extend_from_slice(&rest);
    let reply = read_response(&mut &first[..], false).await;
    assert_eq!(reply.status, 200);
    let page = reply.text();
    assert!(page.len() > 8_000_000, "page of {} bytes", page.len());
    assert!(page.ends_with("</html>\n"));
    assert!(page.contains("00015999-0000-0000-0000-000000000000"));

    // The idle connection is closed, not left to its timeout.
    let mut sink = Vec::new();
    let read = tokio::time::timeout(STEP, idle.read_to_end(&mut sink))
        .await
        .expect("idle connection closed at shutdown");
    assert!(read.is_err() || sink.is_empty());

    tokio::time::timeout(STEP, &mut server.task)
        .await
        .expect("serve returns")
        .expect("serve does not panic");
    assert!(
        TcpStream::connect(server.addr).await.is_err(),
        "listener still accepts after shutdown"
    );
}

#[tokio::test]
async fn shutdown_with_no_connections_returns() {
    let server = Server::start(Arc::new(Store::new())).await;
    let addr = server.addr;
    server.stop().await;
    assert!(TcpStream::connect(addr).await.is_err());
}

// ---------------------------------------------------------------------------------------------
// Addresses and binding.

/// `:PORT` listens on IPv6 and IPv4, as Go exporters do (an IPv6-only pod network reaches it);
/// explicit `0.0.0.0:PORT` and `[::]:PORT` keep working.
#[tokio::test]
async fn colon_port_listens_on_ipv6_and_ipv4() {
    let bound = |address: &str| {
        let settings = HttpSettings {
            listen_addresses: vec![address.to_string()],
            ..HttpSettings::default()
        };
        async move { http::bind(&settings).await.expect("bind") }
    };
    let any = bound(":0").await;
    let port = any[0].local_addr().expect("addr").port();
    for target in [format!("127.0.0.1:{port}"), format!("[::1]:{port}")] {
        std::net::TcpStream::connect(&target).unwrap_or_else(|e| panic!("{target}: {e}"));
    }
    let v4 = bound("0.0.0.0:0").await;
    let port = v4[0].local_addr().expect("addr").port();
    std::net::TcpStream::connect(format!("127.0.0.1:{port}")).expect("0.0.0.0 takes IPv4");
    let v6 = bound("[::]:0").await;
    let port = v6[0].local_addr().expect("addr").port();
    std::net::TcpStream::connect(format!("[::1]:{port}")).expect("[::] takes IPv6");
}

#[test]
fn listen_addresses_parse_like_prometheus_flags() {
    let ok = |s: &str| parse_listen_address(s).unwrap_or_else(|e| panic!("{s}: {e}"));
    // `:port` is every interface, IPv6 and IPv4 (one dual-stack socket, see `bind`).
    assert_eq!(ok(":10049"), "[::]:10049".parse().unwrap());
    assert_eq!(ok("127.0.0.1:0"), "127.0.0.1:0".parse().unwrap());
    assert_eq!(ok("[::1]:9000"), "[::1]:9000".parse().unwrap());
    assert_eq!(ok("[::]:10049"), "[::]:10049".parse().unwrap());
    assert_eq!(ok("0.0.0.0:65535"), "0.0.0.0:65535".parse().unwrap());
    assert_eq!(ok("localhost:8080"), "127.0.0.1:8080".parse().unwrap());

    for bad in [
        "",
        "10049",
        ":",
        "127.0.0.1",
        "127.0.0.1:",
        ":65536",
        ":-1",
        ":+80",
        ":http",
        "::1:9000",
        "[::1]",
        "[::1:9000",
        "[nonsense]:9000",
        "example.com:80",
        "256.0.0.1:80",
        " :10049",
    ] {
        let error = parse_listen_address(bad).expect_err(bad);
        assert!(
            matches!(&error, HttpError::InvalidListenAddress { address, .. } if address == bad),
            "{bad}: {error:?}"
        );
        assert!(error.to_string().contains(&format!("{bad:?}")), "{error}");
    }
}

#[test]
fn settings_validation_rejects_bad_telemetry_paths() {
    for bad in [
        "metrics",
        "",
        "/",
        "/-/healthy",
        "/-/ready",
        "/-/reload",
        "/m?x=1",
        "/a b",
    ] {
        let settings = HttpSettings {
            telemetry_path: bad.to_string(),
            ..settings()
        };
        assert!(
            matches!(
                settings.validate(),
                Err(HttpError::InvalidTelemetryPath { .. })
            ),
            "{bad:?}"
        );
    }
    assert!(settings().validate().is_ok());
    assert!(HttpSettings::default().validate().is_ok());
    let none = HttpSettings {
        listen_addresses: vec![],
        ..settings()
    };
    assert!(none.validate().is_err());
}

#[tokio::test]
async fn binding_an_address_in_use_fails_naming_it() {
    let occupied = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = occupied.local_addr().expect("address").to_string();
    let settings = HttpSettings {
        listen_addresses: vec!["127.0.0.1:0".to_string(), address.clone()],
        ..settings()
    };
    let error = http::bind(&settings).await.expect_err("address in use");
    assert!(
        matches!(&error, HttpError::Bind { address: a, source } if *a == address
            && source.kind() == std::io::ErrorKind::AddrInUse),
        "{error:?}"
    );
    assert!(error.to_string().contains(&address), "{error}");
}

#[tokio::test]
async fn every_listen_address_is_served() {
    let settings = HttpSettings {
        listen_addresses: vec!["127.0.0.1:0".to_string(), "127.0.0.1:0".to_string()],
        ..settings()
    };
    let listeners = http::bind(&settings).await.expect("bind");
    let addrs: Vec<SocketAddr> = listeners
        .iter()
        .map(|l| l.local_addr().expect("address"))
        .collect();
    assert_eq!(addrs.len(), 2);
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(http::serve(
        listeners,
        Arc::new(Exposition::new(Arc::new(Store::new()))),
        settings,
        async move {
            let _ = rx.await;
        },
    ));
    for addr in &addrs {
        let mut stream = connect(*addr).await;
        stream
            .write_all(b"GET /-/healthy HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
            .await
            .expect("send");
        assert_eq!(read_response(&mut stream, false).await.status, 200);
    }
    tx.send(()).expect("serve is running");
    tokio::time::timeout(STEP, task)
        .await
        .expect("serve returns")
        .expect("no panic");
    for addr in &addrs {
        assert!(TcpStream::connect(*addr).await.is_err());
    }
}

/// `/metrics` answers each format its `Accept` asks for, with its content type, the same
/// families in each: protobuf that decodes into `MetricFamily` messages (per-user families
/// joined from per-portal pieces included), OpenMetrics that a strict independent parser
/// accepts (only with `--web.enable-openmetrics`: without it, text 0.0.4, as Prometheus gets
/// today), and text 0.0.4 by default.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_negotiates_protobuf_openmetrics_and_text() {
    use workspacesweb_exporter::exposition::protobuf;
    const PROTO: &str = "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited";
    const PROMETHEUS: &str = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
    let store = store_with_users(50);
    let plain = Server::start(Arc::clone(&store)).await;
    let today = plain
        .request("GET", "/metrics", &[("Accept", PROMETHEUS)])
        .await;
    assert_eq!(
        today.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    assert!(!today.text().contains("_created"));
    plain.stop().await;

    let server = Server::start_with(
        store,
        HttpSettings {
            openmetrics: true,
            ..settings()
        },
    )
    .await;
    let text = server.get("/metrics").await;
    assert_eq!(
        text.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    assert_eq!(text.header("vary"), Some("Accept, Accept-Encoding"));

    let om = server
        .request("GET", "/metrics", &[("Accept", PROMETHEUS)])
        .await;
    assert_eq!(om.status, 200);
    assert_eq!(
        om.header("content-type"),
        Some("application/openmetrics-text; version=1.0.0; charset=utf-8")
    );
    let om_text = om.text();
    assert!(om_text.ends_with("# EOF\n"), "{om_text}");
    assert!(om_text.contains("\nworkspacesweb_user_sessions_started_created{"));
    assert!(om_text.contains("\nprocess_cpu_seconds_created ") || !cfg!(target_os = "linux"));
    crate::common::openmetrics_check(om.body.as_slice())
        .expect("the OpenMetrics parser accepts /metrics");

    let pb = server
        .request("GET", "/metrics", &[("Accept", PROTO)])
        .await;
    assert_eq!(
        pb.header("content-type"),
        Some(workspacesweb_exporter::exposition::format::PROTOBUF_CONTENT_TYPE)
    );
    let families = protobuf::decode(&pb.body).expect("delimited MetricFamily messages");
    let names: Vec<&str> = families.iter().filter_map(|f| f.name.as_deref()).collect();
    let text_names: Vec<String> = text
        .text()
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split(' ').next())
        .map(str::to_string)
        .collect();
    assert_eq!(names, text_names, "the same families, in the same order");
    let started = families
        .iter()
        .find(|f| f.name.as_deref() == Some("workspacesweb_user_sessions_started_total"))
        .expect("per-user family");
    assert_eq!(started.metric.len(), 50);
    let c = started.metric[7].counter.as_ref().expect("a counter");
    assert_eq!(c.value, Some(7.0));
    assert_eq!(
        c.created_timestamp.as_ref().map(|t| t.seconds),
        Some(1_700_000_000)
    );
    server.stop().await;
}
