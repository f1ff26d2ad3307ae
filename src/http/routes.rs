//! Request → response: the one place every request passes through.
//!
//! Later additions land here: basic auth (check before routing, except `/-/healthy`), the web
//! config's extra response headers (in [`Routes::respond`] after routing), and `POST /-/reload`
//! (today answered 405 with an empty `Allow`, RFC 9110's "disabled by configuration").

use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{self, HeaderName, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};

use super::{EXPOSITION_CONTENT_TYPE, encoding, landing};
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
#[derive(Debug)]
pub(super) struct Routes {
    store: Arc<Store>,
    telemetry_path: String,
}

impl Routes {
    /// Routes for a store, with the exposition at `telemetry_path`.
    pub(super) fn new(store: Arc<Store>, telemetry_path: String) -> Self {
        Self {
            store,
            telemetry_path,
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
    ) -> impl Future<Output = Response<Full<Bytes>>> + Send + use<B> {
        let asked = Asked {
            route: self.route(request.uri().path()),
            method: request.method().clone(),
            path: request.uri().path().to_string(),
            gzip: encoding::accepts_gzip(request.headers().get_all(header::ACCEPT_ENCODING)),
        };
        let routes = Arc::clone(self);
        async move {
            let response = routes.answer(&asked).await;
            tracing::debug!(method = %asked.method, path = ?asked.path, status = response.status().as_u16(), "http request");
            response
        }
    }

    async fn answer(&self, asked: &Asked) -> Response<Full<Bytes>> {
        match asked.route {
            None => text(StatusCode::NOT_FOUND, "Not Found\n"),
            // Reload is not wired yet: no method is allowed.
            Some(Route::Reload) => method_not_allowed(""),
            Some(_) if !matches!(asked.method, Method::GET | Method::HEAD) => {
                method_not_allowed(READ_METHODS)
            }
            Some(Route::Telemetry) => self.telemetry(asked.gzip).await,
            Some(Route::Landing) => self.landing().await,
            Some(Route::Healthy) => text(StatusCode::OK, "Healthy"),
            Some(Route::Ready) if self.store.ready() => text(StatusCode::OK, "Ready"),
            Some(Route::Ready) => text(StatusCode::SERVICE_UNAVAILABLE, "Not Ready"),
        }
    }

    /// The exposition, rendered (and gzipped) on the blocking pool: a large exposition must
    /// not stall the runtime threads that serve other connections.
    async fn telemetry(&self, gzip: bool) -> Response<Full<Bytes>> {
        let store = Arc::clone(&self.store);
        let rendered = off_runtime(move || {
            let body = store.scrape_text();
            if !gzip {
                return (body, false);
            }
            match encoding::gzip(&body) {
                Ok(packed) => (packed, true),
                Err(error) => {
                    tracing::warn!(%error, "gzip of the exposition failed, sending it uncompressed");
                    (body, false)
                }
            }
        })
        .await;
        let Some((body, encoded)) = rendered else {
            return text(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error\n");
        };
        let mut response = Response::new(Full::new(body));
        set(&mut response, header::CONTENT_TYPE, EXPOSITION_CONTENT_TYPE);
        set(&mut response, header::VARY, "Accept-Encoding");
        if encoded {
            set(&mut response, header::CONTENT_ENCODING, "gzip");
        }
        response
    }

    async fn landing(&self) -> Response<Full<Bytes>> {
        let store = Arc::clone(&self.store);
        let path = self.telemetry_path.clone();
        let Some(page) = off_runtime(move || landing::render(&store, &path)).await else {
            return text(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error\n");
        };
        let mut response = Response::new(Full::new(Bytes::from(page)));
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
fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *response.status_mut() = status;
    set(&mut response, header::CONTENT_TYPE, TEXT);
    response
}

/// 405 with the `Allow` header RFC 9110 requires (empty: nothing is allowed).
fn method_not_allowed(allow: &'static str) -> Response<Full<Bytes>> {
    let mut response = text(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed\n");
    set(&mut response, header::ALLOW, allow);
    response
}

fn set(response: &mut Response<Full<Bytes>>, name: HeaderName, value: &'static str) {
    response
        .headers_mut()
        .insert(name, HeaderValue::from_static(value));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn routes() -> Arc<Routes> {
        Arc::new(Routes::new(Arc::new(Store::new()), "/metrics".to_string()))
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
            .respond(&request(Method::GET, "/-/healthy?x=1"))
            .await;
        assert_eq!(response.status(), StatusCode::OK);
    }

    #[tokio::test]
    async fn reload_is_known_but_not_enabled() {
        let response = routes().respond(&request(Method::POST, "/-/reload")).await;
        assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(response.headers()[header::ALLOW], "");
    }

    #[tokio::test]
    async fn other_methods_on_known_paths_are_405() {
        for path in ["/", "/metrics", "/-/healthy", "/-/ready"] {
            for method in [Method::POST, Method::PUT, Method::DELETE, Method::OPTIONS] {
                let response = routes().respond(&request(method.clone(), path)).await;
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
            Arc::new(Store::new()),
            "/custom/metrics".to_string(),
        ));
        let ok = routes
            .respond(&request(Method::GET, "/custom/metrics"))
            .await;
        assert_eq!(ok.status(), StatusCode::OK);
        let gone = routes.respond(&request(Method::GET, "/metrics")).await;
        assert_eq!(gone.status(), StatusCode::NOT_FOUND);
    }
}
