//! `order.cancel_payment`: cancels the PaymentIntent of an order that will
//! not be paid, after the transition that decided it has committed.
//!
//! No provider call happens inside a database transaction: the job reads,
//! calls the provider (idempotency key `pi-cancel-<order id>`), then records
//! the answer in a short transaction of conditional writes.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{payment_outcomes::apply_intent_outcome, transition::Actor};
use crate::{
    jobs::{Job, JobContext, JobError, JobOptions, Queue},
    payments::{
        gateway::{GatewayError, IntentOutcome, IntentStatus},
        model::payment::PaymentStatus,
        queries::{self as payments, UNSETTLED},
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
                apply_intent_outcome(
                    &txn,
                    self.order_id,
                    &intent_id,
                    IntentOutcome::Succeeded,
                    Actor::Job,
                )
                .await?;
                txn.commit().await?;
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }
}
