//! Payments: the provider gateway (Stripe or simulated), the payment and
//! refund records of orders, the signed webhook, and the jobs that talk to
//! the provider (customer sync, PaymentIntent cancel, refunds,
//! reconciliation). Order status itself is only ever changed through
//! `orders::transition`.

pub mod customer_sync;
pub mod events;
pub mod gateway;
pub mod jobs;
pub mod model;
pub mod queries;
pub mod retention;
pub mod signature;
pub mod simulated;
pub mod stripe;
pub mod webhook;

use std::sync::Arc;

use secrecy::{ExposeSecret, SecretString};

use self::gateway::SharedGateway;
use crate::config::{Config, GatewayKind};

/// The gateway the configuration asks for.
pub fn gateway_from_config(config: &Config) -> anyhow::Result<SharedGateway> {
    Ok(match config.payment_gateway {
        GatewayKind::Simulated => {
            let webhook_secret = config
                .stripe_webhook_secrets
                .first()
                .map(|s| s.expose_secret().to_owned())
                .unwrap_or_default();
            simulated::SimulatedGateway::new(simulated::SimulatedSettings {
                confirm_after: config.simulated_payment_delay,
                decline_suffix: config.simulated_decline_suffix.clone(),
                webhook_secret,
            })
        }
        GatewayKind::Stripe => {
            let key = config
                .stripe_secret_key
                .clone()
                .unwrap_or_else(|| SecretString::from(String::new()));
            Arc::new(stripe::StripeGateway::new(
                &config.stripe_api_base,
                key,
                config.stripe_timeout,
            )?)
        }
    })
}
