//! AWS topology against the simulator, through the real control loop and the real SDK: portals in
//! two regions behind two assumed roles (STS answered by the simulator, so the roles are really
//! assumed and their keys sign the portal requests), `arn:` portals, discovery, sharding, and
//! `GetPortal` denied.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use aws_config::{BehaviorVersion, Region};
use aws_credential_types::Credentials;
use aws_credential_types::provider::SharedCredentialsProvider;
use common::*;
use workspacesweb_exporter::aws::{ASSUME_ROLE, Clients};
use workspacesweb_exporter::clock::now_ms;
use workspacesweb_sim::{
    Clock, PortalSpec, RunningSim, SimConfig, SimSession, Simulator, operation,
};

const ROLE_EAST: &str = "arn:aws:iam::111111111111:role/wsw-east";
const ROLE_WEST: &str = "arn:aws:iam::222222222222:role/wsw-west";
const WEST_EXTERNAL_ID: &str = "west-ext-2026";

/// Shard 0 (FNV-1a of the id, modulo 2).
const E1: &str = "a1000000-0000-4000-8000-000000000001";
/// Shard 1.
const E2: &str = "a1000000-0000-4000-8000-000000000002";
/// Shard 0.
const E3: &str = "a1000000-0000-4000-8000-000000000003";
/// Shard 0.
const W1: &str = "b2000000-0000-4000-8000-000000000001";
/// Shard 1.
const W2: &str = "b2000000-0000-4000-8000-000000000002";
/// Shard 0.
const W3: &str = "b2000000-0000-4000-8000-000000000003";
/// Portals of the `GetPortal` test only (its log capture filters on the portal id).
const G1: &str = "c3000000-0000-4000-8000-000000000001";
const G2: &str = "c3000000-0000-4000-8000-000000000002";

fn portal(id: &str, region: &str, account: &str, sessions: u64, base: i64) -> PortalSpec {
    let list = (0..sessions)
        .map(|i| {
            SimSession::new(
                SimSession::id_for(i),
                format!("u{i}"),
                base - 1000 * (i as i64 + 1),
            )
        })
        .collect();
    let mut p = PortalSpec::scripted(id, list);
    p.region = region.into();
    p.account = account.into();
    p
}

/// Starts a simulator on loopback.
async fn serve(config: SimConfig) -> (Simulator, RunningSim) {
    let sim = Simulator::new(config);
    let running = sim
        .start(std::net::SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .expect("simulator binds");
    (sim, running)
}

/// Clients whose base credentials (the default chain's, in production) have access key id `key_id`,
/// with STS and WorkSpaces Web both at `endpoint` (as `AWS_ENDPOINT_URL` would set them).
async fn clients_as(key_id: &str, endpoint: &str) -> Clients {
    let creds = Credentials::new(key_id, "base-secret", None, None, "test");
    let config = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(SharedCredentialsProvider::new(creds))
        .endpoint_url(endpoint)
        .retry_config(
            aws_config::retry::RetryConfig::standard()
                .with_initial_backoff(Duration::from_millis(20))
                .with_max_backoff(Duration::from_millis(200)),
        )
        .load()
        .await;
    Clients::new(config)
}

fn write(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("exporter.yaml");
    std::fs::write(&path, text).expect("write config");
    path
}

use common::run_control_loop as run;

/// The `workspacesweb_up` samples of an exposition: portal id -> value.
fn up_values(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter(|l| l.starts_with("workspacesweb_up{"))
        .filter_map(|l| {
            let id = l.split("portal_id=\"").nth(1)?.split('"').next()?;
            Some((id.to_string(), l.rsplit(' ').next()?.to_string()))
        })
        .collect()
}

/// The sum of the samples of `prefix` (a metric name and `{`) whose `operation` is `operation`.
fn sum_samples(text: &str, prefix: &str, operation: &str) -> f64 {
    let label = format!("operation=\"{operation}\"");
    text.lines()
        .filter(|l| l.starts_with(prefix) && l.contains(&label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The roles of the keys that signed a portal's requests.
fn signer_roles(sim: &Simulator, portal_id: &str) -> BTreeSet<Option<String>> {
    sim.signers(portal_id)
        .keys()
        .map(|k| sim.role_of_key(k))
        .collect()
}

/// `AssumeRole` calls for `role` made with base key `caller`, and how many succeeded.
fn assume_calls(sim: &Simulator, role: &str, caller: &str) -> (usize, usize) {
    let calls: Vec<_> = sim
        .assume_role_calls()
        .into_iter()
        .filter(|c| c.role_arn == role && c.caller_key_id.as_deref() == Some(caller))
        .collect();
    let ok = calls.iter().filter(|c| c.issued_key_id.is_some()).count();
    (calls.len(), ok)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_regions_two_roles_discovery_and_two_shards() {
    let base = now_ms();
    let mut cfg = SimConfig::new(31).with_clock(Clock::manual(base));
    for (i, id) in [E1, E2, E3].iter().enumerate() {
        cfg = cfg.with_portal(portal(id, "us-east-1", "111111111111", 2 + i as u64, base));
    }
    for (i, id) in [W1, W2, W3].iter().enumerate() {
        cfg = cfg.with_portal(portal(id, "eu-west-1", "222222222222", 1 + i as u64, base));
    }
    let (sim, running) = serve(cfg).await;
    sim.allow_role(ROLE_EAST, None);
    sim.allow_role(ROLE_WEST, Some(WEST_EXTERNAL_ID));
    // Each portal answers only to its account's role, as across real accounts.
    for id in [E1, E2, E3] {
        sim.set_portal_owner(id, Some(ROLE_EAST));
    }
    for id in [W1, W2, W3] {
        sim.set_portal_owner(id, Some(ROLE_WEST));
    }
    let e2_arn = sim.portal(E2).expect("e2").arn;
    let config = |index: u32| {
        format!(
            "global:
  region: us-east-1
  interval: 1s
  labels: {{env: test}}
portals:
  - id: {E1}
    role_arn: {ROLE_EAST}
  - arn: {e2_arn}
    role_arn: {ROLE_EAST}
  - id: {E3}
    region: us-east-1
    role_arn: {ROLE_EAST}
  - id: {W1}
    region: eu-west-1
    role_arn: {ROLE_WEST}
    external_id: {WEST_EXTERNAL_ID}
    labels: {{origin: static}}
discovery:
  - regions: [eu-west-1]
    role_arn: {ROLE_WEST}
    external_id: {WEST_EXTERNAL_ID}
    refresh: 1s
    labels: {{origin: discovered}}
sharding:
  total: 2
  index: {index}
"
        )
    };
    let dirs = [
        tempfile::tempdir().expect("tempdir"),
        tempfile::tempdir().expect("tempdir"),
    ];
    let base_keys = ["AKIDREPLICA0EXAMPLE", "AKIDREPLICA1EXAMPLE"];
    let shards: [&[&str]; 2] = [&[E1, E3, W1, W3], &[E2, W2]];
    let mut replicas = Vec::new();
    for i in 0..2 {
        let path = write(dirs[i].path(), &config(i as u32));
        let clients = clients_as(base_keys[i], &running.endpoint_url()).await;
        replicas.push(run(&path, &clients).await);
    }
    // Several polls of every portal (a poll lists Active and Terminated sessions: 8 requests are at
    // least 3 polls), so that the assumed credentials must have been reused, not fetched per poll.
    for (i, r) in replicas.iter().enumerate() {
        r.wait(shards[i], |p| {
            p.up && requests(p, operation::LIST_SESSIONS) >= 8
        })
        .await;
        assert!(r.store.status().ready());
    }

    // Together the replicas poll every portal exactly once.
    let a = replicas[0].ids();
    let b = replicas[1].ids();
    assert!(a.is_disjoint(&b), "{a:?} {b:?}");
    let all: BTreeSet<String> = a.union(&b).cloned().collect();
    let expected: BTreeSet<String> = [E1, E2, E3, W1, W2, W3]
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(all, expected);

    for (i, r) in replicas.iter().enumerate() {
        // Every owned portal is up, in the exposition too.
        let text = r.text();
        let ups = up_values(&text);
        assert_eq!(
            ups.keys().cloned().collect::<BTreeSet<_>>(),
            shards[i].iter().map(|s| s.to_string()).collect(),
            "{text}"
        );
        assert!(ups.values().all(|v| v == "1"), "{ups:?}");
        // The two AssumeRole calls are counted, each for the portal or discovery source that
        // needed the credentials first.
        assert_eq!(
            sum_samples(&text, "workspacesweb_api_requests_total{", ASSUME_ROLE),
            2.0,
            "{text}"
        );
        assert_eq!(
            sum_samples(
                &text,
                "workspacesweb_api_request_errors_total{",
                ASSUME_ROLE
            ),
            0.0,
            "{text}"
        );
        // Once per role and replica: the credentials are cached across polls and shared by the
        // portals (and the discovery source) behind the same role, in every region.
        assert_eq!(
            assume_calls(&sim, ROLE_EAST, base_keys[i]),
            (1, 1),
            "{:?}",
            sim.assume_role_calls()
        );
        assert_eq!(
            assume_calls(&sim, ROLE_WEST, base_keys[i]),
            (1, 1),
            "{:?}",
            sim.assume_role_calls()
        );
        // Each portal's requests are signed by the key its replica got for the portal's role.
        for id in shards[i] {
            let role = if id.starts_with("a1") {
                ROLE_EAST
            } else {
                ROLE_WEST
            };
            let issued: BTreeSet<String> = sim
                .assume_role_calls()
                .into_iter()
                .filter(|c| c.role_arn == role && c.caller_key_id.as_deref() == Some(base_keys[i]))
                .filter_map(|c| c.issued_key_id)
                .collect();
            let signers: BTreeSet<String> = sim.signers(id).keys().cloned().collect();
            assert_eq!(signers, issued, "{id}");
            assert!(signers.iter().all(|k| k.starts_with("ASIA")), "{signers:?}");
            let p = r.store.portal(id).expect("owned portal");
            assert_eq!(
                active(&p).sessions as usize,
                sim.sessions_now(id).len(),
                "{id}"
            );
        }
    }
    // The external id was sent for the west role, and never for the east one.
    for call in sim.assume_role_calls() {
        let want = (call.role_arn == ROLE_WEST).then(|| WEST_EXTERNAL_ID.to_string());
        assert_eq!(call.external_id, want, "{call:?}");
        assert_eq!(call.session_name, "workspacesweb-exporter");
    }
    // Regions: us-east-1 portals (E2 given by ARN only) signed for us-east-1, the others for eu-west-1.
    for id in [E1, E2, E3] {
        assert_eq!(signer_roles(&sim, id), [Some(ROLE_EAST.to_string())].into());
        assert_eq!(sim.signing_regions(id), ["us-east-1".to_string()].into());
    }
    for id in [W1, W2, W3] {
        assert_eq!(signer_roles(&sim, id), [Some(ROLE_WEST.to_string())].into());
        assert_eq!(sim.signing_regions(id), ["eu-west-1".to_string()].into());
    }
    // Discovery listed with the west role in eu-west-1, from both replicas.
    assert_eq!(signer_roles(&sim, ""), [Some(ROLE_WEST.to_string())].into());
    assert_eq!(sim.signing_regions(""), ["eu-west-1".to_string()].into());
    // W1 is both static and discovered: the static entry wins.
    let w1 = replicas[0].store.portal(W1).expect("w1 in shard 0");
    assert!(
        w1.labels.contains(&("origin".into(), "static".into())),
        "{:?}",
        w1.labels
    );
    let w3 = replicas[0].store.portal(W3).expect("w3 in shard 0");
    assert!(
        w3.labels.contains(&("origin".into(), "discovered".into())),
        "{:?}",
        w3.labels
    );
    for r in replicas {
        r.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_external_id_fails_only_that_portal() {
    let base = now_ms();
    let (sim, running) = serve(
        SimConfig::new(32)
            .with_clock(Clock::manual(base))
            .with_portal(portal(E1, "us-east-1", "111111111111", 2, base))
            .with_portal(portal(W1, "eu-west-1", "222222222222", 3, base)),
    )
    .await;
    sim.allow_role(ROLE_EAST, None);
    sim.allow_role(ROLE_WEST, Some(WEST_EXTERNAL_ID));
    sim.set_portal_owner(E1, Some(ROLE_EAST));
    sim.set_portal_owner(W1, Some(ROLE_WEST));
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write(
        dir.path(),
        &format!(
            "global:
  region: us-east-1
  interval: 1s
portals:
  - id: {E1}
    role_arn: {ROLE_EAST}
  - id: {W1}
    region: eu-west-1
    role_arn: {ROLE_WEST}
    external_id: not-the-right-one
"
        ),
    );
    let clients = clients_as("AKIDBASEEXAMPLE", &running.endpoint_url()).await;
    let r = run(&path, &clients).await;
    // W1 fails (its role cannot be assumed); E1 is up.
    r.wait(&[E1, W1], |p| {
        if p.portal_id == W1 {
            p.polled && !p.up
        } else {
            p.up
        }
    })
    .await;
    let w1 = r.store.portal(W1).expect("w1");
    let err = w1
        .last_error
        .clone()
        .expect("an error for the failed portal");
    assert!(err.contains("AccessDenied"), "{err}");
    // The refusal is counted under the STS operation and code.
    assert!(requests(&w1, ASSUME_ROLE) >= 1, "{:?}", w1.api_requests);
    assert_eq!(
        requests(&w1, ASSUME_ROLE),
        errors(&w1, ASSUME_ROLE, "AccessDenied"),
        "{:?}",
        w1.api_errors
    );
    // No request reached the portal: the role was never assumed.
    assert_eq!(sim.request_count(W1, operation::LIST_SESSIONS), 0);
    assert!(sim.signers(W1).is_empty());
    let west = assume_calls(&sim, ROLE_WEST, "AKIDBASEEXAMPLE");
    assert!(west.0 >= 1 && west.1 == 0, "{west:?}");
    assert!(
        sim.assume_role_calls()
            .iter()
            .filter(|c| c.role_arn == ROLE_WEST)
            .all(|c| c.external_id.as_deref() == Some("not-the-right-one"))
    );
    // The exposition: W1 down with an error counted, E1 up and signed by the east role.
    let text = r.text();
    let ups = up_values(&text);
    assert_eq!(ups.get(W1).map(String::as_str), Some("0"), "{text}");
    assert_eq!(ups.get(E1).map(String::as_str), Some("1"), "{text}");
    // Nothing was sent to WorkSpaces Web: the failure is counted under AssumeRole only.
    assert_eq!(
        w1.api_errors
            .keys()
            .map(|(op, _)| op.as_str())
            .collect::<BTreeSet<_>>(),
        [ASSUME_ROLE].into(),
        "{:?}",
        w1.api_errors
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("workspacesweb_api_request_errors_total{")
                && l.contains(W1)
                && l.contains("operation=\"AssumeRole\"")
                && l.contains("error=\"AccessDenied\"")),
        "{text}"
    );
    assert_eq!(signer_roles(&sim, E1), [Some(ROLE_EAST.to_string())].into());
    assert_eq!(assume_calls(&sim, ROLE_EAST, "AKIDBASEEXAMPLE"), (1, 1));
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_arn_portal_takes_its_region_from_the_arn() {
    let base = now_ms();
    let (sim, running) = serve(
        SimConfig::new(33)
            .with_clock(Clock::manual(base))
            .with_portal(portal(W1, "eu-west-1", "222222222222", 3, base))
            .with_portal(portal(W2, "eu-west-1", "222222222222", 1, base)),
    )
    .await;
    let w1_arn = sim.portal(W1).expect("w1").arn;
    let dir = tempfile::tempdir().expect("tempdir");
    // The global region is us-east-1: W1 (by ARN) must be called in eu-west-1; W2 (by id, no
    // region) is called in us-east-1, where the simulator, like AWS, does not know it.
    let path = write(
        dir.path(),
        &format!(
            "global:\n  region: us-east-1\n  interval: 1s\nportals:\n  - arn: {w1_arn}\n  - id: {W2}\n"
        ),
    );
    let clients = Clients::with_static_credentials("us-east-1", &running.endpoint_url()).await;
    let r = run(&path, &clients).await;
    r.wait(&[W1, W2], |p| {
        if p.portal_id == W1 {
            p.up && p.meta.is_some()
        } else {
            p.polled && !p.up
        }
    })
    .await;
    assert_eq!(sim.signing_regions(W1), ["eu-west-1".to_string()].into());
    assert_eq!(sim.signing_regions(W2), ["us-east-1".to_string()].into());
    let w1 = r.store.portal(W1).expect("w1");
    assert_eq!(active(&w1).sessions, 3);
    let meta = w1.meta.clone().expect("portal info");
    assert_eq!(meta.region, "eu-west-1");
    assert_eq!(meta.arn, w1_arn);
    let w2 = r.store.portal(W2).expect("w2");
    assert!(
        errors(&w2, operation::LIST_SESSIONS, "ResourceNotFoundException") >= 1,
        "{:?}",
        w2.api_errors
    );
    r.stop().await;
}

/// Log lines written by the exporter in this test process.
fn captured_logs() -> &'static Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let sink = buf.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_max_level(tracing::Level::INFO)
            .with_writer(move || LogWriter(sink.clone()))
            .finish();
        tracing::subscriber::set_global_default(subscriber).expect("one global subscriber");
        buf
    })
}

struct LogWriter(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LogWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .write_all(data)?;
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_portal_denied_hides_portal_info_only_and_warns_once() {
    let logs = captured_logs();
    let base = now_ms();
    let (sim, running) = serve(
        SimConfig::new(34)
            .with_clock(Clock::manual(base))
            .with_portal(portal(G1, "eu-west-1", "222222222222", 2, base))
            .with_portal(portal(G2, "eu-west-1", "222222222222", 3, base)),
    )
    .await;
    sim.set_operation_error(G2, operation::GET_PORTAL, Some("AccessDeniedException"));
    let dir = tempfile::tempdir().expect("tempdir");
    // Discovered portals refresh their metadata every `refresh` (1 s): GetPortal is retried
    // several times, and denied each time. Two portals polled every second ask for more than the
    // default 5 requests/s, and GetPortal only gets what the polls leave: the limit is raised so
    // that it is the denial that is tested, not the rate limit's priority.
    let path = write(
        dir.path(),
        "global:\n  interval: 1s\n  max_requests_per_second: 100\ndiscovery:\n  - regions: [eu-west-1]\n    refresh: 1s\n",
    );
    let clients = Clients::with_static_credentials("us-east-1", &running.endpoint_url()).await;
    let r = run(&path, &clients).await;
    r.wait(&[G1, G2], |p| {
        if p.portal_id == G2 {
            p.up && errors(p, operation::GET_PORTAL, "AccessDeniedException") >= 3
        } else {
            p.up && p.meta.is_some()
        }
    })
    .await;
    let w2 = r.store.portal(G2).expect("w2");
    assert!(w2.meta.is_none());
    assert_eq!(active(&w2).sessions, 3);
    assert!(w2.last_error.is_none(), "{:?}", w2.last_error);
    let text = r.text();
    let info: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("workspacesweb_portal_info{"))
        .collect();
    assert_eq!(info.len(), 1, "{info:?}");
    assert!(info[0].contains(G1) && !info[0].contains(G2), "{info:?}");
    assert!(
        !text.lines().any(
            |l| l.starts_with("workspacesweb_portal_max_concurrent_sessions{") && l.contains(G2)
        ),
        "{text}"
    );
    assert_eq!(
        up_values(&text).get(G2).map(String::as_str),
        Some("1"),
        "{text}"
    );
    r.stop().await;
    let logs = String::from_utf8_lossy(&logs.lock().unwrap_or_else(|e| e.into_inner())).to_string();
    let warnings: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("WARN") && l.contains(G2) && l.contains("GetPortal"))
        .collect();
    assert_eq!(warnings.len(), 1, "{logs}");
    assert!(warnings[0].contains("not permitted"), "{}", warnings[0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_portal_gone_from_discovery_loses_its_series_and_static_labels_win() {
    let base = now_ms();
    let (sim, running) = serve(
        SimConfig::new(35)
            .with_clock(Clock::manual(base))
            .with_portal(portal(W1, "eu-west-1", "222222222222", 1, base))
            .with_portal(portal(W2, "eu-west-1", "222222222222", 2, base))
            .with_portal(portal(W3, "eu-west-1", "222222222222", 3, base)),
    )
    .await;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write(
        dir.path(),
        &format!(
            "global:
  interval: 1s
  labels: {{env: test}}
portals:
  - id: {W1}
    region: eu-west-1
    labels: {{origin: static}}
discovery:
  - regions: [eu-west-1]
    refresh: 1s
    labels: {{origin: discovered}}
"
        ),
    );
    let clients = Clients::with_static_credentials("us-east-1", &running.endpoint_url()).await;
    let r = run(&path, &clients).await;
    r.wait(&[W1, W2, W3], |p| p.up).await;
    let w1 = r.store.portal(W1).expect("w1");
    assert_eq!(
        w1.labels,
        vec![
            ("env".to_string(), "test".to_string()),
            ("origin".to_string(), "static".to_string())
        ]
    );
    let w2 = r.store.portal(W2).expect("w2");
    assert!(w2.labels.contains(&("origin".into(), "discovered".into())));
    assert!(r.text().contains(W2));

    // W2 is deleted: the next listing no longer returns it, and every series of it goes.
    sim.set_portal_removed(W2, true);
    r.wait(&[W1, W3], |p| p.up).await;
    let text = r.text();
    assert!(!text.contains(W2), "{text}");
    assert!(text.contains(W3) && text.contains(W1));
    assert_eq!(up_values(&text).len(), 2, "{text}");
    // W1 stays static even though discovery lists it too.
    assert!(
        r.store
            .portal(W1)
            .is_some_and(|p| p.labels.contains(&("origin".into(), "static".into())))
    );

    // W2 is listed again: discovery adds it back as a new portal.
    sim.set_portal_removed(W2, false);
    r.wait(&[W1, W2, W3], |p| p.up).await;
    let w2 = r.store.portal(W2).expect("w2 again");
    assert_eq!(active(&w2).sessions, 2);
    assert!(w2.labels.contains(&("origin".into(), "discovered".into())));
    r.stop().await;
}

/// The real binary, configured only by the environment (`AWS_ENDPOINT_URL` and static keys, as
/// with the default credential chain): `role_arn` + `external_id` are assumed through STS at the
/// generic endpoint, and the portal's requests are signed with the assumed key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_assumes_the_role_through_aws_endpoint_url() {
    let base = now_ms();
    let (sim, running) = serve(
        SimConfig::new(36)
            .with_clock(Clock::manual(base))
            .with_portal(portal(W1, "eu-west-1", "222222222222", 2, base)),
    )
    .await;
    sim.allow_role(ROLE_WEST, Some(WEST_EXTERNAL_ID));
    sim.set_portal_owner(W1, Some(ROLE_WEST));
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write(
        dir.path(),
        &format!(
            "global:\n  interval: 1s\nportals:\n  - id: {W1}\n    region: eu-west-1\n    role_arn: {ROLE_WEST}\n    external_id: {WEST_EXTERNAL_ID}\n"
        ),
    );
    let endpoint = running.endpoint_url();
    let text = tokio::task::spawn_blocking(move || {
        let addr = format!("127.0.0.1:{}", free_port());
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_workspacesweb-exporter"));
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("AWS_") {
                cmd.env_remove(name);
            }
        }
        cmd.args([
            "--config.file",
            path.to_str().expect("utf-8 path"),
            "--web.listen-address",
            &addr,
        ])
        .envs([
            ("AWS_ENDPOINT_URL", endpoint.as_str()),
            ("AWS_ACCESS_KEY_ID", "AKIDBINARYEXAMPLE"),
            ("AWS_SECRET_ACCESS_KEY", "secret"),
            ("AWS_REGION", "us-east-1"),
            ("AWS_EC2_METADATA_DISABLED", "true"),
            ("AWS_CONFIG_FILE", "/nonexistent"),
            ("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent"),
        ])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
        let _child = Child(cmd.spawn().expect("exporter starts"));
        // Hang guard on the process's own signals: ready, then a scrape showing the portal up
        // after its second poll.
        poll_until(Duration::from_secs(45), || {
            let (status, _, body) = http_get(&addr, "/metrics").ok()?;
            let text = String::from_utf8(body).ok()?;
            let polls = sum_samples(&text, "workspacesweb_api_requests_total{", "ListSessions");
            (status == 200
                && up_values(&text).get(W1).map(String::as_str) == Some("1")
                && polls >= 4.0)
                .then_some(text)
        })
        .expect("the portal comes up through the assumed role")
    })
    .await
    .expect("blocking part");
    assert_eq!(assume_calls(&sim, ROLE_WEST, "AKIDBINARYEXAMPLE"), (1, 1));
    assert_eq!(signer_roles(&sim, W1), [Some(ROLE_WEST.to_string())].into());
    assert_eq!(
        sum_samples(&text, "workspacesweb_api_requests_total{", ASSUME_ROLE),
        1.0,
        "{text}"
    );
}
