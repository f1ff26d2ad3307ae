//! The golden exposition: the `workspacesweb_*` part of `/metrics` for one fixed scenario, compared
//! byte for byte with `tests/golden/exposition.txt` (as node_exporter's `e2e-output.txt`). Any
//! change to metric names, help texts, label names or order, escaping or value formatting shows
//! in review as a diff of that file.
//!
//! Regenerate it after an intended change with
//! `UPDATE_GOLDEN=1 cargo test --test golden`, and review the diff. The file's counts, sums,
//! bucket counts and per-user values are also derived from the scenario's timeline, without the
//! exporter's code ([`golden_values_follow_from_the_timeline`]), so a regeneration cannot approve
//! a wrong count.
//!
//! The scenario runs the real poller through the real SDK against the simulator: three portals,
//! per-user series with raw usernames (quotes, backslashes, a newline, non-ASCII, empty and
//! missing ones), odd static-label and metadata values, an incomplete record, and one portal that
//! answers AccessDenied. Each portal is polled exactly once (the interval is an hour and a failure
//! backs off at least that long), so every counter, request counts included, is exact.
//!
//! Time: the simulator runs on a manual clock at [`T0`], and the exporter's wall clock
//! (`clock::now_ms`, which stamps polls, T0 and reloads) is pinned to the same instant with
//! `clock::set_manual_now_ms`. That pin is process-global, which is why this file is a test
//! binary of its own, holding no test that needs the real clock. What cannot be pinned is
//! normalised (see [`normalise`]): `poll_duration_seconds`, measured with `Instant`, and the
//! build's revision and rustc version. `process_*` are left out (they describe this test
//! process). Counters are never normalised.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

use common::*;
use serde_json::json;
use workspacesweb_exporter::clock::{now_ms, set_manual_now_ms};
use workspacesweb_exporter::exposition::{Format, protobuf};
use workspacesweb_exporter::poll::{PortalPlan, Scheduler};
use workspacesweb_exporter::session::UnixMillis;
use workspacesweb_exporter::status::ReloadStatus;
use workspacesweb_exporter::users::{LabelMode, UserSettings};
use workspacesweb_sim::{Clock, Faults, PortalSpec, SimConfig, SimSession};

/// 2026-03-18T09:30:15.250Z: mid-month, with milliseconds so timestamps show their fraction.
const T0: UnixMillis = 1_773_826_215_250;
const S: i64 = 1000;
const DAY: i64 = 86_400 * S;

/// Odd usernames, per-user series, an incomplete record.
const ODD: &str = "90000000-0000-4000-8000-000000000001";
/// Ordinary users over several pages; odd static-label and display-name values.
const PLAIN: &str = "90000000-0000-4000-8000-000000000002";
/// Answers AccessDeniedException to everything: `up` 0 and an error counter.
const DENIED_PORTAL: &str = "90000000-0000-4000-8000-000000000003";

/// Env var that makes the test write the golden file instead of comparing with it.
const UPDATE: &str = "UPDATE_GOLDEN";

fn golden_path() -> PathBuf {
    golden_file("exposition.txt")
}

/// A file of `tests/golden/`: `exposition.txt` (text 0.0.4), `exposition.openmetrics.txt`,
/// `exposition.protobuf.txt` (the protobuf rendering, decoded and written out one line per
/// family and series by [`dump_protobuf`]).
fn golden_file(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name)
}

/// The `workspacesweb_*` part of the scenario's exposition in each format.
struct Renderings {
    text: String,
    openmetrics: String,
    protobuf: Vec<u8>,
}

fn active(id: u64, user: Option<&str>, start_ms: UnixMillis) -> SimSession {
    SimSession {
        id: SimSession::id_for(id),
        username: user.map(str::to_string),
        start_ms,
        end_ms: None,
    }
}

fn ended(id: u64, user: &str, start_ms: UnixMillis, end_ms: UnixMillis) -> SimSession {
    SimSession::new(SimSession::id_for(id), user, start_ms).ended(end_ms)
}

fn odd_portal() -> PortalSpec {
    PortalSpec::scripted(
        ODD,
        vec![
            // Running before T0: the baseline (active, never counted as started).
            active(0, Some("quote\"d"), T0 - 90 * S - 500),
            active(1, Some("back\\slash"), T0 - 3600 * S),
            active(2, Some(""), T0 - 600 * S),
            active(3, None, T0 - 30 * S),
            // Starts at T0 exactly: a start.
            active(4, Some("new\nline"), T0),
            // Ends at T0: terminated, with its duration in the histogram.
            ended(5, "emoji 😀 ünïcode", T0 - 7200 * S - 250, T0),
            // Starts and ends at T0: started, terminated, a zero duration.
            ended(6, "plain", T0, T0),
            // History of this month (monthly active users only) and of last month (not even that).
            ended(7, "earlier this month", T0 - 2 * DAY, T0 - DAY),
            ended(8, "last month", T0 - 40 * DAY, T0 - 40 * DAY + 3600 * S),
        ],
    )
}

fn plain_portal() -> PortalSpec {
    let mut sessions: Vec<SimSession> = (0..5)
        .map(|i| {
            active(
                i,
                Some(&format!("user{}", i % 3)),
                T0 - (i as i64 + 1) * 45 * S,
            )
        })
        .collect();
    sessions.push(ended(5, "user0", T0 - 1800 * S, T0));
    sessions.push(ended(6, "user3", T0 - 3 * DAY, T0 - 3 * DAY + 20 * 60 * S));
    let mut p = PortalSpec::scripted(PLAIN, sessions);
    p.display_name = "Café \"Ops\" \\ Team".into();
    p.instance_type = "standard.large".into();
    p.max_concurrent_sessions = 25;
    p
}

fn denied_portal() -> PortalSpec {
    let mut p = PortalSpec::scripted(DENIED_PORTAL, vec![active(0, Some("never seen"), T0)]);
    p.faults = Faults::error("AccessDeniedException");
    p
}

fn plan_for(portal_id: &str, labels: &[(&str, &str)]) -> PortalPlan {
    // An hour: the first poll comes within two seconds, the next one long after the test.
    let mut p = plan(portal_id, Duration::from_secs(3600), 2);
    p.labels = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    // Far above the number of users: which users overflow into `__other__` would depend on
    // hash order.
    p.per_user = Some(UserSettings {
        mode: LabelMode::Raw,
        max_users: 1000,
        idle_ttl_ms: 24 * 3_600_000,
    });
    p
}

/// The username of the Active record without `startTime` that the scenario adds to [`ODD`]
/// (`sessionId` "raw-incomplete").
const RAW_USER: &str = "raw \"record\"";

/// Runs the scenario and returns the `workspacesweb_*` exposition in each format, as `/metrics`
/// serves it.
async fn exposition() -> Renderings {
    let clock = Clock::manual(T0);
    set_manual_now_ms(Some(clock.now_ms()));
    let env = start(
        SimConfig::new(14)
            .with_clock(clock)
            .with_portal(odd_portal())
            .with_portal(plain_portal())
            .with_portal(denied_portal()),
    )
    .await;
    // An Active record without startTime: an active session of its user, and an incomplete
    // record. Active, so that the poll's own listing, which reads every Active page, sees it.
    env.sim
        .add_raw_record(
            ODD,
            json!({
                "sessionId": "raw-incomplete",
                "username": RAW_USER,
                "status": "Active",
                "portalArn": format!("arn:aws:workspaces-web:us-east-1:123456789012:portal/{ODD}"),
            }),
        )
        .expect("raw record");
    // As the daemon does at start, on the (pinned) wall clock.
    env.store.status().set_reload(ReloadStatus {
        successful: true,
        success_unix: now_ms() as f64 / 1000.0,
    });
    let plans = vec![
        plan_for(ODD, &[("env", "golden")]),
        plan_for(
            PLAIN,
            &[
                ("env", "golden"),
                ("team", "a \"quoted\" \\ value\nover two lines"),
            ],
        ),
        plan_for(DENIED_PORTAL, &[("env", "golden")]),
    ];
    let sched = Scheduler::start(plans, &env.clients, env.store.clone(), 3).await;
    for id in [ODD, PLAIN, DENIED_PORTAL] {
        wait_portal(&env.store, id, |p| p.polled).await;
    }
    sched.shutdown().await;
    // What the server serves: the cached, compressed rendering, inflated.
    let exposition = workspacesweb_exporter::exposition::Exposition::new(env.store.clone());
    let served = |format| {
        exposition
            .rendered_as(format)
            .main
            .text()
            .expect("exposition decompresses")
    };
    let utf8 = |b| String::from_utf8(b).expect("utf-8 exposition");
    Renderings {
        text: utf8(served(Format::Text)),
        openmetrics: utf8(served(Format::OpenMetrics)),
        protobuf: served(Format::Protobuf),
    }
}

/// Replaces, in place, the values that no fixed clock can pin, keeping every line:
/// - `workspacesweb_poll_duration_seconds` samples: measured with `Instant`; the value (checked
///   to be a finite, non-negative number first) becomes `NaN`.
/// - the `revision` and `rustc_version` labels of `workspacesweb_exporter_build_info`: they
///   depend on the checkout and the toolchain; the values become `REVISION` and `RUSTC_VERSION`.
///   `version` is kept (it changes only with Cargo.toml).
fn normalise(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        if line.starts_with("workspacesweb_poll_duration_seconds{") {
            let (series, value) = line.trim_end().rsplit_once(' ').expect("sample value");
            let v: f64 = value.parse().expect("poll duration is a number");
            assert!(v.is_finite() && v >= 0.0, "poll duration {v}");
            out.push_str(series);
            out.push_str(" NaN\n");
        } else if line.starts_with("workspacesweb_exporter_build_info{") {
            let line = replace_label(line, "revision", "REVISION");
            out.push_str(&replace_label(&line, "rustc_version", "RUSTC_VERSION"));
        } else {
            out.push_str(line);
        }
    }
    out
}

/// `line` with the value of label `name` replaced by `with`.
fn replace_label(line: &str, name: &str, with: &str) -> String {
    let key = format!("{name}=\"");
    let begin = line
        .find(&key)
        .unwrap_or_else(|| panic!("no label {name} in {line}"))
        + key.len();
    let mut end = begin;
    let mut escaped = false;
    for (i, c) in line[begin..].char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '"' => {
                end = begin + i;
                break;
            }
            _ => {}
        }
    }
    format!("{}{with}{}", &line[..begin], &line[end..])
}

/// A readable account of how `actual` differs from `expected`: the lines between their common
/// beginning and common end (so an inserted or removed line shows as itself), at most 20 each.
fn diff(expected: &str, actual: &str) -> String {
    let (e, a): (Vec<&str>, Vec<&str>) = (expected.lines().collect(), actual.lines().collect());
    let head = e.iter().zip(&a).take_while(|(x, y)| x == y).count();
    let tail = e[head..]
        .iter()
        .rev()
        .zip(a[head..].iter().rev())
        .take_while(|(x, y)| x == y)
        .count();
    let mut out = format!("first difference at line {}:\n", head + 1);
    for (sign, lines) in [
        ("-", &e[head..e.len() - tail]),
        ("+", &a[head..a.len() - tail]),
    ] {
        for l in lines.iter().take(20) {
            out.push_str(&format!("{sign} {l}\n"));
        }
        if lines.len() > 20 {
            out.push_str(&format!("{sign} ... {} more lines\n", lines.len() - 20));
        }
    }
    if e == a {
        out = "the lines are the same; only the final newline differs\n".into();
    }
    out
}

/// Compares `actual` with the golden file `path`, or writes it with [`UPDATE`].
fn compare_or_update(path: &std::path::Path, actual: &str) {
    if std::env::var_os(UPDATE).is_some_and(|v| v != "0") {
        std::fs::create_dir_all(path.parent().expect("parent")).expect("create tests/golden");
        std::fs::write(path, actual).expect("write golden file");
        eprintln!("wrote {}", path.display());
    } else {
        let expected = std::fs::read_to_string(path).unwrap_or_else(|e| {
            panic!(
                "cannot read {}: {e}\nCreate it with: {UPDATE}=1 cargo test --test golden",
                path.display()
            )
        });
        assert!(
            expected == actual,
            "the exposition differs from {} (- golden, + now):\n{}\n\
             If the change is intended, regenerate the file with\n  \
             {UPDATE}=1 cargo test --test golden\nand review its diff.",
            path.display(),
            diff(&expected, actual)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exposition_matches_the_golden_file() {
    let renderings = exposition().await;
    let actual = normalise(&renderings.text);
    compare_or_update(&golden_path(), &actual);
    // The golden file is valid exposition (NaN included).
    promtool_check(actual.as_bytes()).expect("promtool accepts the golden exposition");

    // OpenMetrics: the same families, and a strict independent parser accepts it (with the
    // `# EOF` that `process_*` end with when served).
    let om = normalise(&renderings.openmetrics);
    compare_or_update(&golden_file("exposition.openmetrics.txt"), &om);
    let whole = format!("{om}# EOF\n");
    openmetrics_check(whole.as_bytes()).expect("the OpenMetrics parser accepts it");

    let families = protobuf::decode(&renderings.protobuf).expect("delimited MetricFamily messages");
    compare_or_update(
        &golden_file("exposition.protobuf.txt"),
        &normalise_protobuf(&dump_protobuf(&families)),
    );
}

/// The protobuf rendering written out: a line per family (`# name TYPE help`), then a line per
/// series (labels, then `counter V created S`, `gauge V`, or the histogram's count, sum,
/// created timestamp, classic buckets and native schema, zero count, spans and deltas).
fn dump_protobuf(families: &[protobuf::proto::MetricFamily]) -> String {
    use std::fmt::Write as _;
    let ts = |t: &Option<protobuf::proto::Timestamp>| {
        t.as_ref()
            .map_or("-".to_string(), |t| format!("{}.{:09}", t.seconds, t.nanos))
    };
    let mut out = String::new();
    for f in families {
        let kind = f
            .r#type
            .and_then(|t| protobuf::proto::MetricType::try_from(t).ok());
        let _ = writeln!(
            out,
            "# {} {:?} {:?}",
            f.name.as_deref().unwrap_or(""),
            kind,
            f.help.as_deref().unwrap_or("")
        );
        for m in &f.metric {
            let labels: Vec<String> = m
                .label
                .iter()
                .map(|l| {
                    format!(
                        "{}={:?}",
                        l.name.as_deref().unwrap_or(""),
                        l.value.as_deref().unwrap_or("")
                    )
                })
                .collect();
            let _ = write!(out, "{{{}}}", labels.join(","));
            if let Some(c) = &m.counter {
                let _ = write!(
                    out,
                    " counter {:?} created {}",
                    c.value.unwrap_or(f64::NAN),
                    ts(&c.created_timestamp)
                );
            }
            if let Some(g) = &m.gauge {
                let _ = write!(out, " gauge {:?}", g.value.unwrap_or(f64::NAN));
            }
            if let Some(h) = &m.histogram {
                let buckets: Vec<String> = h
                    .bucket
                    .iter()
                    .map(|b| {
                        format!(
                            "{:?}:{}",
                            b.upper_bound.unwrap_or(f64::NAN),
                            b.cumulative_count.unwrap_or(0)
                        )
                    })
                    .collect();
                let spans: Vec<String> = h
                    .positive_span
                    .iter()
                    .map(|s| format!("{}:{}", s.offset.unwrap_or(0), s.length.unwrap_or(0)))
                    .collect();
                let _ = write!(
                    out,
                    " histogram count {} sum {:?} created {} buckets [{}] schema {:?} zero_threshold {:?} zero_count {:?} spans [{}] deltas {:?}",
                    h.sample_count.unwrap_or(0),
                    h.sample_sum.unwrap_or(f64::NAN),
                    ts(&h.created_timestamp),
                    buckets.join(" "),
                    h.schema,
                    h.zero_threshold,
                    h.zero_count,
                    spans.join(" "),
                    h.positive_delta
                );
            }
            out.push('\n');
        }
    }
    out
}

/// [`normalise`] for the dump of [`dump_protobuf`]: the poll durations' gauges and the build's
/// revision and rustc version.
fn normalise_protobuf(dump: &str) -> String {
    let mut out = String::with_capacity(dump.len());
    let mut family = "";
    for line in dump.split_inclusive('\n') {
        if let Some(rest) = line.strip_prefix("# ") {
            family = rest.split(' ').next().unwrap_or("");
            out.push_str(line);
        } else if family == "workspacesweb_poll_duration_seconds" {
            let (series, value) = line.trim_end().rsplit_once(" gauge ").expect("a gauge");
            let v: f64 = value.parse().expect("poll duration is a number");
            assert!(v.is_finite() && v >= 0.0, "poll duration {v}");
            out.push_str(&format!("{series} gauge NaN\n"));
        } else if family == "workspacesweb_exporter_build_info" {
            let line = replace_label(line, "revision", "REVISION");
            out.push_str(&replace_label(&line, "rustc_version", "RUSTC_VERSION"));
        } else {
            out.push_str(line);
        }
    }
    out
}

#[test]
fn normalise_replaces_values_only() {
    let text = "workspacesweb_poll_duration_seconds{portal_id=\"p\"} 0.0123\n\
        workspacesweb_exporter_build_info{version=\"0.1.0\",revision=\"ab\\\"c\",rustc_version=\"rustc 1.89\"} 1\n\
        workspacesweb_up{portal_id=\"p\"} 1\n";
    assert_eq!(
        normalise(text),
        "workspacesweb_poll_duration_seconds{portal_id=\"p\"} NaN\n\
        workspacesweb_exporter_build_info{version=\"0.1.0\",revision=\"REVISION\",rustc_version=\"RUSTC_VERSION\"} 1\n\
        workspacesweb_up{portal_id=\"p\"} 1\n"
    );
}

#[test]
fn diff_shows_inserted_and_changed_lines() {
    let d = diff("a\nb\nc\nd\n", "a\nb\nX\nnew\nd\n");
    assert_eq!(d, "first difference at line 3:\n- c\n+ X\n+ new\n");
}

// ---------------------------------------------------------------------------------------------
// The golden values, derived from the scenario's timeline
// ---------------------------------------------------------------------------------------------

/// 2026-03-01T00:00:00Z and 2026-04-01T00:00:00Z: the UTC month of [`T0`].
const MONTH: (UnixMillis, UnixMillis) = (1_772_323_200_000, 1_775_001_600_000);

/// One portal's accounting as SPEC sections 5 and 8 define it, computed from the sessions the
/// scenario gives the simulator, for a first (and only) poll at [`T0`]: the baseline running
/// before T0 is active but not started; a session counts as started when it starts at or after T0,
/// as terminated when it ends at or after T0 (its duration then goes to the histogram); session
/// seconds cover `[max(start, T0), min(end, T0)]`; monthly users have a session overlapping the
/// month. `raw_active` are the usernames of Active records without `startTime` (active and
/// incomplete, never started).
#[derive(Debug, Default, PartialEq)]
struct Derived {
    active: f64,
    active_users: f64,
    max_age: f64,
    started: f64,
    terminated: f64,
    incomplete: f64,
    session_seconds: f64,
    monthly_users: f64,
    /// Cumulative bucket counts, one per bound, then `+Inf`.
    buckets: Vec<f64>,
    sum: f64,
    count: f64,
    user_active: BTreeMap<String, f64>,
    user_started: BTreeMap<String, f64>,
    user_seconds: BTreeMap<String, f64>,
}

/// The username key of the SPEC: missing or empty is `__unknown__`.
fn user_of(name: Option<&str>) -> String {
    name.filter(|n| !n.is_empty())
        .unwrap_or("__unknown__")
        .to_string()
}

fn derive(sessions: &[SimSession], raw_active: &[&str], bounds: &[f64]) -> Derived {
    let mut d = Derived {
        buckets: vec![0.0; bounds.len() + 1],
        ..Derived::default()
    };
    let mut active_users = BTreeSet::new();
    let mut monthly = BTreeSet::new();
    for s in sessions {
        let user = user_of(s.username.as_deref());
        let latest = s.end_ms.unwrap_or(T0).max(s.start_ms);
        if s.start_ms < MONTH.1 && latest >= MONTH.0 {
            monthly.insert(user.clone());
        }
        if s.end_ms.is_some_and(|e| e < T0) {
            continue; // history: monthly users only
        }
        let started = f64::from(u8::from(s.start_ms >= T0));
        let seconds = (s.end_ms.unwrap_or(T0).min(T0) - s.start_ms.max(T0)).max(0) as f64 / 1e3;
        d.started += started;
        d.session_seconds += seconds;
        *d.user_started.entry(user.clone()).or_default() += started;
        *d.user_seconds.entry(user.clone()).or_default() += seconds;
        match s.end_ms {
            None => {
                d.active += 1.0;
                d.max_age = d.max_age.max((T0 - s.start_ms) as f64 / 1e3);
                *d.user_active.entry(user.clone()).or_default() += 1.0;
                active_users.insert(user);
            }
            Some(end) => {
                let duration = (end - s.start_ms) as f64 / 1e3;
                d.terminated += 1.0;
                d.count += 1.0;
                d.sum += duration;
                let first = bounds.iter().position(|b| duration <= *b);
                for b in &mut d.buckets[first.unwrap_or(bounds.len())..] {
                    *b += 1.0;
                }
            }
        }
    }
    for name in raw_active {
        let user = user_of(Some(name));
        d.active += 1.0;
        d.incomplete += 1.0;
        *d.user_active.entry(user.clone()).or_default() += 1.0;
        d.user_started.entry(user.clone()).or_default();
        d.user_seconds.entry(user.clone()).or_default();
        monthly.insert(user.clone());
        active_users.insert(user);
    }
    d.active_users = active_users.len() as f64;
    d.monthly_users = monthly.len() as f64;
    d
}

/// One sample of the text format: its name, labels (unescaped) and value.
type Sample = (String, BTreeMap<String, String>, f64);

/// The samples of a text exposition, labels unescaped (`\\`, `\"`, `\n`).
fn samples(text: &str) -> Vec<Sample> {
    let mut out = Vec::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let (series, value) = line.rsplit_once(' ').expect("a sample value");
        let (name, mut rest) = series.split_once('{').unwrap_or((series, "}"));
        let mut labels = BTreeMap::new();
        while let Some((key, after)) = rest.split_once("=\"") {
            let (mut value, mut escaped, mut end) = (String::new(), false, after.len());
            for (i, c) in after.char_indices() {
                if escaped {
                    value.push(if c == 'n' { '\n' } else { c });
                    escaped = false;
                } else if c == '\\' {
                    escaped = true;
                } else if c == '"' {
                    end = i;
                    break;
                } else {
                    value.push(c);
                }
            }
            labels.insert(key.trim_start_matches(',').to_string(), value);
            rest = &after[end + 1..];
        }
        out.push((name.to_string(), labels, value.parse().unwrap_or(f64::NAN)));
    }
    out
}

/// What the golden file holds of one portal: the value of each family's sample, by family and,
/// for per-user and histogram families, by `username` or `le`.
fn golden_values(all: &[Sample], portal: &str) -> BTreeMap<(String, String), f64> {
    all.iter()
        .filter(|(_, l, _)| l.get("portal_id").is_some_and(|p| p == portal))
        .map(|(name, l, v)| {
            let key = l
                .get("username")
                .or(l.get("le"))
                .cloned()
                .unwrap_or_default();
            (
                (name.trim_start_matches("workspacesweb_").to_string(), key),
                *v,
            )
        })
        .collect()
}

/// The golden file's counts, sums, bucket counts and per-user values are what the timeline of
/// the scenario gives by the SPEC's rules, computed here without the exporter's code: the file is
/// not only approved by regeneration.
#[test]
fn golden_values_follow_from_the_timeline() {
    let text = std::fs::read_to_string(golden_path()).expect("the golden file");
    let all = samples(&text);
    let cases = [
        (ODD, odd_portal(), vec![RAW_USER]),
        (PLAIN, plain_portal(), vec![]),
    ];
    for (portal, spec, raw) in cases {
        let workspacesweb_sim::SessionModel::Scripted(sessions) = &spec.model else {
            panic!("scripted portal");
        };
        let bounds = plan_for(portal, &[]).duration_buckets;
        let d = derive(sessions, &raw, &bounds);
        let mut want: BTreeMap<(String, String), f64> = [
            ("active_sessions", d.active),
            ("active_users", d.active_users),
            ("active_session_max_age_seconds", d.max_age),
            ("sessions_started_total", d.started),
            ("sessions_terminated_total", d.terminated),
            ("session_seconds_total", d.session_seconds),
            ("session_records_incomplete_total", d.incomplete),
            ("monthly_active_users", d.monthly_users),
            ("session_duration_seconds_sum", d.sum),
            ("session_duration_seconds_count", d.count),
        ]
        .into_iter()
        .map(|(name, v)| ((name.to_string(), String::new()), v))
        .collect();
        let les = bounds
            .iter()
            .map(f64::to_string)
            .chain(["+Inf".to_string()]);
        for (le, n) in les.zip(&d.buckets) {
            want.insert(("session_duration_seconds_bucket".into(), le), *n);
        }
        for (family, per_user) in [
            ("user_active_sessions", &d.user_active),
            ("user_sessions_started_total", &d.user_started),
            ("user_session_seconds_total", &d.user_seconds),
        ] {
            for (user, v) in per_user {
                want.insert((family.to_string(), user.clone()), *v);
            }
        }
        let got = golden_values(&all, portal);
        for (key, value) in &want {
            assert_eq!(got.get(key), Some(value), "{portal}: {key:?}");
        }
        // Nothing more of those families in the file (no user, no bucket the timeline lacks).
        let families: BTreeSet<&str> = want.keys().map(|(f, _)| f.as_str()).collect();
        let extra: Vec<_> = got
            .keys()
            .filter(|k| families.contains(k.0.as_str()) && !want.contains_key(*k))
            .collect();
        assert!(
            extra.is_empty(),
            "{portal}: not from the timeline: {extra:?}"
        );
    }
}

/// The native buckets, count and created timestamps of the protobuf golden file are what the
/// scenario's timeline gives, computed here without the exporter's code: each terminated
/// session's duration in the schema-3 bucket `i` with `2^((i-1)/8) < d <= 2^(i/8)` (or the zero
/// bucket for 0 s), and T0 as the created timestamp of every portal counter and histogram.
#[test]
fn protobuf_native_buckets_follow_from_the_timeline() {
    let dump = std::fs::read_to_string(golden_file("exposition.protobuf.txt")).expect("golden");
    let t0 = format!("{}.{:09}", T0 / 1000, (T0 % 1000) * 1_000_000);
    for (portal, spec) in [(ODD, odd_portal()), (PLAIN, plain_portal())] {
        let workspacesweb_sim::SessionModel::Scripted(sessions) = &spec.model else {
            panic!("scripted portal");
        };
        let mut want: BTreeMap<i32, u64> = BTreeMap::new();
        let (mut zero, mut count) = (0u64, 0u64);
        for s in sessions {
            let Some(end) = s.end_ms.filter(|e| *e >= T0) else {
                continue;
            };
            count += 1;
            let d = (end - s.start_ms) as f64 / 1000.0;
            if d == 0.0 {
                zero += 1;
            } else {
                *want.entry((d.log2() * 8.0).ceil() as i32).or_default() += 1;
            }
        }
        let line = dump
            .lines()
            .find(|l| l.contains(&format!("portal_id=\"{portal}\"")) && l.contains(" histogram "))
            .expect("the portal's duration histogram");
        let field = |name: &str| {
            let rest = &line[line.find(&format!(" {name} ")).expect(name) + name.len() + 2..];
            if let Some(list) = rest.strip_prefix('[') {
                list[..list.find(']').expect("]")].to_string()
            } else {
                rest.split(' ').next().unwrap_or("").to_string()
            }
        };
        assert_eq!(field("count"), count.to_string(), "{portal}");
        assert_eq!(field("created"), t0, "{portal}");
        assert_eq!(field("schema"), "Some(3)", "{portal}");
        assert_eq!(field("zero_count"), format!("Some({zero})"), "{portal}");
        // Spans and deltas back to buckets.
        let deltas: Vec<i64> = field("deltas")
            .split(", ")
            .filter(|d| !d.is_empty())
            .map(|d| d.parse().expect("delta"))
            .collect();
        let mut got = BTreeMap::new();
        let (mut index, mut value, mut deltas) = (0i32, 0i64, deltas.into_iter());
        for span in field("spans").split(' ').filter(|s| !s.is_empty()) {
            let (offset, length) = span.split_once(':').expect("offset:length");
            index += offset.parse::<i32>().expect("offset");
            for _ in 0..length.parse::<u32>().expect("length") {
                value += deltas.next().expect("a delta per bucket");
                if value > 0 {
                    got.insert(index, value as u64);
                }
                index += 1;
            }
        }
        assert_eq!(got, want, "{portal}");
        // Every portal counter counts from T0.
        for family in [
            "sessions_started_total",
            "sessions_terminated_total",
            "session_seconds_total",
        ] {
            let mut in_family = false;
            let mut seen = false;
            for l in dump.lines() {
                if let Some(rest) = l.strip_prefix("# ") {
                    in_family = rest.starts_with(&format!("workspacesweb_{family} "));
                } else if in_family && l.contains(&format!("portal_id=\"{portal}\"")) {
                    assert!(l.ends_with(&format!("created {t0}")), "{l}");
                    seen = true;
                }
            }
            assert!(seen, "{portal} {family}");
        }
    }
}
