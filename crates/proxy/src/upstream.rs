//! Keep-alive HTTP/1.1 connections to targets, pooled per worker, and the
//! exchange of one request on one of them.
//!
//! The listener's client side is hyper; this side is a small HTTP/1.1
//! client of our own (framing in `codec.rs`), driven by the request's own
//! task. Measured with `bench/proxy.sh`, hyper's client, pooled by
//! hyper-util or by hand, cost about 2 µs more CPU per request than nginx's
//! upstream side: a task per connection to wake, channels and allocations
//! for every request and response body. Here a request writes its head with
//! one `write`, reads the response head into a buffer that the body then
//! streams from without copying, and hands the connection back to the pool
//! the moment its body is complete.

use std::collections::HashMap;
use std::fmt;
use std::future::{Future, poll_fn};
use std::io;
use std::net::SocketAddr;
use std::pin::{Pin, pin};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::header::{CONNECTION, CONTENT_LENGTH};
use http::uri::PathAndQuery;
use http::{HeaderMap, HeaderValue, Method, Response, StatusCode, Version};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};

use crate::codec::{self, Decoded, Decoder, ParseError};

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

/// When the read buffer has less room than `READ_MIN`, it grows by
/// `READ_RESERVE`. Growing only then matters: response heads and bodies are
/// split off the buffer and still referenced while hyper writes them, so
/// asking for room on every read would allocate a new buffer per response
/// instead of filling the current one.
const READ_RESERVE: usize = 16 * 1024;
const READ_MIN: usize = 2 * 1024;

/// One connection to a target.
pub(crate) struct Connection {
    stream: TcpStream,
    /// Bytes received and not yet consumed. Empty between exchanges.
    buf: BytesMut,
    /// Scratch space for request heads and chunk framing.
    out: Vec<u8>,
    /// Scratch space for parsing response heads.
    fields: codec::HeaderSpans,
    /// The upstream timeout of the exchange in progress. One timer per
    /// connection, pushed later for each request: extending a registered
    /// tokio timer is an atomic update, where a fresh timer per request
    /// costs an insertion into and a removal from the timer wheel.
    deadline: Pin<Box<Sleep>>,
}

impl Connection {
    async fn open(addr: SocketAddr, deadline: Instant) -> Result<Self, UpstreamError> {
        let stream = match tokio::time::timeout_at(deadline, TcpStream::connect(addr)).await {
            Ok(connected) => connected.map_err(UpstreamError::Connect)?,
            Err(_) => return Err(UpstreamError::Timeout),
        };
        // Requests are small writes; Nagle would hold them back for an ACK.
        let _ = stream.set_nodelay(true);
        Ok(Self {
            stream,
            buf: BytesMut::with_capacity(READ_RESERVE),
            out: Vec::with_capacity(1024),
            fields: Vec::new(),
            deadline: Box::pin(tokio::time::sleep_until(deadline)),
        })
    }

    /// `exchange`, failing with `Timeout` at `deadline` — unless request
    /// body bytes went out since it was set, in which case it moves on by
    /// `timeout`. So the timeout bounds a silent target, not the time a
    /// large upload takes.
    async fn exchange_until(
        &mut self,
        request: &UpstreamRequest<'_>,
        body: Option<Incoming>,
        deadline: Instant,
        timeout: Duration,
    ) -> Result<codec::ResponseHead, UpstreamError> {
        self.deadline.as_mut().reset(deadline);
        let Self {
            stream,
            buf,
            out,
            fields,
            deadline: timer,
        } = self;
        let sent = AtomicU64::new(0);
        let mut sent_before = 0;
        let mut exchange = pin!(exchange(stream, buf, out, fields, &sent, request, body));
        poll_fn(|cx| {
            loop {
                if let Poll::Ready(result) = exchange.as_mut().poll(cx) {
                    return Poll::Ready(result);
                }
                if timer.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                let sent_now = sent.load(Relaxed);
                if sent_now == sent_before {
                    return Poll::Ready(Err(UpstreamError::Timeout));
                }
                sent_before = sent_now;
                timer
                    .as_mut()
                    .reset(crate::target_group::later(Instant::now(), timeout));
            }
        })
        .await
    }

    /// False if the target closed the connection (or sent something
    /// unasked) while it sat in the pool. Asks the reactor first, which
    /// costs no system call in the usual case of nothing having arrived.
    fn still_open(&self) -> bool {
        let mut cx = Context::from_waker(Waker::noop());
        match self.stream.poll_read_ready(&mut cx) {
            Poll::Pending => true,
            Poll::Ready(Err(_)) => false,
            Poll::Ready(Ok(())) => {
                let mut probe = [0u8; 1];
                matches!(self.stream.try_read(&mut probe), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
            }
        }
    }
}

/// Writes the request and reads the response head (skipping interim 1xx
/// responses other than 101).
async fn exchange(
    stream: &mut TcpStream,
    buf: &mut BytesMut,
    out: &mut Vec<u8>,
    fields: &mut codec::HeaderSpans,
    sent: &AtomicU64,
    request: &UpstreamRequest<'_>,
    body: Option<Incoming>,
) -> Result<codec::ResponseHead, UpstreamError> {
    let body = body.filter(|b| !b.is_end_stream());
    // A body without Content-Length came chunked (hyper dropped the
    // Transfer-Encoding with the other hop-by-hop headers): send it
    // chunked too.
    let chunked = body.is_some() && !request.headers.contains_key(CONTENT_LENGTH);
    out.clear();
    codec::encode_head(
        out,
        request.method,
        request.path_and_query,
        request.headers,
        request.default_host,
        chunked,
    );
    stream.write_all(out).await.map_err(UpstreamError::Write)?;
    if let Some(body) = body {
        write_body(stream, out, sent, body, chunked, request.max_body).await?;
    }
    loop {
        if let Some(head) = codec::parse_response_head(buf, fields).map_err(UpstreamError::Parse)? {
            if head.status.is_informational() && head.status != StatusCode::SWITCHING_PROTOCOLS {
                continue;
            }
            return Ok(head);
        }
        make_room(buf);
        let n = stream.read_buf(buf).await.map_err(UpstreamError::Read)?;
        if n == 0 {
            return Err(UpstreamError::Closed);
        }
    }
}

/// Streams the client's body upstream as it arrives. The whole body is sent
/// before the response is read; a target answering early and closing makes
/// this fail with a 502 rather than relay its answer.
async fn write_body(
    stream: &mut TcpStream,
    out: &mut Vec<u8>,
    sent: &AtomicU64,
    mut body: Incoming,
    chunked: bool,
    max: Option<u64>,
) -> Result<(), UpstreamError> {
    let mut total: u64 = 0;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(UpstreamError::ClientBody)?;
        // Trailers are dropped, as on the way back.
        let Ok(data) = frame.into_data() else {
            continue;
        };
        if data.is_empty() {
            continue;
        }
        total += data.len() as u64;
        if max.is_some_and(|max| total > max) {
            // The connection is dropped with the error: the target sees a
            // cut request, never a complete one.
            return Err(UpstreamError::BodyTooLarge);
        }
        if chunked {
            out.clear();
            out.extend_from_slice(format!("{:x}\r\n", data.len()).as_bytes());
            out.extend_from_slice(&data);
            out.extend_from_slice(b"\r\n");
            stream.write_all(out).await
        } else {
            stream.write_all(&data).await
        }
        .map_err(UpstreamError::Write)?;
        sent.fetch_add(data.len() as u64, Relaxed);
    }
    if chunked {
        stream
            .write_all(b"0\r\n\r\n")
            .await
            .map_err(UpstreamError::Write)?;
    }
    Ok(())
}

/// What `Upstreams::send` needs of a request; borrowed, so a request that
/// may be retried is never copied.
pub(crate) struct UpstreamRequest<'a> {
    pub(crate) method: &'a Method,
    pub(crate) path_and_query: &'a PathAndQuery,
    pub(crate) headers: &'a HeaderMap,
    /// Host header for clients that sent none.
    pub(crate) default_host: &'a HeaderValue,
    /// The most body bytes to send before giving up (`BodyTooLarge`).
    pub(crate) max_body: Option<u64>,
}

#[derive(Debug)]
pub(crate) enum UpstreamError {
    Connect(io::Error),
    Write(io::Error),
    Read(io::Error),
    Parse(ParseError),
    ClientBody(hyper::Error),
    /// The connection ended before a response head.
    Closed,
    /// No response head within the upstream timeout.
    Timeout,
    /// The client's body grew past the listener's `max_body_size`.
    BodyTooLarge,
}

impl UpstreamError {
    /// The target was never reached, so the request was certainly not
    /// processed there.
    pub(crate) fn is_connect(&self) -> bool {
        matches!(self, Self::Connect(_))
    }
}

impl fmt::Display for UpstreamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Connect(e) => write!(f, "connect: {e}"),
            Self::Write(e) => write!(f, "sending the request: {e}"),
            Self::Read(e) => write!(f, "reading the response: {e}"),
            Self::Parse(e) => e.fmt(f),
            Self::ClientBody(e) => write!(f, "reading the client's body: {e}"),
            Self::Closed => f.write_str("the connection closed without a response"),
            Self::Timeout => f.write_str("no response within the upstream timeout"),
            Self::BodyTooLarge => {
                f.write_str("the client's body is larger than the listener takes")
            }
        }
    }
}

/// A response from a target. Its connection is either in the body (which
/// returns it to the pool once complete) or, after a 101, here for the
/// tunnel.
pub(crate) struct Answer {
    pub(crate) response: Response<UpstreamBody>,
    pub(crate) upgraded: Option<Connection>,
}

impl Answer {
    /// The upgraded connection's socket and any bytes the target sent right
    /// after its 101, which belong to the new protocol.
    pub(crate) fn take_upgraded(&mut self) -> Option<(TcpStream, Bytes)> {
        self.upgraded
            .take()
            .map(|mut c| (c.stream, c.buf.split().freeze()))
    }
}

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
    connection: Connection,
    since: Instant,
}

impl IdleConnection {
    fn fresh(&self, now: Instant) -> bool {
        now.duration_since(self.since) < IDLE_TIMEOUT
    }
}

impl Upstreams {
    fn lock(&self) -> MutexGuard<'_, Idle> {
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Sends the request to `addr` on an idle connection if there is one,
    /// else on a new one, and returns once the response head is in. Fails
    /// with `Timeout` if that takes longer than `timeout`.
    pub(crate) async fn send(
        self: &Arc<Self>,
        addr: SocketAddr,
        request: &UpstreamRequest<'_>,
        body: Option<Incoming>,
        timeout: Duration,
    ) -> Result<Answer, UpstreamError> {
        // The one clock reading of the request: it also dates the
        // connection's return to the pool (see `UpstreamBody::finish`).
        let now = Instant::now();
        let deadline = crate::target_group::later(now, timeout);
        let mut connection = match self.take_idle(addr, now) {
            Some(connection) => connection,
            // Boxed: connecting is rare, and its state would otherwise
            // enlarge every request's future.
            None => Box::pin(Connection::open(addr, deadline)).await?,
        };
        let mut head = connection
            .exchange_until(request, body, deadline, timeout)
            .await?;
        if head.status == StatusCode::SWITCHING_PROTOCOLS {
            let response = response(head, UpstreamBody::empty());
            return Ok(Answer {
                response,
                upgraded: Some(connection),
            });
        }
        let decoder = codec::response_decoder(request.method, head.status, &mut head.headers)
            .map_err(UpstreamError::Parse)?;
        let keep_alive = keep_alive(head.version, &head.headers) && decoder != Decoder::UntilClose;
        let mut body = UpstreamBody {
            connection: Some(connection),
            decoder,
            keep_alive,
            pool: self.clone(),
            addr,
            started: now,
        };
        if body.decoder.is_done() {
            body.finish();
        }
        Ok(Answer {
            response: response(head, body),
            upgraded: None,
        })
    }

    /// The most recently used connection first: it is the likeliest to be
    /// warm and still open.
    fn take_idle(&self, addr: SocketAddr, now: Instant) -> Option<Connection> {
        let mut idle = self.lock();
        let connections = idle.by_target.get_mut(&addr)?;
        while let Some(idle) = connections.pop() {
            if idle.fresh(now) && idle.connection.still_open() {
                return Some(idle.connection);
            }
        }
        None
    }

    /// `now` may be a little in the past: a connection that looks older
    /// than it is only leaves the pool sooner.
    fn put(&self, addr: SocketAddr, connection: Connection, now: Instant) {
        let mut idle = self.lock();
        let idle = &mut *idle;
        let connections = idle.by_target.entry(addr).or_default();
        connections.push(IdleConnection {
            connection,
            since: now,
        });
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

fn make_room(buf: &mut BytesMut) {
    if buf.capacity() - buf.len() < READ_MIN {
        buf.reserve(READ_RESERVE);
    }
}

fn response(head: codec::ResponseHead, body: UpstreamBody) -> Response<UpstreamBody> {
    let mut response = Response::new(body);
    *response.status_mut() = head.status;
    // The listener answers in its client's version; hyper sets that.
    *response.version_mut() = Version::HTTP_11;
    *response.headers_mut() = head.headers;
    response
}

fn keep_alive(version: Version, headers: &HeaderMap) -> bool {
    let lists = |token: &str| {
        headers.get_all(CONNECTION).iter().any(|value| {
            value
                .to_str()
                .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
        })
    };
    if version == Version::HTTP_10 {
        lists("keep-alive")
    } else {
        !lists("close")
    }
}

/// A response body read straight from the target's connection, which goes
/// back to the pool as soon as the last byte has been read (if the target
/// allows keep-alive). Dropped before the end, it closes the connection: a
/// half-read response leaves it unusable.
pub(crate) struct UpstreamBody {
    connection: Option<Connection>,
    decoder: Decoder,
    keep_alive: bool,
    pool: Arc<Upstreams>,
    addr: SocketAddr,
    /// When the request was sent; stands in for the release time so
    /// finishing a body reads no clock.
    started: Instant,
}

impl UpstreamBody {
    fn empty() -> Self {
        Self {
            connection: None,
            decoder: Decoder::Done,
            keep_alive: false,
            pool: Arc::default(),
            addr: SocketAddr::from(([0, 0, 0, 0], 0)),
            started: Instant::now(),
        }
    }

    fn finish(&mut self) {
        if let Some(connection) = self.connection.take()
            && self.keep_alive
            // Bytes past the end of the response: the target is confused,
            // or pipelining; either way the connection is not reusable.
            && connection.buf.is_empty()
        {
            self.pool.put(self.addr, connection, self.started);
        }
    }

    fn fail(&mut self, error: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> io::Error {
        self.connection = None;
        self.decoder = Decoder::Done;
        io::Error::new(io::ErrorKind::InvalidData, error)
    }
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let this = self.get_mut();
        loop {
            let Some(connection) = this.connection.as_mut() else {
                return Poll::Ready(None);
            };
            let decoded = match this.decoder.decode(&mut connection.buf) {
                Ok(Decoded::NeedMore) => {
                    make_room(&mut connection.buf);
                    match tokio_util::io::poll_read_buf(
                        Pin::new(&mut connection.stream),
                        cx,
                        &mut connection.buf,
                    ) {
                        Poll::Pending => return Poll::Pending,
                        Poll::Ready(Err(e)) => return Poll::Ready(Some(Err(this.fail(e)))),
                        Poll::Ready(Ok(0)) => this.decoder.eof(),
                        Poll::Ready(Ok(_)) => continue,
                    }
                }
                other => other,
            };
            match decoded {
                Ok(Decoded::Data(data)) => {
                    if this.decoder.is_done() {
                        this.finish();
                    }
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Ok(Decoded::End) => {
                    this.finish();
                    return Poll::Ready(None);
                }
                Ok(Decoded::NeedMore) => {}
                Err(e) => return Poll::Ready(Some(Err(this.fail(e)))),
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.connection.is_none() || self.decoder.is_done()
    }

    fn size_hint(&self) -> SizeHint {
        match self.decoder.remaining() {
            Some(n) => SizeHint::with_exact(n),
            None => SizeHint::default(),
        }
    }
}
