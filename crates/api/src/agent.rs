//! Build agents (`gantry agent`): the routes under `/api/v1/agent/` that an
//! agent token may call, and nothing else may but admin, and the list of
//! agents for people (`GET /api/v1/agents`).
//!
//! An agent long-polls for a job ([`AgentPollRequest`] →
//! [`AgentPollAnswer`]), fetches the blobs of its input artifacts, runs
//! the buildspec, streams its log ([`AgentLogRequest`]), uploads the blobs
//! of its outputs, and ends the job ([`AgentFinishRequest`]); every few
//! seconds it heartbeats the jobs it runs ([`AgentHeartbeatRequest`]) and
//! stops those the answer names. A job id stands for one attempt of one
//! action: once that attempt ended, every call about the job answers 409
//! `agent.job_gone`, so a late agent never reports into a newer attempt.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// `POST /api/v1/agent/poll`: an agent with a free slot asks for work.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct AgentPollRequest {
    /// The agent's name (`gantry agent --name`, default the host name).
    #[schemars(length(min = 1, max = 100))]
    pub name: String,
    /// The agent's labels; a job goes to an agent that has all of the
    /// action's `agent.labels`.
    #[serde(default)]
    pub labels: Vec<String>,
    /// The agent's gantry version: jobs carry a parsed buildspec, so the
    /// server gives work only to an agent of its own version.
    pub version: String,
    /// How long to wait for a job, in ms (at most 30 000; default 20 000).
    #[serde(default)]
    pub wait_ms: Option<u64>,
}

/// The answer to a poll: a job, or none when the wait ran out.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct AgentPollAnswer {
    pub job: Option<AgentJob>,
    /// How often the agent must heartbeat, in ms; a job whose agent is
    /// silent for the server's `--agent-timeout` fails as interrupted.
    pub heartbeat_ms: u64,
}

/// One attempt of one `build`, `test` or `shell` action, as an agent runs it.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct AgentJob {
    /// The job's id: random, one per attempt.
    pub id: String,
    pub execution_id: String,
    pub pipeline: String,
    pub stage: String,
    pub action: String,
    pub attempt: u32,
    /// `build`, `test` or `shell`.
    #[serde(rename = "type")]
    pub action_type: String,
    /// The buildspec, parsed by the server (a shell action's commands as a
    /// buildspec of one build phase), in the form the same version of
    /// gantry reads.
    pub buildspec: Value,
    /// The input artifacts in declared order: the first is the source
    /// directory, the others `CODEBUILD_SRC_DIR_<name>`.
    pub inputs: Vec<AgentInput>,
    /// Environment variables, resolved (parameters included).
    pub env: Vec<AgentVariable>,
    /// Variables whose values are secrets: set like `env`, masked in the log.
    pub secrets: Vec<AgentVariable>,
    pub build_id: String,
    pub build_number: u64,
    pub initiator: String,
    /// The commit the execution's source action took.
    pub source_version: Option<String>,
    pub timeout_ms: u64,
    /// `image:`: run inside a container of this image on the agent's Docker.
    pub image: Option<String>,
    /// A registry-only token for the embedded registry, valid while the
    /// attempt may run, for `docker push` in the build.
    pub registry: Option<AgentRegistryLogin>,
}

/// One input artifact of a job.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct AgentInput {
    pub name: String,
    /// The artifact's id: the digest of its manifest, a blob of the job.
    pub artifact: String,
}

/// A name and its value.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct AgentVariable {
    pub name: String,
    pub value: String,
}

/// The embedded registry's address and this attempt's token for it.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct AgentRegistryLogin {
    /// `host:port`.
    pub registry: String,
    pub token: String,
}

/// `POST /api/v1/agent/jobs/{id}/log`: lines of a job's log, in order.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct AgentLogRequest {
    #[schemars(length(max = 10000))]
    pub lines: Vec<String>,
}

/// `POST /api/v1/agent/heartbeat`: the agent is alive and runs these jobs.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct AgentHeartbeatRequest {
    #[schemars(length(min = 1, max = 100))]
    pub name: String,
    /// The ids of the jobs the agent runs now.
    #[serde(default)]
    pub jobs: Vec<String>,
}

/// The answer to a heartbeat: the jobs the agent must stop (their
/// execution was stopped, their attempt timed out, or the server no longer
/// knows them).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct AgentHeartbeatAnswer {
    pub stop: Vec<String>,
}

/// `POST /api/v1/agent/jobs/{id}/finish`: how the build ended. Every blob
/// of every output must have been uploaded first.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct AgentFinishRequest {
    /// CodeBuild's status: `SUCCEEDED`, `FAILED`, `FAULT`, `TIMED_OUT` or
    /// `STOPPED`.
    pub status: String,
    /// Why the build did not succeed, when it says.
    #[serde(default)]
    pub error: Option<String>,
    /// The phases that did not succeed.
    #[serde(default)]
    pub failed_phases: Vec<String>,
    #[serde(default)]
    pub exported_variables: BTreeMap<String, String>,
    /// Test reports, as the server records them for its own builds.
    #[serde(default)]
    pub reports: Vec<Value>,
    /// The artifacts the buildspec made: the primary one (no identifier)
    /// and secondary ones by identifier, each as its manifest.
    #[serde(default)]
    pub outputs: Vec<AgentOutput>,
}

/// One artifact an agent's build made.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct AgentOutput {
    /// The secondary artifact's identifier; none for the primary one.
    pub identifier: Option<String>,
    /// The manifest's entries: `{"kind": "file", "path", "digest", "size",
    /// "executable"}`, `{"kind": "dir", "path"}` or `{"kind": "symlink",
    /// "path", "target"}`.
    pub entries: Vec<Value>,
}

/// `GET /api/v1/agents`: one agent the server heard from.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq, Eq)]
pub struct AgentView {
    pub name: String,
    pub labels: Vec<String>,
    pub version: String,
    /// When it last polled or heartbeat (RFC 3339).
    pub last_seen: String,
    /// Whether it heartbeat within the server's `--agent-timeout`.
    pub alive: bool,
    /// What it runs: `execution/stage/action#attempt`.
    pub running: Vec<String>,
}
