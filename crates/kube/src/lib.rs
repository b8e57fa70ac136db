//! The kubernetes runtime: where gantry's services run on a Kubernetes
//! cluster, one Deployment and one Service per service and environment.
//!
//! Two halves. `manifest` (pure, no IO) turns a resolved service revision
//! — image by digest, secrets by parameter version, health check, rollout
//! percents — into the objects gantry applies: the environment's
//! Namespace, a Secret named by its parameter versions, a Deployment
//! (apps/v1) and a Service (v1); `render` prints them as YAML, without
//! secret values, for `gantry env render ENV --kubernetes`. `cluster`
//! talks to an API server through kube-rs: server-side apply with the
//! field manager `gantry`, rollouts judged from the Deployment's status and
//! its pods' restarts (the circuit breaker's threshold), rollback to the
//! previous ReplicaSet's pod template (what `kubectl rollout undo` does),
//! and re-adoption of the Deployments labelled by gantry.
//!
//! The crate takes a small input type ([`ServiceRevision`]) rather than
//! gantry-deploy's `Revision`, so the deployer can depend on it and not the
//! other way round. No Kubernetes API server runs in gantry's tests: the
//! cluster client is tested against recorded request/response sequences
//! shaped like the API's documented objects (`tests/fixtures/`).

pub mod cluster;
mod error;
pub mod manifest;
pub mod project;
pub mod render;

pub use cluster::{KubeCluster, Readopted, RolloutWatch};
pub use error::KubeError;
pub use manifest::{
    HealthCheck, HealthKind, Manifests, SecretPin, ServiceManifests, ServiceRevision, ServiceType,
    Target, manifests,
};
