//! Re-adoption after a server restart. Replicas outlive servers: a new
//! server finds each service's current revision in the database, registers
//! the replicas of that revision that still run with its target group,
//! stops replicas no current revision claims (leftovers of a deployment the
//! restart interrupted), and starts the ones that are missing.

use std::sync::Arc;

use gantry_proxy::Target;

use crate::deployer::{Deployer, EnvState, TracingLog};
use crate::error::DeployError;
use crate::revision::Revision;
use crate::rollout::{ReplicaRef, Rollout};

impl Deployer {
    /// After a restart: registers the replicas of each service's current
    /// revision with its target group, stops strays of unfinished
    /// deployments, and starts replicas that are missing.
    pub(crate) async fn readopt(&self) -> Result<(), DeployError> {
        let currents = self.inner.db.currents().await?;
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
                if let Err(e) = group.set_health_check(revision.health_check()) {
                    tracing::warn!(%e, service, "Health check settings refused.");
                }
                let mut replicas = Vec::new();
                for replica in running
                    .iter()
                    .filter(|r| r.spec.environment == env.name && r.spec.service == *service)
                {
                    if replica.spec.revision == *number {
                        group.register(
                            Target::new(replica.id.clone(), replica.addr)
                                .with_revision(number.to_string()),
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
                let claimed = currents.iter().any(|(e, s, n)| {
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
        Ok(())
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
