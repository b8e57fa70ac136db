//! The HTTP layer: one catch-all route under `/v2` whose path is parsed
//! from the right (names have any number of segments); every request is
//! authorized for what its endpoint needs before a handler per endpoint of
//! the OCI Distribution API runs, and mutations are audited after it.

use std::net::SocketAddr;

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header, request};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use futures_util::StreamExt as _;
use tokio::io::{AsyncReadExt as _, AsyncSeekExt as _};

use crate::Registry;
use crate::auth::{AuthDenied, Presented, RegistryAccess, RegistryAuditRecord};
use crate::error::{ApiError, ErrorCode, RegistryError};
use crate::manifest;
use crate::metadata::{LinkError, NewManifest, QuotaExceeded, Quotas, Referrer, UploadsFull};
use crate::names::{Digest, Reference, RepoName, Route, parse_route, query_pairs};
use crate::uploads::{self, Appender};

const API_VERSION: &str = "Docker-Distribution-API-Version";
const CONTENT_DIGEST: &str = "Docker-Content-Digest";
const UPLOAD_UUID: &str = "Docker-Upload-UUID";
/// Tells a client that pushed a manifest with a `subject` that the registry
/// indexed it, so the client need not maintain a referrers tag.
const OCI_SUBJECT: &str = "OCI-Subject";
const OCI_FILTERS_APPLIED: &str = "OCI-Filters-Applied";
/// The most descriptors one page of a referrers list holds; a client may
/// ask for fewer with `n`.
const MAX_REFERRERS_PAGE: i64 = 1000;
const MOUNT_BLOB: &str = "registry.mount_blob";
/// The `service` of the token flow's challenges.
const SERVICE: &str = "gantry";
/// The largest form body `POST /v2/token` reads.
const MAX_TOKEN_FORM: usize = 64 * 1024;
/// How many repositories holding a blob are asked about before a link of
/// it from the shared store is refused (see [`may_link`]).
const MAX_LINK_SOURCES: i64 = 16;

/// The router serving `/v2/…`. Every response carries
/// `Docker-Distribution-API-Version: registry/2.0`. Serve it with
/// `into_make_service_with_connect_info::<SocketAddr>()` to have client
/// addresses in audit records.
pub fn router(registry: Registry) -> Router {
    Router::new()
        .route("/v2", any(dispatch))
        .route("/v2/", any(dispatch))
        .route("/v2/{*rest}", any(dispatch))
        .with_state(registry)
        .layer(axum::middleware::map_response(
            |mut response: Response| async move {
                response
                    .headers_mut()
                    .insert(API_VERSION, HeaderValue::from_static("registry/2.0"));
                response
            },
        ))
}

/// Who sent a request, as far as the registry can tell.
struct Caller {
    presented: Presented,
    remote: Option<SocketAddr>,
    /// `scheme://host` of the registry as the client addressed it, for the
    /// token realm; `None` when the `Host` header is unusable.
    origin: Option<String>,
}

impl Caller {
    fn of(parts: &request::Parts) -> Caller {
        let remote = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0);
        let host = parts
            .headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .or_else(|| parts.uri.authority().map(|a| a.as_str()))
            // The host is echoed into a quoted challenge: only a plain
            // `host[:port]` or `[v6]:port` may go there.
            .filter(|h| {
                !h.is_empty()
                    && h.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
            });
        // Behind a proxy that terminates TLS the client spoke HTTPS, and its
        // token request must too. The header can only mislead the client
        // that sent it, about the registry it already talks to.
        let forwarded_https = parts
            .headers
            .get("x-forwarded-proto")
            .is_some_and(|p| p.as_bytes().eq_ignore_ascii_case(b"https"));
        let scheme = if forwarded_https {
            "https"
        } else {
            parts.uri.scheme_str().unwrap_or("http")
        };
        Caller {
            presented: Presented::from_headers(&parts.headers),
            remote,
            origin: host.map(|h| format!("{scheme}://{h}")),
        }
    }
}

/// An authorized caller: who they are and the secret to ask about more.
struct Grant {
    principal: String,
    secret: String,
}

/// What an endpoint needs, with the repository name validated.
enum Need {
    Base,
    Catalog,
    Pull(RepoName),
    Push(RepoName),
    Delete(RepoName),
}

impl Need {
    fn access(&self) -> RegistryAccess<'_> {
        match self {
            Need::Base => RegistryAccess::Base,
            Need::Catalog => RegistryAccess::Catalog,
            Need::Pull(r) => RegistryAccess::Pull {
                repository: r.as_str(),
            },
            Need::Push(r) => RegistryAccess::Push {
                repository: r.as_str(),
            },
            Need::Delete(r) => RegistryAccess::Delete {
                repository: r.as_str(),
            },
        }
    }

    /// The scope a token for this need is asked for, as Docker spells it.
    fn scope(&self) -> Option<String> {
        match self {
            Need::Base => None,
            Need::Catalog => Some("registry:catalog:*".to_string()),
            Need::Pull(r) => Some(format!("repository:{r}:pull")),
            Need::Push(r) => Some(format!("repository:{r}:pull,push")),
            Need::Delete(r) => Some(format!("repository:{r}:delete")),
        }
    }
}

/// When an endpoint's outcome goes to the audit log.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Record {
    /// A mutation: every outcome.
    Always,
    /// A step of a mutation (opening or appending to an upload): refusals.
    Errors,
    /// A read.
    Never,
}

/// The audit identity of a request: what it does to what.
struct Action {
    name: &'static str,
    target: String,
    record: Record,
}

/// What a route and method need, and how they are audited; `None` for a
/// method the endpoint does not support.
fn classify(
    route: &Route,
    method: &Method,
    q: Option<&str>,
) -> Result<Option<(Need, Action)>, ApiError> {
    let get = method == Method::GET || method == Method::HEAD;
    let action = |name, target: String, record| Action {
        name,
        target,
        record,
    };
    Ok(Some(match route {
        Route::Catalog if method == Method::GET => (
            Need::Catalog,
            action("registry.catalog", "_catalog".into(), Record::Never),
        ),
        Route::Blob { name, digest } if get => (
            Need::Pull(RepoName::parse(name)?),
            action(
                "registry.pull_blob",
                blob_target(name, digest),
                Record::Never,
            ),
        ),
        Route::Blob { name, digest } if method == Method::DELETE => (
            Need::Delete(RepoName::parse(name)?),
            action(
                "registry.delete_blob",
                blob_target(name, digest),
                Record::Always,
            ),
        ),
        Route::UploadStart { name } if method == Method::POST => {
            let repo = RepoName::parse(name)?;
            let a = if let Some(d) = query(q, "mount") {
                action(MOUNT_BLOB, blob_target(name, &d), Record::Always)
            } else if let Some(d) = query(q, "digest") {
                action("registry.push_blob", blob_target(name, &d), Record::Always)
            } else {
                action("registry.start_upload", name.clone(), Record::Errors)
            };
            (Need::Push(repo), a)
        }
        Route::Upload { name, .. } if method == Method::PUT => {
            let d = query(q, "digest").unwrap_or_default();
            (
                Need::Push(RepoName::parse(name)?),
                action("registry.push_blob", blob_target(name, &d), Record::Always),
            )
        }
        Route::Upload { name, .. }
            if method == Method::PATCH || method == Method::GET || method == Method::DELETE =>
        {
            (
                Need::Push(RepoName::parse(name)?),
                action("registry.upload", name.clone(), Record::Errors),
            )
        }
        Route::Manifest { name, reference } if get => (
            Need::Pull(RepoName::parse(name)?),
            action(
                "registry.pull_manifest",
                manifest_target(name, reference),
                Record::Never,
            ),
        ),
        Route::Manifest { name, reference } if method == Method::PUT => (
            Need::Push(RepoName::parse(name)?),
            action(
                "registry.push_manifest",
                manifest_target(name, reference),
                Record::Always,
            ),
        ),
        Route::Manifest { name, reference } if method == Method::DELETE => (
            Need::Delete(RepoName::parse(name)?),
            action(
                "registry.delete_manifest",
                manifest_target(name, reference),
                Record::Always,
            ),
        ),
        Route::Tags { name } if method == Method::GET => (
            Need::Pull(RepoName::parse(name)?),
            action("registry.list_tags", name.clone(), Record::Never),
        ),
        Route::Referrers { name, digest } if method == Method::GET => (
            Need::Pull(RepoName::parse(name)?),
            action(
                "registry.list_referrers",
                blob_target(name, digest),
                Record::Never,
            ),
        ),
        _ => return Ok(None),
    }))
}

/// The methods an endpoint supports, for the `Allow` header of a 405.
fn allowed_methods(route: &Route) -> &'static str {
    match route {
        Route::Catalog | Route::Tags { .. } | Route::Referrers { .. } => "GET",
        Route::Blob { .. } => "GET, HEAD, DELETE",
        Route::UploadStart { .. } => "POST",
        Route::Upload { .. } => "GET, PATCH, PUT, DELETE",
        Route::Manifest { .. } => "GET, HEAD, PUT, DELETE",
    }
}

/// `405 UNSUPPORTED` with the `Allow` header HTTP requires of it.
fn method_not_allowed(method: &Method, path: &str, allow: &'static str) -> ApiError {
    ApiError::new(
        ErrorCode::Unsupported,
        format!("{method} is not supported on {path}"),
    )
    .with_header(header::ALLOW, HeaderValue::from_static(allow))
}

/// `repo:tag`, or `repo@sha256:…` for a digest.
fn manifest_target(name: &str, reference: &str) -> String {
    let reference = printable(reference);
    if reference.contains(':') {
        format!("{name}@{reference}")
    } else {
        format!("{name}:{reference}")
    }
}

fn blob_target(name: &str, digest: &str) -> String {
    format!("{name}@{}", printable(digest))
}

/// A client-chosen reference as it may appear in an audit record: the
/// characters of tags and digests, at most 100 of them. (Names are
/// validated before they get here; references only later.)
fn printable(s: &str) -> String {
    s.chars()
        .take(100)
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-:".contains(c) {
                c
            } else {
                '?'
            }
        })
        .collect()
}

/// Authorizes `need` for the caller: the secret they presented, or the one
/// a registry token of theirs stands for.
async fn authorize(registry: &Registry, caller: &Caller, need: &Need) -> Result<Grant, AuthDenied> {
    let Presented::Secret(presented) = &caller.presented else {
        return Err(AuthDenied::Unauthenticated);
    };
    let secret = registry
        .inner
        .tokens
        .resolve(presented)
        .ok_or(AuthDenied::Unauthenticated)?;
    let principal = registry
        .inner
        .auth
        .authorize(&secret, need.access())
        .await?;
    Ok(Grant { principal, secret })
}

/// The answer to a refused request: `401` with a challenge that sends
/// Docker's token flow to `/v2/token`, or `403 DENIED`.
fn denied(caller: &Caller, need: &Need, why: AuthDenied) -> ApiError {
    match why {
        AuthDenied::Unauthenticated => {
            let challenge = match &caller.origin {
                Some(origin) => {
                    let mut c = format!(r#"Bearer realm="{origin}/v2/token",service="{SERVICE}""#);
                    if let Some(scope) = need.scope() {
                        c.push_str(&format!(r#",scope="{scope}""#));
                    }
                    c
                }
                // Without a usable Host there is no absolute realm to name;
                // Basic needs none.
                None => format!(r#"Basic realm="{SERVICE}""#),
            };
            let message = match caller.presented {
                Presented::None => "authentication required",
                _ => "invalid or expired credentials",
            };
            let error = ApiError::new(ErrorCode::Unauthorized, message);
            match HeaderValue::from_str(&challenge) {
                Ok(value) => error.with_header(header::WWW_AUTHENTICATE, value),
                Err(_) => error,
            }
        }
        AuthDenied::Forbidden => {
            let what = match need {
                Need::Base => "the registry".to_string(),
                Need::Catalog => "the catalog".to_string(),
                Need::Pull(r) => format!("pulling from {r}"),
                Need::Push(r) => format!("pushing to {r}"),
                Need::Delete(r) => format!("deleting in {r}"),
            };
            ApiError::new(ErrorCode::Denied, format!("access denied: {what}"))
        }
    }
}

fn audit(
    registry: &Registry,
    caller: &Caller,
    principal: Option<&str>,
    action: &Action,
    outcome: String,
) {
    registry.inner.auth.audit(RegistryAuditRecord {
        principal: principal.map(str::to_string),
        action: action.name.to_string(),
        target: action.target.clone(),
        remote: caller.remote,
        outcome,
    });
}

/// An error's outcome in the audit log: `registry.` and its code.
fn outcome_of(code: ErrorCode) -> String {
    format!("registry.{}", code.as_str().to_ascii_lowercase())
}

async fn dispatch(State(registry): State<Registry>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let caller = Caller::of(&parts);
    let path = parts.uri.path();
    let rest = path
        .strip_prefix("/v2/")
        .or_else(|| path.strip_prefix("/v2"))
        .unwrap_or("");
    if rest == "token" && parts.method == Method::POST {
        let action = Action {
            name: "registry.token",
            target: "/v2/".into(),
            record: Record::Never,
        };
        return token_form(&registry, &caller, &action, body).await;
    }
    if rest.is_empty() || rest == "token" {
        let action = Action {
            name: if rest.is_empty() {
                "registry.base"
            } else {
                "registry.token"
            },
            target: "/v2/".into(),
            record: Record::Never,
        };
        let grant = match authorize(&registry, &caller, &Need::Base).await {
            Ok(grant) => grant,
            Err(why) => {
                return refuse(&registry, &caller, &Need::Base, &action, &parts.method, why);
            }
        };
        return match (rest.is_empty(), &parts.method) {
            (true, &Method::GET | &Method::HEAD) => {
                ([(header::CONTENT_TYPE, "application/json")], "{}").into_response()
            }
            (false, &Method::GET) => issue_token(&registry, &grant.secret),
            (true, _) => method_not_allowed(&parts.method, path, "GET, HEAD").into_response(),
            (false, _) => method_not_allowed(&parts.method, path, "GET, POST").into_response(),
        };
    }
    match handle(&registry, &caller, rest, &parts, body).await {
        Ok(response) => response,
        Err(e) => e.into_response(),
    }
}

async fn handle(
    registry: &Registry,
    caller: &Caller,
    rest: &str,
    parts: &request::Parts,
    body: Body,
) -> Result<Response, ApiError> {
    let q = parts.uri.query();
    let method = &parts.method;
    let Some(route) = parse_route(rest) else {
        // Who may not use the registry learns nothing about its endpoints.
        let action = Action {
            name: "registry.unknown",
            target: parts.uri.path().to_string(),
            record: Record::Never,
        };
        if let Err(why) = authorize(registry, caller, &Need::Base).await {
            return Ok(refuse(registry, caller, &Need::Base, &action, method, why));
        }
        return Err(ApiError::new(
            ErrorCode::Unsupported,
            format!("no registry endpoint at {}", parts.uri.path()),
        )
        .with_status(StatusCode::NOT_FOUND));
    };
    let Some((need, action)) = classify(&route, method, q)? else {
        let action = Action {
            name: "registry.unknown",
            target: parts.uri.path().to_string(),
            record: Record::Never,
        };
        if let Err(why) = authorize(registry, caller, &Need::Base).await {
            return Ok(refuse(registry, caller, &Need::Base, &action, method, why));
        }
        return Err(method_not_allowed(
            method,
            parts.uri.path(),
            allowed_methods(&route),
        ));
    };
    let grant = match authorize(registry, caller, &need).await {
        Ok(grant) => grant,
        Err(why) => return Ok(refuse(registry, caller, &need, &action, method, why)),
    };
    let result = endpoint(registry, &grant, route, parts, body).await;
    let outcome = match &result {
        // A mount that fell back to an upload session linked nothing.
        Ok(response) if response.status() == StatusCode::ACCEPTED && action.name == MOUNT_BLOB => {
            None
        }
        Ok(response) if response.status().is_success() => Some("ok".to_string()),
        Ok(response) => Some(format!("http.{}", response.status().as_u16())),
        Err(e) => Some(outcome_of(e.code)),
    };
    let record = match action.record {
        Record::Always => outcome,
        Record::Errors => outcome.filter(|o| o != "ok"),
        Record::Never => None,
    };
    if let Some(outcome) = record {
        audit(registry, caller, Some(&grant.principal), &action, outcome);
    }
    result
}

/// Runs the endpoint an authorized request addresses.
async fn endpoint(
    registry: &Registry,
    grant: &Grant,
    route: Route,
    parts: &request::Parts,
    body: Body,
) -> Result<Response, ApiError> {
    let q = parts.uri.query();
    let method = &parts.method;
    let head = method == Method::HEAD;
    match route {
        Route::Catalog => catalog(registry, q).await,
        Route::Blob { name, digest } if method == Method::DELETE => {
            delete_blob(registry, &name, &digest).await
        }
        Route::Blob { name, digest } => {
            get_blob(registry, &name, &digest, head, &parts.headers).await
        }
        Route::UploadStart { name } => {
            start_upload(registry, grant, &name, q, &parts.headers, body).await
        }
        Route::Upload { name, id } if method == Method::PATCH => {
            patch_upload(registry, &name, &id, &parts.headers, body).await
        }
        Route::Upload { name, id } if method == Method::PUT => {
            put_upload(registry, &name, &id, q, &parts.headers, body).await
        }
        Route::Upload { name, id } if method == Method::DELETE => {
            cancel_upload(registry, &name, &id).await
        }
        Route::Upload { name, id } => upload_status(registry, &name, &id).await,
        Route::Manifest { name, reference } if method == Method::PUT => {
            put_manifest(registry, grant, &name, &reference, &parts.headers, body).await
        }
        Route::Manifest { name, reference } if method == Method::DELETE => {
            delete_manifest(registry, &name, &reference).await
        }
        Route::Manifest { name, reference } => {
            get_manifest(registry, &name, &reference, head).await
        }
        Route::Tags { name } => tags(registry, &name, q).await,
        Route::Referrers { name, digest } => referrers(registry, &name, &digest, q).await,
    }
}

/// Answers a refused request, recording it when credentials were presented
/// or the request meant to change something. A client's first, anonymous
/// `GET /v2/` or pull is the token flow's normal start, not an incident.
fn refuse(
    registry: &Registry,
    caller: &Caller,
    need: &Need,
    action: &Action,
    method: &Method,
    why: AuthDenied,
) -> Response {
    let reading = method == Method::GET || method == Method::HEAD;
    if caller.presented != Presented::None || !reading {
        audit(registry, caller, None, action, why.code().to_string());
    }
    denied(caller, need, why).into_response()
}

/// `GET /v2/token`: a fresh registry token standing for the caller's
/// secret, in the shape Docker's token flow expects.
fn issue_token(registry: &Registry, secret: &str) -> Response {
    let Some(issued) = registry.inner.tokens.issue(secret) else {
        return ApiError::new(
            ErrorCode::TooManyRequests,
            "too many registry tokens outstanding",
        )
        .into_response();
    };
    let body = serde_json::json!({
        "token": issued.token,
        "access_token": issued.token,
        "expires_in": issued.expires_in.as_secs(),
        "issued_at": jiff::Timestamp::try_from(gantry_clock::now())
            .map(|t| t.to_string())
            .unwrap_or_default(),
    });
    (
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body.to_string(),
    )
        .into_response()
}

/// `POST /v2/token`, the OAuth2 form some clients use: a `password` grant
/// is authorized with its password like a Basic password.
async fn token_form(registry: &Registry, caller: &Caller, action: &Action, body: Body) -> Response {
    let form = match read_limited(body, MAX_TOKEN_FORM).await {
        Ok(Some(form)) => form,
        Ok(None) => {
            return ApiError::new(ErrorCode::Unsupported, "token request too large")
                .with_status(StatusCode::PAYLOAD_TOO_LARGE)
                .into_response();
        }
        Err(e) => return e.into_response(),
    };
    let form = String::from_utf8_lossy(&form);
    let pairs = query_pairs(Some(&form));
    let field = |k: &str| {
        pairs
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
    };
    let (Some("password"), Some(password)) = (field("grant_type"), field("password")) else {
        return ApiError::new(
            ErrorCode::Unsupported,
            "only the password grant is supported",
        )
        .with_status(StatusCode::BAD_REQUEST)
        .into_response();
    };
    let form_caller = Caller {
        presented: Presented::Secret(password.to_string()),
        remote: caller.remote,
        origin: caller.origin.clone(),
    };
    match authorize(registry, &form_caller, &Need::Base).await {
        Ok(grant) => issue_token(registry, &grant.secret),
        Err(why) => refuse(
            registry,
            &form_caller,
            &Need::Base,
            action,
            &Method::POST,
            why,
        ),
    }
}

/// A response with headers and no body.
fn empty(status: StatusCode, headers: &[(&str, String)]) -> Response {
    let mut response = Response::builder().status(status);
    for (name, value) in headers {
        response = response.header(*name, value.as_str());
    }
    response = response.header(header::CONTENT_LENGTH, "0");
    response
        .body(Body::empty())
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

/// The `Range` header of an upload holding `len` bytes. The inclusive end
/// of an empty upload is written `0-0`, as distribution/distribution does
/// and clients expect.
pub(crate) fn range_value(len: u64) -> HeaderValue {
    let end = len.saturating_sub(1);
    HeaderValue::from_str(&format!("0-{end}")).unwrap_or(HeaderValue::from_static("0-0"))
}

fn query(request_query: Option<&str>, key: &str) -> Option<String> {
    query_pairs(request_query)
        .into_iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v)
}

fn quotas(registry: &Registry) -> Quotas {
    Quotas {
        repository: registry.inner.limits.repository_quota,
        total: registry.inner.limits.total_quota,
    }
}

fn quota_exceeded(e: &QuotaExceeded) -> ApiError {
    ApiError::new(ErrorCode::Denied, e.to_string())
}

impl From<LinkError> for ApiError {
    fn from(e: LinkError) -> ApiError {
        match e {
            LinkError::Database(e) => e.into(),
            LinkError::Quota(q) => quota_exceeded(&q),
        }
    }
}

/// Whether the caller may link `digest`, found in the shared store, into a
/// repository without uploading it. Knowing a digest must not be a way to
/// read another repository's blob: when repositories hold it, the caller
/// must be allowed to pull from one of them. A blob no repository holds was
/// written by gantry itself (a build's layer) and may be linked.
async fn may_link(registry: &Registry, grant: &Grant, digest: &Digest) -> Result<bool, ApiError> {
    let holders = registry
        .inner
        .metadata
        .repositories_with_blob(digest, MAX_LINK_SOURCES)
        .await?;
    if holders.is_empty() {
        return Ok(true);
    }
    for holder in &holders {
        let access = RegistryAccess::Pull { repository: holder };
        if registry
            .inner
            .auth
            .authorize(&grant.secret, access)
            .await
            .is_ok()
        {
            return Ok(true);
        }
    }
    Ok(false)
}

fn blob_unknown(digest: &Digest) -> ApiError {
    ApiError::new(ErrorCode::BlobUnknown, format!("blob {digest} is unknown"))
        .with_detail(serde_json::json!({ "digest": digest.as_str() }))
}

// ---------------------------------------------------------------- blobs

/// What a `Range` request header asks of a blob of `size` bytes.
#[derive(Debug, PartialEq, Eq)]
enum ByteRange {
    Whole,
    /// Inclusive bounds.
    Part(u64, u64),
    Unsatisfiable,
}

/// Parses `bytes=a-b`, `bytes=a-` and `bytes=-n`. Anything else (several
/// ranges, other units, garbage) is ignored and the whole blob is sent,
/// which HTTP allows.
fn byte_range(header: Option<&HeaderValue>, size: u64) -> ByteRange {
    let Some(spec) = header
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.trim().strip_prefix("bytes="))
    else {
        return ByteRange::Whole;
    };
    if spec.contains(',') {
        return ByteRange::Whole;
    }
    let Some((a, b)) = spec.split_once('-') else {
        return ByteRange::Whole;
    };
    let (a, b) = (a.trim(), b.trim());
    let (start, end) = match (a.parse::<u64>(), b.parse::<u64>()) {
        (Ok(start), Ok(end)) if start <= end => (start, end.min(size.saturating_sub(1))),
        (Ok(start), Err(_)) if b.is_empty() => (start, size.saturating_sub(1)),
        (Err(_), Ok(n)) if a.is_empty() && n > 0 => {
            (size.saturating_sub(n), size.saturating_sub(1))
        }
        _ => return ByteRange::Whole,
    };
    if start >= size {
        ByteRange::Unsatisfiable
    } else {
        ByteRange::Part(start, end)
    }
}

async fn get_blob(
    registry: &Registry,
    name: &str,
    digest: &str,
    head: bool,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let repo = RepoName::parse(name)?;
    let digest = Digest::parse(digest)?;
    let inner = &registry.inner;
    let Some(size) = inner.metadata.blob_size(&repo, &digest).await? else {
        return Err(blob_unknown(&digest));
    };
    let artifacts = inner.artifacts.clone();
    let key = digest.as_str().to_string();
    let file = match tokio::task::spawn_blocking(move || artifacts.open_blob(&key))
        .await
        .map_err(RegistryError::from)?
    {
        Ok(file) => file,
        Err(gantry_store::ArtifactError::NotFound(_)) => return Err(blob_unknown(&digest)),
        Err(e) => return Err(RegistryError::from(e).into()),
    };
    let common = |status: StatusCode, len: u64| {
        Response::builder()
            .status(status)
            .header(header::CONTENT_TYPE, "application/octet-stream")
            .header(header::CONTENT_LENGTH, len)
            .header(header::ACCEPT_RANGES, "bytes")
            .header(CONTENT_DIGEST, digest.as_str())
    };
    let (builder, start, len) = match byte_range(headers.get(header::RANGE), size) {
        _ if head => (common(StatusCode::OK, size), 0, 0),
        ByteRange::Whole => (common(StatusCode::OK, size), 0, size),
        ByteRange::Part(start, end) => {
            let len = end - start + 1;
            let builder = common(StatusCode::PARTIAL_CONTENT, len)
                .header(header::CONTENT_RANGE, format!("bytes {start}-{end}/{size}"));
            (builder, start, len)
        }
        ByteRange::Unsatisfiable => {
            return Ok(Response::builder()
                .status(StatusCode::RANGE_NOT_SATISFIABLE)
                .header(header::CONTENT_RANGE, format!("bytes */{size}"))
                .header(header::CONTENT_LENGTH, 0)
                .body(Body::empty())
                .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response()));
        }
    };
    let body = if head || len == 0 {
        Body::empty()
    } else {
        let mut file = tokio::fs::File::from_std(file);
        if start > 0 {
            file.seek(std::io::SeekFrom::Start(start))
                .await
                .map_err(|e| RegistryError::Io {
                    path: digest.to_string(),
                    source: e,
                })?;
        }
        Body::from_stream(tokio_util::io::ReaderStream::with_capacity(
            file.take(len),
            256 * 1024,
        ))
    };
    Ok(builder
        .body(body)
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response()))
}

async fn delete_blob(registry: &Registry, name: &str, digest: &str) -> Result<Response, ApiError> {
    let repo = RepoName::parse(name)?;
    let digest = Digest::parse(digest)?;
    if registry.inner.metadata.unlink_blob(&repo, &digest).await? {
        Ok(empty(StatusCode::ACCEPTED, &[]))
    } else {
        Err(blob_unknown(&digest))
    }
}

// -------------------------------------------------------------- uploads

fn upload_location(repo: &RepoName, id: uuid::Uuid) -> String {
    format!("/v2/{repo}/blobs/uploads/{}", id.hyphenated())
}

/// The answer to an upload that is open and holds `len` bytes.
fn upload_accepted(status: StatusCode, repo: &RepoName, id: uuid::Uuid, len: u64) -> Response {
    let range = range_value(len).to_str().unwrap_or("0-0").to_string();
    empty(
        status,
        &[
            ("Location", upload_location(repo, id)),
            ("Range", range),
            (UPLOAD_UUID, id.hyphenated().to_string()),
        ],
    )
}

fn blob_created(repo: &RepoName, digest: &Digest) -> Response {
    empty(
        StatusCode::CREATED,
        &[
            ("Location", format!("/v2/{repo}/blobs/{digest}")),
            (CONTENT_DIGEST, digest.to_string()),
        ],
    )
}

async fn start_upload(
    registry: &Registry,
    grant: &Grant,
    name: &str,
    q: Option<&str>,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let repo = RepoName::parse(name)?;
    let inner = &registry.inner;
    if let Some(mount) = query(q, "mount") {
        let digest = Digest::parse(&mount)?;
        // From finding the blob to linking it, garbage collection waits.
        let _linking = inner.gc.read().await;
        let found = match query(q, "from") {
            // Mounting reads the source: the caller must be allowed to
            // pull from it. If not, the mount quietly becomes an upload,
            // which tells the caller nothing about the source.
            Some(from) => {
                let from = RepoName::parse(&from)?;
                let access = RegistryAccess::Pull {
                    repository: from.as_str(),
                };
                if inner.auth.authorize(&grant.secret, access).await.is_ok() {
                    inner.metadata.blob_size(&from, &digest).await?
                } else {
                    None
                }
            }
            // OCI 1.1 lets a client mount without naming the source; any
            // repository holding the blob that the caller may pull from
            // will do.
            None if may_link(registry, grant, &digest).await? => {
                inner.metadata.blob_size_anywhere(&digest).await?
            }
            None => None,
        };
        if let Some(size) = found
            && inner.artifacts.blob_exists(digest.as_str())
        {
            inner
                .metadata
                .link_blob(&repo, &digest, size, quotas(registry))
                .await?;
            return Ok(blob_created(&repo, &digest));
        }
        // The specification's fallback: an ordinary upload session.
    } else if let Some(expected) = query(q, "digest") {
        // A monolithic upload: the whole blob in this request's body.
        let expected = Digest::parse(&expected)?;
        refuse_oversized(registry, headers, 0)?;
        check_quota(
            registry,
            &repo,
            &expected,
            declared_length(headers).unwrap_or(0),
        )
        .await?;
        let id = create_upload(registry, &repo).await?;
        let Some(appender) = inner.uploads.writer(id).await? else {
            return Err(upload_unknown());
        };
        return finish_upload(registry, &repo, appender, body, &expected).await;
    }
    // A repository with no room left gets no session to fill.
    if let Some(limit) = inner.limits.repository_quota {
        let held = inner.metadata.repository_bytes(&repo).await?;
        if held >= limit {
            return Err(quota_exceeded(&QuotaExceeded::Repository {
                repo: repo.to_string(),
                held,
                limit,
                adding: 0,
            }));
        }
    }
    let id = create_upload(registry, &repo).await?;
    Ok(upload_accepted(StatusCode::ACCEPTED, &repo, id, 0))
}

fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
}

/// Refuses a chunk whose declared length would take an upload holding
/// `len` bytes over the blob size limit, before a byte of it is read.
fn refuse_oversized(registry: &Registry, headers: &HeaderMap, len: u64) -> Result<(), ApiError> {
    let max = registry.inner.limits.max_blob_size;
    match declared_length(headers) {
        Some(n) if len.saturating_add(n) > max => Err(uploads::blob_too_large(max)),
        _ => Ok(()),
    }
}

/// Refuses early a blob of `size` bytes that could not be linked into
/// `repo` within the quotas. The link itself checks again.
async fn check_quota(
    registry: &Registry,
    repo: &RepoName,
    digest: &Digest,
    size: u64,
) -> Result<(), ApiError> {
    match registry
        .inner
        .metadata
        .check_quotas(repo, &[(digest.clone(), size)], quotas(registry))
        .await?
    {
        Ok(()) => Ok(()),
        Err(e) => Err(quota_exceeded(&e)),
    }
}

async fn create_upload(registry: &Registry, repo: &RepoName) -> Result<uuid::Uuid, ApiError> {
    let inner = &registry.inner;
    let id = inner.uploads.create()?;
    let limits = &inner.limits;
    let inserted = inner
        .metadata
        .insert_upload(
            &id.hyphenated().to_string(),
            repo,
            limits.max_uploads,
            limits.max_uploads_per_repository,
        )
        .await;
    let refused = match inserted {
        Ok(Ok(())) => return Ok(id),
        Ok(Err(UploadsFull::Registry { limit })) => ApiError::new(
            ErrorCode::TooManyRequests,
            format!("too many open uploads: the registry allows {limit}; finish or cancel some"),
        ),
        Ok(Err(UploadsFull::Repository { repo, limit })) => ApiError::new(
            ErrorCode::TooManyRequests,
            format!(
                "too many open uploads: repository {repo} allows {limit}; finish or cancel some"
            ),
        ),
        Err(e) => e.into(),
    };
    if let Some(appender) = inner.uploads.writer(id).await? {
        inner.uploads.discard(appender).await?;
    }
    Err(refused)
}

/// Ends an upload that failed for good: its bytes and its row go.
async fn discard_upload(registry: &Registry, id: uuid::Uuid) -> Result<(), ApiError> {
    let inner = &registry.inner;
    if let Some(appender) = inner.uploads.writer(id).await? {
        inner.uploads.discard(appender).await?;
    }
    inner
        .metadata
        .delete_upload(&id.hyphenated().to_string())
        .await?;
    Ok(())
}

/// Appends a request body to an upload within the blob size limit; an
/// upload that would grow beyond it is discarded.
async fn append(
    registry: &Registry,
    appender: Appender,
    headers: &HeaderMap,
    body: Body,
    start: Option<u64>,
) -> Result<Appender, ApiError> {
    let id = appender.id();
    let max = registry.inner.limits.max_blob_size;
    let result = match refuse_oversized(registry, headers, appender.len()) {
        Ok(()) => appender.append(body, start, max).await,
        Err(e) => {
            drop(appender);
            Err(e)
        }
    };
    match result {
        Err(e) if e.code == ErrorCode::SizeInvalid => {
            discard_upload(registry, id).await?;
            Err(e)
        }
        other => other,
    }
}

fn upload_unknown() -> ApiError {
    ApiError::new(ErrorCode::BlobUploadUnknown, "upload is unknown")
}

/// Resolves an upload id within a repository: an id started in another
/// repository is as unknown as one never started.
async fn upload_id(registry: &Registry, repo: &RepoName, id: &str) -> Result<uuid::Uuid, ApiError> {
    let id = uploads::parse_id(id).ok_or_else(upload_unknown)?;
    let owner = registry
        .inner
        .metadata
        .upload_repository(&id.hyphenated().to_string())
        .await?;
    if owner.as_deref() == Some(repo.as_str()) {
        Ok(id)
    } else {
        Err(upload_unknown())
    }
}

/// Parses `Content-Range: a-b` (or `bytes a-b/total`) into its start.
fn content_range_start(headers: &HeaderMap) -> Result<Option<u64>, ApiError> {
    let Some(value) = headers.get(header::CONTENT_RANGE) else {
        return Ok(None);
    };
    let bad = || {
        ApiError::new(ErrorCode::BlobUploadInvalid, "malformed Content-Range")
            .with_status(StatusCode::RANGE_NOT_SATISFIABLE)
    };
    let text = value.to_str().map_err(|_| bad())?.trim();
    let text = text.strip_prefix("bytes ").unwrap_or(text);
    let text = text.split('/').next().unwrap_or(text);
    let (start, end) = text.split_once('-').ok_or_else(bad)?;
    let start = start.trim().parse::<u64>().map_err(|_| bad())?;
    let end = end.trim().parse::<u64>().map_err(|_| bad())?;
    if end < start {
        return Err(bad());
    }
    Ok(Some(start))
}

async fn patch_upload(
    registry: &Registry,
    name: &str,
    id: &str,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let repo = RepoName::parse(name)?;
    let id = upload_id(registry, &repo, id).await?;
    let start = content_range_start(headers)?;
    let Some(appender) = registry.inner.uploads.writer(id).await? else {
        return Err(upload_unknown());
    };
    let appender = append(registry, appender, headers, body, start).await?;
    Ok(upload_accepted(
        StatusCode::ACCEPTED,
        &repo,
        appender.id(),
        appender.len(),
    ))
}

async fn put_upload(
    registry: &Registry,
    name: &str,
    id: &str,
    q: Option<&str>,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let repo = RepoName::parse(name)?;
    let id = upload_id(registry, &repo, id).await?;
    let expected = query(q, "digest").ok_or_else(|| {
        ApiError::new(
            ErrorCode::DigestInvalid,
            "completing an upload needs ?digest=",
        )
    })?;
    let expected = Digest::parse(&expected)?;
    let Some(appender) = registry.inner.uploads.writer(id).await? else {
        return Err(upload_unknown());
    };
    let appender = append(registry, appender, headers, body, None).await?;
    finish_upload(registry, &repo, appender, Body::empty(), &expected).await
}

/// Appends the final chunk, checks the digest of the whole upload and, if
/// it matches, moves the blob into the store and links it. On a mismatch
/// the upload is discarded and nothing becomes visible.
async fn finish_upload(
    registry: &Registry,
    repo: &RepoName,
    appender: Appender,
    body: Body,
    expected: &Digest,
) -> Result<Response, ApiError> {
    let inner = &registry.inner;
    let id = appender.id();
    let key = id.hyphenated().to_string();
    let appender = append(registry, appender, &HeaderMap::new(), body, None).await?;
    let (appender, actual) = appender.digest().await?;
    if &actual != expected {
        inner.uploads.discard(appender).await?;
        inner.metadata.delete_upload(&key).await?;
        return Err(ApiError::new(
            ErrorCode::DigestInvalid,
            format!("the upload's digest is {actual}, not {expected}"),
        )
        .with_detail(serde_json::json!({
            "expected": expected.as_str(),
            "actual": actual.as_str(),
        })));
    }
    // Garbage collection waits until the blob is linked: it must not
    // remove bytes this upload found already stored.
    let _linking = inner.gc.read().await;
    // Checked before the bytes move into the store, so a refused blob
    // leaves nothing behind; the link checks again, atomically.
    if let Err(e) = check_quota(registry, repo, expected, appender.len()).await {
        inner.uploads.discard(appender).await?;
        inner.metadata.delete_upload(&key).await?;
        return Err(e);
    }
    let size = inner
        .uploads
        .commit(appender, expected, &inner.artifacts)
        .await?;
    if let Err(e) = inner
        .metadata
        .complete_upload(&key, repo, expected, size, quotas(registry))
        .await
    {
        // Another push won the race for the quota. The bytes stay in the
        // shared store, unlinked, like those of a deleted blob, until
        // garbage collection finds them unused.
        inner.metadata.delete_upload(&key).await?;
        inner.metadata.record_released(expected).await?;
        return Err(e.into());
    }
    tracing::debug!(repository = %repo, digest = %expected, size, "blob pushed");
    Ok(blob_created(repo, expected))
}

async fn upload_status(registry: &Registry, name: &str, id: &str) -> Result<Response, ApiError> {
    let repo = RepoName::parse(name)?;
    let id = upload_id(registry, &repo, id).await?;
    let len = registry.inner.uploads.size(id).ok_or_else(upload_unknown)?;
    Ok(upload_accepted(StatusCode::NO_CONTENT, &repo, id, len))
}

async fn cancel_upload(registry: &Registry, name: &str, id: &str) -> Result<Response, ApiError> {
    let repo = RepoName::parse(name)?;
    let id = upload_id(registry, &repo, id).await?;
    let inner = &registry.inner;
    if let Some(appender) = inner.uploads.writer(id).await? {
        inner.uploads.discard(appender).await?;
    }
    inner
        .metadata
        .delete_upload(&id.hyphenated().to_string())
        .await?;
    Ok(empty(StatusCode::NO_CONTENT, &[]))
}

// ------------------------------------------------------------ manifests

fn manifest_unknown(reference: &str) -> ApiError {
    ApiError::new(
        ErrorCode::ManifestUnknown,
        format!("manifest {reference} is unknown"),
    )
}

/// The digest a reference names in `repo`, if any.
async fn resolve(
    registry: &Registry,
    repo: &RepoName,
    reference: &Reference,
) -> Result<Option<Digest>, ApiError> {
    Ok(match reference {
        Reference::Digest(d) => Some(d.clone()),
        Reference::Tag(t) => registry.inner.metadata.tag(repo, t.as_str()).await?,
    })
}

async fn get_manifest(
    registry: &Registry,
    name: &str,
    reference: &str,
    head: bool,
) -> Result<Response, ApiError> {
    let repo = RepoName::parse(name)?;
    let metadata = &registry.inner.metadata;
    let found = match Reference::lookup(reference)? {
        Some(parsed) => match resolve(registry, &repo, &parsed).await? {
            Some(digest) => metadata.manifest(&repo, &digest).await?,
            None => None,
        },
        None => None,
    };
    let Some(manifest) = found else {
        if !metadata.repository_exists(&repo).await? {
            return Err(ApiError::new(
                ErrorCode::NameUnknown,
                format!("repository {repo} is unknown"),
            ));
        }
        return Err(manifest_unknown(reference));
    };
    let len = manifest.content.len();
    let body = if head {
        Body::empty()
    } else {
        Body::from(manifest.content)
    };
    Ok(Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, manifest.media_type)
        .header(header::CONTENT_LENGTH, len)
        .header(CONTENT_DIGEST, manifest.digest.as_str())
        .body(body)
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response()))
}

fn too_large(limit: usize) -> ApiError {
    ApiError::new(
        ErrorCode::ManifestInvalid,
        format!("manifest is larger than the registry's limit of {limit} bytes"),
    )
    .with_status(StatusCode::PAYLOAD_TOO_LARGE)
}

/// Reads a body of at most `limit` bytes; `None` when it is longer.
async fn read_limited(body: Body, limit: usize) -> Result<Option<Vec<u8>>, ApiError> {
    let mut stream = body.into_data_stream();
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| {
            ApiError::new(
                ErrorCode::ManifestInvalid,
                format!("the request body broke off: {e}"),
            )
        })?;
        if out.len() + chunk.len() > limit {
            return Ok(None);
        }
        out.extend_from_slice(&chunk);
    }
    Ok(Some(out))
}

async fn put_manifest(
    registry: &Registry,
    grant: &Grant,
    name: &str,
    reference: &str,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let repo = RepoName::parse(name)?;
    let reference = Reference::parse(reference)?;
    let limit = registry.inner.limits.max_manifest_size;
    if declared_length(headers).is_some_and(|n| n > limit as u64) {
        return Err(too_large(limit));
    }
    let Some(bytes) = read_limited(body, limit).await? else {
        return Err(too_large(limit));
    };
    let digest = Digest::of(&bytes);
    if let Reference::Digest(claimed) = &reference
        && claimed != &digest
    {
        return Err(ApiError::new(
            ErrorCode::DigestInvalid,
            format!("the manifest's digest is {digest}, not {claimed}"),
        ));
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let parsed = manifest::parse(&bytes, content_type)?;

    let inner = &registry.inner;
    // From the checks that find the manifest's blobs and children to the
    // write that references them, garbage collection waits.
    let _referencing = inner.gc.read().await;
    let mut links = Vec::new();
    for blob in &parsed.blobs {
        if inner.metadata.blob_size(&repo, blob).await?.is_some() {
            continue;
        }
        // A blob already in the store (pushed to another repository, or
        // written by gantry itself) needs no upload: link it, if the caller
        // could have read it anyway.
        let unknown = || {
            ApiError::new(
                ErrorCode::ManifestBlobUnknown,
                format!("blob {blob} referenced by the manifest is unknown"),
            )
            .with_detail(serde_json::json!({ "digest": blob.as_str() }))
        };
        if !may_link(registry, grant, blob).await? {
            return Err(unknown());
        }
        let artifacts = inner.artifacts.clone();
        let key = blob.as_str().to_string();
        let size = tokio::task::spawn_blocking(move || {
            artifacts
                .open_blob(&key)
                .ok()
                .and_then(|f| f.metadata().ok())
                .map(|m| m.len())
        })
        .await
        .map_err(RegistryError::from)?;
        match size {
            Some(size) => links.push((blob.clone(), size)),
            None => return Err(unknown()),
        }
    }
    for child in &parsed.children {
        if !inner.metadata.manifest_exists(&repo, child).await? {
            return Err(ApiError::new(
                ErrorCode::ManifestBlobUnknown,
                format!("manifest {child} referenced by the index is unknown"),
            )
            .with_detail(serde_json::json!({ "digest": child.as_str() })));
        }
    }
    let tag = match &reference {
        Reference::Tag(t) => Some(t.as_str()),
        Reference::Digest(_) => None,
    };
    let referrer = Referrer::of(&parsed);
    inner
        .metadata
        .put_manifest(
            NewManifest {
                repo: &repo,
                digest: &digest,
                media_type: parsed.media_type,
                content: &bytes,
                tag,
                links: &links,
                referrer: referrer.as_ref(),
            },
            quotas(registry),
        )
        .await?;
    tracing::info!(repository = %repo, tag = tag.unwrap_or(""), digest = %digest, "manifest pushed");
    let mut headers = vec![
        ("Location", format!("/v2/{repo}/manifests/{digest}")),
        (CONTENT_DIGEST, digest.to_string()),
    ];
    if let Some(referrer) = &referrer {
        headers.push((OCI_SUBJECT, referrer.subject.to_string()));
    }
    Ok(empty(StatusCode::CREATED, &headers))
}

async fn delete_manifest(
    registry: &Registry,
    name: &str,
    reference: &str,
) -> Result<Response, ApiError> {
    let repo = RepoName::parse(name)?;
    let metadata = &registry.inner.metadata;
    let deleted = match Reference::lookup(reference)? {
        Some(Reference::Digest(d)) => metadata.delete_manifest(&repo, &d).await?,
        // Deleting by tag removes the tag; the manifest stays reachable by
        // digest and through other tags.
        Some(Reference::Tag(t)) => metadata.delete_tag(&repo, t.as_str()).await?,
        None => false,
    };
    if deleted {
        Ok(empty(StatusCode::ACCEPTED, &[]))
    } else {
        Err(manifest_unknown(reference))
    }
}

// ---------------------------------------------------------------- lists

/// `n` and `last` of a paginated list; without `n` the whole list.
fn page(q: Option<&str>) -> Result<(Option<i64>, String), ApiError> {
    let n = match query(q, "n") {
        Some(n) => Some(n.parse::<i64>().ok().filter(|n| *n >= 0).ok_or_else(|| {
            ApiError::new(ErrorCode::Unsupported, format!("invalid page size n={n}"))
                .with_status(StatusCode::BAD_REQUEST)
        })?),
        None => None,
    };
    Ok((n, query(q, "last").unwrap_or_default()))
}

/// Cuts a list fetched with one item more than the page holds down to the
/// page; says whether anything follows it.
fn page_of(mut items: Vec<String>, n: Option<i64>) -> (Vec<String>, bool) {
    let Some(n) = n.and_then(|n| usize::try_from(n).ok()) else {
        return (items, false);
    };
    let more = items.len() > n;
    items.truncate(n);
    (items, more)
}

/// One more than `n`, the rows to fetch to learn whether a page of `n` is
/// the last.
fn fetch_count(n: Option<i64>) -> i64 {
    n.map_or(i64::MAX, |n| n.saturating_add(1))
}

/// A JSON list answer, with a `Link` to the next page when `more` follow
/// this one (and never for `n=0`, which the specification forbids).
fn list_response(
    path: &str,
    n: Option<i64>,
    items: &[String],
    more: bool,
    body: serde_json::Value,
) -> Response {
    let mut response = (
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response();
    if let (true, Some(n), Some(last)) = (more, n, items.last())
        && let Ok(link) =
            HeaderValue::from_str(&format!("<{path}?n={n}&last={last}>; rel=\"next\""))
    {
        response.headers_mut().insert(header::LINK, link);
    }
    response
}

async fn tags(registry: &Registry, name: &str, q: Option<&str>) -> Result<Response, ApiError> {
    let repo = RepoName::parse(name)?;
    let metadata = &registry.inner.metadata;
    if !metadata.repository_exists(&repo).await? {
        return Err(ApiError::new(
            ErrorCode::NameUnknown,
            format!("repository {repo} is unknown"),
        ));
    }
    let (n, last) = page(q)?;
    let (tags, more) = page_of(metadata.tags(&repo, &last, fetch_count(n)).await?, n);
    let body = serde_json::json!({ "name": repo.as_str(), "tags": tags });
    Ok(list_response(
        &format!("/v2/{repo}/tags/list"),
        n,
        &tags,
        more,
        body,
    ))
}

async fn catalog(registry: &Registry, q: Option<&str>) -> Result<Response, ApiError> {
    let (n, last) = page(q)?;
    let fetched = registry
        .inner
        .metadata
        .repositories(&last, fetch_count(n))
        .await?;
    let (repositories, more) = page_of(fetched, n);
    let body = serde_json::json!({ "repositories": repositories });
    Ok(list_response("/v2/_catalog", n, &repositories, more, body))
}

/// `GET /v2/<name>/referrers/<digest>`: an image index of the manifests
/// in `name` whose subject is `digest`, filtered by `artifactType` when
/// asked. Never a 404, not even for an unknown repository: a client takes
/// a 404 to mean the registry has no referrers API and falls back to the
/// referrers tag. Pages hold at most `n` (at most 1000) descriptors and
/// the manifest size limit's worth of JSON; a `Link` names the next one.
async fn referrers(
    registry: &Registry,
    name: &str,
    digest: &str,
    q: Option<&str>,
) -> Result<Response, ApiError> {
    let repo = RepoName::parse(name)?;
    let subject = Digest::parse(digest)?;
    let artifact_type = query(q, "artifactType").filter(|t| !t.is_empty());
    let (n, last) = page(q)?;
    let n = n.map_or(MAX_REFERRERS_PAGE, |n| n.min(MAX_REFERRERS_PAGE));
    let rows = registry
        .inner
        .metadata
        .referrers(&repo, &subject, artifact_type.as_deref(), &last, n + 1)
        .await?;
    let budget = registry.inner.limits.max_manifest_size;
    let mut manifests = Vec::new();
    let mut used = 0;
    let mut more = false;
    for row in rows {
        if i64::try_from(manifests.len()).is_ok_and(|len| len >= n) {
            more = true;
            break;
        }
        let mut descriptor = serde_json::json!({
            "mediaType": row.media_type,
            "digest": row.digest,
            "size": row.size,
        });
        if let Some(t) = row.artifact_type {
            descriptor["artifactType"] = t.into();
        }
        if let Some(a) = row
            .annotations
            .and_then(|a| serde_json::from_str::<serde_json::Value>(&a).ok())
        {
            descriptor["annotations"] = a;
        }
        used += descriptor.to_string().len() + 1;
        if used > budget && !manifests.is_empty() {
            more = true;
            break;
        }
        manifests.push((row.digest, descriptor));
    }
    let body = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": manifest::OCI_INDEX,
        "manifests": manifests.iter().map(|(_, d)| d).collect::<Vec<_>>(),
    });
    let mut response = Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, manifest::OCI_INDEX);
    if artifact_type.is_some() {
        response = response.header(OCI_FILTERS_APPLIED, "artifactType");
    }
    if let (true, Some((last, _))) = (more, manifests.last()) {
        let mut link = format!("</v2/{repo}/referrers/{subject}?n={n}&last={last}");
        // The next page keeps the filter.
        if let Some(t) = &artifact_type {
            link.push_str("&artifactType=");
            link.push_str(&percent_encode(t));
        }
        link.push_str(">; rel=\"next\"");
        response = response.header(header::LINK, link);
    }
    Ok(response
        .body(Body::from(body.to_string()))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response()))
}

/// Percent-encodes everything but unreserved characters, for a query value.
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_ranges() {
        let h = |s: &'static str| HeaderValue::from_static(s);
        assert_eq!(byte_range(None, 10), ByteRange::Whole);
        assert_eq!(byte_range(Some(&h("bytes=2-4")), 10), ByteRange::Part(2, 4));
        assert_eq!(byte_range(Some(&h("bytes=2-")), 10), ByteRange::Part(2, 9));
        assert_eq!(byte_range(Some(&h("bytes=-3")), 10), ByteRange::Part(7, 9));
        assert_eq!(
            byte_range(Some(&h("bytes=5-100")), 10),
            ByteRange::Part(5, 9)
        );
        assert_eq!(
            byte_range(Some(&h("bytes=10-")), 10),
            ByteRange::Unsatisfiable
        );
        assert_eq!(byte_range(Some(&h("bytes=0-1,3-4")), 10), ByteRange::Whole);
        assert_eq!(byte_range(Some(&h("items=0-1")), 10), ByteRange::Whole);
        assert_eq!(byte_range(Some(&h("bytes=4-2")), 10), ByteRange::Whole);
    }
}
