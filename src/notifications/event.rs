//! What a notification is about: one variant per event, carrying the
//! fields its texts (`texts.rs`) and the feed's `data` need. The producer
//! (a sign-in, an order transition) and the texts share this type, so a
//! field one writes is a field the other can read.
//!
//! Serialised as `{"event": "<name>", "data": {…}}`: the shape
//! `notification.deliver` jobs and `notifications` rows have always had
//! (queued jobs and stored rows read back unchanged; see the round-trip
//! tests below). `data` is also returned as is by the feed API, which is
//! why every order event carries the whole order summary.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::money::{Currency, Money};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", content = "data")]
pub enum NotificationEvent {
    #[serde(rename = "auth.login")]
    SignedIn(SignIn),
    /// The account's email address changed (told in-app, so the owner of
    /// the previous address sees it if they still hold a session).
    #[serde(rename = "account.email_changed")]
    EmailChanged(EmailChange),
    #[serde(rename = "order.created")]
    OrderCreated(OrderSummary),
    #[serde(rename = "order.paid")]
    OrderPaid(OrderSummary),
    #[serde(rename = "order.processed")]
    OrderProcessed(OrderSummary),
    #[serde(rename = "order.shipped")]
    OrderShipped(OrderSummary),
    #[serde(rename = "order.delivered")]
    OrderDelivered(OrderSummary),
    #[serde(rename = "order.canceled")]
    OrderCanceled(OrderSummary),
    #[serde(rename = "order.refunded")]
    OrderRefunded(OrderSummary),
    /// Processing failed for good; the money goes back.
    #[serde(rename = "order.failed")]
    OrderFailed(OrderSummary),
    /// Staff set the status through the generic status route.
    #[serde(rename = "order.status_changed")]
    OrderStatusChanged(OrderSummary),
}

/// A sign-in to the account (the device and address may be unknown).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SignIn {
    pub session_id: Uuid,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
}

/// An email change, both addresses masked (`j***@example.com`): the feed
/// shows them, and a stolen session should not learn the new address from it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EmailChange {
    pub previous: String,
    pub new: String,
}

/// An order as its notifications describe it, after the change.
///
/// Stored with the total's minor units and currency as two fields (`total`,
/// `currency`), as it always was: see [`StoredOrderSummary`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "StoredOrderSummary", from = "StoredOrderSummary")]
pub struct OrderSummary {
    pub order_id: Uuid,
    /// The status's wire name (`PAID`, …): notifications know order
    /// statuses only by name, so they need not depend on `orders`.
    pub status: String,
    pub total: Money,
}

/// [`OrderSummary`]'s JSON: the feed API returns it as is, and queued jobs
/// and stored rows hold it, so its fields never change.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct StoredOrderSummary {
    order_id: Uuid,
    status: String,
    total: i64,
    currency: Currency,
}

impl From<OrderSummary> for StoredOrderSummary {
    fn from(summary: OrderSummary) -> Self {
        Self {
            order_id: summary.order_id,
            status: summary.status,
            total: summary.total.minor,
            currency: summary.total.currency,
        }
    }
}

impl From<StoredOrderSummary> for OrderSummary {
    fn from(stored: StoredOrderSummary) -> Self {
        Self {
            order_id: stored.order_id,
            status: stored.status,
            total: Money::new(stored.total, stored.currency),
        }
    }
}

impl NotificationEvent {
    /// The event as stored: its name and its `data`.
    pub fn to_stored(&self) -> (String, Value) {
        match serde_json::to_value(self) {
            Ok(Value::Object(mut fields)) => {
                let name = match fields.remove("event") {
                    Some(Value::String(name)) => name,
                    _ => String::new(),
                };
                (name, fields.remove("data").unwrap_or(Value::Null))
            }
            // Unreachable: an adjacently tagged enum of plain structs always
            // serialises to an object.
            _ => (String::new(), Value::Null),
        }
    }

    /// Reads a stored row back; `None` for an event this version does not
    /// know or data that does not fit it (rendered with the generic text).
    pub fn from_stored(event: &str, data: &Value) -> Option<Self> {
        serde_json::from_value(serde_json::json!({ "event": event, "data": data })).ok()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn summary(status: &str) -> OrderSummary {
        OrderSummary {
            order_id: Uuid::from_u128(7),
            status: status.to_owned(),
            total: Money::new(1_250, Currency::parse("usd").unwrap()),
        }
    }

    /// The JSON the producers wrote before this type existed.
    fn order_json(event: &str, status: &str) -> Value {
        json!({
            "event": event,
            "data": {
                "orderId": Uuid::from_u128(7),
                "status": status,
                "total": 1_250,
                "currency": "usd",
            }
        })
    }

    fn assert_round_trip(event: &NotificationEvent, stored: &Value) {
        assert_eq!(&serde_json::to_value(event).unwrap(), stored);
        let back: NotificationEvent = serde_json::from_value(stored.clone()).unwrap();
        assert_eq!(&back, event);
        let (name, data) = event.to_stored();
        assert_eq!(
            Some(event),
            NotificationEvent::from_stored(&name, &data).as_ref()
        );
        assert_eq!(json!({"event": name, "data": data}), *stored);
    }

    #[test]
    fn a_sign_in_keeps_its_stored_shape() {
        let event = NotificationEvent::SignedIn(SignIn {
            session_id: Uuid::from_u128(9),
            ip: Some("203.0.113.7".to_owned()),
            user_agent: None,
        });
        let stored = json!({
            "event": "auth.login",
            "data": {"sessionId": Uuid::from_u128(9), "ip": "203.0.113.7", "userAgent": null}
        });
        assert_round_trip(&event, &stored);
    }

    #[test]
    fn every_order_event_keeps_its_stored_shape() {
        type Make = fn(OrderSummary) -> NotificationEvent;
        let cases: [(Make, &str, &str); 9] = [
            (NotificationEvent::OrderCreated, "order.created", "PENDING"),
            (NotificationEvent::OrderPaid, "order.paid", "PAID"),
            (
                NotificationEvent::OrderProcessed,
                "order.processed",
                "PROCESSED",
            ),
            (NotificationEvent::OrderShipped, "order.shipped", "SHIPPED"),
            (
                NotificationEvent::OrderDelivered,
                "order.delivered",
                "DELIVERED",
            ),
            (
                NotificationEvent::OrderCanceled,
                "order.canceled",
                "CANCELED",
            ),
            (
                NotificationEvent::OrderRefunded,
                "order.refunded",
                "REFUNDED",
            ),
            (NotificationEvent::OrderFailed, "order.failed", "CANCELED"),
            (
                NotificationEvent::OrderStatusChanged,
                "order.status_changed",
                "SHIPPED",
            ),
        ];
        for (make, name, status) in cases {
            assert_round_trip(&make(summary(status)), &order_json(name, status));
        }
    }

    #[test]
    fn a_queued_delivery_job_reads_back_unchanged() {
        let payload = json!({
            "userId": Uuid::from_u128(1),
            "event": "order.paid",
            "data": {"orderId": Uuid::from_u128(7), "status": "PAID", "total": 1_250, "currency": "usd"}
        });
        let job: crate::notifications::deliver::Deliver =
            serde_json::from_value(payload.clone()).unwrap();
        assert_eq!(job.event, NotificationEvent::OrderPaid(summary("PAID")));
        assert_eq!(serde_json::to_value(&job).unwrap(), payload);
    }

    #[test]
    fn an_unknown_event_is_not_read() {
        assert_eq!(
            NotificationEvent::from_stored("order.lost", &json!({})),
            None
        );
    }
}
