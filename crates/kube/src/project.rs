//! A project's environment as manifests, without a server: what `gantry
//! env render ENV --kubernetes` prints, for any environment whatever its
//! runtime (rendered as if it were `kubernetes`).
//!
//! Without a server nothing is resolved: an image is shown as written, or
//! as a placeholder saying the deploy pins it by digest; a secret's
//! parameter version is `latest` unless the file pins one (`NAME:3`); and
//! the revision label is `0` (a deploy numbers revisions).

use std::collections::BTreeMap;

use gantry_spec::Project;
use gantry_spec::environment::{Environment, EnvironmentName, KubeServiceType};
use gantry_spec::service::{HealthCheckKind, Service};

use crate::error::KubeError;
use crate::manifest::{
    HealthCheck, HealthKind, Manifests, SecretPin, ServiceRevision, ServiceType, Target, manifests,
};

/// Where an environment's objects go, from its `kubernetes` block.
pub fn target_of(env: &Environment) -> Target {
    Target {
        environment: env.name.to_string(),
        namespace: env.kubernetes.namespace.clone(),
        service_type: match env.kubernetes.service_type {
            KubeServiceType::ClusterIP => ServiceType::ClusterIp,
            KubeServiceType::NodePort => ServiceType::NodePort,
        },
    }
}

/// `service` (as it runs in its environment) as a manifest input, running
/// `image` as revision `revision`; secrets pinned to the versions in
/// `versions` (by parameter name), else to a version the name pins
/// (`NAME:3`), else unpinned.
pub fn revision_of(
    service: &Service,
    image: String,
    revision: u64,
    versions: &BTreeMap<String, u64>,
) -> ServiceRevision {
    let secrets = service
        .secrets
        .iter()
        .map(|(var, name)| {
            let (parameter, pinned) = match name.rsplit_once(':') {
                Some((parameter, version)) if version.parse::<u64>().is_ok() => {
                    (parameter.to_owned(), version.parse().ok())
                }
                _ => (name.clone(), None),
            };
            SecretPin {
                var: var.clone(),
                version: versions.get(&parameter).copied().or(pinned),
                parameter,
            }
        })
        .collect();
    let check = &service.health_check;
    ServiceRevision {
        service: service.name.to_string(),
        revision,
        container: service.container.clone(),
        image,
        command: service.command.clone(),
        port: service.port,
        replicas: service.replicas,
        environment: service.environment.clone(),
        secrets,
        health: HealthCheck {
            kind: match &check.kind {
                HealthCheckKind::Http { path } => HealthKind::Http { path: path.clone() },
                HealthCheckKind::Command { command } => HealthKind::Command {
                    argv: command.clone(),
                },
                HealthCheckKind::Grpc { service } => HealthKind::Grpc {
                    service: service.clone(),
                },
            },
            interval: check.interval,
            timeout: check.timeout,
            healthy_threshold: check.healthy_threshold,
            unhealthy_threshold: check.unhealthy_threshold,
            grace_period: check.grace_period,
        },
        min_healthy_percent: service.deployment.min_healthy_percent,
        max_percent: service.deployment.max_percent,
        memory: service.resources.memory,
        cpus: service.resources.cpus,
    }
}

/// The image shown for a service in a render: `images[service]` (from
/// `--image`), else the file's `image`, else a placeholder; anything not
/// pinned by digest is shown as what a deploy would pin.
fn image_of(service: &Service, images: &BTreeMap<String, String>) -> String {
    let written = images
        .get(service.name.as_str())
        .or(service.image.as_ref())
        .cloned();
    match written {
        Some(image) if image.contains("@sha256:") => image,
        Some(image) => format!("<{image}, pinned by digest at deploy>"),
        None => format!("<the image a deploy action gives {}>", service.name),
    }
}

/// The manifests of every service of `environment`, as `render` shows
/// them.
pub fn environment_manifests(
    project: &Project,
    environment: &str,
    images: &BTreeMap<String, String>,
) -> Result<Manifests, KubeError> {
    let unknown = || KubeError::Manifest {
        object: format!("environment {environment}"),
        reason: format!(
            "not in the project (it has: {})",
            project
                .environments
                .keys()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let name = EnvironmentName::new(environment).map_err(|_| unknown())?;
    let env = project.environments.get(&name).ok_or_else(unknown)?;
    let revisions: Vec<ServiceRevision> = project
        .services
        .keys()
        .filter_map(|service| project.service_in(&name, service))
        .map(|service| {
            let image = image_of(&service, images);
            revision_of(&service, image, 0, &BTreeMap::new())
        })
        .collect();
    manifests(&target_of(env), &revisions)
}
