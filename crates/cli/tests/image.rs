//! `gantry image ls|inspect|promote` against a real `gantry server`: an
//! image pushed to its embedded registry over the distribution API (as
//! any client pushes) is listed, inspected and promoted by digest, in
//! text and `--json`, and the refusals carry `image.*` codes.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use gantry_api::{ImageDetailView, ImageView, PromoteImageAnswer};

fn gantry(data: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_gantry"));
    cmd.env_remove("GANTRY_TOKEN")
        .env_remove("GANTRY_SERVER")
        .env("GANTRY_LOG", "warn")
        .arg("--data-dir")
        .arg(data)
        .args(args);
    cmd
}

fn run(data: &Path, args: &[&str]) -> Output {
    gantry(data, args).output().unwrap()
}

fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A `gantry server` on free ports, stopped when dropped.
struct Server {
    child: Child,
    data: PathBuf,
    registry: String,
}

impl Server {
    fn start(data: &Path) -> Server {
        let child = gantry(
            data,
            &[
                "server",
                "--listen",
                "127.0.0.1:0",
                "--registry-listen",
                "127.0.0.1:0",
            ],
        )
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
        let registry =
            gantry_clock::blocking_poll(Duration::from_secs(60), Duration::from_millis(50), || {
                let info = std::fs::read(data.join("server.json")).ok()?;
                let info: serde_json::Value = serde_json::from_slice(&info).ok()?;
                info["registry"].as_str().map(String::from)
            })
            .expect("the server writes server.json");
        Server {
            child,
            data: data.to_path_buf(),
            registry,
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = run(&self.data, &["shutdown"]);
        let _ = self.child.wait();
    }
}

fn sha256(bytes: &[u8]) -> String {
    let mut child = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(bytes).unwrap();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    format!("sha256:{}", &text[..64])
}

/// Pushes an image of one layer as `repo:tag` over the distribution API
/// (monolithic blob uploads, then the manifest); returns its digest.
async fn push(registry: &str, token: &str, repo: &str, tag: &str) -> String {
    let http = reqwest::Client::new();
    let base = format!("http://{registry}/v2/{repo}");
    let config = br#"{"architecture":"amd64","os":"linux","config":{"Entrypoint":["/bin/web"],"Env":["PATH=/bin","SECRET=hidden"],"WorkingDir":"/srv","ExposedPorts":{"8080/tcp":{}}},"rootfs":{"type":"layers","diff_ids":[]}}"#.to_vec();
    let layer = format!("layer of {repo}:{tag}").into_bytes();
    for blob in [&config, &layer] {
        let digest = sha256(blob);
        let answer = http
            .post(format!("{base}/blobs/uploads/?digest={digest}"))
            .bearer_auth(token)
            .header("content-type", "application/octet-stream")
            .body(blob.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status().as_u16(), 201, "{:?}", answer.text().await);
    }
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": sha256(&config), "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": sha256(&layer), "size": layer.len()}],
    });
    let bytes = serde_json::to_vec(&manifest).unwrap();
    let answer = http
        .put(format!("{base}/manifests/{tag}"))
        .bearer_auth(token)
        .header("content-type", "application/vnd.oci.image.manifest.v1+json")
        .body(bytes.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status().as_u16(), 201, "{:?}", answer.text().await);
    sha256(&bytes)
}

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
