//! Storage of the services: the IMS's store traits ([`SqlStore`]) and an instance's
//! ([`instance::InstanceDb`]), each in a database of its own, on SQLite (embedded, the default) or
//! PostgreSQL (shared by several nodes), over the plumbing of `ims-sql`. The DDL of each database
//! is in its numbered migrations (see [`migrate`]).

mod budget;
mod developer;
mod directory;
pub mod instance;
mod lockout;
pub mod migrate;
mod outbox;
mod people;
pub mod signal;

use async_trait::async_trait;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, AnyPool, Row as _};
use std::sync::Arc;

use ims_core::audit::AuditEvent;
use ims_core::error::StoreError;
use ims_core::keys::StoredKey;
use ims_core::Now;
use ims_identity::model::{
    ClientSecretRecord, ClientType, GrantType, IdentityType, OAuthClient, Organization, User, UserStatus,
};
use ims_identity::store::{
    AuditQuery, AuditStore, ClientChangeSignal, ClientStore, KeyStore, OrgStore, RevocationStore,
    SchemaStore, StoreResult,
};
use ims_sql::{
    backend_error, begin_write, connect, get, placeholders, value_rows, Connected, Writer, ROWS_PER_STATEMENT,
};
pub use ims_sql::{Backend, Options};

/// The one store implementation (see the module docs).
#[derive(Clone, Debug)]
pub struct SqlStore {
    pool: AnyPool,
    backend: Backend,
    writer: Writer,
    signal: Arc<signal::Signal>,
    listener: Option<Arc<tokio::task::JoinHandle<()>>>,
}

impl Drop for SqlStore {
    fn drop(&mut self) {
        // The last clone stops the change listener.
        if let Some(l) = self.listener.take() {
            if let Ok(handle) = Arc::try_unwrap(l) {
                handle.abort();
            }
        }
    }
}

impl SqlStore {
    pub async fn open(opts: &Options, now: Now) -> Result<Self, StoreError> {
        let Connected {
            pool,
            backend,
            writer,
            url,
            schema,
        } = connect(opts, now, migrate::MIGRATIONS).await?;
        let (signal, listener) = match backend {
            Backend::Sqlite => match ims_sql::sqlite_file(&url) {
                Some(path) => (signal::Signal::Sqlite(signal::SqliteSignal::new(path)), None),
                None => (signal::Signal::None, None),
            },
            Backend::Postgres => {
                let pg = Arc::new(signal::PgSignal::new(opts.change_poll));
                let listen_url = opts.listen_url.clone().unwrap_or_else(|| opts.url.clone());
                let listening = Arc::clone(&pg).listen(listen_url, schema);
                let polling = Arc::clone(&pg).poll(pool.clone());
                let task = tokio::spawn(async move {
                    tokio::join!(listening, polling);
                });
                (signal::Signal::Postgres(pg), Some(Arc::new(task)))
            }
        };
        Ok(SqlStore {
            pool,
            backend,
            writer,
            signal: Arc::new(signal),
            listener,
        })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Applies pending migrations (for `ims db migrate` against a store opened without them).
    pub async fn migrate(&self, now: Now) -> Result<Vec<i64>, StoreError> {
        let mut conn = self.pool.acquire().await.map_err(backend_error)?;
        ims_sql::migrate::run(&mut conn, self.backend, now.millis(), migrate::MIGRATIONS).await
    }

    /// Applies pending migrations up to `version` only: how the suite proves that each step
    /// carries the data written under the one before.
    pub async fn migrate_to(&self, version: i64, now: Now) -> Result<Vec<i64>, StoreError> {
        ims_sql::migrate::run_to(&self.pool, self.backend, now, migrate::MIGRATIONS, version).await
    }

    /// Writes a consistent copy of an SQLite database to `path` while it is in use (`VACUUM INTO`).
    /// Signing keys stay encrypted in the copy: restoring needs the same master key. PostgreSQL
    /// deployments back up with their own tools (`pg_dump`).
    pub async fn backup_to(&self, path: &str) -> Result<(), StoreError> {
        if self.backend != Backend::Sqlite {
            return Err(StoreError::Backend("back up PostgreSQL with pg_dump".into()));
        }
        if std::path::Path::new(path).exists() {
            return Err(StoreError::Backend(format!("{path} exists already")));
        }
        sqlx::query("VACUUM INTO $1")
            .bind(path)
            .execute(&self.pool)
            .await
            .map_err(backend_error)?;
        Ok(())
    }

    pub async fn close(&self) {
        if let Some(l) = &self.listener {
            l.abort();
        }
        self.pool.close().await;
    }

    /// Drops the PostgreSQL schema this store lives in (tests clean up after themselves).
    pub async fn drop_schema(&self, schema: &str) -> Result<(), StoreError> {
        ims_sql::drop_pg_schema(&self.pool, self.backend, schema).await
    }

    /// Table and column names of the live schema, for the test that both backends' migrations
    /// produce the same shape.
    pub async fn schema_shape(&self) -> Result<Vec<(String, String)>, StoreError> {
        let sql = match self.backend {
            Backend::Sqlite => {
                "SELECT m.name, p.name FROM sqlite_master m, pragma_table_info(m.name) p
                 WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite_%' ORDER BY 1, 2"
            }
            Backend::Postgres => {
                "SELECT table_name::text, column_name::text FROM information_schema.columns
                 WHERE table_schema = current_schema() ORDER BY 1, 2"
            }
        };
        let rows = sqlx::query(sql)
            .fetch_all(&self.pool)
            .await
            .map_err(backend_error)?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get::<String, _>(0).map_err(backend_error)?,
                    r.try_get::<String, _>(1).map_err(backend_error)?,
                ))
            })
            .collect()
    }
}

/// A statement being bound.
pub(crate) type AnyQuery<'q> = sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>;

/// Inserts `rows` into `into` (`table (columns)`), `width` values each as `bind` binds them, up
/// to [`ROWS_PER_STATEMENT`] rows to a statement.
pub(crate) async fn insert_rows<T>(
    tx: &mut AnyConnection,
    into: &str,
    width: usize,
    rows: &[T],
    bind: impl for<'q> Fn(AnyQuery<'q>, &'q T) -> AnyQuery<'q>,
) -> StoreResult<()> {
    for chunk in rows.chunks(ROWS_PER_STATEMENT) {
        let sql = format!(
            "INSERT INTO {into} VALUES {}",
            value_rows(Backend::of(tx), chunk.len(), width)
        );
        let mut q = sqlx::query(&sql);
        for row in chunk {
            q = bind(q, row);
        }
        q.execute(&mut *tx).await.map_err(backend_error)?;
    }
    Ok(())
}

const AUDIT_INTO: &str = "audit_log (at, actor, action, target, outcome, source, request_id, details)";

fn bind_audit<'q>(q: AnyQuery<'q>, e: &'q AuditEvent) -> AnyQuery<'q> {
    q.bind(e.at.millis())
        .bind(&e.actor)
        .bind(&e.action)
        .bind(&e.target)
        .bind(&e.outcome)
        .bind(e.source.clone())
        .bind(e.request_id.clone())
        .bind(e.details.to_string())
}

pub(crate) async fn audit_in<'c, E>(exec: E, e: &AuditEvent) -> StoreResult<()>
where
    E: sqlx::Executor<'c, Database = sqlx::Any>,
{
    let sql = format!("INSERT INTO {AUDIT_INTO} VALUES ({})", placeholders(1, 8));
    bind_audit(sqlx::query(&sql), e)
        .execute(exec)
        .await
        .map_err(backend_error)?;
    Ok(())
}

/// Several audit lines in as few statements as the backends' parameter limits allow.
pub(crate) async fn audit_many(tx: &mut AnyConnection, events: &[AuditEvent]) -> StoreResult<()> {
    insert_rows(tx, AUDIT_INTO, 8, events, bind_audit).await
}

pub(crate) fn words(s: &str) -> Vec<String> {
    s.split(' ')
        .filter(|w| !w.is_empty())
        .map(str::to_owned)
        .collect()
}

fn org_from(row: &AnyRow) -> StoreResult<Organization> {
    Ok(Organization {
        org_id: get(row, "org_id")?,
        numeric_id: get(row, "numeric_id")?,
        name: get(row, "name")?,
        created_at: Now::from_millis(get(row, "created_at")?),
        require_totp: get::<i64>(row, "require_totp")? != 0,
    })
}

pub(crate) const USER_COLUMNS: &str = "user_id, org_id, email, first_name, last_name, password_hash, system_admin, \
     created_at, identity_type, status, country, totp_sealed, recovery_codes, sessions_valid_after, updated_at, \
     totp_last_step, first_sign_in_at";

pub(crate) fn user_from(row: &AnyRow) -> StoreResult<User> {
    let identity: String = get(row, "identity_type")?;
    let status: String = get(row, "status")?;
    Ok(User {
        user_id: get(row, "user_id")?,
        org_id: get(row, "org_id")?,
        email: get(row, "email")?,
        first_name: get(row, "first_name")?,
        last_name: get(row, "last_name")?,
        password_hash: get(row, "password_hash")?,
        system_admin: get::<i64>(row, "system_admin")? != 0,
        created_at: Now::from_millis(get(row, "created_at")?),
        identity_type: IdentityType::parse(&identity)
            .ok_or_else(|| StoreError::Backend(format!("unknown identity type {identity:?}")))?,
        status: UserStatus::parse(&status)
            .ok_or_else(|| StoreError::Backend(format!("unknown user status {status:?}")))?,
        country: get(row, "country")?,
        totp_sealed: get(row, "totp_sealed")?,
        totp_last_step: get(row, "totp_last_step")?,
        recovery_codes: words(&get::<String>(row, "recovery_codes")?),
        sessions_valid_after: Now::from_millis(get(row, "sessions_valid_after")?),
        updated_at: Now::from_millis(get(row, "updated_at")?),
        first_sign_in_at: get::<Option<i64>>(row, "first_sign_in_at")?.map(Now::from_millis),
    })
}

/// Inserts users, several to a statement; a taken email (case-insensitively, within the
/// organisation) is a conflict.
pub(crate) async fn insert_users(tx: &mut AnyConnection, users: &[&User]) -> StoreResult<()> {
    let into = format!("users ({USER_COLUMNS}, email_lower)");
    insert_rows(tx, &into, 18, users, |q, u| {
        q.bind(&u.user_id)
            .bind(&u.org_id)
            .bind(&u.email)
            .bind(&u.first_name)
            .bind(&u.last_name)
            .bind(u.password_hash.clone())
            .bind(i64::from(u.system_admin))
            .bind(u.created_at.millis())
            .bind(u.identity_type.as_str())
            .bind(u.status.as_str())
            .bind(u.country.clone())
            .bind(u.totp_sealed.clone())
            .bind(u.recovery_codes.join(" "))
            .bind(u.sessions_valid_after.millis())
            .bind(u.updated_at.millis())
            .bind(u.totp_last_step)
            .bind(u.first_sign_in_at.map(Now::millis))
            .bind(u.email.to_lowercase())
    })
    .await
}

const CLIENT_COLUMNS: &str =
    "client_id, org_id, name, technical_account_id, technical_account_email, scopes, \
     grant_types, disabled, created_at, updated_at, client_type, first_party";

fn client_from(row: &AnyRow) -> StoreResult<OAuthClient> {
    let grants: String = get(row, "grant_types")?;
    Ok(OAuthClient {
        client_id: get(row, "client_id")?,
        org_id: get(row, "org_id")?,
        name: get(row, "name")?,
        technical_account_id: get(row, "technical_account_id")?,
        technical_account_email: get(row, "technical_account_email")?,
        scopes: words(&get::<String>(row, "scopes")?),
        grant_types: words(&grants)
            .iter()
            .filter_map(|g| GrantType::parse(g))
            .collect(),
        disabled: get::<i64>(row, "disabled")? != 0,
        created_at: Now::from_millis(get(row, "created_at")?),
        updated_at: Now::from_millis(get(row, "updated_at")?),
        client_type: {
            let t: String = get(row, "client_type")?;
            ClientType::parse(&t).ok_or_else(|| StoreError::Backend(format!("unknown client type {t:?}")))?
        },
        first_party: get::<i64>(row, "first_party")? != 0,
        // Filled in by `with_redirect_uris` for clients that sign people in.
        redirect_uris: Vec::new(),
    })
}

impl SqlStore {
    /// Reads the registered redirect URIs of a client that signs people in.
    async fn with_redirect_uris(&self, mut c: OAuthClient) -> StoreResult<OAuthClient> {
        if c.client_type != ClientType::TechnicalAccount {
            let rows = sqlx::query("SELECT uri FROM client_redirect_uris WHERE client_id = $1 ORDER BY uri")
                .bind(&c.client_id)
                .fetch_all(&self.pool)
                .await
                .map_err(backend_error)?;
            c.redirect_uris = rows.iter().map(|r| get(r, "uri")).collect::<StoreResult<_>>()?;
        }
        Ok(c)
    }
}

fn secret_from(row: &AnyRow) -> StoreResult<ClientSecretRecord> {
    Ok(ClientSecretRecord {
        secret_id: get(row, "secret_id")?,
        client_id: get(row, "client_id")?,
        digest: get(row, "digest")?,
        hint: get(row, "hint")?,
        created_at: Now::from_millis(get(row, "created_at")?),
        expires_at: get::<Option<i64>>(row, "expires_at")?.map(Now::from_millis),
    })
}

fn key_from(row: &AnyRow) -> StoreResult<StoredKey> {
    let alg: String = get(row, "alg")?;
    Ok(StoredKey {
        kid: get(row, "kid")?,
        alg: alg
            .parse()
            .map_err(|_| StoreError::Backend(format!("stored key has unknown alg {alg:?}")))?,
        public_jwk: get(row, "public_jwk")?,
        sealed_private: get(row, "sealed_private")?,
        created_at: Now::from_millis(get(row, "created_at")?),
        activates_at: Now::from_millis(get(row, "activates_at")?),
    })
}

/// Inserts a secret's record; `unshown` is its sealed copy, kept until it is shown once.
async fn insert_secret<'c, E>(exec: E, s: &ClientSecretRecord, unshown: Option<&str>) -> StoreResult<()>
where
    E: sqlx::Executor<'c, Database = sqlx::Any>,
{
    sqlx::query(
        "INSERT INTO client_secrets (secret_id, client_id, digest, hint, created_at, expires_at, unshown)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(&s.secret_id)
    .bind(&s.client_id)
    .bind(&s.digest)
    .bind(&s.hint)
    .bind(s.created_at.millis())
    .bind(s.expires_at.map(Now::millis))
    .bind(unshown.map(str::to_owned))
    .execute(exec)
    .await
    .map_err(backend_error)?;
    Ok(())
}

/// Inserts a client with its redirect URIs inside `tx`.
async fn insert_client(tx: &mut AnyConnection, c: &OAuthClient) -> StoreResult<()> {
    let grants: Vec<&str> = c.grant_types.iter().map(|g| g.as_str()).collect();
    sqlx::query(&format!(
            "INSERT INTO oauth_clients ({CLIENT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
        ))
        .bind(&c.client_id)
        .bind(&c.org_id)
        .bind(&c.name)
        .bind(&c.technical_account_id)
        .bind(&c.technical_account_email)
        .bind(c.scopes.join(" "))
        .bind(grants.join(" "))
        .bind(i64::from(c.disabled))
        .bind(c.created_at.millis())
        .bind(c.updated_at.millis())
        .bind(c.client_type.as_str())
        .bind(i64::from(c.first_party))
        .execute(&mut *tx)
        .await
        .map_err(backend_error)?;
    for uri in &c.redirect_uris {
        sqlx::query("INSERT INTO client_redirect_uris (client_id, uri) VALUES ($1, $2)")
            .bind(&c.client_id)
            .bind(uri)
            .execute(&mut *tx)
            .await
            .map_err(backend_error)?;
    }
    Ok(())
}

#[async_trait]
impl OrgStore for SqlStore {
    async fn bootstrap(&self, org: &Organization, admin: &User, audit: &AuditEvent) -> StoreResult<bool> {
        let mut tx = begin_write(&self.pool, &self.writer).await?;
        let existing = sqlx::query("SELECT org_id FROM organizations LIMIT 1")
            .fetch_optional(&mut *tx)
            .await
            .map_err(backend_error)?;
        if existing.is_some() {
            return Ok(false);
        }
        sqlx::query(
            "INSERT INTO organizations (org_id, numeric_id, name, created_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(&org.org_id)
        .bind(org.numeric_id)
        .bind(&org.name)
        .bind(org.created_at.millis())
        .execute(&mut *tx)
        .await
        .map_err(backend_error)?;
        insert_users(&mut tx, &[admin]).await?;
        audit_in(&mut *tx, audit).await?;
        tx.commit().await.map_err(backend_error)?;
        Ok(true)
    }

    async fn org(&self, org_id: &str) -> StoreResult<Option<Organization>> {
        let row = sqlx::query(
            "SELECT org_id, numeric_id, name, created_at, require_totp FROM organizations WHERE org_id = $1",
        )
        .bind(org_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(backend_error)?;
        row.as_ref().map(org_from).transpose()
    }

    async fn orgs(&self) -> StoreResult<Vec<Organization>> {
        let rows = sqlx::query(
            "SELECT org_id, numeric_id, name, created_at, require_totp FROM organizations ORDER BY created_at, org_id",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(backend_error)?;
        rows.iter().map(org_from).collect()
    }

    async fn set_require_totp(&self, org_id: &str, required: bool, audit: &AuditEvent) -> StoreResult<()> {
        let mut tx = begin_write(&self.pool, &self.writer).await?;
        sqlx::query("UPDATE organizations SET require_totp = $1 WHERE org_id = $2")
            .bind(i64::from(required))
            .bind(org_id)
            .execute(&mut *tx)
            .await
            .map_err(backend_error)?;
        audit_in(&mut *tx, audit).await?;
        tx.commit().await.map_err(backend_error)
    }
}

#[async_trait]
impl ClientStore for SqlStore {
    async fn create_client(
        &self,
        c: &OAuthClient,
        secret: Option<&ClientSecretRecord>,
        audit: &AuditEvent,
    ) -> StoreResult<()> {
        let mut tx = begin_write(&self.pool, &self.writer).await?;
        insert_client(&mut tx, c).await?;
        if let Some(secret) = secret {
            insert_secret(&mut *tx, secret, None).await?;
        }
        audit_in(&mut *tx, audit).await?;
        tx.commit().await.map_err(backend_error)?;
        self.signal.changed_here();
        Ok(())
    }

    async fn client(&self, client_id: &str) -> StoreResult<Option<OAuthClient>> {
        let row = sqlx::query(&format!(
            "SELECT {CLIENT_COLUMNS} FROM oauth_clients WHERE client_id = $1"
        ))
        .bind(client_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(backend_error)?;
        match row.as_ref().map(client_from).transpose()? {
            Some(c) => Ok(Some(self.with_redirect_uris(c).await?)),
            None => Ok(None),
        }
    }

    async fn client_with_secrets(
        &self,
        client_id: &str,
    ) -> StoreResult<Option<(OAuthClient, Vec<ClientSecretRecord>)>> {
        // One statement: the client row repeated for each of its secrets (or once, with nulls),
        // then once for each of its redirect URIs.
        let rows = sqlx::query(
            "SELECT c.client_id, c.org_id, c.name, c.technical_account_id, c.technical_account_email, c.scopes,
                    c.grant_types, c.disabled, c.created_at, c.updated_at, c.client_type, c.first_party,
                    s.secret_id, s.digest, s.hint, s.created_at AS s_created_at, s.expires_at, NULL AS uri
             FROM oauth_clients c LEFT JOIN client_secrets s ON s.client_id = c.client_id
             WHERE c.client_id = $1
             UNION ALL
             SELECT c.client_id, c.org_id, c.name, c.technical_account_id, c.technical_account_email, c.scopes,
                    c.grant_types, c.disabled, c.created_at, c.updated_at, c.client_type, c.first_party,
                    NULL, NULL, NULL, NULL, NULL, r.uri
             FROM oauth_clients c JOIN client_redirect_uris r ON r.client_id = c.client_id
             WHERE c.client_id = $1",
        )
        .bind(client_id)
        .fetch_all(&self.pool)
        .await
        .map_err(backend_error)?;
        let Some(first) = rows.first() else {
            return Ok(None);
        };
        let mut client = client_from(first)?;
        let mut secrets = Vec::with_capacity(rows.len());
        for row in &rows {
            if let Some(uri) = get::<Option<String>>(row, "uri")? {
                if client.client_type != ClientType::TechnicalAccount {
                    client.redirect_uris.push(uri);
                }
                continue;
            }
            let Some(secret_id) = get::<Option<String>>(row, "secret_id")? else {
                continue;
            };
            secrets.push(ClientSecretRecord {
                secret_id,
                client_id: client.client_id.clone(),
                digest: get(row, "digest")?,
                hint: get(row, "hint")?,
                created_at: Now::from_millis(get(row, "s_created_at")?),
                expires_at: get::<Option<i64>>(row, "expires_at")?.map(Now::from_millis),
            });
        }
        client.redirect_uris.sort();
        Ok(Some((client, secrets)))
    }

    async fn clients(&self, org_id: &str) -> StoreResult<Vec<OAuthClient>> {
        let rows = sqlx::query(&format!(
            "SELECT {CLIENT_COLUMNS} FROM oauth_clients WHERE org_id = $1 ORDER BY created_at, client_id"
        ))
        .bind(org_id)
        .fetch_all(&self.pool)
        .await
        .map_err(backend_error)?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            out.push(self.with_redirect_uris(client_from(row)?).await?);
        }
        Ok(out)
    }

    async fn set_client_disabled(
        &self,
        client_id: &str,
        disabled: bool,
        now: Now,
        audit: &AuditEvent,
    ) -> StoreResult<bool> {
        let mut tx = begin_write(&self.pool, &self.writer).await?;
        let done =
            sqlx::query("UPDATE oauth_clients SET disabled = $1, updated_at = $2 WHERE client_id = $3")
                .bind(i64::from(disabled))
                .bind(now.millis())
                .bind(client_id)
                .execute(&mut *tx)
                .await
                .map_err(backend_error)?
                .rows_affected()
                > 0;
        if done {
            audit_in(&mut *tx, audit).await?;
        }
        tx.commit().await.map_err(backend_error)?;
        self.signal.changed_here();
        Ok(done)
    }

    async fn secrets(&self, client_id: &str) -> StoreResult<Vec<ClientSecretRecord>> {
        let rows = sqlx::query(
            "SELECT secret_id, client_id, digest, hint, created_at, expires_at FROM client_secrets
             WHERE client_id = $1 ORDER BY created_at, secret_id",
        )
        .bind(client_id)
        .fetch_all(&self.pool)
        .await
        .map_err(backend_error)?;
        rows.iter().map(secret_from).collect()
    }

    async fn add_secret(&self, secret: &ClientSecretRecord, audit: &AuditEvent) -> StoreResult<()> {
        let mut tx = begin_write(&self.pool, &self.writer).await?;
        insert_secret(&mut *tx, secret, None).await?;
        audit_in(&mut *tx, audit).await?;
        tx.commit().await.map_err(backend_error)?;
        self.signal.changed_here();
        Ok(())
    }

    async fn remove_secret(&self, client_id: &str, secret_id: &str, audit: &AuditEvent) -> StoreResult<bool> {
        self.delete_secret(client_id, secret_id, None, audit).await
    }
}

impl SqlStore {
    /// Deletes a secret with its audit line; false when the credential has no such secret.
    /// With `keep_one_live_at`, the credential is locked first and the deletion is refused (a
    /// conflict, nothing changed) when no other secret would be live at that instant, so that
    /// two concurrent removals cannot both pass.
    pub(crate) async fn delete_secret(
        &self,
        client_id: &str,
        secret_id: &str,
        keep_one_live_at: Option<Now>,
        audit: &AuditEvent,
    ) -> StoreResult<bool> {
        let mut tx = begin_write(&self.pool, &self.writer).await?;
        if keep_one_live_at.is_some() {
            lock_client(&mut tx, self.backend, client_id).await?;
        }
        let done = sqlx::query("DELETE FROM client_secrets WHERE client_id = $1 AND secret_id = $2")
            .bind(client_id.to_owned())
            .bind(secret_id.to_owned())
            .execute(&mut *tx)
            .await
            .map_err(backend_error)?
            .rows_affected()
            > 0;
        if !done {
            return Ok(false);
        }
        if let Some(now) = keep_one_live_at {
            let live: i64 = sqlx::query(
                "SELECT COUNT(*) AS n FROM client_secrets WHERE client_id = $1 AND (expires_at IS NULL OR expires_at > $2)",
            )
            .bind(client_id.to_owned())
            .bind(now.millis())
            .fetch_one(&mut *tx)
            .await
            .map_err(backend_error)
            .and_then(|r| get(&r, "n"))?;
            if live == 0 {
                // Dropping `tx` rolls the removal back.
                return Err(StoreError::Conflict(
                    "this is the credential's last live secret: add a new one first, or delete the credential"
                        .into(),
                ));
            }
        }
        audit_in(&mut *tx, audit).await?;
        tx.commit().await.map_err(backend_error)?;
        self.signal.changed_here();
        Ok(true)
    }
}

/// Locks a credential for the rest of `tx`, so that changes that read before they write (its
/// scopes, its count of secrets) follow one another. On SQLite the write transaction holds the
/// database's one write lock already; PostgreSQL locks the row.
pub(crate) async fn lock_client(
    tx: &mut AnyConnection,
    backend: Backend,
    client_id: &str,
) -> StoreResult<()> {
    if backend == Backend::Postgres {
        sqlx::query("SELECT client_id FROM oauth_clients WHERE client_id = $1 FOR UPDATE")
            .bind(client_id.to_owned())
            .execute(&mut *tx)
            .await
            .map_err(backend_error)?;
    }
    Ok(())
}

#[async_trait]
impl KeyStore for SqlStore {
    async fn insert_key(&self, k: &StoredKey, audit: &AuditEvent) -> StoreResult<()> {
        let mut tx = begin_write(&self.pool, &self.writer).await?;
        sqlx::query(
            "INSERT INTO signing_keys (kid, alg, public_jwk, sealed_private, created_at, activates_at)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&k.kid)
        .bind(k.alg.as_str())
        .bind(&k.public_jwk)
        .bind(&k.sealed_private)
        .bind(k.created_at.millis())
        .bind(k.activates_at.millis())
        .execute(&mut *tx)
        .await
        .map_err(backend_error)?;
        audit_in(&mut *tx, audit).await?;
        tx.commit().await.map_err(backend_error)
    }

    async fn keys(&self) -> StoreResult<Vec<StoredKey>> {
        let rows = sqlx::query(
            "SELECT kid, alg, public_jwk, sealed_private, created_at, activates_at FROM signing_keys
             ORDER BY activates_at, kid",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(backend_error)?;
        rows.iter().map(key_from).collect()
    }

    async fn delete_keys(&self, kids: &[String], audit: &AuditEvent) -> StoreResult<()> {
        let mut tx = begin_write(&self.pool, &self.writer).await?;
        for kid in kids {
            sqlx::query("DELETE FROM signing_keys WHERE kid = $1")
                .bind(kid)
                .execute(&mut *tx)
                .await
                .map_err(backend_error)?;
        }
        audit_in(&mut *tx, audit).await?;
        tx.commit().await.map_err(backend_error)
    }
}

#[async_trait]
impl RevocationStore for SqlStore {
    async fn revoke_token(
        &self,
        token_id: &str,
        client_id: &str,
        expires_at: Now,
        now: Now,
        audit: &AuditEvent,
    ) -> StoreResult<()> {
        let mut tx = begin_write(&self.pool, &self.writer).await?;
        sqlx::query(
            "INSERT INTO revoked_tokens (token_id, client_id, expires_at, revoked_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (token_id) DO NOTHING",
        )
        .bind(token_id)
        .bind(client_id)
        .bind(expires_at.millis())
        .bind(now.millis())
        .execute(&mut *tx)
        .await
        .map_err(backend_error)?;
        audit_in(&mut *tx, audit).await?;
        tx.commit().await.map_err(backend_error)
    }

    async fn is_revoked(&self, token_id: &str) -> StoreResult<bool> {
        Ok(sqlx::query("SELECT 1 FROM revoked_tokens WHERE token_id = $1")
            .bind(token_id)
            .fetch_optional(&self.pool)
            .await
            .map_err(backend_error)?
            .is_some())
    }

    async fn purge_revocations(&self, now: Now) -> StoreResult<u64> {
        Ok(sqlx::query("DELETE FROM revoked_tokens WHERE expires_at < $1")
            .bind(now.millis())
            .execute(&self.pool)
            .await
            .map_err(backend_error)?
            .rows_affected())
    }
}

#[async_trait]
impl AuditStore for SqlStore {
    async fn append_audit(&self, event: &AuditEvent) -> StoreResult<()> {
        audit_in(&self.pool, event).await
    }

    async fn audit(&self, q: &AuditQuery) -> StoreResult<Vec<AuditEvent>> {
        audit_query(&self.pool, q).await
    }
}

/// Reads an `audit_log` table (the IMS's and each instance's have the same shape).
pub(crate) async fn audit_query(pool: &AnyPool, q: &AuditQuery) -> StoreResult<Vec<AuditEvent>> {
    let limit = i64::from(if q.limit == 0 { 100 } else { q.limit.min(10_000) });
    // The prefix is matched literally: `_` and `%` (common in action names) are escaped.
    let prefix = format!(
        "{}%",
        q.action_prefix
            .as_deref()
            .unwrap_or("")
            .replace('\\', "\\\\")
            .replace('%', "\\%")
            .replace('_', "\\_")
    );
    let rows = sqlx::query(
        "SELECT at, actor, action, target, outcome, source, request_id, details FROM audit_log
         WHERE action LIKE $1 ESCAPE '\\' ORDER BY seq DESC LIMIT $2",
    )
    .bind(prefix)
    .bind(limit)
    .fetch_all(pool)
    .await
    .map_err(backend_error)?;
    rows.iter()
        .map(|r| {
            let details: String = get(r, "details")?;
            Ok(AuditEvent {
                at: Now::from_millis(get(r, "at")?),
                actor: get(r, "actor")?,
                action: get(r, "action")?,
                target: get(r, "target")?,
                outcome: get(r, "outcome")?,
                source: get(r, "source")?,
                request_id: get(r, "request_id")?,
                details: serde_json::from_str(&details).unwrap_or(serde_json::Value::String(details)),
            })
        })
        .collect()
}

#[async_trait]
impl SchemaStore for SqlStore {
    async fn pending_migrations(&self) -> StoreResult<Vec<String>> {
        Ok(ims_sql::migrate::pending(&self.pool, migrate::MIGRATIONS).await?)
    }

    fn connections(&self) -> ims_identity::store::Connections {
        connections_of(&self.pool)
    }
}

/// A pool's connections, for metrics.
pub(crate) fn connections_of(pool: &AnyPool) -> ims_identity::store::Connections {
    ims_identity::store::Connections {
        open: pool.size(),
        idle: u32::try_from(pool.num_idle()).unwrap_or(u32::MAX),
        max: pool.options().get_max_connections(),
    }
}

impl ClientChangeSignal for SqlStore {
    fn client_generation(&self) -> Option<u64> {
        self.signal.generation()
    }
}
