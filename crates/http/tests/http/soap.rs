//! The instance's SOAP surface: sessions, faults, queries with rights, the Message Center and the
//! XML battery.

use axum::body::Body;
use http::{Request, StatusCode};
use http_body_util::BodyExt as _;
use ims_campaign::service::InstanceKind;
use ims_core::Now;
use ims_http::instance::soap::{router, InstanceState};
use serde_json::json;
use std::sync::Arc;
use tower::ServiceExt as _;

use crate::harness::*;

#[tokio::test]
async fn logon_then_calls_with_the_session_wherever_the_client_puts_it() {
    let (app, _dir) = instance_app().await;
    let (status, xml) = call(
        &app,
        "xtk:session#Logon",
        logon_body("jdoe", OPERATOR_PASSWORD),
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{xml}");
    assert!(xml.contains("<LogonResponse xmlns='urn:xtk:session'"), "{xml}");
    assert!(xml.contains("<serverInfo ") && xml.contains("<userInfo login=\"jdoe\""));
    assert!(xml.contains("<login-right right=\"startDelivery\"/>"));
    let session = value(&xml, "pstrSessionToken");
    let security = value(&xml, "pstrSecurityToken");
    assert!(session.starts_with("___ims_") && security.starts_with("@ims_"));
    let info = envelope("GetUserInfo", "xtk:session", "<sessiontoken/>");
    let ways: Vec<Vec<(&str, String)>> = vec![
        vec![
            ("x-session-token", session.clone()),
            ("x-security-token", security.clone()),
        ],
        vec![
            ("cookie", format!("other=1; __sessiontoken={session}")),
            ("x-security-token", security.clone()),
        ],
    ];
    for extra in ways {
        let (_, xml) = call(&app, "xtk:session#GetUserInfo", info.clone(), &extra).await;
        assert!(
            xml.contains("<GetUserInfoResponse") && xml.contains("login=\"jdoe\""),
            "{extra:?}: {xml}"
        );
    }
    // The cookie alone is what a browser sends for another site (cross-site request
    // forgery): it needs its security token.
    let (_, xml) = call(
        &app,
        "xtk:session#GetUserInfo",
        info.clone(),
        &[("cookie", format!("__sessiontoken={session}"))],
    )
    .await;
    assert_eq!(fault_code(&xml).as_deref(), Some("XSV-350008"), "{xml}");
    assert!(xml.contains("X-Security-Token"), "{xml}");
    // In the SOAP Header, and as the first parameter.
    let in_header = info.replace("<SOAP-ENV:Body>", &format!("<SOAP-ENV:Header><Cookie>__sessiontoken={session}</Cookie><X-Security-Token>{security}</X-Security-Token></SOAP-ENV:Header><SOAP-ENV:Body>"));
    let (_, xml) = call(&app, "xtk:session#GetUserInfo", in_header, &[]).await;
    assert!(xml.contains("<GetUserInfoResponse"), "{xml}");
    let as_param = envelope(
        "GetServerTime",
        "xtk:session",
        &format!("<sessiontoken>{session}</sessiontoken>"),
    );
    let (_, xml) = call(&app, "xtk:session#GetServerTime", as_param, &[]).await;
    assert!(xml.contains("xsi:type='xsd:dateTime'"), "{xml}");
    // A wrong security token is refused as an expired session.
    let (_, xml) = call(
        &app,
        "xtk:session#GetUserInfo",
        info.clone(),
        &[
            ("x-session-token", session.clone()),
            ("x-security-token", "@ims_forged".into()),
        ],
    )
    .await;
    assert_eq!(fault_code(&xml).as_deref(), Some("XSV-350008"));
    // GetOption: known and unknown options.
    let opt = |name: &str| {
        envelope(
            "GetOption",
            "xtk:session",
            &format!("<sessiontoken/><name>{name}</name>"),
        )
    };
    let (_, xml) = call(
        &app,
        "xtk:session#GetOption",
        opt("XtkBuildVersion"),
        &[("x-session-token", session.clone())],
    )
    .await;
    assert_eq!(value(&xml, "pstrValue"), "7.4.1");
    assert_eq!(value(&xml, "pbtType"), "6");
    let (_, xml) = call(
        &app,
        "xtk:session#GetOption",
        opt("NoSuchOption"),
        &[("x-session-token", session.clone())],
    )
    .await;
    assert_eq!(
        (value(&xml, "pstrValue"), value(&xml, "pbtType")),
        (String::new(), "0".to_owned())
    );
    // Logoff ends the session.
    let (_, xml) = call(
        &app,
        "xtk:session#Logoff",
        envelope("Logoff", "xtk:session", "<sessiontoken/>"),
        &[("x-session-token", session.clone())],
    )
    .await;
    assert!(xml.contains("<LogoffResponse"), "{xml}");
    let (_, xml) = call(
        &app,
        "xtk:session#GetUserInfo",
        info,
        &[("x-session-token", session)],
    )
    .await;
    assert_eq!(fault_code(&xml).as_deref(), Some("XSV-350008"));
}

#[tokio::test]
async fn faults_carry_the_vendor_codes() {
    let (app, _dir) = instance_app().await;
    let (status, xml) = call(&app, "xtk:session#Logon", logon_body("jdoe", "wrong"), &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert!(xml.contains("<faultcode>SOAP-ENV:Client</faultcode>"));
    assert_eq!(fault_code(&xml).as_deref(), Some("XSV-350024"));
    let (_, xml) = call(&app, "xtk:session#Logon", logon_body("nobody", "wrong"), &[]).await;
    assert_eq!(fault_code(&xml).as_deref(), Some("XSV-350024"));
    // No session: expired-session fault, which the reference client turns into a reconnect.
    let (_, xml) = call(
        &app,
        "xtk:session#GetUserInfo",
        envelope("GetUserInfo", "xtk:session", "<sessiontoken/>"),
        &[],
    )
    .await;
    assert_eq!(fault_code(&xml).as_deref(), Some("XSV-350008"));
    // Unknown method, once signed in.
    let (_, logon) = call(
        &app,
        "xtk:session#Logon",
        logon_body("jdoe", OPERATOR_PASSWORD),
        &[],
    )
    .await;
    let session = value(&logon, "pstrSessionToken");
    let (_, xml) = call(
        &app,
        "xtk:session#Frobnicate",
        envelope("Frobnicate", "xtk:session", "<sessiontoken/>"),
        &[("x-session-token", session)],
    )
    .await;
    assert_eq!(fault_code(&xml).as_deref(), Some("SOP-330006"), "{xml}");
}

#[tokio::test]
async fn the_operation_comes_from_the_body_and_must_agree_with_soapaction() {
    let (app, _dir) = instance_app().await;
    let (_, xml) = call(
        &app,
        "xtk:session#Logoff",
        logon_body("jdoe", OPERATOR_PASSWORD),
        &[],
    )
    .await;
    assert!(
        fault_code(&xml).is_some() && !xml.contains("pstrSessionToken"),
        "{xml}"
    );
    // Interface form of the action, without the header: the URL parameter alone.
    let req = Request::post("/nl/jsp/soaprouter.jsp?soapAction=xtk%3Apersist%7Cxtk%3Asession%23Logon")
        .header("content-type", "text/xml; charset=utf-8")
        .body(Body::from(logon_body("jdoe", OPERATOR_PASSWORD)))
        .unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    let text = String::from_utf8(resp.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap();
    assert!(text.contains("pstrSessionToken"), "{text}");
    // Header and URL parameter must both agree with the Body.
    let req = Request::post("/nl/jsp/soaprouter.jsp?soapAction=xtk%3Asession%23Logoff")
        .header("soapaction", "xtk:session#Logon")
        .body(Body::from(logon_body("jdoe", OPERATOR_PASSWORD)))
        .unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    let text = String::from_utf8(resp.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap();
    assert!(
        fault_code(&text).is_some() && !text.contains("pstrSessionToken"),
        "{text}"
    );
    // Doubled slashes from an endpoint with a trailing slash.
    let req = Request::get("//r/test").body(Body::empty()).unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_bearer_token_and_a_session_token_together_are_a_fault() {
    let (app, _dir) = instance_app().await;
    let (_, logon) = call(
        &app,
        "xtk:session#Logon",
        logon_body("jdoe", OPERATOR_PASSWORD),
        &[],
    )
    .await;
    let session = value(&logon, "pstrSessionToken");
    let (_, xml) = call(
        &app,
        "xtk:session#GetUserInfo",
        envelope("GetUserInfo", "xtk:session", "<sessiontoken/>"),
        &[
            ("x-session-token", session),
            ("authorization", "Bearer abc.def.ghi".into()),
        ],
    )
    .await;
    assert!(xml.contains("either a bearer token or a session token"), "{xml}");
}

/// Every tree a SOAP request makes the instance build, sent at ten times its limit (and the
/// attack that overflowed the stack: tens of thousands of conditions under 1 MiB): a clean
/// fault each time, and the instance still answers afterwards.
#[tokio::test]
async fn no_request_shape_can_stop_the_instance() {
    use ims_campaign::query::{MAX_CONDITIONS, MAX_NODES, MAX_SELECT_NODES};
    let (app, _dir) = instance_app().await;
    let jdoe = session_of(&app, "jdoe").await;
    let recipients = |inner: String| {
        query(&format!(
            r#"<queryDef schema="nms:recipient" operation="count">{inner}</queryDef>"#
        ))
    };
    let conditions = |n: usize, expr: &str| {
        recipients(format!(
            "<where>{}</where>",
            format!("<condition expr=\"{expr}\"/>").repeat(n)
        ))
    };
    let nested = format!(
        "{}@email='a'{}",
        "(".repeat(10 * MAX_NODES),
        ")".repeat(10 * MAX_NODES)
    );
    // As long a chain as the text limit lets through: four times the node limit.
    let chained = vec!["1=1"; 499].join(" and ");
    let select_nodes = "<node expr=\"@email\"/>".repeat(10 * MAX_SELECT_NODES);
    let attack = conditions(40_000, "1=1");
    assert!(
        attack.len() < ims_http::instance::soap::MAX_SOAP_BODY,
        "{}",
        attack.len()
    );
    let shapes = [
        ("the attack", attack),
        ("conditions x10", conditions(10 * MAX_CONDITIONS, "1=1")),
        ("parentheses x10", conditions(1, &nested)),
        ("one long chain", conditions(1, &chained)),
        (
            "nodes spread over conditions",
            conditions(MAX_CONDITIONS, &["@email='a'"; 8].join(" or ")),
        ),
        (
            "select nodes x10",
            recipients(format!("<select>{select_nodes}</select>")),
        ),
        (
            "orderBy nodes x10",
            recipients(format!("<orderBy>{select_nodes}</orderBy>")),
        ),
        (
            "XML depth x10",
            query(&format!("{}{}", "<a>".repeat(640), "</a>".repeat(640))),
        ),
    ];
    for (what, body) in shapes {
        let (status, xml) = call(&app, "xtk:queryDef#ExecuteQuery", body, &jdoe).await;
        assert_eq!(status, StatusCode::OK, "{what}: faults travel with 200");
        let code = fault_code(&xml).unwrap_or_else(|| panic!("{what}: {xml}"));
        assert_ne!(
            code, "XSV-350000",
            "{what}: a client error, not a server one: {xml}"
        );
        assert!(!xml.contains("Expression tree"), "{what}: {xml}");
        let (_, xml) = call(
            &app,
            "xtk:queryDef#ExecuteQuery",
            recipients(String::new()),
            &jdoe,
        )
        .await;
        assert_eq!(output(&xml).attr("count"), Some("3"), "{what}: still answering");
    }
}

#[tokio::test]
async fn schemas_and_queries_with_rights() {
    let (inst, store, _dir) = instance_with("7.4.1").await;
    // An administrator besides jdoe (who holds delivery rights only).
    add_like_jdoe(&store, "boss", &["admin"]).await;
    let app = router(InstanceState {
        instance: Arc::new(inst),
        tls: false,
    });
    let sign_in = |login: &'static str| {
        let app = app.clone();
        async move { session_of(&app, login).await }
    };
    let boss_s = sign_in("boss").await;
    let jdoe_s = sign_in("jdoe").await;
    // Compiled schemas; an unknown one is an empty document.
    let get_schema = |pk: &str| {
        envelope(
            "GetEntityIfMoreRecent",
            "xtk:persist",
            &format!("<sessiontoken/><pk>xtk:schema|{pk}</pk><md5></md5><mustExist>false</mustExist>"),
        )
    };
    let (_, xml) = call(
        &app,
        "xtk:persist#GetEntityIfMoreRecent",
        get_schema("xtk:queryDef"),
        &boss_s,
    )
    .await;
    assert!(
        xml.contains("<GetEntityIfMoreRecentResponse xmlns='urn:wpp:default'")
            && xml.contains("name=\"ExecuteQuery\""),
        "{xml}"
    );
    let (_, xml) = call(
        &app,
        "xtk:persist#GetEntityIfMoreRecent",
        get_schema("nms:nothing"),
        &boss_s,
    )
    .await;
    assert!(xml.contains("<pdomDoc") && !xml.contains("<schema"), "{xml}");
    // select with where, order and paging.
    let def = r#"<queryDef schema="xtk:operator" operation="select" lineCount="1" startLine="1"><select><node expr="@name"/><node expr="@email"/></select><where><condition expr="@name like '%o%'"/></where><orderBy><node expr="@name" sortDesc="true"/></orderBy></queryDef>"#;
    let (_, xml) = call(&app, "xtk:queryDef#ExecuteQuery", query(def), &boss_s).await;
    let out = output(&xml);
    assert_eq!(out.name, "operator-collection");
    let rows: Vec<_> = out.elements().collect();
    assert_eq!(rows.len(), 1);
    assert_eq!(
        rows[0].attr("name"),
        Some("boss"),
        "by name descending jdoe comes first; startLine=1 skips it"
    );
    // count, get, getIfExists.
    let (_, xml) = call(
        &app,
        "xtk:queryDef#ExecuteQuery",
        query(r#"<queryDef schema="xtk:operator" operation="count"/>"#),
        &boss_s,
    )
    .await;
    assert_eq!(output(&xml).attr("count"), Some("2"));
    let (_, xml) = call(&app, "xtk:queryDef#ExecuteQuery", query(r#"<queryDef schema="xtk:operator" operation="get"><select><node expr="@id"/></select><where><condition expr="@name='zzz'"/></where></queryDef>"#), &boss_s).await;
    assert_eq!(fault_code(&xml).as_deref(), Some("XSV-350123"));
    let (_, xml) = call(&app, "xtk:queryDef#ExecuteQuery", query(r#"<queryDef schema="xtk:operator" operation="getIfExists"><where><condition expr="@name='zzz'"/></where></queryDef>"#), &boss_s).await;
    assert_eq!(output(&xml).attributes_len(), 0);
    // Bad input is a fault, never SQL.
    for bad in [
        r#"<queryDef schema="xtk:operator"><select><node expr="@password_hash"/></select></queryDef>"#,
        r#"<queryDef schema="xtk:operator"><where><condition expr="1=1; DROP TABLE operators"/></where></queryDef>"#,
        r#"<queryDef schema="xtk:secret" operation="select"/>"#,
        r#"<queryDef schema="xtk:operator" operation="delete"/>"#,
    ] {
        let (_, xml) = call(&app, "xtk:queryDef#ExecuteQuery", query(bad), &boss_s).await;
        assert!(fault_code(&xml).is_some(), "{bad}: {xml}");
    }
    // Recipients are readable by any signed-in operator.
    let def = r#"<queryDef schema="nms:recipient" operation="select"><select><node expr="@email"/><node expr="@firstName"/></select><where><condition expr="@email like 'b%'"/><condition expr="@firstName = 'Chen'" boolOperator="OR"/></where><orderBy><node expr="@email"/></orderBy></queryDef>"#;
    let (_, xml) = call(&app, "xtk:queryDef#ExecuteQuery", query(def), &jdoe_s).await;
    let out = output(&xml);
    assert_eq!(out.name, "recipient-collection");
    let emails: Vec<&str> = out.elements().filter_map(|r| r.attr("email")).collect();
    assert_eq!(emails, vec!["bo@example.com", "chen@example.com"]);
    // An operator whose groups have no right on the folder sees no recipient; an administrator
    // sees them all.
    let mut outsider = store.operator_by_login("jdoe").await.unwrap().unwrap();
    outsider.login = "outsider".into();
    outsider.groups = vec!["reportAccess".into()];
    store
        .create_operator(
            &outsider,
            &ims_core::audit::Context::new(Now::system(), "test").event(
                "operator.create",
                "outsider",
                "success",
                json!({}),
            ),
        )
        .await
        .unwrap();
    let outsider_s = sign_in("outsider").await;
    let count = r#"<queryDef schema="nms:recipient" operation="count"/>"#;
    let (_, xml) = call(&app, "xtk:queryDef#ExecuteQuery", query(count), &outsider_s).await;
    assert_eq!(output(&xml).attr("count"), Some("0"));
    let (_, xml) = call(&app, "xtk:queryDef#ExecuteQuery", query(count), &boss_s).await;
    assert_eq!(output(&xml).attr("count"), Some("3"));
    let (_, xml) = call(&app, "xtk:queryDef#ExecuteQuery", query(count), &jdoe_s).await;
    assert_eq!(output(&xml).attr("count"), Some("3"));
    // Writes need the folder's write right: jdoe's delivery operators may only read it here.
    let write = |doc: &str| {
        envelope(
            "Write",
            "xtk:persist|xtk:session",
            &format!("<sessiontoken/><domDoc>{doc}</domDoc>"),
        )
    };
    let insert =
        r#"<recipient xtkschema="nms:recipient" _operation="insert" email="w@example.com" firstName="W"/>"#;
    let (_, xml) = call(&app, "xtk:persist|xtk:session#Write", write(insert), &jdoe_s).await;
    assert_eq!(fault_code(&xml).as_deref(), Some("XSV-350122"), "{xml}");
    let (_, xml) = call(&app, "xtk:persist|xtk:session#Write", write(insert), &boss_s).await;
    assert!(xml.contains("<WriteResponse"), "{xml}");
    let (_, xml) = call(&app, "xtk:queryDef#ExecuteQuery", query(count), &boss_s).await;
    assert_eq!(output(&xml).attr("count"), Some("4"));
    for bad in [
        r#"<operator xtkschema="xtk:operator" _operation="insert" name="x"/>"#,
        r#"<recipient xtkschema="nms:recipient" _operation="merge"/>"#,
        r#"<recipient xtkschema="nms:recipient" _operation="delete" id="999999"/>"#,
        r#"<recipient xtkschema="nms:recipient" _key="@password" id="1"/>"#,
    ] {
        let (_, xml) = call(&app, "xtk:persist|xtk:session#Write", write(bad), &boss_s).await;
        assert!(fault_code(&xml).is_some(), "{bad}: {xml}");
    }
    // A folder that does not exist is the caller's mistake, not a server fault.
    let nowhere = r#"<recipient xtkschema="nms:recipient" _operation="insert" email="n@example.com" folder-id="999999"/>"#;
    let (_, xml) = call(&app, "xtk:persist|xtk:session#Write", write(nowhere), &boss_s).await;
    assert_eq!(fault_code(&xml).as_deref(), Some("SOP-330011"), "{xml}");
    assert!(xml.contains("folder-id 999999 is not a folder"), "{xml}");
    // Operators are readable with the admin right only.
    let (_, xml) = call(
        &app,
        "xtk:queryDef#ExecuteQuery",
        query(r#"<queryDef schema="xtk:operator" operation="count"/>"#),
        &jdoe_s,
    )
    .await;
    assert_eq!(fault_code(&xml).as_deref(), Some("XSV-350122"), "{xml}");
}

#[tokio::test]
async fn message_center_events() {
    let (inst, store, _dir) = instance_of("7.4.1", InstanceKind::MessageCenter).await;
    add_like_jdoe(&store, "agent", &["messageCenterAgents"]).await;
    let app = router(InstanceState {
        instance: Arc::new(inst),
        tls: false,
    });
    let session = |login: &'static str| {
        let app = app.clone();
        async move { session_of(&app, login).await }
    };
    let agent_s = session("agent").await;
    let event =
        r#"<rtEvent type="ORDER" email="jane@example.com"><ctx><orderId>A&amp;1</orderId></ctx></rtEvent>"#;
    let (_, xml) = call(&app, "nms:rtEvent#PushEvent", push(event), &agent_s).await;
    assert!(xml.contains("<plId xsi:type='xsd:long'>1</plId>"), "{xml}");
    let (_, xml) = call(&app, "nms:rtEvent#PushEvent", push(event), &agent_s).await;
    assert!(xml.contains("<plId xsi:type='xsd:long'>2</plId>"), "{xml}");
    // The events are queryable by the agent.
    let def = r#"<queryDef schema="nms:rtEvent" operation="select"><select><node expr="@id"/><node expr="@type"/><node expr="@email"/></select></queryDef>"#;
    let (_, xml) = call(&app, "xtk:queryDef#ExecuteQuery", query(def), &agent_s).await;
    assert_eq!(output(&xml).elements().count(), 2, "{xml}");
    // Without the right, with a bad event, or with no event: faults.
    let jdoe_s = session("jdoe").await;
    let (_, xml) = call(&app, "nms:rtEvent#PushEvent", push(event), &jdoe_s).await;
    assert_eq!(fault_code(&xml).as_deref(), Some("XSV-350122"));
    for bad in [r#"<rtEvent email="x@y.z"/>"#, r#"<other type="x"/>"#, ""] {
        let (_, xml) = call(&app, "nms:rtEvent#PushEvent", push(bad), &agent_s).await;
        assert!(fault_code(&xml).is_some(), "{bad}: {xml}");
    }
    // WSDL of the schema, for a signed-in caller only.
    let wsdl = |auth: Option<(&'static str, String)>| {
        let app = app.clone();
        async move {
            let mut req = Request::get("/nl/jsp/schemawsdl.jsp?schema=nms:rtEvent");
            if let Some((k, v)) = auth {
                req = req.header(k, v);
            }
            let resp = app.oneshot(req.body(Body::empty()).unwrap()).await.unwrap();
            String::from_utf8(resp.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap()
        }
    };
    let doc = wsdl(Some(("x-session-token", agent_s[0].1.clone()))).await;
    assert!(
        doc.contains("soapAction=\"nms:rtEvent#PushEvent\"")
            && doc.contains("<soap:address location=\"http://"),
        "{doc}"
    );
    assert_eq!(fault_code(&wsdl(None).await).as_deref(), Some("XSV-350008"));
    // The address is the instance's, whatever Host the caller sends; a bearer token and a
    // session together are a fault here too.
    let mut req = Request::get("/nl/jsp/schemawsdl.jsp?schema=nms:rtEvent")
        .header("x-session-token", agent_s[0].1.clone())
        .header("host", "attacker.example");
    let resp = app
        .clone()
        .oneshot(req.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let doc = String::from_utf8(resp.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap();
    assert!(
        !doc.contains("attacker.example") && doc.contains("soaprouter.jsp"),
        "{doc}"
    );
    req = Request::get("/nl/jsp/schemawsdl.jsp?schema=nms:rtEvent")
        .header("x-session-token", agent_s[0].1.clone())
        .header("authorization", "Bearer a.b.c");
    let resp = app
        .clone()
        .oneshot(req.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let doc = String::from_utf8(resp.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap();
    assert!(doc.contains("not both"), "{doc}");
    // mcPing reports the queue.
    let resp = app
        .clone()
        .oneshot(Request::get("/nl/jsp/mcPing.jsp").body(Body::empty()).unwrap())
        .await
        .unwrap();
    let text = String::from_utf8(resp.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap();
    assert!(
        text.starts_with("Ok\n") && text.contains("0/400 pending events"),
        "{text}"
    );
    // A marketing instance has no PushEvent.
    let (app2, _dir2) = instance_app().await;
    let (_, xml) = call(
        &app2,
        "xtk:session#Logon",
        logon_body("jdoe", OPERATOR_PASSWORD),
        &[],
    )
    .await;
    let s2 = vec![("x-session-token", value(&xml, "pstrSessionToken"))];
    let (_, xml) = call(&app2, "nms:rtEvent#PushEvent", push(event), &s2).await;
    assert_eq!(fault_code(&xml).as_deref(), Some("SOP-330006"));
}

/// The XML attack battery (entities, external entities, depth, namespaces, sizes, a slow
/// body, mismatched or doubled operations, split credentials), against the real router.
#[tokio::test]
async fn the_xml_battery() {
    let (app, _dir) = instance_app().await;
    let logon = logon_body("jdoe", OPERATOR_PASSWORD);
    let cases: Vec<(&str, String)> = vec![
            ("entity expansion", format!("<!DOCTYPE x [<!ENTITY a \"{}\">]>{}", "A".repeat(50_000), logon.replace("jdoe", "&a;"))),
            ("XXE", format!("<!DOCTYPE x [<!ENTITY e SYSTEM \"file:///etc/passwd\">]>{}", logon.replace("jdoe", "&e;"))),
            ("billion laughs", format!("<!DOCTYPE l [<!ENTITY l \"lol\"><!ENTITY l2 \"&l;&l;&l;&l;&l;&l;&l;&l;&l;&l;\"><!ENTITY l3 \"&l2;&l2;&l2;&l2;&l2;&l2;&l2;&l2;&l2;&l2;\">]>{}", logon.replace("jdoe", "&l3;"))),
            ("deep nesting", logon.replace("<parameters xsi:type=\"ns:Element\"/>", &format!("<parameters>{}{}</parameters>", "<a>".repeat(100_000), "</a>".repeat(100_000)))),
            ("10^5 xmlns", logon.replace("<m:Logon ", &format!("<m:Logon {}", (0..100_000).map(|i| format!("xmlns:p{i}=\"urn:{i}\" ")).collect::<String>()))),
            ("two body children", logon.replace("</SOAP-ENV:Body>", "<m:Logoff xmlns:m=\"urn:xtk:session\"/></SOAP-ENV:Body>")),
            ("credentials split by a comment", logon.replace("jdoe", "jd<!-- -->oe")),
            ("UTF-16 declaration", format!("<?xml version=\"1.0\" encoding=\"UTF-16\"?>{logon}")),
            ("UTF-7 declaration", format!("<?xml version=\"1.0\" encoding=\"UTF-7\"?>{logon}")),
            ("duplicate credential elements", logon.replace("<parameters", &format!("<password>{OPERATOR_PASSWORD}</password><parameters"))),
            ("processing instruction", logon.replace("<SOAP-ENV:Body>", "<SOAP-ENV:Body><?php system('id'); ?>")),
        ];
    for (what, body) in cases {
        let (status, xml) = call(&app, "xtk:session#Logon", body, &[]).await;
        assert_eq!(status, StatusCode::OK, "{what}");
        assert!(
            fault_code(&xml).is_some(),
            "{what} must be a fault: {}",
            &xml[..xml.len().min(300)]
        );
        assert!(!xml.contains("pstrSessionToken"), "{what} must not sign in");
    }
    // CDATA is ordinary text: the same credentials sign in.
    let (_, xml) = call(
        &app,
        "xtk:session#Logon",
        logon.replace(">jdoe<", "><![CDATA[jd]]>oe<"),
        &[],
    )
    .await;
    assert!(xml.contains("pstrSessionToken"), "{xml}");
    // A 50 MB body is refused before parsing; non-UTF-8 bytes are a fault.
    let big = format!("{}{}", logon, " ".repeat(50 * 1024 * 1024));
    let (status, xml) = call(&app, "xtk:session#Logon", big, &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert!(fault_code(&xml).is_some());
    assert!(
        xml.contains(&format!(
            "exceeds {} bytes",
            ims_http::instance::soap::MAX_SOAP_BODY
        )),
        "the fault names the limit in effect: {xml}"
    );
    let mut latin1 = logon.clone().into_bytes();
    latin1.push(0xE9);
    let resp = app
        .clone()
        .oneshot(soap_req("xtk:session#Logon").body(Body::from(latin1)).unwrap())
        .await
        .unwrap();
    let text = String::from_utf8(resp.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap();
    assert!(fault_code(&text).is_some());
}
