//! Listener rules: ALB path patterns and the priority-ordered route table.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::target_group::TargetGroup;

/// One listener rule: requests whose path matches `path` go to the target
/// group named `target_group`. Rules are tried by ascending `priority`; the
/// first match wins.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Rule {
    pub priority: u32,
    /// An ALB path pattern: `*` matches zero or more characters, `?` exactly
    /// one; everything else matches itself, case-sensitively. It is matched
    /// against the path only, never the query string.
    pub path: String,
    pub target_group: String,
}

impl Rule {
    pub fn new(priority: u32, path: impl Into<String>, target_group: impl Into<String>) -> Self {
        Self {
            priority,
            path: path.into(),
            target_group: target_group.into(),
        }
    }
}

/// A compiled path pattern. Matching works on the path's UTF-8 bytes so the
/// common ASCII path costs no decoding; `?` still consumes one whole character.
#[derive(Clone, Debug)]
pub(crate) struct PathPattern {
    tokens: Vec<Token>,
    /// `*` and `/*` match every path; checking this first keeps the usual
    /// catch-all rule free.
    matches_all: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Token {
    Byte(u8),
    AnyChar,
    Star,
}

impl PathPattern {
    pub(crate) fn new(pattern: &str) -> Self {
        let mut tokens = Vec::with_capacity(pattern.len());
        for &b in pattern.as_bytes() {
            let token = match b {
                b'*' => Token::Star,
                b'?' => Token::AnyChar,
                b => Token::Byte(b),
            };
            // Consecutive stars match what one star matches; folding them keeps
            // backtracking linear in practice.
            if token == Token::Star && tokens.last() == Some(&Token::Star) {
                continue;
            }
            tokens.push(token);
        }
        // Every request path starts with '/', so "/*" is as universal as "*".
        let matches_all = matches!(
            tokens.as_slice(),
            [Token::Star] | [Token::Byte(b'/'), Token::Star]
        );
        Self {
            tokens,
            matches_all,
        }
    }

    pub(crate) fn matches(&self, path: &str) -> bool {
        if self.matches_all {
            return path.starts_with('/') || self.tokens == [Token::Star];
        }
        glob(&self.tokens, path.as_bytes())
    }
}

/// Wildcard matching with single-star backtracking: on a mismatch, the most
/// recent `*` absorbs one more byte and matching resumes after it. Segments
/// between stars match deterministically, so remembering only the last star
/// is enough.
fn glob(pattern: &[Token], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if let Some(&token) = pattern.get(p) {
            match token {
                Token::Star => {
                    star = Some((p + 1, t));
                    p += 1;
                    continue;
                }
                // A '?' may only start at a character boundary, or a star that
                // stopped inside a multi-byte character could split it.
                Token::AnyChar if !is_continuation(text[t]) => {
                    p += 1;
                    t += utf8_len(text[t]).min(text.len() - t);
                    continue;
                }
                Token::Byte(b) if b == text[t] => {
                    p += 1;
                    t += 1;
                    continue;
                }
                _ => {}
            }
        }
        match star {
            Some((after_star, absorbed_until)) => {
                p = after_star;
                t = absorbed_until + 1;
                star = Some((after_star, t));
            }
            None => return false,
        }
    }
    pattern[p..].iter().all(|&token| token == Token::Star)
}

fn is_continuation(b: u8) -> bool {
    b & 0b1100_0000 == 0b1000_0000
}

fn utf8_len(lead: u8) -> usize {
    match lead {
        0xF0.. => 4,
        0xE0.. => 3,
        0xC0.. => 2,
        _ => 1,
    }
}

/// The rules of one listener, sorted by priority, with their target groups
/// resolved so the request path never looks a name up.
pub(crate) struct RouteTable {
    routes: Vec<Route>,
    /// Requests no rule matched (the default action's 404s).
    unmatched: Arc<AtomicU64>,
}

struct Route {
    pattern: PathPattern,
    group: TargetGroup,
    /// Requests this rule matched; kept by the listener across rule
    /// updates that keep the rule.
    requests: Arc<AtomicU64>,
}

impl RouteTable {
    /// Sorts by priority. ALB refuses duplicate priorities; the spec layer
    /// validates that, and here a stable sort keeps the caller's order for ties
    /// so the outcome is still deterministic.
    pub(crate) fn new(
        mut rules: Vec<(Rule, TargetGroup, Arc<AtomicU64>)>,
        unmatched: Arc<AtomicU64>,
    ) -> Self {
        rules.sort_by_key(|(rule, _, _)| rule.priority);
        let routes = rules
            .into_iter()
            .map(|(rule, group, requests)| Route {
                pattern: PathPattern::new(&rule.path),
                group,
                requests,
            })
            .collect();
        Self { routes, unmatched }
    }

    /// The target group of the first rule matching `path`, or `None` for the
    /// listener's default action (a fixed 404). Counts the request against
    /// the rule.
    pub(crate) fn route(&self, path: &str) -> Option<&TargetGroup> {
        let found = self.routes.iter().find(|route| route.pattern.matches(path));
        match found {
            Some(route) => {
                route.requests.fetch_add(1, Relaxed);
                Some(&route.group)
            }
            None => {
                self.unmatched.fetch_add(1, Relaxed);
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::PathPattern;

    fn check(pattern: &str, cases: &[(&str, bool)]) {
        let compiled = PathPattern::new(pattern);
        for &(path, expected) in cases {
            assert_eq!(
                compiled.matches(path),
                expected,
                "pattern {pattern:?} against {path:?}"
            );
        }
    }

    #[test]
    fn literal_patterns_match_exactly_and_case_sensitively() {
        check(
            "/api",
            &[
                ("/api", true),
                ("/API", false),
                ("/api/", false),
                ("/ap", false),
            ],
        );
    }

    #[test]
    fn star_matches_zero_or_more_characters() {
        check(
            "/api/*",
            &[
                ("/api/", true),
                ("/api/v1/users", true),
                ("/api", false),
                ("/apix/", false),
            ],
        );
        check(
            "/img/*.png",
            &[
                ("/img/a.png", true),
                ("/img/a/b/c.png", true),
                ("/img/.png", true),
                ("/img/a.png.bak", false),
                ("/img/a.png/x.png", true),
            ],
        );
        check("*/edit", &[("/doc/1/edit", true), ("/doc/1/view", false)]);
        check("/a**b", &[("/ab", true), ("/axxb", true), ("/axxc", false)]);
    }

    #[test]
    fn question_mark_matches_exactly_one_character() {
        check(
            "/v?/users",
            &[
                ("/v1/users", true),
                ("/v2/users", true),
                ("/v/users", false),
                ("/v10/users", false),
                ("/vé/users", true),
            ],
        );
        check("/??", &[("/ab", true), ("/a", false), ("/abc", false)]);
    }

    #[test]
    fn star_does_not_split_multibyte_characters_for_question_mark() {
        // Two characters "é" and "x"; "*?x" needs '?' to take "é" whole.
        check("/*?x", &[("/éx", true), ("/x", false)]);
    }

    #[test]
    fn catch_all_patterns_match_every_path() {
        check("*", &[("/", true), ("/anything/at/all", true), ("", true)]);
        check("/*", &[("/", true), ("/anything", true)]);
    }
}
