//! Deregistration with a drain, and the rolling replacement it enables:
//! no request may fail while targets are swapped under load.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::time::Duration;

use common::{Backend, client, fast_health_check, get};
use gantry_proxy::{Health, LoadBalancer, Rule, Target};
use http::StatusCode;
use tokio::time::Instant;

fn any_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

#[tokio::test]
async fn draining_lets_an_in_flight_request_finish_while_new_ones_go_elsewhere() {
    let lb = LoadBalancer::start(any_addr(), vec![Rule::new(1, "*", "web")])
        .await
        .unwrap();
    let (old, new) = (Backend::start("old").await, Backend::start("new").await);
    let group = lb.target_group("web");
    group.register(Target::new("old", old.addr));
    group.register(Target::new("new", new.addr));
    let addr = lb.local_addr();

    // Equal weights: the first pick is the first registered target.
    let slow = tokio::spawn(async move { get(&client(), addr, "/slow/800").await });
    while group.targets()[0].in_flight == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let started = Instant::now();
    let drained = tokio::spawn(group.deregister("old", Duration::from_secs(30)));
    assert_eq!(group.targets()[0].health, Health::Draining);

    let client = client();
    for _ in 0..20 {
        let answer = get(&client, addr, "/").await;
        assert_eq!(answer.status, StatusCode::OK);
        assert_eq!(answer.backend(), "new");
    }
    assert!(!drained.is_finished(), "the slow request is still running");

    let answer = slow.await.unwrap();
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.backend(), "old");
    drained.await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(5));
    let remaining: Vec<String> = group.targets().into_iter().map(|t| t.id).collect();
    assert_eq!(remaining, ["new"]);
    lb.shutdown().await;
}

#[tokio::test]
async fn deregister_resolves_at_the_drain_timeout_without_cutting_the_request() {
    let lb = LoadBalancer::start(any_addr(), vec![Rule::new(1, "*", "web")])
        .await
        .unwrap();
    let old = Backend::start("old").await;
    let group = lb.target_group("web");
    group.register(Target::new("old", old.addr));
    let addr = lb.local_addr();
    let slow = tokio::spawn(async move { get(&client(), addr, "/slow/1500").await });
    while group.targets()[0].in_flight == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let started = Instant::now();
    group.deregister("old", Duration::from_millis(200)).await;
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(200) && waited < Duration::from_millis(1200),
        "{waited:?}"
    );
    assert!(group.targets().is_empty());
    // Nothing is left to take new requests.
    assert_eq!(
        get(&client(), addr, "/").await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(slow.await.unwrap().status, StatusCode::OK);
    lb.shutdown().await;
}

#[tokio::test]
async fn no_request_fails_while_targets_are_replaced_under_load() {
    let lb = LoadBalancer::start(any_addr(), vec![Rule::new(1, "*", "web")])
        .await
        .unwrap();
    let group = lb.target_group("web");
    group.set_health_check(fast_health_check()).unwrap();
    let mut current = Backend::start("v0").await;
    group.register(Target::new("v0", current.addr));
    group
        .wait_healthy("v0", Duration::from_secs(10))
        .await
        .unwrap();

    let addr = lb.local_addr();
    let done = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for _ in 0..4 {
        let done = done.clone();
        clients.push(tokio::spawn(async move {
            let client = client();
            let mut answers = Vec::new();
            // Bounded both ways: stops when the replacements are done, and
            // after 20,000 requests whatever happens.
            while !done.load(SeqCst) && answers.len() < 20_000 {
                let path = if answers.len() % 10 == 0 {
                    "/slow/20"
                } else {
                    "/"
                };
                let answer = get(&client, addr, path).await;
                answers.push((answer.status, answer.backend().to_owned()));
            }
            answers
        }));
    }

    for version in 1..=5 {
        let id = format!("v{version}");
        let next = Backend::start(&id).await;
        group.register(Target::new(&id, next.addr));
        group
            .wait_healthy(&id, Duration::from_secs(10))
            .await
            .unwrap();
        let old_id = current.name.clone();
        group.deregister(&old_id, Duration::from_secs(10)).await;
        // Killed after the drain, like a stopped container: any request the
        // proxy still sent it would fail.
        std::mem::replace(&mut current, next).stop().await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    done.store(true, SeqCst);

    let mut total = 0;
    let mut served_by = std::collections::BTreeSet::new();
    for client in clients {
        for (status, backend) in client.await.unwrap() {
            assert_eq!(
                status,
                StatusCode::OK,
                "a request failed during replacement"
            );
            served_by.insert(backend);
            total += 1;
        }
    }
    assert!(total > 100, "only {total} requests were sent");
    assert!(served_by.len() >= 5, "served by {served_by:?}");
    lb.shutdown().await;
}

#[tokio::test]
async fn shutdown_finishes_in_flight_requests_and_stops_accepting() {
    let lb = LoadBalancer::start(any_addr(), vec![Rule::new(1, "*", "web")])
        .await
        .unwrap();
    let web = Backend::start("web").await;
    let group = lb.target_group("web");
    group.register(Target::new("web", web.addr));
    let addr = lb.local_addr();
    let slow = tokio::spawn(async move { get(&client(), addr, "/slow/500").await });
    while group.targets()[0].in_flight == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let started = Instant::now();
    lb.shutdown().await;
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "shutdown waited for the request"
    );
    let answer = slow.await.unwrap();
    assert_eq!(answer.status, StatusCode::OK);
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "the listener is closed"
    );
}
