//! The client change signal of each backend (see `ims_identity::store::ClientChangeSignal`).
//!
//! - **SQLite** (WAL mode): every committed transaction, from any process, rewrites the header of
//!   the WAL index (`<db>-shm`, format documented at sqlite.org/walformat.html: change counter,
//!   last committed frame, checksums). Reading those 48 bytes costs one `pread`, so the header
//!   itself is the generation. Writes we do not care about (audit lines) also change it: that only
//!   costs a reread.
//! - **PostgreSQL**: triggers on the client tables bump a counter row (`change_counters`) and
//!   `NOTIFY ims_client_changes` with the schema name. Each node listens on a connection of its
//!   own (`listen_url`, direct to PostgreSQL when the pool goes through a pooler) and moves its
//!   generation at each notification: a change is seen at once where notifications arrive. It
//!   also reads the counter every `change_poll`, whatever the notifications do: a pooler in
//!   transaction mode accepts LISTEN and delivers nothing, a listener may be down. The generation
//!   is `None`, and nothing is served from memory, while the last successful read is older than
//!   twice `change_poll`: what a node serves from memory is never older than that.

use sqlx::{AnyPool, Row as _};
use std::fs::File;
use std::hash::{Hash as _, Hasher as _};
use std::os::unix::fs::FileExt as _;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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

#[derive(Debug)]
pub struct PgSignal {
    /// Notifications heard (and reconnections of the listener, after which some may be lost).
    notified: AtomicU64,
    /// The counter as last read.
    polled: AtomicU64,
    /// When it was last read, in milliseconds since `epoch`; 0: never.
    polled_at: AtomicU64,
    epoch: Instant,
    poll: Duration,
}

impl PgSignal {
    pub fn new(poll: Duration) -> Self {
        PgSignal {
            notified: AtomicU64::new(0),
            polled: AtomicU64::new(0),
            polled_at: AtomicU64::new(0),
            epoch: Instant::now(),
            poll: poll.max(Duration::from_millis(10)),
        }
    }

    fn since_epoch(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis())
            .unwrap_or(u64::MAX)
            .max(1)
    }

    fn generation(&self) -> Option<u64> {
        let at = self.polled_at.load(Ordering::Acquire);
        let stale = 2 * u64::try_from(self.poll.as_millis()).unwrap_or(u64::MAX / 4);
        if at == 0 || self.since_epoch().saturating_sub(at) > stale {
            return None;
        }
        // Both only grow, so their sum moves whenever either does.
        Some(
            self.notified
                .load(Ordering::Acquire)
                .wrapping_add(self.polled.load(Ordering::Acquire)),
        )
    }

    fn bump(&self) {
        self.notified.fetch_add(1, Ordering::AcqRel);
    }

    /// Reads the change counter every `poll` until the task is aborted.
    pub async fn poll(self: Arc<Self>, pool: AnyPool) {
        let mut tick = tokio::time::interval(self.poll);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut failing = false;
        loop {
            tick.tick().await;
            let read = sqlx::query("SELECT value FROM change_counters WHERE name = 'clients'")
                .fetch_one(&pool)
                .await
                .and_then(|row| row.try_get::<i64, _>("value"));
            match read {
                Ok(v) => {
                    self.polled
                        .store(u64::try_from(v).unwrap_or(0), Ordering::Release);
                    self.polled_at.store(self.since_epoch(), Ordering::Release);
                    if failing {
                        tracing::info!("client change counter readable again");
                        failing = false;
                    }
                }
                Err(e) => {
                    if !failing {
                        tracing::warn!(error = %e, "client change counter unreadable; clients are read from the database until it is back");
                        failing = true;
                    }
                }
            }
        }
    }

    /// Listens until the task is aborted, reconnecting after failures.
    pub async fn listen(self: Arc<Self>, url: String, schema: Option<String>) {
        loop {
            match sqlx::postgres::PgListener::connect(&url).await {
                Ok(mut listener) => {
                    if listener.listen(PG_CHANNEL).await.is_ok() {
                        self.bump();
                        // `None` or an error: the connection dropped and notifications may be lost.
                        while let Ok(Some(n)) = listener.try_recv().await {
                            if schema.as_deref().is_none_or(|s| s == n.payload()) {
                                self.bump();
                            }
                        }
                    }
                    self.bump();
                }
                Err(e) => {
                    tracing::warn!(error = %e, "client change listener cannot connect; changes reach this node by polling only")
                }
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}
