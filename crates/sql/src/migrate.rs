//! Forward-only schema migrations. Both backends carry the same numbered steps (a test checks the
//! two sets match and yield the same tables and columns); each step runs in its own transaction,
//! and a database whose schema is newer than this build is refused rather than touched.

use sqlx::{AnyConnection, Connection as _, Row as _};

use crate::{backend_error, Backend};
use ims_core::error::StoreError;

/// One numbered step, with its text for each backend.
#[derive(Clone, Copy, Debug)]
pub struct Migration {
    pub version: i64,
    pub name: &'static str,
    pub sqlite: &'static str,
    pub postgres: &'static str,
}

impl Migration {
    pub fn sql(&self, backend: Backend) -> &'static str {
        match backend {
            Backend::Sqlite => self.sqlite,
            Backend::Postgres => self.postgres,
        }
    }
}

/// Serialises concurrent migrators on PostgreSQL (several nodes starting at once).
const PG_LOCK_KEY: i64 = 0x1a5_0001;

const CREATE_LEDGER: &str = "CREATE TABLE IF NOT EXISTS schema_migrations (
    version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)";

/// Versions applied so far; none when the ledger does not exist yet.
pub async fn applied<'c, E>(conn: E) -> Result<Vec<i64>, StoreError>
where
    E: sqlx::Executor<'c, Database = sqlx::Any>,
{
    let rows = sqlx::query("SELECT version FROM schema_migrations ORDER BY version")
        .fetch_all(conn)
        .await;
    let rows = match rows {
        Ok(rows) => rows,
        // No ledger yet means nothing applied; any other failure is a real error.
        Err(sqlx::Error::Database(e)) if is_missing_table(e.message()) => return Ok(Vec::new()),
        Err(e) => return Err(backend_error(e)),
    };
    rows.iter()
        .map(|r| r.try_get::<i64, _>(0).map_err(backend_error))
        .collect()
}

/// The steps of `set` the database has not applied, named `NNNN_name` (readiness).
pub async fn pending(pool: &sqlx::AnyPool, set: &[Migration]) -> Result<Vec<String>, StoreError> {
    let applied = applied(pool).await?;
    Ok(set
        .iter()
        .filter(|m| !applied.contains(&m.version))
        .map(|m| format!("{:04}_{}", m.version, m.name))
        .collect())
}

/// Refuses a database that has steps this build does not know.
pub fn check_not_newer(applied: &[i64], set: &[Migration]) -> Result<(), StoreError> {
    let known = set.last().map_or(0, |m| m.version);
    match applied.iter().max() {
        Some(&newest) if newest > known => Err(StoreError::Schema(format!(
            "the database schema is at version {newest}, newer than this build knows ({known}); upgrade ims"
        ))),
        _ => Ok(()),
    }
}

fn is_missing_table(message: &str) -> bool {
    message.contains("no such table") || message.contains("does not exist")
}

/// Applies the pending steps of `set` up to `version` (tests prove each step on data written
/// under the one before).
pub async fn run_to(
    pool: &sqlx::AnyPool,
    backend: Backend,
    now: ims_core::Now,
    set: &[Migration],
    version: i64,
) -> Result<Vec<i64>, StoreError> {
    let upto = set.iter().take_while(|m| m.version <= version).count();
    let mut conn = pool.acquire().await.map_err(backend_error)?;
    run(&mut conn, backend, now.millis(), &set[..upto]).await
}

/// Creates the schema the session's search path names first when it does not exist (a
/// deployment's own schema, set by `connect`), under the migrations' lock: `CREATE SCHEMA IF NOT
/// EXISTS` alone is not safe against another node running it at the same moment (one of them
/// fails on the catalogue's unique index).
async fn create_own_schema(tx: &mut AnyConnection) -> Result<(), StoreError> {
    let row = sqlx::query(
        "SELECT CASE WHEN current_schema() IS NULL THEN 1 ELSE 0 END AS missing,
                current_setting('search_path') AS path",
    )
    .fetch_one(&mut *tx)
    .await
    .map_err(backend_error)?;
    let missing: i32 = row.try_get("missing").map_err(backend_error)?;
    let path: String = row.try_get("path").map_err(backend_error)?;
    let first = path
        .split(',')
        .next()
        .unwrap_or_default()
        .trim()
        .trim_matches('"');
    if missing == 1 && crate::valid_schema_name(first) {
        sqlx::query(&format!("CREATE SCHEMA {first}"))
            .execute(&mut *tx)
            .await
            .map_err(backend_error)?;
    }
    Ok(())
}

/// The migrations' lock on PostgreSQL, held until the transaction ends.
async fn take_turn(tx: &mut AnyConnection) -> Result<(), StoreError> {
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(PG_LOCK_KEY)
        .execute(&mut *tx)
        .await
        .map_err(backend_error)?;
    Ok(())
}

/// Applies every pending step on a dedicated connection; returns the versions applied.
///
/// Every pending step runs in one transaction: a step that fails leaves the schema as it was. On
/// PostgreSQL it first takes a transaction-level advisory lock: nodes starting together take
/// turns, the second finds the steps applied. Held by the transaction rather than the session,
/// the lock also holds through a pooler in transaction mode (PgBouncer), where consecutive
/// statements of one session may run on different server connections.
pub async fn run(
    conn: &mut AnyConnection,
    backend: Backend,
    now_ms: i64,
    set: &[Migration],
) -> Result<Vec<i64>, StoreError> {
    // SQLite: the write lock from the start, so that no other writer can slip in between the
    // ledger's read and the first step (SQLite would refuse the upgrade at once).
    let mut tx = match backend {
        Backend::Postgres => conn.begin().await,
        Backend::Sqlite => conn.begin_with("BEGIN IMMEDIATE").await,
    }
    .map_err(backend_error)?;
    if backend == Backend::Postgres {
        take_turn(&mut tx).await?;
        create_own_schema(&mut tx).await?;
    }
    let done = apply_pending(&mut tx, backend, now_ms, set).await?;
    tx.commit().await.map_err(backend_error)?;
    for m in set.iter().filter(|m| done.contains(&m.version)) {
        tracing::info!(version = m.version, name = m.name, "applied schema migration");
    }
    Ok(done)
}

/// Within one transaction: the ledger, then every step it does not hold.
async fn apply_pending(
    conn: &mut AnyConnection,
    backend: Backend,
    now_ms: i64,
    set: &[Migration],
) -> Result<Vec<i64>, StoreError> {
    sqlx::query(CREATE_LEDGER)
        .execute(&mut *conn)
        .await
        .map_err(backend_error)?;
    let before = applied(&mut *conn).await?;
    check_not_newer(&before, set)?;
    let mut done = Vec::new();
    for m in set.iter().filter(|m| !before.contains(&m.version)) {
        apply(conn, backend, now_ms, m).await?;
        done.push(m.version);
    }
    Ok(done)
}

/// One step and its line in the ledger.
async fn apply(
    conn: &mut AnyConnection,
    backend: Backend,
    now_ms: i64,
    m: &Migration,
) -> Result<(), StoreError> {
    sqlx::raw_sql(m.sql(backend))
        .execute(&mut *conn)
        .await
        .map_err(|e| StoreError::Schema(format!("migration {} ({}) failed: {e}", m.version, m.name)))?;
    sqlx::query("INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)")
        .bind(m.version)
        .bind(m.name)
        .bind(now_ms)
        .execute(&mut *conn)
        .await
        .map_err(backend_error)?;
    Ok(())
}
