//! The simulated gateway: the only fake in Dispatch, standing in for Stripe
//! at the edge in the embedded mode, demos and tests. It keeps its objects in
//! memory and honours idempotency keys like Stripe does.

use async_trait::async_trait;

use super::gateway::{CustomerDetails, GatewayError, PaymentGateway};

pub struct SimulatedGateway {
    /// Customer id → details.
    customers: moka::sync::Cache<String, CustomerDetails>,
    /// Idempotency key → customer id created under it.
    idempotency: moka::sync::Cache<String, String>,
}

impl Default for SimulatedGateway {
    fn default() -> Self {
        Self::new()
    }
}

impl SimulatedGateway {
    pub fn new() -> Self {
        Self {
            customers: moka::sync::Cache::builder().max_capacity(1_000_000).build(),
            idempotency: moka::sync::Cache::builder()
                .max_capacity(1_000_000)
                .time_to_live(std::time::Duration::from_secs(24 * 3600))
                .build(),
        }
    }

    /// The customer the gateway holds under `id` (tests and diagnostics).
    pub fn customer(&self, id: &str) -> Option<CustomerDetails> {
        self.customers.get(id)
    }

    pub fn customer_count(&self) -> u64 {
        self.customers.run_pending_tasks();
        self.customers.entry_count()
    }
}

#[async_trait]
impl PaymentGateway for SimulatedGateway {
    async fn create_customer(
        &self,
        details: &CustomerDetails,
        idempotency_key: &str,
    ) -> Result<String, GatewayError> {
        let id = self.idempotency.get_with(idempotency_key.to_owned(), || {
            let id = format!("cus_sim_{}", crate::db::new_id().simple());
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
}
