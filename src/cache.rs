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

/// What an entry costs beyond its key and value bytes (moka's entry, its
/// timer and frequency-sketch slots, the `Arc`): an estimate, so that many
/// small entries (session checks) are weighed fairly against a few large
/// ones (catalogue pages).
const ENTRY_OVERHEAD_BYTES: usize = 160;

/// Generation counters kept at most. Evicting one is always safe (see
/// [`MemoryCache::sequence`]), so this only bounds memory: one per user
/// with a session checked within `CACHE_TTL`, plus the catalogue's.
const MAX_GENERATIONS: u64 = 50_000;

/// In-process cache for the embedded topology (one process).
///
/// Bounded by bytes, not by entry count: a catalogue list page, whose key
/// the client chooses (filters, cursor, page size), weighs from a few
/// hundred bytes to half a MiB (100 items with 5 000-character
/// descriptions), so no entry count bounds the memory.
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
    /// A cache whose entries live `ttl` and weigh at most `max_bytes`
    /// together (keys, values and [`ENTRY_OVERHEAD_BYTES`] each).
    pub fn new(ttl: Duration, max_bytes: u64) -> Self {
        Self {
            entries: moka::future::Cache::builder()
                .max_capacity(max_bytes)
                .weigher(|key: &String, value: &Arc<Vec<u8>>| {
                    u32::try_from(key.len() + value.len() + ENTRY_OVERHEAD_BYTES)
                        .unwrap_or(u32::MAX)
                })
                .time_to_live(ttl)
                .build(),
            // A counter unused for `ttl` guards no live entry (entries live
            // `ttl` from their write, which read the counter), so it can go.
            generations: moka::sync::Cache::builder()
                .max_capacity(MAX_GENERATIONS)
                .time_to_idle(ttl)
                .build(),
            sequence: AtomicU64::new(0),
        }
    }

    /// Bytes the entries weigh now (after pending evictions ran).
    pub async fn weighted_size(&self) -> u64 {
        self.entries.run_pending_tasks().await;
        self.entries.weighted_size()
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

/// The metric label of a namespace: its kind, the part before any `:`
/// (`sessions:<user id>` is `sessions`). Every label value is a series the
/// metrics recorder keeps for the life of the process, so a label taken
/// from a user id would grow with the users, forever.
fn metric_label(namespace: &str) -> String {
    namespace
        .split_once(':')
        .map_or(namespace, |(kind, _)| kind)
        .to_owned()
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
        metrics::counter!("cache_requests_total", "namespace" => metric_label(namespace), "result" => "hit").increment(1);
        return Ok(value);
    }
    metrics::counter!("cache_requests_total", "namespace" => metric_label(namespace), "result" => "miss").increment(1);
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
        let cache = MemoryCache::new(Duration::from_secs(60), 1 << 20);
        let load = |v: u32| move || async move { Ok::<_, ()>(v) };
        let first = read_through(&cache, "items", "a", Duration::from_secs(60), load(1)).await;
        let cached = read_through(&cache, "items", "a", Duration::from_secs(60), load(2)).await;
        assert_eq!((first, cached), (Ok(1), Ok(1)));
        cache.bump("items").await;
        let fresh = read_through(&cache, "items", "a", Duration::from_secs(60), load(3)).await;
        assert_eq!(fresh, Ok(3));
    }

    #[tokio::test]
    async fn entries_never_weigh_more_than_the_budget() {
        let budget = 64 * 1024;
        let cache = MemoryCache::new(Duration::from_secs(60), budget);
        // 200 pages of 4 KiB under client-chosen keys: 800 KiB offered.
        for page in 0..200 {
            let key = format!("items:1:public:name={page}");
            cache
                .set(&key, vec![b'x'; 4096], Duration::from_secs(60))
                .await;
        }
        let weight = cache.weighted_size().await;
        assert!(weight > 0, "the cache kept nothing");
        assert!(weight <= budget, "{weight} bytes held, budget {budget}");
    }

    #[test]
    fn metric_labels_do_not_carry_ids() {
        let user = uuid::Uuid::now_v7();
        assert_eq!(metric_label(&format!("sessions:{user}")), "sessions");
        assert_eq!(metric_label("items"), "items");
    }
}
