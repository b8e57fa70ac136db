//! Executions: the execution view (`gantry status --json`,
//! `GET /api/v1/executions/{id}`), starting, retrying and stopping one, its
//! logs, and the long poll for changes.

use std::collections::BTreeMap;
use std::path::PathBuf;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// An execution, as the API and `status --json` show it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ExecutionView {
    pub id: String,
    pub pipeline: String,
    /// `InProgress`, `Stopping`, `Stopped`, `Succeeded`, `Superseded`, `Failed`.
    pub status: String,
    /// RFC 3339.
    pub started_at: String,
    pub finished_at: Option<String>,
    /// `variables.NAME` → value.
    pub variables: BTreeMap<String, String>,
    /// The stage this execution waits to enter (another execution holds it).
    pub waiting_at: Option<String>,
    pub stop_reason: Option<String>,
    pub stages: Vec<StageView>,
    /// What started it (CodePipeline's `trigger`); null for executions
    /// started before gantry recorded it.
    #[serde(default)]
    pub trigger: Option<ExecutionTrigger>,
    /// Source action name → the commit it is pinned to, or took when it
    /// ran (CodePipeline's `sourceRevisions`). Empty until a source action
    /// ran, unless a trigger pinned one.
    #[serde(default)]
    pub source_revisions: BTreeMap<String, String>,
}

/// What started an execution.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ExecutionTrigger {
    /// `manual`, `webhook`, `poll`, `schedule` or `pipeline`.
    #[serde(rename = "type")]
    pub trigger_type: String,
    /// What exactly: the user, the webhook's provider and delivery id, the
    /// polled ref, the schedule and its fire time, the upstream execution.
    pub detail: String,
    /// The identity that started it, when a person did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
    /// The pull request it runs, when a `pull_request` trigger started it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pull_request: Option<ExecutionPullRequest>,
}

/// The pull (merge) request an execution runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ExecutionPullRequest {
    /// The source action pinned to its head commit.
    pub source: String,
    /// The number the forge shows.
    pub number: u64,
    /// `opened`, `updated` or `closed`.
    pub event: String,
    pub title: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// The head branch.
    pub source_branch: String,
    /// The base branch.
    pub destination_branch: String,
    /// Whether a closed pull request was merged.
    #[serde(default)]
    pub merged: bool,
}

impl ExecutionView {
    /// Whether the execution has ended.
    pub fn is_finished(&self) -> bool {
        matches!(
            self.status.as_str(),
            "Succeeded" | "Failed" | "Stopped" | "Superseded"
        )
    }

    pub fn stage(&self, name: &str) -> Option<&StageView> {
        self.stages.iter().find(|s| s.name == name)
    }

    /// The action `name` of stage `stage`.
    pub fn action(&self, stage: &str, name: &str) -> Option<&ActionView> {
        self.stage(stage)?.actions.iter().find(|a| a.name == name)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct StageView {
    pub name: String,
    /// `InProgress`, `Succeeded`, `Failed`, `Stopped`, `Stopping`, or null
    /// when not reached.
    pub status: Option<String>,
    pub actions: Vec<ActionView>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ActionView {
    pub name: String,
    /// `InProgress`, `Waiting`, `Succeeded`, `Failed`, `Abandoned`, or null
    /// when not started.
    pub status: Option<String>,
    pub attempt: u32,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub error: Option<String>,
    pub output_variables: BTreeMap<String, String>,
    /// Output artifact name → artifact id.
    pub output_artifacts: BTreeMap<String, String>,
    /// The action's type (`source`, `build`, …), when its definition is known.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub action_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_order: Option<u32>,
    /// What an approval asks, references resolved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<ApprovalPrompt>,
    /// The parameter versions the latest attempt resolved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<Vec<ParameterUse>>,
    /// The test reports of the latest attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reports: Option<Vec<TestReport>>,
    /// How a person decided the latest attempt of an approval, and who:
    /// only in the answer for one execution, once it is decided.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided: Option<ApprovalDecided>,
}

/// A decided approval: `Approved` or `Rejected`, by whom, when, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ApprovalDecided {
    /// `Approved` or `Rejected`.
    pub decision: String,
    /// The identity that decided; for an approval that took several
    /// votes, their names joined by `, `.
    pub by: String,
    /// RFC 3339.
    pub at: String,
    pub comment: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ApprovalPrompt {
    pub comments: Option<String>,
    pub review_url: Option<String>,
}

/// A parameter an action read: its name and version, never its value.
/// (Fields in alphabetical order: it is also part of an approval's
/// binding, which was written as a `serde_json::Value`.)
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ParameterUse {
    pub name: String,
    pub secure: bool,
    /// Where the reference was written (`env`, `buildspec env.parameter-store`).
    pub source: String,
    /// The environment variable it fed.
    pub var: String,
    pub version: u64,
}

/// One JUnit report group of a build.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct TestReport {
    pub group: String,
    pub passed: u64,
    pub failed: u64,
    pub skipped: u64,
    pub failures: Vec<TestFailure>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct TestFailure {
    pub name: String,
    pub message: String,
}

/// `POST /api/v1/executions`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct StartRequest {
    /// The file's name: where errors point and what `.` paths in it mean.
    /// The server never reads it.
    pub file: PathBuf,
    /// The file's text (required).
    pub text: Option<String>,
    /// The text of each file `include:` names, by the name written there.
    #[serde(default)]
    pub includes: BTreeMap<String, String>,
    /// Overrides of pipeline variables.
    #[serde(default)]
    pub variables: BTreeMap<String, String>,
}

/// The answer to a started execution (`201 Created`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Started {
    pub id: String,
}

/// `POST /api/v1/executions/{id}/retry`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct RetryRequest {
    pub stage: String,
    #[serde(default)]
    pub all_actions: bool,
}

/// `POST /api/v1/executions/{id}/stop`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
pub struct StopRequest {
    #[serde(default)]
    pub abandon: bool,
    #[serde(default)]
    pub reason: Option<String>,
}

/// The answer of requests that only say they were done (retry, stop), and
/// of `GET /api/v1/health`: `{"ok": true}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Ack {
    pub ok: bool,
}

impl Ack {
    pub const OK: Ack = Ack { ok: true };
}

/// `GET /api/v1/changes?after=N`: the version of the server's state once it
/// is past `after` (or the long poll timed out).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Changes {
    pub version: u64,
}

/// `GET /api/v1/executions/{id}/logs`: lines after `after`, and where to
/// continue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct LogsPage {
    pub lines: Vec<LogLineView>,
    /// The `after` of the next page.
    pub next: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct LogLineView {
    pub seq: i64,
    pub stage: String,
    pub action: String,
    pub attempt: i64,
    /// RFC 3339.
    pub at: String,
    pub line: String,
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::tests::same_bytes;

    /// The execution JSON of docs/formats.md §3 reads into the type and
    /// writes back unchanged.
    #[test]
    fn the_contracts_execution_json_round_trips() {
        let text = r#"{"id": "e1", "pipeline": "shop", "status": "Succeeded",
         "started_at": "2026-01-01T00:00:00Z", "finished_at": "2026-01-01T00:01:00Z",
         "variables": {"variables.REGISTRY": "r"}, "waiting_at": null, "stop_reason": null,
         "stages": [{"name": "Build", "status": "Succeeded",
           "actions": [{"name": "build-catalog", "status": "Succeeded", "attempt": 1,
             "started_at": "2026-01-01T00:00:01Z", "finished_at": "2026-01-01T00:00:02Z", "error": null,
             "output_variables": {"IMAGE_TAG": "t"}, "output_artifacts": {},
             "type": "build", "run_order": 1,
             "reports": [{"group": "unit", "passed": 2, "failed": 0, "skipped": 0, "failures": []}]}]}],
         "trigger": {"type": "webhook", "detail": "github delivery 72d3162e"},
         "source_revisions": {"checkout": "0d1a26e67d8f5eaf1f6ba5c57fc3c7d91ac0fd1c"}}"#;
        let value: serde_json::Value = serde_json::from_str(text).unwrap();
        let view: ExecutionView = serde_json::from_value(value.clone()).unwrap();
        assert_eq!(
            view.action("Build", "build-catalog")
                .unwrap()
                .output_variables["IMAGE_TAG"],
            "t"
        );
        assert_eq!(serde_json::to_value(&view).unwrap(), value);
    }

    /// An answer of a server older than triggers still reads: no trigger,
    /// no source revisions.
    #[test]
    fn an_execution_without_trigger_fields_reads() {
        let text = r#"{"id": "e1", "pipeline": "shop", "status": "Succeeded",
         "started_at": "2026-01-01T00:00:00Z", "finished_at": null, "variables": {},
         "waiting_at": null, "stop_reason": null, "stages": []}"#;
        let view: ExecutionView = serde_json::from_str(text).unwrap();
        assert_eq!(view.trigger, None);
        assert!(view.source_revisions.is_empty());
    }

    #[test]
    fn small_answers_keep_their_bytes() {
        same_bytes(&Ack::OK, json!({"ok": true}));
        same_bytes(&Changes { version: 7 }, json!({"version": 7}));
    }
}
