//! `listen::serve`: plain and TLS serving, the header-read timeout, the
//! connection limit, the peer address in every request, graceful shutdown.
//! Real sockets on 127.0.0.1; the TLS certificate is made by `openssl`.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use axum::routing::get;
use gantry_server::listen::{ServeOptions, load_tls, serve};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

fn app() -> Router {
    Router::new().route("/", get(|| async { "hello" })).route(
        "/peer",
        get(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move { peer.to_string() }),
    )
}

struct Served {
    addr: SocketAddr,
    shutdown: CancellationToken,
    task: JoinHandle<std::io::Result<()>>,
}

async fn start(options: ServeOptions) -> Served {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(serve(listener, app(), options, shutdown.clone()));
    Served {
        addr,
        shutdown,
        task,
    }
}

/// Sends one GET with `Connection: close` and returns the whole response.
async fn get_raw<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S, path: &str) -> String {
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.unwrap();
    String::from_utf8(response).unwrap()
}

fn body(response: &str) -> &str {
    response.split_once("\r\n\r\n").map_or("", |(_, body)| body)
}

#[tokio::test]
async fn plain_serve_answers_and_shuts_down_gracefully() {
    let served = start(ServeOptions::default()).await;
    let response = get_raw(TcpStream::connect(served.addr).await.unwrap(), "/").await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert_eq!(body(&response), "hello");

    served.shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(5), served.task)
        .await
        .expect("serve returns after shutdown")
        .unwrap()
        .unwrap();
    assert!(TcpStream::connect(served.addr).await.is_err());
}

#[tokio::test]
async fn handlers_see_the_peer_address_as_connect_info() {
    let served = start(ServeOptions::default()).await;
    let stream = TcpStream::connect(served.addr).await.unwrap();
    let local = stream.local_addr().unwrap();
    let response = get_raw(stream, "/peer").await;
    assert_eq!(body(&response), local.to_string());
}

#[tokio::test]
async fn a_connection_sending_half_a_header_is_closed_after_the_timeout() {
    let served = start(ServeOptions {
        header_read_timeout: Duration::from_millis(300),
        ..ServeOptions::default()
    })
    .await;
    let mut slow = TcpStream::connect(served.addr).await.unwrap();
    let started = Instant::now();
    slow.write_all(b"GET / HTTP/1.1\r\nHost: loc")
        .await
        .unwrap();
    let mut rest = Vec::new();
    // The server closes the connection (possibly after a 408): EOF or reset.
    let closed = tokio::time::timeout(Duration::from_secs(5), slow.read_to_end(&mut rest)).await;
    assert!(
        closed.is_ok(),
        "the slow connection is still open after 5 s"
    );
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(250),
        "closed too early: {elapsed:?}"
    );

    // Others are served meanwhile and after.
    let response = get_raw(TcpStream::connect(served.addr).await.unwrap(), "/").await;
    assert_eq!(body(&response), "hello");
}

#[tokio::test]
async fn connections_beyond_the_limit_are_refused_and_the_slot_comes_back() {
    let served = start(ServeOptions {
        max_connections: 2,
        header_read_timeout: Duration::from_millis(500),
        ..ServeOptions::default()
    })
    .await;
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut stream = TcpStream::connect(served.addr).await.unwrap();
        stream.write_all(b"GET / HT").await.unwrap();
        held.push(stream);
    }
    // Give the server time to accept both.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut refused = TcpStream::connect(served.addr).await.unwrap();
    let mut byte = [0u8; 1];
    let read = tokio::time::timeout(Duration::from_secs(5), refused.read(&mut byte)).await;
    assert!(
        matches!(read, Ok(Ok(0) | Err(_))),
        "a third connection is closed without an answer: {read:?}"
    );

    // The header timeout frees the slots.
    tokio::time::sleep(Duration::from_millis(800)).await;
    let response = get_raw(TcpStream::connect(served.addr).await.unwrap(), "/").await;
    assert_eq!(body(&response), "hello");
}

fn self_signed(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let status = std::process::Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
        .args(["ec_paramgen_curve:prime256v1", "-nodes", "-days", "2"])
        .args(["-subj", "/CN=localhost"])
        .args(["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"])
        .args(["-addext", "basicConstraints=critical,CA:FALSE"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stderr(std::process::Stdio::null())
        .status()
        .expect("openssl runs");
    assert!(status.success(), "openssl req -x509 failed");
    (cert, key)
}

#[tokio::test]
async fn tls_serve_works_with_a_self_signed_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = self_signed(dir.path());
    let tls = load_tls(&cert, &key).unwrap();
    let served = start(ServeOptions {
        tls: Some(tls),
        ..ServeOptions::default()
    })
    .await;

    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_file(&cert).unwrap())
        .unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    client.alpn_protocols = vec![b"http/1.1".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client));
    let tcp = TcpStream::connect(served.addr).await.unwrap();
    let local = tcp.local_addr().unwrap();
    let stream = connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    let response = get_raw(stream, "/peer").await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert_eq!(body(&response), local.to_string());

    // A client that opens TCP and never starts the handshake is cut off.
    let strict = start(ServeOptions {
        tls: Some(load_tls(&cert, &key).unwrap()),
        tls_handshake_timeout: Duration::from_millis(200),
        ..ServeOptions::default()
    })
    .await;
    let mut stalled = TcpStream::connect(strict.addr).await.unwrap();
    let mut byte = [0u8; 1];
    let read = tokio::time::timeout(Duration::from_secs(5), stalled.read(&mut byte)).await;
    assert!(
        matches!(read, Ok(Ok(0) | Err(_))),
        "a client that never shakes hands is closed: {read:?}"
    );
}

#[test]
fn load_tls_errors_name_the_file_and_hold_no_key_material() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.pem");
    let error = load_tls(&missing, &missing).unwrap_err();
    assert!(error.contains("missing.pem"), "{error}");

    let (cert, _key) = self_signed(dir.path());
    let bad_key = dir.path().join("bad-key.pem");
    std::fs::write(
        &bad_key,
        "-----BEGIN PRIVATE KEY-----\nc2VjcmV0c2VjcmV0\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();
    let error = load_tls(&cert, &bad_key).unwrap_err();
    assert!(error.contains("bad-key.pem"), "{error}");
    assert!(!error.contains("c2VjcmV0"), "{error}");

    let not_a_cert = dir.path().join("not-a-cert.pem");
    std::fs::write(&not_a_cert, "hello").unwrap();
    let error = load_tls(&not_a_cert, &bad_key).unwrap_err();
    assert!(error.contains("not-a-cert.pem"), "{error}");
}

#[tokio::test]
async fn shutdown_closes_a_request_still_running_at_the_shutdown_timeout() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    let app = Router::new().route(
        "/forever",
        get(|| async {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            "late"
        }),
    );
    let options = ServeOptions {
        shutdown_timeout: Duration::from_millis(200),
        ..ServeOptions::default()
    };
    let task = tokio::spawn(serve(listener, app, options, shutdown.clone()));
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET /forever HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("serve returns after the shutdown timeout")
        .unwrap()
        .unwrap();
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut rest)).await;
    assert!(read.is_ok(), "the connection was closed");
}
