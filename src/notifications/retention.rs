//! `notification.cleanup`: deletes read notifications past
//! `NOTIFICATION_RETENTION`; unread ones stay.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::jobs::{Job, JobContext, JobError, Queue};

/// Deletes read notifications created longer than `NOTIFICATION_RETENTION` ago.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Cleanup {}

#[async_trait]
impl Job for Cleanup {
    const KIND: &'static str = "notification.cleanup";
    const QUEUE: Queue = Queue::Maintenance;

    async fn run(&self, ctx: &JobContext) -> Result<(), JobError> {
        let before = ctx.db.now() - crate::duration::to_delta(ctx.config.notification_retention);
        let txn = ctx.db.begin_write().await?;
        let notifications = super::queries::delete_read_before(&*txn, before).await?;
        txn.commit().await?;
        tracing::info!(notifications.deleted = notifications, "cleanup done");
        Ok(())
    }
}
