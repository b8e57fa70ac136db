//! `GET /api/v1/pipelines`: the pipelines the server knows (those with
//! executions, and registered ones that never ran), each with its newest
//! execution. A viewer's route.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use gantry_api::PipelineSummary;
use gantry_auth::{Permission, Target};

use crate::api::ApiError;
use crate::control::ControlPlane;
use crate::guard::Caller;
use crate::view::execution_view;

pub(crate) fn routes() -> Router<ControlPlane> {
    Router::new().route("/api/v1/pipelines", get(list))
}

/// By name, each with its newest execution (found in place, not by sorting
/// them all: a page asks for this on every change).
async fn list(
    State(plane): State<ControlPlane>,
    caller: Caller,
) -> Result<Json<Vec<PipelineSummary>>, ApiError> {
    caller.require(Permission::Read, Target::any())?;
    let mut pipelines: BTreeMap<String, (usize, Option<gantry_engine::Execution>)> = plane
        .newest_executions()
        .await
        .into_iter()
        .map(|(name, count, newest)| (name, (count, Some(newest))))
        .collect();
    for trigger in plane.trigger_views().await? {
        pipelines.entry(trigger.pipeline).or_default();
    }
    let mut out = Vec::with_capacity(pipelines.len());
    for (name, (executions, newest)) in pipelines {
        let last_execution = match newest {
            Some(execution) => {
                let loaded = plane.execution(&execution.id).await.and_then(|(_, l)| l);
                Some(execution_view(&execution, loaded.as_deref()))
            }
            None => None,
        };
        out.push(PipelineSummary {
            name,
            executions,
            last_execution,
        });
    }
    Ok(Json(out))
}
