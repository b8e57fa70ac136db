//! gantry's runtimes: where a service's replicas (ECS "tasks") run.
//!
//! A *replica* is one running copy of a service revision: an OCI image
//! (referenced by digest), a command, an environment and a port. A [`Runtime`]
//! starts replicas, stops them, lists them and reports what happens to them as
//! [`ReplicaEvent`]s. The deploy logic sits on top and holds an
//! `Arc<dyn Runtime>`; the load balancer sends traffic to [`Replica::addr`] and
//! does the health checking, so a runtime's `start` returns as soon as the
//! program runs.
//!
//! Three runtimes:
//!
//! - [`ProcessRuntime`] (`process`): runs the image on the host, without
//!   isolation. The image's layers are unpacked once per digest into
//!   `DATA_DIR/rootfs/<hex>/`; the program runs with that root mapped into its
//!   paths (formats.md §4: working directory, program path and `PATH` inside the
//!   root, `PORT`, `GANTRY_ROOTFS`). Memory and CPU limits are **not** enforced.
//! - [`DockerRuntime`] (`docker`): runs the image as a container through the
//!   `docker` CLI, published on `127.0.0.1`, with memory and CPU limits.
//! - [`SwarmRuntime`] (`swarm`): runs each replica as a Docker Swarm service
//!   with one task (`gantry-<id>`), its port published in host mode; Swarm
//!   pulls and restarts, gantry's deployer still does rollouts, health and
//!   rollback (see `swarm.rs`).
//!
//! All keep their replicas in one kind of table (`table.rs`: slots by id,
//! reservations while a start pulls, listing, events, the restart backoff,
//! abort of their tasks on drop), and both get [`Runtime`] from one impl over
//! the table's `Driver` trait; each runtime's file holds only how it starts,
//! stops, watches and re-adopts a replica.
//!
//! # Invariants
//!
//! - **A replica outlives gantry.** Replicas run in their own process group (or
//!   container) and never carry `GANTRY_OWNER`, so a server restart neither
//!   kills them nor, through its orphan reaper, mistakes them for an
//!   interrupted action's processes.
//! - **Re-adoption, never duplicates, never orphans.** A runtime created on the
//!   same data dir (or Docker engine) adopts the replicas still running —
//!   matched by pid *and* process start time, so a reused pid is not mistaken
//!   for a replica — and forgets the dead ones, reporting them as exited.
//!   Stopping a replica kills its whole process group or container.
//! - **Restarts belong to gantry.** A replica that exits without being asked to
//!   is restarted with exponential backoff ([`RestartPolicy`]: 1 s, 2 s, 4 s …
//!   30 s), and every exit and restart is an event, because the deploy circuit
//!   breaker counts them. Docker's own restart policies are not used.
//! - **Unpacking never writes outside the root.** Layer entries with `..` or an
//!   absolute path are refused; symlinks met while writing are resolved as they
//!   would be inside the container, clamped at the root. OCI whiteouts apply to
//!   lower layers only. A root appears (by rename) only when complete.
//! - **Every error names its replica or image** and has a stable
//!   [`RuntimeError::code`].
//!
//! # The process runtime's data dir
//!
//! ```text
//! DATA_DIR/
//!   rootfs/<hex>/        an image's unpacked root (hex of its manifest digest)
//!   rootfs/<hex>.json    the parts of its config a launch needs
//!   rootfs/.unpack-*/    an unpack in progress (removed at start-up)
//!   replicas/<id>.json   a running replica: spec, pid, start time, port, restarts
//!   replicas/<id>.log    its stdout and stderr (<id>.log.1 after rotation)
//! ```
//!
//! Roots stay until [`Runtime::prune_images`] removes those no replica uses
//! (`gantry registry gc`); logs stay after a replica is stopped.

mod docker;
mod error;
mod events;
mod exec;
mod images;
mod launch;
mod output;
mod proc;
mod process;
mod replica;
mod restart;
mod swarm;
mod table;
mod unpack;

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

pub use docker::{DockerOptions, DockerRuntime};
pub use error::RuntimeError;
pub use exec::ExecOutput;
pub use output::{LogQuery, ReplicaOutput};
pub use process::{ProcessOptions, ProcessRuntime};
pub use replica::{Replica, ReplicaEvent, ReplicaExit, ReplicaSpec, ReplicaState, USER_LABEL};
pub use restart::RestartPolicy;
pub use swarm::SwarmRuntime;

/// A boxed, sendable future: what the object-safe [`Runtime`] methods return.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The environment variable gantry's server uses to mark an action's processes
/// for killing after a restart; replicas must never carry it.
pub const OWNER_ENV: &str = "GANTRY_OWNER";

/// Where a service's replicas run. Object-safe: held as `Arc<dyn Runtime>`.
pub trait Runtime: Send + Sync {
    /// `"process"`, `"docker"` or `"swarm"`.
    fn kind(&self) -> &'static str;

    /// Pulls the image if needed and starts the replica; returns once its
    /// process (or container) runs. It is not health-checked here: the caller's
    /// load balancer does that. The id must be new to this runtime.
    fn start<'a>(&'a self, spec: ReplicaSpec) -> BoxFuture<'a, Result<Replica, RuntimeError>>;

    /// Stops a replica: SIGTERM, then SIGKILL after `grace`; it is then
    /// forgotten. Stopping an unknown or already stopped replica succeeds.
    fn stop<'a>(&'a self, id: &'a str, grace: Duration) -> BoxFuture<'a, Result<(), RuntimeError>>;

    /// Every replica this runtime owns, including those re-adopted after a
    /// restart, sorted by id.
    fn list<'a>(&'a self) -> BoxFuture<'a, Result<Vec<Replica>, RuntimeError>>;

    /// Events from now on. The first call also receives the events since the
    /// runtime was created (those of re-adoption), so a caller that subscribes
    /// right after creating the runtime misses nothing.
    fn subscribe(&self) -> tokio::sync::broadcast::Receiver<ReplicaEvent>;

    /// Removes the images this runtime unpacked that no replica uses, or
    /// with `dry_run` only says which it would remove. A replica being
    /// started counts as using its image, and a start that comes after the
    /// removal unpacks the image again. Runtimes that unpack nothing
    /// (docker keeps images in its engine) remove nothing.
    fn prune_images(&self, dry_run: bool) -> BoxFuture<'_, Result<Vec<PrunedImage>, RuntimeError>> {
        let _ = dry_run;
        Box::pin(async { Ok(Vec::new()) })
    }

    /// What replica `id` wrote to stdout and stderr (see the `output`
    /// module): the end of it, or what came after an earlier answer's
    /// cursor. A runtime that keeps no output answers nothing.
    fn logs<'a>(
        &'a self,
        id: &'a str,
        query: LogQuery,
    ) -> BoxFuture<'a, Result<ReplicaOutput, RuntimeError>> {
        let _ = (id, query);
        Box::pin(async { Ok(ReplicaOutput::default()) })
    }

    /// Runs `argv` inside replica `id` (its root or container, environment
    /// and user) until it ends or `timeout` passes, as a command health
    /// check does (see the `exec` module). `Err` when it could not run or
    /// did not end in time; how it ended otherwise.
    fn exec<'a>(
        &'a self,
        id: &'a str,
        argv: &'a [String],
        timeout: Duration,
    ) -> BoxFuture<'a, Result<ExecOutput, String>> {
        let _ = (id, argv, timeout);
        let kind = self.kind();
        Box::pin(async move { Err(format!("the {kind} runtime runs no command in a replica")) })
    }
}

/// An unpacked image [`Runtime::prune_images`] removed (or would remove).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrunedImage {
    /// The manifest digest it was unpacked for (`sha256:…`).
    pub digest: String,
    /// Bytes of its files.
    pub bytes: u64,
}
