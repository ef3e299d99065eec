//! `POST /api/v1/payments/webhook`: Stripe's events (the webhook in `docs/spec.md`).
//!
//! 1. The `Stripe-Signature` is checked against the raw body before anything
//!    else (bad or missing → 400, nothing stored): `payments::webhook`.
//! 2. In **one transaction**: the event id is recorded (unique) and the
//!    event's effects are applied. A duplicate delivery finds the id and
//!    does nothing; a delivery whose processing failed left no id, so
//!    Stripe's retry processes it again.
//! 3. 200 for handled, duplicate and unknown events alike.
//!
//! The endpoint lives here, not in `payments`, because deciding what an
//! intent's outcome does to an order is the orders module's business;
//! `payments` only hands over the verified, parsed fact.

use axum::{Json, body::Bytes, extract::State, http::HeaderMap};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::{payment_outcomes::apply_intent_outcome, transition::Actor};
use crate::{
    db::WriteTxn,
    http::error::{ApiError, Problem},
    payments::{
        queries as payments,
        webhook::{self, ProviderFact},
    },
    state::AppState,
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(receive))
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
    let event = webhook::verify(&headers, &body, &state.config.stripe_webhook_secrets)?;
    let txn = state.db.begin_write().await?;
    if !payments::record_webhook_event(&*txn, &event.id, &event.kind).await? {
        metrics::counter!("webhook_events_total", "type" => event.kind.clone(), "outcome" => "duplicate").increment(1);
        return Ok(Json(WebhookAck {
            received: true,
            duplicate: true,
        }));
    }
    apply(&txn, &event.fact).await?;
    txn.commit().await?;
    metrics::counter!("webhook_events_total", "type" => event.kind.clone(), "outcome" => "processed").increment(1);
    tracing::info!(event.id = %event.id, event.type = %event.kind, "webhook processed");
    Ok(Json(WebhookAck {
        received: true,
        duplicate: false,
    }))
}

/// Applies one event.
async fn apply(txn: &WriteTxn, fact: &ProviderFact) -> Result<(), sea_orm::DbErr> {
    match fact {
        ProviderFact::Intent {
            intent_id,
            outcome,
            order_hint,
        } => {
            let Some(order_id) = webhook::order_of_intent(&**txn, intent_id, *order_hint).await?
            else {
                tracing::info!(
                    payment.intent = %intent_id,
                    "event for a PaymentIntent we do not know; ignored"
                );
                return Ok(());
            };
            apply_intent_outcome(txn, order_id, intent_id, *outcome, Actor::Webhook).await?;
            Ok(())
        }
        ProviderFact::Refunds(updates) => {
            for update in updates {
                webhook::record_refund_update(&**txn, update).await?;
            }
            Ok(())
        }
        ProviderFact::Ignored => Ok(()),
    }
}
