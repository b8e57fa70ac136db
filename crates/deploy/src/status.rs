//! Status: what `gantry env status` shows and `GET /api/v1/environments/{env}`
//! returns: each service's current revision, image and digest, parameter
//! versions, replicas with their health, and recent deployments.

use serde_json::{Value, json};

use crate::deployer::{Deployer, runtime_name};
use crate::error::DeployError;

impl Deployer {
    /// Services, revisions, images, replicas and their health, and recent
    /// deployments of one environment.
    pub async fn status(&self, environment: &str) -> Result<Value, DeployError> {
        let (env, project) = self.environment(environment).await?;
        let spec = env.spec.lock().await.clone();
        let mut services = Vec::new();
        let names: Vec<String> = project.services.keys().map(ToString::to_string).collect();
        for name in names {
            let state = env.service(&name).await;
            let current = state.current.lock().await.clone();
            let replicas = state.replicas.lock().await.clone();
            let targets = env.lb.target_group(&name).targets();
            let replica_json: Vec<Value> = replicas
                .iter()
                .map(|r| {
                    let target = targets.iter().find(|t| t.id == r.id);
                    json!({
                        "id": r.id, "revision": r.revision, "addr": r.addr.to_string(),
                        "health": target.map(|t| t.health.to_string()),
                        "last_failure": target.and_then(|t| t.last_failure.clone()),
                    })
                })
                .collect();
            let deployments = self.inner.db.deployments(environment, &name, 10).await?;
            let digest = current
                .as_ref()
                .and_then(|c| c.image.split_once('@').map(|(_, d)| d.to_string()));
            services.push(json!({
                "name": name,
                "revision": current.as_ref().map(|c| c.number),
                "image": current.as_ref().map(|c| c.image.clone()),
                "digest": digest,
                "desired": current.as_ref().map(|c| c.replicas),
                "parameters": current.as_ref().map(|c| c.secrets.clone()).unwrap_or_default(),
                "replicas": replica_json,
                "deployments": deployments,
            }));
        }
        Ok(json!({
            "environment": environment,
            "runtime": runtime_name(spec.runtime),
            "load_balancer": env.lb.local_addr().to_string(),
            "url": format!("http://{}/", env.lb.local_addr()),
            "services": services,
        }))
    }
}
