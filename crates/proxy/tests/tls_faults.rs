//! HTTPS faults a production edge meets: certificates outside their
//! validity window (expired, not yet valid) are refused at start and at
//! rotation, leaving the served certificate in place; a client that opens
//! a connection and stalls its handshake (nothing sent, or half a
//! ClientHello) is cut off at the header-read timeout while other clients
//! are served.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use tokio::time::Instant;

use common::Backend;
use common::pki::Pki;
use gantry_proxy::{Certificate, ListenerConfig, LoadBalancer, Rule, Target};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn any_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// A self-signed certificate for shop.example valid from `from` to `to`
/// (year, month, day).
fn dated(from: (i32, u8, u8), to: (i32, u8, u8)) -> Certificate {
    let mut params = rcgen::CertificateParams::new(vec!["shop.example".to_owned()]).unwrap();
    params.not_before = rcgen::date_time_ymd(from.0, from.1, from.2);
    params.not_after = rcgen::date_time_ymd(to.0, to.1, to.2);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    Certificate::new("dated", cert.pem(), key.serialize_pem())
}

fn curl_ok(ca: &std::path::Path, port: u16) -> bool {
    std::process::Command::new("curl")
        .args(["-sS", "--max-time", "5", "--cacert"])
        .arg(ca)
        .args(["--resolve", &format!("shop.example:{port}:127.0.0.1")])
        .arg(format!("https://shop.example:{port}/"))
        .output()
        .unwrap()
        .status
        .success()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_outside_their_validity_are_refused_and_nothing_changes() {
    let expired = dated((2020, 1, 1), (2021, 1, 1));
    let future = dated((2090, 1, 1), (2091, 1, 1));
    for (cert, word) in [(&expired, "expired"), (&future, "not valid yet")] {
        let error = gantry_proxy::check_certificates(std::slice::from_ref(cert))
            .unwrap_err()
            .to_string();
        assert!(error.contains(word), "{error}");
        let start = LoadBalancer::start_https(
            any_addr(),
            Vec::new(),
            ListenerConfig::default(),
            std::slice::from_ref(cert),
        )
        .await;
        assert!(
            start.is_err(),
            "an https listener started with a {word} certificate"
        );
    }

    let pki = Pki::new();
    let good = pki.leaf("good", "shop.example");
    let lb = LoadBalancer::start_https(
        any_addr(),
        vec![Rule::new(1, "/*", "web")],
        ListenerConfig::default(),
        &[good],
    )
    .await
    .unwrap();
    let backend = Backend::start("web").await;
    lb.target_group("web")
        .register(Target::new("a", backend.addr));
    let port = lb.local_addr().port();
    let ca = pki.ca();
    let ca2 = ca.clone();
    assert!(
        tokio::task::spawn_blocking(move || curl_ok(&ca2, port))
            .await
            .unwrap()
    );
    for cert in [expired, future] {
        assert!(lb.set_certificates(&[cert]).is_err());
        let ca = ca.clone();
        assert!(
            tokio::task::spawn_blocking(move || curl_ok(&ca, port))
                .await
                .unwrap(),
            "the listener kept its certificate"
        );
    }
    lb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_handshake_is_cut_off_while_others_are_served() {
    let pki = Pki::new();
    let config = ListenerConfig {
        header_read_timeout: Duration::from_millis(500),
        ..ListenerConfig::default()
    };
    let lb = LoadBalancer::start_https(
        any_addr(),
        vec![Rule::new(1, "/*", "web")],
        config,
        &[pki.leaf("leaf", "shop.example")],
    )
    .await
    .unwrap();
    let backend = Backend::start("web").await;
    lb.target_group("web")
        .register(Target::new("a", backend.addr));
    let addr = lb.local_addr();

    // One says nothing; one sends a TLS record header promising a
    // ClientHello and then only part of it.
    let silent = TcpStream::connect(addr).await.unwrap();
    let mut partial = TcpStream::connect(addr).await.unwrap();
    partial
        .write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01])
        .await
        .unwrap();
    let started = Instant::now();

    // Others are served meanwhile.
    let ca = pki.ca();
    let port = addr.port();
    assert!(
        tokio::task::spawn_blocking(move || curl_ok(&ca, port))
            .await
            .unwrap()
    );

    for (name, mut stream) in [("silent", silent), ("partial", partial)] {
        let mut buf = [0u8; 64];
        let read = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf)).await;
        let closed = matches!(read, Ok(Ok(0)) | Ok(Err(_)));
        assert!(closed, "the {name} connection was not closed: {read:?}");
    }
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(400) && took < Duration::from_secs(4),
        "cut off after {took:?}"
    );
    lb.shutdown().await;
}
