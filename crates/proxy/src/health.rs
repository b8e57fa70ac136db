//! Active health checks: the configuration, the status matcher, and the
//! probe that one target's checker runs on every interval (an HTTP GET, a
//! gRPC `grpc.health.v1.Health/Check` over h2c, or a [`CommandCheck`] its
//! owner runs).
//!
//! The gRPC check's two messages are encoded by hand: the request is field
//! 1 (`service`, a string), the response field 1 (`status`, an enum whose
//! `SERVING` is 1). Only `SERVING` with `grpc-status` 0 is healthy.

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
    /// Instead of the HTTP GET: the gRPC health check of this service name
    /// (`""`: the server as a whole); `path` and `matcher` are then unused.
    pub grpc: Option<String>,
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
            grpc: None,
        }
    }
}

impl HealthCheckConfig {
    /// Every problem at once, so a caller can report them together.
    pub(crate) fn validate(&self) -> Result<(), Vec<String>> {
        let mut problems = Vec::new();
        if self.command.is_some() || self.grpc.is_some() {
            // No GET is made: the path is not used.
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
    if let Some(service) = &config.grpc {
        return match tokio::time::timeout(config.timeout, probe_grpc(addr, service)).await {
            Ok(result) => result,
            Err(_) => Err(format!("no gRPC health answer within {:?}", config.timeout)),
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

/// The largest health answer read: a status is a few bytes.
const MAX_GRPC_HEALTH_ANSWER: usize = 4096;

/// One `grpc.health.v1.Health/Check` on a fresh h2c connection.
async fn probe_grpc(addr: SocketAddr, service: &str) -> Result<(), String> {
    use http_body_util::{BodyExt, Full, Limited};
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect to {addr}: {e}"))?;
    let _ = stream.set_nodelay(true);
    let (mut sender, conn) = hyper::client::conn::http2::Builder::new(OnThisTask)
        .max_header_list_size(16 * 1024)
        .handshake::<_, Full<Bytes>>(TokioIo::new(stream))
        .await
        .map_err(|e| format!("HTTP/2 handshake with {addr}: {e}"))?;
    let request = Request::post(format!("http://{addr}/grpc.health.v1.Health/Check"))
        .header(http::header::CONTENT_TYPE, "application/grpc")
        .header(http::header::TE, "trailers")
        .header(USER_AGENT, "gantry-health-check/1")
        .body(Full::new(grpc_health_request(service)))
        .map_err(|e| format!("health check request: {e}"))?;
    let exchange = async {
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| format!("request to {addr}: {e}"))?;
        if response.status() != StatusCode::OK {
            return Err(format!("HTTP status {}", response.status().as_u16()));
        }
        let (parts, body) = response.into_parts();
        let collected = Limited::new(body, MAX_GRPC_HEALTH_ANSWER)
            .collect()
            .await
            .map_err(|e| format!("reading the answer from {addr}: {e}"))?;
        // A trailers-only answer carries grpc-status in its headers.
        let trailers = collected.trailers().cloned().unwrap_or_default();
        let status = trailers
            .get("grpc-status")
            .or_else(|| parts.headers.get("grpc-status"));
        let message = trailers
            .get("grpc-message")
            .or_else(|| parts.headers.get("grpc-message"))
            .and_then(|m| m.to_str().ok())
            .unwrap_or("")
            .to_owned();
        match status.map(HeaderValue::as_bytes) {
            Some(b"0") => {}
            Some(code) => {
                return Err(format!(
                    "grpc-status {} {message}",
                    String::from_utf8_lossy(code)
                ));
            }
            None => return Err("the answer has no grpc-status".to_owned()),
        }
        match grpc_health_status(&collected.to_bytes()) {
            Some(1) => Ok(()),
            Some(status) => Err(format!(
                "serving status {}",
                match status {
                    0 => "UNKNOWN",
                    2 => "NOT_SERVING",
                    3 => "SERVICE_UNKNOWN",
                    _ => "unexpected",
                }
            )),
            None => Err("the health answer does not parse".to_owned()),
        }
    };
    let mut conn = std::pin::pin!(conn);
    let mut exchange = std::pin::pin!(exchange);
    tokio::select! {
        result = &mut exchange => result,
        ended = &mut conn => match ended {
            Ok(()) => exchange.await,
            Err(e) => Err(format!("connection to {addr}: {e}")),
        },
    }
}

/// Spawns the tasks hyper's HTTP/2 client asks for during a probe (the
/// request body's sender) on the health checks' runtime; the connection
/// itself is driven by `probe_grpc` and dropped with it, which ends them.
#[derive(Clone, Copy)]
struct OnThisTask;

impl<F> hyper::rt::Executor<F> for OnThisTask
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    fn execute(&self, future: F) {
        tokio::spawn(future);
    }
}

/// A gRPC message (uncompressed, length-prefixed) holding
/// `HealthCheckRequest { service }`.
fn grpc_health_request(service: &str) -> Bytes {
    let mut message = Vec::with_capacity(service.len() + 8);
    if !service.is_empty() {
        message.push(0x0a); // field 1, length-delimited
        let mut len = service.len();
        while len >= 0x80 {
            message.push((len as u8) | 0x80);
            len >>= 7;
        }
        message.push(len as u8);
        message.extend_from_slice(service.as_bytes());
    }
    let mut framed = Vec::with_capacity(message.len() + 5);
    framed.push(0); // not compressed
    framed.extend_from_slice(&(message.len() as u32).to_be_bytes());
    framed.extend_from_slice(&message);
    Bytes::from(framed)
}

/// `HealthCheckResponse.status` from one length-prefixed gRPC message;
/// absent means 0 (UNKNOWN), as protobuf's defaults say. `None` if the
/// bytes are not such a message (compressed ones included).
fn grpc_health_status(framed: &[u8]) -> Option<u64> {
    let (&[flag, a, b, c, d], message) = framed.split_first_chunk::<5>()?;
    let len = u32::from_be_bytes([a, b, c, d]) as usize;
    if flag != 0 || message.len() != len {
        return None;
    }
    let mut status = 0;
    let mut rest = message;
    while !rest.is_empty() {
        let (key, after) = varint(rest)?;
        rest = after;
        match key & 7 {
            0 => {
                let (value, after) = varint(rest)?;
                rest = after;
                if key >> 3 == 1 {
                    status = value;
                }
            }
            2 => {
                let (len, after) = varint(rest)?;
                rest = after.get(usize::try_from(len).ok()?..)?;
            }
            5 => rest = rest.get(4..)?,
            1 => rest = rest.get(8..)?,
            _ => return None,
        }
    }
    Some(status)
}

fn varint(bytes: &[u8]) -> Option<(u64, &[u8])> {
    let mut value = 0u64;
    for (i, &byte) in bytes.iter().enumerate().take(10) {
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((value, &bytes[i + 1..]));
        }
    }
    None
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
    fn grpc_health_messages_encode_and_decode() {
        assert_eq!(&grpc_health_request("")[..], [0, 0, 0, 0, 0]);
        assert_eq!(
            &grpc_health_request("shop.Catalog")[..],
            b"\0\0\0\0\x0e\x0a\x0cshop.Catalog"
        );
        // SERVING; NOT_SERVING; the default (UNKNOWN); an unknown field skipped.
        assert_eq!(grpc_health_status(&[0, 0, 0, 0, 2, 0x08, 1]), Some(1));
        assert_eq!(grpc_health_status(&[0, 0, 0, 0, 2, 0x08, 2]), Some(2));
        assert_eq!(grpc_health_status(&[0, 0, 0, 0, 0]), Some(0));
        assert_eq!(
            grpc_health_status(&[0, 0, 0, 0, 5, 0x12, 1, b'x', 0x08, 1]),
            Some(1)
        );
        // Truncated, compressed, too long, empty.
        for bad in [
            &[0, 0, 0, 0, 3, 0x08, 1][..],
            &[1, 0, 0, 0, 2, 0x08, 1],
            &[0, 0, 0, 0, 1, 0x08, 1],
            &[],
        ] {
            assert_eq!(grpc_health_status(bad), None, "{bad:?}");
        }
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
