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
use crate::access::Denial;
use crate::api::json::json_str;
use crate::api::{Resp, response};
use crate::faults::Faults;
use crate::locks::lock;
use crate::portals::Portal;
use crate::rng::{Rng, fnv, mix};
use crate::state::SimState;
use crate::traffic::LoggedRequest;

/// Decides whether request number `n` of a portal is throttled.
fn throttled(seed: u64, key: &str, n: u64, ratio: f64) -> bool {
    ratio > 0.0 && Rng::new(mix(seed ^ fnv(key), n)).next_f64() < ratio
}

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
    if throttled(state.seed, key, n, faults.throttle_ratio) {
        return Err(WireError::injected(
            "ThrottlingException",
            faults.retry_after_secs,
        ));
    }
    Ok(())
}

/// Serves one WorkSpaces Web request.
pub(crate) async fn serve(state: &SimState, req: Request<Incoming>) -> Resp {
    let arrived = tokio::time::Instant::now();
    let query = req.uri().query().unwrap_or_default().to_string();
    let route = route(req.method(), req.uri().path());
    let key = route.portal_key();
    let operation = route.operation();
    state.traffic.count(&key, operation);
    let region = if state.enforce_region {
        signing_region(req.headers())
    } else {
        None
    };
    let params = query_params(req.uri().query());
    let request_id = state.traffic.request_id(state.seed);
    let resp = if let Some(denial) = state.access.gate(&key, operation, req.headers()) {
        denied(denial, &key).into_response(&request_id)
    } else {
        match dispatch(state, route, &key, region.as_deref(), &params).await {
            Ok(body) => response(StatusCode::OK, "application/json", body, &request_id),
            Err(e) => e.into_response(&request_id),
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
        Denial::Error(code) => WireError::injected(&code, 1),
    }
}

async fn dispatch(
    state: &SimState,
    route: Route,
    key: &str,
    region: Option<&str>,
    params: &[(String, String)],
) -> Result<Bytes, WireError> {
    match route {
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
            let (faults, n) = {
                let mut lp = lock(&state.list_portals);
                lp.requests += 1;
                (lp.faults.clone(), lp.requests)
            };
            apply_faults(state, "", &faults, n).await?;
            let body = list_portals(state, region, params, &faults)?;
            Ok(apply_body_fault(body.into(), faults.body.as_ref()))
        }
        route => portal_request(state, route, key, region, params).await,
    }
}

/// A portal-scoped operation: the portal must exist in the request's region.
async fn portal_request(
    state: &SimState,
    route: Route,
    key: &str,
    region: Option<&str>,
    params: &[(String, String)],
) -> Result<Bytes, WireError> {
    let Some(portal) = state.portals.get(key) else {
        if let Route::GetPortal(arn) = &route {
            check_arn(arn)?;
        } else {
            check_portal_id(key)?;
        }
        return Err(WireError::not_found("Portal", key));
    };
    if region.is_some_and(|r| r != portal.info.region) {
        return Err(WireError::not_found("Portal", key));
    }
    let (faults, n) = {
        let mut s = portal.state();
        s.requests += 1;
        (s.faults.clone(), s.requests)
    };
    let faults = if faults.applies_to(route.operation(), param(params, "status")) {
        faults
    } else {
        Faults::none()
    };
    apply_faults(state, key, &faults, n).await?;
    let body = portal_operation(state, route, &portal, params, &faults)?;
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
