//! UTC timestamps for log lines and the `Date` header, from `SystemTime`
//! alone (no time crate).

use std::time::{SystemTime, UNIX_EPOCH};

/// A UTC date and time broken down from Unix time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Utc {
    pub(crate) year: i64,
    pub(crate) month: u32,
    pub(crate) day: u32,
    pub(crate) hour: u32,
    pub(crate) minute: u32,
    pub(crate) second: u32,
    pub(crate) millis: u32,
    /// 0 = Sunday.
    pub(crate) weekday: u32,
}

impl Utc {
    /// Now; a clock before 1970 reads as 1970.
    pub(crate) fn now() -> Utc {
        let d = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        Utc::from_unix_millis(d.as_millis().min(i64::MAX as u128) as i64)
    }

    /// Breaks down milliseconds since the epoch, with Howard Hinnant's
    /// `civil_from_days` algorithm.
    pub(crate) fn from_unix_millis(ms: i64) -> Utc {
        let secs = ms.div_euclid(1000);
        let millis = ms.rem_euclid(1000) as u32;
        let days = secs.div_euclid(86_400);
        let sod = secs.rem_euclid(86_400) as u32;
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
        let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
        let year = yoe + era * 400 + i64::from(month <= 2);
        Utc {
            year,
            month,
            day,
            hour: sod / 3600,
            minute: sod / 60 % 60,
            second: sod % 60,
            millis,
            // 1970-01-01 was a Thursday.
            weekday: (days + 4).rem_euclid(7) as u32,
        }
    }

    /// `2026-05-01T12:00:00.123Z`.
    pub(crate) fn rfc3339(&self) -> String {
        format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
            self.year, self.month, self.day, self.hour, self.minute, self.second, self.millis
        )
    }

    /// `Fri, 01 May 2026 12:00:00 GMT` (RFC 9110 IMF-fixdate).
    pub(crate) fn http_date(&self) -> String {
        const DAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
        const MONTHS: [&str; 12] = [
            "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
        ];
        format!(
            "{}, {:02} {} {:04} {:02}:{:02}:{:02} GMT",
            DAYS.get(self.weekday as usize).unwrap_or(&"Sun"),
            self.day,
            MONTHS.get(self.month.saturating_sub(1) as usize).unwrap_or(&"Jan"),
            self.year,
            self.hour,
            self.minute,
            self.second
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_known_instants() {
        assert_eq!(Utc::from_unix_millis(0).rfc3339(), "1970-01-01T00:00:00.000Z");
        assert_eq!(Utc::from_unix_millis(0).http_date(), "Thu, 01 Jan 1970 00:00:00 GMT");
        // 2000-02-29T23:59:59.999Z, a leap day.
        let t = Utc::from_unix_millis(951_868_799_999);
        assert_eq!(t.rfc3339(), "2000-02-29T23:59:59.999Z");
        assert_eq!(t.http_date(), "Tue, 29 Feb 2000 23:59:59 GMT");
        // 2026-05-01T12:00:00Z.
        assert_eq!(
            Utc::from_unix_millis(1_777_636_800_000).http_date(),
            "Fri, 01 May 2026 12:00:00 GMT"
        );
        assert_eq!(Utc::from_unix_millis(-1).rfc3339(), "1969-12-31T23:59:59.999Z");
    }
}
