//! Native sign-in at an instance: lock-out, trusted IP masks and security zones, the console.

use axum::body::Body;
use axum::Router;
use http::StatusCode;
use http_body_util::BodyExt as _;
use ims_core::Now;
use ims_http::instance::soap::{router, InstanceState};
use serde_json::json;
use std::sync::Arc;
use tower::ServiceExt as _;

use crate::harness::*;

/// SECURITY 27: the console's sign-in and sessions follow the same decisions as SOAP `Logon`.
/// The attack: thirty wrong `Logon`s in a burst, then the right password. Native sign-in
/// counts failures per folded login (case and compatibility forms alike) with the IMS's
/// lock-out numbers, `Logon` and the console together; while locked the right password gets
/// the wrong password's fault; a success clears the count.
#[tokio::test]
async fn native_sign_in_is_locked_out_like_the_ims() {
    let (app, _dir) = instance_app().await;
    let (_, xml) = call(
        &app,
        "xtk:session#Logon",
        logon_body("jdoe", OPERATOR_PASSWORD),
        &[],
    )
    .await;
    assert!(xml.contains("pstrSessionToken"), "{xml}");
    // Four misses, then the right one: let in, and the count starts over.
    for _ in 0..4 {
        let (_, xml) = call(&app, "xtk:session#Logon", logon_body("jdoe", "wrong"), &[]).await;
        assert_eq!(fault_code(&xml).as_deref(), Some("XSV-350024"));
    }
    let (_, xml) = call(
        &app,
        "xtk:session#Logon",
        logon_body("jdoe", OPERATOR_PASSWORD),
        &[],
    )
    .await;
    assert!(xml.contains("pstrSessionToken"), "under the threshold: {xml}");
    let wrong_fault = {
        let (_, xml) = call(&app, "xtk:session#Logon", logon_body("jdoe", "wrong"), &[]).await;
        xml
    };
    for i in 0..29 {
        // Case and full-width variants count as the same login.
        let login = ["jdoe", "JDoe", "\u{ff4a}\u{ff44}\u{ff4f}\u{ff45}"][i % 3];
        let (_, xml) = call(&app, "xtk:session#Logon", logon_body(login, "wrong"), &[]).await;
        assert_eq!(fault_code(&xml).as_deref(), Some("XSV-350024"));
    }
    let (_, xml) = call(
        &app,
        "xtk:session#Logon",
        logon_body("jdoe", OPERATOR_PASSWORD),
        &[],
    )
    .await;
    assert!(
        !xml.contains("pstrSessionToken"),
        "locked: the right password is refused: {xml}"
    );
    assert_eq!(xml, wrong_fault, "the very answer a wrong password gets");
    let (status, headers, _) = console_sign_in(&app, "jdoe", OPERATOR_PASSWORD).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "the console shares the lock");
    assert!(set_cookie(&headers, "ims_console").is_none());
    // Another operator is not affected.
    let (inst, store, _dir2) = instance_with("7.4.1").await;
    add_like_jdoe(&store, "other", &["deliveryOperators"]).await;
    let app2 = router(InstanceState {
        instance: Arc::new(inst),
        tls: false,
    });
    for _ in 0..10 {
        call(&app2, "xtk:session#Logon", logon_body("jdoe", "wrong"), &[]).await;
    }
    let (_, xml) = call(
        &app2,
        "xtk:session#Logon",
        logon_body("other", OPERATOR_PASSWORD),
        &[],
    )
    .await;
    assert!(xml.contains("pstrSessionToken"), "{xml}");
}

/// A SOAP call as if it came from `source`.
async fn call_from(
    app: &Router,
    source: &str,
    action: &str,
    body: String,
    extra: &[(&str, String)],
) -> String {
    let mut b = soap_req(action);
    for (k, v) in extra {
        b = b.header(*k, v);
    }
    let mut req = b.body(Body::from(body)).unwrap();
    let addr: std::net::SocketAddr = format!("{source}:40000").parse().unwrap();
    req.extensions_mut().insert(axum::extract::ConnectInfo(addr));
    let resp = app.clone().oneshot(req).await.unwrap();
    String::from_utf8(resp.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap()
}

/// The attack: an operator limited to `10.99.0.0/16` signed in from 127.0.0.1. Its trusted IP
/// mask and its security zone now hold on native sign-in and on every call with a session.
#[tokio::test]
async fn trusted_ip_masks_and_security_zones_hold_on_sign_in_and_every_call() {
    let (inst, store, _dir) = instance_with("7.4.1").await;
    let ctx = ims_core::audit::Context::new(Now::system(), "test");
    for (login, mask, zone) in [
        ("masked", Some("10.99.0.0/16"), None),
        ("zoned", None, Some("lan")),
    ] {
        let mut op = store.operator_by_login("jdoe").await.unwrap().unwrap();
        op.login = login.into();
        op.email = None;
        op.trusted_ip_mask = mask.map(str::to_owned);
        op.security_zone = zone.map(str::to_owned);
        store
            .create_operator(&op, &ctx.event("operator.create", login, "success", json!({})))
            .await
            .unwrap();
    }
    let app = router(InstanceState {
        instance: Arc::new(inst),
        tls: false,
    });
    let logon = |login: &str| logon_body(login, OPERATOR_PASSWORD);
    let info = envelope("GetUserInfo", "xtk:session", "<sessiontoken/>");
    for (login, inside, outside) in [
        ("masked", "10.99.3.4", "127.0.0.1"),
        ("zoned", "192.168.1.9", "203.0.113.7"),
    ] {
        let xml = call_from(&app, outside, "xtk:session#Logon", logon(login), &[]).await;
        assert_eq!(
            fault_code(&xml).as_deref(),
            Some("XSV-350024"),
            "{login} from {outside}: {xml}"
        );
        let xml = call_from(&app, inside, "xtk:session#Logon", logon(login), &[]).await;
        assert!(xml.contains("pstrSessionToken"), "{login} from {inside}: {xml}");
        let session = vec![("x-session-token", value(&xml, "pstrSessionToken"))];
        let xml = call_from(&app, inside, "xtk:session#GetUserInfo", info.clone(), &session).await;
        assert!(xml.contains("<GetUserInfoResponse"), "{login} inside: {xml}");
        let xml = call_from(&app, outside, "xtk:session#GetUserInfo", info.clone(), &session).await;
        assert!(
            fault_code(&xml).is_some() && !xml.contains("<GetUserInfoResponse"),
            "{login}: the session from outside: {xml}"
        );
        // An unknown address cannot be inside anything.
        let (_, xml) = call(&app, "xtk:session#GetUserInfo", info.clone(), &session).await;
        assert!(fault_code(&xml).is_some(), "{login}: {xml}");
    }
    // jdoe has neither: signs in from anywhere.
    let xml = call_from(&app, "203.0.113.7", "xtk:session#Logon", logon("jdoe"), &[]).await;
    assert!(xml.contains("pstrSessionToken"), "{xml}");
}

/// Spraying: one password tried across many logins from one address. Past a hundred
/// failures the address is locked (whatever login it names, the right password included); another
/// address is not; successes take their attempt back, so people sharing an address who
/// sign in do not lock it.
#[tokio::test]
async fn native_sign_in_counts_failures_per_address_too() {
    let (app, _dir) = instance_app().await;
    let (sprayer, office) = ("198.51.100.7", "198.51.100.8");
    for _ in 0..ims_identity::service::ADDRESS_FREE_FAILURES + 20 {
        let xml = call_from(
            &app,
            office,
            "xtk:session#Logon",
            logon_body("jdoe", OPERATOR_PASSWORD),
            &[],
        )
        .await;
        assert!(
            xml.contains("pstrSessionToken"),
            "successes never lock an address: {xml}"
        );
    }
    for i in 0..=ims_identity::service::ADDRESS_FREE_FAILURES {
        let xml = call_from(
            &app,
            sprayer,
            "xtk:session#Logon",
            logon_body(&format!("user{i}"), "Summer2026!"),
            &[],
        )
        .await;
        assert_eq!(fault_code(&xml).as_deref(), Some("XSV-350024"));
    }
    let xml = call_from(
        &app,
        sprayer,
        "xtk:session#Logon",
        logon_body("jdoe", OPERATOR_PASSWORD),
        &[],
    )
    .await;
    assert_eq!(
        fault_code(&xml).as_deref(),
        Some("XSV-350024"),
        "the address is locked: {xml}"
    );
    let xml = call_from(
        &app,
        office,
        "xtk:session#Logon",
        logon_body("jdoe", OPERATOR_PASSWORD),
        &[],
    )
    .await;
    assert!(xml.contains("pstrSessionToken"), "another address is not: {xml}");
}

#[tokio::test]
async fn console_sign_in_applies_the_same_decisions_as_logon() {
    // 8.6: native sign-in only for the allow-list, on both paths.
    let (inst, _, _dir) = instance_with("8.6.0").await;
    let app = router(InstanceState {
        instance: Arc::new(inst),
        tls: false,
    });
    let (status, headers, _) = console_sign_in(&app, "jdoe", OPERATOR_PASSWORD).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(set_cookie(&headers, "ims_console").is_none());
    let (_, xml) = call(
        &app,
        "xtk:session#Logon",
        logon_body("jdoe", OPERATOR_PASSWORD),
        &[],
    )
    .await;
    assert_eq!(fault_code(&xml).as_deref(), Some("XSV-350024"));
    // 7.4.1: signed in, then disabled: the console session is refused at once.
    let (inst, store, _dir) = instance_with("7.4.1").await;
    let app = router(InstanceState {
        instance: Arc::new(inst),
        tls: false,
    });
    let (status, headers, _) = console_sign_in(&app, "jdoe", OPERATOR_PASSWORD).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let jdoe_c = format!(
        "ims_console={}",
        cookie_value(set_cookie(&headers, "ims_console").unwrap())
    );
    assert_eq!(
        page(&app, "GET", "/console/", &jdoe_c, &[]).await.0,
        StatusCode::OK
    );
    let mut jdoe = store.operator_by_login("jdoe").await.unwrap().unwrap();
    jdoe.disabled = true;
    let ctx = ims_core::audit::Context::new(Now::system(), "test");
    store
        .update_operator(
            &jdoe,
            false,
            &ctx.event("operator.update", "jdoe", "success", json!({})),
        )
        .await
        .unwrap();
    let (status, headers, _) = page(&app, "GET", "/console/", &jdoe_c, &[]).await;
    assert_eq!(
        (status, headers["location"].to_str().unwrap()),
        (StatusCode::SEE_OTHER, "/console/login")
    );
    assert_eq!(
        console_sign_in(&app, "jdoe", OPERATOR_PASSWORD).await.0,
        StatusCode::UNAUTHORIZED
    );
}
