//! Rate limits and failure counts, behind one interface: GCRA in process
//! (keys in `moka` caches that forget idle keys and hold a bounded number)
//! for the embedded topology, and the same algorithm as atomic Lua scripts in
//! Redis when several processes must share the counts.
//!
//! Two kinds of state:
//! - **limits** ([`Limit`]): GCRA, at most `N` requests per period per key,
//!   bursts up to `N`. A request is counted when checked, so concurrent
//!   requests cannot all pass before any is counted; a caller that decides
//!   afterwards that a request should not have counted gives it back
//!   ([`RateLimiter::refund`]) or forgets the key ([`RateLimiter::reset`]).
//! - **strikes**: a count per key that ends `strike_window` after the last
//!   strike (failures of one account, for sign-in throttling).
//!
//! Callers pass opaque keys; what they contain (hashed, never raw personal
//! data, for sign-in) is theirs to decide.
//!
//! When Redis is unreachable the Redis limiter lets requests through (and
//! logs): the limits protect against abuse, and refusing every login because
//! the cache is down would be a worse outage.

use std::{
    collections::HashMap,
    sync::Arc,
    time::{Duration, Instant},
};

use async_trait::async_trait;
use axum::http::StatusCode;
use moka::ops::compute::Op;

use crate::{config::RateQuota, http::error::ApiError, kv::Kv};

/// Most keys one in-process limit (or the strike counts) remembers. At
/// about a hundred bytes each, 100 000 keys cost ~10 MiB at worst; past it
/// the least recently used keys are forgotten first.
const MEMORY_MAX_KEYS: u64 = 100_000;

/// The limits Dispatch enforces, each with its own quota.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Limit {
    /// Password checks per (account, client address).
    Login,
    /// Password checks per client address, across accounts.
    LoginAddress,
    Register,
    Orders,
}

impl Limit {
    fn name(self) -> &'static str {
        match self {
            Limit::Login => "login",
            Limit::LoginAddress => "login_address",
            Limit::Register => "register",
            Limit::Orders => "orders",
        }
    }
}

/// Refusal: try again after this long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryAfter(pub Duration);

impl From<RetryAfter> for ApiError {
    fn from(retry: RetryAfter) -> Self {
        ApiError::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited").with_retry_after(retry.0)
    }
}

#[async_trait]
pub trait RateLimiter: Send + Sync + 'static {
    /// Counts one request for `key` under `limit`, or refuses it.
    async fn check(&self, limit: Limit, key: &str) -> Result<(), RetryAfter>;
    /// Gives back one request [`check`](Self::check) counted.
    async fn refund(&self, limit: Limit, key: &str);
    /// Forgets every request counted for `key` under `limit`.
    async fn reset(&self, limit: Limit, key: &str);
    /// The strikes against `key` within the strike window.
    async fn strikes(&self, key: &str) -> u32;
    /// Adds a strike against `key`; the count ends a strike window after it.
    async fn strike(&self, key: &str);
    /// Forgets the strikes against `key`.
    async fn clear_strikes(&self, key: &str);
}

pub type SharedRateLimiter = Arc<dyn RateLimiter>;

/// The configured quota of each limit (absent = off).
#[derive(Debug, Clone, Default)]
pub struct Quotas(HashMap<Limit, RateQuota>);

impl Quotas {
    /// Sets `limit`'s quota; `None` leaves it off.
    #[must_use]
    pub fn with(mut self, limit: Limit, quota: Option<RateQuota>) -> Self {
        if let Some(quota) = quota {
            self.0.insert(limit, quota);
        }
        self
    }

    fn get(&self, limit: Limit) -> Option<RateQuota> {
        self.0.get(&limit).copied()
    }
}

/// GCRA parameters: one request is "emitted" every `interval`; up to `burst`
/// may come at once.
fn gcra(quota: RateQuota) -> (Duration, u32) {
    (quota.period / quota.requests, quota.requests)
}

/// One in-process limit: each key's theoretical arrival time (TAT).
struct MemoryLimit {
    quota: RateQuota,
    tats: moka::sync::Cache<String, Instant>,
}

impl MemoryLimit {
    fn new(quota: RateQuota) -> Self {
        // A key idle for a whole period has its TAT in the past, which is
        // the same as no entry: forgetting it then changes no answer.
        let tats = moka::sync::Cache::builder()
            .max_capacity(MEMORY_MAX_KEYS)
            .time_to_idle(quota.period)
            .build();
        Self { quota, tats }
    }

    fn check(&self, key: &str) -> Result<(), RetryAfter> {
        let (interval, _) = gcra(self.quota);
        let now = Instant::now();
        let mut refused = None;
        // `and_compute_with` runs one closure per key at a time, so two
        // concurrent checks cannot both take the last request.
        self.tats.entry(key.to_owned()).and_compute_with(|entry| {
            let tat = entry.map(|e| e.into_value()).filter(|t| *t > now);
            let new_tat = tat.unwrap_or(now) + interval;
            let allowed_until = now + self.quota.period;
            if new_tat > allowed_until {
                refused = Some(RetryAfter(new_tat - allowed_until));
                Op::Nop
            } else {
                Op::Put(new_tat)
            }
        });
        refused.map_or(Ok(()), Err)
    }

    fn refund(&self, key: &str) {
        let (interval, _) = gcra(self.quota);
        let now = Instant::now();
        self.tats.entry(key.to_owned()).and_compute_with(|entry| {
            match entry.map(|e| e.into_value()) {
                Some(tat) if tat > now + interval => Op::Put(tat - interval),
                Some(_) => Op::Remove,
                None => Op::Nop,
            }
        });
    }
}

pub struct MemoryRateLimiter {
    limits: HashMap<Limit, MemoryLimit>,
    strikes: moka::sync::Cache<String, u32>,
}

impl MemoryRateLimiter {
    pub fn new(quotas: &Quotas, strike_window: Duration) -> Self {
        let limits = quotas
            .0
            .iter()
            .map(|(limit, quota)| (*limit, MemoryLimit::new(*quota)))
            .collect();
        // Each strike replaces the count, which restarts its time to live.
        let strikes = moka::sync::Cache::builder()
            .max_capacity(MEMORY_MAX_KEYS)
            .time_to_live(strike_window)
            .build();
        Self { limits, strikes }
    }
}

#[async_trait]
impl RateLimiter for MemoryRateLimiter {
    async fn check(&self, limit: Limit, key: &str) -> Result<(), RetryAfter> {
        self.limits.get(&limit).map_or(Ok(()), |l| l.check(key))
    }

    async fn refund(&self, limit: Limit, key: &str) {
        if let Some(l) = self.limits.get(&limit) {
            l.refund(key);
        }
    }

    async fn reset(&self, limit: Limit, key: &str) {
        if let Some(l) = self.limits.get(&limit) {
            l.tats.invalidate(key);
        }
    }

    async fn strikes(&self, key: &str) -> u32 {
        self.strikes.get(key).unwrap_or(0)
    }

    async fn strike(&self, key: &str) {
        self.strikes
            .entry(key.to_owned())
            .and_compute_with(|entry| {
                Op::Put(entry.map_or(0, |e| e.into_value()).saturating_add(1))
            });
    }

    async fn clear_strikes(&self, key: &str) {
        self.strikes.invalidate(key);
    }
}

/// GCRA in one round trip. Returns 0 when allowed, else milliseconds to wait.
const GCRA_SCRIPT: &str = r"
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1])) or now_ms
if tat < now_ms then tat = now_ms end
local new_tat = tat + interval
local allow_at = new_tat - burst * interval
if allow_at > now_ms then return allow_at - now_ms end
redis.call('SET', KEYS[1], new_tat, 'PX', new_tat - now_ms)
return 0
";

/// Gives back one emission interval of a key's TAT, atomically.
const REFUND_SCRIPT: &str = r"
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local tat = tonumber(redis.call('GET', KEYS[1]))
if not tat then return 0 end
local new_tat = tat - tonumber(ARGV[1])
if new_tat <= now_ms then
  redis.call('DEL', KEYS[1])
else
  redis.call('SET', KEYS[1], new_tat, 'PX', new_tat - now_ms)
end
return 0
";

/// Adds a strike and restarts the window, atomically.
const STRIKE_SCRIPT: &str = r"
local n = redis.call('INCR', KEYS[1])
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return n
";

pub struct RedisRateLimiter {
    kv: Kv,
    quotas: Quotas,
    strike_window_ms: u64,
    gcra: redis::Script,
    refund: redis::Script,
    strike: redis::Script,
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

impl RedisRateLimiter {
    pub fn new(kv: Kv, quotas: Quotas, strike_window: Duration) -> Self {
        Self {
            kv,
            quotas,
            strike_window_ms: millis(strike_window),
            gcra: redis::Script::new(GCRA_SCRIPT),
            refund: redis::Script::new(REFUND_SCRIPT),
            strike: redis::Script::new(STRIKE_SCRIPT),
        }
    }

    fn limit_key(&self, limit: Limit, key: &str) -> String {
        self.kv.key(&format!("rl:{}:{key}", limit.name()))
    }

    fn strike_key(&self, key: &str) -> String {
        self.kv.key(&format!("strikes:{key}"))
    }

    fn unavailable(e: &redis::RedisError, what: &str) {
        tracing::warn!(error = %e, rate_limit = what, "rate limiter unavailable; allowing the request");
    }
}

#[async_trait]
impl RateLimiter for RedisRateLimiter {
    async fn check(&self, limit: Limit, key: &str) -> Result<(), RetryAfter> {
        let Some(quota) = self.quotas.get(limit) else {
            return Ok(());
        };
        let (interval, burst) = gcra(quota);
        let mut connection = self.kv.connection();
        let wait_ms: Result<u64, _> = self
            .gcra
            .key(self.limit_key(limit, key))
            .arg(millis(interval))
            .arg(burst)
            .invoke_async(&mut connection)
            .await;
        match wait_ms {
            Ok(0) => Ok(()),
            Ok(ms) => Err(RetryAfter(Duration::from_millis(ms))),
            Err(e) => {
                Self::unavailable(&e, limit.name());
                Ok(())
            }
        }
    }

    async fn refund(&self, limit: Limit, key: &str) {
        let Some(quota) = self.quotas.get(limit) else {
            return;
        };
        let (interval, _) = gcra(quota);
        let mut connection = self.kv.connection();
        let done: Result<u64, _> = self
            .refund
            .key(self.limit_key(limit, key))
            .arg(millis(interval))
            .invoke_async(&mut connection)
            .await;
        if let Err(e) = done {
            Self::unavailable(&e, limit.name());
        }
    }

    async fn reset(&self, limit: Limit, key: &str) {
        if self.quotas.get(limit).is_none() {
            return;
        }
        let mut connection = self.kv.connection();
        let done: Result<u64, _> = redis::cmd("DEL")
            .arg(self.limit_key(limit, key))
            .query_async(&mut connection)
            .await;
        if let Err(e) = done {
            Self::unavailable(&e, limit.name());
        }
    }

    async fn strikes(&self, key: &str) -> u32 {
        let mut connection = self.kv.connection();
        let count: Result<Option<u32>, _> = redis::cmd("GET")
            .arg(self.strike_key(key))
            .query_async(&mut connection)
            .await;
        count
            .unwrap_or_else(|e| {
                Self::unavailable(&e, "strikes");
                None
            })
            .unwrap_or(0)
    }

    async fn strike(&self, key: &str) {
        let mut connection = self.kv.connection();
        let done: Result<u64, _> = self
            .strike
            .key(self.strike_key(key))
            .arg(self.strike_window_ms)
            .invoke_async(&mut connection)
            .await;
        if let Err(e) = done {
            Self::unavailable(&e, "strikes");
        }
    }

    async fn clear_strikes(&self, key: &str) {
        let mut connection = self.kv.connection();
        let done: Result<u64, _> = redis::cmd("DEL")
            .arg(self.strike_key(key))
            .query_async(&mut connection)
            .await;
        if let Err(e) = done {
            Self::unavailable(&e, "strikes");
        }
    }
}

/// Checks the per-IP and the per-account counters of one limit.
pub async fn check_ip_and_account(
    limiter: &dyn RateLimiter,
    limit: Limit,
    ip: Option<std::net::IpAddr>,
    account: Option<&str>,
) -> Result<(), RetryAfter> {
    if let Some(ip) = ip {
        limiter.check(limit, &format!("ip:{ip}")).await?;
    }
    if let Some(account) = account {
        limiter.check(limit, &format!("account:{account}")).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(requests: u32) -> MemoryRateLimiter {
        let quota = RateQuota {
            requests,
            period: Duration::from_secs(60),
        };
        let quotas = Quotas::default().with(Limit::Login, Some(quota));
        MemoryRateLimiter::new(&quotas, Duration::from_secs(60))
    }

    #[tokio::test]
    async fn the_memory_limiter_allows_the_quota_then_refuses() {
        let limiter = limiter(2);
        assert!(limiter.check(Limit::Login, "a").await.is_ok());
        assert!(limiter.check(Limit::Login, "a").await.is_ok());
        let refused = limiter.check(Limit::Login, "a").await.unwrap_err();
        assert!(refused.0 > Duration::from_secs(20));
        assert!(
            limiter.check(Limit::Login, "b").await.is_ok(),
            "keys are independent"
        );
        assert!(
            limiter.check(Limit::Register, "a").await.is_ok(),
            "an unset limit is off"
        );
    }

    #[tokio::test]
    async fn a_refund_gives_back_one_request_and_a_reset_all() {
        let limiter = limiter(2);
        for _ in 0..2 {
            limiter.check(Limit::Login, "a").await.unwrap();
        }
        limiter.refund(Limit::Login, "a").await;
        assert!(limiter.check(Limit::Login, "a").await.is_ok());
        assert!(limiter.check(Limit::Login, "a").await.is_err());
        limiter.reset(Limit::Login, "a").await;
        assert!(limiter.check(Limit::Login, "a").await.is_ok());
        assert!(limiter.check(Limit::Login, "a").await.is_ok());
        assert!(limiter.check(Limit::Login, "a").await.is_err());
    }

    #[tokio::test]
    async fn concurrent_checks_never_pass_more_than_the_quota() {
        let limiter = Arc::new(limiter(5));
        let checks = (0..64).map(|_| {
            let limiter = Arc::clone(&limiter);
            tokio::spawn(async move { limiter.check(Limit::Login, "a").await.is_ok() })
        });
        let passed = futures::future::join_all(checks)
            .await
            .into_iter()
            .filter(|r| *r.as_ref().unwrap())
            .count();
        assert_eq!(passed, 5);
    }

    #[tokio::test]
    async fn strikes_count_up_and_clear() {
        let limiter = limiter(1);
        assert_eq!(limiter.strikes("k").await, 0);
        limiter.strike("k").await;
        limiter.strike("k").await;
        assert_eq!(limiter.strikes("k").await, 2);
        assert_eq!(limiter.strikes("other").await, 0);
        limiter.clear_strikes("k").await;
        assert_eq!(limiter.strikes("k").await, 0);
    }
}
