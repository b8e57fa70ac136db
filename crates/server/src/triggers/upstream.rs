//! `pipeline` triggers: when an execution ends, the pipelines waiting for
//! its pipeline with its final status start, once per upstream execution
//! (its id is the dedup key), on their sources' branch heads.

use std::collections::BTreeMap;

use gantry_clock::now_ms;
use gantry_engine::{ExecutionStatus, Trigger, TriggerType};
use gantry_spec::trigger::TriggerKind;
use gantry_store::TriggerOutcome;
use gantry_triggers::DedupKey;

use crate::control::ControlPlane;

/// Spawns the starts of the pipelines that wait for this execution's end.
/// Called by the control plane under its lock: it only looks at the armed
/// pipelines and spawns.
pub(super) fn execution_finished(
    plane: &ControlPlane,
    upstream: &str,
    id: &str,
    status: ExecutionStatus,
) {
    for armed in plane.triggers().all() {
        for (index, trigger) in armed.pipeline.triggers.iter().enumerate() {
            let TriggerKind::Pipeline(waits) = &trigger.kind else {
                continue;
            };
            let wanted = waits.name.as_str() == upstream
                && waits.statuses.iter().any(|s| s.as_str() == status.as_str());
            if !wanted {
                continue;
            }
            let plane = plane.clone();
            let armed = armed.clone();
            let id = id.to_string();
            let upstream = upstream.to_string();
            tokio::spawn(async move {
                start(&plane, &armed, index, &upstream, &id, status).await;
            });
        }
    }
}

async fn start(
    plane: &ControlPlane,
    armed: &super::Armed,
    index: usize,
    upstream: &str,
    id: &str,
    status: ExecutionStatus,
) {
    let store = plane.store();
    let row = i64::try_from(index).unwrap_or(i64::MAX);
    let event = format!("pipeline {upstream} execution {id} ended {status}");
    let key = DedupKey::Upstream {
        pipeline: armed.pipeline.name.clone(),
        upstream_execution: id.to_string(),
    }
    .as_string();
    match store.claim_dedup(&key, &armed.name, now_ms()).await {
        Ok(true) => {}
        Ok(false) => return,
        Err(error) => {
            let _ = store
                .record_trigger_error(&armed.name, row, Some(&event), &error.to_string(), now_ms())
                .await;
            return;
        }
    }
    let trigger = Trigger {
        kind: TriggerType::Pipeline,
        detail: id.to_string(),
        by: None,
        pull_request: None,
    };
    match plane
        .start_triggered(
            armed.file.clone(),
            armed.text.clone(),
            armed.includes.clone(),
            trigger,
            BTreeMap::new(),
        )
        .await
    {
        Ok(started) => {
            let _ = store.set_dedup_execution(&key, &started).await;
            tracing::info!(pipeline = %armed.name, execution = %started, upstream = %id,
                "An upstream pipeline started an execution.");
            let outcome = TriggerOutcome {
                event: &event,
                commit: None,
                result: "started",
                execution: Some(&started),
                at: now_ms(),
            };
            if let Err(error) = store
                .record_trigger_outcome(&armed.name, row, &outcome)
                .await
            {
                tracing::error!(%error, "Recording a trigger's state failed.");
            }
        }
        Err(error) => {
            let _ = store.release_dedup(&key).await;
            let _ = store
                .record_trigger_error(
                    &armed.name,
                    row,
                    Some(&event),
                    &format!("starting the pipeline failed: {error}"),
                    now_ms(),
                )
                .await;
        }
    }
}
