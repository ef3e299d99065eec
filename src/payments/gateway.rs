//! The payment provider behind one interface: Stripe, or the simulated
//! gateway of the embedded mode and tests. Every create carries an
//! idempotency key derived from our own ids, so a retried call (a job run
//! twice, a resumed checkout) never creates a second object.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::money::Money;

/// What we tell the provider about a user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomerDetails {
    pub user_id: Uuid,
    pub email: String,
    pub name: String,
}

/// A PaymentIntent to create for an order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IntentRequest {
    pub order_id: Uuid,
    /// The order's total (Stripe takes the currency in lower case).
    pub amount: Money,
    /// The user's provider customer, when customer sync has made one.
    pub customer_id: Option<String>,
}

/// Where a PaymentIntent stands, in the provider's words reduced to what
/// an order needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IntentStatus {
    /// Waiting for the customer (`requires_payment_method`,
    /// `requires_confirmation`, `requires_action`, `requires_capture`).
    RequiresPayment,
    Processing,
    Succeeded,
    Canceled,
}

impl IntentStatus {
    /// Reads Stripe's `status` field.
    pub fn from_stripe(status: &str) -> Self {
        match status {
            "succeeded" => Self::Succeeded,
            "canceled" => Self::Canceled,
            "processing" => Self::Processing,
            _ => Self::RequiresPayment,
        }
    }

    pub fn as_stripe(self) -> &'static str {
        match self {
            Self::RequiresPayment => "requires_payment_method",
            Self::Processing => "processing",
            Self::Succeeded => "succeeded",
            Self::Canceled => "canceled",
        }
    }
}

/// The provider's final word on a PaymentIntent (from a webhook, or from
/// asking the provider). What it does to an order is for `orders` to decide.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IntentOutcome {
    Succeeded,
    Failed,
    Canceled,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentIntent {
    pub id: String,
    pub client_secret: Option<String>,
    pub status: IntentStatus,
    pub amount: i64,
    pub currency: String,
}

/// A full refund of a PaymentIntent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefundRequest {
    pub payment_intent_id: String,
    /// The payment's whole amount (Stripe takes only its minor units: the
    /// currency is the PaymentIntent's).
    pub amount: Money,
    pub order_id: Uuid,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProviderRefundStatus {
    Pending,
    Succeeded,
    Failed,
    Canceled,
}

impl ProviderRefundStatus {
    /// Reads Stripe's refund `status` (`requires_action` counts as pending).
    pub fn from_stripe(status: &str) -> Self {
        match status {
            "succeeded" => Self::Succeeded,
            "failed" => Self::Failed,
            "canceled" => Self::Canceled,
            _ => Self::Pending,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Canceled => "canceled",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderRefund {
    pub id: String,
    pub status: ProviderRefundStatus,
}

/// Why a provider call failed, in the terms a job or a handler needs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GatewayError {
    /// Network trouble, a timeout, a 5xx or a rate limit: try again later.
    #[error("payment provider unavailable: {0}")]
    Unavailable(String),
    /// A card or bank declined (Stripe `card_error`, HTTP 402).
    #[error("declined by the payment provider: {0}")]
    Declined(String),
    /// The provider refused the request itself; retrying cannot help.
    #[error("payment provider refused the request: {0}")]
    Refused(String),
    /// The object does not exist (already deleted, say).
    #[error("not found at the payment provider")]
    NotFound,
}

impl From<GatewayError> for crate::jobs::JobError {
    fn from(err: GatewayError) -> Self {
        match err {
            GatewayError::Unavailable(_) => Self::retryable(err),
            GatewayError::Declined(_) | GatewayError::Refused(_) | GatewayError::NotFound => {
                Self::permanent(err)
            }
        }
    }
}

#[async_trait]
pub trait PaymentGateway: Send + Sync + 'static {
    /// `stripe` or `simulated`, stored with each payment.
    fn provider(&self) -> &'static str;

    /// Creates the customer of a user. `idempotency_key` makes retries
    /// return the first customer instead of creating another.
    async fn create_customer(
        &self,
        details: &CustomerDetails,
        idempotency_key: &str,
    ) -> Result<String, GatewayError>;

    async fn update_customer(
        &self,
        customer_id: &str,
        details: &CustomerDetails,
    ) -> Result<(), GatewayError>;

    async fn delete_customer(&self, customer_id: &str) -> Result<(), GatewayError>;

    async fn create_payment_intent(
        &self,
        request: &IntentRequest,
        idempotency_key: &str,
    ) -> Result<PaymentIntent, GatewayError>;

    async fn retrieve_payment_intent(&self, id: &str) -> Result<PaymentIntent, GatewayError>;

    /// Cancels an unpaid PaymentIntent. A PaymentIntent that already
    /// succeeded cannot be canceled: that is `Refused`, and the caller refunds.
    async fn cancel_payment_intent(
        &self,
        id: &str,
        idempotency_key: &str,
    ) -> Result<PaymentIntent, GatewayError>;

    async fn create_refund(
        &self,
        request: &RefundRequest,
        idempotency_key: &str,
    ) -> Result<ProviderRefund, GatewayError>;

    async fn retrieve_refund(&self, id: &str) -> Result<ProviderRefund, GatewayError>;
}

pub type SharedGateway = std::sync::Arc<dyn PaymentGateway>;
