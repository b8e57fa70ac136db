//! The execution JSON of docs/formats.md §3 (`status --json`, the API, the
//! last line of `run --json`), built as the typed [`ExecutionView`] of the
//! `gantry-api` crate, whose field names are the contract.

use std::collections::BTreeMap;

use gantry_api::{
    ActionView, ApprovalDecided, ApprovalPrompt, ExecutionPullRequest, ExecutionTrigger,
    ExecutionView, StageView,
};
use gantry_engine::Execution;
use gantry_spec::pipeline::ActionKind;
use gantry_store::{ActionDetail, ApprovalRecord};

use crate::clock::rfc3339;
use crate::control::resolve_in;
use crate::definition::Loaded;

/// The view of `execution`; `loaded` (its definition) adds each action's
/// type, run order and, for approvals, what the person is asked.
pub fn execution_view(execution: &Execution, loaded: Option<&Loaded>) -> ExecutionView {
    let ts = |t: Option<i64>| t.map(rfc3339);
    let stages = execution
        .stages
        .iter()
        .enumerate()
        .map(|(s, stage)| StageView {
            name: stage.name.clone(),
            status: stage.status.map(|st| st.as_str().to_string()),
            actions: stage
                .actions
                .iter()
                .enumerate()
                .map(|(a, action)| {
                    let spec = loaded.and_then(|l| l.pipeline.stages.get(s)?.actions.get(a));
                    let approval = match (spec.map(|s| &s.kind), loaded) {
                        (
                            Some(ActionKind::Approval {
                                review_url,
                                comments,
                                ..
                            }),
                            Some(loaded),
                        ) => {
                            // What the person is asked, with its references
                            // resolved against this execution, so they see
                            // what they approve.
                            let resolve = |t: &Option<String>| {
                                t.as_deref().map(|t| {
                                    resolve_in(t, loaded, execution)
                                        .unwrap_or_else(|_| t.to_string())
                                })
                            };
                            Some(ApprovalPrompt {
                                comments: resolve(comments),
                                review_url: resolve(review_url),
                            })
                        }
                        _ => None,
                    };
                    ActionView {
                        name: action.name.clone(),
                        status: action.status.map(|st| st.as_str().to_string()),
                        attempt: action.attempt,
                        started_at: ts(action.started_at),
                        finished_at: ts(action.finished_at),
                        error: action.error.clone(),
                        output_variables: action.output_variables.clone(),
                        output_artifacts: action.output_artifacts.clone(),
                        action_type: spec.map(|s| s.kind.type_name().to_string()),
                        run_order: spec.map(|s| s.run_order),
                        approval,
                        parameters: None,
                        reports: None,
                        decided: None,
                    }
                })
                .collect(),
        })
        .collect();
    ExecutionView {
        id: execution.id.clone(),
        pipeline: execution.pipeline.clone(),
        status: execution.status.as_str().to_string(),
        started_at: rfc3339(execution.started_at),
        finished_at: ts(execution.finished_at),
        variables: execution
            .variables
            .iter()
            .map(|(k, v)| (format!("variables.{k}"), v.clone()))
            .collect(),
        waiting_at: execution
            .waiting_at
            .and_then(|s| execution.stages.get(s))
            .map(|s| s.name.clone()),
        stop_reason: execution.stop_reason.clone(),
        stages,
        trigger: execution.trigger.as_ref().map(|t| ExecutionTrigger {
            trigger_type: t.kind.as_str().to_string(),
            detail: t.detail.clone(),
            by: t.by.clone(),
            pull_request: t.pull_request.as_ref().map(|pr| ExecutionPullRequest {
                source: pr.source.clone(),
                number: pr.number,
                event: pr.event.clone(),
                title: pr.title.clone(),
                url: pr.url.clone(),
                source_branch: pr.source_branch.clone(),
                destination_branch: pr.destination_branch.clone(),
                merged: pr.merged,
            }),
        }),
        source_revisions: source_revisions(execution, loaded),
    }
}

/// Each source action's commit: the one it took (`CommitId`) once it ran,
/// else the one it is pinned to.
fn source_revisions(execution: &Execution, loaded: Option<&Loaded>) -> BTreeMap<String, String> {
    let mut revisions = execution.source_revisions.clone();
    let Some(first) = execution.stages.first() else {
        return revisions;
    };
    for (a, action) in first.actions.iter().enumerate() {
        let is_source = match loaded {
            Some(loaded) => loaded
                .pipeline
                .stages
                .first()
                .and_then(|s| s.actions.get(a))
                .is_some_and(|spec| matches!(spec.kind, ActionKind::Source { .. })),
            // Without the definition, a source is what outputs a commit.
            None => true,
        };
        if let Some(commit) = action.output_variables.get("CommitId")
            && is_source
        {
            revisions.insert(action.name.clone(), commit.clone());
        }
    }
    revisions
}

/// Adds each action's details of its latest attempt (parameter versions,
/// test reports) to `view`. A detail that no longer reads is left out.
pub fn add_details(view: &mut ExecutionView, details: &[ActionDetail]) {
    for stage in &mut view.stages {
        for action in &mut stage.actions {
            let attempt = i64::from(action.attempt);
            for d in details.iter().filter(|d| {
                d.stage == stage.name && d.action == action.name && d.attempt == attempt
            }) {
                match d.kind.as_str() {
                    "parameters" => action.parameters = serde_json::from_str(&d.body).ok(),
                    "reports" => action.reports = serde_json::from_str(&d.body).ok(),
                    _ => {}
                }
            }
        }
    }
}

/// Adds to each approval in `view` how its latest attempt was decided, and
/// by whom (`gantry status` shows it; the JSON's `decided`).
pub fn add_decisions(view: &mut ExecutionView, records: &[ApprovalRecord]) {
    for stage in &mut view.stages {
        for action in &mut stage.actions {
            let attempt = i64::from(action.attempt);
            if let Some(r) = records
                .iter()
                .rev()
                .find(|r| r.stage == stage.name && r.action == action.name && r.attempt == attempt)
            {
                action.decided = Some(ApprovalDecided {
                    decision: r.decision.clone(),
                    by: r.by.clone(),
                    at: rfc3339(r.at),
                    comment: r.comment.clone(),
                });
            }
        }
    }
}
