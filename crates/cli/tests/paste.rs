//! Commands printed for a person to paste work when pasted: with no
//! `gantry` on PATH (the README's `cargo run` path), the approve hint
//! names this binary's real path, and running the printed line in a shell
//! approves the execution.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

const GATED: &str = r##"
version: 1
name: gated
stages:
  - name: Approve
    actions:
      - {name: release, type: approval}
  - name: Deploy
    actions:
      - {name: go, type: shell, commands: ["true"]}
"##;

/// A PATH with the system's tools and no gantry.
const SYSTEM_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

#[test]
fn the_printed_approve_command_names_the_real_binary_and_works_when_pasted() {
    assert!(
        !Path::new("/usr/local/bin/gantry").exists()
            && !Path::new("/usr/bin/gantry").exists()
            && !Path::new("/bin/gantry").exists(),
        "this test needs a PATH without gantry"
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("gantry.yaml"), GATED).unwrap();
    let gantry = |args: &[&str]| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_gantry"));
        cmd.current_dir(dir.path())
            .env_remove("GANTRY_DATA_DIR")
            .env_remove("GANTRY_TOKEN")
            .env_remove("GANTRY_SERVER")
            .env("GANTRY_LOG", "warn")
            .env("PATH", SYSTEM_PATH)
            .args(args);
        cmd
    };
    let run = gantry(&["run"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let id = {
        let found = gantry_clock::blocking_poll(
            Duration::from_secs(60),
            Duration::from_millis(100),
            || {
                let out = gantry(&["executions", "--json"]).output().ok()?;
                let list: Vec<gantry_api::ExecutionView> =
                    serde_json::from_slice(&out.stdout).ok()?;
                let e = list.into_iter().next()?;
                let waiting = e.action("Approve", "release")?.status.as_deref() == Some("Waiting");
                waiting.then_some(e.id)
            },
        );
        found.expect("the approval waits")
    };
    // `gantry status` shows the same hint.
    let exe = Path::new(env!("CARGO_BIN_EXE_gantry"))
        .canonicalize()
        .unwrap()
        .display()
        .to_string();
    let status = gantry(&["status", &id]).output().unwrap();
    let status = String::from_utf8_lossy(&status.stdout).into_owned();
    let expected = format!("{exe} approve {id} Approve/release");
    assert!(status.contains(&expected), "{status}");

    // Paste the line that `gantry status` printed into a shell.
    let line = status
        .lines()
        .find(|l| l.contains(&expected))
        .unwrap()
        .split_once("approve: ")
        .unwrap()
        .1
        .to_string();
    let pasted = Command::new("sh")
        .arg("-c")
        .arg(&line)
        .current_dir(dir.path())
        .env("PATH", SYSTEM_PATH)
        .env("GANTRY_LOG", "warn")
        .env_remove("GANTRY_DATA_DIR")
        .output()
        .unwrap();
    assert!(
        pasted.status.success(),
        "{line}: {}",
        String::from_utf8_lossy(&pasted.stderr)
    );
    let out = run.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    // The live view printed the same command while it waited.
    assert!(
        text.contains(&format!("approve with: {expected}")),
        "{text}"
    );
}
