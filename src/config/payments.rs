//! The payment provider: which gateway, Stripe's credentials, the simulated
//! gateway's behaviour.

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};

use super::{
    auth::{generated_development_secret, refuse_placeholder},
    settings::{
        DefaultValue::{Derived, Text, Unset},
        Reader, Setting, parse_duration, split_list,
    },
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GatewayKind {
    Simulated,
    Stripe,
}

const PAYMENT_GATEWAY: Setting = Setting {
    env: "PAYMENT_GATEWAY",
    default: Text("simulated"),
    doc: "simulated or stripe (production requires stripe)",
};
const STRIPE_SECRET_KEY: Setting = Setting {
    env: "STRIPE_SECRET_KEY",
    default: Unset,
    doc: "Stripe API key (required with PAYMENT_GATEWAY=stripe)",
};
const STRIPE_API_BASE: Setting = Setting {
    env: "STRIPE_API_BASE",
    default: Text("https://api.stripe.com"),
    doc: "Stripe API base URL",
};
const STRIPE_WEBHOOK_SECRETS: Setting = Setting {
    env: "STRIPE_WEBHOOK_SECRETS",
    default: Derived("development: a webhook secret generated into DATA_DIR/secrets/"),
    doc: "comma-separated webhook signing secrets",
};
const STRIPE_TIMEOUT: Setting = Setting {
    env: "STRIPE_TIMEOUT",
    default: Text("20s"),
    doc: "timeout of one call to Stripe",
};
const SIMULATED_PAYMENT_DELAY: Setting = Setting {
    env: "SIMULATED_PAYMENT_DELAY",
    default: Text("300ms"),
    doc: "simulated gateway: confirm a PaymentIntent this long after creation; off = never",
};
const SIMULATED_DECLINE_SUFFIX: Setting = Setting {
    env: "SIMULATED_DECLINE_SUFFIX",
    default: Text("02"),
    doc: "simulated gateway: totals whose minor units end in these digits are declined",
};

pub(super) const SETTINGS: &[&Setting] = &[
    &PAYMENT_GATEWAY,
    &STRIPE_SECRET_KEY,
    &STRIPE_API_BASE,
    &STRIPE_WEBHOOK_SECRETS,
    &STRIPE_TIMEOUT,
    &SIMULATED_PAYMENT_DELAY,
    &SIMULATED_DECLINE_SUFFIX,
];

pub(super) struct Payments {
    pub payment_gateway: GatewayKind,
    pub stripe_secret_key: Option<SecretString>,
    pub stripe_api_base: String,
    pub stripe_webhook_secrets: Vec<SecretString>,
    pub stripe_timeout: Duration,
    pub simulated_payment_delay: Option<Duration>,
    pub simulated_decline_suffix: String,
}

/// Stripe signs webhooks with secrets it issues as `whsec_…`; anything else
/// is a pasted API key or a placeholder, and every webhook would be refused
/// (or, worse, a guessable value would be accepted).
const STRIPE_WEBHOOK_SECRET_PREFIX: &str = "whsec_";

fn check_stripe_webhook_secrets(r: &mut Reader, secrets: &[SecretString]) {
    let name = STRIPE_WEBHOOK_SECRETS.env;
    for (index, secret) in secrets.iter().enumerate() {
        if refuse_placeholder(r, name, secret) {
            continue;
        }
        if !secret
            .expose_secret()
            .starts_with(STRIPE_WEBHOOK_SECRET_PREFIX)
        {
            r.problem(format!(
                "{name}: entry {} does not start with {STRIPE_WEBHOOK_SECRET_PREFIX} (Stripe's signing secrets do)",
                index + 1
            ));
        }
    }
}

pub(super) fn read(r: &mut Reader, production: bool) -> Option<Payments> {
    let payment_gateway = r.parse(&PAYMENT_GATEWAY, |v| match v {
        "simulated" => Ok(GatewayKind::Simulated),
        "stripe" => Ok(GatewayKind::Stripe),
        other => Err(format!("expected simulated or stripe, got {other:?}")),
    });
    let stripe_secret_key = r.secret(&STRIPE_SECRET_KEY);
    let stripe_api_base = r
        .text_or_default(&STRIPE_API_BASE)
        .trim_end_matches('/')
        .to_owned();
    let mut stripe_webhook_secrets: Vec<SecretString> =
        split_list(&r.text_or_default(&STRIPE_WEBHOOK_SECRETS))
            .map(|s| SecretString::from(s.to_owned()))
            .collect();
    match payment_gateway {
        Some(GatewayKind::Simulated) => {
            if stripe_webhook_secrets.is_empty() {
                // The simulated gateway signs its webhooks too; start-up
                // replaces this placeholder with a key kept in the data directory.
                stripe_webhook_secrets.push(generated_development_secret("stripe_webhook_secret"));
            }
            if production {
                r.problem("PAYMENT_GATEWAY: the simulated gateway is refused in production; set PAYMENT_GATEWAY=stripe");
            }
        }
        Some(GatewayKind::Stripe) => {
            if stripe_secret_key.is_none() {
                r.problem("STRIPE_SECRET_KEY: required when PAYMENT_GATEWAY=stripe");
            }
            if stripe_webhook_secrets.is_empty() {
                r.problem("STRIPE_WEBHOOK_SECRETS: required when PAYMENT_GATEWAY=stripe");
            }
            if production {
                check_stripe_webhook_secrets(r, &stripe_webhook_secrets);
            }
        }
        None => {}
    }
    let stripe_timeout = r.duration(&STRIPE_TIMEOUT);
    let simulated_payment_delay = r.parse(&SIMULATED_PAYMENT_DELAY, |v| {
        if v.eq_ignore_ascii_case("off") {
            Ok(None)
        } else {
            parse_duration(v).map(Some)
        }
    });
    let simulated_decline_suffix = r.parse(&SIMULATED_DECLINE_SUFFIX, |v| {
        if !v.is_empty() && v.len() <= 6 && v.bytes().all(|b| b.is_ascii_digit()) {
            Ok(v.to_owned())
        } else {
            Err(format!("expected 1 to 6 digits, got {v:?}"))
        }
    });

    Some(Payments {
        payment_gateway: payment_gateway?,
        stripe_secret_key,
        stripe_api_base,
        stripe_webhook_secrets,
        stripe_timeout: stripe_timeout?,
        simulated_payment_delay: simulated_payment_delay?,
        simulated_decline_suffix: simulated_decline_suffix?,
    })
}
