//! Real backends and a real client for the integration tests: everything
//! goes over sockets on 127.0.0.1.

#![allow(dead_code, unreachable_pub)] // each test binary uses a different part

pub mod pki;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use http_body_util::{BodyExt, Either, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub type TestBody = Either<Full<Bytes>, Zeros>;

/// A backend that answers with its name, except on a few test paths:
/// `/health` (200, or 503 after `set_healthy(false)`), `/slow/MS`,
/// `/headers` (the request headers it got, one `name: value` per line),
/// `/ws` (a protocol upgrade that echoes bytes), `/big/BYTES` (a streamed
/// body of zeros with a Content-Length), `/chunked/BYTES` (the same, sent
/// chunked) and `/upload` (counts the request body's bytes).
pub struct Backend {
    pub name: String,
    pub addr: SocketAddr,
    healthy: Arc<AtomicBool>,
    hits: Arc<AtomicUsize>,
    connections: Arc<AtomicUsize>,
    stop: CancellationToken,
    tasks: TaskTracker,
}

impl Backend {
    pub async fn start(name: &str) -> Backend {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let healthy = Arc::new(AtomicBool::new(true));
        let hits = Arc::new(AtomicUsize::new(0));
        let connections = Arc::new(AtomicUsize::new(0));
        let stop = CancellationToken::new();
        let tasks = TaskTracker::new();
        let (name2, healthy2, hits2, stop2, tasks2, connections2) = (
            name.to_owned(),
            healthy.clone(),
            hits.clone(),
            stop.clone(),
            tasks.clone(),
            connections.clone(),
        );
        tasks.spawn(async move {
            loop {
                let (stream, _) = tokio::select! {
                    () = stop2.cancelled() => return,
                    accepted = listener.accept() => match accepted {
                        Ok(accepted) => accepted,
                        Err(_) => continue,
                    },
                };
                connections2.fetch_add(1, SeqCst);
                let (name, healthy, hits, stop) =
                    (name2.clone(), healthy2.clone(), hits2.clone(), stop2.clone());
                tasks2.spawn(async move {
                    let service = service_fn(move |request| {
                        let (name, healthy, hits) = (name.clone(), healthy.clone(), hits.clone());
                        async move { Ok::<_, Infallible>(answer(&name, &healthy, &hits, request).await) }
                    });
                    let connection = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .with_upgrades();
                    // Stopping drops the connection mid-whatever, like a
                    // killed container.
                    tokio::select! {
                        _ = connection => {}
                        () = stop.cancelled() => {}
                    }
                });
            }
        });
        Backend {
            name: name.to_owned(),
            addr,
            healthy,
            hits,
            connections,
            stop,
            tasks,
        }
    }

    /// TCP connections accepted so far, health checks' included.
    pub fn connections(&self) -> usize {
        self.connections.load(SeqCst)
    }

    pub fn set_healthy(&self, healthy: bool) {
        self.healthy.store(healthy, SeqCst);
    }

    /// Requests served, health checks excluded.
    pub fn hits(&self) -> usize {
        self.hits.load(SeqCst)
    }

    pub async fn stop(self) {
        self.stop.cancel();
        self.tasks.close();
        self.tasks.wait().await;
    }
}

async fn answer(
    name: &str,
    healthy: &AtomicBool,
    hits: &AtomicUsize,
    mut request: Request<Incoming>,
) -> Response<Either<Full<Bytes>, Zeros>> {
    let path = request.uri().path().to_owned();
    if path == "/health" {
        let status = if healthy.load(SeqCst) {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        };
        return text(status, name, "health");
    }
    hits.fetch_add(1, SeqCst);
    if let Some(ms) = path.strip_prefix("/slow/") {
        let ms: u64 = ms.parse().unwrap_or(0);
        tokio::time::sleep(Duration::from_millis(ms)).await;
        return text(StatusCode::OK, name, name);
    }
    if path == "/headers" {
        let mut lines = String::new();
        for (header, value) in request.headers() {
            lines.push_str(&format!("{}: {}\n", header, value.to_str().unwrap_or("?")));
        }
        return text(StatusCode::OK, name, &lines);
    }
    if path == "/ws" {
        let upgrade = hyper::upgrade::on(&mut request);
        tokio::spawn(async move {
            let Ok(upgraded) = upgrade.await else { return };
            let mut io = TokioIo::new(upgraded);
            let mut buf = [0u8; 1024];
            loop {
                match io.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => {
                        if io.write_all(&buf[..n]).await.is_err() {
                            return;
                        }
                    }
                }
            }
        });
        let mut response = Response::new(Either::Left(Full::new(Bytes::new())));
        *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        response
            .headers_mut()
            .insert("upgrade", "websocket".parse().unwrap());
        response
            .headers_mut()
            .insert("connection", "upgrade".parse().unwrap());
        return response;
    }
    if let Some(bytes) = path.strip_prefix("/big/") {
        let mut response = Response::new(Either::Right(Zeros::new(bytes.parse().unwrap_or(0))));
        response
            .headers_mut()
            .insert("x-backend", name.parse().unwrap());
        return response;
    }
    if let Some(bytes) = path.strip_prefix("/chunked/") {
        let body = Zeros::new(bytes.parse().unwrap_or(0)).without_length();
        let mut response = Response::new(Either::Right(body));
        response
            .headers_mut()
            .insert("x-backend", name.parse().unwrap());
        return response;
    }
    if path == "/upload" {
        let mut body = request.into_body();
        let mut total: u64 = 0;
        while let Some(frame) = body.frame().await {
            match frame {
                Ok(frame) => total += frame.data_ref().map_or(0, |d| d.len() as u64),
                Err(_) => return text(StatusCode::BAD_REQUEST, name, "broken body"),
            }
        }
        return text(StatusCode::OK, name, &total.to_string());
    }
    text(StatusCode::OK, name, name)
}

fn text(status: StatusCode, backend: &str, body: &str) -> Response<TestBody> {
    let mut response = Response::new(Either::Left(Full::new(Bytes::from(body.to_owned()))));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert("x-backend", backend.parse().unwrap());
    response
}

/// A body of `remaining` zero bytes, produced 64 KiB at a time as it is
/// read, so neither end ever holds it whole.
pub struct Zeros {
    remaining: u64,
    chunk: Bytes,
    sized: bool,
}

impl Zeros {
    pub fn new(len: u64) -> Self {
        Self {
            remaining: len,
            chunk: Bytes::from(vec![0u8; 64 * 1024]),
            sized: true,
        }
    }

    /// Hides the length, so hyper sends the body chunked.
    pub fn without_length(mut self) -> Self {
        self.sized = false;
        self
    }
}

impl Body for Zeros {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.remaining == 0 {
            return Poll::Ready(None);
        }
        let n = self.remaining.min(self.chunk.len() as u64);
        self.remaining -= n;
        let data = self.chunk.slice(..n as usize);
        Poll::Ready(Some(Ok(Frame::data(data))))
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> SizeHint {
        if self.sized {
            SizeHint::with_exact(self.remaining)
        } else {
            SizeHint::default()
        }
    }
}

pub fn client() -> Client<HttpConnector, TestBody> {
    Client::builder(TokioExecutor::new()).build_http()
}

pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Answer {
    pub fn backend(&self) -> &str {
        self.headers
            .get("x-backend")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
}

pub async fn send(client: &Client<HttpConnector, TestBody>, request: Request<TestBody>) -> Answer {
    let response = client.request(request).await.expect("the proxy answers");
    let status = response.status();
    let headers = response.headers().clone();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("a whole body")
        .to_bytes();
    Answer {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

pub async fn get(client: &Client<HttpConnector, TestBody>, lb: SocketAddr, path: &str) -> Answer {
    let request = Request::get(format!("http://{lb}{path}"))
        .body(Either::Left(Full::new(Bytes::new())))
        .unwrap();
    send(client, request).await
}

/// An address nothing listens on: connecting to it is refused.
pub async fn dead_addr() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap()
}

/// Health checks fast enough for tests.
pub fn fast_health_check() -> gantry_proxy::HealthCheckConfig {
    gantry_proxy::HealthCheckConfig {
        path: "/health".to_owned(),
        interval: Duration::from_millis(50),
        timeout: Duration::from_millis(500),
        healthy_threshold: 2,
        unhealthy_threshold: 2,
        ..gantry_proxy::HealthCheckConfig::default()
    }
}
