//! Command health checks (`health_check.command`): run inside each replica
//! (the process runtime: in its image's root with its environment; docker:
//! `docker exec`), exit 0 healthy. A revision whose check passes serves; one
//! whose check fails trips the circuit breaker, naming the command's exit,
//! while the previous revision keeps serving.
//!
//! The deployed image holds Debian's static busybox (busybox-static).

mod support;

use gantry_server::RunningServer;
use support::{Quiet, Replicas, WEB_PROJECT, push_web};

/// The web project with a command health check that passes when the
/// replica's `READY` is `yes`, on `runtime`.
fn project(port: u16, runtime: &str, ready: &str) -> String {
    WEB_PROJECT
        .replace("PORT", &port.to_string())
        .replace("runtime: process", &format!("runtime: {runtime}"))
        .replace(
            "path: /health, interval: 2s, timeout: 1s",
            r#"command: ["/app/busybox", "sh", "-c", "test \"$READY\" = yes || { echo not ready >&2; exit 3; }"], interval: 2s, timeout: 1500ms"#,
        )
        .replace(
            "    replicas: 1\n",
            &format!("    replicas: 1\n    environment: {{READY: \"{ready}\"}}\n"),
        )
}

async fn check_commands_decide_health(runtime: &str) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let listen = "127.0.0.1:0".parse().unwrap();
    let server = RunningServer::start(&data, listen, listen).await.unwrap();
    let _replicas = Replicas(data.clone());
    let port = gantry_testkit::free_port();
    let file = dir.path().join("env.yaml");
    let apply = |ready: &str| {
        let text = project(port, runtime, ready);
        let (plane, file) = (server.plane.clone(), file.clone());
        async move {
            plane
                .apply_file(&file, &text, &Default::default())
                .await
                .unwrap()
        }
    };
    apply("yes").await;
    let v1 = push_web(&server, "1", "one", "", &[]).await;
    let v2 = push_web(&server, "2", "two", "", &[]).await;
    let deployer = server.plane.deployer();
    deployer
        .deploy("staging", "web", &v1, "test", &Quiet)
        .await
        .expect("the check passes inside the replica");
    let body = reqwest::get(format!("http://127.0.0.1:{port}/"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(body, "one");

    // The next revision's replicas are not ready: its check fails inside
    // them, the breaker rolls back, revision 1 still serves.
    apply("no").await;
    let error = deployer
        .deploy("staging", "web", &v2, "test", &Quiet)
        .await
        .expect_err("the check fails");
    let text = error.to_string();
    assert_eq!(error.code(), "deploy.circuit_breaker", "{text}");
    assert!(
        text.contains("the health command exited 3: not ready"),
        "{text}"
    );
    let body = reqwest::get(format!("http://127.0.0.1:{port}/"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(body, "one");
    let _ = deployer.down("staging").await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_health_check_decides_on_the_process_runtime() {
    check_commands_decide_health("process").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_health_check_decides_on_the_docker_runtime() {
    if !gantry_testkit::docker_tests_enabled("a_command_health_check_decides_on_the_docker_runtime")
    {
        return;
    }
    check_commands_decide_health("docker").await;
}
