//! The registry under test, driven through `router(…).oneshot(…)`, and
//! helpers to build blobs and manifests.

use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use gantry_registry::{Registry, RegistryLimits, router};
use gantry_store::{ArtifactStore, Store};
use serde_json::{Value, json};
use sha2::Digest as _;
use tower::ServiceExt as _;

use super::{StaticTokens, TOKEN};

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";

pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub store: Store,
    pub artifacts: ArtifactStore,
    pub auth: Arc<StaticTokens>,
    pub limits: RegistryLimits,
    pub registry: Registry,
    pub app: Router,
}

impl Fixture {
    pub async fn new() -> Fixture {
        Fixture::with_limits(RegistryLimits::default()).await
    }

    pub async fn with_limits(limits: RegistryLimits) -> Fixture {
        // SQLite in memory, or PostgreSQL when GANTRY_TEST_POSTGRES is set.
        Fixture::on(gantry_testkit::database::database().await, limits).await
    }

    /// The registry on a database of the test's choosing.
    pub async fn on(db: gantry_db::Db, limits: RegistryLimits) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::connect(db).await.unwrap();
        let artifacts = ArtifactStore::open(dir.path().join("artifacts")).unwrap();
        let auth = StaticTokens::new();
        let registry = Registry::open(
            &store,
            artifacts.clone(),
            dir.path(),
            auth.options(limits.clone()),
        )
        .await
        .unwrap();
        Fixture {
            app: router(registry.clone()),
            registry,
            dir,
            store,
            artifacts,
            auth,
            limits,
        }
    }

    /// A fresh registry on the same database and directories, as after a
    /// server restart.
    pub async fn reopen(&mut self) {
        let registry = Registry::open(
            &self.store,
            self.artifacts.clone(),
            self.dir.path(),
            self.auth.options(self.limits.clone()),
        )
        .await
        .unwrap();
        self.app = router(registry.clone());
        self.registry = registry;
    }

    pub fn uploads_dir(&self) -> PathBuf {
        self.dir.path().join("registry").join("uploads")
    }

    pub fn upload_files(&self) -> usize {
        std::fs::read_dir(self.uploads_dir()).unwrap().count()
    }

    /// Sends a request as the test's all-powerful [`TOKEN`], unless the
    /// headers carry their own `authorization`.
    pub async fn send(
        &self,
        method: &str,
        uri: &str,
        headers: &[(&str, &str)],
        body: impl Into<Body>,
    ) -> Reply {
        let bearer = format!("Bearer {TOKEN}");
        let mut all = headers.to_vec();
        if !headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("authorization"))
        {
            all.push(("authorization", &bearer));
        }
        self.send_exactly(method, uri, &all, body).await
    }

    /// Sends a request with exactly these headers (no credentials unless
    /// they are among them).
    pub async fn send_exactly(
        &self,
        method: &str,
        uri: &str,
        headers: &[(&str, &str)],
        body: impl Into<Body>,
    ) -> Reply {
        let mut request = Request::builder()
            .method(method)
            .uri(uri)
            .header("host", "registry.test:5000");
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        let response = self
            .app
            .clone()
            .oneshot(request.body(body.into()).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap()
            .to_vec();
        Reply {
            status,
            headers,
            body,
        }
    }

    pub async fn get(&self, uri: &str) -> Reply {
        self.send("GET", uri, &[], Body::empty()).await
    }

    /// Pushes a blob in one request; returns its digest.
    pub async fn push_blob(&self, repo: &str, bytes: &[u8]) -> String {
        let digest = digest(bytes);
        let r = self
            .send(
                "POST",
                &format!("/v2/{repo}/blobs/uploads/?digest={digest}"),
                &[],
                bytes.to_vec(),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
        digest
    }

    /// Starts an upload; returns its Location.
    pub async fn start_upload(&self, repo: &str) -> String {
        let r = self
            .send(
                "POST",
                &format!("/v2/{repo}/blobs/uploads/"),
                &[],
                Body::empty(),
            )
            .await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text());
        assert_eq!(r.header("range"), "0-0");
        assert!(!r.header("docker-upload-uuid").is_empty());
        r.header("location").to_string()
    }

    pub async fn put_manifest(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
        bytes: &[u8],
    ) -> Reply {
        self.send(
            "PUT",
            &format!("/v2/{repo}/manifests/{reference}"),
            &[("content-type", media_type)],
            bytes.to_vec(),
        )
        .await
    }

    /// Pushes a config and one layer, and an image manifest for them;
    /// returns the manifest's bytes and digest.
    pub async fn push_image(&self, repo: &str, tag: &str, layer: &[u8]) -> (Vec<u8>, String) {
        let config = self.push_blob(repo, b"{\"architecture\":\"amd64\"}").await;
        let layer = self.push_blob(repo, layer).await;
        let manifest = image_manifest(OCI_MANIFEST, &config, &[&layer]);
        let r = self.put_manifest(repo, tag, OCI_MANIFEST, &manifest).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
        let d = digest(&manifest);
        assert_eq!(r.header("docker-content-digest"), d);
        (manifest, d)
    }
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: axum::http::HeaderMap,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap())
            .unwrap_or("")
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }

    /// The OCI error code of an error answer.
    pub fn code(&self) -> String {
        self.json()["errors"][0]["code"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }
}

pub fn digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(bytes)))
}

/// An image manifest, deliberately spaced unlike serde_json so that a
/// registry that re-serialises it would change its digest.
pub fn image_manifest(media_type: &str, config: &str, layers: &[&str]) -> Vec<u8> {
    let layers: Vec<String> = layers
        .iter()
        .map(|l| {
            format!(
                "{{ \"mediaType\": \"application/vnd.oci.image.layer.v1.tar\", \"digest\": \"{l}\", \"size\": 1 }}"
            )
        })
        .collect();
    format!(
        "{{\n  \"schemaVersion\": 2,\n  \"mediaType\": \"{media_type}\",\n  \"config\": {{ \"mediaType\": \"application/vnd.oci.image.config.v1+json\", \"digest\": \"{config}\", \"size\": 1 }},\n  \"layers\": [ {} ]\n}}",
        layers.join(", ")
    )
    .into_bytes()
}

pub fn index_manifest(children: &[&str]) -> Vec<u8> {
    let manifests: Vec<Value> = children
        .iter()
        .map(|c| json!({"mediaType": OCI_MANIFEST, "digest": c, "size": 1}))
        .collect();
    serde_json::to_vec(&json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests}))
        .unwrap()
}
