//! Routing of WorkSpaces Web requests (restJson1 paths and methods) and their query strings.

use hyper::Method;
use hyper::header::HeaderMap;

use crate::access::credential_scope;
use crate::operation;

/// A parsed route.
#[derive(Debug)]
pub(crate) enum Route {
    /// `GET /portals`.
    ListPortals,
    /// `GET /portals/{portalArn+}`.
    GetPortal(String),
    /// `GET /portals/{portalId}/sessions`.
    ListSessions(String),
    /// `GET /portals/{portalId}/sessions/{sessionId}`.
    GetSession(String, String),
    /// `DELETE /portals/{portalId}/sessions/{sessionId}`.
    ExpireSession(String, String),
    /// A known path with a method it does not support.
    MethodNotAllowed(&'static str),
    /// Anything else.
    Unknown,
}

impl Route {
    /// The operation name (see [`operation`]).
    pub(crate) fn operation(&self) -> &'static str {
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
    pub(crate) fn portal_key(&self) -> String {
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

/// The route of a request.
pub(crate) fn route(method: &Method, path: &str) -> Route {
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
pub(crate) fn signing_region(headers: &HeaderMap) -> Option<String> {
    credential_scope(headers).and_then(|(_, region)| region)
}

/// The first value of each query parameter.
pub(crate) fn query_params(query: Option<&str>) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for (k, v) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        if !out.iter().any(|(x, _)| *x == k) {
            out.push((k.into_owned(), v.into_owned()));
        }
    }
    out
}

/// The value of query parameter `name`.
pub(crate) fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

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
}
