//! Re-adoption after a server restart. Replicas outlive servers: a new
//! server finds each service's current revision in the database, registers
//! the replicas of that revision that still run with its target group,
//! stops replicas no current revision claims (leftovers of a deployment the
//! restart interrupted), and starts the ones that are missing.
//!
//! A progressive deployment the restart interrupted (a row in
//! `deploy_shifts`) is resumed at the step it reached, with the weights it
//! had, when its new revision's replicas all still run; otherwise the
//! stable revision gets all the traffic back, the new replicas are stopped
//! and the deployment fails — traffic is never left split with nobody
//! watching.

use std::sync::Arc;

use gantry_proxy::Target;

use crate::deployer::{Deployer, EnvState, TracingLog};
use crate::error::DeployError;
use crate::revision::Revision;
use crate::rollout::{ReplicaRef, Rollout};
use crate::shift::{Installed, Shift, ShiftProgress, split};
use crate::store::ShiftRow;

impl Deployer {
    /// After a restart: registers the replicas of each service's current
    /// revision with its target group, stops strays of unfinished
    /// deployments, and starts replicas that are missing.
    pub(crate) async fn readopt(&self) -> Result<(), DeployError> {
        let currents = self.inner.db.currents().await?;
        let shifts = self.inner.db.shifts().await?;
        // The new revisions of shifts being resumed: their replicas stay.
        let mut resumed: Vec<(String, String, u64)> = Vec::new();
        let mut handled: Vec<i64> = Vec::new();
        let environments: Vec<Arc<EnvState>> = self
            .inner
            .state
            .lock()
            .await
            .environments
            .values()
            .cloned()
            .collect();
        for env in environments {
            if crate::kubernetes::is_kubernetes(&*env.spec.lock().await) {
                self.readopt_kubernetes(&env, &currents).await?;
                continue;
            }
            let Some(runtime) = env.runtime.clone() else {
                continue;
            };
            let running = runtime
                .list()
                .await
                .map_err(|e| DeployError::Runtime(e.to_string()))?;
            for (env_name, service, number) in currents.iter().filter(|(e, _, _)| *e == env.name) {
                let Some(revision) = self.inner.db.revision(env_name, service, *number).await?
                else {
                    continue;
                };
                let state = env.service(service).await;
                let group = env.lb.target_group(service);
                if let Err(e) = group.set_health_check(revision.health_check(env.runtime.as_ref()))
                {
                    tracing::warn!(%e, service, "Health check settings refused.");
                }
                group.set_stickiness(revision.stickiness());
                let mut replicas = Vec::new();
                for replica in running
                    .iter()
                    .filter(|r| r.spec.environment == env.name && r.spec.service == *service)
                {
                    if replica.spec.revision == *number {
                        group.register(
                            Target::new(replica.id.clone(), replica.addr)
                                .with_revision(number.to_string())
                                .with_protocol(revision.target_protocol()),
                        );
                        replicas.push(ReplicaRef {
                            id: replica.id.clone(),
                            revision: *number,
                            addr: replica.addr,
                        });
                    }
                }
                tracing::info!(environment = %env.name, service, revision = number, replicas = replicas.len(), "Re-adopted replicas.");
                *state.current.lock().await = Some(revision.clone());
                *state.replicas.lock().await = replicas.clone();
                if let Some(row) = shifts
                    .iter()
                    .find(|row| row.environment == env.name && row.service == *service)
                {
                    let new: Vec<ReplicaRef> = running
                        .iter()
                        .filter(|r| {
                            r.spec.environment == env.name
                                && r.spec.service == *service
                                && r.spec.revision == row.to_revision
                        })
                        .map(|r| ReplicaRef {
                            id: r.id.clone(),
                            revision: row.to_revision,
                            addr: r.addr,
                        })
                        .collect();
                    match self
                        .resume_shift(&env, row, &revision, &replicas, new)
                        .await
                    {
                        Ok(()) => {
                            handled.push(row.deployment);
                            resumed.push((env.name.clone(), service.clone(), row.to_revision));
                        }
                        Err(reason) => {
                            handled.push(row.deployment);
                            self.abandon_shift(row, revision.number, &reason).await?;
                        }
                    }
                }
                if replicas.len() < revision.replicas as usize {
                    let deployer = self.clone();
                    let env = env.clone();
                    let service = service.clone();
                    tokio::spawn(async move {
                        if let Err(error) = deployer.top_up(&env, &service, &revision).await {
                            tracing::error!(%error, service, "Restoring missing replicas failed.");
                        }
                    });
                }
            }
            // Replicas of this environment that no current revision claims
            // are leftovers of an interrupted deployment.
            for replica in running.iter().filter(|r| r.spec.environment == env.name) {
                let claimed = currents.iter().chain(&resumed).any(|(e, s, n)| {
                    *e == env.name && *s == replica.spec.service && *n == replica.spec.revision
                });
                if !claimed {
                    tracing::warn!(replica = %replica.id, "Stopping a replica no revision claims.");
                    let _ = runtime
                        .stop(&replica.id, std::time::Duration::from_secs(2))
                        .await;
                }
            }
        }
        // A shift of a service that runs nothing now, or in an environment
        // without its runtime, cannot go on; its replicas were strays.
        for row in shifts.iter().filter(|r| !handled.contains(&r.deployment)) {
            let reason = "its service has no current revision here, or no runtime";
            self.abandon_shift(row, row.from_revision, reason).await?;
        }
        Ok(())
    }

    /// Takes up an interrupted shift where it was: the new replicas are
    /// registered with its weights and a task runs the rest of its steps.
    /// `Err` says why it cannot be resumed.
    async fn resume_shift(
        &self,
        env: &Arc<EnvState>,
        row: &ShiftRow,
        stable: &Revision,
        old: &[ReplicaRef],
        new: Vec<ReplicaRef>,
    ) -> Result<(), String> {
        if row.from_revision != stable.number {
            return Err(format!(
                "it shifted from revision {}, but revision {} is current",
                row.from_revision, stable.number
            ));
        }
        let revision = match self
            .inner
            .db
            .revision(&row.environment, &row.service, row.to_revision)
            .await
        {
            Ok(Some(revision)) => revision,
            Ok(None) => return Err(format!("revision {} is not stored", row.to_revision)),
            Err(e) => return Err(e.to_string()),
        };
        let plan = revision
            .shift_plan()
            .ok_or_else(|| format!("revision {} has no shift plan", revision.number))?;
        if new.len() < revision.replicas as usize {
            return Err(format!(
                "{} of the {} replica(s) of revision {} still run",
                new.len(),
                revision.replicas,
                revision.number
            ));
        }
        if old.is_empty() {
            return Err(format!("no replica of revision {} runs", stable.number));
        }
        let runtime = env
            .runtime
            .clone()
            .ok_or_else(|| format!("the runtime of {} is not available", env.name))?;
        let group = env.lb.target_group(&row.service);
        let (stable_each, new_each) = split(row.weight, old.len(), new.len());
        for r in &new {
            group.register(
                Target::new(r.id.clone(), r.addr)
                    .with_weight(new_each)
                    .with_revision(revision.number.to_string())
                    .with_protocol(revision.target_protocol()),
            );
        }
        for r in old {
            let _ = group.set_weight(&r.id, stable_each);
        }
        let state = env.service(&row.service).await;
        state.replicas.lock().await.extend(new.iter().cloned());
        // Installed before the task runs, so a deploy asked for at once is
        // already refused.
        let (installed, control) = Installed::new(
            state.clone(),
            ShiftProgress {
                deployment: row.deployment,
                from_revision: stable.number,
                to_revision: revision.number,
                step: row.step + 1,
                steps: plan.steps.len(),
                weight: row.weight,
                paused: row.paused,
                waiting: "resuming after a restart".to_string(),
            },
        );
        tracing::warn!(
            environment = %row.environment, service = %row.service, deployment = row.deployment,
            step = row.step + 1, weight = row.weight,
            "Resuming a progressive deployment a restart interrupted."
        );
        let deployer = self.clone();
        let env = env.clone();
        let stable = stable.clone();
        let old = old.to_vec();
        let row = row.clone();
        tokio::spawn(async move {
            let _installed = installed;
            let _guard = state.deploying.lock().await;
            let started = tokio::time::Instant::now();
            let log = TracingLog;
            let shift = Shift {
                deployer: &deployer,
                env: &env,
                group: &*group,
                runtime: &runtime,
                revision: &revision,
                stable: &stable,
                plan: &plan,
                deployment: row.deployment,
                log: &log,
                old: old.clone(),
                green: new.clone(),
                control,
                paused: row.paused,
                weight: row.weight,
                test_listener: None,
            };
            let result = shift.run(row.step).await;
            let recorded = match result {
                Ok(()) => deployer
                    .promoted(
                        &state,
                        &revision,
                        row.deployment,
                        false,
                        started,
                        crate::rollout::RolloutResult {
                            serving: new,
                            failures: 0,
                        },
                        &log,
                    )
                    .await
                    .map(|_| ()),
                Err(error) => {
                    *state.replicas.lock().await = old;
                    let (status, by) = match &error {
                        DeployError::AnalysisFailed { .. } => ("RolledBack", Some("analysis")),
                        DeployError::Aborted { .. } => ("RolledBack", Some("abort")),
                        _ => ("Failed", None),
                    };
                    deployer
                        .finish(
                            row.deployment,
                            &revision,
                            false,
                            started,
                            status,
                            &error.to_string(),
                            by,
                        )
                        .await
                }
            };
            if let Err(error) = recorded {
                tracing::error!(%error, "Recording a resumed deployment failed.");
            }
        });
        Ok(())
    }

    /// An interrupted shift that cannot go on: the stable revision keeps
    /// (has back) all the traffic — its replicas were registered at weight
    /// 1 — the new replicas are stopped as strays, and the deployment fails.
    async fn abandon_shift(
        &self,
        row: &ShiftRow,
        stable: u64,
        reason: &str,
    ) -> Result<(), DeployError> {
        let message = format!(
            "the server restarted during this deployment and could not resume it ({reason}); revision {stable} takes all the traffic"
        );
        tracing::warn!(environment = %row.environment, service = %row.service, deployment = row.deployment, %message);
        self.inner
            .db
            .finish_deployment(
                row.deployment,
                "Failed",
                Some(&message),
                gantry_clock::now_ms(),
            )
            .await?;
        self.inner
            .db
            .clear_shift(&row.environment, &row.service)
            .await
    }

    async fn top_up(
        &self,
        env: &Arc<EnvState>,
        service: &str,
        revision: &Revision,
    ) -> Result<(), DeployError> {
        let state = env.service(service).await;
        let _guard = state.deploying.lock().await;
        let runtime = env
            .runtime
            .clone()
            .ok_or_else(|| DeployError::RuntimeUnavailable("?".into()))?;
        let env_vars = self.replica_env(revision).await?;
        let group = env.lb.target_group(service);
        let log = TracingLog;
        let rollout = Rollout {
            runtime: &runtime,
            group: &*group,
            revision,
            env_vars: &env_vars,
            log: &log,
            breaker: false,
        };
        let existing = state.replicas.lock().await.clone();
        let restored = rollout.top_up(existing.len()).await;
        state.replicas.lock().await.extend(restored);
        Ok(())
    }
}
