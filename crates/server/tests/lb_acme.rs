//! HTTPS listeners with certificates from an ACME CA: Debian's `pebble`
//! (RFC 8555 test CA) with `pebble-challtestsrv` as its DNS, so every name
//! resolves to 127.0.0.1 and pebble's HTTP-01 validation really asks
//! gantry's http listener. Checks: the listener serves a placeholder, then
//! the issued certificate, which curl verifies against pebble's root; the
//! account, chain and key are parameters (the key and account
//! SecureStrings); adding a domain orders a new certificate that replaces
//! the old under a loop of requests with none failed; a server restarted on
//! the same data dir serves the kept certificate without a new order; a CA
//! that is down is an error at apply that names the directory, and the
//! listener keeps serving. Runs with GANTRY_TEST_ACME=1 (scripts/test sets
//! it) and pebble installed.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::time::Duration;

use tokio::time::Instant;

use gantry_params::{ParamName, ParamType, PutParameter, Selector};
use gantry_server::RunningServer;
use gantry_testkit::{free_port, gate};

fn openssl(dir: &Path, args: &[&str]) {
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

/// A CA and a certificate for 127.0.0.1 signed by it, for pebble's own
/// HTTPS (its directory).
fn pebble_pki(dir: &Path) {
    openssl(
        dir,
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
            "/CN=pebble test CA",
        ],
    );
    std::fs::write(
        dir.join("ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "pebble.key",
            "-out",
            "pebble.csr",
            "-subj",
            "/CN=localhost",
        ],
    );
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "pebble.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-out",
            "pebble.pem",
            "-extfile",
            "ext",
        ],
    );
}

/// pebble and its DNS, killed when dropped.
struct Pebble {
    children: Vec<Child>,
    directory: String,
    management: u16,
    pki: PathBuf,
}

impl Drop for Pebble {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Pebble {
    /// Starts pebble validating HTTP-01 on `http_port`.
    fn start(dir: &Path, http_port: u16) -> Pebble {
        let pki = dir.join("pebble");
        std::fs::create_dir_all(&pki).unwrap();
        pebble_pki(&pki);
        let (listen, management, dns) = (free_port(), free_port(), free_port());
        let config = serde_json::json!({"pebble": {
            "listenAddress": format!("127.0.0.1:{listen}"),
            "managementListenAddress": format!("127.0.0.1:{management}"),
            "certificate": pki.join("pebble.pem"),
            "privateKey": pki.join("pebble.key"),
            "httpPort": http_port,
            "tlsPort": free_port(),
            "ocspResponderURL": "",
            "externalAccountBindingRequired": false,
        }});
        std::fs::write(pki.join("config.json"), config.to_string()).unwrap();
        let log = |name: &str| std::fs::File::create(pki.join(name)).unwrap();
        let dns_server = Command::new("pebble-challtestsrv")
            .args(["-defaultIPv4", "127.0.0.1", "-defaultIPv6", ""])
            .args(["-dns01", &format!("127.0.0.1:{dns}")])
            .args(["-http01", "", "-https01", "", "-tlsalpn01", ""])
            .args(["-management", &format!("127.0.0.1:{}", free_port())])
            .stdout(log("challtestsrv.log"))
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let pebble = Command::new("pebble")
            .arg("-config")
            .arg(pki.join("config.json"))
            .args(["-dnsserver", &format!("127.0.0.1:{dns}")])
            // No random sleeps before validation, no rejected nonces.
            .env("PEBBLE_VA_NOSLEEP", "1")
            .env("PEBBLE_WFE_NONCEREJECT", "0")
            .stdout(log("pebble.log"))
            .stderr(log("pebble.err"))
            .spawn()
            .unwrap();
        let started = Pebble {
            children: vec![dns_server, pebble],
            directory: format!("https://127.0.0.1:{listen}/dir"),
            management,
            pki,
        };
        for attempt in 0.. {
            if std::net::TcpStream::connect(("127.0.0.1", listen)).is_ok() {
                break;
            }
            assert!(attempt < 400, "pebble did not start");
            gantry_clock::blocking_sleep(Duration::from_millis(50));
        }
        started
    }

    /// The root that pebble's issued chains lead to (made anew each run).
    fn issuing_root(&self) -> PathBuf {
        let output = Command::new("curl")
            .args(["-sS", "--fail", "--cacert"])
            .arg(self.pki.join("ca.pem"))
            .arg(format!("https://127.0.0.1:{}/roots/0", self.management))
            .output()
            .unwrap();
        assert!(output.status.success(), "{output:?}");
        let path = self.pki.join("issuing-root.pem");
        std::fs::write(&path, output.stdout).unwrap();
        path
    }
}

async fn put(server: &RunningServer, name: &str, value: &str, kind: ParamType) {
    let name = ParamName::parse(name).unwrap();
    let mut request = PutParameter::new(&name, value, kind, "root");
    request.overwrite = true;
    server.plane.params().put(request).await.unwrap();
}

fn project(web: u16, plain: u16, directory: &str, domains: &[&str]) -> String {
    let domains = domains.join(", ");
    format!(
        r#"
version: 1
environments:
  production:
    load_balancer:
      listeners:
        - name: web
          listen: "127.0.0.1:{web}"
          protocol: https
          acme:
            domains: [{domains}]
            directory: "{directory}"
            contact: ["mailto:ops@gantry.test"]
            directory_ca: /acme/directory-ca
          default_action: {{fixed_response: {{status: 200, content_type: text/plain, body: "acme ok"}}}}
        - {{name: plain, listen: "127.0.0.1:{plain}", redirect_to: web}}
"#
    )
}

async fn apply(server: &RunningServer, dir: &Path, text: &str) -> Result<String, String> {
    let file = dir.join("env.yaml");
    std::fs::write(&file, text).unwrap();
    server
        .plane
        .apply_file(&file, text, &Default::default())
        .await
        .map(|outcome| format!("{outcome:?}"))
        .map_err(|e| format!("{e} {e:?}"))
}

/// Issuer and serial of the certificate served for `name`.
fn served(port: u16, name: &str) -> String {
    let output = Command::new("sh")
        .args([
            "-c",
            &format!(
                "openssl s_client -connect 127.0.0.1:{port} -servername {name} </dev/null 2>/dev/null | openssl x509 -noout -issuer -serial"
            ),
        ])
        .output()
        .unwrap();
    String::from_utf8_lossy(&output.stdout).into_owned()
}

async fn served_async(port: u16, name: &'static str) -> String {
    tokio::task::spawn_blocking(move || served(port, name))
        .await
        .unwrap()
}

/// Waits until the listener serves a certificate pebble issued, other than
/// `not`.
async fn wait_issued(port: u16, not: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let now = served_async(port, "shop.gantry.test").await;
        if now.contains("Pebble") && now != not {
            return now;
        }
        assert!(
            Instant::now() < deadline,
            "no certificate from pebble; the listener serves: {now}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn curl(root: &Path, port: u16, name: &str) -> Option<String> {
    let output = Command::new("curl")
        .args(["-sS", "--max-time", "10", "--cacert"])
        .arg(root)
        .args(["--resolve", &format!("{name}:{port}:127.0.0.1")])
        .arg(format!("https://{name}:{port}/"))
        .output()
        .unwrap();
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).into_owned())
}

async fn latest(server: &RunningServer, name: &str) -> gantry_params::Parameter {
    let name = ParamName::parse(name).unwrap();
    server
        .plane
        .params()
        .get(&Selector::latest(name), false)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acme_certificates_are_issued_by_pebble_renewed_and_kept() {
    if !gate(
        "GANTRY_TEST_ACME",
        "acme_certificates_are_issued_by_pebble_renewed_and_kept",
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (web, plain) = (free_port(), free_port());
    let pebble = Pebble::start(dir.path(), plain);
    let data = dir.path().join("data");
    let listen = "127.0.0.1:0".parse().unwrap();
    let server = RunningServer::start(&data, listen, listen).await.unwrap();
    let ca = std::fs::read_to_string(pebble.pki.join("ca.pem")).unwrap();
    put(&server, "/acme/directory-ca", &ca, ParamType::String).await;

    // A CA that is down is an error at apply, naming its directory; the
    // listener is not started half-way.
    let down = format!("https://127.0.0.1:{}/dir", free_port());
    let error = apply(
        &server,
        dir.path(),
        &project(web, plain, &down, &["shop.gantry.test"]),
    )
    .await
    .unwrap_err();
    assert!(error.contains(&down), "{error}");
    assert!(error.contains("cannot be read"), "{error}");

    // First apply: a placeholder at once, then pebble's certificate.
    let summary = apply(
        &server,
        dir.path(),
        &project(web, plain, &pebble.directory, &["shop.gantry.test"]),
    )
    .await
    .unwrap();
    assert!(!summary.contains("PRIVATE KEY"), "{summary}");
    let first = wait_issued(web, "").await;
    let root = pebble.issuing_root();
    let root2 = root.clone();
    assert_eq!(
        tokio::task::spawn_blocking(move || curl(&root2, web, "shop.gantry.test"))
            .await
            .unwrap()
            .as_deref(),
        Some("acme ok")
    );
    // Kept in the parameter store: the key and the account encrypted.
    let cert = latest(&server, "/gantry/acme/production/web/cert").await;
    assert_eq!((cert.param_type, cert.version), (ParamType::String, 1));
    let key = latest(&server, "/gantry/acme/production/web/key").await;
    assert_eq!(key.param_type, ParamType::SecureString);
    let account = latest(&server, "/gantry/acme/production/web/account").await;
    assert_eq!(account.param_type, ParamType::SecureString);
    // The status pins it.
    let status = server
        .plane
        .deployer()
        .environment_status("production")
        .await
        .unwrap();
    let pins = &status.listeners[0].certificates;
    assert_eq!(pins.len(), 1, "{pins:?}");
    assert_eq!(pins[0].cert, "/gantry/acme/production/web/cert");
    assert!(
        !serde_json::to_string(&status)
            .unwrap()
            .contains("PRIVATE KEY")
    );

    // A new domain orders a new certificate, swapped in under a loop of
    // requests: none fails.
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let load = {
        let (stop, ok, failed, root) = (stop.clone(), ok.clone(), failed.clone(), root.clone());
        tokio::task::spawn_blocking(move || {
            while !stop.load(SeqCst) {
                match curl(&root, web, "shop.gantry.test").as_deref() {
                    Some("acme ok") => ok.fetch_add(1, SeqCst),
                    _ => failed.fetch_add(1, SeqCst),
                };
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    apply(
        &server,
        dir.path(),
        &project(
            web,
            plain,
            &pebble.directory,
            &["shop.gantry.test", "www.gantry.test"],
        ),
    )
    .await
    .unwrap();
    let ordered = Instant::now();
    let second = wait_issued(web, &first).await;
    let took = ordered.elapsed();
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, SeqCst);
    load.await.unwrap();
    assert_eq!(failed.load(SeqCst), 0, "{} succeeded", ok.load(SeqCst));
    assert!(ok.load(SeqCst) > 2);
    // The figure for the notes (run with --nocapture).
    println!(
        "ACME renewal under load: the new certificate served {took:?} after the apply; {} HTTPS requests, {} failed",
        ok.load(SeqCst),
        failed.load(SeqCst)
    );
    let root2 = root.clone();
    assert_eq!(
        tokio::task::spawn_blocking(move || curl(&root2, web, "www.gantry.test"))
            .await
            .unwrap()
            .as_deref(),
        Some("acme ok")
    );
    assert_eq!(
        latest(&server, "/gantry/acme/production/web/cert")
            .await
            .version,
        2
    );
    // The same account: not made again.
    assert_eq!(
        latest(&server, "/gantry/acme/production/web/account")
            .await
            .version,
        1
    );

    // A restarted server serves the kept certificate at once, with no new
    // order.
    drop(server);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let server = RunningServer::start(&data, listen, listen).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let now = served_async(web, "shop.gantry.test").await;
        if now == second {
            break;
        }
        assert!(Instant::now() < deadline, "after a restart: {now}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        latest(&server, "/gantry/acme/production/web/cert")
            .await
            .version,
        2
    );
}
