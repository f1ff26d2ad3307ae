//! The HTTP side: routing, validation, JSON bodies, error shapes, pagination tokens, faults.

use std::convert::Infallible;
use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderMap, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinSet;

use super::model::{Cursor, Filter, Order, Rng, fnv, mix};
use super::{BodyFault, Faults, Inner, PortalInfo, RawRecord, SimSession, lock, operation};
use crate::record::SessionStatus;

/// Suffix real Coral services append to `X-Amzn-ErrorType` (clients strip everything after `:`).
const ERROR_TYPE_SUFFIX: &str = ":http://internal.amazon.com/coral/com.amazonaws.workspacesweb/";

/// Accepts connections until `stop` fires; open connections are dropped with the task.
pub(super) async fn serve(
    inner: Arc<Inner>,
    listener: TcpListener,
    mut stop: oneshot::Receiver<()>,
) {
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            _ = &mut stop => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let inner = Arc::clone(&inner);
                    conns.spawn(async move {
                        let service = service_fn(move |req| handle(Arc::clone(&inner), req));
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

/// A parsed route.
#[derive(Debug)]
enum Route {
    ListPortals,
    GetPortal(String),
    ListSessions(String),
    GetSession(String, String),
    ExpireSession(String, String),
    /// A known path with a method it does not support.
    MethodNotAllowed(&'static str),
    Unknown,
}

impl Route {
    fn operation(&self) -> &'static str {
        match self {
            Route::ListPortals => operation::LIST_PORTALS,
            Route::GetPortal(_) => operation::GET_PORTAL,
            Route::ListSessions(_) => operation::LIST_SESSIONS,
            Route::GetSession(..) => operation::GET_SESSION,
            Route::ExpireSession(..) => operation::EXPIRE_SESSION,
            Route::MethodNotAllowed(_) | Route::Unknown => operation::UNKNOWN,
        }
    }

    /// The portal id the request is about (for counters and faults).
    fn portal_key(&self) -> String {
        match self {
            Route::GetPortal(arn) => arn.rsplit('/').next().unwrap_or(arn).to_string(),
            Route::ListSessions(p) | Route::GetSession(p, _) | Route::ExpireSession(p, _) => {
                p.clone()
            }
            _ => String::new(),
        }
    }
}

fn decode(segment: &str) -> String {
    percent_encoding::percent_decode_str(segment)
        .decode_utf8_lossy()
        .into_owned()
}

fn route(method: &Method, path: &str) -> Route {
    let get_only = |r: Route| {
        if method == Method::GET {
            r
        } else {
            Route::MethodNotAllowed("GET")
        }
    };
    if path == "/portals" {
        return get_only(Route::ListPortals);
    }
    let Some(rest) = path.strip_prefix("/portals/") else {
        return Route::Unknown;
    };
    if rest.is_empty() {
        return Route::Unknown;
    }
    // `{portalArn+}` is greedy: the ARN may come percent-encoded or with literal `/` and `:`.
    let whole = decode(rest);
    if whole.starts_with("arn:") {
        return get_only(Route::GetPortal(whole));
    }
    let segments: Vec<&str> = rest.split('/').collect();
    match segments.as_slice() {
        [p] => get_only(Route::GetPortal(decode(p))),
        [p, "sessions"] => get_only(Route::ListSessions(decode(p))),
        [p, "sessions", s] if !s.is_empty() => match *method {
            Method::GET => Route::GetSession(decode(p), decode(s)),
            Method::DELETE => Route::ExpireSession(decode(p), decode(s)),
            _ => Route::MethodNotAllowed("GET, DELETE"),
        },
        _ => Route::Unknown,
    }
}

/// The region of a SigV4-signed request: `Credential=AKID/20240101/<region>/workspaces-web/aws4_request`.
fn signing_region(headers: &HeaderMap) -> Option<String> {
    let auth = headers.get(hyper::header::AUTHORIZATION)?.to_str().ok()?;
    let cred = auth.split("Credential=").nth(1)?;
    let scope = cred.split([',', ' ']).next()?;
    scope.split('/').nth(2).map(str::to_string)
}

/// An HTTP response under construction.
type Resp = Response<Full<Bytes>>;

fn response(inner: &Inner, status: StatusCode, body: impl Into<Bytes>) -> Resp {
    let mut resp = Response::new(Full::new(body.into()));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        hyper::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    let n = inner.request_seq.fetch_add(1, Ordering::Relaxed);
    let id = Rng::new(mix(inner.seed, n)).uuid();
    if let Ok(v) = HeaderValue::from_str(&id) {
        h.insert("x-amzn-requestid", v);
    }
    resp
}

/// A wire error: code, message and extra body members (already JSON-encoded `"key":value` pairs).
#[derive(Debug)]
struct WireError {
    code: String,
    message: String,
    members: Vec<(String, String)>,
    retry_after: Option<u32>,
}

impl WireError {
    fn new(code: &str, message: impl Into<String>) -> Self {
        Self {
            code: code.to_string(),
            message: message.into(),
            members: Vec::new(),
            retry_after: None,
        }
    }

    fn validation(field: &str, message: impl Into<String>) -> Self {
        let message = message.into();
        let mut e = Self::new("ValidationException", message.clone());
        e.members
            .push(("reason".into(), json_str("fieldValidationFailed")));
        e.members.push((
            "fieldList".into(),
            format!(
                "[{{\"name\":{},\"message\":{}}}]",
                json_str(field),
                json_str(&message)
            ),
        ));
        e
    }

    fn not_found(kind: &str, id: &str) -> Self {
        let mut e = Self::new(
            "ResourceNotFoundException",
            format!("{kind} not found: {id}"),
        );
        e.members.push(("resourceId".into(), json_str(id)));
        e.members.push(("resourceType".into(), json_str(kind)));
        e
    }

    /// An injected error with the usual message and members of its code.
    fn injected(code: &str, retry_after: u32) -> Self {
        let mut e = match code {
            "ThrottlingException" => {
                let mut e = Self::new(code, "Rate exceeded");
                e.members
                    .push(("serviceCode".into(), json_str("workspaces-web")));
                e
            }
            "AccessDeniedException" => Self::new(
                code,
                "User: arn:aws:sts::123456789012:assumed-role/exporter/sim is not authorized to perform this action",
            ),
            "InternalServerException" => Self::new(code, "Internal server error"),
            "ValidationException" => Self::validation("request", "Injected validation failure"),
            "ResourceNotFoundException" => Self::new(code, "Resource not found"),
            other => Self::new(other, format!("Injected {other}")),
        };
        if matches!(code, "ThrottlingException" | "InternalServerException") {
            e.retry_after = Some(retry_after);
        }
        e
    }

    fn status(&self) -> StatusCode {
        match self.code.as_str() {
            "ValidationException" | "SerializationException" => StatusCode::BAD_REQUEST,
            "AccessDeniedException" | "UnrecognizedClientException" | "ExpiredTokenException" => {
                StatusCode::FORBIDDEN
            }
            "ResourceNotFoundException" | "UnknownOperationException" => StatusCode::NOT_FOUND,
            "MethodNotAllowed" => StatusCode::METHOD_NOT_ALLOWED,
            "ConflictException" => StatusCode::CONFLICT,
            "ThrottlingException" | "TooManyRequestsException" => StatusCode::TOO_MANY_REQUESTS,
            "InternalServerException" | "InternalFailure" => StatusCode::INTERNAL_SERVER_ERROR,
            "ServiceUnavailableException" | "ServiceUnavailable" => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::BAD_REQUEST,
        }
    }

    fn into_response(self, inner: &Inner) -> Resp {
        let mut body = format!("{{\"message\":{}", json_str(&self.message));
        for (k, v) in &self.members {
            let _ = write!(body, ",{}:{}", json_str(k), v);
        }
        body.push('}');
        let status = self.status();
        let mut resp = response(inner, status, body);
        let h = resp.headers_mut();
        if let Ok(v) = HeaderValue::from_str(&format!("{}{}", self.code, ERROR_TYPE_SUFFIX)) {
            h.insert("x-amzn-errortype", v);
        }
        if let Some(secs) = self.retry_after {
            h.insert(hyper::header::RETRY_AFTER, HeaderValue::from(secs));
        }
        resp
    }
}

/// A JSON string literal.
pub(super) fn json_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Epoch seconds as a JSON number the way AWS's Java services print them: `1.732790400123E9`.
pub(super) fn json_time(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let frac = ms.rem_euclid(1000);
    if !(10_000_000..1_000_000_000_000_000).contains(&secs) {
        // Outside Java's scientific range: a plain decimal.
        return if frac == 0 {
            format!("{secs}.0")
        } else {
            format!("{secs}.{frac:03}")
                .trim_end_matches('0')
                .to_string()
        };
    }
    let digits = format!("{secs}{frac:03}");
    let exponent = secs.to_string().len() - 1;
    let significant = digits.trim_end_matches('0');
    let (head, tail) = significant.split_at(1);
    let tail = if tail.is_empty() { "0" } else { tail };
    format!("{head}.{tail}E{exponent}")
}

fn session_json(s: &SimSession, portal_arn: &str, with_ips: bool) -> String {
    let mut out = format!(
        "{{\"portalArn\":{},\"sessionId\":{}",
        json_str(portal_arn),
        json_str(&s.id)
    );
    if let Some(u) = &s.username {
        let _ = write!(out, ",\"username\":{}", json_str(u));
    }
    let _ = write!(
        out,
        ",\"status\":{},\"startTime\":{}",
        json_str(s.status().as_str()),
        json_time(s.start_ms)
    );
    if let Some(e) = s.end_ms {
        let _ = write!(out, ",\"endTime\":{}", json_time(e));
    }
    if with_ips {
        let h = fnv(&s.id);
        let _ = write!(
            out,
            ",\"clientIpAddresses\":[\"198.51.100.{}\"]",
            1 + h % 254
        );
    }
    out.push('}');
    out
}

fn portal_json(p: &PortalInfo) -> String {
    let browser_settings = Rng::new(fnv(&p.id)).uuid();
    format!(
        "{{\"portalArn\":{},\"portalStatus\":\"Active\",\"displayName\":{},\"maxConcurrentSessions\":{},\
         \"browserType\":\"Chrome\",\"instanceType\":{},\"rendererType\":\"AppStream\",\
         \"authenticationType\":\"Standard\",\"portalEndpoint\":{},\"creationDate\":{},\
         \"browserSettingsArn\":{}}}",
        json_str(&p.arn),
        json_str(&p.display_name),
        p.max_concurrent_sessions,
        json_str(&p.instance_type),
        json_str(&format!(
            "{}.workspaces-web.com",
            p.id.replace('-', "").get(..20).unwrap_or(&p.id)
        )),
        json_time(p.creation_ms),
        json_str(&format!(
            "arn:aws:workspaces-web:{}:{}:browserSettings/{}",
            p.region, p.account, browser_settings
        )),
    )
}

/// The first value of each query parameter.
fn query_params(query: Option<&str>) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for (k, v) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        if !out.iter().any(|(x, _)| *x == k) {
            out.push((k.into_owned(), v.into_owned()));
        }
    }
    out
}

fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn valid_id(s: &str) -> bool {
    s.len() == 36 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

fn check_portal_id(id: &str) -> Result<(), WireError> {
    if valid_id(id) {
        Ok(())
    } else {
        Err(WireError::validation(
            "portalId",
            "Value at 'portalId' failed to satisfy constraint: Member must have length 36 and match pattern [a-zA-Z0-9\\-]+",
        ))
    }
}

/// `maxResults`: an integer >= 1, capped to the page maximum.
fn page_size(inner: &Inner, params: &[(String, String)]) -> Result<usize, WireError> {
    match param(params, "maxResults") {
        None => Ok(inner.default_page_size.min(inner.max_page_size)),
        Some(raw) => match raw.trim().parse::<i32>() {
            Ok(n) if n >= 1 => Ok((n as usize).min(inner.max_page_size)),
            Ok(_) => Err(WireError::validation(
                "maxResults",
                format!(
                    "Value '{raw}' at 'maxResults' failed to satisfy constraint: Member must have value greater than or equal to 1"
                ),
            )),
            Err(_) => Err(WireError::validation(
                "maxResults",
                format!("Value '{raw}' at 'maxResults' could not be parsed as an integer"),
            )),
        },
    }
}

/// Token kinds.
const KIND_ASC: &str = "a";
const KIND_DESC: &str = "d";
const KIND_PORTALS: &str = "p";

fn encode_token(kind: &str, fingerprint: u64, start_ms: i64, id: &str) -> String {
    URL_SAFE_NO_PAD.encode(format!("v1|{kind}|{fingerprint:016x}|{start_ms}|{id}"))
}

/// Validates and decodes `nextToken` for a request of this kind and fingerprint.
fn decode_token(
    raw: Option<&str>,
    kind: &str,
    fingerprint: u64,
) -> Result<Option<Cursor>, WireError> {
    let Some(raw) = raw else { return Ok(None) };
    let invalid = || WireError::validation("nextToken", "Invalid pagination token");
    if raw.is_empty() || raw.len() > 2048 || raw.chars().any(char::is_whitespace) {
        return Err(WireError::validation(
            "nextToken",
            "Value at 'nextToken' failed to satisfy constraint: Member must have length between 1 and 2048 and match pattern \\S+",
        ));
    }
    let bytes = URL_SAFE_NO_PAD.decode(raw).map_err(|_| invalid())?;
    let text = String::from_utf8(bytes).map_err(|_| invalid())?;
    let mut parts = text.splitn(5, '|');
    let (Some("v1"), Some(k), Some(fp), Some(start), Some(id)) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return Err(invalid());
    };
    let fp = u64::from_str_radix(fp, 16).map_err(|_| invalid())?;
    let start_ms = start.parse::<i64>().map_err(|_| invalid())?;
    if k != kind || fp != fingerprint {
        return Err(WireError::validation(
            "nextToken",
            "The nextToken does not match the request parameters",
        ));
    }
    Ok(Some(Cursor {
        start_ms,
        id: id.to_string(),
    }))
}

/// Decides whether request number `n` of a portal is throttled.
fn throttled(seed: u64, key: &str, n: u64, ratio: f64) -> bool {
    ratio > 0.0 && Rng::new(mix(seed ^ fnv(key), n)).next_f64() < ratio
}

/// Applies latency, a fixed error, and throttling; returns the error to send, if any.
async fn apply_faults(inner: &Inner, key: &str, faults: &Faults, n: u64) -> Result<(), WireError> {
    if !faults.latency.is_zero() {
        tokio::time::sleep(faults.latency).await;
    }
    if let Some(code) = &faults.error {
        return Err(WireError::injected(code, faults.retry_after_secs));
    }
    if throttled(inner.seed, key, n, faults.throttle_ratio) {
        return Err(WireError::injected(
            "ThrottlingException",
            faults.retry_after_secs,
        ));
    }
    Ok(())
}

/// Serves one request.
async fn handle(inner: Arc<Inner>, req: Request<Incoming>) -> Result<Resp, Infallible> {
    if super::sts::is_sts(req.method(), req.uri().path()) {
        return Ok(super::sts::serve(&inner, req).await);
    }
    let arrived = tokio::time::Instant::now();
    let query = req.uri().query().unwrap_or_default().to_string();
    let route = route(req.method(), req.uri().path());
    let key = route.portal_key();
    let operation_name = route.operation().to_string();
    *lock(&inner.counters)
        .entry((key.clone(), route.operation().to_string()))
        .or_insert(0) += 1;
    let region = if inner.enforce_region {
        signing_region(req.headers())
    } else {
        None
    };
    let params = query_params(req.uri().query());
    let resp = if let Some(denial) = inner.access.gate(&key, route.operation(), req.headers()) {
        denied(denial, &key).into_response(&inner)
    } else {
        match dispatch(&inner, route, &key, region.as_deref(), &params).await {
            Ok(body) => response(&inner, StatusCode::OK, body),
            Err(e) => e.into_response(&inner),
        }
    };
    if let Some(log) = lock(&inner.log).as_mut() {
        log.push(super::LoggedRequest {
            at: arrived,
            portal_id: key,
            operation: operation_name,
            query,
            status: resp.status().as_u16(),
        });
    }
    Ok(resp)
}

/// The wire error of a request the access model refuses.
fn denied(denial: super::sts::Denial, portal_id: &str) -> WireError {
    match denial {
        super::sts::Denial::NotFound => WireError::not_found("Portal", portal_id),
        super::sts::Denial::Error(code) => WireError::injected(&code, 1),
    }
}

async fn dispatch(
    inner: &Inner,
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
                let mut lp = lock(&inner.list_portals);
                lp.1 += 1;
                (lp.0.clone(), lp.1)
            };
            apply_faults(inner, "", &faults, n).await?;
            let body = list_portals(inner, region, params, &faults)?;
            Ok(apply_body_fault(body.into(), faults.body.as_ref()))
        }
        route => {
            // Portal-scoped operations.
            let Some(state) = inner.states.get(key) else {
                if let Route::GetPortal(arn) = &route {
                    check_arn(arn)?;
                } else {
                    check_portal_id(key)?;
                }
                return Err(WireError::not_found("Portal", key));
            };
            let Some(info) = inner.portals.iter().find(|p| p.id == key) else {
                return Err(WireError::not_found("Portal", key));
            };
            if region.is_some_and(|r| r != info.region) {
                return Err(WireError::not_found("Portal", key));
            }
            let (faults, n) = {
                let mut s = lock(state);
                s.requests += 1;
                (s.faults.clone(), s.requests)
            };
            let faults = if faults.applies_to(route.operation(), param(params, "status")) {
                faults
            } else {
                Faults::none()
            };
            apply_faults(inner, key, &faults, n).await?;
            let body = portal_operation(inner, route, key, info, state, params, &faults)?;
            Ok(apply_body_fault(body, faults.body.as_ref()))
        }
    }
}

/// Answers a portal-scoped operation once faults let it through.
fn portal_operation(
    inner: &Inner,
    route: Route,
    key: &str,
    info: &PortalInfo,
    state: &std::sync::Mutex<super::PortalState>,
    params: &[(String, String)],
    faults: &Faults,
) -> Result<Bytes, WireError> {
    let now = inner.clock.now_ms();
    match route {
        Route::GetPortal(arn) => {
            check_arn(&arn)?;
            if arn != info.arn {
                return Err(WireError::not_found("Portal", &arn));
            }
            Ok(format!("{{\"portal\":{}}}", portal_json(info)).into())
        }
        Route::ListSessions(_) => {
            let (page, next, raw) = list_sessions(
                inner,
                key,
                params,
                faults,
                |order, filter, cursor, limit| {
                    let mut st = lock(state);
                    let (page, next) = st.store.list(now, order, filter, cursor, limit);
                    // Raw records go on the last page.
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
                body.push_str(&session_json(s, &info.arn, false));
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
        Route::GetSession(_, sid) => {
            check_session_id(&sid)?;
            match lock(state).store.get(now, &sid) {
                Some(s) => {
                    Ok(format!("{{\"session\":{}}}", session_json(&s, &info.arn, true)).into())
                }
                None => Err(WireError::not_found("Session", &sid)),
            }
        }
        Route::ExpireSession(_, sid) => {
            check_session_id(&sid)?;
            let mut st = lock(state);
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

/// The body actually sent for a successful answer under `fault`.
fn apply_body_fault(body: Bytes, fault: Option<&BodyFault>) -> Bytes {
    match fault {
        None => body,
        Some(BodyFault::Replace(b)) => b.clone(),
        Some(BodyFault::PadTo(len)) => {
            // `{...}` -> `{...,"padding":"xxxx"}`; the member adds 14 bytes besides its value.
            let extra = len.saturating_sub(body.len());
            if extra == 0 || body.last() != Some(&b'}') {
                return body;
            }
            let fill = extra.saturating_sub(14).max(1);
            let mut out = Vec::with_capacity(body.len() + 14 + fill);
            out.extend_from_slice(&body[..body.len() - 1]);
            out.extend_from_slice(b",\"padding\":\"");
            out.resize(out.len() + fill, b'x');
            out.extend_from_slice(b"\"}");
            out.into()
        }
    }
}

fn check_session_id(id: &str) -> Result<(), WireError> {
    if valid_id(id) {
        Ok(())
    } else {
        Err(WireError::validation(
            "sessionId",
            "Value at 'sessionId' failed to satisfy constraint: Member must have length 36 and match pattern [a-zA-Z0-9\\-]+",
        ))
    }
}

/// `portalArn`: `arn:<partition>:<service>:<region>:<account>:<type>/<id>`, 20..2048 chars.
fn check_arn(arn: &str) -> Result<(), WireError> {
    let ok = (20..=2048).contains(&arn.len())
        && crate::record::arn_fields(arn).is_some_and(|[prefix, _, _, _, account, resource]| {
            prefix == "arn"
                && account.len() <= 12
                && resource
                    .split_once('/')
                    .is_some_and(|(_, id)| !id.is_empty())
        });
    if ok {
        Ok(())
    } else {
        Err(WireError::validation(
            "portalArn",
            "Value at 'portalArn' failed to satisfy constraint: Member must satisfy regular expression pattern",
        ))
    }
}

/// One page of `ListSessions`: the model's sessions, the next cursor, raw records (bytes).
type Page = (Vec<SimSession>, Option<Cursor>, Vec<Bytes>);

/// The same page with the next token encoded.
type ListedPage = (Vec<SimSession>, Option<String>, Vec<Bytes>);

/// Parses the `ListSessions` query, runs `fetch`, and builds the next token.
fn list_sessions(
    inner: &Inner,
    portal_id: &str,
    params: &[(String, String)],
    faults: &Faults,
    fetch: impl FnOnce(Order, &Filter, Option<&Cursor>, usize) -> Page,
) -> Result<ListedPage, WireError> {
    check_portal_id(portal_id)?;
    let limit = page_size(inner, params)?;
    let order = match param(params, "sortBy") {
        None => Order::Descending,
        Some("StartTimeAscending") => Order::Ascending,
        Some("StartTimeDescending") => Order::Descending,
        Some(other) => {
            return Err(WireError::validation(
                "sortBy",
                format!(
                    "Value '{other}' at 'sortBy' failed to satisfy constraint: Member must satisfy enum value set: [StartTimeAscending, StartTimeDescending]"
                ),
            ));
        }
    };
    let status = match param(params, "status") {
        None => None,
        Some(value) => Some(SessionStatus::from_wire(value).ok_or_else(|| {
            WireError::validation(
                "status",
                format!(
                    "Value '{value}' at 'status' failed to satisfy constraint: Member must satisfy enum value set: [Active, Terminated]"
                ),
            )
        })?),
    };
    let username = param(params, "username").map(str::to_string);
    if username.as_ref().is_some_and(|u| u.chars().count() > 256) {
        return Err(WireError::validation(
            "username",
            "Value at 'username' failed to satisfy constraint: Member must have length less than or equal to 256",
        ));
    }
    let session_id = param(params, "sessionId").map(str::to_string);
    if let Some(id) = &session_id {
        check_session_id(id)?;
    }
    let kind = if order == Order::Ascending {
        KIND_ASC
    } else {
        KIND_DESC
    };
    let fingerprint = fnv(&format!(
        "{portal_id}\u{0}{:?}\u{0}{:?}\u{0}{:?}",
        status.as_ref().map(SessionStatus::as_str),
        username,
        session_id
    ));
    let raw_token = param(params, "nextToken");
    let cursor = decode_token(raw_token, kind, fingerprint)?;
    let filter = Filter {
        status,
        username,
        session_id,
    };
    let (page, next, raw) = fetch(order, &filter, cursor.as_ref(), limit);
    let next = if faults.endless_next_token && next.is_none() {
        let (start_ms, id) = endless_cursor(order, cursor.as_ref());
        Some(Cursor { start_ms, id })
    } else {
        next
    };
    let next = match (faults.repeat_next_token, raw_token) {
        (true, Some(t)) => Some(t.to_string()),
        (true, None) => {
            let c = next
                .or_else(|| {
                    page.last().map(|s| Cursor {
                        start_ms: s.start_ms,
                        id: s.id.clone(),
                    })
                })
                .unwrap_or(Cursor {
                    start_ms: i64::MAX,
                    id: String::new(),
                });
            Some(encode_token(kind, fingerprint, c.start_ms, &c.id))
        }
        (false, _) => next.map(|c| encode_token(kind, fingerprint, c.start_ms, &c.id)),
    };
    Ok((page, next, raw))
}

/// Prefix of the cursor ids of a never-ending paginator (`~` sorts after every portal id).
const ENDLESS: &str = "~endless-";

/// The next cursor of a never-ending paginator: beyond every item in `order`, and different from
/// the request's cursor.
fn endless_cursor(order: Order, cursor: Option<&Cursor>) -> (i64, String) {
    let n = cursor
        .and_then(|c| c.id.strip_prefix(ENDLESS))
        .and_then(|n| n.parse::<u64>().ok())
        .map_or(0, |n| n.wrapping_add(1));
    let start = match order {
        Order::Ascending => i64::MAX,
        Order::Descending => i64::MIN,
    };
    (start, format!("{ENDLESS}{n}"))
}

/// Whether a raw record passes the filters (compared as strings; a missing field never matches a filter).
fn raw_matches(record: &RawRecord, f: &Filter) -> bool {
    let Some(record) = &record.fields else {
        return true;
    };
    let field = |name: &str| record.get(name).and_then(serde_json::Value::as_str);
    f.status
        .as_ref()
        .is_none_or(|s| field("status") == Some(s.as_str()))
        && f.username
            .as_deref()
            .is_none_or(|u| field("username") == Some(u))
        && f.session_id
            .as_deref()
            .is_none_or(|id| field("sessionId") == Some(id))
}

fn list_portals(
    inner: &Inner,
    region: Option<&str>,
    params: &[(String, String)],
    faults: &Faults,
) -> Result<String, WireError> {
    let limit = page_size(inner, params)?;
    let fingerprint = fnv(region.unwrap_or(""));
    let raw_token = param(params, "nextToken");
    let cursor = decode_token(raw_token, KIND_PORTALS, fingerprint)?;
    let mut visible = inner
        .portals
        .iter()
        .filter(|p| region.is_none_or(|r| r == p.region))
        .filter(|p| inner.access.listed(&p.id))
        .filter(|p| {
            cursor
                .as_ref()
                .is_none_or(|c| p.id.as_str() > c.id.as_str())
        });
    let page: Vec<&PortalInfo> = visible.by_ref().take(limit).collect();
    let more = visible.next().is_some();
    let next = if faults.repeat_next_token {
        Some(raw_token.map(str::to_string).unwrap_or_else(|| {
            let last = page.last().map_or("~", |p| p.id.as_str());
            encode_token(KIND_PORTALS, fingerprint, 0, last)
        }))
    } else if more {
        page.last()
            .map(|p| encode_token(KIND_PORTALS, fingerprint, 0, &p.id))
    } else if faults.endless_next_token {
        let (_, id) = endless_cursor(Order::Ascending, cursor.as_ref());
        Some(encode_token(KIND_PORTALS, fingerprint, 0, &id))
    } else {
        None
    };
    let mut body = String::from("{\"portals\":[");
    for (i, p) in page.iter().enumerate() {
        if i > 0 {
            body.push(',');
        }
        body.push_str(&portal_json(p));
    }
    body.push(']');
    if let Some(t) = next {
        let _ = write!(body, ",\"nextToken\":{}", json_str(&t));
    }
    body.push('}');
    Ok(body)
}

/// Fuzz body (the `wire_parse` fuzz target): routing, query parsing, pagination tokens, the
/// JSON writers and body padding on arbitrary input; panics on a broken invariant.
pub(crate) fn fuzz(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let (path, query) = text.split_once('?').unwrap_or((&text, ""));
    for method in [Method::GET, Method::DELETE, Method::POST] {
        let r = route(&method, path);
        let _ = (r.operation(), r.portal_key());
    }
    let params = query_params(Some(query));
    for (i, (k, _)) in params.iter().enumerate() {
        assert!(
            !params[..i].iter().any(|(x, _)| x == k),
            "duplicate key {k}"
        );
    }
    let fp = fnv(path);
    for kind in [KIND_ASC, KIND_DESC, KIND_PORTALS] {
        // A token from the query: decoding never panics, and what decodes re-encodes the same.
        if let Ok(Some(c)) = decode_token(param(&params, "nextToken"), kind, fp) {
            let again = encode_token(kind, fp, c.start_ms, &c.id);
            assert_eq!(decode_token(Some(&again), kind, fp).ok().flatten(), Some(c));
        }
        // Any cursor round-trips while its token fits the 2048-character limit.
        let start = i64::from_le_bytes(std::array::from_fn(|i| data.get(i).copied().unwrap_or(0)));
        let token = encode_token(kind, fp, start, path);
        let decoded = decode_token(Some(&token), kind, fp);
        if token.len() <= 2048 {
            let cursor = Cursor {
                start_ms: start,
                id: path.to_string(),
            };
            assert_eq!(decoded.ok().flatten(), Some(cursor.clone()));
            let (_, id) = endless_cursor(Order::Ascending, Some(&cursor));
            assert!(id.starts_with(ENDLESS));
        } else {
            assert!(decoded.is_err());
        }
        assert!(decode_token(Some(&token), kind, fp ^ 1).is_err());
    }
    // The JSON writers produce JSON that reads back.
    let s: String = serde_json::from_str(&json_str(&text)).expect("json_str is valid JSON");
    assert_eq!(s, text);
    let ms = i64::from_le_bytes(std::array::from_fn(|i| {
        data.get(i + 8).copied().unwrap_or(0)
    }));
    let secs: f64 = serde_json::from_str(&json_time(ms)).expect("json_time is a JSON number");
    assert!(secs.is_finite());
    // Padding keeps a JSON object valid.
    if let Ok(obj) = serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(data) {
        let body = Bytes::from(serde_json::Value::Object(obj).to_string());
        let want = body.len() + usize::from(data.first().copied().unwrap_or(0));
        let padded = apply_body_fault(body.clone(), Some(&BodyFault::PadTo(want)));
        assert!(padded.len() >= body.len());
        serde_json::from_slice::<serde_json::Value>(&padded).expect("padded body is JSON");
    }
    if let Ok(v) = HeaderValue::from_bytes(data) {
        let mut h = HeaderMap::new();
        h.insert(hyper::header::AUTHORIZATION, v);
        let _ = signing_region(&h);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_look_like_aws() {
        assert_eq!(json_time(1_732_790_400_123), "1.732790400123E9");
        assert_eq!(json_time(1_732_790_400_000), "1.7327904E9");
        assert_eq!(json_time(1_000_000_000_000), "1.0E9");
        assert_eq!(json_time(1_500), "1.5");
    }

    #[test]
    fn json_strings_are_escaped() {
        assert_eq!(json_str("a\"b\\c\n\u{1}é"), "\"a\\\"b\\\\c\\n\\u0001é\"");
    }

    #[test]
    fn routes() {
        let arn = "arn:aws:workspaces-web:us-east-1:123456789012:portal/11111111-2222-3333-4444-555555555555";
        let enc = "arn%3Aaws%3Aworkspaces-web%3Aus-east-1%3A123456789012%3Aportal/11111111-2222-3333-4444-555555555555";
        let enc_slash = enc.replace('/', "%2F");
        for p in [arn.to_string(), enc.to_string(), enc_slash] {
            match route(&Method::GET, &format!("/portals/{p}")) {
                Route::GetPortal(a) => assert_eq!(a, arn),
                other => panic!("{other:?}"),
            }
        }
        assert!(matches!(
            route(&Method::GET, "/portals"),
            Route::ListPortals
        ));
        assert!(matches!(
            route(&Method::POST, "/portals"),
            Route::MethodNotAllowed(_)
        ));
        assert!(matches!(
            route(&Method::GET, "/portals/x/sessions"),
            Route::ListSessions(_)
        ));
        assert!(matches!(
            route(&Method::GET, "/portals/x/sessions/y"),
            Route::GetSession(..)
        ));
        assert!(matches!(
            route(&Method::DELETE, "/portals/x/sessions/y"),
            Route::ExpireSession(..)
        ));
        assert!(matches!(route(&Method::GET, "/nope"), Route::Unknown));
        assert!(matches!(
            route(&Method::GET, "/portals/x/sessions/y/z"),
            Route::Unknown
        ));
    }

    #[test]
    fn signing_region_is_read_from_the_credential_scope() {
        let mut h = HeaderMap::new();
        h.insert(
            hyper::header::AUTHORIZATION,
            HeaderValue::from_static(
                "AWS4-HMAC-SHA256 Credential=AKID/20241128/eu-west-1/workspaces-web/aws4_request, SignedHeaders=host, Signature=abc",
            ),
        );
        assert_eq!(signing_region(&h).as_deref(), Some("eu-west-1"));
    }

    #[test]
    fn tokens_round_trip_and_reject_garbage() {
        let t = encode_token(KIND_ASC, 42, 1_000, "abc");
        assert_eq!(
            decode_token(Some(&t), KIND_ASC, 42).ok().flatten(),
            Some(Cursor {
                start_ms: 1_000,
                id: "abc".into()
            })
        );
        assert!(decode_token(Some(&t), KIND_DESC, 42).is_err());
        assert!(decode_token(Some(&t), KIND_ASC, 43).is_err());
        assert!(decode_token(Some("!!!"), KIND_ASC, 42).is_err());
        assert!(decode_token(Some(""), KIND_ASC, 42).is_err());
    }
}
