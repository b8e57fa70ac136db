//! Client connection limits: the header-read and idle timeouts, and a
//! slow-header flood that neither stops real requests nor the health checks,
//! below and beyond the connection limit.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{Backend, client, fast_health_check, get};
use gantry_proxy::{Health, ListenerConfig, LoadBalancer, Rule, Target};
use http::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

fn any_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

async fn balancer(config: ListenerConfig) -> (LoadBalancer, Backend) {
    let lb = LoadBalancer::start_with(any_addr(), vec![Rule::new(1, "*", "web")], config)
        .await
        .unwrap();
    let backend = Backend::start("a").await;
    let group = lb.target_group("web");
    group.set_health_check(fast_health_check()).unwrap();
    group.register(Target::new("a", backend.addr));
    group
        .wait_healthy("a", Duration::from_secs(10))
        .await
        .unwrap();
    (lb, backend)
}

/// Waits for the peer to close `stream`; how long that took.
async fn closed_after(stream: &mut TcpStream, limit: Duration) -> Duration {
    let started = Instant::now();
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout(limit, stream.read(&mut buf)).await {
            Err(_) => panic!("the connection is still open after {limit:?}"),
            Ok(Ok(0) | Err(_)) => return started.elapsed(),
            Ok(Ok(_)) => {}
        }
    }
}

/// Opens `count` connections that each send the start of a request head
/// and nothing more.
async fn slow_headers(lb: SocketAddr, count: usize) -> Vec<TcpStream> {
    let mut streams = Vec::with_capacity(count);
    for _ in 0..count {
        let mut stream = TcpStream::connect(lb).await.unwrap();
        stream
            .write_all(b"GET /slow HTTP/1.1\r\nHost: flood\r\nX-A: ")
            .await
            .unwrap();
        streams.push(stream);
    }
    streams
}

/// How many of `streams` the load balancer has closed.
async fn count_closed(streams: &mut [TcpStream]) -> usize {
    let mut closed = 0;
    let mut buf = [0u8; 64];
    for stream in streams {
        if let Ok(Ok(0) | Err(_)) =
            tokio::time::timeout(Duration::from_millis(1), stream.read(&mut buf)).await
        {
            closed += 1;
        }
    }
    closed
}

#[tokio::test]
async fn a_connection_sending_half_a_header_is_closed_after_the_header_read_timeout() {
    let (lb, _backend) = balancer(ListenerConfig {
        header_read_timeout: Duration::from_millis(300),
        ..ListenerConfig::default()
    })
    .await;
    let mut slow = TcpStream::connect(lb.local_addr()).await.unwrap();
    slow.write_all(b"GET / HTTP/1.1\r\nHost: lo").await.unwrap();
    let after = closed_after(&mut slow, Duration::from_secs(5)).await;
    assert!(
        after >= Duration::from_millis(250),
        "closed after {after:?}"
    );

    // A head sent on time is answered.
    let answer = get(&client(), lb.local_addr(), "/").await;
    assert_eq!(answer.status, StatusCode::OK);
    lb.shutdown().await;
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_the_idle_timeout() {
    let (lb, _backend) = balancer(ListenerConfig {
        header_read_timeout: Duration::from_millis(200),
        idle_timeout: Duration::from_millis(600),
        ..ListenerConfig::default()
    })
    .await;
    let mut stream = TcpStream::connect(lb.local_addr()).await.unwrap();
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 1024];
    let n = stream.read(&mut buf).await.unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    // Kept open past the header-read timeout: it sent a head in time.
    let after = closed_after(&mut stream, Duration::from_secs(5)).await;
    assert!(
        after >= Duration::from_millis(500),
        "closed after {after:?}"
    );
    lb.shutdown().await;
}

#[tokio::test]
async fn with_500_slow_header_connections_open_requests_succeed_and_targets_stay_healthy() {
    let (lb, _backend) = balancer(ListenerConfig::default()).await;
    let group = lb.target_group("web");
    let mut events = group.subscribe();
    let mut flood = slow_headers(lb.local_addr(), 500).await;

    let client = client();
    for _ in 0..50 {
        let answer = get(&client, lb.local_addr(), "/").await;
        assert_eq!(answer.status, StatusCode::OK);
        assert_eq!(answer.backend(), "a");
    }
    // The health checks (every 50 ms) go on all along.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        events.try_recv().is_err(),
        "no health change under the flood"
    );
    assert_eq!(group.targets()[0].health, Health::Healthy);
    assert_eq!(
        count_closed(&mut flood).await,
        0,
        "below the limit nobody is evicted"
    );
    lb.shutdown().await;
}

#[tokio::test]
async fn beyond_the_connection_limit_slow_header_connections_make_room_for_real_clients() {
    let (lb, _backend) = balancer(ListenerConfig {
        max_connections: 100,
        ..ListenerConfig::default()
    })
    .await;
    let group = lb.target_group("web");
    let mut flood = slow_headers(lb.local_addr(), 500).await;

    // Each new connection costs the oldest slow one its place.
    let client = client();
    for _ in 0..20 {
        let answer = get(&client, lb.local_addr(), "/").await;
        assert_eq!(answer.status, StatusCode::OK);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let closed = count_closed(&mut flood).await;
    assert!(
        closed >= 400,
        "only {closed} of 500 slow connections were closed"
    );
    assert_eq!(group.targets()[0].health, Health::Healthy);
    lb.shutdown().await;
}

#[tokio::test]
async fn shutdown_does_not_wait_for_slow_header_connections() {
    let (lb, _backend) = balancer(ListenerConfig::default()).await;
    let _flood = slow_headers(lb.local_addr(), 20).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let started = Instant::now();
    lb.shutdown().await;
    assert!(started.elapsed() < Duration::from_secs(5));
}
