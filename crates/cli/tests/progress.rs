//! What a newcomer can watch (issue 18 item 7): `gantry pipelines` with each
//! pipeline's newest execution, a header row on tabular output, `param
//! list` of the whole tree by default with an optional PATH. The real
//! binary in temporary directories.

mod project;

use gantry_api::PipelineSummary;
use project::{Project, stderr, stdout};

const QUICK: &str = r##"
version: 1
name: quick
stages:
  - name: Build
    actions:
      - {name: hello, type: shell, commands: ["echo hello"]}
"##;

const FAILING: &str = r##"
version: 1
name: failing
stages:
  - name: Build
    actions:
      - {name: broken, type: shell, commands: ["exit 3"]}
"##;

#[test]
fn pipelines_lists_each_pipeline_with_its_newest_execution() {
    let p = Project::new();
    std::fs::write(p.dir.join("quick.yaml"), QUICK).unwrap();
    std::fs::write(p.dir.join("failing.yaml"), FAILING).unwrap();
    p.ok(&["run", "-f", "quick.yaml", "--json"]);
    p.ok(&["run", "-f", "quick.yaml", "--json"]);
    let out = p.run(&["run", "-f", "failing.yaml", "--json"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));

    let list: Vec<PipelineSummary> = serde_json::from_str(&p.ok(&["pipelines", "--json"])).unwrap();
    let names: Vec<&str> = list.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["failing", "quick"]);
    assert_eq!(list[1].executions, 2);
    let newest = list[1].last_execution.as_ref().unwrap();
    assert_eq!(newest.status, "Succeeded");
    assert_eq!(list[0].last_execution.as_ref().unwrap().status, "Failed");

    let text = p.ok(&["pipelines"]);
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[0].starts_with("PIPELINE")
            && lines[0].contains("LAST STATUS")
            && lines[0].contains("TRIGGER"),
        "{text}"
    );
    assert!(
        lines[1].starts_with("failing") && lines[1].contains("Failed"),
        "{text}"
    );
    assert!(
        lines[2].starts_with("quick")
            && lines[2].contains("Succeeded")
            && lines[2].contains("manual")
            && lines[2].contains("s ago")
            && lines[2].contains(&newest.id),
        "{text}"
    );

    let text = p.ok(&["executions"]);
    let header = text.lines().next().unwrap_or_default();
    assert!(
        header.starts_with("ID") && header.contains("PIPELINE") && header.contains("STATUS"),
        "{text}"
    );
    assert_eq!(text.lines().count(), 4, "{text}");
}

#[test]
fn param_list_shows_the_whole_tree_under_a_header() {
    let p = Project::new();
    p.ok(&["param", "put", "/shop/staging/DB_URL", "postgres://db"]);
    p.ok(&["param", "put", "/other/KEY", "v"]);

    let text = p.ok(&["param", "list"]);
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[0].starts_with("NAME") && lines[0].contains("VALUE"),
        "{text}"
    );
    assert!(
        text.contains("/shop/staging/DB_URL") && text.contains("/other/KEY"),
        "{text}"
    );

    let text = p.ok(&["param", "list", "/shop"]);
    assert!(
        text.contains("/shop/staging/DB_URL") && !text.contains("/other/KEY"),
        "{text}"
    );
    // The flag of before still works.
    let text = p.ok(&["param", "list", "--path", "/shop", "--recursive"]);
    assert!(text.contains("/shop/staging/DB_URL"), "{text}");

    let out = p.run(&["param", "list", "/shop", "--one-level"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(stdout(&out).is_empty(), "{}", stdout(&out));
    assert!(
        stderr(&out)
            .contains("no parameters under /shop (one level; drop --one-level for the tree)"),
        "{}",
        stderr(&out)
    );
}

/// In a terminal, the live view shows the running action's last log lines
/// under it. `script` gives `gantry run` a pseudo-terminal; the action waits
/// for a file the test writes once the view has shown its line, so nothing
/// depends on timing.
#[test]
fn the_live_view_shows_the_running_actions_last_lines() {
    use std::io::Read;
    if std::process::Command::new("script")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("skipped: no `script` to give gantry a terminal");
        return;
    }
    let p = Project::new();
    let release = p.dir.join("release");
    let pipeline = format!(
        r##"
version: 1
name: tail
stages:
  - name: Build
    actions:
      - name: work
        type: shell
        commands:
          - echo compiling-the-first-part
          - while [ ! -e "{}" ]; do sleep 0.1; done
          - echo done
"##,
        release.display()
    );
    std::fs::write(p.dir.join("gantry.yaml"), pipeline).unwrap();
    let command = format!(
        "{} --data-dir {} run -f gantry.yaml",
        env!("CARGO_BIN_EXE_gantry"),
        p.dir.join(".gantry").display()
    );
    let mut child = gantry_script(&p.dir, &command);
    let mut stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<Vec<u8>>();
    let reader = std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    let mut seen = String::new();
    let shown = gantry_clock::blocking_poll(
        std::time::Duration::from_secs(60),
        std::time::Duration::from_millis(50),
        || {
            while let Ok(chunk) = rx.try_recv() {
                seen.push_str(&String::from_utf8_lossy(&chunk));
            }
            seen.contains("│ compiling-the-first-part").then_some(())
        },
    );
    std::fs::write(&release, "").unwrap();
    let status = child.wait().unwrap();
    let _ = reader.join();
    while let Ok(chunk) = rx.try_recv() {
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(
        shown.is_some(),
        "the view never showed the log line:\n{seen}"
    );
    assert!(status.success(), "{seen}");
}

/// `command` run by `script` in a pseudo-terminal, its output piped.
fn gantry_script(dir: &std::path::Path, command: &str) -> std::process::Child {
    std::process::Command::new("script")
        .args(["-q", "-e", "-c", command, "/dev/null"])
        .current_dir(dir)
        .env_remove("GANTRY_DATA_DIR")
        .env_remove("GANTRY_TOKEN")
        .env_remove("GANTRY_SERVER")
        .env("NO_COLOR", "1")
        .env("GANTRY_LOG", "warn")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}
