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
    /// The pull request it was started for (a `pull_request` trigger);
    /// boxed, as most executions have none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pull_request: Option<Box<PullRequest>>,
}

/// The pull (merge) request an execution was started for: what its source
/// action tells the actions after it (`PullRequestId`, …).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PullRequest {
    /// The source action pinned to the pull request's head commit.
    pub source: String,
    /// The number the forge shows (GitLab's `iid`).
    pub number: u64,
    /// `opened`, `updated` or `closed`.
    pub event: String,
    pub title: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// The head branch, whose commit the execution runs.
    pub source_branch: String,
    /// The base branch it would merge into.
    pub destination_branch: String,
    /// Whether a closed pull request was merged.
    #[serde(default)]
    pub merged: bool,
}

impl Trigger {
    /// A start by a person (`gantry run`, the API), `by` their identity.
    pub fn manual(by: Option<String>) -> Trigger {
        Trigger {
            kind: TriggerType::Manual,
            detail: by.clone().unwrap_or_default(),
            by,
            pull_request: None,
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::{ActionPlan, Engine, Event, Plan, StagePlan};

    fn plan() -> Plan {
        Plan {
            pipeline: "p".to_string(),
            mode: Default::default(),
            supersede_approvals: false,
            stages: vec![StagePlan {
                name: "Source".to_string(),
                actions: vec![ActionPlan {
                    name: "checkout".to_string(),
                    run_order: 1,
                    is_approval: false,
                }],
            }],
        }
    }

    /// An `ExecutionRequested` logged before triggers existed replays: the
    /// execution has no trigger and no pins.
    #[test]
    fn an_event_logged_before_triggers_replays() {
        let old = r#"{"type": "execution_requested", "id": "e1", "at": 5,
            "plan": {"pipeline": "p", "mode": "superseded", "stages": [{"name": "Source",
              "actions": [{"name": "checkout", "run_order": 1}]}]}}"#;
        let event: Event = serde_json::from_str(old).unwrap();
        let mut engine = Engine::new();
        engine.apply(event).unwrap();
        let execution = engine.execution("e1").unwrap();
        assert_eq!(execution.trigger, None);
        assert!(execution.source_revisions.is_empty());

        // An execution state row written before triggers reads too.
        let mut row = serde_json::to_value(execution).unwrap();
        let fields = row.as_object_mut().unwrap();
        fields.remove("trigger");
        fields.remove("source_revisions");
        let read: crate::Execution = serde_json::from_value(row).unwrap();
        assert_eq!(&read, execution);
    }

    /// The trigger and the pins go from the event to the execution, and an
    /// event without them is written as before (no new keys).
    #[test]
    fn the_trigger_and_pins_reach_the_execution() {
        let trigger = Trigger {
            kind: TriggerType::Webhook,
            detail: "github delivery 1".to_string(),
            by: None,
            pull_request: None,
        };
        let pins = BTreeMap::from([("checkout".to_string(), "abcdef1".to_string())]);
        let event = Event::ExecutionRequested {
            id: "e1".to_string(),
            plan: plan(),
            variables: BTreeMap::new(),
            trigger: Some(trigger.clone()),
            source_revisions: pins.clone(),
            at: 1,
        };
        let text = serde_json::to_string(&event).unwrap();
        assert!(text.contains(r#""trigger":{"type":"webhook","detail":"github delivery 1"}"#));
        let mut engine = Engine::new();
        engine.apply(serde_json::from_str(&text).unwrap()).unwrap();
        let execution = engine.execution("e1").unwrap();
        assert_eq!(execution.trigger.as_ref(), Some(&trigger));
        assert_eq!(execution.source_revisions, pins);

        let bare = Event::ExecutionRequested {
            id: "e2".to_string(),
            plan: plan(),
            variables: BTreeMap::new(),
            trigger: None,
            source_revisions: BTreeMap::new(),
            at: 2,
        };
        let text = serde_json::to_string(&bare).unwrap();
        assert!(!text.contains("trigger") && !text.contains("source_revisions"));
        assert_eq!(Trigger::manual(Some("alice".into())).detail, "alice");
        assert_eq!(
            serde_json::to_string(&Trigger::manual(None)).unwrap(),
            r#"{"type":"manual","detail":""}"#
        );
    }
}
