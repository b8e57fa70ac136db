//! The `process` runtime: replicas as host processes running an unpacked image.
//!
//! This file holds only what is the process runtime's own: spawning a replica
//! in its process group, its state file and log, supervising (waiting for a
//! child, polling an adopted process), re-adoption at start-up and stopping a
//! group. Slots, reservations, listing, events and the restart backoff are the
//! shared [`ReplicaTable`]'s.

use std::collections::HashSet;
use std::ffi::OsString;
use std::fs::OpenOptions;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use gantry_images::{Digest, RegistryClient};
use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::PrunedImage;
use crate::error::RuntimeError;
use crate::images::ImageCache;
use crate::launch::{HostEnv, Launch, plan};
use crate::proc;
use crate::replica::{Replica, ReplicaEvent, ReplicaSpec, ReplicaState};
use crate::restart::RestartPolicy;
use crate::table::{Driver, Port, ReplicaTable, loopback};

/// The variable marking a process as a replica of this data dir.
const MARK_ENV: &str = "GANTRY_REPLICA";
/// How often an adopted replica (not gantry's child) is checked.
const POLL_INTERVAL: Duration = Duration::from_secs(1);
/// How often a replica's log size is checked.
const LOG_CHECK_INTERVAL: Duration = Duration::from_secs(5);
/// How often a stopping replica's process group is looked at.
const STOP_POLL: Duration = Duration::from_millis(50);
/// How long to wait for the kernel to finish a SIGKILLed group.
const KILL_WAIT: Duration = Duration::from_secs(5);

/// How a [`ProcessRuntime`] restarts replicas and bounds their logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcessOptions {
    /// Backoff for restarts.
    pub restart: RestartPolicy,
    /// A replica's log is rotated (to `<id>.log.1`) beyond this size. Default 10 MiB.
    pub log_max_bytes: u64,
}

impl Default for ProcessOptions {
    fn default() -> Self {
        ProcessOptions {
            restart: RestartPolicy::default(),
            log_max_bytes: 10 * 1024 * 1024,
        }
    }
}

/// Runs replicas as host processes, each from its image's unpacked root.
///
/// Each replica is its own process group (`process_group(0)`), so stopping it
/// (SIGTERM to the group, SIGKILL after the grace period) reaches every process
/// it started, and a terminal's Ctrl-C aimed at gantry does not reach it. Its
/// output is appended to `DATA_DIR/replicas/<id>.log`, copied to `<id>.log.1`
/// and truncated when it grows past [`ProcessOptions::log_max_bytes`].
///
/// **Persistence.** Every start writes `DATA_DIR/replicas/<id>.json` (spec,
/// pid, process group, port, the process's start time, restarts); a stop
/// removes it. A runtime created on the same data dir reads these files: a
/// replica whose pid is alive *with the recorded start time* is adopted and
/// watched by polling (it is no longer gantry's child, so it cannot be
/// waited for); a dead one is reported as exited and its file removed. Every
/// replica process also carries `GANTRY_REPLICA=DATA_DIR/replicas/<id>` in its
/// environment, so processes left by a gantry that died between starting a
/// replica and writing its file are found and killed rather than orphaned.
///
/// **Supervision.** A replica that exits without a stop is reported
/// (`Exited`), its leftover group members are killed (as a container's are
/// when its first process ends), and it is restarted after a backoff
/// (`Restarting`, then `Started`), on the same port, so its address never
/// changes.
///
/// **Limits.** Memory and CPU limits in the spec are not enforced: there is no
/// cgroup set-up here. Use the docker runtime where they matter.
///
/// Dropping it stops supervising (no more restarts) but leaves the replicas
/// running: a new runtime on the same data dir adopts them.
pub struct ProcessRuntime {
    inner: Arc<Inner>,
}

struct Inner {
    replicas_dir: PathBuf,
    images: ImageCache,
    host: HostEnv,
    options: ProcessOptions,
    /// Each slot's handle is its running process, when there is one; its
    /// task is its supervisor.
    table: ReplicaTable<Option<Proc>>,
}

/// A process identified across pid reuse. Its pid is its process group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Proc {
    pid: i32,
    start_time: u64,
}

/// `DATA_DIR/replicas/<id>.json`.
#[derive(Debug, Serialize, Deserialize)]
struct StateFile {
    spec: ReplicaSpec,
    pid: i32,
    pgid: i32,
    port: u16,
    start_time: u64,
    restarts: u32,
}

/// What a supervisor waits on.
enum Watch {
    /// gantry's own child: waited for, exit status known.
    Child(tokio::process::Child),
    /// A process adopted after a restart of gantry: polled.
    Adopted(Proc),
    /// The (re)start failed: counts as an immediate exit.
    Failed,
}

impl ProcessRuntime {
    /// A runtime keeping its roots, state files and logs under `data_dir`, and
    /// pulling with `client`. Adopts the replicas a previous runtime on this data
    /// dir left running; reports the dead ones as `Exited` to the first subscriber.
    pub async fn new(
        data_dir: impl Into<PathBuf>,
        client: RegistryClient,
    ) -> Result<ProcessRuntime, RuntimeError> {
        ProcessRuntime::with_options(data_dir, client, ProcessOptions::default()).await
    }

    /// [`new`](Self::new) with explicit options.
    pub async fn with_options(
        data_dir: impl Into<PathBuf>,
        client: RegistryClient,
        options: ProcessOptions,
    ) -> Result<ProcessRuntime, RuntimeError> {
        let data_dir = data_dir.into();
        std::fs::create_dir_all(&data_dir).map_err(RuntimeError::state("creating", &data_dir))?;
        // Absolute, because the root becomes a working directory and PATH entries.
        let data_dir = std::fs::canonicalize(&data_dir)
            .map_err(RuntimeError::state("resolving", &data_dir))?;
        let replicas_dir = data_dir.join("replicas");
        std::fs::create_dir_all(&replicas_dir)
            .map_err(RuntimeError::state("creating", &replicas_dir))?;
        // State files hold environments (secrets included), logs what
        // replicas print: gantry's user only.
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&replicas_dir, std::fs::Permissions::from_mode(0o700))
                .map_err(RuntimeError::state("setting the mode of", &replicas_dir))?;
        }
        let images = ImageCache::open(data_dir.join("rootfs"), client)?;
        let inner = Arc::new(Inner {
            replicas_dir,
            images,
            host: HostEnv::capture(),
            options,
            table: ReplicaTable::new(),
        });
        inner.recover()?;
        Ok(ProcessRuntime { inner })
    }

    /// Where the replica's output goes.
    pub fn log_path(&self, id: &str) -> PathBuf {
        self.inner.log_path(id)
    }

    /// The root an image with this manifest digest is unpacked into (a pinned
    /// index's digest names the root of its linux/amd64 image).
    pub fn image_root(&self, digest: &Digest) -> PathBuf {
        self.inner.images.root(digest)
    }
}

impl Drop for ProcessRuntime {
    fn drop(&mut self) {
        self.inner.table.abort_tasks();
    }
}

impl Driver for ProcessRuntime {
    type Handle = Option<Proc>;
    const KIND: &'static str = "process";

    fn table(&self) -> &ReplicaTable<Option<Proc>> {
        &self.inner.table
    }

    async fn replica_logs(
        &self,
        id: &str,
        query: crate::LogQuery,
    ) -> Result<crate::ReplicaOutput, RuntimeError> {
        let dir = self.inner.replicas_dir.clone();
        let id = id.to_string();
        tokio::task::spawn_blocking(move || crate::output::process_log(&dir, &id, &query))
            .await
            .map_err(|e| RuntimeError::State {
                what: "reading the log of".into(),
                path: e.to_string().into(),
                source: std::io::Error::other("the reading task failed"),
            })?
    }

    async fn start_replica(&self, spec: ReplicaSpec) -> Result<Replica, RuntimeError> {
        self.inner.start(spec).await
    }

    /// The command as the replica's own program runs: in its image's root
    /// and working directory, with its environment, port and user.
    async fn exec_in(
        &self,
        id: &str,
        argv: &[String],
        timeout: Duration,
    ) -> Result<crate::ExecOutput, String> {
        let replica = self
            .inner
            .table
            .lock()
            .get(id)
            .map(|slot| slot.replica.clone())
            .ok_or_else(|| format!("replica {id} is not running"))?;
        let image = self
            .inner
            .images
            .unpacked(&replica.spec.image)
            .await
            .map_err(|e| e.to_string())?;
        let spec = ReplicaSpec {
            command: Some(argv.to_vec()),
            ..replica.spec.clone()
        };
        let launch = plan(&image, &spec, replica.addr.port(), &self.inner.host, &[])
            .map_err(|e| e.to_string())?;
        let mut command = tokio::process::Command::new(&launch.program);
        command
            .arg0(&launch.arg0)
            .args(&launch.args)
            .env_clear()
            .envs(launch.env.iter().map(|(name, value)| (name, value)))
            .current_dir(&launch.cwd);
        if let Some((uid, gid)) = launch.ids {
            command.uid(uid).gid(gid);
        }
        crate::exec::run(command, timeout).await
    }

    async fn stop_replica(&self, id: &str, grace: Duration) -> Result<(), RuntimeError> {
        self.inner.stop(id, grace).await
    }

    async fn prune_unused_images(&self, dry_run: bool) -> Result<Vec<PrunedImage>, RuntimeError> {
        let table = &self.inner.table;
        // Every replica in the table counts, starting and restarting ones
        // included. One whose image is not pinned by digest could run any
        // root, so while one exists nothing is removed.
        let in_use = || -> Option<HashSet<String>> {
            table
                .list()
                .iter()
                .map(|r| r.spec.image.digest().map(|d| d.hex().to_string()))
                .collect()
        };
        if in_use().is_none() {
            tracing::warn!(
                "a replica's image is not pinned by digest: no unpacked image is removed"
            );
            return Ok(Vec::new());
        }
        self.inner
            .images
            .prune(
                |hex| in_use().is_none_or(|used| used.contains(hex)),
                dry_run,
            )
            .await
    }
}

impl Inner {
    fn log_path(&self, id: &str) -> PathBuf {
        self.replicas_dir.join(format!("{id}.log"))
    }

    fn state_path(&self, id: &str) -> PathBuf {
        self.replicas_dir.join(format!("{id}.json"))
    }

    fn mark_prefix(&self) -> String {
        format!("{}/", self.replicas_dir.display())
    }

    fn mark(&self, id: &str) -> Vec<(String, OsString)> {
        vec![(
            MARK_ENV.to_owned(),
            format!("{}{id}", self.mark_prefix()).into(),
        )]
    }

    /// Adopts live replicas from their state files, forgets dead ones, and kills
    /// marked processes no state file accounts for.
    fn recover(self: &Arc<Self>) -> Result<(), RuntimeError> {
        let entries = std::fs::read_dir(&self.replicas_dir)
            .map_err(RuntimeError::state("reading", &self.replicas_dir))?;
        let mut adopted = HashSet::new();
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().and_then(|e| e.to_str()) != Some("json") {
                continue;
            }
            let state: StateFile = match std::fs::read(&path)
                .map_err(|e| e.to_string())
                .and_then(|bytes| serde_json::from_slice(&bytes).map_err(|e| e.to_string()))
            {
                Ok(state) => state,
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "unreadable replica state file; left alone");
                    continue;
                }
            };
            let id = state.spec.id.clone();
            let process = Proc {
                pid: state.pid,
                start_time: state.start_time,
            };
            if proc::is_alive(process.pid, process.start_time) {
                tracing::info!(replica = %id, pid = process.pid, "adopting a running replica");
                let replica = Replica {
                    id: id.clone(),
                    addr: loopback(state.port),
                    spec: state.spec,
                    state: ReplicaState::Running,
                    restarts: state.restarts,
                    last_exit: None,
                };
                self.table.adopt(replica, Some(process), |token| {
                    let watch = Watch::Adopted(process);
                    let supervisor =
                        supervise(self.clone(), id.clone(), token, watch, Some(process));
                    Some(tokio::spawn(supervisor).abort_handle())
                });
                adopted.insert(id);
            } else {
                proc::kill_leftovers(process.pid, process.start_time);
                if let Err(e) = std::fs::remove_file(&path) {
                    tracing::warn!(path = %path.display(), error = %e, "could not remove a dead replica's state file");
                }
                self.table.emit(ReplicaEvent::Exited {
                    id,
                    code: None,
                    signal: None,
                });
            }
        }
        // Processes of replicas whose state file was lost are found by their
        // mark in /proc: a scan of every process's environment, so it runs
        // beside start-up rather than before it (their ids are no one's,
        // so nothing started meanwhile can be mistaken for them).
        let prefix = self.mark_prefix();
        tokio::task::spawn_blocking(move || {
            for (pid, pgrp, id) in proc::marked(MARK_ENV, &prefix) {
                if !adopted.contains(&id) {
                    tracing::warn!(replica = %id, pid, pgrp, "killing a replica process no state file accounts for");
                    let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
                }
            }
        });
        Ok(())
    }

    async fn start(self: &Arc<Self>, spec: ReplicaSpec) -> Result<Replica, RuntimeError> {
        spec.validate()?;
        // A state file no replica accounts for (unreadable at start-up) keeps its id taken.
        if self.state_path(&spec.id).exists() {
            return Err(RuntimeError::AlreadyExists { id: spec.id });
        }
        // Frees the id if the start fails or its future is dropped mid-pull.
        let reservation = self.table.reserve(&spec, Port::PickNow)?;
        let replica = self
            .first_start(spec, reservation.token(), reservation.port())
            .await?;
        reservation.keep();
        Ok(replica)
    }

    async fn first_start(
        self: &Arc<Self>,
        spec: ReplicaSpec,
        token: u64,
        port: u16,
    ) -> Result<Replica, RuntimeError> {
        let image = self.images.unpacked(&spec.image).await?;
        let launch = plan(&image, &spec, port, &self.host, &self.mark(&spec.id))?;
        if launch.ids.is_none() && nix::unistd::geteuid().is_root() {
            tracing::warn!(
                replica = %spec.id,
                service = %spec.service,
                "The replica runs as root: give the service a `user:` to run it as another user."
            );
        }
        let started = self.table.started(&spec.id, token, |slot| {
            let (child, process) = self.spawn(&launch, &slot.replica)?;
            slot.handle = Some(process);
            let watch = Watch::Child(child);
            let supervisor = supervise(self.clone(), spec.id.clone(), token, watch, Some(process));
            slot.task = Some(tokio::spawn(supervisor).abort_handle());
            Ok(slot.replica.clone())
        });
        started.unwrap_or(Err(RuntimeError::StoppedWhileStarting { id: spec.id }))
    }

    /// Starts the process and records it in its state file. Called with the
    /// slots locked, so a stop cannot slip between the start and the record.
    fn spawn(
        &self,
        launch: &Launch,
        replica: &Replica,
    ) -> Result<(tokio::process::Child, Proc), RuntimeError> {
        let id = &replica.id;
        let log_path = self.log_path(id);
        let log = {
            use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
            let log = OpenOptions::new()
                .create(true)
                .append(true)
                .mode(0o600)
                .open(&log_path)
                .map_err(RuntimeError::state("opening", &log_path))?;
            // A log an older gantry created with a laxer mode is made private too.
            log.set_permissions(std::fs::Permissions::from_mode(0o600))
                .map_err(RuntimeError::state("setting the mode of", &log_path))?;
            log
        };
        let log_err = log
            .try_clone()
            .map_err(RuntimeError::state("opening", &log_path))?;
        let mut command = tokio::process::Command::new(&launch.program);
        command
            .arg0(&launch.arg0)
            .args(&launch.args)
            .env_clear()
            .envs(launch.env.iter().map(|(name, value)| (name, value)))
            .current_dir(&launch.cwd)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            // Its own group: stopped as a whole, untouched by signals aimed at gantry's.
            .process_group(0)
            // Replicas outlive the runtime object and gantry itself.
            .kill_on_drop(false);
        if let Some((uid, gid)) = launch.ids {
            // std drops the supplementary groups too when root sets a uid.
            command.uid(uid).gid(gid);
        }
        let spawn_error = |reason: String| RuntimeError::Spawn {
            id: id.clone(),
            program: launch.arg0.clone(),
            reason,
        };
        let child = command.spawn().map_err(|e| match launch.ids {
            Some((uid, _)) if e.kind() == std::io::ErrorKind::PermissionDenied => spawn_error(format!(
                "{e}: uid {uid} cannot reach {} (the data dir must be traversable by it: chmod o+x)",
                launch.program.display()
            )),
            _ => spawn_error(e.to_string()),
        })?;
        let pid = child
            .id()
            .and_then(|pid| i32::try_from(pid).ok())
            .ok_or_else(|| spawn_error("the process has no pid".to_owned()))?;
        // The child cannot be reaped before we wait for it, so its stat is readable.
        let start_time = proc::stat(pid).map(|s| s.start_time).unwrap_or(0);
        let process = Proc { pid, start_time };
        let state = StateFile {
            spec: replica.spec.clone(),
            pid,
            pgid: pid,
            port: replica.addr.port(),
            start_time,
            restarts: replica.restarts,
        };
        if let Err(e) = self.write_state(&state) {
            // Unrecorded, it would be an orphan after a restart of gantry.
            let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
            return Err(e);
        }
        tracing::debug!(replica = %id, pid, program = %launch.program.display(), "spawned replica process");
        Ok((child, process))
    }

    fn write_state(&self, state: &StateFile) -> Result<(), RuntimeError> {
        let path = self.state_path(&state.spec.id);
        let temp = path.with_extension("json.tmp");
        let bytes = serde_json::to_vec_pretty(state)
            .map_err(|e| RuntimeError::state("encoding", &path)(std::io::Error::other(e)))?;
        // The state holds the replica's environment, secrets included: only
        // gantry's user may read it (as with the master key beside it).
        {
            use std::io::Write;
            use std::os::unix::fs::OpenOptionsExt;
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&temp)
                .map_err(RuntimeError::state("writing", &temp))?;
            file.write_all(&bytes)
                .map_err(RuntimeError::state("writing", &temp))?;
        }
        std::fs::rename(&temp, &path).map_err(RuntimeError::state("renaming to", &path))
    }

    /// Starts an exited replica again; `None` if it was stopped meanwhile.
    async fn restart(
        self: &Arc<Self>,
        id: &str,
        token: u64,
    ) -> Result<Option<(tokio::process::Child, Proc)>, RuntimeError> {
        let Some((spec, port)) = self.table.live(id, token, |s| {
            (s.replica.spec.clone(), s.replica.addr.port())
        }) else {
            return Ok(None);
        };
        let image = self.images.unpacked(&spec.image).await?;
        let launch = plan(&image, &spec, port, &self.host, &self.mark(id))?;
        let restarted = self.table.restarted(id, token, |slot| {
            // The state file records the restart count, one more already.
            let (child, process) = self.spawn(&launch, &slot.replica)?;
            slot.handle = Some(process);
            Ok((child, process))
        });
        restarted.transpose()
    }

    /// Waits for the watched process to end: (exit code, signal).
    async fn wait_exit(&self, id: &str, watch: &mut Watch) -> (Option<i32>, Option<i32>) {
        match watch {
            Watch::Child(child) => {
                let mut log_check = tokio::time::interval_at(
                    Instant::now() + LOG_CHECK_INTERVAL,
                    LOG_CHECK_INTERVAL,
                );
                loop {
                    tokio::select! {
                        status = child.wait() => {
                            return match status {
                                Ok(status) => (status.code(), status.signal()),
                                Err(e) => {
                                    tracing::warn!(replica = %id, error = %e, "waiting for a replica failed");
                                    (None, None)
                                }
                            };
                        }
                        _ = log_check.tick() => self.rotate_log(id),
                    }
                }
            }
            Watch::Adopted(process) => {
                let mut next_log_check = Instant::now() + LOG_CHECK_INTERVAL;
                while proc::is_alive(process.pid, process.start_time) {
                    tokio::time::sleep(POLL_INTERVAL).await;
                    if Instant::now() >= next_log_check {
                        self.rotate_log(id);
                        next_log_check = Instant::now() + LOG_CHECK_INTERVAL;
                    }
                }
                // Not gantry's child: its exit status went to its new parent.
                (None, None)
            }
            Watch::Failed => (None, None),
        }
    }

    /// Keeps a log bounded: copied to `.log.1` and truncated. The replica keeps
    /// writing to its open file, which is in append mode, so its next line lands
    /// at the new end; lines written between copy and truncation are lost.
    fn rotate_log(&self, id: &str) {
        let path = self.log_path(id);
        let Ok(meta) = std::fs::metadata(&path) else {
            return;
        };
        if meta.len() <= self.options.log_max_bytes {
            return;
        }
        let rotated = self.replicas_dir.join(format!("{id}.log.1"));
        let result = std::fs::copy(&path, &rotated).and_then(|_| {
            OpenOptions::new()
                .write(true)
                .open(&path)
                .and_then(|file| file.set_len(0))
        });
        if let Err(e) = result {
            tracing::warn!(replica = %id, error = %e, "could not rotate a replica log");
        }
    }

    async fn stop(&self, id: &str, grace: Duration) -> Result<(), RuntimeError> {
        let Some(stopping) = self.table.begin_stop(id) else {
            return Ok(());
        };
        if let Some(process) = stopping.handle {
            terminate_group(process, grace).await;
        }
        // The supervisor saw the exit as asked for; it must not act any more.
        if let Some(supervisor) = stopping.task {
            supervisor.abort();
        }
        self.table.forget(id, stopping.token, || {
            let path = self.state_path(id);
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                // The process is gone; a later runtime will find the file's pid dead
                // and forget it.
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "could not remove a replica state file")
                }
            }
        });
        Ok(())
    }
}

/// Watches one replica until it is stopped: on each unrequested exit, reports
/// it and starts the replica again after the backoff.
async fn supervise(
    inner: Arc<Inner>,
    id: String,
    token: u64,
    mut watch: Watch,
    mut process: Option<Proc>,
) {
    loop {
        let exit = inner.wait_exit(&id, &mut watch).await;
        if inner.table.is_stopping(&id, token) {
            // The stop owns the group now: its children get their grace period.
            return;
        }
        if let Some(process) = process.take() {
            proc::kill_leftovers(process.pid, process.start_time);
        }
        let policy = &inner.options.restart;
        let Some(delay) = inner.table.exited(&id, token, exit, policy, |slot| {
            slot.handle = None;
        }) else {
            return;
        };
        tokio::time::sleep(delay).await;
        match inner.restart(&id, token).await {
            Ok(Some((child, restarted))) => {
                watch = Watch::Child(child);
                process = Some(restarted);
            }
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(replica = %id, error = %e, "restarting a replica failed");
                watch = Watch::Failed;
            }
        }
    }
}

/// SIGTERM to the group, SIGKILL after `grace`; returns when the group is gone
/// (or a bounded while after SIGKILL).
async fn terminate_group(process: Proc, grace: Duration) {
    let group = Pid::from_raw(process.pid);
    // Signals go to the group only while its number is still the replica's.
    let ours = || match proc::stat(process.pid) {
        Some(s) => s.start_time == process.start_time,
        None => true,
    };
    let running = || ours() && proc::group_alive(process.pid);
    if !running() {
        return;
    }
    let _ = killpg(group, Signal::SIGTERM);
    let deadline = Instant::now() + grace;
    while running() && Instant::now() < deadline {
        tokio::time::sleep(STOP_POLL).await;
    }
    if !running() {
        return;
    }
    let _ = killpg(group, Signal::SIGKILL);
    let deadline = Instant::now() + KILL_WAIT;
    while running() && Instant::now() < deadline {
        tokio::time::sleep(STOP_POLL).await;
    }
}
