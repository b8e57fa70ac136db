//! Bodies stream through the proxy with bounded memory. Alone in its test
//! binary so the process's resident memory measures only this transfer.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::time::Duration;

use common::{Backend, Zeros, client, send};
use gantry_proxy::{LoadBalancer, Rule, Target};
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Either};

const GIB: u64 = 1024 * 1024 * 1024;
const MIB: u64 = 1024 * 1024;

fn resident_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|kb| kb.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// Samples resident memory while `work` runs and returns the peak growth.
async fn peak_growth<F: std::future::Future<Output = ()>>(work: F) -> u64 {
    let baseline = resident_bytes();
    let peak = Arc::new(AtomicU64::new(baseline));
    let sampler = {
        let peak = peak.clone();
        tokio::spawn(async move {
            loop {
                peak.fetch_max(resident_bytes(), SeqCst);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    work.await;
    sampler.abort();
    peak.fetch_max(resident_bytes(), SeqCst);
    peak.load(SeqCst).saturating_sub(baseline)
}

async fn proxy() -> (LoadBalancer, Backend, SocketAddr) {
    let lb = LoadBalancer::start(
        SocketAddr::from(([127, 0, 0, 1], 0)),
        vec![Rule::new(1, "*", "web")],
    )
    .await
    .unwrap();
    let backend = Backend::start("web").await;
    lb.target_group("web")
        .register(Target::new("web", backend.addr));
    let addr = lb.local_addr();
    (lb, backend, addr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_1_gib_download_and_upload_stream_with_bounded_memory() {
    let (lb, _backend, addr) = proxy().await;
    let client = client();

    let growth = peak_growth(async {
        let request = Request::get(format!("http://{addr}/big/{GIB}"))
            .body(Either::Left(Default::default()))
            .unwrap();
        let response = client.request(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            response.headers()["content-length"],
            GIB.to_string().as_str()
        );
        let mut body = response.into_body();
        let mut received: u64 = 0;
        while let Some(frame) = body.frame().await {
            received += frame.unwrap().data_ref().map_or(0, |d| d.len() as u64);
        }
        assert_eq!(received, GIB);
    })
    .await;
    assert!(growth < 64 * MIB, "memory grew by {} MiB", growth / MIB);

    let growth = peak_growth(async {
        let request = Request::post(format!("http://{addr}/upload"))
            .body(Either::Right(Zeros::new(GIB)))
            .unwrap();
        let answer = send(&client, request).await;
        assert_eq!(answer.status, StatusCode::OK);
        assert_eq!(answer.body, GIB.to_string());
    })
    .await;
    assert!(growth < 64 * MIB, "memory grew by {} MiB", growth / MIB);
    lb.shutdown().await;
}
