//! Container mode against the real Docker Engine, for what the conformance
//! cases (which also run in a container) can't express: the container's
//! lifecycle (timeout, stop, a dropped build), errors before the build
//! starts (no CLI, no engine, no image, unknown user), `run-as`, the host
//! environment staying out, and `docker build` through the mounted socket.
//!
//! Every test needs `GANTRY_TEST_DOCKER=1` and a running engine; without
//! the variable they pass without doing anything.

mod support;

use std::time::Duration;

use gantry_build::{BuildError, BuildRequest, BuildStatus, ContainerSpec, run};
use gantry_clock::Instant;
use gantry_spec::buildspec::PhaseName;
use support::{
    Lines, TEST_DOCKER_IMAGE, TEST_IMAGE, build, containers_of, docker_tests_enabled, phase,
    request, spec, test_image,
};

/// A container request, or `None` when container tests are off.
fn container_request(
    dir: &std::path::Path,
    phases: Vec<gantry_spec::buildspec::Phase>,
) -> Option<BuildRequest> {
    if !docker_tests_enabled() {
        eprintln!("skipped: set GANTRY_TEST_DOCKER=1 to run container tests");
        return None;
    }
    let mut req = request(dir, spec(phases));
    req.container = Some(ContainerSpec::new(test_image()));
    // Unique, so the label finds this test's container only.
    req.build_id = format!(
        "test-{}-{}",
        std::process::id(),
        dir.file_name().unwrap().to_string_lossy()
    );
    Some(req)
}

/// Waits (up to 10 s) until no container carries the build's label.
async fn wait_until_no_container(build_id: &str) -> bool {
    for _ in 0..100 {
        if containers_of(build_id).is_empty() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

#[tokio::test]
async fn a_timeout_kills_the_container_and_removes_it() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(mut req) = container_request(
        tmp.path(),
        vec![
            phase(
                PhaseName::Build,
                &["sleep 1000 & sleep 1000", "echo never-runs"],
            ),
            phase(PhaseName::PostBuild, &["echo post-never-runs"]),
        ],
    ) else {
        return;
    };
    // The timeout covers the container's start too: leave room for it on
    // a loaded machine.
    req.timeout = Duration::from_secs(4);
    let id = req.build_id.clone();
    let started = Instant::now();
    let (outcome, lines) = build(req).await;
    let took = started.elapsed();

    assert_eq!(outcome.status, BuildStatus::TimedOut, "{}", lines.text());
    assert_eq!(outcome.phases.len(), 1, "{}", lines.text());
    assert_eq!(outcome.error.as_deref(), Some("build timed out after 4s"));
    assert!(took < Duration::from_secs(8), "took {took:?}");
    // Gone when `run` returns, not some time later.
    assert_eq!(containers_of(&id), Vec::<String>::new());
    let text = lines.text();
    assert!(
        text.contains("Phase complete: BUILD State: TIMED_OUT"),
        "{text}"
    );
    assert!(!text.contains("never-runs"), "{text}");
}

#[tokio::test]
async fn a_stop_kills_the_container_and_removes_it() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(req) = container_request(
        tmp.path(),
        vec![phase(PhaseName::Build, &["touch started; sleep 1000"])],
    ) else {
        return;
    };
    let id = req.build_id.clone();
    let cancel = req.cancel.clone();
    let started = req.source_dir.join("started");
    // Stop once the command runs (the container's start takes a while).
    tokio::spawn(async move {
        while !started.exists() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        cancel.cancel();
    });
    let (outcome, lines) = build(req).await;
    assert_eq!(outcome.status, BuildStatus::Stopped, "{}", lines.text());
    assert_eq!(outcome.error.as_deref(), Some("build stopped"));
    assert_eq!(containers_of(&id), Vec::<String>::new());
}

#[tokio::test]
async fn a_dropped_build_leaves_no_container_behind() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(req) = container_request(
        tmp.path(),
        vec![phase(PhaseName::Build, &["touch started; sleep 1000"])],
    ) else {
        return;
    };
    let id = req.build_id.clone();
    let src = req.source_dir.clone();
    let lines = Lines::default();
    let dropped = tokio::time::timeout(Duration::from_secs(3), run(req, &lines)).await;
    assert!(dropped.is_err(), "the build should still have been running");
    assert!(src.join("started").exists(), "{}", lines.text());
    assert!(
        wait_until_no_container(&id).await,
        "container of {id} survived its dropped build"
    );
}

#[tokio::test]
async fn the_hosts_environment_stays_out_of_the_container() {
    let tmp = tempfile::tempdir().unwrap();
    // Cargo sets CARGO_MANIFEST_DIR for test processes: a variable this
    // process has and no image does.
    assert!(std::env::var_os("CARGO_MANIFEST_DIR").is_some());
    let Some(mut req) = container_request(
        tmp.path(),
        vec![phase(
            PhaseName::Build,
            // A name that is no shell name only shows in the shell's own
            // environment block (sh drops it for its children).
            &[
                "echo \"host=[${CARGO_MANIFEST_DIR-}] action=[$FROM_ACTION] \
               dotted=[$(tr '\\0' '\\n' < /proc/$$/environ | grep '^a.b=')]\"",
            ],
        )],
    ) else {
        return;
    };
    req.env = vec![
        ("FROM_ACTION".into(), "yes".into()),
        // Not a shell name: passed with `docker exec --env`.
        ("a.b".into(), "dotted value".into()),
    ];
    let (outcome, lines) = build(req).await;
    assert_eq!(outcome.status, BuildStatus::Succeeded, "{}", lines.text());
    assert!(
        lines
            .output()
            .contains(&"host=[] action=[yes] dotted=[a.b=dotted value]".to_owned()),
        "{}",
        lines.text()
    );
}

#[tokio::test]
async fn run_as_maps_to_docker_user_and_fresh_shells_share_the_container() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(mut req) = container_request(
        tmp.path(),
        vec![
            phase(
                PhaseName::Build,
                &[
                    "echo \"uid=$(id -u)\"",
                    "X=kept",
                    "echo shared > /tmp/by-root",
                ],
            ),
            phase(
                PhaseName::PostBuild,
                &["echo \"post uid=$(id -u) x=[$X] file=$(cat /tmp/by-root)\""],
            ),
        ],
    ) else {
        return;
    };
    // The test image has no /etc/passwd: numeric users only.
    req.buildspec.phases[1].run_as = Some("65534:65534".into());
    let (outcome, lines) = build(req).await;
    assert_eq!(outcome.status, BuildStatus::Succeeded, "{}", lines.text());
    let out = lines.output();
    assert!(out.contains(&"uid=0".to_owned()), "{out:?}");
    // Another user means another shell, in the same container.
    assert!(
        out.contains(&"post uid=65534 x=[] file=shared".to_owned()),
        "{out:?}"
    );
}

#[tokio::test]
async fn a_run_as_user_the_image_lacks_fails_before_anything_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(mut req) =
        container_request(tmp.path(), vec![phase(PhaseName::Build, &["touch ran"])])
    else {
        return;
    };
    req.buildspec.run_as = Some("no-such-user".into());
    let (id, src) = (req.build_id.clone(), req.source_dir.clone());
    let err = run(req, &Lines::default()).await.unwrap_err();
    assert!(matches!(err, BuildError::ContainerRunAs { .. }), "{err}");
    let text = err.to_string();
    assert!(text.contains("run-as user `no-such-user`"), "{text}");
    assert!(text.contains("no-such-user"), "{text}");
    assert!(!src.join("ran").exists());
    assert_eq!(containers_of(&id), Vec::<String>::new());
}

#[tokio::test]
async fn a_missing_image_fails_naming_it() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(mut req) = container_request(tmp.path(), vec![phase(PhaseName::Build, &["true"])])
    else {
        return;
    };
    let image = "gantry-test/no-such-image:404";
    req.container = Some(ContainerSpec::new(image));
    let lines = Lines::default();
    let err = run(req, &lines).await.unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, BuildError::ContainerStart { .. }), "{text}");
    assert!(
        text.starts_with(&format!(
            "cannot start a build container from image `{image}`: "
        )),
        "{text}"
    );
    // Docker's own reason follows, naming the image again.
    assert!(text.contains("Unable to find image"), "{text}");
    assert!(lines.all().is_empty());
}

#[tokio::test]
async fn a_shell_the_image_lacks_fails_naming_it() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(mut req) = container_request(tmp.path(), vec![phase(PhaseName::Build, &["true"])])
    else {
        return;
    };
    req.buildspec.shell = "bash".into();
    let err = run(req, &Lines::default()).await.unwrap_err();
    let text = err.to_string();
    assert!(text.contains(&format!("image `{TEST_IMAGE}`")), "{text}");
    // tini (`--init`) reports it: `exec bash failed: No such file or directory`.
    assert!(text.contains("bash"), "{text}");
}

#[tokio::test]
async fn an_engine_that_does_not_answer_is_reported() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(mut req) = container_request(tmp.path(), vec![phase(PhaseName::Build, &["true"])])
    else {
        return;
    };
    let mut spec = ContainerSpec::new(TEST_IMAGE);
    // Set on the docker CLI's environment only, never on this process.
    spec.docker_env = vec![(
        "DOCKER_HOST".into(),
        "unix:///nonexistent/gantry-test.sock".into(),
    )];
    req.container = Some(spec);
    let err = run(req, &Lines::default()).await.unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(err, BuildError::DockerUnavailable { .. }),
        "{text}"
    );
    assert!(
        text.starts_with("container mode needs a Docker Engine: "),
        "{text}"
    );
    assert!(text.contains("/nonexistent/gantry-test.sock"), "{text}");
}

#[tokio::test]
async fn a_missing_docker_cli_is_reported() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(mut req) = container_request(tmp.path(), vec![phase(PhaseName::Build, &["true"])])
    else {
        return;
    };
    let mut spec = ContainerSpec::new(TEST_IMAGE);
    spec.docker_cli = "/nonexistent/docker".into();
    req.container = Some(spec);
    let err = run(req, &Lines::default()).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "container mode needs a Docker Engine: the docker CLI `/nonexistent/docker` was not found"
    );
}

#[tokio::test]
async fn docker_build_in_the_buildspec_uses_the_mounted_socket() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(mut req) = container_request(
        tmp.path(),
        vec![
            phase(
                PhaseName::Build,
                &[
                    "printf 'FROM gantry-test/busybox:1\\nRUN echo built-inside > /inside\\n' > Dockerfile",
                    "docker build --quiet --tag \"$TAG\" .",
                    "docker run --rm \"$TAG\" cat /inside",
                ],
            ),
            phase(PhaseName::PostBuild, &["docker rmi --force \"$TAG\""]),
        ],
    ) else {
        return;
    };
    req.container = Some(ContainerSpec::new(TEST_DOCKER_IMAGE));
    let tag = format!("gantry-test/inner-{}:1", std::process::id());
    req.env = vec![
        ("TAG".into(), tag),
        // The classic builder needs no buildx plugin in the image.
        ("DOCKER_BUILDKIT".into(), "0".into()),
    ];
    let (outcome, lines) = build(req).await;
    assert_eq!(outcome.status, BuildStatus::Succeeded, "{}", lines.text());
    assert!(
        lines.output().contains(&"built-inside".to_owned()),
        "{}",
        lines.text()
    );
}

#[tokio::test]
async fn masking_applies_to_output_from_the_container() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(mut req) = container_request(
        tmp.path(),
        vec![phase(
            PhaseName::Build,
            &[
                "echo \"token=$TOKEN\"; echo \"err=$TOKEN\" >&2; printf 'hun'; printf 'ter2-secret\\n'",
            ],
        )],
    ) else {
        return;
    };
    req.secrets = vec![("TOKEN".into(), "hunter2-secret".into())];
    let (outcome, lines) = build(req).await;
    assert_eq!(outcome.status, BuildStatus::Succeeded, "{}", lines.text());
    let text = lines.text();
    assert!(!text.contains("hunter2"), "{text}");
    let out = lines.output();
    for want in ["token=***", "err=***", "***"] {
        assert!(out.contains(&want.to_owned()), "{want}: {out:?}");
    }
}

#[tokio::test]
async fn each_commands_output_is_logged_before_the_next_runner_line() {
    let tmp = tempfile::tempdir().unwrap();
    let commands: Vec<String> = (0..40)
        .map(|i| format!("echo out-{i}; echo err-{i} >&2; printf 'tail-{i}'"))
        .collect();
    let commands: Vec<&str> = commands.iter().map(String::as_str).collect();
    let Some(req) = container_request(tmp.path(), vec![phase(PhaseName::Build, &commands)]) else {
        return;
    };
    let (outcome, lines) = build(req).await;
    assert_eq!(outcome.status, BuildStatus::Succeeded, "{}", lines.text());
    // Docker carries stdout and stderr apart; the sync record puts each
    // command's output between its `Running command` line and the next.
    let all = lines.all();
    for i in 0..40 {
        let at = all
            .iter()
            .position(|l| {
                l.ends_with(&format!(
                    "Running command echo out-{i}; echo err-{i} >&2; printf 'tail-{i}'"
                ))
            })
            .unwrap();
        let next = all[at + 1..]
            .iter()
            .position(|l| l.starts_with("[Container]"))
            .map_or(all.len(), |n| at + 1 + n);
        let between = &all[at + 1..next];
        for want in [format!("out-{i}"), format!("err-{i}"), format!("tail-{i}")] {
            assert!(
                between.contains(&want),
                "{want} not in {between:?}\n{}",
                all.join("\n")
            );
        }
    }
}

#[tokio::test]
async fn the_deadline_bounds_the_start_on_an_engine_that_hangs() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(mut req) = container_request(tmp.path(), vec![phase(PhaseName::Build, &["true"])])
    else {
        return;
    };
    // An "engine" that accepts connections and never answers.
    let socket = tmp.path().join("hung.sock");
    let listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept() {
            held.push(stream);
        }
    });
    let mut spec = ContainerSpec::new(TEST_IMAGE);
    spec.docker_env = vec![("DOCKER_HOST".into(), format!("unix://{}", socket.display()))];
    req.container = Some(spec);
    req.timeout = Duration::from_millis(1000);
    let started = Instant::now();
    let (outcome, lines) = build(req).await;
    assert_eq!(outcome.status, BuildStatus::TimedOut, "{}", lines.text());
    assert!(outcome.phases.is_empty());
    // The timeout, then at most two grace periods of cleanup.
    assert!(started.elapsed() < Duration::from_secs(8));
    assert!(
        lines
            .text()
            .contains("Build timed out while its container was starting"),
        "{}",
        lines.text()
    );
}
