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

use ims_core::Error;

/// Realm in our `WWW-Authenticate` challenges.
pub const REALM: &str = "ims";

fn status_of(e: &Error) -> StatusCode {
    match e {
        Error::InvalidRequest(_)
        | Error::UnauthorizedClient(_)
        | Error::UnsupportedGrantType(_)
        | Error::InvalidScope(_)
        | Error::InvalidGrant(_) => StatusCode::BAD_REQUEST,
        Error::InvalidClient { .. } | Error::InvalidToken(_) | Error::InvalidCredentials => {
            StatusCode::UNAUTHORIZED
        }
        Error::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
        Error::InsufficientScope(_) | Error::Forbidden(_) => StatusCode::FORBIDDEN,
        Error::NotFound(_) => StatusCode::NOT_FOUND,
        Error::Conflict(_) => StatusCode::CONFLICT,
        Error::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        Error::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// The description a caller may see.
fn public_description(e: &Error) -> String {
    match e {
        Error::Internal(detail) => {
            tracing::error!(error = %detail, "internal error");
            "the server could not complete the request".to_owned()
        }
        Error::Unavailable(detail) => {
            tracing::warn!(error = %detail, "service unavailable");
            "the service is not ready; retry later".to_owned()
        }
        Error::InvalidToken(detail) => {
            tracing::debug!(reason = %detail, "token refused");
            "the access token is invalid, expired or revoked".to_owned()
        }
        other => other.to_string(),
    }
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
        let status = status_of(&e);
        let body = json!({ "error": e.code(), "error_description": public_description(&e) });
        let mut resp = (status, Json(body)).into_response();
        no_store(&mut resp);
        match &e {
            Error::InvalidClient { basic: true } => {
                resp.headers_mut()
                    .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"ims\""));
            }
            Error::InvalidToken(_) => {
                resp.headers_mut()
                    .insert(WWW_AUTHENTICATE, bearer_challenge("invalid_token"));
            }
            Error::Unavailable(_) => {
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
        match self.0 {
            Error::InvalidToken(_) | Error::InvalidClient { .. } => {
                let e = Error::InvalidToken(self.0.to_string());
                let body = json!({ "error": "invalid_token", "error_description": public_description(&e) });
                let mut resp = (StatusCode::UNAUTHORIZED, Json(body)).into_response();
                resp.headers_mut()
                    .insert(WWW_AUTHENTICATE, bearer_challenge("invalid_token"));
                no_store(&mut resp);
                resp
            }
            Error::InsufficientScope(scope) => {
                let body = json!({ "error": "insufficient_scope", "error_description": format!("this resource needs the {scope} scope") });
                let mut resp = (StatusCode::FORBIDDEN, Json(body)).into_response();
                let challenge =
                    format!("Bearer realm=\"{REALM}\", error=\"insufficient_scope\", scope=\"{scope}\"");
                if let Ok(v) = HeaderValue::from_str(&challenge) {
                    resp.headers_mut().insert(WWW_AUTHENTICATE, v);
                }
                no_store(&mut resp);
                resp
            }
            other => OAuthError(other).into_response(),
        }
    }
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
        let status = match &e {
            Error::InvalidClient { .. } => StatusCode::UNAUTHORIZED,
            // Within the admin API a malformed scope is a bad request like any other field.
            other => status_of(other),
        };
        let body = json!({
            "type": "about:blank",
            "title": status.canonical_reason().unwrap_or("error"),
            "status": status.as_u16(),
            "detail": match &e {
                Error::InvalidClient { .. } => "administrator authentication failed".to_owned(),
                other => public_description(other),
            },
            "code": e.code(),
        });
        let mut resp = problem_response(status, body);
        resp.headers_mut()
            .insert(PRAGMA, HeaderValue::from_static("no-cache"));
        if matches!(e, Error::InvalidClient { .. }) {
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
