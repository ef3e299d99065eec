//! Payments: the provider gateway (Stripe or simulated) and the jobs that
//! talk to it. Orders, PaymentIntents and the webhook join with the orders
//! issue.

pub mod customer_sync;
pub mod gateway;
pub mod simulated;
pub mod stripe;

use std::sync::Arc;

use secrecy::SecretString;

use self::gateway::SharedGateway;
use crate::config::{Config, GatewayKind};

/// The gateway the configuration asks for.
pub fn gateway_from_config(config: &Config) -> anyhow::Result<SharedGateway> {
    Ok(match config.payment_gateway {
        GatewayKind::Simulated => Arc::new(simulated::SimulatedGateway::new()),
        GatewayKind::Stripe => {
            let key = config
                .stripe_secret_key
                .clone()
                .unwrap_or_else(|| SecretString::from(String::new()));
            Arc::new(stripe::StripeGateway::new(&config.stripe_api_base, key)?)
        }
    })
}
