//! The wall clock, read in one place. Timers use `tokio::time` so tests can
//! pause and advance time; timestamps recorded in events come from here.

/// Unix time in milliseconds.
pub fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

/// RFC 3339 text for a Unix-millisecond timestamp, always with three
/// fractional digits, so the text has one shape for people and tools.
pub fn rfc3339(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map(|t| t.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
        .unwrap_or_default()
}
