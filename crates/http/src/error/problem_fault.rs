//! An instance's faults as problem details (RFC 9457), for the migration API: the status says
//! what kind of refusal it is, `code` carries the fault code.

use axum::response::{IntoResponse, Response};
use http::StatusCode;
use serde_json::json;

use ims_campaign::fault::{Fault, FaultCode};

use super::problem_response;

/// A fault as problem details.
pub(crate) struct ApiFault(pub(crate) Fault);

impl IntoResponse for ApiFault {
    fn into_response(self) -> Response {
        let f = self.0;
        super::soap::log_fault(&f);
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
