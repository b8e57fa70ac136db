//! Environments and services in the HTTP API: apply, deploy, rollback,
//! status, control of a progressive deployment (promote, abort, pause,
//! resume), and asking the server to shut down. Changing an environment
//! needs an operator grant that covers it; shutting down needs admin.

use std::sync::Mutex;

use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::{Json, Router};

use crate::api::ApiError;
use crate::control::ControlPlane;
use crate::error::ControlError;
use crate::guard::Caller;
use gantry_api::{
    Applied, ApplyRequest, DeployRequest, DeploymentAnswer, EnvironmentDown, EnvironmentStatus,
    PromoteRequest, RevisionDetail, RollbackRequest, ShiftAnswer, ShutdownAnswer, ShutdownRequest,
};
use gantry_auth::{Permission, Target};
use gantry_deploy::ShiftCommand;

pub(crate) fn routes() -> Router<ControlPlane> {
    Router::new()
        .route("/api/v1/apply", post(apply))
        .route("/api/v1/environments", get(environments))
        .route("/api/v1/environments/{env}", get(status))
        .route("/api/v1/environments/{env}/down", post(down))
        .route(
            "/api/v1/environments/{env}/services/{service}/revisions/{revision}",
            get(revision),
        )
        .route(
            "/api/v1/environments/{env}/services/{service}/deploy",
            post(deploy),
        )
        .route(
            "/api/v1/environments/{env}/services/{service}/rollback",
            post(rollback),
        )
        .route(
            "/api/v1/environments/{env}/services/{service}/promote",
            post(promote),
        )
        .route(
            "/api/v1/environments/{env}/services/{service}/abort",
            post(abort),
        )
        .route(
            "/api/v1/environments/{env}/services/{service}/pause",
            post(pause),
        )
        .route(
            "/api/v1/environments/{env}/services/{service}/resume",
            post(resume),
        )
        .route("/api/v1/shutdown", post(shutdown))
}

async fn apply(
    State(plane): State<ControlPlane>,
    caller: Caller,
    Json(req): Json<ApplyRequest>,
) -> Result<Json<Applied>, ApiError> {
    let text = req.text.ok_or(ControlError::TextRequired)?;
    crate::api::require_environments(&caller, &req.file, &text, &req.includes)?;
    // Registering a pipeline's triggers lets it start by itself later: the
    // caller must be allowed to start it.
    let pipeline = gantry_spec::parse_document(&req.file.display().to_string(), &text)
        .map_err(ControlError::InvalidPipeline)?
        .pipeline;
    if let Some(pipeline) = &pipeline {
        caller.require(
            Permission::Operate,
            Target::pipeline(pipeline.name.as_str()),
        )?;
    }
    let mut summary = plane.apply_file(&req.file, &text, &req.includes).await?;
    if let Some(line) = plane
        .register_triggers(&req.file, &text, &req.includes, Some(&caller.identity.name))
        .await?
    {
        summary.push(line);
    }
    Ok(Json(Applied { applied: summary }))
}

/// The names of the environments applied to the server.
async fn environments(
    State(plane): State<ControlPlane>,
    caller: Caller,
) -> Result<Json<Vec<String>>, ApiError> {
    caller.require(Permission::Read, Target::any())?;
    Ok(Json(plane.deployer().environments().await))
}

async fn status(
    State(plane): State<ControlPlane>,
    caller: Caller,
    Path(env): Path<String>,
) -> Result<Json<EnvironmentStatus>, ApiError> {
    caller.require(Permission::Read, Target::any())?;
    let status = plane
        .deployer()
        .environment_status(&env)
        .await
        .map_err(ControlError::from)?;
    Ok(Json(status))
}

/// One revision of a service, its definition as named fields (to compare
/// two: the console's revision diff).
async fn revision(
    State(plane): State<ControlPlane>,
    caller: Caller,
    Path((env, service, revision)): Path<(String, String, u64)>,
) -> Result<Json<RevisionDetail>, ApiError> {
    caller.require(Permission::Read, Target::any())?;
    let detail = plane
        .deployer()
        .revision_detail(&env, &service, revision)
        .await
        .map_err(ControlError::from)?;
    Ok(Json(detail))
}

/// Collects a deployment's log for the response.
#[derive(Default)]
struct Collected(Mutex<Vec<String>>);

impl gantry_deploy::DeployLog for Collected {
    fn line(&self, line: &str) {
        tracing::info!(message = line);
        if let Ok(mut lines) = self.0.lock() {
            lines.push(line.to_string());
        }
    }
}

impl Collected {
    fn lines(&self) -> Vec<String> {
        self.0.lock().map(|l| l.clone()).unwrap_or_default()
    }
}

async fn deploy(
    State(plane): State<ControlPlane>,
    caller: Caller,
    Path((env, service)): Path<(String, String)>,
    Json(req): Json<DeployRequest>,
) -> Result<Json<DeploymentAnswer>, ApiError> {
    caller.require(Permission::Operate, Target::environment(&env))?;
    let log = Collected::default();
    let result = plane
        .deployer()
        .deploy(&env, &service, &req.image, "gantry deploy", &log)
        .await;
    respond(result, &log)
}

async fn rollback(
    State(plane): State<ControlPlane>,
    caller: Caller,
    Path((env, service)): Path<(String, String)>,
    Json(req): Json<RollbackRequest>,
) -> Result<Json<DeploymentAnswer>, ApiError> {
    caller.require(Permission::Operate, Target::environment(&env))?;
    let log = Collected::default();
    let result = plane
        .deployer()
        .rollback(&env, &service, req.to, &log)
        .await;
    respond(result, &log)
}

/// A deployment's answer: its outcome and log, or its error and log.
fn respond(
    result: Result<gantry_deploy::DeployOutcome, gantry_deploy::DeployError>,
    log: &Collected,
) -> Result<Json<DeploymentAnswer>, ApiError> {
    match result {
        Ok(outcome) => Ok(Json(DeploymentAnswer::Succeeded {
            log: log.lines(),
            outcome: gantry_api::DeployOutcome {
                environment: outcome.environment,
                image: outcome.image,
                replicas: outcome.replicas,
                revision: outcome.revision,
                service: outcome.service,
            },
        })),
        Err(error) => {
            let known = matches!(
                error,
                gantry_deploy::DeployError::UnknownEnvironment(_)
                    | gantry_deploy::DeployError::UnknownService { .. }
                    | gantry_deploy::DeployError::UnknownRevision { .. }
            );
            if known {
                return Err(ControlError::from(error).into());
            }
            Ok(Json(DeploymentAnswer::Failed {
                code: error.code().to_string(),
                error: error.to_string(),
                log: log.lines(),
            }))
        }
    }
}

/// Sends a command to the progressive deployment of a service; an operator
/// of the environment's right, as deploying is.
async fn control(
    plane: &ControlPlane,
    caller: &Caller,
    env: &str,
    service: &str,
    command: ShiftCommand,
) -> Result<Json<ShiftAnswer>, ApiError> {
    caller.require(Permission::Operate, Target::environment(env))?;
    let progress = plane
        .deployer()
        .control_shift(env, service, command)
        .await
        .map_err(ControlError::from)?;
    Ok(Json(ShiftAnswer {
        deployment: progress.deployment,
        from_revision: progress.from_revision,
        paused: progress.paused,
        step: progress.step as u64,
        steps: progress.steps as u64,
        to_revision: progress.to_revision,
        waiting: progress.waiting,
        weight: progress.weight,
    }))
}

async fn promote(
    State(plane): State<ControlPlane>,
    caller: Caller,
    Path((env, service)): Path<(String, String)>,
    Json(req): Json<PromoteRequest>,
) -> Result<Json<ShiftAnswer>, ApiError> {
    let command = ShiftCommand::Promote { full: req.full };
    control(&plane, &caller, &env, &service, command).await
}

async fn abort(
    State(plane): State<ControlPlane>,
    caller: Caller,
    Path((env, service)): Path<(String, String)>,
) -> Result<Json<ShiftAnswer>, ApiError> {
    let command = ShiftCommand::Abort {
        by: caller.identity.name.clone(),
    };
    control(&plane, &caller, &env, &service, command).await
}

async fn pause(
    State(plane): State<ControlPlane>,
    caller: Caller,
    Path((env, service)): Path<(String, String)>,
) -> Result<Json<ShiftAnswer>, ApiError> {
    control(&plane, &caller, &env, &service, ShiftCommand::Pause).await
}

async fn resume(
    State(plane): State<ControlPlane>,
    caller: Caller,
    Path((env, service)): Path<(String, String)>,
) -> Result<Json<ShiftAnswer>, ApiError> {
    control(&plane, &caller, &env, &service, ShiftCommand::Resume).await
}

async fn down(
    State(plane): State<ControlPlane>,
    caller: Caller,
    Path(env): Path<String>,
) -> Result<Json<EnvironmentDown>, ApiError> {
    caller.require(Permission::Operate, Target::environment(&env))?;
    let stopped = plane
        .deployer()
        .down(&env)
        .await
        .map_err(ControlError::from)?;
    Ok(Json(EnvironmentDown {
        environment: env,
        stopped_replicas: stopped as u64,
    }))
}

async fn shutdown(
    State(plane): State<ControlPlane>,
    caller: Caller,
    Json(req): Json<ShutdownRequest>,
) -> Result<Json<ShutdownAnswer>, ApiError> {
    caller.require(Permission::Admin, Target::any())?;
    let mut stopped = 0;
    if req.stop_services {
        for env in plane.deployer().environments().await {
            stopped += plane
                .deployer()
                .down(&env)
                .await
                .map_err(ControlError::from)?;
        }
    }
    plane.request_shutdown();
    Ok(Json(ShutdownAnswer {
        ok: true,
        stopped_replicas: stopped as u64,
    }))
}
