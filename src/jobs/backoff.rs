//! Retry delays: exponential, capped, with jitter.

use std::time::Duration;

use rand::Rng;

/// How long to wait before attempt `n + 1` after attempt `n` failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub base: Duration,
    pub cap: Duration,
}

impl Default for Backoff {
    /// 2 s, 4 s, 8 s, … up to an hour (docs/spec.md §5.2).
    fn default() -> Self {
        Self {
            base: Duration::from_secs(2),
            cap: Duration::from_secs(3600),
        }
    }
}

impl Backoff {
    pub const fn new(base: Duration, cap: Duration) -> Self {
        Self { base, cap }
    }

    /// The nominal delay after the `attempt`-th failure (1-based):
    /// `base · 2^(attempt-1)`, at most `cap`.
    pub fn nominal(&self, attempt: i32) -> Duration {
        let exponent = u32::try_from(attempt.saturating_sub(1))
            .unwrap_or(0)
            .min(30);
        self.base.saturating_mul(1u32 << exponent).min(self.cap)
    }

    /// The nominal delay plus up to 25 % random jitter, so jobs that failed
    /// together do not retry in lockstep.
    pub fn delay(&self, attempt: i32) -> Duration {
        let nominal = self.nominal(attempt);
        let jitter_range = nominal / 4;
        let jitter = if jitter_range.is_zero() {
            Duration::ZERO
        } else {
            rand::rng().random_range(Duration::ZERO..=jitter_range)
        };
        nominal + jitter
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn delays_double_until_the_cap() {
        let backoff = Backoff::new(Duration::from_secs(2), Duration::from_secs(10));
        let nominal: Vec<u64> = (1..=5).map(|a| backoff.nominal(a).as_secs()).collect();
        assert_eq!(nominal, [2, 4, 8, 10, 10]);
    }

    proptest! {
        #[test]
        fn a_delay_stays_within_its_jitter_band(attempt in 1i32..100, base_ms in 1u64..10_000) {
            let backoff = Backoff::new(Duration::from_millis(base_ms), Duration::from_secs(3600));
            let nominal = backoff.nominal(attempt);
            let delay = backoff.delay(attempt);
            prop_assert!(delay >= nominal && delay <= nominal + nominal / 4);
        }
    }
}
