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

use gantry_spec::trigger::{CronExpression, ScheduleTrigger, TimeZoneName};
use jiff::{Timestamp, ZonedDateTime};

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

/// A time in a zone, as croner searches: jiff 1's `ZonedDateTime` (croner's
/// own jiff support is for jiff 0.2).
#[derive(Clone)]
struct Zoned(ZonedDateTime);

impl croner::time::CronDateTime for Zoned {
    fn to_civil(&self) -> croner::time::CivilDateTime {
        let t = self.0.datetime();
        // jiff keeps every part in range, so croner may take them unchecked.
        croner::time::CivilDateTime::new(
            croner::time::CivilDate::from_parts_unchecked(
                i32::from(t.year()),
                t.month().unsigned_abs().into(),
                t.day().unsigned_abs().into(),
            ),
            croner::time::CivilTime::from_parts_unchecked(
                t.hour().unsigned_abs().into(),
                t.minute().unsigned_abs().into(),
                t.second().unsigned_abs().into(),
            ),
        )
    }

    fn civil_weekday(&self) -> croner::time::Weekday {
        croner::time::Weekday::from_days_from_sunday(
            self.0
                .weekday()
                .to_sunday_zero_offset()
                .unsigned_abs()
                .into(),
        )
    }

    fn resolve_civil(
        &self,
        civil: croner::time::CivilDateTime,
    ) -> Result<croner::time::Resolution<Self>, croner::errors::CronError> {
        use croner::errors::CronError;
        use croner::time::Resolution;
        use jiff::tz::AmbiguousOffset;

        let part = |n: u32| i8::try_from(n).map_err(|_| CronError::InvalidDate);
        let year = i16::try_from(civil.year()).map_err(|_| CronError::InvalidDate)?;
        let wall = jiff::civil::DateTime::new(
            year,
            part(civil.month())?,
            part(civil.day())?,
            part(civil.hour())?,
            part(civil.minute())?,
            part(civil.second())?,
            0,
        )
        .map_err(|_| CronError::InvalidDate)?;
        let ambiguous = self.0.time_zone().to_ambiguous_zoned_datetime(wall);
        Ok(match ambiguous.offset() {
            AmbiguousOffset::Unambiguous { .. } => Resolution::Single(Zoned(
                ambiguous
                    .unambiguous()
                    .map_err(|_| CronError::InvalidTime)?,
            )),
            AmbiguousOffset::Fold { .. } => Resolution::Ambiguous(
                Zoned(
                    ambiguous
                        .clone()
                        .earlier()
                        .map_err(|_| CronError::InvalidTime)?,
                ),
                Zoned(ambiguous.later().map_err(|_| CronError::InvalidTime)?),
            ),
            AmbiguousOffset::Gap { .. } => Resolution::Gap,
        })
    }

    fn checked_add_seconds(&self, seconds: i64) -> Option<Self> {
        self.0
            .checked_add(jiff::SignedDuration::from_secs(seconds))
            .ok()
            .map(Zoned)
    }

    fn cmp_instant(&self, other: &Self) -> std::cmp::Ordering {
        self.0.timestamp().cmp(&other.0.timestamp())
    }
}
