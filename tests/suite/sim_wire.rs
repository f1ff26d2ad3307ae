//! Wire faithfulness of the simulator, proven with the real `aws-sdk-workspacesweb` client.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use aws_sdk_workspacesweb::Client;
use aws_sdk_workspacesweb::config::retry::RetryConfig;
use aws_sdk_workspacesweb::config::{Credentials, Region};
use aws_sdk_workspacesweb::operation::list_sessions::ListSessionsError;
use aws_sdk_workspacesweb::primitives::DateTime;
use aws_sdk_workspacesweb::types::{SessionSortBy, SessionStatus, SessionSummary};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use workspacesweb_sim::{
    Clock, Faults, GeneratedModel, PortalSpec, RunningSim, SessionModel, SimConfig, SimSession,
    Simulator, operation,
};

/// 2025-11-28 12:00:00 UTC.
const T0: i64 = 1_764_331_200_000;
const MIN: i64 = 60_000;

fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

fn portal_id(n: u32) -> String {
    format!("{n:08x}-0000-4000-8000-00000000abcd")
}

fn client_in(running: &RunningSim, region: &str) -> Client {
    let conf = aws_sdk_workspacesweb::Config::builder()
        .behavior_version_latest()
        .region(Region::new(region.to_string()))
        .credentials_provider(Credentials::new("AKID", "SECRET", None, None, "test"))
        .endpoint_url(running.endpoint_url())
        .retry_config(RetryConfig::disabled())
        .build();
    Client::from_conf(conf)
}

fn client(running: &RunningSim) -> Client {
    client_in(running, "us-east-1")
}

/// SDK timestamps come from f64 seconds: round to the millisecond (the SDK's `to_millis` floors).
fn ms(t: Option<&DateTime>) -> Option<i64> {
    t.map(|t| t.secs() * 1000 + (i64::from(t.subsec_nanos()) + 500_000) / 1_000_000)
}

/// The SDK record as a `SimSession` (end kept only when present).
fn from_sdk(s: &SessionSummary) -> SimSession {
    SimSession {
        id: s.session_id().unwrap_or_default().to_string(),
        username: s.username().map(str::to_string),
        start_ms: ms(s.start_time()).unwrap_or(-1),
        end_ms: ms(s.end_time()),
    }
}

/// A scripted portal: `active` running sessions, `terminated` ended ones, `future` not yet started.
fn scripted(active: u64, terminated: u64, future: u64) -> Vec<SimSession> {
    let mut v = Vec::new();
    for i in 0..active {
        v.push(SimSession::new(
            SimSession::id_for(i),
            format!("user{}", i % 17),
            T0 - 1000 - i as i64 * 1000,
        ));
    }
    for i in 0..terminated {
        let n = 1_000_000 + i;
        let start = T0 - 3_600_000 - i as i64 * 7_000;
        v.push(
            SimSession::new(SimSession::id_for(n), format!("user{}", i % 5), start)
                .ended(start + 600_000),
        );
    }
    for i in 0..future {
        v.push(SimSession::new(
            SimSession::id_for(2_000_000 + i),
            "later",
            T0 + 60_000 + i as i64,
        ));
    }
    v
}

async fn start(cfg: SimConfig) -> (Simulator, RunningSim) {
    let sim = Simulator::new(cfg);
    let running = sim.start(loopback()).await.unwrap();
    (sim, running)
}

async fn start_scripted(sessions: Vec<SimSession>) -> (Simulator, RunningSim, Client, String) {
    let id = portal_id(1);
    let cfg = SimConfig::new(7)
        .with_clock(Clock::manual(T0))
        .with_portal(PortalSpec::scripted(id.clone(), sessions));
    let (sim, running) = start(cfg).await;
    let c = client(&running);
    (sim, running, c, id)
}

/// All pages of a listing, fetched by hand; returns the pages' sizes too.
async fn list_all(
    c: &Client,
    portal: &str,
    sort: Option<SessionSortBy>,
    status: Option<SessionStatus>,
    page: i32,
) -> (Vec<SessionSummary>, Vec<usize>) {
    let mut out = Vec::new();
    let mut sizes = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let resp = c
            .list_sessions()
            .portal_id(portal)
            .max_results(page)
            .set_sort_by(sort.clone())
            .set_status(status.clone())
            .set_next_token(token.clone())
            .send()
            .await
            .unwrap();
        sizes.push(resp.sessions().len());
        out.extend(resp.sessions().iter().cloned());
        match resp.next_token() {
            Some(t) => token = Some(t.to_string()),
            None => break,
        }
        assert!(sizes.len() < 10_000, "runaway pagination");
    }
    (out, sizes)
}

/// A raw HTTP/1.1 GET (or other method): status, headers (lowercased names), body.
async fn raw(addr: SocketAddr, method: &str, path: &str) -> (u16, Vec<(String, String)>, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.unwrap();
    let text = String::from_utf8(buf).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let mut lines = head.lines();
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(": "))
        .map(|(k, v)| (k.to_ascii_lowercase(), v.to_string()))
        .collect();
    (status, headers, body.to_string())
}

fn header<'a>(h: &'a [(String, String)], name: &str) -> Option<&'a str> {
    h.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

#[tokio::test]
async fn pages_of_250_sessions_are_exact_and_disjoint() {
    let (sim, running, c, portal) = start_scripted(scripted(250, 0, 0)).await;
    let (items, sizes) = list_all(
        &c,
        &portal,
        Some(SessionSortBy::StartTimeAscending),
        None,
        100,
    )
    .await;
    assert_eq!(sizes, vec![100, 100, 50]);
    let got: Vec<SimSession> = items.iter().map(from_sdk).collect();
    assert_eq!(got, sim.sessions_at(&portal, T0));
    assert_eq!(got.iter().map(|s| &s.id).collect::<HashSet<_>>().len(), 250);
    assert!(
        items
            .iter()
            .all(|s| s.status() == Some(&SessionStatus::Active) && s.end_time().is_none())
    );
    let arn = sim.portal(&portal).unwrap().arn;
    assert!(items.iter().all(|s| s.portal_arn() == Some(arn.as_str())));
    assert_eq!(sim.request_count(&portal, operation::LIST_SESSIONS), 3);

    // The SDK's own paginator sees the same sessions.
    let via_paginator: Vec<SessionSummary> = c
        .list_sessions()
        .portal_id(&portal)
        .sort_by(SessionSortBy::StartTimeAscending)
        .into_paginator()
        .page_size(100)
        .items()
        .send()
        .collect::<Result<Vec<_>, _>>()
        .await
        .unwrap();
    assert_eq!(via_paginator.iter().map(from_sdk).collect::<Vec<_>>(), got);
    assert_eq!(sim.request_count(&portal, operation::LIST_SESSIONS), 6);
    assert_eq!(sim.total_requests(), 6);
    drop(running);
}

#[tokio::test]
async fn status_filter_follows_the_clock() {
    let (sim, running, c, portal) = start_scripted(scripted(30, 20, 5)).await;
    let count = |status: Option<SessionStatus>| {
        let c = c.clone();
        let portal = portal.clone();
        async move { list_all(&c, &portal, None, status, 7).await.0 }
    };
    let active = count(Some(SessionStatus::Active)).await;
    let terminated = count(Some(SessionStatus::Terminated)).await;
    assert_eq!(
        (active.len(), terminated.len(), count(None).await.len()),
        (30, 20, 50)
    );
    assert!(
        terminated
            .iter()
            .all(|s| s.status() == Some(&SessionStatus::Terminated)
                && ms(s.end_time()).unwrap() == ms(s.start_time()).unwrap() + 600_000)
    );

    // A test ends one session and advances past the future arrivals.
    let victim = active[0].session_id().unwrap().to_string();
    sim.end_session(&portal, &victim, T0 + 30_000).unwrap();
    sim.clock().advance(2 * MIN);
    assert_eq!(count(Some(SessionStatus::Active)).await.len(), 30 - 1 + 5);
    assert_eq!(count(Some(SessionStatus::Terminated)).await.len(), 21);
    let truth = sim.sessions_at(&portal, T0 + 2 * MIN);
    assert_eq!(truth.iter().filter(|s| s.end_ms.is_none()).count(), 34);
    drop(running);
}

#[tokio::test]
async fn username_and_session_id_filters_match_exactly() {
    let odd = [
        "o'brien \"boss\"",
        "CORP\\jdoe",
        "josé 王伟 🎉",
        "new\nline",
        "",
        "a+b&c=d%20",
    ];
    let mut sessions = scripted(10, 10, 0);
    for (i, u) in odd.iter().enumerate() {
        sessions.push(SimSession::new(
            SimSession::id_for(500 + i as u64),
            *u,
            T0 - 5_000 - i as i64,
        ));
        sessions.push(
            SimSession::new(
                SimSession::id_for(600 + i as u64),
                *u,
                T0 - 9_000 - i as i64,
            )
            .ended(T0 - 10),
        );
    }
    let mut nameless = SimSession::new(SimSession::id_for(999), "", T0 - 77);
    nameless.username = None;
    sessions.push(nameless);
    let (_sim, running, c, portal) = start_scripted(sessions).await;

    for u in odd {
        let resp = c
            .list_sessions()
            .portal_id(&portal)
            .username(u)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.sessions().len(), 2, "username {u:?}");
        assert!(resp.sessions().iter().all(|s| s.username() == Some(u)));
        let active = c
            .list_sessions()
            .portal_id(&portal)
            .username(u)
            .status(SessionStatus::Active)
            .send()
            .await
            .unwrap();
        assert_eq!(active.sessions().len(), 1);
    }
    // A session without username has no `username` field at all.
    let all = list_all(&c, &portal, None, None, 100).await.0;
    assert_eq!(all.iter().filter(|s| s.username().is_none()).count(), 1);

    let id = SimSession::id_for(3);
    let one = c
        .list_sessions()
        .portal_id(&portal)
        .session_id(&id)
        .send()
        .await
        .unwrap();
    assert_eq!(one.sessions().len(), 1);
    assert_eq!(one.sessions()[0].session_id(), Some(id.as_str()));
    assert!(one.next_token().is_none());

    let bad = c
        .list_sessions()
        .portal_id(&portal)
        .session_id("short")
        .send()
        .await;
    assert!(
        bad.unwrap_err()
            .into_service_error()
            .is_validation_exception()
    );
    drop(running);
}

#[tokio::test]
async fn both_sort_orders_are_strict_and_default_is_descending() {
    let model = GeneratedModel {
        arrivals_per_hour: 40.0,
        history_sessions: 3_000,
        users: 30,
        odd_usernames: true,
        ..GeneratedModel::default()
    };
    let portal = portal_id(2);
    let cfg = SimConfig::new(11)
        .with_clock(Clock::manual(T0))
        .with_portal(PortalSpec::new(
            portal.clone(),
            SessionModel::Generated(model),
        ));
    let (sim, running) = start(cfg).await;
    sim.clock().advance(5 * 3_600_000);
    let c = client(&running);
    let key = |s: &SessionSummary| {
        (
            ms(s.start_time()).unwrap(),
            s.session_id().unwrap().to_string(),
        )
    };

    let (asc, _) = list_all(
        &c,
        &portal,
        Some(SessionSortBy::StartTimeAscending),
        None,
        100,
    )
    .await;
    assert!(asc.windows(2).all(|w| key(&w[0]) < key(&w[1])));
    let (desc, _) = list_all(
        &c,
        &portal,
        Some(SessionSortBy::StartTimeDescending),
        None,
        100,
    )
    .await;
    assert!(desc.windows(2).all(|w| key(&w[0]) > key(&w[1])));
    let (default, _) = list_all(&c, &portal, None, None, 100).await;
    assert_eq!(default, desc);

    let truth = sim.sessions_at(&portal, T0 + 5 * 3_600_000);
    assert!(
        truth.len() > 3_000,
        "history plus 5 hours of arrivals: {}",
        truth.len()
    );
    assert_eq!(asc.iter().map(from_sdk).collect::<Vec<_>>(), truth);
    drop(running);
}

#[tokio::test]
async fn timestamps_keep_millisecond_precision() {
    let s = SimSession::new(SimSession::id_for(1), "u", T0 - 123_457).ended(T0 - 1);
    let (_sim, running, c, portal) = start_scripted(vec![s.clone()]).await;
    let got = c
        .get_session()
        .portal_id(&portal)
        .session_id(&s.id)
        .send()
        .await
        .unwrap();
    let got = got.session().unwrap();
    assert_eq!(ms(got.start_time()), Some(T0 - 123_457));
    assert_eq!(ms(got.end_time()), Some(T0 - 1));
    assert_eq!(got.client_ip_addresses().len(), 1);
    // The raw wire uses AWS's Java-style epoch seconds.
    let (status, _, body) = raw(running.addr, "GET", &format!("/portals/{portal}/sessions")).await;
    assert_eq!(status, 200);
    assert!(body.contains("\"startTime\":1.764331076543E9"), "{body}");
}

#[tokio::test]
async fn get_session_finds_listed_sessions_only() {
    let (_sim, running, c, portal) = start_scripted(scripted(3, 3, 1)).await;
    let id = SimSession::id_for(1);
    let got = c
        .get_session()
        .portal_id(&portal)
        .session_id(&id)
        .send()
        .await
        .unwrap();
    assert_eq!(
        got.session().unwrap().status(),
        Some(&SessionStatus::Active)
    );
    assert_eq!(got.session().unwrap().end_time(), None);

    let future = SimSession::id_for(2_000_000);
    let err = c
        .get_session()
        .portal_id(&portal)
        .session_id(&future)
        .send()
        .await
        .unwrap_err();
    assert!(err.into_service_error().is_resource_not_found_exception());
    let err = c
        .get_session()
        .portal_id(&portal)
        .session_id(SimSession::id_for(424242))
        .send()
        .await
        .unwrap_err();
    assert!(err.into_service_error().is_resource_not_found_exception());
    drop(running);
}

#[tokio::test]
async fn list_portals_paginates_and_get_portal_takes_the_arn() {
    let cfg = SimConfig::generated(5, 7).with_clock(Clock::manual(T0));
    let (sim, running) = start(cfg).await;
    for p in sim.portals() {
        sim.set_faults(&p.id, Faults::none()).unwrap(); // the demo's flaky portal throttles
    }
    let c = client(&running);
    let mut pages = Vec::new();
    let mut token = None;
    loop {
        let resp = c
            .list_portals()
            .max_results(3)
            .set_next_token(token.clone())
            .send()
            .await
            .unwrap();
        pages.push(resp.portals().to_vec());
        match resp.next_token() {
            Some(t) => token = Some(t.to_string()),
            None => break,
        }
    }
    assert_eq!(
        pages.iter().map(Vec::len).collect::<Vec<_>>(),
        vec![3, 3, 1]
    );
    let arns: Vec<String> = pages
        .iter()
        .flatten()
        .map(|p| p.portal_arn().to_string())
        .collect();
    let expected: Vec<String> = sim.portals().into_iter().map(|p| p.arn).collect();
    assert_eq!(arns, expected);
    let first = &pages[0][0];
    assert_eq!(first.browser_type().map(|b| b.as_str()), Some("Chrome"));
    assert_eq!(first.renderer_type().map(|b| b.as_str()), Some("AppStream"));
    assert!(first.max_concurrent_sessions().unwrap() > 0);
    assert!(first.creation_date().is_some());

    for info in sim.portals() {
        let got = c.get_portal().portal_arn(&info.arn).send().await.unwrap();
        let p = got.portal().unwrap();
        assert_eq!(p.portal_arn(), info.arn.as_str());
        assert_eq!(p.display_name(), Some(info.display_name.as_str()));
        assert_eq!(
            p.max_concurrent_sessions(),
            Some(info.max_concurrent_sessions as i32)
        );
        assert_eq!(sim.request_count(&info.id, operation::GET_PORTAL), 1);
    }
    // The ARN with literal `:` also routes (boto3 and curl users).
    let info = &sim.portals()[0];
    let (status, _, body) = raw(running.addr, "GET", &format!("/portals/{}", info.arn)).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.starts_with("{\"portal\":{\"portalArn\":"));

    let unknown = format!(
        "arn:aws:workspaces-web:us-east-1:123456789012:portal/{}",
        portal_id(99)
    );
    let err = c.get_portal().portal_arn(unknown).send().await.unwrap_err();
    assert!(err.into_service_error().is_resource_not_found_exception());
    let err = c
        .get_portal()
        .portal_arn("not-an-arn")
        .send()
        .await
        .unwrap_err();
    assert!(err.into_service_error().is_validation_exception());
    assert_eq!(sim.request_count("", operation::LIST_PORTALS), 3);
}

#[tokio::test]
async fn injected_errors_become_typed_sdk_errors() {
    let (sim, running, c, portal) = start_scripted(scripted(5, 0, 0)).await;
    let list = || c.list_sessions().portal_id(&portal).send();

    sim.set_faults(&portal, Faults::error("AccessDeniedException"))
        .unwrap();
    let e = list().await.unwrap_err().into_service_error();
    assert!(e.is_access_denied_exception(), "{e:?}");
    assert_eq!(
        aws_sdk_workspacesweb::error::ProvideErrorMetadata::code(&e),
        Some("AccessDeniedException")
    );

    sim.set_faults(&portal, Faults::error("ValidationException"))
        .unwrap();
    assert!(
        list()
            .await
            .unwrap_err()
            .into_service_error()
            .is_validation_exception()
    );

    sim.set_faults(&portal, Faults::error("ResourceNotFoundException"))
        .unwrap();
    assert!(
        list()
            .await
            .unwrap_err()
            .into_service_error()
            .is_resource_not_found_exception()
    );

    sim.set_faults(&portal, Faults::throttle(1.0, 7)).unwrap();
    match list().await.unwrap_err().into_service_error() {
        ListSessionsError::ThrottlingException(t) => {
            assert_eq!(t.retry_after_seconds(), 7);
            assert_eq!(t.message(), Some("Rate exceeded"));
        }
        other => panic!("{other:?}"),
    }

    sim.set_faults(
        &portal,
        Faults {
            retry_after_secs: 3,
            ..Faults::error("InternalServerException")
        },
    )
    .unwrap();
    match list().await.unwrap_err().into_service_error() {
        ListSessionsError::InternalServerException(t) => assert_eq!(t.retry_after_seconds(), 3),
        other => panic!("{other:?}"),
    }
    // Faults cover GetSession and GetPortal too.
    let e = c
        .get_session()
        .portal_id(&portal)
        .session_id(SimSession::id_for(0))
        .send()
        .await
        .unwrap_err();
    assert!(e.into_service_error().is_internal_server_exception());
    let arn = sim.portal(&portal).unwrap().arn;
    let e = c.get_portal().portal_arn(&arn).send().await.unwrap_err();
    assert!(e.into_service_error().is_internal_server_exception());

    sim.set_faults(&portal, Faults::none()).unwrap();
    assert_eq!(list().await.unwrap().sessions().len(), 5);
    // Every request counts, faulted or not.
    assert_eq!(sim.request_count(&portal, operation::LIST_SESSIONS), 6);
    assert_eq!(sim.request_count(&portal, operation::GET_SESSION), 1);
    assert_eq!(sim.request_count(&portal, operation::GET_PORTAL), 1);

    // ListPortals has its own faults.
    sim.set_list_portals_faults(Faults::error("AccessDeniedException"));
    let e = c.list_portals().send().await.unwrap_err();
    assert!(e.into_service_error().is_access_denied_exception());
    drop(running);
}

#[tokio::test]
async fn unknown_portal_is_resource_not_found() {
    let (sim, running, c, _portal) = start_scripted(scripted(1, 0, 0)).await;
    let other = portal_id(42);
    let e = c
        .list_sessions()
        .portal_id(&other)
        .send()
        .await
        .unwrap_err();
    assert!(e.into_service_error().is_resource_not_found_exception());
    let e = c
        .list_sessions()
        .portal_id("too-short")
        .send()
        .await
        .unwrap_err();
    assert!(e.into_service_error().is_validation_exception());
    assert_eq!(sim.request_count(&other, operation::LIST_SESSIONS), 1);
    drop(running);
}

#[tokio::test]
async fn bad_max_results_and_tokens_are_validation_errors() {
    let (_sim, running, c, portal) = start_scripted(scripted(20, 0, 0)).await;
    // The SDK does not check `min: 1` itself: the service does.
    let e = c
        .list_sessions()
        .portal_id(&portal)
        .max_results(0)
        .send()
        .await
        .unwrap_err();
    assert!(e.into_service_error().is_validation_exception());
    let e = c
        .list_sessions()
        .portal_id(&portal)
        .max_results(-5)
        .send()
        .await
        .unwrap_err();
    assert!(e.into_service_error().is_validation_exception());

    for q in [
        "maxResults=0",
        "maxResults=abc",
        "maxResults=",
        "nextToken=garbage",
        "nextToken=",
        "sortBy=Newest",
        "status=Running",
    ] {
        let (status, headers, body) = raw(
            running.addr,
            "GET",
            &format!("/portals/{portal}/sessions?{q}"),
        )
        .await;
        assert_eq!(status, 400, "{q}: {body}");
        assert!(
            header(&headers, "x-amzn-errortype")
                .unwrap()
                .starts_with("ValidationException:"),
            "{q}"
        );
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert!(v["message"].is_string(), "{body}");
    }
    // A huge maxResults is capped, not refused.
    let big = c
        .list_sessions()
        .portal_id(&portal)
        .max_results(1_000_000)
        .send()
        .await
        .unwrap();
    assert_eq!(big.sessions().len(), 20);

    // A token is bound to its order and filters.
    let first = c
        .list_sessions()
        .portal_id(&portal)
        .max_results(5)
        .sort_by(SessionSortBy::StartTimeAscending)
        .send()
        .await
        .unwrap();
    let token = first.next_token().unwrap().to_string();
    let e = c
        .list_sessions()
        .portal_id(&portal)
        .sort_by(SessionSortBy::StartTimeDescending)
        .next_token(&token)
        .send()
        .await
        .unwrap_err();
    assert!(e.into_service_error().is_validation_exception());
    let e = c
        .list_sessions()
        .portal_id(&portal)
        .sort_by(SessionSortBy::StartTimeAscending)
        .status(SessionStatus::Active)
        .next_token(&token)
        .send()
        .await
        .unwrap_err();
    assert!(e.into_service_error().is_validation_exception());
    drop(running);
}

#[tokio::test]
async fn repeated_token_fault_is_observable() {
    let (sim, running, c, portal) = start_scripted(scripted(30, 0, 0)).await;
    sim.set_faults(
        &portal,
        Faults {
            repeat_next_token: true,
            ..Faults::none()
        },
    )
    .unwrap();
    let page = |t: Option<String>| {
        c.list_sessions()
            .portal_id(&portal)
            .max_results(10)
            .sort_by(SessionSortBy::StartTimeAscending)
            .set_next_token(t)
            .send()
    };
    let p1 = page(None).await.unwrap();
    let t1 = p1.next_token().unwrap().to_string();
    let p2 = page(Some(t1.clone())).await.unwrap();
    assert_eq!(p2.next_token(), Some(t1.as_str()));
    let p3 = page(Some(t1.clone())).await.unwrap();
    assert_eq!(p3.next_token(), Some(t1.as_str()));
    assert_eq!(p2.sessions(), p3.sessions());

    // The SDK paginator stops silently on the repeated token (after 2 pages): callers must check.
    let items = c
        .list_sessions()
        .portal_id(&portal)
        .sort_by(SessionSortBy::StartTimeAscending)
        .into_paginator()
        .page_size(10)
        .items()
        .send()
        .collect::<Result<Vec<_>, _>>()
        .await
        .unwrap();
    assert_eq!(items.len(), 20);
    assert_eq!(sim.request_count(&portal, operation::LIST_SESSIONS), 5);
    drop(running);
}

#[tokio::test]
async fn unknown_routes_and_methods() {
    let (sim, running, _c, portal) = start_scripted(scripted(1, 0, 0)).await;
    let (status, headers, body) = raw(running.addr, "GET", "/nothing/here").await;
    assert_eq!(status, 404);
    assert!(
        header(&headers, "x-amzn-errortype")
            .unwrap()
            .starts_with("UnknownOperationException")
    );
    assert!(body.contains("\"message\""));
    let (status, _, _) = raw(running.addr, "PUT", &format!("/portals/{portal}/sessions")).await;
    assert_eq!(status, 405);
    let (status, _, _) = raw(running.addr, "POST", "/portals").await;
    assert_eq!(status, 405);
    assert_eq!(sim.request_count("", operation::UNKNOWN), 3);
    assert_eq!(sim.operation_count(operation::UNKNOWN), 3);
}

#[tokio::test]
async fn expire_session_ends_it_now() {
    let (sim, running, c, portal) = start_scripted(scripted(2, 0, 0)).await;
    let id = SimSession::id_for(0);
    c.expire_session()
        .portal_id(&portal)
        .session_id(&id)
        .send()
        .await
        .unwrap();
    let got = c
        .get_session()
        .portal_id(&portal)
        .session_id(&id)
        .send()
        .await
        .unwrap();
    assert_eq!(
        got.session().unwrap().status(),
        Some(&SessionStatus::Terminated)
    );
    assert_eq!(ms(got.session().unwrap().end_time()), Some(T0));
    assert_eq!(
        sim.sessions_at(&portal, T0)
            .iter()
            .filter(|s| s.end_ms.is_none())
            .count(),
        1
    );
    drop(running);
}

#[tokio::test]
async fn throttle_ratio_is_a_fraction_and_deterministic() {
    let run = || async {
        let (sim, running, c, portal) = start_scripted(scripted(1, 0, 0)).await;
        sim.set_faults(&portal, Faults::throttle(0.3, 1)).unwrap();
        let mut pattern = Vec::new();
        for _ in 0..200 {
            let r = c.list_sessions().portal_id(&portal).send().await;
            pattern.push(match r {
                Ok(_) => false,
                Err(e) => {
                    assert!(e.into_service_error().is_throttling_exception());
                    true
                }
            });
        }
        drop(running);
        pattern
    };
    let a = run().await;
    let throttled = a.iter().filter(|t| **t).count();
    assert!(
        (35..=85).contains(&throttled),
        "{throttled} of 200 throttled"
    );
    assert_eq!(a, run().await);
}

#[tokio::test]
async fn arrivals_and_ends_between_pages_cause_no_duplicates() {
    let (sim, running, c, portal) = start_scripted(scripted(60, 0, 0)).await;
    for sort in [
        SessionSortBy::StartTimeAscending,
        SessionSortBy::StartTimeDescending,
    ] {
        let before: HashSet<String> = sim
            .sessions_now(&portal)
            .into_iter()
            .map(|s| s.id)
            .collect();
        let mut seen = Vec::new();
        let mut token: Option<String> = None;
        let mut n = 0u64;
        loop {
            let resp = c
                .list_sessions()
                .portal_id(&portal)
                .max_results(25)
                .sort_by(sort.clone())
                .set_next_token(token.clone())
                .send()
                .await
                .unwrap();
            seen.extend(
                resp.sessions()
                    .iter()
                    .map(|s| s.session_id().unwrap().to_string()),
            );
            // New sessions arrive while the client pages.
            let now = sim.clock().advance(1_000);
            n += 1;
            let id = SimSession::id_for(
                7_000_000
                    + n
                    + if sort == SessionSortBy::StartTimeAscending {
                        0
                    } else {
                        100
                    },
            );
            sim.add_session(&portal, SimSession::new(id, "newcomer", now))
                .unwrap();
            match resp.next_token() {
                Some(t) => token = Some(t.to_string()),
                None => break,
            }
        }
        let unique: HashSet<String> = seen.iter().cloned().collect();
        assert_eq!(unique.len(), seen.len(), "duplicates with {sort:?}");
        assert!(
            before.is_subset(&unique),
            "an existing session was skipped with {sort:?}"
        );
    }
    drop(running);
}

#[tokio::test]
async fn portals_are_regional() {
    let mut spec = PortalSpec::scripted(portal_id(5), scripted(2, 0, 0));
    spec.region = "eu-west-1".into();
    let cfg = SimConfig::new(1)
        .with_clock(Clock::manual(T0))
        .with_portal(spec)
        .with_portal(PortalSpec::scripted(portal_id(6), vec![]));
    let (_sim, running) = start(cfg).await;
    let us = client(&running);
    let eu = client_in(&running, "eu-west-1");
    assert_eq!(us.list_portals().send().await.unwrap().portals().len(), 1);
    let eu_portals = eu.list_portals().send().await.unwrap();
    assert_eq!(eu_portals.portals().len(), 1);
    assert!(eu_portals.portals()[0].portal_arn().contains(":eu-west-1:"));
    let e = us
        .list_sessions()
        .portal_id(portal_id(5))
        .send()
        .await
        .unwrap_err();
    assert!(e.into_service_error().is_resource_not_found_exception());
    assert_eq!(
        eu.list_sessions()
            .portal_id(portal_id(5))
            .send()
            .await
            .unwrap()
            .sessions()
            .len(),
        2
    );
}

#[tokio::test]
async fn latency_fault_delays_the_answer() {
    let (sim, running, c, portal) = start_scripted(scripted(1, 0, 0)).await;
    sim.set_faults(
        &portal,
        Faults {
            latency: Duration::from_millis(150),
            ..Faults::none()
        },
    )
    .unwrap();
    let t = Instant::now();
    c.list_sessions().portal_id(&portal).send().await.unwrap();
    assert!(t.elapsed() >= Duration::from_millis(150));
    drop(running);
}

#[tokio::test]
async fn fifty_thousand_terminated_sessions_list_quickly() {
    let model = GeneratedModel {
        arrivals_per_hour: 60.0,
        history_sessions: 50_000,
        users: 500,
        ..GeneratedModel::default()
    };
    let portal = portal_id(3);
    let cfg = SimConfig::new(3)
        .with_clock(Clock::manual(T0))
        .with_portal(PortalSpec::new(
            portal.clone(),
            SessionModel::Generated(model),
        ));
    let built = Instant::now();
    let (sim, running) = start(cfg).await;
    let build_time = built.elapsed();
    let c = client(&running);
    let t = Instant::now();
    let (terminated, sizes) = list_all(
        &c,
        &portal,
        Some(SessionSortBy::StartTimeDescending),
        Some(SessionStatus::Terminated),
        100,
    )
    .await;
    let list_time = t.elapsed();
    let truth: Vec<SimSession> = sim
        .sessions_at(&portal, T0)
        .into_iter()
        .filter(|s| s.end_ms.is_some())
        .collect();
    assert!(truth.len() > 49_900, "{}", truth.len());
    assert_eq!(terminated.len(), truth.len());
    eprintln!(
        "50k history: built in {build_time:?}; {} terminated sessions listed in {} pages in {list_time:?}",
        terminated.len(),
        sizes.len()
    );
    // The first page of active sessions (what a poll needs) is cheap however long the history is.
    let t = Instant::now();
    let active = c
        .list_sessions()
        .portal_id(&portal)
        .status(SessionStatus::Active)
        .send()
        .await
        .unwrap();
    eprintln!(
        "first Active page ({} sessions) in {:?}",
        active.sessions().len(),
        t.elapsed()
    );
    assert!(list_time < Duration::from_secs(20));
    drop(running);
}

#[tokio::test]
async fn raw_records_reach_the_client_verbatim() {
    let (sim, running, c, portal) = start_scripted(scripted(3, 0, 0)).await;
    let start = (T0 - 10_000) as f64 / 1000.0;
    sim.add_raw_record(
        &portal,
        serde_json::json!({"status": "Active", "startTime": start, "username": "no-id"}),
    )
    .unwrap();
    sim.add_raw_record(
        &portal,
        serde_json::json!({"sessionId": SimSession::id_for(77), "status": "Pending"}),
    )
    .unwrap();
    let (all, sizes) = list_all(&c, &portal, None, None, 2).await;
    assert_eq!(sizes, vec![2, 3]);
    assert_eq!(all.iter().filter(|s| s.session_id().is_none()).count(), 1);
    let pending = all
        .iter()
        .find(|s| s.session_id() == Some(SimSession::id_for(77).as_str()))
        .unwrap();
    assert_eq!(pending.status().map(|s| s.as_str()), Some("Pending"));
    assert!(pending.start_time().is_none());
    let active = list_all(&c, &portal, None, Some(SessionStatus::Active), 100)
        .await
        .0;
    assert_eq!(active.len(), 4);
    sim.clear_raw_records(&portal).unwrap();
    assert_eq!(list_all(&c, &portal, None, None, 100).await.0.len(), 3);
    drop(running);
}
