//! The User Management API's error convention: `{"result": code, "message"}` for requests and
//! queries, `{"error_code", "message"}` for authentication and throttling, as its clients read
//! them.

use axum::response::{IntoResponse, Response};
use axum::Json;
use http::{HeaderValue, StatusCode};
use serde_json::json;

use ims_core::Error;

use super::{bearer_challenge, no_store};

/// An error in the API's convention.
#[derive(Debug)]
pub enum UmapiError {
    /// From authentication and the domain.
    Domain(Error),
    /// The organisation in the path is not the caller's, or does not exist.
    BadOrg,
    /// A query found nothing.
    NotFound(&'static str, String),
    /// The request was refused whole (`result` carries the code).
    Request(&'static str, String),
    /// Over budget: wait this many seconds.
    Throttled(u64),
}

impl From<Error> for UmapiError {
    fn from(e: Error) -> Self {
        UmapiError::Domain(e)
    }
}

impl From<ims_identity::umapi::RequestError> for UmapiError {
    fn from(e: ims_identity::umapi::RequestError) -> Self {
        UmapiError::Request(e.code, e.message)
    }
}

impl IntoResponse for UmapiError {
    fn into_response(self) -> Response {
        let (status, body) = match self {
            UmapiError::Domain(Error::InvalidToken(reason)) => {
                tracing::debug!(%reason, "user management call refused");
                let mut resp = (
                    StatusCode::UNAUTHORIZED,
                    Json(json!({"error_code": "401013", "message": "Oauth token is not valid"})),
                )
                    .into_response();
                resp.headers_mut()
                    .insert(http::header::WWW_AUTHENTICATE, bearer_challenge("invalid_token"));
                no_store(&mut resp);
                return resp;
            }
            UmapiError::Domain(e @ (Error::Forbidden(_) | Error::InsufficientScope(_))) => (
                StatusCode::FORBIDDEN,
                json!({"error_code": "403003", "message": e.to_string()}),
            ),
            UmapiError::Domain(Error::TooLarge(m)) => (
                StatusCode::PAYLOAD_TOO_LARGE,
                json!({"result": "error.request.too_large", "message": m}),
            ),
            UmapiError::Domain(Error::NotFound(m)) => (
                StatusCode::NOT_FOUND,
                json!({"result": "error.product.not_found", "message": m}),
            ),
            UmapiError::Domain(Error::Conflict(m)) => (
                StatusCode::CONFLICT,
                json!({"result": "error.group.exists", "message": m}),
            ),
            UmapiError::Domain(Error::InvalidRequest(m)) => (
                StatusCode::BAD_REQUEST,
                json!({"result": "error.request.malformed", "message": m}),
            ),
            UmapiError::Domain(e) => {
                tracing::error!(error = %e, "user management call failed");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    json!({"result": "error.internal", "message": "the server could not complete the request"}),
                )
            }
            UmapiError::BadOrg => (
                StatusCode::BAD_REQUEST,
                json!({"result": "error.organization.invalid_id", "message": "Bad organization Id"}),
            ),
            UmapiError::NotFound(code, message) => {
                (StatusCode::NOT_FOUND, json!({"result": code, "message": message}))
            }
            UmapiError::Request(code, message) => (
                StatusCode::BAD_REQUEST,
                json!({"result": code, "message": message}),
            ),
            UmapiError::Throttled(secs) => {
                let mut resp = (
                    StatusCode::TOO_MANY_REQUESTS,
                    Json(json!({"error_code": "429050", "message": "Too many requests"})),
                )
                    .into_response();
                resp.headers_mut()
                    .insert(http::header::RETRY_AFTER, HeaderValue::from(secs));
                return resp;
            }
        };
        let mut resp = (status, Json(body)).into_response();
        no_store(&mut resp);
        resp
    }
}
