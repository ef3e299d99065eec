//! `payment.events_cleanup`: forgets webhook event ids once the provider can
//! no longer resend them.

use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::jobs::{Job, JobContext, JobError, Queue};

/// How long a webhook event id is remembered for deduplication: well past
/// Stripe's three days of retries.
pub const PAYMENT_EVENT_RETENTION: Duration = Duration::from_secs(30 * 24 * 3600);

/// Deletes webhook event ids older than [`PAYMENT_EVENT_RETENTION`].
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct EventsCleanup {}

#[async_trait]
impl Job for EventsCleanup {
    const KIND: &'static str = "payment.events_cleanup";
    const QUEUE: Queue = Queue::Maintenance;

    async fn run(&self, ctx: &JobContext) -> Result<(), JobError> {
        let before = ctx.db.now() - crate::duration::to_delta(PAYMENT_EVENT_RETENTION);
        let txn = ctx.db.begin_write().await?;
        let events = super::queries::delete_events_before(&*txn, before).await?;
        txn.commit().await?;
        tracing::info!(payment_events.deleted = events, "cleanup done");
        Ok(())
    }
}
