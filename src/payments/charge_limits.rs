//! What one charge may be: the smallest and largest amount the provider
//! accepts in a currency.
//!
//! From Stripe's "Minimum and maximum charge amounts" (docs.stripe.com,
//! currencies): a PaymentIntent below the minimum, or above 99 999 999 minor
//! units (eight digits), is refused whatever is retried. The simulated
//! gateway behaves like Stripe test mode, so the same limits serve both.
//! Checking them before any provider call turns what would be a refusal
//! after the order is reserved into a 422 the client can act on.

use crate::money::{Currency, Money};

/// Stripe's limit for the currencies it caps at eight digits, which is every
/// currency we list (a few, such as IDR, allow more; they keep this bound).
const MAX_MINOR: i64 = 99_999_999;

/// Minimums in minor units where Stripe publishes one other than 50.
const MINIMUMS: &[(&str, i64)] = &[
    ("aed", 200),
    ("bgn", 100),
    ("czk", 1_500),
    ("dkk", 250),
    ("gbp", 30),
    ("hkd", 400),
    ("huf", 17_500),
    ("mxn", 1_000),
    ("myr", 200),
    ("nok", 300),
    ("pln", 200),
    ("ron", 200),
    ("sek", 300),
    ("thb", 1_000),
];

/// Stripe's minimum for USD, EUR, BRL, CAD, AUD, CHF, JPY, SGD, NZD, INR and
/// the currencies it does not list separately: 50 minor units.
const DEFAULT_MIN_MINOR: i64 = 50;

/// The range a single charge in `currency` must fall in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChargeLimits {
    pub minimum: Money,
    pub maximum: Money,
}

impl ChargeLimits {
    pub fn of(currency: Currency) -> Self {
        let minimum = MINIMUMS
            .iter()
            .find(|(code, _)| *code == currency.as_str())
            .map_or(DEFAULT_MIN_MINOR, |(_, minor)| *minor);
        Self {
            minimum: Money::new(minimum, currency),
            maximum: Money::new(MAX_MINOR, currency),
        }
    }

    /// Whether `amount` (in the limits' currency) can be charged.
    pub fn allow(&self, amount: Money) -> bool {
        amount.currency == self.minimum.currency
            && (self.minimum.minor..=self.maximum.minor).contains(&amount.minor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(code: &str) -> ChargeLimits {
        ChargeLimits::of(Currency::parse(code).unwrap())
    }

    #[test]
    fn usd_charges_run_from_50_cents_to_eight_digits() {
        let usd = limits("usd");
        let money = |minor| Money::new(minor, usd.minimum.currency);
        assert!(!usd.allow(money(0)));
        assert!(!usd.allow(money(49)));
        assert!(usd.allow(money(50)));
        assert!(usd.allow(money(99_999_999)));
        assert!(!usd.allow(money(100_000_000)));
    }

    #[test]
    fn currencies_with_their_own_minimum_use_it() {
        assert_eq!(limits("gbp").minimum.minor, 30);
        assert_eq!(limits("huf").minimum.minor, 17_500);
        assert_eq!(limits("brl").minimum.minor, 50);
    }

    #[test]
    fn an_amount_in_another_currency_is_not_allowed() {
        let eur = Money::new(1_000, Currency::parse("eur").unwrap());
        assert!(!limits("usd").allow(eur));
    }
}
