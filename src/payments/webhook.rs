//! The provider's half of `POST /api/v1/payments/webhook` (`docs/spec.md`):
//! checking the `Stripe-Signature` against the raw body, reading the event
//! into the facts we act on, and recording refund facts on our refund
//! records. What an intent's outcome does to its order is decided by the
//! endpoint in `orders::webhook`, which calls these.

use axum::http::{HeaderMap, StatusCode};
use sea_orm::{ConnectionTrait, DbErr};
use secrecy::SecretString;
use serde::Deserialize;
use uuid::Uuid;

use super::{
    gateway::{IntentOutcome, ProviderRefundStatus},
    model::refund::RefundStatus,
    queries as payments,
    signature::{self, TOLERANCE_SECONDS},
};
use crate::http::error::ApiError;

/// A signed event, read.
#[derive(Debug, Clone)]
pub struct VerifiedEvent {
    /// The provider's event id (recorded once: duplicates are ignored).
    pub id: String,
    /// The provider's event type, as sent (`payment_intent.succeeded`, …).
    pub kind: String,
    pub fact: ProviderFact,
}

/// What an event tells us, reduced to what we act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProviderFact {
    /// A PaymentIntent reached an outcome.
    Intent {
        intent_id: String,
        outcome: IntentOutcome,
        /// The `metadata.order_id` we set when creating the intent (the
        /// event may overtake the checkout that stores the intent id).
        order_hint: Option<Uuid>,
    },
    /// Refunds changed status (`refund.*`, or the refunds of `charge.refunded`).
    Refunds(Vec<RefundUpdate>),
    /// An event we do not act on (still recorded, and acknowledged).
    Ignored,
}

/// A refund object as an event carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefundUpdate {
    pub provider_refund_id: String,
    pub status: ProviderRefundStatus,
    /// The `metadata.order_id` we set when creating the refund.
    pub order_hint: Option<Uuid>,
}

/// Why an event was refused; nothing is stored for it.
#[derive(Debug, thiserror::Error)]
pub enum WebhookRefused {
    #[error("missing or bad signature")]
    BadSignature,
    #[error("unreadable event")]
    Unreadable,
}

impl From<WebhookRefused> for ApiError {
    fn from(err: WebhookRefused) -> Self {
        let code = match err {
            WebhookRefused::BadSignature => "invalid_signature",
            WebhookRefused::Unreadable => "invalid_event",
        };
        ApiError::new(StatusCode::BAD_REQUEST, code)
    }
}

/// Stripe documents its object ids (events, PaymentIntents, refunds) as at
/// most 255 characters; our columns hold exactly that.
const MAX_PROVIDER_ID_LEN: usize = 255;
/// Stripe's event types are dotted names well under this; the column holds 100.
const MAX_EVENT_TYPE_LEN: usize = 100;

/// The parts of a Stripe event we read.
#[derive(Debug, Deserialize)]
struct Event {
    id: String,
    #[serde(rename = "type")]
    kind: String,
    data: EventData,
}

#[derive(Debug, Deserialize)]
struct EventData {
    object: serde_json::Value,
}

/// Checks the signature of `body` before anything else, then reads it.
pub fn verify(
    headers: &HeaderMap,
    body: &[u8],
    secrets: &[SecretString],
) -> Result<VerifiedEvent, WebhookRefused> {
    let header = headers
        .get("stripe-signature")
        .and_then(|v| v.to_str().ok());
    let now = crate::db::now().timestamp();
    if let Err(why) = signature::verify(body, header, secrets, now, TOLERANCE_SECONDS) {
        metrics::counter!("webhook_signature_failures_total").increment(1);
        tracing::warn!(reason = %why, "webhook refused: bad signature");
        return Err(WebhookRefused::BadSignature);
    }
    let event: Event = serde_json::from_slice(body).map_err(|e| {
        tracing::warn!(error = %e, "webhook refused: unreadable event");
        WebhookRefused::Unreadable
    })?;
    let fact = read_fact(&event.kind, &event.data.object);
    if !within_provider_formats(&event, &fact) {
        tracing::warn!("webhook refused: an id or the type is longer than the provider's formats");
        return Err(WebhookRefused::Unreadable);
    }
    Ok(VerifiedEvent {
        id: event.id,
        kind: event.kind,
        fact,
    })
}

/// Whether the ids and the type fit the provider's formats (and so our
/// columns): a longer value is not a Stripe event, whoever signed it, and
/// must be a 400 rather than a failed write on PostgreSQL.
fn within_provider_formats(event: &Event, fact: &ProviderFact) -> bool {
    let id_fits = |id: &str| id.len() <= MAX_PROVIDER_ID_LEN;
    let fact_fits = match fact {
        ProviderFact::Intent { intent_id, .. } => id_fits(intent_id),
        ProviderFact::Refunds(refunds) => refunds.iter().all(|r| id_fits(&r.provider_refund_id)),
        ProviderFact::Ignored => true,
    };
    id_fits(&event.id) && event.kind.len() <= MAX_EVENT_TYPE_LEN && fact_fits
}

fn read_fact(kind: &str, object: &serde_json::Value) -> ProviderFact {
    let outcome = match kind {
        "payment_intent.succeeded" => IntentOutcome::Succeeded,
        "payment_intent.payment_failed" => IntentOutcome::Failed,
        "payment_intent.canceled" => IntentOutcome::Canceled,
        "refund.updated" | "refund.created" | "refund.failed" => {
            return ProviderFact::Refunds(read_refund(object).into_iter().collect());
        }
        "charge.refunded" => {
            let refunds = object
                .pointer("/refunds/data")
                .and_then(|d| d.as_array())
                .map(|refunds| refunds.iter().filter_map(read_refund).collect())
                .unwrap_or_default();
            return ProviderFact::Refunds(refunds);
        }
        _ => return ProviderFact::Ignored,
    };
    let Some(intent_id) = object.get("id").and_then(|v| v.as_str()) else {
        return ProviderFact::Ignored;
    };
    ProviderFact::Intent {
        intent_id: intent_id.to_owned(),
        outcome,
        order_hint: order_hint(object),
    }
}

fn read_refund(object: &serde_json::Value) -> Option<RefundUpdate> {
    let id = object.get("id").and_then(|v| v.as_str())?;
    let status = object.get("status").and_then(|v| v.as_str())?;
    Some(RefundUpdate {
        provider_refund_id: id.to_owned(),
        status: ProviderRefundStatus::from_stripe(status),
        order_hint: order_hint(object),
    })
}

fn order_hint(object: &serde_json::Value) -> Option<Uuid> {
    object
        .pointer("/metadata/order_id")
        .and_then(|v| v.as_str())
        .and_then(|v| Uuid::parse_str(v).ok())
}

/// The order a PaymentIntent pays for: from the stored payment, or from
/// the hint the event carries.
pub async fn order_of_intent<C: ConnectionTrait>(
    conn: &C,
    intent_id: &str,
    order_hint: Option<Uuid>,
) -> Result<Option<Uuid>, DbErr> {
    if let Some(payment) = payments::payment_by_intent(conn, intent_id).await? {
        return Ok(Some(payment.order_id));
    }
    Ok(order_hint)
}

/// Syncs our refund record from a refund object of an event.
pub async fn record_refund_update<C: ConnectionTrait>(
    conn: &C,
    update: &RefundUpdate,
) -> Result<(), DbErr> {
    let mut refund = payments::refund_by_provider_id(conn, &update.provider_refund_id).await?;
    if refund.is_none()
        && let Some(order_id) = update.order_hint
    {
        // The event overtook the refund job's own record of the answer.
        refund = payments::refund_of_order(conn, order_id).await?;
    }
    let Some(refund) = refund else {
        return Ok(());
    };
    let status = RefundStatus::from(update.status);
    payments::sync_refund(conn, &refund, Some(&update.provider_refund_id), status).await
}
