//! Helpers shared by the integration tests: a log sink that keeps lines,
//! buildspec builders, and a one-call build runner.
#![allow(dead_code, unreachable_pub)]

use std::path::Path;
use std::sync::Mutex;

use gantry_build::{BuildOutcome, BuildRequest, LogSink, run, shell_buildspec};
use gantry_spec::buildspec::{Buildspec, OnFailure, Phase, PhaseName};

/// Keeps every log line.
#[derive(Default)]
pub struct Lines(pub Mutex<Vec<String>>);

impl LogSink for Lines {
    fn line(&self, line: &str) {
        self.0.lock().unwrap().push(line.to_owned());
    }
}

impl Lines {
    pub fn all(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }

    /// Output lines only (not the runner's `[Container]` lines).
    pub fn output(&self) -> Vec<String> {
        self.all()
            .into_iter()
            .filter(|l| !l.starts_with("[Container]"))
            .collect()
    }

    pub fn text(&self) -> String {
        self.all().join("\n")
    }
}

pub fn phase(name: PhaseName, commands: &[&str]) -> Phase {
    Phase {
        name,
        commands: commands.iter().map(|c| (*c).to_owned()).collect(),
        finally: Vec::new(),
        on_failure: OnFailure::Abort,
        run_as: None,
    }
}

pub fn spec(phases: Vec<Phase>) -> Buildspec {
    let mut bs = shell_buildspec(Vec::new(), None, Vec::new());
    bs.phases = phases;
    bs
}

/// A request building in `dir/src` with artifacts in `dir/out`.
pub fn request(dir: &Path, bs: Buildspec) -> BuildRequest {
    let src = dir.join("src");
    std::fs::create_dir_all(&src).unwrap();
    BuildRequest::new(bs, src, dir.join("out"))
}

pub async fn build(req: BuildRequest) -> (BuildOutcome, Lines) {
    let lines = Lines::default();
    let outcome = run(req, &lines).await.expect("the build starts");
    (outcome, lines)
}

/// Whether a process is gone (or a zombie nobody reaps).
pub fn process_gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => {
            let after = &stat[stat.rfind(')').unwrap() + 1..];
            matches!(after.split_whitespace().next(), Some("Z" | "X"))
        }
    }
}
