//! The registry against real clients, over a real socket:
//!
//! - `GANTRY_TEST_DOCKER=1`: `docker build` (from scratch, with the host's
//!   static busybox), `docker push`, `rmi`, `pull` and `run`.
//! - `GANTRY_TEST_REGISTRY=1`: skopeo copies an OCI layout (an image and a
//!   multi-platform index) in, between repositories, out to a `dir:`, and to
//!   and from Debian's `docker-registry` (distribution 2.8), checking that
//!   digests never change.
//!
//! Without the variable each test says it was skipped and passes: these
//! need dockerd, skopeo and docker-registry, which a plain `cargo test`
//! can't assume.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;

mod common;

use common::StaticTokens;
use gantry_registry::{Registry, RegistryLimits, router};
use gantry_store::{ArtifactStore, Store};
use serde_json::{Value, json};
use sha2::Digest as _;
use tokio::process::Command;

fn enabled(var: &str, test: &str) -> bool {
    if std::env::var(var).as_deref() == Ok("1") {
        true
    } else {
        eprintln!("skipped {test}: set {var}=1 to run it");
        false
    }
}

/// Serves a fresh registry on 127.0.0.1 with a random port.
async fn serve() -> (tempfile::TempDir, SocketAddr) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("gantry.db")).await.unwrap();
    let artifacts = ArtifactStore::open(dir.path().join("artifacts")).unwrap();
    let options = StaticTokens::new().options(RegistryLimits::default());
    let registry = Registry::open(&store, artifacts, dir.path(), options)
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = router(registry).into_make_service_with_connect_info::<SocketAddr>();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (dir, addr)
}

/// Runs a command; panics with its output when it fails. Returns stdout.
async fn run(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .env("DOCKER_BUILDKIT", "0")
        .stdin(Stdio::null())
        .output()
        .await
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{program} {} failed ({}):\n{stdout}\n{}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_pushes_pulls_and_runs_an_image() {
    if !enabled(
        "GANTRY_TEST_DOCKER",
        "docker_pushes_pulls_and_runs_an_image",
    ) {
        return;
    }
    let (_dir, addr) = serve().await;
    let ctx = tempfile::tempdir().unwrap();
    std::fs::copy("/bin/busybox", ctx.path().join("busybox")).unwrap();
    std::fs::write(
        ctx.path().join("Dockerfile"),
        "FROM scratch\nCOPY busybox /bin/busybox\n\
         CMD [\"/bin/busybox\", \"echo\", \"hello from gantry\"]\n",
    )
    .unwrap();
    let image = format!("{addr}/test/tiny:1");
    let copy = format!("{addr}/copy/tiny:2");
    let ctx_path = ctx.path().to_str().unwrap();

    run("docker", &["build", "-q", "-t", &image, ctx_path]).await;
    run("docker", &["push", &image]).await;
    // A second repository: docker mounts the layer instead of uploading it.
    run("docker", &["tag", &image, &copy]).await;
    let pushed = run("docker", &["push", &copy]).await;
    run("docker", &["rmi", &image, &copy]).await;
    run("docker", &["pull", &image]).await;
    let said = run("docker", &["run", "--rm", "--network", "none", &image]).await;
    run("docker", &["rmi", &image]).await;
    eprintln!("second push:\n{pushed}\ncontainer said: {said}");
    assert_eq!(said.trim(), "hello from gantry");
    assert!(
        pushed.contains("Mounted from test/tiny") || pushed.contains("Layer already exists"),
        "{pushed}"
    );

    let catalog: Value = get_json(addr, "/v2/_catalog").await;
    assert_eq!(catalog, json!({"repositories": ["copy/tiny", "test/tiny"]}));
}

/// A GET through a raw socket: enough HTTP/1.0 for a small JSON answer,
/// without adding an HTTP client to the dependencies.
async fn get_json(addr: SocketAddr, path: &str) -> Value {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let body = response.split("\r\n\r\n").nth(1).unwrap_or("");
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {response}"))
}

/// An OCI image layout with tag `v1` (one image) and tag `multi` (an index
/// of an amd64 and an arm64 image sharing their layer).
/// Returns the layout's path and the uncompressed layer.
fn oci_layout(dir: &Path) -> (PathBuf, Vec<u8>) {
    let layout = dir.join("layout");
    std::fs::create_dir_all(layout.join("blobs/sha256")).unwrap();
    let blob = |bytes: &[u8]| {
        let hex = hex::encode(sha2::Sha256::digest(bytes));
        std::fs::write(layout.join("blobs/sha256").join(&hex), bytes).unwrap();
        json!({"digest": format!("sha256:{hex}"), "size": bytes.len()})
    };
    let files = dir.join("files");
    std::fs::create_dir_all(&files).unwrap();
    std::fs::write(files.join("hello.txt"), "hello from an OCI layout\n").unwrap();
    let tar = std::process::Command::new("tar")
        .args(["--numeric-owner", "--owner=0", "--group=0", "--mtime=@0"])
        .args(["-C", files.to_str().unwrap(), "-cf", "-", "hello.txt"])
        .output()
        .unwrap();
    assert!(tar.status.success());
    let layer = blob(&tar.stdout);
    let image = |arch: &str| {
        let config = json!({
            "architecture": arch, "os": "linux",
            "config": {"Cmd": ["/hello.txt"]},
            "rootfs": {"type": "layers", "diff_ids": [layer["digest"]]},
        });
        let config = blob(&serde_json::to_vec(&config).unwrap());
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                       "digest": config["digest"], "size": config["size"]},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                        "digest": layer["digest"], "size": layer["size"]}],
        });
        let m = blob(&serde_json::to_vec_pretty(&manifest).unwrap());
        json!({"mediaType": "application/vnd.oci.image.manifest.v1+json",
               "digest": m["digest"], "size": m["size"],
               "platform": {"architecture": arch, "os": "linux"}})
    };
    let amd64 = image("amd64");
    let arm64 = image("arm64");
    let index = blob(
        &serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [amd64, arm64],
        }))
        .unwrap(),
    );
    let mut v1 = amd64.clone();
    v1["annotations"] = json!({"org.opencontainers.image.ref.name": "v1"});
    let multi = json!({"mediaType": "application/vnd.oci.image.index.v1+json",
        "digest": index["digest"], "size": index["size"],
        "annotations": {"org.opencontainers.image.ref.name": "multi"}});
    std::fs::write(
        layout.join("index.json"),
        serde_json::to_vec(&json!({"schemaVersion": 2, "manifests": [v1, multi]})).unwrap(),
    )
    .unwrap();
    std::fs::write(
        layout.join("oci-layout"),
        r#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .unwrap();
    (layout, tar.stdout)
}

async fn skopeo_copy(src: &str, dest: &str, all: bool) {
    let mut args = vec![
        "copy",
        "--quiet",
        "--src-tls-verify=false",
        "--dest-tls-verify=false",
    ];
    if all {
        args.push("--all");
    }
    args.extend([src, dest]);
    run("skopeo", &args).await;
}

/// The digest of an image's manifest as skopeo sees it.
async fn skopeo_digest(image: &str) -> String {
    let raw = run("skopeo", &["inspect", "--raw", "--tls-verify=false", image]).await;
    format!(
        "sha256:{}",
        hex::encode(sha2::Sha256::digest(raw.as_bytes()))
    )
}

/// Debian's distribution/distribution registry on a free port.
struct DockerRegistry {
    child: tokio::process::Child,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl DockerRegistry {
    async fn start() -> DockerRegistry {
        let dir = tempfile::tempdir().unwrap();
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog: {{level: warn}}\nstorage: {{filesystem: {{rootdirectory: {}}}}}\nhttp: {{addr: {addr}}}\n",
                dir.path().join("data").display()
            ),
        )
        .unwrap();
        let child = Command::new("/usr/bin/docker-registry")
            .args(["serve", config.to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(addr).await.is_ok() {
                return DockerRegistry {
                    child,
                    addr,
                    _dir: dir,
                };
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("docker-registry did not start on {addr}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skopeo_copies_through_the_registry_without_changing_digests() {
    if !enabled(
        "GANTRY_TEST_REGISTRY",
        "skopeo_copies_through_the_registry_without_changing_digests",
    ) {
        return;
    }
    let (_dir, addr) = serve().await;
    let work = tempfile::tempdir().unwrap();
    let (layout, layer_tar) = oci_layout(work.path());
    let layout = layout.to_str().unwrap();
    let ours = |path: &str| format!("docker://{addr}/{path}");

    // In from an OCI layout: one image, and an index with its children.
    skopeo_copy(&format!("oci:{layout}:v1"), &ours("test/tiny:1"), false).await;
    skopeo_copy(&format!("oci:{layout}:multi"), &ours("test/multi:1"), true).await;
    let tiny = skopeo_digest(&ours("test/tiny:1")).await;
    let multi = skopeo_digest(&ours("test/multi:1")).await;

    // Between repositories of this registry.
    skopeo_copy(&ours("test/tiny:1"), &ours("other/tiny:2"), false).await;
    skopeo_copy(&ours("test/multi:1"), &ours("other/multi:2"), true).await;
    assert_eq!(skopeo_digest(&ours("other/tiny:2")).await, tiny);
    assert_eq!(skopeo_digest(&ours("other/multi:2")).await, multi);
    let inspected: Value = serde_json::from_str(
        &run(
            "skopeo",
            &["inspect", "--tls-verify=false", &ours("other/tiny:2")],
        )
        .await,
    )
    .unwrap();
    assert_eq!(inspected["Digest"], tiny);
    assert_eq!(inspected["Architecture"], "amd64");

    // Out to a directory: the layer comes back intact. (skopeo gzipped it
    // on the way in, as it does for every registry destination.)
    let out = work.path().join("pulled");
    skopeo_copy(
        &ours("other/tiny:2"),
        &format!("dir:{}", out.display()),
        false,
    )
    .await;
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(out.join("manifest.json")).unwrap()).unwrap();
    let layer = manifest["layers"][0]["digest"].as_str().unwrap();
    let pulled = out.join(layer.trim_start_matches("sha256:"));
    let pulled_digest = hex::encode(sha2::Sha256::digest(std::fs::read(&pulled).unwrap()));
    assert_eq!(format!("sha256:{pulled_digest}"), layer);
    let unzipped = std::process::Command::new("gzip")
        .arg("-dc")
        .arg(&pulled)
        .output()
        .unwrap();
    assert_eq!(unzipped.stdout, layer_tar);

    // To distribution's registry and back.
    let mut peer = DockerRegistry::start().await;
    let theirs = |path: &str| format!("docker://{}/{path}", peer.addr);
    skopeo_copy(&ours("test/tiny:1"), &theirs("peer/tiny:1"), false).await;
    skopeo_copy(&ours("test/multi:1"), &theirs("peer/multi:1"), true).await;
    assert_eq!(skopeo_digest(&theirs("peer/tiny:1")).await, tiny);
    assert_eq!(skopeo_digest(&theirs("peer/multi:1")).await, multi);
    skopeo_copy(&theirs("peer/tiny:1"), &ours("back/tiny:1"), false).await;
    skopeo_copy(&theirs("peer/multi:1"), &ours("back/multi:1"), true).await;
    assert_eq!(skopeo_digest(&ours("back/tiny:1")).await, tiny);
    assert_eq!(skopeo_digest(&ours("back/multi:1")).await, multi);
    peer.child.kill().await.unwrap();

    let tags: Value = get_json(addr, "/v2/back/multi/tags/list").await;
    assert_eq!(tags, json!({"name": "back/multi", "tags": ["1"]}));
}
