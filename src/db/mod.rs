//! The database: one code path over SQLite (embedded default) and PostgreSQL.
//!
//! Conventions every table follows (settled here once):
//! - ids are UUID v7 ([`new_id`]): time-ordered, so keyset pagination on
//!   `(created_at, id)` is stable;
//! - timestamps are UTC, truncated to microseconds and always bound from Rust
//!   ([`now`]); SQLite stores them as RFC 3339 text, which sorts correctly only
//!   if every value has the same shape, so no SQL `CURRENT_TIMESTAMP` defaults;
//! - money is an `i64` amount of minor units beside a currency column;
//! - enums are stored as short strings, never as native PostgreSQL enums.
//!
//! Writes go through [`Database::begin_write`]. On SQLite it takes an
//! in-process writer permit before `BEGIN IMMEDIATE`, so writers queue in
//! Rust instead of spinning on `SQLITE_BUSY`, and a write transaction never
//! upgrades from a read lock (which fails with `SQLITE_BUSY_SNAPSHOT`). The
//! permit is taken before a pooled connection, so a task holding a connection
//! never waits for the permit and the pool cannot deadlock.

mod clock;
pub mod effects;
pub mod listen;
pub mod migrations;
mod txn;

pub use self::{
    clock::Clock,
    txn::{COMMIT_TOPICS, CommitSignals, SingleWrite, WriteTxn},
};

use std::{
    path::{Path, PathBuf},
    sync::{Arc, atomic::AtomicU32},
    time::Duration,
};

use chrono::{DateTime, SubsecRound, Utc};
use sea_orm::{
    ConnectOptions, ConnectionTrait, DatabaseConnection, DbBackend, DbErr, SqliteTransactionMode,
    TransactionOptions, TransactionTrait,
    sea_query::{Expr, ExprTrait, IntoColumnRef, LikeExpr, SimpleExpr},
};
use secrecy::ExposeSecret;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use uuid::Uuid;

use crate::config::Config;

/// The current instant, truncated to microseconds (PostgreSQL's precision) so
/// both backends store and compare the same value.
#[expect(
    clippy::disallowed_methods,
    reason = "this is the one place allowed to read the clock"
)]
pub fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

/// A new time-ordered id.
pub fn new_id() -> Uuid {
    Uuid::now_v7()
}

/// A pooled connection idle at least this long is pinged before it is
/// handed out. sqlx pings on every checkout by default: a round trip per
/// checkout, seven per order placed, for a failure (a connection the server
/// or a proxy dropped) that only a connection idle for a while plausibly has.
/// A connection that breaks between two uses less than this apart fails its
/// statement instead, as it would a moment after a successful ping.
const PING_IF_IDLE_FOR: Duration = Duration::from_secs(1);

/// A pooled connection unused this long is closed (down to the pool's
/// minimum of one). Each open connection holds memory in this process (its
/// prepared statements; on SQLite also its page cache and its thread) and,
/// on PostgreSQL, a backend process on the server; after a burst the pool
/// can shrink back instead of keeping its peak size for sqlx's default
/// 10 min. It does not on the embedded SQLite default (seen 2026-12-05): the
/// job workers' polls every second take idle connections in turn, so none
/// stays unused for a minute and the pool keeps its peak size; a smaller
/// `DB_MAX_CONNECTIONS` is the lever there.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// SQLite page cache of each connection: negative means KiB (SQLite's
/// convention), positive would be pages.
const SQLITE_CACHE_KIB: &str = "-512";

/// Connections of the PostgreSQL pool for unflushed commits (job
/// completions, written by one task per worker pool, and job handlers'
/// writes that may be lost with their job's success, such as a
/// notification's delivery).
const UNFLUSHED_CONNECTIONS: u32 = 4;

/// A pool of connections to SQLite or PostgreSQL.
#[derive(Clone, Debug)]
pub struct Database {
    connection: DatabaseConnection,
    /// SQLite only: one writer at a time, queued in process.
    writer: Option<Arc<Semaphore>>,
    /// PostgreSQL only: a small pool whose sessions commit without waiting
    /// for the WAL flush (see [`Database::single_write_unflushed`]).
    unflushed: Option<DatabaseConnection>,
    /// Fired after a write transaction that asked for it commits (job
    /// workers of this process wait on them).
    committed: Arc<CommitSignals>,
    /// PostgreSQL channels this process listens to ([`Database::listen`]).
    channels: Arc<listen::Channels>,
    /// The time due-ness and deadlines are decided by.
    clock: Clock,
    /// What each after-commit effect does ([`Database::on_commit`]).
    effects: Arc<effects::Effects>,
}

impl Database {
    /// Connects to the configured database, creating the SQLite file (and its
    /// folder) on first start.
    pub async fn connect(config: &Config) -> Result<Self, DbErr> {
        let url = config.database_url.expose_secret();
        if config.database_is_sqlite() {
            Self::connect_sqlite(url, config.db_max_connections).await
        } else {
            let mut options = ConnectOptions::new(url.to_owned());
            options
                .max_connections(config.db_max_connections)
                .min_connections(1)
                .acquire_timeout(Duration::from_secs(10))
                .test_before_acquire_if_idle_for(PING_IF_IDLE_FOR)
                .idle_timeout(POOL_IDLE_TIMEOUT)
                .sqlx_logging(false);
            let connection = sea_orm::Database::connect(options).await?;
            let mut unflushed = ConnectOptions::new(url.to_owned());
            unflushed
                .max_connections(UNFLUSHED_CONNECTIONS)
                .min_connections(0)
                // Opened on first use: only worker processes write successes.
                .connect_lazy(true)
                .acquire_timeout(Duration::from_secs(10))
                .test_before_acquire_if_idle_for(PING_IF_IDLE_FOR)
                .idle_timeout(POOL_IDLE_TIMEOUT)
                .sqlx_logging(false)
                .map_sqlx_postgres_opts(|o| o.options([("synchronous_commit", "off")]));
            let unflushed = sea_orm::Database::connect(unflushed).await?;
            Ok(Self {
                connection,
                writer: None,
                unflushed: Some(unflushed),
                committed: Arc::default(),
                effects: Arc::default(),
                channels: Arc::default(),
                clock: Clock::real(),
            })
        }
    }

    async fn connect_sqlite(url: &str, max_connections: u32) -> Result<Self, DbErr> {
        if let Some(path) = sqlite_path(url) {
            create_private_sqlite_file(&path)?;
        }
        let mut options = ConnectOptions::new(url.to_owned());
        options
            .max_connections(max_connections)
            .min_connections(1)
            .acquire_timeout(Duration::from_secs(30))
            .test_before_acquire_if_idle_for(PING_IF_IDLE_FOR)
            .idle_timeout(POOL_IDLE_TIMEOUT)
            .sqlx_logging(false)
            .map_sqlx_sqlite_opts(|o| {
                use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};
                o.create_if_missing(true)
                    .journal_mode(SqliteJournalMode::Wal)
                    .synchronous(SqliteSynchronous::Normal)
                    .foreign_keys(true)
                    // Writers queue on the in-process permit; this only covers
                    // other processes (a `migrate` run, an operator's sqlite3).
                    .busy_timeout(Duration::from_secs(30))
                    // SQLite's default page cache is 2 000 KiB per
                    // connection: 16 connections held ~35 MiB of it after a
                    // load run (docs/benchmarks.md). A page missed here is
                    // read from the operating system's file cache, a system
                    // call away, shared by every connection.
                    .pragma("cache_size", SQLITE_CACHE_KIB)
            });
        let connection = sea_orm::Database::connect(options).await?;
        Ok(Self {
            connection,
            writer: Some(Arc::new(Semaphore::new(1))),
            unflushed: None,
            committed: Arc::default(),
            effects: Arc::default(),
            channels: Arc::default(),
            clock: Clock::real(),
        })
    }

    /// The pool, for reads outside a transaction.
    /// Decides due-ness and deadlines by `clock` from now on.
    #[must_use]
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// The clock due-ness and deadlines are decided by.
    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// Now, by [`Database::clock`].
    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    pub fn conn(&self) -> &DatabaseConnection {
        &self.connection
    }

    pub fn backend(&self) -> DbBackend {
        self.connection.get_database_backend()
    }

    pub fn is_postgres(&self) -> bool {
        self.backend() == DbBackend::Postgres
    }

    /// SQLite's writer permit (none on PostgreSQL).
    async fn writer_permit(&self) -> Result<Option<OwnedSemaphorePermit>, DbErr> {
        match &self.writer {
            Some(semaphore) => Arc::clone(semaphore)
                .acquire_owned()
                .await
                .map(Some)
                .map_err(|_| DbErr::Custom("database is shutting down".into())),
            None => Ok(None),
        }
    }

    /// Leave to send one write statement that commits on its own.
    pub async fn single_write(&self) -> Result<SingleWrite<'_>, DbErr> {
        Ok(SingleWrite {
            connection: &self.connection,
            _writer: self.writer_permit().await?,
        })
    }

    /// Like [`Database::single_write`], for a statement whose commit may be
    /// lost if the database server crashes within a moment (three
    /// `wal_writer_delay`s, 600 ms by default) after answering: on PostgreSQL
    /// it runs on a session with `synchronous_commit = off`, which returns
    /// before the WAL flush (and never reorders: a later durable commit
    /// flushes it too). One round trip where `SET LOCAL` needs a transaction
    /// and four. On SQLite (WAL, `synchronous = NORMAL`) every commit already
    /// makes this trade.
    pub async fn single_write_unflushed(&self) -> Result<SingleWrite<'_>, DbErr> {
        Ok(SingleWrite {
            connection: self.unflushed.as_ref().unwrap_or(&self.connection),
            _writer: self.writer_permit().await?,
        })
    }

    /// Sets, once, what after-commit `effect` does (the composition root
    /// calls this at start-up); `false` if it was set already.
    pub fn on_commit(&self, effect: effects::Effect, handler: effects::EffectHandler) -> bool {
        self.effects.set(effect, handler)
    }

    /// Begins a write transaction (`BEGIN IMMEDIATE` on SQLite).
    pub async fn begin_write(&self) -> Result<WriteTxn, DbErr> {
        let writer = self.writer_permit().await?;
        let txn = self
            .connection
            .begin_with_options(TransactionOptions {
                sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
                ..TransactionOptions::default()
            })
            .await?;
        Ok(WriteTxn {
            txn,
            _writer: writer,
            committed: Arc::clone(&self.committed),
            notify_on_commit: AtomicU32::new(0),
            clock: self.clock.clone(),
            effects: Arc::clone(&self.effects),
            effects_on_commit: AtomicU32::new(0),
        })
    }

    /// The signals fired after each write transaction that called
    /// [`WriteTxn::notify_on_commit`] commits, and whenever something else
    /// (a PostgreSQL notification) says new work was committed.
    pub fn commit_signals(&self) -> &Arc<CommitSignals> {
        &self.committed
    }

    /// Checks the database answers (readiness probe).
    pub async fn ping(&self) -> Result<(), DbErr> {
        self.connection
            .execute_unprepared("SELECT 1")
            .await
            .map(|_| ())
    }

    /// Pool usage for the metrics endpoint: (connections open, idle).
    pub fn pool_usage(&self) -> (u32, usize) {
        match self.backend() {
            DbBackend::Postgres => {
                let pool = self.connection.get_postgres_connection_pool();
                (pool.size(), pool.num_idle())
            }
            _ => {
                let pool = self.connection.get_sqlite_connection_pool();
                (pool.size(), pool.num_idle())
            }
        }
    }

    pub async fn close(self) {
        let _ = self.connection.close().await;
    }
}

/// Creates the database file (and its folder) owner-only before SQLite
/// would create it world-readable; its `-wal` and `-shm` take the same mode
/// (see `private_files`).
fn create_private_sqlite_file(path: &Path) -> Result<(), DbErr> {
    let cannot = |what: &Path, e: std::io::Error| {
        DbErr::Custom(format!("cannot create {}: {e}", what.display()))
    };
    if let Some(parent) = path.parent()
        && !parent.as_os_str().is_empty()
    {
        crate::private_files::create_folder(parent).map_err(|e| cannot(parent, e))?;
    }
    crate::private_files::create_file_if_missing(path).map_err(|e| cannot(path, e))
}

/// The file behind a `sqlite://` URL, if it names one.
pub fn sqlite_path(url: &str) -> Option<PathBuf> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next().unwrap_or_default();
    if path.is_empty() || path == ":memory:" {
        None
    } else {
        Some(PathBuf::from(path))
    }
}

/// The form of a text that searches compare: Unicode lower case, folded in
/// Rust because SQLite's `lower()` only folds ASCII.
pub fn fold_for_search(text: &str) -> String {
    text.trim().to_lowercase()
}

/// `column LIKE %text%` on a column holding [`fold_for_search`]ed text,
/// with `%`, `_` and `\` in the search taken literally.
pub fn contains_folded(column: impl IntoColumnRef, text: &str) -> SimpleExpr {
    let escaped = fold_for_search(text)
        .replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_");
    Expr::col(column).like(LikeExpr::new(format!("%{escaped}%")).escape('\\'))
}

/// Whether a database error is the violation of a unique constraint.
pub fn is_unique_violation(err: &DbErr) -> bool {
    matches!(
        err.sql_err(),
        Some(sea_orm::SqlErr::UniqueConstraintViolation(_))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn now_has_microsecond_precision() {
        let t = now();
        assert_eq!(t.timestamp_subsec_nanos() % 1_000, 0);
    }

    #[test]
    fn sqlite_path_ignores_query_and_memory() {
        assert_eq!(
            sqlite_path("sqlite://./data/d.db?mode=rwc"),
            Some(PathBuf::from("./data/d.db"))
        );
        assert_eq!(sqlite_path("sqlite::memory:"), None);
        assert_eq!(sqlite_path("postgres://x"), None);
    }
}
