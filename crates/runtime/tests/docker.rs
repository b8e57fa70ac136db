//! The docker runtime against a real Docker Engine and registry. Run with
//! GANTRY_TEST_DOCKER=1 GANTRY_TEST_REGISTRY=1 (needs dockerd, docker-registry
//! and a static busybox).

mod common;

use std::time::Duration;

use common::{
    ContainerGuard, INDEX, ImageName, TestRegistry, client, docker, docker_tests_enabled, http_get,
    next_event_of, spec, unique, wait_event, wait_http, wait_until, web_image,
};
use gantry_images::Digest;
use gantry_runtime::{DockerOptions, DockerRuntime, ReplicaEvent, ReplicaState, Runtime};

const STARTUP: Duration = Duration::from_secs(60);

fn inspect(id: &str) -> serde_json::Value {
    let out = docker(&["inspect", &format!("gantry-{id}")]).expect("docker inspect");
    serde_json::from_str::<serde_json::Value>(&out).expect("inspect json")[0].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_container_serves_on_loopback_with_labels_limits_and_is_removed_on_stop() {
    if !docker_tests_enabled(
        "a_container_serves_on_loopback_with_labels_limits_and_is_removed_on_stop",
    ) {
        return;
    }
    let registry = TestRegistry::start();
    let image = web_image(&registry, &client(), "dweb").await;
    let guard = ContainerGuard {
        owner: unique("owner"),
    };
    let runtime = DockerRuntime::new(DockerOptions::new(&guard.owner))
        .await
        .unwrap();
    let mut events = runtime.subscribe();
    let id = unique("web");
    let mut s = spec(&id, &image);
    s.memory = Some(64 * 1024 * 1024);
    s.cpus = Some(0.5);
    s.env = vec![("GREETING".into(), "hi there".into())];
    s.labels.insert("team".into(), "core".into());
    let replica = runtime.start(s).await.unwrap();
    assert_eq!(replica.state, ReplicaState::Running);
    assert!(replica.addr.ip().is_loopback());
    assert_eq!(
        next_event_of(&mut events, &id, STARTUP).await,
        ReplicaEvent::Started { id: id.clone() }
    );
    assert_eq!(
        wait_http(replica.addr, "/", STARTUP).await,
        (200, INDEX.to_owned())
    );
    assert_eq!(
        http_get(replica.addr, "/health").await.map(|a| a.0),
        Some(200)
    );

    let container = inspect(&id);
    let labels = &container["Config"]["Labels"];
    assert_eq!(labels["gantry.environment"], "staging");
    assert_eq!(labels["gantry.service"], "web");
    assert_eq!(labels["gantry.revision"], "1");
    assert_eq!(labels["gantry.replica"], id.as_str());
    assert_eq!(labels["gantry.digest"], image.digest().unwrap().as_str());
    assert_eq!(labels["team"], "core");
    assert_eq!(container["HostConfig"]["Memory"], 64 * 1024 * 1024);
    assert_eq!(container["HostConfig"]["NanoCpus"], 500_000_000);
    let env: Vec<&str> = container["Config"]["Env"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    assert!(env.contains(&"PORT=8080"), "{env:?}");
    assert!(env.contains(&"GREETING=hi there"), "{env:?}");
    let bindings = &container["HostConfig"]["PortBindings"]["8080/tcp"][0];
    assert_eq!(bindings["HostIp"], "127.0.0.1");
    assert_eq!(bindings["HostPort"], replica.addr.port().to_string());

    runtime.stop(&id, Duration::from_secs(2)).await.unwrap();
    assert_eq!(
        next_event_of(&mut events, &id, STARTUP).await,
        ReplicaEvent::Stopped { id: id.clone() }
    );
    assert!(
        docker(&["inspect", &format!("gantry-{id}")]).is_err(),
        "the container is removed"
    );
    assert!(runtime.list().await.unwrap().is_empty());
    runtime.stop(&id, Duration::from_secs(1)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashing_container_is_restarted_with_events() {
    if !docker_tests_enabled("a_crashing_container_is_restarted_with_events") {
        return;
    }
    let registry = TestRegistry::start();
    let image = web_image(&registry, &client(), "dcrash").await;
    let guard = ContainerGuard {
        owner: unique("owner"),
    };
    let runtime = DockerRuntime::new(DockerOptions::new(&guard.owner))
        .await
        .unwrap();
    let mut events = runtime.subscribe();
    let id = unique("crash");
    let mut s = spec(&id, &image);
    s.command = Some(vec![
        "/app/busybox".into(),
        "sh".into(),
        "-c".into(),
        "exit 3".into(),
    ]);
    runtime.start(s).await.unwrap();

    let within = Duration::from_secs(20);
    assert_eq!(
        next_event_of(&mut events, &id, within).await,
        ReplicaEvent::Started { id: id.clone() }
    );
    for (attempt, secs) in [(1, 1), (2, 2)] {
        assert_eq!(
            next_event_of(&mut events, &id, within).await,
            ReplicaEvent::Exited {
                id: id.clone(),
                code: Some(3),
                signal: None
            }
        );
        assert_eq!(
            next_event_of(&mut events, &id, within).await,
            ReplicaEvent::Restarting {
                id: id.clone(),
                attempt,
                delay: Duration::from_secs(secs)
            }
        );
        assert_eq!(
            next_event_of(&mut events, &id, within).await,
            ReplicaEvent::Started { id: id.clone() }
        );
    }
    assert!(runtime.list().await.unwrap()[0].restarts >= 2);
    runtime.stop(&id, Duration::from_secs(1)).await.unwrap();
    wait_event(&mut events, within, |e| {
        matches!(e, ReplicaEvent::Stopped { .. })
    })
    .await;
    assert!(docker(&["inspect", &format!("gantry-{id}")]).is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_runtime_adopts_running_containers_and_removes_dead_ones() {
    if !docker_tests_enabled("a_new_runtime_adopts_running_containers_and_removes_dead_ones") {
        return;
    }
    let registry = TestRegistry::start();
    let image = web_image(&registry, &client(), "dadopt").await;
    let guard = ContainerGuard {
        owner: unique("owner"),
    };
    let first = DockerRuntime::new(DockerOptions::new(&guard.owner))
        .await
        .unwrap();
    let (keep_id, dies_id) = (unique("keep"), unique("dies"));
    let mut keep_spec = spec(&keep_id, &image);
    keep_spec.env = vec![("GREETING".into(), "kept".into())];
    let keep = first.start(keep_spec.clone()).await.unwrap();
    first.start(spec(&dies_id, &image)).await.unwrap();
    wait_http(keep.addr, "/", STARTUP).await;
    drop(first);
    docker(&["kill", &format!("gantry-{dies_id}")]).unwrap();

    let second = DockerRuntime::new(DockerOptions::new(&guard.owner))
        .await
        .unwrap();
    let mut events = second.subscribe();
    assert!(matches!(
        next_event_of(&mut events, &dies_id, STARTUP).await,
        ReplicaEvent::Exited { .. }
    ));
    let listed = second.list().await.unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0].addr, keep.addr);
    assert_eq!(listed[0].state, ReplicaState::Running);
    assert_eq!(
        listed[0].spec, keep_spec,
        "the spec, environment included, is read back"
    );
    assert!(
        docker(&["inspect", &format!("gantry-{dies_id}")]).is_err(),
        "the dead container is removed"
    );
    assert_eq!(wait_http(keep.addr, "/", STARTUP).await.1, INDEX);

    // Adopted containers are watched too.
    docker(&["kill", &format!("gantry-{keep_id}")]).unwrap();
    wait_event(
        &mut events,
        STARTUP,
        |e| matches!(e, ReplicaEvent::Started { id } if id == &keep_id),
    )
    .await;
    assert_eq!(wait_http(keep.addr, "/", STARTUP).await.1, INDEX);
    second.stop(&keep_id, Duration::from_secs(2)).await.unwrap();
    wait_until("the container to go", STARTUP, || {
        docker(&["inspect", &format!("gantry-{keep_id}")]).is_err()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_image_is_an_image_pull_error_naming_it() {
    if !docker_tests_enabled("a_missing_image_is_an_image_pull_error_naming_it") {
        return;
    }
    let registry = TestRegistry::start();
    let guard = ContainerGuard {
        owner: unique("owner"),
    };
    let runtime = DockerRuntime::new(DockerOptions::new(&guard.owner))
        .await
        .unwrap();
    let missing = registry
        .image("gantry-test/missing")
        .with_digest(&Digest::of(b"no such image"));
    let error = runtime
        .start(spec(&unique("m"), &missing))
        .await
        .unwrap_err();
    assert_eq!(error.code(), "image_pull", "{error}");
    assert!(error.to_string().contains(&missing.to_string()), "{error}");
    assert!(runtime.list().await.unwrap().is_empty());
}

/// Needs no docker at all: a CLI that is not there is reported as such.
#[tokio::test]
async fn a_missing_docker_cli_fails_start_with_a_clear_error() {
    let mut options = DockerOptions::new("nobody");
    options.program = "/nonexistent/docker".into();
    let runtime = DockerRuntime::new(options).await.unwrap();
    let image = gantry_images::Reference::parse("127.0.0.1:1/x")
        .unwrap()
        .with_digest(&Digest::of(b"x"));
    let error = runtime.start(spec("x", &image)).await.unwrap_err();
    assert_eq!(error.code(), "docker_unavailable");
    assert!(error.to_string().contains("/nonexistent/docker"), "{error}");
    assert!(runtime.list().await.unwrap().is_empty());
}
