//! `gantry param …` and parameters used by pipelines, end to end: values
//! from stdin, SecureStrings masked in listings and logs and absent from the
//! raw database, pinning by version and label, bad input.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use serde_json::Value;

struct Dir {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

fn dir(pipeline: Option<&str>) -> Dir {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("repo");
    std::fs::create_dir_all(&path).unwrap();
    if let Some(p) = pipeline {
        std::fs::write(path.join("gantry.yaml"), p).unwrap();
    }
    Dir { _dir: dir, path }
}

impl Dir {
    fn gantry(&self, args: &[&str], stdin: Option<&str>) -> Output {
        let mut child = Command::new(env!("CARGO_BIN_EXE_gantry"))
            .current_dir(&self.path)
            .env_remove("GANTRY_DATA_DIR")
            .env_remove("GANTRY_MASTER_KEY")
            .arg("--data-dir")
            .arg(self.path.join(".gantry"))
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut input = child.stdin.take().unwrap();
        if let Some(text) = stdin {
            input.write_all(text.as_bytes()).unwrap();
        }
        drop(input);
        child.wait_with_output().unwrap()
    }

    fn ok(&self, args: &[&str], stdin: Option<&str>) -> String {
        let out = self.gantry(args, stdin);
        assert!(
            out.status.success(),
            "gantry {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn json(&self, args: &[&str]) -> Value {
        serde_json::from_str(self.ok(args, None).trim()).unwrap()
    }
}

const SECRET: &str = "correct-horse-battery-staple";

#[test]
fn put_get_list_history_label_and_delete() {
    let d = dir(None);
    d.ok(
        &[
            "param",
            "put",
            "/shop/staging/SERVICE_DNS",
            "http://127.0.0.1:18080",
        ],
        None,
    );
    d.ok(
        &[
            "param",
            "put",
            "/shop/staging/DB_PASSWORD",
            "--type",
            "SecureString",
        ],
        Some(&format!("{SECRET}\n")),
    );
    assert_eq!(
        d.ok(&["param", "get", "/shop/staging/DB_PASSWORD"], None)
            .trim(),
        "***"
    );
    assert_eq!(
        d.ok(
            &["param", "get", "/shop/staging/DB_PASSWORD", "--decrypt"],
            None
        )
        .trim(),
        SECRET
    );
    let listed = d.ok(&["param", "list", "--path", "/shop", "--recursive"], None);
    assert!(
        listed.contains("SERVICE_DNS") && listed.contains("***") && !listed.contains(SECRET),
        "{listed}"
    );

    let exists = d.gantry(&["param", "put", "/shop/staging/SERVICE_DNS", "x"], None);
    assert_eq!(exists.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&exists.stderr).contains("param.already_exists"));
    d.ok(
        &[
            "param",
            "put",
            "/shop/staging/SERVICE_DNS",
            "http://v2",
            "--overwrite",
        ],
        None,
    );
    let history = d.json(&["param", "history", "/shop/staging/SERVICE_DNS", "--json"]);
    assert_eq!(history.as_array().unwrap().len(), 2);
    assert_eq!(history[1]["version"], 2);

    d.ok(
        &["param", "label", "/shop/staging/SERVICE_DNS:1", "stable"],
        None,
    );
    assert_eq!(
        d.ok(&["param", "get", "/shop/staging/SERVICE_DNS:stable"], None)
            .trim(),
        "http://127.0.0.1:18080"
    );
    assert_eq!(
        d.ok(&["param", "get", "/shop/staging/SERVICE_DNS:2"], None)
            .trim(),
        "http://v2"
    );
    let missing = d.gantry(&["param", "get", "/shop/staging/SERVICE_DNS:7"], None);
    assert_eq!(
        missing.status.code(),
        Some(1),
        "a missing version is an error, not a fallback"
    );

    let bad = d.gantry(&["param", "put", "/aws/x", "v"], None);
    assert!(String::from_utf8_lossy(&bad.stderr).contains("param.invalid_name"));
    let big = "x".repeat(8193);
    let too_big = d.gantry(&["param", "put", "/big", &big], None);
    assert!(String::from_utf8_lossy(&too_big.stderr).contains("param.value_too_large"));

    d.ok(&["param", "delete", "/shop/staging/SERVICE_DNS"], None);
    assert!(
        !d.gantry(&["param", "get", "/shop/staging/SERVICE_DNS"], None)
            .status
            .success()
    );

    let db = std::fs::read(d.path.join(".gantry/gantry.db")).unwrap();
    let wal = std::fs::read(d.path.join(".gantry/gantry.db-wal")).unwrap_or_default();
    for bytes in [db, wal] {
        assert!(
            !bytes.windows(SECRET.len()).any(|w| w == SECRET.as_bytes()),
            "plaintext secret in the database file"
        );
    }
}

#[test]
fn rotating_the_master_key_keeps_secrets_readable() {
    let d = dir(None);
    d.ok(
        &["param", "put", "/s", SECRET, "--type", "SecureString"],
        None,
    );
    let key_file = d.path.join(".gantry/params-master.key");
    let before = std::fs::read_to_string(&key_file).unwrap();
    d.ok(&["param", "rotate-key"], None);
    let after = std::fs::read_to_string(&key_file).unwrap();
    assert_ne!(before, after);
    assert_eq!(
        d.ok(&["param", "get", "/s", "--decrypt"], None).trim(),
        SECRET
    );
    // The old key no longer opens anything: a server started with it refuses.
    // The data dir's server outlives each command (in the background), so
    // stop it first: the next command starts one that reads the key file.
    d.ok(&["shutdown"], None);
    let info = d.path.join(".gantry/server.json");
    let stopped = gantry_clock::blocking_poll(
        std::time::Duration::from_secs(30),
        std::time::Duration::from_millis(50),
        || (!info.exists()).then_some(()),
    );
    assert!(stopped.is_some(), "the server did not stop");
    std::fs::write(&key_file, before).unwrap();
    let refused = d.gantry(&["param", "get", "/s", "--decrypt"], None);
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("master key"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
}

const PIPELINE: &str = r##"
version: 1
name: params
stages:
  - name: Build
    actions:
      - name: use
        type: shell
        env:
          DNS: "{{param:/shop/staging/SERVICE_DNS:stable}}"
          PASSWORD: "{{param:/shop/staging/DB_PASSWORD}}"
        commands:
          - echo "dns is $DNS"
          - echo "password is $PASSWORD"
          - test ${#PASSWORD} -eq 28
      - name: missing
        type: shell
        env: {X: "{{param:/shop/staging/NOPE}}"}
        commands: ["touch ran"]
"##;

#[test]
fn a_pipeline_uses_pinned_parameters_and_masks_secure_strings() {
    let d = dir(Some(PIPELINE));
    d.ok(
        &["param", "put", "/shop/staging/SERVICE_DNS", "http://old"],
        None,
    );
    d.ok(
        &[
            "param",
            "put",
            "/shop/staging/SERVICE_DNS",
            "http://new",
            "--overwrite",
        ],
        None,
    );
    d.ok(
        &["param", "label", "/shop/staging/SERVICE_DNS:1", "stable"],
        None,
    );
    d.ok(
        &[
            "param",
            "put",
            "/shop/staging/DB_PASSWORD",
            SECRET,
            "--type",
            "SecureString",
        ],
        None,
    );
    let out = d.gantry(&["run", "--json"], None);
    assert_eq!(
        out.status.code(),
        Some(1),
        "the missing parameter fails its action"
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let v: Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    let actions = v["stages"][0]["actions"].as_array().unwrap();
    assert_eq!(actions[0]["status"], "Succeeded", "{v:#}");
    assert_eq!(actions[1]["status"], "Failed");
    let error = actions[1]["error"].as_str().unwrap();
    assert!(
        error.contains("/shop/staging/NOPE") && error.contains("env X"),
        "{error}"
    );
    let id = v["id"].as_str().unwrap();
    let logs = d.ok(&["logs", id], None);
    assert!(
        logs.contains("dns is http://old"),
        "pinned to the label: {logs}"
    );
    assert!(logs.contains("password is ***"), "{logs}");
    assert!(
        logs.contains("Parameter DNS = /shop/staging/SERVICE_DNS (version 1)"),
        "{logs}"
    );
    assert!(!logs.contains(SECRET));
    let status = d.json(&["status", id, "--json"]);
    let params = status["stages"][0]["actions"][0]["parameters"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let dns = params
        .iter()
        .find(|p| p["var"] == "DNS")
        .unwrap_or_else(|| panic!("{status:#}"));
    assert_eq!(
        (dns["name"].as_str(), dns["version"].as_u64()),
        (Some("/shop/staging/SERVICE_DNS"), Some(1))
    );
    let password = params.iter().find(|p| p["var"] == "PASSWORD").unwrap();
    assert_eq!(password["secure"], true);
    let db = std::fs::read(d.path.join(".gantry/gantry.db")).unwrap();
    let wal = std::fs::read(d.path.join(".gantry/gantry.db-wal")).unwrap_or_default();
    for bytes in [db, wal] {
        assert!(
            !bytes.windows(SECRET.len()).any(|w| w == SECRET.as_bytes()),
            "plaintext secret in the database file"
        );
    }
}

#[test]
fn a_buildspec_reads_the_parameter_store_and_masks_every_value() {
    let d = dir(None);
    d.ok(
        &[
            "param",
            "put",
            "/ci/TOKEN",
            SECRET,
            "--type",
            "SecureString",
        ],
        None,
    );
    d.ok(
        &[
            "param",
            "put",
            "/ci/CREDS",
            r#"{"user":"robot","pass":"hunter2-hunter2"}"#,
            "--type",
            "SecureString",
        ],
        None,
    );
    std::fs::write(
        d.path.join("buildspec.yml"),
        "version: 0.2\nenv:\n  parameter-store:\n    TOKEN: /ci/TOKEN\n  secrets-manager:\n    PASS: /ci/CREDS:pass\nphases:\n  build:\n    commands:\n      - echo token=$TOKEN pass=$PASS\n      - test \"$PASS\" = hunter2-hunter2\n",
    )
    .unwrap();
    commit_build_pipeline(&d.path);
    let out = d.gantry(&["run", "--json"], None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let v: Value =
        serde_json::from_str(String::from_utf8_lossy(&out.stdout).lines().last().unwrap()).unwrap();
    let logs = d.ok(&["logs", v["id"].as_str().unwrap(), "Build/build"], None);
    assert!(logs.contains("token=*** pass=***"), "{logs}");
    assert!(!logs.contains(SECRET) && !logs.contains("hunter2-hunter2"));
}

/// `gantry buildspec run` reads parameter-store and secrets-manager values
/// from the data dir's store, as CodeBuild's local agent reads SSM; a
/// `--secret-env` value wins over the store's.
#[test]
fn buildspec_run_reads_the_data_dirs_parameter_store() {
    let d = dir(None);
    let put = |name: &str, value: &str| {
        d.ok(
            &["param", "put", name, value, "--type", "SecureString"],
            None,
        );
    };
    put("/ci/TOKEN", SECRET);
    put("/ci/CREDS", r#"{"user":"robot","pass":"hunter2-hunter2"}"#);
    put("/ci/OVERRIDDEN", "from-the-store");
    std::fs::write(
        d.path.join("buildspec.yml"),
        "version: 0.2\nenv:\n  parameter-store:\n    TOKEN: /ci/TOKEN\n    OVER: /ci/OVERRIDDEN\n  secrets-manager:\n    PASS: /ci/CREDS:pass\nphases:\n  build:\n    commands:\n      - echo token=$TOKEN pass=$PASS over=$OVER\n      - test \"$TOKEN\" = correct-horse-battery-staple\n      - test \"$PASS\" = hunter2-hunter2\n      - test \"$OVER\" = given-on-the-command-line\n",
    )
    .unwrap();
    let out = d.gantry(
        &[
            "buildspec",
            "run",
            "buildspec.yml",
            "--secret-env",
            "OVER=given-on-the-command-line",
            "--json",
        ],
        None,
    );
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    assert!(log.contains("token=*** pass=*** over=***"), "{log}");
    assert!(
        !log.contains(SECRET) && !log.contains("hunter2-hunter2"),
        "{log}"
    );
}

/// Without a reachable store (no server, no database), and with a store
/// that lacks some, every variable without a value is listed with how to
/// supply it, and nothing runs.
#[test]
fn buildspec_run_lists_every_missing_parameter_and_how_to_supply_it() {
    let d = dir(None);
    std::fs::write(
        d.path.join("buildspec.yml"),
        "version: 0.2\nenv:\n  parameter-store:\n    DOCKER_USER: /shop/docker/user\n    DOCKER_PASSWORD: /shop/docker/password\n  secrets-manager:\n    API_KEY: prod-api:key\nphases:\n  build:\n    commands:\n      - touch ran.txt\n",
    )
    .unwrap();
    let run = || {
        d.gantry(
            &[
                "buildspec",
                "run",
                "buildspec.yml",
                "--secret-env",
                "DOCKER_USER=shop-bot",
            ],
            None,
        )
    };
    let out = run();
    let text = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("buildspec.yml: 2 variables have no value; nothing was run:"),
        "{text}"
    );
    assert!(
        text.contains("\n  DOCKER_PASSWORD (env.parameter-store `/shop/docker/password`)\n"),
        "{text}"
    );
    assert!(
        text.contains("\n  API_KEY (env.secrets-manager `prod-api:key`)\nno parameter store was read: there is no gantry server or database in"),
        "{text}"
    );
    assert!(
        text.contains("--secret-env DOCKER_PASSWORD=VALUE"),
        "{text}"
    );
    assert!(!text.contains("DOCKER_USER ("), "{text}");
    assert!(!d.path.join(".gantry").exists(), "no data dir may be made");
    assert!(!d.path.join("ran.txt").exists());

    // A store holding one of the two: the other is listed, with the reason.
    d.ok(
        &[
            "param",
            "put",
            "/shop/docker/password",
            SECRET,
            "--type",
            "SecureString",
        ],
        None,
    );
    let out = run();
    let text = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("buildspec.yml: 1 variable has no value; nothing was run:"),
        "{text}"
    );
    assert!(
        text.contains("API_KEY (env.secrets-manager `prod-api:key`): "),
        "{text}"
    );
    assert!(
        text.contains("gantry param put prod-api '{\"KEY\": \"VALUE\"}' --type SecureString"),
        "{text}"
    );
    assert!(!text.contains("DOCKER_PASSWORD ("), "{text}");
    assert!(!d.path.join("ran.txt").exists());
}

/// A pipeline build whose buildspec names parameters the store lacks fails
/// naming every one of them, and how to supply them.
#[test]
fn a_pipeline_build_names_every_missing_parameter() {
    let d = dir(None);
    d.ok(
        &[
            "param",
            "put",
            "/ci/PRESENT",
            SECRET,
            "--type",
            "SecureString",
        ],
        None,
    );
    std::fs::write(
        d.path.join("buildspec.yml"),
        "version: 0.2\nenv:\n  parameter-store:\n    PRESENT: /ci/PRESENT\n    DB_PASS: /ci/DB_PASS\n  secrets-manager:\n    API_KEY: /ci/API:key\nphases:\n  build:\n    commands:\n      - touch ran.txt\n",
    )
    .unwrap();
    commit_build_pipeline(&d.path);
    let out = d.gantry(&["run", "--json"], None);
    assert_eq!(out.status.code(), Some(1));
    let v: Value =
        serde_json::from_str(String::from_utf8_lossy(&out.stdout).lines().last().unwrap()).unwrap();
    let error = v["stages"][1]["actions"][0]["error"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(error.contains("2 variables have no value: "), "{error}");
    assert!(
        error.contains("DB_PASS (buildspec env.parameter-store `/ci/DB_PASS`): "),
        "{error}"
    );
    assert!(
        error.contains("API_KEY (buildspec env.secrets-manager `/ci/API:key`): "),
        "{error}"
    );
    assert!(
        error.contains("gantry param put NAME --type SecureString"),
        "{error}"
    );
    assert!(!error.contains("PRESENT"), "{error}");
}

/// Commits, in a new repository at `dir`, a pipeline `bs` whose build
/// action runs the `buildspec.yml` already written there.
fn commit_build_pipeline(dir: &std::path::Path) {
    let pipeline = r##"
version: 1
name: bs
stages:
  - name: Source
    actions:
      - {name: checkout, type: source, outputs: [Src]}
  - name: Build
    actions:
      - {name: build, type: build, inputs: [Src]}
"##;
    std::fs::write(dir.join("gantry.yaml"), pipeline).unwrap();
    let git = |args: &[&str]| {
        assert!(
            Command::new("git")
                .current_dir(dir)
                .args(["-c", "user.name=T", "-c", "user.email=t@example.com"])
                .args(args)
                .status()
                .unwrap()
                .success()
        );
    };
    git(&["init", "-q", "-b", "main"]);
    git(&["add", "gantry.yaml", "buildspec.yml"]);
    git(&["commit", "-q", "-m", "init"]);
}
