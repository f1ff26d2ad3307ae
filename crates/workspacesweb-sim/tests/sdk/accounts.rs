//! Accounts × regions own portals: credentials issued by `AssumeRole` of an account's member role
//! see only that account's portals, other accounts' portals refuse them; the demo organization;
//! per-account `AssumeRole` faults; the scale generator.

use workspacesweb_sim::{
    AccountSpec, DEMO_MANAGEMENT_ACCOUNT, DEMO_MEMBER_ACCOUNT, DEMO_MEMBER_ROLE, OrgSpec,
    SimConfig, operation,
};

use crate::common::*;

fn member_role(account: &str) -> String {
    format!("arn:aws:iam::{account}:role/{DEMO_MEMBER_ROLE}")
}

#[tokio::test]
async fn the_demo_is_two_accounts_whose_keys_see_their_own_portals() {
    let cfg = SimConfig::demo(1);
    // The demo portals are those of the flat demo: same ids, names and models.
    let flat = SimConfig::generated(1, 3);
    for (a, b) in cfg.portals.iter().zip(&flat.portals) {
        assert_eq!(
            (&a.id, &a.display_name, &a.model),
            (&b.id, &b.display_name, &b.model)
        );
    }
    let accounts: Vec<&str> = cfg.portals.iter().map(|p| p.account.as_str()).collect();
    assert_eq!(
        accounts,
        [
            DEMO_MANAGEMENT_ACCOUNT,
            DEMO_MANAGEMENT_ACCOUNT,
            DEMO_MEMBER_ACCOUNT
        ]
    );
    let (sim, running) = serve(cfg).await;
    let org = sim.organization().expect("the demo serves an organization");
    assert_eq!(org.accounts.len(), 2);
    let base = sts(&running, creds("AKIDEXAMPLE", None));
    let mgmt = assume(&base, &member_role(DEMO_MANAGEMENT_ACCOUNT), None)
        .await
        .expect("mgmt");
    let member = assume(&base, &member_role(DEMO_MEMBER_ACCOUNT), None)
        .await
        .expect("member");
    let portals = sim.portals();
    let mut of_mgmt: Vec<String> = portals
        .iter()
        .filter(|p| p.account == DEMO_MANAGEMENT_ACCOUNT)
        .map(|p| p.id.clone())
        .collect();
    of_mgmt.sort();
    let flaky = portals
        .iter()
        .find(|p| p.display_name == "flaky")
        .expect("flaky")
        .clone();
    assert_eq!(
        listed(&wsw(&running, "us-east-1", mgmt.clone())).await,
        of_mgmt
    );
    assert_eq!(
        listed(&wsw(&running, "us-east-1", member.clone())).await,
        std::slice::from_ref(&flaky.id)
    );
    // Unknown keys (the exporter's demo credentials) see every portal, as before.
    assert_eq!(
        listed(&wsw(&running, "us-east-1", creds("AKIDEXAMPLE", None)))
            .await
            .len(),
        3
    );
    // Another account's portal refuses the key, with IAM's cross-account message.
    let as_mgmt = wsw(&running, "us-east-1", mgmt.clone());
    let f = must_fail(as_mgmt.list_sessions().portal_id(&flaky.id).send().await);
    assert_eq!((f.code.as_str(), f.status), ("AccessDeniedException", 403));
    assert_eq!(
        f.message,
        format!(
            "User: arn:aws:sts::{DEMO_MANAGEMENT_ACCOUNT}:assumed-role/{DEMO_MEMBER_ROLE}/sim-test is not authorized to perform: workspaces-web:ListSessions on resource: {} because no resource-based policy allows the workspaces-web:ListSessions action",
            flaky.arn
        )
    );
    let f = must_fail(as_mgmt.get_portal().portal_arn(&flaky.arn).send().await);
    assert_eq!(f.code, "AccessDeniedException");
    assert_eq!(
        sim.key_account(member.access_key_id()).as_deref(),
        Some(DEMO_MEMBER_ACCOUNT)
    );
    assert_eq!(sim.signers(&flaky.id).get(mgmt.access_key_id()), Some(&2));
}

#[tokio::test]
async fn member_roles_check_the_external_id_and_take_per_account_faults() {
    let org = OrgSpec::new("111111111111")
        .with_member_role("wsw", Some("ext-2026"))
        .with_account(AccountSpec::new("222222222222", "a"))
        .with_account(AccountSpec::new("333333333333", "b"));
    let (sim, running) = serve(SimConfig::new(1).with_organization(org)).await;
    let base = sts(&running, creds("AKIDBASE", None));
    let role = |a: &str| format!("arn:aws:iam::{a}:role/wsw");
    assert!(
        assume(&base, &role("222222222222"), Some("ext-2026"))
            .await
            .is_ok()
    );
    let f = assume(&base, &role("222222222222"), Some("wrong"))
        .await
        .expect_err("wrong id");
    assert_eq!((f.code.as_str(), f.status), ("AccessDenied", 403));
    assert_eq!(
        f.message,
        "User: arn:aws:iam::123456789012:user/AKIDBASE is not authorized to perform: sts:AssumeRole on resource: arn:aws:iam::222222222222:role/wsw"
    );
    assert!(assume(&base, &role("222222222222"), None).await.is_err());
    assert!(
        assume(&base, &role("444444444444"), Some("ext-2026"))
            .await
            .is_err(),
        "not in the org"
    );
    assert!(
        assume(
            &base,
            "arn:aws:iam::222222222222:role/other",
            Some("ext-2026")
        )
        .await
        .is_err()
    );
    // One account's AssumeRole denied or throttled; the others unaffected.
    sim.set_assume_role_error("333333333333", Some("AccessDenied"));
    let f = assume(&base, &role("333333333333"), Some("ext-2026"))
        .await
        .expect_err("denied");
    assert_eq!((f.code.as_str(), f.status), ("AccessDenied", 403));
    assert!(
        assume(&base, &role("222222222222"), Some("ext-2026"))
            .await
            .is_ok()
    );
    sim.set_assume_role_error("333333333333", Some("Throttling"));
    let f = assume(&base, &role("333333333333"), Some("ext-2026"))
        .await
        .expect_err("throttled");
    assert_eq!((f.code.as_str(), f.status), ("Throttling", 400));
    sim.set_assume_role_error("333333333333", None);
    assert!(
        assume(&base, &role("333333333333"), Some("ext-2026"))
            .await
            .is_ok()
    );
    // The record of calls.
    let calls = sim.assume_role_calls();
    assert_eq!(calls.len(), 9);
    assert_eq!(
        calls.iter().filter(|c| c.issued_key_id.is_some()).count(),
        3
    );
    assert!(
        calls
            .iter()
            .all(|c| c.caller_key_id.as_deref() == Some("AKIDBASE"))
    );
    assert_eq!(sim.request_count("", operation::ASSUME_ROLE), 9);
}

#[tokio::test]
async fn the_generator_builds_accounts_times_regions_of_cheap_portals() {
    let regions = ["us-east-1", "eu-west-1"];
    let cfg = SimConfig::generated_organization(5, 60, &regions, 1);
    assert_eq!(cfg.portals.len(), 120);
    let org = cfg.organization.clone().expect("org");
    assert_eq!(org.accounts.len(), 60);
    assert_eq!(org.units.len(), 9);
    let (sim, running) = serve(cfg).await;
    let account = &org.accounts[17].id;
    let base = sts(&running, creds("AKIDBASE", None));
    let theirs = assume(&base, &member_role(account), None)
        .await
        .expect("member role");
    for region in regions {
        let ids = listed(&wsw(&running, region, theirs.clone())).await;
        assert_eq!(ids.len(), 1, "{region}");
        let p = sim.portal(&ids[0]).expect("portal");
        assert_eq!(
            (p.account.as_str(), p.region.as_str()),
            (account.as_str(), region)
        );
    }
    // The large shape builds too (cheap portals), with unique ids.
    let big =
        SimConfig::generated_organization(5, 500, &["us-east-1", "eu-west-1", "ap-southeast-2"], 1);
    let ids: std::collections::BTreeSet<&str> = big.portals.iter().map(|p| p.id.as_str()).collect();
    assert_eq!(ids.len(), 1_500);
    let sim = workspacesweb_sim::Simulator::new(big);
    assert_eq!(sim.portals().len(), 1_500);
}
