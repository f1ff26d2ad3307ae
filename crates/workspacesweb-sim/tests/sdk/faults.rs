//! The failures of a real account's first hour, through the real WorkSpaces Web SDK: IAM denial
//! per portal and operation, `ListPortals` denied in one region, oversized tokens, over-full
//! pages, and a portal called in the wrong region.

use std::collections::BTreeSet;

use workspacesweb_sim::{Clock, Faults, SimConfig, operation};

use crate::common::*;

const ACCOUNT: &str = "111111111111";

#[tokio::test]
async fn operations_of_one_portal_are_denied_with_iams_message() {
    let (a, b) = (portal_id(1), portal_id(2));
    let (sim, running) = serve(
        SimConfig::new(1)
            .with_clock(Clock::manual(T0))
            .with_portal(portal(&a, "us-east-1", ACCOUNT, 3))
            .with_portal(portal(&b, "us-east-1", ACCOUNT, 3)),
    )
    .await;
    let client = wsw(&running, "us-east-1", creds("AKIDBASE", None));
    let arn = sim.portal(&a).expect("a").arn;
    let session = sim.sessions_now(&a)[0].id.clone();
    for op in [
        operation::LIST_SESSIONS,
        operation::GET_SESSION,
        operation::GET_PORTAL,
    ] {
        sim.set_operation_error(&a, op, Some("AccessDeniedException"));
    }
    let denied = [
        must_fail(client.list_sessions().portal_id(&a).send().await),
        must_fail(
            client
                .get_session()
                .portal_id(&a)
                .session_id(&session)
                .send()
                .await,
        ),
        must_fail(client.get_portal().portal_arn(&arn).send().await),
    ];
    for (f, op) in denied
        .iter()
        .zip(["ListSessions", "GetSession", "GetPortal"])
    {
        assert_eq!(
            (f.code.as_str(), f.status),
            ("AccessDeniedException", 403),
            "{f:?}"
        );
        assert_eq!(
            f.message,
            format!(
                "User: arn:aws:iam::{ACCOUNT}:user/AKIDBASE is not authorized to perform: workspaces-web:{op} on resource: {arn} because no identity-based policy allows the workspaces-web:{op} action"
            )
        );
    }
    // The other portal, and the portal once cleared, answer.
    let listed = sessions_page(&client, &b, None, None)
        .await
        .expect("b lists");
    assert_eq!(listed.sessions().len(), 3);
    sim.set_operation_error(&a, operation::GET_SESSION, None);
    let got = client
        .get_session()
        .portal_id(&a)
        .session_id(&session)
        .send()
        .await;
    assert!(got.is_ok(), "{got:?}");
    assert!(client.list_sessions().portal_id(&a).send().await.is_err());
}

#[tokio::test]
async fn list_portals_is_denied_in_one_region_of_several() {
    let regions = ["us-east-1", "eu-west-1", "ap-southeast-2"];
    let mut cfg = SimConfig::new(2).with_clock(Clock::manual(T0));
    for (i, r) in regions.iter().enumerate() {
        cfg = cfg.with_portal(portal(&portal_id(10 + i as u32), r, ACCOUNT, 1));
        cfg = cfg.with_portal(portal(&portal_id(20 + i as u32), r, "222222222222", 1));
    }
    let (sim, running) = serve(cfg).await;
    sim.set_list_portals_error("eu-west-1", None, Some("AccessDeniedException"));
    let mut total = 0;
    for r in regions {
        let answer = wsw(&running, r, creds("AKIDBASE", None))
            .list_portals()
            .send()
            .await;
        if r == "eu-west-1" {
            let f = failure(answer.expect_err("eu-west-1 is denied"));
            assert_eq!((f.code.as_str(), f.status), ("AccessDeniedException", 403));
            assert!(
                f.message.contains("is not authorized to perform: workspaces-web:ListPortals on resource: arn:aws:workspaces-web:eu-west-1:"),
                "{f:?}"
            );
        } else {
            let portals = answer.expect("other regions list");
            assert_eq!(portals.portals().len(), 2, "{r}");
            total += portals.portals().len();
        }
    }
    assert_eq!(total, 4);
    // Per account: only the callers of 222222222222 are denied in us-east-1.
    sim.set_list_portals_error("eu-west-1", None, None);
    sim.set_list_portals_error(
        "us-east-1",
        Some("222222222222"),
        Some("AccessDeniedException"),
    );
    sim.add_access_key("AKIAONE", &format!("arn:aws:iam::{ACCOUNT}:user/one"))
        .expect("principal");
    sim.add_access_key("AKIATWO", "arn:aws:iam::222222222222:user/two")
        .expect("principal");
    let one = wsw(&running, "us-east-1", creds("AKIAONE", None));
    let ids = listed(&one).await;
    assert_eq!(
        ids,
        [portal_id(10)],
        "a key bound to an account sees only its portals"
    );
    let two = wsw(&running, "us-east-1", creds("AKIATWO", None));
    let f = must_fail(two.list_portals().send().await);
    assert!(
        f.message
            .starts_with("User: arn:aws:iam::222222222222:user/two is not authorized"),
        "{f:?}"
    );
    let eu = wsw(&running, "eu-west-1", creds("AKIATWO", None));
    assert_eq!(
        eu.list_portals()
            .send()
            .await
            .expect("eu lists")
            .portals()
            .len(),
        1
    );
}

#[tokio::test]
async fn oversized_next_tokens_reach_the_sdk_and_are_refused_back() {
    let p = portal_id(3);
    let (sim, running) = serve_portal(3, portal(&p, "us-east-1", ACCOUNT, 5)).await;
    let client = wsw(&running, "us-east-1", creds("AKIDBASE", None));
    for len in [3_000, 70_000] {
        sim.set_faults(&p, Faults::long_next_token(len))
            .expect("portal");
        sim.set_list_portals_faults(Faults::long_next_token(len));
        // The whole listing fits one page: the token is there anyway, `len` characters long.
        let page = sessions_page(&client, &p, None, None).await.expect("page");
        assert_eq!(page.sessions().len(), 5);
        let token = page.next_token().expect("a token").to_string();
        assert_eq!(token.len(), len);
        let portals = client.list_portals().send().await.expect("portals");
        assert_eq!(portals.next_token().map(str::len), Some(len));
        // Sent back, it breaks the model's 2048-character bound: ValidationException. (A
        // 70,000-character token cannot even be sent: the SDK panics building a URI over
        // 65,534 bytes, so a client must never send back a token past the bound.)
        if len < 65_000 {
            let f = sessions_page(&client, &p, None, Some(&token))
                .await
                .expect_err("refused back");
            assert_eq!(
                (f.code.as_str(), f.status),
                ("ValidationException", 400),
                "{f:?}"
            );
        }
    }
    // A padded token within the bound still pages on.
    sim.set_faults(&p, Faults::long_next_token(2_000))
        .expect("portal");
    let first = sessions_page(&client, &p, Some(2), None)
        .await
        .expect("page 1");
    let token = first.next_token().expect("token");
    assert_eq!(token.len(), 2_000);
    let second = sessions_page(&client, &p, Some(2), Some(token))
        .await
        .expect("page 2");
    let ids = |s: &[aws_sdk_workspacesweb::types::SessionSummary]| -> Vec<String> {
        s.iter()
            .filter_map(|x| x.session_id().map(str::to_string))
            .collect()
    };
    assert_eq!(second.sessions().len(), 2);
    assert!(
        ids(first.sessions())
            .iter()
            .all(|id| !ids(second.sessions()).contains(id))
    );
}

#[tokio::test]
async fn overfull_pages_hold_more_than_max_results() {
    let p = portal_id(4);
    let mut cfg = SimConfig::new(4)
        .with_clock(Clock::manual(T0))
        .with_portal(portal(&p, "us-east-1", ACCOUNT, 120));
    for i in 0..12 {
        cfg = cfg.with_portal(portal(&portal_id(100 + i), "us-east-1", ACCOUNT, 0));
    }
    let (sim, running) = serve(cfg).await;
    let client = wsw(&running, "us-east-1", creds("AKIDBASE", None));
    let normal = sessions_page(&client, &p, Some(10), None)
        .await
        .expect("page");
    assert_eq!(normal.sessions().len(), 10);
    sim.set_faults(&p, Faults::overfull_pages(5))
        .expect("portal");
    sim.set_list_portals_faults(Faults::overfull_pages(5));
    let page = sessions_page(&client, &p, Some(10), None)
        .await
        .expect("page");
    assert_eq!(page.sessions().len(), 50, "5 × maxResults");
    assert!(page.next_token().is_some(), "70 more follow");
    let portals = client
        .list_portals()
        .max_results(2)
        .send()
        .await
        .expect("portals");
    assert_eq!(portals.portals().len(), 10);
}

#[tokio::test]
async fn a_portal_called_in_another_region_is_not_found() {
    let p = portal_id(5);
    let (sim, running) = serve_portal(5, portal(&p, "eu-west-1", ACCOUNT, 2)).await;
    let arn = sim.portal(&p).expect("p").arn;
    let east = wsw(&running, "us-east-1", creds("AKIDBASE", None));
    let west = wsw(&running, "eu-west-1", creds("AKIDBASE", None));
    for f in [
        must_fail(east.list_sessions().portal_id(&p).send().await),
        must_fail(east.get_portal().portal_arn(&arn).send().await),
    ] {
        assert_eq!(
            (f.code.as_str(), f.status),
            ("ResourceNotFoundException", 404),
            "{f:?}"
        );
    }
    assert!(
        east.list_portals()
            .send()
            .await
            .expect("east")
            .portals()
            .is_empty()
    );
    assert_eq!(
        west.list_sessions()
            .portal_id(&p)
            .send()
            .await
            .expect("west")
            .sessions()
            .len(),
        2
    );
    assert_eq!(
        west.list_portals()
            .send()
            .await
            .expect("west")
            .portals()
            .len(),
        1
    );
    let regions: BTreeSet<String> = sim.signing_regions(&p);
    assert_eq!(
        regions,
        ["eu-west-1".to_string(), "us-east-1".to_string()].into()
    );
}
