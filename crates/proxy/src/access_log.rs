//! Access logs: one [`AccessRecord`] per request, handed to the
//! listener's [`AccessLogSink`] when the answer's body has been sent (or
//! the client went away), so the record has the bytes and the whole time.
//!
//! Off by default: a listener without a sink pays one pointer load per
//! request. With one, each request keeps a small record beside its body
//! (one allocation) and counts the bytes it sends. Writing is the sink's
//! job; it must not block (the server's sink queues and drops when full).

use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::time::Instant;

use crate::body::ResponseBody;

/// The longest request target and user agent a record keeps, in bytes.
const MAX_FIELD: usize = 1024;

/// One request as the access log tells it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessRecord {
    /// When the request arrived.
    pub time: SystemTime,
    /// The client's address (the TCP peer).
    pub client: IpAddr,
    /// Whether it came over TLS.
    pub tls: bool,
    /// `HTTP/1.1`, `HTTP/2.0` …
    pub version: String,
    pub method: String,
    /// The request target (path and query), at most 1 KiB.
    pub target_path: String,
    pub user_agent: String,
    /// The priority of the rule that matched; `None`: the default action.
    pub rule: Option<u32>,
    /// The target the request was sent to (the last, after a retry);
    /// `None` when the load balancer answered itself.
    pub target: Option<SocketAddr>,
    /// The status the client got.
    pub status: u16,
    /// Body bytes sent to the client.
    pub bytes_sent: u64,
    /// From the request's arrival to the response head.
    pub response_time: Duration,
    /// From the request's arrival to the end of the body.
    pub total_time: Duration,
    /// Whether the body was sent whole (else the client or target went
    /// away first).
    pub complete: bool,
}

/// Where a listener's access records go. Called on the worker threads
/// while they serve: must return at once.
pub trait AccessLogSink: Send + Sync + 'static {
    fn record(&self, record: AccessRecord);
}

/// What routing found out about a request, for its record.
#[derive(Debug, Default)]
pub(crate) struct Matched {
    pub(crate) rule: Option<u32>,
    pub(crate) target: Option<SocketAddr>,
}

/// A request's record while its answer is sent.
pub(crate) struct Pending {
    pub(crate) record: AccessRecord,
    pub(crate) started: Instant,
}

impl Pending {
    /// The record of `request` as it arrives.
    pub(crate) fn start<B>(request: &http::Request<B>, client: IpAddr, tls: bool) -> Self {
        let clip = |text: &str| {
            let mut end = text.len().min(MAX_FIELD);
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            text[..end].to_owned()
        };
        let target_path = request.uri().path_and_query().map_or("/", |p| p.as_str());
        let user_agent = request
            .headers()
            .get(http::header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-");
        Self {
            record: AccessRecord {
                time: gantry_clock::now(),
                client,
                tls,
                version: format!("{:?}", request.version()),
                method: clip(request.method().as_str()),
                target_path: clip(target_path),
                user_agent: clip(user_agent),
                rule: None,
                target: None,
                status: 0,
                bytes_sent: 0,
                response_time: Duration::ZERO,
                total_time: Duration::ZERO,
                complete: false,
            },
            started: Instant::now(),
        }
    }

    /// Wraps the answer's body so the record is sent when it ends.
    pub(crate) fn finish(
        mut self,
        response: http::Response<ResponseBody>,
        matched: Matched,
        sink: Arc<dyn AccessLogSink>,
    ) -> http::Response<ResponseBody> {
        self.record.rule = matched.rule;
        self.record.target = matched.target;
        self.record.status = response.status().as_u16();
        self.record.response_time = self.started.elapsed();
        response.map(|body| {
            let complete = body.is_end_stream();
            ResponseBody::Logged(Box::new(LoggedBody {
                body,
                pending: Some((self, sink)),
                complete,
            }))
        })
    }
}

/// A body that counts what it sends and hands its record to the sink when
/// dropped.
pub(crate) struct LoggedBody {
    body: ResponseBody,
    pending: Option<(Pending, Arc<dyn AccessLogSink>)>,
    complete: bool,
}

impl Drop for LoggedBody {
    fn drop(&mut self) {
        if let Some((mut pending, sink)) = self.pending.take() {
            pending.record.total_time = pending.started.elapsed();
            pending.record.complete = self.complete;
            sink.record(pending.record);
        }
    }
}

impl LoggedBody {
    pub(crate) fn poll_frame(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        let polled = Pin::new(&mut self.body).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let (Some(data), Some((pending, _))) = (frame.data_ref(), &mut self.pending) {
                    pending.record.bytes_sent += data.len() as u64;
                }
                if self.body.is_end_stream() {
                    self.complete = true;
                }
            }
            Poll::Ready(None) => self.complete = true,
            _ => {}
        }
        polled
    }

    pub(crate) fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    pub(crate) fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
