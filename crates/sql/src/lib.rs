//! What every database of the product shares, whoever owns its tables: the two backends and how to
//! reach them, the numbered-migration runner, and the single-writer discipline SQLite needs.
//! The IMS's store, each instance's store and the migration engine's journal are each a database
//! of their own built on this; none of them sees another's tables.
//!
//! Both backends run the same statements through sqlx's `Any` driver: the SQL is kept to what both
//! dialects accept (`$n` parameters, `ON CONFLICT`, 64-bit integers for times and flags), so there
//! is one implementation to test rather than two to keep in step by hand. What differs, the DDL,
//! lives in each owner's numbered migrations (see [`migrate`]).

pub mod migrate;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions, AnyRow};
use sqlx::{AnyConnection, AnyPool, Connection as _, Row as _};
use std::str::FromStr as _;
use std::sync::Arc;
use std::time::Duration;

use ims_core::error::StoreError;
use ims_core::{Now, StoreResult};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    /// The backend a connection talks to.
    pub fn of(conn: &AnyConnection) -> Self {
        if conn.backend_name() == "PostgreSQL" {
            Backend::Postgres
        } else {
            Backend::Sqlite
        }
    }

    pub fn of_url(url: &str) -> Result<Self, StoreError> {
        if url.starts_with("sqlite:") {
            Ok(Backend::Sqlite)
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Ok(Backend::Postgres)
        } else {
            Err(StoreError::Backend(
                "database URL must start with sqlite:// or postgres://".into(),
            ))
        }
    }
}

/// How to open the store.
#[derive(Clone, Debug)]
pub struct Options {
    pub url: String,
    /// PostgreSQL only: the schema to use (created if missing). Lets several services or test runs
    /// share one database without colliding.
    pub schema: Option<String>,
    pub max_connections: u32,
    /// Apply pending migrations on open. When false, open still succeeds and readiness reports
    /// the pending steps.
    pub migrate: bool,
    /// PostgreSQL, the IMS's store: where to listen for change notifications, when `url` goes
    /// through a pooler that does not deliver them (PgBouncer in transaction mode); `url` when
    /// unset.
    pub listen_url: Option<String>,
    /// PostgreSQL, the IMS's store: how often the change counter is read, whatever the
    /// notifications do. What a node keeps in memory is at most twice this old.
    pub change_poll: Duration,
}

impl Options {
    pub fn new(url: impl Into<String>) -> Self {
        Options {
            url: url.into(),
            schema: None,
            max_connections: 16,
            migrate: true,
            listen_url: None,
            change_poll: Duration::from_secs(1),
        }
    }
}

pub fn backend_error(e: sqlx::Error) -> StoreError {
    match &e {
        sqlx::Error::Database(db) if db.is_unique_violation() || db.is_foreign_key_violation() => {
            StoreError::Conflict(db.message().to_owned())
        }
        _ => StoreError::Backend(e.to_string()),
    }
}

/// Who may write next. SQLite has one writer at a time per database, and a writer that finds
/// the lock taken waits in SQLite's busy handler, which sleeps (1, 2, 5, 10 ms and more) instead
/// of being woken: under concurrent writes most of the time goes to sleeping. On SQLite this
/// process's writers therefore queue here first, in order, each woken as the one before it
/// ends; another process on the same file still waits in the busy handler. PostgreSQL needs
/// no queue.
///
/// On a SQLite file the writes also go through a connection of their own. SQLite empties a
/// connection's page cache whenever another connection has written since it last read, so with
/// writes spread over the pool every write starts cold and reads its index pages again from the
/// file; the one connection that does all the writing keeps them warm.
#[derive(Clone, Debug)]
pub struct Writer {
    backend: Backend,
    turn: Option<Arc<tokio::sync::Semaphore>>,
    pool: Option<AnyPool>,
}

impl Writer {
    /// A writer without a connection of its own: writes run on the pool they are given.
    pub fn new(backend: Backend) -> Self {
        let turn = match backend {
            Backend::Sqlite => Some(Arc::new(tokio::sync::Semaphore::new(1))),
            Backend::Postgres => None,
        };
        Writer {
            backend,
            turn,
            pool: None,
        }
    }

    /// The pool a write runs on: the writer's own connection where it has one, else `pool`.
    pub fn pool<'a>(&'a self, pool: &'a AnyPool) -> &'a AnyPool {
        self.pool.as_ref().unwrap_or(pool)
    }

    /// Waits for this process's turn to write (nothing to wait for on PostgreSQL): a write
    /// transaction takes it in [`begin_write`]; a single statement that writes outside one holds
    /// it while it runs, on [`Writer::pool`].
    pub async fn turn(&self) -> StoreResult<Option<tokio::sync::OwnedSemaphorePermit>> {
        let Some(t) = &self.turn else {
            return Ok(None);
        };
        // Bounded like SQLite's own wait (`busy_timeout`): a writer stuck for that long is an
        // error to report, not a queue to hang in.
        match tokio::time::timeout(Duration::from_secs(10), Arc::clone(t).acquire_owned()).await {
            Ok(Ok(permit)) => Ok(Some(permit)),
            Ok(Err(e)) => Err(StoreError::Backend(e.to_string())),
            Err(_) => Err(StoreError::Backend(
                "database is locked: no turn to write within 10 s".into(),
            )),
        }
    }
}

/// A write transaction, holding its writer's turn (see `Writer`) until it ends. Statements run
/// on `&mut *tx` as on a plain transaction.
pub struct WriteTx {
    tx: sqlx::Transaction<'static, sqlx::Any>,
    // Dropped after `tx` (fields drop in order): the rollback of an abandoned transaction is
    // under way before the next writer starts.
    _turn: Option<tokio::sync::OwnedSemaphorePermit>,
}

impl WriteTx {
    pub async fn commit(self) -> Result<(), sqlx::Error> {
        self.tx.commit().await
    }
}

impl std::ops::Deref for WriteTx {
    type Target = AnyConnection;
    fn deref(&self) -> &AnyConnection {
        &self.tx
    }
}

impl std::ops::DerefMut for WriteTx {
    fn deref_mut(&mut self) -> &mut AnyConnection {
        &mut self.tx
    }
}

/// Starts a transaction that will write. On SQLite it waits for this process's turn (see
/// `Writer`), then takes the write lock at once (`BEGIN IMMEDIATE`): a transaction that reads
/// first and writes later cannot wait for another writer (its snapshot may be stale, and SQLite
/// answers "database is locked" at once), while one that starts with the lock waits its turn
/// (`busy_timeout`, for writers of other processes).
pub async fn begin_write(pool: &AnyPool, writer: &Writer) -> StoreResult<WriteTx> {
    let turn = writer.turn().await?;
    // The begin runs as a task of its own, so that it finishes even when the caller's future is
    // dropped halfway (a request whose client went away): dropped between sqlx running `BEGIN
    // IMMEDIATE` and handing back the transaction, nothing would roll it back, and the
    // connection would return to the pool holding the write lock, stopping every later write.
    // Finished, an unclaimed transaction is dropped and rolled back like any other.
    let (pool, backend) = (writer.pool(pool).clone(), writer.backend);
    let tx = tokio::spawn(async move {
        match backend {
            Backend::Sqlite => pool.begin_with("BEGIN IMMEDIATE").await,
            Backend::Postgres => pool.begin().await,
        }
    })
    .await
    .map_err(|e| StoreError::Backend(format!("the transaction did not start: {e}")))?
    .map_err(backend_error)?;
    Ok(WriteTx { tx, _turn: turn })
}

pub fn valid_schema_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// A pool on a migrated database.
pub struct Connected {
    pub pool: AnyPool,
    pub backend: Backend,
    pub writer: Writer,
    /// The URL as connected (SQLite: with its open mode).
    pub url: String,
    pub schema: Option<String>,
}

/// Opens a pool on `opts.url`, applying `set`'s pending migrations first when asked to.
pub async fn connect(
    opts: &Options,
    now: Now,
    set: &'static [migrate::Migration],
) -> Result<Connected, StoreError> {
    sqlx::any::install_default_drivers();
    let backend = Backend::of_url(&opts.url)?;
    let url = match backend {
        Backend::Sqlite if !opts.url.contains("mode=") => {
            let sep = if opts.url.contains('?') { '&' } else { '?' };
            format!("{}{sep}mode=rwc", opts.url)
        }
        _ => opts.url.clone(),
    };
    let schema = match (&opts.schema, backend) {
        (Some(s), Backend::Postgres) if valid_schema_name(s) => Some(s.clone()),
        (Some(s), Backend::Postgres) => {
            return Err(StoreError::Backend(format!(
                "schema name {s:?}: use lower-case letters, digits and _"
            )))
        }
        (Some(_), Backend::Sqlite) => {
            return Err(StoreError::Backend("a schema applies to PostgreSQL only".into()))
        }
        (None, _) => None,
    };
    let connect = AnyConnectOptions::from_str(&url).map_err(backend_error)?;
    // Session settings every connection needs, dedicated migration connection included. On
    // SQLite: statement journals (a multi-row insert's undo) in memory rather than temporary
    // files; and the WAL copied back into the database every 10,000 pages (about 40 MB) instead
    // of every 1,000: each checkpoint writes and syncs, and a page changed by many commits in
    // between is copied once. Pages are read through a memory map of the file instead of copied
    // into each connection's cache: a connection's cache is emptied whenever another one has
    // written, and the map is shared by all of them.
    let init: Vec<String> = match backend {
        Backend::Sqlite => vec![
            "PRAGMA journal_mode = WAL".into(),
            "PRAGMA busy_timeout = 10000".into(),
            "PRAGMA foreign_keys = ON".into(),
            "PRAGMA synchronous = NORMAL".into(),
            "PRAGMA temp_store = MEMORY".into(),
            "PRAGMA wal_autocheckpoint = 10000".into(),
            format!("PRAGMA mmap_size = {SQLITE_MAP_BYTES}"),
        ],
        Backend::Postgres => match &schema {
            Some(s) => vec![format!("SET search_path TO {s}")],
            None => Vec::new(),
        },
    };
    if opts.migrate {
        let mut conn = AnyConnection::connect_with(&connect)
            .await
            .map_err(backend_error)?;
        for stmt in &init {
            sqlx::query(stmt)
                .execute(&mut conn)
                .await
                .map_err(backend_error)?;
        }
        migrate::run(&mut conn, backend, now.millis(), set).await?;
        conn.close().await.map_err(backend_error)?;
    }
    let pool = pool_options(opts.max_connections.max(1), backend, init.clone())
        .connect_with(connect.clone())
        .await
        .map_err(backend_error)?;
    migrate::check_not_newer(&migrate::applied(&pool).await?, set)?;
    let mut writer = Writer::new(backend);
    if backend == Backend::Sqlite && sqlite_file(&url).is_some() {
        // The writes' own connection (see `Writer`), kept open for good so its cache stays: a
        // larger cache than the pool's connections get, as it is the one that uses it.
        let mut init = init;
        init.push(format!("PRAGMA cache_size = -{WRITER_CACHE_KIB}"));
        let own = pool_options(1, backend, init)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(connect)
            .await
            .map_err(backend_error)?;
        writer.pool = Some(own);
    }
    Ok(Connected {
        pool,
        backend,
        writer,
        url,
        schema,
    })
}

/// How much of a SQLite database file is read through a memory map.
const SQLITE_MAP_BYTES: u64 = 1 << 30;

/// The page cache of SQLite's writing connection, in KiB (the others keep SQLite's 2 MiB).
const WRITER_CACHE_KIB: u32 = 32 * 1024;

/// The file a SQLite URL names; `None` for a database in memory, which a second pool or another
/// process would not share.
pub fn sqlite_file(url: &str) -> Option<&str> {
    let path = url.trim_start_matches("sqlite://").trim_start_matches("sqlite:");
    let path = path.split('?').next().unwrap_or_default();
    (!path.is_empty() && !path.contains(":memory:")).then_some(path)
}

fn pool_options(max: u32, backend: Backend, init: Vec<String>) -> AnyPoolOptions {
    AnyPoolOptions::new()
        .max_connections(max)
        .acquire_timeout(Duration::from_secs(10))
        // A pooled PostgreSQL connection may have been closed by the server or the network
        // meanwhile: it is pinged before use. A SQLite connection is a file handle of this
        // process that nothing closes behind its back, and the ping would cost a hand-off to
        // its thread and back on every statement.
        .test_before_acquire(backend == Backend::Postgres)
        .after_connect(move |conn, _meta| {
            let init = init.clone();
            Box::pin(async move {
                for stmt in &init {
                    sqlx::query(stmt).execute(&mut *conn).await?;
                }
                Ok(())
            })
        })
}

/// `$first, $first+1, ...`: placeholders for a list bound one value each.
pub fn placeholders(first: usize, n: usize) -> String {
    (first..first + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The placeholders of `rows` rows of a multi-row `VALUES`, bound row after row, for a statement
/// whose only parameters they are: `($1, .., $width), ($width+1, ..), ..` on PostgreSQL, `(?, ..),
/// ..` on SQLite. SQLite keeps numbered and named parameters in a list it walks from the start for
/// each one sqlx binds, so a statement of n numbered parameters costs n² steps to bind (the
/// largest cost of a 1,000-row insert); parameters without a number cost nothing to find.
pub fn value_rows(backend: Backend, rows: usize, width: usize) -> String {
    let unnumbered = format!("({})", vec!["?"; width].join(", "));
    let row = |r: usize| match backend {
        Backend::Postgres => format!("({})", placeholders(r * width + 1, width)),
        Backend::Sqlite => unnumbered.clone(),
    };
    (0..rows).map(row).collect::<Vec<_>>().join(", ")
}

/// Rows written by one multi-row statement at most. Each statement is a round trip (on SQLite a
/// hand-off to the connection's thread and back), so rows go together, well within both backends'
/// limits on parameters per statement.
pub const ROWS_PER_STATEMENT: usize = 50;

/// Drops a PostgreSQL schema (tests clean up after themselves); refused on SQLite and for a
/// name that is not one of ours.
pub async fn drop_pg_schema(pool: &AnyPool, backend: Backend, schema: &str) -> Result<(), StoreError> {
    if backend != Backend::Postgres || !valid_schema_name(schema) {
        return Err(StoreError::Backend("not a PostgreSQL schema".into()));
    }
    sqlx::query(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
        .execute(pool)
        .await
        .map_err(backend_error)?;
    Ok(())
}

pub fn get<T>(row: &AnyRow, col: &str) -> StoreResult<T>
where
    T: for<'r> sqlx::Decode<'r, sqlx::Any> + sqlx::Type<sqlx::Any>,
{
    row.try_get::<T, _>(col).map_err(backend_error)
}
