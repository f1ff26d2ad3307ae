//! The harness of the restart tests (`tests/suite/restarts.rs`, and `tests/external/restarts.rs`
//! with a real Prometheus): a simulator on the system clock, the exporter binary started,
//! stopped and killed, its exposition parsed, and the ground truth computed from the simulator's
//! timeline (see the docs of `tests/suite/restarts.rs`). Declared by the two binaries that hold
//! restart tests; each uses part of it.
#![allow(dead_code)]

use crate::common;

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::common::{Child, free_port, http_get, poll_until, wait_exit};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use workspacesweb_exporter::clock::now_ms;
use workspacesweb_exporter::session::UnixMillis;
use workspacesweb_sim::{PortalSpec, RunningSim, SimConfig, SimSession, Simulator};

pub(crate) const EXPORTER: &str = env!("CARGO_BIN_EXE_workspacesweb-exporter");

/// The default duration buckets (SPEC section 5).
pub(crate) use workspacesweb_exporter::ledger::DEFAULT_DURATION_BUCKETS as BUCKETS;

/// How long after the last session event a poll must start for the comparison to be exact.
pub(crate) const QUIET_MS: i64 = 1500;
/// Hang guard for readiness, for a poll to come, for a process to exit (not timing assertions).
pub(crate) const LIMIT: Duration = Duration::from_secs(45);

pub(crate) const S: i64 = 1000;

pub(crate) const STARTED: &str = "workspacesweb_sessions_started_total";
pub(crate) const TERMINATED: &str = "workspacesweb_sessions_terminated_total";
pub(crate) const DURATION: &str = "workspacesweb_session_duration_seconds";
pub(crate) const SECONDS: &str = "workspacesweb_session_seconds_total";
pub(crate) const USER_STARTED: &str = "workspacesweb_user_sessions_started_total";
pub(crate) const USER_SECONDS: &str = "workspacesweb_user_session_seconds_total";
pub(crate) const LAST_POLL: &str = "workspacesweb_last_successful_poll_timestamp_seconds";
pub(crate) const UP: &str = "workspacesweb_up";
pub(crate) const RESTORED: &str = "workspacesweb_state_restored";
pub(crate) const LAST_WRITE: &str = "workspacesweb_state_last_write_timestamp_seconds";
pub(crate) const WRITE_ERRORS: &str = "workspacesweb_state_write_errors_total";

/// Every accounting counter family (the histogram as its `_bucket`, `_sum` and `_count`).
pub(crate) const ACCOUNTING: [&str; 8] = [
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
pub(crate) struct Sim {
    pub(crate) sim: Simulator,
    pub(crate) endpoint: String,
    pub(crate) _running: RunningSim,
    pub(crate) _rt: tokio::runtime::Runtime,
}

pub(crate) fn start_sim(portals: Vec<PortalSpec>) -> Sim {
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
pub(crate) fn sid(n: u64) -> String {
    SimSession::id_for(n)
}

/// Baseline sessions, running since long before any exporter starts: `(user, age)` each, ids
/// `sid(0)`, `sid(1)`, ... Their ages spread over the buckets, so that when they end the
/// histogram has more than its first bucket to check.
pub(crate) fn baseline(now: UnixMillis, ages: &[(&str, i64)]) -> Vec<SimSession> {
    ages.iter()
        .enumerate()
        .map(|(i, (user, age))| SimSession::new(sid(i as u64), *user, now - age))
        .collect()
}

/// Session events are scheduled a little in the future, never in the past (see the module docs).
pub(crate) fn soon() -> UnixMillis {
    now_ms() + 20
}

/// Adds a session of `user` that starts at `start`; returns `start`.
pub(crate) fn add(
    sim: &Simulator,
    portal: &str,
    n: u64,
    user: &str,
    start: UnixMillis,
) -> UnixMillis {
    sim.add_session(portal, SimSession::new(sid(n), user, start))
        .expect("add session");
    start
}

/// Ends session `n` at `end`; returns `end`.
pub(crate) fn end(sim: &Simulator, portal: &str, n: u64, end: UnixMillis) -> UnixMillis {
    sim.end_session(portal, &sid(n), end).expect("end session");
    end
}

/// Adds session `n` of `user` that starts at `start` and ends `len_ms` later; returns its end.
pub(crate) fn short(
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
pub(crate) fn sleep_past(at: UnixMillis) {
    let left = at + 5 - now_ms();
    if left > 0 {
        std::thread::sleep(Duration::from_millis(left as u64));
    }
}

// ---------------------------------------------------------------------------------------------
// The exporter binary
// ---------------------------------------------------------------------------------------------

/// The `global` section of most tests: a poll a second.
pub(crate) const FAST: &str = "  interval: 1s\n  timeout: 800ms\n";

/// A config file in `dir` for `portals` at the simulator: `global` settings, per-user series
/// when `per_user`, and `extra` top-level YAML.
pub(crate) fn write_config(
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
pub(crate) struct Exporter {
    pub(crate) child: Child,
    pub(crate) addr: String,
    pub(crate) stderr: PathBuf,
    pub(crate) _logs: tempfile::TempDir,
}

impl Exporter {
    /// Starts the binary with `config`, on `addr`, with `--storage.path storage` if given, with
    /// dummy static credentials and no `AWS_*` variable of the caller's environment.
    pub(crate) fn spawn(config: &Path, storage: Option<&Path>, addr: &str) -> Exporter {
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
    pub(crate) fn start(config: &Path, storage: Option<&Path>) -> Exporter {
        Exporter::spawn(config, storage, &format!("127.0.0.1:{}", free_port()))
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.0.id()
    }

    pub(crate) fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Panics with stderr if the process has exited.
    pub(crate) fn assert_running(&mut self) {
        if let Ok(Some(status)) = self.child.0.try_wait() {
            panic!("exporter exited ({status}); stderr:\n{}", self.stderr());
        }
    }

    /// Waits for `/-/ready` to answer 200; fails at once if the exporter exits instead.
    pub(crate) fn wait_ready(&mut self) {
        common::wait_ready_or_exit(&mut self.child, &self.addr, LIMIT, &self.stderr);
    }

    pub(crate) fn try_metrics(&self) -> Option<Expo> {
        let (status, _, body) = http_get(&self.addr, "/metrics").ok()?;
        (status == 200).then(|| Expo::parse(&String::from_utf8_lossy(&body)))
    }

    pub(crate) fn metrics(&mut self) -> Expo {
        self.assert_running();
        self.try_metrics()
            .unwrap_or_else(|| panic!("GET /metrics failed; stderr:\n{}", self.stderr()))
    }

    /// Waits until the metrics satisfy `pred` (fails with stderr and the last exposition).
    pub(crate) fn wait_metrics(&mut self, what: &str, pred: impl Fn(&Expo) -> bool) -> Expo {
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
    pub(crate) fn wait_poll_after(&mut self, portal: &str, after_ms: UnixMillis) -> Expo {
        self.wait_metrics(&format!("a poll of {portal} after {after_ms}"), |m| {
            m.poll_ms(portal).is_some_and(|p| p > after_ms)
        })
    }

    /// SIGTERM, and the exit status.
    pub(crate) fn terminate(&mut self) -> ExitStatus {
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
    pub(crate) fn stop(&mut self) {
        let status = self.terminate();
        assert_eq!(status.code(), Some(0), "stderr:\n{}", self.stderr());
    }

    /// SIGKILL (`kill -9`), and reaps the process.
    pub(crate) fn kill9(&mut self) {
        let _ = self.child.0.kill();
        let _ = self.child.0.wait();
    }

    /// Waits for the process to exit on its own.
    pub(crate) fn wait_exit(&mut self) -> ExitStatus {
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
pub(crate) struct Series {
    pub(crate) name: String,
    pub(crate) labels: BTreeMap<String, String>,
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
pub(crate) struct Expo(pub(crate) BTreeMap<Series, f64>);

/// Parses `a="x",b="y\"z"` (the inside of the braces).
pub(crate) fn parse_labels(s: &str) -> BTreeMap<String, String> {
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
    pub(crate) fn parse(text: &str) -> Expo {
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

    pub(crate) fn dump(&self) -> String {
        self.0
            .iter()
            .filter(|(s, _)| s.name.starts_with("workspacesweb_"))
            .map(|(s, v)| format!("{s} {v}\n"))
            .collect()
    }

    /// The series named `name` whose labels include `labels`.
    pub(crate) fn find(&self, name: &str, labels: &[(&str, &str)]) -> Vec<(&Series, f64)> {
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
    pub(crate) fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let found = self.find(name, labels);
        assert!(found.len() <= 1, "several {name} {labels:?}: {found:?}");
        found.first().map(|(_, v)| *v)
    }

    /// The value of `name` for `portal`.
    pub(crate) fn portal(&self, name: &str, portal: &str) -> Option<f64> {
        self.get(name, &[("portal_id", portal)])
    }

    /// Start of the last successful poll of `portal`, in exact milliseconds.
    pub(crate) fn poll_ms(&self, portal: &str) -> Option<UnixMillis> {
        self.portal(LAST_POLL, portal)
            .map(|s| (s * 1000.0).round() as UnixMillis)
    }

    /// Every accounting counter series of `portal` (see [`ACCOUNTING`]), by its text form.
    pub(crate) fn accounting(&self, portal: &str) -> BTreeMap<String, f64> {
        ACCOUNTING
            .iter()
            .flat_map(|name| self.find(name, &[("portal_id", portal)]))
            .map(|(s, v)| (s.to_string(), v))
            .collect()
    }

    /// What the exporter published for `portal`, in the shape of [`Truth`].
    pub(crate) fn observed(&self, portal: &str) -> Truth {
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
pub(crate) struct Truth {
    pub(crate) started: u64,
    pub(crate) terminated: u64,
    /// Cumulative, one per [`BUCKETS`] bound.
    pub(crate) buckets: Vec<u64>,
    pub(crate) inf: u64,
    pub(crate) count: u64,
    pub(crate) sum_ms: i64,
    pub(crate) session_ms: i64,
    pub(crate) user_started: BTreeMap<String, u64>,
    pub(crate) user_ms: BTreeMap<String, i64>,
}

/// The ground truth over `sessions` (the simulator's listing at `p`) for a ledger started at `t0`
/// and polled last at `p` (see the module docs). Per-user maps only when `per_user`.
pub(crate) fn truth(
    sessions: &[SimSession],
    t0: UnixMillis,
    p: UnixMillis,
    per_user: bool,
) -> Truth {
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
pub(crate) fn truth_at(
    sim: &Simulator,
    portal: &str,
    m: &Expo,
    t0: UnixMillis,
    per_user: bool,
) -> Truth {
    let p = m.poll_ms(portal).expect("a successful poll");
    truth(&sim.sessions_at(portal, p), t0, p, per_user)
}

// ---------------------------------------------------------------------------------------------
// State files
// ---------------------------------------------------------------------------------------------

pub(crate) fn state_path(dir: &Path, portal: &str) -> PathBuf {
    dir.join(format!("{portal}.state"))
}

/// The state file of `portal`, parsed.
pub(crate) fn state_json(dir: &Path, portal: &str) -> serde_json::Value {
    let path = state_path(dir, portal);
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    workspacesweb_exporter::poll::state::to_json(&bytes)
        .unwrap_or_else(|| panic!("{} is not a state file", path.display()))
}

/// T0 of `portal` as its state file holds it.
pub(crate) fn state_t0(dir: &Path, portal: &str) -> UnixMillis {
    let v = state_json(dir, portal);
    v["t0_ms"]
        .as_i64()
        .unwrap_or_else(|| panic!("no integer t0_ms in the state of {portal}: {v}"))
}

/// `written_at_ms` of the state file of `portal`, if it exists and parses.
pub(crate) fn state_written(dir: &Path, portal: &str) -> Option<i64> {
    let bytes = std::fs::read(state_path(dir, portal)).ok()?;
    workspacesweb_exporter::poll::state::to_json(&bytes)?["written_at_ms"].as_i64()
}

/// Names of the files in `dir` that end in `.corrupt`.
pub(crate) fn corrupt_files(dir: &Path) -> Vec<String> {
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
pub(crate) struct History {
    /// (process number, series, value)
    pub(crate) samples: Vec<(usize, String, f64)>,
}

impl History {
    pub(crate) fn record(&mut self, process: usize, m: &Expo, portal: &str) -> usize {
        let acc = m.accounting(portal);
        let n = acc.len();
        self.samples
            .extend(acc.into_iter().map(|(k, v)| (process, k, v)));
        n
    }

    /// Every place where a series went down (empty when the history is monotonic).
    pub(crate) fn decreases(&self) -> Vec<String> {
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

    pub(crate) fn series(&self) -> BTreeSet<&str> {
        self.samples.iter().map(|(_, s, _)| s.as_str()).collect()
    }
}

// ---------------------------------------------------------------------------------------------
// Churn: sessions starting and ending at random, in the background
// ---------------------------------------------------------------------------------------------

/// A thread that keeps adding short sessions and ending open ones at random until stopped.
pub(crate) struct Churn {
    pub(crate) stop: Arc<AtomicBool>,
    /// The latest session event scheduled so far (start or end), epoch ms.
    pub(crate) last_event: Arc<AtomicI64>,
    pub(crate) handle: Option<JoinHandle<(u64, u64)>>,
}

impl Churn {
    /// Churns `portal` with sessions numbered from `first_id`, users from `users`; `open` are the
    /// session numbers (with their start) it may also end. Pauses of `pause_ms` between events.
    pub(crate) fn start(
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
    pub(crate) fn finish(mut self) -> ((u64, u64), UnixMillis) {
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
pub(crate) fn seed(test: &str) -> u64 {
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
