//! Locks that save duplicate work (one refund call per order at a time),
//! never correctness: every protected effect is also a conditional database
//! write or carries a provider idempotency key, so a lock that expires early
//! or is lost with Redis costs at most a wasted call.
//!
//! Redis: `SET key token NX PX ttl`, released by a compare-and-delete script
//! so a holder whose lock expired cannot free someone else's. In process: a
//! map of held keys. When Redis is unreachable the lock is granted (no lock
//! is better than no progress; see above for why that is safe).

use std::{sync::Arc, time::Duration};

use async_trait::async_trait;
use uuid::Uuid;

use crate::kv::Kv;

/// A held lock; released when dropped.
pub struct LockGuard {
    release: Option<Box<dyn FnOnce() + Send>>,
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        if let Some(release) = self.release.take() {
            release();
        }
    }
}

#[async_trait]
pub trait Locks: Send + Sync + 'static {
    /// The lock on `key` for at most `ttl`, or `None` if someone holds it.
    async fn try_acquire(&self, key: &str, ttl: Duration) -> Option<LockGuard>;
}

pub type SharedLocks = Arc<dyn Locks>;

/// In-process locks held at most at once.
const MAX_HELD: u64 = 10_000;

/// In-process locks for the embedded topology.
pub struct MemoryLocks {
    held: moka::sync::Cache<String, Uuid>,
}

impl Default for MemoryLocks {
    fn default() -> Self {
        Self {
            // Entries outlive no holder by more than this (a guard leaked by
            // a bug); the requested ttl is ignored in process since a holder
            // cannot die without its guard being dropped.
            // Bounded like every in-process map. Far more locks than this
            // are never held at once (one per job or request in flight);
            // if they were, an evicted lock would cost a duplicate call,
            // never correctness (see above).
            held: moka::sync::Cache::builder()
                .max_capacity(MAX_HELD)
                .time_to_live(Duration::from_secs(600))
                .build(),
        }
    }
}

#[async_trait]
impl Locks for MemoryLocks {
    async fn try_acquire(&self, key: &str, _ttl: Duration) -> Option<LockGuard> {
        let token = crate::db::new_id();
        let entry = self.held.entry(key.to_owned()).or_insert_with(|| token);
        if !entry.is_fresh() {
            return None;
        }
        let held = self.held.clone();
        let key = key.to_owned();
        Some(LockGuard {
            release: Some(Box::new(move || {
                if held.get(&key) == Some(token) {
                    held.invalidate(&key);
                }
            })),
        })
    }
}

/// Locks shared by every process through Redis.
pub struct RedisLocks {
    kv: Kv,
}

impl RedisLocks {
    pub fn new(kv: Kv) -> Self {
        Self { kv }
    }
}

const RELEASE_SCRIPT: &str = r#"
if redis.call("GET", KEYS[1]) == ARGV[1] then
  return redis.call("DEL", KEYS[1])
end
return 0
"#;

#[async_trait]
impl Locks for RedisLocks {
    async fn try_acquire(&self, key: &str, ttl: Duration) -> Option<LockGuard> {
        let name = self.kv.key(&format!("lock:{key}"));
        let token = crate::db::new_id().to_string();
        let mut connection = self.kv.connection();
        let acquired: redis::RedisResult<Option<String>> = redis::cmd("SET")
            .arg(&name)
            .arg(&token)
            .arg("NX")
            .arg("PX")
            .arg(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX))
            .query_async(&mut connection)
            .await;
        match acquired {
            Ok(Some(_)) => {}
            Ok(None) => return None,
            Err(e) => {
                tracing::warn!(error = %e, lock = key, "Redis unavailable; proceeding without the lock");
                return Some(LockGuard { release: None });
            }
        }
        Some(LockGuard {
            release: Some(Box::new(move || {
                if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                    runtime.spawn(async move {
                        let _: redis::RedisResult<i64> = redis::Script::new(RELEASE_SCRIPT)
                            .key(&name)
                            .arg(&token)
                            .invoke_async(&mut connection)
                            .await;
                    });
                }
            })),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_held_lock_is_refused_until_released() {
        let locks = MemoryLocks::default();
        let first = locks.try_acquire("refund:1", Duration::from_secs(5)).await;
        assert!(first.is_some());
        assert!(
            locks
                .try_acquire("refund:1", Duration::from_secs(5))
                .await
                .is_none()
        );
        assert!(
            locks
                .try_acquire("refund:2", Duration::from_secs(5))
                .await
                .is_some()
        );
        drop(first);
        assert!(
            locks
                .try_acquire("refund:1", Duration::from_secs(5))
                .await
                .is_some()
        );
    }
}
