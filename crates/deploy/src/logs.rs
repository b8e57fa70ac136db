//! What a service's replicas wrote (`gantry env logs`): each replica's
//! output as its runtime keeps it (see `gantry_runtime`'s `output`).

use gantry_runtime::LogQuery;

use crate::{DeployError, Deployer};

/// One replica's output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceOutput {
    pub replica: String,
    pub text: String,
    /// Give it back to read only what came after.
    pub cursor: String,
}

impl Deployer {
    /// The output of every replica of `service` in `environment` (or of
    /// `replica` alone), as the query asks.
    pub async fn service_logs(
        &self,
        environment: &str,
        service: &str,
        replica: Option<&str>,
        query: LogQuery,
    ) -> Result<Vec<ServiceOutput>, DeployError> {
        let (env, project) = self.environment(environment).await?;
        if !project.services.keys().any(|name| name.as_str() == service) {
            return Err(DeployError::UnknownService {
                environment: environment.to_string(),
                service: service.to_string(),
            });
        }
        // A cluster keeps its pods' output; gantry does not read it.
        let spec = env.spec.lock().await.clone();
        if crate::kubernetes::is_kubernetes(&spec) {
            return Err(DeployError::Runtime(format!(
                "{service} in {environment} runs on Kubernetes, whose pods' output gantry does not read: `kubectl logs -n {} deployment/{service}` does",
                spec.kubernetes.namespace
            )));
        }
        let runtime = env
            .runtime
            .clone()
            .ok_or_else(|| DeployError::RuntimeUnavailable(environment.to_string()))?;
        let mut ids: Vec<String> = env
            .service(service)
            .await
            .replicas
            .lock()
            .await
            .iter()
            .map(|r| r.id.clone())
            .collect();
        if let Some(wanted) = replica {
            if !ids.iter().any(|id| id == wanted) {
                return Err(DeployError::UnknownReplica {
                    environment: environment.to_string(),
                    service: service.to_string(),
                    replica: wanted.to_string(),
                });
            }
            ids.retain(|id| id == wanted);
        }
        let mut outputs = Vec::new();
        for id in ids {
            let output = runtime
                .logs(&id, query.clone())
                .await
                .map_err(|e| DeployError::Runtime(e.to_string()))?;
            outputs.push(ServiceOutput {
                replica: id,
                text: output.text,
                cursor: output.cursor,
            });
        }
        Ok(outputs)
    }
}
