//! The swarm runtime against a real single-node swarm and registry. Run with
//! GANTRY_TEST_SWARM=1 GANTRY_TEST_REGISTRY=1 (needs dockerd after `docker
//! swarm init`, docker-registry and a static busybox).

mod common;

use std::time::Duration;

use tokio::time::Instant;

use common::{
    INDEX, ServiceGuard, TestRegistry, client, docker, http_get, next_event_of, spec,
    swarm_tests_enabled, unique, wait_event, wait_http, wait_until, web_image,
};
use gantry_images::Digest;
use gantry_runtime::{DockerOptions, LogQuery, ReplicaEvent, ReplicaState, Runtime, SwarmRuntime};

const STARTUP: Duration = Duration::from_secs(60);

fn inspect_service(id: &str) -> serde_json::Value {
    let out = docker(&["service", "inspect", &format!("gantry-{id}")]).expect("service inspect");
    serde_json::from_str::<serde_json::Value>(&out).expect("inspect json")[0].clone()
}

/// The replica's running containers.
fn containers_of(id: &str) -> String {
    let filter = format!("label=com.docker.swarm.service.name=gantry-{id}");
    docker(&["ps", "-q", "--filter", &filter]).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_serves_on_its_host_port_with_labels_limits_env_and_logs_and_goes_on_stop() {
    if !swarm_tests_enabled(
        "a_service_serves_on_its_host_port_with_labels_limits_env_and_logs_and_goes_on_stop",
    ) {
        return;
    }
    let registry = TestRegistry::start();
    let image = web_image(&registry, &client(), "sweb").await;
    let guard = ServiceGuard {
        owner: unique("owner"),
    };
    let runtime = SwarmRuntime::new(DockerOptions::new(&guard.owner))
        .await
        .unwrap();
    assert_eq!(runtime.kind(), "swarm");
    let mut events = runtime.subscribe();
    let id = unique("web");
    let mut s = spec(&id, &image);
    s.memory = Some(64 * 1024 * 1024);
    s.cpus = Some(0.5);
    s.env = vec![
        ("GREETING".into(), "hi there".into()),
        ("API_KEY".into(), "s3cr3t-value".into()),
    ];
    s.labels.insert("team".into(), "core".into());
    let started_at = Instant::now();
    let replica = runtime.start(s.clone()).await.unwrap();
    println!("swarm start took {:?}", started_at.elapsed());
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

    let service = inspect_service(&id);
    let spec_json = &service["Spec"];
    let labels = &spec_json["Labels"];
    assert_eq!(labels["gantry.owner"], guard.owner.as_str());
    assert_eq!(labels["gantry.environment"], "staging");
    assert_eq!(labels["gantry.service"], "web");
    assert_eq!(labels["gantry.revision"], "1");
    assert_eq!(labels["gantry.replica"], id.as_str());
    assert_eq!(labels["gantry.digest"], image.digest().unwrap().as_str());
    assert_eq!(labels["gantry.host-port"], replica.addr.port().to_string());
    assert_eq!(labels["team"], "core");
    assert!(
        !labels["gantry.spec"].as_str().unwrap().contains("s3cr3t"),
        "the spec label holds no environment value"
    );
    assert_eq!(spec_json["Mode"]["Replicated"]["Replicas"], 1);
    let task = &spec_json["TaskTemplate"];
    assert_eq!(task["ContainerSpec"]["Image"], image.to_string().as_str());
    assert_eq!(task["Resources"]["Limits"]["MemoryBytes"], 64 * 1024 * 1024);
    assert_eq!(task["Resources"]["Limits"]["NanoCPUs"], 500_000_000);
    assert_eq!(task["RestartPolicy"]["Condition"], "any");
    let env: Vec<&str> = task["ContainerSpec"]["Env"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    for expected in ["PORT=8080", "GREETING=hi there", "API_KEY=s3cr3t-value"] {
        assert!(env.contains(&expected), "{expected} in {env:?}");
    }
    let port = &spec_json["EndpointSpec"]["Ports"][0];
    assert_eq!(port["PublishMode"], "host");
    assert_eq!(port["TargetPort"], 8080);
    assert_eq!(port["PublishedPort"], replica.addr.port());

    // What the replica printed, through `docker service logs`.
    let mut logs = String::new();
    let deadline = Instant::now() + STARTUP;
    while !logs.contains("GREETING=hi there") && Instant::now() < deadline {
        let query = LogQuery {
            since_ms: None,
            after: None,
            max_bytes: 1 << 20,
        };
        logs = runtime.logs(&id, query).await.unwrap().text;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(logs.contains("PORT=8080 "), "{logs}");
    assert!(logs.contains("GREETING=hi there"), "{logs}");

    assert_eq!(runtime.list().await.unwrap().len(), 1);
    runtime.stop(&id, Duration::from_secs(2)).await.unwrap();
    assert_eq!(
        next_event_of(&mut events, &id, STARTUP).await,
        ReplicaEvent::Stopped { id: id.clone() }
    );
    assert!(
        docker(&["service", "inspect", &format!("gantry-{id}")]).is_err(),
        "the service is removed"
    );
    assert_eq!(containers_of(&id).trim(), "", "its container stopped");
    let filter = format!("label=com.docker.swarm.service.name=gantry-{id}");
    wait_until("Swarm to remove its container", STARTUP, || {
        docker(&["ps", "-aq", "--filter", &filter]).is_ok_and(|out| out.trim().is_empty())
    })
    .await;
    assert!(runtime.list().await.unwrap().is_empty());
    runtime.stop(&id, Duration::from_secs(1)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashing_task_is_restarted_by_swarm_with_events() {
    if !swarm_tests_enabled("a_crashing_task_is_restarted_by_swarm_with_events") {
        return;
    }
    let registry = TestRegistry::start();
    let image = web_image(&registry, &client(), "scrash").await;
    let guard = ServiceGuard {
        owner: unique("owner"),
    };
    let runtime = SwarmRuntime::new(DockerOptions::new(&guard.owner))
        .await
        .unwrap();
    let mut events = runtime.subscribe();
    let id = unique("crash");
    let mut s = spec(&id, &image);
    s.command = Some(vec![
        "/app/busybox".into(),
        "sh".into(),
        "-c".into(),
        "sleep 1; exit 3".into(),
    ]);
    runtime.start(s).await.unwrap();

    let within = Duration::from_secs(30);
    assert_eq!(
        next_event_of(&mut events, &id, within).await,
        ReplicaEvent::Started { id: id.clone() }
    );
    for attempt in [1, 2] {
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
                delay: Duration::from_secs(1)
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
    assert!(docker(&["service", "inspect", &format!("gantry-{id}")]).is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_runtime_adopts_running_services_with_their_environment_and_watches_them() {
    if !swarm_tests_enabled(
        "a_new_runtime_adopts_running_services_with_their_environment_and_watches_them",
    ) {
        return;
    }
    let registry = TestRegistry::start();
    let image = web_image(&registry, &client(), "sadopt").await;
    let guard = ServiceGuard {
        owner: unique("owner"),
    };
    let first = SwarmRuntime::new(DockerOptions::new(&guard.owner))
        .await
        .unwrap();
    let keep_id = unique("keep");
    let mut keep_spec = spec(&keep_id, &image);
    keep_spec.env = vec![("GREETING".into(), "kept".into())];
    let keep = first.start(keep_spec.clone()).await.unwrap();
    wait_http(keep.addr, "/", STARTUP).await;
    drop(first);

    let second = SwarmRuntime::new(DockerOptions::new(&guard.owner))
        .await
        .unwrap();
    let mut events = second.subscribe();
    let listed = second.list().await.unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0].addr, keep.addr);
    assert_eq!(listed[0].state, ReplicaState::Running);
    assert_eq!(
        listed[0].spec, keep_spec,
        "the spec, environment included, is read back"
    );
    assert_eq!(wait_http(keep.addr, "/", STARTUP).await.1, INDEX);

    // Adopted services are watched too: a killed task is restarted by Swarm
    // and reported.
    let container = containers_of(&keep_id);
    let container = container
        .split_whitespace()
        .next()
        .expect("the task's container");
    docker(&["kill", container]).unwrap();
    wait_event(
        &mut events,
        STARTUP,
        |e| matches!(e, ReplicaEvent::Exited { id, .. } if id == &keep_id),
    )
    .await;
    wait_event(
        &mut events,
        STARTUP,
        |e| matches!(e, ReplicaEvent::Started { id } if id == &keep_id),
    )
    .await;
    assert_eq!(wait_http(keep.addr, "/", STARTUP).await.1, INDEX);
    second.stop(&keep_id, Duration::from_secs(2)).await.unwrap();
    wait_until("the service to go", STARTUP, || {
        docker(&["service", "inspect", &format!("gantry-{keep_id}")]).is_err()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_the_node_cannot_pull_fails_the_start_quickly_and_leaves_no_service() {
    if !swarm_tests_enabled(
        "an_image_the_node_cannot_pull_fails_the_start_quickly_and_leaves_no_service",
    ) {
        return;
    }
    let registry = TestRegistry::start();
    let guard = ServiceGuard {
        owner: unique("owner"),
    };
    let runtime = SwarmRuntime::new(DockerOptions::new(&guard.owner))
        .await
        .unwrap();
    let missing = common::ImageName::image(&registry, "gantry-test/missing")
        .with_digest(&Digest::of(b"no such image"));
    let id = unique("m");
    let began = Instant::now();
    let error = runtime.start(spec(&id, &missing)).await.unwrap_err();
    println!("failed after {:?}: {error}", began.elapsed());
    assert!(
        began.elapsed() < Duration::from_secs(30),
        "{:?}",
        began.elapsed()
    );
    assert_eq!(error.code(), "image_pull", "{error}");
    assert!(error.to_string().contains(&missing.to_string()), "{error}");
    assert!(runtime.list().await.unwrap().is_empty());
    assert!(
        docker(&["service", "inspect", &format!("gantry-{id}")]).is_err(),
        "nothing is left half-created"
    );
}

/// Needs no swarm: a docker CLI that says the engine is not in a swarm.
#[tokio::test]
async fn an_engine_not_in_a_swarm_fails_start_naming_docker_swarm_init() {
    let dir = tempfile::tempdir().unwrap();
    let program = dir.path().join("docker");
    std::fs::write(
        &program,
        "#!/bin/sh\necho '{\"NodeID\":\"\",\"LocalNodeState\":\"inactive\",\"ControlAvailable\":false}'\n",
    )
    .unwrap();
    std::fs::set_permissions(
        &program,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let mut options = DockerOptions::new("nobody");
    options.program = program;
    let runtime = SwarmRuntime::new(options).await.unwrap();
    let image = gantry_images::Reference::parse("127.0.0.1:1/x")
        .unwrap()
        .with_digest(&Digest::of(b"x"));
    let error = runtime.start(spec("x", &image)).await.unwrap_err();
    assert_eq!(error.code(), "docker_unavailable");
    assert!(error.to_string().contains("docker swarm init"), "{error}");
    assert!(error.to_string().contains("inactive"), "{error}");
    assert!(runtime.list().await.unwrap().is_empty());
}
