//! Garbage collection through the public API: what a tag, a kept digest,
//! a referrer, the grace period or the caller's kept bytes hold stays;
//! everything else goes, and a dry run removes nothing.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use axum::body::Body;
use axum::http::StatusCode;
use common::fixture::*;
use gantry_registry::{GcOptions, GcReport};
use serde_json::json;

const HOUR: Duration = Duration::from_secs(3600);

/// Garbage collection with no grace period: anything pushed before the
/// call is old enough to go.
async fn collect(f: &Fixture, options: GcOptions) -> GcReport {
    // now_ms has millisecond resolution: step past the pushes' millisecond.
    tokio::time::sleep(Duration::from_millis(5)).await;
    f.registry.collect_garbage(&options).await.unwrap()
}

fn now() -> GcOptions {
    GcOptions::default()
}

fn digests<T>(items: &[T], f: impl Fn(&T) -> &str) -> BTreeSet<String> {
    items.iter().map(|i| f(i).to_string()).collect()
}

async fn untag(f: &Fixture, repo: &str, tag: &str) {
    let r = f
        .send(
            "DELETE",
            &format!("/v2/{repo}/manifests/{tag}"),
            &[],
            Body::empty(),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
}

#[tokio::test]
async fn a_tagged_image_survives_and_an_untagged_unreferenced_one_goes() {
    let f = Fixture::new().await;
    let (_, kept) = f.push_image("app", "v1", b"kept layer").await;
    let (dropped_bytes, dropped) = f.push_image("app", "tmp", b"dropped layer").await;
    untag(&f, "app", "tmp").await;
    let dropped_layer = digest(b"dropped layer");
    let config = digest(b"{\"architecture\":\"amd64\"}");

    let report = collect(&f, now()).await;
    assert!(!report.dry_run);
    assert_eq!(
        digests(&report.manifests, |m| &m.digest),
        [dropped.clone()].into()
    );
    assert_eq!(report.manifests[0].bytes, dropped_bytes.len() as u64);
    // The config is shared with the kept image: only the layer goes.
    assert_eq!(
        digests(&report.blobs, |b| &b.digest),
        [dropped_layer.clone()].into()
    );
    assert_eq!(
        digests(&report.files, |b| &b.digest),
        [dropped_layer.clone()].into()
    );
    assert_eq!(
        report.bytes_freed(),
        dropped_bytes.len() as u64 + b"dropped layer".len() as u64
    );
    assert!(!f.artifacts.blob_exists(&dropped_layer));
    assert_eq!(
        f.get(&format!("/v2/app/manifests/{dropped}")).await.code(),
        "MANIFEST_UNKNOWN"
    );

    // The tagged image is whole.
    assert_eq!(
        f.get("/v2/app/manifests/v1")
            .await
            .header("docker-content-digest"),
        kept
    );
    for blob in [config, digest(b"kept layer")] {
        let r = f.get(&format!("/v2/app/blobs/{blob}")).await;
        assert_eq!(r.status, StatusCode::OK, "{blob}");
    }
    // Nothing more to collect.
    let again = collect(&f, now()).await;
    assert_eq!(again, GcReport::default());
}

#[tokio::test]
async fn a_digest_the_caller_keeps_survives_with_what_it_references() {
    let f = Fixture::new().await;
    let (_, revision) = f.push_image("app", "v1", b"deployed").await;
    untag(&f, "app", "v1").await;
    let options = GcOptions {
        keep_manifests: [revision.clone()].into(),
        ..now()
    };
    let report = collect(&f, options).await;
    assert!(
        report.manifests.is_empty() && report.blobs.is_empty(),
        "{report:?}"
    );
    assert_eq!(
        f.get(&format!("/v2/app/manifests/{revision}")).await.status,
        StatusCode::OK
    );
    assert!(f.artifacts.blob_exists(&digest(b"deployed")));
}

#[tokio::test]
async fn what_was_pushed_within_the_grace_period_survives() {
    let f = Fixture::new().await;
    // A push in flight: blobs uploaded, manifest not yet pushed.
    let layer = f.push_blob("app", b"uploading").await;
    let (_, untagged) = f.push_image("app", "tmp", b"recent").await;
    untag(&f, "app", "tmp").await;

    let options = GcOptions {
        grace: HOUR,
        ..now()
    };
    let report = collect(&f, options).await;
    assert_eq!(report, GcReport::default());
    assert!(f.artifacts.blob_exists(&layer));
    assert_eq!(
        f.get(&format!("/v2/app/manifests/{untagged}")).await.status,
        StatusCode::OK
    );

    // Past the grace period, both go.
    let report = collect(&f, now()).await;
    assert_eq!(digests(&report.manifests, |m| &m.digest), [untagged].into());
    assert!(report.files.iter().any(|b| b.digest == layer));
    assert!(!f.artifacts.blob_exists(&layer));
}

#[tokio::test]
async fn a_dry_run_removes_nothing_and_reports_what_a_real_run_removes() {
    let f = Fixture::new().await;
    f.push_image("app", "v1", b"kept").await;
    f.push_image("app", "tmp", b"dropped").await;
    untag(&f, "app", "tmp").await;
    f.push_blob("scratch", b"lonely").await;

    let dry = collect(
        &f,
        GcOptions {
            dry_run: true,
            ..now()
        },
    )
    .await;
    assert!(dry.dry_run);
    assert_eq!(dry.manifests.len(), 1);
    assert_eq!(dry.files.len(), 2, "{dry:?}");
    assert_eq!(dry.repositories, vec!["scratch".to_string()]);
    assert!(f.artifacts.blob_exists(&digest(b"dropped")));
    assert!(f.artifacts.blob_exists(&digest(b"lonely")));
    assert_eq!(
        f.get("/v2/_catalog").await.json()["repositories"],
        json!(["app", "scratch"])
    );

    let real = collect(&f, now()).await;
    assert_eq!(
        GcReport {
            dry_run: true,
            ..real.clone()
        },
        dry
    );
    assert!(!f.artifacts.blob_exists(&digest(b"lonely")));
    assert_eq!(
        f.get("/v2/_catalog").await.json()["repositories"],
        json!(["app"])
    );
}

#[tokio::test]
async fn referrers_of_a_live_image_stay_and_those_of_garbage_go() {
    let f = Fixture::new().await;
    let (_, live) = f.push_image("app", "v1", b"live").await;
    let (_, dead) = f.push_image("app", "tmp", b"dead").await;
    untag(&f, "app", "tmp").await;
    let empty = f.push_blob("app", b"{}").await;
    let mut signatures = Vec::new();
    for subject in [&live, &dead] {
        let m = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "artifactType": "application/vnd.example.signature",
            "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": empty, "size": 2},
            "layers": [],
            "subject": {"mediaType": OCI_MANIFEST, "digest": subject, "size": 1},
        }))
        .unwrap();
        let d = digest(&m);
        let r = f.put_manifest("app", &d, OCI_MANIFEST, &m).await;
        assert_eq!(r.status, StatusCode::CREATED);
        signatures.push(d);
    }

    let report = collect(&f, now()).await;
    assert_eq!(
        digests(&report.manifests, |m| &m.digest),
        [dead.clone(), signatures[1].clone()].into()
    );
    let listed = f.get(&format!("/v2/app/referrers/{live}")).await.json();
    assert_eq!(listed["manifests"][0]["digest"], signatures[0].as_str());
    let listed = f.get(&format!("/v2/app/referrers/{dead}")).await.json();
    assert_eq!(listed["manifests"], json!([]));
    // The signatures' config is kept by the live one.
    assert!(f.artifacts.blob_exists(&empty));
}

#[tokio::test]
async fn bytes_the_caller_keeps_stay_and_a_deleted_blob_is_collected_later() {
    let f = Fixture::new().await;
    let shared = f.push_blob("app", b"also a build artifact").await;
    let deleted = f.push_blob("app", b"deleted by a client").await;
    for d in [&shared, &deleted] {
        let r = f
            .send("DELETE", &format!("/v2/app/blobs/{d}"), &[], Body::empty())
            .await;
        assert_eq!(r.status, StatusCode::ACCEPTED);
    }
    // A blob DELETE removes the link only; the bytes wait for collection.
    assert!(f.artifacts.blob_exists(&deleted));

    let options = GcOptions {
        keep_bytes: [shared.clone()].into(),
        grace: HOUR,
        ..now()
    };
    let report = collect(&f, options).await;
    assert_eq!(
        digests(&report.files, |b| &b.digest),
        [deleted.clone()].into()
    );
    assert!(!f.artifacts.blob_exists(&deleted));
    assert!(f.artifacts.blob_exists(&shared));
}

#[tokio::test]
async fn a_blob_linked_again_after_it_was_released_keeps_its_bytes() {
    let f = Fixture::new().await;
    let d = f.push_blob("a", b"comes back").await;
    let r = f
        .send("DELETE", &format!("/v2/a/blobs/{d}"), &[], Body::empty())
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    // Pushed again (into another repository) before the collection.
    f.push_blob("b", b"comes back").await;
    let report = collect(
        &f,
        GcOptions {
            grace: HOUR,
            ..now()
        },
    )
    .await;
    assert!(report.files.is_empty(), "{report:?}");
    assert_eq!(f.get(&format!("/v2/b/blobs/{d}")).await.body, b"comes back");
}
