//! What the names in an action and in a request stand for: the value of a
//! `#{namespace.NAME}` reference in an execution (pipeline variables,
//! `gantry.*` values, and the output variables of the action that declared
//! the namespace), the artifact id of an input, the commit the execution's
//! source took, and the files a pipeline file includes.
//!
//! How references are substituted into an action's fields (and kept out of
//! shell text) is `crate::resolve`'s business; this module supplies their
//! values. Nothing here reads a path a request names: included files come as
//! text from the client.

use std::collections::BTreeMap;
use std::path::Path;

use gantry_engine::Execution;
use gantry_spec::pipeline::{Action, ActionKind};
use gantry_spec::template::{VarRef, resolve};

use crate::definition::Loaded;
use crate::error::ControlError;
use crate::resolve::resolve_action;

/// A copy of an action of the execution with every `#{...}` resolved, or
/// the first reference that has no value. `registry` is the embedded
/// registry's `host:port` (`#{gantry.Registry}`).
pub(super) fn resolved_action(
    spec: &Action,
    loaded: &Loaded,
    execution: &Execution,
    registry: Option<&str>,
) -> Result<Action, String> {
    resolve_action(spec, |r| lookup(r, loaded, execution, registry))
}

/// The value of a `#{namespace.NAME}` reference for an execution.
fn lookup(
    r: &VarRef,
    loaded: &Loaded,
    execution: &Execution,
    registry: Option<&str>,
) -> Option<String> {
    match r.namespace.as_str() {
        "variables" => loaded.definition.variables.get(&r.name).cloned(),
        "gantry" | "codepipeline" => match r.name.as_str() {
            "ExecutionId" | "PipelineExecutionId" => Some(execution.id.clone()),
            "PipelineName" => Some(execution.pipeline.clone()),
            "Registry" => registry.map(str::to_string),
            _ => None,
        },
        namespace => {
            for (s, stage) in loaded.pipeline.stages.iter().enumerate() {
                for (a, action) in stage.actions.iter().enumerate() {
                    if action
                        .namespace
                        .as_ref()
                        .is_some_and(|n| n.as_str() == namespace)
                    {
                        return execution
                            .stages
                            .get(s)?
                            .actions
                            .get(a)?
                            .output_variables
                            .get(&r.name)
                            .cloned();
                    }
                }
            }
            None
        }
    }
}

/// The artifact id of an output, from whichever action of the execution made it.
pub(super) fn find_artifact(execution: &Execution, name: &str) -> Option<String> {
    execution
        .stages
        .iter()
        .flat_map(|s| s.actions.iter())
        .find_map(|a| a.output_artifacts.get(name).cloned())
}

/// The commit the execution's first source action took.
pub(super) fn source_revision(loaded: &Loaded, execution: &Execution) -> Option<String> {
    for (s, stage) in loaded.pipeline.stages.iter().enumerate() {
        for (a, action) in stage.actions.iter().enumerate() {
            if matches!(action.kind, ActionKind::Source { .. }) {
                return execution
                    .stages
                    .get(s)?
                    .actions
                    .get(a)?
                    .output_variables
                    .get("CommitId")
                    .cloned();
            }
        }
    }
    None
}

/// Resolves a `#{...}` template against an execution (for the API).
pub fn resolve_in(text: &str, loaded: &Loaded, execution: &Execution) -> Result<String, String> {
    resolve(text, |r| lookup(r, loaded, execution, None)).map_err(|e| e.to_string())
}

/// A file and the files it includes, as `(name, text)` pairs for the
/// deployer, from the texts a client sent. An include the client did not
/// send is an error: the server never reads a path a request names.
pub fn project_files(
    file: &Path,
    text: &str,
    includes: &BTreeMap<String, String>,
) -> Result<Vec<(String, String)>, ControlError> {
    let name = file.display().to_string();
    let document =
        gantry_spec::parse_document(&name, text).map_err(ControlError::InvalidPipeline)?;
    let base = file.parent().unwrap_or(Path::new("."));
    let mut files = vec![(name.clone(), text.to_string())];
    for include in &document.includes {
        let Some(included) = includes.get(&include.value) else {
            return Err(ControlError::MissingInclude {
                file: name,
                include: include.value.clone(),
            });
        };
        files.push((
            base.join(&include.value).display().to_string(),
            included.clone(),
        ));
    }
    Ok(files)
}
