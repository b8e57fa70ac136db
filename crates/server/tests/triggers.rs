//! Triggers end to end, with real git: a bare repository on disk, pushes
//! made with the git CLI, webhook bodies shaped as the forges document them
//! (the fixtures of gantry-triggers, with this repository's commits put
//! in), signed with the secret from the parameter store, and sent to the
//! API's router. What is checked is what started: how many executions, on
//! which commit, and what each trigger recorded.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use gantry_api::{ErrorBody, TriggerView, WebhookAnswer};
use gantry_engine::{Execution, ExecutionStatus, TriggerType};
use gantry_server::ControlPlane;
use gantry_server::guard::HostPolicy;
use gantry_testkit::git;
use gantry_triggers::signature::sign_sha256;
use tower::ServiceExt;

mod common;
use common::open_plane;

const SECRET: &str = "It's a Secret to Everybody";
const SECRET_PARAM: &str = "/gantry/webhooks/shop";

struct Fixture {
    dir: tempfile::TempDir,
    /// The bare repository pushes go to; the pipeline's source.
    origin: PathBuf,
    /// A clone to commit in and push from.
    work: PathBuf,
    plane: ControlPlane,
    app: axum::Router,
}

/// The pipeline `shop`: a source action on the bare repository, a shell
/// action printing what it got, `extra` appended (triggers, a Gate).
fn pipeline(origin: &Path, mode: &str, extra: &str) -> String {
    format!(
        r#"
version: 1
name: shop
execution_mode: {mode}
stages:
  - name: Source
    actions:
      - name: checkout
        type: source
        repository: file://{origin}
        branch: main
        outputs: [Src]
        namespace: Source
  - name: Build
    actions:
      - name: show
        type: shell
        inputs: [Src]
        commands: ["cat app/main.txt"]
{extra}"#,
        origin = origin.display()
    )
}

/// Triggers on pushes to main and release/*, tags v*, and files under
/// app/ but not Markdown, by GitHub and generic webhooks (and a poll).
fn triggers(poll: Option<&str>) -> String {
    let poll = poll
        .map(|p| format!("      poll: {p}\n"))
        .unwrap_or_default();
    format!(
        r#"triggers:
  - git:
      source: checkout
      push:
        branches: {{includes: ["main", "release/*"]}}
        tags: {{includes: ["v*"]}}
        file_paths: {{includes: ["app/**"], excludes: ["**/*.md"]}}
{poll}      webhook: {{provider: github, secret: {SECRET_PARAM}}}
  - git:
      source: checkout
      push:
        branches: {{includes: ["main", "release/*"]}}
        tags: {{includes: ["v*"]}}
        file_paths: {{includes: ["app/**"], excludes: ["**/*.md"]}}
      webhook: {{provider: generic, secret: {SECRET_PARAM}}}
"#
    )
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let origin = dir.path().join("origin.git");
    let work = dir.path().join("work");
    std::fs::create_dir_all(&origin).unwrap();
    git(&origin, &["init", "-q", "--bare", "-b", "main"]);
    std::fs::create_dir_all(&work).unwrap();
    git(&work, &["init", "-q", "-b", "main"]);
    git(
        &work,
        &["remote", "add", "origin", &origin.display().to_string()],
    );
    std::fs::create_dir_all(work.join("app")).unwrap();
    std::fs::write(work.join("app/main.txt"), "first\n").unwrap();
    std::fs::write(work.join("README.md"), "shop\n").unwrap();
    git(&work, &["add", "-A"]);
    git(&work, &["commit", "-q", "-m", "first"]);
    git(&work, &["push", "-q", "origin", "main"]);
    let plane = open_plane(&dir.path().join("data")).await.unwrap();
    let name = gantry_params::ParamName::parse(SECRET_PARAM).unwrap();
    plane
        .params()
        .put(gantry_params::PutParameter::new(
            &name,
            SECRET,
            gantry_params::ParamType::SecureString,
            "test",
        ))
        .await
        .unwrap();
    let app = gantry_server::api::router(plane.clone(), HostPolicy::default());
    Fixture {
        dir,
        origin,
        work,
        plane,
        app,
    }
}

impl Fixture {
    /// Registers the pipeline text as `gantry apply` does.
    async fn apply(&self, text: &str) -> Option<String> {
        let file = self.dir.path().join("pipeline/gantry.yaml");
        self.plane
            .register_triggers(&file, text, &BTreeMap::new(), Some("test"))
            .await
            .unwrap()
    }

    /// Writes files, commits them and pushes `branch` (or a tag); returns
    /// the new commit.
    fn push(&self, files: &[(&str, &str)], branch: &str) -> String {
        for (path, content) in files {
            let path = self.work.join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, content).unwrap();
        }
        git(&self.work, &["checkout", "-q", "-B", branch]);
        git(&self.work, &["add", "-A"]);
        git(&self.work, &["commit", "-q", "-m", "change"]);
        git(&self.work, &["push", "-q", "-f", "origin", branch]);
        self.head()
    }

    fn head(&self) -> String {
        let out = std::process::Command::new("git")
            .arg("-C")
            .arg(&self.work)
            .args(["rev-parse", "HEAD"])
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    }

    fn tag(&self, name: &str) -> String {
        git(&self.work, &["tag", name]);
        git(&self.work, &["push", "-q", "origin", name]);
        self.head()
    }

    /// Applies `shop` waiting for pipeline `images` to end `status`, and
    /// starts `images` (one action running `command`); returns its id.
    async fn upstream_and_downstream(&self, status: &str, command: &str) -> String {
        let downstream = pipeline(
            &self.origin,
            "superseded",
            &format!("triggers:\n  - pipeline: {{name: images, status: [{status}]}}\n"),
        );
        self.apply(&downstream).await;
        let upstream = format!(
            "version: 1\nname: images\nstages:\n  - name: Build\n    actions:\n      \
             - {{name: build, type: shell, commands: [\"{command}\"]}}\n"
        );
        self.plane
            .start_execution(
                self.dir.path().join("images.yaml"),
                upstream,
                BTreeMap::new(),
                BTreeMap::new(),
                None,
            )
            .await
            .unwrap()
    }

    /// Sends a delivery to `/hooks/shop`.
    async fn deliver(&self, headers: &[(&str, String)], body: Vec<u8>) -> (StatusCode, Vec<u8>) {
        self.deliver_to("shop", "127.0.0.1:7700", headers, body)
            .await
    }

    async fn deliver_to(
        &self,
        pipeline: &str,
        host: &str,
        headers: &[(&str, String)],
        body: Vec<u8>,
    ) -> (StatusCode, Vec<u8>) {
        let mut request = Request::builder()
            .method("POST")
            .uri(format!("/hooks/{pipeline}"))
            .header("host", host)
            .header("content-type", "application/json");
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        let response = self
            .app
            .clone()
            .oneshot(request.body(Body::from(body)).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        (status, bytes.to_vec())
    }

    /// GitHub's push delivery (its documented shape, from the fixture),
    /// for this repository's `git_ref` from `before` to `after`, signed.
    async fn github_push(
        &self,
        delivery: &str,
        git_ref: &str,
        before: &str,
        after: &str,
    ) -> (StatusCode, Vec<u8>) {
        let body = github_body(git_ref, before, after);
        let headers = [
            ("x-github-event", "push".to_string()),
            ("x-github-delivery", delivery.to_string()),
            ("x-hub-signature-256", sign_sha256(SECRET.as_bytes(), &body)),
        ];
        self.deliver(&headers, body).await
    }

    /// gantry's generic push delivery, without changed files (so gantry
    /// works them out in its mirror), signed.
    async fn generic_push(
        &self,
        delivery: &str,
        git_ref: &str,
        before: &str,
        after: &str,
    ) -> (StatusCode, Vec<u8>) {
        let body = serde_json::json!({"ref": git_ref, "before": before, "after": after})
            .to_string()
            .into_bytes();
        let headers = [
            ("x-gantry-event", "push".to_string()),
            ("x-gantry-delivery", delivery.to_string()),
            (
                "x-gantry-signature-256",
                sign_sha256(SECRET.as_bytes(), &body),
            ),
        ];
        self.deliver(&headers, body).await
    }

    async fn executions(&self) -> Vec<Execution> {
        self.plane.executions(Some("shop"), 100).await
    }

    /// Waits until `done` holds for the executions (or fails after 30 s).
    async fn wait_for(&self, what: &str, done: impl Fn(&[Execution]) -> bool) -> Vec<Execution> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let all = self.executions().await;
            if done(&all) {
                return all;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {what}: {all:#?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn trigger(&self, index: u32) -> TriggerView {
        self.plane
            .trigger_views()
            .await
            .unwrap()
            .into_iter()
            .find(|t| t.pipeline == "shop" && t.index == index)
            .unwrap()
    }

    /// Waits until trigger `index` records a result for `commit`.
    async fn wait_for_result(&self, index: u32, commit: &str) -> TriggerView {
        self.wait_for_trigger(index, |v| {
            v.last_commit.as_deref() == Some(commit) && v.last_result.is_some()
        })
        .await
    }

    /// Waits until trigger `index`'s view satisfies `done`.
    async fn wait_for_trigger(
        &self,
        index: u32,
        done: impl Fn(&TriggerView) -> bool,
    ) -> TriggerView {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let view = self.trigger(index).await;
            if done(&view) {
                return view;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for trigger {index}: {view:#?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// The GitHub push fixture with this push's ref and commits, its file
/// lists naming app/main.txt (as a GitHub push of it would).
fn github_body(git_ref: &str, before: &str, after: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../triggers/tests/fixtures/webhooks/github-push.http");
    let text = std::fs::read_to_string(path).unwrap();
    let (_, body) = text.split_once("\n\n").unwrap();
    body.replace("refs/heads/main", git_ref)
        .replace("9049f1265b7d61be4a8904a9a27120d2064dab3b", before)
        .replace("0d1a26e67d8f5eaf1f6ba5c57fc3c7d91ac0fd1c", after)
        .replace("services/catalog/src/main.rs", "app/main.txt")
        .into_bytes()
}

fn answer(body: &[u8]) -> WebhookAnswer {
    serde_json::from_slice(body)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(body)))
}

fn error_code(body: &[u8]) -> String {
    serde_json::from_slice::<ErrorBody>(body)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(body)))
        .code
}

/// The commit an execution's `checkout` is pinned to.
fn pinned(e: &Execution) -> Option<&str> {
    e.source_revisions.get("checkout").map(String::as_str)
}

#[tokio::test]
async fn a_matching_push_starts_exactly_one_execution_pinned_to_its_commit() {
    let fx = fixture().await;
    let before = fx.head();
    let applied = fx
        .apply(&pipeline(&fx.origin, "superseded", &triggers(None)))
        .await;
    assert_eq!(applied.as_deref(), Some("pipeline shop: 2 triggers armed"));
    let after = fx.push(&[("app/main.txt", "second\n")], "main");
    // The push moves on; a later commit must not be what runs.
    let later = fx.push(&[("app/main.txt", "third\n")], "main");

    let (status, body) = fx
        .github_push("d-1", "refs/heads/main", &before, &after)
        .await;
    assert_eq!(
        status,
        StatusCode::ACCEPTED,
        "{}",
        String::from_utf8_lossy(&body)
    );
    assert_eq!(answer(&body).status, "accepted");
    let all = fx
        .wait_for("the execution to end", |all| {
            all.len() == 1 && all[0].status.is_terminal()
        })
        .await;
    let e = &all[0];
    assert_eq!(e.status, ExecutionStatus::Succeeded, "{e:#?}");
    assert_eq!(pinned(e), Some(after.as_str()));
    assert_eq!(
        e.stages[0].actions[0].output_variables.get("CommitId"),
        Some(&after),
        "the source ran the pushed commit, not the branch head {later}"
    );
    let trigger = e.trigger.as_ref().unwrap();
    assert_eq!(trigger.kind, TriggerType::Webhook);
    assert_eq!(
        trigger.detail,
        format!("github delivery d-1: refs/heads/main {after}")
    );

    // The same delivery again is a replay; another delivery of the same
    // commit (the generic hook of a post-receive script) starts nothing.
    let (status, body) = fx
        .github_push("d-1", "refs/heads/main", &before, &after)
        .await;
    assert_eq!(
        (status, answer(&body).status.as_str()),
        (StatusCode::OK, "replayed")
    );
    let (status, _) = fx
        .generic_push("g-1", "refs/heads/main", &before, &after)
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let view = fx.wait_for_result(1, &after).await;
    assert_eq!(
        view.last_result.as_deref(),
        Some(format!("duplicate: {} started this commit", e.id).as_str())
    );
    assert_eq!(fx.executions().await.len(), 1);
    let view = fx.trigger(0).await;
    assert_eq!(view.last_result.as_deref(), Some("started"));
    assert_eq!(view.last_execution.as_deref(), Some(e.id.as_str()));
}

#[tokio::test]
async fn pushes_that_do_not_match_the_filters_start_nothing() {
    let fx = fixture().await;
    fx.apply(&pipeline(&fx.origin, "superseded", &triggers(None)))
        .await;
    let zero = "0".repeat(40);
    let base = fx.head();
    // A branch the filter does not name.
    let wip = fx.push(&[("app/main.txt", "wip\n")], "wip/x");
    // Only a Markdown file on main: the path filter excludes it. The
    // generic delivery lists no files: gantry works them out in its mirror.
    git(&fx.work, &["checkout", "-q", "main"]);
    let docs = fx.push(&[("README.md", "docs\n")], "main");
    // A tag the filter does not name.
    let tag = fx.tag("x1");
    for (delivery, git_ref, before, after) in [
        ("n-1", "refs/heads/wip/x", zero.as_str(), wip.as_str()),
        ("n-2", "refs/heads/main", base.as_str(), docs.as_str()),
        ("n-3", "refs/tags/x1", zero.as_str(), tag.as_str()),
    ] {
        let (status, _) = fx.generic_push(delivery, git_ref, before, after).await;
        assert_eq!(status, StatusCode::ACCEPTED);
        let event = format!("generic delivery {delivery}: {git_ref} {after}");
        let view = fx
            .wait_for_trigger(1, |v| v.last_event.as_deref() == Some(&event))
            .await;
        assert!(
            view.last_result
                .as_deref()
                .unwrap()
                .starts_with("skipped: "),
            "{view:#?}"
        );
    }
    // The tag's delivery is recorded before its result: wait for the
    // result, not just the event (under load the previous result showed).
    fx.wait_for_trigger(1, |v| {
        v.last_result.as_deref() == Some("skipped: tag `x1` does not match the tag filter")
    })
    .await;
    assert!(fx.executions().await.is_empty());

    // A matching tag (tags carry no changed files) and a release branch
    // changing app/ do start, each once.
    let v1 = fx.tag("v1.0");
    let (status, _) = fx.generic_push("m-1", "refs/tags/v1.0", &zero, &v1).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let release = fx.push(&[("app/main.txt", "release\n")], "release/1");
    let (status, _) = fx
        .generic_push("m-2", "refs/heads/release/1", &zero, &release)
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let all = fx.wait_for("two executions", |all| all.len() == 2).await;
    let mut commits: Vec<&str> = all.iter().filter_map(pinned).collect();
    commits.sort();
    let mut expected = [v1.as_str(), release.as_str()];
    expected.sort();
    assert_eq!(commits, expected);
}

#[tokio::test]
async fn a_webhook_and_a_poll_of_the_same_commit_start_one_execution() {
    let fx = fixture().await;
    let before = fx.head();
    fx.apply(&pipeline(&fx.origin, "superseded", &triggers(Some("1s"))))
        .await;
    // The first poll notes what is there and starts nothing.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while fx
        .plane
        .store()
        .trigger_states(Some("shop"))
        .await
        .unwrap()
        .is_empty()
    {
        assert!(tokio::time::Instant::now() < deadline, "no first poll");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let after = fx.push(&[("app/main.txt", "second\n")], "main");
    let (status, _) = fx
        .github_push("w-1", "refs/heads/main", &before, &after)
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    // Wait for the poller to see the commit too.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let view = fx.trigger(0).await;
        let polled = view.last_event.as_deref() == Some(&format!("poll: refs/heads/main {after}"));
        if polled {
            assert!(
                view.last_result
                    .as_deref()
                    .unwrap()
                    .starts_with("duplicate")
                    || view.last_result.as_deref() == Some("started"),
                "{view:#?}"
            );
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "no poll: {view:#?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let all = fx.wait_for("one execution", |all| all.len() == 1).await;
    assert_eq!(pinned(&all[0]), Some(after.as_str()));
    // A while later, still one.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(fx.executions().await.len(), 1);
}

/// A commit pushed right after `apply` answers is news to the first poll:
/// the refs there were are noted before `apply` answers, not by a first
/// poll that could see the new commit and take it for what was there.
#[tokio::test]
async fn a_commit_pushed_right_after_apply_is_started_by_the_first_poll() {
    let fx = fixture().await;
    fx.apply(&pipeline(&fx.origin, "superseded", &triggers(Some("1s"))))
        .await;
    let after = fx.push(&[("app/main.txt", "second\n")], "main");
    let all = fx.wait_for("one execution", |all| all.len() == 1).await;
    assert_eq!(pinned(&all[0]), Some(after.as_str()));
    assert_eq!(all[0].trigger.as_ref().unwrap().kind, TriggerType::Poll);
}

#[tokio::test]
async fn a_bad_or_missing_signature_is_refused_counted_and_starts_nothing() {
    let fx = fixture().await;
    let before = fx.head();
    fx.apply(&pipeline(&fx.origin, "superseded", &triggers(None)))
        .await;
    let after = fx.push(&[("app/main.txt", "second\n")], "main");
    let body = github_body("refs/heads/main", &before, &after);
    let event = ("x-github-event", "push".to_string());
    let forged = ("x-hub-signature-256", sign_sha256(b"not the secret", &body));
    let (status, reply) = fx.deliver(&[event.clone(), forged], body.clone()).await;
    assert_eq!(
        (status, error_code(&reply).as_str()),
        (StatusCode::UNAUTHORIZED, "webhook.bad_signature")
    );
    let (status, reply) = fx.deliver(std::slice::from_ref(&event), body.clone()).await;
    assert_eq!(
        (status, error_code(&reply).as_str()),
        (StatusCode::UNAUTHORIZED, "webhook.missing_signature")
    );
    // A body changed after signing is refused too.
    let signed = ("x-hub-signature-256", sign_sha256(SECRET.as_bytes(), &body));
    let mut changed = body.clone();
    changed.push(b' ');
    let (status, _) = fx.deliver(&[event.clone(), signed.clone()], changed).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(fx.trigger(0).await.bad_signatures, 3);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(fx.executions().await.is_empty());

    // The endpoint needs no token, but the guard still checks the host.
    let (status, _) = fx
        .deliver_to(
            "shop",
            "evil.example",
            &[event.clone(), signed.clone()],
            body.clone(),
        )
        .await;
    assert_eq!(status, StatusCode::MISDIRECTED_REQUEST);
    // Unknown pipeline, unknown forge, too large, a ping.
    let (status, reply) = fx
        .deliver_to(
            "nope",
            "127.0.0.1",
            &[event.clone(), signed.clone()],
            body.clone(),
        )
        .await;
    assert_eq!(
        (status, error_code(&reply).as_str()),
        (StatusCode::NOT_FOUND, "webhook.unknown_pipeline")
    );
    let (status, reply) = fx
        .deliver(std::slice::from_ref(&signed), body.clone())
        .await;
    assert_eq!(
        (status, error_code(&reply).as_str()),
        (StatusCode::BAD_REQUEST, "webhook.unknown_provider")
    );
    let huge = vec![b' '; gantry_triggers::MAX_BODY_BYTES + 1];
    let (status, reply) = fx.deliver(std::slice::from_ref(&event), huge).await;
    assert_eq!(
        (status, error_code(&reply).as_str()),
        (StatusCode::PAYLOAD_TOO_LARGE, "webhook.body_too_large")
    );
    let ping = br#"{"zen": "Keep it logically awesome.", "hook_id": 1}"#.to_vec();
    let headers = [
        ("x-github-event", "ping".to_string()),
        ("x-github-delivery", "p-1".to_string()),
        ("x-hub-signature-256", sign_sha256(SECRET.as_bytes(), &ping)),
    ];
    let (status, reply) = fx.deliver(&headers, ping).await;
    assert_eq!(
        (status, answer(&reply).status.as_str()),
        (StatusCode::OK, "pong")
    );
    assert!(fx.executions().await.is_empty());
    // Refusals are in the audit log, without a principal.
    let audit = fx
        .plane
        .auth()
        .audit_log(&gantry_auth::AuditQuery::default())
        .await
        .unwrap();
    assert!(audit.iter().any(|r| r.action == "POST /hooks/shop"
        && r.outcome == "webhook.bad_signature"
        && r.principal.is_none()));
}

/// Issue 11 item 4: a newer commit replaces an older execution waiting at
/// an approval, and the old approval says why it can no longer be given.
#[tokio::test]
async fn a_newer_commit_supersedes_an_execution_waiting_at_an_approval() {
    let fx = fixture().await;
    let gate = r#"  - name: Gate
    actions:
      - name: release
        type: approval
"#;
    let text = pipeline(
        &fx.origin,
        "superseded",
        &format!("{gate}{}", triggers(None)),
    );
    fx.apply(&text).await;
    let zero = "0".repeat(40);
    let first = fx.push(&[("app/main.txt", "second\n")], "main");
    fx.generic_push("s-1", "refs/heads/main", &zero, &first)
        .await;
    let all = fx
        .wait_for("the first to wait at the Gate", |all| {
            all.len() == 1
                && all[0].stages[2].actions[0].status == Some(gantry_engine::ActionStatus::Waiting)
        })
        .await;
    let old = all[0].id.clone();
    let second = fx.push(&[("app/main.txt", "third\n")], "main");
    fx.generic_push("s-2", "refs/heads/main", &first, &second)
        .await;
    let all = fx
        .wait_for("the second to wait at the Gate", |all| {
            all.len() == 2
                && all.iter().any(|e| {
                    e.id != old
                        && e.stages[2].actions[0].status
                            == Some(gantry_engine::ActionStatus::Waiting)
                })
        })
        .await;
    let old_e = all.iter().find(|e| e.id == old).unwrap();
    let new_e = all.iter().find(|e| e.id != old).unwrap();
    assert_eq!(old_e.status, ExecutionStatus::Superseded);
    assert_eq!(pinned(new_e), Some(second.as_str()));
    let error = old_e.stages[2].actions[0].error.clone().unwrap();
    assert!(
        error.contains(&format!("superseded by execution {}", new_e.id)),
        "{error}"
    );
    // Deciding the old approval is refused, with the reason.
    let admin = fx.plane.auth().clone();
    let token = {
        let now = gantry_clock::now_ms();
        admin
            .add_user("ann", None, vec!["approver".parse().unwrap()], now)
            .await
            .unwrap();
        admin
            .create_token("ann", None, None, now)
            .await
            .unwrap()
            .secret
            .expose()
            .to_string()
    };
    let request = Request::builder()
        .method("POST")
        .uri(format!("/api/v1/executions/{old}/approvals"))
        .header("host", "127.0.0.1")
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .body(Body::from(
            serde_json::json!({"stage": "Gate", "action": "release", "decision": "Approved"})
                .to_string(),
        ))
        .unwrap();
    let response = fx.app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    assert_eq!(
        (status, error_code(&bytes).as_str()),
        (StatusCode::CONFLICT, "approval.superseded"),
        "{}",
        String::from_utf8_lossy(&bytes)
    );
}

/// A pull request opened against main starts one execution pinned to its
/// head commit, and the source action tells the actions after it which
/// pull request they run (`PullRequestId`, …; `BranchName` is the head
/// branch). One whose base branch does not match starts nothing.
#[tokio::test]
async fn a_pull_request_starts_its_head_commit_with_the_pull_requests_variables() {
    let fx = fixture().await;
    let trigger = format!(
        r#"triggers:
  - git:
      source: checkout
      pull_request:
        events: [opened]
        branches: {{includes: ["main"]}}
      webhook: {{provider: github, secret: {SECRET_PARAM}}}
"#
    );
    fx.apply(&pipeline(&fx.origin, "parallel", &trigger)).await;
    let base = fx.head();
    let head = fx.push(&[("app/main.txt", "cents\n")], "feature/cents");
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../triggers/tests/fixtures/webhooks/github-pull-request-opened.http");
    let text = std::fs::read_to_string(path).unwrap();
    let (_, body) = text.split_once("\n\n").unwrap();
    let body = body
        .replace("e83c5163316f89bfbde7d9ab23ca2e25604af290", &head)
        .replace("9049f1265b7d61be4a8904a9a27120d2064dab3b", &base)
        .replace("Prices in cents", "Prices in <b>cents</b>");
    let send = |delivery: &str, body: String| {
        let body = body.into_bytes();
        let headers = [
            ("x-github-event", "pull_request".to_string()),
            ("x-github-delivery", delivery.to_string()),
            ("x-hub-signature-256", sign_sha256(SECRET.as_bytes(), &body)),
        ];
        let fx = &fx;
        async move { fx.deliver(&headers, body).await }
    };
    // Against another base branch: nothing starts.
    let (status, _) = send(
        "pr-0",
        body.replace("\"ref\": \"main\"", "\"ref\": \"develop\""),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let view = fx.wait_for_result(0, &head).await;
    assert!(
        view.last_result.as_deref().unwrap().starts_with("skipped"),
        "{view:#?}"
    );
    assert!(fx.executions().await.is_empty());

    let (status, body) = send("pr-1", body).await;
    assert_eq!(
        status,
        StatusCode::ACCEPTED,
        "{}",
        String::from_utf8_lossy(&body)
    );
    let all = fx
        .wait_for("the execution to end", |all| {
            all.len() == 1 && all[0].status.is_terminal()
        })
        .await;
    let e = &all[0];
    assert_eq!(e.status, ExecutionStatus::Succeeded, "{e:#?}");
    assert_eq!(pinned(e), Some(head.as_str()));
    let pr = e.trigger.as_ref().unwrap().pull_request.clone().unwrap();
    assert_eq!(
        (pr.number, pr.event.as_str(), pr.source.as_str()),
        (42, "opened", "checkout")
    );
    let got = &e.stages[0].actions[0].output_variables;
    let expected = [
        ("CommitId", head.as_str()),
        ("BranchName", "feature/cents"),
        ("PullRequestId", "42"),
        ("PullRequestEvent", "opened"),
        ("PullRequestTitle", "Prices in <b>cents</b>"),
        ("PullRequestUrl", "https://github.com/example/shop/pull/42"),
        ("PullRequestMerged", "false"),
        ("SourceBranchName", "feature/cents"),
        ("DestinationBranchName", "main"),
        ("TriggerType", "webhook"),
    ];
    for (name, value) in expected {
        assert_eq!(
            got.get(name).map(String::as_str),
            Some(value),
            "{name}: {got:#?}"
        );
    }
    // The API's view of the execution says which pull request it runs.
    let view = gantry_server::view::execution_view(e, None);
    let pr = view.trigger.unwrap().pull_request.unwrap();
    assert_eq!(
        (
            pr.number,
            pr.source_branch.as_str(),
            pr.destination_branch.as_str()
        ),
        (42, "feature/cents", "main")
    );
}

#[tokio::test]
async fn registered_pipelines_and_trigger_state_survive_a_restart() {
    let fx = fixture().await;
    let before = fx.head();
    fx.apply(&pipeline(&fx.origin, "superseded", &triggers(None)))
        .await;
    let after = fx.push(&[("app/main.txt", "second\n")], "main");
    fx.github_push("r-1", "refs/heads/main", &before, &after)
        .await;
    fx.wait_for_result(0, &after).await;
    fx.wait_for("the execution to end", |all| {
        all.len() == 1 && all[0].status.is_terminal()
    })
    .await;
    fx.plane.disarm_triggers();
    let data = fx.dir.path().join("data");
    let plane = open_plane(&data).await.unwrap();
    assert!(plane.trigger_views().await.unwrap().is_empty());
    assert_eq!(plane.arm_triggers().await.unwrap(), 1);
    let views = plane.trigger_views().await.unwrap();
    assert_eq!(views.len(), 2);
    assert_eq!(views[0].last_commit.as_deref(), Some(after.as_str()));
    assert_eq!(views[0].last_result.as_deref(), Some("started"));
    // The delivery id and the commit are remembered too.
    let app = gantry_server::api::router(plane.clone(), HostPolicy::default());
    let body = github_body("refs/heads/main", &before, &after);
    let request = Request::builder()
        .method("POST")
        .uri("/hooks/shop")
        .header("host", "127.0.0.1")
        .header("x-github-event", "push")
        .header("x-github-delivery", "r-1")
        .header("x-hub-signature-256", sign_sha256(SECRET.as_bytes(), &body))
        .body(Body::from(body))
        .unwrap();
    let response = app.oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    // Re-applying without triggers disarms.
    let file = fx.dir.path().join("pipeline/gantry.yaml");
    let line = plane
        .register_triggers(
            &file,
            &pipeline(&fx.origin, "superseded", ""),
            &BTreeMap::new(),
            None,
        )
        .await
        .unwrap();
    assert_eq!(
        line.as_deref(),
        Some("pipeline shop: no triggers; disarmed")
    );
    assert!(plane.trigger_views().await.unwrap().is_empty());
    assert!(
        plane
            .store()
            .registered_pipelines()
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn an_upstream_pipelines_end_starts_the_pipeline_that_waits_for_it() {
    let fx = fixture().await;
    let id = fx.upstream_and_downstream("Succeeded", "true").await;
    let all = fx
        .wait_for("the downstream execution", |all| all.len() == 1)
        .await;
    let trigger = all[0].trigger.as_ref().unwrap();
    assert_eq!(
        (trigger.kind, trigger.detail.as_str()),
        (TriggerType::Pipeline, id.as_str())
    );
    let view = fx.wait_for_trigger(0, |v| v.last_result.is_some()).await;
    assert_eq!(view.last_result.as_deref(), Some("started"));
    assert_eq!(view.last_execution.as_deref(), Some(all[0].id.as_str()));
}

/// An upstream execution that a restart ends (its running action failed
/// as interrupted while the next server opens its data dir) starts the
/// pipeline waiting for its failure once that server has armed its
/// triggers.
#[tokio::test]
async fn an_upstream_execution_ended_by_a_restart_starts_the_pipeline_that_waits_for_it() {
    let fx = fixture().await;
    let id = fx.upstream_and_downstream("Failed", "sleep 300").await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (e, _) = fx.plane.execution(&id).await.unwrap();
        if e.stages[0].actions[0].status == Some(gantry_engine::ActionStatus::InProgress) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the build never ran"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The next server: it fails the running build as interrupted while it
    // opens, before any trigger is armed.
    fx.plane.disarm_triggers();
    let plane = open_plane(&fx.dir.path().join("data")).await.unwrap();
    let (e, _) = plane.execution(&id).await.unwrap();
    assert_eq!(e.status, ExecutionStatus::Failed);
    assert!(plane.executions(Some("shop"), 10).await.is_empty());
    assert_eq!(plane.arm_triggers().await.unwrap(), 1);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let started = loop {
        let all = plane.executions(Some("shop"), 10).await;
        if let Some(e) = all.first() {
            break e.clone();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the downstream pipeline never started"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let trigger = started.trigger.as_ref().unwrap();
    assert_eq!(
        (trigger.kind, trigger.detail.as_str()),
        (TriggerType::Pipeline, id.as_str())
    );
}

/// A schedule fires under a paused clock, on its source's branch head:
/// tokio's clock is advanced through the two hours before the fire time
/// instead of waiting them. (Paused only for the jump, and resumed a few
/// seconds before the fire time: SQLite's pool times out under a paused
/// clock, which auto-advances while it waits for the pool's threads.)
#[tokio::test]
async fn a_schedule_starts_the_pipeline_on_its_sources_branch_head() {
    let fx = fixture().await;
    let head = fx.head();
    // Daily, at the first whole minute two hours from now (UTC).
    let now = gantry_clock::now_ms();
    let fire = (now / 60_000 + 1) * 60_000 + 2 * 3_600_000;
    let cron = format!("{} {} * * *", (fire / 60_000) % 60, (fire / 3_600_000) % 24);
    let text = pipeline(
        &fx.origin,
        "superseded",
        &format!("triggers:\n  - schedule: {{cron: \"{cron}\", source: checkout}}\n"),
    );
    fx.apply(&text).await;
    let view = fx.trigger(0).await;
    assert_eq!(
        view.next_fire
            .as_deref()
            .map(|t| t.parse::<jiff::Timestamp>().unwrap().as_millisecond()),
        Some(fire)
    );
    tokio::time::pause();
    let jump = Duration::from_millis(u64::try_from(fire - gantry_clock::now_ms() - 3_000).unwrap());
    for _ in 0..50 {
        tokio::time::advance(jump / 50).await;
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
    }
    // Read with the clock running: a read under the paused clock could
    // time out in the pool (the fire time is still 3 s away).
    tokio::time::resume();
    assert!(fx.executions().await.is_empty(), "fired early");
    let all = fx
        .wait_for("a scheduled execution", |all| !all.is_empty())
        .await;
    let trigger = all[0].trigger.as_ref().unwrap();
    assert_eq!(trigger.kind, TriggerType::Schedule);
    let at = jiff::Timestamp::from_millisecond(fire).unwrap();
    assert_eq!(trigger.detail, format!("schedule {cron} (UTC) at {at}"));
    assert_eq!(pinned(&all[0]), Some(head.as_str()));
    let view = fx.wait_for_result(0, &head).await;
    assert_eq!(view.last_result.as_deref(), Some("started"));
}
