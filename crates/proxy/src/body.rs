//! What the listener sends back to a client. An enum rather than a boxed
//! trait object so a proxied response costs no allocation for its body.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

use crate::access_log::LoggedBody;
use crate::target_group::InFlight;
use crate::upstream::UpstreamBody;

pub(crate) enum ResponseBody {
    /// The target's body, streamed frame by frame. The guard keeps the
    /// request counted against its target until the body is dropped, which
    /// is what draining waits for.
    Upstream {
        body: UpstreamBody,
        _in_flight: InFlight,
    },
    /// An HTTP/2 target's body: data frames and trailers as they come.
    Http2 {
        body: hyper::body::Incoming,
        _in_flight: InFlight,
    },
    /// A response of the load balancer itself (404, 502, ...), or nothing.
    Fixed(Option<Bytes>),
    /// Any of the above, counted for the access log.
    Logged(Box<LoggedBody>),
}

impl ResponseBody {
    pub(crate) fn empty() -> Self {
        Self::Fixed(None)
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        match self.get_mut() {
            Self::Upstream { body, .. } => Pin::new(body).poll_frame(cx),
            Self::Http2 { body, .. } => Pin::new(body).poll_frame(cx).map_err(io::Error::other),
            Self::Fixed(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            Self::Logged(logged) => logged.poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Self::Upstream { body, .. } => body.is_end_stream(),
            Self::Http2 { body, .. } => body.is_end_stream(),
            Self::Fixed(bytes) => bytes.is_none(),
            Self::Logged(logged) => logged.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Self::Upstream { body, .. } => body.size_hint(),
            Self::Http2 { body, .. } => body.size_hint(),
            Self::Fixed(bytes) => {
                SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64))
            }
            Self::Logged(logged) => logged.size_hint(),
        }
    }
}
