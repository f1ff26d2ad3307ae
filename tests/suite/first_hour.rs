//! A real account's first hour (SPEC section 11, issue #21): the real exporter binary against the
//! simulator in each situation a new user meets, with the real AWS SDK in between. Each test
//! asserts what a person would see (the metric and its labels, the landing page's text, one log
//! line at info or above naming the cause, readiness), then removes the cause (the fault
//! cleared, or the config fixed and reloaded with SIGHUP) and shows the portal recover in the
//! same process, its counters intact.
//!
//! The exporter runs with an AWS configuration of its own: no profile files, credentials from
//! the environment (or none), the simulator as `AWS_ENDPOINT_URL`, and a fake instance metadata
//! service on loopback (`AWS_EC2_METADATA_SERVICE_ENDPOINT`) that records what the SDK asks it
//! and serves credentials only when told to. Intervals are 1 s, so each test takes seconds.

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use workspacesweb_sim::{Faults, PortalSpec, SimConfig, SimSession, now_ms};

/// The simulator of `config`, on its own runtime.
fn sim(config: SimConfig) -> BackgroundSim {
    start_background_sim(config)
}

use crate::common::{BackgroundSim, Child, free_port, http_get, poll_until, start_background_sim};

/// The exporter binary: this build's, or another (`FIRST_HOUR_EXPORTER=path`, e.g. a build of
/// an earlier commit, to see which of these situations it gets wrong).
fn exporter() -> String {
    std::env::var("FIRST_HOUR_EXPORTER")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_workspacesweb-exporter").to_string())
}
/// Hang guard of every wait (not a timing assertion: each state comes within seconds).
const LIMIT: Duration = Duration::from_secs(60);
/// The access key the exporter signs with, when it has one.
const KEY: &str = "AKIDFIRSTHOUR";
/// An account that is no documentation placeholder.
const ACCOUNT: &str = "444455556666";

const P1: &str = "f1000000-0000-4000-8000-000000000001";
const P2: &str = "f1000000-0000-4000-8000-000000000002";

/// A portal of [`ACCOUNT`] in `region` with `sessions`.
fn portal(id: &str, region: &str, sessions: Vec<SimSession>) -> PortalSpec {
    PortalSpec {
        region: region.to_string(),
        account: ACCOUNT.to_string(),
        ..PortalSpec::scripted(id, sessions)
    }
}

/// `n` active sessions that started minutes ago (the baseline of a first poll).
fn running(n: u64) -> Vec<SimSession> {
    let now = now_ms();
    (0..n)
        .map(|i| {
            SimSession::new(
                SimSession::id_for(i),
                "user",
                now - 600_000 - 1000 * i as i64,
            )
        })
        .collect()
}

/// A fake EC2 instance metadata service: answers the token request, serves role credentials
/// once [`serve_credentials`](Self::serve_credentials) is on (404 before), and records every path.
struct FakeImds {
    url: String,
    paths: Arc<Mutex<Vec<String>>>,
    credentials: Arc<AtomicBool>,
}

impl FakeImds {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let paths = Arc::new(Mutex::new(Vec::new()));
        let credentials = Arc::new(AtomicBool::new(false));
        let (p, c) = (paths.clone(), credentials.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let _ = answer_imds(stream, &p, c.load(Ordering::SeqCst));
            }
        });
        FakeImds {
            url,
            paths,
            credentials,
        }
    }

    fn serve_credentials(&self) {
        self.credentials.store(true, Ordering::SeqCst);
    }

    fn paths(&self) -> Vec<String> {
        self.paths.lock().expect("lock").clone()
    }
}

/// Answers one request (then closes the connection).
fn answer_imds(
    mut stream: std::net::TcpStream,
    paths: &Mutex<Vec<String>>,
    credentials: bool,
) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header)? == 0 || header == "\r\n" {
            break;
        }
    }
    paths.lock().expect("lock").push(path.clone());
    let role = "/latest/meta-data/iam/security-credentials/";
    let (status, body) = match path.as_str() {
        "/latest/api/token" => ("200 OK", "imds-token".to_string()),
        p if p == role && credentials => ("200 OK", "firsthour-role".to_string()),
        p if p == format!("{role}firsthour-role") && credentials => (
            "200 OK",
            format!(
                r#"{{"Code":"Success","LastUpdated":"2026-01-01T00:00:00Z","Type":"AWS-HMAC","AccessKeyId":"{KEY}","SecretAccessKey":"secret","Token":"session-token","Expiration":"2099-01-01T00:00:00Z"}}"#
            ),
        ),
        _ => ("404 Not Found", String::new()),
    };
    write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nx-aws-ec2-metadata-token-ttl-seconds: 21600\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

/// The exporter, its config, the simulator and the fake metadata service of one test.
struct Hour {
    sim: BackgroundSim,
    imds: FakeImds,
    dir: tempfile::TempDir,
    config: PathBuf,
    stderr: PathBuf,
    child: Child,
    addr: String,
}

impl Hour {
    /// Starts the exporter on `config` (YAML) against `sim` (faults set before the first
    /// poll), with the credentials `key` in its environment (none: `None`).
    fn start(sim: BackgroundSim, config: &str, key: Option<&str>) -> Hour {
        let imds = FakeImds::start();
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("exporter.yaml");
        std::fs::write(&path, config).expect("write config");
        let stderr = dir.path().join("stderr");
        let addr = format!("127.0.0.1:{}", free_port());
        let mut cmd = Command::new(exporter());
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("AWS_") {
                cmd.env_remove(name);
            }
        }
        let nowhere = dir.path().join("no-such-file");
        cmd.args(["--config.file", path.to_str().expect("utf-8 path")])
            .args(["--web.listen-address", &addr])
            .env("AWS_ENDPOINT_URL", sim.running.endpoint_url())
            .env("AWS_EC2_METADATA_SERVICE_ENDPOINT", &imds.url)
            .env("AWS_CONFIG_FILE", &nowhere)
            .env("AWS_SHARED_CREDENTIALS_FILE", &nowhere)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(File::create(&stderr).expect("stderr file"));
        if let Some(key) = key {
            cmd.env("AWS_ACCESS_KEY_ID", key)
                .env("AWS_SECRET_ACCESS_KEY", "secret");
        }
        let child = Child(cmd.spawn().expect("exporter starts"));
        Hour {
            sim,
            imds,
            dir,
            config: path,
            stderr,
            child,
            addr,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    fn get(&self, path: &str) -> (u16, String) {
        match http_get(&self.addr, path) {
            Ok((status, _, body)) => (status, String::from_utf8_lossy(&body).into_owned()),
            Err(_) => (0, String::new()),
        }
    }

    /// Waits until `/metrics` satisfies `pred`, and returns it; fails with the log if never.
    fn metrics_until(&self, what: &str, pred: impl Fn(&Metrics) -> bool) -> Metrics {
        let found = poll_until(LIMIT, || {
            let (status, body) = self.get("/metrics");
            let m = Metrics(body);
            (status == 200 && pred(&m)).then_some(m)
        });
        found.unwrap_or_else(|| {
            panic!(
                "never: {what}\n/metrics:\n{}\nlog:\n{}",
                self.get("/metrics").1,
                self.log()
            )
        })
    }

    /// `/-/ready` answers 200 (the first polls and listings are done).
    fn assert_ready(&self) {
        let ready = poll_until(LIMIT, || (self.get("/-/ready").0 == 200).then_some(()));
        assert!(ready.is_some(), "never ready; log:\n{}", self.log());
    }

    /// The landing page's text.
    fn landing(&self) -> String {
        let (status, body) = self.get("/");
        assert_eq!(status, 200, "GET /");
        body
    }

    /// The log line (at info or above) that holds every one of `parts`.
    fn log_line(&self, parts: &[&str]) -> String {
        let found = poll_until(LIMIT, || {
            self.log()
                .lines()
                .find(|l| {
                    ["level=INFO", "level=WARN", "level=ERROR"]
                        .iter()
                        .any(|lv| l.contains(lv))
                        && parts.iter().all(|p| l.contains(p))
                })
                .map(str::to_string)
        });
        found.unwrap_or_else(|| panic!("no log line with {parts:?}; log:\n{}", self.log()))
    }

    /// Rewrites the config and reloads it with SIGHUP (no restart).
    fn reload(&self, config: &str) {
        std::fs::write(&self.config, config).expect("write config");
        let pid = self.child.0.id().to_string();
        let sent = Command::new("kill")
            .args(["-HUP", &pid])
            .status()
            .expect("kill(1) runs");
        assert!(sent.success());
    }

    /// Waits for `P1` to be up again, and checks that it recovered with its counters: the
    /// `error` of `operation` counted while it failed is still there (`before` of them at least:
    /// a poll may have failed between that count and the fix), and it shows its `active`
    /// sessions; in the same process.
    fn recovered(&mut self, (operation, error, before): (&str, &str, f64), active: f64) -> Metrics {
        let m = self.metrics_until("up again", |m| m.up(P1) == Some(1.0));
        assert!(m.errors(P1, operation, error) >= before, "{}", m.0);
        assert_eq!(m.portal("workspacesweb_active_sessions", P1), Some(active));
        self.assert_same_process();
        m
    }

    /// The same process still runs: what recovered did so without a restart.
    fn assert_same_process(&mut self) {
        assert!(
            self.child.0.try_wait().expect("wait").is_none(),
            "the exporter exited; log:\n{}",
            self.log()
        );
        let _ = &self.dir;
    }
}

/// A text exposition.
struct Metrics(String);

impl Metrics {
    /// The value of the one sample of `name` whose labels include each of `labels`.
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.0
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.rsplit_once(' '))
            .find(|(series, _)| {
                let (n, rest) = series.split_once('{').unwrap_or((series, ""));
                n == name
                    && labels.iter().all(|(k, v)| {
                        rest.split(',')
                            .any(|kv| kv.trim_end_matches('}') == format!("{k}=\"{v}\""))
                    })
            })
            .and_then(|(_, v)| v.parse().ok())
    }

    fn portal(&self, name: &str, portal_id: &str) -> Option<f64> {
        self.value(name, &[("portal_id", portal_id)])
    }

    fn errors(&self, portal_id: &str, operation: &str, error: &str) -> f64 {
        self.value(
            "workspacesweb_api_request_errors_total",
            &[
                ("portal_id", portal_id),
                ("operation", operation),
                ("error", error),
            ],
        )
        .unwrap_or(0.0)
    }

    fn requests(&self, portal_id: &str, operation: &str) -> f64 {
        self.value(
            "workspacesweb_api_requests_total",
            &[("portal_id", portal_id), ("operation", operation)],
        )
        .unwrap_or(0.0)
    }

    fn up(&self, portal_id: &str) -> Option<f64> {
        self.portal("workspacesweb_up", portal_id)
    }

    fn has(&self, name: &str) -> bool {
        self.0.lines().any(|l| l.starts_with(name))
    }
}

/// A config polling `portals` (ids) in us-east-1 every second.
fn config_of(portals: &[&str], extra: &str) -> String {
    let mut c = String::from("global:\n  region: us-east-1\n  interval: 1s\n  timeout: 800ms\n");
    c.push_str(extra);
    c.push_str("portals:\n");
    for p in portals {
        c.push_str(&format!("  - id: {p}\n"));
    }
    c
}

/// No credentials anywhere: every poll fails with `error="credentials"`, counted as a request
/// and an error; the landing page and the log say why; no region is looked up in IMDS.
/// Credentials appearing (the instance gets a role) fix it without a restart. Before: no error
/// counted at all, `ListSessions other` on the page, three IMDS region warnings.
#[test]
fn no_credentials_at_all() {
    let mut h = Hour::start(
        sim(SimConfig::new(1).with_portal(portal(P1, "us-east-1", running(2)))),
        &config_of(&[P1], ""),
        None,
    );
    let m = h.metrics_until("ListSessions counted with error=credentials", |m| {
        m.errors(P1, "ListSessions", "credentials") >= 1.0
    });
    assert_eq!(m.up(P1), Some(0.0));
    assert!(
        m.requests(P1, "ListSessions") >= m.errors(P1, "ListSessions", "credentials"),
        "a request that never left counts as a request too:\n{}",
        m.0
    );
    h.assert_ready();
    let page = h.landing();
    assert!(
        page.contains("ListSessions credentials: no credentials in the chain"),
        "{page}"
    );
    let line = h.log_line(&["msg=\"poll failed\"", "error=credentials", P1]);
    assert!(line.contains("no credentials in the chain"), "{line}");
    let log = h.log();
    assert!(!log.contains("failed to load region"), "{log}");
    let asked = h.imds.paths();
    assert!(
        asked.iter().all(|p| !p.contains("placement/region")),
        "the SDK looked for a region although one is configured: {asked:?}"
    );
    assert!(
        asked.iter().any(|p| p.contains("security-credentials")),
        "the credential chain asks IMDS for credentials: {asked:?}"
    );
    let failed = m.errors(P1, "ListSessions", "credentials");

    h.imds.serve_credentials();
    let m = h.metrics_until("up once credentials appear", |m| m.up(P1) == Some(1.0));
    assert!(
        m.errors(P1, "ListSessions", "credentials") >= failed,
        "{}",
        m.0
    );
    assert_eq!(m.portal("workspacesweb_active_sessions", P1), Some(2.0));
    assert!(!h.landing().contains("no credentials in the chain"));
    h.assert_same_process();
}

/// Credentials the API refuses: the service's code and message, everywhere a person looks. The
/// key registered with the account fixes it without a restart; its counters go on.
#[test]
fn credentials_the_api_refuses() {
    let s = sim(SimConfig::new(2).with_portal(portal(P1, "us-east-1", running(1))));
    s.sim.require_known_keys(true);
    let mut h = Hour::start(s, &config_of(&[P1], ""), Some(KEY));
    let m = h.metrics_until("UnrecognizedClientException counted", |m| {
        m.errors(P1, "ListSessions", "UnrecognizedClientException") >= 1.0
    });
    assert_eq!(m.up(P1), Some(0.0));
    h.assert_ready();
    let page = h.landing();
    assert!(
        page.contains("ListSessions UnrecognizedClientException: The security token included in the request is invalid"),
        "{page}"
    );
    h.log_line(&[
        "msg=\"poll failed\"",
        "error=UnrecognizedClientException",
        P1,
    ]);
    // Region configured, credentials in the environment: IMDS is never asked anything.
    assert_eq!(h.imds.paths(), Vec::<String>::new());
    let refused = m.errors(P1, "ListSessions", "UnrecognizedClientException");

    h.sim
        .sim
        .add_access_key(KEY, &format!("arn:aws:iam::{ACCOUNT}:user/exporter"))
        .expect("key");
    h.recovered(
        ("ListSessions", "UnrecognizedClientException", refused),
        1.0,
    );
}

/// `GetSession` denied: a session that leaves the listing is settled (terminated, incomplete, no
/// duration), the poll succeeds, the denial is counted and logged. Before, every later poll of
/// the portal failed. Allowed again, the next vanished session is resolved with its duration.
#[test]
fn get_session_denied() {
    let now = now_ms();
    let minute = 60_000;
    let sessions = vec![
        // Two running sessions that started long ago, and one ended session whose start is
        // between theirs and the watermark: with pages of one, the Terminated scan stops on it,
        // so the two are found only by GetSession when they end.
        SimSession::new(SimSession::id_for(1), "ann", now - 150 * minute),
        SimSession::new(SimSession::id_for(2), "bob", now - 160 * minute),
        SimSession::new(SimSession::id_for(3), "cyd", now - 110 * minute).ended(now - 100 * minute),
    ];
    let mut h = Hour::start(
        sim(SimConfig::new(3).with_portal(portal(P1, "us-east-1", sessions))),
        &config_of(&[P1], "  page_size: 1\n"),
        Some(KEY),
    );
    h.metrics_until("first poll", |m| {
        m.up(P1) == Some(1.0) && m.portal("workspacesweb_active_sessions", P1) == Some(2.0)
    });
    h.assert_ready();
    let sim = &h.sim.sim;
    sim.set_operation_error(P1, "GetSession", Some("AccessDeniedException"));
    sim.end_session(P1, &SimSession::id_for(1), now_ms())
        .expect("session");
    let m = h.metrics_until("the denied session settled", |m| {
        m.portal("workspacesweb_sessions_terminated_total", P1) == Some(1.0)
    });
    assert_eq!(m.up(P1), Some(1.0), "the poll succeeds");
    assert_eq!(
        m.portal("workspacesweb_session_records_incomplete_total", P1),
        Some(1.0)
    );
    assert_eq!(
        m.portal("workspacesweb_session_duration_seconds_count", P1),
        Some(0.0),
        "no duration"
    );
    assert_eq!(m.errors(P1, "GetSession", "AccessDeniedException"), 1.0);
    let line = h.log_line(&["error=AccessDeniedException", "cannot be looked up", P1]);
    assert!(line.contains("workspaces-web:GetSession"), "{line}");
    assert!(h.landing().contains("class=\"up\""));

    sim.set_operation_error(P1, "GetSession", None);
    sim.end_session(P1, &SimSession::id_for(2), now_ms())
        .expect("session");
    let m = h.metrics_until("the next one resolved with its record", |m| {
        m.portal("workspacesweb_sessions_terminated_total", P1) == Some(2.0)
    });
    assert_eq!(
        m.portal("workspacesweb_session_records_incomplete_total", P1),
        Some(1.0)
    );
    assert_eq!(
        m.portal("workspacesweb_session_duration_seconds_count", P1),
        Some(1.0)
    );
    assert_eq!(m.errors(P1, "GetSession", "AccessDeniedException"), 1.0);
    assert_eq!(m.up(P1), Some(1.0));
    h.assert_same_process();
}

/// `GetPortal` denied: the portal is polled, only its info series are absent; the denial is
/// counted and logged once. A reload after the policy is fixed brings the info at once.
#[test]
fn get_portal_denied() {
    let s = sim(SimConfig::new(4).with_portal(portal(P1, "us-east-1", running(3))));
    s.sim
        .set_operation_error(P1, "GetPortal", Some("AccessDeniedException"));
    let mut h = Hour::start(s, &config_of(&[P1], ""), Some(KEY));
    let m = h.metrics_until("GetPortal denied", |m| {
        m.errors(P1, "GetPortal", "AccessDeniedException") >= 1.0
    });
    assert_eq!(m.up(P1), Some(1.0));
    assert!(!m.has("workspacesweb_portal_info"), "{}", m.0);
    h.assert_ready();
    h.log_line(&[
        "GetPortal is not permitted",
        "error=AccessDeniedException",
        P1,
    ]);
    let started = m.portal("workspacesweb_sessions_started_total", P1);

    h.sim.sim.set_operation_error(P1, "GetPortal", None);
    h.reload(&config_of(&[P1], ""));
    let m = h.metrics_until("portal_info after the reload", |m| {
        m.has("workspacesweb_portal_info{")
    });
    let display = h.sim.sim.portal(P1).expect("portal").display_name;
    assert!(
        m.0.contains(&format!("display_name=\"{display}\"")),
        "{}",
        m.0
    );
    assert_eq!(
        m.portal("workspacesweb_sessions_started_total", P1),
        started
    );
    assert_eq!(m.up(P1), Some(1.0));
    h.assert_same_process();
}

/// `ListPortals` denied in one region of a discovery entry: the other region's portals are
/// polled, the denial is counted on the source and logged, readiness does not wait for it.
/// Allowed again, the next refresh brings the region's portals.
#[test]
fn list_portals_denied_in_one_region() {
    let s = sim(SimConfig::new(5)
        .with_portal(portal(P1, "us-east-1", running(1)))
        .with_portal(portal(P2, "eu-west-1", running(2))));
    s.sim
        .set_list_portals_error("eu-west-1", None, Some("AccessDeniedException"));
    let mut h = Hour::start(
        s,
        "global:\n  interval: 1s\n  timeout: 800ms\ndiscovery:\n  - regions: [us-east-1, eu-west-1]\n    refresh: 1s\n",
        Some(KEY),
    );
    let m = h.metrics_until("the denial counted on the source", |m| {
        m.up(P1) == Some(1.0)
            && m.value(
                "workspacesweb_api_request_errors_total",
                &[
                    ("region", "eu-west-1"),
                    ("operation", "ListPortals"),
                    ("error", "AccessDeniedException"),
                ],
            )
            .is_some_and(|v| v >= 1.0)
    });
    assert_eq!(m.up(P2), None, "not discovered");
    h.assert_ready();
    h.log_line(&[
        "portal discovery failed",
        "region=eu-west-1",
        "error=AccessDeniedException",
    ]);
    let page = h.landing();
    assert!(page.contains(P1) && !page.contains(P2), "{page}");
    // No global.region, but every discovery entry names its regions: no region lookup either.
    assert_eq!(h.imds.paths(), Vec::<String>::new());

    h.sim.sim.set_list_portals_error("eu-west-1", None, None);
    let m = h.metrics_until("the region's portal polled", |m| m.up(P2) == Some(1.0));
    assert_eq!(m.up(P1), Some(1.0));
    assert_eq!(m.portal("workspacesweb_active_sessions", P2), Some(2.0));
    h.assert_same_process();
}

/// A portal id that does not exist in the configured region: `ResourceNotFoundException`, with
/// the service's message on the page. The region fixed and reloaded, it is polled.
#[test]
fn portal_not_in_the_configured_region() {
    let mut h = Hour::start(
        sim(SimConfig::new(6).with_portal(portal(P1, "eu-west-1", running(2)))),
        &config_of(&[P1], ""),
        Some(KEY),
    );
    let m = h.metrics_until("ResourceNotFoundException", |m| {
        m.errors(P1, "ListSessions", "ResourceNotFoundException") >= 1.0
    });
    assert_eq!(m.up(P1), Some(0.0));
    h.assert_ready();
    let page = h.landing();
    assert!(
        page.contains(&format!(
            "ListSessions ResourceNotFoundException: Portal not found: {P1}"
        )),
        "{page}"
    );
    h.log_line(&["msg=\"poll failed\"", "error=ResourceNotFoundException", P1]);
    let missed = m.errors(P1, "ListSessions", "ResourceNotFoundException");

    let fixed = config_of(&[], "").replace(
        "portals:\n",
        &format!("portals:\n  - id: {P1}\n    region: eu-west-1\n"),
    );
    h.reload(&fixed);
    h.recovered(("ListSessions", "ResourceNotFoundException", missed), 2.0);
}

/// A `nextToken` of 70,000 characters in `ListSessions`: the listing ends with `error="other"`,
/// nothing panics, the counters stay. Before, the SDK panicked building the next request and the
/// task restarted with a fresh ledger at every poll.
#[test]
fn oversized_token_in_list_sessions() {
    let mut h = Hour::start(
        sim(SimConfig::new(7).with_portal(portal(P1, "us-east-1", running(2)))),
        &config_of(&[P1], ""),
        Some(KEY),
    );
    h.metrics_until("first poll", |m| m.up(P1) == Some(1.0));
    let now = now_ms();
    h.sim
        .sim
        .add_session(P1, SimSession::new(SimSession::id_for(50), "new", now))
        .expect("portal");
    let before = h.metrics_until("a start counted", |m| {
        m.portal("workspacesweb_sessions_started_total", P1) == Some(1.0)
    });
    h.sim
        .sim
        .set_faults(P1, Faults::long_next_token(70_000))
        .expect("portal");
    let m = h.metrics_until("the listing refused", |m| {
        m.errors(P1, "ListSessions", "other") >= 1.0 && m.up(P1) == Some(0.0)
    });
    assert!(!m.has("workspacesweb_poller_panics_total"), "{}", m.0);
    assert_eq!(
        m.portal("workspacesweb_sessions_started_total", P1),
        Some(1.0)
    );
    let page = h.landing();
    assert!(
        page.contains("ListSessions other: the service sent a nextToken of 70000 characters"),
        "{page}"
    );
    h.log_line(&["msg=\"poll failed\"", "error=other", "70000 characters", P1]);

    let refused = m.errors(P1, "ListSessions", "other");
    h.sim.sim.set_faults(P1, Faults::none()).expect("portal");
    let m = h.recovered(("ListSessions", "other", refused), 3.0);
    assert!(!m.has("workspacesweb_poller_panics_total"), "{}", m.0);
    assert_eq!(
        m.portal("workspacesweb_sessions_started_total", P1),
        before.portal("workspacesweb_sessions_started_total", P1)
    );
}

/// A `nextToken` of 70,000 characters in `ListPortals`: the listing fails with `error="other"`,
/// readiness does not wait for it, nothing panics. Before, the discovery source died silently
/// and `/-/ready` stayed 503 forever.
#[test]
fn oversized_token_in_list_portals() {
    let s = sim(SimConfig::new(8).with_portal(portal(P1, "us-east-1", running(1))));
    s.sim
        .set_list_portals_faults(Faults::long_next_token(70_000));
    let mut h = Hour::start(
        s,
        "global:\n  interval: 1s\n  timeout: 800ms\ndiscovery:\n  - regions: [us-east-1]\n    refresh: 1s\n",
        Some(KEY),
    );
    let source = [
        ("region", "us-east-1"),
        ("operation", "ListPortals"),
        ("error", "other"),
    ];
    h.metrics_until("the listing refused", |m| {
        m.value("workspacesweb_api_request_errors_total", &source)
            .is_some_and(|v| v >= 1.0)
    });
    h.assert_ready();
    h.log_line(&["portal discovery failed", "error=other", "70000 characters"]);

    h.sim.sim.set_list_portals_faults(Faults::none());
    let m = h.metrics_until("the portal discovered", |m| m.up(P1) == Some(1.0));
    assert!(!m.has("workspacesweb_discovery_panics_total"), "{}", m.0);
    assert!(!h.log().contains("panicked"), "{}", h.log());
    h.assert_same_process();
}

/// Pages holding five times `maxResults`: refused with `error="other"`. Before, one poll held
/// whatever the service sent.
#[test]
fn overfull_pages() {
    let s = sim(SimConfig::new(9).with_portal(portal(P1, "us-east-1", running(12))));
    s.sim
        .set_faults(P1, Faults::overfull_pages(5))
        .expect("portal");
    let mut h = Hour::start(s, &config_of(&[P1], "  page_size: 2\n"), Some(KEY));
    let m = h.metrics_until("the page refused", |m| {
        m.errors(P1, "ListSessions", "other") >= 1.0
    });
    assert_eq!(m.up(P1), Some(0.0));
    h.assert_ready();
    let page = h.landing();
    assert!(
        page.contains("ListSessions other: the service sent a page of 10 items for maxResults=2"),
        "{page}"
    );
    h.log_line(&["msg=\"poll failed\"", "error=other", "maxResults=2", P1]);

    let refused = m.errors(P1, "ListSessions", "other");
    h.sim.sim.set_faults(P1, Faults::none()).expect("portal");
    h.recovered(("ListSessions", "other", refused), 12.0);
}
