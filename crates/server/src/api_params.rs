//! The parameter store's part of the HTTP API. SecureString values leave
//! the server only when a request asks for decryption and the caller holds
//! a grant that covers the parameter (`secrets:path=…` or admin); such reads
//! are audited. Everywhere else they are `***`. Errors name parameters,
//! never values. Writing needs the operator role; rotating the key, admin.

use axum::extract::{Extension, Query, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use gantry_api::{
    DeleteParameterRequest, KeyRotated, LabelParameterRequest, ParameterDeleted, ParameterLabelled,
    ParameterPut, ParameterQuery, ParameterView, ParametersQuery, PutParameterRequest,
    RotateKeyRequest,
};
use gantry_params::{
    ParamName, ParamPath, ParamType, ParamValue, Parameter, PutParameter, Selector,
};
use serde::Serialize;

use crate::api::ApiError;
use crate::control::ControlPlane;
use crate::error::ControlError;
use crate::guard::{AuditNote, AuditRead, Caller};
use gantry_auth::{Permission, Target};

pub(crate) fn routes() -> Router<ControlPlane> {
    Router::new()
        .route("/api/v1/params/put", post(put))
        .route("/api/v1/params/get", get(get_one))
        .route("/api/v1/params/list", get(list))
        .route("/api/v1/params/history", get(history))
        .route("/api/v1/params/label", post(label))
        .route("/api/v1/params/delete", post(delete))
        .route("/api/v1/params/rotate-key", post(rotate_key))
}

fn bad(e: gantry_params::ParamError) -> ApiError {
    ControlError::Param(e).into()
}

/// A parameter as the API shows it; a SecureString read without
/// decryption shows `***`.
fn parameter_view(p: &Parameter) -> ParameterView {
    let value = match &p.value {
        ParamValue::Plain(v) => v.clone(),
        ParamValue::Secret(s) => s.expose().to_string(),
        ParamValue::Encrypted => "***".to_string(),
    };
    ParameterView {
        description: p.description.clone(),
        labels: p.labels.iter().map(ToString::to_string).collect(),
        last_modified: p.last_modified.to_string(),
        modified_by: p.modified_by.clone(),
        name: p.name.to_string(),
        param_type: p.param_type.to_string(),
        value,
        version: p.version,
    }
}

type Audited<T> = Result<(Extension<AuditNote>, Json<T>), ApiError>;

fn note<T>(text: String, body: T) -> (Extension<AuditNote>, Json<T>) {
    (Extension(AuditNote(text)), Json(body))
}

async fn put(
    State(plane): State<ControlPlane>,
    caller: Caller,
    Json(req): Json<PutParameterRequest>,
) -> Audited<ParameterPut> {
    let name = ParamName::parse(&req.name).map_err(bad)?;
    caller.require(Permission::Operate, Target::parameter(name.as_ref()))?;
    let param_type: ParamType = match req.param_type.as_deref() {
        Some(t) => t.parse().map_err(bad)?,
        None => ParamType::String,
    };
    let by = caller.identity.name.clone();
    let mut put = PutParameter::new(&name, &req.value, param_type, &by).overwrite(req.overwrite);
    if let Some(d) = req.description.as_deref() {
        put = put.description(d);
    }
    let version = plane.params().put(put).await.map_err(bad)?;
    Ok(note(
        format!("parameter {name} version {version}"),
        ParameterPut {
            name: name.to_string(),
            version,
        },
    ))
}

/// A read that reveals SecureString values needs a grant covering `name`
/// and is audited.
fn require_decrypt(caller: &Caller, name: &str) -> Result<(), ApiError> {
    caller.require(Permission::Decrypt, Target::parameter(name))?;
    Ok(())
}

/// Answers a read, marking it for the audit log when it decrypted.
fn read_answer(decrypt: bool, what: String, body: impl Serialize) -> axum::response::Response {
    use axum::response::IntoResponse;
    let mut response = Json(body).into_response();
    if decrypt {
        response.extensions_mut().insert(AuditRead);
        response.extensions_mut().insert(AuditNote(what));
    }
    response
}

async fn get_one(
    State(plane): State<ControlPlane>,
    caller: Caller,
    Query(q): Query<ParameterQuery>,
) -> Result<axum::response::Response, ApiError> {
    caller.require(Permission::Read, Target::any())?;
    let selector = Selector::parse(&q.name).map_err(bad)?;
    let name = selector.name.to_string();
    if q.decrypt {
        require_decrypt(&caller, &name)?;
    }
    let p = plane
        .params()
        .get(&selector, q.decrypt)
        .await
        .map_err(bad)?;
    Ok(read_answer(
        q.decrypt && p.param_type == ParamType::SecureString,
        format!("decrypted parameter {name}"),
        parameter_view(&p),
    ))
}

async fn list(
    State(plane): State<ControlPlane>,
    caller: Caller,
    Query(q): Query<ParametersQuery>,
) -> Result<axum::response::Response, ApiError> {
    caller.require(Permission::Read, Target::any())?;
    let path = match q.path.as_deref() {
        Some(p) if p != "/" => ParamPath::parse(p).map_err(bad)?,
        _ => ParamPath::root(),
    };
    let params = plane
        .params()
        .list(&path, q.recursive, q.decrypt)
        .await
        .map_err(bad)?;
    let mut revealed = Vec::new();
    for p in params
        .iter()
        .filter(|p| p.param_type == ParamType::SecureString)
    {
        if q.decrypt {
            require_decrypt(&caller, p.name.as_ref())?;
            revealed.push(p.name.to_string());
        }
    }
    Ok(read_answer(
        !revealed.is_empty(),
        format!("decrypted parameters {}", revealed.join(", ")),
        params.iter().map(parameter_view).collect::<Vec<_>>(),
    ))
}

async fn history(
    State(plane): State<ControlPlane>,
    caller: Caller,
    Query(q): Query<ParameterQuery>,
) -> Result<axum::response::Response, ApiError> {
    caller.require(Permission::Read, Target::any())?;
    let name = ParamName::parse(&q.name).map_err(bad)?;
    if q.decrypt {
        require_decrypt(&caller, name.as_ref())?;
    }
    let versions = plane
        .params()
        .history(&name, q.decrypt)
        .await
        .map_err(bad)?;
    let secret = versions
        .iter()
        .any(|p| p.param_type == ParamType::SecureString);
    Ok(read_answer(
        q.decrypt && secret,
        format!("decrypted history of parameter {name}"),
        versions.iter().map(parameter_view).collect::<Vec<_>>(),
    ))
}

async fn label(
    State(plane): State<ControlPlane>,
    caller: Caller,
    Json(req): Json<LabelParameterRequest>,
) -> Audited<ParameterLabelled> {
    let name = ParamName::parse(&req.name).map_err(bad)?;
    caller.require(Permission::Operate, Target::parameter(name.as_ref()))?;
    let outcome = plane
        .params()
        .label(&name, req.version, &req.labels)
        .await
        .map_err(bad)?;
    let invalid: Vec<String> = outcome
        .invalid_labels
        .iter()
        .map(ToString::to_string)
        .collect();
    Ok(note(
        format!("parameter {name} version {} labels", outcome.version),
        ParameterLabelled {
            invalid_labels: invalid,
            name: name.to_string(),
            version: outcome.version,
        },
    ))
}

async fn delete(
    State(plane): State<ControlPlane>,
    caller: Caller,
    Json(req): Json<DeleteParameterRequest>,
) -> Audited<ParameterDeleted> {
    let name = ParamName::parse(&req.name).map_err(bad)?;
    caller.require(Permission::Operate, Target::parameter(name.as_ref()))?;
    plane.params().delete(&name).await.map_err(bad)?;
    Ok(note(
        format!("parameter {name}"),
        ParameterDeleted {
            deleted: true,
            name: name.to_string(),
        },
    ))
}

async fn rotate_key(
    State(plane): State<ControlPlane>,
    caller: Caller,
    Json(req): Json<RotateKeyRequest>,
) -> Result<Json<KeyRotated>, ApiError> {
    caller.require(Permission::Admin, Target::any())?;
    let rotated = plane.rotate_master_key(req.new_key.as_deref()).await?;
    Ok(Json(KeyRotated {
        key_id: rotated.1,
        rotated_versions: rotated.0 as u64,
    }))
}
