//! The maintenance job (retention of finished jobs, expired idempotency
//! records and old webhook events) and the schedule of periodic jobs.

use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::{Job, JobContext, JobError, NewJob, Queue, scheduler::Periodic, store};

/// Deletes succeeded/discarded jobs older than `JOB_RETENTION`, idempotency
/// records past their 24 h, webhook event ids older than
/// [`PAYMENT_EVENT_RETENTION`] and read notifications older than
/// `NOTIFICATION_RETENTION`. Failed jobs are kept.
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
        let events_before = crate::db::now()
            - chrono::Duration::from_std(PAYMENT_EVENT_RETENTION).unwrap_or_default();
        let events = crate::payments::queries::delete_events_before(&*txn, events_before).await?;
        let read_before = crate::db::now()
            - chrono::Duration::from_std(ctx.config.notification_retention)
                .unwrap_or(chrono::Duration::days(30));
        let notifications =
            crate::notifications::queries::delete_read_before(&*txn, read_before).await?;
        txn.commit().await?;
        tracing::info!(
            jobs.deleted = jobs,
            idempotency_records.deleted = records,
            payment_events.deleted = events,
            notifications.deleted = notifications,
            "cleanup done"
        );
        Ok(())
    }
}

/// How long a webhook event id is remembered for deduplication: well past
/// Stripe's three days of retries.
pub const PAYMENT_EVENT_RETENTION: Duration = Duration::from_secs(30 * 24 * 3600);

/// The periodic jobs Dispatch ships with.
pub fn standard_schedule() -> Vec<Periodic> {
    vec![
        Periodic {
            name: "maintenance.cleanup",
            every: Duration::from_secs(3600),
            make: || NewJob::of(&Cleanup::default()),
        },
        Periodic {
            name: "payment.reconcile",
            every: Duration::from_secs(60),
            make: || NewJob::of(&crate::orders::reconcile::Reconcile::default()),
        },
    ]
}
