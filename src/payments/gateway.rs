//! The payment provider behind one interface: Stripe, or the simulated
//! gateway of the embedded mode and tests.
//!
//! Only customers exist so far (customer sync); PaymentIntents, refunds and
//! events join when orders land.

use async_trait::async_trait;
use uuid::Uuid;

/// What we tell the provider about a user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomerDetails {
    pub user_id: Uuid,
    pub email: String,
    pub name: String,
}

/// Why a provider call failed, in the terms a job needs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GatewayError {
    /// Network trouble, a timeout, a 5xx or a rate limit: try again later.
    #[error("payment provider unavailable: {0}")]
    Unavailable(String),
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
            GatewayError::Refused(_) | GatewayError::NotFound => Self::permanent(err),
        }
    }
}

#[async_trait]
pub trait PaymentGateway: Send + Sync + 'static {
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
}

pub type SharedGateway = std::sync::Arc<dyn PaymentGateway>;
