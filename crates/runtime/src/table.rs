//! The replica table both runtimes keep, and the one [`Runtime`] impl they share.
//!
//! A runtime is a [`Driver`] (how a replica is started, stopped and watched:
//! host processes or containers) over a [`ReplicaTable`]: the replicas it
//! owns, by id, each in a [`Slot`] with its state, its restart streak and the
//! task that watches or restarts it. The table does what both runtimes do the
//! same way: it reserves an id (and a port) for a start, lists replicas,
//! publishes their events, records exits and restarts with the backoff, forgets
//! stopped replicas, and aborts its tasks when the runtime is dropped.
//!
//! Every slot carries a *token*, new for each replica, so that a late watcher,
//! start or restart of a stopped replica never touches a later one with the
//! same id: everything that acts on a slot after awaiting checks, under the
//! lock, that the slot still holds its token and is not being stopped
//! ([`ReplicaTable::live`]).

use std::collections::HashMap;
use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::broadcast;
use tokio::task::AbortHandle;
use tokio::time::Instant;

use crate::error::RuntimeError;
use crate::events::EventHub;
use crate::replica::{Replica, ReplicaEvent, ReplicaSpec, ReplicaState};
use crate::restart::{RestartPolicy, Streak};
use crate::{BoxFuture, PrunedImage, Runtime};

/// What a runtime does its own way; the table and the [`Runtime`] impl below
/// do the rest. [`ProcessRuntime`](crate::ProcessRuntime) and
/// [`DockerRuntime`](crate::DockerRuntime) implement it, and so get
/// [`Runtime`].
pub(crate) trait Driver: Send + Sync {
    /// What the runtime keeps about a running replica besides the
    /// [`Replica`] (the process runtime: its process).
    type Handle: Send + Default + Clone;

    /// [`Runtime::kind`].
    const KIND: &'static str;

    /// The runtime's replicas.
    fn table(&self) -> &ReplicaTable<Self::Handle>;

    /// [`Runtime::start`]: reserve the id in the table, start the replica,
    /// mark it [`started`](ReplicaTable::started).
    fn start_replica(
        &self,
        spec: ReplicaSpec,
    ) -> impl Future<Output = Result<Replica, RuntimeError>> + Send + '_;

    /// [`Runtime::stop`]: [`begin_stop`](ReplicaTable::begin_stop), end what
    /// runs, [`forget`](ReplicaTable::forget).
    fn stop_replica<'a>(
        &'a self,
        id: &'a str,
        grace: Duration,
    ) -> impl Future<Output = Result<(), RuntimeError>> + Send + 'a;

    /// [`Runtime::prune_images`]; nothing to prune by default.
    fn prune_unused_images(
        &self,
        dry_run: bool,
    ) -> impl Future<Output = Result<Vec<PrunedImage>, RuntimeError>> + Send + '_ {
        let _ = dry_run;
        async { Ok(Vec::new()) }
    }

    /// [`Runtime::exec`]; not supported by default.
    fn exec_in<'a>(
        &'a self,
        id: &'a str,
        argv: &'a [String],
        timeout: Duration,
    ) -> impl Future<Output = Result<crate::ExecOutput, String>> + Send + 'a {
        let _ = (id, argv, timeout);
        async {
            Err(format!(
                "the {} runtime runs no command in a replica",
                Self::KIND
            ))
        }
    }

    /// [`Runtime::logs`]; nothing kept by default.
    fn replica_logs<'a>(
        &'a self,
        id: &'a str,
        query: crate::LogQuery,
    ) -> impl Future<Output = Result<crate::ReplicaOutput, RuntimeError>> + Send + 'a {
        let _ = (id, query);
        async { Ok(crate::ReplicaOutput::default()) }
    }
}

impl<D: Driver> Runtime for D {
    fn kind(&self) -> &'static str {
        D::KIND
    }

    fn start<'a>(&'a self, spec: ReplicaSpec) -> BoxFuture<'a, Result<Replica, RuntimeError>> {
        Box::pin(self.start_replica(spec))
    }

    fn stop<'a>(&'a self, id: &'a str, grace: Duration) -> BoxFuture<'a, Result<(), RuntimeError>> {
        Box::pin(self.stop_replica(id, grace))
    }

    fn list<'a>(&'a self) -> BoxFuture<'a, Result<Vec<Replica>, RuntimeError>> {
        Box::pin(async move { Ok(self.table().list()) })
    }

    fn subscribe(&self) -> broadcast::Receiver<ReplicaEvent> {
        self.table().events.subscribe()
    }

    fn prune_images(&self, dry_run: bool) -> BoxFuture<'_, Result<Vec<PrunedImage>, RuntimeError>> {
        Box::pin(self.prune_unused_images(dry_run))
    }

    fn logs<'a>(
        &'a self,
        id: &'a str,
        query: crate::LogQuery,
    ) -> BoxFuture<'a, Result<crate::ReplicaOutput, RuntimeError>> {
        Box::pin(self.replica_logs(id, query))
    }

    fn exec<'a>(
        &'a self,
        id: &'a str,
        argv: &'a [String],
        timeout: Duration,
    ) -> BoxFuture<'a, Result<crate::ExecOutput, String>> {
        Box::pin(self.exec_in(id, argv, timeout))
    }
}

/// The replicas a runtime owns, by id, and the events it reports about them.
pub(crate) struct ReplicaTable<H> {
    slots: Mutex<HashMap<String, Slot<H>>>,
    next_token: AtomicU64,
    events: EventHub,
    /// Tasks that watch the whole runtime rather than one replica.
    watchers: Mutex<Vec<AbortHandle>>,
}

/// A replica as a runtime tracks it.
pub(crate) struct Slot<H> {
    pub(crate) replica: Replica,
    /// Tells this replica from a later one with the same id.
    pub(crate) token: u64,
    /// A stop was asked for: nothing restarts it any more.
    pub(crate) stopping: bool,
    /// The task watching it (process) or restarting it (docker).
    pub(crate) task: Option<AbortHandle>,
    /// Its failing streak, which sets the restart backoff.
    streak: Streak,
    /// When it was last started (or a restart was tried).
    started: Instant,
    /// What the runtime keeps about it.
    pub(crate) handle: H,
}

/// Where a reserved replica will listen.
pub(crate) enum Port {
    /// A free loopback port, picked now, while the table is locked, so that
    /// two starts never get the same one (the process runtime).
    PickNow,
    /// Set when the replica is [`started`](ReplicaTable::started) (docker:
    /// once publishing the port worked).
    Later,
}

/// A replica being stopped: what [`ReplicaTable::begin_stop`] took out of
/// its slot.
pub(crate) struct Stopping<H> {
    pub(crate) token: u64,
    pub(crate) handle: H,
    /// Its task; the runtime aborts it when the task may no longer act.
    pub(crate) task: Option<AbortHandle>,
}

impl<H: Default + Clone> ReplicaTable<H> {
    pub(crate) fn new() -> ReplicaTable<H> {
        ReplicaTable {
            slots: Mutex::new(HashMap::new()),
            next_token: AtomicU64::new(1),
            events: EventHub::new(),
            watchers: Mutex::new(Vec::new()),
        }
    }

    /// The slots, locked. Never held across an await.
    pub(crate) fn lock(&self) -> MutexGuard<'_, HashMap<String, Slot<H>>> {
        // A panic elsewhere while holding the lock leaves the map usable: every
        // update to it is a single assignment.
        self.slots.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Every replica, sorted by id.
    pub(crate) fn list(&self) -> Vec<Replica> {
        let mut replicas: Vec<Replica> = self.lock().values().map(|s| s.replica.clone()).collect();
        replicas.sort_by(|a, b| a.id.cmp(&b.id));
        replicas
    }

    /// Logs and publishes an event.
    pub(crate) fn emit(&self, event: ReplicaEvent) {
        self.events.emit(event);
    }

    /// A task to abort when the runtime is dropped.
    pub(crate) fn add_watcher(&self, task: AbortHandle) {
        self.watchers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(task);
    }

    /// Aborts every task: the runtime is dropped. What runs keeps running.
    pub(crate) fn abort_tasks(&self) {
        for task in self
            .watchers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .drain(..)
        {
            task.abort();
        }
        for slot in self.lock().values_mut() {
            if let Some(task) = slot.task.take() {
                task.abort();
            }
        }
    }

    /// Claims the id with a `Starting` slot, so a second start of the same id
    /// fails at once and `list` shows the replica while it is pulled. The slot
    /// goes again unless the start [keeps](Reservation::keep) it.
    pub(crate) fn reserve(
        &self,
        spec: &ReplicaSpec,
        port: Port,
    ) -> Result<Reservation<'_, H>, RuntimeError> {
        let mut slots = self.lock();
        if slots.contains_key(&spec.id) {
            return Err(RuntimeError::AlreadyExists {
                id: spec.id.clone(),
            });
        }
        let port = match port {
            Port::PickNow => free_port(&slots).map_err(|reason| RuntimeError::PortUnavailable {
                id: spec.id.clone(),
                reason,
            })?,
            Port::Later => 0,
        };
        let replica = Replica {
            id: spec.id.clone(),
            addr: loopback(port),
            spec: spec.clone(),
            state: ReplicaState::Starting,
            restarts: 0,
            last_exit: None,
        };
        let token = self.insert(&mut slots, replica, H::default());
        Ok(Reservation {
            table: self,
            id: spec.id.clone(),
            token,
            port,
            kept: false,
        })
    }

    /// Takes over a replica an earlier runtime left running, unless one with
    /// its id is known; `watch` gets its token and may return its task.
    pub(crate) fn adopt(
        &self,
        replica: Replica,
        handle: H,
        watch: impl FnOnce(u64) -> Option<AbortHandle>,
    ) -> bool {
        let mut slots = self.lock();
        if slots.contains_key(&replica.id) {
            return false;
        }
        let id = replica.id.clone();
        let token = self.insert(&mut slots, replica, handle);
        let task = watch(token);
        if let Some(slot) = slots.get_mut(&id) {
            slot.task = task;
        }
        true
    }

    fn insert(&self, slots: &mut HashMap<String, Slot<H>>, replica: Replica, handle: H) -> u64 {
        let token = self.next_token.fetch_add(1, Ordering::Relaxed);
        slots.insert(
            replica.id.clone(),
            Slot {
                replica,
                token,
                stopping: false,
                task: None,
                streak: Streak::default(),
                started: Instant::now(),
                handle,
            },
        );
        token
    }

    /// Runs `f` on the replica's slot if it still holds `token` and is not
    /// being stopped; `None` otherwise.
    pub(crate) fn live<R>(
        &self,
        id: &str,
        token: u64,
        f: impl FnOnce(&mut Slot<H>) -> R,
    ) -> Option<R> {
        self.lock()
            .get_mut(id)
            .filter(|s| s.token == token && !s.stopping)
            .map(f)
    }

    /// Whether the replica was stopped (or replaced by another with its id).
    pub(crate) fn is_stopping(&self, id: &str, token: u64) -> bool {
        self.live(id, token, |_| ()).is_none()
    }

    /// A first start: the slot is marked `Running`, then `start` runs on it
    /// with the lock held (so a stop cannot slip in between); if it succeeds,
    /// `Started` is reported. If it fails the slot is put back. `None`: the
    /// replica was stopped meanwhile.
    pub(crate) fn started<R, E>(
        &self,
        id: &str,
        token: u64,
        start: impl FnOnce(&mut Slot<H>) -> Result<R, E>,
    ) -> Option<Result<R, E>> {
        self.run(id, token, 0, start)
    }

    /// [`started`](Self::started) for a restart: the replica's restart count
    /// grows by one if `start` succeeds (it is already one more while `start`
    /// runs).
    pub(crate) fn restarted<R, E>(
        &self,
        id: &str,
        token: u64,
        start: impl FnOnce(&mut Slot<H>) -> Result<R, E>,
    ) -> Option<Result<R, E>> {
        self.run(id, token, 1, start)
    }

    fn run<R, E>(
        &self,
        id: &str,
        token: u64,
        restarts: u32,
        start: impl FnOnce(&mut Slot<H>) -> Result<R, E>,
    ) -> Option<Result<R, E>> {
        self.live(id, token, |slot| {
            let before = (slot.replica.state, slot.replica.restarts);
            slot.replica.state = ReplicaState::Running;
            slot.replica.restarts = slot.replica.restarts.saturating_add(restarts);
            // A failed try counts as a run that ended at once.
            slot.started = Instant::now();
            let result = start(slot);
            match &result {
                Ok(_) => self
                    .events
                    .emit(ReplicaEvent::Started { id: id.to_owned() }),
                Err(_) => (slot.replica.state, slot.replica.restarts) = before,
            }
            result
        })
    }

    /// Reports an exit nobody asked for (`Exited`, then `Restarting`) and
    /// returns the backoff before the restart; `forget` clears what the
    /// runtime kept about the run. `None`: the replica was stopped.
    pub(crate) fn exited(
        &self,
        id: &str,
        token: u64,
        (code, signal): (Option<i32>, Option<i32>),
        policy: &RestartPolicy,
        forget: impl FnOnce(&mut Slot<H>),
    ) -> Option<Duration> {
        self.live(id, token, |slot| {
            forget(slot);
            let (attempt, delay) = slot.streak.next(policy, slot.started.elapsed());
            slot.replica.state = ReplicaState::Exited { code };
            slot.replica.last_exit = Some(crate::ReplicaExit { code, signal });
            self.events.emit(ReplicaEvent::Exited {
                id: id.to_owned(),
                code,
                signal,
            });
            slot.replica.state = ReplicaState::Restarting;
            self.events.emit(ReplicaEvent::Restarting {
                id: id.to_owned(),
                attempt,
                delay,
            });
            delay
        })
    }

    /// Marks the replica `Stopped`, so nothing restarts it, and takes its
    /// task; `None` if it is unknown.
    pub(crate) fn begin_stop(&self, id: &str) -> Option<Stopping<H>> {
        let mut slots = self.lock();
        let slot = slots.get_mut(id)?;
        slot.stopping = true;
        slot.replica.state = ReplicaState::Stopped;
        Some(Stopping {
            token: slot.token,
            handle: slot.handle.clone(),
            task: slot.task.take(),
        })
    }

    /// Forgets a stopped replica, unless another with its id took its place:
    /// runs `cleanup` (outside the lock), then reports `Stopped`.
    pub(crate) fn forget(&self, id: &str, token: u64, cleanup: impl FnOnce()) {
        let removed = {
            let mut slots = self.lock();
            match slots.get(id) {
                Some(slot) if slot.token == token => slots.remove(id),
                _ => None,
            }
        };
        if let Some(slot) = removed {
            if let Some(task) = slot.task {
                task.abort();
            }
            cleanup();
            self.events
                .emit(ReplicaEvent::Stopped { id: id.to_owned() });
        }
    }

    /// A free loopback port no replica holds (see [`Port::PickNow`]).
    pub(crate) fn free_port(&self) -> Result<u16, String> {
        free_port(&self.lock())
    }
}

/// A `Starting` slot that is removed again unless the start succeeds, also
/// when the start's future is dropped midway.
pub(crate) struct Reservation<'a, H: Default + Clone> {
    table: &'a ReplicaTable<H>,
    id: String,
    token: u64,
    port: u16,
    kept: bool,
}

impl<H: Default + Clone> Reservation<'_, H> {
    pub(crate) fn token(&self) -> u64 {
        self.token
    }

    /// The port picked with [`Port::PickNow`].
    pub(crate) fn port(&self) -> u16 {
        self.port
    }

    /// The start succeeded: the slot stays.
    pub(crate) fn keep(mut self) {
        self.kept = true;
    }
}

impl<H: Default + Clone> Drop for Reservation<'_, H> {
    fn drop(&mut self) {
        if self.kept {
            return;
        }
        let mut slots = self.table.lock();
        if slots.get(&self.id).is_some_and(|s| s.token == self.token) {
            slots.remove(&self.id);
        }
    }
}

pub(crate) fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, port))
}

/// A loopback port free now and not given to another replica (which may not
/// have bound it yet, or waits to be restarted on it). Another program may
/// still take it before the replica binds it; the replica then fails, and is
/// restarted on the same port.
fn free_port<H>(slots: &HashMap<String, Slot<H>>) -> Result<u16, String> {
    let mut last = String::from("no port tried");
    for _ in 0..32 {
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .and_then(|listener| listener.local_addr())
            .map(|addr| addr.port());
        match port {
            Ok(port) if !slots.values().any(|s| s.replica.addr.port() == port) => return Ok(port),
            Ok(port) => last = format!("port {port} belongs to another replica"),
            Err(e) => last = e.to_string(),
        }
    }
    Err(last)
}
