//! The pipeline definition an execution runs with, frozen when it starts.
//!
//! An execution keeps the file text it was started from, so editing
//! `gantry.yaml` while a run waits at an approval changes nothing for that
//! run, and a restarted server resumes it with the same definition.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use gantry_engine::{ActionPlan, Plan, StagePlan};
use gantry_spec::SpecError;
use gantry_spec::pipeline::{ActionKind, ExecutionMode, Pipeline, parse_pipeline};

/// What is stored with each execution.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Definition {
    /// The pipeline file's path; paths inside it are relative to its directory.
    pub file: PathBuf,
    /// The file's text at the time the execution started.
    pub text: String,
    /// Pipeline variables after `--var` overrides.
    pub variables: BTreeMap<String, String>,
    /// The text of each file `include:` names, by the name written there.
    /// Clients send it: the server never reads a file a request names.
    #[serde(default)]
    pub includes: BTreeMap<String, String>,
    /// The identity that started the execution (approval policies may
    /// forbid it to approve).
    #[serde(default)]
    pub started_by: Option<String>,
}

/// A definition with its validated pipeline.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub definition: Definition,
    pub pipeline: Pipeline,
}

impl Definition {
    pub fn load(self) -> Result<Loaded, Vec<SpecError>> {
        let pipeline = parse_pipeline(&self.file.display().to_string(), &self.text)?;
        Ok(Loaded {
            definition: self,
            pipeline,
        })
    }

    pub fn base_dir(&self) -> &Path {
        self.file.parent().unwrap_or(Path::new("."))
    }
}

/// The engine's view of a pipeline: only its shape.
pub fn plan(pipeline: &Pipeline) -> Plan {
    Plan {
        pipeline: pipeline.name.to_string(),
        mode: match pipeline.execution_mode {
            ExecutionMode::Superseded => gantry_engine::ExecutionMode::Superseded,
            ExecutionMode::Queued => gantry_engine::ExecutionMode::Queued,
            ExecutionMode::Parallel => gantry_engine::ExecutionMode::Parallel,
        },
        // Issue 11: a newer revision supersedes an older one waiting at an
        // approval (Superseded mode only; the engine ignores it otherwise).
        supersede_approvals: true,
        stages: pipeline
            .stages
            .iter()
            .map(|stage| StagePlan {
                name: stage.name.to_string(),
                actions: stage
                    .actions
                    .iter()
                    .map(|action| ActionPlan {
                        name: action.name.to_string(),
                        run_order: action.run_order,
                        is_approval: matches!(action.kind, ActionKind::Approval { .. }),
                    })
                    .collect(),
            })
            .collect(),
    }
}
