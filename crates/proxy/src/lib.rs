//! gantry's built-in load balancer: an Application Load Balancer in a crate.
//!
//! Concepts, named as ALB names them:
//!
//! - A [`LoadBalancer`] is one listener (one socket) of one environment,
//!   HTTP or HTTPS. It holds an ordered list of [`Rule`]s; a request gets
//!   the [`Action`] of the first rule, by ascending priority, whose
//!   [`Conditions`] all match: host (`*`/`?`, without case, port ignored),
//!   path (`*` = any run of characters, `?` = one character,
//!   case-sensitive, path only), header values, method, query string pairs,
//!   source IP blocks ([`Cidr`]); within one condition any value may match.
//!   Actions: forward to a target group, [`Redirect`] (ALB's placeholders
//!   `#{protocol}`, `#{host}`, `#{port}`, `#{path}` without its leading
//!   `/`, `#{query}`), [`FixedResponse`]. No match gets the listener's
//!   default action, a fixed 404 unless set. Rules and the default action
//!   are compiled once and swapped atomically (`rule.rs`).
//! - An HTTPS listener terminates TLS 1.2/1.3 with rustls; SNI picks among
//!   its [`Certificate`]s (the first is the default), which are checked
//!   whole (key matches certificate, validity window) and swapped at once
//!   on rotation, open connections untouched (`tls.rs`).
//! - A [`TargetGroup`] is a set of [`Target`]s (address + weight), each with a
//!   [`Health`]: `Initial` until active HTTP checks pass `healthy_threshold`
//!   times in a row, `Unhealthy` after `unhealthy_threshold` failures (not
//!   counting failures within the grace period after registration),
//!   `Draining` once deregistered. State changes are broadcast as
//!   [`HealthEvent`]s. A group without a health check trusts its targets:
//!   they are Healthy from registration.
//! - Selection: smooth weighted round-robin (nginx's algorithm, so weights
//!   3:1 give exactly 300/100 over 400 requests) among the Healthy targets.
//!   Only when none is Healthy does the group fail open to its Initial and
//!   Unhealthy targets, as ALB does: a wrong answer beats a certain 503 when
//!   the group has nothing better. During a canary the group may name a
//!   header and a revision label ([`TargetGroup::set_canary_route`]): a
//!   request with `HEADER: always` goes to that revision's targets, `never`
//!   to the others, whatever their weights (0 included).
//!
//! Invariants:
//!
//! - A Draining target never gets a new request, and neither does an
//!   Initial or Unhealthy one while any target of its group is Healthy. This
//!   is what makes a rolling replacement lossless: register, wait healthy,
//!   deregister with a drain.
//! - A target's in-flight count covers the whole exchange, response body
//!   and upgraded connection included; draining waits for it to reach zero
//!   (or the deregistration delay to pass).
//! - Bodies stream in both directions with backpressure; nothing buffers a
//!   whole message. The two hops agree on where each message ends: a
//!   response with both `Transfer-Encoding` and `Content-Length` loses the
//!   latter, conflicting lengths are a 502, and unclear framing ends the
//!   upstream connection rather than reusing it.
//! - No request makes the proxy panic: every failure is a response. 404: no
//!   rule matched; 503: the group has no target that may take requests;
//!   502: the target failed (refused, reset, bad response); 504: no response
//!   headers within the upstream timeout.
//! - A GET or HEAD without a body whose target fails at the connection
//!   level (refused, reset, closed without answering) is retried once, on
//!   another target when there is one. A timeout is not retried. Failures
//!   do not count toward a target's health: only active checks move it.
//!
//! How it runs. The listener speaks HTTP/1.1 to clients (keep-alive,
//! upgrades such as websockets) through hyper, and HTTP/2 to those that
//! negotiate `h2` by ALPN on an HTTPS listener or, where
//! [`ListenerConfig::h2c`] allows it, send HTTP/2's preface in the clear;
//! all on worker threads with a single-threaded runtime each (`listener.rs`
//! says why; an HTTP/2 connection's streams are tasks on the same worker,
//! `http2.rs`). It talks to targets over pooled keep-alive HTTP/1.1
//! connections with a small client of its own (`upstream.rs`, framing in
//! `codec.rs`), which is what brought it level with nginx on
//! `bench/proxy.sh`, whichever protocol the client spoke: an HTTP/2
//! request's `:authority` becomes its Host. A target registered with
//! [`Protocol::Http2`] or [`Protocol::Grpc`] is sent requests over one
//! multiplexed h2c connection per worker instead, bodies streamed as
//! frames with trailers intact, so gRPC calls of every kind pass through;
//! a gRPC call from an HTTP/1.1 client to a `Grpc` target is answered 426.
//! Health checks, drains and the accept loop run on the runtime that
//! started the listener; a health check may also be gRPC's
//! `grpc.health.v1.Health/Check` ([`HealthCheckConfig::grpc`]).
//!
//! Client connections are held to limits (`connections.rs` says how): a
//! new connection must send its first request head within the header-read
//! timeout and later ones within the idle timeout, and at the connection
//! limit the oldest connection without a request head (else the oldest
//! idle one) is closed to make room. A slow-header flood thus costs its own
//! connections; real clients and the health checks keep working. The soft
//! open-file limit is raised to the hard one at the first listener's start.
//!
//! Statistics (`stats.rs`): every attempt to send a request to a target
//! counts once, by outcome (`2xx` … `5xx`, connection failure, timeout),
//! with its time to the response head. Targets keep cumulative counters
//! ([`TargetGroup::stats`], [`LoadBalancer::stats`] with the rules' counts,
//! for Prometheus); each revision label of a group keeps a sliding window
//! of one-second slots ([`TargetGroup::window_stats`]: requests, errors,
//! error rate, p99 over the last seconds, for canary analysis), which
//! outlives the revision's targets.
//!
//! Module map: `rule` (conditions, actions, route table), `tls`
//! (certificates, SNI, rotation), `tls_validity` (a certificate's dates), `target_group`
//! (membership, health state, selection, draining), `health` (check
//! configuration and probe), `listener` (sockets, workers, timeouts,
//! shutdown), `connections` (connection limits and eviction), `http2`
//! (HTTP/2 settings and limits, h2c detection, the HTTP/2 upstream client),
//! `forward` (one request: headers, retry, upgrade), `upstream` (pool and
//! exchange), `codec` (HTTP/1.1 framing), `body` (the response body type),
//! `stats` (counters and windows).

mod access_log;
mod body;
mod codec;
mod connections;
mod error;
mod forward;
mod health;
mod http2;
mod listener;
mod rule;
mod stats;
mod target_group;
mod tls;
mod tls_validity;
mod upstream;

pub use access_log::{AccessLogSink, AccessRecord};
pub use error::ProxyError;
pub use health::{CheckFuture, CommandCheck, HealthCheckConfig, StatusMatcher};
pub use listener::{ListenerConfig, ListenerStats, LoadBalancer, RuleStats};
pub use rule::{Action, Cidr, Conditions, FixedResponse, Redirect, Rule};
pub use stats::{LATENCY_BUCKETS, LatencyHistogram, MAX_WINDOW, OutcomeClass, WindowStats};
pub use target_group::{
    Health, HealthEvent, Protocol, STICKY_COOKIE, Target, TargetGroup, TargetStats, TargetStatus,
};
pub use tls::{Certificate, check_certificates};
pub use tls_validity::{certificate_covers, certificate_validity};
