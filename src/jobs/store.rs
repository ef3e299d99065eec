//! The queue's SQL: claim, finish, heartbeat, rescue, retention. Every state
//! change after a claim is fenced by `(lease_owner, attempt)`, so only the
//! worker holding the current lease can move a job on.

use std::{collections::HashSet, time::Duration};

use chrono::{DateTime, Utc};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbBackend, DbErr, EntityTrait, FromQueryResult, QueryFilter,
    QueryOrder, QuerySelect, Statement,
    sea_query::{Expr, ExprTrait, LockBehavior, LockType, Order, Query, SimpleExpr},
};
use serde_json::json;
use uuid::Uuid;

use super::{
    NOTIFY_CHANNEL, NewJob, Queue, WAKE_HORIZON, enqueue,
    model::{
        job::{self, Entity as Jobs, JobState},
        job_queue::{self, Entity as JobQueues},
    },
};
use crate::{
    db::{Database, WriteTxn},
    duration::to_delta,
};

/// `state = '<state>'` with the state written into the SQL, not bound.
///
/// The claim and the rescuer read through partial indexes (`… WHERE state =
/// 'available'`, `'running'`). PostgreSQL can use such an index for a
/// prepared statement only if the condition is a literal: with a bound
/// parameter, the generic plan it switches to after five executions cannot
/// prove the index's predicate, so it read every row of that state through
/// `jobs_state_queue_kind_idx` and sorted them, on every claim: a claim's
/// cost grew with the backlog (8 ms for 32 jobs with 10 000 waiting, 80 ms
/// with 110 000), where the partial index answers in about 1 ms regardless.
fn state_is(state: JobState) -> SimpleExpr {
    Expr::col((Jobs, job::Column::State)).eq(Expr::Constant(state.as_str().into()))
}

/// Tells workers a job of `queue` will be available when `txn` commits.
///
/// On PostgreSQL the notification reaches every process's listener, this
/// one's included, so that is the only wake-up: waking this process's
/// workers directly as well would make each of them claim twice. On SQLite
/// there is only this process.
pub async fn announce(txn: &WriteTxn, queue: Queue) -> Result<(), DbErr> {
    if txn.get_database_backend() == DbBackend::Postgres {
        // Delivered by PostgreSQL only if, and when, the transaction commits.
        txn.execute_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT pg_notify($1, $2)",
            [NOTIFY_CHANNEL.into(), queue.as_str().into()],
        ))
        .await?;
    } else {
        txn.notify_on_commit(queue.commit_topic());
    }
    Ok(())
}

/// Makes the scheduled jobs due within [`WAKE_HORIZON`] available and
/// announces their queues; returns those queues. One statement, so the
/// stagers of several processes may run it at once: a job moves once.
pub async fn promote_scheduled(db: &Database) -> Result<Vec<Queue>, DbErr> {
    let now = crate::db::now();
    let promote = Query::update()
        .table(Jobs)
        .value(job::Column::State, JobState::Available.as_str())
        .value(job::Column::UpdatedAt, now)
        .and_where(state_is(JobState::Scheduled))
        .and_where(Expr::col(job::Column::RunAt).lte(now + to_delta(WAKE_HORIZON)))
        .returning(Query::returning().column(job::Column::Queue))
        .to_owned();
    let statement = db.backend().build(&promote);
    let statement = if db.is_postgres() {
        // Announced by the same statement, once per queue.
        Statement {
            sql: format!(
                "WITH promoted AS ({}) SELECT q.queue, pg_notify('{NOTIFY_CHANNEL}', q.queue) \
                 FROM (SELECT DISTINCT queue FROM promoted) AS q",
                statement.sql
            ),
            ..statement
        }
    } else {
        statement
    };
    let rows = db.single_write().await?.query_all_raw(statement).await?;
    let mut queues = Vec::new();
    for row in rows {
        if let Some(queue) = Queue::parse(&row.try_get::<String>("", "queue")?)
            && !queues.contains(&queue)
        {
            queues.push(queue);
        }
    }
    if !db.is_postgres() {
        // Committed already (one statement); SQLite has no notifications.
        wake(db, &queues);
    }
    Ok(queues)
}

/// Wakes this process's fetch loops of `queues`.
pub(crate) fn wake(db: &Database, queues: &[Queue]) {
    for queue in queues {
        db.commit_signals()
            .topic(queue.commit_topic())
            .notify_waiters();
    }
}

/// Whether an operator paused `queue`.
pub async fn is_paused<C: ConnectionTrait>(conn: &C, queue: Queue) -> Result<bool, DbErr> {
    Ok(JobQueues::find_by_id(queue.as_str().to_owned())
        .one(conn)
        .await?
        .is_some_and(|q| q.paused))
}

/// What a claim got.
#[derive(Debug)]
pub struct Claimed {
    pub jobs: Vec<job::Model>,
    /// When the next available job of the queue not yet due is due (`None`:
    /// there is none), where the claim could tell (PostgreSQL: the same
    /// statement reads it); `Unknown` on SQLite, where [`next_due`] is an
    /// in-process call anyway.
    pub next_due: NextDue,
}

#[derive(Debug, Clone, Copy)]
pub enum NextDue {
    Known(Option<DateTime<Utc>>),
    Unknown,
}

/// Claims up to `limit` due jobs of `queue` for `owner`, under a lease.
pub async fn claim(
    db: &Database,
    queue: Queue,
    limit: u64,
    owner: Uuid,
    lease: Duration,
) -> Result<Claimed, DbErr> {
    let now = crate::db::now();
    // The pause flag is read by the claiming statement itself (one round
    // trip less than asking first, and no gap between asking and claiming).
    let paused = Query::select()
        .expr(Expr::val(1))
        .from(JobQueues)
        .and_where(Expr::col(job_queue::Column::Queue).eq(queue.as_str()))
        .and_where(Expr::col(job_queue::Column::Paused).eq(true))
        .to_owned();
    let due = Query::select()
        .column(job::Column::Id)
        .from(Jobs)
        .and_where(Expr::col(job::Column::Queue).eq(queue.as_str()))
        .and_where(state_is(JobState::Available))
        .and_where(Expr::col(job::Column::RunAt).lte(now))
        .and_where(Expr::exists(paused).not())
        .order_by(job::Column::Priority, Order::Desc)
        .order_by(job::Column::RunAt, Order::Asc)
        .order_by(job::Column::Id, Order::Asc)
        .limit(limit)
        // PostgreSQL: concurrent claimers skip each other's rows. SQLite
        // (where sea-query drops this) has one writer at a time anyway.
        .lock_with_behavior(LockType::Update, LockBehavior::SkipLocked)
        .to_owned();
    let claim = Query::update()
        .table(Jobs)
        .value(job::Column::State, JobState::Running.as_str())
        .value(job::Column::Attempt, Expr::col(job::Column::Attempt).add(1))
        .value(job::Column::LeaseOwner, owner)
        .value(job::Column::LeaseExpiresAt, now + to_delta(lease))
        .value(job::Column::StartedAt, now)
        .value(job::Column::UpdatedAt, now)
        .and_where(Expr::col(job::Column::Id).in_subquery(due))
        .returning_all()
        .to_owned();
    let statement = db.backend().build(&claim);
    // Claims are the queue's most frequent write: one statement, committed on
    // its own.
    if !db.is_postgres() {
        let jobs = Jobs::find()
            .from_raw_sql(statement)
            .all(&*db.single_write().await?)
            .await?;
        return Ok(Claimed {
            jobs,
            next_due: NextDue::Unknown,
        });
    }
    // PostgreSQL: the same statement tells when the next job not yet due is
    // (the fetch loop sleeps until then), sparing a query after every claim
    // that found fewer jobs than it asked for. The subquery reads the
    // snapshot before the claim, which is right: claimed jobs are due, so
    // `run_at > now` leaves them out. One row even when nothing is claimed.
    let values = statement.values.clone().map(|v| v.0).unwrap_or_default();
    let queue_param = values.len() + 1;
    let now_param = values.len() + 2;
    let statement = Statement::from_sql_and_values(
        DbBackend::Postgres,
        format!(
            "WITH claimed AS ({}) SELECT claimed.*, later.next_due FROM \
             (SELECT min(run_at) AS next_due FROM jobs WHERE queue = ${queue_param} \
              AND state = 'available' AND run_at > ${now_param}) AS later \
             LEFT JOIN claimed ON true",
            statement.sql
        ),
        values
            .into_iter()
            .chain([queue.as_str().into(), now.into()]),
    );
    let rows = db.single_write().await?.query_all_raw(statement).await?;
    let mut next_due = None;
    let mut jobs = Vec::with_capacity(rows.len());
    for row in rows {
        next_due = row.try_get::<Option<DateTime<Utc>>>("", "next_due")?;
        if row.try_get::<Option<Uuid>>("", "id")?.is_some() {
            jobs.push(job::Model::from_query_result(&row, "")?);
        }
    }
    Ok(Claimed {
        jobs,
        next_due: NextDue::Known(next_due),
    })
}

/// When the next available job of `queue` is due, if any.
pub async fn next_due<C: ConnectionTrait>(
    conn: &C,
    queue: Queue,
) -> Result<Option<DateTime<Utc>>, DbErr> {
    Jobs::find()
        .select_only()
        .column(job::Column::RunAt)
        .filter(job::Column::Queue.eq(queue.as_str()))
        .filter(state_is(JobState::Available))
        .order_by_asc(job::Column::RunAt)
        .limit(1)
        .into_tuple::<DateTime<Utc>>()
        .one(conn)
        .await
}

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
    let now = crate::db::now();
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
    let now = crate::db::now();
    let txn = db.begin_write().await?;
    let queue = Queue::parse(&job.queue).unwrap_or(Queue::Maintenance);
    let state = super::state_for(run_at, now);
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
    let now = crate::db::now();
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

/// Extends the leases of `jobs` that `owner` is still running.
///
/// Rows locked at that moment are skipped: they belong to a batch of
/// successes being written (they are leaving `running`; if that write fails
/// and is tried again, the next beat extends them). Waiting for them instead
/// could deadlock with that batch, which locks the same rows in another order.
pub async fn heartbeat(
    db: &Database,
    owner: Uuid,
    jobs: &[Uuid],
    lease: Duration,
) -> Result<u64, DbErr> {
    if jobs.is_empty() {
        return Ok(0);
    }
    let now = crate::db::now();
    let txn = db.begin_write().await?;
    let mine = Query::select()
        .column(job::Column::Id)
        .from(Jobs)
        .and_where(Expr::col(job::Column::Id).is_in(jobs.iter().copied()))
        .and_where(state_is(JobState::Running))
        .and_where(Expr::col(job::Column::LeaseOwner).eq(owner))
        // SQLite (where sea-query drops this) has one writer at a time.
        .lock_with_behavior(LockType::Update, LockBehavior::SkipLocked)
        .to_owned();
    let result = Jobs::update_many()
        .col_expr(
            job::Column::LeaseExpiresAt,
            Expr::value(now + to_delta(lease)),
        )
        .filter(job::Column::Id.in_subquery(mine))
        .exec(&*txn)
        .await?;
    txn.commit().await?;
    Ok(result.rows_affected)
}

/// Running jobs whose lease has expired: their worker died or hung.
pub async fn expired_leases<C: ConnectionTrait>(
    conn: &C,
    limit: u64,
) -> Result<Vec<job::Model>, DbErr> {
    Jobs::find()
        .filter(state_is(JobState::Running))
        .filter(job::Column::LeaseExpiresAt.lt(crate::db::now()))
        .order_by_asc(job::Column::LeaseExpiresAt)
        .limit(limit)
        .all(conn)
        .await
}

/// Deletes succeeded and discarded jobs that finished before `cutoff`.
/// Failed jobs stay until an operator retries or discards them.
pub async fn delete_finished_before(db: &Database, cutoff: DateTime<Utc>) -> Result<u64, DbErr> {
    let txn = db.begin_write().await?;
    let result = Jobs::delete_many()
        .filter(job::Column::State.is_in([JobState::Succeeded, JobState::Discarded]))
        .filter(job::Column::FinishedAt.lt(cutoff))
        .exec(&*txn)
        .await?;
    txn.commit().await?;
    Ok(result.rows_affected)
}

/// Pauses or resumes a queue (dashboard action).
pub async fn set_paused(db: &Database, queue: Queue, paused: bool) -> Result<(), DbErr> {
    use sea_orm::{ActiveValue::Set, sea_query::OnConflict};
    let txn = db.begin_write().await?;
    JobQueues::insert(job_queue::ActiveModel {
        queue: Set(queue.as_str().to_owned()),
        paused: Set(paused),
        updated_at: Set(crate::db::now()),
    })
    .on_conflict(
        OnConflict::column(job_queue::Column::Queue)
            .update_columns([job_queue::Column::Paused, job_queue::Column::UpdatedAt])
            .to_owned(),
    )
    .exec_without_returning(&*txn)
    .await?;
    if !paused {
        announce(&txn, queue).await?;
    }
    txn.commit().await
}
