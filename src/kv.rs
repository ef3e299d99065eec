//! The Redis connection shared by the cache, rate limits, locks and session
//! revocation. Optional: without `REDIS_URL` each of those uses its in-process
//! implementation.
//!
//! `ConnectionManager` multiplexes one connection and reconnects by itself; it
//! is created lazily so the service starts (degraded, and not ready) while
//! Redis is down. Short timeouts keep a Redis outage from stalling requests:
//! callers treat a Redis error as "no answer" and fall back to the database.

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use secrecy::{ExposeSecret, SecretString};

#[derive(Clone)]
pub struct Kv {
    connection: ConnectionManager,
    prefix: String,
}

impl std::fmt::Debug for Kv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kv")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl Kv {
    pub fn connect(url: &SecretString, prefix: &str) -> redis::RedisResult<Self> {
        let client = redis::Client::open(url.expose_secret())?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_millis(500)))
            .set_response_timeout(Some(Duration::from_millis(500)))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_secs(2));
        let connection = ConnectionManager::new_lazy_with_config(client, config)?;
        Ok(Self {
            connection,
            prefix: prefix.to_owned(),
        })
    }

    /// A handle for commands (cheap: it shares the multiplexed connection).
    pub fn connection(&self) -> ConnectionManager {
        self.connection.clone()
    }

    /// `name` under this deployment's prefix.
    pub fn key(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    pub async fn ping(&self) -> redis::RedisResult<()> {
        let mut connection = self.connection();
        redis::cmd("PING")
            .query_async::<String>(&mut connection)
            .await
            .map(|_| ())
    }
}
