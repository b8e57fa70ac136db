//! Triggers: what `gantry triggers --json` (`GET /api/v1/triggers`) lists,
//! and what the webhook endpoint (`POST /hooks/{pipeline}`) answers a
//! delivery it accepted (formats.md §7).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// One trigger of a registered pipeline: what it watches, and what it
/// last saw and did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct TriggerView {
    pub pipeline: String,
    /// Its position in the pipeline's `triggers`, from 0.
    pub index: u32,
    /// `git`, `schedule` or `pipeline`.
    #[serde(rename = "type")]
    pub trigger_type: String,
    /// What it watches, in one line (`git checkout: pushes to main, v*; poll
    /// 30s; github webhook`).
    pub watches: String,
    /// A `git` trigger's source action.
    pub source: Option<String>,
    /// A `git` trigger's repository (a URL without credentials, or a path).
    pub repository: Option<String>,
    /// A schedule's next fire time (RFC 3339).
    pub next_fire: Option<String>,
    /// What arrived last: a delivery, a poll's new commit, a fire time, an
    /// upstream execution.
    pub last_event: Option<String>,
    /// RFC 3339.
    pub last_event_at: Option<String>,
    pub last_commit: Option<String>,
    /// `started`, `duplicate: …`, `skipped: …` or `failed`.
    pub last_result: Option<String>,
    /// The execution the last event started, or found started.
    pub last_execution: Option<String>,
    pub last_error: Option<String>,
    /// RFC 3339.
    pub last_error_at: Option<String>,
    /// Failures in a row; it retries with backoff meanwhile.
    pub consecutive_failures: u32,
    /// Webhook deliveries refused for a missing or wrong signature.
    pub bad_signatures: u32,
}

/// The webhook endpoint's answer to a delivery it authenticated: 202
/// `accepted` (the work happens after the answer), 200 `replayed` (a
/// delivery id seen before), `pong` (a ping) or `ignored` (an event that
/// starts nothing).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct WebhookAnswer {
    /// `accepted`, `replayed`, `pong` or `ignored`.
    pub status: String,
    /// The forge's delivery id, when it sent one.
    pub delivery: Option<String>,
    /// Why nothing will start, for `ignored`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}
