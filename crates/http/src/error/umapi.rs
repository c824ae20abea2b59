//! The User Management API's error convention: `{"result": code, "message"}` for requests and
//! queries, `{"error_code", "message"}` for authentication and throttling, as its clients read
//! them.

use axum::response::{IntoResponse, Response};
use axum::Json;
use http::{HeaderValue, StatusCode};
use serde_json::json;

use ims_core::{Error, ErrorKind};
use ims_identity::umapi::ResultCode;

use super::{no_store, public_description, vendor_token_refused};

/// An error in the API's convention.
#[derive(Debug)]
pub enum UmapiError {
    /// From authentication and the domain.
    Domain(Error),
    /// The organisation in the path is not the caller's, or does not exist.
    BadOrg,
    /// A query found nothing.
    NotFound(ResultCode, String),
    /// The request was refused whole (`result` carries the code).
    Request(ResultCode, String),
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
            UmapiError::Domain(e) => {
                let (status, result) = match e.kind() {
                    ErrorKind::InvalidToken => return vendor_token_refused(&e),
                    ErrorKind::Forbidden | ErrorKind::InsufficientScope { .. } => {
                        let body = json!({"error_code": "403003", "message": public_description(&e)});
                        let mut resp = (StatusCode::FORBIDDEN, Json(body)).into_response();
                        no_store(&mut resp);
                        return resp;
                    }
                    ErrorKind::TooLarge => (StatusCode::PAYLOAD_TOO_LARGE, ResultCode::RequestTooLarge),
                    ErrorKind::NotFound => (StatusCode::NOT_FOUND, ResultCode::ProductNotFound),
                    ErrorKind::Conflict => (StatusCode::CONFLICT, ResultCode::GroupExists),
                    ErrorKind::InvalidRequest => (StatusCode::BAD_REQUEST, ResultCode::RequestMalformed),
                    _ => {
                        tracing::error!(error = ?e, "user management call failed");
                        (StatusCode::INTERNAL_SERVER_ERROR, ResultCode::Internal)
                    }
                };
                let message = match result {
                    ResultCode::Internal => "the server could not complete the request",
                    _ => public_description(&e),
                };
                (status, json!({"result": result.as_str(), "message": message}))
            }
            UmapiError::BadOrg => (
                StatusCode::BAD_REQUEST,
                json!({"result": ResultCode::InvalidOrganization.as_str(), "message": "Bad organization Id"}),
            ),
            UmapiError::NotFound(code, message) => (
                StatusCode::NOT_FOUND,
                json!({"result": code.as_str(), "message": message}),
            ),
            UmapiError::Request(code, message) => (
                StatusCode::BAD_REQUEST,
                json!({"result": code.as_str(), "message": message}),
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
