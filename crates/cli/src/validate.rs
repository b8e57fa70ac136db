//! `gantry validate` and `gantry schema`: the commands that read a file, or
//! describe one, without a server. `validate` checks a pipeline file, a file
//! of environments and services (and the files either includes), or a
//! buildspec (recognised by its `version: 0.1`/`0.2`, or by its name when
//! it is not YAML), runs nothing, prints every error as FILE:LINE:COL:
//! message (warnings as FILE:LINE:COL: warning: message) and fails when
//! there is an error. What only a server knows (the environments applied
//! before, the parameters a file references) is checked against the data
//! dir's server when one runs (`live`), and said to be unchecked otherwise.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result};
use gantry_spec::{Document, SpecError};

use crate::project::ProjectFiles;

mod live;

pub(crate) async fn validate(file: &Path, explicit_data_dir: Option<&Path>) -> Result<ExitCode> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let name = file.display().to_string();
    let looks_like_buildspec =
        gantry_spec::buildspec::is_buildspec(&text).unwrap_or_else(|| named_like_a_buildspec(file));
    if looks_like_buildspec {
        return Ok(validate_buildspec(&name, &text));
    }
    let document = match gantry_spec::parse_document(&name, &text) {
        Ok(document) => document,
        Err(errors) => return Ok(invalid(&errors)),
    };
    let summary = summary(&document);
    let project = if gantry_spec::document::is_assembled(&document) {
        // The project is checked as a whole (deploy actions against its
        // environments and services, included files with the including
        // one), as `run` and `apply` put it together.
        let files = ProjectFiles::with_text(file, text)?;
        let mut documents = vec![(name.clone(), document)];
        let mut errors = Vec::new();
        for (included, included_text) in &files.includes {
            match gantry_spec::parse_document(included, included_text) {
                Ok(d) => documents.push((included.clone(), d)),
                Err(e) => errors.extend(e),
            }
        }
        if !errors.is_empty() {
            return Ok(invalid(&errors));
        }
        match gantry_spec::assemble(documents) {
            Ok(project) => live::Checked::Project(project),
            Err(errors) => return Ok(invalid(&errors)),
        }
    } else {
        live::Checked::Lone(document)
    };
    // What only the server knows: the environments applied before (for a
    // lone pipeline's deploy actions) and the parameters referenced.
    let errors = live::check(&name, &project, explicit_data_dir).await;
    if !errors.is_empty() {
        return Ok(invalid(&errors));
    }
    println!("{name}: valid ({summary})");
    Ok(ExitCode::SUCCESS)
}

/// `buildspec.yml`, `buildspec_release.yaml`, ...: CodeBuild's default name
/// and the variants its documentation suggests.
fn named_like_a_buildspec(file: &Path) -> bool {
    let name = file
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default()
        .to_ascii_lowercase();
    name.starts_with("buildspec") && (name.ends_with(".yml") || name.ends_with(".yaml"))
}

fn validate_buildspec(name: &str, text: &str) -> ExitCode {
    match gantry_spec::buildspec::parse_buildspec(name, text) {
        Ok((buildspec, warnings)) => {
            for w in &warnings {
                let at = &w.location;
                println!("{}:{}:{}: warning: {}", w.file, at.line, at.col, w.message);
            }
            let phases: Vec<&str> = buildspec.phases.iter().map(|p| p.name.key()).collect();
            let artifacts =
                usize::from(buildspec.artifacts.is_some()) + buildspec.secondary_artifacts.len();
            let version = match buildspec.version {
                gantry_spec::buildspec::BuildspecVersion::V01 => "0.1",
                gantry_spec::buildspec::BuildspecVersion::V02 => "0.2",
            };
            println!(
                "{name}: valid buildspec {version} (phases: {}; {}, {}, {})",
                if phases.is_empty() {
                    "none".to_owned()
                } else {
                    phases.join(", ")
                },
                count(artifacts, "artifact"),
                count(buildspec.reports.len(), "report group"),
                count(warnings.len(), "warning"),
            );
            ExitCode::SUCCESS
        }
        Err(errors) => invalid(&errors),
    }
}

/// What a valid gantry file holds, in a few words.
fn summary(document: &Document) -> String {
    let mut parts = Vec::new();
    match &document.pipeline {
        Some(pipeline) => {
            let actions: usize = pipeline.stages.iter().map(|s| s.actions.len()).sum();
            parts.push(format!(
                "{}, {}",
                count(pipeline.stages.len(), "stage"),
                count(actions, "action")
            ));
        }
        None => parts.push("no pipeline".to_owned()),
    }
    if !document.environments.is_empty() {
        parts.push(count(document.environments.len(), "environment"));
    }
    if !document.services.is_empty() {
        parts.push(count(document.services.len(), "service"));
    }
    if !document.includes.is_empty() {
        parts.push(count(document.includes.len(), "included file"));
    }
    parts.join(", ")
}

/// `1 stage`, `2 stages`.
fn count(n: usize, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

fn invalid(errors: &[SpecError]) -> ExitCode {
    for error in errors {
        println!("{error}");
    }
    ExitCode::FAILURE
}

/// Prints the JSON Schema of gantry.yaml.
pub(crate) fn schema() -> Result<ExitCode> {
    println!(
        "{}",
        serde_json::to_string_pretty(&gantry_spec::pipeline::pipeline_schema())?
    );
    Ok(ExitCode::SUCCESS)
}
