//! What `gantry validate` checks against the data dir's server, because
//! only the server knows it: the environments (and their services) that a
//! lone pipeline's deploy actions go to, which `gantry apply` put there
//! before, and the parameters a file references (`{{param:NAME}}` in an
//! action's `env`, a service's `secrets`). `run` would fail on each of them
//! when the action runs; `validate` says so before.
//!
//! Validation never starts a server and never makes a data dir: with no
//! server running, these checks are skipped with a note on standard error
//! (exit status unchanged), so `validate` stays usable offline and in CI.

use std::path::Path;

use gantry_api::EnvironmentStatus;
use gantry_spec::document::Document;
use gantry_spec::pipeline::{ActionKind, Pipeline};
use gantry_spec::{Location, Project, SpecError};

use crate::client::{self, Connection};
use crate::hints;

/// What the local checks left: a project put together (its deploy actions
/// already checked against its environments), or a lone file whose deploy
/// actions go to environments applied before.
pub(super) enum Checked {
    Project(Project),
    Lone(Document),
}

impl Checked {
    fn pipeline(&self) -> Option<&Pipeline> {
        match self {
            Checked::Project(p) => p.pipeline.as_ref(),
            Checked::Lone(d) => d.pipeline.as_ref(),
        }
    }
}

/// A deploy action whose environment the server must have.
struct Deploy {
    label: String,
    environment: String,
    service: String,
    location: Location,
}

/// A parameter reference: the selector as written, where, and by what.
struct Parameter {
    selector: String,
    what: String,
    location: Location,
}

/// Every problem the data dir's server reveals, as `FILE:LINE:COL` errors;
/// none when nothing needs the server or no server runs (then a note says
/// what was not checked).
pub(super) async fn check(
    file: &str,
    checked: &Checked,
    explicit_data_dir: Option<&Path>,
) -> Vec<SpecError> {
    let deploys = match checked {
        Checked::Lone(_) => deploys(checked.pipeline()),
        Checked::Project(_) => Vec::new(),
    };
    let mut parameters = parameters(checked);
    parameters.extend(buildspec_parameters(file, checked.pipeline()));
    if deploys.is_empty() && parameters.is_empty() {
        return Vec::new();
    }
    let what = match (deploys.is_empty(), parameters.is_empty()) {
        (false, false) => "the environments its deploy actions use and the parameters it reads",
        (false, true) => "the environments its deploy actions use",
        _ => "the parameters it reads",
    };
    let Some(data_dir) = reachable(explicit_data_dir) else {
        eprintln!(
            "note: no gantry server runs here, so {what} were not checked (they are when one \
             runs: `gantry server`, or any command that starts one)"
        );
        return Vec::new();
    };
    let conn = match Connection::open(&data_dir).await {
        Ok(conn) => conn,
        Err(error) => {
            eprintln!("note: {what} were not checked: {error:#}");
            return Vec::new();
        }
    };
    let mut errors = Vec::new();
    let error = |location: Location, message: String| SpecError {
        file: file.to_owned(),
        location,
        message,
    };
    if !deploys.is_empty() {
        match conn.client.get::<Vec<String>>("/api/v1/environments").await {
            Ok(applied) => {
                for d in &deploys {
                    if !applied.contains(&d.environment) {
                        errors.push(error(
                            d.location,
                            format!(
                                "`deploy` action `{}` deploys to environment `{}`, which is \
                                 neither in this file nor applied to {}{}",
                                d.label,
                                d.environment,
                                conn.server_name(),
                                hints::among(&d.environment, &applied, "environments applied")
                            ),
                        ));
                        continue;
                    }
                    let path = format!("/api/v1/environments/{}", d.environment);
                    if let Ok(status) = conn.client.get::<EnvironmentStatus>(&path).await {
                        let services: Vec<String> =
                            status.services.iter().map(|s| s.name.clone()).collect();
                        if !services.contains(&d.service) {
                            errors.push(error(
                                d.location,
                                format!(
                                    "`deploy` action `{}` deploys service `{}`, which \
                                     environment `{}` does not run{}",
                                    d.label,
                                    d.service,
                                    d.environment,
                                    hints::among(&d.service, &services, "its services")
                                ),
                            ));
                        }
                    }
                }
            }
            Err(e) => eprintln!("note: the environments were not checked: {e:#}"),
        }
    }
    for p in &parameters {
        let path = format!("/api/v1/params/get?name={}", query(&p.selector));
        match conn.client.get::<serde_json::Value>(&path).await {
            Ok(_) => {}
            Err(e) if hints::is_not_found(&e) => {
                let name = p.selector.split(':').next().unwrap_or(&p.selector);
                errors.push(error(
                    p.location,
                    format!(
                        "{} reads parameter `{}`, which the parameter store of {} does not \
                         have: store it with `gantry param put {name} --type SecureString` \
                         (the value from standard input), or `gantry param put {name} VALUE` \
                         for a value that is not secret",
                        p.what,
                        p.selector,
                        conn.server_name()
                    ),
                ));
            }
            Err(e) => eprintln!("note: parameter {} was not checked: {e:#}", p.selector),
        }
    }
    conn.close().await;
    errors
}

/// The data dir whose server runs (or the remote server's), if any; never
/// starts one.
fn reachable(explicit: Option<&Path>) -> Option<std::path::PathBuf> {
    let dir = crate::data_dir::existing(explicit).ok()?;
    if client::is_remote() || gantry_server::server_info::live_server(&dir).is_some() {
        Some(dir)
    } else {
        None
    }
}

fn deploys(pipeline: Option<&Pipeline>) -> Vec<Deploy> {
    let Some(pipeline) = pipeline else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for stage in &pipeline.stages {
        for action in &stage.actions {
            if let ActionKind::Deploy {
                environment,
                service,
                ..
            } = &action.kind
            {
                out.push(Deploy {
                    label: format!("{}/{}", stage.name, action.name),
                    environment: environment.to_string(),
                    service: service.to_string(),
                    location: action.location,
                });
            }
        }
    }
    out
}

fn parameters(checked: &Checked) -> Vec<Parameter> {
    let mut out = Vec::new();
    if let Some(pipeline) = checked.pipeline() {
        for stage in &pipeline.stages {
            for action in &stage.actions {
                for (var, value) in &action.env {
                    for selector in param_references(value) {
                        out.push(Parameter {
                            selector,
                            what: format!("action `{}/{}` (env {var})", stage.name, action.name),
                            location: action.location,
                        });
                    }
                }
            }
        }
    }
    match checked {
        Checked::Project(project) => {
            for environment in project.environments.keys() {
                for name in project.services.keys() {
                    let Some(service) = project.service_in(environment, name) else {
                        continue;
                    };
                    for (var, selector) in &service.secrets {
                        out.push(Parameter {
                            selector: selector.clone(),
                            what: format!(
                                "service `{name}` in environment `{environment}` (secret {var})"
                            ),
                            location: service.location,
                        });
                    }
                }
            }
        }
        Checked::Lone(_) => {}
    }
    out
}

/// The parameters that the buildspecs of build and test actions read
/// (`env.parameter-store`, `env.secrets-manager`), when the buildspec is on
/// this machine: the action's first input comes from a `source` action of a
/// local repository (`.` is the repository holding the file). Its working
/// tree is read, which is what the next commit will hold.
fn buildspec_parameters(file: &str, pipeline: Option<&Pipeline>) -> Vec<Parameter> {
    let Some(pipeline) = pipeline else {
        return Vec::new();
    };
    let base = Path::new(file)
        .parent()
        .map_or_else(|| Path::new(".").to_path_buf(), Path::to_path_buf);
    let mut out = Vec::new();
    for stage in &pipeline.stages {
        for action in &stage.actions {
            let (ActionKind::Build { buildspec, .. } | ActionKind::Test { buildspec, .. }) =
                &action.kind
            else {
                continue;
            };
            let Some(repository) = action.inputs.first().and_then(|input| {
                pipeline.stages.iter().find_map(|s| {
                    s.actions.iter().find_map(|a| match &a.kind {
                        ActionKind::Source { repository, .. } if a.outputs.contains(input) => {
                            Some(repository.clone())
                        }
                        _ => None,
                    })
                })
            }) else {
                continue;
            };
            let root = if repository == "." {
                base.ancestors()
                    .find(|d| d.join(".git").exists())
                    .map(Path::to_path_buf)
            } else if repository.contains("://") || repository.contains('@') {
                None
            } else {
                Some(base.join(&repository))
            };
            let Some(root) = root else { continue };
            let path = root.join(buildspec);
            let Ok(text) = std::fs::read_to_string(&path) else {
                continue;
            };
            // An invalid buildspec is the build's error, reported when it runs.
            let Ok((spec, _)) =
                gantry_spec::buildspec::parse_buildspec(&path.display().to_string(), &text)
            else {
                continue;
            };
            let refs = spec
                .parameter_store
                .iter()
                .map(|(var, name)| (var, name.clone(), "env.parameter-store"))
                .chain(spec.secrets_manager.iter().map(|(var, reference)| {
                    let name = reference.split(':').next().unwrap_or_default().to_string();
                    (var, name, "env.secrets-manager")
                }));
            for (var, selector, section) in refs {
                out.push(Parameter {
                    selector,
                    what: format!(
                        "action `{}/{}` ({} {section} {var})",
                        stage.name,
                        action.name,
                        path.display()
                    ),
                    location: action.location,
                });
            }
        }
    }
    out
}

/// The selectors of `{{param:SELECTOR}}` in a value. A `#{…}` inside one
/// is only known when the action runs: such references are skipped.
fn param_references(value: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = value;
    while let Some(start) = rest.find("{{param:") {
        let after = &rest[start + "{{param:".len()..];
        let Some(end) = after.find("}}") else { break };
        let selector = after[..end].trim();
        if !selector.is_empty() && !selector.contains("#{") {
            out.push(selector.to_string());
        }
        rest = &after[end + 2..];
    }
    out
}

/// `value` percent-encoded for a query string.
fn query(value: &str) -> String {
    let mut out = String::new();
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~/:".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::param_references;

    #[test]
    fn param_references_are_found_in_a_value() {
        assert_eq!(
            param_references("postgres://u:{{param:/db/pass}}@{{param:/db/host:2}}/x"),
            vec!["/db/pass".to_string(), "/db/host:2".to_string()]
        );
        // As the server reads them: `{{ param:` with a space is no reference.
        assert!(param_references("{{ param:/db/host }}").is_empty());
        assert!(param_references("{{param:/#{variables.ENV}/x}}").is_empty());
        assert!(param_references("no references").is_empty());
    }
}
