//! Status: what `gantry env status` shows and `GET /api/v1/environments/{env}`
//! returns: each service's current revision, image and digest, parameter
//! versions, replicas with their health, and recent deployments.
//!
//! The answer's types are the API's (`gantry_api::EnvironmentStatus` and
//! friends), defined once there; the JSON is a contract, which gantry-api's
//! `environment` tests pin.

use std::collections::{BTreeMap, HashMap};

use gantry_api::{
    EnvironmentStatus, ListenerStatus, LoadBalancerRule, ReplicaExit, ReplicaStatus,
    RevisionDetail, ServiceStatus, TrafficShare,
};
use gantry_proxy::{Health, TargetStatus};

use crate::deployer::{Deployer, runtime_name};
use crate::error::DeployError;
use crate::revision::{Revision, SecretRef};
use crate::rollout::ReplicaRef;
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
    /// The last `tail` lines of an environment's access log, or with
    /// `after` (an earlier answer's cursor) the lines since; at most 1 MiB
    /// a call. An environment that never logged has none.
    pub async fn access_log(
        &self,
        environment: &str,
        tail: usize,
        after: Option<u64>,
    ) -> Result<gantry_api::environment::AccessLogLines, DeployError> {
        let (env, _) = self.environment(environment).await?;
        let enabled = env
            .spec
            .lock()
            .await
            .load_balancer
            .as_ref()
            .is_some_and(|lb| lb.access_log);
        let Some(dir) = &self.inner.access_logs else {
            return Ok(gantry_api::environment::AccessLogLines {
                lines: Vec::new(),
                cursor: 0,
                enabled,
            });
        };
        let path = crate::access_log::path_of(dir, &env.name);
        let read = tokio::task::spawn_blocking(move || crate::access_log::read(&path, tail, after))
            .await
            .map_err(|e| DeployError::Runtime(e.to_string()))?
            .map_err(|e| DeployError::Runtime(format!("the access log of {environment}: {e}")))?;
        Ok(gantry_api::environment::AccessLogLines {
            lines: read.lines,
            cursor: read.cursor,
            enabled,
        })
    }

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
            let traffic = traffic_shares(&replicas, &targets);
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
                        weight: target.map(|t| t.weight),
                    }
                })
                .collect();

            let deployments = self.inner.db.deployments(environment, &name, 10).await?;
            services.push(ServiceStatus {
                cause: current.as_ref().map(|c| c.cause.clone()),
                deployments: deployments.into_iter().map(Into::into).collect(),
                desired: current.as_ref().map(|c| c.replicas),
                digest: current
                    .as_ref()
                    .and_then(|c| c.image.split_once('@').map(|(_, d)| d.to_string())),
                execution: current.as_ref().and_then(|c| c.execution.clone()),
                image: current.as_ref().map(|c| c.image.clone()),
                name,
                parameters: current
                    .as_ref()
                    .map(|c| c.secrets.iter().cloned().map(Into::into).collect())
                    .unwrap_or_default(),
                replicas,
                revision: current.as_ref().map(|c| c.number),
                traffic,
            });
        }
        let addr = env.lb.local_addr();
        let mut rules: Vec<LoadBalancerRule> = spec
            .load_balancer
            .iter()
            .flat_map(|lb| &lb.rules)
            .map(|r| LoadBalancerRule {
                // The path patterns (the shorthand's one path), joined.
                path: r
                    .conditions
                    .path
                    .iter()
                    .map(|p| p.as_str())
                    .collect::<Vec<_>>()
                    .join(","),
                priority: r.priority,
                service: r
                    .action
                    .services()
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(","),
            })
            .collect();
        rules.sort_by_key(|r| r.priority);
        let pins = env
            .certificates
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        // One listener is served per environment in this version: the
        // first, on the load balancer's own address.
        let mut listeners: Vec<ListenerStatus> = spec
            .load_balancer
            .iter()
            .flat_map(crate::apply::serving)
            .map(|listener| {
                let https = listener.protocol == gantry_spec::environment::Protocol::Https;
                ListenerStatus {
                    name: listener.name.clone(),
                    listen: addr.to_string(),
                    protocol: if https { "https" } else { "http" }.to_owned(),
                    certificates: if https { pins.clone() } else { Vec::new() },
                    acme: env
                        .acme_status
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .clone()
                        .filter(|_| https && listener.acme.is_some()),
                }
            })
            .collect();
        for sibling in env.siblings.lock().await.iter() {
            listeners.push(ListenerStatus {
                name: sibling.name.clone(),
                listen: sibling.lb.local_addr().to_string(),
                protocol: if sibling.https { "https" } else { "http" }.to_owned(),
                certificates: sibling.pins.clone(),
                acme: None,
            });
        }
        for (name, lb) in env.redirects.lock().await.iter() {
            listeners.push(ListenerStatus {
                name: name.clone(),
                listen: lb.local_addr().to_string(),
                protocol: "http".to_owned(),
                certificates: Vec::new(),
                acme: None,
            });
        }
        let scheme = if listeners.first().is_some_and(|l| l.protocol == "https") {
            "https"
        } else {
            "http"
        };
        Ok(EnvironmentStatus {
            environment: environment.to_string(),
            load_balancer: addr.to_string(),
            rules,
            listeners,
            runtime: runtime_name(spec.runtime).to_string(),
            services,
            // The serving listener's scheme: an https one is reached over TLS.
            url: format!("{scheme}://{addr}/"),
        })
    }
}

/// Each revision's share of a service's requests, as the load balancer
/// picks targets: among the Healthy ones of weight above 0, or, when there
/// is none, the ones not draining (it fails open, as ALB does).
fn traffic_shares(replicas: &[ReplicaRef], targets: &[TargetStatus]) -> Vec<TrafficShare> {
    let revision_of: HashMap<&str, u64> = replicas
        .iter()
        .map(|r| (r.id.as_str(), r.revision))
        .collect();
    let takes = |t: &&TargetStatus, healthy_only: bool| {
        t.weight > 0
            && if healthy_only {
                t.health == Health::Healthy
            } else {
                t.health != Health::Draining
            }
    };
    let healthy_only = targets.iter().any(|t| takes(&t, true));
    let mut weights: BTreeMap<u64, u32> = BTreeMap::new();
    for t in targets.iter().filter(|t| takes(t, healthy_only)) {
        if let Some(revision) = revision_of.get(t.id.as_str()) {
            *weights.entry(*revision).or_default() += t.weight;
        }
    }
    let total: u64 = weights.values().map(|w| u64::from(*w)).sum();
    weights
        .into_iter()
        .map(|(revision, weight)| TrafficShare {
            percent: u32::try_from((u64::from(weight) * 100 + total / 2) / total.max(1))
                .unwrap_or(100),
            revision,
            weight,
        })
        .collect()
}

impl Deployer {
    /// One revision of a service as it was made, its definition flattened
    /// into named fields (see [`RevisionDetail::fields`]).
    pub async fn revision_detail(
        &self,
        environment: &str,
        service: &str,
        number: u64,
    ) -> Result<RevisionDetail, DeployError> {
        let (_, project) = self.environment(environment).await?;
        if !project.services.keys().any(|s| s.as_str() == service) {
            return Err(DeployError::UnknownService {
                environment: environment.to_string(),
                service: service.to_string(),
            });
        }
        let revision = self
            .inner
            .db
            .revision(environment, service, number)
            .await?
            .ok_or(DeployError::UnknownRevision {
                environment: environment.to_string(),
                service: service.to_string(),
                revision: number,
            })?;
        Ok(RevisionDetail {
            cause: revision.cause.clone(),
            created_at: revision.created_at,
            environment: revision.environment.clone(),
            execution: revision.execution.clone(),
            fields: revision_fields(&revision),
            image: revision.image.clone(),
            revision: revision.number,
            service: revision.service.clone(),
        })
    }
}

/// A revision's definition as `name = value` pairs: every stored field but
/// its identity (number, time, cause, execution), nested maps as
/// `name.key`, secrets as `secret.VAR = PARAMETER:VERSION`. Built from the
/// stored form, so a field a later revision adds shows up in diffs without
/// a change here.
fn revision_fields(revision: &Revision) -> BTreeMap<String, String> {
    const IDENTITY: [&str; 6] = [
        "number",
        "created_at",
        "cause",
        "execution",
        "environment",
        "service",
    ];
    let mut fields = BTreeMap::new();
    for secret in &revision.secrets {
        fields.insert(
            format!("secret.{}", secret.var),
            format!("{}:{}", secret.parameter, secret.version),
        );
    }
    let Ok(serde_json::Value::Object(map)) = serde_json::to_value(revision) else {
        return fields;
    };
    for (key, value) in map {
        if IDENTITY.contains(&key.as_str()) || key == "secrets" {
            continue;
        }
        flatten(&key, value, &mut fields);
    }
    fields
}

fn flatten(name: &str, value: serde_json::Value, into: &mut BTreeMap<String, String>) {
    use serde_json::Value;
    match value {
        Value::Null => {}
        Value::String(s) => {
            into.insert(name.to_string(), s);
        }
        Value::Object(map) => {
            for (key, value) in map {
                flatten(&format!("{name}.{key}"), value, into);
            }
        }
        other => {
            into.insert(name.to_string(), other.to_string());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn replica(id: &str, revision: u64) -> ReplicaRef {
        ReplicaRef {
            id: id.into(),
            revision,
            addr: "127.0.0.1:1".parse().unwrap(),
        }
    }

    fn target(id: &str, health: Health, weight: u32) -> TargetStatus {
        TargetStatus {
            id: id.into(),
            addr: "127.0.0.1:1".parse().unwrap(),
            health,
            in_flight: 0,
            weight,
            last_failure: None,
        }
    }

    fn shares(targets: &[TargetStatus]) -> Vec<(u64, u32, u32)> {
        let replicas = [replica("a", 1), replica("b", 1), replica("c", 2)];
        traffic_shares(&replicas, targets)
            .into_iter()
            .map(|s| (s.revision, s.percent, s.weight))
            .collect()
    }

    #[test]
    fn shares_follow_the_weights_of_targets_that_may_take_requests() {
        use Health::*;
        // A canary at 10%: the stable revision's two replicas weigh 45 each.
        let canary = [
            target("a", Healthy, 45),
            target("b", Healthy, 45),
            target("c", Healthy, 10),
        ];
        assert_eq!(shares(&canary), [(1, 90, 90), (2, 10, 10)]);
        // Green is not healthy yet: blue takes everything.
        let starting = [
            target("a", Healthy, 1),
            target("b", Healthy, 1),
            target("c", Initial, 1),
        ];
        assert_eq!(shares(&starting), [(1, 100, 2)]);
        // Weight 0 and draining targets take nothing.
        let switched = [
            target("a", Draining, 1),
            target("b", Healthy, 0),
            target("c", Healthy, 1),
        ];
        assert_eq!(shares(&switched), [(2, 100, 1)]);
        // None healthy: the load balancer fails open to the rest.
        let failing = [target("a", Unhealthy, 1), target("c", Initial, 1)];
        assert_eq!(shares(&failing), [(1, 50, 1), (2, 50, 1)]);
        assert_eq!(shares(&[]), []);
    }
}
