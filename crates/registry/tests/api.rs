//! The Distribution API through `router(…).oneshot(…)`: every endpoint, and
//! every bad input a client (or an attacker) can send.

mod common;

use axum::body::{Body, Bytes};
use axum::http::StatusCode;
use common::fixture::*;
use serde_json::json;

#[tokio::test]
async fn the_base_endpoint_announces_the_distribution_api() {
    let f = Fixture::new().await;
    for uri in ["/v2/", "/v2"] {
        let r = f.get(uri).await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.header("docker-distribution-api-version"), "registry/2.0");
    }
    // Every answer carries the header, errors included.
    let r = f.get("/v2/a/blobs/sha256:00").await;
    assert_eq!(r.header("docker-distribution-api-version"), "registry/2.0");
}

#[tokio::test]
async fn a_monolithic_upload_is_served_by_head_and_get_from_the_shared_store() {
    let f = Fixture::new().await;
    let d = f.push_blob("test/tiny", b"hello blob").await;
    assert!(f.artifacts.blob_exists(&d));

    let r = f
        .send(
            "HEAD",
            &format!("/v2/test/tiny/blobs/{d}"),
            &[],
            Body::empty(),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header("content-length"), "10");
    assert_eq!(r.header("docker-content-digest"), d);
    assert_eq!(r.header("content-type"), "application/octet-stream");
    assert!(r.body.is_empty());

    let r = f.get(&format!("/v2/test/tiny/blobs/{d}")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body, b"hello blob");

    let r = f
        .send(
            "GET",
            &format!("/v2/test/tiny/blobs/{d}"),
            &[("range", "bytes=6-9")],
            Body::empty(),
        )
        .await;
    assert_eq!(r.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(r.body, b"blob");
    assert_eq!(r.header("content-range"), "bytes 6-9/10");

    let r = f
        .send(
            "GET",
            &format!("/v2/test/tiny/blobs/{d}"),
            &[("range", "bytes=10-")],
            Body::empty(),
        )
        .await;
    assert_eq!(r.status, StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(f.upload_files(), 0);
}

#[tokio::test]
async fn a_blob_is_visible_only_in_repositories_it_is_linked_to() {
    let f = Fixture::new().await;
    let d = f.push_blob("a", b"private").await;
    let r = f.get(&format!("/v2/b/blobs/{d}")).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.code(), "BLOB_UNKNOWN");
    // Bytes in the artifact store that no repository linked are not served.
    let (art, _) = f.artifacts.put_blob(&b"artifact"[..]).unwrap();
    let r = f.get(&format!("/v2/a/blobs/{art}")).await;
    assert_eq!(r.code(), "BLOB_UNKNOWN");
}

#[tokio::test]
async fn a_chunked_upload_appends_patches_and_a_final_chunk() {
    let f = Fixture::new().await;
    let location = f.start_upload("test/tiny").await;
    assert!(location.starts_with("/v2/test/tiny/blobs/uploads/"));

    let r = f
        .send("PATCH", &location, &[("content-range", "0-4")], "hello")
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text());
    assert_eq!(r.header("range"), "0-4");
    // Without Content-Range a chunk is appended too (docker sends none).
    let r = f.send("PATCH", &location, &[], ", chunked").await;
    assert_eq!(r.header("range"), "0-13");
    let next = r.header("location").to_string();

    let whole = b"hello, chunked world";
    let d = digest(whole);
    let r = f
        .send("PUT", &format!("{next}?digest={d}"), &[], " world")
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    assert_eq!(r.header("docker-content-digest"), d);
    assert_eq!(r.header("location"), format!("/v2/test/tiny/blobs/{d}"));
    assert_eq!(f.get(&format!("/v2/test/tiny/blobs/{d}")).await.body, whole);
    // The upload is over: its file is gone and its id unknown.
    assert_eq!(f.upload_files(), 0);
    assert_eq!(f.get(&location).await.code(), "BLOB_UPLOAD_UNKNOWN");
}

#[tokio::test]
async fn an_interrupted_chunked_upload_resumes_from_the_status_range() {
    let f = Fixture::new().await;
    let location = f.start_upload("test/tiny").await;
    let whole: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();

    // The connection breaks after 2.5 MB: what arrived is kept.
    let sent = 2_500_000;
    let chunks: Vec<Result<Bytes, std::io::Error>> = vec![
        Ok(Bytes::copy_from_slice(&whole[..1_000_000])),
        Ok(Bytes::copy_from_slice(&whole[1_000_000..sent])),
        Err(std::io::Error::other("connection reset")),
    ];
    let body = Body::from_stream(futures_util::stream::iter(chunks));
    let r = f.send("PATCH", &location, &[], body).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.code(), "BLOB_UPLOAD_INVALID");

    let r = f.get(&location).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_eq!(r.header("range"), format!("0-{}", sent - 1));

    // A chunk that doesn't continue where the upload stands is refused
    // with the true range, and changes nothing.
    let r = f
        .send(
            "PATCH",
            &location,
            &[("content-range", "0-9")],
            vec![0u8; 10],
        )
        .await;
    assert_eq!(r.status, StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(r.header("range"), format!("0-{}", sent - 1));

    let range = format!("{sent}-{}", whole.len() - 1);
    let r = f
        .send(
            "PATCH",
            &location,
            &[("content-range", &range)],
            whole[sent..].to_vec(),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text());
    let d = digest(&whole);
    let r = f
        .send("PUT", &format!("{location}?digest={d}"), &[], Body::empty())
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    assert_eq!(f.get(&format!("/v2/test/tiny/blobs/{d}")).await.body, whole);
}

#[tokio::test]
async fn an_upload_survives_a_restart_and_is_rehashed_from_its_file() {
    let mut f = Fixture::new().await;
    let location = f.start_upload("r").await;
    f.send("PATCH", &location, &[], "first half, ").await;
    f.reopen().await;
    let r = f.get(&location).await;
    assert_eq!(r.header("range"), "0-11");
    f.send(
        "PATCH",
        &location,
        &[("content-range", "12-22")],
        "second half",
    )
    .await;
    let d = digest(b"first half, second half");
    let r = f
        .send("PUT", &format!("{location}?digest={d}"), &[], Body::empty())
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
}

#[tokio::test]
async fn abandoned_uploads_are_removed_when_the_registry_opens() {
    let mut f = Fixture::new().await;
    let old = f.start_upload("r").await;
    let fresh = f.start_upload("r").await;
    let old_file = f.uploads_dir().join(old.rsplit('/').next().unwrap());
    let two_days = std::time::Duration::from_secs(2 * 24 * 3600);
    std::fs::File::options()
        .write(true)
        .open(&old_file)
        .unwrap()
        .set_modified(gantry_clock::now() - two_days)
        .unwrap();
    // A stray file no upload owns goes too.
    std::fs::write(f.uploads_dir().join("stray"), b"x").unwrap();
    f.reopen().await;
    assert_eq!(f.get(&old).await.code(), "BLOB_UPLOAD_UNKNOWN");
    assert_eq!(f.get(&fresh).await.status, StatusCode::NO_CONTENT);
    assert_eq!(f.upload_files(), 1);
}

#[tokio::test]
async fn a_digest_mismatch_stores_nothing() {
    let f = Fixture::new().await;
    let claimed = digest(b"what the client meant");
    let actual = digest(b"what the client sent");

    // Chunked.
    let location = f.start_upload("r").await;
    f.send("PATCH", &location, &[], "what the client sent")
        .await;
    let r = f
        .send(
            "PUT",
            &format!("{location}?digest={claimed}"),
            &[],
            Body::empty(),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.code(), "DIGEST_INVALID");
    assert_eq!(r.json()["errors"][0]["detail"]["actual"], actual);

    // Monolithic.
    let r = f
        .send(
            "POST",
            &format!("/v2/r/blobs/uploads/?digest={claimed}"),
            &[],
            "what the client sent",
        )
        .await;
    assert_eq!(r.code(), "DIGEST_INVALID");

    for d in [&claimed, &actual] {
        assert!(!f.artifacts.blob_exists(d));
        let r = f
            .send("HEAD", &format!("/v2/r/blobs/{d}"), &[], Body::empty())
            .await;
        assert_eq!(r.status, StatusCode::NOT_FOUND);
    }
    assert_eq!(f.get(&location).await.code(), "BLOB_UPLOAD_UNKNOWN");
    assert_eq!(f.upload_files(), 0);
}

#[tokio::test]
async fn uploads_are_bound_to_their_repository_and_can_be_cancelled() {
    let f = Fixture::new().await;
    let location = f.start_upload("a").await;
    let id = location.rsplit('/').next().unwrap();
    let r = f.get(&format!("/v2/b/blobs/uploads/{id}")).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.code(), "BLOB_UPLOAD_UNKNOWN");
    for bad in ["not-a-uuid", "..%2F..%2Fgantry.db", "%2e%2e"] {
        let r = f.get(&format!("/v2/a/blobs/uploads/{bad}")).await;
        assert_eq!(r.code(), "BLOB_UPLOAD_UNKNOWN", "{bad}");
    }
    let r = f
        .send(
            "PUT",
            &format!("{location}?digest=sha256:x"),
            &[],
            Body::empty(),
        )
        .await;
    assert_eq!(r.code(), "DIGEST_INVALID");
    let r = f.send("PUT", &location, &[], Body::empty()).await;
    assert_eq!(r.code(), "DIGEST_INVALID");

    let r = f.send("DELETE", &location, &[], Body::empty()).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_eq!(f.get(&location).await.code(), "BLOB_UPLOAD_UNKNOWN");
    assert_eq!(f.upload_files(), 0);
}

#[tokio::test]
async fn a_cross_repository_mount_links_without_uploading() {
    let f = Fixture::new().await;
    let d = f.push_blob("a/src", b"shared layer").await;
    let r = f
        .send(
            "POST",
            &format!("/v2/b/dst/blobs/uploads/?mount={d}&from=a/src"),
            &[],
            Body::empty(),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert_eq!(r.header("docker-content-digest"), d);
    assert_eq!(r.header("location"), format!("/v2/b/dst/blobs/{d}"));
    assert_eq!(
        f.get(&format!("/v2/b/dst/blobs/{d}")).await.body,
        b"shared layer"
    );
    assert_eq!(f.upload_files(), 0);

    // A blob the source doesn't hold: an ordinary upload instead.
    let missing = digest(b"nowhere");
    let r = f
        .send(
            "POST",
            &format!("/v2/b/dst/blobs/uploads/?mount={missing}&from=a/src"),
            &[],
            Body::empty(),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    assert!(r.header("location").starts_with("/v2/b/dst/blobs/uploads/"));
    // The source must hold the blob: naming a repository that doesn't is
    // no way to reach it.
    let r = f
        .send(
            "POST",
            &format!("/v2/c/blobs/uploads/?mount={d}&from=other"),
            &[],
            Body::empty(),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    // Without `from`, any repository holding it will do (OCI 1.1).
    let r = f
        .send(
            "POST",
            &format!("/v2/c/blobs/uploads/?mount={d}"),
            &[],
            Body::empty(),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
}

#[tokio::test]
async fn deleting_a_blob_unlinks_it_but_keeps_the_shared_bytes() {
    let f = Fixture::new().await;
    let d = f.push_blob("a", b"bytes").await;
    f.send(
        "POST",
        &format!("/v2/b/blobs/uploads/?mount={d}&from=a"),
        &[],
        Body::empty(),
    )
    .await;
    let r = f
        .send("DELETE", &format!("/v2/a/blobs/{d}"), &[], Body::empty())
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    assert_eq!(
        f.get(&format!("/v2/a/blobs/{d}")).await.code(),
        "BLOB_UNKNOWN"
    );
    assert_eq!(f.get(&format!("/v2/b/blobs/{d}")).await.body, b"bytes");
    assert!(f.artifacts.blob_exists(&d));
    let r = f
        .send("DELETE", &format!("/v2/a/blobs/{d}"), &[], Body::empty())
        .await;
    assert_eq!(r.code(), "BLOB_UNKNOWN");
}

#[tokio::test]
async fn a_manifest_is_stored_byte_exact_and_served_by_tag_and_digest() {
    let f = Fixture::new().await;
    let (manifest, d) = f.push_image("test/tiny", "1", b"layer one").await;
    for reference in ["1", d.as_str()] {
        let r = f.get(&format!("/v2/test/tiny/manifests/{reference}")).await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.body, manifest);
        assert_eq!(r.header("content-type"), OCI_MANIFEST);
        assert_eq!(r.header("docker-content-digest"), d);
        let r = f
            .send(
                "HEAD",
                &format!("/v2/test/tiny/manifests/{reference}"),
                &[],
                Body::empty(),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.header("content-length"), manifest.len().to_string());
        assert!(r.body.is_empty());
    }
    // The same bytes by digest: accepted again, same digest.
    let r = f
        .put_manifest("test/tiny", &d, OCI_MANIFEST, &manifest)
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert_eq!(r.header("location"), format!("/v2/test/tiny/manifests/{d}"));

    let r = f.get("/v2/test/tiny/manifests/2").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.code(), "MANIFEST_UNKNOWN");
    let r = f.get("/v2/nobody/manifests/1").await;
    assert_eq!(r.code(), "NAME_UNKNOWN");
}

#[tokio::test]
async fn the_media_type_comes_from_the_content_type_or_the_json() {
    let f = Fixture::new().await;
    let config = f.push_blob("r", b"{}").await;
    let layer = f.push_blob("r", b"l").await;
    // A Docker manifest pushed as application/json: the JSON says what it is.
    let m = image_manifest(DOCKER_MANIFEST, &config, &[&layer]);
    let r = f.put_manifest("r", "docker", "application/json", &m).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    assert_eq!(
        f.get("/v2/r/manifests/docker").await.header("content-type"),
        DOCKER_MANIFEST
    );
    // A header that contradicts the JSON is refused.
    let r = f.put_manifest("r", "x", OCI_MANIFEST, &m).await;
    assert_eq!(r.code(), "MANIFEST_INVALID");
    // So is a media type the registry doesn't serve.
    let r = f
        .put_manifest(
            "r",
            "x",
            "application/vnd.docker.distribution.manifest.v1+prettyjws",
            &m,
        )
        .await;
    assert_eq!(r.code(), "MANIFEST_INVALID");
}

#[tokio::test]
async fn a_manifest_referencing_a_missing_blob_is_rejected_and_nothing_is_stored() {
    let f = Fixture::new().await;
    let config = f.push_blob("r", b"{}").await;
    let missing = digest(b"never pushed");
    let m = image_manifest(OCI_MANIFEST, &config, &[&missing]);
    let r = f.put_manifest("r", "1", OCI_MANIFEST, &m).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.code(), "MANIFEST_BLOB_UNKNOWN");
    assert_eq!(r.json()["errors"][0]["detail"]["digest"], missing);
    assert_eq!(f.get("/v2/r/manifests/1").await.code(), "MANIFEST_UNKNOWN");
    let r = f.get(&format!("/v2/r/manifests/{}", digest(&m))).await;
    assert_eq!(r.code(), "MANIFEST_UNKNOWN");
    assert_eq!(f.get("/v2/r/tags/list").await.json()["tags"], json!([]));

    // A blob pushed to another repository only is just as missing...
    let elsewhere = f.push_blob("other", b"elsewhere").await;
    let other = f.push_blob("other2", b"elsewhere 2").await;
    let _ = other;
    // ...unless it is in the shared store: then the manifest links it.
    let m = image_manifest(OCI_MANIFEST, &config, &[&elsewhere]);
    let r = f.put_manifest("r", "1", OCI_MANIFEST, &m).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    assert_eq!(
        f.get(&format!("/v2/r/blobs/{elsewhere}")).await.body,
        b"elsewhere"
    );
}

#[tokio::test]
async fn a_manifest_may_reference_blobs_gantry_stored_as_artifacts() {
    let f = Fixture::new().await;
    let (config, _) = f.artifacts.put_blob(&b"{}"[..]).unwrap();
    let (layer, _) = f.artifacts.put_blob(&b"built by a pipeline"[..]).unwrap();
    let m = image_manifest(OCI_MANIFEST, &config, &[&layer]);
    let r = f.put_manifest("app", "1", OCI_MANIFEST, &m).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    let r = f
        .send(
            "HEAD",
            &format!("/v2/app/blobs/{layer}"),
            &[],
            Body::empty(),
        )
        .await;
    assert_eq!(r.header("content-length"), "19");
}

#[tokio::test]
async fn an_index_needs_its_manifests_in_the_repository() {
    let f = Fixture::new().await;
    let (_, child) = f.push_image("multi", "amd64", b"amd64 layer").await;
    let missing = digest(b"arm64 manifest");
    let r = f
        .put_manifest(
            "multi",
            "1",
            OCI_INDEX,
            &index_manifest(&[&child, &missing]),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.code(), "MANIFEST_BLOB_UNKNOWN");
    assert_eq!(r.json()["errors"][0]["detail"]["digest"], missing);

    let index = index_manifest(&[&child]);
    // No Content-Type: the JSON's mediaType decides.
    let r = f
        .send("PUT", "/v2/multi/manifests/1", &[], index.clone())
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    let r = f.get("/v2/multi/manifests/1").await;
    assert_eq!(r.header("content-type"), OCI_INDEX);
    assert_eq!(r.body, index);
}

#[tokio::test]
async fn a_put_by_a_wrong_digest_is_refused() {
    let f = Fixture::new().await;
    let config = f.push_blob("r", b"{}").await;
    let m = image_manifest(OCI_MANIFEST, &config, &[]);
    let wrong = digest(b"something else");
    let r = f.put_manifest("r", &wrong, OCI_MANIFEST, &m).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.code(), "DIGEST_INVALID");
    assert_eq!(
        f.get(&format!("/v2/r/manifests/{wrong}")).await.code(),
        "MANIFEST_UNKNOWN"
    );
    let right = digest(&m);
    assert_eq!(
        f.get(&format!("/v2/r/manifests/{right}")).await.code(),
        "MANIFEST_UNKNOWN"
    );
    let r = f.put_manifest("r", &right, OCI_MANIFEST, &m).await;
    assert_eq!(r.status, StatusCode::CREATED);
}

#[tokio::test]
async fn invalid_and_oversized_manifests_are_refused() {
    let f = Fixture::new().await;
    let r = f.put_manifest("r", "1", OCI_MANIFEST, b"{not json").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.code(), "MANIFEST_INVALID");
    let r = f
        .put_manifest(
            "r",
            "1",
            OCI_MANIFEST,
            br#"{"schemaVersion":2,"layers":[]}"#,
        )
        .await;
    assert_eq!(r.code(), "MANIFEST_INVALID");

    // Over 4 MiB, whether or not the client announced the length.
    let mut big = br#"{"schemaVersion":2,"annotations":{"x":""#.to_vec();
    big.extend(std::iter::repeat_n(b'a', 4 * 1024 * 1024));
    big.extend(br#""}}"#);
    let r = f.put_manifest("r", "1", OCI_MANIFEST, &big).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(r.code(), "MANIFEST_INVALID");
    let len = big.len().to_string();
    let r = f
        .send(
            "PUT",
            "/v2/r/manifests/1",
            &[("content-type", OCI_MANIFEST), ("content-length", &len)],
            big,
        )
        .await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(f.get("/v2/r/manifests/1").await.code(), "NAME_UNKNOWN");
}

#[tokio::test]
async fn names_that_could_traverse_paths_are_rejected() {
    let f = Fixture::new().await;
    let d = digest(b"x");
    for uri in [
        format!("/v2/../etc/blobs/{d}"),
        format!("/v2/a/../../etc/blobs/{d}"),
        "/v2/%2e%2e/x/manifests/latest".to_string(),
        "/v2/a/%2E%2E/manifests/latest".to_string(),
        "/v2/a%2F..%2Fb/tags/list".to_string(),
        "/v2//etc/passwd/manifests/latest".to_string(),
        "/v2/Upper/manifests/latest".to_string(),
        "/v2/a/./b/tags/list".to_string(),
        format!("/v2/{}/tags/list", "a".repeat(256)),
        "/v2/a%00b/blobs/uploads/".to_string(),
    ] {
        for method in ["GET", "PUT", "POST", "DELETE"] {
            let r = f.send(method, &uri, &[], Body::empty()).await;
            if r.status == StatusCode::METHOD_NOT_ALLOWED {
                continue;
            }
            assert_eq!(r.status, StatusCode::BAD_REQUEST, "{method} {uri}");
            assert_eq!(r.code(), "NAME_INVALID", "{method} {uri}");
        }
    }
    for uri in [
        "/v2/a/blobs/sha256:..%2F..%2Fgantry.db",
        "/v2/a/blobs/..",
        "/v2/a/manifests/sha256:..",
        "/v2/a/blobs/sha512:00",
    ] {
        let r = f.get(uri).await;
        assert_eq!(r.code(), "DIGEST_INVALID", "{uri}");
    }
    // `..` is no tag: it names nothing (and the repository is unknown).
    let r = f.get("/v2/a/manifests/..").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.code(), "NAME_UNKNOWN");
    let r = f
        .send(
            "POST",
            "/v2/a/blobs/uploads/?mount=../x&from=..",
            &[],
            Body::empty(),
        )
        .await;
    assert_eq!(r.code(), "DIGEST_INVALID");
    let r = f
        .send(
            "POST",
            &format!("/v2/a/blobs/uploads/?mount={d}&from=../b"),
            &[],
            Body::empty(),
        )
        .await;
    assert_eq!(r.code(), "NAME_INVALID");
    // Nothing was created anywhere.
    assert_eq!(f.upload_files(), 0);
    assert_eq!(
        f.get("/v2/_catalog").await.json()["repositories"],
        json!([])
    );
}

#[tokio::test]
async fn unknown_endpoints_and_methods_get_oci_errors() {
    let f = Fixture::new().await;
    let r = f.get("/v2/a/elsewhere").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.code(), "UNSUPPORTED");
    // A 405 says what the endpoint supports, as HTTP requires.
    for (method, uri, allow) in [
        ("PATCH", "/v2/a/manifests/latest", "GET, HEAD, PUT, DELETE"),
        ("POST", "/v2/a/tags/list", "GET"),
        ("PUT", "/v2/a/blobs/uploads/", "POST"),
        ("PUT", "/v2/_catalog", "GET"),
        ("DELETE", "/v2/a/referrers/sha256:00", "GET"),
        ("DELETE", "/v2/", "GET, HEAD"),
        ("PUT", "/v2/token", "GET, POST"),
    ] {
        let r = f.send(method, uri, &[], Body::empty()).await;
        assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED, "{method} {uri}");
        assert_eq!(r.code(), "UNSUPPORTED", "{method} {uri}");
        assert_eq!(r.header("allow"), allow, "{method} {uri}");
    }
}

#[tokio::test]
async fn a_reference_that_is_no_tag_names_an_unknown_manifest() {
    let f = Fixture::new().await;
    f.push_image("r", "1", b"l").await;
    for method in ["GET", "HEAD", "DELETE"] {
        for reference in [".INVALID_MANIFEST_NAME", "-x", &"a".repeat(129)] {
            let r = f
                .send(
                    method,
                    &format!("/v2/r/manifests/{reference}"),
                    &[],
                    Body::empty(),
                )
                .await;
            assert_eq!(r.status, StatusCode::NOT_FOUND, "{method} {reference}");
            if method != "HEAD" {
                assert_eq!(r.code(), "MANIFEST_UNKNOWN", "{method} {reference}");
            }
        }
    }
    // A malformed digest is still the client's mistake, and pushing under
    // an invalid tag is refused.
    assert_eq!(
        f.get("/v2/r/manifests/sha256:xyz").await.code(),
        "DIGEST_INVALID"
    );
    let m = f.get("/v2/r/manifests/1").await.body;
    let r = f.put_manifest("r", ".bad", OCI_MANIFEST, &m).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.code(), "MANIFEST_INVALID");
}

#[tokio::test]
async fn tags_are_listed_in_order_with_pagination() {
    let f = Fixture::new().await;
    let (_, d) = f.push_image("r", "b", b"l").await;
    let m = f.get(&format!("/v2/r/manifests/{d}")).await.body;
    for tag in ["a", "c", "latest"] {
        f.put_manifest("r", tag, OCI_MANIFEST, &m).await;
    }
    let r = f.get("/v2/r/tags/list").await;
    assert_eq!(
        r.json(),
        json!({"name": "r", "tags": ["a", "b", "c", "latest"]})
    );
    assert_eq!(r.header("link"), "");
    let r = f.get("/v2/r/tags/list?n=2").await;
    assert_eq!(r.json()["tags"], json!(["a", "b"]));
    assert_eq!(
        r.header("link"),
        "</v2/r/tags/list?n=2&last=b>; rel=\"next\""
    );
    // The last page, exactly full, links to nothing.
    let r = f.get("/v2/r/tags/list?n=2&last=b").await;
    assert_eq!(r.json()["tags"], json!(["c", "latest"]));
    assert_eq!(r.header("link"), "");
    let r = f.get("/v2/r/tags/list?n=4").await;
    assert_eq!(r.json()["tags"].as_array().unwrap().len(), 4);
    assert_eq!(r.header("link"), "");
    let r = f.get("/v2/r/tags/list?n=2&last=latest").await;
    assert_eq!(r.json()["tags"], json!([]));
    assert_eq!(r.header("link"), "");
    // n=0: an empty list and no link.
    let r = f.get("/v2/r/tags/list?n=0").await;
    assert_eq!(r.json()["tags"], json!([]));
    assert_eq!(r.header("link"), "");
    assert_eq!(
        f.get("/v2/r/tags/list?n=x").await.status,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(f.get("/v2/none/tags/list").await.code(), "NAME_UNKNOWN");
}

#[tokio::test]
async fn the_catalog_lists_repositories() {
    let f = Fixture::new().await;
    f.push_blob("b/x", b"1").await;
    f.push_blob("a", b"1").await;
    f.push_blob("c", b"1").await;
    let r = f.get("/v2/_catalog").await;
    assert_eq!(r.json(), json!({"repositories": ["a", "b/x", "c"]}));
    let r = f.get("/v2/_catalog?n=1&last=a").await;
    assert_eq!(r.json(), json!({"repositories": ["b/x"]}));
    assert_eq!(
        r.header("link"),
        "</v2/_catalog?n=1&last=b/x>; rel=\"next\""
    );
    let r = f.get("/v2/_catalog?n=1&last=b/x").await;
    assert_eq!(r.json(), json!({"repositories": ["c"]}));
    assert_eq!(r.header("link"), "");
}

#[tokio::test]
async fn deleting_by_tag_removes_the_tag_and_by_digest_the_manifest_and_its_tags() {
    let f = Fixture::new().await;
    let (m, d) = f.push_image("r", "1", b"l").await;
    f.put_manifest("r", "2", OCI_MANIFEST, &m).await;
    let r = f
        .send("DELETE", "/v2/r/manifests/1", &[], Body::empty())
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    assert_eq!(f.get("/v2/r/manifests/1").await.code(), "MANIFEST_UNKNOWN");
    assert_eq!(f.get("/v2/r/manifests/2").await.status, StatusCode::OK);
    let r = f
        .send(
            "DELETE",
            &format!("/v2/r/manifests/{d}"),
            &[],
            Body::empty(),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    assert_eq!(f.get("/v2/r/manifests/2").await.code(), "MANIFEST_UNKNOWN");
    assert_eq!(f.get("/v2/r/tags/list").await.json()["tags"], json!([]));
    let r = f
        .send(
            "DELETE",
            &format!("/v2/r/manifests/{d}"),
            &[],
            Body::empty(),
        )
        .await;
    assert_eq!(r.code(), "MANIFEST_UNKNOWN");
}

#[tokio::test]
async fn a_tag_moves_to_the_latest_manifest_pushed_under_it() {
    let f = Fixture::new().await;
    let (_, first) = f.push_image("r", "latest", b"one").await;
    let (_, second) = f.push_image("r", "latest", b"two").await;
    assert_ne!(first, second);
    let r = f.get("/v2/r/manifests/latest").await;
    assert_eq!(r.header("docker-content-digest"), second);
    // The older manifest stays reachable by digest.
    assert_eq!(
        f.get(&format!("/v2/r/manifests/{first}")).await.status,
        StatusCode::OK
    );
}
