//! A rolling deployment of one revision, with the circuit breaker; and the
//! start of a progressive one's new replica set beside the running one
//! ([`Rollout::start_beside`], which `crate::shift` continues).
//!
//! New replicas start in batches that keep the total within `max_percent`;
//! each joins the target group and counts only once the load balancer finds
//! it healthy. After each batch, as many old replicas as new healthy ones
//! are drained and stopped, so the healthy count never drops below
//! `min_healthy_percent`. A replica that exits, or turns Unhealthy, or stays
//! unhealthy past its start timeout, is a failure: it is stopped and
//! replaced, and at the breaker's threshold the deployment stops at once.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use gantry_images::Reference;
use gantry_proxy::Target;
use gantry_runtime::{Replica, ReplicaEvent, ReplicaSpec, Runtime};

use crate::deployer::DeployLog;
use crate::error::DeployError;
use crate::revision::Revision;
use crate::traffic::Targets;

/// A running replica as the deployer tracks it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ReplicaRef {
    pub(crate) id: String,
    pub(crate) revision: u64,
    pub(crate) addr: SocketAddr,
}

/// The replica spec of a revision's `seq`-th replica.
pub(crate) fn replica_spec(
    r: &Revision,
    seq: u32,
    env: &[(String, String)],
) -> Result<ReplicaSpec, String> {
    let suffix = uuid::Uuid::now_v7().simple().to_string();
    let id = format!(
        "{}-{}-r{}-{seq}-{}",
        r.environment,
        r.service,
        r.number,
        &suffix[suffix.len() - 6..]
    );
    let image = Reference::parse(&r.image)
        .map_err(|e| format!("revision {} names image {}: {e}", r.number, r.image))?;
    Ok(ReplicaSpec {
        id,
        environment: r.environment.clone(),
        service: r.service.clone(),
        revision: r.number,
        image,
        command: r.command.clone(),
        env: env.to_vec(),
        port: r.port,
        memory: r.memory,
        cpus: r.cpus,
        labels: BTreeMap::new(),
        host_network: r.host_network,
    }
    .with_user(r.user.clone()))
}

/// What a rollout did, for the caller to record.
pub(crate) struct RolloutResult {
    /// The replicas now serving (the new revision's on success).
    pub(crate) serving: Vec<ReplicaRef>,
    pub(crate) failures: u32,
}

/// A rollout stopped by the circuit breaker: the old replicas still
/// running and registered, the failures counted, the last reason.
pub(crate) struct Tripped {
    pub(crate) remaining_old: Vec<ReplicaRef>,
    pub(crate) failures: u32,
    pub(crate) last: String,
}

pub(crate) struct Rollout<'a> {
    pub(crate) runtime: &'a Arc<dyn Runtime>,
    pub(crate) group: &'a dyn Targets,
    pub(crate) revision: &'a Revision,
    pub(crate) env_vars: &'a [(String, String)],
    pub(crate) log: &'a dyn DeployLog,
    /// Without a breaker (a rollback restoring the previous revision) the
    /// rollout keeps replacing failed replicas up to a hard limit.
    pub(crate) breaker: bool,
}

impl Rollout<'_> {
    /// A rolling deployment (progressive ones start their new set with
    /// [`Rollout::start_beside`], then `crate::shift` moves the traffic).
    pub(crate) async fn run(
        &self,
        old: Vec<ReplicaRef>,
    ) -> Result<Result<RolloutResult, Tripped>, DeployError> {
        self.rolling(old).await
    }

    /// Starts the revision's full set beside `old` with weight 0 (in the
    /// target group, health-checked, sent nothing) and returns it once
    /// every replica is healthy; failures are replaced until the circuit
    /// breaker trips, and then the new replicas are stopped and `old`,
    /// untouched, keeps all the traffic.
    pub(crate) async fn start_beside(
        &self,
        old: &[ReplicaRef],
    ) -> Result<Vec<ReplicaRef>, Tripped> {
        let r = self.revision;
        let n = r.replicas as usize;
        let threshold = if self.breaker {
            r.breaker_threshold.max(1)
        } else {
            50
        };
        self.log.line(&format!(
            "Starting {n} replica(s) of revision {} beside {} of the running revision, at weight 0",
            r.number,
            old.len()
        ));
        let mut green: Vec<ReplicaRef> = Vec::new();
        let mut failures = 0u32;
        let mut last = String::new();
        let mut seq = 0u32;
        while green.len() < n {
            let mut starts = Vec::new();
            for _ in green.len()..n {
                seq += 1;
                starts.push(self.start_one_weighted(seq, 0));
            }
            for outcome in futures_util::future::join_all(starts).await {
                match outcome {
                    Ok(replica) => green.push(replica),
                    Err(reason) => {
                        failures += 1;
                        self.log.line(&format!(
                            "New replica failed ({failures}/{threshold}): {reason}"
                        ));
                        last = reason;
                    }
                }
            }
            if failures >= threshold {
                self.log.line(&format!(
                    "Circuit breaker tripped after {failures} failure(s); the running revision keeps all traffic."
                ));
                for replica in &green {
                    self.retire(replica).await;
                }
                return Err(Tripped {
                    remaining_old: old.to_vec(),
                    failures,
                    last,
                });
            }
        }
        Ok(green)
    }

    async fn rolling(
        &self,
        mut old: Vec<ReplicaRef>,
    ) -> Result<Result<RolloutResult, Tripped>, DeployError> {
        let r = self.revision;
        let n = r.replicas as usize;
        let (min_healthy, max_total) = r.bounds();
        let threshold = if self.breaker {
            r.breaker_threshold.max(1)
        } else {
            50
        };
        let mut healthy: Vec<ReplicaRef> = Vec::new();
        let mut failures = 0u32;
        let mut last_failure = String::new();
        let mut seq = 0u32;
        self.log.line(&format!(
            "Rolling {} replica(s) to revision {} ({}); keep at least {min_healthy} healthy, at most {max_total} running",
            n, r.number, r.image
        ));
        while healthy.len() < n {
            let room = max_total.saturating_sub(old.len() + healthy.len());
            if room == 0 {
                // No room to start one first: stop an old one first, as ECS
                // does when min_healthy_percent allows it.
                if !old.is_empty() && old.len() - 1 + healthy.len() >= min_healthy {
                    let o = old.remove(0);
                    self.retire(&o).await;
                    continue;
                }
                return Err(DeployError::Stalled {
                    environment: r.environment.clone(),
                    service: r.service.clone(),
                    reason: format!(
                        "{} running, at most {max_total}, at least {min_healthy} healthy",
                        old.len() + healthy.len()
                    ),
                });
            }
            let batch = room.min(n - healthy.len());
            let mut starts = Vec::new();
            for _ in 0..batch {
                seq += 1;
                starts.push(self.start_one(seq));
            }
            for outcome in futures_util::future::join_all(starts).await {
                match outcome {
                    Ok(replica) => healthy.push(replica),
                    Err(reason) => {
                        failures += 1;
                        self.log.line(&format!(
                            "Replica failed ({failures}/{threshold}): {reason}"
                        ));
                        last_failure = reason;
                    }
                }
            }
            if failures >= threshold {
                self.log.line(&format!(
                    "Circuit breaker tripped after {failures} failure(s)."
                ));
                for replica in &healthy {
                    self.retire(replica).await;
                }
                return Ok(Err(Tripped {
                    remaining_old: old,
                    failures,
                    last: last_failure,
                }));
            }
            // One old replica leaves for each new healthy one.
            while !old.is_empty() && old.len() + healthy.len() > n {
                let o = old.remove(0);
                self.retire(&o).await;
            }
        }
        for o in old.drain(..) {
            self.retire(&o).await;
        }
        Ok(Ok(RolloutResult {
            serving: healthy,
            failures,
        }))
    }

    /// Starts one replica and waits until the load balancer finds it
    /// healthy; on failure it is deregistered and stopped, and the reason
    /// returned.
    async fn start_one(&self, seq: u32) -> Result<ReplicaRef, String> {
        self.start_one_weighted(seq, 1).await
    }

    /// As `start_one`, registering the replica with `weight` (0 = checked
    /// but sent nothing, for blue/green).
    async fn start_one_weighted(&self, seq: u32, weight: u32) -> Result<ReplicaRef, String> {
        let r = self.revision;
        let spec = replica_spec(r, seq, self.env_vars)?;
        let id = spec.id.clone();
        // Subscribed before the start, so an exit at once is not missed.
        let mut events = self.runtime.subscribe();
        let replica: Replica = match self.runtime.start(spec).await {
            Ok(replica) => replica,
            Err(e) => return Err(format!("replica {id} did not start: {e}")),
        };
        self.log.line(&format!(
            "Started replica {id} at {}; waiting for its health checks",
            replica.addr
        ));
        self.group.register(
            Target::new(id.clone(), replica.addr)
                .with_weight(weight)
                .with_revision(r.number.to_string())
                .with_protocol(r.target_protocol()),
        );
        let exited = async {
            loop {
                match events.recv().await {
                    Ok(ReplicaEvent::Exited {
                        id: eid,
                        code,
                        signal,
                    }) if eid == id => {
                        return format!("replica {id} exited (code {code:?}, signal {signal:?})");
                    }
                    Ok(_) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                        std::future::pending::<()>().await
                    }
                }
            }
        };
        let outcome = tokio::select! {
            healthy = self.group.wait_healthy(&id, r.start_timeout()) => healthy.map_err(|e| format!("replica {id}: {e}")),
            reason = exited => Err(reason),
        };
        match outcome {
            Ok(()) => {
                self.log.line(&if weight == 0 {
                    format!("Replica {id} is healthy (weight 0: no traffic yet).")
                } else {
                    format!("Replica {id} is healthy and takes traffic.")
                });
                Ok(ReplicaRef {
                    id,
                    revision: r.number,
                    addr: replica.addr,
                })
            }
            Err(reason) => {
                self.group.deregister(&id, std::time::Duration::ZERO).await;
                let _ = self
                    .runtime
                    .stop(&id, std::time::Duration::from_secs(2))
                    .await;
                Err(reason)
            }
        }
    }

    /// Starts replicas until `have` reaches the revision's count (restoring
    /// a service after a restart or a failed deployment). Failures are
    /// logged and retried a bounded number of times.
    pub(crate) async fn top_up(&self, mut have: usize) -> Vec<ReplicaRef> {
        let n = self.revision.replicas as usize;
        let mut started = Vec::new();
        let mut seq = 1000;
        let mut attempts = 0;
        while have < n && attempts < 10 {
            seq += 1;
            attempts += 1;
            match self.start_one(seq).await {
                Ok(replica) => {
                    have += 1;
                    started.push(replica);
                }
                Err(reason) => self
                    .log
                    .line(&format!("Restoring a replica failed: {reason}")),
            }
        }
        started
    }

    pub(crate) async fn retire(&self, replica: &ReplicaRef) {
        self.log.line(&format!(
            "Draining replica {} (revision {}) for up to {:?}, then stopping it",
            replica.id,
            replica.revision,
            self.revision.drain()
        ));
        self.group
            .deregister(&replica.id, self.revision.drain())
            .await;
        if let Err(e) = self
            .runtime
            .stop(
                &replica.id,
                self.revision.drain().max(std::time::Duration::from_secs(2)),
            )
            .await
        {
            self.log
                .line(&format!("Stopping replica {} failed: {e}", replica.id));
        }
    }
}
