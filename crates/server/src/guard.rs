//! The API's trust boundary, applied to every request before any handler
//! runs, in this order:
//!
//! 1. **Host**: a request whose `Host` is not an IP address, `localhost`,
//!    or a host named with `--public-url` is answered 421. A page on
//!    `evil.example` that rebinds its name to 127.0.0.1 still sends
//!    `Host: evil.example`, so DNS rebinding cannot reach the API.
//! 2. **Origin**: a browser request from another origin is answered 403
//!    (`auth.foreign_origin`).
//! 3. **Token**: every route but `/api/v1/health` and the webhook
//!    endpoint `/hooks/PIPELINE` (signed by a shared secret instead) needs
//!    `Authorization: Bearer <token>`; without a valid one, 401 with a
//!    stable code. The identity it yields is put into the request as a
//!    [`Caller`]; handlers check roles with [`Caller::require`].
//! 4. **Audit**: every mutation, and every refused request, is appended to
//!    the audit log with who, when, from where, what, and how it ended.
//!
//! Nothing in here ever logs or returns a token.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use gantry_auth::{AuditRecord, Auth, AuthError, Identity, Permission, Target};
use gantry_clock::now_ms;

/// Where requests may come from: the host names the API answers to.
#[derive(Debug, Clone, Default)]
pub struct HostPolicy {
    /// Host names (lower case, without port) from `--public-url`.
    pub public_hosts: Vec<String>,
    /// Origins (`https://host[:port]`) from `--public-url`.
    pub public_origins: Vec<String>,
    /// Whether the API listener serves TLS (the console's cookie is then
    /// `Secure`).
    pub tls: bool,
}

impl HostPolicy {
    /// A policy that also accepts the hosts of these URLs.
    pub fn with_public_urls(urls: &[String]) -> Result<HostPolicy, String> {
        let mut policy = HostPolicy::default();
        for url in urls {
            let (scheme, rest) = url
                .split_once("://")
                .ok_or_else(|| format!("--public-url {url} is not a URL (https://host[:port])"))?;
            if scheme != "http" && scheme != "https" {
                return Err(format!(
                    "--public-url {url}: the scheme must be http or https"
                ));
            }
            let authority = rest.split('/').next().unwrap_or_default();
            let host = host_of(authority);
            if host.is_empty() {
                return Err(format!("--public-url {url} names no host"));
            }
            policy.public_hosts.push(host);
            policy
                .public_origins
                .push(format!("{scheme}://{}", authority.to_ascii_lowercase()));
        }
        Ok(policy)
    }

    /// Whether a `Host` value names this server.
    fn allows_host(&self, host: &str) -> bool {
        let name = host_of(host);
        name == "localhost"
            || name
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<IpAddr>()
                .is_ok()
            || self.public_hosts.contains(&name)
    }

    /// Whether an `Origin` is this server itself (same host and port as the
    /// request's `Host`) or a public URL.
    fn allows_origin(&self, origin: &str, host: &str) -> bool {
        let origin = origin.to_ascii_lowercase();
        let Some((_, authority)) = origin.split_once("://") else {
            return false;
        };
        authority == host.to_ascii_lowercase() || self.public_origins.contains(&origin)
    }
}

/// The host name of `host[:port]` or `[v6]:port`, lower case.
fn host_of(authority: &str) -> String {
    let authority = authority.trim().to_ascii_lowercase();
    if let Some(rest) = authority.strip_prefix('[') {
        return rest
            .split_once(']')
            .map(|(h, _)| format!("[{h}]"))
            .unwrap_or_default();
    }
    match authority.rsplit_once(':') {
        Some((host, port)) if port.chars().all(|c| c.is_ascii_digit()) => host.to_string(),
        _ => authority,
    }
}

/// The state the guard needs.
#[derive(Clone)]
pub struct Guard {
    pub auth: Auth,
    pub hosts: Arc<HostPolicy>,
}

/// Who sent a request, once authenticated, and from where.
#[derive(Debug, Clone)]
pub struct Caller {
    pub identity: Identity,
    pub remote: Option<SocketAddr>,
}

impl Caller {
    /// Refuses (403) unless the caller may do `permission` on `target`.
    pub fn require(&self, permission: Permission, target: Target<'_>) -> Result<(), AuthError> {
        if self.identity.allows(permission, &target) {
            return Ok(());
        }
        let on = [
            target.pipeline.map(|p| format!("pipeline {p}")),
            target.environment.map(|e| format!("environment {e}")),
            target.parameter.map(|p| format!("parameter {p}")),
        ]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(", ");
        Err(AuthError::Forbidden {
            who: self.identity.name.clone(),
            what: if on.is_empty() {
                permission.as_str().to_string()
            } else {
                format!("{} {on}", permission.as_str())
            },
        })
    }
}

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Caller {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Caller, Response> {
        parts
            .extensions
            .get::<Caller>()
            .cloned()
            .ok_or_else(|| unauthenticated(&AuthError::MissingToken))
    }
}

/// What a handler wants recorded about its request, beyond method and path
/// (a parameter name, a pipeline). Put into a response's extensions.
#[derive(Debug, Clone)]
pub struct AuditNote(pub String);

/// The error code of a failed request, put into its response's extensions
/// by the API's error type so the audit log records it.
#[derive(Debug, Clone)]
pub struct ErrorCode(pub &'static str);

/// Marks a read that must be audited (a SecureString revealed).
#[derive(Debug, Clone)]
pub struct AuditRead;

/// The answer to a request that failed to authenticate: 401 with a
/// Bearer challenge and the error's code.
fn unauthenticated(error: &AuthError) -> Response {
    let mut response = coded(StatusCode::UNAUTHORIZED, error.code(), error.to_string());
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"gantry\""),
    );
    response
}

fn coded(status: StatusCode, code: &'static str, message: String) -> Response {
    let mut response = (
        status,
        axum::Json(gantry_api::ErrorBody::new(code, message)),
    )
        .into_response();
    response.extensions_mut().insert(ErrorCode(code));
    response
}

/// The bearer token of a request, if it sent one.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// The routes of build agents, the only ones an agent token reaches.
pub const AGENT_ROUTES: &str = "/api/v1/agent/";

/// Paths that answer without a token: the liveness probe, which says
/// nothing but that the server is up, and the webhook endpoint, whose
/// deliveries authenticate by the shared secret's signature instead
/// (`crate::triggers`), checked and audited by its handler.
fn is_public(path: &str) -> bool {
    path == "/api/v1/health" || path.starts_with("/hooks/")
}

/// A refusal when a request names a host this server does not answer to
/// (421), or comes from a foreign web origin (403), with its code.
pub(crate) fn refuse_foreign(
    hosts: &HostPolicy,
    request: &Request,
    host: Option<&str>,
) -> Option<(Response, &'static str)> {
    let Some(host) = host.filter(|h| hosts.allows_host(h)) else {
        let code = "auth.misdirected_host";
        return Some((
            coded(
                StatusCode::MISDIRECTED_REQUEST,
                code,
                "this server does not answer to that host name; add it with --public-url"
                    .to_string(),
            ),
            code,
        ));
    };
    let foreign = request
        .headers()
        .get(header::ORIGIN)
        .and_then(|o| o.to_str().ok())
        .is_some_and(|origin| !hosts.allows_origin(origin, host))
        || request
            .headers()
            .get("sec-fetch-site")
            .is_some_and(|s| s.as_bytes() == b"cross-site");
    if foreign {
        let code = "auth.foreign_origin";
        return Some((
            coded(
                StatusCode::FORBIDDEN,
                code,
                "requests from another web origin are refused".to_string(),
            ),
            code,
        ));
    }
    None
}

pub(crate) fn host_header(request: &Request) -> Option<String> {
    request
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_string)
        .or_else(|| request.uri().authority().map(|a| a.to_string()))
}

/// Appends an entry to the audit log; a failure to write it is logged (the
/// request it describes has been answered either way).
pub(crate) async fn append_audit(
    auth: &Auth,
    principal: Option<String>,
    remote: Option<SocketAddr>,
    action: String,
    target: Option<String>,
    outcome: &str,
) {
    let record = AuditRecord {
        seq: 0,
        at_ms: now_ms(),
        principal,
        remote: remote.map(|r| r.to_string()),
        action,
        target,
        outcome: outcome.to_string(),
    };
    if let Err(error) = auth.audit(&record).await {
        tracing::error!(%error, "Writing the audit log failed.");
    }
}

pub(crate) fn peer(request: &Request) -> Option<SocketAddr> {
    request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0)
}

/// The registry's middleware: host and origin (its tokens are checked by
/// the registry itself, through [`RegistryGuard`]).
pub async fn check_registry_host(
    State(guard): State<Guard>,
    request: Request,
    next: Next,
) -> Response {
    if let Some((response, code)) =
        refuse_foreign(&guard.hosts, &request, host_header(&request).as_deref())
    {
        let action = format!("registry {} {}", request.method(), request.uri().path());
        append_audit(&guard.auth, None, peer(&request), action, None, code).await;
        return response;
    }
    next.run(request).await
}

/// axum's extractors refuse a query string, a body or a path they cannot
/// read with a `text/plain` answer; the API answers every error as an
/// [`gantry_api::ErrorBody`] with a stable code, so such an answer is
/// rewritten into one (its text becomes the message). Any other answer
/// passes unchanged.
async fn error_body(response: Response) -> Response {
    let plain = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"text/plain"));
    if !response.status().is_client_error()
        || !plain
        || response.extensions().get::<ErrorCode>().is_some()
    {
        return response;
    }
    let status = response.status();
    let code = match status {
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "request.unsupported_media_type",
        StatusCode::UNPROCESSABLE_ENTITY => "request.invalid_body",
        StatusCode::PAYLOAD_TOO_LARGE => "request.too_large",
        StatusCode::REQUEST_TIMEOUT => "request.timeout",
        StatusCode::METHOD_NOT_ALLOWED => "request.method_not_allowed",
        _ => "request.invalid",
    };
    // A rejection's text is a sentence or two; more is cut.
    let text = axum::body::to_bytes(response.into_body(), 16 * 1024)
        .await
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    coded(status, code, text)
}

/// The most a JSON body may hold: axum's `Json` limit, which it kept before
/// [`object_body`] read bodies first.
const MAX_JSON_BODY: usize = 2 * 1024 * 1024;

/// The most the end of an agent's job may hold: its outputs' manifests
/// (some 400,000 files).
pub(crate) const MAX_AGENT_FINISH_BODY: usize = 64 * 1024 * 1024;

/// Whether `path` is an agent's `POST /api/v1/agent/jobs/ID/finish`.
pub(crate) fn is_agent_finish(path: &str) -> bool {
    path.strip_prefix(AGENT_ROUTES)
        .and_then(|rest| rest.strip_prefix("jobs/"))
        .and_then(|rest| rest.strip_suffix("/finish"))
        .is_some_and(|id| !id.is_empty() && !id.contains('/'))
}

/// How long a client may take to send a JSON body once its headers are in:
/// a body trickled a byte at a time must not hold a handler (and its
/// connection slot) for ever.
pub const JSON_BODY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// serde reads a struct from a JSON array too (`[]` is a request of
/// defaults), yet every body the API takes is an object: a JSON body that
/// is an array or a scalar is refused (422) before a handler reads it.
async fn object_body(request: Request) -> Result<Request, Response> {
    let json = request
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !json {
        return Ok(request);
    }
    // A build agent's end of a job carries its outputs' manifests, one
    // entry per file.
    let limit = if is_agent_finish(request.uri().path()) {
        MAX_AGENT_FINISH_BODY
    } else {
        MAX_JSON_BODY
    };
    let (parts, body) = request.into_parts();
    let read = tokio::time::timeout(JSON_BODY_TIMEOUT, axum::body::to_bytes(body, limit));
    let Ok(read) = read.await else {
        return Err(coded(
            StatusCode::REQUEST_TIMEOUT,
            "request.timeout",
            format!(
                "the request body did not arrive within {} s",
                JSON_BODY_TIMEOUT.as_secs()
            ),
        ));
    };
    let Ok(bytes) = read else {
        return Err(coded(
            StatusCode::PAYLOAD_TOO_LARGE,
            "request.too_large",
            format!("a request body holds at most {limit} bytes"),
        ));
    };
    if bytes
        .iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|&b| b != b'{')
    {
        return Err(coded(
            StatusCode::UNPROCESSABLE_ENTITY,
            "request.invalid_body",
            "the body must be a JSON object".to_string(),
        ));
    }
    Ok(Request::from_parts(parts, axum::body::Body::from(bytes)))
}

/// The middleware: host, origin, token, then the handler, then the audit.
pub async fn check(State(guard): State<Guard>, mut request: Request, next: Next) -> Response {
    let remote = peer(&request);
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let host = host_header(&request);
    let audit = |principal: Option<String>, outcome: &'static str, target: Option<String>| {
        append_audit(
            &guard.auth,
            principal,
            remote,
            format!("{method} {path}"),
            target,
            outcome,
        )
    };
    if let Some((response, code)) = refuse_foreign(&guard.hosts, &request, host.as_deref()) {
        audit(None, code, None).await;
        return response;
    }
    if is_public(&path) {
        return error_body(next.run(request).await).await;
    }
    let identity = match bearer(request.headers()) {
        None => Err(AuthError::MissingToken),
        Some(token) => guard.auth.authenticate(token, now_ms()),
    };
    let identity = match identity {
        Ok(identity) => identity,
        Err(error) => {
            audit(None, error.code(), None).await;
            return unauthenticated(&error);
        }
    };
    let principal = identity.name.clone();
    let agent_route = path.starts_with(AGENT_ROUTES);
    if identity.agent_only() && !agent_route {
        // An agent's token takes work and reports it: every other route
        // is refused before its handler, whatever it would allow a grant.
        let error = AuthError::Forbidden {
            who: principal.clone(),
            what: format!("{method} {path} (an agent token reaches only {AGENT_ROUTES})"),
        };
        audit(Some(principal), error.code(), None).await;
        return coded(StatusCode::FORBIDDEN, error.code(), error.to_string());
    }
    request.extensions_mut().insert(Caller { identity, remote });
    let response = match object_body(request).await {
        Ok(request) => error_body(next.run(request).await).await,
        Err(refused) => refused,
    };
    let mutation = !matches!(method, Method::GET | Method::HEAD | Method::OPTIONS);
    let refused = matches!(
        response.status(),
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN
    );
    // An agent's polls, heartbeats, log lines and blobs are its routine:
    // only what it takes (a poll that took a job notes it) and what is
    // refused are audited.
    let routine = agent_route
        && response.status().is_success()
        && response.extensions().get::<AuditNote>().is_none();
    if (mutation && !routine) || refused || response.extensions().get::<AuditRead>().is_some() {
        let outcome = response
            .extensions()
            .get::<ErrorCode>()
            .map(|c| c.0)
            .unwrap_or(if response.status().is_success() {
                "ok"
            } else {
                "error"
            });
        let target = response
            .extensions()
            .get::<AuditNote>()
            .map(|n| n.0.clone());
        audit(Some(principal), outcome, target).await;
    }
    response
}

/// The embedded registry's side of the trust boundary: a gantry token (or
/// a build's registry-only token) as Bearer or Basic password. Pulling
/// needs any grant; pushing and deleting need the operator role (of any
/// scope: images are not scoped to environments).
pub struct RegistryGuard {
    pub auth: Auth,
}

impl gantry_registry::RegistryAuth for RegistryGuard {
    fn authorize<'a>(
        &'a self,
        secret: &'a str,
        access: gantry_registry::RegistryAccess<'a>,
    ) -> gantry_registry::AuthFuture<'a> {
        use gantry_registry::{AuthDenied, RegistryAccess};
        Box::pin(async move {
            let identity = self
                .auth
                .authenticate_for(secret, now_ms(), gantry_auth::Audience::Registry)
                .map_err(|_| AuthDenied::Unauthenticated)?;
            let allowed = match access {
                RegistryAccess::Base | RegistryAccess::Catalog | RegistryAccess::Pull { .. } => {
                    identity.allows(Permission::Read, &Target::any())
                }
                RegistryAccess::Push { .. } | RegistryAccess::Delete { .. } => {
                    identity.has_role(gantry_auth::Role::Operator)
                }
            };
            if allowed {
                Ok(identity.name)
            } else {
                Err(AuthDenied::Forbidden)
            }
        })
    }

    fn audit(&self, record: gantry_registry::RegistryAuditRecord) {
        let auth = self.auth.clone();
        tokio::spawn(async move {
            append_audit(
                &auth,
                record.principal,
                record.remote,
                record.action,
                Some(record.target),
                &record.outcome,
            )
            .await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_that_name_this_server_and_no_other() {
        let policy = HostPolicy::with_public_urls(&["https://gantry.example.com".into()]).unwrap();
        for ok in [
            "127.0.0.1:7700",
            "localhost:7700",
            "LOCALHOST",
            "[::1]:7700",
            "10.1.2.3",
            "gantry.example.com",
            "Gantry.Example.com:443",
        ] {
            assert!(policy.allows_host(ok), "{ok}");
        }
        for refused in [
            "evil.example",
            "evil.example:7700",
            "localhost.evil.example",
            "",
            "127.0.0.1.evil.example",
        ] {
            assert!(!policy.allows_host(refused), "{refused}");
        }
    }

    #[test]
    fn origins_are_the_server_itself_or_a_public_url() {
        let policy = HostPolicy::with_public_urls(&["https://gantry.example.com".into()]).unwrap();
        assert!(policy.allows_origin("http://127.0.0.1:7700", "127.0.0.1:7700"));
        assert!(policy.allows_origin("https://gantry.example.com", "10.0.0.1:7700"));
        assert!(!policy.allows_origin("http://evil.example", "127.0.0.1:7700"));
        assert!(!policy.allows_origin("http://127.0.0.1:9999", "127.0.0.1:7700"));
        assert!(!policy.allows_origin("null", "127.0.0.1:7700"));
    }

    #[test]
    fn only_an_agents_finish_takes_the_larger_body() {
        assert!(is_agent_finish("/api/v1/agent/jobs/abc/finish"));
        for path in [
            "/api/v1/agent/jobs//finish",
            "/api/v1/agent/jobs/a/b/finish",
            "/api/v1/agent/jobs/abc/log",
            "/api/v1/executions/abc/finish",
            "/api/v1/agent/poll",
        ] {
            assert!(!is_agent_finish(path), "{path}");
        }
    }

    #[test]
    fn bad_public_urls_are_refused() {
        for url in ["gantry.example.com", "ftp://x", "https://"] {
            assert!(
                HostPolicy::with_public_urls(&[url.into()]).is_err(),
                "{url}"
            );
        }
    }
}
