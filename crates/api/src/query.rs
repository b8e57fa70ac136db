//! The query strings of the API's GET routes, typed once: the server reads
//! them (`axum::extract::Query`), and the OpenAPI description
//! ([`crate::openapi`]) lists their fields as the routes' parameters.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A parameter's name as SSM (and gantry-params) take it: up to 15 levels
/// of letters, digits, `_`, `.` and `-`, the leading `/` optional, not
/// starting with `aws` or `ssm`.
const PARAMETER_NAME: &str =
    r"^/?(?![aA][wW][sS]|[sS][sS][mM])[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+){0,14}$";

/// A path of the parameter hierarchy: `/`, or a name's levels with a
/// leading `/` (and at most one trailing `/`).
const PARAMETER_PATH: &str = r"^/([A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+){0,14}/?)?$";

/// Unix milliseconds, or a positive duration (`90s`, `30m`, `2h`, `7d`).
const SINCE: &str = r"^(-?[0-9]{1,15}|0*[1-9][0-9]{0,8}[smhd])$";

/// `GET /api/v1/changes`: the long poll.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ChangesQuery {
    /// Answer once the version is past this one (0: at once).
    #[serde(default)]
    pub after: u64,
    /// How long to wait for a change, in milliseconds (default 25000,
    /// at most 60000).
    #[serde(default)]
    pub timeout_ms: Option<u64>,
}

/// `GET /api/v1/executions`: the latest executions, newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ExecutionsQuery {
    /// Only this pipeline's executions.
    #[serde(default)]
    pub pipeline: Option<String>,
    /// How many (default 50).
    #[serde(default)]
    pub limit: Option<usize>,
    /// Skip this many of the newest first (paging).
    #[serde(default)]
    pub offset: Option<usize>,
    /// Only executions with this status (`InProgress`, `Succeeded`, …).
    #[serde(default)]
    #[schemars(length(max = 64))]
    pub status: Option<String>,
    /// Only executions started this way (`manual`, `webhook`, `poll`,
    /// `schedule`, `pipeline`).
    #[serde(default)]
    #[schemars(length(max = 64))]
    pub trigger: Option<String>,
    /// Only executions whose source commit starts with this.
    #[serde(default)]
    #[schemars(length(max = 64))]
    pub commit: Option<String>,
}

/// `GET /api/v1/executions/{id}/logs`: a page of log lines.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct LogsQuery {
    /// Only this stage's lines (with `action`).
    #[serde(default)]
    pub stage: Option<String>,
    /// Only this action's lines (with `stage`).
    #[serde(default)]
    pub action: Option<String>,
    /// Lines after this sequence number (a page's `next`).
    #[serde(default)]
    pub after: i64,
    /// How many lines (default 5000, clamped to 1..=50000).
    #[serde(default)]
    pub limit: Option<i64>,
}

/// `GET /api/v1/params/get` and `GET /api/v1/params/history`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ParameterQuery {
    /// The parameter's name; for `get`, a selector (`NAME:VERSION` or
    /// `NAME:LABEL`) too.
    #[schemars(regex(pattern = PARAMETER_NAME), length(max = 1011))]
    pub name: String,
    /// Reveal SecureString values (needs a `secrets` grant covering the
    /// parameter; audited).
    #[serde(default)]
    pub decrypt: bool,
}

/// `GET /api/v1/params/list`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ParametersQuery {
    /// The path to list (default `/`).
    #[serde(default)]
    #[schemars(regex(pattern = PARAMETER_PATH), length(max = 1011))]
    pub path: Option<String>,
    /// Below the path too, not only directly in it.
    #[serde(default)]
    pub recursive: bool,
    /// Reveal SecureString values (needs a `secrets` grant covering each;
    /// audited).
    #[serde(default)]
    pub decrypt: bool,
}

/// `GET /api/v1/tokens`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct TokensQuery {
    /// Whose tokens (default: everyone's for an admin, one's own
    /// otherwise); another user's need admin.
    #[serde(default)]
    pub user: Option<String>,
}

/// `GET /api/v1/audit`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct AuditLogQuery {
    /// Unix milliseconds, or a duration back from now (`1h`, `7d`).
    #[serde(default)]
    #[schemars(regex(pattern = SINCE))]
    pub since: Option<String>,
    /// Only this principal's records.
    #[serde(default)]
    pub principal: Option<String>,
    /// How many records.
    #[serde(default)]
    pub limit: Option<u32>,
    /// Only records older than this `seq` (the next page back).
    #[serde(default)]
    pub before: Option<i64>,
}
