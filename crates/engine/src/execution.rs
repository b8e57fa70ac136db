//! What the engine knows about one execution: its statuses, attempts and results.
//!
//! These types are read-only views for the server: only the engine changes them,
//! through [`Engine::apply`](crate::Engine::apply). They serialize with the field
//! names and status strings of formats.md §3 (times stay unix milliseconds here;
//! the server renders them as RFC 3339).

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::{Plan, Trigger};

/// The status of a whole execution.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ExecutionStatus {
    /// Running an action, waiting for an approval, or waiting in front of a stage.
    InProgress,
    /// A stop was requested; the actions still running are allowed to finish.
    Stopping,
    Stopped,
    Succeeded,
    /// A newer execution took its place in front of a stage.
    Superseded,
    Failed,
}

impl ExecutionStatus {
    /// Whether the execution is over. Only `RetryStage` brings a `Failed` or
    /// `Stopped` execution back to `InProgress`.
    pub fn is_terminal(self) -> bool {
        !matches!(
            self,
            ExecutionStatus::InProgress | ExecutionStatus::Stopping
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ExecutionStatus::InProgress => "InProgress",
            ExecutionStatus::Stopping => "Stopping",
            ExecutionStatus::Stopped => "Stopped",
            ExecutionStatus::Succeeded => "Succeeded",
            ExecutionStatus::Superseded => "Superseded",
            ExecutionStatus::Failed => "Failed",
        }
    }
}

impl fmt::Display for ExecutionStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The status of a stage in one execution; `None` in a [`StageRun`] means the
/// execution has not reached the stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum StageStatus {
    InProgress,
    Succeeded,
    Failed,
    Stopped,
    /// The execution is stopping and actions of this stage still run.
    Stopping,
}

impl StageStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            StageStatus::InProgress => "InProgress",
            StageStatus::Succeeded => "Succeeded",
            StageStatus::Failed => "Failed",
            StageStatus::Stopped => "Stopped",
            StageStatus::Stopping => "Stopping",
        }
    }
}

impl fmt::Display for StageStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The status of an action's latest attempt; `None` in an [`ActionRun`] means it
/// has not started (or waits to be re-run after a retry).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ActionStatus {
    InProgress,
    /// An approval waiting for a person.
    Waiting,
    Succeeded,
    Failed,
    /// Given up by a stop; the work behind it may still have run to its end.
    Abandoned,
}

impl ActionStatus {
    /// Whether the action still occupies its stage.
    pub fn is_active(self) -> bool {
        matches!(self, ActionStatus::InProgress | ActionStatus::Waiting)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ActionStatus::InProgress => "InProgress",
            ActionStatus::Waiting => "Waiting",
            ActionStatus::Succeeded => "Succeeded",
            ActionStatus::Failed => "Failed",
            ActionStatus::Abandoned => "Abandoned",
        }
    }
}

impl fmt::Display for ActionStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What an `ExecutionRequested` event asks for.
pub(crate) struct Request {
    pub(crate) id: String,
    pub(crate) plan: Plan,
    pub(crate) variables: BTreeMap<String, String>,
    pub(crate) trigger: Option<Trigger>,
    pub(crate) source_revisions: BTreeMap<String, String>,
}

/// One run of a pipeline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Execution {
    pub id: String,
    pub pipeline: String,
    pub status: ExecutionStatus,
    /// Unix milliseconds, from the events (the engine reads no clock).
    pub started_at: i64,
    /// Set when the execution reaches a terminal status; cleared by a retry.
    pub finished_at: Option<i64>,
    pub variables: BTreeMap<String, String>,
    pub plan: Plan,
    /// One entry per stage of `plan`, same order.
    pub stages: Vec<StageRun>,
    /// The stage this execution waits in front of, while another execution holds
    /// it (the "inbound" execution of that stage).
    pub waiting_at: Option<usize>,
    /// The reason given with the last stop, if any.
    pub stop_reason: Option<String>,
    /// What started it; `None` for executions older than triggers.
    #[serde(default)]
    pub trigger: Option<Trigger>,
    /// The commits its source actions are pinned to, by source action name
    /// (CodePipeline's `sourceRevisions`), as requested.
    #[serde(default)]
    pub source_revisions: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StageRun {
    pub name: String,
    pub status: Option<StageStatus>,
    /// One entry per action of the stage's plan, same order.
    pub actions: Vec<ActionRun>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActionRun {
    pub name: String,
    pub status: Option<ActionStatus>,
    /// How many times the action has started; 0 = never. Result events name the
    /// attempt they report on, so a result from an older attempt is told apart.
    pub attempt: u32,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    pub error: Option<String>,
    pub output_variables: BTreeMap<String, String>,
    pub output_artifacts: BTreeMap<String, String>,
}

impl Execution {
    pub(crate) fn new(request: Request, at: i64) -> Execution {
        let Request {
            id,
            plan,
            variables,
            trigger,
            source_revisions,
        } = request;
        let stages = plan
            .stages
            .iter()
            .map(|stage| StageRun {
                name: stage.name.clone(),
                status: None,
                actions: stage
                    .actions
                    .iter()
                    .map(|action| ActionRun {
                        name: action.name.clone(),
                        status: None,
                        attempt: 0,
                        started_at: None,
                        finished_at: None,
                        error: None,
                        output_variables: BTreeMap::new(),
                        output_artifacts: BTreeMap::new(),
                    })
                    .collect(),
            })
            .collect();
        Execution {
            id,
            pipeline: plan.pipeline.clone(),
            status: ExecutionStatus::InProgress,
            started_at: at,
            finished_at: None,
            variables,
            plan,
            stages,
            waiting_at: None,
            stop_reason: None,
            trigger,
            source_revisions,
        }
    }

    /// The stage the execution is inside (status `InProgress` or `Stopping`).
    /// There is at most one: stages run one after the other.
    pub fn current_stage(&self) -> Option<usize> {
        self.stages.iter().position(|stage| {
            matches!(
                stage.status,
                Some(StageStatus::InProgress | StageStatus::Stopping)
            )
        })
    }

    /// The index of the stage named `stage`.
    pub fn stage_index(&self, stage: &str) -> Option<usize> {
        self.stages.iter().position(|run| run.name == stage)
    }

    /// The indices of `stage/action`, as the CLI and the API name an action.
    pub fn locate(&self, stage: &str, action: &str) -> Option<(usize, usize)> {
        let s = self.stage_index(stage)?;
        let a = self.stages[s]
            .actions
            .iter()
            .position(|run| run.name == action)?;
        Some((s, a))
    }
}

impl ActionRun {
    /// Whether the action still occupies its stage (`InProgress` or `Waiting`).
    pub fn is_active(&self) -> bool {
        self.status.is_some_and(ActionStatus::is_active)
    }

    pub(crate) fn start(&mut self, at: i64) {
        self.status = Some(ActionStatus::InProgress);
        // Saturating: four billion attempts cannot happen, and the engine must
        // not panic on any input.
        self.attempt = self.attempt.saturating_add(1);
        self.started_at = Some(at);
        self.finished_at = None;
        self.error = None;
        self.output_variables.clear();
        self.output_artifacts.clear();
    }

    /// Makes the action pending again for a retry. The attempt count stays, so the
    /// next start is a new attempt.
    pub(crate) fn reset(&mut self) {
        self.status = None;
        self.started_at = None;
        self.finished_at = None;
        self.error = None;
        self.output_variables.clear();
        self.output_artifacts.clear();
    }
}
