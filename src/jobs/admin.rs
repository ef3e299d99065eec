//! Operator actions and views on the queue, shared by the JSON API
//! (`/api/v1/admin/jobs`) and the dashboard (`/admin/queues`). Every action
//! is a conditional write on the job's state and is logged with its actor.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbErr, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder,
    QuerySelect, sea_query::Expr,
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::{
    Queue,
    model::job::{self, Entity as Jobs, JobState},
    store,
};
use crate::{
    db::Database,
    http::pagination::{Cursor, Page, PageRequest},
};

/// One job as operators see it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobView {
    pub id: Uuid,
    pub queue: String,
    pub kind: String,
    pub state: JobState,
    pub payload: serde_json::Value,
    pub priority: i16,
    pub attempt: i32,
    pub max_attempts: i32,
    pub run_at: DateTime<Utc>,
    pub last_error: Option<String>,
    /// `[{attempt, at, error}]`
    pub errors: serde_json::Value,
    pub correlation_id: Option<String>,
    pub unique_key: Option<String>,
    pub lease_owner: Option<Uuid>,
    pub lease_expires_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
}

impl From<job::Model> for JobView {
    fn from(j: job::Model) -> Self {
        Self {
            id: j.id,
            queue: j.queue,
            kind: j.kind,
            state: j.state,
            payload: j.payload,
            priority: j.priority,
            attempt: j.attempt,
            max_attempts: j.max_attempts,
            run_at: j.run_at,
            last_error: j.last_error,
            errors: j.errors,
            correlation_id: j.correlation_id,
            unique_key: j.unique_key,
            lease_owner: j.lease_owner,
            lease_expires_at: j.lease_expires_at,
            created_at: j.created_at,
            started_at: j.started_at,
            finished_at: j.finished_at,
        }
    }
}

/// A queue's health at a glance.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct QueueStats {
    pub queue: Queue,
    pub paused: bool,
    /// Jobs by state.
    pub counts: BTreeMap<String, u64>,
    /// Age of the oldest job waiting to run (due now), in seconds.
    pub oldest_waiting_seconds: Option<f64>,
    /// Jobs that succeeded in the last minute.
    pub succeeded_last_minute: u64,
}

pub async fn queue_stats<C: ConnectionTrait>(conn: &C) -> Result<Vec<QueueStats>, DbErr> {
    let now = crate::db::now();
    let rows: Vec<(String, JobState, i64)> = Jobs::find()
        .select_only()
        .column(job::Column::Queue)
        .column(job::Column::State)
        .column_as(job::Column::Id.count(), "n")
        .group_by(job::Column::Queue)
        .group_by(job::Column::State)
        .into_tuple()
        .all(conn)
        .await?;
    let mut stats = Vec::new();
    for queue in Queue::ALL {
        let mut counts: BTreeMap<String, u64> = [
            JobState::Scheduled,
            JobState::Available,
            JobState::Running,
            JobState::Succeeded,
            JobState::Failed,
            JobState::Discarded,
        ]
        .iter()
        .map(|s| (s.as_str().to_owned(), 0))
        .collect();
        for (q, state, n) in &rows {
            if q == queue.as_str() {
                counts.insert(state.as_str().to_owned(), u64::try_from(*n).unwrap_or(0));
            }
        }
        let oldest: Option<DateTime<Utc>> = Jobs::find()
            .select_only()
            .column(job::Column::RunAt)
            .filter(job::Column::Queue.eq(queue.as_str()))
            .filter(job::Column::State.eq(JobState::Available))
            .filter(job::Column::RunAt.lte(now))
            .order_by_asc(job::Column::RunAt)
            .limit(1)
            .into_tuple()
            .one(conn)
            .await?;
        let succeeded_last_minute = Jobs::find()
            .filter(job::Column::Queue.eq(queue.as_str()))
            .filter(job::Column::State.eq(JobState::Succeeded))
            .filter(job::Column::FinishedAt.gte(now - chrono::Duration::minutes(1)))
            .count(conn)
            .await?;
        stats.push(QueueStats {
            queue,
            paused: store::is_paused(conn, queue).await?,
            counts,
            oldest_waiting_seconds: oldest.map(|t| (now - t).num_milliseconds() as f64 / 1000.0),
            succeeded_last_minute,
        });
    }
    Ok(stats)
}

/// Filters of the job list.
#[derive(Debug, Default, Clone)]
pub struct JobFilter {
    pub queue: Option<Queue>,
    pub kind: Option<String>,
    pub state: Option<JobState>,
}

pub async fn list<C: ConnectionTrait>(
    conn: &C,
    filter: &JobFilter,
    page: &PageRequest,
) -> Result<Page<JobView>, DbErr> {
    let mut select = Jobs::find();
    if let Some(queue) = filter.queue {
        select = select.filter(job::Column::Queue.eq(queue.as_str()));
    }
    if let Some(kind) = &filter.kind {
        select = select.filter(job::Column::Kind.eq(kind.as_str()));
    }
    if let Some(state) = filter.state {
        select = select.filter(job::Column::State.eq(state));
    }
    let rows = page
        .apply(select, job::Column::CreatedAt, job::Column::Id)
        .all(conn)
        .await?;
    Ok(page.finish(
        rows,
        |j| Cursor {
            created_at: j.created_at,
            id: j.id,
        },
        JobView::from,
    ))
}

pub async fn find<C: ConnectionTrait>(conn: &C, id: Uuid) -> Result<Option<JobView>, DbErr> {
    Ok(Jobs::find_by_id(id).one(conn).await?.map(JobView::from))
}

/// Why an action did not apply.
#[derive(Debug, thiserror::Error)]
pub enum ActionError {
    #[error("no such job")]
    NotFound,
    #[error("the job is {0:?}; this action does not apply")]
    WrongState(JobState),
    #[error(transparent)]
    Database(#[from] DbErr),
}

/// Puts a failed or discarded job back in its queue with fresh attempts
/// (its error history is kept).
pub async fn retry(db: &Database, id: Uuid, actor: &str) -> Result<(), ActionError> {
    let txn = db.begin_write().await?;
    let current = Jobs::find_by_id(id)
        .one(&*txn)
        .await?
        .ok_or(ActionError::NotFound)?;
    let moved = with_fresh_attempts(Jobs::update_many())
        .filter(job::Column::Id.eq(id))
        .filter(job::Column::State.is_in([JobState::Failed, JobState::Discarded]))
        .exec(&*txn)
        .await?;
    if moved.rows_affected != 1 {
        return Err(ActionError::WrongState(current.state));
    }
    store::announce(
        &txn,
        Queue::parse(&current.queue).unwrap_or(Queue::Maintenance),
    )
    .await?;
    txn.commit().await?;
    tracing::info!(actor = actor, job.id = %id, job.kind = %current.kind, "job retried by an operator");
    Ok(())
}

/// Back to `available`, due now, with attempts counted afresh.
fn with_fresh_attempts(update: sea_orm::UpdateMany<Jobs>) -> sea_orm::UpdateMany<Jobs> {
    update
        .col_expr(job::Column::State, Expr::value(JobState::Available))
        .col_expr(job::Column::Attempt, Expr::value(0))
        .col_expr(job::Column::RunAt, Expr::value(crate::db::now()))
        .col_expr(
            job::Column::FinishedAt,
            Expr::value(Option::<DateTime<Utc>>::None),
        )
        .col_expr(job::Column::UpdatedAt, Expr::value(crate::db::now()))
}

/// Retries every failed job of `kind`; returns how many.
pub async fn retry_failed_of_kind(db: &Database, kind: &str, actor: &str) -> Result<u64, DbErr> {
    let txn = db.begin_write().await?;
    let queues: Vec<String> = Jobs::find()
        .select_only()
        .column(job::Column::Queue)
        .filter(job::Column::Kind.eq(kind))
        .filter(job::Column::State.eq(JobState::Failed))
        .distinct()
        .into_tuple()
        .all(&*txn)
        .await?;
    let moved = with_fresh_attempts(Jobs::update_many())
        .filter(job::Column::Kind.eq(kind))
        .filter(job::Column::State.eq(JobState::Failed))
        .exec(&*txn)
        .await?;
    for queue in queues.iter().filter_map(|q| Queue::parse(q)) {
        store::announce(&txn, queue).await?;
    }
    txn.commit().await?;
    tracing::info!(
        actor = actor,
        job.kind = kind,
        jobs = moved.rows_affected,
        "failed jobs retried by an operator"
    );
    Ok(moved.rows_affected)
}

/// Gives up on a job that is waiting or failed (not one that is running).
pub async fn discard(db: &Database, id: Uuid, actor: &str) -> Result<(), ActionError> {
    let txn = db.begin_write().await?;
    let current = Jobs::find_by_id(id)
        .one(&*txn)
        .await?
        .ok_or(ActionError::NotFound)?;
    let moved = Jobs::update_many()
        .col_expr(job::Column::State, Expr::value(JobState::Discarded))
        .col_expr(job::Column::FinishedAt, Expr::value(crate::db::now()))
        .col_expr(job::Column::UpdatedAt, Expr::value(crate::db::now()))
        .filter(job::Column::Id.eq(id))
        .filter(job::Column::State.is_in([
            JobState::Scheduled,
            JobState::Available,
            JobState::Failed,
        ]))
        .exec(&*txn)
        .await?;
    if moved.rows_affected != 1 {
        return Err(ActionError::WrongState(current.state));
    }
    txn.commit().await?;
    tracing::info!(actor = actor, job.id = %id, job.kind = %current.kind, "job discarded by an operator");
    Ok(())
}

pub async fn set_paused(
    db: &Database,
    queue: Queue,
    paused: bool,
    actor: &str,
) -> Result<(), DbErr> {
    store::set_paused(db, queue, paused).await?;
    tracing::info!(
        actor = actor,
        queue = queue.as_str(),
        paused,
        "queue paused state changed by an operator"
    );
    Ok(())
}
