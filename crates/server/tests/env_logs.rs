//! `GET /api/v1/environments/{env}/services/{service}/logs` on the
//! process runtime (and the docker runtime, with GANTRY_TEST_DOCKER): a replica's stdout and stderr are served to an
//! operator of the environment (not to a viewer), by replica, from a
//! cursor, and since a time.
//!
//! The test image holds Debian's static busybox (package busybox-static).

mod support;

use gantry_api::{ErrorBody, ReplicaLogView};
use gantry_server::RunningServer;
use support::{Quiet, Replicas, WEB_PROJECT, push_web};

async fn get(app: &axum::Router, token: &str, path: &str) -> (u16, Vec<u8>) {
    use tower::ServiceExt;
    let request = axum::http::Request::get(path)
        .header("host", "127.0.0.1:7700")
        .header("authorization", format!("Bearer {token}"))
        .body(axum::body::Body::empty())
        .unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status().as_u16();
    let bytes = axum::body::to_bytes(response.into_body(), 4 << 20)
        .await
        .unwrap();
    (status, bytes.to_vec())
}

fn logs(bytes: &[u8]) -> Vec<ReplicaLogView> {
    serde_json::from_slice(bytes)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(bytes)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replicas_stdout_and_stderr_are_served_to_an_operator() {
    check_logs("process").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_containers_stdout_and_stderr_are_served_on_the_docker_runtime() {
    if !gantry_testkit::docker_tests_enabled(
        "a_containers_stdout_and_stderr_are_served_on_the_docker_runtime",
    ) {
        return;
    }
    check_logs("docker").await;
}

/// Deploys the image on `runtime` and reads its replica's output through
/// the API, as each kind of caller.
async fn check_logs(runtime: &str) {
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
    let text = WEB_PROJECT
        .replace("PORT", &port.to_string())
        .replace("runtime: process", &format!("runtime: {runtime}"));
    server
        .plane
        .apply_file(&dir.path().join("env.yaml"), &text, &Default::default())
        .await
        .unwrap();
    let image = push_web(
        &server,
        "1",
        "",
        "echo \"to stdout on $PORT\"; echo 'to stderr' >&2; ",
        &[],
    )
    .await;
    server
        .plane
        .deployer()
        .deploy("staging", "web", &image, "test", &Quiet)
        .await
        .unwrap();

    let now = gantry_clock::now_ms();
    let auth = server.plane.auth();
    auth.add_user("vic", None, vec!["viewer".parse().unwrap()], now)
        .await
        .unwrap();
    auth.add_user(
        "op",
        None,
        vec!["operator:env=staging".parse().unwrap()],
        now,
    )
    .await
    .unwrap();
    let viewer = auth.create_token("vic", None, None, now).await.unwrap();
    let operator = auth.create_token("op", None, None, now).await.unwrap();
    let operator = operator.secret.expose();
    let app = gantry_server::api::router(server.plane.clone(), Default::default());
    let path = "/api/v1/environments/staging/services/web/logs";

    let (status, _) = get(&app, viewer.secret.expose(), path).await;
    assert_eq!(status, 403, "a viewer does not read raw replica output");

    // Both streams, once the replica wrote them (it was healthy, so it ran).
    let (status, body) = get(&app, operator, path).await;
    assert_eq!(status, 200);
    let outputs = logs(&body);
    assert_eq!(outputs.len(), 1);
    let output = &outputs[0];
    assert!(output.text.contains("to stdout on "), "{output:?}");
    assert!(output.text.contains("to stderr"), "{output:?}");

    // From the cursor: nothing new. One replica by id; an unknown one.
    let after = format!("{path}?replica={}&after={}", output.replica, output.cursor);
    let (_, body) = get(&app, operator, &after).await;
    let again = logs(&body);
    assert_eq!(again[0].text, "");
    assert_eq!(again[0].cursor, output.cursor);
    let (status, body) = get(&app, operator, &format!("{path}?replica=nope")).await;
    assert_eq!(status, 404);
    let error: ErrorBody = serde_json::from_slice(&body).unwrap();
    assert_eq!(error.code, "deploy.unknown_replica");
    let (status, body) = get(
        &app,
        operator,
        "/api/v1/environments/staging/services/nope/logs",
    )
    .await;
    assert_eq!(status, 404);
    let error: ErrorBody = serde_json::from_slice(&body).unwrap();
    assert_eq!(error.code, "deploy.unknown_service");
    // Since a time after the last write: the log is skipped.
    let later = gantry_clock::now_ms() + 60_000;
    let (_, body) = get(&app, operator, &format!("{path}?since_ms={later}")).await;
    assert_eq!(logs(&body)[0].text, "");
    // A byte limit keeps the end.
    let (_, body) = get(&app, operator, &format!("{path}?max_bytes=10")).await;
    let tail = &logs(&body)[0].text;
    assert_eq!(tail.len(), 10);
    assert!(output.text.ends_with(tail.as_str()));
    server.plane.deployer().down("staging").await.unwrap();
}
