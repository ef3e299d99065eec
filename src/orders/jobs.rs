//! The order jobs: `order.process` (PAID → PROCESSED), `order.expire`
//! (an unpaid order's payment timeout) and `order.compensate` (processing
//! failed for good: refund if paid, else cancel; notify `order.failed`).

use async_trait::async_trait;
use sea_orm::EntityTrait;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{
    model::order::Entity as Orders,
    reconcile::settle_pending,
    status::OrderStatus,
    transition::{Actor, Change, Notify, Target, TransitionError, notify, transition},
};
use crate::{
    jobs::{Job, JobContext, JobError, JobOptions, NewJob, Queue},
    notifications::event::NotificationEvent,
};

/// Fulfilment of a paid order: PAID → PROCESSED.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Process {
    pub order_id: Uuid,
}

#[async_trait]
impl Job for Process {
    const KIND: &'static str = "order.process";
    const QUEUE: Queue = Queue::Orders;

    fn subject(&self) -> Option<String> {
        Some(self.order_id.to_string())
    }

    async fn run(&self, ctx: &JobContext) -> Result<(), JobError> {
        let txn = ctx.db.begin_write().await?;
        match transition(
            &txn,
            self.order_id,
            Change::to(Target::Processed, Actor::Job),
        )
        .await
        {
            Ok(_) => txn.commit().await?,
            // Canceled or refunded meanwhile, or processed by an earlier run.
            Err(
                TransitionError::NotFound
                | TransitionError::Invalid { .. }
                | TransitionError::Conflict { .. },
            ) => {}
            Err(TransitionError::Database(e)) => return Err(e.into()),
        }
        Ok(())
    }

    fn compensation(&self) -> Option<NewJob> {
        Some(NewJob::of(&ProcessingFailed {
            order_id: self.order_id,
        }))
    }
}

/// Processing failed after every attempt: the customer gets their money
/// back (refund if paid, else cancel) and an `order.failed` notification.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProcessingFailed {
    pub order_id: Uuid,
}

#[async_trait]
impl Job for ProcessingFailed {
    const KIND: &'static str = "order.compensate";
    const QUEUE: Queue = Queue::Orders;

    fn options() -> JobOptions {
        JobOptions {
            max_attempts: 10,
            ..JobOptions::default()
        }
    }

    fn subject(&self) -> Option<String> {
        Some(self.order_id.to_string())
    }

    async fn run(&self, ctx: &JobContext) -> Result<(), JobError> {
        let txn = ctx.db.begin_write().await?;
        let Some(order) = Orders::find_by_id(self.order_id).one(&*txn).await? else {
            return Ok(());
        };
        let to = if order.status.is_paid() {
            Target::Refunded { restock: false }
        } else {
            Target::Canceled
        };
        let mut change = Change::to(to, Actor::Job).because("processing_failed");
        change.notify = Notify::Nobody;
        match transition(&txn, self.order_id, change).await {
            Ok(done) => {
                notify(&txn, &done.order, NotificationEvent::OrderFailed).await?;
                txn.commit().await?;
                Ok(())
            }
            // Already final (canceled or refunded by someone else), or moved
            // on (shipped): nothing left to compensate.
            Err(TransitionError::NotFound | TransitionError::Invalid { .. }) => Ok(()),
            Err(e @ TransitionError::Conflict { .. }) => Err(JobError::retryable(e)),
            Err(TransitionError::Database(e)) => Err(e.into()),
        }
    }
}

/// An unpaid order's payment timeout (enqueued with the order, to run at
/// its `expires_at`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Expire {
    pub order_id: Uuid,
}

#[async_trait]
impl Job for Expire {
    const KIND: &'static str = "order.expire";
    const QUEUE: Queue = Queue::Orders;

    fn subject(&self) -> Option<String> {
        Some(self.order_id.to_string())
    }

    async fn run(&self, ctx: &JobContext) -> Result<(), JobError> {
        let Some(order) = Orders::find_by_id(self.order_id).one(ctx.db.conn()).await? else {
            return Ok(());
        };
        if order.status != OrderStatus::Pending {
            return Ok(());
        }
        settle_pending(ctx, &order, ctx.db.now().max(order.expires_at)).await
    }
}
