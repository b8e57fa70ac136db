//! Container mode: the build's shells run inside one container of the
//! requested image on the local Docker Engine.
//!
//! # Lifecycle
//!
//! 1. `docker version` proves the CLI runs and the engine answers; without
//!    them the build fails before anything runs. It runs alongside step 2
//!    (one round trip less), but its verdict is read first.
//! 2. One container per build, the *keeper*: `docker run -i --rm --init
//!    --entrypoint SHELL IMAGE`, with every mount and option the build needs.
//!    Its shell only reads its stdin, which is a pipe from this process, so
//!    the container lives exactly as long as we hold that pipe: if gantry
//!    dies, the pipe closes, the shell exits, and `--rm` removes the
//!    container. Nothing is left behind even when no cleanup code runs.
//! 3. Every shell session of the build is a `docker exec -i` into the keeper.
//!    The client's stdin, stdout and stderr play the parts the shell's own
//!    streams play in host mode (see `shell.rs`), so the command protocol is
//!    the same. Because sessions are processes in one container, a fresh
//!    shell (0.1, a shell that exited, another `run-as` user) still sees the
//!    packages and files earlier commands installed, as on CodeBuild. Ending
//!    a session closes its input; what it left running in the background
//!    lives on until the container goes (the end of the build).
//! 4. A timeout or stop is `docker kill`: killing a local `docker` client
//!    does not stop what it started. The end of a build (or an error after
//!    the start) is `docker rm -f`, awaited, so a build that returned has no
//!    container left; a dropped build future removes it in the background.
//!    A timeout or stop during the start (a long pull, a hung engine) gives
//!    the start 2 s to finish, then removes what it may have created with
//!    a bounded wait, in the background past that.
//!
//! # Why the docker CLI and not bollard
//!
//! The CLI's `exec -i` already gives a process whose stdin, stdout and
//! stderr are the container process's, which is exactly what the shell
//! protocol needs; with bollard we would re-implement the attach stream
//! demultiplexing and its half-close for the same result. The CLI also
//! brings the user's registry credentials, credential helpers and contexts
//! for pulls, and its commands are the ones CodeBuild users debug with.
//! The cost is one process per operation (a few milliseconds each).
//!
//! # Paths and variables
//!
//! Directories are mounted at the same absolute paths inside as outside, so
//! `CODEBUILD_SRC_DIR`, secondary inputs and the command files keep their
//! paths. Only the directory holding command files is mounted from the
//! scratch directory (read-only); the log FIFO stays outside. Variables
//! reach the shell as `export` lines on its stdin (never on a command line,
//! where `ps` would show secrets); names a shell cannot export are passed
//! with `--env NAME`, their values taken from the docker client's own
//! environment.

use std::ffi::{OsStr, OsString};
use std::io;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

use crate::ContainerSpec;
use crate::error::BuildError;

/// How long `docker version`, `kill` and `rm` may take before we give up
/// on them (a hung engine must not hang the build forever).
const DOCKER_OP_TIMEOUT: Duration = Duration::from_secs(30);

/// Where a container finds the Docker socket, as on CodeBuild's images.
pub(crate) const SOCKET_IN_CONTAINER: &str = "/var/run/docker.sock";

/// The label naming a container's build, to find leftovers:
/// `docker ps -a --filter label=gantry.build=<build id>`.
pub(crate) const BUILD_LABEL: &str = "gantry.build";

/// What the keeper prints once it runs.
const READY: &str = "gantry-container-ready";

/// The docker CLI and the environment it runs with.
#[derive(Debug, Clone)]
pub(crate) struct DockerCli {
    program: PathBuf,
    /// Set over gantry's own environment, for the client only.
    env: Vec<(String, String)>,
}

impl DockerCli {
    pub(crate) fn new(spec: &ContainerSpec) -> DockerCli {
        DockerCli {
            program: spec.docker_cli.clone(),
            env: spec.docker_env.clone(),
        }
    }

    /// A `docker` command with the client environment, no stdin, and
    /// killed if dropped (a timed-out operation must not linger).
    pub(crate) fn command<I, S>(&self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut command = Command::new(&self.program);
        command
            .args(args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .kill_on_drop(true);
        command
    }

    /// Runs a short command, capturing its output, within
    /// [`DOCKER_OP_TIMEOUT`].
    async fn output(&self, args: &[&str]) -> io::Result<std::process::Output> {
        let mut command = self.command(args);
        command.stdout(Stdio::piped()).stderr(Stdio::piped());
        match tokio::time::timeout(DOCKER_OP_TIMEOUT, command.output()).await {
            Ok(result) => result,
            Err(_) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "`docker {}` did not answer within {}s",
                    args.first().copied().unwrap_or_default(),
                    DOCKER_OP_TIMEOUT.as_secs()
                ),
            )),
        }
    }

    /// The engine's Unix socket on this host, from `DOCKER_HOST` (the
    /// client override first, then gantry's environment), by default
    /// `/var/run/docker.sock`; `None` for an engine reached otherwise
    /// (`tcp://`, `ssh://`), whose socket cannot be mounted.
    pub(crate) fn socket_path(&self) -> Option<PathBuf> {
        let host = self
            .env
            .iter()
            .rev()
            .find(|(k, _)| k == "DOCKER_HOST")
            .map(|(_, v)| v.clone())
            .or_else(|| std::env::var("DOCKER_HOST").ok())
            .filter(|h| !h.is_empty());
        match host {
            None => Some(PathBuf::from(SOCKET_IN_CONTAINER)),
            Some(h) => h.strip_prefix("unix://").map(PathBuf::from),
        }
    }

    /// `docker rm --force name`, whatever the outcome: cleanup of a
    /// container that may or may not exist.
    pub(crate) async fn force_remove(&self, name: &str) {
        let _ = self.output(&["rm", "--force", name]).await;
    }

    /// [`DockerCli::force_remove`] without waiting: for a destructor, or
    /// an engine that may not answer.
    pub(crate) fn force_remove_detached(&self, name: &str) {
        let mut command = std::process::Command::new(&self.program);
        command
            .args(["rm", "--force", name])
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Ok(mut child) = command.spawn() {
            // Reaped on a thread of its own, so nobody waits for it; killed
            // if the engine never answers, so it cannot pile up.
            let _ = std::thread::Builder::new()
                .name("gantry-container-rm".to_owned())
                .spawn(move || {
                    let exited = gantry_clock::blocking_poll(
                        2 * DOCKER_OP_TIMEOUT,
                        Duration::from_millis(100),
                        || (!matches!(child.try_wait(), Ok(None))).then_some(()),
                    );
                    if exited.is_none() {
                        let _ = child.kill();
                        let _ = child.wait();
                    }
                });
        }
    }

    /// Proves the CLI runs and the engine answers; returns the engine's
    /// version.
    pub(crate) async fn check_engine(&self) -> Result<String, BuildError> {
        let unavailable = |reason: String| BuildError::DockerUnavailable { reason };
        let out = self
            .output(&["version", "--format", "{{.Server.Version}}"])
            .await
            .map_err(|e| {
                unavailable(if e.kind() == io::ErrorKind::NotFound {
                    format!("the docker CLI `{}` was not found", self.program.display())
                } else {
                    format!("cannot run `{} version`: {e}", self.program.display())
                })
            })?;
        let version = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        if !out.status.success() || version.is_empty() {
            let why = last_lines(&String::from_utf8_lossy(&out.stderr));
            return Err(unavailable(if why.is_empty() {
                format!("`docker version` exited with {}", out.status)
            } else {
                why
            }));
        }
        Ok(version)
    }
}

/// A bind mount, `source` on the host at `target` in the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Mount {
    pub(crate) source: PathBuf,
    pub(crate) target: PathBuf,
    pub(crate) read_only: bool,
}

impl Mount {
    /// The `--mount` value. Fields are CSV-quoted, so paths holding `,`,
    /// `:` or `"` mount as they are (a `-v` value cannot carry `:`).
    fn arg(&self) -> String {
        let mut arg = format!(
            "type=bind,{},{}",
            csv_field(&format!("source={}", self.source.display())),
            csv_field(&format!("target={}", self.target.display()))
        );
        if self.read_only {
            arg.push_str(",readonly");
        }
        arg
    }
}

fn csv_field(field: &str) -> String {
    if field.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", field.replace('"', "\"\""))
    } else {
        field.to_owned()
    }
}

/// Where a host directory appears in the container: at the path the build
/// was given when that path is absolute and plain (so variables hold the
/// path the caller knows), else at its canonical path.
pub(crate) fn container_path(given: &Path, canonical: &Path) -> PathBuf {
    use std::path::Component;
    let plain = given.is_absolute()
        && given
            .components()
            .all(|c| matches!(c, Component::RootDir | Component::Normal(_)));
    if plain {
        given.to_path_buf()
    } else {
        canonical.to_path_buf()
    }
}

/// Everything `docker run` needs for the keeper.
pub(crate) struct ContainerPlan {
    pub(crate) name: String,
    pub(crate) build_id: String,
    pub(crate) image: String,
    pub(crate) shell: String,
    pub(crate) workdir: PathBuf,
    pub(crate) mounts: Vec<Mount>,
    pub(crate) network: String,
    pub(crate) privileged: bool,
    /// Where the keeper client's stderr goes, to explain a failed start.
    pub(crate) stderr_file: PathBuf,
}

impl ContainerPlan {
    fn run_args(&self) -> Vec<OsString> {
        let mut args: Vec<OsString> = vec![
            "run".into(),
            "--interactive".into(),
            "--rm".into(),
            // tini as PID 1 reaps orphans (a build's `nohup dockerd &`) and
            // makes `docker kill` end everything at once.
            "--init".into(),
            format!("--name={}", self.name).into(),
            format!("--label={BUILD_LABEL}={}", self.build_id).into(),
            format!("--network={}", self.network).into(),
        ];
        if self.privileged {
            args.push("--privileged".into());
        }
        // Targets in path order, so a mount inside another lands on top.
        let mut mounts: Vec<&Mount> = self.mounts.iter().collect();
        mounts.sort_by(|a, b| a.target.cmp(&b.target));
        mounts.dedup_by(|a, b| a.target == b.target);
        for mount in mounts {
            args.push("--mount".into());
            args.push(mount.arg().into());
        }
        let mut workdir = OsString::from("--workdir=");
        workdir.push(&self.workdir);
        args.push(workdir);
        // The image's ENTRYPOINT and CMD do not run: the build drives the
        // container, as CodeBuild's agent does.
        args.push(format!("--entrypoint={}", self.shell).into());
        args.push(self.image.clone().into());
        args
    }
}

/// `gantry-build-<build id>-<nonce>`, within Docker's name alphabet.
pub(crate) fn container_name(build_id: &str, nonce: &str) -> String {
    let id: String = build_id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-') {
                c
            } else {
                '-'
            }
        })
        .take(48)
        .collect();
    format!("gantry-build-{id}-{nonce}")
}

/// The build's running container.
pub(crate) struct BuildContainer {
    pub(crate) name: String,
    pub(crate) docker: DockerCli,
    pub(crate) privileged: bool,
    /// The keeper client. Holding its stdin keeps the container alive.
    keeper: Child,
    _keeper_stdin: ChildStdin,
    _keeper_stdout: BufReader<ChildStdout>,
    removed: AtomicBool,
}

impl BuildContainer {
    /// Starts the keeper and waits until its shell answers. A pull of a
    /// missing image happens here and takes as long as it takes: the
    /// caller bounds it with the build's deadline and cancellation.
    pub(crate) async fn start(
        plan: &ContainerPlan,
        docker: &DockerCli,
    ) -> Result<BuildContainer, BuildError> {
        let failed = |reason: String| BuildError::ContainerStart {
            image: plan.image.clone(),
            reason,
        };
        let stderr = std::fs::File::create(&plan.stderr_file)
            .map_err(|e| failed(format!("cannot create {}: {e}", plan.stderr_file.display())))?;
        let mut command = docker.command(plan.run_args());
        command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(stderr));
        let mut keeper = command
            .spawn()
            .map_err(|e| failed(format!("cannot run the docker CLI: {e}")))?;
        let (Some(mut stdin), Some(stdout)) = (keeper.stdin.take(), keeper.stdout.take()) else {
            return Err(failed("docker run started without pipes".to_owned()));
        };
        let mut stdout = BufReader::new(stdout);
        let mut container = None;
        if stdin
            .write_all(format!("echo {READY}\n").as_bytes())
            .await
            .is_ok()
        {
            let mut line = String::new();
            // Any line but READY is unexpected; keep reading until READY
            // or the end of the stream (the container exited).
            while stdout.read_line(&mut line).await.unwrap_or(0) > 0 {
                if line.trim_end() == READY {
                    container = Some(());
                    break;
                }
                line.clear();
            }
        }
        if container.is_none() {
            let status = tokio::time::timeout(DOCKER_OP_TIMEOUT, keeper.wait()).await;
            let text = std::fs::read_to_string(&plan.stderr_file).unwrap_or_default();
            let why = last_lines(&text);
            let reason = match (why.is_empty(), status) {
                (false, _) => why,
                (true, Ok(Ok(status))) => format!("docker run exited with {status}"),
                (true, _) => "docker run ended without starting the container".to_owned(),
            };
            // `--rm` removes a container that ran; one that was created
            // but never started would stay.
            docker.force_remove(&plan.name).await;
            return Err(failed(reason));
        }
        Ok(BuildContainer {
            name: plan.name.clone(),
            docker: docker.clone(),
            privileged: plan.privileged,
            keeper,
            _keeper_stdin: stdin,
            _keeper_stdout: stdout,
            removed: AtomicBool::new(false),
        })
    }

    /// `docker exec` running `shell` as a session of the build. The
    /// caller sets up its streams.
    pub(crate) fn exec_command(
        &self,
        shell: &str,
        cwd: &Path,
        user: Option<&str>,
        env_names: &[&OsStr],
    ) -> Command {
        let mut args: Vec<OsString> = vec!["exec".into(), "--interactive".into()];
        let mut workdir = OsString::from("--workdir=");
        workdir.push(cwd);
        args.push(workdir);
        if let Some(user) = user {
            args.push(format!("--user={user}").into());
        }
        if self.privileged {
            args.push("--privileged".into());
        }
        for name in env_names {
            let mut arg = OsString::from("--env=");
            arg.push(name);
            args.push(arg);
        }
        args.push(self.name.clone().into());
        args.push(shell.into());
        let mut command = self.docker.command(args);
        // A session is ended by our own cleanup, never by a drop of the
        // `Child`: `ShellSession` owns the process group.
        command.kill_on_drop(false);
        command
    }

    /// Runs `SHELL -c :` as `user`, so a user the image does not know fails
    /// the build before it starts, with Docker's reason.
    pub(crate) async fn check_user(&self, shell: &str, user: &str) -> Result<(), BuildError> {
        let args = [
            "exec",
            &format!("--user={user}"),
            &self.name,
            shell,
            "-c",
            ":",
        ];
        let out = self
            .docker
            .output(&args)
            .await
            .map_err(|e| BuildError::ContainerRunAs {
                user: user.to_owned(),
                reason: e.to_string(),
            })?;
        if out.status.success() {
            return Ok(());
        }
        let why = last_lines(&String::from_utf8_lossy(&out.stderr));
        Err(BuildError::ContainerRunAs {
            user: user.to_owned(),
            reason: if why.is_empty() {
                format!("docker exec exited with {}", out.status)
            } else {
                why
            },
        })
    }

    /// Kills every process of the build at once (timeout, stop).
    pub(crate) async fn kill(&self) {
        if !self.removed.load(Ordering::SeqCst) {
            let _ = self.docker.output(&["kill", &self.name]).await;
        }
    }

    /// Removes the container and everything still running in it; returns
    /// Docker's complaint if that failed. Later calls do nothing.
    pub(crate) async fn remove(&self) -> Option<String> {
        if self.removed.swap(true, Ordering::SeqCst) {
            return None;
        }
        match self.docker.output(&["rm", "--force", &self.name]).await {
            Ok(out) if out.status.success() => None,
            Ok(out) => {
                let why = last_lines(&String::from_utf8_lossy(&out.stderr));
                // `--rm` may have won the race after a kill.
                (!why.contains("No such container")).then_some(why)
            }
            Err(e) => Some(e.to_string()),
        }
    }

    /// Waits for the keeper client to exit after [`BuildContainer::remove`]
    /// (it does once its container is gone), so no zombie is left.
    pub(crate) async fn reap(&mut self) {
        // Short: if the removal failed, the client never exits, and
        // dropping it ends the container through `--rm` anyway.
        let _ = tokio::time::timeout(Duration::from_secs(5), self.keeper.wait()).await;
    }
}

impl Drop for BuildContainer {
    /// A build future dropped mid-build never reached `remove`: remove the
    /// container in the background. (Dropping the keeper client also ends
    /// it, through `--rm`, once its stdin closes; this is quicker and does
    /// not depend on the engine noticing.)
    fn drop(&mut self) {
        if !self.removed.swap(true, Ordering::SeqCst) {
            self.docker.force_remove_detached(&self.name);
        }
    }
}

/// The last few non-empty lines of a docker error output, joined: Docker
/// puts the reason last (`Unable to find image ...` then the pull error).
fn last_lines(text: &str) -> String {
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        // The CLI's pointers to its help say nothing about the failure.
        .filter(|l| !l.is_empty() && !l.starts_with("Run '") && !l.starts_with("See '"))
        .collect();
    let from = lines.len().saturating_sub(3);
    let joined = lines[from..].join(" ");
    // Long enough for any Docker error, short enough for an error line.
    match joined.char_indices().nth(2000) {
        Some((at, _)) => format!("{}...", &joined[..at]),
        None => joined,
    }
}

/// The mounts of a build: the source and secondary inputs at their paths
/// in the container, the command files read-only, and the Docker socket.
pub(crate) fn mounts(
    root: &Path,
    src_in: &Path,
    inputs: &[(PathBuf, PathBuf)],
    commands_dir: &Path,
    socket: Option<&Path>,
) -> Vec<Mount> {
    let mut mounts = vec![Mount {
        source: root.to_path_buf(),
        target: src_in.to_path_buf(),
        read_only: false,
    }];
    for (canonical, target) in inputs {
        mounts.push(Mount {
            source: canonical.clone(),
            target: target.clone(),
            read_only: false,
        });
    }
    mounts.push(Mount {
        source: commands_dir.to_path_buf(),
        target: commands_dir.to_path_buf(),
        read_only: true,
    });
    if let Some(socket) = socket {
        mounts.push(Mount {
            source: socket.to_path_buf(),
            target: PathBuf::from(SOCKET_IN_CONTAINER),
            read_only: false,
        });
    }
    mounts
}

/// The user name that goes with gantry tokens in Basic credentials.
pub const REGISTRY_USER: &str = "gantry";

/// A docker `config.json` with Basic credentials (`gantry:TOKEN`) for one
/// registry: what `docker push` in a build, and the server's own Docker
/// runtime, authenticate to the embedded registry with.
pub fn docker_config_json(registry: &str, token: &str) -> String {
    use base64::Engine as _;
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{REGISTRY_USER}:{token}"));
    serde_json::json!({"auths": {registry: {"auth": auth}}}).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_keep_to_dockers_alphabet() {
        assert_eq!(
            container_name("shop:0001/x y", "ab12"),
            "gantry-build-shop-0001-x-y-ab12"
        );
    }

    #[test]
    fn mount_fields_with_commas_are_quoted() {
        let m = Mount {
            source: "/a,b/c:d".into(),
            target: "/t\"x".into(),
            read_only: true,
        };
        assert_eq!(
            m.arg(),
            "type=bind,\"source=/a,b/c:d\",\"target=/t\"\"x\",readonly"
        );
    }

    #[test]
    fn plain_absolute_paths_are_kept_others_canonical() {
        let canonical = Path::new("/real/src");
        assert_eq!(
            container_path(Path::new("/work/src"), canonical),
            Path::new("/work/src")
        );
        assert_eq!(container_path(Path::new("src"), canonical), canonical);
        assert_eq!(
            container_path(Path::new("/work/../src"), canonical),
            canonical
        );
    }

    #[test]
    fn the_socket_comes_from_docker_host() {
        let mut spec = ContainerSpec::new("img");
        spec.docker_env = vec![(
            "DOCKER_HOST".into(),
            "unix:///run/user/1/docker.sock".into(),
        )];
        assert_eq!(
            DockerCli::new(&spec).socket_path(),
            Some(PathBuf::from("/run/user/1/docker.sock"))
        );
        spec.docker_env = vec![("DOCKER_HOST".into(), "tcp://10.0.0.1:2376".into())];
        assert_eq!(DockerCli::new(&spec).socket_path(), None);
    }

    #[test]
    fn docker_errors_keep_their_last_lines() {
        let text = "Unable to find image 'x:1' locally\n\ndocker: Error response from daemon: pull access denied for x.\nSee 'docker run --help'.\n";
        assert_eq!(
            last_lines(text),
            "Unable to find image 'x:1' locally docker: Error response from daemon: pull access denied for x."
        );
    }
}
