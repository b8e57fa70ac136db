//! Latency of `GET /api/v1/params/get` at a fixed request rate.
//!
//! Usage: bench_params_api API_URL [RATE_PER_S] [SECONDS]
//! Sends requests on a fixed schedule (not as fast as possible), so the
//! latencies are those a client sees at that load, and prints p50/p99/max.

use std::time::Duration;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let api = args
        .get(1)
        .cloned()
        .unwrap_or_else(|| "http://127.0.0.1:7700".to_string());
    let rate: u64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(1000);
    let seconds: u64 = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(10);
    // The server's admin token (bench/params.sh passes DATA_DIR/admin.token).
    let token = std::env::var("GANTRY_TOKEN").unwrap_or_default();
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        format!("Bearer {token}")
            .parse()
            .expect("a token is a header value"),
    );
    let client = reqwest::Client::builder()
        .default_headers(headers)
        .build()
        .expect("client");
    let url = format!("{api}/api/v1/params/get?name=/bench/SERVICE_DNS");
    // Warm the connection pool.
    for _ in 0..50 {
        client
            .get(&url)
            .send()
            .await
            .expect("server answers")
            .bytes()
            .await
            .ok();
    }
    let total = rate * seconds;
    let mut interval = tokio::time::interval(Duration::from_nanos(1_000_000_000 / rate));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut tasks = Vec::with_capacity(total as usize);
    for _ in 0..total {
        interval.tick().await;
        let client = client.clone();
        let url = url.clone();
        tasks.push(tokio::spawn(async move {
            let start = tokio::time::Instant::now();
            let ok = match client.get(&url).send().await {
                Ok(r) => r.status().is_success() && r.bytes().await.is_ok(),
                Err(_) => false,
            };
            (start.elapsed(), ok)
        }));
    }
    let mut latencies = Vec::with_capacity(tasks.len());
    let mut errors = 0;
    for t in tasks {
        let (d, ok) = t.await.expect("request task");
        if !ok {
            errors += 1;
        }
        latencies.push(d);
    }
    latencies.sort();
    let pct = |p: f64| latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)];
    println!(
        "params get at {rate}/s for {seconds}s: {} requests, {errors} errors, p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms",
        latencies.len(),
        pct(0.50).as_secs_f64() * 1000.0,
        pct(0.99).as_secs_f64() * 1000.0,
        latencies.last().copied().unwrap_or_default().as_secs_f64() * 1000.0
    );
}
