//! Serving an axum router on a socket with the limits a public listener
//! needs: a client that never finishes its request head is cut off after
//! `header_read_timeout`, at most `max_connections` are open at once (more
//! are refused, so a flood cannot use up the process's file descriptors),
//! and a TLS client gets `tls_handshake_timeout` to finish its handshake.
//! Used by the API and the embedded registry; the load balancer has its
//! own listener (`gantry_proxy`).
//!
//! HTTP/1.1 only, over plain TCP or TLS 1.2/1.3 (ALPN `http/1.1`). Every
//! request carries the peer's address as
//! `axum::extract::ConnectInfo<SocketAddr>`.

use std::fs;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

/// Limits of one listener. `Default` suits the API and the registry.
#[derive(Clone, Debug)]
pub struct ServeOptions {
    /// How long a client may take to send a whole request head, counted
    /// from when the server starts waiting for it (so it also ends an idle
    /// keep-alive connection). Default 10 s.
    pub header_read_timeout: Duration,
    /// Connections open at once; a connection accepted beyond it is closed
    /// at once. Default 1024.
    pub max_connections: usize,
    /// Serve TLS with this configuration (see [`load_tls`]); plain HTTP
    /// when `None`.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// How long a TLS client may take to finish its handshake. Default 10 s.
    pub tls_handshake_timeout: Duration,
    /// After shutdown is asked for, how long requests in flight may take
    /// to finish before their connections are closed. Default 10 s.
    pub shutdown_timeout: Duration,
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            max_connections: 1024,
            tls: None,
            tls_handshake_timeout: Duration::from_secs(10),
            shutdown_timeout: Duration::from_secs(10),
        }
    }
}

/// Serves `app` on `listener` until `shutdown` is cancelled, then stops
/// accepting, lets requests in flight finish (up to the shutdown timeout)
/// and returns. Errors of single connections are logged, not returned; the
/// only error is a listener that cannot accept any more.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    options: ServeOptions,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let addr = listener.local_addr()?;
    let permits = Arc::new(Semaphore::new(options.max_connections));
    let tls = options.tls.clone().map(TlsAcceptor::from);
    let tasks = TaskTracker::new();
    // Cancelled when the shutdown timeout has passed: drops connections.
    let hard_stop = CancellationToken::new();
    let mut refused_logged = false;
    let mut accept_errors = 0u32;
    loop {
        let (stream, peer) = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => {
                    accept_errors = 0;
                    accepted
                }
                Err(error) if accept_errors < 100 => {
                    // Out of file descriptors and the like: wait for them
                    // to come back instead of spinning.
                    accept_errors += 1;
                    tracing::warn!(%addr, %error, "Accepting a connection failed.");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
                Err(error) => return Err(error),
            },
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            // Refusing costs the peer a reconnect; waiting instead would
            // leave every new client in the backlog behind the flood.
            if !refused_logged {
                tracing::warn!(%addr, max = options.max_connections, "Too many connections: refusing new ones until some close.");
                refused_logged = true;
            }
            drop(stream);
            continue;
        };
        refused_logged = false;
        let _ = stream.set_nodelay(true);
        tasks.spawn(connection(
            stream,
            peer,
            app.clone(),
            options.clone(),
            tls.clone(),
            Stops {
                graceful: shutdown.clone(),
                hard: hard_stop.clone(),
            },
            permit,
        ));
    }
    drop(listener);
    tasks.close();
    if tokio::time::timeout(options.shutdown_timeout, tasks.wait())
        .await
        .is_err()
    {
        tracing::warn!(%addr, "Requests still in flight at the shutdown timeout; closing their connections.");
        hard_stop.cancel();
        tasks.wait().await;
    }
    Ok(())
}

/// The two phases of a shutdown, as a connection sees them.
#[derive(Clone)]
struct Stops {
    /// Finish the request in flight, then close.
    graceful: CancellationToken,
    /// The shutdown timeout has passed: close now.
    hard: CancellationToken,
}

async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    app: Router,
    options: ServeOptions,
    tls: Option<TlsAcceptor>,
    stops: Stops,
    _permit: OwnedSemaphorePermit,
) {
    match tls {
        None => http(stream, peer, app, &options, stops).await,
        Some(acceptor) => {
            let handshake =
                tokio::time::timeout(options.tls_handshake_timeout, acceptor.accept(stream));
            let stream = tokio::select! {
                () = stops.graceful.cancelled() => return,
                result = handshake => match result {
                    Ok(Ok(stream)) => stream,
                    Ok(Err(error)) => {
                        tracing::debug!(%peer, %error, "TLS handshake failed.");
                        return;
                    }
                    Err(_) => {
                        tracing::debug!(%peer, "TLS handshake timed out.");
                        return;
                    }
                },
            };
            http(stream, peer, app, &options, stops).await;
        }
    }
}

async fn http<S>(stream: S, peer: SocketAddr, app: Router, options: &ServeOptions, stops: Stops)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |mut request: http::Request<Incoming>| {
        request.extensions_mut().insert(ConnectInfo(peer));
        app.clone().oneshot(request)
    });
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(options.header_read_timeout);
    let mut connection = pin!(
        builder
            .serve_connection(TokioIo::new(stream), service)
            .with_upgrades()
    );
    let result = tokio::select! {
        result = connection.as_mut() => result,
        () = stops.graceful.cancelled() => {
            // Closes an idle connection now, a busy one after its response.
            connection.as_mut().graceful_shutdown();
            tokio::select! {
                result = connection.as_mut() => result,
                () = stops.hard.cancelled() => Ok(()),
            }
        }
    };
    if let Err(error) = result {
        tracing::debug!(%peer, %error, "Connection ended with an error.");
    }
}

/// Loads a certificate chain and its private key from PEM files into a
/// TLS 1.2/1.3 server configuration that offers ALPN `http/1.1`. Errors
/// name the file and what is wrong with it, never key material.
pub fn load_tls(cert_pem: &Path, key_pem: &Path) -> Result<Arc<rustls::ServerConfig>, String> {
    let read = |path: &Path, what: &str| {
        fs::read(path).map_err(|e| format!("cannot read the TLS {what} {}: {e}", path.display()))
    };
    let cert_bytes = read(cert_pem, "certificate")?;
    let certs = CertificateDer::pem_slice_iter(&cert_bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| {
            format!(
                "the TLS certificate file {} is not valid PEM: {e}",
                cert_pem.display()
            )
        })?;
    if certs.is_empty() {
        return Err(format!(
            "the TLS certificate file {} holds no CERTIFICATE block",
            cert_pem.display()
        ));
    }
    let key_bytes = read(key_pem, "private key")?;
    // The parser's error may quote what it read, so it is not passed on.
    let key = PrivateKeyDer::from_pem_slice(&key_bytes).map_err(|_| {
        format!(
            "the TLS key file {} holds no PEM private key (PKCS#8, PKCS#1 or SEC1)",
            key_pem.display()
        )
    })?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| format!("TLS configuration: {e}"))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| {
            format!(
                "the TLS key in {} does not fit the certificate in {}, or is unsupported: {e}",
                key_pem.display(),
                cert_pem.display()
            )
        })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
