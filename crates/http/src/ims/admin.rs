//! The administration API (`/admin/v1`), used by `ims credential --url`: credentials and their
//! secrets. Every handler needs a [`SystemAdmin`], which only administrator authentication
//! produces, and sees only that administrator's organisation. Errors are problem details.

use axum::extract::{FromRequestParts, Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use http::request::Parts;
use http::StatusCode;
use serde::Deserialize;

use ims_core::Error;
use ims_identity::admin::SystemAdmin;
use ims_identity::credentials::{Credentials, NewSecret};
use ims_identity::developer::Service;
use ims_identity::model::{ClientSecretRecord, OAuthClient};
use ims_wire::{CredentialSecret, CredentialSummary, SecretSummary};

use crate::error::Problem;
use crate::{AppState, Body, Meta};

/// Extracts the administrator from HTTP Basic credentials (email and password).
pub struct Admin(pub SystemAdmin);

impl FromRequestParts<AppState> for Admin {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let header = parts
            .headers
            .get(http::header::AUTHORIZATION)
            .ok_or(Error::invalid_client(true))?;
        let (email, password) =
            crate::params::basic_credentials(header.as_bytes())?.ok_or(Error::invalid_client(true))?;
        let meta = match Meta::from_request_parts(parts, state).await {
            Ok(meta) => meta,
            Err(never) => match never {},
        };
        let ctx = meta.context(format!("admin:{email}"));
        let admin = state
            .ims
            .sign_in()
            .authenticate_admin(&email, &password, &ctx)
            .await?;
        Ok(Admin(admin))
    }
}

fn credentials(app: &AppState, admin: &SystemAdmin) -> Credentials {
    app.ims.credentials(admin)
}

pub fn secret_body(n: &NewSecret) -> CredentialSecret {
    CredentialSecret {
        client_id: n.client.client_id.clone(),
        client_secret: n.secret.expose().to_owned(),
        secret_id: n.record.secret_id.clone(),
        technical_account_id: n.client.technical_account_id.clone(),
        technical_account_email: n.client.technical_account_email.clone(),
        org_id: n.client.org_id.clone(),
        scopes: n.client.scopes.clone(),
        expires_at: n.record.expires_at.map(|e| e.millis()),
    }
}

fn created(n: &NewSecret) -> Response {
    let mut resp = (StatusCode::CREATED, Json(secret_body(n))).into_response();
    crate::error::no_store(&mut resp);
    resp
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateCredential {
    name: String,
    #[serde(default)]
    scopes: Option<Vec<String>>,
    /// Services (sdk codes) to subscribe the credential to.
    #[serde(default)]
    services: Vec<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct AddSecret {
    #[serde(default)]
    expires_in_days: Option<u32>,
}

/// Parses a JSON body into `T`, answering a problem (not axum's plain text) when it does not fit.
fn json_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, Problem> {
    serde_json::from_slice(body).map_err(|e| Problem(Error::invalid_request(format!("request body: {e}"))))
}

async fn list(
    State(app): State<AppState>,
    Admin(admin): Admin,
) -> Result<Json<Vec<CredentialSummary>>, Problem> {
    let list = credentials(&app, &admin).credentials(admin.org_id()).await?;
    Ok(Json(
        list.into_iter().map(|(c, secrets)| summary(c, secrets)).collect(),
    ))
}

/// A credential as listed: secrets by hint only.
pub fn summary(c: OAuthClient, secrets: Vec<ClientSecretRecord>) -> CredentialSummary {
    CredentialSummary {
        client_id: c.client_id,
        name: c.name,
        technical_account_id: c.technical_account_id,
        technical_account_email: c.technical_account_email,
        org_id: c.org_id,
        scopes: c.scopes,
        disabled: c.disabled,
        created_at: c.created_at.millis(),
        secrets: secrets
            .into_iter()
            .map(|s| SecretSummary {
                secret_id: s.secret_id,
                hint: s.hint,
                created_at: s.created_at.millis(),
                expires_at: s.expires_at.map(|e| e.millis()),
            })
            .collect(),
    }
}

async fn create(
    State(app): State<AppState>,
    meta: Meta,
    Admin(admin): Admin,
    Body(body, _): Body<Problem>,
) -> Result<Response, Problem> {
    let req: CreateCredential = json_body(&body)?;
    let scopes = req
        .scopes
        .unwrap_or_else(|| DEFAULT_SCOPES.iter().map(|s| s.to_string()).collect());
    let services = req
        .services
        .iter()
        .map(|code| {
            Service::by_code(code).ok_or_else(|| Error::invalid_request(format!("unknown service {code:?}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let ctx = meta.context(admin.actor());
    let n = credentials(&app, &admin)
        .create_credential(admin.org_id(), &req.name, scopes, &services, &ctx)
        .await?;
    Ok(created(&n))
}

async fn set_disabled(
    app: &AppState,
    meta: &Meta,
    admin: &SystemAdmin,
    client_id: &str,
    disabled: bool,
) -> Result<StatusCode, Problem> {
    let ctx = meta.context(admin.actor());
    credentials(app, admin)
        .set_credential_disabled(client_id, disabled, &ctx)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn disable(
    State(app): State<AppState>,
    meta: Meta,
    Admin(admin): Admin,
    Path(id): Path<String>,
) -> Result<StatusCode, Problem> {
    set_disabled(&app, &meta, &admin, &id, true).await
}

async fn enable(
    State(app): State<AppState>,
    meta: Meta,
    Admin(admin): Admin,
    Path(id): Path<String>,
) -> Result<StatusCode, Problem> {
    set_disabled(&app, &meta, &admin, &id, false).await
}

async fn add_secret(
    State(app): State<AppState>,
    meta: Meta,
    Admin(admin): Admin,
    Path(id): Path<String>,
    Body(body, _): Body<Problem>,
) -> Result<Response, Problem> {
    let req: AddSecret = if body.is_empty() {
        AddSecret::default()
    } else {
        json_body(&body)?
    };
    let ctx = meta.context(admin.actor());
    let expires = req
        .expires_in_days
        .map(|d| ctx.now.plus_secs(i64::from(d) * 86_400));
    let n = credentials(&app, &admin).add_secret(&id, expires, &ctx).await?;
    Ok(created(&n))
}

async fn remove_secret(
    State(app): State<AppState>,
    meta: Meta,
    Admin(admin): Admin,
    Path((id, secret_id)): Path<(String, String)>,
) -> Result<StatusCode, Problem> {
    let ctx = meta.context(admin.actor());
    credentials(&app, &admin)
        .remove_secret(&id, &secret_id, &ctx)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Scopes a new credential may request unless others are given: what the vendor grants an OAuth
/// server-to-server credential by default.
pub const DEFAULT_SCOPES: &[&str] = &["openid", "AdobeID", "read_organizations"];

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/admin/v1/credentials", get(list).post(create))
        .route("/admin/v1/credentials/{client_id}/disable", post(disable))
        .route("/admin/v1/credentials/{client_id}/enable", post(enable))
        .route("/admin/v1/credentials/{client_id}/secrets", post(add_secret))
        .route(
            "/admin/v1/credentials/{client_id}/secrets/{secret_id}",
            delete(remove_secret),
        )
        .layer(axum::middleware::from_fn_with_state(
            std::sync::Arc::clone(&state.metrics),
            crate::observe,
        ))
        .layer(axum::extract::DefaultBodyLimit::max(crate::MAX_BODY))
        .with_state(state)
}
