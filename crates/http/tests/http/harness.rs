//! What the HTTP tests share: an IMS on SQLite or PostgreSQL behind its routers, requests and
//! their answers, and (in the submodules) Campaign instances, people's browsers, the directory, the
//! Developer Console and instances connected to the IMS.

mod connect;
mod developer;
mod directory;
mod instance;
mod people;

pub(crate) use connect::*;
pub(crate) use developer::*;
pub(crate) use directory::*;
pub(crate) use instance::*;
pub(crate) use people::*;

use axum::body::Body;
use axum::Router;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use http::{Request, StatusCode};
use http_body_util::BodyExt as _;
use serde_json::Value;
use std::sync::Arc;
use tower::ServiceExt as _;

use ims_core::audit::Context;
use ims_core::keys::{Algorithm, MasterKey};
use ims_core::secret::Secret;
use ims_core::Now;
use ims_http::{ops_router, public_router, AppState, Metrics};
use ims_identity::credentials::{Credentials, NewSecret};
use ims_identity::service::{self, Ims, Settings};
use ims_identity::store::{AuditQuery, AuditStore};
use ims_store::{Options, SqlStore};

pub(crate) const ISSUER: &str = "https://ims.test";

pub(crate) const ADMIN_PASSWORD: &str = "correct horse battery staple";

pub(crate) struct Harness {
    pub(crate) app: Router,
    pub(crate) ops: Router,
    pub(crate) state: AppState,
    pub(crate) store: Arc<SqlStore>,
    pub(crate) creds: Credentials,
    pub(crate) org_id: String,
    pub(crate) master: MasterKey,
    pub(crate) schema: Option<String>,
    pub(crate) _dir: tempfile::TempDir,
}

#[derive(Clone, Copy, Debug)]
pub(crate) enum Db {
    Sqlite,
    Postgres,
}

/// The scopes a Campaign API integration asks for.
pub(crate) const CAMPAIGN_SCOPES: &str = "openid,AdobeID,additional_info.projectedProductContext";

pub(crate) fn settings(alg: Algorithm) -> Settings {
    let mut s = Settings::new(ISSUER);
    s.signing_alg = alg;
    s.access_token_secs = 3600;
    s
}

/// Store options on `db`: a file under `dir`, or a fresh schema of the test PostgreSQL (`None`
/// when the run skips PostgreSQL, said loudly).
pub(crate) fn db_options(db: Db, dir: &std::path::Path) -> Option<(Options, Option<String>)> {
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

pub(crate) async fn harness_on(db: Db, alg: Algorithm) -> Option<Harness> {
    harness_with(db, settings(alg)).await
}

pub(crate) async fn harness_with(db: Db, settings: Settings) -> Option<Harness> {
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
    let ims = Ims::start(Arc::<SqlStore>::clone(&store), master.clone(), settings, &ctx)
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
        creds: Credentials::new(Arc::<SqlStore>::clone(&store), "ims.test"),
        store,
        org_id: org.org_id,
        master,
        schema,
        _dir: dir,
    })
}

pub(crate) async fn harness() -> Harness {
    harness_on(Db::Sqlite, Algorithm::ES256).await.unwrap()
}

impl Harness {
    pub(crate) async fn cleanup(self) {
        if let Some(s) = &self.schema {
            self.store.drop_schema(s).await.unwrap();
        }
    }

    pub(crate) async fn credential(&self, scopes: &[&str]) -> NewSecret {
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
    pub(crate) async fn campaign_credential(&self) -> NewSecret {
        let ctx = Context::new(Now::system(), "test");
        let campaign =
            ims_identity::developer::Service::by_code(ims_identity::developer::CAMPAIGN_SERVICE).unwrap();
        self.creds
            .create_credential(&self.org_id, "integration", vec![], &[campaign], &ctx)
            .await
            .unwrap()
    }

    pub(crate) async fn call(&self, req: Request<Body>) -> (StatusCode, http::HeaderMap, Value) {
        send(&self.app, req).await
    }

    /// A client_credentials request for `id` / `secret`, plus any other parameters.
    pub(crate) async fn cc(
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

    pub(crate) async fn token(&self, c: &NewSecret, scope: &str) -> String {
        let (status, _, body) = self
            .cc(&c.client.client_id, c.secret.expose(), &[("scope", scope)])
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["access_token"].as_str().unwrap().to_owned()
    }

    pub(crate) async fn audit(&self, prefix: &str) -> Vec<ims_core::audit::AuditEvent> {
        self.store
            .audit(&AuditQuery {
                action_prefix: Some(prefix.into()),
                limit: 1000,
            })
            .await
            .unwrap()
    }
}

pub(crate) async fn send(app: &Router, req: Request<Body>) -> (StatusCode, http::HeaderMap, Value) {
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    let body = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    (status, headers, body)
}

pub(crate) fn encode(pairs: &[(&str, &str)]) -> String {
    url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

pub(crate) fn form(path: &str, pairs: &[(&str, &str)]) -> Request<Body> {
    Request::post(path)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Body::from(encode(pairs)))
        .unwrap()
}

pub(crate) fn basic(id: &str, secret: &str) -> String {
    format!("Basic {}", STANDARD.encode(format!("{id}:{secret}")))
}

pub(crate) fn claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

pub(crate) fn header(token: &str) -> Value {
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(token.split('.').next().unwrap()).unwrap()).unwrap()
}

pub(crate) fn get_bearer(path: &str, auth: &str) -> Request<Body> {
    Request::get(path)
        .header("authorization", auth)
        .body(Body::empty())
        .unwrap()
}

/// The IMS's keys, read in-process (the server reads them over HTTPS).
pub(crate) struct ImsKeys(pub(crate) Arc<Ims>);

#[async_trait::async_trait]
impl ims_campaign::bearer::JwksSource for ImsKeys {
    async fn fetch(&self) -> Result<Value, String> {
        self.0
            .tokens()
            .jwks(Now::system())
            .await
            .map_err(|e| e.to_string())
    }
}

pub(crate) fn csrf_in(html: &str) -> String {
    let at = html
        .find(r#"name="csrf" value=""#)
        .expect("a form with a csrf field")
        + 19;
    html[at..].split('"').next().unwrap().to_owned()
}
