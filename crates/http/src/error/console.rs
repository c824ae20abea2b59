//! The Developer Console API's error convention: the status and `{"error_code", "message"}`, as
//! its client library reads them.

use axum::response::{IntoResponse, Response};
use axum::Json;
use http::StatusCode;
use serde_json::json;

use ims_core::{Error, ErrorKind};

use super::{no_store, public_description, vendor_token_refused};

/// An error in the console API's convention: the status and a JSON body naming it.
#[derive(Debug)]
pub enum ConsoleError {
    Domain(Error),
    /// Over the client's budget: wait this many seconds.
    Throttled(u64),
}

impl From<Error> for ConsoleError {
    fn from(e: Error) -> Self {
        ConsoleError::Domain(e)
    }
}

impl IntoResponse for ConsoleError {
    fn into_response(self) -> Response {
        let e = match self {
            ConsoleError::Domain(e) => e,
            ConsoleError::Throttled(secs) => {
                let mut resp = (
                    StatusCode::TOO_MANY_REQUESTS,
                    Json(json!({"error_code": "429050", "message": "Too many requests"})),
                )
                    .into_response();
                resp.headers_mut()
                    .insert(http::header::RETRY_AFTER, http::HeaderValue::from(secs));
                return resp;
            }
        };
        let (status, code) = match e.kind() {
            ErrorKind::InvalidToken => return vendor_token_refused(&e),
            ErrorKind::InsufficientScope { scope } => {
                let mut resp = (
                    StatusCode::FORBIDDEN,
                    Json(json!({"error_code": "403003", "message": e.to_string()})),
                )
                    .into_response();
                let challenge = format!("Bearer error=\"insufficient_scope\", scope=\"{scope}\"");
                if let Ok(v) = http::HeaderValue::from_str(&challenge) {
                    resp.headers_mut().insert(http::header::WWW_AUTHENTICATE, v);
                }
                no_store(&mut resp);
                return resp;
            }
            ErrorKind::Forbidden => (StatusCode::FORBIDDEN, "403003"),
            ErrorKind::NotFound => (StatusCode::NOT_FOUND, "404001"),
            ErrorKind::Conflict => (StatusCode::CONFLICT, "409001"),
            ErrorKind::InvalidRequest => (StatusCode::BAD_REQUEST, "400001"),
            ErrorKind::TooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "413001"),
            ErrorKind::Unavailable => (StatusCode::SERVICE_UNAVAILABLE, "503001"),
            _ => {
                tracing::error!(error = ?e, "console call failed");
                let mut resp = (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    Json(json!({"error_code": "500001", "message": "the server could not complete the request"})),
                )
                    .into_response();
                no_store(&mut resp);
                return resp;
            }
        };
        let mut resp = (
            status,
            Json(json!({"error_code": code, "message": public_description(&e)})),
        )
            .into_response();
        no_store(&mut resp);
        resp
    }
}
