//! AWS Organizations (awsJson1.1, signing name `organizations`): `POST /` with
//! `X-Amz-Target: AWSOrganizationsV20161128.<Operation>` and
//! `Content-Type: application/x-amz-json-1.1`, served on the same endpoint as everything else.
//!
//! Who may call it: the management account (a key bound to it, or, by default, any key the
//! simulator does not know); with [`OrgSpec::management_role`] set, only credentials issued for
//! that role. Member accounts get `AccessDeniedException` (but may `DescribeOrganization`), keys
//! of accounts outside the organization `AWSOrganizationsNotInUseException`, as does everyone when
//! the simulator serves no organization.

mod answers;
mod error;

use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::header::HeaderMap;
use hyper::{Request, StatusCode};
use serde_json::Value;

use self::error::{JSON_11, OrgError};
use crate::access::{AuthError, Caller};
use crate::api::{Resp, response};
use crate::faults::Faults;
use crate::locks::{lock, read};
use crate::operation;
use crate::organization::OrgSpec;
use crate::state::SimState;
use crate::traffic::LoggedRequest;

/// The `X-Amz-Target` prefix of Organizations.
const TARGET_PREFIX: &str = "AWSOrganizationsV20161128.";

/// Largest request body read (real requests are well under 1 KiB).
const MAX_BODY: usize = 64 * 1024;

/// The Organizations operation a request names in `X-Amz-Target`, if it is one.
pub(crate) fn operation_of(headers: &HeaderMap) -> Option<String> {
    let target = headers.get("x-amz-target")?.to_str().ok()?;
    target.strip_prefix(TARGET_PREFIX).map(str::to_string)
}

/// Serves one Organizations request for `op`.
pub(crate) async fn serve(state: &SimState, req: Request<Incoming>, op: String) -> Resp {
    let arrived = tokio::time::Instant::now();
    let request_id = state.traffic.request_id(state.seed);
    state.traffic.count("", &op);
    let auth = state.access.authenticate(req.headers());
    let (resp, input) = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(body) => {
            let body = body.to_bytes();
            let input = String::from_utf8_lossy(&body).into_owned();
            let resp = match respond(state, &op, auth, &body).await {
                Ok(answer) => response(StatusCode::OK, JSON_11, answer, &request_id),
                Err(e) => e.into_response(&request_id),
            };
            (resp, input)
        }
        Err(_) => (
            OrgError::new(
                "SerializationException",
                "The request body could not be read.",
            )
            .into_response(&request_id),
            String::new(),
        ),
    };
    state.traffic.log(LoggedRequest {
        at: arrived,
        portal_id: String::new(),
        operation: op,
        query: input,
        status: resp.status().as_u16(),
    });
    resp
}

/// The answer body, or the error, of an Organizations request.
async fn respond(
    state: &SimState,
    op: &str,
    auth: Result<Caller, AuthError>,
    body: &[u8],
) -> Result<String, OrgError> {
    let caller = auth.map_err(OrgError::auth)?;
    let input: Value = if body.is_empty() {
        Value::Object(serde_json::Map::new())
    } else {
        serde_json::from_slice(body).map_err(|_| {
            OrgError::new(
                "SerializationException",
                "The request body is not valid JSON.",
            )
        })?
    };
    {
        let org = read(&state.organization);
        let org = org
            .as_ref()
            .ok_or_else(|| OrgError::usual("AWSOrganizationsNotInUseException"))?;
        permitted(org, &caller, op)?;
    }
    apply_faults(state, op).await?;
    let org = read(&state.organization);
    let org = org
        .as_ref()
        .ok_or_else(|| OrgError::usual("AWSOrganizationsNotInUseException"))?;
    answers::answer(org, op, &input)
}

/// Whether `caller` may call `op` on `org`.
fn permitted(org: &OrgSpec, caller: &Caller, op: &str) -> Result<(), OrgError> {
    let denied = || Err(OrgError::usual("AccessDeniedException"));
    let Caller::Known(id) = caller else {
        // A key the simulator does not know: the management account, unless a role is required.
        return if org.management_role.is_some() {
            denied()
        } else {
            Ok(())
        };
    };
    if org.account(&id.account).is_none() {
        return Err(OrgError::usual("AWSOrganizationsNotInUseException"));
    }
    let management = match &org.management_role {
        Some(role) => id.role_arn.as_ref() == Some(role),
        None => id.account == org.management_account,
    };
    if management || op == operation::DESCRIBE_ORGANIZATION {
        Ok(())
    } else {
        denied()
    }
}

/// Latency, a fixed error, and throttling (`TooManyRequestsException`) of the operation's faults
/// (or of every operation's).
async fn apply_faults(state: &SimState, op: &str) -> Result<(), OrgError> {
    let (faults, n) = {
        let mut f = lock(&state.org_faults);
        f.requests += 1;
        let faults = f
            .operations
            .get(op)
            .cloned()
            .unwrap_or_else(|| f.all.clone());
        (faults, f.requests)
    };
    if faults == Faults::none() {
        return Ok(());
    }
    if !faults.latency.is_zero() {
        tokio::time::sleep(faults.latency).await;
    }
    if let Some(code) = &faults.error {
        return Err(OrgError::usual(code));
    }
    if faults.throttles(state.seed, op, n) {
        return Err(OrgError::usual("TooManyRequestsException"));
    }
    Ok(())
}
