//! What the trust boundary costs a request: the same `GET` served with the
//! guard (host check, token lookup, role check) and without it (a fixed
//! identity put into the request), each at a fixed rate over loopback.
//!
//! Usage: bench_auth [RATE_PER_S] [SECONDS]
//! Prints p50/p99/max for both and the difference.

use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::Request;
use axum::middleware::Next;
use gantry_auth::{Grant, Identity, Role};
use gantry_server::ControlPlane;
use gantry_server::guard::{Caller, HostPolicy};
use gantry_server::listen::{ServeOptions, serve};
use tokio_util::sync::CancellationToken;

async fn listen(app: axum::Router, stop: CancellationToken) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(serve(listener, app, ServeOptions::default(), stop));
    addr
}

/// Latencies of `GET url` sent at `rate` per second for `seconds`.
async fn measure(url: &str, token: &str, rate: u64, seconds: u64) -> (Vec<Duration>, usize) {
    let client = reqwest::Client::new();
    for _ in 0..100 {
        let _ = client.get(url).bearer_auth(token).send().await;
    }
    let total = rate * seconds;
    let mut interval = tokio::time::interval(Duration::from_nanos(1_000_000_000 / rate));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut tasks = Vec::with_capacity(usize::try_from(total).unwrap_or(0));
    for _ in 0..total {
        interval.tick().await;
        let request = client.get(url).bearer_auth(token);
        tasks.push(tokio::spawn(async move {
            let start = tokio::time::Instant::now();
            let ok = match request.send().await {
                Ok(r) => r.status().is_success() && r.bytes().await.is_ok(),
                Err(_) => false,
            };
            (start.elapsed(), ok)
        }));
    }
    let mut latencies = Vec::with_capacity(tasks.len());
    let mut errors = 0;
    for task in tasks {
        let (d, ok) = task.await.unwrap();
        errors += usize::from(!ok);
        latencies.push(d);
    }
    latencies.sort();
    (latencies, errors)
}

fn pct(latencies: &[Duration], p: f64) -> f64 {
    let i = ((latencies.len() as f64 * p) as usize).min(latencies.len() - 1);
    latencies[i].as_secs_f64() * 1e6
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let rate: u64 = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(1000);
    let seconds: u64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(10);
    let dir = std::env::temp_dir().join(format!("gantry-bench-auth-{}", std::process::id()));
    let plane = ControlPlane::open(&dir).await.unwrap();
    let now = gantry_clock::now_ms();
    plane
        .auth()
        .add_user("bench", None, vec![Grant::new(Role::Admin)], now)
        .await
        .unwrap();
    let token = plane
        .auth()
        .create_token("bench", None, None, now)
        .await
        .unwrap()
        .secret;
    let stop = CancellationToken::new();
    let guarded = listen(
        gantry_server::api::router(plane.clone(), HostPolicy::default()),
        stop.clone(),
    )
    .await;
    let identity = Identity {
        name: "bench".into(),
        email: None,
        grants: vec![Grant::new(Role::Admin)],
    };
    let open = gantry_server::api::routes(plane.clone()).layer(axum::middleware::from_fn(
        move |mut request: Request, next: Next| {
            let caller = Caller {
                identity: identity.clone(),
                remote: None,
            };
            async move {
                request.extensions_mut().insert(caller);
                next.run(request).await
            }
        },
    ));
    let open = listen(open, stop.clone()).await;
    let path = "/api/v1/executions?limit=1";
    // Alternate, so that both see the same machine state.
    let mut rounds = Vec::new();
    for round in 0..2 {
        for (what, addr) in [("without auth", open), ("with auth", guarded)] {
            let url = format!("http://{addr}{path}");
            let (latencies, errors) = measure(&url, token.expose(), rate, seconds / 2).await;
            rounds.push((round, what, latencies, errors));
        }
    }
    let mut merged: std::collections::BTreeMap<&str, (Vec<Duration>, usize)> = Default::default();
    for (_, what, latencies, errors) in rounds {
        let entry = merged.entry(what).or_default();
        entry.0.extend(latencies);
        entry.1 += errors;
    }
    let mut p99 = Vec::new();
    for (what, (mut latencies, errors)) in merged {
        latencies.sort();
        println!(
            "GET {path} {what} at {rate}/s: {} requests, {errors} errors, p50 {:.1} µs, p99 {:.1} µs, max {:.1} µs",
            latencies.len(),
            pct(&latencies, 0.50),
            pct(&latencies, 0.99),
            latencies.last().map_or(0.0, |d| d.as_secs_f64() * 1e6),
        );
        p99.push((what, pct(&latencies, 0.50), pct(&latencies, 0.99)));
    }
    if let [(_, with50, with99), (_, without50, without99)] = p99[..] {
        println!(
            "auth adds {:.1} µs at p50 and {:.1} µs at p99 (target: under 50 µs at p99)",
            with50 - without50,
            with99 - without99
        );
    }
    stop.cancel();
    let _ = std::fs::remove_dir_all(&dir);
}
