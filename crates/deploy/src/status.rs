//! Status: what `gantry env status` shows and `GET /api/v1/environments/{env}`
//! returns: each service's current revision, image and digest, parameter
//! versions, replicas with their health, and recent deployments.
//!
//! The answer's types are the API's (`gantry_api::EnvironmentStatus` and
//! friends), defined once there; the JSON is a contract, which
//! `tests::status_json_keeps_its_field_names` pins.

use gantry_api::{EnvironmentStatus, ReplicaStatus, ServiceStatus};

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
                    ReplicaStatus {
                        addr: r.addr.to_string(),
                        health: target.map(|t| t.health.to_string()),
                        id: r.id.clone(),
                        last_failure: target.and_then(|t| t.last_failure.clone()),
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

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    fn example() -> EnvironmentStatus {
        EnvironmentStatus {
            environment: "staging".into(),
            load_balancer: "127.0.0.1:8080".into(),
            runtime: "process".into(),
            services: vec![ServiceStatus {
                deployments: vec![gantry_api::DeploymentRecord {
                    finished_at: Some(20),
                    from_revision: Some(1),
                    id: 7,
                    message: Some("2 replica(s) healthy; 0 replaced on the way".into()),
                    started_at: 10,
                    status: "Succeeded".into(),
                    to_revision: 2,
                }],
                desired: Some(2),
                digest: Some("sha256:abc".into()),
                image: Some("127.0.0.1:5000/web@sha256:abc".into()),
                name: "web".into(),
                parameters: vec![gantry_api::SecretRef {
                    parameter: "/shop/db-password".into(),
                    secure: true,
                    var: "DB_PASSWORD".into(),
                    version: 3,
                }],
                replicas: vec![ReplicaStatus {
                    addr: "127.0.0.1:40001".into(),
                    health: Some("healthy".into()),
                    id: "staging-web-r2-1-abcdef".into(),
                    last_failure: None,
                    revision: 2,
                }],
                revision: Some(2),
            }],
            url: "http://127.0.0.1:8080/".into(),
        }
    }

    /// The JSON as the deployer built it with `json!` before it had types:
    /// the contract of `gantry env status --json` and the API.
    fn contract() -> Value {
        json!({
            "environment": "staging",
            "runtime": "process",
            "load_balancer": "127.0.0.1:8080",
            "url": "http://127.0.0.1:8080/",
            "services": [{
                "name": "web",
                "revision": 2,
                "image": "127.0.0.1:5000/web@sha256:abc",
                "digest": "sha256:abc",
                "desired": 2,
                "parameters": [{"var": "DB_PASSWORD", "parameter": "/shop/db-password", "version": 3, "secure": true}],
                "replicas": [{
                    "id": "staging-web-r2-1-abcdef", "revision": 2, "addr": "127.0.0.1:40001",
                    "health": "healthy", "last_failure": null,
                }],
                "deployments": [{
                    "id": 7, "from_revision": 1, "to_revision": 2, "status": "Succeeded",
                    "started_at": 10, "finished_at": 20,
                    "message": "2 replica(s) healthy; 0 replaced on the way",
                }],
            }],
        })
    }

    #[test]
    fn status_json_keeps_its_field_names() {
        let typed = serde_json::to_string(&example()).unwrap();
        // Same value, and the same bytes as the untyped JSON was sent.
        assert_eq!(serde_json::to_value(example()).unwrap(), contract());
        assert_eq!(typed, serde_json::to_string(&contract()).unwrap());
        let back: EnvironmentStatus = serde_json::from_str(&typed).unwrap();
        assert_eq!(back, example());
    }

    #[test]
    fn a_service_never_deployed_shows_nulls_and_empty_lists() {
        let status = ServiceStatus {
            deployments: vec![],
            desired: None,
            digest: None,
            image: None,
            name: "web".into(),
            parameters: vec![],
            replicas: vec![],
            revision: None,
        };
        assert_eq!(
            serde_json::to_value(status).unwrap(),
            json!({"name": "web", "revision": null, "image": null, "digest": null,
                   "desired": null, "parameters": [], "replicas": [], "deployments": []})
        );
    }
}
