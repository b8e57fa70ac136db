//! A load balancer's listeners and its rules' conditions and actions, as
//! ALB has them (formats.md §4): what the decoder validated, with no IO.
//! Certificates are named by parameter; the server reads and checks them
//! at apply.

use std::net::SocketAddr;

use super::PathPattern;
use crate::location::Location;
use crate::names::ServiceName;

/// One socket of a load balancer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    /// Unique in the load balancer; today's single `listen` is `default`.
    pub name: String,
    pub listen: SocketAddr,
    pub protocol: Protocol,
    /// For `https`: at least one; the first is the default for SNI.
    pub certificates: Vec<CertificateRef>,
    /// For `https`: certificates an ACME CA issues and renews (after
    /// `certificates`, if both are given).
    pub acme: Option<Acme>,
    /// For `http`: every request is redirected (301) to this https listener.
    pub redirect_to: Option<String>,
    /// For `http`: also serve HTTP/2 to clients that start with its preface
    /// (h2c with prior knowledge, as gRPC clients do without TLS). An https
    /// listener offers HTTP/2 by ALPN anyway.
    pub http2: bool,
    /// For requests no rule matches; `None` is a fixed 404.
    pub default_action: Option<Action>,
    pub limits: ListenerLimits,
    pub location: Location,
}

/// A listener's timeouts and request sizes; `None` keeps the load
/// balancer's default (formats.md §4).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ListenerLimits {
    pub idle_timeout: Option<std::time::Duration>,
    pub header_timeout: Option<std::time::Duration>,
    /// Bytes.
    pub max_header_size: Option<u64>,
    /// Bytes.
    pub max_body_size: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Http,
    Https,
}

/// A certificate from an ACME CA (RFC 8555) for an https listener: ordered
/// for `domains`, proven with HTTP-01 challenges that an http listener of
/// the same load balancer answers, kept in the parameter store under
/// `store` (`account`, `cert`, `key`) and renewed `renew_before` it expires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Acme {
    /// DNS names, the first the certificate's subject; at most 100.
    pub domains: Vec<String>,
    /// The CA's directory URL (https).
    pub directory: String,
    /// Contact URLs for the account, such as `mailto:ops@example.com`.
    pub contact: Vec<String>,
    /// The http listener that answers the challenges (a public CA asks on
    /// port 80); `None`: the load balancer's only http listener.
    pub challenge_listener: Option<String>,
    /// Parameter path holding the account key and the certificate;
    /// `None`: `/gantry/acme/ENVIRONMENT/LISTENER`.
    pub store: Option<String>,
    pub renew_before: std::time::Duration,
    /// A String parameter holding the PEM root certificate(s) the
    /// directory's TLS is checked against (a private CA); `None`: the
    /// system's roots.
    pub directory_ca: Option<String>,
}

/// `renew_before` when none is given: Let's Encrypt's advice for 90-day
/// certificates.
pub const ACME_RENEW_BEFORE: std::time::Duration = std::time::Duration::from_secs(30 * 86_400);

/// A certificate chain (a String parameter, PEM) and its private key (a
/// SecureString parameter, PEM), by parameter name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateRef {
    pub cert: String,
    pub key: String,
}

/// What a request must match: every condition given, any value of each.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Conditions {
    pub host: Vec<String>,
    pub path: Vec<PathPattern>,
    pub header: Vec<(String, Vec<String>)>,
    pub method: Vec<String>,
    /// Key and value patterns.
    pub query: Vec<(String, String)>,
    /// CIDR blocks, checked.
    pub source_ip: Vec<String>,
}

impl Conditions {
    pub fn is_empty(&self) -> bool {
        self.host.is_empty()
            && self.path.is_empty()
            && self.header.is_empty()
            && self.method.is_empty()
            && self.query.is_empty()
            && self.source_ip.is_empty()
    }
}

/// What a matched request gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Forward {
        service: ServiceName,
    },
    /// ALB's weighted forward: 1 to 5 distinct services, weights 0 to 999,
    /// at least one above 0.
    WeightedForward {
        targets: Vec<(ServiceName, u32)>,
    },
    Redirect(Redirect),
    FixedResponse(FixedResponse),
}

/// Services a weighted forward takes, as ALB's target groups per action.
pub const MAX_WEIGHTED_TARGETS: usize = 5;

/// ALB's largest target group weight.
pub const MAX_TARGET_WEIGHT: u32 = 999;

impl Action {
    /// The services the action forwards to (none for a redirect or a fixed
    /// response).
    pub fn services(&self) -> Vec<&ServiceName> {
        match self {
            Self::Forward { service } => vec![service],
            Self::WeightedForward { targets } => targets.iter().map(|(s, _)| s).collect(),
            _ => Vec::new(),
        }
    }
}

/// ALB's redirect: each component may use `#{protocol}`, `#{host}`,
/// `#{port}`, `#{path}` (without its leading `/`) and `#{query}`; one left
/// out keeps the request's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Redirect {
    pub protocol: Option<String>,
    pub host: Option<String>,
    pub port: Option<String>,
    pub path: Option<String>,
    pub query: Option<String>,
    /// 301 or 302.
    pub status: u16,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FixedResponse {
    /// 2xx, 4xx or 5xx.
    pub status: u16,
    pub content_type: Option<String>,
    /// At most 1024 bytes.
    pub body: String,
}

/// ALB's content types for a fixed response.
pub const FIXED_RESPONSE_CONTENT_TYPES: &[&str] = &[
    "text/plain",
    "text/css",
    "text/html",
    "application/javascript",
    "application/json",
];

/// ALB's longest fixed-response body, in bytes.
pub const MAX_FIXED_RESPONSE_BODY: usize = 1024;

/// Values one condition may list (ALB counts five per rule's condition).
pub const MAX_CONDITION_VALUES: usize = 5;

/// Checks a CIDR block such as `10.0.0.0/8` or `2001:db8::/32`.
pub fn check_cidr(text: &str) -> Result<(), String> {
    let bad = || format!("`{text}` is not a CIDR block such as 10.0.0.0/8 or 2001:db8::/32");
    let (address, prefix) = text.split_once('/').ok_or_else(bad)?;
    let address: std::net::IpAddr = address.parse().map_err(|_| bad())?;
    let (bits, width) = match address {
        std::net::IpAddr::V4(v4) => (u128::from(u32::from(v4)), 32),
        std::net::IpAddr::V6(v6) => (u128::from(v6), 128),
    };
    let prefix: u32 = prefix
        .parse()
        .ok()
        .filter(|&p| p <= width)
        .ok_or_else(|| format!("the prefix of `{text}` must be 0 to {width}"))?;
    let host = width - prefix;
    if host < 128 && bits & ((1u128 << host) - 1) != 0 {
        return Err(format!("`{text}` has bits set after its /{prefix} prefix"));
    }
    if host == 128 && bits != 0 {
        return Err(format!("`{text}` has bits set after its /{prefix} prefix"));
    }
    Ok(())
}
