//! Identities in the HTTP API: who am I, users, tokens, and the audit log.
//!
//! Users and the audit log are admin's. Anyone may list, create and revoke
//! their own tokens (a token never carries more than its user's grants);
//! tokens of others are admin's. A token's value is in exactly one answer:
//! the one that created it.

use axum::extract::{Extension, Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{delete, get, put};
use axum::{Json, Router};
use gantry_api::{
    AuditLogQuery, AuditRecordView, CreatedToken, GrantsRequest, IdentityView, NewTokenRequest,
    NewUserRequest, TokenView, TokensQuery, UserRemoved, UserView,
};
use gantry_auth::{AuditQuery, Grant, Identity, Permission, Target, TokenInfo, User};
use gantry_clock::now_ms;

use crate::api::ApiError;
use crate::control::ControlPlane;
use crate::error::ControlError;
use crate::guard::{AuditNote, Caller};

pub(crate) fn routes() -> Router<ControlPlane> {
    Router::new()
        .route("/api/v1/whoami", get(whoami))
        .route("/api/v1/users", get(users).post(add_user))
        .route("/api/v1/users/{name}", delete(remove_user))
        .route("/api/v1/users/{name}/grants", put(set_grants))
        .route("/api/v1/tokens", get(tokens).post(create_token))
        .route("/api/v1/tokens/{id}", delete(revoke_token))
        .route("/api/v1/audit", get(audit))
}

type Audited<T> = Result<(Extension<AuditNote>, Json<T>), ApiError>;

fn admin(caller: &Caller) -> Result<(), ApiError> {
    caller.require(Permission::Admin, Target::any())?;
    Ok(())
}

fn grant_texts(grants: &[Grant]) -> Vec<String> {
    grants.iter().map(ToString::to_string).collect()
}

fn identity_view(identity: &Identity) -> IdentityView {
    IdentityView {
        email: identity.email.clone(),
        grants: grant_texts(&identity.grants),
        name: identity.name.clone(),
    }
}

fn user_view(user: User) -> UserView {
    UserView {
        created_at_ms: user.created_at_ms,
        email: user.email,
        grants: grant_texts(&user.grants),
        name: user.name,
    }
}

fn token_view(token: TokenInfo) -> TokenView {
    TokenView {
        created_at_ms: token.created_at_ms,
        description: token.description,
        expires_at_ms: token.expires_at_ms,
        id: token.id,
        revoked_at_ms: token.revoked_at_ms,
        user: token.user,
    }
}

async fn whoami(caller: Caller) -> Json<IdentityView> {
    Json(identity_view(&caller.identity))
}

async fn users(
    State(plane): State<ControlPlane>,
    caller: Caller,
) -> Result<Json<Vec<UserView>>, ApiError> {
    admin(&caller)?;
    Ok(Json(
        plane.auth().users().into_iter().map(user_view).collect(),
    ))
}

fn parse_grants(grants: &[String]) -> Result<Vec<Grant>, ApiError> {
    grants
        .iter()
        .map(|g| g.parse::<Grant>().map_err(ApiError::from))
        .collect()
}

async fn add_user(
    State(plane): State<ControlPlane>,
    caller: Caller,
    Json(req): Json<NewUserRequest>,
) -> Result<(StatusCode, Extension<AuditNote>, Json<UserView>), ApiError> {
    admin(&caller)?;
    let grants = parse_grants(&req.grants)?;
    let user = plane
        .auth()
        .add_user(&req.name, req.email.as_deref(), grants, now_ms())
        .await?;
    let note = format!(
        "user {} ({})",
        user.name,
        user.grants
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(" ")
    );
    Ok((
        StatusCode::CREATED,
        Extension(AuditNote(note)),
        Json(user_view(user)),
    ))
}

async fn remove_user(
    State(plane): State<ControlPlane>,
    caller: Caller,
    Path(name): Path<String>,
) -> Audited<UserRemoved> {
    admin(&caller)?;
    let revoked = plane.auth().remove_user(&name, now_ms()).await?;
    Ok((
        Extension(AuditNote(format!("user {name}, {revoked} tokens revoked"))),
        Json(UserRemoved {
            name,
            removed: true,
            revoked_tokens: revoked as u64,
        }),
    ))
}

async fn set_grants(
    State(plane): State<ControlPlane>,
    caller: Caller,
    Path(name): Path<String>,
    Json(req): Json<GrantsRequest>,
) -> Audited<UserView> {
    admin(&caller)?;
    let grants = parse_grants(&req.grants)?;
    let user = plane.auth().set_grants(&name, grants).await?;
    Ok((
        Extension(AuditNote(format!("user {name} grants {:?}", req.grants))),
        Json(user_view(user)),
    ))
}

async fn tokens(
    State(plane): State<ControlPlane>,
    caller: Caller,
    Query(q): Query<TokensQuery>,
) -> Result<Json<Vec<TokenView>>, ApiError> {
    let own = caller.identity.name.clone();
    let user = match q.user {
        Some(user) if user != own => {
            admin(&caller)?;
            Some(user)
        }
        Some(user) => Some(user),
        // Everyone's tokens for an admin, one's own for everyone else.
        None if caller.identity.allows(Permission::Admin, &Target::any()) => None,
        None => Some(own),
    };
    let tokens = plane.auth().tokens(user.as_deref());
    Ok(Json(tokens.into_iter().map(token_view).collect()))
}

async fn create_token(
    State(plane): State<ControlPlane>,
    caller: Caller,
    Json(req): Json<NewTokenRequest>,
) -> Result<(StatusCode, Extension<AuditNote>, Json<CreatedToken>), ApiError> {
    let user = req.user.unwrap_or_else(|| caller.identity.name.clone());
    if user != caller.identity.name {
        admin(&caller)?;
    }
    if plane.auth().user(&user).is_none() {
        // An identity without a user (a build's ephemeral token) cannot mint
        // lasting tokens.
        return Err(gantry_auth::AuthError::UserNotFound(user).into());
    }
    let now = now_ms();
    let expires_at = match req.expires_in.as_deref() {
        None => None,
        Some(text) => {
            let d = gantry_spec::duration::parse_duration(text)
                .map_err(|e| ControlError::BadRequest(format!("expires_in: {e}")))?;
            Some(now.saturating_add(i64::try_from(d.as_millis()).unwrap_or(i64::MAX)))
        }
    };
    let token = plane
        .auth()
        .create_token(&user, req.description.as_deref(), expires_at, now)
        .await?;
    let note = format!("token {} for {user}", token.info.id);
    Ok((
        StatusCode::CREATED,
        Extension(AuditNote(note)),
        Json(CreatedToken {
            token: token.secret.expose().to_string(),
            info: token_view(token.info),
        }),
    ))
}

async fn revoke_token(
    State(plane): State<ControlPlane>,
    caller: Caller,
    Path(id): Path<String>,
) -> Audited<TokenView> {
    let token = plane
        .auth()
        .token(&id)
        .ok_or_else(|| gantry_auth::AuthError::TokenNotFound(id.clone()))?;
    if token.user != caller.identity.name {
        admin(&caller)?;
    }
    let token = plane.auth().revoke_token(&id, now_ms()).await?;
    Ok((
        Extension(AuditNote(format!("token {id} of {}", token.user))),
        Json(token_view(token)),
    ))
}

async fn audit(
    State(plane): State<ControlPlane>,
    caller: Caller,
    Query(q): Query<AuditLogQuery>,
) -> Result<Json<Vec<AuditRecordView>>, ApiError> {
    admin(&caller)?;
    let since_ms = match q.since.as_deref() {
        None => None,
        Some(text) => Some(match text.parse::<i64>() {
            Ok(ms) => ms,
            Err(_) => {
                let d = gantry_spec::duration::parse_duration(text)
                    .map_err(|e| ControlError::BadRequest(format!("since: {e}")))?;
                now_ms().saturating_sub(i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
            }
        }),
    };
    let records = plane
        .auth()
        .audit_log(&AuditQuery {
            since_ms,
            principal: q.principal,
            limit: q.limit,
            before: q.before,
        })
        .await?;
    Ok(Json(
        records
            .into_iter()
            .map(|r| AuditRecordView {
                action: r.action,
                at_ms: r.at_ms,
                outcome: r.outcome,
                principal: r.principal,
                remote: r.remote,
                seq: r.seq,
                target: r.target,
            })
            .collect(),
    ))
}
