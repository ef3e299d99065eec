//! Cache-aside store behind one interface: Redis when configured, `moka` in
//! process otherwise.
//!
//! The cache is an optimisation only. Every failure (Redis down, a corrupt
//! entry) is logged and reported as a miss, so reads fall back to the
//! database and never fail because of the cache.
//!
//! Invalidation is by generation: readers build keys from a namespace's
//! current generation number and writers bump it after commit. One bump
//! invalidates every entry of the namespace (items and list pages alike),
//! including in other processes sharing Redis; entries of old generations
//! expire by TTL.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use async_trait::async_trait;
use redis::AsyncCommands;

use crate::kv::Kv;

#[async_trait]
pub trait Cache: Send + Sync + 'static {
    async fn get(&self, key: &str) -> Option<Vec<u8>>;
    async fn set(&self, key: &str, value: Vec<u8>, ttl: Duration);
    /// The current generation of a namespace (0 when unknown).
    async fn generation(&self, namespace: &str) -> Option<u64>;
    /// Moves a namespace to a new generation, orphaning its entries. False
    /// when the store did not confirm it (Redis unreachable): the entries
    /// may still be served until their TTL ends.
    async fn bump(&self, namespace: &str) -> bool;
}

pub type SharedCache = Arc<dyn Cache>;

/// In-process cache for the embedded topology (one process).
pub struct MemoryCache {
    entries: moka::future::Cache<String, Arc<Vec<u8>>>,
    generations: moka::sync::Cache<String, Arc<AtomicU64>>,
    /// Source of every generation number. Drawing them all from one
    /// increasing sequence means a namespace whose counter was evicted
    /// restarts at a number never used before, so it cannot resurrect
    /// entries written under an older generation.
    sequence: AtomicU64,
}

impl MemoryCache {
    pub fn new(ttl: Duration) -> Self {
        Self {
            entries: moka::future::Cache::builder()
                .max_capacity(10_000)
                .time_to_live(ttl)
                .build(),
            generations: moka::sync::Cache::builder().max_capacity(100_000).build(),
            sequence: AtomicU64::new(0),
        }
    }

    fn counter(&self, namespace: &str) -> Arc<AtomicU64> {
        self.generations.get_with(namespace.to_owned(), || {
            Arc::new(AtomicU64::new(self.next_generation()))
        })
    }

    fn next_generation(&self) -> u64 {
        self.sequence.fetch_add(1, Ordering::AcqRel) + 1
    }
}

#[async_trait]
impl Cache for MemoryCache {
    async fn get(&self, key: &str) -> Option<Vec<u8>> {
        self.entries.get(key).await.map(|v| v.as_ref().clone())
    }

    async fn set(&self, key: &str, value: Vec<u8>, _ttl: Duration) {
        self.entries.insert(key.to_owned(), Arc::new(value)).await;
    }

    async fn generation(&self, namespace: &str) -> Option<u64> {
        Some(self.counter(namespace).load(Ordering::Acquire))
    }

    async fn bump(&self, namespace: &str) -> bool {
        let next = self.next_generation();
        self.counter(namespace).fetch_max(next, Ordering::AcqRel);
        true
    }
}

/// Redis-backed cache shared by every process.
pub struct RedisCache {
    kv: Kv,
}

impl RedisCache {
    pub fn new(kv: Kv) -> Self {
        Self { kv }
    }
}

#[async_trait]
impl Cache for RedisCache {
    async fn get(&self, key: &str) -> Option<Vec<u8>> {
        let mut connection = self.kv.connection();
        match connection.get::<_, Option<Vec<u8>>>(self.kv.key(key)).await {
            Ok(value) => value,
            Err(e) => {
                tracing::warn!(error = %e, cache.key = key, "cache read failed; using the database");
                None
            }
        }
    }

    async fn set(&self, key: &str, value: Vec<u8>, ttl: Duration) {
        let mut connection = self.kv.connection();
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
        if let Err(e) = connection
            .pset_ex::<_, _, ()>(self.kv.key(key), value, ttl_ms)
            .await
        {
            tracing::warn!(error = %e, cache.key = key, "cache write failed");
        }
    }

    async fn generation(&self, namespace: &str) -> Option<u64> {
        let mut connection = self.kv.connection();
        match connection
            .get::<_, Option<u64>>(self.kv.key(&format!("gen:{namespace}")))
            .await
        {
            Ok(value) => Some(value.unwrap_or(0)),
            Err(e) => {
                tracing::warn!(error = %e, cache.namespace = namespace, "cache generation read failed; bypassing the cache");
                None
            }
        }
    }

    async fn bump(&self, namespace: &str) -> bool {
        let mut connection = self.kv.connection();
        match connection
            .incr::<_, _, u64>(self.kv.key(&format!("gen:{namespace}")), 1)
            .await
        {
            Ok(_) => true,
            Err(e) => {
                tracing::warn!(error = %e, cache.namespace = namespace, "cache invalidation failed; entries expire by TTL");
                false
            }
        }
    }
}

/// Reads `key` of `namespace` through the cache: a hit is decoded, a miss (or
/// any cache failure) runs `load` and stores its result.
pub async fn read_through<T, E, F, Fut>(
    cache: &dyn Cache,
    namespace: &str,
    key: &str,
    ttl: Duration,
    load: F,
) -> Result<T, E>
where
    T: serde::Serialize + serde::de::DeserializeOwned,
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let Some(generation) = cache.generation(namespace).await else {
        return load().await;
    };
    let full_key = format!("{namespace}:{generation}:{key}");
    if let Some(bytes) = cache.get(&full_key).await
        && let Ok(value) = serde_json::from_slice(&bytes)
    {
        metrics::counter!("cache_requests_total", "namespace" => namespace.to_owned(), "result" => "hit").increment(1);
        return Ok(value);
    }
    metrics::counter!("cache_requests_total", "namespace" => namespace.to_owned(), "result" => "miss").increment(1);
    let value = load().await?;
    if let Ok(bytes) = serde_json::to_vec(&value) {
        cache.set(&full_key, bytes, ttl).await;
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_bump_hides_earlier_entries() {
        let cache = MemoryCache::new(Duration::from_secs(60));
        let load = |v: u32| move || async move { Ok::<_, ()>(v) };
        let first = read_through(&cache, "items", "a", Duration::from_secs(60), load(1)).await;
        let cached = read_through(&cache, "items", "a", Duration::from_secs(60), load(2)).await;
        assert_eq!((first, cached), (Ok(1), Ok(1)));
        cache.bump("items").await;
        let fresh = read_through(&cache, "items", "a", Duration::from_secs(60), load(3)).await;
        assert_eq!(fresh, Ok(3));
    }
}
