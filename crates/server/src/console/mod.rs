//! The web console: server-rendered pages (askama templates in
//! `crates/server/templates/`, CSS and a little JavaScript embedded from
//! `crates/server/assets/`), served on the API listener at `/`.
//!
//! The console holds no query or authorization logic of its own: a page
//! reads the typed answers of the JSON API ([`gantry_api`]) by calling the
//! API's routes in-process ([`crate::api::routes`]) as the signed-in
//! [`Caller`], and a form does the same with the API's request types, so
//! every check the API makes (roles, scopes, approval policies, limits)
//! applies to the console unchanged, whatever buttons a page shows.
//!
//! Around the pages sits [`check`]: the guard's Host and Origin checks, the
//! session ([`session`]), the CSRF token of every POST, and the audit log.
//! Live updates come from [`live`] (server-sent events fed by
//! [`ControlPlane::changes`]); with JavaScript off every page still works.

mod live;
mod pages;
pub mod session;

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use gantry_api::ErrorBody;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tower::ServiceExt;

use crate::control::ControlPlane;
use crate::guard::{self, Caller, HostPolicy};
pub use session::{Session, SessionLimits, Sessions};

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "gantry_session";
/// The cookie that carries the sign-in form's CSRF token (no session yet).
pub const SIGNIN_COOKIE: &str = "gantry_signin";
/// The most a console form may send.
const FORM_LIMIT: usize = 64 * 1024;

/// The console's state, shared by its handlers.
#[derive(Clone)]
pub struct Console {
    inner: Arc<Inner>,
}

struct Inner {
    plane: ControlPlane,
    /// The API's routes without the guard: called in-process with the
    /// session's [`Caller`] in the request.
    api: Router,
    sessions: Sessions,
    hosts: HostPolicy,
}

impl Console {
    fn plane(&self) -> &ControlPlane {
        &self.inner.plane
    }

    fn sessions(&self) -> &Sessions {
        &self.inner.sessions
    }

    /// `GET uri` of the JSON API as `caller`, read as `T`.
    async fn get<T: DeserializeOwned>(&self, caller: &Caller, uri: &str) -> Result<T, Failure> {
        self.api(caller, Method::GET, uri, None::<&()>).await
    }

    /// `POST uri` of the JSON API as `caller` with `body`, read as `T`.
    async fn post<T: DeserializeOwned>(
        &self,
        caller: &Caller,
        uri: &str,
        body: &impl Serialize,
    ) -> Result<T, Failure> {
        self.api(caller, Method::POST, uri, Some(body)).await
    }

    /// Calls the JSON API as `caller`, and reads its answer as `T`.
    async fn api<T: DeserializeOwned>(
        &self,
        caller: &Caller,
        method: Method,
        uri: &str,
        body: Option<&impl Serialize>,
    ) -> Result<T, Failure> {
        let mut request = Request::builder().method(method).uri(uri);
        let body = match body {
            Some(body) => {
                request = request.header(header::CONTENT_TYPE, "application/json");
                Body::from(serde_json::to_vec(body).map_err(Failure::internal)?)
            }
            None => Body::empty(),
        };
        let mut request = request.body(body).map_err(Failure::internal)?;
        request.extensions_mut().insert(caller.clone());
        let response = self
            .inner
            .api
            .clone()
            .oneshot(request)
            .await
            .map_err(Failure::internal)?;
        let status = response.status();
        let code = response.extensions().get::<guard::ErrorCode>().map(|c| c.0);
        let bytes = axum::body::to_bytes(response.into_body(), 64 << 20)
            .await
            .map_err(Failure::internal)?;
        if status.is_success() {
            return serde_json::from_slice(&bytes).map_err(Failure::internal);
        }
        let error: ErrorBody = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| ErrorBody::new("internal", "the API's answer did not read"));
        Err(Failure {
            status,
            code: code.unwrap_or("internal"),
            message: error.message,
        })
    }
}

/// Why a page could not be shown or a form not carried out: the API's
/// status, code and message, shown on an error page.
#[derive(Debug)]
pub struct Failure {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl Failure {
    fn internal(error: impl std::fmt::Display) -> Failure {
        tracing::error!(%error, "A console page failed.");
        Failure {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            code: "internal",
            message: "the console failed to read the server's answer".to_string(),
        }
    }

    fn not_found(what: String) -> Failure {
        Failure {
            status: StatusCode::NOT_FOUND,
            code: "not_found",
            message: what,
        }
    }

    /// The API's 404 as a not-found page that names `what` was asked for;
    /// any other failure as it is.
    fn missing(self, what: impl FnOnce() -> String) -> Failure {
        match self.status {
            StatusCode::NOT_FOUND => Failure::not_found(what()),
            _ => self,
        }
    }
}

/// A page's query string read as `T`. One that does not read (`?page=abc`)
/// is a 400 page with a way back, not axum's plain-text rejection.
pub(crate) struct PageQuery<T>(pub T);

impl<T, S> axum::extract::FromRequestParts<S> for PageQuery<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = Failure;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Failure> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(q)| PageQuery(q))
            .map_err(|rejection| Failure {
                status: StatusCode::BAD_REQUEST,
                code: "request.invalid",
                message: format!(
                    "the address's query cannot be read: {}",
                    rejection.body_text()
                ),
            })
    }
}

/// The console with the default session limits.
pub fn router(plane: ControlPlane, hosts: HostPolicy) -> Router {
    router_with(plane, hosts, SessionLimits::default())
}

/// The console: its pages, forms, assets and live events, behind [`check`].
pub fn router_with(plane: ControlPlane, hosts: HostPolicy, limits: SessionLimits) -> Router {
    let console = Console {
        inner: Arc::new(Inner {
            api: crate::api::routes(plane.clone()),
            plane,
            sessions: Sessions::new(limits),
            hosts,
        }),
    };
    // The sign-in link route is the API's: a bearer token, the API's guard,
    // in the role matrix and the OpenAPI table.
    let links = Router::new()
        .route("/api/v1/console/links", post(pages::create_link))
        .with_state(console.clone())
        .layer(axum::middleware::from_fn_with_state(
            guard::Guard {
                auth: console.plane().auth().clone(),
                hosts: Arc::new(console.inner.hosts.clone()),
            },
            guard::check,
        ));
    Router::new()
        .route("/", get(pages::pipelines))
        .route("/history", get(pages::history))
        .route("/environments", get(pages::environments))
        .route("/environments/{env}", get(pages::environment))
        .route(
            "/environments/{env}/services/{service}/diff",
            get(pages::revision_diff),
        )
        .route(
            "/environments/{env}/services/{service}/rollback",
            post(pages::rollback),
        )
        .route("/parameters", get(pages::parameters))
        .route("/images", get(pages::images))
        .route("/triggers", get(pages::triggers))
        .route("/agents", get(pages::agents))
        .route("/audit", get(pages::audit))
        .route("/signin", get(pages::signin_form).post(pages::signin))
        .route("/signin/link/{code}", get(pages::signin_link))
        .route("/signout", post(pages::signout))
        .route("/assets/{name}", get(pages::asset))
        .route("/events", get(live::events))
        .route("/executions/{id}", get(pages::execution))
        .route("/executions/{id}/logs", get(pages::logs))
        .route("/executions/{id}/release", post(pages::release))
        .route("/executions/{id}/retry", post(pages::retry))
        .route("/executions/{id}/stop", post(pages::stop))
        .route(
            "/executions/{id}/approvals/{stage}/{action}",
            get(pages::approval).post(pages::decide),
        )
        .fallback(pages::not_found)
        // The sign-in form has no session, so [`check`] does not bound it:
        // this does (every other form is bounded by `check` first).
        .layer(DefaultBodyLimit::max(FORM_LIMIT))
        .layer(axum::middleware::from_fn_with_state(console.clone(), check))
        .with_state(console)
        .merge(links)
}

/// Paths that answer without a session.
fn is_public(path: &str) -> bool {
    path == "/signin" || path.starts_with("/signin/link/") || path.starts_with("/assets/")
}

/// The value of cookie `name` in a request's headers.
pub(crate) fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// A `Set-Cookie` value with the console's flags.
fn set_cookie(console: &Console, name: &str, value: &str, max_age: Option<u64>) -> HeaderValue {
    let secure = if console.inner.hosts.tls {
        "; Secure"
    } else {
        ""
    };
    let age = max_age
        .map(|s| format!("; Max-Age={s}"))
        .unwrap_or_default();
    HeaderValue::from_str(&format!(
        "{name}={value}; Path=/; HttpOnly; SameSite=Strict{secure}{age}"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static("invalid=1"))
}

/// The value of field `name` of an `application/x-www-form-urlencoded` body
/// (undecoded: only for values that need no decoding, like hex tokens).
fn form_field<'a>(body: &'a [u8], name: &str) -> Option<&'a [u8]> {
    body.split(|b| *b == b'&').find_map(|pair| {
        let mut kv = pair.splitn(2, |b| *b == b'=');
        (kv.next()? == name.as_bytes()).then(|| kv.next().unwrap_or_default())
    })
}

/// Where to send a browser that must sign in first, so it comes back to
/// the page it asked for.
fn to_signin(request: &Request) -> Response {
    let back = if request.method() == Method::GET {
        request
            .uri()
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_string()
    } else {
        "/".to_string()
    };
    let query = form_urlencode(&back);
    Redirect::to(&format!("/signin?next={query}")).into_response()
}

/// Percent-encodes `text` for a query string.
pub fn form_urlencode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The console's middleware: Host and Origin (as the API), the session,
/// the CSRF token of a POST, security headers, and the audit log.
pub async fn check(State(console): State<Console>, request: Request, next: Next) -> Response {
    let mut response = checked(console, request, next).await;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
        ),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    if !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

async fn checked(console: Console, mut request: Request, next: Next) -> Response {
    let auth = console.plane().auth().clone();
    let remote = guard::peer(&request);
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let action = format!("console {method} {path}");
    let host = guard::host_header(&request);
    if let Some((response, code)) =
        guard::refuse_foreign(&console.inner.hosts, &request, host.as_deref())
    {
        // A link from another site may open a page (it arrives without the
        // SameSite=Strict cookie, so it meets the sign-in page); nothing
        // else from another origin gets through.
        let navigation = method == Method::GET
            && request
                .headers()
                .get("sec-fetch-mode")
                .is_some_and(|m| m == "navigate");
        if !(navigation && code == "auth.foreign_origin") {
            guard::append_audit(&auth, None, remote, action, None, code).await;
            return response;
        }
    }
    if is_public(&path) {
        return next.run(request).await;
    }
    let session =
        cookie(request.headers(), SESSION_COOKIE).and_then(|id| console.sessions().get(id));
    let Some(session) = session else {
        if path == "/events" {
            return StatusCode::UNAUTHORIZED.into_response();
        }
        return to_signin(&request);
    };
    let identity = match auth.authenticate(session.token.expose(), gantry_clock::now_ms()) {
        Ok(identity) => identity,
        Err(error) => {
            // The token was revoked or expired: so is the session.
            console.sessions().end(&session.id);
            guard::append_audit(&auth, None, remote, action, None, error.code()).await;
            return to_signin(&request);
        }
    };
    if identity.agent_only() {
        console.sessions().end(&session.id);
        return StatusCode::FORBIDDEN.into_response();
    }
    let principal = identity.name.clone();
    request.extensions_mut().insert(Caller { identity, remote });
    request.extensions_mut().insert(session.clone());
    let mutation = !matches!(method, Method::GET | Method::HEAD);
    if mutation {
        let (parts, body) = request.into_parts();
        let Ok(bytes) = axum::body::to_bytes(body, FORM_LIMIT).await else {
            let code = "console.form_too_large";
            guard::append_audit(&auth, Some(principal), remote, action, None, code).await;
            return pages::error_page(&Failure {
                status: StatusCode::PAYLOAD_TOO_LARGE,
                code,
                message: format!("a form holds at most {FORM_LIMIT} bytes"),
            });
        };
        let sent = form_field(&bytes, "csrf").and_then(|v| std::str::from_utf8(v).ok());
        if !sent.is_some_and(|sent| session::same_secret(sent, &session.csrf)) {
            let code = "console.csrf";
            guard::append_audit(&auth, Some(principal), remote, action, None, code).await;
            return pages::error_page(&Failure {
                status: StatusCode::FORBIDDEN,
                code,
                message: "the form's CSRF token is missing or wrong: reload the page and try again"
                    .to_string(),
            });
        }
        request = Request::from_parts(parts, Body::from(bytes));
    }
    let response = next.run(request).await;
    let refused = matches!(
        response.status(),
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN
    );
    if mutation || refused {
        let outcome = response
            .extensions()
            .get::<guard::ErrorCode>()
            .map(|c| c.0)
            .unwrap_or(
                if response.status().is_success() || response.status().is_redirection() {
                    "ok"
                } else {
                    "error"
                },
            );
        let target = response
            .extensions()
            .get::<guard::AuditNote>()
            .map(|n| n.0.clone());
        guard::append_audit(&auth, Some(principal), remote, action, target, outcome).await;
    }
    response
}
