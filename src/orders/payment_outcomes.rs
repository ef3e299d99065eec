//! What a fact about a PaymentIntent does to its order, whoever learned it:
//! the webhook, the reconciliation sweep, or an expiring order asking the
//! provider. One function, so the rules of docs/spec.md §7.3 hold on every path:
//! - succeeded → PAID; on an order already CANCELED, an automatic refund
//!   (never lost, never re-opening the order);
//! - failed or canceled → CANCELED with stock restored, if still PENDING.
//!
//! Events may arrive in any order and any number of times: every write here
//! is conditional, so a repeated or stale fact changes nothing.

use sea_orm::{DbErr, EntityTrait};
use uuid::Uuid;

use super::{
    model::order::Entity as Orders,
    refunds::start_refund,
    status::OrderStatus,
    transition::{Actor, Change, Target, TransitionError, Transitioned, transition},
};
use crate::{
    db::WriteTxn,
    payments::{
        gateway::IntentOutcome,
        model::payment::{self, PaymentStatus},
        queries::{self as payments, AWAITING_OUTCOME, UNSETTLED},
    },
};

/// What applying an outcome did.
#[derive(Debug, Default)]
pub struct Applied {
    pub transitioned: Option<Transitioned>,
    /// A payment landed on a canceled order and is being refunded.
    pub auto_refund: bool,
}

/// Applies `outcome` of PaymentIntent `intent_id` to the order it pays for.
pub async fn apply_intent_outcome(
    txn: &WriteTxn,
    order_id: Uuid,
    intent_id: &str,
    outcome: IntentOutcome,
    actor: Actor,
) -> Result<Applied, DbErr> {
    let Some(payment) = payments::payment_of_order(&**txn, order_id).await? else {
        return Ok(Applied::default());
    };
    match &payment.provider_payment_id {
        Some(known) if known != intent_id => {
            tracing::warn!(order.id = %order_id, payment.intent = intent_id, "event for a PaymentIntent that is not the order's; ignored");
            return Ok(Applied::default());
        }
        Some(_) => {}
        // The event overtook the checkout that stores the id: record it now.
        None => payments::remember_intent(&**txn, payment.id, intent_id).await?,
    }
    let new_status = match outcome {
        IntentOutcome::Succeeded => PaymentStatus::Succeeded,
        IntentOutcome::Failed => PaymentStatus::Failed,
        IntentOutcome::Canceled => PaymentStatus::Canceled,
    };
    let from: &[PaymentStatus] = match outcome {
        IntentOutcome::Succeeded | IntentOutcome::Canceled => &UNSETTLED,
        // A decline never overrides a later success or cancellation.
        IntentOutcome::Failed => &AWAITING_OUTCOME,
    };
    payments::set_payment_status(&**txn, payment.id, from, new_status).await?;
    // A racing transition may move the order between our read and our
    // write; read again and decide again (a few rounds at most).
    for _ in 0..3 {
        let Some(order) = Orders::find_by_id(order_id).one(&**txn).await? else {
            return Ok(Applied::default());
        };
        let result = match (outcome, order.status) {
            (IntentOutcome::Succeeded, OrderStatus::Pending) => {
                transition(txn, order_id, Change::to(Target::Paid, actor)).await
            }
            (IntentOutcome::Succeeded, OrderStatus::Canceled) => {
                refund_late_payment(txn, &payment).await?;
                return Ok(Applied {
                    transitioned: None,
                    auto_refund: true,
                });
            }
            (IntentOutcome::Failed, OrderStatus::Pending) => {
                let change = Change::to(Target::Canceled, actor).because("payment_failed");
                transition(txn, order_id, change).await
            }
            (IntentOutcome::Canceled, OrderStatus::Pending) => {
                let change = Change::to(Target::Canceled, actor).because("payment_canceled");
                transition(txn, order_id, change).await
            }
            // Already where this fact leads, or past it.
            _ => return Ok(Applied::default()),
        };
        match result {
            Ok(done) => {
                return Ok(Applied {
                    transitioned: Some(done),
                    auto_refund: false,
                });
            }
            // Moved between our read and the transition's (READ COMMITTED on
            // PostgreSQL: a cancel can commit in between): decide again from
            // the new status, or a payment could land on a canceled order
            // without its refund.
            //
            // `NotFound` is the same race with a delete: the order we read
            // was canceled and soft-deleted before the transition's read
            // (which skips deleted orders). The read above still finds it,
            // now CANCELED, and refunds the payment that landed on it.
            Err(
                TransitionError::Conflict { .. }
                | TransitionError::Invalid { .. }
                | TransitionError::NotFound,
            ) => continue,
            Err(TransitionError::Database(e)) => return Err(e),
        }
    }
    Err(DbErr::Custom(format!(
        "order {order_id} kept changing while a payment event was applied"
    )))
}

/// A payment that succeeded on a canceled order goes back to the customer.
async fn refund_late_payment(txn: &WriteTxn, payment: &payment::Model) -> Result<(), DbErr> {
    let reason = Some("payment_after_cancellation".to_owned());
    start_refund(txn, payment, reason).await?;
    tracing::info!(order.id = %payment.order_id, "payment landed on a canceled order; refunding it");
    Ok(())
}
