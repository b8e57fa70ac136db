//! The embedded registry's images in the HTTP API: list and inspect (any
//! grant), promote (operator; audited). The registry answers what it holds
//! (`gantry_registry`'s catalog); the control plane adds which services
//! run each digest (their current revisions).

use std::collections::{BTreeMap, BTreeSet};

use axum::extract::{Extension, Query, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use gantry_api::{
    ImageBlobView, ImageConfigSummary, ImageDetailView, ImageQuery, ImageUse, ImageView,
    ImagesQuery, PromoteImageAnswer, PromoteImageRequest,
};
use gantry_auth::{Permission, Target};
use gantry_registry::{ImageBlob, ImageName, Registry};
use serde_json::Value;

use crate::api::ApiError;
use crate::control::ControlPlane;
use crate::error::ControlError;
use crate::guard::{AuditNote, Caller};

pub(crate) fn routes() -> Router<ControlPlane> {
    Router::new()
        .route("/api/v1/images", get(list))
        .route("/api/v1/images/inspect", get(inspect))
        .route("/api/v1/images/promote", post(promote))
}

fn registry(plane: &ControlPlane) -> Result<&Registry, ControlError> {
    plane
        .embedded_registry()
        .ok_or_else(|| ControlError::Internal("the embedded registry is not open".into()))
}

/// Digest → the services whose current revision runs it (the deployer's
/// memory: listing images asks no runtime).
async fn running(plane: &ControlPlane) -> BTreeMap<String, BTreeSet<ImageUse>> {
    let mut uses: BTreeMap<String, BTreeSet<ImageUse>> = BTreeMap::new();
    for (environment, service, image) in plane.deployer().current_images().await {
        if let Some((_, digest)) = image.split_once('@') {
            uses.entry(digest.to_string())
                .or_default()
                .insert(ImageUse {
                    environment,
                    service,
                });
        }
    }
    uses
}

fn uses_of(uses: &BTreeMap<String, BTreeSet<ImageUse>>, digest: &str) -> Vec<ImageUse> {
    uses.get(digest)
        .map(|s| s.iter().cloned().collect())
        .unwrap_or_default()
}

/// `GET /api/v1/images[?repository=REPO]`.
async fn list(
    State(plane): State<ControlPlane>,
    caller: Caller,
    Query(q): Query<ImagesQuery>,
) -> Result<Json<Vec<ImageView>>, ApiError> {
    caller.require(Permission::Read, Target::any())?;
    let images = registry(&plane)?
        .images(q.repository.as_deref())
        .await
        .map_err(ControlError::from)?;
    let uses = running(&plane).await;
    Ok(Json(
        images
            .into_iter()
            .map(|i| ImageView {
                running: uses_of(&uses, &i.digest),
                repository: i.repository,
                tag: i.tag,
                digest: i.digest,
                media_type: i.media_type,
                size: i.size,
                updated_at: crate::clock::rfc3339(i.updated_at),
            })
            .collect(),
    ))
}

fn blob_view(b: ImageBlob) -> ImageBlobView {
    ImageBlobView {
        digest: b.digest,
        media_type: b.media_type,
        size: b.size,
    }
}

/// The strings of a JSON array (`Entrypoint`, `Cmd`), or none.
fn strings(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

fn text(v: Option<&Value>) -> Option<String> {
    v.and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(String::from)
}

/// The parts of an OCI/Docker image config people ask about; `Env` by
/// name only.
fn summary(config: &Value) -> Option<ImageConfigSummary> {
    let object = config.as_object()?;
    let inner = config.get("config");
    let field = |name: &str| inner.and_then(|c| c.get(name));
    Some(ImageConfigSummary {
        os: text(object.get("os")),
        architecture: text(object.get("architecture")),
        created: text(object.get("created")),
        entrypoint: strings(field("Entrypoint")),
        cmd: strings(field("Cmd")),
        working_dir: text(field("WorkingDir")),
        user: text(field("User")),
        exposed_ports: field("ExposedPorts")
            .and_then(Value::as_object)
            .map(|p| p.keys().cloned().collect())
            .unwrap_or_default(),
        env_names: strings(field("Env"))
            .into_iter()
            .map(|e| e.split_once('=').map_or(e.clone(), |(k, _)| k.to_string()))
            .collect(),
        labels: field("Labels")
            .and_then(Value::as_object)
            .map(|l| {
                l.iter()
                    .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string())))
                    .collect()
            })
            .unwrap_or_default(),
    })
}

/// `GET /api/v1/images/inspect?reference=REF`.
async fn inspect(
    State(plane): State<ControlPlane>,
    caller: Caller,
    Query(q): Query<ImageQuery>,
) -> Result<Json<ImageDetailView>, ApiError> {
    caller.require(Permission::Read, Target::any())?;
    let name = ImageName::parse(&q.reference).map_err(ControlError::from)?;
    let image = registry(&plane)?
        .inspect(&name)
        .await
        .map_err(ControlError::from)?;
    let uses = running(&plane).await;
    Ok(Json(ImageDetailView {
        running: uses_of(&uses, &image.digest),
        config_summary: image.config_json.as_ref().and_then(summary),
        repository: image.repository,
        digest: image.digest,
        media_type: image.media_type,
        manifest_size: image.manifest_size,
        size: image.size,
        tags: image.tags,
        config: image.config.map(blob_view),
        layers: image.layers.into_iter().map(blob_view).collect(),
        manifests: image.manifests.into_iter().map(blob_view).collect(),
    }))
}

/// `POST /api/v1/images/promote`: copies an image by digest.
async fn promote(
    State(plane): State<ControlPlane>,
    caller: Caller,
    Json(request): Json<PromoteImageRequest>,
) -> Result<(Extension<AuditNote>, Json<PromoteImageAnswer>), ApiError> {
    caller.require(Permission::Operate, Target::any())?;
    let source = ImageName::parse(&request.source).map_err(ControlError::from)?;
    let destination = ImageName::parse(&request.destination).map_err(ControlError::from)?;
    let copied = registry(&plane)?
        .copy_image(&source, &destination)
        .await
        .map_err(ControlError::from)?;
    let tag = destination.tag.as_deref().or(source.tag.as_deref());
    let answer = PromoteImageAnswer {
        source: format!("{}@{}", source.repository, copied.digest),
        destination: match tag {
            Some(tag) => format!("{}:{tag}@{}", destination.repository, copied.digest),
            None => format!("{}@{}", destination.repository, copied.digest),
        },
        digest: copied.digest,
        media_type: copied.media_type,
        manifests: copied.manifests,
        blobs_linked: copied.blobs_linked,
    };
    let note = format!("{} -> {}", answer.source, answer.destination);
    Ok((Extension(AuditNote(note)), Json(answer)))
}
