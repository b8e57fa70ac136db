//! Active health checks: state transitions with thresholds, traffic only to
//! healthy targets, grace periods, and `wait_healthy` for deploys.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{Backend, client, fast_health_check, get};
use gantry_proxy::{Health, HealthCheckConfig, HealthEvent, LoadBalancer, Rule, Target};
use http::StatusCode;
use tokio::sync::broadcast;
use tokio::time::Instant;

fn any_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

async fn next_event(events: &mut broadcast::Receiver<HealthEvent>) -> (String, Health, Health) {
    let event = tokio::time::timeout(Duration::from_secs(10), events.recv())
        .await
        .expect("a health event within 10 s")
        .expect("no lag");
    (event.target, event.previous, event.current)
}

#[tokio::test]
async fn checks_move_a_target_initial_healthy_unhealthy_healthy_by_thresholds() {
    let lb = LoadBalancer::start(any_addr(), vec![Rule::new(1, "*", "web")])
        .await
        .unwrap();
    let backend = Backend::start("a").await;
    let group = lb.target_group("web");
    let mut events = group.subscribe();
    group.set_health_check(fast_health_check()).unwrap();
    group.register(Target::new("a", backend.addr));
    assert_eq!(group.targets()[0].health, Health::Initial);

    assert_eq!(
        next_event(&mut events).await,
        ("a".to_owned(), Health::Initial, Health::Healthy)
    );
    backend.set_healthy(false);
    assert_eq!(
        next_event(&mut events).await,
        ("a".to_owned(), Health::Healthy, Health::Unhealthy)
    );
    let status = &group.targets()[0];
    assert_eq!(status.health, Health::Unhealthy);
    assert_eq!(
        status.last_failure.as_deref(),
        Some("status 503 does not match 200-399")
    );
    backend.set_healthy(true);
    assert_eq!(
        next_event(&mut events).await,
        ("a".to_owned(), Health::Unhealthy, Health::Healthy)
    );
    lb.shutdown().await;
}

#[tokio::test]
async fn thresholds_need_consecutive_results() {
    let lb = LoadBalancer::start(any_addr(), vec![]).await.unwrap();
    let backend = Backend::start("a").await;
    let group = lb.target_group("web");
    let mut events = group.subscribe();
    group
        .set_health_check(HealthCheckConfig {
            healthy_threshold: 5,
            ..fast_health_check()
        })
        .unwrap();
    let started = Instant::now();
    group.register(Target::new("a", backend.addr));
    next_event(&mut events).await;
    // Five checks, the first at once: four intervals at least.
    assert!(started.elapsed() >= Duration::from_millis(200));
    lb.shutdown().await;
}

#[tokio::test]
async fn an_unhealthy_target_gets_no_traffic_while_a_healthy_one_exists() {
    let lb = LoadBalancer::start(any_addr(), vec![Rule::new(1, "*", "web")])
        .await
        .unwrap();
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let group = lb.target_group("web");
    group.set_health_check(fast_health_check()).unwrap();
    group.register(Target::new("a", a.addr));
    group.register(Target::new("b", b.addr));
    group
        .wait_healthy("a", Duration::from_secs(10))
        .await
        .unwrap();
    group
        .wait_healthy("b", Duration::from_secs(10))
        .await
        .unwrap();

    let mut events = group.subscribe();
    b.set_healthy(false);
    assert_eq!(next_event(&mut events).await.2, Health::Unhealthy);
    let client = client();
    let before = b.hits();
    for _ in 0..50 {
        let answer = get(&client, lb.local_addr(), "/").await;
        assert_eq!(answer.status, StatusCode::OK);
        assert_eq!(answer.backend(), "a");
    }
    assert_eq!(b.hits(), before);
    lb.shutdown().await;
}

#[tokio::test]
async fn initial_targets_get_no_traffic_while_a_healthy_one_exists() {
    let lb = LoadBalancer::start(any_addr(), vec![Rule::new(1, "*", "web")])
        .await
        .unwrap();
    let (old, new) = (Backend::start("old").await, Backend::start("new").await);
    new.set_healthy(false);
    let group = lb.target_group("web");
    group.set_health_check(fast_health_check()).unwrap();
    group.register(Target::new("old", old.addr));
    group
        .wait_healthy("old", Duration::from_secs(10))
        .await
        .unwrap();
    group.register(Target::new("new", new.addr));
    let client = client();
    for _ in 0..20 {
        assert_eq!(get(&client, lb.local_addr(), "/").await.backend(), "old");
    }
    assert_eq!(new.hits(), 0);
    lb.shutdown().await;
}

#[tokio::test]
async fn with_no_healthy_target_the_group_fails_open() {
    let lb = LoadBalancer::start(any_addr(), vec![Rule::new(1, "*", "web")])
        .await
        .unwrap();
    let backend = Backend::start("a").await;
    backend.set_healthy(false);
    let group = lb.target_group("web");
    group.set_health_check(fast_health_check()).unwrap();
    group.register(Target::new("a", backend.addr));
    // Initial: better to try it than to answer 503.
    assert_eq!(
        get(&client(), lb.local_addr(), "/").await.status,
        StatusCode::OK
    );
    let _ = group.wait_healthy("a", Duration::from_secs(10)).await;
    assert_eq!(group.targets()[0].health, Health::Unhealthy);
    // Unhealthy and alone: still tried, as ALB does.
    assert_eq!(
        get(&client(), lb.local_addr(), "/").await.status,
        StatusCode::OK
    );
    lb.shutdown().await;
}

#[tokio::test]
async fn wait_healthy_fails_fast_when_the_target_turns_unhealthy() {
    let lb = LoadBalancer::start(any_addr(), vec![]).await.unwrap();
    let backend = Backend::start("a").await;
    backend.set_healthy(false);
    let group = lb.target_group("web");
    group.set_health_check(fast_health_check()).unwrap();
    group.register(Target::new("a", backend.addr));
    let started = Instant::now();
    let error = group
        .wait_healthy("a", Duration::from_secs(60))
        .await
        .unwrap_err();
    assert_eq!(error.code(), "target_unhealthy");
    assert!(error.to_string().contains("status 503"), "{error}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    lb.shutdown().await;
}

#[tokio::test]
async fn failures_within_the_grace_period_do_not_count() {
    let lb = LoadBalancer::start(any_addr(), vec![]).await.unwrap();
    let group = lb.target_group("web");
    group
        .set_health_check(HealthCheckConfig {
            grace: Duration::from_millis(600),
            ..fast_health_check()
        })
        .unwrap();

    // A service that never comes up is declared Unhealthy only after grace.
    let broken = Backend::start("broken").await;
    broken.set_healthy(false);
    let started = Instant::now();
    group.register(Target::new("broken", broken.addr));
    let error = group
        .wait_healthy("broken", Duration::from_secs(60))
        .await
        .unwrap_err();
    assert_eq!(error.code(), "target_unhealthy");
    assert!(started.elapsed() >= Duration::from_millis(600));

    // One that boots within the grace period becomes Healthy, never
    // Unhealthy.
    let slow = Backend::start("slow").await;
    slow.set_healthy(false);
    let mut events = group.subscribe();
    group.register(Target::new("slow", slow.addr));
    tokio::time::sleep(Duration::from_millis(300)).await;
    slow.set_healthy(true);
    group
        .wait_healthy("slow", Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(
        next_event(&mut events).await,
        ("slow".to_owned(), Health::Initial, Health::Healthy)
    );
    lb.shutdown().await;
}

#[tokio::test]
async fn wait_healthy_reports_unknown_targets_and_timeouts() {
    let lb = LoadBalancer::start(any_addr(), vec![]).await.unwrap();
    let group = lb.target_group("web");
    let error = group
        .wait_healthy("nobody", Duration::from_secs(1))
        .await
        .unwrap_err();
    assert_eq!(error.code(), "target_not_found");

    // A target that hangs on its health check stays Initial until the
    // unhealthy threshold; with a long check timeout it outlasts the wait.
    let backend = Backend::start("a").await;
    group
        .set_health_check(HealthCheckConfig {
            path: "/slow/10000".to_owned(),
            timeout: Duration::from_secs(30),
            ..fast_health_check()
        })
        .unwrap();
    group.register(Target::new("a", backend.addr));
    let error = group
        .wait_healthy("a", Duration::from_millis(300))
        .await
        .unwrap_err();
    assert_eq!(error.code(), "target_health_timeout");
    lb.shutdown().await;
}

#[tokio::test]
async fn invalid_health_checks_are_refused_with_every_problem() {
    let lb = LoadBalancer::start(any_addr(), vec![]).await.unwrap();
    let error = lb
        .target_group("web")
        .set_health_check(HealthCheckConfig {
            path: "health".to_owned(),
            interval: Duration::ZERO,
            ..HealthCheckConfig::default()
        })
        .unwrap_err();
    assert_eq!(error.code(), "invalid_health_check");
    let text = error.to_string();
    assert!(
        text.contains("must start with '/'") && text.contains("interval"),
        "{text}"
    );
    lb.shutdown().await;
}
