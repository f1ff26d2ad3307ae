//! The HTTP server: `/metrics`, the landing page, `/-/healthy`, `/-/ready` and `/-/reload`, on
//! hyper 1, with the exporter-toolkit web config (TLS, basic auth, extra headers, rate limit).
//!
//! Shape of the server:
//! - [`bind`] turns `--web.listen-address` values into listeners (the caller exits 2 on error);
//! - [`serve_with`] accepts on every listener, one task per connection, each connection holding
//!   a slot of the fair connection cap shared by all listeners (`admission`,
//!   `--web.max-connections`); [`serve`] is the same without web config or reload hook;
//! - a connection's byte stream is wrapped (`io::WriteTimeout`) before anything else; when the
//!   web config has TLS, the handshake runs on top of it inside the connection's task (the
//!   accept loop never waits for it), bounded by [`HttpTimeouts::tls_handshake`];
//! - every request goes through one function (`routes::respond`): rate limit, basic auth,
//!   routing, the reload hook, then the web config's extra headers.
//!
//! Web config (`--web.config.file`, see `webconfig`'s docs for the accepted keys and the
//! differences from the Go toolkit):
//! - [`load_web_config`] reads and checks a file into a [`WebState`]; errors name the file and
//!   the key. The daemon loads it at startup (exit 1 when invalid) and on reload.
//! - A [`WebConfigHandle`] holds the state in force. The server reads it when a connection
//!   opens (TLS: certificates, client CAs, versions) and at every request (users, headers), so
//!   [`WebConfigHandle::replace`] takes effect for new connections and the next requests. A
//!   reload first asks [`WebConfigHandle::check_reload`], which refuses a web config that would
//!   remove TLS, basic auth or verified client certificates in force, and says whether
//!   anything changes; `replace` keeps verified logins of unchanged users, the bcrypt slot and
//!   an unchanged rate limiter's bucket.
//! - Basic auth (when `basic_auth_users` is set): every path except `/-/healthy` needs
//!   credentials, 401 with `WWW-Authenticate: Basic realm="workspacesweb-exporter"` otherwise.
//!   bcrypt runs on the blocking pool, one at a time, handed out round-robin between peers,
//!   then user names (at most 16 waiting per peer, 4 per name); a request that waits more than 2 s for that slot gets 503
//!   (`Retry-After: 1`); costs above 14 are refused in the web config; verified credentials
//!   are cached per user as a SHA-256 digest compared in constant time; unknown users pay the
//!   bcrypt of a configured user chosen by their name (`auth`).
//! - Every request (basic auth included) is answered within [`HttpTimeouts::request`], 503
//!   otherwise; an authenticated reload runs to its end.
//! - `POST /-/reload` calls the [`ReloadHook`] given in [`WebOptions`]: 200 `OK`, or 400 with
//!   the hook's error; other methods 405 (`Allow: POST`). Without a hook (the daemon gives none
//!   without `--web.enable-lifecycle`), `POST` gets 403 `Lifecycle API is not enabled.`, as in
//!   Prometheus, and nothing is reloaded.
//!
//! Policies (for the operator documentation):
//! - Connection limit (`admission`): every accepted connection needs a slot. At the cap, the
//!   oldest connection with no request in progress (idle keep-alive, TLS handshake or request
//!   head in progress) is closed to admit the new one; no peer (IPv4 address, IPv6 /64) holds
//!   more than half the cap. An evicted connection that is idle closes at once; one in the
//!   middle of a head gets 100 ms to complete it (it is then answered, with
//!   `Connection: close`); one that just started a request (a race) finishes it. Only when
//!   every connection is answering a request do the accept loops wait; further clients wait
//!   in the kernel's listen backlog. `0` means no limit.
//! - A TLS client that has not completed its handshake within [`HttpTimeouts::tls_handshake`]
//!   of connecting is closed; so is a plain-HTTP client on a TLS listener.
//! - A connection that has not sent a complete request head within
//!   [`HttpTimeouts::header_read`] of opening (of its handshake, with TLS), or of its previous
//!   response, is closed: this is both the slow-client and the idle keep-alive timeout.
//! - A response that is not written within [`HttpTimeouts::write`] of its first byte closes the
//!   connection (TLS records included). The deadline is absolute: a client that reads a byte
//!   now and then does not extend it.
//! - Request bodies are never read; hyper drops the connection instead of draining a large one.
//! - Shutdown stops accepting (listeners are closed), closes idle connections and pending TLS
//!   handshakes, lets in-flight requests finish for at most [`HttpTimeouts::shutdown_grace`],
//!   then drops the rest.
//! - HTTP/1.1 only (Prometheus scrapes over HTTP/1.1); TLS offers ALPN `http/1.1` only.

mod admission;
mod body;
mod encoding;
mod io;
mod landing;
mod peer;
mod routes;
mod sparkline;
mod webconfig;

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};

use crate::exposition::Exposition;

use self::admission::{Admission, Slot};
use self::body::Guarded;
use self::io::{ResponseStart, WriteTimeout};
use self::routes::Routes;
pub use self::webconfig::{WebChange, WebConfigError, WebState, load_web_config};

/// Content type of `/metrics`: the Prometheus text exposition format 0.0.4.
pub const EXPOSITION_CONTENT_TYPE: &str = crate::exposition::format::TEXT_CONTENT_TYPE;
/// Default `--web.listen-address`.
pub const DEFAULT_LISTEN_ADDRESS: &str = ":10049";
/// Default `--web.telemetry-path`.
pub const DEFAULT_TELEMETRY_PATH: &str = "/metrics";
/// Default `--web.max-connections`.
pub const DEFAULT_MAX_CONNECTIONS: usize = 512;

/// Paths the server answers itself; the telemetry path must not be one of them.
const RESERVED_PATHS: [&str; 4] = ["/", "/-/healthy", "/-/ready", "/-/reload"];

/// Largest request head (request line plus headers) the server buffers, in bytes.
const MAX_HEADER_BYTES: usize = 64 * 1024;
/// Largest number of request headers accepted.
const MAX_HEADERS: usize = 100;
/// Pause after a failed `accept` (e.g. out of file descriptors) before trying again.
const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(100);
/// How long an evicted connection in the middle of a request head has to complete it.
const EVICTED_GRACE: Duration = Duration::from_millis(100);

/// What the `--web.*` flags configure.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpSettings {
    /// Addresses to listen on (`:10049`, `127.0.0.1:0`, `[::1]:9000`); see [`parse_listen_address`].
    pub listen_addresses: Vec<String>,
    /// Path of the Prometheus exposition, `/metrics` by default.
    pub telemetry_path: String,
    /// Most connections open at once across all listeners; `0` means no limit.
    pub max_connections: usize,
    /// Timeouts against slow and idle clients and for shutdown.
    pub timeouts: HttpTimeouts,
    /// Whether `/metrics` answers in OpenMetrics when asked (`--web.enable-openmetrics`).
    pub openmetrics: bool,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            listen_addresses: vec![DEFAULT_LISTEN_ADDRESS.to_string()],
            telemetry_path: DEFAULT_TELEMETRY_PATH.to_string(),
            max_connections: DEFAULT_MAX_CONNECTIONS,
            timeouts: HttpTimeouts::default(),
            openmetrics: false,
        }
    }
}

impl HttpSettings {
    /// Checks the addresses and the telemetry path; call it while parsing flags (exit 1).
    pub fn validate(&self) -> Result<(), HttpError> {
        if self.listen_addresses.is_empty() {
            return Err(HttpError::InvalidListenAddress {
                address: String::new(),
                reason: "at least one listen address is needed".to_string(),
            });
        }
        for address in &self.listen_addresses {
            parse_listen_address(address)?;
        }
        validate_telemetry_path(&self.telemetry_path)
    }
}

/// Timeouts of the server; the defaults suit a Prometheus scrape every 10 s or more.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpTimeouts {
    /// Time allowed for a complete request head after the connection opens or after the
    /// previous response; also closes idle keep-alive connections. Default 10 s.
    pub header_read: Duration,
    /// Time a response may take to write, from its first byte, however the client reads it
    /// (absolute, not reset by progress). Default 30 s.
    pub write: Duration,
    /// Time in-flight requests get to finish after shutdown is signalled. Default 10 s.
    pub shutdown_grace: Duration,
    /// Time a TLS client gets to complete its handshake, from the connection's start. Default 10 s.
    pub tls_handshake: Duration,
    /// Time from a request's head to its response (basic auth included; an authenticated
    /// `POST /-/reload` is not cut short): beyond it, 503. Default 30 s.
    pub request: Duration,
}

impl Default for HttpTimeouts {
    fn default() -> Self {
        Self {
            header_read: Duration::from_secs(10),
            write: Duration::from_secs(30),
            shutdown_grace: Duration::from_secs(10),
            tls_handshake: Duration::from_secs(10),
            request: Duration::from_secs(30),
        }
    }
}

/// Errors of the HTTP layer; each names the address or path at fault.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// A `--web.listen-address` value that is not `[host]:port`.
    #[error("invalid listen address {address:?}: {reason}")]
    InvalidListenAddress {
        /// The value as given.
        address: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A `--web.telemetry-path` value that cannot be served.
    #[error("invalid telemetry path {path:?}: {reason}")]
    InvalidTelemetryPath {
        /// The value as given.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Binding a listener failed (address in use, not local, no permission).
    #[error("cannot listen on {address}: {source}")]
    Bind {
        /// The address as given on the command line.
        address: String,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
}

/// Parses a listen address: `host:port`, `[v6]:port`, or `:port` for every interface.
///
/// `:port` is `[::]:port`, and [`bind`] makes it one dual-stack socket (IPv6 and IPv4, whatever
/// `net.ipv6.bindv6only` says), as Go exporters listen; on a host without IPv6 it falls back to
/// `0.0.0.0:port`. `0.0.0.0:port` and `[::]:port` bind exactly that. The host must be an IP
/// literal or `localhost` (`127.0.0.1`): no DNS at startup.
pub fn parse_listen_address(s: &str) -> Result<SocketAddr, HttpError> {
    let invalid = |reason: &str| HttpError::InvalidListenAddress {
        address: s.to_string(),
        reason: reason.to_string(),
    };
    let Some((host, port)) = s.rsplit_once(':') else {
        return Err(invalid("expected host:port, :port or [ipv6]:port"));
    };
    if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid("the port must be a number from 0 to 65535"));
    }
    let port: u16 = port
        .parse()
        .map_err(|_| invalid("the port must be a number from 0 to 65535"))?;
    let ip: IpAddr = if host.is_empty() {
        IpAddr::V6(Ipv6Addr::UNSPECIFIED)
    } else if host.eq_ignore_ascii_case("localhost") {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    } else if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        v6.parse::<std::net::Ipv6Addr>()
            .map(IpAddr::V6)
            .map_err(|_| invalid("not an IPv6 address between the brackets"))?
    } else if host.contains(':') {
        return Err(invalid("an IPv6 address needs brackets: [::1]:10049"));
    } else {
        host.parse::<Ipv4Addr>()
            .map(IpAddr::V4)
            .map_err(|_| invalid("the host must be an IP address or localhost"))?
    };
    Ok(SocketAddr::new(ip, port))
}

/// Checks that a telemetry path starts with `/` and does not hide another endpoint.
pub fn validate_telemetry_path(path: &str) -> Result<(), HttpError> {
    let invalid = |reason: &str| HttpError::InvalidTelemetryPath {
        path: path.to_string(),
        reason: reason.to_string(),
    };
    if !path.starts_with('/') {
        return Err(invalid("must start with /"));
    }
    if path.contains(['?', '#']) || path.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(invalid(
            "must be a plain path, without query, fragment or spaces",
        ));
    }
    if RESERVED_PATHS.contains(&path) {
        return Err(invalid("is already used by the exporter"));
    }
    Ok(())
}

/// Binds every listen address, in order; the first failure is returned and names its address.
pub async fn bind(settings: &HttpSettings) -> Result<Vec<TcpListener>, HttpError> {
    settings.validate()?;
    let mut listeners = Vec::with_capacity(settings.listen_addresses.len());
    for address in &settings.listen_addresses {
        let addr = parse_listen_address(address)?;
        let bound = if address.starts_with(':') {
            bind_every_interface(addr.port())
        } else {
            TcpListener::bind(addr).await
        };
        let listener = bound.map_err(|source| HttpError::Bind {
            address: address.clone(),
            source,
        })?;
        let local = listener.local_addr().map_err(|source| HttpError::Bind {
            address: address.clone(),
            source,
        })?;
        tracing::info!(address = %local, telemetry_path = %settings.telemetry_path, "listening");
        listeners.push(listener);
    }
    Ok(listeners)
}

/// `:port`: one IPv6 socket that accepts IPv4 too (IPV6_V6ONLY off), so that probes and scrapes
/// reach the exporter on IPv4-only, IPv6-only and dual-stack networks alike; IPv4 only on a
/// host without IPv6.
fn bind_every_interface(port: u16) -> std::io::Result<TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let dual = || -> std::io::Result<std::net::TcpListener> {
        let socket = Socket::new(Domain::IPV6, Type::STREAM, Some(Protocol::TCP))?;
        socket.set_only_v6(false)?;
        socket.set_reuse_address(true)?;
        socket.bind(&SocketAddr::from((Ipv6Addr::UNSPECIFIED, port)).into())?;
        socket.listen(1024)?;
        Ok(socket.into())
    };
    let listener = match dual() {
        Ok(l) => l,
        Err(e) if ipv6_unavailable(&e) => {
            tracing::info!(port, error = %e, "no IPv6 on this host; listening on IPv4 only");
            let socket = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))?;
            socket.set_reuse_address(true)?;
            socket.bind(&SocketAddr::from((Ipv4Addr::UNSPECIFIED, port)).into())?;
            socket.listen(1024)?;
            socket.into()
        }
        Err(e) => return Err(e),
    };
    listener.set_nonblocking(true)?;
    TcpListener::from_std(listener)
}

/// Whether binding failed because the host has no IPv6 at all.
fn ipv6_unavailable(e: &std::io::Error) -> bool {
    const EAFNOSUPPORT: i32 = 97;
    e.kind() == std::io::ErrorKind::AddrNotAvailable || e.raw_os_error() == Some(EAFNOSUPPORT)
}

/// The web config in force, shared by the server and whoever reloads it.
///
/// [`serve_with`] reads it at every new connection (TLS) and every request (basic auth, extra
/// headers), so [`WebConfigHandle::replace`] applies to new connections and to the next request
/// of a kept-alive one; a TLS session already established keeps its certificate.
#[derive(Clone, Default)]
pub struct WebConfigHandle(Arc<RwLock<Arc<WebState>>>);

impl std::fmt::Debug for WebConfigHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("WebConfigHandle")
            .field(&self.current())
            .finish()
    }
}

impl WebConfigHandle {
    /// A handle holding `state`.
    pub fn new(state: WebState) -> Self {
        Self(Arc::new(RwLock::new(Arc::new(state))))
    }

    /// The web config in force now.
    pub fn current(&self) -> Arc<WebState> {
        Arc::clone(&self.0.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// Puts `state` in force and returns the one it replaces. `state` keeps the verified
    /// logins of unchanged users, the bcrypt slot and an unchanged rate limiter's bucket.
    pub fn replace(&self, mut state: WebState) -> Arc<WebState> {
        let mut current = self.0.write().unwrap_or_else(PoisonError::into_inner);
        webconfig::carry_over(&current, &mut state);
        std::mem::replace(&mut *current, Arc::new(state))
    }

    /// Checks that `next` may replace the web config in force on a reload, and says whether
    /// it changes anything. `Err` (naming `next`'s file and what it would remove) when it would
    /// remove TLS, basic auth or a requirement of verified client certificates that is in
    /// force: a reload never lowers security; removing them takes a restart.
    pub fn check_reload(&self, next: &WebState) -> Result<WebChange, WebConfigError> {
        let current = self.current();
        let removed = webconfig::lowered(&current, next);
        let Some((key, _)) = removed.first() else {
            return Ok(WebChange::between(&current, next));
        };
        let what: Vec<&str> = removed.iter().map(|(_, what)| *what).collect();
        Err(WebConfigError {
            file: next.source.clone().unwrap_or_default(),
            key: (*key).to_string(),
            message: format!(
                "this web config would remove {}, which {} in force; a reload may not lower \
                 security, so the previous web config stays (restart the exporter to remove {})",
                what.join(" and "),
                if what.len() > 1 { "are" } else { "is" },
                if what.len() > 1 { "them" } else { "it" },
            ),
            detail: None,
        })
    }
}

/// What a reload hook returns: `Err` carries the message sent back with HTTP 400.
pub type ReloadFuture = Pin<Box<dyn Future<Output = Result<(), String>> + Send>>;

/// Called by `POST /-/reload`; re-reads the config (and the web config, through
/// [`WebConfigHandle::replace`]). Concurrent calls are possible: the hook serialises itself.
pub type ReloadHook = Arc<dyn Fn() -> ReloadFuture + Send + Sync>;

/// What [`serve_with`] takes beyond [`serve`]: the web config and the reload hook.
#[derive(Clone, Default)]
pub struct WebOptions {
    /// The web config in force; the default is plain HTTP without authentication.
    pub web: WebConfigHandle,
    /// `POST /-/reload` calls it; without one (lifecycle API off) the route answers 403.
    pub reload: Option<ReloadHook>,
}

impl std::fmt::Debug for WebOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebOptions")
            .field("web", &self.web)
            .field("reload", &self.reload.is_some())
            .finish()
    }
}

/// Where the server is in its life; connection tasks watch it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Accepting and serving.
    Serving,
    /// Shutdown signalled: no new connections, idle ones closed, in-flight ones finish.
    Draining,
    /// Grace period over: remaining connections are dropped.
    Closed,
}

/// What every accept loop shares.
#[derive(Clone)]
struct Shared {
    routes: Arc<Routes>,
    builder: Arc<http1::Builder>,
    admission: Arc<Admission>,
    phase: watch::Receiver<Phase>,
    /// Held by every connection task; `recv()` on the other end returns `None` once all are gone.
    alive: mpsc::Sender<()>,
    write_timeout: Duration,
    tls_handshake: Duration,
    web: WebConfigHandle,
}

/// Serves plain HTTP without authentication until `shutdown` resolves; see [`serve_with`].
pub async fn serve(
    listeners: Vec<TcpListener>,
    exposition: Arc<Exposition>,
    settings: HttpSettings,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    serve_with(
        listeners,
        exposition,
        settings,
        WebOptions::default(),
        shutdown,
    )
    .await;
}

/// Serves until `shutdown` resolves, then shuts down gracefully and returns.
///
/// `options.web` decides TLS, basic auth and extra headers, read per connection and per
/// request; `options.reload` answers `POST /-/reload`.
///
/// After `shutdown`: the listeners are closed (new connections are refused), idle connections
/// are closed, requests in flight finish within `settings.timeouts.shutdown_grace`.
pub async fn serve_with(
    listeners: Vec<TcpListener>,
    exposition: Arc<Exposition>,
    settings: HttpSettings,
    options: WebOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    {
        let web = options.web.current();
        tracing::info!(
            tls = web.tls_enabled(),
            basic_auth = web.basic_auth_enabled(),
            extra_headers = web.extra_headers().len(),
            lifecycle = options.reload.is_some(),
            "http server settings"
        );
    }
    let routes = Arc::new(
        Routes::new(exposition, settings.telemetry_path.clone())
            .with_web(options.web.clone(), options.reload)
            .with_deadline(settings.timeouts.request)
            .with_openmetrics(settings.openmetrics),
    );
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(settings.timeouts.header_read)
        .keep_alive(true)
        .half_close(false)
        .max_header_size(MAX_HEADER_BYTES)
        .max_headers(MAX_HEADERS);
    let (phase_tx, phase_rx) = watch::channel(Phase::Serving);
    let (alive_tx, mut alive_rx) = mpsc::channel::<()>(1);
    let shared = Shared {
        routes,
        builder: Arc::new(builder),
        admission: Arc::new(Admission::new(settings.max_connections)),
        phase: phase_rx,
        alive: alive_tx,
        write_timeout: settings.timeouts.write,
        tls_handshake: settings.timeouts.tls_handshake,
        web: options.web,
    };

    let mut accept_loops = tokio::task::JoinSet::new();
    for listener in listeners {
        accept_loops.spawn(accept_loop(listener, shared.clone()));
    }
    drop(shared);

    shutdown.await;
    tracing::info!("http server shutting down");
    // Connection tasks and accept loops both watch the phase; send_replace cannot fail.
    phase_tx.send_replace(Phase::Draining);
    // Accept loops return and drop their listeners: from here new connections are refused.
    while accept_loops.join_next().await.is_some() {}

    let grace = settings.timeouts.shutdown_grace;
    if tokio::time::timeout(grace, alive_rx.recv()).await.is_err() {
        tracing::warn!(grace = ?grace, "http requests still running after the shutdown grace period, closing them");
        phase_tx.send_replace(Phase::Closed);
        alive_rx.recv().await;
    }
    tracing::info!("http server stopped");
}

/// Accepts connections on one listener until the phase leaves `Serving`; each gets a slot
/// from [`Admission`] (which may evict an older connection) before its task starts.
async fn accept_loop(listener: TcpListener, shared: Shared) {
    let mut phase = shared.phase.clone();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = phase.wait_for(|p| *p != Phase::Serving) => return,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                // Per-connection errors (reset before accept) and resource exhaustion land here;
                // neither must end the server.
                tracing::warn!(%error, "accepting a connection failed");
                tokio::select! {
                    _ = tokio::time::sleep(ACCEPT_ERROR_BACKOFF) => {}
                    _ = phase.wait_for(|p| *p != Phase::Serving) => return,
                }
                continue;
            }
        };
        // When every slot is answering a request, this waits; further clients wait in the
        // kernel's listen backlog meanwhile.
        let admitted = tokio::select! {
            admitted = shared.admission.admit(peer.ip()) => admitted,
            _ = phase.wait_for(|p| *p != Phase::Serving) => return,
        };
        match admitted {
            Some(slot) => {
                tokio::spawn(serve_connection(stream, peer, slot, shared.clone()));
            }
            None => {
                tracing::debug!(%peer, "connection refused: the peer's share of connections is answering requests")
            }
        }
    }
}

/// Runs one connection to its end (TLS handshake first, when configured), holding its
/// connection slot meanwhile.
async fn serve_connection(stream: TcpStream, peer: SocketAddr, slot: Slot, shared: Shared) {
    // Released when this task ends: the shutdown's count of live connections (and the slot).
    let _alive = shared.alive.clone();
    if let Err(error) = stream.set_nodelay(true) {
        tracing::debug!(%peer, %error, "cannot set TCP_NODELAY");
    }
    // Below TLS, so that handshake and record writes are bounded too.
    let stream = WriteTimeout::new(stream, shared.write_timeout);
    let start = stream.response_start();
    // The web config as it is when the connection opens decides TLS for its whole life.
    let web = shared.web.current();
    let Some(tls) = &web.tls else {
        drop(web);
        serve_http(stream, peer, start, slot, &shared).await;
        return;
    };
    let mut phase = shared.phase.clone();
    let handshake = tokio::select! {
        handshake = tls.accept(stream, shared.tls_handshake) => handshake,
        _ = phase.wait_for(|p| *p != Phase::Serving) => return,
        () = slot.evicted() => return,
    };
    drop(web);
    match handshake {
        Ok(stream) => serve_http(stream, peer, start, slot, &shared).await,
        // Plain-HTTP clients, unknown CAs, missing client certificates, timeouts.
        Err(error) => tracing::debug!(%peer, %error, "TLS handshake failed"),
    }
}

/// How an HTTP connection's run ended before the connection itself did.
enum Interrupted {
    Shutdown,
    Evicted,
}

/// Runs HTTP/1 on an established byte stream until it ends, shutdown closes it, or it is
/// evicted to admit a new connection.
async fn serve_http<S>(
    stream: S,
    peer: SocketAddr,
    start: ResponseStart,
    slot: Slot,
    shared: &Shared,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let routes = Arc::clone(&shared.routes);
    let slot = Arc::new(slot);
    let requests = Arc::clone(&slot);
    let service = service_fn(move |request| {
        // The response's write deadline starts with its first byte (see `io`).
        start.begin();
        // Not evictable until the response is written (the guard lives in its body).
        let in_progress = requests.request();
        let response = routes.respond(&request, peer.ip());
        async move {
            let response = response.await;
            Ok::<_, std::convert::Infallible>(response.map(|body| Guarded::new(body, in_progress)))
        }
    });
    let connection = shared
        .builder
        .serve_connection(TokioIo::new(stream), service);
    tokio::pin!(connection);
    let mut phase = shared.phase.clone();

    let interrupted = tokio::select! {
        result = connection.as_mut() => Ok(result),
        _ = phase.wait_for(|p| *p != Phase::Serving) => Err(Interrupted::Shutdown),
        () = slot.evicted() => Err(Interrupted::Evicted),
    };
    // Finish the request in flight, if any, then close; idle connections close now.
    let result = match interrupted {
        Ok(result) => result,
        Err(Interrupted::Shutdown) => {
            connection.as_mut().graceful_shutdown();
            tokio::select! {
                result = connection.as_mut() => result,
                _ = phase.wait_for(|p| *p == Phase::Closed) => return,
            }
        }
        Err(Interrupted::Evicted) => {
            connection.as_mut().graceful_shutdown();
            if !slot.busy() {
                // An idle connection closes at once; one in the middle of a request head gets
                // a moment to complete it (then it is answered) before it is dropped.
                let _ = tokio::time::timeout(EVICTED_GRACE, connection.as_mut()).await;
                return;
            }
            tokio::select! {
                result = connection.as_mut() => result,
                _ = phase.wait_for(|p| *p == Phase::Closed) => return,
            }
        }
    };
    if let Err(error) = result {
        // Timeouts, resets and malformed requests: the client's problem, not the server's.
        tracing::debug!(%peer, %error, "http connection ended with an error");
    }
}
