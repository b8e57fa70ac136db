//! The kubernetes path of the deployer against recorded API exchanges: no
//! Kubernetes API server can run where gantry is built, so kube-rs talks to
//! a `tower_test` mock service that plays steps (the request gantry must
//! send, the answer the API server gives), taken from gantry-kube's
//! fixtures (`crates/kube/tests/fixtures/`, shaped as the API's documented
//! objects) and put together per deployment. The deployer, the deploy
//! store and the cluster client are the production code; the load
//! balancer is the fake one, and each test checks what gantry sent.

use std::path::Path;
use std::pin::pin;
use std::sync::{Arc, Mutex};

use gantry_kube::{KubeCluster, KubeError};
use gantry_params::{MasterKey, ParamName, ParamStore, ParamType, PutParameter};
use gantry_runtime::BoxFuture;
use gantry_store::Store;
use http::{Request, Response};
use kube::client::Body;
use serde_json::{Value, json};

use super::fake::{Cluster, FakeImages, FakeLoadBalancers};
use super::{Quiet, tick};
use crate::kubernetes::KubeConnector;
use crate::{DeployError, Deployer, Runtimes};

const NAMESPACE: &str = "gantry-staging";
const SECRET_VALUE: &str = "hunter2-value";
const KUBECONFIG_TEXT: &str = "apiVersion: v1\nkind: Config\n";

/// The shop's catalog on a cluster, its Service a NodePort that gantry's
/// load balancer reaches on 10.0.0.5. `rollback`: the breaker's.
fn project(rollback: bool) -> Vec<(String, String)> {
    project_with(
        rollback,
        "service_type: NodePort\n      node_address: 10.0.0.5",
    )
}

/// The catalog with `service` as the Service settings of the
/// `kubernetes` block.
fn project_with(rollback: bool, service: &str) -> Vec<(String, String)> {
    let text = format!(
        r#"
version: 1
environments:
  staging:
    runtime: kubernetes
    kubernetes:
      context: staging-cluster
      kubeconfig: /shop/staging/kubeconfig
      {service}
    load_balancer:
      listen: 127.0.0.1:18080
      rules:
        - {{priority: 10, path: "/*", service: catalog}}
services:
  catalog:
    port: 8080
    replicas: 2
    secrets: {{DB_PASSWORD: /shop/staging/db}}
    health_check: {{path: /health, interval: 2s, timeout: 1s, healthy_threshold: 2, unhealthy_threshold: 2, grace_period: 5s}}
    deployment: {{min_healthy_percent: 100, max_percent: 200, circuit_breaker: {{threshold: 2, rollback: {rollback}}}}}
"#
    );
    vec![("gantry.yaml".to_owned(), text)]
}

/// A request gantry sent.
#[derive(Debug)]
struct Sent {
    method: String,
    path: String,
    content_type: String,
    body: Value,
    /// The body as sent, to look for what must not be in it.
    text: String,
}

/// The API server: plays its steps in order, records what gantry sent.
/// A path ending in `/SECRET` matches any Secret (its name is a hash).
struct ApiServer {
    client: kube::Client,
    sent: Arc<Mutex<Vec<Sent>>>,
    player: tokio::task::JoinHandle<()>,
}

impl ApiServer {
    fn play(steps: Vec<Value>) -> ApiServer {
        let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let sent = Arc::new(Mutex::new(Vec::new()));
        let record = sent.clone();
        let player = tokio::spawn(async move {
            let mut handle = pin!(handle);
            for (i, step) in steps.into_iter().enumerate() {
                let Some((request, respond)) = handle.next_request().await else {
                    break;
                };
                let method = request.method().to_string();
                let path = request.uri().path().to_owned();
                let content_type = request
                    .headers()
                    .get("content-type")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_owned();
                let bytes = request.into_body().collect_bytes().await.expect("body");
                let text = String::from_utf8_lossy(&bytes).into_owned();
                let expected = step["request"]["path"].as_str().unwrap();
                let matches = match expected.strip_suffix("/SECRET") {
                    Some(prefix) => path.starts_with(&format!("{prefix}/")),
                    None => path == expected,
                };
                assert!(
                    matches && method == step["request"]["method"].as_str().unwrap(),
                    "request {}: gantry sent {method} {path}, the recording has {} {expected}",
                    i + 1,
                    step["request"]["method"]
                );
                record.lock().unwrap().push(Sent {
                    method,
                    path,
                    content_type,
                    body: serde_json::from_str(&text).unwrap_or(Value::Null),
                    text,
                });
                let response = Response::builder()
                    .status(step["response"]["status"].as_u64().unwrap() as u16)
                    .header("content-type", "application/json")
                    .body(Body::from(
                        serde_json::to_vec(&step["response"]["body"]).unwrap(),
                    ))
                    .unwrap();
                respond.send_response(response);
            }
        });
        ApiServer {
            client: kube::Client::new(service, NAMESPACE),
            sent,
            player,
        }
    }

    /// What gantry sent, once every step was played.
    async fn sent(self) -> Vec<Sent> {
        self.player.await.expect("every recorded step played");
        Arc::try_unwrap(self.sent)
            .map(|m| m.into_inner().unwrap())
            .unwrap_or_else(|shared| std::mem::take(&mut *shared.lock().unwrap()))
    }
}

/// Hands out clusters on the mock API server and remembers how it was
/// asked (whether a kubeconfig came, the context, the namespace).
struct MockConnector {
    client: kube::Client,
    asked: Mutex<Vec<(bool, Option<String>, String)>>,
}

impl KubeConnector for MockConnector {
    fn connect<'a>(
        &'a self,
        kubeconfig: Option<&'a str>,
        context: Option<&'a str>,
        namespace: &'a str,
    ) -> BoxFuture<'a, Result<KubeCluster, KubeError>> {
        self.asked.lock().unwrap().push((
            kubeconfig == Some(KUBECONFIG_TEXT),
            context.map(str::to_owned),
            namespace.to_owned(),
        ));
        let client = self.client.clone();
        Box::pin(async move { Ok(KubeCluster::new(client, namespace, "https://10.0.0.1:6443")) })
    }
}

/// The steps of a recorded exchange in gantry-kube's fixtures.
fn fixture(name: &str) -> Vec<Value> {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../kube/tests/fixtures/{name}.json"));
    serde_json::from_str(&std::fs::read_to_string(path).expect("fixture")).expect("json")
}

/// The API server's answer to reading the catalog's NodePort Service.
fn node_port_service() -> Value {
    json!({
        "request": {"method": "GET", "path": "/api/v1/namespaces/gantry-staging/services/catalog"},
        "response": {"status": 200, "body": {
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "catalog", "namespace": NAMESPACE},
            "spec": {"type": "NodePort", "clusterIP": "10.96.12.7", "ports": [
                {"name": "http", "port": 8080, "targetPort": "http", "nodePort": 30080, "protocol": "TCP"}
            ]}
        }}
    })
}

/// A deployment that goes well: the four applies, a rollout read until
/// every replica is updated and available, the Service's node port read.
fn deployment_that_succeeds() -> Vec<Value> {
    let mut steps = fixture("apply-create");
    steps.extend(fixture("rollout-progress").into_iter().skip(4));
    steps.push(node_port_service());
    steps
}

/// A store with the catalog's secret and the kubeconfig, a deployer whose
/// clusters are `api`'s, the project applied.
async fn open(store: &Store, api: &ApiServer, rollback: bool) -> (Deployer, Arc<MockConnector>) {
    open_project(store, api, project(rollback)).await
}

async fn open_project(
    store: &Store,
    api: &ApiServer,
    project: Vec<(String, String)>,
) -> (Deployer, Arc<MockConnector>) {
    let params = ParamStore::open(store.db().clone(), MasterKey::from_bytes([7; 32]))
        .await
        .unwrap();
    for (name, value) in [
        ("/shop/staging/db", SECRET_VALUE),
        ("/shop/staging/kubeconfig", KUBECONFIG_TEXT),
    ] {
        let name = ParamName::parse(name).unwrap();
        let mut put = PutParameter::new(&name, value, ParamType::SecureString, "test");
        put.overwrite = true;
        params.put(put).await.unwrap();
    }
    let connector = Arc::new(MockConnector {
        client: api.client.clone(),
        asked: Mutex::new(Vec::new()),
    });
    let deployer = Deployer::open_with(
        store.clone(),
        Arc::new(params),
        Arc::new(FakeImages),
        Arc::new(FakeLoadBalancers(Cluster::new())),
        Runtimes::new(),
        None,
        connector.clone(),
    )
    .await
    .unwrap();
    deployer.apply(project).await.unwrap();
    (deployer, connector)
}

async fn deploy(deployer: &Deployer, tag: &str) -> Result<crate::DeployOutcome, DeployError> {
    let image = format!("127.0.0.1:5000/shop/catalog:{tag}");
    deployer
        .deploy("staging", "catalog", &image, "test", &Quiet)
        .await
}

#[tokio::test(start_paused = true)]
async fn a_deploy_applies_namespace_secret_deployment_and_service_and_routes_the_node_port() {
    tick();
    let store = crate::tests::test_store().await;
    let api = ApiServer::play(deployment_that_succeeds());
    let (deployer, connector) = open(&store, &api, true).await;

    let outcome = deploy(&deployer, "v1").await.unwrap();

    assert_eq!(outcome.revision, 1);
    assert_eq!(outcome.replicas, ["gantry-staging/catalog:30080"]);
    assert!(outcome.image.contains("@sha256:"), "{}", outcome.image);
    assert_eq!(
        connector.asked.lock().unwrap()[0],
        (
            true,
            Some("staging-cluster".to_owned()),
            NAMESPACE.to_owned()
        ),
        "the kubeconfig parameter's text, the context and the namespace"
    );
    let sent = api.sent().await;
    let paths: Vec<(&str, &str)> = sent
        .iter()
        .map(|s| (s.method.as_str(), s.path.as_str()))
        .collect();
    assert_eq!(paths[0], ("PATCH", "/api/v1/namespaces/gantry-staging"));
    assert!(
        paths[1]
            .1
            .starts_with("/api/v1/namespaces/gantry-staging/secrets/catalog-secrets-")
    );
    assert_eq!(
        paths[2..4],
        [
            (
                "PATCH",
                "/api/v1/namespaces/gantry-staging/services/catalog"
            ),
            (
                "PATCH",
                "/apis/apps/v1/namespaces/gantry-staging/deployments/catalog"
            ),
        ]
    );
    for applied in &sent[..4] {
        assert_eq!(applied.content_type, "application/apply-patch+yaml");
    }
    // The value read at its pinned version is in the Secret's data, and
    // only there.
    assert_eq!(sent[1].body["data"]["DB_PASSWORD"], "aHVudGVyMi12YWx1ZQ==");
    for (i, request) in sent.iter().enumerate() {
        assert!(
            !request.text.contains(SECRET_VALUE) && !request.text.contains("aHVudGVyMi12YWx1ZQ")
                || i == 1,
            "request {i} carries the secret: {}",
            request.text
        );
    }
    let container = &sent[3].body["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["image"], outcome.image.as_str());
    assert_eq!(
        sent[3].body["spec"]["template"]["metadata"]["labels"]["gantry.revision"],
        "1"
    );
    assert_eq!(sent[2].body["spec"]["type"], "NodePort");

    let status = deployer.environment_status("staging").await.unwrap();
    let catalog = &status.services[0];
    assert_eq!(catalog.revision, Some(1));
    assert_eq!(catalog.deployments[0].status, "Succeeded");
    assert_eq!(catalog.replicas.len(), 1);
    assert_eq!(catalog.replicas[0].addr, "10.0.0.5:30080");
    let json = serde_json::to_string(&status).unwrap();
    assert!(!json.contains(SECRET_VALUE), "{json}");
}

#[tokio::test(start_paused = true)]
async fn a_rollout_past_its_progress_deadline_rolls_back_to_the_previous_replica_set_and_fails() {
    tick();
    let store = crate::tests::test_store().await;
    let mut steps = deployment_that_succeeds();
    steps.extend(deployment_that_succeeds());
    steps.extend(fixture("apply-create"));
    steps.extend(fixture("rollout-deadline-exceeded"));
    steps.extend(fixture("rollback"));
    // The controller rolls the old template out again.
    steps.extend(fixture("rollout-progress").into_iter().skip(4));
    let api = ApiServer::play(steps);
    let (deployer, _) = open(&store, &api, true).await;
    deploy(&deployer, "v1").await.unwrap();
    deploy(&deployer, "v2").await.unwrap();

    let error = deploy(&deployer, "v3").await.unwrap_err();

    let DeployError::Kubernetes {
        kube_code,
        rolled_back_to,
        message,
        ..
    } = &error
    else {
        panic!("{error}");
    };
    assert_eq!(*kube_code, "kubernetes.rollout_failed");
    assert_eq!(*rolled_back_to, Some(2));
    assert!(message.contains("ProgressDeadlineExceeded"), "{message}");
    assert!(message.contains("2/2 replica(s) available"), "{message}");
    assert_eq!(error.code(), "deploy.kubernetes");
    let status = deployer.environment_status("staging").await.unwrap();
    let catalog = &status.services[0];
    assert_eq!(catalog.revision, Some(2), "revision 2 is current again");
    assert_eq!(catalog.deployments[0].status, "RolledBack");
    assert_eq!(catalog.deployments[0].to_revision, 3);
    let sent = api.sent().await;
    let undo = &sent[sent.len() - 3];
    assert_eq!(
        (undo.method.as_str(), undo.content_type.as_str()),
        ("PATCH", "application/strategic-merge-patch+json")
    );
    assert_eq!(undo.body["spec"]["template"]["$patch"], "replace");
}

#[tokio::test(start_paused = true)]
async fn pods_that_restart_up_to_the_threshold_fail_the_deployment_without_rollback_when_it_is_off()
{
    tick();
    let store = crate::tests::test_store().await;
    let mut steps = deployment_that_succeeds();
    steps.extend(fixture("apply-create"));
    steps.extend(fixture("rollout-restarts"));
    let api = ApiServer::play(steps);
    let (deployer, _) = open(&store, &api, false).await;
    deploy(&deployer, "v1").await.unwrap();

    let error = deploy(&deployer, "v2").await.unwrap_err();

    let DeployError::Kubernetes {
        kube_code,
        rolled_back_to,
        message,
        ..
    } = &error
    else {
        panic!("{error}");
    };
    assert_eq!(*kube_code, "kubernetes.rollout_failed");
    assert_eq!(*rolled_back_to, None);
    assert!(message.contains("threshold is 2"), "{message}");
    assert!(message.contains("rollback is off"), "{message}");
    let status = deployer.environment_status("staging").await.unwrap();
    assert_eq!(status.services[0].revision, Some(1));
    assert_eq!(status.services[0].deployments[0].status, "Failed");
    // No rollback was sent: the recording ends with the last rollout read.
    let sent = api.sent().await;
    assert!(sent.last().unwrap().method == "GET");
}

#[tokio::test(start_paused = true)]
async fn a_namespace_gantry_may_not_write_fails_clearly_and_nothing_is_deployed() {
    tick();
    let store = crate::tests::test_store().await;
    let api = ApiServer::play(fixture("forbidden"));
    let (deployer, _) = open(&store, &api, true).await;

    let error = deploy(&deployer, "v1").await.unwrap_err();

    let DeployError::Kubernetes { kube_code, .. } = &error else {
        panic!("{error}");
    };
    assert_eq!(*kube_code, "kubernetes.forbidden");
    let text = error.to_string();
    assert!(text.contains("forbidden"), "{text}");
    assert!(text.contains("nothing was deployed"), "{text}");
    let status = deployer.environment_status("staging").await.unwrap();
    let catalog = &status.services[0];
    assert_eq!(catalog.revision, None);
    assert!(catalog.replicas.is_empty());
    assert_eq!(catalog.deployments[0].status, "Failed");
    assert_eq!(api.sent().await.len(), 1, "nothing after the refusal");
}

#[tokio::test(start_paused = true)]
async fn a_deployment_changed_behind_gantrys_back_fails_as_a_conflict_and_the_current_revision_stays()
 {
    tick();
    let store = crate::tests::test_store().await;
    let mut steps = deployment_that_succeeds();
    let conflict = fixture("apply-conflict");
    steps.push(conflict[0].clone());
    steps.push(fixture("apply-create")[1].clone());
    steps.extend(conflict.into_iter().skip(1));
    let api = ApiServer::play(steps);
    let (deployer, _) = open(&store, &api, true).await;
    deploy(&deployer, "v1").await.unwrap();

    let error = deploy(&deployer, "v2").await.unwrap_err();

    let DeployError::Kubernetes { kube_code, .. } = &error else {
        panic!("{error}");
    };
    assert_eq!(*kube_code, "kubernetes.conflict");
    let text = error.to_string();
    assert!(text.contains("changed by someone else"), "{text}");
    assert!(
        text.contains("revision 1 is still the current one"),
        "{text}"
    );
    let status = deployer.environment_status("staging").await.unwrap();
    let catalog = &status.services[0];
    assert_eq!(catalog.revision, Some(1));
    assert_eq!(catalog.deployments[0].status, "Failed");
    assert_eq!(catalog.replicas[0].addr, "10.0.0.5:30080", "still routed");
    api.sent().await;
}

#[tokio::test(start_paused = true)]
async fn a_new_server_readopts_the_revision_the_cluster_runs_without_deploying() {
    tick();
    let store = crate::tests::test_store().await;
    let mut steps = deployment_that_succeeds();
    steps.extend(deployment_that_succeeds());
    let api = ApiServer::play(steps);
    let (deployer, _) = open(&store, &api, true).await;
    deploy(&deployer, "v1").await.unwrap();
    deploy(&deployer, "v2").await.unwrap();
    deployer.shutdown().await;
    api.sent().await;

    // The cluster runs revision 2 of the catalog (and a Deployment gantry
    // has no revision of, which it leaves alone).
    let mut steps = fixture("readopt");
    steps.push(node_port_service());
    let api = ApiServer::play(steps);
    let (deployer, connector) = open(&store, &api, true).await;

    let status = deployer.environment_status("staging").await.unwrap();
    let catalog = &status.services[0];
    assert_eq!(catalog.revision, Some(2));
    assert_eq!(catalog.replicas[0].addr, "10.0.0.5:30080");
    assert_eq!(connector.asked.lock().unwrap().len(), 1);
    let sent = api.sent().await;
    let asked: Vec<(&str, &str)> = sent
        .iter()
        .map(|s| (s.method.as_str(), s.path.as_str()))
        .collect();
    assert_eq!(
        asked,
        [
            ("GET", "/apis/apps/v1/namespaces/gantry-staging/deployments"),
            ("GET", "/api/v1/namespaces/gantry-staging/services/catalog"),
        ],
        "read, nothing applied"
    );
}

#[tokio::test(start_paused = true)]
async fn the_cluster_s_revision_wins_over_the_recorded_one_at_readoption() {
    tick();
    let store = crate::tests::test_store().await;
    let mut steps = deployment_that_succeeds();
    steps.extend(deployment_that_succeeds());
    let api = ApiServer::play(steps);
    let (deployer, _) = open(&store, &api, true).await;
    deploy(&deployer, "v1").await.unwrap();
    deploy(&deployer, "v2").await.unwrap();
    deployer.shutdown().await;
    api.sent().await;

    // Someone ran `kubectl rollout undo`: the template is revision 1's.
    let mut steps = fixture("readopt");
    for item in steps[0]["response"]["body"]["items"]
        .as_array_mut()
        .unwrap()
    {
        if item["metadata"]["name"] == "catalog" {
            item["spec"]["template"]["metadata"]["labels"]["gantry.revision"] = json!("1");
        }
    }
    steps.push(node_port_service());
    let api = ApiServer::play(steps);
    let (deployer, _) = open(&store, &api, true).await;

    let status = deployer.environment_status("staging").await.unwrap();
    assert_eq!(status.services[0].revision, Some(1));
    api.sent().await;
}

#[tokio::test(start_paused = true)]
async fn a_rollback_command_applies_the_earlier_revision_s_image_as_a_new_revision() {
    tick();
    let store = crate::tests::test_store().await;
    let mut steps = deployment_that_succeeds();
    steps.extend(deployment_that_succeeds());
    steps.extend(deployment_that_succeeds());
    let api = ApiServer::play(steps);
    let (deployer, _) = open(&store, &api, true).await;
    let first = deploy(&deployer, "v1").await.unwrap();
    deploy(&deployer, "v2").await.unwrap();

    let outcome = deployer
        .rollback("staging", "catalog", None, &Quiet)
        .await
        .unwrap();

    assert_eq!((outcome.revision, &outcome.image), (3, &first.image));
    let status = deployer.environment_status("staging").await.unwrap();
    assert_eq!(status.services[0].revision, Some(3));
    assert_eq!(status.services[0].deployments[0].status, "Succeeded");
    let sent = api.sent().await;
    let applied = &sent[2 * 7 + 3].body;
    assert_eq!(applied["kind"], "Deployment");
    assert_eq!(
        applied["spec"]["template"]["spec"]["containers"][0]["image"],
        first.image.as_str()
    );
    assert_eq!(
        applied["spec"]["template"]["metadata"]["labels"]["gantry.revision"],
        "3"
    );
}

#[tokio::test(start_paused = true)]
async fn with_a_cluster_ip_service_the_load_balancer_gets_no_target_and_the_ingress_routes() {
    tick();
    let store = crate::tests::test_store().await;
    let mut steps = fixture("apply-create");
    steps.extend(fixture("rollout-progress").into_iter().skip(4));
    let api = ApiServer::play(steps);
    let (deployer, _) =
        open_project(&store, &api, project_with(true, "service_type: ClusterIP")).await;

    let outcome = deploy(&deployer, "v1").await.unwrap();

    assert_eq!(outcome.replicas, ["deployment.apps/catalog"]);
    let status = deployer.environment_status("staging").await.unwrap();
    assert_eq!(status.services[0].revision, Some(1));
    assert!(status.services[0].replicas.is_empty());
    let sent = api.sent().await;
    assert_eq!(sent[2].body["spec"]["type"], "ClusterIP");
    assert!(
        sent.iter()
            .all(|s| !(s.method == "GET" && s.path.contains("/services/"))),
        "no node port is read"
    );
}

#[tokio::test(start_paused = true)]
async fn an_api_server_that_does_not_answer_fails_naming_it_and_nothing_is_deployed() {
    tick();
    let store = crate::tests::test_store().await;
    // It answers nothing: the connection is gone at the first request.
    let api = ApiServer::play(Vec::new());
    let (deployer, _) = open(&store, &api, true).await;

    let error = deploy(&deployer, "v1").await.unwrap_err();

    let DeployError::Kubernetes { kube_code, .. } = &error else {
        panic!("{error}");
    };
    assert_eq!(*kube_code, "kubernetes.unreachable");
    assert!(
        error.to_string().contains("https://10.0.0.1:6443"),
        "{error}"
    );
    let status = deployer.environment_status("staging").await.unwrap();
    assert_eq!(status.services[0].revision, None);
    assert_eq!(status.services[0].deployments[0].status, "Failed");
}

#[tokio::test(start_paused = true)]
async fn a_kubeconfig_parameter_that_cannot_be_read_fails_before_anything_is_recorded() {
    tick();
    let store = crate::tests::test_store().await;
    let api = ApiServer::play(Vec::new());
    let mut files = project(true);
    files[0].1 = files[0]
        .1
        .replace("/shop/staging/kubeconfig", "/shop/staging/nowhere");
    let (deployer, connector) = open_project(&store, &api, files).await;

    let error = deploy(&deployer, "v1").await.unwrap_err();

    assert_eq!(error.code(), "deploy.secret", "{error}");
    assert!(
        error.to_string().contains("/shop/staging/nowhere"),
        "{error}"
    );
    assert!(connector.asked.lock().unwrap().is_empty());
    let status = deployer.environment_status("staging").await.unwrap();
    assert!(status.services[0].deployments.is_empty());
    assert!(api.sent().await.is_empty());
}

/// A kubeconfig whose cluster listens nowhere (port 1), with a token that
/// must never show.
const KUBECONFIG_NOWHERE: &str = r#"
apiVersion: v1
kind: Config
clusters:
  - name: nowhere
    cluster:
      server: https://127.0.0.1:1
      insecure-skip-tls-verify: true
users:
  - name: deployer
    user:
      token: token-that-must-not-show
contexts:
  - name: staging-cluster
    context: {cluster: nowhere, user: deployer}
current-context: staging-cluster
"#;

#[tokio::test]
async fn the_real_connector_reads_the_kubeconfig_parameter_and_a_cluster_that_is_not_there_fails_clearly()
 {
    let store = crate::tests::test_store().await;
    let params = ParamStore::open(store.db().clone(), MasterKey::from_bytes([7; 32]))
        .await
        .unwrap();
    for (name, value) in [
        ("/shop/staging/db", SECRET_VALUE),
        ("/shop/staging/kubeconfig", KUBECONFIG_NOWHERE),
    ] {
        let name = ParamName::parse(name).unwrap();
        params
            .put(PutParameter::new(
                &name,
                value,
                ParamType::SecureString,
                "test",
            ))
            .await
            .unwrap();
    }
    // kube-rs with its real HTTP client, as the server opens it.
    let deployer = Deployer::open_with(
        store.clone(),
        Arc::new(params),
        Arc::new(FakeImages),
        Arc::new(FakeLoadBalancers(Cluster::new())),
        Runtimes::new(),
        None,
        Arc::new(crate::kubernetes::KubeconfigConnector),
    )
    .await
    .unwrap();
    deployer.apply(project(true)).await.unwrap();

    let error = deploy(&deployer, "v1").await.unwrap_err();

    let DeployError::Kubernetes { kube_code, .. } = &error else {
        panic!("{error}");
    };
    assert_eq!(*kube_code, "kubernetes.unreachable", "{error}");
    let text = error.to_string();
    assert!(text.contains("https://127.0.0.1:1"), "{text}");
    assert!(!text.contains("token-that-must-not-show"), "{text}");
    let status = deployer.environment_status("staging").await.unwrap();
    assert_eq!(status.services[0].revision, None);
    assert_eq!(status.services[0].deployments[0].status, "Failed");
}

#[tokio::test(start_paused = true)]
async fn env_down_deletes_the_deployment_and_the_service_and_forgets_the_revision() {
    tick();
    let store = crate::tests::test_store().await;
    let mut steps = deployment_that_succeeds();
    steps.push(json!({
        "request": {"method": "DELETE", "path": "/apis/apps/v1/namespaces/gantry-staging/deployments/catalog"},
        "response": {"status": 200, "body": {
            "apiVersion": "v1", "kind": "Status", "metadata": {}, "status": "Success",
            "details": {"name": "catalog", "group": "apps", "kind": "deployments", "uid": "5b0c6f9e-3c1a-4f5e-9d7a-0a1b2c3d4e5f"}
        }}
    }));
    // Already deleted by someone: not an error.
    steps.push(json!({
        "request": {"method": "DELETE", "path": "/api/v1/namespaces/gantry-staging/services/catalog"},
        "response": {"status": 404, "body": {
            "apiVersion": "v1", "kind": "Status", "metadata": {}, "status": "Failure",
            "message": "services \"catalog\" not found", "reason": "NotFound",
            "details": {"name": "catalog", "kind": "services"}, "code": 404
        }}
    }));
    let api = ApiServer::play(steps);
    let (deployer, _) = open(&store, &api, true).await;
    deploy(&deployer, "v1").await.unwrap();

    deployer.down("staging").await.unwrap();

    let status = deployer.environment_status("staging").await.unwrap();
    assert_eq!(status.services[0].revision, None);
    assert!(status.services[0].replicas.is_empty());
    let sent = api.sent().await;
    let deleted = &sent[sent.len() - 2];
    assert_eq!(deleted.method, "DELETE");
    assert_eq!(deleted.body["propagationPolicy"], "Background");
}

#[tokio::test(start_paused = true)]
async fn a_refused_service_leaves_the_deployment_and_its_pods_as_they_were() {
    tick();
    let store = crate::tests::test_store().await;
    let mut steps = deployment_that_succeeds();
    let create = fixture("apply-create");
    steps.extend(create[..2].iter().cloned());
    let mut refused = fixture("forbidden")[0].clone();
    refused["request"]["path"] = json!("/api/v1/namespaces/gantry-staging/services/catalog");
    steps.push(refused);
    let api = ApiServer::play(steps);
    let (deployer, _) = open(&store, &api, true).await;
    deploy(&deployer, "v1").await.unwrap();

    let error = deploy(&deployer, "v2").await.unwrap_err();

    assert_eq!(error.code(), "deploy.kubernetes", "{error}");
    assert!(
        error.to_string().contains("kubernetes.forbidden"),
        "{error}"
    );
    let status = deployer.environment_status("staging").await.unwrap();
    assert_eq!(status.services[0].revision, Some(1));
    let sent = api.sent().await;
    // The second deployment sent the Namespace, the Secret and the
    // refused Service; no Deployment.
    assert_eq!(sent.len(), 7 + 3);
    assert!(sent[7..].iter().all(|s| !s.path.contains("/deployments/")));
}

#[tokio::test(start_paused = true)]
async fn env_logs_points_at_kubectl_logs() {
    tick();
    let store = crate::tests::test_store().await;
    let api = ApiServer::play(Vec::new());
    let (deployer, _) = open(&store, &api, true).await;

    let error = deployer
        .service_logs(
            "staging",
            "catalog",
            None,
            gantry_runtime::LogQuery::default(),
        )
        .await
        .unwrap_err();

    assert_eq!(error.code(), "deploy.runtime");
    assert!(
        error
            .to_string()
            .contains("kubectl logs -n gantry-staging deployment/catalog"),
        "{error}"
    );
}
