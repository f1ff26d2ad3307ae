//! Request → response: the one place every request passes through.
//!
//! In order, for each request, with the web config in force at that moment:
//! 0. `rate_limit`, when set: a request that finds the bucket empty gets 429 (every path but
//!    `/-/healthy`);
//! 1. basic auth, when `basic_auth_users` is set: every path but `/-/healthy` (unknown paths
//!    included, so that they cannot be probed) needs valid credentials, otherwise 401 with
//!    `WWW-Authenticate: Basic realm="workspacesweb-exporter"`;
//! 2. routing: 404 for unknown paths, 405 with `Allow` for other methods; `POST /-/reload`
//!    calls the reload hook (200 `OK`, or 400 with its error), and without a hook (the daemon
//!    passes none without `--web.enable-lifecycle`) answers 403 `Lifecycle API is not
//!    enabled.`, as Prometheus does;
//! 3. the web config's `http_server_config.headers`, added to every response (401, 404 and
//!    405 included) unless the handler set that header itself, as the Go toolkit does.

use std::future::Future;
use std::net::IpAddr;
use std::sync::Arc;

use bytes::Bytes;
use hyper::header::{self, HeaderName, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};

use super::body::Chunks;
use super::webconfig::auth::{CHALLENGE, Credentials, Verdict};
use super::{ReloadHook, WebConfigHandle, encoding, landing};
use crate::exposition::{Exposition, Format};
use crate::snapshot::Store;

const TEXT: &str = "text/plain; charset=utf-8";
const HTML: &str = "text/html; charset=utf-8";
/// The landing page has inline style only: no scripts, no external anything.
const LANDING_CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'";
const READ_METHODS: &str = "GET, HEAD";

/// The endpoints the server knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    Telemetry,
    Landing,
    Healthy,
    Ready,
    Reload,
}

/// The data every request handler reads.
pub(super) struct Routes {
    exposition: Arc<Exposition>,
    store: Arc<Store>,
    telemetry_path: String,
    web: WebConfigHandle,
    reload: Option<ReloadHook>,
    /// Longest a request may take from its head to its response (reload excepted).
    deadline: std::time::Duration,
    /// Whether OpenMetrics is offered ([`encoding::negotiate_format`]).
    openmetrics: bool,
}

impl Routes {
    /// Routes serving `exposition` at `telemetry_path`, no web config and no reload.
    pub(super) fn new(exposition: Arc<Exposition>, telemetry_path: String) -> Self {
        Self {
            store: Arc::clone(exposition.store()),
            exposition,
            telemetry_path,
            web: WebConfigHandle::default(),
            reload: None,
            deadline: super::HttpTimeouts::default().request,
            openmetrics: false,
        }
    }

    /// The same routes, offering OpenMetrics or not.
    pub(super) fn with_openmetrics(self, openmetrics: bool) -> Self {
        Self {
            openmetrics,
            ..self
        }
    }

    /// The same routes with another request deadline.
    pub(super) fn with_deadline(self, deadline: std::time::Duration) -> Self {
        Self { deadline, ..self }
    }

    /// The same routes under a web config, with `POST /-/reload` calling `reload`.
    pub(super) fn with_web(self, web: WebConfigHandle, reload: Option<ReloadHook>) -> Self {
        Self {
            web,
            reload,
            ..self
        }
    }

    fn route(&self, path: &str) -> Option<Route> {
        match path {
            p if p == self.telemetry_path => Some(Route::Telemetry),
            "/" => Some(Route::Landing),
            "/-/healthy" => Some(Route::Healthy),
            "/-/ready" => Some(Route::Ready),
            "/-/reload" => Some(Route::Reload),
            _ => None,
        }
    }

    /// Answers one request; never fails and never reads the request body.
    ///
    /// What the answer needs is taken from the request up front, so the returned future
    /// does not borrow it (and is `Send` whatever the body type).
    pub(super) fn respond<B>(
        self: &Arc<Self>,
        request: &Request<B>,
        peer: IpAddr,
    ) -> impl Future<Output = Response<Chunks>> + Send + use<B> {
        let asked = Asked {
            route: self.route(request.uri().path()),
            method: request.method().clone(),
            path: request.uri().path().to_string(),
            gzip: encoding::accepts_gzip(request.headers().get_all(header::ACCEPT_ENCODING)),
            format: encoding::negotiate_format(
                request.headers().get_all(header::ACCEPT),
                self.openmetrics,
            ),
        };
        let web = self.web.current();
        let guarded = asked.route != Some(Route::Healthy);
        // Before anything costly (bcrypt, rendering), as the toolkit does.
        let limited = guarded && web.rate_limit.as_ref().is_some_and(|r| !r.allow());
        let auth = match &web.auth {
            Some(auth) if guarded && !limited => Some((
                Arc::clone(auth),
                Credentials::from_headers(request.headers()),
            )),
            _ => None,
        };
        let routes = Arc::clone(self);
        async move {
            // Authentication and the answer share one deadline. A reload, once authenticated,
            // is not cut short: dropping it halfway could leave a config half applied.
            let deadline = tokio::time::Instant::now() + routes.deadline;
            let verdict = match auth {
                _ if limited => Verdict::Limited,
                Some((auth, credentials)) => {
                    tokio::time::timeout_at(deadline, auth.verify(credentials, peer))
                        .await
                        .unwrap_or(Verdict::Busy)
                }
                None => Verdict::Allowed,
            };
            let mut response = match verdict {
                Verdict::Allowed if asked.route == Some(Route::Reload) => {
                    routes.answer(&asked).await
                }
                Verdict::Allowed => tokio::time::timeout_at(deadline, routes.answer(&asked))
                    .await
                    .unwrap_or_else(|_| {
                        tracing::warn!(path = ?asked.path, deadline = ?routes.deadline, "request not answered within its deadline");
                        unavailable()
                    }),
                Verdict::Denied => unauthorized(),
                Verdict::Busy => unavailable(),
                Verdict::Limited => text(StatusCode::TOO_MANY_REQUESTS, "Too Many Requests\n"),
            };
            for (name, value) in &web.headers {
                if !response.headers().contains_key(name) {
                    response.headers_mut().insert(name.clone(), value.clone());
                }
            }
            tracing::debug!(method = %asked.method, path = ?asked.path, status = response.status().as_u16(), "http request");
            response
        }
    }

    async fn answer(&self, asked: &Asked) -> Response<Chunks> {
        match asked.route {
            None => text(StatusCode::NOT_FOUND, "Not Found\n"),
            Some(Route::Reload) if asked.method != Method::POST => method_not_allowed("POST"),
            // Without a hook (no --web.enable-lifecycle), as Prometheus answers.
            Some(Route::Reload) => match &self.reload {
                None => text(StatusCode::FORBIDDEN, "Lifecycle API is not enabled.\n"),
                Some(hook) => match hook().await {
                    Ok(()) => text(StatusCode::OK, "OK"),
                    // The reload logs its own failure.
                    Err(error) => owned_text(StatusCode::BAD_REQUEST, format!("{error}\n")),
                },
            },
            Some(_) if !matches!(asked.method, Method::GET | Method::HEAD) => {
                method_not_allowed(READ_METHODS)
            }
            Some(Route::Telemetry) => self.telemetry(asked.format, asked.gzip).await,
            Some(Route::Landing) => self.landing().await,
            Some(Route::Healthy) if self.store.status().healthy() => {
                text(StatusCode::OK, "Healthy")
            }
            Some(Route::Healthy) => text(StatusCode::SERVICE_UNAVAILABLE, "Unhealthy"),
            Some(Route::Ready) if self.store.status().ready() => text(StatusCode::OK, "Ready"),
            // What it waits for, for whoever curls it (a probe reads the status only).
            Some(Route::Ready) => owned_text(
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "Not Ready: {}\n",
                    landing::waiting_text(self.store.status().waiting())
                ),
            ),
        }
    }

    /// The exposition: the `workspacesweb_*` part rendered (and compressed) once per change and
    /// shared by every scrape, followed by `process_*` gathered fresh for this scrape. With gzip,
    /// the body is one gzip stream joined from pieces compressed once each ([`crate::exposition::deflate`]),
    /// sent as the cached buffers themselves. Without gzip, the text is inflated once per rendering
    /// and shared by every such scrape. Rendering after a change and inflating run on the
    /// blocking pool: a large exposition must not stall the runtime threads that serve other
    /// connections; sending the cached rendering or text does not need to.
    ///
    /// The async worker only takes what is ready ([`Exposition::scrape_cached`], which never
    /// waits for a rendering in progress); anything that may render, inflate or wait for
    /// either runs on the blocking pool.
    async fn telemetry(&self, format: Format, gzip: bool) -> Response<Chunks> {
        let body = match self.exposition.scrape_cached(format, gzip) {
            Some(body) => Some(body),
            None => {
                let exposition = Arc::clone(&self.exposition);
                off_runtime(move || exposition.scrape(format, gzip)).await
            }
        };
        let body = match body {
            Some(Ok(chunks)) => chunks,
            Some(Err(error)) => {
                tracing::error!(%error, "the cached exposition does not decompress");
                return text(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error\n");
            }
            None => return text(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error\n"),
        };
        let mut response = Response::new(Chunks::new(body));
        set(&mut response, header::CONTENT_TYPE, format.content_type());
        set(&mut response, header::VARY, "Accept, Accept-Encoding");
        if gzip {
            set(&mut response, header::CONTENT_ENCODING, "gzip");
        }
        response
    }

    async fn landing(&self) -> Response<Chunks> {
        let store = Arc::clone(&self.store);
        let path = self.telemetry_path.clone();
        let now_ms = crate::clock::now_ms();
        let Some(page) = off_runtime(move || landing::render(&store, &path, now_ms)).await else {
            return text(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error\n");
        };
        let mut response = Response::new(Chunks::from(Bytes::from(page)));
        set(&mut response, header::CONTENT_TYPE, HTML);
        set(&mut response, header::CONTENT_SECURITY_POLICY, LANDING_CSP);
        set(&mut response, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
        response
    }
}

/// What answering a request needs from it.
struct Asked {
    route: Option<Route>,
    method: Method,
    path: String,
    gzip: bool,
    format: Format,
}

/// Runs CPU-heavy rendering on the blocking pool; `None` (logged) if it panicked.
async fn off_runtime<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    match tokio::task::spawn_blocking(work).await {
        Ok(value) => Some(value),
        Err(error) => {
            tracing::error!(%error, "rendering a response failed");
            None
        }
    }
}

/// A plain-text response.
fn text(status: StatusCode, body: &'static str) -> Response<Chunks> {
    let mut response = Response::new(Chunks::from(Bytes::from_static(body.as_bytes())));
    *response.status_mut() = status;
    set(&mut response, header::CONTENT_TYPE, TEXT);
    response
}

/// A plain-text response with a body made at run time.
fn owned_text(status: StatusCode, body: String) -> Response<Chunks> {
    let mut response = Response::new(Chunks::from(Bytes::from(body)));
    *response.status_mut() = status;
    set(&mut response, header::CONTENT_TYPE, TEXT);
    response
}

/// 401 with the basic-auth challenge.
fn unauthorized() -> Response<Chunks> {
    let mut response = text(StatusCode::UNAUTHORIZED, "Unauthorized\n");
    set(&mut response, header::WWW_AUTHENTICATE, CHALLENGE);
    response
}

/// 503: the bcrypt slot stayed busy, or the request ran past its deadline.
fn unavailable() -> Response<Chunks> {
    let mut response = text(StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable\n");
    set(&mut response, header::RETRY_AFTER, "1");
    response
}

/// 405 with the `Allow` header RFC 9110 requires (empty: nothing is allowed).
fn method_not_allowed(allow: &'static str) -> Response<Chunks> {
    let mut response = text(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed\n");
    set(&mut response, header::ALLOW, allow);
    response
}

fn set(response: &mut Response<Chunks>, name: HeaderName, value: &'static str) {
    response
        .headers_mut()
        .insert(name, HeaderValue::from_static(value));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn routes() -> Arc<Routes> {
        Arc::new(Routes::new(
            Arc::new(Exposition::new(Arc::new(Store::new()))),
            "/metrics".to_string(),
        ))
    }

    impl Routes {
        fn respond_locally<B>(
            self: &Arc<Self>,
            request: &Request<B>,
        ) -> impl Future<Output = Response<Chunks>> + Send + use<B> {
            self.respond(request, IpAddr::from([127, 0, 0, 1]))
        }
    }

    fn request(method: Method, path: &str) -> Request<()> {
        let mut request = Request::new(());
        *request.method_mut() = method;
        *request.uri_mut() = path.parse().unwrap();
        request
    }

    #[tokio::test]
    async fn query_strings_do_not_change_the_route() {
        let response = routes()
            .respond_locally(&request(Method::GET, "/-/healthy?x=1"))
            .await;
        assert_eq!(response.status(), StatusCode::OK);
    }

    #[tokio::test]
    async fn healthy_fails_once_the_store_is_marked_failed() {
        let store = Arc::new(Store::new());
        let routes = Arc::new(Routes::new(
            Arc::new(Exposition::new(store.clone())),
            "/metrics".to_string(),
        ));
        let ok = routes
            .respond_locally(&request(Method::GET, "/-/healthy"))
            .await;
        assert_eq!(ok.status(), StatusCode::OK);
        store.status().set_failed();
        let failed = routes
            .respond_locally(&request(Method::GET, "/-/healthy"))
            .await;
        assert_eq!(failed.status(), StatusCode::SERVICE_UNAVAILABLE);
    }

    #[tokio::test]
    async fn reload_without_a_hook_is_forbidden_as_in_prometheus() {
        let response = routes()
            .respond_locally(&request(Method::POST, "/-/reload"))
            .await;
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
        let body = http_body_util::BodyExt::collect(response.into_body())
            .await
            .unwrap()
            .to_bytes();
        assert_eq!(&body[..], b"Lifecycle API is not enabled.\n");
        let get = routes()
            .respond_locally(&request(Method::GET, "/-/reload"))
            .await;
        assert_eq!(get.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(get.headers()[header::ALLOW], "POST");
    }

    #[tokio::test]
    async fn other_methods_on_known_paths_are_405() {
        for path in ["/", "/metrics", "/-/healthy", "/-/ready"] {
            for method in [Method::POST, Method::PUT, Method::DELETE, Method::OPTIONS] {
                let response = routes()
                    .respond_locally(&request(method.clone(), path))
                    .await;
                assert_eq!(
                    response.status(),
                    StatusCode::METHOD_NOT_ALLOWED,
                    "{method} {path}"
                );
                assert_eq!(response.headers()[header::ALLOW], READ_METHODS);
            }
        }
    }

    #[tokio::test]
    async fn a_custom_telemetry_path_replaces_metrics() {
        let routes = Arc::new(Routes::new(
            Arc::new(Exposition::new(Arc::new(Store::new()))),
            "/custom/metrics".to_string(),
        ));
        let ok = routes
            .respond_locally(&request(Method::GET, "/custom/metrics"))
            .await;
        assert_eq!(ok.status(), StatusCode::OK);
        let gone = routes
            .respond_locally(&request(Method::GET, "/metrics"))
            .await;
        assert_eq!(gone.status(), StatusCode::NOT_FOUND);
    }
}
