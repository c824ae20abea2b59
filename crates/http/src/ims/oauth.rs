//! Handlers of the token family: token, validation, introspection, revocation, organisations,
//! discovery and JWKS.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::Bytes;
use http::header::AUTHORIZATION;
use http::{HeaderMap, HeaderValue, Uri};
use serde_json::{json, Value};

use ims_core::{Error, ErrorKind};
use ims_identity::service::{ClientAuth, TokenRequest};
use ims_wire::{ImsOrganization, OrgRef, TokenResponse};

use crate::error::{no_store, BearerError, OAuthError};
use crate::params;
use crate::{AppState, Body, Meta};

fn actor_of(auth: &ClientAuth) -> String {
    match auth {
        ClientAuth::Basic { client_id, .. }
        | ClientAuth::Post { client_id, .. }
        | ClientAuth::None { client_id } => {
            format!("client:{}", client_id.chars().take(64).collect::<String>())
        }
        ClientAuth::Missing => "anonymous".to_owned(),
    }
}

pub(crate) async fn token(
    State(app): State<AppState>,
    meta: Meta,
    headers: HeaderMap,
    uri: Uri,
    Body(body, _): Body<OAuthError>,
) -> Response {
    let parsed = async {
        let params = params::collect(&headers, uri.query(), body).await?;
        let auth = params::client_auth(&headers, &params)?;
        let text = |name: &str| params.get(name).map(|v| v.map(str::to_owned));
        Ok::<_, Error>(TokenRequest {
            grant_type: text("grant_type")?,
            scope: text("scope")?,
            org_id: text("org_id")?,
            code: text("code")?,
            redirect_uri: text("redirect_uri")?,
            code_verifier: text("code_verifier")?,
            refresh_token: text("refresh_token")?,
            auth,
        })
    }
    .await;
    let result = match parsed {
        Ok(req) => {
            app.ims
                .tokens()
                .token(&req, &meta.context(actor_of(&req.auth)))
                .await
        }
        Err(e) => {
            app.ims
                .tokens()
                .record_token_failure(&meta.context("anonymous"), None, None, &e)
                .await;
            Err(e)
        }
    };
    match result {
        Ok(issued) => {
            app.metrics.token_issued(issued.grant.as_str());
            let people = issued.grant != ims_identity::model::GrantType::ClientCredentials;
            let mut resp = Json(TokenResponse {
                access_token: issued.access_token.expose().to_owned(),
                token_type: "bearer".into(),
                expires_in: issued.expires_in,
                refresh_token: issued.refresh_token.as_ref().map(|t| t.expose().to_owned()),
                id_token: issued.id_token.clone(),
                scope: people.then(|| issued.scope.join(" ")),
            })
            .into_response();
            no_store(&mut resp);
            resp
        }
        Err(e) => {
            app.metrics.token_failed(e.code());
            OAuthError(e).into_response()
        }
    }
}

/// The bearer token and the `x-api-key` header of an API call (the vendor's APIs take both).
pub(crate) fn bearer_and_api_key(parts: &http::request::Parts) -> Result<(String, Option<&str>), Error> {
    let token = bearer_token(&parts.headers, &parts.uri)?;
    let api_key = parts
        .headers
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .map(str::trim);
    Ok((token, api_key))
}

/// The bearer token of a request: `Authorization: Bearer` only (scheme case-insensitive); a token
/// in the query string is refused, since URLs end up in logs and histories.
pub(crate) fn bearer_token(headers: &HeaderMap, uri: &Uri) -> Result<String, Error> {
    if let Some(q) = uri.query() {
        if url::form_urlencoded::parse(q.as_bytes()).any(|(k, _)| k == "access_token") {
            return Err(Error::invalid_request(
                "access tokens are not accepted in the query string",
            ));
        }
    }
    let value = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| Error::invalid_token("missing bearer token"))?;
    let (scheme, token) = value
        .trim()
        .split_once(' ')
        .ok_or_else(|| Error::invalid_token("malformed Authorization header"))?;
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err(Error::invalid_token("expected a Bearer token"));
    }
    Ok(token.trim().to_owned())
}

/// The vendor's `validate_token`: always 200, `valid` says the verdict.
pub(crate) async fn validate_token(
    State(app): State<AppState>,
    meta: Meta,
    headers: HeaderMap,
    uri: Uri,
    Body(body, _): Body<OAuthError>,
) -> Response {
    let verdict = async {
        let params = params::collect(&headers, uri.query(), body)
            .await
            .map_err(OAuthError)?;
        let token = match bearer_token(&headers, &uri) {
            Ok(t) => t,
            Err(e) if e.kind() == ErrorKind::InvalidToken => match params.get("token").map_err(OAuthError)? {
                Some(t) => t.to_owned(),
                None => return Ok(json!({"valid": false, "reason": "no token"})),
            },
            Err(e) => return Err(OAuthError(e)),
        };
        let valid = match app.ims.tokens().validate_access_token(&token, meta.now).await {
            Ok(v) => v,
            // The vendor's endpoint says why a token is not valid (expired, revoked, ...).
            Err(e) if e.kind() == ErrorKind::InvalidToken => {
                return Ok(json!({"valid": false, "reason": e.debug().unwrap_or(e.description())}))
            }
            Err(e) => return Err(OAuthError(e)),
        };
        if let Some(t) = params.get("type").map_err(OAuthError)? {
            if valid.claims.get("type").and_then(Value::as_str) != Some(t) {
                return Ok(json!({"valid": false, "reason": "token type mismatch"}));
            }
        }
        if let Some(c) = params.get("client_id").map_err(OAuthError)? {
            if c != valid.client_id {
                return Ok(json!({"valid": false, "reason": "client_id mismatch"}));
            }
        }
        Ok(json!({"valid": true, "token": Value::Object(valid.claims)}))
    }
    .await;
    match verdict {
        Ok(body) => {
            let mut resp = Json(body).into_response();
            no_store(&mut resp);
            resp
        }
        Err(e) => e.into_response(),
    }
}

pub(crate) async fn introspect(
    State(app): State<AppState>,
    meta: Meta,
    headers: HeaderMap,
    uri: Uri,
    Body(body, _): Body<OAuthError>,
) -> Response {
    let result = async {
        let params = params::collect(&headers, uri.query(), body).await?;
        let auth = params::client_auth(&headers, &params)?;
        let token = params.get("token")?.unwrap_or_default().to_owned();
        app.ims
            .tokens()
            .introspect(&auth, &token, &meta.context(actor_of(&auth)))
            .await
    }
    .await;
    match result {
        Ok(body) => {
            let mut resp = Json(body).into_response();
            no_store(&mut resp);
            resp
        }
        Err(e) => OAuthError(e).into_response(),
    }
}

async fn revoke_common(app: &AppState, meta: &Meta, headers: &HeaderMap, uri: &Uri, body: Bytes) -> Response {
    let result = async {
        let params = params::collect(headers, uri.query(), body).await?;
        let auth = params::client_auth(headers, &params)?;
        let token = params.get("token")?.unwrap_or_default().to_owned();
        app.ims
            .tokens()
            .revoke(&auth, &token, &meta.context(actor_of(&auth)))
            .await
    }
    .await;
    match result {
        Ok(()) => {
            let mut resp = Json(json!({})).into_response();
            no_store(&mut resp);
            resp
        }
        Err(e) => OAuthError(e).into_response(),
    }
}

/// RFC 7009.
pub(crate) async fn revoke(
    State(app): State<AppState>,
    meta: Meta,
    headers: HeaderMap,
    uri: Uri,
    Body(body, _): Body<OAuthError>,
) -> Response {
    revoke_common(&app, &meta, &headers, &uri, body).await
}

/// The vendor's form of revocation (`token_type`, `token`, `cascading`, client credentials).
pub(crate) async fn invalidate_token(
    State(app): State<AppState>,
    meta: Meta,
    headers: HeaderMap,
    uri: Uri,
    Body(body, _): Body<OAuthError>,
) -> Response {
    revoke_common(&app, &meta, &headers, &uri, body).await
}

/// The scope `organizations/v6` needs, as the vendor's IMS asks for it.
const ORGANIZATIONS_SCOPE: &str = "read_organizations";

#[derive(Debug, serde::Deserialize)]
pub(crate) struct ProfileQuery {
    product_context: Option<String>,
}

/// `GET /ims/profile/v1[?product_context=...]`: the token's person and the product profiles
/// it holds (the vendor's `projectedProductContext`).
pub(crate) async fn profile(
    State(app): State<AppState>,
    meta: Meta,
    headers: HeaderMap,
    uri: Uri,
    axum::extract::Query(q): axum::extract::Query<ProfileQuery>,
) -> Response {
    let result = async {
        let token = bearer_token(&headers, &uri)?;
        app.ims
            .directory()
            .product_profile_claims(
                &token,
                q.product_context.as_deref().filter(|c| !c.is_empty()),
                meta.now,
            )
            .await
    }
    .await;
    match result {
        Ok(v) => {
            let mut resp = Json(v).into_response();
            no_store(&mut resp);
            resp
        }
        Err(e) => BearerError(e).into_response(),
    }
}

/// `GET /ims/client/v1[?product_context=...]` with the client's credentials in a Basic header:
/// the client's own registration (and, for our own applications, the product profiles of the
/// context), for instances to check their IMS configuration.
pub(crate) async fn client_registration(
    State(app): State<AppState>,
    meta: Meta,
    headers: HeaderMap,
    axum::extract::Query(q): axum::extract::Query<ProfileQuery>,
) -> Response {
    let result = async {
        // Credentials in the header only: a secret in a query string ends up in logs.
        if !headers.contains_key(AUTHORIZATION) {
            return Err(Error::invalid_client(true));
        }
        let auth = params::client_auth(&headers, &params::Params::default())?;
        let client = app.ims.tokens().authenticate_client(&auth, meta.now).await?;
        app.ims
            .directory()
            .client_registration(&client, q.product_context.as_deref().filter(|c| !c.is_empty()))
            .await
    }
    .await;
    match result {
        Ok(v) => {
            let mut resp = Json(v).into_response();
            no_store(&mut resp);
            resp
        }
        Err(e) => OAuthError(e).into_response(),
    }
}

pub(crate) async fn organizations(
    State(app): State<AppState>,
    meta: Meta,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    let result = async {
        let token = bearer_token(&headers, &uri)?;
        let valid = app.ims.tokens().validate_access_token(&token, meta.now).await?;
        valid.require_scope(ORGANIZATIONS_SCOPE)?;
        let org = app.ims.tokens().organization(&valid.org_id).await?;
        Ok::<_, Error>(vec![ImsOrganization {
            org_name: org.name.clone(),
            org_ref: OrgRef {
                ident: org.ident().to_owned(),
                auth_src: "AdobeOrg".into(),
            },
            org_type: "Enterprise".into(),
            groups: Vec::new(),
        }])
    }
    .await;
    match result {
        Ok(orgs) => {
            let mut resp = Json(orgs).into_response();
            no_store(&mut resp);
            resp
        }
        Err(e) if e.kind() == ErrorKind::InvalidRequest => OAuthError(e).into_response(),
        Err(e) => BearerError(e).into_response(),
    }
}

pub(crate) async fn discovery(State(app): State<AppState>) -> Response {
    let iss = app.ims.settings().issuer.trim_end_matches('/').to_owned();
    let algs: Vec<&str> = ims_core::keys::Algorithm::ALL
        .iter()
        .map(|a| a.as_str())
        .collect();
    let doc = json!({
        "issuer": app.ims.settings().issuer,
        "authorization_endpoint": format!("{iss}/ims/authorize/v2"),
        "token_endpoint": format!("{iss}/ims/token/v3"),
        "userinfo_endpoint": format!("{iss}/ims/userinfo/v2"),
        "end_session_endpoint": format!("{iss}/ims/logout/v1"),
        "jwks_uri": format!("{iss}/ims/keys"),
        "introspection_endpoint": format!("{iss}/ims/introspect/v1"),
        "revocation_endpoint": format!("{iss}/ims/revoke/v1"),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "code_challenge_methods_supported": ["S256"],
        "authorization_response_iss_parameter_supported": true,
        "prompt_values_supported": ["none", "login"],
        "id_token_signing_alg_values_supported": [app.ims.settings().id_token_alg.as_str()],
        "grant_types_supported": ["client_credentials", "authorization_code", "refresh_token"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
        "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "revocation_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "token_endpoint_auth_signing_alg_values_supported": algs,
        "subject_types_supported": ["public"],
        "scopes_supported": ["openid", "email", "profile", "AdobeID", "read_organizations"],
        "claims_supported": ["iss", "sub", "aud", "exp", "iat", "auth_time", "nonce", "amr", "email", "email_verified", "name", "given_name", "family_name"],
    });
    let mut resp = Json(doc).into_response();
    resp.headers_mut().insert(
        http::header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    resp
}

/// Published keys. Cached by clients for at most five minutes: less than the delay between
/// publishing a new key and signing with it, so no verifier meets a kid it has not seen.
pub(crate) async fn jwks(State(app): State<AppState>, meta: Meta) -> Response {
    match app.ims.tokens().jwks(meta.now).await {
        Ok(doc) => {
            let mut resp = Json(doc).into_response();
            resp.headers_mut().insert(
                http::header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=300"),
            );
            resp
        }
        Err(e) => OAuthError(e).into_response(),
    }
}
