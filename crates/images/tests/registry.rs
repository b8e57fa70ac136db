//! Builds, pushes and promotions against real `docker-registry` instances,
//! checked with skopeo. Run with GANTRY_TEST_REGISTRY=1.

mod common;

use common::{ImageName, TestRegistry, registry_tests_enabled, sample_context, skopeo_digest};
use gantry_images::manifest::{OCI_INDEX, OCI_MANIFEST};
use gantry_images::{
    ClientOptions, Digest, ImageSpec, PromoteError, RegistryClient, RegistryError, build_image,
    promote,
};

#[tokio::test]
async fn building_twice_gives_the_same_digest_and_pushes_nothing_the_second_time() {
    if !registry_tests_enabled(
        "building_twice_gives_the_same_digest_and_pushes_nothing_the_second_time",
    ) {
        return;
    }
    let registry = TestRegistry::start();
    let client = common::client();
    let context = sample_context("v1");
    let mut spec = ImageSpec::new(context.path());
    spec.cmd = Some(vec!["/app/run".into()]);
    spec.env = vec![("MODE".into(), "test".into())];
    spec.exposed_ports = vec!["8080".into()];
    let target = registry.image("team/app:v1");

    let first = build_image(&spec, &target, &client).await.unwrap();
    assert_eq!(
        (first.uploaded_blobs, first.skipped_blobs),
        (2, 0),
        "layer and config"
    );
    assert!(first.manifest_pushed);
    assert_eq!(first.digest, Digest::of(&first.manifest));
    assert_eq!(skopeo_digest(&target), first.digest);

    let second = build_image(&spec, &target, &client).await.unwrap();
    assert_eq!(second.digest, first.digest);
    assert_eq!(second.manifest, first.manifest);
    assert_eq!((second.uploaded_blobs, second.skipped_blobs), (0, 2));
    assert!(
        !second.manifest_pushed,
        "the tag already names this manifest"
    );

    // The same inputs from a fresh copy of the context, to another tag: same image.
    let copy = sample_context("v1");
    let mut spec_copy = spec.clone();
    spec_copy.context = copy.path().to_path_buf();
    let other_tag = build_image(&spec_copy, &registry.image("team/app:v1-again"), &client)
        .await
        .unwrap();
    assert_eq!(other_tag.digest, first.digest);

    // Another context is another image.
    let changed = sample_context("v2");
    spec_copy.context = changed.path().to_path_buf();
    let v2 = build_image(&spec_copy, &registry.image("team/app:v2"), &client)
        .await
        .unwrap();
    assert_ne!(v2.digest, first.digest);

    let mut tags = client.list_tags(&target).await.unwrap();
    tags.sort();
    assert_eq!(tags, ["v1", "v1-again", "v2"]);
}

#[tokio::test]
async fn promotion_within_a_registry_mounts_blobs_and_keeps_the_digest() {
    if !registry_tests_enabled("promotion_within_a_registry_mounts_blobs_and_keeps_the_digest") {
        return;
    }
    let registry = TestRegistry::start();
    let client = common::client();
    let context = sample_context("promote");
    let src = registry.image("staging/app:build-7");
    let built = build_image(&ImageSpec::new(context.path()), &src, &client)
        .await
        .unwrap();

    let dst = registry.image("prod/app:release");
    let promoted = promote(&client, &src, &dst, Some(built.digest.as_str()))
        .await
        .unwrap();
    assert_eq!(promoted.digest, built.digest);
    assert_eq!(
        (
            promoted.mounted_blobs,
            promoted.copied_blobs,
            promoted.skipped_blobs
        ),
        (2, 0, 0)
    );
    assert_eq!(
        promoted.reference.to_string(),
        format!("{}/prod/app@{}", registry.addr, built.digest)
    );
    assert_eq!(skopeo_digest(&dst), built.digest);

    // Again: everything is there already.
    let again = promote(&client, &src, &dst, None).await.unwrap();
    assert_eq!(
        (again.mounted_blobs, again.copied_blobs, again.skipped_blobs),
        (0, 0, 2)
    );

    // Within one repository a promotion is only a new tag.
    let stable = registry.image("prod/app:stable");
    let retag = promote(&client, &dst, &stable, None).await.unwrap();
    assert_eq!(
        (retag.mounted_blobs, retag.copied_blobs, retag.skipped_blobs),
        (0, 0, 0)
    );
    assert_eq!(skopeo_digest(&stable), built.digest);

    // By digest works as a source too.
    let pinned = src.with_digest(&built.digest);
    let by_digest = promote(&client, &pinned, &registry.image("prod/other:x"), None)
        .await
        .unwrap();
    assert_eq!(by_digest.digest, built.digest);
}

#[tokio::test]
async fn promotion_across_registries_copies_blobs_and_keeps_the_digest() {
    if !registry_tests_enabled("promotion_across_registries_copies_blobs_and_keeps_the_digest") {
        return;
    }
    let staging = TestRegistry::start();
    let production = TestRegistry::start();
    // A small chunk size sends the layer in several PATCH chunks.
    let client = RegistryClient::new(ClientOptions {
        chunk_size: 4096,
        ..ClientOptions::default()
    })
    .unwrap();
    let context = sample_context("across");
    std::fs::write(context.path().join("data.bin"), pseudo_random(300_000)).unwrap();
    let src = staging.image("app:v1");
    let built = build_image(&ImageSpec::new(context.path()), &src, &client)
        .await
        .unwrap();

    let dst = production.image("app:v1");
    let promoted = promote(&client, &src, &dst, Some(built.digest.as_str()))
        .await
        .unwrap();
    assert_eq!(promoted.digest, built.digest);
    assert_eq!(
        (
            promoted.copied_blobs,
            promoted.mounted_blobs,
            promoted.skipped_blobs
        ),
        (2, 0, 0)
    );
    assert_eq!(skopeo_digest(&dst), built.digest);
    // skopeo can read every blob back (it checks their digests as it copies).
    let out = tempfile::tempdir().unwrap();
    let status = std::process::Command::new("skopeo")
        .args([
            "copy",
            "--src-tls-verify=false",
            &format!("docker://{dst}"),
            &format!("dir:{}", out.path().display()),
        ])
        .output()
        .unwrap();
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
}

#[tokio::test]
async fn an_index_is_promoted_with_its_children_and_keeps_its_digest() {
    if !registry_tests_enabled("an_index_is_promoted_with_its_children_and_keeps_its_digest") {
        return;
    }
    let staging = TestRegistry::start();
    let production = TestRegistry::start();
    let client = common::client();
    let amd = sample_context("amd64");
    let arm = sample_context("arm64");
    let a = build_image(
        &ImageSpec::new(amd.path()),
        &staging.image("multi:amd64"),
        &client,
    )
    .await
    .unwrap();
    let b = build_image(
        &ImageSpec::new(arm.path()),
        &staging.image("multi:arm64"),
        &client,
    )
    .await
    .unwrap();
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [
            {"mediaType": OCI_MANIFEST, "digest": a.digest, "size": a.manifest.len(), "platform": {"os": "linux", "architecture": "amd64"}},
            {"mediaType": OCI_MANIFEST, "digest": b.digest, "size": b.manifest.len(), "platform": {"os": "linux", "architecture": "arm64"}}
        ]
    });
    // Pretty-printed on purpose: promotion must keep these exact bytes.
    let bytes = serde_json::to_vec_pretty(&index).unwrap();
    let src = staging.image("multi:v1");
    let index_digest = client
        .put_manifest_raw(&src, &bytes, OCI_INDEX)
        .await
        .unwrap();

    let dst = production.image("multi:v1");
    let promoted = promote(&client, &src, &dst, Some(index_digest.as_str()))
        .await
        .unwrap();
    assert_eq!(promoted.digest, index_digest);
    assert_eq!(promoted.copied_blobs, 4, "two layers and two configs");
    let raw = client.get_manifest_raw(&dst).await.unwrap();
    assert_eq!(raw.bytes, bytes);
    assert_eq!(raw.media_type, OCI_INDEX);
    for child in [&a.digest, &b.digest] {
        assert_eq!(
            client
                .manifest_digest(&dst.with_digest(child))
                .await
                .unwrap()
                .as_ref(),
            Some(child)
        );
    }
}

#[tokio::test]
async fn promoting_a_missing_tag_fails_naming_the_image() {
    if !registry_tests_enabled("promoting_a_missing_tag_fails_naming_the_image") {
        return;
    }
    let registry = TestRegistry::start();
    let src = registry.image("app:never-built");
    let err = promote(
        &common::client(),
        &src,
        &registry.image("prod/app:v1"),
        None,
    )
    .await
    .unwrap_err();
    assert!(
        matches!(&err, PromoteError::Registry(RegistryError::ManifestNotFound { image }) if *image == src.to_string()),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .contains(&format!("{}/app:never-built", registry.addr)),
        "{err}"
    );
}

#[tokio::test]
async fn promoting_a_tag_that_moved_fails_naming_both_digests() {
    if !registry_tests_enabled("promoting_a_tag_that_moved_fails_naming_both_digests") {
        return;
    }
    let registry = TestRegistry::start();
    let client = common::client();
    let src = registry.image("app:candidate");
    let tested_context = sample_context("tested");
    let tested = build_image(&ImageSpec::new(tested_context.path()), &src, &client)
        .await
        .unwrap();
    // Someone pushes over the tag after the tests ran.
    let newer_context = sample_context("newer");
    let newer = build_image(&ImageSpec::new(newer_context.path()), &src, &client)
        .await
        .unwrap();

    let dst = registry.image("prod/app:v1");
    let err = promote(&client, &src, &dst, Some(tested.digest.as_str()))
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, PromoteError::TagMoved { .. }), "{text}");
    assert!(
        text.contains(tested.digest.as_str()) && text.contains(newer.digest.as_str()),
        "{text}"
    );
    assert!(text.contains(&src.to_string()), "{text}");
    // Nothing reached the destination.
    assert_eq!(client.manifest_digest(&dst).await.unwrap(), None);

    let bad = promote(&client, &src, &dst, Some("sha256:nope"))
        .await
        .unwrap_err();
    assert!(matches!(bad, PromoteError::InvalidDigest { .. }), "{bad}");
}

#[tokio::test]
async fn an_image_on_a_base_reuses_the_base_layers() {
    if !registry_tests_enabled("an_image_on_a_base_reuses_the_base_layers") {
        return;
    }
    let registry = TestRegistry::start();
    let other = TestRegistry::start();
    let client = common::client();
    let busybox = common::busybox_context();
    let mut base_spec = ImageSpec::new(busybox.path());
    base_spec.dest = "/bin".into();
    base_spec.env = vec![("PATH".into(), "/bin".into())];
    base_spec.cmd = Some(vec!["/bin/busybox".into(), "sh".into()]);
    let base_ref = registry.image("base/busybox:1");
    let base = build_image(&base_spec, &base_ref, &client).await.unwrap();

    let app_context = sample_context("on-base");
    let mut spec = ImageSpec::new(app_context.path());
    spec.base = Some(base_ref.clone());
    spec.cmd = Some(vec!["/app/run".into()]);
    let app = build_image(&spec, &registry.image("team/app:v1"), &client)
        .await
        .unwrap();
    assert_eq!(
        app.mounted_blobs, 1,
        "the busybox layer is mounted from the base repository"
    );
    assert_eq!(app.uploaded_blobs, 2, "the app layer and the config");
    let manifest: serde_json::Value = serde_json::from_slice(&app.manifest).unwrap();
    let base_manifest: serde_json::Value = serde_json::from_slice(&base.manifest).unwrap();
    assert_eq!(manifest["layers"][0], base_manifest["layers"][0]);
    assert_eq!(manifest["layers"].as_array().unwrap().len(), 2);

    // A base in another registry is copied, and the result is the same image.
    let copied = build_image(&spec, &other.image("team/app:v1"), &client)
        .await
        .unwrap();
    assert_eq!(copied.digest, app.digest);
    assert_eq!(copied.uploaded_blobs, 3, "the base layer is copied across");
    assert_eq!(skopeo_digest(&other.image("team/app:v1")), app.digest);
}

#[tokio::test]
async fn blobs_round_trip_through_chunked_uploads_and_streamed_downloads() {
    if !registry_tests_enabled("blobs_round_trip_through_chunked_uploads_and_streamed_downloads") {
        return;
    }
    let registry = TestRegistry::start();
    let client = RegistryClient::new(ClientOptions {
        chunk_size: 100_000,
        ..ClientOptions::default()
    })
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let data = pseudo_random(1_000_003);
    let path = dir.path().join("blob");
    std::fs::write(&path, &data).unwrap();
    let digest = Digest::of(&data);
    let repo = registry.image("blobs/test");
    assert!(!client.blob_exists(&repo, &digest).await.unwrap());
    assert_eq!(
        client.push_blob(&repo, &digest, &path).await.unwrap(),
        data.len() as u64
    );
    assert!(client.blob_exists(&repo, &digest).await.unwrap());
    let back = dir.path().join("back");
    client
        .get_blob_to_file(&repo, &digest, &back)
        .await
        .unwrap();
    assert_eq!(std::fs::read(&back).unwrap(), data);

    // A wrong digest is refused by the registry, and reported with the image.
    let wrong = Digest::of(b"something else");
    let err = client.push_blob(&repo, &wrong, &path).await.unwrap_err();
    assert!(
        matches!(err, RegistryError::Status { status: 400, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("blobs/test"), "{err}");

    // Mounting from a repository that lacks the blob declines cleanly.
    let other = registry.image("blobs/other");
    assert!(
        !client
            .mount_blob(&other, &registry.image("blobs/third"), &wrong)
            .await
            .unwrap()
    );
    assert!(client.mount_blob(&repo, &other, &digest).await.unwrap());
}

#[tokio::test]
async fn https_registries_are_reached_with_a_trusted_private_ca() {
    if !registry_tests_enabled("https_registries_are_reached_with_a_trusted_private_ca") {
        return;
    }
    if common::which("openssl").is_none() {
        println!(
            "skipped https_registries_are_reached_with_a_trusted_private_ca: openssl is not installed"
        );
        return;
    }
    let (_certs, ca, cert, key) = common::test_certificates();
    let registry = TestRegistry::start_with_tls(Some((&cert, &key)));
    let https = |roots: Vec<Vec<u8>>| {
        RegistryClient::new(ClientOptions {
            loopback_plain_http: false,
            root_certificates_pem: roots,
            retry: gantry_images::RetryPolicy {
                attempts: 1,
                base_delay: std::time::Duration::from_millis(1),
            },
            ..ClientOptions::default()
        })
        .unwrap()
    };
    let trusted = https(vec![std::fs::read(&ca).unwrap()]);
    trusted.ping(&registry.addr).await.unwrap();
    let context = sample_context("tls");
    let built = build_image(
        &ImageSpec::new(context.path()),
        &registry.image("tls/app:v1"),
        &trusted,
    )
    .await
    .unwrap();
    assert_eq!(
        trusted
            .manifest_digest(&registry.image("tls/app:v1"))
            .await
            .unwrap(),
        Some(built.digest)
    );

    // Without the CA the certificate is refused; a bad PEM is refused up front.
    let err = https(Vec::new()).ping(&registry.addr).await.unwrap_err();
    assert!(matches!(err, RegistryError::Unreachable { .. }), "{err:?}");
    assert!(
        RegistryClient::new(ClientOptions {
            root_certificates_pem: vec![
                b"-----BEGIN CERTIFICATE-----\nnope\n-----END CERTIFICATE-----\n".to_vec()
            ],
            ..ClientOptions::default()
        })
        .is_err()
    );
}

/// Incompressible bytes from a fixed seed (xorshift), so the test is repeatable.
fn pseudo_random(len: usize) -> Vec<u8> {
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(&state.to_le_bytes());
    }
    out.truncate(len);
    out
}
