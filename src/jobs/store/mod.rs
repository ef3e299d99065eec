//! The queue's SQL: claim, finish, heartbeat, rescue, retention. Every state
//! change after a claim is fenced by `(lease_owner, attempt)`, so only the
//! worker holding the current lease can move a job on.

use chrono::{DateTime, Utc};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbBackend, DbErr, EntityTrait, QueryFilter, Statement,
    sea_query::{Expr, ExprTrait, Query, SimpleExpr},
};

use super::{
    NOTIFY_CHANNEL, Queue, WAKE_HORIZON,
    model::{
        job::{self, Entity as Jobs, JobState},
        job_queue::{self, Entity as JobQueues},
    },
};
use crate::db::{Database, WriteTxn};

mod claim;
mod finish;
mod lease;

pub use self::{claim::*, finish::*, lease::*};

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
    let now = db.now();
    let promote = Query::update()
        .table(Jobs)
        .value(job::Column::State, JobState::Available.as_str())
        .value(job::Column::UpdatedAt, now)
        .and_where(state_is(JobState::Scheduled))
        .and_where(Expr::col(job::Column::RunAt).lte(now + crate::duration::to_delta(WAKE_HORIZON)))
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
        updated_at: Set(db.now()),
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
