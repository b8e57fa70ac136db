//! gantry's clock, read in one place.
//!
//! gantry reads two kinds of time. The *wall clock* says when something
//! happened: events, database rows, audit entries and log lines carry Unix
//! milliseconds from [`now_ms`] (or a [`SystemTime`] from [`now`] where a
//! file's mtime or a finer stamp is compared). *Durations and deadlines*
//! (timeouts, backoff, health-check intervals, "how long did this take") are
//! measured with [`Instant`], which is tokio's: under `tokio::time::pause()` it
//! stands still until `advance()` moves it, so a test walks through a 7-day
//! approval timeout in microseconds. Waiting is `tokio::time::sleep`; a thread
//! with no runtime (a reaper thread, a sync test helper, a sync benchmark)
//! waits with [`blocking_sleep`], or polls for a condition with
//! [`blocking_poll`] rather than sleeping a fixed time.
//!
//! The workspace's `clippy.toml` bans `std::time::Instant::now`,
//! `std::time::SystemTime::now`, `jiff::Timestamp::now` and
//! `std::thread::sleep`; this crate is the only place that calls them. The
//! wall clock is not mocked here: code whose recorded times must be
//! deterministic in tests takes the time as an argument (the engine's events
//! carry their time, the auth store takes `now_ms`) or a clock of its own
//! (the parameter store's `Clock`). `spec` and `engine` don't depend on this
//! crate: they read no clock at all.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The monotonic clock for durations and deadlines: tokio's, so a paused
/// test runtime drives it. Outside a runtime it reads the OS's monotonic
/// clock, like `std::time::Instant`.
pub use tokio::time::Instant;

/// The wall clock, as Unix time in milliseconds (what events, rows and the
/// API carry). Before 1970 reads as 0; past `i64::MAX` ms saturates.
pub fn now_ms() -> i64 {
    unix_ms(now())
}

/// The wall clock as a [`SystemTime`], for comparing with file times and for
/// stamps finer than a millisecond.
#[allow(clippy::disallowed_methods)] // The one wall-clock read of the workspace.
pub fn now() -> SystemTime {
    SystemTime::now()
}

/// Unix milliseconds of `at`; 0 before 1970, saturating far in the future.
pub fn unix_ms(at: SystemTime) -> i64 {
    at.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Blocks this thread for `duration`. Only for threads that have no tokio
/// runtime to wait on: async code waits with `tokio::time::sleep`, which a
/// paused test clock can skip and which doesn't stall other tasks.
#[allow(clippy::disallowed_methods)] // The one blocking sleep of the workspace.
pub fn blocking_sleep(duration: Duration) {
    std::thread::sleep(duration);
}

/// Calls `ready` every `every` until it gives an answer or `within` has
/// passed, blocking this thread; `None` if time ran out. The deadline is
/// real time, not tokio's: a blocked thread cannot let a paused test clock
/// advance, so a tokio deadline could never pass here. For threads without a
/// runtime, like [`blocking_sleep`]; async code polls with `tokio::time`.
#[allow(clippy::disallowed_methods)] // Real time on purpose, see above.
pub fn blocking_poll<T>(
    within: Duration,
    every: Duration,
    mut ready: impl FnMut() -> Option<T>,
) -> Option<T> {
    let deadline = std::time::Instant::now() + within;
    loop {
        if let Some(answer) = ready() {
            return Some(answer);
        }
        if std::time::Instant::now() >= deadline {
            return None;
        }
        blocking_sleep(every);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unix_ms_counts_from_1970_and_clamps_before_it() {
        assert_eq!(unix_ms(UNIX_EPOCH), 0);
        assert_eq!(
            unix_ms(UNIX_EPOCH + Duration::from_millis(1_700_000_000_123)),
            1_700_000_000_123
        );
        assert_eq!(unix_ms(UNIX_EPOCH - Duration::from_secs(1)), 0);
    }

    #[test]
    fn now_ms_is_after_2020() {
        assert!(now_ms() > 1_577_836_800_000);
    }

    #[test]
    fn blocking_poll_answers_when_ready_and_gives_up_at_its_deadline() {
        let mut calls = 0;
        let answer = blocking_poll(Duration::from_secs(10), Duration::from_millis(1), || {
            calls += 1;
            (calls == 3).then_some(calls)
        });
        assert_eq!(answer, Some(3));
        let never: Option<()> =
            blocking_poll(Duration::from_millis(20), Duration::from_millis(5), || None);
        assert_eq!(never, None);
    }

    #[tokio::test(start_paused = true)]
    async fn instant_is_the_clock_a_paused_runtime_drives() {
        let start = Instant::now();
        tokio::time::advance(Duration::from_secs(7 * 86_400)).await;
        assert_eq!(start.elapsed(), Duration::from_secs(7 * 86_400));
    }
}
