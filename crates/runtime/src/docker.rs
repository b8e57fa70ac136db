//! The `docker` runtime: replicas as containers, driven through the docker CLI.
//!
//! This file holds only what is docker's own: the `docker run` command line,
//! pulling, publishing a host port, reading container states (as JSON), the
//! watcher that restarts and adopts containers. Slots, reservations, listing,
//! events and the restart backoff are the shared [`ReplicaTable`]'s.

use std::collections::HashMap;
use std::convert::Infallible;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::OWNER_ENV;
use crate::error::RuntimeError;
use crate::replica::{Replica, ReplicaEvent, ReplicaSpec, ReplicaState};
use crate::restart::RestartPolicy;
use crate::table::{Driver, Port, ReplicaTable, loopback};

/// Containers are named `gantry-<replica id>`.
const NAME_PREFIX: &str = "gantry-";
const LABEL_OWNER: &str = "gantry.owner";
const LABEL_REPLICA: &str = "gantry.replica";
const LABEL_SPEC: &str = "gantry.spec";
const LABEL_HOST_PORT: &str = "gantry.host-port";
/// How long a docker command other than a pull may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(120);
/// How many host ports to try when the one picked is taken meanwhile.
const PORT_TRIES: usize = 5;

/// How a [`DockerRuntime`] reaches Docker and restarts containers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DockerOptions {
    /// The docker CLI. Default `docker` (found in `PATH`).
    pub program: PathBuf,
    /// Marks this runtime's containers (label `gantry.owner`); use something
    /// unique to the gantry instance, such as its data dir.
    pub owner: String,
    /// Backoff for restarts.
    pub restart: RestartPolicy,
    /// How often container states are polled. Default 1 s.
    pub poll_interval: Duration,
    /// A docker config directory (`docker --config DIR`) for every command,
    /// holding the credentials of the registries replicas pull from (the
    /// embedded one's token); `None` (the default): the CLI's own
    /// (`~/.docker`, or `DOCKER_CONFIG`).
    pub config_dir: Option<PathBuf>,
    /// Whether [`DockerRuntime::new`] waits for docker's first answer, so
    /// that containers of an earlier server are known (adopted) when it
    /// returns. Default true; a server with no docker environment turns it
    /// off and does not wait for the docker CLI to start (tens of ms).
    pub adopt_at_start: bool,
}

impl DockerOptions {
    /// Defaults for a runtime owning the containers labelled `owner`.
    pub fn new(owner: impl Into<String>) -> DockerOptions {
        DockerOptions {
            program: PathBuf::from("docker"),
            owner: owner.into(),
            restart: RestartPolicy::default(),
            poll_interval: Duration::from_secs(1),
            config_dir: None,
            adopt_at_start: true,
        }
    }
}

/// Runs replicas as Docker containers, through the docker CLI.
///
/// The CLI rather than the Engine API (bollard): it is what an operator uses
/// to look at the same containers, it reads the user's `~/.docker/config.json`
/// credentials and contexts (`DOCKER_HOST`) without gantry re-implementing
/// them, and it adds no HTTP client stack to the binary. Every call is one
/// short-lived `docker` process with a timeout.
///
/// A replica is the container `gantry-<id>`, labelled with its environment,
/// service, revision, replica id, image digest, its owner (the runtime's
/// [`DockerOptions::owner`], so two gantry instances on one engine never touch
/// each other's containers) and its spec (without environment values, which
/// are read back from the container when it is adopted). It is published on
/// `127.0.0.1:<host port>`, a port gantry picks, so the address stays the
/// same across restarts of the container. `PORT` is the spec's port.
/// Environment values are handed to the CLI through its own environment
/// (`-e NAME`), so they do not show in a process listing.
///
/// Restarts stay in gantry, as in the process runtime, so the same events reach
/// the circuit breaker: containers run with no restart policy, a watcher polls
/// `docker ps` every second, and an exited container is started again
/// (`docker start`, or re-created if it was removed) after the backoff.
/// What docker says is read as JSON (`--format '{{json .}}'`, and
/// `docker inspect`'s `State` for exit codes), never from its human text.
/// Containers outlive gantry; a new runtime adopts the running ones with its
/// owner label and removes (reporting them as exited) the dead ones.
///
/// Dropping it stops watching (no more restarts); containers keep running and a
/// new runtime with the same owner adopts them.
pub struct DockerRuntime {
    inner: Arc<Inner>,
}

struct Inner {
    options: DockerOptions,
    /// A slot's task is its restart, while one is under way: the watcher
    /// leaves the container alone meanwhile. Its handle is nothing: the
    /// container's name comes from the replica id.
    table: ReplicaTable<()>,
    /// Whether `docker version` has answered once.
    available: AtomicBool,
}

/// The `gantry.spec` label: the spec without environment values (the
/// swarm runtime labels its services with it too).
#[derive(Serialize, Deserialize)]
pub(crate) struct SpecLabel {
    pub(crate) spec: ReplicaSpec,
    pub(crate) env_names: Vec<String>,
}

/// One of this runtime's containers, from a line of
/// `docker ps --format '{{json .}}'`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ContainerStatus {
    replica: String,
    /// Docker's state: `created`, `running`, `paused`, `restarting`,
    /// `removing`, `exited` or `dead`.
    state: String,
}

impl ContainerStatus {
    fn is_running(&self) -> bool {
        matches!(
            self.state.as_str(),
            "running" | "paused" | "restarting" | "removing"
        )
    }
}

/// The fields of a `docker ps --format '{{json .}}'` line gantry reads.
/// `Labels` is not among them: docker joins labels with commas, and the
/// `gantry.spec` label holds commas itself; the name says the replica.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct PsLine {
    /// The container's names, joined with commas.
    names: String,
    state: String,
}

/// The fields of `docker inspect --format '{{json .State}}'` gantry reads.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct InspectState {
    status: String,
    exit_code: i32,
}

/// The fields of `docker inspect --format '{{json .Config}}'` gantry reads.
/// Docker writes `null` for an empty map or list.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct InspectConfig {
    #[serde(default)]
    labels: Option<HashMap<String, String>>,
    #[serde(default)]
    env: Option<Vec<String>>,
}

/// Why `docker run` failed.
enum RunError {
    /// The host port was taken between picking and publishing it.
    PortTaken,
    Other(RuntimeError),
}

impl DockerRuntime {
    /// A runtime with these options. Adopts the running containers labelled with
    /// its owner and removes its dead ones (reporting them as `Exited` to the
    /// first subscriber). A missing docker is not an error here: `start` reports
    /// it, and adoption happens once docker answers.
    pub async fn new(options: DockerOptions) -> Result<DockerRuntime, RuntimeError> {
        let inner = Arc::new(Inner {
            options,
            table: ReplicaTable::new(),
            available: AtomicBool::new(false),
        });
        if inner.options.adopt_at_start
            && let Err(e) = inner.poll().await
        {
            tracing::warn!(error = %e, "docker did not answer; its containers are adopted once it does");
        }
        let watcher = tokio::spawn(watch(inner.clone())).abort_handle();
        inner.table.add_watcher(watcher);
        Ok(DockerRuntime { inner })
    }
}

impl Drop for DockerRuntime {
    fn drop(&mut self) {
        self.inner.table.abort_tasks();
    }
}

impl Driver for DockerRuntime {
    type Handle = ();
    const KIND: &'static str = "docker";

    fn table(&self) -> &ReplicaTable<()> {
        &self.inner.table
    }

    /// `docker exec` in the replica's container, as its `HEALTHCHECK CMD`
    /// would run.
    async fn exec_in(
        &self,
        id: &str,
        argv: &[String],
        timeout: Duration,
    ) -> Result<crate::ExecOutput, String> {
        if self.inner.table.lock().get(id).is_none() {
            return Err(format!("replica {id} is not running"));
        }
        let mut command = cli(&self.inner.options);
        command.arg("exec").arg(container_name(id)).args(argv);
        crate::exec::run(command, timeout).await
    }

    /// `docker logs --timestamps`: both streams, merged by their lines'
    /// timestamps (RFC 3339 with nanoseconds sort as text).
    async fn replica_logs(
        &self,
        id: &str,
        query: crate::LogQuery,
    ) -> Result<crate::ReplicaOutput, RuntimeError> {
        let args = logs_args(id, &query);
        let program = &self.inner.options.program;
        let mut command = cli(&self.inner.options);
        command
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let output = tokio::time::timeout(Duration::from_secs(30), command.output())
            .await
            .map_err(|_| RuntimeError::Docker {
                command: format!("docker {}", args.join(" ")),
                stderr: "timed out after 30s".into(),
            })?
            .map_err(|e| RuntimeError::DockerUnavailable {
                reason: format!("running {}: {e}", program.display()),
            })?;
        if !output.status.success() {
            return Err(RuntimeError::Docker {
                command: format!("docker {}", args.join(" ")),
                stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
            });
        }
        Ok(timestamped_output(&output.stdout, &output.stderr, &query))
    }

    async fn start_replica(&self, spec: ReplicaSpec) -> Result<Replica, RuntimeError> {
        self.inner.start(spec).await
    }

    async fn stop_replica(&self, id: &str, grace: Duration) -> Result<(), RuntimeError> {
        self.inner.stop(id, grace).await
    }
}

/// The output of `docker logs --timestamps` (or `docker service logs
/// --timestamps --raw`): both streams merged by their lines' timestamps
/// (RFC 3339 with nanoseconds sort as text), what came after the query's
/// cursor, at most its bytes from the end.
pub(crate) fn timestamped_output(
    stdout: &[u8],
    stderr: &[u8],
    query: &crate::LogQuery,
) -> crate::ReplicaOutput {
    let stdout = String::from_utf8_lossy(stdout);
    let stderr = String::from_utf8_lossy(stderr);
    let mut lines: Vec<&str> = stdout.lines().chain(stderr.lines()).collect();
    lines.sort_by(|a, b| a.split(' ').next().cmp(&b.split(' ').next()));
    // `--since` includes the line at the cursor; a follower saw it.
    if let Some(after) = &query.after {
        lines.retain(|l| l.split(' ').next().is_some_and(|t| t > after.as_str()));
    }
    let cursor = lines
        .last()
        .and_then(|l| l.split(' ').next())
        .map_or_else(|| query.after.clone().unwrap_or_default(), str::to_string);
    let mut text: String = lines
        .iter()
        .map(|l| format!("{}\n", l.split_once(' ').map_or(*l, |(_, rest)| rest)))
        .collect();
    let max = usize::try_from(query.max_bytes).unwrap_or(usize::MAX);
    if text.len() > max {
        let mut cut = text.len() - max;
        while !text.is_char_boundary(cut) {
            cut += 1;
        }
        text.drain(..cut);
    }
    crate::ReplicaOutput { text, cursor }
}

/// Polls container states until the runtime is dropped.
///
/// Each poll starts the docker CLI (tens of milliseconds of CPU), so the
/// watcher asks only when there is something to learn: while it watches
/// containers, or until docker has answered once (the containers of an
/// earlier gantry are adopted then). While docker does not answer, polls
/// back off up to 30 times the interval.
async fn watch(inner: Arc<Inner>) {
    let mut failures: u32 = 0;
    loop {
        let backoff = 1u32 << failures.min(5);
        tokio::time::sleep(inner.options.poll_interval * backoff.min(30)).await;
        if inner.table.lock().is_empty() && inner.available.load(Ordering::Relaxed) {
            continue;
        }
        match inner.poll().await {
            Ok(()) => failures = 0,
            Err(e) => {
                // Once per outage, not once per poll.
                if failures == 0 {
                    tracing::warn!(error = %e, "polling docker failed");
                }
                failures = failures.saturating_add(1);
            }
        }
    }
}

impl Inner {
    /// Runs `docker ARGS` with `env` added to the CLI's environment; its stdout.
    async fn docker(
        &self,
        args: &[String],
        env: &[(String, String)],
        timeout: Option<Duration>,
    ) -> Result<String, RuntimeError> {
        let program = &self.options.program;
        let command_line = format!("{} {}", program.display(), args.join(" "));
        let mut command = cli(&self.options);
        command
            .args(args)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let output = command.output();
        let output = match timeout {
            Some(limit) => match tokio::time::timeout(limit, output).await {
                Ok(output) => output,
                Err(_) => {
                    return Err(RuntimeError::Docker {
                        command: command_line,
                        stderr: format!("timed out after {limit:?}"),
                    });
                }
            },
            None => output.await,
        };
        let output = output.map_err(|e| RuntimeError::DockerUnavailable {
            reason: if e.kind() == std::io::ErrorKind::NotFound {
                format!("the docker CLI ({}) was not found", program.display())
            } else {
                format!("running {}: {e}", program.display())
            },
        })?;
        if output.status.success() {
            Ok(String::from_utf8_lossy(&output.stdout).into_owned())
        } else {
            Err(RuntimeError::Docker {
                command: command_line,
                stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
            })
        }
    }

    /// Fails with `DockerUnavailable` unless the CLI and the engine answer.
    async fn check_docker(&self) -> Result<(), RuntimeError> {
        if self.available.load(Ordering::Relaxed) {
            return Ok(());
        }
        let args = strings(["version", "--format", "{{.Server.Version}}"]);
        match self.docker(&args, &[], Some(Duration::from_secs(30))).await {
            Ok(_) => {
                self.available.store(true, Ordering::Relaxed);
                Ok(())
            }
            Err(RuntimeError::Docker { stderr, .. }) => {
                Err(RuntimeError::DockerUnavailable { reason: stderr })
            }
            Err(e) => Err(e),
        }
    }

    /// This runtime's containers and their states.
    async fn containers(&self) -> Result<Vec<ContainerStatus>, RuntimeError> {
        let args = vec![
            "ps".to_owned(),
            "-a".to_owned(),
            "--no-trunc".to_owned(),
            "--filter".to_owned(),
            format!("label={LABEL_OWNER}={}", self.options.owner),
            "--format".to_owned(),
            "{{json .}}".to_owned(),
        ];
        let out = self.docker(&args, &[], Some(COMMAND_TIMEOUT)).await?;
        Ok(out.lines().filter_map(parse_ps_line).collect())
    }

    /// The exit code of the replica's container, from its structured state;
    /// `None` unless it has exited (or when docker cannot say).
    async fn exit_code(&self, id: &str) -> Option<i32> {
        let args = strings([
            "inspect",
            "--format",
            "{{json .State}}",
            &container_name(id),
        ]);
        match self.docker(&args, &[], Some(COMMAND_TIMEOUT)).await {
            Ok(out) => parse_exit_code(&out),
            Err(e) => {
                tracing::debug!(replica = %id, error = %e, "cannot read a container's exit code");
                None
            }
        }
    }

    /// One look at the containers: restarts exited ones, adopts running ones no
    /// slot knows, removes dead ones no slot knows.
    async fn poll(self: &Arc<Self>) -> Result<(), RuntimeError> {
        let containers = self.containers().await?;
        self.available.store(true, Ordering::Relaxed);
        let mut unknown = Vec::new();
        {
            let mut slots = self.table.lock();
            let by_id: HashMap<&str, &ContainerStatus> =
                containers.iter().map(|c| (c.replica.as_str(), c)).collect();
            for (id, slot) in slots.iter_mut() {
                let quiet = slot.stopping
                    || slot.task.is_some()
                    || slot.replica.state != ReplicaState::Running;
                if quiet {
                    continue;
                }
                let exited = match by_id.get(id.as_str()) {
                    Some(status) if status.is_running() => continue,
                    Some(_) => true,
                    // Removed behind gantry's back: it is re-created.
                    None => false,
                };
                let task = tokio::spawn(restart(self.clone(), id.clone(), slot.token, exited));
                slot.task = Some(task.abort_handle());
            }
            for container in &containers {
                if !slots.contains_key(&container.replica) {
                    unknown.push(container.clone());
                }
            }
        }
        for container in unknown {
            self.adopt(&container).await;
        }
        Ok(())
    }

    /// Takes over a running container of this owner that no slot knows; removes a
    /// dead one, reporting it as exited.
    async fn adopt(&self, container: &ContainerStatus) {
        let id = &container.replica;
        let name = container_name(id);
        if !container.is_running() {
            tracing::info!(replica = %id, "removing a dead replica container");
            let code = self.exit_code(id).await;
            if let Err(e) = self
                .docker(&strings(["rm", "-f", &name]), &[], Some(COMMAND_TIMEOUT))
                .await
            {
                tracing::warn!(replica = %id, error = %e, "could not remove a dead replica container");
                return;
            }
            self.table.emit(ReplicaEvent::Exited {
                id: id.clone(),
                code,
                signal: None,
            });
            return;
        }
        let replica = match self.inspect_replica(&name).await {
            Ok(replica) => replica,
            Err(e) => {
                tracing::warn!(replica = %id, error = %e, "cannot adopt a replica container");
                return;
            }
        };
        let addr = replica.addr;
        if self.table.adopt(replica, (), |_| None) {
            tracing::info!(replica = %id, %addr, "adopted a running replica container");
        }
    }

    /// Rebuilds a replica from its container's labels and environment.
    async fn inspect_replica(&self, name: &str) -> Result<Replica, String> {
        let args = strings(["inspect", "--format", "{{json .Config}}", name]);
        let out = self
            .docker(&args, &[], Some(COMMAND_TIMEOUT))
            .await
            .map_err(|e| e.to_string())?;
        let config: InspectConfig =
            serde_json::from_str(out.trim()).map_err(|e| format!("docker inspect: {e}"))?;
        let labels = config.labels.unwrap_or_default();
        let spec_label: SpecLabel =
            serde_json::from_str(labels.get(LABEL_SPEC).ok_or("no spec label")?)
                .map_err(|e| format!("spec label: {e}"))?;
        let port: u16 = labels
            .get(LABEL_HOST_PORT)
            .ok_or("no host-port label")?
            .parse()
            .map_err(|e| format!("host-port label: {e}"))?;
        let container_env = config.env.unwrap_or_default();
        let mut spec = spec_label.spec;
        spec.env = spec_label
            .env_names
            .iter()
            .filter_map(|name| {
                let prefix = format!("{name}=");
                container_env
                    .iter()
                    .rev()
                    .find_map(|var| var.strip_prefix(prefix.as_str()))
                    .map(|value| (name.clone(), value.to_owned()))
            })
            .collect();
        Ok(Replica {
            id: spec.id.clone(),
            addr: loopback(port),
            spec,
            state: ReplicaState::Running,
            restarts: 0,
            last_exit: None,
        })
    }

    async fn start(&self, spec: ReplicaSpec) -> Result<Replica, RuntimeError> {
        spec.validate()?;
        self.check_docker().await?;
        // Frees the id if the start fails or its future is dropped midway; a
        // container created before that is adopted by the watcher.
        let reservation = self.table.reserve(&spec, Port::Later)?;
        let replica = self.first_start(&spec, reservation.token()).await?;
        reservation.keep();
        Ok(replica)
    }

    async fn first_start(&self, spec: &ReplicaSpec, token: u64) -> Result<Replica, RuntimeError> {
        self.pull(spec).await?;
        let port = self.run_on_free_port(spec).await?;
        let started = self.table.started(&spec.id, token, |slot| {
            slot.replica.addr = loopback(port);
            Ok::<_, Infallible>(slot.replica.clone())
        });
        match started {
            Some(Ok(replica)) => Ok(replica),
            Some(Err(never)) => match never {},
            None => {
                // Stopped meanwhile: the stop could not see the container yet.
                let name = container_name(&spec.id);
                let _ = self
                    .docker(&strings(["rm", "-f", &name]), &[], Some(COMMAND_TIMEOUT))
                    .await;
                Err(RuntimeError::StoppedWhileStarting {
                    id: spec.id.clone(),
                })
            }
        }
    }

    /// Pulls the image unless the engine has it (a digest names one image for good).
    async fn pull(&self, spec: &ReplicaSpec) -> Result<(), RuntimeError> {
        let image = spec.image.to_string();
        if spec.image.digest().is_some()
            && self
                .docker(
                    &strings(["image", "inspect", "--format", "{{.Id}}", &image]),
                    &[],
                    Some(COMMAND_TIMEOUT),
                )
                .await
                .is_ok()
        {
            return Ok(());
        }
        match self
            .docker(&strings(["pull", "-q", &image]), &[], None)
            .await
        {
            Ok(_) => Ok(()),
            Err(RuntimeError::Docker { stderr, .. }) => Err(RuntimeError::ImagePull {
                image,
                reason: stderr,
            }),
            Err(e) => Err(e),
        }
    }

    /// `docker run` on a free host port, trying another if it was taken meanwhile.
    async fn run_on_free_port(&self, spec: &ReplicaSpec) -> Result<u16, RuntimeError> {
        for _ in 0..PORT_TRIES {
            let port = self
                .table
                .free_port()
                .map_err(|reason| RuntimeError::PortUnavailable {
                    id: spec.id.clone(),
                    reason,
                })?;
            match self.run(spec, port).await {
                Ok(()) => return Ok(port),
                Err(RunError::PortTaken) => continue,
                Err(RunError::Other(e)) => return Err(e),
            }
        }
        Err(RuntimeError::PortUnavailable {
            id: spec.id.clone(),
            reason: format!("{PORT_TRIES} host ports were taken before docker could publish them"),
        })
    }

    async fn run(&self, spec: &ReplicaSpec, host_port: u16) -> Result<(), RunError> {
        let run = run_args(spec, &self.options.owner, host_port).map_err(RunError::Other)?;
        let result = self
            .docker(&run.args, &run.env, Some(COMMAND_TIMEOUT))
            .await;
        let Err(error) = result else {
            return Ok(());
        };
        // A failed run may leave the container created but not started.
        let name = container_name(&spec.id);
        let _ = self
            .docker(&strings(["rm", "-f", &name]), &[], Some(COMMAND_TIMEOUT))
            .await;
        match &error {
            RuntimeError::Docker { stderr, .. } if is_port_conflict(stderr) => {
                Err(RunError::PortTaken)
            }
            RuntimeError::Docker { stderr, .. } if is_missing_program(stderr) => {
                Err(RunError::Other(RuntimeError::Spawn {
                    id: spec.id.clone(),
                    program: spec
                        .command
                        .as_ref()
                        .and_then(|c| c.first().cloned())
                        .unwrap_or_else(|| "the image's entrypoint".to_owned()),
                    reason: stderr.clone(),
                }))
            }
            _ => Err(RunError::Other(error)),
        }
    }

    /// Starts an exited container again (or re-creates a removed one).
    async fn start_again(&self, spec: &ReplicaSpec, host_port: u16) -> Result<(), RuntimeError> {
        let name = container_name(&spec.id);
        match self
            .docker(&strings(["start", &name]), &[], Some(COMMAND_TIMEOUT))
            .await
        {
            Ok(_) => Ok(()),
            Err(RuntimeError::Docker { stderr, .. }) if is_no_such_container(&stderr) => {
                match self.run(spec, host_port).await {
                    Ok(()) => Ok(()),
                    Err(RunError::PortTaken) => Err(RuntimeError::PortUnavailable {
                        id: spec.id.clone(),
                        reason: format!("host port {host_port} is taken"),
                    }),
                    Err(RunError::Other(e)) => Err(e),
                }
            }
            Err(e) => Err(e),
        }
    }

    async fn stop(&self, id: &str, grace: Duration) -> Result<(), RuntimeError> {
        let Some(stopping) = self.table.begin_stop(id) else {
            return Ok(());
        };
        // A restart under way would start the container again.
        if let Some(task) = stopping.task {
            task.abort();
        }
        let name = container_name(id);
        // `docker stop` counts whole seconds; rounding up never cuts the grace short.
        let seconds = grace.as_secs() + u64::from(grace.subsec_nanos() > 0);
        let stop_args = strings(["stop", "-t", &seconds.to_string(), &name]);
        match self
            .docker(&stop_args, &[], Some(grace + COMMAND_TIMEOUT))
            .await
        {
            Ok(_) => {}
            Err(RuntimeError::Docker { stderr, .. }) if is_no_such_container(&stderr) => {}
            // `rm -f` below kills it anyway.
            Err(e) => tracing::warn!(replica = %id, error = %e, "docker stop failed"),
        }
        match self
            .docker(&strings(["rm", "-f", &name]), &[], Some(COMMAND_TIMEOUT))
            .await
        {
            Ok(_) => {}
            Err(RuntimeError::Docker { stderr, .. }) if is_no_such_container(&stderr) => {}
            // The slot stays (stopping), so stopping again retries.
            Err(e) => return Err(e),
        }
        self.table.forget(id, stopping.token, || {});
        Ok(())
    }
}

/// Reports an exited container and starts it again after the backoff, until a
/// start succeeds or the replica is stopped.
/// `exited`: the container is there, exited (not removed).
async fn restart(inner: Arc<Inner>, id: String, token: u64, exited: bool) {
    let mut code = match exited {
        true => inner.exit_code(&id).await,
        false => None,
    };
    let policy = &inner.options.restart;
    loop {
        let exit = (code, None);
        let Some(delay) = inner.table.exited(&id, token, exit, policy, |_| {}) else {
            return;
        };
        tokio::time::sleep(delay).await;
        let Some((spec, port)) = inner.table.live(&id, token, |s| {
            (s.replica.spec.clone(), s.replica.addr.port())
        }) else {
            return;
        };
        let result = inner.start_again(&spec, port).await;
        let restarted = inner.table.restarted(&id, token, |slot| {
            if result.is_ok() {
                // Done: the watcher looks after the container again.
                slot.task = None;
            }
            result
        });
        match restarted {
            Some(Ok(())) | None => return,
            Some(Err(e)) => {
                tracing::warn!(replica = %id, error = %e, "restarting a replica container failed");
                code = None;
            }
        }
    }
}

/// A `docker run` command line.
struct RunCommand {
    args: Vec<String>,
    /// Values for the `-e NAME` arguments, set in the CLI's own environment.
    env: Vec<(String, String)>,
}

/// The `docker run` command for `spec`.
fn run_args(spec: &ReplicaSpec, owner: &str, host_port: u16) -> Result<RunCommand, RuntimeError> {
    let mut label_spec = spec.clone();
    let env_names: Vec<String> = spec
        .env
        .iter()
        .map(|(name, _)| name.clone())
        .filter(|name| passed_on(name))
        .collect();
    label_spec.env = Vec::new();
    let spec_json = serde_json::to_string(&SpecLabel {
        spec: label_spec,
        env_names,
    })
    .map_err(|e| RuntimeError::InvalidSpec {
        id: spec.id.clone(),
        reason: format!("encoding the spec label: {e}"),
    })?;
    let digest = spec
        .image
        .digest()
        .map(|d| d.to_string())
        .unwrap_or_default();
    let mut args = strings(["run", "-d", "--name"]);
    args.push(container_name(&spec.id));
    let mut labels = vec![
        (LABEL_OWNER.to_owned(), owner.to_owned()),
        ("gantry.environment".to_owned(), spec.environment.clone()),
        ("gantry.service".to_owned(), spec.service.clone()),
        ("gantry.revision".to_owned(), spec.revision.to_string()),
        (LABEL_REPLICA.to_owned(), spec.id.clone()),
        ("gantry.digest".to_owned(), digest),
        (LABEL_HOST_PORT.to_owned(), host_port.to_string()),
        (LABEL_SPEC.to_owned(), spec_json),
    ];
    // The caller's labels cannot impersonate gantry's own.
    labels.extend(
        spec.labels
            .iter()
            .filter(|(key, _)| !key.starts_with("gantry."))
            .map(|(k, v)| (k.clone(), v.clone())),
    );
    for (key, value) in labels {
        args.push("--label".to_owned());
        args.push(format!("{key}={value}"));
    }
    // With the host's network the replica listens on its host port itself;
    // otherwise docker publishes the service's port there, on loopback only.
    let container_port = if spec.host_network {
        args.push("--network".to_owned());
        args.push("host".to_owned());
        host_port
    } else {
        args.push("-p".to_owned());
        args.push(format!("127.0.0.1:{host_port}:{}", spec.port));
        spec.port
    };
    if let Some(user) = spec.user() {
        args.push("--user".to_owned());
        args.push(user.to_owned());
    }
    let mut cli_env = Vec::new();
    for (name, value) in &spec.env {
        if !passed_on(name) {
            continue;
        }
        args.push("-e".to_owned());
        if name == "PATH" || name == "HOME" || name.starts_with("DOCKER_") {
            // These steer the docker CLI itself, so they cannot travel in its environment.
            args.push(format!("{name}={value}"));
        } else {
            args.push(name.clone());
            cli_env.push((name.clone(), value.clone()));
        }
    }
    // Last, so it wins over a PORT in the spec's environment, as in the process runtime.
    args.push("-e".to_owned());
    args.push(format!("PORT={container_port}"));
    if let Some(memory) = spec.memory {
        args.push("--memory".to_owned());
        args.push(memory.to_string());
    }
    if let Some(cpus) = spec.cpus {
        args.push("--cpus".to_owned());
        args.push(cpus.to_string());
    }
    let command_args = match spec.command.as_deref() {
        Some([program, rest @ ..]) => {
            // `--entrypoint` also clears the image's cmd, so the command replaces both.
            args.push("--entrypoint".to_owned());
            args.push(program.clone());
            rest.to_vec()
        }
        _ => Vec::new(),
    };
    args.push(spec.image.to_string());
    args.extend(command_args);
    Ok(RunCommand { args, env: cli_env })
}

/// Whether a spec's variable goes into the container: not `PORT` (the
/// runtime's), not `GANTRY_OWNER`, and never the server's secrets, as in the
/// process runtime.
pub(crate) fn passed_on(name: &str) -> bool {
    !matches!(
        name,
        OWNER_ENV | "PORT" | "GANTRY_MASTER_KEY" | "GANTRY_TOKEN"
    )
}

/// One of this runtime's containers from a `docker ps` JSON line; `None` for a
/// line that is not JSON or a container not named `gantry-<id>`.
fn parse_ps_line(line: &str) -> Option<ContainerStatus> {
    let line: PsLine = match serde_json::from_str(line) {
        Ok(line) => line,
        Err(e) => {
            tracing::warn!(error = %e, %line, "cannot read a line of docker ps");
            return None;
        }
    };
    let replica = line
        .names
        .split(',')
        .find_map(|name| name.trim_start_matches('/').strip_prefix(NAME_PREFIX))
        .filter(|id| !id.is_empty())?;
    Some(ContainerStatus {
        replica: replica.to_owned(),
        state: line.state,
    })
}

/// The exit code in `docker inspect`'s JSON `State`, if the container exited.
fn parse_exit_code(state: &str) -> Option<i32> {
    let state: InspectState = serde_json::from_str(state.trim()).ok()?;
    // A container that never ran (`created`) has ExitCode 0 too.
    matches!(state.status.as_str(), "exited" | "dead").then_some(state.exit_code)
}

pub(crate) fn is_port_conflict(stderr: &str) -> bool {
    stderr.contains("port is already allocated") || stderr.contains("address already in use")
}

fn is_missing_program(stderr: &str) -> bool {
    (stderr.contains("OCI runtime") || stderr.contains("exec:"))
        && (stderr.contains("executable file not found")
            || stderr.contains("no such file or directory"))
}

fn is_no_such_container(stderr: &str) -> bool {
    stderr.contains("No such container")
}

fn container_name(id: &str) -> String {
    format!("{NAME_PREFIX}{id}")
}

pub(crate) fn strings<const N: usize>(items: [&str; N]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

/// `docker logs` arguments for a replica: the last 10,000 lines, or what
/// came after a cursor or a time. The cursor comes from an API caller: it
/// is one `--since=VALUE` argument, so a value starting with `-` is no flag.
fn logs_args(id: &str, query: &crate::LogQuery) -> Vec<String> {
    let mut args = strings(["logs", "--timestamps", "--tail", "10000"]);
    args.extend(since_arg(query));
    args.push(container_name(id));
    args
}

/// The one `--since=VALUE` argument of `docker logs` and `docker service
/// logs`: after a cursor, or from a time (seconds.millis); none without.
pub(crate) fn since_arg(query: &crate::LogQuery) -> Option<String> {
    let since = match (&query.after, query.since_ms) {
        (Some(after), _) => after.clone(),
        (None, Some(ms)) => format!("{}.{:03}", ms.div_euclid(1000), ms.rem_euclid(1000)),
        (None, None) => return None,
    };
    Some(format!("--since={since}"))
}

/// The docker CLI with the options' config dir (the registries'
/// credentials), for a command the caller completes.
pub(crate) fn cli(options: &DockerOptions) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(&options.program);
    if let Some(dir) = &options.config_dir {
        command.arg("--config").arg(dir);
    }
    command
}

#[cfg(test)]
mod tests {

    #[test]
    fn a_logs_cursor_is_one_argument_never_a_flag() {
        let query = crate::LogQuery {
            since_ms: None,
            after: Some("--privileged".into()),
            max_bytes: 1,
        };
        let args = logs_args("r1", &query);
        assert!(
            args.contains(&"--since=--privileged".to_string()),
            "{args:?}"
        );
        assert!(!args.contains(&"--privileged".to_string()), "{args:?}");
        assert_eq!(
            args.last().map(String::as_str),
            Some(container_name("r1").as_str())
        );
    }
    use super::*;
    use crate::replica::tests::spec;

    #[test]
    fn ps_json_lines_give_replica_and_state_and_inspect_gives_the_exit_code() {
        // As docker 20.10 prints them; the spec label's commas are why
        // `Labels` is not read.
        let exited = r#"{"Command":"\"sh -c 'exit 3'\"","ID":"5311","Labels":"gantry.owner=o,gantry.replica=r1,gantry.spec={\"a\":1,\"b\":2}","Names":"gantry-r1","State":"exited","Status":"Exited (3) 1 second ago"}"#;
        assert_eq!(
            parse_ps_line(exited),
            Some(ContainerStatus {
                replica: "r1".into(),
                state: "exited".into(),
            })
        );
        let running =
            parse_ps_line(r#"{"Names":"gantry-r2","State":"running","Status":"Up 5 seconds"}"#)
                .unwrap();
        assert!(running.is_running());
        assert_eq!(
            parse_ps_line(r#"{"Names":"other","State":"running"}"#),
            None
        );
        assert_eq!(
            parse_ps_line(r#"{"Names":"gantry-","State":"running"}"#),
            None
        );
        assert_eq!(parse_ps_line("r2\trunning\tUp 5 seconds"), None);

        let state = r#"{"Status":"exited","Running":false,"Paused":false,"Restarting":false,"OOMKilled":false,"Dead":false,"Pid":0,"ExitCode":3,"Error":"","StartedAt":"2026-12-04T18:09:38.344514002Z","FinishedAt":"2026-12-04T18:09:38.350653243Z"}"#;
        assert_eq!(parse_exit_code(&format!("{state}\n")), Some(3));
        let created = r#"{"Status":"created","ExitCode":0}"#;
        assert_eq!(parse_exit_code(created), None);
        assert_eq!(parse_exit_code("Exited (3)"), None);
    }

    #[test]
    fn run_arguments_carry_labels_port_limits_and_keep_env_values_out_of_argv() {
        let mut s = spec("r1");
        s.env = vec![
            ("SECRET".into(), "hunter2".into()),
            ("PATH".into(), "/app:/bin".into()),
            (OWNER_ENV.into(), "/data".into()),
        ];
        s.memory = Some(64 * 1024 * 1024);
        s.cpus = Some(0.5);
        s.command = Some(vec!["/app/busybox".into(), "httpd".into(), "-f".into()]);
        s.labels.insert("team".into(), "core".into());
        s.labels.insert("gantry.replica".into(), "spoof".into());
        let run = run_args(&s, "/data", 40000).unwrap();
        let line = run.args.join(" ");
        assert!(line.starts_with("run -d --name gantry-r1 "), "{line}");
        for expected in [
            "--label gantry.owner=/data",
            "--label gantry.environment=staging",
            "--label gantry.service=web",
            "--label gantry.revision=1",
            "--label gantry.replica=r1",
            "--label gantry.host-port=40000",
            "--label team=core",
            "-p 127.0.0.1:40000:8080",
            "-e SECRET ",
            "-e PATH=/app:/bin",
            "-e PORT=8080",
            "--memory 67108864",
            "--cpus 0.5",
            "--entrypoint /app/busybox",
        ] {
            assert!(line.contains(expected), "{expected} missing in {line}");
        }
        assert!(line.ends_with(&format!("{} httpd -f", s.image)), "{line}");
        assert!(!line.contains("hunter2"), "secret values stay out of argv");
        assert!(!line.contains("--label gantry.replica=spoof"));
        assert!(!line.contains(OWNER_ENV));
        assert_eq!(run.env, vec![("SECRET".to_owned(), "hunter2".to_owned())]);
        assert!(!line.contains("--user"), "the image's user by default");
    }

    #[test]
    fn a_user_runs_the_container_as_that_user_and_server_secrets_stay_out() {
        let mut s = spec("r1").with_user(Some("65534:65534".into()));
        s.env = vec![
            ("GANTRY_MASTER_KEY".into(), "k".into()),
            ("GANTRY_TOKEN".into(), "t".into()),
        ];
        let run = run_args(&s, "/data", 40000).unwrap();
        let line = run.args.join(" ");
        assert!(line.contains("--user 65534:65534"), "{line}");
        assert!(!line.contains("GANTRY_MASTER_KEY") && !line.contains("GANTRY_TOKEN"));
        assert!(run.env.is_empty());
    }

    #[test]
    fn docker_error_texts_are_classified() {
        assert!(is_port_conflict(
            "Bind for 127.0.0.1:4000 failed: port is already allocated"
        ));
        assert!(is_missing_program(
            "OCI runtime create failed: runc create failed: exec: \"/nope\": stat /nope: no such file or directory: unknown"
        ));
        assert!(is_no_such_container(
            "Error response from daemon: No such container: gantry-x"
        ));
    }
}
