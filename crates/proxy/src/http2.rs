//! HTTP/2 on both sides of the proxy: the server settings of client
//! connections that negotiated `h2` (or sent HTTP/2's preface to a
//! listener that allows h2c), and the client side for targets that speak
//! HTTP/2 or gRPC.
//!
//! hyper's HTTP/2 runs every stream as a task of its own, so it needs an
//! executor. Client connections use [`Tracked`]: tasks spawned on the
//! worker's own single-threaded runtime and tracked with the listener's
//! other tasks, so a client connection, its streams and their upstream
//! exchanges still live on one worker and shutdown waits for them.
//!
//! Limits on a client connection (each bounds what one peer can make the
//! proxy hold; hyper's and nginx's defaults where they agree):
//!
//! | setting | value | why |
//! |---|---|---|
//! | concurrent streams | 128 | nginx's `http2_max_concurrent_streams` |
//! | header list size | 64 KiB | the HTTP/1.1 side's head limit is of that order |
//! | frame size | 16 KiB | the protocol's minimum, what nginx sends |
//! | pending reset streams | 20 | the "rapid reset" flood (CVE-2023-44487) |
//! | keep-alive ping | every 20 s, 20 s to answer | finds dead peers under long streams |
//!
//! The listener's header-read and idle timeouts apply as on HTTP/1.1: a
//! connection that starts no stream within them, with none in flight, is
//! closed (`listener.rs`).
//!
//! Targets that declare `http2` or `grpc` get one multiplexed h2c
//! connection (prior knowledge) per target and worker ([`Http2Upstreams`]),
//! made on first use and again after it fails. Bodies stream both ways as
//! frames, trailers included, which is what gRPC's `grpc-status` needs.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{Either, Empty};
use hyper::body::Incoming;
use hyper::client::conn::http2 as client;
use hyper::server::conn::http2 as server;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_util::task::TaskTracker;

/// Streams a client may have open at once on one connection.
pub(crate) const MAX_CONCURRENT_STREAMS: u32 = 128;
/// Bytes of header fields (HPACK-decoded, as RFC 9113 counts them) in one
/// request.
pub(crate) const MAX_HEADER_LIST_SIZE: u32 = 64 * 1024;
/// The largest frame payload the proxy accepts.
pub(crate) const MAX_FRAME_SIZE: u32 = 16 * 1024;
/// Streams a client may reset before the server has accepted them.
const MAX_PENDING_RESETS: usize = 20;
const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(20);
const KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(20);

/// Spawns hyper's per-stream tasks on the current (worker's) runtime,
/// tracked with the listener's connections.
#[derive(Clone)]
pub(crate) struct Tracked(pub(crate) TaskTracker);

impl<F> hyper::rt::Executor<F> for Tracked
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    fn execute(&self, future: F) {
        self.0.spawn(future);
    }
}

/// The server side of client connections that speak HTTP/2.
pub(crate) fn server_builder(tasks: TaskTracker) -> server::Builder<Tracked> {
    let mut builder = server::Builder::new(Tracked(tasks));
    builder
        .timer(TokioTimer::new())
        .max_concurrent_streams(MAX_CONCURRENT_STREAMS)
        .max_header_list_size(MAX_HEADER_LIST_SIZE)
        .max_frame_size(MAX_FRAME_SIZE)
        .max_pending_accept_reset_streams(MAX_PENDING_RESETS)
        .keep_alive_interval(KEEP_ALIVE_INTERVAL)
        .keep_alive_timeout(KEEP_ALIVE_TIMEOUT);
    builder
}

/// What every HTTP/2 connection starts with (RFC 9113 §3.4).
const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Reads a plain connection's first bytes until they show whether it
/// starts with HTTP/2's preface: at the first byte that differs (an
/// HTTP/1.1 request never starts `PRI `, so it is known from its first
/// packet), or once the whole preface is in. Returns the answer and the
/// connection with the bytes read put back in front. Reads wait for data
/// as any read does, so a client trickling the preface costs a wake-up per
/// packet, not a poll loop. `Err` when the connection closes first.
pub(crate) async fn sniff_preface(
    mut stream: TcpStream,
) -> std::io::Result<(bool, Prefixed<TcpStream>)> {
    let mut read = Vec::with_capacity(1024);
    loop {
        if stream.read_buf(&mut read).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let n = read.len().min(PREFACE.len());
        if read[..n] != PREFACE[..n] || n == PREFACE.len() {
            let h2 = read[..n] == PREFACE[..];
            let prefix = Bytes::from(read);
            return Ok((h2, Prefixed { prefix, stream }));
        }
    }
}

/// A connection some of whose bytes were already read: they come first.
pub(crate) struct Prefixed<S> {
    prefix: Bytes,
    stream: S,
}

impl<S: AsyncRead + Unpin> AsyncRead for Prefixed<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if this.prefix.is_empty() {
            return Pin::new(&mut this.stream).poll_read(cx, buf);
        }
        let n = this.prefix.len().min(buf.remaining());
        buf.put_slice(&this.prefix.split_to(n));
        if this.prefix.is_empty() {
            // Lets the read buffer go rather than keep it for good.
            this.prefix = Bytes::new();
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Prefixed<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

/// A request body sent to an HTTP/2 target: the client's, or none (a
/// request retried, or sent without one).
pub(crate) type Http2RequestBody = Either<Incoming, Empty<Bytes>>;

/// Spawns an upstream connection's task on the current (worker's) runtime,
/// untracked: it lives as long as the target connection, across client
/// connections, and ends with the worker's runtime.
#[derive(Clone, Copy)]
struct Detached;

impl<F> hyper::rt::Executor<F> for Detached
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    fn execute(&self, future: F) {
        tokio::spawn(future);
    }
}

/// Why an HTTP/2 exchange with a target failed.
#[derive(Debug)]
pub(crate) enum Http2Error {
    Connect(std::io::Error),
    Handshake(hyper::Error),
    /// The request failed on an open connection (reset, GOAWAY, closed).
    Request(hyper::Error),
}

impl std::fmt::Display for Http2Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Connect(e) => write!(f, "connect: {e}"),
            Self::Handshake(e) => write!(f, "HTTP/2 handshake: {e}"),
            Self::Request(e) => write!(f, "HTTP/2 request: {e}"),
        }
    }
}

impl Http2Error {
    pub(crate) fn is_connect(&self) -> bool {
        matches!(self, Self::Connect(_))
    }
}

/// One worker's HTTP/2 connections to targets, one per target address.
#[derive(Default)]
pub(crate) struct Http2Upstreams {
    senders: Mutex<HashMap<SocketAddr, client::SendRequest<Http2RequestBody>>>,
}

impl Http2Upstreams {
    /// Sends `request` on the target's connection, opening one if there is
    /// none or the one there has closed. A request refused by a connection
    /// that turned out closed before it was sent is sent once more on a new
    /// connection; one that failed midway is not.
    pub(crate) async fn send(
        &self,
        addr: SocketAddr,
        request: Request<Http2RequestBody>,
    ) -> Result<Response<Incoming>, Http2Error> {
        let mut sender = match self.current(addr) {
            Some(sender) => sender,
            None => self.connect(addr).await?,
        };
        if sender.ready().await.is_err() {
            self.forget(addr);
            sender = self.connect(addr).await?;
            sender.ready().await.map_err(Http2Error::Handshake)?;
        }
        match sender.try_send_request(request).await {
            Ok(response) => Ok(response),
            Err(mut error) => {
                self.forget(addr);
                match error.take_message() {
                    // Never sent: safe on a fresh connection.
                    Some(request) => {
                        let mut sender = self.connect(addr).await?;
                        sender.ready().await.map_err(Http2Error::Handshake)?;
                        sender
                            .send_request(request)
                            .await
                            .map_err(Http2Error::Request)
                    }
                    None => Err(Http2Error::Request(error.into_error())),
                }
            }
        }
    }

    fn current(&self, addr: SocketAddr) -> Option<client::SendRequest<Http2RequestBody>> {
        let senders = self.senders.lock().unwrap_or_else(PoisonError::into_inner);
        senders
            .get(&addr)
            .filter(|sender| !sender.is_closed())
            .cloned()
    }

    fn forget(&self, addr: SocketAddr) {
        let mut senders = self.senders.lock().unwrap_or_else(PoisonError::into_inner);
        if senders
            .get(&addr)
            .is_some_and(client::SendRequest::is_closed)
        {
            senders.remove(&addr);
        }
    }

    async fn connect(
        &self,
        addr: SocketAddr,
    ) -> Result<client::SendRequest<Http2RequestBody>, Http2Error> {
        let stream = TcpStream::connect(addr)
            .await
            .map_err(Http2Error::Connect)?;
        let _ = stream.set_nodelay(true);
        let (sender, connection) = client::Builder::new(Detached)
            .timer(TokioTimer::new())
            .max_header_list_size(MAX_HEADER_LIST_SIZE)
            .max_frame_size(MAX_FRAME_SIZE)
            .keep_alive_interval(KEEP_ALIVE_INTERVAL)
            .keep_alive_timeout(KEEP_ALIVE_TIMEOUT)
            .handshake(TokioIo::new(stream))
            .await
            .map_err(Http2Error::Handshake)?;
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%addr, %error, "HTTP/2 connection to a target ended");
            }
        });
        let mut senders = self.senders.lock().unwrap_or_else(PoisonError::into_inner);
        // Connections to targets that went away (replaced replicas) close
        // on their own; their entries go here, where connecting is rare.
        senders.retain(|_, sender| !sender.is_closed());
        senders.insert(addr, sender.clone());
        Ok(sender)
    }
}
