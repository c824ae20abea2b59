//! The instance's IMS restrictions: switched on reload, fixed from 8.6, shown in the console and
//! verified by the probes.

use axum::Router;
use http::StatusCode;
use ims_campaign::config::ImsSwitches;
use ims_campaign::restrictions::RESTRICTED_CODE;
use ims_campaign::service::{Instance, InstanceKind};
use ims_core::audit::Context;
use ims_core::secret::Secret;
use ims_core::Now;
use ims_http::instance::soap::{router, InstanceState};
use ims_identity::store::AuditQuery;
use std::sync::Arc;

use crate::harness::*;

fn switches(ui: bool, api: bool) -> ImsSwitches {
    ImsSwitches {
        operator_management_restricted: ui,
        native_api_disabled: api,
        allow_list: vec!["admin".into(), "svc-a|svc-b".into()],
    }
}

/// An instance on `db` that trusts the harness's IMS, with jdoe (native, no rights to
/// manage), `admin` (native, ADMINISTRATION, allow-listed) and `svc-b` (native, allow-listed
/// through a `|` entry).
async fn restricted(
    h: &Harness,
    db: Db,
    build: &str,
) -> Option<(Router, Arc<Instance>, Store, tempfile::TempDir, Cleanup)> {
    let (inst, store, dir, cleanup) = instance_on(db, build, InstanceKind::Marketing).await?;
    let issuer =
        ims_campaign::bearer::TrustedIssuer::new(ISSUER, Arc::new(ImsKeys(Arc::clone(&h.state.ims))));
    let inst = Arc::new(inst.with_bearer(Arc::new(issuer)));
    add_like_jdoe(&store, "admin", &["admin"]).await;
    add_like_jdoe(&store, "svc-b", &[]).await;
    let app = router(InstanceState {
        instance: Arc::clone(&inst),
        tls: false,
    });
    Some((app, inst, store, dir, cleanup))
}

async fn logon(app: &Router, login: &str) -> (Option<String>, Vec<(&'static str, String)>) {
    let (_, xml) = call(
        app,
        "xtk:session#Logon",
        logon_body(login, OPERATOR_PASSWORD),
        &[],
    )
    .await;
    (
        fault_code(&xml),
        vec![("x-session-token", value(&xml, "pstrSessionToken"))],
    )
}

async fn user_info(app: &Router, headers: &[(&str, String)]) -> Option<String> {
    let body = envelope("GetUserInfo", "xtk:session", "<sessiontoken/>");
    let (_, xml) = call(app, "xtk:session#GetUserInfo", body, headers).await;
    fault_code(&xml)
}

async fn write(app: &Router, session: &[(&str, String)], doc: &str) -> Option<String> {
    let body = envelope(
        "Write",
        "xtk:persist|xtk:session",
        &format!("<sessiontoken/><domDoc>{doc}</domDoc>"),
    );
    let (_, xml) = call(app, "xtk:persist|xtk:session#Write", body, session).await;
    fault_code(&xml)
}

#[tokio::test]
async fn the_switches_take_effect_on_reload_through_the_soap_api() {
    let h = harness().await;
    let c = h.campaign_credential().await;
    let token = h.token(&c, CAMPAIGN_SCOPES).await;
    let bearer = vec![("authorization", format!("Bearer {token}"))];
    for db in [Db::Sqlite, Db::Postgres] {
        let Some((app, inst, store, _dir, cleanup)) = restricted(&h, db, "7.4.1").await else {
            continue;
        };
        let (none, jdoe_session) = logon(&app, "jdoe").await;
        assert_eq!(none, None, "{db:?}: native sign-in works before the lock-down");
        let (_, admin) = logon(&app, "admin").await;
        assert_eq!(user_info(&app, &bearer).await, None, "{db:?}");
        let ta = store
            .operator_by_ims_id(&c.client.technical_account_id)
            .await
            .unwrap()
            .unwrap();

        let ctx = Context::new(Now::system(), "test:reload");
        assert!(inst
            .configuration()
            .apply_switches(&switches(true, true), &ctx)
            .await
            .unwrap());
        assert!(
            !inst
                .configuration()
                .apply_switches(&switches(true, true), &ctx)
                .await
                .unwrap(),
            "the same switches again change nothing"
        );
        let audit = ims_core::audit::AuditStore::audit(
            store.as_ref(),
            &AuditQuery {
                action_prefix: Some("instance.restrictions".into()),
                limit: 10,
            },
        )
        .await
        .unwrap();
        assert_eq!(audit.len(), 1, "{db:?}: one audit line for one change");
        assert_eq!(audit[0].actor, "test:reload");
        assert_eq!(audit[0].details["after"]["native_api_disabled"], true);

        // Native sign-in: refused outside the allow-list, existing sessions end with it.
        assert_eq!(
            logon(&app, "jdoe").await.0.as_deref(),
            Some("XSV-350024"),
            "{db:?}"
        );
        assert_eq!(
            user_info(&app, &jdoe_session).await.as_deref(),
            Some("XSV-350008"),
            "{db:?}: jdoe's native session stopped working"
        );
        assert_eq!(
            logon(&app, "admin").await.0,
            None,
            "{db:?}: admin is allow-listed"
        );
        assert_eq!(
            logon(&app, "svc-b").await.0,
            None,
            "{db:?}: svc-a|svc-b names svc-b"
        );
        assert_eq!(
            user_info(&app, &admin).await,
            None,
            "{db:?}: admin's session stays"
        );
        assert_eq!(user_info(&app, &bearer).await, None, "{db:?}: bearer unaffected");

        // Native operators: not created, changed or deleted; others still managed.
        let jdoe_before = store.operator_by_login("jdoe").await.unwrap().unwrap();
        for (doc, what) in [
            (
                r#"<operator xtkschema="xtk:operator" _operation="insert" name="newbie" password="first-pass-1"/>"#,
                "create",
            ),
            (
                r#"<operator xtkschema="xtk:operator" _operation="update" name="jdoe" label="Renamed"/>"#,
                "label",
            ),
            (
                r#"<operator xtkschema="xtk:operator" _operation="update" name="jdoe" email="other@example.com"/>"#,
                "email",
            ),
            (
                r#"<operator xtkschema="xtk:operator" _operation="update" name="jdoe" password="another-pass-2"/>"#,
                "password",
            ),
            (
                r#"<operator xtkschema="xtk:operator" _operation="update" name="jdoe" disabled="true"/>"#,
                "disable",
            ),
            (
                r#"<operator xtkschema="xtk:operator" _operation="insertOrUpdate" name="jdoe"><group name="admin"/></operator>"#,
                "groups",
            ),
            (
                r#"<operator xtkschema="xtk:operator" _operation="delete" name="jdoe"/>"#,
                "delete",
            ),
        ] {
            assert_eq!(
                write(&app, &admin, doc).await.as_deref(),
                Some(RESTRICTED_CODE),
                "{db:?}: {what}"
            );
        }
        assert_eq!(
            store.operator_by_login("jdoe").await.unwrap().unwrap(),
            jdoe_before,
            "{db:?}: nothing changed"
        );
        assert!(store.operator_by_login("newbie").await.unwrap().is_none());
        let ta_doc = format!(
            r#"<operator xtkschema="xtk:operator" _operation="update" name="{}"><group name="reportAccess"/></operator>"#,
            ta.login
        );
        assert_eq!(
            write(&app, &admin, &ta_doc).await,
            None,
            "{db:?}: technical accounts are still managed"
        );

        // The management restriction alone leaves native sign-in as it was.
        inst.configuration()
            .apply_switches(&switches(true, false), &ctx)
            .await
            .unwrap();
        assert_eq!(logon(&app, "jdoe").await.0, None, "{db:?}");
        let create = r#"<operator xtkschema="xtk:operator" _operation="insert" name="newbie" password="first-pass-1"/>"#;
        assert_eq!(
            write(&app, &admin, create).await.as_deref(),
            Some(RESTRICTED_CODE)
        );
        // Both off: everything is back.
        inst.configuration()
            .apply_switches(&switches(false, false), &ctx)
            .await
            .unwrap();
        assert_eq!(write(&app, &admin, create).await, None, "{db:?}");
        finish(cleanup).await;
    }
}

#[tokio::test]
async fn builds_from_8_6_keep_both_restrictions_on_whatever_the_file_says() {
    let h = harness().await;
    for db in [Db::Sqlite, Db::Postgres] {
        let Some((app, inst, _store, _dir, cleanup)) = restricted(&h, db, "8.6.0").await else {
            continue;
        };
        let r = inst.restrictions();
        assert!(r.forced_by_build && r.operator_management && r.native_api);
        assert_eq!(
            logon(&app, "jdoe").await.0.as_deref(),
            Some("XSV-350024"),
            "{db:?}"
        );
        let (ok, admin) = logon(&app, "admin").await;
        assert_eq!(ok, None, "{db:?}: the default allow-list holds admin");
        let doc = r#"<operator xtkschema="xtk:operator" _operation="update" name="jdoe" label="x"/>"#;
        assert_eq!(write(&app, &admin, doc).await.as_deref(), Some(RESTRICTED_CODE));
        // An allow-list in the file still applies.
        let ctx = Context::new(Now::system(), "test");
        inst.configuration()
            .apply_switches(&switches(false, false), &ctx)
            .await
            .unwrap();
        assert!(inst.restrictions().native_api, "{db:?}: still forced");
        assert_eq!(logon(&app, "svc-b").await.0, None, "{db:?}");
        assert_eq!(logon(&app, "jdoe").await.0.as_deref(), Some("XSV-350024"));
        finish(cleanup).await;
    }
}

#[tokio::test]
async fn the_console_shows_the_restrictions_and_refuses_what_they_block() {
    let h = harness().await;
    for db in [Db::Sqlite, Db::Postgres] {
        let Some((app, inst, store, _dir, cleanup)) = restricted(&h, db, "7.4.1").await else {
            continue;
        };
        let (_, headers, _) = console_sign_in(&app, "admin", OPERATOR_PASSWORD).await;
        let cookie = format!(
            "ims_console={}",
            cookie_value(set_cookie(&headers, "ims_console").unwrap())
        );
        let jdoe = store.operator_by_login("jdoe").await.unwrap().unwrap();
        let (_, _, html) = page(
            &app,
            "GET",
            &format!("/console/operators/{}", jdoe.id),
            &cookie,
            &[],
        )
        .await;
        assert!(!html.contains("id=\"restricted\""), "{db:?}: unrestricted form");
        let csrf = csrf_in(&html);

        let ctx = Context::new(Now::system(), "test");
        inst.configuration()
            .apply_switches(&switches(true, true), &ctx)
            .await
            .unwrap();
        let (status, _, html) = page(&app, "GET", "/console/operators", &cookie, &[]).await;
        assert_eq!(status, StatusCode::OK);
        assert!(
                html.contains(r#"<button type="button" disabled aria-describedby="creation-restricted">New operator</button>"#),
                "{db:?}: {html}"
            );
        assert!(!html.contains("href=\"/console/operators/new\""));
        assert!(
            html.contains(&format!("href=\"{ISSUER}/admin/\"")),
            "a link to the Admin Console"
        );
        let (_, _, html) = page(
            &app,
            "GET",
            &format!("/console/operators/{}", jdoe.id),
            &cookie,
            &[],
        )
        .await;
        assert!(html.contains("id=\"restricted\""), "{html}");
        assert!(html.contains("<fieldset disabled aria-describedby=\"restricted\">"));
        assert!(
            html.contains(r#"<button type="submit" disabled aria-describedby="restricted">Save</button>"#)
        );
        assert!(html.contains(r#"disabled aria-describedby="restricted">Delete operator jdoe</button>"#));
        // A form sent anyway is refused, and nothing changes.
        let (status, _, html) = page(
            &app,
            "POST",
            &format!("/console/operators/{}", jdoe.id),
            &cookie,
            &[
                ("csrf", &csrf),
                ("login", "jdoe"),
                ("label", "Renamed"),
                ("email", ""),
            ],
        )
        .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{db:?}: {html}");
        assert!(html.contains("Restricted"));
        let (status, _, _) = page(
            &app,
            "POST",
            &format!("/console/operators/{}/delete", jdoe.id),
            &cookie,
            &[("csrf", &csrf)],
        )
        .await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        let (status, _, _) = page(
            &app,
            "POST",
            "/console/operators",
            &cookie,
            &[("csrf", &csrf), ("login", "newbie"), ("password", "first-pass-1")],
        )
        .await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert_eq!(store.operator_by_login("jdoe").await.unwrap().unwrap(), jdoe);
        assert!(store.operator_by_login("newbie").await.unwrap().is_none());
        // The state, the allow-list and what is blocked.
        let (_, _, html) = page(&app, "GET", "/console/restrictions", &cookie, &[]).await;
        assert!(
            html.contains(r#"<td id="operator-management">On</td>"#)
                && html.contains(r#"<td id="native-api">On</td>"#),
            "{html}"
        );
        assert!(html.contains("<code>svc-a|svc-b</code>") && !html.contains("id=\"forced\""));
        // jdoe may no longer sign in to the console either.
        let (status, _, _) = console_sign_in(&app, "jdoe", OPERATOR_PASSWORD).await;
        assert_ne!(status, StatusCode::SEE_OTHER, "{db:?}");
        finish(cleanup).await;
    }
    // On 8.6 the console says the build keeps the restrictions on.
    let (app, _inst, _store, _dir, _) = restricted(&h, Db::Sqlite, "8.6.0").await.unwrap();
    let (_, headers, _) = console_sign_in(&app, "admin", OPERATOR_PASSWORD).await;
    let cookie = format!(
        "ims_console={}",
        cookie_value(set_cookie(&headers, "ims_console").unwrap())
    );
    let (_, _, html) = page(&app, "GET", "/console/restrictions", &cookie, &[]).await;
    assert!(
        html.contains("id=\"forced\"") && html.contains("Build 8.6.0 keeps both restrictions on"),
        "{html}"
    );
}

#[tokio::test]
async fn verification_probes_pass_when_locked_fail_when_open_and_change_nothing() {
    let h = harness().await;
    let c = h.campaign_credential().await;
    for db in [Db::Sqlite, Db::Postgres] {
        let Some((_app, _inst, store, _dir, cleanup)) = restricted(&h, db, "7.4.1").await else {
            continue;
        };
        let count = store.operator_count().await.unwrap();
        let audit_len = || async {
            ims_core::audit::AuditStore::audit(
                store.as_ref(),
                &AuditQuery {
                    action_prefix: None,
                    limit: 1000,
                },
            )
            .await
            .unwrap()
            .len()
        };
        let audited = audit_len().await;
        let token = h.token(&c, CAMPAIGN_SCOPES).await;
        let run = |on: bool| {
            let store = Arc::clone(&store);
            let token = Secret::new(token.clone());
            let ims = Arc::clone(&h.state.ims);
            async move {
                let issuer = ims_campaign::bearer::TrustedIssuer::new(ISSUER, Arc::new(ImsKeys(ims)));
                ims_campaign::probe::verify(
                    store,
                    ims_campaign::probe::ProbeInput {
                        info: ims_campaign::service::InstanceInfo::new(
                            "prod",
                            InstanceKind::Marketing,
                            "7.4.1".parse().unwrap(),
                        ),
                        switches: switches(on, on),
                        bearer: Some((Arc::new(issuer), token)),
                    },
                )
                .await
            }
        };
        let locked = run(true).await;
        assert!(locked.iter().all(|r| r.passed), "{db:?}: {locked:#?}");
        assert_eq!(locked.len(), 7);
        let open = run(false).await;
        let failed: Vec<&str> = open
            .iter()
            .filter(|r| !r.passed)
            .map(|r| r.probe.as_str())
            .collect();
        assert_eq!(
            failed.len(),
            5,
            "{db:?}: every restriction probe fails on an open instance: {open:#?}"
        );
        assert_eq!(
            store.operator_count().await.unwrap(),
            count,
            "{db:?}: no operator created"
        );
        assert!(
            store
                .operator_by_ims_id(&c.client.technical_account_id)
                .await
                .unwrap()
                .is_none(),
            "{db:?}: the bearer probe created no operator"
        );
        assert_eq!(
            audit_len().await,
            audited,
            "{db:?}: nothing audited, nothing written"
        );
        let admin = store.operator_by_login("admin").await.unwrap().unwrap();
        assert!(
            ims_core::password::verify(
                &Secret::new(OPERATOR_PASSWORD),
                admin.password_hash.as_deref().unwrap()
            )
            .await
            .unwrap(),
            "admin's password is untouched"
        );
        finish(cleanup).await;
    }
}
