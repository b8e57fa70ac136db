//! What the command-line tests of a running server share: the binary with
//! a data dir, a `gantry server` on free ports, and an image pushed to its
//! embedded registry over the distribution API, as any client pushes.

#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

pub(crate) fn gantry(data: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_gantry"));
    cmd.env_remove("GANTRY_TOKEN")
        .env_remove("GANTRY_SERVER")
        .env("GANTRY_LOG", "warn")
        .arg("--data-dir")
        .arg(data)
        .args(args);
    cmd
}

pub(crate) fn run(data: &Path, args: &[&str]) -> Output {
    gantry(data, args).output().unwrap()
}

pub(crate) fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A `gantry server` on free ports, stopped when dropped.
pub(crate) struct Server {
    child: Child,
    data: PathBuf,
    pub(crate) registry: String,
}

impl Server {
    pub(crate) fn start(data: &Path) -> Server {
        Server::start_with(data, &[])
    }

    /// A server with more arguments (`--database URL`).
    pub(crate) fn start_with(data: &Path, more: &[&str]) -> Server {
        let mut args = vec![
            "server",
            "--listen",
            "127.0.0.1:0",
            "--registry-listen",
            "127.0.0.1:0",
        ];
        args.extend_from_slice(more);
        let child = gantry(data, &args)
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

pub(crate) fn sha256(bytes: &[u8]) -> String {
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
pub(crate) async fn push(registry: &str, token: &str, repo: &str, tag: &str) -> String {
    let config = br#"{"architecture":"amd64","os":"linux","config":{"Entrypoint":["/bin/web"],"Env":["PATH=/bin","SECRET=hidden"],"WorkingDir":"/srv","ExposedPorts":{"8080/tcp":{}}},"rootfs":{"type":"layers","diff_ids":[]}}"#.to_vec();
    let layer = format!("layer of {repo}:{tag}").into_bytes();
    push_image(registry, token, repo, tag, &config, &layer).await
}

/// Pushes an image of one uncompressed tar layer with `config` as
/// `repo:tag`; returns its digest.
pub(crate) async fn push_image(
    registry: &str,
    token: &str,
    repo: &str,
    tag: &str,
    config: &[u8],
    layer: &[u8],
) -> String {
    let http = reqwest::Client::new();
    let base = format!("http://{registry}/v2/{repo}");
    let (config, layer) = (config.to_vec(), layer.to_vec());
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
