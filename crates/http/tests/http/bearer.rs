//! IMS bearer tokens at an instance: technical account operators, refused tokens, the build matrix.

use axum::Router;
use http::StatusCode;
use ims_campaign::service::Instance;
use ims_core::keys::{Algorithm, MasterKey};
use ims_core::Now;
use ims_http::instance::soap::{router, InstanceState};
use ims_identity::store::AuditQuery;
use serde_json::{json, Value};
use std::sync::Arc;

use crate::harness::*;

/// An instance of `build` that trusts the harness's IMS.
async fn bearer_app(h: &Harness, build: &str) -> (Router, Arc<Instance>, Store, tempfile::TempDir) {
    let (inst, store, dir) = instance_with(build).await;
    let issuer =
        ims_campaign::bearer::TrustedIssuer::new(ISSUER, Arc::new(ImsKeys(Arc::clone(&h.state.ims))));
    let inst = Arc::new(inst.with_bearer(Arc::new(issuer)));
    (
        router(InstanceState {
            instance: Arc::clone(&inst),
            tls: false,
        }),
        inst,
        store,
        dir,
    )
}

fn user_info(token: &str) -> (String, Vec<(&'static str, String)>) {
    (
        envelope("GetUserInfo", "xtk:session", "<sessiontoken/>"),
        vec![("authorization", format!("Bearer {token}"))],
    )
}

#[tokio::test]
async fn a_technical_account_operator_is_created_at_its_first_call() {
    let h = harness().await;
    let c = h.campaign_credential().await;
    let token = h.token(&c, CAMPAIGN_SCOPES).await;
    let (app, inst, store, _dir) = bearer_app(&h, "7.4.1").await;
    let ta = c.client.technical_account_id.clone();
    assert!(
        store.operator_by_ims_id(&ta).await.unwrap().is_none(),
        "no operator before the first call"
    );
    let (body, headers) = user_info(&token);
    let (_, xml) = call(&app, "xtk:session#GetUserInfo", body.clone(), &headers).await;
    assert!(xml.contains("<GetUserInfoResponse"), "{xml}");
    let op = store
        .operator_by_ims_id(&ta)
        .await
        .unwrap()
        .expect("created by the first call");
    assert_eq!(
        op.login, c.client.technical_account_email,
        "named by the technical account email"
    );
    let created = ims_core::audit::AuditStore::audit(
        store.as_ref(),
        &AuditQuery {
            action_prefix: Some("operator.create".into()),
            limit: 10,
        },
    )
    .await
    .unwrap();
    assert!(
        created.iter().any(
            |e| e.target == c.client.technical_account_email && e.actor.starts_with("technical-account:")
        ),
        "the creation is audited"
    );
    assert_eq!(op.auth_type, ims_campaign::model::AuthType::TechnicalAccount);
    assert!(op.password_hash.is_none());
    // Later calls map to the same operator; usage records the bearer path.
    let (_, xml) = call(&app, "xtk:session#GetUserInfo", body, &headers).await;
    assert!(xml.contains(&format!("loginId=\"{}\"", op.id)));
    // Calls are counted, not written one by one; a flush writes the running total.
    assert!(store.usage(Some(&op.login), 10).await.unwrap().is_empty());
    assert_eq!(inst.sessions().flush_usage().await.unwrap(), 1);
    let summary = store.usage_summary(Some(&op.login), 10).await.unwrap();
    assert_eq!(summary.len(), 1);
    assert_eq!(summary[0].counts.calls, 2);
    assert_eq!(summary[0].key.action, "xtk:session#GetUserInfo");
    assert_eq!(summary[0].key.auth_path, ims_campaign::model::AuthPath::Bearer);
    // The next calls add to the same total.
    let (body, headers) = user_info(&token);
    call(&app, "xtk:session#GetUserInfo", body, &headers).await;
    inst.sessions().flush_usage().await.unwrap();
    assert_eq!(
        store.usage_summary(Some(&op.login), 10).await.unwrap()[0]
            .counts
            .calls,
        3
    );
    // BearerTokenLogon opens a session for it.
    let logon = envelope(
        "BearerTokenLogon",
        "xtk:session",
        &format!("<sessiontoken/><bearerToken xsi:type=\"xsd:string\">{token}</bearerToken>"),
    );
    let (_, xml) = call(&app, "xtk:session#BearerTokenLogon", logon, &[]).await;
    assert!(
        xml.contains("<BearerTokenLogonResponse") && xml.contains("pstrSecurityToken"),
        "{xml}"
    );
    let session = value(&xml, "pstrSessionToken");
    let (_, xml) = call(
        &app,
        "xtk:session#GetUserInfo",
        envelope("GetUserInfo", "xtk:session", "<sessiontoken/>"),
        &[("x-session-token", session)],
    )
    .await;
    assert!(xml.contains(&c.client.technical_account_email), "{xml}");
}

/// A flood of garbage bearer tokens costs its sender nothing: it must not cost the instance
/// a database row each. Refusals are counted in memory and written as totals.
#[tokio::test]
async fn a_flood_of_refused_tokens_writes_totals_not_rows() {
    let h = harness().await;
    let (app, inst, store, _dir) = bearer_app(&h, "7.4.1").await;
    let before = store.usage(None, 10_000).await.unwrap().len();
    for i in 0..200 {
        let (body, headers) = user_info(&format!("garbage.{i}.token"));
        let (_, xml) = call(&app, "xtk:session#GetUserInfo", body, &headers).await;
        assert_eq!(fault_code(&xml).as_deref(), Some("XSV-350008"));
    }
    assert_eq!(store.usage(None, 10_000).await.unwrap().len(), before);
    inst.sessions().flush_usage().await.unwrap();
    let totals = store.usage_summary(None, 100).await.unwrap();
    let refused: i64 = totals
        .iter()
        .filter(|u| u.key.outcome == "refused")
        .map(|u| u.counts.calls)
        .sum();
    assert_eq!(refused, 200, "{totals:?}");
}

#[tokio::test]
async fn bad_tokens_are_refused_with_a_fault() {
    let h = harness().await;
    let c = h.campaign_credential().await;
    let good = h.token(&c, CAMPAIGN_SCOPES).await;
    let (app, _inst, _store, _dir) = bearer_app(&h, "7.4.1").await;
    let now = Now::system();
    // Signed by a key the IMS never published.
    let master = MasterKey::generate();
    let foreign = ims_core::keys::KeyRing::load(
        vec![ims_core::keys::generate(Algorithm::ES256, &master, now, now).unwrap()],
        &master,
        None,
    )
    .unwrap();
    let mut claims = claims(&good);
    let other_key = ims_core::jose::sign(&claims, foreign.signer(Algorithm::ES256, now).unwrap()).unwrap();
    // Re-signed with the IMS's own key, claims altered.
    let ring = ims_core::keys::KeyRing::load(
        ims_identity::store::KeyStore::keys(&*h.store).await.unwrap(),
        &h.master,
        None,
    )
    .unwrap();
    let signer = ring.signer(Algorithm::ES256, now).unwrap();
    claims["exp"] = json!(now.secs() - 3600);
    let expired = ims_core::jose::sign(&claims, signer).unwrap();
    let mut c2 = crate::harness::claims(&good);
    c2["iss"] = json!("https://evil.example");
    let wrong_issuer = ims_core::jose::sign(&c2, signer).unwrap();
    let mut c3 = crate::harness::claims(&good);
    c3["type"] = json!("id_token");
    let other_type = ims_core::jose::sign(&c3, signer).unwrap();
    for (what, token) in [
        ("other key", other_key),
        ("expired", expired),
        ("wrong issuer", wrong_issuer),
        ("id token", other_type),
        ("garbage", "a.b.c".to_owned()),
    ] {
        let (body, headers) = user_info(&token);
        let (status, xml) = call(&app, "xtk:session#GetUserInfo", body, &headers).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(fault_code(&xml).as_deref(), Some("XSV-350008"), "{what}: {xml}");
    }
    // The good one passes.
    let (body, headers) = user_info(&good);
    let (_, xml) = call(&app, "xtk:session#GetUserInfo", body, &headers).await;
    assert!(xml.contains("<GetUserInfoResponse"), "{xml}");
}

struct DownKeys;

#[async_trait::async_trait]
impl ims_campaign::bearer::JwksSource for DownKeys {
    async fn fetch(&self) -> Result<Value, String> {
        Err("connection refused".into())
    }
}

#[tokio::test]
async fn an_unreachable_ims_is_a_server_fault_not_an_expired_session() {
    let h = harness().await;
    let c = h.campaign_credential().await;
    let token = h.token(&c, CAMPAIGN_SCOPES).await;
    let (inst, _, _dir) = instance_with("7.4.1").await;
    let issuer = ims_campaign::bearer::TrustedIssuer::new(ISSUER, Arc::new(DownKeys));
    let app = router(InstanceState {
        instance: Arc::new(inst.with_bearer(Arc::new(issuer))),
        tls: false,
    });
    let (body, headers) = user_info(&token);
    let (_, xml) = call(&app, "xtk:session#GetUserInfo", body, &headers).await;
    assert_eq!(fault_code(&xml).as_deref(), Some("XSV-350001"), "{xml}");
    assert!(xml.contains("<faultcode>SOAP-ENV:Server</faultcode>"));
}

#[tokio::test]
async fn bearer_tokens_follow_the_build_matrix() {
    let h = harness().await;
    let c = h.campaign_credential().await;
    let token = h.token(&c, CAMPAIGN_SCOPES).await;
    for (build, accepted) in [
        ("7.3.1", false),
        ("7.3.2.IMS", true),
        ("7.3.4", false),
        ("7.3.5", true),
        ("7.4.1", true),
        ("8.5.2", true),
        ("8.6.0", true),
    ] {
        let (app, _inst, _store, _dir) = bearer_app(&h, build).await;
        let (body, headers) = user_info(&token);
        let (_, xml) = call(&app, "xtk:session#GetUserInfo", body, &headers).await;
        assert_eq!(xml.contains("<GetUserInfoResponse"), accepted, "{build}: {xml}");
        if !accepted {
            assert!(
                xml.contains("7.4.1 and later"),
                "the fault names the builds that accept bearer tokens"
            );
        }
    }
}
