//! An instance's faults as problem details (RFC 9457), for the migration API: the status says
//! what kind of refusal it is, `code` carries the fault code.

use axum::response::{IntoResponse, Response};
use axum::Json;
use http::{HeaderValue, StatusCode};
use serde_json::json;

use ims_campaign::fault::{Fault, FaultCode};

/// A fault as problem details.
pub(crate) struct ApiFault(pub(crate) Fault);

impl IntoResponse for ApiFault {
    fn into_response(self) -> Response {
        let f = self.0;
        let status = match f.code {
            FaultCode::SessionExpired | FaultCode::InvalidLogin => StatusCode::UNAUTHORIZED,
            FaultCode::Forbidden | FaultCode::Restricted => StatusCode::FORBIDDEN,
            FaultCode::NotFound => StatusCode::NOT_FOUND,
            FaultCode::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            _ if f.client => StatusCode::BAD_REQUEST,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let body = json!({
            "type": "about:blank",
            "title": status.canonical_reason().unwrap_or("error"),
            "status": status.as_u16(),
            "detail": f.message,
            "code": f.code.as_str(),
        });
        problem_response(status, body)
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
    headers.insert(http::header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}
