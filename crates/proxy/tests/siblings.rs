//! Listeners that share target groups (`LoadBalancer::start_sibling`), as
//! an ALB's listeners share its target groups: a sibling with its own
//! address, protocol and rules forwards to targets registered once; a
//! target drained once leaves both; shutting the sibling down leaves the
//! first listener's health checks running.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use tokio::time::Instant;

use common::pki::Pki;
use common::{Backend, client, fast_health_check, get};
use gantry_proxy::{Health, ListenerConfig, LoadBalancer, Rule, Target};
use http::StatusCode;

fn any_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

fn curl_https(ca: &std::path::Path, port: u16, path: &str) -> String {
    let output = std::process::Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "5",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
        ])
        .arg("--cacert")
        .arg(ca)
        .args(["--resolve", &format!("shop.example:{port}:127.0.0.1")])
        .arg(format!("https://shop.example:{port}{path}"))
        .output()
        .unwrap();
    String::from_utf8_lossy(&output.stdout).into_owned()
}

async fn wait_health(lb: &LoadBalancer, health: Health) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while lb.target_group("web").targets()[0].health != health {
        assert!(Instant::now() < deadline, "never {health:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sibling_listener_forwards_to_the_same_target_groups() {
    let primary = LoadBalancer::start(any_addr(), vec![Rule::new(1, "/*", "web")])
        .await
        .unwrap();
    let pki = Pki::new();
    let sibling = primary
        .start_sibling(
            any_addr(),
            vec![Rule::new(1, "/api/*", "web")],
            ListenerConfig::default(),
            Some(&[pki.leaf("leaf", "shop.example")]),
        )
        .await
        .unwrap();
    let backend = Backend::start("web").await;
    let group = primary.target_group("web");
    group.set_health_check(fast_health_check()).unwrap();
    group.register(Target::new("a", backend.addr));
    wait_health(&primary, Health::Healthy).await;

    // Registered once, served by both, each with its own rules.
    assert_eq!(
        get(&client(), primary.local_addr(), "/x").await.backend(),
        "web"
    );
    let (ca, port) = (pki.ca(), sibling.local_addr().port());
    let codes = tokio::task::spawn_blocking(move || {
        (
            curl_https(&ca, port, "/api/items"),
            curl_https(&ca, port, "/x"),
        )
    })
    .await
    .unwrap();
    assert_eq!(codes, ("200".to_owned(), "404".to_owned()));
    assert_eq!(sibling.target_group("web").targets().len(), 1);

    // The sibling goes; the first listener's health checks go on.
    sibling.shutdown().await;
    backend.set_healthy(false);
    wait_health(&primary, Health::Unhealthy).await;
    backend.set_healthy(true);
    wait_health(&primary, Health::Healthy).await;

    // Drained once, gone from the group both used.
    group.deregister("a", Duration::ZERO).await;
    assert_eq!(
        get(&client(), primary.local_addr(), "/x").await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    primary.shutdown().await;
}
