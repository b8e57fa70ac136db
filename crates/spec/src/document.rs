//! A gantry file as a whole, and a project put together from several.
//!
//! A file (gantry.yaml, or one it lists under `include:`) may hold a
//! pipeline, environments and services (formats.md §1, §4). Reading one is
//! [`parse_document`]: it applies every rule that one file can be judged by
//! and reports every problem as `FILE:LINE:COL: message`. A file holds a
//! pipeline when it has any pipeline key (`name`, `stages`,
//! `execution_mode`, `variables`, `triggers`, `notifications`) or no
//! environments, services or includes at all; then `name` and `stages` are required. `version: 1` is required
//! in every file.
//!
//! The rules that need every file are [`assemble`]'s: at most one pipeline,
//! environment and service names unique across files, every name a `deploy`
//! action, a load-balancer rule or an override uses defined somewhere, no
//! two load balancers on one address, and every service valid as each
//! environment overrides it. This crate does no IO, so the caller reads the
//! files `includes` lists (relative to the including file's directory) and
//! hands all of them to `assemble`.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use schemars::JsonSchema;

use crate::environment::decode::{RawEnvironment, decode_environments};
use crate::environment::{Environment, EnvironmentName};
use crate::location::{Located, Location, SpecError};
use crate::names::ByLabel;
use crate::pipeline::raw::{PIPELINE_KEYS, RawPipeline};
use crate::pipeline::{ActionKind, Pipeline};
use crate::service::decode::{RawService, decode_services};
use crate::service::{Part, Service, ServiceName};
use crate::yaml::{self, Diagnostics, Node};

/// Every top-level key, in the order messages list them.
pub(crate) const TOP_KEYS: &[&str] = &[
    "version",
    "name",
    "execution_mode",
    "variables",
    "stages",
    "triggers",
    "notifications",
    "environments",
    "services",
    "include",
];
/// The top-level keys that are not the pipeline's.
const PROJECT_KEYS: &[&str] = &["environments", "services", "include"];

/// One validated file.
#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    pub pipeline: Option<Pipeline>,
    pub environments: BTreeMap<EnvironmentName, Environment>,
    pub services: BTreeMap<ServiceName, Service>,
    /// The files to read as well, as written (relative to this file's
    /// directory), with where each is written.
    pub includes: Vec<Located<String>>,
}

/// The files of a project, put together and checked against each other.
#[derive(Debug, Clone, PartialEq)]
pub struct Project {
    pub pipeline: Option<Pipeline>,
    pub environments: BTreeMap<EnvironmentName, Environment>,
    pub services: BTreeMap<ServiceName, Service>,
}

impl Project {
    /// `service` as it runs in `environment`: with the environment's
    /// override applied and `${environment}` in its secrets' parameter names
    /// replaced. `None` when either is not in the project.
    pub fn service_in(
        &self,
        environment: &EnvironmentName,
        service: &ServiceName,
    ) -> Option<Service> {
        let env = self.environments.get(environment)?;
        let service = self.services.get(service)?;
        let mut out = match env.services.get(&service.name) {
            Some(changes) => service.with_override(changes),
            None => service.clone(),
        };
        out.secrets = out.secret_parameters(environment);
        Some(out)
    }
}

/// The schema of the whole file: the pipeline's keys beside the project's.
#[derive(JsonSchema)]
#[schemars(
    title = "gantry.yaml",
    description = "A gantry file: a pipeline (stages of actions that run in order), environments and services, or several of those.",
    deny_unknown_fields
)]
#[allow(dead_code)] // Only its schema is used.
pub(crate) struct RawFile {
    /// The file format version; always 1.
    #[schemars(range(min = 1, max = 1))]
    version: u32,
    #[schemars(flatten)]
    pipeline: RawPipeline,
    /// Where services run, by name.
    environments: Option<ByLabel<RawEnvironment>>,
    /// The services, by name.
    services: Option<ByLabel<RawService>>,
    /// More files of the project (environments, services), relative to this one.
    include: Option<Vec<String>>,
}

/// Parses and validates one file. `file` is only used in the errors, which
/// come all at once, in file order.
pub fn parse_document(file: &str, text: &str) -> Result<Document, Vec<SpecError>> {
    parse(file, text, false)
}

/// [`parse_document`], where `require_pipeline` makes a file without
/// pipeline keys an error instead of a file of environments and services.
pub(crate) fn parse(
    file: &str,
    text: &str,
    require_pipeline: bool,
) -> Result<Document, Vec<SpecError>> {
    let root = yaml::parse(file, text).map_err(|e| vec![e])?;
    let mut diag = Diagnostics::new(file);
    let document = decode(&mut diag, &root, require_pipeline);
    let (errors, _warnings) = diag.into_sorted();
    match document {
        Some(document) if errors.is_empty() => Ok(document),
        _ => Err(errors),
    }
}

fn decode(diag: &mut Diagnostics<'_>, root: &Node, require_pipeline: bool) -> Option<Document> {
    let top = diag.map(root, "a pipeline file")?;
    top.deny_unknown(diag, TOP_KEYS, "in a pipeline file");
    if let Some(version) = top
        .required(diag, "version", "(write `version: 1`)")
        .and_then(|n| diag.string(n, "`version`"))
        && version.value.trim() != "1"
    {
        diag.error(
            version.location,
            format!(
                "unsupported version `{}`: the only version is 1",
                version.value
            ),
        );
    }
    let has = |keys: &[&str]| keys.iter().any(|key| top.get(key).is_some());
    let holds_pipeline = require_pipeline || has(PIPELINE_KEYS) || !has(PROJECT_KEYS);
    let pipeline = if holds_pipeline {
        let raw = crate::pipeline::raw::decode(diag, &top);
        crate::pipeline::validate::validate(diag, &raw)
    } else {
        None
    };
    let environments = top
        .get("environments")
        .map(|n| decode_environments(diag, n))
        .unwrap_or_default();
    let services = top
        .get("services")
        .map(|n| decode_services(diag, n))
        .unwrap_or_default();
    let includes = top
        .get("include")
        .map(|n| includes(diag, n))
        .unwrap_or_default();
    Some(Document {
        pipeline,
        environments,
        services,
        includes,
    })
}

fn includes(diag: &mut Diagnostics<'_>, node: &Node) -> Vec<Located<String>> {
    let items = diag
        .string_list(node, "`include`", false)
        .unwrap_or_default();
    let mut seen: BTreeMap<&str, Location> = BTreeMap::new();
    for item in &items {
        if item.value.is_empty() || item.value.starts_with('/') {
            diag.error(
                item.location,
                format!(
                    "`include` lists paths relative to this file's directory, found `{}`",
                    item.value
                ),
            );
        } else if item.value.split(['/', '\\']).any(|part| part == "..") {
            diag.error(
                item.location,
                format!(
                    "`include` stays inside this file's directory tree, found `{}` (no `..`)",
                    item.value
                ),
            );
        } else if let Some(first) = seen.get(item.as_str()) {
            diag.error(
                item.location,
                format!(
                    "`{}` is already included at {}:{}",
                    item.value, first.line, first.col
                ),
            );
        } else {
            seen.insert(item.as_str(), item.location);
        }
    }
    items
}

/// Puts the files of a project together: `documents` are each file's name
/// (for the errors) and its parsed content, the including file first. Errors
/// come all at once, by file and then by place.
pub fn assemble(documents: Vec<(String, Document)>) -> Result<Project, Vec<SpecError>> {
    let mut errors: Vec<(usize, SpecError)> = Vec::new();
    let files: Vec<String> = documents.iter().map(|(file, _)| file.clone()).collect();
    let place = |index: usize, location: Location| {
        format!("{}:{}:{}", files[index], location.line, location.col)
    };
    let mut error = |index: usize, location: Location, message: String| {
        errors.push((
            index,
            SpecError {
                file: files[index].clone(),
                location,
                message,
            },
        ));
    };

    let mut pipeline: Option<(usize, Pipeline)> = None;
    let mut environments: BTreeMap<EnvironmentName, (usize, Environment)> = BTreeMap::new();
    let mut services: BTreeMap<ServiceName, (usize, Service)> = BTreeMap::new();
    for (index, (_, document)) in documents.into_iter().enumerate() {
        if let Some(p) = document.pipeline {
            match &pipeline {
                Some((first, existing)) => error(
                    index,
                    p.location,
                    format!(
                        "a project has one pipeline, and pipeline `{}` is already defined at {}",
                        existing.name,
                        place(*first, existing.location)
                    ),
                ),
                None => pipeline = Some((index, p)),
            }
        }
        for (name, environment) in document.environments {
            match environments.get(&name) {
                Some((first, existing)) => error(
                    index,
                    environment.location,
                    format!(
                        "environment `{name}` is already defined at {}",
                        place(*first, existing.location)
                    ),
                ),
                None => {
                    environments.insert(name, (index, environment));
                }
            }
        }
        for (name, service) in document.services {
            match services.get(&name) {
                Some((first, existing)) => error(
                    index,
                    service.location,
                    format!(
                        "service `{name}` is already defined at {}",
                        place(*first, existing.location)
                    ),
                ),
                None => {
                    services.insert(name, (index, service));
                }
            }
        }
    }

    let defined = |names: Vec<&str>| {
        if names.is_empty() {
            "none is defined".to_owned()
        } else {
            format!("defined: {}", names.join(", "))
        }
    };
    let environment_names = defined(environments.keys().map(|n| n.as_str()).collect());
    let service_names = defined(services.keys().map(|n| n.as_str()).collect());

    if let Some((index, pipeline)) = &pipeline {
        for stage in &pipeline.stages {
            for action in &stage.actions {
                let ActionKind::Deploy {
                    environment,
                    service,
                    ..
                } = &action.kind
                else {
                    continue;
                };
                let label = format!("{}/{}", stage.name, action.name);
                if !environments.contains_key(environment) {
                    error(
                        *index,
                        action.location,
                        format!(
                            "`deploy` action `{label}` deploys to environment `{environment}`, which no file defines ({environment_names})"
                        ),
                    );
                }
                match services.get(service) {
                    None => error(
                        *index,
                        action.location,
                        format!(
                            "`deploy` action `{label}` deploys service `{service}`, which no file defines ({service_names})"
                        ),
                    ),
                    Some((_, svc)) => {
                        if let Some(message) = container_mismatch(pipeline, action, svc) {
                            error(
                                *index,
                                action.location,
                                format!("`deploy` action `{label}`: {message}"),
                            );
                        }
                    }
                }
            }
        }
    }

    let mut listeners: Vec<(SocketAddr, &EnvironmentName, usize, Location)> = Vec::new();
    // In file order, so that a clash is reported at the later definition.
    let mut in_file_order: Vec<(&EnvironmentName, &(usize, Environment))> =
        environments.iter().collect();
    in_file_order.sort_by_key(|(_, (index, environment))| (*index, environment.location));
    for (name, (index, environment)) in in_file_order {
        if let Some(lb) = &environment.load_balancer {
            let forwards = lb.rules.iter().flat_map(|rule| {
                rule.action
                    .services()
                    .into_iter()
                    .map(|service| (rule.priority, service, rule.location))
            });
            let defaults = lb.listeners.iter().flat_map(|listener| {
                listener
                    .default_action
                    .iter()
                    .flat_map(|action| action.services())
                    .map(|service| (0, service, listener.location))
            });
            for (priority, service, location) in forwards.chain(defaults) {
                if !services.contains_key(service) {
                    let what = if priority == 0 {
                        "the default action".to_owned()
                    } else {
                        format!("the rule with priority {priority}")
                    };
                    error(
                        *index,
                        location,
                        format!(
                            "{what} sends requests to service `{service}`, which no file defines ({service_names})"
                        ),
                    );
                }
            }
            for listener in &lb.listeners {
                match listeners
                    .iter()
                    .find(|(other, ..)| same_socket(*other, listener.listen))
                {
                    Some((_, other, first, location)) => error(
                        *index,
                        listener.location,
                        format!(
                            "environment `{name}` listens on {}, as environment `{other}` does (at {})",
                            listener.listen,
                            place(*first, *location)
                        ),
                    ),
                    None => listeners.push((listener.listen, name, *index, listener.location)),
                }
            }
        }
        for (service_name, (_, service)) in &services {
            let (in_service, location) = match environment.services.get(service_name) {
                Some(changes) => (service.with_override(changes), changes.location),
                // Only the environment's name can break a service as written.
                None => (service.clone(), environment.location),
            };
            for (part, message) in in_service.problems(Some(name)) {
                // A service as written has none of the other problems.
                if environment.services.contains_key(service_name) || part == Part::Secrets {
                    error(
                        *index,
                        location,
                        format!("in environment `{name}`, service `{service_name}`: {message}"),
                    );
                }
            }
        }
        for (service_name, changes) in &environment.services {
            if !services.contains_key(service_name) {
                error(
                    *index,
                    changes.location,
                    format!(
                        "environment `{name}` overrides service `{service_name}`, which no file defines ({service_names})"
                    ),
                );
            }
        }
    }

    if !errors.is_empty() {
        errors.sort_by_key(|(index, e)| (*index, e.location));
        return Err(errors.into_iter().map(|(_, e)| e).collect());
    }
    Ok(Project {
        pipeline: pipeline.map(|(_, p)| p),
        environments: environments
            .into_iter()
            .map(|(name, (_, e))| (name, e))
            .collect(),
        services: services
            .into_iter()
            .map(|(name, (_, s))| (name, s))
            .collect(),
    })
}

/// Whether `run` and `apply` put a project's files together, checking its
/// deploy actions against its environments and services: when it includes
/// files, or defines environments or services. A lone pipeline deploys to
/// environments applied before, which only the server knows.
pub fn is_assembled(document: &Document) -> bool {
    !document.includes.is_empty()
        || !document.environments.is_empty()
        || !document.services.is_empty()
}

/// Why a deploy action would find no image for its service's container,
/// when that is known before it runs: its input's imagedefinitions.json
/// comes from an `image` action of the pipeline (perhaps through
/// `promote` actions), which names one container, and not the service's.
fn container_mismatch(
    pipeline: &Pipeline,
    deploy: &crate::pipeline::Action,
    service: &Service,
) -> Option<String> {
    let ActionKind::Deploy { file, .. } = &deploy.kind else {
        return None;
    };
    if file != DEFINITIONS_FILE {
        return None;
    }
    let producer = |artifact: &crate::names::ArtifactName| {
        pipeline.stages.iter().find_map(|stage| {
            stage
                .actions
                .iter()
                .find(|a| a.outputs.contains(artifact))
                .map(|a| (stage, a))
        })
    };
    let first = deploy.inputs.first()?;
    let mut input = first;
    // Promote actions pass the container names through; a cycle is
    // impossible (inputs come from earlier actions), the bound is a guard.
    for _ in 0..64 {
        let (stage, action) = producer(input)?;
        match &action.kind {
            ActionKind::Promote { file, .. } if file == DEFINITIONS_FILE => {
                input = action.inputs.first()?;
            }
            ActionKind::Image { container, .. } => {
                if container.contains("#{") || *container == service.container {
                    return None;
                }
                return Some(format!(
                    "service `{}` runs container `{}`, but its input `{first}` comes from `image` \
                     action `{}/{}`, whose imagedefinitions.json names container `{container}`: \
                     set `container: {}` on the image action (or on the service)",
                    service.name, service.container, stage.name, action.name, service.container
                ));
            }
            _ => return None,
        }
    }
    None
}

/// The file a deploy action reads by default, and an image action writes.
const DEFINITIONS_FILE: &str = "imagedefinitions.json";

/// Whether two listen addresses would take the same socket: the same port
/// (port 0 asks for a free one, so it never clashes) on the same address, or
/// on any address when either is unspecified (`0.0.0.0`, `::`).
fn same_socket(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() != 0
        && a.port() == b.port()
        && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
}
