//! Properties checked on random inputs: excludes always win, signatures
//! cover every byte, schedules skip no fire time, and poll delays stay in
//! their bounds.

use std::time::Duration;

use gantry_spec::trigger::{CronExpression, GlobFilter, GlobPattern, PushFilter, TimeZoneName};
use gantry_triggers::signature::sign_sha256;
use gantry_triggers::webhook::verify;
use gantry_triggers::{GitRef, PushMatcher, Schedule, Verdict, poll};
use http::{HeaderMap, HeaderValue};
use jiff::{SignedDuration, Timestamp};
use proptest::prelude::*;

const PATTERNS: &[&str] = &[
    "*", "**", "a*", "a/*", "a/**", "*/b", "b?", "{a,b}*", "c", "**/c", "[ab]/*",
];

fn patterns() -> impl Strategy<Value = Vec<GlobPattern>> {
    prop::collection::vec(prop::sample::select(PATTERNS), 0..4).prop_map(|texts| {
        texts
            .into_iter()
            .map(|t| GlobPattern::new(t).expect("pattern"))
            .collect()
    })
}

fn branch_name() -> impl Strategy<Value = String> {
    "[a-c]{1,3}(/[a-c]{1,3}){0,2}"
}

fn branches(includes: Vec<GlobPattern>, excludes: Vec<GlobPattern>) -> PushMatcher {
    PushMatcher::new(&PushFilter {
        branches: Some(GlobFilter { includes, excludes }),
        tags: None,
        file_paths: None,
    })
}

const ZONES: &[&str] = &[
    "UTC",
    "America/New_York",
    "Europe/Berlin",
    "Australia/Lord_Howe",
    "Asia/Kolkata",
    "America/Santiago",
];
const CRONS: &[&str] = &[
    "0 3 * * *",
    "30 2 * * *",
    "30 1 * * *",
    "*/15 * * * *",
    "0 * * * *",
    "*/30 1-3 * * SUN",
    "0 0 1 * *",
    "45 23 L * *",
];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn a_branch_matching_an_exclude_never_starts(
        includes in patterns(),
        excludes in patterns(),
        name in branch_name(),
    ) {
        let excluded = excludes
            .iter()
            .any(|p| p.glob().compile_matcher().is_match(&name));
        let verdict = branches(includes, excludes).check(&GitRef::Branch(name), false, None);
        if excluded {
            prop_assert_ne!(verdict, Verdict::Start);
        }
    }

    #[test]
    fn adding_an_exclude_never_starts_what_did_not(
        includes in patterns(),
        excludes in patterns(),
        extra in prop::sample::select(PATTERNS),
        name in branch_name(),
    ) {
        let before = branches(includes.clone(), excludes.clone())
            .check(&GitRef::Branch(name.clone()), false, None);
        let mut more = excludes;
        more.push(GlobPattern::new(extra).expect("pattern"));
        let after = branches(includes, more).check(&GitRef::Branch(name), false, None);
        if before != Verdict::Start {
            prop_assert_ne!(after, Verdict::Start);
        }
    }

    #[test]
    fn a_signature_covers_every_byte_of_the_body(
        secret in prop::collection::vec(any::<u8>(), 1..64),
        body in prop::collection::vec(any::<u8>(), 1..512),
        flip in any::<prop::sample::Index>(),
        bit in 0u8..8,
    ) {
        let mut headers = HeaderMap::new();
        let signature = sign_sha256(&secret, &body);
        headers.insert("x-gantry-signature-256", HeaderValue::from_str(&signature).expect("header"));
        let provider = gantry_spec::trigger::WebhookProvider::Generic;
        prop_assert!(verify(provider, &headers, &body, &secret).is_ok());
        let mut changed = body.clone();
        let at = flip.index(changed.len());
        changed[at] ^= 1 << bit;
        prop_assert!(verify(provider, &headers, &changed, &secret).is_err());
        // (Not `secret` plus a zero byte: HMAC pads short keys with zeros,
        // so those two keys are the same key.)
        let mut other = secret.clone();
        other[0] ^= 0x01;
        prop_assert!(verify(provider, &headers, &body, &other).is_err());
    }

    /// Asking from any instant between two fire times gives the later one:
    /// no fire time is skipped, none is invented.
    #[test]
    fn schedules_skip_no_fire_time(
        zone in prop::sample::select(ZONES),
        cron in prop::sample::select(CRONS),
        start in 946_684_800i64..4_102_444_800,
        fraction in 0.0f64..1.0,
    ) {
        let schedule = Schedule::from_parts(
            &CronExpression::new(cron).expect("cron"),
            &TimeZoneName::new(zone).expect("zone"),
        );
        let now = Timestamp::from_second(start).expect("time");
        let next = schedule.next_after(now).expect("a next fire time");
        prop_assert!(next > now);
        let gap = next.duration_since(now);
        let between = now
            .checked_add(SignedDuration::from_secs_f64(gap.as_secs_f64() * fraction))
            .expect("time");
        prop_assert!(between < next);
        prop_assert_eq!(schedule.next_after(between), Some(next));
        let second = schedule.next_after(next).expect("another fire time");
        prop_assert!(second > next);
    }

    #[test]
    fn poll_delays_stay_within_jitter_of_their_backoff(
        interval_secs in 1u64..86_400,
        failures in 0u32..40,
        random in any::<u64>(),
    ) {
        let interval = Duration::from_secs(interval_secs);
        let delay = poll::next_delay(interval, failures, random);
        let cap = poll::MAX_BACKOFF.max(interval);
        prop_assert!(delay >= interval.mul_f64(1.0 - poll::JITTER).min(cap.mul_f64(1.0 - poll::JITTER)));
        prop_assert!(delay <= cap.mul_f64(1.0 + poll::JITTER));
        // More failures never mean a shorter wait, for the same random draw.
        prop_assert!(poll::next_delay(interval, failures + 1, random) >= delay);
        prop_assert!(poll::first_delay(interval, random) < interval);
    }
}
