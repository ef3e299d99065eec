//! Queries on `payments` and `refunds`. Every status write is conditional,
//! so a late or repeated provider event can never move a payment backwards.

use sea_orm::{
    ActiveModelTrait,
    ActiveValue::Set,
    ColumnTrait, ConnectionTrait, DbErr, EntityTrait, IntoActiveModel, QueryFilter,
    sea_query::{Expr, OnConflict},
};
use uuid::Uuid;

use super::{
    gateway::PaymentIntent,
    model::{
        payment::{self, Entity as Payments, PaymentStatus},
        payment_event::{self, Entity as PaymentEvents},
        refund::{self, Entity as Refunds, RefundStatus},
    },
};
use crate::money::Money;

pub async fn payment_of_order<C: ConnectionTrait>(
    conn: &C,
    order_id: Uuid,
) -> Result<Option<payment::Model>, DbErr> {
    Payments::find()
        .filter(payment::Column::OrderId.eq(order_id))
        .one(conn)
        .await
}

pub async fn payment_by_intent<C: ConnectionTrait>(
    conn: &C,
    intent_id: &str,
) -> Result<Option<payment::Model>, DbErr> {
    Payments::find()
        .filter(payment::Column::ProviderPaymentId.eq(intent_id))
        .one(conn)
        .await
}

pub async fn refund_of_order<C: ConnectionTrait>(
    conn: &C,
    order_id: Uuid,
) -> Result<Option<refund::Model>, DbErr> {
    Refunds::find()
        .filter(refund::Column::OrderId.eq(order_id))
        .one(conn)
        .await
}

pub async fn refunds_of_order<C: ConnectionTrait>(
    conn: &C,
    order_id: Uuid,
) -> Result<Vec<refund::Model>, DbErr> {
    Refunds::find()
        .filter(refund::Column::OrderId.eq(order_id))
        .all(conn)
        .await
}

/// The payment of a new order, before its PaymentIntent exists.
pub async fn insert_payment<C: ConnectionTrait>(
    conn: &C,
    order_id: Uuid,
    provider: &str,
    amount: Money,
) -> Result<payment::Model, DbErr> {
    let now = crate::db::now();
    let payment = payment::Model {
        id: crate::db::new_id(),
        order_id,
        provider: provider.to_owned(),
        provider_payment_id: None,
        client_secret: None,
        amount: amount.minor,
        currency: amount.currency,
        status: PaymentStatus::Creating,
        created_at: now,
        updated_at: now,
    };
    Payments::insert(payment.clone().into_active_model().reset_all())
        .exec_without_returning(conn)
        .await?;
    Ok(payment)
}

/// Stores the PaymentIntent of an order's payment, once: a resumed checkout
/// that created the same intent (same provider idempotency key) finds it
/// already stored and changes nothing (`None`). The payment as stored.
pub async fn attach_intent<C: ConnectionTrait>(
    conn: &C,
    order_id: Uuid,
    intent: &PaymentIntent,
) -> Result<Option<payment::Model>, DbErr> {
    let written = Payments::update_many()
        .col_expr(
            payment::Column::ProviderPaymentId,
            Expr::value(intent.id.clone()),
        )
        .col_expr(
            payment::Column::ClientSecret,
            Expr::value(intent.client_secret.clone()),
        )
        .col_expr(
            payment::Column::Status,
            Expr::value(PaymentStatus::RequiresPayment),
        )
        .col_expr(payment::Column::UpdatedAt, Expr::value(crate::db::now()))
        .filter(payment::Column::OrderId.eq(order_id))
        .filter(payment::Column::ProviderPaymentId.is_null())
        .exec_with_returning(conn)
        .await?;
    Ok(written.into_iter().next())
}

/// Moves a payment to `to` only from one of `from` (never backwards).
pub async fn set_payment_status<C: ConnectionTrait>(
    conn: &C,
    payment_id: Uuid,
    from: &[PaymentStatus],
    to: PaymentStatus,
) -> Result<bool, DbErr> {
    let written = Payments::update_many()
        .col_expr(payment::Column::Status, Expr::value(to))
        .col_expr(payment::Column::UpdatedAt, Expr::value(crate::db::now()))
        .filter(payment::Column::Id.eq(payment_id))
        .filter(payment::Column::Status.is_in(from.iter().copied()))
        .exec(conn)
        .await?;
    Ok(written.rows_affected == 1)
}

/// Statuses a payment can be in before the provider settles it.
pub const UNSETTLED: [PaymentStatus; 4] = [
    PaymentStatus::Creating,
    PaymentStatus::RequiresPayment,
    PaymentStatus::Processing,
    PaymentStatus::Failed,
];

/// The unsettled statuses without `Failed`: what a decline may overwrite
/// (a payment already failed stays as it is; a later success or
/// cancellation is never overwritten, being settled).
pub const AWAITING_OUTCOME: [PaymentStatus; 3] = [
    PaymentStatus::Creating,
    PaymentStatus::RequiresPayment,
    PaymentStatus::Processing,
];

/// Decides to refund `payment` in full: one refund per payment, so a second
/// decision (a cancel racing a late webhook, say) finds the first.
pub async fn open_refund<C: ConnectionTrait>(
    conn: &C,
    payment: &payment::Model,
    reason: Option<String>,
) -> Result<(), DbErr> {
    let now = crate::db::now();
    Refunds::insert(refund::ActiveModel {
        id: Set(crate::db::new_id()),
        payment_id: Set(payment.id),
        order_id: Set(payment.order_id),
        provider_refund_id: Set(None),
        amount: Set(payment.amount),
        currency: Set(payment.currency),
        status: Set(RefundStatus::Pending),
        reason: Set(reason),
        created_at: Set(now),
        updated_at: Set(now),
    })
    .on_conflict(
        OnConflict::column(refund::Column::PaymentId)
            .do_nothing()
            .to_owned(),
    )
    .exec_without_returning(conn)
    .await?;
    Ok(())
}

/// Records the provider's answer about a refund (`provider_refund_id` when
/// the provider made one: a declined request has none), and a refund that
/// succeeded makes its payment `refunded`. A refund that succeeded stays
/// succeeded whatever arrives later. The one place for both the refund
/// job's answer and the provider's refund events.
pub async fn sync_refund<C: ConnectionTrait>(
    conn: &C,
    refund: &refund::Model,
    provider_refund_id: Option<&str>,
    status: RefundStatus,
) -> Result<(), DbErr> {
    let mut update = Refunds::update_many()
        .col_expr(refund::Column::Status, Expr::value(status))
        .col_expr(refund::Column::UpdatedAt, Expr::value(crate::db::now()));
    if let Some(provider_refund_id) = provider_refund_id {
        update = update.col_expr(
            refund::Column::ProviderRefundId,
            Expr::value(provider_refund_id.to_owned()),
        );
    }
    update
        .filter(refund::Column::Id.eq(refund.id))
        .filter(refund::Column::Status.ne(RefundStatus::Succeeded))
        .exec(conn)
        .await?;
    if status == RefundStatus::Succeeded {
        set_payment_status(
            conn,
            refund.payment_id,
            &[PaymentStatus::Succeeded],
            PaymentStatus::Refunded,
        )
        .await?;
    }
    Ok(())
}

pub async fn refund_by_provider_id<C: ConnectionTrait>(
    conn: &C,
    provider_refund_id: &str,
) -> Result<Option<refund::Model>, DbErr> {
    Refunds::find()
        .filter(refund::Column::ProviderRefundId.eq(provider_refund_id))
        .one(conn)
        .await
}

/// Stores the PaymentIntent id of a payment that has none yet (a provider
/// event overtook the checkout that stores it).
pub async fn remember_intent<C: ConnectionTrait>(
    conn: &C,
    payment_id: Uuid,
    intent_id: &str,
) -> Result<(), DbErr> {
    Payments::update_many()
        .col_expr(
            payment::Column::ProviderPaymentId,
            Expr::value(intent_id.to_owned()),
        )
        .filter(payment::Column::Id.eq(payment_id))
        .filter(payment::Column::ProviderPaymentId.is_null())
        .exec(conn)
        .await?;
    Ok(())
}

/// Records a webhook event id; `false` if it was seen before (a duplicate
/// delivery). Written in the transaction of the event's effects, so an
/// event whose processing failed leaves no record and is processed again
/// when the provider retries.
pub async fn record_webhook_event<C: ConnectionTrait>(
    conn: &C,
    event_id: &str,
    event_type: &str,
) -> Result<bool, DbErr> {
    let now = crate::db::now();
    let inserted = PaymentEvents::insert(payment_event::ActiveModel {
        id: Set(crate::db::new_id()),
        provider_event_id: Set(event_id.to_owned()),
        event_type: Set(event_type.to_owned()),
        received_at: Set(now),
        processed_at: Set(Some(now)),
    })
    .on_conflict(
        OnConflict::column(payment_event::Column::ProviderEventId)
            .do_nothing()
            .to_owned(),
    )
    .exec_without_returning(conn)
    .await?;
    Ok(inserted == 1)
}

/// Removes processed webhook events past retention (the maintenance job).
pub async fn delete_events_before<C: ConnectionTrait>(
    conn: &C,
    before: chrono::DateTime<chrono::Utc>,
) -> Result<u64, DbErr> {
    Ok(PaymentEvents::delete_many()
        .filter(payment_event::Column::ReceivedAt.lt(before))
        .exec(conn)
        .await?
        .rows_affected)
}

/// Removes an order's payment while it has no PaymentIntent (a checkout
/// undone because its intent could not be created); `false` if there was
/// none, or a concurrent resume attached an intent first.
pub async fn delete_unattached_payment<C: ConnectionTrait>(
    conn: &C,
    order_id: Uuid,
) -> Result<bool, DbErr> {
    let removed = Payments::delete_many()
        .filter(payment::Column::OrderId.eq(order_id))
        .filter(payment::Column::ProviderPaymentId.is_null())
        .exec(conn)
        .await?;
    Ok(removed.rows_affected == 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_decline_may_overwrite_every_unsettled_status_but_failed() {
        let without_failed: Vec<PaymentStatus> = UNSETTLED
            .into_iter()
            .filter(|s| *s != PaymentStatus::Failed)
            .collect();
        assert_eq!(without_failed, AWAITING_OUTCOME);
    }
}
