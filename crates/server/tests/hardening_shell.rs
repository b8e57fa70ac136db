//! Regression tests from the security review, through the control plane:
//! `#{…}` values in shell commands are never parsed as shell, and builds
//! never see the master key.

use gantry_testkit::git;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use gantry_api::ExecutionView;
use gantry_server::ControlPlane;

/// A repository holding `pipeline` as `gantry.yaml`, committed with `message`.
fn repo(dir: &Path, pipeline: &str, message: &str) -> PathBuf {
    let repo = dir.join("repo");
    std::fs::create_dir_all(&repo).unwrap();
    git(&repo, &["init", "-q", "-b", "main"]);
    std::fs::write(repo.join("gantry.yaml"), pipeline).unwrap();
    git(&repo, &["add", "-A"]);
    git(&repo, &["commit", "-q", "-m", message]);
    repo
}

async fn run_to_end(
    plane: &ControlPlane,
    repo: &Path,
    overrides: BTreeMap<String, String>,
) -> (String, ExecutionView) {
    let file = repo.join("gantry.yaml");
    let text = std::fs::read_to_string(&file).unwrap();
    let id = plane
        .start_execution(file, text, BTreeMap::new(), overrides, None)
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut changes = plane.changes();
    loop {
        let (execution, loaded) = plane.execution(&id).await.unwrap();
        let v = gantry_server::view::execution_view(&execution, loaded.as_deref());
        if v.is_finished() {
            return (id, v);
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out: {v:#?}");
        let _ = tokio::time::timeout(Duration::from_millis(200), changes.changed()).await;
    }
}

async fn log_text(plane: &ControlPlane, id: &str, stage: &str, action: &str) -> String {
    plane
        .logs(id, Some((stage, action)), 0, 10_000)
        .await
        .unwrap()
        .iter()
        .map(|l| l.line.clone())
        .collect::<Vec<_>>()
        .join("\n")
}

const INJECTION: &str = r##"
version: 1
name: injection
variables:
  QUOTED: plain
  SINGLE: plain
  BARE: plain
stages:
  - name: Source
    actions:
      - {name: checkout, type: source, repository: ., outputs: [Src], namespace: Source}
  - name: Build
    actions:
      - name: echo
        type: shell
        inputs: [Src]
        commands:
          - 'echo "message=#{Source.CommitMessage}"'
          - 'echo "quoted=#{variables.QUOTED}"'
          - "echo 'single=#{variables.SINGLE}'"
          - echo bare=#{variables.BARE}
          - 'test "#{Source.CommitMessage}" = "$(git log -1 --format=%B 2>/dev/null || printf %s "#{Source.CommitMessage}")"'
          - echo literal=##{kept}
"##;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reference_values_in_shell_commands_are_never_run_as_shell() {
    let dir = tempfile::tempdir().unwrap();
    let marker = |n: &str| dir.path().join(format!("pwned-{n}"));
    let message = format!("fix\"; touch {}; echo \"", marker("message").display());
    let repo = repo(dir.path(), INJECTION, &message);
    let plane = ControlPlane::open(&dir.path().join("data")).await.unwrap();
    let overrides = BTreeMap::from([
        (
            "QUOTED".to_owned(),
            format!(
                "x\"; touch {}; echo \"$(touch {})",
                marker("quoted").display(),
                marker("subst").display()
            ),
        ),
        (
            "SINGLE".to_owned(),
            format!("it's'; touch {}; echo '", marker("single").display()),
        ),
        (
            "BARE".to_owned(),
            format!(
                "a;touch {} `touch {}`",
                marker("bare").display(),
                marker("tick").display()
            ),
        ),
    ]);
    let (id, v) = run_to_end(&plane, &repo, overrides.clone()).await;
    let log = log_text(&plane, &id, "Build", "echo").await;
    for name in ["message", "quoted", "subst", "single", "bare", "tick"] {
        assert!(
            !marker(name).exists(),
            "the {name} value ran as shell:\n{log}"
        );
    }
    assert_eq!(v.status, "Succeeded", "{v:#?}\n{log}");
    // Quoted references print their values verbatim.
    assert!(
        log.lines().any(|l| l == format!("message={message}")),
        "{log}"
    );
    assert!(
        log.lines()
            .any(|l| l == format!("quoted={}", overrides["QUOTED"])),
        "{log}"
    );
    assert!(
        log.lines()
            .any(|l| l == format!("single={}", overrides["SINGLE"])),
        "{log}"
    );
    // Unquoted, a value is split into words, and that is all.
    assert!(
        log.lines()
            .any(|l| l == format!("bare={}", overrides["BARE"])),
        "{log}"
    );
    assert!(log.lines().any(|l| l == "literal=#{kept}"), "{log}");
}

const PARAM_IN_A_VALUE: &str = r##"
version: 1
name: leak
variables:
  MSG: "harmless"
stages:
  - name: Work
    actions:
      - name: print
        type: shell
        env: {M: "#{variables.MSG}", DNS: "{{param:/app/public}}"}
        commands: ['test "$DNS" = http://lb', 'echo "M=[$M]"']
"##;

/// A `{{param:…}}` that arrives inside a `#{…}` value (a commit message, a
/// `--var`) is text: only what the pipeline file itself writes reads a
/// parameter.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_param_reference_inside_a_reference_value_stays_text() {
    let dir = tempfile::tempdir().unwrap();
    let repo = repo(dir.path(), PARAM_IN_A_VALUE, "init");
    let plane = ControlPlane::open(&dir.path().join("data")).await.unwrap();
    for (name, value, kind) in [
        ("/app/public", "http://lb", gantry_params::ParamType::String),
        (
            "/app/secret",
            "s3cr3t",
            gantry_params::ParamType::SecureString,
        ),
    ] {
        let name = gantry_params::ParamName::parse(name).unwrap();
        plane
            .params()
            .put(gantry_params::PutParameter::new(&name, value, kind, "test"))
            .await
            .unwrap();
    }
    let overrides = BTreeMap::from([("MSG".to_string(), "{{param:/app/secret}}".to_string())]);
    let (id, v) = run_to_end(&plane, &repo, overrides).await;
    assert_eq!(v.status, "Succeeded", "{v:#?}");
    let log = log_text(&plane, &id, "Work", "print").await;
    assert!(log.contains("M=[{{param:/app/secret}}]"), "{log}");
    assert!(!log.contains("s3cr3t") && !log.contains("M=[***]"), "{log}");
}
