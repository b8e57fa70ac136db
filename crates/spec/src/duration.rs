//! Durations as written in gantry files: a positive integer and one unit,
//! `s`, `m`, `h` or `d` (`90s`, `30m`, `2h`, `7d`).

// CONTRACT (spec helper implements): pub fn parse_duration(s: &str) -> Result<std::time::Duration, String>
