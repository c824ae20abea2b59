#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The storage suite. Every test runs on SQLite and on PostgreSQL (`TEST_POSTGRES_URL`, default
//! the local test database; set it to `skip` to skip PostgreSQL loudly). Each PostgreSQL run gets a
//! schema of its own, so parallel runs do not collide.

use ims_core::audit::{AuditEvent, Context};
use ims_core::error::StoreError;
use ims_core::keys::{self, Algorithm, MasterKey};
use ims_core::Now;
use ims_identity::model::{ClientSecretRecord, OAuthClient, Organization, User};
use ims_identity::store::{
    AuditQuery, AuditStore, ClientStore, KeyStore, OrgStore, RevocationStore, SchemaStore, UserStore,
};
use ims_store::{migrate, Backend, Options, SqlStore};
use serde_json::json;

const DEFAULT_PG: &str = "postgres://postgres@127.0.0.1:5432/test";

struct Fixture {
    store: SqlStore,
    url: String,
    schema: Option<String>,
    _dir: Option<tempfile::TempDir>,
}

impl Fixture {
    /// Runs a statement on a connection of its own, outside the store's API.
    async fn raw(&self, sql: &str) -> Result<(), sqlx::Error> {
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

    async fn cleanup(self) {
        if let Some(schema) = &self.schema {
            self.store.drop_schema(schema).await.unwrap();
        }
        self.store.close().await;
    }
}

fn now() -> Now {
    Now::from_millis(1_750_000_000_000)
}

fn pg_url() -> Option<String> {
    match std::env::var("TEST_POSTGRES_URL") {
        Ok(v) if v == "skip" => {
            eprintln!("!!! SKIPPED: PostgreSQL storage tests (TEST_POSTGRES_URL=skip)");
            None
        }
        Ok(v) => Some(v),
        Err(_) => Some(DEFAULT_PG.to_owned()),
    }
}

async fn sqlite() -> Fixture {
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

fn fresh_schema() -> String {
    format!("t_{}", ims_core::secret::random_hex(8))
}

async fn postgres() -> Option<Fixture> {
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

async fn each_backend() -> Vec<Fixture> {
    let mut out = vec![sqlite().await];
    out.extend(postgres().await);
    out
}

fn ctx() -> Context {
    Context::new(now(), "test")
}

fn event(action: &str) -> AuditEvent {
    ctx().event(action, "t", "success", json!({"k": 1}))
}

async fn seeded(store: &SqlStore) -> (Organization, OAuthClient, ClientSecretRecord) {
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

/// People, their sign-in records and the atomic steps the OpenID Connect flows rely on.
#[tokio::test]
async fn people_and_grants_on_both_backends() {
    use ims_identity::grants::{AuthorizationCode, RefreshToken, Rotation};
    use ims_identity::store::{GrantStore, ThrottleStore};
    for f in each_backend().await {
        let (org, _, _) = seeded(&f.store).await;
        // Users: case-insensitive uniqueness, round trip of every field, lost updates refused.
        let mut u = User::new(&org.org_id, "Jane.Doe@Example.com", "Jane", "Doe", now());
        u.country = Some("FR".into());
        u.recovery_codes = vec!["d1".into(), "d2".into()];
        f.store.create_user(&u, &event("user.create")).await.unwrap();
        let twin = User::new(&org.org_id, "JANE.DOE@example.com", "", "", now());
        assert!(matches!(
            f.store.create_user(&twin, &event("user.create")).await,
            Err(StoreError::Conflict(_))
        ));
        assert_eq!(f.store.user(&u.user_id).await.unwrap().unwrap(), u);
        assert!(f
            .store
            .use_second_factor(&u.user_id, Some(5), None, now(), &event("user.totp"))
            .await
            .unwrap());
        assert!(
            !f.store
                .use_second_factor(&u.user_id, Some(5), None, now(), &event("user.totp"))
                .await
                .unwrap(),
            "a step once"
        );
        let before = vec!["d1".to_owned(), "d2".to_owned()];
        let after = vec!["d2".to_owned()];
        assert!(f
            .store
            .use_second_factor(
                &u.user_id,
                None,
                Some((&before, &after)),
                now(),
                &event("user.recovery_code")
            )
            .await
            .unwrap());
        assert!(
            !f.store
                .use_second_factor(
                    &u.user_id,
                    None,
                    Some((&before, &after)),
                    now(),
                    &event("user.recovery_code")
                )
                .await
                .unwrap(),
            "a code once"
        );
        assert_eq!(
            f.store.user(&u.user_id).await.unwrap().unwrap().recovery_codes,
            after
        );
        // Attempts: five let in, then the lock refuses and changes nothing; a success clears.
        let lock_ms = [0, 0, 0, 0, 30_000, 60_000];
        for n in 1..=5 {
            assert_eq!(
                f.store
                    .admit_attempt(&org.org_id, "x@y.z", now(), 3600, &lock_ms, &format!("a{n}"))
                    .await
                    .unwrap(),
                (true, n)
            );
        }
        assert_eq!(
            f.store
                .admit_attempt(&org.org_id, "x@y.z", now(), 3600, &lock_ms, "a6")
                .await
                .unwrap(),
            (false, 5)
        );
        let later = now().plus_secs(31);
        assert_eq!(
            f.store
                .admit_attempt(&org.org_id, "x@y.z", later, 3600, &lock_ms, "a7")
                .await
                .unwrap(),
            (true, 6)
        );
        let (_, _, until) = f.store.failures(&org.org_id, "x@y.z").await.unwrap().unwrap();
        assert_eq!(until.millis(), later.millis() + 60_000);
        assert_eq!(
            f.store
                .admit_attempt(&org.org_id, "x@y.z", later.plus_secs(7200), 3600, &lock_ms, "a8")
                .await
                .unwrap(),
            (true, 1),
            "stale counters start over"
        );
        f.store.clear_failures(&org.org_id, "x@y.z").await.unwrap();
        assert!(f.store.failures(&org.org_id, "x@y.z").await.unwrap().is_none());
        // Free attempts set no lock: one that read the clock a little earlier than one counted
        // before it (concurrent requests) is let in.
        let t = later.plus_secs(9000);
        for (n, at) in [(1, t.plus_millis(5)), (2, t), (3, t.plus_millis(2))] {
            assert_eq!(
                f.store
                    .admit_attempt(&org.org_id, "x@y.z", at, 3600, &lock_ms, &format!("b{n}"))
                    .await
                    .unwrap(),
                (true, n),
                "attempt {n}"
            );
        }
        f.store.clear_failures(&org.org_id, "x@y.z").await.unwrap();
        // Codes: one consumption wins.
        let code = AuthorizationCode {
            code_digest: "c1".into(),
            client_id: "cl".into(),
            user_id: u.user_id.clone(),
            redirect_uri: "https://a/cb".into(),
            scope: vec!["openid".into()],
            nonce: None,
            code_challenge: "x".repeat(43),
            auth_time: now(),
            amr: vec!["pwd".into()],
            created_at: now(),
            expires_at: now().plus_secs(60),
            consumed_at: None,
            grant_id: "g1".into(),
            access_token_id: None,
            replayed_at: None,
        };
        f.store.insert_code(&code).await.unwrap();
        assert_eq!(f.store.code("c1").await.unwrap().unwrap(), code);
        assert!(f.store.consume_code("c1", now()).await.unwrap().unwrap().1);
        assert!(!f.store.consume_code("c1", now()).await.unwrap().unwrap().1);
        // Refresh tokens: a redemption stores the first, rotation wins once, the family revokes.
        let rt = |digest: &str, access: &str| RefreshToken {
            token_digest: digest.into(),
            family_id: "g1".into(),
            client_id: "cl".into(),
            user_id: u.user_id.clone(),
            scope: vec!["openid".into()],
            auth_time: now(),
            amr: vec!["pwd".into()],
            access_token_id: access.into(),
            access_expires_at: now().plus_secs(3600),
            created_at: now(),
            family_expires_at: now().plus_secs(86_400),
            used_at: None,
            revoked_at: None,
        };
        f.store.mark_code_replayed("c1", now()).await.unwrap();
        assert!(
            f.store
                .record_redemption("c1", "at1", Some(&rt("r1", "at1")), &event("token.issue"))
                .await
                .unwrap(),
            "the replay is seen"
        );
        assert!(matches!(
            f.store
                .rotate_refresh_token("r1", &rt("r2", "at2"), now())
                .await
                .unwrap(),
            Rotation::Rotated(_)
        ));
        assert!(matches!(
            f.store
                .rotate_refresh_token("r1", &rt("r3", "at3"), now())
                .await
                .unwrap(),
            Rotation::Spent(_)
        ));
        assert!(matches!(
            f.store
                .rotate_refresh_token("nope", &rt("r4", "at4"), now())
                .await
                .unwrap(),
            Rotation::Unknown
        ));
        let mut revoked: Vec<String> = f
            .store
            .revoke_family("g1", now())
            .await
            .unwrap()
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        revoked.sort();
        assert_eq!(revoked, vec!["at1", "at2"]);
        assert!(f
            .store
            .refresh_token("r2")
            .await
            .unwrap()
            .unwrap()
            .revoked_at
            .is_some());
        // Reset links: once, and not after expiry.
        f.store
            .insert_password_reset(
                "p1",
                &u.user_id,
                now(),
                now().plus_secs(60),
                &event("user.password_reset_link"),
            )
            .await
            .unwrap();
        assert!(f
            .store
            .password_reset("p1", now().plus_secs(61))
            .await
            .unwrap()
            .is_none());
        assert_eq!(
            f.store.take_password_reset("p1", now()).await.unwrap(),
            Some(u.user_id.clone())
        );
        assert_eq!(f.store.take_password_reset("p1", now()).await.unwrap(), None);
        // Consents are replaced, not added to.
        f.store
            .set_consent(
                &u.user_id,
                "cl",
                &["openid".into()],
                now(),
                &event("user.consent"),
            )
            .await
            .unwrap();
        f.store
            .set_consent(
                &u.user_id,
                "cl",
                &["openid".into(), "email".into()],
                now(),
                &event("user.consent"),
            )
            .await
            .unwrap();
        assert_eq!(
            f.store.consent(&u.user_id, "cl").await.unwrap().unwrap(),
            vec!["openid", "email"]
        );
        // Purging removes what ended.
        assert!(f.store.purge_grants(now().plus_secs(100_000)).await.unwrap() >= 2);
        assert!(f.store.code("c1").await.unwrap().is_none());
        f.cleanup().await;
    }
}

#[tokio::test]
async fn bootstrap_happens_once_and_users_match_case_insensitively() {
    for f in each_backend().await {
        let (org, _, _) = seeded(&f.store).await;
        let other = Organization::new("Second", now());
        let mut admin = User::new(&other.org_id, "b@example.com", "", "", now());
        admin.user_id = "B@AdobeID".into();
        admin.system_admin = true;
        assert!(!f
            .store
            .bootstrap(&other, &admin, &event("org.bootstrap"))
            .await
            .unwrap());
        assert_eq!(f.store.orgs().await.unwrap(), vec![org.clone()]);
        let u = f
            .store
            .user_by_email(&org.org_id, "ADMIN@example.COM")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(u.email, "Admin@Example.com", "stored as entered");
        assert!(u.system_admin);
        f.cleanup().await;
    }
}

#[tokio::test]
async fn clients_and_secrets_round_trip() {
    for f in each_backend().await {
        let (org, client, secret) = seeded(&f.store).await;
        assert_eq!(f.store.client(&client.client_id).await.unwrap().unwrap(), client);
        let (c, secrets) = f
            .store
            .client_with_secrets(&client.client_id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!((c, secrets), (client.clone(), vec![secret.clone()]));
        let second = ClientSecretRecord {
            secret_id: "s2".into(),
            digest: "d2".into(),
            expires_at: Some(now().plus_secs(60)),
            ..secret.clone()
        };
        f.store
            .add_secret(&second, &event("credential.secret.add"))
            .await
            .unwrap();
        assert_eq!(f.store.secrets(&client.client_id).await.unwrap().len(), 2);
        assert!(f
            .store
            .remove_secret(&client.client_id, "s1", &event("credential.secret.remove"))
            .await
            .unwrap());
        assert!(!f
            .store
            .remove_secret(&client.client_id, "s1", &event("credential.secret.remove"))
            .await
            .unwrap());
        assert_eq!(f.store.secrets(&client.client_id).await.unwrap(), vec![second]);
        assert!(f
            .store
            .set_client_disabled(&client.client_id, true, now(), &event("credential.disable"))
            .await
            .unwrap());
        assert!(f.store.client(&client.client_id).await.unwrap().unwrap().disabled);
        assert!(!f
            .store
            .set_client_disabled("nope", true, now(), &event("credential.disable"))
            .await
            .unwrap());
        assert_eq!(f.store.clients(&org.org_id).await.unwrap().len(), 1);
        assert!(f.store.client_with_secrets("nope").await.unwrap().is_none());
        f.cleanup().await;
    }
}

#[tokio::test]
async fn duplicate_and_dangling_writes_are_conflicts_and_write_nothing() {
    for f in each_backend().await {
        let (_, client, secret) = seeded(&f.store).await;
        let before = f
            .store
            .audit(&AuditQuery {
                limit: 1000,
                ..Default::default()
            })
            .await
            .unwrap()
            .len();
        let err = f
            .store
            .create_client(&client, Some(&secret), &event("credential.create"))
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
        let orphan = ClientSecretRecord {
            secret_id: "s9".into(),
            client_id: "missing".into(),
            ..secret
        };
        let err = f
            .store
            .add_secret(&orphan, &event("credential.secret.add"))
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
        let after = f
            .store
            .audit(&AuditQuery {
                limit: 1000,
                ..Default::default()
            })
            .await
            .unwrap()
            .len();
        assert_eq!(before, after, "a refused change leaves no audit line");
        f.cleanup().await;
    }
}

#[tokio::test]
async fn keys_are_stored_sealed_and_reload() {
    for f in each_backend().await {
        let master = MasterKey::generate();
        let k = keys::generate(Algorithm::ES256, &master, now(), now()).unwrap();
        f.store.insert_key(&k, &event("key.create")).await.unwrap();
        let loaded = f.store.keys().await.unwrap();
        assert_eq!(loaded, vec![k.clone()]);
        assert!(!loaded[0].sealed_private.contains("PRIVATE"));
        let ring = keys::KeyRing::load(loaded, &master, None).unwrap();
        assert!(ring.signer(Algorithm::ES256, now()).is_some());
        f.store
            .delete_keys(std::slice::from_ref(&k.kid), &event("key.delete"))
            .await
            .unwrap();
        assert!(f.store.keys().await.unwrap().is_empty());
        f.cleanup().await;
    }
}

#[tokio::test]
async fn revocations_are_recorded_idempotently_and_purged() {
    for f in each_backend().await {
        f.store
            .revoke_token("t1", "c", now().plus_secs(10), now(), &event("token.revoke"))
            .await
            .unwrap();
        f.store
            .revoke_token("t1", "c", now().plus_secs(10), now(), &event("token.revoke"))
            .await
            .unwrap();
        assert!(f.store.is_revoked("t1").await.unwrap());
        assert!(!f.store.is_revoked("t2").await.unwrap());
        assert_eq!(f.store.purge_revocations(now().plus_secs(11)).await.unwrap(), 1);
        assert!(!f.store.is_revoked("t1").await.unwrap());
        f.cleanup().await;
    }
}

#[tokio::test]
async fn audit_log_is_append_only() {
    for f in each_backend().await {
        seeded(&f.store).await;
        let mut e = event("credential.disable");
        e.source = Some("127.0.0.1".into());
        e.request_id = Some("r-1".into());
        f.store.append_audit(&e).await.unwrap();
        let got = f
            .store
            .audit(&AuditQuery {
                action_prefix: Some("credential.".into()),
                limit: 10,
            })
            .await
            .unwrap();
        assert_eq!(got.first(), Some(&e), "newest first");
        assert!(got.iter().all(|x| x.action.starts_with("credential.")));
        // No API rewrites it, and the database itself refuses to.
        let pool_err = f.raw("UPDATE audit_log SET actor = 'x'").await;
        assert!(pool_err.is_err(), "update must be refused");
        let pool_err = f.raw("DELETE FROM audit_log").await;
        assert!(pool_err.is_err(), "delete must be refused");
        f.cleanup().await;
    }
}

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
            "0005_backchannel_logout".to_owned()
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

/// Waits up to five seconds for the change signal to satisfy `pred`.
async fn signal_until(store: &SqlStore, pred: impl Fn(Option<u64>) -> bool) -> Option<u64> {
    use ims_identity::store::ClientChangeSignal as _;
    for _ in 0..100 {
        let g = store.client_generation();
        if pred(g) {
            return g;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("the change signal never moved");
}

#[tokio::test]
async fn client_changes_by_another_connection_move_the_signal() {
    for f in each_backend().await {
        let (_, client, _) = seeded(&f.store).await;
        // A second store on the same database stands for the CLI or another node.
        let mut opts = Options::new(f.url.clone());
        opts.schema = f.schema.clone();
        opts.max_connections = 2;
        let other = SqlStore::open(&opts, now()).await.unwrap();
        let before = signal_until(&f.store, |g| g.is_some()).await;
        other
            .set_client_disabled(&client.client_id, true, now(), &event("credential.disable"))
            .await
            .unwrap();
        let after = signal_until(&f.store, |g| g.is_some() && g != before).await;
        assert_ne!(before, after);
        // Our own writes move it at once, on every backend.
        let here = ims_identity::store::ClientChangeSignal::client_generation(&f.store);
        f.store
            .set_client_disabled(&client.client_id, false, now(), &event("credential.enable"))
            .await
            .unwrap();
        assert_ne!(
            ims_identity::store::ClientChangeSignal::client_generation(&f.store),
            here
        );
        other.close().await;
        f.cleanup().await;
    }
}

// ----- the instance database --------------------------------------------------------------------

mod instance {
    use super::*;
    use ims_campaign::model::{AuthPath, AuthType, Operator, UsageEvent};
    use ims_campaign::service::{Caller, Instance, InstanceInfo, InstanceKind};
    use ims_campaign::store::{OperatorStore, SessionStore, SwitchStep, UsageStore};
    use ims_campaign::Build;
    use ims_core::secret::Secret;
    use ims_store::instance::SqlInstanceStore;
    use ims_wire::rights::DEFAULT_GROUPS;
    use std::sync::Arc;

    struct Inst {
        store: Arc<SqlInstanceStore>,
        schema: Option<String>,
        _dir: Option<tempfile::TempDir>,
    }

    impl Inst {
        async fn cleanup(self) {
            if let Some(s) = &self.schema {
                self.store.drop_schema(s).await.unwrap();
            }
            self.store.close().await;
        }
    }

    /// The SQLite instance store alone (tests about domain rules, not storage).
    async fn sqlite_only() -> Inst {
        let mut all = each().await;
        let first = all.remove(0);
        for other in all {
            other.cleanup().await;
        }
        first
    }

    async fn each() -> Vec<Inst> {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("instance.db").display());
        let mut out = vec![Inst {
            store: Arc::new(SqlInstanceStore::open(&Options::new(url), now()).await.unwrap()),
            schema: None,
            _dir: Some(dir),
        }];
        if let Some(url) = pg_url() {
            let schema = fresh_schema();
            let mut opts = Options::new(url);
            opts.schema = Some(schema.clone());
            opts.max_connections = 4;
            out.push(Inst {
                store: Arc::new(SqlInstanceStore::open(&opts, now()).await.unwrap()),
                schema: Some(schema),
                _dir: None,
            });
        }
        for i in &out {
            for g in DEFAULT_GROUPS {
                i.store.ensure_group(g.name, g.label, g.rights).await.unwrap();
            }
        }
        out
    }

    async fn operator(login: &str, password: Option<&str>, groups: &[&str]) -> Operator {
        let hash = match password {
            Some(p) => Some(ims_core::password::hash(&Secret::new(p)).await.unwrap()),
            None => None,
        };
        Operator {
            id: 0,
            login: login.into(),
            label: format!("{login} label"),
            email: Some(format!("{login}@example.com")),
            auth_type: AuthType::Native,
            disabled: false,
            forbid_rich_client: false,
            trusted_ip_mask: None,
            security_zone: None,
            rights: vec!["export".into()],
            groups: groups.iter().map(|g| g.to_string()).collect(),
            password_hash: hash,
            ims_id: None,
            builtin: false,
            created_at: now(),
            modified_at: now(),
        }
    }

    #[tokio::test]
    async fn a_batch_of_switches_decides_each_operator_alone_on_both_backends() {
        let ev = |action: &str| {
            ims_core::audit::Context::new(ims_core::Now::from_millis(5), "test").event(
                action,
                "t",
                "success",
                serde_json::json!({}),
            )
        };
        for i in each().await {
            for login in ["ana", "bob", "cy"] {
                let op = operator(login, Some("pw-1234567"), &["deliveryOperators"]).await;
                i.store
                    .create_operator(&op, &ev("operator.create"))
                    .await
                    .unwrap();
            }
            let logins: Vec<String> = ["cy", "ana", "nobody", "bob"].map(String::from).to_vec();
            let mut found = i.store.operators_by_logins(&logins).await.unwrap();
            found.sort_by(|a, b| a.login.cmp(&b.login));
            assert_eq!(
                found.iter().map(|o| o.login.as_str()).collect::<Vec<_>>(),
                ["ana", "bob", "cy"]
            );
            assert_eq!(found[0], i.store.operator_by_login("ana").await.unwrap().unwrap());
            let step = |op: &Operator, read_at: ims_core::Now, link: &str| SwitchStep {
                id: op.id,
                read_at,
                from: AuthType::Native,
                to: AuthType::Ims,
                link: Some(link.to_owned()),
                end_path: AuthPath::Native,
                reset_password: false,
                access: None,
                audit: ev("operator.migrate"),
            };
            let stale = ims_core::Now::from_millis(found[1].modified_at.millis() - 1);
            // A session of ana's (the first found).
            let session = |digest: &str, auth_path| ims_campaign::model::Session {
                session_digest: digest.into(),
                security_digest: format!("{digest}-security"),
                operator_id: found[0].id,
                auth_path,
                created_at: now(),
                expires_at: now().plus_secs(60),
            };
            i.store
                .insert_session(&session("before", AuthPath::Native))
                .await
                .unwrap();
            let done = i
                .store
                .switch_operators(&[
                    step(&found[0], found[0].modified_at, "ims-ana"),
                    // Read before a change made meanwhile: refused.
                    step(&found[1], stale, "ims-bob"),
                    // The identity ana was just linked to: refused, ana keeps it.
                    step(&found[2], found[2].modified_at, "ims-ana"),
                ])
                .await
                .unwrap();
            assert_eq!(done, [true, false, false]);
            let ana = i.store.operator_by_login("ana").await.unwrap().unwrap();
            assert_eq!(
                (ana.auth_type, ana.ims_id.as_deref()),
                (AuthType::Ims, Some("ims-ana"))
            );
            // Its native sessions ended with the switch, which alone was audited.
            assert!(i.store.session("before").await.unwrap().is_none());
            let audited = i
                .store
                .audit(&AuditQuery {
                    action_prefix: Some("operator.migrate".into()),
                    limit: 100,
                })
                .await
                .unwrap();
            assert_eq!(audited.len(), 1);
            // A native sign-in that read ana before the switch cannot open its session after.
            assert!(matches!(
                i.store.insert_session(&session("late", AuthPath::Native)).await,
                Err(StoreError::Conflict(_))
            ));
            assert!(i.store.session("late").await.unwrap().is_none());
            i.store
                .insert_session(&session("ims", AuthPath::Ims))
                .await
                .unwrap();
            for login in ["bob", "cy"] {
                let op = i.store.operator_by_login(login).await.unwrap().unwrap();
                assert_eq!((op.auth_type, op.ims_id), (AuthType::Native, None), "{login}");
            }
            i.cleanup().await;
        }
    }

    #[tokio::test]
    async fn operators_groups_and_rights_round_trip() {
        for i in each().await {
            let op = operator("jdoe", Some("pw-1234567"), &["deliveryOperators", "admin"]).await;
            let id = i
                .store
                .create_operator(
                    &op,
                    &ims_core::audit::Context::new(ims_core::Now::from_millis(0), "test").event(
                        "operator.create",
                        "t",
                        "success",
                        serde_json::json!({}),
                    ),
                )
                .await
                .unwrap();
            let got = i.store.operator_by_login("jdoe").await.unwrap().unwrap();
            assert_eq!(got.id, id);
            assert_eq!(
                got.groups,
                vec!["admin".to_owned(), "deliveryOperators".to_owned()]
            );
            assert_eq!(got.rights, vec!["export".to_owned()]);
            assert_eq!(i.store.operator(id).await.unwrap().unwrap(), got);
            let err = i
                .store
                .create_operator(
                    &op,
                    &ims_core::audit::Context::new(ims_core::Now::from_millis(0), "test").event(
                        "operator.create",
                        "t",
                        "success",
                        serde_json::json!({}),
                    ),
                )
                .await
                .unwrap_err();
            assert!(matches!(err, StoreError::Conflict(_)), "duplicate login: {err:?}");
            let ghost = operator("ghost", None, &["noSuchGroup"]).await;
            assert!(matches!(
                i.store
                    .create_operator(
                        &ghost,
                        &ims_core::audit::Context::new(ims_core::Now::from_millis(0), "test").event(
                            "operator.create",
                            "t",
                            "success",
                            serde_json::json!({})
                        )
                    )
                    .await,
                Err(StoreError::Conflict(_))
            ));
            assert!(
                i.store.operator_by_login("ghost").await.unwrap().is_none(),
                "nothing half-created"
            );
            let groups = i.store.groups().await.unwrap();
            assert_eq!(groups.len(), DEFAULT_GROUPS.len());
            let delivery = groups.iter().find(|g| g.name == "deliveryOperators").unwrap();
            assert_eq!(
                delivery.rights,
                vec!["prepareDelivery".to_owned(), "startDelivery".to_owned()]
            );
            assert_eq!(i.store.operator_count().await.unwrap(), 1);
            i.cleanup().await;
        }
    }

    #[tokio::test]
    async fn operator_updates_deletes_and_pages_on_both_backends() {
        use ims_campaign::store::RecipientStore as _;
        for i in each().await {
            let audit = |action: &str| {
                ims_core::audit::Context::new(now(), "test").event(
                    action,
                    "t",
                    "success",
                    serde_json::json!({}),
                )
            };
            let mut ids = Vec::new();
            for login in ["ana", "bob", "carla_x", "dan%"] {
                let op = operator(login, Some("pw-1234567"), &["deliveryOperators"]).await;
                ids.push(
                    i.store
                        .create_operator(&op, &audit("operator.create"))
                        .await
                        .unwrap(),
                );
            }
            // A page, a search (wildcards taken literally, case-insensitive), the total.
            let (page, total) = i.store.operators_page(None, 1, 2).await.unwrap();
            assert_eq!(total, 4);
            assert_eq!(
                page.iter().map(|o| o.login.as_str()).collect::<Vec<_>>(),
                ["bob", "carla_x"]
            );
            assert_eq!(page[0].groups, ["deliveryOperators"], "groups come with the page");
            let (found, n) = i.store.operators_page(Some("A_X"), 0, 10).await.unwrap();
            assert_eq!((found.len(), n), (1, 1));
            let (found, _) = i.store.operators_page(Some("%"), 0, 10).await.unwrap();
            assert_eq!(
                found.iter().map(|o| o.login.as_str()).collect::<Vec<_>>(),
                ["dan%"]
            );
            let (found, _) = i.store.operators_page(Some("BOB@EXAMPLE"), 0, 10).await.unwrap();
            assert_eq!(found.len(), 1, "email is searched");
            // Update replaces fields and sets; with end_sessions the sessions go too.
            let mut bob = i.store.operator(ids[1]).await.unwrap().unwrap();
            let session = |digest: &str, op: i64| ims_campaign::model::Session {
                session_digest: digest.into(),
                security_digest: "s".into(),
                operator_id: op,
                auth_path: ims_campaign::model::AuthPath::Native,
                created_at: now(),
                expires_at: now().plus_secs(60),
            };
            i.store.insert_session(&session("bob-1", bob.id)).await.unwrap();
            bob.label = "Bob B".into();
            bob.groups = vec!["admin".into(), "reportAccess".into()];
            bob.rights = vec![];
            bob.disabled = true;
            i.store
                .update_operator(&bob, false, &audit("operator.update"))
                .await
                .unwrap();
            assert_eq!(i.store.operator(bob.id).await.unwrap().unwrap(), bob);
            assert!(
                i.store.session("bob-1").await.unwrap().is_some(),
                "kept without end_sessions"
            );
            i.store
                .update_operator(&bob, true, &audit("operator.update"))
                .await
                .unwrap();
            assert!(i.store.session("bob-1").await.unwrap().is_none());
            // A taken login or an unknown group changes nothing.
            let mut clash = bob.clone();
            clash.login = "ana".into();
            clash.label = "changed".into();
            assert!(matches!(
                i.store
                    .update_operator(&clash, false, &audit("operator.update"))
                    .await,
                Err(StoreError::Conflict(_))
            ));
            let mut ghost_group = bob.clone();
            ghost_group.groups = vec!["nope".into()];
            assert!(matches!(
                i.store
                    .update_operator(&ghost_group, false, &audit("operator.update"))
                    .await,
                Err(StoreError::Conflict(_))
            ));
            assert_eq!(
                i.store.operator(bob.id).await.unwrap().unwrap(),
                bob,
                "nothing half-applied"
            );
            // Delete takes memberships, rights, folder rights and sessions with it.
            let folder = i.store.ensure_folder("f", "F").await.unwrap();
            i.store
                .grant_folder_to_group(folder, "admin", true, true, &audit("folder.grant"))
                .await
                .unwrap();
            i.store.insert_session(&session("bob-2", bob.id)).await.unwrap();
            i.store
                .delete_operator(bob.id, &audit("operator.delete"))
                .await
                .unwrap();
            assert!(i.store.operator(bob.id).await.unwrap().is_none());
            assert!(i.store.session("bob-2").await.unwrap().is_none());
            assert!(i.store.writable_folders(bob.id).await.unwrap().is_empty());
            assert!(matches!(
                i.store.delete_operator(bob.id, &audit("operator.delete")).await,
                Err(StoreError::Conflict(_))
            ));
            assert_eq!(i.store.operators_page(None, 0, 10).await.unwrap().1, 3);
            i.cleanup().await;
        }
    }

    fn instance(store: &Arc<SqlInstanceStore>, build: &str) -> Instance {
        Instance::new(
            store.clone(),
            InstanceInfo::new("prod", InstanceKind::Marketing, build.parse::<Build>().unwrap()),
        )
    }

    #[tokio::test]
    async fn native_logon_sessions_and_logoff() {
        for i in each().await {
            i.store
                .create_operator(
                    &operator("jdoe", Some("right password"), &["deliveryOperators"]).await,
                    &ims_core::audit::Context::new(ims_core::Now::from_millis(0), "test").event(
                        "operator.create",
                        "t",
                        "success",
                        serde_json::json!({}),
                    ),
                )
                .await
                .unwrap();
            let inst = instance(&i.store, "7.4.1");
            let caller = Caller {
                source: Some("127.0.0.1".into()),
                client: Some("ACC-SDK-Auth: UserPassword jdoe".into()),
            };
            let (tokens, op) = inst
                .logon("jdoe", &Secret::new("right password"), false, now(), &caller)
                .await
                .unwrap();
            assert!(
                tokens.session.expose().starts_with("___ims_")
                    && tokens.security.expose().starts_with("@ims_")
            );
            assert_eq!(op.login, "jdoe");
            let rights = inst.effective_rights(&op).await.unwrap();
            assert!(rights.contains(&"export".to_owned()) && rights.contains(&"startDelivery".to_owned()));
            // The session works with and without its security token; a wrong one is refused.
            inst.session_operator(
                tokens.session.expose(),
                Some(tokens.security.expose()),
                None,
                now(),
            )
            .await
            .unwrap();
            inst.session_operator(tokens.session.expose(), None, None, now())
                .await
                .unwrap();
            assert_eq!(
                inst.session_operator(tokens.session.expose(), Some("@ims_wrong"), None, now())
                    .await
                    .unwrap_err()
                    .code,
                "XSV-350008"
            );
            // Expiry.
            let later = now().plus_secs(24 * 3600);
            assert_eq!(
                inst.session_operator(tokens.session.expose(), None, None, later)
                    .await
                    .unwrap_err()
                    .code,
                "XSV-350008"
            );
            // Stored as digests only.
            assert!(i.store.session(tokens.session.expose()).await.unwrap().is_none());
            // Logoff ends it.
            inst.logoff(tokens.session.expose()).await.unwrap();
            assert!(inst
                .session_operator(tokens.session.expose(), None, None, now())
                .await
                .is_err());
            // Wrong password and unknown login: the same fault.
            let bad = inst
                .logon("jdoe", &Secret::new("wrong"), false, now(), &caller)
                .await
                .unwrap_err();
            let unknown = inst
                .logon("nobody", &Secret::new("wrong"), false, now(), &caller)
                .await
                .unwrap_err();
            assert_eq!(
                (bad.code, bad.message.clone()),
                (unknown.code, unknown.message.clone())
            );
            assert_eq!(bad.code, "XSV-350024");
            // Every attempt is evidence.
            let usage: Vec<UsageEvent> = i.store.usage(Some("jdoe"), 10).await.unwrap();
            assert_eq!(usage.len(), 2);
            assert_eq!(usage[0].outcome, "refused");
            assert_eq!(usage[1].outcome, "success");
            assert_eq!(usage[1].auth_path, AuthPath::Native);
            assert_eq!(usage[1].source.as_deref(), Some("127.0.0.1"));
            // rememberMe lasts longer.
            let (long, _) = inst
                .logon("jdoe", &Secret::new("right password"), true, now(), &caller)
                .await
                .unwrap();
            inst.session_operator(long.session.expose(), None, None, later)
                .await
                .unwrap();
            // Past every expiry the remaining (rememberMe) session is purged; the other ended at Logoff.
            assert_eq!(
                inst.purge_expired_sessions(now().plus_secs(31 * 86_400))
                    .await
                    .unwrap(),
                1
            );
            i.cleanup().await;
        }
    }

    #[tokio::test]
    async fn folder_rights_through_groups_on_both_backends() {
        use ims_campaign::store::RecipientStore as _;
        for i in each().await {
            let folder = i
                .store
                .ensure_folder("nmsRootRecipient", "Recipients")
                .await
                .unwrap();
            assert_eq!(
                i.store
                    .ensure_folder("nmsRootRecipient", "Recipients")
                    .await
                    .unwrap(),
                folder,
                "idempotent"
            );
            let other = i.store.ensure_folder("archive", "Archive").await.unwrap();
            let reader = i
                .store
                .create_operator(
                    &operator("reader", None, &["reportAccess"]).await,
                    &event("operator.create"),
                )
                .await
                .unwrap();
            let nobody = i
                .store
                .create_operator(&operator("nobody", None, &[]).await, &event("operator.create"))
                .await
                .unwrap();
            i.store
                .grant_folder_to_group(folder, "reportAccess", true, false, &event("folder.grant"))
                .await
                .unwrap();
            i.store
                .grant_folder_to_group(other, "reportAccess", false, false, &event("folder.grant"))
                .await
                .unwrap();
            assert_eq!(i.store.readable_folders(reader).await.unwrap(), vec![folder]);
            assert!(i.store.readable_folders(nobody).await.unwrap().is_empty());
            // A second grant changes the first.
            i.store
                .grant_folder_to_group(other, "reportAccess", true, true, &event("folder.grant"))
                .await
                .unwrap();
            assert_eq!(i.store.readable_folders(reader).await.unwrap().len(), 2);
            assert!(matches!(
                i.store
                    .grant_folder_to_group(folder, "noSuchGroup", true, true, &event("folder.grant"))
                    .await,
                Err(StoreError::Conflict(_))
            ));
            i.cleanup().await;
        }
    }

    #[tokio::test]
    async fn instance_audit_log_is_append_only() {
        use ims_core::audit::AuditStore as _;
        for i in each().await {
            i.store
                .create_operator(&operator("audited", None, &[]).await, &event("operator.create"))
                .await
                .unwrap();
            let got = i
                .store
                .audit(&AuditQuery {
                    action_prefix: Some("operator.".into()),
                    limit: 10,
                })
                .await
                .unwrap();
            assert_eq!(got.len(), 1);
            // Outside the store's API, on a connection of its own, the database itself refuses.
            use sqlx::Connection as _;
            let url = match &i._dir {
                Some(d) => format!("sqlite://{}", d.path().join("instance.db").display()),
                None => pg_url().unwrap(),
            };
            let mut conn = sqlx::AnyConnection::connect(&url).await.unwrap();
            if let Some(schema) = &i.schema {
                sqlx::query(&format!("SET search_path TO {schema}"))
                    .execute(&mut conn)
                    .await
                    .unwrap();
            }
            assert!(sqlx::query("UPDATE audit_log SET actor = 'x'")
                .execute(&mut conn)
                .await
                .is_err());
            assert!(sqlx::query("DELETE FROM audit_log")
                .execute(&mut conn)
                .await
                .is_err());
            i.cleanup().await;
        }
    }

    #[tokio::test]
    async fn usage_totals_add_up_on_both_backends() {
        use ims_campaign::usage::{UsageCounts, UsageKey, UsageSummary};
        for i in each().await {
            let key = UsageKey {
                login: "tech@techacct.ims.test".into(),
                operator_id: Some(7),
                action: "xtk:queryDef#ExecuteQuery".into(),
                auth_path: AuthPath::Bearer,
                source: "10.1.2.3".into(),
                client: String::new(),
                outcome: "success".into(),
            };
            let row = |calls, first, last| UsageSummary {
                key: key.clone(),
                counts: UsageCounts {
                    calls,
                    first_at: now().plus_secs(first),
                    last_at: now().plus_secs(last),
                },
            };
            i.store.add_usage(&[row(3, 10, 20)]).await.unwrap();
            i.store.add_usage(&[row(2, 5, 15)]).await.unwrap();
            let got = i
                .store
                .usage_summary(Some("tech@techacct.ims.test"), 10)
                .await
                .unwrap();
            assert_eq!(got, vec![row(5, 5, 20)]);
            i.cleanup().await;
        }
    }

    #[tokio::test]
    async fn disabled_and_non_native_operators_cannot_logon_and_lose_their_sessions() {
        let i = sqlite_only().await;
        let mut disabled = operator("gone", Some("pw-pw-pw-pw"), &[]).await;
        disabled.disabled = true;
        i.store
            .create_operator(
                &disabled,
                &ims_core::audit::Context::new(ims_core::Now::from_millis(0), "test").event(
                    "operator.create",
                    "t",
                    "success",
                    serde_json::json!({}),
                ),
            )
            .await
            .unwrap();
        let mut ims_op = operator("person", Some("pw-pw-pw-pw"), &[]).await;
        ims_op.auth_type = AuthType::Ims;
        i.store
            .create_operator(
                &ims_op,
                &ims_core::audit::Context::new(ims_core::Now::from_millis(0), "test").event(
                    "operator.create",
                    "t",
                    "success",
                    serde_json::json!({}),
                ),
            )
            .await
            .unwrap();
        let inst = instance(&i.store, "7.4.1");
        for login in ["gone", "person"] {
            let err = inst
                .logon(
                    login,
                    &Secret::new("pw-pw-pw-pw"),
                    false,
                    now(),
                    &Caller::default(),
                )
                .await
                .unwrap_err();
            assert_eq!(err.code, "XSV-350024", "{login}");
        }
        i.cleanup().await;
    }

    #[tokio::test]
    async fn native_logon_follows_the_build_matrix() {
        let i = sqlite_only().await;
        for login in ["admin", "internal", "jdoe"] {
            i.store
                .create_operator(
                    &operator(login, Some("pw-pw-pw-pw"), &[]).await,
                    &ims_core::audit::Context::new(ims_core::Now::from_millis(0), "test").event(
                        "operator.create",
                        "t",
                        "success",
                        serde_json::json!({}),
                    ),
                )
                .await
                .unwrap();
        }
        for (build, jdoe_allowed) in [
            ("7.3.1", true),
            ("7.4.1", true),
            ("8.5.2", true),
            ("8.6.0", false),
            ("9.0", false),
        ] {
            let inst = instance(&i.store, build);
            let jdoe = inst
                .logon(
                    "jdoe",
                    &Secret::new("pw-pw-pw-pw"),
                    false,
                    now(),
                    &Caller::default(),
                )
                .await;
            assert_eq!(jdoe.is_ok(), jdoe_allowed, "{build}: jdoe");
            // The allow-list (`internal|monitoring` names two operators) still signs in.
            for listed in ["admin", "internal"] {
                assert!(
                    inst.logon(
                        listed,
                        &Secret::new("pw-pw-pw-pw"),
                        false,
                        now(),
                        &Caller::default()
                    )
                    .await
                    .is_ok(),
                    "{build}: {listed}"
                );
            }
        }
        // A session opened on 8.5 stops working once the instance runs 8.6.
        let (tokens, _) = instance(&i.store, "8.5.2")
            .logon(
                "jdoe",
                &Secret::new("pw-pw-pw-pw"),
                false,
                now(),
                &Caller::default(),
            )
            .await
            .unwrap();
        assert!(instance(&i.store, "8.6.0")
            .session_operator(tokens.session.expose(), None, None, now())
            .await
            .is_err());
        i.cleanup().await;
    }

    #[tokio::test]
    async fn instance_migrations_match_across_backends() {
        for m in migrate::INSTANCE_MIGRATIONS {
            assert!(!m.sqlite.trim().is_empty() && !m.postgres.trim().is_empty());
        }
        let mut all = each().await;
        let shapes: Vec<Vec<(String, String)>> = {
            let mut v = Vec::new();
            for i in &all {
                v.push(instance_shape(i).await);
            }
            v
        };
        if shapes.len() == 2 {
            assert_eq!(shapes[0], shapes[1], "same tables and columns on both backends");
        }
        assert!(shapes[0].iter().any(|(t, _)| t == "operators"));
        while let Some(i) = all.pop() {
            i.cleanup().await;
        }
    }

    /// The instance's later steps applied to data written under its first one.
    #[tokio::test]
    async fn instance_migrations_carry_the_data_of_the_first_step() {
        use sqlx::Connection as _;
        for backend in [Backend::Sqlite, Backend::Postgres] {
            let dir = tempfile::tempdir().unwrap();
            let (mut opts, schema) = match backend {
                Backend::Sqlite => (
                    Options::new(format!("sqlite://{}", dir.path().join("old.db").display())),
                    None,
                ),
                Backend::Postgres => {
                    let Some(url) = pg_url() else { continue };
                    let schema = fresh_schema();
                    let mut o = Options::new(url);
                    o.schema = Some(schema.clone());
                    (o, Some(schema))
                }
            };
            opts.migrate = false;
            let store = SqlInstanceStore::open(&opts, now()).await.unwrap();
            assert_eq!(store.migrate_to(1, now()).await.unwrap(), vec![1]);
            sqlx::any::install_default_drivers();
            let mut conn = sqlx::AnyConnection::connect(&opts.url).await.unwrap();
            if let Some(s) = &schema {
                sqlx::query(&format!("SET search_path TO {s}"))
                    .execute(&mut conn)
                    .await
                    .unwrap();
            }
            for sql in [
                "INSERT INTO operator_groups (name, label) VALUES ('admin', 'Administrator')",
                "INSERT INTO group_rights (group_id, right_name) SELECT group_id, 'admin' FROM operator_groups",
                "INSERT INTO operators (login, label, email, auth_type, password_hash, created_at, modified_at) VALUES ('old', 'Old', 'old@example.com', 'native', 'h', 1, 2)",
                "INSERT INTO operator_group_members (operator_id, group_id) SELECT o.operator_id, g.group_id FROM operators o, operator_groups g",
                "INSERT INTO usage_events (at, operator_id, login, action, auth_path, outcome) SELECT 5, operator_id, 'old', 'xtk:session#Logon', 'native', 'success' FROM operators",
            ] {
                sqlx::query(sql).execute(&mut conn).await.unwrap();
            }
            let applied = store.migrate_to(i64::MAX, now()).await.unwrap();
            assert_eq!(
                applied,
                migrate::INSTANCE_MIGRATIONS
                    .iter()
                    .skip(1)
                    .map(|m| m.version)
                    .collect::<Vec<_>>()
            );
            let op = store.operator_by_login("old").await.unwrap().unwrap();
            assert_eq!(
                (op.email.as_deref(), op.groups.as_slice()),
                (Some("old@example.com"), &["admin".to_owned()][..])
            );
            assert_eq!(store.usage(Some("old"), 10).await.unwrap().len(), 1);
            assert_eq!(store.groups().await.unwrap()[0].rights, vec!["admin"]);
            if let Some(s) = &schema {
                store.drop_schema(s).await.unwrap();
            }
            store.close().await;
        }
    }

    async fn instance_shape(i: &Inst) -> Vec<(String, String)> {
        use sqlx::Connection as _;
        sqlx::any::install_default_drivers();
        let (url, sql) = match &i._dir {
            Some(d) => (
                format!("sqlite://{}", d.path().join("instance.db").display()),
                "SELECT m.name, p.name FROM sqlite_master m, pragma_table_info(m.name) p WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite_%' ORDER BY 1, 2".to_owned(),
            ),
            None => (
                pg_url().unwrap(),
                format!("SELECT table_name::text, column_name::text FROM information_schema.columns WHERE table_schema = '{}' ORDER BY 1, 2", i.schema.as_deref().unwrap()),
            ),
        };
        let mut conn = sqlx::AnyConnection::connect(&url).await.unwrap();
        let rows = sqlx::query(&sql).fetch_all(&mut conn).await.unwrap();
        use sqlx::Row as _;
        rows.iter()
            .map(|r| (r.get::<String, _>(0), r.get::<String, _>(1)))
            .collect()
    }
}

/// The directory: groups of both kinds in one namespace, memberships direct and through user
/// groups, paging, entries applied whole, roles; the same on both backends.
#[tokio::test]
async fn directory_on_both_backends() {
    use ims_identity::directory::{AdminRole, Group, GroupKind, RoleGrant, CAMPAIGN_PRODUCT_CONTEXT};
    use ims_identity::store::DirectoryStore;
    use ims_identity::umapi::{parse_request, plan_entry, Change};
    for f in each_backend().await {
        let (org, _, _) = seeded(&f.store).await;
        let o = org.org_id.as_str();
        let marketing = f
            .store
            .ensure_product_instance(
                o,
                CAMPAIGN_PRODUCT_CONTEXT,
                "marketing",
                "Marketing",
                "https://marketing.test",
                now(),
            )
            .await
            .unwrap();
        let again = f
            .store
            .ensure_product_instance(
                o,
                CAMPAIGN_PRODUCT_CONTEXT,
                "marketing",
                "Marketing",
                "https://moved.test",
                now(),
            )
            .await
            .unwrap();
        assert_eq!(
            (marketing.id, again.url.as_str()),
            (again.id, "https://moved.test"),
            "ensured once, its address kept current"
        );
        let mut profile = Group::product_profile(o, "campaign - marketing - admin", &marketing, now());
        profile.permissions = vec!["admin".into(), "export".into()];
        profile.license_quota = Some(5);
        f.store
            .apply_changes(
                o,
                &[Change::CreateGroup(profile.clone())],
                &[event("profile.create")],
            )
            .await
            .unwrap();
        let twin = Group::user_group(o, "CAMPAIGN - Marketing - Admin", "", now());
        assert!(
            matches!(
                f.store.apply_changes(o, &[Change::CreateGroup(twin)], &[]).await,
                Err(StoreError::Conflict(_))
            ),
            "profiles and user groups share one namespace, case-insensitively"
        );

        // Users and a user group linked to the profile, planned as the API plans them.
        let mut body = String::from("[");
        for i in 0..7 {
            body.push_str(&format!(
                r#"{{"user":"p{i}@example.com","do":[{{"createEnterpriseID":{{"email":"p{i}@example.com","firstname":"P","lastname":"{i}","country":"fr"}}}}]}},"#
            ));
        }
        body.push_str(r#"{"usergroup":"Marketers","do":[{"createUserGroup":{"description":"people who market"}},{"add":{"user":["p1@example.com","p2@example.com"]}},{"add":{"productConfiguration":["campaign - marketing - admin"]}}]},"#);
        body.push_str(
            r#"{"user":"p0@example.com","do":[{"add":{"group":["campaign - marketing - admin"]}}]}]"#,
        );
        let entries = parse_request(body.as_bytes()).unwrap();
        let mut snap = f
            .store
            .directory_snapshot(
                o,
                &ims_identity::umapi::Snapshot::emails_named(&entries),
                &ims_identity::umapi::Snapshot::groups_named(&entries),
            )
            .await
            .unwrap();
        for e in &entries {
            let changes = plan_entry(&mut snap, e, now()).unwrap();
            f.store
                .apply_changes(o, &changes, &[event("umapi.action")])
                .await
                .unwrap();
        }
        // The planner's view and the stored one agree.
        let reloaded = f
            .store
            .directory_snapshot(
                o,
                &snap.users.keys().cloned().collect(),
                &snap.groups.keys().cloned().collect(),
            )
            .await
            .unwrap();
        // Ids of new groups are the database's to give.
        let without_ids = |s: &ims_identity::umapi::Snapshot| {
            let mut g = s.groups.clone();
            g.values_mut().for_each(|state| state.group.id = 0);
            g
        };
        assert_eq!(without_ids(&reloaded), without_ids(&snap));
        assert_eq!(reloaded.users.len(), snap.users.len());

        // Paging by email, removed users aside; 8 users (the admin and p0..p6).
        let (first, more) = f
            .store
            .users_page(o, None, true, None, 0, 5)
            .await
            .unwrap()
            .unwrap();
        assert!(more && first.len() == 5);
        let (rest, more) = f
            .store
            .users_page(o, None, true, None, 5, 5)
            .await
            .unwrap()
            .unwrap();
        assert!(!more && rest.len() == 3);
        let emails: Vec<String> = first
            .iter()
            .chain(&rest)
            .map(|(u, _)| u.email.to_lowercase())
            .collect();
        let mut sorted = emails.clone();
        sorted.sort();
        assert_eq!(emails, sorted);
        // The next page read from where the first ended, not counted from the start: the same.
        let last = first[4].0.email.to_lowercase();
        let (after, more) = f
            .store
            .users_page(o, None, true, Some(&last), 99, 5)
            .await
            .unwrap()
            .unwrap();
        assert!(!more);
        let ids = |page: &[(ims_identity::model::User, Vec<String>)]| -> Vec<String> {
            page.iter().map(|(u, _)| u.user_id.clone()).collect()
        };
        assert_eq!(ids(&after), ids(&rest));
        let p1 = first
            .iter()
            .chain(&rest)
            .find(|(u, _)| u.email == "p1@example.com")
            .unwrap();
        assert_eq!(p1.1, vec!["Marketers".to_owned()], "direct memberships only");
        let (inherited, _) = f
            .store
            .users_page(o, None, false, None, 0, 10)
            .await
            .unwrap()
            .unwrap();
        let p1 = inherited
            .iter()
            .find(|(u, _)| u.email == "p1@example.com")
            .unwrap();
        assert_eq!(
            p1.1,
            vec!["Marketers".to_owned(), "campaign - marketing - admin".to_owned()]
        );
        // Members of the profile: p0 directly; with inheritance p1 and p2 too.
        let (direct, _) = f
            .store
            .users_page(o, Some("Campaign - Marketing - Admin"), true, None, 0, 10)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(direct.len(), 1);
        let (all, _) = f
            .store
            .users_page(o, Some("campaign - marketing - admin"), false, None, 0, 10)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(all.len(), 3);
        assert!(f
            .store
            .users_page(o, Some("nobody"), true, None, 0, 10)
            .await
            .unwrap()
            .is_none());

        let p1_id = snap.users["p1@example.com"].user_id.clone();
        let held = f
            .store
            .held_profiles(&p1_id, Some(CAMPAIGN_PRODUCT_CONTEXT))
            .await
            .unwrap();
        assert_eq!(held.len(), 1);
        assert_eq!(
            (
                held[0].instance.as_str(),
                held[0].permissions.clone(),
                held[0].through.clone()
            ),
            (
                "marketing",
                vec!["admin".to_owned(), "export".to_owned()],
                vec!["Marketers".to_owned()]
            )
        );
        assert!(f
            .store
            .held_profiles(&p1_id, Some("other_context"))
            .await
            .unwrap()
            .is_empty());
        let m = f.store.memberships(&p1_id).await.unwrap();
        assert_eq!(m.len(), 2);
        assert!(m
            .iter()
            .any(|x| x.kind == GroupKind::ProductProfile && x.through.as_deref() == Some("Marketers")));

        let groups = f.store.groups(o).await.unwrap();
        let counts: Vec<(String, i64)> = groups.iter().map(|(g, n)| (g.name.clone(), *n)).collect();
        assert_eq!(
            counts,
            vec![
                ("campaign - marketing - admin".to_owned(), 1),
                ("Marketers".to_owned(), 2)
            ]
        );
        assert_eq!(
            groups[0].0.permissions,
            vec!["admin".to_owned(), "export".to_owned()]
        );
        assert_eq!(groups[0].0.license_quota, Some(5));

        // The quota holds at the database too (two requests planned on the same count).
        let mut tight = Group::product_profile(o, "tight", &marketing, now());
        tight.license_quota = Some(1);
        f.store
            .apply_changes(o, &[Change::CreateGroup(tight)], &[])
            .await
            .unwrap();
        let p2_id = snap.users["p2@example.com"].user_id.clone();
        // Members added in one run are counted together: past the quota, none is added (the
        // additions one by one below would find them otherwise).
        let both = [p1_id.clone(), p2_id.clone()].map(|user_id| Change::AddMember {
            group: "tight".into(),
            user_id,
        });
        assert!(matches!(
            f.store.apply_changes(o, &both, &[]).await,
            Err(StoreError::Conflict(_))
        ));
        f.store
            .apply_changes(
                o,
                &[Change::AddMember {
                    group: "tight".into(),
                    user_id: p1_id.clone(),
                }],
                &[],
            )
            .await
            .unwrap();
        assert!(matches!(
            f.store
                .apply_changes(
                    o,
                    &[Change::AddMember {
                        group: "tight".into(),
                        user_id: p2_id
                    }],
                    &[]
                )
                .await,
            Err(StoreError::Conflict(_))
        ));
        f.store
            .apply_changes(o, &[Change::DeleteGroup { name: "tight".into() }], &[])
            .await
            .unwrap();
        // An entry whose last change cannot apply leaves nothing behind.
        let bad = vec![
            Change::CreateGroup(Group::user_group(o, "Half", "", now())),
            Change::AddMember {
                group: "Half".into(),
                user_id: p1_id.clone(),
            },
            Change::AddMember {
                group: "Gone".into(),
                user_id: p1_id.clone(),
            },
        ];
        assert!(f.store.apply_changes(o, &bad, &[event("x")]).await.is_err());
        assert_eq!(f.store.groups(o).await.unwrap().len(), 2, "nothing half-applied");

        // Deleting the user group ends its members' inherited profile.
        f.store
            .apply_changes(
                o,
                &[Change::DeleteGroup {
                    name: "marketers".into(),
                }],
                &[],
            )
            .await
            .unwrap();
        assert!(f.store.held_profiles(&p1_id, None).await.unwrap().is_empty());

        let grant = RoleGrant {
            user_id: p1_id.clone(),
            role: AdminRole::ProfileAdmin,
            target: groups[0].0.id.to_string(),
        };
        f.store
            .set_role(&grant, true, now(), &event("role.grant"))
            .await
            .unwrap();
        f.store
            .set_role(&grant, true, now(), &event("role.grant"))
            .await
            .unwrap();
        assert_eq!(f.store.role_grants(&p1_id).await.unwrap(), vec![grant.clone()]);
        f.store
            .set_role(&grant, false, now(), &event("role.revoke"))
            .await
            .unwrap();
        assert!(f.store.role_grants(&p1_id).await.unwrap().is_empty());
        f.cleanup().await;
    }
}

/// Developer Console projects and credentials: one transaction per creation, a first secret
/// taken once (and not at all once too old), scopes merged, deletion leaving nothing behind.
#[tokio::test]
async fn developer_console_on_both_backends() {
    use ims_identity::developer::{Project, Workspace};
    use ims_identity::directory::{Group, CAMPAIGN_PRODUCT_CONTEXT};
    use ims_identity::store::{DeveloperStore, DirectoryStore, NewTechnicalAccount};
    use ims_identity::umapi::Change;
    for f in each_backend().await {
        let (org, _, _) = seeded(&f.store).await;
        let o = org.org_id.as_str();
        let instance = f
            .store
            .ensure_product_instance(o, CAMPAIGN_PRODUCT_CONTEXT, "marketing", "Marketing", "", now())
            .await
            .unwrap();
        let profile = Group::product_profile(o, "campaign - marketing - admin", &instance, now());
        f.store
            .apply_changes(o, &[Change::CreateGroup(profile)], &[event("profile.create")])
            .await
            .unwrap();
        let profile_id = f
            .store
            .group(o, "campaign - marketing - admin")
            .await
            .unwrap()
            .unwrap()
            .id;

        let project = Project::new(o, "sync-job", "", "", "default", "admin:a@b.c", now()).unwrap();
        let workspace = Workspace::new(&project.id, "Production", "", "", now()).unwrap();
        let client =
            OAuthClient::new_technical_account(o, "Sync", vec!["openid".into()], "ims.test", now()).unwrap();
        let secret = ClientSecretRecord {
            secret_id: "first".into(),
            client_id: client.client_id.clone(),
            digest: "d".into(),
            hint: "imscs_...wxyz".into(),
            created_at: now(),
            expires_at: None,
        };
        let services = vec!["CampaignSDK".to_owned()];
        let new = NewTechnicalAccount {
            client: &client,
            secret: &secret,
            unshown: Some("sealed-value"),
            new_project: Some((&project, &workspace)),
            placement: Some((&workspace.id, "nightly")),
            services: &services,
            profiles: &[profile_id],
            audit: &[event("project.create"), event("credential.create")],
        };
        f.store.create_technical_account(&new).await.unwrap();
        // The same project again: nothing of the second attempt stays.
        let twin = OAuthClient::new_technical_account(o, "Twin", vec![], "ims.test", now()).unwrap();
        let twin_secret = ClientSecretRecord {
            client_id: twin.client_id.clone(),
            secret_id: "twin".into(),
            ..secret.clone()
        };
        let again = NewTechnicalAccount {
            client: &twin,
            secret: &twin_secret,
            ..new
        };
        assert!(matches!(
            f.store.create_technical_account(&again).await,
            Err(StoreError::Conflict(_))
        ));
        assert!(
            f.store.client(&twin.client_id).await.unwrap().is_none(),
            "all or nothing"
        );

        let placed = f
            .store
            .credential_placement(&client.client_id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (placed.project_id.as_str(), placed.description.as_str()),
            (project.id.as_str(), "nightly")
        );
        assert_eq!(
            f.store.workspace_credentials(&workspace.id).await.unwrap(),
            vec![client.client_id.clone()]
        );
        assert_eq!(
            f.store
                .credential_profiles(&client.client_id, None)
                .await
                .unwrap()
                .len(),
            1
        );

        // Scopes are added to what the credential has, each once.
        f.store
            .subscribe(
                &client.client_id,
                &["AdobeIOManagementAPISDK".to_owned()],
                &["openid".to_owned(), "adobeio_api".to_owned()],
                &[(profile_id, false)],
                &event("credential.subscribe"),
            )
            .await
            .unwrap();
        let stored = f.store.client(&client.client_id).await.unwrap().unwrap();
        assert_eq!(stored.scopes, vec!["openid".to_owned(), "adobeio_api".to_owned()]);
        assert_eq!(
            f.store
                .credential_services(&client.client_id)
                .await
                .unwrap()
                .len(),
            2
        );
        assert!(f
            .store
            .credential_profiles(&client.client_id, None)
            .await
            .unwrap()
            .is_empty());

        // The sealed copy goes to one taker, with its audit line.
        let show = ctx().event("credential.secret.show", &client.client_id, "success", json!({}));
        assert_eq!(
            f.store.unshown_secrets(&client.client_id).await.unwrap(),
            vec!["first".to_owned()]
        );
        let taken = f
            .store
            .take_unshown_secrets(&client.client_id, now(), &show)
            .await
            .unwrap();
        assert_eq!(taken, vec![("first".to_owned(), "sealed-value".to_owned())]);
        assert!(f
            .store
            .take_unshown_secrets(&client.client_id, now(), &show)
            .await
            .unwrap()
            .is_empty());
        let lines = f
            .store
            .audit(&ims_core::audit::AuditQuery {
                action_prefix: Some("credential.secret.show".into()),
                limit: 10,
            })
            .await
            .unwrap();
        assert_eq!(
            (lines.len(), &lines[0].details["secret_ids"]),
            (1, &json!(["first"]))
        );
        // Too old to be shown: dropped unseen.
        let late = ClientSecretRecord {
            secret_id: "late".into(),
            ..secret.clone()
        };
        let other = OAuthClient::new_technical_account(o, "Late", vec![], "ims.test", now()).unwrap();
        let late = ClientSecretRecord {
            client_id: other.client_id.clone(),
            ..late
        };
        f.store
            .create_technical_account(&NewTechnicalAccount {
                client: &other,
                secret: &late,
                unshown: Some("sealed-late"),
                new_project: None,
                placement: Some((&workspace.id, "")),
                services: &[],
                profiles: &[],
                audit: &[event("credential.create")],
            })
            .await
            .unwrap();
        let after = Now::from_millis(now().millis() + 1);
        assert!(f
            .store
            .take_unshown_secrets(&other.client_id, after, &show)
            .await
            .unwrap()
            .is_empty());
        assert!(
            f.store
                .unshown_secrets(&other.client_id)
                .await
                .unwrap()
                .is_empty(),
            "dropped"
        );

        // The last live secret stays; an expired one does not count.
        assert!(matches!(
            f.store
                .remove_secret_keeping_one(
                    &client.client_id,
                    "first",
                    now(),
                    &event("credential.secret.remove")
                )
                .await,
            Err(StoreError::Conflict(_))
        ));
        assert!(!f
            .store
            .remove_secret_keeping_one(
                &client.client_id,
                "nope",
                now(),
                &event("credential.secret.remove")
            )
            .await
            .unwrap());

        // A project holding credentials stays; deleting them leaves nothing behind.
        assert!(matches!(
            f.store
                .delete_project(o, &project.id, &event("project.delete"))
                .await,
            Err(StoreError::Conflict(_))
        ));
        for c in [&client.client_id, &other.client_id] {
            assert!(f
                .store
                .delete_client(c, &event("credential.delete"))
                .await
                .unwrap());
            assert!(f.store.client_with_secrets(c).await.unwrap().is_none());
            assert!(f.store.credential_services(c).await.unwrap().is_empty());
            assert!(f.store.credential_placement(c).await.unwrap().is_none());
        }
        assert!(!f
            .store
            .delete_client(&client.client_id, &event("credential.delete"))
            .await
            .unwrap());
        assert!(f
            .store
            .delete_project(o, &project.id, &event("project.delete"))
            .await
            .unwrap());
        assert!(f.store.project(o, &project.id).await.unwrap().is_none());
        assert!(f.store.workspaces(&project.id).await.unwrap().is_empty());
        f.cleanup().await;
    }
}

/// The migration engine's journal, on both backends: plans stored once, steps recorded before
/// and after they act, a restarted step started again.
#[tokio::test]
async fn the_migration_journal_records_plans_and_steps() {
    use ims_journal::SqlJournal;
    use ims_migration::journal::{Journal as _, PlanRecord, StepEnd, StepKey, StepState};
    for m in ims_journal::JOURNAL_MIGRATIONS {
        assert!(!m.sqlite.trim().is_empty() && !m.postgres.trim().is_empty());
    }
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let dir = tempfile::tempdir().unwrap();
        let (opts, schema) = match backend {
            Backend::Sqlite => (
                Options::new(format!("sqlite://{}", dir.path().join("journal.db").display())),
                None,
            ),
            Backend::Postgres => {
                let Some(url) = pg_url() else { continue };
                let schema = fresh_schema();
                let mut o = Options::new(url);
                o.schema = Some(schema.clone());
                (o, Some(schema))
            }
        };
        let j = SqlJournal::open(&opts, now()).await.unwrap();
        let plan = PlanRecord {
            plan_id: "users-marketing-1".into(),
            instance: "marketing".into(),
            phase: "users".into(),
            created_at: Now::from_millis(1),
            body: "{}".into(),
            applied_at: None,
        };
        j.put_plan(&plan).await.unwrap();
        // Stored once: a second put keeps the first body.
        j.put_plan(&PlanRecord {
            body: "changed".into(),
            ..plan.clone()
        })
        .await
        .unwrap();
        assert_eq!(j.plan(&plan.plan_id).await.unwrap().unwrap().body, "{}");
        let key = |op: &str, action: &str| StepKey {
            operator: op.into(),
            action: action.into(),
        };
        j.begin_steps(
            &plan.plan_id,
            &[key("ana", "switch"), key("bo", "switch")],
            Now::from_millis(5),
        )
        .await
        .unwrap();
        j.end_steps(
            &plan.plan_id,
            &[StepEnd {
                key: key("ana", "switch"),
                state: StepState::Done,
                detail: String::new(),
            }],
            Now::from_millis(6),
        )
        .await
        .unwrap();
        let steps = j.steps(&plan.plan_id).await.unwrap();
        let states: Vec<(&str, StepState)> =
            steps.iter().map(|s| (s.key.operator.as_str(), s.state)).collect();
        assert_eq!(states, [("ana", StepState::Done), ("bo", StepState::Started)]);
        assert_eq!(steps[0].finished_at, Some(Now::from_millis(6)));
        // A step begun again (after a crash) starts over.
        j.begin_steps(&plan.plan_id, &[key("bo", "switch")], Now::from_millis(9))
            .await
            .unwrap();
        let bo = j.steps(&plan.plan_id).await.unwrap().pop().unwrap();
        assert_eq!(
            (bo.state, bo.started_at),
            (StepState::Started, Now::from_millis(9))
        );
        j.mark_applied(&plan.plan_id, Now::from_millis(10)).await.unwrap();
        j.mark_applied(&plan.plan_id, Now::from_millis(11)).await.unwrap();
        let stored = j.plans("marketing").await.unwrap();
        assert_eq!(stored.len(), 1);
        assert_eq!(
            stored[0].applied_at,
            Some(Now::from_millis(10)),
            "the first finish stays"
        );
        assert!(j.plans("mc").await.unwrap().is_empty());
        // Counted per state, the failed ones listed, without the plan's body or its steps read.
        j.end_steps(
            &plan.plan_id,
            &[StepEnd {
                key: key("bo", "switch"),
                state: StepState::Failed,
                detail: "drifted".into(),
            }],
            Now::from_millis(12),
        )
        .await
        .unwrap();
        j.begin_steps(&plan.plan_id, &[key("cy", "switch")], Now::from_millis(13))
            .await
            .unwrap();
        let p = j.progress("marketing").await.unwrap();
        assert_eq!(p.len(), 1);
        assert_eq!(
            (p[0].plan_id.as_str(), p[0].done, p[0].started, p[0].applied_at),
            (plan.plan_id.as_str(), 1, 1, Some(Now::from_millis(10)))
        );
        assert_eq!(p[0].failed.len(), 1);
        assert_eq!(
            (
                p[0].failed[0].key.operator.as_str(),
                p[0].failed[0].detail.as_str()
            ),
            ("bo", "drifted")
        );
        assert!(j.progress("mc").await.unwrap().is_empty());
        if let Some(s) = schema {
            j.drop_schema(&s).await.unwrap();
        }
        j.close().await;
    }
}
