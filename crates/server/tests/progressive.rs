//! Progressive deployments end to end on the process runtime (and a canary,
//! a linear shift and blue/green on docker, with GANTRY_TEST_DOCKER=1): busybox httpd replicas behind
//! the built-in load balancer, real requests counted by the revision that
//! answered them. A canary moves by weight and loses nothing, a revision
//! that fails a fifth of its requests is rolled back by its analysis, the
//! canary header reaches the new revision at 0%, and a blue/green test
//! listener reaches green before a switch and a switch back that lose
//! nothing.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gantry_deploy::{DeployError, ShiftCommand};
use gantry_server::RunningServer;
use support::{Quiet, Replicas};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A busybox httpd image answering `body` at `/`, `ok` at `/health`, and
/// at `/cgi-bin/app` `body` — or, when `failing`, a 500 for about one
/// request in five (those whose CGI process id is a multiple of 5).
async fn push_site(server: &RunningServer, tag: &str, body: &str, failing: bool) -> String {
    let dir = tempfile::tempdir().unwrap();
    let site = dir.path().join("site");
    std::fs::create_dir_all(site.join("www/cgi-bin")).unwrap();
    std::fs::copy("/bin/busybox", site.join("busybox"))
        .expect("these tests need Debian's busybox-static: apt-get install busybox-static");
    std::fs::write(site.join("www/index.html"), body).unwrap();
    std::fs::write(site.join("www/health"), "ok").unwrap();
    let fail = if failing { "$(( $$ % 5 ))" } else { "1" };
    let cgi = format!(
        "#!/bin/sh\nif [ {fail} -eq 0 ]; then\n  printf 'HTTP/1.0 500 Internal Server Error\\r\\nContent-Type: text/plain\\r\\n\\r\\nfail'\nelse\n  printf 'HTTP/1.0 200 OK\\r\\nContent-Type: text/plain\\r\\n\\r\\n{body}'\nfi\n"
    );
    let script = site.join("www/cgi-bin/app");
    std::fs::write(&script, cgi).unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut spec = gantry_images::ImageSpec::new(&site);
    spec.workdir = Some("/app".into());
    spec.entrypoint = Some(vec![
        "/app/busybox".into(),
        "sh".into(),
        "-c".into(),
        "exec $GANTRY_ROOTFS/app/busybox httpd -f -p $PORT -h www".into(),
    ]);
    let target =
        gantry_images::Reference::parse(&format!("{}/test/site:{tag}", server.registry)).unwrap();
    let built = gantry_images::build_image(&spec, &target, server.plane.images())
        .await
        .unwrap();
    target.with_digest(&built.digest).to_string()
}

struct Env {
    _dir: tempfile::TempDir,
    server: RunningServer,
    port: u16,
    _replicas: Replicas,
}

impl Env {
    async fn new(runtime: &str, replicas: u32, deployment: &str) -> Env {
        let dir = tempfile::tempdir().unwrap();
        let data: PathBuf = dir.path().join("data");
        let listen = "127.0.0.1:0".parse().unwrap();
        let server = RunningServer::start(&data, listen, listen).await.unwrap();
        let port = free_port();
        let text = format!(
            r#"
version: 1
environments:
  staging:
    runtime: {runtime}
    load_balancer:
      listen: 127.0.0.1:{port}
      rules:
        - {{priority: 10, path: "/*", service: web}}
services:
  web:
    replicas: {replicas}
    health_check: {{path: /health, interval: 1s, timeout: 500ms, healthy_threshold: 2, unhealthy_threshold: 2, grace_period: 0s}}
    deployment: {deployment}
"#
        );
        let file = dir.path().join("env.yaml");
        std::fs::write(&file, &text).unwrap();
        server
            .plane
            .apply_file(&file, &text, &Default::default())
            .await
            .unwrap();
        Env {
            _replicas: Replicas(data),
            _dir: dir,
            server,
            port,
        }
    }

    fn deployer(&self) -> gantry_deploy::Deployer {
        self.server.plane.deployer().clone()
    }

    async fn deploy(&self, image: &str) -> Result<gantry_deploy::DeployOutcome, DeployError> {
        self.deployer()
            .deploy("staging", "web", image, "test", &Quiet)
            .await
    }

    fn deploy_in_background(
        &self,
        image: &str,
    ) -> tokio::task::JoinHandle<Result<gantry_deploy::DeployOutcome, DeployError>> {
        let deployer = self.deployer();
        let image = image.to_string();
        tokio::spawn(async move {
            deployer
                .deploy("staging", "web", &image, "test", &Quiet)
                .await
        })
    }

    /// Revision `revision`'s share of the traffic as status computes it.
    async fn share(&self, revision: u64) -> u32 {
        self.deployer()
            .environment_status("staging")
            .await
            .unwrap()
            .services[0]
            .traffic
            .iter()
            .find(|t| t.revision == revision)
            .map_or(0, |t| t.percent)
    }

    async fn wait_share(&self, revision: u64, percent: u32) {
        for _ in 0..600 {
            if self.share(revision).await == percent {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("revision {revision} never took {percent}%");
    }

    async fn control(&self, command: ShiftCommand) {
        self.deployer()
            .control_shift("staging", "web", command)
            .await
            .unwrap();
    }
}

/// One request on a new connection: the status code and the body.
async fn request(port: u16, path: &str, header: Option<&str>) -> Result<(u16, String), String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .map_err(|e| e.to_string())?;
    let extra = header.map_or(String::new(), |h| format!("{h}\r\n"));
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: test\r\n{extra}Connection: close\r\n\r\n")
                .as_bytes(),
        )
        .await
        .map_err(|e| e.to_string())?;
    let mut response = String::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_string(&mut response))
        .await
        .map_err(|_| "timeout".to_string())?
        .map_err(|e| e.to_string())?;
    let status = response
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("not HTTP: {response:?}"))?;
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    Ok((
        status,
        if chunked {
            dechunk(body)
        } else {
            body.to_string()
        },
    ))
}

/// A chunked body's data (the CGI answers, whose length the proxy does
/// not know, come chunked).
fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if size == 0 || rest.len() < size {
            break;
        }
        out.push_str(&rest[..size]);
        body = rest[size..].trim_start_matches("\r\n");
    }
    out
}

/// A request's status and body, or why it got none.
type Answer = Result<(u16, String), String>;

/// Requests in a loop from `workers` clients until stopped; every answer
/// (or failure) recorded.
struct Load {
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Vec<Answer>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    fn start(port: u16, path: &'static str, workers: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let tasks = (0..workers)
            .map(|_| {
                let (stop, seen) = (stop.clone(), seen.clone());
                tokio::spawn(async move {
                    // Bounded: at most 50,000 requests per client.
                    for _ in 0..50_000 {
                        if stop.load(Ordering::Relaxed) {
                            break;
                        }
                        let answer = request(port, path, None).await;
                        seen.lock().unwrap().push(answer);
                        tokio::time::sleep(Duration::from_millis(2)).await;
                    }
                })
            })
            .collect();
        Load { stop, seen, tasks }
    }

    /// How many answers so far.
    fn count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }

    /// The answers from index `from` on.
    fn since(&self, from: usize) -> Vec<Answer> {
        self.seen.lock().unwrap()[from..].to_vec()
    }

    async fn finish(self) -> Vec<Answer> {
        self.stop.store(true, Ordering::Relaxed);
        for task in self.tasks {
            task.await.unwrap();
        }
        self.seen.lock().unwrap().clone()
    }
}

fn failures(answers: &[Answer]) -> Vec<String> {
    answers
        .iter()
        .filter_map(|a| match a {
            Ok((200, _)) => None,
            Ok((status, body)) => Some(format!("{status} {body}")),
            Err(e) => Some(e.clone()),
        })
        .collect()
}

fn bodies(answers: &[Answer], body: &str) -> usize {
    answers
        .iter()
        .filter(|a| matches!(a, Ok((200, b)) if b == body))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_moves_traffic_by_weight_loses_no_request_and_answers_the_header_at_zero() {
    let deployment = "{strategy: steps, steps: [{weight: 0}, {pause: manual}, {weight: 10}, {pause: manual}, {weight: 100}], drain: 1s}";
    let env = Env::new("process", 2, deployment).await;
    let v1 = push_site(&env.server, "v1", "one", false).await;
    let v2 = push_site(&env.server, "v2", "two", false).await;
    env.deploy(&v1).await.unwrap();
    let load = Load::start(env.port, "/", 3);

    let rollout = env.deploy_in_background(&v2);
    // Weight 0: only the header reaches the new revision.
    for _ in 0..600 {
        if env
            .deployer()
            .environment_status("staging")
            .await
            .unwrap()
            .services[0]
            .replicas
            .len()
            == 4
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let always = Some("X-Gantry-Canary: always");
    let never = Some("X-Gantry-Canary: never");
    for _ in 0..5 {
        assert_eq!(request(env.port, "/", always).await.unwrap().1, "two");
        assert_eq!(request(env.port, "/", never).await.unwrap().1, "one");
        assert_eq!(request(env.port, "/", None).await.unwrap().1, "one");
    }

    // 10%: about a tenth of the requests.
    env.control(ShiftCommand::Promote { full: false }).await;
    env.wait_share(2, 10).await;
    let from = load.count();
    while load.count() < from + 600 {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let window = load.since(from);
    let two = bodies(&window, "two") as f64 * 100.0 / window.len() as f64;
    assert!(
        (5.0..=15.0).contains(&two),
        "revision 2 answered {two:.1}% of {} requests at weight 10",
        window.len()
    );
    assert_eq!(request(env.port, "/", never).await.unwrap().1, "one");

    env.control(ShiftCommand::Promote { full: false }).await;
    rollout.await.unwrap().unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let seen = load.finish().await;
    assert_eq!(failures(&seen), Vec::<String>::new(), "no request lost");
    assert!(seen.len() > 700, "{} requests", seen.len());
    assert_eq!(request(env.port, "/", None).await.unwrap().1, "two");
    assert_eq!(env.share(2).await, 100);
    let _ = env.deployer().down("staging").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revision_failing_a_fifth_of_its_requests_is_rolled_back_by_its_analysis() {
    let deployment = "{strategy: canary, canary: {percent: 50, interval: 2s}, analysis: {max_error_rate: 1%, min_requests: 30, window: 5s}, drain: 1s}";
    let env = Env::new("process", 2, deployment).await;
    let v1 = push_site(&env.server, "v1", "one", false).await;
    let bad = push_site(&env.server, "bad", "two", true).await;
    env.deploy(&v1).await.unwrap();
    let load = Load::start(env.port, "/cgi-bin/app", 3);

    let error = env.deploy(&bad).await.unwrap_err();

    let seen = load.finish().await;
    assert_eq!(error.code(), "deploy.analysis_failed", "{error}");
    let text = error.to_string();
    assert!(
        text.contains("error rate") && text.contains("requests > 1%"),
        "{text}"
    );
    // What failed was the canary's own 500s: no request found no target.
    let failed = failures(&seen);
    assert!(
        failed.iter().all(|f| f == "500 fail"),
        "only the canary's 500s: {failed:?}"
    );
    assert!(!failed.is_empty(), "the canary served its 500s");
    for _ in 0..10 {
        assert_eq!(
            request(env.port, "/cgi-bin/app", None).await.unwrap(),
            (200, "one".to_string())
        );
    }
    let status = env.deployer().environment_status("staging").await.unwrap();
    let web = &status.services[0];
    assert_eq!(web.revision, Some(1));
    assert_eq!(web.deployments[0].status, "RolledBack");
    assert!(web.replicas.iter().all(|r| r.revision == 1));
    let _ = env.deployer().down("staging").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blue_green_test_listener_reaches_green_first_and_switching_there_and_back_loses_nothing() {
    blue_green_there_and_back("process").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blue_green_on_the_docker_runtime_switches_there_and_back_losing_nothing() {
    if !gantry_testkit::docker_tests_enabled("blue_green_on_the_docker_runtime") {
        return;
    }
    blue_green_there_and_back("docker").await;
}

/// Blue/green on `runtime`: green reachable on the test listener before the
/// switch, then switched to and (within termination_wait) back, with no
/// request lost.
async fn blue_green_there_and_back(runtime: &str) {
    let test_port = free_port();
    let deployment = format!(
        "{{strategy: blue_green, blue_green: {{test_listener: 127.0.0.1:{test_port}, shift_after: manual, termination_wait: 5m}}, drain: 1s}}"
    );
    let env = Env::new(runtime, 2, &deployment).await;
    let v1 = push_site(&env.server, "v1", "one", false).await;
    let v2 = push_site(&env.server, "v2", "two", false).await;
    env.deploy(&v1).await.unwrap();
    let load = Load::start(env.port, "/", 3);

    let rollout = env.deploy_in_background(&v2);
    let mut green = None;
    for _ in 0..600 {
        if let Ok(answer) = request(test_port, "/", None).await {
            green = Some(answer);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        green,
        Some((200, "two".to_string())),
        "green on the test listener"
    );
    assert_eq!(
        request(env.port, "/", None).await.unwrap().1,
        "one",
        "blue in production"
    );

    env.control(ShiftCommand::Promote { full: false }).await;
    env.wait_share(2, 100).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(request(env.port, "/", None).await.unwrap().1, "two");
    assert!(
        request(test_port, "/", None).await.is_err(),
        "the test listener closes at the switch"
    );

    // Within termination_wait: back to blue at once.
    env.control(ShiftCommand::Abort {
        by: "tester".into(),
    })
    .await;
    let error = rollout.await.unwrap().unwrap_err();
    assert_eq!(error.code(), "deploy.aborted");
    assert!(error.to_string().contains("aborted by tester"));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let seen = load.finish().await;
    assert_eq!(failures(&seen), Vec::<String>::new(), "no request lost");
    let switched = seen
        .iter()
        .position(|a| matches!(a, Ok((_, b)) if b == "two"))
        .expect("green served after the switch");
    assert!(switched > 0, "blue served first");
    assert_eq!(request(env.port, "/", None).await.unwrap().1, "one");
    let _ = env.deployer().down("staging").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_on_the_docker_runtime_loses_no_request() {
    if !gantry_testkit::docker_tests_enabled("a_canary_on_the_docker_runtime_loses_no_request") {
        return;
    }
    let deployment = "{strategy: canary, canary: {percent: 50, interval: 3s}, drain: 1s}";
    let env = Env::new("docker", 2, deployment).await;
    let v1 = push_site(&env.server, "v1", "one", false).await;
    let v2 = push_site(&env.server, "v2", "two", false).await;
    env.deploy(&v1).await.unwrap();
    let load = Load::start(env.port, "/", 2);

    let rollout = env.deploy_in_background(&v2);
    env.wait_share(2, 50).await;
    let from = load.count();
    while load.count() < from + 100 {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let window = load.since(from);
    assert!(bodies(&window, "two") > 0 && bodies(&window, "one") > 0);
    rollout.await.unwrap().unwrap();
    let seen = load.finish().await;
    assert_eq!(failures(&seen), Vec::<String>::new());
    assert_eq!(request(env.port, "/", None).await.unwrap().1, "two");
    let _ = env.deployer().down("staging").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_linear_shift_on_the_docker_runtime_loses_no_request() {
    if !gantry_testkit::docker_tests_enabled("a_linear_shift_on_the_docker_runtime") {
        return;
    }
    let deployment = "{strategy: linear, linear: {percent: 50, every: 2s}, drain: 1s}";
    let env = Env::new("docker", 2, deployment).await;
    let v1 = push_site(&env.server, "v1", "one", false).await;
    let v2 = push_site(&env.server, "v2", "two", false).await;
    env.deploy(&v1).await.unwrap();
    let load = Load::start(env.port, "/", 2);
    let rollout = env.deploy_in_background(&v2);
    env.wait_share(2, 50).await;
    rollout.await.unwrap().unwrap();
    let seen = load.finish().await;
    assert_eq!(failures(&seen), Vec::<String>::new());
    assert!(bodies(&seen, "one") > 0 && bodies(&seen, "two") > 0);
    assert_eq!(request(env.port, "/", None).await.unwrap().1, "two");
    let _ = env.deployer().down("staging").await;
}
