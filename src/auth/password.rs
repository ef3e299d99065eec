//! Password hashing with argon2id, off the async runtime, within a
//! process-wide budget.
//!
//! Why a budget: one argon2id hash holds its memory cost (19 MiB by default)
//! for its whole run, and every sign-in, registration and `currentPassword`
//! check runs one. Unbounded, 64 concurrent guesses took a process from
//! 69 MiB to 765 MiB and filled the blocking pool. [`HashBudget`] lets
//! `PASSWORD_HASH_CONCURRENCY` hashes run at once; up to
//! `PASSWORD_HASH_QUEUE` more wait for a turn, each at most
//! `PASSWORD_HASH_WAIT`; anything beyond is refused at once with
//! [`PasswordError::Busy`] (503 `server_busy` with `Retry-After`). So the
//! memory hashing can take is bounded by concurrency × memory cost, and
//! requests that hash nothing (orders, reads) never wait behind a flood:
//! they use neither the budget nor the blocking threads it keeps free.

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use argon2::{
    Algorithm, Argon2, Params, Version,
    password_hash::{PasswordHasher as _, PasswordVerifier as _, phc::PasswordHash},
};
use axum::http::StatusCode;
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::http::error::ApiError;

#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    #[error("password hashing failed: {0}")]
    Hashing(String),
    #[error("password hashing task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    /// Every turn is taken and the queue is full, or the wait ran out.
    #[error("too many password checks at once; retry after {retry_after:?}")]
    Busy { retry_after: Duration },
}

impl From<PasswordError> for ApiError {
    fn from(err: PasswordError) -> Self {
        match err {
            PasswordError::Busy { retry_after } => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "server_busy")
                    .with_retry_after(retry_after)
            }
            PasswordError::Hashing(_) | PasswordError::Task(_) => ApiError::internal(&err),
        }
    }
}

/// How many hashes may run and wait at once. See the module documentation.
#[derive(Debug, Clone, Copy)]
pub struct HashLimits {
    pub concurrency: usize,
    pub queue: usize,
    pub wait: Duration,
}

/// The process's turns at hashing, and what tests and metrics read of them.
#[derive(Debug)]
pub struct HashBudget {
    limits: HashLimits,
    /// One permit per hash allowed to run.
    running: Arc<Semaphore>,
    /// One permit per caller admitted (running or waiting): `concurrency +
    /// queue`. Taken without waiting, so a full queue answers at once.
    admitted: Arc<Semaphore>,
    in_flight: AtomicUsize,
    most_in_flight: AtomicUsize,
}

/// A turn at hashing; dropping it (when the blocking work ends) gives it back.
struct Turn {
    _running: OwnedSemaphorePermit,
    _admitted: OwnedSemaphorePermit,
    budget: Arc<HashBudget>,
}

/// Every turn, held by a test (see [`HashBudget::occupy_all`]).
#[doc(hidden)]
pub struct Occupied {
    _running: OwnedSemaphorePermit,
    _admitted: OwnedSemaphorePermit,
}

impl Drop for Turn {
    fn drop(&mut self) {
        let now = self.budget.in_flight.fetch_sub(1, Ordering::AcqRel) - 1;
        gauge(now);
    }
}

#[expect(
    clippy::cast_precision_loss,
    reason = "a count of running hashes is far below 2^52"
)]
fn gauge(in_flight: usize) {
    metrics::gauge!("password_hashes_in_flight").set(in_flight as f64);
}

impl HashBudget {
    pub fn new(limits: HashLimits) -> Self {
        let concurrency = limits.concurrency.max(1);
        Self {
            limits,
            running: Arc::new(Semaphore::new(concurrency)),
            admitted: Arc::new(Semaphore::new(concurrency.saturating_add(limits.queue))),
            in_flight: AtomicUsize::new(0),
            most_in_flight: AtomicUsize::new(0),
        }
    }

    /// The most hashes that ever ran at once in this process (a test hook:
    /// tests assert it never passed the limit).
    pub fn most_in_flight(&self) -> usize {
        self.most_in_flight.load(Ordering::Acquire)
    }

    pub fn limits(&self) -> HashLimits {
        self.limits
    }

    fn busy(&self, reason: &'static str) -> PasswordError {
        metrics::counter!("password_hash_refusals_total", "reason" => reason).increment(1);
        // Retry once a full queue has had time to drain.
        let retry_after = self.limits.wait.max(Duration::from_secs(1));
        PasswordError::Busy { retry_after }
    }

    /// Waits for a turn, or refuses: at once when the queue is full, after
    /// `wait` when no turn came.
    async fn turn(self: &Arc<Self>) -> Result<Turn, PasswordError> {
        let Ok(admitted) = Arc::clone(&self.admitted).try_acquire_owned() else {
            return Err(self.busy("queue_full"));
        };
        let running = Arc::clone(&self.running);
        // The semaphore is never closed; were it, that is refused like a timeout.
        let Ok(Ok(permit)) = tokio::time::timeout(self.limits.wait, running.acquire_owned()).await
        else {
            return Err(self.busy("timeout"));
        };
        let now = self.in_flight.fetch_add(1, Ordering::AcqRel) + 1;
        self.most_in_flight.fetch_max(now, Ordering::AcqRel);
        gauge(now);
        Ok(Turn {
            _running: permit,
            _admitted: admitted,
            budget: Arc::clone(self),
        })
    }

    /// Takes every turn until the guard is dropped, so the next check waits
    /// and then gets `Busy`. For tests of the refusal; `None` if a turn is
    /// in use.
    #[doc(hidden)]
    pub fn occupy_all(&self) -> Option<Occupied> {
        let all = u32::try_from(self.limits.concurrency.max(1)).ok()?;
        Some(Occupied {
            _running: Arc::clone(&self.running).try_acquire_many_owned(all).ok()?,
            _admitted: Arc::clone(&self.admitted)
                .try_acquire_many_owned(all)
                .ok()?,
        })
    }
}

/// Hashes and verifies passwords. Hashing costs tens of milliseconds of CPU
/// and the memory cost by design, so it runs on the blocking pool, one
/// [`HashBudget`] turn per hash.
#[derive(Debug, Clone)]
pub struct PasswordHasher {
    params: Params,
    budget: Arc<HashBudget>,
    /// A hash of a random password, verified when the email is unknown so an
    /// unknown account takes as long to refuse as a wrong password.
    decoy: Arc<tokio::sync::OnceCell<String>>,
}

impl PasswordHasher {
    pub fn new(memory_kib: u32, limits: HashLimits) -> Result<Self, PasswordError> {
        let params = Params::new(memory_kib, 2, 1, None)
            .map_err(|e| PasswordError::Hashing(e.to_string()))?;
        Ok(Self {
            params,
            budget: Arc::new(HashBudget::new(limits)),
            decoy: Arc::default(),
        })
    }

    pub fn budget(&self) -> &HashBudget {
        &self.budget
    }

    /// Runs `work` on the blocking pool within a turn. The turn moves into
    /// the blocking task, so a caller that gives up (client gone, request
    /// timeout) does not free it before the hash really ends.
    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, PasswordError> {
        let turn = self.budget.turn().await?;
        Ok(tokio::task::spawn_blocking(move || {
            let result = work();
            drop(turn);
            result
        })
        .await?)
    }

    fn argon2(params: Params) -> Argon2<'static> {
        Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
    }

    pub async fn hash(&self, password: &SecretString) -> Result<String, PasswordError> {
        let params = self.params.clone();
        let password = password.clone();
        self.run(move || {
            Self::argon2(params)
                .hash_password(password.expose_secret().as_bytes())
                .map(|h| h.to_string())
                .map_err(|e| PasswordError::Hashing(e.to_string()))
        })
        .await?
    }

    /// Whether `password` matches `stored`. With no stored hash (unknown
    /// account) it checks a decoy and answers false, taking the same time.
    pub async fn verify(
        &self,
        password: &SecretString,
        stored: Option<String>,
    ) -> Result<bool, PasswordError> {
        let (stored, known) = match stored {
            Some(hash) => (hash, true),
            None => (self.decoy_hash().await?, false),
        };
        let params = self.params.clone();
        let password = password.clone();
        let matches = self
            .run(move || {
                PasswordHash::new(&stored).is_ok_and(|parsed| {
                    Self::argon2(params)
                        .verify_password(password.expose_secret().as_bytes(), &parsed)
                        .is_ok()
                })
            })
            .await?;
        Ok(known && matches)
    }

    async fn decoy_hash(&self) -> Result<String, PasswordError> {
        self.decoy
            .get_or_try_init(|| async {
                let random = SecretString::from(crate::db::new_id().to_string());
                self.hash(&random).await
            })
            .await
            .cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(concurrency: usize, queue: usize, wait: Duration) -> HashLimits {
        HashLimits {
            concurrency,
            queue,
            wait,
        }
    }

    #[tokio::test]
    async fn a_hash_verifies_only_its_own_password() {
        let hasher = PasswordHasher::new(64, limits(2, 4, Duration::from_secs(5))).unwrap();
        let hash = hasher
            .hash(&SecretString::from("correct horse"))
            .await
            .unwrap();
        assert!(hash.starts_with("$argon2id$"));
        assert!(
            hasher
                .verify(&SecretString::from("correct horse"), Some(hash.clone()))
                .await
                .unwrap()
        );
        assert!(
            !hasher
                .verify(&SecretString::from("wrong horse"), Some(hash))
                .await
                .unwrap()
        );
        assert!(
            !hasher
                .verify(&SecretString::from("correct horse"), None)
                .await
                .unwrap()
        );
    }

    #[tokio::test]
    async fn no_more_hashes_run_at_once_than_the_budget_allows() {
        let hasher = PasswordHasher::new(64, limits(2, 64, Duration::from_secs(30))).unwrap();
        let checks = (0..40).map(|i| {
            let hasher = hasher.clone();
            tokio::spawn(async move { hasher.hash(&SecretString::from(format!("pw {i}"))).await })
        });
        for check in futures::future::join_all(checks).await {
            check.unwrap().unwrap();
        }
        assert!(hasher.budget().most_in_flight() >= 1);
        assert!(hasher.budget().most_in_flight() <= 2);
    }

    #[tokio::test]
    async fn a_full_budget_refuses_after_the_wait_and_a_full_queue_at_once() {
        let hasher = PasswordHasher::new(64, limits(1, 1, Duration::from_millis(20))).unwrap();
        let held = hasher.budget().occupy_all().expect("the budget is idle");
        // The one queue place: waits, then gives up.
        let waited = hasher.hash(&SecretString::from("pw")).await.unwrap_err();
        assert!(
            matches!(waited, PasswordError::Busy { retry_after } if retry_after >= Duration::from_secs(1))
        );
        // With the queue place taken by a waiter, the next is refused at once.
        let slow = limits(1, 1, Duration::from_secs(3600));
        let hasher = PasswordHasher::new(64, slow).unwrap();
        let _held = hasher.budget().occupy_all().expect("the budget is idle");
        let waiter = {
            let hasher = hasher.clone();
            tokio::spawn(async move { hasher.hash(&SecretString::from("pw")).await })
        };
        while hasher.budget().admitted.available_permits() > 0 {
            tokio::task::yield_now().await;
        }
        let refused = hasher.hash(&SecretString::from("pw")).await.unwrap_err();
        assert!(matches!(refused, PasswordError::Busy { .. }));
        waiter.abort();
        drop(held);
    }
}
