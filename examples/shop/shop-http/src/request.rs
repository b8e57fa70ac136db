//! HTTP/1.1 request parsing (RFC 9112), written against `BufRead` so it can
//! be tested on byte slices.
//!
//! Reading is split in two, [`read_head`] then [`read_body`], so the server
//! can answer `Expect: 100-continue` in between. Every limit is enforced
//! while reading, never after, so a peer cannot make us buffer more than
//! [`MAX_HEAD_BYTES`] of head or [`MAX_BODY_BYTES`] of body. Malformed input
//! becomes [`ParseError::Reject`] with the status to answer; nothing here
//! panics on any input.

use std::io::{self, BufRead, Read};

/// Request line plus headers, in bytes.
pub const MAX_HEAD_BYTES: usize = 16 * 1024;
/// Header lines per request (or per response, in the client).
pub const MAX_HEADERS: usize = 100;
/// Body bytes per request, decoded.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// Why no request could be read.
#[derive(Debug)]
pub enum ParseError {
    /// The peer closed the connection before the first byte of a request:
    /// the normal end of a keep-alive connection.
    Closed,
    /// Reading failed (timeout, reset, EOF in the middle of a request):
    /// there is no one to answer, close the connection.
    Io(io::Error),
    /// The request is malformed or unacceptable: answer with this status and
    /// reason, then close (the connection's framing can no longer be trusted).
    Reject(u16, String),
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ParseError::Closed => write!(f, "connection closed"),
            ParseError::Io(e) => write!(f, "read error: {e}"),
            ParseError::Reject(status, why) => write!(f, "{status}: {why}"),
        }
    }
}

impl std::error::Error for ParseError {}

fn reject(status: u16, why: impl Into<String>) -> ParseError {
    ParseError::Reject(status, why.into())
}

/// An HTTP request, head and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The method, as sent (methods are case-sensitive).
    pub method: String,
    /// The path part of the target, before any `?`, not percent-decoded.
    pub path: String,
    /// The query after `?`, without it; empty when there is none.
    pub query: String,
    /// The `1.x` of `HTTP/1.x`: 0 or 1.
    pub minor_version: u8,
    /// Header fields in order, names as sent (compare case-insensitively).
    pub headers: Vec<(String, String)>,
    /// The body, already de-chunked.
    pub body: Vec<u8>,
}

impl Request {
    /// A request built by hand (tests, handlers calling each other): HTTP/1.1,
    /// no headers, no body. `target` may carry a `?query`.
    pub fn new(method: &str, target: &str) -> Request {
        let (path, query) = split_target(target);
        Request {
            method: method.to_string(),
            path: path.to_string(),
            query: query.to_string(),
            minor_version: 1,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// Adds a header (builder style).
    pub fn with_header(mut self, name: &str, value: &str) -> Request {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    /// Sets the body (builder style).
    pub fn with_body(mut self, body: impl Into<Vec<u8>>) -> Request {
        self.body = body.into();
        self
    }

    /// The first header named `name`, case-insensitively.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every value of the headers named `name`, joined with `, ` as RFC 9110
    /// §5.3 allows for list-valued fields.
    fn joined_header(&self, name: &str) -> Option<String> {
        let values: Vec<&str> = self
            .headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect();
        if values.is_empty() {
            None
        } else {
            Some(values.join(", "))
        }
    }

    /// Whether `Connection` lists `token`.
    fn connection_has(&self, token: &str) -> bool {
        self.joined_header("connection")
            .map(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
            .unwrap_or(false)
    }

    /// Whether the client wants the connection kept open after the response:
    /// HTTP/1.1 unless `Connection: close`, HTTP/1.0 only with
    /// `Connection: keep-alive`.
    pub fn keep_alive(&self) -> bool {
        if self.minor_version >= 1 {
            !self.connection_has("close")
        } else {
            self.connection_has("keep-alive")
        }
    }

    /// Whether the client sent `Expect: 100-continue`.
    pub fn expects_continue(&self) -> bool {
        self.minor_version >= 1
            && self
                .header("expect")
                .is_some_and(|v| v.trim().eq_ignore_ascii_case("100-continue"))
    }

    /// The body as UTF-8, if it is.
    pub fn body_text(&self) -> Option<&str> {
        std::str::from_utf8(&self.body).ok()
    }

    /// The target as sent: path plus `?query`.
    pub fn target(&self) -> String {
        if self.query.is_empty() {
            self.path.clone()
        } else {
            format!("{}?{}", self.path, self.query)
        }
    }
}

fn split_target(target: &str) -> (&str, &str) {
    match target.split_once('?') {
        Some((p, q)) => (p, q),
        None => (target, ""),
    }
}

/// How a message's body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// Exactly this many bytes.
    Length(usize),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

/// Reads one line of at most `*budget` bytes (CRLF or bare LF), returning it
/// without the line end; `Ok(None)` at EOF before any byte. The budget is
/// shared by all lines of a head, so the head as a whole stays bounded.
pub(crate) fn read_line<R: BufRead>(
    r: &mut R,
    budget: &mut usize,
    too_long: &dyn Fn() -> ParseError,
) -> Result<Option<Vec<u8>>, ParseError> {
    let mut line = Vec::new();
    // `take` caps what read_until may buffer: without it a peer sending an
    // endless line would grow `line` without bound.
    let n = r
        .by_ref()
        .take(*budget as u64)
        .read_until(b'\n', &mut line)
        .map_err(ParseError::Io)?;
    if n == 0 {
        if *budget == 0 {
            return Err(too_long());
        }
        return Ok(None);
    }
    *budget -= n;
    if line.last() != Some(&b'\n') {
        if *budget == 0 {
            return Err(too_long());
        }
        return Err(ParseError::Io(io::ErrorKind::UnexpectedEof.into()));
    }
    line.pop();
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    Ok(Some(line))
}

/// RFC 9110 `tchar`: what a method or header name may hold.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn is_token(s: &[u8]) -> bool {
    !s.is_empty() && s.iter().all(|&b| is_tchar(b))
}

/// Reads header lines up to the empty line that ends them.
pub(crate) fn read_headers<R: BufRead>(r: &mut R, budget: &mut usize) -> Result<Vec<(String, String)>, ParseError> {
    let too_long = || reject(431, "request header fields too large");
    let mut headers = Vec::new();
    loop {
        let line = match read_line(r, budget, &too_long)? {
            Some(line) => line,
            None => return Err(ParseError::Io(io::ErrorKind::UnexpectedEof.into())),
        };
        if line.is_empty() {
            return Ok(headers);
        }
        if headers.len() >= MAX_HEADERS {
            return Err(reject(431, "too many header fields"));
        }
        // Obsolete line folding is a smuggling vector: RFC 9112 §5.2 lets a
        // server reject it with 400.
        if line[0] == b' ' || line[0] == b'\t' {
            return Err(reject(400, "obsolete header line folding"));
        }
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            return Err(reject(400, "header line without a colon"));
        };
        let (name, value) = (&line[..colon], &line[colon + 1..]);
        // No whitespace may stand between a field name and its colon
        // (RFC 9112 §5.1), which is_token also rules out.
        if !is_token(name) {
            return Err(reject(400, "invalid header field name"));
        }
        if value.iter().any(|&b| b == b'\r' || b == 0) {
            return Err(reject(400, "invalid character in a header value"));
        }
        let value = String::from_utf8_lossy(value);
        let value = value.trim_matches([' ', '\t']);
        // `name` is ASCII (tchars), so this conversion is exact.
        headers.push((String::from_utf8_lossy(name).into_owned(), value.to_string()));
    }
}

/// Reads a request line and its headers. [`ParseError::Closed`] when the
/// peer closed the connection cleanly before the request started.
pub fn read_head<R: BufRead>(r: &mut R) -> Result<Request, ParseError> {
    let mut budget = MAX_HEAD_BYTES;
    let too_long = || reject(431, "request line too long");
    // RFC 9112 §2.2: a server SHOULD ignore at least one empty line before
    // the request line (some clients send a stray CRLF after a body).
    let mut line = Vec::new();
    for _ in 0..4 {
        match read_line(r, &mut budget, &too_long)? {
            None if budget == MAX_HEAD_BYTES => return Err(ParseError::Closed),
            None => return Err(ParseError::Io(io::ErrorKind::UnexpectedEof.into())),
            Some(l) if l.is_empty() => continue,
            Some(l) => {
                line = l;
                break;
            }
        }
    }
    if line.is_empty() {
        return Err(reject(400, "empty request line"));
    }
    let mut parts = line.split(|&b| b == b' ');
    let (Some(method), Some(target), Some(version), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(reject(400, "malformed request line"));
    };
    if !is_token(method) {
        return Err(reject(400, "invalid method"));
    }
    // Origin-form only: we are no proxy, and `*` (OPTIONS) is not served.
    if target.first() != Some(&b'/') {
        return Err(reject(400, "request target must start with /"));
    }
    // Visible ASCII only; clients percent-encode everything else.
    if !target.iter().all(|&b| (0x21..0x7f).contains(&b)) {
        return Err(reject(400, "invalid character in the request target"));
    }
    let minor_version = match version {
        b"HTTP/1.1" => 1,
        b"HTTP/1.0" => 0,
        v if v.starts_with(b"HTTP/") => return Err(reject(505, "only HTTP/1.0 and 1.1 are supported")),
        _ => return Err(reject(400, "malformed HTTP version")),
    };
    let headers = read_headers(r, &mut budget)?;
    // All three are ASCII, checked above.
    let target = String::from_utf8_lossy(target);
    let (path, query) = split_target(&target);
    Ok(Request {
        method: String::from_utf8_lossy(method).into_owned(),
        path: path.to_string(),
        query: query.to_string(),
        minor_version,
        headers,
        body: Vec::new(),
    })
}

/// How the body of `head` is delimited, per RFC 9112 §6.3, rejecting the
/// ambiguous combinations request smuggling relies on.
pub fn framing(head: &Request) -> Result<Framing, ParseError> {
    let te = head.joined_header("transfer-encoding");
    let cl = head.joined_header("content-length");
    if let Some(te) = te {
        if head.minor_version == 0 {
            return Err(reject(400, "transfer-encoding in an HTTP/1.0 request"));
        }
        if cl.is_some() {
            return Err(reject(400, "both transfer-encoding and content-length"));
        }
        if !te.trim().eq_ignore_ascii_case("chunked") {
            return Err(reject(501, format!("unsupported transfer-encoding {te:?}")));
        }
        return Ok(Framing::Chunked);
    }
    match cl {
        None => Ok(Framing::Length(0)),
        Some(cl) => parse_content_length(&cl).map_err(|why| reject(400, why)).and_then(|n| {
            if n > MAX_BODY_BYTES as u64 {
                Err(reject(413, format!("body over {MAX_BODY_BYTES} bytes")))
            } else {
                // n <= MAX_BODY_BYTES, so it fits a usize.
                Ok(Framing::Length(n as usize))
            }
        }),
    }
}

/// Parses a `Content-Length` value; repeated values (several headers or a
/// list) must all be the same (RFC 9110 §8.6).
pub(crate) fn parse_content_length(value: &str) -> Result<u64, &'static str> {
    let mut found: Option<u64> = None;
    for item in value.split(',') {
        let item = item.trim();
        if item.is_empty() || item.len() > 19 || !item.bytes().all(|b| b.is_ascii_digit()) {
            return Err("invalid content-length");
        }
        let n: u64 = item.parse().map_err(|_| "invalid content-length")?;
        if found.is_some_and(|f| f != n) {
            return Err("conflicting content-length values");
        }
        found = Some(n);
    }
    found.ok_or("invalid content-length")
}

/// Reads the body that `framing` announces, at most `max` bytes decoded.
pub fn read_body<R: BufRead>(r: &mut R, framing: Framing, max: usize) -> Result<Vec<u8>, ParseError> {
    match framing {
        Framing::Length(n) => {
            if n > max {
                return Err(reject(413, format!("body over {max} bytes")));
            }
            let mut body = vec![0; n];
            r.read_exact(&mut body).map_err(ParseError::Io)?;
            Ok(body)
        }
        Framing::Chunked => read_chunked(r, max),
    }
}

/// Decodes a chunked body (RFC 9112 §7.1); extensions and trailers are read
/// and ignored.
fn read_chunked<R: BufRead>(r: &mut R, max: usize) -> Result<Vec<u8>, ParseError> {
    let mut body = Vec::new();
    loop {
        let mut budget = 1024;
        let too_long = || reject(400, "chunk size line too long");
        let Some(line) = read_line(r, &mut budget, &too_long)? else {
            return Err(ParseError::Io(io::ErrorKind::UnexpectedEof.into()));
        };
        let size_part = match line.iter().position(|&b| b == b';') {
            Some(i) => &line[..i],
            None => &line[..],
        };
        let size_text = String::from_utf8_lossy(size_part);
        let size_text = size_text.trim_matches([' ', '\t']);
        if size_text.is_empty() || size_text.len() > 15 || !size_text.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(reject(400, "invalid chunk size"));
        }
        // At most 15 hex digits: fits a u64 without overflow.
        let size = u64::from_str_radix(size_text, 16).map_err(|_| reject(400, "invalid chunk size"))?;
        if size == 0 {
            let mut budget = MAX_HEAD_BYTES;
            read_headers(r, &mut budget)?; // trailers, discarded
            return Ok(body);
        }
        if body.len() as u64 + size > max as u64 {
            return Err(reject(413, format!("body over {max} bytes")));
        }
        let start = body.len();
        // size <= max, checked above, so it fits a usize.
        body.resize(start + size as usize, 0);
        r.read_exact(&mut body[start..]).map_err(ParseError::Io)?;
        let mut budget = 2;
        match read_line(r, &mut budget, &|| reject(400, "chunk not followed by CRLF"))? {
            None => return Err(ParseError::Io(io::ErrorKind::UnexpectedEof.into())),
            Some(end) if !end.is_empty() => return Err(reject(400, "chunk not followed by CRLF")),
            Some(_) => {}
        }
    }
}

/// Reads a whole request: head, then body. For servers that need to answer
/// `Expect: 100-continue`, use [`read_head`], [`framing`] and [`read_body`].
pub fn read_request<R: BufRead>(r: &mut R) -> Result<Request, ParseError> {
    let mut req = read_head(r)?;
    let framing = framing(&req)?;
    req.body = read_body(r, framing, MAX_BODY_BYTES)?;
    Ok(req)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(bytes: &[u8]) -> Result<Request, ParseError> {
        read_request(&mut &bytes[..])
    }

    fn status_of(bytes: &[u8]) -> u16 {
        match parse(bytes) {
            Err(ParseError::Reject(s, _)) => s,
            other => panic!("expected a rejection, got {other:?}"),
        }
    }

    #[test]
    fn parses_request_line_headers_and_query() {
        let req = parse(b"GET /api/catalog/products?x=1&y=2 HTTP/1.1\r\nHost: a\r\nX-Thing:  spaced value \t\r\n\r\n")
            .unwrap();
        assert_eq!(req.method, "GET");
        assert_eq!(req.path, "/api/catalog/products");
        assert_eq!(req.query, "x=1&y=2");
        assert_eq!(req.minor_version, 1);
        assert_eq!(req.header("host"), Some("a"));
        assert_eq!(req.header("x-thing"), Some("spaced value"));
        assert!(req.body.is_empty());
        assert!(req.keep_alive());
        assert_eq!(req.target(), "/api/catalog/products?x=1&y=2");
    }

    #[test]
    fn reads_content_length_body_and_leaves_the_rest() {
        let bytes = b"POST /api/orders HTTP/1.1\r\nContent-Length: 5\r\n\r\nhelloGET / HTTP/1.1\r\n\r\n";
        let mut r = &bytes[..];
        let first = read_request(&mut r).unwrap();
        assert_eq!(first.body, b"hello");
        let second = read_request(&mut r).unwrap();
        assert_eq!(second.path, "/");
        assert!(matches!(read_request(&mut r), Err(ParseError::Closed)));
    }

    #[test]
    fn accepts_bare_lf_and_a_leading_empty_line() {
        let req = parse(b"\r\nGET / HTTP/1.0\nConnection: keep-alive\n\n").unwrap();
        assert_eq!(req.minor_version, 0);
        assert!(req.keep_alive());
        assert!(!parse(b"GET / HTTP/1.0\r\n\r\n").unwrap().keep_alive());
        assert!(
            !parse(b"GET / HTTP/1.1\r\nConnection: Close\r\n\r\n")
                .unwrap()
                .keep_alive()
        );
    }

    #[test]
    fn decodes_chunked_bodies() {
        let req = parse(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3;ext=1\r\nabc\r\n2\r\nde\r\n0\r\nTrailer: x\r\n\r\n").unwrap();
        assert_eq!(req.body, b"abcde");
        assert_eq!(
            status_of(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"),
            400
        );
        assert_eq!(
            status_of(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcX\r\n0\r\n\r\n"),
            400
        );
        assert_eq!(
            status_of(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffff\r\n"),
            413
        );
        assert_eq!(status_of(b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n"), 501);
    }

    #[test]
    fn rejects_bad_request_lines() {
        assert_eq!(status_of(b"GET\r\n\r\n"), 400);
        assert_eq!(status_of(b"GET /  HTTP/1.1\r\n\r\n"), 400);
        assert_eq!(status_of(b"GET / HTTP/1.1 extra\r\n\r\n"), 400);
        assert_eq!(status_of(b"GET http://x/ HTTP/1.1\r\n\r\n"), 400);
        assert_eq!(status_of(b"G(T / HTTP/1.1\r\n\r\n"), 400);
        assert_eq!(status_of(b"GET / HTTP/2.0\r\n\r\n"), 505);
        assert_eq!(status_of(b"GET / FTP/1.1\r\n\r\n"), 400);
        assert_eq!(status_of(b"GET /\x7f HTTP/1.1\r\n\r\n"), 400);
        assert_eq!(status_of(b"GET /\xc3\xa9 HTTP/1.1\r\n\r\n"), 400);
        assert_eq!(status_of(b"\r\n\r\n\r\n\r\n\r\n"), 400);
    }

    #[test]
    fn rejects_bad_headers() {
        assert_eq!(status_of(b"GET / HTTP/1.1\r\nNoColon\r\n\r\n"), 400);
        assert_eq!(status_of(b"GET / HTTP/1.1\r\nBad Name: x\r\n\r\n"), 400);
        assert_eq!(status_of(b"GET / HTTP/1.1\r\nName : x\r\n\r\n"), 400);
        assert_eq!(status_of(b"GET / HTTP/1.1\r\n: x\r\n\r\n"), 400);
        assert_eq!(status_of(b"GET / HTTP/1.1\r\nA: b\r\n folded\r\n\r\n"), 400);
        assert_eq!(status_of(b"GET / HTTP/1.1\r\nA: b\rc\r\n\r\n"), 400);
    }

    #[test]
    fn rejects_bad_content_length() {
        assert_eq!(status_of(b"POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n"), 400);
        assert_eq!(status_of(b"POST / HTTP/1.1\r\nContent-Length: 1x\r\n\r\n"), 400);
        assert_eq!(status_of(b"POST / HTTP/1.1\r\nContent-Length: \r\n\r\n"), 400);
        assert_eq!(
            status_of(b"POST / HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n"),
            400
        );
        assert_eq!(
            status_of(b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab"),
            400
        );
        assert_eq!(status_of(b"POST / HTTP/1.1\r\nContent-Length: 2, 3\r\n\r\nab"), 400);
        assert_eq!(status_of(b"POST / HTTP/1.1\r\nContent-Length: 2000000\r\n\r\n"), 413);
        assert_eq!(
            status_of(b"POST / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n"),
            400
        );
        assert_eq!(status_of(b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"), 400);
        // The same value repeated is allowed.
        let req = parse(b"POST / HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nab").unwrap();
        assert_eq!(req.body, b"ab");
    }

    #[test]
    fn enforces_head_limits() {
        let mut long = b"GET /".to_vec();
        long.extend(std::iter::repeat_n(b'a', MAX_HEAD_BYTES));
        long.extend_from_slice(b" HTTP/1.1\r\n\r\n");
        assert_eq!(status_of(&long), 431);

        let mut many = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..=MAX_HEADERS {
            many.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
        }
        many.extend_from_slice(b"\r\n");
        assert_eq!(status_of(&many), 431);
    }

    #[test]
    fn truncated_input_is_an_io_error_not_a_panic() {
        for bytes in [
            &b"GET / HTTP/1.1\r\nHost: a"[..],
            b"GET / HTTP/1.1\r\nHost: a\r\n",
            b"GET / HTT",
            b"POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab",
        ] {
            assert!(matches!(parse(bytes), Err(ParseError::Io(_))), "{bytes:?}");
        }
        assert!(matches!(parse(b""), Err(ParseError::Closed)));
    }

    #[test]
    fn never_panics_on_arbitrary_bytes() {
        // A cheap deterministic fuzz: every prefix and many byte mutations of
        // a valid request must parse or fail, never panic.
        let base = b"POST /a?b HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n";
        for end in 0..base.len() {
            let _ = parse(&base[..end]);
        }
        let mut seed: u32 = 12345;
        for _ in 0..5000 {
            let mut bytes = base.to_vec();
            for _ in 0..3 {
                seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
                let at = (seed >> 8) as usize % bytes.len();
                bytes[at] = (seed >> 20) as u8;
            }
            let _ = parse(&bytes);
        }
    }

    #[test]
    fn expect_continue_and_builders() {
        let req = Request::new("POST", "/x?q")
            .with_header("Expect", "100-Continue")
            .with_body("b");
        assert!(req.expects_continue());
        assert_eq!(req.path, "/x");
        assert_eq!(req.query, "q");
        assert_eq!(req.body_text(), Some("b"));
    }
}
