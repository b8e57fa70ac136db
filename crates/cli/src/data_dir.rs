//! Which data dir a command uses, found the way git finds `.git`.
//!
//! `--data-dir` (or `GANTRY_DATA_DIR`) wins. Otherwise a command uses the
//! nearest `.gantry/` directory in the current directory or one of its
//! parents, so every command typed anywhere inside a project reaches the
//! same executions. Only commands that set a project up (`run`, `apply`,
//! `server`, `param put`, `user add`, `token create`) may create a data dir
//! when none is found: `run` and `apply` first look above the pipeline
//! file too (a project whose runs predate this search keeps its data dir
//! beside its file), then make `.gantry/` in the current directory, so
//! `gantry run -f p/gantry.yaml` followed by `gantry executions` in the same
//! directory finds the run. Every other command needs one to exist and says
//! where it looked when none does: reading never creates a data dir.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use crate::client;

/// The data dir's name inside a project.
pub(crate) const NAME: &str = ".gantry";

/// The nearest `.gantry/` directory in `start` or one of its parents.
pub(crate) fn nearest(start: &Path) -> Option<PathBuf> {
    start
        .ancestors()
        .map(|dir| dir.join(NAME))
        .find(|candidate| candidate.is_dir())
}

fn current_dir() -> Result<PathBuf> {
    std::env::current_dir().context("cannot read the current directory")
}

/// The data dir of a command that only works on one that exists: the
/// explicit one if it exists, else the nearest one. With `--server`, no
/// data dir is used, and none is needed.
pub(crate) fn existing(explicit: Option<&Path>) -> Result<PathBuf> {
    let cwd = current_dir()?;
    if let Some(dir) = explicit {
        if !dir.is_dir() && !client::is_remote() {
            bail!(
                "no gantry data dir at {}: nothing has run there yet (`gantry run` makes one)",
                cwd.join(dir).display()
            );
        }
        return Ok(dir.to_path_buf());
    }
    match nearest(&cwd) {
        Some(dir) => Ok(dir),
        None if client::is_remote() => Ok(cwd.join(NAME)),
        None => bail!(
            "no gantry data dir: there is no {NAME}/ in {} or its parents; run the pipeline \
             first (`gantry run`), cd into its project, or pass --data-dir",
            cwd.display()
        ),
    }
}

/// The data dir of a command that may set one up: the explicit one, the
/// nearest one, or `.gantry/` in the current directory (created when the
/// server starts).
pub(crate) fn for_setup(explicit: Option<&Path>) -> Result<PathBuf> {
    if let Some(dir) = explicit {
        return Ok(dir.to_path_buf());
    }
    let cwd = current_dir()?;
    Ok(nearest(&cwd).unwrap_or_else(|| cwd.join(NAME)))
}

/// The data dir of `run` and `apply`: the explicit one, the nearest one to
/// the current directory, the nearest one above the pipeline file, or
/// `.gantry/` in the current directory.
pub(crate) fn for_pipeline(explicit: Option<&Path>, pipeline_file: &Path) -> Result<PathBuf> {
    if let Some(dir) = explicit {
        return Ok(dir.to_path_buf());
    }
    let cwd = current_dir()?;
    if let Some(found) = nearest(&cwd) {
        return Ok(found);
    }
    let file = cwd.join(pipeline_file);
    if let Some(found) = file.parent().and_then(nearest) {
        return Ok(found);
    }
    Ok(cwd.join(NAME))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_nearest_data_dir_is_found_in_a_parent_and_a_file_named_so_is_not_one() {
        let tmp = tempfile::tempdir().unwrap();
        let project = tmp.path().join("project");
        let deep = project.join("a/b");
        std::fs::create_dir_all(&deep).unwrap();
        std::fs::create_dir_all(project.join(NAME)).unwrap();
        assert_eq!(nearest(&deep), Some(project.join(NAME)));
        assert_eq!(nearest(&project), Some(project.join(NAME)));
        // A `.gantry` that is a file is not a data dir: the search goes on.
        std::fs::write(deep.join(NAME), "").unwrap();
        assert_eq!(nearest(&deep), Some(project.join(NAME)));
    }
}
