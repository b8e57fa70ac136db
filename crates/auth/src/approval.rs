//! Approval policies: who may decide an approval, how many distinct
//! approvals it needs, whether the people behind the change may approve it
//! themselves, and whether a comment is required. Pure: the control plane
//! passes the votes so far and the execution's context.

use serde::{Deserialize, Serialize};

use crate::{Identity, Permission, Role, Target};

/// The rules of one approval action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalPolicy {
    /// Only holders of one of these roles may decide (admin always may).
    /// Empty: any approver.
    #[serde(default)]
    pub roles: Vec<Role>,
    /// These users may decide too (they still need an approver grant that
    /// covers the pipeline: a pipeline file narrows who may approve, it
    /// never grants the right).
    #[serde(default)]
    pub users: Vec<String>,
    /// Distinct approvals needed; one rejection rejects.
    pub required: u32,
    /// Whether the person who started the execution, or whose e-mail
    /// authored the commit, may approve it.
    pub allow_self_approval: bool,
    pub require_comment: bool,
}

impl ApprovalPolicy {
    /// An approval action without a `policy:` block: one decision by any
    /// approver, as in CodePipeline (and as a laptop with one person needs).
    pub fn single_approver() -> ApprovalPolicy {
        ApprovalPolicy {
            roles: Vec::new(),
            users: Vec::new(),
            required: 1,
            allow_self_approval: true,
            require_comment: false,
        }
    }
}

/// A decision already recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vote {
    pub by: String,
    pub approve: bool,
}

/// Who is behind the change being approved.
#[derive(Debug, Clone, Default)]
pub struct ChangeAuthors<'a> {
    /// The identity that started the execution.
    pub started_by: Option<&'a str>,
    /// Commit author e-mails of the execution's sources.
    pub commit_authors: &'a [String],
}

/// Why a decision is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyRefusal {
    #[error("{who} may not decide this approval: {why}")]
    NotAllowed { who: String, why: String },
    #[error("{who} {why} and so may not approve it (the policy forbids self-approval)")]
    SelfApproval { who: String, why: String },
    #[error("this approval requires a comment")]
    CommentRequired,
    #[error("{0} has already decided this approval")]
    AlreadyDecided(String),
}

impl PolicyRefusal {
    /// The HTTP status an API answers this refusal with.
    pub fn http_status(&self) -> u16 {
        match self {
            PolicyRefusal::NotAllowed { .. } | PolicyRefusal::SelfApproval { .. } => 403,
            PolicyRefusal::CommentRequired => 400,
            PolicyRefusal::AlreadyDecided(_) => 409,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            PolicyRefusal::NotAllowed { .. } => "approval.not_allowed",
            PolicyRefusal::SelfApproval { .. } => "approval.self_approval",
            PolicyRefusal::CommentRequired => "approval.comment_required",
            PolicyRefusal::AlreadyDecided(_) => "approval.already_decided",
        }
    }
}

/// Where an approval stands after its votes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tally {
    Pending { approvals: u32, required: u32 },
    Approved,
    Rejected,
}

impl ApprovalPolicy {
    /// Whether `who` may cast this decision now.
    pub fn check(
        &self,
        who: &Identity,
        pipeline: &str,
        authors: &ChangeAuthors<'_>,
        votes: &[Vote],
        approve: bool,
        comment: Option<&str>,
    ) -> Result<(), PolicyRefusal> {
        let not_allowed = |why: &str| PolicyRefusal::NotAllowed {
            who: who.name.clone(),
            why: why.to_string(),
        };
        if !who.allows(Permission::Approve, &Target::pipeline(pipeline)) {
            return Err(not_allowed(&format!(
                "no approver grant covers pipeline {pipeline}"
            )));
        }
        let by_role = self.roles.is_empty() && self.users.is_empty()
            || self.roles.iter().any(|r| who.has_role(*r));
        let by_name = self.users.contains(&who.name);
        if !(by_role || by_name) {
            let mut allowed: Vec<String> = self.roles.iter().map(|r| format!("role {r}")).collect();
            allowed.extend(self.users.iter().map(|u| format!("user {u}")));
            return Err(not_allowed(&format!(
                "the policy allows {}",
                allowed.join(", ")
            )));
        }
        if votes.iter().any(|v| v.by == who.name) {
            return Err(PolicyRefusal::AlreadyDecided(who.name.clone()));
        }
        if self.require_comment && comment.is_none_or(|c| c.trim().is_empty()) {
            return Err(PolicyRefusal::CommentRequired);
        }
        if approve && !self.allow_self_approval {
            if authors.started_by == Some(who.name.as_str()) {
                return Err(PolicyRefusal::SelfApproval {
                    who: who.name.clone(),
                    why: "started this execution".to_string(),
                });
            }
            if let Some(email) = &who.email
                && authors
                    .commit_authors
                    .iter()
                    .any(|a| a.eq_ignore_ascii_case(email))
            {
                return Err(PolicyRefusal::SelfApproval {
                    who: who.name.clone(),
                    why: format!("authored the commit ({email})"),
                });
            }
        }
        Ok(())
    }

    /// The outcome of the votes cast so far.
    pub fn tally(&self, votes: &[Vote]) -> Tally {
        if votes.iter().any(|v| !v.approve) {
            return Tally::Rejected;
        }
        let approvals = u32::try_from(votes.len()).unwrap_or(u32::MAX);
        let required = self.required.max(1);
        if approvals >= required {
            Tally::Approved
        } else {
            Tally::Pending {
                approvals,
                required,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn who(name: &str, email: Option<&str>, grants: &[&str]) -> Identity {
        Identity {
            name: name.into(),
            email: email.map(Into::into),
            grants: grants.iter().map(|g| g.parse().unwrap()).collect(),
        }
    }

    fn two_of_n() -> ApprovalPolicy {
        ApprovalPolicy {
            roles: vec![Role::Approver],
            users: vec![],
            required: 2,
            allow_self_approval: false,
            require_comment: false,
        }
    }

    fn vote(by: &str, approve: bool) -> Vote {
        Vote {
            by: by.into(),
            approve,
        }
    }

    #[test]
    fn two_of_n_needs_two_distinct_approvers() {
        let p = two_of_n();
        let none = ChangeAuthors::default();
        let alice = who("alice", None, &["approver"]);
        let bob = who("bob", None, &["approver"]);
        assert_eq!(p.check(&alice, "shop", &none, &[], true, None), Ok(()));
        let votes = vec![vote("alice", true)];
        assert_eq!(
            p.tally(&votes),
            Tally::Pending {
                approvals: 1,
                required: 2
            }
        );
        assert_eq!(
            p.check(&alice, "shop", &none, &votes, true, None),
            Err(PolicyRefusal::AlreadyDecided("alice".into()))
        );
        assert_eq!(p.check(&bob, "shop", &none, &votes, true, None), Ok(()));
        assert_eq!(
            p.tally(&[vote("alice", true), vote("bob", true)]),
            Tally::Approved
        );
        assert_eq!(
            p.tally(&[vote("alice", true), vote("bob", false)]),
            Tally::Rejected
        );
    }

    #[test]
    fn self_approval_is_refused_by_default_but_self_rejection_is_not() {
        let p = two_of_n();
        let commits = vec!["Carol@Example.com".to_string()];
        let authors = ChangeAuthors {
            started_by: Some("dave"),
            commit_authors: &commits,
        };
        let carol = who("carol", Some("carol@example.com"), &["approver"]);
        let dave = who("dave", None, &["approver", "operator"]);
        let refused = p.check(&carol, "shop", &authors, &[], true, None);
        assert_eq!(refused.unwrap_err().code(), "approval.self_approval");
        let refused = p.check(&dave, "shop", &authors, &[], true, None);
        assert_eq!(refused.unwrap_err().code(), "approval.self_approval");
        assert_eq!(p.check(&dave, "shop", &authors, &[], false, None), Ok(()));
        let lenient = ApprovalPolicy::single_approver();
        assert_eq!(
            lenient.check(&dave, "shop", &authors, &[], true, None),
            Ok(())
        );
    }

    #[test]
    fn the_policy_narrows_never_grants() {
        let p = ApprovalPolicy {
            users: vec!["erin".into()],
            roles: vec![Role::Admin],
            ..ApprovalPolicy::single_approver()
        };
        let none = ChangeAuthors::default();
        // Named, but without an approver grant: refused.
        let viewer = who("erin", None, &["viewer"]);
        assert_eq!(
            p.check(&viewer, "shop", &none, &[], true, None)
                .unwrap_err()
                .code(),
            "approval.not_allowed"
        );
        // Named and an approver: allowed.
        let erin = who("erin", None, &["approver"]);
        assert_eq!(p.check(&erin, "shop", &none, &[], true, None), Ok(()));
        // An approver neither named nor admin: refused.
        let frank = who("frank", None, &["approver"]);
        assert!(p.check(&frank, "shop", &none, &[], true, None).is_err());
        // Admin by role.
        let root = who("root", None, &["admin"]);
        assert_eq!(p.check(&root, "shop", &none, &[], true, None), Ok(()));
        // An approver of another pipeline only.
        let other = who("erin", None, &["approver:pipeline=other"]);
        assert!(p.check(&other, "shop", &none, &[], true, None).is_err());
    }

    #[test]
    fn a_required_comment_must_say_something() {
        let p = ApprovalPolicy {
            require_comment: true,
            ..ApprovalPolicy::single_approver()
        };
        let a = who("a", None, &["approver"]);
        let none = ChangeAuthors::default();
        for comment in [None, Some(""), Some("  ")] {
            assert_eq!(
                p.check(&a, "shop", &none, &[], true, comment),
                Err(PolicyRefusal::CommentRequired)
            );
        }
        assert_eq!(p.check(&a, "shop", &none, &[], true, Some("ok")), Ok(()));
    }
}
