//! Refunds of an order's payment: [`start_refund`], the one way a refund
//! is decided (in the transaction of the decision), and `order.refund`, the
//! job that asks the provider after the commit and records its answer.
//! Refund events from the provider's webhook update the same record
//! (`payments::webhook::record_refund_update`).

use std::time::Duration;

use async_trait::async_trait;
use sea_orm::DbErr;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{
    db::WriteTxn,
    jobs::{self, Job, JobContext, JobError, JobOptions, NewJob, Queue},
    payments::{
        gateway::{GatewayError, RefundRequest},
        model::{payment, refund::RefundStatus},
        queries as payments,
    },
};

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
            amount: refund.amount_money(),
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
