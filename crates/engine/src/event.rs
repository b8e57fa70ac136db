//! Events go into the engine; commands come out.
//!
//! An [`Event`] is a fact the server has recorded (a request from a person, a
//! result from a runner); the server persists each one in its append-only log
//! before or after applying it, and replays the log on restart. A [`Command`] is
//! work the engine asks of the server. Stages and actions are named by their
//! indices in the execution's [`Plan`](crate::Plan).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{ExecutionStatus, Plan, Trigger};

/// The error of the `ActionFailed` a server feeds for each action of
/// [`Engine::interrupted`](crate::Engine::interrupted) after a restart.
pub const INTERRUPTED: &str = "interrupted: the server stopped while this action ran";

/// Every event carries `at`, unix milliseconds supplied by the caller: the engine
/// never reads a clock, so replaying the log reproduces the same times.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    /// A new execution of the engine's pipeline. `trigger` and
    /// `source_revisions` came later: events logged before them read as
    /// `None` and no pins.
    ExecutionRequested {
        id: String,
        plan: Plan,
        #[serde(default)]
        variables: BTreeMap<String, String>,
        /// What started it (`None` in logs older than triggers).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        trigger: Option<Trigger>,
        /// Source action name → the commit it must take. A source action
        /// without a pin takes its branch head when it runs.
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        source_revisions: BTreeMap<String, String>,
        at: i64,
    },
    /// A started approval now waits for a person.
    ActionWaiting {
        id: String,
        stage: usize,
        action: usize,
        attempt: u32,
        at: i64,
    },
    /// An action's attempt succeeded; for an approval, a person approved it.
    ActionSucceeded {
        id: String,
        stage: usize,
        action: usize,
        attempt: u32,
        #[serde(default)]
        output_variables: BTreeMap<String, String>,
        #[serde(default)]
        output_artifacts: BTreeMap<String, String>,
        at: i64,
    },
    /// An action's attempt failed; for an approval, a person rejected it or it
    /// timed out.
    ActionFailed {
        id: String,
        stage: usize,
        action: usize,
        attempt: u32,
        error: String,
        at: i64,
    },
    /// Re-runs a failed or stopped stage: its failed and unfinished actions, or
    /// with `all_actions` every action from the first group.
    RetryStage {
        id: String,
        stage: usize,
        all_actions: bool,
        at: i64,
    },
    /// Stops an execution: let running actions finish, or with `abandon` give them
    /// up at once.
    Stop {
        id: String,
        abandon: bool,
        #[serde(default)]
        reason: Option<String>,
        at: i64,
    },
}

impl Event {
    /// The execution the event is about.
    pub fn execution_id(&self) -> &str {
        match self {
            Event::ExecutionRequested { id, .. }
            | Event::ActionWaiting { id, .. }
            | Event::ActionSucceeded { id, .. }
            | Event::ActionFailed { id, .. }
            | Event::RetryStage { id, .. }
            | Event::Stop { id, .. } => id,
        }
    }

    pub fn at(&self) -> i64 {
        match self {
            Event::ExecutionRequested { at, .. }
            | Event::ActionWaiting { at, .. }
            | Event::ActionSucceeded { at, .. }
            | Event::ActionFailed { at, .. }
            | Event::RetryStage { at, .. }
            | Event::Stop { at, .. } => *at,
        }
    }
}

/// Work for the server, in the order it should be done.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Command {
    /// Run this attempt of the action, then feed `ActionSucceeded` or
    /// `ActionFailed` with the same attempt (for an approval, first
    /// `ActionWaiting`).
    StartAction {
        id: String,
        stage: usize,
        action: usize,
        attempt: u32,
    },
    /// The attempt was abandoned: kill what runs for it (or, for an approval,
    /// forget its timeout and notification). Its result, if one still comes, will
    /// be ignored.
    CancelAction {
        id: String,
        stage: usize,
        action: usize,
        attempt: u32,
    },
    /// The execution reached a terminal status. Emitted once per transition into
    /// a terminal status (again after a retry, when it ends again).
    ExecutionFinished { id: String, status: ExecutionStatus },
}

/// One attempt of one action of one execution: what a [`Command`] asks to
/// run or cancel, and what the result events name. The events and commands
/// keep their own flat fields (their JSON is the event log's format); this is
/// the one value a server passes around for an attempt, and the events it
/// reports about the attempt are built from it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ActionRef {
    /// The execution's id.
    pub id: String,
    /// The stage's index in the execution's plan.
    pub stage: usize,
    /// The action's index in its stage.
    pub action: usize,
    /// The attempt's number, from 1.
    pub attempt: u32,
}

impl ActionRef {
    /// The `ActionWaiting` of this attempt: an approval now waits for a person.
    pub fn waiting(&self, at: i64) -> Event {
        Event::ActionWaiting {
            id: self.id.clone(),
            stage: self.stage,
            action: self.action,
            attempt: self.attempt,
            at,
        }
    }

    /// The `ActionSucceeded` of this attempt, with its outputs.
    pub fn succeeded(
        &self,
        output_variables: BTreeMap<String, String>,
        output_artifacts: BTreeMap<String, String>,
        at: i64,
    ) -> Event {
        Event::ActionSucceeded {
            id: self.id.clone(),
            stage: self.stage,
            action: self.action,
            attempt: self.attempt,
            output_variables,
            output_artifacts,
            at,
        }
    }

    /// The `ActionFailed` of this attempt.
    pub fn failed(&self, error: impl Into<String>, at: i64) -> Event {
        Event::ActionFailed {
            id: self.id.clone(),
            stage: self.stage,
            action: self.action,
            attempt: self.attempt,
            error: error.into(),
            at,
        }
    }

    /// The `ActionFailed` that ends this attempt because the server restarted
    /// while it ran.
    pub fn interrupted(&self, at: i64) -> Event {
        self.failed(INTERRUPTED, at)
    }
}
