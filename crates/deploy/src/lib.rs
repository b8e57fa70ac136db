//! Environments, services and deployments: ECS and ALB, as gantry does them.
//!
//! - An **environment** (`staging`, `production`) has a runtime (`process`,
//!   `docker`, `swarm`, or `kubernetes`, where the cluster rolls pods out:
//!   `kubernetes.rs`) and one load balancer (a [`gantry_proxy::LoadBalancer`])
//!   whose path rules send requests to services' target groups.
//! - A **service** is a task definition plus an ECS service: image, port,
//!   environment, secrets read from the parameter store, health check,
//!   replica count and deployment settings.
//! - A **revision** is one immutable version of a service in an
//!   environment: the definition as applied, the image pinned by digest, and
//!   every secret pinned to the parameter version read when it was made. A
//!   replica always runs exactly one revision, so a restart or a rollback
//!   reproduces it, and an audit can say what ran.
//! - A **deployment** rolls a service from its current revision to a new
//!   one: new replicas start within `max_percent`, join the target group
//!   only once healthy, and old ones are drained and stopped within
//!   `min_healthy_percent`. A **circuit breaker** counts replicas that exit
//!   or fail their health checks; at its threshold the deployment fails at
//!   once and, with rollback on, the previous revision keeps (or gets back)
//!   every replica.
//! - A **progressive** deployment (blue_green, canary, linear, steps) starts
//!   the new revision's full set beside the running one at weight 0 and
//!   moves the traffic by weight, step by step (`shift.rs`), judging the
//!   new revision on the load balancer's own numbers (`analysis.rs`) and
//!   rolling back at once when it misbehaves; operators promote, abort,
//!   pause and resume it ([`Deployer::control_shift`]).
//!
//! Invariants:
//! - Traffic only reaches replicas that passed their health checks while any
//!   healthy one exists (the load balancer's rule), and a replica leaves the
//!   target group (with a drain) before it is stopped. So a rolling deploy,
//!   and a failed one that rolls back, drop no request.
//! - One deployment at a time per service (a lock), any number in parallel
//!   across services. A deploy that arrives while a progressive deployment
//!   shifts the service's traffic is refused (naming it) instead of waiting.
//! - Traffic split between two revisions always has a watcher: the shift
//!   that set it, or, after a restart, the one re-adoption resumes; when
//!   neither can go on, the stable revision gets all of it back.
//! - Revisions hold no secret value, only parameter names and versions.

mod access_log;
mod acme;
mod analysis;
mod apply;
mod deployer;
mod deployment;
mod error;
mod kubernetes;
mod logs;
mod readopt;
mod revision;
mod rollout;
mod shift;
mod status;
mod store;
#[cfg(test)]
mod tests;
mod traffic;

pub use deployer::{DeployLog, DeployOutcome, Deployer, Runtimes, uses_docker};
pub use deployment::DeploymentFinished;
pub use error::DeployError;
pub use gantry_api::{EnvironmentStatus, ReplicaStatus, ServiceStatus};
pub use logs::ServiceOutput;
pub use revision::{Cause, Revision, SecretRef, ShiftPlan, ShiftStep, StoredAnalysis};
pub use shift::{ShiftCommand, ShiftProgress};
pub use store::DeploymentRecord;

/// Creates the deployment tables in a store's database if they are missing
/// (`gantry migrate-store` makes a new database's tables before it copies).
pub async fn create_tables(store: &gantry_store::Store) -> Result<(), DeployError> {
    store::DeployStore::open(store.clone()).await.map(drop)
}
