//! Organization discovery (SPEC section 12) through the real SDKs against the simulator's
//! organization: accounts listed with Organizations, each account's member role assumed with
//! STS, `ListPortals` and every poll signed with that account's credentials; accounts that come
//! and go; denials; credentials refreshed before they expire; sharding; a reload from static
//! roles; the demo.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_config::{BehaviorVersion, Region};
use aws_credential_types::Credentials;
use aws_credential_types::provider::SharedCredentialsProvider;
use workspacesweb_exporter::aws::{ASSUME_ROLE, Clients, LIST_ACCOUNTS, LIST_PORTALS};
use workspacesweb_exporter::clock::now_ms;
use workspacesweb_exporter::snapshot::{PortalSnapshot, Store};
use workspacesweb_sim::{
    AccountSpec, AccountState, Clock, DEMO_MEMBER_ROLE, Faults, OrgSpec, PortalSpec, SimConfig,
    SimSession, Simulator,
};

use crate::common::*;

const ROLE: &str = DEMO_MEMBER_ROLE;
const MGMT: &str = "100000000001";
const A: &str = "100000000002";
const B: &str = "100000000003";
const C: &str = "100000000004";
const D: &str = "100000000005";
const E: &str = "100000000006";
const F: &str = "100000000007";

/// The portal id of account `account`'s portal number `n`.
fn portal_of(account: &str, n: u8) -> String {
    format!("0000000{n}-0000-4000-8000-{account}")
}

/// A scripted portal of `account` in `region` with one session running.
fn portal(account: &str, n: u8, region: &str) -> PortalSpec {
    let id = portal_of(account, n);
    let mut spec = scripted(&id, 1, now_ms(), 1);
    spec.account = account.to_string();
    spec.region = region.to_string();
    spec
}

/// A simulator on `seed` serving an organization of [`MGMT`] and `accounts` under its root, with
/// the member role [`ROLE`] in each.
fn organization(accounts: &[&str], seed: u64) -> SimConfig {
    let mut org = OrgSpec::new(MGMT).with_member_role(ROLE, None);
    for a in accounts {
        org = org.with_account(AccountSpec::new(*a, format!("account {a}")));
    }
    SimConfig::new(seed).with_organization(org)
}

/// An organization entry with member role [`ROLE`] over `regions` at `endpoint`, refreshed every
/// `refresh`, with `org` (more `organization` keys, each line indented by 6 spaces) and `more`
/// (top-level YAML after it).
fn org_yaml(endpoint: &str, regions: &str, refresh: &str, org: &str, more: &str) -> String {
    format!(
        "global:\n  interval: 1s\n  max_requests_per_second: 1000\n  concurrency: 8\n\
         discovery:\n  - organization:\n      role_name: {ROLE}\n{org}    regions: [{regions}]\n    endpoint_url: {endpoint}\n    refresh: {refresh}\n{more}"
    )
}

fn write(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("exporter.yaml");
    std::fs::write(&path, text).expect("write config");
    path
}

/// Waits (60 s hang guard) until `pred` holds for the store, re-checking at every change.
async fn until(store: &Arc<Store>, what: &str, mut pred: impl FnMut(&Store) -> bool) {
    let s = store.clone();
    let waited = tokio::time::timeout(
        Duration::from_secs(60),
        store.status().wait_for(|| pred(&s)),
    )
    .await;
    assert!(
        waited.is_ok(),
        "never {what}: portals {:?}, discovery {:?}",
        store
            .portals()
            .iter()
            .map(|p| (&p.portal_id, p.up))
            .collect::<Vec<_>>(),
        store.discovery()
    );
}

/// The account ids of discovery entry 0's account set (`account_info{source="0"}`).
fn account_set(store: &Store) -> Option<BTreeSet<String>> {
    store
        .discovery()
        .into_iter()
        .find(|d| d.labels == [("source".to_string(), "0".to_string())])
        .and_then(|d| d.accounts)
        .map(|a| a.into_iter().map(|(id, _)| id).collect())
}

/// The errors of (`operation`, `code`) in the discovery series of entry 0 with `account` (or
/// none) and `region`.
fn discovery_errors(
    store: &Store,
    account: Option<&str>,
    region: &str,
    operation: &str,
    code: &str,
) -> u64 {
    let mut labels = vec![("discovery".to_string(), "0".to_string())];
    if let Some(a) = account {
        labels.push(("account_id".to_string(), a.to_string()));
    }
    labels.push(("region".to_string(), region.to_string()));
    store
        .discovery()
        .into_iter()
        .filter(|d| d.labels == labels)
        .map(|d| {
            d.api_errors
                .get(&(operation.to_string(), code.to_string()))
                .copied()
                .unwrap_or(0)
        })
        .sum()
}

fn ids<S: AsRef<str>>(ids: &[S]) -> BTreeSet<String> {
    ids.iter().map(|s| s.as_ref().to_string()).collect()
}

fn published(store: &Store) -> BTreeSet<String> {
    store
        .portals()
        .iter()
        .map(|p| p.portal_id.clone())
        .collect()
}

fn started(p: &PortalSnapshot) -> u64 {
    p.totals.as_ref().map_or(0, |t| t.started)
}

/// Accounts whose member role the simulator's STS issued credentials for, with how many times.
fn assumed(sim: &Simulator) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for call in sim.assume_role_calls() {
        if call.issued_key_id.is_some() {
            let account = call
                .role_arn
                .split(':')
                .nth(4)
                .unwrap_or_default()
                .to_string();
            *out.entry(account).or_default() += 1;
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_accounts_in_two_regions_each_portal_polled_with_its_own_accounts_credentials() {
    let regions = ["us-east-1", "eu-west-1"];
    let env = start(SimConfig::generated_organization(60, 60, &regions, 1)).await;
    let org = env.sim.organization().expect("an organization");
    // Only known keys: the exporter's base key is a user of the management account, which may
    // list the organization but sees only its own portals; any other account's portal polled
    // with it, or with another account's role, would answer AccessDenied.
    env.sim.require_known_keys(true);
    let user = format!("arn:aws:iam::{}:user/exporter", org.management_account);
    env.sim.add_access_key("AKIDEXAMPLE", &user).expect("key");
    let dir = tempfile::tempdir().expect("tempdir");
    let yaml = org_yaml(
        &env.running.endpoint_url(),
        "us-east-1, eu-west-1",
        "1h",
        "",
        "",
    );
    let cl = run_control_loop(&write(dir.path(), &yaml), &env.clients).await;

    let portals = env.sim.portals();
    assert_eq!(portals.len(), 120);
    let all: Vec<&str> = portals.iter().map(|p| p.id.as_str()).collect();
    cl.wait(&all, |p| p.up && p.meta.is_some()).await;
    until(&cl.store, "ready", |s| s.status().ready()).await;
    for p in &portals {
        let signers = env.sim.signers(&p.id);
        assert!(!signers.is_empty(), "{} never polled", p.id);
        for key in signers.keys() {
            assert_eq!(
                env.sim.key_account(key).as_deref(),
                Some(p.account.as_str()),
                "{} signed with a key of another account",
                p.id
            );
        }
        let snap = cl.store.portal(&p.id).expect("published");
        assert_eq!(
            snap.meta.as_ref().map(|m| m.account_id()),
            Some(p.account.as_str())
        );
        assert!(
            snap.api_errors.is_empty(),
            "{}: {:?}",
            p.id,
            snap.api_errors
        );
    }
    // One AssumeRole per account: its credentials serve both regions, discovery and polls.
    let assumed = assumed(&env.sim);
    let accounts: BTreeSet<String> = org.accounts.iter().map(|a| a.id.clone()).collect();
    assert_eq!(assumed.keys().cloned().collect::<BTreeSet<_>>(), accounts);
    assert!(assumed.values().all(|&n| n == 1), "{assumed:?}");
    assert_eq!(account_set(&cl.store), Some(accounts));
    let text = cl.text();
    assert!(
        text.contains("workspacesweb_discovery_accounts{source=\"0\"} 60\n"),
        "{text}"
    );
    let name = &org.accounts[1];
    assert!(
        text.contains(&format!(
            "workspacesweb_account_info{{source=\"0\",account_id=\"{}\",account_name=\"{}\"}} 1\n",
            name.id, name.name
        )),
        "{text}"
    );
    // Requests are summed per region (one series each, not one per account); one ListAccounts
    // page per 20 accounts, one ListPortals per account and region.
    assert!(text.contains(&format!(
        "workspacesweb_api_requests_total{{discovery=\"0\",region=\"us-east-1\",operation=\"{LIST_ACCOUNTS}\"}} 3\n"
    )), "{text}");
    for region in regions {
        assert!(text.contains(&format!(
            "workspacesweb_api_requests_total{{discovery=\"0\",region=\"{region}\",operation=\"{LIST_PORTALS}\"}} 60\n"
        )), "{text}");
    }
    cl.stop().await;
}

/// The organization of [`accounts_come_and_go_at_the_next_refresh`]: OU `prod` holds A, C, E
/// and OU `team` (B, D); the management account and Z sit under the root. One portal each.
fn changing_org() -> (SimConfig, String, String) {
    let mut org = OrgSpec::new(MGMT).with_member_role(ROLE, None);
    let root = org.root_id.clone();
    let prod = org.add_unit("prod", &root).expect("root");
    let team = org.add_unit("team", &prod).expect("prod");
    for (id, unit) in [(A, &prod), (B, &team), (C, &prod), (D, &team), (E, &prod)] {
        org = org.with_account(AccountSpec::new(id, format!("account {id}")).in_unit(unit.clone()));
    }
    let z = "100000000099";
    org = org.with_account(AccountSpec::new(z, "outside"));
    let mut cfg = SimConfig::new(7).with_organization(org);
    for account in [MGMT, A, B, C, D, E, z] {
        cfg = cfg.with_portal(portal(account, 1, "us-east-1"));
    }
    (cfg, prod, team)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accounts_come_and_go_at_the_next_refresh() {
    let (cfg, prod, team) = changing_org();
    let env = start(cfg).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let endpoint = env.running.endpoint_url();
    let config = |exclude: &str| {
        let org = format!("      ous: [{prod}]\n      exclude_accounts: [{exclude}]\n");
        org_yaml(&endpoint, "us-east-1", "1s", &org, "")
    };
    let path = write(dir.path(), &config(""));
    let cl = run_control_loop(&path, &env.clients).await;
    // Under prod, recursively (team is inside it): A to E; not the management account, not Z.
    let mut accounts = ids(&[A, B, C, D, E]);
    let portals = |accounts: &BTreeSet<String>| -> BTreeSet<String> {
        accounts.iter().map(|a| portal_of(a, 1)).collect()
    };
    let want = portals(&accounts);
    let want_ids: Vec<&str> = want.iter().map(String::as_str).collect();
    cl.wait(&want_ids, |p| p.up).await;
    // A session starts on every portal after its first poll: each ledger counts it as a start.
    // A portal whose task restarted would count it as its baseline instead (started 0): so
    // started == 1 at every step below says the ledgers of the accounts that stay were kept.
    for id in &want {
        let s = SimSession::new(SimSession::id_for(99), "late", now_ms());
        env.sim.add_session(id, s).expect("portal");
    }
    cl.wait(&want_ids, |p| started(p) == 1).await;
    assert_eq!(account_set(&cl.store), Some(accounts.clone()));

    let step = |accounts: &BTreeSet<String>| {
        let want = portals(accounts);
        let accounts = accounts.clone();
        move |s: &Store| {
            published(s) == want
                && account_set(s).as_ref() == Some(&accounts)
                && s.portals().iter().all(|p| p.up)
        }
    };
    let kept = |store: &Store, accounts: &[&str]| {
        for a in accounts {
            let p = store.portal(&portal_of(a, 1)).expect("stays");
            assert_eq!(started(&p), 1, "the ledger of {a} was kept");
        }
    };
    // An account joins (under team): its portal comes.
    env.sim
        .add_account(
            AccountSpec::new(F, "new").in_unit(team),
            vec![portal(F, 1, "us-east-1")],
        )
        .expect("add");
    accounts.insert(F.into());
    until(&cl.store, "added F", step(&accounts)).await;
    kept(&cl.store, &[A, B, C, D, E]);
    // One is suspended: its portal goes.
    env.sim
        .set_account_state(D, AccountState::Suspended)
        .expect("suspend");
    accounts.remove(D);
    until(&cl.store, "dropped suspended D", step(&accounts)).await;
    kept(&cl.store, &[A, B, C, E]);
    // One moves out of the selected OU.
    let root = env.sim.organization().expect("org").root_id;
    env.sim.move_account(E, &root).expect("move");
    accounts.remove(E);
    until(&cl.store, "dropped E, moved out of prod", step(&accounts)).await;
    kept(&cl.store, &[A, B, C]);
    // One leaves the organization.
    env.sim.remove_account(B).expect("remove");
    accounts.remove(B);
    until(
        &cl.store,
        "dropped B, gone from the organization",
        step(&accounts),
    )
    .await;
    kept(&cl.store, &[A, C]);
    // One is excluded by a reload.
    std::fs::write(&path, config(&format!("\"{C}\""))).expect("rewrite");
    cl.reload().await.expect("reload");
    accounts.remove(C);
    until(&cl.store, "dropped excluded C", step(&accounts)).await;
    kept(&cl.store, &[A]);
    assert!(cl.store.portal(&portal_of(F, 1)).is_some_and(|p| p.up));
    cl.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn denials_keep_the_last_good_set_and_touch_only_their_account() {
    let cfg = organization(&[A, B], 8)
        .with_portal(portal(A, 1, "us-east-1"))
        .with_portal(portal(A, 2, "eu-west-1"))
        .with_portal(portal(B, 1, "us-east-1"));
    let env = start(cfg).await;
    // B's member role cannot be assumed.
    env.sim.set_assume_role_error(B, Some("AccessDenied"));
    let dir = tempfile::tempdir().expect("tempdir");
    let yaml = org_yaml(
        &env.running.endpoint_url(),
        "us-east-1, eu-west-1",
        "1s",
        "",
        "",
    );
    let cl = run_control_loop(&write(dir.path(), &yaml), &env.clients).await;
    let (a1, a2, b1) = (portal_of(A, 1), portal_of(A, 2), portal_of(B, 1));
    cl.wait(&[&a1, &a2], |p| p.up).await;
    until(&cl.store, "ready", |s| s.status().ready()).await;
    // Only B's portal is missing; the failure is counted for B in each region, not for A.
    assert_eq!(published(&cl.store), ids(&[&a1, &a2]));
    assert_eq!(account_set(&cl.store), Some(ids(&[MGMT, A, B])));
    for region in ["us-east-1", "eu-west-1"] {
        assert!(discovery_errors(&cl.store, Some(B), region, ASSUME_ROLE, "AccessDenied") >= 1);
        assert_eq!(
            discovery_errors(&cl.store, Some(A), region, ASSUME_ROLE, "AccessDenied"),
            0
        );
    }
    let text = cl.text();
    assert!(
        text.contains(&format!("workspacesweb_api_request_errors_total{{discovery=\"0\",account_id=\"{B}\",region=\"us-east-1\",operation=\"AssumeRole\",error=\"AccessDenied\"}} ")),
        "{text}"
    );

    // ListPortals denied for A in eu-west-1: that pair keeps its last good portals.
    env.sim
        .set_list_portals_error("eu-west-1", Some(A), Some("AccessDeniedException"));
    until(&cl.store, "counted A's ListPortals denial", |s| {
        discovery_errors(
            s,
            Some(A),
            "eu-west-1",
            LIST_PORTALS,
            "AccessDeniedException",
        ) >= 2
    })
    .await;
    assert_eq!(published(&cl.store), ids(&[&a1, &a2]));

    // ListAccounts denied: the last good account set stays (and is listed again, so B's portal
    // comes once its role can be assumed), the error is counted without an account.
    env.sim
        .set_organizations_faults(Some(LIST_ACCOUNTS), Faults::error("AccessDeniedException"));
    until(&cl.store, "counted the ListAccounts denial", |s| {
        discovery_errors(s, None, "us-east-1", LIST_ACCOUNTS, "AccessDeniedException") >= 1
    })
    .await;
    env.sim.set_assume_role_error(B, None);
    cl.wait(&[&a1, &a2, &b1], |p| p.up).await;
    assert_eq!(account_set(&cl.store), Some(ids(&[MGMT, A, B])));
    assert!(
        discovery_errors(
            &cl.store,
            None,
            "us-east-1",
            LIST_ACCOUNTS,
            "AccessDeniedException"
        ) >= 1
    );
    cl.stop().await;
}

/// Waits until portal `id` has been polled twice more (a poll lists Active, then Terminated).
async fn two_more_polls(store: &Store, id: &str) {
    let before = store.portal(id).map_or(0, |p| requests(&p, "ListSessions"));
    wait_portal(store, id, |p| {
        p.up && requests(p, "ListSessions") >= before + 4
    })
    .await;
}

/// The SDK's time source on a simulator clock: the exporter's credential cache reads it.
#[derive(Debug)]
struct SimTime(Clock);

impl aws_smithy_async::time::TimeSource for SimTime {
    fn now(&self) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_millis(self.0.now_ms().max(0) as u64)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_are_refreshed_five_minutes_before_they_expire() {
    let org = OrgSpec::new(MGMT)
        .with_member_role(ROLE, None)
        .with_account(AccountSpec::new(A, "a"));
    let env = start(SimConfig::new(9).with_organization(org).with_portal(portal(
        A,
        1,
        "us-east-1",
    )))
    .await;
    // Credentials of 10 minutes on a manual clock, which the exporter's SDK reads too.
    let clock = Clock::manual(now_ms());
    env.sim.set_credential_clock(clock.clone());
    env.sim
        .set_credential_lifetime(Some(Duration::from_secs(600)));
    let config = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(SharedCredentialsProvider::new(Credentials::new(
            "AKIDEXAMPLE",
            "secret",
            None,
            None,
            "static",
        )))
        .endpoint_url(env.running.endpoint_url())
        .time_source(SimTime(clock.clone()))
        .load()
        .await;
    let clients = Clients::new(config);
    let dir = tempfile::tempdir().expect("tempdir");
    let yaml = org_yaml(&env.running.endpoint_url(), "us-east-1", "1h", "", "");
    let cl = run_control_loop(&write(dir.path(), &yaml), &clients).await;
    let id = portal_of(A, 1);
    let issued = |sim: &Simulator| -> Vec<String> {
        sim.assume_role_calls()
            .into_iter()
            .filter(|c| c.role_arn.contains(A))
            .filter_map(|c| c.issued_key_id)
            .collect()
    };
    cl.wait(&[&id], |p| p.up).await;
    assert_eq!(
        issued(&env.sim).len(),
        1,
        "discovery and the polls share the credentials"
    );
    // 4 minutes later they have 6 minutes left: still used.
    clock.advance(240_000);
    two_more_polls(&cl.store, &id).await;
    assert_eq!(issued(&env.sim).len(), 1);
    // 61 s later they have 4:59 left: replaced before the next request, which is signed with
    // the new key.
    clock.advance(61_000);
    until(&cl.store, "assumed the role again", |_| {
        issued(&env.sim).len() == 2
    })
    .await;
    let second = issued(&env.sim)[1].clone();
    let sim = &env.sim;
    until(&cl.store, "polled with the new key", |_| {
        sim.signers(&id).contains_key(&second)
    })
    .await;
    // Past the first credentials' expiry (10:01): nothing was refused, the portal stays up.
    clock.advance(300_000);
    two_more_polls(&cl.store, &id).await;
    assert_eq!(
        issued(&env.sim).len(),
        3,
        "the second credentials had 4 minutes left"
    );
    let p = cl.store.portal(&id).expect("published");
    assert!(p.up && p.api_errors.is_empty(), "{:?}", p.api_errors);
    assert!(
        cl.store.discovery().iter().all(|d| d.api_errors.is_empty()),
        "{:?}",
        cl.store.discovery()
    );
    cl.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_cover_every_portal_of_the_organization_once() {
    let env = start(SimConfig::generated_organization(
        10,
        12,
        &["us-east-1", "eu-west-1"],
        1,
    ))
    .await;
    let dirs: Vec<_> = (0..3)
        .map(|_| tempfile::tempdir().expect("tempdir"))
        .collect();
    let mut replicas = Vec::new();
    for (i, dir) in dirs.iter().enumerate() {
        let sharding = format!("sharding:\n  total: 3\n  index: {i}\n");
        let yaml = org_yaml(
            &env.running.endpoint_url(),
            "us-east-1, eu-west-1",
            "1h",
            "",
            &sharding,
        );
        let clients =
            Clients::with_static_credentials("us-east-1", &env.running.endpoint_url()).await;
        replicas.push(run_control_loop(&write(dir.path(), &yaml), &clients).await);
    }
    for r in &replicas {
        until(&r.store, "ready", |s| {
            s.status().ready() && s.portals().iter().all(|p| p.up)
        })
        .await;
    }
    let all = ids(&env
        .sim
        .portals()
        .iter()
        .map(|p| p.id.clone())
        .collect::<Vec<_>>());
    assert_eq!(all.len(), 24);
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for r in &replicas {
        let owned = published(&r.store);
        assert!(!owned.is_empty(), "every replica has a share");
        for id in owned {
            *seen.entry(id).or_default() += 1;
        }
        // Every replica lists the whole organization: sharding splits portals, not accounts.
        assert_eq!(account_set(&r.store).map(|a| a.len()), Some(12));
    }
    assert_eq!(seen.keys().cloned().collect::<BTreeSet<_>>(), all);
    assert!(seen.values().all(|&n| n == 1), "{seen:?}");
    for r in replicas {
        r.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_from_static_roles_to_organization_discovery_keeps_the_counters() {
    let cfg = organization(&[A, B], 11)
        .with_portal(portal(A, 1, "us-east-1"))
        .with_portal(portal(B, 1, "us-east-1"));
    let env = start(cfg).await;
    let endpoint = env.running.endpoint_url();
    let (a1, b1) = (portal_of(A, 1), portal_of(B, 1));
    let role = |account: &str| format!("arn:aws:iam::{account}:role/{ROLE}");
    let static_yaml = format!(
        "global:\n  interval: 1s\n  max_requests_per_second: 1000\nportals:\n  - id: {a1}\n    region: us-east-1\n    role_arn: {}\n    endpoint_url: {endpoint}\n  - id: {b1}\n    region: us-east-1\n    role_arn: {}\n    endpoint_url: {endpoint}\n",
        role(A),
        role(B)
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write(dir.path(), &static_yaml);
    let cl = run_control_loop(&path, &env.clients).await;
    cl.wait(&[&a1, &b1], |p| p.up).await;
    for id in [&a1, &b1] {
        let s = SimSession::new(SimSession::id_for(99), "late", now_ms());
        env.sim.add_session(id, s).expect("portal");
    }
    cl.wait(&[&a1, &b1], |p| started(p) == 1).await;
    // The same portals, now found by organization discovery of their accounts.
    std::fs::write(&path, org_yaml(&endpoint, "us-east-1", "1h", "", "")).expect("rewrite");
    cl.reload().await.expect("reload");
    until(&cl.store, "found by organization discovery", |s| {
        s.status().ready()
            && account_set(s) == Some(ids(&[MGMT, A, B]))
            && published(s) == ids(&[&a1, &b1])
    })
    .await;
    for id in [&a1, &b1] {
        let p = cl.store.portal(id).expect("stays");
        assert_eq!(started(&p), 1, "{id}: the counters continue");
        assert!(p.up);
    }
    cl.stop().await;
}

#[cfg(feature = "demo")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_finds_its_portals_in_two_accounts_by_organization_discovery() {
    use workspacesweb_exporter::demo::Demo;
    use workspacesweb_exporter::reconcile::Reconciler;
    use workspacesweb_sim::{DEMO_MANAGEMENT_ACCOUNT, DEMO_MEMBER_ACCOUNT};
    let demo = Demo::start(1).await.expect("demo");
    assert!(
        demo.config.portals.is_empty(),
        "no portal is configured by hand"
    );
    let clients = Clients::with_static_credentials("us-east-1", &demo.endpoint_url()).await;
    let store = Arc::new(Store::new());
    let r = Reconciler::start(demo.config.clone(), 0, clients, store.clone(), None).await;
    let (_commands, rx) = tokio::sync::mpsc::channel(1);
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(r.run(rx, stop_rx));
    until(&store, "ready with every demo portal", |s| {
        s.status().ready() && s.portals().len() == 3
    })
    .await;
    assert_eq!(
        account_set(&store),
        Some(ids(&[DEMO_MANAGEMENT_ACCOUNT, DEMO_MEMBER_ACCOUNT]))
    );
    for p in demo.sim.portals() {
        let signers = demo.sim.signers(&p.id);
        assert!(!signers.is_empty(), "{}", p.display_name);
        for key in signers.keys() {
            assert_eq!(
                demo.sim.key_account(key).as_deref(),
                Some(p.account.as_str())
            );
        }
    }
    let _ = stop.send(true);
    let _ = task.await;
}

#[test]
fn config_check_summarises_an_organization_entry_and_locates_its_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let good = super::cli::config_file(
        dir.path(),
        "org.yaml",
        "discovery:\n  - organization:\n      role_name: workspacesweb-exporter\n      external_id: secret-member-id\n      ous: [ou-ab12-cdef3456]\n      exclude_accounts: [\"222222222222\"]\n    regions: [us-east-1, eu-west-1]\n",
    );
    let out = super::cli::check(&good);
    assert_eq!(out.code(), Some(0), "stderr:\n{}", out.stderr);
    assert!(
        out.stdout.contains("  - organization role_name=workspacesweb-exporter external_id=(set, not shown) ous=[ou-ab12-cdef3456] exclude_accounts=[222222222222] regions=[us-east-1, eu-west-1] refresh=10m"),
        "{}",
        out.stdout
    );
    assert!(!out.stdout.contains("secret-member-id"), "{}", out.stdout);
    let bad = super::cli::config_file(
        dir.path(),
        "bad.yaml",
        "discovery:\n  - organization:\n      role_name: r\n      exclude_accounts: [222222222222]\n    regions: [us-east-1]\n",
    );
    let out = super::cli::check(&bad);
    assert_eq!(out.code(), Some(1), "stdout:\n{}", out.stdout);
    assert!(
        out.stderr.contains(&format!(
            "{}:4:26: discovery[0].organization.exclude_accounts[0]: account id 222222222222 must be in quotes",
            bad.display()
        )),
        "{}",
        out.stderr
    );
}
