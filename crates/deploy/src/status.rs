//! Status: what `gantry env status` shows and `GET /api/v1/environments/{env}`
//! returns: each service's current revision, image and digest, parameter
//! versions, replicas with their health, and recent deployments.
//!
//! The answer's types are the API's (`gantry_api::EnvironmentStatus` and
//! friends), defined once there; the JSON is a contract, which gantry-api's
//! `environment` tests pin.

use gantry_api::{EnvironmentStatus, ReplicaExit, ReplicaStatus, ServiceStatus};

use crate::deployer::{Deployer, runtime_name};
use crate::error::DeployError;
use crate::revision::SecretRef;
use crate::store::DeploymentRecord;

impl From<DeploymentRecord> for gantry_api::DeploymentRecord {
    fn from(d: DeploymentRecord) -> Self {
        gantry_api::DeploymentRecord {
            finished_at: d.finished_at,
            from_revision: d.from_revision,
            id: d.id,
            message: d.message,
            started_at: d.started_at,
            status: d.status,
            to_revision: d.to_revision,
        }
    }
}

impl From<SecretRef> for gantry_api::SecretRef {
    fn from(p: SecretRef) -> Self {
        gantry_api::SecretRef {
            parameter: p.parameter,
            secure: p.secure,
            var: p.var,
            version: p.version,
        }
    }
}

impl Deployer {
    /// Services, revisions, images, replicas and their health, and recent
    /// deployments of one environment.
    pub async fn environment_status(
        &self,
        environment: &str,
    ) -> Result<EnvironmentStatus, DeployError> {
        let (env, project) = self.environment(environment).await?;
        let spec = env.spec.lock().await.clone();
        // Restarts and last exits are the runtime's; a runtime that cannot
        // list its replicas leaves them at 0 and null rather than failing.
        let running = match &env.runtime {
            Some(runtime) => runtime.list().await.unwrap_or_default(),
            None => Vec::new(),
        };
        let mut services = Vec::new();
        let names: Vec<String> = project.services.keys().map(ToString::to_string).collect();
        for name in names {
            let state = env.service(&name).await;
            let current = state.current.lock().await.clone();
            let replicas = state.replicas.lock().await.clone();
            let targets = env.lb.target_group(&name).targets();
            let replicas = replicas
                .iter()
                .map(|r| {
                    let target = targets.iter().find(|t| t.id == r.id);
                    let run = running.iter().find(|x| x.id == r.id);
                    ReplicaStatus {
                        addr: r.addr.to_string(),
                        health: target.map(|t| t.health.to_string()),
                        id: r.id.clone(),
                        last_exit: run.and_then(|x| x.last_exit).map(|e| ReplicaExit {
                            code: e.code,
                            signal: e.signal,
                        }),
                        last_failure: target.and_then(|t| t.last_failure.clone()),
                        restarts: run.map_or(0, |x| x.restarts),
                        revision: r.revision,
                    }
                })
                .collect();
            let deployments = self.inner.db.deployments(environment, &name, 10).await?;
            services.push(ServiceStatus {
                deployments: deployments.into_iter().map(Into::into).collect(),
                desired: current.as_ref().map(|c| c.replicas),
                digest: current
                    .as_ref()
                    .and_then(|c| c.image.split_once('@').map(|(_, d)| d.to_string())),
                image: current.as_ref().map(|c| c.image.clone()),
                name,
                parameters: current
                    .as_ref()
                    .map(|c| c.secrets.iter().cloned().map(Into::into).collect())
                    .unwrap_or_default(),
                replicas,
                revision: current.as_ref().map(|c| c.number),
            });
        }
        let addr = env.lb.local_addr();
        Ok(EnvironmentStatus {
            environment: environment.to_string(),
            load_balancer: addr.to_string(),
            runtime: runtime_name(spec.runtime).to_string(),
            services,
            url: format!("http://{addr}/"),
        })
    }
}
