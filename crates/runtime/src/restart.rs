//! How soon a replica that exited is started again.

use std::time::Duration;

/// Exponential backoff for restarts: `initial_delay`, doubled for each
/// consecutive failed run, at most `max_delay`. A run that lasted
/// `reset_after` or longer counts as good, so the next failure starts again
/// from `initial_delay`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestartPolicy {
    /// The wait before the first restart. Default 1 s.
    pub initial_delay: Duration,
    /// The longest wait. Default 30 s.
    pub max_delay: Duration,
    /// How long a run must last to reset the backoff. Default 60 s.
    pub reset_after: Duration,
}

impl Default for RestartPolicy {
    fn default() -> Self {
        RestartPolicy {
            initial_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(30),
            reset_after: Duration::from_secs(60),
        }
    }
}

impl RestartPolicy {
    /// The wait before restart number `attempt` (1-based) of a failing streak.
    pub fn delay(&self, attempt: u32) -> Duration {
        let doublings = attempt.saturating_sub(1).min(31);
        self.initial_delay
            .saturating_mul(1u32 << doublings)
            .min(self.max_delay)
    }
}

/// A replica's failing streak: how many runs in a row ended too soon.
#[derive(Debug, Default)]
pub(crate) struct Streak {
    failures: u32,
}

impl Streak {
    /// Records a run that lasted `ran_for`; returns the attempt number and delay
    /// for the restart that follows.
    pub(crate) fn next(&mut self, policy: &RestartPolicy, ran_for: Duration) -> (u32, Duration) {
        if ran_for >= policy.reset_after {
            self.failures = 0;
        }
        self.failures = self.failures.saturating_add(1);
        (self.failures, policy.delay(self.failures))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_from_one_second_up_to_thirty() {
        let policy = RestartPolicy::default();
        let secs: Vec<u64> = (1..=8).map(|n| policy.delay(n).as_secs()).collect();
        assert_eq!(secs, [1, 2, 4, 8, 16, 30, 30, 30]);
        assert_eq!(policy.delay(u32::MAX).as_secs(), 30);
    }

    #[test]
    fn a_long_run_resets_the_streak() {
        let policy = RestartPolicy::default();
        let mut streak = Streak::default();
        let short = Duration::from_millis(10);
        assert_eq!(streak.next(&policy, short), (1, Duration::from_secs(1)));
        assert_eq!(streak.next(&policy, short), (2, Duration::from_secs(2)));
        assert_eq!(streak.next(&policy, short), (3, Duration::from_secs(4)));
        assert_eq!(
            streak.next(&policy, Duration::from_secs(61)),
            (1, Duration::from_secs(1))
        );
    }
}
