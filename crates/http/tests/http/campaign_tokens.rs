//! IMS tokens at a connected instance: the wrong audience, revocation, technical accounts' rights.

use axum::body::Body;
use http::{Request, StatusCode};
use ims_campaign::connect::{HttpKeys, ImsAccount, ImsHttp};
use ims_campaign::service::{Instance, InstanceInfo, InstanceKind};
use ims_campaign::signin::Connection;
use ims_core::audit::Context;
use ims_core::Now;
use ims_http::instance::soap::{router, InstanceState};
use ims_identity::store::DirectoryStore as _;
use serde_json::json;
use std::sync::Arc;

use crate::harness::*;

/// The attack: an application the person allowed to sign them in sends the person's access
/// token (valid, same issuer and organisation, `openid`) to the instance. Every path that
/// takes a bearer token refuses it, and the operator keeps everything it had.
#[tokio::test]
async fn a_persons_token_minted_for_another_application_is_refused_everywhere() {
    let h = harness().await;
    let (c, jane) = with_an_administrator(&h).await;
    let mut b = Browser::default();
    let (status, _, body) = connect_with_ims(&h, &c, &mut b, "jane@acme.test").await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{body}");
    let before = c.store.operator_by_ims_id(&jane.user_id).await.unwrap().unwrap();
    assert_eq!(before.groups, vec!["admin"]);
    // A token the person gave another application of the organisation.
    let (token, other_client) = person_token(&h, "jane@acme.test", PASSWORD).await;
    assert_ne!(other_client, c.client_id);
    let bearer = vec![("authorization", format!("Bearer {token}"))];
    let read = query(
        r#"<queryDef schema="xtk:operator" operation="select"><select><node expr="@name"/></select></queryDef>"#,
    );
    let write = envelope(
        "Write",
        "xtk:persist|xtk:session",
        r#"<sessiontoken/><domDoc><operator xtkschema="xtk:operator" _operation="insert" name="planted" password="planted password 1"><operatorGroup name="admin"/></operator></domDoc>"#,
    );
    for (action, body) in [
        ("xtk:queryDef#ExecuteQuery", read),
        ("xtk:persist|xtk:session#Write", write),
        (
            "xtk:session#GetUserInfo",
            envelope("GetUserInfo", "xtk:session", "<sessiontoken/>"),
        ),
        (
            "xtk:session#BearerTokenLogon",
            envelope(
                "BearerTokenLogon",
                "xtk:session",
                &format!("<sessiontoken/><bearerToken xsi:type=\"xsd:string\">{token}</bearerToken>"),
            ),
        ),
    ] {
        let (_, xml) = call(&c.app, action, body, &bearer).await;
        assert_eq!(fault_code(&xml).as_deref(), Some("XSV-350122"), "{action}: {xml}");
        assert!(xml.contains("another application"), "{action}: {xml}");
    }
    let (status, _, out) = send(
        &c.app,
        Request::get("/nl/migration/v1/instance")
            .header("authorization", format!("Bearer {token}"))
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{out}");
    assert!(c.store.operator_by_login("planted").await.unwrap().is_none());
    let after = c.store.operator_by_ims_id(&jane.user_id).await.unwrap().unwrap();
    assert_eq!((after.groups, after.rights), (before.groups, before.rights));
    // The refusals are recorded as usage, with who tried.
    // (Counted in memory, as totals, like calls: a flood of refused tokens writes no row
    // each.)
    assert!(c
        .store
        .usage(None, 100)
        .await
        .unwrap()
        .iter()
        .all(|e| e.login != jane.user_id));
    c.inst.sessions().flush_usage().await.unwrap();
    let refused = c.store.usage_summary(None, 100).await.unwrap();
    let tries: i64 = refused
        .iter()
        .filter(|u| u.key.outcome == "refused" && u.key.login == jane.user_id)
        .map(|u| u.counts.calls)
        .sum();
    assert_eq!(tries, 5, "the four SOAP calls and the migration API: {refused:?}");
}

/// The attack: a revoked token, and a token of a disabled credential, kept working at an
/// instance without an IMS sign-in configuration until they expired (24 h). The instance
/// now asks the IMS for each token's Campaign profiles every `profile_refresh_secs` (0 here:
/// every call), on direct bearer calls and on the sessions `BearerTokenLogon` opened.
#[tokio::test]
async fn revoked_tokens_stop_working_at_an_instance_without_configuration() {
    let h = harness().await;
    let (_, store, _dir, _) = instance_on(Db::Sqlite, "7.4.1", InstanceKind::Marketing)
        .await
        .unwrap();
    let mut info = InstanceInfo::new("prod", InstanceKind::Marketing, "7.4.1".parse().unwrap());
    info.profile_refresh_secs = 0;
    let http: Arc<dyn ImsHttp> = Arc::new(InProcessIms(h.app.clone()));
    let keys = HttpKeys {
        http: Arc::clone(&http),
        url: format!("{ISSUER}/ims/keys"),
    };
    let inst = Instance::new(Arc::clone(&store), info)
        .with_bearer(Arc::new(ims_campaign::bearer::TrustedIssuer::new(
            ISSUER,
            Arc::new(keys),
        )))
        .with_ims_http(http);
    assert!(inst.connection().is_none());
    let app = router(InstanceState {
        instance: Arc::new(inst),
        tls: false,
    });
    let info_call = envelope("GetUserInfo", "xtk:session", "<sessiontoken/>");
    let bearer = |t: &str| vec![("authorization", format!("Bearer {t}"))];
    let works = |xml: &str| xml.contains("<GetUserInfoResponse");
    // Revoked at the IMS: refused at the next call.
    let c = h.campaign_credential().await;
    let token = h.token(&c, CAMPAIGN_SCOPES).await;
    let (_, xml) = call(
        &app,
        "xtk:session#GetUserInfo",
        info_call.clone(),
        &bearer(&token),
    )
    .await;
    assert!(works(&xml), "{xml}");
    let (status, _, _) = h
        .call(form(
            "/ims/revoke/v1",
            &[
                ("token", token.as_str()),
                ("client_id", c.client.client_id.as_str()),
                ("client_secret", c.secret.expose()),
            ],
        ))
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, xml) = call(
        &app,
        "xtk:session#GetUserInfo",
        info_call.clone(),
        &bearer(&token),
    )
    .await;
    assert_eq!(fault_code(&xml).as_deref(), Some("XSV-350008"), "{xml}");
    // A session opened with a token ends when its credential is disabled.
    let c = h.campaign_credential().await;
    let token = h.token(&c, CAMPAIGN_SCOPES).await;
    let logon = envelope(
        "BearerTokenLogon",
        "xtk:session",
        &format!("<sessiontoken/><bearerToken xsi:type=\"xsd:string\">{token}</bearerToken>"),
    );
    let (_, xml) = call(&app, "xtk:session#BearerTokenLogon", logon, &[]).await;
    let session = vec![("x-session-token", value(&xml, "pstrSessionToken"))];
    let (_, xml) = call(&app, "xtk:session#GetUserInfo", info_call.clone(), &session).await;
    assert!(works(&xml), "{xml}");
    h.creds
        .set_credential_disabled(&c.client.client_id, true, &Context::new(Now::system(), "test"))
        .await
        .unwrap();
    let (_, xml) = call(&app, "xtk:session#GetUserInfo", info_call.clone(), &session).await;
    assert_eq!(fault_code(&xml).as_deref(), Some("XSV-350008"), "{xml}");
    let (_, xml) = call(
        &app,
        "xtk:session#GetUserInfo",
        info_call.clone(),
        &bearer(&token),
    )
    .await;
    assert_eq!(fault_code(&xml).as_deref(), Some("XSV-350008"), "{xml}");
    // The Campaign scope alone (which the I/O Management API grants too) does not open the
    // instance: the credential must be subscribed to the Campaign API.
    let scope = "openid,additional_info.projectedProductContext";
    let io = h
        .credential(&["openid", "additional_info.projectedProductContext"])
        .await;
    let token = h.token(&io, scope).await;
    let (_, xml) = call(&app, "xtk:session#GetUserInfo", info_call, &bearer(&token)).await;
    assert_eq!(fault_code(&xml).as_deref(), Some("XSV-350008"), "{xml}");
}

fn push_as(token: &str) -> (String, Vec<(&'static str, String)>) {
    let event = r#"<rtEvent type="ORDER" email="jane@example.com"><ctx><orderId>1</orderId></ctx></rtEvent>"#;
    (push(event), vec![("authorization", format!("Bearer {token}"))])
}

#[tokio::test]
async fn technical_accounts_get_their_rights_from_their_credential_profiles() {
    let h = harness().await;
    let c = connected(&h, Db::Sqlite, InstanceKind::MessageCenter, 3)
        .await
        .unwrap();
    profile(&h, "campaign - prod - messagecenter", &[]).await;
    let mc = h
        .store
        .groups(&h.org_id)
        .await
        .unwrap()
        .into_iter()
        .map(|(g, _)| g)
        .find(|g| g.name == "campaign - prod - messagecenter")
        .unwrap();
    let with = h.campaign_credential().await;
    let without = h.campaign_credential().await;
    let ctx = Context::new(Now::system(), "test");
    h.state
        .ims
        .directory()
        .set_profile_credential(&h.org_id, &mc, &with.client.client_id, true, &ctx)
        .await
        .unwrap();
    let push = |token: String| {
        let app = c.app.clone();
        async move {
            let (body, headers) = push_as(&token);
            call(&app, "nms:rtEvent#PushEvent", body, &headers).await.1
        }
    };
    let with_token = h.token(&with, CAMPAIGN_SCOPES).await;
    let xml = push(with_token.clone()).await;
    assert!(
        xml.contains("<plId"),
        "the Message Center profile grants PushEvent: {xml}"
    );
    let op = c
        .store
        .operator_by_ims_id(&with.client.technical_account_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(op.groups, vec!["messageCenterAgents"]);
    let without_token = h.token(&without, CAMPAIGN_SCOPES).await;
    let xml = push(without_token.clone()).await;
    assert_eq!(
        fault_code(&xml).as_deref(),
        Some("XSV-350122"),
        "a rights fault: {xml}"
    );
    let op = c
        .store
        .operator_by_ims_id(&without.client.technical_account_id)
        .await
        .unwrap()
        .unwrap();
    assert!(
        op.groups.is_empty(),
        "no default groups once profiles decide: {op:?}"
    );
    // The profile given: within the bound (one second here), the next call succeeds; before
    // it, the instance still goes by what it read.
    h.state
        .ims
        .directory()
        .set_profile_credential(&h.org_id, &mc, &without.client.client_id, true, &ctx)
        .await
        .unwrap();
    let xml = push(without_token.clone()).await;
    assert_eq!(
        fault_code(&xml).as_deref(),
        Some("XSV-350122"),
        "read less than three seconds ago"
    );
    tokio::time::sleep(std::time::Duration::from_millis(3100)).await;
    let xml = push(without_token.clone()).await;
    assert!(xml.contains("<plId"), "{xml}");
    let synced = audit(&c.store, "operator.ims_sync").await;
    assert!(synced.iter().any(|e| e.actor
        == format!("technical-account:{}", without.client.technical_account_id)
        && e.details["changes"]["groups_added"] == json!(["messageCenterAgents"])));
    // Taken away again: refused after the bound.
    h.state
        .ims
        .directory()
        .set_profile_credential(&h.org_id, &mc, &without.client.client_id, false, &ctx)
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(3100)).await;
    let xml = push(without_token).await;
    assert_eq!(fault_code(&xml).as_deref(), Some("XSV-350122"), "{xml}");
    // The credential disabled at the IMS: its token still verifies here (offline), but the next
    // reading of its profiles is refused, which takes its rights away and refuses the call.
    h.creds
        .set_credential_disabled(&with.client.client_id, true, &ctx)
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(3100)).await;
    let xml = push(with_token.clone()).await;
    assert_eq!(fault_code(&xml).as_deref(), Some("XSV-350008"), "{xml}");
    let op = c
        .store
        .operator_by_ims_id(&with.client.technical_account_id)
        .await
        .unwrap()
        .unwrap();
    assert!(op.groups.is_empty(), "{op:?}");
    // A token of another organisation than the instance's is refused outright.
    let conn = c.inst.connection().unwrap();
    let other = Connection::new(
        ImsAccount {
            org_id: "0THER0RG@AdobeOrg".into(),
            ..conn.account.clone()
        },
        conn.client_id.clone(),
        conn.secret().clone(),
        Arc::clone(conn.http()),
    );
    c.inst
        .configuration()
        .set_connection(Some(other), &ctx)
        .await
        .unwrap();
    let xml = push(with_token).await;
    assert!(xml.contains("another organisation"), "{xml}");
}
