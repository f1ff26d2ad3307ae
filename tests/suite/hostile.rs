//! Hostile or broken API responses, injected through the simulator (and a raw socket), against the
//! real poller and SDK: each fault must fail the poll (`up` 0, `error="other"`) or count the record
//! as incomplete, never panic, never read unbounded data, and the portal must recover once the fault
//! is gone (a later poll succeeds with the right values).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::common::*;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use workspacesweb_exporter::aws::{Clients, GET_SESSION, LIST_SESSIONS, MAX_RESPONSE_BYTES};
use workspacesweb_exporter::clock::now_ms;
use workspacesweb_exporter::poll::{PortalPlan, Scheduler};
use workspacesweb_exporter::snapshot::{PortalSnapshot, Store};
use workspacesweb_exporter::users::{LabelMode, UserSettings};
use workspacesweb_sim::{
    Clock, Faults, PortalSpec, SessionStatus, SimConfig, SimSession, Simulator,
};

/// Polls follow each other quickly; the timeout is only a hang guard (no timing assertions).
const INTERVAL: Duration = Duration::from_millis(250);

/// Three active sessions of three users.
fn portal(base: i64) -> PortalSpec {
    let sessions = (0..3)
        .map(|i| {
            SimSession::new(
                SimSession::id_for(i),
                format!("user{i}"),
                base - 60_000 * (i as i64 + 1),
            )
        })
        .collect();
    PortalSpec::scripted(GOOD, sessions)
}

fn fast_plan() -> PortalPlan {
    let mut p = plan(GOOD, INTERVAL, 100);
    p.timeout = Duration::from_secs(20);
    p
}

/// A simulator with [`portal`] under `faults` from the start, and a scheduler polling it.
async fn run(faults: Faults, plan: PortalPlan) -> (Env, Scheduler, i64) {
    run_with(faults, plan, |_, _| {}).await
}

/// Like [`run`], with `setup(sim, base)` (e.g. raw records) done before the first poll.
async fn run_with(
    faults: Faults,
    plan: PortalPlan,
    setup: impl FnOnce(&Simulator, i64),
) -> (Env, Scheduler, i64) {
    let base = now_ms();
    let mut spec = portal(base);
    spec.faults = faults;
    let env = start(
        SimConfig::new(7)
            .with_clock(Clock::manual(base))
            .with_portal(spec),
    )
    .await;
    setup(&env.sim, base);
    let sched = Scheduler::start(vec![plan], &env.clients, env.store.clone(), 4).await;
    (env, sched, base)
}

fn text(store: &Store) -> String {
    String::from_utf8(
        store
            .scrape_text()
            .expect("exposition decompresses")
            .to_vec(),
    )
    .expect("exposition is UTF-8")
}

/// The value of one exposed sample of the test portal (`extra` labels after `env`).
fn sample(store: &Store, name: &str, extra: &str) -> Option<f64> {
    let prefix = format!("{name}{{portal_id=\"{GOOD}\",env=\"test\"{extra}}} ");
    text(store)
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map(|v| v.parse().expect("numeric sample"))
}

fn other_errors(store: &Store, operation: &str) -> Option<f64> {
    sample(
        store,
        "workspacesweb_api_request_errors_total",
        &format!(",operation=\"{operation}\",error=\"other\""),
    )
}

/// Waits for the first failed poll and checks what every fault of this kind shows: `up` 0, no
/// state ever published, and `error="other"` both in the snapshot and in the exposition.
async fn first_poll_fails(env: &Env) -> Arc<PortalSnapshot> {
    let p = wait_portal(&env.store, GOOD, |p| p.polled).await;
    assert!(!p.up, "the poll should fail: {p:?}");
    assert_eq!(p.active, None, "nothing was ever published");
    assert_eq!(p.totals, None);
    let other = errors(&p, LIST_SESSIONS, "other");
    assert!(other >= 1, "{:?}", p.api_errors);
    assert_eq!(
        p.api_errors.len(),
        1,
        "only error=\"other\": {:?}",
        p.api_errors
    );
    assert_eq!(sample(&env.store, "workspacesweb_up", ""), Some(0.0));
    let exposed = other_errors(&env.store, LIST_SESSIONS).expect("error series exposed");
    assert!(exposed >= other as f64);
    assert!(
        env.store.status().ready(),
        "a failed first poll still makes the exporter ready"
    );
    p
}

/// Removes the faults and waits for a good poll: the three sessions, listed once. They started
/// before the exporter's first successful poll (T0): the baseline, active but never started.
async fn recovers(env: &Env) -> Arc<PortalSnapshot> {
    env.sim.set_faults(GOOD, Faults::none()).expect("portal");
    env.sim.clear_raw_records(GOOD).expect("portal");
    let p = wait_portal(&env.store, GOOD, |p| p.up).await;
    assert_eq!(active(&p).sessions, 3);
    assert_eq!(active(&p).users, 3);
    let totals = p.totals.clone().expect("counters after a good poll");
    assert_eq!(
        totals.started, 0,
        "the three sessions ran before T0: baseline, not starts"
    );
    assert_eq!(totals.incomplete, 0);
    assert!(p.last_error.is_none());
    assert_eq!(sample(&env.store, "workspacesweb_up", ""), Some(1.0));
    assert_eq!(
        sample(&env.store, "workspacesweb_active_sessions", ""),
        Some(3.0)
    );
    p
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_json_fails_the_poll_without_retries() {
    let (env, sched, _) = run(
        Faults::body(r#"{"sessions":[{"sessionId":"abc","status":"Act"#),
        fast_plan(),
    )
    .await;
    let p = first_poll_fails(&env).await;
    // A deserialization error is not retried: one request per failed poll, each an error.
    assert_eq!(
        requests(&p, LIST_SESSIONS),
        errors(&p, LIST_SESSIONS, "other")
    );
    assert!(
        p.last_error
            .as_deref()
            .unwrap_or("")
            .contains("ListSessions"),
        "{:?}",
        p.last_error
    );
    recovers(&env).await;
    sched.shutdown().await;
}

/// A broken or hostile endpoint can answer with any error code: only the codes the service model,
/// STS and the SDKs define become label values; an invented one is `other`, so it cannot create
/// series at will.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invented_error_codes_are_other_not_new_series() {
    let (env, sched, _) = run(Faults::error("InventedByAnEndpoint42"), fast_plan()).await;
    let p = first_poll_fails(&env).await;
    assert!(
        errors(&p, LIST_SESSIONS, "other") >= 1,
        "{:?}",
        p.api_errors
    );
    assert!(
        p.api_errors
            .keys()
            .all(|(_, code)| code != "InventedByAnEndpoint42"),
        "{:?}",
        p.api_errors
    );
    assert!(!text(&env.store).contains("InventedByAnEndpoint42"));
    assert_eq!(p.last_error_code.as_deref(), Some("ListSessions other"));
    recovers(&env).await;
    sched.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listing_without_sessions_member_fails_instead_of_reading_as_empty() {
    for body in [
        "{}",
        r#"{"sessions":null}"#,
        r#"{"nextToken":"abc"}"#,
        "[]",
        "null",
    ] {
        let (env, sched, _) = run(Faults::body(body), fast_plan()).await;
        let p = first_poll_fails(&env).await;
        assert_eq!(
            requests(&p, LIST_SESSIONS),
            errors(&p, LIST_SESSIONS, "other"),
            "{body}"
        );
        if body.starts_with('{') {
            assert!(
                p.last_error
                    .as_deref()
                    .unwrap_or("")
                    .contains("no `sessions` member"),
                "{body}: {:?}",
                p.last_error
            );
        }
        recovers(&env).await;
        sched.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_sessions_after_a_good_poll_keeps_the_last_values() {
    let (env, sched, _) = run(Faults::none(), fast_plan()).await;
    recovers(&env).await;
    // `{}` would read as "no active sessions" through the SDK's error correction.
    env.sim
        .set_faults(GOOD, Faults::body("{}"))
        .expect("portal");
    let p = wait_portal(&env.store, GOOD, |p| !p.up).await;
    assert_eq!(active(&p).sessions, 3, "last values kept, not zeroed");
    assert_eq!(p.totals.as_ref().map(|t| t.terminated), Some(0));
    assert!(errors(&p, LIST_SESSIONS, "other") >= 1);
    assert_eq!(
        sample(&env.store, "workspacesweb_active_sessions", ""),
        Some(3.0)
    );
    let back = recovers(&env).await;
    assert_eq!(back.totals.as_ref().map(|t| t.terminated), Some(0));
    sched.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_session_without_session_member_is_an_error_not_a_termination() {
    let (env, sched, _) = run(Faults::none(), fast_plan()).await;
    recovers(&env).await;
    // Every answer becomes a valid empty listing: the three sessions vanish from the Active
    // listing, and the GetSession calls that should resolve them get no `session` member (which
    // the SDK reads as "no such session", i.e. terminated without a record).
    env.sim
        .set_faults(GOOD, Faults::body(r#"{"sessions":[]}"#))
        .expect("portal");
    let p = wait_portal(&env.store, GOOD, |p| !p.up).await;
    assert!(errors(&p, GET_SESSION, "other") >= 1, "{:?}", p.api_errors);
    assert_eq!(errors(&p, LIST_SESSIONS, "other"), 0, "{:?}", p.api_errors);
    let totals = p.totals.clone().expect("totals");
    assert_eq!(totals.terminated, 0, "nothing was terminated: {totals:?}");
    assert_eq!(totals.incomplete, 0);
    assert_eq!(active(&p).sessions, 3, "last values kept");
    assert!(
        p.last_error.as_deref().unwrap_or("").contains("GetSession"),
        "{:?}",
        p.last_error
    );
    let back = recovers(&env).await;
    assert_eq!(back.totals.as_ref().map(|t| t.terminated), Some(0));
    sched.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_over_the_limit_is_refused_without_reading_or_retrying_it() {
    let ten_mb = 10 << 20;
    let (env, sched, _) = run(Faults::padded(ten_mb), fast_plan()).await;
    let p = first_poll_fails(&env).await;
    assert_eq!(
        requests(&p, LIST_SESSIONS),
        errors(&p, LIST_SESSIONS, "other"),
        "not retried"
    );
    assert!(
        p.last_error.as_deref().unwrap_or("").contains("exceeds"),
        "{:?}",
        p.last_error
    );
    recovers(&env).await;
    sched.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_but_valid_body_under_the_limit_is_read() {
    let (env, sched, _) = run(Faults::padded(MAX_RESPONSE_BYTES / 2), fast_plan()).await;
    let p = wait_portal(&env.store, GOOD, |p| p.polled).await;
    assert!(p.up, "{:?}", p.last_error);
    assert_eq!(active(&p).sessions, 3);
    assert!(p.api_errors.is_empty(), "{:?}", p.api_errors);
    sched.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn never_ending_paginator_stops_at_max_pages() {
    let mut plan = fast_plan();
    plan.max_pages = 5;
    let (env, sched, _) = run(Faults::endless_pages(), plan).await;
    let p = first_poll_fails(&env).await;
    // Every page was answered; the poller gave up after max_pages of them, once per poll.
    assert_eq!(
        requests(&p, LIST_SESSIONS),
        5 * errors(&p, LIST_SESSIONS, "other")
    );
    assert!(
        p.last_error
            .as_deref()
            .unwrap_or("")
            .contains("max_pages=5"),
        "{:?}",
        p.last_error
    );
    recovers(&env).await;
    sched.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_token_is_detected() {
    let faults = Faults {
        repeat_next_token: true,
        ..Faults::none()
    };
    let (env, sched, _) = run(faults, fast_plan()).await;
    let p = first_poll_fails(&env).await;
    // Page 1 hands out a token, page 2 hands it out again: two requests per failed poll.
    assert_eq!(
        requests(&p, LIST_SESSIONS),
        2 * errors(&p, LIST_SESSIONS, "other")
    );
    assert!(
        p.last_error.as_deref().unwrap_or("").contains("repeated"),
        "{:?}",
        p.last_error
    );
    recovers(&env).await;
    sched.shutdown().await;
}

/// A wire record of an active session with these raw bytes as its `username` value.
fn record_with_username(id: &str, start_ms: i64, username_json: &[u8]) -> Vec<u8> {
    let mut r = format!(
        r#"{{"sessionId":"{id}","status":"Active","startTime":{},"username":"#,
        start_ms as f64 / 1000.0
    )
    .into_bytes();
    r.extend_from_slice(username_json);
    r.push(b'}');
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_utf8_usernames_fail_the_poll() {
    for username in [
        &b"\"caf\xe9\""[..],        // Latin-1 byte
        &b"\"\xff\xfe\xfd\""[..],   // never valid in UTF-8
        &b"\"\xed\xa0\x80\""[..],   // an encoded surrogate
        &b"\"\\ud800\""[..],        // a lone surrogate escape
        &b"\"\\udc00\\ud800\""[..], // a reversed pair
    ] {
        let (env, sched, _) = run_with(Faults::none(), fast_plan(), |sim, base| {
            sim.add_raw_record_bytes(
                GOOD,
                record_with_username(&SimSession::id_for(99), base - 1000, username),
            )
            .expect("portal");
        })
        .await;
        let p = first_poll_fails(&env).await;
        assert_eq!(
            requests(&p, LIST_SESSIONS),
            errors(&p, LIST_SESSIONS, "other"),
            "{}",
            String::from_utf8_lossy(username)
        );
        recovers(&env).await;
        sched.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_username_counts_as_incomplete_and_never_becomes_a_label() {
    let mut plan = fast_plan();
    plan.per_user = Some(UserSettings {
        mode: LabelMode::Raw,
        max_users: 100,
        idle_ttl_ms: 86_400_000,
    });
    // The malformed records start after T0: were they taken for sessions, they would count as
    // started (the three scripted sessions, which ran before T0, are the baseline and do not).
    let (env, sched, _) = run_with(Faults::none(), plan, |sim, base| {
        sim.add_raw_record(
            GOOD,
            json!({
                "sessionId": SimSession::id_for(99),
                "username": "x".repeat(100 * 1024),
                "status": "Active",
                "startTime": (base + 3_600_000) as f64 / 1000.0,
            }),
        )
        .expect("portal");
        // An over-long sessionId too (it would otherwise become a ledger key).
        sim.add_raw_record(
            GOOD,
            json!({
                "sessionId": "s".repeat(64 * 1024),
                "username": "fine",
                "status": "Active",
                "startTime": (base + 3_600_000 + 1000) as f64 / 1000.0,
            }),
        )
        .expect("portal");
    })
    .await;
    let p = wait_portal(&env.store, GOOD, |p| p.up).await;
    let totals = p.totals.clone().expect("totals");
    assert_eq!(totals.incomplete, 2, "{totals:?}");
    assert_eq!(totals.started, 0, "the malformed records are not sessions");
    assert_eq!(totals.terminated, 0);
    assert_eq!(active(&p).sessions, 3);
    assert!(
        p.api_errors.is_empty(),
        "the poll succeeded: {:?}",
        p.api_errors
    );
    assert_eq!(
        sample(
            &env.store,
            "workspacesweb_session_records_incomplete_total",
            ""
        ),
        Some(2.0)
    );
    // Later polls see the same records: still counted once.
    let later = wait_portal(&env.store, GOOD, |q| {
        q.last_success_unix > p.last_success_unix
    })
    .await;
    assert_eq!(later.totals.as_ref().map(|t| t.incomplete), Some(2));
    let t = text(&env.store);
    assert!(
        !t.contains("xxxxxxxx"),
        "the huge name never becomes a label"
    );
    assert!(!t.contains("ssssssss"));
    assert!(
        t.len() < 64 * 1024,
        "exposition stays small: {} bytes",
        t.len()
    );
    assert!(t.contains("username=\"user0\""));
    sched.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_enum_values_count_as_incomplete_and_the_poll_succeeds() {
    let (env, sched, _) = run_with(Faults::none(), fast_plan(), |sim, base| {
        // Listed by a server whose status filter lets them through; they start after T0 (older
        // records of any kind are history, outside the counters).
        for (i, status) in ["Paused", "", "active", "TERMINATED"].iter().enumerate() {
            sim.add_raw_record_unfiltered(
                GOOD,
                json!({
                    "sessionId": SimSession::id_for(100 + i as u64),
                    "username": "u",
                    "status": status,
                    "startTime": (base + 3_600_000) as f64 / 1000.0,
                })
                .to_string(),
            )
            .expect("portal");
        }
    })
    .await;
    let p = wait_portal(&env.store, GOOD, |p| p.up).await;
    let totals = p.totals.clone().expect("totals");
    assert_eq!(totals.incomplete, 4, "{totals:?}");
    // The unknown-status records start after T0 but are not sessions; the three scripted sessions
    // ran before T0 (baseline, not starts).
    assert_eq!(totals.started, 0);
    assert_eq!(active(&p).sessions, 3);
    assert!(p.api_errors.is_empty(), "{:?}", p.api_errors);
    assert_eq!(
        sample(
            &env.store,
            "workspacesweb_session_records_incomplete_total",
            ""
        ),
        Some(4.0)
    );
    sched.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrongly_typed_or_absurd_fields() {
    // Wrong JSON types fail the page (the SDK cannot read it): the poll fails with error="other".
    let id = SimSession::id_for(99);
    for record in [
        json!({"sessionId": id, "status": 42, "startTime": 1}).to_string(),
        json!({"sessionId": 12345, "status": "Active", "startTime": 1}).to_string(),
        json!({"sessionId": id, "status": "Active", "startTime": "yesterday"}).to_string(),
        json!({"sessionId": id, "status": "Active", "username": ["a"]}).to_string(),
        json!({"sessionId": id, "status": "Active", "startTime": {"$date": 1}}).to_string(),
        // Beyond f64.
        format!(r#"{{"sessionId":"{id}","status":"Active","startTime":1e400}}"#),
    ] {
        let rec = record.clone();
        let (env, sched, _) = run_with(Faults::none(), fast_plan(), move |sim, _| {
            sim.add_raw_record_unfiltered(GOOD, rec).expect("portal");
        })
        .await;
        let p = first_poll_fails(&env).await;
        assert_eq!(
            requests(&p, LIST_SESSIONS),
            errors(&p, LIST_SESSIONS, "other"),
            "{record}"
        );
        recovers(&env).await;
        sched.shutdown().await;
    }
    // Absurd but well-typed times: no panic, the poll succeeds; the record is a session or an
    // incomplete record, and every gauge stays finite.
    let (env, sched, _) = run_with(Faults::none(), fast_plan(), |sim, base| {
        for (i, (start, end)) in [
            (1e300, None),
            (-1e300, Some(1e300)),
            (-9.3e15, None),
            ((base as f64) / 1000.0, Some(1.0)),
            (1.7e308, Some(-1.7e308)),
        ]
        .into_iter()
        .enumerate()
        {
            let mut r = json!({
                "sessionId": SimSession::id_for(200 + i as u64),
                "status": if end.is_some() { "Terminated" } else { "Active" },
                "startTime": start,
            });
            if let Some(e) = end {
                r["endTime"] = json!(e);
            }
            sim.add_raw_record(GOOD, r).expect("portal");
        }
    })
    .await;
    let p = wait_portal(&env.store, GOOD, |p| p.polled).await;
    assert!(p.up, "{:?}", p.last_error);
    let t = text(&env.store);
    assert!(!t.contains("NaN"), "{t}");
    let a = active(&p);
    assert!(a.max_age_seconds.is_finite());
    // Times beyond the i64 millisecond range read as missing: the four records with such a
    // startTime are untrackable (incomplete); the one that ends before it starts and before T0 is
    // history. The two active ones with an id are still listed in the gauges.
    assert_eq!(a.sessions, 5, "{a:?}");
    let totals = p.totals.clone().expect("totals");
    // None of the absurd records is a start (one starting at 1e300 s would be, were it read as a
    // far-future time); the three scripted sessions ran before T0: baseline, not starts.
    assert_eq!(totals.started, 0, "{totals:?}");
    assert_eq!(totals.incomplete, 4, "{totals:?}");
    assert_eq!(totals.durations.count, 0);
    sched.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_time_before_2020_is_incomplete_not_a_50_year_old_session() {
    // startTime 0 (1970) and 2019-12-31T23:59:59Z: WorkSpaces Web did not exist. Without the
    // bound, the oldest active session was 56 years old (active_session_max_age_seconds ~1.8e9).
    let (env, sched, _) = run_with(Faults::none(), fast_plan(), |sim, _| {
        for (i, start) in [0.0, 1_577_836_799.0].into_iter().enumerate() {
            let r = json!({
                "sessionId": SimSession::id_for(300 + i as u64),
                "status": "Active",
                "startTime": start,
                "username": "ancient",
            });
            sim.add_raw_record(GOOD, r).expect("portal");
        }
    })
    .await;
    let p = wait_portal(&env.store, GOOD, |p| p.polled).await;
    assert!(p.up, "{:?}", p.last_error);
    let a = active(&p);
    // Listed, so in the gauges; but their age is not known.
    assert_eq!(a.sessions, 5, "{a:?}");
    assert!(a.max_age_seconds < 86_400.0, "{a:?}");
    let totals = p.totals.clone().expect("totals");
    assert_eq!(totals.incomplete, 2, "{totals:?}");
    sched.shutdown().await;
}

/// How a raw-socket server misbehaves after reading a request head.
#[derive(Clone, Copy)]
enum Misbehaviour {
    /// `200`, chunked, a JSON prefix then whitespace forever.
    EndlessChunked,
    /// `200` with a `Content-Length` larger than the body, then close.
    Truncated,
}

/// A raw HTTP/1.1 server on loopback; counts the body bytes it managed to write.
async fn raw_server(how: Misbehaviour) -> (String, Arc<AtomicU64>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let written = Arc::new(AtomicU64::new(0));
    let counter = written.clone();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let counter = counter.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match sock.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                match how {
                    Misbehaviour::EndlessChunked => {
                        let start = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n";
                        if sock.write_all(start).await.is_err() {
                            return;
                        }
                        let mut chunk = format!("{:x}\r\n", 65536).into_bytes();
                        let mut data = b"{\"sessions\":[".to_vec();
                        data.resize(65536, b' ');
                        chunk.extend_from_slice(&data);
                        chunk.extend_from_slice(b"\r\n");
                        // Until the client hangs up (or a generous cap, so that a broken
                        // client fails the test rather than hanging it).
                        while counter.load(Ordering::Relaxed) < 1 << 30 {
                            if sock.write_all(&chunk).await.is_err() {
                                return;
                            }
                            counter.fetch_add(65536, Ordering::Relaxed);
                        }
                    }
                    Misbehaviour::Truncated => {
                        let _ = sock
                            .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n{\"sessions\":[")
                            .await;
                        counter.fetch_add(13, Ordering::Relaxed);
                    }
                }
            });
        }
    });
    (url, written)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endless_chunked_body_from_a_raw_socket_is_cut_at_the_limit() {
    let (url, written) = raw_server(Misbehaviour::EndlessChunked).await;
    let clients = Clients::with_static_credentials("us-east-1", &url).await;
    let store = Arc::new(Store::new());
    let mut plan = fast_plan();
    plan.interval = Duration::from_secs(3600);
    let sched = Scheduler::start(vec![plan], &clients, store.clone(), 4).await;
    let p = wait_portal(&store, GOOD, |p| p.polled).await;
    sched.shutdown().await;
    assert!(!p.up);
    // Read up to the limit once, then refused: not retried.
    assert_eq!(requests(&p, LIST_SESSIONS), 1, "{:?}", p.api_errors);
    assert_eq!(errors(&p, LIST_SESSIONS, "other"), 1);
    let sent = written.load(Ordering::Relaxed);
    assert!(
        sent >= MAX_RESPONSE_BYTES as u64 / 2 && sent < 64 << 20,
        "the server wrote {sent} bytes before the client hung up"
    );
    assert_eq!(
        store.portal(GOOD).map(|p| p.up),
        Some(false),
        "the process is alive and still publishing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_body_from_a_raw_socket_fails_the_poll() {
    let (url, _) = raw_server(Misbehaviour::Truncated).await;
    let clients = Clients::with_static_credentials("us-east-1", &url).await;
    let store = Arc::new(Store::new());
    let mut plan = fast_plan();
    plan.interval = Duration::from_secs(3600);
    let sched = Scheduler::start(vec![plan], &clients, store.clone(), 4).await;
    let p = wait_portal(&store, GOOD, |p| p.polled).await;
    sched.shutdown().await;
    assert!(!p.up);
    // A transient read error: the SDK retries (3 attempts), each one counted as an error.
    let n = requests(&p, LIST_SESSIONS);
    assert_eq!(n, 3, "{:?}", p.api_errors);
    assert_eq!(p.api_errors.values().sum::<u64>(), n, "{:?}", p.api_errors);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn never_ending_backfill_is_bounded_and_restarted() {
    let base = now_ms();
    let mut spec = portal(base);
    // An old terminated session: the poll's own terminated scan stops on its first page (below the
    // watermark), while the monthly-users backfill scans on, down to the month start.
    if let workspacesweb_sim::SessionModel::Scripted(s) = &mut spec.model {
        s.push(
            SimSession::new(SimSession::id_for(50), "old", base - 7_200_000)
                .ended(base - 3_600_000),
        );
    }
    spec.faults = Faults::endless_pages().only_for(SessionStatus::Terminated);
    let env = start(
        SimConfig::new(8)
            .with_clock(Clock::manual(base))
            .with_portal(spec),
    )
    .await;
    let mut plan = fast_plan();
    plan.max_pages = 5;
    let sched = Scheduler::start(vec![plan], &env.clients, env.store.clone(), 4).await;
    // Two aborted backfill scans: the second proves the scan starts again instead of giving up.
    let p = wait_portal(&env.store, GOOD, |p| errors(p, LIST_SESSIONS, "other") >= 2).await;
    assert!(p.up, "the polls themselves succeed: {:?}", p.last_error);
    assert_eq!(active(&p).sessions, 3);
    assert_eq!(
        p.monthly_active_users, None,
        "never complete, never published"
    );
    // Per cycle: one Active page, one Terminated page (also the backfill's first), then the
    // backfill's next pages up to max_pages in all.
    assert_eq!(
        requests(&p, LIST_SESSIONS),
        6 * errors(&p, LIST_SESSIONS, "other")
    );
    // Fixed paginator: the backfill completes.
    env.sim.set_faults(GOOD, Faults::none()).expect("portal");
    let done = wait_portal(&env.store, GOOD, |p| p.monthly_active_users.is_some()).await;
    assert!(done.up);
    assert_eq!(done.monthly_active_users, Some(4));
    sched.shutdown().await;
}
