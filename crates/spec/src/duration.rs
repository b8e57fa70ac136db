//! Durations as written in gantry files: a positive integer and one unit,
//! `s`, `m`, `h` or `d` (`90s`, `30m`, `2h`, `7d`).
//!
//! One unit per duration keeps the format obvious to read and to diff; `1h30m`
//! is written `90m`. [`parse_duration`] refuses zero because a zero timeout or
//! interval is always a mistake; [`parse_duration_or_zero`] is for the few
//! durations where nothing is a sensible value (a service's `drain` and
//! health-check `grace_period`).

use std::time::Duration;

/// Parses `90s`, `30m`, `2h` or `7d`.
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
            "invalid duration `{s}`: expected a positive whole number and a unit s, m, h or d (90s, 30m, 2h, 7d)"
        )
    };
    let Some(unit) = s.chars().last() else {
        return Err(invalid());
    };
    let seconds_per_unit: u64 = match unit {
        's' => 1,
        'm' => 60,
        'h' => 60 * 60,
        'd' => 24 * 60 * 60,
        _ => return Err(invalid()),
    };
    let digits = &s[..s.len() - unit.len_utf8()];
    // `u64::from_str` accepts a leading `+`, which is not part of the format.
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid());
    }
    let count: u64 = digits
        .parse()
        .map_err(|_| format!("duration `{s}` is too long"))?;
    if count == 0 && !allow_zero {
        return Err(format!(
            "invalid duration `{s}`: it must be longer than zero"
        ));
    }
    let seconds = count
        .checked_mul(seconds_per_unit)
        .ok_or_else(|| format!("duration `{s}` is too long"))?;
    Ok(Duration::from_secs(seconds))
}

/// Writes a duration in the largest unit that divides it exactly, so that
/// `parse_duration(&format_duration(d)) == Ok(d)` for whole seconds.
pub fn format_duration(duration: Duration) -> String {
    let seconds = duration.as_secs();
    for (unit, size) in [("d", 86_400), ("h", 3_600), ("m", 60)] {
        if seconds != 0 && seconds.is_multiple_of(size) {
            return format!("{}{unit}", seconds / size);
        }
    }
    format!("{seconds}s")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_each_unit() {
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("30m"), Ok(Duration::from_secs(1800)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(7 * 86_400)));
    }

    #[test]
    fn refuses_everything_else() {
        for bad in [
            "",
            "s",
            "5",
            "5x",
            "-5s",
            "+5s",
            "1.5h",
            "5 m",
            " 5m",
            "1h30m",
            "0s",
            "5é",
            "é",
            "99999999999999999999d",
            "999999999999999999d",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn zero_only_where_allowed() {
        assert!(parse_duration("0s").is_err());
        assert_eq!(parse_duration_or_zero("0s"), Ok(Duration::ZERO));
        assert_eq!(parse_duration_or_zero("0m"), Ok(Duration::ZERO));
        assert_eq!(parse_duration_or_zero("2s"), Ok(Duration::from_secs(2)));
        for bad in ["0", "", "-1s", "0x"] {
            assert!(parse_duration_or_zero(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn format_round_trips() {
        for text in ["90s", "30m", "2h", "7d", "61m", "25h"] {
            let duration = parse_duration(text).expect("valid");
            assert_eq!(format_duration(duration), text);
        }
    }
}
