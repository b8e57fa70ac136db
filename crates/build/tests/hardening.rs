//! Regression tests from the security review: what a host build inherits
//! from the process that runs it, values masked in every build, and
//! artifact symlinks that only look like they stay inside.

mod support;

use std::process::Command;

use gantry_build::{BuildStatus, shell_buildspec};
use gantry_spec::buildspec::{ArtifactsSpec, PhaseName};
use support::{build, phase, request, spec};

/// Set in the child process [`rerun_with_env`] starts.
const CHILD: &str = "GANTRY_HARDENING_TEST_CHILD";
const MASTER_KEY: &str = "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0";
const TOKEN: &str = "gantry-token-a1b2c3d4e5";

/// Runs the test `name` of this binary again, in a child process whose
/// environment also holds `env`, and asserts that it passed. Returns false
/// in that child, which then runs the test's body. (The workspace forbids
/// unsafe code, and `std::env::set_var` is unsafe in edition 2024, so a
/// test cannot give its own process a variable.)
fn rerun_with_env(name: &str, env: &[(&str, &str)]) -> bool {
    if std::env::var_os(CHILD).is_some() {
        return false;
    }
    let output = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", name, "--nocapture", "--test-threads=1"])
        .env(CHILD, "1")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.contains("1 passed"),
        "the child run of {name} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    true
}

#[tokio::test]
async fn a_host_build_sees_none_of_the_servers_environment() {
    if rerun_with_env(
        "a_host_build_sees_none_of_the_servers_environment",
        &[
            ("GANTRY_MASTER_KEY", MASTER_KEY),
            ("GANTRY_TOKEN", TOKEN),
            ("SERVER_ONLY_SETTING", "server-only-value"),
            ("LC_TIME", "C"),
        ],
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut req = request(dir.path(), spec(vec![phase(PhaseName::Build, &["env"])]));
    req.env
        .push(("ACTION_VAR".to_owned(), "from-the-action".to_owned()));
    let (outcome, lines) = build(req).await;
    assert_eq!(outcome.status, BuildStatus::Succeeded, "{}", lines.text());
    let log = lines.text();
    for leaked in [
        "GANTRY_MASTER_KEY",
        MASTER_KEY,
        "GANTRY_TOKEN",
        TOKEN,
        "SERVER_ONLY_SETTING",
        "server-only-value",
    ] {
        assert!(
            !log.contains(leaked),
            "{leaked} is in the build log:\n{log}"
        );
    }
    // What a build needs still comes through.
    for kept in [
        "ACTION_VAR=from-the-action",
        "PATH=",
        "LC_TIME=C",
        "CODEBUILD_BUILD_ID=local",
        "GANTRY_SRC_DIR=",
    ] {
        assert!(log.contains(kept), "{kept} is missing:\n{log}");
    }
}

#[tokio::test]
async fn a_value_registered_with_mask_everywhere_is_masked_in_every_build() {
    let value = "registered-mask-7c1d9e";
    gantry_build::mask_everywhere(value);
    let dir = tempfile::tempdir().unwrap();
    let req = request(
        dir.path(),
        spec(vec![phase(
            PhaseName::Build,
            &["echo \"key: registered-mask-7c1d9e\""],
        )]),
    );
    let (outcome, lines) = build(req).await;
    assert_eq!(outcome.status, BuildStatus::Succeeded);
    let log = lines.text();
    assert!(!log.contains(value), "{log}");
    assert!(log.contains("key: ***"), "{log}");
}

/// `x -> a/s1/..` with `a/s1 -> ..`: the text reads as `a`, the link is the
/// parent of the directory it is in.
const LINK_THROUGH_A_LINK: &str = "mkdir -p out/a && ln -s .. out/a/s1 && ln -s a/s1/.. out/x";

#[tokio::test]
async fn an_artifact_symlink_leaving_through_another_symlink_is_refused() {
    // With the source directory as the artifact's root, `x` resolves to the
    // source's parent.
    let tmp = tempfile::tempdir().unwrap();
    let bs = shell_buildspec(
        vec![
            "mkdir a && ln -s .. a/s1 && ln -s a/s1/.. x".into(),
            "echo ok > ok.txt".into(),
        ],
        Some(ArtifactsSpec {
            files: vec!["**/*".into()],
            enable_symlinks: true,
            ..Default::default()
        }),
        vec![],
    );
    let req = request(tmp.path(), bs);
    let out = req.out_dir.clone();
    let (outcome, _) = build(req).await;
    assert_eq!(outcome.status, BuildStatus::Failed);
    assert!(out.join("x").symlink_metadata().is_err(), "x was written");

    // With `base-directory: out`, `out/x` resolves to the source directory,
    // inside it, but the artifact's root is `out`: in the artifact, `x` is
    // its parent.
    let tmp = tempfile::tempdir().unwrap();
    let bs = shell_buildspec(
        vec![LINK_THROUGH_A_LINK.into(), "echo ok > out/ok.txt".into()],
        Some(ArtifactsSpec {
            files: vec!["**/*".into()],
            base_directory: Some("out".into()),
            enable_symlinks: true,
            ..Default::default()
        }),
        vec![],
    );
    let mut req = request(tmp.path(), bs);
    req.out_dir = tmp.path().join("artifact");
    let artifact = req.out_dir.clone();
    let (outcome, lines) = build(req).await;
    assert_eq!(
        outcome.status,
        BuildStatus::Failed,
        "accepted: {:?}\n{}",
        outcome.artifacts,
        lines.text()
    );
    let error = outcome.error.unwrap_or_default();
    assert!(error.contains("`x`"), "{error}");
    assert!(
        artifact.join("x").symlink_metadata().is_err(),
        "the escaping link was left in the artifact"
    );
}
