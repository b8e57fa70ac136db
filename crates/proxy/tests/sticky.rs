//! Sticky sessions (ALB's lb_cookie stickiness) through real sockets: the
//! cookie keeps a client on its target, other clients still balance, a
//! target that leaves sends its clients elsewhere with a new cookie, and
//! turning stickiness off stops the cookie.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use common::{Answer, Backend, client, get, send};
use gantry_proxy::{LoadBalancer, Rule, STICKY_COOKIE, Target};
use http::Request;
use http_body_util::{Either, Full};

fn any_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// The `NAME=VALUE` part of the stickiness cookie an answer set.
fn cookie(answer: &Answer) -> Option<String> {
    answer
        .headers
        .get_all(http::header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{STICKY_COOKIE}=")))
        .map(|v| v.split(';').next().unwrap_or_default().to_owned())
}

async fn get_with_cookie(lb: SocketAddr, cookie: &str) -> Answer {
    let request = Request::get(format!("http://{lb}/"))
        .header("cookie", format!("theme=dark; {cookie}; lang=en"))
        .body(Either::Left(Full::new(Bytes::new())))
        .unwrap();
    send(&client(), request).await
}

#[tokio::test]
async fn the_cookie_keeps_a_client_on_its_target_until_the_target_leaves() {
    let lb = LoadBalancer::start(any_addr(), vec![Rule::new(1, "/*", "web")])
        .await
        .unwrap();
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let group = lb.target_group("web");
    group.register(Target::new("a", a.addr));
    group.register(Target::new("b", b.addr));
    group.set_stickiness(Some(Duration::from_secs(3600)));

    let first = get(&client(), lb.local_addr(), "/").await;
    let set = first
        .headers
        .get(http::header::SET_COOKIE)
        .and_then(|v| v.to_str().ok())
        .unwrap()
        .to_owned();
    assert!(
        set.contains("Max-Age=3600") && set.contains("Path=/") && set.contains("HttpOnly"),
        "{set}"
    );
    let kept = cookie(&first).unwrap();
    let target = first.backend().to_owned();
    for _ in 0..20 {
        let answer = get_with_cookie(lb.local_addr(), &kept).await;
        assert_eq!(answer.backend(), target);
        assert_eq!(cookie(&answer).as_deref(), Some(kept.as_str()));
    }
    // Clients without the cookie still take turns.
    let mut backends = Vec::new();
    for _ in 0..4 {
        backends.push(
            get(&client(), lb.local_addr(), "/")
                .await
                .backend()
                .to_owned(),
        );
    }
    assert!(
        backends.iter().any(|b| b == "a") && backends.iter().any(|b| b == "b"),
        "{backends:?}"
    );
    // A cookie the load balancer did not make is ignored.
    let forged = get_with_cookie(
        lb.local_addr(),
        &format!("{STICKY_COOKIE}=0123456789abcdef"),
    )
    .await;
    assert_eq!(forged.status, http::StatusCode::OK);

    // The target leaves: its clients go to the other, with a new cookie.
    group.deregister(&target, Duration::ZERO).await;
    let moved = get_with_cookie(lb.local_addr(), &kept).await;
    assert_ne!(moved.backend(), target);
    let new_cookie = cookie(&moved).unwrap();
    assert_ne!(new_cookie, kept);
    for _ in 0..5 {
        assert_eq!(
            get_with_cookie(lb.local_addr(), &new_cookie)
                .await
                .backend(),
            moved.backend()
        );
    }

    // Off: no cookie.
    group.set_stickiness(None);
    assert_eq!(cookie(&get(&client(), lb.local_addr(), "/").await), None);
    lb.shutdown().await;
}
