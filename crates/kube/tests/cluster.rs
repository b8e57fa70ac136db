//! The cluster client against recorded API sequences: no Kubernetes API
//! server runs in these tests (none can be installed where gantry is
//! built). Each fixture in `tests/fixtures/` is a list of steps, the
//! request gantry must send (method, path) and the answer the API server
//! gives, shaped as the API's documented objects (apps/v1 Deployment
//! status transitions, ReplicaSet lists, `Status` objects for 403 and
//! 409). kube-rs talks to a `tower_test` mock service, so the client code
//! is the production code; each test also checks what gantry sent.

use std::collections::BTreeMap;
use std::path::Path;
use std::pin::pin;
use std::time::Duration;

use gantry_kube::manifest::{fill_secret, service_manifests};
use gantry_kube::{
    HealthCheck, HealthKind, KubeCluster, KubeError, Manifests, SecretPin, ServiceRevision,
    ServiceType, Target,
};
use http::{Request, Response};
use kube::Client;
use kube::client::Body;
use serde_json::Value;

const NAMESPACE: &str = "gantry-staging";
const IMAGE: &str = "127.0.0.1:5000/shop/catalog@sha256:1111111111111111111111111111111111111111111111111111111111111111";

/// A request gantry sent: method, path and query, JSON body.
#[derive(Debug)]
struct Sent {
    method: String,
    path: String,
    query: String,
    content_type: String,
    body: Value,
}

/// A cluster whose API server plays `fixture`; the handle yields what
/// gantry sent, once the steps are played (or gantry stopped asking).
fn cluster(
    fixture: &str,
    secret_name: Option<String>,
) -> (KubeCluster, tokio::task::JoinHandle<Vec<Sent>>) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/fixtures/{fixture}.json"));
    let steps: Vec<Value> =
        serde_json::from_str(&std::fs::read_to_string(path).expect("fixture")).expect("json");
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let fixture = fixture.to_owned();
    let player = tokio::spawn(async move {
        let mut handle = pin!(handle);
        let mut sent = Vec::new();
        for step in steps {
            let Some((request, respond)) = handle.next_request().await else {
                break;
            };
            let mut expected = step["request"]["path"].as_str().unwrap().to_owned();
            if let Some(name) = &secret_name {
                expected = expected.replace("SECRET", name);
            }
            let method = request.method().to_string();
            let path = request.uri().path().to_owned();
            let query = request.uri().query().unwrap_or_default().to_owned();
            let content_type = request
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned();
            let bytes = request.into_body().collect_bytes().await.expect("body");
            let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            assert_eq!(
                (method.as_str(), path.as_str()),
                (
                    step["request"]["method"].as_str().unwrap(),
                    expected.as_str()
                ),
                "request {} of {fixture}",
                sent.len() + 1
            );
            sent.push(Sent {
                method,
                path,
                query,
                content_type,
                body,
            });
            let status = step["response"]["status"].as_u64().unwrap() as u16;
            let body = serde_json::to_vec(&step["response"]["body"]).unwrap();
            let response = Response::builder()
                .status(status)
                .header("content-type", "application/json")
                .body(Body::from(body))
                .unwrap();
            respond.send_response(response);
        }
        sent
    });
    let client = Client::new(service, NAMESPACE);
    (
        KubeCluster::new(client, NAMESPACE, "https://10.0.0.1:6443"),
        player,
    )
}

fn target() -> Target {
    Target {
        environment: "staging".to_owned(),
        namespace: NAMESPACE.to_owned(),
        service_type: ServiceType::ClusterIp,
    }
}

fn catalog(secrets: Vec<SecretPin>) -> ServiceRevision {
    ServiceRevision {
        service: "catalog".to_owned(),
        revision: 2,
        container: "catalog".to_owned(),
        image: IMAGE.to_owned(),
        command: None,
        port: 8080,
        replicas: 2,
        environment: BTreeMap::new(),
        secrets,
        health: HealthCheck {
            kind: HealthKind::Http {
                path: "/health".to_owned(),
            },
            interval: Duration::from_secs(2),
            timeout: Duration::from_secs(1),
            healthy_threshold: 2,
            unhealthy_threshold: 2,
            grace_period: Duration::from_secs(5),
        },
        min_healthy_percent: 100,
        max_percent: 200,
        memory: None,
        cpus: None,
    }
}

fn manifests(revision: &ServiceRevision) -> Manifests {
    Manifests {
        namespace: gantry_kube::manifest::namespace(&target()),
        services: vec![service_manifests(&target(), revision).expect("manifests")],
    }
}

#[tokio::test]
async fn apply_creates_the_namespace_secret_deployment_and_service_by_server_side_apply() {
    let revision = catalog(vec![SecretPin {
        var: "DB_PASSWORD".to_owned(),
        parameter: "/shop/staging/db".to_owned(),
        version: Some(4),
    }]);
    let mut manifests = manifests(&revision);
    let secret = manifests.services[0].secret.as_mut().expect("a secret");
    let secret_name = secret.metadata.name.clone().unwrap();
    fill_secret(
        secret,
        &BTreeMap::from([("DB_PASSWORD".to_owned(), "hunter2-value".to_owned())]),
    )
    .unwrap();
    let (cluster, player) = cluster("apply-create", Some(secret_name.clone()));
    let applied = cluster.apply(&manifests).await.expect("applied");
    assert_eq!(
        applied,
        [
            format!("namespace/{NAMESPACE}"),
            format!("secret/{secret_name}"),
            "service/catalog".to_owned(),
            "deployment.apps/catalog".to_owned(),
        ]
    );
    let sent = player.await.unwrap();
    assert_eq!(sent.len(), 4);
    // The Deployment last: a refusal of anything else changes no pod.
    assert_eq!(
        sent[3].path,
        "/apis/apps/v1/namespaces/gantry-staging/deployments/catalog"
    );
    for request in &sent {
        assert_eq!(request.method, "PATCH");
        assert_eq!(request.content_type, "application/apply-patch+yaml");
        assert!(
            request.query.contains("fieldManager=gantry"),
            "{}",
            request.query
        );
    }
    // The value is in the Secret's data (base64), and only there.
    assert_eq!(sent[1].body["data"]["DB_PASSWORD"], "aHVudGVyMi12YWx1ZQ==");
    let deployment = &sent[3].body;
    assert_eq!(deployment["kind"], "Deployment");
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["image"], IMAGE);
    assert_eq!(
        container["env"][1]["valueFrom"]["secretKeyRef"]["name"],
        secret_name.as_str()
    );
    assert_eq!(
        deployment["spec"]["template"]["metadata"]["labels"]["gantry.revision"],
        "2"
    );
    for request in [&sent[0], &sent[2], &sent[3]] {
        assert!(!request.body.to_string().contains("hunter2"));
    }
    assert_eq!(
        sent[2].body["spec"]["selector"]["gantry.service"],
        "catalog"
    );
}

#[tokio::test]
async fn a_conflict_is_read_again_and_retried_once() {
    let (cluster, player) = cluster("apply-conflict-then-ok", None);
    cluster
        .apply(&manifests(&catalog(vec![])))
        .await
        .expect("applied on the second try");
    let sent = player.await.unwrap();
    let methods: Vec<&str> = sent.iter().map(|s| s.method.as_str()).collect();
    assert_eq!(methods, ["PATCH", "PATCH", "PATCH", "GET", "PATCH"]);
    assert_eq!(
        sent[4].body["spec"]["template"]["spec"]["containers"][0]["image"],
        IMAGE
    );
}

#[tokio::test]
async fn a_second_conflict_is_an_error_naming_the_other_manager() {
    let (cluster, player) = cluster("apply-conflict", None);
    let error = cluster
        .apply(&manifests(&catalog(vec![])))
        .await
        .unwrap_err();
    assert_eq!(error.code(), "kubernetes.conflict");
    let text = error.to_string();
    assert!(
        text.contains("deployments/catalog") && text.contains(NAMESPACE),
        "{text}"
    );
    assert!(text.contains("kubectl-edit"), "{text}");
    assert_eq!(player.await.unwrap().len(), 5);
}

#[tokio::test]
async fn forbidden_names_the_namespace_and_the_verb() {
    let (cluster, player) = cluster("forbidden", None);
    let error = cluster
        .apply(&manifests(&catalog(vec![])))
        .await
        .unwrap_err();
    assert_eq!(error.code(), "kubernetes.forbidden");
    let text = error.to_string();
    assert!(
        text.contains("may not apply namespaces/gantry-staging in namespace gantry-staging"),
        "{text}"
    );
    // Nothing after the refusal: no Deployment half-created.
    assert_eq!(player.await.unwrap().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_rollout_is_done_when_every_replica_is_updated_and_available() {
    let (cluster, player) = cluster("rollout-progress", None);
    let watch = cluster
        .wait_rollout(
            "catalog",
            2,
            Duration::from_secs(600),
            Duration::from_secs(2),
        )
        .await
        .expect("done");
    assert_eq!(watch.revision, Some(2));
    assert_eq!((watch.replicas, watch.available, watch.restarts), (2, 2, 0));
    // The first read had not observed the new generation yet.
    assert_eq!(watch.polls, 3);
    let sent = player.await.unwrap();
    assert!(
        sent[1].query.contains("labelSelector=gantry.environment%3Dstaging%2Cgantry.service%3Dcatalog%2Cgantry.revision%3D2"),
        "{}",
        sent[1].query
    );
}

#[tokio::test(start_paused = true)]
async fn progress_deadline_exceeded_fails_the_rollout() {
    let (cluster, player) = cluster("rollout-deadline-exceeded", None);
    let error = cluster
        .wait_rollout(
            "catalog",
            2,
            Duration::from_secs(600),
            Duration::from_secs(2),
        )
        .await
        .unwrap_err();
    assert_eq!(error.code(), "kubernetes.rollout_failed");
    assert!(
        error.to_string().contains("ProgressDeadlineExceeded"),
        "{error}"
    );
    assert_eq!(player.await.unwrap().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn restarts_of_the_new_pods_trip_the_circuit_breaker_at_its_threshold() {
    let (cluster, player) = cluster("rollout-restarts", None);
    let error = cluster
        .wait_rollout(
            "catalog",
            2,
            Duration::from_secs(600),
            Duration::from_secs(2),
        )
        .await
        .unwrap_err();
    assert_eq!(error.code(), "kubernetes.rollout_failed");
    assert!(
        error
            .to_string()
            .contains("restarted 2 times; the circuit breaker's threshold is 2"),
        "{error}"
    );
    assert_eq!(player.await.unwrap().len(), 4);
}

#[tokio::test(start_paused = true)]
async fn a_poll_that_fails_in_passing_is_made_again() {
    let (cluster, player) = cluster("rollout-poll-interrupted", None);
    let watch = cluster
        .wait_rollout(
            "catalog",
            2,
            Duration::from_secs(600),
            Duration::from_secs(2),
        )
        .await
        .expect("done after the 503");
    assert_eq!(watch.polls, 3);
    assert_eq!(player.await.unwrap().len(), 5);
}

#[tokio::test(start_paused = true)]
async fn a_rollout_past_gantrys_deadline_fails() {
    let (cluster, _player) = cluster("rollout-restarts", None);
    let error = cluster
        .wait_rollout("catalog", 0, Duration::from_secs(3), Duration::from_secs(2))
        .await
        .unwrap_err();
    assert_eq!(error.code(), "kubernetes.rollout_failed");
    assert!(error.to_string().contains("gantry's deadline"), "{error}");
}

#[tokio::test]
async fn rollback_returns_to_the_previous_replica_sets_template() {
    let (cluster, player) = cluster("rollback", None);
    let revision = cluster.rollback("catalog").await.expect("rolled back");
    assert_eq!(revision, Some(2));
    let sent = player.await.unwrap();
    assert!(
        sent[1]
            .query
            .contains("labelSelector=gantry.environment%3Dstaging%2Cgantry.service%3Dcatalog"),
        "{}",
        sent[1].query
    );
    // A strategic merge patch replacing the whole template, as `kubectl
    // rollout undo` replaces it.
    assert_eq!(
        sent[2].content_type,
        "application/strategic-merge-patch+json"
    );
    let patch = &sent[2].body;
    let template = &patch["spec"]["template"];
    assert_eq!(template["$patch"], "replace");
    // ReplicaSet revision 2 (not 1, the oldest, nor 3, the current).
    assert_eq!(
        template["spec"]["containers"][0]["image"],
        "127.0.0.1:5000/shop/catalog@sha256:2222222222222222222222222222222222222222222222222222222222222222"
    );
    assert_eq!(template["metadata"]["labels"]["gantry.revision"], "2");
    assert!(
        template["metadata"]["labels"]
            .get("pod-template-hash")
            .is_none()
    );
    assert_eq!(patch["metadata"]["labels"]["gantry.revision"], "2");
    assert!(sent[2].query.contains("fieldManager=gantry"));
}

#[tokio::test]
async fn readopt_reads_which_revision_each_deployment_runs() {
    let (cluster, player) = cluster("readopt", None);
    let found = cluster.readopt("staging").await.expect("listed");
    let summary: Vec<(&str, Option<u64>, i32)> = found
        .iter()
        .map(|r| (r.service.as_str(), r.revision, r.replicas))
        .collect();
    assert_eq!(summary, [("catalog", Some(2), 2), ("orders", Some(5), 1)]);
    assert_eq!(found[0].image.as_deref(), Some(IMAGE));
    let sent = player.await.unwrap();
    assert!(
        sent[0].query.contains(
            "labelSelector=app.kubernetes.io%2Fmanaged-by%3Dgantry%2Cgantry.environment%3Dstaging"
        ),
        "{}",
        sent[0].query
    );
}

#[tokio::test]
async fn a_kubeconfig_pointing_nowhere_is_unreachable_naming_the_server() {
    // A real client, to a port nothing listens on.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let config = kube::Config::new(format!("http://127.0.0.1:{port}").parse().unwrap());
    let cluster = KubeCluster::from_config(config, NAMESPACE).expect("a client");
    let error = cluster.readopt("staging").await.unwrap_err();
    assert!(matches!(error, KubeError::Unreachable { .. }), "{error:?}");
    assert_eq!(error.code(), "kubernetes.unreachable");
    assert!(
        error
            .to_string()
            .contains(&format!("http://127.0.0.1:{port}/")),
        "{error}"
    );
}

/// A kubeconfig with two contexts: `dev` (current) and `prod`, each its
/// own server.
fn kubeconfig(dev: &str, prod: &str) -> String {
    format!(
        "apiVersion: v1
kind: Config
current-context: dev
clusters:
- name: dev
  cluster: {{server: '{dev}'}}
- name: prod
  cluster: {{server: '{prod}'}}
users:
- name: deployer
  user: {{token: not-a-real-token-5f1c}}
contexts:
- name: dev
  context: {{cluster: dev, user: deployer}}
- name: prod
  context: {{cluster: prod, user: deployer}}
"
    )
}

fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

#[tokio::test]
async fn a_kubeconfig_parameter_and_its_context_choose_the_server() {
    // https: the client builds its rustls (aws-lc-rs) stack before it fails to connect.
    let prod = format!("https://127.0.0.1:{}", closed_port());
    let text = kubeconfig("http://127.0.0.1:9", &prod);
    let cluster = KubeCluster::connect(Some(&text), Some("prod"), NAMESPACE)
        .await
        .expect("a client");
    assert_eq!(cluster.namespace(), NAMESPACE);
    let error = cluster.readopt("staging").await.unwrap_err();
    assert_eq!(error.code(), "kubernetes.unreachable");
    assert!(error.to_string().contains(&prod), "{error}");
}

#[tokio::test]
async fn a_bad_kubeconfig_or_context_is_a_config_error_that_quotes_no_credential() {
    let error = KubeCluster::connect(
        Some("clusters: [token: not-a-real-token-5f1c"),
        None,
        NAMESPACE,
    )
    .await
    .err()
    .expect("refused");
    assert_eq!(error.code(), "kubernetes.config");
    assert!(!error.to_string().contains("not-a-real-token"), "{error}");
    let text = kubeconfig("http://127.0.0.1:9", "http://127.0.0.1:10");
    let error = KubeCluster::connect(Some(&text), Some("staging"), NAMESPACE)
        .await
        .err()
        .expect("refused");
    assert_eq!(error.code(), "kubernetes.config");
    assert!(error.to_string().contains("staging"), "{error}");
    assert!(!error.to_string().contains("not-a-real-token"), "{error}");
}
