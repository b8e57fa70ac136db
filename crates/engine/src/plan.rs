//! The plan: the shape of one execution, as the engine needs to know it.
//!
//! The server builds a [`Plan`] from a validated pipeline file. The engine only
//! needs names, run orders and which actions are approvals; everything else an
//! action does (commands, images, artifacts) stays with the server, which looks it
//! up by the stage and action indices the engine hands back in its commands.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::EngineError;

/// How the executions of one pipeline share its stages (aws-seed-system.md §1.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExecutionMode {
    /// A stage holds one execution at a time. A newer execution that comes to wait
    /// in front of a stage replaces the older one waiting there, which ends
    /// `Superseded`.
    #[default]
    Superseded,
    /// A stage holds one execution at a time; the executions waiting in front of it
    /// enter in arrival order and are never superseded.
    Queued,
    /// Stages hold no lock: executions run side by side, independently.
    Parallel,
}

impl ExecutionMode {
    /// Whether executions in this mode take the stage locks and respect them.
    pub fn locks_stages(self) -> bool {
        !matches!(self, ExecutionMode::Parallel)
    }
}

/// What one execution runs: its pipeline's stages, in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    pub pipeline: String,
    #[serde(default)]
    pub mode: ExecutionMode,
    pub stages: Vec<StagePlan>,
    /// In `Superseded` mode, whether this execution, waiting in front of a
    /// stage that an older one holds only to wait for approvals, replaces
    /// it there (issue 11: an approval of an old revision can no longer be
    /// given once a newer one is ready to be approved). Plans logged before
    /// this rule lack the field and keep CodePipeline's rule, under which
    /// an approval keeps its stage; so old event logs replay as they ran.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub supersede_approvals: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StagePlan {
    /// Unique in the plan. Stage locks are keyed by this name, so executions of
    /// different versions of a pipeline still exclude each other from a stage.
    pub name: String,
    pub actions: Vec<ActionPlan>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActionPlan {
    /// Unique in its stage.
    pub name: String,
    /// Actions with the same run order run in parallel; a higher one runs after
    /// every lower one succeeded. Numbers need not be contiguous.
    pub run_order: u32,
    /// An approval waits for a person (`ActionWaiting`) instead of doing work.
    #[serde(default)]
    pub is_approval: bool,
}

impl Plan {
    /// Rejects the plans the engine could not run sensibly. The spec crate already
    /// enforces all of this on pipeline files; the engine checks again because its
    /// plan type is plain data that any caller can build.
    pub(crate) fn validate(&self) -> Result<(), EngineError> {
        let invalid = |reason: String| {
            Err(EngineError::InvalidPlan {
                pipeline: self.pipeline.clone(),
                reason,
            })
        };
        if self.stages.is_empty() {
            return invalid("it has no stage".to_string());
        }
        let mut stage_names = BTreeSet::new();
        for stage in &self.stages {
            if !stage_names.insert(stage.name.as_str()) {
                return invalid(format!("stage name {:?} appears twice", stage.name));
            }
            if stage.actions.is_empty() {
                return invalid(format!("stage {:?} has no action", stage.name));
            }
            let mut action_names = BTreeSet::new();
            for action in &stage.actions {
                if !action_names.insert(action.name.as_str()) {
                    return invalid(format!(
                        "action name {:?} appears twice in stage {:?}",
                        action.name, stage.name
                    ));
                }
            }
        }
        Ok(())
    }
}
