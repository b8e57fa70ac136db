//! Durations as written in gantry files: a whole number and a unit, `ms`,
//! `s`, `m`, `h` or `d` (`500ms`, `90s`, `30m`, `2h`, `7d`), or several such
//! parts with their units in descending order, each unit at most once
//! (`1m30s`, `1h30m`, `2s500ms`).
//!
//! Fixing the order and allowing each unit once keeps a combined form
//! readable and gives every duration few spellings: `30m1h` and `1m1m` are
//! refused rather than summed. [`parse_duration`] refuses zero because a
//! zero timeout or interval is always a mistake; [`parse_duration_or_zero`]
//! is for the few durations where nothing is a sensible value (a service's
//! `drain` and health-check `grace_period`).

use std::time::Duration;

/// What [`parse_duration`] accepts, as a regular expression (for the JSON
/// Schema): one or more parts, the units largest first, each once.
pub const DURATION_PATTERN: &str = r"^[0-9]+(d([0-9]+h)?([0-9]+m)?([0-9]+s)?([0-9]+ms)?|h([0-9]+m)?([0-9]+s)?([0-9]+ms)?|m([0-9]+s)?([0-9]+ms)?|s([0-9]+ms)?|ms)$";

/// The units, largest first, with their length in milliseconds.
const UNITS: [(&str, u64); 5] = [
    ("d", 86_400_000),
    ("h", 3_600_000),
    ("m", 60_000),
    ("s", 1_000),
    ("ms", 1),
];

/// Parses `500ms`, `90s`, `30m`, `2h`, `7d` or a combination such as `1h30m`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    parse(s, false)
}

/// Like [`parse_duration`], but `0s` (zero in any unit) is allowed.
pub fn parse_duration_or_zero(s: &str) -> Result<Duration, String> {
    parse(s, true)
}

fn parse(s: &str, allow_zero: bool) -> Result<Duration, String> {
    let invalid = || {
        format!(
            "invalid duration `{s}`: expected a whole number and a unit ms, s, m, h or d (500ms, 90s, 30m, 2h, 7d), or several with the units largest first (1m30s, 1h30m)"
        )
    };
    let too_long = || format!("duration `{s}` is too long");
    if s.is_empty() {
        return Err(invalid());
    }
    let mut rest = s;
    // The index in UNITS of the previous part's unit: each part's must be later.
    let mut previous: Option<usize> = None;
    let mut total_ms: u64 = 0;
    while !rest.is_empty() {
        let digits_end = rest
            .find(|c: char| !c.is_ascii_digit())
            .ok_or_else(invalid)?;
        let unit_end = rest[digits_end..]
            .find(|c: char| c.is_ascii_digit())
            .map_or(rest.len(), |at| digits_end + at);
        // `u64::from_str` accepts a leading `+`, which the digit scan excludes.
        let (digits, unit) = (&rest[..digits_end], &rest[digits_end..unit_end]);
        let index = UNITS
            .iter()
            .position(|(name, _)| *name == unit)
            .ok_or_else(invalid)?;
        if digits.is_empty() || previous.is_some_and(|p| p >= index) {
            return Err(invalid());
        }
        let count: u64 = digits.parse().map_err(|_| too_long())?;
        total_ms = count
            .checked_mul(UNITS[index].1)
            .and_then(|ms| total_ms.checked_add(ms))
            .ok_or_else(too_long)?;
        previous = Some(index);
        rest = &rest[unit_end..];
    }
    if total_ms == 0 && !allow_zero {
        return Err(format!(
            "invalid duration `{s}`: it must be longer than zero"
        ));
    }
    Ok(Duration::from_millis(total_ms))
}

/// Writes a duration in the largest unit that divides it exactly (`90s`,
/// `2h`, `1500ms`), so that `parse_duration(&format_duration(d)) == Ok(d)`
/// for every whole number of milliseconds, which is every duration a gantry
/// file can hold. Anything finer than a millisecond is dropped.
pub fn format_duration(duration: Duration) -> String {
    let ms = u64::try_from(duration.as_millis()).unwrap_or(u64::MAX);
    for (unit, size) in &UNITS[..4] {
        if ms != 0 && ms.is_multiple_of(*size) {
            return format!("{}{unit}", ms / size);
        }
    }
    if ms == 0 {
        return "0s".to_owned();
    }
    format!("{ms}ms")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_each_unit() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("30m"), Ok(Duration::from_secs(1800)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(7 * 86_400)));
        assert_eq!(parse_duration("1500ms"), Ok(Duration::from_millis(1500)));
    }

    #[test]
    fn accepts_combined_forms_with_units_largest_first() {
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("2s500ms"), Ok(Duration::from_millis(2500)));
        assert_eq!(
            parse_duration("1d2h3m4s5ms"),
            Ok(Duration::from_millis(93_784_005))
        );
        // A part may be zero as long as the whole is not.
        assert_eq!(parse_duration("1h0m"), Ok(Duration::from_secs(3600)));
    }

    #[test]
    fn refuses_everything_else() {
        for bad in [
            "",
            "s",
            "ms",
            "5",
            "5x",
            "5sm",
            "-5s",
            "+5s",
            "1.5h",
            "5 m",
            " 5m",
            "5m ",
            "30m1h",
            "1m1m",
            "500ms1s",
            "1h30",
            "0s",
            "0h0m",
            "5é",
            "é",
            "99999999999999999999d",
            "999999999999999999d",
            "213503982334d1d",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn the_schema_pattern_accepts_what_the_parser_does() {
        let pattern = regex_automata::meta::Regex::new(DURATION_PATTERN).expect("a regex");
        for text in [
            "500ms",
            "90s",
            "30m",
            "2h",
            "7d",
            "1m30s",
            "1h30m",
            "2s500ms",
            "1d2h3m4s5ms",
            "0s",
        ] {
            assert!(pattern.is_match(text), "{text:?} is refused by the schema");
            assert!(parse_duration_or_zero(text).is_ok(), "{text:?}");
        }
        for text in ["", "5", "30m1h", "1m1m", "500ms1s", "1.5h", "5sm", "1h30"] {
            assert!(
                !pattern.is_match(text),
                "{text:?} is accepted by the schema"
            );
            assert!(parse_duration_or_zero(text).is_err(), "{text:?}");
        }
    }

    #[test]
    fn zero_only_where_allowed() {
        assert!(parse_duration("0s").is_err());
        assert_eq!(parse_duration_or_zero("0s"), Ok(Duration::ZERO));
        assert_eq!(parse_duration_or_zero("0m"), Ok(Duration::ZERO));
        assert_eq!(parse_duration_or_zero("0ms"), Ok(Duration::ZERO));
        assert_eq!(parse_duration_or_zero("2s"), Ok(Duration::from_secs(2)));
        for bad in ["0", "", "-1s", "0x"] {
            assert!(parse_duration_or_zero(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn format_round_trips() {
        for text in [
            "90s", "30m", "2h", "7d", "61m", "25h", "500ms", "1500ms", "1ms",
        ] {
            let duration = parse_duration(text).expect("valid");
            assert_eq!(format_duration(duration), text);
        }
        for text in ["1m30s", "1h30m", "2s500ms", "1d1ms"] {
            let duration = parse_duration(text).expect("valid");
            assert_eq!(parse_duration(&format_duration(duration)), Ok(duration));
        }
        assert_eq!(format_duration(Duration::ZERO), "0s");
        assert_eq!(format_duration(Duration::from_micros(1500)), "1ms");
    }
}
