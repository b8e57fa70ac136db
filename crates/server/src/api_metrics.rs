//! `GET /metrics`: Prometheus metrics (see `crate::metrics`), for any
//! caller who may read (a viewer token or better), like every other read.

use axum::Router;
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::get;
use gantry_auth::{Permission, Target};

use crate::api::ApiError;
use crate::control::ControlPlane;
use crate::guard::Caller;

pub(crate) fn routes() -> Router<ControlPlane> {
    Router::new().route("/metrics", get(metrics))
}

async fn metrics(
    State(plane): State<ControlPlane>,
    caller: Caller,
) -> Result<impl IntoResponse, ApiError> {
    caller.require(Permission::Read, Target::any())?;
    let text = plane.render_metrics().await;
    Ok(([(CONTENT_TYPE, crate::metrics::CONTENT_TYPE)], text))
}
