//! Listener rules as ALB has them: conditions (host, path, header, method,
//! query string, source IP) that must all match, and one action (forward,
//! redirect, fixed response); the priority-ordered route table compiled from
//! them, with the listener's default action.
//!
//! Everything a request is matched against is compiled once when the rules
//! are set: patterns are tokenized (lowercased where ALB matches without
//! case), header names parsed, CIDRs masked. Matching a request allocates
//! nothing; only a redirect builds its `Location`.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Uri, header::HOST};

use crate::access_log::AccessLogSink;
use crate::target_group::TargetGroup;

/// One listener rule: a request that meets every condition gets the action.
/// Rules are tried by ascending `priority`; the first match wins.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Rule {
    pub priority: u32,
    pub conditions: Conditions,
    pub action: Action,
}

impl Rule {
    /// The classic rule: requests whose path matches `path` go to the
    /// target group named `target_group`.
    pub fn new(priority: u32, path: impl Into<String>, target_group: impl Into<String>) -> Self {
        Self {
            priority,
            conditions: Conditions {
                path: vec![path.into()],
                ..Conditions::default()
            },
            action: Action::Forward {
                target_group: target_group.into(),
            },
        }
    }

    /// The target group the rule forwards to, if it forwards (the first
    /// of a weighted forward's).
    pub fn target_group(&self) -> Option<&str> {
        match &self.action {
            Action::Forward { target_group } => Some(target_group),
            Action::WeightedForward { target_groups } => {
                target_groups.first().map(|(name, _)| name.as_str())
            }
            _ => None,
        }
    }

    /// A short name for metrics: the path patterns, or the priority when
    /// the rule has no path condition.
    pub fn label(&self) -> String {
        if self.conditions.path.is_empty() {
            format!("priority {}", self.priority)
        } else {
            self.conditions.path.join(",")
        }
    }
}

/// What a request must match; every non-empty condition must hold, and
/// within one condition any value may match. No condition at all matches
/// every request (the spec layer refuses that for a rule, as ALB does).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Conditions {
    /// Host patterns (`*`, `?`), without case, the port ignored.
    pub host: Vec<String>,
    /// ALB path patterns, case-sensitive, on the path only.
    pub path: Vec<String>,
    /// Header name and value patterns (`*`, `?`, without case); any value
    /// of any line of the header may match.
    pub header: Vec<(String, Vec<String>)>,
    /// Methods, exactly (case-sensitive, as HTTP methods are).
    pub method: Vec<String>,
    /// Query string pairs: an optional key pattern and a value pattern
    /// (`*`, `?`, without case), matched against the raw (still
    /// percent-encoded) pairs.
    pub query: Vec<(Option<String>, String)>,
    /// The TCP peer's address, in any of these blocks.
    pub source_ip: Vec<Cidr>,
}

/// An IPv4 or IPv6 block such as `10.0.0.0/8` or `2001:db8::/32`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Parses `ADDRESS/PREFIX`; host bits must be zero, as ALB requires.
    pub fn parse(text: &str) -> Result<Cidr, String> {
        let (address, prefix) = text
            .split_once('/')
            .ok_or_else(|| format!("`{text}` is not a CIDR block such as 10.0.0.0/8"))?;
        let network: IpAddr = address
            .parse()
            .map_err(|_| format!("`{address}` in `{text}` is not an IP address"))?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix: u8 = prefix
            .parse()
            .ok()
            .filter(|&p| p <= max)
            .ok_or_else(|| format!("the prefix of `{text}` must be 0 to {max}"))?;
        let cidr = Cidr { network, prefix };
        if cidr.mask(network) != to_bits(network) {
            return Err(format!("`{text}` has host bits set after /{prefix}"));
        }
        Ok(cidr)
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        ip.is_ipv4() == self.network.is_ipv4() && self.mask(ip) == to_bits(self.network)
    }

    fn mask(&self, ip: IpAddr) -> u128 {
        let width = if ip.is_ipv4() { 32 } else { 128 };
        let bits = to_bits(ip);
        let host_bits = width - u32::from(self.prefix);
        if host_bits >= 128 {
            0
        } else {
            bits >> host_bits << host_bits
        }
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

fn to_bits(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

/// What a matched request gets.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    Forward {
        target_group: String,
    },
    /// ALB's weighted forward: each request to one of the groups, in
    /// proportion to the weights (0 to 999; a 0 gets nothing), smoothly
    /// interleaved, exactly over each cycle of the weights' sum.
    WeightedForward {
        target_groups: Vec<(String, u32)>,
    },
    Redirect(Redirect),
    FixedResponse(FixedResponse),
}

/// An ALB redirect. Each component may use the placeholders `#{protocol}`,
/// `#{host}`, `#{port}`, `#{path}` (the path without its leading `/`) and
/// `#{query}`; `None` keeps the request's own (`#{protocol}`, `#{host}`,
/// `#{port}`, `/#{path}`, `#{query}`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Redirect {
    /// `http`, `https` or `#{protocol}`.
    pub protocol: Option<String>,
    pub host: Option<String>,
    pub port: Option<String>,
    pub path: Option<String>,
    pub query: Option<String>,
    /// 301 or 302.
    pub status: u16,
}

/// A response of the load balancer itself.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct FixedResponse {
    /// 2xx, 4xx or 5xx.
    pub status: u16,
    pub content_type: Option<String>,
    pub body: String,
}

/// A compiled path pattern. Matching works on the path's UTF-8 bytes so the
/// common ASCII path costs no decoding; `?` still consumes one whole character.
#[derive(Clone, Debug)]
pub(crate) struct PathPattern {
    tokens: Vec<Token>,
    /// `*` and `/*` match every path; checking this first keeps the usual
    /// catch-all rule free.
    matches_all: bool,
    /// Match without ASCII case (hosts, header values, query strings); the
    /// pattern's bytes are lowercased at compile time.
    fold: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Token {
    Byte(u8),
    AnyChar,
    Star,
}

impl PathPattern {
    pub(crate) fn new(pattern: &str) -> Self {
        Self::compile(pattern, false)
    }

    /// A pattern matched without ASCII case.
    pub(crate) fn caseless(pattern: &str) -> Self {
        Self::compile(pattern, true)
    }

    fn compile(pattern: &str, fold: bool) -> Self {
        let mut tokens = Vec::with_capacity(pattern.len());
        for &b in pattern.as_bytes() {
            let token = match b {
                b'*' => Token::Star,
                b'?' => Token::AnyChar,
                b if fold => Token::Byte(b.to_ascii_lowercase()),
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
            fold,
        }
    }

    pub(crate) fn matches(&self, path: &str) -> bool {
        if self.matches_all {
            return path.starts_with('/') || self.tokens == [Token::Star];
        }
        glob(&self.tokens, path.as_bytes(), self.fold)
    }

    /// Matches any text (a host, a header value): only `*` is universal.
    pub(crate) fn matches_text(&self, text: &str) -> bool {
        self.tokens == [Token::Star] || glob(&self.tokens, text.as_bytes(), self.fold)
    }
}

/// Wildcard matching with single-star backtracking: on a mismatch, the most
/// recent `*` absorbs one more byte and matching resumes after it. Segments
/// between stars match deterministically, so remembering only the last star
/// is enough.
fn glob(pattern: &[Token], text: &[u8], fold: bool) -> bool {
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
                Token::Byte(b) if b == text[t] || (fold && b == text[t].to_ascii_lowercase()) => {
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

/// What the route table needs to know of a request.
pub(crate) struct RequestView<'a> {
    pub(crate) method: &'a Method,
    pub(crate) uri: &'a Uri,
    pub(crate) headers: &'a HeaderMap,
    pub(crate) peer: IpAddr,
    /// Whether the request came over TLS (`#{protocol}`).
    pub(crate) tls: bool,
    /// The listener's port, for `#{port}` when the Host header has none.
    pub(crate) local_port: u16,
}

impl RequestView<'_> {
    /// The Host header (or the absolute URI's authority) without its port.
    fn host(&self) -> Option<&str> {
        let host = match self.headers.get(HOST).and_then(|h| h.to_str().ok()) {
            Some(host) => host,
            None => self.uri.host()?,
        };
        Some(split_port(host).0)
    }

    fn port(&self) -> u16 {
        self.headers
            .get(HOST)
            .and_then(|h| h.to_str().ok())
            .and_then(|host| split_port(host).1)
            .and_then(|port| port.parse().ok())
            .unwrap_or(self.local_port)
    }
}

/// Splits `host:port`, minding IPv6 literals (`[::1]:8080`).
fn split_port(host: &str) -> (&str, Option<&str>) {
    if host.starts_with('[') {
        return match host.find(']') {
            Some(end) => (&host[..=end], host[end + 1..].strip_prefix(':')),
            None => (host, None),
        };
    }
    match host.rsplit_once(':') {
        Some((name, port)) => (name, Some(port)),
        None => (host, None),
    }
}

/// A rule's conditions, compiled.
struct Matcher {
    hosts: Vec<PathPattern>,
    paths: Vec<PathPattern>,
    headers: Vec<(HeaderName, Vec<PathPattern>)>,
    methods: Vec<Method>,
    query: Vec<(Option<PathPattern>, PathPattern)>,
    source_ip: Vec<Cidr>,
}

impl Matcher {
    /// Header names and methods the spec layer checked; one that still
    /// does not parse can match nothing, so the rule keeps it as a header
    /// no request has.
    fn new(conditions: &Conditions) -> Self {
        let caseless = |values: &[String]| -> Vec<PathPattern> {
            values.iter().map(|v| PathPattern::caseless(v)).collect()
        };
        Self {
            hosts: caseless(&conditions.host),
            paths: conditions
                .path
                .iter()
                .map(|p| PathPattern::new(p))
                .collect(),
            headers: conditions
                .header
                .iter()
                .map(|(name, values)| {
                    let name = HeaderName::from_bytes(name.as_bytes())
                        .unwrap_or(HeaderName::from_static("x-gantry-invalid-header-name"));
                    (name, caseless(values))
                })
                .collect(),
            methods: conditions
                .method
                .iter()
                .filter_map(|m| Method::from_bytes(m.as_bytes()).ok())
                .collect(),
            query: conditions
                .query
                .iter()
                .map(|(key, value)| {
                    (
                        key.as_deref().map(PathPattern::caseless),
                        PathPattern::caseless(value),
                    )
                })
                .collect(),
            source_ip: conditions.source_ip.clone(),
        }
    }

    /// The cheap checks first: method, path, source IP, then host, headers
    /// and the query string.
    fn matches(&self, request: &RequestView<'_>) -> bool {
        if !self.methods.is_empty() && !self.methods.contains(request.method) {
            return false;
        }
        if !self.paths.is_empty() {
            let path = request.uri.path();
            if !self.paths.iter().any(|p| p.matches(path)) {
                return false;
            }
        }
        if !self.source_ip.is_empty() && !self.source_ip.iter().any(|c| c.contains(request.peer)) {
            return false;
        }
        if !self.hosts.is_empty() {
            let Some(host) = request.host() else {
                return false;
            };
            if !self.hosts.iter().any(|p| p.matches_text(host)) {
                return false;
            }
        }
        for (name, values) in &self.headers {
            let found = request.headers.get_all(name).iter().any(|value| {
                value
                    .to_str()
                    .is_ok_and(|value| values.iter().any(|p| p.matches_text(value.trim())))
            });
            if !found {
                return false;
            }
        }
        if !self.query.is_empty() {
            let query = request.uri.query().unwrap_or("");
            let found = self.query.iter().any(|(key, value)| {
                query.split('&').any(|pair| {
                    let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                    key.as_ref().is_none_or(|key| key.matches_text(k)) && value.matches_text(v)
                })
            });
            if !found {
                return false;
            }
        }
        true
    }
}

/// An action, resolved: a forward holds its target group.
pub(crate) enum RouteAction {
    Forward(TargetGroup),
    Weighted(Weighted),
    Redirect(Redirect),
    Fixed {
        status: http::StatusCode,
        content_type: HeaderValue,
        body: Bytes,
    },
}

impl RouteAction {
    fn new(action: &Action, group: impl Fn(&str) -> TargetGroup) -> Self {
        match action {
            Action::Forward { target_group } => Self::Forward(group(target_group)),
            Action::WeightedForward { target_groups } => Self::Weighted(Weighted::new(
                target_groups
                    .iter()
                    .map(|(name, weight)| (group(name), *weight))
                    .collect(),
            )),
            Action::Redirect(redirect) => Self::Redirect(redirect.clone()),
            Action::FixedResponse(fixed) => Self::Fixed {
                status: http::StatusCode::from_u16(fixed.status)
                    .unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR),
                content_type: fixed
                    .content_type
                    .as_deref()
                    .and_then(|c| HeaderValue::from_str(c).ok())
                    .unwrap_or(HeaderValue::from_static("text/plain")),
                body: Bytes::from(fixed.body.clone()),
            },
        }
    }
}

/// A weighted forward's groups and the order requests go to them: smooth
/// weighted round-robin (nginx's, as target selection uses) laid out once
/// for one cycle of the weights' sum, then walked with one atomic counter,
/// so picking costs no lock.
pub(crate) struct Weighted {
    groups: Vec<TargetGroup>,
    /// Indices into `groups`, one per unit of weight.
    cycle: Vec<u16>,
    next: AtomicU64,
}

impl Weighted {
    fn new(groups: Vec<(TargetGroup, u32)>) -> Self {
        let total: i64 = groups.iter().map(|(_, w)| i64::from(*w)).sum();
        let mut current = vec![0i64; groups.len()];
        let mut cycle = Vec::with_capacity(usize::try_from(total).unwrap_or(0));
        for _ in 0..total {
            for (value, (_, weight)) in current.iter_mut().zip(&groups) {
                *value += i64::from(*weight);
            }
            let Some((best, _)) = current
                .iter()
                .enumerate()
                .max_by_key(|&(index, value)| (*value, std::cmp::Reverse(index)))
            else {
                break;
            };
            current[best] -= total;
            cycle.push(u16::try_from(best).unwrap_or(0));
        }
        Self {
            groups: groups.into_iter().map(|(group, _)| group).collect(),
            cycle,
            next: AtomicU64::new(0),
        }
    }

    /// The group the next request goes to; `None` when every weight is 0.
    pub(crate) fn pick(&self) -> Option<&TargetGroup> {
        let len = u64::try_from(self.cycle.len()).ok().filter(|&l| l > 0)?;
        let at = self.next.fetch_add(1, Relaxed) % len;
        let index = self.cycle[usize::try_from(at).ok()?];
        self.groups.get(usize::from(index))
    }
}

impl Redirect {
    /// The `Location` for `request`: each component with its placeholders
    /// filled in, the port left out when it is the protocol's own.
    pub(crate) fn location(&self, request: &RequestView<'_>) -> String {
        let protocol = if request.tls { "https" } else { "http" };
        let port = request.port().to_string();
        let host = request.host().unwrap_or("");
        let path = request.uri.path();
        let path = path.strip_prefix('/').unwrap_or(path);
        let query = request.uri.query().unwrap_or("");
        let fill = |template: &str| {
            template
                .replace("#{protocol}", protocol)
                .replace("#{host}", host)
                .replace("#{port}", &port)
                .replace("#{path}", path)
                .replace("#{query}", query)
        };
        let to_protocol =
            fill(self.protocol.as_deref().unwrap_or("#{protocol}")).to_ascii_lowercase();
        let to_host = fill(self.host.as_deref().unwrap_or("#{host}"));
        let to_port = fill(self.port.as_deref().unwrap_or("#{port}"));
        let to_path = fill(self.path.as_deref().unwrap_or("/#{path}"));
        let to_query = fill(self.query.as_deref().unwrap_or("#{query}"));
        let default_port = if to_protocol == "https" { "443" } else { "80" };
        let mut location = format!("{to_protocol}://{to_host}");
        if to_port != default_port {
            location.push(':');
            location.push_str(&to_port);
        }
        if !to_path.starts_with('/') {
            location.push('/');
        }
        location.push_str(&to_path);
        if !to_query.is_empty() {
            location.push('?');
            location.push_str(&to_query);
        }
        location
    }
}

/// The rules of one listener, sorted by priority, with their target groups
/// resolved so the request path never looks a name up.
pub(crate) struct RouteTable {
    routes: Vec<Route>,
    /// The listener's default action; `None` is the fixed 404.
    default: Option<RouteAction>,
    /// Requests no rule matched (the default action's).
    unmatched: Arc<AtomicU64>,
    /// Where the listener's access records go, if anywhere.
    access_log: Option<Arc<dyn AccessLogSink>>,
}

struct Route {
    priority: u32,
    matcher: Matcher,
    action: RouteAction,
    /// Requests this rule matched; kept by the listener across rule
    /// updates that keep the rule.
    requests: Arc<AtomicU64>,
}

impl RouteTable {
    /// Sorts by priority. ALB refuses duplicate priorities; the spec layer
    /// validates that, and here a stable sort keeps the caller's order for ties
    /// so the outcome is still deterministic.
    pub(crate) fn new(
        mut rules: Vec<(Rule, Arc<AtomicU64>)>,
        default: Option<&Action>,
        group: impl Fn(&str) -> TargetGroup,
        unmatched: Arc<AtomicU64>,
    ) -> Self {
        rules.sort_by_key(|(rule, _)| rule.priority);
        let routes = rules
            .into_iter()
            .map(|(rule, requests)| Route {
                priority: rule.priority,
                matcher: Matcher::new(&rule.conditions),
                action: RouteAction::new(&rule.action, &group),
                requests,
            })
            .collect();
        Self {
            routes,
            default: default.map(|action| RouteAction::new(action, &group)),
            unmatched,
            access_log: None,
        }
    }

    /// The table with the listener's access log sink.
    pub(crate) fn with_access_log(mut self, sink: Option<Arc<dyn AccessLogSink>>) -> Self {
        self.access_log = sink;
        self
    }

    pub(crate) fn access_log(&self) -> Option<&Arc<dyn AccessLogSink>> {
        self.access_log.as_ref()
    }

    /// No rules, the fixed 404: a listener's table before its first rules.
    pub(crate) fn empty(unmatched: Arc<AtomicU64>) -> Self {
        Self {
            routes: Vec::new(),
            default: None,
            unmatched,
            access_log: None,
        }
    }

    /// The action of the first rule matching `request` with the rule's
    /// priority, else the default action (`None`: the fixed 404) and no
    /// priority. Counts the request against the rule.
    pub(crate) fn route(&self, request: &RequestView<'_>) -> (Option<&RouteAction>, Option<u32>) {
        let found = self
            .routes
            .iter()
            .find(|route| route.matcher.matches(request));
        match found {
            Some(route) => {
                route.requests.fetch_add(1, Relaxed);
                (Some(&route.action), Some(route.priority))
            }
            None => {
                self.unmatched.fetch_add(1, Relaxed);
                (self.default.as_ref(), None)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

#[cfg(test)]
mod condition_tests {
    use super::*;

    #[test]
    fn caseless_patterns_match_hosts_and_values_without_case() {
        let host = PathPattern::caseless("API.*.example");
        assert!(host.matches_text("api.eu.Example"));
        assert!(!host.matches_text("www.eu.example"));
        assert!(PathPattern::caseless("*").matches_text("anything"));
        assert!(PathPattern::caseless("a?c").matches_text("ABC"));
    }

    #[test]
    fn cidrs_contain_their_addresses_v4_and_v6() {
        let v4 = Cidr::parse("10.1.0.0/16").unwrap();
        assert!(v4.contains("10.1.200.3".parse().unwrap()));
        assert!(!v4.contains("10.2.0.1".parse().unwrap()));
        assert!(v4.contains("::ffff:10.1.0.1".parse().unwrap()));
        let v6 = Cidr::parse("2001:db8::/32").unwrap();
        assert!(v6.contains("2001:db8:1::1".parse().unwrap()));
        assert!(!v6.contains("10.1.0.1".parse().unwrap()));
        assert!(
            Cidr::parse("0.0.0.0/0")
                .unwrap()
                .contains("8.8.8.8".parse().unwrap())
        );
        assert!(Cidr::parse("10.1.0.1/16").is_err());
        assert!(Cidr::parse("10.1.0.0/33").is_err());
        assert!(Cidr::parse("10.1.0.0").is_err());
    }

    #[test]
    fn ports_split_from_hosts_and_ipv6_literals() {
        assert_eq!(split_port("a.example:8080"), ("a.example", Some("8080")));
        assert_eq!(split_port("a.example"), ("a.example", None));
        assert_eq!(split_port("[::1]:443"), ("[::1]", Some("443")));
        assert_eq!(split_port("[::1]"), ("[::1]", None));
    }

    #[tokio::test]
    async fn a_weighted_forward_interleaves_exactly_by_weight() {
        let group = |name: &str| {
            TargetGroup::new(
                name,
                tokio::runtime::Handle::current(),
                tokio_util::sync::CancellationToken::new(),
            )
        };
        let weighted = Weighted::new(vec![(group("a"), 3), (group("b"), 1), (group("zero"), 0)]);
        let picks: Vec<String> = (0..8)
            .map(|_| weighted.pick().unwrap().name().to_owned())
            .collect();
        // Smooth: b comes once in every four, never in a run of a's end.
        assert_eq!(picks, ["a", "a", "b", "a", "a", "a", "b", "a"]);
        let none = Weighted::new(vec![(group("z"), 0)]);
        assert!(none.pick().is_none());
    }
}
