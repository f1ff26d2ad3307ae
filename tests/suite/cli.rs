//! The exporter binary from the outside, over loopback: `--config.check`, flags and exit codes,
//! bind failures, graceful shutdown on signals, JSON logs, the AWS SDK's own credential, region
//! and endpoint chains against the simulator, and the landing page and gzip exposition.

use crate::common;

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::Duration;

use crate::common::{
    BackgroundSim, Child, free_port, http_get, http_get_with, poll_until, start_background_sim,
    wait_exit,
};

const EXPORTER: &str = env!("CARGO_BIN_EXE_workspacesweb-exporter");
const VERSION: &str = env!("CARGO_PKG_VERSION");

const ID: &str = "11111111-2222-3333-4444-555555555555";
const ID2: &str = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee";

/// Hang guard for a process expected to exit on its own (not a timing assertion).
const EXIT_LIMIT: Duration = Duration::from_secs(30);
/// Hang guard for readiness (the demo is ready in about 2 s).
const READY_LIMIT: Duration = Duration::from_secs(45);

/// A command for the exporter with no `AWS_*` variable of the caller's environment, so that a
/// developer's profile or endpoint cannot leak into a test.
fn exporter() -> Command {
    let mut cmd = Command::new(EXPORTER);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("AWS_") {
            cmd.env_remove(name);
        }
    }
    cmd.stdin(Stdio::null());
    cmd
}

/// What a process that ran to its end left behind.
pub(super) struct Finished {
    status: ExitStatus,
    pub(super) stdout: String,
    pub(super) stderr: String,
}

impl Finished {
    pub(super) fn code(&self) -> Option<i32> {
        self.status.code()
    }
}

/// Runs `cmd` to its exit (bounded by [`EXIT_LIMIT`]), capturing stdout and stderr in files so
/// that a chatty process can never block on a full pipe.
fn run_to_exit(cmd: &mut Command) -> Finished {
    let dir = tempfile::tempdir().expect("tempdir");
    let (out, err) = (dir.path().join("stdout"), dir.path().join("stderr"));
    cmd.stdout(File::create(&out).expect("stdout file"))
        .stderr(File::create(&err).expect("stderr file"));
    let mut child = Child(cmd.spawn().expect("process starts"));
    let status = wait_exit(&mut child.0, EXIT_LIMIT).unwrap_or_else(|| {
        panic!(
            "{cmd:?} still running after {EXIT_LIMIT:?}; stderr:\n{}",
            read(&err)
        )
    });
    Finished {
        status,
        stdout: read(&out),
        stderr: read(&err),
    }
}

fn run(args: &[&str]) -> Finished {
    run_to_exit(exporter().args(args))
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// Writes `text` as a config file in `dir` and returns its path.
pub(super) fn config_file(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write config");
    path
}

/// `--config.check --config.file <path>`.
pub(super) fn check(path: &Path) -> Finished {
    run(&[
        "--config.check",
        "--config.file",
        path.to_str().expect("utf-8 path"),
    ])
}

/// A running exporter on a free loopback port, stderr captured in a file, killed on drop.
struct Exporter {
    child: Child,
    addr: String,
    stderr: PathBuf,
    _dir: tempfile::TempDir,
}

impl Exporter {
    fn start(args: &[&str], envs: &[(&str, &str)]) -> Exporter {
        let dir = tempfile::tempdir().expect("tempdir");
        let stderr = dir.path().join("stderr");
        let addr = format!("127.0.0.1:{}", free_port());
        let child = exporter()
            .args(args)
            .args(["--web.listen-address", &addr])
            .envs(envs.iter().copied())
            .stdout(Stdio::null())
            .stderr(File::create(&stderr).expect("stderr file"))
            .spawn()
            .expect("exporter starts");
        Exporter {
            child: Child(child),
            addr,
            stderr,
            _dir: dir,
        }
    }

    fn stderr(&self) -> String {
        read(&self.stderr)
    }

    /// Waits for `/-/ready` to answer 200; fails at once if the exporter exits instead.
    fn wait_ready(&mut self) {
        common::wait_ready_or_exit(&mut self.child, &self.addr, READY_LIMIT, &self.stderr);
    }

    /// Sends `signal` (`TERM`, `INT`) with kill(1) and waits for the exit.
    fn signal_and_wait(&mut self, signal: &str) -> ExitStatus {
        let pid = self.child.0.id().to_string();
        let sent = Command::new("kill")
            .args([&format!("-{signal}"), &pid])
            .status()
            .expect("kill(1) runs");
        assert!(sent.success(), "kill -{signal} {pid} failed");
        wait_exit(&mut self.child.0, EXIT_LIMIT).unwrap_or_else(|| {
            panic!(
                "exporter still running {EXIT_LIMIT:?} after SIG{signal}; stderr:\n{}",
                self.stderr()
            )
        })
    }

    fn get(&self, path: &str) -> (u16, String, Vec<u8>) {
        http_get(&self.addr, path).unwrap_or_else(|e| panic!("GET {path}: {e}"))
    }

    fn metrics(&self) -> String {
        let (status, _, body) = self.get("/metrics");
        assert_eq!(status, 200, "GET /metrics");
        String::from_utf8(body).expect("exposition is UTF-8")
    }
}

/// One sample of the text exposition: name, the label set as written, value.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: String,
    value: f64,
}

/// The samples of a text exposition (label values in these tests hold no spaces or braces).
fn samples(exposition: &str) -> Vec<Sample> {
    exposition
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|line| {
            let (series, value) = line
                .rsplit_once(' ')
                .unwrap_or_else(|| panic!("sample without value: {line:?}"));
            let (name, labels) = match series.split_once('{') {
                Some((name, rest)) => (name, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            Sample {
                name: name.to_string(),
                labels: labels.to_string(),
                value: value
                    .parse()
                    .unwrap_or_else(|_| panic!("bad value in {line:?}")),
            }
        })
        .collect()
}

/// The samples of metric `name` for `portal_id`.
fn portal_samples<'a>(all: &'a [Sample], name: &str, portal_id: &str) -> Vec<&'a Sample> {
    let label = format!("portal_id=\"{portal_id}\"");
    all.iter()
        .filter(|s| s.name == name && s.labels.split(',').any(|l| l == label))
        .collect()
}

/// The one value of metric `name` for `portal_id`.
fn portal_value(all: &[Sample], name: &str, portal_id: &str) -> f64 {
    match portal_samples(all, name, portal_id).as_slice() {
        [one] => one.value,
        other => panic!("expected one {name} sample for {portal_id}, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// 1, 2. --config.check and missing files
// ---------------------------------------------------------------------------------------------

#[test]
fn config_check_prints_the_summary_of_a_valid_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = config_file(
        dir.path(),
        "exporter.yaml",
        &format!(
            "global:\n  region: eu-west-1\n  interval: 2m\n  labels: {{env: prod}}\nportals:\n  - id: {ID}\n  - id: {ID2}\n    interval: 30s\n    labels: {{team: support}}\n"
        ),
    );
    let out = check(&path);
    assert_eq!(out.code(), Some(0), "stderr:\n{}", out.stderr);
    assert_eq!(
        out.stderr, "",
        "a valid file without warnings prints nothing on stderr"
    );
    let s = &out.stdout;
    assert!(
        s.starts_with(
            "global: region=eu-west-1 interval=2m timeout=30s page_size=100 concurrency=4"
        ),
        "{s}"
    );
    assert!(s.contains("per_user: disabled\n"), "{s}");
    assert!(s.contains("portals: 2\n"), "{s}");
    assert!(
        s.contains(&format!(
            "  - {ID} region=eu-west-1 interval=2m timeout=30s labels={{env=\"prod\"}}"
        )),
        "{s}"
    );
    assert!(
        s.contains(&format!(
            "  - {ID2} region=eu-west-1 interval=30s timeout=24s"
        )),
        "{s}"
    );
    assert!(s.contains("team=\"support\""), "{s}");
    assert!(s.contains("discovery: 0\n"), "{s}");
}

#[test]
fn config_check_warns_on_stderr_and_still_succeeds() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = config_file(
        dir.path(),
        "fast.yaml",
        &format!("global:\n  interval: 5s\nportals:\n  - id: {ID}\n"),
    );
    let out = check(&path);
    assert_eq!(out.code(), Some(0), "stderr:\n{}", out.stderr);
    assert_eq!(
        out.stderr,
        format!(
            "warning: {}:2:13: global.interval: interval 5s is below 10s: expect API throttling and load\n",
            path.display()
        )
    );
    assert!(out.stdout.contains("portals: 1\n"), "{}", out.stdout);
}

/// Values copied from the documentation, or left from a test against a local simulator,
/// validate but would poll nothing real: one warning each, naming the key path, exit 0.
#[test]
fn config_check_warns_about_placeholders_and_a_loopback_endpoint() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = config_file(
        dir.path(),
        "copied.yaml",
        &format!(
            "portals:
  - id: 11111111-1111-1111-1111-111111111111
    region: us-east-1
  - arn: arn:aws:workspaces-web:eu-west-1:123456789012:portal/{ID2}
    role_arn: arn:aws:iam::210987654321:role/wsw
    endpoint_url: http://127.0.0.1:4566
discovery:
  - regions: [us-east-1]
    endpoint_url: http://localhost:4566
  - regions: [eu-west-1]
    role_arn: arn:aws:iam::999988887777:role/wsw
"
        ),
    );
    let out = check(&path);
    assert_eq!(out.code(), Some(0), "stderr:\n{}", out.stderr);
    let file = path.display();
    let lines: Vec<&str> = out.stderr.lines().collect();
    let expected = [
        format!(
            "warning: {file}:2:9: portals[0].id: portal id 11111111-1111-1111-1111-111111111111 is a documentation placeholder"
        ),
        format!(
            "warning: {file}:4:10: portals[1].arn: account 123456789012 is a documentation placeholder"
        ),
        format!(
            "warning: {file}:5:15: portals[1].role_arn: account 210987654321 is a documentation placeholder"
        ),
        format!(
            "warning: {file}:6:19: portals[1].endpoint_url: http://127.0.0.1:4566 is this machine (a local simulator?), not AWS"
        ),
        format!(
            "warning: {file}:9:19: discovery[0].endpoint_url: http://localhost:4566 is this machine (a local simulator?), not AWS"
        ),
    ];
    assert_eq!(lines.len(), expected.len(), "{}", out.stderr);
    for (line, want) in lines.iter().zip(&expected) {
        assert!(line.starts_with(want.as_str()), "{line}\nwanted: {want}");
    }
    assert!(out.stdout.contains("portals: 2\n"), "{}", out.stdout);
}

#[test]
fn config_check_rejects_invalid_files_naming_file_line_and_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    // (file name, text, the exact first line of stderr after "<path>:")
    let cases = [
        (
            "unknown-key.yaml",
            format!("global:\n  region: us-east-1\nportals:\n  - id: {ID}\n    intervall: 30s\n"),
            "5:5: portals[0].intervall: unknown key \"intervall\"; expected one of `id`, `arn`, `region`, `role_arn`, `external_id`, `endpoint_url`, `interval`, `labels`".to_string(),
        ),
        (
            "bad-duration.yaml",
            format!("portals:\n  - id: {ID}\n  - id: {ID2}\n    interval: 5x\n"),
            "4:15: portals[1].interval: invalid duration \"5x\": expected a number followed by ms, s, m, h or d".to_string(),
        ),
        (
            "timeout.yaml",
            format!("# comment\nglobal:\n  interval: 30s\n  timeout: 45s\nportals:\n  - id: {ID}\n"),
            "4:12: global.timeout: timeout (45s) must be less than interval (30s)".to_string(),
        ),
    ];
    for (name, text, expected) in cases {
        let path = config_file(dir.path(), name, &text);
        let out = check(&path);
        assert_eq!(out.code(), Some(1), "{name}: stderr:\n{}", out.stderr);
        assert_eq!(out.stdout, "", "{name}: no summary for an invalid file");
        let first = out.stderr.lines().next().unwrap_or_default();
        assert_eq!(first, format!("{}:{expected}", path.display()), "{name}");
    }
}

#[test]
fn missing_config_file_exits_1_naming_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("does-not-exist.yaml");
    let shown = path.display().to_string();
    // Starting the exporter (no --demo): it must stop before binding.
    let addr = format!("127.0.0.1:{}", free_port());
    let out = run(&["--config.file", &shown, "--web.listen-address", &addr]);
    assert_eq!(out.code(), Some(1), "stderr:\n{}", out.stderr);
    assert!(
        out.stderr
            .lines()
            .any(|l| l.starts_with(&format!("{shown}: cannot read config file: "))),
        "{}",
        out.stderr
    );
    // And --config.check says the same.
    let out = check(&path);
    assert_eq!(out.code(), Some(1), "stderr:\n{}", out.stderr);
    assert!(
        out.stderr
            .starts_with(&format!("{shown}: cannot read config file: ")),
        "{}",
        out.stderr
    );
}

#[test]
fn the_default_config_file_is_looked_up_in_the_working_directory() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = run_to_exit(exporter().current_dir(dir.path()).arg("--config.check"));
    assert_eq!(out.code(), Some(1), "stderr:\n{}", out.stderr);
    assert!(
        out.stderr
            .starts_with("workspacesweb-exporter.yaml: cannot read config file: "),
        "{}",
        out.stderr
    );
    config_file(
        dir.path(),
        "workspacesweb-exporter.yaml",
        &format!("portals:\n  - id: {ID}\n"),
    );
    let out = run_to_exit(exporter().current_dir(dir.path()).arg("--config.check"));
    assert_eq!(out.code(), Some(0), "stderr:\n{}", out.stderr);
    assert!(out.stdout.contains(&format!("  - {ID} ")), "{}", out.stdout);
}

// ---------------------------------------------------------------------------------------------
// 3. Flags
// ---------------------------------------------------------------------------------------------

#[test]
fn bad_flags_exit_1_not_2() {
    // Each would otherwise start the demo; a free port keeps a regression from colliding.
    let addr = format!("127.0.0.1:{}", free_port());
    let cases: [(&[&str], &str); 6] = [
        (&["--nope"], "unexpected argument '--nope'"),
        (
            &["--log.level", "loud"],
            "invalid value 'loud' for '--log.level",
        ),
        (
            &["--log.format", "xml"],
            "invalid value 'xml' for '--log.format",
        ),
        (
            &["--web.max-connections", "0"],
            "invalid value '0' for '--web.max-connections",
        ),
        (
            &["--web.telemetry-path", "nope"],
            "invalid telemetry path \"nope\"",
        ),
        (
            &["--web.listen-address", "nowhere"],
            "invalid listen address \"nowhere\"",
        ),
    ];
    for (args, named) in cases {
        let listen: &[&str] = if args[0] == "--web.listen-address" {
            &[]
        } else {
            &["--web.listen-address", &addr]
        };
        let out = run_to_exit(exporter().arg("--demo").args(listen).args(args));
        assert_eq!(out.code(), Some(1), "{args:?}: stderr:\n{}", out.stderr);
        assert!(
            out.stderr.contains(named),
            "{args:?}: stderr:\n{}",
            out.stderr
        );
        assert_eq!(out.stdout, "", "{args:?}");
    }
}

#[test]
fn version_and_help_exit_0_on_stdout() {
    let out = run(&["--version"]);
    assert_eq!(out.code(), Some(0), "stderr:\n{}", out.stderr);
    assert!(
        out.stdout.starts_with(&format!(
            "workspacesweb-exporter, version {VERSION} (revision: "
        )),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("rustc: "), "{}", out.stdout);
    assert_eq!(out.stderr, "");

    for flag in ["--help", "-h"] {
        let out = run(&[flag]);
        assert_eq!(out.code(), Some(0), "{flag}: stderr:\n{}", out.stderr);
        for documented in [
            "--config.file",
            "--config.check",
            "--web.listen-address",
            "--web.telemetry-path",
            "--web.max-connections",
            "--log.level",
            "--log.format",
            "--demo",
            "--version",
        ] {
            assert!(out.stdout.contains(documented), "{flag} lacks {documented}");
        }
        assert_eq!(out.stderr, "", "{flag}");
    }
}

// ---------------------------------------------------------------------------------------------
// 4. Bind failures
// ---------------------------------------------------------------------------------------------

#[test]
fn an_address_in_use_exits_2_naming_it() {
    let held = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let busy = held.local_addr().expect("addr").to_string();
    let out = run(&["--demo", "--web.listen-address", &busy]);
    assert_eq!(out.code(), Some(2), "stderr:\n{}", out.stderr);
    assert!(
        out.stderr
            .lines()
            .any(|l| l.starts_with(&format!("cannot listen on {busy}: "))),
        "{}",
        out.stderr
    );

    // With several addresses, the one that fails is named, even when the first one bound.
    let free = format!("127.0.0.1:{}", free_port());
    let out = run(&[
        "--demo",
        "--web.listen-address",
        &free,
        "--web.listen-address",
        &busy,
    ]);
    assert_eq!(out.code(), Some(2), "stderr:\n{}", out.stderr);
    assert!(
        out.stderr
            .lines()
            .any(|l| l.starts_with(&format!("cannot listen on {busy}: "))),
        "{}",
        out.stderr
    );
    drop(held);
}

// ---------------------------------------------------------------------------------------------
// 5. Graceful shutdown
// ---------------------------------------------------------------------------------------------

fn shuts_down_cleanly_on(signal: &str) {
    let mut exporter = Exporter::start(&["--demo"], &[]);
    exporter.wait_ready();
    assert_eq!(exporter.get("/-/healthy").0, 200);
    let status = exporter.signal_and_wait(signal);
    let stderr = exporter.stderr();
    assert_eq!(status.code(), Some(0), "SIG{signal}: stderr:\n{stderr}");
    assert!(
        stderr.contains(&format!("msg=\"shutting down\" signal=SIG{signal}")),
        "{stderr}"
    );
    assert!(stderr.contains("msg=stopped"), "{stderr}");
    // Prometheus 3's logfmt keys, in its order (issue #26).
    for line in stderr.lines().filter(|l| !l.trim().is_empty()) {
        assert!(
            line.starts_with("time=") && line.contains(" level=") && line.contains(" source="),
            "{line}"
        );
    }
    let err =
        std::net::TcpStream::connect(&exporter.addr).expect_err("the port is closed after exit");
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused, "{err}");
}

#[test]
fn sigterm_shuts_down_with_exit_0_and_closes_the_port() {
    shuts_down_cleanly_on("TERM");
}

#[test]
fn sigint_shuts_down_with_exit_0_and_closes_the_port() {
    shuts_down_cleanly_on("INT");
}

// ---------------------------------------------------------------------------------------------
// 6. The SDK's own credential, region and endpoint chains, against the simulator
// ---------------------------------------------------------------------------------------------

/// The simulator (as the `workspacesweb-sim` binary serves it) on a free port: its endpoint URL
/// and portal ids.
struct Sim {
    _sim: BackgroundSim,
    endpoint: String,
    portals: Vec<String>,
}

fn start_sim(seed: u64, portals: usize) -> Sim {
    let sim = start_background_sim(workspacesweb_sim::SimConfig::generated(seed, portals));
    let portals: Vec<String> = sim.sim.portals().into_iter().map(|p| p.id).collect();
    Sim {
        endpoint: sim.running.endpoint_url(),
        portals,
        _sim: sim,
    }
}

/// Runs the exporter with no `endpoint_url` in its config, the endpoint given by the environment
/// variable `endpoint_var`, credentials and region from the environment only, and checks that
/// both portals of the simulator poll successfully.
fn sdk_environment_reaches_the_simulator(endpoint_var: &str) {
    let sim = start_sim(7, 2);
    let dir = tempfile::tempdir().expect("tempdir");
    // The first portal names its region; the second takes it from AWS_REGION (the simulator
    // checks the SigV4 region against the portal's).
    let config = config_file(
        dir.path(),
        "exporter.yaml",
        &format!(
            "global:\n  interval: 60s\n  labels: {{env: sim}}\nportals:\n  - id: {}\n    region: us-east-1\n  - id: {}\n",
            sim.portals[0], sim.portals[1]
        ),
    );
    let check = check(&config);
    assert_eq!(check.code(), Some(0), "stderr:\n{}", check.stderr);
    let mut exporter = Exporter::start(
        &["--config.file", config.to_str().expect("utf-8 path")],
        &[
            (endpoint_var, sim.endpoint.as_str()),
            ("AWS_ACCESS_KEY_ID", "AKIDTEST"),
            ("AWS_SECRET_ACCESS_KEY", "secret"),
            ("AWS_REGION", "us-east-1"),
            ("AWS_EC2_METADATA_DISABLED", "true"),
            ("AWS_CONFIG_FILE", "/nonexistent"),
            ("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent"),
        ],
    );
    exporter.wait_ready();
    let exposition = exporter.metrics();
    let all = samples(&exposition);
    for id in &sim.portals {
        assert_eq!(
            portal_value(&all, "workspacesweb_up", id),
            1.0,
            "{endpoint_var}: portal {id} not up; stderr:\n{}",
            exporter.stderr()
        );
        let active = portal_value(&all, "workspacesweb_active_sessions", id);
        assert!(active >= 0.0 && active.fract() == 0.0, "{active}");
        let list_calls = portal_samples(&all, "workspacesweb_api_requests_total", id)
            .into_iter()
            .filter(|s| s.labels.contains("operation=\"ListSessions\""))
            .map(|s| s.value)
            .sum::<f64>();
        assert!(list_calls >= 2.0, "{id}: {list_calls} ListSessions calls");
        let errors = portal_samples(&all, "workspacesweb_api_request_errors_total", id);
        assert!(
            errors.iter().all(|s| s.value == 0.0),
            "{endpoint_var}: {id}: {errors:?}"
        );
        assert!(
            portal_samples(&all, "workspacesweb_up", id)[0]
                .labels
                .contains("env=\"sim\""),
            "static labels on {id}"
        );
    }
    // One of the two is the simulator's busy portal (~30 sessions open at any time of day); which
    // id it gets depends on the seed, and the quiet one may well have none open right now.
    let busiest = sim
        .portals
        .iter()
        .map(|id| portal_value(&all, "workspacesweb_active_sessions", id))
        .fold(0.0, f64::max);
    assert!(busiest > 0.0, "{exposition}");
    let status = exporter.signal_and_wait("TERM");
    assert_eq!(status.code(), Some(0), "stderr:\n{}", exporter.stderr());
}

#[test]
fn service_specific_endpoint_variable_and_env_credentials_reach_the_simulator() {
    sdk_environment_reaches_the_simulator("AWS_ENDPOINT_URL_WORKSPACES_WEB");
}

#[test]
fn generic_endpoint_variable_and_env_credentials_reach_the_simulator() {
    sdk_environment_reaches_the_simulator("AWS_ENDPOINT_URL");
}

// ---------------------------------------------------------------------------------------------
// 7. JSON logs
// ---------------------------------------------------------------------------------------------

#[test]
fn json_log_format_writes_one_object_per_line_with_a_level() {
    let mut exporter = Exporter::start(&["--demo", "--log.format", "json"], &[]);
    exporter.wait_ready();
    let status = exporter.signal_and_wait("TERM");
    let stderr = exporter.stderr();
    assert_eq!(status.code(), Some(0), "stderr:\n{stderr}");
    let mut messages = Vec::new();
    for line in stderr.lines().filter(|l| !l.trim().is_empty()) {
        let value: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line:?}"));
        let object = value
            .as_object()
            .unwrap_or_else(|| panic!("not a JSON object: {line:?}"));
        let level = object
            .get("level")
            .and_then(|l| l.as_str())
            .unwrap_or_else(|| panic!("no level: {line:?}"));
        assert!(
            ["TRACE", "DEBUG", "INFO", "WARN", "ERROR"].contains(&level),
            "level {level:?} in {line:?}"
        );
        // Prometheus 3's keys, in its order (issue #26): time, level, source, msg.
        assert!(line.starts_with("{\"time\":\""), "{line}");
        assert!(
            object
                .get("source")
                .and_then(|s| s.as_str())
                .is_some_and(|s| s.contains(".rs:")),
            "no source file:line in {line:?}"
        );
        assert!(
            !object.contains_key("message") && !object.contains_key("target"),
            "{line}"
        );
        if let Some(m) = object.get("msg").and_then(|m| m.as_str()) {
            messages.push(m.to_string());
        }
    }
    for expected in [
        "listening",
        "starting",
        "poll succeeded",
        "shutting down",
        "stopped",
    ] {
        assert!(
            messages.iter().any(|m| m == expected),
            "no {expected:?} message in:\n{stderr}"
        );
    }
}

#[test]
fn log_level_warn_hides_info_lines() {
    let mut exporter = Exporter::start(&["--demo", "--log.level", "warn"], &[]);
    exporter.wait_ready();
    let status = exporter.signal_and_wait("TERM");
    let stderr = exporter.stderr();
    assert_eq!(status.code(), Some(0), "stderr:\n{stderr}");
    assert!(!stderr.contains("level=INFO"), "{stderr}");
}

/// `--log.level error` silences every warning, the SDK's included: a missing AWS config file
/// makes the SDK warn, and a portal whose endpoint refuses connections makes the exporter warn.
#[test]
fn log_level_error_hides_warnings_of_dependencies_too() {
    let closed = free_port();
    let dir = tempfile::tempdir().expect("tempdir");
    let config = config_file(
        dir.path(),
        "exporter.yaml",
        &format!(
            "global:\n  region: us-east-1\n  interval: 10m\nportals:\n  - id: {ID}\n    endpoint_url: http://127.0.0.1:{closed}\n"
        ),
    );
    let run = |level: &str| {
        let mut exporter = Exporter::start(
            &[
                "--config.file",
                config.to_str().expect("utf-8 path"),
                "--log.level",
                level,
            ],
            &[
                ("AWS_ACCESS_KEY_ID", "AKIDTEST"),
                ("AWS_SECRET_ACCESS_KEY", "secret"),
                ("AWS_EC2_METADATA_DISABLED", "true"),
                ("AWS_CONFIG_FILE", "/nonexistent"),
                ("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent"),
            ],
        );
        exporter.wait_ready();
        let status = exporter.signal_and_wait("TERM");
        let stderr = exporter.stderr();
        assert_eq!(status.code(), Some(0), "stderr:\n{stderr}");
        stderr
    };
    // At warn, both kinds of warning are there (so the scenario does provoke them)...
    let warn = run("warn");
    assert!(warn.contains("level=WARN"), "{warn}");
    assert!(
        warn.lines()
            .any(|l| l.contains("level=WARN") && l.contains(" component=")),
        "a dependency's warning: {warn}"
    );
    // ...and at error, none.
    let error = run("error");
    assert!(!error.contains("level=WARN"), "{error}");
    assert!(!error.contains("level=INFO"), "{error}");
}

// ---------------------------------------------------------------------------------------------
// 8. Landing page, gzip, telemetry path
// ---------------------------------------------------------------------------------------------

#[test]
fn landing_page_and_gzip_exposition_of_the_demo() {
    let demo_ids: Vec<String> = workspacesweb_sim::SimConfig::demo(1)
        .portals
        .iter()
        .map(|p| p.id.clone())
        .collect();
    assert_eq!(demo_ids.len(), 3);

    let mut exporter = Exporter::start(&["--demo"], &[]);
    exporter.wait_ready();

    // The exposition (plain) has exactly the demo portals.
    let plain = exporter.metrics();
    let all = samples(&plain);
    let mut up: Vec<String> = all
        .iter()
        .filter(|s| s.name == "workspacesweb_up")
        .map(|s| {
            let start = s.labels.find("portal_id=\"").expect("portal_id") + 11;
            s.labels[start..start + 36].to_string()
        })
        .collect();
    up.sort();
    let mut expected = demo_ids.clone();
    expected.sort();
    assert_eq!(up, expected, "demo portals in /metrics");

    // Landing page.
    let (status, head, body) = exporter.get("/");
    assert_eq!(status, 200);
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: text/html"),
        "{head}"
    );
    let html = String::from_utf8(body).expect("UTF-8 page");
    assert!(html.contains(&format!("version {VERSION}")), "{html}");
    for id in &demo_ids {
        assert!(
            html.contains(id.as_str()),
            "landing page lacks {id}:\n{html}"
        );
    }
    assert!(html.contains("href=\"/metrics\""), "{html}");
    // Where each portal runs, a sparkline of its polls so far, and never a username (the demo
    // has per-user series of raw usernames, all `...@example.com` or odd ones like `CORP\jdoe`).
    assert_eq!(html.matches("<svg class=\"spark\"").count(), 3, "{html}");
    assert_eq!(
        html.matches("<td class=\"nw\">us-east-1</td>").count(),
        3,
        "{html}"
    );
    assert!(
        html.contains("<td class=\"nw\">123456789012</td>"),
        "{html}"
    );
    assert!(html.contains("none: the built-in demo"), "{html}");
    assert!(plain.contains("@example.com"), "the demo has usernames");
    assert!(
        !html.contains("@example.com") && !html.contains("jdoe"),
        "{html}"
    );

    // gzip when accepted.
    let (status, head, body) =
        http_get_with(&exporter.addr, "/metrics", &[("Accept-Encoding", "gzip")]).expect("scrape");
    assert_eq!(status, 200);
    let lower = head.to_ascii_lowercase();
    assert!(lower.contains("content-encoding: gzip"), "{head}");
    assert!(lower.contains("vary: accept, accept-encoding"), "{head}");
    assert!(
        lower.contains("content-type: text/plain; version=0.0.4"),
        "{head}"
    );
    assert_eq!(&body[..2], &[0x1f, 0x8b], "gzip magic");
    let mut text = String::new();
    flate2::read::GzDecoder::new(body.as_slice())
        .read_to_string(&mut text)
        .expect("valid gzip");
    assert!(text.contains("\nworkspacesweb_up{"), "{text}");
    assert!(text.contains("# TYPE workspacesweb_up gauge"), "{text}");

    // Not gzip when not accepted, or refused.
    let (_, head, body) = http_get_with(
        &exporter.addr,
        "/metrics",
        &[("Accept-Encoding", "gzip;q=0")],
    )
    .expect("scrape");
    assert!(
        !head.to_ascii_lowercase().contains("content-encoding"),
        "{head}"
    );
    assert!(
        String::from_utf8(body)
            .expect("plain")
            .contains("workspacesweb_up{")
    );
    let (_, head, _) = exporter.get("/metrics");
    assert!(
        !head.to_ascii_lowercase().contains("content-encoding"),
        "{head}"
    );
}

#[test]
fn telemetry_path_flag_moves_the_exposition() {
    let mut exporter = Exporter::start(&["--demo", "--web.telemetry-path", "/probe/metrics"], &[]);
    exporter.wait_ready();
    let (status, _, body) = exporter.get("/probe/metrics");
    assert_eq!(status, 200);
    assert!(
        String::from_utf8(body)
            .expect("UTF-8")
            .contains("workspacesweb_up{")
    );
    assert_eq!(exporter.get("/metrics").0, 404);
    let (_, _, page) = exporter.get("/");
    let html = String::from_utf8(page).expect("UTF-8");
    assert!(html.contains("href=\"/probe/metrics\""), "{html}");
}

// ---------------------------------------------------------------------------------------------
// Shutdown while a poll hangs; readiness before the first poll
// ---------------------------------------------------------------------------------------------

#[test]
fn sigterm_during_a_hanging_first_poll_exits_0_and_ready_stays_503_until_then() {
    // An "API" that accepts connections and never answers.
    let blackhole = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let endpoint = format!("http://{}", blackhole.local_addr().expect("addr"));
    blackhole.set_nonblocking(true).expect("nonblocking");
    let dir = tempfile::tempdir().expect("tempdir");
    // A poll timeout far beyond the exit guard: only abandoning the poll lets the exporter exit.
    let config = config_file(
        dir.path(),
        "exporter.yaml",
        &format!(
            "global:\n  region: us-east-1\n  interval: 20m\n  timeout: 10m\nportals:\n  - id: {ID}\n    endpoint_url: {endpoint}\n"
        ),
    );
    let mut exporter = Exporter::start(
        &["--config.file", config.to_str().expect("utf-8 path")],
        &[
            ("AWS_ACCESS_KEY_ID", "AKIDTEST"),
            ("AWS_SECRET_ACCESS_KEY", "secret"),
            ("AWS_EC2_METADATA_DISABLED", "true"),
            ("AWS_CONFIG_FILE", "/nonexistent"),
            ("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent"),
        ],
    );
    // The poll is in flight once the exporter has connected to the black hole.
    let held =
        poll_until(READY_LIMIT, || blackhole.accept().ok().map(|(s, _)| s)).unwrap_or_else(|| {
            panic!(
                "no poll reached the endpoint; stderr:\n{}",
                exporter.stderr()
            )
        });
    let healthy = poll_until(READY_LIMIT, || {
        http_get(&exporter.addr, "/-/healthy")
            .ok()
            .filter(|r| r.0 == 200)
    });
    assert!(healthy.is_some(), "stderr:\n{}", exporter.stderr());
    assert_eq!(
        exporter.get("/-/ready").0,
        503,
        "ready before the first poll finished"
    );
    let all = samples(&exporter.metrics());
    assert!(
        portal_samples(&all, "workspacesweb_up", ID).is_empty()
            || portal_value(&all, "workspacesweb_up", ID) == 0.0,
        "up before any poll: {:?}",
        portal_samples(&all, "workspacesweb_up", ID)
    );
    let status = exporter.signal_and_wait("TERM");
    assert_eq!(status.code(), Some(0), "stderr:\n{}", exporter.stderr());
    drop(held);
}

/// A `ListPortals` that never answers (the listing would wait for its 60 s timeout) does not hold
/// SIGTERM: the exporter exits 0 within the exit guard (30 s, the time Kubernetes gives before
/// SIGKILL); before, it exited only once the listing timed out, after 60 s.
#[test]
fn sigterm_during_a_hanging_discovery_listing_exits_0() {
    let blackhole = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let endpoint = format!("http://{}", blackhole.local_addr().expect("addr"));
    blackhole.set_nonblocking(true).expect("nonblocking");
    let dir = tempfile::tempdir().expect("tempdir");
    let config = config_file(
        dir.path(),
        "exporter.yaml",
        &format!(
            "discovery:\n  - regions: [us-east-1]\n    endpoint_url: {endpoint}\n    refresh: 10m\n"
        ),
    );
    let mut exporter = Exporter::start(
        &["--config.file", config.to_str().expect("utf-8 path")],
        &[
            ("AWS_ACCESS_KEY_ID", "AKIDTEST"),
            ("AWS_SECRET_ACCESS_KEY", "secret"),
            ("AWS_EC2_METADATA_DISABLED", "true"),
            ("AWS_CONFIG_FILE", "/nonexistent"),
            ("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent"),
        ],
    );
    // The listing is in flight once the exporter has connected to the black hole.
    let held =
        poll_until(READY_LIMIT, || blackhole.accept().ok().map(|(s, _)| s)).unwrap_or_else(|| {
            panic!(
                "no listing reached the endpoint; stderr:\n{}",
                exporter.stderr()
            )
        });
    let healthy = poll_until(READY_LIMIT, || {
        http_get(&exporter.addr, "/-/healthy")
            .ok()
            .filter(|r| r.0 == 200)
    });
    assert!(healthy.is_some(), "stderr:\n{}", exporter.stderr());
    assert_eq!(
        exporter.get("/-/ready").0,
        503,
        "ready before discovery listed"
    );
    let status = exporter.signal_and_wait("TERM");
    assert_eq!(status.code(), Some(0), "stderr:\n{}", exporter.stderr());
    drop(held);
}

// ---------------------------------------------------------------------------------------------
// A portal whose API cannot be reached: the first poll fails, readiness follows, logs stay JSON
// ---------------------------------------------------------------------------------------------

/// The top-level keys of a JSON object, in order, duplicates kept (`serde_json::Value` silently
/// keeps the last of duplicate keys, which log pipelines do not all do).
struct Keys(Vec<String>);

impl<'de> serde::Deserialize<'de> for Keys {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = Keys;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Keys, A::Error> {
                let mut keys = Vec::new();
                while let Some((k, _)) = map.next_entry::<String, serde::de::IgnoredAny>()? {
                    keys.push(k);
                }
                Ok(Keys(keys))
            }
        }
        d.deserialize_map(Visit)
    }
}

/// Runs the exporter with JSON logs on one portal whose endpoint refuses connections, until it is
/// ready (its first poll failed), then stops it: (exposition, stderr).
fn run_with_unreachable_portal() -> (String, String) {
    let closed = free_port();
    let dir = tempfile::tempdir().expect("tempdir");
    let config = config_file(
        dir.path(),
        "exporter.yaml",
        &format!(
            "global:\n  region: us-east-1\n  interval: 10m\nportals:\n  - id: {ID}\n    endpoint_url: http://127.0.0.1:{closed}\n"
        ),
    );
    let mut exporter = Exporter::start(
        &[
            "--config.file",
            config.to_str().expect("utf-8 path"),
            "--log.format",
            "json",
        ],
        &[
            ("AWS_ACCESS_KEY_ID", "AKIDTEST"),
            ("AWS_SECRET_ACCESS_KEY", "secret"),
            ("AWS_EC2_METADATA_DISABLED", "true"),
            ("AWS_CONFIG_FILE", "/nonexistent"),
            ("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent"),
        ],
    );
    exporter.wait_ready();
    let exposition = exporter.metrics();
    let status = exporter.signal_and_wait("TERM");
    let stderr = exporter.stderr();
    assert_eq!(status.code(), Some(0), "stderr:\n{stderr}");
    (exposition, stderr)
}

#[test]
fn an_unreachable_api_makes_the_portal_down_and_the_exporter_ready() {
    let (exposition, stderr) = run_with_unreachable_portal();
    let all = samples(&exposition);
    assert_eq!(
        portal_value(&all, "workspacesweb_up", ID),
        0.0,
        "{exposition}"
    );
    let dispatch: f64 = portal_samples(&all, "workspacesweb_api_request_errors_total", ID)
        .iter()
        .filter(|s| s.labels.contains("error=\"dispatch\""))
        .map(|s| s.value)
        .sum();
    assert!(dispatch >= 1.0, "{exposition}");
    // No successful poll: no state gauges.
    assert!(portal_samples(&all, "workspacesweb_active_sessions", ID).is_empty());
    // The failure is logged once, as a JSON warning naming the portal and the error label.
    let failed: Vec<serde_json::Value> = stderr
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l:?}")))
        .filter(|v: &serde_json::Value| v["level"] == "WARN" && v["portal_id"] == ID)
        .collect();
    assert_eq!(failed.len(), 1, "{stderr}");
    assert_eq!(failed[0]["error"], "dispatch", "{stderr}");
    assert_eq!(failed[0]["operation"], "ListSessions", "{stderr}");
}

/// Fails today: `src/poll.rs` logs the failure with a field named `message`, which the JSON
/// (and logfmt) formatter writes next to the event's own `message` ("poll failed"): two
/// `message` keys in one object. serde_json keeps the last; Loki, jq and Elasticsearch differ.
#[test]
fn json_log_lines_have_no_duplicate_keys() {
    let (_, stderr) = run_with_unreachable_portal();
    for line in stderr.lines().filter(|l| !l.trim().is_empty()) {
        let Keys(mut keys) = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not a JSON object ({e}): {line:?}"));
        let total = keys.len();
        keys.sort();
        keys.dedup();
        assert_eq!(keys.len(), total, "duplicate keys in {line}");
    }
}

// ---------------------------------------------------------------------------------------------
// A request in flight when SIGTERM arrives is answered
// ---------------------------------------------------------------------------------------------

#[test]
fn a_request_in_flight_at_sigterm_is_answered() {
    use std::io::Write;
    let mut exporter = Exporter::start(&["--demo"], &[]);
    exporter.wait_ready();
    // Half a request: the head is not complete yet.
    let mut conn = std::net::TcpStream::connect(&exporter.addr).expect("connect");
    conn.set_read_timeout(Some(EXIT_LIMIT)).expect("timeout");
    write!(conn, "GET /metrics HTTP/1.1\r\nHost: {}\r\n", exporter.addr).expect("write");
    conn.flush().expect("flush");
    // A second connection is served: the single accept loop took the first one before it.
    assert_eq!(exporter.get("/-/healthy").0, 200);
    let pid = exporter.child.0.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill(1) runs")
            .success()
    );
    // Draining has begun once new connections are refused.
    let refused = poll_until(READY_LIMIT, || {
        std::net::TcpStream::connect(&exporter.addr)
            .err()
            .filter(|e| e.kind() == std::io::ErrorKind::ConnectionRefused)
    });
    assert!(refused.is_some(), "listener still open after SIGTERM");
    // Finish the request; it is answered in full.
    write!(conn, "Connection: close\r\n\r\n").expect("finish the request");
    let mut raw = Vec::new();
    conn.read_to_end(&mut raw).expect("read the response");
    let text = String::from_utf8_lossy(&raw);
    assert!(text.starts_with("HTTP/1.1 200 "), "{text}");
    assert!(text.contains("workspacesweb_up{"), "{text}");
    let status = wait_exit(&mut exporter.child.0, EXIT_LIMIT).expect("exits");
    assert_eq!(status.code(), Some(0), "stderr:\n{}", exporter.stderr());
}

// ---------------------------------------------------------------------------------------------
// SIGTERM during startup
// ---------------------------------------------------------------------------------------------

#[test]
fn sigterm_during_startup_is_a_clean_shutdown() {
    // The SDK's region chain asks the instance metadata service when no region is configured;
    // pointed at a black hole, that holds the exporter in its startup for a while.
    let imds = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let imds_url = format!("http://{}", imds.local_addr().expect("addr"));
    imds.set_nonblocking(true).expect("nonblocking");
    let dir = tempfile::tempdir().expect("tempdir");
    let config = config_file(
        dir.path(),
        "exporter.yaml",
        &format!("portals:\n  - id: {ID}\n    endpoint_url: http://127.0.0.1:9\n"),
    );
    let mut exporter = Exporter::start(
        &["--config.file", config.to_str().expect("utf-8 path")],
        &[
            ("AWS_EC2_METADATA_SERVICE_ENDPOINT", imds_url.as_str()),
            ("AWS_ACCESS_KEY_ID", "AKIDTEST"),
            ("AWS_SECRET_ACCESS_KEY", "secret"),
            ("AWS_CONFIG_FILE", "/nonexistent"),
            ("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent"),
        ],
    );
    // Startup is under way once the SDK has connected to the metadata "service".
    let held =
        poll_until(READY_LIMIT, || imds.accept().ok().map(|(s, _)| s)).unwrap_or_else(|| {
            panic!(
                "the SDK never asked for metadata; stderr:\n{}",
                exporter.stderr()
            )
        });
    let status = exporter.signal_and_wait("TERM");
    assert_eq!(
        status.code(),
        Some(0),
        "{status}; stderr:\n{}",
        exporter.stderr()
    );
    drop(held);
}

/// A `POST` with an empty body over std TCP: (status, body).
fn http_post(addr: &str, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(EXIT_LIMIT)).expect("timeout");
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .expect("send");
    let mut raw = String::new();
    s.read_to_string(&mut raw).expect("read");
    let status = raw
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = raw.split("\r\n\r\n").nth(1).unwrap_or_default().to_string();
    (status, body)
}

#[test]
fn reload_by_post_and_sighup_adds_removes_and_rejects_invalid_config() {
    let sim = start_sim(8, 2);
    let (p0, p1) = (sim.portals[0].clone(), sim.portals[1].clone());
    let dir = tempfile::tempdir().expect("tempdir");
    let config = |ids: &[&str]| {
        let portals: String = ids.iter().map(|id| format!("  - id: {id}\n")).collect();
        format!("global:\n  interval: 60s\n  region: us-east-1\nportals:\n{portals}")
    };
    let path = config_file(dir.path(), "exporter.yaml", &config(&[&p0]));
    let mut exporter = Exporter::start(
        &[
            "--config.file",
            path.to_str().expect("utf-8 path"),
            "--web.enable-lifecycle",
        ],
        &[
            ("AWS_ENDPOINT_URL", sim.endpoint.as_str()),
            ("AWS_ACCESS_KEY_ID", "AKIDTEST"),
            ("AWS_SECRET_ACCESS_KEY", "secret"),
            ("AWS_EC2_METADATA_DISABLED", "true"),
            ("AWS_CONFIG_FILE", "/nonexistent"),
            ("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent"),
        ],
    );
    exporter.wait_ready();
    let up = |text: &str, id: &str| {
        text.contains(&format!("workspacesweb_up{{portal_id=\"{id}\"}} 1\n"))
    };
    let m = exporter.metrics();
    assert!(up(&m, &p0) && !m.contains(&p1), "{m}");
    assert!(m.contains("workspacesweb_config_last_reload_successful 1\n"));

    // POST /-/reload with a second portal: it starts; the first keeps running.
    std::fs::write(&path, config(&[&p0, &p1])).expect("write");
    let (status, body) = http_post(&exporter.addr, "/-/reload");
    assert_eq!(status, 200, "{body}");
    let m = poll_until(READY_LIMIT, || {
        Some(exporter.metrics()).filter(|m| up(m, &p1))
    })
    .unwrap_or_else(|| panic!("added portal never polled; stderr:\n{}", exporter.stderr()));
    assert!(up(&m, &p0));

    // An invalid file: 400 naming the file, line and key; everything keeps running.
    std::fs::write(&path, "global:\n  interval: 5x\nportals:\n  - id: nope\n").expect("write");
    let (status, body) = http_post(&exporter.addr, "/-/reload");
    assert_eq!(status, 400, "{body}");
    assert!(
        body.contains("exporter.yaml:2:") && body.contains("global.interval"),
        "{body}"
    );
    let dir = path.parent().expect("dir").display().to_string();
    assert!(
        !body.contains(&dir),
        "the body shows the host's paths: {body}"
    );
    let m = exporter.metrics();
    assert!(
        m.contains("workspacesweb_config_last_reload_successful 0\n"),
        "{m}"
    );
    assert!(up(&m, &p0) && up(&m, &p1));

    // SIGHUP with only the second portal: the first loses all its series.
    std::fs::write(&path, config(&[&p1])).expect("write");
    let pid = exporter.child.0.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-HUP", &pid])
            .status()
            .expect("kill")
            .success()
    );
    let m = poll_until(READY_LIMIT, || {
        Some(exporter.metrics())
            .filter(|m| m.contains("workspacesweb_config_last_reload_successful 1\n"))
    })
    .unwrap_or_else(|| {
        panic!(
            "SIGHUP reload never succeeded; stderr:\n{}",
            exporter.stderr()
        )
    });
    assert!(!m.contains(&p0), "removed portal keeps series:\n{m}");
    assert!(up(&m, &p1));
    let status = exporter.signal_and_wait("TERM");
    assert_eq!(status.code(), Some(0), "stderr:\n{}", exporter.stderr());
}
