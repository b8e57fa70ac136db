//! Process-level behaviour that fixtures can't express: timeouts,
//! cancellation and process-tree cleanup, `run-as`, errors before the build
//! starts, file-system escapes through symbolic links, and the exact
//! `buildspec run --json` document.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use gantry_build::{BuildError, BuildStatus, outcome_json, run, shell_buildspec};
use gantry_clock::Instant;
use gantry_spec::buildspec::{ArtifactsSpec, PhaseName};
use serde_json::json;
use support::{Lines, build, phase, process_gone, request, spec};

fn read_pid(path: &std::path::Path) -> u32 {
    // The pid files are written by the build; wait until they are complete.
    gantry_clock::blocking_poll(Duration::from_secs(2), Duration::from_millis(10), || {
        std::fs::read_to_string(path).ok()?.trim().parse().ok()
    })
    .unwrap_or_else(|| panic!("no pid in {}", path.display()))
}

/// A command leaving a child and a grandchild sleeping, with pid files.
const SLEEPERS: &str = "sleep 1000 & echo $! > child.pid; \
     sh -c 'sleep 1000 & echo $! > grandchild.pid; wait'";

#[tokio::test]
async fn timeout_kills_the_child_and_its_grandchild_quickly() {
    let tmp = tempfile::tempdir().unwrap();
    let bs = spec(vec![
        phase(PhaseName::Build, &[SLEEPERS, "echo never-runs"]),
        phase(PhaseName::PostBuild, &["echo post-never-runs"]),
    ]);
    let mut req = request(tmp.path(), bs);
    req.timeout = Duration::from_millis(1000);
    let src = req.source_dir.clone();
    let started = Instant::now();
    let (outcome, lines) = build(req).await;
    let took = started.elapsed();

    assert_eq!(outcome.status, BuildStatus::TimedOut);
    assert_eq!(outcome.phases.len(), 1);
    assert_eq!(outcome.phases[0].status, BuildStatus::TimedOut);
    assert_eq!(outcome.error.as_deref(), Some("build timed out after 1s"));
    assert!(took < Duration::from_millis(2500), "took {took:?}");
    for file in ["child.pid", "grandchild.pid"] {
        let pid = read_pid(&src.join(file));
        assert!(process_gone(pid), "{file} ({pid}) still runs");
    }
    let text = lines.text();
    assert!(
        text.contains("Phase complete: BUILD State: TIMED_OUT"),
        "{text}"
    );
    assert!(!text.contains("never-runs"));
}

#[tokio::test]
async fn cancellation_stops_the_build_and_kills_its_processes() {
    let tmp = tempfile::tempdir().unwrap();
    let bs = spec(vec![phase(PhaseName::Build, &[SLEEPERS])]);
    let req = request(tmp.path(), bs);
    let src = req.source_dir.clone();
    let cancel = req.cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        cancel.cancel();
    });
    let started = Instant::now();
    let (outcome, lines) = build(req).await;
    assert_eq!(outcome.status, BuildStatus::Stopped);
    assert_eq!(outcome.error.as_deref(), Some("build stopped"));
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(process_gone(read_pid(&src.join("grandchild.pid"))));
    assert!(
        lines
            .text()
            .contains("Phase complete: BUILD State: STOPPED")
    );
}

#[tokio::test]
async fn a_process_ignoring_sigterm_is_killed_after_the_grace_period() {
    let tmp = tempfile::tempdir().unwrap();
    let stubborn = "sh -c \"trap '' TERM; sleep 1000 & echo \\$! > stubborn.pid; wait\"";
    let bs = spec(vec![phase(PhaseName::Build, &[stubborn])]);
    let mut req = request(tmp.path(), bs);
    req.timeout = Duration::from_millis(500);
    let src = req.source_dir.clone();
    let started = Instant::now();
    let (outcome, _) = build(req).await;
    let took = started.elapsed();
    assert_eq!(outcome.status, BuildStatus::TimedOut);
    assert!(
        took >= Duration::from_millis(2400),
        "SIGKILL came before the grace: {took:?}"
    );
    assert!(took < Duration::from_secs(5), "took {took:?}");
    assert!(process_gone(read_pid(&src.join("stubborn.pid"))));
}

#[tokio::test]
async fn background_processes_die_with_the_build() {
    let tmp = tempfile::tempdir().unwrap();
    let bs = spec(vec![phase(
        PhaseName::Build,
        &["sleep 1000 & echo $! > bg.pid", "echo done"],
    )]);
    let req = request(tmp.path(), bs);
    let src = req.source_dir.clone();
    let started = Instant::now();
    let (outcome, _) = build(req).await;
    assert_eq!(outcome.status, BuildStatus::Succeeded);
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(process_gone(read_pid(&src.join("bg.pid"))));
}

#[tokio::test]
async fn a_dropped_build_leaves_no_process_behind() {
    let tmp = tempfile::tempdir().unwrap();
    let bs = spec(vec![phase(
        PhaseName::Build,
        &["sleep 1000 & echo $! > bg.pid; wait"],
    )]);
    let req = request(tmp.path(), bs);
    let src = req.source_dir.clone();
    let lines = Lines::default();
    let dropped = tokio::time::timeout(Duration::from_millis(500), run(req, &lines)).await;
    assert!(dropped.is_err(), "the build should still have been running");
    let pid = read_pid(&src.join("bg.pid"));
    // SIGKILL is delivered asynchronously.
    for _ in 0..100 {
        if process_gone(pid) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{pid} survived its dropped build");
}

#[tokio::test]
async fn unresolved_parameters_fail_before_anything_runs_naming_every_one() {
    let tmp = tempfile::tempdir().unwrap();
    let mut bs = spec(vec![phase(PhaseName::Build, &["touch ran.txt"])]);
    bs.parameter_store = vec![
        ("DOCKER_PASSWORD".into(), "/shop/docker/password".into()),
        ("SUPPLIED".into(), "/shop/supplied".into()),
    ];
    bs.secrets_manager = vec![("API_KEY".into(), "prod/api:key".into())];
    let mut req = request(tmp.path(), bs);
    req.secrets = vec![("SUPPLIED".into(), "value".into())];
    let src = req.source_dir.clone();
    let lines = Lines::default();
    let err = run(req, &lines).await.unwrap_err();
    let BuildError::UnresolvedParameters { missing } = &err else {
        panic!("{err:?}");
    };
    let names: Vec<&str> = missing.iter().map(|m| m.variable.as_str()).collect();
    assert_eq!(names, ["DOCKER_PASSWORD", "API_KEY"]);
    assert_eq!(
        err.to_string(),
        "2 variables have no value: DOCKER_PASSWORD (env.parameter-store \
         `/shop/docker/password`), API_KEY (env.secrets-manager `prod/api:key`)"
    );
    assert!(!src.join("ran.txt").exists());
    assert!(lines.all().is_empty());
}

#[tokio::test]
async fn a_shell_that_cannot_start_fails_the_phase() {
    let tmp = tempfile::tempdir().unwrap();
    let mut bs = spec(vec![phase(PhaseName::Build, &["true"])]);
    bs.shell = "/nonexistent/shell".into();
    let (outcome, _) = build(request(tmp.path(), bs)).await;
    assert_eq!(outcome.status, BuildStatus::Failed);
    let error = outcome.error.unwrap();
    assert!(
        error.contains("cannot start shell `/nonexistent/shell`"),
        "{error}"
    );
}

#[tokio::test]
async fn run_as_runs_the_shell_as_that_user() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut bs = spec(vec![
        phase(
            PhaseName::Build,
            &["echo \"uid=$(id -u) home=$HOME user=$USER\"", "X=kept"],
        ),
        phase(PhaseName::PostBuild, &["echo \"post uid=$(id -u) x=[$X]\""]),
    ]);
    bs.run_as = Some("nobody".into());
    bs.phases[1].run_as = Some("root".into());
    let req = request(tmp.path(), bs);
    std::fs::set_permissions(&req.source_dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let (outcome, lines) = build(req).await;
    assert_eq!(outcome.status, BuildStatus::Succeeded, "{}", lines.text());
    let out = lines.output();
    assert!(
        out.contains(&"uid=65534 home=/nonexistent user=nobody".to_owned()),
        "{out:?}"
    );
    // Another user means another shell: state does not carry over.
    assert!(out.contains(&"post uid=0 x=[]".to_owned()), "{out:?}");
}

#[tokio::test]
async fn run_as_an_unknown_user_is_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    let mut bs = spec(vec![phase(PhaseName::Build, &["true"])]);
    bs.run_as = Some("no-such-user-gantry".into());
    let err = run(request(tmp.path(), bs), &Lines::default())
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "run-as user `no-such-user-gantry` does not exist"
    );
}

fn artifacts(files: &[&str]) -> ArtifactsSpec {
    ArtifactsSpec {
        files: files.iter().map(|f| (*f).to_owned()).collect(),
        ..Default::default()
    }
}

#[tokio::test]
async fn a_symlink_pointing_outside_the_source_is_rejected() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("secret.txt"), "outside").unwrap();
    let bs = shell_buildspec(
        vec![
            "ln -s ../secret.txt leak.txt".into(),
            "echo ok > ok.txt".into(),
        ],
        Some(artifacts(&["**/*"])),
        vec![],
    );
    let req = request(tmp.path(), bs);
    let out = req.out_dir.clone();
    let (outcome, _) = build(req).await;
    assert_eq!(outcome.status, BuildStatus::Failed);
    assert_eq!(
        outcome.error.as_deref(),
        Some("artifact primary: `leak.txt` is outside the source directory")
    );
    assert!(!out.join("leak.txt").exists());
}

#[tokio::test]
async fn a_base_directory_linked_outside_the_source_is_rejected() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir(tmp.path().join("elsewhere")).unwrap();
    std::fs::write(tmp.path().join("elsewhere/x.txt"), "outside").unwrap();
    let mut spec = artifacts(&["**/*"]);
    spec.base_directory = Some("dist".into());
    let bs = shell_buildspec(vec!["ln -s ../elsewhere dist".into()], Some(spec), vec![]);
    let (outcome, _) = build(request(tmp.path(), bs)).await;
    assert_eq!(
        outcome.error.as_deref(),
        Some("artifact primary: `dist` is outside the source directory")
    );
}

#[tokio::test]
async fn symlinks_inside_the_source_are_copied_as_files_and_dir_links_not_followed() {
    let tmp = tempfile::tempdir().unwrap();
    let bs = shell_buildspec(
        vec![
            "mkdir -p real && echo data > real/file.txt".into(),
            "ln -s real/file.txt link.txt && ln -s real linkdir".into(),
        ],
        Some(artifacts(&["**/*"])),
        vec![],
    );
    let req = request(tmp.path(), bs);
    let out = req.out_dir.clone();
    let (outcome, _) = build(req).await;
    assert_eq!(
        outcome.status,
        BuildStatus::Succeeded,
        "{:?}",
        outcome.error
    );
    assert_eq!(outcome.artifacts[0].files, ["link.txt", "real/file.txt"]);
    let link = out.join("link.txt");
    assert!(!link.symlink_metadata().unwrap().file_type().is_symlink());
    assert_eq!(std::fs::read_to_string(link).unwrap(), "data\n");
}

#[tokio::test]
async fn an_output_directory_inside_the_source_is_not_collected_into_itself() {
    let tmp = tempfile::tempdir().unwrap();
    let bs = shell_buildspec(
        vec!["echo a > a.txt".into()],
        Some(artifacts(&["**/*"])),
        vec![],
    );
    let mut req = request(tmp.path(), bs);
    req.out_dir = req.source_dir.join("out");
    std::fs::create_dir_all(&req.out_dir).unwrap();
    std::fs::write(req.out_dir.join("stale.txt"), "old").unwrap();
    let (outcome, _) = build(req).await;
    assert_eq!(
        outcome.status,
        BuildStatus::Succeeded,
        "{:?}",
        outcome.error
    );
    assert_eq!(outcome.artifacts[0].files, ["a.txt"]);
}

#[tokio::test]
async fn outcome_json_is_the_buildspec_run_contract() {
    let tmp = tempfile::tempdir().unwrap();
    let mut bs = spec(vec![
        phase(PhaseName::Install, &["true"]),
        phase(
            PhaseName::Build,
            &["TAG=v7", "mkdir -p web && echo w > web/i.html", "false"],
        ),
        phase(PhaseName::PostBuild, &["echo x > x.txt"]),
    ]);
    bs.exported_variables = vec!["TAG".into()];
    bs.artifacts = Some(artifacts(&["x.txt"]));
    bs.secondary_artifacts = vec![("Web".into(), artifacts(&["web/*"]))];
    let req = request(tmp.path(), bs);
    let out = req.out_dir.clone();
    let (outcome, _) = build(req).await;
    let mut json = outcome_json(&outcome, &out);
    for phase in json["phases"].as_array_mut().unwrap() {
        phase.as_object_mut().unwrap().remove("duration_ms");
    }
    assert_eq!(
        json,
        json!({
            "status": "FAILED",
            "build_status": "FAILED",
            "phases": [
                {"name": "INSTALL", "status": "SUCCEEDED"},
                {"name": "BUILD", "status": "FAILED"},
                {"name": "POST_BUILD", "status": "SUCCEEDED"},
            ],
            "exported_variables": {"TAG": "v7"},
            "artifacts": ["x.txt", "Web/web/i.html"],
            "reports": [],
            "error": "BUILD: Error while executing command: false. Reason: exit status 1",
        })
    );
}

#[tokio::test]
async fn a_given_scratch_dir_holds_the_builds_files_and_is_left_to_its_owner() {
    let dir = tempfile::tempdir().unwrap();
    let scratch = dir.path().join("scratch");
    std::fs::create_dir(&scratch).unwrap();
    let mut req = request(
        dir.path(),
        spec(vec![phase(PhaseName::Build, &["echo hello"])]),
    );
    req.scratch_dir = Some(scratch.clone());
    let (outcome, lines) = build(req).await;
    assert_eq!(outcome.status, BuildStatus::Succeeded);
    assert!(lines.text().contains("hello"));
    // The FIFO was made there, and the directory is still the caller's.
    assert!(scratch.join("log").exists());
    // No artifact, so no artifacts' directory.
    assert!(!dir.path().join("out").exists());
}
