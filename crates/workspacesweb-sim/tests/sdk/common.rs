//! Helpers of the SDK tests: a simulator on loopback, and clients of the real SDKs pointed at it.

use std::net::SocketAddr;

use aws_sdk_workspacesweb::config::http::HttpResponse;
use aws_sdk_workspacesweb::config::retry::RetryConfig;
use aws_sdk_workspacesweb::config::{Credentials, Region};
use aws_sdk_workspacesweb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_workspacesweb::operation::list_sessions::ListSessionsOutput;
use workspacesweb_sim::{Clock, PortalSpec, RunningSim, SimConfig, SimSession, Simulator};

/// 2025-11-28 12:00:00 UTC.
pub const T0: i64 = 1_764_331_200_000;

/// Starts a simulator on a free loopback port.
pub async fn serve(config: SimConfig) -> (Simulator, RunningSim) {
    let sim = Simulator::new(config);
    let running = sim
        .start(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .expect("simulator binds");
    (sim, running)
}

/// Starts a simulator holding one portal, on a manual clock at `T0`.
pub async fn serve_portal(seed: u64, portal: PortalSpec) -> (Simulator, RunningSim) {
    serve(
        SimConfig::new(seed)
            .with_clock(Clock::manual(T0))
            .with_portal(portal),
    )
    .await
}

/// The ids of the portals a client lists (one page), sorted.
pub async fn listed(client: &aws_sdk_workspacesweb::Client) -> Vec<String> {
    let mut ids: Vec<String> = client
        .list_portals()
        .send()
        .await
        .expect("ListPortals")
        .portals()
        .iter()
        .map(|p| {
            p.portal_arn()
                .rsplit('/')
                .next()
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    ids.sort();
    ids
}

/// One `ListSessions` page of `portal_id`, with `maxResults` and `nextToken` when given.
pub async fn sessions_page(
    client: &aws_sdk_workspacesweb::Client,
    portal_id: &str,
    max_results: Option<i32>,
    next_token: Option<&str>,
) -> Result<ListSessionsOutput, Failure> {
    client
        .list_sessions()
        .portal_id(portal_id)
        .set_max_results(max_results)
        .set_next_token(next_token.map(str::to_string))
        .send()
        .await
        .map_err(failure)
}

/// Static credentials with access key id `key` (and a session token when given).
pub fn creds(key: &str, token: Option<&str>) -> Credentials {
    Credentials::new(key, "secret", token.map(str::to_string), None, "test")
}

/// A WorkSpaces Web client in `region` signing with `creds`, retries off.
pub fn wsw(
    running: &RunningSim,
    region: &str,
    creds: Credentials,
) -> aws_sdk_workspacesweb::Client {
    let conf = aws_sdk_workspacesweb::Config::builder()
        .behavior_version_latest()
        .region(Region::new(region.to_string()))
        .credentials_provider(creds)
        .endpoint_url(running.endpoint_url())
        .retry_config(RetryConfig::disabled())
        .build();
    aws_sdk_workspacesweb::Client::from_conf(conf)
}

/// An Organizations client (us-east-1, its global endpoint's region) signing with `creds`, retries off.
pub fn orgs(running: &RunningSim, creds: Credentials) -> aws_sdk_organizations::Client {
    let conf = aws_sdk_organizations::Config::builder()
        .behavior_version_latest()
        .region(aws_sdk_organizations::config::Region::new("us-east-1"))
        .credentials_provider(creds)
        .endpoint_url(running.endpoint_url())
        .retry_config(aws_sdk_organizations::config::retry::RetryConfig::disabled())
        .build();
    aws_sdk_organizations::Client::from_conf(conf)
}

/// An STS client signing with `creds`, retries off.
pub fn sts(running: &RunningSim, creds: Credentials) -> aws_sdk_sts::Client {
    let conf = aws_sdk_sts::Config::builder()
        .behavior_version_latest()
        .region(aws_sdk_sts::config::Region::new("us-east-1"))
        .credentials_provider(creds)
        .endpoint_url(running.endpoint_url())
        .retry_config(aws_sdk_sts::config::retry::RetryConfig::disabled())
        .build();
    aws_sdk_sts::Client::from_conf(conf)
}

/// Assumes `role_arn` through the real STS client; the credentials issued, ready for other clients.
pub async fn assume(
    sts: &aws_sdk_sts::Client,
    role_arn: &str,
    external_id: Option<&str>,
) -> Result<Credentials, Failure> {
    let out = sts
        .assume_role()
        .role_arn(role_arn)
        .role_session_name("sim-test")
        .set_external_id(external_id.map(str::to_string))
        .send()
        .await
        .map_err(failure)?;
    let c = out.credentials().expect("credentials in the answer");
    Ok(creds(c.access_key_id(), Some(c.session_token())))
}

/// A failed call as the SDK saw it: error code, message and HTTP status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub code: String,
    pub message: String,
    pub status: u16,
}

/// The code, message and status of an SDK error (any of the three SDKs).
pub fn failure<E: ProvideErrorMetadata>(e: SdkError<E, HttpResponse>) -> Failure {
    let status = e.raw_response().map_or(0, |r| r.status().as_u16());
    Failure {
        code: e.code().unwrap_or_default().to_string(),
        message: e.message().unwrap_or_default().to_string(),
        status,
    }
}

/// The error of a call that must fail.
pub fn must_fail<T: std::fmt::Debug, E: ProvideErrorMetadata>(
    r: Result<T, SdkError<E, HttpResponse>>,
) -> Failure {
    match r {
        Ok(v) => panic!("expected an error, got {v:?}"),
        Err(e) => failure(e),
    }
}

/// A 36-character portal id numbered `n`.
pub fn portal_id(n: u32) -> String {
    format!("{n:08x}-0000-4000-8000-00000000beef")
}

/// A scripted portal with `sessions` active sessions started before `T0`.
pub fn portal(id: &str, region: &str, account: &str, sessions: u64) -> PortalSpec {
    let list = (0..sessions)
        .map(|i| {
            SimSession::new(
                SimSession::id_for(i),
                format!("u{i}"),
                T0 - 1000 * (i as i64 + 1),
            )
        })
        .collect();
    let mut p = PortalSpec::scripted(id, list);
    p.region = region.to_string();
    p.account = account.to_string();
    p
}
