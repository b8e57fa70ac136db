//! Apply: registering environments and services. A project's files become
//! the deployer's environments (one load balancer each, with the project's
//! path rules) and the services they may run; the files are stored, so the
//! next server restores them before it re-adopts replicas.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use gantry_clock::now_ms;
use gantry_proxy::Rule;
use gantry_spec::environment::Environment;
use gantry_spec::{assemble, parse_document};
use tokio::sync::Mutex;

use crate::deployer::{Deployer, EnvState, runtime_name};
use crate::error::DeployError;

pub(crate) fn rules_of(env: &Environment) -> Vec<Rule> {
    env.load_balancer
        .as_ref()
        .map(|lb| {
            lb.rules
                .iter()
                .map(|r| Rule::new(r.priority, r.path.as_str(), r.service.as_str()))
                .collect()
        })
        .unwrap_or_default()
}

impl Deployer {
    /// Registers environments and services (files with their text; includes
    /// already read by the caller). Load balancers start or get new rules.
    pub async fn apply(&self, files: Vec<(String, String)>) -> Result<Vec<String>, DeployError> {
        let summary = self.install(&files).await?;
        let text = serde_json::to_string(&files).map_err(|e| DeployError::Spec(e.to_string()))?;
        self.inner.db.save_project(&text, now_ms()).await?;
        Ok(summary)
    }

    pub(crate) async fn install(
        &self,
        files: &[(String, String)],
    ) -> Result<Vec<String>, DeployError> {
        let mut documents = Vec::new();
        let mut errors = Vec::new();
        for (file, text) in files {
            match parse_document(file, text) {
                Ok(doc) => documents.push((file.clone(), doc)),
                Err(e) => errors.extend(e.iter().map(ToString::to_string)),
            }
        }
        if !errors.is_empty() {
            return Err(DeployError::Spec(errors.join("\n")));
        }
        let project = assemble(documents).map_err(|e| {
            DeployError::Spec(
                e.iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("\n"),
            )
        })?;
        let mut state = self.inner.state.lock().await;
        let mut summary = Vec::new();
        for (name, env) in &project.environments {
            let name = name.to_string();
            match state.environments.get(&name) {
                Some(existing) => {
                    let listen = env.load_balancer.as_ref().map(|lb| lb.listen);
                    if listen.is_some_and(|l| l != existing.lb.local_addr()) {
                        summary.push(format!(
                            "environment {name}: the listener moves to {} when the server restarts",
                            listen.map(|l| l.to_string()).unwrap_or_default()
                        ));
                    }
                    existing.lb.set_rules(rules_of(env));
                    *existing.spec.lock().await = env.clone();
                    summary.push(format!("environment {name}: rules updated"));
                }
                None => {
                    let listen = env
                        .load_balancer
                        .as_ref()
                        .map_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0)), |lb| lb.listen);
                    let lb = self
                        .inner
                        .balancers
                        .start(listen, rules_of(env))
                        .await
                        .map_err(|e| DeployError::LoadBalancer {
                            environment: name.clone(),
                            reason: match &e {
                                // A clash a person fixes in the file.
                                gantry_proxy::ProxyError::Bind { addr, source }
                                    if source.kind() == std::io::ErrorKind::AddrInUse =>
                                {
                                    format!(
                                        "cannot listen on {addr}: port {} is in use (by another \
                                         program, or another data dir's environment); choose \
                                         another `listen:` in environment {name}'s \
                                         `load_balancer` (port 0 takes any free one)",
                                        addr.port()
                                    )
                                }
                                other => other.to_string(),
                            },
                        })?;
                    let runtime = self.inner.runtimes.get(runtime_name(env.runtime)).cloned();
                    summary.push(format!(
                        "environment {name}: load balancer on {}, runtime {}{}",
                        lb.local_addr(),
                        runtime_name(env.runtime),
                        if runtime.is_none() {
                            " (not available on this server)"
                        } else {
                            ""
                        }
                    ));
                    state.environments.insert(
                        name.clone(),
                        Arc::new(EnvState {
                            name,
                            spec: Mutex::new(env.clone()),
                            lb,
                            runtime,
                            services: Mutex::new(BTreeMap::new()),
                        }),
                    );
                }
            }
        }
        summary.push(format!("{} service(s)", project.services.len()));
        state.project = Some(Arc::new(project));
        Ok(summary)
    }
}
