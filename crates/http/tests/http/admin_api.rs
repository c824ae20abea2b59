//! The administration API: denied by default, credentials administered, the shared lock-out.

use axum::body::Body;
use axum::Router;
use http::{Request, StatusCode};
use ims_core::audit::Context;
use ims_core::Now;
use serde_json::{json, Value};

use crate::harness::*;

fn admin_router(h: &Harness) -> Router {
    ims_http::ims::admin::router(h.state.clone())
}

fn admin_req(method: &str, path: &str, auth: Option<(&str, &str)>, body: Option<Value>) -> Request<Body> {
    let mut b = Request::builder().method(method).uri(path);
    if let Some((u, p)) = auth {
        b = b.header("authorization", basic(u, p));
    }
    match body {
        Some(v) => b
            .header("content-type", "application/json")
            .body(Body::from(v.to_string()))
            .unwrap(),
        None => b.body(Body::empty()).unwrap(),
    }
}

#[tokio::test]
async fn admin_api_denies_by_default_and_administers_credentials() {
    let h = harness().await;
    let admin = admin_router(&h);
    let good = Some(("admin@acme.test", ADMIN_PASSWORD));
    // Every route refuses without administrator credentials, and with wrong ones.
    let routes = [
        ("GET", "/admin/v1/credentials"),
        ("POST", "/admin/v1/credentials"),
        ("POST", "/admin/v1/credentials/x/disable"),
        ("POST", "/admin/v1/credentials/x/enable"),
        ("POST", "/admin/v1/credentials/x/secrets"),
        ("DELETE", "/admin/v1/credentials/x/secrets/y"),
    ];
    // (A wrong password for the administrator on one route only: guesses count towards its
    // lock-out, which `the_administration_api_shares_the_sign_in_lock_out` covers.)
    for (i, (method, path)) in routes.into_iter().enumerate() {
        let wrong = if i == 0 {
            ("admin@acme.test", "wrong")
        } else {
            ("someone.else@acme.test", "wrong")
        };
        for auth in [None, Some(wrong), Some(("nobody@acme.test", ADMIN_PASSWORD))] {
            let (status, headers, body) =
                send(&admin, admin_req(method, path, auth, Some(json!({"name": "n"})))).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {path} {auth:?}");
            assert_eq!(headers["content-type"], "application/problem+json");
            assert_eq!(headers["www-authenticate"], "Basic realm=\"ims-admin\"");
            assert_eq!(body["code"], "invalid_client");
        }
    }
    // A technical account's own credentials are not an administrator's.
    let c = h.credential(&["openid"]).await;
    let (status, _, _) = send(
        &admin,
        admin_req(
            "GET",
            "/admin/v1/credentials",
            Some((&c.client.client_id, c.secret.expose())),
            None,
        ),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // Create, use, list, rotate, disable.
    let (status, headers, created) = send(
        &admin,
        admin_req(
            "POST",
            "/admin/v1/credentials",
            good,
            Some(json!({"name": "From the API", "scopes": ["openid"]})),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(headers["cache-control"], "no-store");
    let id = created["client_id"].as_str().unwrap().to_owned();
    let (status, _, _) = h.cc(&id, created["client_secret"].as_str().unwrap(), &[]).await;
    assert_eq!(status, StatusCode::OK);
    let (_, _, list) = send(&admin, admin_req("GET", "/admin/v1/credentials", good, None)).await;
    assert!(list
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["client_id"] == id.as_str()));
    assert!(!list
        .to_string()
        .contains(created["client_secret"].as_str().unwrap()));
    let (status, _, second) = send(
        &admin,
        admin_req(
            "POST",
            &format!("/admin/v1/credentials/{id}/secrets"),
            good,
            Some(json!({"expires_in_days": 30})),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    assert!(second["expires_at"].as_i64().is_some());
    let old = created["secret_id"].as_str().unwrap();
    let (status, _, _) = send(
        &admin,
        admin_req(
            "DELETE",
            &format!("/admin/v1/credentials/{id}/secrets/{old}"),
            good,
            None,
        ),
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _, body) = send(
        &admin,
        admin_req(
            "DELETE",
            &format!("/admin/v1/credentials/{id}/secrets/{old}"),
            good,
            None,
        ),
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("not_found"))
    );
    let (status, _, _) = send(
        &admin,
        admin_req("POST", &format!("/admin/v1/credentials/{id}/disable"), good, None),
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _, _) = h.cc(&id, second["client_secret"].as_str().unwrap(), &[]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // Bad input: problem details, nothing created.
    for body in [
        json!({"nom": "x"}),
        json!({"name": ""}),
        json!({"name": "x", "scopes": ["a b"]}),
        json!([1]),
    ] {
        let (status, headers, problem) = send(
            &admin,
            admin_req("POST", "/admin/v1/credentials", good, Some(body.clone())),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {problem}");
        assert_eq!(headers["content-type"], "application/problem+json");
    }
    let (status, _, _) = send(
        &admin,
        admin_req("POST", "/admin/v1/credentials/unknown/disable", good, None),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // The audit log names the administrator.
    let events = h.audit("credential.").await;
    assert!(events
        .iter()
        .any(|e| e.actor == "admin:admin@acme.test" && e.action == "credential.create"));
    assert!(events.iter().all(|e| !e.details.to_string().contains("imscs_")));
}

/// The attack: twenty wrong passwords in a burst, then the right one. The administration API
/// counts guesses with the sign-in pages' counter (case variants of the email included), refuses
/// the right password while locked, and refuses a disabled administrator at once.
#[tokio::test]
async fn the_administration_api_shares_the_sign_in_lock_out() {
    let h = harness().await;
    let admin = admin_router(&h);
    let list = |email: &'static str, password: &'static str| {
        admin_req("GET", "/admin/v1/credentials", Some((email, password)), None)
    };
    let (status, _, body) = send(&admin, list("admin@acme.test", ADMIN_PASSWORD)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    for i in 0..20 {
        let email = if i % 2 == 0 {
            "admin@acme.test"
        } else {
            "ADMIN@Acme.Test"
        };
        let (status, _, _) = send(&admin, list(email, "wrong guess")).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    let (status, _, body) = send(&admin, list("admin@acme.test", ADMIN_PASSWORD)).await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "locked: the right password is refused too"
    );
    assert_eq!(
        body["code"], "invalid_client",
        "the same answer as a wrong password"
    );
    let failures = h.audit("user.sign_in").await;
    assert!(
        failures.iter().any(|e| e.outcome == "failure"
            && e.details["factor"] == "admin_api"
            && e.details["was_locked"] == true),
        "{failures:?}"
    );
    let h2 = harness().await;
    let admin2 = admin_router(&h2);
    let user =
        ims_identity::store::UserStore::user_by_email(h2.store.as_ref(), &h2.org_id, "admin@acme.test")
            .await
            .unwrap()
            .unwrap();
    let ctx = Context::new(Now::system(), "test");
    ims_identity::people::change_user(
        h2.store.as_ref(),
        &user.user_id,
        ims_identity::people::UserChange::SetStatus(ims_identity::model::UserStatus::Disabled),
        &ctx,
    )
    .await
    .unwrap();
    let (status, _, _) = send(&admin2, list("admin@acme.test", ADMIN_PASSWORD)).await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "a disabled administrator is refused"
    );
    let (status, _, _) = send(
        &admin2,
        admin_req(
            "POST",
            "/admin/v1/credentials",
            Some(("admin@acme.test", ADMIN_PASSWORD)),
            Some(json!({"name": "n"})),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "and creates nothing");
}

/// The administration API counts failures per client address too: guesses spread over many
/// emails from one address lock that address, not others.
#[tokio::test]
async fn the_administration_api_counts_failures_per_address() {
    let h = harness().await;
    let admin = admin_router(&h);
    let from = |source: &str, email: &str, password: &str| {
        let mut req = admin_req("GET", "/admin/v1/credentials", Some((email, password)), None);
        let addr: std::net::SocketAddr = format!("{source}:50000").parse().unwrap();
        req.extensions_mut().insert(axum::extract::ConnectInfo(addr));
        req
    };
    for i in 0..=ims_identity::service::ADDRESS_FREE_FAILURES {
        let (status, _, _) = send(
            &admin,
            from("203.0.113.9", &format!("guess{i}@acme.test"), "wrong"),
        )
        .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    let (status, _, _) = send(&admin, from("203.0.113.9", "admin@acme.test", ADMIN_PASSWORD)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "the address is locked");
    let (status, _, body) = send(&admin, from("203.0.113.10", "admin@acme.test", ADMIN_PASSWORD)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}
