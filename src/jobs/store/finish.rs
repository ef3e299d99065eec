//! Writing an attempt's outcome: success (one or many), retry or failure,
//! each fenced by `(lease_owner, attempt)`.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbBackend, DbErr, EntityTrait, QueryFilter, Statement,
    sea_query::Expr,
};
use serde_json::json;
use uuid::Uuid;

use super::announce;
use crate::{
    db::Database,
    jobs::{
        NewJob, Queue, enqueue,
        model::job::{self, Entity as Jobs, JobState},
    },
};

/// The fence (this row, still running under this lease); the write that
/// passes it also ends the lease.
fn fenced(
    update: sea_orm::UpdateMany<Jobs>,
    id: Uuid,
    attempt: i32,
    owner: Uuid,
) -> sea_orm::UpdateMany<Jobs> {
    update
        .col_expr(job::Column::LeaseOwner, Expr::value(Option::<Uuid>::None))
        .col_expr(
            job::Column::LeaseExpiresAt,
            Expr::value(Option::<DateTime<Utc>>::None),
        )
        .filter(job::Column::Id.eq(id))
        .filter(job::Column::State.eq(JobState::Running))
        .filter(job::Column::LeaseOwner.eq(owner))
        .filter(job::Column::Attempt.eq(attempt))
}

/// Marks a job succeeded. False if the lease was lost meanwhile.
pub async fn complete(db: &Database, job: &job::Model, owner: Uuid) -> Result<bool, DbErr> {
    let done = complete_many(db, owner, &[(job.id, job.attempt)], Commit::Durable).await?;
    Ok(done.contains(&job.id))
}

/// How a batch of successes commits on PostgreSQL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Commit {
    /// Returns once the commit is flushed to disk (the server's default).
    Durable,
    /// Returns before the flush (`synchronous_commit = off`); see
    /// [`complete_many`] for when that is allowed.
    Deferred,
}

/// Marks many jobs succeeded in one transaction, each fenced on its own
/// `(id, running, owner, attempt)` exactly like [`complete`]. Returns the
/// ids whose fence held; the others had lost their lease and are untouched.
///
/// With [`Commit::Deferred`] the PostgreSQL transaction returns before its
/// WAL record is flushed, so a crash of the database server (or its machine)
/// within 3 × `wal_writer_delay` (600 ms by default) can forget these
/// successes. Nothing else is lost: the handlers' own writes were committed
/// durably before, WAL is replayed in order (any later durable commit
/// flushes this one too), and a forgotten success leaves the job `running`
/// under a lease its pool no longer renews (the heartbeat extends only the
/// jobs a pool still holds), so the rescuer re-queues it once the lease
/// expires and it runs again: at-least-once delivery, which every handler
/// tolerates by being idempotent.
/// The caller must not defer the success of a job on its last attempt: the
/// rescuer would fail that job and enqueue its compensation instead of
/// running it again. Retries and failures are never written this way.
/// (SQLite runs in WAL mode with `synchronous = NORMAL`, which already makes
/// this trade for every commit; the mode is ignored there.)
pub async fn complete_many(
    db: &Database,
    owner: Uuid,
    jobs: &[(Uuid, i32)],
    commit: Commit,
) -> Result<HashSet<Uuid>, DbErr> {
    let mut done = HashSet::with_capacity(jobs.len());
    if jobs.is_empty() {
        return Ok(done);
    }
    let now = db.now();
    if db.is_postgres() {
        // One statement whatever the batch size (so one prepared statement),
        // with each row's own fence, committed on its own. `j.id = ANY(…)`
        // makes the primary key bound the rows read: without it, and without
        // statistics (this server runs with autovacuum off), the planner
        // drove the join from every running row of the owner and rescanned
        // the batch for each.
        let (ids, attempts): (Vec<Uuid>, Vec<i32>) = jobs.iter().copied().unzip();
        let statement = Statement::from_sql_and_values(
            DbBackend::Postgres,
            "UPDATE jobs AS j SET state = 'succeeded', lease_owner = NULL, \
             lease_expires_at = NULL, finished_at = $1, updated_at = $1 \
             FROM unnest($2::uuid[], $3::integer[]) AS done(id, attempt) \
             WHERE j.id = ANY($2) AND j.id = done.id AND j.attempt = done.attempt \
             AND j.state = 'running' AND j.lease_owner = $4 \
             RETURNING j.id",
            [now.into(), ids.into(), attempts.into(), owner.into()],
        );
        let writer = match commit {
            Commit::Durable => db.single_write().await?,
            Commit::Deferred => db.single_write_unflushed().await?,
        };
        for row in writer.query_all_raw(statement).await? {
            done.insert(row.try_get::<Uuid>("", "id")?);
        }
        return Ok(done);
    }
    // SQLite: statements are in-process calls, so one fenced UPDATE per job
    // costs little; the transaction (the writer permit, the commit) is what
    // is shared.
    let txn = db.begin_write().await?;
    for &(id, attempt) in jobs {
        let result = fenced(Jobs::update_many(), id, attempt, owner)
            .col_expr(job::Column::State, Expr::value(JobState::Succeeded))
            .col_expr(job::Column::FinishedAt, Expr::value(now))
            .col_expr(job::Column::UpdatedAt, Expr::value(now))
            .exec(&*txn)
            .await?;
        if result.rows_affected == 1 {
            done.insert(id);
        }
    }
    txn.commit().await?;
    Ok(done)
}

/// The job's error history with this attempt's error, reported at `at`
/// (taken before waiting for a transaction, so that the gap between two
/// entries shows the backoff, not how long the write waited for a connection).
fn with_error(job: &job::Model, error: &str, at: DateTime<Utc>) -> serde_json::Value {
    let mut history = job.errors.as_array().cloned().unwrap_or_default();
    history.push(json!({"attempt": job.attempt, "at": at, "error": error}));
    serde_json::Value::Array(history)
}

/// Puts a failed attempt back in the queue to run at `run_at`. False if the
/// lease was lost meanwhile.
pub async fn retry(
    db: &Database,
    job: &job::Model,
    owner: Uuid,
    error: &str,
    run_at: DateTime<Utc>,
) -> Result<bool, DbErr> {
    let now = db.now();
    let txn = db.begin_write().await?;
    let queue = Queue::parse(&job.queue).unwrap_or(Queue::Maintenance);
    let state = crate::jobs::state_for(run_at, now);
    let done = fenced(Jobs::update_many(), job.id, job.attempt, owner)
        .col_expr(job::Column::State, Expr::value(state))
        .col_expr(job::Column::RunAt, Expr::value(run_at))
        .col_expr(job::Column::LastError, Expr::value(error))
        .col_expr(
            job::Column::Errors,
            Expr::value(with_error(job, error, now)),
        )
        .col_expr(job::Column::UpdatedAt, Expr::value(now))
        .exec(&*txn)
        .await?;
    if done.rows_affected == 1 && state == JobState::Available {
        announce(&txn, queue).await?;
    }
    txn.commit().await?;
    Ok(done.rows_affected == 1)
}

/// Fails a job for good and, in the same transaction, enqueues its
/// compensation. False (and nothing written) if the lease was lost.
pub async fn fail(
    db: &Database,
    job: &job::Model,
    owner: Uuid,
    error: &str,
    compensation: Option<NewJob>,
) -> Result<bool, DbErr> {
    let now = db.now();
    let txn = db.begin_write().await?;
    let done = fenced(Jobs::update_many(), job.id, job.attempt, owner)
        .col_expr(job::Column::State, Expr::value(JobState::Failed))
        .col_expr(job::Column::LastError, Expr::value(error))
        .col_expr(
            job::Column::Errors,
            Expr::value(with_error(job, error, now)),
        )
        .col_expr(job::Column::FinishedAt, Expr::value(now))
        .col_expr(job::Column::UpdatedAt, Expr::value(now))
        .exec(&*txn)
        .await?;
    if done.rows_affected != 1 {
        return Ok(false);
    }
    if let Some(compensation) = compensation {
        // One compensation per failed job, however often this runs.
        let key = format!("compensation:{}", job.id);
        enqueue(&txn, compensation.unique(key)).await?;
    }
    txn.commit().await?;
    Ok(true)
}
