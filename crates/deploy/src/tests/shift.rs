//! Progressive deployments on the fakes (paused clock): the weights each
//! step sets, pauses, promotes, aborts, analysis verdicts on the numbers
//! the fake load balancer reports, the refusal of a second deployment, and
//! a restart in the middle of a shift.

use std::sync::Mutex;
use std::time::Duration;

use gantry_proxy::WindowStats;

use super::fake::{Cluster, World};
use super::{IMAGE_1, IMAGE_2, Quiet, deploy, open, project, setup};
use crate::{DeployError, DeployLog, DeployOutcome, Deployer, ShiftCommand};

const IMAGE_3: &str = "127.0.0.1:5000/web:v3";

/// A log that keeps its lines.
#[derive(Default)]
struct Lines(Mutex<Vec<String>>);

impl DeployLog for Lines {
    fn line(&self, line: &str) {
        self.0.lock().unwrap().push(line.to_owned());
    }
}

impl Lines {
    fn text(&self) -> String {
        self.0.lock().unwrap().join("\n")
    }
}

/// Revision `revision`'s share of `web`'s traffic by its targets'
/// weights, in percent.
fn share(world: &World, revision: u64) -> u32 {
    let of = world.revision_weight("web", revision);
    let total: u32 = world.weights("web").values().sum();
    (of * 100).checked_div(total).unwrap_or(0)
}

/// Deploys revision 1 (rolling: the first deployment has nothing to shift
/// from), then starts revision 2 in the background.
async fn shifting(
    deployment: &str,
    replicas: u32,
) -> (
    std::sync::Arc<Cluster>,
    gantry_store::Store,
    Deployer,
    tokio::task::JoinHandle<Result<DeployOutcome, DeployError>>,
    std::sync::Arc<Lines>,
) {
    let (cluster, store, deployer) = setup(project(replicas, deployment)).await;
    deploy(&deployer, IMAGE_1).await.unwrap();
    cluster.reset_marks();
    let lines = std::sync::Arc::new(Lines::default());
    let task = tokio::spawn({
        let deployer = deployer.clone();
        let lines = lines.clone();
        async move {
            deployer
                .deploy("staging", "web", IMAGE_2, "test", &*lines)
                .await
        }
    });
    (cluster, store, deployer, task, lines)
}

async fn wait_share(cluster: &Cluster, percent: u32) {
    cluster
        .wait_until(&format!("revision 2 takes {percent}%"), |w| {
            !w.running(2).is_empty() && share(w, 2) == percent
        })
        .await;
}

/// Waits (on the paused clock) until the log says `text`.
async fn logged(lines: &Lines, text: &str) {
    for _ in 0..36_000 {
        if lines.text().contains(text) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the log never said {text:?}: {}", lines.text());
}

async fn control(deployer: &Deployer, command: ShiftCommand) -> crate::ShiftProgress {
    deployer
        .control_shift("staging", "web", command)
        .await
        .unwrap()
}

async fn last_deployment(deployer: &Deployer) -> crate::store::DeploymentRecord {
    deployer
        .inner
        .db
        .deployments("staging", "web", 1)
        .await
        .unwrap()
        .remove(0)
}

#[tokio::test(start_paused = true)]
async fn a_canary_holds_its_share_for_its_interval_then_takes_everything() {
    let deployment = "{strategy: canary, canary: {percent: 10, interval: 30s}, drain: 1s}";
    let (cluster, _store, _deployer, task, lines) = shifting(deployment, 2).await;

    wait_share(&cluster, 10).await;
    let at_ten = tokio::time::Instant::now();
    {
        let world = cluster.world();
        // Two stable replicas at 9, two new ones at 1: 2 parts in 20.
        let weights = world.weights("web");
        for id in world.running(1) {
            assert_eq!(weights[&id], 9, "{weights:?}");
        }
        for id in world.running(2) {
            assert_eq!(weights[&id], 1, "{weights:?}");
        }
        assert_eq!(
            world.canary_routes["web"],
            Some(("X-Gantry-Canary".to_owned(), "2".to_owned())),
            "the header reaches the new revision"
        );
        assert_eq!(
            world.min_serving["web"], 2,
            "the stable replicas never left"
        );
    }
    let outcome = task.await.unwrap().unwrap();

    assert!(at_ten.elapsed() >= Duration::from_secs(30), "held 30 s");
    assert_eq!(outcome.revision, 2);
    let world = cluster.world();
    assert_eq!(world.running(1), Vec::<String>::new());
    assert_eq!(share(&world, 2), 100);
    assert!(world.weights("web").values().all(|w| *w == 1));
    assert_eq!(
        world.canary_routes["web"], None,
        "the route ends with the shift"
    );
    let log = lines.text();
    assert!(log.contains("Weight: revision 2 takes 10% (2 replica(s) at weight 1), revision 1 90% (2 at weight 9)"), "{log}");
    assert!(log.contains("Weight: revision 2 takes 100%"), "{log}");
}

#[tokio::test(start_paused = true)]
async fn linear_adds_its_percent_at_every_interval() {
    let deployment = "{strategy: linear, linear: {percent: 25, every: 10s}, drain: 1s}";
    let (cluster, _store, deployer, task, _lines) = shifting(deployment, 2).await;

    for percent in [25, 50, 75] {
        wait_share(&cluster, percent).await;
        let progress = control(&deployer, ShiftCommand::Resume).await;
        assert_eq!(progress.weight, percent);
        assert_eq!(progress.steps, 7);
    }
    task.await.unwrap().unwrap();
    assert_eq!(share(&cluster.world(), 2), 100);
}

#[tokio::test(start_paused = true)]
async fn a_manual_pause_waits_for_a_promote_and_refuses_another_deploy_meanwhile() {
    let deployment =
        "{strategy: steps, steps: [{weight: 20}, {pause: manual}, {weight: 100}], drain: 1s}";
    let (cluster, _store, deployer, task, _lines) = shifting(deployment, 2).await;
    wait_share(&cluster, 20).await;

    tokio::time::sleep(Duration::from_secs(600)).await;
    assert_eq!(
        share(&cluster.world(), 2),
        20,
        "ten minutes later, still 20%"
    );
    assert!(!task.is_finished());

    let refused = deploy(&deployer, IMAGE_3).await.unwrap_err();
    let running = last_deployment(&deployer).await;
    assert_eq!(running.status, "InProgress");
    assert!(
        matches!(refused, DeployError::ShiftInProgress { deployment, .. } if deployment == running.id),
        "{refused}"
    );
    assert_eq!(refused.code(), "deploy.shift_in_progress");
    assert!(
        refused
            .to_string()
            .contains(&format!("deployment {}", running.id))
    );
    let refused = deployer
        .rollback("staging", "web", None, &Quiet)
        .await
        .unwrap_err();
    assert_eq!(refused.code(), "deploy.shift_in_progress");

    let progress = control(&deployer, ShiftCommand::Promote { full: false }).await;
    assert_eq!((progress.step, progress.weight), (2, 20));
    task.await.unwrap().unwrap();
    assert_eq!(share(&cluster.world(), 2), 100);
    assert_eq!(last_deployment(&deployer).await.status, "Succeeded");

    // Nothing shifts now.
    let error = deployer
        .control_shift("staging", "web", ShiftCommand::Promote { full: false })
        .await
        .unwrap_err();
    assert_eq!(error.code(), "deploy.nothing_to_promote");
    assert_eq!(error.http_status(), 409);
}

#[tokio::test(start_paused = true)]
async fn promote_full_goes_to_all_the_traffic_at_once() {
    let deployment = "{strategy: linear, linear: {percent: 10, every: 1h}, drain: 1s}";
    let (cluster, _store, deployer, task, _lines) = shifting(deployment, 1).await;
    wait_share(&cluster, 10).await;
    let started = tokio::time::Instant::now();

    control(&deployer, ShiftCommand::Promote { full: true }).await;
    task.await.unwrap().unwrap();

    assert!(
        started.elapsed() < Duration::from_secs(60),
        "no hour waited"
    );
    assert_eq!(cluster.world().running(1), Vec::<String>::new());
}

#[tokio::test(start_paused = true)]
async fn an_abort_puts_the_stable_revision_back_at_once() {
    let deployment =
        "{strategy: steps, steps: [{weight: 50}, {pause: manual}, {weight: 100}], drain: 1s}";
    let (cluster, _store, deployer, task, _lines) = shifting(deployment, 2).await;
    wait_share(&cluster, 50).await;

    control(&deployer, ShiftCommand::Abort { by: "alice".into() }).await;
    let error = task.await.unwrap().unwrap_err();

    assert_eq!(error.code(), "deploy.aborted");
    assert!(error.to_string().contains("aborted by alice"), "{error}");
    {
        let world = cluster.world();
        assert_eq!(world.running(2), Vec::<String>::new());
        assert_eq!(world.running(1).len(), 2);
        assert!(world.weights("web").values().all(|w| *w == 1));
        assert_eq!(world.canary_routes["web"], None);
    }
    let record = last_deployment(&deployer).await;
    assert_eq!(record.status, "RolledBack");
    assert!(record.message.unwrap().contains("aborted by alice"));
    let status = deployer.environment_status("staging").await.unwrap();
    assert_eq!(status.services[0].revision, Some(1));
    assert_eq!(status.services[0].replicas.len(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_paused_shift_does_not_advance_its_timers() {
    let deployment = "{strategy: canary, canary: {percent: 10, interval: 30s}, drain: 1s}";
    let (cluster, _store, deployer, task, lines) = shifting(deployment, 1).await;
    wait_share(&cluster, 10).await;
    tokio::time::sleep(Duration::from_secs(10)).await;

    let progress = control(&deployer, ShiftCommand::Pause).await;
    assert!(progress.paused);
    tokio::time::sleep(Duration::from_secs(600)).await;
    assert_eq!(
        share(&cluster.world(), 2),
        10,
        "ten minutes paused: still 10%"
    );
    assert!(!task.is_finished());

    let resumed = tokio::time::Instant::now();
    let progress = control(&deployer, ShiftCommand::Resume).await;
    assert!(!progress.paused);
    task.await.unwrap().unwrap();
    let rest = resumed.elapsed();
    assert!(
        rest >= Duration::from_secs(19) && rest < Duration::from_secs(28),
        "the 20 s left of the interval (not all 30) ran after the resume ({rest:?})"
    );
    let log = lines.text();
    assert!(
        log.contains("Paused at 10%") && log.contains("Resumed at 10%"),
        "{log}"
    );
}

fn failing(requests: u64, errors: u64) -> WindowStats {
    WindowStats {
        requests,
        server_errors: errors,
        error_rate: errors as f64 / requests as f64,
        p99_latency: Some(Duration::from_millis(12)),
        ..WindowStats::default()
    }
}

const ANALYSED: &str = "{strategy: steps, steps: [{weight: 10}, {pause: 10s}, {analysis: default}, {weight: 100}], analysis: {max_error_rate: 1%, min_requests: 50, window: 20s}, drain: 1s}";

#[tokio::test(start_paused = true)]
async fn a_failing_analysis_rolls_back_with_the_numbers_it_measured() {
    let (cluster, _store, deployer, task, lines) = shifting(ANALYSED, 2).await;
    wait_share(&cluster, 10).await;
    // Measured while the canary holds 10%: 82 failures in 412 requests.
    cluster.measure("web", 2, failing(412, 82));
    cluster.measure("web", 1, failing(3700, 0));
    let measured = tokio::time::Instant::now();

    // The analysis starts after the 10 s pause and fails at its first look.
    cluster
        .wait_until("revision 1 takes everything again", |w| share(w, 1) == 100)
        .await;
    let took = measured.elapsed();
    assert!(took <= Duration::from_secs(12), "{took:?}");
    let error = task.await.unwrap().unwrap_err();
    assert_eq!(error.code(), "deploy.analysis_failed");
    let text = error.to_string();
    assert!(
        text.contains("error rate 19.9% over 412 requests > 1%"),
        "{text}"
    );
    assert!(
        text.contains("revision 1 takes all the traffic again"),
        "{text}"
    );
    {
        let world = cluster.world();
        assert_eq!(world.running(2), Vec::<String>::new());
        assert!(world.weights("web").values().all(|w| *w == 1));
        assert_eq!(
            world.min_serving["web"], 2,
            "the stable replicas never left"
        );
    }
    let record = last_deployment(&deployer).await;
    assert_eq!(record.status, "RolledBack");
    assert!(record.message.unwrap().contains("19.9% over 412 requests"));
    assert!(
        lines
            .text()
            .contains("Analysing revision 2 at 10% over a 20s window")
    );
}

#[tokio::test(start_paused = true)]
async fn an_analysis_watches_its_whole_window_and_fails_within_two_seconds_of_a_breach() {
    let (cluster, _store, _deployer, task, lines) = shifting(ANALYSED, 1).await;
    cluster.measure("web", 2, failing(100, 0));
    logged(&lines, "Analysing revision 2").await;
    tokio::time::sleep(Duration::from_secs(8)).await;
    assert!(!task.is_finished(), "clean so far");
    cluster.measure("web", 2, failing(200, 40));
    let breached = tokio::time::Instant::now();

    cluster
        .wait_until("revision 1 takes everything again", |w| share(w, 1) == 100)
        .await;
    let took = breached.elapsed();
    let error = task.await.unwrap().unwrap_err();

    assert!(
        took <= Duration::from_secs(2),
        "rolled back {took:?} after the breach"
    );
    assert!(
        error
            .to_string()
            .contains("error rate 20.0% over 200 requests > 1%"),
        "{error}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_clean_analysis_passes_at_the_end_of_its_window() {
    let (cluster, _store, _deployer, task, lines) = shifting(ANALYSED, 1).await;
    cluster.measure("web", 2, failing(400, 1));
    task.await.unwrap().unwrap();
    let log = lines.text();
    assert!(
        log.contains("Analysis of revision 2 passed: error rate 0.2% over 400 requests (limits: error rate ≤ 1%"),
        "{log}"
    );
    assert_eq!(cluster.world().running(1), Vec::<String>::new());
}

#[tokio::test(start_paused = true)]
async fn too_few_requests_leave_the_analysis_inconclusive_until_a_promote() {
    let (cluster, _store, deployer, task, lines) = shifting(ANALYSED, 1).await;
    cluster.measure("web", 2, failing(10, 0));
    logged(&lines, "inconclusive").await;
    tokio::time::sleep(Duration::from_secs(600)).await;
    assert!(!task.is_finished(), "an inconclusive analysis waits");
    assert_eq!(share(&cluster.world(), 2), 10);
    assert!(
        lines
            .text()
            .contains("10 request(s) in the window, fewer than min_requests 50"),
        "{}",
        lines.text()
    );

    control(&deployer, ShiftCommand::Promote { full: false }).await;
    task.await.unwrap().unwrap();
    assert_eq!(share(&cluster.world(), 2), 100);
}

#[tokio::test(start_paused = true)]
async fn a_new_replica_failing_its_health_checks_fails_the_shift() {
    let deployment = "{strategy: canary, canary: {percent: 10, interval: 5m}, drain: 1s}";
    let (cluster, _store, _deployer, task, _lines) = shifting(deployment, 2).await;
    wait_share(&cluster, 10).await;
    let sick = cluster.world().running(2)[0].clone();

    cluster.set_unhealthy(&sick);
    let error = task.await.unwrap().unwrap_err();

    assert_eq!(error.code(), "deploy.analysis_failed");
    assert!(
        error.to_string().contains(&format!("replica {sick}")),
        "{error}"
    );
    assert!(
        error.to_string().contains("failed its health checks"),
        "{error}"
    );
    assert_eq!(cluster.world().running(2), Vec::<String>::new());
}

#[tokio::test(start_paused = true)]
async fn blue_green_opens_a_test_listener_and_an_abort_in_the_termination_wait_switches_back() {
    let deployment = "{strategy: blue_green, blue_green: {test_listener: 127.0.0.1:18090, termination_wait: 5m}, drain: 1s}";
    let (cluster, _store, deployer, task, _lines) = shifting(deployment, 2).await;
    let test: std::net::SocketAddr = "127.0.0.1:18090".parse().unwrap();
    cluster
        .wait_until("the switch", |w| {
            w.running(2).len() == 2 && share(w, 2) == 100
        })
        .await;
    {
        let world = cluster.world();
        assert!(world.listeners.contains(&test), "{:?}", world.listeners);
        assert!(world.closed.contains(&test), "closed at the switch");
        assert_eq!(world.running(1).len(), 2, "blue waits at weight 0");
    }
    tokio::time::sleep(Duration::from_secs(60)).await;

    control(&deployer, ShiftCommand::Abort { by: "bob".into() }).await;
    let error = task.await.unwrap().unwrap_err();

    assert_eq!(error.code(), "deploy.aborted");
    let world = cluster.world();
    assert_eq!(world.running(2), Vec::<String>::new());
    assert_eq!(share(&world, 1), 100);
    assert_eq!(world.running(1).len(), 2);
}

#[tokio::test(start_paused = true)]
async fn blue_green_stops_blue_after_the_termination_wait() {
    let deployment = "{strategy: blue_green, blue_green: {termination_wait: 5m}, drain: 1s}";
    let (cluster, _store, _deployer, task, _lines) = shifting(deployment, 1).await;
    cluster
        .wait_until("the switch", |w| {
            w.running(2).len() == 1 && share(w, 2) == 100
        })
        .await;
    let switched = tokio::time::Instant::now();
    task.await.unwrap().unwrap();
    assert!(switched.elapsed() >= Duration::from_secs(300));
    assert_eq!(cluster.world().running(1), Vec::<String>::new());
}

#[tokio::test(start_paused = true)]
async fn a_restarted_server_resumes_a_shift_at_the_step_it_reached() {
    let deployment =
        "{strategy: steps, steps: [{weight: 30}, {pause: manual}, {weight: 100}], drain: 1s}";
    let (cluster, store, deployer, task, lines) = shifting(deployment, 2).await;
    wait_share(&cluster, 30).await;
    // At the pause, whose step is saved with the weight the one before set
    // (a step is saved as it begins: a restart earlier resumes at 30% by
    // running that step again, which a slower database made this test see).
    logged(&lines, "until a promote").await;
    let id = last_deployment(&deployer).await.id;
    // The server dies: its shift stops where it is, the replicas run on.
    task.abort();
    let _ = task.await;
    deployer.shutdown().await;
    cluster.forget_targets();
    cluster.reset_marks();

    let deployer = open(&cluster, &store).await;

    {
        let world = cluster.world();
        assert_eq!(world.running(2).len(), 2, "the new replicas were kept");
        assert_eq!(share(&world, 2), 30, "at the weights it had");
        assert!(
            !world
                .steps
                .iter()
                .any(|s| matches!(s, super::fake::Step::Started(_)))
        );
    }
    let refused = deploy(&deployer, IMAGE_3).await.unwrap_err();
    assert!(matches!(refused, DeployError::ShiftInProgress { deployment, .. } if deployment == id));
    let progress = control(&deployer, ShiftCommand::Promote { full: false }).await;
    assert_eq!((progress.deployment, progress.step), (id, 2));
    cluster
        .wait_until("revision 1 is gone", |w| w.running(1).is_empty())
        .await;
    // Virtual time: generous, since a networked database's round trips
    // let the paused clock run on.
    for _ in 0..6000 {
        if last_deployment(&deployer).await.status != "InProgress" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let record = last_deployment(&deployer).await;
    assert_eq!((record.id, record.status.as_str()), (id, "Succeeded"));
    let status = deployer.environment_status("staging").await.unwrap();
    assert_eq!(status.services[0].revision, Some(2));
}

#[tokio::test(start_paused = true)]
async fn a_shift_that_cannot_resume_after_a_restart_gives_the_stable_revision_everything() {
    let deployment =
        "{strategy: steps, steps: [{weight: 30}, {pause: manual}, {weight: 100}], drain: 1s}";
    let (cluster, store, deployer, task, _lines) = shifting(deployment, 2).await;
    wait_share(&cluster, 30).await;
    let id = last_deployment(&deployer).await.id;
    task.abort();
    let _ = task.await;
    deployer.shutdown().await;
    cluster.forget_targets();
    // One new replica died while no server ran.
    let dead = cluster.world().running(2)[0].clone();
    cluster.vanish(&dead);

    let deployer = open(&cluster, &store).await;

    cluster
        .wait_until("the new replicas are stopped", |w| w.running(2).is_empty())
        .await;
    {
        let world = cluster.world();
        assert_eq!(share(&world, 1), 100);
        assert_eq!(world.running(1).len(), 2);
    }
    let record = last_deployment(&deployer).await;
    assert_eq!((record.id, record.status.as_str()), (id, "Failed"));
    assert!(
        record
            .message
            .as_deref()
            .unwrap()
            .contains("could not resume it (1 of the 2 replica(s) of revision 2 still run)"),
        "{record:?}"
    );
    // Nothing shifts: a new deployment goes ahead.
    assert_eq!(
        deployer
            .control_shift("staging", "web", ShiftCommand::Pause)
            .await
            .unwrap_err()
            .code(),
        "deploy.nothing_to_promote"
    );
}

#[tokio::test(start_paused = true)]
async fn env_down_during_a_shift_aborts_it_and_stops_every_replica() {
    let deployment =
        "{strategy: steps, steps: [{weight: 50}, {pause: manual}, {weight: 100}], drain: 1s}";
    let (cluster, _store, deployer, task, _lines) = shifting(deployment, 2).await;
    wait_share(&cluster, 50).await;

    let stopped = deployer.down("staging").await.unwrap();

    assert_eq!(task.await.unwrap().unwrap_err().code(), "deploy.aborted");
    assert_eq!(stopped, 2, "the new replicas went with the shift");
    assert_eq!(cluster.world().running_count(), 0);
    let record = last_deployment(&deployer).await;
    assert!(
        record
            .message
            .unwrap()
            .contains("aborted by gantry env down")
    );
}
