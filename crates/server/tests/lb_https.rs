//! An HTTPS listener through `apply`, its certificate and key read from
//! the parameter store: curl over TLS with the test CA, a rotation (new
//! parameter versions, then apply) under a loop of requests with none
//! failed, and bad certificates refused at apply with the listener still
//! serving the old one; an http listener redirecting to it. Certificates
//! are made with the `openssl` CLI.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};

use gantry_params::{ParamName, ParamType, PutParameter};
use gantry_server::RunningServer;

fn run(dir: &Path, args: &[&str]) {
    let output = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A leaf for shop.example signed by the test CA: (chain PEM, key PEM).
fn leaf(dir: &Path, file: &str) -> (String, String) {
    std::fs::write(dir.join("ext"), "subjectAltName=DNS:shop.example\n").unwrap();
    let (key, csr, pem) = (
        format!("{file}.key"),
        format!("{file}.csr"),
        format!("{file}.pem"),
    );
    run(
        dir,
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
        ]
        .into_iter()
        .chain(["-keyout", &key, "-out", &csr, "-subj", "/CN=shop.example"])
        .collect::<Vec<_>>(),
    );
    run(
        dir,
        &[
            "x509", "-req", "-in", &csr, "-CA", "ca.pem", "-CAkey", "ca.key",
        ]
        .into_iter()
        .chain([
            "-CAcreateserial",
            "-days",
            "2",
            "-out",
            &pem,
            "-extfile",
            "ext",
        ])
        .collect::<Vec<_>>(),
    );
    (
        std::fs::read_to_string(dir.join(pem)).unwrap(),
        std::fs::read_to_string(dir.join(key)).unwrap(),
    )
}

async fn put(server: &RunningServer, name: &str, value: &str, kind: ParamType) {
    let name = ParamName::parse(name).unwrap();
    let mut request = PutParameter::new(&name, value, kind, "root");
    request.overwrite = true;
    server.plane.params().put(request).await.unwrap();
}

fn project(port: u16, plain: u16) -> String {
    format!(
        r#"
version: 1
environments:
  production:
    load_balancer:
      listeners:
        - name: web
          listen: "127.0.0.1:{port}"
          protocol: https
          certificates: [{{cert: /shop/tls/cert, key: /shop/tls/key}}]
          default_action: {{fixed_response: {{status: 200, content_type: text/plain, body: "tls ok"}}}}
        - {{name: plain, listen: "127.0.0.1:{plain}", redirect_to: web}}
"#
    )
}

async fn apply(server: &RunningServer, dir: &Path, text: &str) -> Result<Vec<String>, String> {
    let file = dir.join("env.yaml");
    std::fs::write(&file, text).unwrap();
    server
        .plane
        .apply_file(&file, text, &Default::default())
        .await
        .map(|outcome| vec![format!("{outcome:?}")])
        .map_err(|e| format!("{e} {e:?}"))
}

fn curl(ca: &Path, port: u16) -> Option<String> {
    let output = Command::new("curl")
        .args(["-sS", "--max-time", "10", "--cacert"])
        .arg(ca)
        .args(["--resolve", &format!("shop.example:{port}:127.0.0.1")])
        .arg(format!("https://shop.example:{port}/"))
        .output()
        .unwrap();
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).into_owned())
}

/// The serial number of the certificate the listener serves.
fn served_serial(port: u16) -> String {
    let output = Command::new("sh")
        .args([
            "-c",
            &format!(
                "openssl s_client -connect 127.0.0.1:{port} -servername shop.example </dev/null 2>/dev/null | openssl x509 -noout -serial"
            ),
        ])
        .output()
        .unwrap();
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_come_from_the_parameter_store_and_rotate_with_apply() {
    let dir = tempfile::tempdir().unwrap();
    let pki = dir.path().join("pki");
    std::fs::create_dir_all(&pki).unwrap();
    run(
        &pki,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=gantry test CA",
        ],
    );
    let ca = pki.join("ca.pem");
    let (cert1, key1) = leaf(&pki, "one");
    let (cert2, key2) = leaf(&pki, "two");

    let listen = "127.0.0.1:0".parse().unwrap();
    let server = RunningServer::start(&dir.path().join("data"), listen, listen)
        .await
        .unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();

    let plain = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();

    // Missing parameters are named.
    let error = apply(&server, dir.path(), &project(port, plain))
        .await
        .unwrap_err();
    assert!(error.contains("/shop/tls/cert"), "{error}");

    // A key that is not a SecureString is refused.
    put(&server, "/shop/tls/cert", &cert1, ParamType::String).await;
    put(&server, "/shop/tls/key", &key1, ParamType::String).await;
    let error = apply(&server, dir.path(), &project(port, plain))
        .await
        .unwrap_err();
    assert!(error.contains("must be a SecureString"), "{error}");
    assert!(!error.contains("PRIVATE KEY"), "{error}");

    put(&server, "/shop/tls/key", &key1, ParamType::SecureString).await;
    let summary = apply(&server, dir.path(), &project(port, plain))
        .await
        .unwrap();
    assert!(
        summary[0].contains("certificate /shop/tls/cert version 1"),
        "{summary:?}"
    );
    assert!(!summary[0].contains("PRIVATE KEY"), "{summary:?}");
    let ca2 = ca.clone();
    assert_eq!(
        tokio::task::spawn_blocking(move || curl(&ca2, port))
            .await
            .unwrap()
            .as_deref(),
        Some("tls ok")
    );
    // The plain listener sends everything to the https one.
    let location = tokio::task::spawn_blocking(move || {
        let output = Command::new("curl")
            .args([
                "-sS",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code} %{redirect_url}",
            ])
            .args(["-H", "Host: shop.example"])
            .arg(format!("http://127.0.0.1:{plain}/a/b?c=1"))
            .output()
            .unwrap();
        String::from_utf8_lossy(&output.stdout).into_owned()
    })
    .await
    .unwrap();
    assert_eq!(location, format!("301 https://shop.example:{port}/a/b?c=1"));
    let first = tokio::task::spawn_blocking(move || served_serial(port))
        .await
        .unwrap();

    // A certificate that does not match its key: refused, nothing changes.
    put(&server, "/shop/tls/cert", &cert2, ParamType::String).await;
    let error = apply(&server, dir.path(), &project(port, plain))
        .await
        .unwrap_err();
    assert!(error.contains("does not match"), "{error}");
    assert!(error.contains("/shop/tls/cert"), "{error}");
    assert_eq!(
        tokio::task::spawn_blocking(move || served_serial(port))
            .await
            .unwrap(),
        first
    );

    // Rotation under a loop of requests: none fails.
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let load = {
        let (stop, ok, failed, ca) = (stop.clone(), ok.clone(), failed.clone(), ca.clone());
        tokio::task::spawn_blocking(move || {
            while !stop.load(SeqCst) {
                match curl(&ca, port).as_deref() {
                    Some("tls ok") => ok.fetch_add(1, SeqCst),
                    _ => failed.fetch_add(1, SeqCst),
                };
            }
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    put(&server, "/shop/tls/key", &key2, ParamType::SecureString).await;
    let summary = apply(&server, dir.path(), &project(port, plain))
        .await
        .unwrap();
    assert!(summary[0].contains("version 3"), "{summary:?}");
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    stop.store(true, SeqCst);
    load.await.unwrap();
    assert_eq!(failed.load(SeqCst), 0, "{} succeeded", ok.load(SeqCst));
    assert!(ok.load(SeqCst) > 2);
    let rotated = tokio::task::spawn_blocking(move || served_serial(port))
        .await
        .unwrap();
    assert_ne!(rotated, first);

    // The status names the pinned versions, never the key.
    let status = server
        .plane
        .deployer()
        .environment_status("production")
        .await
        .unwrap();
    assert_eq!(status.listeners.len(), 2);
    assert_eq!(status.url, format!("https://127.0.0.1:{port}/"));
    assert_eq!(status.listeners[1].name, "plain");
    assert_eq!(status.listeners[1].listen, format!("127.0.0.1:{plain}"));
    let listener = &status.listeners[0];
    assert_eq!(
        (listener.name.as_str(), listener.protocol.as_str()),
        ("web", "https")
    );
    let pin = &listener.certificates[0];
    assert_eq!((pin.cert.as_str(), pin.cert_version), ("/shop/tls/cert", 2));
    assert_eq!((pin.key.as_str(), pin.key_version), ("/shop/tls/key", 3));
    let json = serde_json::to_string(&status).unwrap();
    assert!(!json.contains("PRIVATE KEY"), "{json}");
    server.shutdown().await;
}
