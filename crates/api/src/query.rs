//! The query strings of the API's GET routes, typed once: the server reads
//! them (`axum::extract::Query`), and the OpenAPI description
//! ([`crate::openapi`]) lists their fields as the routes' parameters.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

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
    pub since: Option<String>,
    /// Only this principal's records.
    #[serde(default)]
    pub principal: Option<String>,
    /// How many records.
    #[serde(default)]
    pub limit: Option<u32>,
}
