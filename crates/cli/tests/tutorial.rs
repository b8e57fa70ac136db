//! `docs/tutorial.md` is run as written, so it cannot rot: every block
//! marked `file=PATH` is written (relative to an empty directory), and every
//! block marked `tutorial` is run by `sh -e`, in order, in the directory the
//! previous block ended in, with the `gantry` under test first on `PATH`. A
//! block marked `tutorial background` is started and left running: when its
//! output shows the command that approves a waiting approval (as the live
//! view prints it for a person to paste), that command is run, as the page
//! tells the reader to; the block must then end with exit status 0 before
//! the next block runs. Needs `git`, `python3` and `curl`.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// One fenced block of the page.
enum Block {
    File { path: String, text: String },
    Commands { text: String, background: bool },
}

fn blocks(page: &str) -> Vec<Block> {
    let mut out = Vec::new();
    let mut lines = page.lines();
    while let Some(line) = lines.next() {
        let Some(info) = line.strip_prefix("```") else {
            continue;
        };
        let words: Vec<&str> = info.split_whitespace().collect();
        let mut text = String::new();
        for l in lines.by_ref() {
            if l.starts_with("```") {
                break;
            }
            text.push_str(l);
            text.push('\n');
        }
        if let Some(path) = words.iter().find_map(|w| w.strip_prefix("file=")) {
            out.push(Block::File {
                path: path.to_string(),
                text,
            });
        } else if words.contains(&"tutorial") {
            out.push(Block::Commands {
                text,
                background: words.contains(&"background"),
            });
        }
    }
    out
}

fn available(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn shell(dir: &Path, path: &str, script: &str) -> Command {
    let mut cmd = Command::new("sh");
    cmd.args(["-ec", script])
        .current_dir(dir)
        .env("PATH", path)
        .env("NO_COLOR", "1")
        .env("GANTRY_LOG", "warn")
        .env_remove("GANTRY_DATA_DIR")
        .env_remove("GANTRY_TOKEN")
        .env_remove("GANTRY_SERVER");
    cmd
}

/// `gantry approve ID STAGE/ACTION` from a line of the live view.
fn approve_command(output: &str) -> Option<String> {
    let at = output.find("gantry approve ")?;
    let rest = &output[at..];
    let end = rest.find('\n').unwrap_or(rest.len());
    Some(rest[..end].trim().to_string())
}

#[test]
fn the_tutorial_runs_as_written() {
    for program in ["git", "python3", "curl"] {
        if !available(program) {
            eprintln!("skipped: the tutorial needs {program}");
            return;
        }
    }
    let page = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/tutorial.md"),
    )
    .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().canonicalize().unwrap();
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_gantry"));
    let path = format!(
        "{}:{}",
        bin.parent().unwrap().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    // Whatever happens below, the page's server and service are stopped at
    // the end (a replica left behind would hold the load balancer's port).
    let _stop = StopServices {
        bin: bin.clone(),
        root: root.clone(),
    };
    let cwd_file = root.join(".tutorial-cwd");
    let mut cwd = root.clone();
    let mut ran = 0;
    for block in blocks(&page) {
        match block {
            Block::File { path: file, text } => {
                let target = root.join(&file);
                std::fs::create_dir_all(target.parent().unwrap()).unwrap();
                std::fs::write(&target, text).unwrap();
            }
            Block::Commands {
                text,
                background: false,
            } => {
                let script = format!("{text}pwd > '{}'\n", cwd_file.display());
                let out = shell(&cwd, &path, &script).output().unwrap();
                assert!(
                    out.status.success(),
                    "`{}` failed in {}:\n{}{}",
                    text.trim(),
                    cwd.display(),
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                );
                cwd = PathBuf::from(std::fs::read_to_string(&cwd_file).unwrap().trim());
                if text.trim() == "gantry validate" {
                    // The page says what it prints; hold it to that.
                    let claim = page
                        .split_once("It prints `")
                        .and_then(|(_, rest)| rest.split_once('`'))
                        .map(|(claim, _)| claim)
                        .expect("the page says what `gantry validate` prints");
                    assert!(
                        String::from_utf8_lossy(&out.stdout).contains(claim),
                        "validate printed {}, the page says {claim}",
                        String::from_utf8_lossy(&out.stdout)
                    );
                }
                if text.contains("curl") {
                    assert!(
                        String::from_utf8_lossy(&out.stdout).contains("hello from gantry"),
                        "the service did not answer: {}",
                        String::from_utf8_lossy(&out.stdout)
                    );
                }
                ran += 1;
            }
            Block::Commands {
                text,
                background: true,
            } => {
                let mut child = shell(&cwd, &path, &text)
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap();
                let mut stdout = child.stdout.take().unwrap();
                let (tx, rx) = std::sync::mpsc::channel::<Vec<u8>>();
                std::thread::spawn(move || {
                    let mut buf = [0u8; 4096];
                    while let Ok(n) = stdout.read(&mut buf) {
                        if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                            break;
                        }
                    }
                });
                let mut seen = String::new();
                let approve = gantry_clock::blocking_poll(
                    Duration::from_secs(600),
                    Duration::from_millis(100),
                    || {
                        while let Ok(chunk) = rx.try_recv() {
                            seen.push_str(&String::from_utf8_lossy(&chunk));
                        }
                        approve_command(&seen)
                    },
                );
                let Some(approve) = approve else {
                    let _ = child.kill();
                    let out = child.wait_with_output().unwrap();
                    panic!(
                        "`{}` never waited for an approval:\n{seen}{}",
                        text.trim(),
                        String::from_utf8_lossy(&out.stderr)
                    );
                };
                let out = shell(&cwd, &path, &approve).output().unwrap();
                assert!(
                    out.status.success(),
                    "`{approve}` failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
                let mut stderr = String::new();
                child
                    .stderr
                    .take()
                    .unwrap()
                    .read_to_string(&mut stderr)
                    .unwrap();
                let status = child.wait().unwrap();
                while let Ok(chunk) = rx.try_recv() {
                    seen.push_str(&String::from_utf8_lossy(&chunk));
                }
                assert!(
                    status.success(),
                    "`{}` did not succeed:\n{seen}{stderr}",
                    text.trim()
                );
                ran += 1;
            }
        }
    }
    assert!(
        ran >= 6,
        "only {ran} command blocks ran: is the page's marking intact?"
    );
}

/// Stops the services and the server of every data dir one level under
/// `root` (where the page makes its project).
struct StopServices {
    bin: PathBuf,
    root: PathBuf,
}

impl Drop for StopServices {
    fn drop(&mut self) {
        let Ok(entries) = std::fs::read_dir(&self.root) else {
            return;
        };
        for entry in entries.flatten() {
            let data_dir = entry.path().join(".gantry");
            if data_dir.is_dir() {
                let _ = Command::new(&self.bin)
                    .arg("--data-dir")
                    .arg(&data_dir)
                    .args(["shutdown", "--stop-services"])
                    .output();
            }
        }
    }
}
