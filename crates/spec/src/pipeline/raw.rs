//! Phase one of reading gantry.yaml: the YAML tree decoded into raw types
//! that say what was written and where, without judging it yet.
//!
//! Decoding reports unknown keys, missing required keys and wrong types; the
//! values themselves (names, artifact wiring, references, ranges) are judged
//! by `validate`. A value that failed to decode is left out (`None`), and the
//! `incomplete_*` flags tell the validator which cross-checks would only
//! produce follow-on noise.
//!
//! The same types, through `schemars`, give the JSON Schema that editors use
//! for completion (`pipeline_schema`). Fields that the decoder keeps optional
//! only to survive errors are marked required in the schema with `with`.

use std::collections::BTreeMap;
use std::time::Duration;

use schemars::JsonSchema;

use crate::buildspec::{self, ArtifactsSpec};
use crate::location::Location;
use crate::notification::Notification;
use crate::notification::decode::{RawNotification, decode_notifications};
use crate::pipeline::{ApprovalPolicy, ExecutionMode};
use crate::trigger::Trigger;
use crate::trigger::decode::{PipelineContext, RawTrigger, SourceAction, decode_triggers};
use crate::yaml::{Diagnostics, Fields, Located, Node, Value};

/// Top-level keys of gantry.yaml that belong to the pipeline.
pub(crate) const PIPELINE_KEYS: &[&str] = &[
    "name",
    "execution_mode",
    "variables",
    "stages",
    "triggers",
    "notifications",
];
const STAGE_KEYS: &[&str] = &["name", "actions"];
/// Keys every action type accepts.
const ACTION_KEYS: &[&str] = &[
    "name",
    "type",
    "run_order",
    "inputs",
    "outputs",
    "namespace",
    "timeout",
];
/// Keys only some action types accept, by type, in the order `type` lists them.
const TYPE_KEYS: &[(&str, &[&str])] = &[
    ("source", &["repository", "branch"]),
    ("build", &["buildspec", "image", "env", "agent"]),
    ("test", &["buildspec", "image", "env", "agent"]),
    (
        "shell",
        &[
            "commands",
            "artifacts",
            "exported_variables",
            "image",
            "env",
            "agent",
        ],
    ),
    ("approval", &["review_url", "comments", "policy"]),
    ("deploy", &["environment", "service", "file"]),
    (
        "image",
        &[
            "context",
            "repository",
            "tag",
            "registry",
            "base",
            "entrypoint",
            "cmd",
            "image_env",
            "workdir",
            "port",
            "labels",
            "user",
            "dest",
            "container",
        ],
    ),
    ("promote", &["tag", "repositories", "registry", "file"]),
];

/// A scalar given as text, a number or a boolean (`PORT: 8080` is `"8080"`).
pub(crate) struct ScalarText;

impl JsonSchema for ScalarText {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "ScalarText".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "Text; numbers and booleans are taken as written.",
            "type": ["string", "number", "boolean"]
        })
    }
}

/// The pipeline's keys of the file (the rest is in `crate::document`).
/// `name` and `stages` are required together, which the schema says with
/// `dependentRequired` (added by `pipeline_schema`).
#[derive(JsonSchema)]
#[schemars(deny_unknown_fields)]
pub(crate) struct RawPipeline {
    /// The pipeline's name; with `stages`, absent in a file of only
    /// environments and services.
    #[schemars(
        with = "Option<String>",
        length(min = 1, max = 100),
        pattern(r"^[A-Za-z0-9.@_-]+$")
    )]
    pub(crate) name: Option<Located<String>>,
    /// What a new execution does to one already running: `superseded` (the
    /// default) lets the newer pass the older at the next stage, `queued` waits,
    /// `parallel` runs both.
    pub(crate) execution_mode: Option<Located<ExecutionMode>>,
    /// Pipeline variables and their default values, used as
    /// `#{variables.NAME}`; `gantry run --var NAME=VALUE` overrides them.
    #[schemars(with = "Option<BTreeMap<String, ScalarText>>")]
    pub(crate) variables: Vec<(Located<String>, Located<String>)>,
    /// The stages, run one after the other.
    #[schemars(with = "Option<Vec<RawStage>>", length(min = 1))]
    pub(crate) stages: Option<Located<Vec<RawStage>>>,
    /// What starts the pipeline by itself: pushes and pull requests (`git`),
    /// a cron `schedule`, or another `pipeline` ending. Without triggers, a
    /// pipeline runs only when started.
    #[schemars(with = "Option<Vec<RawTrigger>>")]
    pub(crate) triggers: Vec<Trigger>,
    /// Where events of the pipeline's executions, approvals and deployments
    /// are sent.
    #[schemars(with = "Option<Vec<RawNotification>>")]
    pub(crate) notifications: Vec<Notification>,
    /// Some action's outputs could not be decoded, so "not an output of an
    /// earlier action" would be guesswork.
    #[schemars(skip)]
    pub(crate) incomplete_outputs: bool,
    /// Some action's namespace could not be decoded.
    #[schemars(skip)]
    pub(crate) incomplete_namespaces: bool,
    /// The `variables` mapping could not be decoded.
    #[schemars(skip)]
    pub(crate) incomplete_variables: bool,
}

/// One stage.
#[derive(JsonSchema)]
#[schemars(rename = "Stage", deny_unknown_fields)]
pub(crate) struct RawStage {
    /// The stage's name, unique in the pipeline.
    #[schemars(
        with = "String",
        length(min = 1, max = 100),
        pattern(r"^[A-Za-z0-9.@_-]+$")
    )]
    pub(crate) name: Option<Located<String>>,
    /// The actions; equal `run_order` run in parallel, lower first.
    #[schemars(with = "Vec<RawAction>", length(min = 1))]
    pub(crate) actions: Option<Vec<RawAction>>,
    #[schemars(skip)]
    pub(crate) location: Location,
}

/// One action: the keys every type takes, and those of its `type`.
#[derive(JsonSchema)]
#[schemars(rename = "Action", deny_unknown_fields)]
pub(crate) struct RawAction {
    /// The action's name, unique in its stage.
    #[schemars(
        with = "String",
        length(min = 1, max = 100),
        pattern(r"^[A-Za-z0-9.@_-]+$")
    )]
    pub(crate) name: Option<Located<String>>,
    /// 1 to 999, default 1. Actions with equal run_order run in parallel;
    /// higher ones wait for all lower ones to succeed.
    #[schemars(with = "Option<u32>", range(min = 1, max = 999))]
    pub(crate) run_order: Option<Located<i128>>,
    /// Input artifacts, outputs of earlier actions. The first is the working
    /// directory of build, test and shell actions.
    #[schemars(with = "Option<Vec<String>>")]
    pub(crate) inputs: Option<Vec<Located<String>>>,
    /// Output artifacts, unique in the pipeline.
    #[schemars(with = "Option<Vec<String>>")]
    pub(crate) outputs: Option<Vec<Located<String>>>,
    /// Makes the action's output variables available as `#{NAMESPACE.NAME}`
    /// to later actions.
    #[schemars(
        with = "Option<String>",
        length(min = 1, max = 100),
        pattern(r"^[A-Za-z0-9@_-]+$")
    )]
    pub(crate) namespace: Option<Located<String>>,
    /// How long the action may take: `90s`, `30m`, `2h`, `7d`. Approvals:
    /// 5m to 60d, default 7d; other actions: default 1h.
    #[schemars(with = "Option<String>", pattern(crate::duration::DURATION_PATTERN))]
    pub(crate) timeout: Option<Located<String>>,
    /// The type and its own keys.
    #[schemars(flatten)]
    pub(crate) kind: RawActionKind,
    #[schemars(skip)]
    pub(crate) location: Location,
    /// Where `type:`'s value is (the action itself when it is missing).
    #[schemars(skip)]
    pub(crate) type_location: Location,
}

/// Extra environment variables of build, test and shell actions; values may
/// hold `#{...}` references.
type RawEnv = Vec<(Located<String>, Located<String>)>;

#[derive(JsonSchema)]
#[schemars(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub(crate) enum RawActionKind {
    /// A snapshot of a git repository at one commit. Output variables:
    /// CommitId, BranchName, CommitMessage, AuthorDate, AuthorEmail, AuthorName.
    Source {
        /// A path or URL; "." (the default) is the repository holding gantry.yaml.
        #[schemars(with = "Option<String>")]
        repository: Option<Located<String>>,
        /// The branch to take the commit from; default: the current one.
        #[schemars(with = "Option<String>")]
        branch: Option<Located<String>>,
    },
    /// Runs a buildspec from the first input artifact.
    Build(RawBuild),
    /// A build that runs tests (reports expected).
    Test(RawBuild),
    /// Inline commands, run like a buildspec with a single build phase.
    Shell {
        /// The commands; each item is one command, run in one shell session.
        #[schemars(with = "Vec<String>", length(min = 1))]
        commands: Option<Vec<Located<String>>>,
        /// Which files make up the output artifact, as a buildspec's `artifacts`.
        #[schemars(with = "Option<RawArtifacts>")]
        artifacts: Option<Located<ArtifactsSpec>>,
        /// Variables whose final values become the action's output variables.
        #[schemars(with = "Option<Vec<String>>")]
        exported_variables: Vec<Located<String>>,
        /// Run inside a container of this image instead of on the host.
        #[schemars(with = "Option<String>")]
        image: Option<Located<String>>,
        /// Extra environment variables; values may hold `#{...}` references.
        #[schemars(with = "Option<BTreeMap<String, ScalarText>>")]
        env: RawEnv,
        /// Run on a build agent (`gantry agent`) instead of the server.
        #[schemars(with = "Option<RawAgent>")]
        agent: Option<Located<Vec<String>>>,
    },
    /// Waits for a person to approve or reject.
    Approval {
        /// A page for the reviewer to look at.
        #[schemars(with = "Option<String>")]
        review_url: Option<Located<String>>,
        /// Text shown to the reviewer.
        #[schemars(with = "Option<String>")]
        comments: Option<Located<String>>,
        /// Who may decide and how many approvals are needed. Without it, one
        /// decision by any approver.
        #[schemars(with = "Option<RawApprovalPolicy>")]
        policy: Option<Located<ApprovalPolicy>>,
    },
    /// Rolls a service in an environment to the images named in the input's
    /// imagedefinitions.json, and waits until it is healthy.
    Deploy {
        /// The environment to deploy to.
        #[schemars(with = "String", pattern(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"))]
        environment: Option<Located<String>>,
        /// The service to deploy.
        #[schemars(with = "String", pattern(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"))]
        service: Option<Located<String>>,
        /// The file in the input artifact; default `imagedefinitions.json`.
        #[schemars(with = "Option<String>")]
        file: Option<Located<String>>,
    },
    /// Builds an OCI image from a directory of the first input, without
    /// Docker, pushes it, and writes imagedefinitions.json and
    /// imageDetail.json to the output.
    Image(Box<RawImage>),
    /// Gives the images of the input's imagedefinitions.json a new tag (and
    /// optionally repository or registry) without rebuilding them, and
    /// writes the new imagedefinitions.json to the output.
    Promote {
        /// The new tag; may hold `#{...}`.
        #[schemars(with = "String")]
        tag: Option<Located<String>>,
        /// New repository names by container name; containers not listed
        /// keep theirs.
        #[schemars(with = "Option<BTreeMap<String, String>>")]
        repositories: RawEnv,
        /// The registry to copy to (host and port); default: each image's own.
        #[schemars(with = "Option<String>")]
        registry: Option<Located<String>>,
        /// The file in the input artifact; default `imagedefinitions.json`.
        #[schemars(with = "Option<String>")]
        file: Option<Located<String>>,
    },
    /// A missing or unknown `type`: already reported, nothing to validate.
    #[schemars(skip)]
    Unknown,
}

/// The keys of `image` actions. The image's own environment variables are
/// `image_env`, since `env` means the variables of the process running an
/// action everywhere else.
#[derive(JsonSchema)]
#[schemars(inline)]
pub(crate) struct RawImage {
    /// The directory inside the first input that becomes the image's layer;
    /// default `.`.
    #[schemars(with = "Option<String>")]
    pub(crate) context: Option<Located<String>>,
    /// The repository, such as `shop/catalog`.
    #[schemars(with = "String")]
    pub(crate) repository: Option<Located<String>>,
    /// The tag; default `#{gantry.ExecutionId}`.
    #[schemars(with = "Option<String>")]
    pub(crate) tag: Option<Located<String>>,
    /// The registry (host and port); default: gantry's embedded one.
    #[schemars(with = "Option<String>")]
    pub(crate) registry: Option<Located<String>>,
    /// The image to build on; default: none (an empty file system).
    #[schemars(with = "Option<String>")]
    pub(crate) base: Option<Located<String>>,
    /// The image's `Entrypoint`.
    #[schemars(with = "Option<Vec<String>>")]
    pub(crate) entrypoint: Option<Vec<Located<String>>>,
    /// The image's `Cmd`.
    #[schemars(with = "Option<Vec<String>>")]
    pub(crate) cmd: Option<Vec<Located<String>>>,
    /// The image's environment variables (added to the base's).
    #[schemars(with = "Option<BTreeMap<String, ScalarText>>")]
    pub(crate) image_env: RawEnv,
    /// The image's `WorkingDir`; absolute.
    #[schemars(with = "Option<String>")]
    pub(crate) workdir: Option<Located<String>>,
    /// The port the image exposes.
    #[schemars(with = "Option<u16>", range(min = 1))]
    pub(crate) port: Option<Located<i128>>,
    /// The image's labels (merged over the base's).
    #[schemars(with = "Option<BTreeMap<String, ScalarText>>")]
    pub(crate) labels: RawEnv,
    /// The image's `User`: `name`, `uid` or `uid:gid`.
    #[schemars(with = "Option<String>")]
    pub(crate) user: Option<Located<String>>,
    /// Where the context goes in the image; absolute, default `/app`.
    #[schemars(with = "Option<String>")]
    pub(crate) dest: Option<Located<String>>,
    /// The name written into imagedefinitions.json; default: the action's name.
    #[schemars(
        with = "Option<String>",
        length(min = 1, max = 255),
        pattern(r"^[A-Za-z0-9_-]+$")
    )]
    pub(crate) container: Option<Located<String>>,
}

/// The keys of `build` and `test` actions.
#[derive(JsonSchema)]
#[schemars(inline)]
pub(crate) struct RawBuild {
    /// Path of the buildspec inside the first input artifact; default `buildspec.yml`.
    #[schemars(with = "Option<String>")]
    pub(crate) buildspec: Option<Located<String>>,
    /// Run inside a container of this image instead of on the host.
    #[schemars(with = "Option<String>")]
    pub(crate) image: Option<Located<String>>,
    /// Extra environment variables; values may hold `#{...}` references.
    #[schemars(with = "Option<BTreeMap<String, ScalarText>>")]
    pub(crate) env: RawEnv,
    /// Run on a build agent (`gantry agent`) instead of the server.
    #[schemars(with = "Option<RawAgent>")]
    pub(crate) agent: Option<Located<Vec<String>>>,
}

/// `agent:` of a `build`, `test` or `shell` action: the action runs on a
/// build agent (`gantry agent`) that has every label listed.
#[derive(JsonSchema)]
#[schemars(rename = "Agent", deny_unknown_fields)]
#[allow(dead_code)] // Only its schema is used; the decoder builds the labels.
pub(crate) struct RawAgent {
    /// Labels the agent must all have (`gantry agent --labels`); none: any agent.
    #[schemars(length(max = 16))]
    labels: Option<Vec<AgentLabel>>,
}

/// An agent label: 1 to 63 of A-Z a-z 0-9 . _ -.
#[derive(JsonSchema)]
#[allow(dead_code)]
struct AgentLabel(#[schemars(length(min = 1, max = 63), pattern(r"^[A-Za-z0-9._-]+$"))] String);

/// The schema of a `shell` action's `artifacts` (the buildspec keys gantry implements).
#[derive(JsonSchema)]
#[schemars(rename = "Artifacts", deny_unknown_fields, rename_all = "kebab-case")]
#[allow(dead_code)] // Only its schema is used; the decoder builds an ArtifactsSpec.
pub(crate) struct RawArtifacts {
    /// Globs relative to base-directory: `**/*`, `dir/*`.
    files: OneOrMany,
    /// The artifact's name.
    name: Option<String>,
    /// The directory the globs are relative to; it is stripped from the paths.
    base_directory: Option<String>,
    /// Flatten the files into the artifact's root.
    discard_paths: Option<YesNo>,
    /// Globs of files to leave out.
    exclude_paths: Option<OneOrMany>,
    /// Keep symbolic links as links.
    enable_symlinks: Option<YesNo>,
}

/// One string or a list of them.
#[derive(JsonSchema)]
#[schemars(untagged)]
#[allow(dead_code)] // Only its schema is used.
pub(crate) enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

/// A CodeBuild boolean: `yes`, `no`, `true` or `false`.
pub(crate) struct YesNo;

impl JsonSchema for YesNo {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "YesNo".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "yes, no, true or false",
            "anyOf": [
                {"type": "boolean"},
                {"enum": ["yes", "no", "true", "false"]}
            ]
        })
    }
}

/// Decodes the pipeline's keys of a file's top-level mapping.
pub(crate) fn decode(diag: &mut Diagnostics<'_>, top: &Fields<'_>) -> RawPipeline {
    let mut raw = RawPipeline {
        name: top
            .required(diag, "name", "(the pipeline's name)")
            .and_then(|n| diag.string(n, "`name`")),
        execution_mode: top
            .get("execution_mode")
            .and_then(|n| decode_execution_mode(diag, n)),
        variables: Vec::new(),
        stages: None,
        triggers: Vec::new(),
        notifications: Vec::new(),
        incomplete_outputs: false,
        incomplete_namespaces: false,
        incomplete_variables: false,
    };
    if let Some(node) = top.get("variables") {
        let (variables, complete) = decode_env_map(diag, node, "`variables`");
        raw.variables = variables;
        raw.incomplete_variables = !complete;
    }
    if let Some(node) = top.required(diag, "stages", "(the list of stages)") {
        raw.stages = decode_stages(diag, node, &mut raw).map(|s| Located::new(s, node.location));
    }
    if let Some(node) = top.get("triggers") {
        let context = PipelineContext {
            sources: first_stage_sources(&raw),
            pipeline: raw.name.as_ref().map(|n| n.as_str()),
        };
        raw.triggers = decode_triggers(diag, node, &context);
    }
    if let Some(node) = top.get("notifications") {
        raw.notifications = decode_notifications(diag, node);
    }
    raw
}

/// The source actions of the first stage, or `None` when the first stage
/// did not decode whole (then a trigger's `source` is not judged).
fn first_stage_sources(raw: &RawPipeline) -> Option<Vec<SourceAction>> {
    let stages = &raw.stages.as_ref()?.value;
    let Some(first) = stages.first() else {
        return Some(Vec::new());
    };
    let mut sources = Vec::new();
    for action in first.actions.as_ref()? {
        match &action.kind {
            RawActionKind::Source { branch, .. } => sources.push(SourceAction {
                name: action.name.as_ref()?.value.clone(),
                branch: branch.as_ref().map(|b| b.value.clone()),
            }),
            RawActionKind::Unknown => return None,
            _ => {}
        }
    }
    Some(sources)
}

fn decode_execution_mode(
    diag: &mut Diagnostics<'_>,
    node: &Node,
) -> Option<Located<ExecutionMode>> {
    let text = diag.string(node, "`execution_mode`")?;
    let mode = match text.as_str() {
        "superseded" => ExecutionMode::Superseded,
        "queued" => ExecutionMode::Queued,
        "parallel" => ExecutionMode::Parallel,
        other => {
            diag.error(
                text.location,
                format!(
                    "unknown execution_mode `{other}`; expected one of: superseded, queued, parallel"
                ),
            );
            return None;
        }
    };
    Some(Located::new(mode, text.location))
}

/// A mapping of names to text (`variables`, `env`): the entries that decoded,
/// and whether all of them did.
pub(crate) fn decode_env_map(
    diag: &mut Diagnostics<'_>,
    node: &Node,
    what: &str,
) -> (RawEnv, bool) {
    let Some(map) = diag.map_or_empty(node, what) else {
        return (Vec::new(), false);
    };
    let mut out = Vec::with_capacity(map.fields.len());
    let mut complete = true;
    for field in &map.fields {
        let key = Located::new(field.key.clone(), field.key_node.location);
        match diag.string_or_empty(
            field.value,
            &format!("the value of `{}` in {what}", field.key),
        ) {
            Some(value) => out.push((key, value)),
            None => complete = false,
        }
    }
    (out, complete)
}

fn decode_stages(
    diag: &mut Diagnostics<'_>,
    node: &Node,
    raw: &mut RawPipeline,
) -> Option<Vec<RawStage>> {
    let Value::Seq(items) = &node.value else {
        diag.error(
            node.location,
            format!("`stages` must be a list, found {}", node.kind()),
        );
        raw.incomplete_outputs = true;
        raw.incomplete_namespaces = true;
        return None;
    };
    let mut stages = Vec::with_capacity(items.len());
    for item in items {
        let Some(fields) = diag.map(item, "a stage") else {
            raw.incomplete_outputs = true;
            raw.incomplete_namespaces = true;
            continue;
        };
        fields.deny_unknown(diag, STAGE_KEYS, "in a stage");
        let name = fields
            .required(diag, "name", "in a stage")
            .and_then(|n| diag.string(n, "a stage's `name`"));
        let actions = fields
            .required(diag, "actions", "in a stage")
            .and_then(|n| decode_actions(diag, n, raw));
        stages.push(RawStage {
            name,
            actions,
            location: fields.location,
        });
    }
    Some(stages)
}

fn decode_actions(
    diag: &mut Diagnostics<'_>,
    node: &Node,
    raw: &mut RawPipeline,
) -> Option<Vec<RawAction>> {
    let Value::Seq(items) = &node.value else {
        diag.error(
            node.location,
            format!("`actions` must be a list, found {}", node.kind()),
        );
        raw.incomplete_outputs = true;
        raw.incomplete_namespaces = true;
        return None;
    };
    let mut actions = Vec::with_capacity(items.len());
    for item in items {
        match diag.map(item, "an action") {
            Some(fields) => actions.push(decode_action(diag, &fields, raw)),
            None => {
                raw.incomplete_outputs = true;
                raw.incomplete_namespaces = true;
            }
        }
    }
    Some(actions)
}

/// The `type` of an action, checked against the known ones.
fn decode_type(diag: &mut Diagnostics<'_>, fields: &Fields<'_>) -> Option<&'static str> {
    let known: Vec<&str> = TYPE_KEYS.iter().map(|(t, _)| *t).collect();
    let context = format!("in an action (one of: {})", known.join(", "));
    let text = fields
        .required(diag, "type", &context)
        .and_then(|n| diag.string(n, "an action's `type`"))?;
    if let Some((t, _)) = TYPE_KEYS.iter().find(|(t, _)| *t == text.as_str()) {
        return Some(t);
    }
    diag.error(
        text.location,
        format!(
            "unknown action type `{}`{}; expected one of: {}",
            text.value,
            crate::suggest::did_you_mean(&text.value, known.iter().copied()),
            known.join(", ")
        ),
    );
    None
}

fn decode_action(
    diag: &mut Diagnostics<'_>,
    fields: &Fields<'_>,
    raw: &mut RawPipeline,
) -> RawAction {
    let action_type = decode_type(diag, fields);
    check_action_keys(diag, fields, action_type);

    let string = |diag: &mut Diagnostics<'_>, key: &str| {
        fields
            .get(key)
            .and_then(|n| diag.string(n, &format!("`{key}`")))
    };
    let list = |diag: &mut Diagnostics<'_>, key: &str| {
        fields
            .get(key)
            .map(|n| diag.string_list(n, &format!("`{key}`"), false))
    };

    let name = fields
        .required(diag, "name", "in an action")
        .and_then(|n| diag.string(n, "an action's `name`"));
    let run_order = fields.get("run_order").and_then(|n| match &n.value {
        Value::Int(i) => Some(Located::new(*i, n.location)),
        _ => {
            let found = n
                .scalar_text()
                .map(|t| format!("`{t}`"))
                .unwrap_or(n.kind().to_owned());
            diag.error(
                n.location,
                format!("`run_order` must be a whole number from 1 to 999, found {found}"),
            );
            None
        }
    });
    // An absent list is empty; a list that failed to decode is `None`, so
    // that the validator does not add "needs an input" to the type error.
    let inputs = list(diag, "inputs").unwrap_or(Some(Vec::new()));
    let outputs = list(diag, "outputs").unwrap_or(Some(Vec::new()));
    if outputs.is_none() {
        raw.incomplete_outputs = true;
    }
    let namespace = string(diag, "namespace");
    if namespace.is_none() && fields.get("namespace").is_some() {
        raw.incomplete_namespaces = true;
    }
    let timeout = string(diag, "timeout");
    let env = |diag: &mut Diagnostics<'_>| {
        fields
            .get("env")
            .map(|n| decode_env_map(diag, n, "`env`").0)
            .unwrap_or_default()
    };

    let kind = match action_type {
        Some("source") => RawActionKind::Source {
            repository: string(diag, "repository"),
            branch: string(diag, "branch"),
        },
        Some(t @ ("build" | "test")) => {
            let build = RawBuild {
                buildspec: string(diag, "buildspec"),
                image: string(diag, "image"),
                env: env(diag),
                agent: fields.get("agent").and_then(|n| decode_agent(diag, n)),
            };
            if t == "build" {
                RawActionKind::Build(build)
            } else {
                RawActionKind::Test(build)
            }
        }
        Some("shell") => RawActionKind::Shell {
            commands: list(diag, "commands").unwrap_or(Some(Vec::new())),
            artifacts: fields.get("artifacts").and_then(|n| {
                buildspec::decode_artifacts(diag, n).map(|a| Located::new(a, n.location))
            }),
            exported_variables: list(diag, "exported_variables")
                .flatten()
                .unwrap_or_default(),
            image: string(diag, "image"),
            env: env(diag),
            agent: fields.get("agent").and_then(|n| decode_agent(diag, n)),
        },
        Some("approval") => RawActionKind::Approval {
            review_url: string(diag, "review_url"),
            comments: string(diag, "comments"),
            policy: fields
                .get("policy")
                .and_then(|n| decode_policy(diag, n).map(|p| Located::new(p, n.location))),
        },
        Some("deploy") => RawActionKind::Deploy {
            environment: fields
                .required(diag, "environment", "in a `deploy` action")
                .and_then(|n| diag.string(n, "`environment`")),
            service: fields
                .required(diag, "service", "in a `deploy` action")
                .and_then(|n| diag.string(n, "`service`")),
            file: string(diag, "file"),
        },
        Some("image") => RawActionKind::Image(Box::new(RawImage {
            context: string(diag, "context"),
            repository: fields
                .required(
                    diag,
                    "repository",
                    "in an `image` action (such as shop/catalog)",
                )
                .and_then(|n| diag.string(n, "`repository`")),
            tag: string(diag, "tag"),
            registry: string(diag, "registry"),
            base: string(diag, "base"),
            entrypoint: list(diag, "entrypoint").flatten(),
            cmd: list(diag, "cmd").flatten(),
            image_env: fields
                .get("image_env")
                .map(|n| decode_env_map(diag, n, "`image_env`").0)
                .unwrap_or_default(),
            workdir: string(diag, "workdir"),
            port: fields
                .get("port")
                .and_then(|n| diag.whole_number(n, "`port`", 1, 65_535)),
            labels: fields
                .get("labels")
                .map(|n| decode_env_map(diag, n, "`labels`").0)
                .unwrap_or_default(),
            user: string(diag, "user"),
            dest: string(diag, "dest"),
            container: string(diag, "container"),
        })),
        Some("promote") => RawActionKind::Promote {
            tag: fields
                .required(diag, "tag", "in a `promote` action")
                .and_then(|n| diag.string(n, "`tag`")),
            repositories: fields
                .get("repositories")
                .map(|n| decode_env_map(diag, n, "`repositories`").0)
                .unwrap_or_default(),
            registry: string(diag, "registry"),
            file: string(diag, "file"),
        },
        _ => RawActionKind::Unknown,
    };
    let type_location = fields.get("type").map_or(fields.location, |n| n.location);
    RawAction {
        name,
        run_order,
        inputs,
        outputs,
        namespace,
        timeout,
        kind,
        location: fields.location,
        type_location,
    }
}

/// Reports keys that no action takes, and keys that belong to another type.
fn check_action_keys(diag: &mut Diagnostics<'_>, fields: &Fields<'_>, action_type: Option<&str>) {
    for field in &fields.fields {
        let key = field.key.as_str();
        if ACTION_KEYS.contains(&key) {
            continue;
        }
        let owners: Vec<&str> = TYPE_KEYS
            .iter()
            .filter(|(_, keys)| keys.contains(&key))
            .map(|(t, _)| *t)
            .collect();
        let Some(action_type) = action_type else {
            // Without a known type, only keys that no type takes are certain mistakes.
            if owners.is_empty() {
                let every = ACTION_KEYS
                    .iter()
                    .chain(TYPE_KEYS.iter().flat_map(|(_, keys)| keys.iter()))
                    .copied();
                diag.error(
                    field.key_node.location,
                    format!(
                        "unknown key `{key}` in an action{}",
                        crate::suggest::did_you_mean(key, every)
                    ),
                );
            }
            continue;
        };
        if owners.contains(&action_type) {
            continue;
        }
        let mut known = ACTION_KEYS.to_vec();
        known.extend(
            TYPE_KEYS
                .iter()
                .find(|(t, _)| *t == action_type)
                .map_or(&[][..], |(_, k)| *k),
        );
        let message = if owners.is_empty() {
            format!(
                "unknown key `{key}` in {} `{action_type}` action{}; expected one of: {}",
                article(action_type),
                crate::suggest::did_you_mean(key, known.iter().copied()),
                known.join(", ")
            )
        } else {
            format!(
                "`{key}` is not a key of {} `{action_type}` action (only of: {})",
                article(action_type),
                owners.join(", ")
            )
        };
        diag.error(field.key_node.location, message);
    }
}

/// "a" or "an", for messages that name an action type.
pub(crate) fn article(word: &str) -> &'static str {
    if word.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use serde_json::Value;

    use super::*;
    use crate::buildspec::ARTIFACT_KEYS;
    use crate::document::TOP_KEYS;
    use crate::environment::decode::{ENVIRONMENT_KEYS, LOAD_BALANCER_KEYS, RULE_KEYS};
    use crate::service::decode::{
        ANALYSIS_KEYS, BLUE_GREEN_KEYS, CANARY_KEYS, CIRCUIT_BREAKER_KEYS, COMPARE_KEYS,
        DEPLOYMENT_KEYS, HEALTH_CHECK_KEYS, LINEAR_KEYS, OVERRIDE_KEYS, PROBE_KEYS,
        PROMETHEUS_KEYS, RESOURCES_KEYS, SERVICE_KEYS,
    };

    fn property_names(schema: &Value) -> BTreeSet<String> {
        schema["properties"]
            .as_object()
            .map(|p| p.keys().cloned().collect())
            .unwrap_or_default()
    }

    fn set(keys: &[&str]) -> BTreeSet<String> {
        keys.iter().map(|k| (*k).to_owned()).collect()
    }

    /// The schema is derived from the raw types and the decoder has its own
    /// key lists; this keeps the two describing the same file.
    #[test]
    fn schema_and_decoder_know_the_same_keys() {
        let schema = crate::pipeline::pipeline_schema();
        let defs = &schema["$defs"];
        assert_eq!(property_names(&schema), set(TOP_KEYS));
        assert!(PIPELINE_KEYS.iter().all(|k| TOP_KEYS.contains(k)));
        assert_eq!(property_names(&defs["Stage"]), set(STAGE_KEYS));
        for (def, keys) in [
            ("Environment", ENVIRONMENT_KEYS),
            ("LoadBalancer", LOAD_BALANCER_KEYS),
            ("Rule", RULE_KEYS),
            ("Service", SERVICE_KEYS),
            ("ServiceOverride", OVERRIDE_KEYS),
            ("HealthCheck", HEALTH_CHECK_KEYS),
            ("Deployment", DEPLOYMENT_KEYS),
            ("CircuitBreaker", CIRCUIT_BREAKER_KEYS),
            ("BlueGreen", BLUE_GREEN_KEYS),
            ("Canary", CANARY_KEYS),
            ("Linear", LINEAR_KEYS),
            ("Analysis", ANALYSIS_KEYS),
            ("CompareToStable", COMPARE_KEYS),
            ("Prometheus", PROMETHEUS_KEYS),
            ("Probe", PROBE_KEYS),
            ("Resources", RESOURCES_KEYS),
        ] {
            assert_eq!(property_names(&defs[def]), set(keys), "{def}");
        }
        // `type` is declared by each variant below, with its value.
        let mut common = set(ACTION_KEYS);
        common.remove("type");
        assert_eq!(property_names(&defs["Action"]), common);
        assert_eq!(property_names(&defs["Artifacts"]), set(ARTIFACT_KEYS));
        let variants = defs["Action"]["oneOf"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert_eq!(variants.len(), TYPE_KEYS.len());
        for (variant, (type_name, keys)) in variants.iter().zip(TYPE_KEYS) {
            assert_eq!(variant["properties"]["type"]["const"], *type_name);
            let mut expected = set(keys);
            expected.insert("type".to_owned());
            assert_eq!(property_names(variant), expected, "{type_name}");
        }
    }
}

/// The keys of an approval's `policy`.
const POLICY_KEYS: &[&str] = &[
    "roles",
    "users",
    "required",
    "allow_self_approval",
    "require_comment",
    "auto_approve_after",
];
/// The roles a policy may name (the server's roles).
const POLICY_ROLES: &[&str] = &["viewer", "operator", "approver", "secrets", "admin"];

/// Who may decide an approval.
#[derive(JsonSchema)]
#[schemars(deny_unknown_fields)]
#[allow(dead_code)] // Only its schema is used.
pub(crate) struct RawApprovalPolicy {
    /// Only holders of one of these roles may decide (admins always may).
    /// Default: any approver.
    roles: Option<Vec<String>>,
    /// These users may decide too; they still need the approver role.
    users: Option<Vec<String>>,
    /// Distinct approvals needed (N of M); one rejection rejects. Default 1.
    #[schemars(range(min = 1, max = 20))]
    required: Option<u32>,
    /// Whether whoever started the execution, or authored its commit, may
    /// approve it. Default false.
    allow_self_approval: Option<bool>,
    /// Whether approving or rejecting needs a comment. Default false.
    require_comment: Option<bool>,
    /// Approve by itself this long after it starts waiting, unless decided
    /// before (`30m`, `0s`); less than the approval's timeout. Default:
    /// never.
    auto_approve_after: Option<String>,
}

/// The most labels `agent.labels` lists.
const MAX_AGENT_LABELS: usize = 16;

/// `agent: {labels: [...]}`: the labels, each checked as a label name.
fn decode_agent(diag: &mut Diagnostics<'_>, node: &Node) -> Option<Located<Vec<String>>> {
    let fields = diag.map(node, "`agent`")?;
    fields.deny_unknown(diag, &["labels"], "in `agent`");
    let labels = fields
        .get("labels")
        .and_then(|n| diag.string_list(n, "`agent.labels`", false))
        .unwrap_or_default();
    if labels.len() > MAX_AGENT_LABELS {
        diag.error(
            node.location,
            format!("`agent.labels` lists at most {MAX_AGENT_LABELS} labels"),
        );
        return None;
    }
    let mut out: Vec<String> = Vec::new();
    for label in &labels {
        if let Err(why) = check_agent_label(&label.value) {
            diag.error(
                label.location,
                format!("agent label `{}` {why}", label.value),
            );
            return None;
        }
        if !out.contains(&label.value) {
            out.push(label.value.clone());
        }
    }
    Some(Located::new(out, node.location))
}

/// A build agent's label: 1 to 63 of A-Z a-z 0-9 `.` `_` `-` (the same rule
/// `gantry agent --labels` applies).
pub fn check_agent_label(label: &str) -> Result<(), &'static str> {
    if label.is_empty() || label.len() > 63 {
        return Err("must be 1 to 63 characters");
    }
    if !label
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    {
        return Err("may hold only A-Z a-z 0-9 . _ -");
    }
    Ok(())
}

fn decode_policy(diag: &mut Diagnostics<'_>, node: &Node) -> Option<ApprovalPolicy> {
    let fields = diag.map(node, "`policy`")?;
    fields.deny_unknown(diag, POLICY_KEYS, "in an approval's `policy`");
    let list = |diag: &mut Diagnostics<'_>, key: &str| {
        fields
            .get(key)
            .and_then(|n| diag.string_list(n, &format!("`policy.{key}`"), false))
            .unwrap_or_default()
    };
    let roles = list(diag, "roles");
    for role in &roles {
        if !POLICY_ROLES.contains(&role.as_str()) {
            diag.error(
                role.location,
                format!(
                    "unknown role `{}` (roles: {})",
                    role.value,
                    POLICY_ROLES.join(", ")
                ),
            );
        }
    }
    let users = list(diag, "users");
    let required = fields
        .get("required")
        .and_then(|n| diag.whole_number(n, "`policy.required`", 1, 20))
        .map_or(1, |r| r.value);
    if roles.is_empty()
        && !users.is_empty()
        && usize::try_from(required).is_ok_and(|r| r > users.len())
        && let Some(n) = fields.get("required")
    {
        diag.error(
            n.location,
            format!(
                "`policy.required` is {required} but only {} users may decide",
                users.len()
            ),
        );
    }
    let flag = |diag: &mut Diagnostics<'_>, key: &str| {
        fields
            .get(key)
            .and_then(|n| diag.boolean(n, &format!("`policy.{key}`")))
            .unwrap_or(false)
    };
    Some(ApprovalPolicy {
        roles: roles.into_iter().map(|r| r.value).collect(),
        users: users.into_iter().map(|u| u.value).collect(),
        required: u32::try_from(required).unwrap_or(1),
        allow_self_approval: flag(diag, "allow_self_approval"),
        require_comment: flag(diag, "require_comment"),
        auto_approve_after: fields
            .get("auto_approve_after")
            .and_then(|n| {
                diag.duration(
                    n,
                    "`policy.auto_approve_after`",
                    Duration::ZERO,
                    Duration::from_secs(60 * 24 * 3600),
                )
            })
            .map(|d| d.value),
    })
}
