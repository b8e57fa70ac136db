//! Active health checks: the configuration, the status matcher, and the
//! probe that one target's checker runs on every interval (an HTTP GET, or
//! a [`CommandCheck`] its owner runs).

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONNECTION, HOST, USER_AGENT};
use http::{HeaderValue, Request, StatusCode};
use http_body_util::Empty;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::error::ProxyError;

/// How a target group checks its targets. Mirrors an ALB target group's
/// health check settings plus ECS's health check grace period.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HealthCheckConfig {
    /// Path (and optional query) of the GET request; it must start with '/'.
    pub path: String,
    /// Time between the start of two checks of one target.
    pub interval: Duration,
    /// A check that has no response headers after this long fails.
    pub timeout: Duration,
    /// Consecutive successes that make a target Healthy.
    pub healthy_threshold: u32,
    /// Consecutive failures that make a target Unhealthy.
    pub unhealthy_threshold: u32,
    /// Which response statuses count as success.
    pub matcher: StatusMatcher,
    /// Failures within this time after a target's registration are ignored,
    /// so a slow-starting service is not marked Unhealthy while it boots.
    /// Successes count during the grace period.
    pub grace: Duration,
    /// Instead of the HTTP GET: a check the caller runs for a target (its
    /// id), such as a command inside the replica; `path` and `matcher` are
    /// then unused. Bounded by `timeout` like the GET.
    pub command: Option<CommandCheck>,
}

/// What a [`CommandCheck`] returns: `Ok` healthy, `Err` why not.
pub type CheckFuture = std::pin::Pin<Box<dyn Future<Output = Result<(), String>> + Send>>;

/// A health check the load balancer's owner runs for a target, given its
/// id.
#[derive(Clone)]
pub struct CommandCheck(pub std::sync::Arc<dyn Fn(String) -> CheckFuture + Send + Sync>);

impl fmt::Debug for CommandCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CommandCheck")
    }
}

/// Two checks are the same when they are the same closure.
impl PartialEq for CommandCheck {
    fn eq(&self, other: &Self) -> bool {
        std::sync::Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for CommandCheck {}

impl Default for HealthCheckConfig {
    /// ALB's defaults for an HTTP target group, except the matcher, which
    /// accepts 200-399 so redirects from a login page or a trailing-slash
    /// rule don't fail the check.
    fn default() -> Self {
        Self {
            path: "/".to_owned(),
            interval: Duration::from_secs(30),
            timeout: Duration::from_secs(5),
            healthy_threshold: 5,
            unhealthy_threshold: 2,
            matcher: StatusMatcher::default(),
            grace: Duration::ZERO,
            command: None,
        }
    }
}

impl HealthCheckConfig {
    /// Every problem at once, so a caller can report them together.
    pub(crate) fn validate(&self) -> Result<(), Vec<String>> {
        let mut problems = Vec::new();
        if self.command.is_some() {
            // No request is made: the path is not used.
        } else if !self.path.starts_with('/') {
            problems.push(format!("path {:?} must start with '/'", self.path));
        } else if self.path.parse::<http::uri::PathAndQuery>().is_err() {
            problems.push(format!("path {:?} is not a valid request path", self.path));
        }
        if self.interval.is_zero() {
            problems.push("interval must be positive".to_owned());
        }
        if self.timeout.is_zero() {
            problems.push("timeout must be positive".to_owned());
        }
        if self.healthy_threshold == 0 {
            problems.push("healthy_threshold must be at least 1".to_owned());
        }
        if self.unhealthy_threshold == 0 {
            problems.push("unhealthy_threshold must be at least 1".to_owned());
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }
}

/// The set of HTTP statuses a health check accepts, like ALB's matcher
/// (`"200"`, `"200,202"`, `"200-299"`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatusMatcher {
    ranges: Vec<(u16, u16)>,
}

impl Default for StatusMatcher {
    fn default() -> Self {
        Self {
            ranges: vec![(200, 399)],
        }
    }
}

impl StatusMatcher {
    /// Parses a comma-separated list of codes and `low-high` ranges.
    pub fn parse(text: &str) -> Result<Self, ProxyError> {
        let invalid = |reason: String| ProxyError::InvalidMatcher {
            matcher: text.to_owned(),
            reason,
        };
        let code = |s: &str| -> Result<u16, ProxyError> {
            let s = s.trim();
            match s.parse::<u16>() {
                Ok(n) if (100..=599).contains(&n) => Ok(n),
                _ => Err(invalid(format!("{s:?} is not an HTTP status code"))),
            }
        };
        let mut ranges = Vec::new();
        for part in text.split(',') {
            let range = match part.split_once('-') {
                Some((low, high)) => (code(low)?, code(high)?),
                None => {
                    let n = code(part)?;
                    (n, n)
                }
            };
            if range.0 > range.1 {
                return Err(invalid(format!("range {part:?} is empty")));
            }
            ranges.push(range);
        }
        Ok(Self { ranges })
    }

    pub fn matches(&self, status: StatusCode) -> bool {
        let code = status.as_u16();
        self.ranges
            .iter()
            .any(|&(low, high)| (low..=high).contains(&code))
    }
}

impl fmt::Display for StatusMatcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, &(low, high)) in self.ranges.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            if low == high {
                write!(f, "{low}")?;
            } else {
                write!(f, "{low}-{high}")?;
            }
        }
        Ok(())
    }
}

/// One health check: a fresh connection per probe (as ALB does), so a target
/// that stopped accepting connections fails even if old keep-alive
/// connections to it still answer.
pub(crate) async fn probe(
    id: &str,
    addr: SocketAddr,
    config: &HealthCheckConfig,
) -> Result<(), String> {
    if let Some(check) = &config.command {
        return match tokio::time::timeout(config.timeout, (check.0)(id.to_owned())).await {
            Ok(result) => result,
            Err(_) => Err(format!("the check did not end within {:?}", config.timeout)),
        };
    }
    match tokio::time::timeout(config.timeout, probe_once(addr, config)).await {
        Ok(result) => result,
        Err(_) => Err(format!("no response within {:?}", config.timeout)),
    }
}

async fn probe_once(addr: SocketAddr, config: &HealthCheckConfig) -> Result<(), String> {
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect to {addr}: {e}"))?;
    // Without NODELAY, Nagle can hold the small request back long enough to
    // eat into a tight timeout.
    let _ = stream.set_nodelay(true);
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("handshake with {addr}: {e}"))?;
    let host = HeaderValue::from_str(&addr.to_string()).map_err(|e| e.to_string())?;
    let request = Request::get(config.path.as_str())
        .header(HOST, host)
        .header(USER_AGENT, "gantry-health-check/1")
        .header(CONNECTION, "close")
        .body(Empty::<Bytes>::new())
        .map_err(|e| format!("health check request: {e}"))?;
    let mut conn = std::pin::pin!(conn);
    let mut send = std::pin::pin!(sender.send_request(request));
    let response = tokio::select! {
        response = &mut send => response,
        // The connection task may deliver the response and then end (we
        // asked it to close), so a clean end still has an answer waiting.
        closed = &mut conn => match closed {
            Ok(()) => send.await,
            Err(e) => return Err(format!("connection to {addr}: {e}")),
        },
    }
    .map_err(|e| format!("request to {addr}: {e}"))?;
    let status = response.status();
    if config.matcher.matches(status) {
        Ok(())
    } else {
        Err(format!(
            "status {} does not match {}",
            status.as_u16(),
            config.matcher
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matcher_parses_codes_and_ranges() {
        let m = StatusMatcher::parse("200,202-204").unwrap();
        assert!(m.matches(StatusCode::OK));
        assert!(!m.matches(StatusCode::CREATED));
        assert!(m.matches(StatusCode::NO_CONTENT));
        assert_eq!(m.to_string(), "200,202-204");
    }

    #[test]
    fn matcher_rejects_garbage_and_empty_ranges() {
        for text in ["", "abc", "99", "600", "300-200", "200-"] {
            let err = StatusMatcher::parse(text).unwrap_err();
            assert_eq!(err.code(), "invalid_status_matcher", "{text:?}");
        }
    }

    #[test]
    fn default_matcher_accepts_success_and_redirects() {
        let m = StatusMatcher::default();
        assert!(m.matches(StatusCode::OK));
        assert!(m.matches(StatusCode::FOUND));
        assert!(!m.matches(StatusCode::NOT_FOUND));
    }

    #[test]
    fn validation_collects_every_problem() {
        let config = HealthCheckConfig {
            path: "health".to_owned(),
            interval: Duration::ZERO,
            timeout: Duration::ZERO,
            healthy_threshold: 0,
            unhealthy_threshold: 0,
            ..HealthCheckConfig::default()
        };
        assert_eq!(config.validate().unwrap_err().len(), 5);
        assert!(HealthCheckConfig::default().validate().is_ok());
    }
}
