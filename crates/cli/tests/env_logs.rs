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

/// `gantry env logs ENV --access`: the load balancer's access log, one
/// line per request (rule, status, bytes, user agent), through the binary;
/// a service and --access together, or neither, are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn env_logs_access_prints_the_load_balancers_access_log() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join(".gantry");
    std::fs::create_dir_all(&data).unwrap();
    let server = Server::start(&data);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let file = dir.path().join("env.yaml");
    let project = |on: bool| {
        format!(
            r#"
version: 1
environments:
  staging:
    load_balancer:
      access_log: {on}
      listeners:
        - name: web
          listen: 127.0.0.1:{port}
          default_action: {{fixed_response: {{status: 200, content_type: text/plain, body: "hi"}}}}
      rules:
        - {{priority: 4, conditions: {{path: ["/gone"]}}, action: {{fixed_response: {{status: 410, body: "gone"}}}}}}
"#
        )
    };
    std::fs::write(&file, project(true)).unwrap();
    ok(run(&data, &["apply", "-f", file.to_str().unwrap()]));
    for path in ["/a?x=1", "/gone"] {
        let out = std::process::Command::new("curl")
            .args(["-sS", "-A", "tester/1.0 \"quoted\""])
            .arg(format!("http://127.0.0.1:{port}{path}"))
            .output()
            .unwrap();
        assert!(out.status.success());
    }
    // The writer appends on its own thread: wait for both lines.
    let mut text = String::new();
    for _ in 0..100 {
        text = ok(run(&data, &["env", "logs", "staging", "--access"]));
        if text.lines().count() == 2 {
            break;
        }
        gantry_clock::blocking_sleep(Duration::from_millis(50));
    }
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(lines[0].starts_with("http "), "{text}");
    assert!(
        lines[0].contains(" staging/web 127.0.0.1 - ")
            && lines[0].contains(
                " 200 2 \"GET /a?x=1 HTTP/1.1\" \"tester/1.0 \\x22quoted\\x22\" default complete"
            ),
        "{text}"
    );
    assert!(
        lines[1].contains(" 410 4 \"GET /gone HTTP/1.1\"") && lines[1].ends_with(" 4 complete"),
        "{text}"
    );
    let tail = ok(run(
        &data,
        &["env", "logs", "staging", "--access", "--tail", "1"],
    ));
    assert_eq!(tail.lines().collect::<Vec<_>>(), [lines[1]]);

    let both = run(&data, &["env", "logs", "staging", "web", "--access"]);
    assert_eq!(both.status.code(), Some(1));
    let neither = run(&data, &["env", "logs", "staging"]);
    assert_eq!(neither.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&neither.stderr).contains("--access"));

    // Off: no new lines, and the command says why.
    std::fs::write(&file, project(false)).unwrap();
    ok(run(&data, &["apply", "-f", file.to_str().unwrap()]));
    std::process::Command::new("curl")
        .args(["-sS", &format!("http://127.0.0.1:{port}/b")])
        .output()
        .unwrap();
    gantry_clock::blocking_sleep(Duration::from_millis(200));
    let after = run(&data, &["env", "logs", "staging", "--access"]);
    assert_eq!(String::from_utf8_lossy(&after.stdout).lines().count(), 2);
    ok(run(&data, &["shutdown"]));
    drop(server);
}
