//! ALB rule conditions and actions through `apply`: an environment file in
//! the new rule form, a busybox service deployed behind it, and curl
//! against the listener; then an https listener with missing certificate
//! parameters refused at apply with the running listener's rules unchanged.

mod support;

use std::path::PathBuf;
use std::process::Command;

use gantry_images::{ImageSpec, Reference, build_image};
use gantry_server::RunningServer;
use support::Quiet;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A busybox httpd image whose index says `web`.
async fn push_image(server: &RunningServer) -> String {
    push_image_saying(server, "web").await
}

/// A busybox httpd image whose index says `text`, tagged `test/TEXT:1`.
async fn push_image_saying(server: &RunningServer, text: &str) -> String {
    let busybox = PathBuf::from("/bin/busybox");
    assert!(busybox.exists(), "apt-get install busybox-static");
    let dir = tempfile::tempdir().unwrap();
    let site = dir.path().join("site");
    std::fs::create_dir_all(site.join("www")).unwrap();
    std::fs::copy(&busybox, site.join("busybox")).unwrap();
    std::fs::write(site.join("www/index.html"), text).unwrap();
    std::fs::write(site.join("www/health"), "ok").unwrap();
    let mut spec = ImageSpec::new(&site);
    spec.workdir = Some("/app".into());
    spec.entrypoint = Some(vec![
        "/app/busybox".into(),
        "sh".into(),
        "-c".into(),
        "exec $GANTRY_ROOTFS/app/busybox httpd -f -p $PORT -h www".into(),
    ]);
    let target = Reference::parse(&format!("{}/test/{text}:1", server.registry)).unwrap();
    let result = build_image(&spec, &target, server.plane.images())
        .await
        .unwrap();
    target.with_digest(&result.digest).to_string()
}

fn project(port: u16, listeners: &str) -> String {
    format!(
        r##"
version: 1
environments:
  staging:
    runtime: process
    load_balancer:
{listeners}
      rules:
        - priority: 5
          conditions: {{header: {{X-Tenant: ["a*"]}}, method: [GET]}}
          action: {{forward: {{service: web}}}}
        - priority: 9
          conditions: {{path: ["/old/*"]}}
          action: {{redirect: {{path: "/new/#{{path}}", status: 302}}}}
        - priority: 99
          conditions: {{path: ["/maintenance"], source_ip: ["127.0.0.0/8"]}}
          action: {{fixed_response: {{status: 503, content_type: text/plain, body: "back soon"}}}}
services:
  web:
    replicas: 1
    health_check: {{path: /health, interval: 1s, timeout: 500ms, healthy_threshold: 2, unhealthy_threshold: 2, grace_period: 0s}}
"##
    )
    .replace("{port}", &port.to_string())
}

/// curl's status line, `Location`, and body for `path` with `headers`.
fn curl(port: u16, path: &str, headers: &[&str]) -> (String, String) {
    let mut command = Command::new("curl");
    command.args([
        "-sS",
        "--max-time",
        "10",
        "-o",
        "-",
        "-w",
        "\n%{http_code} %{redirect_url}",
    ]);
    for header in headers {
        command.args(["-H", header]);
    }
    let output = command
        .arg(format!("http://127.0.0.1:{port}{path}"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let (body, status) = text.rsplit_once('\n').unwrap_or(("", &text));
    (status.trim().to_owned(), body.to_owned())
}

async fn apply(server: &RunningServer, dir: &std::path::Path, text: &str) -> Result<(), String> {
    let file = dir.join("env.yaml");
    std::fs::write(&file, text).unwrap();
    server
        .plane
        .apply_file(&file, text, &Default::default())
        .await
        .map(|_| ())
        .map_err(|e| format!("{e} {e:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conditions_and_actions_serve_through_apply_and_a_bad_change_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let listen = "127.0.0.1:0".parse().unwrap();
    let server = RunningServer::start(&dir.path().join("data"), listen, listen)
        .await
        .unwrap();
    let port = free_port();
    let one = format!(
        "      listeners:\n        - {{name: main, listen: \"127.0.0.1:{port}\", default_action: {{fixed_response: {{status: 404, content_type: application/json, body: '{{\"error\": \"none\"}}'}}}}}}"
    );
    apply(&server, dir.path(), &project(port, &one))
        .await
        .unwrap();
    let image = push_image(&server).await;
    server
        .plane
        .deployer()
        .deploy("staging", "web", &image, "test", &Quiet)
        .await
        .unwrap();

    let check = move || {
        assert_eq!(
            curl(port, "/", &["X-Tenant: alpha"]),
            ("200".to_owned(), "web".to_owned())
        );
        assert_eq!(
            curl(port, "/old/a?b=1", &[]).0,
            format!("302 http://127.0.0.1:{port}/new/old/a?b=1")
        );
        assert_eq!(
            curl(port, "/maintenance", &[]),
            ("503".to_owned(), "back soon".to_owned())
        );
        // No rule: the listener's default action.
        assert_eq!(
            curl(port, "/", &["X-Tenant: beta"]),
            ("404".to_owned(), "{\"error\": \"none\"}".to_owned())
        );
    };
    tokio::task::spawn_blocking(check).await.unwrap();

    // An https listener whose certificate parameters are missing is
    // refused, naming them; nothing changes.
    let https = format!(
        "      listeners:\n        - {{name: main, listen: \"127.0.0.1:{port}\", protocol: https, certificates: [{{cert: /t/cert, key: /t/key}}]}}"
    );
    let error = apply(&server, dir.path(), &project(port, &https))
        .await
        .unwrap_err();
    assert!(error.contains("/t/cert"), "{error}");
    tokio::task::spawn_blocking(check).await.unwrap();

    // A rule mistake is refused with its file, line and column.
    let error = apply(
        &server,
        dir.path(),
        &project(port, &one).replace("status: 302", "status: 307"),
    )
    .await
    .unwrap_err();
    assert!(
        error.contains("line: 15") && error.contains("`redirect.status` must be 301 or 302"),
        "{error}"
    );
    server.shutdown().await;
    kill_replicas(&dir.path().join("data"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_weighted_forward_splits_requests_by_weight_between_services() {
    let dir = tempfile::tempdir().unwrap();
    let listen = "127.0.0.1:0".parse().unwrap();
    let server = RunningServer::start(&dir.path().join("data"), listen, listen)
        .await
        .unwrap();
    let port = free_port();
    let text = |web: u32, next: u32| {
        format!(
            r#"
version: 1
environments:
  staging:
    runtime: process
    load_balancer:
      listen: "127.0.0.1:{port}"
      rules:
        - priority: 1
          conditions: {{path: ["/*"]}}
          action: {{forward: {{targets: [{{service: web, weight: {web}}}, {{service: next, weight: {next}}}]}}}}
services:
  web:
    replicas: 1
    health_check: {{path: /health, interval: 1s, timeout: 500ms, healthy_threshold: 2, unhealthy_threshold: 2, grace_period: 0s}}
  next:
    replicas: 1
    stickiness: {{duration: 1h}}
    health_check: {{path: /health, interval: 1s, timeout: 500ms, healthy_threshold: 2, unhealthy_threshold: 2, grace_period: 0s}}
"#
        )
    };
    apply(&server, dir.path(), &text(3, 1)).await.unwrap();
    for service in ["web", "next"] {
        let image = push_image_saying(&server, service).await;
        server
            .plane
            .deployer()
            .deploy("staging", service, &image, "test", &Quiet)
            .await
            .unwrap();
    }
    let count = move |requests: usize| {
        let (mut web, mut next) = (0, 0);
        for _ in 0..requests {
            match curl(port, "/", &[]) {
                (status, body) if status == "200" && body == "web" => web += 1,
                (status, body) if status == "200" && body == "next" => next += 1,
                other => panic!("unexpected answer {other:?}"),
            }
        }
        (web, next)
    };
    // Exactly by weight over whole cycles of the weights' sum.
    assert_eq!(
        tokio::task::spawn_blocking(move || count(40))
            .await
            .unwrap(),
        (30, 10)
    );
    // `next` is sticky: its answers set the load balancer's cookie, web's
    // do not.
    let cookies = tokio::task::spawn_blocking(move || {
        (0..4)
            .map(|_| {
                let output = Command::new("curl")
                    .args(["-sS", "-D", "-", "-o", "/dev/null"])
                    .arg(format!("http://127.0.0.1:{port}/"))
                    .output()
                    .unwrap();
                String::from_utf8_lossy(&output.stdout)
                    .lines()
                    .any(|l| l.to_ascii_lowercase().starts_with("set-cookie: gantrylb="))
            })
            .filter(|sticky| *sticky)
            .count()
    })
    .await
    .unwrap();
    assert_eq!(cookies, 1, "one answer in four is next's");
    // New weights apply at once; a weight of 0 gets nothing.
    apply(&server, dir.path(), &text(0, 5)).await.unwrap();
    assert_eq!(
        tokio::task::spawn_blocking(move || count(10))
            .await
            .unwrap(),
        (0, 10)
    );
    server.shutdown().await;
    kill_replicas(&dir.path().join("data"));
}

/// Replicas outlive servers by design; the test cleans up after itself.
fn kill_replicas(data: &std::path::Path) {
    let marker = data.join("replicas").display().to_string();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let environ = std::fs::read(entry.path().join("environ")).unwrap_or_default();
        if String::from_utf8_lossy(&environ).contains(&marker)
            && let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>()
        {
            let _ = Command::new("kill").arg("-9").arg(pid.to_string()).status();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listeners_request_limits_come_from_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let listen = "127.0.0.1:0".parse().unwrap();
    let server = RunningServer::start(&dir.path().join("data"), listen, listen)
        .await
        .unwrap();
    let port = free_port();
    let text = format!(
        r#"
version: 1
environments:
  staging:
    load_balancer:
      listeners:
        - name: web
          listen: "127.0.0.1:{port}"
          idle_timeout: 5s
          header_timeout: 2s
          max_header_size: 8Ki
          max_body_size: 1Ki
          default_action: {{fixed_response: {{status: 200, content_type: text/plain, body: "ok"}}}}
"#
    );
    apply(&server, dir.path(), &text).await.unwrap();
    let status = move |args: Vec<String>| {
        let output = Command::new("curl")
            .args(["-sS", "-o", "/dev/null", "-w", "%{http_code}"])
            .args(args)
            .arg(format!("http://127.0.0.1:{port}/"))
            .output()
            .unwrap();
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    let checks = tokio::task::spawn_blocking(move || {
        (
            status(vec![]),
            status(vec!["--data-binary".into(), "x".repeat(2048)]),
            status(vec!["--data-binary".into(), "x".repeat(512)]),
            status(vec![
                "-H".into(),
                format!("X-Big: {}", "a".repeat(10 * 1024)),
            ]),
        )
    })
    .await
    .unwrap();
    assert_eq!(
        checks,
        ("200".into(), "413".into(), "200".into(), "431".into())
    );
    // A size that is not one is refused at FILE:LINE:COL.
    let error = apply(
        &server,
        dir.path(),
        &text.replace("max_body_size: 1Ki", "max_body_size: lots"),
    )
    .await
    .unwrap_err();
    assert!(
        error.contains("`max_body_size` must be a size such as 64Ki or 10Mi"),
        "{error}"
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_listeners_serve_their_own_rules_to_the_same_replicas() {
    let dir = tempfile::tempdir().unwrap();
    let listen = "127.0.0.1:0".parse().unwrap();
    let server = RunningServer::start(&dir.path().join("data"), listen, listen)
        .await
        .unwrap();
    // A self-signed certificate for the https listener.
    let pki = dir.path().join("pki");
    std::fs::create_dir_all(&pki).unwrap();
    let made = Command::new("openssl")
        .current_dir(&pki)
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ])
        .args([
            "-nodes", "-keyout", "key.pem", "-out", "cert.pem", "-days", "2",
        ])
        .args([
            "-subj",
            "/CN=shop.example",
            "-addext",
            "subjectAltName=DNS:shop.example",
        ])
        .output()
        .unwrap();
    assert!(made.status.success(), "{made:?}");
    for (name, file, kind) in [
        ("/t/cert", "cert.pem", gantry_params::ParamType::String),
        ("/t/key", "key.pem", gantry_params::ParamType::SecureString),
    ] {
        let value = std::fs::read_to_string(pki.join(file)).unwrap();
        let name = gantry_params::ParamName::parse(name).unwrap();
        server
            .plane
            .params()
            .put(gantry_params::PutParameter::new(
                &name, &value, kind, "root",
            ))
            .await
            .unwrap();
    }
    let (main, admin) = (free_port(), free_port());
    let text = format!(
        r#"
version: 1
environments:
  staging:
    runtime: process
    load_balancer:
      listeners:
        - {{name: main, listen: "127.0.0.1:{main}"}}
        - name: admin
          listen: "127.0.0.1:{admin}"
          protocol: https
          certificates: [{{cert: /t/cert, key: /t/key}}]
          default_action: {{fixed_response: {{status: 403, content_type: text/plain, body: "admins only"}}}}
      rules:
        - {{priority: 1, listener: main, conditions: {{path: ["/*"]}}, action: {{forward: {{service: web}}}}}}
        - {{priority: 1, listener: admin, conditions: {{path: ["/index.html"]}}, action: {{forward: {{service: web}}}}}}
services:
  web:
    replicas: 1
    health_check: {{path: /health, interval: 1s, timeout: 500ms, healthy_threshold: 2, unhealthy_threshold: 2, grace_period: 0s}}
"#
    );
    apply(&server, dir.path(), &text).await.unwrap();
    let image = push_image(&server).await;
    server
        .plane
        .deployer()
        .deploy("staging", "web", &image, "test", &Quiet)
        .await
        .unwrap();
    let cert = pki.join("cert.pem");
    let answers = tokio::task::spawn_blocking(move || {
        let https = |path: &str| {
            let output = Command::new("curl")
                .args(["-sS", "-w", " %{http_code}", "--cacert"])
                .arg(&cert)
                .args(["--resolve", &format!("shop.example:{admin}:127.0.0.1")])
                .arg(format!("https://shop.example:{admin}{path}"))
                .output()
                .unwrap();
            String::from_utf8_lossy(&output.stdout).into_owned()
        };
        (curl(main, "/", &[]), https("/index.html"), https("/other"))
    })
    .await
    .unwrap();
    assert_eq!(answers.0, ("200".to_owned(), "web".to_owned()));
    assert_eq!(answers.1, "web 200");
    assert_eq!(answers.2, "admins only 403");
    let status = server
        .plane
        .deployer()
        .environment_status("staging")
        .await
        .unwrap();
    let listeners: Vec<(&str, &str)> = status
        .listeners
        .iter()
        .map(|l| (l.name.as_str(), l.protocol.as_str()))
        .collect();
    assert_eq!(listeners, [("main", "http"), ("admin", "https")]);
    assert_eq!(status.listeners[1].certificates[0].cert, "/t/cert");
    server.shutdown().await;
    kill_replicas(&dir.path().join("data"));
}
