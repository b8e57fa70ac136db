//! gantry's load balancer as a standalone process, for benchmarks: two path
//! rules (`/api/*` → group `api`, `/*` → group `web`), both groups holding
//! the one backend given, with an HTTP health check on `/`.
//!
//! Usage: `lb LISTEN_ADDR BACKEND_ADDR`; prints `listening on ADDR` once the
//! backend is healthy in both groups. `GANTRY_LB_WORKERS=N` overrides the
//! number of worker threads. With `GANTRY_LB_CERT` and `GANTRY_LB_KEY`
//! (PEM files) the listener is HTTPS (ALPN `h2` and `http/1.1`). With
//! `GANTRY_LB_ACCESS_LOG=FILE` every request's access record is queued to a
//! thread that writes it as a line to FILE, as the server's access log does.

use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::mpsc::{SyncSender, sync_channel};
use std::time::Duration;

use gantry_proxy::{
    AccessLogSink, AccessRecord, Certificate, HealthCheckConfig, ListenerConfig, LoadBalancer,
    Rule, Target,
};

/// Queues records to a writer thread, dropping them when it lags.
struct FileLog(SyncSender<AccessRecord>);

impl AccessLogSink for FileLog {
    fn record(&self, record: AccessRecord) {
        let _ = self.0.try_send(record);
    }
}

fn file_log(path: std::ffi::OsString) -> std::io::Result<Arc<dyn AccessLogSink>> {
    let mut file = std::io::BufWriter::new(std::fs::File::create(path)?);
    let (tx, rx) = sync_channel::<AccessRecord>(16_384);
    std::thread::spawn(move || {
        while let Ok(r) = rx.recv() {
            let _ = writeln!(
                file,
                "{:?} {} {:?} {} {} \"{} {}\" \"{}\" {:?} {:.3}",
                r.time,
                r.client,
                r.target,
                r.status,
                r.bytes_sent,
                r.method,
                r.target_path,
                r.user_agent,
                r.rule,
                r.total_time.as_secs_f64()
            );
            if rx.try_recv().is_err() {
                let _ = file.flush();
            }
        }
    });
    Ok(Arc::new(FileLog(tx)))
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(listen), Some(backend)) = (args.next(), args.next()) else {
        return Err("usage: lb LISTEN_ADDR BACKEND_ADDR".into());
    };
    let listen: SocketAddr = listen.parse()?;
    let backend: SocketAddr = backend.parse()?;
    let rules = vec![Rule::new(1, "/api/*", "api"), Rule::new(2, "/*", "web")];
    // The listener's own worker threads (one per CPU) serve connections;
    // this runtime only accepts and runs health checks.
    let mut config = ListenerConfig::default();
    if let Some(workers) = std::env::var("GANTRY_LB_WORKERS")
        .ok()
        .and_then(|w| w.parse().ok())
    {
        config.workers = workers;
    }
    let lb = match (
        std::env::var_os("GANTRY_LB_CERT"),
        std::env::var_os("GANTRY_LB_KEY"),
    ) {
        (Some(cert), Some(key)) => {
            let certificate = Certificate::new(
                "bench",
                std::fs::read_to_string(cert)?,
                std::fs::read_to_string(key)?,
            );
            LoadBalancer::start_https(listen, rules, config, &[certificate]).await?
        }
        _ => LoadBalancer::start_with(listen, rules, config).await?,
    };
    for name in ["api", "web"] {
        let group = lb.target_group(name);
        group.set_health_check(HealthCheckConfig {
            interval: Duration::from_secs(5),
            healthy_threshold: 1,
            ..HealthCheckConfig::default()
        })?;
        group.register(Target::new("backend", backend));
        group
            .wait_healthy("backend", Duration::from_secs(10))
            .await?;
    }
    if let Some(path) = std::env::var_os("GANTRY_LB_ACCESS_LOG") {
        lb.set_access_log(Some(file_log(path)?));
    }
    println!("listening on {}", lb.local_addr());
    tokio::signal::ctrl_c().await?;
    lb.shutdown().await;
    Ok(())
}
