//! The deployer: applied environments and services, their load balancers
//! and replicas, and the operations on them (apply, deploy, rollback,
//! status). The control plane owns one.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use gantry_images::{Reference, RegistryClient};
use gantry_params::{ParamStore, Selector};
use gantry_proxy::{LoadBalancer, Rule, Target};
use gantry_runtime::{ReplicaSpec, Runtime};
use gantry_spec::environment::{Environment, RuntimeKind};
use gantry_spec::{Project, assemble, parse_document};
use gantry_store::Store;
use serde_json::{Value, json};
use tokio::sync::Mutex;

use crate::error::DeployError;
use crate::revision::{Revision, SecretRef};
use crate::rollout::Rollout;
use crate::store::DeployStore;

/// Where a deployment tells what it does, step by step.
pub trait DeployLog: Send + Sync {
    fn line(&self, line: &str);
}

/// The runtimes this server offers, by kind (`process`, `docker`).
pub type Runtimes = BTreeMap<&'static str, Arc<dyn Runtime>>;

fn runtime_name(kind: RuntimeKind) -> &'static str {
    match kind {
        RuntimeKind::Process => "process",
        RuntimeKind::Docker => "docker",
    }
}

fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

/// A running replica as the deployer tracks it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ReplicaRef {
    pub(crate) id: String,
    pub(crate) revision: u64,
    pub(crate) addr: SocketAddr,
}

/// What a successful deployment left running.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DeployOutcome {
    pub environment: String,
    pub service: String,
    pub revision: u64,
    pub image: String,
    pub replicas: Vec<String>,
}

#[derive(Clone)]
pub struct Deployer {
    inner: Arc<Inner>,
}

struct Inner {
    db: DeployStore,
    params: Arc<ParamStore>,
    images: RegistryClient,
    runtimes: Runtimes,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    project: Option<Arc<Project>>,
    environments: BTreeMap<String, Arc<EnvState>>,
}

struct EnvState {
    name: String,
    spec: Mutex<Environment>,
    lb: LoadBalancer,
    runtime: Option<Arc<dyn Runtime>>,
    services: Mutex<BTreeMap<String, Arc<ServiceState>>>,
}

#[derive(Default)]
struct ServiceState {
    /// One deployment at a time per service.
    deploying: Mutex<()>,
    current: Mutex<Option<Revision>>,
    replicas: Mutex<Vec<ReplicaRef>>,
}

impl EnvState {
    async fn service(&self, name: &str) -> Arc<ServiceState> {
        self.services
            .lock()
            .await
            .entry(name.to_string())
            .or_default()
            .clone()
    }
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

fn rules_of(env: &Environment) -> Vec<Rule> {
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
    /// Opens the deployer: the applied project, one load balancer per
    /// environment, and every replica the runtimes still run, re-adopted.
    pub async fn open(
        store: Store,
        params: Arc<ParamStore>,
        images: RegistryClient,
        runtimes: Runtimes,
    ) -> Result<Deployer, DeployError> {
        let db = DeployStore::open(store).await?;
        let interrupted = db.interrupt_unfinished(now_ms()).await?;
        if interrupted > 0 {
            tracing::warn!(interrupted, "Deployments were interrupted by a restart.");
        }
        let deployer = Deployer {
            inner: Arc::new(Inner {
                db,
                params,
                images,
                runtimes,
                state: Mutex::new(State::default()),
            }),
        };
        if let Some(files) = deployer.inner.db.project().await? {
            let files: Vec<(String, String)> = serde_json::from_str(&files)
                .map_err(|e| DeployError::Spec(format!("stored project: {e}")))?;
            match deployer.install(&files).await {
                Ok(_) => deployer.readopt().await?,
                Err(error) => {
                    tracing::error!(%error, "The applied environments could not be restored.")
                }
            }
        }
        Ok(deployer)
    }

    /// Registers environments and services (files with their text; includes
    /// already read by the caller). Load balancers start or get new rules.
    pub async fn apply(&self, files: Vec<(String, String)>) -> Result<Vec<String>, DeployError> {
        let summary = self.install(&files).await?;
        let text = serde_json::to_string(&files).map_err(|e| DeployError::Spec(e.to_string()))?;
        self.inner.db.save_project(&text, now_ms()).await?;
        Ok(summary)
    }

    async fn install(&self, files: &[(String, String)]) -> Result<Vec<String>, DeployError> {
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
                    let lb = LoadBalancer::start(listen, rules_of(env))
                        .await
                        .map_err(|e| DeployError::LoadBalancer {
                            environment: name.clone(),
                            reason: e.to_string(),
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

    /// After a restart: registers the replicas of each service's current
    /// revision with its target group, stops strays of unfinished
    /// deployments, and starts replicas that are missing.
    async fn readopt(&self) -> Result<(), DeployError> {
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
                        group.register(Target::new(replica.id.clone(), replica.addr));
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
            group: &group,
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

    /// The environment variables of a revision's replicas: its plain
    /// environment, its secrets read at their pinned versions, and gantry's.
    async fn replica_env(&self, r: &Revision) -> Result<Vec<(String, String)>, DeployError> {
        let mut env: Vec<(String, String)> = r
            .environment_vars
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        for secret in &r.secrets {
            let selector = Selector::parse(&format!("{}:{}", secret.parameter, secret.version))
                .map_err(|e| secret_error(r, secret, e))?;
            let resolved = self
                .inner
                .params
                .resolve(&[(secret.var.as_str(), selector)])
                .await
                .map_err(|e| secret_error(r, secret, e))?;
            for value in resolved {
                env.push((secret.var.clone(), value.value.expose().to_string()));
            }
        }
        env.push(("GANTRY_ENVIRONMENT".into(), r.environment.clone()));
        env.push(("GANTRY_SERVICE".into(), r.service.clone()));
        env.push(("GANTRY_REVISION".into(), r.number.to_string()));
        Ok(env)
    }

    async fn environment(&self, name: &str) -> Result<(Arc<EnvState>, Arc<Project>), DeployError> {
        let state = self.inner.state.lock().await;
        let env = state
            .environments
            .get(name)
            .cloned()
            .ok_or_else(|| DeployError::UnknownEnvironment(name.to_string()))?;
        let project = state
            .project
            .clone()
            .ok_or_else(|| DeployError::UnknownEnvironment(name.to_string()))?;
        Ok((env, project))
    }

    /// Pins an image reference to its digest, asking its registry.
    async fn pin(&self, image: &str) -> Result<String, DeployError> {
        let reference = Reference::parse(image).map_err(|e| DeployError::Image {
            image: image.to_string(),
            reason: e.to_string(),
        })?;
        if reference.digest().is_some() {
            // Still make sure it exists: a deploy of a missing image must
            // fail before anything stops.
            return match self.inner.images.manifest_digest(&reference).await {
                Ok(Some(_)) => Ok(reference.to_string()),
                Ok(None) => Err(DeployError::ImageNotFound {
                    image: image.to_string(),
                }),
                Err(e) => Err(DeployError::Image {
                    image: image.to_string(),
                    reason: e.to_string(),
                }),
            };
        }
        match self.inner.images.manifest_digest(&reference).await {
            Ok(Some(digest)) => Ok(reference.with_digest(&digest).to_string()),
            Ok(None) => Err(DeployError::ImageNotFound {
                image: image.to_string(),
            }),
            Err(e) => Err(DeployError::Image {
                image: image.to_string(),
                reason: e.to_string(),
            }),
        }
    }

    /// Deploys `image` to a service: a new revision from the applied
    /// definition, rolled out with health checks and the circuit breaker.
    pub async fn deploy(
        &self,
        environment: &str,
        service: &str,
        image: &str,
        cause: &str,
        log: &dyn DeployLog,
    ) -> Result<DeployOutcome, DeployError> {
        let (env, project) = self.environment(environment).await?;
        let env_name = gantry_spec::environment::EnvironmentName::new(environment)
            .map_err(DeployError::Spec)?;
        let service_name =
            gantry_spec::service::ServiceName::new(service).map_err(DeployError::Spec)?;
        let spec = project
            .service_in(&env_name, &service_name)
            .ok_or_else(|| DeployError::UnknownService {
                environment: environment.to_string(),
                service: service.to_string(),
            })?;
        let pinned = self.pin(image).await?;
        log.line(&format!("Image {image} is {pinned}"));
        let mut secrets = Vec::new();
        for (var, parameter) in &spec.secrets {
            let selector = Selector::parse(parameter).map_err(|e| DeployError::Secret {
                environment: environment.to_string(),
                service: service.to_string(),
                var: var.clone(),
                parameter: parameter.clone(),
                reason: e.to_string(),
            })?;
            let resolved = self
                .inner
                .params
                .resolve(&[(var.as_str(), selector)])
                .await
                .map_err(|e| DeployError::Secret {
                    environment: environment.to_string(),
                    service: service.to_string(),
                    var: var.clone(),
                    parameter: parameter.clone(),
                    reason: match &e {
                        gantry_params::ParamError::Unresolved { source, .. } => source.to_string(),
                        other => other.to_string(),
                    },
                })?;
            for r in resolved {
                log.line(&format!(
                    "Secret {var} = {} (version {})",
                    r.name, r.version
                ));
                secrets.push(SecretRef {
                    var: var.clone(),
                    parameter: r.name.to_string(),
                    version: r.version,
                    secure: r.secret,
                });
            }
        }
        let state = env.service(service).await;
        let _guard = state.deploying.lock().await;
        let number = self
            .inner
            .db
            .last_revision_number(environment, service)
            .await?
            + 1;
        let revision = Revision::new(
            number,
            environment,
            &spec,
            pinned,
            secrets,
            now_ms(),
            cause.to_string(),
        )
        .map_err(DeployError::Spec)?;
        let revision = Revision {
            host_network: env.spec.lock().await.network == gantry_spec::environment::Network::Host,
            ..revision
        };
        // Build once, deploy once: the same image with the same definition and
        // parameter versions, already serving in full, is left alone.
        let current = state.current.lock().await.clone();
        let serving: Vec<String> = state
            .replicas
            .lock()
            .await
            .iter()
            .map(|r| r.id.clone())
            .collect();
        if let Some(current) = current
            && current.same_as(&revision)
            && serving.len() >= current.replicas as usize
        {
            log.line(&format!(
                "Unchanged: {service} in {environment} already runs {} (revision {}) with the same definition and parameters; nothing to deploy",
                current.image, current.number
            ));
            return Ok(DeployOutcome {
                environment: environment.to_string(),
                service: service.to_string(),
                revision: current.number,
                image: current.image.clone(),
                replicas: serving,
            });
        }
        self.roll(&env, &state, revision, log).await
    }

    /// Returns a service to an earlier revision (the one before the current
    /// by default): a new revision with that one's image, definition and
    /// parameter versions.
    pub async fn rollback(
        &self,
        environment: &str,
        service: &str,
        to: Option<u64>,
        log: &dyn DeployLog,
    ) -> Result<DeployOutcome, DeployError> {
        let (env, _) = self.environment(environment).await?;
        let state = env.service(service).await;
        let _guard = state.deploying.lock().await;
        let current = state.current.lock().await.clone();
        let target = match to {
            Some(n) => n,
            None => {
                let current_number = current.as_ref().map_or(0, |c| c.number);
                let history = self.inner.db.deployments(environment, service, 200).await?;
                history
                    .iter()
                    .filter(|d| d.status == "Succeeded" && (d.to_revision as u64) < current_number)
                    .map(|d| d.to_revision as u64)
                    .max()
                    .ok_or_else(|| DeployError::NothingToRollBackTo {
                        environment: environment.to_string(),
                        service: service.to_string(),
                    })?
            }
        };
        let old = self
            .inner
            .db
            .revision(environment, service, target)
            .await?
            .ok_or(DeployError::UnknownRevision {
                environment: environment.to_string(),
                service: service.to_string(),
                revision: target,
            })?;
        let number = self
            .inner
            .db
            .last_revision_number(environment, service)
            .await?
            + 1;
        let revision = Revision {
            number,
            created_at: now_ms(),
            cause: format!("rollback to revision {target}"),
            ..old
        };
        log.line(&format!(
            "Rolling back {service} in {environment} to revision {target} as revision {number}"
        ));
        self.roll(&env, &state, revision, log).await
    }

    async fn roll(
        &self,
        env: &Arc<EnvState>,
        state: &Arc<ServiceState>,
        revision: Revision,
        log: &dyn DeployLog,
    ) -> Result<DeployOutcome, DeployError> {
        let runtime = env
            .runtime
            .clone()
            .ok_or_else(|| DeployError::RuntimeUnavailable(env.name.clone()))?;
        let env_vars = self.replica_env(&revision).await?;
        self.inner.db.save_revision(&revision).await?;
        let previous = state.current.lock().await.clone();
        let deployment = self
            .inner
            .db
            .start_deployment(
                &revision.environment,
                &revision.service,
                previous.as_ref().map(|p| p.number),
                revision.number,
                now_ms(),
            )
            .await?;
        let group = env.lb.target_group(&revision.service);
        group
            .set_health_check(revision.health_check())
            .map_err(|e| DeployError::LoadBalancer {
                environment: env.name.clone(),
                reason: e.to_string(),
            })?;
        let old = state.replicas.lock().await.clone();
        let rollout = Rollout {
            runtime: &runtime,
            group: &group,
            revision: &revision,
            env_vars: &env_vars,
            log,
            breaker: true,
        };
        let result = match rollout.run(old).await {
            Ok(result) => result,
            Err(error) => {
                self.inner
                    .db
                    .finish_deployment(deployment, "Failed", Some(&error.to_string()), now_ms())
                    .await?;
                return Err(error);
            }
        };
        match result {
            Ok(done) => {
                *state.replicas.lock().await = done.serving.clone();
                *state.current.lock().await = Some(revision.clone());
                self.inner
                    .db
                    .set_current(&revision.environment, &revision.service, revision.number)
                    .await?;
                let message = format!(
                    "{} replica(s) healthy; {} replaced on the way",
                    done.serving.len(),
                    done.failures
                );
                self.inner
                    .db
                    .finish_deployment(deployment, "Succeeded", Some(&message), now_ms())
                    .await?;
                log.line(&format!(
                    "Deployment of revision {} succeeded: {message}",
                    revision.number
                ));
                Ok(DeployOutcome {
                    environment: revision.environment.clone(),
                    service: revision.service.clone(),
                    revision: revision.number,
                    image: revision.image.clone(),
                    replicas: done.serving.iter().map(|r| r.id.clone()).collect(),
                })
            }
            Err(tripped) => {
                let mut serving = tripped.remaining_old.clone();
                let outcome = match (&previous, revision.rollback) {
                    (Some(prev), true) => {
                        // The old replicas never left unless the floor
                        // allowed it; restore any that did.
                        if let Err(e) = group.set_health_check(prev.health_check()) {
                            tracing::warn!(%e, "Restoring health check settings failed.");
                        }
                        let prev_env = self.replica_env(prev).await?;
                        let restore = Rollout {
                            runtime: &runtime,
                            group: &group,
                            revision: prev,
                            env_vars: &prev_env,
                            log,
                            breaker: false,
                        };
                        serving.extend(restore.top_up(serving.len()).await);
                        format!(
                            "rolled back: revision {} keeps serving with {} replica(s)",
                            prev.number,
                            serving.len()
                        )
                    }
                    (Some(prev), false) => format!(
                        "rollback is off: revision {} serves with the {} replica(s) left",
                        prev.number,
                        serving.len()
                    ),
                    (None, _) => "nothing to roll back to: this was the service's first deployment"
                        .to_string(),
                };
                log.line(&format!(
                    "Deployment of revision {} failed; {outcome}",
                    revision.number
                ));
                *state.replicas.lock().await = serving;
                let status = if previous.is_some() && revision.rollback {
                    "RolledBack"
                } else {
                    "Failed"
                };
                let error = DeployError::CircuitBreaker {
                    revision: revision.number,
                    failures: tripped.failures,
                    last: tripped.last,
                    outcome,
                };
                self.inner
                    .db
                    .finish_deployment(deployment, status, Some(&error.to_string()), now_ms())
                    .await?;
                Err(error)
            }
        }
    }

    /// The container name of a service (its name in `imagedefinitions.json`).
    pub async fn container_of(
        &self,
        environment: &str,
        service: &str,
    ) -> Result<String, DeployError> {
        let (_, project) = self.environment(environment).await?;
        project
            .services
            .iter()
            .find(|(name, _)| name.as_str() == service)
            .map(|(_, s)| s.container.clone())
            .ok_or_else(|| DeployError::UnknownService {
                environment: environment.to_string(),
                service: service.to_string(),
            })
    }

    /// The environments applied, by name.
    pub async fn environments(&self) -> Vec<String> {
        self.inner
            .state
            .lock()
            .await
            .environments
            .keys()
            .cloned()
            .collect()
    }

    /// Where an environment's load balancer listens.
    pub async fn load_balancer(&self, environment: &str) -> Option<SocketAddr> {
        self.inner
            .state
            .lock()
            .await
            .environments
            .get(environment)
            .map(|e| e.lb.local_addr())
    }

    /// Whether any service runs replicas (a server that hosts services is
    /// not idle).
    pub async fn serving(&self) -> bool {
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
            let services: Vec<Arc<ServiceState>> =
                env.services.lock().await.values().cloned().collect();
            for s in services {
                if !s.replicas.lock().await.is_empty() {
                    return true;
                }
            }
        }
        false
    }

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

    /// Stops every replica of an environment (draining each first) and
    /// forgets its services' current revisions; the revisions stay in the
    /// history, so a later deploy or rollback can bring them back.
    pub async fn down(&self, environment: &str) -> Result<usize, DeployError> {
        let (env, _) = self.environment(environment).await?;
        let services: Vec<(String, Arc<ServiceState>)> = env
            .services
            .lock()
            .await
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let mut stopped = 0;
        for (name, state) in services {
            let _guard = state.deploying.lock().await;
            let drain = state
                .current
                .lock()
                .await
                .as_ref()
                .map(Revision::drain)
                .unwrap_or_default();
            let replicas = std::mem::take(&mut *state.replicas.lock().await);
            let group = env.lb.target_group(&name);
            for r in replicas {
                group.deregister(&r.id, drain).await;
                if let Some(runtime) = &env.runtime
                    && let Err(e) = runtime
                        .stop(&r.id, drain.max(std::time::Duration::from_secs(2)))
                        .await
                {
                    tracing::warn!(%e, replica = %r.id, "Stopping a replica failed.");
                }
                stopped += 1;
            }
            *state.current.lock().await = None;
        }
        self.inner.db.clear_current(environment).await?;
        Ok(stopped)
    }

    /// Stops the load balancers. Replicas keep running: the next server
    /// re-adopts them.
    pub async fn shutdown(&self) {
        let environments: Vec<Arc<EnvState>> =
            std::mem::take(&mut self.inner.state.lock().await.environments)
                .into_values()
                .collect();
        for env in environments {
            match Arc::try_unwrap(env) {
                Ok(env) => env.lb.shutdown().await,
                Err(env) => {
                    tracing::warn!(environment = %env.name, "Load balancer still in use at shutdown.")
                }
            }
        }
    }
}

fn secret_error(r: &Revision, secret: &SecretRef, e: gantry_params::ParamError) -> DeployError {
    DeployError::Secret {
        environment: r.environment.clone(),
        service: r.service.clone(),
        var: secret.var.clone(),
        parameter: format!("{}:{}", secret.parameter, secret.version),
        reason: e.to_string(),
    }
}

/// A deploy log that goes to the server's own log (background work).
struct TracingLog;

impl DeployLog for TracingLog {
    fn line(&self, line: &str) {
        tracing::info!(message = line);
    }
}
