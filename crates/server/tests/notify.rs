//! Notifications end to end: a real control plane runs pipelines whose
//! `notifications` point at an HTTP receiver on 127.0.0.1 (or at a
//! command), and the test checks what arrives — the signature with its own
//! HMAC, the headers, the JSON body, Slack's text — and that a receiver
//! that fails or is down never changes the pipeline's result.
//!
//! Nothing sleeps for a fixed time: the tests wait for what the receiver
//! got and for the notifier's counts, with a deadline.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use gantry_api::ExecutionView;
use gantry_server::ControlPlane;
use gantry_server::notify::{NotifyOptions, NotifyStats};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use support::Replicas;
use tokio::sync::watch;

const SECRET: &str = "It's a Secret to Everybody";
const DEADLINE: Duration = Duration::from_secs(30);

/// One request the receiver got.
#[derive(Debug, Clone)]
struct Received {
    path: String,
    headers: HeaderMap,
    body: Bytes,
}

impl Received {
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    }

    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

/// An HTTP receiver on 127.0.0.1 that records every request. It answers
/// 503 to the first `failures` requests, 404 on paths under `/gone`, and
/// 200 otherwise.
struct Receiver {
    addr: std::net::SocketAddr,
    got: watch::Receiver<Vec<Received>>,
}

struct ReceiverState {
    got: watch::Sender<Vec<Received>>,
    failures: AtomicUsize,
}

async fn receiver(failures: usize) -> Receiver {
    let (tx, got) = watch::channel(Vec::new());
    let state = Arc::new(ReceiverState {
        got: tx,
        failures: AtomicUsize::new(failures),
    });
    let app =
        axum::Router::new()
            .fallback(
                |State(state): State<Arc<ReceiverState>>,
                 uri: Uri,
                 headers: HeaderMap,
                 body: Bytes| async move {
                    let path = uri.path().to_string();
                    let gone = path.starts_with("/gone");
                    state.got.send_modify(|got| {
                        got.push(Received {
                            path,
                            headers,
                            body,
                        })
                    });
                    let fail = state
                        .failures
                        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                        .is_ok();
                    if gone {
                        (StatusCode::NOT_FOUND, "no_service")
                    } else if fail {
                        (StatusCode::SERVICE_UNAVAILABLE, "try later")
                    } else {
                        (StatusCode::OK, "ok")
                    }
                },
            )
            .with_state(state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Receiver { addr, got }
}

impl Receiver {
    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Waits until `n` requests arrived; returns them all.
    async fn wait_for(&self, n: usize) -> Vec<Received> {
        let mut got = self.got.clone();
        tokio::time::timeout(DEADLINE, got.wait_for(|g| g.len() >= n))
            .await
            .unwrap_or_else(|_| panic!("{n} requests never arrived: {:?}", self.got.borrow()))
            .unwrap()
            .clone()
    }
}

/// A data dir and a pipeline file in a fresh directory.
struct Fixture {
    dir: tempfile::TempDir,
    file: PathBuf,
}

fn fixture(pipeline: &str) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("gantry.yaml");
    std::fs::write(&file, pipeline).unwrap();
    Fixture { dir, file }
}

impl Fixture {
    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }
}

/// A plane that retries quickly, with the parameters the pipelines read.
async fn plane(fx: &Fixture, slack_url: &str) -> ControlPlane {
    let plane = ControlPlane::open(&fx.data()).await.unwrap();
    plane
        .notifier()
        .configure(NotifyOptions {
            max_tries: 3,
            first_backoff: Duration::from_millis(20),
            max_backoff: Duration::from_millis(50),
            connect_timeout: Duration::from_secs(2),
            request_timeout: Duration::from_secs(5),
            ..NotifyOptions::default()
        })
        .unwrap();
    for (name, value) in [("/t/notify/secret", SECRET), ("/t/slack/url", slack_url)] {
        let name = gantry_params::ParamName::parse(name).unwrap();
        plane
            .params()
            .put(gantry_params::PutParameter::new(
                &name,
                value,
                gantry_params::ParamType::SecureString,
                "test",
            ))
            .await
            .unwrap();
    }
    plane
}

async fn start(plane: &ControlPlane, fx: &Fixture) -> String {
    let text = std::fs::read_to_string(&fx.file).unwrap();
    plane
        .start_execution(
            fx.file.clone(),
            text,
            BTreeMap::new(),
            BTreeMap::new(),
            Some("alice".to_string()),
        )
        .await
        .unwrap()
}

async fn view(plane: &ControlPlane, id: &str) -> ExecutionView {
    let (execution, loaded) = plane.execution(id).await.unwrap();
    gantry_server::view::execution_view(&execution, loaded.as_deref())
}

/// Waits until `done` holds for the execution (or fails at the deadline).
async fn wait_until(
    plane: &ControlPlane,
    id: &str,
    what: &str,
    done: impl Fn(&ExecutionView) -> bool,
) -> ExecutionView {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    let mut changes = plane.changes();
    loop {
        let v = view(plane, id).await;
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

/// Waits until the notifier's counts satisfy `done`.
async fn wait_stats(plane: &ControlPlane, done: impl Fn(&NotifyStats) -> bool) -> NotifyStats {
    let mut stats = plane.notifier().stats();
    let reached = tokio::time::timeout(DEADLINE, stats.wait_for(|s| done(s)))
        .await
        .ok()
        .and_then(Result::ok)
        .map(|s| *s);
    reached.unwrap_or_else(|| panic!("the notifier never got there: {:?}", *stats.borrow()))
}

/// Waits until an action's log holds a line that `wanted` accepts (lines
/// reach the store in batches); returns the log.
async fn wait_log(
    plane: &ControlPlane,
    id: &str,
    (stage, action): (&str, &str),
    wanted: impl Fn(&str) -> bool,
) -> String {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let log: String = plane
            .logs(id, Some((stage, action)), 0, 1000)
            .await
            .unwrap()
            .iter()
            .map(|l| format!("{}\n", l.line))
            .collect();
        if log.lines().any(&wanted) {
            return log;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the line never came:\n{log}"
        );
        // Polled: log lines change no watch.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn verify(secret: &str, body: &[u8], header: &str) -> bool {
    let Some(hex_signature) = header.strip_prefix("sha256=") else {
        return false;
    };
    let Ok(signature) = hex::decode(hex_signature) else {
        return false;
    };
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    mac.verify_slice(&signature).is_ok()
}

fn quick(name: &str, notifications: &str) -> String {
    format!(
        r#"
version: 1
name: {name}
stages:
  - name: Build
    actions:
      - {{name: work, type: shell, commands: ["true"]}}
notifications:
{notifications}
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_gets_a_signed_json_body_and_slack_gets_text_with_a_link() {
    let rx = receiver(0).await;
    let fx = fixture(&quick(
        "signed",
        &format!(
            "  - on: [execution.started, execution.succeeded]\n    webhook: {{url: \"{}\", secret: /t/notify/secret}}\n  - on: execution.succeeded\n    slack: {{url: /t/slack/url}}\n",
            rx.url("/hook?tenant=1")
        ),
    ));
    let plane = plane(&fx, &rx.url("/slack/T000/B000/XXXX")).await;
    plane
        .notifier()
        .set_public_url("https://gantry.example.com/");
    let id = start(&plane, &fx).await;
    let v = wait_until(&plane, &id, "the end", ExecutionView::is_finished).await;
    assert_eq!(v.status, "Succeeded");

    let got = rx.wait_for(3).await;
    let hooks: Vec<&Received> = got.iter().filter(|r| r.path == "/hook").collect();
    assert_eq!(hooks.len(), 2, "{got:#?}");
    for hook in &hooks {
        assert!(
            verify(SECRET, &hook.body, hook.header("x-gantry-signature-256")),
            "a bad signature: {hook:#?}"
        );
        assert!(!verify(
            "another secret",
            &hook.body,
            hook.header("x-gantry-signature-256")
        ));
        assert_eq!(hook.header("content-type"), "application/json");
        let body = hook.json();
        assert_eq!(hook.header("x-gantry-event"), body["event"]);
        assert_eq!(hook.header("x-gantry-delivery"), body["delivery"]);
        assert_eq!(body["pipeline"], "signed");
        assert_eq!(body["execution"]["id"], id.as_str());
        assert_eq!(
            body["execution"]["url"],
            format!("https://gantry.example.com/api/v1/executions/{id}")
        );
        assert_eq!(
            body["execution"]["trigger"],
            serde_json::json!({"type": "manual", "detail": "alice", "by": "alice"})
        );
        assert!(body["time"].as_str().unwrap().ends_with('Z'), "{body}");
        assert!(body.get("approval").is_none() && body.get("deployment").is_none());
    }
    let events: Vec<String> = hooks
        .iter()
        .map(|h| h.json()["event"].as_str().unwrap().to_string())
        .collect();
    assert!(
        events.contains(&"execution.started".to_string()),
        "{events:?}"
    );
    let succeeded = hooks
        .iter()
        .find(|h| h.json()["event"] == "execution.succeeded")
        .unwrap()
        .json();
    assert_eq!(succeeded["execution"]["status"], "Succeeded");
    assert_eq!(
        succeeded["message"],
        format!("signed: execution {id} succeeded")
    );

    let slack = got.iter().find(|r| r.path.starts_with("/slack")).unwrap();
    assert_eq!(
        slack.header("x-gantry-signature-256"),
        "",
        "Slack is not signed"
    );
    assert_eq!(
        slack.json(),
        serde_json::json!({"text": format!(
            "signed: execution {id} succeeded <https://gantry.example.com/api/v1/executions/{id}|execution {id}>"
        )})
    );
    let stats = wait_stats(&plane, |s| s.delivered == 3).await;
    assert_eq!((stats.failed, stats.retried, stats.pending), (0, 0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_target_gets_the_body_on_stdin_and_the_event_in_its_environment() {
    let out = tempfile::tempdir().unwrap();
    let body_file = out.path().join("body.json");
    let event_file = out.path().join("event");
    // argv is run as it is: the shell here is the program the file names,
    // and the paths are its arguments, never parsed.
    let fx = fixture(&quick(
        "commanded",
        &format!(
            "  - on: execution.succeeded\n    command: {{argv: [\"/bin/sh\", \"-c\", 'cat > \"$1\"; printf %s \"$GANTRY_EVENT\" > \"$2\"', notify, \"{}\", \"{}\"]}}\n",
            body_file.display(),
            event_file.display()
        ),
    ));
    let plane = plane(&fx, "http://127.0.0.1:9/").await;
    let id = start(&plane, &fx).await;
    let v = wait_until(&plane, &id, "the end", ExecutionView::is_finished).await;
    assert_eq!(v.status, "Succeeded");
    wait_stats(&plane, |s| s.delivered == 1).await;
    let body: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&body_file).unwrap()).unwrap();
    assert_eq!(body["event"], "execution.succeeded");
    assert_eq!(body["execution"]["id"], id.as_str());
    assert_eq!(body["execution"]["url"], serde_json::Value::Null);
    assert_eq!(
        std::fs::read_to_string(&event_file).unwrap(),
        "execution.succeeded"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_that_fails_twice_gets_the_same_delivery_on_the_third_try() {
    let rx = receiver(2).await;
    let fx = fixture(&quick(
        "retried",
        &format!(
            "  - on: execution.succeeded\n    webhook: {{url: \"{}\", secret: /t/notify/secret}}\n",
            rx.url("/hook")
        ),
    ));
    let plane = plane(&fx, "http://127.0.0.1:9/").await;
    let id = start(&plane, &fx).await;
    let v = wait_until(&plane, &id, "the end", ExecutionView::is_finished).await;
    assert_eq!(v.status, "Succeeded");
    let stats = wait_stats(&plane, |s| s.delivered == 1).await;
    assert_eq!((stats.retried, stats.failed), (2, 0));
    let got = rx.wait_for(3).await;
    assert_eq!(got.len(), 3);
    for again in &got[1..] {
        assert_eq!(again.body, got[0].body, "every try sends the same bytes");
        assert_eq!(
            again.header("x-gantry-delivery"),
            got[0].header("x-gantry-delivery")
        );
    }
    assert!(verify(
        SECRET,
        &got[2].body,
        got[2].header("x-gantry-signature-256")
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipeline_whose_receivers_are_down_still_succeeds() {
    // A port nobody listens on: bound, then let go.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let fx = fixture(&quick(
        "unheard",
        &format!(
            "  - on: [execution.started, execution.succeeded]\n    webhook: {{url: \"http://{closed}/hook\", secret: /t/notify/secret}}\n  - on: execution.succeeded\n    command: {{argv: [/nonexistent/notify-me]}}\n"
        ),
    ));
    let plane = plane(&fx, "http://127.0.0.1:9/").await;
    let id = start(&plane, &fx).await;
    let v = wait_until(&plane, &id, "the end", ExecutionView::is_finished).await;
    assert_eq!(v.status, "Succeeded", "{v:#?}");
    let stats = wait_stats(&plane, |s| s.failed == 3).await;
    // The webhook was tried three times per event; a missing program once.
    assert_eq!((stats.delivered, stats.retried, stats.pending), (0, 4, 0));
    assert_eq!(view(&plane, &id).await.status, "Succeeded");
}

const GATE: &str = r#"
version: 1
name: gate
stages:
  - name: Approve
    actions:
      - {name: release, type: approval, timeout: 7d}
  - name: After
    actions:
      - {name: done, type: shell, commands: ["true"]}
notifications:
"#;

fn approver(name: &str) -> gantry_auth::Identity {
    gantry_auth::Identity {
        name: name.into(),
        email: None,
        grants: vec![gantry_auth::Grant::new(gantry_auth::Role::Approver)],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approvals_are_notified_and_the_approvals_log_tells_of_the_deliveries() {
    let rx = receiver(0).await;
    let fx = fixture(&format!(
        "{GATE}  - on: [approval.waiting, approval.decided]\n    webhook: {{url: \"{}\", secret: /t/notify/secret}}\n",
        rx.url("/hook")
    ));
    let plane = plane(&fx, "http://127.0.0.1:9/").await;
    let id = start(&plane, &fx).await;
    let waiting = rx.wait_for(1).await[0].json();
    assert_eq!(waiting["event"], "approval.waiting");
    assert_eq!(
        waiting["approval"],
        serde_json::json!({"stage": "Approve", "action": "release", "attempt": 1,
                           "decision": null, "by": null, "comment": null})
    );
    assert_eq!(waiting["execution"]["status"], "InProgress");
    assert!(
        waiting["message"]
            .as_str()
            .unwrap()
            .ends_with(&format!("gantry approve {id} Approve/release")),
        "{waiting}"
    );
    plane
        .decide(
            &id,
            &approver("ann"),
            gantry_server::control::Decision {
                stage: "Approve",
                action: "release",
                approve: true,
                comment: Some("ship it".into()),
                expected: None,
            },
        )
        .await
        .unwrap();
    let decided = rx.wait_for(2).await[1].json();
    assert_eq!(decided["event"], "approval.decided");
    assert_eq!(decided["approval"]["decision"], "Approved");
    assert_eq!(decided["approval"]["by"], "ann");
    assert_eq!(decided["approval"]["comment"], "ship it");
    let v = wait_until(&plane, &id, "the end", ExecutionView::is_finished).await;
    assert_eq!(v.status, "Succeeded");
    wait_stats(&plane, |s| s.delivered == 2).await;
    let hook = format!("webhook {}", rx.url("/hook"));
    for event in ["approval.waiting", "approval.decided"] {
        let line = format!("Notification {event} to {hook}: delivered (");
        wait_log(&plane, &id, ("Approve", "release"), |l| {
            l.starts_with(&line)
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slack_url_never_reaches_a_log() {
    let rx = receiver(0).await;
    let fx = fixture(&format!(
        "{GATE}  - on: approval.waiting\n    slack: {{url: /t/slack/url}}\n"
    ));
    let secret_path = "/gone/T0SECRET/B0SECRET/XXSECRETXX";
    let plane = plane(&fx, &rx.url(secret_path)).await;
    let id = start(&plane, &fx).await;
    let stats = wait_stats(&plane, |s| s.failed == 1).await;
    assert_eq!(stats.retried, 0, "a 404 is not tried again");
    assert_eq!(rx.wait_for(1).await[0].path, secret_path);
    let log = wait_log(&plane, &id, ("Approve", "release"), |l| {
        l.starts_with(
            "Notification approval.waiting to slack (URL in parameter /t/slack/url): not delivered after 1 try: the receiver answered 404 Not Found: no_service (delivery ",
        )
    })
    .await;
    assert!(!log.contains("SECRET"), "{log}");
    assert!(!log.contains(&rx.addr.to_string()), "{log}");
}

/// Pushes a busybox httpd image to the server's registry (Debian's
/// busybox-static); its /health answers only when `healthy`.
async fn push_web_image(server: &gantry_server::RunningServer, tag: &str, healthy: bool) -> String {
    use gantry_images::{ImageSpec, Reference, build_image};
    let busybox = Path::new("/bin/busybox");
    assert!(
        busybox.exists(),
        "this test needs Debian's busybox-static: apt-get install busybox-static"
    );
    let dir = tempfile::tempdir().unwrap();
    let site = dir.path().join("site");
    std::fs::create_dir_all(site.join("www")).unwrap();
    std::fs::copy(busybox, site.join("busybox")).unwrap();
    std::fs::write(site.join("www/index.html"), tag).unwrap();
    if healthy {
        std::fs::write(site.join("www/health"), "ok").unwrap();
    }
    let mut spec = ImageSpec::new(&site);
    spec.workdir = Some("/app".into());
    spec.entrypoint = Some(vec![
        "/app/busybox".into(),
        "sh".into(),
        "-c".into(),
        "exec $GANTRY_ROOTFS/app/busybox httpd -f -p $PORT -h www".into(),
    ]);
    let target = Reference::parse(&format!("{}/test/web:{tag}", server.registry)).unwrap();
    let built = build_image(&spec, &target, server.plane.images())
        .await
        .unwrap();
    target.with_digest(&built.digest).to_string()
}

const SHIP: &str = r##"
version: 1
name: ship
variables:
  IMAGE: none
environments:
  staging:
    runtime: process
    load_balancer:
      listen: 127.0.0.1:PORT
      rules:
        - {priority: 10, path: "/*", service: web}
services:
  web:
    replicas: 1
    health_check: {path: /health, interval: 2s, timeout: 1s, healthy_threshold: 2, unhealthy_threshold: 2, grace_period: 0s}
    deployment: {min_healthy_percent: 100, max_percent: 200, drain: 1s, circuit_breaker: {threshold: 2, rollback: true}}
stages:
  - name: Build
    actions:
      - name: defs
        type: shell
        commands:
          - printf '[{"name":"web","imageUri":"%s"}]' "#{variables.IMAGE}" > imagedefinitions.json
        outputs: [Defs]
        artifacts: {files: [imagedefinitions.json]}
  - name: Deploy
    actions:
      - {name: web, type: deploy, environment: staging, service: web, inputs: [Defs]}
notifications:
"##;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolled_back_and_a_failed_deployment_are_notified() {
    let rx = receiver(0).await;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let _replicas = Replicas(data.clone());
    let any = "127.0.0.1:0".parse().unwrap();
    let server = gantry_server::RunningServer::start(&data, any, any)
        .await
        .unwrap();
    let fx = Fixture {
        file: dir.path().join("gantry.yaml"),
        dir,
    };
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let text = format!(
        "{}  - on: [deployment.failed, deployment.rolled_back]\n    webhook: {{url: \"{}\", secret: /t/notify/secret}}\n",
        SHIP.replace("PORT", &port.to_string()),
        rx.url("/hook")
    );
    std::fs::write(&fx.file, &text).unwrap();
    let plane = &server.plane;
    plane
        .notifier()
        .configure(NotifyOptions {
            first_backoff: Duration::from_millis(20),
            ..NotifyOptions::default()
        })
        .unwrap();
    let name = gantry_params::ParamName::parse("/t/notify/secret").unwrap();
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
    let run = |image: String| {
        let text = text.clone();
        let file = fx.file.clone();
        async move {
            let vars = BTreeMap::from([("IMAGE".to_string(), image)]);
            let id = plane
                .start_execution(file, text, BTreeMap::new(), vars, None)
                .await
                .unwrap();
            let v = wait_until(plane, &id, "the end", ExecutionView::is_finished).await;
            (id, v)
        }
    };

    let good = push_web_image(&server, "good", true).await;
    let (_, v) = run(good).await;
    assert_eq!(v.status, "Succeeded", "{v:#?}");

    // Its health check never passes: the breaker rolls back to revision 1.
    let broken = push_web_image(&server, "broken", false).await;
    let (id, v) = run(broken.clone()).await;
    assert_eq!(v.status, "Failed");
    let rolled_back = rx.wait_for(1).await[0].json();
    assert_eq!(rolled_back["event"], "deployment.rolled_back");
    assert_eq!(rolled_back["execution"]["id"], id.as_str());
    let deployment = &rolled_back["deployment"];
    assert_eq!(
        (
            &deployment["stage"],
            &deployment["action"],
            &deployment["environment"],
            &deployment["service"],
            &deployment["image"],
        ),
        (
            &"Deploy".into(),
            &"web".into(),
            &"staging".into(),
            &"web".into(),
            &broken.as_str().into(),
        )
    );
    assert_eq!(deployment["revision"], 2);
    assert_eq!(deployment["rolled_back_to"], 1);
    assert!(
        deployment["error"]
            .as_str()
            .unwrap()
            .starts_with("circuit breaker:"),
        "{deployment}"
    );

    // An image that does not exist: the deployer refuses, nothing rolls back.
    let missing = format!("{}/test/web:nope", server.registry);
    let (id, v) = run(missing.clone()).await;
    assert_eq!(v.status, "Failed");
    let failed = rx.wait_for(2).await[1].json();
    assert_eq!(failed["event"], "deployment.failed");
    assert_eq!(failed["execution"]["id"], id.as_str());
    assert_eq!(failed["deployment"]["image"], missing.as_str());
    assert_eq!(failed["deployment"]["revision"], serde_json::Value::Null);
    assert_eq!(
        failed["deployment"]["rolled_back_to"],
        serde_json::Value::Null
    );
    let log = wait_log(plane, &id, ("Deploy", "web"), |l| {
        l.starts_with("Notification deployment.failed to webhook ")
    })
    .await;
    assert!(log.contains(": delivered (delivery "), "{log}");
    server.shutdown().await;
}
