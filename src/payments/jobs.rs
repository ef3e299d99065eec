//! The jobs that talk to the payment provider about orders:
//! `order.cancel_payment`, `order.refund` and `payment.reconcile`.
//!
//! No provider call ever happens inside a database transaction: each job
//! reads, calls the provider (with an idempotency key derived from our ids),
//! then records the answer in a short transaction of conditional writes.

use std::time::Duration;

use async_trait::async_trait;
use sea_orm::{ColumnTrait, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{
    events::{IntentOutcome, apply_intent_outcome},
    gateway::{GatewayError, IntentStatus, RefundRequest},
    model::{
        payment::{self, PaymentStatus},
        refund::RefundStatus,
    },
    queries::{self as payments, UNSETTLED},
};
use crate::{
    db::WriteTxn,
    jobs::{self, Job, JobContext, JobError, JobOptions, NewJob, Queue},
    orders::{
        self,
        model::order::{self, Entity as Orders},
        status::OrderStatus,
        transition::Actor,
    },
};

/// Cancels the PaymentIntent of an order that will not be paid (canceled,
/// expired, declined). If the customer managed to pay meanwhile, the
/// payment is refunded instead.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CancelPayment {
    pub order_id: Uuid,
}

#[async_trait]
impl Job for CancelPayment {
    const KIND: &'static str = "order.cancel_payment";
    const QUEUE: Queue = Queue::Payments;

    fn options() -> JobOptions {
        JobOptions {
            max_attempts: 8,
            ..JobOptions::default()
        }
    }

    fn subject(&self) -> Option<String> {
        Some(self.order_id.to_string())
    }

    async fn run(&self, ctx: &JobContext) -> Result<(), JobError> {
        let Some(payment) = payments::payment_of_order(ctx.db.conn(), self.order_id).await? else {
            return Ok(());
        };
        // No PaymentIntent stored: its client secret never reached the
        // customer, so nobody can pay it; nothing to cancel.
        let Some(intent_id) = payment.provider_payment_id.clone() else {
            return Ok(());
        };
        if payment.status.is_settled() {
            return Ok(());
        }
        let key = format!("pi-cancel-{}", self.order_id);
        match ctx.gateway.cancel_payment_intent(&intent_id, &key).await {
            Ok(_) => {
                let txn = ctx.db.begin_write().await?;
                payments::set_payment_status(
                    &*txn,
                    payment.id,
                    &UNSETTLED,
                    PaymentStatus::Canceled,
                )
                .await?;
                txn.commit().await?;
                Ok(())
            }
            Err(GatewayError::NotFound) => Ok(()),
            Err(GatewayError::Refused(why)) => {
                // Most likely paid meanwhile: ask, and refund if so.
                let intent = ctx.gateway.retrieve_payment_intent(&intent_id).await?;
                if intent.status != IntentStatus::Succeeded {
                    return Err(JobError::permanent(why));
                }
                let txn = ctx.db.begin_write().await?;
                let applied = apply_intent_outcome(
                    &txn,
                    self.order_id,
                    &intent_id,
                    IntentOutcome::Succeeded,
                    Actor::Job,
                )
                .await?;
                txn.commit().await?;
                orders::after_commit(&ctx.cache, applied.restocked()).await;
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }
}

/// Decides, in `txn`, to refund `payment` in full: opens its refund record
/// and enqueues the [`Refund`] job that asks the provider after the commit.
/// The one way a refund starts (a staff refund or cancel of a paid order,
/// a payment that lands on a canceled order).
pub async fn start_refund(
    txn: &WriteTxn,
    payment: &payment::Model,
    reason: Option<String>,
) -> Result<(), DbErr> {
    payments::open_refund(&**txn, payment, reason).await?;
    jobs::enqueue(
        txn,
        NewJob::of(&Refund {
            order_id: payment.order_id,
        }),
    )
    .await?;
    Ok(())
}

/// Refunds an order's payment in full: the refund record was opened by
/// [`start_refund`].
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Refund {
    pub order_id: Uuid,
}

#[async_trait]
impl Job for Refund {
    const KIND: &'static str = "order.refund";
    const QUEUE: Queue = Queue::Payments;

    fn options() -> JobOptions {
        JobOptions {
            max_attempts: 8,
            ..JobOptions::default()
        }
    }

    fn subject(&self) -> Option<String> {
        Some(self.order_id.to_string())
    }

    async fn run(&self, ctx: &JobContext) -> Result<(), JobError> {
        // One refund call per order at a time saves a duplicate provider
        // call; the provider idempotency key and the conditional writes
        // below keep it correct without the lock.
        let Some(_lock) = ctx
            .locks
            .try_acquire(
                &format!("refund:{}", self.order_id),
                Duration::from_secs(60),
            )
            .await
        else {
            return Err(JobError::retryable(
                "another refund of this order is running",
            ));
        };
        let Some(refund) = payments::refund_of_order(ctx.db.conn(), self.order_id).await? else {
            return Ok(());
        };
        if refund.status == RefundStatus::Succeeded {
            return Ok(());
        }
        let Some(payment) = payments::payment_of_order(ctx.db.conn(), self.order_id).await? else {
            return Ok(());
        };
        let Some(intent_id) = payment.provider_payment_id.clone() else {
            return Err(JobError::permanent(
                "the payment has no PaymentIntent to refund",
            ));
        };
        let request = RefundRequest {
            payment_intent_id: intent_id,
            amount: refund.amount,
            order_id: self.order_id,
        };
        let answer = ctx
            .gateway
            .create_refund(&request, &format!("refund-{}", refund.id))
            .await;
        let provider_refund = match answer {
            Ok(provider_refund) => provider_refund,
            Err(e @ (GatewayError::Declined(_) | GatewayError::Refused(_))) => {
                let txn = ctx.db.begin_write().await?;
                payments::sync_refund(&*txn, &refund, None, RefundStatus::Failed).await?;
                txn.commit().await?;
                return Err(e.into());
            }
            Err(e) => return Err(e.into()),
        };
        let status = RefundStatus::from(provider_refund.status);
        let txn = ctx.db.begin_write().await?;
        payments::sync_refund(&*txn, &refund, Some(&provider_refund.id), status).await?;
        txn.commit().await?;
        tracing::info!(order.id = %self.order_id, refund.status = ?status, "refund recorded");
        Ok(())
    }
}

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
            if let Err(e) = orders::jobs::settle_pending(ctx, &order, now).await {
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
