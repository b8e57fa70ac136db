//! Listener rules, weighted selection, header rewriting, upgrades and error
//! responses, through real sockets.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use common::{Backend, client, dead_addr, get, send};
use gantry_proxy::{ListenerConfig, LoadBalancer, Rule, Target};
use http::{Request, StatusCode};
use http_body_util::{Either, Full};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

fn any_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

#[tokio::test]
async fn rules_are_tried_by_ascending_priority_with_star_and_question_mark() {
    let rules = vec![
        Rule::new(10, "/api/*", "api"),
        Rule::new(30, "/exact", "exact"),
        Rule::new(5, "/api/v?/admin*", "admin"),
        Rule::new(20, "/*.png", "img"),
    ];
    let lb = LoadBalancer::start(any_addr(), rules).await.unwrap();
    let mut backends = Vec::new();
    for name in ["api", "admin", "img", "exact"] {
        let backend = Backend::start(name).await;
        lb.target_group(name)
            .register(Target::new(name, backend.addr));
        backends.push(backend);
    }
    let client = client();
    let cases = [
        ("/api/v1/admin/users", "admin"),
        ("/api/v10/admin", "api"),
        ("/api/users", "api"),
        ("/logo.png", "img"),
        ("/api/logo.png", "api"),
        ("/exact", "exact"),
        ("/exact?page=2", "exact"),
    ];
    for (path, expected) in cases {
        let answer = get(&client, lb.local_addr(), path).await;
        assert_eq!(answer.status, StatusCode::OK, "{path}");
        assert_eq!(answer.backend(), expected, "{path}");
    }
    for path in ["/EXACT", "/nothing", "/exact/more", "/logo.PNG"] {
        let answer = get(&client, lb.local_addr(), path).await;
        assert_eq!(answer.status, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(answer.backend(), "", "the 404 is the listener's own");
    }
    lb.shutdown().await;
}

#[tokio::test]
async fn unmatched_paths_get_the_default_404_until_a_catch_all_rule_exists() {
    let lb = LoadBalancer::start(any_addr(), vec![Rule::new(1, "/api/*", "api")])
        .await
        .unwrap();
    let web = Backend::start("web").await;
    lb.target_group("web")
        .register(Target::new("web", web.addr));
    let client = client();
    assert_eq!(
        get(&client, lb.local_addr(), "/").await.status,
        StatusCode::NOT_FOUND
    );

    // Swapped atomically: the very next request sees the new rules.
    lb.set_rules(vec![
        Rule::new(1, "/api/*", "api"),
        Rule::new(50_000, "/*", "web"),
    ]);
    let answer = get(&client, lb.local_addr(), "/anything/at/all").await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.backend(), "web");

    lb.set_rules(vec![Rule::new(1, "*", "web")]);
    assert_eq!(get(&client, lb.local_addr(), "/x").await.backend(), "web");
    lb.shutdown().await;
}

#[tokio::test]
async fn a_group_without_targets_answers_503() {
    let lb = LoadBalancer::start(any_addr(), vec![Rule::new(1, "*", "empty")])
        .await
        .unwrap();
    let answer = get(&client(), lb.local_addr(), "/").await;
    assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
    lb.shutdown().await;
}

#[tokio::test]
async fn weights_3_to_1_give_exactly_300_and_100_of_400_requests() {
    let lb = LoadBalancer::start(any_addr(), vec![Rule::new(1, "*", "web")])
        .await
        .unwrap();
    let (blue, green) = (Backend::start("blue").await, Backend::start("green").await);
    let group = lb.target_group("web");
    group.register(Target::new("blue", blue.addr).with_weight(3));
    group.register(Target::new("green", green.addr).with_weight(1));
    let client = client();
    let mut counts = HashMap::new();
    for _ in 0..400 {
        let answer = get(&client, lb.local_addr(), "/").await;
        assert_eq!(answer.status, StatusCode::OK);
        *counts.entry(answer.backend().to_owned()).or_insert(0) += 1;
    }
    assert_eq!(counts["blue"], 300);
    assert_eq!(counts["green"], 100);

    // Shifting all traffic, as the last step of a blue/green deploy does.
    group.set_weight("blue", 0).unwrap();
    for _ in 0..10 {
        assert_eq!(get(&client, lb.local_addr(), "/").await.backend(), "green");
    }
    lb.shutdown().await;
}

#[tokio::test]
async fn forwarded_headers_are_appended_host_kept_and_hop_by_hop_headers_removed() {
    let lb = LoadBalancer::start(any_addr(), vec![Rule::new(1, "*", "web")])
        .await
        .unwrap();
    let web = Backend::start("web").await;
    lb.target_group("web")
        .register(Target::new("web", web.addr));
    let request = Request::get(format!("http://{}/headers", lb.local_addr()))
        .header("host", "app.example")
        .header("x-forwarded-for", "203.0.113.7")
        .header("x-forwarded-proto", "https")
        .header("connection", "keep-alive, x-hop")
        .header("x-hop", "1")
        .header("keep-alive", "timeout=5")
        .header("proxy-authorization", "Basic eA==")
        .header("te", "trailers")
        .header("x-app", "kept")
        .body(Either::Left(Full::new(Bytes::new())))
        .unwrap();
    let answer = send(&client(), request).await;
    assert_eq!(answer.status, StatusCode::OK);
    let seen: HashMap<&str, &str> = answer
        .body
        .lines()
        .filter_map(|line| line.split_once(": "))
        .collect();
    assert_eq!(seen["host"], "app.example");
    assert_eq!(seen["x-forwarded-for"], "203.0.113.7, 127.0.0.1");
    assert_eq!(seen["x-forwarded-proto"], "https, http");
    assert_eq!(seen["x-forwarded-host"], "app.example");
    assert_eq!(seen["x-app"], "kept");
    for hop in ["x-hop", "keep-alive", "proxy-authorization", "te"] {
        assert!(!seen.contains_key(hop), "{hop} reached the backend");
    }
    lb.shutdown().await;
}

#[tokio::test]
async fn websocket_upgrade_echoes_through_the_proxy() {
    let lb = LoadBalancer::start(any_addr(), vec![Rule::new(1, "*", "ws")])
        .await
        .unwrap();
    let backend = Backend::start("ws").await;
    let group = lb.target_group("ws");
    group.register(Target::new("ws", backend.addr));

    let mut socket = TcpStream::connect(lb.local_addr()).await.unwrap();
    socket
        .write_all(
            b"GET /ws HTTP/1.1\r\nHost: chat.example\r\nConnection: Upgrade\r\n\
              Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\
              Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
        )
        .await
        .unwrap();
    let head = read_head(&mut socket).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(
        head.to_ascii_lowercase().contains("upgrade: websocket"),
        "{head}"
    );

    for message in ["hello", "through the load balancer", "bye"] {
        socket.write_all(message.as_bytes()).await.unwrap();
        let mut echoed = vec![0u8; message.len()];
        socket.read_exact(&mut echoed).await.unwrap();
        assert_eq!(echoed, message.as_bytes());
    }
    // The tunnel counts as in flight, so draining would wait for it.
    assert_eq!(group.targets()[0].in_flight, 1);
    drop(socket);
    let deadline = Instant::now() + Duration::from_secs(5);
    while group.targets()[0].in_flight != 0 {
        assert!(Instant::now() < deadline, "the tunnel was not released");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    lb.shutdown().await;
}

async fn read_head(socket: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        socket.read_exact(&mut byte).await.unwrap();
        head.push(byte[0]);
    }
    String::from_utf8(head).unwrap()
}

#[tokio::test]
async fn a_slow_target_gets_504_at_the_upstream_timeout() {
    let config = ListenerConfig {
        upstream_timeout: Duration::from_millis(300),
        ..ListenerConfig::default()
    };
    let lb = LoadBalancer::start_with(any_addr(), vec![Rule::new(1, "*", "web")], config)
        .await
        .unwrap();
    let web = Backend::start("web").await;
    lb.target_group("web")
        .register(Target::new("web", web.addr));
    let started = Instant::now();
    let answer = get(&client(), lb.local_addr(), "/slow/5000").await;
    assert_eq!(answer.status, StatusCode::GATEWAY_TIMEOUT);
    assert!(started.elapsed() < Duration::from_secs(3));
    lb.shutdown().await;
}

#[tokio::test]
async fn a_refused_get_is_retried_on_another_target() {
    let lb = LoadBalancer::start(any_addr(), vec![Rule::new(1, "*", "web")])
        .await
        .unwrap();
    let live = Backend::start("live").await;
    let group = lb.target_group("web");
    // No health check, so both count as Healthy and the dead one is picked
    // every other time.
    group.register(Target::new("dead", dead_addr().await));
    group.register(Target::new("live", live.addr));
    let client = client();
    for _ in 0..10 {
        let answer = get(&client, lb.local_addr(), "/").await;
        assert_eq!(answer.status, StatusCode::OK);
        assert_eq!(answer.backend(), "live");
    }
    lb.shutdown().await;
}

#[tokio::test]
async fn a_failing_only_target_gives_502_and_a_body_is_never_replayed() {
    let lb = LoadBalancer::start(any_addr(), vec![Rule::new(1, "*", "web")])
        .await
        .unwrap();
    let group = lb.target_group("web");
    group.register(Target::new("dead", dead_addr().await));
    let client = client();
    assert_eq!(
        get(&client, lb.local_addr(), "/").await.status,
        StatusCode::BAD_GATEWAY
    );

    let live = Backend::start("live").await;
    group.register(Target::new("live", live.addr));
    // The POST that lands on the dead target is not retried: its body may
    // have been consumed.
    let mut statuses = Vec::new();
    for _ in 0..2 {
        let request = Request::post(format!("http://{}/upload", lb.local_addr()))
            .body(Either::Left(Full::new(Bytes::from_static(b"payload"))))
            .unwrap();
        statuses.push(send(&client, request).await.status);
    }
    statuses.sort();
    assert_eq!(statuses, [StatusCode::OK, StatusCode::BAD_GATEWAY]);
    lb.shutdown().await;
}
