//! The `gantry` binary as people and scripts use it: real processes, a real
//! git repository, a second terminal approving, a server killed with -9.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use gantry_api::ExecutionView;
use gantry_clock::Instant;
use serde_json::Value;

fn gantry() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_gantry"));
    cmd.env_remove("GANTRY_DATA_DIR")
        .env_remove("GANTRY_TOKEN")
        .env_remove("GANTRY_SERVER")
        .env("GANTRY_LOG", "warn");
    cmd
}

struct Repo {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

impl Repo {
    fn data(&self) -> PathBuf {
        self.path.join(".gantry")
    }

    /// Runs gantry in the repository with its data dir.
    fn run(&self, args: &[&str]) -> Output {
        gantry()
            .current_dir(&self.path)
            .arg("--data-dir")
            .arg(self.data())
            .args(args)
            .output()
            .unwrap()
    }

    /// Runs gantry with another identity's token.
    fn run_as(&self, token: &str, args: &[&str]) -> Output {
        gantry()
            .current_dir(&self.path)
            .env("GANTRY_TOKEN", token)
            .arg("--data-dir")
            .arg(self.data())
            .args(args)
            .output()
            .unwrap()
    }

    /// Adds a user with `grants` (as the data dir's admin) and returns a
    /// token of theirs.
    fn user(&self, name: &str, grants: &[&str]) -> String {
        let mut args = vec!["user", "add", name];
        for g in grants {
            args.extend(["--grant", g]);
        }
        let out = self.run(&args);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let out = self.run(&["token", "create", "--user", name]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout(&out).trim().to_string()
    }

    fn spawn(&self, args: &[&str]) -> Child {
        gantry()
            .current_dir(&self.path)
            .arg("--data-dir")
            .arg(self.data())
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    fn status(&self, id: &str) -> ExecutionView {
        let out = self.run(&["status", id, "--json"]);
        assert!(
            out.status.success(),
            "status: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }
}

fn repo(pipeline: &str) -> Repo {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("repo");
    std::fs::create_dir_all(&path).unwrap();
    std::fs::write(path.join("gantry.yaml"), pipeline).unwrap();
    let git = |args: &[&str]| {
        let ok = Command::new("git")
            .current_dir(&path)
            .args([
                "-c",
                "user.name=T",
                "-c",
                "user.email=t@example.com",
                "-c",
                "commit.gpgsign=false",
            ])
            .args(args)
            .status()
            .unwrap()
            .success();
        assert!(ok, "git {args:?}");
    };
    git(&["init", "-q", "-b", "main"]);
    git(&["add", "-A"]);
    git(&["commit", "-q", "-m", "init"]);
    Repo { _dir: dir, path }
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn last_json(out: &Output) -> Value {
    let text = stdout(out);
    let line = text.lines().last().unwrap_or_default();
    serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// The execution JSON on the last line of `run --json`.
fn last_execution(out: &Output) -> ExecutionView {
    serde_json::from_value(last_json(out)).unwrap()
}

fn wait_for(what: &str, mut check: impl FnMut() -> bool) {
    let ready =
        gantry_clock::blocking_poll(Duration::from_secs(60), Duration::from_millis(100), || {
            check().then_some(())
        });
    assert!(ready.is_some(), "timed out waiting for {what}");
}

const SIMPLE: &str = r##"
version: 1
name: simple
stages:
  - name: Source
    actions:
      - {name: checkout, type: source, outputs: [Src], namespace: Source}
  - name: Build
    actions:
      - name: hello
        type: shell
        inputs: [Src]
        commands: ['echo "commit #{Source.CommitId}"']
"##;

#[test]
fn validate_prints_every_error_with_its_location_and_exits_1() {
    let r = repo(
        "version: 1\nname: bad name\nstages:\n  - name: S\n    actions:\n      - {name: a, type: nope}\n",
    );
    let out = r.run(&["validate", "-f", "gantry.yaml"]);
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    assert!(
        text.contains("gantry.yaml:2:7: invalid pipeline name"),
        "{text}"
    );
    assert!(text.contains("gantry.yaml:6:"), "{text}");
    let ok = repo(SIMPLE).run(&["validate"]);
    assert_eq!(ok.status.code(), Some(0), "{}", stdout(&ok));
}

/// A buildspec is recognised and checked without running anything; its
/// warnings carry their place too.
#[test]
fn validate_checks_a_buildspec_without_running_it() {
    let r = repo(SIMPLE);
    std::fs::write(
        r.path.join("buildspec.yml"),
        "version: 0.2\nphases:\n  build:\n    on-failure: RETRY-2\n    commands: [touch ran.txt]\nartifacts:\n  type: zip\n  files: [ran.txt]\n",
    )
    .unwrap();
    let out = r.run(&["validate", "-f", "buildspec.yml"]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.contains("buildspec.yml:7:3: warning: `artifacts.type` is ignored"),
        "{text}"
    );
    assert!(
        text.contains("buildspec.yml: valid buildspec 0.2 (phases: build; 1 artifact"),
        "{text}"
    );
    assert!(!r.path.join("ran.txt").exists(), "validate ran the build");
    assert!(!r.data().exists(), "validate made a data dir");

    std::fs::write(
        r.path.join("tests.yml"),
        "version: 0.2\nphases:\n  build:\n    on-failure: RETRY-101\n    commands: 5\n",
    )
    .unwrap();
    let out = r.run(&["validate", "-f", "tests.yml"]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("tests.yml:4:17: `phases.build.on-failure` `RETRY-101`: the retry count"),
        "{text}"
    );
    assert!(
        text.contains("tests.yml:5:15: `phases.build.commands` must be a list of strings"),
        "{text}"
    );
}

/// A file of environments and services alone is a valid gantry file.
#[test]
fn validate_accepts_an_environments_only_file() {
    let r = repo(SIMPLE);
    std::fs::write(
        r.path.join("environments.yaml"),
        "version: 1\nenvironments:\n  staging: {runtime: process}\nservices:\n  web: {image: 127.0.0.1:7701/shop/web:latest, port: 8080}\n",
    )
    .unwrap();
    let out = r.run(&["validate", "-f", "environments.yaml"]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.contains("environments.yaml: valid (no pipeline, 1 environment, 1 service)"),
        "{text}"
    );
    std::fs::write(
        r.path.join("bad.yaml"),
        "version: 1\nenvironments:\n  staging: {runtime: moon}\n",
    )
    .unwrap();
    let out = r.run(&["validate", "-f", "bad.yaml"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(stdout(&out).contains("bad.yaml:3:"), "{}", stdout(&out));
}

#[test]
fn an_invalid_file_runs_nothing() {
    let r = repo("version: 1\nname: x\nstages: []\nbogus: 1\n");
    let out = r.run(&["run", "--json"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        !r.data().join("gantry.db").exists(),
        "nothing may start on an invalid file"
    );
}

#[test]
fn run_json_ends_with_the_execution_json() {
    let r = repo(SIMPLE);
    let out = r.run(&["run", "--json"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v = last_execution(&out);
    assert_eq!(v.status, "Succeeded");
    assert_eq!(v.pipeline, "simple");
    assert_eq!(
        v.action("Build", "hello").unwrap().status.as_deref(),
        Some("Succeeded")
    );
    assert!(v.finished_at.is_some());
    let id = v.id.as_str();
    let logs = stdout(&r.run(&["logs", id, "Build/hello"]));
    let commit = v.action("Source", "checkout").unwrap().output_variables["CommitId"].clone();
    assert!(logs.contains(&format!("commit {commit}")), "{logs}");
    let list: Vec<ExecutionView> =
        serde_json::from_str(&stdout(&r.run(&["executions", "--json"]))).unwrap();
    assert_eq!(list[0].id, id);

    // What started it, and the commit its source took.
    let trigger = list[0].trigger.as_ref().expect("a trigger");
    assert_eq!(
        (trigger.trigger_type.as_str(), trigger.by.as_deref()),
        ("manual", Some("admin"))
    );
    assert_eq!(list[0].source_revisions["checkout"], commit);
    let text = stdout(&r.run(&["status", id]));
    assert!(text.contains("started by manual (admin)"), "{text}");
    assert!(
        text.contains(&format!("source checkout at {}", &commit[..12])),
        "{text}"
    );
    // Under the header row, each execution ends with its trigger.
    let text = stdout(&r.run(&["executions"]));
    assert!(text.lines().next().unwrap().starts_with("ID"), "{text}");
    assert!(text.lines().nth(1).unwrap().ends_with("manual"), "{text}");
}

const GATED: &str = r##"
version: 1
name: gated
stages:
  - name: Source
    actions:
      - {name: checkout, type: source, outputs: [Src]}
  - name: Approve
    actions:
      - {name: release, type: approval, comments: "ship it?"}
  - name: Deploy
    actions:
      - {name: go, type: shell, inputs: [Src], commands: ["true"]}
"##;

/// Starts `gantry run` and returns it with the execution id, once the
/// approval waits.
fn run_until_approval(r: &Repo) -> (Child, String) {
    let child = r.spawn(&["run", "--json"]);
    let mut id = String::new();
    wait_for("the approval", || {
        let out = r.run(&["executions", "--json"]);
        let Ok(list) = serde_json::from_slice::<Vec<ExecutionView>>(&out.stdout) else {
            return false;
        };
        let Some(e) = list.into_iter().next() else {
            return false;
        };
        id = e.id.clone();
        e.action("Approve", "release").unwrap().status.as_deref() == Some("Waiting")
    });
    (child, id)
}

#[test]
fn an_approval_is_approved_from_a_second_terminal() {
    let r = repo(GATED);
    let (child, id) = run_until_approval(&r);
    let nothing = r.run(&["approve", &id, "Deploy/go"]);
    assert_eq!(nothing.status.code(), Some(1), "nothing waits at Deploy/go");
    // A name in the request is not an identity: a viewer claiming to be
    // an approver is refused, and nothing changes.
    let viewer = r.user("vic", &["viewer"]);
    let refused = r.run_as(&viewer, &["approve", &id, "Approve/release", "--by", "ann"]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("auth.forbidden"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    let ann = r.user("ann", &["approver"]);
    let out = r.run_as(
        &ann,
        &["approve", &id, "Approve/release", "--comment", "ok"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout(&out).contains("as ann"), "{}", stdout(&out));
    let run = child.wait_with_output().unwrap();
    assert_eq!(
        run.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert_eq!(last_json(&run)["status"], "Succeeded");
}

#[test]
fn an_approval_is_rejected_from_a_second_terminal() {
    let r = repo(GATED);
    let (child, id) = run_until_approval(&r);
    let bob = r.user("bob", &["approver"]);
    let out = r.run_as(&bob, &["reject", &id, "Approve/release", "--comment", "no"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let run = child.wait_with_output().unwrap();
    assert_eq!(run.status.code(), Some(1));
    let v = last_execution(&run);
    assert_eq!(v.status, "Failed");
    assert_eq!(
        v.action("Approve", "release").unwrap().error.as_deref(),
        Some("rejected by bob: no")
    );
}

const FLAKY: &str = r##"
version: 1
name: flaky
stages:
  - name: Work
    actions:
      - {name: flaky, type: shell, commands: ['test -f "#{variables.MARKER}"']}
variables:
  MARKER: /nonexistent
"##;

#[test]
fn a_failed_stage_is_retried_from_the_cli() {
    let r = repo(FLAKY);
    let marker = r.path.join("marker");
    let var = format!("MARKER={}", marker.display());
    let out = r.run(&["run", "--json", "--var", &var]);
    assert_eq!(out.status.code(), Some(1));
    let id = last_json(&out)["id"].as_str().unwrap().to_string();
    std::fs::write(&marker, "").unwrap();
    let retry = r.run(&["retry", &id, "Work"]);
    assert!(
        retry.status.success(),
        "{}",
        String::from_utf8_lossy(&retry.stderr)
    );
    let v = r.status(&id);
    assert_eq!(v.status, "Succeeded", "{v:#?}");
    assert_eq!(v.action("Work", "flaky").unwrap().attempt, 2);
}

fn server_pid(data: &Path) -> Option<u32> {
    let text = std::fs::read_to_string(data.join("server.json")).ok()?;
    serde_json::from_str::<Value>(&text).ok()?["pid"]
        .as_u64()
        .map(|p| p as u32)
}

/// The pids of the `sleep 300` processes started by builds of `r`'s data dir.
fn sleepers(r: &Repo) -> Vec<String> {
    let found = Command::new("pgrep")
        .args(["-f", "sleep 300"])
        .output()
        .unwrap();
    stdout(&found)
        .lines()
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/environ"))
                .map(|env| String::from_utf8_lossy(&env).contains(&r.data().display().to_string()))
                .unwrap_or(false)
        })
        .map(String::from)
        .collect()
}

#[test]
fn a_server_killed_with_sigkill_restarts_with_nothing_stuck() {
    let pipeline = r##"
version: 1
name: long
stages:
  - name: Work
    actions:
      - {name: slow, type: shell, commands: ["touch started", "sleep 300"]}
"##;
    let r = repo(pipeline);
    let mut server = r.spawn(&[
        "server",
        "--listen",
        "127.0.0.1:0",
        "--registry-listen",
        "127.0.0.1:0",
    ]);
    wait_for("server.json", || server_pid(&r.data()).is_some());
    let out = r.run(&["run", "--no-follow", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let id = last_json(&out)["id"].as_str().unwrap().to_string();
    wait_for("the action to start", || {
        r.status(&id)
            .action("Work", "slow")
            .unwrap()
            .status
            .as_deref()
            == Some("InProgress")
    });
    let started = r
        .data()
        .join("work")
        .join(&id)
        .join("Work-slow-1/src/started");
    wait_for("the command to run", || started.exists());
    // The kill must find the build's `sleep` running, or the test proves nothing.
    wait_for("the sleep to start", || !sleepers(&r).is_empty());
    server.kill().unwrap();
    server.wait().unwrap();
    // The next command finds no live server, starts one, and that one
    // recovers: the interrupted action fails, the sleep is killed.
    let v = r.status(&id);
    assert_eq!(v.status, "Failed", "{v:#?}");
    let slow = v.action("Work", "slow").unwrap();
    assert_eq!(slow.status.as_deref(), Some("Failed"));
    assert!(
        slow.error.as_deref().unwrap().starts_with("interrupted"),
        "{slow:?}"
    );
    let mine = sleepers(&r);
    assert!(
        mine.is_empty(),
        "orphaned build processes survive: {mine:?}"
    );
    // And the stage can be retried afterwards.
    let retry = r.run(&["stop", &id]);
    assert!(
        !retry.status.success(),
        "a failed execution cannot be stopped"
    );
}

#[test]
fn buildspec_run_json_follows_the_contract() {
    let r = repo(SIMPLE);
    std::fs::write(
        r.path.join("buildspec.yml"),
        "version: 0.2\nenv:\n  exported-variables: [V]\nphases:\n  build:\n    commands:\n      - V=1\n      - echo hi > out.txt\nartifacts:\n  files: [out.txt]\n",
    )
    .unwrap();
    let out = r.run(&[
        "buildspec",
        "run",
        "buildspec.yml",
        "--out",
        "dist",
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v = last_json(&out);
    assert_eq!(v["status"], "SUCCEEDED");
    assert_eq!(v["exported_variables"]["V"], "1");
    assert_eq!(v["phases"][0]["name"], "BUILD");
    assert_eq!(v["artifacts"][0], "out.txt");
    assert!(r.path.join("dist/out.txt").exists());
}

#[test]
fn test_reports_are_stored_with_the_action_and_shown_by_status() {
    let pipeline = r##"
version: 1
name: tested
stages:
  - name: Source
    actions:
      - {name: checkout, type: source, outputs: [Src]}
  - name: Test
    actions:
      - {name: unit, type: test, inputs: [Src], buildspec: tests.yml}
"##;
    let r = repo(pipeline);
    let junit = r#"<?xml version="1.0"?>
<testsuites><testsuite name="shop" tests="3" failures="1">
<testcase classname="shop" name="lists products"/>
<testcase classname="shop" name="opens a product"/>
<testcase classname="shop" name="places an order"><failure message="expected 201, got 500">trace</failure></testcase>
</testsuite></testsuites>"#;
    std::fs::write(r.path.join("junit.xml"), junit).unwrap();
    std::fs::write(
        r.path.join("tests.yml"),
        "version: 0.2\nphases:\n  build:\n    commands: ['echo running tests']\nreports:\n  unit:\n    files: [junit.xml]\n",
    )
    .unwrap();
    let add = Command::new("git")
        .current_dir(&r.path)
        .args(["add", "-A"])
        .status()
        .unwrap();
    assert!(add.success());
    let commit = Command::new("git")
        .current_dir(&r.path)
        .args([
            "-c",
            "user.name=T",
            "-c",
            "user.email=t@example.com",
            "commit",
            "-qm",
            "tests",
        ])
        .status()
        .unwrap();
    assert!(commit.success());
    let out = r.run(&["run", "--json"]);
    assert!(out.status.success(), "{}", stdout(&out));
    let id = last_json(&out)["id"].as_str().unwrap().to_string();
    let v = r.status(&id);
    let report = &v.action("Test", "unit").unwrap().reports.as_ref().unwrap()[0];
    assert_eq!((report.passed, report.failed), (2, 1), "{v:#?}");
    assert_eq!(report.failures[0].message, "expected 201, got 500");
    let human = stdout(&r.run(&["status", &id]));
    assert!(
        human.contains("tests unit: 2 passed, 1 failed, 0 skipped"),
        "{human}"
    );
    assert!(human.contains("places an order"), "{human}");
}

#[test]
fn run_no_follow_without_a_server_starts_one_in_the_background() {
    let r = repo(SIMPLE);
    let started = Instant::now();
    let out = r.run(&["run", "--no-follow", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let id = last_json(&out)["id"].as_str().unwrap().to_string();
    assert_eq!(
        stdout(&out).lines().count(),
        1,
        "only the id: {}",
        stdout(&out)
    );
    assert!(started.elapsed() < Duration::from_secs(20));
    wait_for("the background run", || r.status(&id).status == "Succeeded");
    // The background server exits by itself once idle.
    let pid = server_pid(&r.data());
    wait_for("the background server to exit", || {
        pid.is_none_or(|p| !Path::new(&format!("/proc/{p}")).exists())
            || !r.data().join("server.json").exists()
    });
}

/// A self-signed certificate for 127.0.0.1, made with openssl.
fn self_signed(dir: &Path) -> (PathBuf, PathBuf) {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let ok = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args([
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            // A server certificate, not a CA: rustls refuses a CA as end entity.
            "-addext",
            "basicConstraints=critical,CA:FALSE",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stderr(Stdio::null())
        .status()
        .unwrap()
        .success();
    assert!(ok, "openssl req");
    (cert, key)
}

#[test]
fn a_remote_cli_logs_in_over_tls_and_acts_as_its_user() {
    let r = repo(
        "version: 1\nname: remote\nstages:\n  - name: S\n    actions:\n      - {name: a, type: shell, commands: [\"true\"]}\n",
    );
    let (cert, key) = self_signed(&r.path);
    let mut server = r.spawn(&[
        "server",
        "--listen",
        "127.0.0.1:0",
        "--registry-listen",
        "127.0.0.1:0",
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
    ]);
    wait_for("server.json", || server_pid(&r.data()).is_some());
    let info: Value =
        serde_json::from_str(&std::fs::read_to_string(r.data().join("server.json")).unwrap())
            .unwrap();
    let url = info["api"].as_str().unwrap().to_string();
    assert!(url.starts_with("https://"), "{url}");
    let ops = r.user("ops", &["operator"]);
    let config = r.path.join("config");
    // Elsewhere: no data dir, only the URL, the CA and a token.
    let remote = |args: &[&str], token: Option<&str>, stdin: Option<&str>| {
        let mut cmd = gantry();
        cmd.current_dir(&r.path)
            .env("XDG_CONFIG_HOME", &config)
            .env("GANTRY_CA_CERT", &cert)
            .arg("--server")
            .arg(&url)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(token) = token {
            cmd.env("GANTRY_TOKEN", token);
        }
        let mut child = cmd.spawn().unwrap();
        {
            use std::io::Write;
            let mut input = child.stdin.take().unwrap();
            if let Some(text) = stdin {
                input.write_all(text.as_bytes()).unwrap();
            }
        }
        child.wait_with_output().unwrap()
    };
    let no_token = remote(&["executions"], None, None);
    assert_eq!(no_token.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&no_token.stderr).contains("gantry login"));
    let login = remote(&["login", &url], None, Some(&format!("{ops}\n")));
    assert!(
        login.status.success(),
        "{}",
        String::from_utf8_lossy(&login.stderr)
    );
    let stored = config.join("gantry/credentials.json");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&stored).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let me = remote(&["whoami"], None, None);
    assert!(stdout(&me).starts_with("ops (operator)"), "{}", stdout(&me));
    // The operator may run a pipeline but not read the audit log.
    let run = remote(&["run", "--json"], None, None);
    assert_eq!(
        run.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let audit = remote(&["audit"], None, None);
    assert_eq!(audit.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&audit.stderr).contains("auth.forbidden"));
    // Without the CA the certificate is not trusted.
    let mut untrusted = gantry();
    let out = untrusted
        .env("GANTRY_TOKEN", &ops)
        .args(["--server", &url, "whoami"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    // The admin reads who did what, from where.
    let audit = r.run(&["audit", "--json"]);
    let records: Value = serde_json::from_slice(&audit.stdout).unwrap();
    assert!(
        records
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["principal"] == "ops"
                && e["action"] == "POST /api/v1/executions"
                && e["outcome"] == "ok"
                && e["remote"]
                    .as_str()
                    .is_some_and(|a| a.starts_with("127.0.0.1:"))),
        "{records:#}"
    );
    let _ = server.kill();
    let _ = server.wait();
}
