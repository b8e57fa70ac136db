//! When a `schedule` trigger fires: the next instant its cron expression
//! names, on the wall clock of its time zone.
//!
//! Daylight-saving changes follow Vixie cron, as croner implements it:
//! - a fixed time that the clock skips (02:30 on the night the clock jumps
//!   from 02:00 to 03:00) fires once, at the first instant after the gap;
//! - a fixed time that the clock repeats (01:30 on the night it goes back)
//!   fires once, the first time;
//! - an expression that repeats within the hour (`*/15 * * * *`) fires at
//!   every real instant it names: none in the gap, both halves of the
//!   repeat.
//!
//! The caller holds the clock: it asks for [`Schedule::next_after`] its
//! "now", sleeps (on a clock it can pause in tests) until then, starts the
//! pipeline, and asks again with the instant that fired, so a slow start
//! never skips or repeats a run.

use gantry_spec::trigger::{CronExpression, ScheduleTrigger, TimeZoneName, Zoned};
use jiff::Timestamp;

/// A compiled `schedule` trigger.
#[derive(Debug, Clone)]
pub struct Schedule {
    cron: croner::Cron,
    time_zone: jiff::tz::TimeZone,
}

impl Schedule {
    pub fn new(trigger: &ScheduleTrigger) -> Schedule {
        Schedule::from_parts(&trigger.cron, &trigger.timezone)
    }

    pub fn from_parts(cron: &CronExpression, time_zone: &TimeZoneName) -> Schedule {
        Schedule {
            cron: cron.cron().clone(),
            time_zone: time_zone.time_zone().clone(),
        }
    }

    /// The first instant strictly after `now` at which the schedule fires.
    /// `None` only past croner's search range (the year 5000), or for an
    /// expression that never fires, which validation refuses.
    pub fn next_after(&self, now: Timestamp) -> Option<Timestamp> {
        let start = Zoned(now.to_zoned_datetime(self.time_zone.clone()));
        self.cron
            .find_next_occurrence(&start, false)
            .ok()
            .map(|next| next.0.timestamp())
    }
}
