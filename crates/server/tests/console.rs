//! The web console over HTTP, in-process (`oneshot`) with a real store and
//! a real git repository: the session cookie's flags, sign-in and
//! sign-out, one-time sign-in links, CSRF (a form without its token is
//! refused and changes nothing), roles (a viewer cannot approve by posting
//! the form), an expired session's way back, 404 pages, and user text
//! (commit messages, comments, log lines) coming back escaped; the
//! environment page over real replicas (rules, traffic, what made a
//! revision, a revision diff, a rollback).

mod support;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use gantry_api::ExecutionView;
use gantry_auth::{AuditQuery, Grant};
use gantry_server::ControlPlane;
use gantry_server::console::SessionLimits;
use gantry_server::guard::HostPolicy;
use tower::ServiceExt;

const HOST: &str = "127.0.0.1:7700";
/// The browser's address, as the listener would give it.
const CLIENT: &str = "127.0.0.9:4242";

/// A pipeline whose commit message, log lines and approval carry HTML.
const PIPELINE: &str = r##"
version: 1
name: web
stages:
  - name: Source
    actions:
      - {name: checkout, type: source, repository: ., outputs: [Src], namespace: Source}
  - name: Build
    actions:
      - name: build
        type: shell
        commands:
          - echo '<script>alert("log")</script>'
          - printf '\033[31mred\033[0m plain\n'
  - name: Approve
    actions:
      - {name: release, type: approval, review_url: "javascript:alert(1)"}
  - name: After
    actions:
      - {name: done, type: shell, commands: ["true"]}
"##;

const COMMIT_MESSAGE: &str = "<script>alert(\"commit\")</script> first";

struct Fixture {
    _dir: tempfile::TempDir,
    repo: PathBuf,
    plane: ControlPlane,
    app: axum::Router,
}

async fn fixture_with(app: impl Fn(ControlPlane) -> axum::Router) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    std::fs::create_dir_all(&repo).unwrap();
    let git = |args: &[&str]| gantry_testkit::git_as(&repo, ("Carol", "carol@example.com"), args);
    git(&["init", "-q", "-b", "main"]);
    std::fs::write(repo.join("gantry.yaml"), PIPELINE).unwrap();
    git(&["add", "-A"]);
    git(&["commit", "-q", "-m", COMMIT_MESSAGE]);
    let plane = ControlPlane::open(&dir.path().join("data")).await.unwrap();
    Fixture {
        app: app(plane.clone()),
        _dir: dir,
        repo,
        plane,
    }
}

async fn fixture() -> Fixture {
    fixture_with(|plane| gantry_server::api::router(plane, HostPolicy::default())).await
}

/// An answer: status, headers, body text.
struct Page {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    text: String,
}

impl Page {
    fn location(&self) -> &str {
        self.headers
            .get(header::LOCATION)
            .map(|v| v.to_str().unwrap())
            .unwrap_or_default()
    }

    fn cookies(&self) -> Vec<String> {
        self.headers
            .get_all(header::SET_COOKIE)
            .iter()
            .map(|v| v.to_str().unwrap().to_string())
            .collect()
    }

    /// The value of the first hidden `csrf` field.
    fn csrf(&self) -> String {
        let at = self
            .text
            .find("name=\"csrf\" value=\"")
            .expect("a csrf field")
            + 19;
        self.text[at..at + 64].to_string()
    }
}

/// A browser without JavaScript: a cookie jar and forms.
struct Browser<'a> {
    fx: &'a Fixture,
    cookies: BTreeMap<String, String>,
}

impl<'a> Browser<'a> {
    fn new(fx: &'a Fixture) -> Browser<'a> {
        Browser {
            fx,
            cookies: BTreeMap::new(),
        }
    }

    async fn send(&mut self, method: &str, path: &str, form: Option<&[(&str, &str)]>) -> Page {
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header(header::HOST, HOST)
            .extension(axum::extract::ConnectInfo(
                CLIENT.parse::<std::net::SocketAddr>().unwrap(),
            ));
        if !self.cookies.is_empty() {
            let jar: Vec<String> = self
                .cookies
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            request = request.header(header::COOKIE, jar.join("; "));
        }
        let body = match form {
            Some(fields) => {
                request = request.header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
                let encoded: Vec<String> = fields
                    .iter()
                    .map(|(k, v)| format!("{k}={}", gantry_server::console::form_urlencode(v)))
                    .collect();
                Body::from(encoded.join("&"))
            }
            None => Body::empty(),
        };
        let response = self
            .fx
            .app
            .clone()
            .oneshot(request.body(body).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = axum::body::to_bytes(response.into_body(), 8 << 20)
            .await
            .unwrap();
        let page = Page {
            status,
            headers,
            text: String::from_utf8_lossy(&bytes).into_owned(),
        };
        for cookie in page.cookies() {
            let pair = cookie.split(';').next().unwrap();
            let (name, value) = pair.split_once('=').unwrap();
            if value.is_empty() || cookie.contains("Max-Age=0") {
                self.cookies.remove(name);
            } else {
                self.cookies.insert(name.to_string(), value.to_string());
            }
        }
        page
    }

    async fn get(&mut self, path: &str) -> Page {
        self.send("GET", path, None).await
    }

    async fn post(&mut self, path: &str, form: &[(&str, &str)]) -> Page {
        self.send("POST", path, Some(form)).await
    }

    /// Signs in with `token` through the sign-in form; returns the answer.
    async fn sign_in(&mut self, token: &str, next: &str) -> Page {
        let form = self.get(&format!("/signin?next={next}")).await;
        assert_eq!(form.status, StatusCode::OK, "{}", form.text);
        let csrf = form.csrf();
        self.post(
            "/signin",
            &[("csrf", &csrf), ("token", token), ("next", next)],
        )
        .await
    }
}

impl Fixture {
    async fn user(&self, name: &str, grants: &[&str]) -> String {
        let now = gantry_clock::now_ms();
        let grants: Vec<Grant> = grants.iter().map(|g| g.parse().unwrap()).collect();
        self.plane
            .auth()
            .add_user(name, None, grants, now)
            .await
            .unwrap();
        self.plane
            .auth()
            .create_token(name, None, None, now)
            .await
            .unwrap()
            .secret
            .expose()
            .to_string()
    }

    async fn start(&self, by: &str) -> String {
        let file = self.repo.join("gantry.yaml");
        self.plane
            .start_execution(
                file,
                PIPELINE.to_string(),
                BTreeMap::new(),
                BTreeMap::new(),
                Some(by.into()),
            )
            .await
            .unwrap()
    }

    async fn view(&self, id: &str) -> ExecutionView {
        let (execution, loaded) = self.plane.execution(id).await.unwrap();
        gantry_server::view::execution_view(&execution, loaded.as_deref())
    }

    async fn wait_for(
        &self,
        id: &str,
        what: &str,
        done: impl Fn(&ExecutionView) -> bool,
    ) -> ExecutionView {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        let mut changes = self.plane.changes();
        loop {
            let v = self.view(id).await;
            if done(&v) {
                return v;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {what}: {v:#?}"
            );
            let _ = tokio::time::timeout(Duration::from_millis(200), changes.changed()).await;
        }
    }

    async fn waiting(&self, by: &str) -> String {
        let id = self.start(by).await;
        self.wait_for(&id, "the approval", |v| {
            v.action("Approve", "release").unwrap().status.as_deref() == Some("Waiting")
        })
        .await;
        id
    }

    async fn audit_outcomes(&self) -> Vec<(String, String)> {
        self.plane
            .auth()
            .audit_log(&AuditQuery::default())
            .await
            .unwrap()
            .into_iter()
            .map(|r| (r.action, r.outcome))
            .collect()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signing_in_gives_a_strict_httponly_session_cookie_and_signing_out_ends_it() {
    let fx = fixture().await;
    let token = fx.user("vera", &["viewer"]).await;
    let mut browser = Browser::new(&fx);
    // Not signed in: every page sends the browser to sign in.
    let page = browser.get("/").await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    assert_eq!(page.location(), "/signin?next=/");
    // A wrong token is refused, and no session cookie is set.
    let page = browser.sign_in("gantry_not-a-token", "/").await;
    assert_eq!(page.status, StatusCode::UNAUTHORIZED, "{}", page.text);
    assert!(page.text.contains("not accepted"));
    assert!(!browser.cookies.contains_key("gantry_session"));
    let page = browser.sign_in(&token, "/").await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.text);
    assert_eq!(page.location(), "/");
    let cookie = page
        .cookies()
        .into_iter()
        .find(|c| c.starts_with("gantry_session="))
        .expect("a session cookie");
    for flag in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(cookie.contains(flag), "{cookie} lacks {flag}");
    }
    assert!(!cookie.contains("Secure"), "plain HTTP: {cookie}");
    assert!(!cookie.contains(&token), "the cookie is not the token");
    let page = browser.get("/").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text);
    assert!(page.text.contains("Signed in as <strong>vera</strong>"));
    assert_eq!(page.headers[header::CACHE_CONTROL], "no-store");
    assert!(
        page.headers[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap()
            .contains("default-src 'self'")
    );
    // Sign-out is a form with the session's CSRF token.
    let csrf = page.csrf();
    let page = browser.post("/signout", &[("csrf", &csrf)]).await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    assert_eq!(browser.get("/").await.status, StatusCode::SEE_OTHER);
    // The sign-in is audited with the client's address.
    let records = fx
        .plane
        .auth()
        .audit_log(&AuditQuery::default())
        .await
        .unwrap();
    let signin = records
        .iter()
        .find(|r| r.action == "console sign-in" && r.outcome == "ok")
        .expect("the sign-in is audited");
    assert_eq!(signin.principal.as_deref(), Some("vera"));
    assert_eq!(signin.remote.as_deref(), Some(CLIENT));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_tls_the_session_cookie_is_secure() {
    let fx = fixture_with(|plane| {
        gantry_server::api::router(
            plane,
            HostPolicy {
                tls: true,
                ..HostPolicy::default()
            },
        )
    })
    .await;
    let token = fx.user("vera", &["viewer"]).await;
    let mut browser = Browser::new(&fx);
    let page = browser.sign_in(&token, "/").await;
    let cookie = page
        .cookies()
        .into_iter()
        .find(|c| c.starts_with("gantry_session="))
        .unwrap();
    assert!(cookie.contains("; Secure"), "{cookie}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_form_without_its_csrf_token_is_refused_and_changes_nothing() {
    let fx = fixture().await;
    let ann = fx.user("ann", &["approver", "operator"]).await;
    let id = fx.waiting("sam").await;
    let mut browser = Browser::new(&fx);
    browser.sign_in(&ann, "/").await;
    let path = format!("/executions/{id}/approvals/Approve/release");
    let dialog = browser.get(&path).await;
    assert_eq!(dialog.status, StatusCode::OK, "{}", dialog.text);
    assert!(
        dialog.text.contains("id=\"approve\""),
        "an approver sees the button"
    );
    for csrf in [None, Some("0".repeat(64)), Some("x".into())] {
        let mut form = vec![("decision", "Approved"), ("comment", "ok")];
        if let Some(csrf) = &csrf {
            form.push(("csrf", csrf));
        }
        let page = browser.post(&path, &form).await;
        assert_eq!(page.status, StatusCode::FORBIDDEN, "{}", page.text);
        assert!(page.text.contains("console.csrf"));
        let page = browser.post(&format!("/executions/{id}/stop"), &form).await;
        assert_eq!(page.status, StatusCode::FORBIDDEN, "{}", page.text);
    }
    let view = fx.view(&id).await;
    assert_eq!(view.status, "InProgress");
    assert_eq!(
        view.action("Approve", "release").unwrap().status.as_deref(),
        Some("Waiting")
    );
    assert!(fx.plane.approvals(&id).await.unwrap().is_empty());
    let refused = fx
        .audit_outcomes()
        .await
        .into_iter()
        .filter(|(_, outcome)| outcome == "console.csrf")
        .count();
    assert_eq!(refused, 6, "every refusal is audited");
    // The sign-in form has its own token (no session yet).
    let mut stranger = Browser::new(&fx);
    let page = stranger
        .post("/signin", &[("token", &ann), ("next", "/")])
        .await;
    assert_eq!(page.status, StatusCode::FORBIDDEN);
    assert!(!stranger.cookies.contains_key("gantry_session"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_cannot_approve_even_by_posting_the_form_and_an_approver_can() {
    let fx = fixture().await;
    let vera = fx.user("vera", &["viewer"]).await;
    let ann = fx.user("ann", &["approver"]).await;
    let id = fx.waiting("sam").await;
    let path = format!("/executions/{id}/approvals/Approve/release");
    let mut viewer = Browser::new(&fx);
    viewer.sign_in(&vera, "/").await;
    let dialog = viewer.get(&path).await;
    assert_eq!(dialog.status, StatusCode::OK);
    assert!(
        !dialog.text.contains("id=\"approve\""),
        "no button for a viewer"
    );
    let execution = viewer.get(&format!("/executions/{id}")).await;
    for button in ["id=\"release\"", "id=\"stop\""] {
        assert!(
            !execution.text.contains(button),
            "a viewer sees no {button}"
        );
    }
    let csrf = dialog.csrf();
    let page = viewer
        .post(
            &path,
            &[
                ("csrf", &csrf),
                ("decision", "Approved"),
                ("comment", "sneaky"),
            ],
        )
        .await;
    assert_eq!(page.status, StatusCode::FORBIDDEN, "{}", page.text);
    let page = viewer
        .post(&format!("/executions/{id}/stop"), &[("csrf", &csrf)])
        .await;
    assert_eq!(page.status, StatusCode::FORBIDDEN, "{}", page.text);
    let page = viewer
        .post(&format!("/executions/{id}/release"), &[("csrf", &csrf)])
        .await;
    assert_eq!(page.status, StatusCode::FORBIDDEN, "{}", page.text);
    assert!(fx.plane.approvals(&id).await.unwrap().is_empty());
    assert_eq!(
        fx.plane.executions(None, 10).await.len(),
        1,
        "nothing started"
    );
    assert!(
        fx.audit_outcomes()
            .await
            .iter()
            .any(|(action, outcome)| action.starts_with("console POST")
                && outcome.starts_with("auth.")),
        "the refusal is audited"
    );
    // The approver decides through the same dialog.
    let mut approver = Browser::new(&fx);
    approver.sign_in(&ann, "/").await;
    let dialog = approver.get(&path).await;
    let csrf = dialog.csrf();
    let fingerprint = {
        let at = dialog.text.find("name=\"fingerprint\" value=\"").unwrap() + 26;
        dialog.text[at..at + 16].to_string()
    };
    let page = approver
        .post(
            &path,
            &[
                ("csrf", &csrf),
                ("decision", "Approved"),
                ("comment", "<script>alert(\"comment\")</script>"),
                ("fingerprint", &fingerprint),
            ],
        )
        .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.text);
    assert_eq!(page.location(), format!("/executions/{id}"));
    fx.wait_for(&id, "success", |v| v.status == "Succeeded")
        .await;
    let page = approver.get(&format!("/executions/{id}")).await;
    assert!(page.text.contains("Approved by ann"), "{}", page.text);
    assert!(!page.text.contains("<script>alert(\"comment\")"));
    assert!(
        page.text
            .contains("&lt;script&gt;alert(&quot;comment&quot;)&lt;/script&gt;")
            || page.text.contains("&#60;script&#62;"),
        "{}",
        page.text
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_text_comes_back_escaped_on_every_page() {
    let fx = fixture().await;
    let root = fx.user("root", &["admin"]).await;
    let id = fx.waiting("root").await;
    let mut browser = Browser::new(&fx);
    browser.sign_in(&root, "/").await;
    let pages = [
        "/".to_string(),
        format!("/executions/{id}"),
        format!("/executions/{id}/approvals/Approve/release"),
        format!("/executions/{id}/logs?stage=Build&action=build"),
    ];
    for path in &pages {
        let page = browser.get(path).await;
        assert_eq!(page.status, StatusCode::OK, "{path}: {}", page.text);
        assert!(
            !page.text.contains("<script>"),
            "{path} holds an unescaped <script>:\n{}",
            page.text
        );
    }
    let dialog = browser.get(&pages[2]).await;
    // A review URL that is no web address is shown, never linked.
    assert!(
        !dialog.text.contains("href=\"javascript:"),
        "{}",
        dialog.text
    );
    assert!(
        dialog.text.contains("Review: javascript:alert(1)"),
        "{}",
        dialog.text
    );
    assert!(
        dialog
            .text
            .contains("&lt;script&gt;alert(&quot;commit&quot;)&lt;/script&gt; first")
            || dialog.text.contains("&#60;script&#62;"),
        "the commit message is shown: {}",
        dialog.text
    );
    let logs = browser.get(&pages[3]).await;
    assert!(
        logs.text
            .contains("&lt;script&gt;alert(&quot;log&quot;)&lt;/script&gt;")
            || logs.text.contains("&#60;script&#62;"),
        "{}",
        logs.text
    );
    assert!(
        logs.text.contains("<span class=\"fg1\">red</span>"),
        "ANSI red is a span: {}",
        logs.text
    );
    assert!(logs.text.contains("id=\"L"), "lines have anchors");
    let download = browser.get(&format!("{}&download=true", pages[3])).await;
    assert!(
        download.text.contains("<script>alert(\"log\")</script>"),
        "the download is the raw text"
    );
    assert!(
        download.headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_session_goes_to_sign_in_then_back_to_the_page_asked_for() {
    let fx = fixture_with(|plane| {
        gantry_server::console::router_with(
            plane,
            HostPolicy::default(),
            SessionLimits {
                idle: Duration::from_millis(300),
                ..SessionLimits::default()
            },
        )
    })
    .await;
    let root = fx.user("root", &["admin"]).await;
    let id = fx.start("root").await;
    let mut browser = Browser::new(&fx);
    browser.sign_in(&root, "/").await;
    let path = format!("/executions/{id}");
    assert_eq!(browser.get(&path).await.status, StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(400)).await;
    let page = browser.get(&path).await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    let signin = page.location().to_string();
    assert_eq!(signin, format!("/signin?next={path}"));
    let form = browser.get(&signin).await;
    let csrf = form.csrf();
    let next = {
        let at = form.text.find("name=\"next\" value=\"").unwrap() + 19;
        form.text[at..at + form.text[at..].find('"').unwrap()].to_string()
    };
    assert_eq!(next, path);
    let page = browser
        .post(
            "/signin",
            &[("csrf", &csrf), ("token", &root), ("next", &next)],
        )
        .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    assert_eq!(page.location(), path, "back to the page asked for");
    assert_eq!(browser.get(&path).await.status, StatusCode::OK);
    // `next` never leaves this server.
    let form = browser.get("/signin?next=//evil.example/x").await;
    assert_eq!(form.status, StatusCode::SEE_OTHER);
    assert_eq!(form.location(), "/");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_token_ends_its_sessions() {
    let fx = fixture().await;
    let now = gantry_clock::now_ms();
    fx.plane
        .auth()
        .add_user("vera", None, vec!["viewer".parse().unwrap()], now)
        .await
        .unwrap();
    let token = fx
        .plane
        .auth()
        .create_token("vera", None, None, now)
        .await
        .unwrap();
    let mut browser = Browser::new(&fx);
    browser.sign_in(token.secret.expose(), "/").await;
    assert_eq!(browser.get("/").await.status, StatusCode::OK);
    fx.plane
        .auth()
        .revoke_token(&token.info.id, now)
        .await
        .unwrap();
    assert_eq!(browser.get("/").await.status, StatusCode::SEE_OTHER);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_time_sign_in_link_works_once() {
    let fx = fixture().await;
    let root = fx.user("root", &["admin"]).await;
    let request = Request::post("/api/v1/console/links")
        .header(header::HOST, HOST)
        .header(header::AUTHORIZATION, format!("Bearer {root}"))
        .body(Body::empty())
        .unwrap();
    let response = fx.app.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 16)
        .await
        .unwrap();
    let answer: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    let path = answer["path"].as_str().unwrap().to_string();
    assert!(path.starts_with("/signin/link/"), "{answer}");
    let mut browser = Browser::new(&fx);
    let page = browser.get(&path).await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    assert_eq!(browser.get("/").await.status, StatusCode::OK);
    let mut other = Browser::new(&fx);
    let page = other.get(&path).await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST, "used up");
    assert!(!other.cookies.contains_key("gantry_session"));
    // Without a token no link is made.
    let request = Request::post("/api/v1/console/links")
        .header(header::HOST, HOST)
        .body(Body::empty())
        .unwrap();
    let response = fx.app.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_things_get_a_404_page_with_a_way_back_and_foreign_hosts_are_refused() {
    let fx = fixture().await;
    let root = fx.user("root", &["admin"]).await;
    let id = fx.waiting("root").await;
    let mut browser = Browser::new(&fx);
    browser.sign_in(&root, "/").await;
    for path in [
        "/executions/no-such-execution".to_string(),
        format!("/executions/{id}/approvals/Nope/release"),
        "/no/such/page".to_string(),
    ] {
        let page = browser.get(&path).await;
        assert_eq!(page.status, StatusCode::NOT_FOUND, "{path}");
        assert!(page.text.contains("href=\"/\""), "{path}: a way back");
    }
    // An unknown API path keeps the API's bare 404.
    let page = browser.get("/api/v1/nope").await;
    assert_eq!(page.status, StatusCode::NOT_FOUND);
    assert!(page.text.is_empty());
    // DNS rebinding is refused as by the API.
    let request = Request::get("/")
        .header(header::HOST, "evil.example")
        .body(Body::empty())
        .unwrap();
    let response = fx.app.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::MISDIRECTED_REQUEST);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_history_page_filters_and_pages_without_javascript() {
    let fx = fixture().await;
    let root = fx.user("root", &["admin"]).await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(fx.waiting("root").await);
    }
    let commit = fx.view(&ids[0]).await.source_revisions["checkout"].clone();
    let mut browser = Browser::new(&fx);
    browser.sign_in(&root, "/").await;
    // The pipelines page links to its history.
    let pipelines = browser.get("/").await;
    assert!(
        pipelines
            .text
            .contains("href=\"/history?pipeline=web\">3 executions"),
        "{}",
        pipelines.text
    );
    // One a page: newest first, with links both ways.
    let first = browser.get("/history?size=1").await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.text);
    assert!(first.text.contains(&ids[2]) && !first.text.contains(&ids[1]));
    assert!(
        first.text.contains("href=\"/history?page=1&#38;size=1\""),
        "{}",
        first.text
    );
    let second = browser.get("/history?page=1&size=1").await;
    assert!(second.text.contains(&ids[1]) && !second.text.contains(&ids[2]));
    assert!(second.text.contains("rel=\"prev\"") && second.text.contains("rel=\"next\""));
    let last = browser.get("/history?page=2&size=1").await;
    assert!(last.text.contains(&ids[0]) && !last.text.contains("rel=\"next\""));
    // Filters: by commit prefix, trigger and status, as the form sends them.
    let by_commit = browser
        .get(&format!(
            "/history?status=&trigger=manual&commit={}",
            &commit[..7]
        ))
        .await;
    assert!(
        ids.iter().all(|id| by_commit.text.contains(id.as_str())),
        "{}",
        by_commit.text
    );
    let none = browser.get("/history?commit=ffffffff0000").await;
    assert!(none.text.contains("No execution matches"), "{}", none.text);
    let webhooks = browser.get("/history?trigger=webhook").await;
    assert!(!webhooks.text.contains(&ids[0]));
    let failed = browser.get("/history?status=Failed").await;
    assert!(ids.iter().all(|id| !failed.text.contains(id.as_str())));
    assert!(
        failed.text.contains("<option value=\"Failed\" selected>"),
        "the form keeps the filter"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn environments_parameters_triggers_and_audit_pages_show_what_the_api_gives() {
    let fx = fixture().await;
    let root = fx.user("root", &["admin"]).await;
    let viewer = fx.user("vera", &["viewer"]).await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let env = format!(
        "version: 1\nenvironments:\n  staging:\n    runtime: process\n    load_balancer:\n      listen: 127.0.0.1:{port}\n      rules:\n        - {{priority: 10, path: \"/*\", service: web}}\nservices:\n  web:\n    replicas: 2\n"
    );
    let file = fx.repo.join("env.yaml");
    fx.plane
        .apply_file(&file, &env, &Default::default())
        .await
        .unwrap();
    // A String parameter whose value is HTML, and a SecureString whose value
    // must never reach a browser.
    let params = fx.plane.params();
    let name = gantry_params::ParamName::parse("/web/banner").unwrap();
    params
        .put(gantry_params::PutParameter::new(
            &name,
            "<script>alert(\"param\")</script>",
            gantry_params::ParamType::String,
            "root",
        ))
        .await
        .unwrap();
    let secret = gantry_params::ParamName::parse("/web/db-password").unwrap();
    params
        .put(gantry_params::PutParameter::new(
            &secret,
            "hunter2-never-in-html",
            gantry_params::ParamType::SecureString,
            "root",
        ))
        .await
        .unwrap();
    let mut browser = Browser::new(&fx);
    browser.sign_in(&root, "/").await;
    let list = browser.get("/environments").await;
    assert_eq!(list.status, StatusCode::OK, "{}", list.text);
    assert!(
        list.text.contains("href=\"/environments/staging\""),
        "{}",
        list.text
    );
    let staging = browser.get("/environments/staging").await;
    assert_eq!(staging.status, StatusCode::OK, "{}", staging.text);
    assert!(staging.text.contains("web") && staging.text.contains("Never deployed"));
    assert!(staging.text.contains(&format!("127.0.0.1:{port}")));
    assert!(
        !staging.text.contains("/rollback"),
        "nothing to roll back to: no button"
    );
    let missing = browser.get("/environments/nope").await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND, "{}", missing.text);
    assert!(missing.text.contains("href=\"/\""));
    let parameters = browser.get("/parameters").await;
    assert_eq!(parameters.status, StatusCode::OK, "{}", parameters.text);
    assert!(
        parameters.text.contains("/web/db-password") && parameters.text.contains("SecureString")
    );
    assert!(
        !parameters.text.contains("hunter2-never-in-html"),
        "a SecureString's value is never in the HTML"
    );
    assert!(
        parameters
            .text
            .contains("&#60;script&#62;alert(&#34;param&#34;)&#60;/script&#62;")
            || parameters.text.contains("&lt;script&gt;"),
        "{}",
        parameters.text
    );
    for path in [
        "/",
        "/history",
        "/environments",
        "/environments/staging",
        "/parameters",
        "/triggers",
        "/agents",
        "/audit",
    ] {
        let page = browser.get(path).await;
        assert_eq!(page.status, StatusCode::OK, "{path}: {}", page.text);
        assert!(!page.text.contains("<script>"), "{path}: {}", page.text);
        assert!(!page.text.contains("hunter2-never-in-html"), "{path}");
    }
    let agents = browser.get("/agents").await;
    assert!(agents.text.contains("No build agent"), "{}", agents.text);
    // An agent that polled is listed with its labels; its name is text.
    fx.plane
        .agents()
        .poll(
            "builder",
            "<b>rack-7</b>",
            &["linux".to_string(), "docker".to_string()],
            gantry_server::agents::VERSION,
            std::time::Duration::ZERO,
        )
        .await
        .unwrap();
    let agents = browser.get("/agents").await;
    assert_eq!(agents.status, StatusCode::OK, "{}", agents.text);
    assert!(agents.text.contains("linux, docker"), "{}", agents.text);
    assert!(agents.text.contains("alive") && agents.text.contains("idle"));
    assert!(!agents.text.contains("<b>rack-7</b>"), "{}", agents.text);
    let audit = browser.get("/audit").await;
    assert!(audit.text.contains("console sign-in"), "{}", audit.text);
    // The audit log is the admins'; the API says so, the page shows it.
    let mut vera = Browser::new(&fx);
    vera.sign_in(&viewer, "/").await;
    assert_eq!(vera.get("/audit").await.status, StatusCode::FORBIDDEN);
    assert_eq!(
        vera.get("/environments/staging").await.status,
        StatusCode::OK
    );
    // A viewer's rollback is refused by the API.
    let page = vera.get("/environments").await;
    let csrf = page.csrf();
    let refused = vera
        .post(
            "/environments/staging/services/web/rollback",
            &[("csrf", &csrf), ("to", "1")],
        )
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_page_pages_back_by_sequence() {
    let fx = fixture().await;
    let root = fx.user("root", &["admin"]).await;
    let mut browser = Browser::new(&fx);
    browser.sign_in(&root, "/").await;
    // 120 refused forms: 120 audit records, more than a page.
    for _ in 0..120 {
        browser.post("/signout", &[("csrf", "wrong")]).await;
    }
    let first = browser.get("/audit").await;
    let at = first
        .text
        .find("href=\"/audit?before=")
        .expect("an Older link")
        + 20;
    let before: String = first.text[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    let second = browser.get(&format!("/audit?before={before}")).await;
    assert_eq!(second.status, StatusCode::OK);
    let seq: i64 = before.parse().unwrap();
    assert!(
        second
            .text
            .contains(&format!("<th scope=\"row\">{}</th>", seq - 1)),
        "{}",
        second.text
    );
    assert!(
        !second
            .text
            .contains(&format!("<th scope=\"row\">{seq}</th>"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn next_with_a_tab_or_newline_stays_on_this_server() {
    let fx = fixture().await;
    let vera = fx.user("vera", &["viewer"]).await;
    // A browser drops tabs and newlines from a Location: `/<TAB>/evil`
    // would take it to `//evil`, another site.
    for next in ["/\t/evil.example", "/\n/evil.example", "/\r\n/evil.example"] {
        let mut browser = Browser::new(&fx);
        let form = browser.get("/signin").await;
        let csrf = form.csrf();
        let page = browser
            .post(
                "/signin",
                &[("csrf", &csrf), ("token", &vera), ("next", next)],
            )
            .await;
        assert_eq!(
            page.status,
            StatusCode::SEE_OTHER,
            "{next:?}: {}",
            page.text
        );
        assert_eq!(page.location(), "/", "{next:?}");
    }
    // Signed in, the sign-in page redirects to `next` at once.
    let mut browser = Browser::new(&fx);
    browser.sign_in(&vera, "/").await;
    for next in [
        "/%09/evil.example",
        "/%0A/evil.example",
        "/%5C/evil.example",
    ] {
        let page = browser.get(&format!("/signin?next={next}")).await;
        assert_eq!(page.status, StatusCode::SEE_OTHER, "{next}");
        assert_eq!(page.location(), "/", "{next}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sign_in_form_is_bounded_in_size() {
    let fx = fixture().await;
    let vera = fx.user("vera", &["viewer"]).await;
    let mut browser = Browser::new(&fx);
    let form = browser.get("/signin").await;
    let csrf = form.csrf();
    let padding = "x".repeat(1 << 20);
    let page = browser
        .post(
            "/signin",
            &[
                ("csrf", &csrf),
                ("token", &vera),
                ("next", "/"),
                ("pad", &padding),
            ],
        )
        .await;
    assert_eq!(page.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", page.text);
    assert!(!browser.cookies.contains_key("gantry_session"));
    // A form of ordinary size still signs in.
    let page = browser.sign_in(&vera, "/").await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_environment_page_shows_rules_traffic_and_what_made_it_and_rolls_back_after_a_diff() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let listen = "127.0.0.1:0".parse().unwrap();
    let server = gantry_server::RunningServer::start(&data, listen, listen)
        .await
        .unwrap();
    let _replicas = support::Replicas(data.clone());
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let text = support::WEB_PROJECT.replace("PORT", &port.to_string());
    server
        .plane
        .apply_file(&dir.path().join("env.yaml"), &text, &Default::default())
        .await
        .unwrap();
    let v1 = support::push_web(&server, "1", "one", "", &[]).await;
    let v2 = support::push_web(&server, "2", "two", "", &[]).await;
    // The console's fixture on this server's control plane, with a commit
    // whose message is HTML and an execution of it.
    let fx = fixture_with(|_| axum::Router::new()).await;
    let fx = Fixture {
        app: gantry_server::api::router(server.plane.clone(), HostPolicy::default()),
        plane: server.plane.clone(),
        ..fx
    };
    let root = fx.user("root", &["admin"]).await;
    let execution = fx.waiting("root").await;
    let deployer = server.plane.deployer();
    let by_pipeline = gantry_deploy::Cause {
        text: format!("deploy action Deploy/web of execution {execution}"),
        execution: Some(execution.clone()),
    };
    deployer
        .deploy("staging", "web", &v1, by_pipeline, &support::Quiet)
        .await
        .unwrap();
    deployer
        .deploy("staging", "web", &v2, "gantry deploy", &support::Quiet)
        .await
        .unwrap();

    let mut browser = Browser::new(&fx);
    browser.sign_in(&root, "/").await;
    let page = browser.get("/environments/staging").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text);
    assert!(
        page.text
            .contains("<tr><td>10</td><td class=\"mono\">/*</td><td>web</td></tr>"),
        "the load balancer's rule: {}",
        page.text
    );
    assert!(
        page.text
            .contains("revision 2 <meter min=\"0\" max=\"100\" value=\"100\">"),
        "revision 2 takes all the traffic: {}",
        page.text
    );
    assert!(
        page.text.contains("<dd>gantry deploy</dd>"),
        "{}",
        page.text
    );
    let diff_link = "/environments/staging/services/web/diff?from=1&#38;to=2";
    assert!(page.text.contains(diff_link), "{}", page.text);

    // The diff between the two: the image, and nothing else.
    let diff = browser
        .get("/environments/staging/services/web/diff?from=1&to=2")
        .await;
    assert_eq!(diff.status, StatusCode::OK, "{}", diff.text);
    assert!(
        diff.text.contains(&format!("<del>{v1}</del>"))
            && diff.text.contains(&format!("<ins>{v2}</ins>")),
        "{}",
        diff.text
    );
    assert_eq!(diff.text.matches("<del>").count(), 1, "{}", diff.text);
    assert!(
        diff.text
            .contains(&format!("href=\"/executions/{execution}\""))
    );

    // Roll back to revision 1 from the page's form: revision 3 serves
    // revision 1's image, made (as the page says) by the execution that
    // made revision 1, with its commit message escaped.
    let csrf = page.csrf();
    let done = browser
        .post(
            "/environments/staging/services/web/rollback",
            &[("csrf", &csrf), ("to", "1")],
        )
        .await;
    assert!(
        done.status.is_redirection(),
        "{}: {}",
        done.status,
        done.text
    );
    assert_eq!(done.location(), "/environments/staging");
    let after = browser.get("/environments/staging").await;
    assert!(
        after.text.contains("<dt>Revision</dt><dd>3</dd>"),
        "{}",
        after.text
    );
    assert!(
        after.text.contains(&format!(
            "href=\"/executions/{execution}\">{execution}</a> of web"
        )),
        "{}",
        after.text
    );
    assert!(
        after
            .text
            .contains("&#60;script&#62;alert(&#34;commit&#34;)&#60;/script&#62; first"),
        "the commit message, escaped: {}",
        after.text
    );
    assert!(!after.text.contains("<script>"));
    let served = reqwest::get(format!("http://127.0.0.1:{port}/"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(served, "one");

    // The images page: each tag with its digest, and where it runs now.
    let images = browser.get("/images").await;
    assert_eq!(images.status, StatusCode::OK, "{}", images.text);
    let (d1, d2) = (support::digest_of(&v1), support::digest_of(&v2));
    assert!(images.text.contains("test/web") && images.text.contains(d2));
    let row_of = |text: &str, digest: &str| {
        let at = text.find(digest).expect("the digest's row");
        text[at..].split("</tr>").next().unwrap().to_string()
    };
    assert!(
        row_of(&images.text, d1).contains("<a href=\"/environments/staging\">staging/web</a>"),
        "revision 3 runs v1: {}",
        images.text
    );
    assert!(!row_of(&images.text, d2).contains("staging/web"));
    let other = browser.get("/images?repository=test/other").await;
    assert!(!other.text.contains(d1), "{}", other.text);

    // A query that does not read is a 400 page with a way back, an unknown
    // revision a 404 page.
    for path in [
        "/environments/staging/services/web/diff?from=abc&to=2",
        "/environments/staging/services/web/diff",
        "/history?page=abc",
        "/images?repository=a&repository=b",
    ] {
        let bad = browser.get(path).await;
        assert_eq!(bad.status, StatusCode::BAD_REQUEST, "{path}: {}", bad.text);
        assert!(
            bad.headers[header::CONTENT_TYPE]
                .to_str()
                .unwrap()
                .starts_with("text/html"),
            "{path}"
        );
        assert!(bad.text.contains("href=\"/\""), "{path}: {}", bad.text);
    }
    let unknown = browser
        .get("/environments/staging/services/web/diff?from=1&to=99")
        .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND, "{}", unknown.text);
    assert!(unknown.text.contains("web in staging has no revision 99"));
    let _ = deployer.down("staging").await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_logs_page_searches_its_lines_and_shows_junit_reports_as_tables() {
    let fx = fixture().await;
    let root = fx.user("root", &["admin"]).await;
    let pipeline = r##"
version: 1
name: tested
stages:
  - name: Source
    actions:
      - {name: checkout, type: source, repository: ., outputs: [Src]}
  - name: Test
    actions:
      - {name: unit, type: test, inputs: [Src], buildspec: tests.yml}
"##;
    let junit = r#"<?xml version="1.0"?>
<testsuites><testsuite name="shop" tests="3" failures="1">
<testcase classname="shop" name="lists products"/>
<testcase classname="shop" name="opens a product"/>
<testcase classname="shop" name="places an order"><failure message="expected 201, got &lt;b&gt;500&lt;/b&gt;">trace</failure></testcase>
</testsuite></testsuites>"#;
    std::fs::write(fx.repo.join("junit.xml"), junit).unwrap();
    std::fs::write(
        fx.repo.join("tests.yml"),
        "version: 0.2\nphases:\n  build:\n    commands: ['echo running tests', 'echo Second LINE', 'echo third line']\nreports:\n  unit:\n    files: [junit.xml]\n",
    )
    .unwrap();
    let git =
        |args: &[&str]| gantry_testkit::git_as(&fx.repo, ("Carol", "carol@example.com"), args);
    git(&["add", "-A"]);
    git(&["commit", "-q", "-m", "tests"]);
    let id = fx
        .plane
        .start_execution(
            fx.repo.join("tested.yaml"),
            pipeline.to_string(),
            BTreeMap::new(),
            BTreeMap::new(),
            Some("root".into()),
        )
        .await
        .unwrap();
    fx.wait_for(&id, "the end", ExecutionView::is_finished)
        .await;
    let mut browser = Browser::new(&fx);
    browser.sign_in(&root, "/").await;
    let logs = format!("/executions/{id}/logs?stage=Test&action=unit");
    let page = browser.get(&logs).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text);
    assert!(
        page.text.contains("unit: <span class=\"status bad\">")
            && page.text.contains("2 passed, 1 failed, 0 skipped"),
        "{}",
        page.text
    );
    assert!(
        page.text
            .contains("<th scope=\"row\">shop.places an order</th>")
            && page
                .text
                .contains("expected 201, got &#60;b&#62;500&#60;/b&#62;"),
        "the failure and its message, escaped: {}",
        page.text
    );
    assert!(!page.text.contains("data-running"), "it has ended");
    // Search: any case, only the matching lines, their anchors kept.
    let found = browser.get(&format!("{logs}&q=second%20line")).await;
    assert_eq!(found.status, StatusCode::OK, "{}", found.text);
    assert!(found.text.contains("Second LINE"), "{}", found.text);
    assert!(!found.text.contains("third line"), "{}", found.text);
    // The command as run, and what it printed.
    assert!(found.text.contains("2 of "), "{}", found.text);
    let at = found.text.find("Second LINE").unwrap();
    let line = &found.text[found.text[..at].rfind("<span class=\"line\"").unwrap()..at];
    assert!(
        line.contains("id=\"L") && line.contains("href=\"#L"),
        "{line}"
    );
    let fragment = browser
        .get(&format!("{logs}&q=second%20line&fragment=true"))
        .await;
    assert!(fragment.text.contains("Second LINE") && !fragment.text.contains("<nav"));
    let none = browser.get(&format!("{logs}&q=nothing-like-this")).await;
    assert!(none.text.contains("No line matches"), "{}", none.text);
}
