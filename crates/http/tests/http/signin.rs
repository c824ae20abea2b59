//! People signing in at the IMS: the code flow with PKCE, authorization errors, codes, refresh
//! tokens, consent and max_age.

use axum::body::Body;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use http::{Request, StatusCode};
use ims_core::audit::Context;
use ims_core::keys::Algorithm;
use ims_core::Now;
use ims_identity::service::{ClientAuth, TokenRequest};
use serde_json::{json, Value};

use crate::harness::*;

fn ctx_at(offset_secs: i64) -> Context {
    Context::new(Now::system().plus_secs(offset_secs), "test")
}

fn code_request(client_id: &str, code: &str) -> TokenRequest {
    TokenRequest {
        grant_type: Some("authorization_code".into()),
        auth: ClientAuth::None {
            client_id: client_id.into(),
        },
        scope: None,
        org_id: None,
        code: Some(code.into()),
        redirect_uri: Some(REDIRECT.into()),
        code_verifier: Some(VERIFIER.into()),
        refresh_token: None,
    }
}

async fn userinfo_status(h: &Harness, token: &str) -> StatusCode {
    let req = Request::get("/ims/userinfo/v2")
        .header("authorization", format!("Bearer {token}"))
        .body(Body::empty())
        .unwrap();
    h.call(req).await.0
}

/// Signs in and returns a fresh code.
async fn code_for(h: &Harness, client: &str) -> String {
    let mut b = Browser::default();
    let (status, to) = sign_in(h, &mut b, client, "jane@example.com", PASSWORD).await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{to}");
    query_of(&to)["code"].clone()
}

#[tokio::test]
async fn code_flow_with_pkce_id_token_userinfo_and_a_second_client_without_prompt() {
    let h = harness().await;
    let user = h.person("Jane.Doe@Example.com").await;
    let client = h.app_client().await;
    let mut b = Browser::default();
    let (status, html) = sign_in(&h, &mut b, &client, "jane.doe@example.com", "wrong password").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(html.contains("incorrect"), "{html}");
    let (status, to) = sign_in(&h, &mut b, &client, "jane.doe@example.com", PASSWORD).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert!(to.starts_with(REDIRECT), "{to}");
    let q = query_of(&to);
    assert_eq!(q["state"], "st-1");
    assert_eq!(q["iss"], ISSUER);
    assert!(b.has("ims_sid") && b.has("ims_browser"));
    let (status, body) = redeem(&h, &client, &q["code"]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let id = claims(body["id_token"].as_str().unwrap());
    assert_eq!(id["iss"], ISSUER);
    assert_eq!(id["sub"], user.user_id.as_str());
    assert_eq!(id["aud"], client.as_str());
    assert_eq!(id["nonce"], "n-1");
    assert_eq!(id["amr"], json!(["pwd"]));
    assert!(id["auth_time"].as_i64().is_some() && id["exp"].as_i64() > id["iat"].as_i64());
    let header: Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(body["id_token"].as_str().unwrap().split('.').next().unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(header["alg"], "RS256", "ID tokens are RS256 by default");
    let at = claims(body["access_token"].as_str().unwrap());
    assert_eq!(at["type"], "access_token");
    assert_eq!(at["user_id"], user.user_id.as_str());
    assert_eq!(at["as"], "ims-na1");
    assert!(at["created_at"].is_string() && at["expires_in"].is_string());
    assert!(body["refresh_token"].as_str().unwrap().starts_with("imsrt_"));
    // userinfo, GET and POST: the same sub, claims of the granted scopes only.
    let token = body["access_token"].as_str().unwrap();
    for method in ["GET", "POST"] {
        let req = Request::builder()
            .method(method)
            .uri("/ims/userinfo/v2")
            .header("authorization", format!("Bearer {token}"))
            .body(Body::empty())
            .unwrap();
        let (status, _, info) = h.call(req).await;
        assert_eq!(status, StatusCode::OK, "{info}");
        assert_eq!(info["sub"], id["sub"]);
        assert_eq!(info["email"], "Jane.Doe@Example.com");
        assert_eq!(info["given_name"], "Jane");
        assert!(info.get("account_type").is_none(), "AdobeID was not granted");
    }
    // An ID token is not an access token.
    let req = Request::get("/ims/userinfo/v2")
        .header(
            "authorization",
            format!("Bearer {}", body["id_token"].as_str().unwrap()),
        )
        .body(Body::empty())
        .unwrap();
    assert_eq!(h.call(req).await.0, StatusCode::UNAUTHORIZED);
    // The same browser signs in again without a page; prompt=login asks again.
    let (status, headers, _) = b
        .get(&h.app, &authorize_path(&client, &[("state", "st-2")]))
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let again = query_of(&location(&headers));
    assert_eq!(again["state"], "st-2");
    assert!(again.contains_key("code"));
    let (_, headers, _) = b
        .get(&h.app, &authorize_path(&client, &[("prompt", "login")]))
        .await;
    assert!(location(&headers).starts_with("/ims/signin/"));
    // Another browser with prompt=none: login_required, state and iss kept.
    let (_, headers, _) = Browser::default()
        .get(&h.app, &authorize_path(&client, &[("prompt", "none")]))
        .await;
    let q = query_of(&location(&headers));
    assert_eq!(
        (q["error"].as_str(), q["state"].as_str(), q["iss"].as_str()),
        ("login_required", "st-1", ISSUER)
    );
    h.cleanup().await;
}

#[tokio::test]
async fn authorization_errors_are_pages_until_the_redirect_is_trusted() {
    let h = harness().await;
    let client = h.app_client().await;
    let mut b = Browser::default();
    // SECURITY 2: unknown client, unregistered redirect URI: a page, never a redirect.
    let (status, headers, _) = b.get(&h.app, &authorize_path("nobody", &[])).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(headers.get("location").is_none());
    // SECURITY 1: every variant of the registered URI is refused; a loopback port may vary.
    for bad in [
        "https://app.test/cb/",
        "https://app.test/cb?x=1",
        "https://app.test/cb#f",
        "https://APP.test/cb",
        "https://app.test:8443/cb",
        "https://user@app.test/cb",
        "https://app.test/CB",
        "http://app.test/cb",
    ] {
        let (status, headers, _) = b
            .get(&h.app, &authorize_path(&client, &[("redirect_uri", bad)]))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
        assert!(headers.get("location").is_none(), "{bad}");
    }
    let (status, headers, _) = b
        .get(
            &h.app,
            &authorize_path(&client, &[("redirect_uri", "http://127.0.0.1:61234/native")]),
        )
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert!(location(&headers).starts_with("/ims/signin/"));
    // SECURITY 3, 4, 5: errors go back with state and iss.
    for (extra, error) in [
        (vec![("response_type", "token")], "unsupported_response_type"),
        (
            vec![("response_type", "code id_token")],
            "unsupported_response_type",
        ),
        (vec![("response_type", "")], "invalid_request"),
    ] {
        let (_, headers, _) = b.get(&h.app, &authorize_path(&client, &extra)).await;
        let q = query_of(&location(&headers));
        assert_eq!(
            (q["error"].as_str(), q["state"].as_str(), q["iss"].as_str()),
            (error, "st-1", ISSUER),
            "{extra:?}"
        );
    }
    let repeated = format!("{}&scope=openid", authorize_path(&client, &[]));
    let (_, headers, _) = b.get(&h.app, &repeated).await;
    assert_eq!(query_of(&location(&headers))["error"], "invalid_request");
    let (_, headers, _) = b
        .get(&h.app, &authorize_path(&client, &[("unknown_param", "x")]))
        .await;
    assert!(
        location(&headers).starts_with("/ims/signin/"),
        "unknown parameters are ignored"
    );
    // SECURITY 6: the sign-in pages' headers, nothing third-party, no script; POST answers 303.
    let (_, headers, _) = b.get(&h.app, &authorize_path(&client, &[])).await;
    let page = location(&headers);
    let (status, headers, html) = b.get(&h.app, &page).await;
    assert_eq!(status, StatusCode::OK);
    let csp = headers["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("frame-ancestors 'none'") && csp.contains("default-src 'none'"),
        "{csp}"
    );
    assert_eq!(headers["referrer-policy"], "no-referrer");
    assert_eq!(headers["x-frame-options"], "DENY");
    assert!(
        !html.contains("<script") && !html.contains("http://") && !html.contains("https://"),
        "{html}"
    );
    let (status, _, _) = b
        .post(
            &h.app,
            &page,
            &[("csrf", "forged"), ("email", "jane@example.com")],
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "CSRF token required");
    let (status, _, _) = b
        .post(
            &h.app,
            &page,
            &[("csrf", &csrf_in(&html)), ("email", "jane@example.com")],
        )
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    // A flow is bound to its browser.
    let (status, _, _) = Browser::default().get(&h.app, &page).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    h.cleanup().await;
}

#[tokio::test]
async fn pkce_codes_and_their_bindings() {
    let h = harness().await;
    h.person("jane@example.com").await;
    let client = h.app_client().await;
    let other = h.app_client().await;
    let mut b = Browser::default();
    // SECURITY 8: no challenge, plain, or a malformed one: refused at the authorization endpoint.
    for extra in [
        vec![("code_challenge", "")],
        vec![("code_challenge_method", "plain")],
        vec![("code_challenge_method", "")],
        vec![("code_challenge", "tooshort")],
    ] {
        let (_, headers, _) = b.get(&h.app, &authorize_path(&client, &extra)).await;
        assert_eq!(
            query_of(&location(&headers))["error"],
            "invalid_request",
            "{extra:?}"
        );
    }
    let code = code_for(&h, &client).await;
    let attempt = |pairs: Vec<(&'static str, String)>| {
        let h = &h;
        async move {
            let p: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let (status, _, body) = h.call(form("/ims/token/v3", &p)).await;
            (status, body["error"].as_str().unwrap_or_default().to_owned())
        }
    };
    let base = |client: &str, verifier: &str, redirect: &str| {
        vec![
            ("grant_type", "authorization_code".to_owned()),
            ("client_id", client.to_owned()),
            ("code", code.clone()),
            ("redirect_uri", redirect.to_owned()),
            ("code_verifier", verifier.to_owned()),
        ]
    };
    let wrong_verifier = "x".repeat(43);
    for (pairs, why) in [
        (base(&client, &wrong_verifier, REDIRECT), "wrong verifier"),
        (base(&client, "short", REDIRECT), "verifier too short"),
        (
            base(&client, VERIFIER, "http://127.0.0.1/native"),
            "another redirect URI",
        ),
        (base(&other, VERIFIER, REDIRECT), "another client"),
        (
            base(&client, VERIFIER, REDIRECT)
                .into_iter()
                .filter(|(k, _)| *k != "code_verifier")
                .collect(),
            "no verifier",
        ),
    ] {
        assert_eq!(
            attempt(pairs).await,
            (StatusCode::BAD_REQUEST, "invalid_grant".to_owned()),
            "{why}"
        );
    }
    // None of those consumed the code; SECURITY 10: a code dies after 60 s.
    let late = h
        .state
        .ims
        .tokens()
        .token(&code_request(&client, &code), &ctx_at(61))
        .await;
    assert_eq!(
        late.as_ref().map_err(ims_core::Error::kind).err(),
        Some(ims_core::ErrorKind::InvalidGrant),
        "{late:?}"
    );
    let (status, body) = redeem(&h, &client, &code).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // SECURITY 11: 256-bit codes, recognisable prefix.
    assert!(code.starts_with("imsac_") && code.len() >= 6 + 43, "{code}");
    h.cleanup().await;
}

#[tokio::test]
async fn a_reused_code_fails_and_revokes_what_it_issued() {
    for db in [Db::Sqlite, Db::Postgres] {
        let Some(h) = harness_on(db, Algorithm::ES256).await else {
            continue;
        };
        h.person("jane@example.com").await;
        let client = h.app_client().await;
        let code = code_for(&h, &client).await;
        let (status, first) = redeem(&h, &client, &code).await;
        assert_eq!(status, StatusCode::OK);
        let access = first["access_token"].as_str().unwrap().to_owned();
        assert_eq!(userinfo_status(&h, &access).await, StatusCode::OK);
        let (status, again) = redeem(&h, &client, &code).await;
        assert_eq!(
            (status, again["error"].as_str()),
            (StatusCode::BAD_REQUEST, Some("invalid_grant")),
            "{db:?}"
        );
        assert_eq!(
            userinfo_status(&h, &access).await,
            StatusCode::UNAUTHORIZED,
            "{db:?}: access token revoked"
        );
        let (status, body) = refresh(&h, &client, first["refresh_token"].as_str().unwrap(), None).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (StatusCode::BAD_REQUEST, Some("invalid_grant")),
            "{db:?}: refresh revoked"
        );
        // SECURITY 9: 50 redemptions at once, exactly one success.
        let code = code_for(&h, &client).await;
        let mut tasks = Vec::new();
        for _ in 0..50 {
            let app = h.app.clone();
            let client = client.clone();
            let code = code.clone();
            tasks.push(tokio::spawn(async move {
                let req = form(
                    "/ims/token/v3",
                    &[
                        ("grant_type", "authorization_code"),
                        ("client_id", &client),
                        ("code", &code),
                        ("redirect_uri", REDIRECT),
                        ("code_verifier", VERIFIER),
                    ],
                );
                send(&app, req).await.0
            }));
        }
        let mut ok = 0;
        for t in tasks {
            match t.await.unwrap() {
                StatusCode::OK => ok += 1,
                StatusCode::BAD_REQUEST => {}
                other => panic!("{db:?}: unexpected {other}"),
            }
        }
        assert_eq!(ok, 1, "{db:?}");
        h.cleanup().await;
    }
}

#[tokio::test]
async fn refresh_tokens_rotate_and_a_reuse_revokes_the_family() {
    for db in [Db::Sqlite, Db::Postgres] {
        let Some(h) = harness_on(db, Algorithm::ES256).await else {
            continue;
        };
        h.person("jane@example.com").await;
        let client = h.app_client().await;
        let other = h.app_client().await;
        let (_, first) = redeem(&h, &client, &code_for(&h, &client).await).await;
        let rt1 = first["refresh_token"].as_str().unwrap().to_owned();
        // Another client's refresh attempt fails and does not consume the token.
        let (status, body) = refresh(&h, &other, &rt1, None).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (StatusCode::BAD_REQUEST, Some("invalid_grant"))
        );
        // A wider scope fails and does not consume it either; a narrower one is granted.
        let (status, body) = refresh(&h, &client, &rt1, Some("openid email AdobeID")).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (StatusCode::BAD_REQUEST, Some("invalid_scope")),
            "{body}"
        );
        let (status, second) = refresh(&h, &client, &rt1, Some("openid email")).await;
        assert_eq!(status, StatusCode::OK, "{second}");
        assert_eq!(second["scope"], "openid email");
        let rt2 = second["refresh_token"].as_str().unwrap().to_owned();
        assert_ne!(rt1, rt2, "rotated");
        // Replaying rt1 revokes the whole family: rt2 and its access token too.
        let (status, _) = refresh(&h, &client, &rt1, None).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        let (status, _) = refresh(&h, &client, &rt2, None).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{db:?}: family revoked");
        assert_eq!(
            userinfo_status(&h, second["access_token"].as_str().unwrap()).await,
            StatusCode::UNAUTHORIZED
        );
        // Concurrent refreshes of one token: one success.
        let (_, fresh) = redeem(&h, &client, &code_for(&h, &client).await).await;
        let rt = fresh["refresh_token"].as_str().unwrap().to_owned();
        let mut tasks = Vec::new();
        for _ in 0..10 {
            let app = h.app.clone();
            let (client, rt) = (client.clone(), rt.clone());
            tasks.push(tokio::spawn(async move {
                send(
                    &app,
                    form(
                        "/ims/token/v3",
                        &[
                            ("grant_type", "refresh_token"),
                            ("client_id", &client),
                            ("refresh_token", &rt),
                        ],
                    ),
                )
                .await
                .0
            }));
        }
        let mut ok = 0;
        for t in tasks {
            if t.await.unwrap() == StatusCode::OK {
                ok += 1;
            }
        }
        assert_eq!(ok, 1, "{db:?}");
        // The absolute lifetime holds however often it rotates.
        let (_, fresh) = redeem(&h, &client, &code_for(&h, &client).await).await;
        let req = TokenRequest {
            grant_type: Some("refresh_token".into()),
            refresh_token: fresh["refresh_token"].as_str().map(str::to_owned),
            code: None,
            redirect_uri: None,
            code_verifier: None,
            ..code_request(&client, "")
        };
        let late = h.state.ims.tokens().token(&req, &ctx_at(31 * 86_400)).await;
        assert_eq!(
            late.as_ref().map_err(ims_core::Error::kind).err(),
            Some(ims_core::ErrorKind::InvalidGrant),
            "{late:?}"
        );
        h.cleanup().await;
    }
}

/// Third-party applications ask once for what they request; first-party ones never do.
#[tokio::test]
async fn third_party_applications_ask_for_consent_once() {
    let h = harness().await;
    h.person("jane@example.com").await;
    let third = h.people_client(false).await;
    let mut b = Browser::default();
    let (status, page) = sign_in(&h, &mut b, &third, "jane@example.com", PASSWORD).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert!(
        page.starts_with("/ims/signin/"),
        "the consent page, not the client: {page}"
    );
    assert!(b.has("ims_sid"), "signed in already");
    let (_, _, html) = b.get(&h.app, &page).await;
    assert!(
        html.contains("Example app") && html.contains("see your email address"),
        "{html}"
    );
    // Denied: back to the client with access_denied.
    let (_, headers, _) = b
        .post(&h.app, &page, &[("csrf", &csrf_in(&html)), ("consent", "deny")])
        .await;
    let q = query_of(&location(&headers));
    assert_eq!(
        (q["error"].as_str(), q["state"].as_str()),
        ("access_denied", "st-1")
    );
    // prompt=none cannot ask: consent_required.
    let (_, headers, _) = b
        .get(&h.app, &authorize_path(&third, &[("prompt", "none")]))
        .await;
    assert_eq!(query_of(&location(&headers))["error"], "consent_required");
    // Asked again (the session stands, no password), allowed, remembered.
    let (_, headers, _) = b.get(&h.app, &authorize_path(&third, &[])).await;
    let page = location(&headers);
    let (_, _, html) = b.get(&h.app, &page).await;
    assert!(html.contains(r#"value="allow""#), "{html}");
    let (_, headers, _) = b
        .post(&h.app, &page, &[("csrf", &csrf_in(&html)), ("consent", "allow")])
        .await;
    let code = query_of(&location(&headers))["code"].clone();
    assert_eq!(redeem(&h, &third, &code).await.0, StatusCode::OK);
    let (_, headers, _) = b
        .get(&h.app, &authorize_path(&third, &[("prompt", "none")]))
        .await;
    assert!(query_of(&location(&headers)).contains_key("code"), "remembered");
    // A wider request asks again.
    let (_, headers, _) = b
        .get(
            &h.app,
            &authorize_path(&third, &[("scope", "openid email AdobeID")]),
        )
        .await;
    assert!(location(&headers).starts_with("/ims/signin/"));
    h.cleanup().await;
}

/// SECURITY 7: max_age forces a new sign-in once the session is older; auth_time says when.
#[tokio::test]
async fn max_age_forces_a_fresh_sign_in() {
    let h = harness().await;
    h.person("jane@example.com").await;
    let client = h.app_client().await;
    let mut b = Browser::default();
    sign_in(&h, &mut b, &client, "jane@example.com", PASSWORD).await;
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let (_, headers, _) = b
        .get(&h.app, &authorize_path(&client, &[("max_age", "3600")]))
        .await;
    let q = query_of(&location(&headers));
    let (_, tokens) = redeem(&h, &client, &q["code"]).await;
    let id = claims(tokens["id_token"].as_str().unwrap());
    assert!(
        id["auth_time"].as_i64().unwrap() < id["iat"].as_i64().unwrap(),
        "the original sign-in time"
    );
    let (_, headers, _) = b.get(&h.app, &authorize_path(&client, &[("max_age", "0")])).await;
    assert!(
        location(&headers).starts_with("/ims/signin/"),
        "too old: sign in again"
    );
    let (_, headers, _) = b
        .get(
            &h.app,
            &authorize_path(&client, &[("max_age", "0"), ("prompt", "none")]),
        )
        .await;
    assert_eq!(query_of(&location(&headers))["error"], "login_required");
    h.cleanup().await;
}

/// RFC 7009 for people's tokens: a public client revokes its refresh token by naming itself;
/// the family and its access tokens end; another client's attempt changes nothing.
#[tokio::test]
async fn a_public_client_revokes_its_refresh_token() {
    let h = harness().await;
    h.person("jane@example.com").await;
    let client = h.app_client().await;
    let other = h.app_client().await;
    let (_, tokens) = redeem(&h, &client, &code_for(&h, &client).await).await;
    let rt = tokens["refresh_token"].as_str().unwrap();
    let access = tokens["access_token"].as_str().unwrap();
    let revoke = |id: &str| {
        form(
            "/ims/revoke/v1",
            &[
                ("client_id", id),
                ("token", rt),
                ("token_type_hint", "refresh_token"),
            ],
        )
    };
    let (status, _, _) = h.call(revoke(&other)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        userinfo_status(&h, access).await,
        StatusCode::OK,
        "another client's revocation changed nothing"
    );
    let (status, _, _) = h.call(revoke(&client)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(refresh(&h, &client, rt, None).await.0, StatusCode::BAD_REQUEST);
    assert_eq!(
        userinfo_status(&h, access).await,
        StatusCode::UNAUTHORIZED,
        "its access token ended with it"
    );
    // A client that is not public still has to authenticate.
    let (status, _, body) = h
        .call(form("/ims/revoke/v1", &[("client_id", "unknown"), ("token", rt)]))
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("invalid_client"))
    );
    h.cleanup().await;
}
