//! Everything that can go wrong with a build.

use std::path::PathBuf;
use std::time::Duration;

/// Why a build could not run (returned as `Err` by [`crate::run`]), or why
/// it failed (its text, masked, is [`crate::BuildOutcome::error`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    // Checked before anything runs: `run` returns these as `Err`.
    #[error("{}", unresolved(.missing))]
    UnresolvedParameters {
        /// Every variable without a value, in file order: parameter-store
        /// ones, then secrets-manager ones.
        missing: Vec<UnresolvedParameter>,
    },
    #[error("run-as user `{user}` does not exist")]
    UnknownRunAsUser { user: String },
    #[error("run-as user `{user}` needs gantry to run as root (it runs as uid {uid})")]
    RunAsNeedsRoot { user: String, uid: u32 },
    #[error("source directory {path}: {source}")]
    SourceDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("output directory {path}: {source}")]
    OutDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot prepare the build's scratch directory: {0}")]
    Scratch(#[source] std::io::Error),
    #[error("container mode needs a Docker Engine: {reason}")]
    DockerUnavailable { reason: String },
    #[error("cannot start a build container from image `{image}`: {reason}")]
    ContainerStart { image: String, reason: String },
    #[error("run-as user `{user}` cannot run in the build container: {reason}")]
    ContainerRunAs { user: String, reason: String },
    #[error("input `{name}` directory {path}: {source}")]
    InputDir {
        name: String,
        path: PathBuf,
        source: std::io::Error,
    },

    // Build failures: reported in the outcome, never returned as `Err`.
    #[error("{phase}: Error while executing command: {command}. Reason: exit status {exit}")]
    CommandFailed {
        phase: &'static str,
        command: String,
        exit: i32,
    },
    #[error(
        "{phase}: the shell exited while running command: {command} (exit status {exit}); \
         its state is lost"
    )]
    ShellExited {
        phase: &'static str,
        command: String,
        exit: i32,
    },
    #[error("{phase}: cannot start shell `{shell}`: {source}")]
    ShellStart {
        phase: &'static str,
        shell: String,
        source: std::io::Error,
    },
    #[error("{phase}: lost contact with the shell: {source}")]
    ShellIo {
        phase: &'static str,
        source: std::io::Error,
    },
    #[error("build timed out after {}", humanize(*.after))]
    TimedOut { after: Duration },
    #[error("build stopped")]
    Stopped,
    #[error("cannot read exported variables: {0}")]
    ExportedVariables(#[source] std::io::Error),
    #[error("artifact {artifact}: no matching artifact paths found for pattern `{pattern}`")]
    NoMatchingFiles { artifact: String, pattern: String },
    #[error("artifact {artifact}: every matching file is excluded by exclude-paths")]
    AllFilesExcluded { artifact: String },
    #[error("artifact {artifact}: invalid pattern `{pattern}`: {message}")]
    InvalidPattern {
        artifact: String,
        pattern: String,
        message: String,
    },
    #[error("artifact {artifact}: `{path}` is outside the source directory")]
    PathEscapes { artifact: String, path: String },
    #[error("artifact {artifact}: `{path}` is outside the source directory: {reason}")]
    OutsideSource {
        artifact: String,
        path: String,
        reason: String,
    },
    #[error("artifact {artifact}: `{pattern}` is not under base-directory `{base}`")]
    PatternOutsideBase {
        artifact: String,
        pattern: String,
        base: String,
    },
    #[error("artifact {artifact}: symbolic link `{path}` points outside the artifact")]
    SymlinkLeavesArtifact { artifact: String, path: String },
    #[error("artifact {artifact}: `{path}` is a broken symbolic link")]
    BrokenSymlink { artifact: String, path: String },
    #[error(
        "artifact {artifact}: two files end up as `{path}` (discard-paths, or base directories \
         holding the same path)"
    )]
    DuplicatePath { artifact: String, path: String },
    #[error("secondary artifact identifier `{identifier}` is not a plain name")]
    InvalidArtifactIdentifier { identifier: String },
    #[error("artifact {artifact}: cannot copy `{path}`: {source}")]
    ArtifactIo {
        artifact: String,
        path: String,
        source: std::io::Error,
    },
}

/// A buildspec variable whose value comes from the parameter store (or
/// Secrets Manager), which the caller did not supply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnresolvedParameter {
    pub variable: String,
    /// The reference as written.
    pub parameter: String,
    /// `env.parameter-store` or `env.secrets-manager`.
    pub section: &'static str,
}

fn unresolved(missing: &[UnresolvedParameter]) -> String {
    let list: Vec<String> = missing
        .iter()
        .map(|m| format!("{} ({} `{}`)", m.variable, m.section, m.parameter))
        .collect();
    let what = if missing.len() == 1 {
        "1 variable has".to_owned()
    } else {
        format!("{} variables have", missing.len())
    };
    format!("{what} no value: {}", list.join(", "))
}

fn humanize(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{:.3}s", d.as_secs_f64())
    }
}
