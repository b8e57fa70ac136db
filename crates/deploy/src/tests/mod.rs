//! The deployer's rules, tested without processes or sockets: a fake
//! runtime and fake target groups (`fake.rs`) on tokio's paused clock, so a
//! rollout that takes minutes of health checks runs in milliseconds.
//!
//! Health comes from the fake target groups (the deployer sees health
//! through `traffic::Targets`), not from HTTP servers: the tests decide
//! when a replica turns healthy, unhealthy or exits, and the deployer code
//! is the production code.

mod fake;
mod kubernetes;
mod shift;

use std::sync::Arc;
use std::time::Duration;

use gantry_params::{MasterKey, ParamStore};
use gantry_runtime::Runtime;
use gantry_store::Store;

use self::fake::{Cluster, FakeImages, FakeLoadBalancers, FakeRuntime, Plan, Step};
use crate::{DeployError, DeployLog, Deployer, Runtimes};

pub(crate) const IMAGE_1: &str = "127.0.0.1:5000/web:v1";
pub(crate) const IMAGE_2: &str = "127.0.0.1:5000/web:v2";

/// A project with one environment and one service, `web`, whose
/// `deployment:` settings are `deployment`.
fn project(replicas: u32, deployment: &str) -> Vec<(String, String)> {
    let text = format!(
        r#"
version: 1
environments:
  staging:
    runtime: process
    load_balancer:
      listen: 127.0.0.1:18080
      rules:
        - {{priority: 10, path: "/*", service: web}}
services:
  web:
    replicas: {replicas}
    health_check: {{path: /health, interval: 2s, timeout: 1s, healthy_threshold: 2, unhealthy_threshold: 2, grace_period: 0s}}
    deployment: {deployment}
"#
    );
    vec![("gantry.yaml".to_owned(), text)]
}

struct Quiet;

impl DeployLog for Quiet {
    fn line(&self, _line: &str) {}
}

/// A deployer on `store` whose only runtime (`process`) is the cluster's.
async fn open(cluster: &Arc<Cluster>, store: &Store) -> Deployer {
    let params = ParamStore::open(store.db().clone(), MasterKey::from_bytes([7; 32]))
        .await
        .unwrap();
    let mut runtimes = Runtimes::new();
    runtimes.insert(
        "process",
        Arc::new(FakeRuntime(cluster.clone())) as Arc<dyn Runtime>,
    );
    Deployer::open_with(
        store.clone(),
        Arc::new(params),
        Arc::new(FakeImages),
        Arc::new(FakeLoadBalancers(cluster.clone())),
        runtimes,
        None,
        Arc::new(crate::kubernetes::KubeconfigConnector),
    )
    .await
    .unwrap()
}

/// The database answers from its own thread. On a paused clock an idle
/// runtime jumps to its next timer, which during a query could be sqlx's
/// 30 s acquire timeout; a 1 ms tick keeps every jump that small, so the
/// clock still runs a minute of checks in a blink.
fn tick() {
    tokio::spawn(async {
        loop {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    });
}

/// A store on the backend the run chose (SQLite, or PostgreSQL with
/// GANTRY_TEST_POSTGRES).
pub(crate) async fn test_store() -> Store {
    Store::connect(gantry_testkit::database::database().await)
        .await
        .unwrap()
}

/// A cluster, a store and a deployer with `project` applied.
async fn setup(project: Vec<(String, String)>) -> (Arc<Cluster>, Store, Deployer) {
    tick();
    let cluster = Cluster::new();
    let store = crate::tests::test_store().await;
    let deployer = open(&cluster, &store).await;
    deployer.apply(project).await.unwrap();
    (cluster, store, deployer)
}

async fn deploy(deployer: &Deployer, image: &str) -> Result<crate::DeployOutcome, DeployError> {
    deployer
        .deploy("staging", "web", image, "test", &Quiet)
        .await
}

/// The first index of a step matching `f`.
fn first(steps: &[Step], f: impl Fn(&Step) -> bool) -> usize {
    steps.iter().position(f).expect("no such step")
}

#[tokio::test(start_paused = true)]
async fn rolling_deploy_starts_within_max_percent_and_keeps_min_healthy_percent() {
    // 4 replicas, 50%..150%: at least 2 serve, at most 6 run.
    let deployment = "{min_healthy_percent: 50, max_percent: 150, drain: 1s}";
    let (cluster, _store, deployer) = setup(project(4, deployment)).await;
    deploy(&deployer, IMAGE_1).await.unwrap();
    cluster.reset_marks();

    let outcome = deploy(&deployer, IMAGE_2).await.unwrap();

    assert_eq!(outcome.revision, 2);
    let world = cluster.world();
    assert!(world.max_running <= 6, "{} ran at once", world.max_running);
    assert!(world.min_serving["web"] >= 2, "{:?}", world.min_serving);
    assert_eq!(world.running(1), Vec::<String>::new());
    assert_eq!(world.running(2).len(), 4);
    let mut serving = world.serving("web");
    serving.sort();
    assert_eq!(serving, world.running(2));
    // No old replica left before a new one was healthy.
    let healthy = first(&world.steps, |s| matches!(s, Step::Healthy(_)));
    let left = first(&world.steps, |s| matches!(s, Step::Deregistered(_)));
    assert!(healthy < left, "{:?}", world.steps);
}

#[tokio::test(start_paused = true)]
async fn without_room_to_surge_an_old_replica_stops_first_within_min_healthy() {
    // 2 replicas, 50%..100%: no room for a new one until an old one goes.
    let deployment = "{min_healthy_percent: 50, max_percent: 100, drain: 1s}";
    let (cluster, _store, deployer) = setup(project(2, deployment)).await;
    deploy(&deployer, IMAGE_1).await.unwrap();
    cluster.reset_marks();

    deploy(&deployer, IMAGE_2).await.unwrap();

    let world = cluster.world();
    assert!(world.max_running <= 2, "{} ran at once", world.max_running);
    assert!(world.min_serving["web"] >= 1, "{:?}", world.min_serving);
    assert!(
        matches!(world.steps[0], Step::Deregistered(_)),
        "{:?}",
        world.steps
    );
    assert_eq!(world.running(2).len(), 2);
}

#[tokio::test(start_paused = true)]
async fn replicas_that_exit_trip_the_breaker_and_the_old_revision_keeps_serving() {
    let deployment = "{min_healthy_percent: 100, max_percent: 200, drain: 1s, circuit_breaker: {threshold: 2, rollback: true}}";
    let (cluster, _store, deployer) = setup(project(2, deployment)).await;
    deploy(&deployer, IMAGE_1).await.unwrap();
    let old = cluster.world().running(1);
    cluster.plan(2, Plan::Exits(Duration::from_millis(300)));
    cluster.reset_marks();

    let error = deploy(&deployer, IMAGE_2).await.unwrap_err();

    let DeployError::CircuitBreaker {
        revision,
        failures,
        rolled_back_to,
        ..
    } = &error
    else {
        panic!("{error}");
    };
    assert_eq!((*revision, *failures), (2, 2));
    assert_eq!(*rolled_back_to, Some(1), "revision 1 serves again");
    {
        let world = cluster.world();
        assert_eq!(world.running(2), Vec::<String>::new());
        assert_eq!(world.running(1), old);
        assert_eq!(world.min_serving["web"], 2, "the old replicas never left");
    }
    let status = deployer.environment_status("staging").await.unwrap();
    let web = &status.services[0];
    assert_eq!(web.revision, Some(1));
    assert_eq!(web.deployments[0].status, "RolledBack");
    assert!(web.replicas.iter().all(|r| r.revision == 1));
}

#[tokio::test(start_paused = true)]
async fn replicas_that_fail_health_checks_trip_the_breaker_too() {
    let deployment = "{min_healthy_percent: 100, max_percent: 200, drain: 1s, circuit_breaker: {threshold: 2, rollback: false}}";
    let (cluster, _store, deployer) = setup(project(2, deployment)).await;
    deploy(&deployer, IMAGE_1).await.unwrap();
    cluster.plan(2, Plan::Unhealthy(Duration::from_secs(5)));

    let error = deploy(&deployer, IMAGE_2).await.unwrap_err();

    assert_eq!(error.code(), "deploy.circuit_breaker", "{error}");
    assert!(error.to_string().contains("rollback is off"), "{error}");
    let status = deployer.environment_status("staging").await.unwrap();
    assert_eq!(status.services[0].deployments[0].status, "Failed");
    assert_eq!(cluster.world().running(1).len(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_replica_that_never_turns_healthy_fails_at_its_start_timeout() {
    let deployment = "{min_healthy_percent: 100, max_percent: 200, drain: 1s, circuit_breaker: {threshold: 1, rollback: true}}";
    let (cluster, _store, deployer) = setup(project(1, deployment)).await;
    cluster.plan(1, Plan::Manual);
    let started = tokio::time::Instant::now();

    let error = deploy(&deployer, IMAGE_1).await.unwrap_err();

    // grace 0 + interval 2 s × (2 + 2) checks + timeout 1 s + 10 s.
    assert!(
        started.elapsed() >= Duration::from_secs(19),
        "{:?}",
        started.elapsed()
    );
    assert!(
        error.to_string().contains("did not become healthy"),
        "{error}"
    );
    assert!(error.to_string().contains("first deployment"), "{error}");
    assert_eq!(cluster.world().running_count(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_tripped_breaker_restores_old_replicas_the_rollout_had_stopped() {
    // 50%..100%: the rollout stops an old replica before it starts a new one.
    let deployment = "{min_healthy_percent: 50, max_percent: 100, drain: 1s, circuit_breaker: {threshold: 1, rollback: true}}";
    let (cluster, _store, deployer) = setup(project(2, deployment)).await;
    deploy(&deployer, IMAGE_1).await.unwrap();
    cluster.plan(2, Plan::Exits(Duration::from_millis(100)));
    cluster.reset_marks();

    let error = deploy(&deployer, IMAGE_2).await.unwrap_err();

    assert!(
        error
            .to_string()
            .contains("rolled back: revision 1 keeps serving with 2"),
        "{error}"
    );
    let world = cluster.world();
    assert_eq!(world.running(1).len(), 2);
    assert_eq!(world.serving("web").len(), 2);
    assert!(world.min_serving["web"] >= 1);
}

#[tokio::test(start_paused = true)]
async fn rollback_runs_the_previous_revision_again_as_a_new_one() {
    let deployment = "{min_healthy_percent: 100, max_percent: 200, drain: 1s}";
    let (cluster, _store, deployer) = setup(project(2, deployment)).await;
    let first = deploy(&deployer, IMAGE_1).await.unwrap();
    deploy(&deployer, IMAGE_2).await.unwrap();

    let back = deployer
        .rollback("staging", "web", None, &Quiet)
        .await
        .unwrap();

    assert_eq!(back.revision, 3);
    assert_eq!(back.image, first.image);
    {
        let world = cluster.world();
        assert_eq!(world.running(3).len(), 2);
        assert_eq!(world.running_count(), 2);
    }
    let status = deployer.environment_status("staging").await.unwrap();
    assert_eq!(
        status.services[0].image.as_deref(),
        Some(first.image.as_str())
    );
    // Every revision's image, each once: what the registry's garbage
    // collection keeps.
    let images = deployer.revision_images().await.unwrap();
    assert_eq!(images.len(), 2, "{images:?}");
    assert!(images.contains(&first.image), "{images:?}");
    assert!(images.iter().all(|i| i.contains("@sha256:")), "{images:?}");
}

#[tokio::test(start_paused = true)]
async fn rollback_without_an_earlier_revision_is_refused() {
    let (_cluster, _store, deployer) = setup(project(1, "{drain: 1s}")).await;
    deploy(&deployer, IMAGE_1).await.unwrap();

    let error = deployer
        .rollback("staging", "web", None, &Quiet)
        .await
        .unwrap_err();

    assert_eq!(error.code(), "deploy.nothing_to_roll_back_to");
}

#[tokio::test(start_paused = true)]
async fn blue_green_switches_traffic_only_once_every_green_replica_is_healthy() {
    let deployment = "{strategy: blue_green, drain: 1s}";
    let (cluster, _store, deployer) = setup(project(3, deployment)).await;
    deploy(&deployer, IMAGE_1).await.unwrap();
    let blue = cluster.world().running(1);
    cluster.plan(2, Plan::Manual);
    cluster.reset_marks();

    let rollout = tokio::spawn({
        let deployer = deployer.clone();
        async move { deploy(&deployer, IMAGE_2).await }
    });
    cluster
        .wait_until("3 green replicas started", |w| w.running(2).len() == 3)
        .await;
    let green = cluster.world().running(2);
    // Healthy one by one: blue keeps every request until the last is.
    for id in &green {
        assert_eq!(cluster.world().serving("web").len(), 3);
        cluster.set_healthy(id);
    }
    rollout.await.unwrap().unwrap();

    let world = cluster.world();
    let steps = &world.steps;
    for id in &green {
        assert!(
            steps.contains(&Step::Registered(id.clone(), 0)),
            "{steps:?}"
        );
    }
    let last_healthy = steps
        .iter()
        .rposition(|s| matches!(s, Step::Healthy(_)))
        .unwrap();
    let first_switch = first(steps, |s| matches!(s, Step::Weighted(_, 1)));
    let last_switch = steps
        .iter()
        .rposition(|s| matches!(s, Step::Weighted(_, 1)))
        .unwrap();
    let first_blue_leaves = first(
        steps,
        |s| matches!(s, Step::Deregistered(id) if blue.contains(id)),
    );
    assert!(last_healthy < first_switch, "{steps:?}");
    assert!(last_switch < first_blue_leaves, "{steps:?}");
    // Blue leaves all at once: every blue replica is out of the group
    // before the first one stops.
    let last_blue_leaves = steps
        .iter()
        .rposition(|s| matches!(s, Step::Deregistered(id) if blue.contains(id)))
        .unwrap();
    let first_blue_stops = first(
        steps,
        |s| matches!(s, Step::Stopped(id) if blue.contains(id)),
    );
    assert!(last_blue_leaves < first_blue_stops, "{steps:?}");
    assert_eq!(world.min_serving["web"], 3, "traffic never dropped below 3");
    assert_eq!(world.running(1), Vec::<String>::new());
}

#[tokio::test(start_paused = true)]
async fn blue_green_with_a_failing_green_set_leaves_blue_untouched() {
    let deployment =
        "{strategy: blue_green, drain: 1s, circuit_breaker: {threshold: 2, rollback: true}}";
    let (cluster, _store, deployer) = setup(project(2, deployment)).await;
    deploy(&deployer, IMAGE_1).await.unwrap();
    let blue = cluster.world().running(1);
    cluster.plan(2, Plan::Exits(Duration::from_millis(200)));
    cluster.reset_marks();

    let error = deploy(&deployer, IMAGE_2).await.unwrap_err();

    assert_eq!(error.code(), "deploy.circuit_breaker");
    let world = cluster.world();
    assert_eq!(world.running(1), blue);
    assert_eq!(world.running(2), Vec::<String>::new());
    assert!(!world.steps.iter().any(|s| matches!(s, Step::Weighted(..))));
    assert_eq!(world.min_serving["web"], 2);
}

#[tokio::test(start_paused = true)]
async fn a_new_server_readopts_running_replicas_stops_strays_and_restores_missing_ones() {
    let (cluster, store, deployer) = setup(project(3, "{drain: 1s}")).await;
    deploy(&deployer, IMAGE_1).await.unwrap();
    deployer.shutdown().await;
    let running = cluster.world().running(1);
    // While no server runs: one replica dies, and a replica of an
    // interrupted deployment (revision 7) is left behind.
    cluster.vanish(&running[0]);
    let mut stray = cluster
        .world()
        .replica_spec(&running[1])
        .expect("a replica to copy");
    stray.id = "staging-web-r7-1-stray0".into();
    stray.revision = 7;
    cluster.adopt(stray);
    cluster.reset_marks();

    let deployer = open(&cluster, &store).await;

    cluster
        .wait_until("3 replicas of revision 1 serve", |w| {
            w.running(1).len() == 3 && w.serving("web").len() == 3
        })
        .await;
    {
        let world = cluster.world();
        assert!(
            world
                .steps
                .contains(&Step::Stopped("staging-web-r7-1-stray0".into()))
        );
        let starts = world
            .steps
            .iter()
            .filter(|s| matches!(s, Step::Started(_)))
            .count();
        assert_eq!(
            starts, 1,
            "only the missing replica starts: {:?}",
            world.steps
        );
        for id in &running[1..] {
            assert!(
                world.steps.contains(&Step::Registered(id.clone(), 1)),
                "{id} re-registered"
            );
            assert!(world.running(1).contains(id), "{id} kept");
        }
    }
    // The restored replica joins the deployer's list once healthy.
    let mut tracked = 0;
    for _ in 0..6000 {
        let status = deployer.environment_status("staging").await.unwrap();
        assert_eq!(status.services[0].revision, Some(1));
        tracked = status.services[0].replicas.len();
        if tracked == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(tracked, 3);
}

#[tokio::test(start_paused = true)]
async fn deploying_what_already_runs_starts_nothing() {
    let (cluster, _store, deployer) = setup(project(2, "{drain: 1s}")).await;
    let first = deploy(&deployer, IMAGE_1).await.unwrap();
    cluster.reset_marks();

    let again = deploy(&deployer, IMAGE_1).await.unwrap();

    assert_eq!(again.revision, first.revision);
    assert_eq!(cluster.world().steps, Vec::<Step>::new());
}

#[tokio::test(start_paused = true)]
async fn status_names_the_execution_rules_and_traffic_and_revisions_compare_field_by_field() {
    let deployment = "{min_healthy_percent: 100, max_percent: 200, drain: 1s}";
    let (_cluster, _store, deployer) = setup(project(2, deployment)).await;
    let cause = crate::Cause {
        text: "deploy action Deploy/web of execution e-1".into(),
        execution: Some("e-1".into()),
    };
    deployer
        .deploy("staging", "web", IMAGE_1, cause, &Quiet)
        .await
        .unwrap();
    deploy(&deployer, IMAGE_2).await.unwrap();

    let status = deployer.environment_status("staging").await.unwrap();
    assert_eq!(status.rules.len(), 1);
    assert_eq!(
        (status.rules[0].priority, status.rules[0].path.as_str()),
        (10, "/*")
    );
    let web = &status.services[0];
    assert_eq!(web.cause.as_deref(), Some("test"));
    assert_eq!(web.execution, None, "a person deployed revision 2");
    assert_eq!(
        web.traffic,
        vec![gantry_api::TrafficShare {
            percent: 100,
            revision: 2,
            weight: 2
        }]
    );
    assert!(web.replicas.iter().all(|r| r.weight == Some(1)));

    let one = deployer.revision_detail("staging", "web", 1).await.unwrap();
    let two = deployer.revision_detail("staging", "web", 2).await.unwrap();
    assert_eq!(one.execution.as_deref(), Some("e-1"));
    assert_eq!(one.cause, "deploy action Deploy/web of execution e-1");
    assert_eq!(one.fields["replicas"], "2");
    assert_eq!(one.fields["health_path"], "/health");
    let changed: Vec<&String> = one
        .fields
        .keys()
        .filter(|k| one.fields.get(*k) != two.fields.get(*k))
        .collect();
    assert_eq!(changed, ["image"], "only the image differs");
    assert!(!one.fields.contains_key("number") && !one.fields.contains_key("cause"));

    // A rollback returns to revision 1: its execution made what runs.
    deployer
        .rollback("staging", "web", Some(1), &Quiet)
        .await
        .unwrap();
    let web = deployer
        .environment_status("staging")
        .await
        .unwrap()
        .services[0]
        .clone();
    assert_eq!(web.execution.as_deref(), Some("e-1"));
    assert_eq!(web.cause.as_deref(), Some("rollback to revision 1"));

    assert!(matches!(
        deployer.revision_detail("staging", "web", 9).await,
        Err(DeployError::UnknownRevision { revision: 9, .. })
    ));
    assert!(matches!(
        deployer.revision_detail("staging", "nope", 1).await,
        Err(DeployError::UnknownService { .. })
    ));
}

#[tokio::test(start_paused = true)]
async fn a_kubernetes_environment_applies_without_a_runtime_of_the_server() {
    tick();
    let cluster = Cluster::new();
    let store = crate::tests::test_store().await;
    let deployer = open(&cluster, &store).await;
    let mut files = project(1, "{}");
    files[0].1 = files[0]
        .1
        .replace("runtime: process", "runtime: kubernetes");
    let summary = deployer.apply(files).await.unwrap();
    // Its cluster runs the pods (tests/kubernetes.rs deploys to one).
    assert!(
        summary
            .iter()
            .any(|l| l.contains("runtime kubernetes") && !l.contains("not available")),
        "{summary:?}"
    );
}
