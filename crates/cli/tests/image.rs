//! `gantry image ls|inspect|promote` against a real `gantry server`: an
//! image pushed to its embedded registry over the distribution API (as
//! any client pushes) is listed, inspected and promoted by digest, in
//! text and `--json`, and the refusals carry `image.*` codes.

mod common;

use common::{Server, ok, push, run};
use gantry_api::{ImageDetailView, ImageView, PromoteImageAnswer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn images_are_listed_inspected_and_promoted_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join(".gantry");
    let server = Server::start(&data);
    let token = std::fs::read_to_string(data.join("admin.token")).unwrap();
    let digest = push(&server.registry, token.trim(), "shop/web", "1.0").await;

    let listed: Vec<ImageView> =
        serde_json::from_str(&ok(run(&data, &["image", "ls", "--json"]))).unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].digest, digest);
    assert_eq!(listed[0].tag.as_deref(), Some("1.0"));
    let text = ok(run(&data, &["image", "ls", "shop/web"]));
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with("REPOSITORY"), "{text}");
    assert!(
        lines[1].starts_with("shop/web")
            && lines[1].contains("1.0")
            && lines[1].contains(&digest[..19]),
        "{text}"
    );

    let reference = format!("{}/shop/web:1.0", server.registry);
    let image: ImageDetailView =
        serde_json::from_str(&ok(run(&data, &["image", "inspect", &reference, "--json"]))).unwrap();
    assert_eq!(image.digest, digest);
    assert_eq!(image.layers.len(), 1);
    let summary = image.config_summary.unwrap();
    assert_eq!(summary.entrypoint, ["/bin/web"]);
    assert_eq!(summary.env_names, ["PATH", "SECRET"]);
    let text = ok(run(&data, &["image", "inspect", "shop/web:1.0"]));
    assert!(text.contains(&format!("digest:     {digest}")), "{text}");
    assert!(text.contains("layers (1):"), "{text}");
    assert!(text.contains("ports:      8080/tcp"), "{text}");
    assert!(
        !text.contains("hidden"),
        "env values are never shown: {text}"
    );

    let answer: PromoteImageAnswer = serde_json::from_str(&ok(run(
        &data,
        &[
            "image",
            "promote",
            "shop/web:1.0",
            "prod/web:stable",
            "--json",
        ],
    )))
    .unwrap();
    assert_eq!(answer.digest, digest);
    assert_eq!(answer.blobs_linked, 2);
    let text = ok(run(
        &data,
        &["image", "promote", "shop/web:1.0", "prod/web:stable"],
    ));
    assert_eq!(
        text.trim(),
        format!(
            "promoted shop/web@{digest} to prod/web:stable@{digest} (1 manifest, 0 blobs linked)"
        )
    );
    // The registry serves the promoted tag: the same manifest, by digest.
    let served = reqwest::Client::new()
        .head(format!(
            "http://{}/v2/prod/web/manifests/stable",
            server.registry
        ))
        .bearer_auth(token.trim())
        .header("accept", "application/vnd.oci.image.manifest.v1+json")
        .send()
        .await
        .unwrap();
    assert_eq!(served.status().as_u16(), 200);
    assert_eq!(served.headers()["docker-content-digest"], digest.as_str());

    let missing = run(&data, &["image", "inspect", "shop/web:2.0"]);
    assert_eq!(missing.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert!(stderr.contains("image.not_found"), "{stderr}");
    let bad = run(&data, &["image", "promote", "shop/web:1.0", "Prod/Web"]);
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("image.invalid_reference"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
}
