//! The sample shop's manifests against committed files
//! (`tests/golden/shop-ENV.yaml`), so any change in rendering shows up as
//! a diff; `UPDATE_GOLDEN=1` writes them anew. Each rendered document is
//! read back into k8s-openapi's types, as `kubectl` would read it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use gantry_kube::project::environment_manifests;
use gantry_kube::render::{documents, to_yaml};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Secret, Service};

fn shop() -> gantry_spec::Project {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/shop/gantry.yaml");
    let text = std::fs::read_to_string(&file).expect("the shop's gantry.yaml");
    let document = gantry_spec::parse_document("gantry.yaml", &text).expect("a valid file");
    gantry_spec::assemble(vec![("gantry.yaml".to_owned(), document)]).expect("a valid project")
}

fn golden(environment: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/golden/shop-{environment}.yaml"))
}

/// Renders `environment` with `images` and checks it against its file.
fn check(environment: &str, images: &BTreeMap<String, String>) -> String {
    let manifests = environment_manifests(&shop(), environment, images).expect("manifests");
    let text = to_yaml(&manifests).expect("yaml");
    let path = golden(environment);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &text).expect("write the golden file");
    }
    let expected =
        std::fs::read_to_string(&path).expect("the golden file (UPDATE_GOLDEN=1 writes it)");
    assert_eq!(
        text, expected,
        "{environment}'s manifests changed; if that is intended, rerun with UPDATE_GOLDEN=1 and review the diff"
    );
    text
}

fn digests() -> BTreeMap<String, String> {
    ["catalog", "orders", "bff"]
        .iter()
        .enumerate()
        .map(|(i, s)| {
            (
                (*s).to_owned(),
                format!(
                    "127.0.0.1:5000/shop/{s}@sha256:{}",
                    format!("{i}").repeat(64)
                ),
            )
        })
        .collect()
}

/// The objects of a render, typed: the namespace, secrets, deployments
/// and services.
fn typed(text: &str) -> (Vec<Namespace>, Vec<Secret>, Vec<Deployment>, Vec<Service>) {
    let (mut ns, mut secrets, mut deployments, mut services) = (vec![], vec![], vec![], vec![]);
    for document in documents(text).expect("documents") {
        match (document["apiVersion"].as_str(), document["kind"].as_str()) {
            (Some("v1"), Some("Namespace")) => ns.push(serde_json::from_value(document).unwrap()),
            (Some("v1"), Some("Secret")) => secrets.push(serde_json::from_value(document).unwrap()),
            (Some("apps/v1"), Some("Deployment")) => {
                deployments.push(serde_json::from_value(document).unwrap());
            }
            (Some("v1"), Some("Service")) => {
                services.push(serde_json::from_value(document).unwrap())
            }
            other => panic!("unexpected object {other:?}"),
        }
    }
    (ns, secrets, deployments, services)
}

#[test]
fn the_shops_production_manifests_are_as_committed() {
    let text = check("production", &digests());
    let (ns, secrets, deployments, services) = typed(&text);
    assert_eq!(ns.len(), 1);
    assert_eq!(ns[0].metadata.name.as_deref(), Some("gantry-production"));
    assert_eq!(deployments.len(), 3);
    assert_eq!(services.len(), 3);
    let catalog = deployments
        .iter()
        .find(|d| d.metadata.name.as_deref() == Some("catalog"))
        .expect("catalog");
    let spec = catalog.spec.as_ref().expect("spec");
    assert_eq!(spec.replicas, Some(2));
    let container = &spec.template.spec.as_ref().expect("pod spec").containers[0];
    assert_eq!(
        container.image.as_deref(),
        Some(format!("127.0.0.1:5000/shop/catalog@sha256:{}", "0".repeat(64)).as_str())
    );
    let readiness = container.readiness_probe.as_ref().expect("readiness");
    assert_eq!(readiness.period_seconds, Some(2));
    assert_eq!(readiness.failure_threshold, Some(2));
    assert_eq!(readiness.success_threshold, Some(2));
    assert_eq!(
        container
            .liveness_probe
            .as_ref()
            .expect("liveness")
            .success_threshold,
        Some(1)
    );
    // min_healthy_percent 100, max_percent 200.
    let rolling = spec
        .strategy
        .as_ref()
        .and_then(|s| s.rolling_update.as_ref())
        .expect("rolling update");
    assert_eq!(
        serde_json::to_value(rolling).unwrap(),
        serde_json::json!({"maxSurge": "100%", "maxUnavailable": "0%"})
    );
    // The bff's one secret: a Secret named by its parameter version, no
    // value anywhere, and the Deployment reads it by reference.
    assert_eq!(secrets.len(), 1);
    let secret = &secrets[0];
    let name = secret.metadata.name.clone().expect("name");
    assert!(name.starts_with("bff-secrets-"), "{name}");
    assert!(
        secret.data.as_ref().expect("data")["SERVICE_DNS"]
            .0
            .is_empty()
    );
    let bff = deployments
        .iter()
        .find(|d| d.metadata.name.as_deref() == Some("bff"))
        .expect("bff");
    let env = bff
        .spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .as_ref()
        .unwrap()
        .containers[0]
        .env
        .clone()
        .expect("env");
    let dns = env
        .iter()
        .find(|e| e.name == "SERVICE_DNS")
        .expect("SERVICE_DNS");
    assert_eq!(dns.value, None);
    let reference = dns
        .value_from
        .as_ref()
        .and_then(|v| v.secret_key_ref.as_ref())
        .expect("a secret reference");
    assert_eq!(reference.name, name);
    assert!(text.contains("/shop/production/SERVICE_DNS:latest SERVICE_DNS"));
}

#[test]
fn the_shops_staging_manifests_are_as_committed() {
    // Without --image: the placeholders say what a deploy would pin.
    let text = check("staging", &BTreeMap::new());
    let (_, _, deployments, services) = typed(&text);
    assert_eq!(deployments.len(), 3);
    for d in &deployments {
        assert_eq!(d.spec.as_ref().unwrap().replicas, Some(1));
        assert_eq!(d.metadata.namespace.as_deref(), Some("gantry-staging"));
    }
    assert!(
        services
            .iter()
            .all(|s| s.spec.as_ref().unwrap().type_.as_deref() == Some("ClusterIP"))
    );
    assert!(text.contains("<the image a deploy action gives catalog>"));
}
