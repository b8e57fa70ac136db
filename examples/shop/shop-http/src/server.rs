//! The HTTP server: a thread per connection, a cap on connections, keep-alive
//! with an idle timeout, a deadline per request, one log line per request,
//! and a drain on SIGTERM.
//!
//! A thread per connection keeps the code plain (blocking reads, no event
//! loop) and is cheap at a demo shop's load; the cap and the timeouts bound
//! what idle or slow clients can hold.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::io::DeadlineReader;
use crate::request::{Framing, MAX_BODY_BYTES, ParseError, Request, framing, read_body, read_head};
use crate::response::Response;
use crate::signal;
use crate::time::Utc;

/// What a service answers requests with.
pub type Handler = dyn Fn(&Request) -> Response + Send + Sync + 'static;

/// Server settings; [`ServerConfig::new`] has the defaults.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The name in log lines (the service's).
    pub name: String,
    /// How long a keep-alive connection may wait for its next request.
    pub idle_timeout: Duration,
    /// How long reading one request (head and body) may take.
    pub request_timeout: Duration,
    /// How long writing a response may block.
    pub write_timeout: Duration,
    /// Open connections at most; more get a 503 and are closed.
    pub max_connections: usize,
    /// How long a SIGTERM waits for requests in progress.
    pub drain_timeout: Duration,
    /// Whether to log one line per request to stdout.
    pub log_requests: bool,
}

impl ServerConfig {
    /// Defaults: 5 s idle, 15 s per request and per write, 256 connections,
    /// 10 s drain, logging on.
    pub fn new(name: &str) -> ServerConfig {
        ServerConfig {
            name: name.to_string(),
            idle_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(15),
            write_timeout: Duration::from_secs(15),
            max_connections: 256,
            drain_timeout: Duration::from_secs(10),
            log_requests: true,
        }
    }
}

struct Shared {
    config: ServerConfig,
    handler: Box<Handler>,
    connections: AtomicUsize,
    in_flight: AtomicUsize,
    stopping: AtomicBool,
}

impl Shared {
    fn log(&self, line: std::fmt::Arguments<'_>) {
        if self.config.log_requests {
            log_line(&self.config.name, line);
        }
    }
}

/// Writes `<time> <name> <line>` to stdout. Errors (a closed stdout) are
/// ignored: `println!` would panic on them.
pub fn log_line(name: &str, line: std::fmt::Arguments<'_>) {
    let _ = writeln!(io::stdout().lock(), "{} {name} {line}", Utc::now().rfc3339());
}

/// Decrements a counter when dropped, also when a thread unwinds.
struct CountGuard<'a>(&'a AtomicUsize);

impl Drop for CountGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A bound, not yet running, server.
pub struct Server {
    listener: TcpListener,
    shared: Arc<Shared>,
}

/// A server whose accept loop runs on a background thread.
pub struct RunningServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    _accept: JoinHandle<()>,
}

impl RunningServer {
    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://<addr>`, for clients.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Requests being handled right now.
    pub fn in_flight(&self) -> usize {
        self.shared.in_flight.load(Ordering::SeqCst)
    }
}

impl Server {
    /// Binds `addr`; `handler` answers every request.
    pub fn bind<H>(addr: SocketAddr, config: ServerConfig, handler: H) -> io::Result<Server>
    where
        H: Fn(&Request) -> Response + Send + Sync + 'static,
    {
        let listener = TcpListener::bind(addr)?;
        let shared = Arc::new(Shared {
            config,
            handler: Box::new(handler),
            connections: AtomicUsize::new(0),
            in_flight: AtomicUsize::new(0),
            stopping: AtomicBool::new(false),
        });
        Ok(Server { listener, shared })
    }

    /// The bound address (useful after binding port 0).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Runs the accept loop on a background thread (tests, tools).
    pub fn spawn(self) -> io::Result<RunningServer> {
        let addr = self.listener.local_addr()?;
        let shared = self.shared.clone();
        let accept = thread::Builder::new()
            .name("accept".into())
            .spawn(move || accept_loop(self.listener, self.shared))?;
        Ok(RunningServer {
            addr,
            shared,
            _accept: accept,
        })
    }

    /// Serves until SIGTERM or SIGINT, then stops taking new requests on open
    /// connections, waits up to the drain timeout for requests in progress,
    /// and returns. Connections idle in keep-alive are simply dropped.
    pub fn run_until_signal(self) -> io::Result<()> {
        let name = self.shared.config.name.clone();
        if !signal::install() {
            log_line(
                &name,
                format_args!("could not install signal handlers; SIGTERM will kill without draining"),
            );
        }
        let running = self.spawn()?;
        while !signal::stop_requested() {
            thread::sleep(Duration::from_millis(100));
        }
        running.shared.stopping.store(true, Ordering::SeqCst);
        let drain = running.shared.config.drain_timeout;
        log_line(
            &name,
            format_args!("stop signal received; draining {} request(s)", running.in_flight()),
        );
        let started = Instant::now();
        while running.in_flight() > 0 && started.elapsed() < drain {
            thread::sleep(Duration::from_millis(20));
        }
        log_line(&name, format_args!("stopped"));
        Ok(())
    }
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    for conn in listener.incoming() {
        let stream = match conn {
            Ok(stream) => stream,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                shared.log(format_args!("accept failed: {e}"));
                thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        let open = shared.connections.fetch_add(1, Ordering::SeqCst) + 1;
        if open > shared.config.max_connections {
            shared.connections.fetch_sub(1, Ordering::SeqCst);
            refuse_busy(stream, &shared);
            continue;
        }
        let conn_shared = shared.clone();
        let spawned = thread::Builder::new().name("conn".into()).spawn(move || {
            let _open = CountGuard(&conn_shared.connections);
            serve_connection(stream, &conn_shared);
        });
        if let Err(e) = spawned {
            // The closure (and the stream) were dropped without running.
            shared.connections.fetch_sub(1, Ordering::SeqCst);
            shared.log(format_args!("cannot start a connection thread: {e}"));
        }
    }
}

fn refuse_busy(mut stream: TcpStream, shared: &Shared) {
    // Small response, short timeout: this runs on the accept thread.
    let _ = stream.set_write_timeout(Some(Duration::from_secs(1)));
    let response = Response::text(503, "too many connections\n").with_header("Retry-After", "1");
    let _ = stream.write_all(&response.to_bytes(false, false));
    shared.log(format_args!(
        "- - 503 refused: {} connections open",
        shared.config.max_connections
    ));
}

fn serve_connection(stream: TcpStream, shared: &Shared) {
    let config = &shared.config;
    let peer = stream.peer_addr().map(|a| a.to_string()).unwrap_or_else(|_| "-".into());
    // Responses leave in one write; no reason to wait for Nagle.
    let _ = stream.set_nodelay(true);
    let _ = stream.set_write_timeout(Some(config.write_timeout));
    let Ok(read_half) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(DeadlineReader::new(read_half, config.idle_timeout));
    let mut writer = stream;
    loop {
        // Wait for the next request's first byte, at most the idle timeout.
        reader.get_mut().set_timeout(config.idle_timeout);
        match reader.fill_buf() {
            Ok([]) | Err(_) => return,
            Ok(_) => {}
        }
        reader.get_mut().set_timeout(config.request_timeout);
        let started = Instant::now();
        let read = read_head(&mut reader).and_then(|mut req| {
            let framing = framing(&req)?;
            if req.expects_continue() && framing != Framing::Length(0) {
                writer
                    .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
                    .map_err(ParseError::Io)?;
            }
            req.body = read_body(&mut reader, framing, MAX_BODY_BYTES)?;
            Ok(req)
        });
        let mut req = match read {
            Ok(req) => req,
            Err(ParseError::Closed | ParseError::Io(_)) => return,
            Err(ParseError::Reject(status, why)) => {
                let response = Response::text(status, format!("{why}\n"));
                let _ = writer.write_all(&response.to_bytes(false, false));
                shared.log(format_args!("- - {status} rejected ({why}) from={peer}"));
                linger_close(reader, writer);
                return;
            }
        };
        let _busy = {
            shared.in_flight.fetch_add(1, Ordering::SeqCst);
            CountGuard(&shared.in_flight)
        };
        let keep_alive = req.keep_alive() && !shared.stopping.load(Ordering::SeqCst);
        // HEAD is GET without the body: handlers only route GET.
        let method = req.method.clone();
        let head_only = method == "HEAD";
        if head_only {
            req.method = "GET".into();
        }
        // A handler bug must cost one 500, not the connection's thread
        // silently (the panic message still goes to stderr).
        let response = catch_unwind(AssertUnwindSafe(|| (shared.handler)(&req)))
            .unwrap_or_else(|_| Response::text(500, "internal error\n"));
        let written = writer.write_all(&response.to_bytes(head_only, keep_alive)).is_ok();
        shared.log(format_args!(
            "{method} {} {} {}B {:.1}ms from={peer}",
            req.target(),
            response.status,
            response.body.len(),
            started.elapsed().as_secs_f64() * 1000.0
        ));
        if !written || !keep_alive {
            return;
        }
    }
}

/// Closes after an error response without losing it: closing a socket with
/// unread input makes the kernel send a reset, which can destroy the response
/// before the client reads it. So: half-close, then read and discard what
/// the client still sends, briefly and boundedly.
fn linger_close(mut reader: BufReader<DeadlineReader>, writer: TcpStream) {
    let _ = writer.shutdown(Shutdown::Write);
    reader.get_mut().set_timeout(Duration::from_millis(500));
    let _ = io::copy(&mut reader.take(256 * 1024), &mut io::sink());
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn start() -> RunningServer {
        let mut config = ServerConfig::new("test");
        config.log_requests = false;
        config.idle_timeout = Duration::from_millis(500);
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
        let server = Server::bind(addr, config, |req: &Request| match req.path.as_str() {
            "/panic" => panic!("handler bug"),
            "/echo" => Response::text(200, format!("{} {}", req.method, req.body_text().unwrap_or("?"))),
            _ => Response::text(200, "ok"),
        })
        .unwrap();
        server.spawn().unwrap()
    }

    /// Sends raw bytes, half-closes, and reads everything back. The server
    /// may answer and close before the client is done sending (a refusal
    /// such as 503): what it answered is still there to read, so a failed
    /// write or half-close is not the test's failure.
    fn exchange(server: &RunningServer, bytes: &[u8]) -> String {
        let mut s = TcpStream::connect(server.addr()).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let _ = s.write_all(bytes);
        let _ = s.shutdown(Shutdown::Write);
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out
    }

    #[test]
    fn keep_alive_pipelining_and_close() {
        let server = start();
        let out = exchange(
            &server,
            b"GET / HTTP/1.1\r\n\r\nPOST /echo HTTP/1.1\r\nContent-Length: 3\r\n\r\nabcGET / HTTP/1.1\r\nConnection: close\r\n\r\nGET / HTTP/1.1\r\n\r\n",
        );
        assert_eq!(out.matches("HTTP/1.1 200 OK").count(), 3, "{out}");
        assert!(out.contains("POST abc"), "{out}");
        assert!(out.trim_end().ends_with("Connection: close\r\n\r\nok"), "{out}");
    }

    #[test]
    fn bad_requests_get_400_and_the_server_survives() {
        let server = start();
        let out = exchange(&server, b"GARBAGE\r\n\r\n");
        assert!(out.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{out}");
        assert!(out.contains("Connection: close"), "{out}");
        let out = exchange(&server, b"POST / HTTP/1.1\r\nContent-Length: 99999999\r\n\r\n");
        assert!(out.starts_with("HTTP/1.1 413 "), "{out}");
        let out = exchange(&server, b"\x00\x01\x02\xff\r\n\r\n");
        assert!(out.starts_with("HTTP/1.1 400 "), "{out}");
        assert!(exchange(&server, b"GET / HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 200 OK"));
    }

    #[test]
    fn handler_panic_is_a_500() {
        let server = start();
        let out = exchange(&server, b"GET /panic HTTP/1.1\r\n\r\nGET / HTTP/1.1\r\n\r\n");
        assert!(out.starts_with("HTTP/1.1 500 "), "{out}");
        assert!(out.contains("HTTP/1.1 200 OK"), "the connection goes on: {out}");
        assert_eq!(server.in_flight(), 0);
    }

    #[test]
    fn head_has_length_but_no_body_and_expect_continue_works() {
        let server = start();
        let out = exchange(&server, b"HEAD / HTTP/1.1\r\nConnection: close\r\n\r\n");
        assert!(out.contains("Content-Length: 2\r\n"), "{out}");
        assert!(out.ends_with("\r\n\r\n"), "{out}");
        let out = exchange(
            &server,
            b"POST /echo HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi",
        );
        assert!(out.starts_with("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK"), "{out}");
        assert!(out.ends_with("POST hi"), "{out}");
    }

    #[test]
    fn idle_connections_are_closed() {
        let server = start();
        let mut s = TcpStream::connect(server.addr()).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let started = Instant::now();
        let mut buf = [0; 16];
        // The server hangs up after its 500 ms idle timeout: read sees EOF.
        assert_eq!(s.read(&mut buf).unwrap_or(0), 0);
        assert!(started.elapsed() < Duration::from_secs(4));
    }

    #[test]
    fn slow_requests_hit_the_request_deadline() {
        let mut config = ServerConfig::new("test");
        config.log_requests = false;
        config.request_timeout = Duration::from_millis(300);
        let server = Server::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)), config, |_: &Request| {
            Response::new(204)
        })
        .unwrap()
        .spawn()
        .unwrap();
        let mut s = TcpStream::connect(server.addr()).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let started = Instant::now();
        // A byte every 100 ms never finishes a head: the deadline closes it.
        for b in b"GET / HTTP/1.1\r\nX: y" {
            if s.write_all(&[*b]).is_err() {
                break;
            }
            thread::sleep(Duration::from_millis(100));
            if started.elapsed() > Duration::from_secs(1) {
                break;
            }
        }
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        assert!(out.is_empty(), "{}", String::from_utf8_lossy(&out));
        assert!(started.elapsed() < Duration::from_secs(4));
    }

    #[test]
    fn too_many_connections_get_503() {
        let mut config = ServerConfig::new("test");
        config.log_requests = false;
        config.max_connections = 1;
        let server = Server::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)), config, |_: &Request| {
            Response::new(204)
        })
        .unwrap()
        .spawn()
        .unwrap();
        let _first = TcpStream::connect(server.addr()).unwrap();
        thread::sleep(Duration::from_millis(100));
        let out = exchange(&server, b"GET / HTTP/1.1\r\n\r\n");
        assert!(out.starts_with("HTTP/1.1 503 "), "{out}");
    }
}
