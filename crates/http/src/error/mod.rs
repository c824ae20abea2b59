//! The one mapping from domain errors to each HTTP protocol's error shape: OAuth JSON for the token
//! family, Bearer challenges for resource endpoints and problem details for the administration
//! API here; the vendor APIs' conventions in their own modules (User Management API, Developer
//! Console API, SOAP faults, the migration API's problem details). Internal details are logged,
//! never sent.

pub mod console;
pub(crate) mod problem_fault;
pub mod soap;
pub mod umapi;

use axum::response::{IntoResponse, Response};
use axum::Json;
use http::header::{CACHE_CONTROL, PRAGMA, WWW_AUTHENTICATE};
use http::{HeaderValue, StatusCode};
use serde_json::json;

use ims_core::{Error, ErrorKind};

/// Realm in our `WWW-Authenticate` challenges.
pub const REALM: &str = "ims";

fn status_of(kind: ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::InvalidRequest
        | ErrorKind::UnauthorizedClient
        | ErrorKind::UnsupportedGrantType
        | ErrorKind::InvalidScope
        | ErrorKind::InvalidGrant => StatusCode::BAD_REQUEST,
        ErrorKind::InvalidClient { .. } | ErrorKind::InvalidToken | ErrorKind::InvalidCredentials => {
            StatusCode::UNAUTHORIZED
        }
        ErrorKind::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorKind::InsufficientScope { .. } | ErrorKind::Forbidden => StatusCode::FORBIDDEN,
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::Conflict => StatusCode::CONFLICT,
        ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// Logs what only the logs may hold, at the level the kind deserves, and returns the
/// description a caller may read. Every protocol's mapping answers through this.
pub(crate) fn public_description(e: &Error) -> &str {
    if let Some(detail) = e.debug() {
        match e.kind() {
            ErrorKind::Internal => tracing::error!(error = %detail, "internal error"),
            ErrorKind::Unavailable => tracing::warn!(error = %detail, "service unavailable"),
            _ => tracing::debug!(code = e.code(), reason = %detail, "request refused"),
        }
    }
    e.description()
}

/// OAuth 2.0 error response (RFC 6749 section 5.2), with `no-store` caching.
#[derive(Debug)]
pub struct OAuthError(pub Error);

impl From<Error> for OAuthError {
    fn from(e: Error) -> Self {
        OAuthError(e)
    }
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let e = self.0;
        let kind = e.kind();
        let mut body = json!({ "error": e.code(), "error_description": public_description(&e) });
        if let (Some(hint), Some(obj)) = (e.hint(), body.as_object_mut()) {
            obj.insert("error_hint".into(), json!(hint));
        }
        let mut resp = (status_of(kind), Json(body)).into_response();
        no_store(&mut resp);
        match kind {
            ErrorKind::InvalidClient { basic: true } => {
                resp.headers_mut()
                    .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"ims\""));
            }
            ErrorKind::InvalidToken => {
                resp.headers_mut()
                    .insert(WWW_AUTHENTICATE, bearer_challenge("invalid_token"));
            }
            ErrorKind::Unavailable => {
                resp.headers_mut()
                    .insert(http::header::RETRY_AFTER, HeaderValue::from_static("5"));
            }
            _ => {}
        }
        resp
    }
}

/// Error of a Bearer-protected resource (RFC 6750 section 3).
#[derive(Debug)]
pub struct BearerError(pub Error);

impl From<Error> for BearerError {
    fn from(e: Error) -> Self {
        BearerError(e)
    }
}

impl IntoResponse for BearerError {
    fn into_response(self) -> Response {
        match self.0.kind() {
            ErrorKind::InvalidToken | ErrorKind::InvalidClient { .. } => {
                let e = Error::invalid_token(format!("{:?}", self.0));
                let body = json!({ "error": "invalid_token", "error_description": public_description(&e) });
                let mut resp = (StatusCode::UNAUTHORIZED, Json(body)).into_response();
                resp.headers_mut()
                    .insert(WWW_AUTHENTICATE, bearer_challenge("invalid_token"));
                no_store(&mut resp);
                resp
            }
            ErrorKind::InsufficientScope { scope } => {
                let body = json!({
                    "error": "insufficient_scope",
                    "error_description": self.0.description(),
                    "error_hint": self.0.hint(),
                });
                let mut resp = (StatusCode::FORBIDDEN, Json(body)).into_response();
                let challenge =
                    format!("Bearer realm=\"{REALM}\", error=\"insufficient_scope\", scope=\"{scope}\"");
                if let Ok(v) = HeaderValue::from_str(&challenge) {
                    resp.headers_mut().insert(WWW_AUTHENTICATE, v);
                }
                no_store(&mut resp);
                resp
            }
            _ => OAuthError(self.0).into_response(),
        }
    }
}

/// A refused token as the vendor's APIs (User Management, Developer Console) answer it: their
/// clients read `error_code` 401013; why it was refused is only logged.
pub(crate) fn vendor_token_refused(e: &Error) -> Response {
    public_description(e);
    let mut resp = (
        StatusCode::UNAUTHORIZED,
        Json(json!({"error_code": "401013", "message": "Oauth token is not valid"})),
    )
        .into_response();
    resp.headers_mut()
        .insert(WWW_AUTHENTICATE, bearer_challenge("invalid_token"));
    no_store(&mut resp);
    resp
}

pub fn bearer_challenge(error: &str) -> HeaderValue {
    HeaderValue::from_str(&format!("Bearer realm=\"{REALM}\", error=\"{error}\""))
        .unwrap_or(HeaderValue::from_static("Bearer realm=\"ims\""))
}

pub fn no_store(resp: &mut Response) {
    resp.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp.headers_mut()
        .insert(PRAGMA, HeaderValue::from_static("no-cache"));
}

/// Error of the administration API: problem details (RFC 9457) with our stable code.
#[derive(Debug)]
pub struct Problem(pub Error);

impl From<Error> for Problem {
    fn from(e: Error) -> Self {
        Problem(e)
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let e = self.0;
        let status = status_of(e.kind());
        let mut body = json!({
            "type": "about:blank",
            "title": status.canonical_reason().unwrap_or("error"),
            "status": status.as_u16(),
            "detail": match e.kind() {
                ErrorKind::InvalidClient { .. } => "administrator authentication failed",
                _ => public_description(&e),
            },
            "code": e.code(),
        });
        if let (Some(hint), Some(obj)) = (e.hint(), body.as_object_mut()) {
            obj.insert("hint".into(), json!(hint));
        }
        let mut resp = problem_response(status, body);
        resp.headers_mut()
            .insert(PRAGMA, HeaderValue::from_static("no-cache"));
        if matches!(e.kind(), ErrorKind::InvalidClient { .. }) {
            resp.headers_mut().insert(
                WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"ims-admin\""),
            );
        }
        resp
    }
}

/// Problem details with `status`, never cached.
pub(crate) fn problem_response(status: StatusCode, body: serde_json::Value) -> Response {
    let mut resp = (status, Json(body)).into_response();
    let headers = resp.headers_mut();
    headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}
