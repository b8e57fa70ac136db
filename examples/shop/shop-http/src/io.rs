//! A socket reader with an overall deadline.

use std::io::{self, Read};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// Reads from a socket, failing with `TimedOut` once `deadline` passes. A
/// socket read timeout alone bounds each read, not a request: a slow peer
/// sending a byte every few seconds would hold a thread forever.
#[derive(Debug)]
pub(crate) struct DeadlineReader {
    pub(crate) stream: TcpStream,
    pub(crate) deadline: Instant,
}

impl DeadlineReader {
    pub(crate) fn new(stream: TcpStream, timeout: Duration) -> DeadlineReader {
        DeadlineReader {
            stream,
            deadline: Instant::now() + timeout,
        }
    }

    pub(crate) fn set_timeout(&mut self, timeout: Duration) {
        self.deadline = Instant::now() + timeout;
    }
}

impl Read for DeadlineReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::ErrorKind::TimedOut.into());
        }
        // A zero timeout means "block forever" to set_read_timeout, and
        // `left` is never zero here.
        self.stream.set_read_timeout(Some(left))?;
        self.stream.read(buf)
    }
}
