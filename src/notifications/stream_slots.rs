//! Caps on open notification streams: per user and per process.
//!
//! Each stream holds a task, a broadcast receiver and a connection for as
//! long as its client stays, so streams are counted: at most
//! `SSE_MAX_PER_USER` per user and `SSE_MAX_STREAMS` in all, in this process
//! (a user's streams on other API processes count there).
//!
//! The stream one too many is **refused**, not let in by closing the oldest:
//! 429 `too_many_streams` for the user's cap, 503 `streams_unavailable` (with
//! `Retry-After`) for the process's. Closing the oldest would let the new
//! stream in, but `EventSource` reconnects by itself when a stream ends, so
//! six tabs of one user would take turns closing each other for ever; a
//! refusal is final for that `EventSource` and visible in the network log.
//! The number of open streams is the `sse_streams_open` gauge.

use std::{collections::HashMap, sync::Arc};

use axum::http::StatusCode;
use tokio::sync::{Mutex, OwnedSemaphorePermit, Semaphore};
use uuid::Uuid;

use crate::http::error::ApiError;

/// How long a client refused for the process cap is asked to wait.
const RETRY_AFTER: std::time::Duration = std::time::Duration::from_secs(5);

#[derive(Clone)]
pub struct StreamSlots {
    per_user: usize,
    capacity: usize,
    total: Arc<Semaphore>,
    /// One semaphore per user with open streams; entries whose permits are
    /// all back are removed when the next stream opens.
    users: Arc<Mutex<HashMap<Uuid, Arc<Semaphore>>>>,
}

/// Why a stream was not opened.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum StreamRefused {
    #[error("the user has {0} streams open")]
    TooManyForUser(usize),
    #[error("the process has every stream slot in use")]
    ProcessFull,
}

impl From<StreamRefused> for ApiError {
    fn from(refused: StreamRefused) -> Self {
        match refused {
            StreamRefused::TooManyForUser(limit) => {
                Self::new(StatusCode::TOO_MANY_REQUESTS, "too_many_streams").with("limit", limit)
            }
            StreamRefused::ProcessFull => {
                Self::new(StatusCode::SERVICE_UNAVAILABLE, "streams_unavailable")
                    .with_retry_after(RETRY_AFTER)
            }
        }
    }
}

/// One open stream's place; dropping it frees the place.
pub struct StreamSlot {
    _user: OwnedSemaphorePermit,
    _total: OwnedSemaphorePermit,
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        metrics::gauge!("sse_streams_open").decrement(1.0);
    }
}

impl StreamSlots {
    pub fn new(per_user: usize, total: usize) -> Self {
        Self {
            per_user,
            capacity: total,
            total: Arc::new(Semaphore::new(total)),
            users: Arc::default(),
        }
    }

    /// A place for one more stream of `user`, if both caps allow it.
    pub async fn open(&self, user: Uuid) -> Result<StreamSlot, StreamRefused> {
        let user_permit = {
            let mut users = self.users.lock().await;
            // Forget users whose streams have all ended. A permit is only
            // taken under this lock, so a semaphore removed here has no
            // stream left and gets none later.
            users.retain(|_, slots| slots.available_permits() < self.per_user);
            let slots = users
                .entry(user)
                .or_insert_with(|| Arc::new(Semaphore::new(self.per_user)));
            Arc::clone(slots)
                .try_acquire_owned()
                .map_err(|_| StreamRefused::TooManyForUser(self.per_user))?
        };
        let total_permit = Arc::clone(&self.total)
            .try_acquire_owned()
            .map_err(|_| StreamRefused::ProcessFull)?;
        metrics::gauge!("sse_streams_open").increment(1.0);
        Ok(StreamSlot {
            _user: user_permit,
            _total: total_permit,
        })
    }

    /// Streams open in this process.
    pub fn open_streams(&self) -> usize {
        self.capacity - self.total.available_permits()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_user_gets_up_to_the_cap_and_a_place_again_when_one_ends() {
        let slots = StreamSlots::new(2, 10);
        let user = Uuid::new_v4();
        let first = slots.open(user).await.unwrap();
        let _second = slots.open(user).await.unwrap();
        assert_eq!(
            slots.open(user).await.err(),
            Some(StreamRefused::TooManyForUser(2))
        );
        // Another user is not affected.
        let _other = slots.open(Uuid::new_v4()).await.unwrap();
        assert_eq!(slots.open_streams(), 3);
        drop(first);
        assert!(slots.open(user).await.is_ok());
    }

    #[tokio::test]
    async fn the_process_cap_counts_every_user() {
        let slots = StreamSlots::new(5, 2);
        let _a = slots.open(Uuid::new_v4()).await.unwrap();
        let b = slots.open(Uuid::new_v4()).await.unwrap();
        let refused_user = Uuid::new_v4();
        assert_eq!(
            slots.open(refused_user).await.err(),
            Some(StreamRefused::ProcessFull)
        );
        drop(b);
        // The refusal took none of the user's places.
        assert!(slots.open(refused_user).await.is_ok());
    }

    #[tokio::test]
    async fn users_without_streams_are_forgotten() {
        let slots = StreamSlots::new(1, 10);
        for _ in 0..100 {
            drop(slots.open(Uuid::new_v4()).await.unwrap());
        }
        let _open = slots.open(Uuid::new_v4()).await.unwrap();
        assert_eq!(slots.users.lock().await.len(), 1);
    }
}
