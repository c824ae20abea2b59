//! The IMS's HTTP surface: OAuth/OIDC and the vendor-shaped IMS endpoints, the Admin and
//! Developer Consoles and their APIs, on the public router; health and metrics on the operations
//! router, so a deployment can put it on a private listener.

pub mod admin;
pub mod admin_console;
pub mod developer_api;
pub mod developer_console;
mod links;
mod oauth;
mod signin;
pub mod umapi;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use http::{HeaderValue, StatusCode};
use std::sync::Arc;

use ims_identity::service::Ims;

use crate::metrics::Metrics;
use crate::pages;
use crate::request::{observe, MAX_BODY};

/// What the IMS's handlers share: the token service and the metrics.
#[derive(Clone, Debug)]
pub struct AppState {
    pub ims: Arc<Ims>,
    pub metrics: Arc<Metrics>,
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
        .route(
            "/ims/signin/{flow}/forgot",
            get(links::forgot).post(links::forgot),
        )
        .route("/ims/reset/{token}", get(links::reset).post(links::reset))
        .route(
            "/ims/invitation/{token}",
            get(links::invitation).post(links::invitation),
        )
        .route("/ims/account/totp", get(signin::enrol).post(signin::enrol))
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
    let unavailable = |status: &str| {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({ "status": status })),
        )
            .into_response()
    };
    match app.ims.pending_migrations().await {
        // The database answers and is current: ready when a token can be signed too.
        Ok(pending) if pending.is_empty() => match app.ims.tokens().can_sign(ims_core::Now::system()).await {
            Ok(true) => Json(serde_json::json!({"status": "ready"})).into_response(),
            Ok(false) => unavailable("no signing key"),
            Err(e) => {
                tracing::warn!(error = %e, "readiness: the key ring cannot be read");
                unavailable("key ring unavailable")
            }
        },
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
    text.push_str(&crate::metrics::process_text());
    text.push_str(
        "# HELP ims_key_forced_reloads_total Key table rereads caused by tokens naming an unknown key.\n",
    );
    text.push_str("# TYPE ims_key_forced_reloads_total counter\n");
    text.push_str(&format!(
        "ims_key_forced_reloads_total {}\n",
        app.ims.tokens().forced_key_reloads()
    ));
    let (hits, misses) = app.ims.tokens().client_lookups();
    let c = app.ims.connections();
    text.push_str(&format!(
        "# HELP ims_client_cache_lookups_total Client look-ups, answered from memory (hit) or the database (miss).\n\
         # TYPE ims_client_cache_lookups_total counter\n\
         ims_client_cache_lookups_total{{result=\"hit\"}} {hits}\n\
         ims_client_cache_lookups_total{{result=\"miss\"}} {misses}\n"
    ));
    text.push_str(&crate::metrics::pool_text("IMS", &c));
    crate::metrics::exposition(text)
}
