//! Triggers in the HTTP API: the webhook endpoint `POST /hooks/{pipeline}`
//! (authenticated by the delivery's signature, not by a token; the guard
//! still checks its host and origin) and `GET /api/v1/triggers`.
//!
//! The endpoint refuses a body over `MAX_BODY_BYTES` (413) by its
//! `Content-Length` before reading, and while reading; a body that takes
//! over [`BODY_TIMEOUT`] is a 408. Every delivery is audited with its
//! outcome, under the principal `webhook:PROVIDER` once authenticated.

use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use gantry_api::{ErrorBody, TriggerView};
use gantry_auth::{AuditRecord, Permission, Target};
use gantry_triggers::{MAX_BODY_BYTES, TriggerError};

use crate::api::ApiError;
use crate::control::ControlPlane;
use crate::guard::{Caller, ErrorCode};
use crate::triggers::{HookRequest, WebhookError};

/// The longest a delivery's body may take to arrive.
const BODY_TIMEOUT: Duration = Duration::from_secs(10);

pub(crate) fn routes() -> Router<ControlPlane> {
    Router::new()
        .route("/hooks/{pipeline}", post(hook))
        .route("/api/v1/triggers", get(list))
}

async fn list(
    State(plane): State<ControlPlane>,
    caller: Caller,
) -> Result<Json<Vec<TriggerView>>, ApiError> {
    caller.require(Permission::Read, Target::any())?;
    Ok(Json(plane.trigger_views().await?))
}

async fn hook(
    State(plane): State<ControlPlane>,
    Path(pipeline): Path<String>,
    request: Request,
) -> Response {
    let remote = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    let provider = gantry_triggers::webhook::detect_provider(request.headers())
        .map(|p| p.as_str())
        .unwrap_or("unknown");
    let (parts, body) = request.into_parts();
    let result = async {
        let declared = parts
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        if let Some(size) = declared.filter(|&n| n > MAX_BODY_BYTES) {
            return Err(WebhookError::from(TriggerError::BodyTooLarge {
                size,
                limit: MAX_BODY_BYTES,
            }));
        }
        // One byte over the limit is enough to know it is too large.
        let body =
            tokio::time::timeout(BODY_TIMEOUT, axum::body::to_bytes(body, MAX_BODY_BYTES + 1))
                .await
                .map_err(|_| WebhookError::BodyTimeout(BODY_TIMEOUT.as_secs()))?
                .map_err(|_| TriggerError::BodyTooLarge {
                    size: MAX_BODY_BYTES + 1,
                    limit: MAX_BODY_BYTES,
                })?;
        plane
            .receive_webhook(HookRequest {
                pipeline: &pipeline,
                headers: &parts.headers,
                body: &body,
            })
            .await
    }
    .await;
    let (response, principal, outcome, target) = match result {
        Ok(reply) => {
            let status = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::OK);
            let target = format!(
                "pipeline {pipeline}, {provider} delivery {}: {}",
                reply.answer.delivery.as_deref().unwrap_or("without an id"),
                reply.answer.status
            );
            (
                (status, Json(reply.answer)).into_response(),
                Some(format!("webhook:{provider}")),
                "ok",
                target,
            )
        }
        Err(error) => {
            let status = StatusCode::from_u16(error.http_status())
                .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let code = error.code();
            let mut response =
                (status, Json(ErrorBody::new(code, error.to_string()))).into_response();
            response.extensions_mut().insert(ErrorCode(code));
            (response, None, code, format!("pipeline {pipeline}"))
        }
    };
    // Written off the answer's path: a forge wants its answer fast.
    let auth = plane.auth().clone();
    let record = AuditRecord {
        seq: 0,
        at_ms: gantry_clock::now_ms(),
        principal,
        remote: remote.map(|r| r.to_string()),
        action: format!("POST /hooks/{pipeline}"),
        target: Some(target),
        outcome: outcome.to_string(),
    };
    tokio::spawn(async move {
        if let Err(error) = auth.audit(&record).await {
            tracing::error!(%error, "Writing the audit log failed.");
        }
    });
    response
}
