//! Claiming due jobs under a lease, and when the next one is due.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbBackend, DbErr, EntityTrait, FromQueryResult, QueryFilter,
    QueryOrder, QuerySelect, Statement,
    sea_query::{Expr, ExprTrait, LockBehavior, LockType, Order, Query},
};
use uuid::Uuid;

use super::state_is;
use crate::{
    db::Database,
    jobs::{
        Queue,
        model::{
            job::{self, Entity as Jobs, JobState},
            job_queue::{self, Entity as JobQueues},
        },
    },
};

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
    let now = db.now();
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
        .value(
            job::Column::LeaseExpiresAt,
            now + crate::duration::to_delta(lease),
        )
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
