//! The Developer Console API, as a developer calls it.

use http::StatusCode;
use ims_core::audit::Context;
use ims_core::Now;
use ims_identity::directory::{AdminRole, RoleGrant};
use ims_identity::store::DirectoryStore as _;
use serde_json::{json, Value};

use super::*;

pub(crate) async fn developer(h: &Harness, email: &str) -> (String, String) {
    let u = h.person(email).await;
    let ctx = Context::new(Now::system(), "test");
    h.store
        .set_role(
            &RoleGrant {
                user_id: u.user_id.clone(),
                role: AdminRole::Developer,
                target: String::new(),
            },
            true,
            Now::system(),
            &ctx.event("role.grant", email, "success", json!({})),
        )
        .await
        .unwrap();
    person_token(h, email, PASSWORD).await
}

pub(crate) struct Api<'a> {
    pub(crate) h: &'a Harness,
    pub(crate) token: String,
    pub(crate) key: String,
    pub(crate) org: String,
}

impl Api<'_> {
    pub(crate) async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let path = path.replace("{org}", &self.org);
        let body = body.map(|b| b.to_string());
        let (status, _, v) = self
            .h
            .call(req(
                method,
                &path,
                Some(&self.token),
                Some(&self.key),
                body.as_deref(),
            ))
            .await;
        (status, v)
    }

    pub(crate) async fn ok(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let (status, v) = self.call(method, path, body).await;
        assert!(status.is_success(), "{method} {path}: {status} {v}");
        v
    }
}

pub(crate) async fn numeric_org(h: &Harness) -> String {
    h.state
        .ims
        .tokens()
        .organization(&h.org_id)
        .await
        .unwrap()
        .numeric_id
        .to_string()
}
