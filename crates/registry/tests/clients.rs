//! The registry against real clients, over a real socket:
//!
//! - `GANTRY_TEST_DOCKER=1`: `docker build` (from scratch, with the host's
//!   static busybox), refused `docker push` and `login` without the token,
//!   `docker login -p TOKEN` (the token flow), `push`, `rmi`, `pull` and
//!   `run`, and the audit record of the push.
//! - `GANTRY_TEST_REGISTRY=1`: skopeo copies an OCI layout (an image and a
//!   multi-platform index) in, between repositories, out to a `dir:`, and to
//!   and from Debian's `docker-registry` (distribution 2.8), checking that
//!   digests never change, with `--src-creds`/`--dest-creds x:TOKEN`; and
//!   is refused without them.
//!
//! Without the variable each test says it was skipped and passes: these
//! need dockerd, skopeo and docker-registry, which a plain `cargo test`
//! can't assume.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;

mod common;

use std::sync::Arc;

use common::{StaticTokens, TOKEN};
use gantry_registry::{Registry, RegistryLimits, router};
use gantry_store::{ArtifactStore, Store};
use gantry_testkit::{docker_tests_enabled, registry_tests_enabled};
use serde_json::{Value, json};
use sha2::Digest as _;
use tokio::process::Command;

/// A registry served on 127.0.0.1 with a random port; its address and the
/// test auth, which knows [`TOKEN`] and records audit records.
struct Served {
    _dir: tempfile::TempDir,
    addr: SocketAddr,
    auth: Arc<StaticTokens>,
}

async fn serve() -> Served {
    let dir = tempfile::tempdir().unwrap();
    // A database file in `dir` (SQLite), or PostgreSQL when
    // GANTRY_TEST_POSTGRES is set.
    let url = gantry_testkit::database::database_url(dir.path()).await;
    let store = Store::connect(gantry_db::Db::connect(&url).await.unwrap())
        .await
        .unwrap();
    let artifacts = ArtifactStore::open(dir.path().join("artifacts")).unwrap();
    let auth = StaticTokens::new();
    let registry = Registry::open(
        &store,
        artifacts,
        dir.path(),
        auth.options(RegistryLimits::default()),
    )
    .await
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = router(registry).into_make_service_with_connect_info::<SocketAddr>();
    tokio::spawn(async move { axum::serve(listener, app).await });
    Served {
        _dir: dir,
        addr,
        auth,
    }
}

/// Runs a command; panics with its output when it fails. Returns stdout.
async fn run(program: &str, args: &[&str]) -> String {
    try_run(program, args)
        .await
        .unwrap_or_else(|failure| panic!("{failure}"))
}

/// Runs a command; its stdout, or what it said when it failed. Docker keeps
/// its logins in `DOCKER_CONFIG`, which the tests point at a temp dir.
async fn try_run(program: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(program)
        .args(args)
        .env("DOCKER_BUILDKIT", "0")
        .env("DOCKER_CONFIG", docker_config())
        .stdin(Stdio::null())
        .output()
        .await
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if out.status.success() {
        Ok(stdout)
    } else {
        Err(format!(
            "{program} {} failed ({}):\n{stdout}\n{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// A docker config dir of this test process, so `docker login` touches no
/// user's credentials.
fn docker_config() -> &'static std::path::Path {
    static DIR: std::sync::OnceLock<tempfile::TempDir> = std::sync::OnceLock::new();
    DIR.get_or_init(|| tempfile::tempdir().unwrap()).path()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_pushes_pulls_and_runs_an_image() {
    if !docker_tests_enabled("docker_pushes_pulls_and_runs_an_image") {
        return;
    }
    let served = serve().await;
    let addr = served.addr;
    let registry = addr.to_string();
    // Before logging in, docker is refused.
    let ctx = tempfile::tempdir().unwrap();
    std::fs::write(ctx.path().join("Dockerfile"), "FROM scratch\nLABEL x=1\n").unwrap();
    let refused = format!("{addr}/test/refused:1");
    run(
        "docker",
        &["build", "-q", "-t", &refused, ctx.path().to_str().unwrap()],
    )
    .await;
    let failure = try_run("docker", &["push", &refused]).await.unwrap_err();
    assert!(
        failure.contains("no basic auth credentials") || failure.contains("unauthorized"),
        "{failure}"
    );
    run("docker", &["rmi", &refused]).await;
    // `docker login` goes through the token flow with the gantry token as
    // the password; the user name is ignored.
    let failure = try_run(
        "docker",
        &["login", &registry, "-u", "anyone", "-p", "wrong"],
    )
    .await
    .unwrap_err();
    assert!(
        failure.contains("unauthorized") || failure.contains("401"),
        "{failure}"
    );
    run("docker", &["login", &registry, "-u", "anyone", "-p", TOKEN]).await;
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
    let records = served.auth.records();
    assert!(
        records.iter().any(|r| r.action == "registry.push_manifest"
            && r.target == "test/tiny:1"
            && r.principal.as_deref() == Some("tester")
            && r.outcome == "ok"
            && r.remote.is_some_and(|a| a.ip().is_loopback())),
        "{records:#?}"
    );
    assert!(!format!("{records:?}").contains(TOKEN));
    run("docker", &["logout", &registry]).await;
}

/// A GET through a raw socket: enough HTTP/1.0 for a small JSON answer,
/// without adding an HTTP client to the dependencies.
async fn get_json(addr: SocketAddr, path: &str) -> Value {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(
            format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\nAuthorization: Bearer {TOKEN}\r\n\r\n")
                .as_bytes(),
        )
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

/// `x:TOKEN`: skopeo sends it only to a registry that challenges, so the
/// unauthenticated peer registry is not bothered by it.
fn creds() -> String {
    format!("x:{TOKEN}")
}

fn skopeo_copy_args<'a>(src: &'a str, dest: &'a str, all: bool, creds: &'a str) -> Vec<&'a str> {
    let mut args = vec![
        "copy",
        "--quiet",
        "--src-tls-verify=false",
        "--dest-tls-verify=false",
    ];
    if src.starts_with("docker://") {
        args.extend(["--src-creds", creds]);
    }
    if dest.starts_with("docker://") {
        args.extend(["--dest-creds", creds]);
    }
    if all {
        args.push("--all");
    }
    args.extend([src, dest]);
    args
}

async fn skopeo_copy(src: &str, dest: &str, all: bool) {
    let creds = creds();
    run("skopeo", &skopeo_copy_args(src, dest, all, &creds)).await;
}

/// The digest of an image's manifest as skopeo sees it.
async fn skopeo_digest(image: &str) -> String {
    let creds = creds();
    let raw = run(
        "skopeo",
        &[
            "inspect",
            "--raw",
            "--tls-verify=false",
            "--creds",
            &creds,
            image,
        ],
    )
    .await;
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
    if !registry_tests_enabled("skopeo_copies_through_the_registry_without_changing_digests") {
        return;
    }
    let served = serve().await;
    let addr = served.addr;
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
            &[
                "inspect",
                "--tls-verify=false",
                "--creds",
                &creds(),
                &ours("other/tiny:2"),
            ],
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skopeo_needs_a_gantry_token_to_push() {
    if !registry_tests_enabled("skopeo_needs_a_gantry_token_to_push") {
        return;
    }
    let served = serve().await;
    let work = tempfile::tempdir().unwrap();
    let (layout, _) = oci_layout(work.path());
    let src = format!("oci:{}:v1", layout.display());
    let dest = format!("docker://{}/team/app:1", served.addr);
    let anonymous = [
        "copy",
        "--quiet",
        "--dest-tls-verify=false",
        src.as_str(),
        dest.as_str(),
    ];
    let failure = try_run("skopeo", &anonymous).await.unwrap_err();
    assert!(
        failure.contains("401") || failure.contains("unauthorized"),
        "{failure}"
    );
    let wrong = "x:not-the-token";
    let failure = try_run("skopeo", &skopeo_copy_args(&src, &dest, false, wrong))
        .await
        .unwrap_err();
    assert!(
        failure.contains("401") || failure.contains("unauthorized"),
        "{failure}"
    );
    assert!(!failure.contains(TOKEN));
    skopeo_copy(&src, &dest, false).await;
    skopeo_digest(&dest).await;

    let records = served.auth.records();
    let pushed: Vec<_> = records
        .iter()
        .filter(|r| r.outcome == "ok")
        .map(|r| r.action.as_str())
        .collect();
    assert!(pushed.contains(&"registry.push_manifest"), "{records:#?}");
    assert!(pushed.contains(&"registry.push_blob"), "{records:#?}");
    assert!(
        records
            .iter()
            .any(|r| r.outcome == "auth.unauthenticated" && r.principal.is_none()),
        "{records:#?}"
    );
    assert!(!format!("{records:?}").contains(TOKEN));
}
