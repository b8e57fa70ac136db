//! Deployments to a Kubernetes cluster (`runtime: kubernetes`): the cluster
//! rolls the pods out, gantry decides and records.
//!
//! A revision is resolved as on every runtime (image by digest, secrets
//! pinned by parameter version) and becomes gantry-kube's manifests: the
//! environment's Namespace, a Secret holding the pinned values, a
//! Deployment and a Service. gantry applies them, then judges the rollout
//! from the Deployment's status and its new pods' restarts against the
//! circuit breaker's threshold, within [`ROLLOUT_DEADLINE`]. A rollout
//! that fails goes back to the previous ReplicaSet's pod template when the
//! breaker's `rollback` is on, and the deployment fails either way. The
//! deploy store records revisions and deployments exactly as for the other
//! runtimes, so status, history and `gantry deploy rollback` read the same.
//!
//! Replicas are the cluster's: gantry starts, stops and health-checks no
//! pod. With `service_type: NodePort` and a `node_address`, the Service's
//! node ports are the targets of the service's target group, so the
//! environment's load balancer rules reach the cluster; otherwise the load
//! balancer has no target for the service and the cluster's own Ingress
//! routes to it.
//!
//! The cluster is reached through a [`KubeConnector`]: the kubeconfig one
//! in the server, one on a mock API service in the tests.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use gantry_clock::now_ms;
use gantry_kube::{
    HealthCheck, HealthKind, KubeCluster, KubeError, SecretPin, ServiceRevision, ServiceType,
};
use gantry_params::Selector;
use gantry_proxy::Target;
use gantry_runtime::BoxFuture;
use gantry_spec::environment::Environment;

use crate::deployer::{DeployLog, DeployOutcome, Deployer, EnvState, ServiceState};
use crate::error::DeployError;
use crate::revision::Revision;
use crate::rollout::ReplicaRef;

/// How long a rollout may take before gantry fails it: past Kubernetes'
/// own progress deadline (600 s by default, which the cluster reports as
/// `ProgressDeadlineExceeded`), so the cluster's verdict usually comes
/// first.
pub(crate) const ROLLOUT_DEADLINE: Duration = Duration::from_secs(660);
/// How often the Deployment is read while it rolls out.
const POLL: Duration = Duration::from_secs(2);

/// Opens a connection to an environment's namespace.
pub(crate) trait KubeConnector: Send + Sync {
    /// `kubeconfig`: the text of the environment's kubeconfig parameter,
    /// `None` for the default kubeconfig; `context`: the kubeconfig context,
    /// `None` for its current one.
    fn connect<'a>(
        &'a self,
        kubeconfig: Option<&'a str>,
        context: Option<&'a str>,
        namespace: &'a str,
    ) -> BoxFuture<'a, Result<KubeCluster, KubeError>>;
}

/// Connects through a kubeconfig, as gantry-kube's [`KubeCluster::connect`]
/// does.
pub(crate) struct KubeconfigConnector;

impl KubeConnector for KubeconfigConnector {
    fn connect<'a>(
        &'a self,
        kubeconfig: Option<&'a str>,
        context: Option<&'a str>,
        namespace: &'a str,
    ) -> BoxFuture<'a, Result<KubeCluster, KubeError>> {
        Box::pin(KubeCluster::connect(kubeconfig, context, namespace))
    }
}

/// Whether `env` deploys to a Kubernetes cluster.
pub(crate) fn is_kubernetes(env: &Environment) -> bool {
    env.runtime == gantry_spec::environment::RuntimeKind::Kubernetes
}

/// A revision as gantry-kube's manifest input.
pub(crate) fn service_revision(r: &Revision) -> ServiceRevision {
    let ms = Duration::from_millis;
    let kind = match (&r.health_command, &r.health_grpc) {
        (Some(argv), _) => HealthKind::Command { argv: argv.clone() },
        (None, Some(service)) => HealthKind::Grpc {
            service: service.clone(),
        },
        (None, None) => HealthKind::Http {
            path: r.health_path.clone(),
        },
    };
    ServiceRevision {
        service: r.service.clone(),
        revision: r.number,
        container: r.container.clone(),
        image: r.image.clone(),
        command: r.command.clone(),
        port: r.port,
        replicas: r.replicas,
        environment: r.environment_vars.clone(),
        secrets: r
            .secrets
            .iter()
            .map(|s| SecretPin {
                var: s.var.clone(),
                parameter: s.parameter.clone(),
                version: Some(s.version),
            })
            .collect(),
        health: HealthCheck {
            kind,
            interval: ms(r.health_interval_ms),
            timeout: ms(r.health_timeout_ms),
            healthy_threshold: r.healthy_threshold,
            unhealthy_threshold: r.unhealthy_threshold,
            grace_period: ms(r.grace_ms),
        },
        min_healthy_percent: r.min_healthy_percent,
        max_percent: r.max_percent,
        memory: r.memory,
        cpus: r.cpus,
    }
}

/// A gantry-kube error as the deployment's error.
fn failed(
    environment: &str,
    service: &str,
    error: &KubeError,
    outcome: Option<String>,
    rolled_back_to: Option<u64>,
) -> DeployError {
    let message = match outcome {
        Some(outcome) => format!("{error}; {outcome}"),
        None => error.to_string(),
    };
    DeployError::Kubernetes {
        environment: environment.to_owned(),
        service: service.to_owned(),
        kube_code: error.code(),
        message,
        rolled_back_to,
    }
}

impl Deployer {
    /// A connection to `env`'s namespace, with the kubeconfig its
    /// `kubernetes.kubeconfig` parameter holds (read now, at its latest
    /// version) or the default one. `service` names the deployment in
    /// errors.
    async fn cluster_of(&self, env: &EnvState, service: &str) -> Result<KubeCluster, DeployError> {
        let settings = env.spec.lock().await.kubernetes.clone();
        let kubeconfig = match &settings.kubeconfig {
            Some(parameter) => {
                let unreadable = |reason: String| DeployError::Secret {
                    environment: env.name.clone(),
                    service: service.to_owned(),
                    var: "kubernetes.kubeconfig".to_owned(),
                    parameter: parameter.clone(),
                    reason,
                };
                let selector = Selector::parse(parameter).map_err(|e| unreadable(e.to_string()))?;
                let resolved = self
                    .inner
                    .params
                    .resolve(&[("kubeconfig", selector)])
                    .await
                    .map_err(|e| unreadable(e.to_string()))?;
                resolved
                    .into_iter()
                    .next()
                    .map(|r| r.value.expose().to_owned())
            }
            None => None,
        };
        self.inner
            .kube
            .connect(
                kubeconfig.as_deref(),
                settings.context.as_deref(),
                &settings.namespace,
            )
            .await
            .map_err(|e| failed(&env.name, service, &e, None, None))
    }

    /// Deploys `revision` to the environment's cluster (see the module's
    /// documentation); the kubernetes branch of `roll`.
    pub(crate) async fn roll_kubernetes(
        &self,
        env: &Arc<EnvState>,
        state: &Arc<ServiceState>,
        revision: Revision,
        rollback: bool,
        log: &dyn DeployLog,
    ) -> Result<DeployOutcome, DeployError> {
        let started = tokio::time::Instant::now();
        let (environment, service) = (revision.environment.clone(), revision.service.clone());
        if revision.shift_plan().is_some() {
            return Err(DeployError::Spec(format!(
                "{service} in {environment}: runtime kubernetes deploys with the Deployment's rolling update only; blue_green, canary, linear and steps are not supported on it (use strategy: rolling)"
            )));
        }
        let spec = env.spec.lock().await.clone();
        // Everything that can fail before the cluster is touched fails
        // first: the secrets' values, the manifests, the connection.
        let values: BTreeMap<String, String> = self
            .replica_env(&revision)
            .await?
            .into_iter()
            .filter(|(var, _)| revision.secrets.iter().any(|s| s.var == *var))
            .collect();
        let target = gantry_kube::project::target_of(&spec);
        let mut manifests = gantry_kube::manifests(&target, &[service_revision(&revision)])
            .map_err(|e| failed(&environment, &service, &e, None, None))?;
        if let Some(secret) = manifests
            .services
            .first_mut()
            .and_then(|s| s.secret.as_mut())
        {
            gantry_kube::manifest::fill_secret(secret, &values)
                .map_err(|e| failed(&environment, &service, &e, None, None))?;
        }
        let cluster = self.cluster_of(env, &service).await?;

        self.inner.db.save_revision(&revision).await?;
        let previous = state.current.lock().await.clone();
        let deployment = self
            .inner
            .db
            .start_deployment(
                &environment,
                &service,
                previous.as_ref().map(|p| p.number),
                revision.number,
                now_ms(),
            )
            .await?;
        log.line(&format!(
            "Applying revision {} of {service} to namespace {}",
            revision.number, target.namespace
        ));
        let rolled = async {
            for line in cluster.apply(&manifests).await? {
                log.line(&format!("Applied {line}"));
            }
            cluster
                .wait_rollout(&service, revision.breaker_threshold, ROLLOUT_DEADLINE, POLL)
                .await
        }
        .await;
        let watch = match rolled {
            Ok(watch) => watch,
            Err(error) => {
                let (outcome, rolled_back_to) = match (&error, &previous) {
                    // Only a rollout that ran can be undone; a refused
                    // apply changed no Deployment.
                    (KubeError::RolloutFailed { .. }, Some(prev)) if revision.rollback => {
                        match cluster.rollback(&service).await {
                            Ok(template) => {
                                if template != Some(prev.number) {
                                    tracing::warn!(
                                        environment,
                                        service,
                                        recorded = prev.number,
                                        ?template,
                                        "The previous ReplicaSet's template is not the revision gantry recorded as current."
                                    );
                                }
                                // The old pods are back only once the
                                // controller has rolled the old template
                                // out again; no breaker judges that.
                                let back = cluster
                                    .wait_rollout(&service, 0, ROLLOUT_DEADLINE, POLL)
                                    .await;
                                let outcome = match back {
                                    Ok(watch) => format!(
                                        "rolled back: the Deployment runs the previous ReplicaSet's pod template (revision {}) again, {}/{} replica(s) available",
                                        prev.number, watch.available, watch.replicas
                                    ),
                                    Err(e) => format!(
                                        "rolled back to the previous ReplicaSet's pod template (revision {}), but that rollout did not finish: {e}",
                                        prev.number
                                    ),
                                };
                                (outcome, Some(prev.number))
                            }
                            Err(e) => (format!("rolling back failed too: {e}"), None),
                        }
                    }
                    (KubeError::RolloutFailed { .. }, Some(prev)) => (
                        format!(
                            "rollback is off: the Deployment keeps revision {}'s available pods while Kubernetes goes on trying revision {}",
                            prev.number, revision.number
                        ),
                        None,
                    ),
                    (KubeError::RolloutFailed { .. }, None) => (
                        "nothing to roll back to: this was the service's first deployment"
                            .to_owned(),
                        None,
                    ),
                    (_, Some(prev)) => (
                        format!("revision {} is still the current one", prev.number),
                        None,
                    ),
                    (_, None) => ("nothing was deployed".to_owned(), None),
                };
                let error = failed(
                    &environment,
                    &service,
                    &error,
                    Some(outcome),
                    rolled_back_to,
                );
                let status = if rolled_back_to.is_some() {
                    "RolledBack"
                } else {
                    "Failed"
                };
                self.finish(
                    deployment,
                    &revision,
                    rollback,
                    started,
                    status,
                    &error.to_string(),
                    rolled_back_to.map(|_| "circuit_breaker"),
                )
                .await?;
                log.line(&format!(
                    "Deployment of revision {} failed: {error}",
                    revision.number
                ));
                return Err(error);
            }
        };
        let replicas = match self.route_node_ports(env, &cluster, &revision).await {
            Ok(replicas) => replicas,
            Err(error) => {
                // The cluster runs the new revision: it is recorded as
                // current, and the load balancer's failure is the error.
                *state.current.lock().await = Some(revision.clone());
                self.inner
                    .db
                    .set_current(&environment, &service, revision.number)
                    .await?;
                self.finish(
                    deployment,
                    &revision,
                    rollback,
                    started,
                    "Failed",
                    &error.to_string(),
                    None,
                )
                .await?;
                return Err(error);
            }
        };
        *state.replicas.lock().await = replicas.clone();
        *state.current.lock().await = Some(revision.clone());
        self.inner
            .db
            .set_current(&environment, &service, revision.number)
            .await?;
        let message = format!(
            "Kubernetes rolled out the Deployment: {}/{} replica(s) available, {} restart(s) of the new pods",
            watch.available, watch.replicas, watch.restarts
        );
        self.finish(
            deployment,
            &revision,
            rollback,
            started,
            "Succeeded",
            &message,
            None,
        )
        .await?;
        log.line(&format!(
            "Deployment of revision {} succeeded: {message}",
            revision.number
        ));
        Ok(DeployOutcome {
            environment,
            service: service.clone(),
            revision: revision.number,
            image: revision.image.clone(),
            replicas: if replicas.is_empty() {
                vec![format!("deployment.apps/{service}")]
            } else {
                replicas.iter().map(|r| r.id.clone()).collect()
            },
        })
    }

    /// With `service_type: NodePort` and a `node_address`: makes the
    /// Service's node ports (`node_address:nodePort`) the targets of the
    /// service's target group and returns them; otherwise none (the
    /// cluster's Ingress routes).
    async fn route_node_ports(
        &self,
        env: &EnvState,
        cluster: &KubeCluster,
        revision: &Revision,
    ) -> Result<Vec<ReplicaRef>, DeployError> {
        let spec = env.spec.lock().await.clone();
        let settings = &spec.kubernetes;
        let node = match (
            &settings.node_address,
            gantry_kube::project::target_of(&spec).service_type,
        ) {
            (Some(node), ServiceType::NodePort) => node.clone(),
            _ => return Ok(Vec::new()),
        };
        let service = &revision.service;
        let lb_error = |reason: String| DeployError::LoadBalancer {
            environment: env.name.clone(),
            reason,
        };
        let ports = cluster
            .node_ports(service)
            .await
            .map_err(|e| failed(&env.name, service, &e, None, None))?;
        let mut replicas = Vec::new();
        for port in ports {
            let addr = resolve(&node, port).await.map_err(&lb_error)?;
            replicas.push(ReplicaRef {
                id: format!("{}/{service}:{port}", settings.namespace),
                revision: revision.number,
                addr,
            });
        }
        if replicas.is_empty() {
            return Err(lb_error(format!(
                "the Service {service} in namespace {} has no node port",
                settings.namespace
            )));
        }
        let group = env.lb.target_group(service);
        // The cluster runs the pods that the checks reach through the
        // node port; a command check cannot run there (no runtime of
        // gantry's holds the pods).
        group
            .set_health_check(revision.health_check(None))
            .map_err(|e| lb_error(e.to_string()))?;
        group.set_stickiness(revision.stickiness());
        let registered: Vec<String> = group.targets().into_iter().map(|t| t.id).collect();
        for old in registered
            .iter()
            .filter(|id| !replicas.iter().any(|r| &r.id == *id))
        {
            group.deregister(old, revision.drain()).await;
        }
        for replica in replicas.iter().filter(|r| !registered.contains(&r.id)) {
            group.register(
                Target::new(replica.id.clone(), replica.addr)
                    .with_revision(replica.revision.to_string())
                    .with_protocol(revision.target_protocol()),
            );
        }
        Ok(replicas)
    }

    /// After a restart: which revision each service of a kubernetes
    /// environment runs, from the Deployments labelled by gantry in its
    /// namespace (the cluster is the truth; what gantry recorded as
    /// current stands where the cluster says nothing), and its node ports
    /// back in the load balancer. Nothing is applied. A cluster that
    /// cannot be reached leaves the recorded revisions current, and the
    /// server starts anyway.
    pub(crate) async fn readopt_kubernetes(
        &self,
        env: &Arc<EnvState>,
        currents: &[(String, String, u64)],
    ) -> Result<(), DeployError> {
        let mut running: BTreeMap<String, u64> = currents
            .iter()
            .filter(|(e, _, _)| *e == env.name)
            .map(|(_, service, number)| (service.clone(), *number))
            .collect();
        let cluster = match self.cluster_of(env, "its services").await {
            Ok(cluster) => Some(cluster),
            Err(error) => {
                tracing::error!(environment = %env.name, %error, "The kubernetes cluster could not be reached; the recorded revisions stay current.");
                None
            }
        };
        if let Some(cluster) = &cluster {
            match cluster.readopt(&env.name).await {
                Ok(found) => {
                    for deployment in found {
                        let Some(number) = deployment.revision else {
                            continue;
                        };
                        let known = self
                            .inner
                            .db
                            .revision(&env.name, &deployment.service, number)
                            .await?
                            .is_some();
                        let recorded = running.get(&deployment.service).copied();
                        if !known || recorded == Some(number) {
                            continue;
                        }
                        tracing::warn!(
                            environment = %env.name, service = %deployment.service, cluster = number, ?recorded,
                            "The cluster runs another revision than gantry recorded; the cluster's is current."
                        );
                        self.inner
                            .db
                            .set_current(&env.name, &deployment.service, number)
                            .await?;
                        running.insert(deployment.service, number);
                    }
                }
                Err(error) => {
                    tracing::error!(environment = %env.name, %error, "Reading the cluster's Deployments failed; the recorded revisions stay current.");
                }
            }
        }
        for (service, number) in running {
            let Some(revision) = self.inner.db.revision(&env.name, &service, number).await? else {
                continue;
            };
            let state = env.service(&service).await;
            if let Some(cluster) = &cluster {
                match self.route_node_ports(env, cluster, &revision).await {
                    Ok(replicas) => *state.replicas.lock().await = replicas,
                    Err(error) => {
                        tracing::error!(environment = %env.name, %service, %error, "The service's node ports could not be routed.");
                    }
                }
            }
            *state.current.lock().await = Some(revision);
        }
        Ok(())
    }
}

impl Deployer {
    /// `gantry env down` on a kubernetes environment: deletes each
    /// service's Deployment (and so its pods) and Service, holding the
    /// service's lock; `down` then forgets the routes and the current
    /// revisions as on every runtime. The Secrets and the namespace stay.
    pub(crate) async fn down_kubernetes(&self, env: &EnvState) -> Result<(), DeployError> {
        let services: Vec<(String, Arc<ServiceState>)> = env
            .services
            .lock()
            .await
            .iter()
            .map(|(name, state)| (name.clone(), state.clone()))
            .collect();
        if services.is_empty() {
            return Ok(());
        }
        let cluster = self.cluster_of(env, "its services").await?;
        for (service, state) in services {
            let _guard = state.deploying.lock().await;
            cluster
                .remove(&service)
                .await
                .map_err(|e| failed(&env.name, &service, &e, None, None))?;
        }
        Ok(())
    }
}

/// `node:port` as an address: an IP address as it is, a host name looked
/// up.
async fn resolve(node: &str, port: u16) -> Result<SocketAddr, String> {
    if let Ok(ip) = node.parse::<std::net::IpAddr>() {
        return Ok(SocketAddr::new(ip, port));
    }
    tokio::net::lookup_host((node, port))
        .await
        .map_err(|e| format!("node_address {node}: {e}"))?
        .next()
        .ok_or_else(|| format!("node_address {node} has no address"))
}
