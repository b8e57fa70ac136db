//! Approvals: what one waits for, deciding it, and the decisions so far.
//!
//! The types that replaced `json!` answers declare their fields in
//! alphabetical order: that is the order `serde_json::Value` (a sorted map)
//! wrote them in, so the answers keep their bytes.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::ParameterUse;

/// `POST /api/v1/executions/{id}/approvals`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct DecideRequest {
    pub stage: String,
    pub action: String,
    /// `Approved` or `Rejected`.
    pub decision: String,
    #[serde(default)]
    pub comment: Option<String>,
    /// Ignored: a decision is recorded under the caller's identity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
    /// The fingerprint of what the decider was shown; a decision naming
    /// another is refused (`approval.changed`).
    #[serde(default)]
    pub fingerprint: Option<String>,
}

/// Where an approval stands after a decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct DecisionOutcome {
    /// `Approved`, `Rejected`, or `Pending` while more approvals are needed.
    pub status: String,
    pub approvals: u32,
    pub required: u32,
}

/// The answer to a decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct DecisionAnswer {
    pub ok: bool,
    /// Who decided: the caller's identity.
    pub by: String,
    pub outcome: DecisionOutcome,
}

/// One decision, as `GET /api/v1/executions/{id}/approvals` lists them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ApprovalRecordView {
    pub action: String,
    /// RFC 3339.
    pub at: String,
    pub attempt: i64,
    /// Who decided; for an approval that took several votes, their names
    /// joined by `, `.
    pub by: String,
    pub comment: Option<String>,
    /// `Approved` or `Rejected`.
    pub decision: String,
    pub stage: String,
}

/// `GET /api/v1/executions/{id}/approvals/{stage}/{action}`: what an
/// approval waits for, its policy and the votes so far.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ApprovalView {
    pub action: String,
    pub attempt: u32,
    pub binding: ApprovalBinding,
    /// A short digest of the binding; a decision that names it is refused
    /// once the approval waits for something else (`approval.changed`).
    pub fingerprint: String,
    pub policy: ApprovalPolicyView,
    pub stage: String,
    /// Who started the execution.
    pub started_by: Option<String>,
    /// The action's status (`Waiting` while it takes decisions), or null
    /// when not started.
    pub status: Option<String>,
    pub votes: Vec<ApprovalVoteView>,
}

/// What an approval waits for: everything the actions before it pinned.
/// Keys are `Stage/action`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ApprovalBinding {
    /// Output artifact name → artifact id, per action.
    pub artifacts: BTreeMap<String, BTreeMap<String, String>>,
    /// The commit each source action pinned.
    pub commits: BTreeMap<String, String>,
    /// The image digest each image action built.
    pub images: BTreeMap<String, String>,
    /// The parameter versions each action resolved.
    pub parameters: BTreeMap<String, Vec<ParameterUse>>,
}

/// Who may decide an approval, and how many must.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ApprovalPolicyView {
    /// Whether whoever started the execution, or authored a source commit,
    /// may approve it.
    pub allow_self_approval: bool,
    pub require_comment: bool,
    /// Distinct approvals needed; one rejection rejects.
    pub required: u32,
    /// Only these roles may decide (admin always may); empty: any approver.
    pub roles: Vec<String>,
    /// These users may decide too (with an approver grant).
    pub users: Vec<String>,
    /// It approves by itself this long after it starts waiting (`30m`),
    /// unless decided before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_approve_after: Option<String>,
}

/// One person's vote, with the binding they saw.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ApprovalVoteView {
    pub action: String,
    /// Unix milliseconds.
    pub at: i64,
    pub attempt: i64,
    /// The binding the voter was shown, as JSON text.
    pub binding: String,
    pub by: String,
    pub comment: Option<String>,
    /// `Approved` or `Rejected`.
    pub decision: String,
    pub execution_id: String,
    pub stage: String,
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::tests::same_bytes;

    #[test]
    fn approval_answers_keep_their_bytes() {
        same_bytes(
            &ApprovalRecordView {
                action: "release".into(),
                at: "2026-01-01T00:00:00.000Z".into(),
                attempt: 1,
                by: "ann, bob".into(),
                comment: None,
                decision: "Approved".into(),
                stage: "Approve".into(),
            },
            json!({"stage": "Approve", "action": "release", "attempt": 1, "decision": "Approved",
                   "by": "ann, bob", "at": "2026-01-01T00:00:00.000Z", "comment": null}),
        );
        let view = ApprovalView {
            action: "release".into(),
            attempt: 1,
            binding: ApprovalBinding {
                artifacts: BTreeMap::from([(
                    "Source/checkout".into(),
                    BTreeMap::from([("Src".into(), "sha256:a".into())]),
                )]),
                commits: BTreeMap::from([("Source/checkout".into(), "c0ffee".into())]),
                images: BTreeMap::new(),
                parameters: BTreeMap::from([(
                    "Build/web".into(),
                    vec![ParameterUse {
                        name: "/shop/db".into(),
                        secure: true,
                        source: "env".into(),
                        var: "DB".into(),
                        version: 2,
                    }],
                )]),
            },
            fingerprint: "0123456789abcdef".into(),
            policy: ApprovalPolicyView {
                allow_self_approval: false,
                require_comment: true,
                required: 2,
                roles: vec!["approver".into()],
                users: vec![],
                auto_approve_after: None,
            },
            stage: "Approve".into(),
            started_by: Some("sam".into()),
            status: Some("Waiting".into()),
            votes: vec![ApprovalVoteView {
                action: "release".into(),
                at: 5,
                attempt: 1,
                binding: "{}".into(),
                by: "ann".into(),
                comment: Some("ok".into()),
                decision: "Approved".into(),
                execution_id: "e1".into(),
                stage: "Approve".into(),
            }],
        };
        same_bytes(
            &view,
            json!({
                "stage": "Approve", "action": "release", "attempt": 1, "status": "Waiting",
                "binding": {"commits": {"Source/checkout": "c0ffee"}, "images": {},
                            "artifacts": {"Source/checkout": {"Src": "sha256:a"}},
                            "parameters": {"Build/web": [{"var": "DB", "name": "/shop/db", "version": 2,
                                                          "secure": true, "source": "env"}]}},
                "fingerprint": "0123456789abcdef",
                "policy": {"roles": ["approver"], "users": [], "required": 2,
                           "allow_self_approval": false, "require_comment": true},
                "votes": [{"execution_id": "e1", "stage": "Approve", "action": "release", "attempt": 1,
                           "by": "ann", "decision": "Approved", "at": 5, "comment": "ok", "binding": "{}"}],
                "started_by": "sam",
            }),
        );
    }
}
