//! Phase two of reading gantry.yaml: the raw pipeline judged against the
//! rules of formats.md §1 and CodePipeline's structure rules, every problem
//! recorded, and the validated [`Pipeline`] built only when there are none.
//!
//! "Before" is the order actions run in: action A runs before action B when
//! A's stage comes first, or when both share a stage and A's `run_order` is
//! lower. Inputs and `#{namespace.NAME}` references may only name what runs
//! before the action using them.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use super::image_ref::{
    check_reference, check_registry, check_repository, check_tag, with_stand_ins,
};
use super::raw::{RawAction, RawActionKind, RawBuild, RawImage, RawPipeline};
use super::{
    Action, ActionKind, ActionName, AgentSelector, ArtifactName, DEFAULT_IMAGE_TAG, NameRule,
    Namespace, Pipeline, PipelineName, Stage, StageName,
};
use crate::duration::{format_duration, parse_duration};
use crate::location::Location;
use crate::names::{EnvironmentName, ServiceName};
use crate::template;
use crate::yaml::{Diagnostics, Located};

/// Namespaces that belong to gantry, not to an action.
const RESERVED_NAMESPACES: &[&str] = &["variables", "gantry", "codepipeline"];

/// The names the `gantry` and `codepipeline` namespaces resolve.
pub(crate) const EXECUTION_VARIABLES: &[&str] = &[
    "ExecutionId",
    "PipelineExecutionId",
    "PipelineName",
    "Registry",
];
const APPROVAL_MIN: Duration = Duration::from_secs(5 * 60);
const APPROVAL_MAX: Duration = Duration::from_secs(60 * 86_400);
/// An approval's timeout when it names none (CodePipeline's 7 days).
const APPROVAL_DEFAULT: Duration = Duration::from_secs(7 * 86_400);

/// Where an action runs in the order of the pipeline: (stage index, run_order).
#[derive(Clone, Copy, PartialEq, Eq)]
struct Position {
    stage: usize,
    run_order: i128,
}

impl Position {
    fn runs_before(self, other: Position) -> bool {
        self.stage < other.stage || (self.stage == other.stage && self.run_order < other.run_order)
    }
}

/// What an action contributes to the checks of the others.
struct Producer {
    label: String,
    position: Position,
    /// For a `shell` action, the variables it exports; `None` when unknown
    /// (a build's exports are in its buildspec, which is not read here).
    exports: Option<Vec<String>>,
}

pub(crate) fn validate(diag: &mut Diagnostics<'_>, raw: &RawPipeline) -> Option<Pipeline> {
    let errors_before = diag.errors.len();

    let name = raw
        .name
        .as_ref()
        .and_then(|n| checked_name(diag, n, NameRule::PipelineName));
    let mut variables = BTreeMap::new();
    for (key, value) in &raw.variables {
        check_name(diag, key, NameRule::Variable);
        variables.insert(key.value.clone(), value.value.clone());
    }

    let stages = match &raw.stages {
        Some(stages) => {
            if stages.value.is_empty() {
                diag.error(stages.location, "a pipeline needs at least one stage");
            }
            stages.value.as_slice()
        }
        None => &[],
    };

    let producers = collect_producers(diag, raw);
    let checker = Checker {
        raw,
        variables: &variables,
        producers: &producers,
    };

    let mut stage_names: BTreeMap<&str, Location> = BTreeMap::new();
    let mut built_stages = Vec::with_capacity(stages.len());
    let first_stage_has_source = stages.first().is_some_and(|stage| {
        stage_actions(stage)
            .iter()
            .any(|a| matches!(a.kind, RawActionKind::Source { .. }))
    });
    for (index, stage) in stages.iter().enumerate() {
        let stage_name = stage.name.as_ref().and_then(|n| {
            if let Some(first) = stage_names.get(n.as_str()) {
                diag.error(
                    n.location,
                    format!(
                        "duplicate stage name `{}` (first at {})",
                        n.value,
                        at(*first)
                    ),
                );
            } else {
                stage_names.insert(n.as_str(), n.location);
            }
            checked_name(diag, n, NameRule::StageName).map(StageName)
        });
        let label = stage.name.as_ref().map_or("?", |n| n.as_str());
        let actions = stage_actions(stage);
        if stage.actions.is_some() && actions.is_empty() {
            let message = match &stage.name {
                Some(name) => format!("stage `{}` has no actions", name.value),
                None => "this stage has no actions".to_owned(),
            };
            diag.error(stage.location, message);
        }
        let mut action_names: BTreeMap<&str, Location> = BTreeMap::new();
        let mut built_actions = Vec::with_capacity(actions.len());
        for action in actions {
            if let Some(n) = &action.name {
                if let Some(first) = action_names.get(n.as_str()) {
                    diag.error(
                        n.location,
                        format!(
                            "duplicate action name `{}` in stage `{label}` (first at {})",
                            n.value,
                            at(*first)
                        ),
                    );
                } else {
                    action_names.insert(n.as_str(), n.location);
                }
            }
            let is_source = matches!(action.kind, RawActionKind::Source { .. });
            if is_source && index > 0 {
                diag.error(
                    action.type_location,
                    "`source` actions are only allowed in the first stage",
                );
            }
            if !is_source
                && index == 0
                && first_stage_has_source
                && let Some(type_name) = type_name(&action.kind)
            {
                diag.error(
                    action.type_location,
                    format!(
                        "the first stage holds source actions, so it may hold only source actions, not {} `{type_name}` action",
                        super::raw::article(type_name)
                    ),
                );
            }
            let position = position(index, action);
            let built = checker.action(diag, action, position);
            built_actions.push(built);
        }
        built_stages.push((stage_name, built_actions, stage.location));
    }

    if diag.errors.len() != errors_before {
        return None;
    }
    // No error was reported, so every part below is present; the `?`s only
    // guard against a decoder bug producing a silent gap.
    let mut stages = Vec::with_capacity(built_stages.len());
    for (name, actions, location) in built_stages {
        let actions = actions.into_iter().collect::<Option<Vec<Action>>>()?;
        stages.push(Stage {
            name: name?,
            actions,
            location,
        });
    }
    Some(Pipeline {
        location: raw.name.as_ref().map(|n| n.location)?,
        name: PipelineName(name?),
        execution_mode: raw
            .execution_mode
            .as_ref()
            .map(|m| m.value)
            .unwrap_or_default(),
        variables,
        stages,
        triggers: raw.triggers.clone(),
        notifications: raw.notifications.clone(),
    })
}

fn stage_actions(stage: &super::raw::RawStage) -> &[RawAction] {
    stage.actions.as_ref().map_or(&[], |a| a.as_slice())
}

fn type_name(kind: &RawActionKind) -> Option<&'static str> {
    Some(match kind {
        RawActionKind::Source { .. } => "source",
        RawActionKind::Build(_) => "build",
        RawActionKind::Test(_) => "test",
        RawActionKind::Shell { .. } => "shell",
        RawActionKind::Approval { .. } => "approval",
        RawActionKind::Deploy { .. } => "deploy",
        RawActionKind::Image(_) => "image",
        RawActionKind::Promote { .. } => "promote",
        RawActionKind::Unknown => return None,
    })
}

fn position(stage: usize, action: &RawAction) -> Position {
    Position {
        stage,
        run_order: action.run_order.as_ref().map_or(1, |r| r.value),
    }
}

/// `LINE:COL`, to point from one error at an earlier definition.
fn at(location: Location) -> String {
    format!("{}:{}", location.line, location.col)
}

fn check_name(diag: &mut Diagnostics<'_>, name: &Located<String>, rule: NameRule) -> bool {
    match rule.check(&name.value) {
        Ok(()) => true,
        Err(message) => {
            diag.error(name.location, message);
            false
        }
    }
}

fn checked_name(
    diag: &mut Diagnostics<'_>,
    name: &Located<String>,
    rule: NameRule,
) -> Option<String> {
    check_name(diag, name, rule).then(|| name.value.clone())
}

/// Every output artifact and namespace in the pipeline, with who declares it;
/// duplicates and collisions are reported here, once.
struct Producers {
    artifacts: BTreeMap<String, Producer>,
    namespaces: BTreeMap<String, Producer>,
}

fn collect_producers(diag: &mut Diagnostics<'_>, raw: &RawPipeline) -> Producers {
    let mut producers = Producers {
        artifacts: BTreeMap::new(),
        namespaces: BTreeMap::new(),
    };
    let stages = raw.stages.as_ref().map_or(&[][..], |s| s.value.as_slice());
    let mut namespaces: Vec<(&Located<String>, Producer)> = Vec::new();
    for (index, stage) in stages.iter().enumerate() {
        let stage_label = stage.name.as_ref().map_or("?", |n| n.as_str());
        for action in stage_actions(stage) {
            let label = format!(
                "{stage_label}/{}",
                action.name.as_ref().map_or("?", |n| n.as_str())
            );
            let position = position(index, action);
            for output in action.outputs.iter().flatten() {
                if let Some(first) = producers.artifacts.get(&output.value) {
                    diag.error(
                        output.location,
                        format!(
                            "output artifact `{}` is already an output of `{}`",
                            output.value, first.label
                        ),
                    );
                } else {
                    producers.artifacts.insert(
                        output.value.clone(),
                        Producer {
                            label: label.clone(),
                            position,
                            exports: None,
                        },
                    );
                }
            }
            if let Some(namespace) = &action.namespace {
                let exports = match &action.kind {
                    RawActionKind::Shell {
                        exported_variables, ..
                    } => Some(exported_variables.iter().map(|v| v.value.clone()).collect()),
                    _ => None,
                };
                namespaces.push((
                    namespace,
                    Producer {
                        label,
                        position,
                        exports,
                    },
                ));
            }
        }
    }
    // Namespaces are checked after every artifact is known, since a namespace
    // may collide with an artifact declared further down the file.
    for (namespace, producer) in namespaces {
        if RESERVED_NAMESPACES.contains(&namespace.as_str()) {
            diag.error(
                namespace.location,
                format!("namespace `{}` is reserved", namespace.value),
            );
        } else if let Some(first) = producers.namespaces.get(&namespace.value) {
            diag.error(
                namespace.location,
                format!(
                    "namespace `{}` is already the namespace of `{}`",
                    namespace.value, first.label
                ),
            );
        } else {
            if producers.artifacts.contains_key(&namespace.value) {
                diag.error(
                    namespace.location,
                    format!(
                        "namespace `{}` is also the name of an artifact; namespaces and artifact names must differ",
                        namespace.value
                    ),
                );
            }
            producers
                .namespaces
                .insert(namespace.value.clone(), producer);
        }
    }
    producers
}

/// Checks actions against the whole pipeline.
struct Checker<'a> {
    raw: &'a RawPipeline,
    variables: &'a BTreeMap<String, String>,
    producers: &'a Producers,
}

impl Checker<'_> {
    /// Checks one action and builds it when it is valid.
    fn action(
        &self,
        diag: &mut Diagnostics<'_>,
        action: &RawAction,
        position: Position,
    ) -> Option<Action> {
        let errors_before = diag.errors.len();
        let name = action
            .name
            .as_ref()
            .and_then(|n| checked_name(diag, n, NameRule::ActionName));

        let run_order = match &action.run_order {
            None => 1,
            Some(r) => match u32::try_from(r.value) {
                Ok(value @ 1..=999) => value,
                _ => {
                    diag.error(
                        r.location,
                        format!("`run_order` must be from 1 to 999, found {}", r.value),
                    );
                    1
                }
            },
        };
        let timeout = action
            .timeout
            .as_ref()
            .and_then(|t| match parse_duration(&t.value) {
                Ok(duration) => Some(Located::new(duration, t.location)),
                Err(message) => {
                    diag.error(t.location, message);
                    None
                }
            });

        // Source and approval actions take no inputs at all, which is
        // reported below; resolving them as well would say it twice.
        let takes_inputs = !matches!(
            action.kind,
            RawActionKind::Source { .. } | RawActionKind::Approval { .. }
        );
        let inputs = if takes_inputs {
            self.inputs(diag, action, position)
        } else {
            Vec::new()
        };
        let outputs = self.artifact_names(diag, action.outputs.as_deref().unwrap_or_default());
        let namespace = action
            .namespace
            .as_ref()
            .and_then(|n| checked_name(diag, n, NameRule::Namespace).map(Namespace));

        let env = match &action.kind {
            RawActionKind::Build(build) | RawActionKind::Test(build) => self.env(diag, &build.env),
            RawActionKind::Shell { env, .. } => self.env(diag, env),
            _ => BTreeMap::new(),
        };
        let name_location = action.name.as_ref().map(|n| n.location);
        self.references(diag, action, position);

        let input_count = action.inputs.as_ref().map(Vec::len);
        let output_count = action.outputs.as_ref().map(Vec::len);
        let kind = match &action.kind {
            RawActionKind::Source { repository, branch } => {
                if let Some(n) = output_count
                    && n != 1
                {
                    diag.error(
                        action.location,
                        format!("a `source` action needs exactly one output artifact, found {n}"),
                    );
                }
                if let Some(first) = action.inputs.as_ref().and_then(|i| i.first()) {
                    diag.error(first.location, "a `source` action takes no inputs");
                }
                Some(ActionKind::Source {
                    repository: repository
                        .as_ref()
                        .map_or_else(|| ".".to_owned(), |r| r.value.clone()),
                    branch: branch.as_ref().map(|b| b.value.clone()),
                })
            }
            RawActionKind::Build(build) => {
                self.needs_input(diag, action, input_count, "build");
                let (buildspec, image) = self.build(diag, build);
                Some(ActionKind::Build { buildspec, image })
            }
            RawActionKind::Test(build) => {
                self.needs_input(diag, action, input_count, "test");
                let (buildspec, image) = self.build(diag, build);
                Some(ActionKind::Test { buildspec, image })
            }
            RawActionKind::Shell {
                commands,
                artifacts,
                exported_variables,
                image,
                ..
            } => {
                // A shell action may take no input: it then runs in an empty
                // directory (a smoke test with curl needs no source).
                if commands.as_ref().is_some_and(Vec::is_empty) {
                    diag.error(
                        action.location,
                        "a `shell` action needs at least one command in `commands`",
                    );
                }
                match (output_count, artifacts) {
                    (Some(n @ 2..), _) => diag.error(
                        action.location,
                        format!("a `shell` action has at most one output artifact, found {n}"),
                    ),
                    (Some(1), None) => diag.error(
                        action.location,
                        "a `shell` action with an output needs `artifacts` to say which files it holds",
                    ),
                    (Some(0), Some(a)) => diag.error(
                        a.location,
                        "`artifacts` needs an output artifact to go to; name one in `outputs`",
                    ),
                    _ => {}
                }
                for variable in exported_variables {
                    check_env_name(diag, variable);
                }
                Some(ActionKind::Shell {
                    commands: commands.iter().flatten().map(|c| c.value.clone()).collect(),
                    artifacts: artifacts.as_ref().map(|a| a.value.clone()),
                    exported_variables: exported_variables
                        .iter()
                        .map(|v| v.value.clone())
                        .collect(),
                    image: image.as_ref().map(|i| i.value.clone()),
                })
            }
            RawActionKind::Approval {
                review_url,
                comments,
                policy,
            } => {
                if let Some(first) = action.inputs.as_ref().and_then(|i| i.first()) {
                    diag.error(first.location, "an `approval` action takes no inputs");
                }
                if let Some(first) = action.outputs.as_ref().and_then(|o| o.first()) {
                    diag.error(first.location, "an `approval` action has no outputs");
                }
                if let Some(t) = &timeout
                    && !(APPROVAL_MIN..=APPROVAL_MAX).contains(&t.value)
                {
                    diag.error(
                        t.location,
                        format!(
                            "an approval's timeout must be from 5m to 60d, found {}",
                            format_duration(t.value)
                        ),
                    );
                }
                if let Some(p) = policy
                    && let Some(after) = p.value.auto_approve_after
                {
                    let timeout = timeout.as_ref().map_or(APPROVAL_DEFAULT, |t| t.value);
                    if after >= timeout {
                        diag.error(
                            p.location,
                            format!(
                                "`policy.auto_approve_after` ({}) must be less than the \
                                 approval's timeout ({}), or it never approves",
                                format_duration(after),
                                format_duration(timeout)
                            ),
                        );
                    }
                }
                Some(ActionKind::Approval {
                    review_url: review_url.as_ref().map(|u| u.value.clone()),
                    comments: comments.as_ref().map(|c| c.value.clone()),
                    policy: policy.as_ref().map(|p| p.value.clone()),
                })
            }
            RawActionKind::Deploy {
                environment,
                service,
                file,
            } => {
                exactly_one(
                    diag,
                    action,
                    input_count,
                    "input",
                    "deploy",
                    "holding imagedefinitions.json",
                );
                if let Some(first) = action.outputs.as_ref().and_then(|o| o.first()) {
                    diag.error(first.location, "a `deploy` action has no outputs");
                }
                let environment = environment
                    .as_ref()
                    .and_then(|e| checked_name(diag, e, NameRule::EnvironmentName))
                    .map(EnvironmentName);
                let service = service
                    .as_ref()
                    .and_then(|s| checked_name(diag, s, NameRule::ServiceName))
                    .map(ServiceName);
                let file = relative_path(diag, file.as_ref(), "file", "the input artifact")
                    .unwrap_or_else(|| super::IMAGE_DEFINITIONS.to_owned());
                environment
                    .zip(service)
                    .map(|(environment, service)| ActionKind::Deploy {
                        environment,
                        service,
                        file,
                    })
            }
            RawActionKind::Image(image) => {
                self.needs_input(diag, action, input_count, "image");
                exactly_one(
                    diag,
                    action,
                    output_count,
                    "output",
                    "image",
                    "it receives imagedefinitions.json and imageDetail.json",
                );
                let container = match (&image.container, &name) {
                    (Some(container), _) => checked_name(diag, container, NameRule::Container),
                    (None, Some(name)) => match NameRule::Container.check(name) {
                        Ok(()) => Some(name.clone()),
                        Err(_) => {
                            diag.error(
                                name_location.unwrap_or(action.location),
                                format!(
                                    "the action name `{name}` is not a valid container name for imagedefinitions.json (A-Z a-z 0-9 _ -); set `container`"
                                ),
                            );
                            None
                        }
                    },
                    (None, None) => None,
                };
                self.image(diag, image, container)
            }
            RawActionKind::Promote {
                tag,
                repositories,
                registry,
                file,
            } => {
                exactly_one(
                    diag,
                    action,
                    input_count,
                    "input",
                    "promote",
                    "holding imagedefinitions.json",
                );
                exactly_one(
                    diag,
                    action,
                    output_count,
                    "output",
                    "promote",
                    "it receives the new imagedefinitions.json",
                );
                if let Some(tag) = tag {
                    check_shape(diag, tag, "tag", check_tag);
                }
                for (container, repository) in repositories {
                    check_name(diag, container, NameRule::Container);
                    check_shape(diag, repository, "repository", check_repository);
                }
                if let Some(registry) = registry {
                    check_shape(diag, registry, "registry", check_registry);
                }
                let file = relative_path(diag, file.as_ref(), "file", "the input artifact")
                    .unwrap_or_else(|| super::IMAGE_DEFINITIONS.to_owned());
                tag.as_ref().map(|tag| ActionKind::Promote {
                    tag: tag.value.clone(),
                    repositories: repositories
                        .iter()
                        .map(|(k, v)| (k.value.clone(), v.value.clone()))
                        .collect(),
                    registry: registry.as_ref().map(|r| r.value.clone()),
                    file,
                })
            }
            RawActionKind::Unknown => None,
        };

        if diag.errors.len() != errors_before {
            return None;
        }
        let agent = match &action.kind {
            RawActionKind::Build(build) | RawActionKind::Test(build) => build.agent.as_ref(),
            RawActionKind::Shell { agent, .. } => agent.as_ref(),
            _ => None,
        }
        .map(|labels| AgentSelector {
            labels: labels.value.clone(),
        });
        Some(Action {
            name: ActionName(name?),
            agent,
            run_order,
            inputs,
            outputs,
            namespace,
            env,
            timeout: timeout.map(|t| t.value),
            kind: kind?,
            location: action.location,
        })
    }

    fn needs_input(
        &self,
        diag: &mut Diagnostics<'_>,
        action: &RawAction,
        input_count: Option<usize>,
        type_name: &str,
    ) {
        if input_count == Some(0) {
            diag.error(
                action.location,
                format!(
                    "{} `{type_name}` action needs at least one input artifact in `inputs`",
                    super::raw::article(type_name)
                ),
            );
        }
    }

    fn build(&self, diag: &mut Diagnostics<'_>, build: &RawBuild) -> (String, Option<String>) {
        let buildspec = relative_path(
            diag,
            build.buildspec.as_ref(),
            "buildspec",
            "the first input artifact",
        )
        .unwrap_or_else(|| "buildspec.yml".to_owned());
        (buildspec, build.image.as_ref().map(|i| i.value.clone()))
    }

    /// The kind of an `image` action; `container` is `None` when it was refused.
    fn image(
        &self,
        diag: &mut Diagnostics<'_>,
        image: &RawImage,
        container: Option<String>,
    ) -> Option<ActionKind> {
        let context = relative_path(
            diag,
            image.context.as_ref(),
            "context",
            "the first input artifact",
        )
        .unwrap_or_else(|| ".".to_owned());
        if let Some(repository) = &image.repository {
            check_shape(diag, repository, "repository", check_repository);
        }
        if let Some(tag) = &image.tag {
            check_shape(diag, tag, "tag", check_tag);
        }
        if let Some(registry) = &image.registry {
            check_shape(diag, registry, "registry", check_registry);
        }
        if let Some(base) = &image.base {
            check_shape(diag, base, "base image", check_reference);
        }
        let image_env = self.env(diag, &image.image_env);
        for (key, _) in &image.labels {
            if key.value.is_empty() {
                diag.error(key.location, "a label's key cannot be empty");
            }
        }
        for (value, key) in [(&image.workdir, "workdir"), (&image.dest, "dest")] {
            if let Some(path) = value
                && let Some(text) = with_stand_ins(&path.value)
                && (!text.starts_with('/') || text.split('/').any(|part| part == ".."))
            {
                diag.error(
                    path.location,
                    format!(
                        "`{key}` must be an absolute path inside the image, found `{}`",
                        path.value
                    ),
                );
            }
        }
        if let Some(user) = &image.user
            && user.value.is_empty()
        {
            diag.error(user.location, "`user` cannot be empty");
        }
        let strings = |list: &Option<Vec<Located<String>>>| {
            list.as_ref()
                .map(|items| items.iter().map(|i| i.value.clone()).collect())
        };
        let text = |value: &Option<Located<String>>| value.as_ref().map(|v| v.value.clone());
        Some(ActionKind::Image {
            context,
            repository: image.repository.as_ref()?.value.clone(),
            tag: text(&image.tag).unwrap_or_else(|| DEFAULT_IMAGE_TAG.to_owned()),
            registry: text(&image.registry),
            base: text(&image.base),
            entrypoint: strings(&image.entrypoint),
            cmd: strings(&image.cmd),
            image_env,
            workdir: text(&image.workdir),
            port: image
                .port
                .as_ref()
                .and_then(|p| u16::try_from(p.value).ok()),
            labels: image
                .labels
                .iter()
                .map(|(k, v)| (k.value.clone(), v.value.clone()))
                .collect(),
            user: text(&image.user),
            dest: text(&image.dest).unwrap_or_else(|| "/app".to_owned()),
            container: container?,
        })
    }

    fn artifact_names(
        &self,
        diag: &mut Diagnostics<'_>,
        names: &[Located<String>],
    ) -> Vec<ArtifactName> {
        names
            .iter()
            .filter_map(|n| checked_name(diag, n, NameRule::ArtifactName).map(ArtifactName))
            .collect()
    }

    /// Checks that each input is an output of an action that runs before.
    fn inputs(
        &self,
        diag: &mut Diagnostics<'_>,
        action: &RawAction,
        position: Position,
    ) -> Vec<ArtifactName> {
        let inputs = action.inputs.as_deref().unwrap_or_default();
        let mut seen = BTreeSet::new();
        for input in inputs {
            if !seen.insert(input.as_str()) {
                diag.error(
                    input.location,
                    format!("input artifact `{}` is listed twice", input.value),
                );
                continue;
            }
            match self.producers.artifacts.get(&input.value) {
                Some(producer) if producer.position.runs_before(position) => {}
                Some(producer) => diag.error(
                    input.location,
                    format!(
                        "input artifact `{}` is an output of `{}`, which does not run before this action",
                        input.value, producer.label
                    ),
                ),
                // With an undecodable `outputs` somewhere, the artifact may well exist.
                None if self.raw.incomplete_outputs => {}
                None => diag.error(
                    input.location,
                    format!("input artifact `{}` is not an output of any action", input.value),
                ),
            }
        }
        self.artifact_names(diag, inputs)
    }

    fn env(
        &self,
        diag: &mut Diagnostics<'_>,
        env: &[(Located<String>, Located<String>)],
    ) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        for (key, value) in env {
            check_env_name(diag, key);
            out.insert(key.value.clone(), value.value.clone());
        }
        out
    }

    /// Checks every `#{...}` in the action's string fields.
    fn references(&self, diag: &mut Diagnostics<'_>, action: &RawAction, position: Position) {
        for text in template_fields(action) {
            let refs = match template::references(&text.value) {
                Ok(refs) => refs,
                Err(message) => {
                    diag.error(text.location, message);
                    continue;
                }
            };
            for r in refs {
                if let Some(message) = self.reference_problem(&r, position) {
                    diag.error(text.location, format!("`{r}` {message}"));
                }
            }
        }
    }

    /// Why a reference cannot be resolved for an action at `position`, if it cannot.
    fn reference_problem(&self, r: &template::VarRef, position: Position) -> Option<String> {
        match r.namespace.as_str() {
            "gantry" | "codepipeline" => {
                if EXECUTION_VARIABLES.contains(&r.name.as_str()) {
                    None
                } else {
                    Some(format!(
                        "names no execution variable; known: {}",
                        EXECUTION_VARIABLES.join(", ")
                    ))
                }
            }
            "variables" => {
                if self.raw.incomplete_variables || self.variables.contains_key(&r.name) {
                    return None;
                }
                let declared: Vec<&str> = self.variables.keys().map(String::as_str).collect();
                Some(if declared.is_empty() {
                    format!(
                        "names pipeline variable `{}`, but `variables` declares none",
                        r.name
                    )
                } else {
                    format!(
                        "names pipeline variable `{}`, which is not declared (declared: {})",
                        r.name,
                        declared.join(", ")
                    )
                })
            }
            namespace => match self.producers.namespaces.get(namespace) {
                None if self.raw.incomplete_namespaces => None,
                None => {
                    let earlier: Vec<&str> = self
                        .producers
                        .namespaces
                        .iter()
                        .filter(|(_, p)| p.position.runs_before(position))
                        .map(|(n, _)| n.as_str())
                        .chain(RESERVED_NAMESPACES.iter().copied())
                        .collect();
                    Some(format!(
                        "names an unknown namespace `{namespace}` (known here: {})",
                        earlier.join(", ")
                    ))
                }
                Some(producer) if !producer.position.runs_before(position) => Some(format!(
                    "names namespace `{namespace}` of `{}`, which does not run before this action",
                    producer.label
                )),
                Some(Producer {
                    exports: Some(exports),
                    label,
                    ..
                }) if !exports.contains(&r.name) => Some(format!(
                    "names `{}`, which `{label}` does not export (exported_variables: {})",
                    r.name,
                    if exports.is_empty() {
                        "none".to_owned()
                    } else {
                        exports.join(", ")
                    }
                )),
                Some(_) => None,
            },
        }
    }
}

/// The string fields of an action where `#{...}` is resolved before it starts.
fn template_fields(action: &RawAction) -> Vec<Located<String>> {
    let mut fields: Vec<Located<String>> = Vec::new();
    let env_values = |env: &[(Located<String>, Located<String>)]| {
        env.iter().map(|(_, v)| v.clone()).collect::<Vec<_>>()
    };
    match &action.kind {
        RawActionKind::Source { repository, branch } => {
            fields.extend(repository.iter().cloned());
            fields.extend(branch.iter().cloned());
        }
        RawActionKind::Build(build) | RawActionKind::Test(build) => {
            fields.extend(build.buildspec.iter().cloned());
            fields.extend(build.image.iter().cloned());
            fields.extend(env_values(&build.env));
        }
        RawActionKind::Shell {
            commands,
            artifacts,
            image,
            env,
            ..
        } => {
            fields.extend(commands.iter().flatten().cloned());
            fields.extend(image.iter().cloned());
            fields.extend(env_values(env));
            if let Some(a) = artifacts {
                // The spec keeps no per-field locations, so its strings are
                // reported at the `artifacts` mapping.
                let spec = &a.value;
                let texts = spec
                    .files
                    .iter()
                    .chain(&spec.exclude_paths)
                    .chain(spec.name.iter())
                    .chain(spec.base_directory.iter());
                fields.extend(texts.map(|t| Located::new(t.clone(), a.location)));
            }
        }
        RawActionKind::Approval {
            review_url,
            comments,
            ..
        } => {
            fields.extend(review_url.iter().cloned());
            fields.extend(comments.iter().cloned());
        }
        RawActionKind::Deploy { file, .. } => fields.extend(file.iter().cloned()),
        RawActionKind::Image(image) => {
            let single = [
                &image.context,
                &image.repository,
                &image.tag,
                &image.registry,
                &image.base,
                &image.workdir,
                &image.user,
                &image.dest,
            ];
            fields.extend(single.into_iter().flatten().cloned());
            fields.extend(image.entrypoint.iter().flatten().cloned());
            fields.extend(image.cmd.iter().flatten().cloned());
            fields.extend(env_values(&image.image_env));
            fields.extend(env_values(&image.labels));
        }
        RawActionKind::Promote {
            tag,
            repositories,
            registry,
            file,
        } => {
            fields.extend(tag.iter().cloned());
            fields.extend(env_values(repositories));
            fields.extend(registry.iter().cloned());
            fields.extend(file.iter().cloned());
        }
        RawActionKind::Unknown => {}
    }
    fields
}

/// A relative path inside an input artifact, or `None` when `path` is absent.
/// An absolute path or one with `..` is reported, and returned all the same
/// (the error keeps the action from being built).
fn relative_path(
    diag: &mut Diagnostics<'_>,
    path: Option<&Located<String>>,
    key: &str,
    inside: &str,
) -> Option<String> {
    let path = path?;
    let escapes = path.value.split('/').any(|part| part == "..");
    if path.value.is_empty() || path.value.starts_with('/') || escapes {
        diag.error(
            path.location,
            format!(
                "`{key}` must be a relative path inside {inside}, found `{}`",
                path.value
            ),
        );
    }
    Some(path.value.clone())
}

/// Reports a value whose shape `check` refuses once its `#{...}` references
/// are replaced by stand-ins.
fn check_shape(
    diag: &mut Diagnostics<'_>,
    value: &Located<String>,
    what: &str,
    check: fn(&str) -> Result<(), String>,
) {
    // A broken template is reported by the reference check.
    let Some(text) = with_stand_ins(&value.value) else {
        return;
    };
    if let Err(expected) = check(&text) {
        diag.error(
            value.location,
            format!("invalid {what} `{}`: {expected}", value.value),
        );
    }
}

/// Reports an action that does not have exactly one input (or output).
fn exactly_one(
    diag: &mut Diagnostics<'_>,
    action: &RawAction,
    count: Option<usize>,
    which: &str,
    type_name: &str,
    why: &str,
) {
    if let Some(n) = count
        && n != 1
    {
        diag.error(
            action.location,
            format!(
                "{} `{type_name}` action needs exactly one {which} artifact ({why}), found {n}",
                super::raw::article(type_name)
            ),
        );
    }
}

/// Environment variable names as a POSIX shell accepts them.
fn check_env_name(diag: &mut Diagnostics<'_>, name: &Located<String>) {
    if let Some(problem) = crate::names::variable_name_problem(&name.value) {
        diag.error(name.location, problem);
    }
}
