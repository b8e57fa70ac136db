//! The execution JSON of formats.md §3 (`status --json`, the API, the last
//! line of `run --json`). Field names here are a contract.

use gantry_engine::Execution;
use gantry_spec::pipeline::ActionKind;
use serde_json::{Value, json};

use crate::clock::rfc3339;
use crate::control::resolve_in;
use crate::definition::Loaded;

pub fn execution_json(execution: &Execution, loaded: Option<&Loaded>) -> Value {
    let ts = |t: Option<i64>| t.map(rfc3339);
    let variables: serde_json::Map<String, Value> = execution
        .variables
        .iter()
        .map(|(k, v)| (format!("variables.{k}"), Value::String(v.clone())))
        .collect();
    let stages: Vec<Value> = execution
        .stages
        .iter()
        .enumerate()
        .map(|(s, stage)| {
            let actions: Vec<Value> = stage
                .actions
                .iter()
                .enumerate()
                .map(|(a, action)| {
                    let spec = loaded.and_then(|l| l.pipeline.stages.get(s)?.actions.get(a));
                    let mut value = json!({
                        "name": action.name,
                        "status": action.status.map(|st| st.as_str()),
                        "attempt": action.attempt,
                        "started_at": ts(action.started_at),
                        "finished_at": ts(action.finished_at),
                        "error": action.error,
                        "output_variables": action.output_variables,
                        "output_artifacts": action.output_artifacts,
                    });
                    if let Some(spec) = spec {
                        value["type"] = json!(spec.kind.type_name());
                        value["run_order"] = json!(spec.run_order);
                        if let (ActionKind::Approval { review_url, comments, .. }, Some(loaded)) = (&spec.kind, loaded) {
                            // What the person is asked, with its references resolved
                            // against this execution, so they see what they approve.
                            let resolve = |t: &Option<String>| {
                                t.as_deref().map(|t| resolve_in(t, loaded, execution).unwrap_or_else(|_| t.to_string()))
                            };
                            value["approval"] =
                                json!({"comments": resolve(comments), "review_url": resolve(review_url)});
                        }
                    }
                    value
                })
                .collect();
            json!({"name": stage.name, "status": stage.status.map(|st| st.as_str()), "actions": actions})
        })
        .collect();
    json!({
        "id": execution.id,
        "pipeline": execution.pipeline,
        "status": execution.status.as_str(),
        "started_at": rfc3339(execution.started_at),
        "finished_at": ts(execution.finished_at),
        "variables": variables,
        "waiting_at": execution.waiting_at.and_then(|s| execution.stages.get(s)).map(|s| s.name.clone()),
        "stop_reason": execution.stop_reason,
        "stages": stages,
    })
}
