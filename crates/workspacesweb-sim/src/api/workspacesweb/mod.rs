//! WorkSpaces Web (restJson1): `ListSessions`, `GetSession`, `ListPortals`, `GetPortal` and
//! `ExpireSession`, with the access model's refusals and the faults of each portal.

mod body;
mod error;
mod fuzz;
mod listing;
mod route;
mod token;

pub(crate) use fuzz::fuzz;

use bytes::Bytes;
use hyper::body::Incoming;
use hyper::{Request, StatusCode};

use self::body::{apply_body_fault, raw_matches, session_json};
use self::error::WireError;
use self::listing::{check_arn, check_portal_id, check_session_id, list_portals, list_sessions};
use self::route::{Route, param, query_params, route, signing_region};
use crate::access::{Caller, Denial, PortalRef};
use crate::api::json::json_str;
use crate::api::{Resp, response};
use crate::faults::Faults;
use crate::locks::lock;
use crate::portals::Portal;
use crate::state::SimState;
use crate::traffic::LoggedRequest;

/// Applies latency, a fixed error, and throttling; returns the error to send, if any.
async fn apply_faults(
    state: &SimState,
    key: &str,
    faults: &Faults,
    n: u64,
) -> Result<(), WireError> {
    if !faults.latency.is_zero() {
        tokio::time::sleep(faults.latency).await;
    }
    if let Some(code) = &faults.error {
        return Err(WireError::injected(code, faults.retry_after_secs));
    }
    if faults.throttles(state.seed, key, n) {
        return Err(WireError::injected(
            "ThrottlingException",
            faults.retry_after_secs,
        ));
    }
    Ok(())
}

/// One WorkSpaces Web request, routed, from an accepted caller.
struct Call {
    caller: Caller,
    route: Route,
    /// The portal id it is about (`""`: none).
    key: String,
    /// The SigV4 region, when signed.
    signed_region: Option<String>,
    /// The region whose portals it sees (`None`: all, when unsigned or not enforced).
    region: Option<String>,
    params: Vec<(String, String)>,
}

/// Serves one WorkSpaces Web request.
pub(crate) async fn serve(state: &SimState, req: Request<Incoming>) -> Resp {
    let arrived = tokio::time::Instant::now();
    let query = req.uri().query().unwrap_or_default().to_string();
    let route = route(req.method(), req.uri().path());
    let key = route.portal_key();
    let operation = route.operation();
    state.traffic.count(&key, operation);
    state.access.record_signer(&key, req.headers());
    let signed_region = signing_region(req.headers());
    let request_id = state.traffic.request_id(state.seed);
    let resp = match state.access.authenticate(req.headers()) {
        Err(e) => WireError::auth(e).into_response(&request_id),
        Ok(caller) => {
            let call = Call {
                caller,
                route,
                key: key.clone(),
                region: signed_region.clone().filter(|_| state.enforce_region),
                signed_region,
                params: query_params(req.uri().query()),
            };
            match dispatch(state, call).await {
                Ok(body) => response(StatusCode::OK, "application/json", body, &request_id),
                Err(e) => e.into_response(&request_id),
            }
        }
    };
    state.traffic.log(LoggedRequest {
        at: arrived,
        portal_id: key,
        operation: operation.to_string(),
        query,
        status: resp.status().as_u16(),
    });
    resp
}

/// The wire error of a request the access model refuses.
fn denied(denial: Denial, portal_id: &str) -> WireError {
    match denial {
        Denial::NotFound => WireError::not_found("Portal", portal_id),
        Denial::Error { code, message } => {
            let mut e = WireError::injected(&code, 1);
            if let Some(m) = message {
                e.message = m;
            }
            e
        }
    }
}

async fn dispatch(state: &SimState, call: Call) -> Result<Bytes, WireError> {
    match &call.route {
        Route::Unknown => Err(WireError::new(
            "UnknownOperationException",
            "Unknown operation",
        )),
        Route::MethodNotAllowed(allow) => {
            let mut e = WireError::new(
                "MethodNotAllowed",
                format!("Method not allowed; allowed: {allow}"),
            );
            e.members.push(("allowed".into(), json_str(allow)));
            Err(e)
        }
        Route::ListPortals => {
            let region = call.signed_region.as_deref().unwrap_or("us-east-1");
            if let Some(d) = state.access.list_portals_denial(&call.caller, region) {
                return Err(denied(d, ""));
            }
            let (faults, n) = {
                let mut lp = lock(&state.list_portals);
                lp.requests += 1;
                (lp.faults.clone(), lp.requests)
            };
            apply_faults(state, "", &faults, n).await?;
            let region = call.region.as_deref();
            let body = list_portals(state, region, call.caller.account(), &call.params, &faults)?;
            Ok(apply_body_fault(body.into(), faults.body.as_ref()))
        }
        _ => portal_request(state, call).await,
    }
}

/// A portal-scoped operation: the access model lets it through, and the portal exists in the
/// request's region.
async fn portal_request(state: &SimState, call: Call) -> Result<Bytes, WireError> {
    let key = call.key.as_str();
    let portal = state.portals.get(key);
    let target = PortalRef {
        id: key,
        account: portal.as_ref().map(|p| p.info.account.as_str()),
        arn: portal.as_ref().map(|p| p.info.arn.as_str()),
    };
    if let Some(d) = state
        .access
        .gate(&call.caller, target, call.route.operation())
    {
        return Err(denied(d, key));
    }
    let Some(portal) = portal else {
        if let Route::GetPortal(arn) = &call.route {
            check_arn(arn)?;
        } else {
            check_portal_id(key)?;
        }
        return Err(WireError::not_found("Portal", key));
    };
    if call
        .region
        .as_ref()
        .is_some_and(|r| *r != portal.info.region)
    {
        return Err(WireError::not_found("Portal", key));
    }
    let (faults, n) = {
        let mut s = portal.state();
        s.requests += 1;
        (s.faults.clone(), s.requests)
    };
    let operation = call.route.operation();
    let faults = if faults.applies_to(operation, param(&call.params, "status")) {
        faults
    } else {
        Faults::none()
    };
    apply_faults(state, key, &faults, n).await?;
    let body = portal_operation(state, call.route, &portal, &call.params, &faults)?;
    Ok(apply_body_fault(body, faults.body.as_ref()))
}

/// Answers a portal-scoped operation once faults let it through.
fn portal_operation(
    state: &SimState,
    route: Route,
    portal: &Portal,
    params: &[(String, String)],
    faults: &Faults,
) -> Result<Bytes, WireError> {
    let now = state.clock.now_ms();
    let info = &portal.info;
    match route {
        Route::GetPortal(arn) => {
            check_arn(&arn)?;
            if arn != info.arn {
                return Err(WireError::not_found("Portal", &arn));
            }
            Ok(format!("{{\"portal\":{}}}", body::portal_json(info)).into())
        }
        Route::ListSessions(_) => list_sessions_body(state, portal, params, faults, now),
        Route::GetSession(_, sid) => {
            check_session_id(&sid)?;
            match portal.state().store.get(now, &sid) {
                Some(s) => {
                    Ok(format!("{{\"session\":{}}}", session_json(&s, &info.arn, true)).into())
                }
                None => Err(WireError::not_found("Session", &sid)),
            }
        }
        Route::ExpireSession(_, sid) => {
            check_session_id(&sid)?;
            let mut st = portal.state();
            match st.store.get(now, &sid) {
                Some(s) if s.end_ms.is_none() => {
                    st.store
                        .end(&sid, now)
                        .map_err(|_| WireError::not_found("Session", &sid))?;
                    Ok(Bytes::from_static(b"{}"))
                }
                Some(_) => Ok(Bytes::from_static(b"{}")),
                None => Err(WireError::not_found("Session", &sid)),
            }
        }
        _ => Err(WireError::new(
            "UnknownOperationException",
            "Unknown operation",
        )),
    }
}

/// One `ListSessions` page of `portal` at `now`, raw records on the last page.
fn list_sessions_body(
    state: &SimState,
    portal: &Portal,
    params: &[(String, String)],
    faults: &Faults,
    now: i64,
) -> Result<Bytes, WireError> {
    let (page, next, raw) = list_sessions(
        state,
        &portal.info.id,
        params,
        faults,
        |order, filter, cursor, limit| {
            let mut st = portal.state();
            let (page, next) = st.store.list(now, order, filter, cursor, limit);
            let raw = if next.is_none() {
                st.raw_records
                    .iter()
                    .filter(|r| raw_matches(r, filter))
                    .map(|r| r.bytes.clone())
                    .collect()
            } else {
                Vec::new()
            };
            (page, next, raw)
        },
    )?;
    let mut body = String::with_capacity(64 + page.len() * 260);
    body.push_str("{\"sessions\":[");
    for (i, s) in page.iter().enumerate() {
        if i > 0 {
            body.push(',');
        }
        body.push_str(&session_json(s, &portal.info.arn, false));
    }
    let mut body = body.into_bytes();
    for (i, r) in raw.iter().enumerate() {
        if i > 0 || !page.is_empty() {
            body.push(b',');
        }
        body.extend_from_slice(r);
    }
    body.push(b']');
    if let Some(t) = next {
        body.extend_from_slice(b",\"nextToken\":");
        body.extend_from_slice(json_str(&t).as_bytes());
    }
    body.push(b'}');
    Ok(body.into())
}
