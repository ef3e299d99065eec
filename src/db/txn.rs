//! Write transactions and the signals their commits fire.

use std::sync::{
    Arc,
    atomic::{AtomicU32, Ordering},
};

use chrono::{DateTime, Utc};
use sea_orm::{DatabaseConnection, DatabaseTransaction, DbErr};
use tokio::sync::{Notify, OwnedSemaphorePermit};

use super::{Clock, effects};

/// How many independent commit signals a database offers: topics are
/// numbered `0..COMMIT_TOPICS` (job queues use one each).
pub const COMMIT_TOPICS: u32 = 16;

/// One wake-up per topic, so a waiter on one topic (a job queue) sleeps
/// through commits that concern another.
#[derive(Debug)]
pub struct CommitSignals {
    topics: [Notify; COMMIT_TOPICS as usize],
}

impl Default for CommitSignals {
    fn default() -> Self {
        Self {
            topics: std::array::from_fn(|_| Notify::new()),
        }
    }
}

impl CommitSignals {
    /// The signal of `topic` (topics past the last share the last signal).
    pub fn topic(&self, topic: u32) -> &Notify {
        let last = self.topics.len() - 1;
        &self.topics[(topic as usize).min(last)]
    }

    fn fire(&self, mut topics: u32) {
        while topics != 0 {
            let topic = topics.trailing_zeros();
            self.topic(topic).notify_waiters();
            topics &= topics - 1;
        }
    }
}

/// A write transaction. On SQLite it also holds the writer permit until it
/// commits or is dropped (which rolls back).
pub struct WriteTxn {
    pub(super) txn: DatabaseTransaction,
    pub(super) _writer: Option<OwnedSemaphorePermit>,
    pub(super) committed: Arc<CommitSignals>,
    /// Bit set of the topics to signal once committed.
    pub(super) notify_on_commit: AtomicU32,
    pub(super) clock: Clock,
    pub(super) effects: Arc<effects::Effects>,
    /// Bit set of the effects to run once committed.
    pub(super) effects_on_commit: AtomicU32,
}

impl std::ops::Deref for WriteTxn {
    type Target = DatabaseTransaction;
    fn deref(&self) -> &DatabaseTransaction {
        &self.txn
    }
}

/// Leave to send **one** write statement outside a transaction: it commits on
/// its own, without the `BEGIN`/`COMMIT` round trips of a [`WriteTxn`]. On
/// SQLite it holds the writer permit like a transaction does (a write
/// statement takes SQLite's write lock before it reads anything, so it cannot
/// fail the way a read-then-write transaction can). Only for a statement
/// whose effect stands alone: two statements sent through it are two
/// commits.
pub struct SingleWrite<'a> {
    pub(super) connection: &'a DatabaseConnection,
    pub(super) _writer: Option<OwnedSemaphorePermit>,
}

impl std::ops::Deref for SingleWrite<'_> {
    type Target = DatabaseConnection;
    fn deref(&self) -> &DatabaseConnection {
        self.connection
    }
}

impl WriteTxn {
    /// Now, by the clock of the database this transaction writes to.
    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// Commits, then fires the commit signals and runs the after-commit
    /// effects this transaction asked for.
    pub async fn commit(self) -> Result<(), DbErr> {
        self.txn.commit().await?;
        self.committed
            .fire(self.notify_on_commit.load(Ordering::Acquire));
        let marked = self.effects_on_commit.load(Ordering::Acquire);
        if marked != 0 {
            // The writer permit (SQLite) is released first: an effect may
            // take time (a Redis round trip) and needs no database.
            drop(self._writer);
            self.effects.run(marked).await;
        }
        Ok(())
    }

    /// Asks for `effect` to run once this transaction commits (not if it
    /// rolls back); marking it twice runs it once.
    pub fn after_commit(&self, effect: effects::Effect) {
        self.effects_on_commit
            .fetch_or(effect.bit(), Ordering::AcqRel);
    }

    /// Ends the transaction without writing anything (dropping it does the
    /// same, but sends the `ROLLBACK` only with the connection's next use).
    pub async fn rollback(self) -> Result<(), DbErr> {
        self.txn.rollback().await
    }

    /// Asks for the database's commit signal of `topic` to fire if, and only
    /// if, this transaction commits (used to wake the job workers of one
    /// queue without waking them for work that rolls back).
    pub fn notify_on_commit(&self, topic: u32) {
        let bit = 1u32 << Ord::min(topic, COMMIT_TOPICS - 1);
        self.notify_on_commit.fetch_or(bit, Ordering::AcqRel);
    }
}
