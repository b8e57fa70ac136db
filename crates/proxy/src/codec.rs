//! HTTP/1.1 framing of the upstream hop (RFC 9112): request heads out,
//! response heads and bodies in. Only what a reverse proxy needs; the
//! client side of the listener is hyper's.
//!
//! The rules that keep the two hops from disagreeing about where a message
//! ends (the root of request smuggling) live here: a response with
//! `Transfer-Encoding` loses any `Content-Length`, conflicting
//! `Content-Length` values are refused, and a response whose framing is
//! unclear ends with its connection.

use std::fmt;
use std::mem::MaybeUninit;
use std::ops::Range;

use bytes::{Buf, Bytes, BytesMut};
use http::header::{CONTENT_LENGTH, HOST, TRANSFER_ENCODING};
use http::uri::PathAndQuery;
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Version};

/// The most a response head may take; larger ones are refused (hyper's
/// server limit is similar).
pub(crate) const MAX_HEAD: usize = 64 * 1024;
const MAX_HEADERS: usize = 100;
/// A chunk-size line (hex size plus extensions) longer than this is refused.
const MAX_CHUNK_LINE: usize = 4096;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ParseError {
    Head(String),
    TooLarge,
    ContentLength,
    Chunk(&'static str),
    Truncated,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Head(e) => write!(f, "invalid response head: {e}"),
            Self::TooLarge => write!(f, "response head larger than {MAX_HEAD} bytes"),
            Self::ContentLength => f.write_str("invalid or conflicting Content-Length"),
            Self::Chunk(e) => write!(f, "invalid chunked body: {e}"),
            Self::Truncated => f.write_str("the connection closed before the body ended"),
        }
    }
}

impl std::error::Error for ParseError {}

/// Appends the request line and headers. Method, path and header names and
/// values come from hyper's parser or `http`'s types, which admit no CR or
/// LF, so nothing here can split the message.
pub(crate) fn encode_head(
    out: &mut Vec<u8>,
    method: &Method,
    path_and_query: &PathAndQuery,
    headers: &HeaderMap,
    default_host: &HeaderValue,
    chunked: bool,
) {
    out.extend_from_slice(method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(path_and_query.as_str().as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    for (name, value) in headers {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    // HTTP/1.1 requires Host; an HTTP/1.0 client may not have sent one.
    if !headers.contains_key(HOST) {
        out.extend_from_slice(b"host: ");
        out.extend_from_slice(default_host.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if chunked {
        out.extend_from_slice(b"transfer-encoding: chunked\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// A parsed response head. Header values share the bytes of the read
/// buffer rather than being copied.
#[derive(Debug)]
pub(crate) struct ResponseHead {
    pub(crate) status: StatusCode,
    pub(crate) version: Version,
    pub(crate) headers: HeaderMap,
}

/// Header names and where their values sit in the head, kept between
/// responses so parsing one allocates no list.
pub(crate) type HeaderSpans = Vec<(HeaderName, Range<usize>)>;

/// Parses one response head from the front of `buf` and removes it, or
/// returns `None` if `buf` does not hold a whole head yet.
pub(crate) fn parse_response_head(
    buf: &mut BytesMut,
    fields: &mut HeaderSpans,
) -> Result<Option<ResponseHead>, ParseError> {
    fields.clear();
    // Offsets rather than slices, so the parser's borrow of `buf` ends
    // before the head is split off.
    let (status, version, len) = {
        // Uninitialised slots: initialising 100 headers per response costs
        // more than parsing a typical head.
        let mut slots = [const { MaybeUninit::uninit() }; MAX_HEADERS];
        let mut response = httparse::Response::new(&mut []);
        let parsed = httparse::ParserConfig::default().parse_response_with_uninit_headers(
            &mut response,
            buf,
            &mut slots,
        );
        let len = match parsed {
            Ok(httparse::Status::Complete(len)) => len,
            Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD => {
                return Err(ParseError::TooLarge);
            }
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(e) => return Err(ParseError::Head(e.to_string())),
        };
        let status = response
            .code
            .and_then(|code| StatusCode::from_u16(code).ok())
            .ok_or_else(|| ParseError::Head("bad status code".to_owned()))?;
        let version = match response.version {
            Some(0) => Version::HTTP_10,
            _ => Version::HTTP_11,
        };
        let base = buf.as_ptr() as usize;
        for header in response.headers.iter() {
            let name = HeaderName::from_bytes(header.name.as_bytes())
                .map_err(|e| ParseError::Head(e.to_string()))?;
            // httparse's values are slices of `buf`; the checks only guard
            // against that ever changing.
            let range = if header.value.is_empty() {
                0..0
            } else {
                let start = (header.value.as_ptr() as usize).checked_sub(base);
                let end = start.and_then(|s| s.checked_add(header.value.len()));
                match (start, end) {
                    (Some(start), Some(end)) if end <= len => start..end,
                    _ => return Err(ParseError::Head("header outside the head".to_owned())),
                }
            };
            fields.push((name, range));
        }
        (status, version, len)
    };
    let head = buf.split_to(len).freeze();
    let mut headers = HeaderMap::with_capacity(fields.len());
    for (name, range) in fields.drain(..) {
        let value = HeaderValue::from_maybe_shared(head.slice(range))
            .map_err(|e| ParseError::Head(e.to_string()))?;
        headers.append(name, value);
    }
    Ok(Some(ResponseHead {
        status,
        version,
        headers,
    }))
}

/// Where a response body ends (RFC 9112 §6.3). Removes `Content-Length`
/// when `Transfer-Encoding` is present, since a proxy must not forward both.
pub(crate) fn response_decoder(
    method: &Method,
    status: StatusCode,
    headers: &mut HeaderMap,
) -> Result<Decoder, ParseError> {
    if method == Method::HEAD
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
    {
        return Ok(Decoder::Done);
    }
    if headers.contains_key(TRANSFER_ENCODING) {
        headers.remove(CONTENT_LENGTH);
        let last_coding = headers
            .get_all(TRANSFER_ENCODING)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .rfind(|coding| !coding.is_empty());
        return Ok(match last_coding {
            Some(coding) if coding.eq_ignore_ascii_case("chunked") => {
                Decoder::Chunked(ChunkState::Size)
            }
            // Another final coding: the body runs to the end of the
            // connection.
            _ => Decoder::UntilClose,
        });
    }
    let mut length: Option<u64> = None;
    for value in headers.get_all(CONTENT_LENGTH) {
        let text = value.to_str().map_err(|_| ParseError::ContentLength)?;
        for part in text.split(',') {
            let part = part.trim();
            if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
                return Err(ParseError::ContentLength);
            }
            let n: u64 = part.parse().map_err(|_| ParseError::ContentLength)?;
            if length.is_some_and(|l| l != n) {
                return Err(ParseError::ContentLength);
            }
            length = Some(n);
        }
    }
    Ok(match length {
        Some(0) => Decoder::Done,
        Some(n) => Decoder::Length(n),
        None => Decoder::UntilClose,
    })
}

/// Decodes a response body from the connection's read buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Decoder {
    Length(u64),
    Chunked(ChunkState),
    UntilClose,
    Done,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ChunkState {
    Size,
    Data(u64),
    DataEnd,
    Trailers,
}

#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Decoded {
    Data(Bytes),
    NeedMore,
    End,
}

impl Decoder {
    pub(crate) fn is_done(&self) -> bool {
        *self == Self::Done
    }

    /// Body bytes still due, when known.
    pub(crate) fn remaining(&self) -> Option<u64> {
        match self {
            Self::Length(n) => Some(*n),
            Self::Done => Some(0),
            _ => None,
        }
    }

    /// The next piece of body from the front of `buf`, without copying.
    pub(crate) fn decode(&mut self, buf: &mut BytesMut) -> Result<Decoded, ParseError> {
        loop {
            match self {
                Self::Done => return Ok(Decoded::End),
                Self::Length(remaining) => {
                    if buf.is_empty() {
                        return Ok(Decoded::NeedMore);
                    }
                    let n = take(buf.len(), *remaining);
                    *remaining -= n as u64;
                    if *remaining == 0 {
                        *self = Self::Done;
                    }
                    return Ok(Decoded::Data(buf.split_to(n).freeze()));
                }
                Self::UntilClose => {
                    if buf.is_empty() {
                        return Ok(Decoded::NeedMore);
                    }
                    return Ok(Decoded::Data(buf.split().freeze()));
                }
                Self::Chunked(state) => match *state {
                    ChunkState::Size => {
                        let Some((line, used)) = line(buf, MAX_CHUNK_LINE)? else {
                            return Ok(Decoded::NeedMore);
                        };
                        let size = chunk_size(line)?;
                        buf.advance(used);
                        *state = if size == 0 {
                            ChunkState::Trailers
                        } else {
                            ChunkState::Data(size)
                        };
                    }
                    ChunkState::Data(remaining) => {
                        if buf.is_empty() {
                            return Ok(Decoded::NeedMore);
                        }
                        let n = take(buf.len(), remaining);
                        *state = if remaining == n as u64 {
                            ChunkState::DataEnd
                        } else {
                            ChunkState::Data(remaining - n as u64)
                        };
                        return Ok(Decoded::Data(buf.split_to(n).freeze()));
                    }
                    ChunkState::DataEnd => {
                        let Some((line, used)) = line(buf, 2)? else {
                            return Ok(Decoded::NeedMore);
                        };
                        if !line.is_empty() {
                            return Err(ParseError::Chunk("data longer than its size"));
                        }
                        buf.advance(used);
                        *state = ChunkState::Size;
                    }
                    // Trailer fields are dropped: hyper's side sends none
                    // without being asked, and few clients ask.
                    ChunkState::Trailers => {
                        let Some((line, used)) = line(buf, MAX_HEAD)? else {
                            return Ok(Decoded::NeedMore);
                        };
                        let last = line.is_empty();
                        buf.advance(used);
                        if last {
                            *self = Self::Done;
                        }
                    }
                },
            }
        }
    }

    /// The connection reached end of file: only a close-delimited body
    /// ends that way.
    pub(crate) fn eof(&mut self) -> Result<Decoded, ParseError> {
        match self {
            Self::UntilClose | Self::Done => {
                *self = Self::Done;
                Ok(Decoded::End)
            }
            _ => Err(ParseError::Truncated),
        }
    }
}

fn take(available: usize, remaining: u64) -> usize {
    usize::try_from(remaining).map_or(available, |r| r.min(available))
}

/// The first line of `buf` without its line ending, and the bytes it takes
/// with the ending. Accepts a bare LF as well as CRLF, as most parsers do.
fn line(buf: &BytesMut, max: usize) -> Result<Option<(&[u8], usize)>, ParseError> {
    match buf.iter().position(|&b| b == b'\n') {
        Some(i) => {
            let line = &buf[..i];
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            Ok(Some((line, i + 1)))
        }
        None if buf.len() > max => Err(ParseError::Chunk("line too long")),
        None => Ok(None),
    }
}

fn chunk_size(line: &[u8]) -> Result<u64, ParseError> {
    // Extensions (";name=value") carry nothing a proxy needs.
    let digits = line
        .split(|&b| b == b';')
        .next()
        .unwrap_or_default()
        .trim_ascii();
    if digits.is_empty() || digits.len() > 15 {
        return Err(ParseError::Chunk("bad chunk size"));
    }
    let mut size: u64 = 0;
    for &b in digits {
        let digit = match b {
            b'0'..=b'9' => b - b'0',
            b'a'..=b'f' => b - b'a' + 10,
            b'A'..=b'F' => b - b'A' + 10,
            _ => return Err(ParseError::Chunk("bad chunk size")),
        };
        size = size * 16 + u64::from(digit);
    }
    Ok(size)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(
        decoder: &mut Decoder,
        input: &[u8],
        split_every: usize,
    ) -> Result<Vec<u8>, ParseError> {
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        for piece in input.chunks(split_every.max(1)) {
            buf.extend_from_slice(piece);
            loop {
                match decoder.decode(&mut buf)? {
                    Decoded::Data(data) => out.extend_from_slice(&data),
                    Decoded::NeedMore => break,
                    Decoded::End => return Ok(out),
                }
            }
        }
        match decoder.eof()? {
            Decoded::End => Ok(out),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn request_heads_carry_method_path_headers_and_framing() {
        let mut headers = HeaderMap::new();
        headers.insert("host", HeaderValue::from_static("app.example"));
        headers.insert("x-a", HeaderValue::from_static("1"));
        let mut out = Vec::new();
        encode_head(
            &mut out,
            &Method::POST,
            &PathAndQuery::from_static("/p?q=1"),
            &headers,
            &HeaderValue::from_static("127.0.0.1:9"),
            true,
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "POST /p?q=1 HTTP/1.1\r\nhost: app.example\r\nx-a: 1\r\ntransfer-encoding: chunked\r\n\r\n"
        );
    }

    #[test]
    fn request_heads_get_a_host_when_the_client_sent_none() {
        let mut out = Vec::new();
        encode_head(
            &mut out,
            &Method::GET,
            &PathAndQuery::from_static("/"),
            &HeaderMap::new(),
            &HeaderValue::from_static("127.0.0.1:9"),
            false,
        );
        assert_eq!(out, b"GET / HTTP/1.1\r\nhost: 127.0.0.1:9\r\n\r\n");
    }

    #[test]
    fn response_heads_parse_incrementally_and_leave_the_body() {
        let text = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Empty:\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\n\r\nok";
        let mut fields = HeaderSpans::new();
        let mut buf = BytesMut::from(&text[..20]);
        assert!(
            parse_response_head(&mut buf, &mut fields)
                .unwrap()
                .is_none()
        );
        buf.extend_from_slice(&text[20..]);
        let head = parse_response_head(&mut buf, &mut fields).unwrap().unwrap();
        assert_eq!(head.status, StatusCode::OK);
        assert_eq!(head.headers["content-length"], "2");
        assert_eq!(head.headers["x-empty"], "");
        assert_eq!(head.headers.get_all("set-cookie").iter().count(), 2);
        assert_eq!(&buf[..], b"ok");
    }

    #[test]
    fn garbage_and_oversized_heads_are_refused() {
        let mut fields = HeaderSpans::new();
        let mut buf = BytesMut::from(&b"HTTP/1.1 abc\r\n\r\n"[..]);
        assert!(parse_response_head(&mut buf, &mut fields).is_err());
        let mut buf = BytesMut::from(&b"HTTP/1.1 200 OK\r\n"[..]);
        buf.extend_from_slice(&vec![b'a'; MAX_HEAD]);
        assert_eq!(
            parse_response_head(&mut buf, &mut fields).unwrap_err(),
            ParseError::TooLarge
        );
    }

    fn decoder_for(
        method: Method,
        status: u16,
        headers: &[(&'static str, &'static str)],
    ) -> (Result<Decoder, ParseError>, HeaderMap) {
        let mut map = HeaderMap::new();
        for &(name, value) in headers {
            map.append(name, HeaderValue::from_static(value));
        }
        let decoder = response_decoder(&method, StatusCode::from_u16(status).unwrap(), &mut map);
        (decoder, map)
    }

    #[test]
    fn framing_follows_rfc_9112() {
        type Case = (
            Method,
            u16,
            &'static [(&'static str, &'static str)],
            Result<Decoder, ParseError>,
        );
        let cases: &[Case] = &[
            (
                Method::GET,
                200,
                &[("content-length", "5")],
                Ok(Decoder::Length(5)),
            ),
            (
                Method::GET,
                200,
                &[("content-length", "5, 5")],
                Ok(Decoder::Length(5)),
            ),
            (
                Method::GET,
                200,
                &[("content-length", "5"), ("content-length", "6")],
                Err(ParseError::ContentLength),
            ),
            (
                Method::GET,
                200,
                &[("content-length", "-1")],
                Err(ParseError::ContentLength),
            ),
            (
                Method::GET,
                200,
                &[("content-length", "0")],
                Ok(Decoder::Done),
            ),
            (
                Method::HEAD,
                200,
                &[("content-length", "5")],
                Ok(Decoder::Done),
            ),
            (Method::GET, 204, &[], Ok(Decoder::Done)),
            (
                Method::GET,
                304,
                &[("content-length", "5")],
                Ok(Decoder::Done),
            ),
            (Method::GET, 200, &[], Ok(Decoder::UntilClose)),
            (
                Method::GET,
                200,
                &[("transfer-encoding", "gzip, chunked")],
                Ok(Decoder::Chunked(ChunkState::Size)),
            ),
            (
                Method::GET,
                200,
                &[("transfer-encoding", "chunked, gzip")],
                Ok(Decoder::UntilClose),
            ),
        ];
        for (method, status, headers, expected) in cases {
            let (decoder, _) = decoder_for(method.clone(), *status, headers);
            assert_eq!(&decoder, expected, "{method} {status} {headers:?}");
        }
        let (_, headers) = decoder_for(
            Method::GET,
            200,
            &[("transfer-encoding", "chunked"), ("content-length", "3")],
        );
        assert!(
            !headers.contains_key("content-length"),
            "TE wins and CL goes"
        );
    }

    #[test]
    fn chunked_bodies_decode_across_any_split() {
        let input =
            b"5;ext=1\r\nhello\r\n6\r\n world\r\nA\r\n0123456789\r\n0\r\nx-trailer: 1\r\n\r\n";
        for split in [1, 2, 3, 7, 100] {
            let mut decoder = Decoder::Chunked(ChunkState::Size);
            let body = decode_all(&mut decoder, input, split).unwrap();
            assert_eq!(body, b"hello world0123456789", "split {split}");
            assert!(decoder.is_done());
        }
    }

    #[test]
    fn malformed_or_truncated_chunked_bodies_fail() {
        for input in [
            &b"zz\r\nhello\r\n0\r\n\r\n"[..],
            b"5\r\nhelloXX\r\n0\r\n\r\n",
            b"5\r\nhel",
        ] {
            let mut decoder = Decoder::Chunked(ChunkState::Size);
            assert!(decode_all(&mut decoder, input, 100).is_err(), "{input:?}");
        }
    }

    #[test]
    fn length_bodies_stop_at_their_length_and_leave_the_rest() {
        let mut decoder = Decoder::Length(5);
        let mut buf = BytesMut::from(&b"helloNEXT"[..]);
        assert_eq!(
            decoder.decode(&mut buf).unwrap(),
            Decoded::Data(Bytes::from_static(b"hello"))
        );
        assert!(decoder.is_done());
        assert_eq!(&buf[..], b"NEXT");
        let mut short = Decoder::Length(5);
        assert_eq!(
            decode_all(&mut short, b"hel", 10),
            Err(ParseError::Truncated)
        );
    }

    #[test]
    fn close_delimited_bodies_end_at_eof() {
        let mut decoder = Decoder::UntilClose;
        assert_eq!(
            decode_all(&mut decoder, b"all of it", 4).unwrap(),
            b"all of it"
        );
    }
}
