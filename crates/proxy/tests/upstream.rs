//! The upstream hop: framing of bodies in both directions, interim
//! responses, keep-alive reuse, and targets that close or misbehave. Some
//! targets here are raw sockets, to send what hyper would never send.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};

use bytes::Bytes;
use common::{Backend, Zeros, client, get, send};
use gantry_proxy::{LoadBalancer, Rule, Target};
use http::{Request, StatusCode};
use http_body_util::{Either, Full};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

async fn proxy_to(addr: SocketAddr) -> LoadBalancer {
    let lb = LoadBalancer::start(
        SocketAddr::from(([127, 0, 0, 1], 0)),
        vec![Rule::new(1, "*", "web")],
    )
    .await
    .unwrap();
    lb.target_group("web").register(Target::new("t", addr));
    lb
}

/// A target that answers every request head it reads with `answer`, then
/// closes the connection if `close` is set. Counts connections.
async fn raw_target(answer: &'static [u8], close: bool) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let connections = Arc::new(AtomicUsize::new(0));
    let counter = connections.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            counter.fetch_add(1, SeqCst);
            tokio::spawn(async move {
                loop {
                    if read_head(&mut socket).await.is_none() {
                        return;
                    }
                    if socket.write_all(answer).await.is_err() || close {
                        return;
                    }
                }
            });
        }
    });
    (addr, connections)
}

async fn read_head(socket: &mut TcpStream) -> Option<Vec<u8>> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match socket.read(&mut byte).await {
            Ok(1) => head.push(byte[0]),
            _ => return None,
        }
    }
    Some(head)
}

#[tokio::test]
async fn chunked_responses_and_uploads_pass_intact() {
    let backend = Backend::start("web").await;
    let lb = proxy_to(backend.addr).await;
    let client = client();
    let answer = get(&client, lb.local_addr(), "/chunked/300000").await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.body.len(), 300_000);

    // No Content-Length from the client: the body is chunked both ways.
    let request = Request::post(format!("http://{}/upload", lb.local_addr()))
        .body(Either::Right(Zeros::new(250_000).without_length()))
        .unwrap();
    let answer = send(&client, request).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.body, "250000");
    lb.shutdown().await;
}

#[tokio::test]
async fn head_responses_have_no_body_and_the_connection_is_reused() {
    let backend = Backend::start("web").await;
    let lb = proxy_to(backend.addr).await;
    let client = client();
    let request = Request::head(format!("http://{}/big/1000", lb.local_addr()))
        .body(Either::Left(Full::new(Bytes::new())))
        .unwrap();
    let answer = send(&client, request).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.headers["content-length"], "1000");
    assert_eq!(answer.body, "");
    for _ in 0..20 {
        assert_eq!(get(&client, lb.local_addr(), "/").await.body, "web");
    }
    // One keep-alive connection carried all 21 sequential requests.
    assert_eq!(backend.connections(), 1);
    lb.shutdown().await;
}

#[tokio::test]
async fn close_delimited_bodies_are_relayed_to_the_end() {
    let (addr, _) = raw_target(
        b"HTTP/1.1 200 OK\r\nx-backend: raw\r\n\r\nuntil the very end",
        true,
    )
    .await;
    let lb = proxy_to(addr).await;
    let client = client();
    for _ in 0..3 {
        let answer = get(&client, lb.local_addr(), "/").await;
        assert_eq!(answer.status, StatusCode::OK);
        assert_eq!(answer.body, "until the very end");
    }
    lb.shutdown().await;
}

#[tokio::test]
async fn interim_responses_are_skipped() {
    let (addr, _) = raw_target(
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nlink: </a.css>\r\n\r\nHTTP/1.1 201 Created\r\ncontent-length: 4\r\n\r\nmade",
        false,
    )
    .await;
    let lb = proxy_to(addr).await;
    let answer = get(&client(), lb.local_addr(), "/").await;
    assert_eq!(answer.status, StatusCode::CREATED);
    assert_eq!(answer.body, "made");
    lb.shutdown().await;
}

#[tokio::test]
async fn transfer_encoding_wins_over_content_length() {
    // A smuggling-shaped response: the chunked framing is the real one.
    let (addr, _) = raw_target(
        b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        false,
    )
    .await;
    let lb = proxy_to(addr).await;
    let client = client();
    for _ in 0..3 {
        let answer = get(&client, lb.local_addr(), "/").await;
        assert_eq!(answer.status, StatusCode::OK);
        assert_eq!(answer.body, "hello");
        assert!(!answer.headers.contains_key("content-length"));
    }
    lb.shutdown().await;
}

#[tokio::test]
async fn malformed_responses_give_502() {
    for answer in [
        &b"this is not http\r\n\r\n"[..],
        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-length: 3\r\n\r\nok",
    ] {
        let (addr, _) = raw_target(answer, false).await;
        let lb = proxy_to(addr).await;
        let answer = get(&client(), lb.local_addr(), "/").await;
        assert_eq!(answer.status, StatusCode::BAD_GATEWAY);
        lb.shutdown().await;
    }
}

#[tokio::test]
async fn a_target_that_drops_keep_alive_connections_costs_no_request() {
    // Answers as if keeping the connection, then closes it anyway.
    let (addr, connections) =
        raw_target(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok", true).await;
    let lb = proxy_to(addr).await;
    let client = client();
    for _ in 0..30 {
        let answer = get(&client, lb.local_addr(), "/").await;
        assert_eq!(answer.status, StatusCode::OK);
        assert_eq!(answer.body, "ok");
    }
    assert!(
        connections.load(SeqCst) >= 30,
        "each request needed a new connection"
    );
    lb.shutdown().await;
}

#[tokio::test]
async fn connection_close_from_the_target_is_honoured() {
    let (addr, connections) = raw_target(
        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok",
        false,
    )
    .await;
    let lb = proxy_to(addr).await;
    let client = client();
    for _ in 0..5 {
        let answer = get(&client, lb.local_addr(), "/").await;
        assert_eq!(answer.body, "ok");
        assert!(!answer.headers.contains_key("connection"), "hop-by-hop");
    }
    assert_eq!(connections.load(SeqCst), 5);
    lb.shutdown().await;
}

/// A request body that sends `chunks` pieces of 1 KiB, `gap` apart.
struct Trickle {
    chunks: usize,
    gap: std::time::Duration,
    sleep: std::pin::Pin<Box<tokio::time::Sleep>>,
}

impl http_body::Body for Trickle {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        if self.chunks == 0 {
            return std::task::Poll::Ready(None);
        }
        std::task::ready!(self.sleep.as_mut().poll(cx));
        self.chunks -= 1;
        let next = tokio::time::Instant::now() + self.gap;
        self.sleep.as_mut().reset(next);
        std::task::Poll::Ready(Some(Ok(http_body::Frame::data(Bytes::from(vec![
            0u8;
            1024
        ])))))
    }
}

#[tokio::test]
async fn the_upstream_timeout_bounds_silence_not_a_slow_upload() {
    let backend = Backend::start("web").await;
    let config = gantry_proxy::ListenerConfig {
        upstream_timeout: std::time::Duration::from_millis(300),
        ..Default::default()
    };
    let lb = LoadBalancer::start_with(
        SocketAddr::from(([127, 0, 0, 1], 0)),
        vec![Rule::new(1, "*", "web")],
        config,
    )
    .await
    .unwrap();
    lb.target_group("web")
        .register(Target::new("web", backend.addr));
    // Ten chunks 100 ms apart: a second in all, over three timeouts.
    let gap = std::time::Duration::from_millis(100);
    let body = Trickle {
        chunks: 10,
        gap,
        sleep: Box::pin(tokio::time::sleep(gap)),
    };
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Trickle>();
    let request = Request::post(format!("http://{}/upload", lb.local_addr()))
        .body(body)
        .unwrap();
    let response = client.request(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body = http_body_util::BodyExt::collect(response.into_body())
        .await
        .unwrap()
        .to_bytes();
    assert_eq!(&body[..], b"10240");
    lb.shutdown().await;
}
