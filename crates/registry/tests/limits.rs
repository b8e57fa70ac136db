//! Resource caps: blob and manifest sizes, byte quotas, open uploads, and
//! the sweeper that removes abandoned uploads while the registry runs.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::StatusCode;
use common::fixture::*;
use gantry_registry::RegistryLimits;

const MIB: u64 = 1024 * 1024;

/// A request body of `total` zero bytes in 64 KiB chunks, produced only as
/// they are read; `pulled` counts the bytes the registry asked for.
fn lazy_body(total: u64, pulled: Arc<AtomicU64>) -> Body {
    const CHUNK: u64 = 64 * 1024;
    let zeros = Bytes::from(vec![0u8; CHUNK as usize]);
    let stream = futures_util::stream::unfold(0u64, move |sent| {
        let zeros = zeros.clone();
        let pulled = pulled.clone();
        async move {
            if sent >= total {
                return None;
            }
            let n = CHUNK.min(total - sent);
            pulled.fetch_add(n, Ordering::SeqCst);
            Some((Ok::<_, std::io::Error>(zeros.slice(..n as usize)), sent + n))
        }
    });
    Body::from_stream(stream)
}

#[tokio::test]
async fn a_blob_over_the_size_limit_is_refused_while_streaming_and_discarded() {
    let f = Fixture::with_limits(RegistryLimits {
        max_blob_size: 4 * MIB,
        ..RegistryLimits::default()
    })
    .await;
    let two_gib = 2 * 1024 * MIB;

    // A chunked upload of 2 GiB, length not announced.
    let location = f.start_upload("big/blob").await;
    let pulled = Arc::new(AtomicU64::new(0));
    let r = f
        .send("PATCH", &location, &[], lazy_body(two_gib, pulled.clone()))
        .await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", r.text());
    assert_eq!(r.code(), "SIZE_INVALID");
    assert!(r.text().contains("limit of 4194304 bytes"), "{}", r.text());
    let read = pulled.load(Ordering::SeqCst);
    assert!(read <= 4 * MIB + 64 * 1024, "read {read} bytes");
    // The upload is gone, file and session.
    assert_eq!(f.get(&location).await.code(), "BLOB_UPLOAD_UNKNOWN");
    assert_eq!(f.upload_files(), 0);

    // Announced too large: refused before a byte is read.
    let location = f.start_upload("big/blob").await;
    let pulled = Arc::new(AtomicU64::new(0));
    let len = two_gib.to_string();
    let r = f
        .send(
            "PATCH",
            &location,
            &[("content-length", &len)],
            lazy_body(two_gib, pulled.clone()),
        )
        .await;
    assert_eq!(r.code(), "SIZE_INVALID");
    assert_eq!(pulled.load(Ordering::SeqCst), 0);
    assert_eq!(f.upload_files(), 0);

    // Several chunks that add up to too much.
    let location = f.start_upload("big/blob").await;
    let three = vec![0u8; 3 * MIB as usize];
    let r = f.send("PATCH", &location, &[], three.clone()).await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    let r = f.send("PATCH", &location, &[], three.clone()).await;
    assert_eq!(r.code(), "SIZE_INVALID");
    assert_eq!(f.upload_files(), 0);

    // A monolithic upload, and the final chunk of a PUT.
    let d = digest(&[0u8; 5 * MIB as usize]);
    let r = f
        .send(
            "POST",
            &format!("/v2/big/blob/blobs/uploads/?digest={d}"),
            &[],
            vec![0u8; 5 * MIB as usize],
        )
        .await;
    assert_eq!(r.code(), "SIZE_INVALID");
    let location = f.start_upload("big/blob").await;
    f.send("PATCH", &location, &[], three).await;
    let r = f
        .send(
            "PUT",
            &format!("{location}?digest={d}"),
            &[],
            vec![0u8; 2 * MIB as usize],
        )
        .await;
    assert_eq!(r.code(), "SIZE_INVALID");
    assert!(!f.artifacts.blob_exists(&d));
    assert_eq!(f.upload_files(), 0);

    // At the limit exactly is fine.
    f.push_blob("big/blob", &vec![1u8; 4 * MIB as usize]).await;
}

#[tokio::test]
async fn manifests_over_the_configured_size_are_refused() {
    let f = Fixture::with_limits(RegistryLimits {
        max_manifest_size: 300,
        ..RegistryLimits::default()
    })
    .await;
    let config = f.push_blob("r", b"{}").await;
    let small = image_manifest(OCI_MANIFEST, &config, &[]);
    assert!(small.len() <= 300);
    let r = f.put_manifest("r", "small", OCI_MANIFEST, &small).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    let big = image_manifest(OCI_MANIFEST, &config, &[&config, &config]);
    assert!(big.len() > 300);
    let r = f.put_manifest("r", "big", OCI_MANIFEST, &big).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(r.code(), "MANIFEST_INVALID");
    assert!(r.text().contains("limit of 300 bytes"), "{}", r.text());
}

#[tokio::test]
async fn a_repository_quota_refuses_new_bytes_beyond_it() {
    let f = Fixture::with_limits(RegistryLimits {
        repository_quota: Some(100),
        ..RegistryLimits::default()
    })
    .await;
    let sixty = vec![b'a'; 60];
    let first = f.push_blob("team/app", &sixty).await;
    let other = vec![b'b'; 60];
    let d = digest(&other);
    let r = f
        .send(
            "POST",
            &format!("/v2/team/app/blobs/uploads/?digest={d}"),
            &[],
            other.clone(),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(r.code(), "DENIED");
    assert!(
        r.text()
            .contains("quota exceeded: repository team/app holds 60 of 100 bytes"),
        "{}",
        r.text()
    );
    assert!(!f.artifacts.blob_exists(&d));
    assert_eq!(f.upload_files(), 0);
    // A chunked upload is refused when it completes, and discarded.
    let location = f.start_upload("team/app").await;
    f.send("PATCH", &location, &[], other.clone()).await;
    let r = f
        .send("PUT", &format!("{location}?digest={d}"), &[], Body::empty())
        .await;
    assert_eq!(r.code(), "DENIED");
    assert_eq!(f.upload_files(), 0);
    assert!(!f.artifacts.blob_exists(&d));

    // Bytes the repository already holds cost nothing.
    assert_eq!(f.push_blob("team/app", &sixty).await, first);
    // Another repository has its own quota, and mounting counts in it.
    f.push_blob("other", &other).await;
    let r = f
        .send(
            "POST",
            &format!("/v2/team/app/blobs/uploads/?mount={d}&from=other"),
            &[],
            Body::empty(),
        )
        .await;
    assert_eq!(r.code(), "DENIED");
    let config = f.push_blob("other", b"{}").await;
    let manifest = image_manifest(OCI_MANIFEST, &config, &[&d]);
    f.push_blob("team/app", b"{}").await;
    let r = f
        .put_manifest("team/app", "v1", OCI_MANIFEST, &manifest)
        .await;
    assert_eq!(r.code(), "DENIED", "{}", r.text());
    assert_eq!(f.get("/v2/team/app/tags/list").await.status, StatusCode::OK);
    assert_eq!(
        f.get("/v2/team/app/manifests/v1").await.code(),
        "MANIFEST_UNKNOWN"
    );

    // A repository over its quota gets no new upload session.
    let f = Fixture::with_limits(RegistryLimits {
        repository_quota: Some(10),
        ..RegistryLimits::default()
    })
    .await;
    f.push_blob("full", b"0123456789").await;
    let r = f
        .send("POST", "/v2/full/blobs/uploads/", &[], Body::empty())
        .await;
    assert_eq!(r.code(), "DENIED");
    assert_eq!(f.upload_files(), 0);
}

#[tokio::test]
async fn the_total_quota_counts_a_shared_blob_once() {
    let f = Fixture::with_limits(RegistryLimits {
        total_quota: Some(100),
        ..RegistryLimits::default()
    })
    .await;
    let sixty = vec![b'a'; 60];
    f.push_blob("a", &sixty).await;
    // The same bytes in another repository take no more room.
    f.push_blob("b", &sixty).await;
    let fifty = vec![b'c'; 50];
    let d = digest(&fifty);
    let r = f
        .send(
            "POST",
            &format!("/v2/b/blobs/uploads/?digest={d}"),
            &[],
            fifty,
        )
        .await;
    assert_eq!(r.code(), "DENIED");
    assert!(
        r.text()
            .contains("quota exceeded: the registry holds 60 of 100 bytes"),
        "{}",
        r.text()
    );
    f.push_blob("b", &[b'd'; 40]).await;
}

#[tokio::test]
async fn open_uploads_are_capped_per_repository_and_in_total() {
    let f = Fixture::with_limits(RegistryLimits {
        max_uploads: 3,
        max_uploads_per_repository: 2,
        ..RegistryLimits::default()
    })
    .await;
    let first = f.start_upload("r").await;
    f.start_upload("r").await;
    let r = f
        .send("POST", "/v2/r/blobs/uploads/", &[], Body::empty())
        .await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(r.code(), "TOOMANYREQUESTS");
    assert!(r.text().contains("repository r allows 2"), "{}", r.text());
    f.start_upload("s").await;
    let r = f
        .send("POST", "/v2/t/blobs/uploads/", &[], Body::empty())
        .await;
    assert_eq!(r.code(), "TOOMANYREQUESTS");
    assert!(r.text().contains("the registry allows 3"), "{}", r.text());
    // A monolithic upload needs a session too.
    let d = digest(b"x");
    let r = f
        .send(
            "POST",
            &format!("/v2/t/blobs/uploads/?digest={d}"),
            &[],
            b"x".to_vec(),
        )
        .await;
    assert_eq!(r.code(), "TOOMANYREQUESTS");
    assert_eq!(f.upload_files(), 3);
    // Finishing or cancelling one makes room.
    f.send("DELETE", &first, &[], Body::empty()).await;
    f.push_blob("t", b"x").await;
    f.start_upload("t").await;
}

#[tokio::test]
async fn abandoned_uploads_are_swept_while_the_registry_runs() {
    let f = Fixture::with_limits(RegistryLimits {
        upload_idle_timeout: Duration::from_millis(400),
        sweep_interval: Duration::from_millis(100),
        ..RegistryLimits::default()
    })
    .await;
    let abandoned = f.start_upload("r").await;
    let active = f.start_upload("r").await;
    // The active upload is written to more often than the idle timeout.
    for i in 0..12u64 {
        let start = i * 5;
        let range = format!("{start}-{}", start + 4);
        let r = f
            .send("PATCH", &active, &[("content-range", &range)], "chunk")
            .await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(f.get(&abandoned).await.code(), "BLOB_UPLOAD_UNKNOWN");
    assert_eq!(f.get(&active).await.status, StatusCode::NO_CONTENT);
    assert_eq!(f.upload_files(), 1);
    // A swept upload no longer counts against the caps.
    let r = f.send("PATCH", &abandoned, &[], "late").await;
    assert_eq!(r.code(), "BLOB_UPLOAD_UNKNOWN");
}

#[tokio::test]
async fn the_sweeper_ends_with_the_registry() {
    let f = Fixture::with_limits(RegistryLimits {
        sweep_interval: Duration::from_millis(20),
        ..RegistryLimits::default()
    })
    .await;
    let metrics = tokio::runtime::Handle::current().metrics();
    let with_registry = metrics.num_alive_tasks();
    assert!(with_registry >= 1);
    drop(f);
    for _ in 0..100 {
        if metrics.num_alive_tasks() < with_registry {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the sweeper outlived its registry");
}
