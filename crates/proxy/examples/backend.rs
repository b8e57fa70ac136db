//! A minimal HTTP/1.1 backend for benchmarks: answers `200 ok` on every
//! path, with keep-alive. The same binary serves both gantry's proxy and
//! nginx in `bench/proxy.sh`, so the comparison measures the proxies alone.
//!
//! Usage: `backend [ADDR]` (default 127.0.0.1:0); prints `listening on ADDR`.

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http::Response;
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr: SocketAddr = match std::env::args().nth(1) {
        Some(arg) => arg
            .parse()
            .map_err(|e| std::io::Error::other(format!("bad address {arg:?}: {e}")))?,
        None => SocketAddr::from(([127, 0, 0, 1], 0)),
    };
    let listener = TcpListener::bind(addr).await?;
    println!("listening on {}", listener.local_addr()?);
    loop {
        let (stream, _) = listener.accept().await?;
        stream.set_nodelay(true)?;
        tokio::spawn(async move {
            let service = service_fn(|_request| async {
                Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
