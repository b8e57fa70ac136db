//! The deploy suite on the swarm runtime, against a real (single-node)
//! swarm: the same definitions as on the process runtime with only the
//! environment's `runtime:` line changed. A rolling deploy under continuous
//! requests drops none; a revision failing its health checks and one whose
//! program exits are rolled back by the circuit breaker while the previous
//! revision serves; a restarted server re-adopts the services; a killed
//! task is restarted by Swarm. Run with GANTRY_TEST_SWARM=1 (dockerd after
//! `docker swarm init`, Debian's busybox-static).

mod support;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use gantry_images::{ImageSpec, Reference, build_image};
use gantry_server::RunningServer;
use support::Quiet;

/// Pushes a busybox httpd image to the server's registry: its index says
/// `body`, /health answers when `healthy`, `crash` exits at once.
async fn push_image(
    server: &RunningServer,
    tag: &str,
    body: &str,
    healthy: bool,
    crash: bool,
) -> String {
    let dir = tempfile::tempdir().unwrap();
    let site = dir.path().join("site");
    std::fs::create_dir_all(site.join("www")).unwrap();
    std::fs::copy("/bin/busybox", site.join("busybox")).expect("apt-get install busybox-static");
    std::fs::write(site.join("www/index.html"), body).unwrap();
    if healthy {
        std::fs::write(site.join("www/health"), "ok").unwrap();
    }
    let mut spec = ImageSpec::new(&site);
    spec.workdir = Some("/app".into());
    let script = if crash {
        "exit 3"
    } else {
        "exec /app/busybox httpd -f -p $PORT -h www"
    };
    spec.entrypoint = Some(vec![
        "/app/busybox".into(),
        "sh".into(),
        "-c".into(),
        script.into(),
    ]);
    let target = Reference::parse(&format!("{}/test/web:{tag}", server.registry)).unwrap();
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

fn project(port: u16) -> String {
    format!(
        r#"
version: 1
environments:
  staging:
    runtime: swarm
    load_balancer:
      listen: 127.0.0.1:{port}
      rules:
        - {{priority: 10, path: "/*", service: web}}
services:
  web:
    replicas: 2
    health_check: {{path: /health, interval: 2s, timeout: 1s, healthy_threshold: 2, unhealthy_threshold: 2, grace_period: 0s}}
    deployment: {{min_healthy_percent: 100, max_percent: 200, drain: 1s, circuit_breaker: {{threshold: 2, rollback: true}}}}
"#
    )
}

async fn start(data: &Path) -> RunningServer {
    let listen = "127.0.0.1:0".parse().unwrap();
    RunningServer::start(data, listen, listen).await.unwrap()
}

fn docker(args: &[&str]) -> String {
    let out = std::process::Command::new("docker")
        .args(args)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Removes the services of the test's server (owner: its data dir) when dropped.
struct Services(PathBuf);

impl Services {
    fn ids(&self) -> Vec<String> {
        let filter = format!("label=gantry.owner={}", self.0.display());
        docker(&["service", "ls", "-q", "--filter", &filter])
            .split_whitespace()
            .map(str::to_owned)
            .collect()
    }
}

impl Drop for Services {
    fn drop(&mut self) {
        for id in self.ids() {
            docker(&["service", "rm", &id]);
        }
    }
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
    task: tokio::task::JoinHandle<Vec<String>>,
}

impl Load {
    fn start(port: u16) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicU64::new(0));
        let (s, o) = (stop.clone(), ok.clone());
        let task = tokio::spawn(async move {
            let mut errors = Vec::new();
            for _ in 0..20_000 {
                if s.load(Ordering::Relaxed) {
                    break;
                }
                match get(port).await {
                    Ok(_) => {
                        o.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => errors.push(e),
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            errors
        });
        Load { stop, ok, task }
    }

    /// (successes, failures).
    async fn finish(self) -> (u64, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        let errors = self.task.await.unwrap();
        (self.ok.load(Ordering::Relaxed), errors)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_deploy_suite_passes_on_the_swarm_runtime() {
    if !gantry_testkit::swarm_tests_enabled("the_deploy_suite_passes_on_the_swarm_runtime") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut server = start(&data).await;
    let services = Services(data.clone());
    let port = free_port();
    let file = dir.path().join("env.yaml");
    std::fs::write(&file, project(port)).unwrap();
    server
        .plane
        .apply_file(&file, &project(port), &Default::default())
        .await
        .unwrap();
    let v1 = push_image(&server, "v1", "one", true, false).await;
    let began = tokio::time::Instant::now();
    server
        .plane
        .deployer()
        .deploy("staging", "web", &v1, "test", &Quiet)
        .await
        .unwrap();
    println!(
        "first deploy (2 replicas) healthy after {:?}",
        began.elapsed()
    );
    assert_eq!(get(port).await.unwrap(), "one");
    let status = server
        .plane
        .deployer()
        .environment_status("staging")
        .await
        .unwrap();
    assert_eq!(status.runtime, "swarm");
    assert_eq!(services.ids().len(), 2, "one service per replica");
    let id = status.services[0].replicas[0].id.clone();
    let labels = docker(&[
        "service",
        "inspect",
        "--format",
        "{{json .Spec.Labels}}",
        &format!("gantry-{id}"),
    ]);
    assert!(
        labels.contains(r#""gantry.environment":"staging""#)
            && labels.contains(r#""gantry.service":"web""#)
            && labels.contains(v1.split_once('@').unwrap().1),
        "{labels}"
    );

    // A rolling deploy under continuous requests drops none.
    let v2 = push_image(&server, "v2", "two", true, false).await;
    let load = Load::start(port);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let began = tokio::time::Instant::now();
    let outcome = server
        .plane
        .deployer()
        .deploy("staging", "web", &v2, "test", &Quiet)
        .await
        .unwrap();
    println!("rolling deploy took {:?}", began.elapsed());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (ok, errors) = load.finish().await;
    assert_eq!(outcome.revision, 2);
    assert!(
        errors.is_empty(),
        "requests failed during a rolling deploy: {errors:?}"
    );
    assert!(ok > 20, "the load ran ({ok} requests)");
    assert_eq!(get(port).await.unwrap(), "two");
    assert_eq!(services.ids().len(), 2, "the old services are removed");

    // Failing health checks: the breaker trips, v2 keeps serving, nothing is left over.
    let broken = push_image(&server, "broken", "three", false, false).await;
    let load = Load::start(port);
    let error = server
        .plane
        .deployer()
        .deploy("staging", "web", &broken, "test", &Quiet)
        .await
        .unwrap_err();
    let (ok, errors) = load.finish().await;
    assert_eq!(error.code(), "deploy.circuit_breaker", "{error}");
    assert!(error.to_string().contains("rolled back"), "{error}");
    assert!(
        errors.is_empty(),
        "requests failed during a failed deploy: {errors:?}"
    );
    assert!(ok > 0);
    assert_eq!(get(port).await.unwrap(), "two");
    // A program that exits at once fails the same way.
    let crash = push_image(&server, "crash", "four", true, true).await;
    let error = server
        .plane
        .deployer()
        .deploy("staging", "web", &crash, "test", &Quiet)
        .await
        .unwrap_err();
    assert_eq!(error.code(), "deploy.circuit_breaker", "{error}");
    assert!(error.to_string().contains("exited"), "{error}");
    assert_eq!(get(port).await.unwrap(), "two");
    let status = server
        .plane
        .deployer()
        .environment_status("staging")
        .await
        .unwrap();
    assert_eq!(status.services[0].revision, Some(2));
    assert_eq!(
        services.ids().len(),
        2,
        "the failed revisions' services are removed"
    );

    // A restarted server re-adopts the services: same replicas, no duplicate.
    let before: Vec<String> = status.services[0]
        .replicas
        .iter()
        .map(|r| r.id.clone())
        .collect();
    server.shutdown().await;
    assert_eq!(services.ids().len(), 2, "services outlive the server");
    server = start(&data).await;
    let after: Vec<String> = server
        .plane
        .deployer()
        .environment_status("staging")
        .await
        .unwrap()
        .services[0]
        .replicas
        .iter()
        .map(|r| r.id.clone())
        .collect();
    assert_eq!(before, after);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while get(port).await.is_err() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the load balancer came back"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(services.ids().len(), 2);

    // A killed task: Swarm restarts it; the other replica serves meanwhile.
    let load = Load::start(port);
    let filter = format!("label=com.docker.swarm.service.name=gantry-{}", after[0]);
    let container = docker(&["ps", "-q", "--filter", &filter]);
    docker(&["kill", container.trim()]);
    tokio::time::sleep(Duration::from_secs(5)).await;
    let (ok, errors) = load.finish().await;
    assert!(ok > 0);
    assert!(
        errors.len() <= 2,
        "only requests in flight to the killed task may fail: {errors:?}"
    );
    assert_eq!(get(port).await.unwrap(), "two");

    let stopped = server.plane.deployer().down("staging").await.unwrap();
    assert_eq!(stopped, 2);
    assert!(services.ids().is_empty(), "down removes the services");
    server.shutdown().await;
}
