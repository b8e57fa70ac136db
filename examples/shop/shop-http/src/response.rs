//! HTTP responses and their serialisation.

use crate::json::Json;
use crate::time::Utc;

/// An HTTP response. `Content-Length`, `Connection` and `Date` are added when
/// it is written; handlers set the rest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// Header fields, in order.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl Response {
    /// An empty response.
    pub fn new(status: u16) -> Response {
        Response {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// A `text/plain` response.
    pub fn text(status: u16, body: impl Into<String>) -> Response {
        Response::new(status)
            .with_header("Content-Type", "text/plain; charset=utf-8")
            .with_body(body.into())
    }

    /// An `application/json` response.
    pub fn json(status: u16, body: &Json) -> Response {
        Response::new(status)
            .with_header("Content-Type", "application/json")
            .with_body(body.to_string())
    }

    /// A `text/html` response.
    pub fn html(status: u16, body: impl Into<String>) -> Response {
        Response::new(status)
            .with_header("Content-Type", "text/html; charset=utf-8")
            .with_body(body.into())
    }

    /// Adds a header (builder style). CR and LF in either part become spaces
    /// so no value can inject a header of its own.
    pub fn with_header(mut self, name: &str, value: &str) -> Response {
        let clean = |s: &str| s.replace(['\r', '\n'], " ");
        self.headers.push((clean(name), clean(value)));
        self
    }

    /// Sets the body (builder style).
    pub fn with_body(mut self, body: impl Into<Vec<u8>>) -> Response {
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

    /// The body as text (lossy), for tests and logs.
    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The bytes to send: status line, headers, body (none for `HEAD`, whose
    /// `Content-Length` still tells the size a `GET` would get). One buffer,
    /// so the response leaves in one write.
    pub fn to_bytes(&self, head_only: bool, keep_alive: bool) -> Vec<u8> {
        let mut head = format!("HTTP/1.1 {} {}\r\n", self.status, reason(self.status));
        for (name, value) in &self.headers {
            if name.eq_ignore_ascii_case("content-length") || name.eq_ignore_ascii_case("connection") {
                continue; // ours are authoritative
            }
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        if self.header("date").is_none() {
            head.push_str(&format!("Date: {}\r\n", Utc::now().http_date()));
        }
        // 1xx, 204 and 304 carry no body and no length (RFC 9110 §8.6).
        let bodiless = self.status < 200 || self.status == 204 || self.status == 304;
        if !bodiless {
            head.push_str(&format!("Content-Length: {}\r\n", self.body.len()));
        }
        head.push_str(if keep_alive {
            "Connection: keep-alive\r\n\r\n"
        } else {
            "Connection: close\r\n\r\n"
        });
        let mut bytes = head.into_bytes();
        if !head_only && !bodiless {
            bytes.extend_from_slice(&self.body);
        }
        bytes
    }
}

/// The reason phrase of a status code.
pub fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        413 => "Content Too Large",
        415 => "Unsupported Media Type",
        422 => "Unprocessable Content",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => "Unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serialises_with_length_and_connection() {
        let r = Response::text(200, "ok")
            .with_header("Date", "x")
            .with_header("Content-Length", "99");
        let text = String::from_utf8(r.to_bytes(false, true)).unwrap();
        assert_eq!(
            text,
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nDate: x\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\nok"
        );
        let head = String::from_utf8(r.to_bytes(true, false)).unwrap();
        assert!(
            head.ends_with("Content-Length: 2\r\nConnection: close\r\n\r\n"),
            "{head}"
        );
    }

    #[test]
    fn headers_cannot_inject_lines() {
        let r = Response::new(204).with_header("X-A", "a\r\nSet-Cookie: evil");
        assert_eq!(r.header("x-a"), Some("a  Set-Cookie: evil"));
        let text = String::from_utf8(r.to_bytes(false, true)).unwrap();
        assert!(!text.contains("Content-Length"), "{text}");
        assert_eq!(text.matches("\r\n").count(), 5, "{text}");
    }
}
