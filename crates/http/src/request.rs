//! What every request carries, whichever product serves it: one clock reading, the peer, the
//! request id, the body limit in effect, and the access log line.

use axum::extract::{ConnectInfo, FromRequestParts, MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::request::Parts;
use http::{HeaderValue, StatusCode};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use ims_core::audit::Context;
use ims_core::Now;

use crate::metrics::Metrics;

/// Largest request body the IMS reads (token requests are a few hundred bytes).
pub const MAX_BODY: usize = 64 * 1024;

/// The body limit a router sets when it is not [`MAX_BODY`] (an extension beside its
/// `DefaultBodyLimit`), so that the refusal names the limit in effect.
#[derive(Clone, Copy, Debug)]
pub struct BodyLimit(pub usize);

/// A request id, from `X-Request-Id` when the caller sent a sane one, generated otherwise.
#[derive(Clone, Debug)]
pub struct RequestId(pub String);

/// What every handler needs about its request: one clock reading, the peer, the request id.
#[derive(Clone, Debug)]
pub struct Meta {
    pub now: Now,
    pub source: Option<String>,
    pub request_id: String,
}

impl Meta {
    pub fn context(&self, actor: impl Into<String>) -> Context {
        let mut ctx = Context::new(self.now, actor);
        ctx.source = self.source.clone();
        ctx.request_id = Some(self.request_id.clone());
        ctx
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Meta {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let source = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(a)| a.ip().to_string());
        let request_id = parts
            .extensions
            .get::<RequestId>()
            .map(|r| r.0.clone())
            .unwrap_or_else(ims_core::secret::uuid_like);
        Ok(Meta {
            now: Now::system(),
            source,
            request_id,
        })
    }
}

/// The raw body of a request, refused in the endpoint's own error convention `E` (OAuth JSON,
/// problem details) rather than axum's plain-text rejection when it is too large or unreadable.
pub struct Body<E>(pub bytes::Bytes, pub std::marker::PhantomData<E>);

impl<S, E> axum::extract::FromRequest<S> for Body<E>
where
    S: Send + Sync,
    E: From<ims_core::Error> + IntoResponse,
{
    type Rejection = E;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let limit = req.extensions().get::<BodyLimit>().map_or(MAX_BODY, |l| l.0);
        match bytes::Bytes::from_request(req, state).await {
            Ok(b) => Ok(Body(b, std::marker::PhantomData)),
            Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => Err(E::from(
                ims_core::Error::too_large(format!("the request body exceeds {limit} bytes")),
            )),
            Err(_) => Err(E::from(ims_core::Error::invalid_request(
                "the request body could not be read",
            ))),
        }
    }
}

fn sane_request_id(v: &HeaderValue) -> Option<String> {
    let s = v.to_str().ok()?;
    (!s.is_empty() && s.len() <= 128 && s.bytes().all(|b| b.is_ascii_graphic())).then(|| s.to_owned())
}

/// Assigns the request id, echoes it, logs one line per request and feeds the metrics. The line
/// names the route's template (`/ims/signin/{flow}`), never the path as sent: query strings and
/// path segments may hold secrets (flow tokens, reset links).
pub async fn observe(State(metrics): State<Arc<Metrics>>, req: Request, next: Next) -> Response {
    observed(Some(&metrics), None, req, next).await
}

/// The access log line of one request, and its metrics when the router keeps them (the IMS's;
/// an instance's line names the instance instead).
pub(crate) async fn observed(
    metrics: Option<&Metrics>,
    instance: Option<&str>,
    mut req: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let id = req
        .headers()
        .get("x-request-id")
        .and_then(sane_request_id)
        .unwrap_or_else(ims_core::secret::uuid_like);
    req.extensions_mut().insert(RequestId(id.clone()));
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |m| m.as_str())
        .to_owned();
    let method = req.method().as_str().to_owned();
    let path = if route == "unmatched" {
        req.uri().path().chars().take(256).collect()
    } else {
        route.clone()
    };
    let mut resp = ims_core::audit::serving(id.clone(), next.run(req)).await;
    let elapsed = started.elapsed();
    if let Some(metrics) = metrics {
        metrics.observe_request(&route, &method, resp.status().as_u16(), elapsed);
    }
    let (status, micros) = (resp.status().as_u16(), elapsed.as_micros() as u64);
    match instance {
        Some(instance) => tracing::info!(
            target: "ims::access",
            request_id = %id, %instance, %method, %path, status, micros, "request"
        ),
        None => tracing::info!(
            target: "ims::access",
            request_id = %id, %method, %path, status, micros, "request"
        ),
    }
    if let Ok(v) = HeaderValue::from_str(&id) {
        resp.headers_mut().insert("x-request-id", v);
    }
    resp
}
