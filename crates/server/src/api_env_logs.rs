//! `GET /api/v1/environments/{environment}/services/{service}/logs`: what
//! a service's replicas wrote to stdout and stderr. A replica's output is
//! not masked (gantry does not know what a service prints), so reading it
//! needs an operator of that environment, as changing it does; so does
//! `GET /api/v1/environments/{environment}/access-log`, the load
//! balancer's access log.

use axum::extract::{Path, Query, State};
use axum::routing::get;
use axum::{Json, Router};
use gantry_api::{AccessLogLines, AccessLogQuery, ReplicaLogView, ServiceLogsQuery};
use gantry_auth::{Permission, Target};
use gantry_runtime::LogQuery;

use crate::api::ApiError;
use crate::control::ControlPlane;
use crate::error::ControlError;
use crate::guard::Caller;

/// The most bytes of one replica's output an answer holds.
const MAX_BYTES: u64 = 1024 * 1024;

/// The most access-log lines an answer's `tail` may ask for.
const MAX_TAIL: usize = 10_000;

pub(crate) fn routes() -> Router<ControlPlane> {
    Router::new()
        .route(
            "/api/v1/environments/{environment}/services/{service}/logs",
            get(logs),
        )
        .route(
            "/api/v1/environments/{environment}/access-log",
            get(access_log),
        )
}

/// The environment's load balancer access log: the last lines or those
/// after a cursor. Operators of the environment only: the lines hold
/// clients' addresses and whatever their paths and queries carried.
async fn access_log(
    State(plane): State<ControlPlane>,
    caller: Caller,
    Path(environment): Path<String>,
    Query(q): Query<AccessLogQuery>,
) -> Result<Json<AccessLogLines>, ApiError> {
    caller.require(Permission::Operate, Target::environment(&environment))?;
    let lines = plane
        .deployer()
        .access_log(&environment, q.tail.unwrap_or(100).min(MAX_TAIL), q.after)
        .await
        .map_err(ControlError::from)?;
    Ok(Json(lines))
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
