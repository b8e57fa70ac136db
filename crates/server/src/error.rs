//! Errors of the control plane, each with a stable `code` for the API.

use std::path::Path;

use gantry_engine::EngineError;
use gantry_spec::SpecError;

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("execution {0} does not exist")]
    NotFound(String),
    #[error("no stage named {0}")]
    UnknownStage(String),
    #[error("no action named {0}")]
    UnknownAction(String),
    #[error("nothing waits for approval at {0}")]
    NothingWaiting(String),
    #[error("the pipeline declares no variable {0}")]
    UnknownVariable(String),
    #[error("the pipeline file is invalid ({} errors)", .0.len())]
    InvalidPipeline(Vec<SpecError>),
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Store(#[from] gantry_store::StoreError),
    #[error(transparent)]
    Artifacts(#[from] gantry_store::ArtifactError),
    /// The database cannot be reached: changes wait until it is back.
    #[error(
        "the database cannot be reached: changes are refused until it is back \
         (load balancers keep routing; try again)"
    )]
    StoreUnavailable,
    /// A standby was asked while no server leads (the lease ran out and
    /// nobody took it yet).
    #[error("no server leads right now (a standby takes over within a lease); try again")]
    NoLeader,
    /// A standby could not reach the leader it forwards to.
    #[error("the leading server at {0} cannot be reached; try again")]
    LeaderUnreachable(String),
    #[error("the event log is corrupt at event {seq}: {reason}")]
    CorruptLog { seq: i64, reason: String },
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    BadRequest(String),
    #[error(transparent)]
    Param(#[from] gantry_params::ParamError),
    #[error(transparent)]
    Deploy(#[from] gantry_deploy::DeployError),
    #[error(transparent)]
    Auth(#[from] gantry_auth::AuthError),
    #[error(transparent)]
    Agent(#[from] crate::agents::AgentError),
    #[error(transparent)]
    Policy(#[from] gantry_auth::PolicyRefusal),
    #[error(transparent)]
    Image(#[from] gantry_registry::ImageError),
    #[error("execution {0} was superseded by a newer one; its approval can no longer be decided")]
    Superseded(String),
    #[error(
        "what {0} waits for has changed since it was shown (expected {1}); look again and decide"
    )]
    ApprovalChanged(String, String),
    #[error("the API takes the file's text (`text`), never a path on the server")]
    TextRequired,
    #[error("{file} includes {include}: send its text in `includes`")]
    MissingInclude { file: String, include: String },
    /// A second server started on a data dir that one already owns.
    #[error(
        "another gantry server{holder} owns the data dir {data_dir}: every command there \
         talks to it; stop it with `gantry shutdown`, or give this one another data dir \
         (`gantry --data-dir DIR server`)"
    )]
    DataDirOwned { data_dir: String, holder: String },
    /// The address to listen on is taken.
    #[error(
        "cannot listen on {addr}: port {port} is in use (by another gantry server or another \
         program); choose another with `gantry server {flag} {ip}:PORT` ({ip}:0 takes any free \
         port)"
    )]
    PortInUse {
        addr: String,
        ip: String,
        port: u16,
        flag: &'static str,
    },
    /// Options the server cannot start with (an address, TLS files, URLs).
    #[error("{0}")]
    Options(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl ControlError {
    pub fn io(path: &Path, source: std::io::Error) -> ControlError {
        ControlError::Io {
            path: path.display().to_string(),
            source,
        }
    }

    /// The HTTP status an API answers this error with; errors of other
    /// crates say their own.
    pub fn http_status(&self) -> u16 {
        match self {
            ControlError::NotFound(_)
            | ControlError::UnknownStage(_)
            | ControlError::UnknownAction(_) => 404,
            ControlError::InvalidPipeline(_) | ControlError::UnknownVariable(_) => 422,
            ControlError::BadRequest(_)
            | ControlError::Options(_)
            | ControlError::TextRequired
            | ControlError::MissingInclude { .. } => 400,
            ControlError::NothingWaiting(_)
            | ControlError::Engine(_)
            | ControlError::Superseded(_)
            | ControlError::ApprovalChanged(..)
            | ControlError::DataDirOwned { .. }
            | ControlError::PortInUse { .. } => 409,
            ControlError::Param(e) => e.http_status(),
            ControlError::Deploy(e) => e.http_status(),
            ControlError::Auth(e) => e.http_status(),
            ControlError::Agent(e) => e.http_status(),
            ControlError::Policy(e) => e.http_status(),
            ControlError::Image(e) => e.http_status(),
            ControlError::StoreUnavailable | ControlError::NoLeader => 503,
            ControlError::LeaderUnreachable(_) => 502,
            ControlError::Store(_)
            | ControlError::Artifacts(_)
            | ControlError::CorruptLog { .. }
            | ControlError::Io { .. }
            | ControlError::Internal(_) => 500,
        }
    }

    /// The code `/api/v1` answers in `code` for an engine refusal that had
    /// a code before the `area.snake_case` scheme (`not_stoppable`); the
    /// API then gives [`Self::code`] as `canonical_code`. `None` for every
    /// other error: its `code` is canonical.
    pub fn legacy_code(&self) -> Option<&'static str> {
        match self {
            ControlError::Engine(e) => gantry_api::legacy_code(e.code()),
            _ => None,
        }
    }

    /// A stable `area.snake_case` identifier of the kind of error, for
    /// scripts and the API.
    pub fn code(&self) -> &'static str {
        match self {
            ControlError::NotFound(_) => "execution.not_found",
            ControlError::UnknownStage(_) => "stage.not_found",
            ControlError::UnknownAction(_) => "action.not_found",
            ControlError::NothingWaiting(_) => "approval.not_waiting",
            ControlError::InvalidPipeline(_) => "pipeline.invalid",
            ControlError::UnknownVariable(_) => "pipeline.unknown_variable",
            ControlError::Engine(e) => e.code(),
            ControlError::StoreUnavailable => "store.unavailable",
            ControlError::NoLeader => "server.no_leader",
            ControlError::LeaderUnreachable(_) => "server.leader_unreachable",
            ControlError::Store(_) | ControlError::Artifacts(_) => "store.error",
            ControlError::CorruptLog { .. } => "store.corrupt_log",
            ControlError::Io { .. } => "io.error",
            ControlError::BadRequest(_) => "request.invalid",
            ControlError::Param(e) => e.code(),
            ControlError::Deploy(e) => e.code(),
            ControlError::Auth(e) => e.code(),
            ControlError::Agent(e) => e.code(),
            ControlError::Policy(e) => e.code(),
            ControlError::Image(e) => e.code(),
            ControlError::Superseded(_) => "approval.superseded",
            ControlError::ApprovalChanged(..) => "approval.changed",
            ControlError::TextRequired => "request.text_required",
            ControlError::MissingInclude { .. } => "request.missing_include",
            ControlError::DataDirOwned { .. } => "server.data_dir_owned",
            ControlError::PortInUse { .. } => "server.port_in_use",
            ControlError::Options(_) => "server.invalid_options",
            ControlError::Internal(_) => "server.internal",
        }
    }
}
