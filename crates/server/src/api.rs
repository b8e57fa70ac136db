//! The HTTP JSON API. Thin: each handler parses its input, checks the
//! caller's role ([`Caller::require`]), calls the control plane, and maps the
//! answer. Errors are [`gantry_api::ErrorBody`]: `{"code", "message"}` with
//! a stable `code` (and `errors` for an invalid pipeline file, and
//! `canonical_code` beside a legacy `code`). Every route sits behind
//! [`crate::guard::check`]: host, origin, token, audit.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::extract::{Extension, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};

use crate::clock::rfc3339;
use crate::control::{ControlPlane, ExecutionFilter};
use crate::error::ControlError;
use crate::guard::{AuditNote, Caller, Guard, HostPolicy};
use crate::view::{add_decisions, add_details, execution_view};
use gantry_api::{
    Ack, ApprovalRecordView, Changes, ChangesQuery, DecideRequest, ExecutionView, ExecutionsQuery,
    LogLineView, LogsPage, LogsQuery, RetryRequest, StartRequest, Started, StopRequest,
};
use gantry_auth::{Permission, Target};

/// The API with its trust boundary: every route checks the host, the
/// origin and the token (see [`crate::guard`]) and audits what changes.
pub fn router(plane: ControlPlane, hosts: HostPolicy) -> Router {
    let console = crate::console::router(plane.clone(), hosts.clone());
    let guard = Guard {
        auth: plane.auth().clone(),
        hosts: std::sync::Arc::new(hosts),
    };
    routes(plane.clone())
        .layer(axum::middleware::from_fn_with_state(plane, store_gate))
        .layer(axum::middleware::from_fn_with_state(
            guard,
            crate::guard::check,
        ))
        .merge(console)
}

/// Refuses changes (every method but GET and HEAD) while the database is
/// known to be unreachable, before they reach a handler: an engine event
/// accepted then would wait in memory for the database. A change asked for
/// while it is marked unreachable probes it first (2 s), so the first
/// request after it is back goes through.
async fn store_gate(
    State(plane): State<ControlPlane>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let reads = matches!(
        *request.method(),
        axum::http::Method::GET | axum::http::Method::HEAD
    );
    let db = plane.store().db();
    if !reads && !db.available() && !db.probe(std::time::Duration::from_secs(2)).await {
        return ApiError(ControlError::StoreUnavailable).into_response();
    }
    let response = next.run(request).await;
    let code = response.extensions().get::<crate::guard::ErrorCode>();
    if code.is_some_and(|c| c.0 == "store.unavailable") {
        db.set_available(false);
    }
    response
}

/// The API's routes WITHOUT the trust boundary. Every handler expects the
/// [`Caller`] that [`crate::guard::check`] puts into the request, and
/// refuses without one; serve [`router`], never this. Public for the
/// benchmark that measures what the boundary costs (`bench/auth.sh`).
pub fn routes(plane: ControlPlane) -> Router {
    Router::new()
        .route("/api/v1/health", get(health))
        .route("/api/v1/openapi.json", get(openapi))
        .route(
            "/api/v1/executions/{id}/approvals/{stage}/{action}",
            get(approval),
        )
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
        .merge(crate::api_agents::routes())
        .merge(crate::api_pipelines::routes())
        .merge(crate::api_deploy::routes())
        .merge(crate::api_auth::routes())
        .merge(crate::api_triggers::routes())
        .merge(crate::api_registry::routes())
        .merge(crate::api_images::routes())
        .merge(crate::api_env_logs::routes())
        .merge(crate::api_metrics::routes())
        .with_state(plane)
}

pub struct ApiError(ControlError);

impl From<ControlError> for ApiError {
    /// An error caused by an unreachable database answers as
    /// `store.unavailable` (503), whatever store it came from.
    fn from(e: ControlError) -> Self {
        if gantry_db::unavailable_in(&e) {
            ApiError(ControlError::StoreUnavailable)
        } else {
            ApiError(e)
        }
    }
}

impl From<gantry_auth::AuthError> for ApiError {
    fn from(e: gantry_auth::AuthError) -> Self {
        ApiError(ControlError::Auth(e))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status =
            StatusCode::from_u16(self.0.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        // A legacy code stays in `code` (clients match it), the canonical
        // one goes beside it.
        let canonical = self.0.code();
        let code = self.0.legacy_code().unwrap_or(canonical);
        let body = gantry_api::ErrorBody {
            code: code.to_string(),
            canonical_code: (code != canonical).then(|| canonical.to_string()),
            message: self.0.to_string(),
            errors: match &self.0 {
                ControlError::InvalidPipeline(errors) => {
                    errors.iter().map(ToString::to_string).collect()
                }
                _ => Vec::new(),
            },
        };
        let mut response = (status, Json(body)).into_response();
        response
            .extensions_mut()
            .insert(crate::guard::ErrorCode(code));
        response
    }
}

/// Liveness, answered without a token: it says only that the server is up.
async fn health() -> Json<Ack> {
    Json(Ack::OK)
}

/// This API's OpenAPI 3.1 description, made once from gantry-api's route
/// table and types.
async fn openapi(caller: Caller) -> Result<Json<&'static serde_json::Value>, ApiError> {
    caller.require(Permission::Read, Target::any())?;
    static DOCUMENT: std::sync::OnceLock<serde_json::Value> = std::sync::OnceLock::new();
    Ok(Json(DOCUMENT.get_or_init(gantry_api::openapi::document)))
}

/// Long poll: answers once anything changed after version `after`.
async fn changes(
    State(plane): State<ControlPlane>,
    caller: Caller,
    Query(q): Query<ChangesQuery>,
) -> Result<Json<Changes>, ApiError> {
    caller.require(Permission::Read, Target::any())?;
    let mut rx = plane.changes();
    let timeout = Duration::from_millis(q.timeout_ms.unwrap_or(25_000).min(60_000));
    let _ = tokio::time::timeout(timeout, rx.wait_for(|v| *v > q.after)).await;
    let version = *rx.borrow();
    Ok(Json(Changes { version }))
}

/// Checks that `caller` may operate every environment of a project (a
/// file and its includes), and returns their names.
pub(crate) fn require_environments(
    caller: &Caller,
    file: &std::path::Path,
    text: &str,
    includes: &BTreeMap<String, String>,
) -> Result<Vec<String>, ApiError> {
    let mut environments = Vec::new();
    for (name, text) in crate::control::project_files(file, text, includes)? {
        let document =
            gantry_spec::parse_document(&name, &text).map_err(ControlError::InvalidPipeline)?;
        environments.extend(document.environments.keys().map(ToString::to_string));
    }
    for env in &environments {
        caller.require(Permission::Operate, Target::environment(env))?;
    }
    Ok(environments)
}

async fn start(
    State(plane): State<ControlPlane>,
    caller: Caller,
    Json(req): Json<StartRequest>,
) -> Result<(StatusCode, Extension<AuditNote>, Json<Started>), ApiError> {
    let text = req.text.ok_or(ControlError::TextRequired)?;
    let pipeline = gantry_spec::pipeline::parse_pipeline(&req.file.display().to_string(), &text)
        .map_err(ControlError::InvalidPipeline)?;
    let name = pipeline.name.to_string();
    caller.require(Permission::Operate, Target::pipeline(&name))?;
    require_environments(&caller, &req.file, &text, &req.includes)?;
    let id = plane
        .start_execution(
            req.file,
            text,
            req.includes,
            req.variables,
            Some(caller.identity.name.clone()),
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        Extension(AuditNote(format!("pipeline {name}, execution {id}"))),
        Json(Started { id }),
    ))
}

/// The pipeline of an execution, for scoped grants, once the caller is known
/// to hold `role` at all (so a caller without it learns nothing).
async fn pipeline_of(
    plane: &ControlPlane,
    caller: &Caller,
    role: gantry_auth::Role,
    id: &str,
) -> Result<String, ApiError> {
    if !caller.identity.has_role(role) {
        caller.require(Permission::Operate, Target::any())?;
    }
    let (execution, _) = plane
        .execution(id)
        .await
        .ok_or_else(|| ControlError::NotFound(id.to_string()))?;
    Ok(execution.pipeline)
}

async fn list(
    State(plane): State<ControlPlane>,
    caller: Caller,
    Query(q): Query<ExecutionsQuery>,
) -> Result<Json<Vec<ExecutionView>>, ApiError> {
    caller.require(Permission::Read, Target::any())?;
    let filters = [&q.status, &q.trigger, &q.commit];
    if filters
        .iter()
        .any(|f| f.as_ref().is_some_and(|f| f.chars().count() > 64))
    {
        return Err(ControlError::BadRequest("a filter holds at most 64 characters".into()).into());
    }
    let filter = ExecutionFilter {
        pipeline: q.pipeline.as_deref(),
        status: q.status.as_deref().filter(|s| !s.is_empty()),
        trigger: q.trigger.as_deref().filter(|s| !s.is_empty()),
        commit: q.commit.as_deref().filter(|s| !s.is_empty()),
    };
    let executions = plane
        .executions_page(&filter, q.offset.unwrap_or(0), q.limit.unwrap_or(50))
        .await;
    let out = executions
        .iter()
        .map(|(execution, loaded)| execution_view(execution, loaded.as_deref()))
        .collect();
    Ok(Json(out))
}

async fn status(
    State(plane): State<ControlPlane>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<ExecutionView>, ApiError> {
    caller.require(Permission::Read, Target::any())?;
    let (execution, loaded) = plane
        .execution(&id)
        .await
        .ok_or_else(|| ControlError::NotFound(id.clone()))?;
    let mut view = execution_view(&execution, loaded.as_deref());
    // Details of each action's latest attempt: parameter versions, test reports.
    let details = plane
        .store()
        .action_details(&id)
        .await
        .map_err(ControlError::from)?;
    add_details(&mut view, &details);
    add_decisions(&mut view, &plane.approvals(&id).await?);
    Ok(Json(view))
}

async fn logs(
    State(plane): State<ControlPlane>,
    caller: Caller,
    Path(id): Path<String>,
    Query(q): Query<LogsQuery>,
) -> Result<Json<LogsPage>, ApiError> {
    caller.require(Permission::Read, Target::any())?;
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
    let lines = lines
        .into_iter()
        .map(|l| LogLineView {
            seq: l.seq,
            at: rfc3339(l.at),
            stage: l.stage,
            action: l.action,
            attempt: l.attempt,
            line: l.line,
        })
        .collect();
    Ok(Json(LogsPage { lines, next }))
}

async fn approvals(
    State(plane): State<ControlPlane>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Vec<ApprovalRecordView>>, ApiError> {
    caller.require(Permission::Read, Target::any())?;
    let records = plane.approvals(&id).await?;
    let records = records
        .into_iter()
        .map(|r| ApprovalRecordView {
            action: r.action,
            at: rfc3339(r.at),
            attempt: r.attempt,
            by: r.by,
            comment: r.comment,
            decision: r.decision,
            stage: r.stage,
        })
        .collect();
    Ok(Json(records))
}

/// One approval action: what it waits for (its binding and fingerprint),
/// its policy, and the votes so far.
async fn approval(
    State(plane): State<ControlPlane>,
    caller: Caller,
    Path((id, stage, action)): Path<(String, String, String)>,
) -> Result<Json<gantry_api::ApprovalView>, ApiError> {
    caller.require(Permission::Read, Target::any())?;
    let view = plane.approval(&id, &stage, &action).await?;
    Ok(Json(approval_view(view)))
}

/// The control plane's view of an approval, as the API shows it.
fn approval_view(view: crate::control::ApprovalView) -> gantry_api::ApprovalView {
    let binding = view.binding;
    gantry_api::ApprovalView {
        action: view.action,
        attempt: view.attempt,
        binding: gantry_api::ApprovalBinding {
            artifacts: binding.artifacts,
            commits: binding.commits,
            images: binding.images,
            // Stored as the recorded JSON; one that no longer reads is
            // left out, as the execution view leaves it out.
            parameters: binding
                .parameters
                .into_iter()
                .filter_map(|(at, records)| Some((at, serde_json::from_value(records).ok()?)))
                .collect(),
        },
        fingerprint: view.fingerprint,
        policy: gantry_api::ApprovalPolicyView {
            allow_self_approval: view.policy.allow_self_approval,
            require_comment: view.policy.require_comment,
            required: view.policy.required,
            roles: view
                .policy
                .roles
                .iter()
                .map(|r| r.as_str().to_string())
                .collect(),
            users: view.policy.users,
            auto_approve_after: view
                .auto_approve_after
                .map(gantry_spec::duration::format_duration),
        },
        stage: view.stage,
        started_by: view.started_by,
        status: view.status.map(|s| s.as_str().to_string()),
        votes: view
            .votes
            .into_iter()
            .map(|v| gantry_api::ApprovalVoteView {
                action: v.action,
                at: v.at,
                attempt: v.attempt,
                binding: v.binding,
                by: v.by,
                comment: v.comment,
                decision: v.decision,
                execution_id: v.execution_id,
                stage: v.stage,
            })
            .collect(),
    }
}

async fn decide(
    State(plane): State<ControlPlane>,
    caller: Caller,
    Path(id): Path<String>,
    Json(req): Json<DecideRequest>,
) -> Result<(Extension<AuditNote>, Json<gantry_api::DecisionAnswer>), ApiError> {
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
    // Whoever holds no approver grant at all is refused before anything
    // about the execution is looked up; the policy checks the scope.
    if !caller.identity.has_role(gantry_auth::Role::Approver) {
        caller.require(Permission::Approve, Target::any())?;
    }
    if req.comment.as_ref().is_some_and(|c| c.len() > 4096) {
        return Err(ControlError::BadRequest("a comment holds at most 4096 bytes".into()).into());
    }
    let outcome = plane
        .decide(
            &id,
            &caller.identity,
            crate::control::Decision {
                stage: &req.stage,
                action: &req.action,
                approve,
                comment: req.comment,
                expected: req.fingerprint.as_deref(),
            },
        )
        .await?;
    Ok((
        Extension(AuditNote(format!(
            "{} {}/{} of {id}: {}",
            req.decision, req.stage, req.action, outcome.status
        ))),
        Json(gantry_api::DecisionAnswer {
            ok: true,
            by: caller.identity.name.clone(),
            outcome,
        }),
    ))
}

async fn retry(
    State(plane): State<ControlPlane>,
    caller: Caller,
    Path(id): Path<String>,
    Json(req): Json<RetryRequest>,
) -> Result<Json<Ack>, ApiError> {
    let pipeline = pipeline_of(&plane, &caller, gantry_auth::Role::Operator, &id).await?;
    caller.require(Permission::Operate, Target::pipeline(&pipeline))?;
    plane.retry(&id, &req.stage, req.all_actions).await?;
    Ok(Json(Ack::OK))
}

async fn stop(
    State(plane): State<ControlPlane>,
    caller: Caller,
    Path(id): Path<String>,
    Json(req): Json<StopRequest>,
) -> Result<Json<Ack>, ApiError> {
    let pipeline = pipeline_of(&plane, &caller, gantry_auth::Role::Operator, &id).await?;
    caller.require(Permission::Operate, Target::pipeline(&pipeline))?;
    plane.stop(&id, req.abandon, req.reason).await?;
    Ok(Json(Ack::OK))
}
