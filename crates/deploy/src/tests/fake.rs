//! Fakes for the deployer's tests, sharing one [`Cluster`]: a runtime whose
//! replicas start at once and then turn healthy, unhealthy or exit — on
//! command, or by their revision's [`Plan`] after a delay on tokio's
//! (paused) clock; load balancers whose target groups take each replica's
//! health from the cluster instead of probing it over HTTP; and a registry
//! that knows every image. The cluster records what happened, in order, and
//! the high and low water marks a rollout must stay within.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use gantry_images::{Digest, Reference};
use gantry_proxy::{
    Health, HealthCheckConfig, ProxyError, Rule, Target, TargetStatus, WindowStats,
};
use gantry_runtime::{
    BoxFuture, Replica, ReplicaEvent, ReplicaSpec, ReplicaState, Runtime, RuntimeError,
};
use tokio::sync::{broadcast, watch};

use crate::deployment::ImageRegistry;
use crate::traffic::{Balancer, LoadBalancers, Targets};

/// What the replicas of one revision do once started.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Plan {
    /// Pass their health checks after this long.
    Healthy(Duration),
    /// Fail their health checks after this long.
    Unhealthy(Duration),
    /// Exit (code 1) after this long.
    Exits(Duration),
    /// Stay Initial until a test says otherwise.
    Manual,
}

/// One thing that happened, in the order it happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Step {
    Started(String),
    Stopped(String),
    Registered(String, u32),
    Weighted(String, u32),
    Deregistered(String),
    Healthy(String),
    Unhealthy(String),
    Exited(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FakeHealth {
    Initial,
    Healthy,
    Unhealthy,
}

struct FakeReplica {
    replica: Replica,
    health: FakeHealth,
}

struct FakeTarget {
    id: String,
    addr: SocketAddr,
    weight: u32,
}

#[derive(Default)]
pub(crate) struct World {
    plans: BTreeMap<u64, Plan>,
    replicas: BTreeMap<String, FakeReplica>,
    /// Registered, not draining, by target group.
    targets: BTreeMap<String, Vec<FakeTarget>>,
    next_port: u16,
    pub(crate) steps: Vec<Step>,
    /// Most replicas running at once since the last reset.
    pub(crate) max_running: usize,
    /// Fewest replicas taking traffic (registered, weight > 0, healthy) at
    /// once since the last reset, by target group.
    pub(crate) min_serving: BTreeMap<String, usize>,
    /// What `window_stats` answers, by target group and revision label,
    /// whatever the window: the tests say what the load balancer measured.
    pub(crate) windows: BTreeMap<String, BTreeMap<String, WindowStats>>,
    /// The canary header route of each target group, as last set.
    pub(crate) canary_routes: BTreeMap<String, Option<(String, String)>>,
    /// Load balancers started, by the address asked for.
    pub(crate) listeners: Vec<SocketAddr>,
    /// Listeners shut down.
    pub(crate) closed: Vec<SocketAddr>,
}

impl World {
    /// Each target's weight in `group`, by replica id.
    pub(crate) fn weights(&self, group: &str) -> BTreeMap<String, u32> {
        self.targets
            .get(group)
            .into_iter()
            .flatten()
            .map(|t| (t.id.clone(), t.weight))
            .collect()
    }

    /// The summed weights of `revision`'s registered targets in `group`.
    pub(crate) fn revision_weight(&self, group: &str, revision: u64) -> u32 {
        self.targets
            .get(group)
            .into_iter()
            .flatten()
            .filter(|t| {
                self.replicas
                    .get(&t.id)
                    .is_some_and(|r| r.replica.spec.revision == revision)
            })
            .map(|t| t.weight)
            .sum()
    }

    /// Replica ids running, of `revision`.
    pub(crate) fn running(&self, revision: u64) -> Vec<String> {
        self.replicas
            .values()
            .filter(|r| r.replica.spec.revision == revision)
            .map(|r| r.replica.id.clone())
            .collect()
    }

    /// The spec a running replica was started with.
    pub(crate) fn replica_spec(&self, id: &str) -> Option<ReplicaSpec> {
        self.replicas.get(id).map(|r| r.replica.spec.clone())
    }

    pub(crate) fn running_count(&self) -> usize {
        self.replicas.len()
    }

    /// Replicas taking traffic in `group`: registered with a weight and
    /// healthy.
    pub(crate) fn serving(&self, group: &str) -> Vec<String> {
        self.targets
            .get(group)
            .into_iter()
            .flatten()
            .filter(|t| {
                t.weight > 0
                    && self
                        .replicas
                        .get(&t.id)
                        .is_some_and(|r| r.health == FakeHealth::Healthy)
            })
            .map(|t| t.id.clone())
            .collect()
    }

    fn observe(&mut self) {
        self.max_running = self.max_running.max(self.replicas.len());
        let groups: Vec<String> = self.targets.keys().cloned().collect();
        for group in groups {
            let serving = self.serving(&group).len();
            let min = self.min_serving.entry(group).or_insert(serving);
            *min = (*min).min(serving);
        }
    }
}

/// The shared state of every fake.
pub(crate) struct Cluster {
    world: Mutex<World>,
    changes: watch::Sender<()>,
    events: broadcast::Sender<ReplicaEvent>,
}

impl Cluster {
    pub(crate) fn new() -> Arc<Cluster> {
        Arc::new(Cluster {
            world: Mutex::new(World {
                next_port: 40000,
                ..World::default()
            }),
            changes: watch::Sender::new(()),
            events: broadcast::Sender::new(1024),
        })
    }

    pub(crate) fn world(&self) -> MutexGuard<'_, World> {
        self.world.lock().unwrap()
    }

    /// Changes the world and wakes every waiter.
    fn change<T>(&self, f: impl FnOnce(&mut World) -> T) -> T {
        let out = {
            let mut world = self.world();
            let out = f(&mut world);
            world.observe();
            out
        };
        self.changes.send_replace(());
        out
    }

    /// What replicas of `revision` do from now on (default: healthy after
    /// one second).
    pub(crate) fn plan(&self, revision: u64, plan: Plan) {
        self.world().plans.insert(revision, plan);
    }

    /// Starts the water marks afresh from the current state.
    pub(crate) fn reset_marks(&self) {
        self.change(|w| {
            w.max_running = 0;
            w.min_serving.clear();
            w.steps.clear();
        });
    }

    /// What the load balancer measured for `revision` in `group`.
    pub(crate) fn measure(&self, group: &str, revision: u64, stats: WindowStats) {
        self.change(|w| {
            w.windows
                .entry(group.to_owned())
                .or_default()
                .insert(revision.to_string(), stats);
        });
    }

    /// A replica fails its health checks.
    pub(crate) fn set_unhealthy(&self, id: &str) {
        self.set_health(id, FakeHealth::Unhealthy);
    }

    pub(crate) fn set_healthy(&self, id: &str) {
        self.set_health(id, FakeHealth::Healthy);
    }

    fn set_health(&self, id: &str, health: FakeHealth) {
        self.change(|w| {
            if let Some(r) = w.replicas.get_mut(id)
                && r.health != health
            {
                r.health = health;
                w.steps.push(match health {
                    FakeHealth::Healthy => Step::Healthy(id.to_owned()),
                    _ => Step::Unhealthy(id.to_owned()),
                });
            }
        });
    }

    fn exit(&self, id: &str) {
        let exited = self.change(|w| match w.replicas.get_mut(id) {
            Some(r) => {
                r.health = FakeHealth::Unhealthy;
                r.replica.state = ReplicaState::Exited { code: Some(1) };
                w.steps.push(Step::Exited(id.to_owned()));
                true
            }
            None => false,
        });
        if exited {
            let _ = self.events.send(ReplicaEvent::Exited {
                id: id.to_owned(),
                code: Some(1),
                signal: None,
            });
        }
    }

    /// A replica the runtime runs without any deployer having started it
    /// (one a server left behind), healthy.
    pub(crate) fn adopt(&self, spec: ReplicaSpec) {
        self.change(|w| {
            w.next_port += 1;
            let addr = SocketAddr::from(([127, 0, 0, 1], w.next_port));
            let id = spec.id.clone();
            let replica = Replica {
                id: id.clone(),
                addr,
                spec,
                state: ReplicaState::Running,
                restarts: 0,
                last_exit: None,
            };
            w.replicas.insert(
                id,
                FakeReplica {
                    replica,
                    health: FakeHealth::Healthy,
                },
            );
        });
    }

    /// The load balancers die with their server: a new one starts with
    /// empty target groups.
    pub(crate) fn forget_targets(&self) {
        self.change(|w| w.targets.clear());
    }

    /// A replica dies while no server watches: gone without an event.
    pub(crate) fn vanish(&self, id: &str) {
        self.change(|w| w.replicas.remove(id));
    }

    /// Waits, on tokio's clock, until `done` holds of the world; panics
    /// after a (virtual) minute.
    pub(crate) async fn wait_until(&self, what: &str, done: impl Fn(&World) -> bool) {
        let mut changes = self.changes.subscribe();
        let waited = tokio::time::timeout(Duration::from_secs(60), async {
            loop {
                changes.borrow_and_update();
                if done(&self.world()) {
                    return;
                }
                changes.changed().await.unwrap();
            }
        })
        .await;
        assert!(waited.is_ok(), "timed out waiting until {what}");
    }
}

/// The fake runtime.
pub(crate) struct FakeRuntime(pub(crate) Arc<Cluster>);

impl Runtime for FakeRuntime {
    fn kind(&self) -> &'static str {
        "process"
    }

    fn start<'a>(&'a self, spec: ReplicaSpec) -> BoxFuture<'a, Result<Replica, RuntimeError>> {
        Box::pin(async move {
            let cluster = self.0.clone();
            let (replica, plan) = cluster.change(|w| {
                w.next_port += 1;
                let replica = Replica {
                    id: spec.id.clone(),
                    addr: SocketAddr::from(([127, 0, 0, 1], w.next_port)),
                    spec: spec.clone(),
                    state: ReplicaState::Running,
                    restarts: 0,
                    last_exit: None,
                };
                w.replicas.insert(
                    spec.id.clone(),
                    FakeReplica {
                        replica: replica.clone(),
                        health: FakeHealth::Initial,
                    },
                );
                w.steps.push(Step::Started(spec.id.clone()));
                let plan = w
                    .plans
                    .get(&spec.revision)
                    .copied()
                    .unwrap_or(Plan::Healthy(Duration::from_secs(1)));
                (replica, plan)
            });
            let _ = cluster.events.send(ReplicaEvent::Started {
                id: replica.id.clone(),
            });
            let id = replica.id.clone();
            match plan {
                Plan::Manual => {}
                Plan::Healthy(after) => {
                    tokio::spawn(async move {
                        tokio::time::sleep(after).await;
                        cluster.set_health(&id, FakeHealth::Healthy);
                    });
                }
                Plan::Unhealthy(after) => {
                    tokio::spawn(async move {
                        tokio::time::sleep(after).await;
                        cluster.set_health(&id, FakeHealth::Unhealthy);
                    });
                }
                Plan::Exits(after) => {
                    tokio::spawn(async move {
                        tokio::time::sleep(after).await;
                        cluster.exit(&id);
                    });
                }
            }
            Ok(replica)
        })
    }

    fn stop<'a>(
        &'a self,
        id: &'a str,
        _grace: Duration,
    ) -> BoxFuture<'a, Result<(), RuntimeError>> {
        Box::pin(async move {
            let stopped = self.0.change(|w| {
                let stopped = w.replicas.remove(id).is_some();
                if stopped {
                    w.steps.push(Step::Stopped(id.to_owned()));
                }
                stopped
            });
            if stopped {
                let _ = self
                    .0
                    .events
                    .send(ReplicaEvent::Stopped { id: id.to_owned() });
            }
            Ok(())
        })
    }

    fn list<'a>(&'a self) -> BoxFuture<'a, Result<Vec<Replica>, RuntimeError>> {
        Box::pin(async move {
            Ok(self
                .0
                .world()
                .replicas
                .values()
                .map(|r| r.replica.clone())
                .collect())
        })
    }

    fn subscribe(&self) -> broadcast::Receiver<ReplicaEvent> {
        self.0.events.subscribe()
    }
}

/// The fake load balancers: no sockets.
pub(crate) struct FakeLoadBalancers(pub(crate) Arc<Cluster>);

impl LoadBalancers for FakeLoadBalancers {
    fn start(
        &self,
        listen: SocketAddr,
        _rules: Vec<Rule>,
    ) -> BoxFuture<'_, Result<Box<dyn Balancer>, ProxyError>> {
        let cluster = self.0.clone();
        cluster.change(|w| w.listeners.push(listen));
        Box::pin(async move { Ok(Box::new(FakeBalancer { cluster, listen }) as Box<dyn Balancer>) })
    }
}

struct FakeBalancer {
    cluster: Arc<Cluster>,
    listen: SocketAddr,
}

impl Balancer for FakeBalancer {
    fn local_addr(&self) -> SocketAddr {
        self.listen
    }

    fn set_rules(&self, _rules: Vec<Rule>) {}

    fn target_group(&self, service: &str) -> Arc<dyn Targets> {
        Arc::new(FakeTargets {
            cluster: self.cluster.clone(),
            name: service.to_owned(),
        })
    }

    fn shutdown(self: Box<Self>) -> BoxFuture<'static, ()> {
        self.cluster.change(|w| w.closed.push(self.listen));
        Box::pin(async {})
    }
}

/// A target group whose targets' health is their replicas' health in the
/// cluster. Deregistering drains at once (no request is ever in flight).
struct FakeTargets {
    cluster: Arc<Cluster>,
    name: String,
}

impl FakeTargets {
    fn health_of(&self, id: &str) -> Option<Health> {
        let world = self.cluster.world();
        world.targets.get(&self.name)?.iter().find(|t| t.id == id)?;
        Some(match world.replicas.get(id).map(|r| r.health) {
            Some(FakeHealth::Healthy) => Health::Healthy,
            Some(FakeHealth::Unhealthy) => Health::Unhealthy,
            Some(FakeHealth::Initial) | None => Health::Initial,
        })
    }
}

impl Targets for FakeTargets {
    fn register(&self, target: Target) {
        self.cluster.change(|w| {
            let group = w.targets.entry(self.name.clone()).or_default();
            group.retain(|t| t.id != target.id);
            group.push(FakeTarget {
                id: target.id.clone(),
                addr: target.addr,
                weight: target.weight,
            });
            w.steps.push(Step::Registered(target.id, target.weight));
        });
    }

    fn set_weight(&self, id: &str, weight: u32) -> Result<(), ProxyError> {
        self.cluster.change(|w| {
            let target = w
                .targets
                .get_mut(&self.name)
                .and_then(|g| g.iter_mut().find(|t| t.id == id))
                .ok_or_else(|| ProxyError::UnknownTarget {
                    group: self.name.clone(),
                    target: id.to_owned(),
                })?;
            target.weight = weight;
            w.steps.push(Step::Weighted(id.to_owned(), weight));
            Ok(())
        })
    }

    fn deregister(&self, id: &str, _drain: Duration) -> BoxFuture<'static, ()> {
        self.cluster.change(|w| {
            if let Some(group) = w.targets.get_mut(&self.name)
                && let Some(i) = group.iter().position(|t| t.id == id)
            {
                group.remove(i);
                w.steps.push(Step::Deregistered(id.to_owned()));
            }
        });
        Box::pin(async {})
    }

    fn set_health_check(&self, _config: HealthCheckConfig) -> Result<(), ProxyError> {
        Ok(())
    }

    fn targets(&self) -> Vec<TargetStatus> {
        let targets: Vec<(String, SocketAddr, u32)> = self
            .cluster
            .world()
            .targets
            .get(&self.name)
            .into_iter()
            .flatten()
            .map(|t| (t.id.clone(), t.addr, t.weight))
            .collect();
        targets
            .into_iter()
            .map(|(id, addr, weight)| TargetStatus {
                health: self.health_of(&id).unwrap_or(Health::Initial),
                id,
                addr,
                in_flight: 0,
                weight,
                last_failure: None,
            })
            .collect()
    }

    fn wait_healthy<'a>(
        &'a self,
        id: &'a str,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<(), ProxyError>> {
        Box::pin(async move {
            let mut changes = self.cluster.changes.subscribe();
            let deadline = tokio::time::Instant::now() + timeout;
            loop {
                changes.borrow_and_update();
                match self.health_of(id) {
                    None => {
                        return Err(ProxyError::UnknownTarget {
                            group: self.name.clone(),
                            target: id.to_owned(),
                        });
                    }
                    Some(Health::Healthy) => return Ok(()),
                    Some(Health::Unhealthy) => {
                        return Err(ProxyError::TargetUnhealthy {
                            group: self.name.clone(),
                            target: id.to_owned(),
                            reason: "the fake says so".to_owned(),
                        });
                    }
                    _ => {}
                }
                if tokio::time::timeout_at(deadline, changes.changed())
                    .await
                    .is_err()
                {
                    return Err(ProxyError::HealthTimeout {
                        group: self.name.clone(),
                        target: id.to_owned(),
                        timeout,
                    });
                }
            }
        })
    }

    fn window_stats(&self, _window: Duration) -> BTreeMap<String, WindowStats> {
        self.window_stats_of()
    }

    fn set_canary_route(&self, route: Option<(String, String)>) -> Result<(), String> {
        self.cluster.change(|w| {
            w.canary_routes.insert(self.name.clone(), route);
        });
        Ok(())
    }
}

impl FakeTargets {
    fn window_stats_of(&self) -> BTreeMap<String, WindowStats> {
        self.cluster
            .world()
            .windows
            .get(&self.name)
            .cloned()
            .unwrap_or_default()
    }
}

/// A registry that has every image: its digest is derived from its name.
pub(crate) struct FakeImages;

impl ImageRegistry for FakeImages {
    fn manifest_digest<'a>(
        &'a self,
        image: &'a Reference,
    ) -> BoxFuture<'a, Result<Option<Digest>, String>> {
        Box::pin(async move {
            if let Some(digest) = image.digest() {
                return Ok(Some(digest.clone()));
            }
            let name = image.to_string();
            let hash = name.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
                (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
            });
            Ok(Some(
                Digest::parse(&format!("sha256:{hash:064x}")).map_err(|e| e.to_string())?,
            ))
        })
    }
}
