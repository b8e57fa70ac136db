//! Request statistics: cumulative counters per target, for Prometheus, and a
//! sliding window per revision of a target group, for canary analysis.
//!
//! Every attempt to send a request to a target is recorded once, by the
//! request's task, when the target's response head arrives or the attempt
//! fails: an idempotent request retried on a second target counts one
//! failed attempt for the first and one outcome for the second. Latency is
//! the time from sending to the response head (time to first byte, as ALB's
//! `target_processing_time` roughly is); it is recorded for answered
//! attempts only, since a failure's duration says how long a connect or
//! timeout took rather than how fast the target serves.
//!
//! The cost on the request path is two clock reads, a few relaxed atomic
//! adds on the target's counters and one short uncontended lock of the
//! revision's window. The window is a ring of one-second slots, each with a
//! small fixed latency histogram, so reading it costs the same whatever the
//! request rate.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

/// Upper bounds, in seconds, of the latency histogram buckets; a last
/// bucket (`+Inf`) takes the rest. Both the Prometheus histogram and the
/// window's p99 use them.
pub const LATENCY_BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Buckets including `+Inf`.
const BUCKETS: usize = LATENCY_BUCKETS.len() + 1;

/// The longest window [`crate::TargetGroup::window_stats`] covers; a longer
/// one is cut to this.
pub const MAX_WINDOW: Duration = Duration::from_secs(SLOTS as u64);

const SLOTS: usize = 300;

/// What became of one attempt to send a request to a target.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// The target sent a response head with this status.
    Answered(u16),
    /// Refused, reset, closed without answering or answered garbage: the
    /// client got a 502 unless a retry succeeded.
    ConnectionFailed,
    /// No response head within the upstream timeout: the client got a 504.
    TimedOut,
}

/// An attempt's outcome as the metrics count it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum OutcomeClass {
    Informational,
    Success,
    Redirection,
    ClientError,
    ServerError,
    ConnectionFailure,
    Timeout,
}

impl OutcomeClass {
    /// Every class, in the order of [`TargetStats::outcomes`].
    pub const ALL: [Self; 7] = [
        Self::Informational,
        Self::Success,
        Self::Redirection,
        Self::ClientError,
        Self::ServerError,
        Self::ConnectionFailure,
        Self::Timeout,
    ];

    /// The metric label: `1xx` … `5xx`, `connection_failure`, `timeout`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Informational => "1xx",
            Self::Success => "2xx",
            Self::Redirection => "3xx",
            Self::ClientError => "4xx",
            Self::ServerError => "5xx",
            Self::ConnectionFailure => "connection_failure",
            Self::Timeout => "timeout",
        }
    }

    fn of(outcome: Outcome) -> Self {
        match outcome {
            Outcome::Answered(status) => match status {
                ..200 => Self::Informational,
                200..300 => Self::Success,
                300..400 => Self::Redirection,
                400..500 => Self::ClientError,
                _ => Self::ServerError,
            },
            Outcome::ConnectionFailed => Self::ConnectionFailure,
            Outcome::TimedOut => Self::Timeout,
        }
    }
}

/// A latency histogram: counts per bucket of [`LATENCY_BUCKETS`] (not
/// cumulative; the last is `+Inf`), their sum and their count.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LatencyHistogram {
    pub buckets: [u64; BUCKETS],
    pub sum: Duration,
    pub count: u64,
}

/// Cumulative counters of one target since its registration.
#[derive(Default)]
pub(crate) struct TargetCounters {
    outcomes: [AtomicU64; OutcomeClass::ALL.len()],
    latency: [AtomicU64; BUCKETS],
    latency_sum_micros: AtomicU64,
}

impl TargetCounters {
    fn record(&self, outcome: Outcome, latency: Duration) {
        self.outcomes[OutcomeClass::of(outcome) as usize].fetch_add(1, Relaxed);
        if matches!(outcome, Outcome::Answered(_)) {
            self.latency[bucket_of(latency)].fetch_add(1, Relaxed);
            self.latency_sum_micros.fetch_add(micros(latency), Relaxed);
        }
    }

    pub(crate) fn outcomes(&self) -> [u64; OutcomeClass::ALL.len()] {
        std::array::from_fn(|i| self.outcomes[i].load(Relaxed))
    }

    pub(crate) fn latency(&self) -> LatencyHistogram {
        let buckets: [u64; BUCKETS] = std::array::from_fn(|i| self.latency[i].load(Relaxed));
        LatencyHistogram {
            buckets,
            sum: Duration::from_micros(self.latency_sum_micros.load(Relaxed)),
            count: buckets.iter().sum(),
        }
    }
}

/// Records one attempt on both the target's counters and its revision's
/// window.
pub(crate) fn record(
    counters: &TargetCounters,
    window: &RevisionWindow,
    outcome: Outcome,
    started: Instant,
) {
    let now = Instant::now();
    let latency = now.saturating_duration_since(started);
    counters.record(outcome, latency);
    window.record(now, outcome, latency);
}

/// One revision's requests over the last seconds.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct WindowStats {
    /// Attempts sent to the revision's targets, whatever their outcome.
    pub requests: u64,
    /// Attempts answered with a 5xx status by the target itself.
    pub server_errors: u64,
    /// Attempts that failed at the connection level (a 502 from the proxy
    /// unless a retry elsewhere succeeded).
    pub connection_failures: u64,
    /// Attempts that got no response head within the upstream timeout.
    pub timeouts: u64,
    /// `(server_errors + connection_failures + timeouts) / requests`; 0
    /// without requests.
    pub error_rate: f64,
    /// The 99th percentile of answered attempts' latency, `None` without
    /// any. It is the upper bound of the histogram bucket holding the 99th
    /// percentile (at most 2.5 times the true value, see
    /// [`LATENCY_BUCKETS`]), capped by the slowest latency seen, so it
    /// never under-reports and is exact when the slowest requests are the
    /// 1%.
    pub p99_latency: Option<Duration>,
}

/// A ring of one-second slots: slot `s % SLOTS` holds second `s` (counted
/// from `origin`) until a later second reuses it.
pub(crate) struct RevisionWindow {
    origin: Instant,
    slots: Mutex<Box<[Slot]>>,
}

#[derive(Clone, Copy, Default)]
struct Slot {
    second: u64,
    requests: u64,
    server_errors: u64,
    connection_failures: u64,
    timeouts: u64,
    latency: [u32; BUCKETS],
    max_latency_micros: u64,
}

impl RevisionWindow {
    pub(crate) fn new(origin: Instant) -> Self {
        Self {
            origin,
            slots: Mutex::new(vec![Slot::default(); SLOTS].into_boxed_slice()),
        }
    }

    fn second(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.origin).as_secs()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Box<[Slot]>> {
        self.slots.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn record(&self, at: Instant, outcome: Outcome, latency: Duration) {
        let second = self.second(at);
        let mut slots = self.lock();
        let slot = &mut slots[slot_index(second)];
        if slot.second != second {
            *slot = Slot {
                second,
                ..Slot::default()
            };
        }
        slot.requests += 1;
        match OutcomeClass::of(outcome) {
            OutcomeClass::ServerError => slot.server_errors += 1,
            OutcomeClass::ConnectionFailure => slot.connection_failures += 1,
            OutcomeClass::Timeout => slot.timeouts += 1,
            _ => {}
        }
        if matches!(outcome, Outcome::Answered(_)) {
            let bucket = &mut slot.latency[bucket_of(latency)];
            *bucket = bucket.saturating_add(1);
            slot.max_latency_micros = slot.max_latency_micros.max(micros(latency));
        }
    }

    /// The seconds ending with the one `now` is in, `window` of them
    /// (rounded up, at least one, at most [`MAX_WINDOW`]'s): the window's
    /// start is thus exact to within the current second.
    pub(crate) fn stats(&self, now: Instant, window: Duration) -> WindowStats {
        let current = self.second(now);
        let seconds = window
            .as_secs()
            .saturating_add(u64::from(window.subsec_nanos() > 0))
            .clamp(1, SLOTS as u64);
        let first = current.saturating_sub(seconds - 1);
        let mut total = Slot::default();
        for slot in self.lock().iter() {
            if slot.second < first || slot.second > current {
                continue;
            }
            total.requests += slot.requests;
            total.server_errors += slot.server_errors;
            total.connection_failures += slot.connection_failures;
            total.timeouts += slot.timeouts;
            for (sum, n) in total.latency.iter_mut().zip(slot.latency) {
                *sum = sum.saturating_add(n);
            }
            total.max_latency_micros = total.max_latency_micros.max(slot.max_latency_micros);
        }
        let failed = total.server_errors + total.connection_failures + total.timeouts;
        WindowStats {
            requests: total.requests,
            server_errors: total.server_errors,
            connection_failures: total.connection_failures,
            timeouts: total.timeouts,
            error_rate: if total.requests == 0 {
                0.0
            } else {
                failed as f64 / total.requests as f64
            },
            p99_latency: p99(&total.latency, total.max_latency_micros),
        }
    }

    /// True when nothing was recorded in the last [`MAX_WINDOW`], so a
    /// revision without targets can be forgotten.
    pub(crate) fn is_idle(&self, now: Instant) -> bool {
        let current = self.second(now);
        let newest = self.lock().iter().map(|s| s.second).max().unwrap_or(0);
        newest + (SLOTS as u64) < current
    }
}

fn slot_index(second: u64) -> usize {
    // SLOTS fits in u64 and the remainder in usize.
    (second % SLOTS as u64) as usize
}

fn micros(latency: Duration) -> u64 {
    u64::try_from(latency.as_micros()).unwrap_or(u64::MAX)
}

fn bucket_of(latency: Duration) -> usize {
    let seconds = latency.as_secs_f64();
    LATENCY_BUCKETS
        .iter()
        .position(|&bound| seconds <= bound)
        .unwrap_or(LATENCY_BUCKETS.len())
}

fn p99(buckets: &[u32; BUCKETS], max_micros: u64) -> Option<Duration> {
    let count: u64 = buckets.iter().map(|&n| u64::from(n)).sum();
    if count == 0 {
        return None;
    }
    // The rank of the 99th percentile, rounded up: with 100 requests, the
    // 99th slowest.
    let rank = count.saturating_mul(99).div_ceil(100).max(1);
    let max = Duration::from_micros(max_micros);
    let mut seen = 0u64;
    for (i, &n) in buckets.iter().enumerate() {
        seen += u64::from(n);
        if seen >= rank {
            return Some(match LATENCY_BUCKETS.get(i) {
                Some(&bound) => Duration::from_secs_f64(bound).min(max),
                None => max,
            });
        }
    }
    Some(max)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// Instants are made by adding to a fixed origin rather than by
    /// advancing a paused clock: the proxy's tests run without tokio's
    /// `test-util`, which would put a lock in every `Instant::now` of the
    /// benchmark examples. `TargetGroup::window_stats` reads the same
    /// instants from tokio's clock.
    #[test]
    fn requests_fall_out_of_the_window_as_it_slides() {
        let origin = Instant::now();
        let window = RevisionWindow::new(origin);
        for _ in 0..8 {
            window.record(origin, Outcome::Answered(200), ms(3));
        }
        window.record(origin, Outcome::Answered(503), ms(3));
        window.record(origin + ms(500), Outcome::ConnectionFailed, ms(1));
        let at = |s: u64| origin + Duration::from_secs(s);
        window.record(at(10), Outcome::Answered(200), ms(40));
        window.record(at(10), Outcome::TimedOut, Duration::from_secs(60));

        let early = window.stats(at(19), Duration::from_secs(20));
        assert_eq!(early.requests, 12);
        assert_eq!(early.server_errors, 1);
        assert_eq!(early.connection_failures, 1);
        assert_eq!(early.timeouts, 1);
        assert!((early.error_rate - 3.0 / 12.0).abs() < 1e-9);

        // Second 0 has left a 20 s window at second 20; second 10 has not.
        let later = window.stats(at(20), Duration::from_secs(20));
        assert_eq!(later.requests, 2);
        assert_eq!(later.timeouts, 1);
        assert_eq!(later.p99_latency, Some(ms(40)));
        assert_eq!(
            window.stats(at(30), Duration::from_secs(20)),
            WindowStats::default()
        );
        // A shorter window sees less of the same history.
        assert_eq!(window.stats(at(19), Duration::from_secs(5)).requests, 0);
    }

    #[test]
    fn a_slot_reused_a_full_ring_later_starts_empty() {
        let origin = Instant::now();
        let window = RevisionWindow::new(origin);
        window.record(origin + ms(100), Outcome::Answered(200), ms(2));
        let lap = origin + MAX_WINDOW + ms(100);
        window.record(lap, Outcome::Answered(500), ms(2));
        let stats = window.stats(lap, MAX_WINDOW);
        assert_eq!((stats.requests, stats.server_errors), (1, 1));
        assert!(!window.is_idle(lap));
        assert!(window.is_idle(lap + MAX_WINDOW + Duration::from_secs(2)));
    }

    #[test]
    fn p99_is_the_bucket_bound_capped_by_the_slowest_request() {
        let origin = Instant::now();
        let window = RevisionWindow::new(origin);
        for _ in 0..98 {
            window.record(origin, Outcome::Answered(200), ms(1));
        }
        // The 99th of 100 lands in the 50–100 ms bucket; the 100th is slow.
        window.record(origin, Outcome::Answered(200), ms(70));
        window.record(origin, Outcome::Answered(200), ms(2000));
        let stats = window.stats(origin, Duration::from_secs(1));
        assert_eq!(stats.p99_latency, Some(ms(100)));

        let fast = RevisionWindow::new(origin);
        fast.record(origin, Outcome::Answered(200), Duration::from_micros(1300));
        assert_eq!(
            fast.stats(origin, Duration::from_secs(1)).p99_latency,
            Some(Duration::from_micros(1300))
        );
        let failing = RevisionWindow::new(origin);
        failing.record(origin, Outcome::ConnectionFailed, ms(1));
        let stats = failing.stats(origin, Duration::from_secs(1));
        assert_eq!((stats.p99_latency, stats.error_rate), (None, 1.0));
    }

    #[test]
    fn target_counters_count_by_class_and_time_answers_only() {
        let counters = TargetCounters::default();
        counters.record(Outcome::Answered(101), ms(1));
        counters.record(Outcome::Answered(204), ms(1));
        counters.record(Outcome::Answered(302), ms(1));
        counters.record(Outcome::Answered(404), ms(1));
        counters.record(Outcome::Answered(599), ms(1));
        counters.record(Outcome::ConnectionFailed, ms(1));
        counters.record(Outcome::TimedOut, Duration::from_secs(60));
        assert_eq!(counters.outcomes(), [1; 7]);
        let latency = counters.latency();
        assert_eq!(latency.count, 5);
        assert_eq!(latency.buckets[0], 5, "1 ms is in the first bucket");
        assert_eq!(latency.sum, ms(5));
    }
}
