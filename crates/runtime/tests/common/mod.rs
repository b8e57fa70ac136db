//! Test support: a real `docker-registry`, a busybox web image built with
//! `gantry_images::build_image`, a tiny HTTP client, event helpers, and guards
//! that leave no replica process or container behind when a test fails.

#![allow(dead_code, unreachable_pub, unused_imports)]

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener as StdListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use gantry_images::{ClientOptions, ImageSpec, Reference, RegistryClient, build_image};
use gantry_runtime::{ReplicaEvent, ReplicaSpec};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::broadcast;
use tokio::time::Instant;

/// What the web image's index page says.
pub const INDEX: &str = "hello from gantry\n";

use gantry_testkit::gate;
pub use gantry_testkit::{TestRegistry, registry_tests_enabled};

/// Whether the tests needing dockerd (and the registry) should run.
pub fn docker_tests_enabled(test: &str) -> bool {
    gate("GANTRY_TEST_DOCKER", test) && gate("GANTRY_TEST_REGISTRY", test)
}

/// Whether the tests needing an initialised swarm (and the registry) should run.
pub fn swarm_tests_enabled(test: &str) -> bool {
    gantry_testkit::swarm_tests_enabled(test) && gate("GANTRY_TEST_REGISTRY", test)
}

/// `registry.image("name")`: `ADDR/name` of a test registry, parsed.
pub trait ImageName {
    fn image(&self, name: &str) -> Reference;
}

impl ImageName for TestRegistry {
    fn image(&self, name: &str) -> Reference {
        Reference::parse(&format!("{}/{name}", self.addr)).expect("test reference")
    }
}

pub fn client() -> RegistryClient {
    RegistryClient::new(ClientOptions::default()).expect("client")
}

pub fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| Path::new(d).join(program))
        .find(|p| p.is_file())
}

/// A context with the static busybox at `busybox` and the given extra files.
pub fn busybox_context(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    let busybox = which("busybox").expect("busybox (apt-get install busybox-static)");
    std::fs::copy(&busybox, dir.path().join("busybox")).expect("copy busybox");
    write_files(dir.path(), files);
    dir
}

pub fn write_files(root: &Path, files: &[(&str, &str)]) {
    for (path, content) in files {
        let path = root.join(path);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, content).expect("write");
    }
}

/// The shell line the web image runs: it prints what the contract promises,
/// then serves `/app/www` (its working directory) with busybox httpd on `$PORT`.
pub const SERVE: &str = "echo \"pid=$$ PATH=$PATH PORT=$PORT ROOTFS=$GANTRY_ROOTFS PWD=$(pwd) OWNER=${GANTRY_OWNER:-none} GREETING=${GREETING:-none}\"; exec busybox httpd -f -p $PORT -h .";

/// Builds and pushes the web image: busybox in `/app`, `/app/www/index.html`
/// and `/app/www/health`, `PATH=/app`, working directory `/app/www`. Returns
/// the reference pinned by digest.
pub async fn web_image(registry: &TestRegistry, client: &RegistryClient, name: &str) -> Reference {
    let context = busybox_context(&[("www/index.html", INDEX), ("www/health", "ok\n")]);
    let mut spec = ImageSpec::new(context.path());
    spec.entrypoint = Some(vec!["/app/busybox".into(), "sh".into(), "-c".into()]);
    spec.cmd = Some(vec![SERVE.into()]);
    spec.env = vec![("PATH".into(), "/app".into())];
    spec.workdir = Some("/app/www".into());
    let target = registry.image(&format!("gantry-test/{name}:v1"));
    build_image(&spec, &target, client)
        .await
        .expect("build the web image")
        .reference
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// An id unique to this test process (containers may survive a failed run).
pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst)
    )
}

/// A replica spec for `image` with nothing else set.
pub fn spec(id: &str, image: &Reference) -> ReplicaSpec {
    ReplicaSpec {
        id: id.to_owned(),
        environment: "staging".to_owned(),
        service: "web".to_owned(),
        revision: 1,
        image: image.clone(),
        command: None,
        env: Vec::new(),
        port: 8080,
        memory: None,
        cpus: None,
        labels: BTreeMap::new(),
        host_network: false,
    }
}

/// `GET path` over HTTP/1.0: (status, body), or `None` if nothing answers.
pub async fn http_get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let connect = tokio::net::TcpStream::connect(addr);
    let mut stream = tokio::time::timeout(Duration::from_secs(2), connect)
        .await
        .ok()?
        .ok()?;
    let request = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer))
        .await
        .ok()?
        .ok()?;
    let text = String::from_utf8_lossy(&answer).into_owned();
    let status = text.split(' ').nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned())?;
    Some((status, body))
}

/// `GET path` until something answers (or panics after `within`).
pub async fn wait_http(addr: SocketAddr, path: &str, within: Duration) -> (u16, String) {
    let deadline = Instant::now() + within;
    loop {
        if let Some(answer) = http_get(addr, path).await {
            return answer;
        }
        assert!(
            Instant::now() < deadline,
            "nothing answered on {addr}{path}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The next event matching `matches`, skipping others (panics after `within`).
pub async fn wait_event(
    events: &mut broadcast::Receiver<ReplicaEvent>,
    within: Duration,
    matches: impl Fn(&ReplicaEvent) -> bool,
) -> ReplicaEvent {
    let deadline = Instant::now() + within;
    loop {
        let event = tokio::time::timeout_at(deadline, events.recv())
            .await
            .expect("the expected event in time")
            .expect("the event channel open");
        if matches(&event) {
            return event;
        }
    }
}

/// The next event for replica `id` (panics after `within`).
pub async fn next_event_of(
    events: &mut broadcast::Receiver<ReplicaEvent>,
    id: &str,
    within: Duration,
) -> ReplicaEvent {
    wait_event(events, within, |e| e.id() == id).await
}

/// Waits until `condition` holds (panics after `within`).
pub async fn wait_until(what: &str, within: Duration, condition: impl Fn() -> bool) {
    let deadline = Instant::now() + within;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A data dir whose replica processes are killed when the test ends, pass or fail.
pub struct DataDir {
    pub dir: tempfile::TempDir,
}

impl DataDir {
    pub fn new() -> DataDir {
        DataDir {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The pid recorded in a replica's state file.
    pub fn recorded_pid(&self, id: &str) -> i32 {
        let text = std::fs::read_to_string(self.path().join(format!("replicas/{id}.json")))
            .expect("state file");
        let json: serde_json::Value = serde_json::from_str(&text).expect("state json");
        json["pid"].as_i64().expect("pid") as i32
    }
}

impl Drop for DataDir {
    fn drop(&mut self) {
        let Ok(root) = std::fs::canonicalize(self.dir.path()) else {
            return;
        };
        let mark = format!("GANTRY_REPLICA={}/replicas/", root.display());
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return;
        };
        for entry in entries.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<i32>().ok())
            else {
                continue;
            };
            let Ok(environ) = std::fs::read(entry.path().join("environ")) else {
                continue;
            };
            if environ
                .split(|b| *b == 0)
                .any(|var| var.starts_with(mark.as_bytes()))
            {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
    }
}

/// Whether process `pid` is gone (or a zombie nobody reaped yet).
pub fn is_dead(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rfind(')')
            .and_then(|i| stat[i + 1..].split_whitespace().next())
            .is_some_and(|state| state == "Z" || state == "X"),
    }
}

/// Runs `docker ARGS`; stdout, or the error text.
pub fn docker(args: &[&str]) -> Result<String, String> {
    let output = Command::new("docker")
        .args(args)
        .output()
        .map_err(|e| e.to_string())?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).into_owned())
    }
}

/// Removes every container of `owner` when dropped.
pub struct ContainerGuard {
    pub owner: String,
}

impl Drop for ContainerGuard {
    fn drop(&mut self) {
        let filter = format!("label=gantry.owner={}", self.owner);
        if let Ok(ids) = docker(&["ps", "-aq", "--filter", &filter]) {
            for id in ids.split_whitespace() {
                let _ = docker(&["rm", "-f", id]);
            }
        }
    }
}

/// Removes every swarm service of `owner` when dropped.
pub struct ServiceGuard {
    pub owner: String,
}

impl Drop for ServiceGuard {
    fn drop(&mut self) {
        let filter = format!("label=gantry.owner={}", self.owner);
        if let Ok(ids) = docker(&["service", "ls", "-q", "--filter", &filter]) {
            for id in ids.split_whitespace() {
                let _ = docker(&["service", "rm", id]);
            }
        }
    }
}
