//! The order jobs: `order.process` (PAID → PROCESSED), `order.expire`
//! (an unpaid order's payment timeout) and `order.compensate` (processing
//! failed for good: refund if paid, else cancel; notify `order.failed`).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{
    after_commit,
    model::order::{self, Entity as Orders},
    status::OrderStatus,
    transition::{Actor, Change, TransitionError, notify, transition},
};
use crate::{
    jobs::{Job, JobContext, JobError, JobOptions, NewJob, Queue},
    payments::{
        events::{IntentOutcome, apply_intent_outcome},
        gateway::{GatewayError, IntentStatus},
        queries as payments,
    },
};
use sea_orm::EntityTrait;

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
            Change::to(OrderStatus::Processed, Actor::Job),
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
            OrderStatus::Refunded
        } else {
            OrderStatus::Canceled
        };
        let mut change = Change::to(to, Actor::Job).because("processing_failed");
        change.notify = false;
        match transition(&txn, self.order_id, change).await {
            Ok(done) => {
                notify(&txn, &done.order, "order.failed").await?;
                txn.commit().await?;
                after_commit(&ctx.cache, done.restocked).await;
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

/// Decides what becomes of a PENDING order, asking the provider when a
/// PaymentIntent exists: paid → PAID; canceled → CANCELED; still unpaid
/// past its expiry → CANCELED (payment timeout); never got a PaymentIntent
/// and abandoned → CANCELED, its idempotency key freed.
pub async fn settle_pending(
    ctx: &JobContext,
    order: &order::Model,
    now: DateTime<Utc>,
) -> Result<(), JobError> {
    let overdue = order.expires_at <= now;
    let payment = payments::payment_of_order(ctx.db.conn(), order.id).await?;
    let intent_id = payment.and_then(|p| p.provider_payment_id);
    let Some(intent_id) = intent_id else {
        let recovery = crate::duration::to_delta(ctx.config.order_recovery_after);
        if overdue || order.created_at + recovery <= now {
            let reason = if overdue {
                "payment_timeout"
            } else {
                "checkout_abandoned"
            };
            return cancel_unpaid(ctx, order.id, reason, true).await;
        }
        return Ok(());
    };
    let outcome = match ctx.gateway.retrieve_payment_intent(&intent_id).await {
        Ok(intent) => match intent.status {
            IntentStatus::Succeeded => Some(IntentOutcome::Succeeded),
            IntentStatus::Canceled => Some(IntentOutcome::Canceled),
            // A payment in flight at the bank is given its time.
            IntentStatus::Processing => return Ok(()),
            IntentStatus::RequiresPayment => None,
        },
        Err(GatewayError::Unavailable(why)) if !overdue => return Err(JobError::retryable(why)),
        // Overdue and the provider cannot tell: cancel now. Should the
        // payment succeed after all, its webhook refunds it automatically.
        Err(_) => None,
    };
    match outcome {
        Some(outcome) => {
            let txn = ctx.db.begin_write().await?;
            let applied =
                apply_intent_outcome(&txn, order.id, &intent_id, outcome, Actor::Job).await?;
            txn.commit().await?;
            after_commit(&ctx.cache, applied.restocked()).await;
            Ok(())
        }
        None if overdue => cancel_unpaid(ctx, order.id, "payment_timeout", false).await,
        None => Ok(()),
    }
}

async fn cancel_unpaid(
    ctx: &JobContext,
    order_id: Uuid,
    reason: &str,
    free_key: bool,
) -> Result<(), JobError> {
    let txn = ctx.db.begin_write().await?;
    let mut change = Change::to(OrderStatus::Canceled, Actor::System).because(reason);
    // Decided on an earlier read: if a payment made it PAID meanwhile, that wins.
    change.expect_from = Some(OrderStatus::Pending);
    match transition(&txn, order_id, change).await {
        Ok(done) => {
            if free_key {
                crate::idempotency::release_resource(&*txn, order_id).await?;
            }
            txn.commit().await?;
            after_commit(&ctx.cache, done.restocked).await;
            Ok(())
        }
        Err(
            TransitionError::NotFound
            | TransitionError::Invalid { .. }
            | TransitionError::Conflict { .. },
        ) => Ok(()),
        Err(TransitionError::Database(e)) => Err(e.into()),
    }
}
