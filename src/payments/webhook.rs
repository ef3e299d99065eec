//! `POST /api/v1/payments/webhook`: Stripe's events (spec §7.2).
//!
//! 1. The `Stripe-Signature` is checked against the raw body before anything
//!    else (bad or missing → 400, nothing stored).
//! 2. In **one transaction**: the event id is recorded (unique) and the
//!    event's effects are applied. A duplicate delivery finds the id and
//!    does nothing; a delivery whose processing failed left no id, so
//!    Stripe's retry processes it again.
//! 3. 200 for handled, duplicate and unknown events alike.

use axum::{
    Json,
    body::Bytes,
    extract::State,
    http::{HeaderMap, StatusCode},
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use super::{
    events::{self, IntentOutcome, apply_intent_outcome},
    model::refund::RefundStatus,
    queries as payments,
    signature::{self, TOLERANCE_SECONDS},
};
use crate::{
    db::WriteTxn,
    http::error::{ApiError, Problem},
    orders::{self, transition::Actor},
    state::AppState,
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(receive))
}

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

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebhookAck {
    pub received: bool,
    /// The event had been processed before; nothing was done again.
    pub duplicate: bool,
}

/// Receives a signed Stripe event.
#[utoipa::path(
    post, path = "/api/v1/payments/webhook", tag = "payments",
    params(("Stripe-Signature" = String, Header, description = "`t=<unix time>,v1=<HMAC-SHA256>` as Stripe sends it")),
    request_body(content = String, description = "The event, exactly as Stripe sent it", content_type = "application/json"),
    responses(
        (status = 200, description = "Processed, duplicate or ignored", body = WebhookAck),
        (status = 400, description = "Missing or bad signature, or an unreadable event; nothing stored", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn receive(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<WebhookAck>, ApiError> {
    let header = headers
        .get("stripe-signature")
        .and_then(|v| v.to_str().ok());
    let now = crate::db::now().timestamp();
    if let Err(why) = signature::verify(
        &body,
        header,
        &state.config.stripe_webhook_secrets,
        now,
        TOLERANCE_SECONDS,
    ) {
        metrics::counter!("webhook_signature_failures_total").increment(1);
        tracing::warn!(reason = %why, "webhook refused: bad signature");
        return Err(ApiError::new(StatusCode::BAD_REQUEST, "invalid_signature"));
    }
    let event: Event = serde_json::from_slice(&body).map_err(|e| {
        tracing::warn!(error = %e, "webhook refused: unreadable event");
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_event")
    })?;
    let txn = state.db.begin_write().await?;
    if !events::record_event(&txn, &event.id, &event.kind).await? {
        metrics::counter!("webhook_events_total", "type" => event.kind.clone(), "outcome" => "duplicate").increment(1);
        return Ok(Json(WebhookAck {
            received: true,
            duplicate: true,
        }));
    }
    let restocked = apply(&txn, &event).await?;
    txn.commit().await?;
    orders::after_commit(&state.cache, restocked).await;
    metrics::counter!("webhook_events_total", "type" => event.kind.clone(), "outcome" => "processed").increment(1);
    tracing::info!(event.id = %event.id, event.type = %event.kind, "webhook processed");
    Ok(Json(WebhookAck {
        received: true,
        duplicate: false,
    }))
}

/// Applies one event; returns whether stock went back to the catalogue.
async fn apply(txn: &WriteTxn, event: &Event) -> Result<bool, sea_orm::DbErr> {
    let object = &event.data.object;
    let outcome = match event.kind.as_str() {
        "payment_intent.succeeded" => IntentOutcome::Succeeded,
        "payment_intent.payment_failed" => IntentOutcome::Failed,
        "payment_intent.canceled" => IntentOutcome::Canceled,
        "refund.updated" | "refund.created" | "refund.failed" => {
            sync_refund(txn, object).await?;
            return Ok(false);
        }
        "charge.refunded" => {
            let refunds = object
                .pointer("/refunds/data")
                .and_then(|d| d.as_array())
                .cloned()
                .unwrap_or_default();
            for refund in &refunds {
                sync_refund(txn, refund).await?;
            }
            return Ok(false);
        }
        _ => return Ok(false),
    };
    let Some(intent_id) = object.get("id").and_then(|v| v.as_str()) else {
        return Ok(false);
    };
    let Some(order_id) = order_of_intent(txn, object, intent_id).await? else {
        tracing::info!(
            payment.intent = intent_id,
            "event for a PaymentIntent we do not know; ignored"
        );
        return Ok(false);
    };
    let applied = apply_intent_outcome(txn, order_id, intent_id, outcome, Actor::Webhook).await?;
    Ok(applied.restocked())
}

/// The order a PaymentIntent pays for: from the stored payment, or from
/// the `metadata.order_id` we set when creating it (the event may overtake
/// the checkout that stores the id).
async fn order_of_intent(
    txn: &WriteTxn,
    object: &serde_json::Value,
    intent_id: &str,
) -> Result<Option<Uuid>, sea_orm::DbErr> {
    if let Some(payment) = payments::payment_by_intent(&**txn, intent_id).await? {
        return Ok(Some(payment.order_id));
    }
    Ok(object
        .pointer("/metadata/order_id")
        .and_then(|v| v.as_str())
        .and_then(|v| Uuid::parse_str(v).ok()))
}

/// Syncs a refund's status from a refund object.
async fn sync_refund(txn: &WriteTxn, object: &serde_json::Value) -> Result<(), sea_orm::DbErr> {
    let (Some(refund_id), Some(status)) = (
        object.get("id").and_then(|v| v.as_str()),
        object.get("status").and_then(|v| v.as_str()),
    ) else {
        return Ok(());
    };
    let mut refund = payments::refund_by_provider_id(&**txn, refund_id).await?;
    if refund.is_none()
        && let Some(order_id) = object
            .pointer("/metadata/order_id")
            .and_then(|v| v.as_str())
            .and_then(|v| Uuid::parse_str(v).ok())
    {
        // The event overtook the refund job's own record of the answer.
        refund = payments::refund_of_order(&**txn, order_id).await?;
    }
    let Some(refund) = refund else {
        return Ok(());
    };
    let status = RefundStatus::from(super::gateway::ProviderRefundStatus::from_stripe(status));
    payments::sync_refund(&**txn, &refund, Some(refund_id), status).await
}
