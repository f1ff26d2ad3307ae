//! Refused and expired credentials, through the real SDKs: unknown keys when only known keys are
//! valid, revoked keys, and the expiry of the keys the simulator's own `AssumeRole` issues.

use std::time::Duration;

use workspacesweb_sim::{Clock, SimConfig, now_ms};

use crate::common::*;

const ROLE: &str = "arn:aws:iam::111111111111:role/reader";

#[tokio::test]
async fn unknown_keys_are_refused_only_when_only_known_keys_are_valid() {
    let p = portal_id(1);
    let (sim, running) = serve_portal(1, portal(&p, "us-east-1", "111111111111", 2)).await;
    sim.allow_role(ROLE, None);
    let stranger = wsw(&running, "us-east-1", creds("AKIDSTRANGER", None));
    assert!(
        stranger.list_sessions().portal_id(&p).send().await.is_ok(),
        "any key by default"
    );
    sim.require_known_keys(true);
    let f = must_fail(stranger.list_sessions().portal_id(&p).send().await);
    assert_eq!(
        (f.code.as_str(), f.message.as_str(), f.status),
        (
            "UnrecognizedClientException",
            "The security token included in the request is invalid.",
            403
        )
    );
    let f = assume(&sts(&running, creds("AKIDSTRANGER", None)), ROLE, None)
        .await
        .expect_err("an unknown key");
    assert_eq!(
        (f.code.as_str(), f.status),
        ("InvalidClientTokenId", 403),
        "{f:?}"
    );
    // A registered key is valid, and so are the keys issued to it.
    sim.add_access_key("AKIAOPS", "arn:aws:iam::111111111111:user/ops")
        .expect("principal");
    assert_eq!(sim.key_account("AKIAOPS").as_deref(), Some("111111111111"));
    let ops = wsw(&running, "us-east-1", creds("AKIAOPS", None));
    assert!(ops.list_sessions().portal_id(&p).send().await.is_ok());
    let assumed = assume(&sts(&running, creds("AKIAOPS", None)), ROLE, None)
        .await
        .expect("assumed with a known key");
    let reader = wsw(&running, "us-east-1", assumed);
    assert!(reader.list_sessions().portal_id(&p).send().await.is_ok());
    // Revoked: refused in either mode.
    sim.revoke_access_key("AKIAOPS");
    sim.require_known_keys(false);
    let f = must_fail(ops.list_sessions().portal_id(&p).send().await);
    assert_eq!(
        (f.code.as_str(), f.status),
        ("UnrecognizedClientException", 403)
    );
}

#[tokio::test]
async fn issued_keys_expire_on_the_credential_clock() {
    let p = portal_id(2);
    let (sim, running) = serve_portal(2, portal(&p, "us-east-1", "111111111111", 2)).await;
    sim.allow_role(ROLE, None);
    // A manual credential clock at the wall time, so that the SDK still trusts the credentials
    // (it compares `Expiration` with the wall clock) when the simulator says they expired.
    let clock = Clock::manual(now_ms());
    sim.set_credential_clock(clock.clone());
    let base = sts(&running, creds("AKIDBASE", None));
    let out = base
        .assume_role()
        .role_arn(ROLE)
        .role_session_name("s")
        .duration_seconds(900)
        .send()
        .await
        .expect("assumed");
    let c = out.credentials().expect("credentials");
    // The `Expiration` the SDK read is the simulator's, to the millisecond.
    let expiration_ms = c.expiration().to_millis().expect("millis");
    assert_eq!(
        sim.key_expiry_ms(c.access_key_id()),
        Some(clock.now_ms() + 900_000)
    );
    assert_eq!(Some(expiration_ms), sim.key_expiry_ms(c.access_key_id()));
    let client = wsw(
        &running,
        "us-east-1",
        creds(c.access_key_id(), Some(c.session_token())),
    );
    assert!(client.list_sessions().portal_id(&p).send().await.is_ok());
    clock.advance(900_000);
    let f = must_fail(client.list_sessions().portal_id(&p).send().await);
    assert_eq!(
        (f.code.as_str(), f.message.as_str(), f.status),
        (
            "ExpiredTokenException",
            "The security token included in the request is expired",
            403
        )
    );
    // STS says it in its own words.
    let expired_sts = sts(&running, creds(c.access_key_id(), Some(c.session_token())));
    let f = assume(&expired_sts, ROLE, None)
        .await
        .expect_err("expired caller");
    assert_eq!((f.code.as_str(), f.status), ("ExpiredToken", 403), "{f:?}");
    // A shorter lifetime for tests, whatever DurationSeconds asks; and a key expired on demand.
    sim.set_credential_lifetime(Some(Duration::from_secs(60)));
    let fresh = assume(&base, ROLE, None).await.expect("assumed again");
    let key = fresh.access_key_id().to_string();
    assert_eq!(sim.key_expiry_ms(&key), Some(clock.now_ms() + 60_000));
    let client = wsw(&running, "us-east-1", fresh);
    assert!(client.list_sessions().portal_id(&p).send().await.is_ok());
    assert!(sim.expire_access_key(&key));
    let f = must_fail(client.list_sessions().portal_id(&p).send().await);
    assert_eq!(f.code, "ExpiredTokenException");
    assert!(!sim.expire_access_key("AKIDNEVERSEEN"));
}

#[tokio::test]
async fn issued_credentials_last_what_duration_seconds_asks() {
    let (sim, running) = serve(SimConfig::new(3)).await;
    sim.allow_role(ROLE, None);
    let base = sts(&running, creds("AKIDBASE", None));
    for (asked, lasts) in [
        (None, 3_600_000),
        (Some(900), 900_000),
        (Some(7_200), 7_200_000),
    ] {
        let before = now_ms();
        let out = base
            .assume_role()
            .role_arn(ROLE)
            .role_session_name("s")
            .set_duration_seconds(asked)
            .send()
            .await
            .expect("assumed");
        let key = out
            .credentials()
            .expect("credentials")
            .access_key_id()
            .to_string();
        let expiry = sim.key_expiry_ms(&key).expect("issued keys expire");
        assert!(
            (before + lasts..=now_ms() + lasts).contains(&expiry),
            "{asked:?}"
        );
    }
    let f = must_fail(
        base.assume_role()
            .role_arn(ROLE)
            .role_session_name("s")
            .duration_seconds(899)
            .send()
            .await,
    );
    assert_eq!((f.code.as_str(), f.status), ("ValidationError", 400));
}
