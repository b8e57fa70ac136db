//! Identities: who a token belongs to, users, tokens and the audit log.
//!
//! Answers declare their fields in alphabetical order, the order the JSON
//! had when the server built it as a `serde_json::Value` (a sorted map), so
//! they keep their bytes.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// `GET /api/v1/whoami`: the caller's identity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct IdentityView {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// `ROLE` or `ROLE:KEY=VALUE[,KEY=VALUE]` (`operator:env=staging`).
    pub grants: Vec<String>,
    pub name: String,
}

/// A user (`GET /api/v1/users`, and the answer to adding one or setting
/// its grants).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct UserView {
    /// Unix milliseconds.
    pub created_at_ms: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    pub grants: Vec<String>,
    pub name: String,
}

/// `POST /api/v1/users`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct NewUserRequest {
    pub name: String,
    /// Matched against commit authors by approval policies.
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub grants: Vec<String>,
}

/// `PUT /api/v1/users/{name}/grants`: replaces the user's grants.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct GrantsRequest {
    pub grants: Vec<String>,
}

/// `DELETE /api/v1/users/{name}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct UserRemoved {
    pub name: String,
    /// Always true.
    pub removed: bool,
    /// How many of the user's tokens were revoked with it.
    pub revoked_tokens: u64,
}

/// `POST /api/v1/console/links`: a one-time sign-in link to the web
/// console for the caller's own token (`gantry demo` prints one).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ConsoleLink {
    /// The link's path on this server: `/signin/link/CODE`.
    pub path: String,
    /// How long the link works (once), in seconds.
    pub expires_in_s: u64,
}

/// A token as listed: everything but its value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct TokenView {
    /// Unix milliseconds.
    pub created_at_ms: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Unix milliseconds; null for a token that does not expire.
    pub expires_at_ms: Option<i64>,
    pub id: String,
    /// Unix milliseconds; null while the token is valid.
    pub revoked_at_ms: Option<i64>,
    pub user: String,
}

/// `POST /api/v1/tokens`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
pub struct NewTokenRequest {
    /// Whose token; default the caller.
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    /// How long it lives: `90s`, `30m`, `12h`, `90d`; default forever.
    #[serde(default)]
    pub expires_in: Option<String>,
}

/// A token just created: the only answer that holds its value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct CreatedToken {
    pub info: TokenView,
    /// `gantry_` and 64 hex digits.
    pub token: String,
}

/// One entry of the audit log (`GET /api/v1/audit`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct AuditRecordView {
    /// What was asked: `POST /api/v1/executions`, `registry.push_manifest`.
    pub action: String,
    /// Unix milliseconds.
    pub at_ms: i64,
    /// `ok`, or the error code that refused it (`auth.forbidden`).
    pub outcome: String,
    /// The authenticated identity, or null when authentication failed.
    pub principal: Option<String>,
    /// The peer address.
    pub remote: Option<String>,
    pub seq: i64,
    /// What it was about: a pipeline, parameter name, `repo:tag`.
    pub target: Option<String>,
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::tests::same_bytes;

    #[test]
    fn identity_answers_keep_their_bytes() {
        same_bytes(
            &IdentityView {
                email: None,
                grants: vec!["operator:env=staging".into()],
                name: "ann".into(),
            },
            json!({"name": "ann", "grants": ["operator:env=staging"]}),
        );
        same_bytes(
            &UserView {
                created_at_ms: 5,
                email: Some("a@example.com".into()),
                grants: vec!["viewer".into()],
                name: "ann".into(),
            },
            json!({"name": "ann", "email": "a@example.com", "grants": ["viewer"], "created_at_ms": 5}),
        );
        same_bytes(
            &UserRemoved {
                name: "ann".into(),
                removed: true,
                revoked_tokens: 2,
            },
            json!({"name": "ann", "removed": true, "revoked_tokens": 2}),
        );
        let info = TokenView {
            created_at_ms: 1,
            description: None,
            expires_at_ms: None,
            id: "tok_1".into(),
            revoked_at_ms: Some(9),
            user: "ann".into(),
        };
        same_bytes(
            &info,
            json!({"id": "tok_1", "user": "ann", "created_at_ms": 1, "expires_at_ms": null, "revoked_at_ms": 9}),
        );
        same_bytes(
            &CreatedToken {
                info: info.clone(),
                token: "gantry_x".into(),
            },
            json!({"token": "gantry_x", "info": {"id": "tok_1", "user": "ann", "created_at_ms": 1,
                   "expires_at_ms": null, "revoked_at_ms": 9}}),
        );
        same_bytes(
            &AuditRecordView {
                action: "POST /api/v1/executions".into(),
                at_ms: 3,
                outcome: "auth.forbidden".into(),
                principal: Some("ann".into()),
                remote: None,
                seq: 1,
                target: None,
            },
            json!({"seq": 1, "at_ms": 3, "principal": "ann", "remote": null,
                   "action": "POST /api/v1/executions", "target": null, "outcome": "auth.forbidden"}),
        );
    }
}
