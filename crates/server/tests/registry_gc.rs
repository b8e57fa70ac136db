//! `POST /api/v1/registry/gc` on a real server: images revisions run or
//! could roll back to survive though no tag names them, an untagged and
//! unreferenced image goes, what was pushed within the grace period stays,
//! a dry run removes nothing, unpacked roots no replica uses go, and only
//! an admin may ask.
//!
//! The test images hold Debian's static busybox (package busybox-static).

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use gantry_api::{RegistryGcAnswer, RegistryGcRequest};
use gantry_images::Reference;
use gantry_server::RunningServer;
use support::{Quiet, Replicas, WEB_PROJECT, digest_of, push_web};

fn root(data: &Path, image: &str) -> PathBuf {
    data.join("rootfs")
        .join(digest_of(image).trim_start_matches("sha256:"))
}

/// Whether the registry still serves the image's manifest.
async fn pullable(server: &RunningServer, image: &str) -> bool {
    let reference = Reference::parse(image).unwrap();
    server
        .plane
        .images()
        .get_manifest_raw(&reference)
        .await
        .is_ok()
}

async fn gc(
    app: &axum::Router,
    token: &str,
    request: &RegistryGcRequest,
) -> (u16, Option<RegistryGcAnswer>) {
    use tower::ServiceExt;
    let request = axum::http::Request::post("/api/v1/registry/gc")
        .header("host", "127.0.0.1:7700")
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .body(axum::body::Body::from(serde_json::to_vec(request).unwrap()))
        .unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status().as_u16();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    (status, serde_json::from_slice(&bytes).ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gc_keeps_what_revisions_need_and_removes_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let listen = "127.0.0.1:0".parse().unwrap();
    let server = RunningServer::start(&data, listen, listen).await.unwrap();
    let _replicas = Replicas(data.clone());
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let file = dir.path().join("env.yaml");
    let text = WEB_PROJECT.replace("PORT", &port.to_string());
    server
        .plane
        .apply_file(&file, &text, &Default::default())
        .await
        .unwrap();
    let deployer = server.plane.deployer();

    // Revisions 1 and 2 ran images pushed under one tag: only v2 is tagged.
    let v1 = push_web(&server, "latest", "one", "", &[]).await;
    deployer
        .deploy("staging", "web", &v1, "test", &Quiet)
        .await
        .unwrap();
    let v2 = push_web(&server, "latest", "two", "", &[]).await;
    deployer
        .deploy("staging", "web", &v2, "test", &Quiet)
        .await
        .unwrap();
    // An image nobody runs, its tag moved on to another.
    let junk = push_web(&server, "tmp", "junk", "", &[]).await;
    let junk2 = push_web(&server, "tmp", "junk, again", "", &[]).await;
    assert!(root(&data, &v1).is_dir() && root(&data, &v2).is_dir());

    let token = std::fs::read_to_string(data.join("admin.token")).unwrap();
    let app = gantry_server::api::router(server.plane.clone(), Default::default());

    // Only an admin may collect.
    let now = gantry_clock::now_ms();
    let auth = server.plane.auth();
    auth.add_user("op", None, vec!["operator".parse().unwrap()], now)
        .await
        .unwrap();
    let operator = auth.create_token("op", None, None, now).await.unwrap();
    let (status, _) = gc(
        &app,
        operator.secret.expose(),
        &RegistryGcRequest::default(),
    )
    .await;
    assert_eq!(status, 403);

    // Everything was pushed within the default grace period: the registry
    // keeps it all. v1's root, which no replica uses, would go.
    tokio::time::sleep(Duration::from_millis(5)).await;
    let dry = RegistryGcRequest {
        dry_run: true,
        grace_seconds: Some(0),
    };
    let (status, answer) = gc(&app, &token, &dry).await;
    assert_eq!(status, 200);
    let answer = answer.unwrap();
    assert!(answer.dry_run);
    let gone: Vec<&str> = answer.manifests.iter().map(|m| m.digest.as_str()).collect();
    assert_eq!(gone, [digest_of(&junk)], "{answer:#?}");
    let images: Vec<&str> = answer.images.iter().map(|i| i.digest.as_str()).collect();
    assert_eq!(images, [digest_of(&v1)]);
    assert!(answer.bytes_freed > 0);
    assert!(answer.kept_digests >= 2);
    // The dry run removed nothing.
    assert!(pullable(&server, &junk).await);
    assert!(root(&data, &v1).is_dir());

    let (_, answer) = gc(&app, &token, &RegistryGcRequest::default()).await;
    let answer = answer.unwrap();
    assert_eq!(answer.grace_seconds, 3600);
    assert!(
        answer.manifests.is_empty() && answer.blobs.is_empty() && answer.files.is_empty(),
        "inside the grace period nothing of the registry goes: {answer:#?}"
    );
    assert_eq!(answer.images.len(), 1);
    assert!(!root(&data, &v1).exists());
    assert!(
        root(&data, &v2).is_dir(),
        "the running revision's root stays"
    );

    let (_, answer) = gc(
        &app,
        &token,
        &RegistryGcRequest {
            dry_run: false,
            grace_seconds: Some(0),
        },
    )
    .await;
    let answer = answer.unwrap();
    let gone: Vec<&str> = answer.manifests.iter().map(|m| m.digest.as_str()).collect();
    assert_eq!(gone, [digest_of(&junk)]);
    assert!(
        !answer.files.is_empty(),
        "junk's own layers go: {answer:#?}"
    );
    assert!(!pullable(&server, &junk).await);
    for image in [&v1, &v2, &junk2] {
        assert!(pullable(&server, image).await, "{image} must stay");
    }

    // Revision 1 is still there to roll back to: its image is pulled and
    // unpacked again.
    deployer
        .rollback("staging", "web", Some(1), &Quiet)
        .await
        .unwrap();
    assert!(root(&data, &v1).is_dir());
    server.shutdown().await;
}
