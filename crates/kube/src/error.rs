//! The kubernetes runtime's errors, each naming its object and carrying a
//! stable code (`kubernetes.*`). None ever holds a secret value: requests
//! that carry Secret data are never quoted back.

/// What went wrong talking to a cluster or making its objects.
#[derive(Debug, thiserror::Error)]
pub enum KubeError {
    /// The manifests could not be made (a name Kubernetes refuses, an
    /// image not pinned by digest).
    #[error("{object}: {reason}")]
    Manifest { object: String, reason: String },
    /// No kubeconfig, or one gantry cannot use.
    #[error("kubeconfig: {reason}")]
    Config { reason: String },
    /// The API server did not answer (connection refused, DNS, TLS).
    #[error("the Kubernetes API server at {server} is unreachable: {reason}")]
    Unreachable { server: String, reason: String },
    /// 401/403: the credentials may not do this.
    #[error(
        "forbidden: the kubeconfig's user may not {verb} {resource} in namespace {namespace}: {message}"
    )]
    Forbidden {
        verb: String,
        resource: String,
        namespace: String,
        message: String,
    },
    /// 409 twice: the object changed behind gantry's back and kept
    /// changing after a fresh read.
    #[error(
        "conflict: {resource} in namespace {namespace} was changed by someone else while gantry applied it (tried twice): {message}"
    )]
    Conflict {
        resource: String,
        namespace: String,
        message: String,
    },
    /// The rollout failed: Kubernetes gave up on it, pods kept
    /// restarting, or the deadline passed.
    #[error("the rollout of deployment {deployment} in namespace {namespace} failed: {reason}")]
    RolloutFailed {
        deployment: String,
        namespace: String,
        reason: String,
    },
    /// Nothing to roll back to.
    #[error(
        "deployment {deployment} in namespace {namespace} has no earlier revision to roll back to"
    )]
    NothingToRollBackTo {
        deployment: String,
        namespace: String,
    },
    /// Any other answer of the API server.
    #[error("the Kubernetes API refused to {verb} {resource} in namespace {namespace}: {message}")]
    Api {
        verb: String,
        resource: String,
        namespace: String,
        code: u16,
        message: String,
    },
}

impl KubeError {
    /// The stable code of this error, as API errors carry it.
    pub fn code(&self) -> &'static str {
        match self {
            KubeError::Manifest { .. } => "kubernetes.manifest",
            KubeError::Config { .. } => "kubernetes.config",
            KubeError::Unreachable { .. } => "kubernetes.unreachable",
            KubeError::Forbidden { .. } => "kubernetes.forbidden",
            KubeError::Conflict { .. } => "kubernetes.conflict",
            KubeError::RolloutFailed { .. } => "kubernetes.rollout_failed",
            KubeError::NothingToRollBackTo { .. } => "kubernetes.nothing_to_roll_back_to",
            KubeError::Api { .. } => "kubernetes.api",
        }
    }
}
