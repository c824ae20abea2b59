//! People signing in to an instance through the IMS: groups from profiles, forged callbacks,
//! linking by email, the checklist and sign-out.

use axum::body::Body;
use axum::Router;
use http::{Request, StatusCode};
use ims_campaign::connect::{ImsAccount, ImsHttp, NO_MATCHING_RIGHT};
use ims_campaign::model::AuthType;
use ims_campaign::service::InstanceKind;
use ims_campaign::signin::Connection;
use ims_core::audit::Context;
use ims_core::keys::{Algorithm, MasterKey};
use ims_core::secret::Secret;
use ims_core::Now;
use ims_identity::model::User;
use ims_identity::store::DirectoryStore as _;
use ims_identity::umapi::Change;
use serde_json::{json, Value};
use std::sync::Arc;
use tower::ServiceExt as _;

use crate::harness::*;

#[tokio::test]
async fn people_sign_in_through_the_ims_with_groups_from_their_profiles() {
    for db in [Db::Sqlite, Db::Postgres] {
        let Some(h) = harness_on(db, Algorithm::RS256).await else {
            continue;
        };
        let Some(c) = connected(&h, db, InstanceKind::Marketing, 60).await else {
            continue;
        };
        profile(&h, "campaign - prod - Administrator", &["admin"]).await;
        profile(&h, "campaign - prod - deliveryOperators", &["EXPORT"]).await;
        profile(&h, "campaign - other - Administrator", &["admin"]).await;
        let jane = h.person("jane@acme.test").await;
        for p in [
            "campaign - prod - Administrator",
            "campaign - prod - deliveryOperators",
            "campaign - other - Administrator",
        ] {
            membership(&h, &jane.user_id, p, true).await;
        }
        // The sign-in page offers it.
        let (_, _, html) = Browser::default().get(&c.app, "/console/login").await;
        assert!(
            html.contains(r#"href="/console/ims/login""#) && html.contains("Connect with IMS"),
            "{html}"
        );

        the_first_sign_in_creates_the_operator(&h, &c, &jane).await;
        a_profile_taken_away_goes_at_the_next_sign_in(&h, &c, &jane).await;
        no_matching_profile_left_is_refused(&h, &c, &jane).await;
        switched_back_to_native_sign_in(&h, &c, &jane).await;
        finish(c.cleanup).await;
        h.cleanup().await;
    }
}

/// First sign-in: the operator is created, of type IMS, in the matched groups.
async fn the_first_sign_in_creates_the_operator(h: &Harness, c: &Connected, jane: &User) {
    let mut b = Browser::default();
    let (status, headers, body) = connect_with_ims(h, c, &mut b, "jane@acme.test").await;
    assert_eq!(
        (status, location(&headers)),
        (StatusCode::SEE_OTHER, "/console/".into()),
        "{body}"
    );
    let html = home(c, &mut b).await;
    assert!(
        html.contains("Signed in through the IMS: operator created"),
        "{html}"
    );
    assert!(html.contains("ADMINISTRATION"), "{html}");
    let op = c.store.operator_by_ims_id(&jane.user_id).await.unwrap().unwrap();
    assert_eq!(
        (op.login.as_str(), op.auth_type, op.email.as_deref()),
        ("jane@acme.test", AuthType::Ims, Some("jane@acme.test"))
    );
    assert_eq!(
        op.groups,
        vec!["admin", "deliveryOperators"],
        "the other instance's profile grants nothing here"
    );
    assert_eq!(
        op.rights,
        vec!["export"],
        "held directly: the permission items no mapped group carries (admin comes with its group)"
    );
    let created = audit(&c.store, "operator.create").await;
    assert!(created
        .iter()
        .any(|e| e.target == "jane@acme.test" && e.details["auth_type"] == "ims"));
    // An administrator: the operator pages open.
    let (status, _, _) = b.get(&c.app, "/console/operators").await;
    assert_eq!(status, StatusCode::OK);
    // The notice is shown once.
    assert!(!home(c, &mut b).await.contains("Signed in through the IMS"));
}

/// The profile taken away: the group goes at the next sign-in, and the change is said; signing
/// out then offers the IMS's sign-out for this client.
async fn a_profile_taken_away_goes_at_the_next_sign_in(h: &Harness, c: &Connected, jane: &User) {
    membership(h, &jane.user_id, "campaign - prod - Administrator", false).await;
    let mut b = Browser::default();
    let (status, _, _) = connect_with_ims(h, c, &mut b, "jane@acme.test").await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let html = home(c, &mut b).await;
    assert!(
        html.contains("groups removed: admin") && !html.contains("rights removed"),
        "{html}"
    );
    let op = c.store.operator_by_ims_id(&jane.user_id).await.unwrap().unwrap();
    assert_eq!(
        (op.groups.clone(), op.rights.clone()),
        (vec!["deliveryOperators".to_owned()], vec!["export".to_owned()])
    );
    let (status, _, _) = b.get(&c.app, "/console/operators").await;
    assert_eq!(status, StatusCode::FORBIDDEN, "no longer an administrator");
    let synced = audit(&c.store, "operator.ims_sync").await;
    assert_eq!(synced[0].details["changes"]["groups_removed"], json!(["admin"]));
    assert_eq!(synced[0].actor, format!("ims:{}", jane.user_id));

    // Signing out offers the IMS's sign-out for this client.
    let (_, _, html) = b.get(&c.app, "/console/").await;
    let (status, headers, html) = b
        .post(&c.app, "/console/logout", &[("csrf", &csrf_in(&html))])
        .await;
    assert_eq!(status, StatusCode::OK, "{html}");
    assert!(
        html.contains(&format!("{ISSUER}/ims/logout/v1?client_id={}", c.client_id)),
        "{html}"
    );
    assert!(headers
        .get_all("set-cookie")
        .iter()
        .any(|v| v.to_str().unwrap().starts_with("ims_console=;")));
    let (status, headers, _) = b.get(&c.app, "/console/").await;
    assert_eq!(
        (status, location(&headers)),
        (StatusCode::SEE_OTHER, "/console/login".into())
    );
}

/// No matching profile left: refused with the vendor's message, audited, no session.
async fn no_matching_profile_left_is_refused(h: &Harness, c: &Connected, jane: &User) {
    membership(h, &jane.user_id, "campaign - prod - deliveryOperators", false).await;
    let mut b = Browser::default();
    let (status, _, html) = connect_with_ims(h, c, &mut b, "jane@acme.test").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(html.contains(NO_MATCHING_RIGHT), "{html}");
    assert!(!b.has("ims_console"));
    let refused = audit(&c.store, "operator.ims_sign_in").await;
    assert_eq!(
        (refused[0].outcome.as_str(), refused[0].details["reason"].as_str()),
        ("failure", Some(NO_MATCHING_RIGHT))
    );
    let op = c.store.operator_by_ims_id(&jane.user_id).await.unwrap().unwrap();
    assert!(
        op.groups.is_empty() && op.rights.is_empty(),
        "what profiles gave is gone: {op:?}"
    );
    // Usage evidence records both outcomes on the IMS path.
    let usage = ims_campaign::store::UsageStore::usage(c.store.as_ref(), Some("jane@acme.test"), 10)
        .await
        .unwrap();
    assert!(usage.iter().any(|u| u.action == "console#ImsLogon"
        && u.outcome == "success"
        && u.auth_path == ims_campaign::model::AuthPath::Ims));
    assert!(usage.iter().any(|u| u.outcome == "refused"));
}

/// Switched back to native sign-in, the IMS session stops counting.
async fn switched_back_to_native_sign_in(h: &Harness, c: &Connected, jane: &User) {
    membership(h, &jane.user_id, "campaign - prod - Administrator", true).await;
    let mut b = Browser::default();
    connect_with_ims(h, c, &mut b, "jane@acme.test").await;
    home(c, &mut b).await;
    let op = c.store.operator_by_ims_id(&jane.user_id).await.unwrap().unwrap();
    let native = ims_campaign::model::Operator {
        auth_type: AuthType::Native,
        ..op
    };
    let ctx = Context::new(Now::system(), "test");
    c.store
        .update_operator(
            &native,
            false,
            &ctx.event("operator.update", "jane", "success", json!({})),
        )
        .await
        .unwrap();
    let (status, _, _) = b.get(&c.app, "/console/").await;
    assert_eq!(
        status,
        StatusCode::SEE_OTHER,
        "the IMS session no longer opens the console"
    );
}

#[tokio::test]
async fn forged_or_mixed_up_callbacks_and_other_organisations_are_refused() {
    let h = harness().await;
    let (c, _) = with_an_administrator(&h).await;
    // No flow started in this browser, or another state: refused before any exchange.
    let mut b = Browser::default();
    let (status, _, html) = b.get(&c.app, "/console/ims/callback?code=x&state=y").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(html.contains("started in another browser"), "{html}");
    b.get(&c.app, "/console/ims/login").await;
    let (status, _, html) = b.get(&c.app, "/console/ims/callback?code=x&state=forged").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(
        html.contains("started in another browser"),
        "refused for its state: {html}"
    );
    assert!(!b.has("ims_console"));
    // An error from the IMS is shown by its code only.
    let (_, headers, _) = b.get(&c.app, "/console/ims/login").await;
    let state = query_of(&location(&headers))["state"].clone();
    let (status, _, html) = b
        .get(
            &c.app,
            &format!(
                "/console/ims/callback?state={state}&error=access_denied&error_description=%3Cb%3Eowned"
            ),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(
        html.contains("(access_denied)") && !html.contains("owned"),
        "{html}"
    );
    // An answer naming another issuer (RFC 9207).
    let (_, headers, _) = b.get(&c.app, "/console/ims/login").await;
    let state = query_of(&location(&headers))["state"].clone();
    let (status, _, html) = b
        .get(
            &c.app,
            &format!("/console/ims/callback?state={state}&code=x&iss=https%3A%2F%2Fevil.test"),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(html.contains("another identity service"), "{html}");
    // A code from one sign-in brought back with another's state: the verifier does not
    // match the code's challenge and the IMS refuses it.
    let mut b = Browser::default();
    let (_, headers, _) = b.get(&c.app, "/console/ims/login").await;
    let back = at_the_ims(&h, &mut b, &location(&headers), "jane@acme.test").await;
    let code_of_first = query_of(&back)["code"].clone();
    let (_, headers, _) = b.get(&c.app, "/console/ims/login").await;
    let second_state = query_of(&location(&headers))["state"].clone();
    let (status, _, html) = b
        .get(
            &c.app,
            &format!("/console/ims/callback?code={code_of_first}&state={second_state}"),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(html.contains("refused the sign-in (invalid_grant)"), "{html}");
    assert!(!b.has("ims_console"));
    // The happy path, for contrast.
    let mut b = Browser::default();
    let (status, _, _) = connect_with_ims(&h, &c, &mut b, "jane@acme.test").await;
    assert_eq!(status, StatusCode::SEE_OTHER, "the happy path works here");
    // An instance serving another organisation refuses this organisation's people.
    let ctx = Context::new(Now::system(), "test");
    let other = c.inst.connection().unwrap();
    let conn = Connection::new(
        ImsAccount {
            org_id: "0THER0RG@AdobeOrg".into(),
            ..other.account.clone()
        },
        other.client_id.clone(),
        other.secret().clone(),
        Arc::clone(other.http()),
    );
    c.inst
        .configuration()
        .set_connection(Some(conn), &ctx)
        .await
        .unwrap();
    let mut b = Browser::default();
    let (status, _, html) = connect_with_ims(&h, &c, &mut b, "jane@acme.test").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(html.contains("another organisation"), "{html}");
    let changed = audit(&c.store, "instance.ims_account").await;
    assert_eq!(changed[0].details["after"]["org_id"], "0THER0RG@AdobeOrg");
    assert!(
        !changed[0].details.to_string().contains(other.secret().expose()),
        "no secret in the audit"
    );
    // Without a configuration, no sign-in through the IMS is offered.
    c.inst.configuration().set_connection(None, &ctx).await.unwrap();
    let (_, _, html) = Browser::default().get(&c.app, "/console/login").await;
    assert!(!html.contains("Connect with IMS"));
    let (status, _, _) = Browser::default().get(&c.app, "/console/ims/login").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn emails_link_case_variants_but_never_take_over_an_operator() {
    let h = harness().await;
    let c = connected(&h, Db::Sqlite, InstanceKind::Marketing, 60)
        .await
        .unwrap();
    profile(&h, "campaign - prod - deliveryOperators", &[]).await;
    let store = Arc::clone(&c.store);
    let ctx = Context::new(Now::system(), "test");
    let add = |login: &'static str, email: &'static str, auth: AuthType, ims_id: Option<&'static str>| {
        let ctx = ctx.clone();
        let store = Arc::clone(&store);
        async move {
            let op = ims_campaign::model::Operator {
                auth_type: auth,
                ims_id: ims_id.map(str::to_owned),
                ..ims_campaign::model::Operator::native(
                    login,
                    Some(email.into()),
                    vec![],
                    None,
                    Now::system(),
                )
            };
            store
                .create_operator(&op, &ctx.event("operator.create", login, "success", json!({})))
                .await
                .unwrap()
        }
    };
    let ann_id = add("ann", "ANN.Lee@Acme.TEST", AuthType::Ims, None).await;
    add(
        "kim",
        "kim@acme.test",
        AuthType::Ims,
        Some("SOMEONE-ELSE@AdobeID"),
    )
    .await;
    let count = store.operator_count().await.unwrap();
    for email in ["ann.lee@acme.test", "kim@acme.test", "jdoe@example.com"] {
        let u = h.person(email).await;
        membership(&h, &u.user_id, "campaign - prod - deliveryOperators", true).await;
    }
    // A case variant of a verified email links the IMS operator waiting for it.
    let mut b = Browser::default();
    let (status, _, _) = connect_with_ims(&h, &c, &mut b, "ann.lee@acme.test").await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert!(home(&c, &mut b)
        .await
        .contains("operator linked to your identity by its email"));
    let ann = store.operator(ann_id).await.unwrap().unwrap();
    assert!(
        ann.ims_id.is_some() && ann.groups == vec!["deliveryOperators"],
        "{ann:?}"
    );
    // An operator linked to another identity is not taken over.
    let mut b = Browser::default();
    let (status, _, html) = connect_with_ims(&h, &c, &mut b, "kim@acme.test").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(html.contains("linked to another identity"), "{html}");
    let kim = store.operator_by_login("kim").await.unwrap().unwrap();
    assert_eq!(kim.ims_id.as_deref(), Some("SOMEONE-ELSE@AdobeID"));
    // A native operator with the email is not switched by a sign-in.
    let (status, _, html) = connect_with_ims(&h, &c, &mut Browser::default(), "jdoe@example.com").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(html.contains("signs in with its login and password"), "{html}");
    let jdoe = store.operator_by_login("jdoe").await.unwrap().unwrap();
    assert_eq!((jdoe.auth_type, jdoe.ims_id), (AuthType::Native, None));
    assert_eq!(
        store.operator_count().await.unwrap(),
        count,
        "no operator created by the refusals"
    );
}

#[tokio::test]
async fn the_checklist_says_which_rule_fails_and_how_to_fix_it() {
    use ims_campaign::diagnose::{diagnose, Status};
    let h = harness().await;
    let c = connected(&h, Db::Sqlite, InstanceKind::Marketing, 60)
        .await
        .unwrap();
    let groups = c.store.groups().await.unwrap();
    let conn = c.inst.connection().unwrap();
    let with = |f: &dyn Fn(&mut ImsAccount), secret: Option<&str>| {
        let mut a = conn.account.clone();
        f(&mut a);
        Connection::new(
            a,
            conn.client_id.clone(),
            secret.map_or_else(|| conn.secret().clone(), Secret::new),
            Arc::clone(conn.http()),
        )
    };
    let failing = |r: &ims_campaign::diagnose::Report| -> Vec<&'static str> {
        r.checks
            .iter()
            .filter(|c| c.status == Status::Fail)
            .map(|c| c.rule)
            .collect()
    };
    // No profile yet: only the mask fails, with its fix.
    let r = diagnose(&conn, "prod", &groups).await;
    assert_eq!(failing(&r), vec!["mask"], "{r:?}");
    assert!(r.checks[6]
        .fix
        .as_deref()
        .unwrap()
        .contains("campaign - prod - (.*)"));
    // A profile naming no group here fails it too, naming the group.
    profile(&h, "campaign - prod - ghosts", &[]).await;
    let r = diagnose(&conn, "prod", &groups).await;
    assert!(r.checks[6].detail.contains("\"ghosts\""), "{r:?}");
    // All pass once the profiles name groups; "admin" in a name is warned about.
    h.store
        .apply_changes(
            &h.org_id,
            &[Change::DeleteGroup {
                name: "campaign - prod - ghosts".into(),
            }],
            &[],
        )
        .await
        .unwrap();
    profile(&h, "campaign - prod - Administrator", &["admin"]).await;
    let r = diagnose(&conn, "prod", &groups).await;
    assert!(r.passed(), "{r:?}");
    assert_eq!(r.admin_profiles, vec!["campaign - prod - Administrator"]);
    // A wrong secret: the client rule fails and the rest is not checked.
    let r = diagnose(&with(&|_| {}, Some("wrong")), "prod", &groups).await;
    assert_eq!(failing(&r), vec!["client"]);
    assert!(r.checks[3..].iter().all(|c| c.status == Status::Skipped));
    // An unreachable IMS.
    let r = diagnose(
        &with(&|a| a.url = "https://elsewhere.test".into(), None),
        "prod",
        &groups,
    )
    .await;
    assert_eq!(failing(&r), vec!["issuer"]);
    // A callback the client does not have, scopes it may not ask for, another context.
    let r = diagnose(
        &with(
            &|a| {
                a.callback_url = "http://127.0.0.1:2/console/ims/callback".into();
                a.scopes.push("user_management_sdk".into());
                a.product_context = "another_product".into();
            },
            None,
        ),
        "prod",
        &groups,
    )
    .await;
    assert_eq!(
        failing(&r),
        vec!["product_context", "callback", "scopes", "mask"],
        "{r:?}"
    );
    assert!(r.checks[5].detail.contains("user_management_sdk"));
    // The client registration endpoint: its own credentials only.
    let (status, headers, _) = h
        .call(Request::get("/ims/client/v1").body(Body::empty()).unwrap())
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(headers.contains_key("www-authenticate"));
    let machine = h.credential(&["openid"]).await;
    let (status, _, body) = h
        .call(
            Request::get("/ims/client/v1?product_context=dma_campaign_classic")
                .header(
                    "authorization",
                    basic(&machine.client.client_id, machine.secret.expose()),
                )
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        body.get("product_profiles").is_none(),
        "a technical account reads no profiles: {body}"
    );
    // The console page: administrators only, with the checklist and the warning.
    profile(&h, "campaign - prod - deliveryOperators", &[]).await;
    let jane = h.person("jane@acme.test").await;
    membership(&h, &jane.user_id, "campaign - prod - Administrator", true).await;
    let mut b = Browser::default();
    connect_with_ims(&h, &c, &mut b, "jane@acme.test").await;
    let (status, _, html) = b.get(&c.app, "/console/ims").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        html.contains("id=\"checklist\"") && !html.contains("<strong>Fail</strong>"),
        "{html}"
    );
    assert!(
        html.contains("Control Panel") && html.contains(&c.client_id),
        "{html}"
    );
    membership(&h, &jane.user_id, "campaign - prod - Administrator", false).await;
    membership(&h, &jane.user_id, "campaign - prod - deliveryOperators", true).await;
    let mut b = Browser::default();
    connect_with_ims(&h, &c, &mut b, "jane@acme.test").await;
    let (status, _, _) = b.get(&c.app, "/console/ims").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn signing_out_at_the_ims_ends_the_instance_session() {
    let h = harness().await;
    let (c, _) = with_an_administrator(&h).await;
    let mut b = Browser::default();
    connect_with_ims(&h, &c, &mut b, "jane@acme.test").await;
    home(&c, &mut b).await;
    // Another person's instance session is not touched.
    let kim = h.person("kim@acme.test").await;
    membership(&h, &kim.user_id, "campaign - prod - Administrator", true).await;
    let mut kb = Browser::default();
    connect_with_ims(&h, &c, &mut kb, "kim@acme.test").await;
    // Jane signs out at the IMS (its confirmation form).
    let (_, _, html) = b.get(&h.app, "/ims/logout/v1").await;
    let (status, _, _) = b
        .post(&h.app, "/ims/logout/v1", &[("csrf", &csrf_in(&html))])
        .await;
    assert!(status.is_redirection() || status == StatusCode::OK, "{status}");
    let (status, headers, _) = b.get(&c.app, "/console/").await;
    assert_eq!(
        (status, location(&headers)),
        (StatusCode::SEE_OTHER, "/console/login".into()),
        "the instance session ended with it"
    );
    home(&c, &mut kb).await;
    let told = h.audit("user.sign_out").await;
    assert_eq!(
        told[0].details["clients_told"],
        json!({c.client_id.clone(): "delivered"})
    );
    let ended = audit(&c.store, "operator.ims_logout").await;
    assert_eq!(
        (
            ended[0].target.as_str(),
            ended[0].details["sessions_ended"].as_u64()
        ),
        ("jane@acme.test", Some(1))
    );
    // What is not a logout token for this instance is refused, and ends nothing: among
    // them this very client's ID token (right issuer, audience and signature).
    let machine = h.credential(&["openid"]).await;
    let access_token = h.token(&machine, "openid").await;
    let mut kb2 = kb.clone();
    let (_, headers, _) = kb2.get(&c.app, "/console/ims/login").await;
    let (_, headers, _) = kb2
        .get(&h.app, location(&headers).strip_prefix(ISSUER).unwrap())
        .await;
    let code = query_of(&location(&headers))["code"].clone();
    let flow = kb2
        .cookies
        .iter()
        .find(|(k, _)| k == "ims_console_flow")
        .unwrap()
        .1
        .clone();
    let verifier = flow.split('.').nth(2).unwrap().to_owned();
    let conn = c.inst.connection().unwrap();
    let (status, _, tokens) = h
        .call(
            Request::post("/ims/token/v3")
                .header("content-type", "application/x-www-form-urlencoded")
                .header("authorization", basic(&conn.client_id, conn.secret().expose()))
                .body(Body::from(encode(&[
                    ("grant_type", "authorization_code"),
                    ("code", &code),
                    ("redirect_uri", CALLBACK),
                    ("code_verifier", &verifier),
                ])))
                .unwrap(),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    let id_token = tokens["id_token"].as_str().unwrap().to_owned();
    for token in ["", "garbage", access_token.as_str(), id_token.as_str()] {
        let resp = c
            .app
            .clone()
            .oneshot(
                Request::post("/console/ims/backchannel-logout")
                    .header("content-type", "application/x-www-form-urlencoded")
                    .body(Body::from(encode(&[("logout_token", token)])))
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{token:.10}");
        assert_eq!(resp.headers()["cache-control"], "no-store");
    }
    home(&c, &mut kb).await;
}

/// An IMS that says emails are not verified: its tokens re-signed with a key of its own
/// (which it publishes) with `email_verified: false`, the real IMS behind it.
struct UnverifiedEmails {
    inner: InProcessIms,
    ring: ims_core::keys::KeyRing,
    /// Re-signed access token -> the real one (for the profile endpoint).
    originals: std::sync::Mutex<std::collections::HashMap<String, String>>,
}

impl UnverifiedEmails {
    fn new(app: Router) -> Self {
        let master = MasterKey::generate();
        let now = Now::system();
        let key = ims_core::keys::generate(Algorithm::RS256, &master, now, now).unwrap();
        UnverifiedEmails {
            inner: InProcessIms(app),
            ring: ims_core::keys::KeyRing::load(vec![key], &master, None).unwrap(),
            originals: Default::default(),
        }
    }

    fn resign(&self, token: &str, change: impl Fn(&mut Value)) -> String {
        let mut claims = claims(token);
        change(&mut claims);
        let signer = self.ring.signer(Algorithm::RS256, Now::system()).unwrap();
        ims_core::jose::sign(&claims, signer).unwrap()
    }
}

#[async_trait::async_trait]
impl ImsHttp for UnverifiedEmails {
    async fn get(&self, url: &str, bearer: Option<&str>) -> Result<(u16, Value), String> {
        if url.ends_with("/ims/keys") {
            return Ok((200, self.ring.jwks(Now::system(), 3600)));
        }
        let real = bearer.map(|b| {
            self.originals
                .lock()
                .unwrap()
                .get(b)
                .cloned()
                .unwrap_or_else(|| b.to_owned())
        });
        self.inner.get(url, real.as_deref()).await
    }

    async fn get_basic(&self, url: &str, id: &str, secret: &str) -> Result<(u16, Value), String> {
        self.inner.get_basic(url, id, secret).await
    }

    async fn post_form(
        &self,
        url: &str,
        basic_auth: Option<(&str, &str)>,
        pairs: &[(&str, &str)],
    ) -> Result<(u16, Value), String> {
        let (status, mut body) = self.inner.post_form(url, basic_auth, pairs).await?;
        if status == 200 && url.ends_with("/ims/token/v3") {
            let id = body["id_token"].as_str().unwrap().to_owned();
            let access = body["access_token"].as_str().unwrap().to_owned();
            body["id_token"] = json!(self.resign(&id, |c| c["email_verified"] = json!(false)));
            let resigned = self.resign(&access, |_| {});
            self.originals.lock().unwrap().insert(resigned.clone(), access);
            body["access_token"] = json!(resigned);
        }
        Ok((status, body))
    }
}

#[tokio::test]
async fn an_unverified_email_never_links_an_operator() {
    let h = harness().await;
    let http = Arc::new(UnverifiedEmails::new(h.app.clone()));
    let c = connected_via(&h, Db::Sqlite, InstanceKind::Marketing, 60, http)
        .await
        .unwrap();
    profile(&h, "campaign - prod - deliveryOperators", &[]).await;
    let store = Arc::clone(&c.store);
    let ctx = Context::new(Now::system(), "test");
    let waiting = ims_campaign::model::Operator {
        auth_type: AuthType::Ims,
        ..ims_campaign::model::Operator::native(
            "ann",
            Some("Ann@Acme.test".into()),
            vec![],
            None,
            Now::system(),
        )
    };
    let ann_id = store
        .create_operator(
            &waiting,
            &ctx.event("operator.create", "ann", "success", json!({})),
        )
        .await
        .unwrap();
    for email in ["ann@acme.test", "new@acme.test"] {
        let u = h.person(email).await;
        membership(&h, &u.user_id, "campaign - prod - deliveryOperators", true).await;
    }
    let (status, _, html) = connect_with_ims(&h, &c, &mut Browser::default(), "ann@acme.test").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(html.contains("does not mark it verified"), "{html}");
    let ann = store.operator(ann_id).await.unwrap().unwrap();
    assert_eq!(
        (ann.ims_id, ann.groups.len()),
        (None, 0),
        "not linked, nothing granted"
    );
    // Someone whose email no operator uses still gets an operator of their own.
    let (status, _, _) = connect_with_ims(&h, &c, &mut Browser::default(), "new@acme.test").await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    // ... named by the identity, not by an email nobody vouched for.
    assert!(store.operator_by_login("new@acme.test").await.unwrap().is_none());
    let created = store.operators_page(Some("AdobeID"), 0, 10).await.unwrap().0;
    let new = created
        .iter()
        .find(|o| o.auth_type == AuthType::Ims)
        .expect("created");
    assert_eq!(new.email, None);
}
