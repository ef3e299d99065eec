//! The one function that changes an order's status (docs/spec.md §4.1), used by
//! HTTP handlers, jobs and the webhook alike.
//!
//! A transition is a conditional write on the status the order had when we
//! read it (`UPDATE … WHERE id = ? AND status = ?`): of two racing actors
//! exactly one succeeds, the other gets [`TransitionError::Conflict`] (409 over
//! HTTP, a no-op in a job). Its effects are written in the **same
//! transaction**: the timeline event, stock restored, the refund record, and
//! the jobs that finish the work after commit (process, cancel the
//! PaymentIntent, refund, notify). So a transition and its consequences
//! commit together or not at all.

use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter,
    sea_query::Expr,
};
use uuid::Uuid;

use super::{
    cancel_payment::CancelPayment,
    jobs::Process,
    model::{
        order::{self, Entity as Orders},
        order_event,
    },
    refunds::start_refund,
    status::OrderStatus,
};
use crate::{
    db::WriteTxn,
    jobs::{self, NewJob},
    notifications::{
        deliver::Deliver,
        event::{NotificationEvent, OrderSummary},
    },
    payments::{model::payment::PaymentStatus, queries as payments},
};

/// Who moved the order (recorded in the timeline).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Actor {
    User(Uuid),
    /// Timers and sweeps (payment timeout, recovery).
    System,
    /// A payment provider event.
    Webhook,
    /// A background job (processing, reconciliation, compensation).
    Job,
}

impl Actor {
    pub fn label(self) -> String {
        match self {
            Actor::User(id) => id.to_string(),
            Actor::System => "system".into(),
            Actor::Webhook => "webhook".into(),
            Actor::Job => "job".into(),
        }
    }
}

/// Where a change takes the order, with exactly what that target takes.
/// PENDING is no target: an order starts there and never returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Paid,
    Processed,
    /// The parcel's tracking number and carrier, when staff give them.
    Shipped {
        tracking_number: Option<String>,
        carrier: Option<String>,
    },
    Delivered,
    Canceled,
    /// `restock`: put the goods back in stock even if they had left.
    Refunded {
        restock: bool,
    },
}

impl Target {
    pub fn status(&self) -> OrderStatus {
        match self {
            Target::Paid => OrderStatus::Paid,
            Target::Processed => OrderStatus::Processed,
            Target::Shipped { .. } => OrderStatus::Shipped,
            Target::Delivered => OrderStatus::Delivered,
            Target::Canceled => OrderStatus::Canceled,
            Target::Refunded { .. } => OrderStatus::Refunded,
        }
    }
}

/// Whom a change tells, and how.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Notify {
    /// The owner gets the target status's own event (`order.paid`, …).
    Owner,
    /// The owner gets the generic `order.status_changed` (the earlier
    /// API's event for the staff status route).
    OwnerOfStatusChange,
    /// Nobody: the caller records a more specific event (`order.failed`).
    Nobody,
}

/// A requested status change. The target carries what is particular to
/// it; the rest applies to every target (who, why for the timeline, whom
/// to tell, and the status it must still be in).
#[derive(Debug, Clone)]
pub struct Change {
    pub to: Target,
    pub actor: Actor,
    pub reason: Option<String>,
    pub notify: Notify,
    /// Only from this status: a caller that decided on an earlier read (an
    /// expiry deciding an unpaid order is overdue) gets `Conflict` if the
    /// order has moved since, rather than a transition it did not mean.
    pub expect_from: Option<OrderStatus>,
}

impl Change {
    pub fn to(to: Target, actor: Actor) -> Self {
        Self {
            to,
            actor,
            reason: None,
            notify: Notify::Owner,
            expect_from: None,
        }
    }

    pub fn because(mut self, reason: impl Into<String>) -> Self {
        self.reason = Some(reason.into());
        self
    }
}

/// What the provider still has to do after the transition (the 202 cases).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum PaymentAction {
    /// The unpaid PaymentIntent is being canceled.
    CancelPayment,
    /// The payment is being refunded.
    Refund,
}

#[derive(Debug)]
pub struct Transitioned {
    pub order: order::Model,
    pub from: OrderStatus,
    pub payment_action: Option<PaymentAction>,
}

#[derive(Debug, thiserror::Error)]
pub enum TransitionError {
    #[error("no such order")]
    NotFound,
    /// The life cycle has no such edge.
    #[error("an order cannot go from {from} to {to}")]
    Invalid { from: OrderStatus, to: OrderStatus },
    /// Someone else changed the order between our read and our write.
    #[error("the order changed meanwhile (it was {expected})")]
    Conflict { expected: OrderStatus },
    #[error(transparent)]
    Database(#[from] DbErr),
}

/// Moves order `order_id` as `change` asks, with every effect, inside `txn`.
pub async fn transition(
    txn: &WriteTxn,
    order_id: Uuid,
    change: Change,
) -> Result<Transitioned, TransitionError> {
    let current = Orders::find_by_id(order_id)
        .filter(order::Column::DeletedAt.is_null())
        .one(&**txn)
        .await?
        .ok_or(TransitionError::NotFound)?;
    let from = current.status;
    if let Some(expected) = change.expect_from
        && expected != from
    {
        return Err(TransitionError::Conflict { expected });
    }
    let to = change.to.status();
    if !from.may_become(to) {
        return Err(TransitionError::Invalid { from, to });
    }
    write_status(txn, &current, &change).await?;
    record_timeline_step(
        &**txn,
        order_id,
        Some(from),
        to,
        change.actor,
        change.reason.clone(),
    )
    .await?;
    let order = Orders::find_by_id(order_id)
        .one(&**txn)
        .await?
        .ok_or(TransitionError::NotFound)?;
    let mut done = Transitioned {
        order,
        from,
        payment_action: None,
    };
    apply_effects(txn, &change, &mut done).await?;
    metrics::counter!("orders_transitions_total", "from" => from.as_str(), "to" => to.as_str())
        .increment(1);
    tracing::info!(
        order.id = %order_id,
        order.from = from.as_str(),
        order.to = to.as_str(),
        actor = %change.actor.label(),
        "order transition"
    );
    Ok(done)
}

/// The compare-and-set: only if the status is still the one we read.
async fn write_status(
    txn: &WriteTxn,
    current: &order::Model,
    change: &Change,
) -> Result<(), TransitionError> {
    let now = crate::db::now();
    let mut update = Orders::update_many()
        .col_expr(order::Column::Status, Expr::value(change.to.status()))
        .col_expr(order::Column::UpdatedAt, Expr::value(now));
    update = match &change.to {
        Target::Shipped {
            tracking_number,
            carrier,
        } => update
            .col_expr(order::Column::ShippedAt, Expr::value(now))
            .col_expr(
                order::Column::TrackingNumber,
                Expr::value(tracking_number.clone()),
            )
            .col_expr(order::Column::Carrier, Expr::value(carrier.clone())),
        Target::Delivered => update.col_expr(order::Column::DeliveredAt, Expr::value(now)),
        Target::Canceled => update.col_expr(order::Column::CanceledAt, Expr::value(now)),
        Target::Refunded { .. } => update.col_expr(order::Column::RefundedAt, Expr::value(now)),
        Target::Paid | Target::Processed => update,
    };
    let written = update
        .filter(order::Column::Id.eq(current.id))
        .filter(order::Column::Status.eq(current.status))
        .exec(&**txn)
        .await?;
    if written.rows_affected == 1 {
        Ok(())
    } else {
        Err(TransitionError::Conflict {
            expected: current.status,
        })
    }
}

/// Appends one step to the order's timeline.
pub async fn record_timeline_step<C: ConnectionTrait>(
    conn: &C,
    order_id: Uuid,
    from: Option<OrderStatus>,
    to: OrderStatus,
    actor: Actor,
    reason: Option<String>,
) -> Result<(), DbErr> {
    order_event::Entity::insert(order_event::ActiveModel {
        id: Set(crate::db::new_id()),
        order_id: Set(order_id),
        from_status: Set(from),
        to_status: Set(to),
        actor: Set(actor.label()),
        reason: Set(reason),
        at: Set(crate::db::now()),
    })
    .exec_without_returning(conn)
    .await?;
    Ok(())
}

async fn apply_effects(
    txn: &WriteTxn,
    change: &Change,
    done: &mut Transitioned,
) -> Result<(), TransitionError> {
    let order_id = done.order.id;
    match &change.to {
        Target::Paid => {
            jobs::enqueue(txn, NewJob::of(&Process { order_id })).await?;
        }
        Target::Canceled => {
            super::queries::return_stock(txn, order_id).await?;
            done.payment_action = settle_payment(txn, &done.order, change).await?;
        }
        Target::Refunded { restock } => {
            if done.from.goods_in_stock() || *restock {
                super::queries::return_stock(txn, order_id).await?;
            }
            done.payment_action = settle_payment(txn, &done.order, change).await?;
        }
        Target::Processed | Target::Shipped { .. } | Target::Delivered => {}
    }
    let event: Option<OrderEvent> = match change.notify {
        Notify::Owner => Some(event_of(&change.to)),
        Notify::OwnerOfStatusChange => Some(NotificationEvent::OrderStatusChanged),
        Notify::Nobody => None,
    };
    if let Some(event) = event {
        notify(txn, &done.order, event).await?;
    }
    Ok(())
}

/// A notification about an order, made from the order's summary
/// (`NotificationEvent::OrderPaid`, …).
pub type OrderEvent = fn(OrderSummary) -> NotificationEvent;

/// The event a target status tells its owner.
fn event_of(target: &Target) -> OrderEvent {
    match target {
        Target::Paid => NotificationEvent::OrderPaid,
        Target::Processed => NotificationEvent::OrderProcessed,
        Target::Shipped { .. } => NotificationEvent::OrderShipped,
        Target::Delivered => NotificationEvent::OrderDelivered,
        Target::Canceled => NotificationEvent::OrderCanceled,
        Target::Refunded { .. } => NotificationEvent::OrderRefunded,
    }
}

/// Records `event` for the order's owner, by a job committed with the change.
pub async fn notify(txn: &WriteTxn, order: &order::Model, event: OrderEvent) -> Result<(), DbErr> {
    let summary = OrderSummary {
        order_id: order.id,
        status: order.status.as_str().to_owned(),
        total: order.total_money(),
    };
    let job = Deliver {
        user_id: order.user_id,
        event: event(summary),
    };
    jobs::enqueue(txn, NewJob::of(&job)).await?;
    Ok(())
}

/// Leaving a live order means settling its payment: refund what was
/// charged, cancel what was not. Both happen in jobs after commit.
async fn settle_payment(
    txn: &WriteTxn,
    order: &order::Model,
    change: &Change,
) -> Result<Option<PaymentAction>, DbErr> {
    let Some(payment) = payments::payment_of_order(&**txn, order.id).await? else {
        return Ok(None);
    };
    match payment.status {
        PaymentStatus::Succeeded => {
            start_refund(txn, &payment, change.reason.clone()).await?;
            Ok(Some(PaymentAction::Refund))
        }
        PaymentStatus::Refunded | PaymentStatus::Canceled => Ok(None),
        PaymentStatus::Creating
        | PaymentStatus::RequiresPayment
        | PaymentStatus::Processing
        | PaymentStatus::Failed => {
            jobs::enqueue(txn, NewJob::of(&CancelPayment { order_id: order.id })).await?;
            Ok(Some(PaymentAction::CancelPayment))
        }
    }
}
