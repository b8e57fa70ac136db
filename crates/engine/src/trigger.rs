//! What started an execution, and the commits it is pinned to.
//!
//! CodePipeline records both with every execution: `trigger`
//! (`triggerType`, `triggerDetail`) and `sourceRevisions`. gantry's
//! [`Trigger`] says who or what asked for the run; the pins (a map from
//! source action name to commit, on the `ExecutionRequested` event) say
//! which commit each source action must take. The engine only stores them
//! on the [`Execution`](crate::Execution): it neither reads nor checks
//! them, and the server acts on them.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Who or what started an execution.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trigger {
    /// The kind of start.
    #[serde(rename = "type")]
    pub kind: TriggerType,
    /// What exactly started it, in words a person can follow back: the
    /// webhook's delivery id, the polled ref, the schedule's fire time, the
    /// upstream execution, the user.
    #[serde(default)]
    pub detail: String,
    /// The identity that started it, when a person did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
}

impl Trigger {
    /// A start by a person (`gantry run`, the API), `by` their identity.
    pub fn manual(by: Option<String>) -> Trigger {
        Trigger {
            kind: TriggerType::Manual,
            detail: by.clone().unwrap_or_default(),
            by,
        }
    }
}

/// The kinds of start, as the JSON strings `manual`, `webhook`, `poll`,
/// `schedule` and `pipeline`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TriggerType {
    /// A person: `gantry run`, the API.
    Manual,
    /// A forge's (or a script's) webhook delivery.
    Webhook,
    /// gantry's own poll of a repository found a new commit.
    Poll,
    /// A cron schedule fired.
    Schedule,
    /// Another pipeline's execution ended.
    Pipeline,
}

impl TriggerType {
    pub fn as_str(self) -> &'static str {
        match self {
            TriggerType::Manual => "manual",
            TriggerType::Webhook => "webhook",
            TriggerType::Poll => "poll",
            TriggerType::Schedule => "schedule",
            TriggerType::Pipeline => "pipeline",
        }
    }
}

impl fmt::Display for TriggerType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
