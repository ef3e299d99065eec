//! Orders on the wire: the owner's view, the staff view (with user,
//! refunds and timeline), and the answer of transitions that wait on the
//! payment provider.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::{
    model::{order_event, order_line},
    queries::{OrderHistory, OrderRecord},
    status::OrderStatus,
    transition::PaymentAction,
};
use crate::payments::model::{
    payment::{self, PaymentStatus},
    refund::{self, RefundStatus},
};

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrderLineView {
    pub id: Uuid,
    pub item_id: Uuid,
    /// As it was when ordered.
    pub name: String,
    /// Minor units, as it was when ordered.
    pub unit_price: i64,
    pub quantity: i64,
    pub line_total: i64,
}

impl From<order_line::Model> for OrderLineView {
    fn from(line: order_line::Model) -> Self {
        Self {
            id: line.id,
            item_id: line.item_id,
            name: line.item_name,
            unit_price: line.unit_price,
            quantity: line.quantity,
            line_total: line.line_total,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PaymentView {
    pub id: Uuid,
    pub status: PaymentStatus,
    /// For the order's owner only (to confirm the payment with Stripe.js);
    /// absent for staff.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<String>,
    pub amount: i64,
    pub currency: String,
}

impl PaymentView {
    fn new(payment: payment::Model, for_owner: bool) -> Self {
        Self {
            id: payment.id,
            status: payment.status,
            client_secret: payment.client_secret.filter(|_| for_owner),
            amount: payment.amount,
            currency: payment.currency.to_string(),
        }
    }
}

/// An order as its owner sees it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrderView {
    pub id: Uuid,
    pub status: OrderStatus,
    /// Minor units: the sum of the line totals.
    pub total: i64,
    pub currency: String,
    pub items: Vec<OrderLineView>,
    pub payment: Option<PaymentView>,
    pub tracking_number: Option<String>,
    pub carrier: Option<String>,
    pub shipped_at: Option<DateTime<Utc>>,
    pub delivered_at: Option<DateTime<Utc>>,
    pub canceled_at: Option<DateTime<Utc>>,
    pub refunded_at: Option<DateTime<Utc>>,
    /// An unpaid order is canceled at this time.
    pub expires_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl OrderView {
    pub fn new(record: OrderRecord, for_owner: bool) -> Self {
        let order = record.order;
        Self {
            id: order.id,
            status: order.status,
            total: order.total,
            currency: order.currency.to_string(),
            items: record.lines.into_iter().map(Into::into).collect(),
            payment: record.payment.map(|p| PaymentView::new(p, for_owner)),
            tracking_number: order.tracking_number,
            carrier: order.carrier,
            shipped_at: order.shipped_at,
            delivered_at: order.delivered_at,
            canceled_at: order.canceled_at,
            refunded_at: order.refunded_at,
            expires_at: order.expires_at,
            created_at: order.created_at,
            updated_at: order.updated_at,
        }
    }

    pub fn owner(record: OrderRecord) -> Self {
        Self::new(record, true)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RefundView {
    pub id: Uuid,
    pub status: RefundStatus,
    pub amount: i64,
    pub currency: String,
    pub reason: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<refund::Model> for RefundView {
    fn from(refund: refund::Model) -> Self {
        Self {
            id: refund.id,
            status: refund.status,
            amount: refund.amount,
            currency: refund.currency.to_string(),
            reason: refund.reason,
            created_at: refund.created_at,
            updated_at: refund.updated_at,
        }
    }
}

/// One step of the timeline.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrderEventView {
    /// `null` for the order's creation.
    pub from: Option<OrderStatus>,
    pub to: OrderStatus,
    /// A user id, `system`, `webhook` or `job`.
    pub actor: String,
    pub reason: Option<String>,
    pub at: DateTime<Utc>,
}

impl From<order_event::Model> for OrderEventView {
    fn from(event: order_event::Model) -> Self {
        Self {
            from: event.from_status,
            to: event.to_status,
            actor: event.actor,
            reason: event.reason,
            at: event.at,
        }
    }
}

/// Who placed the order.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrderCustomer {
    pub id: Uuid,
    pub name: String,
    pub email: String,
}

/// An order as staff see it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StaffOrderView {
    #[serde(flatten)]
    pub order: OrderView,
    pub user_id: Uuid,
    /// Present in the single-order view.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<OrderCustomer>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refunds: Option<Vec<RefundView>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeline: Option<Vec<OrderEventView>>,
    /// What the payment provider still has to do after a transition (the
    /// 202 answers): `cancel_payment` or `refund`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pending_payment_action: Option<PaymentAction>,
}

impl StaffOrderView {
    /// The list entry: no user, refunds or timeline.
    pub fn summary(record: OrderRecord) -> Self {
        let user_id = record.order.user_id;
        Self {
            order: OrderView::new(record, false),
            user_id,
            user: None,
            refunds: None,
            timeline: None,
            pending_payment_action: None,
        }
    }

    pub fn full(record: OrderRecord, user: Option<OrderCustomer>, history: OrderHistory) -> Self {
        let mut view = Self::summary(record);
        view.user = user;
        view.refunds = Some(history.refunds.into_iter().map(Into::into).collect());
        view.timeline = Some(history.timeline.into_iter().map(Into::into).collect());
        view
    }
}
