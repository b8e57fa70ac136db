//! The pipelines a server knows (`gantry pipelines`, `GET /api/v1/pipelines`):
//! each with its newest execution, so a person sees at a glance what ran
//! last, how it went and what started it.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::ExecutionView;

/// One pipeline: its name, how many executions the server holds of it, and
/// the newest one (`null` for a registered pipeline that never ran).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PipelineSummary {
    pub name: String,
    /// Executions of it the server holds.
    pub executions: usize,
    /// The newest execution, as `GET /api/v1/executions/{id}` shows it.
    pub last_execution: Option<ExecutionView>,
}
