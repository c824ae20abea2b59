//! What every storage test shares: a store on each backend, a fixed clock, audit events and a
//! seeded organisation.

use ims_core::audit::{AuditEvent, Context};
use ims_core::Now;
use ims_identity::model::{ClientSecretRecord, OAuthClient, Organization, User};
use ims_identity::store::{ClientStore, OrgStore};
use ims_store::{Options, SqlStore};
use serde_json::json;

const DEFAULT_PG: &str = "postgres://postgres@127.0.0.1:5432/test";

pub(crate) struct Fixture {
    pub(crate) store: SqlStore,
    pub(crate) url: String,
    pub(crate) schema: Option<String>,
    pub(crate) _dir: Option<tempfile::TempDir>,
}

impl Fixture {
    /// Runs a statement on a connection of its own, outside the store's API.
    pub(crate) async fn raw(&self, sql: &str) -> Result<(), sqlx::Error> {
        use sqlx::Connection as _;
        sqlx::any::install_default_drivers();
        let mut conn = sqlx::AnyConnection::connect(&self.url).await?;
        if let Some(schema) = &self.schema {
            sqlx::query(&format!("SET search_path TO {schema}"))
                .execute(&mut conn)
                .await?;
        }
        sqlx::query(sql).execute(&mut conn).await?;
        Ok(())
    }

    pub(crate) async fn cleanup(self) {
        if let Some(schema) = &self.schema {
            self.store.drop_schema(schema).await.unwrap();
        }
        self.store.close().await;
    }
}

pub(crate) fn now() -> Now {
    Now::from_millis(1_750_000_000_000)
}

pub(crate) fn pg_url() -> Option<String> {
    match std::env::var("TEST_POSTGRES_URL") {
        Ok(v) if v == "skip" => {
            eprintln!("!!! SKIPPED: PostgreSQL storage tests (TEST_POSTGRES_URL=skip)");
            None
        }
        Ok(v) => Some(v),
        Err(_) => Some(DEFAULT_PG.to_owned()),
    }
}

pub(crate) async fn sqlite() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("ims.db").display());
    let store = SqlStore::open(&Options::new(url.clone()), now()).await.unwrap();
    Fixture {
        store,
        url,
        schema: None,
        _dir: Some(dir),
    }
}

pub(crate) fn fresh_schema() -> String {
    format!("t_{}", ims_core::secret::random_hex(8))
}

pub(crate) async fn postgres() -> Option<Fixture> {
    let url = pg_url()?;
    let schema = fresh_schema();
    let mut opts = Options::new(url.clone());
    opts.schema = Some(schema.clone());
    opts.max_connections = 4;
    let store = SqlStore::open(&opts, now()).await.unwrap_or_else(|e| {
        panic!("PostgreSQL is required for this suite (set TEST_POSTGRES_URL=skip to skip): {e}")
    });
    Some(Fixture {
        store,
        url,
        schema: Some(schema),
        _dir: None,
    })
}

pub(crate) async fn each_backend() -> Vec<Fixture> {
    let mut out = vec![sqlite().await];
    out.extend(postgres().await);
    out
}

pub(crate) fn ctx() -> Context {
    Context::new(now(), "test")
}

pub(crate) fn event(action: &str) -> AuditEvent {
    ctx().event(action, "t", "success", json!({"k": 1}))
}

pub(crate) async fn seeded(store: &SqlStore) -> (Organization, OAuthClient, ClientSecretRecord) {
    let org = Organization::new("Acme", now());
    let mut admin = User::new(&org.org_id, "Admin@Example.com", "A", "D", now());
    admin.user_id = "A1@AdobeID".into();
    admin.password_hash = Some("$argon2id$fake".into());
    admin.system_admin = true;
    assert!(store
        .bootstrap(&org, &admin, &event("org.bootstrap"))
        .await
        .unwrap());
    let client = OAuthClient::new_technical_account(
        &org.org_id,
        "Integration é",
        vec!["openid".into(), "AdobeID".into()],
        "ims.test",
        now(),
    )
    .unwrap();
    let secret = ClientSecretRecord {
        secret_id: "s1".into(),
        client_id: client.client_id.clone(),
        digest: "d1".into(),
        hint: "imscs_...abcd".into(),
        created_at: now(),
        expires_at: None,
    };
    store
        .create_client(&client, Some(&secret), &event("credential.create"))
        .await
        .unwrap();
    (org, client, secret)
}
