//! The clock that decides due-ness and deadlines: when a job is due, when a
//! lease has run out, when a retry may run, when an unpaid order expires and
//! what retention deletes.
//!
//! Production uses the real clock ([`Clock::real`], exactly [`super::now`]).
//! Tests use [`Clock::manual`]: real time plus an offset the test moves
//! forward with [`Clock::advance`], so a test of a 15-minute payment timeout
//! or a retry backoff jumps over the wait instead of sleeping through it.
//! Time keeps flowing between advances (leases, heartbeats and polls, which
//! measure intervals with the runtime's timer, keep working), and it never
//! goes back.

use std::{
    sync::{
        Arc,
        atomic::{AtomicI64, Ordering},
    },
    time::Duration,
};

use chrono::{DateTime, Utc};
use tokio::sync::Notify;

/// Cheap to clone; clones share the offset.
#[derive(Clone, Debug, Default)]
pub struct Clock {
    manual: Option<Arc<Manual>>,
}

#[derive(Debug, Default)]
struct Manual {
    /// Microseconds ahead of real time.
    offset_us: AtomicI64,
    /// Woken by each advance, so that loops waiting for a due time look again.
    advanced: Notify,
}

impl Clock {
    /// The real time.
    pub fn real() -> Self {
        Self::default()
    }

    /// Real time plus an offset that [`Clock::advance`] moves (tests).
    pub fn manual() -> Self {
        Self {
            manual: Some(Arc::default()),
        }
    }

    /// Now, in microseconds, as stored (see [`super::now`]).
    pub fn now(&self) -> DateTime<Utc> {
        let now = super::now();
        match &self.manual {
            Some(manual) => {
                now + chrono::Duration::microseconds(manual.offset_us.load(Ordering::Acquire))
            }
            None => now,
        }
    }

    /// Moves a manual clock forward by `by` and wakes whatever waits for a
    /// due time. Does nothing to the real clock.
    pub fn advance(&self, by: Duration) {
        if let Some(manual) = &self.manual {
            let us = i64::try_from(by.as_micros()).unwrap_or(i64::MAX);
            manual.offset_us.fetch_add(us, Ordering::AcqRel);
            manual.advanced.notify_waiters();
        }
    }

    /// Completes when a manual clock is advanced; never for the real clock.
    pub async fn advanced(&self) {
        match &self.manual {
            Some(manual) => manual.advanced.notified().await,
            None => std::future::pending().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_moves_forward_by_what_it_is_told_and_the_real_one_does_not() {
        let manual = Clock::manual();
        let before = manual.now();
        manual.advance(Duration::from_secs(3600));
        assert!(manual.now() - before >= chrono::Duration::hours(1));
        let real = Clock::real();
        real.advance(Duration::from_secs(3600));
        assert!(real.now() - super::super::now() < chrono::Duration::minutes(1));
    }
}
