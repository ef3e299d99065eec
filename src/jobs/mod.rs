//! Durable background jobs: the transactional queue, its workers, the
//! scheduler and the dashboard.
//!
//! The promise: work accepted is never lost and never applied twice.
//! - A job is a row written by [`enqueue`] **in the caller's transaction**:
//!   if the business change rolls back, the job never existed; if it commits,
//!   the job will run. The `jobs` table is the outbox; there is no relay.
//! - Workers claim jobs with a lease (`FOR UPDATE SKIP LOCKED` on
//!   PostgreSQL; single-writer `BEGIN IMMEDIATE` on SQLite), heartbeat it,
//!   and finish with a write fenced by `(lease_owner, attempt)`: a worker that
//!   lost its lease cannot complete or fail the job. A dead worker's jobs are
//!   rescued when the lease expires. Delivery is therefore at-least-once, and
//!   every handler makes its effect idempotent (conditional writes keyed by
//!   the job's subject), which makes effects happen exactly once.
//! - Failures retry with exponential backoff and jitter written into
//!   `run_at`; after the last attempt the job is `failed` with its error
//!   history and the kind's compensation job is enqueued in the same
//!   transaction.
//! - Workers wake within milliseconds of the enqueuing commit: PostgreSQL
//!   `NOTIFY` (delivered on commit), or the in-process commit signal on
//!   SQLite; polling is only the fallback.

pub mod admin;
pub mod backoff;
pub mod dashboard;
pub mod diagnostics;
pub mod maintenance;
pub mod model;
pub mod queue;
pub mod registry;
pub mod routes;
pub mod scheduler;
pub mod store;
pub mod worker;

use std::{
    collections::{HashMap, HashSet},
    time::Duration,
};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveValue::Set,
    ConnectionTrait, DbBackend, DbErr, EntityTrait, QueryTrait, Statement,
    sea_query::{OnConflict, Query},
};
use serde::{Serialize, de::DeserializeOwned};
use uuid::Uuid;

use self::model::job::{self, Entity as Jobs, JobState};
pub use self::{backoff::Backoff, queue::Queue, registry::JobContext};
use crate::db::WriteTxn;

/// PostgreSQL channel that announces committed jobs to every process.
pub const NOTIFY_CHANNEL: &str = "dispatch_jobs";

/// A job due later than this after it is written is `scheduled`: it wakes no
/// worker and no claim reads it until the stager (every half horizon) makes
/// it `available`, up to a horizon before it is due; from then on the fetch
/// loop of its queue times it exactly (it sleeps until the next available
/// job is due). Otherwise every job due in half an hour (a payment timeout)
/// would wake every worker when written and stay in the claim's index until
/// due.
pub const WAKE_HORIZON: Duration = Duration::from_secs(1);

/// The state a job due at `run_at` starts in, written at `now`.
pub(crate) fn state_for(run_at: DateTime<Utc>, now: DateTime<Utc>) -> JobState {
    if run_at > now + crate::duration::to_delta(WAKE_HORIZON) {
        JobState::Scheduled
    } else {
        JobState::Available
    }
}

/// How a kind retries and ranks.
#[derive(Debug, Clone, Copy)]
pub struct JobOptions {
    pub max_attempts: i32,
    pub backoff: Backoff,
    /// Higher runs first within a queue.
    pub priority: i16,
    /// An attempt running longer is abandoned and counted as failed.
    pub timeout: Duration,
}

impl Default for JobOptions {
    fn default() -> Self {
        Self {
            max_attempts: 3,
            backoff: Backoff::default(),
            priority: 0,
            timeout: Duration::from_secs(300),
        }
    }
}

/// Why an attempt failed.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// Worth another attempt (a timeout, a 5xx, a lost connection).
    #[error("{0}")]
    Retryable(String),
    /// Will never succeed (a declined card, a deleted subject): no retries.
    #[error("permanent: {0}")]
    Permanent(String),
}

impl JobError {
    pub fn retryable(cause: impl std::fmt::Display) -> Self {
        Self::Retryable(cause.to_string())
    }

    pub fn permanent(cause: impl std::fmt::Display) -> Self {
        Self::Permanent(cause.to_string())
    }
}

impl From<DbErr> for JobError {
    fn from(err: DbErr) -> Self {
        Self::Retryable(format!("database: {err}"))
    }
}

/// A kind of job: its payload is the implementing type.
#[async_trait]
pub trait Job: Serialize + DeserializeOwned + Send + Sync + 'static {
    /// Stable name stored in the row (`<domain>.<action>`); rows outlive
    /// deployments, so a kind is never renamed.
    const KIND: &'static str;
    const QUEUE: Queue;

    fn options() -> JobOptions {
        JobOptions::default()
    }

    /// What this job works on (an order id), if at most one job of this
    /// kind may exist per subject: it makes the [`Job::unique_key`]
    /// `<KIND>:<subject>`.
    fn subject(&self) -> Option<String> {
        None
    }

    /// Jobs with the same key are enqueued once (later attempts to enqueue
    /// are no-ops while the row exists). Derived from [`Job::subject`], so a
    /// kind never spells its own name twice.
    fn unique_key(&self) -> Option<String> {
        self.subject()
            .map(|subject| format!("{}:{subject}", Self::KIND))
    }

    /// Performs the work. Must be idempotent: it may run more than once.
    async fn run(&self, ctx: &JobContext) -> Result<(), JobError>;

    /// Whether the pool may hand several claimed jobs of this kind to
    /// [`Job::run_batch`] at once (a kind whose jobs each write one row can
    /// write them with one statement).
    const BATCHED: bool = false;

    /// Performs several jobs of this kind, each with its own context; one
    /// outcome per job, in order. By default one after the other.
    async fn run_batch(batch: &[(Self, JobContext)]) -> Vec<Result<(), JobError>>
    where
        Self: Sized,
    {
        let mut outcomes = Vec::with_capacity(batch.len());
        for (job, ctx) in batch {
            outcomes.push(job.run(ctx).await);
        }
        outcomes
    }

    /// Enqueued, in the same transaction, when this job fails for good.
    fn compensation(&self) -> Option<NewJob> {
        None
    }
}

/// A job ready to be written: kind, queue, payload and options.
#[derive(Debug, Clone)]
pub struct NewJob {
    pub kind: &'static str,
    pub queue: Queue,
    pub payload: serde_json::Value,
    pub options: JobOptions,
    pub unique_key: Option<String>,
    pub run_at: Option<DateTime<Utc>>,
}

impl NewJob {
    pub fn of<J: Job>(job: &J) -> Self {
        Self {
            kind: J::KIND,
            queue: J::QUEUE,
            payload: serde_json::to_value(job).unwrap_or(serde_json::Value::Null),
            options: J::options(),
            unique_key: job.unique_key(),
            run_at: None,
        }
    }

    /// Runs no earlier than `at`.
    pub fn at(mut self, at: DateTime<Utc>) -> Self {
        self.run_at = Some(at);
        self
    }

    /// Overrides the kind's unique key.
    pub fn unique(mut self, key: impl Into<String>) -> Self {
        self.unique_key = Some(key.into());
        self
    }
}

/// What [`enqueue`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enqueued {
    Inserted(Uuid),
    /// A job with the same unique key exists; nothing was written.
    Duplicate,
}

/// Writes `job` in the caller's transaction. It becomes visible to workers
/// (and wakes them) only when that transaction commits.
pub async fn enqueue(txn: &WriteTxn, job: NewJob) -> Result<Enqueued, DbErr> {
    let outcome = enqueue_many(txn, [job]).await?;
    Ok(outcome.first().copied().unwrap_or(Enqueued::Duplicate))
}

/// Most rows in one `INSERT`: 19 bound values a row stays far below the
/// parameter limits of both backends (32 766 on SQLite, 65 535 on PostgreSQL).
const INSERT_CHUNK: usize = 500;

/// Writes `jobs` in the caller's transaction, like [`enqueue`] for each, with
/// one multi-row `INSERT` (per [`INSERT_CHUNK`] jobs) instead of one per job.
/// Returns what happened to each job, in order. Workers are woken once per
/// queue when the transaction commits.
pub async fn enqueue_many(
    txn: &WriteTxn,
    jobs: impl IntoIterator<Item = NewJob>,
) -> Result<Vec<Enqueued>, DbErr> {
    let now = txn.now();
    let correlation_id = crate::telemetry::current_correlation_id();
    let mut written = Vec::new();
    let mut rows: Vec<job::ActiveModel> = Vec::new();
    for job in jobs {
        let id = crate::db::new_id();
        let run_at = job.run_at.unwrap_or(now);
        written.push((id, job.kind, job.queue, run_at));
        rows.push(job::ActiveModel {
            id: Set(id),
            queue: Set(job.queue.as_str().to_owned()),
            kind: Set(job.kind.to_owned()),
            payload: Set(job.payload),
            state: Set(state_for(run_at, now)),
            priority: Set(job.options.priority),
            attempt: Set(0),
            max_attempts: Set(job.options.max_attempts.max(1)),
            run_at: Set(run_at),
            lease_owner: Set(None),
            lease_expires_at: Set(None),
            last_error: Set(None),
            errors: Set(serde_json::json!([])),
            correlation_id: Set(correlation_id.clone()),
            unique_key: Set(job.unique_key),
            created_at: Set(now),
            updated_at: Set(now),
            started_at: Set(None),
            finished_at: Set(None),
        });
    }
    let backend_is_sqlite = txn.get_database_backend() == DbBackend::Sqlite;
    let mut inserted = HashSet::with_capacity(written.len());
    while !rows.is_empty() {
        let rest = rows.split_off(rows.len().min(INSERT_CHUNK));
        let chunk = std::mem::replace(&mut rows, rest);
        let mut insert = Jobs::insert_many(chunk)
            .on_conflict(OnConflict::new().do_nothing().to_owned())
            .into_query();
        insert.returning(Query::returning().columns([
            job::Column::Id,
            job::Column::Queue,
            job::Column::State,
        ]));
        let backend = txn.get_database_backend();
        let statement = backend.build(&insert);
        let statement = if backend == DbBackend::Postgres {
            // The same round trip announces the new available rows:
            // PostgreSQL delivers a notification only if, and when, the
            // transaction commits, and delivers one per (channel, payload)
            // however often a transaction sends it, so listeners get at most
            // one per queue per commit. (`CASE` evaluates `pg_notify` only
            // for the rows it selects.)
            Statement {
                sql: format!(
                    "WITH inserted AS ({}) SELECT inserted.id, \
                     CASE WHEN inserted.state = 'available' \
                     THEN pg_notify('{NOTIFY_CHANNEL}', inserted.queue) END AS notified \
                     FROM inserted",
                    statement.sql,
                ),
                ..statement
            }
        } else {
            statement
        };
        for row in txn.query_all_raw(statement).await? {
            inserted.insert(row.try_get::<Uuid>("", "id")?);
        }
    }
    if backend_is_sqlite {
        // SQLite has no notifications: this process's workers are the only
        // ones, woken directly when the transaction commits.
        for (id, _, queue, run_at) in &written {
            if state_for(*run_at, now) == JobState::Available && inserted.contains(id) {
                txn.notify_on_commit(queue.commit_topic());
            }
        }
    }
    let mut counts: HashMap<(&'static str, Queue), u64> = HashMap::new();
    let outcome = written
        .into_iter()
        .map(|(id, kind, queue, _)| {
            if inserted.contains(&id) {
                *counts.entry((kind, queue)).or_default() += 1;
                Enqueued::Inserted(id)
            } else {
                Enqueued::Duplicate
            }
        })
        .collect();
    for ((kind, queue), n) in counts {
        metrics::counter!("jobs_enqueued_total", "kind" => kind, "queue" => queue.as_str())
            .increment(n);
    }
    Ok(outcome)
}
