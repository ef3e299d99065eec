//! Sign-in throttling: the one limiter in front of every password check
//! (API login, the dashboard's login form, `currentPassword` on
//! `PATCH /api/v1/users/me`, and the dashboard's Basic credentials).
//!
//! The design follows OWASP's Authentication Cheat Sheet, "Protect Against
//! Automated Attacks" and "Account Lockout"
//! (<https://cheatsheetseries.owasp.org/cheatsheets/Authentication_Cheat_Sheet.html>):
//! rather than locking an account after N failures, which lets anyone lock
//! anyone out, Dispatch combines three counters (docs/spec.md §6.7):
//!
//! 1. **per (account, address)**, a hard limit (`RATE_LIMIT_LOGIN`, 5/min):
//!    one client guessing one account gets 429. A correct password resets it.
//! 2. **per address**, across accounts (`RATE_LIMIT_LOGIN_ADDRESS`, 30/min):
//!    one client spraying many accounts gets 429. Correct passwords are given
//!    back, so a shared address of honest users is not spent by them.
//! 3. **per account**, an exponential delay, not a block: after
//!    `LOGIN_DELAY_AFTER` failures every check of the account waits
//!    `LOGIN_DELAY_BASE`, doubling per further failure up to
//!    `LOGIN_DELAY_MAX`, until a correct password or an hour without
//!    failures ([`STRIKE_WINDOW`]). Guessing from many addresses is slowed
//!    down; the owner, from their own address, still signs in (a little
//!    later), never with a 429.
//!
//! Attempts are counted before the password is checked, so concurrent
//! guesses cannot all pass before the first failure is recorded.
//!
//! Keys are HMAC-SHA256 of the account and address, keyed by a key derived
//! from `JWT_ACCESS_SECRET` with HKDF, so Redis never holds an email or an
//! address, and the keys cannot be tested against a list of emails without
//! the secret. In process, keys are forgotten when idle (see `rate_limit`).

use std::{net::IpAddr, time::Duration};

use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;

use crate::{
    config::LoginDelay,
    rate_limit::{Limit, RetryAfter, SharedRateLimiter},
    users::email::Email,
};

/// How long an account's failures are remembered after the last one.
pub const STRIKE_WINDOW: Duration = Duration::from_secs(60 * 60);

/// The label that makes the derived key the throttle's key and nothing else.
const KEY_INFO: &[u8] = b"dispatch sign-in throttle v1";

/// Whose password is being checked.
#[derive(Debug, Clone, Copy)]
pub enum Account<'a> {
    /// An email as typed or stored, compared in its stored spelling
    /// ([`Email::parse`]: local part lower-cased, domain IDNA-normalised),
    /// so the spellings of one mailbox (case, Punycode) share one count;
    /// text that is no address is compared trimmed and lower-cased.
    Email(&'a str),
    /// The dashboard's Basic credentials: every attempt, whatever user name
    /// it gives, counts against this one account.
    DashboardBasic,
}

impl Account<'_> {
    fn identity(self) -> String {
        match self {
            Account::Email(typed) => match Email::parse(typed.trim()) {
                Ok(email) => format!("email:{}", email.as_str()),
                Err(_) => format!("email:{}", typed.trim().to_lowercase()),
            },
            Account::DashboardBasic => "dashboard:basic".to_owned(),
        }
    }
}

pub struct SignInThrottle {
    limiter: SharedRateLimiter,
    key: [u8; 32],
    delay: LoginDelay,
}

/// An attempt let through: report how the check went.
#[must_use = "report the outcome: succeeded, failed or unchecked"]
pub struct Pending<'a> {
    throttle: &'a SignInThrottle,
    account: String,
    pair: String,
    address: Option<String>,
}

impl SignInThrottle {
    pub fn new(
        limiter: SharedRateLimiter,
        jwt_access_secret: &SecretString,
        delay: LoginDelay,
    ) -> Self {
        let mut key = [0_u8; 32];
        // HKDF-SHA256 refuses only outputs longer than 255 × 32 bytes.
        let _ = Hkdf::<Sha256>::new(None, jwt_access_secret.expose_secret().as_bytes())
            .expand(KEY_INFO, &mut key);
        Self {
            limiter,
            key,
            delay,
        }
    }

    /// The key standing for `parts`: 128 bits of HMAC, hex.
    fn hashed(&self, parts: &[&str]) -> String {
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&self.key) else {
            // Unreachable: HMAC takes keys of any length.
            return parts.join("\u{0}");
        };
        for part in parts {
            mac.update(part.as_bytes());
            mac.update(&[0]);
        }
        hex::encode(mac.finalize().into_bytes().get(..16).unwrap_or_default())
    }

    /// Counts an attempt against `account` from `ip` and waits out the
    /// account's delay, or refuses it.
    pub async fn begin(
        &self,
        account: Account<'_>,
        ip: Option<IpAddr>,
    ) -> Result<Pending<'_>, RetryAfter> {
        let identity = account.identity();
        let ip_text = ip.map_or_else(|| "unknown".to_owned(), |ip| ip.to_string());
        let pending = Pending {
            throttle: self,
            account: self.hashed(&["account", &identity]),
            pair: self.hashed(&["pair", &identity, &ip_text]),
            address: ip.map(|_| self.hashed(&["address", &ip_text])),
        };
        if let Some(address) = &pending.address {
            self.limiter.check(Limit::LoginAddress, address).await?;
        }
        if let Err(refused) = self.limiter.check(Limit::Login, &pending.pair).await {
            // Not checked, so not the address's attempt either.
            if let Some(address) = &pending.address {
                self.limiter.refund(Limit::LoginAddress, address).await;
            }
            return Err(refused);
        }
        let delay = self
            .delay
            .for_failures(self.limiter.strikes(&pending.account).await);
        if !delay.is_zero() {
            metrics::counter!("sign_in_delays_total").increment(1);
            tokio::time::sleep(delay).await;
        }
        Ok(pending)
    }
}

impl Pending<'_> {
    /// The password was right: the pair's count and the account's failures
    /// start over, and the address gets its attempt back.
    pub async fn succeeded(self) {
        let limiter = &self.throttle.limiter;
        limiter.reset(Limit::Login, &self.pair).await;
        if let Some(address) = &self.address {
            limiter.refund(Limit::LoginAddress, address).await;
        }
        limiter.clear_strikes(&self.account).await;
    }

    /// The password was wrong (or the account unknown): one more failure
    /// against the account.
    pub async fn failed(self) {
        metrics::counter!("sign_in_failures_total").increment(1);
        self.throttle.limiter.strike(&self.account).await;
    }

    /// No password was checked (busy, or an internal error): the attempt
    /// is given back.
    pub async fn unchecked(self) {
        let limiter = &self.throttle.limiter;
        limiter.refund(Limit::Login, &self.pair).await;
        if let Some(address) = &self.address {
            limiter.refund(Limit::LoginAddress, address).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::{
        config::RateQuota,
        rate_limit::{MemoryRateLimiter, Quotas},
    };

    #[test]
    fn every_spelling_of_one_mailbox_is_one_account() {
        let stored = Account::Email("ana@exämple.de").identity();
        for typed in [
            " ANA@EXÄMPLE.DE ",
            "ana@xn--exmple-cua.de",
            "Ana@XN--EXMPLE-CUA.DE",
        ] {
            assert_eq!(Account::Email(typed).identity(), stored, "{typed}");
        }
        assert_ne!(Account::Email("bob@exämple.de").identity(), stored);
    }

    fn throttle(pair: u32, address: u32) -> SignInThrottle {
        let per_minute = |requests| {
            Some(RateQuota {
                requests,
                period: Duration::from_secs(60),
            })
        };
        let quotas = Quotas::default()
            .with(Limit::Login, per_minute(pair))
            .with(Limit::LoginAddress, per_minute(address));
        SignInThrottle::new(
            Arc::new(MemoryRateLimiter::new(&quotas, STRIKE_WINDOW)),
            &SecretString::from("a-jwt-access-secret-of-enough-length"),
            LoginDelay {
                after: 2,
                base: Duration::from_millis(1),
                max: Duration::from_millis(4),
            },
        )
    }

    fn ip(last: u8) -> Option<IpAddr> {
        Some(IpAddr::from([203, 0, 113, last]))
    }

    #[tokio::test]
    async fn failures_from_other_addresses_never_refuse_the_owners_address() {
        let throttle = throttle(2, 100);
        for attacker in 1..=20 {
            for _ in 0..2 {
                throttle
                    .begin(Account::Email("owner@example.com"), ip(attacker))
                    .await
                    .unwrap()
                    .failed()
                    .await;
            }
            assert!(
                throttle
                    .begin(Account::Email("OWNER@example.com "), ip(attacker))
                    .await
                    .is_err(),
                "the pair is limited, case and spaces aside"
            );
        }
        let owner = throttle
            .begin(Account::Email("owner@example.com"), ip(200))
            .await;
        owner
            .expect("the owner's address is not limited")
            .succeeded()
            .await;
        assert_eq!(
            throttle
                .limiter
                .strikes(&throttle.hashed(&["account", "email:owner@example.com"]))
                .await,
            0,
            "a success clears the account's failures"
        );
    }

    #[tokio::test]
    async fn a_success_resets_the_pair_and_gives_the_address_its_attempt_back() {
        let throttle = throttle(2, 2);
        for _ in 0..5 {
            let pending = throttle
                .begin(Account::DashboardBasic, ip(1))
                .await
                .unwrap();
            pending.succeeded().await;
        }
        throttle
            .begin(Account::DashboardBasic, ip(1))
            .await
            .unwrap()
            .failed()
            .await;
        throttle
            .begin(Account::DashboardBasic, ip(1))
            .await
            .unwrap()
            .failed()
            .await;
        assert!(
            throttle
                .begin(Account::DashboardBasic, ip(1))
                .await
                .is_err()
        );
    }

    #[test]
    fn the_delay_starts_after_the_free_failures_doubles_and_stops_at_the_cap() {
        let delay = LoginDelay {
            after: 3,
            base: Duration::from_millis(250),
            max: Duration::from_secs(2),
        };
        let ms = |failures| delay.for_failures(failures).as_millis();
        assert_eq!(
            [ms(0), ms(2), ms(3), ms(4), ms(5), ms(6), ms(7), ms(60)],
            [0, 0, 250, 500, 1000, 2000, 2000, 2000]
        );
        let off = LoginDelay {
            max: Duration::ZERO,
            ..delay
        };
        assert_eq!(off.for_failures(50), Duration::ZERO);
    }

    #[test]
    fn keys_are_keyed_hashes_that_hold_no_email() {
        let throttle = throttle(1, 1);
        let key = throttle.hashed(&["account", "email:owner@example.com"]);
        assert_eq!(key.len(), 32);
        assert!(!key.contains("owner"));
        let other = SignInThrottle::new(
            Arc::clone(&throttle.limiter),
            &SecretString::from("another-secret-of-enough-length-000"),
            throttle.delay,
        );
        assert_ne!(other.hashed(&["account", "email:owner@example.com"]), key);
    }
}
