//! The operations listener of an instance served on its own (`ims instance serve`): liveness,
//! readiness, metrics; and, on loopback only, `POST /admin/v1/reload`, which reads the
//! configuration files again as `SIGHUP` does, for an operator holding ADMINISTRATION
//! (session token or bearer token, as on the migration API). A node behind a balancer is
//! reloaded through its own operations listener, never through the balancer.

use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use http::{HeaderMap, StatusCode};
use serde_json::json;

use ims_campaign::service::Instance;
use ims_identity::store::Connections;

use crate::error::problem_fault::ApiFault;
use crate::metrics::Metrics;
use crate::Meta;

/// What the process hosting the instance knows and the instance does not: its database and its
/// configuration files.
#[async_trait::async_trait]
pub trait InstanceHost: Send + Sync {
    /// Schema steps this build knows that the instance's database has not applied; an error
    /// when the database does not answer.
    async fn pending_migrations(&self) -> Result<Vec<String>, String>;
    /// The instance's database connections.
    fn connections(&self) -> Connections;
    /// Reads the configuration files again and applies them.
    async fn reload(&self) -> Result<(), String>;
}

#[derive(Clone)]
pub struct OpsState {
    pub instance: Arc<Instance>,
    pub host: Arc<dyn InstanceHost>,
    pub metrics: Arc<Metrics>,
}

/// Health, metrics and, when `admin` (the listener is on loopback), the reload call.
pub fn router(state: OpsState, admin: bool) -> Router {
    let mut r = Router::new().route("/metrics", get(metrics));
    if admin {
        r = r.route("/admin/v1/reload", post(reload));
    }
    health_router(state.clone()).merge(r.with_state(state))
}

/// Liveness and readiness, which a balancer probes on the public port too.
pub fn health_router(state: OpsState) -> Router {
    Router::new()
        .route("/health/live", get(|| async { Json(json!({"status": "ok"})) }))
        .route("/health/ready", get(ready))
        .with_state(state)
}

async fn ready(State(st): State<OpsState>) -> Response {
    match st.host.pending_migrations().await {
        Ok(pending) if pending.is_empty() => Json(json!({"status": "ready"})).into_response(),
        Ok(pending) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "migrations pending", "pending_migrations": pending})),
        )
            .into_response(),
        Err(e) => {
            tracing::warn!(instance = %st.instance.info().name, error = %e, "readiness: store unavailable");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({"status": "store unavailable"})),
            )
                .into_response()
        }
    }
}

async fn metrics(State(st): State<OpsState>) -> Response {
    let mut text = st.metrics.render();
    text.push_str(&crate::metrics::process_text());
    text.push_str(&crate::metrics::pool_text("instance", &st.host.connections()));
    crate::metrics::exposition(text)
}

async fn reload(State(st): State<OpsState>, meta: Meta, headers: HeaderMap) -> Response {
    let op = match crate::instance::migration_api::caller(&st.instance, &meta, &headers, "admin#Reload").await
    {
        Ok((op, _)) => op,
        Err(f) => return ApiFault(f).into_response(),
    };
    match st.host.reload().await {
        Ok(()) => {
            tracing::info!(instance = %st.instance.info().name, operator = %op.login, "configuration reloaded on request");
            Json(json!({"status": "reloaded"})).into_response()
        }
        Err(e) => {
            tracing::error!(instance = %st.instance.info().name, operator = %op.login, error = %e, "reload failed");
            let status = StatusCode::INTERNAL_SERVER_ERROR;
            crate::error::problem_response(
                status,
                json!({
                    "type": "about:blank",
                    "title": status.canonical_reason().unwrap_or("error"),
                    "status": status.as_u16(),
                    "detail": format!("the configuration files were not applied (the configuration in use stays): {e}"),
                }),
            )
        }
    }
}
