//! Secret masking: every occurrence of a secret value becomes `***`.

use std::borrow::Cow;
use std::sync::{Mutex, PoisonError};

/// What a masked secret is replaced with, as CodeBuild does.
pub const MASK: &str = "***";

/// Values every build of this process masks (see [`mask_everywhere`]).
static EVERYWHERE: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Masks `value` in the log, the error text and the test reports of every
/// build this process starts from now on, as if each build had it among its
/// secrets (it is not set as a variable). This is for values the process
/// itself holds that no build may ever show, such as the parameter store's
/// master key: a build could find them elsewhere (a file readable by
/// gantry's user), and then at least the log does not keep them.
pub fn mask_everywhere(value: impl Into<String>) {
    let value = value.into();
    let mut values = EVERYWHERE.lock().unwrap_or_else(PoisonError::into_inner);
    if !values.contains(&value) {
        values.push(value);
    }
}

/// The values registered with [`mask_everywhere`].
pub(crate) fn masked_everywhere() -> Vec<String> {
    EVERYWHERE
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone()
}

/// Replaces secret values by [`MASK`] in text.
///
/// Rules (decisions, documented in the crate docs):
/// - empty secrets are ignored, and so are secrets shorter than
///   [`Masker::MIN_SECRET_LEN`] bytes: masking `a` or `12` would turn every
///   log into noise while protecting nothing a guess could not find;
/// - a multi-line secret is masked as a whole and also line by line, because
///   logs are masked one line at a time and a secret spanning lines would
///   otherwise never match;
/// - every byte covered by any occurrence of any secret is hidden: matches
///   are collected on the original text, overlapping ones merged, so two
///   secrets sharing characters cannot leave a fragment of one visible.
#[derive(Debug, Clone, Default)]
pub struct Masker {
    /// Longest first, deduplicated.
    needles: Vec<String>,
}

impl Masker {
    /// Secrets shorter than this (in bytes) are not masked.
    pub const MIN_SECRET_LEN: usize = 3;

    pub fn new<I, S>(secrets: I) -> Masker
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut needles = Vec::new();
        for secret in secrets {
            let secret = secret.as_ref();
            needles.push(secret.to_owned());
            if secret.contains('\n') {
                needles.extend(secret.lines().map(|l| l.trim_end_matches('\r').to_owned()));
            }
        }
        needles.retain(|n| n.len() >= Self::MIN_SECRET_LEN);
        needles.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        needles.dedup();
        Masker { needles }
    }

    /// True when nothing will ever be masked.
    pub fn is_empty(&self) -> bool {
        self.needles.is_empty()
    }

    /// Length in bytes of the longest secret (0 when there is none).
    pub fn longest(&self) -> usize {
        self.needles.first().map_or(0, String::len)
    }

    /// `text` with every secret replaced by `***`.
    pub fn mask<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let mut ranges: Vec<(usize, usize)> = Vec::new();
        for needle in &self.needles {
            ranges.extend(
                text.match_indices(needle.as_str())
                    .map(|(i, m)| (i, i + m.len())),
            );
        }
        if ranges.is_empty() {
            return Cow::Borrowed(text);
        }
        ranges.sort_unstable();
        let mut out = String::with_capacity(text.len());
        let mut written = 0;
        let mut iter = ranges.into_iter().peekable();
        while let Some((start, mut end)) = iter.next() {
            while let Some(&(next_start, next_end)) = iter.peek() {
                if next_start >= end {
                    break;
                }
                end = end.max(next_end);
                iter.next();
            }
            out.push_str(&text[written..start]);
            out.push_str(MASK);
            written = end;
        }
        out.push_str(&text[written..]);
        Cow::Owned(out)
    }

    /// Byte ranges of secret occurrences in `bytes` (which need not be valid
    /// UTF-8). Used only where a long line is cut, to move the cut out of a
    /// secret, so the simple search is fast enough.
    pub(crate) fn byte_matches(&self, bytes: &[u8]) -> Vec<(usize, usize)> {
        let mut found = Vec::new();
        for needle in &self.needles {
            let needle = needle.as_bytes();
            let mut from = 0;
            while let Some(at) = find_bytes(&bytes[from..], needle) {
                found.push((from + at, from + at + needle.len()));
                from += at + 1;
            }
        }
        found
    }
}

/// Naive substring search over bytes.
pub(crate) fn find_bytes(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || hay.len() < needle.len() {
        return None;
    }
    let first = needle[0];
    let last_start = hay.len() - needle.len();
    let mut i = 0;
    while i <= last_start {
        match hay[i..=last_start].iter().position(|&b| b == first) {
            None => return None,
            Some(off) => {
                i += off;
                if &hay[i..i + needle.len()] == needle {
                    return Some(i);
                }
                i += 1;
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_every_occurrence_and_leaves_other_text() {
        let m = Masker::new(["hunter2"]);
        assert_eq!(m.mask("pw=hunter2 again hunter2."), "pw=*** again ***.");
        assert!(matches!(m.mask("nothing here"), Cow::Borrowed(_)));
    }

    #[test]
    fn longer_secret_containing_a_shorter_one_is_masked_whole() {
        let m = Masker::new(["abc", "abcdef"]);
        assert_eq!(m.mask("xabcdefx abc"), "x***x ***");
    }

    #[test]
    fn overlapping_secrets_leave_no_fragment() {
        let m = Masker::new(["abcd", "cdef"]);
        assert_eq!(m.mask("abcdef"), "***");
    }

    #[test]
    fn empty_and_short_secrets_are_ignored() {
        let m = Masker::new(["", "a", "12"]);
        assert!(m.is_empty());
        assert_eq!(m.mask("a12"), "a12");
    }

    #[test]
    fn multi_line_secret_is_masked_line_by_line() {
        let m = Masker::new(["-----BEGIN KEY-----\nsecretbody\n-----END KEY-----"]);
        assert_eq!(m.mask("secretbody"), "***");
        assert_eq!(m.mask("-----END KEY-----"), "***");
    }

    #[test]
    fn byte_matches_finds_overlapping_positions() {
        let m = Masker::new(["aaa"]);
        assert_eq!(m.byte_matches(b"aaaa"), vec![(0, 3), (1, 4)]);
        assert_eq!(find_bytes(b"xxsecret", b"secret"), Some(2));
        assert_eq!(find_bytes(b"sec", b"secret"), None);
    }
}
