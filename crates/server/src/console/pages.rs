//! The console's pages and forms. Each page reads the JSON API's typed
//! answer ([`Console::api`]) and turns it into a small view model for its
//! template; each form sends the API's request type. Nothing here decides
//! who may do what: the API does, and the buttons only follow its rules.

use std::collections::BTreeMap;

use askama::Template;
use askama_web::WebTemplate;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Extension, Form};
use gantry_api::{
    Ack, ActionView, AgentView, ApprovalView, AuditRecordView, ConsoleLink, DecideRequest,
    DecisionAnswer, DeploymentAnswer, EnvironmentStatus, ExecutionView, LoadBalancerRule, LogsPage,
    ParameterView, PipelineSummary, RetryRequest, RevisionDetail, RollbackRequest, StartRequest,
    Started, StopRequest, TriggerView,
};
use gantry_auth::{Permission, Role, Secret, Target};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::session::{Session, random_id, same_secret};
use super::{
    Console, Failure, PageQuery, SESSION_COOKIE, SIGNIN_COOKIE, cookie, form_urlencode, set_cookie,
};
use crate::guard::{self, Caller};

/// What every page's frame shows: who is signed in, and the token its
/// sign-out form carries.
pub(super) struct Chrome {
    user: Option<String>,
    csrf: String,
}

impl Chrome {
    fn of(caller: &Caller, session: &Session) -> Chrome {
        Chrome {
            user: Some(caller.identity.name.clone()),
            csrf: session.csrf.clone(),
        }
    }

    fn anonymous() -> Chrome {
        Chrome {
            user: None,
            csrf: String::new(),
        }
    }
}

/// A status as the console shows it: an icon, a word, and a colour class
/// (never the colour alone).
pub(super) struct Status {
    icon: &'static str,
    text: String,
    class: &'static str,
}

fn status(text: Option<&str>) -> Status {
    let (icon, class) = match text {
        Some("Succeeded") => ("✔", "ok"),
        Some("Failed") => ("✖", "bad"),
        Some("InProgress") => ("↻", "run"),
        Some("Waiting") => ("‖", "wait"),
        Some("Stopping") | Some("Stopped") => ("■", "stop"),
        Some("Abandoned") | Some("Superseded") => ("⊘", "stop"),
        _ => ("○", "none"),
    };
    Status {
        icon,
        text: match text {
            Some("InProgress") => "In progress".to_string(),
            Some(s) => s.to_string(),
            None => "Not started".to_string(),
        },
        class,
    }
}

fn millis(rfc3339: &str) -> Option<i64> {
    rfc3339
        .parse::<jiff::Timestamp>()
        .ok()
        .map(|t| t.as_millisecond())
}

/// `1 h 4 min`, `12 s`.
fn span(ms: i64) -> String {
    let s = ms.max(0) / 1000;
    match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{} min {} s", s / 60, s % 60),
        3600..86_400 => format!("{} h {} min", s / 3600, (s % 3600) / 60),
        _ => format!("{} d {} h", s / 86_400, (s % 86_400) / 3600),
    }
}

/// How long from `start` to `end` (or until now).
fn duration(start: Option<&str>, end: Option<&str>) -> String {
    let Some(start) = start.and_then(millis) else {
        return String::new();
    };
    let end = end.and_then(millis).unwrap_or_else(gantry_clock::now_ms);
    span(end - start)
}

fn age(at: &str) -> String {
    millis(at).map_or_else(String::new, |t| {
        format!("{} ago", span(gantry_clock::now_ms() - t))
    })
}

fn trigger_text(view: &ExecutionView) -> String {
    view.trigger.as_ref().map_or_else(
        || "unknown".to_string(),
        |t| match &t.by {
            Some(by) if !t.detail.contains(by.as_str()) => {
                format!("{} ({}, by {by})", t.trigger_type, t.detail)
            }
            _ if t.detail.is_empty() => t.trigger_type.clone(),
            _ => format!("{} ({})", t.trigger_type, t.detail),
        },
    )
}

fn path_segment(text: &str) -> String {
    form_urlencode(text).replace('/', "%2F")
}

/// The page shown for a failure, with its status and a way back.
#[derive(Template, WebTemplate)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    chrome: Chrome,
    failure: &'a Failure,
    title: &'static str,
}

pub(super) fn error_page(failure: &Failure) -> Response {
    let title = match failure.status {
        StatusCode::NOT_FOUND => "Not found",
        StatusCode::FORBIDDEN => "Not allowed",
        StatusCode::UNAUTHORIZED => "Not signed in",
        s if s.is_client_error() => "Cannot do that",
        _ => "Something failed",
    };
    let mut response = (
        failure.status,
        ErrorPage {
            chrome: Chrome::anonymous(),
            failure,
            title,
        },
    )
        .into_response();
    response
        .extensions_mut()
        .insert(guard::ErrorCode(failure.code));
    response
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        error_page(&self)
    }
}

/// Unknown console paths; unknown API paths keep the API's bare 404.
pub(super) async fn not_found(uri: axum::http::Uri) -> Response {
    let path = uri.path();
    if path.starts_with("/api/") || path.starts_with("/hooks/") {
        return StatusCode::NOT_FOUND.into_response();
    }
    Failure::not_found(format!("there is no page at {path}")).into_response()
}

// ---- assets ----

const CSS: &str = include_str!("../../assets/console.css");
const JS: &str = include_str!("../../assets/console.js");

pub(super) async fn asset(Path(name): Path<String>) -> Response {
    let (body, kind) = match name.as_str() {
        "console.css" => (CSS, "text/css; charset=utf-8"),
        "console.js" => (JS, "text/javascript; charset=utf-8"),
        _ => return Failure::not_found(format!("there is no asset {name}")).into_response(),
    };
    (
        [
            (header::CONTENT_TYPE, kind),
            (header::CACHE_CONTROL, "public, max-age=300"),
        ],
        body,
    )
        .into_response()
}

// ---- sign-in ----

#[derive(Template, WebTemplate)]
#[template(path = "signin.html")]
struct SigninPage {
    chrome: Chrome,
    csrf: String,
    next: String,
    message: Option<String>,
}

#[derive(Deserialize)]
pub(super) struct NextQuery {
    next: Option<String>,
}

/// Only a path of this server: never `//host` or a URL. Only printable
/// ASCII: a browser drops tabs and newlines from a `Location`, so `/\t/host`
/// would become `//host` (and a path this server makes is percent-encoded).
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n)
            if n.starts_with('/')
                && !n.starts_with("//")
                && n.bytes().all(|b| b.is_ascii_graphic() && b != b'\\') =>
        {
            n.to_string()
        }
        _ => "/".to_string(),
    }
}

fn signin_page(
    console: &Console,
    headers: &HeaderMap,
    next: String,
    message: Option<String>,
    code: StatusCode,
) -> Response {
    // One token per browser, kept while it lives: another tab (or the
    // browser's own favicon request) showing the form must not change the
    // token of a form already shown.
    let csrf = cookie(headers, SIGNIN_COOKIE)
        .filter(|c| c.len() == 64 && c.bytes().all(|b| b.is_ascii_hexdigit()))
        .map_or_else(random_id, str::to_string);
    let mut response = (
        code,
        SigninPage {
            chrome: Chrome::anonymous(),
            csrf: csrf.clone(),
            next,
            message,
        },
    )
        .into_response();
    response.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(console, SIGNIN_COOKIE, &csrf, Some(3600)),
    );
    response
}

pub(super) async fn signin_form(
    State(console): State<Console>,
    headers: HeaderMap,
    PageQuery(q): PageQuery<NextQuery>,
) -> Response {
    let next = safe_next(q.next.as_deref());
    if cookie(&headers, SESSION_COOKIE).is_some_and(|id| console.sessions().get(id).is_some()) {
        return Redirect::to(&next).into_response();
    }
    signin_page(&console, &headers, next, None, StatusCode::OK)
}

#[derive(Deserialize)]
pub(super) struct SigninForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    token: String,
    next: Option<String>,
}

/// The client's address, for the audit log.
fn remote_of(extensions: &axum::http::Extensions) -> Option<std::net::SocketAddr> {
    extensions
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0)
}

/// A session for `token`, the cookie that names it, and the way to `next`.
fn signed_in(console: &Console, token: Secret, next: &str) -> Response {
    let session = console.sessions().create(token);
    let max_age = console.sessions().limits().absolute.as_secs();
    let mut response = Redirect::to(next).into_response();
    let headers = response.headers_mut();
    headers.append(
        header::SET_COOKIE,
        set_cookie(console, SESSION_COOKIE, &session.id, Some(max_age)),
    );
    headers.append(
        header::SET_COOKIE,
        set_cookie(console, SIGNIN_COOKIE, "", Some(0)),
    );
    response
}

pub(super) async fn signin(
    State(console): State<Console>,
    headers: HeaderMap,
    extensions: axum::http::Extensions,
    Form(form): Form<SigninForm>,
) -> Response {
    let auth = console.plane().auth();
    let remote = remote_of(&extensions);
    let next = safe_next(form.next.as_deref());
    let expected = cookie(&headers, SIGNIN_COOKIE).unwrap_or_default();
    if expected.is_empty() || !same_secret(&form.csrf, expected) {
        guard::append_audit(
            auth,
            None,
            remote,
            "console sign-in".into(),
            None,
            "console.csrf",
        )
        .await;
        return Failure {
            status: StatusCode::FORBIDDEN,
            code: "console.csrf",
            message: "the sign-in form's CSRF token is missing or wrong: reload the page".into(),
        }
        .into_response();
    }
    let token = form.token.trim();
    if token.len() > 512 {
        return signin_page(
            &console,
            &headers,
            next,
            Some("that is not a gantry token".into()),
            StatusCode::BAD_REQUEST,
        );
    }
    match auth.authenticate(token, gantry_clock::now_ms()) {
        Ok(identity) if identity.agent_only() => {
            guard::append_audit(
                auth,
                Some(identity.name),
                remote,
                "console sign-in".into(),
                None,
                "auth.forbidden",
            )
            .await;
            signin_page(
                &console,
                &headers,
                next,
                Some("That is a build agent's token: it cannot sign in.".into()),
                StatusCode::FORBIDDEN,
            )
        }
        Ok(identity) => {
            guard::append_audit(
                auth,
                Some(identity.name),
                remote,
                "console sign-in".into(),
                None,
                "ok",
            )
            .await;
            signed_in(&console, Secret::new(token), &next)
        }
        Err(error) => {
            guard::append_audit(
                auth,
                None,
                remote,
                "console sign-in".into(),
                None,
                error.code(),
            )
            .await;
            signin_page(
                &console,
                &headers,
                next,
                Some(format!("That token is not accepted ({}).", error.code())),
                StatusCode::UNAUTHORIZED,
            )
        }
    }
}

pub(super) async fn signin_link(
    State(console): State<Console>,
    headers: HeaderMap,
    extensions: axum::http::Extensions,
    Path(code): Path<String>,
) -> Response {
    let auth = console.plane().auth();
    let remote = remote_of(&extensions);
    let token = console.sessions().take_link(&code);
    match token.map(|t| (auth.authenticate(t.expose(), gantry_clock::now_ms()), t)) {
        Some((Ok(identity), token)) if !identity.agent_only() => {
            guard::append_audit(
                auth,
                Some(identity.name),
                remote,
                "console sign-in link".into(),
                None,
                "ok",
            )
            .await;
            signed_in(&console, token, "/")
        }
        _ => {
            guard::append_audit(
                auth,
                None,
                remote,
                "console sign-in link".into(),
                None,
                "console.link_used",
            )
            .await;
            signin_page(
                &console,
                &headers,
                "/".into(),
                Some(
                    "That sign-in link was used already or has expired: paste a token instead."
                        .into(),
                ),
                StatusCode::BAD_REQUEST,
            )
        }
    }
}

pub(super) async fn signout(
    State(console): State<Console>,
    Extension(session): Extension<Session>,
) -> Response {
    console.sessions().end(&session.id);
    let mut response = Redirect::to("/signin").into_response();
    response.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(&console, SESSION_COOKIE, "", Some(0)),
    );
    response
}

/// `POST /api/v1/console/links`: a one-time sign-in link for the caller's
/// own token (`gantry demo` prints one). A viewer's route: the link signs
/// in as the caller, with nothing the caller's token does not have.
pub(super) async fn create_link(
    State(console): State<Console>,
    caller: Caller,
    headers: HeaderMap,
) -> Result<Json<ConsoleLink>, Response> {
    caller
        .require(Permission::Read, Target::any())
        .map_err(|e| crate::api::ApiError::from(e).into_response())?;
    let token = guard::bearer(&headers).unwrap_or_default();
    let code = console.sessions().create_link(Secret::new(token));
    Ok(Json(ConsoleLink {
        path: format!("/signin/link/{code}"),
        expires_in_s: console.sessions().limits().link.as_secs(),
    }))
}

// ---- pipelines ----

pub(super) struct PipelineRow {
    name: String,
    /// The newest execution's id; empty for a pipeline that never ran.
    id: String,
    executions: usize,
    status: Status,
    trigger: String,
    age: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "pipelines.html")]
struct PipelinesPage {
    chrome: Chrome,
    rows: Vec<PipelineRow>,
}

#[derive(Template, WebTemplate)]
#[template(path = "pipelines_live.html")]
struct PipelinesLive {
    rows: Vec<PipelineRow>,
}

#[derive(Deserialize)]
pub(super) struct FragmentQuery {
    #[serde(default)]
    fragment: bool,
}

pub(super) async fn pipelines(
    State(console): State<Console>,
    caller: Caller,
    Extension(session): Extension<Session>,
    PageQuery(q): PageQuery<FragmentQuery>,
) -> Result<Response, Failure> {
    let summaries: Vec<PipelineSummary> = console.get(&caller, "/api/v1/pipelines").await?;
    let rows = summaries
        .into_iter()
        .map(|summary| match summary.last_execution {
            Some(view) => PipelineRow {
                name: summary.name,
                executions: summary.executions,
                status: status(Some(&view.status)),
                trigger: trigger_text(&view),
                age: age(&view.started_at),
                id: view.id,
            },
            None => PipelineRow {
                name: summary.name,
                executions: 0,
                status: status(None),
                trigger: String::new(),
                age: String::new(),
                id: String::new(),
            },
        })
        .collect();
    Ok(if q.fragment {
        PipelinesLive { rows }.into_response()
    } else {
        PipelinesPage {
            chrome: Chrome::of(&caller, &session),
            rows,
        }
        .into_response()
    })
}

// ---- execution history ----

/// Executions on one history page.
const HISTORY_PAGE: usize = 50;

pub(super) struct HistoryRow {
    id: String,
    pipeline: String,
    status: Status,
    trigger: String,
    commits: String,
    started: String,
    duration: String,
}

/// The history page's filters, as its form sends them (empty is any).
#[derive(Deserialize, Default)]
pub(super) struct HistoryQuery {
    #[serde(default)]
    pipeline: String,
    #[serde(default)]
    status: String,
    #[serde(default)]
    trigger: String,
    #[serde(default)]
    commit: String,
    #[serde(default)]
    page: usize,
    /// Executions per page (default [`HISTORY_PAGE`], at most 200).
    size: Option<usize>,
}

impl HistoryQuery {
    fn size(&self) -> usize {
        self.size.unwrap_or(HISTORY_PAGE).clamp(1, 200)
    }

    /// The query string of these filters on page `page`.
    fn link(&self, page: usize) -> String {
        let mut query = format!("/history?page={page}");
        if self.size.is_some() {
            query.push_str(&format!("&size={}", self.size()));
        }
        for (name, value) in [
            ("pipeline", &self.pipeline),
            ("status", &self.status),
            ("trigger", &self.trigger),
            ("commit", &self.commit),
        ] {
            if !value.is_empty() {
                query.push_str(&format!("&{name}={}", form_urlencode(value)));
            }
        }
        query
    }
}

/// A choice of a filter's `<select>`: its value, its text, and whether it
/// is the one in force.
pub(super) struct Choice {
    value: &'static str,
    text: &'static str,
    selected: bool,
}

fn choices(options: &[(&'static str, &'static str)], current: &str) -> Vec<Choice> {
    options
        .iter()
        .map(|&(value, text)| Choice {
            value,
            text,
            selected: value == current,
        })
        .collect()
}

#[derive(Template, WebTemplate)]
#[template(path = "history.html")]
struct HistoryPage {
    chrome: Chrome,
    rows: Vec<HistoryRow>,
    pipeline: String,
    commit: String,
    statuses: Vec<Choice>,
    triggers: Vec<Choice>,
    page: usize,
    previous: Option<String>,
    next: Option<String>,
}

pub(super) async fn history(
    State(console): State<Console>,
    caller: Caller,
    Extension(session): Extension<Session>,
    PageQuery(q): PageQuery<HistoryQuery>,
) -> Result<Response, Failure> {
    // One more than a page: whether there is a next one.
    let page = q.page.min(1_000_000);
    let size = q.size();
    let mut uri = format!(
        "/api/v1/executions?limit={}&offset={}",
        size + 1,
        page * size
    );
    for (name, value) in [
        ("pipeline", &q.pipeline),
        ("status", &q.status),
        ("trigger", &q.trigger),
        ("commit", &q.commit),
    ] {
        if !value.is_empty() {
            uri.push_str(&format!("&{name}={}", form_urlencode(value.trim())));
        }
    }
    let mut views: Vec<ExecutionView> = console.get(&caller, &uri).await?;
    let more = views.len() > size;
    views.truncate(size);
    let rows = views
        .into_iter()
        .map(|view| HistoryRow {
            status: status(Some(&view.status)),
            trigger: trigger_text(&view),
            commits: view
                .source_revisions
                .values()
                .map(|c| c.chars().take(12).collect::<String>())
                .collect::<Vec<_>>()
                .join(" "),
            started: age(&view.started_at),
            duration: duration(Some(&view.started_at), view.finished_at.as_deref()),
            pipeline: view.pipeline,
            id: view.id,
        })
        .collect();
    Ok(HistoryPage {
        chrome: Chrome::of(&caller, &session),
        rows,
        statuses: choices(
            &[
                ("", "Any status"),
                ("InProgress", "In progress"),
                ("Succeeded", "Succeeded"),
                ("Failed", "Failed"),
                ("Stopping", "Stopping"),
                ("Stopped", "Stopped"),
                ("Superseded", "Superseded"),
            ],
            &q.status,
        ),
        triggers: choices(
            &[
                ("", "Any trigger"),
                ("manual", "Manual"),
                ("webhook", "Webhook"),
                ("poll", "Poll"),
                ("schedule", "Schedule"),
                ("pipeline", "Pipeline"),
            ],
            &q.trigger,
        ),
        previous: (page > 0).then(|| q.link(page - 1)),
        next: more.then(|| q.link(page + 1)),
        page: page + 1,
        pipeline: q.pipeline,
        commit: q.commit,
    }
    .into_response())
}

// ---- environments ----

#[derive(Template, WebTemplate)]
#[template(path = "environments.html")]
struct EnvironmentsPage {
    chrome: Chrome,
    names: Vec<String>,
}

pub(super) async fn environments(
    State(console): State<Console>,
    caller: Caller,
    Extension(session): Extension<Session>,
) -> Result<Response, Failure> {
    let names: Vec<String> = console.get(&caller, "/api/v1/environments").await?;
    Ok(EnvironmentsPage {
        chrome: Chrome::of(&caller, &session),
        names,
    }
    .into_response())
}

pub(super) struct ReplicaRow {
    id: String,
    revision: u64,
    addr: String,
    health: Status,
    failure: String,
    weight: String,
}

/// What made a service's current revision: the execution, its pipeline
/// and the commits it built (when the caller may read it).
#[derive(Clone)]
pub(super) struct MadeBy {
    execution: String,
    href: String,
    pipeline: String,
    commits: Vec<CommitRow>,
}

#[derive(Clone)]
pub(super) struct CommitRow {
    source: String,
    id: String,
    message: String,
}

pub(super) struct TrafficRow {
    revision: u64,
    percent: u32,
}

pub(super) struct DeploymentRow {
    id: i64,
    from: String,
    to: i64,
    /// The revision diff page of `from` → `to`, when there is a `from`.
    diff: Option<String>,
    status: Status,
    started: String,
    took: String,
    message: String,
}

pub(super) struct ServiceCard {
    name: String,
    revision: String,
    cause: String,
    made_by: Option<MadeBy>,
    traffic: Vec<TrafficRow>,
    image: String,
    digest: String,
    desired: String,
    replicas: Vec<ReplicaRow>,
    secrets: Vec<String>,
    deployments: Vec<DeploymentRow>,
    /// Revisions one may roll back to: those deployed before, but not the
    /// current one, newest first.
    rollback_to: Vec<i64>,
    rollback_action: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "environment.html")]
struct EnvironmentPage {
    chrome: Chrome,
    name: String,
    runtime: String,
    load_balancer: String,
    url: String,
    rules: Vec<LoadBalancerRule>,
    services: Vec<ServiceCard>,
    can_operate: bool,
}

fn health(text: Option<&str>) -> Status {
    match text {
        Some("healthy") => status(Some("Succeeded")).named("healthy"),
        Some("unhealthy") => status(Some("Failed")).named("unhealthy"),
        Some(other) => status(Some("InProgress")).named(other),
        None => status(None).named("unknown"),
    }
}

impl Status {
    fn named(mut self, text: &str) -> Status {
        self.text = text.to_string();
        self
    }
}

fn at_ms(ms: i64) -> String {
    format!("{} ago", span(gantry_clock::now_ms() - ms))
}

pub(super) async fn environment(
    State(console): State<Console>,
    caller: Caller,
    Extension(session): Extension<Session>,
    Path(name): Path<String>,
) -> Result<Response, Failure> {
    let env: EnvironmentStatus = console
        .get(
            &caller,
            &format!("/api/v1/environments/{}", path_segment(&name)),
        )
        .await
        .map_err(|f| f.missing(|| format!("there is no environment {name}")))?;
    let mut made_by = BTreeMap::new();
    for id in env.services.iter().filter_map(|s| s.execution.clone()) {
        if let std::collections::btree_map::Entry::Vacant(slot) = made_by.entry(id) {
            let found = made_by_execution(&console, &caller, slot.key()).await;
            slot.insert(found);
        }
    }
    let services = env
        .services
        .into_iter()
        .map(|service| {
            let current = service.revision.and_then(|r| i64::try_from(r).ok());
            let mut rollback_to: Vec<i64> = service
                .deployments
                .iter()
                .filter(|d| d.status == "Succeeded" || d.status == "RolledBack")
                .flat_map(|d| [Some(d.to_revision), d.from_revision])
                .flatten()
                .filter(|r| Some(*r) != current)
                .collect();
            rollback_to.sort_unstable_by(|a, b| b.cmp(a));
            rollback_to.dedup();
            let diff_base = format!(
                "/environments/{}/services/{}/diff",
                path_segment(&name),
                path_segment(&service.name)
            );
            ServiceCard {
                revision: service
                    .revision
                    .map_or_else(|| "none".into(), |r| r.to_string()),
                cause: service.cause.unwrap_or_default(),
                made_by: service
                    .execution
                    .as_ref()
                    .and_then(|id| made_by.get(id).cloned().flatten()),
                traffic: service
                    .traffic
                    .iter()
                    .map(|t| TrafficRow {
                        revision: t.revision,
                        percent: t.percent,
                    })
                    .collect(),
                image: service.image.unwrap_or_default(),
                digest: service.digest.unwrap_or_default(),
                desired: service.desired.map_or_else(String::new, |d| d.to_string()),
                replicas: service
                    .replicas
                    .into_iter()
                    .map(|r| ReplicaRow {
                        health: health(r.health.as_deref()),
                        failure: r.last_failure.unwrap_or_default(),
                        weight: r.weight.map_or_else(|| "–".into(), |w| w.to_string()),
                        id: r.id,
                        revision: r.revision,
                        addr: r.addr,
                    })
                    .collect(),
                secrets: service
                    .parameters
                    .iter()
                    .map(|p| format!("{} ← {} v{}", p.var, p.parameter, p.version))
                    .collect(),
                deployments: service
                    .deployments
                    .into_iter()
                    .map(|d| DeploymentRow {
                        id: d.id,
                        from: d
                            .from_revision
                            .map_or_else(|| "–".into(), |r| r.to_string()),
                        diff: d
                            .from_revision
                            .map(|from| format!("{diff_base}?from={from}&to={}", d.to_revision)),
                        to: d.to_revision,
                        status: match d.status.as_str() {
                            "RolledBack" => status(Some("Stopped")).named("Rolled back"),
                            "Interrupted" => status(Some("Stopped")).named("Interrupted"),
                            s => status(Some(s)),
                        },
                        started: at_ms(d.started_at),
                        took: d
                            .finished_at
                            .map_or_else(String::new, |f| span(f - d.started_at)),
                        message: d.message.unwrap_or_default(),
                    })
                    .collect(),
                rollback_to,
                rollback_action: format!(
                    "/environments/{}/services/{}/rollback",
                    path_segment(&name),
                    path_segment(&service.name)
                ),
                name: service.name,
            }
        })
        .collect();
    Ok(EnvironmentPage {
        chrome: Chrome::of(&caller, &session),
        can_operate: caller
            .identity
            .allows(Permission::Operate, &Target::environment(&name)),
        runtime: env.runtime,
        load_balancer: env.load_balancer,
        url: env.url,
        rules: env.rules,
        services,
        name,
    }
    .into_response())
}

/// The execution that made a revision, with the commits it built; `None`
/// when the caller may not read it or it is gone (the page then shows the
/// revision's cause alone).
async fn made_by_execution(console: &Console, caller: &Caller, id: &str) -> Option<MadeBy> {
    let view = read_execution(console, caller, id).await.ok()?;
    let commits = view
        .source_revisions
        .iter()
        .map(|(source, commit)| CommitRow {
            // Keyed by the source action's name.
            message: view
                .stages
                .iter()
                .flat_map(|s| &s.actions)
                .find(|a| &a.name == source)
                .and_then(|a| a.output_variables.get("CommitMessage"))
                .and_then(|m| m.lines().next())
                .unwrap_or_default()
                .to_string(),
            source: source.clone(),
            id: commit.chars().take(12).collect(),
        })
        .collect();
    Some(MadeBy {
        href: format!("/executions/{}", path_segment(id)),
        execution: id.to_string(),
        pipeline: view.pipeline,
        commits,
    })
}

#[derive(Deserialize)]
pub(super) struct DiffQuery {
    from: u64,
    to: u64,
}

pub(super) struct DiffRow {
    field: String,
    from: String,
    to: String,
}

/// One side of a revision diff: the revision and what made it.
pub(super) struct DiffSide {
    revision: u64,
    image: String,
    cause: String,
    created: String,
    execution: Option<(String, String)>,
}

#[derive(Template, WebTemplate)]
#[template(path = "diff.html")]
struct DiffPage {
    chrome: Chrome,
    environment: String,
    service: String,
    environment_href: String,
    from: DiffSide,
    to: DiffSide,
    changed: Vec<DiffRow>,
    unchanged: usize,
}

/// Two revisions of a service compared field by field: what a rollback
/// from one to the other would change.
pub(super) async fn revision_diff(
    State(console): State<Console>,
    caller: Caller,
    Extension(session): Extension<Session>,
    Path((env, service)): Path<(String, String)>,
    PageQuery(q): PageQuery<DiffQuery>,
) -> Result<Response, Failure> {
    let read = |n: u64| {
        let uri = format!(
            "/api/v1/environments/{}/services/{}/revisions/{n}",
            path_segment(&env),
            path_segment(&service)
        );
        let (console, caller) = (&console, &caller);
        let (env, service) = (&env, &service);
        async move {
            console
                .get::<RevisionDetail>(caller, &uri)
                .await
                .map_err(|f| f.missing(|| format!("{service} in {env} has no revision {n}")))
        }
    };
    let (from, to) = (read(q.from).await?, read(q.to).await?);
    let names: std::collections::BTreeSet<&String> =
        from.fields.keys().chain(to.fields.keys()).collect();
    let value = |d: &RevisionDetail, k: &str| d.fields.get(k).cloned().unwrap_or_default();
    let changed: Vec<DiffRow> = names
        .iter()
        .filter(|k| from.fields.get(**k) != to.fields.get(**k))
        .map(|k| DiffRow {
            field: (*k).clone(),
            from: value(&from, k),
            to: value(&to, k),
        })
        .collect();
    let side = |d: RevisionDetail| DiffSide {
        revision: d.revision,
        image: d.image,
        cause: d.cause,
        created: at_ms(d.created_at),
        execution: d
            .execution
            .map(|id| (format!("/executions/{}", path_segment(&id)), id)),
    };
    Ok(DiffPage {
        chrome: Chrome::of(&caller, &session),
        environment_href: format!("/environments/{}", path_segment(&env)),
        unchanged: names.len() - changed.len(),
        changed,
        from: side(from),
        to: side(to),
        environment: env,
        service,
    }
    .into_response())
}

#[derive(Deserialize)]
pub(super) struct RollbackForm {
    #[serde(default)]
    to: String,
}

pub(super) async fn rollback(
    State(console): State<Console>,
    caller: Caller,
    Path((env, service)): Path<(String, String)>,
    Form(form): Form<RollbackForm>,
) -> Result<Response, Failure> {
    let to = match form.to.trim() {
        "" => None,
        text => Some(text.parse::<u64>().map_err(|_| Failure {
            status: StatusCode::BAD_REQUEST,
            code: "request.invalid",
            message: format!("{text:?} is not a revision number"),
        })?),
    };
    let answer: DeploymentAnswer = console
        .post(
            &caller,
            &format!(
                "/api/v1/environments/{}/services/{}/rollback",
                path_segment(&env),
                path_segment(&service)
            ),
            &RollbackRequest { to },
        )
        .await?;
    if let DeploymentAnswer::Failed { error, .. } = &answer {
        return Err(Failure {
            status: StatusCode::CONFLICT,
            code: "deploy.rollback_failed",
            message: format!("the rollback of {service} in {env} failed: {error}"),
        });
    }
    Ok(Redirect::to(&format!("/environments/{}", path_segment(&env))).into_response())
}

// ---- parameters, triggers, audit ----

pub(super) struct ParamRow {
    name: String,
    kind: String,
    version: u64,
    labels: String,
    /// Empty for a SecureString: its value is never sent to a browser.
    value: String,
    secure: bool,
    modified: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "parameters.html")]
struct ParametersPage {
    chrome: Chrome,
    rows: Vec<ParamRow>,
}

pub(super) async fn parameters(
    State(console): State<Console>,
    caller: Caller,
    Extension(session): Extension<Session>,
) -> Result<Response, Failure> {
    // Never with `decrypt`: a SecureString's value stays on the server.
    let list: Vec<ParameterView> = console
        .get(&caller, "/api/v1/params/list?path=%2F&recursive=true")
        .await?;
    let rows = list
        .into_iter()
        .map(|p| {
            let secure = p.param_type == "SecureString";
            ParamRow {
                value: if secure {
                    String::new()
                } else {
                    p.value.chars().take(200).collect()
                },
                secure,
                kind: p.param_type,
                version: p.version,
                labels: p.labels.join(", "),
                modified: format!("{} by {}", p.last_modified, p.modified_by),
                name: p.name,
            }
        })
        .collect();
    Ok(ParametersPage {
        chrome: Chrome::of(&caller, &session),
        rows,
    }
    .into_response())
}

#[derive(Template, WebTemplate)]
#[template(path = "triggers.html")]
struct TriggersPage {
    chrome: Chrome,
    triggers: Vec<TriggerView>,
}

pub(super) async fn triggers(
    State(console): State<Console>,
    caller: Caller,
    Extension(session): Extension<Session>,
) -> Result<Response, Failure> {
    let triggers: Vec<TriggerView> = console.get(&caller, "/api/v1/triggers").await?;
    Ok(TriggersPage {
        chrome: Chrome::of(&caller, &session),
        triggers,
    }
    .into_response())
}

/// One agent as the agents page shows it: what it runs links to its
/// execution.
pub(super) struct AgentRow {
    name: String,
    labels: String,
    version: String,
    last_seen: String,
    alive: bool,
    /// `(execution id, "execution/stage/action#attempt")`.
    running: Vec<(String, String)>,
}

#[derive(Template, WebTemplate)]
#[template(path = "agents.html")]
struct AgentsPage {
    chrome: Chrome,
    agents: Vec<AgentRow>,
}

/// `/agents`: the build agents that polled since the leader started.
pub(super) async fn agents(
    State(console): State<Console>,
    caller: Caller,
    Extension(session): Extension<Session>,
) -> Result<Response, Failure> {
    let agents: Vec<AgentView> = console.get(&caller, "/api/v1/agents").await?;
    let agents = agents
        .into_iter()
        .map(|agent| AgentRow {
            name: agent.name,
            labels: agent.labels.join(", "),
            version: agent.version,
            last_seen: agent.last_seen,
            alive: agent.alive,
            running: agent
                .running
                .into_iter()
                .map(|job| {
                    let execution = job.split('/').next().unwrap_or_default().to_string();
                    (execution, job)
                })
                .collect(),
        })
        .collect();
    Ok(AgentsPage {
        chrome: Chrome::of(&caller, &session),
        agents,
    }
    .into_response())
}

#[derive(Deserialize)]
pub(super) struct ImagesPageQuery {
    #[serde(default)]
    repository: String,
}

pub(super) struct ImageRow {
    tag: String,
    digest: String,
    size: String,
    updated: String,
    /// `(environment page, "environment/service")` for each service whose
    /// current revision runs this digest.
    running: Vec<(String, String)>,
}

pub(super) struct RepositoryRows {
    name: String,
    href: String,
    images: Vec<ImageRow>,
}

#[derive(Template, WebTemplate)]
#[template(path = "images.html")]
struct ImagesPage {
    chrome: Chrome,
    repository: String,
    repositories: Vec<RepositoryRows>,
}

/// Bytes for people: `512 B`, `3.4 MiB`.
fn bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut value = n as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// The embedded registry's repositories, tags and digests, and where each
/// digest runs (`GET /api/v1/images`).
pub(super) async fn images(
    State(console): State<Console>,
    caller: Caller,
    Extension(session): Extension<Session>,
    PageQuery(q): PageQuery<ImagesPageQuery>,
) -> Result<Response, Failure> {
    let repository = q.repository.trim().to_string();
    let uri = if repository.is_empty() {
        "/api/v1/images".to_string()
    } else {
        format!("/api/v1/images?repository={}", form_urlencode(&repository))
    };
    let views: Vec<gantry_api::ImageView> = console
        .get(&caller, &uri)
        .await
        .map_err(|f| f.missing(|| format!("there is no repository {repository}")))?;
    let mut repositories: Vec<RepositoryRows> = Vec::new();
    for view in views {
        if repositories
            .last()
            .is_none_or(|r| r.name != view.repository)
        {
            repositories.push(RepositoryRows {
                href: format!("/images?repository={}", form_urlencode(&view.repository)),
                name: view.repository.clone(),
                images: Vec::new(),
            });
        }
        let row = ImageRow {
            tag: view.tag.unwrap_or_default(),
            size: bytes(view.size),
            updated: view.updated_at,
            running: view
                .running
                .iter()
                .map(|u| {
                    (
                        format!("/environments/{}", path_segment(&u.environment)),
                        format!("{}/{}", u.environment, u.service),
                    )
                })
                .collect(),
            digest: view.digest,
        };
        if let Some(last) = repositories.last_mut() {
            last.images.push(row);
        }
    }
    Ok(ImagesPage {
        chrome: Chrome::of(&caller, &session),
        repository,
        repositories,
    }
    .into_response())
}

/// Audit records on one page.
const AUDIT_PAGE: u32 = 100;

pub(super) struct AuditRow {
    seq: i64,
    at: String,
    principal: String,
    remote: String,
    action: String,
    target: String,
    outcome: Status,
}

#[derive(Deserialize)]
pub(super) struct AuditPageQuery {
    #[serde(default)]
    principal: String,
    before: Option<i64>,
}

#[derive(Template, WebTemplate)]
#[template(path = "audit.html")]
struct AuditPage {
    chrome: Chrome,
    principal: String,
    rows: Vec<AuditRow>,
    older: Option<String>,
}

pub(super) async fn audit(
    State(console): State<Console>,
    caller: Caller,
    Extension(session): Extension<Session>,
    PageQuery(q): PageQuery<AuditPageQuery>,
) -> Result<Response, Failure> {
    let principal = q.principal.trim().to_string();
    let mut uri = format!("/api/v1/audit?limit={AUDIT_PAGE}");
    if let Some(before) = q.before {
        uri.push_str(&format!("&before={before}"));
    }
    if !principal.is_empty() {
        uri.push_str(&format!("&principal={}", form_urlencode(&principal)));
    }
    let mut records: Vec<AuditRecordView> = console.get(&caller, &uri).await?;
    records.reverse();
    let older = (records.len() == AUDIT_PAGE as usize)
        .then(|| records.last().map(|r| r.seq))
        .flatten()
        .map(|seq| {
            let mut link = format!("/audit?before={seq}");
            if !principal.is_empty() {
                link.push_str(&format!("&principal={}", form_urlencode(&principal)));
            }
            link
        });
    let rows = records
        .into_iter()
        .map(|r| AuditRow {
            seq: r.seq,
            at: jiff::Timestamp::from_millisecond(r.at_ms)
                .map(|t| t.to_string())
                .unwrap_or_default(),
            principal: r.principal.unwrap_or_default(),
            remote: r.remote.unwrap_or_default(),
            outcome: if r.outcome == "ok" {
                status(Some("Succeeded")).named("ok")
            } else {
                status(Some("Failed")).named(&r.outcome)
            },
            action: r.action,
            target: r.target.unwrap_or_default(),
        })
        .collect();
    Ok(AuditPage {
        chrome: Chrome::of(&caller, &session),
        principal,
        rows,
        older,
    }
    .into_response())
}

// ---- one execution ----

pub(super) struct Output {
    name: String,
    value: String,
    digest: bool,
}

pub(super) struct ActionCard {
    name: String,
    kind: String,
    status: Status,
    attempt: u32,
    duration: String,
    error: Option<String>,
    outputs: Vec<Output>,
    logs: String,
    approval: Option<String>,
    decided: Option<String>,
    reports: Vec<String>,
}

pub(super) struct RunGroup {
    run_order: u32,
    actions: Vec<ActionCard>,
}

pub(super) struct StageColumn {
    name: String,
    status: Status,
    groups: Vec<RunGroup>,
}

/// What the execution view shows; the page and its live fragment share it.
pub(super) struct ExecutionModel {
    id: String,
    pipeline: String,
    status: Status,
    started: String,
    duration: String,
    trigger: String,
    note: Option<String>,
    revisions: Vec<(String, String)>,
    stages: Vec<StageColumn>,
    csrf: String,
    can_release: bool,
    retry_stage: Option<String>,
    can_stop: bool,
}

fn action_card(id: &str, stage: &str, a: &ActionView) -> ActionCard {
    let logs = format!(
        "/executions/{}/logs?stage={}&action={}",
        path_segment(id),
        form_urlencode(stage),
        form_urlencode(&a.name)
    );
    let approval = (a.action_type.as_deref() == Some("approval")).then(|| {
        format!(
            "/executions/{}/approvals/{}/{}",
            path_segment(id),
            path_segment(stage),
            path_segment(&a.name)
        )
    });
    ActionCard {
        name: a.name.clone(),
        kind: a.action_type.clone().unwrap_or_default(),
        status: status(a.status.as_deref()),
        attempt: a.attempt,
        duration: duration(a.started_at.as_deref(), a.finished_at.as_deref()),
        error: a.error.clone(),
        outputs: a
            .output_variables
            .iter()
            .map(|(k, v)| Output {
                digest: v.starts_with("sha256:"),
                name: k.clone(),
                value: v.clone(),
            })
            .collect(),
        logs,
        approval,
        decided: a.decided.as_ref().map(|d| {
            let comment = d
                .comment
                .as_deref()
                .map(|c| format!(": “{c}”"))
                .unwrap_or_default();
            format!("{} by {}{comment}", d.decision, d.by)
        }),
        reports: a
            .reports
            .iter()
            .flatten()
            .map(|r| {
                format!(
                    "{}: {} passed, {} failed, {} skipped",
                    r.group, r.passed, r.failed, r.skipped
                )
            })
            .collect(),
    }
}

fn execution_model(view: ExecutionView, caller: &Caller, session: &Session) -> ExecutionModel {
    let operate = caller
        .identity
        .allows(Permission::Operate, &Target::pipeline(&view.pipeline));
    let stages = view
        .stages
        .iter()
        .map(|stage| {
            let mut groups: Vec<RunGroup> = Vec::new();
            for a in &stage.actions {
                let run_order = a.run_order.unwrap_or(1);
                let card = action_card(&view.id, &stage.name, a);
                match groups.iter_mut().find(|g| g.run_order == run_order) {
                    Some(g) => g.actions.push(card),
                    None => groups.push(RunGroup {
                        run_order,
                        actions: vec![card],
                    }),
                }
            }
            groups.sort_by_key(|g| g.run_order);
            StageColumn {
                name: stage.name.clone(),
                status: status(stage.status.as_deref()),
                groups,
            }
        })
        .collect();
    let retry_stage = view
        .stages
        .iter()
        .find(|s| matches!(s.status.as_deref(), Some("Failed") | Some("Stopped")))
        .map(|s| s.name.clone());
    ExecutionModel {
        status: status(Some(&view.status)),
        started: age(&view.started_at),
        duration: duration(Some(&view.started_at), view.finished_at.as_deref()),
        trigger: trigger_text(&view),
        note: view.stop_reason.clone().or_else(|| {
            view.waiting_at
                .as_ref()
                .map(|s| format!("waiting to enter stage {s}"))
        }),
        revisions: view.source_revisions.clone().into_iter().collect(),
        stages,
        csrf: session.csrf.clone(),
        can_release: operate,
        retry_stage: retry_stage.filter(|_| operate && view.is_finished()),
        can_stop: operate && view.status == "InProgress",
        id: view.id,
        pipeline: view.pipeline,
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "execution.html")]
struct ExecutionPage {
    chrome: Chrome,
    x: ExecutionModel,
}

#[derive(Template, WebTemplate)]
#[template(path = "execution_live.html")]
struct ExecutionLive {
    x: ExecutionModel,
}

async fn read_execution(
    console: &Console,
    caller: &Caller,
    id: &str,
) -> Result<ExecutionView, Failure> {
    console
        .get(caller, &format!("/api/v1/executions/{}", path_segment(id)))
        .await
        .map_err(|f| f.missing(|| format!("there is no execution {id}")))
}

pub(super) async fn execution(
    State(console): State<Console>,
    caller: Caller,
    Extension(session): Extension<Session>,
    Path(id): Path<String>,
    PageQuery(q): PageQuery<FragmentQuery>,
) -> Result<Response, Failure> {
    let view = read_execution(&console, &caller, &id).await?;
    let x = execution_model(view, &caller, &session);
    Ok(if q.fragment {
        ExecutionLive { x }.into_response()
    } else {
        ExecutionPage {
            chrome: Chrome::of(&caller, &session),
            x,
        }
        .into_response()
    })
}

/// Where a form sends the browser once the API did what it asked.
fn back_to(id: &str) -> Response {
    Redirect::to(&format!("/executions/{}", path_segment(id))).into_response()
}

/// A form about execution `id`: `POST /api/v1/executions/{id}/{route}`
/// with `request` as `caller`, its answer read as `T` (and dropped), then
/// back to the execution.
async fn execution_form<T: DeserializeOwned>(
    console: &Console,
    caller: &Caller,
    id: &str,
    route: &str,
    request: &impl Serialize,
) -> Result<Response, Failure> {
    let uri = format!("/api/v1/executions/{}/{route}", path_segment(id));
    let _: T = console.post(caller, &uri, request).await?;
    Ok(back_to(id))
}

pub(super) async fn release(
    State(console): State<Console>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, Failure> {
    // The API decides whether the caller may see this execution; its
    // definition is then read from the store (the API does not serve it).
    read_execution(&console, &caller, &id).await?;
    let (_, loaded) = console
        .plane()
        .execution(&id)
        .await
        .ok_or_else(|| Failure::not_found(format!("there is no execution {id}")))?;
    let loaded = loaded.ok_or_else(|| Failure {
        status: StatusCode::CONFLICT,
        code: "console.no_definition",
        message: format!("the definition of execution {id} is not loaded"),
    })?;
    let definition = &loaded.definition;
    let request = StartRequest {
        file: definition.file.clone(),
        text: Some(definition.text.clone()),
        includes: definition.includes.clone(),
        variables: BTreeMap::new(),
    };
    let started: Started = console
        .post(&caller, "/api/v1/executions", &request)
        .await?;
    Ok(back_to(&started.id))
}

#[derive(Deserialize)]
pub(super) struct RetryForm {
    stage: String,
}

pub(super) async fn retry(
    State(console): State<Console>,
    caller: Caller,
    Path(id): Path<String>,
    Form(form): Form<RetryForm>,
) -> Result<Response, Failure> {
    let request = RetryRequest {
        stage: form.stage,
        all_actions: false,
    };
    execution_form::<Ack>(&console, &caller, &id, "retry", &request).await
}

pub(super) async fn stop(
    State(console): State<Console>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, Failure> {
    let request = StopRequest {
        abandon: false,
        reason: Some(format!(
            "stopped from the console by {}",
            caller.identity.name
        )),
    };
    execution_form::<Ack>(&console, &caller, &id, "stop", &request).await
}

// ---- approvals ----

pub(super) struct Pinned {
    at: String,
    value: String,
    message: Option<String>,
}

/// A test action that ran before an approval: its result and its JUnit
/// reports' counts (the E2E result an approver looks at).
pub(super) struct TestRow {
    at: String,
    status: Status,
    summary: String,
}

/// The actions before `stage` that ran tests: of type `test`, or with
/// JUnit reports.
fn tests_before(execution: &ExecutionView, stage: &str) -> Vec<TestRow> {
    execution
        .stages
        .iter()
        .take_while(|s| s.name != stage)
        .flat_map(|s| s.actions.iter().map(move |a| (s, a)))
        .filter(|(_, a)| {
            a.action_type.as_deref() == Some("test")
                || a.reports.as_ref().is_some_and(|r| !r.is_empty())
        })
        .map(|(s, a)| {
            let reports = a.reports.as_deref().unwrap_or_default();
            let (passed, failed, skipped) = reports.iter().fold((0, 0, 0), |(p, f, k), r| {
                (p + r.passed, f + r.failed, k + r.skipped)
            });
            TestRow {
                at: format!("{}/{}", s.name, a.name),
                status: status(a.status.as_deref()),
                summary: if reports.is_empty() {
                    "no JUnit report".to_string()
                } else {
                    format!("{passed} passed, {failed} failed, {skipped} skipped")
                },
            }
        })
        .collect()
}

pub(super) struct ParameterRow {
    at: String,
    name: String,
    version: u64,
    secure: bool,
}

pub(super) struct VoteRow {
    by: String,
    decision: String,
    comment: Option<String>,
}

#[derive(Template, WebTemplate)]
#[template(path = "approval.html")]
struct ApprovalPage {
    chrome: Chrome,
    id: String,
    pipeline: String,
    stage: String,
    action: String,
    status: Status,
    prompt: Option<String>,
    review_url: Option<String>,
    fingerprint: String,
    commits: Vec<Pinned>,
    images: Vec<Pinned>,
    parameters: Vec<ParameterRow>,
    tests: Vec<TestRow>,
    policy: String,
    votes: Vec<VoteRow>,
    can_decide: bool,
    require_comment: bool,
    form_action: String,
}

pub(super) async fn approval(
    State(console): State<Console>,
    caller: Caller,
    Extension(session): Extension<Session>,
    Path((id, stage, action)): Path<(String, String, String)>,
) -> Result<Response, Failure> {
    let execution = read_execution(&console, &caller, &id).await?;
    let Some(card) = execution.action(&stage, &action) else {
        return Err(Failure::not_found(format!(
            "execution {id} has no action {stage}/{action}"
        )));
    };
    let uri = format!(
        "/api/v1/executions/{}/approvals/{}/{}",
        path_segment(&id),
        path_segment(&stage),
        path_segment(&action)
    );
    let view: ApprovalView = console.get(&caller, &uri).await?;
    let message = |at: &str| {
        let (s, a) = at.split_once('/')?;
        execution
            .action(s, a)?
            .output_variables
            .get("CommitMessage")
            .cloned()
    };
    let policy = &view.policy;
    let mut who = Vec::new();
    if !policy.roles.is_empty() {
        who.push(format!("role {}", policy.roles.join(" or ")));
    }
    if !policy.users.is_empty() {
        who.push(format!("user {}", policy.users.join(" or ")));
    }
    let policy_text = format!(
        "{} approval{} needed from {}{}{}",
        policy.required,
        if policy.required == 1 { "" } else { "s" },
        if who.is_empty() {
            "any approver".to_string()
        } else {
            who.join(", ")
        },
        if policy.allow_self_approval {
            ""
        } else {
            "; whoever started or authored the change may not approve"
        },
        if policy.require_comment {
            "; a comment is required"
        } else {
            ""
        },
    );
    let waiting = view.status.as_deref() == Some("Waiting");
    let can_decide = waiting
        && (caller.identity.has_role(Role::Approver)
            || caller
                .identity
                .allows(Permission::Approve, &Target::pipeline(&execution.pipeline)));
    let prompt = card.approval.as_ref();
    Ok(ApprovalPage {
        chrome: Chrome::of(&caller, &session),
        status: status(view.status.as_deref()),
        prompt: prompt.and_then(|p| p.comments.clone()),
        review_url: prompt.and_then(|p| p.review_url.clone()),
        fingerprint: view.fingerprint.clone(),
        commits: view
            .binding
            .commits
            .iter()
            .map(|(at, commit)| Pinned {
                message: message(at),
                at: at.clone(),
                value: commit.clone(),
            })
            .collect(),
        images: view
            .binding
            .images
            .iter()
            .map(|(at, digest)| Pinned {
                at: at.clone(),
                value: digest.clone(),
                message: None,
            })
            .collect(),
        parameters: view
            .binding
            .parameters
            .iter()
            .flat_map(|(at, uses)| {
                uses.iter().map(move |u| ParameterRow {
                    at: at.clone(),
                    name: u.name.clone(),
                    version: u.version,
                    secure: u.secure,
                })
            })
            .collect(),
        tests: tests_before(&execution, &stage),
        policy: policy_text,
        votes: view
            .votes
            .iter()
            .map(|v| VoteRow {
                by: v.by.clone(),
                decision: v.decision.clone(),
                comment: v.comment.clone(),
            })
            .collect(),
        can_decide,
        require_comment: policy.require_comment,
        form_action: format!(
            "/executions/{}/approvals/{}/{}",
            path_segment(&id),
            path_segment(&stage),
            path_segment(&action)
        ),
        id,
        pipeline: execution.pipeline.clone(),
        stage,
        action,
    }
    .into_response())
}

#[derive(Deserialize)]
pub(super) struct DecideForm {
    decision: String,
    #[serde(default)]
    comment: String,
    fingerprint: Option<String>,
}

pub(super) async fn decide(
    State(console): State<Console>,
    caller: Caller,
    Path((id, stage, action)): Path<(String, String, String)>,
    Form(form): Form<DecideForm>,
) -> Result<Response, Failure> {
    let comment = form.comment.trim();
    let request = DecideRequest {
        stage,
        action,
        decision: form.decision,
        comment: (!comment.is_empty()).then(|| comment.to_string()),
        by: None,
        fingerprint: form.fingerprint.filter(|f| !f.is_empty()),
    };
    execution_form::<DecisionAnswer>(&console, &caller, &id, "approvals", &request).await
}

// ---- logs ----

pub(super) struct Piece {
    class: &'static str,
    text: String,
}

pub(super) struct LogRow {
    seq: i64,
    at: String,
    pieces: Vec<Piece>,
}

/// One JUnit report group of an action, as a table.
pub(super) struct ReportTable {
    group: String,
    passed: u64,
    failed: u64,
    skipped: u64,
    failures: Vec<gantry_api::TestFailure>,
}

/// What the logs page and its live fragment show.
pub(super) struct LogsModel {
    id: String,
    stage: String,
    action: String,
    /// The search, as typed; empty shows every line.
    query: String,
    rows: Vec<LogRow>,
    /// Lines in the log (`rows` holds those matching the search).
    total: usize,
    reports: Vec<ReportTable>,
    /// The action (or execution) still runs: the page polls for lines.
    running: bool,
    download: String,
    live: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "logs.html")]
struct LogsView {
    chrome: Chrome,
    m: LogsModel,
}

#[derive(Template, WebTemplate)]
#[template(path = "logs_live.html")]
struct LogsLive {
    m: LogsModel,
}

#[derive(Deserialize)]
pub(super) struct LogsQuery {
    stage: Option<String>,
    action: Option<String>,
    #[serde(default)]
    download: bool,
    /// Only lines containing this text (any case, colours aside).
    #[serde(default)]
    q: String,
    #[serde(default)]
    fragment: bool,
}

/// The text of a log line in pieces, each with the class of the ANSI SGR
/// colour in force (`fg1`..`fg7`, `b` for bold); other escapes are dropped.
pub(super) fn ansi_pieces(line: &str) -> Vec<Piece> {
    let mut pieces = Vec::new();
    let mut class: &'static str = "";
    let mut text = String::new();
    let mut rest = line;
    while let Some(at) = rest.find('\u{1b}') {
        text.push_str(&rest[..at]);
        rest = &rest[at + 1..];
        let Some(params) = rest.strip_prefix('[') else {
            continue;
        };
        let end = params
            .find(|c: char| !(c.is_ascii_digit() || c == ';'))
            .unwrap_or(params.len());
        let (codes, after) = params.split_at(end);
        let mut chars = after.chars();
        let command = chars.next();
        rest = chars.as_str();
        if command != Some('m') {
            continue;
        }
        if !text.is_empty() {
            pieces.push(Piece {
                class,
                text: std::mem::take(&mut text),
            });
        }
        for code in codes.split(';') {
            class = match code.parse::<u32>().unwrap_or(0) {
                0 | 39 => "",
                1 => "b",
                n @ (31..=37) | n @ (91..=97) => {
                    ["fg1", "fg2", "fg3", "fg4", "fg5", "fg6", "fg7"][(n % 10 - 1) as usize]
                }
                _ => class,
            };
        }
    }
    text.push_str(rest);
    if !text.is_empty() {
        pieces.push(Piece { class, text });
    }
    pieces
}

pub(super) async fn logs(
    State(console): State<Console>,
    caller: Caller,
    Extension(session): Extension<Session>,
    Path(id): Path<String>,
    PageQuery(q): PageQuery<LogsQuery>,
) -> Result<Response, Failure> {
    let stage = q.stage.unwrap_or_default();
    let action = q.action.unwrap_or_default();
    let mut uri = format!("/api/v1/executions/{}/logs?limit=20000", path_segment(&id));
    if !stage.is_empty() && !action.is_empty() {
        uri.push_str(&format!(
            "&stage={}&action={}",
            form_urlencode(&stage),
            form_urlencode(&action)
        ));
    }
    let page: LogsPage = console
        .get(&caller, &uri)
        .await
        .map_err(|f| f.missing(|| format!("there is no execution {id}")))?;
    if q.download {
        let text: String = page.lines.iter().map(|l| format!("{}\n", l.line)).collect();
        let mut response = text.into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        response.headers_mut().insert(
            header::CONTENT_DISPOSITION,
            HeaderValue::from_static("attachment; filename=\"gantry.log\""),
        );
        return Ok(response);
    }
    let execution = read_execution(&console, &caller, &id).await?;
    let card = execution.action(&stage, &action);
    let running = match card {
        Some(a) => matches!(a.status.as_deref(), None | Some("InProgress")),
        None => !execution.is_finished(),
    };
    let reports = card
        .and_then(|a| a.reports.clone())
        .unwrap_or_default()
        .into_iter()
        .map(|r| ReportTable {
            group: r.group,
            passed: r.passed,
            failed: r.failed,
            skipped: r.skipped,
            failures: r.failures,
        })
        .collect();
    let query = q.q.trim().to_string();
    let needle = query.to_lowercase();
    let total = page.lines.len();
    let rows = page
        .lines
        .iter()
        .map(|l| LogRow {
            seq: l.seq,
            at: l.at.clone(),
            pieces: ansi_pieces(&l.line),
        })
        .filter(|row| {
            needle.is_empty()
                || row
                    .pieces
                    .iter()
                    .map(|p| p.text.as_str())
                    .collect::<String>()
                    .to_lowercase()
                    .contains(&needle)
        })
        .collect();
    let this = |extra: &str| {
        format!(
            "/executions/{}/logs?stage={}&action={}{extra}",
            path_segment(&id),
            form_urlencode(&stage),
            form_urlencode(&action)
        )
    };
    let m = LogsModel {
        download: this("&download=true"),
        live: this(&format!("&q={}&fragment=true", form_urlencode(&query))),
        rows,
        total,
        reports,
        running,
        query,
        id,
        stage,
        action,
    };
    Ok(if q.fragment {
        LogsLive { m }.into_response()
    } else {
        LogsView {
            chrome: Chrome::of(&caller, &session),
            m,
        }
        .into_response()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ansi_colours_become_classes_and_other_escapes_vanish() {
        let pieces = ansi_pieces("a\u{1b}[31mred\u{1b}[0m b\u{1b}[2Kc\u{1b}[1;32mok");
        let shown: Vec<(&str, &str)> = pieces.iter().map(|p| (p.class, p.text.as_str())).collect();
        assert_eq!(
            shown,
            [("", "a"), ("fg1", "red"), ("", " bc"), ("fg2", "ok")]
        );
    }

    #[test]
    fn next_is_a_path_of_this_server() {
        assert_eq!(safe_next(Some("/executions/x")), "/executions/x");
        for bad in [
            "//evil.example",
            "https://evil.example",
            "/\\evil",
            "",
            "/\t/evil.example",
            "/\n/evil.example",
            "/ /evil.example",
        ] {
            assert_eq!(safe_next(Some(bad)), "/", "{bad}");
        }
    }
}
