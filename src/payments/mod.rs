//! Payments, the provider side: the gateway (Stripe or simulated), the
//! payment and refund records with their queries, the webhook's signature
//! check and parsing.
//!
//! This module knows no domain's rules and imports no domain module. The
//! account's customer sync lives in `users`; what a provider fact does to an
//! order (intent outcomes, cancel-payment, refunds, reconciliation, the
//! webhook's order part) is decided in `orders`, which asks this module for
//! the facts.

pub mod charge_limits;
pub mod gateway;
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

/// The gateway the configuration asks for, and the same gateway as its
/// concrete type when it is the simulated one.
pub struct ConfiguredGateway {
    pub gateway: SharedGateway,
    /// Start-up points its webhooks at our listener; tests drive it
    /// (confirm, decline, counts). Kept beside the trait object so the
    /// trait need not know its implementations.
    pub simulated: Option<Arc<simulated::SimulatedGateway>>,
}

/// The gateway the configuration asks for.
pub fn gateway_from_config(config: &Config) -> anyhow::Result<ConfiguredGateway> {
    Ok(match config.payment_gateway {
        GatewayKind::Simulated => {
            let webhook_secret = config
                .stripe_webhook_secrets
                .first()
                .map(|s| s.expose_secret().to_owned())
                .unwrap_or_default();
            let simulated = simulated::SimulatedGateway::new(simulated::SimulatedSettings {
                confirm_after: config.simulated_payment_delay,
                decline_suffix: config.simulated_decline_suffix.clone(),
                webhook_secret,
            });
            ConfiguredGateway {
                gateway: Arc::clone(&simulated) as SharedGateway,
                simulated: Some(simulated),
            }
        }
        GatewayKind::Stripe => {
            let key = config
                .stripe_secret_key
                .clone()
                .unwrap_or_else(|| SecretString::from(String::new()));
            ConfiguredGateway {
                gateway: Arc::new(stripe::StripeGateway::new(
                    &config.stripe_api_base,
                    key,
                    config.stripe_timeout,
                )?),
                simulated: None,
            }
        }
    })
}
