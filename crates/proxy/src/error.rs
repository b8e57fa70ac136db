//! Errors of the load balancer's API. Failures of a proxied request are not
//! errors of this kind: they become 4xx/5xx responses (see `forward.rs`).

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

/// What went wrong when starting a listener, configuring a target group, or
/// waiting for a target.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
    #[error("cannot start a load balancer worker thread: {source}")]
    Worker {
        #[source]
        source: io::Error,
    },
    #[error("target group {group} has no target {target}")]
    UnknownTarget { group: String, target: String },
    #[error("target {target} of target group {group} is unhealthy: {reason}")]
    TargetUnhealthy {
        group: String,
        target: String,
        reason: String,
    },
    #[error("target {target} of target group {group} is draining")]
    TargetDraining { group: String, target: String },
    #[error("target {target} of target group {group} did not become healthy within {timeout:?}")]
    HealthTimeout {
        group: String,
        target: String,
        timeout: Duration,
    },
    #[error("invalid health check for target group {group}: {reason}")]
    InvalidHealthCheck { group: String, reason: String },
    /// A certificate that cannot serve; `reason` never holds key material.
    #[error("certificate {certificate}: {reason}")]
    Tls { certificate: String, reason: String },
    #[error("invalid status matcher {matcher:?}: {reason}")]
    InvalidMatcher { matcher: String, reason: String },
}

impl ProxyError {
    /// A stable identifier for API responses and for callers that branch on
    /// the kind of failure without matching on the enum.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Bind { .. } => "listener_bind_failed",
            Self::Worker { .. } => "listener_worker_failed",
            Self::UnknownTarget { .. } => "target_not_found",
            Self::TargetUnhealthy { .. } => "target_unhealthy",
            Self::TargetDraining { .. } => "target_draining",
            Self::HealthTimeout { .. } => "target_health_timeout",
            Self::InvalidHealthCheck { .. } => "invalid_health_check",
            Self::InvalidMatcher { .. } => "invalid_status_matcher",
            Self::Tls { .. } => "invalid_certificate",
        }
    }
}
