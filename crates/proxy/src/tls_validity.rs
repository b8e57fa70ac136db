//! The validity window of an X.509 certificate, read from its DER with a
//! minimal reader: webpki checks validity only while building a path to a
//! trust anchor, and the listener wants the leaf's own dates. Also what a
//! caller renewing certificates asks of a chain: its leaf's dates and
//! whether it covers a DNS name.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};

/// The leaf of a PEM chain: its first certificate.
fn leaf(chain_pem: &str) -> Option<CertificateDer<'static>> {
    CertificateDer::pem_slice_iter(chain_pem.as_bytes())
        .next()?
        .ok()
}

/// `(not_before, not_after)` of a PEM chain's leaf, in seconds since the
/// Unix epoch; `None` when the chain cannot be read.
pub fn certificate_validity(chain_pem: &str) -> Option<(u64, u64)> {
    validity(&leaf(chain_pem)?)
}

/// Whether a PEM chain's leaf is valid for the DNS name `name` (its
/// subject alternative names, wildcards as TLS clients read them).
pub fn certificate_covers(chain_pem: &str, name: &str) -> bool {
    let (Some(leaf), Ok(name)) = (leaf(chain_pem), ServerName::try_from(name)) else {
        return false;
    };
    webpki::EndEntityCert::try_from(&leaf)
        .is_ok_and(|cert| cert.verify_is_valid_for_subject_name(&name).is_ok())
}

/// `(not_before, not_after)` in seconds since the Unix epoch.
pub(crate) fn validity(der: &[u8]) -> Option<(u64, u64)> {
    let (certificate, _) = element(der, 0x30)?;
    let (tbs, _) = element(certificate, 0x30)?;
    let mut rest = tbs;
    // Optional explicit version [0].
    if rest.first() == Some(&0xa0) {
        rest = element(rest, 0xa0)?.1;
    }
    rest = element(rest, 0x02)?.1; // serial number
    rest = element(rest, 0x30)?.1; // signature algorithm
    rest = element(rest, 0x30)?.1; // issuer
    let (validity, _) = element(rest, 0x30)?;
    let (before, after) = time(validity)?;
    let (after, _) = time(after)?;
    Some((before, after))
}

/// One DER element of the given tag: its contents and what follows.
fn element(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    let (&first, rest) = input.split_first()?;
    if first != tag {
        return None;
    }
    let (&len, mut rest) = rest.split_first()?;
    let len = if len < 0x80 {
        usize::from(len)
    } else {
        let bytes = usize::from(len & 0x7f);
        if bytes == 0 || bytes > 4 || rest.len() < bytes {
            return None;
        }
        let mut n = 0usize;
        for &b in &rest[..bytes] {
            n = (n << 8) | usize::from(b);
        }
        rest = &rest[bytes..];
        n
    };
    if rest.len() < len {
        return None;
    }
    Some(rest.split_at(len))
}

/// A UTCTime or GeneralizedTime (`Z` only, as RFC 5280 requires), and what
/// follows it.
fn time(input: &[u8]) -> Option<(u64, &[u8])> {
    let (tag, (text, rest)) = match input.first()? {
        0x17 => (0x17, element(input, 0x17)?),
        0x18 => (0x18, element(input, 0x18)?),
        _ => return None,
    };
    let text = std::str::from_utf8(text).ok()?.strip_suffix('Z')?;
    let digits = |s: &str| -> Option<u64> {
        s.bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| s.parse().ok())?
    };
    let (year, rest_text) = if tag == 0x17 {
        let yy = digits(text.get(..2)?)?;
        (if yy >= 50 { 1900 + yy } else { 2000 + yy }, text.get(2..)?)
    } else {
        (digits(text.get(..4)?)?, text.get(4..)?)
    };
    if rest_text.len() != 10 {
        return None;
    }
    let month = digits(&rest_text[0..2])?;
    let day = digits(&rest_text[2..4])?;
    let hour = digits(&rest_text[4..6])?;
    let minute = digits(&rest_text[6..8])?;
    let second = digits(&rest_text[8..10])?;
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return None;
    }
    let days = days_from_civil(year, month, day)?;
    Some((days * 86_400 + hour * 3600 + minute * 60 + second, rest))
}

/// Days since 1970-01-01 (Howard Hinnant's algorithm), for years from 1970.
fn days_from_civil(year: u64, month: u64, day: u64) -> Option<u64> {
    let y = if month <= 2 {
        year.checked_sub(1)?
    } else {
        year
    };
    let era = y / 400;
    let yoe = y - era * 400;
    let m = if month > 2 { month - 3 } else { month + 9 };
    let doy = (153 * m + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    (era * 146_097 + doe).checked_sub(719_468)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates_count_days_from_the_epoch() {
        assert_eq!(days_from_civil(1970, 1, 1), Some(0));
        assert_eq!(days_from_civil(2000, 3, 1), Some(11_017));
        assert_eq!(days_from_civil(2024, 2, 29), Some(19_782));
    }

    #[test]
    fn times_read_both_encodings() {
        assert_eq!(
            time(b"\x17\x0d491231235959Z").map(|t| t.0),
            Some(2_524_607_999)
        );
        assert_eq!(
            time(b"\x18\x0f20000301000000Z").map(|t| t.0),
            Some(951_868_800)
        );
        assert!(time(b"\x17\x0b4912312359Z").is_none());
    }
}
