//! `GET /metrics`: refused without a token, served to a viewer, and (when
//! `promtool` is installed, or GANTRY_TEST_PROMTOOL=1 demands it) valid
//! for Prometheus's own checker after real traffic through a deployed
//! service's load balancer, with the counts that traffic made.
//!
//! The deployed image holds Debian's static busybox (package
//! busybox-static).

mod support;

use std::time::Duration;

use gantry_server::RunningServer;
use support::{Quiet, Replicas, WEB_PROJECT, push_web};

async fn get(app: &axum::Router, token: Option<&str>, path: &str) -> (u16, String, String) {
    use tower::ServiceExt;
    let mut request = axum::http::Request::get(path).header("host", "127.0.0.1:7700");
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    let response = app
        .clone()
        .oneshot(request.body(axum::body::Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let bytes = axum::body::to_bytes(response.into_body(), 16 << 20)
        .await
        .unwrap();
    (
        status,
        content_type,
        String::from_utf8(bytes.to_vec()).unwrap(),
    )
}

/// A viewer's token for `server`.
async fn viewer(server: &RunningServer) -> String {
    let now = gantry_clock::now_ms();
    let auth = server.plane.auth();
    auth.add_user("vic", None, vec!["viewer".parse().unwrap()], now)
        .await
        .unwrap();
    let token = auth.create_token("vic", None, None, now).await.unwrap();
    token.secret.expose().to_string()
}

/// Sends `GET path` through the load balancer on `port`; the status.
async fn through_lb(port: u16, path: &str) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_string(&mut response))
        .await
        .unwrap()
        .unwrap();
    response
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {response:?}"))
}

/// The value of the one sample of `family` whose labels include every one
/// of `labels` (`key="value"`).
fn sample(text: &str, family: &str, labels: &[&str]) -> f64 {
    let found: Vec<f64> = text
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter(|line| {
            line.strip_prefix(family)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .filter(|line| labels.iter().all(|l| line.contains(l)))
        .map(|line| line.rsplit(' ').next().unwrap().parse().unwrap())
        .collect();
    assert_eq!(
        found.len(),
        1,
        "one sample of {family} with {labels:?} expected in:\n{text}"
    );
    found[0]
}

/// Whether this run checks with promtool: always when
/// GANTRY_TEST_PROMTOOL=1 (which CI sets, and then promtool must be
/// there), else when promtool is installed.
fn promtool_wanted() -> bool {
    let demanded = std::env::var("GANTRY_TEST_PROMTOOL").is_ok_and(|v| v == "1");
    let installed = std::process::Command::new("promtool")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        installed || !demanded,
        "GANTRY_TEST_PROMTOOL=1 but promtool is missing: apt-get install prometheus"
    );
    if !installed {
        eprintln!("skipped: promtool is not installed (apt-get install prometheus)");
    }
    installed
}

fn promtool_check(text: &str) {
    use std::io::Write;
    let mut child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "promtool check metrics failed:\n{}{}\n--- input:\n{text}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    // promtool exits 0 with lint remarks too; we want none.
    let remarks = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        remarks.trim().is_empty(),
        "promtool remarks: {remarks}\n--- input:\n{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_need_a_token_and_a_viewer_may_read_them() {
    let dir = tempfile::tempdir().unwrap();
    let listen = "127.0.0.1:0".parse().unwrap();
    let server = RunningServer::start(&dir.path().join("data"), listen, listen)
        .await
        .unwrap();
    let app = gantry_server::api::router(server.plane.clone(), Default::default());
    let (status, _, _) = get(&app, None, "/metrics").await;
    assert_eq!(status, 401);
    let (status, _, _) = get(&app, Some("not-a-token"), "/metrics").await;
    assert_eq!(status, 401);
    let token = viewer(&server).await;
    let (status, content_type, text) = get(&app, Some(&token), "/metrics").await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(content_type, "text/plain; version=0.0.4; charset=utf-8");
    assert!(
        text.contains("# TYPE gantry_lb_open_connections gauge"),
        "{text}"
    );
    assert!(!text.contains(&token), "the token is no label");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promtool_accepts_the_metrics_and_they_count_the_traffic() {
    if !promtool_wanted() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let listen = "127.0.0.1:0".parse().unwrap();
    let server = RunningServer::start(&data, listen, listen).await.unwrap();
    let _replicas = Replicas(data.clone());
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let text = WEB_PROJECT.replace("PORT", &port.to_string());
    server
        .plane
        .apply_file(&dir.path().join("env.yaml"), &text, &Default::default())
        .await
        .unwrap();
    let image = push_web(&server, "1", "hello", "", &[]).await;
    let outcome = server
        .plane
        .deployer()
        .deploy("staging", "web", &image, "test", &Quiet)
        .await
        .unwrap();
    let replica = &outcome.replicas[0];

    for _ in 0..5 {
        assert_eq!(through_lb(port, "/").await, 200);
    }
    assert_eq!(through_lb(port, "/missing").await, 404);

    let app = gantry_server::api::router(server.plane.clone(), Default::default());
    let token = viewer(&server).await;
    let (status, _, text) = get(&app, Some(&token), "/metrics").await;
    assert_eq!(status, 200, "{text}");
    promtool_check(&text);

    let target = [
        "environment=\"staging\"",
        "target_group=\"web\"",
        "revision=\"1\"",
    ];
    let with = |extra: &'static str| -> Vec<&str> {
        let mut labels = target.to_vec();
        labels.push(extra);
        labels
    };
    let target_label = format!("target=\"{replica}\"");
    let mut ok = with("class=\"2xx\"");
    ok.push(&target_label);
    assert_eq!(sample(&text, "gantry_lb_target_requests_total", &ok), 5.0);
    assert_eq!(
        sample(
            &text,
            "gantry_lb_target_requests_total",
            &with("class=\"4xx\"")
        ),
        1.0
    );
    assert_eq!(
        sample(
            &text,
            "gantry_lb_target_requests_total",
            &with("class=\"connection_failure\"")
        ),
        0.0
    );
    assert_eq!(
        sample(&text, "gantry_lb_target_response_seconds_count", &target),
        6.0
    );
    assert_eq!(
        sample(
            &text,
            "gantry_lb_target_response_seconds_bucket",
            &with("le=\"+Inf\"")
        ),
        6.0
    );
    assert_eq!(
        sample(&text, "gantry_lb_target_health", &with("state=\"healthy\"")),
        1.0
    );
    assert_eq!(
        sample(
            &text,
            "gantry_lb_target_health",
            &with("state=\"draining\"")
        ),
        0.0
    );
    assert_eq!(sample(&text, "gantry_lb_target_in_flight", &target), 0.0);
    assert_eq!(
        sample(
            &text,
            "gantry_lb_rule_requests_total",
            &["environment=\"staging\"", "rule=\"/*\"", "priority=\"10\""]
        ),
        6.0
    );
    assert_eq!(
        sample(
            &text,
            "gantry_lb_unmatched_requests_total",
            &["environment=\"staging\""]
        ),
        0.0
    );
    assert_eq!(
        sample(
            &text,
            "gantry_deployments_total",
            &[
                "environment=\"staging\"",
                "service=\"web\"",
                "kind=\"deploy\"",
                "status=\"succeeded\""
            ]
        ),
        1.0
    );
    assert_eq!(
        sample(
            &text,
            "gantry_deployment_duration_seconds_count",
            &["service=\"web\"", "status=\"succeeded\""]
        ),
        1.0
    );
    assert!(
        sample(
            &text,
            "gantry_registry_received_bytes_total",
            &["kind=\"blob\""]
        ) > 0.0,
        "pushing the image sent its blobs"
    );
    assert!(!text.contains(&token), "the token is no label");
}

/// Executions and action attempts are counted by their final status: one
/// that succeeds and one whose second action fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn executions_and_actions_are_counted_by_how_they_end() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let listen = "127.0.0.1:0".parse().unwrap();
    let server = RunningServer::start(&data, listen, listen).await.unwrap();
    let plane = server.plane.clone();
    let pipeline = |second: &str| {
        format!(
            "version: 1\nname: counted\nstages:\n  - name: Work\n    actions:\n      - {{name: one, type: shell, commands: [\"true\"]}}\n      - {{name: two, type: shell, run_order: 2, commands: [\"{second}\"]}}\n"
        )
    };
    for second in ["true", "false"] {
        let id = plane
            .start_execution(
                dir.path().join("gantry.yaml"),
                pipeline(second),
                Default::default(),
                Default::default(),
                Some("root".into()),
            )
            .await
            .unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let (execution, _) = plane.execution(&id).await.unwrap();
            if execution.status.is_terminal() {
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "{id} never ended");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let app = gantry_server::api::router(plane.clone(), Default::default());
    let token = viewer(&server).await;
    let (status, _, text) = get(&app, Some(&token), "/metrics").await;
    assert_eq!(status, 200, "{text}");
    let of = ["pipeline=\"counted\""];
    assert_eq!(sample(&text, "gantry_executions_started_total", &of), 2.0);
    for (status, n) in [("Succeeded", 1.0), ("Failed", 1.0)] {
        let labels = ["pipeline=\"counted\"", &format!("status=\"{status}\"")];
        assert_eq!(
            sample(&text, "gantry_executions_finished_total", &labels),
            n,
            "{status}: {text}"
        );
    }
    let shell = |status: &str| {
        sample(
            &text,
            "gantry_actions_finished_total",
            &[
                "pipeline=\"counted\"",
                "action_type=\"shell\"",
                &format!("status=\"{status}\""),
            ],
        )
    };
    assert_eq!((shell("Succeeded"), shell("Failed")), (3.0, 1.0), "{text}");
    if promtool_wanted() {
        promtool_check(&text);
    }
    server.shutdown().await;
}
