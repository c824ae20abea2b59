//! HTTP surface of the IMS. Handlers are thin: extract, call one domain method, map the result.
//! The public router carries the OAuth/OIDC and vendor-shaped IMS endpoints; the operations router
//! carries health and metrics, so a deployment can put it on a private listener.

pub mod admin;
pub mod admin_console;
pub mod campaign;
pub mod console;
pub mod developer_api;
pub mod developer_console;
pub mod error;
pub mod metrics;
mod migration_api;
mod oauth;
mod pages;
pub mod params;
pub mod serve;
mod signin;
pub mod umapi;

use axum::extract::{ConnectInfo, FromRequestParts, MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use http::request::Parts;
use http::{HeaderValue, StatusCode};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use ims_core::audit::Context;
use ims_core::Now;
use ims_identity::service::Ims;

pub use metrics::Metrics;

/// Largest request body the IMS reads (token requests are a few hundred bytes).
pub const MAX_BODY: usize = 64 * 1024;

/// The body limit a router sets when it is not [`MAX_BODY`] (an extension beside its
/// `DefaultBodyLimit`), so that the refusal names the limit in effect.
#[derive(Clone, Copy, Debug)]
pub struct BodyLimit(pub usize);

#[derive(Clone, Debug)]
pub struct AppState {
    pub ims: Arc<Ims>,
    pub metrics: Arc<Metrics>,
}

/// A request id, from `X-Request-Id` when the caller sent a sane one, generated otherwise.
#[derive(Clone, Debug)]
pub struct RequestId(pub String);

/// What every handler needs about its request: one clock reading, the peer, the request id.
#[derive(Clone, Debug)]
pub struct Meta {
    pub now: Now,
    pub source: Option<String>,
    pub request_id: String,
}

impl Meta {
    pub fn context(&self, actor: impl Into<String>) -> Context {
        let mut ctx = Context::new(self.now, actor);
        ctx.source = self.source.clone();
        ctx.request_id = Some(self.request_id.clone());
        ctx
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Meta {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let source = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(a)| a.ip().to_string());
        let request_id = parts
            .extensions
            .get::<RequestId>()
            .map(|r| r.0.clone())
            .unwrap_or_else(ims_core::secret::uuid_like);
        Ok(Meta {
            now: Now::system(),
            source,
            request_id,
        })
    }
}

/// The raw body of a request, refused in the endpoint's own error convention `E` (OAuth JSON,
/// problem details) rather than axum's plain-text rejection when it is too large or unreadable.
pub struct Body<E>(pub bytes::Bytes, std::marker::PhantomData<E>);

impl<S, E> axum::extract::FromRequest<S> for Body<E>
where
    S: Send + Sync,
    E: From<ims_core::Error> + IntoResponse,
{
    type Rejection = E;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let limit = req.extensions().get::<BodyLimit>().map_or(MAX_BODY, |l| l.0);
        match bytes::Bytes::from_request(req, state).await {
            Ok(b) => Ok(Body(b, std::marker::PhantomData)),
            Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => Err(E::from(
                ims_core::Error::TooLarge(format!("the request body exceeds {limit} bytes")),
            )),
            Err(_) => Err(E::from(ims_core::Error::invalid_request(
                "the request body could not be read",
            ))),
        }
    }
}

fn sane_request_id(v: &HeaderValue) -> Option<String> {
    let s = v.to_str().ok()?;
    (!s.is_empty() && s.len() <= 128 && s.bytes().all(|b| b.is_ascii_graphic())).then(|| s.to_owned())
}

/// Assigns the request id, echoes it, logs one line per request and feeds the metrics. The line
/// names the route's template (`/ims/signin/{flow}`), never the path as sent: query strings and
/// path segments may hold secrets (flow tokens, reset links).
pub(crate) async fn observe(State(metrics): State<Arc<Metrics>>, req: Request, next: Next) -> Response {
    observed(Some(&metrics), None, req, next).await
}

/// The access log line of one request, and its metrics when the router keeps them (the IMS's;
/// an instance's line names the instance instead).
pub(crate) async fn observed(
    metrics: Option<&Metrics>,
    instance: Option<&str>,
    mut req: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let id = req
        .headers()
        .get("x-request-id")
        .and_then(sane_request_id)
        .unwrap_or_else(ims_core::secret::uuid_like);
    req.extensions_mut().insert(RequestId(id.clone()));
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |m| m.as_str())
        .to_owned();
    let method = req.method().as_str().to_owned();
    let path = if route == "unmatched" {
        req.uri().path().chars().take(256).collect()
    } else {
        route.clone()
    };
    let mut resp = next.run(req).await;
    let elapsed = started.elapsed();
    if let Some(metrics) = metrics {
        metrics.observe_request(&route, &method, resp.status().as_u16(), elapsed);
    }
    let (status, micros) = (resp.status().as_u16(), elapsed.as_micros() as u64);
    match instance {
        Some(instance) => tracing::info!(
            target: "ims::access",
            request_id = %id, %instance, %method, %path, status, micros, "request"
        ),
        None => tracing::info!(
            target: "ims::access",
            request_id = %id, %method, %path, status, micros, "request"
        ),
    }
    if let Ok(v) = HeaderValue::from_str(&id) {
        resp.headers_mut().insert("x-request-id", v);
    }
    resp
}

/// The public surface: OAuth/OIDC and the vendor-shaped IMS endpoints.
pub fn public_router(state: AppState) -> Router {
    let mut router = Router::new()
        .route("/.well-known/openid-configuration", get(oauth::discovery))
        .route("/ims/keys", get(oauth::jwks))
        .route("/ims/validate_token/v1", post(oauth::validate_token))
        .route("/ims/introspect/v1", post(oauth::introspect))
        .route("/ims/revoke/v1", post(oauth::revoke))
        .route("/ims/invalidate_token/v2", post(oauth::invalidate_token))
        .route("/ims/organizations/v6", get(oauth::organizations))
        .route("/ims/profile/v1", get(oauth::profile))
        .route("/ims/client/v1", get(oauth::client_registration));
    for v in ["v1", "v2", "v3"] {
        router = router
            .route(&format!("/ims/token/{v}"), post(oauth::token))
            .route(&format!("/ims/token/{v}/"), post(oauth::token));
    }
    let pages = Router::new()
        .route(
            "/ims/authorize/v1",
            get(signin::authorize).post(signin::authorize),
        )
        .route(
            "/ims/authorize/v2",
            get(signin::authorize).post(signin::authorize),
        )
        .route(
            "/ims/signin/{flow}",
            get(signin::signin_page).post(signin::signin_submit),
        )
        .route("/ims/logout/v1", get(signin::logout).post(signin::logout))
        .route("/ims/reset/{token}", get(signin::reset).post(signin::reset))
        .route(
            "/ims/account/password",
            get(signin::change_password).post(signin::change_password),
        )
        .route("/ims/static/ims.css", get(pages::stylesheet))
        .route("/ims/static/copy.js", get(developer_console::copy_script))
        .layer(axum::middleware::map_response(signin::signin_headers));
    router
        .merge(pages)
        .merge(umapi::routes())
        .merge(developer_api::routes())
        .merge(developer_console::routes())
        .merge(admin_console::routes())
        .route("/ims/userinfo/v2", get(signin::userinfo).post(signin::userinfo))
        .route("/ims/userinfo", get(signin::userinfo).post(signin::userinfo))
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&state.metrics),
            observe,
        ))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
        .fallback(not_found)
        .layer(axum::middleware::map_response(strict_transport))
        .with_state(state)
}

/// HSTS on every answer: a browser that reached the server over HTTPS once keeps to HTTPS for a
/// year (browsers ignore the header on plain HTTP, which only loopback serves).
pub async fn strict_transport(mut resp: Response) -> Response {
    resp.headers_mut().insert(
        http::header::STRICT_TRANSPORT_SECURITY,
        HeaderValue::from_static("max-age=31536000"),
    );
    resp
}

/// Operations: liveness, readiness, metrics.
pub fn ops_router(state: AppState) -> Router {
    health_router(state.clone()).merge(
        Router::new()
            .route("/metrics", get(render_metrics))
            .with_state(state),
    )
}

/// Liveness and readiness, which a balancer probes on the public port too.
pub fn health_router(state: AppState) -> Router {
    Router::new()
        .route(
            "/health/live",
            get(|| async { Json(serde_json::json!({"status": "ok"})) }),
        )
        .route("/health/ready", get(ready))
        .with_state(state)
}

async fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        Json(serde_json::json!({"error": "not_found", "error_description": "no such endpoint"})),
    )
        .into_response()
}

async fn ready(State(app): State<AppState>) -> Response {
    match app.ims.pending_migrations().await {
        Ok(pending) if pending.is_empty() => Json(serde_json::json!({"status": "ready"})).into_response(),
        Ok(pending) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({"status": "migrations pending", "pending_migrations": pending})),
        )
            .into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "readiness: store unavailable");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(serde_json::json!({"status": "store unavailable"})),
            )
                .into_response()
        }
    }
}

async fn render_metrics(State(app): State<AppState>) -> Response {
    let mut text = app.metrics.render();
    text.push_str(
        "# HELP ims_key_forced_reloads_total Key table rereads caused by tokens naming an unknown key.\n",
    );
    text.push_str("# TYPE ims_key_forced_reloads_total counter\n");
    text.push_str(&format!(
        "ims_key_forced_reloads_total {}\n",
        app.ims.forced_key_reloads()
    ));
    (
        [(
            http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}
