//! HTTPS listeners against real clients: curl and `openssl s_client` over
//! certificates made by the `openssl` CLI in a temporary directory. SNI
//! picks the certificate, TLS 1.1 and older are refused, a rotation under
//! load fails no request, and a bad rotation changes nothing.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};

use common::Backend;
use common::pki::{Pki, run};
use gantry_proxy::{Certificate, ListenerConfig, LoadBalancer, Rule, Target};

/// curl over HTTPS to `name` (resolved to the listener), verifying with the
/// test CA; the body, or `None` when curl failed.
fn curl(ca: &Path, lb: SocketAddr, name: &str, path: &str, extra: &[&str]) -> Option<String> {
    let port = lb.port();
    let output = Command::new("curl")
        .args(["-sS", "--max-time", "10", "--cacert"])
        .arg(ca)
        .args(["--resolve", &format!("{name}:{port}:127.0.0.1")])
        .args(extra)
        .arg(format!("https://{name}:{port}{path}"))
        .output()
        .expect("curl runs");
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).into_owned())
}

/// The subject of the certificate served for `servername` (none: no SNI).
fn served_subject(lb: SocketAddr, servername: Option<&str>) -> String {
    let mut command = Command::new("sh");
    let sni = match servername {
        Some(name) => format!("-servername {name}"),
        None => "-noservername".to_owned(),
    };
    // Fixed arguments only; nothing from outside reaches the shell.
    command.args([
        "-c",
        &format!(
            "openssl s_client -connect 127.0.0.1:{} {sni} </dev/null 2>/dev/null | openssl x509 -noout -subject -serial",
            lb.port()
        ),
    ]);
    String::from_utf8_lossy(&run(&mut command).stdout).into_owned()
}

async fn https_listener(certificates: &[Certificate]) -> (LoadBalancer, Backend) {
    let lb = LoadBalancer::start_https(
        SocketAddr::from(([127, 0, 0, 1], 0)),
        vec![Rule::new(1, "/*", "app")],
        ListenerConfig::default(),
        certificates,
    )
    .await
    .unwrap();
    let backend = Backend::start("app").await;
    lb.target_group("app")
        .register(Target::new("app", backend.addr));
    (lb, backend)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sni_picks_the_certificate_and_old_tls_is_refused() {
    let pki = Pki::new();
    let a = pki.leaf("a", "a.example");
    let b = pki.leaf("b", "b.example");
    let (lb, _backend) = https_listener(&[a, b]).await;
    let addr = lb.local_addr();
    let ca = pki.ca();
    tokio::task::spawn_blocking(move || {
        // curl checks the name against the certificate, so success proves
        // SNI chose the right one.
        assert_eq!(
            curl(&ca, addr, "a.example", "/", &[]).as_deref(),
            Some("app")
        );
        assert_eq!(
            curl(&ca, addr, "b.example", "/", &[]).as_deref(),
            Some("app")
        );
        assert!(served_subject(addr, Some("b.example")).contains("CN = b.example"));
        // No SNI, or a name no certificate covers: the first certificate.
        assert!(served_subject(addr, None).contains("CN = a.example"));
        assert!(served_subject(addr, Some("c.example")).contains("CN = a.example"));
        // The backend learns the request came over TLS.
        let headers = curl(&ca, addr, "a.example", "/headers", &[]).unwrap();
        assert!(headers.contains("x-forwarded-proto: https"), "{headers}");
        // TLS 1.0 and 1.1 are refused; the listener serves on.
        for version in [
            ["--tlsv1.0", "--tls-max", "1.0"],
            ["--tlsv1.1", "--tls-max", "1.1"],
        ] {
            assert_eq!(curl(&ca, addr, "a.example", "/", &version), None);
        }
        assert_eq!(
            curl(
                &ca,
                addr,
                "a.example",
                "/",
                &["--tlsv1.2", "--tls-max", "1.2"]
            )
            .as_deref(),
            Some("app")
        );
        assert_eq!(
            curl(&ca, addr, "a.example", "/", &["--tlsv1.3"]).as_deref(),
            Some("app")
        );
    })
    .await
    .unwrap();
    lb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotation_under_load_fails_no_request_and_a_bad_one_changes_nothing() {
    let pki = Pki::new();
    let first = pki.leaf("a1", "a.example");
    let second = pki.leaf("a2", "a.example");
    let (lb, _backend) = https_listener(std::slice::from_ref(&first)).await;
    let addr = lb.local_addr();
    let subject = || tokio::task::spawn_blocking(move || served_subject(addr, Some("a.example")));
    let before = subject().await.unwrap();

    // A mismatched key, garbage PEM and no certificate at all are refused,
    // and the first certificate keeps serving.
    let mismatched = pki.load("a2", "a1");
    let error = lb.set_certificates(&[mismatched]).unwrap_err();
    assert!(error.to_string().contains("does not match"), "{error}");
    assert!(!error.to_string().contains("PRIVATE KEY"), "{error}");
    let garbage = Certificate::new("junk", "not pem".to_owned(), "nor this".to_owned());
    assert!(lb.set_certificates(&[garbage]).is_err());
    assert!(lb.set_certificates(&[]).is_err());
    assert_eq!(subject().await.unwrap(), before);

    // Fresh connections (a handshake each) in a loop while rotating.
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let load = {
        let (stop, ok, failed, ca) = (stop.clone(), ok.clone(), failed.clone(), pki.ca());
        tokio::task::spawn_blocking(move || {
            while !stop.load(SeqCst) {
                match curl(&ca, addr, "a.example", "/", &[]).as_deref() {
                    Some("app") => ok.fetch_add(1, SeqCst),
                    _ => failed.fetch_add(1, SeqCst),
                };
            }
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    lb.set_certificates(std::slice::from_ref(&second)).unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    stop.store(true, SeqCst);
    load.await.unwrap();
    assert_eq!(failed.load(SeqCst), 0, "{} succeeded", ok.load(SeqCst));
    assert!(ok.load(SeqCst) > 2);
    let after = subject().await.unwrap();
    assert_ne!(after, before, "the new certificate (another serial) serves");
    lb.shutdown().await;
}
