//! The maintenance job: retention of finished jobs and expired idempotency
//! records.

use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::{Job, JobContext, JobError, NewJob, Queue, scheduler::Periodic, store};

/// Deletes succeeded/discarded jobs older than `JOB_RETENTION` and
/// idempotency records past their 24 h. Failed jobs are kept.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Cleanup {}

#[async_trait]
impl Job for Cleanup {
    const KIND: &'static str = "maintenance.cleanup";
    const QUEUE: Queue = Queue::Maintenance;

    async fn run(&self, ctx: &JobContext) -> Result<(), JobError> {
        let retention = chrono::Duration::from_std(ctx.config.job_retention)
            .unwrap_or(chrono::Duration::days(7));
        let jobs = store::delete_finished_before(&ctx.db, crate::db::now() - retention).await?;
        let txn = ctx.db.begin_write().await?;
        let records = crate::idempotency::delete_expired(&*txn).await?;
        txn.commit().await?;
        tracing::info!(
            jobs.deleted = jobs,
            idempotency_records.deleted = records,
            "cleanup done"
        );
        Ok(())
    }
}

/// The periodic jobs Dispatch ships with.
pub fn standard_schedule() -> Vec<Periodic> {
    vec![Periodic {
        name: "maintenance.cleanup",
        every: Duration::from_secs(3600),
        make: || NewJob::of(&Cleanup::default()),
    }]
}
