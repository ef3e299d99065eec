//! Rate limits per IP and per account, behind one interface: GCRA in process
//! (`governor`) for the embedded topology, and the same algorithm as one
//! atomic Lua script in Redis when several processes must share the counts.
//!
//! When Redis is unreachable the Redis limiter lets requests through (and
//! logs): the limits protect against abuse, and refusing every login because
//! the cache is down would be a worse outage.

use std::{collections::HashMap, num::NonZeroU32, sync::Arc, time::Duration};

use async_trait::async_trait;
use axum::http::{HeaderValue, StatusCode, header};
use governor::{DefaultKeyedRateLimiter, Quota, clock::Clock};

use crate::{config::RateQuota, http::error::ApiError, kv::Kv};

/// The limits Dispatch enforces, each with its own quota.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Limit {
    Login,
    Register,
    Orders,
}

impl Limit {
    fn name(self) -> &'static str {
        match self {
            Limit::Login => "login",
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
        let seconds = retry.0.as_secs() + u64::from(retry.0.subsec_nanos() > 0);
        let seconds = seconds.max(1);
        ApiError::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited")
            .with("seconds", seconds)
            .with_header(header::RETRY_AFTER, HeaderValue::from(seconds))
    }
}

#[async_trait]
pub trait RateLimiter: Send + Sync + 'static {
    /// Counts one request for `key` under `limit`.
    async fn check(&self, limit: Limit, key: &str) -> Result<(), RetryAfter>;
}

pub type SharedRateLimiter = Arc<dyn RateLimiter>;

/// The configured quota of each limit (`None` = off).
#[derive(Debug, Clone, Default)]
pub struct Quotas(HashMap<Limit, RateQuota>);

impl Quotas {
    pub fn new(
        login: Option<RateQuota>,
        register: Option<RateQuota>,
        orders: Option<RateQuota>,
    ) -> Self {
        let entries = [
            (Limit::Login, login),
            (Limit::Register, register),
            (Limit::Orders, orders),
        ];
        Self(
            entries
                .into_iter()
                .filter_map(|(l, q)| Some((l, q?)))
                .collect(),
        )
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

pub struct MemoryRateLimiter {
    limiters: HashMap<Limit, DefaultKeyedRateLimiter<String>>,
}

impl MemoryRateLimiter {
    pub fn new(quotas: &Quotas) -> Self {
        let limiters = quotas
            .0
            .iter()
            .filter_map(|(limit, quota)| {
                let (interval, burst) = gcra(*quota);
                let quota = Quota::with_period(interval)?.allow_burst(NonZeroU32::new(burst)?);
                Some((*limit, DefaultKeyedRateLimiter::keyed(quota)))
            })
            .collect();
        Self { limiters }
    }
}

#[async_trait]
impl RateLimiter for MemoryRateLimiter {
    async fn check(&self, limit: Limit, key: &str) -> Result<(), RetryAfter> {
        let Some(limiter) = self.limiters.get(&limit) else {
            return Ok(());
        };
        limiter.check_key(&key.to_owned()).map_err(|not_until| {
            RetryAfter(not_until.wait_time_from(governor::clock::DefaultClock::default().now()))
        })
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

pub struct RedisRateLimiter {
    kv: Kv,
    quotas: Quotas,
    script: redis::Script,
}

impl RedisRateLimiter {
    pub fn new(kv: Kv, quotas: Quotas) -> Self {
        Self {
            kv,
            quotas,
            script: redis::Script::new(GCRA_SCRIPT),
        }
    }
}

#[async_trait]
impl RateLimiter for RedisRateLimiter {
    async fn check(&self, limit: Limit, key: &str) -> Result<(), RetryAfter> {
        let Some(quota) = self.quotas.get(limit) else {
            return Ok(());
        };
        let (interval, burst) = gcra(quota);
        let interval_ms = u64::try_from(interval.as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        let mut connection = self.kv.connection();
        let wait_ms: Result<u64, _> = self
            .script
            .key(self.kv.key(&format!("rl:{}:{key}", limit.name())))
            .arg(interval_ms)
            .arg(burst)
            .invoke_async(&mut connection)
            .await;
        match wait_ms {
            Ok(0) => Ok(()),
            Ok(ms) => Err(RetryAfter(Duration::from_millis(ms))),
            Err(e) => {
                tracing::warn!(error = %e, rate_limit = limit.name(), "rate limiter unavailable; allowing the request");
                Ok(())
            }
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

    #[tokio::test]
    async fn the_memory_limiter_allows_the_quota_then_refuses() {
        let quota = RateQuota {
            requests: 2,
            period: Duration::from_secs(60),
        };
        let limiter = MemoryRateLimiter::new(&Quotas::new(Some(quota), None, None));
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
}
