//! The simulator's HTTP front: one loopback endpoint for every API it serves, each request
//! dispatched by its protocol: Organizations (awsJson1.1, `POST /` with an `X-Amz-Target`), STS
//! (awsQuery, `POST /` with a form body) or WorkSpaces Web (restJson1, `/portals...`).

pub(crate) mod json;
mod organizations;
mod sts;
pub(crate) mod workspacesweb;

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::HeaderValue;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinSet;

use crate::state::SimState;

/// An HTTP response under construction.
pub(crate) type Resp = Response<Full<Bytes>>;

/// A response with `status`, `body`, its content type and an `x-amzn-requestid`.
pub(crate) fn response(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
    request_id: &str,
) -> Resp {
    let mut resp = Response::new(Full::new(body.into()));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        hyper::header::CONTENT_TYPE,
        HeaderValue::from_static(content_type),
    );
    if let Ok(v) = HeaderValue::from_str(request_id) {
        h.insert("x-amzn-requestid", v);
    }
    resp
}

/// Accepts connections until `stop` fires; open connections are dropped with the task.
pub(crate) async fn serve(
    state: Arc<SimState>,
    listener: TcpListener,
    mut stop: oneshot::Receiver<()>,
) {
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            _ = &mut stop => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let state = Arc::clone(&state);
                    conns.spawn(async move {
                        let service = service_fn(move |req| handle(Arc::clone(&state), req));
                        let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
                    });
                }
                // Out of file descriptors or similar: back off a little instead of spinning.
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(20)).await,
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
}

/// Serves one request with the API its protocol names.
async fn handle(state: Arc<SimState>, req: Request<Incoming>) -> Result<Resp, Infallible> {
    if let Some(op) = organizations::operation_of(req.headers()) {
        return Ok(organizations::serve(&state, req, op).await);
    }
    if sts::is_sts(req.method(), req.uri().path()) {
        return Ok(sts::serve(&state, req).await);
    }
    Ok(workspacesweb::serve(&state, req).await)
}

/// Fuzz body of the simulator's request parsing (the `wire_parse` fuzz target): routes, query
/// strings, pagination tokens and the JSON writers on arbitrary input. Never panics but on a broken
/// invariant (a token that does not round-trip, JSON that does not read back).
pub fn fuzz_wire(data: &[u8]) {
    workspacesweb::fuzz(data);
}
