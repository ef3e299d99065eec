//! The payment safety nets of PENDING orders: `payment.reconcile` (every
//! minute) and [`settle_pending`], which it shares with `order.expire`:
//! ask the provider about an order whose webhook may have been lost, and
//! cancel what is overdue or abandoned.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{
    model::order::{self, Entity as Orders},
    payment_outcomes::apply_intent_outcome,
    status::OrderStatus,
    transition::{Actor, Change, Target, TransitionError, transition},
};
use crate::{
    jobs::{Job, JobContext, JobError, Queue},
    payments::{
        gateway::{GatewayError, IntentOutcome, IntentStatus},
        queries as payments,
    },
};

/// The periodic safety net (every minute): asks the provider about PENDING
/// orders whose webhook may have been lost, cancels overdue unpaid orders,
/// and undoes checkouts abandoned before their PaymentIntent existed.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Reconcile {}

/// Orders looked at per run; the next run takes the rest.
const BATCH: u64 = 200;

#[async_trait]
impl Job for Reconcile {
    const KIND: &'static str = "payment.reconcile";
    const QUEUE: Queue = Queue::Payments;

    async fn run(&self, ctx: &JobContext) -> Result<(), JobError> {
        let now = ctx.db.now();
        let older = |d: Duration| now - crate::duration::to_delta(d);
        let asked_before = older(
            ctx.config
                .payment_reconcile_after
                .min(ctx.config.order_recovery_after),
        );
        let stale: Vec<order::Model> = Orders::find()
            .filter(order::Column::Status.eq(OrderStatus::Pending))
            .filter(order::Column::DeletedAt.is_null())
            .filter(order::Column::CreatedAt.lt(asked_before))
            .order_by_asc(order::Column::CreatedAt)
            .limit(BATCH)
            .all(ctx.db.conn())
            .await?;
        let mut failures = 0;
        for order in stale {
            if let Err(e) = settle_pending(ctx, &order, now).await {
                failures += 1;
                tracing::warn!(order.id = %order.id, error = %e, "reconciliation of an order failed; next run retries");
            }
        }
        if failures > 0 {
            return Err(JobError::retryable(format!(
                "{failures} orders could not be reconciled"
            )));
        }
        Ok(())
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
            apply_intent_outcome(&txn, order.id, &intent_id, outcome, Actor::Job).await?;
            txn.commit().await?;
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
    let mut change = Change::to(Target::Canceled, Actor::System).because(reason);
    // Decided on an earlier read: if a payment made it PAID meanwhile, that wins.
    change.expect_from = Some(OrderStatus::Pending);
    match transition(&txn, order_id, change).await {
        Ok(_) => {
            if free_key {
                crate::idempotency::release_resource(&*txn, order_id).await?;
            }
            txn.commit().await?;
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
