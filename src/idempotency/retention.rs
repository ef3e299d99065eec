//! `idempotency.cleanup`: deletes records past their 24 hours.

use async_trait::async_trait;
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter};
use serde::{Deserialize, Serialize};

use super::record::{self, Entity as Records};
use crate::jobs::{Job, JobContext, JobError, Queue};

/// Deletes idempotency records whose `expires_at` has passed.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Cleanup {}

#[async_trait]
impl Job for Cleanup {
    const KIND: &'static str = "idempotency.cleanup";
    const QUEUE: Queue = Queue::Maintenance;

    async fn run(&self, ctx: &JobContext) -> Result<(), JobError> {
        let txn = ctx.db.begin_write().await?;
        let records = delete_expired(&*txn, ctx.db.now()).await?;
        txn.commit().await?;
        tracing::info!(idempotency_records.deleted = records, "cleanup done");
        Ok(())
    }
}

/// Removes records that expired before `now`.
pub async fn delete_expired<C: ConnectionTrait>(
    conn: &C,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<u64, sea_orm::DbErr> {
    Ok(Records::delete_many()
        .filter(record::Column::ExpiresAt.lt(now))
        .exec(conn)
        .await?
        .rows_affected)
}
