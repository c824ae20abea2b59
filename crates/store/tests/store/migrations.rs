//! Schema migrations of the IMS database on both backends.

use ims_core::error::StoreError;
use ims_identity::model::Organization;
use ims_identity::store::{ClientStore, OrgStore, SchemaStore, UserStore};
use ims_store::{migrate, Backend, Options, SqlStore};

use crate::harness::*;

#[tokio::test]
async fn migrations_match_across_backends_and_refuse_newer_schema() {
    for m in migrate::MIGRATIONS {
        assert!(
            !m.sqlite.trim().is_empty() && !m.postgres.trim().is_empty(),
            "{} has both texts",
            m.name
        );
    }
    let versions: Vec<i64> = migrate::MIGRATIONS.iter().map(|m| m.version).collect();
    let expected: Vec<i64> = (1..=versions.len() as i64).collect();
    assert_eq!(versions, expected, "numbered 1..n without gaps");

    let lite = sqlite().await;
    let lite_shape = lite.store.schema_shape().await.unwrap();
    assert!(lite.store.pending_migrations().await.unwrap().is_empty());
    if let Some(pg) = postgres().await {
        assert_eq!(
            pg.store.schema_shape().await.unwrap(),
            lite_shape,
            "same tables and columns on both backends"
        );
        pg.cleanup().await;
    }

    // A database that has a step this build does not know is refused.
    lite.raw("INSERT INTO schema_migrations (version, name, applied_at) VALUES (999, 'future', 0)")
        .await
        .unwrap();
    let err = SqlStore::open(&Options::new(lite.url.clone()), now())
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::Schema(ref m) if m.contains("newer")),
        "{err:?}"
    );
    lite.cleanup().await;
}

#[tokio::test]
async fn migrations_keep_data_and_rerun_is_a_no_op() {
    for f in each_backend().await {
        let (org, client, _) = seeded(&f.store).await;
        assert!(
            f.store.migrate(now()).await.unwrap().is_empty(),
            "nothing left to apply"
        );
        assert_eq!(f.store.org(&org.org_id).await.unwrap().unwrap(), org);
        assert_eq!(f.store.client(&client.client_id).await.unwrap().unwrap(), client);
        f.cleanup().await;
    }
}

/// Every step after the first, applied to data written under the schema before it.
#[tokio::test]
async fn each_migration_carries_the_data_of_the_step_before() {
    for f in each_backend().await {
        // A fresh database of the same backend, migrated to the first step only.
        let mut opts = Options::new(f.url.clone());
        opts.migrate = false;
        let (dir, schema) = match f.store.backend() {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().unwrap();
                opts.url = format!("sqlite://{}", dir.path().join("old.db").display());
                (Some(dir), None)
            }
            Backend::Postgres => {
                let schema = fresh_schema();
                opts.schema = Some(schema.clone());
                (None, Some(schema))
            }
        };
        let old = Fixture {
            store: SqlStore::open(&opts, now()).await.unwrap(),
            url: opts.url.clone(),
            schema,
            _dir: dir,
        };
        assert_eq!(old.store.migrate_to(1, now()).await.unwrap(), vec![1]);
        let org = Organization::new("Acme", now());
        // Written as the first schema knew them: no identity type, status or client type.
        for sql in [
            format!("INSERT INTO organizations (org_id, numeric_id, name, created_at) VALUES ('{}', {}, 'Acme', 1)", org.org_id, org.numeric_id),
            format!("INSERT INTO users (user_id, org_id, email, email_lower, first_name, last_name, password_hash, system_admin, created_at) VALUES ('U1@AdobeID', '{}', 'A@B.c', 'a@b.c', 'A', 'B', 'h', 1, 2)", org.org_id),
            format!("INSERT INTO oauth_clients (client_id, org_id, name, technical_account_id, technical_account_email, scopes, grant_types, disabled, created_at, updated_at) VALUES ('c1', '{}', 'n', 'T@techacct.x', 't@techacct.x', 'openid', 'client_credentials', 0, 3, 3)", org.org_id),
            "INSERT INTO client_secrets (secret_id, client_id, digest, hint, created_at) VALUES ('s1', 'c1', 'd', 'h', 4)".to_owned(),
        ] {
            old.raw(&sql).await.unwrap();
        }
        let applied = old.store.migrate(now()).await.unwrap();
        assert_eq!(
            applied,
            migrate::MIGRATIONS
                .iter()
                .skip(1)
                .map(|m| m.version)
                .collect::<Vec<_>>()
        );
        let user = old.store.user("U1@AdobeID").await.unwrap().unwrap();
        assert_eq!((user.email.as_str(), user.system_admin), ("A@B.c", true));
        assert_eq!(user.identity_type, ims_identity::model::IdentityType::AdobeId);
        assert_eq!(user.status, ims_identity::model::UserStatus::Active);
        assert!(user.totp_sealed.is_none() && user.recovery_codes.is_empty());
        let (client, secrets) = old.store.client_with_secrets("c1").await.unwrap().unwrap();
        assert_eq!(
            client.client_type,
            ims_identity::model::ClientType::TechnicalAccount
        );
        assert!(client.redirect_uris.is_empty() && !client.first_party);
        assert_eq!(secrets.len(), 1);
        old.cleanup().await;
        f.cleanup().await;
    }
}

#[tokio::test]
async fn unmigrated_store_reports_pending_steps() {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = Options::new(format!("sqlite://{}", dir.path().join("x.db").display()));
    opts.migrate = false;
    let store = SqlStore::open(&opts, now()).await.unwrap();
    assert_eq!(
        store.pending_migrations().await.unwrap(),
        vec![
            "0001_foundation".to_owned(),
            "0002_people".to_owned(),
            "0003_directory".to_owned(),
            "0004_developer".to_owned(),
            "0005_backchannel_logout".to_owned(),
            "0006_outbox".to_owned(),
            "0007_invitations".to_owned(),
            "0008_shared_state".to_owned()
        ]
    );
    store.migrate(now()).await.unwrap();
    assert!(store.pending_migrations().await.unwrap().is_empty());
    if let Some(url) = pg_url() {
        let schema = fresh_schema();
        let mut opts = Options::new(url);
        opts.schema = Some(schema.clone());
        opts.migrate = false;
        let store = SqlStore::open(&opts, now()).await.unwrap();
        assert_eq!(
            store.pending_migrations().await.unwrap().len(),
            migrate::MIGRATIONS.len()
        );
        store.migrate(now()).await.unwrap();
        assert!(store.pending_migrations().await.unwrap().is_empty());
        store.drop_schema(&schema).await.unwrap();
    }
}

#[tokio::test]
async fn backend_is_chosen_by_url() {
    assert_eq!(Backend::of_url("sqlite://x").unwrap(), Backend::Sqlite);
    assert_eq!(Backend::of_url("postgres://x").unwrap(), Backend::Postgres);
    assert!(Backend::of_url("mysql://x").is_err());
}

/// Nodes starting together on a new PostgreSQL schema take turns at the migrations: every one
/// opens, and each step is applied once.
#[tokio::test]
async fn nodes_starting_together_apply_each_migration_once() {
    let url = std::env::var("TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    if url == "skip" {
        eprintln!("!!! SKIPPED: concurrent migrators on PostgreSQL (TEST_POSTGRES_URL=skip)");
        return;
    }
    let schema = format!("t_{}", ims_core::secret::random_hex(8));
    let mut opts = Options::new(url);
    opts.schema = Some(schema.clone());
    opts.max_connections = 2;
    let (a, b, c) = tokio::join!(
        SqlStore::open(&opts, now()),
        SqlStore::open(&opts, now()),
        SqlStore::open(&opts, now())
    );
    let (a, b, c) = (a.expect("a"), b.expect("b"), c.expect("c"));
    // Had two applied the same step, one would have failed ("already exists") and not opened.
    for s in [&a, &b, &c] {
        assert!(s.pending_migrations().await.unwrap().is_empty());
    }
    b.close().await;
    c.close().await;
    a.drop_schema(&schema).await.unwrap();
    a.close().await;
}
