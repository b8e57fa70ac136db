//! How the `gantry` binary behaves for a newcomer (issue 18): which data
//! dir a command finds, what Ctrl-C does, exit codes of commands that wait,
//! unknown targets, broken pipes, what `stop` says, who approved, and
//! colour. Real processes in temporary directories, no `--data-dir` unless
//! a test says so.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use gantry_api::ExecutionView;

fn gantry() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_gantry"));
    cmd.env_remove("GANTRY_DATA_DIR")
        .env_remove("GANTRY_TOKEN")
        .env_remove("GANTRY_SERVER")
        .env_remove("NO_COLOR")
        .env("GANTRY_LOG", "warn");
    cmd
}

/// Runs gantry in `dir`.
fn run_in(dir: &Path, args: &[&str]) -> Output {
    gantry().current_dir(dir).args(args).output().unwrap()
}

fn spawn_in(dir: &Path, args: &[&str]) -> Child {
    gantry()
        .current_dir(dir)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn wait_for(what: &str, mut check: impl FnMut() -> bool) {
    let ready =
        gantry_clock::blocking_poll(Duration::from_secs(60), Duration::from_millis(100), || {
            check().then_some(())
        });
    assert!(ready.is_some(), "timed out waiting for {what}");
}

/// A temporary directory holding `project/p/gantry.yaml` (no git needed:
/// the pipelines here have no source action). The data dirs these tests
/// expect are found by searching parents, so a `.gantry/` above the
/// temporary directory would make them prove nothing.
struct Project {
    _tmp: tempfile::TempDir,
    root: PathBuf,
}

impl Project {
    fn new(pipeline: &str) -> Project {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().canonicalize().unwrap();
        assert!(
            root.ancestors()
                .skip(1)
                .all(|d| !d.join(".gantry").is_dir()),
            "a .gantry/ above {} would be found by every command here",
            root.display()
        );
        let project = root.join("project");
        std::fs::create_dir_all(project.join("p")).unwrap();
        std::fs::write(project.join("p/gantry.yaml"), pipeline).unwrap();
        std::fs::create_dir_all(root.join("elsewhere")).unwrap();
        Project { _tmp: tmp, root }
    }

    /// The project's directory (the pipeline file is in `p/` below it).
    fn dir(&self) -> PathBuf {
        self.root.join("project")
    }

    fn run(&self, args: &[&str]) -> Output {
        run_in(&self.dir(), args)
    }

    fn status(&self, id: &str) -> ExecutionView {
        let out = self.run(&["status", id, "--json"]);
        assert!(out.status.success(), "status: {}", stderr(&out));
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// The newest execution, once there is one.
    fn newest(&self) -> Option<ExecutionView> {
        let out = self.run(&["executions", "--json"]);
        serde_json::from_slice::<Vec<ExecutionView>>(&out.stdout)
            .ok()?
            .into_iter()
            .next()
    }

    /// Adds a user with `grants` and returns a token of theirs.
    fn user(&self, name: &str, grants: &[&str]) -> String {
        let mut args = vec!["user", "add", name];
        for g in grants {
            args.extend(["--grant", g]);
        }
        let out = self.run(&args);
        assert!(out.status.success(), "{}", stderr(&out));
        let out = self.run(&["token", "create", "--user", name]);
        assert!(out.status.success(), "{}", stderr(&out));
        stdout(&out).trim().to_string()
    }
}

const QUICK: &str = r##"
version: 1
name: quick
stages:
  - name: Build
    actions:
      - {name: hello, type: shell, commands: ["echo hello from quick"]}
"##;

const GATED: &str = r##"
version: 1
name: gated
stages:
  - name: Build
    actions:
      - {name: hello, type: shell, commands: ["echo built"]}
  - name: Approve
    actions:
      - {name: release, type: approval, comments: "ship it?"}
"##;

const LONG: &str = r##"
version: 1
name: long
stages:
  - name: Work
    actions:
      - {name: slow, type: shell, commands: ["sleep 300"]}
"##;

#[test]
fn the_data_dir_is_found_in_parents_and_reading_never_makes_one() {
    let p = Project::new(QUICK);
    let out = p.run(&["run", "-f", "p/gantry.yaml", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let id = serde_json::from_str::<ExecutionView>(stdout(&out).lines().last().unwrap())
        .unwrap()
        .id;
    // `run` keeps its data dir where it was typed, so the same directory's
    // next command finds the run.
    assert!(p.dir().join(".gantry").is_dir());
    assert!(!p.dir().join("p/.gantry").exists());
    for dir in [p.dir(), p.dir().join("p")] {
        let out = run_in(&dir, &["executions", "--json"]);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        let list: Vec<ExecutionView> = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(list[0].id, id, "from {}", dir.display());
    }
    let out = run_in(&p.dir().join("p"), &["logs", &id]);
    assert!(
        stdout(&out).contains("hello from quick"),
        "{}",
        stdout(&out)
    );

    // Not found: the error says where it looked.
    let out = p.run(&["status", "no-such-execution"]);
    assert_eq!(out.status.code(), Some(1));
    let data_dir = p.dir().join(".gantry");
    assert!(
        stderr(&out).contains(&format!(
            "execution no-such-execution does not exist (looked in the data dir {}) [execution.not_found]",
            data_dir.display()
        )),
        "{}",
        stderr(&out)
    );

    // Outside the project there is no data dir, and reading makes none.
    let elsewhere = p.root.join("elsewhere");
    for args in [
        &["executions"][..],
        &["status", &id],
        &["logs", &id],
        &["watch", &id],
        &["param", "list"],
        &["env", "list"],
    ] {
        let out = run_in(&elsewhere, args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert!(
            stderr(&out).contains(&format!(
                "no gantry data dir: there is no .gantry/ in {} or its parents",
                elsewhere.display()
            )),
            "{args:?}: {}",
            stderr(&out)
        );
    }
    let named = elsewhere.join("named");
    let out = run_in(
        &elsewhere,
        &["--data-dir", named.to_str().unwrap(), "executions"],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains(&format!("no gantry data dir at {}", named.display())),
        "{}",
        stderr(&out)
    );
    let made: Vec<_> = std::fs::read_dir(&elsewhere).unwrap().collect();
    assert!(made.is_empty(), "reading made {made:?}");
}

#[test]
fn ctrl_c_detaches_watch_reattaches_and_the_approver_is_shown() {
    let p = Project::new(GATED);
    let mut run = spawn_in(&p.dir(), &["run", "-f", "p/gantry.yaml"]);
    // The live view shows the wait only once `run` follows (and so handles
    // Ctrl-C): a signal before that would end it the default way.
    let mut view = std::io::BufReader::new(run.stdout.take().unwrap());
    let mut shown = String::new();
    while !shown.contains("Approve/release: Waiting") {
        let read = std::io::BufRead::read_line(&mut view, &mut shown).unwrap();
        assert_ne!(read, 0, "the view ended before the wait: {shown}");
    }
    let id = p.newest().expect("the execution").id;
    let interrupted = Command::new("kill")
        .args(["-INT", &run.id().to_string()])
        .status()
        .unwrap();
    assert!(interrupted.success());
    let out = wait_with_output(&mut run);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!("detached from {id}; it goes on in the server of")),
        "{}",
        stderr(&out)
    );
    // `gantry` when the gantry on PATH is this binary, else its real path.
    let exe = Path::new(env!("CARGO_BIN_EXE_gantry"))
        .canonicalize()
        .unwrap();
    let reattach = |program: &str| format!("re-attach: {program} watch {id}");
    assert!(
        stderr(&out).contains(&reattach("gantry"))
            || stderr(&out).contains(&reattach(&exe.display().to_string())),
        "{}",
        stderr(&out)
    );
    // Nothing was abandoned: the approval still waits.
    let v = p.status(&id);
    assert_eq!(v.status, "InProgress");
    assert_eq!(
        v.action("Approve", "release").unwrap().status.as_deref(),
        Some("Waiting")
    );

    let watch = spawn_in(&p.dir(), &["watch", &id, "--json"]);
    let ann = p.user("ann", &["approver"]);
    let out = gantry()
        .current_dir(p.dir().join("p"))
        .env("GANTRY_TOKEN", &ann)
        .args(["approve", &id, "Approve/release", "--comment", "ok"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).contains("as ann"), "{}", stdout(&out));
    let out = watch.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let v: ExecutionView = serde_json::from_str(stdout(&out).lines().last().unwrap()).unwrap();
    assert_eq!(v.status, "Succeeded");

    // Who approved: in the JSON and in `status`.
    let v = p.status(&id);
    let decided = v
        .action("Approve", "release")
        .unwrap()
        .decided
        .clone()
        .expect("the decision");
    assert_eq!(
        (decided.decision.as_str(), decided.by.as_str()),
        ("Approved", "ann")
    );
    assert_eq!(decided.comment.as_deref(), Some("ok"));
    let text = stdout(&p.run(&["status", &id]));
    assert!(text.contains("approved by ann: ok"), "{text}");

    // Deciding it again: nothing waits, and it says so.
    let out = p.run(&["approve", &id, "Approve/release"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains(&format!(
            "nothing waits for approval at Approve/release (execution {id} has ended: Succeeded)"
        )),
        "{}",
        stderr(&out)
    );
}

/// Waits for a child that was told to end (or ends by itself) within a
/// minute, and reads what it wrote to the pipes the test did not take.
fn wait_with_output(child: &mut Child) -> Output {
    wait_for("the command to end", || child.try_wait().unwrap().is_some());
    let mut out = Output {
        status: child.wait().unwrap(),
        stdout: Vec::new(),
        stderr: Vec::new(),
    };
    use std::io::Read;
    if let Some(mut stdout) = child.stdout.take() {
        stdout.read_to_end(&mut out.stdout).unwrap();
    }
    if let Some(mut stderr) = child.stderr.take() {
        stderr.read_to_end(&mut out.stderr).unwrap();
    }
    out
}

#[test]
fn retry_exits_by_the_retried_stage_and_unknown_targets_are_errors() {
    let flaky = r##"
version: 1
name: flaky
variables:
  MARKER: /nonexistent
stages:
  - name: Work
    actions:
      - {name: flaky, type: shell, commands: ['test -f "#{variables.MARKER}"']}
"##;
    let p = Project::new(flaky);
    let marker = p.root.join("marker");
    let var = format!("MARKER={}", marker.display());
    let out = p.run(&["run", "-f", "p/gantry.yaml", "--json", "--var", &var]);
    assert_eq!(out.status.code(), Some(1));
    let id = p.newest().unwrap().id;

    let out = p.run(&["retry", &id, "Work"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "the retried stage failed again: {}",
        stderr(&out)
    );
    assert_eq!(p.status(&id).action("Work", "flaky").unwrap().attempt, 2);
    // `logs --follow` waits for the end too, and says how it went.
    let out = p.run(&["logs", &id, "Work/flaky", "--follow"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    std::fs::write(&marker, "").unwrap();
    let out = p.run(&["retry", &id, "Work"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(p.status(&id).status, "Succeeded");
    let out = p.run(&["logs", &id, "--follow"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));

    // Unknown targets are errors, not empty answers.
    let out = p.run(&["logs", &id, "Work/nope"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains(&format!(
            "execution {id} has no action Work/nope; its actions: Work/flaky"
        )),
        "{}",
        stderr(&out)
    );
    let out = p.run(&["logs", "no-such-execution"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("[execution.not_found]"),
        "{}",
        stderr(&out)
    );
    let out = p.run(&["retry", &id, "Nope"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("Nope"), "{}", stderr(&out));
}

#[test]
fn broken_pipes_end_quietly() {
    let p = Project::new(QUICK);
    let out = p.run(&["run", "-f", "p/gantry.yaml", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let id = p.newest().unwrap().id;
    for args in [
        &["status", &id][..],
        &["status", &id, "--json"],
        &["executions"],
        &["logs", &id],
        &["watch", &id],
    ] {
        // `gantry … | head -0`: the reader is gone before anything is written.
        let mut child = spawn_in(&p.dir(), args);
        drop(child.stdout.take());
        let out = wait_with_output(&mut child);
        let said = stderr(&out);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {said}");
        assert!(!said.contains("panicked"), "{args:?}: {said}");
        assert!(said.trim().is_empty(), "{args:?} said: {said}");
    }
}

#[test]
fn stop_says_what_it_did_and_abandoned_actions_say_why() {
    let p = Project::new(LONG);
    let out = p.run(&["run", "-f", "p/gantry.yaml", "--no-follow"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let id = stdout(&out).trim().to_string();
    wait_for("the action to run", || {
        p.status(&id)
            .action("Work", "slow")
            .unwrap()
            .status
            .as_deref()
            == Some("InProgress")
    });
    let out = p.run(&["stop", &id, "--abandon", "--reason", "not today"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains(&format!("stopped {id}")), "{text}");
    assert!(text.contains("abandoned: Work/slow"), "{text}");
    assert!(text.contains("reason: not today"), "{text}");
    let v = p.status(&id);
    assert_eq!(v.status, "Stopped");
    let slow = v.action("Work", "slow").unwrap();
    assert_eq!(slow.status.as_deref(), Some("Abandoned"));
    assert_eq!(
        slow.error.as_deref(),
        Some("abandoned: the execution was stopped: not today")
    );
}

#[test]
fn no_colour_under_no_color_nor_in_the_server_log() {
    let p = Project::new(QUICK);
    let out = p.run(&["run", "-f", "p/gantry.yaml", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let id = p.newest().unwrap().id;
    let log = std::fs::read(p.dir().join(".gantry/server.log")).unwrap();
    assert!(!log.is_empty());
    assert!(
        !log.contains(&0x1b),
        "colour codes in server.log:\n{}",
        String::from_utf8_lossy(&log)
    );
    // In a terminal (script(1) gives it one): coloured, unless NO_COLOR.
    let in_terminal = |no_color: bool| {
        let mut cmd = Command::new("script");
        cmd.current_dir(p.dir())
            .env_remove("GANTRY_DATA_DIR")
            .env("GANTRY_LOG", "warn")
            .args(["-qec"])
            .arg(format!("{} status {id}", env!("CARGO_BIN_EXE_gantry")))
            .arg("/dev/null");
        if no_color {
            cmd.env("NO_COLOR", "1");
        } else {
            cmd.env_remove("NO_COLOR");
        }
        cmd.output()
    };
    let Ok(coloured) = in_terminal(false) else {
        eprintln!("skipped the terminal half: no script(1)");
        return;
    };
    assert!(coloured.status.success(), "{}", stderr(&coloured));
    assert!(coloured.stdout.contains(&0x1b), "{}", stdout(&coloured));
    let plain = in_terminal(true).unwrap();
    assert!(plain.status.success(), "{}", stderr(&plain));
    assert!(stdout(&plain).contains("Succeeded"), "{}", stdout(&plain));
    assert!(!plain.stdout.contains(&0x1b), "{}", stdout(&plain));
}
