//! How long a poller waits before looking at a repository again.
//!
//! While the repository answers, every `poll` interval; while it does not,
//! twice as long after each failure in a row, up to [`MAX_BACKOFF`] (or the
//! interval, if that is longer). Every delay is spread by ±[`JITTER`] so
//! that a hundred repositories polled every 10 s do not all go at once,
//! and the first poll after a start comes anywhere within one interval.
//! Randomness comes in as a number, so the policy is a pure function.

use std::time::Duration;

/// The longest wait between polls of an unreachable repository, unless the
/// trigger's own interval is longer.
pub const MAX_BACKOFF: Duration = Duration::from_secs(15 * 60);

/// Each delay is spread over `delay × (1 ± JITTER)`.
pub const JITTER: f64 = 0.1;

/// The wait before the next poll, after `consecutive_failures` failed polls
/// in a row (0 after a success). `random` is any random `u64`.
pub fn next_delay(interval: Duration, consecutive_failures: u32, random: u64) -> Duration {
    let cap = MAX_BACKOFF.max(interval);
    // 2^failures, saturating: past 2^20 the cap has long been reached.
    let factor = 1u32 << consecutive_failures.min(20);
    let base = interval.saturating_mul(factor).min(cap);
    base.mul_f64(1.0 - JITTER + 2.0 * JITTER * unit(random))
}

/// The wait before a repository's first poll: anywhere within one interval.
pub fn first_delay(interval: Duration, random: u64) -> Duration {
    // In whole nanoseconds, so the delay stays below the interval.
    let nanos = (interval.as_nanos() * u128::from(random >> 11)) >> 53;
    Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
}

/// `random` as a number in [0, 1), from its top 53 bits (a double's
/// precision).
fn unit(random: u64) -> f64 {
    (random >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOW: u64 = 0;
    const MID: u64 = 1 << 63;
    const HIGH: u64 = u64::MAX;

    fn secs(delay: Duration) -> f64 {
        (delay.as_secs_f64() * 1000.0).round() / 1000.0
    }

    /// (interval s, failures, random, expected s)
    #[test]
    fn delays_double_per_failure_up_to_the_cap_with_jitter() {
        let cases: &[(u64, u32, u64, f64)] = &[
            (30, 0, MID, 30.0),
            (30, 0, LOW, 27.0),
            (30, 0, HIGH, 33.0),
            (30, 1, MID, 60.0),
            (30, 2, MID, 120.0),
            (30, 4, MID, 480.0),
            (30, 5, MID, 900.0),
            (30, 50, MID, 900.0),
            (30, u32::MAX, HIGH, 990.0),
            // An interval over the cap is never shortened by failures.
            (3600, 3, MID, 3600.0),
            (10, 0, LOW, 9.0),
        ];
        for &(interval, failures, random, expected) in cases {
            let delay = next_delay(Duration::from_secs(interval), failures, random);
            assert_eq!(
                secs(delay),
                expected,
                "{interval}s after {failures} failures"
            );
        }
    }

    #[test]
    fn the_first_poll_comes_within_one_interval() {
        let interval = Duration::from_secs(10);
        assert_eq!(first_delay(interval, LOW), Duration::ZERO);
        assert_eq!(secs(first_delay(interval, MID)), 5.0);
        assert!(first_delay(interval, HIGH) < interval);
    }
}
