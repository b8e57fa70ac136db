//! HMAC-SHA256 signatures over a webhook's raw body, and shared-token
//! comparison, both in constant time.
//!
//! Verification never compares secret-derived bytes with `==`: an HMAC is
//! checked with `Mac::verify_slice` (constant time in the tag), and a
//! GitLab-style plain token is compared by HMAC-ing both sides under a
//! fixed key and checking one tag against the other, so neither its bytes
//! nor its length leak through timing.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// The `sha256=HEX` value of `X-Gantry-Signature-256` (and GitHub's
/// `X-Hub-Signature-256`) for `body` under `secret`: what gantry sends with
/// its notifications, and what a generic webhook's sender computes.
pub fn sign_sha256(secret: &[u8], body: &[u8]) -> String {
    format!("sha256={}", hex::encode(hmac(secret, body)))
}

fn hmac(key: &[u8], message: &[u8]) -> Vec<u8> {
    // HMAC takes keys of any length; `new_from_slice` cannot fail for it.
    let mut mac = <HmacSha256 as KeyInit>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC accepts keys of every length"));
    mac.update(message);
    mac.finalize().into_bytes().to_vec()
}

/// Whether `signature_hex` (hex digits, either case) is the HMAC-SHA256 of
/// `body` under `secret`.
pub(crate) fn verify_hex(secret: &[u8], body: &[u8], signature_hex: &str) -> bool {
    let Ok(signature) = hex::decode(signature_hex.trim()) else {
        return false;
    };
    let Ok(mut mac) = <HmacSha256 as KeyInit>::new_from_slice(secret) else {
        return false;
    };
    mac.update(body);
    mac.verify_slice(&signature).is_ok()
}

/// Whether two tokens are equal, in time independent of where they differ
/// and of their lengths.
pub(crate) fn tokens_equal(expected: &[u8], given: &[u8]) -> bool {
    const KEY: &[u8] = b"gantry: compare webhook tokens";
    let Ok(mut mac) = <HmacSha256 as KeyInit>::new_from_slice(KEY) else {
        return false;
    };
    mac.update(given);
    mac.verify_slice(&hmac(KEY, expected)).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The test vector GitHub publishes in "Validating webhook deliveries".
    #[test]
    fn githubs_documented_test_vector_verifies() {
        let secret = b"It's a Secret to Everybody";
        let body = b"Hello, World!";
        let expected = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
        assert_eq!(sign_sha256(secret, body), expected);
        let hex = expected.trim_start_matches("sha256=");
        assert!(verify_hex(secret, body, hex));
        assert!(verify_hex(secret, body, &hex.to_uppercase()));
        assert!(!verify_hex(b"It's a Secret to Everybody!", body, hex));
        assert!(!verify_hex(secret, b"Hello, World", hex));
        assert!(!verify_hex(secret, body, &hex[..62]));
        assert!(!verify_hex(secret, body, "not hex"));
        assert!(!verify_hex(secret, body, ""));
    }

    #[test]
    fn tokens_compare_whole() {
        assert!(tokens_equal(b"s3cret", b"s3cret"));
        assert!(!tokens_equal(b"s3cret", b"s3cre"));
        assert!(!tokens_equal(b"s3cret", b"s3cret "));
        assert!(!tokens_equal(b"s3cret", b"S3cret"));
        assert!(!tokens_equal(b"s3cret", b""));
    }
}
