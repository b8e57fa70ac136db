//! The deployer: the state the control plane holds about environments
//! (one load balancer each), services (current revision, replicas, a lock so
//! one deployment runs at a time) and the runtimes, with the operations
//! that need no module of their own (`open`, `down`, `shutdown`, lookups).
//! The operations live next to their concept: `apply`, `readopt`,
//! `deployment` (deploy and rollback), `status`.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Arc;

use gantry_images::RegistryClient;
use gantry_params::ParamStore;
use gantry_runtime::{PrunedImage, Runtime};
use gantry_spec::Project;
use gantry_spec::environment::{Environment, RuntimeKind};
use gantry_store::Store;
use tokio::sync::Mutex;

use crate::deployment::ImageRegistry;
use crate::error::DeployError;
use crate::revision::Revision;
use crate::rollout::ReplicaRef;
use crate::store::DeployStore;
use crate::traffic::{Balancer, LoadBalancers, ProxyLoadBalancers};

/// Where a deployment tells what it does, step by step.
pub trait DeployLog: Send + Sync {
    fn line(&self, line: &str);
}

/// The runtimes this server offers, by kind (`process`, `docker`, `swarm`).
pub type Runtimes = BTreeMap<&'static str, Arc<dyn Runtime>>;

pub(crate) fn runtime_name(kind: RuntimeKind) -> &'static str {
    match kind {
        RuntimeKind::Process => "process",
        RuntimeKind::Docker => "docker",
        RuntimeKind::Swarm => "swarm",
        RuntimeKind::Kubernetes => "kubernetes",
    }
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
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) db: DeployStore,
    pub(crate) params: Arc<ParamStore>,
    pub(crate) images: Arc<dyn ImageRegistry>,
    pub(crate) balancers: Arc<dyn LoadBalancers>,
    pub(crate) runtimes: Runtimes,
    /// How kubernetes environments reach their cluster.
    pub(crate) kube: Arc<dyn crate::kubernetes::KubeConnector>,
    pub(crate) state: Mutex<State>,
    /// The embedded registry (`host:port`), where references without a
    /// registry host (`shop/web:1`) are; unset: Docker Hub, as Docker has it.
    pub(crate) local_registry: std::sync::OnceLock<String>,
    pub(crate) on_finished: std::sync::OnceLock<crate::deployment::FinishedHook>,
    /// Where environments' access logs are written; `None`: nowhere.
    pub(crate) access_logs: Option<std::path::PathBuf>,
}

#[derive(Default)]
pub(crate) struct State {
    pub(crate) project: Option<Arc<Project>>,
    pub(crate) environments: BTreeMap<String, Arc<EnvState>>,
}

pub(crate) struct EnvState {
    pub(crate) name: String,
    pub(crate) spec: Mutex<Environment>,
    pub(crate) lb: Box<dyn Balancer>,
    /// The certificate versions its https listener serves, as the last
    /// apply pinned them.
    pub(crate) certificates: std::sync::Mutex<Vec<gantry_api::environment::ListenerCertificate>>,
    /// Listeners that only redirect to https, by name.
    pub(crate) redirects: Mutex<Vec<(String, Box<dyn Balancer>)>>,
    /// The other listeners that serve rules, sharing `lb`'s target groups.
    pub(crate) siblings: Mutex<Vec<crate::apply::Sibling>>,
    pub(crate) runtime: Option<Arc<dyn Runtime>>,
    pub(crate) services: Mutex<BTreeMap<String, Arc<ServiceState>>>,
    /// HTTP-01 challenges its http listeners answer now, by token.
    pub(crate) acme_challenges: crate::acme::Challenges,
    /// The renewal task of its ACME listener, if it has one.
    pub(crate) acme: std::sync::Mutex<Option<crate::acme::RenewalTask>>,
    /// What that task knows, for the environment's status.
    pub(crate) acme_status: std::sync::Mutex<Option<gantry_api::environment::AcmeStatus>>,
    /// The writer of its access log, while `access_log` is on.
    pub(crate) access_writer: std::sync::Mutex<Option<Arc<crate::access_log::AccessWriter>>>,
}

#[derive(Default)]
pub(crate) struct ServiceState {
    /// One deployment at a time per service.
    pub(crate) deploying: Mutex<()>,
    pub(crate) current: Mutex<Option<Revision>>,
    pub(crate) replicas: Mutex<Vec<ReplicaRef>>,
    /// The progressive deployment shifting traffic now, if one is.
    pub(crate) shift: std::sync::Mutex<Option<crate::shift::ShiftHandle>>,
}

impl EnvState {
    pub(crate) async fn service(&self, name: &str) -> Arc<ServiceState> {
        self.services
            .lock()
            .await
            .entry(name.to_string())
            .or_default()
            .clone()
    }
}

impl Deployer {
    /// Opens the deployer: the applied project, one load balancer per
    /// environment, and every replica the runtimes still run, re-adopted.
    /// `access_logs`: the directory of environments' access logs
    /// (`DATA_DIR/access-logs`).
    pub async fn open(
        store: Store,
        params: Arc<ParamStore>,
        images: RegistryClient,
        runtimes: Runtimes,
        access_logs: Option<std::path::PathBuf>,
    ) -> Result<Deployer, DeployError> {
        Deployer::open_with(
            store,
            params,
            Arc::new(images),
            Arc::new(ProxyLoadBalancers),
            runtimes,
            access_logs,
            Arc::new(crate::kubernetes::KubeconfigConnector),
        )
        .await
    }

    /// [`Deployer::open`] with the image registry, the load balancers and
    /// the way to kubernetes clusters chosen by the caller (fakes, in
    /// tests).
    pub(crate) async fn open_with(
        store: Store,
        params: Arc<ParamStore>,
        images: Arc<dyn ImageRegistry>,
        balancers: Arc<dyn LoadBalancers>,
        runtimes: Runtimes,
        access_logs: Option<std::path::PathBuf>,
        kube: Arc<dyn crate::kubernetes::KubeConnector>,
    ) -> Result<Deployer, DeployError> {
        let db = DeployStore::open(store).await?;
        let interrupted = db.interrupt_unfinished(gantry_clock::now_ms()).await?;
        if interrupted > 0 {
            tracing::warn!(interrupted, "Deployments were interrupted by a restart.");
        }
        let deployer = Deployer {
            inner: Arc::new(Inner {
                db,
                params,
                images,
                balancers,
                runtimes,
                kube,
                state: Mutex::new(State::default()),
                local_registry: std::sync::OnceLock::new(),
                on_finished: std::sync::OnceLock::new(),
                access_logs,
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

    pub(crate) async fn environment(
        &self,
        name: &str,
    ) -> Result<(Arc<EnvState>, Arc<Project>), DeployError> {
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

    /// The image (`registry/repo@sha256:…`) each service's current
    /// revision runs, as (environment, service, image), from memory: no
    /// runtime or store is asked.
    pub async fn current_images(&self) -> Vec<(String, String, String)> {
        let environments: Vec<Arc<EnvState>> = self
            .inner
            .state
            .lock()
            .await
            .environments
            .values()
            .cloned()
            .collect();
        let mut out = Vec::new();
        for env in environments {
            let services: Vec<(String, Arc<ServiceState>)> = env
                .services
                .lock()
                .await
                .iter()
                .map(|(name, state)| (name.clone(), state.clone()))
                .collect();
            for (name, state) in services {
                if let Some(current) = state.current.lock().await.as_ref() {
                    out.push((env.name.clone(), name, current.image.clone()));
                }
            }
        }
        out
    }

    /// Each environment's load balancer counters and targets, for metrics.
    pub async fn load_balancer_stats(&self) -> Vec<(String, gantry_proxy::ListenerStats)> {
        let state = self.inner.state.lock().await;
        state
            .environments
            .iter()
            .filter_map(|(name, env)| Some((name.clone(), env.lb.stats()?)))
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

    /// The image (`registry/repo@sha256:…`) of every revision of every
    /// service, each once: what an environment runs or could roll back to
    /// (a rollback may name any earlier revision). Read-only; for the
    /// registry's garbage collection.
    pub async fn revision_images(&self) -> Result<BTreeSet<String>, DeployError> {
        self.inner.db.revision_images().await
    }

    /// Removes the images the runtimes unpacked that no replica uses (or,
    /// with `dry_run`, lists them).
    pub async fn prune_images(&self, dry_run: bool) -> Result<Vec<PrunedImage>, DeployError> {
        let mut pruned = Vec::new();
        for runtime in self.inner.runtimes.values() {
            pruned.extend(
                runtime
                    .prune_images(dry_run)
                    .await
                    .map_err(|e| DeployError::Runtime(e.to_string()))?,
            );
        }
        Ok(pruned)
    }

    /// Makes references without a registry host (`shop/web:1`) name the
    /// embedded registry at `addr` (`127.0.0.1:7701`); set once.
    pub fn set_local_registry(&self, addr: String) {
        let _ = self.inner.local_registry.set(addr);
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

    /// Stops every replica of an environment (draining each first) and
    /// forgets its services' current revisions; the revisions stay in the
    /// history, so a later deploy or rollback can bring them back.
    pub async fn down(&self, environment: &str) -> Result<usize, DeployError> {
        let (env, _) = self.environment(environment).await?;
        // A cluster's pods stop when their Deployments go.
        if crate::kubernetes::is_kubernetes(&*env.spec.lock().await) {
            self.down_kubernetes(&env).await?;
        }
        let services: Vec<(String, Arc<ServiceState>)> = env
            .services
            .lock()
            .await
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let mut stopped = 0;
        for (name, state) in services {
            // A shift holds the service's lock until it ends (a manual pause:
            // never by itself); it is aborted first, its new replicas stopped.
            if state.shifting().is_some() {
                let abort = crate::shift::ShiftCommand::Abort {
                    by: "gantry env down".to_string(),
                };
                if let Err(e) = self.control_shift(environment, &name, abort).await {
                    tracing::warn!(%e, service = %name, "Aborting a shift before down failed.");
                }
            }
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
                Ok(env) => {
                    // Siblings first: the health checks are `lb`'s.
                    for sibling in env.siblings.into_inner() {
                        sibling.lb.shutdown().await;
                    }
                    env.lb.shutdown().await;
                    for (_, lb) in env.redirects.into_inner() {
                        lb.shutdown().await;
                    }
                }
                Err(env) => {
                    tracing::warn!(environment = %env.name, "Load balancer still in use at shutdown.")
                }
            }
        }
    }
}

/// A deploy log that goes to the server's own log (background work).
pub(crate) struct TracingLog;

impl DeployLog for TracingLog {
    fn line(&self, line: &str) {
        tracing::info!(message = line);
    }
}

/// Whether the project applied to `store` has an environment on the docker
/// or swarm runtime: only then must a server adopt docker's containers (and
/// swarm's services) before it
/// opens the deployer (a server whose environments all run processes, or
/// that has none, need not wait for the docker CLI).
pub async fn uses_docker(store: &Store) -> Result<bool, DeployError> {
    let Some(files) = DeployStore::open(store.clone()).await?.project().await? else {
        return Ok(false);
    };
    let files: Vec<(String, String)> = serde_json::from_str(&files)
        .map_err(|e| DeployError::Spec(format!("stored project: {e}")))?;
    Ok(files.iter().any(|(file, text)| {
        gantry_spec::parse_document(file, text).is_ok_and(|doc| {
            doc.environments
                .values()
                .any(|env| matches!(env.runtime, RuntimeKind::Docker | RuntimeKind::Swarm))
        })
    }))
}
