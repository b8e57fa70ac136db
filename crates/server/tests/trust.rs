//! The API's trust boundary, attacked as the security review did: DNS
//! rebinding, missing and bad tokens, roles that do not allow a route,
//! client-named server files, names in request bodies posing as
//! identities, and approval policies. Every case checks that nothing
//! changed and that the attempt is in the audit log. In-process (`oneshot`),
//! with a real SQLite store and a real git repository.

use std::path::{Path, PathBuf};
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use futures_util::StreamExt;
use gantry_api::{
    ApplyRequest, ApprovalView, DecideRequest, DecisionAnswer, DeleteParameterRequest,
    DeployRequest, ErrorBody, ExecutionView, GrantsRequest, LabelParameterRequest, NewTokenRequest,
    NewUserRequest, ParameterView, PromoteImageRequest, PromoteRequest, PutParameterRequest,
    RegistryGcRequest, RetryRequest, RollbackRequest, RotateKeyRequest, ShutdownRequest,
    StartRequest, Started, StopRequest,
};
use gantry_auth::{AuditQuery, Grant};
use gantry_server::ControlPlane;
use gantry_server::guard::HostPolicy;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tower::ServiceExt;

struct Fixture {
    _dir: tempfile::TempDir,
    repo: PathBuf,
    plane: ControlPlane,
    app: axum::Router,
    now: i64,
}

/// A request body, written from its API type.
fn body(request: &impl Serialize) -> Option<Value> {
    Some(serde_json::to_value(request).unwrap())
}

/// `POST /api/v1/executions` of `text`, named `file`.
fn start_request(file: impl Into<PathBuf>, text: &str) -> StartRequest {
    StartRequest {
        file: file.into(),
        text: Some(text.to_string()),
        includes: Default::default(),
        variables: Default::default(),
    }
}

/// `POST /api/v1/params/put` of a new parameter.
fn put_request(name: &str, value: &str, param_type: Option<&str>) -> PutParameterRequest {
    PutParameterRequest {
        name: name.to_string(),
        value: value.to_string(),
        param_type: param_type.map(str::to_string),
        overwrite: false,
        description: None,
        by: None,
    }
}

/// An answer's body: read as its API type, or shown as text.
struct Reply(Vec<u8>);

impl Reply {
    fn read<T: DeserializeOwned>(&self) -> T {
        serde_json::from_slice(&self.0).unwrap_or_else(|e| panic!("{e}: {self}"))
    }

    /// The code of an error answer.
    fn code(&self) -> String {
        self.read::<ErrorBody>().code
    }
}

impl std::fmt::Display for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&String::from_utf8_lossy(&self.0))
    }
}

/// Commits as Carol: approval policies match the commit author.
fn git(dir: &Path, args: &[&str]) {
    gantry_testkit::git_as(dir, ("Carol", "carol@example.com"), args);
}

async fn fixture(pipeline: &str) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    std::fs::create_dir_all(&repo).unwrap();
    git(&repo, &["init", "-q", "-b", "main"]);
    std::fs::write(repo.join("gantry.yaml"), pipeline).unwrap();
    git(&repo, &["add", "-A"]);
    git(&repo, &["commit", "-q", "-m", "first commit"]);
    let plane = ControlPlane::open(&dir.path().join("data")).await.unwrap();
    let app = gantry_server::api::router(plane.clone(), HostPolicy::default());
    Fixture {
        _dir: dir,
        repo,
        plane,
        app,
        now: gantry_clock::now_ms(),
    }
}

impl Fixture {
    /// A user with `grants` and a token of theirs.
    async fn user(&self, name: &str, email: Option<&str>, grants: &[&str]) -> String {
        let grants: Vec<Grant> = grants.iter().map(|g| g.parse().unwrap()).collect();
        self.plane
            .auth()
            .add_user(name, email, grants, self.now)
            .await
            .unwrap();
        self.plane
            .auth()
            .create_token(name, None, None, self.now)
            .await
            .unwrap()
            .secret
            .expose()
            .to_string()
    }

    /// Sends a request; returns the status and the body.
    async fn send(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        host: &str,
        body: Option<Value>,
    ) -> (StatusCode, Reply) {
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header("host", host);
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        let body = match body {
            Some(v) => {
                request = request.header("content-type", "application/json");
                Body::from(v.to_string())
            }
            None => Body::empty(),
        };
        let response = self
            .app
            .clone()
            .oneshot(request.body(body).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        (status, Reply(bytes.to_vec()))
    }

    async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Reply) {
        self.send(method, path, token, "127.0.0.1:7700", body).await
    }

    async fn audit(&self) -> Vec<gantry_auth::AuditRecord> {
        self.plane
            .auth()
            .audit_log(&AuditQuery::default())
            .await
            .unwrap()
    }

    async fn start(&self, token: &str) -> String {
        let file = self.repo.join("gantry.yaml");
        let text = std::fs::read_to_string(&file).unwrap();
        let (status, answer) = self
            .call(
                "POST",
                "/api/v1/executions",
                Some(token),
                body(&start_request(file, &text)),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{answer}");
        answer.read::<Started>().id
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
            let (execution, loaded) = self.plane.execution(id).await.unwrap();
            let v = gantry_server::view::execution_view(&execution, loaded.as_deref());
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
}

const SHELL_ONLY: &str = r##"
version: 1
name: shop
stages:
  - name: Work
    actions:
      - {name: echo, type: shell, commands: ["true"]}
"##;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebound_host_name_is_refused_even_with_a_valid_token_and_changes_nothing() {
    let fx = fixture(SHELL_ONLY).await;
    let admin = fx.user("root", None, &["admin"]).await;
    let put = body(&put_request("/x/secret", "v", Some("SecureString")));
    for host in [
        "evil.example",
        "evil.example:7700",
        "127.0.0.1.evil.example",
    ] {
        let (status, body) = fx
            .send(
                "POST",
                "/api/v1/params/put",
                Some(&admin),
                host,
                put.clone(),
            )
            .await;
        assert_eq!(status, StatusCode::MISDIRECTED_REQUEST, "{host}: {body}");
        assert_eq!(body.code(), "auth.misdirected_host");
    }
    // Nothing was stored, and each attempt is in the audit log.
    let (status, _) = fx
        .call(
            "GET",
            "/api/v1/params/get?name=/x/secret",
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let refused = fx
        .audit()
        .await
        .into_iter()
        .filter(|r| r.outcome == "auth.misdirected_host")
        .count();
    assert_eq!(refused, 3);
    // Names given with --public-url are accepted.
    let app = gantry_server::api::router(
        fx.plane.clone(),
        HostPolicy::with_public_urls(&["https://gantry.example.com".into()]).unwrap(),
    );
    let response = app
        .oneshot(
            Request::get("/api/v1/whoami")
                .header("host", "gantry.example.com")
                .header("authorization", format!("Bearer {admin}"))
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_web_origin_is_refused() {
    let fx = fixture(SHELL_ONLY).await;
    let admin = fx.user("root", None, &["admin"]).await;
    let request = |origin: &str| {
        Request::post("/api/v1/executions")
            .header("host", "127.0.0.1:7700")
            .header("origin", origin)
            .header("authorization", format!("Bearer {admin}"))
            .header("content-type", "application/json")
            .body(Body::from(
                serde_json::to_string(&start_request("x", SHELL_ONLY)).unwrap(),
            ))
            .unwrap()
    };
    let response = fx
        .app
        .clone()
        .oneshot(request("http://evil.example"))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert!(fx.plane.executions(None, 10).await.is_empty());
    let response = fx
        .app
        .clone()
        .oneshot(request("http://127.0.0.1:7700"))
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        StatusCode::CREATED,
        "same origin is fine"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_wrong_expired_and_revoked_tokens_are_refused_with_stable_codes() {
    let fx = fixture(SHELL_ONLY).await;
    let admin = fx.user("root", None, &["admin"]).await;
    let expiring = fx
        .plane
        .auth()
        .create_token("root", None, Some(fx.now + 1), fx.now)
        .await
        .unwrap();
    let revoked = fx
        .plane
        .auth()
        .create_token("root", None, None, fx.now)
        .await
        .unwrap();
    fx.plane
        .auth()
        .revoke_token(&revoked.info.id, fx.now)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await;
    let start = body(&start_request("/tmp/x.yaml", SHELL_ONLY));
    for (token, code) in [
        (None, "auth.missing_token"),
        (Some("gantry_nope"), "auth.invalid_token"),
        (Some(expiring.secret.expose()), "auth.expired_token"),
        (Some(revoked.secret.expose()), "auth.revoked_token"),
    ] {
        let (status, answer) = fx
            .call("POST", "/api/v1/executions", token, start.clone())
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{code}");
        assert_eq!(answer.code(), code);
        // The answer never echoes the token.
        if let Some(token) = token {
            assert!(!answer.to_string().contains(token));
        }
    }
    assert!(
        fx.plane.executions(None, 10).await.is_empty(),
        "nothing started"
    );
    let audit = fx.audit().await;
    for code in [
        "auth.missing_token",
        "auth.invalid_token",
        "auth.expired_token",
        "auth.revoked_token",
    ] {
        assert!(audit.iter().any(|r| r.outcome == code), "{code} audited");
    }
    let text = serde_json::to_string(&audit).unwrap();
    for token in [
        admin.as_str(),
        expiring.secret.expose(),
        revoked.secret.expose(),
    ] {
        assert!(!text.contains(token), "a token in the audit log");
    }
    // The liveness probe alone needs no token, and says nothing else.
    let (status, health) = fx.call("GET", "/api/v1/health", None, None).await;
    assert_eq!(
        (status, health.to_string()),
        (StatusCode::OK, r#"{"ok":true}"#.to_string())
    );
}

/// What a route needs: `None` = any authenticated caller.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Needs {
    Read,
    Operate,
    Approve,
    Admin,
    Decrypt,
    Anyone,
    /// A build agent's routes: an `agent` grant, and nothing else reaches them.
    Agent,
}

/// Every route of the API (a test below checks that no route is missing),
/// with a request that exercises it and what it needs.
fn routes(file: &Path, id: &str) -> Vec<(&'static str, String, Option<Value>, Needs)> {
    let pipeline = start_request(file, SHELL_ONLY);
    let apply = ApplyRequest {
        file: pipeline.file.clone(),
        text: pipeline.text.clone(),
        includes: Default::default(),
    };
    vec![
        (
            "GET",
            "/api/v1/changes?timeout_ms=1".into(),
            None,
            Needs::Read,
        ),
        ("GET", "/api/v1/executions".into(), None, Needs::Read),
        ("GET", "/api/v1/openapi.json".into(), None, Needs::Read),
        ("GET", "/metrics".into(), None, Needs::Read),
        (
            "POST",
            "/api/v1/executions".into(),
            body(&pipeline),
            Needs::Operate,
        ),
        ("GET", format!("/api/v1/executions/{id}"), None, Needs::Read),
        (
            "GET",
            format!("/api/v1/executions/{id}/logs"),
            None,
            Needs::Read,
        ),
        (
            "GET",
            format!("/api/v1/executions/{id}/approvals"),
            None,
            Needs::Read,
        ),
        (
            "GET",
            format!("/api/v1/executions/{id}/approvals/A/b"),
            None,
            Needs::Read,
        ),
        (
            "POST",
            format!("/api/v1/executions/{id}/approvals"),
            body(&DecideRequest {
                stage: "A".into(),
                action: "b".into(),
                decision: "Approved".into(),
                comment: None,
                by: None,
                fingerprint: None,
            }),
            Needs::Approve,
        ),
        (
            "POST",
            format!("/api/v1/executions/{id}/retry"),
            body(&RetryRequest {
                stage: "Work".into(),
                all_actions: false,
            }),
            Needs::Operate,
        ),
        (
            "POST",
            format!("/api/v1/executions/{id}/stop"),
            body(&StopRequest::default()),
            Needs::Operate,
        ),
        (
            "POST",
            "/api/v1/params/put".into(),
            body(&PutParameterRequest {
                overwrite: true,
                ..put_request("/m/p", "v", None)
            }),
            Needs::Operate,
        ),
        (
            "GET",
            "/api/v1/params/get?name=/m/p".into(),
            None,
            Needs::Read,
        ),
        (
            "GET",
            "/api/v1/params/get?name=/m/s&decrypt=true".into(),
            None,
            Needs::Decrypt,
        ),
        ("GET", "/api/v1/params/list".into(), None, Needs::Read),
        (
            "GET",
            "/api/v1/params/history?name=/m/p".into(),
            None,
            Needs::Read,
        ),
        (
            "POST",
            "/api/v1/params/label".into(),
            body(&LabelParameterRequest {
                name: "/m/p".into(),
                version: None,
                labels: vec!["x".into()],
            }),
            Needs::Operate,
        ),
        (
            "POST",
            "/api/v1/params/delete".into(),
            body(&DeleteParameterRequest {
                name: "/m/gone".into(),
            }),
            Needs::Operate,
        ),
        (
            "POST",
            "/api/v1/params/rotate-key".into(),
            body(&RotateKeyRequest {
                new_key: Some("zz".into()),
            }),
            Needs::Admin,
        ),
        // Applying a file with a pipeline registers it (and would arm its
        // triggers): an operator's right, as the role table says.
        ("POST", "/api/v1/apply".into(), body(&apply), Needs::Operate),
        ("GET", "/api/v1/environments".into(), None, Needs::Read),
        (
            "GET",
            "/api/v1/environments/staging".into(),
            None,
            Needs::Read,
        ),
        (
            "GET",
            "/api/v1/environments/staging/services/web/revisions/1".into(),
            None,
            Needs::Read,
        ),
        (
            "POST",
            "/api/v1/environments/staging/down".into(),
            body(&serde_json::Map::new()),
            Needs::Operate,
        ),
        (
            "POST",
            "/api/v1/environments/staging/services/web/deploy".into(),
            body(&DeployRequest {
                image: "r/x:1".into(),
            }),
            Needs::Operate,
        ),
        (
            "POST",
            "/api/v1/environments/staging/services/web/rollback".into(),
            body(&RollbackRequest::default()),
            Needs::Operate,
        ),
        (
            "POST",
            "/api/v1/environments/staging/services/web/promote".into(),
            body(&PromoteRequest::default()),
            Needs::Operate,
        ),
        (
            "POST",
            "/api/v1/environments/staging/services/web/abort".into(),
            body(&serde_json::Map::new()),
            Needs::Operate,
        ),
        (
            "POST",
            "/api/v1/environments/staging/services/web/pause".into(),
            body(&serde_json::Map::new()),
            Needs::Operate,
        ),
        (
            "POST",
            "/api/v1/environments/staging/services/web/resume".into(),
            body(&serde_json::Map::new()),
            Needs::Operate,
        ),
        ("GET", "/api/v1/whoami".into(), None, Needs::Anyone),
        ("GET", "/api/v1/users".into(), None, Needs::Admin),
        (
            "POST",
            "/api/v1/users".into(),
            body(&NewUserRequest {
                name: "new-user".into(),
                email: None,
                grants: vec!["viewer".into()],
            }),
            Needs::Admin,
        ),
        (
            "PUT",
            "/api/v1/users/nobody-here/grants".into(),
            body(&GrantsRequest {
                grants: vec!["viewer".into()],
            }),
            Needs::Admin,
        ),
        (
            "DELETE",
            "/api/v1/users/nobody-here".into(),
            None,
            Needs::Admin,
        ),
        ("GET", "/api/v1/tokens?user=root".into(), None, Needs::Admin),
        (
            "POST",
            "/api/v1/tokens".into(),
            body(&NewTokenRequest {
                user: Some("root".into()),
                ..NewTokenRequest::default()
            }),
            Needs::Admin,
        ),
        (
            "DELETE",
            "/api/v1/tokens/tok_000000000000".into(),
            None,
            Needs::Anyone,
        ),
        ("GET", "/api/v1/audit".into(), None, Needs::Admin),
        ("GET", "/api/v1/triggers".into(), None, Needs::Read),
        ("GET", "/api/v1/pipelines".into(), None, Needs::Read),
        // A console sign-in link for one's own token.
        (
            "POST",
            "/api/v1/console/links".into(),
            body(&serde_json::Map::new()),
            Needs::Read,
        ),
        ("GET", "/api/v1/images".into(), None, Needs::Read),
        (
            "GET",
            "/api/v1/environments/staging/services/web/logs".into(),
            None,
            Needs::Operate,
        ),
        (
            "GET",
            "/api/v1/environments/staging/access-log".into(),
            None,
            Needs::Operate,
        ),
        (
            "GET",
            "/api/v1/images/inspect?reference=shop/web:1".into(),
            None,
            Needs::Read,
        ),
        (
            "POST",
            "/api/v1/images/promote".into(),
            body(&PromoteImageRequest {
                source: "shop/web:1".into(),
                destination: "shop/web:2".into(),
            }),
            Needs::Operate,
        ),
        (
            "POST",
            "/api/v1/registry/gc".into(),
            body(&RegistryGcRequest {
                dry_run: true,
                grace_seconds: None,
            }),
            Needs::Admin,
        ),
        ("GET", "/api/v1/agents".into(), None, Needs::Read),
        (
            "POST",
            "/api/v1/agent/poll".into(),
            Some(
                serde_json::json!({"name": "a1", "version": env!("CARGO_PKG_VERSION"), "wait_ms": 1}),
            ),
            Needs::Agent,
        ),
        (
            "POST",
            "/api/v1/agent/heartbeat".into(),
            Some(serde_json::json!({"name": "a1", "jobs": ["j1"]})),
            Needs::Agent,
        ),
        (
            "POST",
            "/api/v1/agent/jobs/j1/log".into(),
            Some(serde_json::json!({"lines": ["x"]})),
            Needs::Agent,
        ),
        (
            "GET",
            format!("/api/v1/agent/jobs/j1/blobs/sha256:{}", "0".repeat(64)),
            None,
            Needs::Agent,
        ),
        (
            "PUT",
            format!("/api/v1/agent/jobs/j1/blobs/sha256:{}", "0".repeat(64)),
            None,
            Needs::Agent,
        ),
        (
            "POST",
            "/api/v1/agent/jobs/j1/finish".into(),
            Some(serde_json::json!({"status": "SUCCEEDED"})),
            Needs::Agent,
        ),
        // Last: it asks the server to stop.
        (
            "POST",
            "/api/v1/shutdown".into(),
            body(&ShutdownRequest::default()),
            Needs::Admin,
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_checks_the_role_of_every_kind_of_caller() {
    let fx = fixture(SHELL_ONLY).await;
    let file = fx.repo.join("gantry.yaml");
    let admin = fx.user("root", None, &["admin"]).await;
    // A real execution, so that routes about one reach their role check.
    let id = fx.start(&admin).await;
    fx.wait_for(&id, "the end", |v| v.status != "InProgress")
        .await;
    fx.call(
        "POST",
        "/api/v1/params/put",
        Some(&admin),
        body(&put_request("/m/s", "hidden", Some("SecureString"))),
    )
    .await;
    // Each kind of caller, and what it may do.
    let callers: Vec<(&str, Vec<&str>, &[Needs])> = vec![
        ("viewer", vec!["viewer"], &[Needs::Read, Needs::Anyone]),
        (
            "operator",
            vec!["operator"],
            &[Needs::Read, Needs::Operate, Needs::Anyone],
        ),
        (
            "approver",
            vec!["approver"],
            &[Needs::Read, Needs::Approve, Needs::Anyone],
        ),
        (
            "secrets",
            vec!["secrets"],
            &[Needs::Read, Needs::Decrypt, Needs::Anyone],
        ),
        // A build agent's token reaches its own routes and no other.
        ("agent", vec!["agent"], &[Needs::Agent]),
        // An operator of another environment and pipeline operates neither.
        (
            "elsewhere",
            vec!["operator:env=production", "operator:pipeline=other"],
            &[Needs::Read, Needs::Anyone],
        ),
    ];
    let mut tokens = Vec::new();
    for (name, grants, allowed) in &callers {
        tokens.push((*name, fx.user(name, None, grants).await, *allowed));
    }
    tokens.push((
        "root",
        admin.clone(),
        &[
            Needs::Read,
            Needs::Operate,
            Needs::Approve,
            Needs::Decrypt,
            Needs::Admin,
            Needs::Anyone,
        ],
    ));
    for (name, token, allowed) in &tokens {
        for (method, path, body, needs) in routes(&file, &id) {
            let (status, answer) = fx.call(method, &path, Some(token), body.clone()).await;
            // `apply` of a file without environments needs nothing more.
            let may = allowed.contains(&needs);
            if may {
                assert!(
                    status != StatusCode::FORBIDDEN && status != StatusCode::UNAUTHORIZED,
                    "{name} may {method} {path}, got {status}: {answer}"
                );
            } else {
                assert_eq!(
                    status,
                    StatusCode::FORBIDDEN,
                    "{name} may not {method} {path}: {answer}"
                );
            }
            // Without a token, every route but health is refused.
            let (status, _) = fx.call(method, &path, None, body).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {path}");
        }
    }
    // Every refusal is in the audit log.
    let forbidden = fx
        .audit()
        .await
        .into_iter()
        .filter(|r| r.outcome == "auth.forbidden" || r.outcome == "approval.not_allowed")
        .count();
    assert!(forbidden > 20, "{forbidden} refusals audited");
}

/// Every route the server's router serves under `/api/` or `/hooks/`, as
/// `(METHOD, path)`, read from the router's source: each `.route("PATH",
/// get(..).post(..))` in any file of `crates/server/src` (so a new file of
/// routes is read too). The role matrix above and gantry-api's OpenAPI
/// route table are both held to this list.
fn served_routes() -> Vec<(String, String)> {
    fn files(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                files(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    let mut sources = Vec::new();
    files(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
        &mut sources,
    );
    sources.sort();
    let mut served = Vec::new();
    for source in sources {
        let text = std::fs::read_to_string(&source).unwrap();
        for (at, _) in text.match_indices(".route(") {
            let rest = text[at + 7..].trim_start();
            let Some(rest) = rest.strip_prefix('"') else {
                continue;
            };
            let path = &rest[..rest.find('"').unwrap()];
            // The console's pages are not API routes; /metrics is.
            if !(path.starts_with("/api/") || path.starts_with("/hooks/") || path == "/metrics") {
                continue;
            }
            // The method router: up to the `)` that closes `.route(`.
            let rest = &rest[path.len() + 1..];
            let mut depth = 1;
            let end = rest
                .char_indices()
                .find(|&(_, c)| {
                    depth += match c {
                        '(' => 1,
                        ')' => -1,
                        _ => 0,
                    };
                    depth == 0
                })
                .map_or(rest.len(), |(i, _)| i);
            let methods = &rest[..end];
            for method in ["get", "post", "put", "delete", "patch"] {
                for (i, _) in methods.match_indices(&format!("{method}(")) {
                    let before = methods[..i].chars().next_back();
                    if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                        continue;
                    }
                    served.push((method.to_ascii_uppercase(), path.to_string()));
                }
            }
        }
    }
    assert!(served.len() > 30, "too few routes found: {served:?}");
    served
}

/// Whether a concrete path (`/api/v1/executions/x`) is an instance of a
/// route (`/api/v1/executions/{id}`).
fn matches_route(route: &str, path: &str) -> bool {
    let path = path.split('?').next().unwrap();
    let pattern: Vec<&str> = route.split('/').collect();
    let segments: Vec<&str> = path.split('/').collect();
    segments.len() == pattern.len()
        && pattern
            .iter()
            .zip(&segments)
            .all(|(p, s)| p.starts_with('{') || p == s)
}

#[test]
fn the_role_matrix_names_every_route_the_api_serves() {
    let tested = routes(Path::new("x"), "some-id");
    for (method, route) in served_routes() {
        // Health needs no token; webhooks are signed, not tokened
        // (tests/triggers.rs).
        if route == "/api/v1/health" || route.starts_with("/hooks/") {
            continue;
        }
        let covered = tested
            .iter()
            .any(|(m, path, _, _)| *m == method && matches_route(&route, path));
        assert!(covered, "route {method} {route} is not in the role matrix");
    }
}

/// gantry-api's route table (what `GET /api/v1/openapi.json` describes) is
/// exactly what the router serves, and each route's role is the one the
/// role matrix proves.
#[test]
fn the_openapi_route_table_is_the_router_and_the_role_matrix() {
    use gantry_api::openapi::{ROUTES, Role};
    let served = served_routes();
    for (method, path) in &served {
        assert!(
            ROUTES
                .iter()
                .any(|r| r.method.as_str() == method && r.path == path),
            "{method} {path} is served but not in gantry-api's ROUTES (crates/api/src/openapi.rs)"
        );
    }
    for route in ROUTES {
        let method = route.method.as_str();
        assert!(
            served.iter().any(|(m, p)| m == method && p == route.path),
            "{method} {} is in gantry-api's ROUTES but the router does not serve it",
            route.path
        );
    }
    for (method, path, _, needs) in routes(Path::new("x"), "some-id") {
        let route = ROUTES
            .iter()
            .find(|r| r.method.as_str() == method && matches_route(r.path, &path))
            .unwrap_or_else(|| panic!("{method} {path} has no route in ROUTES"));
        // Token routes are anyone's for their own tokens (the table's
        // role); the matrix proves that another user's need admin.
        if route.role == Role::Anyone && needs == Needs::Admin {
            continue;
        }
        let role = match needs {
            Needs::Read => Role::Viewer,
            Needs::Operate => Role::Operator,
            Needs::Approve => Role::Approver,
            Needs::Admin => Role::Admin,
            Needs::Anyone => Role::Anyone,
            // Decrypting is a reader's route with a `secrets` grant on top.
            Needs::Decrypt => Role::Viewer,
            Needs::Agent => Role::Agent,
        };
        assert_eq!(route.role, role, "{method} {path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secure_strings_are_revealed_only_to_a_covering_grant_and_audited() {
    let fx = fixture(SHELL_ONLY).await;
    let admin = fx.user("root", None, &["admin"]).await;
    for name in ["/shop/staging/DB", "/shop/production/DB"] {
        fx.call(
            "POST",
            "/api/v1/params/put",
            Some(&admin),
            body(&put_request(name, "s3cr3t-value", Some("SecureString"))),
        )
        .await;
    }
    let staging = fx
        .user("stager", None, &["secrets:path=/shop/staging"])
        .await;
    let operator = fx.user("op", None, &["operator"]).await;
    let (status, p) = fx
        .call(
            "GET",
            "/api/v1/params/get?name=/shop/staging/DB&decrypt=true",
            Some(&staging),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{p}");
    assert_eq!(p.read::<ParameterView>().value, "s3cr3t-value");
    for (token, name) in [
        (&staging, "/shop/production/DB"),
        (&operator, "/shop/staging/DB"),
    ] {
        let (status, p) = fx
            .call(
                "GET",
                &format!("/api/v1/params/get?name={name}&decrypt=true"),
                Some(token),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{p}");
        assert!(!p.to_string().contains("s3cr3t-value"));
    }
    // Without decryption anyone reads ***.
    let (_, p) = fx
        .call(
            "GET",
            "/api/v1/params/get?name=/shop/staging/DB",
            Some(&operator),
            None,
        )
        .await;
    assert_eq!(p.read::<ParameterView>().value, "***");
    let (status, list) = fx
        .call(
            "GET",
            "/api/v1/params/list?path=/shop&recursive=true&decrypt=true",
            Some(&staging),
            None,
        )
        .await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "a list revealing production: {list}"
    );
    let audit = fx.audit().await;
    assert!(
        audit
            .iter()
            .any(|r| r.principal.as_deref() == Some("stager")
                && r.outcome == "ok"
                && r.target.as_deref() == Some("decrypted parameter /shop/staging/DB")),
        "{audit:#?}"
    );
    assert!(
        !serde_json::to_string(&audit)
            .unwrap()
            .contains("s3cr3t-value")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_never_reads_a_file_a_request_names() {
    let fx = fixture(SHELL_ONLY).await;
    let admin = fx.user("root", None, &["admin"]).await;
    let no_text = StartRequest {
        text: None,
        ..start_request("/etc/shadow", "")
    };
    let apply_no_text = ApplyRequest {
        file: "/etc/shadow".into(),
        text: None,
        includes: Default::default(),
    };
    for (path, request) in [
        ("/api/v1/executions", body(&no_text)),
        ("/api/v1/apply", body(&apply_no_text)),
    ] {
        let (status, body) = fx.call("POST", path, Some(&admin), request).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(body.code(), "request.text_required");
        assert!(!body.to_string().contains("root:"), "{body}");
    }
    // An include is text the client sends; one it does not send is an
    // error naming it, and `..` never leaves the file's directory tree.
    let apply = |file: &str, text: &str| {
        body(&ApplyRequest {
            file: file.into(),
            text: Some(text.to_string()),
            includes: Default::default(),
        })
    };
    let with_include = "version: 1\ninclude: [envs.yaml]\n";
    let (status, body) = fx
        .call(
            "POST",
            "/api/v1/apply",
            Some(&admin),
            apply("/etc/gantry.yaml", with_include),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body.code(), "request.missing_include");
    let escaping = "version: 1\ninclude: [../../etc/shadow]\n";
    let (status, body) = fx
        .call(
            "POST",
            "/api/v1/apply",
            Some(&admin),
            apply("/srv/p/gantry.yaml", escaping),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(
        body.read::<ErrorBody>().errors[0].contains("directory tree"),
        "{body}"
    );
}

const GATED: &str = r##"
version: 1
name: gate
stages:
  - name: Source
    actions:
      - {name: checkout, type: source, repository: ., outputs: [Src], namespace: Source}
  - name: Approve
    actions:
      - name: release
        type: approval
        policy:
          roles: [approver]
          required: 2
          require_comment: true
  - name: After
    actions:
      - {name: done, type: shell, commands: ["true"]}
"##;

fn waiting(v: &ExecutionView) -> bool {
    v.action("Approve", "release").unwrap().status.as_deref() == Some("Waiting")
}

async fn decide(
    fx: &Fixture,
    id: &str,
    token: &str,
    decision: &str,
    comment: Option<&str>,
) -> (StatusCode, Reply) {
    fx.call(
        "POST",
        &format!("/api/v1/executions/{id}/approvals"),
        Some(token),
        body(&decision_request(decision, comment)),
    )
    .await
}

/// A decision on `Approve/release`, naming somebody else as its author
/// (the server records the token's identity instead).
fn decision_request(decision: &str, comment: Option<&str>) -> DecideRequest {
    DecideRequest {
        stage: "Approve".into(),
        action: "release".into(),
        decision: decision.into(),
        comment: comment.map(str::to_string),
        by: Some("somebody-else".into()),
        fingerprint: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_of_n_distinct_approvers_with_comments_and_never_the_starter_or_the_author() {
    let fx = fixture(GATED).await;
    let starter = fx.user("sam", None, &["operator", "approver"]).await;
    let author = fx
        .user("carol", Some("carol@example.com"), &["approver"])
        .await;
    let ann = fx.user("ann", None, &["approver"]).await;
    let bob = fx.user("bob", None, &["approver"]).await;
    let viewer = fx.user("vic", None, &["viewer"]).await;
    let id = fx.start(&starter).await;
    fx.wait_for(&id, "the approval", waiting).await;

    // What the approval waits for: the commit, by fingerprint.
    let (status, shown) = fx
        .call(
            "GET",
            &format!("/api/v1/executions/{id}/approvals/Approve/release"),
            Some(&viewer),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{shown}");
    let shown: ApprovalView = shown.read();
    assert_eq!(shown.binding.commits.len(), 1);
    assert_eq!(shown.policy.required, 2);

    for (token, comment, code) in [
        (&viewer, Some("ok"), "auth.forbidden"),
        (&starter, Some("ok"), "approval.self_approval"),
        (&author, Some("ok"), "approval.self_approval"),
        (&ann, None, "approval.comment_required"),
    ] {
        let (status, body) = decide(&fx, &id, token, "Approved", comment).await;
        assert!(status.is_client_error(), "{code}: {body}");
        assert_eq!(body.code(), code);
    }
    // A fingerprint of something else is refused.
    let (status, body) = fx
        .call(
            "POST",
            &format!("/api/v1/executions/{id}/approvals"),
            Some(&ann),
            body(&DecideRequest {
                fingerprint: Some("0000000000000000".into()),
                by: None,
                ..decision_request("Approved", Some("ok"))
            }),
        )
        .await;
    assert_eq!(
        (status, body.code().as_str()),
        (StatusCode::CONFLICT, "approval.changed")
    );

    let (status, body) = decide(&fx, &id, &ann, "Approved", Some("ship it")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let answer: DecisionAnswer = body.read();
    assert_eq!(answer.by, "ann", "the identity, never the body's name");
    assert_eq!(answer.outcome.status, "Pending");
    let (status, body) = decide(&fx, &id, &ann, "Approved", Some("again")).await;
    assert_eq!(
        (status, body.code().as_str()),
        (StatusCode::CONFLICT, "approval.already_decided")
    );
    assert!(waiting(&fx.wait_for(&id, "still waiting", |_| true).await));

    let (status, body) = decide(&fx, &id, &bob, "Approved", Some("agreed")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body.read::<DecisionAnswer>().outcome.status, "Approved");
    let v = fx
        .wait_for(&id, "the end", |v| v.status != "InProgress")
        .await;
    assert_eq!(v.status, "Succeeded", "{v:#?}");
    let records = fx.plane.approvals(&id).await.unwrap();
    assert_eq!(records[0].by, "ann, bob");
    let view = fx.plane.approval(&id, "Approve", "release").await.unwrap();
    let voters: Vec<&str> = view.votes.iter().map(|v| v.by.as_str()).collect();
    assert_eq!(voters, ["ann", "bob"]);
    assert!(view.votes.iter().all(|v| v.binding.contains("commits")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_rejection_rejects_and_a_finished_approval_takes_no_decision() {
    let fx = fixture(GATED).await;
    let sam = fx.user("sam", None, &["operator"]).await;
    let ann = fx.user("ann", None, &["approver"]).await;
    let bob = fx.user("bob", None, &["approver"]).await;
    let id = fx.start(&sam).await;
    fx.wait_for(&id, "the approval", waiting).await;
    let (status, body) = decide(&fx, &id, &ann, "Rejected", Some("no")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let v = fx
        .wait_for(&id, "the end", |v| v.status != "InProgress")
        .await;
    assert_eq!(v.status, "Failed");
    assert_eq!(
        v.action("Approve", "release").unwrap().error.as_deref(),
        Some("rejected by ann: no")
    );
    let (status, body) = decide(&fx, &id, &bob, "Approved", Some("late")).await;
    assert_eq!(
        (status, body.code().as_str()),
        (StatusCode::CONFLICT, "approval.not_waiting")
    );
}

const SUPERSEDED: &str = r##"
version: 1
name: gate
stages:
  - name: Approve
    actions:
      - {name: release, type: approval}
  - name: After
    actions:
      - {name: done, type: shell, commands: ["true"]}
"##;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_decision_on_a_superseded_execution_is_refused() {
    let fx = fixture(SUPERSEDED).await;
    let sam = fx.user("sam", None, &["operator", "approver"]).await;
    // In superseded mode a newer execution replaces an older one that
    // only waits at an approval (issue 11: reviewers must not approve an
    // old commit): the first is superseded by the second, the second by
    // the third, and only the newest can be approved.
    let first = fx.start(&sam).await;
    fx.wait_for(&first, "the first approval", waiting).await;
    let second = fx.start(&sam).await;
    let superseded = |v: &ExecutionView| v.status == "Superseded";
    fx.wait_for(&first, "the first to be superseded", superseded)
        .await;
    fx.wait_for(&second, "the second approval", waiting).await;
    let third = fx.start(&sam).await;
    fx.wait_for(&second, "the second to be superseded", superseded)
        .await;
    fx.wait_for(&third, "the third approval", waiting).await;
    for old in [&first, &second] {
        let (status, body) = decide(&fx, old, &sam, "Approved", None).await;
        assert_eq!(status, StatusCode::CONFLICT, "{body}");
        assert_eq!(body.code(), "approval.superseded");
    }
    let (status, body) = decide(&fx, &third, &sam, "Approved", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    fx.wait_for(&third, "the third to succeed", |v| v.status == "Succeeded")
        .await;
}

/// A JSON body trickled without end is refused once
/// [`gantry_server::guard::JSON_BODY_TIMEOUT`] has passed (408), before any
/// handler runs: a client cannot hold a handler by never finishing its body.
/// (A current-thread runtime: tokio's clock pauses only there.)
#[tokio::test]
async fn a_body_that_never_ends_is_refused_after_the_body_timeout() {
    let fx = fixture(SHELL_ONLY).await;
    let admin = fx.user("root", None, &["admin"]).await;
    // One byte, then nothing, for ever.
    let chunks = futures_util::stream::once(async {
        Ok::<_, std::io::Error>(axum::body::Bytes::from_static(b"{"))
    })
    .chain(futures_util::stream::pending());
    let request = Request::builder()
        .method("POST")
        .uri("/api/v1/executions")
        .header("host", "127.0.0.1:7700")
        .header("authorization", format!("Bearer {admin}"))
        .header("content-type", "application/json")
        .body(Body::from_stream(chunks))
        .unwrap();
    // The clock jumps only once the request waits for its body alone.
    tokio::time::pause();
    let response = fx.app.clone().oneshot(request).await.unwrap();
    tokio::time::resume();
    assert_eq!(response.status(), StatusCode::REQUEST_TIMEOUT);
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 16)
        .await
        .unwrap();
    let body: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(body["code"], "request.timeout", "{body}");
    assert!(
        fx.plane.executions(None, 10).await.is_empty(),
        "nothing started"
    );
}
