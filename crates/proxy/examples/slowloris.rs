//! A slow-header flood for `bench/slowloris.sh`: keeps CONNECTIONS
//! connections to 127.0.0.1:PORT open, each sending the start of a request
//! head and then one header line every INTERVAL_MS, never finishing it. A
//! connection the server closes is opened again. Stops by itself after
//! SECONDS. Prints `ready N` once N connections are open, and a summary at
//! the end. Written in Rust because a Python flood spent more CPU than the
//! proxy it was flooding, which measured the flood rather than the proxy.
//!
//! Usage: `slowloris PORT CONNECTIONS SECONDS [INTERVAL_MS]`

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{Instant, sleep, timeout};

#[derive(Default)]
struct Stats {
    open: AtomicI64,
    reopened: AtomicU64,
    failed: AtomicU64,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(port), Some(connections), Some(seconds)) = (args.first(), args.get(1), args.get(2))
    else {
        return Err("usage: slowloris PORT CONNECTIONS SECONDS [INTERVAL_MS]".into());
    };
    let addr = SocketAddr::from(([127, 0, 0, 1], port.parse()?));
    let connections: usize = connections.parse()?;
    let deadline = Instant::now() + Duration::from_secs(seconds.parse()?);
    let interval = Duration::from_millis(args.get(3).map_or(Ok(3000), |i| i.parse())?);
    // Each connection is a descriptor: take what the hard limit allows.
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE)
        && soft < hard
    {
        let _ = setrlimit(Resource::RLIMIT_NOFILE, hard.min(1 << 20), hard);
    }
    let stats = Arc::new(Stats::default());
    let mut tasks = Vec::with_capacity(connections);
    for i in 0..connections {
        tasks.push(tokio::spawn(one(addr, interval, deadline, stats.clone())));
        if i % 200 == 199 {
            // About 4,000 new connections a second, as a backlog can take.
            sleep(Duration::from_millis(50)).await;
        }
    }
    let wanted = i64::try_from(connections * 98 / 100)?;
    while stats.open.load(Relaxed) < wanted && Instant::now() < deadline {
        sleep(Duration::from_millis(100)).await;
    }
    println!("ready {}", stats.open.load(Relaxed));
    let mut low = i64::MAX;
    while Instant::now() < deadline {
        sleep(Duration::from_secs(1)).await;
        low = low.min(stats.open.load(Relaxed));
    }
    for task in tasks {
        let _ = task.await;
    }
    println!(
        "done: at least {} slow-header connections open throughout, {} reopened after the server closed them, {} connects failed",
        if low == i64::MAX { 0 } else { low },
        stats.reopened.load(Relaxed),
        stats.failed.load(Relaxed)
    );
    Ok(())
}

async fn one(addr: SocketAddr, interval: Duration, deadline: Instant, stats: Arc<Stats>) {
    let mut buf = [0u8; 1024];
    while Instant::now() < deadline {
        let Ok(mut stream) = TcpStream::connect(addr).await else {
            stats.failed.fetch_add(1, Relaxed);
            sleep(Duration::from_millis(500)).await;
            continue;
        };
        stats.open.fetch_add(1, Relaxed);
        if stream
            .write_all(b"GET /web/slow HTTP/1.1\r\nHost: flood\r\n")
            .await
            .is_ok()
        {
            while Instant::now() < deadline {
                match timeout(interval, stream.read(&mut buf)).await {
                    Ok(Ok(0) | Err(_)) => break, // closed by the server
                    Ok(Ok(_)) => {}
                    Err(_) => {
                        if stream.write_all(b"X-Slow: 1\r\n").await.is_err() {
                            break;
                        }
                    }
                }
            }
        }
        stats.open.fetch_sub(1, Relaxed);
        if Instant::now() < deadline {
            stats.reopened.fetch_add(1, Relaxed);
        }
    }
}
