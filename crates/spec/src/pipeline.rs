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

use std::collections::BTreeMap;
use std::time::Duration;

use crate::buildspec::ArtifactsSpec;
use crate::location::{Location, SpecError};
use crate::yaml::{self, Diagnostics};

mod raw;
mod validate;

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

            /// Checks a name written outside a pipeline file (an API call,
            /// a test); the message says what is allowed.
            pub fn new(name: &str) -> Result<Self, String> {
                NameRule::$name.check(name).map(|()| $name(name.to_owned()))
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
        }
    }
}

/// The characters and length a kind of name allows.
#[derive(Clone, Copy)]
struct NameRule {
    what: &'static str,
    /// Allowed besides ASCII letters and digits.
    extra: &'static str,
    max: usize,
}

#[allow(non_upper_case_globals)] // Named after the name types, so that `name_type!` can pick them.
impl NameRule {
    const PipelineName: NameRule = NameRule {
        what: "pipeline name",
        extra: ".@_-",
        max: 100,
    };
    const StageName: NameRule = NameRule {
        what: "stage name",
        extra: ".@_-",
        max: 100,
    };
    const ActionName: NameRule = NameRule {
        what: "action name",
        extra: ".@_-",
        max: 100,
    };
    const ArtifactName: NameRule = NameRule {
        what: "artifact name",
        extra: "_-",
        max: 100,
    };
    const Namespace: NameRule = NameRule {
        what: "namespace",
        extra: "@_-",
        max: 100,
    };
    /// Pipeline variables, as CodePipeline allows them.
    const Variable: NameRule = NameRule {
        what: "variable name",
        extra: "@_-",
        max: 128,
    };

    fn check(self, name: &str) -> Result<(), String> {
        let length = name.chars().count();
        let chars_ok = name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || self.extra.contains(c));
        if (1..=self.max).contains(&length) && chars_ok {
            return Ok(());
        }
        let extra: Vec<String> = self.extra.chars().map(String::from).collect();
        Err(format!(
            "invalid {} `{name}`: use 1 to {} characters from A-Z a-z 0-9 {}",
            self.what,
            self.max,
            extra.join(" ")
        ))
    }
}

/// Parses and validates a pipeline file. `file` is only used in the errors,
/// which come all at once, in file order, each as `FILE:LINE:COL: message`.
pub fn parse_pipeline(file: &str, text: &str) -> Result<Pipeline, Vec<SpecError>> {
    let root = yaml::parse(file, text).map_err(|e| vec![e])?;
    let mut diag = Diagnostics::new(file);
    let pipeline =
        raw::decode(&mut diag, &root).and_then(|raw| validate::validate(&mut diag, &raw));
    let (errors, _warnings) = diag.into_sorted();
    match pipeline {
        Some(pipeline) if errors.is_empty() => Ok(pipeline),
        _ => Err(errors),
    }
}

/// The JSON Schema of gantry.yaml (draft 2020-12), for editor completion.
/// It describes the shape; [`parse_pipeline`] remains the judge of the rules
/// a schema cannot express (artifact wiring, references, unique names).
pub fn pipeline_schema() -> serde_json::Value {
    let generator = schemars::generate::SchemaSettings::draft2020_12().into_generator();
    let mut schema = generator
        .into_root_schema_for::<raw::RawPipeline>()
        .to_value();
    forbid_null(&mut schema);
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
