//! The audit log's vocabulary, shared by the IMS and every instance: who acted, from where, and the
//! line that records it. Both services write these lines through an [`AuditStore`] of their own.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::clock::Now;
use crate::error::StoreResult;

/// One line of the audit log. Never holds secret material.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEvent {
    pub at: Now,
    /// Who acted: `cli:<unix user>`, `admin:<email>`, `client:<client id>`, `system`.
    pub actor: String,
    /// Stable code, e.g. `credential.create`, `token.client_credentials`.
    pub action: String,
    pub target: String,
    /// `success` or `failure`.
    pub outcome: String,
    /// Source address, when the change came over the network.
    pub source: Option<String>,
    pub request_id: Option<String>,
    pub details: serde_json::Value,
}

/// Who is acting and from where: the part of a request the audit log needs.
#[derive(Clone, Debug)]
pub struct Context {
    pub now: Now,
    pub actor: String,
    pub source: Option<String>,
    pub request_id: Option<String>,
}

impl Context {
    pub fn new(now: Now, actor: impl Into<String>) -> Self {
        Context {
            now,
            actor: actor.into(),
            source: None,
            request_id: None,
        }
    }

    pub fn event(&self, action: &str, target: &str, outcome: &str, details: serde_json::Value) -> AuditEvent {
        AuditEvent {
            at: self.now,
            actor: self.actor.clone(),
            action: action.to_owned(),
            target: target.to_owned(),
            outcome: outcome.to_owned(),
            source: self.source.clone(),
            request_id: self.request_id.clone(),
            details,
        }
    }
}

/// A query over the audit log, newest first.
#[derive(Clone, Debug, Default)]
pub struct AuditQuery {
    pub action_prefix: Option<String>,
    pub limit: u32,
}

#[async_trait]
pub trait AuditStore: Send + Sync {
    async fn append_audit(&self, event: &AuditEvent) -> StoreResult<()>;
    async fn audit(&self, query: &AuditQuery) -> StoreResult<Vec<AuditEvent>>;
}

tokio::task_local! {
    static REQUEST_ID: String;
}

/// Runs `work` as the serving of request `id`: the calls it makes to other services (an instance
/// asking the IMS, the IMS telling a client of a sign-out) carry the same `X-Request-Id`, so one
/// request can be followed through every service's access log.
pub async fn serving<F: std::future::Future>(id: String, work: F) -> F::Output {
    REQUEST_ID.scope(id, work).await
}

/// The id of the request being served by this task, if any.
pub fn serving_request() -> Option<String> {
    REQUEST_ID.try_with(Clone::clone).ok()
}
