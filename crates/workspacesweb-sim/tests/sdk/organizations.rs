//! The AWS Organization the simulator serves, through the real Organizations SDK: pagination of
//! accounts (20 a page), OUs three deep, who may call it, its faults, and changes at runtime.

use std::collections::BTreeSet;

use aws_sdk_organizations::types::{AccountState, AccountStatus, ChildType};
use workspacesweb_sim::{
    AccountSpec, AccountState as SimAccountState, DEMO_MEMBER_ROLE, Faults, OrgSpec, SimConfig,
    operation,
};

use crate::common::*;

/// Every account of `ListAccounts`, following `NextToken`; the size of each page.
async fn all_accounts(
    client: &aws_sdk_organizations::Client,
) -> (Vec<aws_sdk_organizations::types::Account>, Vec<usize>) {
    let mut accounts = Vec::new();
    let mut pages = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let page = client
            .list_accounts()
            .set_next_token(token.take())
            .send()
            .await
            .expect("ListAccounts");
        pages.push(page.accounts().len());
        accounts.extend(page.accounts().iter().cloned());
        match page.next_token() {
            Some(t) => token = Some(t.to_string()),
            None => return (accounts, pages),
        }
        assert!(pages.len() < 10, "a bounded walk");
    }
}

#[tokio::test]
async fn forty_five_accounts_come_in_pages_of_twenty() {
    let cfg = SimConfig::generated_organization(1, 45, &["us-east-1"], 0);
    let org = cfg.organization.clone().expect("an organization");
    let (sim, running) = serve(cfg).await;
    let client = orgs(&running, creds("AKIDMGMT", None));
    let (accounts, pages) = all_accounts(&client).await;
    assert_eq!(pages, [20, 20, 5]);
    let ids: BTreeSet<&str> = accounts.iter().filter_map(|a| a.id()).collect();
    assert_eq!(ids.len(), 45);
    let expected: BTreeSet<&str> = org.accounts.iter().map(|a| a.id.as_str()).collect();
    assert_eq!(ids, expected);
    for a in &accounts {
        let id = a.id().expect("Id");
        assert_eq!(a.arn(), Some(org.member_arn("account", id).as_str()));
        assert!(a.email().is_some_and(|e| e.ends_with("@example.com")));
        assert!(a.name().is_some());
        assert_eq!(a.status(), Some(&AccountStatus::Active));
        assert_eq!(a.state(), Some(&AccountState::Active));
        assert!(a.joined_timestamp().is_some());
    }
    // The SDK's paginator walks the same pages.
    let via_paginator: Vec<_> = client
        .list_accounts()
        .into_paginator()
        .send()
        .collect::<Result<Vec<_>, _>>()
        .await
        .expect("paginator");
    let sizes: Vec<usize> = via_paginator.iter().map(|p| p.accounts().len()).collect();
    assert_eq!(sizes, [20, 20, 5]);
    assert_eq!(sim.request_count("", operation::LIST_ACCOUNTS), 6);
    // MaxResults: fewer per page on request; more than 20 is refused.
    let seven = client
        .list_accounts()
        .max_results(7)
        .send()
        .await
        .expect("7");
    assert_eq!(seven.accounts().len(), 7);
    let f = must_fail(client.list_accounts().max_results(21).send().await);
    assert_eq!(
        (f.code.as_str(), f.status),
        ("InvalidInputException", 400),
        "{f:?}"
    );
    let f = must_fail(client.list_accounts().next_token("garbage").send().await);
    assert_eq!(f.code, "InvalidInputException");
}

#[tokio::test]
async fn organizational_units_nest_three_deep() {
    let cfg = SimConfig::generated_organization(2, 30, &["us-east-1"], 0);
    let (_sim, running) = serve(cfg).await;
    let client = orgs(&running, creds("AKIDMGMT", None));
    let roots = client.list_roots().send().await.expect("roots");
    let root = roots.roots()[0].id().expect("root id").to_string();
    // Walk the tree as discovery under `ous` would: children OUs, accounts under each parent.
    let mut frontier = vec![(root.clone(), 0)];
    let mut depth_of_deepest = 0;
    let mut seen = BTreeSet::new();
    while let Some((parent, depth)) = frontier.pop() {
        depth_of_deepest = depth_of_deepest.max(depth);
        let ous = client
            .list_children()
            .parent_id(&parent)
            .child_type(ChildType::OrganizationalUnit)
            .send()
            .await
            .expect("ListChildren");
        for c in ous.children() {
            assert_eq!(c.r#type(), Some(&ChildType::OrganizationalUnit));
            frontier.push((c.id().expect("id").to_string(), depth + 1));
        }
        let accounts = client
            .list_accounts_for_parent()
            .parent_id(&parent)
            .send()
            .await
            .expect("ListAccountsForParent");
        let children = client
            .list_children()
            .parent_id(&parent)
            .child_type(ChildType::Account)
            .send()
            .await
            .expect("ListChildren");
        let a: BTreeSet<String> = accounts
            .accounts()
            .iter()
            .filter_map(|a| a.id().map(str::to_string))
            .collect();
        let c: BTreeSet<String> = children
            .children()
            .iter()
            .filter_map(|c| c.id().map(str::to_string))
            .collect();
        assert_eq!(a, c, "both views of {parent} agree");
        if depth == 3 {
            assert!(!a.is_empty(), "the deepest OUs hold accounts");
        }
        seen.extend(a);
    }
    assert_eq!(depth_of_deepest, 3);
    assert_eq!(seen.len(), 30, "every account under exactly one parent");
    let units = client
        .list_organizational_units_for_parent()
        .parent_id(&root)
        .send()
        .await
        .expect("OUs");
    assert_eq!(units.organizational_units().len(), 3);
    let f = must_fail(
        client
            .list_children()
            .parent_id("ou-zzzz-00000000")
            .child_type(ChildType::Account)
            .send()
            .await,
    );
    assert_eq!(
        (f.code.as_str(), f.status),
        ("ParentNotFoundException", 400)
    );
}

#[tokio::test]
async fn who_may_call_organizations() {
    let org = OrgSpec::new("111111111111")
        .with_member_role(DEMO_MEMBER_ROLE, None)
        .with_account(AccountSpec::new("222222222222", "member"));
    let (sim, running) = serve(SimConfig::new(3).with_organization(org.clone())).await;
    let described = orgs(&running, creds("AKIDMGMT", None))
        .describe_organization()
        .send()
        .await
        .expect("DescribeOrganization");
    let o = described.organization().expect("organization");
    assert_eq!(o.id(), Some(org.id.as_str()));
    assert_eq!(o.master_account_id(), Some("111111111111"));
    assert_eq!(o.arn(), Some(org.arn().as_str()));
    // A member account's credentials: it may describe the organization, not list it.
    let base = sts(&running, creds("AKIDMGMT", None));
    let member = assume(
        &base,
        &format!("arn:aws:iam::222222222222:role/{DEMO_MEMBER_ROLE}"),
        None,
    )
    .await
    .expect("member role");
    let as_member = orgs(&running, member);
    assert!(as_member.describe_organization().send().await.is_ok());
    let f = must_fail(as_member.list_accounts().send().await);
    assert_eq!(
        (f.code.as_str(), f.message.as_str(), f.status),
        (
            "AccessDeniedException",
            "You don't have permissions to access this resource.",
            400
        )
    );
    // The management account's own role works.
    let mgmt = assume(
        &base,
        &format!("arn:aws:iam::111111111111:role/{DEMO_MEMBER_ROLE}"),
        None,
    )
    .await
    .expect("management role");
    assert_eq!(
        orgs(&running, mgmt)
            .list_accounts()
            .send()
            .await
            .expect("list")
            .accounts()
            .len(),
        2
    );
    // A key of an account outside the organization.
    sim.add_access_key("AKIAOUTSIDER", "arn:aws:iam::999999999999:user/x")
        .expect("principal");
    let f = must_fail(
        orgs(&running, creds("AKIAOUTSIDER", None))
            .list_accounts()
            .send()
            .await,
    );
    assert_eq!(f.code, "AWSOrganizationsNotInUseException");
    // No organization at all.
    let (_plain, plain_running) = serve(SimConfig::new(4)).await;
    let f = must_fail(
        orgs(&plain_running, creds("AKIDMGMT", None))
            .list_accounts()
            .send()
            .await,
    );
    assert_eq!(
        (f.code.as_str(), f.status),
        ("AWSOrganizationsNotInUseException", 400)
    );
}

#[tokio::test]
async fn only_the_management_role_when_one_is_required() {
    const READER: &str = "arn:aws:iam::111111111111:role/org-reader";
    let mut org = OrgSpec::new("111111111111").with_member_role(DEMO_MEMBER_ROLE, None);
    org.management_role = Some(READER.to_string());
    let (sim, running) = serve(SimConfig::new(5).with_organization(org)).await;
    let f = must_fail(
        orgs(&running, creds("AKIDBASE", None))
            .list_accounts()
            .send()
            .await,
    );
    assert_eq!(f.code, "AccessDeniedException");
    let base = sts(&running, creds("AKIDBASE", None));
    let other = assume(
        &base,
        &format!("arn:aws:iam::111111111111:role/{DEMO_MEMBER_ROLE}"),
        None,
    )
    .await
    .expect("member role of the management account");
    let f = must_fail(orgs(&running, other).list_accounts().send().await);
    assert_eq!(
        f.code, "AccessDeniedException",
        "another role of the same account"
    );
    let reader = assume(&base, READER, None)
        .await
        .expect("the management role is assumable");
    let listed = orgs(&running, reader.clone())
        .list_accounts()
        .send()
        .await
        .expect("list");
    assert_eq!(listed.accounts().len(), 1);
    assert_eq!(
        sim.role_of_key(reader.access_key_id()).as_deref(),
        Some(READER)
    );
}

#[tokio::test]
async fn faults_deny_or_throttle_one_operation() {
    let (sim, running) = serve(SimConfig::generated_organization(6, 3, &["us-east-1"], 0)).await;
    let client = orgs(&running, creds("AKIDMGMT", None));
    sim.set_organizations_faults(
        Some(operation::LIST_ACCOUNTS),
        Faults::error("AccessDeniedException"),
    );
    let f = must_fail(client.list_accounts().send().await);
    assert_eq!((f.code.as_str(), f.status), ("AccessDeniedException", 400));
    let root = client
        .list_roots()
        .send()
        .await
        .expect("other operations answer");
    let root = root.roots()[0].id().expect("root").to_string();
    sim.set_organizations_faults(Some(operation::LIST_ACCOUNTS), Faults::throttle(1.0, 1));
    let f = must_fail(client.list_accounts().send().await);
    assert_eq!(
        (f.code.as_str(), f.status),
        ("TooManyRequestsException", 400)
    );
    let e = client.list_accounts().send().await.expect_err("throttled");
    assert!(
        matches!(
            e.as_service_error(),
            Some(aws_sdk_organizations::operation::list_accounts::ListAccountsError::TooManyRequestsException(_))
        ),
        "the SDK's typed error: {e:?}"
    );
    sim.set_organizations_faults(Some(operation::LIST_ACCOUNTS), Faults::none());
    assert_eq!(
        client
            .list_accounts()
            .send()
            .await
            .expect("cleared")
            .accounts()
            .len(),
        3
    );
    sim.set_organizations_faults(None, Faults::error("ServiceException"));
    let f = must_fail(
        client
            .list_children()
            .parent_id(&root)
            .child_type(ChildType::Account)
            .send()
            .await,
    );
    assert_eq!((f.code.as_str(), f.status), ("ServiceException", 500));
}

#[tokio::test]
async fn accounts_join_leave_move_and_are_suspended_from_the_next_call() {
    let cfg = SimConfig::generated_organization(7, 3, &["us-east-1"], 1);
    let (sim, running) = serve(cfg).await;
    let client = orgs(&running, creds("AKIDMGMT", None));
    let base = sts(&running, creds("AKIDMGMT", None));
    let org = sim.organization().expect("org");
    let root = org.root_id.clone();
    let role = |account: &str| format!("arn:aws:iam::{account}:role/{DEMO_MEMBER_ROLE}");
    // Join, with a portal only its credentials list.
    let newcomer = "333333333333";
    let ou = sim.add_organizational_unit("newcomers", &root).expect("ou");
    sim.add_account(
        AccountSpec::new(newcomer, "newcomer").in_unit(ou.clone()),
        vec![portal(&portal_id(77), "us-east-1", "ignored", 2)],
    )
    .expect("added");
    assert_eq!(
        sim.portal(&portal_id(77)).expect("portal").account,
        newcomer
    );
    let (accounts, _) = all_accounts(&client).await;
    assert_eq!(accounts.len(), 4);
    let theirs = assume(&base, &role(newcomer), None)
        .await
        .expect("member role of the newcomer");
    let listed = wsw(&running, "us-east-1", theirs)
        .list_portals()
        .send()
        .await
        .expect("portals");
    assert_eq!(listed.portals().len(), 1);
    // Move.
    sim.move_account(newcomer, &root).expect("moved");
    let under_root = client
        .list_accounts_for_parent()
        .parent_id(&root)
        .send()
        .await
        .expect("root");
    assert!(
        under_root
            .accounts()
            .iter()
            .any(|a| a.id() == Some(newcomer))
    );
    let under_ou = client
        .list_accounts_for_parent()
        .parent_id(&ou)
        .send()
        .await
        .expect("ou");
    assert!(under_ou.accounts().is_empty());
    // Suspend: listed as such, its role no longer assumable.
    sim.set_account_state(newcomer, SimAccountState::Suspended)
        .expect("suspended");
    let (accounts, _) = all_accounts(&client).await;
    let a = accounts
        .iter()
        .find(|a| a.id() == Some(newcomer))
        .expect("still listed");
    assert_eq!(
        (a.status(), a.state()),
        (
            Some(&AccountStatus::Suspended),
            Some(&AccountState::Suspended)
        )
    );
    let f = assume(&base, &role(newcomer), None)
        .await
        .expect_err("suspended");
    assert_eq!((f.code.as_str(), f.status), ("AccessDenied", 403));
    // Leave.
    sim.remove_account(newcomer).expect("removed");
    let (accounts, _) = all_accounts(&client).await;
    assert_eq!(accounts.len(), 3);
    assert!(sim.remove_account(newcomer).is_err());
    assert!(sim.move_account("444444444444", &root).is_err());
    assert!(
        sim.move_account(&org.management_account, "ou-none-00000000")
            .is_err()
    );
}
