//! Approvals: waiting for a person, timing out, and deciding under the
//! action's policy, as the identity of whoever decides (never a name from a
//! request body), bound to what they were shown.
//!
//! An approval's attempt holds no task: it logs how to approve and submits
//! `ActionWaiting`, which arms a timer that fails the attempt at its timeout
//! (7 days unless the action says otherwise). A decision or a cancelled
//! attempt stops the timer; a restarted server arms the timers again (see
//! `replay`).
//!
//! What an approval waits for is summed up in its **binding**: the commit of
//! each source, each image digest, every output artifact (an
//! imagedefinitions.json's id is the digest of the digests it names) and the
//! parameter versions recorded by the actions before it. Its fingerprint is
//! shown with the approval; a decision that names a fingerprint is refused
//! when the approval now waits for something else, so nobody approves a
//! change they did not see. Every vote is stored with the binding it saw.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use gantry_auth::{ApprovalPolicy, ChangeAuthors, Identity, Role, Tally, Vote};
use gantry_clock::now_ms;
use gantry_engine::{ActionRef, ActionStatus, Execution, ExecutionStatus};
use gantry_spec::pipeline::ActionKind;
use gantry_store::{ApprovalRecord, ApprovalVote};
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::ControlPlane;
use super::resolution::resolved_action;
use crate::definition::Loaded;
use crate::error::ControlError;
use crate::notify::{ApprovalDecided, ApprovalDecision, ApprovalWaiting, Subject};

/// Default approval timeout (CodePipeline's 7 days).
const DEFAULT_APPROVAL_TIMEOUT: Duration = Duration::from_secs(7 * 24 * 3600);

/// What an approval waits for, as shown to whoever decides.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ApprovalBinding {
    /// `Stage/action` of each source → the commit it pinned.
    pub commits: BTreeMap<String, String>,
    /// `Stage/action` of each image action → the image digest it built.
    pub images: BTreeMap<String, String>,
    /// `Stage/action` → output artifact name → artifact id.
    pub artifacts: BTreeMap<String, BTreeMap<String, String>>,
    /// `Stage/action` → the parameter versions it resolved.
    pub parameters: BTreeMap<String, serde_json::Value>,
}

impl ApprovalBinding {
    /// A short, stable digest of the binding.
    pub fn fingerprint(&self) -> String {
        let text = serde_json::to_string(self).unwrap_or_default();
        hex::encode(&Sha256::digest(text.as_bytes())[..8])
    }
}

/// An approval's state for whoever may decide it.
#[derive(Debug, Clone, Serialize)]
pub struct ApprovalView {
    pub stage: String,
    pub action: String,
    pub attempt: u32,
    pub status: Option<ActionStatus>,
    pub binding: ApprovalBinding,
    pub fingerprint: String,
    pub policy: ApprovalPolicy,
    /// When it approves by itself after waiting this long.
    pub auto_approve_after: Option<Duration>,
    pub votes: Vec<ApprovalVote>,
    pub started_by: Option<String>,
}

/// One person's decision, as asked.
#[derive(Debug, Clone)]
pub struct Decision<'a> {
    pub stage: &'a str,
    pub action: &'a str,
    pub approve: bool,
    pub comment: Option<String>,
    /// The fingerprint of what the decider was shown, if they name it.
    pub expected: Option<&'a str>,
}

pub use gantry_api::DecisionOutcome;

/// The policy of an approval action: its `policy:` block, or one decision
/// by any approver.
fn policy_of(kind: &ActionKind) -> ApprovalPolicy {
    match kind {
        ActionKind::Approval {
            policy: Some(p), ..
        } => ApprovalPolicy {
            roles: p
                .roles
                .iter()
                .filter_map(|r| r.parse::<Role>().ok())
                .collect(),
            users: p.users.clone(),
            required: p.required,
            allow_self_approval: p.allow_self_approval,
            require_comment: p.require_comment,
        },
        _ => ApprovalPolicy::single_approver(),
    }
}

/// How long an approval waits before approving itself, if its policy says.
fn auto_approve_after(kind: &ActionKind) -> Option<Duration> {
    match kind {
        ActionKind::Approval {
            policy: Some(p), ..
        } => p.auto_approve_after,
        _ => None,
    }
}

/// Who an approval that approved itself was decided by.
const AUTO_APPROVER: &str = "gantry";

impl ControlPlane {
    /// Starts an approval's attempt: resolves it, logs how to approve it and
    /// submits `ActionWaiting` (or `ActionFailed` when it does not resolve).
    pub(super) async fn begin_approval(&self, approval: ActionRef) {
        let Some((loaded, execution)) = self.snapshot(&approval.id).await else {
            return;
        };
        let stage = &loaded.pipeline.stages[approval.stage];
        let spec = &stage.actions[approval.action];
        let log = self.inner.logs.action(
            &approval.id,
            stage.name.as_str(),
            spec.name.as_str(),
            approval.attempt,
        );
        let resolved = resolved_action(spec, &loaded, &execution, self.registry());
        let waits = resolved.is_ok();
        let event = match resolved {
            Ok(resolved) => {
                if let ActionKind::Approval {
                    review_url,
                    comments,
                    ..
                } = &resolved.kind
                {
                    log.line("Waiting for approval.");
                    if let Some(url) = review_url {
                        log.line(&format!("Review: {url}"));
                    }
                    if let Some(comments) = comments {
                        log.line(&format!("Comments: {comments}"));
                    }
                }
                log.line(&format!(
                    "Approve with: gantry approve {} {}/{}",
                    approval.id, stage.name, spec.name
                ));
                approval.waiting(now_ms())
            }
            Err(error) => {
                log.line(&format!("Action failed: {error}"));
                approval.failed(error, now_ms())
            }
        };
        match self.submit(event).await {
            Ok(()) if waits => {
                if let Some((loaded, execution)) =
                    self.approval_now(&approval, ActionStatus::Waiting).await
                {
                    let waiting = ApprovalWaiting {
                        stage: stage.name.to_string(),
                        action: spec.name.to_string(),
                        attempt: approval.attempt,
                    };
                    let subject = Subject::of(&loaded, &execution);
                    self.inner.notifier.emit(&subject, &waiting);
                }
            }
            Ok(()) => {}
            Err(error) => tracing::error!(%error, "Recording an approval wait failed."),
        }
    }

    /// The approval's execution and definition, if `approval` is still its
    /// action's attempt and has `status` (a late event for an older attempt
    /// changes nothing, and must not be told as if it had).
    async fn approval_now(
        &self,
        approval: &ActionRef,
        status: ActionStatus,
    ) -> Option<(Arc<Loaded>, Execution)> {
        let (loaded, execution) = self.snapshot(&approval.id).await?;
        let run = execution
            .stages
            .get(approval.stage)?
            .actions
            .get(approval.action)?;
        (run.attempt == approval.attempt && run.status == Some(status))
            .then_some((loaded, execution))
    }

    /// Notifies that an approval ended, once its end is recorded.
    async fn notify_decided(
        &self,
        approval: &ActionRef,
        decision: ApprovalDecision,
        by: Option<String>,
        comment: Option<String>,
    ) {
        let ended_as = match decision {
            ApprovalDecision::Approved => ActionStatus::Succeeded,
            ApprovalDecision::Rejected | ApprovalDecision::TimedOut => ActionStatus::Failed,
        };
        let Some((loaded, execution)) = self.approval_now(approval, ended_as).await else {
            return;
        };
        let stage = &loaded.pipeline.stages[approval.stage];
        let decided = ApprovalDecided {
            stage: stage.name.to_string(),
            action: stage.actions[approval.action].name.to_string(),
            attempt: approval.attempt,
            decision,
            by,
            comment,
            status: execution.status,
        };
        let subject = Subject::of(&loaded, &execution);
        self.inner.notifier.emit(&subject, &decided);
    }

    /// Arms the timer that fails a waiting approval at its timeout, or
    /// approves it at its policy's `auto_approve_after` when that comes
    /// first, both counted from when the attempt started.
    pub(super) async fn arm_approval_timer(&self, approval: &ActionRef) {
        let Some((loaded, execution)) = self.snapshot(&approval.id).await else {
            return;
        };
        let spec = &loaded.pipeline.stages[approval.stage].actions[approval.action];
        let timeout = spec.timeout.unwrap_or(DEFAULT_APPROVAL_TIMEOUT);
        let auto = auto_approve_after(&spec.kind).filter(|after| *after < timeout);
        let started = execution.stages[approval.stage].actions[approval.action]
            .started_at
            .unwrap_or_else(now_ms);
        let remaining = move |after: Duration| {
            let deadline_ms =
                started.saturating_add(i64::try_from(after.as_millis()).unwrap_or(i64::MAX));
            Duration::from_millis(u64::try_from(deadline_ms - now_ms()).unwrap_or(0))
        };
        let plane = self.clone();
        let timed_out = approval.clone();
        let task = tokio::spawn(async move {
            if let Some(after) = auto {
                tokio::time::sleep(remaining(after)).await;
                if let Err(error) = plane.approve_by_itself(&timed_out, after).await {
                    tracing::warn!(%error, "Approving an approval by its policy failed.");
                }
                return;
            }
            tokio::time::sleep(remaining(timeout)).await;
            let error = format!(
                "approval timed out after {}",
                gantry_spec::duration::format_duration(timeout)
            );
            match plane.submit(timed_out.failed(error, now_ms())).await {
                Ok(()) => {
                    plane
                        .notify_decided(&timed_out, ApprovalDecision::TimedOut, None, None)
                        .await;
                }
                Err(error) => tracing::warn!(%error, "Recording an approval timeout failed."),
            }
        });
        let mut state = self.inner.state.lock().await;
        if let Some(old) = state.timers.insert(approval.clone(), task.abort_handle()) {
            old.abort();
        }
    }

    /// Approves a still-waiting approval whose policy's
    /// `auto_approve_after` has passed, as [`AUTO_APPROVER`], with a
    /// comment that says why; recorded, logged and notified as a person's
    /// deciding vote is. Nothing happens when it was decided meanwhile.
    async fn approve_by_itself(
        &self,
        approval: &ActionRef,
        after: Duration,
    ) -> Result<(), ControlError> {
        let _one_at_a_time = self.inner.decisions.lock().await;
        let Some((loaded, execution)) = self.snapshot(&approval.id).await else {
            return Ok(());
        };
        let run = &execution.stages[approval.stage].actions[approval.action];
        if run.status != Some(ActionStatus::Waiting) || run.attempt != approval.attempt {
            return Ok(());
        }
        let stage = execution.stages[approval.stage].name.clone();
        let comment = format!(
            "approved automatically after {} (its policy's auto_approve_after)",
            gantry_spec::duration::format_duration(after)
        );
        let at = now_ms();
        let binding = self.binding(&loaded, &execution, approval.stage).await?;
        let vote = ApprovalVote {
            execution_id: approval.id.clone(),
            stage: stage.clone(),
            action: run.name.clone(),
            attempt: i64::from(run.attempt),
            by: AUTO_APPROVER.to_string(),
            decision: "Approved".to_string(),
            at,
            comment: Some(comment.clone()),
            binding: serde_json::to_string(&binding).unwrap_or_default(),
        };
        self.store().record_vote(&vote).await?;
        // This runs in the approval's timer task: out of the map first, so
        // concluding does not abort the task that is concluding.
        self.inner.state.lock().await.timers.remove(approval);
        let names = (stage.as_str(), run.name.as_str());
        self.conclude(approval, names, true, vote.by, Some(comment), at)
            .await
    }

    /// Ends an approval as decided by `by` (a person, the deciding votes'
    /// names, or [`AUTO_APPROVER`]): records the decision, logs it, submits
    /// the attempt's result, stops its timer and notifies.
    async fn conclude(
        &self,
        approval: &ActionRef,
        (stage, action): (&str, &str),
        approve: bool,
        by: String,
        comment: Option<String>,
        at: i64,
    ) -> Result<(), ControlError> {
        let decision = if approve { "Approved" } else { "Rejected" };
        self.store()
            .record_approval(&ApprovalRecord {
                execution_id: approval.id.clone(),
                stage: stage.to_string(),
                action: action.to_string(),
                attempt: i64::from(approval.attempt),
                decision: decision.to_string(),
                by: by.clone(),
                at,
                comment: comment.clone(),
            })
            .await?;
        let said = comment
            .as_deref()
            .map(|c| format!(": {c}"))
            .unwrap_or_default();
        self.inner
            .logs
            .action(&approval.id, stage, action, approval.attempt)
            .line(&format!("{decision} by {by}{said}"));
        self.inner.logs.flush().await;
        let event = if approve {
            approval.succeeded(BTreeMap::new(), BTreeMap::new(), at)
        } else {
            approval.failed(format!("rejected by {by}{said}"), at)
        };
        self.submit(event).await?;
        self.cancel_approval_timer(approval).await;
        let decision = if approve {
            ApprovalDecision::Approved
        } else {
            ApprovalDecision::Rejected
        };
        self.notify_decided(approval, decision, Some(by), comment)
            .await;
        Ok(())
    }

    /// How many approvals have a timer armed that has not fired yet: a
    /// test that moves tokio's clock waits for its timer to be armed, so
    /// the jump moves only the timer it means to (and no I/O time-out).
    pub async fn armed_approval_timers(&self) -> usize {
        let state = self.inner.state.lock().await;
        state.timers.values().filter(|t| !t.is_finished()).count()
    }

    /// Stops the timeout timer of an approval that was decided.
    async fn cancel_approval_timer(&self, approval: &ActionRef) {
        if let Some(timer) = self.inner.state.lock().await.timers.remove(approval) {
            timer.abort();
        }
    }

    async fn binding(
        &self,
        loaded: &Loaded,
        execution: &Execution,
        upto: usize,
    ) -> Result<ApprovalBinding, ControlError> {
        let mut binding = ApprovalBinding::default();
        let details = self.store().action_details(&execution.id).await?;
        for (s, stage) in execution.stages.iter().enumerate().take(upto) {
            for (a, run) in stage.actions.iter().enumerate() {
                if run.status != Some(ActionStatus::Succeeded) {
                    continue;
                }
                let key = format!("{}/{}", stage.name, run.name);
                match &loaded.pipeline.stages[s].actions[a].kind {
                    ActionKind::Source { .. } => {
                        if let Some(commit) = run.output_variables.get("CommitId") {
                            binding.commits.insert(key.clone(), commit.clone());
                        }
                    }
                    ActionKind::Image { .. } => {
                        if let Some(digest) = run.output_variables.get("ImageDigest") {
                            binding.images.insert(key.clone(), digest.clone());
                        }
                    }
                    _ => {}
                }
                if !run.output_artifacts.is_empty() {
                    binding
                        .artifacts
                        .insert(key.clone(), run.output_artifacts.clone());
                }
                for d in details.iter().filter(|d| {
                    d.stage == stage.name
                        && d.action == run.name
                        && d.attempt == i64::from(run.attempt)
                        && d.kind == "parameters"
                }) {
                    if let Ok(value) = serde_json::from_str(&d.body) {
                        binding.parameters.insert(key.clone(), value);
                    }
                }
            }
        }
        Ok(binding)
    }

    /// An approval action's binding, policy and votes.
    pub async fn approval(
        &self,
        id: &str,
        stage: &str,
        action: &str,
    ) -> Result<ApprovalView, ControlError> {
        self.ensure_loaded(id).await?;
        let (loaded, execution) = self
            .snapshot(id)
            .await
            .ok_or_else(|| ControlError::NotFound(id.to_string()))?;
        let (s, a) = execution
            .locate(stage, action)
            .ok_or_else(|| ControlError::UnknownAction(format!("{stage}/{action}")))?;
        let spec = &loaded.pipeline.stages[s].actions[a];
        if !matches!(spec.kind, ActionKind::Approval { .. }) {
            return Err(ControlError::BadRequest(format!(
                "{stage}/{action} is not an approval"
            )));
        }
        let run = &execution.stages[s].actions[a];
        let binding = self.binding(&loaded, &execution, s).await?;
        let votes = self
            .store()
            .votes(id, stage, action, i64::from(run.attempt))
            .await?;
        Ok(ApprovalView {
            stage: stage.to_string(),
            action: action.to_string(),
            attempt: run.attempt,
            status: run.status,
            fingerprint: binding.fingerprint(),
            binding,
            policy: policy_of(&spec.kind),
            auto_approve_after: auto_approve_after(&spec.kind),
            votes,
            started_by: loaded.definition.started_by.clone(),
        })
    }

    /// Approves or rejects a waiting approval as `who`, under the action's
    /// policy. With `expected`, refuses when the approval's fingerprint
    /// differs (it waits for something other than what was shown).
    pub async fn decide(
        &self,
        id: &str,
        who: &Identity,
        decision: Decision<'_>,
    ) -> Result<DecisionOutcome, ControlError> {
        let Decision {
            stage,
            action,
            approve,
            comment,
            expected,
        } = decision;
        // One decision at a time, so two approvers deciding at once are
        // counted in order and only the deciding vote ends the wait.
        let _one_at_a_time = self.inner.decisions.lock().await;
        // A finished execution's definition is not in memory: load it, so
        // deciding one says that nothing waits, not that it does not exist.
        self.ensure_loaded(id).await?;
        let (loaded, execution) = self
            .snapshot(id)
            .await
            .ok_or_else(|| ControlError::NotFound(id.to_string()))?;
        if execution.status == ExecutionStatus::Superseded {
            return Err(ControlError::Superseded(id.to_string()));
        }
        let (s, a) = execution
            .locate(stage, action)
            .ok_or_else(|| ControlError::UnknownAction(format!("{stage}/{action}")))?;
        let run = &execution.stages[s].actions[a];
        if run.status != Some(ActionStatus::Waiting) {
            let ended = if execution.status.is_terminal() {
                format!(" (execution {id} has ended: {})", execution.status)
            } else {
                String::new()
            };
            return Err(ControlError::NothingWaiting(format!(
                "{stage}/{action}{ended}"
            )));
        }
        let spec = &loaded.pipeline.stages[s].actions[a];
        let policy = policy_of(&spec.kind);
        let binding = self.binding(&loaded, &execution, s).await?;
        let fingerprint = binding.fingerprint();
        if let Some(expected) = expected
            && expected != fingerprint
        {
            return Err(ControlError::ApprovalChanged(
                format!("{stage}/{action}"),
                expected.to_string(),
            ));
        }
        let attempt = i64::from(run.attempt);
        let recorded = self.store().votes(id, stage, action, attempt).await?;
        let mut votes: Vec<Vote> = recorded
            .iter()
            .map(|v| Vote {
                by: v.by.clone(),
                approve: v.decision == "Approved",
            })
            .collect();
        let commit_authors: Vec<String> = execution
            .stages
            .iter()
            .flat_map(|st| st.actions.iter())
            .filter_map(|r| r.output_variables.get("AuthorEmail").cloned())
            .collect();
        let authors = ChangeAuthors {
            started_by: loaded.definition.started_by.as_deref(),
            commit_authors: &commit_authors,
        };
        policy.check(
            who,
            &loaded.pipeline.name.to_string(),
            &authors,
            &votes,
            approve,
            comment.as_deref(),
        )?;
        let decision = if approve { "Approved" } else { "Rejected" };
        let at = now_ms();
        self.store()
            .record_vote(&ApprovalVote {
                execution_id: id.to_string(),
                stage: stage.to_string(),
                action: action.to_string(),
                attempt,
                by: who.name.clone(),
                decision: decision.to_string(),
                at,
                comment: comment.clone(),
                binding: serde_json::to_string(&binding).unwrap_or_default(),
            })
            .await?;
        votes.push(Vote {
            by: who.name.clone(),
            approve,
        });
        let log = self.inner.logs.action(id, stage, action, run.attempt);
        let said = comment
            .as_deref()
            .map(|c| format!(": {c}"))
            .unwrap_or_default();
        let tally = policy.tally(&votes);
        let (status, approvals, required) = match tally {
            Tally::Pending {
                approvals,
                required,
            } => {
                log.line(&format!(
                    "Approved by {} ({approvals} of {required} approvals){said}",
                    who.name
                ));
                self.inner.logs.flush().await;
                return Ok(DecisionOutcome {
                    status: "Pending".to_string(),
                    approvals,
                    required,
                });
            }
            Tally::Approved => ("Approved", votes.len(), policy.required.max(1)),
            Tally::Rejected => (
                "Rejected",
                votes.iter().filter(|v| v.approve).count(),
                policy.required.max(1),
            ),
        };
        let deciders: Vec<&str> = votes
            .iter()
            .filter(|v| v.approve == approve)
            .map(|v| v.by.as_str())
            .collect();
        let by = deciders.join(", ");
        let approval = ActionRef {
            id: id.to_string(),
            stage: s,
            action: a,
            attempt: run.attempt,
        };
        let names = (stage, action);
        self.conclude(&approval, names, approve, by, comment, at)
            .await?;
        Ok(DecisionOutcome {
            status: status.to_string(),
            approvals: u32::try_from(approvals).unwrap_or(u32::MAX),
            required,
        })
    }
}
