//! The queue's own retention: `maintenance.cleanup` deletes finished jobs.
//! Each domain owns the retention of its tables (`payments::retention`,
//! `notifications::retention`, `idempotency::retention`); the composition
//! root (`startup`) schedules them all.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::{Job, JobContext, JobError, Queue, store};

/// Deletes succeeded/discarded jobs older than `JOB_RETENTION`. Failed jobs
/// are kept until an operator acts.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Cleanup {}

#[async_trait]
impl Job for Cleanup {
    const KIND: &'static str = "maintenance.cleanup";
    const QUEUE: Queue = Queue::Maintenance;

    async fn run(&self, ctx: &JobContext) -> Result<(), JobError> {
        let retention = crate::duration::to_delta(ctx.config.job_retention);
        let jobs = store::delete_finished_before(&ctx.db, ctx.db.now() - retention).await?;
        tracing::info!(jobs.deleted = jobs, "cleanup done");
        Ok(())
    }
}
