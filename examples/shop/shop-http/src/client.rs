//! A tiny HTTP/1.1 client for one service calling another: plain HTTP, an
//! IP address (no DNS lookups: the images have no resolver configuration
//! and statically linked glibc cannot load NSS modules), a fresh connection
//! per call, and a deadline on the whole exchange.

use std::fmt;
use std::io::{BufReader, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use crate::io::DeadlineReader;
use crate::json::Json;
use crate::request::{Framing, MAX_HEAD_BYTES, ParseError, parse_content_length, read_body, read_headers, read_line};

/// Largest response body the client accepts.
pub const MAX_RESPONSE_BYTES: usize = 4 * 1024 * 1024;

/// Where requests go: `http://IP:PORT[/base/path]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// The address to connect to.
    pub addr: SocketAddr,
    /// The `Host` header value, as written in the URL.
    pub host: String,
    /// A path prefix without a trailing `/` (usually empty).
    pub base_path: String,
}

impl Endpoint {
    /// Parses `http://IP[:PORT][/path]`. `localhost` is taken as 127.0.0.1
    /// without a lookup; any other host name is refused.
    pub fn parse(url: &str) -> Result<Endpoint, String> {
        let url = url.trim();
        let lower = url.to_ascii_lowercase();
        if lower.starts_with("https://") {
            return Err(format!("{url:?}: https is not supported, use the plain http address"));
        }
        let Some(rest) = lower.starts_with("http://").then(|| &url[7..]) else {
            return Err(format!("{url:?}: expected http://IP:PORT"));
        };
        let (authority, path) = match rest.find(['/', '?', '#']) {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        if authority.is_empty() || authority.contains('@') {
            return Err(format!("{url:?}: expected http://IP:PORT"));
        }
        let addr = parse_authority(authority).ok_or_else(|| {
            format!("{url:?}: the host must be an IP address (with an optional :port); no DNS lookups are made")
        })?;
        let path = path.split(['?', '#']).next().unwrap_or("");
        Ok(Endpoint {
            addr,
            host: authority.to_string(),
            base_path: path.trim_end_matches('/').to_string(),
        })
    }

    /// The URL this endpoint was parsed from, normalised.
    pub fn url(&self) -> String {
        format!("http://{}{}", self.host, self.base_path)
    }
}

fn parse_authority(authority: &str) -> Option<SocketAddr> {
    if let Ok(addr) = authority.parse::<SocketAddr>() {
        return Some(addr);
    }
    let (host, port) = match authority.rsplit_once(':') {
        // `[::1]` without a port has a colon inside the brackets.
        Some((h, p)) if !p.contains(']') => (h, p.parse::<u16>().ok()?),
        _ => (authority, 80),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let ip = if host.eq_ignore_ascii_case("localhost") {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    } else {
        host.parse::<IpAddr>().ok()?
    };
    Some(SocketAddr::new(ip, port))
}

/// A response received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientResponse {
    /// The status code.
    pub status: u16,
    /// Header fields, in order.
    pub headers: Vec<(String, String)>,
    /// The body, de-chunked.
    pub body: Vec<u8>,
}

impl ClientResponse {
    /// The first header named `name`, case-insensitively.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON.
    pub fn json(&self) -> Result<Json, String> {
        let text = std::str::from_utf8(&self.body).map_err(|_| "response body is not UTF-8".to_string())?;
        Json::parse(text).map_err(|e| format!("response body is not JSON: {e}"))
    }
}

/// Why a call failed; the text says to whom and why, for error pages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientError(pub String);

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ClientError {}

/// `GET base+path`.
pub fn get(endpoint: &Endpoint, path: &str, timeout: Duration) -> Result<ClientResponse, ClientError> {
    request(endpoint, "GET", path, &[("Accept", "application/json")], &[], timeout)
}

/// `POST base+path` with a JSON body.
pub fn post_json(
    endpoint: &Endpoint,
    path: &str,
    body: &Json,
    timeout: Duration,
) -> Result<ClientResponse, ClientError> {
    request(
        endpoint,
        "POST",
        path,
        &[("Content-Type", "application/json"), ("Accept", "application/json")],
        body.to_string().as_bytes(),
        timeout,
    )
}

/// Any request. `path` starts with `/` (and may carry a query); `headers`
/// must not include `Host`, `Content-Length` or `Connection`, which are set
/// here. The whole exchange, connect included, must end within `timeout`.
pub fn request(
    endpoint: &Endpoint,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    timeout: Duration,
) -> Result<ClientResponse, ClientError> {
    let target = format!("{}{}", endpoint.base_path, path);
    let fail = |what: String| ClientError(format!("{method} http://{}{target}: {what}", endpoint.host));
    if !target.starts_with('/') || target.bytes().any(|b| !(0x21..0x7f).contains(&b)) {
        return Err(fail("invalid request path".into()));
    }
    let started = Instant::now();
    let stream = TcpStream::connect_timeout(&endpoint.addr, timeout).map_err(|e| fail(format!("connect: {e}")))?;
    let left = timeout.saturating_sub(started.elapsed()).max(Duration::from_millis(1));
    let _ = stream.set_nodelay(true);
    stream.set_write_timeout(Some(left)).map_err(|e| fail(e.to_string()))?;
    let mut head = format!(
        "{method} {target} HTTP/1.1\r\nHost: {}\r\nUser-Agent: shop-http/0.1\r\n",
        endpoint.host
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {}\r\n", value.replace(['\r', '\n'], " ")));
    }
    if !body.is_empty() || method == "POST" || method == "PUT" {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("Connection: close\r\n\r\n");
    let mut message = head.into_bytes();
    message.extend_from_slice(body);
    let mut writer = stream.try_clone().map_err(|e| fail(e.to_string()))?;
    writer.write_all(&message).map_err(|e| fail(format!("send: {e}")))?;
    let mut reader = BufReader::new(DeadlineReader::new(stream, left));
    read_response(&mut reader, method == "HEAD").map_err(|e| match e {
        ParseError::Io(e) if e.kind() == std::io::ErrorKind::TimedOut || e.kind() == std::io::ErrorKind::WouldBlock => {
            fail(format!("no complete response within {timeout:?}"))
        }
        ParseError::Io(e) => fail(format!("receive: {e}")),
        ParseError::Closed => fail("connection closed before a response".into()),
        ParseError::Reject(_, why) => fail(format!("invalid response: {why}")),
    })
}

/// Reads a response, skipping interim 1xx responses.
pub(crate) fn read_response<R: std::io::BufRead>(r: &mut R, head_request: bool) -> Result<ClientResponse, ParseError> {
    loop {
        let mut budget = MAX_HEAD_BYTES;
        let too_long = || ParseError::Reject(502, "response head too large".into());
        let Some(line) = read_line(r, &mut budget, &too_long)? else {
            return Err(ParseError::Closed);
        };
        let status = parse_status_line(&line).ok_or_else(|| ParseError::Reject(502, "malformed status line".into()))?;
        let headers = read_headers(r, &mut budget).map_err(|e| match e {
            ParseError::Reject(_, why) => ParseError::Reject(502, why),
            other => other,
        })?;
        if (100..200).contains(&status) {
            continue;
        }
        let mut response = ClientResponse {
            status,
            headers,
            body: Vec::new(),
        };
        if head_request || status == 204 || status == 304 {
            return Ok(response);
        }
        let chunked = response
            .header("transfer-encoding")
            .is_some_and(|te| te.to_ascii_lowercase().contains("chunked"));
        response.body = if chunked {
            read_body(r, Framing::Chunked, MAX_RESPONSE_BYTES)?
        } else if let Some(cl) = response.header("content-length") {
            let n = parse_content_length(cl).map_err(|why| ParseError::Reject(502, why.into()))?;
            if n > MAX_RESPONSE_BYTES as u64 {
                return Err(ParseError::Reject(502, "response body too large".into()));
            }
            // n <= MAX_RESPONSE_BYTES: fits a usize.
            read_body(r, Framing::Length(n as usize), MAX_RESPONSE_BYTES)?
        } else {
            // Delimited by the close (we always send Connection: close).
            let mut body = Vec::new();
            r.take(MAX_RESPONSE_BYTES as u64 + 1)
                .read_to_end(&mut body)
                .map_err(ParseError::Io)?;
            if body.len() > MAX_RESPONSE_BYTES {
                return Err(ParseError::Reject(502, "response body too large".into()));
            }
            body
        };
        return Ok(response);
    }
}

fn parse_status_line(line: &[u8]) -> Option<u16> {
    let line = std::str::from_utf8(line).ok()?;
    let mut parts = line.splitn(3, ' ');
    let version = parts.next()?;
    let code = parts.next()?;
    if !(version == "HTTP/1.1" || version == "HTTP/1.0") || code.len() != 3 || !code.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    code.parse().ok().filter(|c| (100..600).contains(c))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::response::Response;
    use crate::server::{Server, ServerConfig};
    use crate::{Request, json::Json};

    #[test]
    fn parses_endpoints() {
        let e = Endpoint::parse("http://127.0.0.1:18080").unwrap();
        assert_eq!(e.addr, "127.0.0.1:18080".parse().unwrap());
        assert_eq!(e.base_path, "");
        assert_eq!(e.host, "127.0.0.1:18080");
        let e = Endpoint::parse(" HTTP://10.0.0.1/prefix/?x ").unwrap();
        assert_eq!(e.addr, "10.0.0.1:80".parse().unwrap());
        assert_eq!(e.base_path, "/prefix");
        assert_eq!(
            Endpoint::parse("http://localhost:9515").unwrap().addr,
            "127.0.0.1:9515".parse().unwrap()
        );
        assert_eq!(
            Endpoint::parse("http://[::1]:8080/").unwrap().addr,
            "[::1]:8080".parse().unwrap()
        );
        assert_eq!(
            Endpoint::parse("http://[::1]").unwrap().addr,
            "[::1]:80".parse().unwrap()
        );
        for bad in [
            "",
            "127.0.0.1:80",
            "https://127.0.0.1",
            "http://",
            "http://shop.example.com",
            "http://a@1.2.3.4",
            "http://1.2.3.4:99999",
            "ftp://1.2.3.4",
        ] {
            assert!(Endpoint::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn reads_responses_of_every_framing() {
        let read = |bytes: &[u8]| read_response(&mut &bytes[..], false);
        let r = read(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\n{}").unwrap();
        assert_eq!((r.status, r.body.as_slice()), (201, &b"{}"[..]));
        let r = read(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n").unwrap();
        assert_eq!(r.body, b"ok");
        let r = read(b"HTTP/1.0 200 OK\r\n\r\nuntil close").unwrap();
        assert_eq!(r.text(), "until close");
        for bad in [
            &b"HTTP/1.1 2000 OK\r\n\r\n"[..],
            b"HTTP/9 200 OK\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",
            b"junk",
        ] {
            assert!(read(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn talks_to_the_server() {
        let mut config = ServerConfig::new("t");
        config.log_requests = false;
        let server = Server::bind("127.0.0.1:0".parse().unwrap(), config, |req: &Request| {
            let body = Json::parse(req.body_text().unwrap_or("")).unwrap_or(Json::Null);
            Response::json(201, &Json::obj([("path", Json::str(req.target())), ("got", body)]))
        })
        .unwrap()
        .spawn()
        .unwrap();
        let e = Endpoint::parse(&format!("{}/base/", server.url())).unwrap();
        let r = post_json(&e, "/x?y=1", &Json::obj([("a", Json::int(1))]), Duration::from_secs(5)).unwrap();
        assert_eq!(r.status, 201);
        assert_eq!(r.json().unwrap().to_string(), r#"{"path":"/base/x?y=1","got":{"a":1}}"#);
        let r = get(&e, "/", Duration::from_secs(5)).unwrap();
        assert_eq!(r.json().unwrap().get("got"), Some(&Json::Null));
    }

    #[test]
    fn reports_refused_connections_and_bad_paths() {
        // Bind then drop to get a port nothing listens on.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let e = Endpoint::parse(&format!("http://127.0.0.1:{port}")).unwrap();
        let err = get(&e, "/api/catalog/products", Duration::from_secs(2)).unwrap_err();
        assert!(err.0.contains("connect"), "{err}");
        assert!(err.0.contains("/api/catalog/products"), "{err}");
        assert!(
            get(&e, "/a b", Duration::from_secs(1))
                .unwrap_err()
                .0
                .contains("invalid request path")
        );
    }

    #[test]
    fn times_out_on_a_silent_server() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let e = Endpoint::parse(&format!("http://{}", listener.local_addr().unwrap())).unwrap();
        let started = Instant::now();
        let err = get(&e, "/", Duration::from_millis(300)).unwrap_err();
        assert!(err.0.contains("no complete response"), "{err}");
        assert!(started.elapsed() < Duration::from_secs(3));
        drop(listener);
    }
}
