//! The instance's migration API and the console pages the migration uses.

use axum::body::Body;
use axum::Router;
use http::{Request, StatusCode};
use ims_campaign::service::InstanceKind;
use ims_core::audit::AuditQuery;
use ims_core::Now;
use ims_http::instance::soap::{router, InstanceState};
use ims_wire::migration::{InstanceFacts, OperatorPage};
use serde_json::{json, Value};
use std::sync::Arc;

use crate::harness::*;

async fn get(
    app: &Router,
    path: &str,
    headers: &[(&'static str, String)],
) -> (StatusCode, http::HeaderMap, Value) {
    let mut b = Request::get(path);
    for (k, v) in headers {
        b = b.header(*k, v);
    }
    send(app, b.body(Body::empty()).unwrap()).await
}

/// An instance on SQLite of `build` and `kind`, its router, and the session of `boss`, an
/// operator holding ADMINISTRATION.
async fn as_boss(
    build: &str,
    kind: InstanceKind,
) -> Option<(Router, Vec<(&'static str, String)>, tempfile::TempDir, Cleanup)> {
    let (inst, store, dir, cleanup) = instance_on(Db::Sqlite, build, kind).await?;
    add_like_jdoe(&store, "boss", &["admin"]).await;
    let app = router(InstanceState {
        instance: Arc::new(inst),
        tls: false,
    });
    let boss = session_of(&app, "boss").await;
    Some((app, boss, dir, cleanup))
}

/// The end-user phase is carried from 7.4.1 (7.x) and 8.5.2: an instance of an earlier build says
/// so in its facts, with the builds that carry it, and the engine refuses to plan it there.
#[tokio::test]
async fn the_facts_say_which_builds_carry_the_end_user_phase() {
    for (build, people) in [
        ("7.3.5", false),
        ("7.4.0", false),
        ("7.4.1", true),
        ("8.5.1", false),
        ("8.5.2", true),
    ] {
        let Some((app, boss, _dir, cleanup)) = as_boss(build, InstanceKind::Marketing).await else {
            continue;
        };
        let (status, _, body) = get(&app, "/nl/migration/v1/instance", &boss).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let facts: InstanceFacts = serde_json::from_value(body).unwrap();
        assert_eq!(facts.accepts_ims_signin, people, "{build}");
        assert_eq!(facts.people_builds, "7.4.1 and later 7.x, 8.5.2 and later");
        finish(cleanup).await;
    }
}

/// Access is copied on marketing instances only: a Message Center instance refuses the request
/// before looking at its operators (a marketing instance looks, and finds none by that name).
#[tokio::test]
async fn access_is_copied_on_marketing_instances_only() {
    for (kind, status, says) in [
        (InstanceKind::Marketing, StatusCode::NOT_FOUND, "no operator"),
        (
            InstanceKind::MessageCenter,
            StatusCode::BAD_REQUEST,
            "marketing instances only",
        ),
    ] {
        let Some((app, boss, _dir, cleanup)) = as_boss("7.4.1", kind).await else {
            continue;
        };
        let mut b = Request::post("/nl/migration/v1/copy-access").header("content-type", "application/json");
        for (k, v) in &boss {
            b = b.header(*k, v);
        }
        let body = json!({"from": "crm-sync", "to": "ta@techacct.adobe.com"}).to_string();
        let (got, _, body) = send(&app, b.body(Body::from(body)).unwrap()).await;
        assert_eq!(got, status, "{kind:?}: {body}");
        assert!(
            body["detail"].as_str().unwrap().contains(says),
            "{kind:?}: {body}"
        );
        finish(cleanup).await;
    }
}

#[tokio::test]
async fn administrators_read_the_instance_and_every_operator_with_its_evidence() {
    for db in [Db::Sqlite, Db::Postgres] {
        let Some((inst, store, _dir, cleanup)) = instance_on(db, "7.4.1", InstanceKind::Marketing).await
        else {
            continue;
        };
        let inst = Arc::new(inst);
        add_like_jdoe(&store, "boss", &["admin"]).await;
        let app = router(InstanceState {
            instance: Arc::clone(&inst),
            tls: false,
        });

        // No credentials, then a signed-in operator without ADMINISTRATION.
        let (status, headers, body) = get(&app, "/nl/migration/v1/operators", &[]).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(headers["content-type"], "application/problem+json");
        assert_eq!(body["code"], "XSV-350008");
        let jdoe = session_of(&app, "jdoe").await;
        for path in ["/nl/migration/v1/instance", "/nl/migration/v1/operators"] {
            let (status, _, body) = get(&app, path, &jdoe).await;
            assert_eq!(status, StatusCode::FORBIDDEN, "{path}");
            assert_eq!(body["code"], "XSV-350122");
        }
        // Rights come before the body: a broken body from someone without the right is a
        // 403, never a 400 that tells how it would have been read.
        for path in [
            "emails",
            "switch",
            "groups",
            "lockdown",
            "ims-account",
            "verify",
            "completion",
            "copy-access",
            "notice",
            "journal",
        ] {
            let method = if ["ims-account", "completion", "notice", "journal"].contains(&path) {
                "PUT"
            } else {
                "POST"
            };
            let mut b = Request::builder()
                .method(method)
                .uri(format!("/nl/migration/v1/{path}"));
            for (k, v) in &jdoe {
                b = b.header(*k, v);
            }
            let (status, _, body) = send(&app, b.body(Body::from("{not json")).unwrap()).await;
            assert_eq!(status, StatusCode::FORBIDDEN, "{path}: {body}");
        }

        let boss = session_of(&app, "boss").await;
        let (status, headers, body) = get(&app, "/nl/migration/v1/instance", &boss).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(headers["cache-control"], "no-store");
        let facts: InstanceFacts = serde_json::from_value(body).unwrap();
        assert_eq!((facts.name.as_str(), facts.build.as_str()), ("prod", "7.4.1"));
        assert!(facts.accepts_bearer_tokens && facts.supports_restrictions);
        assert_eq!(facts.native_auth, "until_switched_off");
        assert!(!facts.restrictions.native_api_disabled);
        assert_eq!(facts.operator_count, 2);
        let admin_group = facts.groups.iter().find(|g| g.name == "admin").unwrap();
        assert_eq!(admin_group.rights, ["admin"]);

        // Page by page, one operator each: jdoe, boss, then nothing more.
        let mut seen = Vec::new();
        let mut after = 0;
        loop {
            let (status, _, body) = get(
                &app,
                &format!("/nl/migration/v1/operators?after={after}&limit=1"),
                &boss,
            )
            .await;
            assert_eq!(status, StatusCode::OK, "{body}");
            let page: OperatorPage = serde_json::from_value(body).unwrap();
            assert!(page.operators.len() <= 1);
            seen.extend(page.operators);
            match page.next_after {
                Some(n) => after = n,
                None => break,
            }
        }
        let logins: Vec<&str> = seen.iter().map(|o| o.login.as_str()).collect();
        assert_eq!(logins, ["jdoe", "boss"]);
        let jdoe_facts = &seen[0];
        assert_eq!(jdoe_facts.auth_type, "native");
        assert_eq!(jdoe_facts.groups, ["deliveryOperators"]);
        assert_eq!(jdoe_facts.email.as_deref(), Some("jdoe@example.com"));
        // jdoe's sign-in and refusals are its evidence; its refused calls too.
        let logon = jdoe_facts
            .usage
            .iter()
            .find(|u| u.action == "xtk:session#Logon" && u.outcome == "success")
            .unwrap();
        assert_eq!((logon.count, logon.auth_path.as_str()), (1, "native"));
        let boss_facts = &seen[1];
        assert!(boss_facts.usage.iter().any(|u| u.action == "xtk:session#Logon"));

        // Bad paging and mixed credentials are refused in the API's shape.
        let (status, _, body) = get(&app, "/nl/migration/v1/operators?limit=lots", &boss).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(body["code"], "SOP-330011");
        let mut both = boss.clone();
        both.push(("authorization", "Bearer x.y.z".into()));
        let (status, _, _) = get(&app, "/nl/migration/v1/instance", &both).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        finish(cleanup).await;
    }
}

async fn post_emails(
    app: &Router,
    query: &str,
    session: &[(&'static str, String)],
    body: Value,
) -> (StatusCode, Value) {
    let mut b =
        Request::post(format!("/nl/migration/v1/emails{query}")).header("content-type", "application/json");
    for (k, v) in session {
        b = b.header(*k, v);
    }
    let (status, _, body) = send(app, b.body(Body::from(body.to_string())).unwrap()).await;
    (status, body)
}

#[tokio::test]
async fn emails_are_checked_whole_against_every_operator_before_any_is_written() {
    for db in [Db::Sqlite, Db::Postgres] {
        let Some((inst, store, _dir, cleanup)) = instance_on(db, "7.4.1", InstanceKind::Marketing).await
        else {
            continue;
        };
        let inst = Arc::new(inst);
        add_like_jdoe(&store, "boss", &["admin"]).await;
        add_like_jdoe(&store, "kim", &[]).await;
        let app = router(InstanceState {
            instance: Arc::clone(&inst),
            tls: false,
        });
        let boss = session_of(&app, "boss").await;
        let email_of = |login: &'static str| {
            let store = Arc::clone(&store);
            async move { store.operator_by_login(login).await.unwrap().unwrap().email }
        };

        let jdoe = session_of(&app, "jdoe").await;
        let (status, _) = post_emails(&app, "", &jdoe, json!({"emails": []})).await;
        assert_eq!(status, StatusCode::FORBIDDEN);

        // Every problem at once, and nothing written: an unknown login, a login named twice,
        // not an address, and an email another operator keeps (in another case).
        let (status, body) = post_emails(
            &app,
            "",
            &boss,
            json!({"emails": [
                {"login": "ghost", "email": "ghost@example.com"},
                {"login": "kim", "email": "kim@example.com"},
                {"login": "kim", "email": "kim2@example.com"},
                {"login": "boss", "email": "not an address"},
                {"login": "boss", "email": "x@example.com"},
            ]}),
        )
        .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        let problems: Vec<&str> = body["problems"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["login"].as_str().unwrap())
            .collect();
        assert_eq!(problems, ["ghost", "kim", "boss", "boss"], "{body}");
        let (status, body) = post_emails(
                &app,
                "",
                &boss,
                json!({"emails": [{"login": "kim", "email": "kim@example.com"}, {"login": "boss", "email": "JDOE@example.com"}]}),
            )
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(
            body["problems"][0]["problem"],
            "JDOE@example.com would also be the email of jdoe"
        );
        assert_eq!(
            email_of("kim").await.as_deref(),
            Some("jdoe@example.com"),
            "made like jdoe"
        );
        // kim and boss share jdoe's email: giving them their own resolves it; a dry run writes
        // nothing.
        let (status, body) = post_emails(
            &app,
            "?dry_run=true",
            &boss,
            json!({"emails": [{"login": "kim", "email": "kim@example.com"}]}),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["dry_run"], true);
        assert_eq!(body["changed"][0]["after"], "kim@example.com");
        assert_eq!(email_of("kim").await.as_deref(), Some("jdoe@example.com"));
        let own = json!({"emails": [{"login": "kim", "email": "kim@example.com"}, {"login": "boss", "email": "boss@example.com"}]});
        let (status, _) = post_emails(&app, "", &boss, own).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(email_of("kim").await.as_deref(), Some("kim@example.com"));

        // Two operators may swap emails in one request; the same request again changes nothing.
        let swap = json!({"emails": [{"login": "kim", "email": "JDOE@example.com"}, {"login": "jdoe", "email": "kim@example.com"}]});
        let (status, body) = post_emails(&app, "", &boss, swap.clone()).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["changed"].as_array().unwrap().len(), 2);
        let (_, body) = post_emails(&app, "", &boss, swap).await;
        assert_eq!(body["unchanged"], json!(["kim", "jdoe"]));
        assert_eq!(email_of("jdoe").await.as_deref(), Some("kim@example.com"));
        let (status, body) = post_emails(&app, "", &boss, json!({"nope": 1})).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (StatusCode::BAD_REQUEST, Some("SOP-330011"))
        );
        finish(cleanup).await;
    }
}

#[tokio::test]
async fn operators_switch_only_from_the_planned_state_and_back_until_locked_down() {
    use ims_wire::migration::{state_digest, OperatorPage};
    for db in [Db::Sqlite, Db::Postgres] {
        let Some((inst, store, _dir, cleanup)) = instance_on(db, "7.4.1", InstanceKind::Marketing).await
        else {
            continue;
        };
        let inst = Arc::new(inst);
        add_like_jdoe(&store, "boss", &["admin"]).await;
        add_like_jdoe(&store, "kim", &[]).await;
        let app = router(InstanceState {
            instance: Arc::clone(&inst),
            tls: false,
        });
        let boss = session_of(&app, "boss").await;
        let jdoe_session = session_of(&app, "jdoe").await;
        let states = || async {
            let (_, _, body) = get(&app, "/nl/migration/v1/operators", &boss).await;
            let page: OperatorPage = serde_json::from_value(body).unwrap();
            page.operators
                .into_iter()
                .map(|o| (o.login.clone(), (state_digest(&o), o)))
                .collect::<std::collections::HashMap<_, _>>()
        };
        let switch = |body: Value| {
            let mut b = Request::post("/nl/migration/v1/switch").header("content-type", "application/json");
            for (k, v) in &boss {
                b = b.header(*k, v);
            }
            let app = app.clone();
            async move {
                let (status, _, out) = send(&app, b.body(Body::from(body.to_string())).unwrap()).await;
                assert_eq!(status, StatusCode::OK, "{out}");
                out["operators"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|o| {
                        (
                            o["login"].as_str().unwrap().to_owned(),
                            o["outcome"].as_str().unwrap().to_owned(),
                            o["detail"].as_str().unwrap_or_default().to_owned(),
                        )
                    })
                    .collect::<Vec<_>>()
            }
        };
        let before = states().await;
        let (jdoe_state, kim_state) = (before["jdoe"].0.clone(), before["kim"].0.clone());

        // jdoe as planned, kim from a state it is no longer in, a ghost, an identity twice.
        let out = switch(json!({"to": "ims", "operators": [
            {"login": "jdoe", "ims_id": "U1@AdobeID", "state": jdoe_state},
            {"login": "kim", "ims_id": "U2@AdobeID", "state": "0000000000000000"},
            {"login": "ghost", "ims_id": "U3@AdobeID", "state": "x"},
        ]}))
        .await;
        let outcomes: Vec<&str> = out.iter().map(|(_, o, _)| o.as_str()).collect();
        assert_eq!(outcomes, ["switched", "drifted", "missing"], "{out:?}");
        let after = states().await;
        assert_eq!(after["jdoe"].1.auth_type, "ims");
        assert_eq!(after["jdoe"].1.ims_id.as_deref(), Some("U1@AdobeID"));
        assert_eq!(after["kim"].1.auth_type, "native");
        // jdoe's native session ended with the switch.
        let (_, xml) = call(
            &app,
            "xtk:session#GetUserInfo",
            envelope("GetUserInfo", "xtk:session", "<sessiontoken/>"),
            &jdoe_session,
        )
        .await;
        assert_eq!(fault_code(&xml).as_deref(), Some("XSV-350008"));
        // Again: already so. An identity already linked to jdoe cannot link kim.
        let out = switch(json!({"to": "ims", "operators": [
            {"login": "jdoe", "ims_id": "U1@AdobeID", "state": jdoe_state},
            {"login": "kim", "ims_id": "U1@AdobeID", "state": kim_state},
        ]}))
        .await;
        let outcomes: Vec<&str> = out.iter().map(|(_, o, _)| o.as_str()).collect();
        assert_eq!(outcomes, ["already", "conflict"], "{out:?}");

        // Back to native (the rollback) from the state the switch left, while not locked down.
        let jdoe_now = states().await["jdoe"].0.clone();
        let out = switch(json!({"to": "native", "operators": [{"login": "jdoe", "state": jdoe_now}]})).await;
        assert_eq!(out[0].1, "switched", "{out:?}");
        let jdoe = &states().await["jdoe"].1;
        assert_eq!(
            (jdoe.auth_type.as_str(), jdoe.ims_id.as_deref()),
            ("native", None)
        );
        let (_, xml) = call(
            &app,
            "xtk:session#Logon",
            logon_body("jdoe", OPERATOR_PASSWORD),
            &[],
        )
        .await;
        assert_eq!(fault_code(&xml), None, "jdoe signs in natively again");

        // Locked down: no way back.
        let jdoe_state = states().await["jdoe"].0.clone();
        switch(json!({"to": "ims", "operators": [{"login": "jdoe", "ims_id": "U1@AdobeID", "state": jdoe_state}]})).await;
        inst.configuration()
            .apply_switches(
                &ims_campaign::config::ImsSwitches {
                    operator_management_restricted: true,
                    native_api_disabled: false,
                    allow_list: vec![],
                },
                &ims_core::audit::Context::new(Now::system(), "test"),
            )
            .await
            .unwrap();
        let jdoe_now = states().await["jdoe"].0.clone();
        let out = switch(json!({"to": "native", "operators": [{"login": "jdoe", "state": jdoe_now}]})).await;
        assert_eq!(out[0].1, "refused");
        assert!(out[0].2.contains("locked down"), "{out:?}");
        let migrated: Vec<String> = {
            store
                .audit(&AuditQuery {
                    action_prefix: Some("operator.migrate".into()),
                    limit: 10,
                })
                .await
                .unwrap()
                .into_iter()
                .map(|e| e.target)
                .collect()
        };
        assert_eq!(migrated.len(), 3, "switched, back, switched: {migrated:?}");
        finish(cleanup).await;
    }
}

#[tokio::test]
async fn groups_for_direct_rights_are_checked_whole_then_created_once() {
    for db in [Db::Sqlite, Db::Postgres] {
        let Some((inst, store, _dir, cleanup)) = instance_on(db, "7.4.1", InstanceKind::Marketing).await
        else {
            continue;
        };
        let inst = Arc::new(inst);
        add_like_jdoe(&store, "boss", &["admin"]).await;
        let app = router(InstanceState {
            instance: Arc::clone(&inst),
            tls: false,
        });
        let boss = session_of(&app, "boss").await;
        let post = |query: &'static str, body: Value| {
            let mut b = Request::post(format!("/nl/migration/v1/groups{query}"))
                .header("content-type", "application/json");
            for (k, v) in &boss {
                b = b.header(*k, v);
            }
            let app = app.clone();
            async move {
                let (status, _, out) = send(&app, b.body(Body::from(body.to_string())).unwrap()).await;
                (status, out)
            }
        };
        let (status, out) = post("", json!({"groups": [
                {"name": "bad name", "label": "x", "rights": [], "members": []},
                {"name": "rights-x", "label": "x", "rights": ["nothing"], "members": []},
                {"name": "admin", "label": "x", "rights": ["export"], "members": []},
                {"name": "rights-export", "label": "Direct rights: EXPORT", "rights": ["export"], "members": ["ghost"]},
            ]}))
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{out}");
        let who: Vec<&str> = out["problems"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["login"].as_str().unwrap())
            .collect();
        assert_eq!(who, ["bad name", "rights-x", "admin", "ghost"]);
        assert!(!store
            .groups()
            .await
            .unwrap()
            .iter()
            .any(|g| g.name == "rights-export"));

        let good = json!({"groups": [{"name": "rights-export", "label": "Direct rights: EXPORT", "rights": ["export"], "members": ["jdoe"]}]});
        let (status, out) = post("?dry_run=true", good.clone()).await;
        assert_eq!(
            (status, out["created"].clone()),
            (StatusCode::OK, json!(["rights-export"]))
        );
        assert!(!store
            .groups()
            .await
            .unwrap()
            .iter()
            .any(|g| g.name == "rights-export"));
        let (_, out) = post("", good.clone()).await;
        assert_eq!(out["added"], json!([["jdoe", "rights-export"]]));
        let jdoe = store.operator_by_login("jdoe").await.unwrap().unwrap();
        assert_eq!(jdoe.groups, ["deliveryOperators", "rights-export"]);
        let (_, out) = post("", good).await;
        assert_eq!(
            (out["present"].clone(), out["added"].clone()),
            (json!(["rights-export"]), json!([]))
        );
        finish(cleanup).await;
    }
}

#[tokio::test]
async fn the_console_announces_the_window_and_shows_the_migration_page() {
    use ims_wire::migration::{state_digest, OperatorPage};
    let Some((inst, store, _dir, cleanup)) = instance_on(Db::Sqlite, "7.4.1", InstanceKind::Marketing).await
    else {
        return;
    };
    let inst = Arc::new(inst);
    add_like_jdoe(&store, "boss", &["admin"]).await;
    add_like_jdoe(&store, "kim", &[]).await;
    let lee = add_like_jdoe(&store, "lee", &["deliveryOperators"]).await;
    let mut op = store.operator(lee).await.unwrap().unwrap();
    op.email = Some("lee at example.com".into());
    store
        .update_operator(
            &op,
            false,
            &ims_core::audit::Context::new(Now::from_millis(1), "test").event(
                "operator.update",
                "lee",
                "success",
                json!({}),
            ),
        )
        .await
        .unwrap();
    let app = router(InstanceState {
        instance: Arc::clone(&inst),
        tls: false,
    });
    let boss = session_of(&app, "boss").await;
    let put = |path: &'static str, body: Value| {
        let mut b = Request::put(path).header("content-type", "application/json");
        for (k, v) in &boss {
            b = b.header(*k, v);
        }
        let app = app.clone();
        async move { send(&app, b.body(Body::from(body.to_string())).unwrap()).await.0 }
    };
    // Moved: jdoe to the IMS (the chart's history comes from such moves).
    let (_, _, body) = get(&app, "/nl/migration/v1/operators", &boss).await;
    let page_of: OperatorPage = serde_json::from_value(body).unwrap();
    let jdoe = page_of.operators.iter().find(|o| o.login == "jdoe").unwrap();
    let mut b = Request::post("/nl/migration/v1/switch").header("content-type", "application/json");
    for (k, v) in &boss {
        b = b.header(*k, v);
    }
    let body = json!({"to": "ims", "operators": [{"login": "jdoe", "ims_id": "U1@AdobeID", "state": state_digest(jdoe)}]});
    send(&app, b.body(Body::from(body.to_string())).unwrap()).await;

    // The window's notice on every page, the sign-in page included; an empty one removes it.
    assert_eq!(
        put(
            "/nl/migration/v1/notice",
            json!({"message": "Sign-in is moving to the IMS"})
        )
        .await,
        StatusCode::NO_CONTENT
    );
    let (_, _, html) = page(&app, "GET", "/console/login", "", &[]).await;
    assert!(
        html.contains(r#"id="window" role="status">Sign-in is moving to the IMS<"#),
        "{html}"
    );
    assert_eq!(
            put("/nl/migration/v1/journal", json!({"at": 1, "plans": [{"plan_id": "users-prod-1", "phase": "users", "state": "done", "done": 4, "started": 0, "failed": []}]})).await,
            StatusCode::NO_CONTENT
        );

    // Administrators only.
    let (_, headers, _) = console_sign_in(&app, "kim", OPERATOR_PASSWORD).await;
    let kim = format!(
        "ims_console={}",
        cookie_value(set_cookie(&headers, "ims_console").unwrap())
    );
    let (status, _, _) = page(&app, "GET", "/console/migration", &kim, &[]).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (_, headers, _) = console_sign_in(&app, "boss", OPERATOR_PASSWORD).await;
    let cookie = format!(
        "ims_console={}",
        cookie_value(set_cookie(&headers, "ims_console").unwrap())
    );
    let (status, _, html) = page(&app, "GET", "/console/migration", &cookie, &[]).await;
    assert_eq!(status, StatusCode::OK, "{html}");
    assert!(
        html.contains("<tr><td>ims</td><td>1</td></tr>")
            && html.contains("<tr><td>native</td><td>3</td></tr>"),
        "{html}"
    );
    // Three series, the IMS one rising at the move.
    assert_eq!(html.matches("<polyline").count(), 3);
    assert!(html.contains(r#"class="series-ims""#));
    // kim and boss share jdoe's email (made alike): blockers.
    assert!(
        html.contains("kim shares its email jdoe@example.com with another operator"),
        "{html}"
    );
    // The rule of the emails page: an address the IMS refuses blocks too; and a person in
    // no group, whom no profile would let in.
    assert!(
        html.contains("lee has an email the IMS does not take: lee at example.com"),
        "{html}"
    );
    assert!(html.contains("kim belongs to no operator group"), "{html}");
    assert!(
        html.contains("<td>users-prod-1</td><td>users</td><td>done</td><td>4</td>"),
        "{html}"
    );
    assert!(html.contains("Sign-in is moving to the IMS"));
    assert_eq!(
        put("/nl/migration/v1/notice", json!({"message": ""})).await,
        StatusCode::NO_CONTENT
    );
    let (_, _, html) = page(&app, "GET", "/console/login", "", &[]).await;
    assert!(!html.contains(r#"id="window""#));
    finish(cleanup).await;
}

/// Signs `login` in to the console; the cookie header that carries its session.
async fn console_cookie(app: &Router, login: &str) -> String {
    let (_, headers, _) = console_sign_in(app, login, OPERATOR_PASSWORD).await;
    format!(
        "ims_console={}",
        cookie_value(set_cookie(&headers, "ims_console").unwrap())
    )
}

/// The row of `login` in the emails page's table (empty when it is not listed).
fn email_row<'a>(html: &'a str, login: &str) -> &'a str {
    let Some(at) = html.find(&format!(r#"<tr id="op-{login}""#)) else {
        return "";
    };
    let rest = &html[at..];
    &rest[..rest.find("</tr>").unwrap()]
}

#[tokio::test]
async fn the_console_sets_the_emails_a_migration_needs_through_the_apis_path() {
    for db in [Db::Sqlite, Db::Postgres] {
        let Some((inst, store, _dir, cleanup)) = instance_on(db, "7.4.1", InstanceKind::Marketing).await
        else {
            continue;
        };
        let inst = Arc::new(inst);
        // boss and kim are made like jdoe, its email included: the three share it.
        add_like_jdoe(&store, "boss", &["admin"]).await;
        add_like_jdoe(&store, "kim", &[]).await;
        let mut lee = store.operator_by_login("jdoe").await.unwrap().unwrap();
        lee.login = "lee".into();
        lee.label = "<b>Lee</b>".into();
        lee.email = None;
        let ctx = ims_core::audit::Context::new(Now::from_millis(0), "test");
        store
            .create_operator(&lee, &ctx.event("operator.create", "lee", "success", json!({})))
            .await
            .unwrap();
        let app = router(InstanceState {
            instance: Arc::clone(&inst),
            tls: false,
        });

        let kim_csrf = someone_without_administration_can_neither_read_nor_post(&app, &store).await;
        let (boss, csrf) = the_page_says_who_blocks_and_why(&app).await;
        forged_forms_write_nothing(&app, &store, &boss, &kim_csrf).await;
        checks_say_each_problem_and_write_nothing(&app, &store, &boss, &csrf).await;
        saved_through_the_operators_path(&app, &store, &boss, &csrf).await;
        finish(cleanup).await;
    }
}

/// The console page that sets the emails a migration needs.
const EMAILS_PATH: &str = "/console/migration/emails";

/// The emails that unblock kim and lee, in the page's order (jdoe, boss, kim, lee).
const GOOD: [&str; 4] = ["", "", "kim@example.com", "lee@example.com"];

/// The email `login` has at the instance.
async fn email_of(store: &Store, login: &str) -> Option<String> {
    store.operator_by_login(login).await.unwrap().unwrap().email
}

/// The operator changes boss made: (target, changed fields).
async fn changes_by_boss(store: &Store) -> Vec<(String, Value)> {
    let mut out: Vec<(String, Value)> = store
        .audit(&AuditQuery {
            action_prefix: Some("operator.update".into()),
            limit: 100,
        })
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.actor == "operator:boss")
        .map(|e| (e.target, e.details["fields"].clone()))
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// The rows as the browser posts them, in the page's order.
fn rows(csrf: &str, action: &str, typed: [&str; 4]) -> Vec<(String, String)> {
    let mut f = vec![("csrf".to_owned(), csrf.to_owned())];
    for (login, email) in ["jdoe", "boss", "kim", "lee"].into_iter().zip(typed) {
        f.push(("login".into(), login.into()));
        f.push(("email".into(), email.into()));
    }
    f.push(("action".into(), action.into()));
    f
}

/// Posts `form` to the emails page with the console cookie `boss`.
async fn post_as(
    app: &Router,
    boss: &str,
    form: Vec<(String, String)>,
) -> (StatusCode, http::HeaderMap, String) {
    let pairs: Vec<(&str, &str)> = form.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    page(app, "POST", EMAILS_PATH, boss, &pairs).await
}

/// Someone without ADMINISTRATION can neither read nor post. That operator's CSRF token.
async fn someone_without_administration_can_neither_read_nor_post(app: &Router, store: &Store) -> String {
    let kim = console_cookie(app, "kim").await;
    let (status, _, _) = page(app, "GET", EMAILS_PATH, &kim, &[]).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let kim_csrf = csrf_in(&page(app, "GET", "/console/", &kim, &[]).await.2);
    let (status, _, _) = page(
        app,
        "POST",
        EMAILS_PATH,
        &kim,
        &[
            ("csrf", &kim_csrf),
            ("login", "lee"),
            ("email", "lee@example.com"),
            ("action", "save"),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(email_of(store, "lee").await, None);
    kim_csrf
}

/// The administrator reaches it from the migration page: who blocks and why, markup shown as
/// text. The administrator's console cookie and the page's CSRF token.
async fn the_page_says_who_blocks_and_why(app: &Router) -> (String, String) {
    let boss = console_cookie(app, "boss").await;
    let (_, _, html) = page(app, "GET", "/console/migration", &boss, &[]).await;
    assert!(html.contains(r#"href="/console/migration/emails""#), "{html}");
    let (status, headers, html) = page(app, "GET", EMAILS_PATH, &boss, &[]).await;
    assert_eq!(status, StatusCode::OK, "{html}");
    assert!(headers["content-security-policy"]
        .to_str()
        .unwrap()
        .contains("form-action 'self'"));
    let lee_row = email_row(&html, "lee");
    assert!(lee_row.contains("<td>missing</td>"), "{html}");
    assert!(
        lee_row.contains("&#60;b&#62;Lee") || lee_row.contains("&lt;b&gt;Lee"),
        "{lee_row}"
    );
    assert!(!html.contains("<b>Lee</b>"));
    assert!(
        email_row(&html, "kim").contains("<td>shared with jdoe, boss</td>"),
        "{html}"
    );
    let csrf = csrf_in(&html);
    (boss, csrf)
}

/// Without the form's token, or with another's (`kim_csrf`), nothing is written.
async fn forged_forms_write_nothing(app: &Router, store: &Store, boss: &str, kim_csrf: &str) {
    let mut forged = rows("", "save", GOOD);
    forged.remove(0);
    let (status, _, _) = post_as(app, boss, forged).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _, _) = post_as(app, boss, rows(kim_csrf, "save", GOOD)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(email_of(store, "lee").await, None);
}

/// A check: an address the IMS refuses, markup, and jdoe's email in another case. Every
/// problem at its row, what was typed kept (escaped), nothing written; two rows given one
/// email are both refused; a check that passes says what saving would change.
async fn checks_say_each_problem_and_write_nothing(app: &Router, store: &Store, boss: &str, csrf: &str) {
    let typed = [
        "",
        r#""><script>alert(1)</script>"#,
        "JDOE@Example.com",
        "lee@example",
    ];
    let (status, _, html) = post_as(app, boss, rows(csrf, "check", typed)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{html}");
    assert!(html.contains("3 problem(s): nothing was written."), "{html}");
    let lee_row = email_row(&html, "lee");
    assert!(
        lee_row.contains("is not an email address the IMS accepts")
            && lee_row.contains(r#"value="lee@example""#),
        "{lee_row}"
    );
    let kim_row = email_row(&html, "kim");
    assert!(
        kim_row.contains("JDOE@Example.com would also be the email of jdoe")
            && kim_row.contains(r#"value="JDOE@Example.com""#),
        "{kim_row}"
    );
    assert!(
        email_row(&html, "boss").contains("is not an email address"),
        "{html}"
    );
    assert!(!html.contains("<script>"), "escaped: {html}");
    assert!(!email_row(&html, "jdoe").contains(r#"class="error""#));
    // Two rows given one email, in different case: both refused.
    let (status, _, html) = post_as(
        app,
        boss,
        rows(csrf, "save", ["", "", "Lee@Example.com", "lee@example.com"]),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{html}");
    assert!(
        email_row(&html, "kim").contains("would also be the email of lee"),
        "{html}"
    );
    assert!(
        email_row(&html, "lee").contains("would also be the email of kim"),
        "{html}"
    );
    assert_eq!(email_of(store, "kim").await.as_deref(), Some("jdoe@example.com"));
    assert_eq!(email_of(store, "lee").await, None);
    // A check that passes says what saving would change, and still writes nothing.
    let (status, _, html) = post_as(app, boss, rows(csrf, "check", GOOD)).await;
    assert_eq!(status, StatusCode::OK, "{html}");
    assert!(
        html.contains("Saving would change")
            && html.contains("<td>lee</td><td>none</td><td>lee@example.com</td>")
            && email_row(&html, "lee").contains(r#"value="lee@example.com""#),
        "{html}"
    );
    assert_eq!(email_of(store, "lee").await, None);
    assert_eq!(changes_by_boss(store).await, vec![]);
}

/// Saved: written through the operators' path and audited as the API does; the page shows
/// what changed and who still blocks (jdoe and boss still share an email).
async fn saved_through_the_operators_path(app: &Router, store: &Store, boss: &str, csrf: &str) {
    let (status, _, html) = post_as(app, boss, rows(csrf, "save", GOOD)).await;
    assert_eq!(status, StatusCode::OK, "{html}");
    assert!(html.contains("Saved: 2 email(s) changed."), "{html}");
    assert!(
        html.contains("<td>kim</td><td>jdoe@example.com</td><td>kim@example.com</td>")
            && html.contains("<td>lee</td><td>none</td><td>lee@example.com</td>"),
        "{html}"
    );
    assert!(html.contains("Remaining blockers"));
    assert!(email_row(&html, "kim").is_empty() && email_row(&html, "lee").is_empty());
    assert!(
        email_row(&html, "jdoe").contains("<td>shared with boss</td>")
            && email_row(&html, "jdoe").contains(r#"value="""#),
        "{html}"
    );
    assert_eq!(email_of(store, "lee").await.as_deref(), Some("lee@example.com"));
    assert_eq!(email_of(store, "kim").await.as_deref(), Some("kim@example.com"));
    assert_eq!(
        changes_by_boss(store).await,
        vec![
            ("kim".to_owned(), json!(["email"])),
            ("lee".to_owned(), json!(["email"]))
        ]
    );
}
