//! The one mapping from domain errors to each HTTP protocol's error shape: OAuth JSON for the token
//! family, Bearer challenges for resource endpoints. Internal details are logged, never sent.

use axum::response::{IntoResponse, Response};
use axum::Json;
use http::header::{CACHE_CONTROL, PRAGMA, WWW_AUTHENTICATE};
use http::{HeaderValue, StatusCode};
use serde_json::json;

use ims_identity::Error;

/// Realm in our `WWW-Authenticate` challenges.
pub const REALM: &str = "ims";

fn status_of(e: &Error) -> StatusCode {
    match e {
        Error::InvalidRequest(_)
        | Error::UnauthorizedClient(_)
        | Error::UnsupportedGrantType(_)
        | Error::InvalidScope(_) => StatusCode::BAD_REQUEST,
        Error::InvalidClient { .. } | Error::InvalidToken(_) => StatusCode::UNAUTHORIZED,
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
