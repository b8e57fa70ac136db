//! The database goes away under a running server (issue 14): changes are
//! refused with `store.unavailable` (503) while it is gone, the events of
//! actions that end meanwhile wait in order and none is lost, and when it
//! returns the server carries on by itself: the execution finishes and
//! changes are taken again.
//!
//! Runs against a PostgreSQL cluster of the test's own, which it stops
//! and starts; skipped unless GANTRY_TEST_POSTGRES says PostgreSQL is
//! installed (scripts/postgres).

use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use gantry_api::ErrorBody;
use gantry_engine::{ActionStatus, ExecutionStatus};
use gantry_server::ControlPlane;
use gantry_server::guard::HostPolicy;
use tower::ServiceExt;

const PIPELINE: &str = "version: 1
name: outage
stages:
  - name: First
    actions:
      - {name: slow, type: shell, commands: ['sleep 3', 'echo slept']}
  - name: Second
    actions:
      - {name: after, type: shell, commands: ['echo after']}
";

async fn start(app: &axum::Router, token: &str) -> (StatusCode, Vec<u8>) {
    let body = serde_json::json!({"file": "gantry.yaml", "text": PIPELINE});
    let request = Request::builder()
        .method("POST")
        .uri("/api/v1/executions")
        .header("host", "127.0.0.1")
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    (status, bytes.to_vec())
}

async fn wait_for(what: &str, mut done: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !done().await {
        assert!(tokio::time::Instant::now() < deadline, "{what} never came");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_are_refused_while_the_database_is_gone_and_nothing_is_lost() {
    if gantry_testkit::database::postgres_url().is_none() {
        println!("skipped: set GANTRY_TEST_POSTGRES (scripts/postgres) to run it");
        return;
    }
    let cluster = gantry_testkit::database::Cluster::start();
    let dir = tempfile::tempdir().unwrap();
    let plane = ControlPlane::open_in(
        &dir.path().join("data"),
        Some(&cluster.url()),
        gantry_server::actions::Runners::standard(),
    )
    .await
    .unwrap();
    let now = gantry_clock::now_ms();
    plane
        .auth()
        .add_user("ops", None, vec!["operator".parse().unwrap()], now)
        .await
        .unwrap();
    let token = plane
        .auth()
        .create_token("ops", None, None, now)
        .await
        .unwrap()
        .secret
        .expose()
        .to_string();
    let app = gantry_server::api::router(plane.clone(), HostPolicy::default());
    let (status, body) = start(&app, &token).await;
    assert_eq!(
        status,
        StatusCode::CREATED,
        "{}",
        String::from_utf8_lossy(&body)
    );
    let id = serde_json::from_slice::<serde_json::Value>(&body).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    wait_for("the slow action", async || {
        let (e, _) = plane.execution(&id).await.unwrap();
        e.stages[0].actions[0].status == Some(ActionStatus::InProgress)
    })
    .await;

    cluster.stop();
    // A change while it is gone: refused with the stable code, at once
    // or after a failed write marks the store unreachable.
    let (status, body) = start(&app, &token).await;
    assert_eq!(
        status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        String::from_utf8_lossy(&body)
    );
    let error: ErrorBody = serde_json::from_slice(&body).unwrap();
    assert_eq!(error.code, "store.unavailable");
    // The slow action ends while the database is away; its event waits.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let (status, _) = start(&app, &token).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);

    cluster.resume();
    wait_for("the execution's end", async || {
        let (e, _) = plane.execution(&id).await.unwrap();
        e.status == ExecutionStatus::Succeeded
    })
    .await;
    wait_for("changes taken again", async || {
        start(&app, &token).await.0 == StatusCode::CREATED
    })
    .await;
    // Everything reached the database, in order: a store opened afresh
    // reads the execution as succeeded.
    let fresh = gantry_store::Store::connect(gantry_db::Db::connect(&cluster.url()).await.unwrap())
        .await
        .unwrap();
    wait_for("the stored state", async || {
        fresh
            .execution(&id)
            .await
            .unwrap()
            .is_some_and(|row| row.status == "Succeeded")
    })
    .await;
    plane.disarm_triggers();
}
