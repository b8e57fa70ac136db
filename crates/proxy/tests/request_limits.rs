//! Per-listener request limits through real sockets: a request head over
//! `max_header_size` gets 431; a body over `max_body_size` gets 413,
//! whether its `Content-Length` says so (the target never sees it) or a
//! chunked body grows past the limit; bodies within the limit pass. The
//! bodies go to the backend's `/upload`, which reads them whole, so a
//! target closing early (a 502, rightly) cannot stand in for the limit.

mod common;

use std::net::SocketAddr;

use common::Backend;
use gantry_proxy::{ListenerConfig, LoadBalancer, Rule, Target};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn any_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// Sends raw bytes and returns the status code of the answer.
async fn status_of(addr: SocketAddr, request: &[u8]) -> u16 {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    // The proxy may answer before the whole request is read (413 at
    // once): a write error after that is fine.
    let _ = stream.write_all(request).await;
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                answer.extend_from_slice(&buf[..n]);
                if answer.windows(4).any(|w| w == b"\r\n\r\n") {
                    break;
                }
            }
        }
    }
    let text = String::from_utf8_lossy(&answer);
    text.split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"))
}

#[tokio::test]
async fn heads_and_bodies_over_the_listeners_limits_are_refused() {
    let config = ListenerConfig {
        max_header_size: 8 * 1024,
        max_body_size: Some(1000),
        ..ListenerConfig::default()
    };
    let lb = LoadBalancer::start_with(any_addr(), vec![Rule::new(1, "/*", "web")], config)
        .await
        .unwrap();
    let backend = Backend::start("web").await;
    lb.target_group("web")
        .register(Target::new("a", backend.addr));
    let addr = lb.local_addr();

    let big_header = format!(
        "GET / HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\nConnection: close\r\n\r\n",
        "a".repeat(10 * 1024)
    );
    assert_eq!(status_of(addr, big_header.as_bytes()).await, 431);
    let fine = "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    assert_eq!(status_of(addr, fine.as_bytes()).await, 200);

    let hits = backend.hits();
    let declared = format!(
        "POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 2000\r\nConnection: close\r\n\r\n{}",
        "b".repeat(2000)
    );
    assert_eq!(status_of(addr, declared.as_bytes()).await, 413);
    assert_eq!(backend.hits(), hits, "the target never saw it");

    let mut chunked =
        b"POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
            .to_vec();
    for _ in 0..4 {
        chunked.extend_from_slice(format!("1f4\r\n{}\r\n", "c".repeat(500)).as_bytes());
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    assert_eq!(status_of(addr, &chunked).await, 413);

    let within = format!(
        "POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 900\r\nConnection: close\r\n\r\n{}",
        "d".repeat(900)
    );
    assert_eq!(status_of(addr, within.as_bytes()).await, 200);
    lb.shutdown().await;
}
