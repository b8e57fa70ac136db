//! When schedules fire: each case is a cron expression, a time zone, a
//! "now", and the next instants the schedule names, written on the zone's
//! wall clock with its offset, across daylight-saving changes.

use gantry_spec::trigger::{CronExpression, TimeZoneName};
use gantry_triggers::Schedule;
use jiff::Timestamp;

/// The next `expected.len()` fire times after `now`, each asked for with
/// the previous one as "now", as a server does.
fn check(cron: &str, zone: &str, now: &str, expected: &[&str]) {
    let zone = TimeZoneName::new(zone).expect("zone");
    let schedule = Schedule::from_parts(&CronExpression::new(cron).expect("cron"), &zone);
    let mut now: Timestamp = now.parse().expect("now");
    let mut actual = Vec::new();
    for _ in expected {
        let Some(next) = schedule.next_after(now) else {
            actual.push("never".to_owned());
            break;
        };
        assert!(next > now, "{cron}: {next} is not after {now}");
        actual.push(
            next.to_zoned_datetime(zone.time_zone().clone())
                .strftime("%Y-%m-%dT%H:%M:%S%:z")
                .to_string(),
        );
        now = next;
    }
    assert_eq!(
        actual,
        expected,
        "`{cron}` in {} after {now}",
        zone.as_str()
    );
}

#[test]
fn a_daily_time_in_a_zone_without_daylight_saving() {
    check(
        "0 3 * * *",
        "Asia/Tokyo",
        "2026-01-01T00:00:00Z",
        &["2026-01-02T03:00:00+09:00", "2026-01-03T03:00:00+09:00"],
    );
}

#[test]
fn now_itself_is_not_next_and_fractions_of_a_second_do_not_skip() {
    check(
        "0 3 * * *",
        "UTC",
        "2026-01-01T03:00:00Z",
        &["2026-01-02T03:00:00+00:00"],
    );
    check(
        "0 3 * * *",
        "UTC",
        "2026-01-01T02:59:59.5Z",
        &["2026-01-01T03:00:00+00:00"],
    );
}

#[test]
fn a_time_the_clock_skips_fires_once_right_after_the_gap() {
    // New York: 2026-03-08 02:00 EST becomes 03:00 EDT.
    check(
        "30 2 * * *",
        "America/New_York",
        "2026-03-07T12:00:00Z",
        &[
            "2026-03-08T03:00:00-04:00",
            "2026-03-09T02:30:00-04:00",
            "2026-03-10T02:30:00-04:00",
        ],
    );
    // Berlin: 2026-03-29 02:00 CET becomes 03:00 CEST.
    check(
        "0 2 * * *",
        "Europe/Berlin",
        "2026-03-28T12:00:00Z",
        &["2026-03-29T03:00:00+02:00", "2026-03-30T02:00:00+02:00"],
    );
}

#[test]
fn a_time_the_clock_repeats_fires_once() {
    // New York: 2026-11-01 02:00 EDT becomes 01:00 EST; 01:30 happens twice.
    check(
        "30 1 * * *",
        "America/New_York",
        "2026-10-31T12:00:00Z",
        &["2026-11-01T01:30:00-04:00", "2026-11-02T01:30:00-05:00"],
    );
}

#[test]
fn repeating_expressions_fire_at_every_real_instant() {
    // In the repeated hour, both halves.
    check(
        "*/30 1 * * *",
        "America/New_York",
        "2026-11-01T04:00:00Z",
        &[
            "2026-11-01T01:00:00-04:00",
            "2026-11-01T01:30:00-04:00",
            "2026-11-01T01:00:00-05:00",
            "2026-11-01T01:30:00-05:00",
            "2026-11-02T01:00:00-05:00",
        ],
    );
    // In the skipped hour, none.
    check(
        "*/30 2 * * *",
        "America/New_York",
        "2026-03-07T12:00:00Z",
        &["2026-03-09T02:00:00-04:00", "2026-03-09T02:30:00-04:00"],
    );
    // Hourly through the gap: 01:00 EST, then 03:00 EDT an hour later.
    check(
        "0 * * * *",
        "America/New_York",
        "2026-03-08T05:30:00Z",
        &["2026-03-08T01:00:00-05:00", "2026-03-08T03:00:00-04:00"],
    );
}

#[test]
fn weekdays_and_rare_days() {
    check(
        "*/15 9-17 * * MON-FRI",
        "Europe/Berlin",
        "2026-01-02T16:50:00Z",
        // Friday 17:50 is past 17:45, the day's last; Monday is next.
        &["2026-01-05T09:00:00+01:00", "2026-01-05T09:15:00+01:00"],
    );
    check(
        "0 0 29 2 *",
        "UTC",
        "2026-03-01T00:00:00Z",
        &["2028-02-29T00:00:00+00:00", "2032-02-29T00:00:00+00:00"],
    );
}
