//! `gantry.yaml`: the pipeline file (formats.md §1).
//!
//! CONTRACT: the validated types below are what the engine and server consume.
//! Fields may be added; none may be renamed or removed.
//!
//! Reading a file takes two phases. `raw` decodes the YAML tree into raw
//! types that remember where each value was written, reporting unknown keys
//! and wrong types; `validate` then checks names, artifact wiring, namespaces,
//! `#{...}` references and per-type rules, and builds a [`Pipeline`] only if
//! nothing at all was wrong. [`parse_pipeline`] returns every problem of both
//! phases at once, in file order.
//!
//! The same file may also hold environments and services (formats.md §4);
//! [`crate::document`] reads the whole file, and [`parse_pipeline`] is the
//! shortcut for a file that must hold a pipeline. Whether a `deploy` action's
//! environment and service exist is checked when the files of a project are
//! put together ([`crate::document::assemble`]), since they may be defined
//! in an included file.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::buildspec::ArtifactsSpec;
use crate::location::{Location, SpecError};
use crate::names::{EnvironmentName, ServiceName};
use crate::notification::Notification;
use crate::trigger::Trigger;

mod image_ref;
pub(crate) mod raw;
pub(crate) mod validate;

pub use raw::check_agent_label;

/// The file `deploy` and `promote` actions read from their input, and
/// `image` actions write, unless told otherwise.
pub const IMAGE_DEFINITIONS: &str = "imagedefinitions.json";
/// The tag an `image` action gives when it is not told one: unique per
/// execution, and resolved like any other reference.
pub const DEFAULT_IMAGE_TAG: &str = "#{gantry.ExecutionId}";

use crate::names::NameRule;
pub use crate::names::{ActionName, ArtifactName, Namespace, PipelineName, StageName};

#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Default,
    serde::Serialize,
    serde::Deserialize,
    schemars::JsonSchema,
)]
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
    /// What starts the pipeline by itself; empty: only people and the API do.
    pub triggers: Vec<Trigger>,
    /// Where events of its executions are sent.
    pub notifications: Vec<Notification>,
    /// Where the pipeline's name is written.
    pub location: Location,
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
    /// `agent:` (build, test and shell): run on a build agent, not the server.
    pub agent: Option<AgentSelector>,
    pub kind: ActionKind,
    pub location: Location,
}

/// Which build agents may run an action: those with every label listed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AgentSelector {
    pub labels: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ActionKind {
    /// Snapshot of a git repository at one commit. `repository` is a path or
    /// URL; "." means the repository holding gantry.yaml.
    Source {
        repository: String,
        branch: Option<String>,
    },
    /// Runs a buildspec; `buildspec` is a path inside the first input artifact
    /// (default `buildspec.yml`). `image` = run inside a container of that image.
    Build {
        buildspec: String,
        image: Option<String>,
    },
    /// A `build` for tests (reports expected).
    Test {
        buildspec: String,
        image: Option<String>,
    },
    /// Inline commands, run like a buildspec with a single build phase.
    Shell {
        commands: Vec<String>,
        artifacts: Option<ArtifactsSpec>,
        exported_variables: Vec<String>,
        image: Option<String>,
    },
    /// Waits for a person. Timeout 5m..=60d, default 7d (in `Action::timeout`).
    Approval {
        review_url: Option<String>,
        comments: Option<String>,
        /// Who may decide, and how many must approve; `None`: one decision
        /// by any approver.
        policy: Option<ApprovalPolicy>,
    },
    /// Rolls `service` in `environment` to the images that `file` (an
    /// imagedefinitions.json in the one input artifact) names for its
    /// container, and waits until the service is healthy. Both names are
    /// known to exist once the project is assembled.
    Deploy {
        environment: EnvironmentName,
        service: ServiceName,
        /// Default `imagedefinitions.json`.
        file: String,
    },
    /// Builds an OCI image without Docker: the `context` directory of the
    /// first input becomes one layer at `dest`, on top of `base`'s layers.
    /// The image is pushed as `registry/repository:tag`, and the one output
    /// receives imagedefinitions.json (`[{"name": container, "imageUri": …}]`)
    /// and imageDetail.json. String fields may hold `#{...}`.
    Image {
        /// A relative directory in the first input; default `.`.
        context: String,
        /// Such as `shop/catalog`.
        repository: String,
        /// Default [`DEFAULT_IMAGE_TAG`].
        tag: String,
        /// Host and port; `None` = gantry's embedded registry.
        registry: Option<String>,
        /// The image to build on; `None` = an empty file system.
        base: Option<String>,
        entrypoint: Option<Vec<String>>,
        cmd: Option<Vec<String>>,
        /// The image config's environment (the `image_env` key).
        image_env: BTreeMap<String, String>,
        /// Absolute.
        workdir: Option<String>,
        /// The exposed port.
        port: Option<u16>,
        labels: BTreeMap<String, String>,
        user: Option<String>,
        /// Absolute; default `/app`.
        dest: String,
        /// The `name` in imagedefinitions.json; default: the action's name.
        container: String,
    },
    /// Copies the images of `file` (in the one input) to a new tag without
    /// rebuilding them, and writes the new imagedefinitions.json to the one
    /// output. String fields may hold `#{...}`.
    Promote {
        tag: String,
        /// New repository names by container name; others keep theirs.
        repositories: BTreeMap<String, String>,
        /// The target registry; `None` = each image's own.
        registry: Option<String>,
        /// Default `imagedefinitions.json`.
        file: String,
    },
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
            ActionKind::Deploy { .. } => "deploy",
            ActionKind::Image { .. } => "image",
            ActionKind::Promote { .. } => "promote",
        }
    }
}

/// Parses and validates a pipeline file. `file` is only used in the errors,
/// which come all at once, in file order, each as `FILE:LINE:COL: message`.
/// Environments and services in the file are validated too (a file with
/// only those is an error here, as it holds no pipeline); use
/// [`crate::document::parse_document`] to get them.
pub fn parse_pipeline(file: &str, text: &str) -> Result<Pipeline, Vec<SpecError>> {
    let document = crate::document::parse(file, text, true)?;
    // With a pipeline required, a document without one always has errors;
    // this error only keeps a decoder bug from passing as success.
    document.pipeline.ok_or_else(|| {
        vec![SpecError {
            file: file.to_owned(),
            location: Location { line: 1, col: 1 },
            message: "this file holds no pipeline".to_owned(),
        }]
    })
}

/// The JSON Schema of gantry.yaml (draft 2020-12), for editor completion.
/// It describes the shape; [`parse_pipeline`] and
/// [`crate::document::parse_document`] remain the judges of the rules a
/// schema cannot express (artifact wiring, references, unique names).
pub fn pipeline_schema() -> serde_json::Value {
    let generator = schemars::generate::SchemaSettings::draft2020_12().into_generator();
    let mut schema = generator
        .into_root_schema_for::<crate::document::RawFile>()
        .to_value();
    forbid_null(&mut schema);
    // A file holds a pipeline (`name` and `stages`), or only environments
    // and services; the derive cannot say "both or neither".
    if let serde_json::Value::Object(root) = &mut schema {
        root.insert(
            "dependentRequired".to_owned(),
            serde_json::json!({
                "name": ["stages"],
                "stages": ["name"],
                "execution_mode": ["name", "stages"],
                "variables": ["name", "stages"],
                "triggers": ["name", "stages"],
                "notifications": ["name", "stages"],
            }),
        );
    }
    schema
}

/// Removes the `null` that schemars allows for optional keys: an optional key
/// may be left out, but `key:` with nothing after it is an error in gantry.yaml.
fn forbid_null(value: &mut serde_json::Value) {
    use serde_json::Value;
    let Value::Object(object) = value else {
        if let Value::Array(items) = value {
            items.iter_mut().for_each(forbid_null);
        }
        return;
    };
    if let Some(Value::Array(types)) = object.get_mut("type") {
        types.retain(|t| t != "null");
        if let [only] = types.as_slice() {
            let only = only.clone();
            object.insert("type".to_owned(), only);
        }
    }
    if let Some(Value::Array(choices)) = object.get_mut("anyOf") {
        choices.retain(|c| c.get("type").is_none_or(|t| t != "null"));
        if let [only] = choices.as_slice() {
            // One choice left: it becomes the schema itself, beside its description.
            if let Value::Object(only) = only.clone() {
                object.remove("anyOf");
                object.extend(only);
            }
        }
    }
    object.values_mut().for_each(forbid_null);
}

/// An approval action's `policy:`: who may decide and how many distinct
/// approvals are needed. Role names are checked here; the server maps them
/// onto its roles.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovalPolicy {
    /// Only holders of one of these roles may decide; empty: any approver.
    pub roles: Vec<String>,
    /// These users may decide too (they still need the approver role).
    pub users: Vec<String>,
    /// Distinct approvals needed, 1..=20; one rejection rejects.
    pub required: u32,
    /// Whether whoever started the execution or authored its commit may
    /// approve it. Default: no.
    pub allow_self_approval: bool,
    /// Whether a decision needs a comment. Default: no.
    pub require_comment: bool,
    /// Approve by itself this long after it starts waiting, unless it was
    /// decided before (a bake time; `0s` in a test variant approves at
    /// once). Less than the approval's timeout. Default: never.
    pub auto_approve_after: Option<std::time::Duration>,
}
