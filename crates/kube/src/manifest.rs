//! A service revision as Kubernetes objects, with no IO: the environment's
//! Namespace, one Secret per service and set of pinned parameter versions,
//! a Deployment (apps/v1) and a Service (v1).
//!
//! Names and labels: the Deployment and the Service are named after the
//! gantry service; every object carries the labels the docker and swarm
//! runtimes put on their replicas (`gantry.environment`, `gantry.service`,
//! `gantry.revision`) plus `app.kubernetes.io/managed-by: gantry`. The
//! Deployment's selector leaves the revision out, because a selector cannot
//! change once the Deployment exists. The image digest is too long for a
//! label value, so it is the annotation `gantry.image`.
//!
//! Secrets: the Secret's name holds a hash of the `NAME:VERSION` list it was
//! made from, so a new parameter version makes a new Secret and so a new
//! pod template: a rollout, and a rollback returns to the Secret the old
//! pods read. Values live only in the Secret's `data` (filled by the
//! caller from the parameter store), never in the Deployment; rendered
//! for people, the data keys are empty.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::ByteString;
use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment,
};
use k8s_openapi::api::core::v1::{
    Container, ContainerPort, EnvVar, EnvVarSource, ExecAction, GRPCAction, HTTPGetAction,
    Namespace, PodSpec, PodTemplateSpec, Probe, ResourceRequirements, Secret, SecretKeySelector,
    Service, ServicePort, ServiceSpec,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use sha2::{Digest, Sha256};

use crate::error::KubeError;

/// The label naming the environment (as on docker and swarm replicas).
pub const LABEL_ENVIRONMENT: &str = "gantry.environment";
/// The label naming the gantry service.
pub const LABEL_SERVICE: &str = "gantry.service";
/// The label holding the revision number.
pub const LABEL_REVISION: &str = "gantry.revision";
/// Kubernetes' recommended label for the tool that manages an object.
pub const LABEL_MANAGED_BY: &str = "app.kubernetes.io/managed-by";
/// The annotation holding the image reference, by digest.
pub const ANNOTATION_IMAGE: &str = "gantry.image";
/// The annotation listing a Secret's (or pod template's) parameter
/// versions, `NAME:VERSION VAR` per line: which versions, never values.
pub const ANNOTATION_PARAMETERS: &str = "gantry.parameters";

/// Where an environment's objects go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub environment: String,
    pub namespace: String,
    pub service_type: ServiceType,
}

/// The type of the Service in front of a Deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ServiceType {
    #[default]
    ClusterIp,
    NodePort,
}

/// What the manifests are made from: one revision of one service, as the
/// deployer resolved it (image by digest, secrets by parameter version).
/// gantry-deploy's `Revision` fills it; this crate does not depend on it.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceRevision {
    pub service: String,
    pub revision: u64,
    /// The container's name (imagedefinitions.json's `name`).
    pub container: String,
    /// `registry/repo@sha256:…`.
    pub image: String,
    /// Replaces the image's entrypoint and command when set.
    pub command: Option<Vec<String>>,
    pub port: u16,
    pub replicas: u32,
    pub environment: BTreeMap<String, String>,
    pub secrets: Vec<SecretPin>,
    pub health: HealthCheck,
    pub min_healthy_percent: u32,
    pub max_percent: u32,
    /// Bytes.
    pub memory: Option<u64>,
    pub cpus: Option<f64>,
}

/// A secret environment variable: which parameter, which version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretPin {
    pub var: String,
    pub parameter: String,
    /// `None` when nothing resolved it yet (a render without a server):
    /// the name says `latest`, and a deploy pins the version.
    pub version: Option<u64>,
}

impl SecretPin {
    fn pinned(&self) -> String {
        match self.version {
            Some(version) => format!("{}:{version}", self.parameter),
            None => format!("{}:latest", self.parameter),
        }
    }
}

/// A service's health check, as probes will run it.
#[derive(Debug, Clone, PartialEq)]
pub struct HealthCheck {
    pub kind: HealthKind,
    pub interval: Duration,
    pub timeout: Duration,
    pub healthy_threshold: u32,
    pub unhealthy_threshold: u32,
    /// Failures in this time after a start do not count (ECS's grace
    /// period): the liveness probe's initial delay.
    pub grace_period: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HealthKind {
    /// An HTTP GET of this path on the service's port.
    Http { path: String },
    /// This argv, run in the container; exit 0 is healthy.
    Command { argv: Vec<String> },
    /// The gRPC health protocol (grpc.health.v1) on the service's port;
    /// an empty `service` asks about the server as a whole.
    Grpc { service: String },
}

/// The objects of one service revision.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceManifests {
    /// `None` when the service has no secrets.
    pub secret: Option<Secret>,
    pub deployment: Deployment,
    pub service: Service,
}

/// Everything gantry applies for an environment: its Namespace, then per
/// service the Secret, Deployment and Service, in that order (the order a
/// cluster needs them in).
#[derive(Debug, Clone, PartialEq)]
pub struct Manifests {
    pub namespace: Namespace,
    pub services: Vec<ServiceManifests>,
}

/// The environment's Namespace.
pub fn namespace(target: &Target) -> Namespace {
    Namespace {
        metadata: ObjectMeta {
            name: Some(target.namespace.clone()),
            labels: Some(BTreeMap::from([
                (LABEL_MANAGED_BY.to_owned(), "gantry".to_owned()),
                (LABEL_ENVIRONMENT.to_owned(), target.environment.clone()),
            ])),
            ..ObjectMeta::default()
        },
        ..Namespace::default()
    }
}

/// The manifests of an environment's services.
pub fn manifests(target: &Target, revisions: &[ServiceRevision]) -> Result<Manifests, KubeError> {
    check_name("namespace", &target.namespace)?;
    let services = revisions
        .iter()
        .map(|revision| service_manifests(target, revision))
        .collect::<Result<_, _>>()?;
    Ok(Manifests {
        namespace: namespace(target),
        services,
    })
}

/// The Secret, Deployment and Service of one revision.
pub fn service_manifests(
    target: &Target,
    revision: &ServiceRevision,
) -> Result<ServiceManifests, KubeError> {
    check_name("service", &revision.service)?;
    if !revision.image.contains("@sha256:") && !revision.image.starts_with('<') {
        return Err(KubeError::Manifest {
            object: revision.service.clone(),
            reason: format!(
                "image {} is not pinned by digest (registry/repo@sha256:…)",
                revision.image
            ),
        });
    }
    let secret = secret(target, revision);
    let deployment = deployment(target, revision, secret.as_ref());
    let service = service(target, revision);
    Ok(ServiceManifests {
        secret,
        deployment,
        service,
    })
}

/// A DNS-1123 label, as Kubernetes names namespaces and Services.
fn check_name(what: &str, name: &str) -> Result<(), KubeError> {
    let ok = (1..=63).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(KubeError::Manifest {
            object: name.to_owned(),
            reason: format!(
                "{what} name `{name}` is not a DNS-1123 label (1 to 63 of a-z 0-9 -, starting and ending with a letter or digit)"
            ),
        })
    }
}

fn labels(target: &Target, revision: &ServiceRevision) -> BTreeMap<String, String> {
    BTreeMap::from([
        (LABEL_MANAGED_BY.to_owned(), "gantry".to_owned()),
        (LABEL_ENVIRONMENT.to_owned(), target.environment.clone()),
        (LABEL_SERVICE.to_owned(), revision.service.clone()),
        (LABEL_REVISION.to_owned(), revision.revision.to_string()),
    ])
}

/// The labels a Deployment selects its pods (and a Service its endpoints)
/// by: never the revision, so that both outlive revisions.
pub fn selector(environment: &str, service: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (LABEL_ENVIRONMENT.to_owned(), environment.to_owned()),
        (LABEL_SERVICE.to_owned(), service.to_owned()),
    ])
}

/// `catalog-secrets-<10 hex of sha256(NAME:VERSION, sorted, one a line)>`.
pub fn secret_name(service: &str, secrets: &[SecretPin]) -> String {
    let mut pins: Vec<String> = secrets
        .iter()
        .map(|s| format!("{} {}", s.pinned(), s.var))
        .collect();
    pins.sort();
    let digest = Sha256::digest(pins.join("\n").as_bytes());
    format!("{service}-secrets-{}", &hex::encode(digest)[..10])
}

/// `NAME:VERSION VAR`, one a line, sorted by variable.
fn parameters_annotation(secrets: &[SecretPin]) -> String {
    let mut sorted: Vec<&SecretPin> = secrets.iter().collect();
    sorted.sort_by(|a, b| a.var.cmp(&b.var));
    sorted
        .iter()
        .map(|s| format!("{} {}", s.pinned(), s.var))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The Secret with one empty data key per variable: the caller fills them
/// ([`fill_secret`]) right before applying, and nothing else ever holds
/// the values.
fn secret(target: &Target, revision: &ServiceRevision) -> Option<Secret> {
    if revision.secrets.is_empty() {
        return None;
    }
    let mut labels = labels(target, revision);
    // A Secret belongs to a set of versions, not to one revision: the next
    // revision with the same versions reuses it.
    labels.remove(LABEL_REVISION);
    Some(Secret {
        metadata: ObjectMeta {
            name: Some(secret_name(&revision.service, &revision.secrets)),
            namespace: Some(target.namespace.clone()),
            labels: Some(labels),
            annotations: Some(BTreeMap::from([(
                ANNOTATION_PARAMETERS.to_owned(),
                parameters_annotation(&revision.secrets),
            )])),
            ..ObjectMeta::default()
        },
        type_: Some("Opaque".to_owned()),
        // Immutable: a Secret's name pins its versions, so its data never
        // changes (and kubelets need not watch it).
        immutable: Some(true),
        data: Some(
            revision
                .secrets
                .iter()
                .map(|s| (s.var.clone(), ByteString(Vec::new())))
                .collect(),
        ),
        ..Secret::default()
    })
}

/// Fills a Secret's data with the values read from the parameter store,
/// by variable. A variable without a value is an error naming it (never
/// a value).
pub fn fill_secret(
    secret: &mut Secret,
    values: &BTreeMap<String, String>,
) -> Result<(), KubeError> {
    let name = secret.metadata.name.clone().unwrap_or_default();
    let Some(data) = secret.data.as_mut() else {
        return Ok(());
    };
    for (var, value) in data.iter_mut() {
        let found = values.get(var).ok_or_else(|| KubeError::Manifest {
            object: name.clone(),
            reason: format!("no value for secret variable {var}"),
        })?;
        *value = ByteString(found.as_bytes().to_vec());
    }
    Ok(())
}

fn seconds(d: Duration) -> i32 {
    i32::try_from(d.as_secs().max(1)).unwrap_or(i32::MAX)
}

fn threshold(n: u32) -> i32 {
    i32::try_from(n.max(1)).unwrap_or(i32::MAX)
}

/// Readiness (traffic) and liveness (restarts) from the one health check:
/// readiness needs `healthy_threshold` successes, both fail after
/// `unhealthy_threshold` failures; liveness waits out the grace period and
/// must have a success threshold of 1 (the API refuses anything else).
fn probes(revision: &ServiceRevision) -> (Probe, Probe) {
    let check = &revision.health;
    let base = match &check.kind {
        HealthKind::Http { path } => Probe {
            http_get: Some(HTTPGetAction {
                path: Some(path.clone()),
                port: IntOrString::Int(i32::from(revision.port)),
                ..HTTPGetAction::default()
            }),
            ..Probe::default()
        },
        HealthKind::Command { argv } => Probe {
            exec: Some(ExecAction {
                command: Some(argv.clone()),
            }),
            ..Probe::default()
        },
        HealthKind::Grpc { service } => Probe {
            grpc: Some(GRPCAction {
                port: i32::from(revision.port),
                service: (!service.is_empty()).then(|| service.clone()),
            }),
            ..Probe::default()
        },
    };
    let base = Probe {
        period_seconds: Some(seconds(check.interval)),
        timeout_seconds: Some(seconds(check.timeout)),
        failure_threshold: Some(threshold(check.unhealthy_threshold)),
        ..base
    };
    let readiness = Probe {
        success_threshold: Some(threshold(check.healthy_threshold)),
        ..base.clone()
    };
    let grace = check.grace_period.as_secs();
    let liveness = Probe {
        success_threshold: Some(1),
        initial_delay_seconds: (grace > 0).then(|| i32::try_from(grace).unwrap_or(i32::MAX)),
        ..base
    };
    (readiness, liveness)
}

/// ECS's percents as a rolling update: `maxUnavailable` is what
/// `min_healthy_percent` leaves out, `maxSurge` what `max_percent` allows
/// above the desired count. Kubernetes refuses both at 0 (no rollout could
/// move), so then one extra pod may start, as ECS would need to.
fn strategy(revision: &ServiceRevision) -> DeploymentStrategy {
    let unavailable = 100u32.saturating_sub(revision.min_healthy_percent);
    let surge = revision.max_percent.saturating_sub(100);
    let percent = |p: u32| IntOrString::String(format!("{p}%"));
    let (unavailable, surge) = if unavailable == 0 && surge == 0 {
        (IntOrString::Int(0), IntOrString::Int(1))
    } else {
        (percent(unavailable), percent(surge))
    };
    DeploymentStrategy {
        type_: Some("RollingUpdate".to_owned()),
        rolling_update: Some(RollingUpdateDeployment {
            max_unavailable: Some(unavailable),
            max_surge: Some(surge),
        }),
    }
}

fn resources(revision: &ServiceRevision) -> Option<ResourceRequirements> {
    let mut limits = BTreeMap::new();
    if let Some(cpus) = revision.cpus {
        // Millicores: 0.25 → 250m.
        let millis = (cpus * 1000.0).round().max(1.0);
        limits.insert("cpu".to_owned(), Quantity(format!("{millis}m")));
    }
    if let Some(memory) = revision.memory {
        limits.insert("memory".to_owned(), Quantity(memory.to_string()));
    }
    (!limits.is_empty()).then(|| ResourceRequirements {
        // Requests equal to limits: the scheduler reserves what the
        // service may use, as ECS's task size does.
        requests: Some(limits.clone()),
        limits: Some(limits),
        ..ResourceRequirements::default()
    })
}

fn env(revision: &ServiceRevision, secret: Option<&Secret>) -> Vec<EnvVar> {
    // The docker runtime sets PORT to the service's port too, so one image
    // serves every runtime.
    let mut vars = vec![EnvVar {
        name: "PORT".to_owned(),
        value: Some(revision.port.to_string()),
        ..EnvVar::default()
    }];
    vars.extend(
        revision
            .environment
            .iter()
            .filter(|(name, _)| name.as_str() != "PORT")
            .map(|(name, value)| EnvVar {
                name: name.clone(),
                value: Some(value.clone()),
                ..EnvVar::default()
            }),
    );
    let secret_name = secret.and_then(|s| s.metadata.name.clone());
    let mut secrets: Vec<&SecretPin> = revision.secrets.iter().collect();
    secrets.sort_by(|a, b| a.var.cmp(&b.var));
    vars.extend(secrets.into_iter().map(|s| EnvVar {
        name: s.var.clone(),
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: secret_name.clone().unwrap_or_default(),
                key: s.var.clone(),
                optional: Some(false),
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    }));
    vars
}

fn deployment(target: &Target, revision: &ServiceRevision, secret: Option<&Secret>) -> Deployment {
    let labels = labels(target, revision);
    let mut annotations = BTreeMap::from([(ANNOTATION_IMAGE.to_owned(), revision.image.clone())]);
    if !revision.secrets.is_empty() {
        annotations.insert(
            ANNOTATION_PARAMETERS.to_owned(),
            parameters_annotation(&revision.secrets),
        );
    }
    let (readiness, liveness) = probes(revision);
    let container = Container {
        name: revision.container.clone(),
        image: Some(revision.image.clone()),
        command: revision.command.clone(),
        ports: Some(vec![ContainerPort {
            name: Some("http".to_owned()),
            container_port: i32::from(revision.port),
            protocol: Some("TCP".to_owned()),
            ..ContainerPort::default()
        }]),
        env: Some(env(revision, secret)),
        resources: resources(revision),
        readiness_probe: Some(readiness),
        liveness_probe: Some(liveness),
        ..Container::default()
    };
    Deployment {
        metadata: ObjectMeta {
            name: Some(revision.service.clone()),
            namespace: Some(target.namespace.clone()),
            labels: Some(labels.clone()),
            annotations: Some(annotations.clone()),
            ..ObjectMeta::default()
        },
        spec: Some(DeploymentSpec {
            replicas: Some(i32::try_from(revision.replicas).unwrap_or(i32::MAX)),
            selector: LabelSelector {
                match_labels: Some(selector(&target.environment, &revision.service)),
                ..LabelSelector::default()
            },
            strategy: Some(strategy(revision)),
            // Old ReplicaSets are what a rollback returns to.
            revision_history_limit: Some(10),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels),
                    annotations: Some(annotations),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    containers: vec![container],
                    ..PodSpec::default()
                }),
            },
            ..DeploymentSpec::default()
        }),
        ..Deployment::default()
    }
}

fn service(target: &Target, revision: &ServiceRevision) -> Service {
    let mut labels = labels(target, revision);
    labels.remove(LABEL_REVISION);
    Service {
        metadata: ObjectMeta {
            name: Some(revision.service.clone()),
            namespace: Some(target.namespace.clone()),
            labels: Some(labels),
            ..ObjectMeta::default()
        },
        spec: Some(ServiceSpec {
            type_: Some(
                match target.service_type {
                    ServiceType::ClusterIp => "ClusterIP",
                    ServiceType::NodePort => "NodePort",
                }
                .to_owned(),
            ),
            selector: Some(selector(&target.environment, &revision.service)),
            ports: Some(vec![ServicePort {
                name: Some("http".to_owned()),
                port: i32::from(revision.port),
                target_port: Some(IntOrString::String("http".to_owned())),
                protocol: Some("TCP".to_owned()),
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn revision(kind: HealthKind) -> ServiceRevision {
        ServiceRevision {
            service: "api".to_owned(),
            revision: 7,
            container: "api".to_owned(),
            image: format!("r/api@sha256:{}", "e".repeat(64)),
            command: Some(vec!["/app/api".to_owned()]),
            port: 9000,
            replicas: 3,
            environment: BTreeMap::from([("PORT".to_owned(), "1".to_owned())]),
            secrets: Vec::new(),
            health: HealthCheck {
                kind,
                interval: Duration::from_millis(500),
                timeout: Duration::from_secs(3),
                healthy_threshold: 3,
                unhealthy_threshold: 4,
                grace_period: Duration::ZERO,
            },
            min_healthy_percent: 100,
            max_percent: 100,
            memory: Some(256 * 1024 * 1024),
            cpus: Some(0.25),
        }
    }

    fn target() -> Target {
        Target {
            environment: "prod".to_owned(),
            namespace: "gantry-prod".to_owned(),
            service_type: ServiceType::NodePort,
        }
    }

    fn container(m: &ServiceManifests) -> Container {
        m.deployment
            .spec
            .clone()
            .unwrap()
            .template
            .spec
            .unwrap()
            .containers[0]
            .clone()
    }

    #[test]
    fn health_checks_become_probes_of_their_kind() {
        let grpc = service_manifests(
            &target(),
            &revision(HealthKind::Grpc {
                service: String::new(),
            }),
        )
        .unwrap();
        let probe = container(&grpc).readiness_probe.unwrap();
        let action = probe.grpc.unwrap();
        assert_eq!((action.port, action.service), (9000, None));
        // Sub-second intervals round up to Kubernetes' one second.
        assert_eq!(probe.period_seconds, Some(1));
        assert_eq!(probe.success_threshold, Some(3));
        assert_eq!(probe.failure_threshold, Some(4));
        let liveness = container(&grpc).liveness_probe.unwrap();
        assert_eq!(liveness.initial_delay_seconds, None);
        let command = service_manifests(
            &target(),
            &revision(HealthKind::Command {
                argv: vec!["/bin/check".to_owned()],
            }),
        )
        .unwrap();
        let exec = container(&command).liveness_probe.unwrap().exec.unwrap();
        assert_eq!(exec.command, Some(vec!["/bin/check".to_owned()]));
    }

    #[test]
    fn resources_port_strategy_and_service_type() {
        let m = service_manifests(
            &target(),
            &revision(HealthKind::Http {
                path: "/h".to_owned(),
            }),
        )
        .unwrap();
        let c = container(&m);
        let limits = c.resources.unwrap().limits.unwrap();
        assert_eq!(limits["cpu"].0, "250m");
        assert_eq!(limits["memory"].0, "268435456");
        // PORT is the service's port, whatever `environment` says.
        let env = c.env.unwrap();
        assert_eq!(env.iter().filter(|e| e.name == "PORT").count(), 1);
        assert_eq!(env[0].value.as_deref(), Some("9000"));
        // 100/100 would stall: one pod may surge.
        let rolling = m
            .deployment
            .spec
            .unwrap()
            .strategy
            .unwrap()
            .rolling_update
            .unwrap();
        assert_eq!(rolling.max_surge, Some(IntOrString::Int(1)));
        assert_eq!(rolling.max_unavailable, Some(IntOrString::Int(0)));
        assert_eq!(m.service.spec.unwrap().type_.as_deref(), Some("NodePort"));
    }

    #[test]
    fn a_secret_is_named_by_its_versions_and_filled_only_on_request() {
        let mut r = revision(HealthKind::Http {
            path: "/h".to_owned(),
        });
        let pin = |version| SecretPin {
            var: "TOKEN".to_owned(),
            parameter: "/p/token".to_owned(),
            version: Some(version),
        };
        r.secrets = vec![pin(1)];
        let one = service_manifests(&target(), &r).unwrap();
        r.secrets = vec![pin(2)];
        let two = service_manifests(&target(), &r).unwrap();
        let name = |m: &ServiceManifests| m.secret.clone().unwrap().metadata.name.unwrap();
        assert_ne!(name(&one), name(&two));
        assert!(name(&one).starts_with("api-secrets-"));
        let mut secret = one.secret.clone().unwrap();
        assert!(fill_secret(&mut secret, &BTreeMap::new()).is_err());
        fill_secret(
            &mut secret,
            &BTreeMap::from([("TOKEN".to_owned(), "s3cret".to_owned())]),
        )
        .unwrap();
        assert_eq!(secret.data.unwrap()["TOKEN"].0, b"s3cret");
        assert!(
            !serde_json::to_string(&one.deployment)
                .unwrap()
                .contains("s3cret")
        );
    }

    #[test]
    fn images_must_be_pinned_and_names_must_be_labels() {
        let mut r = revision(HealthKind::Http {
            path: "/h".to_owned(),
        });
        r.image = "r/api:latest".to_owned();
        assert!(service_manifests(&target(), &r).is_err());
        let mut t = target();
        t.namespace = "Bad_NS".to_owned();
        assert_eq!(
            manifests(&t, &[]).unwrap_err().code(),
            "kubernetes.manifest"
        );
    }
}
