//! `gantry env logs` on the process runtime, through the binary: a replica
//! deployed from an image pushed to the embedded registry writes to stdout
//! and stderr; the command prints both, refuses an unknown replica, and
//! `--follow` prints what exists and ends on Ctrl-C.
//!
//! The test image holds Debian's static busybox (package busybox-static).

mod common;

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::Duration;

use common::{Server, gantry, ok, push_image, run};

const PROJECT: &str = r#"
version: 1
environments:
  staging:
    runtime: process
    load_balancer:
      listen: 127.0.0.1:PORT
      rules:
        - {priority: 10, path: "/*", service: web}
services:
  web:
    replicas: 1
    health_check: {path: /health, interval: 2s, timeout: 1s, healthy_threshold: 2, unhealthy_threshold: 2, grace_period: 0s}
    deployment: {min_healthy_percent: 100, max_percent: 200, drain: 0s}
"#;

/// A tar layer holding busybox and a health file under `app/`.
fn layer() -> Vec<u8> {
    let busybox = std::fs::read("/bin/busybox")
        .expect("these tests need Debian's busybox-static: apt-get install busybox-static");
    let mut tar = tar::Builder::new(Vec::new());
    for (name, bytes, mode) in [
        ("app/busybox", busybox.as_slice(), 0o755),
        ("app/www/health", b"ok".as_slice(), 0o644),
    ] {
        let mut header = tar::Header::new_ustar();
        header.set_size(bytes.len() as u64);
        header.set_mode(mode);
        header.set_cksum();
        tar.append_data(&mut header, name, bytes).unwrap();
    }
    tar.into_inner().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn env_logs_prints_a_replicas_stdout_and_stderr() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join(".gantry");
    std::fs::create_dir_all(&data).unwrap();
    let server = Server::start(&data);
    let token = std::fs::read_to_string(data.join("admin.token")).unwrap();
    let layer = layer();
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "config": {
            "Entrypoint": ["/app/busybox", "sh", "-c",
                "echo hello-out; echo hello-err >&2; exec $GANTRY_ROOTFS/app/busybox httpd -f -p $PORT -h www"],
            "WorkingDir": "/app"
        },
        "rootfs": {"type": "layers", "diff_ids": [common::sha256(&layer)]}
    }))
    .unwrap();
    let digest = push_image(
        &server.registry,
        token.trim(),
        "shop/web",
        "1",
        &config,
        &layer,
    )
    .await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let file = dir.path().join("env.yaml");
    std::fs::write(&file, PROJECT.replace("PORT", &port.to_string())).unwrap();
    ok(run(&data, &["apply", "-f", file.to_str().unwrap()]));
    let image = format!("{}/shop/web@{digest}", server.registry);
    ok(run(&data, &["deploy", "staging", "web", "--image", &image]));

    let text = ok(run(&data, &["env", "logs", "staging", "web"]));
    assert!(
        text.contains("hello-out") && text.contains("hello-err"),
        "{text}"
    );
    let unknown = run(
        &data,
        &["env", "logs", "staging", "web", "--replica", "nope"],
    );
    assert_eq!(unknown.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&unknown.stderr).contains("deploy.unknown_replica"),
        "{}",
        String::from_utf8_lossy(&unknown.stderr)
    );
    let since = ok(run(
        &data,
        &["env", "logs", "staging", "web", "--since", "1h"],
    ));
    assert_eq!(since, text);

    // --follow prints what exists, prefixed with the replica, then waits.
    let mut follow = gantry(&data, &["env", "logs", "staging", "web", "--follow"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (lines, rx) = mpsc::channel();
    let stdout = follow.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = lines.send(line);
        }
    });
    let first = rx.recv_timeout(Duration::from_secs(60)).expect("a line");
    assert!(first.contains(" | hello-"), "{first}");
    let interrupted = std::process::Command::new("kill")
        .args(["-INT", &follow.id().to_string()])
        .status()
        .unwrap();
    assert!(interrupted.success());
    let status = follow.wait().unwrap();
    assert_eq!(status.code(), Some(0));

    ok(run(&data, &["shutdown", "--stop-services"]));
    drop(server);
}
