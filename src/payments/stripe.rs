//! The Stripe REST client: form-encoded requests, a pinned API version, an
//! `Idempotency-Key` on every create, timeouts, and retries on network
//! errors, 429 and 5xx (honouring `Stripe-Should-Retry`).
//!
//! Hand-written on reqwest rather than async-stripe: we call a handful of
//! endpoints, and the generated crate costs ~80 s of CPU per cold build and
//! rejects events whose objects drift from its types.

use std::time::Duration;

use async_trait::async_trait;
use reqwest::{Method, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use super::gateway::{
    CustomerDetails, GatewayError, IntentRequest, IntentStatus, PaymentGateway, PaymentIntent,
    ProviderRefund, ProviderRefundStatus, RefundRequest,
};

/// The Stripe API version every request is pinned to.
pub const STRIPE_VERSION: &str = "2024-06-20";
const ATTEMPTS: u32 = 3;

pub struct StripeGateway {
    client: reqwest::Client,
    base: String,
    secret_key: SecretString,
}

#[derive(Deserialize)]
struct Created {
    id: String,
}

#[derive(Deserialize)]
struct IntentBody {
    id: String,
    #[serde(default)]
    client_secret: Option<String>,
    status: String,
    amount: i64,
    currency: String,
}

impl From<IntentBody> for PaymentIntent {
    fn from(body: IntentBody) -> Self {
        Self {
            id: body.id,
            client_secret: body.client_secret,
            status: IntentStatus::from_stripe(&body.status),
            amount: body.amount,
            currency: body.currency,
        }
    }
}

#[derive(Deserialize)]
struct RefundBody {
    id: String,
    status: String,
}

impl From<RefundBody> for ProviderRefund {
    fn from(body: RefundBody) -> Self {
        Self {
            id: body.id,
            status: ProviderRefundStatus::from_stripe(&body.status),
        }
    }
}

fn parse<T: serde::de::DeserializeOwned>(body: &str) -> Result<T, GatewayError> {
    serde_json::from_str(body)
        .map_err(|e| GatewayError::Unavailable(format!("unreadable response: {e}")))
}

#[derive(Deserialize)]
struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Deserialize)]
struct ErrorDetail {
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    code: Option<String>,
    #[serde(default, rename = "type")]
    kind: Option<String>,
}

impl StripeGateway {
    /// `timeout` bounds each attempt; up to three attempts are made.
    pub fn new(
        base: &str,
        secret_key: SecretString,
        timeout: Duration,
    ) -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5).min(timeout))
            .timeout(timeout)
            .build()?;
        Ok(Self {
            client,
            base: base.trim_end_matches('/').to_owned(),
            secret_key,
        })
    }

    /// Sends one request, retrying what Stripe says is retryable.
    async fn send(
        &self,
        method: Method,
        path: &str,
        form: &[(&str, String)],
        idempotency_key: Option<&str>,
    ) -> Result<String, GatewayError> {
        let mut last = GatewayError::Unavailable("no attempt made".into());
        for attempt in 1..=ATTEMPTS {
            let mut request = self
                .client
                .request(method.clone(), format!("{}{path}", self.base))
                .bearer_auth(self.secret_key.expose_secret())
                .header("Stripe-Version", STRIPE_VERSION);
            if let Some(key) = idempotency_key {
                request = request.header("Idempotency-Key", key);
            }
            if !form.is_empty() {
                request = request.form(form);
            }
            match request.send().await {
                Ok(response) => {
                    let status = response.status();
                    let should_retry = response
                        .headers()
                        .get("stripe-should-retry")
                        .and_then(|v| v.to_str().ok())
                        .map(|v| v == "true");
                    let body = response.text().await.unwrap_or_default();
                    if status.is_success() {
                        return Ok(body);
                    }
                    let error = classify(status, &body);
                    let retryable =
                        should_retry.unwrap_or(matches!(error, GatewayError::Unavailable(_)));
                    if !retryable {
                        return Err(error);
                    }
                    last = error;
                }
                Err(e) => last = GatewayError::Unavailable(e.to_string()),
            }
            if attempt < ATTEMPTS {
                tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt))).await;
            }
        }
        Err(last)
    }
}

/// Maps a Stripe error response to what a job can do about it.
fn classify(status: StatusCode, body: &str) -> GatewayError {
    let parsed = serde_json::from_str::<ErrorBody>(body).ok();
    let card_error = parsed
        .as_ref()
        .is_some_and(|b| b.error.kind.as_deref() == Some("card_error"));
    let detail = parsed
        .map(|b| {
            format!(
                "{} ({})",
                b.error.message.unwrap_or_default(),
                b.error.code.unwrap_or_else(|| status.as_str().to_owned())
            )
        })
        .unwrap_or_else(|| format!("HTTP {status}"));
    if card_error || status == StatusCode::PAYMENT_REQUIRED {
        GatewayError::Declined(detail)
    } else if status == StatusCode::NOT_FOUND {
        GatewayError::NotFound
    } else if status == StatusCode::TOO_MANY_REQUESTS
        || status.is_server_error()
        || status == StatusCode::CONFLICT
    {
        GatewayError::Unavailable(detail)
    } else {
        GatewayError::Refused(detail)
    }
}

fn customer_form(details: &CustomerDetails) -> Vec<(&'static str, String)> {
    vec![
        ("email", details.email.clone()),
        ("name", details.name.clone()),
        ("metadata[user_id]", details.user_id.to_string()),
    ]
}

#[async_trait]
impl PaymentGateway for StripeGateway {
    fn provider(&self) -> &'static str {
        "stripe"
    }

    async fn create_payment_intent(
        &self,
        request: &IntentRequest,
        idempotency_key: &str,
    ) -> Result<PaymentIntent, GatewayError> {
        let mut form = vec![
            ("amount", request.amount.minor.to_string()),
            ("currency", request.amount.currency.as_str().to_owned()),
            ("metadata[order_id]", request.order_id.to_string()),
            ("automatic_payment_methods[enabled]", "true".to_owned()),
        ];
        if let Some(customer) = &request.customer_id {
            form.push(("customer", customer.clone()));
        }
        let body = self
            .send(
                Method::POST,
                "/v1/payment_intents",
                &form,
                Some(idempotency_key),
            )
            .await?;
        parse::<IntentBody>(&body).map(Into::into)
    }

    async fn retrieve_payment_intent(&self, id: &str) -> Result<PaymentIntent, GatewayError> {
        let body = self
            .send(Method::GET, &format!("/v1/payment_intents/{id}"), &[], None)
            .await?;
        parse::<IntentBody>(&body).map(Into::into)
    }

    async fn cancel_payment_intent(
        &self,
        id: &str,
        idempotency_key: &str,
    ) -> Result<PaymentIntent, GatewayError> {
        let body = self
            .send(
                Method::POST,
                &format!("/v1/payment_intents/{id}/cancel"),
                &[],
                Some(idempotency_key),
            )
            .await?;
        parse::<IntentBody>(&body).map(Into::into)
    }

    async fn create_refund(
        &self,
        request: &RefundRequest,
        idempotency_key: &str,
    ) -> Result<ProviderRefund, GatewayError> {
        let form = [
            ("payment_intent", request.payment_intent_id.clone()),
            ("amount", request.amount.minor.to_string()),
            ("metadata[order_id]", request.order_id.to_string()),
        ];
        let body = self
            .send(Method::POST, "/v1/refunds", &form, Some(idempotency_key))
            .await?;
        parse::<RefundBody>(&body).map(Into::into)
    }

    async fn retrieve_refund(&self, id: &str) -> Result<ProviderRefund, GatewayError> {
        let body = self
            .send(Method::GET, &format!("/v1/refunds/{id}"), &[], None)
            .await?;
        parse::<RefundBody>(&body).map(Into::into)
    }

    async fn create_customer(
        &self,
        details: &CustomerDetails,
        idempotency_key: &str,
    ) -> Result<String, GatewayError> {
        let body = self
            .send(
                Method::POST,
                "/v1/customers",
                &customer_form(details),
                Some(idempotency_key),
            )
            .await?;
        parse::<Created>(&body).map(|c| c.id)
    }

    async fn update_customer(
        &self,
        customer_id: &str,
        details: &CustomerDetails,
    ) -> Result<(), GatewayError> {
        self.send(
            Method::POST,
            &format!("/v1/customers/{customer_id}"),
            &customer_form(details),
            None,
        )
        .await
        .map(|_| ())
    }

    async fn delete_customer(&self, customer_id: &str) -> Result<(), GatewayError> {
        self.send(
            Method::DELETE,
            &format!("/v1/customers/{customer_id}"),
            &[],
            None,
        )
        .await
        .map(|_| ())
    }
}
