//! The embedded registry in the HTTP API: garbage collection, admin only.

use axum::extract::{Extension, State};
use axum::routing::post;
use axum::{Json, Router};
use gantry_api::{RegistryGcAnswer, RegistryGcRequest};
use gantry_auth::{Permission, Target};

use crate::api::ApiError;
use crate::control::ControlPlane;
use crate::guard::{AuditNote, Caller};

pub(crate) fn routes() -> Router<ControlPlane> {
    Router::new().route("/api/v1/registry/gc", post(gc))
}

/// `POST /api/v1/registry/gc`: removes what nothing needs (or, with
/// `dry_run`, says what it would remove).
async fn gc(
    State(plane): State<ControlPlane>,
    caller: Caller,
    Json(request): Json<RegistryGcRequest>,
) -> Result<(Extension<AuditNote>, Json<RegistryGcAnswer>), ApiError> {
    caller.require(Permission::Admin, Target::any())?;
    let answer = plane.collect_registry_garbage(&request).await?;
    let note = format!(
        "{}{} manifests, {} blobs, {} files, {} images, {} bytes",
        if answer.dry_run { "dry run: " } else { "" },
        answer.manifests.len(),
        answer.blobs.len(),
        answer.files.len(),
        answer.images.len(),
        answer.bytes_freed
    );
    Ok((Extension(AuditNote(note)), Json(answer)))
}
