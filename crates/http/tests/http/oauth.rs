//! The token family: client credentials, client authentication, grants and scopes, revocation,
//! introspection and the vendor's validation endpoints.

use axum::body::Body;
use http::{Request, StatusCode};
use ims_core::keys::Algorithm;
use ims_core::Now;
use serde_json::json;

use crate::harness::*;

#[tokio::test]
async fn client_credentials_issues_a_vendor_shaped_token() {
    for db in [Db::Sqlite, Db::Postgres] {
        let Some(h) = harness_on(db, Algorithm::ES256).await else {
            continue;
        };
        let c = h.credential(&["openid", "AdobeID", "read_organizations"]).await;
        let before = Now::system().millis();
        let (status, headers, body) = h
            .call(form(
                "/ims/token/v2",
                &[
                    ("grant_type", "client_credentials"),
                    ("client_id", &c.client.client_id),
                    ("client_secret", c.secret.expose()),
                    ("scope", "openid,AdobeID"),
                ],
            ))
            .await;
        assert_eq!(status, StatusCode::OK, "{db:?}: {body}");
        assert_eq!(headers["cache-control"], "no-store");
        assert_eq!(body["token_type"], "bearer");
        assert_eq!(body["expires_in"], 3600);
        assert!(
            body.get("refresh_token").is_none(),
            "client_credentials never yields a refresh token"
        );
        let token = body["access_token"].as_str().unwrap();
        let cl = claims(token);
        assert_eq!(cl["type"], "access_token");
        assert_eq!(cl["as"], "ims-na1");
        assert_eq!(cl["client_id"], c.client.client_id.as_str());
        assert_eq!(cl["user_id"], c.client.technical_account_id.as_str());
        assert_eq!(cl["sub"], c.client.technical_account_id.as_str());
        assert_eq!(cl["aud"], c.client.client_id.as_str());
        assert_eq!(cl["iss"], ISSUER);
        assert_eq!(cl["scope"], "openid,AdobeID");
        assert_eq!(cl["org"], h.org_id.as_str());
        let created: i64 = cl["created_at"].as_str().unwrap().parse().unwrap();
        assert!(created >= before && created <= Now::system().millis());
        assert_eq!(cl["expires_in"], "3600000", "milliseconds, as a string");
        assert_eq!(cl["exp"].as_i64().unwrap() - cl["iat"].as_i64().unwrap(), 3600);
        // The header names a key that the JWKS publishes.
        let kid = header(token)["kid"].as_str().unwrap().to_owned();
        assert_eq!(header(token)["alg"], "ES256");
        let (_, _, jwks) = h
            .call(Request::get("/ims/keys").body(Body::empty()).unwrap())
            .await;
        assert!(jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .any(|k| k["kid"] == kid.as_str()));
        h.cleanup().await;
    }
}

#[tokio::test]
async fn every_token_path_and_encoding_is_accepted() {
    let h = harness().await;
    let c = h.credential(&["openid"]).await;
    let (id, secret) = (c.client.client_id.as_str(), c.secret.expose());
    for path in [
        "/ims/token/v1",
        "/ims/token/v1/",
        "/ims/token/v2/",
        "/ims/token/v3",
        "/ims/token/v3/",
    ] {
        let (status, _, body) = h
            .call(form(
                path,
                &[
                    ("grant_type", "client_credentials"),
                    ("client_id", id),
                    ("client_secret", secret),
                ],
            ))
            .await;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
    }
    // HTTP Basic.
    let req = Request::post("/ims/token/v3")
        .header("content-type", "application/x-www-form-urlencoded")
        .header("authorization", basic(id, secret))
        .body(Body::from("grant_type=client_credentials&scope=openid"))
        .unwrap();
    assert_eq!(h.call(req).await.0, StatusCode::OK);
    // multipart/form-data, as aio-lib-ims sends it.
    let body = format!(
        "--b1\r\nContent-Disposition: form-data; name=\"grant_type\"\r\n\r\nclient_credentials\r\n--b1\r\nContent-Disposition: form-data; name=\"client_id\"\r\n\r\n{id}\r\n--b1\r\nContent-Disposition: form-data; name=\"client_secret\"\r\n\r\n{secret}\r\n--b1\r\nContent-Disposition: form-data; name=\"org_id\"\r\n\r\n{}\r\n--b1--\r\n",
        h.org_id
    );
    let req = Request::post("/ims/token/v2")
        .header("content-type", "multipart/form-data; boundary=b1")
        .body(Body::from(body))
        .unwrap();
    let (status, _, b) = h.call(req).await;
    assert_eq!(status, StatusCode::OK, "{b}");
    // Parameters in the query string, but never the secret (RFC 6749 section 2.3.1).
    let q = encode(&[("grant_type", "client_credentials"), ("scope", "openid")]);
    let req = Request::post(format!("/ims/token/v3?{q}"))
        .header("authorization", basic(id, secret))
        .body(Body::empty())
        .unwrap();
    assert_eq!(h.call(req).await.0, StatusCode::OK);
    let q = encode(&[
        ("grant_type", "client_credentials"),
        ("client_id", id),
        ("client_secret", secret),
        ("scope", "openid"),
    ]);
    for path in ["/ims/token/v3", "/ims/revoke/v1", "/ims/introspect/v1"] {
        let req = Request::post(format!("{path}?{q}")).body(Body::empty()).unwrap();
        let (status, _, body) = h.call(req).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (StatusCode::BAD_REQUEST, Some("invalid_request")),
            "{path}: {body}"
        );
    }
    // Space-separated scopes.
    let (status, _, body) = h.cc(id, secret, &[("scope", "openid openid")]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(claims(body["access_token"].as_str().unwrap())["scope"], "openid");
}

#[tokio::test]
async fn client_authentication_failures() {
    let h = harness().await;
    let c = h.credential(&["openid"]).await;
    let id = c.client.client_id.as_str();
    let cases: Vec<(Request<Body>, bool)> = vec![
        (
            form(
                "/ims/token/v3",
                &[
                    ("grant_type", "client_credentials"),
                    ("client_id", id),
                    ("client_secret", "imscs_wrong"),
                ],
            ),
            false,
        ),
        (
            form(
                "/ims/token/v3",
                &[("grant_type", "client_credentials"), ("client_id", id)],
            ),
            false,
        ),
        (
            form(
                "/ims/token/v3",
                &[
                    ("grant_type", "client_credentials"),
                    ("client_id", "unknown"),
                    ("client_secret", c.secret.expose()),
                ],
            ),
            false,
        ),
        (
            form("/ims/token/v3", &[("grant_type", "client_credentials")]),
            false,
        ),
        (
            Request::post("/ims/token/v3")
                .header("content-type", "application/x-www-form-urlencoded")
                .header("authorization", basic(id, "nope"))
                .body(Body::from("grant_type=client_credentials"))
                .unwrap(),
            true,
        ),
    ];
    for (req, is_basic) in cases {
        let (status, headers, body) = h.call(req).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
        assert_eq!(body["error"], "invalid_client");
        assert_eq!(headers["cache-control"], "no-store");
        assert_eq!(
            headers.contains_key("www-authenticate"),
            is_basic,
            "Basic attempts get a Basic challenge"
        );
    }
    // Two methods at once.
    let req = Request::post("/ims/token/v3")
        .header("content-type", "application/x-www-form-urlencoded")
        .header("authorization", basic(id, c.secret.expose()))
        .body(Body::from(encode(&[
            ("grant_type", "client_credentials"),
            ("client_secret", c.secret.expose()),
        ])))
        .unwrap();
    let (status, _, body) = h.call(req).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_request"))
    );
    // A repeated parameter.
    let body = format!(
        "grant_type=client_credentials&client_id={id}&client_secret={}&scope=openid&scope=openid",
        c.secret.expose()
    );
    let req = Request::post("/ims/token/v3")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Body::from(body))
        .unwrap();
    let (status, _, body) = h.call(req).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_request"))
    );
    // Failures are audited, with the error code and without the secret.
    let failures = h.audit("token.issue").await;
    assert!(failures.len() >= 5);
    assert!(failures.iter().all(|e| e.outcome == "failure"));
    let dump = serde_json::to_string(&failures).unwrap();
    assert!(!dump.contains(c.secret.expose()) && !dump.contains("imscs_wrong"));
    assert!(failures
        .iter()
        .any(|e| e.details["error"] == "invalid_client" && e.target == id));
}

#[tokio::test]
async fn grant_types_and_scopes() {
    let h = harness().await;
    let c = h.credential(&["openid", "AdobeID"]).await;
    let (id, secret) = (c.client.client_id.as_str(), c.secret.expose());
    let expect = |grant: &str, error: &str| (grant.to_owned(), error.to_owned());
    for (grant, error) in [
        expect("password", "unsupported_grant_type"),
        expect(
            "urn:ietf:params:oauth:grant-type:jwt-bearer",
            "unsupported_grant_type",
        ),
        expect("authorization_code", "unauthorized_client"),
        expect("refresh_token", "unauthorized_client"),
    ] {
        let (status, _, body) = h
            .call(form(
                "/ims/token/v3",
                &[
                    ("grant_type", &grant),
                    ("client_id", id),
                    ("client_secret", secret),
                ],
            ))
            .await;
        assert_eq!(
            (status, body["error"].as_str()),
            (StatusCode::BAD_REQUEST, Some(error.as_str())),
            "{grant}"
        );
    }
    let (status, _, body) = h
        .call(form(
            "/ims/token/v3",
            &[("client_id", id), ("client_secret", secret)],
        ))
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_request"))
    );
    let (status, _, body) = h.cc(id, secret, &[("scope", "openid,user_management_sdk")]).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_scope"))
    );
    let (status, _, body) = h.cc(id, secret, &[("org_id", "OTHER@AdobeOrg")]).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_request"))
    );
    // No scope asked: every allowed scope granted.
    let (_, _, body) = h.cc(id, secret, &[]).await;
    assert_eq!(
        claims(body["access_token"].as_str().unwrap())["scope"],
        "openid,AdobeID"
    );
}

#[tokio::test]
async fn revocation_and_introspection() {
    for db in [Db::Sqlite, Db::Postgres] {
        let Some(h) = harness_on(db, Algorithm::ES256).await else {
            continue;
        };
        let a = h.credential(&["openid"]).await;
        let b = h.credential(&["openid"]).await;
        let (a_id, a_secret) = (a.client.client_id.as_str(), a.secret.expose());
        let (b_id, b_secret) = (b.client.client_id.as_str(), b.secret.expose());
        let ta = h.token(&a, "openid").await;
        let introspect = |token: String, id: String, secret: String| {
            form(
                "/ims/introspect/v1",
                &[("token", &token), ("client_id", &id), ("client_secret", &secret)],
            )
        };
        let (_, headers, body) = h.call(introspect(ta.clone(), b_id.into(), b_secret.into())).await;
        assert_eq!(body["active"], true);
        assert_eq!(body["client_id"], a_id);
        assert_eq!(body["scope"], "openid");
        assert_eq!(headers["cache-control"], "no-store");
        // Introspection needs client authentication.
        let (status, _, _) = h.call(form("/ims/introspect/v1", &[("token", &ta)])).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        // Garbage, and a token signed by someone else, are just inactive.
        for junk in ["garbage", "a.b.c", "", &ta[..ta.len() - 4]] {
            let (status, _, body) = h
                .call(introspect(junk.into(), b_id.into(), b_secret.into()))
                .await;
            assert_eq!((status, body), (StatusCode::OK, json!({"active": false})));
        }
        // Revoking another client's token answers 200 and revokes nothing.
        let (status, _, _) = h
            .call(form(
                "/ims/revoke/v1",
                &[("token", &ta), ("client_id", b_id), ("client_secret", b_secret)],
            ))
            .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            h.call(introspect(ta.clone(), b_id.into(), b_secret.into()))
                .await
                .2["active"],
            true
        );
        // Garbage answers 200; without client authentication: 401.
        let (status, _, _) = h
            .call(form(
                "/ims/revoke/v1",
                &[
                    ("token", "garbage"),
                    ("client_id", a_id),
                    ("client_secret", a_secret),
                ],
            ))
            .await;
        assert_eq!(status, StatusCode::OK);
        let (status, _, body) = h.call(form("/ims/revoke/v1", &[("token", &ta)])).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (StatusCode::UNAUTHORIZED, Some("invalid_client"))
        );
        // The owner revokes: inactive from then on, everywhere.
        let (status, _, _) = h
            .call(form(
                "/ims/revoke/v1",
                &[("token", &ta), ("client_id", a_id), ("client_secret", a_secret)],
            ))
            .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            h.call(introspect(ta.clone(), b_id.into(), b_secret.into()))
                .await
                .2,
            json!({"active": false})
        );
        let (_, _, v) = h
            .call(form(
                "/ims/validate_token/v1",
                &[("type", "access_token"), ("client_id", a_id), ("token", &ta)],
            ))
            .await;
        assert_eq!(v["valid"], false);
        // The vendor's invalidate_token does the same.
        let tb = h.token(&b, "openid").await;
        let (status, _, _) = h
            .call(form(
                "/ims/invalidate_token/v2",
                &[
                    ("token_type", "access_token"),
                    ("token", &tb),
                    ("cascading", "all"),
                    ("client_id", b_id),
                    ("client_secret", b_secret),
                ],
            ))
            .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            h.call(introspect(tb, a_id.into(), a_secret.into())).await.2,
            json!({"active": false})
        );
        let revocations = h.audit("token.revoke").await;
        assert_eq!(
            revocations.len(),
            2,
            "one audit line per revocation that took effect"
        );
        assert!(
            revocations.iter().all(|e| !e.details.to_string().contains('.')),
            "the token itself is never audited"
        );
        h.cleanup().await;
    }
}

#[tokio::test]
async fn expired_tokens_are_inactive() {
    let h = harness().await;
    let c = h.credential(&["openid"]).await;
    let t = h.token(&c, "openid").await;
    let ims = &h.state.ims;
    assert!(
        ims.tokens()
            .validate_access_token(&t, Now::system().plus_secs(3600 + 59))
            .await
            .is_ok(),
        "leeway"
    );
    let err = ims
        .tokens()
        .validate_access_token(&t, Now::system().plus_secs(3600 + 61))
        .await
        .unwrap_err();
    assert_eq!(err.code(), "invalid_token");
}

#[tokio::test]
async fn validate_token_and_organizations_speak_the_vendor_shape() {
    let h = harness().await;
    let c = h.credential(&["openid", "read_organizations"]).await;
    let t = h.token(&c, "openid,read_organizations").await;
    let multipart = |token_type: &str, client_id: &str| {
        let body = format!(
            "--zz\r\nContent-Disposition: form-data; name=\"type\"\r\n\r\n{token_type}\r\n--zz\r\nContent-Disposition: form-data; name=\"client_id\"\r\n\r\n{client_id}\r\n--zz--\r\n"
        );
        Request::post("/ims/validate_token/v1")
            .header("content-type", "multipart/form-data; boundary=zz")
            .header("authorization", format!("Bearer {t}"))
            .body(Body::from(body))
            .unwrap()
    };
    let (status, _, body) = h.call(multipart("access_token", &c.client.client_id)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["valid"], true);
    assert_eq!(body["token"]["client_id"], c.client.client_id.as_str());
    let (status, _, body) = h.call(multipart("refresh_token", &c.client.client_id)).await;
    assert_eq!((status, body["valid"].as_bool()), (StatusCode::OK, Some(false)));
    let (_, _, body) = h.call(multipart("access_token", "someone-else")).await;
    assert_eq!(body["valid"], false);

    // organizations/v6: the Bearer scheme is case-insensitive.
    for scheme in ["Bearer", "bearer", "BEARER"] {
        let (status, _, body) = h
            .call(get_bearer("/ims/organizations/v6", &format!("{scheme} {t}")))
            .await;
        assert_eq!(status, StatusCode::OK, "{scheme}");
        let ident = h.org_id.trim_end_matches("@AdobeOrg");
        assert_eq!(body[0]["orgRef"], json!({"ident": ident, "authSrc": "AdobeOrg"}));
        assert_eq!(body[0]["orgName"], "Acme");
    }
    // Missing or bad tokens: 401 with a Bearer challenge naming invalid_token.
    for auth in [None, Some("Bearer nope".to_owned()), Some(format!("Basic {t}"))] {
        let mut req = Request::get("/ims/organizations/v6");
        if let Some(a) = &auth {
            req = req.header("authorization", a);
        }
        let (status, headers, _) = h.call(req.body(Body::empty()).unwrap()).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{auth:?}");
        let challenge = headers["www-authenticate"].to_str().unwrap();
        assert!(
            challenge.starts_with("Bearer ") && challenge.contains("error=\"invalid_token\""),
            "{challenge}"
        );
    }
    // A valid token without read_organizations: 403 naming the scope.
    let narrow = h.token(&c, "openid").await;
    let (status, headers, body) = h
        .call(get_bearer("/ims/organizations/v6", &format!("Bearer {narrow}")))
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::FORBIDDEN, Some("insufficient_scope"))
    );
    let challenge = headers["www-authenticate"].to_str().unwrap();
    assert!(
        challenge.contains("error=\"insufficient_scope\"")
            && challenge.contains("scope=\"read_organizations\""),
        "{challenge}"
    );
    // ... and the body says how to get in.
    assert!(
        body["error_hint"]
            .as_str()
            .is_some_and(|h| h.contains("read_organizations")),
        "{body}"
    );
    // Tokens in the query string are refused.
    let (status, _, body) = h
        .call(
            Request::get(format!("/ims/organizations/v6?access_token={t}"))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_request"))
    );
}

#[tokio::test]
async fn oversized_and_malformed_bodies_get_oauth_errors() {
    let h = harness().await;
    let big = "a=".to_owned() + &"x".repeat(70 * 1024);
    let req = Request::post("/ims/token/v3")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Body::from(big))
        .unwrap();
    let (status, headers, body) = h.call(req).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::PAYLOAD_TOO_LARGE, Some("invalid_request"))
    );
    assert_eq!(headers["cache-control"], "no-store");
    let req = Request::post("/ims/token/v3")
        .header("content-type", "application/json")
        .body(Body::from("{}"))
        .unwrap();
    let (status, _, body) = h.call(req).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_request"))
    );
    let req = Request::post("/ims/token/v3")
        .header("content-type", "multipart/form-data; boundary=q")
        .body(Body::from("--q\r\ngarbage"))
        .unwrap();
    let (status, _, body) = h.call(req).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_request"))
    );
}

#[test]
fn token_endpoint_answers_any_input_in_the_oauth_shape() {
    use proptest::prelude::*;
    let rt = tokio::runtime::Runtime::new().unwrap();
    let h = rt.block_on(harness());
    let c = rt.block_on(h.credential(&["openid"]));
    let id = c.client.client_id.clone();
    let secret = c.secret.expose().to_owned();
    let names = prop::sample::select(vec![
        "grant_type",
        "client_id",
        "client_secret",
        "scope",
        "org_id",
        "other",
    ]);
    let values = prop_oneof![
        Just(id.clone()),
        Just(secret.clone()),
        Just("client_credentials".to_owned()),
        ".{0,40}".prop_map(|s: String| s),
    ];
    let content_types = prop::sample::select(vec![
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=b",
        "application/json",
        "text/plain",
    ]);
    let mut runner = proptest::test_runner::TestRunner::new(proptest::test_runner::Config::with_cases(200));
    runner
        .run(
            &(
                proptest::collection::vec((names, values), 0..7),
                content_types,
                any::<bool>(),
            ),
            |(pairs, ct, with_basic)| {
                let body = if ct.starts_with("multipart") {
                    let mut b = String::new();
                    for (k, v) in &pairs {
                        b.push_str(&format!(
                            "--b\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n"
                        ));
                    }
                    b + "--b--\r\n"
                } else {
                    url::form_urlencoded::Serializer::new(String::new())
                        .extend_pairs(pairs.iter().map(|(k, v)| (*k, v.as_str())))
                        .finish()
                };
                let mut req = Request::post("/ims/token/v2").header("content-type", ct);
                if with_basic {
                    req = req.header("authorization", basic(&id, &secret));
                }
                let (status, headers, body) = rt.block_on(h.call(req.body(Body::from(body)).unwrap()));
                prop_assert!(
                    status.is_success() || status.is_client_error(),
                    "{status}: {body}"
                );
                prop_assert_eq!(headers["cache-control"].to_str().unwrap(), "no-store");
                if status.is_success() {
                    prop_assert!(body["access_token"].is_string());
                } else {
                    prop_assert!(body["error"].is_string(), "{}", body);
                }
                Ok(())
            },
        )
        .unwrap();
}
