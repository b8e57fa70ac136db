//! gantry's build runner: runs a validated [`Buildspec`] the way CodeBuild
//! runs a buildspec 0.2 (formats.md §2, reference/aws-seed-system.md §3).
//!
//! # Concepts
//!
//! - A **build** ([`run`]) takes a [`BuildRequest`]: the buildspec, the
//!   source directory it runs in, inputs, environment, secrets, a timeout
//!   and a cancellation token. It streams its log to a [`LogSink`] and ends
//!   with a [`BuildOutcome`]. `Err` means the build could not start (a
//!   parameter without a value, an unusable `run-as`, an unusable directory);
//!   every failure after that is an outcome with status `Failed`.
//! - A **shell session**: in 0.2 one shell process (`env.shell`, `sh` by
//!   default) runs every command of every phase, fed one command at a time
//!   on its stdin with the exit status coming back on a separate pipe that
//!   commands cannot see (see `shell.rs`). So `cd` and variables carry over
//!   between commands and phases. In 0.1 each command gets a fresh shell.
//! - **Phases** run in file order. A failing command skips the rest of its
//!   phase's `commands`, the phase's `finally` runs, the phase is `FAILED`.
//!   A failure in INSTALL or PRE_BUILD ends the build (unless `on-failure:
//!   CONTINUE`); a failure in BUILD still runs POST_BUILD (whatever its
//!   `on-failure`, as CodeBuild); `CODEBUILD_BUILD_SUCCEEDING` is exported
//!   as `1`, or `0` once a phase failed, before each phase.
//! - **Shell death**: if a command makes the 0.2 shell exit (`exit 3`, a
//!   signal), that command fails with the shell's status (even 0: the state
//!   later commands expect is gone), and whatever still runs (the phase's
//!   `finally`, POST_BUILD) gets a fresh shell in the source directory with
//!   the initial environment.
//! - **Log**: the shell's stdout and stderr and the runner's `[Container]`
//!   lines share one FIFO, read as complete lines; lines over 64 KiB are
//!   split. Runner lines follow CodeBuild: `[Container] 2026/11/29
//!   00:00:00.000000 Running command <cmd>`, `Entering phase BUILD`,
//!   `Command did not exit successfully <cmd> exit status 1`, `Phase
//!   complete: BUILD State: FAILED Duration: 0.012s`, `Phase context status
//!   code: COMMAND_EXECUTION_ERROR Message: Error while executing command:
//!   <cmd>. Reason: exit status 1`. Every line passes through a [`Masker`]
//!   before the sink, so a secret never reaches it, even when written in
//!   pieces. Memory stays bounded whatever the build prints.
//! - **Environment**, lowest precedence first: the host's, buildspec
//!   `env.variables`, [`BuildRequest::secrets`], [`BuildRequest::env`], then
//!   the built-ins `CODEBUILD_SRC_DIR`, `CODEBUILD_SRC_DIR_<NAME>`,
//!   `CODEBUILD_RESOLVED_SOURCE_VERSION` (if known), `CODEBUILD_BUILD_ID`,
//!   `CODEBUILD_BUILD_NUMBER`, `CODEBUILD_START_TIME` (epoch ms),
//!   `CODEBUILD_INITIATOR`, `CODEBUILD_BUILD_SUCCEEDING` and their
//!   `GANTRY_*` twins (`GANTRY_SRC_DIR`, `GANTRY_INPUT_<NAME>`, ...), which
//!   nothing overrides.
//! - **Secrets**: the caller resolves `env.parameter-store` and
//!   `env.secrets-manager` into [`BuildRequest::secrets`]; a variable left
//!   unresolved fails the build before anything runs. Their values are
//!   masked as `***` in the log, the error text, test failure messages and
//!   exported variables; values shorter than 3 bytes are not masked.
//! - **Exported variables** are read from the shell after the last phase,
//!   also when the build failed (not when it timed out or was stopped).
//!   Unset ones are absent; ones holding secrets are never exported.
//! - **Artifacts** are selected by glob (see `artifacts.rs`) and copied after
//!   the phases, also when BUILD failed, but not when INSTALL or PRE_BUILD
//!   aborted the build, nor after a timeout or stop. The primary artifact
//!   goes directly into `out_dir`, each secondary one into
//!   `out_dir/<identifier>/`. A pattern that matches nothing fails the build
//!   naming the pattern; nothing outside the source directory is ever read.
//! - **Reports**: JUnit XML files of each report group are summarised into a
//!   [`TestReport`]; they never change the build's status.
//! - **Timeout and stop** end the whole process tree: each shell leads its
//!   own process group, which gets SIGTERM, then SIGKILL after 2 s. Leftover
//!   background processes are killed the same way at the end of a build, and
//!   with SIGKILL if the build's future is dropped. The timeout covers the
//!   phases and the reading of exported variables; the reports and the
//!   artifact copy that follow are not cut short.
//! - **`run-as`**: when gantry runs as root, the shell runs with that user's
//!   uid and gid (and `HOME`, `USER`, `LOGNAME`); a phase whose user differs
//!   from the previous phase's gets a new shell (state does not carry over).
//!   When not root, `run-as` naming another user is an error before the build
//!   starts; naming the current user is accepted and changes nothing.
//!
//! `cache.paths` are not implemented yet: a build with them logs a note.

mod artifacts;
mod env;
mod error;
mod log;
mod mask;
mod outcome;
mod reports;
mod runner;
mod shell;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use gantry_spec::buildspec::{
    ArtifactsSpec, Buildspec, BuildspecVersion, OnFailure, Phase, PhaseName,
};
use tokio_util::sync::CancellationToken;

pub use crate::env::input_env_name;
pub use crate::error::BuildError;
pub use crate::mask::{MASK, Masker};
pub use crate::outcome::{
    ArtifactOutput, BuildOutcome, BuildStatus, PhaseOutcome, TestFailure, TestReport, outcome_json,
};

use crate::log::{Emitter, FrameWriter, LineAssembler};
use crate::runner::{Driven, PhaseRunner};
use crate::shell::RunAs;

/// Everything a build needs.
#[derive(Debug, Clone)]
pub struct BuildRequest {
    pub buildspec: Buildspec,
    /// The working directory, `CODEBUILD_SRC_DIR`.
    pub source_dir: PathBuf,
    /// Other inputs: artifact name → directory, exposed as
    /// `CODEBUILD_SRC_DIR_<NAME>` and `GANTRY_INPUT_<NAME>` (NAME per
    /// [`input_env_name`]). To expose the primary input under its name too,
    /// list it here as well.
    pub secondary_sources: Vec<(String, PathBuf)>,
    /// The action's variables; they override buildspec `env.variables`.
    pub env: Vec<(String, String)>,
    /// Variables whose values are secret (resolved parameter-store and
    /// secrets-manager entries): set like `env`, masked everywhere.
    pub secrets: Vec<(String, String)>,
    pub build_id: String,
    pub build_number: u64,
    /// `CODEBUILD_INITIATOR`, e.g. `gantry/<pipeline>`.
    pub initiator: String,
    /// The source commit, `CODEBUILD_RESOLVED_SOURCE_VERSION` (unset if unknown).
    pub resolved_source_version: Option<String>,
    pub timeout: Duration,
    /// Where artifacts are written (created if missing).
    pub out_dir: PathBuf,
    /// Cancelling it stops the build (status `Stopped`).
    pub cancel: CancellationToken,
}

impl BuildRequest {
    /// A request with CodeBuild's default timeout (60 minutes), build
    /// number 1, and no inputs, variables or secrets.
    pub fn new(buildspec: Buildspec, source_dir: PathBuf, out_dir: PathBuf) -> BuildRequest {
        BuildRequest {
            buildspec,
            source_dir,
            secondary_sources: Vec::new(),
            env: Vec::new(),
            secrets: Vec::new(),
            build_id: "local".to_owned(),
            build_number: 1,
            initiator: "gantry".to_owned(),
            resolved_source_version: None,
            timeout: Duration::from_secs(3600),
            out_dir,
            cancel: CancellationToken::new(),
        }
    }
}

/// Receives the build log: complete, already masked lines, without their
/// trailing newline, in order.
pub trait LogSink: Send + Sync {
    fn line(&self, line: &str);
}

impl<F: Fn(&str) + Send + Sync> LogSink for F {
    fn line(&self, line: &str) {
        self(line)
    }
}

/// A buildspec 0.2 with a single BUILD phase, as the pipeline's `shell`
/// action runs its inline `commands`.
pub fn shell_buildspec(
    commands: Vec<String>,
    artifacts: Option<ArtifactsSpec>,
    exported_variables: Vec<String>,
) -> Buildspec {
    Buildspec {
        version: BuildspecVersion::V02,
        shell: "sh".to_owned(),
        run_as: None,
        variables: Vec::new(),
        parameter_store: Vec::new(),
        secrets_manager: Vec::new(),
        exported_variables,
        phases: vec![Phase {
            name: PhaseName::Build,
            commands,
            finally: Vec::new(),
            on_failure: OnFailure::Abort,
            run_as: None,
        }],
        reports: Vec::new(),
        artifacts,
        secondary_artifacts: Vec::new(),
        cache_paths: Vec::new(),
    }
}

/// Runs a build to its end (see the crate docs for the semantics).
pub async fn run(req: BuildRequest, logs: &dyn LogSink) -> Result<BuildOutcome, BuildError> {
    check_parameters(&req)?;
    let users = resolve_users(&req.buildspec)?;
    let root = req
        .source_dir
        .canonicalize()
        .and_then(|p| {
            if p.is_dir() {
                Ok(p)
            } else {
                Err(std::io::Error::new(
                    std::io::ErrorKind::NotADirectory,
                    "not a directory",
                ))
            }
        })
        .map_err(|e| BuildError::SourceDir {
            path: req.source_dir.clone(),
            source: e,
        })?;
    let out_dir = std::fs::create_dir_all(&req.out_dir)
        .and_then(|()| req.out_dir.canonicalize())
        .map_err(|e| BuildError::OutDir {
            path: req.out_dir.clone(),
            source: e,
        })?;

    let masker = Masker::new(req.secrets.iter().map(|(_, v)| v));
    let scratch = tempfile::Builder::new()
        .prefix("gantry-build-")
        .tempdir()
        .map_err(BuildError::Scratch)?;
    if users.values().any(Option::is_some) {
        // Shells running as another user read their command files here.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(scratch.path(), std::fs::Permissions::from_mode(0o755))
            .map_err(BuildError::Scratch)?;
    }
    let token = random_token();
    let log_fifo = scratch.path().join("log");
    nix::unistd::mkfifo(&log_fifo, nix::sys::stat::Mode::from_bits_truncate(0o600))
        .map_err(|e| BuildError::Scratch(e.into()))?;
    let rx = tokio::net::unix::pipe::OpenOptions::new()
        .open_receiver(&log_fifo)
        .map_err(BuildError::Scratch)?;
    let tx = tokio::net::unix::pipe::OpenOptions::new()
        .open_sender(&log_fifo)
        .map_err(BuildError::Scratch)?;
    let mark = format!("\0{token}\0").into_bytes();

    let start_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis();
    let now = tokio::time::Instant::now();
    let deadline = now
        .checked_add(req.timeout)
        .unwrap_or_else(|| now + Duration::from_secs(100 * 365 * 86_400));

    let mut notes = Vec::new();
    for (name, value) in &req.secrets {
        if !value.is_empty() && value.len() < Masker::MIN_SECRET_LEN {
            notes.push(format!(
                "Secret variable {name} is shorter than {} characters and is not masked",
                Masker::MIN_SECRET_LEN
            ));
        }
    }
    if !req.buildspec.cache_paths.is_empty() {
        notes.push("cache.paths is not supported yet; nothing is cached".to_owned());
    }

    let emitter = Emitter {
        masker: &masker,
        sink: logs,
    };
    let finished = CancellationToken::new();
    let runner = PhaseRunner {
        req: &req,
        env: env::base_env(&req, start_ms),
        frames: FrameWriter::new(tx, mark.clone()),
        scratch: scratch.path(),
        log_fifo: log_fifo.clone(),
        token,
        deadline,
        users,
        notes,
        session: None,
        succeeding: true,
        prelude_pending: true,
        commands_run: 0,
    };
    let drive = async {
        let driven = runner.run_phases().await;
        // The phase runner (and with it our end of the FIFO) is gone:
        // the log reader may finish once the shells' ends close too.
        finished.cancel();
        driven
    };
    let pump = log::pump(
        rx,
        LineAssembler::new(mark, masker.clone()),
        &emitter,
        &finished,
    );
    let (driven, ()) = tokio::join!(drive, pump);

    Ok(finish(&req, driven, &root, &out_dir, &masker, &emitter).await)
}

/// Reports and artifacts, then the outcome.
async fn finish(
    req: &BuildRequest,
    driven: Driven,
    root: &Path,
    out_dir: &Path,
    masker: &Masker,
    emitter: &Emitter<'_>,
) -> BuildOutcome {
    let Driven {
        phases,
        interrupted,
        mut error,
        aborted_early,
        exported,
    } = driven;
    let mut reports = Vec::new();
    let mut artifacts = Vec::new();
    if interrupted.is_none() {
        if !req.buildspec.reports.is_empty() {
            let groups = req.buildspec.reports.clone();
            let (root, masker2) = (root.to_path_buf(), masker.clone());
            let done = tokio::task::spawn_blocking(move || {
                let mut notes = Vec::new();
                let reports: Vec<TestReport> = groups
                    .iter()
                    .map(|g| reports::summarize(g, &root, &masker2, &mut |n| notes.push(n)))
                    .collect();
                (reports, notes)
            })
            .await;
            if let Ok((summaries, notes)) = done {
                for note in notes {
                    emitter.container(&note);
                }
                for r in &summaries {
                    emitter.container(&format!(
                        "Report group {}: {} passed, {} failed, {} skipped",
                        r.group, r.passed, r.failed, r.skipped
                    ));
                }
                reports = summaries;
            }
        }
        let has_artifacts =
            req.buildspec.artifacts.is_some() || !req.buildspec.secondary_artifacts.is_empty();
        if has_artifacts && aborted_early {
            emitter.container(
                "Phase complete: UPLOAD_ARTIFACTS State: SKIPPED (an earlier phase aborted the build)",
            );
        } else if has_artifacts {
            emitter.container("Entering phase UPLOAD_ARTIFACTS");
            let (outputs, notes, failure) = upload(req, root, out_dir).await;
            for note in notes {
                emitter.container(&note);
            }
            artifacts = outputs;
            let state = if failure.is_some() {
                "FAILED"
            } else {
                "SUCCEEDED"
            };
            emitter.container(&format!("Phase complete: UPLOAD_ARTIFACTS State: {state}"));
            if let Some(e) = failure {
                emitter.container(&format!(
                    "Phase context status code: CLIENT_ERROR Message: {e}"
                ));
                error.get_or_insert(e);
            }
        }
    }
    let status = match (interrupted, &error) {
        (Some(i), _) => i.status(),
        (None, Some(_)) => BuildStatus::Failed,
        (None, None) => BuildStatus::Succeeded,
    };
    BuildOutcome {
        status,
        phases,
        exported_variables: exported
            .into_iter()
            .map(|(k, v)| (k, masker.mask(&v).into_owned()))
            .collect(),
        artifacts,
        reports,
        error: error.map(|e| masker.mask(&e.to_string()).into_owned()),
    }
}

/// Copies the primary and secondary artifacts; stops at the first failure.
async fn upload(
    req: &BuildRequest,
    root: &Path,
    out_dir: &Path,
) -> (Vec<ArtifactOutput>, Vec<String>, Option<BuildError>) {
    let mut jobs: Vec<(Option<String>, ArtifactsSpec)> = Vec::new();
    if let Some(primary) = &req.buildspec.artifacts {
        jobs.push((None, primary.clone()));
    }
    for (id, spec) in &req.buildspec.secondary_artifacts {
        jobs.push((Some(id.clone()), spec.clone()));
    }
    let (root, out_dir) = (root.to_path_buf(), out_dir.to_path_buf());
    let done = tokio::task::spawn_blocking(move || {
        let mut outputs = Vec::new();
        let mut notes = Vec::new();
        // The output directory may lie inside the source directory
        // (`buildspec run --out ./out`); never collect it into itself.
        let skip = out_dir.starts_with(&root).then_some(out_dir.as_path());
        for (id, spec) in jobs {
            let name = id.clone().unwrap_or_else(|| "primary".to_owned());
            let dir = match &id {
                None => out_dir.clone(),
                Some(id) if is_plain_name(id) => out_dir.join(id),
                Some(id) => {
                    let e = BuildError::InvalidArtifactIdentifier {
                        identifier: id.clone(),
                    };
                    return (outputs, notes, Some(e));
                }
            };
            for pattern in &spec.files {
                notes.push(format!("Expanding {pattern} ({name})"));
            }
            let copied = artifacts::select_artifact(&name, &root, &spec, skip)
                .and_then(|selected| artifacts::copy(&name, &selected, &dir));
            match copied {
                Ok(files) => {
                    notes.push(format!("Found {} file(s) for artifact {name}", files.len()));
                    outputs.push(ArtifactOutput {
                        identifier: id,
                        dir,
                        files,
                    });
                }
                Err(e) => return (outputs, notes, Some(e)),
            }
        }
        (outputs, notes, None)
    })
    .await;
    match done {
        Ok(result) => result,
        Err(join) => (
            Vec::new(),
            Vec::new(),
            Some(BuildError::ArtifactIo {
                artifact: "primary".to_owned(),
                path: String::new(),
                source: std::io::Error::other(join.to_string()),
            }),
        ),
    }
}

fn is_plain_name(id: &str) -> bool {
    !id.is_empty()
        && id != "."
        && id != ".."
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

/// Every parameter-store and secrets-manager variable must have a value.
fn check_parameters(req: &BuildRequest) -> Result<(), BuildError> {
    let bs = &req.buildspec;
    for (variable, parameter) in bs.parameter_store.iter().chain(&bs.secrets_manager) {
        if !req.secrets.iter().any(|(name, _)| name == variable) {
            return Err(BuildError::UnresolvedParameter {
                variable: variable.clone(),
                parameter: parameter.clone(),
            });
        }
    }
    Ok(())
}

/// Resolves every `run-as` user named by the buildspec.
fn resolve_users(bs: &Buildspec) -> Result<BTreeMap<String, Option<RunAs>>, BuildError> {
    let mut users = BTreeMap::new();
    let names = bs
        .run_as
        .iter()
        .chain(bs.phases.iter().filter_map(|p| p.run_as.as_ref()));
    for name in names {
        if users.contains_key(name) {
            continue;
        }
        let user = nix::unistd::User::from_name(name)
            .ok()
            .flatten()
            .ok_or_else(|| BuildError::UnknownRunAsUser { user: name.clone() })?;
        let euid = nix::unistd::geteuid();
        let run_as = if user.uid == euid {
            None
        } else if euid.is_root() {
            Some(RunAs {
                name: name.clone(),
                uid: user.uid.as_raw(),
                gid: user.gid.as_raw(),
                home: user.dir.to_string_lossy().into_owned(),
            })
        } else {
            return Err(BuildError::RunAsNeedsRoot {
                user: name.clone(),
                uid: euid.as_raw(),
            });
        };
        users.insert(name.clone(), run_as);
    }
    Ok(users)
}

/// 128 unpredictable bits, hex: the mark of runner lines and status records.
fn random_token() -> String {
    use std::hash::{BuildHasher, RandomState};
    let seed = (
        std::process::id(),
        SystemTime::now(),
        std::thread::current().id(),
    );
    let a = RandomState::new().hash_one(seed);
    let b = RandomState::new().hash_one((&seed, a));
    format!("{a:016x}{b:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_differ() {
        assert_ne!(random_token(), random_token());
        assert_eq!(random_token().len(), 32);
    }

    #[test]
    fn the_build_future_is_send() {
        fn assert_send<T: Send>(_: T) {}
        let req = BuildRequest::new(
            shell_buildspec(vec![], None, vec![]),
            ".".into(),
            "out".into(),
        );
        let sink = |_: &str| {};
        assert_send(run(req, &sink));
    }
}
