//! The HTTP JSON API. Thin: each handler parses its input, calls the
//! control plane, and maps the answer. Errors are `{"code", "message"}` with
//! a stable `code` (and `errors` for an invalid pipeline file).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::clock::rfc3339;
use crate::control::ControlPlane;
use crate::error::ControlError;
use crate::view::execution_json;

pub fn router(plane: ControlPlane) -> Router {
    Router::new()
        .route("/api/v1/health", get(health))
        .route("/api/v1/changes", get(changes))
        .route("/api/v1/executions", post(start).get(list))
        .route("/api/v1/executions/{id}", get(status))
        .route("/api/v1/executions/{id}/logs", get(logs))
        .route(
            "/api/v1/executions/{id}/approvals",
            get(approvals).post(decide),
        )
        .route("/api/v1/executions/{id}/retry", post(retry))
        .route("/api/v1/executions/{id}/stop", post(stop))
        .merge(crate::api_params::routes())
        .merge(crate::api_deploy::routes())
        .with_state(plane)
}

pub struct ApiError(ControlError);

impl From<ControlError> for ApiError {
    fn from(e: ControlError) -> Self {
        ApiError(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match &self.0 {
            ControlError::NotFound(_)
            | ControlError::UnknownStage(_)
            | ControlError::UnknownAction(_) => StatusCode::NOT_FOUND,
            ControlError::InvalidPipeline(_) | ControlError::UnknownVariable(_) => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            ControlError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ControlError::Param(e) => match e.code() {
                "param.not_found"
                | "param.version_not_found"
                | "param.label_not_found"
                | "param.unresolved" => StatusCode::NOT_FOUND,
                "param.already_exists" | "param.history_full_with_label" => StatusCode::CONFLICT,
                "param.wrong_master_key"
                | "param.decrypt_failed"
                | "param.encrypt_failed"
                | "param.randomness"
                | "param.corrupt"
                | "param.database"
                | "param.key_file"
                | "param.master_key_invalid" => StatusCode::INTERNAL_SERVER_ERROR,
                _ => StatusCode::BAD_REQUEST,
            },
            ControlError::NothingWaiting(_) | ControlError::Engine(_) => StatusCode::CONFLICT,
            ControlError::Deploy(e) => match e {
                gantry_deploy::DeployError::UnknownEnvironment(_)
                | gantry_deploy::DeployError::UnknownService { .. }
                | gantry_deploy::DeployError::UnknownRevision { .. } => StatusCode::NOT_FOUND,
                gantry_deploy::DeployError::Spec(_) => StatusCode::UNPROCESSABLE_ENTITY,
                _ => StatusCode::CONFLICT,
            },
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let mut body = json!({"code": self.0.code(), "message": self.0.to_string()});
        if let ControlError::InvalidPipeline(errors) = &self.0 {
            body["errors"] = json!(errors.iter().map(ToString::to_string).collect::<Vec<_>>());
        }
        (status, Json(body)).into_response()
    }
}

type ApiResult = Result<Json<Value>, ApiError>;

async fn health(State(plane): State<ControlPlane>) -> Json<Value> {
    Json(json!({"ok": true, "pid": std::process::id(), "data_dir": plane.data_dir()}))
}

#[derive(Deserialize)]
struct ChangesQuery {
    #[serde(default)]
    after: u64,
    #[serde(default)]
    timeout_ms: Option<u64>,
}

/// Long poll: answers once anything changed after version `after`.
async fn changes(State(plane): State<ControlPlane>, Query(q): Query<ChangesQuery>) -> Json<Value> {
    let mut rx = plane.changes();
    let timeout = Duration::from_millis(q.timeout_ms.unwrap_or(25_000).min(60_000));
    let _ = tokio::time::timeout(timeout, rx.wait_for(|v| *v > q.after)).await;
    let version = *rx.borrow();
    Json(json!({"version": version}))
}

#[derive(Deserialize)]
struct StartRequest {
    file: PathBuf,
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    variables: BTreeMap<String, String>,
}

async fn start(
    State(plane): State<ControlPlane>,
    Json(req): Json<StartRequest>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let text = match req.text {
        Some(text) => text,
        None => tokio::fs::read_to_string(&req.file)
            .await
            .map_err(|e| ControlError::io(&req.file, e))?,
    };
    let id = plane.start_execution(req.file, text, req.variables).await?;
    Ok((StatusCode::CREATED, Json(json!({"id": id}))))
}

#[derive(Deserialize)]
struct ListQuery {
    pipeline: Option<String>,
    limit: Option<usize>,
}

async fn list(State(plane): State<ControlPlane>, Query(q): Query<ListQuery>) -> ApiResult {
    let executions = plane
        .executions(q.pipeline.as_deref(), q.limit.unwrap_or(50))
        .await;
    let mut out = Vec::new();
    for execution in &executions {
        let loaded = plane.execution(&execution.id).await.and_then(|(_, l)| l);
        out.push(execution_json(execution, loaded.as_deref()));
    }
    Ok(Json(Value::Array(out)))
}

async fn status(State(plane): State<ControlPlane>, Path(id): Path<String>) -> ApiResult {
    let (execution, loaded) = plane
        .execution(&id)
        .await
        .ok_or_else(|| ControlError::NotFound(id.clone()))?;
    let mut value = execution_json(&execution, loaded.as_deref());
    // Details of each action's latest attempt: parameter versions, test reports.
    let details = plane
        .store()
        .action_details(&id)
        .await
        .map_err(ControlError::from)?;
    for stage in value["stages"].as_array_mut().into_iter().flatten() {
        let stage_name = stage["name"].as_str().unwrap_or_default().to_string();
        for action in stage["actions"].as_array_mut().into_iter().flatten() {
            let attempt = action["attempt"].as_i64().unwrap_or(0);
            let name = action["name"].as_str().unwrap_or_default().to_string();
            for d in details
                .iter()
                .filter(|d| d.stage == stage_name && d.action == name && d.attempt == attempt)
            {
                if let Ok(body) = serde_json::from_str::<Value>(&d.body) {
                    action[d.kind.as_str()] = body;
                }
            }
        }
    }
    Ok(Json(value))
}

#[derive(Deserialize)]
struct LogsQuery {
    stage: Option<String>,
    action: Option<String>,
    #[serde(default)]
    after: i64,
    limit: Option<i64>,
}

async fn logs(
    State(plane): State<ControlPlane>,
    Path(id): Path<String>,
    Query(q): Query<LogsQuery>,
) -> ApiResult {
    plane
        .execution(&id)
        .await
        .ok_or_else(|| ControlError::NotFound(id.clone()))?;
    let filter = match (&q.stage, &q.action) {
        (Some(s), Some(a)) => Some((s.as_str(), a.as_str())),
        _ => None,
    };
    let lines = plane
        .logs(
            &id,
            filter,
            q.after,
            q.limit.unwrap_or(5000).clamp(1, 50_000),
        )
        .await?;
    let next = lines.last().map_or(q.after, |l| l.seq);
    let lines: Vec<Value> = lines
        .iter()
        .map(|l| json!({"seq": l.seq, "stage": l.stage, "action": l.action, "attempt": l.attempt, "at": rfc3339(l.at), "line": l.line}))
        .collect();
    Ok(Json(json!({"lines": lines, "next": next})))
}

async fn approvals(State(plane): State<ControlPlane>, Path(id): Path<String>) -> ApiResult {
    let records = plane.approvals(&id).await?;
    let records: Vec<Value> = records
        .iter()
        .map(|r| json!({"stage": r.stage, "action": r.action, "attempt": r.attempt, "decision": r.decision, "by": r.by, "at": rfc3339(r.at), "comment": r.comment}))
        .collect();
    Ok(Json(Value::Array(records)))
}

#[derive(Deserialize)]
struct DecideRequest {
    stage: String,
    action: String,
    /// `Approved` or `Rejected`.
    decision: String,
    #[serde(default)]
    comment: Option<String>,
    #[serde(default)]
    by: Option<String>,
}

async fn decide(
    State(plane): State<ControlPlane>,
    Path(id): Path<String>,
    Json(req): Json<DecideRequest>,
) -> ApiResult {
    let approve = match req.decision.as_str() {
        "Approved" => true,
        "Rejected" => false,
        other => {
            return Err(ControlError::BadRequest(format!(
                "decision must be Approved or Rejected, not {other}"
            ))
            .into());
        }
    };
    let by = req.by.unwrap_or_else(|| "anonymous".to_string());
    plane
        .decide(&id, &req.stage, &req.action, approve, &by, req.comment)
        .await?;
    Ok(Json(json!({"ok": true})))
}

#[derive(Deserialize)]
struct RetryRequest {
    stage: String,
    #[serde(default)]
    all_actions: bool,
}

async fn retry(
    State(plane): State<ControlPlane>,
    Path(id): Path<String>,
    Json(req): Json<RetryRequest>,
) -> ApiResult {
    plane.retry(&id, &req.stage, req.all_actions).await?;
    Ok(Json(json!({"ok": true})))
}

#[derive(Deserialize)]
struct StopRequest {
    #[serde(default)]
    abandon: bool,
    #[serde(default)]
    reason: Option<String>,
}

async fn stop(
    State(plane): State<ControlPlane>,
    Path(id): Path<String>,
    Json(req): Json<StopRequest>,
) -> ApiResult {
    plane.stop(&id, req.abandon, req.reason).await?;
    Ok(Json(json!({"ok": true})))
}
