//! Build agents in the HTTP API: the routes an agent token calls (poll,
//! heartbeat, log, blobs, finish; see [`crate::agents`]) and the list of
//! agents for people.

use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use futures_util::StreamExt;
use gantry_api::{
    Ack, AgentFinishRequest, AgentHeartbeatAnswer, AgentHeartbeatRequest, AgentLogRequest,
    AgentPollAnswer, AgentPollRequest, AgentView,
};
use gantry_auth::{Permission, Target};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use crate::agents::AgentError;
use crate::api::ApiError;
use crate::control::ControlPlane;
use crate::error::ControlError;
use crate::guard::{AuditNote, Caller};

/// The most bytes one uploaded blob may hold.
pub(crate) const MAX_BLOB_BYTES: u64 = 4 << 30;

/// How long an upload may stall between two chunks.
const UPLOAD_STALL: Duration = Duration::from_secs(30);

/// The default and longest wait of a poll, in ms.
const DEFAULT_POLL_WAIT_MS: u64 = 20_000;

pub(crate) fn routes() -> Router<ControlPlane> {
    Router::new()
        .route("/api/v1/agents", get(list))
        .route("/api/v1/agent/poll", post(poll))
        .route("/api/v1/agent/heartbeat", post(heartbeat))
        .route("/api/v1/agent/jobs/{id}/log", post(log))
        .route(
            "/api/v1/agent/jobs/{id}/blobs/{digest}",
            get(get_blob).put(put_blob),
        )
        .route(
            "/api/v1/agent/jobs/{id}/finish",
            post(finish).layer(axum::extract::DefaultBodyLimit::max(
                crate::guard::MAX_AGENT_FINISH_BODY,
            )),
        )
}

fn require_agent(caller: &Caller) -> Result<(), ApiError> {
    caller.require(Permission::Agent, Target::any())?;
    Ok(())
}

fn check_name(name: &str) -> Result<(), ApiError> {
    let valid = !name.is_empty()
        && name.len() <= 100
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'));
    if valid {
        Ok(())
    } else {
        Err(ControlError::Agent(AgentError::Invalid(
            "an agent's name is 1 to 100 of A-Z a-z 0-9 . _ - @".into(),
        ))
        .into())
    }
}

/// `GET /api/v1/agents`.
async fn list(
    State(plane): State<ControlPlane>,
    caller: Caller,
) -> Result<Json<Vec<AgentView>>, ApiError> {
    caller.require(Permission::Read, Target::any())?;
    Ok(Json(plane.agents().list()))
}

/// `POST /api/v1/agent/poll`: a job, once there is one for this agent.
async fn poll(
    State(plane): State<ControlPlane>,
    caller: Caller,
    Json(request): Json<AgentPollRequest>,
) -> Result<Response, ApiError> {
    require_agent(&caller)?;
    check_name(&request.name)?;
    if request.labels.len() > 64 {
        return Err(ControlError::Agent(AgentError::Invalid("at most 64 labels".into())).into());
    }
    for label in &request.labels {
        gantry_spec::pipeline::check_agent_label(label).map_err(|why| {
            ControlError::Agent(AgentError::Invalid(format!("label `{label}` {why}")))
        })?;
    }
    let wait = Duration::from_millis(request.wait_ms.unwrap_or(DEFAULT_POLL_WAIT_MS));
    let job = plane
        .agents()
        .poll(
            &caller.identity.name,
            &request.name,
            &request.labels,
            &request.version,
            wait,
        )
        .await
        .map_err(ControlError::Agent)?;
    let note = job.as_ref().map(|job| {
        AuditNote(format!(
            "agent {} took {}/{}/{}#{}",
            request.name, job.execution_id, job.stage, job.action, job.attempt
        ))
    });
    let answer = Json(AgentPollAnswer {
        job,
        heartbeat_ms: u64::try_from(plane.agents().heartbeat_every().as_millis()).unwrap_or(2000),
    });
    Ok(match note {
        Some(note) => (Extension(note), answer).into_response(),
        None => answer.into_response(),
    })
}

/// `POST /api/v1/agent/heartbeat`.
async fn heartbeat(
    State(plane): State<ControlPlane>,
    caller: Caller,
    Json(request): Json<AgentHeartbeatRequest>,
) -> Result<Json<AgentHeartbeatAnswer>, ApiError> {
    require_agent(&caller)?;
    check_name(&request.name)?;
    let stop = plane
        .agents()
        .heartbeat(&caller.identity.name, &request.name, &request.jobs);
    Ok(Json(AgentHeartbeatAnswer { stop }))
}

/// `POST /api/v1/agent/jobs/{id}/log`.
async fn log(
    State(plane): State<ControlPlane>,
    caller: Caller,
    Path(id): Path<String>,
    Json(request): Json<AgentLogRequest>,
) -> Result<Json<Ack>, ApiError> {
    require_agent(&caller)?;
    plane
        .agents()
        .log(&caller.identity.name, &id, request.lines)
        .map_err(ControlError::Agent)?;
    Ok(Json(Ack::OK))
}

/// `GET /api/v1/agent/jobs/{id}/blobs/{digest}`: a blob of the job's inputs.
async fn get_blob(
    State(plane): State<ControlPlane>,
    caller: Caller,
    Path((id, digest)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    require_agent(&caller)?;
    plane
        .agents()
        .may_fetch(&caller.identity.name, &id, &digest)
        .map_err(ControlError::Agent)?;
    let file = plane
        .artifacts()
        .open_blob(&digest)
        .map_err(|e| ControlError::NotFound(format!("blob {digest}: {e}")))?;
    let length = file.metadata().map(|m| m.len()).ok();
    let stream =
        tokio_util::io::ReaderStream::with_capacity(tokio::fs::File::from_std(file), 64 << 10);
    let mut response = Body::from_stream(stream).into_response();
    let headers = response.headers_mut();
    headers.insert(
        axum::http::header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static("application/octet-stream"),
    );
    if let Some(length) = length {
        headers.insert(axum::http::header::CONTENT_LENGTH, length.into());
    }
    Ok(response)
}

/// `PUT /api/v1/agent/jobs/{id}/blobs/{digest}`: a blob of the job's
/// outputs, hashed as it arrives into a temp file that becomes the blob
/// only when whole and of `digest`; anything else removes it.
async fn put_blob(
    State(plane): State<ControlPlane>,
    caller: Caller,
    Path((id, digest)): Path<(String, String)>,
    body: Body,
) -> Result<(StatusCode, Json<Ack>), ApiError> {
    require_agent(&caller)?;
    let agents = plane.agents();
    agents
        .may_upload(&caller.identity.name, &id)
        .map_err(ControlError::Agent)?;
    let valid_digest = digest.strip_prefix("sha256:").is_some_and(|hex| {
        hex.len() == 64
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    });
    if !valid_digest {
        return Err(mismatch(format!("{digest} is not a sha256 digest")));
    }
    let dir = plane.data_dir().join("work").join("agent-uploads");
    tokio::fs::create_dir_all(&dir)
        .await
        .map_err(|e| ControlError::io(&dir, e))?;
    let mut temp = TempUpload(Some(dir.join(crate::agents::unique_id())));
    let path = temp.path().to_path_buf();
    let file = tokio::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .await
        .map_err(|e| ControlError::io(&path, e))?;
    let mut file = tokio::io::BufWriter::with_capacity(256 << 10, file);
    let mut hasher = Sha256::new();
    let mut size: u64 = 0;
    let mut stream = body.into_data_stream();
    loop {
        let chunk = match tokio::time::timeout(UPLOAD_STALL, stream.next()).await {
            Err(_) => {
                return Err(mismatch(format!(
                    "the upload of {digest} stalled for {} s",
                    UPLOAD_STALL.as_secs()
                )));
            }
            Ok(None) => break,
            Ok(Some(Err(e))) => {
                return Err(mismatch(format!("the upload of {digest} was cut: {e}")));
            }
            Ok(Some(Ok(chunk))) => chunk,
        };
        size += chunk.len() as u64;
        if size > MAX_BLOB_BYTES {
            return Err(ControlError::Agent(AgentError::Invalid(format!(
                "a blob holds at most {MAX_BLOB_BYTES} bytes"
            )))
            .into());
        }
        hasher.update(&chunk);
        file.write_all(&chunk)
            .await
            .map_err(|e| ControlError::io(&path, e))?;
    }
    let got = format!("sha256:{}", hex::encode(hasher.finalize()));
    if got != digest {
        return Err(mismatch(format!(
            "the upload hashes to {got}, not {digest}"
        )));
    }
    file.flush().await.map_err(|e| ControlError::io(&path, e))?;
    drop(file);
    // Asked again: the attempt may have ended while the bytes came.
    agents
        .may_upload(&caller.identity.name, &id)
        .map_err(ControlError::Agent)?;
    let store = plane.artifacts().clone();
    let kept = path.clone();
    tokio::task::spawn_blocking(move || store.put_verified_file(&kept, &digest))
        .await
        .map_err(|e| ControlError::Internal(format!("storing a blob panicked: {e}")))?
        .map_err(|e| ControlError::Internal(e.to_string()))?;
    // The file was renamed into the store: nothing is left to remove.
    temp.0 = None;
    Ok((StatusCode::CREATED, Json(Ack::OK)))
}

/// An upload's temp file, removed when dropped unless it became a blob.
struct TempUpload(Option<std::path::PathBuf>);

impl TempUpload {
    fn path(&self) -> &std::path::Path {
        self.0.as_deref().unwrap_or(std::path::Path::new(""))
    }
}

impl Drop for TempUpload {
    fn drop(&mut self) {
        if let Some(path) = self.0.take() {
            let _ = std::fs::remove_file(path);
        }
    }
}

fn mismatch(message: String) -> ApiError {
    ControlError::Agent(AgentError::DigestMismatch(message)).into()
}

/// `POST /api/v1/agent/jobs/{id}/finish`: the build's end, with its
/// outputs' manifests, each stored as an artifact only if whole and safe.
async fn finish(
    State(plane): State<ControlPlane>,
    caller: Caller,
    Path(id): Path<String>,
    Json(request): Json<AgentFinishRequest>,
) -> Result<Json<Ack>, ApiError> {
    require_agent(&caller)?;
    let agents = plane.agents();
    agents
        .may_upload(&caller.identity.name, &id)
        .map_err(ControlError::Agent)?;
    let mut manifests = Vec::new();
    for output in &request.outputs {
        let entries: Vec<gantry_store::ArtifactEntry> = output
            .entries
            .iter()
            .map(|e| serde_json::from_value(e.clone()))
            .collect::<Result<_, _>>()
            .map_err(|e| {
                ControlError::Agent(AgentError::OutputInvalid(format!(
                    "output {}: {e}",
                    output.identifier.as_deref().unwrap_or("(primary)")
                )))
            })?;
        manifests.push((output.identifier.clone(), entries));
    }
    let store = plane.artifacts().clone();
    let stored = tokio::task::spawn_blocking(move || {
        manifests
            .into_iter()
            .map(|(identifier, entries)| {
                let shown = identifier.clone().unwrap_or_else(|| "(primary)".into());
                store
                    .import_manifest(entries)
                    .map(|artifact| (identifier, artifact.id))
                    .map_err(|e| format!("output {shown}: {e}"))
            })
            .collect::<Result<Vec<_>, String>>()
    })
    .await
    .map_err(|e| ControlError::Internal(format!("storing outputs panicked: {e}")))?
    .map_err(|e| ControlError::Agent(AgentError::OutputInvalid(e)))?;
    agents
        .finish(&caller.identity.name, &id, request, stored)
        .map_err(ControlError::Agent)?;
    Ok(Json(Ack::OK))
}
