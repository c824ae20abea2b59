//! The directory: product instances and profiles, people's tokens, the User Management API and
//! the Admin Console.

use axum::body::Body;
use http::{Request, StatusCode};
use http_body_util::BodyExt as _;
use ims_core::audit::Context;
use ims_core::Now;
use tower::ServiceExt as _;

use super::*;

/// A person's access token from the sign-in flow (people tokens are issued to a people
/// client, whose id is the token's `client_id`).
pub(crate) async fn person_token(h: &Harness, email: &str, password: &str) -> (String, String) {
    let client = h.app_client().await;
    let mut b = Browser::default();
    // A first-party application that also reads the person's product profiles.
    let path = authorize_path(
        &client,
        &[(
            "scope",
            "openid email profile additional_info.projectedProductContext user_management_sdk adobeio_api",
        )],
    );
    let (status, to) = sign_in_at(h, &mut b, &path, email, password).await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{to}");
    let q = query_of(&to);
    let (status, body) = redeem(h, &client, &q["code"]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    (body["access_token"].as_str().unwrap().to_owned(), client)
}

pub(crate) fn req(
    method: &str,
    path: &str,
    token: Option<&str>,
    api_key: Option<&str>,
    body: Option<&str>,
) -> Request<Body> {
    let mut b = Request::builder().method(method).uri(path);
    if let Some(t) = token {
        b = b.header("authorization", format!("Bearer {t}"));
    }
    if let Some(k) = api_key {
        b = b.header("x-api-key", k);
    }
    b = b.header("content-type", "application/json");
    b.body(Body::from(body.unwrap_or_default().to_owned())).unwrap()
}

/// The `marketing` Campaign product instance, with a product profile of it when `profile`
/// is given (name, permission items, licence quota).
pub(crate) async fn marketing(
    h: &Harness,
    profile: Option<(&str, Vec<String>, Option<i64>)>,
) -> (
    ims_identity::directory::ProductInstance,
    Option<ims_identity::directory::Group>,
) {
    let instance = ims_identity::store::DirectoryStore::ensure_product_instance(
        h.store.as_ref(),
        &h.org_id,
        "dma_campaign_classic",
        "marketing",
        "Campaign",
        "https://127.0.0.1:1",
        Now::system(),
    )
    .await
    .unwrap();
    let group = match profile {
        Some((name, permissions, quota)) => Some(
            service::directory::create_product_profile(
                h.store.as_ref(),
                &instance,
                name,
                permissions,
                quota,
                &Context::new(Now::system(), "test"),
            )
            .await
            .unwrap(),
        ),
        None => None,
    };
    (instance, group)
}

/// Signs in to the Admin Console as a browser does (the console's client, the IMS sign-in
/// pages, the callback); returns the console's cookie value.
pub(crate) async fn console_token(h: &Harness, email: &str, password: &str) -> String {
    let mut b = Browser::default();
    let (status, headers, _) = b.get(&h.app, "/admin/login").await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let (status, callback) = sign_in_at(h, &mut b, &location(&headers), email, password).await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{callback}");
    let local = callback.strip_prefix(ISSUER).expect("back to the console");
    assert!(local.starts_with("/admin/callback?"), "{callback}");
    let (status, headers, body) = b.get(&h.app, local).await;
    assert_eq!(
        (status, location(&headers).as_str()),
        (StatusCode::SEE_OTHER, "/admin/"),
        "{body}"
    );
    b.cookies
        .iter()
        .find(|(k, _)| k == "ims_admin")
        .expect("the console cookie")
        .1
        .clone()
}

pub(crate) async fn page_as(
    h: &Harness,
    method: &str,
    path: &str,
    token: Option<&str>,
    form: &str,
) -> (StatusCode, http::HeaderMap, String) {
    let mut b = Request::builder().method(method).uri(path);
    if let Some(t) = token {
        b = b.header("cookie", format!("ims_admin={t}"));
    }
    if method == "POST" {
        b = b.header("content-type", "application/x-www-form-urlencoded");
    }
    let resp = h
        .app
        .clone()
        .oneshot(b.body(Body::from(form.to_owned())).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (status, headers, String::from_utf8_lossy(&bytes).into_owned())
}
