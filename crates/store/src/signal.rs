//! The client change signal of each backend (see `ims_identity::store::ClientChangeSignal`).
//!
//! - **SQLite** (WAL mode): every committed transaction, from any process, rewrites the header of
//!   the WAL index (`<db>-shm`, format documented at sqlite.org/walformat.html: change counter,
//!   last committed frame, checksums). Reading those 48 bytes costs one `pread`, so the header
//!   itself is the generation. Writes we do not care about (audit lines) also change it: that only
//!   costs a reread.
//! - **PostgreSQL**: triggers on the client tables `NOTIFY ims_client_changes` with the schema name;
//!   each node listens on a connection of its own and bumps a counter per notification. While that
//!   connection is down the signal answers `None`, so nothing is cached until it is back (and the
//!   counter moves on reconnect, since notifications may have been missed meanwhile).

use std::fs::File;
use std::hash::{Hash as _, Hasher as _};
use std::os::unix::fs::FileExt as _;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Size of one copy of the WAL-index header.
const WAL_INDEX_HEADER: usize = 48;

/// Channel the PostgreSQL triggers notify.
pub const PG_CHANNEL: &str = "ims_client_changes";

#[derive(Debug)]
pub enum Signal {
    Sqlite(SqliteSignal),
    Postgres(Arc<PgSignal>),
    /// No signal: never cache.
    None,
}

impl Signal {
    /// Called after this process committed a client change: other processes hear of it through
    /// the backend, this one must not wait for that.
    pub fn changed_here(&self) {
        if let Signal::Postgres(p) = self {
            p.bump();
        }
    }

    pub fn generation(&self) -> Option<u64> {
        match self {
            Signal::Sqlite(s) => s.generation(),
            Signal::Postgres(p) => p.generation(),
            Signal::None => None,
        }
    }
}

#[derive(Debug)]
pub struct SqliteSignal {
    shm: PathBuf,
    file: Mutex<Option<File>>,
}

impl SqliteSignal {
    /// `db` is the database file's path; its WAL index lives beside it.
    pub fn new(db: &str) -> Self {
        SqliteSignal {
            shm: PathBuf::from(format!("{db}-shm")),
            file: Mutex::new(None),
        }
    }

    fn generation(&self) -> Option<u64> {
        let mut guard = self.file.lock().ok()?;
        if guard.is_none() {
            *guard = File::open(&self.shm).ok();
        }
        let file = guard.as_ref()?;
        let mut header = [0u8; WAL_INDEX_HEADER];
        if file.read_exact_at(&mut header, 0).is_err() {
            // The index may have been recreated; reopen next time and cache nothing now.
            *guard = None;
            return None;
        }
        let mut h = std::collections::hash_map::DefaultHasher::new();
        header.hash(&mut h);
        Some(h.finish())
    }
}

#[derive(Debug, Default)]
pub struct PgSignal {
    connected: AtomicBool,
    generation: AtomicU64,
}

impl PgSignal {
    fn generation(&self) -> Option<u64> {
        self.connected
            .load(Ordering::Acquire)
            .then(|| self.generation.load(Ordering::Acquire))
    }

    fn bump(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// Listens until the task is aborted, reconnecting after failures.
    pub async fn listen(self: Arc<Self>, url: String, schema: Option<String>) {
        loop {
            match sqlx::postgres::PgListener::connect(&url).await {
                Ok(mut listener) => {
                    if listener.listen(PG_CHANNEL).await.is_ok() {
                        self.bump();
                        self.connected.store(true, Ordering::Release);
                        // `None` or an error: the connection dropped and notifications may be lost.
                        while let Ok(Some(n)) = listener.try_recv().await {
                            if schema.as_deref().is_none_or(|s| s == n.payload()) {
                                self.bump();
                            }
                        }
                    }
                    self.connected.store(false, Ordering::Release);
                }
                Err(e) => tracing::warn!(error = %e, "client change listener cannot connect; caching is off"),
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}
