//! Requests the engine refuses. On an error, [`Engine::apply`](crate::Engine::apply)
//! has changed nothing, so the server can answer the requester and go on.

use crate::{ActionStatus, ExecutionStatus, StageStatus};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EngineError {
    #[error("the plan of pipeline {pipeline:?} is invalid: {reason}")]
    InvalidPlan { pipeline: String, reason: String },
    #[error("this engine runs pipeline {expected:?}, not {found:?}")]
    WrongPipeline { expected: String, found: String },
    #[error("execution {id} already exists")]
    DuplicateExecution { id: String },
    #[error("no execution {id}")]
    UnknownExecution { id: String },
    #[error("execution {id} has no stage #{stage}")]
    UnknownStage { id: String, stage: usize },
    #[error("execution {id} has no action #{action} in stage #{stage}")]
    UnknownAction {
        id: String,
        stage: usize,
        action: usize,
    },
    #[error("action {stage}/{action} of execution {id} is not an approval")]
    NotAnApproval {
        id: String,
        stage: String,
        action: String,
    },
    #[error("approval {stage}/{action} of execution {id} is not waiting (it is {})", action_status(.status))]
    ApprovalNotWaiting {
        id: String,
        stage: String,
        action: String,
        status: Option<ActionStatus>,
    },
    #[error(
        "execution {id} is {status}: only an execution in progress can be stopped, and one stopping only by abandoning"
    )]
    NotStoppable { id: String, status: ExecutionStatus },
    #[error("execution {id} is {status}: only a Failed or Stopped execution can be retried")]
    ExecutionNotRetryable { id: String, status: ExecutionStatus },
    #[error("stage {stage} of execution {id} is {}: only a Failed or Stopped stage can be retried", stage_status(.status))]
    StageNotRetryable {
        id: String,
        stage: String,
        status: Option<StageStatus>,
    },
    #[error(
        "stage {stage} of execution {id} cannot be retried: the newer execution {newer} has entered it"
    )]
    NewerExecutionEntered {
        id: String,
        stage: String,
        newer: String,
    },
    #[error("stage {stage} cannot be retried for execution {id}: execution {holder} occupies it")]
    StageBusy {
        id: String,
        stage: String,
        holder: String,
    },
}

impl EngineError {
    /// A stable `area.snake_case` code for API errors; the message may
    /// change, the code does not. (Before this scheme the API answered
    /// `invalid_plan`, `not_stoppable`, …; `/api/v1` still does, see
    /// `gantry_api::LEGACY_CODES`.)
    pub fn code(&self) -> &'static str {
        match self {
            EngineError::InvalidPlan { .. } => "pipeline.invalid_plan",
            EngineError::WrongPipeline { .. } => "execution.wrong_pipeline",
            EngineError::DuplicateExecution { .. } => "execution.duplicate",
            EngineError::UnknownExecution { .. } => "execution.not_found",
            EngineError::UnknownStage { .. } => "stage.not_found",
            EngineError::UnknownAction { .. } => "action.not_found",
            EngineError::NotAnApproval { .. } => "action.not_an_approval",
            EngineError::ApprovalNotWaiting { .. } => "approval.not_waiting",
            EngineError::NotStoppable { .. } => "execution.not_stoppable",
            EngineError::ExecutionNotRetryable { .. } => "execution.not_retryable",
            EngineError::StageNotRetryable { .. } => "stage.not_retryable",
            EngineError::NewerExecutionEntered { .. } => "stage.newer_execution_entered",
            EngineError::StageBusy { .. } => "stage.busy",
        }
    }
}

fn action_status(status: &Option<ActionStatus>) -> &'static str {
    status.map_or("not started", ActionStatus::as_str)
}

fn stage_status(status: &Option<StageStatus>) -> &'static str {
    status.map_or("not reached", StageStatus::as_str)
}
