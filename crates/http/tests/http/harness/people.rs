//! People and their browsers: the IMS sign-in pages, authorization codes and their tokens.

use axum::body::Body;
use axum::Router;
use http::{Request, StatusCode};
use http_body_util::BodyExt as _;
use ims_core::audit::Context;
use ims_core::secret::Secret;
use ims_core::Now;
use ims_identity::model::ClientType;
use ims_identity::people::{self, NewUser};
use serde_json::Value;
use tower::ServiceExt as _;

use super::*;

pub(crate) const PASSWORD: &str = "a long enough passphrase";

pub(crate) const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";

const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

pub(crate) const REDIRECT: &str = "https://app.test/cb";

/// A browser: its cookies, kept across requests.
#[derive(Default, Clone)]
pub(crate) struct Browser {
    pub(crate) cookies: Vec<(String, String)>,
}

impl Browser {
    fn header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    fn keep(&mut self, headers: &http::HeaderMap) {
        for line in headers
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
        {
            let pair = line.split(';').next().unwrap();
            let (k, v) = pair.split_once('=').unwrap();
            self.cookies.retain(|(n, _)| n != k);
            if !v.is_empty() && !line.contains("Max-Age=0") {
                self.cookies.push((k.to_owned(), v.to_owned()));
            }
        }
    }

    pub(crate) fn has(&self, name: &str) -> bool {
        self.cookies.iter().any(|(k, _)| k == name)
    }

    pub(crate) async fn get(&mut self, app: &Router, path: &str) -> (StatusCode, http::HeaderMap, String) {
        let req = Request::get(path)
            .header("cookie", self.header())
            .body(Body::empty())
            .unwrap();
        self.send(app, req).await
    }

    pub(crate) async fn post(
        &mut self,
        app: &Router,
        path: &str,
        pairs: &[(&str, &str)],
    ) -> (StatusCode, http::HeaderMap, String) {
        let req = Request::post(path)
            .header("cookie", self.header())
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Body::from(encode(pairs)))
            .unwrap();
        self.send(app, req).await
    }

    async fn send(&mut self, app: &Router, req: Request<Body>) -> (StatusCode, http::HeaderMap, String) {
        let resp = app.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        self.keep(&headers);
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        (status, headers, String::from_utf8_lossy(&bytes).into_owned())
    }
}

pub(crate) fn location(headers: &http::HeaderMap) -> String {
    headers["location"].to_str().unwrap().to_owned()
}

pub(crate) fn query_of(uri: &str) -> std::collections::HashMap<String, String> {
    url::Url::parse(uri).unwrap().query_pairs().into_owned().collect()
}

impl Harness {
    pub(crate) async fn person(&self, email: &str) -> ims_identity::model::User {
        people::create_user(
            self.store.as_ref(),
            &self.org_id,
            NewUser {
                email: email.into(),
                first_name: "Jane".into(),
                last_name: "Doe".into(),
                country: Some("fr".into()),
                identity_type: ims_identity::model::IdentityType::EnterpriseId,
                password: Some(Secret::new(PASSWORD)),
            },
            &Context::new(Now::system(), "test"),
        )
        .await
        .unwrap()
    }

    /// A public client (PKCE only) redirecting to [`REDIRECT`].
    pub(crate) async fn app_client(&self) -> String {
        self.people_client(true).await
    }

    pub(crate) async fn people_client(&self, first_party: bool) -> String {
        let (c, secret) = self
            .creds
            .create_people_client(
                &self.org_id,
                ims_identity::credentials::NewPeopleClient {
                    name: "Example app",
                    client_type: ClientType::Public,
                    redirect_uris: vec![REDIRECT.into(), "http://127.0.0.1/native".into()],
                    scopes: vec![
                        "openid".into(),
                        "email".into(),
                        "profile".into(),
                        "AdobeID".into(),
                        "additional_info.projectedProductContext".into(),
                        "user_management_sdk".into(),
                        "adobeio_api".into(),
                    ],
                    first_party,
                },
                &Context::new(Now::system(), "test"),
            )
            .await
            .unwrap();
        assert!(secret.is_none(), "public clients have no secret");
        c.client_id
    }
}

pub(crate) fn authorize_path(client_id: &str, extra: &[(&str, &str)]) -> String {
    let mut pairs = vec![
        ("client_id", client_id),
        ("redirect_uri", REDIRECT),
        ("response_type", "code"),
        ("scope", "openid email profile"),
        ("state", "st-1"),
        ("nonce", "n-1"),
        ("code_challenge", CHALLENGE),
        ("code_challenge_method", "S256"),
    ];
    for (k, v) in extra {
        pairs.retain(|(n, _)| n != k);
        pairs.push((k, v));
    }
    format!("/ims/authorize/v2?{}", encode(&pairs))
}

/// Runs the sign-in pages to the end; returns the redirect to the client.
pub(crate) async fn sign_in(
    h: &Harness,
    b: &mut Browser,
    client_id: &str,
    email: &str,
    password: &str,
) -> (StatusCode, String) {
    sign_in_at(h, b, &authorize_path(client_id, &[]), email, password).await
}

/// The IMS sign-in pages from the authorization request at `path` (on the IMS): email,
/// then password. The last answer: a redirect and where it goes, or the page.
pub(crate) async fn sign_in_at(
    h: &Harness,
    b: &mut Browser,
    path: &str,
    email: &str,
    password: &str,
) -> (StatusCode, String) {
    let (status, headers, _) = b.get(&h.app, path).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let page = location(&headers);
    assert!(page.starts_with("/ims/signin/imsfl_"), "{page}");
    let (_, _, html) = b.get(&h.app, &page).await;
    let (status, headers, _) = b
        .post(&h.app, &page, &[("csrf", &csrf_in(&html)), ("email", email)])
        .await;
    assert_eq!(
        (status, location(&headers)),
        (StatusCode::SEE_OTHER, page.clone())
    );
    let (_, _, html) = b.get(&h.app, &page).await;
    assert!(html.contains(r#"type="password""#), "{html}");
    let (status, headers, html) = b
        .post(
            &h.app,
            &page,
            &[("csrf", &csrf_in(&html)), ("password", password)],
        )
        .await;
    if status == StatusCode::SEE_OTHER {
        (status, location(&headers))
    } else {
        (status, html)
    }
}

pub(crate) async fn redeem(h: &Harness, client_id: &str, code: &str) -> (StatusCode, Value) {
    let (status, _, body) = h
        .call(form(
            "/ims/token/v3",
            &[
                ("grant_type", "authorization_code"),
                ("client_id", client_id),
                ("code", code),
                ("redirect_uri", REDIRECT),
                ("code_verifier", VERIFIER),
            ],
        ))
        .await;
    (status, body)
}

pub(crate) async fn refresh(
    h: &Harness,
    client_id: &str,
    token: &str,
    scope: Option<&str>,
) -> (StatusCode, Value) {
    let mut pairs = vec![
        ("grant_type", "refresh_token"),
        ("client_id", client_id),
        ("refresh_token", token),
    ];
    if let Some(s) = scope {
        pairs.push(("scope", s));
    }
    let (status, _, body) = h.call(form("/ims/token/v3", &pairs)).await;
    (status, body)
}
