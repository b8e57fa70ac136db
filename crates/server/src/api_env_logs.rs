//! `GET /api/v1/environments/{environment}/services/{service}/logs`: what
//! a service's replicas wrote to stdout and stderr. A replica's output is
//! not masked (gantry does not know what a service prints), so reading it
//! needs an operator of that environment, as changing it does.

use axum::extract::{Path, Query, State};
use axum::routing::get;
use axum::{Json, Router};
use gantry_api::{ReplicaLogView, ServiceLogsQuery};
use gantry_auth::{Permission, Target};
use gantry_runtime::LogQuery;

use crate::api::ApiError;
use crate::control::ControlPlane;
use crate::error::ControlError;
use crate::guard::Caller;

/// The most bytes of one replica's output an answer holds.
const MAX_BYTES: u64 = 1024 * 1024;

pub(crate) fn routes() -> Router<ControlPlane> {
    Router::new().route(
        "/api/v1/environments/{environment}/services/{service}/logs",
        get(logs),
    )
}

async fn logs(
    State(plane): State<ControlPlane>,
    caller: Caller,
    Path((environment, service)): Path<(String, String)>,
    Query(q): Query<ServiceLogsQuery>,
) -> Result<Json<Vec<ReplicaLogView>>, ApiError> {
    caller.require(Permission::Operate, Target::environment(&environment))?;
    if q.after.as_ref().is_some_and(|a| a.len() > 128) {
        return Err(ControlError::BadRequest("`after` is at most 128 characters".into()).into());
    }
    let query = LogQuery {
        since_ms: q.since_ms,
        after: q.after,
        max_bytes: q.max_bytes.unwrap_or(MAX_BYTES).min(MAX_BYTES),
    };
    let outputs = plane
        .deployer()
        .service_logs(&environment, &service, q.replica.as_deref(), query)
        .await
        .map_err(ControlError::from)?;
    Ok(Json(
        outputs
            .into_iter()
            .map(|o| ReplicaLogView {
                replica: o.replica,
                text: o.text,
                cursor: o.cursor,
            })
            .collect(),
    ))
}
