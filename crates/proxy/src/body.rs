//! Body types of the two hops. Both are enums rather than boxed trait
//! objects so a proxied request costs no allocation for its bodies.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

use crate::target_group::InFlight;
use crate::upstream::Lease;

/// What the listener sends back to a client.
pub(crate) enum ResponseBody {
    /// The upstream's body, streamed frame by frame. The guard keeps the
    /// request counted against its target until the body is dropped, which
    /// is what draining waits for; the lease goes back to the pool as soon
    /// as the last byte has been read, so the next request can reuse the
    /// connection.
    Upstream {
        body: Incoming,
        lease: Option<Lease>,
        _in_flight: InFlight,
    },
    /// A response of the load balancer itself (404, 502, ...), or nothing.
    Fixed(Option<Bytes>),
}

impl ResponseBody {
    pub(crate) fn empty() -> Self {
        Self::Fixed(None)
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.get_mut() {
            Self::Upstream { body, lease, .. } => {
                let frame = Pin::new(&mut *body).poll_frame(cx);
                let finished = match &frame {
                    Poll::Ready(None) => true,
                    // hyper's server stops polling once `is_end_stream` says
                    // so, so the end may show only that way.
                    Poll::Ready(Some(Ok(_))) => body.is_end_stream(),
                    // A broken upstream body: its connection is not reused.
                    Poll::Ready(Some(Err(_))) => {
                        drop(lease.take());
                        false
                    }
                    Poll::Pending => false,
                };
                if finished && let Some(lease) = lease.take() {
                    lease.release();
                }
                frame
            }
            Self::Fixed(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Self::Upstream { body, .. } => body.is_end_stream(),
            Self::Fixed(bytes) => bytes.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Self::Upstream { body, .. } => body.size_hint(),
            Self::Fixed(bytes) => {
                SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64))
            }
        }
    }
}

impl Drop for ResponseBody {
    fn drop(&mut self) {
        // A response without a body (HEAD, 204, 304) is never polled.
        if let Self::Upstream { body, lease, .. } = self
            && body.is_end_stream()
            && let Some(lease) = lease.take()
        {
            lease.release();
        }
    }
}

/// What the listener sends upstream: the client's body, streamed, or none
/// (requests that may be retried carry none, since an `Incoming` can be sent
/// only once).
pub(crate) enum RequestBody {
    Client(Incoming),
    Empty,
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.get_mut() {
            Self::Client(body) => Pin::new(body).poll_frame(cx),
            Self::Empty => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Self::Client(body) => body.is_end_stream(),
            Self::Empty => true,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Self::Client(body) => body.size_hint(),
            Self::Empty => SizeHint::with_exact(0),
        }
    }
}
