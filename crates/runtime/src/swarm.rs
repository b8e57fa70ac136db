//! The `swarm` runtime: each replica is a Docker Swarm service with exactly
//! one task, driven through the docker CLI of a swarm manager.
//!
//! gantry's deployer keeps doing what it does on the other runtimes — rolling
//! replacements, health checks through its load balancer, the circuit
//! breaker, rollback, canary weights — one replica at a time, so Swarm's own
//! update and rollback machinery is not used: a gantry replica is the service
//! `gantry-<replica id>` with `--replicas 1`, and a new revision is a new
//! service, not a `docker service update`. What Swarm adds is the placement,
//! the pull on the node (`--with-registry-auth`) and restarting a dead task
//! (`--restart-condition any`, a bounded number of times in a window; past
//! that, gantry forces a new task after its longest backoff).
//!
//! The task publishes the service's port in host mode on a host port gantry
//! picks (`--publish mode=host,...`; the ingress routing mesh is not used, it
//! needs IPVS), and its tasks are placed on the manager gantry talks to
//! (`--constraint node.id==...`), so the load balancer reaches them on
//! `127.0.0.1`. Environment values (secrets included) go into the service
//! spec through an env file that holds only their names: the CLI reads the
//! values from its own environment, so they are never in an argument or on
//! disk. State is read from `docker service ls` / `docker service ps` as JSON
//! lines (`--format '{{json .}}'`), every call is bounded in time and output.

use std::collections::{BTreeSet, HashMap};
use std::convert::Infallible;
use std::io::Write as _;
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde::Deserialize;
use tokio::io::AsyncReadExt;

use crate::docker::{DockerOptions, SpecLabel, passed_on, strings, timestamped_output};
use crate::error::RuntimeError;
use crate::replica::{Replica, ReplicaSpec, ReplicaState};
use crate::restart::RestartPolicy;
use crate::table::{Driver, Port, ReplicaTable, loopback};

/// What the error of an engine outside any swarm says.
const NOT_IN_SWARM: &str = "not part of a swarm";
/// Services are named `gantry-<replica id>`.
const NAME_PREFIX: &str = "gantry-";
const LABEL_OWNER: &str = "gantry.owner";
const LABEL_REPLICA: &str = "gantry.replica";
const LABEL_SPEC: &str = "gantry.spec";
const LABEL_HOST_PORT: &str = "gantry.host-port";
/// The label Swarm puts on a task's container, naming its service.
const LABEL_SWARM_SERVICE: &str = "com.docker.swarm.service.name";
/// How long a docker command may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a start waits for its task to run (a pull of a large image
/// takes that long; a task Swarm rejects fails the start at once).
const START_TIMEOUT: Duration = Duration::from_secs(300);
/// How long a task may stay pending with an error (no node fits) before the
/// start fails with that error.
const PENDING_LIMIT: Duration = Duration::from_secs(10);
/// How often a start looks at its task.
const START_POLL: Duration = Duration::from_millis(100);
/// The most a docker command's stdout is read; the rest is discarded.
const MAX_STDOUT: u64 = 16 * 1024 * 1024;
/// The most of its stderr kept for an error.
const MAX_STDERR: u64 = 64 * 1024;
/// Swarm restarts a dead task at most this many times within
/// [`RESTART_WINDOW`]; then gantry forces a new task after its backoff.
const RESTART_MAX_ATTEMPTS: u32 = 5;
const RESTART_WINDOW: Duration = Duration::from_secs(60);
/// How long Swarm waits after SIGTERM; `stop` kills earlier when its grace is shorter.
const STOP_GRACE: Duration = Duration::from_secs(30);

/// Runs replicas as Docker Swarm services (one task each), through the
/// docker CLI of a swarm manager. Options are the docker runtime's
/// ([`DockerOptions`]): the same owner label, config dir (registry
/// credentials, passed on with `--with-registry-auth`) and polling.
///
/// A replica is the service `gantry-<id>`, labelled as the docker runtime's
/// containers are (owner, environment, service, revision, replica, digest,
/// host port, spec without environment values). The task's containers carry
/// no gantry label, so the docker runtime never mistakes them for its own.
///
/// Swarm restarts a task that dies; a watcher polls the services' tasks every
/// second and reports each dead task as `Exited` (with its exit code) and
/// `Restarting`, and its successor as `Started`, so the deploy circuit
/// breaker sees the same events as on the other runtimes. Services outlive
/// gantry: a new runtime with the same owner adopts those Swarm still runs
/// and removes (reporting them as exited) those it gave up on.
pub struct SwarmRuntime {
    inner: Arc<Inner>,
}

struct Inner {
    options: DockerOptions,
    table: ReplicaTable<Tasks>,
    /// Whether the engine answered as an active swarm manager (its node id).
    node: std::sync::Mutex<Option<String>>,
    /// Whether the watcher should poll: once a replica started, or adoption was asked for.
    watching: AtomicBool,
    /// Whether a poll has succeeded once (services of an earlier gantry adopted).
    adopted: AtomicBool,
}

/// What the runtime remembers about a replica's tasks.
#[derive(Debug, Clone, Default)]
pub(crate) struct Tasks {
    /// Dead tasks already reported (or that died before this runtime knew them).
    seen: BTreeSet<String>,
}

/// A line of `docker service ls --format '{{json .}}'`.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ServiceLine {
    name: String,
}

/// A line of `docker service ps --no-trunc --format '{{json .}}'`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct TaskLine {
    #[serde(rename = "ID")]
    id: String,
    /// `gantry-<id>.1`.
    name: String,
    desired_state: String,
    /// `Running 3 seconds ago`: the state, then how long ago.
    current_state: String,
    #[serde(default)]
    error: String,
}

/// A task, as far as gantry reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Task {
    id: String,
    replica: String,
    /// Swarm's task state, lower case: `new`, `pending`, `assigned`,
    /// `accepted`, `preparing`, `ready`, `starting`, `running`, `complete`,
    /// `shutdown`, `failed`, `rejected`, `remove`, `orphaned`.
    state: String,
    /// What Swarm wants: `running`, `ready` (a restart waits out its delay) or `shutdown`.
    desired: String,
    /// Swarm's error for the task, without its quotes.
    error: String,
}

impl Task {
    fn is_running(&self) -> bool {
        self.state == "running"
    }

    fn is_dead(&self) -> bool {
        matches!(
            self.state.as_str(),
            "complete" | "shutdown" | "failed" | "rejected" | "remove" | "orphaned"
        )
    }

    /// Swarm still runs or restarts this slot.
    fn is_wanted(&self) -> bool {
        matches!(self.desired.as_str(), "running" | "ready")
    }

    /// The exit code of a task whose container ran and exited.
    fn exit_code(&self) -> Option<i32> {
        if self.state == "complete" {
            return Some(0);
        }
        let rest = self.error.split("non-zero exit (").nth(1)?;
        rest.split(')').next()?.trim().parse().ok()
    }
}

/// The fields of `docker service inspect --format '{{json .Spec}}'` read on adoption.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ServiceSpec {
    #[serde(default)]
    labels: Option<HashMap<String, String>>,
    task_template: TaskTemplate,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct TaskTemplate {
    container_spec: ContainerSpec,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ContainerSpec {
    #[serde(default)]
    env: Option<Vec<String>>,
}

/// What `docker info --format '{{json .Swarm}}'` says of the swarm.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SwarmInfo {
    #[serde(rename = "NodeID", default)]
    node_id: String,
    #[serde(default)]
    local_node_state: String,
    #[serde(default)]
    control_available: bool,
}

/// One change the watcher applies to a slot, outside the lock.
enum Change {
    Exited {
        code: Option<i32>,
    },
    Restarted,
    /// The service is gone (removed behind gantry's back): create it again.
    Recreate,
    /// Swarm gave up restarting: force a new task after the backoff.
    Revive,
}

impl SwarmRuntime {
    /// A runtime with the docker runtime's options. With
    /// [`DockerOptions::adopt_at_start`] it adopts the services of its owner
    /// before returning (when the swarm answers); otherwise it makes no docker
    /// call until a replica is started. An uninitialised swarm is not an error
    /// here: `start` reports it.
    pub async fn new(options: DockerOptions) -> Result<SwarmRuntime, RuntimeError> {
        let adopt = options.adopt_at_start;
        let inner = Arc::new(Inner {
            options,
            table: ReplicaTable::new(),
            node: std::sync::Mutex::new(None),
            watching: AtomicBool::new(adopt),
            adopted: AtomicBool::new(false),
        });
        // An engine not in a swarm has no services to adopt; a start says why.
        let in_swarm = !adopt
            || match inner.node().await {
                Err(RuntimeError::DockerUnavailable { reason })
                    if reason.contains(NOT_IN_SWARM) =>
                {
                    inner.adopted.store(true, Ordering::Relaxed);
                    inner.watching.store(false, Ordering::Relaxed);
                    false
                }
                _ => true,
            };
        if adopt
            && in_swarm
            && let Err(e) = inner.poll().await
        {
            tracing::warn!(error = %e, "the swarm did not answer; its services are adopted once it does");
        }
        let watcher = tokio::spawn(watch(inner.clone())).abort_handle();
        inner.table.add_watcher(watcher);
        Ok(SwarmRuntime { inner })
    }
}

impl Drop for SwarmRuntime {
    fn drop(&mut self) {
        self.inner.table.abort_tasks();
    }
}

impl Driver for SwarmRuntime {
    type Handle = Tasks;
    const KIND: &'static str = "swarm";

    fn table(&self) -> &ReplicaTable<Tasks> {
        &self.inner.table
    }

    /// `docker service logs --timestamps --raw`: every task's output, the
    /// dead ones' included.
    async fn replica_logs(
        &self,
        id: &str,
        query: crate::LogQuery,
    ) -> Result<crate::ReplicaOutput, RuntimeError> {
        let args = logs_args(id, &query);
        let output = self.inner.run(&args, &[], None, COMMAND_TIMEOUT).await?;
        if !output.success {
            return Err(output.error(&self.inner.options.program, &args));
        }
        Ok(timestamped_output(&output.stdout, &output.stderr, &query))
    }

    async fn start_replica(&self, spec: ReplicaSpec) -> Result<Replica, RuntimeError> {
        self.inner.start(spec).await
    }

    /// `docker exec` in the running container of the replica's one task.
    async fn exec_in(
        &self,
        id: &str,
        argv: &[String],
        timeout: Duration,
    ) -> Result<crate::ExecOutput, String> {
        if self.inner.table.lock().get(id).is_none() {
            return Err(format!("replica {id} is not running"));
        }
        let args = strings([
            "ps",
            "--quiet",
            "--filter",
            &format!("label=com.docker.swarm.service.name={}", service_name(id)),
            "--filter",
            "status=running",
        ]);
        let found = self
            .inner
            .run(&args, &[], None, COMMAND_TIMEOUT)
            .await
            .map_err(|e| e.to_string())?;
        let container = found
            .stdout()
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty())
            .map(str::to_owned)
            .ok_or_else(|| format!("replica {id} has no running task"))?;
        let mut command = crate::docker::cli(&self.inner.options);
        command.arg("exec").arg(container).args(argv);
        crate::exec::run(command, timeout).await
    }

    async fn stop_replica(&self, id: &str, grace: Duration) -> Result<(), RuntimeError> {
        self.inner.stop(id, grace).await
    }
}

/// Polls the services' tasks until the runtime is dropped, while there is
/// something to learn (replicas to watch, or an adoption not yet done).
async fn watch(inner: Arc<Inner>) {
    let mut failures: u32 = 0;
    loop {
        let backoff = 1u32 << failures.min(5);
        tokio::time::sleep(inner.options.poll_interval * backoff.min(30)).await;
        let idle = inner.table.lock().is_empty() && inner.adopted.load(Ordering::Relaxed);
        if idle || !inner.watching.load(Ordering::Relaxed) {
            continue;
        }
        match inner.poll().await {
            Ok(()) => failures = 0,
            Err(e) => {
                if failures == 0 {
                    tracing::warn!(error = %e, "polling the swarm failed");
                }
                failures = failures.saturating_add(1);
            }
        }
    }
}

/// A finished docker command.
struct Output {
    success: bool,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
}

impl Output {
    fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.stderr).trim().to_owned()
    }

    fn error(&self, program: &Path, args: &[String]) -> RuntimeError {
        RuntimeError::Docker {
            command: format!("{} {}", program.display(), args.join(" ")),
            stderr: self.stderr(),
        }
    }
}

/// Reads at most `limit` bytes of `from`, then discards the rest (so the
/// program never blocks on a full pipe).
async fn read_bounded(from: Option<impl tokio::io::AsyncRead + Unpin>, limit: u64) -> Vec<u8> {
    let mut bytes = Vec::new();
    if let Some(mut from) = from {
        let _ = (&mut from).take(limit).read_to_end(&mut bytes).await;
        let _ = tokio::io::copy(&mut from, &mut tokio::io::sink()).await;
    }
    bytes
}

impl Inner {
    /// Runs `docker ARGS` with `env` added to the CLI's own environment.
    async fn run(
        &self,
        args: &[String],
        env: &[(String, String)],
        env_file: Option<&Path>,
        timeout: Duration,
    ) -> Result<Output, RuntimeError> {
        let program = &self.options.program;
        let mut command = crate::docker::cli(&self.options);
        // The env file goes right after the subcommand's words.
        match env_file {
            Some(file) => {
                let split = args.len().min(2);
                command.args(&args[..split]);
                command.arg("--env-file").arg(file);
                command.args(&args[split..]);
            }
            None => {
                command.args(args);
            }
        }
        command
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = command
            .spawn()
            .map_err(|e| RuntimeError::DockerUnavailable {
                reason: if e.kind() == std::io::ErrorKind::NotFound {
                    format!("the docker CLI ({}) was not found", program.display())
                } else {
                    format!("running {}: {e}", program.display())
                },
            })?;
        let stdout = child.stdout.take();
        let stderr = child.stderr.take();
        let finished = async {
            let (stdout, stderr) = tokio::join!(
                read_bounded(stdout, MAX_STDOUT),
                read_bounded(stderr, MAX_STDERR)
            );
            (child.wait().await, stdout, stderr)
        };
        match tokio::time::timeout(timeout, finished).await {
            Ok((status, stdout, stderr)) => {
                let status = status.map_err(|e| RuntimeError::DockerUnavailable {
                    reason: format!("running {}: {e}", program.display()),
                })?;
                Ok(Output {
                    success: status.success(),
                    stdout,
                    stderr,
                })
            }
            // The child is killed on drop.
            Err(_) => Err(RuntimeError::Docker {
                command: format!("{} {}", program.display(), args.join(" ")),
                stderr: format!("timed out after {timeout:?}"),
            }),
        }
    }

    /// `docker ARGS`: its stdout, or its stderr as the error.
    async fn docker(&self, args: &[String]) -> Result<String, RuntimeError> {
        let output = self.run(args, &[], None, COMMAND_TIMEOUT).await?;
        if output.success {
            Ok(output.stdout())
        } else {
            Err(output.error(&self.options.program, args))
        }
    }

    /// The id of the manager node the CLI talks to; fails, naming `docker
    /// swarm init`, unless the engine is an active swarm manager.
    async fn node(&self) -> Result<String, RuntimeError> {
        if let Some(node) = self.node.lock().unwrap_or_else(|e| e.into_inner()).clone() {
            return Ok(node);
        }
        let args = strings(["info", "--format", "{{json .Swarm}}"]);
        let out = match self.docker(&args).await {
            Ok(out) => out,
            Err(RuntimeError::Docker { stderr, .. }) => {
                return Err(RuntimeError::DockerUnavailable { reason: stderr });
            }
            Err(e) => return Err(e),
        };
        let node = swarm_node(&out)?;
        *self.node.lock().unwrap_or_else(|e| e.into_inner()) = Some(node.clone());
        Ok(node)
    }

    /// This owner's services, by replica id.
    async fn services(&self) -> Result<Vec<String>, RuntimeError> {
        let args = vec![
            "service".to_owned(),
            "ls".to_owned(),
            "--filter".to_owned(),
            format!("label={LABEL_OWNER}={}", self.options.owner),
            "--format".to_owned(),
            "{{json .}}".to_owned(),
        ];
        let out = self.docker(&args).await?;
        Ok(out
            .lines()
            .filter_map(|line| serde_json::from_str::<ServiceLine>(line).ok())
            .filter_map(|s| s.name.strip_prefix(NAME_PREFIX).map(str::to_owned))
            .collect())
    }

    /// The tasks of these replicas' services, newest first within each.
    async fn tasks(&self, ids: &[String]) -> Result<Vec<Task>, RuntimeError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut args = strings(["service", "ps", "--no-trunc", "--format", "{{json .}}"]);
        args.extend(ids.iter().map(|id| service_name(id)));
        let out = self.docker(&args).await?;
        Ok(out.lines().filter_map(parse_task_line).collect())
    }

    /// One look at the services: reports dead tasks and their successors,
    /// re-creates removed services, adopts services no slot knows.
    async fn poll(self: &Arc<Self>) -> Result<(), RuntimeError> {
        let services = self.services().await?;
        let tasks = self.tasks(&services).await?;
        self.adopted.store(true, Ordering::Relaxed);
        let mut by_id: HashMap<&str, Vec<&Task>> = HashMap::new();
        for task in &tasks {
            by_id.entry(task.replica.as_str()).or_default().push(task);
        }
        let mut changes = Vec::new();
        let mut unknown = Vec::new();
        {
            let mut slots = self.table.lock();
            for (id, slot) in slots.iter_mut() {
                let watched = matches!(
                    slot.replica.state,
                    ReplicaState::Running | ReplicaState::Restarting
                );
                if slot.stopping || slot.task.is_some() || !watched {
                    continue;
                }
                if !services.contains(id) {
                    if slot.replica.state == ReplicaState::Running {
                        changes.push((id.clone(), slot.token, Change::Exited { code: None }));
                    }
                    changes.push((id.clone(), slot.token, Change::Recreate));
                    continue;
                }
                let tasks = by_id.get(id.as_str()).cloned().unwrap_or_default();
                // Oldest first, so exits are reported in order.
                for task in tasks.iter().rev() {
                    if task.is_dead() && slot.handle.seen.insert(task.id.clone()) {
                        let code = task.exit_code();
                        changes.push((id.clone(), slot.token, Change::Exited { code }));
                    }
                }
                if tasks
                    .iter()
                    .any(|t| t.is_running() && t.desired == "running")
                {
                    changes.push((id.clone(), slot.token, Change::Restarted));
                } else if !tasks.is_empty() && !tasks.iter().any(|t| t.is_wanted()) {
                    changes.push((id.clone(), slot.token, Change::Revive));
                }
            }
            for id in &services {
                if !slots.contains_key(id) {
                    unknown.push(id.clone());
                }
            }
        }
        let policy = self.swarm_policy();
        for (id, token, change) in changes {
            match change {
                Change::Exited { code } => {
                    // Reported once per dead task; the slot stays `Restarting`
                    // until a successor runs.
                    let _ = self.table.exited(&id, token, (code, None), &policy, |_| {});
                }
                Change::Restarted => {
                    let restarting = self
                        .table
                        .live(&id, token, |s| s.replica.state == ReplicaState::Restarting);
                    if restarting == Some(true) {
                        let _ = self
                            .table
                            .restarted(&id, token, |_| Ok::<(), Infallible>(()));
                    }
                }
                Change::Recreate | Change::Revive => {
                    let revive = matches!(change, Change::Revive);
                    let task = tokio::spawn(revive_task(self.clone(), id.clone(), token, revive));
                    let handle = task.abort_handle();
                    if self
                        .table
                        .live(&id, token, |s| s.task = Some(handle.clone()))
                        .is_none()
                    {
                        handle.abort();
                    }
                }
            }
        }
        for id in unknown {
            let tasks = by_id.get(id.as_str()).cloned().unwrap_or_default();
            self.adopt(&id, &tasks).await;
        }
        Ok(())
    }

    /// What the `Restarting` events say: Swarm's fixed restart delay.
    fn swarm_policy(&self) -> RestartPolicy {
        let delay = self.options.restart.initial_delay;
        RestartPolicy {
            initial_delay: delay,
            max_delay: delay,
            reset_after: self.options.restart.reset_after,
        }
    }

    /// Takes over a service of this owner that no slot knows, if Swarm still
    /// runs (or restarts) its task; removes it otherwise, reporting it as exited.
    async fn adopt(&self, id: &str, tasks: &[&Task]) {
        let name = service_name(id);
        if !tasks.iter().any(|t| t.is_wanted()) {
            tracing::info!(replica = %id, "removing a replica service Swarm gave up on");
            if let Err(e) = self.docker(&strings(["service", "rm", &name])).await {
                tracing::warn!(replica = %id, error = %e, "could not remove a dead replica service");
                return;
            }
            let code = tasks.iter().find_map(|t| t.exit_code());
            self.table.emit(crate::ReplicaEvent::Exited {
                id: id.to_owned(),
                code,
                signal: None,
            });
            return;
        }
        let mut replica = match self.inspect_replica(&name).await {
            Ok(replica) => replica,
            Err(e) => {
                tracing::warn!(replica = %id, error = %e, "cannot adopt a replica service");
                return;
            }
        };
        if !tasks.iter().any(|t| t.is_running()) {
            replica.state = ReplicaState::Restarting;
        }
        let addr = replica.addr;
        let seen = Tasks {
            seen: tasks
                .iter()
                .filter(|t| t.is_dead())
                .map(|t| t.id.clone())
                .collect(),
        };
        if self.table.adopt(replica, seen, |_| None) {
            tracing::info!(replica = %id, %addr, "adopted a running replica service");
        }
    }

    /// Rebuilds a replica from its service's labels and environment.
    async fn inspect_replica(&self, name: &str) -> Result<Replica, String> {
        let args = strings(["service", "inspect", "--format", "{{json .Spec}}", name]);
        let out = self.docker(&args).await.map_err(|e| e.to_string())?;
        let spec: ServiceSpec =
            serde_json::from_str(out.trim()).map_err(|e| format!("docker service inspect: {e}"))?;
        let labels = spec.labels.unwrap_or_default();
        let label: SpecLabel = serde_json::from_str(labels.get(LABEL_SPEC).ok_or("no spec label")?)
            .map_err(|e| format!("spec label: {e}"))?;
        let port: u16 = labels
            .get(LABEL_HOST_PORT)
            .ok_or("no host-port label")?
            .parse()
            .map_err(|e| format!("host-port label: {e}"))?;
        let service_env = spec.task_template.container_spec.env.unwrap_or_default();
        let mut replica_spec = label.spec;
        replica_spec.env = label
            .env_names
            .iter()
            .filter_map(|name| {
                let prefix = format!("{name}=");
                service_env
                    .iter()
                    .rev()
                    .find_map(|var| var.strip_prefix(prefix.as_str()))
                    .map(|value| (name.clone(), value.to_owned()))
            })
            .collect();
        Ok(Replica {
            id: replica_spec.id.clone(),
            addr: loopback(port),
            spec: replica_spec,
            state: ReplicaState::Running,
            restarts: 0,
            last_exit: None,
        })
    }

    async fn start(&self, spec: ReplicaSpec) -> Result<Replica, RuntimeError> {
        spec.validate()?;
        validate_for_swarm(&spec)?;
        let node = self.node().await?;
        self.watching.store(true, Ordering::Relaxed);
        // The host port is the slot's from now on, so two starts never pick
        // the same one; the slot goes again if the start fails.
        let reservation = self.table.reserve(&spec, Port::PickNow)?;
        let port = reservation.port();
        let token = reservation.token();
        let result = self.create_and_wait(&spec, &node, port, token).await;
        if let Err(e) = &result {
            tracing::info!(replica = %spec.id, error = %e, "removing the service of a replica that did not start");
            self.remove(&spec.id).await;
        }
        let seen = result?;
        let started = self.table.started(&spec.id, token, |slot| {
            slot.handle = seen;
            Ok::<_, Infallible>(slot.replica.clone())
        });
        match started {
            Some(Ok(replica)) => {
                reservation.keep();
                Ok(replica)
            }
            Some(Err(never)) => match never {},
            None => {
                self.remove(&spec.id).await;
                Err(RuntimeError::StoppedWhileStarting {
                    id: spec.id.clone(),
                })
            }
        }
    }

    /// `docker service create`, then waits until its task runs (or ran and
    /// exited: the watcher reports that). A task Swarm rejects (an image the
    /// node cannot pull, a container it cannot create) fails the start with
    /// Swarm's error. Returns the tasks already dead that are not exits.
    async fn create_and_wait(
        &self,
        spec: &ReplicaSpec,
        node: &str,
        port: u16,
        token: u64,
    ) -> Result<Tasks, RuntimeError> {
        self.create(spec, node, port).await?;
        let deadline = tokio::time::Instant::now() + START_TIMEOUT;
        let mut pending_since: Option<tokio::time::Instant> = None;
        loop {
            if self.table.is_stopping(&spec.id, token) {
                return Err(RuntimeError::StoppedWhileStarting {
                    id: spec.id.clone(),
                });
            }
            let tasks = self.tasks(std::slice::from_ref(&spec.id)).await?;
            if tasks
                .iter()
                .any(|t| t.is_running() || t.exit_code().is_some())
            {
                return Ok(Tasks::default());
            }
            if let Some(dead) = tasks.iter().find(|t| t.is_dead()) {
                return Err(task_error(spec, dead));
            }
            match tasks.iter().find(|t| !t.error.is_empty()) {
                Some(task) => {
                    let since = *pending_since.get_or_insert_with(tokio::time::Instant::now);
                    if since.elapsed() >= PENDING_LIMIT {
                        return Err(task_error(spec, task));
                    }
                }
                None => pending_since = None,
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(RuntimeError::Spawn {
                    id: spec.id.clone(),
                    program: program_of(spec),
                    reason: format!("its Swarm task did not run within {START_TIMEOUT:?}"),
                });
            }
            tokio::time::sleep(START_POLL).await;
        }
    }

    async fn create(&self, spec: &ReplicaSpec, node: &str, port: u16) -> Result<(), RuntimeError> {
        let create = create_args(spec, &self.options.owner, node, port, &self.options.restart)?;
        // The names of the variables, one a line; the CLI reads their values
        // from its environment, so no value is written anywhere.
        let mut file = tempfile::Builder::new()
            .prefix("gantry-swarm-env-")
            .tempfile()
            .map_err(RuntimeError::state("creating", std::env::temp_dir()))?;
        file.write_all(create.env_file.as_bytes())
            .and_then(|()| file.flush())
            .map_err(RuntimeError::state("writing", file.path()))?;
        let output = self
            .run(
                &create.args,
                &create.env,
                Some(file.path()),
                COMMAND_TIMEOUT,
            )
            .await?;
        if output.success {
            Ok(())
        } else {
            Err(output.error(&self.options.program, &create.args))
        }
    }

    /// Removes the replica's service and waits (bounded) for its containers to go.
    async fn remove(&self, id: &str) {
        let _ = self.remove_service(id, Duration::from_secs(5)).await;
    }

    /// `docker service rm`, then `docker stop` (SIGTERM, SIGKILL after
    /// `grace`) of the containers its task ran, on this node; Swarm removes
    /// them once they exited.
    async fn remove_service(&self, id: &str, grace: Duration) -> Result<(), RuntimeError> {
        let name = service_name(id);
        let filter = format!("label={LABEL_SWARM_SERVICE}={name}");
        let list = strings(["ps", "-q", "--no-trunc", "--filter", &filter]);
        // Its running containers, before the service goes (Swarm's agent
        // takes a second or two to stop them after `service rm`).
        let running: Vec<String> = match self.docker(&list).await {
            Ok(out) => out.split_whitespace().map(str::to_owned).collect(),
            Err(e) => {
                tracing::warn!(replica = %id, error = %e, "cannot list a replica's containers");
                Vec::new()
            }
        };
        match self.docker(&strings(["service", "rm", &name])).await {
            Ok(_) => {}
            Err(RuntimeError::Docker { stderr, .. }) if is_no_such_service(&stderr) => {}
            Err(e) => return Err(e),
        }
        if running.is_empty() {
            return Ok(());
        }
        // SIGTERM now, SIGKILL after the grace (whole seconds, rounded up);
        // Swarm removes the exited containers.
        let seconds = grace.as_secs() + u64::from(grace.subsec_nanos() > 0);
        let mut stop = strings(["stop", "-t", &seconds.to_string()]);
        stop.extend(running);
        let output = self.run(&stop, &[], None, grace + COMMAND_TIMEOUT).await?;
        if !output.success && !output.stderr().contains("No such container") {
            tracing::warn!(replica = %id, error = %output.stderr(), "docker stop of a replica's task failed; Swarm stops it");
        }
        Ok(())
    }

    async fn stop(&self, id: &str, grace: Duration) -> Result<(), RuntimeError> {
        let Some(stopping) = self.table.begin_stop(id) else {
            return Ok(());
        };
        if let Some(task) = stopping.task {
            task.abort();
        }
        // The slot stays (stopping) on failure, so stopping again retries.
        self.remove_service(id, grace).await?;
        self.table.forget(id, stopping.token, || {});
        Ok(())
    }
}

/// Re-creates a removed service (`revive` false) or forces a new task for a
/// service Swarm stopped restarting (`revive` true), after gantry's longest
/// backoff for the latter, until it works or the replica is stopped.
async fn revive_task(inner: Arc<Inner>, id: String, token: u64, revive: bool) {
    let mut delay = if revive {
        inner.options.restart.max_delay
    } else {
        inner.options.restart.initial_delay
    };
    loop {
        tokio::time::sleep(delay).await;
        let Some(spec) = inner.table.live(&id, token, |s| s.replica.spec.clone()) else {
            return;
        };
        let port = inner
            .table
            .live(&id, token, |s| s.replica.addr.port())
            .unwrap_or_default();
        let result = if revive {
            let args = strings([
                "service",
                "update",
                "--detach",
                "--quiet",
                "--force",
                &service_name(&id),
            ]);
            inner.docker(&args).await.map(|_| ())
        } else {
            match inner.node().await {
                Ok(node) => inner.create(&spec, &node, port).await,
                Err(e) => Err(e),
            }
        };
        match result {
            Ok(()) => {
                // The watcher reports the new task once it runs.
                let _ = inner.table.live(&id, token, |s| s.task = None);
                return;
            }
            Err(e) => {
                tracing::warn!(replica = %id, error = %e, "giving a replica service a new task failed");
                delay = inner.options.restart.max_delay;
            }
        }
    }
}

/// The node id in `docker info`'s `Swarm` JSON, if the node is an active manager.
fn swarm_node(info: &str) -> Result<String, RuntimeError> {
    let info: SwarmInfo =
        serde_json::from_str(info.trim()).map_err(|e| RuntimeError::DockerUnavailable {
            reason: format!("cannot read `docker info`'s swarm state: {e}"),
        })?;
    if info.local_node_state != "active" {
        let state = match info.local_node_state.as_str() {
            "" => "unknown",
            other => other,
        };
        return Err(RuntimeError::DockerUnavailable {
            reason: format!(
                "this Docker Engine is {NOT_IN_SWARM} (swarm state: {state}); \
                 run `docker swarm init` (or `docker swarm join`) for the swarm runtime"
            ),
        });
    }
    if !info.control_available {
        return Err(RuntimeError::DockerUnavailable {
            reason: "this Docker Engine is a swarm worker; the swarm runtime needs a manager \
                     (point DOCKER_HOST at one, or `docker node promote` this node)"
                .to_owned(),
        });
    }
    Ok(info.node_id)
}

/// The start error for a task Swarm rejected or could not start.
fn task_error(spec: &ReplicaSpec, task: &Task) -> RuntimeError {
    let reason = if task.error.is_empty() {
        format!("its Swarm task is {}", task.state)
    } else {
        format!("its Swarm task is {}: {}", task.state, task.error)
    };
    let pull = task.error.contains("No such image")
        || task.error.contains("pull")
        || task.error.contains("manifest unknown");
    if pull {
        RuntimeError::ImagePull {
            image: spec.image.to_string(),
            reason,
        }
    } else {
        RuntimeError::Spawn {
            id: spec.id.clone(),
            program: program_of(spec),
            reason,
        }
    }
}

fn program_of(spec: &ReplicaSpec) -> String {
    spec.command
        .as_ref()
        .and_then(|c| c.first().cloned())
        .unwrap_or_else(|| "the image's entrypoint".to_owned())
}

/// What a spec needs on top of [`ReplicaSpec::validate`] here: names fit for
/// an env file's lines, values of the variables that travel in it (not in
/// the CLI's environment) on one line, and a program `--entrypoint` takes
/// as one word (the CLI splits its value like a shell would).
fn validate_for_swarm(spec: &ReplicaSpec) -> Result<(), RuntimeError> {
    let invalid = |reason: String| RuntimeError::InvalidSpec {
        id: spec.id.clone(),
        reason,
    };
    for (name, value) in &spec.env {
        if name.starts_with('#') || name.chars().any(char::is_whitespace) {
            return Err(invalid(format!(
                "environment variable {name:?}: the swarm runtime needs names without spaces or a leading '#'"
            )));
        }
        if in_file(name) && value.contains(['\n', '\r']) {
            return Err(invalid(format!(
                "environment variable {name}: the swarm runtime needs its value on one line"
            )));
        }
    }
    if let Some([program, ..]) = spec.command.as_deref() {
        let plain = program
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._+-:@".contains(c));
        if !plain {
            return Err(invalid(format!(
                "command {program:?}: the swarm runtime needs a program path of letters, digits and /._+-:@"
            )));
        }
    }
    Ok(())
}

/// Variables that steer the docker CLI itself, so their values cannot travel
/// in its environment: they are written into the env file.
fn in_file(name: &str) -> bool {
    name == "PATH" || name == "HOME" || name.starts_with("DOCKER_")
}

/// A `docker service create` command line.
struct CreateCommand {
    args: Vec<String>,
    /// The env file's text: names (values in `env`), and `NAME=VALUE` for the
    /// variables that cannot travel in the CLI's environment.
    env_file: String,
    /// Values for the env file's names, set in the CLI's own environment.
    env: Vec<(String, String)>,
}

fn duration_arg(d: Duration) -> String {
    format!("{}ms", d.as_millis().max(1))
}

/// The `docker service create` command for `spec` (the `--env-file` is added
/// after `service create`).
fn create_args(
    spec: &ReplicaSpec,
    owner: &str,
    node: &str,
    host_port: u16,
    restart: &RestartPolicy,
) -> Result<CreateCommand, RuntimeError> {
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
    let mut args = strings([
        "service",
        "create",
        "--detach",
        "--quiet",
        "--with-registry-auth",
        "--no-resolve-image",
        "--replicas",
        "1",
        "--name",
    ]);
    args.push(service_name(&spec.id));
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
    args.push("--constraint".to_owned());
    args.push(format!("node.id=={node}"));
    let container_port = if spec.host_network {
        args.push("--network".to_owned());
        args.push("host".to_owned());
        host_port
    } else {
        args.push("--publish".to_owned());
        args.push(format!(
            "mode=host,target={},published={host_port},protocol=tcp",
            spec.port
        ));
        spec.port
    };
    for (flag, value) in [
        ("--restart-condition", "any".to_owned()),
        ("--restart-delay", duration_arg(restart.initial_delay)),
        ("--restart-max-attempts", RESTART_MAX_ATTEMPTS.to_string()),
        ("--restart-window", duration_arg(RESTART_WINDOW)),
        ("--stop-grace-period", duration_arg(STOP_GRACE)),
    ] {
        args.push(flag.to_owned());
        args.push(value);
    }
    // An init as PID 1 forwards SIGTERM, so a program that installs no
    // handler stops at once, as it does on the process runtime, instead of
    // waiting out the grace (PID 1 ignores signals it does not handle).
    args.push("--init".to_owned());
    if let Some(user) = spec.user() {
        args.push("--user".to_owned());
        args.push(user.to_owned());
    }
    let mut env_file = String::new();
    let mut env = Vec::new();
    for (name, value) in &spec.env {
        if !passed_on(name) {
            continue;
        }
        if in_file(name) {
            env_file.push_str(&format!("{name}={value}\n"));
        } else {
            env_file.push_str(&format!("{name}\n"));
            env.push((name.clone(), value.clone()));
        }
    }
    // After the env file, so it wins over a PORT there.
    args.push("--env".to_owned());
    args.push(format!("PORT={container_port}"));
    if let Some(memory) = spec.memory {
        args.push("--limit-memory".to_owned());
        args.push(memory.to_string());
    }
    if let Some(cpus) = spec.cpus {
        args.push("--limit-cpu".to_owned());
        args.push(cpus.to_string());
    }
    let command_args = match spec.command.as_deref() {
        Some([program, rest @ ..]) => {
            args.push("--entrypoint".to_owned());
            args.push(program.clone());
            rest.to_vec()
        }
        _ => Vec::new(),
    };
    args.push(spec.image.to_string());
    args.extend(command_args);
    Ok(CreateCommand {
        args,
        env_file,
        env,
    })
}

/// A task from a `docker service ps` JSON line; `None` for a line that is not
/// JSON or a task of a service not named `gantry-<id>`.
fn parse_task_line(line: &str) -> Option<Task> {
    let line: TaskLine = match serde_json::from_str(line) {
        Ok(line) => line,
        Err(e) => {
            tracing::warn!(error = %e, %line, "cannot read a line of docker service ps");
            return None;
        }
    };
    // `gantry-<id>.<slot>`; history lines may start with `\_ `.
    let name = line.name.trim_start_matches(['\\', '_', ' ']);
    let service = name.rsplit_once('.').map_or(name, |(service, _)| service);
    let replica = service
        .strip_prefix(NAME_PREFIX)
        .filter(|id| !id.is_empty())?;
    let state = line
        .current_state
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    Some(Task {
        id: line.id,
        replica: replica.to_owned(),
        state,
        desired: line.desired_state.to_ascii_lowercase(),
        error: line.error.trim().trim_matches('"').replace("\\\"", "\""),
    })
}

fn is_no_such_service(stderr: &str) -> bool {
    stderr.contains("not found") || stderr.contains("No such service")
}

fn service_name(id: &str) -> String {
    format!("{NAME_PREFIX}{id}")
}

/// `docker service logs` arguments: the last 10,000 lines, or what came
/// after a cursor or a time (one `--since=VALUE` argument, never a flag).
fn logs_args(id: &str, query: &crate::LogQuery) -> Vec<String> {
    let mut args = strings([
        "service",
        "logs",
        "--timestamps",
        "--raw",
        "--tail",
        "10000",
    ]);
    args.extend(crate::docker::since_arg(query));
    args.push(service_name(id));
    args
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::OWNER_ENV;
    use crate::replica::tests::spec;

    #[test]
    fn service_ps_lines_give_replica_state_and_exit_codes() {
        let failed = r#"{"CurrentState":"Failed 1 second ago","DesiredState":"Shutdown","Error":"\"task: non-zero exit (3)\"","ID":"vxcg","Image":"x","Name":"gantry-r1.1","Node":"vm","Ports":""}"#;
        let task = parse_task_line(failed).unwrap();
        assert_eq!(task.replica, "r1");
        assert_eq!(task.state, "failed");
        assert!(task.is_dead() && !task.is_wanted());
        assert_eq!(task.exit_code(), Some(3));
        let rejected = r#"{"CurrentState":"Rejected 3 seconds ago","DesiredState":"Shutdown","Error":"\"No such image: 127.0.0.1:5599/h4/nope@sha256:26\"","ID":"v27","Name":"gantry-a.b-1.1"}"#;
        let task = parse_task_line(rejected).unwrap();
        assert_eq!(task.replica, "a.b-1");
        assert_eq!(task.exit_code(), None);
        assert_eq!(
            task.error,
            "No such image: 127.0.0.1:5599/h4/nope@sha256:26"
        );
        let running = r#"{"CurrentState":"Running less than a second ago","DesiredState":"Running","Error":"","ID":"rr","Name":"gantry-r2.1"}"#;
        let task = parse_task_line(running).unwrap();
        assert!(task.is_running() && task.is_wanted() && !task.is_dead());
        let waiting = r#"{"CurrentState":"Ready 3 seconds ago","DesiredState":"Ready","ID":"w","Name":"\\_ gantry-r2.1"}"#;
        let task = parse_task_line(waiting).unwrap();
        assert_eq!(task.replica, "r2");
        assert!(task.is_wanted());
        assert_eq!(
            parse_task_line(
                r#"{"ID":"x","Name":"other.1","DesiredState":"Running","CurrentState":"Running"}"#
            ),
            None
        );
        assert_eq!(parse_task_line("gantry-r1.1 Running"), None);
        let complete = r#"{"CurrentState":"Complete 1 second ago","DesiredState":"Shutdown","ID":"c","Name":"gantry-r3.1"}"#;
        assert_eq!(parse_task_line(complete).unwrap().exit_code(), Some(0));
    }

    #[test]
    fn an_inactive_swarm_names_docker_swarm_init_and_a_worker_is_refused() {
        let inactive = r#"{"NodeID":"","NodeAddr":"","LocalNodeState":"inactive","ControlAvailable":false,"Error":"","RemoteManagers":null}"#;
        let error = swarm_node(inactive).unwrap_err();
        assert_eq!(error.code(), "docker_unavailable");
        assert!(error.to_string().contains("docker swarm init"), "{error}");
        assert!(error.to_string().contains("inactive"), "{error}");
        let worker = r#"{"NodeID":"n1","LocalNodeState":"active","ControlAvailable":false}"#;
        assert!(
            swarm_node(worker)
                .unwrap_err()
                .to_string()
                .contains("manager")
        );
        let manager = r#"{"NodeID":"n1","LocalNodeState":"active","ControlAvailable":true}"#;
        assert_eq!(swarm_node(manager).unwrap(), "n1");
    }

    #[test]
    fn create_arguments_carry_labels_host_port_limits_and_keep_env_values_out_of_argv() {
        let mut s = spec("r1");
        s.env = vec![
            ("SECRET".into(), "hunter2".into()),
            ("PATH".into(), "/app:/bin".into()),
            (OWNER_ENV.into(), "/data".into()),
            ("GANTRY_TOKEN".into(), "t".into()),
        ];
        s.memory = Some(64 * 1024 * 1024);
        s.cpus = Some(0.5);
        s.command = Some(vec!["/app/busybox".into(), "httpd".into(), "-f".into()]);
        s.labels.insert("team".into(), "core".into());
        s.labels.insert("gantry.replica".into(), "spoof".into());
        let s = s.with_user(Some("65534".into()));
        let create = create_args(&s, "/data", "node1", 40000, &RestartPolicy::default()).unwrap();
        let line = create.args.join(" ");
        assert!(line.starts_with("service create --detach --quiet --with-registry-auth --no-resolve-image --replicas 1 --name gantry-r1 "), "{line}");
        for expected in [
            "--label gantry.owner=/data",
            "--label gantry.environment=staging",
            "--label gantry.service=web",
            "--label gantry.revision=1",
            "--label gantry.replica=r1",
            "--label gantry.host-port=40000",
            "--label team=core",
            "--constraint node.id==node1",
            "--publish mode=host,target=8080,published=40000,protocol=tcp",
            "--restart-condition any --restart-delay 1000ms --restart-max-attempts 5 --restart-window 60000ms",
            "--env PORT=8080",
            "--limit-memory 67108864",
            "--limit-cpu 0.5",
            "--user 65534",
            "--entrypoint /app/busybox",
            "--init",
        ] {
            assert!(line.contains(expected), "{expected} missing in {line}");
        }
        assert!(line.ends_with(&format!("{} httpd -f", s.image)), "{line}");
        assert!(!line.contains("hunter2"), "secret values stay out of argv");
        assert!(!line.contains("--label gantry.replica=spoof"));
        assert!(
            !line.contains("--container-label"),
            "containers carry no gantry label"
        );
        assert_eq!(create.env_file, "SECRET\nPATH=/app:/bin\n");
        assert!(!create.env_file.contains("hunter2"));
        assert_eq!(
            create.env,
            vec![("SECRET".to_owned(), "hunter2".to_owned())]
        );
    }

    #[test]
    fn host_network_publishes_nothing_and_gives_the_host_port_in_port() {
        let mut s = spec("r1");
        s.host_network = true;
        let line = create_args(&s, "o", "n", 40001, &RestartPolicy::default())
            .unwrap()
            .args
            .join(" ");
        assert!(line.contains("--network host"), "{line}");
        assert!(line.contains("--env PORT=40001"), "{line}");
        assert!(!line.contains("--publish"), "{line}");
    }

    #[test]
    fn names_values_and_programs_an_env_file_or_the_cli_would_misread_are_refused() {
        let mut s = spec("r1");
        s.env = vec![("A B".into(), "x".into())];
        assert_eq!(validate_for_swarm(&s).unwrap_err().code(), "invalid_spec");
        s.env = vec![("#A".into(), "x".into())];
        assert!(validate_for_swarm(&s).is_err());
        s.env = vec![("PATH".into(), "/a\nB=c".into())];
        assert!(validate_for_swarm(&s).is_err());
        s.env = vec![("SECRET".into(), "multi\nline".into())];
        assert!(
            validate_for_swarm(&s).is_ok(),
            "values in the CLI's environment may hold newlines"
        );
        s.command = Some(vec!["/app/my prog".into()]);
        assert!(validate_for_swarm(&s).is_err());
        s.command = Some(vec!["/app/busybox".into(), "sh -c 'x'".into()]);
        assert!(
            validate_for_swarm(&s).is_ok(),
            "arguments are argv, never split"
        );
    }

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
        assert_eq!(args.last().map(String::as_str), Some("gantry-r1"));
    }
}
