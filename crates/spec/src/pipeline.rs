//! `gantry.yaml`: the pipeline file (formats.md §1).
//!
//! CONTRACT: the validated types below are what the engine and server consume.
//! The spec helper implements `parse_pipeline` and `pipeline_schema` and may
//! add fields, but must not rename or remove the ones here.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::buildspec::ArtifactsSpec;
use crate::location::{Location, SpecError};

macro_rules! name_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

name_type!(
    /// `[A-Za-z0-9.@_-]{1,100}`
    PipelineName
);
name_type!(
    /// `[A-Za-z0-9.@_-]{1,100}`, unique in the pipeline.
    StageName
);
name_type!(
    /// `[A-Za-z0-9.@_-]{1,100}`, unique in its stage.
    ActionName
);
name_type!(
    /// `[A-Za-z0-9_-]{1,100}`, unique in the pipeline.
    ArtifactName
);
name_type!(
    /// `[A-Za-z0-9@_-]{1,100}`, unique, not an artifact name, not a reserved namespace.
    Namespace
);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExecutionMode {
    #[default]
    Superseded,
    Queued,
    Parallel,
}

/// A validated pipeline file.
#[derive(Debug, Clone, PartialEq)]
pub struct Pipeline {
    pub name: PipelineName,
    pub execution_mode: ExecutionMode,
    /// Pipeline variables with their default values, `#{variables.NAME}`.
    pub variables: BTreeMap<String, String>,
    pub stages: Vec<Stage>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Stage {
    pub name: StageName,
    pub actions: Vec<Action>,
    pub location: Location,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Action {
    pub name: ActionName,
    /// 1..=999, default 1; equal run_order = parallel.
    pub run_order: u32,
    pub inputs: Vec<ArtifactName>,
    pub outputs: Vec<ArtifactName>,
    pub namespace: Option<Namespace>,
    /// Extra environment variables; values may hold `#{...}`.
    pub env: BTreeMap<String, String>,
    /// The action's timeout; `None` = the type's default (approval: 7d, others: 1h).
    pub timeout: Option<Duration>,
    pub kind: ActionKind,
    pub location: Location,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ActionKind {
    /// Snapshot of a git repository at one commit. `repository` is a path or
    /// URL; "." means the repository holding gantry.yaml.
    Source { repository: String, branch: Option<String> },
    /// Runs a buildspec; `buildspec` is a path inside the first input artifact
    /// (default `buildspec.yml`). `image` = run inside a container of that image.
    Build { buildspec: String, image: Option<String> },
    /// A `build` for tests (reports expected).
    Test { buildspec: String, image: Option<String> },
    /// Inline commands, run like a buildspec with a single build phase.
    Shell {
        commands: Vec<String>,
        artifacts: Option<ArtifactsSpec>,
        exported_variables: Vec<String>,
        image: Option<String>,
    },
    /// Waits for a person. Timeout 5m..=60d, default 7d (in `Action::timeout`).
    Approval { review_url: Option<String>, comments: Option<String> },
}

impl ActionKind {
    /// The `type:` key as written in the file.
    pub fn type_name(&self) -> &'static str {
        match self {
            ActionKind::Source { .. } => "source",
            ActionKind::Build { .. } => "build",
            ActionKind::Test { .. } => "test",
            ActionKind::Shell { .. } => "shell",
            ActionKind::Approval { .. } => "approval",
        }
    }
}

// CONTRACT (spec helper implements):
// pub fn parse_pipeline(file: &str, text: &str) -> Result<Pipeline, Vec<SpecError>>
// pub fn pipeline_schema() -> serde_json::Value
#[allow(dead_code)]
fn _contract(_: &SpecError) {}
