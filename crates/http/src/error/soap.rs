//! The SOAP convention: a fault envelope with the vendor's code at the start of its string, sent
//! with HTTP 200 so that clients read the code.

use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode};

use ims_campaign::fault::Fault;
use ims_wire::soap;

/// A fault as an HTTP response.
#[derive(Debug)]
pub struct SoapFault(pub Fault);

impl From<ims_core::Error> for SoapFault {
    fn from(e: ims_core::Error) -> Self {
        SoapFault(Fault::from(e))
    }
}

impl IntoResponse for SoapFault {
    fn into_response(self) -> Response {
        log_fault(&self.0);
        xml(soap::fault(self.0.client, &self.0.to_string(), &self.0.message))
    }
}

/// Logs what only the logs may hold of a fault about to be answered: every edge that answers
/// an instance's fault (SOAP, console pages, the migration API) calls this.
pub(crate) fn log_fault(f: &Fault) {
    if let Some(detail) = f.debug() {
        if f.client {
            tracing::debug!(code = %f.code, reason = %detail, "request refused");
        } else {
            tracing::error!(code = %f.code, error = %detail, "instance failure");
        }
    }
}

/// A SOAP body as the response, never cached.
pub(crate) fn xml(body: String) -> Response {
    let mut resp = (StatusCode::OK, body).into_response();
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/xml;charset=utf-8"),
    );
    resp.headers_mut()
        .insert(http::header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}
