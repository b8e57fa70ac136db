//! How the control plane writes its times. Events, rows and the audit log
//! carry Unix milliseconds read from `gantry_clock::now_ms` (timers use
//! `tokio::time`, so tests can pause and advance them); people and tools see
//! those stamps as RFC 3339 text of one shape.

/// RFC 3339 text for a Unix-millisecond timestamp, always with three
/// fractional digits, so the text has one shape for people and tools.
pub fn rfc3339(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map(|t| t.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
        .unwrap_or_default()
}
