//! What a real account does that the simulator's happy path does not (SPEC section 11), through
//! the library and the real SDK: a `GetSession` that keeps failing transiently, an `AssumeRole`
//! refused, keys that expire or are revoked. The first hour as a user meets it, with the binary,
//! is in `first_hour.rs`.

use std::time::Duration;

use crate::common::*;
use workspacesweb_exporter::aws::{ASSUME_ROLE, GET_SESSION, LIST_SESSIONS};
use workspacesweb_exporter::poll::{MAX_FAILED_LOOKUPS, Scheduler};
use workspacesweb_exporter::snapshot::PortalSnapshot;
use workspacesweb_sim::{PortalSpec, SimConfig, SimSession, now_ms};

const P: &str = "e0000000-0000-4000-8000-000000000001";
const MINUTE: i64 = 60_000;

fn totals(p: &PortalSnapshot) -> workspacesweb_exporter::ledger::Totals {
    p.totals.clone().unwrap_or_default()
}

/// Every failed `GetSession` of `p`, whatever its label.
fn get_session_errors(p: &PortalSnapshot) -> u64 {
    p.api_errors
        .iter()
        .filter(|((op, _), _)| op == GET_SESSION)
        .map(|(_, n)| n)
        .sum()
}

/// A session whose `GetSession` fails transiently (throttled, then cut by the poll's timeout)
/// fails the poll, which resumes with it; after 3 failed polls it is settled without asking
/// again, and the portal is up. Before, every poll failed on it for good.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lookup_that_keeps_failing_is_settled_after_three_polls() {
    let now = now_ms();
    // With pages of one, the Terminated scan stops on the ended session (newer than the
    // running one), so the running one, once ended, is looked up with GetSession.
    let sessions = vec![
        SimSession::new(SimSession::id_for(1), "ann", now - 150 * MINUTE),
        SimSession::new(SimSession::id_for(3), "cyd", now - 110 * MINUTE).ended(now - 100 * MINUTE),
    ];
    let env = start(SimConfig::new(21).with_portal(PortalSpec::scripted(P, sessions))).await;
    let sched = Scheduler::start(
        vec![plan(P, Duration::from_millis(300), 1)],
        &env.clients,
        env.store.clone(),
        1,
    )
    .await;
    wait_portal(&env.store, P, |p| p.up).await;
    env.sim
        .set_operation_error(P, "GetSession", Some("ThrottlingException"));
    env.sim
        .end_session(P, &SimSession::id_for(1), now_ms())
        .expect("session");
    let down = wait_portal(&env.store, P, |p| !p.up).await;
    assert_eq!(
        down.last_error_code
            .as_deref()
            .map(|c| c.starts_with(GET_SESSION)),
        Some(true)
    );
    let settled = wait_portal(&env.store, P, |p| p.up && totals(p).terminated == 1).await;
    assert_eq!(totals(&settled).incomplete, 1, "settled: no record");
    assert_eq!(totals(&settled).durations.count, 0, "no duration");
    // Three polls failed on it, and it was not asked again after the third.
    let failed = get_session_errors(&settled);
    assert!(
        failed >= u64::from(MAX_FAILED_LOOKUPS),
        "{:?}",
        settled.api_errors
    );
    let asked = requests(&settled, GET_SESSION);
    let later = wait_portal(&env.store, P, |p| {
        p.up && p.last_success_unix > settled.last_success_unix
    })
    .await;
    sched.shutdown().await;
    assert_eq!(requests(&later, GET_SESSION), asked);
    assert_eq!(totals(&later).terminated, 1);
}

/// A role that STS refuses to assume: the poll's error is `AssumeRole AccessDenied` with STS's
/// message, counted once under `AssumeRole` (the `ListSessions` that needed it is not counted
/// again). Allowed again, the portal is polled. Before, the page said `ListSessions other`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_assume_role_is_named_and_counted_once() {
    let env = start(SimConfig::new(22).with_portal(scripted(P, 2, now_ms(), 2))).await;
    let role = "arn:aws:iam::123456789012:role/wsw-exporter";
    env.sim.allow_role(role, None);
    env.sim
        .set_assume_role_error("123456789012", Some("AccessDenied"));
    let mut p = plan(P, Duration::from_millis(300), 10);
    p.client.role_arn = Some(role.to_string());
    let sched = Scheduler::start(vec![p], &env.clients, env.store.clone(), 1).await;
    let down = wait_portal(&env.store, P, |p| p.polled && !p.up).await;
    assert_eq!(
        down.last_error_code.as_deref(),
        Some("AssumeRole AccessDenied")
    );
    let message = down.last_error_message.clone().unwrap_or_default();
    assert!(message.contains("sts:AssumeRole"), "{message}");
    assert!(errors(&down, ASSUME_ROLE, "AccessDenied") >= 1);
    assert!(requests(&down, ASSUME_ROLE) >= errors(&down, ASSUME_ROLE, "AccessDenied"));
    assert_eq!(requests(&down, LIST_SESSIONS), 0, "{:?}", down.api_requests);
    assert!(
        down.api_errors.keys().all(|(op, _)| op == ASSUME_ROLE),
        "{:?}",
        down.api_errors
    );

    env.sim.set_assume_role_error("123456789012", None);
    let up = wait_portal(&env.store, P, |p| p.up).await;
    sched.shutdown().await;
    assert_eq!(up.last_error_code, None);
    assert_eq!(up.last_error_message, None);
    assert_eq!(active(&up).sessions, 2);
}

/// Keys the account expired or revoked: the service's codes and messages, counted and shown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_and_revoked_keys_are_named() {
    // The key the test clients sign with (see `Clients::with_static_credentials`).
    const KEY: &str = "AKIDEXAMPLE";
    let env = start(SimConfig::new(23).with_portal(scripted(P, 1, now_ms(), 1))).await;
    env.sim.require_known_keys(true);
    env.sim
        .add_access_key(KEY, "arn:aws:iam::123456789012:user/exporter")
        .expect("key");
    let sched = Scheduler::start(
        vec![plan(P, Duration::from_millis(300), 10)],
        &env.clients,
        env.store.clone(),
        1,
    )
    .await;
    wait_portal(&env.store, P, |p| p.up).await;
    assert!(env.sim.expire_access_key(KEY));
    let expired = wait_portal(&env.store, P, |p| !p.up).await;
    assert_eq!(
        expired.last_error_code.as_deref(),
        Some("ListSessions ExpiredTokenException")
    );
    assert!(errors(&expired, LIST_SESSIONS, "ExpiredTokenException") >= 1);
    let message = expired.last_error_message.clone().unwrap_or_default();
    assert!(message.contains("expired"), "{message}");
    env.sim.revoke_access_key(KEY);
    let revoked = wait_portal(&env.store, P, |p| {
        errors(p, LIST_SESSIONS, "UnrecognizedClientException") >= 1
    })
    .await;
    sched.shutdown().await;
    assert_eq!(
        revoked.last_error_code.as_deref(),
        Some("ListSessions UnrecognizedClientException")
    );
}
