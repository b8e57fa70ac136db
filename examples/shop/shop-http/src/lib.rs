//! shop-http: the small HTTP/1.1 toolkit the shop's services share.
//!
//! Standard library only, so the services build in seconds from a clean
//! checkout and link statically (`-C target-feature=+crt-static`) for images
//! with no libc. It has:
//!
//! - [`server`]: a thread-per-connection server with keep-alive, timeouts,
//!   a connection cap, one log line per request, and a drain on SIGTERM;
//! - request parsing ([`read_request`]) that answers bad input with a 4xx
//!   instead of panicking;
//! - [`client`]: GET/POST to another service by IP address;
//! - [`json`], [`form`], [`html`]: just enough JSON, form decoding and HTML
//!   escaping for the shop;
//! - [`ServiceInfo`] and [`run`]: the service identity and `main`.

pub mod client;
pub mod form;
pub mod html;
mod io;
pub mod json;
mod request;
mod response;
pub mod server;
mod service;
pub mod signal;
mod time;

pub use json::Json;
pub use request::{
    Framing, MAX_BODY_BYTES, MAX_HEAD_BYTES, MAX_HEADERS, ParseError, Request, framing, read_body, read_head,
    read_request,
};
pub use response::{Response, reason};
pub use server::{Server, ServerConfig};
pub use service::{ServiceInfo, handle_args, method_not_allowed, port_from_env, route_path, run};

/// The current UTC time as `2026-05-01T12:00:00.123Z` (log lines, reports).
pub fn now_rfc3339() -> String {
    time::Utc::now().rfc3339()
}
