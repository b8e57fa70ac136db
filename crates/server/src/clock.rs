//! The control plane's times: events, rows and the audit log are stamped
//! with the Unix milliseconds of `gantry_clock::now_ms` (re-exported here),
//! and shown to people and tools as RFC 3339 text. Timers use `tokio::time`
//! so tests can pause and advance time.

pub use gantry_clock::now_ms;

/// RFC 3339 text for a Unix-millisecond timestamp, always with three
/// fractional digits, so the text has one shape for people and tools.
pub fn rfc3339(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map(|t| t.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
        .unwrap_or_default()
}
