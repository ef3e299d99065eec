//! The simulated gateway: the only fake in Dispatch, standing in for Stripe
//! at the edge in the embedded mode, demos and tests. It keeps its objects in
//! memory (one process: it is not for multi-process deployments), honours
//! idempotency keys like Stripe, and, like Stripe, tells us what happened
//! through **signed webhooks** sent to our own endpoint, so the real path
//! (signature, dedupe, transitions) runs:
//! - a PaymentIntent is confirmed `SIMULATED_PAYMENT_DELAY` after creation:
//!   `payment_intent.succeeded`, or `payment_intent.payment_failed` when the
//!   amount's minor units end in `SIMULATED_DECLINE_SUFFIX` (`02`), like
//!   Stripe's decline test cards; `off` leaves it to the caller (tests);
//! - canceling sends `payment_intent.canceled`, refunding `refund.updated`.

use std::{
    sync::{Arc, OnceLock, Weak},
    time::Duration,
};

use async_trait::async_trait;
use serde_json::json;
use tokio::sync::Mutex;

use super::{
    gateway::{
        CustomerDetails, GatewayError, IntentRequest, IntentStatus, PaymentGateway, PaymentIntent,
        ProviderRefund, ProviderRefundStatus, RefundRequest,
    },
    signature,
};

#[derive(Debug, Clone)]
struct SimulatedIntent {
    intent: PaymentIntent,
    order_id: uuid::Uuid,
}

/// How the simulated provider behaves.
#[derive(Debug, Clone)]
pub struct SimulatedSettings {
    pub confirm_after: Option<Duration>,
    pub decline_suffix: String,
    /// Signs the webhooks (the first of `STRIPE_WEBHOOK_SECRETS`).
    pub webhook_secret: String,
}

pub struct SimulatedGateway {
    settings: SimulatedSettings,
    customers: moka::sync::Cache<String, CustomerDetails>,
    intents: moka::sync::Cache<String, SimulatedIntent>,
    refunds: moka::sync::Cache<String, ProviderRefund>,
    /// Idempotency key → id of the object created under it.
    idempotency: moka::sync::Cache<String, String>,
    /// Serialises state changes of intents (confirm vs cancel vs refund).
    transitions: Mutex<()>,
    /// Our webhook endpoint, known once the HTTP listener is bound.
    webhook_url: OnceLock<String>,
    client: reqwest::Client,
    /// Itself, for the tasks that deliver webhooks later.
    me: Weak<SimulatedGateway>,
}

/// Objects of each kind (customers, PaymentIntents, refunds, idempotency
/// keys) the simulated provider remembers at most, and for how long.
///
/// It lives in memory, so it must forget: at 1–2 KiB per order (the
/// PaymentIntent and its idempotency key; docs/benchmarks.md), a million
/// objects for 7 days, as before, let a busy demo grow by a GiB or more.
/// 10 000 objects for a day is 10–20 MiB at worst, and covers an order's
/// whole payment life (unpaid orders expire after `ORDER_PAYMENT_TIMEOUT`,
/// 30 min by default, and reconciliation asks after 5 min). The
/// consequence: asking about an older or evicted object answers "not
/// found", as Stripe would for an object that does not exist. A refund of an order paid more than a day
/// (or 10 000 orders) ago fails (its job ends `failed`, visible on the
/// dashboard); a customer is created again by the next profile sync.
const MAX_OBJECTS: u64 = 10_000;
const OBJECT_LIFETIME: Duration = Duration::from_secs(24 * 3600);

fn cache<V: Clone + Send + Sync + 'static>() -> moka::sync::Cache<String, V> {
    moka::sync::Cache::builder()
        .max_capacity(MAX_OBJECTS)
        .time_to_live(OBJECT_LIFETIME)
        .build()
}

fn sim_id(prefix: &str) -> String {
    format!("{prefix}_sim_{}", crate::db::new_id().simple())
}

impl SimulatedGateway {
    pub fn new(settings: SimulatedSettings) -> Arc<Self> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap_or_default();
        Arc::new_cyclic(|me| Self {
            me: me.clone(),
            settings,
            customers: cache(),
            intents: cache(),
            refunds: cache(),
            idempotency: cache(),
            transitions: Mutex::new(()),
            webhook_url: OnceLock::new(),
            client,
        })
    }

    fn self_arc(&self) -> Option<Arc<Self>> {
        self.me.upgrade()
    }

    /// Where to send webhooks (set once, when the API listener is bound).
    pub fn deliver_webhooks_to(&self, url: String) {
        let _ = self.webhook_url.set(url);
    }

    /// The customer the gateway holds under `id` (tests and diagnostics).
    pub fn customer(&self, id: &str) -> Option<CustomerDetails> {
        self.customers.get(id)
    }

    /// How many PaymentIntents exist (each create under a new key makes one).
    pub fn payment_intent_count(&self) -> u64 {
        self.intents.run_pending_tasks();
        self.intents.entry_count()
    }

    pub fn refund_count(&self) -> u64 {
        self.refunds.run_pending_tasks();
        self.refunds.entry_count()
    }

    pub fn payment_intent(&self, id: &str) -> Option<PaymentIntent> {
        self.intents.get(id).map(|s| s.intent)
    }

    fn declines(&self, amount: i64) -> bool {
        amount.to_string().ends_with(&self.settings.decline_suffix)
    }

    /// Confirms (or declines) a PaymentIntent now, as if the customer had
    /// paid, and sends the webhook. Returns the status it reached.
    pub async fn confirm(&self, id: &str) -> Option<IntentStatus> {
        let (stored, event) = self.settle(id).await?;
        if let Some(event) = event {
            self.send_event(event, intent_object(&stored)).await;
        }
        Some(stored.intent.status)
    }

    /// Like [`Self::confirm`], but the webhook is lost on the way: only
    /// asking the provider (reconciliation, expiry) can find out.
    pub async fn confirm_without_webhook(&self, id: &str) -> Option<IntentStatus> {
        self.settle(id)
            .await
            .map(|(stored, _)| stored.intent.status)
    }

    /// Moves a waiting PaymentIntent to its outcome; the event to send, if
    /// it moved.
    async fn settle(&self, id: &str) -> Option<(SimulatedIntent, Option<&'static str>)> {
        let _guard = self.transitions.lock().await;
        let mut stored = self.intents.get(id)?;
        if stored.intent.status != IntentStatus::RequiresPayment {
            return Some((stored, None));
        }
        let event = if self.declines(stored.intent.amount) {
            "payment_intent.payment_failed"
        } else {
            stored.intent.status = IntentStatus::Succeeded;
            "payment_intent.succeeded"
        };
        self.intents.insert(id.to_owned(), stored.clone());
        Some((stored, Some(event)))
    }

    /// Sends a signed event to our webhook endpoint, retrying a few times
    /// like Stripe does (much faster than Stripe's hours-long schedule).
    async fn send_event(&self, event_type: &str, object: serde_json::Value) {
        let Some(url) = self.webhook_url.get() else {
            tracing::debug!(event.type = event_type, "no webhook endpoint yet; event dropped");
            return;
        };
        let now = crate::db::now().timestamp();
        let body = json!({
            "id": sim_id("evt"),
            "object": "event",
            "api_version": super::stripe::STRIPE_VERSION,
            "created": now,
            "type": event_type,
            "data": { "object": object },
        })
        .to_string();
        for attempt in 1..=5u64 {
            let header = signature::sign(body.as_bytes(), &self.settings.webhook_secret, now);
            let sent = self
                .client
                .post(url)
                .header("Stripe-Signature", header)
                .header("Content-Type", "application/json")
                .body(body.clone())
                .send()
                .await;
            match sent {
                Ok(response) if response.status().is_success() => return,
                Ok(response) => {
                    tracing::warn!(status = %response.status(), event.type = event_type, "simulated webhook refused")
                }
                Err(e) => {
                    tracing::warn!(error = %e, event.type = event_type, "simulated webhook not delivered")
                }
            }
            tokio::time::sleep(Duration::from_millis(200 * attempt)).await;
        }
    }
}

fn intent_object(stored: &SimulatedIntent) -> serde_json::Value {
    json!({
        "id": stored.intent.id,
        "object": "payment_intent",
        "amount": stored.intent.amount,
        "currency": stored.intent.currency,
        "status": stored.intent.status.as_stripe(),
        "metadata": { "order_id": stored.order_id.to_string() },
    })
}

#[async_trait]
impl PaymentGateway for SimulatedGateway {
    fn provider(&self) -> &'static str {
        "simulated"
    }

    async fn create_customer(
        &self,
        details: &CustomerDetails,
        idempotency_key: &str,
    ) -> Result<String, GatewayError> {
        let id = self.idempotency.get_with(idempotency_key.to_owned(), || {
            let id = sim_id("cus");
            self.customers.insert(id.clone(), details.clone());
            id
        });
        Ok(id)
    }

    async fn update_customer(
        &self,
        customer_id: &str,
        details: &CustomerDetails,
    ) -> Result<(), GatewayError> {
        if self.customers.get(customer_id).is_none() {
            return Err(GatewayError::NotFound);
        }
        self.customers
            .insert(customer_id.to_owned(), details.clone());
        Ok(())
    }

    async fn delete_customer(&self, customer_id: &str) -> Result<(), GatewayError> {
        match self.customers.remove(customer_id) {
            Some(_) => Ok(()),
            None => Err(GatewayError::NotFound),
        }
    }

    async fn create_payment_intent(
        &self,
        request: &IntentRequest,
        idempotency_key: &str,
    ) -> Result<PaymentIntent, GatewayError> {
        if request.amount.minor <= 0 {
            return Err(GatewayError::Refused(
                "amount must be at least 1 (amount_too_small)".into(),
            ));
        }
        let mut created = false;
        let id = self.idempotency.get_with(idempotency_key.to_owned(), || {
            created = true;
            let id = sim_id("pi");
            let intent = PaymentIntent {
                id: id.clone(),
                client_secret: Some(format!("{id}_secret_{}", crate::db::new_id().simple())),
                status: IntentStatus::RequiresPayment,
                amount: request.amount.minor,
                currency: request.amount.currency.into(),
            };
            self.intents.insert(
                id.clone(),
                SimulatedIntent {
                    intent,
                    order_id: request.order_id,
                },
            );
            id
        });
        let stored = self.intents.get(&id).ok_or(GatewayError::NotFound)?;
        if created && let Some(delay) = self.settings.confirm_after {
            let this = self.self_arc();
            if let Some(this) = this {
                let id = stored.intent.id.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(delay).await;
                    this.confirm(&id).await;
                });
            }
        }
        Ok(stored.intent)
    }

    async fn retrieve_payment_intent(&self, id: &str) -> Result<PaymentIntent, GatewayError> {
        self.intents
            .get(id)
            .map(|s| s.intent)
            .ok_or(GatewayError::NotFound)
    }

    async fn cancel_payment_intent(
        &self,
        id: &str,
        _idempotency_key: &str,
    ) -> Result<PaymentIntent, GatewayError> {
        let stored = {
            let _guard = self.transitions.lock().await;
            let mut stored = self.intents.get(id).ok_or(GatewayError::NotFound)?;
            match stored.intent.status {
                IntentStatus::Canceled => return Ok(stored.intent),
                IntentStatus::Succeeded => {
                    return Err(GatewayError::Refused(
                        "this PaymentIntent has succeeded (payment_intent_unexpected_state)".into(),
                    ));
                }
                IntentStatus::RequiresPayment | IntentStatus::Processing => {}
            }
            stored.intent.status = IntentStatus::Canceled;
            self.intents.insert(id.to_owned(), stored.clone());
            stored
        };
        self.send_event("payment_intent.canceled", intent_object(&stored))
            .await;
        Ok(stored.intent)
    }

    async fn create_refund(
        &self,
        request: &RefundRequest,
        idempotency_key: &str,
    ) -> Result<ProviderRefund, GatewayError> {
        let intent = self
            .intents
            .get(&request.payment_intent_id)
            .ok_or(GatewayError::NotFound)?;
        if intent.intent.status != IntentStatus::Succeeded {
            return Err(GatewayError::Refused(
                "this PaymentIntent has no successful charge to refund (charge_not_refundable)"
                    .into(),
            ));
        }
        let mut created = false;
        let id = self.idempotency.get_with(idempotency_key.to_owned(), || {
            created = true;
            let id = sim_id("re");
            self.refunds.insert(
                id.clone(),
                ProviderRefund {
                    id: id.clone(),
                    status: ProviderRefundStatus::Succeeded,
                },
            );
            id
        });
        let refund = self.refunds.get(&id).ok_or(GatewayError::NotFound)?;
        if created {
            let object = json!({
                "id": refund.id,
                "object": "refund",
                "amount": request.amount.minor,
                "payment_intent": request.payment_intent_id,
                "status": refund.status.as_str(),
                "metadata": { "order_id": request.order_id.to_string() },
            });
            if let Some(this) = self.self_arc() {
                tokio::spawn(async move { this.send_event("refund.updated", object).await });
            }
        }
        Ok(refund)
    }

    async fn retrieve_refund(&self, id: &str) -> Result<ProviderRefund, GatewayError> {
        self.refunds.get(id).ok_or(GatewayError::NotFound)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::money::{Currency, Money};

    #[tokio::test]
    async fn it_remembers_a_bounded_number_of_payment_intents() {
        // The gateway builds an HTTP client (for its webhooks), which needs
        // the process's TLS provider, installed by `main` outside tests.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let gateway = SimulatedGateway::new(SimulatedSettings {
            confirm_after: None,
            decline_suffix: "02".into(),
            webhook_secret: "whsec_test".into(),
        });
        let Ok(usd) = Currency::parse("usd") else {
            panic!("usd is a currency");
        };
        let amount = Money::new(1_000, usd);
        for n in 0..MAX_OBJECTS + 2_000 {
            let request = IntentRequest {
                order_id: crate::db::new_id(),
                amount,
                customer_id: None,
            };
            let created = gateway
                .create_payment_intent(&request, &format!("pi-create-{n}"))
                .await;
            assert!(created.is_ok(), "{created:?}");
        }
        let count = gateway.payment_intent_count();
        assert!(count <= MAX_OBJECTS, "{count} PaymentIntents kept");
    }
}
