//! The connection cap (`--web.max-connections`) under attack, over real loopback TCP: idle
//! keep-alive clients and slow-header clients filling the cap must not lock out a probe.
//!
//! Clients bind to chosen loopback addresses before they connect (Linux routes all of
//! 127.0.0.0/8 to the loopback interface), so the server sees them as distinct peers: the
//! attack from 127.0.0.2 and 127.0.0.3, the probe from 127.0.0.1, or everything from
//! 127.0.0.1 when the test is about one peer.
//!
//! The header-read timeout is raised to a minute so that no attacker is closed by it during a
//! test, whatever the machine's load: every connection that ends here is ended by the cap.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::common::raw_http;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{Semaphore, oneshot};

use workspacesweb_exporter::exposition::Exposition;
use workspacesweb_exporter::http::{self, HttpSettings, HttpTimeouts, ReloadHook, WebOptions};

use crate::http_server::{STEP, Server, settings, store_with_portals};

/// The bound the issue asks for: a probe answered in under a second.
const PROBE_BOUND: Duration = Duration::from_secs(1);
/// How long a test waits for a probe before calling it locked out.
const LOCKED_OUT: Duration = Duration::from_secs(5);

const PROBE: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 1);

/// The default cap (512) with a header-read timeout that outlasts every test.
fn capped() -> HttpSettings {
    HttpSettings {
        timeouts: HttpTimeouts {
            header_read: Duration::from_secs(60),
            ..HttpTimeouts::default()
        },
        ..settings()
    }
}

/// Raises this process's soft limit of open files to at least `wanted` (up to the hard limit):
/// the tests hold both ends of more than a thousand connections.
fn enough_open_files(wanted: u64) {
    // SAFETY: getrlimit/setrlimit only read and write the struct passed to them.
    unsafe {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 || limit.rlim_cur >= wanted {
            return;
        }
        limit.rlim_cur = wanted.min(limit.rlim_max);
        libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
    }
}

/// A connection from `from` (a loopback address) to `to`.
async fn connect_from(from: Ipv4Addr, to: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().expect("socket");
    socket
        .bind(SocketAddr::new(IpAddr::V4(from), 0))
        .expect("bind a loopback source address");
    tokio::time::timeout(STEP, socket.connect(to))
        .await
        .expect("connect in time")
        .expect("connect")
}

/// Reads one response and returns its status; `None` when the connection ends first.
async fn status_of(stream: &mut TcpStream) -> Option<u16> {
    let response = raw_http::read_response(stream, false).await.ok()?;
    Some(response.status)
}

const KEEP_ALIVE_HEALTHY: &[u8] = b"GET /-/healthy HTTP/1.1\r\nHost: test\r\n\r\n";

/// A probe from `from`: `GET /-/healthy` on a new keep-alive connection, which it keeps open
/// (so that it holds a slot, as the attackers do). Asserts 200 within [`PROBE_BOUND`].
async fn probe(from: Ipv4Addr, to: SocketAddr) -> TcpStream {
    let began = Instant::now();
    let mut stream = connect_from(from, to).await;
    stream.write_all(KEEP_ALIVE_HEALTHY).await.expect("send");
    let status = tokio::time::timeout(LOCKED_OUT, status_of(&mut stream))
        .await
        .unwrap_or_else(|_| panic!("the probe is locked out for more than {LOCKED_OUT:?}"));
    let took = began.elapsed();
    assert_eq!(status, Some(200));
    assert!(took < PROBE_BOUND, "the probe took {took:?}");
    stream
}

/// How many of `streams` the server has closed: each read either ends (closed) or is still
/// waiting at a common deadline a little later (open).
async fn closed_count(streams: &mut [TcpStream]) -> usize {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    let mut closed = 0;
    for stream in streams {
        let mut byte = [0u8; 1];
        match tokio::time::timeout_at(deadline, stream.read(&mut byte)).await {
            Ok(Ok(0) | Err(_)) => closed += 1,
            Ok(Ok(_)) => panic!("an attacker was sent data"),
            Err(_) => {}
        }
    }
    closed
}

/// Before: with 600 idle clients a new `/-/healthy` waited for an idle connection to time out
/// (8.95 s with the 10 s default). Now the oldest idle connection is closed to admit it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthy_answers_within_a_second_with_600_idle_clients() {
    enough_open_files(4096);
    let server = Server::start_with(store_with_portals(), capped()).await;
    // 600 keep-alive clients from three addresses (200 each, under the per-peer share), each
    // asking once and then idle.
    let mut clients = Vec::with_capacity(600);
    for i in 0..600 {
        let from = Ipv4Addr::new(127, 0, 0, 2 + (i % 3) as u8);
        let mut stream = connect_from(from, server.addr).await;
        stream.write_all(KEEP_ALIVE_HEALTHY).await.expect("send");
        clients.push(stream);
    }
    // Every client gets its answer: the later ones by closing the earliest idle ones. Bounded
    // well below the header-read timeout, so that the cap is full of idle clients at the probe.
    let answered = tokio::time::timeout(LOCKED_OUT, async {
        let mut answered = 0;
        for stream in &mut clients {
            if status_of(stream).await == Some(200) {
                answered += 1;
            }
        }
        answered
    })
    .await
    .unwrap_or(0);
    assert_eq!(answered, 600, "every idle client was answered once");

    let mut probes = Vec::new();
    for _ in 0..3 {
        probes.push(probe(PROBE, server.addr).await);
    }
    // 603 connections admitted, 512 held: the 91 that went idle first were closed.
    assert_eq!(closed_count(&mut clients).await, 91);
    drop((clients, probes));
    server.stop().await;
}

/// `n` slow-header clients: each sends part of a request head and stalls. The addresses cycle
/// through `from`.
async fn slow_header_clients(n: usize, from: &[Ipv4Addr], to: SocketAddr) -> Vec<TcpStream> {
    let mut clients = Vec::with_capacity(n);
    for i in 0..n {
        let mut stream = connect_from(from[i % from.len()], to).await;
        stream
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: test\r\nX-Slow: ")
            .await
            .expect("send part of a head");
        clients.push(stream);
    }
    clients
}

/// Before: 512 slow-header clients locked a new client out until the header-read timeout
/// (more than 20 s in the security review). Now a connection still sending its head is as
/// evictable as an idle one, oldest first, and no peer holds more than half the cap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthy_answers_within_a_second_with_512_slow_header_clients() {
    enough_open_files(4096);
    // The cap full of slow clients from two attackers (256 each, their whole share).
    let server = Server::start_with(store_with_portals(), capped()).await;
    let attackers = [Ipv4Addr::new(127, 0, 0, 2), Ipv4Addr::new(127, 0, 0, 3)];
    let mut clients = slow_header_clients(512, &attackers, server.addr).await;
    let mut probes = Vec::new();
    for _ in 0..3 {
        probes.push(probe(PROBE, server.addr).await);
    }
    assert_eq!(
        closed_count(&mut clients).await,
        3,
        "one attacker per probe"
    );
    drop((clients, probes));
    server.stop().await;

    // All of them from the probe's own address: the peer holds at most half the cap, and the
    // probe takes the place of that peer's oldest stalled connection.
    let server = Server::start_with(store_with_portals(), capped()).await;
    let mut clients = slow_header_clients(512, &[PROBE], server.addr).await;
    let mut probes = Vec::new();
    for _ in 0..3 {
        probes.push(probe(PROBE, server.addr).await);
    }
    assert_eq!(closed_count(&mut clients).await, 256 + 3);
    drop((clients, probes));
    server.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Requests in progress are never evicted.

/// A server whose `POST /-/reload` waits for a permit of `gate` (a request held in progress
/// for as long as the test wants); `calls` counts the reloads that started.
struct Gated {
    addr: SocketAddr,
    gate: Arc<Semaphore>,
    calls: Arc<AtomicUsize>,
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl Gated {
    async fn start(max_connections: usize) -> Self {
        let settings = HttpSettings {
            max_connections,
            ..capped()
        };
        let listeners = http::bind(&settings).await.expect("bind loopback");
        let addr = listeners[0].local_addr().expect("local address");
        let gate = Arc::new(Semaphore::new(0));
        let calls = Arc::new(AtomicUsize::new(0));
        let hook: ReloadHook = {
            let (gate, calls) = (Arc::clone(&gate), Arc::clone(&calls));
            Arc::new(move || {
                let (gate, calls) = (Arc::clone(&gate), Arc::clone(&calls));
                Box::pin(async move {
                    calls.fetch_add(1, Ordering::SeqCst);
                    gate.acquire().await.map_err(|e| e.to_string())?.forget();
                    Ok(())
                })
            })
        };
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(http::serve_with(
            listeners,
            Arc::new(Exposition::new(store_with_portals())),
            settings,
            WebOptions {
                reload: Some(hook),
                ..WebOptions::default()
            },
            async move {
                let _ = stopped.await;
            },
        ));
        Self {
            addr,
            gate,
            calls,
            stop,
            task,
        }
    }

    /// A reload from `from`, started (the hook runs) and held at the gate.
    async fn held_reload(&self, from: Ipv4Addr) -> TcpStream {
        let before = self.calls.load(Ordering::SeqCst);
        let mut stream = connect_from(from, self.addr).await;
        stream
            .write_all(b"POST /-/reload HTTP/1.1\r\nHost: test\r\nContent-Length: 0\r\n\r\n")
            .await
            .expect("send");
        let started = tokio::time::timeout(STEP, async {
            while self.calls.load(Ordering::SeqCst) == before {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await;
        assert!(started.is_ok(), "the reload never started");
        stream
    }

    async fn stop(self) {
        self.gate.add_permits(1000);
        let _ = self.stop.send(());
        tokio::time::timeout(STEP, self.task)
            .await
            .expect("serve returns after shutdown")
            .expect("serve does not panic");
    }
}

/// Whether the server closes `stream` (EOF or reset) within `within`.
async fn closes_within(stream: &mut TcpStream, within: Duration) -> bool {
    let mut byte = [0u8; 1];
    matches!(
        tokio::time::timeout(within, stream.read(&mut byte)).await,
        Ok(Ok(0) | Err(_))
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_cap_a_newcomer_waits_for_a_response_to_end_never_cutting_one_short() {
    let server = Gated::start(2).await;
    let mut first = server.held_reload(Ipv4Addr::new(127, 0, 0, 2)).await;
    let mut second = server.held_reload(Ipv4Addr::new(127, 0, 0, 3)).await;
    // Both slots answer a request: the newcomer waits (in the listen backlog) and is not answered.
    let mut newcomer = connect_from(Ipv4Addr::new(127, 0, 0, 4), server.addr).await;
    newcomer.write_all(KEEP_ALIVE_HEALTHY).await.expect("send");
    let early = tokio::time::timeout(Duration::from_millis(300), status_of(&mut newcomer)).await;
    assert!(
        early.is_err(),
        "answered while every slot was busy: {early:?}"
    );
    // The first reload ends: its connection, now idle, makes room for the newcomer.
    server.gate.add_permits(1);
    assert_eq!(status_of(&mut first).await, Some(200));
    let answered = tokio::time::timeout(STEP, status_of(&mut newcomer)).await;
    assert_eq!(answered.ok().flatten(), Some(200));
    assert!(
        closes_within(&mut first, STEP).await,
        "the idle one was closed"
    );
    // The second reload was never cut short.
    server.gate.add_permits(1);
    assert_eq!(status_of(&mut second).await, Some(200));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_whose_share_is_busy_is_refused_and_others_are_served() {
    let server = Gated::start(4).await;
    let attacker = Ipv4Addr::new(127, 0, 0, 2);
    let mut held = vec![
        server.held_reload(attacker).await,
        server.held_reload(attacker).await,
    ];
    // A third connection from the same peer: its share (2 of 4) is busy, so it is closed at once.
    let mut third = connect_from(attacker, server.addr).await;
    let _ = third.write_all(KEEP_ALIVE_HEALTHY).await;
    assert_eq!(
        tokio::time::timeout(STEP, status_of(&mut third)).await.ok(),
        Some(None),
        "refused without an answer"
    );
    // Another peer gets in at once.
    drop(probe(PROBE, server.addr).await);
    server.gate.add_permits(2);
    for stream in &mut held {
        assert_eq!(status_of(stream).await, Some(200));
    }
    server.stop().await;
}
