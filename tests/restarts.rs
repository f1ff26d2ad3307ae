//! Exact across restarts (issue 11, SPEC sections 5, 8 and 9): the real exporter binary, polling
//! an in-process simulator on the system clock through the real SDK, is stopped, killed and
//! restarted, with and without `--storage.path`, and every accounting counter is compared with the
//! ground truth computed from the simulator's timeline.
//!
//! Ground truth (SPEC section 5). T0 is the start of the exporter's first successful poll of the
//! portal (with storage, `t0_ms` of the state file, kept across restarts); P is the start of the
//! last successful poll (`last_successful_poll_timestamp_seconds`, exact to the millisecond).
//! Then, over the sessions the simulator lists at P:
//! - started: sessions with `startTime >= T0` (sessions running at T0 are the baseline);
//! - terminated: sessions with `endTime >= T0`; the histogram observes their `endTime - startTime`;
//! - session seconds: per session the length of `[max(start, T0), min(end, P)]`, when positive;
//! - per user: the same per username.
//!
//! To make the comparison exact the tests quiesce first: no session starts or ends after a time E
//! (every event is scheduled at or after the moment it is made, never in the past, so no poll has
//! seen a state that a later event contradicts), then they wait for a poll that started more than
//! [`QUIET_MS`] after E, and compare what that poll published.
//!
//! Synchronisation is on `/-/ready`, on the published metrics and on process exits; sleeps only
//! let scheduled session events happen (or make a process live for a chosen time in the chaos
//! test). Every wait is bounded.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::{Child, free_port, http_get, poll_until, wait_exit};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use workspacesweb_exporter::session::{UnixMillis, now_ms};
use workspacesweb_sim::{PortalSpec, RunningSim, SimConfig, SimSession, Simulator};

const EXPORTER: &str = env!("CARGO_BIN_EXE_workspacesweb-exporter");

/// The default duration buckets (SPEC section 5).
const BUCKETS: [f64; 10] = [
    60.0, 300.0, 900.0, 1800.0, 3600.0, 7200.0, 14400.0, 28800.0, 43200.0, 86400.0,
];

/// How long after the last session event a poll must start for the comparison to be exact.
const QUIET_MS: i64 = 1500;
/// Hang guard for readiness, for a poll to come, for a process to exit (not timing assertions).
const LIMIT: Duration = Duration::from_secs(45);

const S: i64 = 1000;

const STARTED: &str = "workspacesweb_sessions_started_total";
const TERMINATED: &str = "workspacesweb_sessions_terminated_total";
const DURATION: &str = "workspacesweb_session_duration_seconds";
const SECONDS: &str = "workspacesweb_session_seconds_total";
const USER_STARTED: &str = "workspacesweb_user_sessions_started_total";
const USER_SECONDS: &str = "workspacesweb_user_session_seconds_total";
const LAST_POLL: &str = "workspacesweb_last_successful_poll_timestamp_seconds";
const UP: &str = "workspacesweb_up";
const RESTORED: &str = "workspacesweb_state_restored";
const LAST_WRITE: &str = "workspacesweb_state_last_write_timestamp_seconds";
const WRITE_ERRORS: &str = "workspacesweb_state_write_errors_total";

/// Every accounting counter family (the histogram as its `_bucket`, `_sum` and `_count`).
const ACCOUNTING: [&str; 8] = [
    STARTED,
    TERMINATED,
    "workspacesweb_session_duration_seconds_bucket",
    "workspacesweb_session_duration_seconds_sum",
    "workspacesweb_session_duration_seconds_count",
    SECONDS,
    USER_STARTED,
    USER_SECONDS,
];

// ---------------------------------------------------------------------------------------------
// The simulator, in process, on the system clock
// ---------------------------------------------------------------------------------------------

/// A simulator serving on loopback from its own runtime, so that the test thread can block on
/// processes and plain HTTP while it serves.
struct Sim {
    sim: Simulator,
    endpoint: String,
    _running: RunningSim,
    _rt: tokio::runtime::Runtime,
}

fn start_sim(portals: Vec<PortalSpec>) -> Sim {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let config = portals
        .into_iter()
        .fold(SimConfig::new(11), SimConfig::with_portal);
    let sim = Simulator::new(config);
    let running = rt
        .block_on(sim.start(SocketAddr::from(([127, 0, 0, 1], 0))))
        .expect("simulator binds");
    Sim {
        endpoint: running.endpoint_url(),
        sim,
        _running: running,
        _rt: rt,
    }
}

/// A session id for session number `n` of a test.
fn sid(n: u64) -> String {
    SimSession::id_for(n)
}

/// Baseline sessions, running since long before any exporter starts: `(user, age)` each, ids
/// `sid(0)`, `sid(1)`, ... Their ages spread over the buckets, so that when they end the
/// histogram has more than its first bucket to check.
fn baseline(now: UnixMillis, ages: &[(&str, i64)]) -> Vec<SimSession> {
    ages.iter()
        .enumerate()
        .map(|(i, (user, age))| SimSession::new(sid(i as u64), *user, now - age))
        .collect()
}

/// Session events are scheduled a little in the future, never in the past (see the module docs).
fn soon() -> UnixMillis {
    now_ms() + 20
}

/// Adds a session of `user` that starts at `start`; returns `start`.
fn add(sim: &Simulator, portal: &str, n: u64, user: &str, start: UnixMillis) -> UnixMillis {
    sim.add_session(portal, SimSession::new(sid(n), user, start))
        .expect("add session");
    start
}

/// Ends session `n` at `end`; returns `end`.
fn end(sim: &Simulator, portal: &str, n: u64, end: UnixMillis) -> UnixMillis {
    sim.end_session(portal, &sid(n), end).expect("end session");
    end
}

/// Adds session `n` of `user` that starts at `start` and ends `len_ms` later; returns its end.
fn short(
    sim: &Simulator,
    portal: &str,
    n: u64,
    user: &str,
    start: UnixMillis,
    len_ms: i64,
) -> UnixMillis {
    end(sim, portal, n, add(sim, portal, n, user, start) + len_ms)
}

/// Lets the wall clock pass `at` (scheduled session events happen on their own).
fn sleep_past(at: UnixMillis) {
    let left = at + 5 - now_ms();
    if left > 0 {
        std::thread::sleep(Duration::from_millis(left as u64));
    }
}

// ---------------------------------------------------------------------------------------------
// The exporter binary
// ---------------------------------------------------------------------------------------------

/// The `global` section of most tests: a poll a second.
const FAST: &str = "  interval: 1s\n  timeout: 800ms\n";

/// A config file in `dir` for `portals` at the simulator: `global` settings, per-user series
/// when `per_user`, and `extra` top-level YAML.
fn write_config(
    dir: &Path,
    endpoint: &str,
    portals: &[&str],
    global: &str,
    per_user: bool,
    extra: &str,
) -> PathBuf {
    let mut text = format!("global:\n{global}");
    if per_user {
        text.push_str("per_user:\n  enabled: true\n");
    }
    text.push_str(extra);
    text.push_str("portals:\n");
    for id in portals {
        text.push_str(&format!(
            "  - id: {id}\n    endpoint_url: {endpoint}\n    region: us-east-1\n"
        ));
    }
    let path = dir.join("exporter.yaml");
    std::fs::write(&path, text).expect("write config");
    path
}

/// A running exporter, stderr in a file, killed on drop.
struct Exporter {
    child: Child,
    addr: String,
    stderr: PathBuf,
    _logs: tempfile::TempDir,
}

impl Exporter {
    /// Starts the binary with `config`, on `addr`, with `--storage.path storage` if given, with
    /// dummy static credentials and no `AWS_*` variable of the caller's environment.
    fn spawn(config: &Path, storage: Option<&Path>, addr: &str) -> Exporter {
        let logs = tempfile::tempdir().expect("tempdir");
        let stderr = logs.path().join("stderr");
        let mut cmd = Command::new(EXPORTER);
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("AWS_") {
                cmd.env_remove(name);
            }
        }
        cmd.envs([
            ("AWS_ACCESS_KEY_ID", "AKIDTEST"),
            ("AWS_SECRET_ACCESS_KEY", "secret"),
            ("AWS_EC2_METADATA_DISABLED", "true"),
            ("AWS_CONFIG_FILE", "/nonexistent"),
            ("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent"),
        ]);
        cmd.arg("--config.file")
            .arg(config)
            .args(["--web.listen-address", addr]);
        if let Some(dir) = storage {
            cmd.arg("--storage.path").arg(dir);
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(File::create(&stderr).expect("stderr file"));
        Exporter {
            child: Child(cmd.spawn().expect("exporter starts")),
            addr: addr.to_string(),
            stderr,
            _logs: logs,
        }
    }

    /// [`Exporter::spawn`] on a free loopback port.
    fn start(config: &Path, storage: Option<&Path>) -> Exporter {
        Exporter::spawn(config, storage, &format!("127.0.0.1:{}", free_port()))
    }

    fn pid(&self) -> u32 {
        self.child.0.id()
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Panics with stderr if the process has exited.
    fn assert_running(&mut self) {
        if let Ok(Some(status)) = self.child.0.try_wait() {
            panic!("exporter exited ({status}); stderr:\n{}", self.stderr());
        }
    }

    /// Waits for `/-/ready` to answer 200; fails at once if the exporter exits instead.
    fn wait_ready(&mut self) {
        common::wait_ready_or_exit(&mut self.child, &self.addr, LIMIT, &self.stderr);
    }

    fn try_metrics(&self) -> Option<Expo> {
        let (status, _, body) = http_get(&self.addr, "/metrics").ok()?;
        (status == 200).then(|| Expo::parse(&String::from_utf8_lossy(&body)))
    }

    fn metrics(&mut self) -> Expo {
        self.assert_running();
        self.try_metrics()
            .unwrap_or_else(|| panic!("GET /metrics failed; stderr:\n{}", self.stderr()))
    }

    /// Waits until the metrics satisfy `pred` (fails with stderr and the last exposition).
    fn wait_metrics(&mut self, what: &str, pred: impl Fn(&Expo) -> bool) -> Expo {
        let mut last = None;
        let got = poll_until(LIMIT, || {
            if let Ok(Some(_)) = self.child.0.try_wait() {
                return Some(None);
            }
            let m = self.try_metrics()?;
            if pred(&m) {
                return Some(Some(m));
            }
            last = Some(m);
            None
        });
        match got {
            Some(Some(m)) => m,
            _ => panic!(
                "never saw {what}; last metrics:\n{}\nstderr:\n{}",
                last.map(|m| m.dump()).unwrap_or_default(),
                self.stderr()
            ),
        }
    }

    /// Waits for a successful poll of `portal` that started after `after_ms`.
    fn wait_poll_after(&mut self, portal: &str, after_ms: UnixMillis) -> Expo {
        self.wait_metrics(&format!("a poll of {portal} after {after_ms}"), |m| {
            m.poll_ms(portal).is_some_and(|p| p > after_ms)
        })
    }

    /// SIGTERM, and the exit status.
    fn terminate(&mut self) -> ExitStatus {
        let sent = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .expect("kill(1) runs");
        assert!(sent.success(), "kill -TERM {} failed", self.pid());
        wait_exit(&mut self.child.0, LIMIT).unwrap_or_else(|| {
            panic!(
                "exporter still running {LIMIT:?} after SIGTERM; stderr:\n{}",
                self.stderr()
            )
        })
    }

    /// SIGTERM; the exit must be clean (0).
    fn stop(&mut self) {
        let status = self.terminate();
        assert_eq!(status.code(), Some(0), "stderr:\n{}", self.stderr());
    }

    /// SIGKILL (`kill -9`), and reaps the process.
    fn kill9(&mut self) {
        let _ = self.child.0.kill();
        let _ = self.child.0.wait();
    }

    /// Waits for the process to exit on its own.
    fn wait_exit(&mut self) -> ExitStatus {
        wait_exit(&mut self.child.0, LIMIT).unwrap_or_else(|| {
            panic!(
                "exporter still running after {LIMIT:?}; stderr:\n{}",
                self.stderr()
            )
        })
    }
}

// ---------------------------------------------------------------------------------------------
// The exposition
// ---------------------------------------------------------------------------------------------

/// One series: name and label set.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Series {
    name: String,
    labels: BTreeMap<String, String>,
}

impl std::fmt::Display for Series {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}{{", self.name)?;
        for (i, (k, v)) in self.labels.iter().enumerate() {
            let sep = if i == 0 { "" } else { "," };
            write!(f, "{sep}{k}={v:?}")?;
        }
        write!(f, "}}")
    }
}

/// A parsed text exposition.
#[derive(Debug, Clone, Default)]
struct Expo(BTreeMap<Series, f64>);

/// Parses `a="x",b="y\"z"` (the inside of the braces).
fn parse_labels(s: &str) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.peek() == Some(&',') || chars.peek() == Some(&' ') {
            chars.next();
        }
        let name: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if name.is_empty() {
            return labels;
        }
        assert_eq!(chars.next(), Some('"'), "label {name} in {s:?}");
        let mut value = String::new();
        while let Some(c) = chars.next() {
            match c {
                '"' => break,
                '\\' => match chars.next() {
                    Some('n') => value.push('\n'),
                    Some(other) => value.push(other),
                    None => break,
                },
                c => value.push(c),
            }
        }
        labels.insert(name, value);
    }
}

impl Expo {
    fn parse(text: &str) -> Expo {
        let mut map = BTreeMap::new();
        for line in text
            .lines()
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
        {
            let (series, value) = line
                .rsplit_once(' ')
                .unwrap_or_else(|| panic!("sample without value: {line:?}"));
            let value: f64 = match value {
                "+Inf" => f64::INFINITY,
                "-Inf" => f64::NEG_INFINITY,
                v => v
                    .parse()
                    .unwrap_or_else(|_| panic!("bad value in {line:?}")),
            };
            let (name, labels) = match series.split_once('{') {
                Some((name, rest)) => (name, parse_labels(rest.trim_end_matches('}'))),
                None => (series, BTreeMap::new()),
            };
            map.insert(
                Series {
                    name: name.to_string(),
                    labels,
                },
                value,
            );
        }
        Expo(map)
    }

    fn dump(&self) -> String {
        self.0
            .iter()
            .filter(|(s, _)| s.name.starts_with("workspacesweb_"))
            .map(|(s, v)| format!("{s} {v}\n"))
            .collect()
    }

    /// The series named `name` whose labels include `labels`.
    fn find(&self, name: &str, labels: &[(&str, &str)]) -> Vec<(&Series, f64)> {
        self.0
            .iter()
            .filter(|(s, _)| {
                s.name == name
                    && labels
                        .iter()
                        .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|(s, v)| (s, *v))
            .collect()
    }

    /// The one value of `name` with `labels` (panics if several series match).
    fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let found = self.find(name, labels);
        assert!(found.len() <= 1, "several {name} {labels:?}: {found:?}");
        found.first().map(|(_, v)| *v)
    }

    /// The value of `name` for `portal`.
    fn portal(&self, name: &str, portal: &str) -> Option<f64> {
        self.get(name, &[("portal_id", portal)])
    }

    /// Start of the last successful poll of `portal`, in exact milliseconds.
    fn poll_ms(&self, portal: &str) -> Option<UnixMillis> {
        self.portal(LAST_POLL, portal)
            .map(|s| (s * 1000.0).round() as UnixMillis)
    }

    /// Every accounting counter series of `portal` (see [`ACCOUNTING`]), by its text form.
    fn accounting(&self, portal: &str) -> BTreeMap<String, f64> {
        ACCOUNTING
            .iter()
            .flat_map(|name| self.find(name, &[("portal_id", portal)]))
            .map(|(s, v)| (s.to_string(), v))
            .collect()
    }

    /// What the exporter published for `portal`, in the shape of [`Truth`].
    fn observed(&self, portal: &str) -> Truth {
        let u = |name: &str| self.portal(name, portal).map_or(u64::MAX, |v| v as u64);
        let ms = |v: f64| (v * 1000.0).round() as i64;
        let mut buckets = Vec::new();
        for bound in BUCKETS {
            let v = self
                .find(&format!("{DURATION}_bucket"), &[("portal_id", portal)])
                .into_iter()
                .find(|(s, _)| {
                    s.labels.get("le").and_then(|le| le.parse::<f64>().ok()) == Some(bound)
                })
                .map_or(u64::MAX, |(_, v)| v as u64);
            buckets.push(v);
        }
        let per_user = |name: &str| -> BTreeMap<String, f64> {
            self.find(name, &[("portal_id", portal)])
                .into_iter()
                .map(|(s, v)| (s.labels.get("username").cloned().unwrap_or_default(), v))
                .filter(|(_, v)| *v != 0.0)
                .collect()
        };
        Truth {
            started: u(STARTED),
            terminated: u(TERMINATED),
            buckets,
            inf: self
                .get(
                    &format!("{DURATION}_bucket"),
                    &[("portal_id", portal), ("le", "+Inf")],
                )
                .map_or(u64::MAX, |v| v as u64),
            count: u(&format!("{DURATION}_count")),
            sum_ms: self
                .portal(&format!("{DURATION}_sum"), portal)
                .map_or(i64::MIN, ms),
            session_ms: self.portal(SECONDS, portal).map_or(i64::MIN, ms),
            user_started: per_user(USER_STARTED)
                .into_iter()
                .map(|(k, v)| (k, v as u64))
                .collect(),
            user_ms: per_user(USER_SECONDS)
                .into_iter()
                .map(|(k, v)| (k, ms(v)))
                .collect(),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Ground truth
// ---------------------------------------------------------------------------------------------

/// The accounting counters of one portal (durations and seconds in exact milliseconds; per-user
/// maps leave out zeros, which the exporter may or may not publish).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Truth {
    started: u64,
    terminated: u64,
    /// Cumulative, one per [`BUCKETS`] bound.
    buckets: Vec<u64>,
    inf: u64,
    count: u64,
    sum_ms: i64,
    session_ms: i64,
    user_started: BTreeMap<String, u64>,
    user_ms: BTreeMap<String, i64>,
}

/// The ground truth over `sessions` (the simulator's listing at `p`) for a ledger started at `t0`
/// and polled last at `p` (see the module docs). Per-user maps only when `per_user`.
fn truth(sessions: &[SimSession], t0: UnixMillis, p: UnixMillis, per_user: bool) -> Truth {
    let mut t = Truth {
        buckets: vec![0; BUCKETS.len()],
        ..Truth::default()
    };
    for s in sessions {
        let user = s
            .username
            .clone()
            .filter(|u| !u.is_empty())
            .unwrap_or_else(|| "__unknown__".into());
        if s.start_ms >= t0 {
            t.started += 1;
            *t.user_started.entry(user.clone()).or_default() += 1;
        }
        if let Some(e) = s.end_ms.filter(|e| *e >= t0) {
            t.terminated += 1;
            t.count += 1;
            t.inf += 1;
            let d = e - s.start_ms;
            t.sum_ms += d;
            for (i, bound) in BUCKETS.iter().enumerate() {
                if d as f64 / 1000.0 <= *bound {
                    t.buckets[i] += 1;
                }
            }
        }
        let from = s.start_ms.max(t0);
        let to = s.end_ms.unwrap_or(p).min(p);
        if to > from {
            t.session_ms += to - from;
            *t.user_ms.entry(user).or_default() += to - from;
        }
    }
    if per_user {
        t.user_started.retain(|_, v| *v != 0);
        t.user_ms.retain(|_, v| *v != 0);
    } else {
        t.user_started.clear();
        t.user_ms.clear();
    }
    t
}

/// The ground truth of `portal` for what `m` published, with `t0`: the simulator's listing at the
/// poll's start.
fn truth_at(sim: &Simulator, portal: &str, m: &Expo, t0: UnixMillis, per_user: bool) -> Truth {
    let p = m.poll_ms(portal).expect("a successful poll");
    truth(&sim.sessions_at(portal, p), t0, p, per_user)
}

// ---------------------------------------------------------------------------------------------
// State files
// ---------------------------------------------------------------------------------------------

fn state_path(dir: &Path, portal: &str) -> PathBuf {
    dir.join(format!("{portal}.state"))
}

/// The state file of `portal`, parsed.
fn state_json(dir: &Path, portal: &str) -> serde_json::Value {
    let path = state_path(dir, portal);
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

/// T0 of `portal` as its state file holds it.
fn state_t0(dir: &Path, portal: &str) -> UnixMillis {
    let v = state_json(dir, portal);
    v["t0_ms"]
        .as_i64()
        .unwrap_or_else(|| panic!("no integer t0_ms in the state of {portal}: {v}"))
}

/// `written_at_ms` of the state file of `portal`, if it exists and parses.
fn state_written(dir: &Path, portal: &str) -> Option<i64> {
    let bytes = std::fs::read(state_path(dir, portal)).ok()?;
    serde_json::from_slice::<serde_json::Value>(&bytes).ok()?["written_at_ms"].as_i64()
}

/// Names of the files in `dir` that end in `.corrupt`.
fn corrupt_files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("read storage dir")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".corrupt"))
        .collect();
    names.sort();
    names
}

// ---------------------------------------------------------------------------------------------
// Monotonic history of scraped counters
// ---------------------------------------------------------------------------------------------

/// Every accounting counter value scraped, in order, across processes.
#[derive(Default)]
struct History {
    /// (process number, series, value)
    samples: Vec<(usize, String, f64)>,
}

impl History {
    fn record(&mut self, process: usize, m: &Expo, portal: &str) -> usize {
        let acc = m.accounting(portal);
        let n = acc.len();
        self.samples
            .extend(acc.into_iter().map(|(k, v)| (process, k, v)));
        n
    }

    /// Every place where a series went down (empty when the history is monotonic).
    fn decreases(&self) -> Vec<String> {
        let mut last: BTreeMap<&str, (usize, f64)> = BTreeMap::new();
        let mut out = Vec::new();
        for (process, series, value) in &self.samples {
            if let Some((p, v)) = last.get(series.as_str())
                && value < v
            {
                out.push(format!(
                    "{series}: {v} (process {p}) then {value} (process {process})"
                ));
            }
            last.insert(series, (*process, *value));
        }
        out
    }

    fn series(&self) -> BTreeSet<&str> {
        self.samples.iter().map(|(_, s, _)| s.as_str()).collect()
    }
}

// ---------------------------------------------------------------------------------------------
// Churn: sessions starting and ending at random, in the background
// ---------------------------------------------------------------------------------------------

/// A thread that keeps adding short sessions and ending open ones at random until stopped.
struct Churn {
    stop: Arc<AtomicBool>,
    /// The latest session event scheduled so far (start or end), epoch ms.
    last_event: Arc<AtomicI64>,
    handle: Option<JoinHandle<(u64, u64)>>,
}

impl Churn {
    /// Churns `portal` with sessions numbered from `first_id`, users from `users`; `open` are the
    /// session numbers (with their start) it may also end. Pauses of `pause_ms` between events.
    fn start(
        sim: &Simulator,
        portal: &str,
        seed: u64,
        first_id: u64,
        users: &'static [&'static str],
        open: Vec<(u64, UnixMillis)>,
        pause_ms: std::ops::Range<u64>,
    ) -> Churn {
        let stop = Arc::new(AtomicBool::new(false));
        let last_event = Arc::new(AtomicI64::new(0));
        let (sim, portal) = (sim.clone(), portal.to_string());
        let (stop2, last2) = (stop.clone(), last_event.clone());
        let handle = std::thread::spawn(move || {
            let mut rng = StdRng::seed_from_u64(seed);
            let mut open = open;
            let mut next = first_id;
            let (mut added, mut ended) = (0, 0);
            while !stop2.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(rng.random_range(pause_ms.clone())));
                let at = now_ms() + rng.random_range(0..150);
                if open.is_empty() || rng.random_bool(0.55) {
                    let user = users[rng.random_range(0..users.len())];
                    add(&sim, &portal, next, user, at);
                    open.push((next, at));
                    next += 1;
                    added += 1;
                    last2.fetch_max(at, Ordering::SeqCst);
                } else {
                    let (n, start) = open.swap_remove(rng.random_range(0..open.len()));
                    let e = end(&sim, &portal, n, at.max(start + 1));
                    ended += 1;
                    last2.fetch_max(e, Ordering::SeqCst);
                }
            }
            (added, ended)
        });
        Churn {
            stop,
            last_event,
            handle: Some(handle),
        }
    }

    /// Stops the thread: (sessions added, sessions ended), and the last event time.
    fn finish(mut self) -> ((u64, u64), UnixMillis) {
        self.stop.store(true, Ordering::SeqCst);
        let counts = self
            .handle
            .take()
            .expect("running")
            .join()
            .expect("churn thread");
        (counts, self.last_event.load(Ordering::SeqCst))
    }
}

impl Drop for Churn {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// The seed of a randomised test: `RESTARTS_SEED` if set, else from the clock (printed).
fn seed(test: &str) -> u64 {
    let seed = std::env::var("RESTARTS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
        });
    eprintln!("{test}: seed {seed} (rerun with RESTARTS_SEED={seed})");
    seed
}

// ---------------------------------------------------------------------------------------------
// 1. Stateless restart
// ---------------------------------------------------------------------------------------------

#[test]
fn stateless_restart_counts_only_sessions_started_after_t0() {
    const PORTAL: &str = "cccccccc-0000-4000-8000-000000000001";
    let began = Instant::now();
    let now = now_ms();
    let sim = start_sim(vec![PortalSpec::scripted(
        PORTAL,
        baseline(
            now,
            &[
                ("alice", 100 * S),
                ("bob", 400 * S),
                ("carol", 1000 * S),
                ("dave", 2000 * S),
                ("alice", 4000 * S),
                ("erin", 8000 * S),
            ],
        ),
    )]);
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(dir.path(), &sim.endpoint, &[PORTAL], FAST, true, "");
    let s = &sim.sim;

    // First process: two sessions start after its T0, one of them ends, one baseline ends.
    let mut a = Exporter::start(&config, None);
    a.wait_ready();
    let first = a.metrics();
    assert_eq!(
        first.portal(STARTED, PORTAL),
        Some(0.0),
        "six sessions running at T0 are the baseline, not starts:\n{}",
        first.dump()
    );
    add(s, PORTAL, 100, "frank", soon());
    add(s, PORTAL, 101, "alice", soon());
    let mut last = end(s, PORTAL, 101, soon() + 300);
    last = last.max(end(s, PORTAL, 0, soon()));
    sleep_past(last);
    let m = a.wait_poll_after(PORTAL, last + QUIET_MS);
    let o = m.observed(PORTAL);
    assert_eq!((o.started, o.terminated), (2, 2), "{}", m.dump());
    a.stop();

    // Downtime: session 100 ends, 102 starts and ends, 103 and 104 start and keep running.
    let mut last = end(s, PORTAL, 100, soon());
    last = last.max(short(s, PORTAL, 102, "bob", soon(), 200));
    last = last.max(add(s, PORTAL, 103, "carol", soon()));
    last = last.max(add(s, PORTAL, 104, "gina", soon()));
    sleep_past(last);

    // Second process, without storage: its own T0 lies between its spawn and its readiness, and
    // no session event happens in between, so the counts do not depend on where exactly.
    let spawned = now_ms();
    let mut b = Exporter::start(&config, None);
    b.wait_ready();
    let ready = now_ms();
    let m = b.metrics();
    let o = m.observed(PORTAL);
    assert_eq!(
        (o.started, o.terminated, o.count),
        (0, 0, 0),
        "nothing started or ended since the second process's T0 (7 sessions running at T0 are its baseline):\n{}",
        m.dump()
    );
    assert!(o.user_started.is_empty(), "{:?}", o.user_started);
    assert_eq!(
        m.portal("workspacesweb_active_sessions", PORTAL),
        Some(7.0),
        "the baseline is still active"
    );

    // After its T0: 105 and 106 start (106 ends); 103 (started in the downtime) and baseline 1 end.
    add(s, PORTAL, 105, "alice", soon());
    let mut last = short(s, PORTAL, 106, "gina", soon(), 250);
    last = last.max(end(s, PORTAL, 103, soon()));
    last = last.max(end(s, PORTAL, 1, soon()));
    sleep_past(last);
    let m = b.wait_poll_after(PORTAL, last + QUIET_MS);
    let o = m.observed(PORTAL);
    let p = m.poll_ms(PORTAL).expect("poll");
    let sessions = s.sessions_at(PORTAL, p);
    let early = truth(&sessions, spawned, p, true);
    let late = truth(&sessions, ready, p, true);
    assert_eq!(
        o.started,
        2,
        "only 105 and 106 started after T0:\n{}",
        m.dump()
    );
    assert_eq!(o.terminated, 3, "106, 103 and baseline 1:\n{}", m.dump());
    // Everything but the session seconds is the same for any T0 in [spawned, ready].
    let mut expected = late.clone();
    expected.session_ms = o.session_ms;
    expected.user_ms = o.user_ms.clone();
    assert_eq!(o, expected, "counters of the second process");
    assert_eq!(
        early.started, late.started,
        "the scenario does not depend on the exact T0"
    );
    assert_eq!(
        o.user_started,
        BTreeMap::from([("alice".to_string(), 1), ("gina".to_string(), 1)]),
    );
    assert!(
        (late.session_ms..=early.session_ms).contains(&o.session_ms),
        "session seconds {} ms, expected within [{}, {}] ms (T0 between spawn {spawned} and ready {ready})",
        o.session_ms,
        late.session_ms,
        early.session_ms
    );
    for (user, ms) in &o.user_ms {
        let lo = late.user_ms.get(user).copied().unwrap_or(0);
        let hi = early.user_ms.get(user).copied().unwrap_or(0);
        assert!(
            (lo..=hi).contains(ms),
            "user {user}: {ms} ms not in [{lo}, {hi}]"
        );
    }
    assert_eq!(
        o.user_ms.keys().collect::<Vec<_>>(),
        late.user_ms.keys().collect::<Vec<_>>()
    );
    b.stop();
    eprintln!("took {:?}", began.elapsed());
}

// ---------------------------------------------------------------------------------------------
// 2. Restart with state
// ---------------------------------------------------------------------------------------------

#[test]
fn restart_with_state_counts_downtime_sessions_exactly_once() {
    const PORTAL: &str = "cccccccc-0000-4000-8000-000000000002";
    let began = Instant::now();
    let now = now_ms();
    let sim = start_sim(vec![PortalSpec::scripted(
        PORTAL,
        baseline(
            now,
            &[
                ("alice", 100 * S),
                ("bob", 400 * S),
                ("carol", 1000 * S),
                ("dave", 2000 * S),
                ("alice", 4000 * S),
                ("bob", 8000 * S),
                ("carol", 20_000 * S),
                ("dave", 50_000 * S),
            ],
        ),
    )]);
    let dir = tempfile::tempdir().expect("tempdir");
    let storage = dir.path().join("state");
    let config = write_config(
        dir.path(),
        &sim.endpoint,
        &[PORTAL],
        FAST,
        true,
        "storage:\n  max_age: 30d\n",
    );
    let s = &sim.sim;

    // First process: 100 starts (and runs into the downtime), 101 starts and ends, 103 starts
    // and runs to the end; baseline 0 ends.
    let mut a = Exporter::start(&config, Some(&storage));
    a.wait_ready();
    let t0 = state_t0(&storage, PORTAL);
    assert_eq!(
        a.metrics().portal(RESTORED, PORTAL),
        Some(0.0),
        "no state to resume at the first start"
    );
    add(s, PORTAL, 100, "erin", soon());
    let mut last = short(s, PORTAL, 101, "alice", soon(), 300);
    last = last.max(add(s, PORTAL, 103, "bob", soon()));
    last = last.max(end(s, PORTAL, 0, soon()));
    sleep_past(last);
    let m = a.wait_poll_after(PORTAL, last + QUIET_MS);
    assert_eq!(
        m.observed(PORTAL),
        truth_at(s, PORTAL, &m, t0, true),
        "first process"
    );
    assert_eq!(m.observed(PORTAL).started, 3, "{}", m.dump());
    let before = m.accounting(PORTAL);
    a.stop();

    // Downtime: 100 (started before it) ends; baseline 1 ends; 104 starts and ends; 105 starts
    // and keeps running (a new user); 106 starts and ends.
    let mut last = end(s, PORTAL, 100, soon());
    last = last.max(end(s, PORTAL, 1, soon() + 50));
    last = last.max(short(s, PORTAL, 104, "carol", soon(), 400));
    last = last.max(add(s, PORTAL, 105, "frank", soon() + 30));
    last = last.max(short(s, PORTAL, 106, "alice", soon() + 60, 150));
    sleep_past(last);
    let downtime_end = now_ms();

    // Second process: resumes from the state.
    let mut b = Exporter::start(&config, Some(&storage));
    b.wait_ready();
    let m = b.metrics();
    assert_eq!(m.portal(RESTORED, PORTAL), Some(1.0), "{}", m.dump());
    assert_eq!(state_t0(&storage, PORTAL), t0, "T0 survives the restart");
    let mut history = History::default();
    history
        .samples
        .extend(before.into_iter().map(|(k, v)| (0, k, v)));
    history.record(1, &m, PORTAL);
    let m = b.wait_poll_after(PORTAL, downtime_end);
    assert_eq!(
        m.observed(PORTAL),
        truth_at(s, PORTAL, &m, t0, true),
        "right after the restart, every downtime session is counted once"
    );
    history.record(1, &m, PORTAL);

    // Life goes on: baseline 2 ends, 107 starts and ends.
    let mut last = end(s, PORTAL, 2, soon());
    last = last.max(short(s, PORTAL, 107, "dave", soon(), 500));
    sleep_past(last);
    let m = b.wait_poll_after(PORTAL, last + QUIET_MS);
    history.record(1, &m, PORTAL);
    let o = m.observed(PORTAL);
    let expected = truth_at(s, PORTAL, &m, t0, true);
    assert_eq!(o, expected, "after the restart, against the timeline");
    // The same, spelled out: 100, 101, 103, 104, 105, 106, 107 started; 0, 101, 100, 1, 104, 106,
    // 2, 107 ended.
    assert_eq!((o.started, o.terminated), (7, 8), "{}", m.dump());
    assert_eq!(
        o.user_started,
        BTreeMap::from([
            ("alice".to_string(), 2),
            ("bob".to_string(), 1),
            ("carol".to_string(), 1),
            ("dave".to_string(), 1),
            ("erin".to_string(), 1),
            ("frank".to_string(), 1),
        ])
    );
    assert!(
        expected.buckets[..4].iter().collect::<BTreeSet<_>>().len() > 1,
        "the histogram has more than one bucket to check: {expected:?}"
    );
    assert_eq!(history.decreases(), Vec::<String>::new());
    b.stop();
    let state = state_json(&storage, PORTAL);
    assert_eq!(state["version"], 1, "{state}");
    assert_eq!(state["portal_id"], PORTAL, "{state}");
    // Session counts and usernames are nobody else's business: 0700 and 0600 (SPEC 9).
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &Path| std::fs::metadata(p).expect("metadata").permissions().mode() & 0o777;
    assert_eq!(mode(&storage), 0o700, "{}", storage.display());
    assert_eq!(mode(&state_path(&storage, PORTAL)), 0o600);
    eprintln!("took {:?}", began.elapsed());
}

// ---------------------------------------------------------------------------------------------
// 3. Chaos: kill -9 at random moments, sessions churning
// ---------------------------------------------------------------------------------------------

#[test]
fn chaos_kill_9_during_churn_keeps_counters_monotonic_and_exact() {
    const PORTAL: &str = "cccccccc-0000-4000-8000-000000000003";
    const USERS: &[&str] = &["ann", "ben", "cat", "dan", "eve"];
    const RESTARTS: usize = 30;
    let began = Instant::now();
    let seed = seed("chaos");
    let mut rng = StdRng::seed_from_u64(seed);
    let now = now_ms();
    let ages = [
        ("ann", 30 * S),
        ("ben", 200 * S),
        ("cat", 700 * S),
        ("dan", 1500 * S),
        ("eve", 3000 * S),
        ("ann", 5000 * S),
        ("ben", 10_000 * S),
        ("cat", 20_000 * S),
        ("dan", 40_000 * S),
        ("eve", 80_000 * S),
    ];
    let sim = start_sim(vec![PortalSpec::scripted(PORTAL, baseline(now, &ages))]);
    let dir = tempfile::tempdir().expect("tempdir");
    let storage = dir.path().join("state");
    let config = write_config(dir.path(), &sim.endpoint, &[PORTAL], FAST, true, "");
    let open = (0..ages.len() as u64)
        .map(|i| (i, now - ages[i as usize].1))
        .collect();
    let churn = Churn::start(&sim.sim, PORTAL, seed ^ 0xC4A0, 1000, USERS, open, 40..200);

    let mut history = History::default();
    let mut never_wrote = 0;
    let mut published = 0;
    for i in 0..RESTARTS {
        // Every fourth process dies young, most likely before its first poll completes.
        let life = if i % 4 == 1 {
            Duration::from_millis(rng.random_range(0..150))
        } else {
            Duration::from_millis(rng.random_range(200..3000))
        };
        let written_before = state_written(&storage, PORTAL);
        let mut e = Exporter::start(&config, Some(&storage));
        let born = Instant::now();
        let mut scrapes = 0;
        while born.elapsed() < life {
            e.assert_running();
            if let Some(m) = e.try_metrics()
                && history.record(i, &m, PORTAL) > 0
            {
                scrapes += 1;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        e.kill9();
        if scrapes > 0 {
            published += 1;
        }
        if state_written(&storage, PORTAL) == written_before {
            never_wrote += 1;
        }
        eprintln!(
            "process {i}: life {life:?}, {scrapes} scrapes with counters{}",
            if state_written(&storage, PORTAL) == written_before {
                ", killed before writing any state"
            } else {
                ""
            }
        );
    }
    let ((added, ended), last) = churn.finish();
    eprintln!(
        "{RESTARTS} kill -9 restarts: {added} sessions added, {ended} ended; {published} processes published counters, {never_wrote} never wrote state"
    );

    // The last process, once quiet.
    let mut e = Exporter::start(&config, Some(&storage));
    e.wait_ready();
    sleep_past(last);
    let m = e.wait_poll_after(PORTAL, last + QUIET_MS);
    history.record(RESTARTS, &m, PORTAL);
    assert_eq!(m.portal(RESTORED, PORTAL), Some(1.0), "{}", m.dump());
    let t0 = state_t0(&storage, PORTAL);
    let o = m.observed(PORTAL);
    let expected = truth_at(&sim.sim, PORTAL, &m, t0, true);
    assert_eq!(
        o, expected,
        "final values against the timeline (seed {seed})"
    );
    assert!(
        expected.started > 20 && expected.terminated > 10,
        "churn was busy enough to mean something: {expected:?}"
    );
    let decreases = history.decreases();
    assert!(
        decreases.is_empty(),
        "counters went down across kill -9 restarts (seed {seed}):\n{}",
        decreases.join("\n")
    );
    assert!(
        published >= RESTARTS / 2,
        "only {published} of {RESTARTS} processes published counters"
    );
    assert!(
        never_wrote >= 1,
        "no process was killed before its first poll completed"
    );
    assert!(
        history.series().len() > 15,
        "the history covers the histogram and per-user series: {:?}",
        history.series()
    );
    assert_eq!(
        corrupt_files(&storage),
        Vec::<String>::new(),
        "kill -9 never leaves a bad state file"
    );
    e.stop();
    eprintln!(
        "{} counter samples, monotonic; took {:?}",
        history.samples.len(),
        began.elapsed()
    );
}

// ---------------------------------------------------------------------------------------------
// 4. A real Prometheus through two restarts
// ---------------------------------------------------------------------------------------------

fn have(tool: &str) -> bool {
    common::have_tool(tool)
}

/// An instant query (at `time` if given): the `data.result` array.
fn prom_query(prom: &str, q: &str, time: Option<&str>) -> Option<Vec<serde_json::Value>> {
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

/// The one value of an instant-vector query.
fn prom_value(prom: &str, q: &str, time: Option<&str>) -> Option<f64> {
    let r = prom_query(prom, q, time)?;
    match r.as_slice() {
        [one] => one["value"][1].as_str()?.parse().ok(),
        _ => None,
    }
}

/// The raw samples `(ms, value)` of a range-vector query.
fn prom_samples(prom: &str, q: &str) -> Vec<(i64, f64)> {
    let r = prom_query(prom, q, None).unwrap_or_else(|| panic!("query {q}"));
    assert_eq!(r.len(), 1, "{q}: {r:?}");
    r[0]["values"]
        .as_array()
        .expect("values")
        .iter()
        .map(|pair| {
            let t = pair[0].as_f64().expect("timestamp");
            let v: f64 = pair[1].as_str().expect("value").parse().expect("number");
            ((t * 1000.0).round() as i64, v)
        })
        .collect()
}

/// Seconds with milliseconds, as Prometheus takes a time.
fn prom_time(ms: i64) -> String {
    format!("{}.{:03}", ms.div_euclid(1000), ms.rem_euclid(1000))
}

#[test]
fn prometheus_sees_no_reset_across_two_restarts_with_state() {
    const PORTAL: &str = "cccccccc-0000-4000-8000-000000000004";
    const USERS: &[&str] = &["ann", "ben", "cat"];
    if !have("prometheus") {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI is set but prometheus is missing: .ci/run must install it"
        );
        eprintln!("skipping: prometheus not installed (apt-get install prometheus)");
        return;
    }
    let began = Instant::now();
    let now = now_ms();
    let ages = [("ann", 100 * S), ("ben", 1000 * S), ("cat", 10_000 * S)];
    let sim = start_sim(vec![PortalSpec::scripted(PORTAL, baseline(now, &ages))]);
    let dir = tempfile::tempdir().expect("tempdir");
    let storage = dir.path().join("state");
    let config = write_config(dir.path(), &sim.endpoint, &[PORTAL], FAST, false, "");
    let addr = format!("127.0.0.1:{}", free_port());
    let (_prom, prom) = common::start_prometheus(
        dir.path(),
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: restarts\n    static_configs:\n      - targets: ['{addr}']\n"
        ),
    );
    let open = (0..ages.len() as u64)
        .map(|i| (i, now - ages[i as usize].1))
        .collect();
    let churn = Churn::start(&sim.sim, PORTAL, 4, 1000, USERS, open, 150..400);
    let started_q = format!("{STARTED}{{portal_id=\"{PORTAL}\"}}");
    let terminated_q = format!("{TERMINATED}{{portal_id=\"{PORTAL}\"}}");
    // How many samples of the started counter Prometheus holds (a sync signal on its scrapes).
    let samples = || prom_value(&prom, &format!("count_over_time({started_q}[10m])"), None);
    let wait_samples = |n: f64| {
        poll_until(Duration::from_secs(60), || {
            samples().filter(|c| *c >= n).map(|_| ())
        })
        .unwrap_or_else(|| panic!("Prometheus never held {n} samples"))
    };

    // Three processes on the same address: stopped with SIGTERM, then with kill -9.
    let mut a = Exporter::spawn(&config, Some(&storage), &addr);
    a.wait_ready();
    wait_samples(4.0);
    a.stop();
    let mut b = Exporter::spawn(&config, Some(&storage), &addr);
    b.wait_ready();
    wait_samples(samples().unwrap_or(0.0) + 4.0);
    b.kill9();
    let mut c = Exporter::spawn(&config, Some(&storage), &addr);
    c.wait_ready();
    wait_samples(samples().unwrap_or(0.0) + 3.0);
    let ((added, ended), last) = churn.finish();
    sleep_past(last);
    let m = c.wait_poll_after(PORTAL, last + QUIET_MS);
    assert_eq!(m.portal(RESTORED, PORTAL), Some(1.0));
    let o = m.observed(PORTAL);
    let expected = truth_at(&sim.sim, PORTAL, &m, state_t0(&storage, PORTAL), false);
    assert_eq!(o, expected, "final values against the timeline");
    // Prometheus has scraped the final values.
    poll_until(Duration::from_secs(30), || {
        (prom_value(&prom, &started_q, None) == Some(o.started as f64)
            && prom_value(&prom, &terminated_q, None) == Some(o.terminated as f64))
        .then_some(())
    })
    .expect("Prometheus scraped the final values");

    for (name, q, last_value) in [
        ("started", &started_q, o.started),
        ("terminated", &terminated_q, o.terminated),
    ] {
        // The raw samples, then a window from exactly the first to the last (plus 1 ms, so that the
        // first sample is inside whether the range is closed or left-open on the left): nothing to
        // extrapolate.
        let raw = prom_samples(&prom, &format!("{q}[10m]"));
        let (first, last) = (raw[0], raw[raw.len() - 1]);
        assert_eq!(last.1, last_value as f64, "{name}: {raw:?}");
        let window = format!("{}ms", last.0 - first.0 + 1);
        let at = prom_time(last.0);
        let increase = prom_value(&prom, &format!("increase({q}[{window}])"), Some(&at))
            .unwrap_or_else(|| panic!("increase of {name}"));
        let resets = prom_value(&prom, &format!("resets({q}[{window}])"), Some(&at))
            .unwrap_or_else(|| panic!("resets of {name}"));
        eprintln!(
            "{name}: {} samples from {} to {}, increase {increase}, resets {resets}",
            raw.len(),
            first.1,
            last.1
        );
        assert_eq!(resets, 0.0, "{name}: Prometheus saw a reset: {raw:?}");
        assert_eq!(
            increase.round(),
            last.1 - first.1,
            "{name}: increase() over the window: {raw:?}"
        );
        assert!(last.1 > first.1, "{name} moved during the test: {raw:?}");
    }
    // Prometheus really saw three processes.
    let restarts = prom_value(
        &prom,
        "changes(process_start_time_seconds{job=\"restarts\"}[10m])",
        None,
    );
    assert_eq!(restarts, Some(2.0), "two restarts seen by Prometheus");
    eprintln!(
        "{added} sessions added, {ended} ended; took {:?}",
        began.elapsed()
    );
    c.stop();
}

// ---------------------------------------------------------------------------------------------
// 5. Bad state files
// ---------------------------------------------------------------------------------------------

#[test]
fn corrupt_truncated_empty_and_foreign_state_files_are_set_aside() {
    // One portal per kind of bad file, and one whose good state must still resume.
    const GARBAGE: &str = "cccccccc-0000-4000-8000-000000000051";
    const TRUNCATED: &str = "cccccccc-0000-4000-8000-000000000052";
    const EMPTY: &str = "cccccccc-0000-4000-8000-000000000053";
    const VERSION: &str = "cccccccc-0000-4000-8000-000000000054";
    const FOREIGN: &str = "cccccccc-0000-4000-8000-000000000055";
    const GOOD: &str = "cccccccc-0000-4000-8000-000000000056";
    const BAD: [&str; 5] = [GARBAGE, TRUNCATED, EMPTY, VERSION, FOREIGN];
    const ALL: [&str; 6] = [GARBAGE, TRUNCATED, EMPTY, VERSION, FOREIGN, GOOD];
    let began = Instant::now();
    let now = now_ms();
    let sim = start_sim(
        ALL.iter()
            .map(|id| {
                PortalSpec::scripted(*id, baseline(now, &[("ann", 100 * S), ("ben", 5000 * S)]))
            })
            .collect(),
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let storage = dir.path().join("state");
    // Six portals polled at once, every 2 s: room for a loaded machine.
    let config = write_config(
        dir.path(),
        &sim.endpoint,
        &ALL,
        "  interval: 2s\n  timeout: 1500ms\n  concurrency: 6\n",
        true,
        "",
    );

    // A first run leaves a valid state for every portal.
    let mut a = Exporter::start(&config, Some(&storage));
    a.wait_ready();
    a.wait_metrics("a state write of every portal", |m| {
        ALL.iter().all(|id| m.portal(LAST_WRITE, id).is_some())
    });
    a.stop();
    let valid: BTreeMap<&str, Vec<u8>> = ALL
        .iter()
        .map(|id| (*id, std::fs::read(state_path(&storage, id)).expect("state")))
        .collect();
    let old_t0: BTreeMap<&str, i64> = ALL.iter().map(|id| (*id, state_t0(&storage, id))).collect();

    let mut bad: BTreeMap<&str, Vec<u8>> = BTreeMap::new();
    bad.insert(GARBAGE, b"\x00\xffnot json at all {{{\x07".to_vec());
    bad.insert(
        TRUNCATED,
        valid[TRUNCATED][..valid[TRUNCATED].len() / 2].to_vec(),
    );
    bad.insert(EMPTY, Vec::new());
    let mut v: serde_json::Value = serde_json::from_slice(&valid[VERSION]).expect("json");
    v["version"] = 999.into();
    bad.insert(VERSION, serde_json::to_vec(&v).expect("json"));
    bad.insert(FOREIGN, valid[GOOD].clone());
    for (id, bytes) in &bad {
        std::fs::write(state_path(&storage, id), bytes).expect("write bad state");
    }

    let spawned = now_ms();
    let mut b = Exporter::start(&config, Some(&storage));
    b.wait_ready();
    // Every portal polls, is up, and writes a fresh state.
    let m = b.wait_metrics("every portal up with a fresh state write", |m| {
        ALL.iter().all(|id| {
            m.portal(UP, id) == Some(1.0)
                && m.portal(LAST_WRITE, id)
                    .is_some_and(|w| w * 1000.0 > spawned as f64)
        })
    });
    b.assert_running();
    for id in BAD {
        assert_eq!(
            m.portal(RESTORED, id),
            Some(0.0),
            "{id} starts fresh:\n{}",
            m.dump()
        );
    }
    assert_eq!(m.portal(RESTORED, GOOD), Some(1.0), "{}", m.dump());

    let corrupt = corrupt_files(&storage);
    let stderr = b.stderr();
    for id in BAD {
        let kept: Vec<&String> = corrupt
            .iter()
            .filter(|n| n.starts_with(&format!("{id}.state.")))
            .collect();
        assert_eq!(kept.len(), 1, "{id}: one file set aside in {corrupt:?}");
        assert_eq!(
            std::fs::read(storage.join(kept[0])).expect("read .corrupt"),
            bad[id],
            "{id}: the bad file is kept as it was"
        );
        assert!(
            stderr.contains(&format!("{id}.state")),
            "{id}: the log names the file; stderr:\n{stderr}"
        );
        // A fresh state: this portal's, a new T0.
        let state = state_json(&storage, id);
        assert_eq!(state["version"], 1, "{id}: {state}");
        assert_eq!(state["portal_id"], id, "{id}: {state}");
        assert!(
            state_t0(&storage, id) > old_t0[id],
            "{id} starts over with a new T0"
        );
    }
    assert_eq!(corrupt.len(), BAD.len(), "{corrupt:?}");
    assert_eq!(
        state_t0(&storage, GOOD),
        old_t0[GOOD],
        "the good state resumes"
    );
    b.stop();
    eprintln!("took {:?}", began.elapsed());
}

#[test]
fn state_from_incompatible_settings_is_set_aside() {
    const PORTAL: &str = "cccccccc-0000-4000-8000-000000000057";
    let began = Instant::now();
    let sim = start_sim(vec![PortalSpec::scripted(
        PORTAL,
        baseline(now_ms(), &[("ann", 100 * S)]),
    )]);
    let dir = tempfile::tempdir().expect("tempdir");
    let storage = dir.path().join("state");
    // Each run: the settings, whether the state of the run before resumes, and how many files
    // have been set aside after it.
    let runs = [
        (FAST.to_string(), "", None, 0),
        (FAST.to_string(), "", Some(true), 0),
        (
            format!("{FAST}  duration_buckets: [60, 600, 3600]\n"),
            "",
            Some(false),
            1,
        ),
        (
            format!("{FAST}  duration_buckets: [60, 600, 3600]\n"),
            "  username: hashed\n  hash_salt: pepper\n",
            Some(false),
            2,
        ),
        (
            format!("{FAST}  duration_buckets: [60, 600, 3600]\n"),
            "  username: hashed\n  hash_salt: salt\n",
            Some(false),
            3,
        ),
        (
            format!("{FAST}  duration_buckets: [60, 600, 3600]\n"),
            "  username: hashed\n  hash_salt: salt\n",
            Some(true),
            3,
        ),
    ];
    for (i, (global, per_user, resumes, set_aside)) in runs.iter().enumerate() {
        let config = write_config(
            dir.path(),
            &sim.endpoint,
            &[PORTAL],
            global,
            false,
            &format!("per_user:\n  enabled: true\n{per_user}"),
        );
        let spawned = now_ms();
        let mut e = Exporter::start(&config, Some(&storage));
        e.wait_ready();
        let m = e.wait_metrics("a state write", |m| {
            m.portal(LAST_WRITE, PORTAL)
                .is_some_and(|w| w * 1000.0 > spawned as f64)
        });
        if let Some(resumes) = resumes {
            assert_eq!(
                m.portal(RESTORED, PORTAL),
                Some(if *resumes { 1.0 } else { 0.0 }),
                "run {i}: {global}{per_user}"
            );
        }
        assert_eq!(
            corrupt_files(&storage).len(),
            *set_aside,
            "run {i}: {global}{per_user}; stderr:\n{}",
            e.stderr()
        );
        e.stop();
    }
    eprintln!("took {:?}", began.elapsed());
}

#[test]
fn state_older_than_max_age_starts_fresh_and_is_not_set_aside() {
    const PORTAL: &str = "cccccccc-0000-4000-8000-000000000058";
    let began = Instant::now();
    let sim = start_sim(vec![PortalSpec::scripted(
        PORTAL,
        baseline(now_ms(), &[("ann", 100 * S)]),
    )]);
    let dir = tempfile::tempdir().expect("tempdir");
    let storage = dir.path().join("state");
    let config = write_config(
        dir.path(),
        &sim.endpoint,
        &[PORTAL],
        FAST,
        false,
        "storage:\n  max_age: 5s\n",
    );
    let mut a = Exporter::start(&config, Some(&storage));
    a.wait_ready();
    a.stop();
    let t0 = state_t0(&storage, PORTAL);
    let written = state_written(&storage, PORTAL).expect("written_at_ms");

    // Young enough: resumes.
    let mut b = Exporter::start(&config, Some(&storage));
    b.wait_ready();
    assert_eq!(b.metrics().portal(RESTORED, PORTAL), Some(1.0));
    b.kill9();
    let written = state_written(&storage, PORTAL).unwrap_or(written);

    // Older than max_age: a fresh start, the old file is not "corrupt".
    sleep_past(written + 5500);
    let mut c = Exporter::start(&config, Some(&storage));
    c.wait_ready();
    let m = c.wait_metrics("a state write", |m| m.portal(LAST_WRITE, PORTAL).is_some());
    assert_eq!(m.portal(RESTORED, PORTAL), Some(0.0), "{}", m.dump());
    assert!(state_t0(&storage, PORTAL) > t0, "a new T0");
    assert_eq!(corrupt_files(&storage), Vec::<String>::new());
    c.stop();
    eprintln!("took {:?}", began.elapsed());
}

// ---------------------------------------------------------------------------------------------
// 6. Lock, unwritable directory, later write failures
// ---------------------------------------------------------------------------------------------

#[test]
fn second_process_on_the_same_directory_exits_1_naming_the_pid() {
    const PORTAL: &str = "cccccccc-0000-4000-8000-000000000061";
    let began = Instant::now();
    let sim = start_sim(vec![PortalSpec::scripted(
        PORTAL,
        baseline(now_ms(), &[("ann", 100 * S)]),
    )]);
    let dir = tempfile::tempdir().expect("tempdir");
    let storage = dir.path().join("state");
    let config = write_config(dir.path(), &sim.endpoint, &[PORTAL], FAST, false, "");

    let mut a = Exporter::start(&config, Some(&storage));
    a.wait_ready();
    let holder = a.pid();
    assert_eq!(
        std::fs::read_to_string(storage.join("lock"))
            .expect("lock file")
            .trim(),
        holder.to_string(),
        "the lock file holds the holder's pid"
    );

    let mut b = Exporter::start(&config, Some(&storage));
    let status = b.wait_exit();
    let stderr = b.stderr();
    assert_eq!(status.code(), Some(1), "stderr:\n{stderr}");
    assert!(
        stderr.contains(&format!("pid {holder}")),
        "the message names the holder's pid {holder}; stderr:\n{stderr}"
    );

    // The holder is unaffected and keeps writing its state.
    let written = a.metrics().portal(LAST_WRITE, PORTAL).expect("written");
    a.wait_metrics("another state write", |m| {
        m.portal(LAST_WRITE, PORTAL).is_some_and(|w| w > written)
    });

    // kill -9 releases the lock: the next process takes the directory and resumes.
    a.kill9();
    let mut c = Exporter::start(&config, Some(&storage));
    c.wait_ready();
    assert_eq!(c.metrics().portal(RESTORED, PORTAL), Some(1.0));
    assert_eq!(
        std::fs::read_to_string(storage.join("lock"))
            .expect("lock file")
            .trim(),
        c.pid().to_string()
    );
    c.stop();
    eprintln!("took {:?}", began.elapsed());
}

#[test]
fn unwritable_storage_directory_exits_1_at_startup() {
    const PORTAL: &str = "cccccccc-0000-4000-8000-000000000062";
    let began = Instant::now();
    let sim = start_sim(vec![PortalSpec::scripted(PORTAL, Vec::new())]);
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(dir.path(), &sim.endpoint, &[PORTAL], FAST, false, "");
    let file = dir.path().join("file");
    std::fs::write(&file, "a regular file").expect("write file");

    // Tests run as root, for whom permissions are no obstacle: paths are.
    for storage in [file.join("state"), file.clone()] {
        let mut e = Exporter::start(&config, Some(&storage));
        let status = e.wait_exit();
        let stderr = e.stderr();
        assert_eq!(
            status.code(),
            Some(1),
            "--storage.path {}; stderr:\n{stderr}",
            storage.display()
        );
        assert!(
            stderr.contains(&storage.display().to_string()),
            "the message names {}; stderr:\n{stderr}",
            storage.display()
        );
    }
    assert_eq!(
        std::fs::read_to_string(&file).expect("file"),
        "a regular file",
        "the file in the way is left alone"
    );
    eprintln!("took {:?}", began.elapsed());
}

#[test]
fn state_write_failure_later_is_counted_and_polling_goes_on() {
    const PORTAL: &str = "cccccccc-0000-4000-8000-000000000063";
    let began = Instant::now();
    let sim = start_sim(vec![PortalSpec::scripted(
        PORTAL,
        baseline(now_ms(), &[("ann", 100 * S)]),
    )]);
    let dir = tempfile::tempdir().expect("tempdir");
    let storage = dir.path().join("state");
    let config = write_config(dir.path(), &sim.endpoint, &[PORTAL], FAST, false, "");
    let s = &sim.sim;

    let mut e = Exporter::start(&config, Some(&storage));
    e.wait_ready();
    let m = e.wait_metrics("two state writes", |m| {
        m.portal(LAST_WRITE, PORTAL).is_some()
    });
    let first = m.portal(LAST_WRITE, PORTAL).expect("written");
    e.wait_metrics("a second state write", |m| {
        m.portal(LAST_WRITE, PORTAL).is_some_and(|w| w > first)
    });
    assert_eq!(e.metrics().get(WRITE_ERRORS, &[]), Some(0.0));

    // The state file becomes a non-empty directory: renaming a file over it fails.
    let path = state_path(&storage, PORTAL);
    poll_until(LIMIT, || {
        let _ = std::fs::remove_file(&path);
        std::fs::create_dir(&path).ok()
    })
    .expect("replace the state file with a directory");
    std::fs::write(path.join("occupied"), "x").expect("fill the directory");
    let broken = now_ms();

    let m = e.wait_metrics("two write errors", |m| {
        m.get(WRITE_ERRORS, &[]).is_some_and(|n| n >= 2.0)
    });
    assert!(
        m.portal(LAST_WRITE, PORTAL).expect("kept") * 1000.0 <= broken as f64,
        "no write succeeded since the breakage:\n{}",
        m.dump()
    );
    // Polling and serving go on, and the counters still count.
    let started = m.portal(STARTED, PORTAL).expect("started");
    let last = add(s, PORTAL, 100, "ben", soon());
    sleep_past(last);
    let m = e.wait_poll_after(PORTAL, last);
    assert_eq!(m.portal(UP, PORTAL), Some(1.0));
    assert_eq!(
        m.portal(STARTED, PORTAL),
        Some(started + 1.0),
        "{}",
        m.dump()
    );
    assert!(m.get(WRITE_ERRORS, &[]).expect("errors") >= 3.0);

    // Repaired, writes resume and the errors stop.
    std::fs::remove_dir_all(&path).expect("remove the directory");
    let repaired = now_ms();
    let m = e.wait_metrics("a state write after the repair", |m| {
        m.portal(LAST_WRITE, PORTAL)
            .is_some_and(|w| w * 1000.0 > repaired as f64)
    });
    let errors = m.get(WRITE_ERRORS, &[]).expect("errors");
    let w = m.portal(LAST_WRITE, PORTAL).expect("written");
    let m = e.wait_metrics("another state write", |m| {
        m.portal(LAST_WRITE, PORTAL).is_some_and(|x| x > w)
    });
    assert_eq!(m.get(WRITE_ERRORS, &[]), Some(errors), "no new error");
    let state = state_json(&storage, PORTAL);
    assert_eq!(state["portal_id"], PORTAL, "{state}");
    e.stop();
    eprintln!("took {:?}", began.elapsed());
}

/// SPEC 9: "Published counters never go below what an earlier process published." While state
/// writes fail, the exporter goes on publishing counters that are not on disk; a restart resumes
/// from the last state written. It used to publish those older, lower counters at once, until
/// its first poll caught up: Prometheus read the dip as a counter reset and `increase()` counted
/// the sessions again. The resumed counters now appear with the first poll.
#[test]
fn counters_do_not_go_down_when_a_restart_follows_failed_state_writes() {
    const PORTAL: &str = "cccccccc-0000-4000-8000-000000000064";
    let began = Instant::now();
    let sim = start_sim(vec![PortalSpec::scripted(
        PORTAL,
        baseline(now_ms(), &[("ann", 100 * S)]),
    )]);
    let dir = tempfile::tempdir().expect("tempdir");
    let storage = dir.path().join("state");
    let config = write_config(dir.path(), &sim.endpoint, &[PORTAL], FAST, false, "");
    let s = &sim.sim;

    let mut a = Exporter::start(&config, Some(&storage));
    a.wait_ready();
    a.wait_metrics("a state write", |m| m.portal(LAST_WRITE, PORTAL).is_some());
    // Writes fail from now on (as on a full disk), the last state written stays readable: the
    // temp file's name is taken by a non-empty directory.
    let tmp = storage.join(format!(".{PORTAL}.state.tmp"));
    std::fs::create_dir(&tmp).expect("mkdir");
    std::fs::write(tmp.join("occupied"), "x").expect("fill");
    let mut last = 0;
    for n in 100..105 {
        last = add(s, PORTAL, n, "ben", soon());
    }
    sleep_past(last);
    let m = a.wait_metrics("the five sessions counted, writes failing", |m| {
        m.portal(STARTED, PORTAL) == Some(5.0) && m.get(WRITE_ERRORS, &[]).is_some_and(|e| e > 0.0)
    });
    let mut history = History::default();
    history.record(0, &m, PORTAL);
    a.kill9();

    // The next process, scraped as often as possible from its start to its first poll.
    let spawned = now_ms();
    let b = Exporter::start(&config, Some(&storage));
    let polled = poll_until(LIMIT, || {
        let m = b.try_metrics()?;
        history.record(1, &m, PORTAL);
        m.poll_ms(PORTAL).filter(|p| *p > spawned).map(|_| m)
    })
    .expect("a poll of the second process");
    assert_eq!(polled.portal(STARTED, PORTAL), Some(5.0));
    assert_eq!(
        history.decreases(),
        Vec::<String>::new(),
        "the second process published less than the first"
    );
    eprintln!("took {:?}", began.elapsed());
}
