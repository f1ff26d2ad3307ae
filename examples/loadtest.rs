//! Load test of the exporter against the in-process simulator; prints one table.
//!
//! ```sh
//! cargo build --release --bin workspacesweb-exporter
//! cargo run --release --example loadtest -- --portals 5 --active 1000 --history 50000 \
//!     --interval 10s --duration 60s --scrapers 20
//! ```
//!
//! The simulator runs in this process (scripted portals: `--active` running sessions and
//! `--history` terminated ones each, `--churn` sessions started and as many ended every 5 s per
//! portal). The exporter is the real binary, a child process, so `/proc/<pid>` gives its own CPU
//! (utime + stime) and peak RSS (VmHWM). After a warm-up (every portal polled and its monthly
//! users backfill complete), a window of `--duration` is measured: the exporter's CPU, the
//! simulator's requests per poll, and `/metrics` latency with `--scrapers` clients that all
//! scrape at the same instants every `--scrape-interval` (keep-alive, `Accept-Encoding: gzip`).
//! `--full-scan` makes every poll list all Terminated pages (the incremental listing off), for
//! comparison. `--rate` sets `max_requests_per_second` (default: out of the way); the table also
//! gives when `/-/ready` first said 200 with every portal up, and when every portal's monthly
//! users backfill was complete (the startup figure, see BENCHMARKS.md). With `--scrapers 0`, the
//! window only keeps the exporter running (e.g. for an outside load generator such as `wrk`; the
//! address is printed on stderr when the window starts).

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

// The suite includes this file too (`loadtest_smoke`), next to its own copy of the module.
#[allow(clippy::duplicate_mod)]
#[path = "../tests/common/raw_http.rs"]
mod raw_http;

/// The scrapers' `Accept` header line (set once from `--format`).
static ACCEPT: std::sync::OnceLock<&'static str> = std::sync::OnceLock::new();
use workspacesweb_sim::{PortalSpec, SimConfig, SimSession, Simulator, operation};

#[derive(Debug, Parser)]
#[command(about = "Load test: simulator + exporter child process + concurrent scrapers")]
pub struct Args {
    /// Portals on the simulator, all polled by the exporter.
    #[arg(long, default_value_t = 5)]
    portals: usize,
    /// Running sessions per portal (kept steady by the churn).
    #[arg(long, default_value_t = 1000)]
    active: usize,
    /// Terminated sessions per portal, spread over the 30 days before the start.
    #[arg(long, default_value_t = 50_000)]
    history: usize,
    /// Sessions started, and as many ended, every 5 s per portal.
    #[arg(long, default_value_t = 10)]
    churn: usize,
    /// Distinct usernames per portal.
    #[arg(long, default_value_t = 2500)]
    users: usize,
    /// Export per-user series (`per_user.enabled`, `max_users` = `--users`).
    #[arg(long)]
    per_user: bool,
    /// Poll interval.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    interval: Duration,
    /// `page_size` (ListSessions maxResults).
    #[arg(long, default_value_t = 100)]
    page_size: u32,
    /// Portals polled at the same time (`global.concurrency`).
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    /// Client-side rate limit (`global.max_requests_per_second`); the default leaves it out of
    /// the way, `--rate 5` is the exporter's own default (the startup figure).
    #[arg(long, default_value_t = 10_000.0)]
    rate: f64,
    /// Length of the measured window (after the warm-up).
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Concurrent scrapers of /metrics.
    #[arg(long, default_value_t = 20)]
    scrapers: usize,
    /// `Accept` header of the scrapers, to measure a format: `protobuf`, `openmetrics`, or
    /// `text` (no header: text 0.0.4, as before).
    #[arg(long, default_value = "text")]
    format: String,
    /// Each scraper scrapes this often (all at the same instants).
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    scrape_interval: Duration,
    /// Give up the warm-up after this long.
    #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
    warmup_timeout: Duration,
    /// List every Terminated page on every poll (the full-scan baseline).
    #[arg(long)]
    full_scan: bool,
    /// The exporter binary (default: `workspacesweb-exporter` beside this example's directory).
    #[arg(long)]
    exporter: Option<PathBuf>,
    /// Discard the exporter's log (warnings) instead of passing it through.
    #[arg(long)]
    quiet: bool,
    /// Seed of the scripted sessions.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Run the exporter with durable state (`--storage.path` in a temp directory) and report the
    /// state files' sizes.
    #[arg(long)]
    storage: bool,
}

/// Kills the exporter when the bench ends, however it ends.
struct Exporter(Child);

impl Drop for Exporter {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A tiny deterministic generator (xorshift), enough for session shapes.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Utime + stime of a process, in seconds.
fn cpu_seconds(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return f64::NAN;
    };
    // Fields after the command name (which may contain spaces) start at field 3.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(f64::NAN)
        + f.get(12)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(f64::NAN);
    ticks / clock_ticks()
}

fn clock_ticks() -> f64 {
    // sysconf(_SC_CLK_TCK) is 100 on every Linux configuration in use.
    100.0
}

/// A `/proc/<pid>/status` field in KiB (VmHWM, VmRSS).
fn status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// A keep-alive HTTP/1.1 client for one connection; enough for the exporter's responses.
struct Conn {
    stream: Option<TcpStream>,
    addr: SocketAddr,
    /// The `Accept` header line of its `/metrics` requests (`--format`).
    accept: &'static str,
}

impl Conn {
    fn new(addr: SocketAddr) -> Self {
        Conn {
            stream: None,
            addr,
            accept: "",
        }
    }

    /// GET `path`; the status and the body (still encoded).
    async fn get(&mut self, path: &str, gzip: bool) -> std::io::Result<(u16, Vec<u8>)> {
        for attempt in 0..2 {
            if self.stream.is_none() {
                let s = TcpStream::connect(self.addr).await?;
                s.set_nodelay(true)?;
                self.stream = Some(s);
            }
            match self.try_get(path, gzip).await {
                Ok(r) => return Ok(r),
                Err(e) if attempt == 0 => {
                    self.stream = None;
                    let _ = e;
                }
                Err(e) => return Err(e),
            }
        }
        unreachable!()
    }

    async fn try_get(&mut self, path: &str, gzip: bool) -> std::io::Result<(u16, Vec<u8>)> {
        let stream = self.stream.as_mut().expect("connected");
        let enc = if gzip {
            "Accept-Encoding: gzip\r\n"
        } else {
            ""
        };
        let accept = if path == "/metrics" { self.accept } else { "" };
        stream
            .write_all(
                format!("GET {path} HTTP/1.1\r\nHost: bench\r\n{enc}{accept}\r\n").as_bytes(),
            )
            .await?;
        let response = raw_http::read_response(stream, false).await?;
        Ok((response.status, response.body))
    }
}

/// The body of a `/metrics` scrape (gzip) as text lines `name{labels} value`: as sent for the
/// text formats; for protobuf, one such line per series (a histogram as its `_count`), so that
/// the monitor scrapes the format under test and nothing renders text for it alone.
fn gunzip(body: &[u8]) -> String {
    gunzip_families(body, None)
}

/// The families the monitor reads during the window.
const MONITORED: [&str; 2] = [
    "workspacesweb_last_successful_poll_timestamp_seconds",
    "workspacesweb_poll_duration_seconds",
];

/// [`gunzip`], but for protobuf only the families named in `only` are decoded (the others are
/// skipped by their length prefix), so that the monitor's own decoding, on the same two cores,
/// costs no more than its reading of text does.
fn gunzip_families(body: &[u8], only: Option<&[&str]>) -> String {
    use std::io::Read as _;
    let mut out = Vec::new();
    let _ = flate2::read::MultiGzDecoder::new(body).read_to_end(&mut out);
    if ACCEPT.get().is_some_and(|a| a.contains("protobuf")) {
        return protobuf_lines(&out, only);
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The name of an encoded `MetricFamily` (its field 1, which the exporter writes first).
fn family_name(mut message: &[u8]) -> Option<&str> {
    if message.first() != Some(&0x0a) {
        return None;
    }
    message = &message[1..];
    let len = usize::try_from(prost::encoding::decode_varint(&mut message).ok()?).ok()?;
    std::str::from_utf8(message.get(..len)?).ok()
}

/// Delimited protobuf families (those named in `only`, or all) as text lines (see [`gunzip`]).
fn protobuf_lines(mut bytes: &[u8], only: Option<&[&str]>) -> String {
    use prost::Message as _;
    use std::fmt::Write as _;
    use workspacesweb_exporter::exposition::protobuf::proto::MetricFamily;
    let mut families = Vec::new();
    while let Ok(len) = prost::encoding::decode_varint(&mut bytes) {
        let Some(message) = usize::try_from(len).ok().and_then(|l| bytes.get(..l)) else {
            break;
        };
        bytes = &bytes[message.len()..];
        let wanted =
            only.is_none_or(|names| family_name(message).is_some_and(|n| names.contains(&n)));
        if wanted {
            families.extend(MetricFamily::decode(message).ok());
        }
    }
    let mut text = String::new();
    for family in families {
        let name = family.name.unwrap_or_default();
        for m in family.metric {
            let labels: Vec<String> = m
                .label
                .iter()
                .map(|l| {
                    let (n, v) = (l.name.as_deref(), l.value.as_deref());
                    format!("{}=\"{}\"", n.unwrap_or(""), v.unwrap_or(""))
                })
                .collect();
            let (suffix, value) = match (&m.gauge, &m.counter, &m.histogram) {
                (Some(g), _, _) => ("", g.value.unwrap_or(f64::NAN)),
                (_, Some(c), _) => ("", c.value.unwrap_or(f64::NAN)),
                (_, _, Some(h)) => ("_count", h.sample_count.unwrap_or(0) as f64),
                _ => ("", f64::NAN),
            };
            let _ = writeln!(text, "{name}{suffix}{{{}}} {value}", labels.join(","));
        }
    }
    text
}

/// Per-portal values of one metric (`name{portal_id="..."...} value`).
fn per_portal(text: &str, name: &str) -> HashMap<String, f64> {
    let mut out = HashMap::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        if !rest.starts_with('{') {
            continue;
        }
        let Some(id) = rest
            .split("portal_id=\"")
            .nth(1)
            .and_then(|r| r.split('"').next())
        else {
            continue;
        };
        if let Some(v) = rest.rsplit(' ').next().and_then(|v| v.parse().ok()) {
            out.insert(id.to_string(), v);
        }
    }
    out
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn default_exporter() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    // target/<profile>/examples/loadtest -> target/<profile>/workspacesweb-exporter
    exe.parent()
        .and_then(|p| p.parent())
        .map(|p| p.join("workspacesweb-exporter"))
        .expect("target dir")
}

/// Scripted portals: `active` running sessions started in the last 2 h, `history` terminated
/// ones in the 30 days before that; returns the simulator, the portal ids and the active ids.
fn build_sim(a: &Args) -> (Simulator, Vec<String>, Vec<Vec<String>>) {
    let now = now_ms();
    let mut rng = Rng(a.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let mut cfg = SimConfig::new(a.seed);
    cfg.max_page_size = cfg.max_page_size.max(a.page_size as usize);
    let mut ids = Vec::new();
    let mut active_ids = Vec::new();
    let mut n: u64 = 0;
    for p in 0..a.portals {
        let portal_id = SimSession::id_for(u64::MAX - p as u64);
        let mut sessions = Vec::with_capacity(a.active + a.history);
        let mut act = Vec::with_capacity(a.active);
        let span = 30 * 24 * 3_600_000i64;
        for _ in 0..a.history {
            n += 1;
            let start = now - 2 * 3_600_000 - span + rng.below(span as u64) as i64;
            let dur = 60_000 + rng.below(2 * 3_600_000) as i64;
            let user = format!("user-{}", rng.below(a.users as u64));
            sessions.push(SimSession::new(SimSession::id_for(n), user, start).ended(start + dur));
        }
        for _ in 0..a.active {
            n += 1;
            let start = now - 60_000 - rng.below(2 * 3_600_000) as i64;
            let user = format!("user-{}", rng.below(a.users as u64));
            let id = SimSession::id_for(n);
            act.push(id.clone());
            sessions.push(SimSession::new(id, user, start));
        }
        cfg.portals
            .push(PortalSpec::scripted(portal_id.clone(), sessions));
        ids.push(portal_id);
        active_ids.push(act);
    }
    (Simulator::new(cfg), ids, active_ids)
}

fn write_config(a: &Args, endpoint: &str, ids: &[String]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("wsw-loadtest-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("config.yaml");
    let mut y = String::new();
    y.push_str("global:\n  region: us-east-1\n");
    y.push_str(&format!(
        "  interval: {}ms\n  page_size: {}\n  concurrency: {}\n  max_requests_per_second: {}\n",
        a.interval.as_millis(),
        a.page_size,
        a.concurrency,
        a.rate
    ));
    if a.per_user {
        y.push_str(&format!(
            "per_user:\n  enabled: true\n  username: raw\n  max_users: {}\n",
            a.users.max(1)
        ));
    }
    y.push_str("portals:\n");
    for id in ids {
        y.push_str(&format!("  - id: {id}\n    endpoint_url: {endpoint}\n"));
    }
    std::fs::write(&path, y).expect("config written");
    path
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// What the monitor learns from the exporter's own /metrics during the window.
#[derive(Default)]
struct Polls {
    /// Distinct `last_successful_poll_timestamp_seconds` values per portal.
    done: HashMap<String, Vec<f64>>,
    /// Longest `poll_duration_seconds` seen.
    max_duration: f64,
}

/// `count` keep-alive clients that all GET /metrics (gzip) at the same instants every `every`
/// until `deadline`, recording each answer's latency in milliseconds.
async fn scrape_concurrently(
    addr: SocketAddr,
    count: usize,
    every: Duration,
    deadline: Instant,
    latencies: Arc<Mutex<Vec<f64>>>,
    errors: Arc<std::sync::atomic::AtomicU64>,
    body_bytes: Arc<std::sync::atomic::AtomicU64>,
) {
    let start_at = tokio::time::Instant::now() + Duration::from_millis(100);
    let mut scrapers = Vec::new();
    for _ in 0..count {
        let latencies = Arc::clone(&latencies);
        let errors = Arc::clone(&errors);
        let body_bytes = Arc::clone(&body_bytes);
        scrapers.push(tokio::spawn(async move {
            let mut conn = Conn::new(addr);
            conn.accept = ACCEPT.get().copied().unwrap_or("");
            let mut tick = tokio::time::interval_at(start_at, every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            let mut mine = Vec::new();
            loop {
                tick.tick().await;
                if Instant::now() >= deadline {
                    break;
                }
                let began = Instant::now();
                match conn.get("/metrics", true).await {
                    Ok((200, body)) => {
                        mine.push(began.elapsed().as_secs_f64() * 1000.0);
                        body_bytes.store(body.len() as u64, std::sync::atomic::Ordering::Relaxed);
                    }
                    _ => {
                        errors.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                }
            }
            latencies.lock().expect("lock").extend(mine);
        }));
    }
    for s in scrapers {
        let _ = s.await;
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args = Args::parse();
    let accept = match args.format.as_str() {
        "protobuf" => {
            "Accept: application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited\r\n"
        }
        "openmetrics" => "Accept: application/openmetrics-text;version=1.0.0\r\n",
        _ => "",
    };
    let _ = ACCEPT.set(accept);
    let table = run(args).await;
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(table.as_bytes());
    let _ = out.flush();
}

/// Runs the whole load test; the table of figures (Markdown).
pub async fn run(a: Args) -> String {
    let exporter_bin = a.exporter.clone().unwrap_or_else(default_exporter);
    assert!(
        exporter_bin.exists(),
        "exporter binary {} not found: build it first (cargo build --release --bin workspacesweb-exporter)",
        exporter_bin.display()
    );
    let built = Instant::now();
    let (sim, ids, active_ids) = build_sim(&a);
    let running = sim
        .start(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .expect("simulator listens");
    let endpoint = running.endpoint_url();
    let config = write_config(&a, &endpoint, &ids);
    eprintln!(
        "loadtest: simulator ready in {:.1}s ({} portals x {} active + {} history) at {endpoint}",
        built.elapsed().as_secs_f64(),
        a.portals,
        a.active,
        a.history
    );

    // Start the exporter and time /-/healthy.
    let port = free_port();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut cmd = Command::new(&exporter_bin);
    // Only when measuring it: so that an exporter from before the flag can be measured too.
    if a.format == "openmetrics" {
        cmd.arg("--web.enable-openmetrics");
    }
    cmd.arg("--config.file")
        .arg(&config)
        .arg("--web.listen-address")
        .arg(addr.to_string())
        .arg("--log.level")
        .arg("warn")
        .env("AWS_ACCESS_KEY_ID", "AKIDLOADTEST")
        .env("AWS_SECRET_ACCESS_KEY", "secret")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_CONFIG_FILE", "/nonexistent")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
        .env_remove("AWS_PROFILE")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(if a.quiet {
            Stdio::null()
        } else {
            Stdio::inherit()
        });
    if a.full_scan {
        cmd.env("WORKSPACESWEB_BENCH_FULL_SCAN", "1");
    }
    let state_dir = std::env::temp_dir().join(format!("wsw-loadtest-state-{}", std::process::id()));
    if a.storage {
        let _ = std::fs::remove_dir_all(&state_dir);
        cmd.arg("--storage.path").arg(&state_dir);
    }
    let spawned = Instant::now();
    let child = Exporter(cmd.spawn().expect("exporter starts"));
    let pid = child.0.id();
    let mut probe = Conn::new(addr);
    let healthy_after = loop {
        if let Ok((200, _)) = probe.get("/-/healthy", false).await {
            break spawned.elapsed();
        }
        assert!(
            spawned.elapsed() < Duration::from_secs(30),
            "exporter never became healthy"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    };

    // Churn: every 5 s per portal, start `churn` sessions and end as many running ones.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let churn = {
        let sim = sim.clone();
        let ids = ids.clone();
        let stop = Arc::clone(&stop);
        let users = a.users as u64;
        let per_tick = a.churn;
        let mut active_ids = active_ids;
        tokio::spawn(async move {
            let mut rng = Rng(0x5EED_1234_5678_9ABC);
            let mut n: u64 = 1 << 40;
            let mut tick = tokio::time::interval(Duration::from_secs(5));
            tick.tick().await;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                tick.tick().await;
                let now = now_ms();
                for (p, portal) in ids.iter().enumerate() {
                    let act = &mut active_ids[p];
                    for _ in 0..per_tick.min(act.len()) {
                        let i = rng.below(act.len() as u64) as usize;
                        let id = act.swap_remove(i);
                        let _ = sim.end_session(portal, &id, now);
                    }
                    for _ in 0..per_tick {
                        n += 1;
                        let id = SimSession::id_for(n);
                        let user = format!("user-{}", rng.below(users));
                        let _ = sim.add_session(portal, SimSession::new(id.clone(), user, now));
                        act.push(id);
                    }
                }
            }
        })
    };

    // Warm-up: every portal polled successfully and its monthly-users backfill complete. On
    // the way, the time at which `/-/ready` first says 200 with every portal up (the startup
    // figure; checked every 100 ms, so it is late by up to that much).
    let warm_start = Instant::now();
    let mut monitor = Conn::new(addr);
    // The monitor scrapes the format under test too: a Prometheus scrapes one format, so
    // nothing should render another one for the bench's sake.
    monitor.accept = ACCEPT.get().copied().unwrap_or("");
    let mut ready_after = None;
    loop {
        if let Ok((200, body)) = monitor.get("/metrics", true).await {
            let text = gunzip(&body);
            let up = per_portal(&text, "workspacesweb_up");
            let mau = per_portal(&text, "workspacesweb_monthly_active_users");
            let all_up = up.values().filter(|v| **v == 1.0).count() == ids.len();
            if all_up
                && ready_after.is_none()
                && matches!(monitor.get("/-/ready", false).await, Ok((200, _)))
            {
                ready_after = Some(spawned.elapsed());
            }
            if all_up && mau.len() == ids.len() {
                break;
            }
        }
        assert!(
            warm_start.elapsed() < a.warmup_timeout,
            "warm-up did not finish within {:?}",
            a.warmup_timeout
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let warmup = warm_start.elapsed();
    let backfill_after = spawned.elapsed();
    let warmup_requests = [
        operation::LIST_SESSIONS,
        operation::GET_SESSION,
        operation::GET_PORTAL,
    ]
    .map(|op| sim.operation_count(op));
    let ready_after = ready_after.unwrap_or(backfill_after);
    eprintln!(
        "loadtest: warm-up done; measuring {:?} at http://{addr}/metrics",
        a.duration
    );

    // Measured window.
    let requests = |op: &str| -> BTreeMap<String, u64> {
        ids.iter()
            .map(|id| (id.clone(), sim.request_count(id, op)))
            .collect()
    };
    let list0 = requests(operation::LIST_SESSIONS);
    let get0 = requests(operation::GET_SESSION);
    let cpu0 = cpu_seconds(pid);
    let t0 = Instant::now();
    let window_start_unix = now_ms() as f64 / 1000.0;
    let deadline = t0 + a.duration;

    let latencies = Arc::new(Mutex::new(Vec::<f64>::new()));
    let errors = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let body_bytes = Arc::new(std::sync::atomic::AtomicU64::new(0));
    // The scrapers run on a runtime of their own (two workers, like the machine's cores): the
    // monitor's parsing of a large exposition and the simulator answering polls must not delay
    // them, or the latency measured would include the bench's own stalls instead of the
    // exporter's answer.
    let scrape_interval = a.scrape_interval;
    let scraper_count = a.scrapers;
    let scraping = {
        let latencies = Arc::clone(&latencies);
        let errors = Arc::clone(&errors);
        let body_bytes = Arc::clone(&body_bytes);
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("scrapers' runtime");
            runtime.block_on(scrape_concurrently(
                addr,
                scraper_count,
                scrape_interval,
                deadline,
                latencies,
                errors,
                body_bytes,
            ));
        })
    };

    // Monitor: poll completions and durations from the exporter's own series.
    let mut polls = Polls::default();
    let mut last_body = Vec::new();
    while Instant::now() < deadline {
        if let Ok((200, body)) = monitor.get("/metrics", true).await {
            last_body = body.clone();
            let only: &[&str] = &MONITORED;
            let text = tokio::task::spawn_blocking(move || gunzip_families(&body, Some(only)))
                .await
                .unwrap_or_default();
            for (id, ts) in per_portal(
                &text,
                "workspacesweb_last_successful_poll_timestamp_seconds",
            ) {
                let seen = polls.done.entry(id).or_default();
                if seen.last() != Some(&ts) {
                    seen.push(ts);
                }
            }
            for v in per_portal(&text, "workspacesweb_poll_duration_seconds").values() {
                polls.max_duration = polls.max_duration.max(*v);
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let _ = tokio::task::spawn_blocking(move || scraping.join()).await;
    let elapsed = t0.elapsed().as_secs_f64();
    let cpu = cpu_seconds(pid) - cpu0;
    let hwm_kib = status_kib(pid, "VmHWM:");
    let rss_kib = status_kib(pid, "VmRSS:");
    let anon_kib = status_kib(pid, "RssAnon:");
    let file_kib = status_kib(pid, "RssFile:");
    let list1 = requests(operation::LIST_SESSIONS);
    let get1 = requests(operation::GET_SESSION);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    churn.abort();

    // Polls inside the window: those that started after it began (the exporter's timestamp of
    // a successful poll is its start); the schedule is judged on every gap between two polls.
    let mut polls_in_window = 0usize;
    let mut on_time = 0usize;
    let mut gaps = 0usize;
    for seen in polls.done.values() {
        polls_in_window += seen.iter().filter(|ts| **ts >= window_start_unix).count();
        for w in seen.windows(2) {
            gaps += 1;
            if w[1] - w[0] <= a.interval.as_secs_f64() * 1.1 + 0.5 {
                on_time += 1;
            }
        }
    }
    let list_calls: u64 = list1.iter().map(|(k, v)| v - list0[k]).sum();
    let get_calls: u64 = get1.iter().map(|(k, v)| v - get0[k]).sum();
    let polls_expected = (elapsed / a.interval.as_secs_f64()) * ids.len() as f64;
    let polls_denominator = if polls_in_window > 0 {
        polls_in_window as f64
    } else {
        polls_expected
    };
    let new_terminated = (a.churn as f64 * a.interval.as_secs_f64() / 5.0).ceil();
    let page = a.page_size as f64;
    let formula = (a.active as f64 / page).ceil() + (new_terminated / page).ceil() + 1.0;
    let mut lat = latencies.lock().expect("lock").clone();
    lat.sort_by(|x, y| x.total_cmp(y));
    let last_text = gunzip(&last_body);
    let user_series = last_text
        .lines()
        .filter(|l| l.starts_with("workspacesweb_user_"))
        .count();
    let series = last_text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .count();
    let mode = match (a.full_scan, a.storage) {
        (true, _) => "full scan",
        (false, true) => "incremental, --storage.path",
        (false, false) => "incremental",
    };

    let mut out = String::new();
    let _ = writeln!(
        out,
        "| loadtest ({mode}) | {} portals x ({} active + {} history), churn {}/5s, interval {:?}, page {}, concurrency {}, {} requests/s, per_user {}, {} scrapers every {:?}, window {:.0} s |",
        a.portals,
        a.active,
        a.history,
        a.churn,
        a.interval,
        a.page_size,
        a.concurrency,
        a.rate,
        a.per_user,
        a.scrapers,
        a.scrape_interval,
        elapsed
    );
    let _ = writeln!(out, "| --- | ---: |");
    let row = |out: &mut String, k: &str, v: String| {
        let _ = writeln!(out, "| {k} | {v} |");
    };
    if a.storage {
        let sizes: Vec<u64> = std::fs::read_dir(&state_dir)
            .map(|d| {
                d.flatten()
                    .filter(|e| e.file_name().to_string_lossy().ends_with(".state"))
                    .filter_map(|e| e.metadata().ok().map(|m| m.len()))
                    .collect()
            })
            .unwrap_or_default();
        let mean = sizes.iter().sum::<u64>() as f64 / sizes.len().max(1) as f64;
        row(
            &mut out,
            "state file per portal (bytes, mean of files)",
            format!("{mean:.0} ({} files)", sizes.len()),
        );
        let _ = std::fs::remove_dir_all(&state_dir);
    }
    row(
        &mut out,
        "healthy after start (ms)",
        format!("{:.1}", healthy_after.as_secs_f64() * 1000.0),
    );
    row(
        &mut out,
        "warm-up: all portals polled + backfill done (s)",
        format!("{:.1}", warmup.as_secs_f64()),
    );
    row(
        &mut out,
        "/-/ready 200, every portal up (s after start)",
        format!("{:.1}", ready_after.as_secs_f64()),
    );
    row(
        &mut out,
        "monthly-users backfill complete, every portal (s after start)",
        format!("{:.1}", backfill_after.as_secs_f64()),
    );
    row(
        &mut out,
        "requests until then: ListSessions / GetSession / GetPortal",
        format!(
            "{} / {} / {}",
            warmup_requests[0], warmup_requests[1], warmup_requests[2]
        ),
    );
    row(
        &mut out,
        "polls in window (all portals)",
        format!("{polls_in_window} (expected ~{polls_expected:.0})"),
    );
    row(
        &mut out,
        "polls on schedule (gap <= 1.1 x interval)",
        format!("{on_time}/{gaps}"),
    );
    row(
        &mut out,
        "longest poll (s)",
        format!("{:.3}", polls.max_duration),
    );
    row(
        &mut out,
        "ListSessions per poll per portal",
        format!(
            "{:.2} (formula {formula:.0})",
            list_calls as f64 / polls_denominator
        ),
    );
    row(
        &mut out,
        "GetSession per poll per portal",
        format!("{:.2}", get_calls as f64 / polls_denominator),
    );
    row(
        &mut out,
        "exporter CPU (s per minute)",
        format!("{:.3}", cpu / elapsed * 60.0),
    );
    row(
        &mut out,
        "exporter peak RSS, VmHWM (MiB)",
        format!("{:.1}", hwm_kib as f64 / 1024.0),
    );
    row(
        &mut out,
        "exporter RSS at end: total / anon / file (MiB)",
        format!(
            "{:.1} / {:.1} / {:.1}",
            rss_kib as f64 / 1024.0,
            anon_kib as f64 / 1024.0,
            file_kib as f64 / 1024.0
        ),
    );
    row(
        &mut out,
        "series / per-user series",
        format!("{series} / {user_series}"),
    );
    row(
        &mut out,
        "/metrics gzip body (bytes)",
        format!("{}", body_bytes.load(std::sync::atomic::Ordering::Relaxed)),
    );
    row(
        &mut out,
        "scrapes ok / failed",
        format!(
            "{} / {}",
            lat.len(),
            errors.load(std::sync::atomic::Ordering::Relaxed)
        ),
    );
    row(
        &mut out,
        "/metrics p50 / p99 / max (ms)",
        format!(
            "{:.3} / {:.3} / {:.3}",
            percentile(&lat, 0.5),
            percentile(&lat, 0.99),
            lat.last().copied().unwrap_or(f64::NAN)
        ),
    );
    drop(child);
    running.shutdown().await;
    let _ = std::fs::remove_dir_all(config.parent().expect("dir"));
    out
}
