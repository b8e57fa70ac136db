//! gantry's build runner: runs a validated [`Buildspec`] the way CodeBuild
//! runs a buildspec 0.2 (formats.md §2, reference/aws-seed-system.md §3).
//!
//! # Concepts
//!
//! - A **build** ([`run`]) takes a [`BuildRequest`]: the buildspec, the
//!   source directory it runs in, inputs, environment, secrets, a timeout
//!   and a cancellation token. It streams its log to a [`LogSink`] and ends
//!   with a [`BuildOutcome`]. `Err` means the build could not start (a
//!   parameter without a value, an unusable `run-as`, an unusable directory,
//!   in container mode no engine or no image); every failure after that is
//!   an outcome with status `Failed`. It runs on this host, or in a
//!   container (**container mode**, below).
//! - A **shell session**: in 0.2 one shell process (`env.shell`, `sh` by
//!   default) runs every command of every phase, fed one command at a time
//!   on its stdin with the exit status coming back on a separate pipe that
//!   commands cannot see (see `shell.rs`). So `cd` and variables carry over
//!   between commands and phases. In 0.1 each command gets a fresh shell.
//! - **Phases** run in CodeBuild's order. A failing command skips the rest
//!   of its phase's `commands`, the phase's `finally` runs, the phase is
//!   `FAILED`. Then its `on-failure` decides: not written, CodeBuild's
//!   transitions (a failure in INSTALL or PRE_BUILD ends the build, one in
//!   BUILD still runs POST_BUILD); `ABORT` written ends the build whichever
//!   the phase, with no artifacts; `CONTINUE` goes on to the next phase;
//!   `RETRY…` runs the phase again, in the same shell, while retries are
//!   left and its expression matches a line the failed attempt printed or
//!   its error message, then falls back to the transitions.
//!   `CODEBUILD_BUILD_SUCCEEDING` is exported as `1`, or `0` once a phase
//!   failed for good, before each phase.
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
//! - **Environment**, lowest precedence first: a few of the host's (host
//!   mode only: `PATH`, `HOME`, `USER`, `LOGNAME`, `LANG`, `LC_*`, `TZ`,
//!   `TERM`, `TMPDIR`, `SHELL`; nothing else of the server's environment,
//!   so never `GANTRY_MASTER_KEY` or `GANTRY_TOKEN`), buildspec
//!   `env.variables`, [`BuildRequest::secrets`], [`BuildRequest::env`], then
//!   the built-ins `CODEBUILD_SRC_DIR`, `CODEBUILD_SRC_DIR_<NAME>`,
//!   `CODEBUILD_RESOLVED_SOURCE_VERSION` (if known), `CODEBUILD_BUILD_ID`,
//!   `CODEBUILD_BUILD_NUMBER`, `CODEBUILD_START_TIME` (epoch ms),
//!   `CODEBUILD_INITIATOR`, `CODEBUILD_BUILD_SUCCEEDING` and their
//!   `GANTRY_*` twins (`GANTRY_SRC_DIR`, `GANTRY_INPUT_<NAME>`, ...), which
//!   nothing overrides.
//! - **Secrets**: the caller resolves `env.parameter-store` and
//!   `env.secrets-manager` into [`BuildRequest::secrets`]; variables left
//!   unresolved fail the build before anything runs, all of them named
//!   ([`unresolved_parameters`] lets a caller find them first). Their values are
//!   masked as `***` in the log, the error text, test failure messages and
//!   exported variables; values shorter than 3 bytes are not masked. Values
//!   registered with [`mask_everywhere`] (the master key) are masked in
//!   every build the same way.
//! - **Exported variables** are read from the shell after the last phase,
//!   also when the build failed (not when it timed out or was stopped).
//!   Unset ones are absent; ones holding secrets are never exported.
//! - **Artifacts** are selected by glob (see `artifacts.rs`) and copied after
//!   the phases, also when BUILD failed, but not when a phase aborted the
//!   build (INSTALL or PRE_BUILD failing, or `on-failure: ABORT`), nor
//!   after a timeout or stop. The primary artifact goes directly into
//!   `out_dir`, each secondary one into `out_dir/<identifier>/`. A pattern
//!   that matches nothing fails the build naming the pattern. `$NAME` and
//!   `${NAME}` in artifact and report paths take the build's final values
//!   (read from its shell after the last phase, like exported variables;
//!   never evaluated by a shell). An absolute path inside the source
//!   directory is the relative path it names; nothing outside the source
//!   directory is read unless [`BuildRequest::read_outside_source`] allows
//!   it (and then only on the host, without `run-as`).
//! - **Reports**: JUnit XML files of each report group are summarised into a
//!   [`TestReport`]; they never change the build's status.
//! - **Timeout and stop** end the whole process tree: each shell leads its
//!   own process group, which gets SIGTERM, then SIGKILL after 2 s (in
//!   container mode, the container gets `docker kill`). Leftover
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
//! - **Container mode** ([`BuildRequest::container`], a [`ContainerSpec`]):
//!   the same build, with its shells inside one container of an image on
//!   the local Docker Engine, driven by the docker CLI (see
//!   `container.rs` for the lifecycle and why the CLI). The source
//!   directory, the secondary inputs and the command files are mounted at
//!   the same paths as on the host, so `CODEBUILD_SRC_DIR` and friends keep
//!   their values; the Docker socket is mounted at `/var/run/docker.sock`
//!   (by default), so `docker build` and `docker push` in a buildspec work
//!   as on CodeBuild in privileged mode; the network is the host's by
//!   default. The shell starts with the image's environment (its `PATH`,
//!   `HOME`), plus the build's variables; the host's own never enter. The
//!   image's `ENTRYPOINT` and `CMD` do not run. `run-as` is Docker's
//!   `--user` (a name the image knows, or `uid[:gid]`), checked before the
//!   build starts. A fresh shell (0.1, a shell that exited, another user)
//!   is a new `docker exec` in the same container, so what earlier commands
//!   installed outside the source directory is still there. Artifacts and
//!   reports are collected on the host from the mounted source directory.
//!   A timeout or stop is `docker kill`; at the end the container is
//!   removed before `run` returns, and a container is labelled
//!   `gantry.build=<build id>` so leftovers (if gantry was killed mid-start)
//!   can be found. Without a docker CLI or an engine that answers, `run`
//!   fails before anything runs ("container mode needs a Docker Engine:
//!   ..."), and so it does for an image that cannot be pulled or a
//!   `run-as` user the image lacks. The container's start (with a pull)
//!   counts against the build's timeout. The mounted socket is
//!   root-equivalent on the host: container mode gives a build its image's
//!   tools, not isolation from the host.
//!
//! - **`cache.paths`** (see the `cache` module): with a
//!   [`BuildRequest::cache_dir`], the files they select are restored into
//!   the source directory before the first phase (what the source has
//!   wins) and kept after a build that succeeded.

mod artifacts;
mod cache;
mod container;
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
use std::time::Duration;

use gantry_spec::buildspec::{
    ArtifactsSpec, Buildspec, BuildspecVersion, OnFailure, Phase, PhaseName,
};
use tokio_util::sync::CancellationToken;

pub use crate::cache::{MAX_CACHE_BYTES, action_cache_dir, path_component};
pub use crate::container::{REGISTRY_USER, docker_config_json};
pub use crate::env::{input_env_name, passed_host_env};
pub use crate::error::{BuildError, UnresolvedParameter};
pub use crate::mask::{MASK, Masker, mask_everywhere};
pub use crate::outcome::{
    ArtifactOutput, BuildOutcome, BuildStatus, PhaseOutcome, TestFailure, TestReport, outcome_json,
};

use crate::container::{BuildContainer, ContainerPlan, DockerCli};
use crate::env::BuildPaths;
use crate::log::{Emitter, FrameWriter, LineAssembler, OutputWatch};
use crate::runner::{Driven, Interrupt, PhaseRunner};
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
    /// Where artifacts are written (created when the first one is).
    pub out_dir: PathBuf,
    /// A directory the caller owns (and removes) for the build's private
    /// files: the log FIFO and command files. `None`: a temporary one.
    /// The server passes the attempt's work directory, which saves making
    /// and removing a directory per build.
    pub scratch_dir: Option<PathBuf>,
    /// Cancelling it stops the build (status `Stopped`).
    pub cancel: CancellationToken,
    /// Run the build inside a container of this image (container mode)
    /// instead of on this host.
    pub container: Option<ContainerSpec>,
    /// Whether artifact and report paths may name absolute paths outside
    /// the source directory, as CodeBuild lets them (default false). Even
    /// when true, only a host build that does not switch users reads them:
    /// a container's paths are not the host's, and a `run-as` build would
    /// have gantry read with more rights than the build has. The server
    /// never sets it; `gantry buildspec run`, run by the user on their own
    /// files, does.
    pub read_outside_source: bool,
    /// Where `cache.paths` are kept between builds of this action (see
    /// the `cache` module); `None`: nothing is kept (the log says so).
    pub cache_dir: Option<PathBuf>,
}

/// Container mode: the build's shells run in a container of `image` on the
/// local Docker Engine (see the crate docs).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ContainerSpec {
    /// As `docker run` takes it; pulled when missing.
    pub image: String,
    /// `--privileged`, like CodeBuild's privileged mode (default false).
    /// Not needed for `docker build` and `docker push`, which go through
    /// the mounted socket.
    pub privileged: bool,
    /// Mount the engine's socket at `/var/run/docker.sock` (default true),
    /// so `docker` commands in the buildspec drive the same engine.
    pub docker_socket: bool,
    /// `--network`; `None` (the default) is `host`, so a build reaches
    /// what the host reaches, as a process of host mode does.
    pub network: Option<String>,
    /// The docker CLI (default `docker`, found on `PATH`).
    pub docker_cli: PathBuf,
    /// Variables for the docker CLI itself, over gantry's own environment
    /// (`DOCKER_HOST`, `DOCKER_CONFIG`, ...). They never reach the build.
    pub docker_env: Vec<(String, String)>,
}

impl ContainerSpec {
    /// `image` with the defaults: not privileged, Docker socket mounted,
    /// host network, `docker` from `PATH`.
    pub fn new(image: impl Into<String>) -> ContainerSpec {
        ContainerSpec {
            image: image.into(),
            privileged: false,
            docker_socket: true,
            network: None,
            docker_cli: PathBuf::from("docker"),
            docker_env: Vec::new(),
        }
    }
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
            scratch_dir: None,
            cancel: CancellationToken::new(),
            container: None,
            read_outside_source: false,
            cache_dir: None,
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
            on_failure: OnFailure::Unspecified,
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
    // In a container, `run-as` names the image's users: Docker resolves
    // them when the container has started.
    let users = if req.container.is_some() {
        BTreeMap::new()
    } else {
        resolve_users(&req.buildspec)?
    };
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
    let out_dir = out_dir_path(&req.out_dir).map_err(|e| BuildError::OutDir {
        path: req.out_dir.clone(),
        source: e,
    })?;

    let masker = Masker::new(
        req.secrets
            .iter()
            .map(|(_, v)| v.clone())
            .chain(mask::masked_everywhere()),
    );
    let scratch = match &req.scratch_dir {
        Some(dir) => Scratch::Given(dir.clone()),
        None => Scratch::Temp(
            tempfile::Builder::new()
                .prefix("gantry-build-")
                .tempdir()
                .map_err(BuildError::Scratch)?,
        ),
    };
    if users.values().any(Option::is_some) {
        // Shells running as another user read their command files here.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(scratch.path(), std::fs::Permissions::from_mode(0o755))
            .map_err(BuildError::Scratch)?;
    }
    // A container sees only this directory of the scratch space, readable
    // by whatever user the image runs as.
    let commands_dir = if req.container.is_some() {
        use std::os::unix::fs::PermissionsExt;
        let dir = scratch.path().join("commands");
        std::fs::create_dir(&dir)
            .and_then(|()| std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)))
            .map_err(BuildError::Scratch)?;
        dir
    } else {
        scratch.path().to_path_buf()
    };
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

    let start_ms = gantry_clock::now_ms();
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
        match &req.cache_dir {
            None => {
                notes.push("Cache: this build keeps no cache.paths (no cache directory)".to_owned())
            }
            Some(dir) => {
                let (dir, source) = (dir.clone(), root.clone());
                match tokio::task::spawn_blocking(move || cache::restore(&dir, &source)).await {
                    Ok(restored) => notes.extend(restored),
                    Err(e) => notes.push(format!("Cache: not restored: {e}")),
                }
            }
        }
    }

    let output_watch = OutputWatch::default();
    let emitter = Emitter {
        masker: &masker,
        sink: logs,
        watch: &output_watch,
    };
    let (paths, mut container) = match &req.container {
        None => (
            BuildPaths {
                src: req.source_dir.clone(),
                inputs: req.secondary_sources.clone(),
            },
            None,
        ),
        Some(spec) => {
            let started = start_container(
                &req,
                spec,
                &root,
                &commands_dir,
                scratch.path(),
                &token,
                deadline,
            )
            .await?;
            match started {
                Started::Ready {
                    paths,
                    container,
                    notes: more,
                } => {
                    notes.extend(more);
                    (paths, Some(container))
                }
                Started::Interrupted(i) => {
                    emitter.container(&format!(
                        "Build {} while its container was starting",
                        match i {
                            Interrupt::TimedOut => "timed out",
                            Interrupt::Stopped => "was stopped",
                        }
                    ));
                    let driven = Driven {
                        phases: Vec::new(),
                        interrupted: Some(i),
                        error: Some(i.error(req.timeout)),
                        aborted_early: false,
                        exported: BTreeMap::new(),
                        path_vars: BTreeMap::new(),
                    };
                    let collect = Collect {
                        root,
                        aliases: Vec::new(),
                        outside: Err(String::new()),
                        out_dir,
                    };
                    return Ok(finish(&req, driven, &collect, &masker, &emitter).await);
                }
            }
        }
    };

    let outside = outside_policy(&req, &users);
    let (synced_tx, synced_rx) = tokio::sync::watch::channel(0u64);
    let finished = CancellationToken::new();
    let runner = PhaseRunner {
        req: &req,
        env: env::base_env(&req, &paths, container.is_none(), start_ms),
        frames: FrameWriter::new(tx, mark.clone()),
        commands_dir: &commands_dir,
        src_dir: paths.src.clone(),
        log_fifo: log_fifo.clone(),
        token,
        deadline,
        users,
        notes,
        container: container.as_deref().map(|c| (c, synced_rx.clone())),
        log_synced: synced_rx,
        output_watch: &output_watch,
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
        &synced_tx,
    );
    let (driven, ()) = tokio::join!(drive, pump);
    if let Some(container) = &mut container {
        // Removed at the end of the phases already; this only waits for
        // the `docker run` client to notice.
        container.remove().await;
        container.reap().await;
    }

    let mut aliases = vec![paths.src.clone()];
    if req.source_dir.is_absolute() {
        aliases.push(req.source_dir.clone());
    }
    let collect = Collect {
        outside,
        root,
        aliases,
        out_dir,
    };
    let outcome = finish(&req, driven, &collect, &masker, &emitter).await;
    remove_later(scratch);
    Ok(outcome)
}

/// Where a build keeps its FIFO and command files.
enum Scratch {
    /// The caller's ([`BuildRequest::scratch_dir`]).
    Given(PathBuf),
    /// Ours, removed at the end.
    Temp(tempfile::TempDir),
}

impl Scratch {
    fn path(&self) -> &Path {
        match self {
            Scratch::Given(dir) => dir,
            Scratch::Temp(dir) => dir.path(),
        }
    }
}

/// Drops a temporary scratch directory on the blocking pool: removing a
/// directory can wait on the disk (on ext4 mounted with `discard`, one
/// `rmdir` took 2.3 ms here, more than the rest of a `true` build), and
/// nothing needs to wait for it. A runtime waits for its blocking tasks
/// when it shuts down, so the directory is gone before the process exits.
fn remove_later(scratch: Scratch) {
    if let Scratch::Temp(dir) = scratch {
        tokio::task::spawn_blocking(move || drop(dir));
    }
}

/// The absolute path of the artifacts' directory, which is made only when
/// an artifact is written (most builds write none, and every directory
/// made and removed costs). Its parent is made now, to resolve it.
fn out_dir_path(out_dir: &Path) -> std::io::Result<PathBuf> {
    if let Ok(dir) = out_dir.canonicalize() {
        return Ok(dir);
    }
    let name = out_dir.file_name().ok_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, "no directory name")
    })?;
    let parent = match out_dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(parent)?;
    Ok(parent.canonicalize()?.join(name))
}

/// How starting a build's container ended.
enum Started {
    /// Running, with the build's paths as its shells see them and lines
    /// for the log.
    Ready {
        paths: BuildPaths,
        container: Box<BuildContainer>,
        notes: Vec<String>,
    },
    /// The deadline passed or the build was stopped first (a long pull).
    Interrupted(Interrupt),
}

/// Checks the engine, starts the container with the build's mounts, and
/// checks that the image knows every `run-as` user. Errors mean the build
/// could not start; nothing is left running after one.
async fn start_container(
    req: &BuildRequest,
    spec: &ContainerSpec,
    root: &Path,
    commands_dir: &Path,
    scratch: &Path,
    token: &str,
    deadline: tokio::time::Instant,
) -> Result<Started, BuildError> {
    let mut notes = Vec::new();
    let src = container::container_path(&req.source_dir, root);
    let mut inputs = Vec::new();
    let mut input_mounts = Vec::new();
    for (name, dir) in &req.secondary_sources {
        // Docker would create a missing bind source as an empty
        // directory owned by root; better to say it is missing.
        let canonical = dir.canonicalize().map_err(|e| BuildError::InputDir {
            name: name.clone(),
            path: dir.clone(),
            source: e,
        })?;
        let target = container::container_path(dir, &canonical);
        inputs.push((name.clone(), target.clone()));
        input_mounts.push((canonical, target));
    }

    let docker = DockerCli::new(spec);
    let socket = if spec.docker_socket {
        let socket = docker.socket_path();
        if socket.is_none() {
            notes.push(
                "The Docker socket is not mounted: DOCKER_HOST does not name a unix:// socket"
                    .to_owned(),
            );
        }
        socket
    } else {
        None
    };
    let shell = shell_program(&req.buildspec).to_owned();
    let plan = ContainerPlan {
        name: container::container_name(&req.build_id, &token[..12]),
        build_id: req.build_id.clone(),
        image: spec.image.clone(),
        shell: shell.clone(),
        workdir: src.clone(),
        mounts: container::mounts(root, &src, &input_mounts, commands_dir, socket.as_deref()),
        network: spec.network.clone().unwrap_or_else(|| "host".to_owned()),
        privileged: spec.privileged,
        stderr_file: scratch.join("docker-run.log"),
    };
    // The engine check runs alongside the start, which it would otherwise
    // delay by a round trip; its verdict comes first all the same, so a
    // missing engine is reported as such and not as a failed `docker run`.
    // Both are bounded by the build's deadline (a hung engine, a long pull).
    let mut start = Box::pin(BuildContainer::start(&plan, &docker));
    let mut early = None;
    let check = docker.check_engine();
    let interrupt = runner::interrupted(deadline, &req.cancel);
    tokio::pin!(check, interrupt);
    let checked = loop {
        tokio::select! {
            v = &mut check => break Ok(v),
            r = &mut start, if early.is_none() => early = Some(r),
            i = &mut interrupt => break Err(i),
        }
    };
    /// Why the start went no further.
    enum Halt {
        Interrupted(Interrupt),
        Failed(BuildError),
    }
    let outcome = match checked {
        Ok(Ok(version)) => match early.take() {
            Some(r) => Ok(r.map(|c| (c, version))),
            None => tokio::select! {
                r = &mut start => Ok(r.map(|c| (c, version))),
                i = &mut interrupt => Err(Halt::Interrupted(i)),
            },
        },
        Ok(Err(e)) => Err(Halt::Failed(e)),
        Err(i) => Err(Halt::Interrupted(i)),
    };
    let (started, version) = match outcome {
        // A failed start cleaned up after itself.
        Ok(r) => r?,
        Err(halt) => {
            let early = match early {
                Some(r) => Some(r),
                // Interrupted mid-start: give the start a moment to end,
                // so a container it is about to create can be removed.
                None => tokio::time::timeout(shell::KILL_GRACE, &mut start)
                    .await
                    .ok(),
            };
            drop(start);
            match early {
                Some(Ok(started)) => {
                    started.remove().await;
                }
                // The `docker run` client died with its future; a
                // container it had created would stay. Bounded: the
                // engine may be why we stopped; then it is removed in the
                // background, or by whoever looks for the build's label.
                _ => {
                    let removal = docker.force_remove(&plan.name);
                    if tokio::time::timeout(shell::KILL_GRACE, removal)
                        .await
                        .is_err()
                    {
                        docker.force_remove_detached(&plan.name);
                    }
                }
            }
            return match halt {
                Halt::Interrupted(i) => Ok(Started::Interrupted(i)),
                Halt::Failed(e) => Err(e),
            };
        }
    };
    let mut users: Vec<&String> = req
        .buildspec
        .run_as
        .iter()
        .chain(
            req.buildspec
                .phases
                .iter()
                .filter_map(|p| p.run_as.as_ref()),
        )
        .collect();
    users.sort();
    users.dedup();
    for user in users {
        if let Err(e) = started.check_user(&shell, user).await {
            started.remove().await;
            return Err(e);
        }
    }
    notes.push(format!(
        "Running in container {} of image {} (Docker Engine {version})",
        plan.name, spec.image
    ));
    Ok(Started::Ready {
        paths: BuildPaths { src, inputs },
        container: Box::new(started),
        notes,
    })
}

/// Where a build's artifacts and reports are collected from.
#[derive(Clone)]
struct Collect {
    /// The canonical source directory.
    root: PathBuf,
    /// Its other absolute spellings: as given, as the build's shells see it.
    aliases: Vec<PathBuf>,
    /// Whether absolute paths outside it may be read, or why not.
    outside: Result<(), String>,
    /// The (canonical) artifacts' directory, never collected into itself.
    out_dir: PathBuf,
}

impl Collect {
    fn view(&self) -> artifacts::SourceView<'_> {
        artifacts::SourceView {
            root: &self.root,
            aliases: self.aliases.clone(),
            outside: self.outside.clone(),
            skip: Some(&self.out_dir),
        }
    }
}

/// Whether this build may read artifact and report paths outside its
/// source directory (see [`BuildRequest::read_outside_source`]), or why not.
fn outside_policy(
    req: &BuildRequest,
    users: &BTreeMap<String, Option<RunAs>>,
) -> Result<(), String> {
    if !req.read_outside_source {
        return Err(
            "a pipeline build's artifacts and reports are collected from its \
                    source directory only (gantry reads them with its own rights); \
                    write them there, e.g. under $CODEBUILD_SRC_DIR"
                .to_owned(),
        );
    }
    if req.container.is_some() {
        return Err(
            "in a container build that path is inside the container, and gantry \
                    collects files from the mounted source directory only"
                .to_owned(),
        );
    }
    if users.values().any(Option::is_some) {
        return Err(
            "the build runs as another user (run-as), and gantry would read \
                    the path with its own rights"
                .to_owned(),
        );
    }
    Ok(())
}

/// Notes for the log about variables a path named that the build's final
/// environment does not set.
fn unset_notes(what: &str, unset: &[String]) -> Vec<String> {
    unset
        .iter()
        .map(|name| {
            format!(
                "{what}: variable {name} is not set at the end of the build; \
                 `${name}` is kept as written"
            )
        })
        .collect()
}

/// Reports and artifacts, then the outcome.
async fn finish(
    req: &BuildRequest,
    driven: Driven,
    collect: &Collect,
    masker: &Masker,
    emitter: &Emitter<'_>,
) -> BuildOutcome {
    let Driven {
        phases,
        interrupted,
        mut error,
        aborted_early,
        exported,
        path_vars,
    } = driven;
    let mut reports = Vec::new();
    let mut artifacts = Vec::new();
    if interrupted.is_none() {
        if !req.buildspec.reports.is_empty() {
            let groups = req.buildspec.reports.clone();
            let (collect2, masker2, vars) = (collect.clone(), masker.clone(), path_vars.clone());
            let done = tokio::task::spawn_blocking(move || {
                let mut notes = Vec::new();
                let view = collect2.view();
                let reports: Vec<TestReport> = groups
                    .iter()
                    .map(|g| {
                        let mut unset = Vec::new();
                        let g = reports::expand(g, &vars, &mut unset);
                        notes.extend(unset_notes(&format!("Report group {}", g.name), &unset));
                        reports::summarize(&g, &view, &masker2, &mut |n| notes.push(n))
                    })
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
            let (outputs, notes, failure) = upload(req, collect, &path_vars).await;
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
    if let Some(dir) = &req.cache_dir
        && status == BuildStatus::Succeeded
        && !req.buildspec.cache_paths.is_empty()
    {
        let (dir, paths, root) = (
            dir.clone(),
            req.buildspec.cache_paths.clone(),
            collect.root.clone(),
        );
        match tokio::task::spawn_blocking(move || cache::save(&dir, &paths, &root)).await {
            Ok(notes) => notes.iter().for_each(|n| emitter.container(n)),
            Err(e) => emitter.container(&format!("Cache: not saved: {e}")),
        }
    }
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
    collect: &Collect,
    path_vars: &BTreeMap<String, String>,
) -> (Vec<ArtifactOutput>, Vec<String>, Option<BuildError>) {
    let mut jobs: Vec<(Option<String>, ArtifactsSpec)> = Vec::new();
    if let Some(primary) = &req.buildspec.artifacts {
        jobs.push((None, primary.clone()));
    }
    for (id, spec) in &req.buildspec.secondary_artifacts {
        jobs.push((Some(id.clone()), spec.clone()));
    }
    let (collect, vars) = (collect.clone(), path_vars.clone());
    let done = tokio::task::spawn_blocking(move || {
        let mut outputs = Vec::new();
        let mut notes = Vec::new();
        let view = collect.view();
        for (id, spec) in jobs {
            let name = id.clone().unwrap_or_else(|| "primary".to_owned());
            let dir = match &id {
                None => collect.out_dir.clone(),
                Some(id) if is_plain_name(id) => collect.out_dir.join(id),
                Some(id) => {
                    let e = BuildError::InvalidArtifactIdentifier {
                        identifier: id.clone(),
                    };
                    return (outputs, notes, Some(e));
                }
            };
            let mut unset = Vec::new();
            let expanded = artifacts::expand_spec(&spec, &vars, &mut unset);
            notes.extend(unset_notes(&format!("Artifact {name}"), &unset));
            if let (Some(written), Some(base)) = (&spec.base_directory, &expanded.base_directory)
                && written != base
            {
                notes.push(format!("Base directory {written} ({name}) is {base}"));
            }
            for (written, pattern) in spec.files.iter().zip(&expanded.files) {
                if written == pattern {
                    notes.push(format!("Expanding {pattern} ({name})"));
                } else {
                    notes.push(format!("Expanding {written} ({name}) as {pattern}"));
                }
            }
            let copied = artifacts::select_artifact(&name, &expanded, &view)
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

/// `env.shell`, `sh` when empty.
pub(crate) fn shell_program(bs: &Buildspec) -> &str {
    let shell = bs.shell.trim();
    if shell.is_empty() { "sh" } else { shell }
}

/// Every parameter-store and secrets-manager variable must have a value;
/// the error names all that have none.
fn check_parameters(req: &BuildRequest) -> Result<(), BuildError> {
    let missing = unresolved_parameters(&req.buildspec, &req.secrets);
    if missing.is_empty() {
        Ok(())
    } else {
        Err(BuildError::UnresolvedParameters { missing })
    }
}

/// The buildspec's parameter-store and secrets-manager variables that
/// `secrets` gives no value, in file order.
pub fn unresolved_parameters(
    bs: &Buildspec,
    secrets: &[(String, String)],
) -> Vec<UnresolvedParameter> {
    let sections = [
        ("env.parameter-store", &bs.parameter_store),
        ("env.secrets-manager", &bs.secrets_manager),
    ];
    let mut missing = Vec::new();
    for (section, entries) in sections {
        for (variable, parameter) in entries {
            if !secrets.iter().any(|(name, _)| name == variable) {
                missing.push(UnresolvedParameter {
                    variable: variable.clone(),
                    parameter: parameter.clone(),
                    section,
                });
            }
        }
    }
    missing
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
        gantry_clock::now(),
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
