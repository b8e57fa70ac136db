//! End-to-end behaviour of the control plane with real processes, a real
//! git repository and a real SQLite file: the engine's decisions carried out.

use gantry_testkit::git;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use gantry_api::ExecutionView;
use gantry_server::ControlPlane;

mod common;
use common::open_plane;

struct Fixture {
    _dir: tempfile::TempDir,
    repo: PathBuf,
    data: PathBuf,
}

/// A git repository holding `files` and `gantry.yaml`, committed.
fn fixture(pipeline: &str, files: &[(&str, &str)]) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    std::fs::create_dir_all(&repo).unwrap();
    git(&repo, &["init", "-q", "-b", "main"]);
    std::fs::write(repo.join("gantry.yaml"), pipeline).unwrap();
    for (path, content) in files {
        let p = repo.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, content).unwrap();
    }
    git(&repo, &["add", "-A"]);
    git(&repo, &["commit", "-q", "-m", "first commit"]);
    let data = dir.path().join("data");
    Fixture {
        _dir: dir,
        repo,
        data,
    }
}

async fn start(plane: &ControlPlane, fx: &Fixture) -> String {
    let file = fx.repo.join("gantry.yaml");
    let text = std::fs::read_to_string(&file).unwrap();
    plane
        .start_execution(file, text, BTreeMap::new(), BTreeMap::new(), None)
        .await
        .unwrap()
}

async fn view(plane: &ControlPlane, id: &str) -> ExecutionView {
    let (execution, loaded) = plane.execution(id).await.unwrap();
    gantry_server::view::execution_view(&execution, loaded.as_deref())
}

/// Waits until `done` holds for the execution's JSON (or fails after 30 s).
async fn wait_until(
    plane: &ControlPlane,
    id: &str,
    what: &str,
    done: impl Fn(&ExecutionView) -> bool,
) -> ExecutionView {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut changes = plane.changes();
    loop {
        let v = view(plane, id).await;
        if done(&v) {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}: {v:#?}"
        );
        let _ = tokio::time::timeout(Duration::from_millis(200), changes.changed()).await;
    }
}

fn terminal(v: &ExecutionView) -> bool {
    v.is_finished()
}

fn millis(ts: &Option<String>) -> i64 {
    ts.as_deref()
        .unwrap()
        .parse::<jiff::Timestamp>()
        .unwrap()
        .as_millisecond()
}

const FLOW: &str = r##"
version: 1
name: flow
variables:
  GREETING: hello
stages:
  - name: Source
    actions:
      - name: checkout
        type: source
        repository: .
        outputs: [Src]
        namespace: Source
  - name: Build
    actions:
      - name: left
        type: shell
        inputs: [Src]
        commands:
          - sleep 0.6
          - mkdir -p out && echo "#{variables.GREETING} from $(cat message.txt)" > out/left.txt
          - export LEFT_DONE=yes
        outputs: [Left]
        artifacts: {files: ["out/left.txt"], discard-paths: yes}
        exported_variables: [LEFT_DONE]
        namespace: L
      - name: right
        type: shell
        inputs: [Src]
        commands: ["sleep 0.6"]
  - name: Check
    actions:
      - name: read
        type: shell
        inputs: [Left]
        env:
          COMMIT: "#{Source.CommitId}"
          DONE: "#{L.LEFT_DONE}"
        commands:
          - grep -q "hello from the repo" left.txt
          - test "$DONE" = yes
          - test ${#COMMIT} -eq 40
"##;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipeline_runs_parallel_actions_and_passes_artifacts_and_variables() {
    let fx = fixture(FLOW, &[("message.txt", "the repo")]);
    let plane = open_plane(&fx.data).await.unwrap();
    let id = start(&plane, &fx).await;
    let v = wait_until(&plane, &id, "the end", terminal).await;
    assert_eq!(v.status, "Succeeded", "{v:#?}");
    let left = v.action("Build", "left").unwrap();
    let right = v.action("Build", "right").unwrap();
    // Parallel actions really overlap: each started before the other ended.
    assert!(millis(&left.started_at) < millis(&right.finished_at));
    assert!(millis(&right.started_at) < millis(&left.finished_at));
    assert_eq!(left.output_variables["LEFT_DONE"], "yes");
    let checkout = v.action("Source", "checkout").unwrap();
    assert_eq!(checkout.output_variables["CommitMessage"], "first commit");
    assert_eq!(checkout.output_variables["BranchName"], "main");
    let logs = plane
        .logs(&id, Some(("Build", "left")), 0, 1000)
        .await
        .unwrap();
    assert!(
        logs.iter()
            .any(|l| l.line.contains("Running command sleep 0.6")),
        "{logs:?}"
    );
}

const APPROVAL: &str = r##"
version: 1
name: gate
stages:
  - name: Source
    actions:
      - {name: checkout, type: source, repository: ., outputs: [Src], namespace: Source}
  - name: Approve
    actions:
      - name: release
        type: approval
        comments: "Ship #{Source.CommitId}?"
        timeout: 7d
  - name: After
    actions:
      - {name: done, type: shell, inputs: [Src], commands: ["true"]}
"##;

fn waiting(v: &ExecutionView) -> bool {
    v.action("Approve", "release").unwrap().status.as_deref() == Some("Waiting")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approval_waits_and_records_who_approved() {
    let fx = fixture(APPROVAL, &[]);
    let plane = open_plane(&fx.data).await.unwrap();
    let id = start(&plane, &fx).await;
    wait_until(&plane, &id, "the approval", waiting).await;
    assert!(!plane.busy().await, "a waiting approval holds no worker");
    let not_waiting = plane
        .decide(&id, &approver("ann"), decision("After", "done", true, None))
        .await
        .unwrap_err();
    assert_eq!(not_waiting.code(), "approval.not_waiting");
    plane
        .decide(
            &id,
            &approver("ann"),
            decision("Approve", "release", true, Some("looks good".into())),
        )
        .await
        .unwrap();
    let v = wait_until(&plane, &id, "the end", terminal).await;
    assert_eq!(v.status, "Succeeded", "{v:#?}");
    let records = plane.approvals(&id).await.unwrap();
    assert_eq!(records.len(), 1);
    assert_eq!(
        (records[0].decision.as_str(), records[0].by.as_str()),
        ("Approved", "ann")
    );
    assert_eq!(records[0].comment.as_deref(), Some("looks good"));
    let logs = plane
        .logs(&id, Some(("Approve", "release")), 0, 100)
        .await
        .unwrap();
    assert!(
        logs.iter()
            .any(|l| l.line.starts_with("Comments: Ship ") && l.line.len() > 50),
        "{logs:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_approval_fails_the_execution() {
    let fx = fixture(APPROVAL, &[]);
    let plane = open_plane(&fx.data).await.unwrap();
    let id = start(&plane, &fx).await;
    wait_until(&plane, &id, "the approval", waiting).await;
    plane
        .decide(
            &id,
            &approver("bob"),
            decision("Approve", "release", false, Some("not today".into())),
        )
        .await
        .unwrap();
    let v = wait_until(&plane, &id, "the end", terminal).await;
    assert_eq!(v.status, "Failed");
    assert_eq!(
        v.action("Approve", "release").unwrap().error.as_deref(),
        Some("rejected by bob: not today")
    );
    assert!(v.action("After", "done").unwrap().status.is_none());
}

#[tokio::test]
async fn an_approval_times_out_as_a_failure() {
    let fx = fixture(APPROVAL, &[]);
    let plane = open_plane(&fx.data).await.unwrap();
    let id = start(&plane, &fx).await;
    wait_until(&plane, &id, "the approval", waiting).await;
    // Seven days pass in an instant on tokio's clock, once its timer is
    // armed (it is armed once the waiting is written, a moment after the
    // approval shows as waiting).
    skip_to_timers(&plane, 1, Duration::from_secs(7 * 24 * 3600 + 1)).await;
    let v = wait_until(&plane, &id, "the time-out", terminal).await;
    assert_eq!(v.status, "Failed", "{v:#?}");
    assert_eq!(
        v.action("Approve", "release").unwrap().error.as_deref(),
        Some("approval timed out after 7d")
    );
}

const FLAKY: &str = r##"
version: 1
name: flaky
stages:
  - name: Work
    actions:
      - {name: steady, type: shell, commands: ["true"]}
      - {name: flaky, type: shell, commands: ["test -f \"$MARKER\""], env: {MARKER: "#{variables.MARKER}"}}
variables:
  MARKER: /nonexistent
"##;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_stage_is_retried_to_success() {
    let fx = fixture(FLAKY, &[]);
    let marker = fx.data.parent().unwrap().join("marker");
    let plane = open_plane(&fx.data).await.unwrap();
    let file = fx.repo.join("gantry.yaml");
    let text = std::fs::read_to_string(&file).unwrap();
    let vars = BTreeMap::from([("MARKER".to_string(), marker.display().to_string())]);
    let id = plane
        .start_execution(file, text, BTreeMap::new(), vars, None)
        .await
        .unwrap();
    let v = wait_until(&plane, &id, "the failure", terminal).await;
    assert_eq!(v.status, "Failed");
    assert_eq!(
        v.action("Work", "steady").unwrap().status.as_deref(),
        Some("Succeeded")
    );
    std::fs::write(&marker, "").unwrap();
    plane.retry(&id, "Work", false).await.unwrap();
    let v = wait_until(&plane, &id, "the retry", |v| {
        terminal(v) && v.action("Work", "flaky").unwrap().attempt == 2
    })
    .await;
    assert_eq!(v.status, "Succeeded", "{v:#?}");
    assert_eq!(
        v.action("Work", "steady").unwrap().attempt,
        1,
        "succeeded actions are not re-run"
    );
}

const BAD: &str = r##"
version: 1
name: bad
stages:
  - name: Work
    actions:
      - {name: missing, type: shell, commands: ["definitely-not-a-command-xyz"]}
      - name: escape
        type: shell
        commands: ["echo secret > ../outside.txt || true", "ln -s /etc/passwd link"]
        outputs: [Out]
        artifacts: {files: ["link"]}
"##;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_commands_and_escaping_outputs_fail_their_own_action() {
    let fx = fixture(BAD, &[]);
    let plane = open_plane(&fx.data).await.unwrap();
    let id = start(&plane, &fx).await;
    let v = wait_until(&plane, &id, "the end", terminal).await;
    assert_eq!(v.status, "Failed");
    assert_eq!(
        v.action("Work", "missing").unwrap().status.as_deref(),
        Some("Failed")
    );
    assert_eq!(
        v.action("Work", "escape").unwrap().status.as_deref(),
        Some("Failed")
    );
    let error = v
        .action("Work", "escape")
        .unwrap()
        .error
        .as_deref()
        .unwrap()
        .to_string();
    assert!(error.contains("link"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reopened_data_dir_has_no_action_stuck_and_keeps_waiting_approvals() {
    let pipeline = r##"
version: 1
name: restart
stages:
  - name: Work
    actions:
      - {name: long, type: shell, commands: ["sleep 30"]}
      - {name: gate, type: approval}
"##;
    let fx = fixture(pipeline, &[]);
    let id = {
        let plane = open_plane(&fx.data).await.unwrap();
        let id = start(&plane, &fx).await;
        wait_until(&plane, &id, "both running", |v| {
            v.action("Work", "long").unwrap().status.as_deref() == Some("InProgress")
                && v.action("Work", "gate").unwrap().status.as_deref() == Some("Waiting")
        })
        .await;
        plane.cancel_all().await;
        id
    };
    // A second control plane on the same data dir: the long action ended
    // as Failed (stopped by the first plane's shutdown, or interrupted if
    // the first plane died before recording it; the kill -9 case is the CLI
    // test `a_server_killed_with_sigkill_restarts_with_nothing_stuck`), and
    // the approval still waits for a person.
    let plane = open_plane(&fx.data).await.unwrap();
    let v = view(&plane, &id).await;
    assert_eq!(
        v.action("Work", "long").unwrap().status.as_deref(),
        Some("Failed"),
        "{v:#?}"
    );
    assert_eq!(
        v.action("Work", "gate").unwrap().status.as_deref(),
        Some("Waiting")
    );
    plane
        .decide(&id, &approver("ann"), decision("Work", "gate", true, None))
        .await
        .unwrap();
    let v = wait_until(&plane, &id, "the end", terminal).await;
    assert_eq!(v.status, "Failed");
}

/// Once `armed` approval timers are armed (and nothing else is being
/// written), moves tokio's clock on by `by`: a jump while a write waits
/// for the database would time the write out instead.
async fn skip_to_timers(plane: &ControlPlane, armed: usize, by: Duration) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while plane.armed_approval_timers().await != armed {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {armed} approval timers"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::pause();
    tokio::time::advance(by).await;
    tokio::time::resume();
}

/// An identity holding the approver role, as the API would pass it.
fn approver(name: &str) -> gantry_auth::Identity {
    gantry_auth::Identity {
        name: name.into(),
        email: None,
        grants: vec![gantry_auth::Grant::new(gantry_auth::Role::Approver)],
    }
}

fn decision<'a>(
    stage: &'a str,
    action: &'a str,
    approve: bool,
    comment: Option<String>,
) -> gantry_server::control::Decision<'a> {
    gantry_server::control::Decision {
        stage,
        action,
        approve,
        comment,
        expected: None,
    }
}

const AUTO_APPROVAL: &str = r##"
version: 1
name: baked
stages:
  - name: Work
    actions:
      - {name: build, type: shell, commands: ["true"]}
  - name: Approve
    actions:
      - {name: now, type: approval, policy: {auto_approve_after: 0s}}
  - name: Bake
    actions:
      - {name: release, type: approval, timeout: 7d, policy: {auto_approve_after: 1h}}
  - name: After
    actions:
      - {name: done, type: shell, commands: ["true"]}
"##;

/// An approval whose policy says `auto_approve_after` approves by itself
/// then, as `gantry`, with a comment that says why; one decided before
/// stays as decided.
#[tokio::test]
async fn an_approval_approves_by_itself_after_its_policys_bake_time() {
    let fx = fixture(AUTO_APPROVAL, &[]);
    let plane = open_plane(&fx.data).await.unwrap();
    let id = start(&plane, &fx).await;
    let bake_waits = |v: &ExecutionView| {
        v.action("Bake", "release").unwrap().status.as_deref() == Some("Waiting")
    };
    wait_until(&plane, &id, "the bake approval", bake_waits).await;
    let now = plane.approval(&id, "Approve", "now").await.unwrap();
    assert_eq!(now.status, Some(gantry_engine::ActionStatus::Succeeded));
    let vote = &now.votes[0];
    assert_eq!(vote.by, "gantry");
    assert_eq!(
        vote.comment.as_deref(),
        Some("approved automatically after 0s (its policy's auto_approve_after)")
    );
    // An hour passes in an instant on tokio's clock.
    skip_to_timers(&plane, 1, Duration::from_secs(3600 + 1)).await;
    let v = wait_until(&plane, &id, "the bake time", terminal).await;
    assert_eq!(v.status, "Succeeded", "{v:#?}");
    let bake = plane.approval(&id, "Bake", "release").await.unwrap();
    assert_eq!(bake.auto_approve_after, Some(Duration::from_secs(3600)));
    assert_eq!(bake.votes.len(), 1);
    assert_eq!(bake.votes[0].by, "gantry");
    let decided = plane.approvals(&id).await.unwrap();
    assert!(
        decided
            .iter()
            .any(|d| d.stage == "Bake" && d.decision == "Approved" && d.by == "gantry"),
        "{decided:?}"
    );
    let lines = plane
        .logs(&id, Some(("Bake", "release")), 0, 100)
        .await
        .unwrap();
    assert!(
        lines.iter().any(|l| l
            .line
            .starts_with("Approved by gantry: approved automatically after 1h")),
        "{lines:?}"
    );

    // Rejected within its bake time: rejected, and the hour changes nothing.
    let id = start(&plane, &fx).await;
    wait_until(&plane, &id, "the bake approval", bake_waits).await;
    plane
        .decide(
            &id,
            &approver("ann"),
            decision("Bake", "release", false, Some("not yet".into())),
        )
        .await
        .unwrap();
    let v = wait_until(&plane, &id, "the rejection", terminal).await;
    assert_eq!(v.status, "Failed");
    assert_eq!(plane.armed_approval_timers().await, 0, "its timer stopped");
    let bake = plane.approval(&id, "Bake", "release").await.unwrap();
    assert_eq!(bake.votes.len(), 1);
    assert_eq!(bake.votes[0].by, "ann");
}

const CACHED: &str = r##"
version: 1
name: cached
stages:
  - name: Source
    actions:
      - {name: checkout, type: source, repository: ., outputs: [Src]}
  - name: Build
    actions:
      - {name: compile, type: build, inputs: [Src], buildspec: buildspec.yml}
"##;

const CACHED_BUILDSPEC: &str = "version: 0.2
phases:
  build:
    commands:
      - if [ -f deps/lib.txt ]; then echo CACHE-HIT; else mkdir -p deps && echo lib > deps/lib.txt && echo CACHE-MISS; fi
cache:
  paths:
    - 'deps/**/*'
";

/// A build action's `cache.paths` come back in the next execution's fresh
/// checkout of the same action.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_build_actions_cache_paths_come_back_in_the_next_execution() {
    let fx = fixture(CACHED, &[("buildspec.yml", CACHED_BUILDSPEC)]);
    let plane = open_plane(&fx.data).await.unwrap();
    let mut seen = Vec::new();
    for _ in 0..2 {
        let id = start(&plane, &fx).await;
        let v = wait_until(&plane, &id, "the end", terminal).await;
        assert_eq!(v.status, "Succeeded", "{v:#?}");
        let lines = plane
            .logs(&id, Some(("Build", "compile")), 0, 10_000)
            .await
            .unwrap();
        let text: Vec<String> = lines.into_iter().map(|l| l.line).collect();
        seen.push(
            text.iter()
                .find(|l| l.starts_with("CACHE-"))
                .cloned()
                .unwrap_or_else(|| panic!("{text:#?}")),
        );
    }
    assert_eq!(seen, ["CACHE-MISS", "CACHE-HIT"]);
}
