//! Leases: the heartbeat that extends them and the expired ones the rescuer
//! takes back.

use std::time::Duration;

use sea_orm::{
    ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    sea_query::{Expr, ExprTrait, LockBehavior, LockType, Query},
};
use uuid::Uuid;

use super::state_is;
use crate::{
    db::Database,
    jobs::model::job::{self, Entity as Jobs, JobState},
};

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
    let now = db.now();
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
            Expr::value(now + crate::duration::to_delta(lease)),
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
    now: chrono::DateTime<chrono::Utc>,
    limit: u64,
) -> Result<Vec<job::Model>, DbErr> {
    Jobs::find()
        .filter(state_is(JobState::Running))
        .filter(job::Column::LeaseExpiresAt.lt(now))
        .order_by_asc(job::Column::LeaseExpiresAt)
        .limit(limit)
        .all(conn)
        .await
}
