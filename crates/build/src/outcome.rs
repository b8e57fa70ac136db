//! What a build produced, and its `buildspec run --json` form.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use gantry_spec::buildspec::PhaseName;
use serde_json::{Value, json};

/// The status of a build, or of one phase (CodeBuild uses one set for both).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BuildStatus {
    Succeeded,
    Failed,
    TimedOut,
    Stopped,
}

impl BuildStatus {
    /// `SUCCEEDED`, `FAILED`, `TIMED_OUT`, `STOPPED`, as CodeBuild prints them.
    pub fn as_str(self) -> &'static str {
        match self {
            BuildStatus::Succeeded => "SUCCEEDED",
            BuildStatus::Failed => "FAILED",
            BuildStatus::TimedOut => "TIMED_OUT",
            BuildStatus::Stopped => "STOPPED",
        }
    }
}

/// One phase that ran.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PhaseOutcome {
    pub name: PhaseName,
    pub status: BuildStatus,
    pub duration: Duration,
}

/// One artifact written under the request's `out_dir`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArtifactOutput {
    /// `None` for the primary artifact, else the secondary artifact's identifier.
    pub identifier: Option<String>,
    /// `out_dir` for the primary artifact, `out_dir/<identifier>` for a secondary one.
    pub dir: PathBuf,
    /// Files written, relative to `dir`, `/`-separated, sorted.
    pub files: Vec<String>,
}

/// The summary of one report group's JUnit files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestReport {
    pub group: String,
    pub passed: usize,
    pub failed: usize,
    pub skipped: usize,
    /// Failed and errored test cases (masked), at most [`TestReport::MAX_FAILURES`].
    pub failures: Vec<TestFailure>,
}

impl TestReport {
    /// Failures kept per report group; the counts stay exact beyond it.
    pub const MAX_FAILURES: usize = 1000;

    /// The report as `buildspec run --json`, an action's `reports` detail
    /// and an agent's finish request carry it.
    pub fn to_json(&self) -> Value {
        json!({
            "group": self.group,
            "passed": self.passed,
            "failed": self.failed,
            "skipped": self.skipped,
            "failures": self.failures.iter()
                .map(|f| json!({"name": f.name, "message": f.message}))
                .collect::<Vec<_>>(),
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestFailure {
    /// `classname.name`, or `name` when the case has no class name.
    pub name: String,
    pub message: String,
}

/// What [`crate::run`] reports about a build that ran.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildOutcome {
    pub status: BuildStatus,
    /// Phases that ran, in order.
    pub phases: Vec<PhaseOutcome>,
    /// `env.exported-variables` that were set at the end of the build (masked).
    pub exported_variables: BTreeMap<String, String>,
    pub artifacts: Vec<ArtifactOutput>,
    pub reports: Vec<TestReport>,
    /// The first failure, masked; `None` when the build succeeded.
    pub error: Option<String>,
}

impl BuildOutcome {
    /// The phases that did not succeed, by name.
    pub fn failed_phases(&self) -> Vec<String> {
        self.phases
            .iter()
            .filter(|p| p.status != BuildStatus::Succeeded)
            .map(|p| p.name.as_str().to_string())
            .collect()
    }
}

/// The `buildspec run --json` document (formats.md §3).
///
/// `status` is `SUCCEEDED` or `FAILED` as the contract says; a timed-out
/// or stopped build is `FAILED` there, and the extra `build_status` field
/// carries CodeBuild's finer status (`TIMED_OUT`, `STOPPED`). Likewise a
/// phase cut short by a timeout is `FAILED`. Extra fields: `build_status`,
/// `error`, `reports`, and `duration_ms` per phase. `artifacts` are paths
/// relative to `out_dir`.
pub fn outcome_json(outcome: &BuildOutcome, out_dir: &Path) -> Value {
    let status = match outcome.status {
        BuildStatus::Succeeded => "SUCCEEDED",
        _ => "FAILED",
    };
    let phases: Vec<Value> = outcome
        .phases
        .iter()
        .map(|p| {
            json!({
                "name": p.name.as_str(),
                "status": if p.status == BuildStatus::Succeeded { "SUCCEEDED" } else { "FAILED" },
                "duration_ms": u64::try_from(p.duration.as_millis()).unwrap_or(u64::MAX),
            })
        })
        .collect();
    let mut artifacts = Vec::new();
    for artifact in &outcome.artifacts {
        let prefix = artifact.dir.strip_prefix(out_dir).unwrap_or(&artifact.dir);
        let prefix = prefix.to_string_lossy().replace('\\', "/");
        for file in &artifact.files {
            if prefix.is_empty() {
                artifacts.push(file.clone());
            } else {
                artifacts.push(format!("{prefix}/{file}"));
            }
        }
    }
    let reports: Vec<Value> = outcome.reports.iter().map(TestReport::to_json).collect();
    json!({
        "status": status,
        "build_status": outcome.status.as_str(),
        "phases": phases,
        "exported_variables": outcome.exported_variables,
        "artifacts": artifacts,
        "reports": reports,
        "error": outcome.error,
    })
}
