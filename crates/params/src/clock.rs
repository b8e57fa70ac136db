//! Wall-clock time for "last modified" stamps, behind a trait so tests are deterministic.

use std::sync::Mutex;

use jiff::{SignedDuration, Timestamp};

/// Where the store gets the time it records on each version.
pub trait Clock: Send + Sync {
    fn now(&self) -> Timestamp;
}

/// The system's wall clock, read through gantry-clock like every other
/// wall-clock read of gantry.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        // Only a clock set outside jiff's range (years -9999..=9999) fails.
        Timestamp::try_from(gantry_clock::now()).unwrap_or(Timestamp::UNIX_EPOCH)
    }
}

/// A clock that only moves when told to, for tests.
#[derive(Debug)]
pub struct ManualClock(Mutex<Timestamp>);

impl ManualClock {
    pub fn new(start: Timestamp) -> Self {
        Self(Mutex::new(start))
    }

    pub fn set(&self, to: Timestamp) {
        *self.lock() = to;
    }

    /// Moves the clock forward; saturates at jiff's maximum instead of panicking.
    pub fn advance(&self, by: SignedDuration) {
        let mut now = self.lock();
        *now = now.saturating_add(by).unwrap_or(*now);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Timestamp> {
        // A poisoned lock still holds a valid timestamp; keep going with it.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        *self.lock()
    }
}
