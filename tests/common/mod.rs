//! Shared helpers of the integration tests: a simulator, clients pointed at it, and plans.
#![allow(dead_code)]

pub mod raw_http;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use workspacesweb_exporter::aws::{ClientKey, Clients};
use workspacesweb_exporter::exposition::{self, Exposition};
use workspacesweb_exporter::http::{self, HttpSettings};
use workspacesweb_exporter::ledger::ActiveSummary;
use workspacesweb_exporter::poll::PortalPlan;
use workspacesweb_exporter::snapshot::{PortalSnapshot, Store};
use workspacesweb_sim::{PortalSpec, RunningSim, SimConfig, SimSession, Simulator};

/// The exposition of a store as text, rendered now (tests read it where the HTTP server would
/// serve the cached rendering; `tests/http_server.rs` checks the two are the same).
pub trait ScrapeText {
    /// `workspacesweb_*` then `process_*`, as a scrape without gzip receives it.
    fn scrape_text(&self) -> std::io::Result<bytes::Bytes>;
}

impl ScrapeText for Store {
    fn scrape_text(&self) -> std::io::Result<bytes::Bytes> {
        Ok(exposition::render_text(self))
    }
}

/// A simulator serving on a runtime of its own, for tests without one (the exporter runs as a
/// child process there); it stops when dropped.
pub struct BackgroundSim {
    /// The simulator (ground truth, faults).
    pub sim: Simulator,
    /// Its HTTP server.
    pub running: RunningSim,
    /// Drives the server; declared last so that it outlives `running` on drop.
    _runtime: tokio::runtime::Runtime,
}

/// Starts the simulator of `config` on a free loopback port, served by a one-thread runtime.
pub fn start_background_sim(config: SimConfig) -> BackgroundSim {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let sim = Simulator::new(config);
    let running = runtime
        .block_on(sim.start(SocketAddr::from(([127, 0, 0, 1], 0))))
        .expect("simulator listens");
    BackgroundSim {
        sim,
        running,
        _runtime: runtime,
    }
}

/// Portal ids used across tests (36 chars).
pub const GOOD: &str = "aaaaaaaa-0000-4000-8000-000000000001";
/// A portal answering AccessDenied.
pub const DENIED: &str = "aaaaaaaa-0000-4000-8000-000000000002";
/// A portal the simulator does not know.
pub const MISSING: &str = "aaaaaaaa-0000-4000-8000-000000000003";
/// A throttled portal.
pub const THROTTLED: &str = "aaaaaaaa-0000-4000-8000-000000000004";

/// A simulator serving on loopback, and clients pointed at it.
pub struct Env {
    pub sim: Simulator,
    pub running: RunningSim,
    pub clients: Clients,
    pub store: Arc<Store>,
}

/// Starts `config` on a free loopback port.
pub async fn start(config: SimConfig) -> Env {
    let sim = Simulator::new(config);
    let running = sim
        .start(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .expect("simulator binds");
    let clients = Clients::with_static_credentials("us-east-1", &running.endpoint_url()).await;
    Env {
        sim,
        running,
        clients,
        store: Arc::new(Store::new()),
    }
}

/// A scripted portal with `n` active sessions that started 1 s apart before `base_ms`, spread over
/// `users` usernames (`user0`, `user1`, ...).
pub fn scripted(id: &str, n: u64, base_ms: i64, users: u64) -> PortalSpec {
    let sessions = (0..n)
        .map(|i| {
            SimSession::new(
                SimSession::id_for(i),
                format!("user{}", i % users),
                base_ms - 1000 * (i as i64 + 1),
            )
        })
        .collect();
    PortalSpec::scripted(id, sessions)
}

/// A real Prometheus with `config` (prometheus.yml text) and its TSDB in `dir`, on a free
/// loopback port: the process (killed on drop) and its `host:port`.
pub fn start_prometheus(dir: &std::path::Path, config: String) -> (Child, String) {
    start_prometheus_with(dir, config, &[])
}

/// [`start_prometheus`] with more flags (e.g. `--enable-feature=native-histograms`).
pub fn start_prometheus_with(
    dir: &std::path::Path,
    config: String,
    extra: &[&str],
) -> (Child, String) {
    let addr = format!("127.0.0.1:{}", free_port());
    let path = dir.join("prometheus.yml");
    std::fs::write(&path, config).expect("write prometheus.yml");
    let child = Child(
        std::process::Command::new("prometheus")
            .arg(format!("--config.file={}", path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("tsdb").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .args(extra)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("prometheus starts"),
    );
    (child, addr)
}

/// The exporter's HTTP server over a store, on a free loopback port, until [`Serving::stop`].
pub struct Serving {
    /// `host:port` it listens on.
    pub addr: String,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl Serving {
    /// Serves `store` with default settings on 127.0.0.1.
    pub async fn start(store: Arc<Store>) -> Self {
        let settings = HttpSettings {
            listen_addresses: vec!["127.0.0.1:0".into()],
            ..HttpSettings::default()
        };
        let listeners = http::bind(&settings).await.expect("bind");
        let addr = listeners[0].local_addr().expect("addr").to_string();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let exposition = Arc::new(Exposition::new(store));
        let task = tokio::spawn(http::serve(listeners, exposition, settings, async move {
            let _ = stopped.await;
        }));
        Serving { addr, stop, task }
    }

    /// Shuts the server down and waits for it.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        self.task.await.expect("server task");
    }
}

/// A plan for `portal_id` in us-east-1 with the given interval and page size.
pub fn plan(portal_id: &str, interval: Duration, page_size: u32) -> PortalPlan {
    PortalPlan {
        portal_id: portal_id.to_string(),
        labels: vec![("env".to_string(), "test".to_string())],
        client: ClientKey {
            region: Some("us-east-1".into()),
            ..Default::default()
        },
        interval,
        timeout: interval.mul_f64(0.8).min(Duration::from_secs(10)),
        page_size,
        max_pages: 2000,
        duration_buckets: vec![60.0, 300.0, 900.0, 1800.0, 3600.0],
        native_schema: 3,
        per_user: None,
        arn: None,
        metadata_refresh: workspacesweb_exporter::config::DEFAULT_DISCOVERY_REFRESH,
    }
}

/// Waits (bounded by 60 s, a hang guard, not a timing assertion) until `pred` holds for the portal.
pub async fn wait_portal(
    store: &Store,
    portal_id: &str,
    pred: impl Fn(&PortalSnapshot) -> bool,
) -> Arc<PortalSnapshot> {
    let id = portal_id.to_string();
    tokio::time::timeout(
        Duration::from_secs(60),
        store.wait_until(|ps| ps.iter().any(|p| p.portal_id == id && pred(p))),
    )
    .await
    .unwrap_or_else(|_| {
        panic!(
            "portal {portal_id} never reached the expected state: {:?}",
            store.portal(portal_id)
        )
    });
    store.portal(portal_id).expect("published")
}

/// The active gauges of a snapshot, failing the test if absent.
pub fn active(p: &PortalSnapshot) -> ActiveSummary {
    p.active
        .unwrap_or_else(|| panic!("no active gauges for {}", p.portal_id))
}

/// Requests of `operation` counted by the exporter for a portal.
pub fn requests(p: &PortalSnapshot, operation: &str) -> u64 {
    p.api_requests.get(operation).copied().unwrap_or(0)
}

/// Errors of (`operation`, `code`) counted by the exporter for a portal.
pub fn errors(p: &PortalSnapshot, operation: &str, code: &str) -> u64 {
    p.api_errors
        .get(&(operation.to_string(), code.to_string()))
        .copied()
        .unwrap_or(0)
}

/// A plain HTTP/1.1 GET over std TCP: (status, headers, body). For tests that run real processes.
pub fn http_get(addr: &str, path: &str) -> std::io::Result<(u16, String, Vec<u8>)> {
    http_get_with(addr, path, &[])
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = b.windows(2).position(|w| w == b"\r\n") {
        let size =
            usize::from_str_radix(String::from_utf8_lossy(&b[..eol]).trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        out.extend_from_slice(&b[eol + 2..eol + 2 + size]);
        b = &b[eol + 2 + size + 2..];
    }
    out
}

/// A free loopback port (bound then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// Calls `f` every 100 ms until it returns `Some`, for at most `limit` (a hang guard for external processes
/// that offer no push notification, such as a readiness endpoint).
pub fn poll_until<T>(limit: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = std::time::Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if std::time::Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A child process killed when dropped.
pub struct Child(pub std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs `promtool check metrics` on `text`; `Err` with promtool's output when it rejects it.
/// `Ok(false)` when promtool is not installed (see [`have_or_skip`]).
pub fn promtool_check(text: &[u8]) -> Result<bool, String> {
    if !have_or_skip("promtool", &["--version"], "apt-get install prometheus") {
        return Ok(false);
    }
    pipe_through("promtool", &["check", "metrics"], text).map(|()| true)
}

/// Runs `tool args` with `input` on its standard input: `Err` with what it printed when it fails.
fn pipe_through(tool: &str, args: &[&str], input: &[u8]) -> Result<(), String> {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut child = Command::new(tool)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{tool}: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(input).map_err(|e| e.to_string())?;
    }
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// Like [`http_get`], with extra request headers (e.g. `Accept-Encoding`): (status, headers, body).
pub fn http_get_with(
    addr: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> std::io::Result<(u16, String, Vec<u8>)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    s.write_all(request.as_bytes())?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| std::io::Error::other("no header end"))?;
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other("no status"))?;
    let mut body = raw[split + 4..].to_vec();
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        body = dechunk(&body);
    }
    Ok((status, head, body))
}

/// Waits for `child` to exit, for at most `limit` (a hang guard: the process gives no other signal
/// than its exit). `None` if it is still running then; the caller decides (and the guard kills it).
pub fn wait_exit(
    child: &mut std::process::Child,
    limit: Duration,
) -> Option<std::process::ExitStatus> {
    poll_until(limit, || child.try_wait().ok().flatten())
}

/// A control loop (config file -> reconciler -> scheduler) running against `clients`.
pub struct ControlLoop {
    pub store: Arc<Store>,
    pub reloader: workspacesweb_exporter::reload::Reloader,
    pub stop: tokio::sync::watch::Sender<bool>,
    pub task: tokio::task::JoinHandle<()>,
}

/// Loads `path` and runs its control loop (the shard index comes from the file only).
pub async fn run_control_loop(path: &std::path::Path, clients: &Clients) -> ControlLoop {
    use workspacesweb_exporter::reconcile::Reconciler;
    let loaded = workspacesweb_exporter::config::load(path).unwrap_or_else(|e| panic!("{e}"));
    let index = loaded
        .config
        .sharding
        .resolve_shard_index(|_| None)
        .unwrap_or_else(|e| panic!("{e}"));
    let store = Arc::new(Store::new());
    let r = Reconciler::start(loaded.config, index, clients.clone(), store.clone(), None).await;
    let (commands, rx) = tokio::sync::mpsc::channel(4);
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(r.run(rx, stop_rx));
    let reloader = workspacesweb_exporter::reload::Reloader::new(
        commands,
        http::WebConfigHandle::default(),
        None,
        Some(path.to_path_buf()),
        store.clone(),
    );
    ControlLoop {
        store,
        reloader,
        stop,
        task,
    }
}

impl ControlLoop {
    /// Re-reads the config file, as SIGHUP does; the error as the HTTP 400 body would give it.
    pub async fn reload(&self) -> Result<(), String> {
        self.reloader.reload().await.map_err(|e| e.to_string())
    }

    /// Waits (60 s hang guard) until the published portals are exactly `ids` and `pred` holds for each.
    pub async fn wait(&self, ids: &[&str], pred: impl Fn(&PortalSnapshot) -> bool) {
        use std::collections::BTreeSet;
        let want: BTreeSet<String> = ids.iter().map(|s| s.to_string()).collect();
        let store = self.store.clone();
        tokio::time::timeout(
            Duration::from_secs(60),
            store.wait_until(|ps| {
                ps.iter()
                    .map(|p| p.portal_id.clone())
                    .collect::<BTreeSet<_>>()
                    == want
                    && ps.iter().all(|p| pred(p))
            }),
        )
        .await
        .unwrap_or_else(|_| panic!("portals never became {want:?}: {:?}", self.store.portals()));
    }

    /// Ids of the published portals.
    pub fn ids(&self) -> std::collections::BTreeSet<String> {
        self.store
            .portals()
            .iter()
            .map(|p| p.portal_id.clone())
            .collect()
    }

    /// The exposition as text.
    pub fn text(&self) -> String {
        String::from_utf8(
            self.store
                .scrape_text()
                .expect("exposition decompresses")
                .to_vec(),
        )
        .expect("utf-8 exposition")
    }

    /// Stops the loop and waits for it.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

/// The real exporter binary in `--demo` mode on a free loopback port, once `/-/ready` answers 200
/// (60 s hang guard): the guard that kills it, and its address.
pub fn start_demo_exporter(log_level: &str) -> (Child, String) {
    start_demo_exporter_with(log_level, &[])
}

/// [`start_demo_exporter`] with more flags (e.g. `--storage.path`).
pub fn start_demo_exporter_with(log_level: &str, extra: &[&str]) -> (Child, String) {
    let addr = format!("127.0.0.1:{}", free_port());
    let child = Child(
        std::process::Command::new(env!("CARGO_BIN_EXE_workspacesweb-exporter"))
            .args([
                "--demo",
                "--web.listen-address",
                &addr,
                "--log.level",
                log_level,
            ])
            .args(extra)
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("exporter starts"),
    );
    let ready = poll_until(Duration::from_secs(60), || {
        http_get(&addr, "/-/ready").ok().filter(|r| r.0 == 200)
    });
    assert!(ready.is_some(), "demo exporter never became ready");
    (child, addr)
}

/// Waits (up to `limit`) for `/-/ready` on `addr` to answer 200; panics with the process's stderr
/// (read from `stderr_file`) if it exits first or never gets ready.
pub fn wait_ready_or_exit(
    child: &mut Child,
    addr: &str,
    limit: Duration,
    stderr_file: &std::path::Path,
) {
    let stderr = || std::fs::read_to_string(stderr_file).unwrap_or_default();
    let mut exited = None;
    let ready = poll_until(limit, || {
        if let Ok(Some(status)) = child.0.try_wait() {
            exited = Some(status);
            return Some(false);
        }
        http_get(addr, "/-/ready")
            .ok()
            .filter(|r| r.0 == 200)
            .map(|_| true)
    });
    match (ready, exited) {
        (Some(true), _) => {}
        (_, Some(status)) => panic!(
            "exporter exited ({status}) before it was ready; stderr:\n{}",
            stderr()
        ),
        _ => panic!("exporter not ready after {limit:?}; stderr:\n{}", stderr()),
    }
}

/// Whether `tool --version` runs and succeeds (an external tool some tests need).
pub fn have_tool(tool: &str) -> bool {
    runs(tool, &["--version"])
}

fn runs(tool: &str, args: &[&str]) -> bool {
    std::process::Command::new(tool)
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The one "tool present, or skip" check: whether `tool args` runs and succeeds. When it does not,
/// panics under CI (`CI` set: `.ci/run` must install it, as `install` says) and otherwise says
/// the test is skipped.
pub fn have_or_skip(tool: &str, args: &[&str], install: &str) -> bool {
    if runs(tool, args) {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "CI is set but `{tool}` is missing or broken: .ci/run must install it ({install})"
    );
    eprintln!("skipping: `{tool}` is not installed ({install})");
    false
}

/// The pinned Python `prometheus_client` whose strict OpenMetrics parser checks our OpenMetrics
/// text (`.ci/run` installs it).
pub const PYTHON_PROMETHEUS_CLIENT: &str = "pip install prometheus-client==0.26.0";

/// Parses `text` with the Python `prometheus_client` OpenMetrics parser (an independent strict
/// parser: it refuses a missing `# EOF`, a unit that is not the name's suffix, a counter sample
/// without `_total`, bad escaping): `Ok(false)` when skipped, `Err` with its complaint.
pub fn openmetrics_check(text: &[u8]) -> Result<bool, String> {
    const PARSE: &str = "import sys\n\
        from prometheus_client.openmetrics.parser import text_string_to_metric_families\n\
        families = list(text_string_to_metric_families(sys.stdin.read()))\n\
        print(len(families), sum(len(f.samples) for f in families))\n";
    let import = ["-c", "import prometheus_client.openmetrics.parser"];
    if !have_or_skip("python3", &import, PYTHON_PROMETHEUS_CLIENT) {
        return Ok(false);
    }
    pipe_through("python3", &["-c", PARSE], text).map(|()| true)
}

/// Whether every tool in `tools` runs (`--version`), by [`have_or_skip`].
pub fn have_tools_or_skip(tools: &[&str]) -> bool {
    tools
        .iter()
        .all(|t| have_or_skip(t, &["--version"], "apt-get install prometheus"))
}

/// A Prometheus instant query (at `time` if given): the `data.result` array, or `None` when
/// Prometheus does not answer 200 with one.
pub fn prom_query(prom: &str, q: &str, time: Option<&str>) -> Option<Vec<serde_json::Value>> {
    let mut path = format!(
        "/api/v1/query?query={}",
        form_urlencoded::byte_serialize(q.as_bytes()).collect::<String>()
    );
    if let Some(t) = time {
        path.push_str(&format!("&time={t}"));
    }
    let (status, _, body) = http_get(prom, &path).ok()?;
    if status != 200 {
        eprintln!("{q}: HTTP {status}: {}", String::from_utf8_lossy(&body));
        return None;
    }
    let v: serde_json::Value = serde_json::from_slice(&body).ok()?;
    v["data"]["result"].as_array().cloned()
}
