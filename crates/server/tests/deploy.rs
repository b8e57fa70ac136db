//! Deployments end to end on the process runtime: images built by gantry
//! into its embedded registry, replicas behind the built-in load balancer,
//! traffic during rolling and failed deploys, faults, and a restart.
//!
//! The test images hold Debian's static busybox (package busybox-static),
//! serving files with its `httpd`.

mod support;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use gantry_images::{ImageSpec, Reference, build_image};
use gantry_server::RunningServer;
use support::Quiet;

fn busybox() -> PathBuf {
    let path = PathBuf::from("/bin/busybox");
    assert!(
        path.exists(),
        "these tests need Debian's busybox-static: apt-get install busybox-static"
    );
    path
}

/// Pushes a web image whose index says `body` and whose /health answers
/// when `healthy`; `crash` makes the entrypoint exit at once.
/// Builds a busybox httpd image and pushes it to `server`'s registry with
/// the server's own client (which holds its registry credentials).
async fn push_image(
    server: &RunningServer,
    tag: &str,
    body: &str,
    healthy: bool,
    crash: bool,
) -> String {
    let registry = &server.registry;
    let dir = tempfile::tempdir().unwrap();
    let site = dir.path().join("site");
    std::fs::create_dir_all(site.join("www")).unwrap();
    std::fs::copy(busybox(), site.join("busybox")).unwrap();
    std::fs::write(site.join("www/index.html"), body).unwrap();
    if healthy {
        std::fs::write(site.join("www/health"), "ok").unwrap();
    }
    let mut spec = ImageSpec::new(&site);
    spec.workdir = Some("/app".into());
    let script = if crash {
        "exit 3"
    } else {
        "exec $GANTRY_ROOTFS/app/busybox httpd -f -p $PORT -h www"
    };
    spec.entrypoint = Some(vec![
        "/app/busybox".into(),
        "sh".into(),
        "-c".into(),
        script.into(),
    ]);
    let target = Reference::parse(&format!("{registry}/test/web:{tag}")).unwrap();
    let result = build_image(&spec, &target, server.plane.images())
        .await
        .unwrap();
    target.with_digest(&result.digest).to_string()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn project(port: u16, extra: &str) -> String {
    format!(
        r#"
version: 1
environments:
  staging:
    runtime: process
    load_balancer:
      listen: 127.0.0.1:{port}
      rules:
        - {{priority: 10, path: "/*", service: web}}
services:
  web:
    replicas: 2
    health_check: {{path: /health, interval: 1s, timeout: 500ms, healthy_threshold: 2, unhealthy_threshold: 2, grace_period: 0s}}
    deployment: {{min_healthy_percent: 100, max_percent: 200, drain: 1s, circuit_breaker: {{threshold: 2, rollback: true}}}}
{extra}"#
    )
    .replace("timeout: 500ms", "timeout: 1s")
    .replace("interval: 1s", "interval: 2s")
}

struct Env {
    _dir: tempfile::TempDir,
    data: PathBuf,
    server: Option<RunningServer>,
    port: u16,
}

impl Env {
    async fn new(extra: &str) -> Env {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let port = free_port();
        let server = start(&data).await;
        let file = dir.path().join("env.yaml");
        std::fs::write(&file, project(port, extra)).unwrap();
        server
            .plane
            .apply_file(
                &file,
                &std::fs::read_to_string(&file).unwrap(),
                &Default::default(),
            )
            .await
            .unwrap();
        Env {
            _dir: dir,
            data,
            server: Some(server),
            port,
        }
    }

    fn server(&self) -> &RunningServer {
        self.server.as_ref().unwrap()
    }

    async fn deploy(
        &self,
        image: &str,
    ) -> Result<gantry_deploy::DeployOutcome, gantry_deploy::DeployError> {
        self.server()
            .plane
            .deployer()
            .deploy("staging", "web", image, "test", &Quiet)
            .await
    }

    /// The staging environment's one service.
    async fn service(&self) -> gantry_deploy::ServiceStatus {
        self.server()
            .plane
            .deployer()
            .environment_status("staging")
            .await
            .unwrap()
            .services
            .remove(0)
    }

    async fn get(&self) -> Result<String, String> {
        get(self.port).await
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        // Replicas outlive servers by design; tests clean up after themselves.
        let marker = self.data.join("replicas").display().to_string();
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let environ = std::fs::read(entry.path().join("environ")).unwrap_or_default();
            if String::from_utf8_lossy(&environ).contains(&marker)
                && let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>()
            {
                let _ = std::process::Command::new("kill")
                    .arg("-9")
                    .arg(pid.to_string())
                    .status();
            }
        }
    }
}

async fn start(data: &Path) -> RunningServer {
    let listen = "127.0.0.1:0".parse().unwrap();
    RunningServer::start(data, listen, listen).await.unwrap()
}

async fn get(port: u16) -> Result<String, String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .map_err(|e| e.to_string())?;
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
        .await
        .map_err(|e| e.to_string())?;
    let mut response = String::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_string(&mut response))
        .await
        .map_err(|_| "timeout".to_string())?
        .map_err(|e| e.to_string())?;
    if response.starts_with("HTTP/1.1 200") {
        Ok(response
            .split("\r\n\r\n")
            .nth(1)
            .unwrap_or_default()
            .to_string())
    } else {
        Err(response.lines().next().unwrap_or_default().to_string())
    }
}

/// Sends requests in a loop until stopped; counts successes and failures.
struct Load {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<Vec<String>>,
}

impl Load {
    fn start(port: u16) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicU64::new(0));
        let (s, o, f) = (stop.clone(), ok.clone(), failed.clone());
        let task = tokio::spawn(async move {
            let mut errors = Vec::new();
            // Bounded: at most 20,000 requests.
            for _ in 0..20_000 {
                if s.load(Ordering::Relaxed) {
                    break;
                }
                match get(port).await {
                    Ok(_) => o.fetch_add(1, Ordering::Relaxed),
                    Err(e) => {
                        errors.push(e);
                        f.fetch_add(1, Ordering::Relaxed)
                    }
                };
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            errors
        });
        Load {
            stop,
            ok,
            failed,
            task,
        }
    }

    async fn finish(self) -> (u64, u64, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        let errors = self.task.await.unwrap();
        (
            self.ok.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
            errors,
        )
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_deploy_and_a_failed_one_drop_no_request() {
    let env = Env::new("").await;
    let registry = env.server().registry.clone();
    let v1 = push_image(env.server(), "v1", "one", true, false).await;
    env.deploy(&v1).await.unwrap();
    assert_eq!(env.get().await.unwrap(), "one");
    // The same image again is left alone: no new revision, same replicas.
    let replicas = env.service().await.replicas;
    let again = env.deploy(&v1).await.unwrap();
    assert_eq!(again.revision, 1);
    assert_eq!(env.service().await.replicas, replicas);

    let v2 = push_image(env.server(), "v2", "two", true, false).await;
    let load = Load::start(env.port);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let outcome = env.deploy(&v2).await.unwrap();
    assert_eq!(outcome.revision, 2);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (ok, failed, errors) = load.finish().await;
    assert_eq!(
        failed, 0,
        "requests failed during a rolling deploy: {errors:?}"
    );
    assert!(ok > 20, "the load ran ({ok} requests)");
    assert_eq!(env.get().await.unwrap(), "two");
    let service = env.service().await;
    assert_eq!(service.revision, Some(2));
    assert_eq!(
        service.digest.as_deref(),
        v2.split_once('@').map(|(_, d)| d)
    );
    assert_eq!(service.replicas.len(), 2);

    // A revision whose health check fails: the breaker trips, v2 keeps serving.
    let broken = push_image(env.server(), "broken", "three", false, false).await;
    let load = Load::start(env.port);
    let started = tokio::time::Instant::now();
    let error = env.deploy(&broken).await.unwrap_err();
    let took = started.elapsed();
    let (ok, failed, errors) = load.finish().await;
    assert_eq!(error.code(), "deploy.circuit_breaker", "{error}");
    assert!(error.to_string().contains("rolled back"), "{error}");
    assert!(
        took < Duration::from_secs(30),
        "the breaker fails fast ({took:?})"
    );
    assert_eq!(
        failed, 0,
        "requests failed during a failed deploy: {errors:?}"
    );
    assert!(ok > 0);
    assert_eq!(env.get().await.unwrap(), "two");
    assert_eq!(env.service().await.revision, Some(2));

    // An entrypoint that exits at once fails the same way, at once.
    let crash = push_image(env.server(), "crash", "four", true, true).await;
    let error = env.deploy(&crash).await.unwrap_err();
    assert_eq!(error.code(), "deploy.circuit_breaker", "{error}");
    assert!(error.to_string().contains("exited"), "{error}");
    assert_eq!(env.get().await.unwrap(), "two");

    // An image that does not exist fails before anything changes.
    let missing = format!("{registry}/test/web:nope");
    let error = env.deploy(&missing).await.unwrap_err();
    assert_eq!(error.code(), "deploy.image_not_found", "{error}");
    assert!(error.to_string().contains("test/web:nope"));

    // Manual rollback returns to revision 1's image as a new revision.
    let outcome = env
        .server()
        .plane
        .deployer()
        .rollback("staging", "web", Some(1), &Quiet)
        .await
        .unwrap();
    assert_eq!(env.get().await.unwrap(), "one");
    assert!(outcome.revision > 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_secret_fails_the_deploy_naming_the_parameter() {
    let env = Env::new("    secrets: {TOKEN: \"/app/${environment}/TOKEN\"}\n").await;
    let v1 = push_image(env.server(), "v1", "one", true, false).await;
    let error = env.deploy(&v1).await.unwrap_err();
    assert_eq!(error.code(), "deploy.secret", "{error}");
    assert!(error.to_string().contains("/app/staging/TOKEN"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_survive_a_server_restart_and_a_killed_one_is_healed() {
    let mut env = Env::new("").await;
    let v1 = push_image(env.server(), "v1", "one", true, false).await;
    env.deploy(&v1).await.unwrap();
    let before: Vec<String> = env
        .service()
        .await
        .replicas
        .into_iter()
        .map(|r| r.id)
        .collect();
    env.server.take().unwrap().shutdown().await;
    // The replicas still run; a new server re-adopts them, no duplicate.
    env.server = Some(start(&env.data).await);
    let after: Vec<String> = env
        .service()
        .await
        .replicas
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(before, after);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while env.get().await.is_err() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the load balancer came back"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Kill one replica's process: the runtime restarts it; the other serves meanwhile.
    let load = Load::start(env.port);
    let marker = format!("{}/replicas/{}", env.data.display(), after[0]);
    let victim = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .find(|e| {
            String::from_utf8_lossy(&std::fs::read(e.path().join("environ")).unwrap_or_default())
                .contains(&marker)
        })
        .map(|e| e.file_name().to_string_lossy().to_string())
        .expect("the replica's process");
    std::process::Command::new("kill")
        .arg("-9")
        .arg(&victim)
        .status()
        .unwrap();
    tokio::time::sleep(Duration::from_secs(4)).await;
    let (ok, failed, errors) = load.finish().await;
    assert!(ok > 0);
    assert!(
        failed <= 2,
        "only requests in flight to the killed replica may fail: {errors:?}"
    );
    assert_eq!(env.get().await.unwrap(), "one");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_port_already_taken_is_a_clear_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let server = start(&dir.path().join("data")).await;
    let file = dir.path().join("env.yaml");
    std::fs::write(&file, project(port, "")).unwrap();
    let error = server
        .plane
        .apply_file(
            &file,
            &std::fs::read_to_string(&file).unwrap(),
            &Default::default(),
        )
        .await
        .unwrap_err();
    assert!(error.to_string().contains(&port.to_string()), "{error}");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_definitions_deploy_on_the_docker_runtime() {
    if !gantry_testkit::docker_tests_enabled("the_same_definitions_deploy_on_the_docker_runtime") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = start(&data).await;
    let port = free_port();
    let file = dir.path().join("env.yaml");
    std::fs::write(
        &file,
        project(port, "").replace("runtime: process", "runtime: docker"),
    )
    .unwrap();
    server
        .plane
        .apply_file(
            &file,
            &std::fs::read_to_string(&file).unwrap(),
            &Default::default(),
        )
        .await
        .unwrap();
    let deployer = server.plane.deployer();
    let v1 = push_image(&server, "v1", "one", true, false).await;
    deployer
        .deploy("staging", "web", &v1, "test", &Quiet)
        .await
        .unwrap();
    assert_eq!(get(port).await.unwrap(), "one");
    let v2 = push_image(&server, "v2", "two", true, false).await;
    let load = Load::start(port);
    deployer
        .deploy("staging", "web", &v2, "test", &Quiet)
        .await
        .unwrap();
    let (ok, failed, errors) = load.finish().await;
    assert_eq!(failed, 0, "{errors:?}");
    assert!(ok > 0);
    assert_eq!(get(port).await.unwrap(), "two");
    let status = deployer.environment_status("staging").await.unwrap();
    assert_eq!(status.runtime, "docker");
    let id = status.services[0].replicas[0].id.clone();
    let labels = std::process::Command::new("docker")
        .args([
            "ps",
            "--filter",
            &format!("label=gantry.replica={id}"),
            "--format",
            "{{.Labels}}",
        ])
        .output()
        .unwrap();
    let labels = String::from_utf8_lossy(&labels.stdout).to_string();
    assert!(
        labels.contains("gantry.environment=staging") && labels.contains("gantry.service=web"),
        "{labels}"
    );
    let stopped = deployer.down("staging").await.unwrap();
    assert_eq!(stopped, 2);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blue_green_switches_all_traffic_at_once_after_green_is_healthy() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(&dir.path().join("data")).await;
    let port = free_port();
    let file = dir.path().join("env.yaml");
    let text = project(port, "").replace(
        "deployment: {min_healthy_percent: 100, max_percent: 200, drain: 1s,",
        "deployment: {strategy: blue_green, drain: 1s,",
    );
    std::fs::write(&file, &text).unwrap();
    server
        .plane
        .apply_file(&file, &text, &Default::default())
        .await
        .unwrap();
    let deployer = server.plane.deployer();
    let v1 = push_image(&server, "v1", "one", true, false).await;
    deployer
        .deploy("staging", "web", &v1, "test", &Quiet)
        .await
        .unwrap();
    let v2 = push_image(&server, "v2", "two", true, false).await;
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let (s, out) = (stop.clone(), seen.clone());
    let reader = tokio::spawn(async move {
        for _ in 0..20_000 {
            if s.load(Ordering::Relaxed) {
                break;
            }
            let body = get(port).await.unwrap_or_else(|e| format!("error: {e}"));
            out.lock().unwrap().push(body);
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });
    deployer
        .deploy("staging", "web", &v2, "test", &Quiet)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, Ordering::Relaxed);
    reader.await.unwrap();
    let seen = seen.lock().unwrap().clone();
    assert!(
        seen.iter().all(|b| b == "one" || b == "two"),
        "only answers, no errors: {seen:?}"
    );
    let first_two = seen
        .iter()
        .position(|b| b == "two")
        .expect("green took over");
    assert!(first_two > 0, "blue served while green started");
    assert!(
        seen[first_two..].iter().all(|b| b == "two"),
        "no answer from blue after the switch"
    );
    let _ = deployer.down("staging").await;
    server.shutdown().await;
}
