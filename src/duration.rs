//! Durations: `std::time::Duration` (configuration, timers) to
//! `chrono::TimeDelta` (timestamps stored in the database).
//!
//! The policy: a conversion never fails and never silently picks some other
//! value. Every duration that reaches
//! [`to_delta`](crate::duration::to_delta) is either a constant of the code
//! or a setting that start-up has checked to be at most
//! [`MAX`](crate::duration::MAX) (`config` refuses longer ones), and that
//! maximum is far inside both `TimeDelta`'s range and the range in which
//! `now ± delta` stays a valid timestamp. So the one guard below, a
//! saturation at the maximum, is never reached in practice; it is there so
//! that a bug (a computed duration out of bounds) yields a far-away deadline
//! instead of a panic on a request path.

use std::time::Duration;

use chrono::TimeDelta;

/// The longest duration Dispatch works with: 100 years of 365.25 days.
pub const MAX: Duration = Duration::from_secs(36_525 * 24 * 60 * 60);

/// [`MAX`] as a `TimeDelta`, computed at compile time (a panic here would be
/// a build error, not a run-time one).
const MAX_DELTA: TimeDelta = TimeDelta::days(36_525);

/// `duration` as a `TimeDelta`, saturating at [`MAX`] (see the module doc for
/// why that cannot happen with validated settings).
pub fn to_delta(duration: Duration) -> TimeDelta {
    if duration >= MAX {
        return MAX_DELTA;
    }
    TimeDelta::from_std(duration).unwrap_or(MAX_DELTA)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_convert_exactly_below_the_maximum() {
        assert_eq!(
            to_delta(Duration::from_millis(1500)),
            TimeDelta::milliseconds(1500)
        );
        assert_eq!(to_delta(Duration::ZERO), TimeDelta::zero());
        assert_eq!(
            to_delta(MAX - Duration::from_secs(1)),
            MAX_DELTA - TimeDelta::seconds(1)
        );
    }

    #[test]
    fn longer_durations_saturate_at_the_maximum_and_stay_addable_to_now() {
        assert_eq!(to_delta(MAX), MAX_DELTA);
        assert_eq!(to_delta(Duration::MAX), MAX_DELTA);
        assert_eq!(MAX_DELTA.to_std().ok(), Some(MAX));
        assert!(crate::db::now().checked_add_signed(MAX_DELTA).is_some());
        assert!(crate::db::now().checked_sub_signed(MAX_DELTA).is_some());
    }
}
