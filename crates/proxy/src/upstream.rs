//! Keep-alive HTTP/1.1 connections to targets, pooled per worker.
//!
//! Written on hyper's connection API rather than hyper-util's pooled
//! client: a connection is lent to one request and comes back when that
//! request's response body has been read to the end, so handing it back
//! needs no extra task, and finding one is a pop from a per-target stack.
//! Measured with `bench/proxy.sh`, hyper-util's pooled client spent about
//! twice nginx's user-space CPU per request, mostly in per-request
//! bookkeeping (an idle-watcher task per request, pool-key hashing, URI
//! rewriting). Driving each connection from the request's own task instead
//! of a task per connection was tried too and cost more: every hand-off
//! inside hyper then wakes the (heavier) client-connection task spuriously.

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::body::RequestBody;

/// An idle connection older than this is closed rather than reused: the
/// target may have dropped it by then (many servers close idle keep-alive
/// connections after 5 to 60 s), and a fresh connection is cheap.
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// Idle connections kept per target and worker; beyond this, the oldest are
/// closed. Like nginx's `keepalive`, sized for a few hundred clients.
const MAX_IDLE_PER_TARGET: usize = 256;

/// Every this many releases, connections of targets nobody asks for any
/// more (replaced, deregistered) are swept out.
const SWEEP_EVERY: u32 = 1024;

/// One worker's pool of idle connections to every target.
#[derive(Default)]
pub(crate) struct Upstreams {
    idle: Mutex<Idle>,
}

#[derive(Default)]
struct Idle {
    by_target: HashMap<SocketAddr, Vec<IdleConnection>>,
    releases: u32,
}

struct IdleConnection {
    sender: SendRequest<RequestBody>,
    since: Instant,
}

impl IdleConnection {
    fn fresh(&self, now: Instant) -> bool {
        !self.sender.is_closed() && now.duration_since(self.since) < IDLE_TIMEOUT
    }
}

#[derive(Debug)]
pub(crate) enum UpstreamError {
    Connect(io::Error),
    Handshake(hyper::Error),
    Request(hyper::Error),
    /// The connection ended without answering.
    Closed,
}

impl UpstreamError {
    /// The target was never reached, so the request was certainly not
    /// processed there.
    pub(crate) fn is_connect(&self) -> bool {
        matches!(self, Self::Connect(_) | Self::Handshake(_))
    }
}

impl fmt::Display for UpstreamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Connect(e) => write!(f, "connect: {e}"),
            Self::Handshake(e) => write!(f, "handshake: {e}"),
            Self::Request(e) => write!(f, "request: {e}"),
            Self::Closed => f.write_str("the connection closed without a response"),
        }
    }
}

/// A connection lent to one request. `release` it once the response has
/// been read to the end; dropping it instead lets the connection close,
/// since a half-read response leaves it unusable.
pub(crate) struct Lease {
    sender: SendRequest<RequestBody>,
    addr: SocketAddr,
    pool: Arc<Upstreams>,
}

impl Lease {
    pub(crate) fn release(self) {
        self.pool.put(self.addr, self.sender);
    }
}

enum Attempt {
    Answered(Response<Incoming>),
    /// The connection refused the request before sending any of it, so it
    /// may go on another connection whatever its method.
    Unsent(Request<RequestBody>),
    Failed(UpstreamError),
}

impl Upstreams {
    fn lock(&self) -> MutexGuard<'_, Idle> {
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Sends `request` (origin-form URI) to `addr` on an idle connection if
    /// there is one, else on a new one.
    pub(crate) async fn send(
        self: &Arc<Self>,
        addr: SocketAddr,
        mut request: Request<RequestBody>,
    ) -> Result<(Response<Incoming>, Lease), UpstreamError> {
        while let Some(mut sender) = self.take_idle(addr) {
            match exchange(&mut sender, request).await {
                Attempt::Answered(response) => return Ok((response, self.lease(sender, addr))),
                // The target closed this idle connection; try the next.
                Attempt::Unsent(unsent) => request = unsent,
                Attempt::Failed(error) => return Err(error),
            }
        }
        // Boxed: the connect and handshake state is large, and every
        // request's future would otherwise carry (and move) room for it.
        let mut sender = Box::pin(connect(addr)).await?;
        match exchange(&mut sender, request).await {
            Attempt::Answered(response) => Ok((response, self.lease(sender, addr))),
            Attempt::Unsent(_) => Err(UpstreamError::Closed),
            Attempt::Failed(error) => Err(error),
        }
    }

    fn lease(self: &Arc<Self>, sender: SendRequest<RequestBody>, addr: SocketAddr) -> Lease {
        Lease {
            sender,
            addr,
            pool: self.clone(),
        }
    }

    /// The most recently used connection first: it is the likeliest to be
    /// warm and still open.
    fn take_idle(&self, addr: SocketAddr) -> Option<SendRequest<RequestBody>> {
        let mut idle = self.lock();
        let connections = idle.by_target.get_mut(&addr)?;
        let now = Instant::now();
        while let Some(connection) = connections.pop() {
            if connection.fresh(now) {
                return Some(connection.sender);
            }
        }
        None
    }

    fn put(&self, addr: SocketAddr, sender: SendRequest<RequestBody>) {
        if sender.is_closed() {
            return;
        }
        let now = Instant::now();
        let mut idle = self.lock();
        let idle = &mut *idle;
        let connections = idle.by_target.entry(addr).or_default();
        connections.push(IdleConnection { sender, since: now });
        // The oldest sits at the bottom; checking one per release keeps the
        // stack free of stale connections at constant cost.
        if connections.len() > MAX_IDLE_PER_TARGET || !connections[0].fresh(now) {
            connections.remove(0);
        }
        idle.releases = idle.releases.wrapping_add(1);
        if idle.releases.is_multiple_of(SWEEP_EVERY) {
            idle.by_target.retain(|_, connections| {
                connections.retain(|c| c.fresh(now));
                !connections.is_empty()
            });
        }
    }
}

/// Sends one request on `sender` and waits for the response headers.
async fn exchange(sender: &mut SendRequest<RequestBody>, request: Request<RequestBody>) -> Attempt {
    // Usually ready at once; otherwise its connection task is finishing the
    // previous exchange, or the connection has closed.
    if sender.ready().await.is_err() {
        return Attempt::Unsent(request);
    }
    match sender.try_send_request(request).await {
        Ok(response) => Attempt::Answered(response),
        Err(mut error) => match error.take_message() {
            Some(unsent) => Attempt::Unsent(unsent),
            None => Attempt::Failed(UpstreamError::Request(error.into_error())),
        },
    }
}

async fn connect(addr: SocketAddr) -> Result<SendRequest<RequestBody>, UpstreamError> {
    let stream = TcpStream::connect(addr)
        .await
        .map_err(UpstreamError::Connect)?;
    // Requests are small writes; Nagle would hold them back for an ACK.
    let _ = stream.set_nodelay(true);
    let (sender, connection) = http1::handshake(TokioIo::new(stream))
        .await
        .map_err(UpstreamError::Handshake)?;
    // The connection is driven on this worker, next to the requests using
    // it. It ends when the target closes it or the last sender is dropped.
    tokio::spawn(async move {
        if let Err(error) = connection.with_upgrades().await {
            tracing::debug!(%addr, %error, "upstream connection ended with an error");
        }
    });
    Ok(sender)
}
