//! The IMS's HTTP surface through `Router::oneshot`: the token family, the vendor endpoints and
//! the security behaviours they must show. Storage is real: SQLite by default, and the flows that
//! touch every table also run on PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use axum::body::Body;
use axum::Router;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use http::{Request, StatusCode};
use http_body_util::BodyExt as _;
use serde_json::{json, Value};
use std::sync::Arc;
use tower::ServiceExt as _;

use ims_core::audit::Context;
use ims_core::keys::{Algorithm, MasterKey};
use ims_core::secret::Secret;
use ims_core::Now;
use ims_http::{ops_router, public_router, AppState, Metrics};
use ims_identity::credentials::{Credentials, NewSecret};
use ims_identity::service::{self, Ims, Settings};
use ims_identity::store::{AuditQuery, Store};
use ims_store::{Options, SqlStore};

const ISSUER: &str = "https://ims.test";
const ADMIN_PASSWORD: &str = "correct horse battery staple";

struct Harness {
    app: Router,
    ops: Router,
    state: AppState,
    store: Arc<SqlStore>,
    creds: Credentials,
    org_id: String,
    master: MasterKey,
    schema: Option<String>,
    _dir: tempfile::TempDir,
}

#[derive(Clone, Copy, Debug)]
enum Db {
    Sqlite,
    Postgres,
}

/// The scopes a Campaign API integration asks for.
const CAMPAIGN_SCOPES: &str = "openid,AdobeID,additional_info.projectedProductContext";

fn settings(alg: Algorithm) -> Settings {
    let mut s = Settings::new(ISSUER);
    s.signing_alg = alg;
    s.access_token_secs = 3600;
    s
}

/// Store options on `db`: a file under `dir`, or a fresh schema of the test PostgreSQL (`None`
/// when the run skips PostgreSQL, said loudly).
fn db_options(db: Db, dir: &std::path::Path) -> Option<(Options, Option<String>)> {
    match db {
        Db::Sqlite => Some((
            Options::new(format!("sqlite://{}", dir.join("store.db").display())),
            None,
        )),
        Db::Postgres => {
            let url = std::env::var("TEST_POSTGRES_URL")
                .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
            if url == "skip" {
                eprintln!("!!! SKIPPED: PostgreSQL variant (TEST_POSTGRES_URL=skip)");
                return None;
            }
            let schema = format!("h_{}", ims_core::secret::random_hex(8));
            let mut o = Options::new(url);
            o.schema = Some(schema.clone());
            o.max_connections = 4;
            Some((o, Some(schema)))
        }
    }
}

async fn harness_on(db: Db, alg: Algorithm) -> Option<Harness> {
    harness_with(db, settings(alg)).await
}

async fn harness_with(db: Db, settings: Settings) -> Option<Harness> {
    let dir = tempfile::tempdir().unwrap();
    let (opts, schema) = db_options(db, dir.path())?;
    let store = Arc::new(SqlStore::open(&opts, Now::system()).await.unwrap());
    let ctx = Context::new(Now::system(), "test");
    let (org, _, _) = service::bootstrap(
        &*store,
        "Acme",
        "admin@acme.test",
        Some(Secret::new(ADMIN_PASSWORD)),
        &ctx,
    )
    .await
    .unwrap()
    .unwrap();
    let master = MasterKey::generate();
    let ims = Ims::start(store.clone(), master.clone(), settings, &ctx)
        .await
        .unwrap();
    let state = AppState {
        ims: Arc::new(ims),
        metrics: Arc::new(Metrics::default()),
    };
    Some(Harness {
        app: public_router(state.clone()),
        ops: ops_router(state.clone()),
        state,
        creds: Credentials::new(store.clone() as Arc<dyn Store>, "ims.test"),
        store,
        org_id: org.org_id,
        master,
        schema,
        _dir: dir,
    })
}

async fn harness() -> Harness {
    harness_on(Db::Sqlite, Algorithm::ES256).await.unwrap()
}

impl Harness {
    async fn cleanup(self) {
        if let Some(s) = &self.schema {
            self.store.drop_schema(s).await.unwrap();
        }
    }

    async fn credential(&self, scopes: &[&str]) -> NewSecret {
        let ctx = Context::new(Now::system(), "test");
        self.creds
            .create_credential(
                &self.org_id,
                "integration",
                scopes.iter().map(|s| s.to_string()).collect(),
                &[],
                &ctx,
            )
            .await
            .unwrap()
    }

    /// A credential subscribed to the Campaign API, as an instance requires of technical
    /// accounts (tokens asked with [`CAMPAIGN_SCOPES`]).
    async fn campaign_credential(&self) -> NewSecret {
        let ctx = Context::new(Now::system(), "test");
        let campaign =
            ims_identity::developer::Service::by_code(ims_identity::developer::CAMPAIGN_SERVICE).unwrap();
        self.creds
            .create_credential(&self.org_id, "integration", vec![], &[campaign], &ctx)
            .await
            .unwrap()
    }

    async fn call(&self, req: Request<Body>) -> (StatusCode, http::HeaderMap, Value) {
        send(&self.app, req).await
    }

    /// A client_credentials request for `id` / `secret`, plus any other parameters.
    async fn cc(
        &self,
        id: &str,
        secret: &str,
        extra: &[(&str, &str)],
    ) -> (StatusCode, http::HeaderMap, Value) {
        let mut pairs = vec![
            ("grant_type", "client_credentials"),
            ("client_id", id),
            ("client_secret", secret),
        ];
        pairs.extend_from_slice(extra);
        self.call(form("/ims/token/v3", &pairs)).await
    }

    async fn token(&self, c: &NewSecret, scope: &str) -> String {
        let (status, _, body) = self
            .cc(&c.client.client_id, c.secret.expose(), &[("scope", scope)])
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["access_token"].as_str().unwrap().to_owned()
    }

    async fn audit(&self, prefix: &str) -> Vec<ims_core::audit::AuditEvent> {
        self.state
            .ims
            .audit(&AuditQuery {
                action_prefix: Some(prefix.into()),
                limit: 1000,
            })
            .await
            .unwrap()
    }
}

async fn send(app: &Router, req: Request<Body>) -> (StatusCode, http::HeaderMap, Value) {
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    let body = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    (status, headers, body)
}

fn encode(pairs: &[(&str, &str)]) -> String {
    url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

fn form(path: &str, pairs: &[(&str, &str)]) -> Request<Body> {
    Request::post(path)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Body::from(encode(pairs)))
        .unwrap()
}

fn basic(id: &str, secret: &str) -> String {
    format!("Basic {}", STANDARD.encode(format!("{id}:{secret}")))
}

fn claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

fn header(token: &str) -> Value {
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(token.split('.').next().unwrap()).unwrap()).unwrap()
}

fn get_bearer(path: &str, auth: &str) -> Request<Body> {
    Request::get(path)
        .header("authorization", auth)
        .body(Body::empty())
        .unwrap()
}

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
async fn disabling_a_credential_stops_tokens_and_issued_tokens_at_once() {
    for db in [Db::Sqlite, Db::Postgres] {
        let Some(h) = harness_on(db, Algorithm::ES256).await else {
            continue;
        };
        let c = h.credential(&["openid"]).await;
        let observer = h.credential(&["openid"]).await;
        let token = h.token(&c, "openid").await;
        let ctx = Context::new(Now::system(), "test");
        h.creds
            .set_credential_disabled(&c.client.client_id, true, &ctx)
            .await
            .unwrap();
        let (status, _, body) = h.cc(&c.client.client_id, c.secret.expose(), &[]).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (StatusCode::UNAUTHORIZED, Some("invalid_client"))
        );
        let (_, _, body) = h
            .call(form(
                "/ims/introspect/v1",
                &[
                    ("token", &token),
                    ("client_id", &observer.client.client_id),
                    ("client_secret", observer.secret.expose()),
                ],
            ))
            .await;
        assert_eq!(body, json!({"active": false}));
        let (status, _, _) = h
            .call(get_bearer("/ims/organizations/v6", &format!("Bearer {token}")))
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        h.creds
            .set_credential_disabled(&c.client.client_id, false, &ctx)
            .await
            .unwrap();
        h.token(&c, "openid").await;
        assert!(h
            .audit("credential.")
            .await
            .iter()
            .any(|e| e.action == "credential.disable"));
        h.cleanup().await;
    }
}

#[tokio::test]
async fn secret_rotation_overlaps_and_removal_is_immediate() {
    let h = harness().await;
    let c = h.credential(&["openid"]).await;
    let ctx = Context::new(Now::system(), "test");
    let second = h.creds.add_secret(&c.client.client_id, None, &ctx).await.unwrap();
    assert_ne!(second.secret, c.secret);
    // Both valid during the overlap.
    h.token(&c, "openid").await;
    h.token(
        &NewSecret {
            client: c.client.clone(),
            ..second.clone()
        },
        "openid",
    )
    .await;
    h.creds
        .remove_secret(&c.client.client_id, &c.record.secret_id, &ctx)
        .await
        .unwrap();
    let (status, _, _) = h.cc(&c.client.client_id, c.secret.expose(), &[]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "a removed secret fails at once");
    h.token(
        &NewSecret {
            client: c.client.clone(),
            ..second
        },
        "openid",
    )
    .await;
    // Stored as digests only.
    let stored = ims_identity::store::ClientStore::secrets(&*h.store, &c.client.client_id)
        .await
        .unwrap();
    assert!(stored
        .iter()
        .all(|s| s.digest.len() == 64 && !s.digest.contains("imscs_")));
    // An expired secret fails.
    let soon = Now::system().plus_millis(1);
    let expiring = h
        .creds
        .add_secret(
            &c.client.client_id,
            Some(soon.plus_millis(50)),
            &Context::new(Now::system(), "t"),
        )
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let (status, _, _) = h.cc(&c.client.client_id, expiring.secret.expose(), &[]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
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
        ims.validate_access_token(&t, Now::system().plus_secs(3600 + 59))
            .await
            .is_ok(),
        "leeway"
    );
    let err = ims
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
async fn jwks_publishes_public_keys_only_and_rotation_keeps_old_tokens_valid() {
    let h = harness_on(Db::Sqlite, Algorithm::RS256).await.unwrap();
    let c = h.credential(&["openid"]).await;
    let before = h.token(&c, "openid").await;
    assert_eq!(header(&before)["alg"], "RS256");
    let ctx = Context::new(Now::system(), "test");
    // A scheduled rotation publishes first and keeps signing with the old key.
    let next = h.state.ims.rotate_key(None, false, &ctx).await.unwrap();
    let (_, _, jwks) = h
        .call(Request::get("/ims/keys").body(Body::empty()).unwrap())
        .await;
    let kids: Vec<&str> = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap())
        .collect();
    assert!(kids.contains(&next.as_str()), "published before it signs");
    assert_ne!(header(&h.token(&c, "openid").await)["kid"], next.as_str());
    // An immediate rotation signs with the new key; tokens of the old one stay valid.
    let now_kid = h
        .state
        .ims
        .rotate_key(Some(Algorithm::ES256), true, &ctx)
        .await
        .unwrap();
    let _ = now_kid;
    let (_, _, jwks) = h
        .call(Request::get("/ims/keys").body(Body::empty()).unwrap())
        .await;
    let keys = jwks["keys"].as_array().unwrap();
    let mut kids: Vec<&str> = keys.iter().map(|k| k["kid"].as_str().unwrap()).collect();
    let n = kids.len();
    kids.sort_unstable();
    kids.dedup();
    assert_eq!(kids.len(), n, "kids are unique");
    for k in keys {
        for private in ["d", "p", "q", "dp", "dq", "qi", "k"] {
            assert!(k.get(private).is_none(), "no private or symmetric material: {k}");
        }
    }
    assert!(h
        .state
        .ims
        .validate_access_token(&before, Now::system())
        .await
        .is_ok());
    assert!(h.audit("key.").await.iter().any(|e| e.action == "key.rotate"));
}

#[tokio::test]
async fn keys_and_tokens_survive_a_restart_and_a_second_node_agrees() {
    for db in [Db::Sqlite, Db::Postgres] {
        let Some(h) = harness_on(db, Algorithm::ES256).await else {
            continue;
        };
        let c = h.credential(&["openid"]).await;
        let t = h.token(&c, "openid").await;
        // A new service on the same store and master key (a restart, or another node).
        let ctx = Context::new(Now::system(), "test");
        let other = Ims::start(
            h.store.clone(),
            h.master.clone(),
            settings(Algorithm::ES256),
            &ctx,
        )
        .await
        .unwrap();
        assert!(other.validate_access_token(&t, Now::system()).await.is_ok());
        // The second node rotates; the first sees the new kid on first contact.
        let kid = other.rotate_key(None, true, &ctx).await.unwrap();
        let other_state = AppState {
            ims: Arc::new(other),
            metrics: Arc::new(Metrics::default()),
        };
        let (_, _, body) = send(
            &public_router(other_state),
            form(
                "/ims/token/v3",
                &[
                    ("grant_type", "client_credentials"),
                    ("client_id", &c.client.client_id),
                    ("client_secret", c.secret.expose()),
                ],
            ),
        )
        .await;
        let t2 = body["access_token"].as_str().unwrap();
        assert_eq!(header(t2)["kid"], kid.as_str());
        assert!(h.state.ims.validate_access_token(t2, Now::system()).await.is_ok());
        // A backup restored into an empty place validates the tokens issued before it.
        if matches!(db, Db::Sqlite) {
            let copy = h._dir.path().join("backup.db");
            h.store.backup_to(copy.to_str().unwrap()).await.unwrap();
            let restored = Arc::new(
                SqlStore::open(
                    &Options::new(format!("sqlite://{}", copy.display())),
                    Now::system(),
                )
                .await
                .unwrap(),
            );
            let ims = Ims::start(restored, h.master.clone(), settings(Algorithm::ES256), &ctx)
                .await
                .unwrap();
            assert!(ims.validate_access_token(&t, Now::system()).await.is_ok());
            assert!(ims.validate_access_token(t2, Now::system()).await.is_ok());
        }
        // A wrong master key cannot load the keys.
        let wrong = Ims::start(
            h.store.clone(),
            MasterKey::generate(),
            settings(Algorithm::ES256),
            &ctx,
        )
        .await;
        assert!(wrong.is_err(), "keys are encrypted at rest");
        h.cleanup().await;
    }
}

#[tokio::test]
async fn discovery_health_and_metrics() {
    let h = harness().await;
    let (status, _, d) = h
        .call(
            Request::get("/.well-known/openid-configuration")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(d["issuer"], ISSUER);
    assert_eq!(d["jwks_uri"], format!("{ISSUER}/ims/keys"));
    // HSTS on every answer, unknown paths included.
    for path in [
        "/.well-known/openid-configuration",
        "/no/such/path",
        "/ims/authorize/v2",
    ] {
        let (_, headers, _) = h.call(Request::get(path).body(Body::empty()).unwrap()).await;
        assert_eq!(headers["strict-transport-security"], "max-age=31536000", "{path}");
    }
    assert_eq!(d["token_endpoint"], format!("{ISSUER}/ims/token/v3"));
    let c = h.credential(&["openid"]).await;
    h.token(&c, "openid").await;
    let _ = h.cc("x", "y", &[]).await;
    let (status, _, _) = send(&h.ops, Request::get("/health/live").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, body) = send(&h.ops, Request::get("/health/ready").body(Body::empty()).unwrap()).await;
    assert_eq!((status, body["status"].as_str()), (StatusCode::OK, Some("ready")));
    let (_, _, metrics) = send(&h.ops, Request::get("/metrics").body(Body::empty()).unwrap()).await;
    let text = metrics.as_str().unwrap();
    assert!(
        text.contains("ims_tokens_issued_total{grant_type=\"client_credentials\"} 1"),
        "{text}"
    );
    assert!(text.contains("ims_token_failures_total{error=\"invalid_client\"} 1"));
    assert!(
        text.contains("ims_http_requests_total{route=\"/ims/token/v3\",method=\"POST\",status=\"200\"} 1")
    );
    // Unknown paths are a JSON 404; request ids are echoed.
    let req = Request::get("/nope")
        .header("x-request-id", "abc-123")
        .body(Body::empty())
        .unwrap();
    let resp = h.app.clone().oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    let req = Request::get("/ims/keys")
        .header("x-request-id", "abc-123")
        .body(Body::empty())
        .unwrap();
    let resp = h.app.clone().oneshot(req).await.unwrap();
    assert_eq!(resp.headers()["x-request-id"], "abc-123");
}

#[tokio::test]
async fn readiness_fails_while_migrations_are_pending() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("ims.db").display());
    let migrated = Arc::new(
        SqlStore::open(&Options::new(url.clone()), Now::system())
            .await
            .unwrap(),
    );
    let ctx = Context::new(Now::system(), "test");
    service::bootstrap(&*migrated, "Acme", "a@b.c", None, &ctx)
        .await
        .unwrap();
    let ims = Ims::start(
        migrated.clone(),
        MasterKey::generate(),
        settings(Algorithm::ES256),
        &ctx,
    )
    .await
    .unwrap();
    // Forget the applied step: the service now sees its schema as behind.
    let mut conn = <sqlx::AnyConnection as sqlx::Connection>::connect(&url)
        .await
        .unwrap();
    sqlx::query("DELETE FROM schema_migrations")
        .execute(&mut conn)
        .await
        .unwrap();
    let state = AppState {
        ims: Arc::new(ims),
        metrics: Arc::new(Metrics::default()),
    };
    let (status, _, body) = send(
        &ops_router(state),
        Request::get("/health/ready").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        body["pending_migrations"],
        json!([
            "0001_foundation",
            "0002_people",
            "0003_directory",
            "0004_developer",
            "0005_backchannel_logout"
        ])
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

fn admin_router(h: &Harness) -> Router {
    ims_http::admin::router(h.state.clone())
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

#[tokio::test]
async fn a_change_made_elsewhere_reaches_the_token_endpoint() {
    for db in [Db::Sqlite, Db::Postgres] {
        let Some(h) = harness_on(db, Algorithm::ES256).await else {
            continue;
        };
        let c = h.credential(&["openid"]).await;
        // Warm the in-memory client, then disable it through another connection (the CLI, a node).
        h.token(&c, "openid").await;
        h.token(&c, "openid").await;
        let url = match db {
            Db::Sqlite => format!("sqlite://{}", h._dir.path().join("store.db").display()),
            Db::Postgres => std::env::var("TEST_POSTGRES_URL")
                .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into()),
        };
        let mut opts = Options::new(url);
        opts.schema = h.schema.clone();
        let elsewhere = Arc::new(SqlStore::open(&opts, Now::system()).await.unwrap());
        let creds = Credentials::new(elsewhere.clone() as Arc<dyn Store>, "ims.test");
        creds
            .set_credential_disabled(
                &c.client.client_id,
                true,
                &Context::new(Now::system(), "elsewhere"),
            )
            .await
            .unwrap();
        // Requests until the first refusal; SQLite must refuse the very first one.
        let mut attempts = 0;
        let started = std::time::Instant::now();
        loop {
            attempts += 1;
            let (status, _, _) = h.cc(&c.client.client_id, c.secret.expose(), &[]).await;
            if status == StatusCode::UNAUTHORIZED {
                break;
            }
            assert!(
                started.elapsed() < std::time::Duration::from_secs(2),
                "{db:?}: still issuing after 2 s"
            );
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        if matches!(db, Db::Sqlite) {
            assert_eq!(attempts, 1, "SQLite sees the change on the next request");
        }
        elsewhere.close().await;
        h.cleanup().await;
    }
}

#[tokio::test]
async fn unknown_kids_trigger_a_rate_limited_reread() {
    let h = harness().await;
    // A token signed by a key this IMS never had, with a kid it does not know.
    let master = MasterKey::generate();
    let now = Now::system();
    let foreign = ims_core::keys::KeyRing::load(
        vec![ims_core::keys::generate(Algorithm::ES256, &master, now, now).unwrap()],
        &master,
        None,
    )
    .unwrap();
    let claims =
        json!({"iss": ISSUER, "type": "access_token", "id": "x", "client_id": "c", "exp": now.secs() + 600});
    let forged = ims_core::jose::sign(&claims, foreign.signer(Algorithm::ES256, now).unwrap()).unwrap();
    let before = h.state.ims.forced_key_reloads();
    for _ in 0..20 {
        let err = h
            .state
            .ims
            .validate_access_token(&forged, Now::system())
            .await
            .unwrap_err();
        assert_eq!(err.code(), "invalid_token");
    }
    assert_eq!(
        h.state.ims.forced_key_reloads() - before,
        1,
        "at most one reread a second"
    );
    let (_, _, metrics) = send(&h.ops, Request::get("/metrics").body(Body::empty()).unwrap()).await;
    assert!(metrics
        .as_str()
        .unwrap()
        .contains("ims_key_forced_reloads_total 1"));
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

// ----- the instance's SOAP surface ---------------------------------------------------------------

mod instance {
    use super::*;
    use ims_campaign::model::{AuthType, Operator};
    use ims_campaign::service::{Instance, InstanceInfo, InstanceKind};
    use ims_campaign::store::OperatorStore as _;
    use ims_http::campaign::{router, InstanceState};
    use ims_store::instance::SqlInstanceStore;
    use ims_wire::rights::DEFAULT_GROUPS;

    pub(super) const PASSWORD: &str = "operator password 1";

    async fn instance_app() -> (Router, tempfile::TempDir) {
        let (inst, dir) = instance_with("7.4.1").await;
        (
            router(InstanceState {
                instance: Arc::new(inst),
                tls: false,
            }),
            dir,
        )
    }

    /// The IMS's keys, read in-process (the server reads them over HTTPS).
    struct ImsKeys(Arc<Ims>);

    #[async_trait::async_trait]
    impl ims_campaign::bearer::JwksSource for ImsKeys {
        async fn fetch(&self) -> Result<Value, String> {
            self.0.jwks(Now::system()).await.map_err(|e| e.to_string())
        }
    }

    /// An instance of `build` that trusts the harness's IMS.
    pub(super) async fn bearer_app(h: &Harness, build: &str) -> (Router, Arc<Instance>, tempfile::TempDir) {
        let (inst, dir) = instance_with(build).await;
        let issuer = ims_campaign::bearer::TrustedIssuer::new(ISSUER, Arc::new(ImsKeys(h.state.ims.clone())));
        let inst = Arc::new(inst.with_bearer(Arc::new(issuer)));
        (
            router(InstanceState {
                instance: inst.clone(),
                tls: false,
            }),
            inst,
            dir,
        )
    }

    pub(super) async fn instance_with(build: &str) -> (Instance, tempfile::TempDir) {
        instance_of(build, InstanceKind::Marketing).await
    }

    async fn instance_of(build: &str, kind: InstanceKind) -> (Instance, tempfile::TempDir) {
        let (inst, dir, _) = instance_on(Db::Sqlite, build, kind).await.unwrap();
        (inst, dir)
    }

    /// A PostgreSQL schema to drop when a test is done.
    pub(super) type Cleanup = Option<(Arc<SqlInstanceStore>, String)>;

    /// An instance on `db` with jdoe, three recipients and the default groups (`None` when the
    /// run skips PostgreSQL).
    pub(super) async fn instance_on(
        db: Db,
        build: &str,
        kind: InstanceKind,
    ) -> Option<(Instance, tempfile::TempDir, Cleanup)> {
        let dir = tempfile::tempdir().unwrap();
        let (opts, schema) = db_options(db, dir.path())?;
        let store = Arc::new(SqlInstanceStore::open(&opts, Now::system()).await.unwrap());
        for g in DEFAULT_GROUPS {
            store.ensure_group(g.name, g.label, g.rights).await.unwrap();
        }
        let now = Now::system();
        store
            .create_operator(
                &Operator {
                    id: 0,
                    login: "jdoe".into(),
                    label: "J. Doe".into(),
                    email: Some("jdoe@example.com".into()),
                    auth_type: AuthType::Native,
                    disabled: false,
                    forbid_rich_client: false,
                    trusted_ip_mask: None,
                    security_zone: None,
                    rights: vec![],
                    groups: vec!["deliveryOperators".into()],
                    password_hash: Some(ims_core::password::hash(&Secret::new(PASSWORD)).await.unwrap()),
                    ims_id: None,
                    builtin: false,
                    created_at: now,
                    modified_at: now,
                },
                &ims_core::audit::Context::new(ims_core::Now::from_millis(0), "test").event(
                    "operator.create",
                    "t",
                    "success",
                    serde_json::json!({}),
                ),
            )
            .await
            .unwrap();
        {
            use ims_campaign::store::RecipientStore as _;
            let folder = store
                .ensure_folder("nmsRootRecipient", "Recipients")
                .await
                .unwrap();
            store
                .grant_folder_to_group(
                    folder,
                    "deliveryOperators",
                    true,
                    false,
                    &ims_core::audit::Context::new(now, "test").event(
                        "folder.grant",
                        "nmsRootRecipient",
                        "success",
                        serde_json::json!({}),
                    ),
                )
                .await
                .unwrap();
            for (first, email) in [
                ("Ana", "ana@example.com"),
                ("Bo", "bo@example.com"),
                ("Chen", "chen@example.com"),
            ] {
                store
                    .create_recipient(&ims_campaign::model::Recipient {
                        id: 0,
                        email: Some(email.into()),
                        first_name: Some(first.into()),
                        last_name: Some("Test".into()),
                        folder_id: Some(folder),
                        created_at: now,
                        modified_at: now,
                    })
                    .await
                    .unwrap();
            }
        }
        let cleanup = schema.map(|s| (store.clone(), s));
        let inst = Instance::new(store, InstanceInfo::new("prod", kind, build.parse().unwrap()));
        Some((inst, dir, cleanup))
    }

    /// Adds an operator like jdoe (same password and profile) under another login and groups.
    pub(super) async fn add_like_jdoe(
        store: &Arc<dyn ims_campaign::store::InstanceStore>,
        login: &str,
        groups: &[&str],
    ) -> i64 {
        let mut op = store.operator_by_login("jdoe").await.unwrap().unwrap();
        op.login = login.into();
        op.groups = groups.iter().map(|g| g.to_string()).collect();
        let ctx = ims_core::audit::Context::new(ims_core::Now::from_millis(0), "test");
        store
            .create_operator(
                &op,
                &ctx.event("operator.create", login, "success", serde_json::json!({})),
            )
            .await
            .unwrap()
    }

    /// Signs in with the shared password; the header that carries the session afterwards.
    pub(super) async fn session_of(app: &Router, login: &str) -> Vec<(&'static str, String)> {
        let (_, xml) = call(app, "xtk:session#Logon", logon_body(login, PASSWORD), &[]).await;
        vec![("x-session-token", value(&xml, "pstrSessionToken"))]
    }

    pub(super) fn envelope(method: &str, urn: &str, params: &str) -> String {
        format!(
            r#"<SOAP-ENV:Envelope xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xmlns:SOAP-ENV="http://schemas.xmlsoap.org/soap/envelope/"><SOAP-ENV:Body><m:{method} xmlns:m="urn:{urn}" SOAP-ENV:encodingStyle="http://schemas.xmlsoap.org/soap/encoding/">{params}</m:{method}></SOAP-ENV:Body></SOAP-ENV:Envelope>"#
        )
    }

    pub(super) fn logon_body(login: &str, password: &str) -> String {
        envelope(
            "Logon",
            "xtk:session",
            &format!(
                r#"<sessiontoken xsi:type="xsd:string"></sessiontoken><login xsi:type="xsd:string">{login}</login><password xsi:type="xsd:string">{password}</password><parameters xsi:type="ns:Element"/>"#
            ),
        )
    }

    fn soap_req(action: &str) -> http::request::Builder {
        Request::post(format!(
            "/nl/jsp/soaprouter.jsp?soapAction={}",
            url::form_urlencoded::byte_serialize(action.as_bytes()).collect::<String>()
        ))
        .header("content-type", "application/soap+xml;charset=UTF-8")
        .header("soapaction", action)
    }

    pub(super) async fn call(
        app: &Router,
        action: &str,
        body: String,
        extra: &[(&str, String)],
    ) -> (StatusCode, String) {
        let mut b = soap_req(action);
        for (k, v) in extra {
            b = b.header(*k, v);
        }
        let resp = app
            .clone()
            .oneshot(b.body(Body::from(body)).unwrap())
            .await
            .unwrap();
        let status = resp.status();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8(bytes.to_vec()).unwrap())
    }

    pub(super) fn value(xml: &str, element: &str) -> String {
        let root = ims_wire::soap::parse_document(xml, ims_wire::soap::Limits::default()).unwrap();
        let body = root.element("Body").unwrap();
        let resp = body.elements().next().unwrap();
        resp.element(element).map(|e| e.text()).unwrap_or_default()
    }

    pub(super) fn fault_code(xml: &str) -> Option<String> {
        let root = ims_wire::soap::parse_document(xml, ims_wire::soap::Limits::default()).ok()?;
        let f = root.element("Body")?.element("Fault")?;
        Some(f.element("faultstring")?.text().split(' ').next()?.to_owned())
    }

    #[tokio::test]
    async fn logon_then_calls_with_the_session_wherever_the_client_puts_it() {
        let (app, _dir) = instance_app().await;
        let (status, xml) = call(&app, "xtk:session#Logon", logon_body("jdoe", PASSWORD), &[]).await;
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
        let (_, logon) = call(&app, "xtk:session#Logon", logon_body("jdoe", PASSWORD), &[]).await;
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
        let (_, xml) = call(&app, "xtk:session#Logoff", logon_body("jdoe", PASSWORD), &[]).await;
        assert!(
            fault_code(&xml).is_some() && !xml.contains("pstrSessionToken"),
            "{xml}"
        );
        // Interface form of the action, without the header: the URL parameter alone.
        let req = Request::post("/nl/jsp/soaprouter.jsp?soapAction=xtk%3Apersist%7Cxtk%3Asession%23Logon")
            .header("content-type", "text/xml; charset=utf-8")
            .body(Body::from(logon_body("jdoe", PASSWORD)))
            .unwrap();
        let resp = app.clone().oneshot(req).await.unwrap();
        let text = String::from_utf8(resp.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap();
        assert!(text.contains("pstrSessionToken"), "{text}");
        // Header and URL parameter must both agree with the Body.
        let req = Request::post("/nl/jsp/soaprouter.jsp?soapAction=xtk%3Asession%23Logoff")
            .header("soapaction", "xtk:session#Logon")
            .body(Body::from(logon_body("jdoe", PASSWORD)))
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
        let (_, logon) = call(&app, "xtk:session#Logon", logon_body("jdoe", PASSWORD), &[]).await;
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

    pub(super) fn query(def: &str) -> String {
        envelope(
            "ExecuteQuery",
            "xtk:queryDef",
            &format!(
                r#"<sessiontoken/><document xsi:type="" SOAP-ENV:encodingStyle="http://xml.apache.org/xml-soap/literalxml">{def}</document>"#
            ),
        )
    }

    fn output(xml: &str) -> ims_wire::soap::Element {
        let root = ims_wire::soap::parse_document(xml, ims_wire::soap::Limits::default()).unwrap();
        let resp = root
            .element("Body")
            .unwrap()
            .element("ExecuteQueryResponse")
            .unwrap_or_else(|| panic!("{xml}"));
        let out = resp
            .element("pdomOutput")
            .unwrap()
            .elements()
            .next()
            .unwrap()
            .clone();
        out
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
            attack.len() < ims_http::campaign::MAX_SOAP_BODY,
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
        let (inst, _dir) = instance_with("7.4.1").await;
        let store = inst.store().clone();
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
        let insert = r#"<recipient xtkschema="nms:recipient" _operation="insert" email="w@example.com" firstName="W"/>"#;
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
    async fn operators_are_written_through_the_api_by_administrators_only() {
        let (inst, _dir) = instance_with("7.4.1").await;
        let store = inst.store().clone();
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
        let logon = |login: &'static str, password: &'static str| {
            let app = app.clone();
            async move {
                let (_, xml) = call(&app, "xtk:session#Logon", logon_body(login, password), &[]).await;
                (
                    fault_code(&xml),
                    vec![("x-session-token", value(&xml, "pstrSessionToken"))],
                )
            }
        };
        let write = |doc: String| {
            envelope(
                "Write",
                "xtk:persist|xtk:session",
                &format!("<sessiontoken/><domDoc>{doc}</domDoc>"),
            )
        };
        let (_, boss_s) = logon("boss", PASSWORD).await;
        let (_, jdoe_s) = logon("jdoe", PASSWORD).await;
        let w = |doc: String, s: Vec<(&'static str, String)>| {
            let app = app.clone();
            async move {
                let (_, xml) = call(&app, "xtk:persist|xtk:session#Write", write(doc), &s).await;
                fault_code(&xml)
            }
        };
        let newbie = r#"<operator xtkschema="xtk:operator" _operation="insert" name="newbie" label="New Bie" email="New@Example.com" password="first-pass-1"><group name="reportAccess"/><right name="export"/></operator>"#;
        assert_eq!(
            w(newbie.into(), jdoe_s.clone()).await.as_deref(),
            Some("XSV-350122"),
            "jdoe holds no ADMINISTRATION"
        );
        assert_eq!(w(newbie.into(), boss_s.clone()).await, None);
        assert_eq!(
            w(newbie.into(), boss_s.clone()).await.as_deref(),
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
        let (fault, newbie_s) = logon("newbie", "first-pass-1").await;
        assert_eq!(fault, None);
        // Disabling ends its sessions and refuses sign-in.
        let disable =
            r#"<operator xtkschema="xtk:operator" _operation="update" name="newbie" disabled="true"/>"#;
        assert_eq!(w(disable.into(), boss_s.clone()).await, None);
        let info = envelope("GetUserInfo", "xtk:session", "<sessiontoken/>");
        let (_, xml) = call(&app, "xtk:session#GetUserInfo", info.clone(), &newbie_s).await;
        assert_eq!(fault_code(&xml).as_deref(), Some("XSV-350008"), "{xml}");
        assert_eq!(
            logon("newbie", "first-pass-1").await.0.as_deref(),
            Some("XSV-350024")
        );
        // Enable again with a new password (by id); groups replaced, rights emptied.
        let id = created.id;
        let change = format!(
            r#"<operator xtkschema="xtk:operator" _key="@id" id="{id}" disabled="false" password="second-pass-2"><group name="campaignManagers"/><rights/></operator>"#
        );
        assert_eq!(w(change, boss_s.clone()).await, None);
        assert_eq!(
            logon("newbie", "first-pass-1").await.0.as_deref(),
            Some("XSV-350024")
        );
        assert_eq!(logon("newbie", "second-pass-2").await.0, None);
        let changed = store.operator_by_login("newbie").await.unwrap().unwrap();
        assert_eq!(changed.groups, vec!["campaignManagers"]);
        assert!(changed.rights.is_empty());
        assert_eq!(changed.label, "New Bie", "fields not named stay");
        // Refused changes leave the operator as it was.
        for (bad, code) in [
            (
                r#"<operator xtkschema="xtk:operator" name="newbie"><group name="nope"/></operator>"#
                    .to_owned(),
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
                r#"<operator xtkschema="xtk:operator" _operation="update" name="ghost" label="x"/>"#
                    .to_owned(),
                "XSV-350123",
            ),
            (
                format!(
                    r#"<operator xtkschema="xtk:operator" _operation="delete" _key="@id" id="{boss_id}"/>"#
                ),
                "XSV-350122",
            ),
        ] {
            assert_eq!(
                w(bad.clone(), boss_s.clone()).await.as_deref(),
                Some(code),
                "{bad}"
            );
        }
        assert_eq!(store.operator_by_login("newbie").await.unwrap().unwrap(), changed);
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
        // Delete: sign-in refused, the operator gone, its usage evidence kept.
        let delete = r#"<operator xtkschema="xtk:operator" _operation="delete" name="newbie"/>"#;
        assert_eq!(w(delete.into(), boss_s.clone()).await, None);
        assert!(store.operator_by_login("newbie").await.unwrap().is_none());
        assert_eq!(
            logon("newbie", "second-pass-2").await.0.as_deref(),
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

    /// A browser's view of one console request: status, headers, body.
    pub(super) async fn page(
        app: &Router,
        method: &str,
        path: &str,
        cookie: &str,
        form: &[(&str, &str)],
    ) -> (StatusCode, http::HeaderMap, String) {
        let body: String = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form)
            .finish();
        let mut b = Request::builder().method(method).uri(path);
        if !cookie.is_empty() {
            b = b.header("cookie", cookie);
        }
        if method == "POST" {
            b = b.header("content-type", "application/x-www-form-urlencoded");
        }
        let resp = app
            .clone()
            .oneshot(b.body(Body::from(body)).unwrap())
            .await
            .unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        (status, headers, String::from_utf8(bytes.to_vec()).unwrap())
    }

    pub(super) fn set_cookie<'a>(headers: &'a http::HeaderMap, name: &str) -> Option<&'a str> {
        headers
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find(|v| v.starts_with(&format!("{name}=")))
    }

    pub(super) fn cookie_value(line: &str) -> String {
        line.split(';')
            .next()
            .unwrap()
            .split_once('=')
            .unwrap()
            .1
            .to_owned()
    }

    pub(super) fn csrf_in(html: &str) -> String {
        let at = html
            .find(r#"name="csrf" value=""#)
            .expect("a form with a csrf field")
            + 19;
        html[at..].split('"').next().unwrap().to_owned()
    }

    /// Signs in to the console; returns the cookie header and a page's CSRF token.
    pub(super) async fn console_sign_in(
        app: &Router,
        login: &str,
        password: &str,
    ) -> (StatusCode, http::HeaderMap, String) {
        let (_, headers, html) = page(app, "GET", "/console/login", "", &[]).await;
        let pre = cookie_value(set_cookie(&headers, "ims_console_login").unwrap());
        let csrf = csrf_in(&html);
        page(
            app,
            "POST",
            "/console/login",
            &format!("ims_console_login={pre}"),
            &[("csrf", &csrf), ("login", login), ("password", password)],
        )
        .await
    }

    #[tokio::test]
    async fn the_console_signs_operators_in_and_lets_administrators_manage_operators() {
        let (inst, _dir) = instance_with("7.4.1").await;
        let store = inst.store().clone();
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
        // Not signed in: to the sign-in page.
        let (status, headers, _) = page(&app, "GET", "/console/operators", "", &[]).await;
        assert_eq!(status, StatusCode::SEE_OTHER);
        assert_eq!(headers["location"], "/console/login");
        // The sign-in page: hardened headers, a double-submit token.
        let (status, headers, html) = page(&app, "GET", "/console/login", "", &[]).await;
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
            &app,
            "POST",
            "/console/login",
            "ims_console_login=abc",
            &[("csrf", "xyz"), ("login", "boss"), ("password", PASSWORD)],
        )
        .await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert!(set_cookie(&headers, "ims_console").is_none());
        let (status, _, html) = console_sign_in(&app, "boss", "wrong password").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert!(html.contains("Invalid login or password"), "{html}");
        // Rich-client access forbidden: no console, though the API still signs it in.
        let (status, headers, html) = console_sign_in(&app, "api-only", PASSWORD).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{html}");
        assert!(html.contains("rich-client access is forbidden"));
        assert!(set_cookie(&headers, "ims_console").is_none());
        let (_, xml) = call(&app, "xtk:session#Logon", logon_body("api-only", PASSWORD), &[]).await;
        assert_eq!(fault_code(&xml), None, "{xml}");
        // The administrator signs in.
        let (status, headers, _) = console_sign_in(&app, "boss", PASSWORD).await;
        assert_eq!(status, StatusCode::SEE_OTHER);
        assert_eq!(headers["location"], "/console/");
        let line = set_cookie(&headers, "ims_console").unwrap();
        assert!(
            line.contains("HttpOnly") && line.contains("SameSite=Lax"),
            "{line}"
        );
        let boss_c = format!("ims_console={}", cookie_value(line));
        let (status, _, html) = page(&app, "GET", "/console/operators", &boss_c, &[]).await;
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
        let (_, _, html) = page(&app, "GET", "/console/operators?q=JDO", &boss_c, &[]).await;
        assert!(
            html.contains(">jdoe</a>") && !html.contains(">boss</a>"),
            "{html}"
        );
        // Create through the form; markup in a label is shown, never run.
        let form = [
            ("csrf", csrf.as_str()),
            ("login", "web1"),
            ("label", "<script>alert(1)</script>"),
            ("email", "web1@example.com"),
            ("password", "web-pass-1"),
            ("group", "reportAccess"),
            ("right", "export"),
        ];
        let (status, _, _) = page(&app, "POST", "/console/operators", &boss_c, &form[1..]).await;
        assert_eq!(
            status,
            StatusCode::FORBIDDEN,
            "a form without its token changes nothing"
        );
        assert!(store.operator_by_login("web1").await.unwrap().is_none());
        let (status, headers, html) = page(&app, "POST", "/console/operators", &boss_c, &form).await;
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
            &app,
            "GET",
            &format!("/console/operators/{}?saved=1", web1.id),
            &boss_c,
            &[],
        )
        .await;
        assert!(
            html.contains("Saved.") && (html.contains("&#60;script&#62;") || html.contains("&lt;script&gt;")),
            "{html}"
        );
        assert!(!html.contains("<script>"), "escaped");
        // A refused change shows the form again with what was typed and why.
        let edit = |email: &'static str, disabled: bool| {
            let mut f = vec![
                ("csrf", csrf.clone()),
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
        let (status, _, html) = page(&app, "POST", &path, &boss_c, &pairs).await;
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
        let (status, _, _) = page(&app, "POST", &path, &boss_c, &pairs).await;
        assert_eq!(status, StatusCode::SEE_OTHER);
        let changed = store.operator_by_login("web1").await.unwrap().unwrap();
        assert!(changed.disabled && changed.rights.is_empty() && changed.label == "Web One");
        let (_, _, html) = page(&app, "GET", "/console/operators?q=web1", &boss_c, &[]).await;
        assert!(
            html.contains(r#"<tr class="disabled">"#) && html.contains("<td>Yes</td>"),
            "{html}"
        );
        // Groups and named rights pages.
        let (_, _, html) = page(&app, "GET", "/console/groups", &boss_c, &[]).await;
        assert!(
            html.contains("deliveryOperators") && html.contains("PREPARE DELIVERIES"),
            "{html}"
        );
        let (_, _, html) = page(&app, "GET", "/console/rights", &boss_c, &[]).await;
        assert!(
            html.contains("MESSAGE CENTER") && html.contains("messageCenterAgents"),
            "{html}"
        );
        // Delete.
        let (status, headers, _) = page(
            &app,
            "POST",
            &format!("{path}/delete"),
            &boss_c,
            &[("csrf", &csrf)],
        )
        .await;
        assert_eq!(status, StatusCode::SEE_OTHER);
        assert_eq!(headers["location"], "/console/operators?deleted=web1");
        assert!(store.operator_by_login("web1").await.unwrap().is_none());
        let (status, _, _) = page(&app, "GET", &path, &boss_c, &[]).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        // An operator without ADMINISTRATION has a home page and nothing more.
        let (_, headers, _) = console_sign_in(&app, "jdoe", PASSWORD).await;
        let jdoe_c = format!(
            "ims_console={}",
            cookie_value(set_cookie(&headers, "ims_console").unwrap())
        );
        let (status, _, html) = page(&app, "GET", "/console/", &jdoe_c, &[]).await;
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
            let (status, _, _) = page(&app, "GET", path, &jdoe_c, &[]).await;
            assert_eq!(status, StatusCode::FORBIDDEN, "{path}");
        }
        let jdoe_csrf = csrf_in(&page(&app, "GET", "/console/", &jdoe_c, &[]).await.2);
        let (status, _, _) = page(
            &app,
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
        // The console cookie is no SOAP credential.
        let (_, xml) = call(
            &app,
            "xtk:session#GetUserInfo",
            envelope("GetUserInfo", "xtk:session", "<sessiontoken/>"),
            &[("cookie", boss_c.clone())],
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
        let (status, _, _) = page(&app, "POST", "/console/logout", &boss_c, &[("csrf", &csrf)]).await;
        assert_eq!(status, StatusCode::SEE_OTHER);
        let (status, headers, _) = page(&app, "GET", "/console/", &boss_c, &[]).await;
        assert_eq!(
            (status, headers["location"].to_str().unwrap()),
            (StatusCode::SEE_OTHER, "/console/login")
        );
    }

    /// SECURITY 27: the console's sign-in and sessions follow the same decisions as SOAP `Logon`.
    /// The attack: thirty wrong `Logon`s in a burst, then the right password. Native sign-in
    /// counts failures per folded login (case and compatibility forms alike) with the IMS's
    /// lock-out numbers, `Logon` and the console together; while locked the right password gets
    /// the wrong password's fault; a success clears the count.
    #[tokio::test]
    async fn native_sign_in_is_locked_out_like_the_ims() {
        let (app, _dir) = instance_app().await;
        let (_, xml) = call(&app, "xtk:session#Logon", logon_body("jdoe", PASSWORD), &[]).await;
        assert!(xml.contains("pstrSessionToken"), "{xml}");
        // Four misses, then the right one: let in, and the count starts over.
        for _ in 0..4 {
            let (_, xml) = call(&app, "xtk:session#Logon", logon_body("jdoe", "wrong"), &[]).await;
            assert_eq!(fault_code(&xml).as_deref(), Some("XSV-350024"));
        }
        let (_, xml) = call(&app, "xtk:session#Logon", logon_body("jdoe", PASSWORD), &[]).await;
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
        let (_, xml) = call(&app, "xtk:session#Logon", logon_body("jdoe", PASSWORD), &[]).await;
        assert!(
            !xml.contains("pstrSessionToken"),
            "locked: the right password is refused: {xml}"
        );
        assert_eq!(xml, wrong_fault, "the very answer a wrong password gets");
        let (status, headers, _) = console_sign_in(&app, "jdoe", PASSWORD).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "the console shares the lock");
        assert!(set_cookie(&headers, "ims_console").is_none());
        // Another operator is not affected.
        let (inst, _dir2) = instance_with("7.4.1").await;
        let store = inst.store().clone();
        add_like_jdoe(&store, "other", &["deliveryOperators"]).await;
        let app2 = router(InstanceState {
            instance: Arc::new(inst),
            tls: false,
        });
        for _ in 0..10 {
            call(&app2, "xtk:session#Logon", logon_body("jdoe", "wrong"), &[]).await;
        }
        let (_, xml) = call(&app2, "xtk:session#Logon", logon_body("other", PASSWORD), &[]).await;
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
        let (inst, _dir) = instance_with("7.4.1").await;
        let store = inst.store().clone();
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
        let logon = |login: &str| logon_body(login, PASSWORD);
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
                logon_body("jdoe", PASSWORD),
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
            logon_body("jdoe", PASSWORD),
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
            logon_body("jdoe", PASSWORD),
            &[],
        )
        .await;
        assert!(xml.contains("pstrSessionToken"), "another address is not: {xml}");
    }

    #[tokio::test]
    async fn console_sign_in_applies_the_same_decisions_as_logon() {
        // 8.6: native sign-in only for the allow-list, on both paths.
        let (inst, _dir) = instance_with("8.6.0").await;
        let app = router(InstanceState {
            instance: Arc::new(inst),
            tls: false,
        });
        let (status, headers, _) = console_sign_in(&app, "jdoe", PASSWORD).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert!(set_cookie(&headers, "ims_console").is_none());
        let (_, xml) = call(&app, "xtk:session#Logon", logon_body("jdoe", PASSWORD), &[]).await;
        assert_eq!(fault_code(&xml).as_deref(), Some("XSV-350024"));
        // 7.4.1: signed in, then disabled: the console session is refused at once.
        let (inst, _dir) = instance_with("7.4.1").await;
        let store = inst.store().clone();
        let app = router(InstanceState {
            instance: Arc::new(inst),
            tls: false,
        });
        let (status, headers, _) = console_sign_in(&app, "jdoe", PASSWORD).await;
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
            console_sign_in(&app, "jdoe", PASSWORD).await.0,
            StatusCode::UNAUTHORIZED
        );
    }

    pub(super) fn push(event: &str) -> String {
        envelope(
            "PushEvent",
            "nms:rtEvent",
            &format!("<sessiontoken/><domEvent>{event}</domEvent>"),
        )
    }

    #[tokio::test]
    async fn message_center_events() {
        let (inst, _dir) = instance_of("7.4.1", InstanceKind::MessageCenter).await;
        let store = inst.store().clone();
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
        let event = r#"<rtEvent type="ORDER" email="jane@example.com"><ctx><orderId>A&amp;1</orderId></ctx></rtEvent>"#;
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
        let (_, xml) = call(&app2, "xtk:session#Logon", logon_body("jdoe", PASSWORD), &[]).await;
        let s2 = vec![("x-session-token", value(&xml, "pstrSessionToken"))];
        let (_, xml) = call(&app2, "nms:rtEvent#PushEvent", push(event), &s2).await;
        assert_eq!(fault_code(&xml).as_deref(), Some("SOP-330006"));
    }

    /// The XML attack battery (entities, external entities, depth, namespaces, sizes, a slow
    /// body, mismatched or doubled operations, split credentials), against the real router.
    #[tokio::test]
    async fn the_xml_battery() {
        let (app, _dir) = instance_app().await;
        let logon = logon_body("jdoe", PASSWORD);
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
            ("duplicate credential elements", logon.replace("<parameters", &format!("<password>{PASSWORD}</password><parameters"))),
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
            xml.contains(&format!("exceeds {} bytes", ims_http::campaign::MAX_SOAP_BODY)),
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
}

mod bearer {
    use super::instance::*;
    use super::*;

    fn user_info(token: &str) -> (String, Vec<(&'static str, String)>) {
        (
            envelope("GetUserInfo", "xtk:session", "<sessiontoken/>"),
            vec![("authorization", format!("Bearer {token}"))],
        )
    }

    #[tokio::test]
    async fn a_technical_account_operator_is_created_at_its_first_call() {
        let h = harness().await;
        let c = h.campaign_credential().await;
        let token = h.token(&c, CAMPAIGN_SCOPES).await;
        let (app, inst, _dir) = bearer_app(&h, "7.4.1").await;
        let ta = c.client.technical_account_id.clone();
        assert!(
            inst.store().operator_by_ims_id(&ta).await.unwrap().is_none(),
            "no operator before the first call"
        );
        let (body, headers) = user_info(&token);
        let (_, xml) = call(&app, "xtk:session#GetUserInfo", body.clone(), &headers).await;
        assert!(xml.contains("<GetUserInfoResponse"), "{xml}");
        let op = inst
            .store()
            .operator_by_ims_id(&ta)
            .await
            .unwrap()
            .expect("created by the first call");
        assert_eq!(
            op.login, c.client.technical_account_email,
            "named by the technical account email"
        );
        let created = ims_core::audit::AuditStore::audit(
            inst.store().as_ref(),
            &AuditQuery {
                action_prefix: Some("operator.create".into()),
                limit: 10,
            },
        )
        .await
        .unwrap();
        assert!(
            created
                .iter()
                .any(|e| e.target == c.client.technical_account_email
                    && e.actor.starts_with("technical-account:")),
            "the creation is audited"
        );
        assert_eq!(op.auth_type, ims_campaign::model::AuthType::TechnicalAccount);
        assert!(op.password_hash.is_none());
        // Later calls map to the same operator; usage records the bearer path.
        let (_, xml) = call(&app, "xtk:session#GetUserInfo", body, &headers).await;
        assert!(xml.contains(&format!("loginId=\"{}\"", op.id)));
        // Calls are counted, not written one by one; a flush writes the running total.
        assert!(inst.store().usage(Some(&op.login), 10).await.unwrap().is_empty());
        assert_eq!(inst.flush_usage().await.unwrap(), 1);
        let summary = inst.store().usage_summary(Some(&op.login), 10).await.unwrap();
        assert_eq!(summary.len(), 1);
        assert_eq!(summary[0].counts.calls, 2);
        assert_eq!(summary[0].key.action, "xtk:session#GetUserInfo");
        assert_eq!(summary[0].key.auth_path, ims_campaign::model::AuthPath::Bearer);
        // The next calls add to the same total.
        let (body, headers) = user_info(&token);
        call(&app, "xtk:session#GetUserInfo", body, &headers).await;
        inst.flush_usage().await.unwrap();
        assert_eq!(
            inst.store().usage_summary(Some(&op.login), 10).await.unwrap()[0]
                .counts
                .calls,
            3
        );
        // BearerTokenLogon opens a session for it.
        let logon = envelope(
            "BearerTokenLogon",
            "xtk:session",
            &format!("<sessiontoken/><bearerToken xsi:type=\"xsd:string\">{token}</bearerToken>"),
        );
        let (_, xml) = call(&app, "xtk:session#BearerTokenLogon", logon, &[]).await;
        assert!(
            xml.contains("<BearerTokenLogonResponse") && xml.contains("pstrSecurityToken"),
            "{xml}"
        );
        let session = value(&xml, "pstrSessionToken");
        let (_, xml) = call(
            &app,
            "xtk:session#GetUserInfo",
            envelope("GetUserInfo", "xtk:session", "<sessiontoken/>"),
            &[("x-session-token", session)],
        )
        .await;
        assert!(xml.contains(&c.client.technical_account_email), "{xml}");
    }

    /// A flood of garbage bearer tokens costs its sender nothing: it must not cost the instance
    /// a database row each. Refusals are counted in memory and written as totals.
    #[tokio::test]
    async fn a_flood_of_refused_tokens_writes_totals_not_rows() {
        let h = harness().await;
        let (app, inst, _dir) = bearer_app(&h, "7.4.1").await;
        let before = inst.store().usage(None, 10_000).await.unwrap().len();
        for i in 0..200 {
            let (body, headers) = user_info(&format!("garbage.{i}.token"));
            let (_, xml) = call(&app, "xtk:session#GetUserInfo", body, &headers).await;
            assert_eq!(fault_code(&xml).as_deref(), Some("XSV-350008"));
        }
        assert_eq!(inst.store().usage(None, 10_000).await.unwrap().len(), before);
        inst.flush_usage().await.unwrap();
        let totals = inst.store().usage_summary(None, 100).await.unwrap();
        let refused: i64 = totals
            .iter()
            .filter(|u| u.key.outcome == "refused")
            .map(|u| u.counts.calls)
            .sum();
        assert_eq!(refused, 200, "{totals:?}");
    }

    #[tokio::test]
    async fn bad_tokens_are_refused_with_a_fault() {
        let h = harness().await;
        let c = h.campaign_credential().await;
        let good = h.token(&c, CAMPAIGN_SCOPES).await;
        let (app, _inst, _dir) = bearer_app(&h, "7.4.1").await;
        let now = Now::system();
        // Signed by a key the IMS never published.
        let master = MasterKey::generate();
        let foreign = ims_core::keys::KeyRing::load(
            vec![ims_core::keys::generate(Algorithm::ES256, &master, now, now).unwrap()],
            &master,
            None,
        )
        .unwrap();
        let mut claims = claims(&good);
        let other_key =
            ims_core::jose::sign(&claims, foreign.signer(Algorithm::ES256, now).unwrap()).unwrap();
        // Re-signed with the IMS's own key, claims altered.
        let ring = ims_core::keys::KeyRing::load(
            ims_identity::store::KeyStore::keys(&*h.store).await.unwrap(),
            &h.master,
            None,
        )
        .unwrap();
        let signer = ring.signer(Algorithm::ES256, now).unwrap();
        claims["exp"] = json!(now.secs() - 3600);
        let expired = ims_core::jose::sign(&claims, signer).unwrap();
        let mut c2 = super::claims(&good);
        c2["iss"] = json!("https://evil.example");
        let wrong_issuer = ims_core::jose::sign(&c2, signer).unwrap();
        let mut c3 = super::claims(&good);
        c3["type"] = json!("id_token");
        let other_type = ims_core::jose::sign(&c3, signer).unwrap();
        for (what, token) in [
            ("other key", other_key),
            ("expired", expired),
            ("wrong issuer", wrong_issuer),
            ("id token", other_type),
            ("garbage", "a.b.c".to_owned()),
        ] {
            let (body, headers) = user_info(&token);
            let (status, xml) = call(&app, "xtk:session#GetUserInfo", body, &headers).await;
            assert_eq!(status, StatusCode::OK);
            assert_eq!(fault_code(&xml).as_deref(), Some("XSV-350008"), "{what}: {xml}");
        }
        // The good one passes.
        let (body, headers) = user_info(&good);
        let (_, xml) = call(&app, "xtk:session#GetUserInfo", body, &headers).await;
        assert!(xml.contains("<GetUserInfoResponse"), "{xml}");
    }

    struct DownKeys;

    #[async_trait::async_trait]
    impl ims_campaign::bearer::JwksSource for DownKeys {
        async fn fetch(&self) -> Result<Value, String> {
            Err("connection refused".into())
        }
    }

    #[tokio::test]
    async fn an_unreachable_ims_is_a_server_fault_not_an_expired_session() {
        let h = harness().await;
        let c = h.campaign_credential().await;
        let token = h.token(&c, CAMPAIGN_SCOPES).await;
        let (inst, _dir) = super::instance::instance_with("7.4.1").await;
        let issuer = ims_campaign::bearer::TrustedIssuer::new(ISSUER, Arc::new(DownKeys));
        let app = ims_http::campaign::router(ims_http::campaign::InstanceState {
            instance: Arc::new(inst.with_bearer(Arc::new(issuer))),
            tls: false,
        });
        let (body, headers) = user_info(&token);
        let (_, xml) = call(&app, "xtk:session#GetUserInfo", body, &headers).await;
        assert_eq!(fault_code(&xml).as_deref(), Some("XSV-350001"), "{xml}");
        assert!(xml.contains("<faultcode>SOAP-ENV:Server</faultcode>"));
    }

    #[tokio::test]
    async fn bearer_tokens_follow_the_build_matrix() {
        let h = harness().await;
        let c = h.campaign_credential().await;
        let token = h.token(&c, CAMPAIGN_SCOPES).await;
        for (build, accepted) in [
            ("7.3.1", false),
            ("7.3.2.IMS", true),
            ("7.3.4", false),
            ("7.3.5", true),
            ("7.4.1", true),
            ("8.5.2", true),
            ("8.6.0", true),
        ] {
            let (app, _inst, _dir) = bearer_app(&h, build).await;
            let (body, headers) = user_info(&token);
            let (_, xml) = call(&app, "xtk:session#GetUserInfo", body, &headers).await;
            assert_eq!(xml.contains("<GetUserInfoResponse"), accepted, "{build}: {xml}");
            if !accepted {
                assert!(
                    xml.contains("7.4.1 and later"),
                    "the fault names the builds that accept bearer tokens"
                );
            }
        }
    }
}

/// People sign in through the browser: authorization code with PKCE, sessions, refresh, userinfo.
mod people {
    use super::*;
    use ims_identity::model::ClientType;
    use ims_identity::people::{self, NewUser};

    pub(super) const PASSWORD: &str = "a long enough passphrase";
    pub(super) const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    pub(super) const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
    pub(super) const REDIRECT: &str = "https://app.test/cb";

    /// A browser: its cookies, kept across requests.
    #[derive(Default, Clone)]
    pub(super) struct Browser {
        pub(super) cookies: Vec<(String, String)>,
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

        pub(super) fn has(&self, name: &str) -> bool {
            self.cookies.iter().any(|(k, _)| k == name)
        }

        pub(super) async fn get(
            &mut self,
            app: &Router,
            path: &str,
        ) -> (StatusCode, http::HeaderMap, String) {
            let req = Request::get(path)
                .header("cookie", self.header())
                .body(Body::empty())
                .unwrap();
            self.send(app, req).await
        }

        pub(super) async fn post(
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

    pub(super) fn location(headers: &http::HeaderMap) -> String {
        headers["location"].to_str().unwrap().to_owned()
    }

    pub(super) fn csrf_in(html: &str) -> String {
        let at = html.find(r#"name="csrf" value=""#).expect("a form") + 19;
        html[at..].split('"').next().unwrap().to_owned()
    }

    pub(super) fn query_of(uri: &str) -> std::collections::HashMap<String, String> {
        url::Url::parse(uri).unwrap().query_pairs().into_owned().collect()
    }

    pub(super) fn claims(jwt: &str) -> Value {
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(jwt.split('.').nth(1).unwrap()).unwrap()).unwrap()
    }

    impl Harness {
        pub(super) async fn person(&self, email: &str) -> ims_identity::model::User {
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
        pub(super) async fn app_client(&self) -> String {
            self.people_client(true).await
        }

        pub(super) async fn people_client(&self, first_party: bool) -> String {
            let (c, secret) = self
                .creds
                .create_people_client(
                    &self.org_id,
                    "Example app",
                    ClientType::Public,
                    vec![REDIRECT.into(), "http://127.0.0.1/native".into()],
                    vec![
                        "openid".into(),
                        "email".into(),
                        "profile".into(),
                        "AdobeID".into(),
                        "additional_info.projectedProductContext".into(),
                        "user_management_sdk".into(),
                        "adobeio_api".into(),
                    ],
                    first_party,
                    &Context::new(Now::system(), "test"),
                )
                .await
                .unwrap();
            assert!(secret.is_none(), "public clients have no secret");
            c.client_id
        }
    }

    pub(super) fn authorize_path(client_id: &str, extra: &[(&str, &str)]) -> String {
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
    pub(super) async fn sign_in(
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
    pub(super) async fn sign_in_at(
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

    pub(super) async fn redeem(h: &Harness, client_id: &str, code: &str) -> (StatusCode, Value) {
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
}

/// The authorization endpoint, codes, the token endpoint, refresh tokens, ID tokens and sign-in
/// throttling through raw HTTP (and the domain where time must move).
mod people_security {
    use super::people::*;
    use super::*;
    use ims_core::lockout::ThrottleStore as _;
    use ims_identity::service::{ClientAuth, TokenRequest};

    use super::people::claims;
    use ims_identity::service::FREE_FAILURES;

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

    async fn refresh(h: &Harness, client_id: &str, token: &str, scope: Option<&str>) -> (StatusCode, Value) {
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
            .token(&code_request(&client, &code), &ctx_at(61))
            .await;
        assert!(matches!(late, Err(ims_core::Error::InvalidGrant(_))), "{late:?}");
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
            let late = h.state.ims.token(&req, &ctx_at(31 * 86_400)).await;
            assert!(matches!(late, Err(ims_core::Error::InvalidGrant(_))), "{late:?}");
            h.cleanup().await;
        }
    }

    #[tokio::test]
    async fn disabling_a_password_change_or_end_sessions_end_sessions_and_refresh_tokens() {
        use ims_identity::people::{change_user, UserChange};
        let h = harness().await;
        let user = h.person("jane@example.com").await;
        let client = h.app_client().await;
        let ctx = Context::new(Now::system(), "test");
        for change in [
            UserChange::EndSessions,
            UserChange::SetPassword(Secret::new(PASSWORD)),
            UserChange::SetStatus(ims_identity::model::UserStatus::Disabled),
        ] {
            let mut b = Browser::default();
            let (_, to) = sign_in(&h, &mut b, &client, "jane@example.com", PASSWORD).await;
            let (_, tokens) = redeem(&h, &client, &query_of(&to)["code"]).await;
            // Sessions count from the millisecond after the change.
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            let label = format!("{change:?}");
            change_user(h.store.as_ref(), &user.user_id, change, &ctx)
                .await
                .unwrap();
            let (status, _) = refresh(&h, &client, tokens["refresh_token"].as_str().unwrap(), None).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{label}");
            let (_, headers, _) = b
                .get(&h.app, &authorize_path(&client, &[("prompt", "none")]))
                .await;
            assert_eq!(
                query_of(&location(&headers))["error"],
                "login_required",
                "{label}: browser session ended"
            );
            change_user(
                h.store.as_ref(),
                &user.user_id,
                UserChange::SetStatus(ims_identity::model::UserStatus::Active),
                &ctx,
            )
            .await
            .unwrap();
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        h.cleanup().await;
    }

    /// SECURITY 23 and 24: the lock-out numbers, one counter for every case of an email, and one
    /// answer (status, body) for unknown email, wrong password, locked and disabled accounts.
    #[tokio::test]
    async fn lock_out_and_no_enumeration() {
        let h = harness().await;
        h.person("jane@example.com").await;
        let disabled = h.person("gone@example.com").await;
        ims_identity::people::change_user(
            h.store.as_ref(),
            &disabled.user_id,
            ims_identity::people::UserChange::SetStatus(ims_identity::model::UserStatus::Disabled),
            &Context::new(Now::system(), "test"),
        )
        .await
        .unwrap();
        let client = h.app_client().await;
        let strip = |html: &str| {
            html.replace(char::is_whitespace, "")
                .split("<formmethod")
                .next()
                .unwrap()
                .to_owned()
        };
        let mut answers = Vec::new();
        for (email, password) in [
            ("nobody@example.com", PASSWORD),
            ("jane@example.com", "wrong password"),
            ("gone@example.com", PASSWORD),
        ] {
            let (status, html) = sign_in(&h, &mut Browser::default(), &client, email, password).await;
            answers.push((status, strip(&html).replace(email, "EMAIL")));
        }
        assert!(answers.iter().all(|a| a == &answers[0]), "{answers:#?}");
        assert_eq!(answers[0].0, StatusCode::UNAUTHORIZED);
        // Four more failures in other cases of the email: the fifth locks for 30 s.
        for email in [
            "JANE@example.com",
            "Jane@Example.com",
            "jane@EXAMPLE.com",
            "jAnE@example.com",
        ] {
            sign_in(&h, &mut Browser::default(), &client, email, "wrong password").await;
        }
        let (failures, _, until) = h
            .store
            .failures(&h.org_id, "jane@example.com")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(failures, 5);
        let lock = until.millis() - Now::system().millis();
        assert!((25_000..=30_000).contains(&lock), "locked for {lock} ms");
        let (status, html) =
            sign_in(&h, &mut Browser::default(), &client, "jane@example.com", PASSWORD).await;
        assert_eq!(
            (status, strip(&html).replace("jane@example.com", "EMAIL")),
            answers[0].clone(),
            "locked: the right password gets the same answer"
        );
        // An attempt refused by the lock changes nothing.
        let (failures, _, still) = h
            .store
            .failures(&h.org_id, "jane@example.com")
            .await
            .unwrap()
            .unwrap();
        assert_eq!((failures, still), (5, until));
        h.cleanup().await;
    }

    /// Attempts are counted before the password is checked, in one statement: a burst of
    /// concurrent guesses gets exactly five verifications before the lock, on both backends.
    #[tokio::test]
    async fn concurrent_guesses_are_let_in_five_at_a_time() {
        for db in [Db::Sqlite, Db::Postgres] {
            let Some(h) = harness_on(db, Algorithm::ES256).await else {
                continue;
            };
            let client = h.app_client().await;
            let mut tasks = Vec::new();
            for _ in 0..20 {
                let mut b = Browser::default();
                let app = h.app.clone();
                let path = authorize_path(&client, &[]);
                tasks.push(tokio::spawn(async move {
                    let (_, headers, _) = b.get(&app, &path).await;
                    let page = location(&headers);
                    let (_, _, html) = b.get(&app, &page).await;
                    b.post(
                        &app,
                        &page,
                        &[("csrf", &csrf_in(&html)), ("email", "burst@example.com")],
                    )
                    .await;
                    b.post(&app, &page, &[("csrf", &csrf_in(&html)), ("password", "a guess")])
                        .await
                        .0
                }));
            }
            for t in tasks {
                assert_eq!(t.await.unwrap(), StatusCode::UNAUTHORIZED);
            }
            let (failures, _, _) = h
                .store
                .failures(&h.org_id, "burst@example.com")
                .await
                .unwrap()
                .unwrap();
            assert_eq!(failures, FREE_FAILURES, "only five attempts were let in");
            h.cleanup().await;
        }
    }

    /// SECURITY 23, timing: an unknown email and a wrong password both cost one Argon2id
    /// verification. Tolerance: medians within 50 % of each other, plus 25 ms of scheduling noise.
    #[tokio::test]
    async fn unknown_email_and_wrong_password_take_about_as_long() {
        let h = harness().await;
        h.person("jane@example.com").await;
        let client = h.app_client().await;
        let mut median = Vec::new();
        for email in ["nobody@example.com", "jane@example.com"] {
            let mut times = Vec::new();
            for _ in 0..5 {
                let mut b = Browser::default();
                let (_, headers, _) = b.get(&h.app, &authorize_path(&client, &[])).await;
                let page = location(&headers);
                let (_, _, html) = b.get(&h.app, &page).await;
                b.post(&h.app, &page, &[("csrf", &csrf_in(&html)), ("email", email)])
                    .await;
                let (_, _, html) = b.get(&h.app, &page).await;
                let started = std::time::Instant::now();
                b.post(
                    &h.app,
                    &page,
                    &[("csrf", &csrf_in(&html)), ("password", "wrong password")],
                )
                .await;
                times.push(started.elapsed().as_secs_f64());
            }
            times.sort_by(f64::total_cmp);
            median.push(times[2]);
        }
        let (a, b) = (median[0], median[1]);
        assert!(
            (a - b).abs() <= 0.5 * a.max(b) + 0.025,
            "unknown {a:.3} s vs wrong password {b:.3} s"
        );
        h.cleanup().await;
    }

    #[tokio::test]
    async fn one_time_codes_after_the_password() {
        let h = harness().await;
        let user = h.person("jane@example.com").await;
        let client = h.app_client().await;
        let e = ims_identity::people::enrol_totp(
            h.store.as_ref(),
            &h.master,
            &user.user_id,
            "Acme",
            &Context::new(Now::system(), "test"),
        )
        .await
        .unwrap();
        let key = base32_decode(&e.secret_base32);
        let mut b = Browser::default();
        let (status, html) = sign_in(&h, &mut b, &client, "jane@example.com", PASSWORD).await;
        assert_eq!(
            status,
            StatusCode::SEE_OTHER,
            "the password step moves on: {html}"
        );
        let page = html;
        let (_, _, html) = b.get(&h.app, &page).await;
        assert!(html.contains(r#"name="code""#), "{html}");
        let (status, _, html) = b
            .post(&h.app, &page, &[("csrf", &csrf_in(&html)), ("code", "000000")])
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        let step = Now::system().secs() / ims_identity::totp::STEP_SECS;
        let code = ims_identity::totp::code_at(&key, step);
        let (status, headers, _) = b
            .post(&h.app, &page, &[("csrf", &csrf_in(&html)), ("code", &code)])
            .await;
        assert_eq!(status, StatusCode::SEE_OTHER);
        let (_, tokens) = redeem(&h, &client, &query_of(&location(&headers))["code"]).await;
        assert_eq!(
            claims(tokens["id_token"].as_str().unwrap())["amr"],
            json!(["pwd", "otp", "mfa"])
        );
        // The same one-time code is accepted once.
        let mut again = Browser::default();
        let (_, page) = sign_in(&h, &mut again, &client, "jane@example.com", PASSWORD).await;
        let (_, _, html) = again.get(&h.app, &page).await;
        let (status, _, _) = again
            .post(&h.app, &page, &[("csrf", &csrf_in(&html)), ("code", &code)])
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "a replayed one-time code");
        // A recovery code works once.
        let recovery = e.recovery_codes[0].expose().to_owned();
        for expected in [StatusCode::SEE_OTHER, StatusCode::UNAUTHORIZED] {
            let mut b = Browser::default();
            let (_, page) = sign_in(&h, &mut b, &client, "jane@example.com", PASSWORD).await;
            let (_, _, html) = b.get(&h.app, &page).await;
            let (status, _, _) = b
                .post(&h.app, &page, &[("csrf", &csrf_in(&html)), ("code", &recovery)])
                .await;
            assert_eq!(status, expected);
        }
        h.cleanup().await;
    }

    fn base32_decode(s: &str) -> Vec<u8> {
        let (mut out, mut buffer, mut bits) = (Vec::new(), 0u32, 0u32);
        for c in s.bytes() {
            let v = match c {
                b'A'..=b'Z' => c - b'A',
                b'2'..=b'7' => c - b'2' + 26,
                _ => panic!("not base32"),
            };
            buffer = (buffer << 5) | u32::from(v);
            bits += 5;
            if bits >= 8 {
                bits -= 8;
                out.push((buffer >> bits) as u8);
            }
        }
        out
    }

    #[tokio::test]
    async fn rp_initiated_logout() {
        let h = harness().await;
        h.person("jane@example.com").await;
        let client = h.app_client().await;
        let mut b = Browser::default();
        let (_, to) = sign_in(&h, &mut b, &client, "jane@example.com", PASSWORD).await;
        let (_, tokens) = redeem(&h, &client, &query_of(&to)["code"]).await;
        let id_token = tokens["id_token"].as_str().unwrap();
        // Without a hint: a confirmation form, nobody signed out by a link.
        let (status, _, html) = b.get(&h.app, "/ims/logout/v1").await;
        assert_eq!(status, StatusCode::OK);
        assert!(html.contains("Sign out?"));
        assert!(b.has("ims_sid"));
        // A link naming the client but no valid ID token of this person signs nobody out.
        h.person("mallory@example.com").await;
        let mut mallory = Browser::default();
        let (_, to) = sign_in(&h, &mut mallory, &client, "mallory@example.com", PASSWORD).await;
        let (_, theirs) = redeem(&h, &client, &query_of(&to)["code"]).await;
        for hint in ["garbage", theirs["id_token"].as_str().unwrap()] {
            let path = format!(
                "/ims/logout/v1?{}",
                encode(&[
                    ("id_token_hint", hint),
                    ("client_id", client.as_str()),
                    ("post_logout_redirect_uri", REDIRECT)
                ])
            );
            let (status, _, html) = b.get(&h.app, &path).await;
            assert_eq!(status, StatusCode::OK, "a confirmation page");
            assert!(html.contains("Sign out?"));
            assert!(b.has("ims_sid"), "still signed in");
        }
        // An unregistered post-logout URI is not followed.
        let path = format!(
            "/ims/logout/v1?{}",
            encode(&[
                ("id_token_hint", id_token),
                ("post_logout_redirect_uri", "https://evil.test/"),
                ("state", "s")
            ])
        );
        let (status, _, _) = b.get(&h.app, &path).await;
        assert_eq!(status, StatusCode::OK, "confirmation page, no redirect");
        let path = format!(
            "/ims/logout/v1?{}",
            encode(&[
                ("id_token_hint", id_token),
                ("post_logout_redirect_uri", REDIRECT),
                ("state", "s")
            ])
        );
        let (status, headers, _) = b.get(&h.app, &path).await;
        assert_eq!(status, StatusCode::SEE_OTHER);
        assert_eq!(location(&headers), format!("{REDIRECT}?state=s"));
        assert!(!b.has("ims_sid"));
        let (_, headers, _) = b
            .get(&h.app, &authorize_path(&client, &[("prompt", "none")]))
            .await;
        assert_eq!(query_of(&location(&headers))["error"], "login_required");
        h.cleanup().await;
    }

    /// SECURITY 25 and 26: the session cookie's flags, a new session at every sign-in, the
    /// password change page and an administrator's one-time reset link.
    #[tokio::test]
    async fn sessions_password_change_and_reset_links() {
        let h = harness().await;
        let user = h.person("jane@example.com").await;
        let client = h.app_client().await;
        let mut b = Browser::default();
        let (_, headers, _) = b.get(&h.app, &authorize_path(&client, &[])).await;
        let line = headers["set-cookie"].to_str().unwrap().to_owned();
        assert!(
            line.starts_with("ims_browser=")
                && line.contains("Secure")
                && line.contains("HttpOnly")
                && line.contains("SameSite=Lax"),
            "{line}"
        );
        let sid = |b: &Browser| {
            b.cookies
                .iter()
                .find(|(k, _)| k == "ims_sid")
                .map(|(_, v)| v.clone())
        };
        sign_in(&h, &mut b, &client, "jane@example.com", PASSWORD).await;
        let first = sid(&b).unwrap();
        let (_, headers, _) = b
            .get(&h.app, &authorize_path(&client, &[("prompt", "login")]))
            .await;
        let page = location(&headers);
        let (_, _, html) = b.get(&h.app, &page).await;
        b.post(
            &h.app,
            &page,
            &[("csrf", &csrf_in(&html)), ("email", "jane@example.com")],
        )
        .await;
        let (_, _, html) = b.get(&h.app, &page).await;
        let (_, headers, _) = b
            .post(
                &h.app,
                &page,
                &[("csrf", &csrf_in(&html)), ("password", PASSWORD)],
            )
            .await;
        let set = headers
            .get_all("set-cookie")
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .find(|l| l.starts_with("ims_sid="))
            .unwrap();
        assert!(
            set.contains("Secure") && set.contains("HttpOnly") && set.contains("SameSite=Lax"),
            "{set}"
        );
        assert_ne!(sid(&b).unwrap(), first, "a new session at each sign-in");
        // The password change page: the current password is checked, then the policy.
        let (status, _, html) = b.get(&h.app, "/ims/account/password").await;
        assert_eq!(status, StatusCode::OK);
        let csrf = csrf_in(&html);
        let change = |current: &'static str, new: &'static str, confirm: &'static str| {
            vec![
                ("csrf", csrf.clone()),
                ("current", current.to_owned()),
                ("password", new.to_owned()),
                ("confirm", confirm.to_owned()),
            ]
        };
        for (form, status) in [
            (
                change("wrong one", "another long passphrase", "another long passphrase"),
                StatusCode::UNAUTHORIZED,
            ),
            (
                change(PASSWORD, "another long passphrase", "different"),
                StatusCode::BAD_REQUEST,
            ),
            (
                change(PASSWORD, "password1", "password1"),
                StatusCode::BAD_REQUEST,
            ),
        ] {
            let pairs: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
            assert_eq!(b.post(&h.app, "/ims/account/password", &pairs).await.0, status);
        }
        let form = change(PASSWORD, "another long passphrase", "another long passphrase");
        let pairs: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let (status, _, html) = b.post(&h.app, "/ims/account/password", &pairs).await;
        assert_eq!(status, StatusCode::OK, "{html}");
        assert!(!b.has("ims_sid"), "every session ended");
        let (status, _) = sign_in(&h, &mut Browser::default(), &client, "jane@example.com", PASSWORD).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "the old password is gone");
        // A reset link: policy failures keep it usable, success uses it up.
        let token = ims_identity::people::password_reset_link(
            h.store.as_ref(),
            &user.user_id,
            &Context::new(Now::system(), "test"),
        )
        .await
        .unwrap();
        let path = format!("/ims/reset/{}", token.expose());
        let mut b = Browser::default();
        let (status, _, html) = b.get(&h.app, &path).await;
        assert_eq!(status, StatusCode::OK);
        assert!(html.contains("jane@example.com"));
        let csrf = csrf_in(&html);
        assert_eq!(
            b.post(
                &h.app,
                &path,
                &[
                    ("csrf", &csrf),
                    ("password", "qwertyuiop"),
                    ("confirm", "qwertyuiop")
                ]
            )
            .await
            .0,
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            b.post(
                &h.app,
                &path,
                &[
                    ("csrf", "forged"),
                    ("password", "a reset passphrase"),
                    ("confirm", "a reset passphrase")
                ]
            )
            .await
            .0,
            StatusCode::FORBIDDEN
        );
        assert_eq!(
            b.post(
                &h.app,
                &path,
                &[
                    ("csrf", &csrf),
                    ("password", "a reset passphrase"),
                    ("confirm", "a reset passphrase")
                ]
            )
            .await
            .0,
            StatusCode::OK
        );
        assert_eq!(b.get(&h.app, &path).await.0, StatusCode::BAD_REQUEST, "used up");
        let (status, _) = sign_in(
            &h,
            &mut Browser::default(),
            &client,
            "jane@example.com",
            "a reset passphrase",
        )
        .await;
        assert_eq!(status, StatusCode::SEE_OTHER);
        h.cleanup().await;
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
}

/// The lock-down restrictions through the SOAP API and the console, on both backends.
mod restrictions {
    use super::instance::*;
    use super::*;
    use ims_campaign::config::ImsSwitches;
    use ims_campaign::restrictions::RESTRICTED_CODE;
    use ims_campaign::service::{Instance, InstanceKind};
    use ims_http::campaign::{router, InstanceState};

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
    ) -> Option<(Router, Arc<Instance>, tempfile::TempDir, Cleanup)> {
        let (inst, dir, cleanup) = instance_on(db, build, InstanceKind::Marketing).await?;
        let issuer =
            ims_campaign::bearer::TrustedIssuer::new(ISSUER, Arc::new(ImsKeysOf(h.state.ims.clone())));
        let inst = Arc::new(inst.with_bearer(Arc::new(issuer)));
        add_like_jdoe(inst.store(), "admin", &["admin"]).await;
        add_like_jdoe(inst.store(), "svc-b", &[]).await;
        let app = router(InstanceState {
            instance: inst.clone(),
            tls: false,
        });
        Some((app, inst, dir, cleanup))
    }

    struct ImsKeysOf(Arc<Ims>);

    #[async_trait::async_trait]
    impl ims_campaign::bearer::JwksSource for ImsKeysOf {
        async fn fetch(&self) -> Result<Value, String> {
            self.0.jwks(Now::system()).await.map_err(|e| e.to_string())
        }
    }

    async fn logon(app: &Router, login: &str) -> (Option<String>, Vec<(&'static str, String)>) {
        let (_, xml) = call(app, "xtk:session#Logon", logon_body(login, PASSWORD), &[]).await;
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

    pub(super) async fn finish(cleanup: Cleanup) {
        if let Some((store, schema)) = cleanup {
            store.drop_schema(&schema).await.unwrap();
        }
    }

    #[tokio::test]
    async fn the_switches_take_effect_on_reload_through_the_soap_api() {
        let h = harness().await;
        let c = h.campaign_credential().await;
        let token = h.token(&c, CAMPAIGN_SCOPES).await;
        let bearer = vec![("authorization", format!("Bearer {token}"))];
        for db in [Db::Sqlite, Db::Postgres] {
            let Some((app, inst, _dir, cleanup)) = restricted(&h, db, "7.4.1").await else {
                continue;
            };
            let (none, jdoe_session) = logon(&app, "jdoe").await;
            assert_eq!(none, None, "{db:?}: native sign-in works before the lock-down");
            let (_, admin) = logon(&app, "admin").await;
            assert_eq!(user_info(&app, &bearer).await, None, "{db:?}");
            let ta = inst
                .store()
                .operator_by_ims_id(&c.client.technical_account_id)
                .await
                .unwrap()
                .unwrap();

            let ctx = Context::new(Now::system(), "test:reload");
            assert!(inst.apply_switches(&switches(true, true), &ctx).await.unwrap());
            assert!(
                !inst.apply_switches(&switches(true, true), &ctx).await.unwrap(),
                "the same switches again change nothing"
            );
            let audit = ims_core::audit::AuditStore::audit(
                inst.store().as_ref(),
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
            let jdoe_before = inst.store().operator_by_login("jdoe").await.unwrap().unwrap();
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
                inst.store().operator_by_login("jdoe").await.unwrap().unwrap(),
                jdoe_before,
                "{db:?}: nothing changed"
            );
            assert!(inst.store().operator_by_login("newbie").await.unwrap().is_none());
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
            inst.apply_switches(&switches(true, false), &ctx).await.unwrap();
            assert_eq!(logon(&app, "jdoe").await.0, None, "{db:?}");
            let create = r#"<operator xtkschema="xtk:operator" _operation="insert" name="newbie" password="first-pass-1"/>"#;
            assert_eq!(
                write(&app, &admin, create).await.as_deref(),
                Some(RESTRICTED_CODE)
            );
            // Both off: everything is back.
            inst.apply_switches(&switches(false, false), &ctx).await.unwrap();
            assert_eq!(write(&app, &admin, create).await, None, "{db:?}");
            finish(cleanup).await;
        }
    }

    #[tokio::test]
    async fn builds_from_8_6_keep_both_restrictions_on_whatever_the_file_says() {
        let h = harness().await;
        for db in [Db::Sqlite, Db::Postgres] {
            let Some((app, inst, _dir, cleanup)) = restricted(&h, db, "8.6.0").await else {
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
            inst.apply_switches(&switches(false, false), &ctx).await.unwrap();
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
            let Some((app, inst, _dir, cleanup)) = restricted(&h, db, "7.4.1").await else {
                continue;
            };
            let (_, headers, _) = console_sign_in(&app, "admin", PASSWORD).await;
            let cookie = format!(
                "ims_console={}",
                cookie_value(set_cookie(&headers, "ims_console").unwrap())
            );
            let jdoe = inst.store().operator_by_login("jdoe").await.unwrap().unwrap();
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
            inst.apply_switches(&switches(true, true), &ctx).await.unwrap();
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
            assert!(html
                .contains(r#"<button type="submit" disabled aria-describedby="restricted">Save</button>"#));
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
            assert_eq!(
                inst.store().operator_by_login("jdoe").await.unwrap().unwrap(),
                jdoe
            );
            assert!(inst.store().operator_by_login("newbie").await.unwrap().is_none());
            // The state, the allow-list and what is blocked.
            let (_, _, html) = page(&app, "GET", "/console/restrictions", &cookie, &[]).await;
            assert!(
                html.contains(r#"<td id="operator-management">On</td>"#)
                    && html.contains(r#"<td id="native-api">On</td>"#),
                "{html}"
            );
            assert!(html.contains("<code>svc-a|svc-b</code>") && !html.contains("id=\"forced\""));
            // jdoe may no longer sign in to the console either.
            let (status, _, _) = console_sign_in(&app, "jdoe", PASSWORD).await;
            assert_ne!(status, StatusCode::SEE_OTHER, "{db:?}");
            finish(cleanup).await;
        }
        // On 8.6 the console says the build keeps the restrictions on.
        let (app, _inst, _dir, _) = restricted(&h, Db::Sqlite, "8.6.0").await.unwrap();
        let (_, headers, _) = console_sign_in(&app, "admin", PASSWORD).await;
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
            let Some((_app, inst, _dir, cleanup)) = restricted(&h, db, "7.4.1").await else {
                continue;
            };
            let count = inst.store().operator_count().await.unwrap();
            let audit_len = || async {
                ims_core::audit::AuditStore::audit(
                    inst.store().as_ref(),
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
                let store = inst.store().clone();
                let token = Secret::new(token.clone());
                let ims = h.state.ims.clone();
                async move {
                    let issuer = ims_campaign::bearer::TrustedIssuer::new(ISSUER, Arc::new(ImsKeysOf(ims)));
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
                inst.store().operator_count().await.unwrap(),
                count,
                "{db:?}: no operator created"
            );
            assert!(
                inst.store()
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
            let admin = inst.store().operator_by_login("admin").await.unwrap().unwrap();
            assert!(
                ims_core::password::verify(&Secret::new(PASSWORD), admin.password_hash.as_deref().unwrap())
                    .await
                    .unwrap(),
                "admin's password is untouched"
            );
            finish(cleanup).await;
        }
    }
}

/// The User Management API: who may call it, what it answers, and action requests checked
/// against a reference model.
mod umapi {
    use super::people::*;
    use super::*;
    use ims_identity::directory::AdminRole;
    use ims_identity::service::directory::UMAPI_SCOPE;
    use ims_identity::store::{AuditStore as _, UserStore as _};
    use proptest::prelude::*;

    /// A person's access token from the sign-in flow (people tokens are issued to a people
    /// client, whose id is the token's `client_id`).
    pub(super) async fn person_token(h: &Harness, email: &str, password: &str) -> (String, String) {
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

    pub(super) fn req(
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
    pub(super) async fn marketing(
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
                ims_identity::service::directory::create_product_profile(
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
    pub(super) async fn console_token(h: &Harness, email: &str, password: &str) -> String {
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

    /// Every route of the admin surface, with a harmless request for each.
    fn routes(org: &str) -> Vec<(&'static str, String, Option<&'static str>)> {
        vec![
            ("GET", format!("/v2/usermanagement/users/{org}/0"), None),
            (
                "GET",
                format!("/v2/usermanagement/users/{org}/0/Some%20Group?directOnly=False"),
                None,
            ),
            ("GET", format!("/v2/usermanagement/groups/{org}/0"), None),
            (
                "GET",
                format!("/v2/usermanagement/organizations/{org}/users/admin@acme.test"),
                None,
            ),
            (
                "POST",
                format!("/v2/usermanagement/action/{org}?testOnly=true"),
                Some(r#"[{"usergroup":"Probe","do":[{"createUserGroup":{}}]}]"#),
            ),
            (
                "GET",
                format!("/v2/usermanagement/audit/{org}/0?action=umapi."),
                None,
            ),
            ("GET", format!("/v2/usermanagement/profiles/{org}/Probe"), None),
            (
                "POST",
                format!("/v2/usermanagement/profiles/{org}"),
                Some(r#"{"name":"Probe","productContext":"dma_campaign_classic","instance":"none"}"#),
            ),
        ]
    }

    #[tokio::test]
    async fn product_profiles_are_created_and_read_with_their_permission_items() {
        let h = harness().await;
        marketing(&h, None).await;
        let um = h.credential(&["openid", UMAPI_SCOPE]).await;
        let token = h.token(&um, UMAPI_SCOPE).await;
        let key = Some(um.client.client_id.as_str());
        let create = |body: &'static str| {
            h.call(req(
                "POST",
                &format!("/v2/usermanagement/profiles/{}", h.org_id),
                Some(&token),
                key,
                Some(body),
            ))
        };
        let body = r#"{"name":"campaign - marketing - deliveryOperators","productContext":"dma_campaign_classic","instance":"marketing","permissions":["prepareDelivery","startDelivery"]}"#;
        let (status, headers, out) = create(body).await;
        assert_eq!(status, StatusCode::CREATED, "{out}");
        assert_eq!(headers["cache-control"], "no-store");
        assert_eq!(
            out["profile"]["groupName"],
            "campaign - marketing - deliveryOperators"
        );
        assert_eq!(out["profile"]["instance"], "marketing");
        assert_eq!(
            out["profile"]["permissions"],
            json!(["prepareDelivery", "startDelivery"])
        );
        let (status, _, out) = create(body).await;
        assert_eq!(
            (status, out["result"].as_str()),
            (StatusCode::CONFLICT, Some("error.group.exists"))
        );
        let (status, _, out) =
            create(r#"{"name":"x","productContext":"dma_campaign_classic","instance":"nowhere"}"#).await;
        assert_eq!(
            (status, out["result"].as_str()),
            (StatusCode::NOT_FOUND, Some("error.product.not_found"))
        );
        let (status, _, _) = create(r#"{"name":"x"}"#).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);

        let get = |name: &'static str| {
            h.call(req(
                "GET",
                &format!("/v2/usermanagement/profiles/{}/{name}", h.org_id),
                Some(&token),
                key,
                None,
            ))
        };
        let (status, _, out) = get("campaign%20-%20marketing%20-%20deliveryOperators").await;
        assert_eq!(status, StatusCode::OK, "{out}");
        assert_eq!(
            out["profile"]["permissions"],
            json!(["prepareDelivery", "startDelivery"])
        );
        assert_eq!(out["profile"]["memberCount"], 0);
        let (status, _, out) = get("nothing").await;
        assert_eq!(
            (status, out["result"].as_str()),
            (StatusCode::NOT_FOUND, Some("error.group.not_found"))
        );
        // The creation is audited with who made it.
        let events = h
            .store
            .audit(&ims_core::audit::AuditQuery {
                action_prefix: Some("profile.create".into()),
                limit: 10,
            })
            .await
            .unwrap();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].actor, format!("client:{}", um.client.client_id));
    }

    /// Every page of the Admin Console and the role it needs (`None`: any administrator).
    fn console_routes() -> Vec<(&'static str, &'static str, Option<AdminRole>)> {
        vec![
            ("GET", "/admin/", None),
            ("GET", "/admin/users", Some(AdminRole::SystemAdmin)),
            ("POST", "/admin/users", Some(AdminRole::SystemAdmin)),
            (
                "GET",
                "/admin/users/admin%40acme.test",
                Some(AdminRole::SystemAdmin),
            ),
            (
                "POST",
                "/admin/users/admin%40acme.test",
                Some(AdminRole::SystemAdmin),
            ),
            ("GET", "/admin/profiles", Some(AdminRole::ProfileAdmin)),
            ("POST", "/admin/profiles", Some(AdminRole::ProfileAdmin)),
            ("GET", "/admin/profiles/P", Some(AdminRole::ProfileAdmin)),
            ("POST", "/admin/profiles/P", Some(AdminRole::ProfileAdmin)),
            ("GET", "/admin/groups", Some(AdminRole::UserGroupAdmin)),
            ("POST", "/admin/groups", Some(AdminRole::SystemAdmin)),
            ("GET", "/admin/groups/G", Some(AdminRole::UserGroupAdmin)),
            ("POST", "/admin/groups/G", Some(AdminRole::UserGroupAdmin)),
            ("GET", "/admin/roles", Some(AdminRole::SystemAdmin)),
            ("POST", "/admin/roles", Some(AdminRole::SystemAdmin)),
            ("GET", "/admin/import", Some(AdminRole::SystemAdmin)),
            ("POST", "/admin/import", Some(AdminRole::SystemAdmin)),
            ("GET", "/admin/audit", Some(AdminRole::SystemAdmin)),
            ("POST", "/admin/logout", None),
        ]
    }

    pub(super) async fn page_as(
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

    /// The attack: signing out of the Admin Console only cleared the cookie; the old cookie
    /// still opened the pages and the User Management API. Sign-out now revokes the token.
    #[tokio::test]
    async fn admin_console_sign_out_ends_the_token_server_side() {
        let h = harness().await;
        let admin = console_token(&h, "admin@acme.test", ADMIN_PASSWORD).await;
        let (status, _, html) = page_as(&h, "GET", "/admin/", Some(&admin), "").await;
        assert_eq!(status, StatusCode::OK, "{html}");
        let csrf = csrf_in(&html);
        let (status, headers, _) =
            page_as(&h, "POST", "/admin/logout", Some(&admin), &format!("csrf={csrf}")).await;
        assert_eq!(status, StatusCode::OK);
        assert!(format!("{headers:?}").contains("ims_admin=;"), "{headers:?}");
        // The old cookie, replayed.
        let (status, headers, _) = page_as(&h, "GET", "/admin/", Some(&admin), "").await;
        assert_eq!(
            (status, location(&headers).as_str()),
            (StatusCode::SEE_OTHER, "/admin/login")
        );
        let (status, _, _) = page_as(&h, "GET", "/admin/users", Some(&admin), "").await;
        assert_eq!(status, StatusCode::SEE_OTHER);
        let (status, _, _) = h
            .call(get_bearer("/ims/userinfo/v2", &format!("Bearer {admin}")))
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "the token itself is dead");
        let audit = h.audit("token.revoke").await;
        assert!(!audit.is_empty());
    }

    /// A system administrator's token held by a first-party application that signs people in
    /// for something else (an instance's own client asks `openid`, `AdobeID`, the profile
    /// scope...) reaches neither administration API: each needs its own scope.
    #[tokio::test]
    async fn a_first_party_token_without_the_api_scope_administers_nothing() {
        let h = harness().await;
        let (client, _) = h
            .creds
            .create_people_client(
                &h.org_id,
                "Campaign instance",
                ims_identity::model::ClientType::Public,
                vec![REDIRECT.into()],
                [
                    "openid",
                    "AdobeID",
                    "email",
                    "profile",
                    "additional_info.projectedProductContext",
                ]
                .map(String::from)
                .to_vec(),
                true,
                &Context::new(Now::system(), "test"),
            )
            .await
            .unwrap();
        let mut b = Browser::default();
        let path = authorize_path(
            &client.client_id,
            &[("scope", "openid AdobeID additional_info.projectedProductContext")],
        );
        let (status, to) = sign_in_at(&h, &mut b, &path, "admin@acme.test", ADMIN_PASSWORD).await;
        assert_eq!(status, StatusCode::SEE_OTHER, "{to}");
        let (status, body) = redeem(&h, &client.client_id, &query_of(&to)["code"]).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let token = body["access_token"].as_str().unwrap();
        for path in [
            format!("/v2/usermanagement/users/{}/0", h.org_id),
            "/console/organizations".to_owned(),
        ] {
            let (status, headers, out) = h
                .call(req("GET", &path, Some(token), Some(&client.client_id), None))
                .await;
            assert_eq!(status, StatusCode::FORBIDDEN, "{path}: {out}");
            assert!(
                format!("{headers:?}{out}").contains("insufficient_scope")
                    || out.to_string().contains("scope"),
                "{path}: {out}"
            );
        }
    }

    /// Every shape a User Management API request can make the server walk, at ten times its
    /// limit (entries, steps, names, JSON nesting): refused whole in the API's convention, and
    /// the API answers the next request.
    #[tokio::test]
    async fn action_requests_at_ten_times_their_limits_are_refused_cleanly() {
        use ims_identity::umapi::{MAX_ENTRIES, MAX_NAMES_PER_STEP, MAX_STEPS};
        let h = harness().await;
        h.person("jane@acme.test").await;
        let um = h.credential(&["openid", UMAPI_SCOPE]).await;
        let token = h.token(&um, UMAPI_SCOPE).await;
        let action = format!("/v2/usermanagement/action/{}", h.org_id);
        let post = |body: String| {
            let (h, token, key, action) = (&h, token.clone(), um.client.client_id.clone(), action.clone());
            async move {
                h.call(req("POST", &action, Some(&token), Some(&key), Some(&body)))
                    .await
            }
        };
        let entry = r#"{"user":"jane@acme.test","do":[{"update":{"firstname":"Jane"}}]}"#;
        let entries = format!("[{}]", vec![entry; 10 * MAX_ENTRIES].join(","));
        let step = r#"{"update":{"firstname":"Jane"}}"#;
        let steps = format!(
            r#"[{{"user":"jane@acme.test","do":[{}]}}]"#,
            vec![step; 10 * MAX_STEPS].join(",")
        );
        let names: Vec<String> = (0..10 * MAX_NAMES_PER_STEP)
            .map(|i| format!("\"g{i}\""))
            .collect();
        let many_names = format!(
            r#"[{{"user":"jane@acme.test","do":[{{"add":{{"group":[{}]}}}}]}}]"#,
            names.join(",")
        );
        let deep = format!("{}{}", "[".repeat(1280), "]".repeat(1280));
        for (what, body) in [
            ("entries", entries),
            ("steps", steps),
            ("names", many_names),
            ("nesting", deep),
        ] {
            // Refused whole (a client error), or the entry failed at its step (the API's
            // per-entry error), never a server error and never applied.
            let (status, _, out) = post(body).await;
            let refused = status.is_client_error()
                || (status == StatusCode::OK
                    && out["result"] != "success"
                    && out["errors"].as_array().is_some_and(|e| !e.is_empty()));
            assert!(refused, "{what}: {status} {out}");
            let (status, _, out) = post(format!("[{entry}]")).await;
            assert_eq!(
                (status, out["result"].as_str()),
                (StatusCode::OK, Some("success")),
                "{what}: then {out}"
            );
        }
    }

    #[tokio::test]
    async fn a_token_shows_the_profiles_held_for_a_product_context() {
        let h = harness().await;
        let ctx = Context::new(Now::system(), "test");
        marketing(
            &h,
            Some(("campaign - marketing - admin", vec!["admin".into()], None)),
        )
        .await;
        h.person("jane@acme.test").await;
        let um = h.credential(&["openid", UMAPI_SCOPE]).await;
        let token = h.token(&um, UMAPI_SCOPE).await;
        let body = r#"[{"usergroup":"Marketers","do":[{"createUserGroup":{}},{"add":{"user":["jane@acme.test"]}},{"add":{"productConfiguration":["campaign - marketing - admin"]}}]}]"#;
        let (status, _, out) = h
            .call(req(
                "POST",
                &format!("/v2/usermanagement/action/{}", h.org_id),
                Some(&token),
                Some(&um.client.client_id),
                Some(body),
            ))
            .await;
        assert_eq!(
            (status, out["result"].as_str()),
            (StatusCode::OK, Some("success")),
            "{out}"
        );
        let (jane, _) = person_token(&h, "jane@acme.test", PASSWORD).await;
        let get = |q: &'static str, t: String| {
            let h = &h;
            async move {
                h.call(
                    Request::get(format!("/ims/profile/v1{q}"))
                        .header("authorization", format!("Bearer {t}"))
                        .body(Body::empty())
                        .unwrap(),
                )
                .await
            }
        };
        let (status, _, out) = get("?product_context=dma_campaign_classic", jane.clone()).await;
        assert_eq!(status, StatusCode::OK, "{out}");
        assert_eq!(out["email"], "jane@acme.test");
        let ctx0 = &out["projectedProductContext"][0]["prodCtx"];
        assert_eq!(
            (
                ctx0["serviceCode"].as_str(),
                ctx0["label"].as_str(),
                ctx0["instance"].as_str()
            ),
            (
                Some("dma_campaign_classic"),
                Some("campaign - marketing - admin"),
                Some("marketing")
            )
        );
        assert_eq!(ctx0["permissions"], json!(["admin"]));
        assert_eq!(ctx0["through"], json!(["Marketers"]));
        let (_, _, out) = get("?product_context=another_product", jane).await;
        assert_eq!(out["projectedProductContext"], json!([]));
        // An application that asked only `openid` learns nothing of the person's access.
        let third = h.people_client(true).await;
        let mut b = Browser::default();
        let (status, to) = sign_in_at(
            &h,
            &mut b,
            &authorize_path(&third, &[("scope", "openid")]),
            "jane@acme.test",
            PASSWORD,
        )
        .await;
        assert_eq!(status, StatusCode::SEE_OTHER, "{to}");
        let (status, body) = redeem(&h, &third, &query_of(&to)["code"]).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let (status, headers, out) = get("", body["access_token"].as_str().unwrap().to_owned()).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{out}");
        assert!(
            format!("{headers:?}").contains("insufficient_scope"),
            "{headers:?}"
        );
        // A technical account holds profiles through its credential.
        let profile = ims_identity::store::DirectoryStore::groups(h.store.as_ref(), &h.org_id)
            .await
            .unwrap()
            .into_iter()
            .map(|(g, _)| g)
            .find(|g| g.name == "campaign - marketing - admin")
            .unwrap();
        // ... once its credential is subscribed to the Campaign API or holds one: the scope
        // alone (the I/O Management API brings it too) reads nothing.
        let machine = h
            .credential(&["openid", "additional_info.projectedProductContext"])
            .await;
        let machine_token = h
            .token(&machine, "openid,additional_info.projectedProductContext")
            .await;
        let (status, _, out) = get("?product_context=dma_campaign_classic", machine_token.clone()).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{out}");
        let subscribed = h.campaign_credential().await;
        let (status, _, out) = get(
            "?product_context=dma_campaign_classic",
            h.token(&subscribed, CAMPAIGN_SCOPES).await,
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{out}");
        assert_eq!(out["projectedProductContext"], json!([]), "{out}");
        h.state
            .ims
            .set_profile_credential(&h.org_id, &profile, &machine.client.client_id, true, &ctx)
            .await
            .unwrap();
        let (_, _, out) = get("?product_context=dma_campaign_classic", machine_token).await;
        assert_eq!(
            out["projectedProductContext"][0]["prodCtx"]["label"], "campaign - marketing - admin",
            "{out}"
        );
        assert!(h
            .state
            .ims
            .set_profile_credential(&h.org_id, &profile, "no-such-client", true, &ctx)
            .await
            .is_err());
        let (status, _, _) = get("", "garbage".into()).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }

    #[tokio::test]
    async fn every_console_page_needs_its_role() {
        use ims_identity::directory::RoleGrant;
        use ims_identity::store::DirectoryStore as _;
        let h = harness().await;
        let ctx = Context::new(Now::system(), "test");
        let profile = marketing(&h, Some(("P", vec![], None))).await.1.unwrap();
        h.store
            .apply_changes(
                &h.org_id,
                &[ims_identity::umapi::Change::CreateGroup(
                    ims_identity::directory::Group::user_group(&h.org_id, "G", "", Now::system()),
                )],
                &[],
            )
            .await
            .unwrap();
        let group_id = h
            .store
            .groups(&h.org_id)
            .await
            .unwrap()
            .into_iter()
            .find(|(g, _)| g.name == "G")
            .unwrap()
            .0
            .id;
        let mut tokens = Vec::new();
        for (email, role, target) in [
            ("nobody@acme.test", None, String::new()),
            (
                "groups@acme.test",
                Some(AdminRole::UserGroupAdmin),
                group_id.to_string(),
            ),
            (
                "profiles@acme.test",
                Some(AdminRole::ProfileAdmin),
                profile.id.to_string(),
            ),
        ] {
            let u = h.person(email).await;
            if let Some(role) = role {
                let grant = RoleGrant {
                    user_id: u.user_id.clone(),
                    role,
                    target,
                };
                h.store
                    .set_role(
                        &grant,
                        true,
                        Now::system(),
                        &ctx.event("role.grant", email, "success", json!({})),
                    )
                    .await
                    .unwrap();
            }
            tokens.push((role, console_token(&h, email, PASSWORD).await));
        }
        let admin = console_token(&h, "admin@acme.test", ADMIN_PASSWORD).await;
        // Another application's token for the same administrator does not open the console.
        let (elsewhere, _) = person_token(&h, "admin@acme.test", ADMIN_PASSWORD).await;
        let (status, headers, _) = page_as(&h, "GET", "/admin/", Some(&elsewhere), "").await;
        assert_eq!(
            (status, location(&headers).as_str()),
            (StatusCode::SEE_OTHER, "/admin/login")
        );
        let credential = h.credential(&["openid", UMAPI_SCOPE]).await;
        let machine = h.token(&credential, "openid").await;
        for m in ["POST", "PUT", "DELETE"] {
            let (status, _, _) = page_as(&h, m, "/admin/audit", Some(&admin), "").await;
            assert_eq!(
                status,
                StatusCode::METHOD_NOT_ALLOWED,
                "{m} /admin/audit: the log only reads"
            );
        }
        for (method, path, needs) in console_routes() {
            // Nobody signed in: sent to sign in, never served.
            let (status, headers, _) = page_as(&h, method, path, None, "").await;
            assert_eq!(
                (status, headers.get("location").and_then(|v| v.to_str().ok())),
                (StatusCode::SEE_OTHER, Some("/admin/login")),
                "{method} {path}"
            );
            // A technical account's token is no person's session.
            let (status, _, _) = page_as(&h, method, path, Some(&machine), "").await;
            assert_eq!(
                status,
                StatusCode::SEE_OTHER,
                "{method} {path} with a machine token"
            );
            for (role, token) in &tokens {
                let allowed = match (needs, role) {
                    (_, None) => false,
                    (None, Some(_)) => true,
                    (Some(n), Some(r)) => n == *r,
                };
                let (status, _, body) = page_as(&h, method, path, Some(token), "").await;
                if allowed {
                    assert_ne!(status, StatusCode::SEE_OTHER, "{method} {path} as {role:?}");
                    if method == "POST" {
                        assert_eq!(
                            status,
                            StatusCode::FORBIDDEN,
                            "{method} {path} as {role:?} without the form token: {body}"
                        );
                    } else {
                        assert_eq!(status, StatusCode::OK, "{method} {path} as {role:?}: {body}");
                    }
                } else {
                    assert_eq!(
                        status,
                        StatusCode::FORBIDDEN,
                        "{method} {path} as {role:?}: {body}"
                    );
                }
            }
            // The system administrator gets every page (posts still need the form token).
            let (status, _, body) = page_as(&h, method, path, Some(&admin), "").await;
            let expected = if method == "POST" {
                StatusCode::FORBIDDEN
            } else {
                StatusCode::OK
            };
            assert_eq!(
                status, expected,
                "{method} {path} as system administrator: {body}"
            );
        }
    }

    #[tokio::test]
    async fn console_changes_land_in_the_directory_and_the_audit_log() {
        let h = harness().await;
        let ctx = Context::new(Now::system(), "test");
        let (marketing, _) = marketing(&h, None).await;
        let admin = console_token(&h, "admin@acme.test", ADMIN_PASSWORD).await;
        let (_, _, html) = page_as(&h, "GET", "/admin/profiles", Some(&admin), "").await;
        let csrf = csrf_in(&html);
        let post = |path: &'static str, pairs: Vec<(&'static str, String)>| {
            let h = &h;
            let admin = admin.clone();
            let csrf = csrf.clone();
            async move {
                let mut all = vec![("csrf", csrf)];
                all.extend(pairs);
                let body = url::form_urlencoded::Serializer::new(String::new())
                    .extend_pairs(all)
                    .finish();
                page_as(h, "POST", path, Some(&admin), &body).await
            }
        };
        let (status, headers, body) = post(
            "/admin/profiles",
            vec![
                ("instance", marketing.id.to_string()),
                ("name", "campaign - marketing - ops".into()),
                ("permissions", "export admin".into()),
                ("quota", "3".into()),
            ],
        )
        .await;
        assert_eq!(status, StatusCode::SEE_OTHER, "{body}");
        let location = headers["location"].to_str().unwrap().to_owned();
        assert!(location.starts_with("/admin/profiles/campaign%20"), "{location}");
        let (status, _, html) = page_as(&h, "GET", &location, Some(&admin), "").await;
        assert_eq!(status, StatusCode::OK, "the page the console sends to exists");
        assert!(
            html.contains("<h1>campaign - marketing - ops</h1>") && html.contains("Product profile created."),
            "{html}"
        );
        let (status, _, _) = post(
            "/admin/users",
            vec![
                ("email", "ops@acme.test".into()),
                ("firstname", "O".into()),
                ("type", "enterpriseID".into()),
            ],
        )
        .await;
        assert_eq!(status, StatusCode::SEE_OTHER);
        let (status, _, _) = post(
            "/admin/profiles/campaign%20-%20marketing%20-%20ops",
            vec![("action", "add_member".into()), ("email", "ops@acme.test".into())],
        )
        .await;
        assert_eq!(status, StatusCode::SEE_OTHER);
        let ops = h
            .store
            .user_by_email(&h.org_id, "ops@acme.test")
            .await
            .unwrap()
            .unwrap();
        let held = ims_identity::store::DirectoryStore::held_profiles(
            h.store.as_ref(),
            &ops.user_id,
            Some("dma_campaign_classic"),
        )
        .await
        .unwrap();
        assert_eq!(held.len(), 1);
        assert_eq!(held[0].permissions, vec!["admin".to_owned(), "export".to_owned()]);
        // A technical account's credential holds the profile too.
        let machine = h.credential(&["openid"]).await;
        let (status, _, _) = post(
            "/admin/profiles/campaign%20-%20marketing%20-%20ops",
            vec![
                ("action", "add_credential".into()),
                ("client_id", machine.client.client_id.clone()),
            ],
        )
        .await;
        assert_eq!(status, StatusCode::SEE_OTHER);
        let (_, _, html) = page_as(
            &h,
            "GET",
            "/admin/profiles/campaign%20-%20marketing%20-%20ops",
            Some(&admin),
            "",
        )
        .await;
        assert!(
            html.contains(&format!("<code>{}</code>", machine.client.client_id)),
            "{html}"
        );
        // A refused change says why and changes nothing.
        let (status, _, body) = post(
            "/admin/profiles/campaign%20-%20marketing%20-%20ops",
            vec![
                ("action", "add_member".into()),
                ("email", "nobody@acme.test".into()),
            ],
        )
        .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(body.contains("error.user.nonexistent"), "{body}");
        // CSV import: a preview changes nothing, then the import applies.
        let csv = "email,firstname,lastname,country,type,groups\nbulk1@acme.test,B,One,FR,enterpriseID,campaign - marketing - ops\nbad-address,X,Y,,enterpriseID,\n".to_owned();
        let (status, _, body) =
            post("/admin/import", vec![("csv", csv.clone()), ("apply", "0".into())]).await;
        assert_eq!(status, StatusCode::OK);
        assert!(
            body.contains("will be imported") && body.contains("error.user.invalid_email"),
            "{body}"
        );
        assert!(
            h.store
                .user_by_email(&h.org_id, "bulk1@acme.test")
                .await
                .unwrap()
                .is_none(),
            "a preview changes nothing"
        );
        let (_, _, body) = post("/admin/import", vec![("csv", csv), ("apply", "1".into())]).await;
        assert!(body.contains("1 row(s) imported, 1 refused"), "{body}");
        assert!(h
            .store
            .user_by_email(&h.org_id, "bulk1@acme.test")
            .await
            .unwrap()
            .is_some());
        // Roles, then the audit log page and its API.
        let (status, _, body) = post(
            "/admin/roles",
            vec![
                ("action", "grant".into()),
                ("email", "ops@acme.test".into()),
                ("role", "profile_admin".into()),
                ("target", "campaign - marketing - ops".into()),
            ],
        )
        .await;
        assert_eq!(status, StatusCode::SEE_OTHER, "{body}");
        let (_, _, html) = page_as(&h, "GET", "/admin/audit", Some(&admin), "").await;
        for action in ["profile.create", "umapi.user", "role.grant"] {
            assert!(html.contains(action), "{action} is on the audit page");
        }
        assert!(html.contains("admin:admin@acme.test"));
        let um = h.credential(&["openid", UMAPI_SCOPE]).await;
        let token = h.token(&um, UMAPI_SCOPE).await;
        let (status, _, out) = h
            .call(req(
                "GET",
                &format!("/v2/usermanagement/audit/{}/0?action=role.", h.org_id),
                Some(&token),
                Some(&um.client.client_id),
                None,
            ))
            .await;
        assert_eq!(status, StatusCode::OK);
        let event = &out["events"][0];
        assert_eq!(
            (
                event["action"].as_str(),
                event["target"].as_str(),
                event["actor"].as_str()
            ),
            (
                Some("role.grant"),
                Some("ops@acme.test"),
                Some("admin:admin@acme.test")
            )
        );
        assert!(event["request_id"].as_str().is_some_and(|r| !r.is_empty()));
        let _ = ctx;
    }

    #[tokio::test]
    async fn every_route_denies_without_the_right_caller() {
        let h = harness().await;
        let org = h.org_id.clone();
        let um = h.credential(&["openid", UMAPI_SCOPE]).await;
        let um_token = h.token(&um, &format!("openid,{UMAPI_SCOPE}")).await;
        let other = h.credential(&["openid", "AdobeID"]).await;
        let other_token = h.token(&other, "openid").await;
        h.person("worker@acme.test").await;
        let (worker, worker_client) = person_token(&h, "worker@acme.test", PASSWORD).await;
        let (admin, admin_client) = person_token(&h, "admin@acme.test", ADMIN_PASSWORD).await;
        let um_id = um.client.client_id.clone();
        let other_id = other.client.client_id.clone();
        for (method, path, body) in routes(&org) {
            let cases: Vec<(&str, Option<&str>, Option<&str>, StatusCode)> = vec![
                ("no token", None, None, StatusCode::UNAUTHORIZED),
                (
                    "garbage token",
                    Some("not.a.token"),
                    Some(&um_id),
                    StatusCode::UNAUTHORIZED,
                ),
                ("no api key", Some(&um_token), None, StatusCode::FORBIDDEN),
                (
                    "another client's api key",
                    Some(&um_token),
                    Some(&other_id),
                    StatusCode::FORBIDDEN,
                ),
                (
                    "a credential without the API",
                    Some(&other_token),
                    Some(&other_id),
                    StatusCode::FORBIDDEN,
                ),
                (
                    "a person without the role",
                    Some(&worker),
                    Some(&worker_client),
                    StatusCode::FORBIDDEN,
                ),
            ];
            for (what, token, key, expected) in cases {
                let (status, headers, body_out) = h.call(req(method, &path, token, key, body)).await;
                assert_eq!(status, expected, "{method} {path}: {what}: {body_out}");
                if expected == StatusCode::UNAUTHORIZED {
                    assert!(headers["www-authenticate"]
                        .to_str()
                        .unwrap()
                        .contains("invalid_token"));
                }
            }
            for (what, token, key) in [
                ("the credential", um_token.as_str(), um_id.as_str()),
                ("a system administrator", admin.as_str(), admin_client.as_str()),
            ] {
                let (status, headers, out) = h.call(req(method, &path, Some(token), Some(key), body)).await;
                assert!(
                    status == StatusCode::OK || status == StatusCode::NOT_FOUND,
                    "{method} {path} as {what}: {status} {out}"
                );
                assert!(headers.contains_key("x-request-id"));
            }
            // Nothing rewrites the audit log: its routes only read.
            if path.contains("/audit/") {
                for m in ["POST", "PUT", "PATCH", "DELETE"] {
                    let (status, _, _) = h
                        .call(req(m, &path, Some(&um_token), Some(&um_id), Some("[]")))
                        .await;
                    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{m} {path}");
                }
            }
            // Another organisation: refused whatever the caller may do in its own.
            let foreign = path.replace(&org, "FFFFFFFFFFFFFFFFFFFFFFFF@AdobeOrg");
            let (status, _, out) = h
                .call(req(method, &foreign, Some(&um_token), Some(&um_id), body))
                .await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{out}");
            assert_eq!(out["result"], "error.organization.invalid_id");
        }
    }

    #[tokio::test]
    async fn listing_paging_not_found_and_the_request_id() {
        let mut settings = super::settings(Algorithm::ES256);
        settings.umapi_page_size = 2;
        let h = harness_with(Db::Sqlite, settings).await.unwrap();
        let org = h.org_id.clone();
        let um = h.credential(&["openid", UMAPI_SCOPE]).await;
        let token = h.token(&um, UMAPI_SCOPE).await;
        let id = um.client.client_id.clone();
        let call = |method: &'static str, path: String, body: Option<&'static str>| {
            let h = &h;
            let token = token.clone();
            let id = id.clone();
            async move { h.call(req(method, &path, Some(&token), Some(&id), body)).await }
        };
        let (status, _, out) = call(
            "POST",
            format!("/v2/usermanagement/action/{org}"),
            Some(r#"[{"user":"b@acme.test","do":[{"createEnterpriseID":{"email":"b@acme.test","firstname":"B","country":"de"}}]},
                    {"user":"c@acme.test","do":[{"createFederatedID":{"email":"c@acme.test","country":"FR"}}]},
                    {"user":"d@acme.test","do":[{"addAdobeID":{"email":"d@acme.test"}}]},
                    {"usergroup":"Team","do":[{"createUserGroup":{"description":"t"}},{"add":{"user":["b@acme.test","c@acme.test"]}}]}]"#),
        )
        .await;
        assert_eq!(
            (status, out["result"].as_str(), out["completed"].as_i64()),
            (StatusCode::OK, Some("success"), Some(4)),
            "{out}"
        );
        let mut seen = Vec::new();
        for page in 0.. {
            let (status, _, out) = call("GET", format!("/v2/usermanagement/users/{org}/{page}"), None).await;
            assert_eq!(status, StatusCode::OK);
            let users = out["users"].as_array().unwrap();
            assert!(users.len() <= 2);
            seen.extend(users.iter().map(|u| u["email"].as_str().unwrap().to_owned()));
            if out["lastPage"] == true {
                break;
            }
        }
        assert_eq!(
            seen,
            ["admin@acme.test", "b@acme.test", "c@acme.test", "d@acme.test"]
        );
        let (_, _, out) = call("GET", format!("/v2/usermanagement/users/{org}/9"), None).await;
        assert_eq!(
            (out["lastPage"].as_bool(), out["users"].as_array().map(Vec::len)),
            (Some(true), Some(0)),
            "past the end: an empty last page"
        );
        let (status, _, out) = call(
            "GET",
            format!("/v2/usermanagement/organizations/{org}/users/B@ACME.test"),
            None,
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(out["user"]["type"], "enterpriseID");
        assert_eq!(out["user"]["country"], "DE");
        assert_eq!(out["user"]["groups"], json!(["Team"]));
        let (status, _, _) = call(
            "GET",
            format!("/v2/usermanagement/organizations/{org}/users/zz@acme.test"),
            None,
        )
        .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let (status, _, _) = call(
            "GET",
            format!("/v2/usermanagement/users/{org}/0/NoSuchGroup"),
            None,
        )
        .await;
        assert_eq!(
            status,
            StatusCode::NOT_FOUND,
            "an unknown group is not found, which the client reads as empty"
        );
        let (_, _, out) = call("GET", format!("/v2/usermanagement/users/{org}/0/team"), None).await;
        assert_eq!(out["users"].as_array().unwrap().len(), 2);
        let (status, _, out) = call("GET", format!("/v2/usermanagement/users/{org}/x"), None).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{out}");

        // Whole-request refusals, in the API's convention.
        for (body, code) in [
            ("{", "error.request.malformed"),
            ("{}", "error.request.malformed"),
            ("[]", "error.request.malformed"),
            (r#"[{"do":[]}]"#, "error.request.malformed"),
        ] {
            let (status, _, out) = h
                .call(req(
                    "POST",
                    &format!("/v2/usermanagement/action/{org}"),
                    Some(&token),
                    Some(&id),
                    Some(body),
                ))
                .await;
            assert_eq!(
                (status, out["result"].as_str()),
                (StatusCode::BAD_REQUEST, Some(code)),
                "{body}"
            );
        }
        let eleven = format!("[{}]", [r#"{"user":"x@acme.test","do":[]}"#; 11].join(","));
        let (status, _, out) = h
            .call(req(
                "POST",
                &format!("/v2/usermanagement/action/{org}"),
                Some(&token),
                Some(&id),
                Some(&eleven),
            ))
            .await;
        assert_eq!(
            (status, out["result"].as_str()),
            (StatusCode::BAD_REQUEST, Some("error.request.too_many_entries"))
        );

        // The request id is echoed and lands in the audit log with the change.
        let resp = h
            .app
            .clone()
            .oneshot({
                let mut r = req(
                    "POST",
                    &format!("/v2/usermanagement/action/{org}"),
                    Some(&token),
                    Some(&id),
                    Some(
                        r#"[{"user":"d@acme.test","requestID":"r-1","do":[{"update":{"firstname":"Dee"}}]}]"#,
                    ),
                );
                r.headers_mut()
                    .insert("x-request-id", "f00d-1234_1".parse().unwrap());
                r
            })
            .await
            .unwrap();
        assert_eq!(resp.headers()["x-request-id"], "f00d-1234_1");
        let audit = h
            .store
            .audit(&AuditQuery {
                action_prefix: Some("umapi.".into()),
                limit: 50,
            })
            .await
            .unwrap();
        let line = audit
            .iter()
            .find(|e| e.request_id.as_deref() == Some("f00d-1234_1"))
            .expect("audited with its request id");
        assert_eq!(
            (line.action.as_str(), line.target.as_str(), line.actor.clone()),
            ("umapi.user", "d@acme.test", format!("client:{id}"))
        );
        assert_eq!(line.details["requestID"], "r-1");
    }

    #[tokio::test]
    async fn a_client_over_its_budget_gets_429_with_retry_after() {
        let mut settings = super::settings(Algorithm::ES256);
        settings.umapi_requests_per_minute = 5;
        let h = harness_with(Db::Sqlite, settings).await.unwrap();
        let a = h.credential(&["openid", UMAPI_SCOPE]).await;
        let b = h.credential(&["openid", UMAPI_SCOPE]).await;
        let path = format!("/v2/usermanagement/groups/{}/0", h.org_id);
        let ta = h.token(&a, UMAPI_SCOPE).await;
        let tb = h.token(&b, UMAPI_SCOPE).await;
        for _ in 0..5 {
            let (status, _, _) = h
                .call(req("GET", &path, Some(&ta), Some(&a.client.client_id), None))
                .await;
            assert_eq!(status, StatusCode::OK);
        }
        let (status, headers, out) = h
            .call(req("GET", &path, Some(&ta), Some(&a.client.client_id), None))
            .await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
        let wait: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
        assert!((1..=12).contains(&wait), "{wait}");
        assert_eq!(out["error_code"], "429050");
        let (status, _, _) = h
            .call(req("GET", &path, Some(&tb), Some(&b.client.client_id), None))
            .await;
        assert_eq!(status, StatusCode::OK, "budgets are per client");
    }

    // ----- action requests against a reference model ------------------------------------------

    const EMAILS: [&str; 3] = ["u0@acme.test", "u1@acme.test", "u2@acme.test"];
    const GROUPS: [&str; 2] = ["G0", "G1"];
    /// A product profile with room for two members.
    const PROFILE: &str = "P0";

    #[derive(Clone, Debug)]
    enum Op {
        Create(u8),
        AddGroup(usize),
        RemoveGroup(usize),
        RemoveAll,
        RemoveFromOrg,
        CreateGroup(u8),
        DeleteGroup,
        AddUser(usize),
        RemoveUser(usize),
        LinkProfile,
        Unknown,
    }

    #[derive(Clone, Debug)]
    struct GenEntry {
        user: bool,
        target: usize,
        ops: Vec<Op>,
    }

    fn entry_strategy() -> impl Strategy<Value = GenEntry> {
        let user_op = prop_oneof![
            (0u8..3).prop_map(Op::Create),
            (0usize..3).prop_map(Op::AddGroup),
            (0usize..3).prop_map(Op::RemoveGroup),
            Just(Op::RemoveAll),
            Just(Op::RemoveFromOrg),
            Just(Op::Unknown),
        ];
        let group_op = prop_oneof![
            (0u8..3).prop_map(Op::CreateGroup),
            Just(Op::DeleteGroup),
            (0usize..3).prop_map(Op::AddUser),
            (0usize..3).prop_map(Op::RemoveUser),
            Just(Op::LinkProfile),
            Just(Op::Unknown),
        ];
        prop_oneof![
            (0usize..3, prop::collection::vec(user_op, 1..4)).prop_map(|(target, ops)| GenEntry {
                user: true,
                target,
                ops
            }),
            (0usize..2, prop::collection::vec(group_op, 1..4)).prop_map(|(target, ops)| GenEntry {
                user: false,
                target,
                ops
            }),
        ]
    }

    /// Groups a user op names: the two user groups and the profile.
    fn group_name(i: usize) -> &'static str {
        [GROUPS[0], GROUPS[1], PROFILE][i]
    }

    fn option(o: u8) -> Value {
        match o {
            0 => json!({}),
            1 => json!({"option": "ignoreIfAlreadyExists"}),
            _ => json!({"option": "updateIfAlreadyExists"}),
        }
    }

    fn wire(e: &GenEntry) -> Value {
        let steps: Vec<Value> = e
            .ops
            .iter()
            .map(|op| match op {
                Op::Create(o) => {
                    let mut args = option(*o);
                    args["email"] = json!(EMAILS[e.target]);
                    json!({ "createEnterpriseID": args })
                }
                Op::AddGroup(g) => json!({"add": {"group": [group_name(*g)]}}),
                Op::RemoveGroup(g) => json!({"remove": {"group": [group_name(*g)]}}),
                Op::RemoveAll => json!({"remove": "all"}),
                Op::RemoveFromOrg => json!({"removeFromOrg": {"deleteAccount": false}}),
                Op::CreateGroup(o) => json!({ "createUserGroup": option(*o) }),
                Op::DeleteGroup => json!({"deleteUserGroup": {}}),
                Op::AddUser(u) => json!({"add": {"user": [EMAILS[*u]]}}),
                Op::RemoveUser(u) => json!({"remove": {"user": [EMAILS[*u]]}}),
                Op::LinkProfile => json!({"add": {"productConfiguration": [PROFILE]}}),
                Op::Unknown => json!({"teleport": {}}),
            })
            .collect();
        if e.user {
            json!({"user": EMAILS[e.target], "do": steps})
        } else {
            json!({"usergroup": GROUPS[e.target], "do": steps})
        }
    }

    /// The reference: what the API's documentation says each step does, written plainly.
    #[derive(Clone, Debug, PartialEq, Eq, Default)]
    struct Model {
        active: std::collections::BTreeSet<usize>,
        /// Group name -> members (email indexes); user groups present only while they exist.
        groups: std::collections::BTreeMap<&'static str, std::collections::BTreeSet<usize>>,
    }

    impl Model {
        fn new() -> Self {
            let mut m = Model::default();
            m.groups.insert(PROFILE, Default::default());
            m
        }

        /// Runs one entry: `Err(step)` at the first step that fails, nothing kept.
        fn run(&mut self, e: &GenEntry) -> Result<(), usize> {
            let mut next = self.clone();
            for (i, op) in e.ops.iter().enumerate() {
                let u = e.target;
                let ok = match op {
                    Op::Create(o) => {
                        if next.active.contains(&u) {
                            *o != 0
                        } else {
                            next.active.insert(u);
                            true
                        }
                    }
                    Op::AddGroup(g) => {
                        let name = group_name(*g);
                        let full = name == PROFILE
                            && next
                                .groups
                                .get(name)
                                .is_some_and(|m| m.len() >= 2 && !m.contains(&u));
                        if !next.active.contains(&u) || !next.groups.contains_key(name) || full {
                            false
                        } else {
                            next.groups.get_mut(name).unwrap().insert(u);
                            true
                        }
                    }
                    Op::RemoveGroup(g) => {
                        let name = group_name(*g);
                        if !next.active.contains(&u) || !next.groups.contains_key(name) {
                            false
                        } else {
                            next.groups.get_mut(name).unwrap().remove(&u);
                            true
                        }
                    }
                    Op::RemoveAll | Op::RemoveFromOrg => {
                        if !next.active.contains(&u) {
                            false
                        } else {
                            next.groups.values_mut().for_each(|m| {
                                m.remove(&u);
                            });
                            if matches!(op, Op::RemoveFromOrg) {
                                next.active.remove(&u);
                            }
                            true
                        }
                    }
                    Op::CreateGroup(o) => {
                        let name = GROUPS[e.target];
                        if next.groups.contains_key(name) {
                            *o != 0
                        } else {
                            next.groups.insert(name, Default::default());
                            true
                        }
                    }
                    Op::DeleteGroup => next.groups.remove(GROUPS[e.target]).is_some(),
                    Op::AddUser(x) | Op::RemoveUser(x) => {
                        let name = GROUPS[e.target];
                        if !next.groups.contains_key(name) || !next.active.contains(x) {
                            false
                        } else {
                            let members = next.groups.get_mut(name).unwrap();
                            if matches!(op, Op::AddUser(_)) {
                                members.insert(*x);
                            } else {
                                members.remove(x);
                            }
                            true
                        }
                    }
                    Op::LinkProfile => next.groups.contains_key(GROUPS[e.target]),
                    Op::Unknown => false,
                };
                if !ok {
                    return Err(i);
                }
            }
            *self = next;
            Ok(())
        }
    }

    /// Who is in which group, as the API lists it.
    async fn observed(h: &Harness, token: &str, id: &str) -> Model {
        let mut m = Model::default();
        let (_, _, out) = h
            .call(req(
                "GET",
                &format!("/v2/usermanagement/groups/{}/0", h.org_id),
                Some(token),
                Some(id),
                None,
            ))
            .await;
        for g in out["groups"].as_array().unwrap() {
            let name = [GROUPS[0], GROUPS[1], PROFILE]
                .into_iter()
                .find(|n| *n == g["groupName"])
                .unwrap();
            m.groups.insert(name, Default::default());
        }
        let (_, _, out) = h
            .call(req(
                "GET",
                &format!("/v2/usermanagement/users/{}/0", h.org_id),
                Some(token),
                Some(id),
                None,
            ))
            .await;
        for u in out["users"].as_array().unwrap() {
            let Some(i) = EMAILS.iter().position(|e| *e == u["email"]) else {
                continue;
            };
            m.active.insert(i);
            for g in u["groups"].as_array().unwrap() {
                if let Some(members) = m.groups.iter_mut().find(|(n, _)| **n == g).map(|(_, v)| v) {
                    members.insert(i);
                }
            }
        }
        m
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 16, ..ProptestConfig::default() })]
        /// Batches of valid and invalid entries: `testOnly` changes nothing and reports what the
        /// real run then does; results and the resulting directory match the reference model.
        #[test]
        fn action_batches_match_the_reference_model(batches in prop::collection::vec(prop::collection::vec(entry_strategy(), 1..6), 1..4)) {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async {
                let h = harness().await;
                let um = h.credential(&["openid", UMAPI_SCOPE]).await;
                let token = h.token(&um, UMAPI_SCOPE).await;
                let id = um.client.client_id.clone();
                marketing(&h, Some((PROFILE, vec!["admin".into()], Some(2)))).await;
                let mut model = Model::new();
                for batch in &batches {
                    let body = Value::Array(batch.iter().map(wire).collect()).to_string();
                    let path = format!("/v2/usermanagement/action/{}", h.org_id);
                    let before = observed(&h, &token, &id).await;
                    let (status, _, dry) = h.call(req("POST", &format!("{path}?testOnly=true"), Some(&token), Some(&id), Some(&body))).await;
                    assert_eq!(status, StatusCode::OK, "{dry}");
                    assert_eq!(observed(&h, &token, &id).await, before, "testOnly changed something");
                    let (status, _, real) = h.call(req("POST", &path, Some(&token), Some(&id), Some(&body))).await;
                    assert_eq!(status, StatusCode::OK, "{real}");
                    let expected: Vec<Result<(), usize>> = batch.iter().map(|e| model.run(e)).collect();
                    let failures = |out: &Value| -> Vec<(u64, u64)> {
                        out["errors"].as_array().map(|a| a.iter().map(|e| (e["index"].as_u64().unwrap(), e["step"].as_u64().unwrap())).collect()).unwrap_or_default()
                    };
                    let want: Vec<(u64, u64)> = expected.iter().enumerate().filter_map(|(i, r)| r.err().map(|s| (i as u64, s as u64))).collect();
                    assert_eq!(failures(&real), want, "{body}\n{real}");
                    assert_eq!(failures(&dry), want, "testOnly reports what the run does: {dry}");
                    let ok = expected.iter().filter(|r| r.is_ok()).count() as u64;
                    assert_eq!((real["completed"].as_u64(), dry["completedInTestMode"].as_u64(), dry["completed"].as_u64()), (Some(ok), Some(ok), Some(0)));
                    assert_eq!(observed(&h, &token, &id).await, model, "{body}");
                }
            });
        }
    }
}

mod developer {
    use super::people::*;
    use super::umapi::{console_token, marketing, page_as, person_token, req};
    use super::*;
    use ims_identity::developer::Service;
    use ims_identity::directory::{AdminRole, RoleGrant};
    use ims_identity::store::{ClientStore as _, DirectoryStore as _};

    async fn developer(h: &Harness, email: &str) -> (String, String) {
        let u = h.person(email).await;
        let ctx = Context::new(Now::system(), "test");
        h.store
            .set_role(
                &RoleGrant {
                    user_id: u.user_id.clone(),
                    role: AdminRole::Developer,
                    target: String::new(),
                },
                true,
                Now::system(),
                &ctx.event("role.grant", email, "success", json!({})),
            )
            .await
            .unwrap();
        person_token(h, email, PASSWORD).await
    }

    struct Api<'a> {
        h: &'a Harness,
        token: String,
        key: String,
        org: String,
    }

    impl Api<'_> {
        async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (StatusCode, Value) {
            let path = path.replace("{org}", &self.org);
            let body = body.map(|b| b.to_string());
            let (status, _, v) = self
                .h
                .call(req(
                    method,
                    &path,
                    Some(&self.token),
                    Some(&self.key),
                    body.as_deref(),
                ))
                .await;
            (status, v)
        }

        async fn ok(&self, method: &str, path: &str, body: Option<Value>) -> Value {
            let (status, v) = self.call(method, path, body).await;
            assert!(status.is_success(), "{method} {path}: {status} {v}");
            v
        }
    }

    async fn numeric_org(h: &Harness) -> String {
        h.state
            .ims
            .organization(&h.org_id)
            .await
            .unwrap()
            .numeric_id
            .to_string()
    }

    /// The attack: a person holding only the developer role gave a credential the instance's
    /// administrators' profile, and its token wrote operators. A developer now gives ordinary
    /// profiles only; one that can carry ADMINISTRATION (an `admin` permission item, or "admin"
    /// in its name) takes a system administrator, on creation and on a later subscription.
    #[tokio::test]
    async fn a_developer_cannot_give_a_credential_administration() {
        let h = harness().await;
        let (instance, ordinary) = marketing(
            &h,
            Some(("campaign - marketing - delivery", vec!["export".into()], None)),
        )
        .await;
        let ordinary = ordinary.unwrap();
        let ctx = Context::new(Now::system(), "test");
        let mut privileged = Vec::new();
        for (name, items) in [
            ("campaign - marketing - Admin", vec![]),
            ("campaign - marketing - ops", vec!["ADMIN".to_owned()]),
        ] {
            ims_identity::service::directory::create_product_profile(
                h.store.as_ref(),
                &instance,
                name,
                items,
                None,
                &ctx,
            )
            .await
            .unwrap();
            let id = ims_identity::store::DirectoryStore::groups(h.store.as_ref(), &h.org_id)
                .await
                .unwrap()
                .into_iter()
                .map(|(g, _)| g)
                .find(|g| g.name == name)
                .unwrap()
                .id;
            privileged.push(id);
        }
        let (token, key) = developer(&h, "dev@acme.test").await;
        let org = numeric_org(&h).await;
        let dev = Api {
            h: &h,
            token,
            key,
            org: org.clone(),
        };
        let with = |id: i64| json!([{"sdkCode": "CampaignSDK", "licenseConfigs": [{"id": id.to_string(), "op": "add"}]}]);
        let create = |services: Value| json!({"name": "Sync", "services": services});
        for id in &privileged {
            let (status, body) = dev
                .call(
                    "POST",
                    "/console/organizations/{org}/credentials/oauth-server-to-server",
                    Some(create(with(*id))),
                )
                .await;
            assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
            assert!(body.to_string().contains("ADMINISTRATION"), "{body}");
        }
        let made = dev
            .ok(
                "POST",
                "/console/organizations/{org}/credentials/oauth-server-to-server",
                Some(create(with(ordinary.id))),
            )
            .await;
        let id = made["id"].as_str().unwrap().to_owned();
        let services =
            format!("/console/organizations/{{org}}/credentials/oauth-server-to-server/{id}/services");
        let (status, body) = dev.call("PUT", &services, Some(with(privileged[0]))).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
        let held = h.store.credential_profiles(&id, None).await.unwrap();
        assert_eq!(
            held.iter().map(|p| p.profile.as_str()).collect::<Vec<_>>(),
            ["campaign - marketing - delivery"]
        );
        // A technical account using the console API does not either, unless a system
        // administrator opened the User Management API to it (the migration engine's).
        for (scopes, allowed) in [
            (vec!["openid", "adobeio_api"], false),
            (
                vec![
                    "openid",
                    "adobeio_api",
                    ims_identity::service::directory::UMAPI_SCOPE,
                ],
                true,
            ),
        ] {
            let machine = h.credential(&scopes).await;
            let machine = Api {
                h: &h,
                token: h.token(&machine, &scopes.join(",")).await,
                key: machine.client.client_id.clone(),
                org: org.clone(),
            };
            let (status, body) = machine.call("PUT", &services, Some(with(privileged[1]))).await;
            let expected = if allowed {
                StatusCode::OK
            } else {
                StatusCode::FORBIDDEN
            };
            assert_eq!(status, expected, "{scopes:?}: {body}");
        }
        // A system administrator gives it.
        let (admin_token, admin_key) = person_token(&h, "admin@acme.test", ADMIN_PASSWORD).await;
        let admin = Api {
            h: &h,
            token: admin_token,
            key: admin_key,
            org,
        };
        let (status, body) = admin.call("PUT", &services, Some(with(privileged[0]))).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let held = h.store.credential_profiles(&id, None).await.unwrap();
        assert!(
            held.iter().any(|p| p.profile == "campaign - marketing - Admin"),
            "{held:?}"
        );
    }

    #[tokio::test]
    async fn projects_credentials_subscriptions_secrets_and_deletion() {
        for db in [Db::Sqlite, Db::Postgres] {
            let Some(h) = harness_on(db, Algorithm::RS256).await else {
                continue;
            };
            let (_, profile) = marketing(
                &h,
                Some((
                    "campaign - marketing - messagecenter",
                    vec!["messagecenter".into()],
                    None,
                )),
            )
            .await;
            let profile = profile.unwrap();
            let (token, key) = developer(&h, "dev@acme.test").await;
            let org = numeric_org(&h).await;
            let dev = Api {
                h: &h,
                token,
                key,
                org: org.clone(),
            };

            // Who may call: no token, another key, a person without the role.
            let (status, _, _) = h
                .call(req("GET", "/console/organizations", None, None, None))
                .await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{db:?}");
            let (status, _, _) = h
                .call(req(
                    "GET",
                    "/console/organizations",
                    Some(&dev.token),
                    Some("someone-else"),
                    None,
                ))
                .await;
            assert_eq!(status, StatusCode::FORBIDDEN);
            h.person("nobody@acme.test").await;
            let (plain, plain_key) = person_token(&h, "nobody@acme.test", PASSWORD).await;
            let (status, _, body) = h
                .call(req(
                    "GET",
                    "/console/organizations",
                    Some(&plain),
                    Some(&plain_key),
                    None,
                ))
                .await;
            assert_eq!(status, StatusCode::FORBIDDEN, "{body}");

            let orgs = dev.ok("GET", "/console/organizations", None).await;
            assert_eq!(orgs[0]["id"], json!(org));
            assert_eq!(orgs[0]["code"], json!(h.org_id));
            let (status, _) = dev.call("GET", "/console/organizations/999/projects", None).await;
            assert_eq!(status, StatusCode::FORBIDDEN, "another organisation's path");

            // A project with its default workspace; names are checked and unique.
            let (status, made) = dev
                .call(
                    "POST",
                    "/console/organizations/{org}/projects",
                    Some(json!({"name": "sync-job", "title": "Sync job", "description": "nightly", "type": "default"})),
                )
                .await;
            assert_eq!(status, StatusCode::CREATED, "{made}");
            let (p, w) = (
                made["projectId"].as_str().unwrap().to_owned(),
                made["workspaceId"].as_str().unwrap().to_owned(),
            );
            let (status, _) = dev
                .call(
                    "POST",
                    "/console/organizations/{org}/projects",
                    Some(json!({"name": "sync-job", "title": "again"})),
                )
                .await;
            assert_eq!(status, StatusCode::CONFLICT);
            let (status, body) = dev
                .call(
                    "POST",
                    "/console/organizations/{org}/projects",
                    Some(json!({"name": "no spaces please"})),
                )
                .await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
            let listed = dev.ok("GET", "/console/organizations/{org}/projects", None).await;
            assert_eq!(listed.as_array().unwrap().len(), 1);
            assert_eq!(listed[0]["who_created"], json!("admin:dev@acme.test"));
            let spaces = dev
                .ok(
                    "GET",
                    &format!("/console/organizations/{{org}}/projects/{p}/workspaces"),
                    None,
                )
                .await;
            assert_eq!(spaces[0]["id"], json!(w));
            assert_eq!(spaces[0]["name"], json!("Production"));

            // The services offer the Campaign profiles as license configs.
            let services = dev.ok("GET", "/console/organizations/{org}/services", None).await;
            let campaign = services
                .as_array()
                .unwrap()
                .iter()
                .find(|s| s["code"] == "CampaignSDK")
                .unwrap();
            let config = &campaign["properties"]["licenseConfigs"][0];
            assert_eq!(config["name"], json!("campaign - marketing - messagecenter"));
            assert_eq!(config["id"], json!(profile.id.to_string()));

            // A credential in the workspace, then subscribed with the profile.
            let base = format!("/console/organizations/{{org}}/projects/{p}/workspaces/{w}");
            let cred = dev
                .ok(
                    "POST",
                    &format!("{base}/credentials/oauth-server-to-server"),
                    Some(json!({"name": "Sync job", "description": "pushes events"})),
                )
                .await;
            let id = cred["id"].as_str().unwrap().to_owned();
            assert_eq!(cred["apiKey"], json!(id));
            let creds = dev.ok("GET", &format!("{base}/credentials"), None).await;
            assert_eq!(creds[0]["id_integration"], json!(id));
            assert_eq!(creds[0]["integration_type"], json!("oauth_server_to_server"));
            let subscription = json!([
                {"sdkCode": "CampaignSDK", "licenseConfigs": [{"id": config["id"], "productId": config["productId"], "op": "add"}], "roles": null},
                {"sdkCode": "AdobeIOManagementAPISDK", "licenseConfigs": null, "roles": null},
            ]);
            let (status, body) = dev
                .call(
                    "PUT",
                    &format!("{base}/credentials/oauth_server_to_server/{id}/services"),
                    Some(subscription),
                )
                .await;
            assert_eq!(status, StatusCode::OK, "{body}");
            assert_eq!(body["sdkList"], json!(["AdobeIOManagementAPISDK", "CampaignSDK"]));
            // A developer cannot open the User Management API; an unknown profile is refused whole.
            let (status, _) = dev
                .call(
                    "PUT",
                    &format!("{base}/credentials/oauth_server_to_server/{id}/services"),
                    Some(json!([{"sdkCode": "UserMgmtSDK"}])),
                )
                .await;
            assert_eq!(status, StatusCode::FORBIDDEN);
            let (status, _) = dev
                .call(
                    "PUT",
                    &format!("{base}/credentials/oauth_server_to_server/{id}/services"),
                    Some(json!([{"sdkCode": "CampaignSDK", "licenseConfigs": [{"id": "424242", "op": "add"}]}])),
                )
                .await;
            assert_eq!(status, StatusCode::BAD_REQUEST);

            let detail = dev
                .ok(
                    "GET",
                    &format!("/console/organizations/{{org}}/integrations/{id}"),
                    None,
                )
                .await;
            assert_eq!(
                detail["technicalAccountId"].as_str().unwrap().split('@').nth(1),
                Some("techacct.ims.local")
            );
            let campaign_props = detail["serviceProperties"]
                .as_array()
                .unwrap()
                .iter()
                .find(|s| s["sdkCode"] == "CampaignSDK")
                .unwrap();
            assert_eq!(
                campaign_props["licenseConfigs"][0]["name"],
                json!("campaign - marketing - messagecenter")
            );
            assert!(detail["scopes"]
                .as_array()
                .unwrap()
                .contains(&json!("adobeio_api")));

            // The first secret is shown once, to one reader.
            let secrets_path = format!("/console/organizations/{{org}}/integrations/{id}/secrets");
            let first = dev.ok("GET", &secrets_path, None).await;
            let secret = first["client_secrets"][0]["client_secret"]
                .as_str()
                .unwrap()
                .to_owned();
            let first_uuid = first["client_secrets"][0]["uuid"].as_str().unwrap().to_owned();
            assert!(secret.starts_with("imscs_") && secret.len() > 40, "{first}");
            let again = dev.ok("GET", &secrets_path, None).await;
            assert_eq!(again["client_secrets"][0]["client_secret"], Value::Null);
            assert!(again["client_secrets"][0]["hint"]
                .as_str()
                .unwrap()
                .starts_with("imscs_..."));
            assert!(!again.to_string().contains(&secret));

            // The secret works; the token carries the profile.
            let (status, _, t) = h
                .cc(
                    &id,
                    &secret,
                    &[("scope", "openid,AdobeID,additional_info.projectedProductContext")],
                )
                .await;
            assert_eq!(status, StatusCode::OK, "{t}");
            let ta_token = t["access_token"].as_str().unwrap().to_owned();
            let (_, _, profile_body) = h
                .call(get_bearer("/ims/profile/v1", &format!("Bearer {ta_token}")))
                .await;
            assert_eq!(
                profile_body["projectedProductContext"][0]["prodCtx"]["label"],
                json!("campaign - marketing - messagecenter"),
                "{profile_body}"
            );

            // Rotation: two secrets at once, the removed one fails at once, the last one stays.
            let added = dev
                .ok(
                    "POST",
                    &format!("/console/organizations/{{org}}/credentials/{id}/secrets"),
                    None,
                )
                .await;
            let second = added["client_secret"].as_str().unwrap().to_owned();
            for s in [&secret, &second] {
                let (status, _, body) = h.cc(&id, s, &[]).await;
                assert_eq!(status, StatusCode::OK, "{body}");
            }
            dev.ok(
                "DELETE",
                &format!("/console/organizations/{{org}}/credentials/{id}/secrets/{first_uuid}"),
                None,
            )
            .await;
            let (status, _, _) = h.cc(&id, &secret, &[]).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "a removed secret fails at once");
            let (status, _, _) = h.cc(&id, &second, &[]).await;
            assert_eq!(status, StatusCode::OK);
            let second_uuid = added["uuid"].as_str().unwrap();
            let (status, _) = dev
                .call(
                    "DELETE",
                    &format!("/console/organizations/{{org}}/credentials/{id}/secrets/{second_uuid}"),
                    None,
                )
                .await;
            assert_eq!(status, StatusCode::CONFLICT, "the last secret stays");

            // The workspace download names the credential; its secret is no longer shown.
            let download = dev.ok("GET", &format!("{base}/download"), None).await;
            let c = &download["project"]["workspace"]["details"]["credentials"][0]["oauth_server_to_server"];
            assert_eq!(c["client_id"], json!(id));
            assert_eq!(download["project"]["org"]["ims_org_id"], json!(h.org_id));
            assert!(!download.to_string().contains(&second));

            // The credential's own token (I/O Management API) drives the console too.
            let own = Api {
                h: &h,
                token: h
                    .cc(
                        &id,
                        &second,
                        &[("scope", "openid,adobeio_api,read_client_secret")],
                    )
                    .await
                    .2["access_token"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
                key: id.clone(),
                org: org.clone(),
            };
            own.ok("GET", "/console/organizations/{org}/projects", None).await;
            let (status, _) = own
                .call(
                    "POST",
                    &format!("/console/organizations/{{org}}/credentials/{id}/secrets"),
                    None,
                )
                .await;
            assert_eq!(
                status,
                StatusCode::FORBIDDEN,
                "adding secrets needs manage_client_secrets"
            );

            // A project holding a credential stays; deleting the credential stops the token
            // endpoint at once and issued tokens stop validating; then the project goes.
            let (status, _) = dev
                .call(
                    "DELETE",
                    &format!("/console/organizations/{{org}}/projects/{p}"),
                    None,
                )
                .await;
            assert_eq!(status, StatusCode::CONFLICT);
            dev.ok("DELETE", &format!("{base}/credentials/{id}"), None).await;
            let (status, _, _) = h.cc(&id, &second, &[]).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED);
            let (_, _, v) = h
                .call(form(
                    "/ims/validate_token/v1",
                    &[("type", "access_token"), ("client_id", &id), ("token", &ta_token)],
                ))
                .await;
            assert_eq!(v["valid"], json!(false), "{v}");
            let (status, _) = dev
                .call(
                    "GET",
                    &format!("/console/organizations/{{org}}/integrations/{id}"),
                    None,
                )
                .await;
            assert_eq!(status, StatusCode::NOT_FOUND);
            dev.ok(
                "DELETE",
                &format!("/console/organizations/{{org}}/projects/{p}"),
                None,
            )
            .await;
            let (status, _) = dev.call("GET", &format!("{base}/credentials"), None).await;
            assert_eq!(status, StatusCode::NOT_FOUND, "its workspaces are gone with it");

            let audit = serde_json::to_string(&h.audit("").await).unwrap();
            assert!(
                !audit.contains(&secret) && !audit.contains(&second),
                "{db:?}: no secret in the audit log"
            );
            let actions: Vec<String> = h.audit("").await.iter().map(|e| e.action.clone()).collect();
            for a in [
                "project.create",
                "credential.create",
                "credential.subscribe",
                "credential.secret.show",
                "credential.secret.add",
                "credential.secret.remove",
                "credential.delete",
                "project.delete",
            ] {
                assert!(actions.iter().any(|x| x == a), "{db:?}: no {a} in the audit log");
            }
            h.cleanup().await;
        }
    }

    #[tokio::test]
    async fn the_organisation_form_and_system_administrators() {
        let h = harness().await;
        marketing(
            &h,
            Some(("campaign - marketing - Administrator", vec!["admin".into()], None)),
        )
        .await;
        let (token, key) = person_token(&h, "admin@acme.test", ADMIN_PASSWORD).await;
        let admin = Api {
            h: &h,
            token,
            key,
            org: numeric_org(&h).await,
        };
        let services = admin
            .ok("GET", "/console/organizations/{org}/services", None)
            .await;
        let config = services
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["code"] == "CampaignSDK")
            .unwrap()["properties"]["licenseConfigs"][0]
            .clone();
        let (status, made) = admin
            .call(
                "POST",
                "/console/organizations/{org}/credentials/oauth-server-to-server",
                Some(json!({"name": "Directory sync", "description": "", "services": [
                    {"sdkCode": "CampaignSDK", "licenseConfigs": [{"id": config["id"], "productId": config["productId"], "op": "add"}]},
                    {"sdkCode": "UserMgmtSDK", "licenseConfigs": null}
                ]})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{made}");
        assert_eq!(
            made["subscriptionResult"]["sdkList"],
            json!(["CampaignSDK", "UserMgmtSDK"])
        );
        let (id, p) = (made["id"].as_str().unwrap(), made["projectId"].as_str().unwrap());
        let project = admin
            .ok(
                "GET",
                &format!("/console/organizations/{{org}}/projects/{p}"),
                None,
            )
            .await;
        assert!(
            project["name"].as_str().unwrap().starts_with("Directory-sync-"),
            "{project}"
        );
        let placed = admin
            .ok(
                "GET",
                &format!("/console/organizations/{{org}}/projects_workspaces/credentials/{id}"),
                None,
            )
            .await;
        assert_eq!(
            (&placed[0]["projectId"], &placed[0]["credentialId"]),
            (&json!(p), &json!(id))
        );
        // The organisation-level subscription call, then the credential holds both APIs' scopes.
        let list = admin
            .ok(
                "PUT",
                &format!("/console/organizations/{{org}}/credentials/oauth-server-to-server/{id}/services"),
                Some(json!([{"sdkCode": "AdobeIOManagementAPISDK"}])),
            )
            .await;
        assert_eq!(list["sdkList"].as_array().unwrap().len(), 3);
        let held = h.store.credential_profiles(id, None).await.unwrap();
        assert_eq!(held[0].profile, "campaign - marketing - Administrator");
        // A developer cannot take, add or remove the secrets of a credential that opens the
        // User Management API, nor delete it: that would hand them its powers.
        let (token, key) = developer(&h, "dev@acme.test").await;
        let dev = Api {
            h: &h,
            token,
            key,
            org: admin.org.clone(),
        };
        for (method, path) in [
            (
                "GET",
                format!("/console/organizations/{{org}}/integrations/{id}/secrets"),
            ),
            (
                "POST",
                format!("/console/organizations/{{org}}/credentials/{id}/secrets"),
            ),
            (
                "DELETE",
                format!("/console/organizations/{{org}}/integrations/{id}"),
            ),
            (
                "PUT",
                format!("/console/organizations/{{org}}/credentials/oauth-server-to-server/{id}/services"),
            ),
        ] {
            let (status, body) = dev.call(method, &path, Some(json!([]))).await;
            assert_eq!(status, StatusCode::FORBIDDEN, "{method} {path}: {body}");
        }
        // Concurrent readers of a secret never shown: exactly one of them sees it.
        let path = format!("/console/organizations/{}/integrations/{id}/secrets", admin.org);
        let reads = futures_util::future::join_all(
            (0..6).map(|_| h.call(req("GET", &path, Some(&admin.token), Some(&admin.key), None))),
        )
        .await;
        let shown = reads
            .iter()
            .filter(|(_, _, v)| v["client_secrets"][0]["client_secret"].is_string())
            .count();
        assert_eq!(shown, 1, "{reads:?}");
        // Every service listed is one we know.
        for s in services.as_array().unwrap() {
            assert!(Service::by_code(s["code"].as_str().unwrap()).is_some());
        }
    }

    #[tokio::test]
    async fn the_console_pages_create_a_project_an_api_credential_and_a_token() {
        let h = harness().await;
        let (_, profile) = marketing(
            &h,
            // An ordinary profile: one that can carry ADMINISTRATION takes a system administrator
            // (`a_developer_cannot_give_a_credential_administration`).
            Some(("campaign - marketing - delivery", vec!["export".into()], None)),
        )
        .await;
        let profile = profile.unwrap();
        developer(&h, "dev@acme.test").await;
        let dev = console_token(&h, "dev@acme.test", PASSWORD).await;
        let (status, headers, html) = page_as(&h, "GET", "/admin/developer", Some(&dev), "").await;
        assert_eq!(status, StatusCode::OK, "{html}");
        let csp = headers["content-security-policy"].to_str().unwrap();
        assert!(
            csp.contains("script-src 'self'") && csp.contains("default-src 'none'"),
            "{csp}"
        );
        // A product profile administrator holds a role but not this one.
        let u = h.person("profiles@acme.test").await;
        h.store
            .set_role(
                &RoleGrant {
                    user_id: u.user_id,
                    role: AdminRole::ProfileAdmin,
                    target: profile.id.to_string(),
                },
                true,
                Now::system(),
                &Context::new(Now::system(), "test").event("role.grant", "p", "success", json!({})),
            )
            .await
            .unwrap();
        let other = console_token(&h, "profiles@acme.test", PASSWORD).await;
        let (status, _, _) = page_as(&h, "GET", "/admin/developer", Some(&other), "").await;
        assert_eq!(status, StatusCode::FORBIDDEN);

        let csrf = csrf_in(&html);
        let (status, _, _) = page_as(
            &h,
            "POST",
            "/admin/developer",
            Some(&dev),
            "csrf=forged&name=nightly-sync",
        )
        .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "a forged form changes nothing");
        let (status, headers, _) = page_as(
            &h,
            "POST",
            "/admin/developer",
            Some(&dev),
            &format!("csrf={csrf}&name=nightly-sync&title=Nightly+sync"),
        )
        .await;
        assert_eq!(status, StatusCode::SEE_OTHER);
        let project = location(&headers);
        let (_, _, html) = page_as(&h, "GET", &project, Some(&dev), "").await;
        assert!(
            html.contains("campaign - marketing - delivery") && html.contains("OAuth Server-to-Server"),
            "{html}"
        );
        assert!(
            html.contains(r#"value="UserMgmtSDK" disabled"#),
            "a developer cannot add the User Management API"
        );
        let form = format!("csrf={csrf}&service=CampaignSDK&authentication=oauth-server-to-server&profile={}&name=Nightly+sync", profile.id);
        let (status, headers, body) = page_as(&h, "POST", &project, Some(&dev), &form).await;
        assert_eq!(status, StatusCode::SEE_OTHER, "{body}");
        let page = location(&headers);
        let id = page.rsplit('/').next().unwrap().to_owned();
        // Viewing the page shows nothing; its form shows the secret, once.
        let (_, _, html) = page_as(&h, "GET", &page, Some(&dev), "").await;
        assert!(
            !html.contains(r#"class="secret""#) && html.contains(r#"id="show-secret""#),
            "{html}"
        );
        let (status, _, html) =
            page_as(&h, "POST", &page, Some(&dev), &format!("csrf={csrf}&action=show")).await;
        assert_eq!(status, StatusCode::OK);
        let secret = html
            .split(r#"class="secret">"#)
            .nth(1)
            .expect("the secret, shown once")
            .split('<')
            .next()
            .unwrap()
            .to_owned();
        let text = html.replace("&#x27;", "'").replace("&#39;", "'");
        assert!(
            text.contains(&format!("client_secret='{secret}'")),
            "the token command carries the secret"
        );
        let (status, _, t) = h.cc(&id, &secret, &[]).await;
        assert_eq!(status, StatusCode::OK, "{t}");
        let (_, _, again) = page_as(&h, "POST", &page, Some(&dev), &format!("csrf={csrf}&action=show")).await;
        assert!(
            !again.contains(&secret) && again.contains("$CLIENT_SECRET") && again.contains("shown already")
        );
        assert!(!again.contains(r#"id="show-secret""#));
        let (status, _, html) = page_as(
            &h,
            "POST",
            &page,
            Some(&dev),
            &format!("csrf={csrf}&action=token"),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        let token = html
            .split(r#"<pre id="test-token">"#)
            .nth(1)
            .unwrap()
            .split('<')
            .next()
            .unwrap();
        let (_, _, profile_body) = h
            .call(get_bearer("/ims/profile/v1", &format!("Bearer {token}")))
            .await;
        assert_eq!(
            profile_body["projectedProductContext"][0]["prodCtx"]["label"],
            json!("campaign - marketing - delivery")
        );
        let text = html
            .replace("&#x27;", "'")
            .replace("&#39;", "'")
            .replace("&quot;", "\"");
        assert!(
            text.contains(&format!("'Authorization: Bearer {token}'")),
            "the SOAP command carries the token"
        );
        assert!(
            text.contains("'https://127.0.0.1:1/nl/jsp/soaprouter.jsp'"),
            "and the address of the instance its profile grants"
        );
        let (status, headers, _) = page_as(
            &h,
            "POST",
            &page,
            Some(&dev),
            &format!("csrf={csrf}&action=delete"),
        )
        .await;
        assert_eq!((status, location(&headers)), (StatusCode::SEE_OTHER, project));
        let (status, _, _) = h.cc(&id, &secret, &[]).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }

    /// Every route of the Developer Console API, with a harmless request for each.
    fn console_routes(org: &str) -> Vec<(&'static str, String)> {
        let o = format!("/console/organizations/{org}");
        let w = format!("{o}/projects/1/workspaces/2");
        vec![
            ("GET", "/console/organizations".to_owned()),
            ("GET", format!("{o}/projects")),
            ("POST", format!("{o}/projects")),
            ("GET", format!("{o}/projects/1")),
            ("DELETE", format!("{o}/projects/1")),
            ("GET", format!("{o}/projects/1/workspaces")),
            ("POST", format!("{o}/projects/1/workspaces")),
            ("GET", w.clone()),
            ("GET", format!("{w}/credentials")),
            ("POST", format!("{w}/credentials/oauth-server-to-server")),
            (
                "PUT",
                format!("{w}/credentials/oauth_server_to_server/3/services"),
            ),
            ("DELETE", format!("{w}/credentials/3")),
            ("GET", format!("{w}/download")),
            ("POST", format!("{o}/credentials/oauth-server-to-server")),
            (
                "PUT",
                format!("{o}/credentials/oauth-server-to-server/3/services"),
            ),
            ("GET", format!("{o}/credentials/3/secrets")),
            ("POST", format!("{o}/credentials/3/secrets")),
            ("DELETE", format!("{o}/credentials/3/secrets/4")),
            ("GET", format!("{o}/projects_workspaces/credentials/3")),
            ("GET", format!("{o}/services")),
            ("GET", format!("{o}/integrations")),
            ("GET", format!("{o}/integrations/3")),
            ("DELETE", format!("{o}/integrations/3")),
            ("GET", format!("{o}/integrations/3/secrets")),
        ]
    }

    #[tokio::test]
    async fn every_console_route_denies_by_default() {
        let h = harness().await;
        let org = numeric_org(&h).await;
        h.person("nobody@acme.test").await;
        let (person, person_key) = person_token(&h, "nobody@acme.test", PASSWORD).await;
        let (dev, dev_key) = developer(&h, "dev@acme.test").await;
        let bare = h.credential(&["openid", "AdobeID"]).await;
        let bare_token = h.token(&bare, "openid").await;
        let audit_before = h.audit("").await.len();
        for (method, path) in console_routes(&org) {
            let body = Some("{}");
            let (status, headers, _) = h.call(req(method, &path, None, None, body)).await;
            assert_eq!(
                status,
                StatusCode::UNAUTHORIZED,
                "{method} {path} without a token"
            );
            assert!(headers["www-authenticate"]
                .to_str()
                .unwrap()
                .contains("invalid_token"));
            let (status, _, _) = h.call(req(method, &path, Some("garbage"), Some("x"), body)).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {path} with garbage");
            let (status, _, _) = h
                .call(req(method, &path, Some(&person), Some(&person_key), body))
                .await;
            assert_eq!(
                status,
                StatusCode::FORBIDDEN,
                "{method} {path} as a person without the role"
            );
            let (status, _, _) = h
                .call(req(method, &path, Some(&dev), Some(&person_key), body))
                .await;
            assert_eq!(
                status,
                StatusCode::FORBIDDEN,
                "{method} {path} with another client's key"
            );
            let (status, headers, _) = h
                .call(req(
                    method,
                    &path,
                    Some(&bare_token),
                    Some(&bare.client.client_id),
                    body,
                ))
                .await;
            assert_eq!(
                status,
                StatusCode::FORBIDDEN,
                "{method} {path} as a credential without the console API"
            );
            assert!(headers["www-authenticate"]
                .to_str()
                .unwrap()
                .contains("insufficient_scope"));
            // With the role, the route exists (whatever it then says about the made-up ids).
            let (status, headers, _) = h.call(req(method, &path, Some(&dev), Some(&dev_key), body)).await;
            assert!(
                [
                    StatusCode::OK,
                    StatusCode::CREATED,
                    StatusCode::BAD_REQUEST,
                    StatusCode::NOT_FOUND
                ]
                .contains(&status),
                "{method} {path} as a developer: {status}"
            );
            assert_eq!(headers["cache-control"], "no-store", "{method} {path}");
        }
        // The refusals changed nothing.
        let changes: Vec<String> = h.audit("").await[..h.audit("").await.len() - audit_before]
            .iter()
            .map(|e| e.action.clone())
            .filter(|a| !a.starts_with("token.") && !a.starts_with("signin.") && !a.starts_with("role."))
            .collect();
        assert!(changes.is_empty(), "{changes:?}");
    }

    #[tokio::test]
    async fn secrets_are_listed_without_being_used_up_and_removals_cannot_race_to_none() {
        for db in [Db::Sqlite, Db::Postgres] {
            let Some(h) = harness_on(db, Algorithm::ES256).await else {
                continue;
            };
            let org = numeric_org(&h).await;
            let (token, key) = developer(&h, "dev@acme.test").await;
            let dev = Api {
                h: &h,
                token,
                key,
                org: org.clone(),
            };
            let made = dev
                .ok(
                    "POST",
                    "/console/organizations/{org}/credentials/oauth-server-to-server",
                    Some(json!({"name": "Race", "services": [{"sdkCode": "CampaignSDK"}]})),
                )
                .await;
            let id = made["id"].as_str().unwrap().to_owned();
            // The credential listing carries ids and times only; the integration's shows the
            // first secret, once.
            let listing = dev
                .ok(
                    "GET",
                    &format!("/console/organizations/{{org}}/credentials/{id}/secrets"),
                    None,
                )
                .await;
            assert_eq!(
                listing["client_secrets"][0]["client_secret"],
                Value::Null,
                "{db:?}"
            );
            let shown = dev
                .ok(
                    "GET",
                    &format!("/console/organizations/{{org}}/integrations/{id}/secrets"),
                    None,
                )
                .await;
            let first = shown["client_secrets"][0]["client_secret"]
                .as_str()
                .expect("shown now")
                .to_owned();
            let first_id = shown["client_secrets"][0]["uuid"].as_str().unwrap().to_owned();
            let added = dev
                .ok(
                    "POST",
                    &format!("/console/organizations/{{org}}/credentials/{id}/secrets"),
                    None,
                )
                .await;
            let second = added["client_secret"].as_str().unwrap().to_owned();
            let second_id = added["uuid"].as_str().unwrap().to_owned();
            // Both removed at once: one goes, the last one stays.
            let path = |sid: &str| format!("/console/organizations/{org}/credentials/{id}/secrets/{sid}");
            let (a, b) = tokio::join!(
                h.call(req(
                    "DELETE",
                    &path(&first_id),
                    Some(&dev.token),
                    Some(&dev.key),
                    None
                )),
                h.call(req(
                    "DELETE",
                    &path(&second_id),
                    Some(&dev.token),
                    Some(&dev.key),
                    None
                )),
            );
            let mut statuses = [a.0, b.0];
            statuses.sort();
            assert_eq!(
                statuses,
                [StatusCode::OK, StatusCode::CONFLICT],
                "{db:?}: {a:?} {b:?}"
            );
            let mut live = 0;
            for s in [&first, &second] {
                if h.cc(&id, s, &[]).await.0 == StatusCode::OK {
                    live += 1;
                }
            }
            assert_eq!(live, 1, "{db:?}: exactly one secret left, and it works");

            // A system administrator cannot add the User Management API to a credential whose
            // secrets others know.
            let (admin_token, admin_key) = person_token(&h, "admin@acme.test", ADMIN_PASSWORD).await;
            let admin = Api {
                h: &h,
                token: admin_token,
                key: admin_key,
                org: org.clone(),
            };
            let (status, body) = admin
                .call(
                    "PUT",
                    &format!(
                        "/console/organizations/{{org}}/credentials/oauth-server-to-server/{id}/services"
                    ),
                    Some(json!([{"sdkCode": "UserMgmtSDK"}])),
                )
                .await;
            assert_eq!(status, StatusCode::CONFLICT, "{db:?}: {body}");
            assert!(!h
                .store
                .client(&id)
                .await
                .unwrap()
                .unwrap()
                .scopes
                .iter()
                .any(|s| s == "user_management_sdk"));

            // A credential made outside the console is the system administrators'.
            let outside = h.credential(&["openid"]).await;
            let outside_path = format!(
                "/console/organizations/{{org}}/integrations/{}/secrets",
                outside.client.client_id
            );
            assert_eq!(
                dev.call("GET", &outside_path, None).await.0,
                StatusCode::FORBIDDEN
            );
            assert_eq!(admin.call("GET", &outside_path, None).await.0, StatusCode::OK);

            // A third-party application a system administrator consented to does not act for
            // them, here or in the User Management API.
            let third = h.people_client(false).await;
            let mut b = Browser::default();
            let (_, page) = sign_in(&h, &mut b, &third, "admin@acme.test", ADMIN_PASSWORD).await;
            let (_, _, html) = b.get(&h.app, &page).await;
            let (_, headers, _) = b
                .post(&h.app, &page, &[("csrf", &csrf_in(&html)), ("consent", "allow")])
                .await;
            let code = query_of(&location(&headers))["code"].clone();
            let (status, body) = redeem(&h, &third, &code).await;
            assert_eq!(status, StatusCode::OK, "{body}");
            let third_token = body["access_token"].as_str().unwrap();
            for path in [
                "/console/organizations".to_owned(),
                format!("/v2/usermanagement/groups/{}/0", h.org_id),
            ] {
                let (status, _, _) = h
                    .call(req("GET", &path, Some(third_token), Some(&third), None))
                    .await;
                assert_eq!(status, StatusCode::FORBIDDEN, "{db:?} {path}");
            }
            h.cleanup().await;
        }
    }

    #[tokio::test]
    async fn the_api_budget_and_the_secret_cap_hold() {
        let mut settings = super::settings(Algorithm::ES256);
        settings.umapi_requests_per_minute = 4;
        let h = harness_with(Db::Sqlite, settings).await.unwrap();
        let (token, key) = developer(&h, "dev@acme.test").await;
        let dev = Api {
            h: &h,
            token,
            key,
            org: numeric_org(&h).await,
        };
        let made = dev
            .ok(
                "POST",
                "/console/organizations/{org}/credentials/oauth-server-to-server",
                Some(json!({"name": "Capped"})),
            )
            .await;
        let id = made["id"].as_str().unwrap();
        let mut statuses = Vec::new();
        for _ in 0..10 {
            statuses.push(
                dev.call(
                    "POST",
                    &format!("/console/organizations/{{org}}/credentials/{id}/secrets"),
                    None,
                )
                .await
                .0,
            );
        }
        let (status, headers, _) = h
            .call(req(
                "GET",
                "/console/organizations",
                Some(&dev.token),
                Some(&dev.key),
                None,
            ))
            .await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
        assert!(headers["retry-after"].to_str().unwrap().parse::<u64>().unwrap() >= 1);
        // Three secrets added within the budget (one call created the credential), then 429s.
        assert_eq!(
            statuses.iter().filter(|s| **s == StatusCode::OK).count(),
            3,
            "{statuses:?}"
        );
        assert!(statuses
            .iter()
            .all(|s| [StatusCode::OK, StatusCode::TOO_MANY_REQUESTS].contains(s)));
        // The cap, through the domain (no budget there).
        let caller = h
            .state
            .ims
            .console_caller(&dev.token, Some(&dev.key), Now::system())
            .await
            .unwrap();
        let org = h.state.ims.organization(&h.org_id).await.unwrap();
        let ctx = Context::new(Now::system(), "test");
        let mut refused = None;
        for _ in 0..ims_identity::service::developer::MAX_SECRETS {
            if let Err(e) = h.state.ims.add_credential_secret(&caller, &org, id, &ctx).await {
                refused = Some(e);
                break;
            }
        }
        assert!(
            matches!(refused, Some(ims_core::Error::Conflict(_))),
            "{refused:?}"
        );
        let held = h.store.client_with_secrets(id).await.unwrap().unwrap().1.len();
        assert_eq!(held, ims_identity::service::developer::MAX_SECRETS);
    }
}

/// The instance as an OpenID Connect relying party of the IMS ("Connect with IMS"): people
/// signing in to the console, groups and rights from product profiles, technical accounts.
mod connect {
    use super::instance::*;
    use super::people::{csrf_in, location, query_of, sign_in_at, Browser, PASSWORD};
    use super::restrictions::finish;
    use super::umapi::marketing;
    use super::*;
    use ims_campaign::connect::{HttpKeys, ImsAccount, ImsHttp, DEFAULT_SCOPES, NO_MATCHING_RIGHT};
    use ims_campaign::model::AuthType;
    use ims_campaign::service::{Instance, InstanceInfo, InstanceKind};
    use ims_campaign::signin::Connection;
    use ims_http::campaign::{router, InstanceState};
    use ims_identity::model::ClientType;
    use ims_identity::store::{DirectoryStore as _, GrantStore as _};
    use ims_identity::umapi::Change;
    use ims_wire::association::AssociationMask;

    /// Where the test instance says it is.
    const INSTANCE: &str = "https://127.0.0.1:1";
    const CALLBACK: &str = "https://127.0.0.1:1/console/ims/callback";

    /// The IMS as the instance reaches it: the harness's router, in-process.
    struct InProcessIms(Router);

    impl InProcessIms {
        async fn send(&self, req: Request<Body>) -> Result<(u16, Value), String> {
            let resp = self.0.clone().oneshot(req).await.map_err(|e| e.to_string())?;
            let status = resp.status().as_u16();
            let bytes = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| e.to_string())?
                .to_bytes();
            Ok((status, serde_json::from_slice(&bytes).unwrap_or(Value::Null)))
        }

        fn path(url: &str) -> Result<String, String> {
            url.strip_prefix(ISSUER)
                .map(str::to_owned)
                .ok_or_else(|| format!("{url} is not the test IMS"))
        }
    }

    #[async_trait::async_trait]
    impl ImsHttp for InProcessIms {
        async fn get(&self, url: &str, bearer: Option<&str>) -> Result<(u16, Value), String> {
            let mut b = Request::get(Self::path(url)?);
            if let Some(t) = bearer {
                b = b.header("authorization", format!("Bearer {t}"));
            }
            self.send(b.body(Body::empty()).unwrap()).await
        }

        async fn get_basic(&self, url: &str, id: &str, secret: &str) -> Result<(u16, Value), String> {
            let req = Request::get(Self::path(url)?)
                .header("authorization", basic(id, secret))
                .body(Body::empty())
                .unwrap();
            self.send(req).await
        }

        async fn post_form(
            &self,
            url: &str,
            basic_auth: Option<(&str, &str)>,
            pairs: &[(&str, &str)],
        ) -> Result<(u16, Value), String> {
            let mut b =
                Request::post(Self::path(url)?).header("content-type", "application/x-www-form-urlencoded");
            if let Some((id, secret)) = basic_auth {
                b = b.header("authorization", basic(id, secret));
            }
            self.send(b.body(Body::from(encode(pairs))).unwrap()).await
        }
    }

    /// The instance as the IMS reaches it to tell of sign-outs: its router, in-process.
    struct InProcessInstance(Router);

    #[async_trait::async_trait]
    impl ims_identity::service::LogoutNotifier for InProcessInstance {
        async fn deliver(&self, uri: &str, logout_token: &str) -> Result<(), String> {
            let path = uri.strip_prefix(INSTANCE).ok_or("not the test instance")?;
            let req = Request::post(path)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(Body::from(encode(&[("logout_token", logout_token)])))
                .unwrap();
            let resp = self.0.clone().oneshot(req).await.map_err(|e| e.to_string())?;
            match resp.status() {
                StatusCode::OK => Ok(()),
                other => Err(format!("{other}")),
            }
        }
    }

    struct Connected {
        app: Router,
        inst: Arc<Instance>,
        client_id: String,
        cleanup: Cleanup,
        _dir: tempfile::TempDir,
    }

    /// An instance named `prod` whose people sign in through the harness's IMS with the mask
    /// `campaign - prod - (.*)`, and which accepts its bearer tokens; technical accounts' rights
    /// are read again after `refresh_secs`.
    async fn connected(h: &Harness, db: Db, kind: InstanceKind, refresh_secs: i64) -> Option<Connected> {
        connected_via(h, db, kind, refresh_secs, Arc::new(InProcessIms(h.app.clone()))).await
    }

    /// As [`connected`], the instance reaching the IMS through `http`.
    async fn connected_via(
        h: &Harness,
        db: Db,
        kind: InstanceKind,
        refresh_secs: i64,
        http: Arc<dyn ImsHttp>,
    ) -> Option<Connected> {
        let (inst, dir, cleanup) = instance_on(db, "7.4.1", kind).await?;
        let ctx = Context::new(Now::system(), "test");
        // The product instance the IMS knows this instance as (at its address).
        marketing(h, None).await;
        let (client, secret) = h
            .creds
            .create_people_client(
                &h.org_id,
                "Campaign instance prod",
                ClientType::Confidential,
                vec![CALLBACK.into()],
                DEFAULT_SCOPES.iter().map(|s| s.to_string()).collect(),
                true,
                &ctx,
            )
            .await
            .unwrap();
        let mut info = InstanceInfo::new("prod", kind, "7.4.1".parse().unwrap());
        info.profile_refresh_secs = refresh_secs;
        let keys = HttpKeys {
            http: http.clone(),
            url: format!("{ISSUER}/ims/keys"),
        };
        let inst = Instance::new(inst.store().clone(), info)
            .with_bearer(Arc::new(ims_campaign::bearer::TrustedIssuer::new(
                ISSUER,
                Arc::new(keys),
            )))
            .with_ims_http(http.clone());
        let conn = Connection::new(
            account(&h.org_id, &client.client_id),
            client.client_id.clone(),
            secret.unwrap(),
            http,
        );
        assert!(inst.set_connection(Some(conn), &ctx).await.unwrap(), "a change");
        let inst = Arc::new(inst);
        let app = router(InstanceState {
            instance: inst.clone(),
            tls: false,
        });
        // Sign-outs at the IMS reach the instance (back-channel logout).
        h.store
            .set_backchannel_logout_uri(
                &client.client_id,
                Some(&format!(
                    "{INSTANCE}{}",
                    ims_campaign::connect::BACKCHANNEL_LOGOUT_PATH
                )),
                &ctx.event("client.update", &client.client_id, "success", json!({})),
            )
            .await
            .unwrap();
        h.state
            .ims
            .set_logout_notifier(Arc::new(InProcessInstance(app.clone())));
        Some(Connected {
            app,
            inst,
            client_id: client.client_id,
            cleanup,
            _dir: dir,
        })
    }

    fn account(org_id: &str, client_id: &str) -> ImsAccount {
        ImsAccount {
            url: ISSUER.into(),
            org_id: org_id.into(),
            client_id: Some(client_id.into()),
            sealed_secret: Some("enc:kept by the test".into()),
            callback_url: CALLBACK.into(),
            mask: AssociationMask::parse("campaign - prod - (.*)").unwrap(),
            product_context: "dma_campaign_classic".into(),
            scopes: DEFAULT_SCOPES.iter().map(|s| s.to_string()).collect(),
        }
    }

    /// A connected instance (on SQLite) and jane, who holds its administrators' profile.
    async fn with_an_administrator(h: &Harness) -> (Connected, ims_identity::model::User) {
        let c = connected(h, Db::Sqlite, InstanceKind::Marketing, 60)
            .await
            .unwrap();
        profile(h, "campaign - prod - Administrator", &["admin"]).await;
        let jane = h.person("jane@acme.test").await;
        membership(h, &jane.user_id, "campaign - prod - Administrator", true).await;
        (c, jane)
    }

    async fn profile(h: &Harness, name: &str, permissions: &[&str]) {
        let (instance, _) = marketing(h, None).await;
        ims_identity::service::directory::create_product_profile(
            h.store.as_ref(),
            &instance,
            name,
            permissions.iter().map(|p| p.to_string()).collect(),
            None,
            &Context::new(Now::system(), "test"),
        )
        .await
        .unwrap();
    }

    async fn membership(h: &Harness, user_id: &str, profile: &str, held: bool) {
        let change = if held {
            Change::AddMember {
                group: profile.into(),
                user_id: user_id.into(),
            }
        } else {
            Change::RemoveMember {
                group: profile.into(),
                user_id: user_id.into(),
            }
        };
        h.store.apply_changes(&h.org_id, &[change], &[]).await.unwrap();
    }

    /// A browser clicks "Connect with IMS", signs in at the IMS and comes back: the instance's
    /// answer to the callback (status, headers, body).
    async fn connect_with_ims(
        h: &Harness,
        c: &Connected,
        b: &mut Browser,
        email: &str,
    ) -> (StatusCode, http::HeaderMap, String) {
        let (status, headers, _) = b.get(&c.app, "/console/ims/login").await;
        assert_eq!(status, StatusCode::SEE_OTHER);
        let authorize = location(&headers);
        let q = query_of(&authorize);
        assert_eq!(
            (
                q["client_id"].as_str(),
                q["redirect_uri"].as_str(),
                q["code_challenge_method"].as_str()
            ),
            (c.client_id.as_str(), CALLBACK, "S256")
        );
        assert!(q["scope"].split(' ').any(|s| s == "openid"));
        let back = at_the_ims(h, b, &authorize, email).await;
        assert!(back.starts_with(CALLBACK), "{back}");
        b.get(&c.app, back.strip_prefix(INSTANCE).unwrap()).await
    }

    /// The IMS's sign-in pages from `authorize` on; where the IMS sends the browser back.
    async fn at_the_ims(h: &Harness, b: &mut Browser, authorize: &str, email: &str) -> String {
        let path = authorize.strip_prefix(ISSUER).unwrap();
        let (status, to) = sign_in_at(h, b, path, email, PASSWORD).await;
        assert_eq!(status, StatusCode::SEE_OTHER, "{to}");
        to
    }

    async fn home(c: &Connected, b: &mut Browser) -> String {
        let (status, _, html) = b.get(&c.app, "/console/").await;
        assert_eq!(status, StatusCode::OK, "{html}");
        html
    }

    async fn audit(inst: &Instance, prefix: &str) -> Vec<ims_core::audit::AuditEvent> {
        ims_core::audit::AuditStore::audit(
            inst.store().as_ref(),
            &AuditQuery {
                action_prefix: Some(prefix.into()),
                limit: 50,
            },
        )
        .await
        .unwrap()
    }

    #[tokio::test]
    async fn people_sign_in_through_the_ims_with_groups_from_their_profiles() {
        for db in [Db::Sqlite, Db::Postgres] {
            let Some(h) = harness_on(db, Algorithm::RS256).await else {
                continue;
            };
            let Some(c) = connected(&h, db, InstanceKind::Marketing, 60).await else {
                continue;
            };
            profile(&h, "campaign - prod - Administrator", &["admin"]).await;
            profile(&h, "campaign - prod - deliveryOperators", &["EXPORT"]).await;
            profile(&h, "campaign - other - Administrator", &["admin"]).await;
            let jane = h.person("jane@acme.test").await;
            for p in [
                "campaign - prod - Administrator",
                "campaign - prod - deliveryOperators",
                "campaign - other - Administrator",
            ] {
                membership(&h, &jane.user_id, p, true).await;
            }
            // The sign-in page offers it.
            let (_, _, html) = Browser::default().get(&c.app, "/console/login").await;
            assert!(
                html.contains(r#"href="/console/ims/login""#) && html.contains("Connect with IMS"),
                "{html}"
            );

            // First sign-in: the operator is created, of type IMS, in the matched groups.
            let mut b = Browser::default();
            let (status, headers, body) = connect_with_ims(&h, &c, &mut b, "jane@acme.test").await;
            assert_eq!(
                (status, location(&headers)),
                (StatusCode::SEE_OTHER, "/console/".into()),
                "{body}"
            );
            let html = home(&c, &mut b).await;
            assert!(
                html.contains("Signed in through the IMS: operator created"),
                "{html}"
            );
            assert!(html.contains("ADMINISTRATION"), "{html}");
            let op = c
                .inst
                .store()
                .operator_by_ims_id(&jane.user_id)
                .await
                .unwrap()
                .unwrap();
            assert_eq!(
                (op.login.as_str(), op.auth_type, op.email.as_deref()),
                ("jane@acme.test", AuthType::Ims, Some("jane@acme.test"))
            );
            assert_eq!(
                op.groups,
                vec!["admin", "deliveryOperators"],
                "the other instance's profile grants nothing here"
            );
            assert_eq!(
                op.rights,
                vec!["export"],
                "held directly: the permission items no mapped group carries (admin comes with its group)"
            );
            let created = audit(&c.inst, "operator.create").await;
            assert!(created
                .iter()
                .any(|e| e.target == "jane@acme.test" && e.details["auth_type"] == "ims"));
            // An administrator: the operator pages open.
            let (status, _, _) = b.get(&c.app, "/console/operators").await;
            assert_eq!(status, StatusCode::OK);
            // The notice is shown once.
            assert!(!home(&c, &mut b).await.contains("Signed in through the IMS"));

            // The profile taken away: the group goes at the next sign-in, and the change is said.
            membership(&h, &jane.user_id, "campaign - prod - Administrator", false).await;
            let mut b = Browser::default();
            let (status, _, _) = connect_with_ims(&h, &c, &mut b, "jane@acme.test").await;
            assert_eq!(status, StatusCode::SEE_OTHER);
            let html = home(&c, &mut b).await;
            assert!(
                html.contains("groups removed: admin") && !html.contains("rights removed"),
                "{html}"
            );
            let op = c
                .inst
                .store()
                .operator_by_ims_id(&jane.user_id)
                .await
                .unwrap()
                .unwrap();
            assert_eq!(
                (op.groups.clone(), op.rights.clone()),
                (vec!["deliveryOperators".to_owned()], vec!["export".to_owned()])
            );
            let (status, _, _) = b.get(&c.app, "/console/operators").await;
            assert_eq!(status, StatusCode::FORBIDDEN, "no longer an administrator");
            let synced = audit(&c.inst, "operator.ims_sync").await;
            assert_eq!(synced[0].details["changes"]["groups_removed"], json!(["admin"]));
            assert_eq!(synced[0].actor, format!("ims:{}", jane.user_id));

            // Signing out offers the IMS's sign-out for this client.
            let (_, _, html) = b.get(&c.app, "/console/").await;
            let (status, headers, html) = b
                .post(&c.app, "/console/logout", &[("csrf", &csrf_in(&html))])
                .await;
            assert_eq!(status, StatusCode::OK, "{html}");
            assert!(
                html.contains(&format!("{ISSUER}/ims/logout/v1?client_id={}", c.client_id)),
                "{html}"
            );
            assert!(headers
                .get_all("set-cookie")
                .iter()
                .any(|v| v.to_str().unwrap().starts_with("ims_console=;")));
            let (status, headers, _) = b.get(&c.app, "/console/").await;
            assert_eq!(
                (status, location(&headers)),
                (StatusCode::SEE_OTHER, "/console/login".into())
            );

            // No matching profile left: refused with the vendor's message, audited, no session.
            membership(&h, &jane.user_id, "campaign - prod - deliveryOperators", false).await;
            let mut b = Browser::default();
            let (status, _, html) = connect_with_ims(&h, &c, &mut b, "jane@acme.test").await;
            assert_eq!(status, StatusCode::FORBIDDEN);
            assert!(html.contains(NO_MATCHING_RIGHT), "{html}");
            assert!(!b.has("ims_console"));
            let refused = audit(&c.inst, "operator.ims_sign_in").await;
            assert_eq!(
                (refused[0].outcome.as_str(), refused[0].details["reason"].as_str()),
                ("failure", Some(NO_MATCHING_RIGHT))
            );
            let op = c
                .inst
                .store()
                .operator_by_ims_id(&jane.user_id)
                .await
                .unwrap()
                .unwrap();
            assert!(
                op.groups.is_empty() && op.rights.is_empty(),
                "what profiles gave is gone: {op:?}"
            );
            // Usage evidence records both outcomes on the IMS path.
            let usage =
                ims_campaign::store::UsageStore::usage(c.inst.store().as_ref(), Some("jane@acme.test"), 10)
                    .await
                    .unwrap();
            assert!(usage.iter().any(|u| u.action == "console#ImsLogon"
                && u.outcome == "success"
                && u.auth_path == ims_campaign::model::AuthPath::Ims));
            assert!(usage.iter().any(|u| u.outcome == "refused"));

            // Switched back to native sign-in, the IMS session stops counting.
            membership(&h, &jane.user_id, "campaign - prod - Administrator", true).await;
            let mut b = Browser::default();
            connect_with_ims(&h, &c, &mut b, "jane@acme.test").await;
            home(&c, &mut b).await;
            let op = c
                .inst
                .store()
                .operator_by_ims_id(&jane.user_id)
                .await
                .unwrap()
                .unwrap();
            let native = ims_campaign::model::Operator {
                auth_type: AuthType::Native,
                ..op
            };
            let ctx = Context::new(Now::system(), "test");
            c.inst
                .store()
                .update_operator(
                    &native,
                    false,
                    &ctx.event("operator.update", "jane", "success", json!({})),
                )
                .await
                .unwrap();
            let (status, _, _) = b.get(&c.app, "/console/").await;
            assert_eq!(
                status,
                StatusCode::SEE_OTHER,
                "the IMS session no longer opens the console"
            );
            finish(c.cleanup).await;
            h.cleanup().await;
        }
    }

    /// The attack: an application the person allowed to sign them in sends the person's access
    /// token (valid, same issuer and organisation, `openid`) to the instance. Every path that
    /// takes a bearer token refuses it, and the operator keeps everything it had.
    #[tokio::test]
    async fn a_persons_token_minted_for_another_application_is_refused_everywhere() {
        let h = harness().await;
        let (c, jane) = with_an_administrator(&h).await;
        let mut b = Browser::default();
        let (status, _, body) = connect_with_ims(&h, &c, &mut b, "jane@acme.test").await;
        assert_eq!(status, StatusCode::SEE_OTHER, "{body}");
        let before = c
            .inst
            .store()
            .operator_by_ims_id(&jane.user_id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(before.groups, vec!["admin"]);
        // A token the person gave another application of the organisation.
        let (token, other_client) = super::umapi::person_token(&h, "jane@acme.test", PASSWORD).await;
        assert_ne!(other_client, c.client_id);
        let bearer = vec![("authorization", format!("Bearer {token}"))];
        let read = query(
            r#"<queryDef schema="xtk:operator" operation="select"><select><node expr="@name"/></select></queryDef>"#,
        );
        let write = envelope(
            "Write",
            "xtk:persist|xtk:session",
            r#"<sessiontoken/><domDoc><operator xtkschema="xtk:operator" _operation="insert" name="planted" password="planted password 1"><operatorGroup name="admin"/></operator></domDoc>"#,
        );
        for (action, body) in [
            ("xtk:queryDef#ExecuteQuery", read),
            ("xtk:persist|xtk:session#Write", write),
            (
                "xtk:session#GetUserInfo",
                envelope("GetUserInfo", "xtk:session", "<sessiontoken/>"),
            ),
            (
                "xtk:session#BearerTokenLogon",
                envelope(
                    "BearerTokenLogon",
                    "xtk:session",
                    &format!("<sessiontoken/><bearerToken xsi:type=\"xsd:string\">{token}</bearerToken>"),
                ),
            ),
        ] {
            let (_, xml) = call(&c.app, action, body, &bearer).await;
            assert_eq!(fault_code(&xml).as_deref(), Some("XSV-350122"), "{action}: {xml}");
            assert!(xml.contains("another application"), "{action}: {xml}");
        }
        let (status, _, out) = send(
            &c.app,
            Request::get("/nl/migration/v1/instance")
                .header("authorization", format!("Bearer {token}"))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{out}");
        assert!(c
            .inst
            .store()
            .operator_by_login("planted")
            .await
            .unwrap()
            .is_none());
        let after = c
            .inst
            .store()
            .operator_by_ims_id(&jane.user_id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!((after.groups, after.rights), (before.groups, before.rights));
        // The refusals are recorded as usage, with who tried.
        // (Counted in memory, as totals, like calls: a flood of refused tokens writes no row
        // each.)
        assert!(c
            .inst
            .store()
            .usage(None, 100)
            .await
            .unwrap()
            .iter()
            .all(|e| e.login != jane.user_id));
        c.inst.flush_usage().await.unwrap();
        let refused = c.inst.store().usage_summary(None, 100).await.unwrap();
        let tries: i64 = refused
            .iter()
            .filter(|u| u.key.outcome == "refused" && u.key.login == jane.user_id)
            .map(|u| u.counts.calls)
            .sum();
        assert_eq!(tries, 5, "the four SOAP calls and the migration API: {refused:?}");
    }

    /// The attack: a revoked token, and a token of a disabled credential, kept working at an
    /// instance without an IMS sign-in configuration until they expired (24 h). The instance
    /// now asks the IMS for each token's Campaign profiles every `profile_refresh_secs` (0 here:
    /// every call), on direct bearer calls and on the sessions `BearerTokenLogon` opened.
    #[tokio::test]
    async fn revoked_tokens_stop_working_at_an_instance_without_configuration() {
        let h = harness().await;
        let (inst, _dir, _) = instance_on(Db::Sqlite, "7.4.1", InstanceKind::Marketing)
            .await
            .unwrap();
        let mut info = InstanceInfo::new("prod", InstanceKind::Marketing, "7.4.1".parse().unwrap());
        info.profile_refresh_secs = 0;
        let http: Arc<dyn ImsHttp> = Arc::new(InProcessIms(h.app.clone()));
        let keys = HttpKeys {
            http: http.clone(),
            url: format!("{ISSUER}/ims/keys"),
        };
        let inst = Instance::new(inst.store().clone(), info)
            .with_bearer(Arc::new(ims_campaign::bearer::TrustedIssuer::new(
                ISSUER,
                Arc::new(keys),
            )))
            .with_ims_http(http);
        assert!(inst.connection().is_none());
        let app = router(InstanceState {
            instance: Arc::new(inst),
            tls: false,
        });
        let info_call = envelope("GetUserInfo", "xtk:session", "<sessiontoken/>");
        let bearer = |t: &str| vec![("authorization", format!("Bearer {t}"))];
        let works = |xml: &str| xml.contains("<GetUserInfoResponse");
        // Revoked at the IMS: refused at the next call.
        let c = h.campaign_credential().await;
        let token = h.token(&c, CAMPAIGN_SCOPES).await;
        let (_, xml) = call(
            &app,
            "xtk:session#GetUserInfo",
            info_call.clone(),
            &bearer(&token),
        )
        .await;
        assert!(works(&xml), "{xml}");
        let (status, _, _) = h
            .call(form(
                "/ims/revoke/v1",
                &[
                    ("token", token.as_str()),
                    ("client_id", c.client.client_id.as_str()),
                    ("client_secret", c.secret.expose()),
                ],
            ))
            .await;
        assert_eq!(status, StatusCode::OK);
        let (_, xml) = call(
            &app,
            "xtk:session#GetUserInfo",
            info_call.clone(),
            &bearer(&token),
        )
        .await;
        assert_eq!(fault_code(&xml).as_deref(), Some("XSV-350008"), "{xml}");
        // A session opened with a token ends when its credential is disabled.
        let c = h.campaign_credential().await;
        let token = h.token(&c, CAMPAIGN_SCOPES).await;
        let logon = envelope(
            "BearerTokenLogon",
            "xtk:session",
            &format!("<sessiontoken/><bearerToken xsi:type=\"xsd:string\">{token}</bearerToken>"),
        );
        let (_, xml) = call(&app, "xtk:session#BearerTokenLogon", logon, &[]).await;
        let session = vec![("x-session-token", value(&xml, "pstrSessionToken"))];
        let (_, xml) = call(&app, "xtk:session#GetUserInfo", info_call.clone(), &session).await;
        assert!(works(&xml), "{xml}");
        h.creds
            .set_credential_disabled(&c.client.client_id, true, &Context::new(Now::system(), "test"))
            .await
            .unwrap();
        let (_, xml) = call(&app, "xtk:session#GetUserInfo", info_call.clone(), &session).await;
        assert_eq!(fault_code(&xml).as_deref(), Some("XSV-350008"), "{xml}");
        let (_, xml) = call(
            &app,
            "xtk:session#GetUserInfo",
            info_call.clone(),
            &bearer(&token),
        )
        .await;
        assert_eq!(fault_code(&xml).as_deref(), Some("XSV-350008"), "{xml}");
        // The Campaign scope alone (which the I/O Management API grants too) does not open the
        // instance: the credential must be subscribed to the Campaign API.
        let scope = "openid,additional_info.projectedProductContext";
        let io = h
            .credential(&["openid", "additional_info.projectedProductContext"])
            .await;
        let token = h.token(&io, scope).await;
        let (_, xml) = call(&app, "xtk:session#GetUserInfo", info_call, &bearer(&token)).await;
        assert_eq!(fault_code(&xml).as_deref(), Some("XSV-350008"), "{xml}");
    }

    #[tokio::test]
    async fn forged_or_mixed_up_callbacks_and_other_organisations_are_refused() {
        let h = harness().await;
        let (c, _) = with_an_administrator(&h).await;
        // No flow started in this browser, or another state: refused before any exchange.
        let mut b = Browser::default();
        let (status, _, html) = b.get(&c.app, "/console/ims/callback?code=x&state=y").await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert!(html.contains("started in another browser"), "{html}");
        b.get(&c.app, "/console/ims/login").await;
        let (status, _, html) = b.get(&c.app, "/console/ims/callback?code=x&state=forged").await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert!(
            html.contains("started in another browser"),
            "refused for its state: {html}"
        );
        assert!(!b.has("ims_console"));
        // An error from the IMS is shown by its code only.
        let (_, headers, _) = b.get(&c.app, "/console/ims/login").await;
        let state = query_of(&location(&headers))["state"].clone();
        let (status, _, html) = b
            .get(
                &c.app,
                &format!(
                    "/console/ims/callback?state={state}&error=access_denied&error_description=%3Cb%3Eowned"
                ),
            )
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert!(
            html.contains("(access_denied)") && !html.contains("owned"),
            "{html}"
        );
        // An answer naming another issuer (RFC 9207).
        let (_, headers, _) = b.get(&c.app, "/console/ims/login").await;
        let state = query_of(&location(&headers))["state"].clone();
        let (status, _, html) = b
            .get(
                &c.app,
                &format!("/console/ims/callback?state={state}&code=x&iss=https%3A%2F%2Fevil.test"),
            )
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert!(html.contains("another identity service"), "{html}");
        // A code from one sign-in brought back with another's state: the verifier does not
        // match the code's challenge and the IMS refuses it.
        let mut b = Browser::default();
        let (_, headers, _) = b.get(&c.app, "/console/ims/login").await;
        let back = at_the_ims(&h, &mut b, &location(&headers), "jane@acme.test").await;
        let code_of_first = query_of(&back)["code"].clone();
        let (_, headers, _) = b.get(&c.app, "/console/ims/login").await;
        let second_state = query_of(&location(&headers))["state"].clone();
        let (status, _, html) = b
            .get(
                &c.app,
                &format!("/console/ims/callback?code={code_of_first}&state={second_state}"),
            )
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert!(html.contains("refused the sign-in (invalid_grant)"), "{html}");
        assert!(!b.has("ims_console"));
        // The happy path, for contrast.
        let mut b = Browser::default();
        let (status, _, _) = connect_with_ims(&h, &c, &mut b, "jane@acme.test").await;
        assert_eq!(status, StatusCode::SEE_OTHER, "the happy path works here");
        // An instance serving another organisation refuses this organisation's people.
        let ctx = Context::new(Now::system(), "test");
        let other = c.inst.connection().unwrap();
        let conn = Connection::new(
            ImsAccount {
                org_id: "0THER0RG@AdobeOrg".into(),
                ..other.account.clone()
            },
            other.client_id.clone(),
            other.secret().clone(),
            other.http().clone(),
        );
        c.inst.set_connection(Some(conn), &ctx).await.unwrap();
        let mut b = Browser::default();
        let (status, _, html) = connect_with_ims(&h, &c, &mut b, "jane@acme.test").await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert!(html.contains("another organisation"), "{html}");
        let changed = audit(&c.inst, "instance.ims_account").await;
        assert_eq!(changed[0].details["after"]["org_id"], "0THER0RG@AdobeOrg");
        assert!(
            !changed[0].details.to_string().contains(other.secret().expose()),
            "no secret in the audit"
        );
        // Without a configuration, no sign-in through the IMS is offered.
        c.inst.set_connection(None, &ctx).await.unwrap();
        let (_, _, html) = Browser::default().get(&c.app, "/console/login").await;
        assert!(!html.contains("Connect with IMS"));
        let (status, _, _) = Browser::default().get(&c.app, "/console/ims/login").await;
        assert_eq!(status, StatusCode::FORBIDDEN);
    }

    #[tokio::test]
    async fn emails_link_case_variants_but_never_take_over_an_operator() {
        let h = harness().await;
        let c = connected(&h, Db::Sqlite, InstanceKind::Marketing, 60)
            .await
            .unwrap();
        profile(&h, "campaign - prod - deliveryOperators", &[]).await;
        let store = c.inst.store().clone();
        let ctx = Context::new(Now::system(), "test");
        let add = |login: &'static str, email: &'static str, auth: AuthType, ims_id: Option<&'static str>| {
            let store = store.clone();
            let ctx = ctx.clone();
            async move {
                let op = ims_campaign::model::Operator {
                    auth_type: auth,
                    ims_id: ims_id.map(str::to_owned),
                    ..ims_campaign::model::Operator::native(
                        login,
                        Some(email.into()),
                        vec![],
                        None,
                        Now::system(),
                    )
                };
                store
                    .create_operator(&op, &ctx.event("operator.create", login, "success", json!({})))
                    .await
                    .unwrap()
            }
        };
        let ann_id = add("ann", "ANN.Lee@Acme.TEST", AuthType::Ims, None).await;
        add(
            "kim",
            "kim@acme.test",
            AuthType::Ims,
            Some("SOMEONE-ELSE@AdobeID"),
        )
        .await;
        let count = store.operator_count().await.unwrap();
        for email in ["ann.lee@acme.test", "kim@acme.test", "jdoe@example.com"] {
            let u = h.person(email).await;
            membership(&h, &u.user_id, "campaign - prod - deliveryOperators", true).await;
        }
        // A case variant of a verified email links the IMS operator waiting for it.
        let mut b = Browser::default();
        let (status, _, _) = connect_with_ims(&h, &c, &mut b, "ann.lee@acme.test").await;
        assert_eq!(status, StatusCode::SEE_OTHER);
        assert!(home(&c, &mut b)
            .await
            .contains("operator linked to your identity by its email"));
        let ann = store.operator(ann_id).await.unwrap().unwrap();
        assert!(
            ann.ims_id.is_some() && ann.groups == vec!["deliveryOperators"],
            "{ann:?}"
        );
        // An operator linked to another identity is not taken over.
        let mut b = Browser::default();
        let (status, _, html) = connect_with_ims(&h, &c, &mut b, "kim@acme.test").await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert!(html.contains("linked to another identity"), "{html}");
        let kim = store.operator_by_login("kim").await.unwrap().unwrap();
        assert_eq!(kim.ims_id.as_deref(), Some("SOMEONE-ELSE@AdobeID"));
        // A native operator with the email is not switched by a sign-in.
        let (status, _, html) = connect_with_ims(&h, &c, &mut Browser::default(), "jdoe@example.com").await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert!(html.contains("signs in with its login and password"), "{html}");
        let jdoe = store.operator_by_login("jdoe").await.unwrap().unwrap();
        assert_eq!((jdoe.auth_type, jdoe.ims_id), (AuthType::Native, None));
        assert_eq!(
            store.operator_count().await.unwrap(),
            count,
            "no operator created by the refusals"
        );
    }

    fn push_as(token: &str) -> (String, Vec<(&'static str, String)>) {
        let event =
            r#"<rtEvent type="ORDER" email="jane@example.com"><ctx><orderId>1</orderId></ctx></rtEvent>"#;
        (push(event), vec![("authorization", format!("Bearer {token}"))])
    }

    #[tokio::test]
    async fn technical_accounts_get_their_rights_from_their_credential_profiles() {
        let h = harness().await;
        let c = connected(&h, Db::Sqlite, InstanceKind::MessageCenter, 3)
            .await
            .unwrap();
        profile(&h, "campaign - prod - messagecenter", &[]).await;
        let mc = h
            .store
            .groups(&h.org_id)
            .await
            .unwrap()
            .into_iter()
            .map(|(g, _)| g)
            .find(|g| g.name == "campaign - prod - messagecenter")
            .unwrap();
        let with = h.campaign_credential().await;
        let without = h.campaign_credential().await;
        let ctx = Context::new(Now::system(), "test");
        h.state
            .ims
            .set_profile_credential(&h.org_id, &mc, &with.client.client_id, true, &ctx)
            .await
            .unwrap();
        let push = |token: String| {
            let app = c.app.clone();
            async move {
                let (body, headers) = push_as(&token);
                call(&app, "nms:rtEvent#PushEvent", body, &headers).await.1
            }
        };
        let with_token = h.token(&with, CAMPAIGN_SCOPES).await;
        let xml = push(with_token.clone()).await;
        assert!(
            xml.contains("<plId"),
            "the Message Center profile grants PushEvent: {xml}"
        );
        let op = c
            .inst
            .store()
            .operator_by_ims_id(&with.client.technical_account_id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(op.groups, vec!["messageCenterAgents"]);
        let without_token = h.token(&without, CAMPAIGN_SCOPES).await;
        let xml = push(without_token.clone()).await;
        assert_eq!(
            fault_code(&xml).as_deref(),
            Some("XSV-350122"),
            "a rights fault: {xml}"
        );
        let op = c
            .inst
            .store()
            .operator_by_ims_id(&without.client.technical_account_id)
            .await
            .unwrap()
            .unwrap();
        assert!(
            op.groups.is_empty(),
            "no default groups once profiles decide: {op:?}"
        );
        // The profile given: within the bound (one second here), the next call succeeds; before
        // it, the instance still goes by what it read.
        h.state
            .ims
            .set_profile_credential(&h.org_id, &mc, &without.client.client_id, true, &ctx)
            .await
            .unwrap();
        let xml = push(without_token.clone()).await;
        assert_eq!(
            fault_code(&xml).as_deref(),
            Some("XSV-350122"),
            "read less than three seconds ago"
        );
        tokio::time::sleep(std::time::Duration::from_millis(3100)).await;
        let xml = push(without_token.clone()).await;
        assert!(xml.contains("<plId"), "{xml}");
        let synced = audit(&c.inst, "operator.ims_sync").await;
        assert!(synced.iter().any(|e| e.actor
            == format!("technical-account:{}", without.client.technical_account_id)
            && e.details["changes"]["groups_added"] == json!(["messageCenterAgents"])));
        // Taken away again: refused after the bound.
        h.state
            .ims
            .set_profile_credential(&h.org_id, &mc, &without.client.client_id, false, &ctx)
            .await
            .unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(3100)).await;
        let xml = push(without_token).await;
        assert_eq!(fault_code(&xml).as_deref(), Some("XSV-350122"), "{xml}");
        // The credential disabled at the IMS: its token still verifies here (offline), but the next
        // reading of its profiles is refused, which takes its rights away and refuses the call.
        h.creds
            .set_credential_disabled(&with.client.client_id, true, &ctx)
            .await
            .unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(3100)).await;
        let xml = push(with_token.clone()).await;
        assert_eq!(fault_code(&xml).as_deref(), Some("XSV-350008"), "{xml}");
        let op = c
            .inst
            .store()
            .operator_by_ims_id(&with.client.technical_account_id)
            .await
            .unwrap()
            .unwrap();
        assert!(op.groups.is_empty(), "{op:?}");
        // A token of another organisation than the instance's is refused outright.
        let conn = c.inst.connection().unwrap();
        let other = Connection::new(
            ImsAccount {
                org_id: "0THER0RG@AdobeOrg".into(),
                ..conn.account.clone()
            },
            conn.client_id.clone(),
            conn.secret().clone(),
            conn.http().clone(),
        );
        c.inst.set_connection(Some(other), &ctx).await.unwrap();
        let xml = push(with_token).await;
        assert!(xml.contains("another organisation"), "{xml}");
    }

    #[tokio::test]
    async fn the_checklist_says_which_rule_fails_and_how_to_fix_it() {
        use ims_campaign::diagnose::{diagnose, Status};
        let h = harness().await;
        let c = connected(&h, Db::Sqlite, InstanceKind::Marketing, 60)
            .await
            .unwrap();
        let groups = c.inst.store().groups().await.unwrap();
        let conn = c.inst.connection().unwrap();
        let with = |f: &dyn Fn(&mut ImsAccount), secret: Option<&str>| {
            let mut a = conn.account.clone();
            f(&mut a);
            Connection::new(
                a,
                conn.client_id.clone(),
                secret.map_or_else(|| conn.secret().clone(), Secret::new),
                conn.http().clone(),
            )
        };
        let failing = |r: &ims_campaign::diagnose::Report| -> Vec<&'static str> {
            r.checks
                .iter()
                .filter(|c| c.status == Status::Fail)
                .map(|c| c.rule)
                .collect()
        };
        // No profile yet: only the mask fails, with its fix.
        let r = diagnose(&conn, "prod", &groups).await;
        assert_eq!(failing(&r), vec!["mask"], "{r:?}");
        assert!(r.checks[6]
            .fix
            .as_deref()
            .unwrap()
            .contains("campaign - prod - (.*)"));
        // A profile naming no group here fails it too, naming the group.
        profile(&h, "campaign - prod - ghosts", &[]).await;
        let r = diagnose(&conn, "prod", &groups).await;
        assert!(r.checks[6].detail.contains("\"ghosts\""), "{r:?}");
        // All pass once the profiles name groups; "admin" in a name is warned about.
        h.store
            .apply_changes(
                &h.org_id,
                &[Change::DeleteGroup {
                    name: "campaign - prod - ghosts".into(),
                }],
                &[],
            )
            .await
            .unwrap();
        profile(&h, "campaign - prod - Administrator", &["admin"]).await;
        let r = diagnose(&conn, "prod", &groups).await;
        assert!(r.passed(), "{r:?}");
        assert_eq!(r.admin_profiles, vec!["campaign - prod - Administrator"]);
        // A wrong secret: the client rule fails and the rest is not checked.
        let r = diagnose(&with(&|_| {}, Some("wrong")), "prod", &groups).await;
        assert_eq!(failing(&r), vec!["client"]);
        assert!(r.checks[3..].iter().all(|c| c.status == Status::Skipped));
        // An unreachable IMS.
        let r = diagnose(
            &with(&|a| a.url = "https://elsewhere.test".into(), None),
            "prod",
            &groups,
        )
        .await;
        assert_eq!(failing(&r), vec!["issuer"]);
        // A callback the client does not have, scopes it may not ask for, another context.
        let r = diagnose(
            &with(
                &|a| {
                    a.callback_url = "http://127.0.0.1:2/console/ims/callback".into();
                    a.scopes.push("user_management_sdk".into());
                    a.product_context = "another_product".into();
                },
                None,
            ),
            "prod",
            &groups,
        )
        .await;
        assert_eq!(
            failing(&r),
            vec!["product_context", "callback", "scopes", "mask"],
            "{r:?}"
        );
        assert!(r.checks[5].detail.contains("user_management_sdk"));
        // The client registration endpoint: its own credentials only.
        let (status, headers, _) = h
            .call(Request::get("/ims/client/v1").body(Body::empty()).unwrap())
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert!(headers.contains_key("www-authenticate"));
        let machine = h.credential(&["openid"]).await;
        let (status, _, body) = h
            .call(
                Request::get("/ims/client/v1?product_context=dma_campaign_classic")
                    .header(
                        "authorization",
                        basic(&machine.client.client_id, machine.secret.expose()),
                    )
                    .body(Body::empty())
                    .unwrap(),
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        assert!(
            body.get("product_profiles").is_none(),
            "a technical account reads no profiles: {body}"
        );
        // The console page: administrators only, with the checklist and the warning.
        profile(&h, "campaign - prod - deliveryOperators", &[]).await;
        let jane = h.person("jane@acme.test").await;
        membership(&h, &jane.user_id, "campaign - prod - Administrator", true).await;
        let mut b = Browser::default();
        connect_with_ims(&h, &c, &mut b, "jane@acme.test").await;
        let (status, _, html) = b.get(&c.app, "/console/ims").await;
        assert_eq!(status, StatusCode::OK);
        assert!(
            html.contains("id=\"checklist\"") && !html.contains("<strong>Fail</strong>"),
            "{html}"
        );
        assert!(
            html.contains("Control Panel") && html.contains(&c.client_id),
            "{html}"
        );
        membership(&h, &jane.user_id, "campaign - prod - Administrator", false).await;
        membership(&h, &jane.user_id, "campaign - prod - deliveryOperators", true).await;
        let mut b = Browser::default();
        connect_with_ims(&h, &c, &mut b, "jane@acme.test").await;
        let (status, _, _) = b.get(&c.app, "/console/ims").await;
        assert_eq!(status, StatusCode::FORBIDDEN);
    }

    #[tokio::test]
    async fn signing_out_at_the_ims_ends_the_instance_session() {
        let h = harness().await;
        let (c, _) = with_an_administrator(&h).await;
        let mut b = Browser::default();
        connect_with_ims(&h, &c, &mut b, "jane@acme.test").await;
        home(&c, &mut b).await;
        // Another person's instance session is not touched.
        let kim = h.person("kim@acme.test").await;
        membership(&h, &kim.user_id, "campaign - prod - Administrator", true).await;
        let mut kb = Browser::default();
        connect_with_ims(&h, &c, &mut kb, "kim@acme.test").await;
        // Jane signs out at the IMS (its confirmation form).
        let (_, _, html) = b.get(&h.app, "/ims/logout/v1").await;
        let (status, _, _) = b
            .post(&h.app, "/ims/logout/v1", &[("csrf", &csrf_in(&html))])
            .await;
        assert!(status.is_redirection() || status == StatusCode::OK, "{status}");
        let (status, headers, _) = b.get(&c.app, "/console/").await;
        assert_eq!(
            (status, location(&headers)),
            (StatusCode::SEE_OTHER, "/console/login".into()),
            "the instance session ended with it"
        );
        home(&c, &mut kb).await;
        let told = h.audit("user.sign_out").await;
        assert_eq!(
            told[0].details["clients_told"],
            json!({c.client_id.clone(): "delivered"})
        );
        let ended = audit(&c.inst, "operator.ims_logout").await;
        assert_eq!(
            (
                ended[0].target.as_str(),
                ended[0].details["sessions_ended"].as_u64()
            ),
            ("jane@acme.test", Some(1))
        );
        // What is not a logout token for this instance is refused, and ends nothing: among
        // them this very client's ID token (right issuer, audience and signature).
        let machine = h.credential(&["openid"]).await;
        let access_token = h.token(&machine, "openid").await;
        let mut kb2 = kb.clone();
        let (_, headers, _) = kb2.get(&c.app, "/console/ims/login").await;
        let (_, headers, _) = kb2
            .get(&h.app, location(&headers).strip_prefix(ISSUER).unwrap())
            .await;
        let code = query_of(&location(&headers))["code"].clone();
        let flow = kb2
            .cookies
            .iter()
            .find(|(k, _)| k == "ims_console_flow")
            .unwrap()
            .1
            .clone();
        let verifier = flow.split('.').nth(2).unwrap().to_owned();
        let conn = c.inst.connection().unwrap();
        let (status, _, tokens) = h
            .call(
                Request::post("/ims/token/v3")
                    .header("content-type", "application/x-www-form-urlencoded")
                    .header("authorization", basic(&conn.client_id, conn.secret().expose()))
                    .body(Body::from(encode(&[
                        ("grant_type", "authorization_code"),
                        ("code", &code),
                        ("redirect_uri", CALLBACK),
                        ("code_verifier", &verifier),
                    ])))
                    .unwrap(),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{tokens}");
        let id_token = tokens["id_token"].as_str().unwrap().to_owned();
        for token in ["", "garbage", access_token.as_str(), id_token.as_str()] {
            let resp = c
                .app
                .clone()
                .oneshot(
                    Request::post("/console/ims/backchannel-logout")
                        .header("content-type", "application/x-www-form-urlencoded")
                        .body(Body::from(encode(&[("logout_token", token)])))
                        .unwrap(),
                )
                .await
                .unwrap();
            assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{token:.10}");
            assert_eq!(resp.headers()["cache-control"], "no-store");
        }
        home(&c, &mut kb).await;
    }

    /// An IMS that says emails are not verified: its tokens re-signed with a key of its own
    /// (which it publishes) with `email_verified: false`, the real IMS behind it.
    struct UnverifiedEmails {
        inner: InProcessIms,
        ring: ims_core::keys::KeyRing,
        /// Re-signed access token -> the real one (for the profile endpoint).
        originals: std::sync::Mutex<std::collections::HashMap<String, String>>,
    }

    impl UnverifiedEmails {
        fn new(app: Router) -> Self {
            let master = MasterKey::generate();
            let now = Now::system();
            let key = ims_core::keys::generate(Algorithm::RS256, &master, now, now).unwrap();
            UnverifiedEmails {
                inner: InProcessIms(app),
                ring: ims_core::keys::KeyRing::load(vec![key], &master, None).unwrap(),
                originals: Default::default(),
            }
        }

        fn resign(&self, token: &str, change: impl Fn(&mut Value)) -> String {
            let mut claims = super::people::claims(token);
            change(&mut claims);
            let signer = self.ring.signer(Algorithm::RS256, Now::system()).unwrap();
            ims_core::jose::sign(&claims, signer).unwrap()
        }
    }

    #[async_trait::async_trait]
    impl ImsHttp for UnverifiedEmails {
        async fn get(&self, url: &str, bearer: Option<&str>) -> Result<(u16, Value), String> {
            if url.ends_with("/ims/keys") {
                return Ok((200, self.ring.jwks(Now::system(), 3600)));
            }
            let real = bearer.map(|b| {
                self.originals
                    .lock()
                    .unwrap()
                    .get(b)
                    .cloned()
                    .unwrap_or_else(|| b.to_owned())
            });
            self.inner.get(url, real.as_deref()).await
        }

        async fn get_basic(&self, url: &str, id: &str, secret: &str) -> Result<(u16, Value), String> {
            self.inner.get_basic(url, id, secret).await
        }

        async fn post_form(
            &self,
            url: &str,
            basic_auth: Option<(&str, &str)>,
            pairs: &[(&str, &str)],
        ) -> Result<(u16, Value), String> {
            let (status, mut body) = self.inner.post_form(url, basic_auth, pairs).await?;
            if status == 200 && url.ends_with("/ims/token/v3") {
                let id = body["id_token"].as_str().unwrap().to_owned();
                let access = body["access_token"].as_str().unwrap().to_owned();
                body["id_token"] = json!(self.resign(&id, |c| c["email_verified"] = json!(false)));
                let resigned = self.resign(&access, |_| {});
                self.originals.lock().unwrap().insert(resigned.clone(), access);
                body["access_token"] = json!(resigned);
            }
            Ok((status, body))
        }
    }

    #[tokio::test]
    async fn an_unverified_email_never_links_an_operator() {
        let h = harness().await;
        let http = Arc::new(UnverifiedEmails::new(h.app.clone()));
        let c = connected_via(&h, Db::Sqlite, InstanceKind::Marketing, 60, http)
            .await
            .unwrap();
        profile(&h, "campaign - prod - deliveryOperators", &[]).await;
        let store = c.inst.store().clone();
        let ctx = Context::new(Now::system(), "test");
        let waiting = ims_campaign::model::Operator {
            auth_type: AuthType::Ims,
            ..ims_campaign::model::Operator::native(
                "ann",
                Some("Ann@Acme.test".into()),
                vec![],
                None,
                Now::system(),
            )
        };
        let ann_id = store
            .create_operator(
                &waiting,
                &ctx.event("operator.create", "ann", "success", json!({})),
            )
            .await
            .unwrap();
        for email in ["ann@acme.test", "new@acme.test"] {
            let u = h.person(email).await;
            membership(&h, &u.user_id, "campaign - prod - deliveryOperators", true).await;
        }
        let (status, _, html) = connect_with_ims(&h, &c, &mut Browser::default(), "ann@acme.test").await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert!(html.contains("does not mark it verified"), "{html}");
        let ann = store.operator(ann_id).await.unwrap().unwrap();
        assert_eq!(
            (ann.ims_id, ann.groups.len()),
            (None, 0),
            "not linked, nothing granted"
        );
        // Someone whose email no operator uses still gets an operator of their own.
        let (status, _, _) = connect_with_ims(&h, &c, &mut Browser::default(), "new@acme.test").await;
        assert_eq!(status, StatusCode::SEE_OTHER);
        // ... named by the identity, not by an email nobody vouched for.
        assert!(store.operator_by_login("new@acme.test").await.unwrap().is_none());
        let created = store.operators_page(Some("AdobeID"), 0, 10).await.unwrap().0;
        let new = created
            .iter()
            .find(|o| o.auth_type == AuthType::Ims)
            .expect("created");
        assert_eq!(new.email, None);
    }
}

mod migration_api {
    use super::instance::{add_like_jdoe, instance_on, session_of};
    use super::restrictions::finish;
    use super::*;
    use ims_campaign::service::InstanceKind;
    use ims_http::campaign::{router, InstanceState};
    use ims_wire::migration::{InstanceFacts, OperatorPage};

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

    #[tokio::test]
    async fn administrators_read_the_instance_and_every_operator_with_its_evidence() {
        for db in [Db::Sqlite, Db::Postgres] {
            let Some((inst, _dir, cleanup)) = instance_on(db, "7.4.1", InstanceKind::Marketing).await else {
                continue;
            };
            let inst = Arc::new(inst);
            add_like_jdoe(inst.store(), "boss", &["admin"]).await;
            let app = router(InstanceState {
                instance: inst.clone(),
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
        let mut b = Request::post(format!("/nl/migration/v1/emails{query}"))
            .header("content-type", "application/json");
        for (k, v) in session {
            b = b.header(*k, v);
        }
        let (status, _, body) = send(app, b.body(Body::from(body.to_string())).unwrap()).await;
        (status, body)
    }

    #[tokio::test]
    async fn emails_are_checked_whole_against_every_operator_before_any_is_written() {
        for db in [Db::Sqlite, Db::Postgres] {
            let Some((inst, _dir, cleanup)) = instance_on(db, "7.4.1", InstanceKind::Marketing).await else {
                continue;
            };
            let inst = Arc::new(inst);
            add_like_jdoe(inst.store(), "boss", &["admin"]).await;
            add_like_jdoe(inst.store(), "kim", &[]).await;
            let app = router(InstanceState {
                instance: inst.clone(),
                tls: false,
            });
            let boss = session_of(&app, "boss").await;
            let email_of = |login: &'static str| {
                let inst = inst.clone();
                async move {
                    inst.store()
                        .operator_by_login(login)
                        .await
                        .unwrap()
                        .unwrap()
                        .email
                }
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
            let Some((inst, _dir, cleanup)) = instance_on(db, "7.4.1", InstanceKind::Marketing).await else {
                continue;
            };
            let inst = Arc::new(inst);
            add_like_jdoe(inst.store(), "boss", &["admin"]).await;
            add_like_jdoe(inst.store(), "kim", &[]).await;
            let app = router(InstanceState {
                instance: inst.clone(),
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
                let mut b =
                    Request::post("/nl/migration/v1/switch").header("content-type", "application/json");
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
            let (_, xml) = super::instance::call(
                &app,
                "xtk:session#GetUserInfo",
                super::instance::envelope("GetUserInfo", "xtk:session", "<sessiontoken/>"),
                &jdoe_session,
            )
            .await;
            assert_eq!(super::instance::fault_code(&xml).as_deref(), Some("XSV-350008"));
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
            let out =
                switch(json!({"to": "native", "operators": [{"login": "jdoe", "state": jdoe_now}]})).await;
            assert_eq!(out[0].1, "switched", "{out:?}");
            let jdoe = &states().await["jdoe"].1;
            assert_eq!(
                (jdoe.auth_type.as_str(), jdoe.ims_id.as_deref()),
                ("native", None)
            );
            let (_, xml) = super::instance::call(
                &app,
                "xtk:session#Logon",
                super::instance::logon_body("jdoe", super::instance::PASSWORD),
                &[],
            )
            .await;
            assert_eq!(
                super::instance::fault_code(&xml),
                None,
                "jdoe signs in natively again"
            );

            // Locked down: no way back.
            let jdoe_state = states().await["jdoe"].0.clone();
            switch(json!({"to": "ims", "operators": [{"login": "jdoe", "ims_id": "U1@AdobeID", "state": jdoe_state}]})).await;
            inst.apply_switches(
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
            let out =
                switch(json!({"to": "native", "operators": [{"login": "jdoe", "state": jdoe_now}]})).await;
            assert_eq!(out[0].1, "refused");
            assert!(out[0].2.contains("locked down"), "{out:?}");
            let migrated: Vec<String> = {
                inst.store()
                    .audit(&ims_core::audit::AuditQuery {
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
            let Some((inst, _dir, cleanup)) = instance_on(db, "7.4.1", InstanceKind::Marketing).await else {
                continue;
            };
            let inst = Arc::new(inst);
            add_like_jdoe(inst.store(), "boss", &["admin"]).await;
            let app = router(InstanceState {
                instance: inst.clone(),
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
            assert!(!inst
                .store()
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
            assert!(!inst
                .store()
                .groups()
                .await
                .unwrap()
                .iter()
                .any(|g| g.name == "rights-export"));
            let (_, out) = post("", good.clone()).await;
            assert_eq!(out["added"], json!([["jdoe", "rights-export"]]));
            let jdoe = inst.store().operator_by_login("jdoe").await.unwrap().unwrap();
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
        use super::instance::{console_sign_in, cookie_value, page, set_cookie, PASSWORD};
        use ims_wire::migration::{state_digest, OperatorPage};
        let Some((inst, _dir, cleanup)) = instance_on(Db::Sqlite, "7.4.1", InstanceKind::Marketing).await
        else {
            return;
        };
        let inst = Arc::new(inst);
        add_like_jdoe(inst.store(), "boss", &["admin"]).await;
        add_like_jdoe(inst.store(), "kim", &[]).await;
        let lee = add_like_jdoe(inst.store(), "lee", &["deliveryOperators"]).await;
        let mut op = inst.store().operator(lee).await.unwrap().unwrap();
        op.email = Some("lee at example.com".into());
        inst.store()
            .update_operator(
                &op,
                false,
                &ims_core::audit::Context::new(ims_core::Now::from_millis(1), "test").event(
                    "operator.update",
                    "lee",
                    "success",
                    json!({}),
                ),
            )
            .await
            .unwrap();
        let app = router(InstanceState {
            instance: inst.clone(),
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
        let (_, headers, _) = console_sign_in(&app, "kim", PASSWORD).await;
        let kim = format!(
            "ims_console={}",
            cookie_value(set_cookie(&headers, "ims_console").unwrap())
        );
        let (status, _, _) = page(&app, "GET", "/console/migration", &kim, &[]).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        let (_, headers, _) = console_sign_in(&app, "boss", PASSWORD).await;
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
        use super::instance::{console_sign_in, cookie_value, set_cookie, PASSWORD};
        let (_, headers, _) = console_sign_in(app, login, PASSWORD).await;
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
        use super::instance::{csrf_in, page};
        use ims_core::audit::AuditQuery;
        const PATH: &str = "/console/migration/emails";
        for db in [Db::Sqlite, Db::Postgres] {
            let Some((inst, _dir, cleanup)) = instance_on(db, "7.4.1", InstanceKind::Marketing).await else {
                continue;
            };
            let inst = Arc::new(inst);
            // boss and kim are made like jdoe, its email included: the three share it.
            add_like_jdoe(inst.store(), "boss", &["admin"]).await;
            add_like_jdoe(inst.store(), "kim", &[]).await;
            let mut lee = inst.store().operator_by_login("jdoe").await.unwrap().unwrap();
            lee.login = "lee".into();
            lee.label = "<b>Lee</b>".into();
            lee.email = None;
            let ctx = ims_core::audit::Context::new(Now::from_millis(0), "test");
            inst.store()
                .create_operator(&lee, &ctx.event("operator.create", "lee", "success", json!({})))
                .await
                .unwrap();
            let app = router(InstanceState {
                instance: inst.clone(),
                tls: false,
            });
            let email_of = |login: &'static str| {
                let inst = inst.clone();
                async move {
                    inst.store()
                        .operator_by_login(login)
                        .await
                        .unwrap()
                        .unwrap()
                        .email
                }
            };
            // The operator changes boss made: (target, changed fields).
            let changes_by_boss = || {
                let inst = inst.clone();
                async move {
                    let mut out: Vec<(String, Value)> = inst
                        .store()
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
            };

            // Someone without ADMINISTRATION can neither read nor post.
            let kim = console_cookie(&app, "kim").await;
            let (status, _, _) = page(&app, "GET", PATH, &kim, &[]).await;
            assert_eq!(status, StatusCode::FORBIDDEN);
            let kim_csrf = csrf_in(&page(&app, "GET", "/console/", &kim, &[]).await.2);
            let (status, _, _) = page(
                &app,
                "POST",
                PATH,
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
            assert_eq!(email_of("lee").await, None);

            // The administrator reaches it from the migration page: who blocks and why, markup
            // shown as text.
            let boss = console_cookie(&app, "boss").await;
            let (_, _, html) = page(&app, "GET", "/console/migration", &boss, &[]).await;
            assert!(html.contains(r#"href="/console/migration/emails""#), "{html}");
            let (status, headers, html) = page(&app, "GET", PATH, &boss, &[]).await;
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
            // The rows as the browser posts them, in the page's order.
            let rows = |csrf: &str, action: &str, typed: [&str; 4]| -> Vec<(String, String)> {
                let mut f = vec![("csrf".to_owned(), csrf.to_owned())];
                for (login, email) in ["jdoe", "boss", "kim", "lee"].into_iter().zip(typed) {
                    f.push(("login".into(), login.into()));
                    f.push(("email".into(), email.into()));
                }
                f.push(("action".into(), action.into()));
                f
            };
            let post = |form: Vec<(String, String)>| {
                let (app, boss) = (app.clone(), boss.clone());
                async move {
                    let pairs: Vec<(&str, &str)> =
                        form.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                    page(&app, "POST", PATH, &boss, &pairs).await
                }
            };

            // Without the form's token, or with another's, nothing is written.
            let good = ["", "", "kim@example.com", "lee@example.com"];
            let mut forged = rows("", "save", good);
            forged.remove(0);
            let (status, _, _) = post(forged).await;
            assert_eq!(status, StatusCode::FORBIDDEN);
            let (status, _, _) = post(rows(&kim_csrf, "save", good)).await;
            assert_eq!(status, StatusCode::FORBIDDEN);
            assert_eq!(email_of("lee").await, None);

            // A check: an address the IMS refuses, markup, and jdoe's email in another case. Every
            // problem at its row, what was typed kept (escaped), nothing written.
            let typed = [
                "",
                r#""><script>alert(1)</script>"#,
                "JDOE@Example.com",
                "lee@example",
            ];
            let (status, _, html) = post(rows(&csrf, "check", typed)).await;
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
            let (status, _, html) = post(rows(
                &csrf,
                "save",
                ["", "", "Lee@Example.com", "lee@example.com"],
            ))
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
            assert_eq!(email_of("kim").await.as_deref(), Some("jdoe@example.com"));
            assert_eq!(email_of("lee").await, None);
            // A check that passes says what saving would change, and still writes nothing.
            let (status, _, html) = post(rows(&csrf, "check", good)).await;
            assert_eq!(status, StatusCode::OK, "{html}");
            assert!(
                html.contains("Saving would change")
                    && html.contains("<td>lee</td><td>none</td><td>lee@example.com</td>")
                    && email_row(&html, "lee").contains(r#"value="lee@example.com""#),
                "{html}"
            );
            assert_eq!(email_of("lee").await, None);
            assert_eq!(changes_by_boss().await, vec![]);

            // Saved: written through the operators' path and audited as the API does; the page
            // shows what changed and who still blocks (jdoe and boss still share an email).
            let (status, _, html) = post(rows(&csrf, "save", good)).await;
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
            assert_eq!(email_of("lee").await.as_deref(), Some("lee@example.com"));
            assert_eq!(email_of("kim").await.as_deref(), Some("kim@example.com"));
            assert_eq!(
                changes_by_boss().await,
                vec![
                    ("kim".to_owned(), json!(["email"])),
                    ("lee".to_owned(), json!(["email"]))
                ]
            );
            finish(cleanup).await;
        }
    }
}

/// A handler that panics costs its request a 500; the connection's next request, other
/// connections and the listener go on.
#[tokio::test]
async fn a_panicking_handler_answers_500_and_the_server_goes_on() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    #[allow(clippy::panic)]
    async fn broken() -> &'static str {
        panic!("a bug in a handler")
    }
    let app = Router::new()
        .route("/broken", axum::routing::get(broken))
        .route("/fine", axum::routing::get(|| async { "fine" }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(ims_http::serve::serve(listener, app, None, async {
        let _ = stopped.await;
    }));
    let ask = |path: &'static str| async move {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(format!("GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    };
    for _ in 0..3 {
        let answer = ask("/broken").await;
        assert!(answer.starts_with("HTTP/1.1 500"), "{answer}");
        assert!(answer.contains("server_error"), "{answer}");
        let answer = ask("/fine").await;
        assert!(
            answer.starts_with("HTTP/1.1 200") && answer.ends_with("fine"),
            "{answer}"
        );
    }
    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
}
