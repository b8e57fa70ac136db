//! Regression test from the security review: a build never shows the
//! parameter store's master key, whether the server read it from
//! `GANTRY_MASTER_KEY` or from `params-master.key`.

use gantry_testkit::git;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use gantry_server::ControlPlane;

const CHILD: &str = "GANTRY_HARDENING_TEST_CHILD";
const KEY: &str = "a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90";

/// Runs the test `name` again in a child process with `env` added (a test
/// cannot set its own process's variables: `set_var` is unsafe, and the
/// workspace forbids unsafe code). Returns false in the child.
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

/// Runs a pipeline whose shell action prints its environment, the key file
/// and `printed`; returns the action's log.
async fn shell_log(dir: &Path, printed: &str) -> String {
    let data = dir.join("data");
    let pipeline = format!(
        r#"
version: 1
name: leak
stages:
  - name: Source
    actions:
      - {{name: checkout, type: source, repository: ., outputs: [Src]}}
  - name: Build
    actions:
      - name: show
        type: shell
        inputs: [Src]
        commands:
          - env
          - "cat {}/params-master.key || true"
          - "echo printed={printed}"
"#,
        data.display()
    );
    let repo = dir.join("repo");
    std::fs::create_dir_all(&repo).unwrap();
    git(&repo, &["init", "-q", "-b", "main"]);
    std::fs::write(repo.join("gantry.yaml"), &pipeline).unwrap();
    git(&repo, &["add", "-A"]);
    git(&repo, &["commit", "-q", "-m", "first"]);
    let plane = ControlPlane::open(&data).await.unwrap();
    let id = plane
        .start_execution(
            repo.join("gantry.yaml"),
            pipeline,
            BTreeMap::new(),
            BTreeMap::new(),
            None,
        )
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let (execution, loaded) = plane.execution(&id).await.unwrap();
        let v = gantry_server::view::execution_view(&execution, loaded.as_deref());
        if matches!(v.status.as_str(), "Succeeded" | "Failed") {
            assert_eq!(v.status, "Succeeded", "{v:#?}");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out: {v:#?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    plane
        .logs(&id, Some(("Build", "show")), 0, 10_000)
        .await
        .unwrap()
        .iter()
        .map(|l| l.line.clone())
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_build_never_shows_the_master_key_from_the_environment() {
    if rerun_with_env(
        "a_build_never_shows_the_master_key_from_the_environment",
        &[
            ("GANTRY_MASTER_KEY", KEY),
            ("GANTRY_TOKEN", "token-9f8e7d6c"),
        ],
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let log = shell_log(dir.path(), KEY).await;
    for leaked in ["GANTRY_MASTER_KEY", KEY, "GANTRY_TOKEN", "token-9f8e7d6c"] {
        assert!(!log.contains(leaked), "{leaked} is in the log:\n{log}");
    }
    assert!(log.contains("printed=***"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_build_never_shows_the_master_key_from_its_file() {
    let dir = tempfile::tempdir().unwrap();
    let log = shell_log(dir.path(), "nothing").await;
    let key = std::fs::read_to_string(dir.path().join("data/params-master.key")).unwrap();
    let key = key.trim();
    assert!(!key.is_empty());
    assert!(
        !log.contains(key),
        "the key file's value is in the log:\n{log}"
    );
    assert!(log.lines().any(|l| l == "***"), "{log}");
}
