//! Operators written through the SOAP API and the instance's console.

use axum::Router;
use http::StatusCode;
use ims_campaign::model::{AuthType, Operator};
use ims_campaign::store::InstanceStore;
use ims_core::Now;
use ims_http::instance::soap::{router, InstanceState};
use ims_wire::rights::DEFAULT_GROUPS;
use serde_json::json;
use std::sync::Arc;

use crate::harness::*;

#[tokio::test]
async fn operators_are_written_through_the_api_by_administrators_only() {
    let (inst, store, _dir) = instance_with("7.4.1").await;
    let mut boss = store.operator_by_login("jdoe").await.unwrap().unwrap();
    boss.login = "boss".into();
    boss.groups = vec!["admin".into()];
    let ctx = ims_core::audit::Context::new(Now::system(), "test");
    let boss_id = store
        .create_operator(&boss, &ctx.event("operator.create", "boss", "success", json!({})))
        .await
        .unwrap();
    let app = router(InstanceState {
        instance: Arc::new(inst),
        tls: false,
    });
    let (_, boss_s) = logon_as(&app, "boss", OPERATOR_PASSWORD).await;
    let (_, jdoe_s) = logon_as(&app, "jdoe", OPERATOR_PASSWORD).await;
    let (created, newbie_s) = an_administrator_creates_an_operator(&app, &store, &jdoe_s, &boss_s).await;
    let changed =
        disabled_then_enabled_with_a_new_password(&app, &store, &boss_s, &newbie_s, created.id).await;
    refused_changes_leave_it_as_it_was(&app, &store, &boss_s, &changed, boss_id).await;
    // groups are queryable by administrators.
    let (_, xml) = call(
        &app,
        "xtk:queryDef#ExecuteQuery",
        query(r#"<queryDef schema="xtk:group" operation="count"/>"#),
        &boss_s,
    )
    .await;
    assert_eq!(
        output(&xml).attr("count"),
        Some(DEFAULT_GROUPS.len().to_string().as_str())
    );
    deleted_with_its_usage_evidence_kept(&app, &store, &boss_s).await;
}

/// The header that carries an operator's session.
type Session = [(&'static str, String)];

/// Signs in with `password`: the fault, if any, and the header that carries the session.
async fn logon_as(
    app: &Router,
    login: &str,
    password: &str,
) -> (Option<String>, Vec<(&'static str, String)>) {
    let (_, xml) = call(app, "xtk:session#Logon", logon_body(login, password), &[]).await;
    (
        fault_code(&xml),
        vec![("x-session-token", value(&xml, "pstrSessionToken"))],
    )
}

/// Writes `doc` with the session in `s`: the fault, if any.
async fn write_as(app: &Router, doc: String, s: &[(&str, String)]) -> Option<String> {
    let body = envelope(
        "Write",
        "xtk:persist|xtk:session",
        &format!("<sessiontoken/><domDoc>{doc}</domDoc>"),
    );
    let (_, xml) = call(app, "xtk:persist|xtk:session#Write", body, s).await;
    fault_code(&xml)
}

/// An operator created by an administrator (`boss_s`), not by jdoe (`jdoe_s`), stored as
/// written; it signs in. The operator and its session.
async fn an_administrator_creates_an_operator(
    app: &Router,
    store: &Arc<dyn InstanceStore>,
    jdoe_s: &Session,
    boss_s: &Session,
) -> (Operator, Vec<(&'static str, String)>) {
    let newbie = r#"<operator xtkschema="xtk:operator" _operation="insert" name="newbie" label="New Bie" email="New@Example.com" password="first-pass-1"><group name="reportAccess"/><right name="export"/></operator>"#;
    assert_eq!(
        write_as(app, newbie.into(), jdoe_s).await.as_deref(),
        Some("XSV-350122"),
        "jdoe holds no ADMINISTRATION"
    );
    assert_eq!(write_as(app, newbie.into(), boss_s).await, None);
    assert_eq!(
        write_as(app, newbie.into(), boss_s).await.as_deref(),
        Some("SOP-330011"),
        "insert of an existing name"
    );
    let created = store.operator_by_login("newbie").await.unwrap().unwrap();
    assert_eq!(created.label, "New Bie");
    assert_eq!(
        created.email.as_deref(),
        Some("New@Example.com"),
        "stored as entered"
    );
    assert_eq!(created.groups, vec!["reportAccess"]);
    assert_eq!(created.rights, vec!["export"]);
    assert_eq!(created.auth_type, AuthType::Native);
    assert!(created
        .password_hash
        .as_deref()
        .is_some_and(|h| h.starts_with("$argon2id$")));
    let (fault, newbie_s) = logon_as(app, "newbie", "first-pass-1").await;
    assert_eq!(fault, None);
    (created, newbie_s)
}

/// Disabling ends its sessions (`newbie_s`) and refuses sign-in; enabled again with a new
/// password (by `id`), its groups are replaced and rights emptied. The operator then.
async fn disabled_then_enabled_with_a_new_password(
    app: &Router,
    store: &Arc<dyn InstanceStore>,
    boss_s: &Session,
    newbie_s: &Session,
    id: i64,
) -> Operator {
    let disable = r#"<operator xtkschema="xtk:operator" _operation="update" name="newbie" disabled="true"/>"#;
    assert_eq!(write_as(app, disable.into(), boss_s).await, None);
    let info = envelope("GetUserInfo", "xtk:session", "<sessiontoken/>");
    let (_, xml) = call(app, "xtk:session#GetUserInfo", info.clone(), newbie_s).await;
    assert_eq!(fault_code(&xml).as_deref(), Some("XSV-350008"), "{xml}");
    assert_eq!(
        logon_as(app, "newbie", "first-pass-1").await.0.as_deref(),
        Some("XSV-350024")
    );
    // Enable again with a new password (by id); groups replaced, rights emptied.
    let change = format!(
        r#"<operator xtkschema="xtk:operator" _key="@id" id="{id}" disabled="false" password="second-pass-2"><group name="campaignManagers"/><rights/></operator>"#
    );
    assert_eq!(write_as(app, change, boss_s).await, None);
    assert_eq!(
        logon_as(app, "newbie", "first-pass-1").await.0.as_deref(),
        Some("XSV-350024")
    );
    assert_eq!(logon_as(app, "newbie", "second-pass-2").await.0, None);
    let changed = store.operator_by_login("newbie").await.unwrap().unwrap();
    assert_eq!(changed.groups, vec!["campaignManagers"]);
    assert!(changed.rights.is_empty());
    assert_eq!(changed.label, "New Bie", "fields not named stay");
    changed
}

/// Refused changes leave the operator (as `changed`) as it was.
async fn refused_changes_leave_it_as_it_was(
    app: &Router,
    store: &Arc<dyn InstanceStore>,
    boss_s: &Session,
    changed: &Operator,
    boss_id: i64,
) {
    let id = changed.id;
    for (bad, code) in [
        (
            r#"<operator xtkschema="xtk:operator" name="newbie"><group name="nope"/></operator>"#.to_owned(),
            "SOP-330011",
        ),
        (
            r#"<operator xtkschema="xtk:operator" name="newbie"><right name="godMode"/></operator>"#
                .to_owned(),
            "SOP-330011",
        ),
        (
            format!(r#"<operator xtkschema="xtk:operator" _key="@id" id="{id}" name="jdoe"/>"#),
            "SOP-330011",
        ),
        (
            r#"<operator xtkschema="xtk:operator" name="newbie" email="not an email"/>"#.to_owned(),
            "SOP-330011",
        ),
        (
            r#"<operator xtkschema="xtk:operator" name="newbie" password="short"/>"#.to_owned(),
            "SOP-330011",
        ),
        (
            r#"<operator xtkschema="xtk:operator" _operation="update" name="ghost" label="x"/>"#.to_owned(),
            "XSV-350123",
        ),
        (
            format!(r#"<operator xtkschema="xtk:operator" _operation="delete" _key="@id" id="{boss_id}"/>"#),
            "XSV-350122",
        ),
    ] {
        assert_eq!(
            write_as(app, bad.clone(), boss_s).await.as_deref(),
            Some(code),
            "{bad}"
        );
    }
    assert_eq!(
        store.operator_by_login("newbie").await.unwrap().unwrap(),
        *changed
    );
}

/// Delete: sign-in refused, the operator gone, its usage evidence kept; the audit log has each
/// change by the administrator and no password.
async fn deleted_with_its_usage_evidence_kept(
    app: &Router,
    store: &Arc<dyn InstanceStore>,
    boss_s: &Session,
) {
    let delete = r#"<operator xtkschema="xtk:operator" _operation="delete" name="newbie"/>"#;
    assert_eq!(write_as(app, delete.into(), boss_s).await, None);
    assert!(store.operator_by_login("newbie").await.unwrap().is_none());
    assert_eq!(
        logon_as(app, "newbie", "second-pass-2").await.0.as_deref(),
        Some("XSV-350024")
    );
    assert!(!store.usage(Some("newbie"), 10).await.unwrap().is_empty());
    let audit = store
        .audit(&ims_core::audit::AuditQuery {
            action_prefix: Some("operator.".into()),
            limit: 50,
        })
        .await
        .unwrap();
    let by_boss: Vec<&str> = audit
        .iter()
        .filter(|e| e.actor == "operator:boss" && e.target == "newbie")
        .map(|e| e.action.as_str())
        .collect();
    assert_eq!(by_boss.len(), 4, "{by_boss:?}");
    for action in ["operator.create", "operator.update", "operator.delete"] {
        assert!(by_boss.contains(&action), "{action} audited: {by_boss:?}");
    }
    assert!(
        !audit.iter().any(|e| e.details.to_string().contains("pass-")),
        "no password in the audit log"
    );
}

#[tokio::test]
async fn the_console_signs_operators_in_and_lets_administrators_manage_operators() {
    let (inst, store, _dir) = instance_with("7.4.1").await;
    let ctx = ims_core::audit::Context::new(Now::system(), "test");
    let mut boss = store.operator_by_login("jdoe").await.unwrap().unwrap();
    boss.login = "boss".into();
    boss.label = "Boss".into();
    boss.email = Some("boss@example.com".into());
    boss.groups = vec!["admin".into()];
    store
        .create_operator(&boss, &ctx.event("operator.create", "boss", "success", json!({})))
        .await
        .unwrap();
    let mut api_only = boss.clone();
    api_only.login = "api-only".into();
    api_only.email = None;
    api_only.forbid_rich_client = true;
    store
        .create_operator(
            &api_only,
            &ctx.event("operator.create", "api-only", "success", json!({})),
        )
        .await
        .unwrap();
    let app = router(InstanceState {
        instance: Arc::new(inst),
        tls: false,
    });
    the_sign_in_page_and_what_it_refuses(&app).await;
    let (boss_c, csrf) = the_administrator_signs_in_and_lists_operators(&app).await;
    let web1 = an_operator_created_through_the_form(&app, &store, &boss_c, &csrf).await;
    an_operator_edited_disabled_and_deleted(&app, &store, &boss_c, &csrf, &web1).await;
    an_operator_without_administration_has_a_home_page_only(&app, &store).await;
    the_cookie_is_no_soap_credential_and_signing_out_ends_it(&app, &store, &boss_c, &csrf).await;
}

/// Not signed in: to the sign-in page, which is hardened and asks for a double-submit token;
/// forged, wrong and rich-client sign-ins are refused.
async fn the_sign_in_page_and_what_it_refuses(app: &Router) {
    // Not signed in: to the sign-in page.
    let (status, headers, _) = page(app, "GET", "/console/operators", "", &[]).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(headers["location"], "/console/login");
    // The sign-in page: hardened headers, a double-submit token.
    let (status, headers, html) = page(app, "GET", "/console/login", "", &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert!(headers["content-security-policy"]
        .to_str()
        .unwrap()
        .contains("frame-ancestors 'none'"));
    assert_eq!(headers["referrer-policy"], "no-referrer");
    assert_eq!(headers["cache-control"], "no-store");
    let pre = set_cookie(&headers, "ims_console_login").unwrap();
    assert!(
        pre.contains("HttpOnly") && pre.contains("SameSite=Lax") && pre.contains("Path=/console"),
        "{pre}"
    );
    assert_eq!(csrf_in(&html), cookie_value(pre));
    // A forged sign-in (no matching token) is refused before any password check.
    let (status, headers, _) = page(
        app,
        "POST",
        "/console/login",
        "ims_console_login=abc",
        &[
            ("csrf", "xyz"),
            ("login", "boss"),
            ("password", OPERATOR_PASSWORD),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(set_cookie(&headers, "ims_console").is_none());
    let (status, _, html) = console_sign_in(app, "boss", "wrong password").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(html.contains("Invalid login or password"), "{html}");
    // Rich-client access forbidden: no console, though the API still signs it in.
    let (status, headers, html) = console_sign_in(app, "api-only", OPERATOR_PASSWORD).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{html}");
    assert!(html.contains("rich-client access is forbidden"));
    assert!(set_cookie(&headers, "ims_console").is_none());
    let (_, xml) = call(
        app,
        "xtk:session#Logon",
        logon_body("api-only", OPERATOR_PASSWORD),
        &[],
    )
    .await;
    assert_eq!(fault_code(&xml), None, "{xml}");
}

/// The administrator signs in and lists the operators, searching them. The console cookie and
/// a page's CSRF token.
async fn the_administrator_signs_in_and_lists_operators(app: &Router) -> (String, String) {
    let (status, headers, _) = console_sign_in(app, "boss", OPERATOR_PASSWORD).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(headers["location"], "/console/");
    let line = set_cookie(&headers, "ims_console").unwrap();
    assert!(
        line.contains("HttpOnly") && line.contains("SameSite=Lax"),
        "{line}"
    );
    let boss_c = format!("ims_console={}", cookie_value(line));
    let (status, _, html) = page(app, "GET", "/console/operators", &boss_c, &[]).await;
    assert_eq!(status, StatusCode::OK);
    for column in [
        "Authentication Type",
        "Account Disabled",
        ">boss</a>",
        ">jdoe</a>",
        ">Native<",
    ] {
        assert!(html.contains(column), "{column} in {html}");
    }
    let csrf = csrf_in(&html);
    // Search narrows the list.
    let (_, _, html) = page(app, "GET", "/console/operators?q=JDO", &boss_c, &[]).await;
    assert!(
        html.contains(">jdoe</a>") && !html.contains(">boss</a>"),
        "{html}"
    );
    (boss_c, csrf)
}

/// Created through the form (not without its token); markup in a label is shown, never run.
async fn an_operator_created_through_the_form(
    app: &Router,
    store: &Arc<dyn InstanceStore>,
    boss_c: &str,
    csrf: &str,
) -> Operator {
    let form = [
        ("csrf", csrf),
        ("login", "web1"),
        ("label", "<script>alert(1)</script>"),
        ("email", "web1@example.com"),
        ("password", "web-pass-1"),
        ("group", "reportAccess"),
        ("right", "export"),
    ];
    let (status, _, _) = page(app, "POST", "/console/operators", boss_c, &form[1..]).await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "a form without its token changes nothing"
    );
    assert!(store.operator_by_login("web1").await.unwrap().is_none());
    let (status, headers, html) = page(app, "POST", "/console/operators", boss_c, &form).await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{html}");
    let web1 = store.operator_by_login("web1").await.unwrap().unwrap();
    assert_eq!(
        headers["location"],
        format!("/console/operators/{}?saved=1", web1.id)
    );
    assert_eq!(
        (web1.groups.as_slice(), web1.rights.as_slice()),
        (&["reportAccess".to_owned()][..], &["export".to_owned()][..])
    );
    let (_, _, html) = page(
        app,
        "GET",
        &format!("/console/operators/{}?saved=1", web1.id),
        boss_c,
        &[],
    )
    .await;
    assert!(
        html.contains("Saved.") && (html.contains("&#60;script&#62;") || html.contains("&lt;script&gt;")),
        "{html}"
    );
    assert!(!html.contains("<script>"), "escaped");
    web1
}

/// A refused change shows the form again with what was typed and why; disabled, its rights
/// are the form's; the groups and named rights pages; then deleted.
async fn an_operator_edited_disabled_and_deleted(
    app: &Router,
    store: &Arc<dyn InstanceStore>,
    boss_c: &str,
    csrf: &str,
    web1: &Operator,
) {
    let edit = |email: &'static str, disabled: bool| {
        let mut f = vec![
            ("csrf", csrf.to_owned()),
            ("login", "web1".into()),
            ("label", "Web One".into()),
            ("email", email.into()),
            ("group", "reportAccess".into()),
        ];
        if disabled {
            f.push(("disabled", "1".into()));
        }
        f
    };
    let path = format!("/console/operators/{}", web1.id);
    let f = edit("not an email", false);
    let pairs: Vec<(&str, &str)> = f.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (status, _, html) = page(app, "POST", &path, boss_c, &pairs).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        html.contains("is not an email address") && html.contains(r#"value="not an email""#),
        "{html}"
    );
    assert_eq!(
        store.operator_by_login("web1").await.unwrap().unwrap().label,
        web1.label
    );
    // Disable it: the list says so; its rights are replaced by the form's.
    let f = edit("web1@example.com", true);
    let pairs: Vec<(&str, &str)> = f.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (status, _, _) = page(app, "POST", &path, boss_c, &pairs).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let changed = store.operator_by_login("web1").await.unwrap().unwrap();
    assert!(changed.disabled && changed.rights.is_empty() && changed.label == "Web One");
    let (_, _, html) = page(app, "GET", "/console/operators?q=web1", boss_c, &[]).await;
    assert!(
        html.contains(r#"<tr class="disabled">"#) && html.contains("<td>Yes</td>"),
        "{html}"
    );
    // Groups and named rights pages.
    let (_, _, html) = page(app, "GET", "/console/groups", boss_c, &[]).await;
    assert!(
        html.contains("deliveryOperators") && html.contains("PREPARE DELIVERIES"),
        "{html}"
    );
    let (_, _, html) = page(app, "GET", "/console/rights", boss_c, &[]).await;
    assert!(
        html.contains("MESSAGE CENTER") && html.contains("messageCenterAgents"),
        "{html}"
    );
    // Delete.
    let (status, headers, _) = page(app, "POST", &format!("{path}/delete"), boss_c, &[("csrf", csrf)]).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(headers["location"], "/console/operators?deleted=web1");
    assert!(store.operator_by_login("web1").await.unwrap().is_none());
    let (status, _, _) = page(app, "GET", &path, boss_c, &[]).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

/// An operator without ADMINISTRATION has a home page and nothing more.
async fn an_operator_without_administration_has_a_home_page_only(
    app: &Router,
    store: &Arc<dyn InstanceStore>,
) {
    let (_, headers, _) = console_sign_in(app, "jdoe", OPERATOR_PASSWORD).await;
    let jdoe_c = format!(
        "ims_console={}",
        cookie_value(set_cookie(&headers, "ims_console").unwrap())
    );
    let (status, _, html) = page(app, "GET", "/console/", &jdoe_c, &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        html.contains("PREPARE DELIVERIES") && !html.contains("/console/operators"),
        "{html}"
    );
    for path in [
        "/console/operators",
        "/console/groups",
        "/console/rights",
        "/console/operators/new",
    ] {
        let (status, _, _) = page(app, "GET", path, &jdoe_c, &[]).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{path}");
    }
    let jdoe_csrf = csrf_in(&page(app, "GET", "/console/", &jdoe_c, &[]).await.2);
    let (status, _, _) = page(
        app,
        "POST",
        "/console/operators",
        &jdoe_c,
        &[
            ("csrf", &jdoe_csrf),
            ("login", "sneaky"),
            ("password", "sneaky-pass"),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(store.operator_by_login("sneaky").await.unwrap().is_none());
}

/// The console cookie is no SOAP credential; sign-ins are recorded as console sign-ins
/// (evidence of a person); signing out ends the session.
async fn the_cookie_is_no_soap_credential_and_signing_out_ends_it(
    app: &Router,
    store: &Arc<dyn InstanceStore>,
    boss_c: &str,
    csrf: &str,
) {
    let (_, xml) = call(
        app,
        "xtk:session#GetUserInfo",
        envelope("GetUserInfo", "xtk:session", "<sessiontoken/>"),
        &[("cookie", boss_c.to_owned())],
    )
    .await;
    assert_eq!(fault_code(&xml).as_deref(), Some("XSV-350008"), "{xml}");
    // Sign-ins are recorded as console sign-ins (evidence of a person).
    let usage = store.usage(Some("boss"), 10).await.unwrap();
    assert!(
        usage
            .iter()
            .any(|u| u.action == "console#Logon" && u.outcome == "success"),
        "{usage:?}"
    );
    // Signing out ends the session.
    let (status, _, _) = page(app, "POST", "/console/logout", boss_c, &[("csrf", csrf)]).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let (status, headers, _) = page(app, "GET", "/console/", boss_c, &[]).await;
    assert_eq!(
        (status, headers["location"].to_str().unwrap()),
        (StatusCode::SEE_OTHER, "/console/login")
    );
}
