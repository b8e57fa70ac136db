//! A cluster, through its API server: apply an environment's manifests,
//! judge a rollout, roll back, and read back what runs.
//!
//! Apply is server-side apply with the field manager `gantry`, without
//! `force`: when another manager (a person's `kubectl edit`, an
//! autoscaler) owns a field gantry sets, the API answers 409; gantry reads
//! the object again, tries once more, and then fails naming the other
//! managers instead of taking their fields silently.
//!
//! A rollout is judged by polling the Deployment (no watch that could end
//! half-way: a poll that fails for a passing reason — a 5xx, a dropped
//! connection — is simply made again): done when the controller has seen
//! the newest generation and every replica is updated and available;
//! failed when Kubernetes reports `ProgressDeadlineExceeded`, when the new
//! revision's pods restarted as many times as the circuit breaker's
//! threshold, or when gantry's own deadline passes.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{Namespace, Pod, Secret, Service};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::{Client, Config};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::KubeError;
use crate::manifest::{
    ANNOTATION_IMAGE, LABEL_ENVIRONMENT, LABEL_MANAGED_BY, LABEL_REVISION, LABEL_SERVICE, Manifests,
};

/// The field manager of gantry's server-side applies.
pub const FIELD_MANAGER: &str = "gantry";
/// The annotation the Deployment controller numbers ReplicaSets with.
const ANNOTATION_RS_REVISION: &str = "deployment.kubernetes.io/revision";
/// The label the Deployment controller adds to a ReplicaSet's pods.
const LABEL_POD_TEMPLATE_HASH: &str = "pod-template-hash";
/// How many polls in a row may fail for a passing reason before a rollout
/// watch gives up.
const MAX_POLL_ERRORS: u32 = 5;

/// One environment's namespace on one cluster.
#[derive(Clone)]
pub struct KubeCluster {
    client: Client,
    namespace: String,
    /// The API server's URL, for errors.
    server: String,
}

/// How a rollout ended well.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RolloutWatch {
    /// The gantry revision the Deployment's template runs.
    pub revision: Option<u64>,
    pub replicas: i32,
    pub available: i32,
    /// Restarts of the new revision's pods, in total.
    pub restarts: u32,
    /// How many times the Deployment was read.
    pub polls: u32,
}

/// A Deployment gantry finds running in the environment's namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Readopted {
    pub service: String,
    /// From the pod template's `gantry.revision` label.
    pub revision: Option<u64>,
    /// From the pod template's `gantry.image` annotation.
    pub image: Option<String>,
    pub replicas: i32,
    pub available: i32,
}

impl KubeCluster {
    /// A cluster reached through `client` (a real one, or a mock service
    /// in tests); `server` names the API server in errors.
    pub fn new(client: Client, namespace: &str, server: &str) -> KubeCluster {
        KubeCluster {
            client,
            namespace: namespace.to_owned(),
            server: server.to_owned(),
        }
    }

    /// A cluster from a kubeconfig's text (a parameter's value) or, when
    /// `None`, the default kubeconfig (`KUBECONFIG`, `~/.kube/config`, or
    /// the in-cluster service account), using `context` or the current one.
    pub async fn connect(
        kubeconfig: Option<&str>,
        context: Option<&str>,
        namespace: &str,
    ) -> Result<KubeCluster, KubeError> {
        let options = kube::config::KubeConfigOptions {
            context: context.map(str::to_owned),
            ..Default::default()
        };
        let reason = |e: &dyn std::fmt::Display| KubeError::Config {
            reason: e.to_string(),
        };
        let config = match kubeconfig {
            Some(text) => {
                // The kubeconfig may hold credentials: its parse error is
                // reported without quoting it.
                let parsed =
                    kube::config::Kubeconfig::from_yaml(text).map_err(|_| KubeError::Config {
                        reason: "the kubeconfig parameter is not a valid kubeconfig".to_owned(),
                    })?;
                Config::from_custom_kubeconfig(parsed, &options)
                    .await
                    .map_err(|e| reason(&e))?
            }
            // A context names an entry of the default kubeconfig.
            None if context.is_some() => Config::from_kubeconfig(&options)
                .await
                .map_err(|e| reason(&e))?,
            // Without one: the default kubeconfig, else the in-cluster
            // service account (gantry itself running in a pod).
            None => Config::infer().await.map_err(|e| reason(&e))?,
        };
        KubeCluster::from_config(config, namespace)
    }

    /// A cluster from a kube-rs config.
    pub fn from_config(config: Config, namespace: &str) -> Result<KubeCluster, KubeError> {
        let server = config.cluster_url.to_string();
        let client = Client::try_from(config).map_err(|e| KubeError::Config {
            reason: e.to_string(),
        })?;
        Ok(KubeCluster::new(client, namespace, &server))
    }

    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        <K as kube::Resource>::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    /// Maps a kube-rs error to one of gantry's, naming what was asked.
    fn error(&self, error: kube::Error, verb: &str, resource: &str) -> KubeError {
        match error {
            kube::Error::Api(status) if status.code == 401 || status.code == 403 => {
                KubeError::Forbidden {
                    verb: verb.to_owned(),
                    resource: resource.to_owned(),
                    namespace: self.namespace.clone(),
                    message: status.message,
                }
            }
            kube::Error::Api(status) if status.code == 409 => KubeError::Conflict {
                resource: resource.to_owned(),
                namespace: self.namespace.clone(),
                message: status.message,
            },
            kube::Error::Api(status) => KubeError::Api {
                verb: verb.to_owned(),
                resource: resource.to_owned(),
                namespace: self.namespace.clone(),
                code: status.code,
                message: status.message,
            },
            kube::Error::HyperError(e) => KubeError::Unreachable {
                server: self.server.clone(),
                reason: chain(&e),
            },
            kube::Error::Service(e) => KubeError::Unreachable {
                server: self.server.clone(),
                reason: chain(e.as_ref()),
            },
            other => KubeError::Api {
                verb: verb.to_owned(),
                resource: resource.to_owned(),
                namespace: self.namespace.clone(),
                code: 0,
                message: other.to_string(),
            },
        }
    }

    /// Server-side applies every object of `manifests`, in order
    /// (Namespace, then per service Secret, Service, Deployment: the
    /// Deployment last, so a refusal of any other object leaves the pods
    /// as they were). Returns one line per object applied.
    pub async fn apply(&self, manifests: &Manifests) -> Result<Vec<String>, KubeError> {
        let mut applied = Vec::new();
        let namespaces: Api<Namespace> = Api::all(self.client.clone());
        let name = manifests
            .namespace
            .metadata
            .name
            .clone()
            .unwrap_or_default();
        self.apply_one(&namespaces, &name, "namespaces", &manifests.namespace)
            .await?;
        applied.push(format!("namespace/{name}"));
        for service in &manifests.services {
            if let Some(secret) = &service.secret {
                let name = secret.metadata.name.clone().unwrap_or_default();
                self.apply_one(&self.api::<Secret>(), &name, "secrets", secret)
                    .await?;
                applied.push(format!("secret/{name}"));
            }
            let name = service.deployment.metadata.name.clone().unwrap_or_default();
            self.apply_one(&self.api::<Service>(), &name, "services", &service.service)
                .await?;
            applied.push(format!("service/{name}"));
            self.apply_one(
                &self.api::<Deployment>(),
                &name,
                "deployments",
                &service.deployment,
            )
            .await?;
            applied.push(format!("deployment.apps/{name}"));
        }
        Ok(applied)
    }

    /// One server-side apply; on 409 a fresh read and one more try, then
    /// an error naming the managers that own the fields in conflict.
    async fn apply_one<K>(
        &self,
        api: &Api<K>,
        name: &str,
        plural: &str,
        object: &K,
    ) -> Result<K, KubeError>
    where
        K: kube::Resource + Clone + DeserializeOwned + Serialize + std::fmt::Debug,
    {
        let resource = format!("{plural}/{name}");
        let params = PatchParams::apply(FIELD_MANAGER);
        match api.patch(name, &params, &Patch::Apply(object)).await {
            Ok(applied) => return Ok(applied),
            Err(kube::Error::Api(status)) if status.code == 409 => {
                tracing::info!(%resource, namespace = %self.namespace, "Conflict on apply; reading the object again and retrying once.");
            }
            Err(e) => return Err(self.error(e, "apply", &resource)),
        }
        let fresh = api
            .get(name)
            .await
            .map_err(|e| self.error(e, "get", &resource))?;
        match api.patch(name, &params, &Patch::Apply(object)).await {
            Ok(applied) => Ok(applied),
            Err(kube::Error::Api(status)) if status.code == 409 => {
                let managers: Vec<String> = fresh
                    .meta()
                    .managed_fields
                    .iter()
                    .flatten()
                    .filter_map(|m| m.manager.clone())
                    .filter(|m| m != FIELD_MANAGER)
                    .collect();
                let who = if managers.is_empty() {
                    String::new()
                } else {
                    format!(" (fields also managed by: {})", managers.join(", "))
                };
                Err(KubeError::Conflict {
                    resource,
                    namespace: self.namespace.clone(),
                    message: format!("{}{who}", status.message),
                })
            }
            Err(e) => Err(self.error(e, "apply", &resource)),
        }
    }

    /// Deletes the Deployment and the Service named `service` (their pods
    /// go with the Deployment, in the background); one already gone is
    /// not an error. Secrets stay: a later rollback reads them.
    pub async fn remove(&self, service: &str) -> Result<(), KubeError> {
        let params = DeleteParams::background();
        let gone = |e: &kube::Error| matches!(e, kube::Error::Api(status) if status.code == 404);
        match self.api::<Deployment>().delete(service, &params).await {
            Ok(_) => {}
            Err(e) if gone(&e) => {}
            Err(e) => return Err(self.error(e, "delete", &format!("deployments/{service}"))),
        }
        match self.api::<Service>().delete(service, &params).await {
            Ok(_) => Ok(()),
            Err(e) if gone(&e) => Ok(()),
            Err(e) => Err(self.error(e, "delete", &format!("services/{service}"))),
        }
    }

    /// The node ports of the Service `service` (a NodePort Service's
    /// ports as every node opens them; none for a ClusterIP one).
    pub async fn node_ports(&self, service: &str) -> Result<Vec<u16>, KubeError> {
        let resource = format!("services/{service}");
        let found = self
            .api::<Service>()
            .get(service)
            .await
            .map_err(|e| self.error(e, "get", &resource))?;
        Ok(found
            .spec
            .iter()
            .flat_map(|s| s.ports.iter().flatten())
            .filter_map(|p| p.node_port.and_then(|n| u16::try_from(n).ok()))
            .collect())
    }

    /// Waits until `deployment`'s rollout is done or failed, polling every
    /// `poll` until `deadline` (from now). `breaker_threshold`: the new
    /// revision's pods may restart fewer times than this in total (0: no
    /// limit).
    pub async fn wait_rollout(
        &self,
        deployment: &str,
        breaker_threshold: u32,
        deadline: Duration,
        poll: Duration,
    ) -> Result<RolloutWatch, KubeError> {
        let started = tokio::time::Instant::now();
        let resource = format!("deployments/{deployment}");
        let fail = |reason: String| KubeError::RolloutFailed {
            deployment: deployment.to_owned(),
            namespace: self.namespace.clone(),
            reason,
        };
        let mut polls = 0;
        let mut errors = 0;
        loop {
            polls += 1;
            let read = self.api::<Deployment>().get(deployment).await;
            let current = match read {
                Ok(current) => {
                    errors = 0;
                    Some(current)
                }
                Err(e) if passing(&e) && errors + 1 < MAX_POLL_ERRORS => {
                    errors += 1;
                    tracing::info!(%resource, error = %e, "Reading the rollout failed; polling again.");
                    None
                }
                Err(e) => return Err(self.error(e, "get", &resource)),
            };
            if let Some(current) = current {
                let judged = self.judge(&current, breaker_threshold).await?;
                match judged {
                    Judgement::Done(mut watch) => {
                        watch.polls = polls;
                        return Ok(watch);
                    }
                    Judgement::Failed(reason) => return Err(fail(reason)),
                    Judgement::Progressing => {}
                }
            }
            if started.elapsed() + poll > deadline {
                return Err(fail(format!(
                    "not available after {}s (gantry's deadline)",
                    deadline.as_secs()
                )));
            }
            tokio::time::sleep(poll).await;
        }
    }

    async fn judge(
        &self,
        deployment: &Deployment,
        breaker_threshold: u32,
    ) -> Result<Judgement, KubeError> {
        let status = deployment.status.clone().unwrap_or_default();
        let desired = deployment
            .spec
            .as_ref()
            .and_then(|s| s.replicas)
            .unwrap_or(1);
        if let Some(condition) = status
            .conditions
            .iter()
            .flatten()
            .find(|c| c.type_ == "Progressing" && c.status == "False")
            && condition.reason.as_deref() == Some("ProgressDeadlineExceeded")
        {
            return Ok(Judgement::Failed(format!(
                "Kubernetes reports ProgressDeadlineExceeded: {}",
                condition.message.clone().unwrap_or_default()
            )));
        }
        let template = deployment.spec.as_ref().map(|s| &s.template);
        let labels = template
            .and_then(|t| t.metadata.as_ref())
            .and_then(|m| m.labels.clone())
            .unwrap_or_default();
        let revision = labels.get(LABEL_REVISION).and_then(|r| r.parse().ok());
        let restarts = self.restarts(&labels).await?;
        if breaker_threshold > 0 && restarts >= breaker_threshold {
            return Ok(Judgement::Failed(format!(
                "the new pods restarted {restarts} times; the circuit breaker's threshold is {breaker_threshold}"
            )));
        }
        let generation = deployment.metadata.generation.unwrap_or(0);
        let done = status.observed_generation.unwrap_or(-1) >= generation
            && status.updated_replicas.unwrap_or(0) == desired
            && status.available_replicas.unwrap_or(0) == desired
            && status.replicas.unwrap_or(0) == desired;
        if done {
            return Ok(Judgement::Done(RolloutWatch {
                revision,
                replicas: desired,
                available: status.available_replicas.unwrap_or(0),
                restarts,
                polls: 0,
            }));
        }
        Ok(Judgement::Progressing)
    }

    /// Restarts of the pods of the template's revision, in total.
    async fn restarts(&self, labels: &BTreeMap<String, String>) -> Result<u32, KubeError> {
        let keys = [LABEL_ENVIRONMENT, LABEL_SERVICE, LABEL_REVISION];
        let selector: Vec<String> = keys
            .iter()
            .filter_map(|k| labels.get(*k).map(|v| format!("{k}={v}")))
            .collect();
        if selector.len() != keys.len() {
            return Ok(0);
        }
        let pods = self
            .api::<Pod>()
            .list(&ListParams::default().labels(&selector.join(",")))
            .await
            .map_err(|e| self.error(e, "list", "pods"))?;
        Ok(pods
            .items
            .iter()
            .filter_map(|p| p.status.as_ref())
            .flat_map(|s| s.container_statuses.iter().flatten())
            .map(|c| u32::try_from(c.restart_count).unwrap_or(0))
            .sum())
    }

    /// Returns `deployment` to the pod template of its previous
    /// ReplicaSet, as `kubectl rollout undo` does. Returns the gantry
    /// revision it went back to, when the template names one.
    pub async fn rollback(&self, deployment: &str) -> Result<Option<u64>, KubeError> {
        let resource = format!("deployments/{deployment}");
        let api = self.api::<Deployment>();
        let current = api
            .get(deployment)
            .await
            .map_err(|e| self.error(e, "get", &resource))?;
        let nothing = || KubeError::NothingToRollBackTo {
            deployment: deployment.to_owned(),
            namespace: self.namespace.clone(),
        };
        let current_revision = rs_revision(&current.metadata).ok_or_else(nothing)?;
        let selector = current
            .spec
            .as_ref()
            .and_then(|s| s.selector.match_labels.clone())
            .unwrap_or_default();
        let selector: Vec<String> = selector.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let sets = self
            .api::<ReplicaSet>()
            .list(&ListParams::default().labels(&selector.join(",")))
            .await
            .map_err(|e| self.error(e, "list", "replicasets"))?;
        let previous = sets
            .items
            .into_iter()
            .filter_map(|rs| rs_revision(&rs.metadata).map(|n| (n, rs)))
            .filter(|(n, _)| *n < current_revision)
            .max_by_key(|(n, _)| *n)
            .map(|(_, rs)| rs)
            .ok_or_else(nothing)?;
        let mut template = previous.spec.and_then(|s| s.template).ok_or_else(nothing)?;
        let mut labels = template
            .metadata
            .as_ref()
            .and_then(|m| m.labels.clone())
            .unwrap_or_default();
        labels.remove(LABEL_POD_TEMPLATE_HASH);
        let revision = labels.get(LABEL_REVISION).cloned();
        template.metadata.get_or_insert_default().labels = Some(labels);
        // The whole template is replaced, as `kubectl rollout undo`'s JSON
        // patch does: a merge would keep fields the newer template added
        // (a command, resources) that the older one lacks.
        let mut template = serde_json::to_value(&template).map_err(|e| KubeError::Manifest {
            object: resource.clone(),
            reason: e.to_string(),
        })?;
        template["$patch"] = serde_json::json!("replace");
        let mut patch = serde_json::json!({"spec": {"template": template}});
        if let Some(revision) = &revision {
            patch["metadata"] = serde_json::json!({"labels": {LABEL_REVISION: revision}});
        }
        let params = PatchParams {
            field_manager: Some(FIELD_MANAGER.to_owned()),
            ..PatchParams::default()
        };
        api.patch(deployment, &params, &Patch::Strategic(&patch))
            .await
            .map_err(|e| self.error(e, "patch", &resource))?;
        Ok(revision.and_then(|r| r.parse().ok()))
    }

    /// The Deployments gantry manages for `environment` in the namespace,
    /// and which revision each runs.
    pub async fn readopt(&self, environment: &str) -> Result<Vec<Readopted>, KubeError> {
        let selector = format!("{LABEL_MANAGED_BY}=gantry,{LABEL_ENVIRONMENT}={environment}");
        let list = self
            .api::<Deployment>()
            .list(&ListParams::default().labels(&selector))
            .await
            .map_err(|e| self.error(e, "list", "deployments"))?;
        let mut found: Vec<Readopted> = list
            .items
            .into_iter()
            .filter_map(|d| {
                let template = d
                    .spec
                    .as_ref()?
                    .template
                    .metadata
                    .clone()
                    .unwrap_or_default();
                let labels = template.labels.unwrap_or_default();
                Some(Readopted {
                    service: labels.get(LABEL_SERVICE)?.clone(),
                    revision: labels.get(LABEL_REVISION).and_then(|r| r.parse().ok()),
                    image: template
                        .annotations
                        .and_then(|a| a.get(ANNOTATION_IMAGE).cloned()),
                    replicas: d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1),
                    available: d
                        .status
                        .as_ref()
                        .and_then(|s| s.available_replicas)
                        .unwrap_or(0),
                })
            })
            .collect();
        found.sort_by(|a, b| a.service.cmp(&b.service));
        Ok(found)
    }
}

enum Judgement {
    Done(RolloutWatch),
    Failed(String),
    Progressing,
}

/// The Deployment controller's number of a ReplicaSet (or Deployment).
fn rs_revision(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> Option<u64> {
    meta.annotations
        .as_ref()?
        .get(ANNOTATION_RS_REVISION)?
        .parse()
        .ok()
}

/// Whether a failed read may succeed when made again: the server's
/// trouble (5xx, 429) or the connection's, not a refusal.
fn passing(error: &kube::Error) -> bool {
    match error {
        kube::Error::Api(status) => status.code >= 500 || status.code == 429,
        kube::Error::HyperError(_) | kube::Error::Service(_) => true,
        _ => false,
    }
}

/// An error and its causes, as one line.
fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}
