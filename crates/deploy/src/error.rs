//! Why a deployment or a request about environments failed.

#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    #[error("no environment named {0} has been applied")]
    UnknownEnvironment(String),
    #[error("environment {environment} has no service named {service}")]
    UnknownService {
        environment: String,
        service: String,
    },
    #[error("service {service} of {environment} runs no replica {replica}")]
    UnknownReplica {
        environment: String,
        service: String,
        replica: String,
    },
    #[error("image {image} does not exist in its registry")]
    ImageNotFound { image: String },
    #[error("image {image}: {reason}")]
    Image { image: String, reason: String },
    #[error("{0}")]
    Definitions(String),
    #[error(
        "secret {var} of service {service} in environment {environment} reads parameter {parameter}, which cannot be read: {reason}"
    )]
    Secret {
        environment: String,
        service: String,
        var: String,
        parameter: String,
        reason: String,
    },
    #[error("the deployment of {service} to {environment} would never progress: {reason}")]
    Stalled {
        environment: String,
        service: String,
        reason: String,
    },
    #[error(
        "circuit breaker: {failures} replica(s) of revision {revision} failed to start or pass health checks (last: {last}); {outcome}"
    )]
    CircuitBreaker {
        revision: u64,
        failures: u32,
        last: String,
        outcome: String,
        /// The revision that serves again, when the breaker rolled back.
        rolled_back_to: Option<u64>,
    },
    #[error(
        "analysis of revision {revision} failed: {reason}; rolled back: revision {rolled_back_to} takes all the traffic again"
    )]
    AnalysisFailed {
        revision: u64,
        /// What broke, with the numbers measured.
        reason: String,
        rolled_back_to: u64,
    },
    #[error(
        "the deployment of revision {revision} was aborted by {by}; rolled back: revision {rolled_back_to} takes all the traffic again"
    )]
    Aborted {
        revision: u64,
        by: String,
        rolled_back_to: u64,
    },
    #[error(
        "{service} in {environment} is not shifting traffic: no blue/green, canary, linear or steps deployment of it is in progress"
    )]
    NothingToPromote {
        environment: String,
        service: String,
    },
    #[error(
        "deployment {deployment} of {service} in {environment} is shifting traffic to a new revision; promote it or abort it (`gantry deploy promote|abort {environment} {service}`) before deploying again"
    )]
    ShiftInProgress {
        environment: String,
        service: String,
        deployment: i64,
    },
    #[error("no revision {revision} of {service} in {environment}")]
    UnknownRevision {
        environment: String,
        service: String,
        revision: u64,
    },
    #[error("{service} in {environment} has no earlier revision to roll back to")]
    NothingToRollBackTo {
        environment: String,
        service: String,
    },
    /// The cluster of a kubernetes environment refused or failed a
    /// deployment; `kube_code` is gantry-kube's stable code
    /// (`kubernetes.forbidden`, `kubernetes.conflict`, …).
    #[error("{service} in {environment} on Kubernetes ({kube_code}): {message}")]
    Kubernetes {
        environment: String,
        service: String,
        kube_code: &'static str,
        /// What failed and what serves now; never a secret value.
        message: String,
        /// The revision whose pod template the Deployment runs again,
        /// when the circuit breaker rolled back.
        rolled_back_to: Option<u64>,
    },
    #[error("the load balancer of {environment}: {reason}")]
    LoadBalancer { environment: String, reason: String },
    #[error("runtime: {0}")]
    Runtime(String),
    #[error("the {0} runtime is not available on this server")]
    RuntimeUnavailable(String),
    #[error("{0}")]
    Spec(String),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
}

impl DeployError {
    /// A stable identifier of the kind of error.
    pub fn code(&self) -> &'static str {
        match self {
            DeployError::UnknownEnvironment(_) => "deploy.unknown_environment",
            DeployError::UnknownService { .. } => "deploy.unknown_service",
            DeployError::UnknownReplica { .. } => "deploy.unknown_replica",
            DeployError::ImageNotFound { .. } => "deploy.image_not_found",
            DeployError::Image { .. } => "deploy.image",
            DeployError::Definitions(_) => "deploy.image_definitions",
            DeployError::Secret { .. } => "deploy.secret",
            DeployError::Stalled { .. } => "deploy.stalled",
            DeployError::CircuitBreaker { .. } => "deploy.circuit_breaker",
            DeployError::AnalysisFailed { .. } => "deploy.analysis_failed",
            DeployError::Aborted { .. } => "deploy.aborted",
            DeployError::NothingToPromote { .. } => "deploy.nothing_to_promote",
            DeployError::ShiftInProgress { .. } => "deploy.shift_in_progress",
            DeployError::UnknownRevision { .. } => "deploy.unknown_revision",
            DeployError::NothingToRollBackTo { .. } => "deploy.nothing_to_roll_back_to",
            DeployError::Kubernetes { .. } => "deploy.kubernetes",
            DeployError::LoadBalancer { .. } => "deploy.load_balancer",
            DeployError::Runtime(_) => "deploy.runtime",
            DeployError::RuntimeUnavailable(_) => "deploy.runtime_unavailable",
            DeployError::Spec(_) => "deploy.spec",
            DeployError::Database(_) => "deploy.database",
        }
    }

    /// The HTTP status an API answers this error with: 404 for an unknown
    /// environment, service or revision, 422 for an invalid project, 500 for
    /// a broken store, 409 for a deployment that could not be carried out.
    pub fn http_status(&self) -> u16 {
        match self {
            DeployError::UnknownEnvironment(_)
            | DeployError::UnknownService { .. }
            | DeployError::UnknownReplica { .. }
            | DeployError::UnknownRevision { .. } => 404,
            DeployError::Spec(_) => 422,
            DeployError::Database(_) => 500,
            DeployError::ImageNotFound { .. }
            | DeployError::Image { .. }
            | DeployError::Definitions(_)
            | DeployError::Secret { .. }
            | DeployError::Stalled { .. }
            | DeployError::CircuitBreaker { .. }
            | DeployError::AnalysisFailed { .. }
            | DeployError::Aborted { .. }
            | DeployError::NothingToPromote { .. }
            | DeployError::ShiftInProgress { .. }
            | DeployError::NothingToRollBackTo { .. }
            | DeployError::Kubernetes { .. }
            | DeployError::LoadBalancer { .. }
            | DeployError::Runtime(_)
            | DeployError::RuntimeUnavailable(_) => 409,
        }
    }
}
