//! `gantry validate` and `gantry schema`: the commands that read a pipeline
//! file, or describe one, without a server. `validate` prints every error as
//! FILE:LINE:COL: message and fails when there is one.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result};

pub(crate) fn validate(file: &Path) -> Result<ExitCode> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    match gantry_spec::pipeline::parse_pipeline(&file.display().to_string(), &text) {
        Ok(pipeline) => {
            let actions: usize = pipeline.stages.iter().map(|s| s.actions.len()).sum();
            println!(
                "{}: valid ({} stages, {actions} actions)",
                file.display(),
                pipeline.stages.len()
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(errors) => {
            for error in &errors {
                println!("{error}");
            }
            Ok(ExitCode::FAILURE)
        }
    }
}

/// Prints the JSON Schema of gantry.yaml.
pub(crate) fn schema() -> Result<ExitCode> {
    println!(
        "{}",
        serde_json::to_string_pretty(&gantry_spec::pipeline::pipeline_schema())?
    );
    Ok(ExitCode::SUCCESS)
}
