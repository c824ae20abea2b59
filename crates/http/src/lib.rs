//! HTTP surface of the IMS and of the Campaign instances. Handlers are thin: extract, call one
//! domain method, map the result. The IMS's routers ([`ims`]) and an instance's ([`instance`])
//! each own their state; what every request carries (clock reading, peer, request id, body
//! limits, the access log line) is in [`request`].

pub mod edge;
pub mod error;
pub mod ims;
pub mod instance;
pub mod metrics;
mod pages;
pub mod params;
pub mod request;
pub mod serve;

pub use ims::{health_router, ops_router, public_router, AppState};
pub use metrics::Metrics;
pub use request::{observe, Body, BodyLimit, Meta, RequestId, MAX_BODY};
