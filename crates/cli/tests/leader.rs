//! Several `gantry server` processes on one PostgreSQL database (issue 14):
//! one leads, the others stand by; a leader frozen with SIGSTOP past its
//! lease is replaced, the execution it was running ends as interrupted on
//! the new leader, and when the old one is resumed it writes nothing and
//! steps down. Killing leaders again and again ends with every execution
//! finished once, by whichever server leads.
//!
//! Runs when GANTRY_TEST_POSTGRES names a PostgreSQL server
//! (`scripts/postgres`); skipped otherwise.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{gantry, ok};
use gantry_api::ExecutionView;

/// Every server of one database shares the master key.
const KEY: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

const PIPELINE: &str = r#"
version: 1
name: long
stages:
  - name: Work
    actions:
      - {name: slow, type: shell, commands: ["sleep 4"]}
"#;

const QUICK: &str = r#"
version: 1
name: quick
stages:
  - name: One
    actions:
      - {name: a, type: shell, commands: ["echo one"]}
  - name: Two
    actions:
      - {name: b, type: shell, commands: ["echo two"]}
"#;

struct Node {
    child: Child,
    data: PathBuf,
}

impl Node {
    fn spawn(root: &Path, name: &str, url: &str) -> Node {
        Node::spawn_on(root, name, url, "127.0.0.1:0", "127.0.0.1:0")
    }

    fn spawn_on(root: &Path, name: &str, url: &str, api: &str, registry: &str) -> Node {
        let data = root.join(name);
        std::fs::create_dir_all(&data).unwrap();
        let blobs = root.join("blobs");
        let child = gantry(
            &data,
            &[
                "server",
                "--listen",
                api,
                "--registry-listen",
                registry,
                "--database",
                url,
                "--blob-dir",
                blobs.to_str().unwrap(),
                "--lease-ms",
                "1500",
            ],
        )
        .env("GANTRY_MASTER_KEY", KEY)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(root.join(format!("{name}.log"))).unwrap())
        .spawn()
        .unwrap();
        Node { child, data }
    }

    fn leads(&self) -> bool {
        self.data.join("server.json").exists()
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    fn cli(&self, args: &[&str]) -> String {
        let mut cmd = gantry(&self.data, args);
        let out = cmd.env("GANTRY_MASTER_KEY", KEY).output().unwrap();
        ok(out)
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let found =
        gantry_clock::blocking_poll(limit, Duration::from_millis(50), || done().then_some(()));
    assert!(found.is_some(), "{what} did not happen within {limit:?}");
}

fn events(url: &str) -> i64 {
    let out = Command::new("psql")
        .args([url, "-Atc", "SELECT COUNT(*) FROM events"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

fn executions(node: &Node) -> Vec<ExecutionView> {
    serde_json::from_str(&node.cli(&["executions", "--json"])).unwrap()
}

/// A fresh database on the test server, or None (saying the test is
/// skipped) without GANTRY_TEST_POSTGRES.
fn database() -> Option<String> {
    let Some(server) = gantry_testkit::database::postgres_url() else {
        println!("skipped: set GANTRY_TEST_POSTGRES (scripts/postgres) to run it");
        return None;
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    Some(runtime.block_on(gantry_testkit::database::fresh_postgres_database(&server)))
}

#[test]
fn a_frozen_leader_is_replaced_and_writes_nothing_when_it_wakes() {
    let Some(url) = database() else { return };
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("gantry.yaml");
    std::fs::write(&file, PIPELINE).unwrap();
    let a = Node::spawn(dir.path(), "a", &url);
    wait_until("a leads", Duration::from_secs(60), || a.leads());
    let b = Node::spawn(dir.path(), "b", &url);
    gantry_clock::blocking_sleep(Duration::from_secs(2));
    assert!(!b.leads(), "two servers lead");

    let id = a
        .cli(&["run", "-f", file.to_str().unwrap(), "--no-follow"])
        .trim()
        .to_string();
    wait_until("the action runs", Duration::from_secs(30), || {
        executions(&a)
            .iter()
            .any(|e| e.id == id && e.stages[0].actions[0].status.as_deref() == Some("InProgress"))
    });

    a.signal("-STOP");
    let frozen = gantry_clock::now_ms();
    wait_until("b takes over", Duration::from_secs(30), || b.leads());
    let ended = executions(&b);
    let execution = ended.iter().find(|e| e.id == id).unwrap();
    assert_eq!(execution.status, "Failed", "{execution:#?}");
    let written = events(&url);
    // Its action's process (not frozen) ends meanwhile: a resumes with an
    // event to write at once, before it can notice it lost the lease.
    let waited = u64::try_from(gantry_clock::now_ms() - frozen).unwrap_or(0);
    gantry_clock::blocking_sleep(Duration::from_millis(5000_u64.saturating_sub(waited)));
    a.signal("-CONT");
    // a finds another's token on its lease and steps down, writing nothing.
    let mut a = a;
    let stepped_down =
        gantry_clock::blocking_poll(Duration::from_secs(30), Duration::from_millis(100), || {
            a.child.try_wait().unwrap()
        });
    assert!(stepped_down.is_some(), "the old leader did not step down");
    let said = std::fs::read_to_string(dir.path().join("a.log")).unwrap();
    assert!(
        said.contains("lost the leadership to another server"),
        "{said}"
    );
    assert_eq!(
        events(&url),
        written,
        "the old leader wrote after it was replaced"
    );
    // b goes on leading.
    let quick = dir.path().join("quick.yaml");
    std::fs::write(&quick, QUICK).unwrap();
    let out = b.cli(&["run", "-f", quick.to_str().unwrap(), "--json"]);
    assert!(out.contains("\"Succeeded\""), "{out}");
}

/// A free loopback address (bound and let go).
/// The HTTP status curl gets for `url`, with `extra` arguments.
fn status(extra: &[&str], url: &str) -> String {
    let out = Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}"])
        .args(extra)
        .arg(url)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn free_address() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().to_string()
}

#[test]
fn a_standby_answers_the_api_and_the_registry_by_forwarding_to_the_leader() {
    let Some(url) = database() else { return };
    let dir = tempfile::tempdir().unwrap();
    let quick = dir.path().join("quick.yaml");
    std::fs::write(&quick, QUICK).unwrap();
    let a = Node::spawn(dir.path(), "a", &url);
    wait_until("a leads", Duration::from_secs(60), || a.leads());
    let (api, registry) = (free_address(), free_address());
    let b = Node::spawn_on(dir.path(), "b", &url, &api, &registry);
    wait_until("b stands by", Duration::from_secs(30), || {
        std::fs::read_to_string(dir.path().join("b.log"))
            .is_ok_and(|log| log.contains("standing by"))
    });
    let token = std::fs::read_to_string(a.data.join("admin.token")).unwrap();
    let remote = |args: &[&str]| {
        let mut cmd = gantry(&b.data, args);
        cmd.env("GANTRY_SERVER", format!("http://{api}"))
            .env("GANTRY_TOKEN", token.trim());
        cmd.output().unwrap()
    };
    // A run started through the standby runs on the leader, and is
    // followed to its end through the standby.
    let out = ok(remote(&["run", "-f", quick.to_str().unwrap(), "--json"]));
    assert!(out.contains("\"Succeeded\""), "{out}");
    let listed: Vec<ExecutionView> =
        serde_json::from_str(&ok(remote(&["executions", "--json"]))).unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(
        executions(&a)[0].id,
        listed[0].id,
        "the same execution, on the leader"
    );
    // Without a token the leader refuses, as it would directly.
    assert_eq!(
        status(&[], &format!("http://{api}/api/v1/executions")),
        "401"
    );
    // A name the standby does not answer to is refused by the standby
    // itself (DNS rebinding), not forwarded.
    assert_eq!(
        status(
            &["-H", "Host: evil.example"],
            &format!("http://{api}/api/v1/executions")
        ),
        "421"
    );
    // A request a standby forwarded is never forwarded again (a load
    // balancer in front of all servers could send it back to a standby).
    assert_eq!(
        status(
            &["-H", "x-gantry-forwarded: 1"],
            &format!("http://{api}/api/v1/executions")
        ),
        "503"
    );
    // The registry too.
    let login = format!("gantry:{}", token.trim());
    assert_eq!(
        status(&["-u", &login], &format!("http://{registry}/v2/")),
        "200"
    );
    // The leader stops cleanly: b leads at once, on the same addresses.
    let mut a = a;
    a.signal("-TERM");
    let _ = a.child.wait();
    wait_until("b leads", Duration::from_secs(30), || b.leads());
    let out = ok(remote(&["run", "-f", quick.to_str().unwrap(), "--json"]));
    assert!(out.contains("\"Succeeded\""), "{out}");
}

#[test]
fn killing_leaders_again_and_again_finishes_every_execution_once() {
    let Some(url) = database() else { return };
    let dir = tempfile::tempdir().unwrap();
    let quick = dir.path().join("quick.yaml");
    std::fs::write(&quick, QUICK).unwrap();
    let mut nodes: Vec<Node> = ["a", "b", "c"]
        .iter()
        .map(|n| Node::spawn(dir.path(), n, &url))
        .collect();
    let mut started = Vec::new();
    for round in 0..3 {
        let mut leader = None;
        wait_until("a leader", Duration::from_secs(60), || {
            leader = nodes.iter().position(Node::leads);
            leader.is_some()
        });
        let leader = leader.unwrap();
        assert_eq!(nodes.iter().filter(|n| n.leads()).count(), 1, "two leaders");
        for _ in 0..2 {
            let id = nodes[leader]
                .cli(&["run", "-f", quick.to_str().unwrap(), "--no-follow"])
                .trim()
                .to_string();
            started.push(id);
        }
        // Kill it while what it started may still run; a standby takes over.
        let mut dead = nodes.remove(leader);
        dead.signal("-KILL");
        let _ = dead.child.wait();
        let _ = std::fs::remove_file(dead.data.join("server.json"));
        let name = format!("r{round}");
        nodes.push(Node::spawn(dir.path(), &name, &url));
    }
    let mut leader = None;
    wait_until("a last leader", Duration::from_secs(60), || {
        leader = nodes.iter().position(Node::leads);
        leader.is_some()
    });
    let node = &nodes[leader.unwrap()];
    wait_until("every execution finished", Duration::from_secs(60), || {
        let all = executions(node);
        started
            .iter()
            .all(|id| all.iter().any(|e| &e.id == id && e.is_finished()))
    });
    let all = executions(node);
    assert_eq!(
        all.len(),
        started.len(),
        "an execution ran twice or went missing"
    );
    // Each action ended once: one terminal event per action attempt.
    let out = Command::new("psql")
        .args([
            &url,
            "-Atc",
            "SELECT COUNT(*) FROM (SELECT execution_id, body::json->>'stage', body::json->>'action', \
             body::json->>'attempt', COUNT(*) AS n FROM events \
             WHERE body::json->>'type' IN ('action_succeeded', 'action_failed') \
             GROUP BY 1, 2, 3, 4) AS ends WHERE n > 1",
        ])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "0",
        "an action ended twice"
    );
}

const SHIP: &str = r##"
version: 1
name: ship
execution_mode: queued
stages:
  - name: Build
    actions:
      - name: files
        type: shell
        outputs: [app]
        commands:
          - mkdir -p www && cp /bin/busybox busybox && echo ok > www/health
          - echo "#{gantry.ExecutionId}" > www/index.html
        artifacts: {files: ["**/*"]}
  - name: Image
    actions:
      - name: web
        type: image
        inputs: [app]
        outputs: [defs]
        repository: shop/web
        entrypoint: ["/app/busybox", "httpd", "-f", "-p", "8080", "-h", "/app/www"]
        port: 8080
  - name: Deploy
    actions:
      - {name: web, type: deploy, environment: staging, service: web, inputs: [defs]}
"##;

fn environment(port: u16) -> String {
    format!(
        r#"
version: 1
environments:
  staging:
    runtime: docker
    load_balancer:
      listen: 127.0.0.1:{port}
      rules:
        - {{priority: 10, path: "/*", service: web}}
services:
  web:
    replicas: 1
    health_check: {{path: /health, interval: 1s, timeout: 500ms, healthy_threshold: 2, unhealthy_threshold: 2, grace_period: 0s}}
    deployment: {{min_healthy_percent: 100, max_percent: 200, drain: 0s}}
"#
    )
}

/// The leader is killed again and again while a pipeline that builds an
/// image and deploys it to a docker environment runs: every execution
/// ends once, each replica the leaders started is adopted by the next
/// (they share the database's cluster id as owner), and the last
/// execution's deploy serves.
#[test]
fn killing_leaders_while_a_pipeline_deploys_ends_every_execution_once() {
    let Some(url) = database() else { return };
    if !gantry_testkit::docker_tests_enabled(
        "killing_leaders_while_a_pipeline_deploys_ends_every_execution_once",
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let ship = dir.path().join("ship.yaml");
    std::fs::write(&ship, SHIP).unwrap();
    let port = free_address()
        .rsplit_once(':')
        .unwrap()
        .1
        .parse::<u16>()
        .unwrap();
    let env = dir.path().join("env.yaml");
    std::fs::write(&env, environment(port)).unwrap();
    let mut nodes: Vec<Node> = ["a", "b", "c"]
        .iter()
        .map(|n| Node::spawn(dir.path(), n, &url))
        .collect();
    let leader_of = |nodes: &[Node]| {
        let mut leader = None;
        wait_until("a leader", Duration::from_secs(60), || {
            leader = nodes.iter().position(Node::leads);
            leader.is_some()
        });
        leader.unwrap()
    };
    let first = leader_of(&nodes);
    nodes[first].cli(&["apply", "-f", env.to_str().unwrap()]);
    let mut started = Vec::new();
    // Each round kills the leader while its deploy runs, at another point.
    for (round, wait_ms) in [0_u64, 700, 1500].into_iter().enumerate() {
        let leader = leader_of(&nodes);
        assert_eq!(nodes.iter().filter(|n| n.leads()).count(), 1, "two leaders");
        let id = nodes[leader]
            .cli(&["run", "-f", ship.to_str().unwrap(), "--no-follow"])
            .trim()
            .to_string();
        wait_until("the deploy runs", Duration::from_secs(60), || {
            executions(&nodes[leader]).iter().any(|e| {
                e.id == id && e.stages[2].actions[0].status.as_deref() == Some("InProgress")
            })
        });
        started.push(id);
        gantry_clock::blocking_sleep(Duration::from_millis(wait_ms));
        let mut dead = nodes.remove(leader);
        dead.signal("-KILL");
        let _ = dead.child.wait();
        let _ = std::fs::remove_file(dead.data.join("server.json"));
        nodes.push(Node::spawn(dir.path(), &format!("r{round}"), &url));
    }
    // The last leader runs one through, with nobody killed.
    let leader = leader_of(&nodes);
    let node = &nodes[leader];
    let out = node.cli(&["run", "-f", ship.to_str().unwrap(), "--json"]);
    let last: ExecutionView = serde_json::from_str(&out).unwrap();
    assert_eq!(last.status, "Succeeded", "{out}");
    started.push(last.id.clone());
    wait_until("every execution finished", Duration::from_secs(60), || {
        let all = executions(node);
        started
            .iter()
            .all(|id| all.iter().any(|e| &e.id == id && e.is_finished()))
    });
    let all = executions(node);
    for e in &all {
        let failed: Vec<String> = e
            .stages
            .iter()
            .flat_map(|s| s.actions.iter().map(move |a| (s, a)))
            .filter_map(|(s, a)| {
                a.error
                    .as_ref()
                    .map(|err| format!("{}/{}: {err}", s.name, a.name))
            })
            .collect();
        println!("{} {} {failed:?}", e.id, e.status);
    }
    assert_eq!(
        all.len(),
        started.len(),
        "an execution ran twice or went missing"
    );
    let psql = |sql: &str| {
        let out = Command::new("psql")
            .args([&url, "-Atc", sql])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    assert_eq!(
        psql(
            "SELECT COUNT(*) FROM (SELECT execution_id, body::json->>'stage', body::json->>'action', \
             body::json->>'attempt', COUNT(*) AS n FROM events \
             WHERE body::json->>'type' IN ('action_succeeded', 'action_failed') \
             GROUP BY 1, 2, 3, 4) AS ends WHERE n > 1"
        ),
        "0",
        "an action ended twice"
    );
    // The load balancer serves what the last execution deployed.
    let served = Command::new("curl")
        .args(["-s", "--max-time", "5"])
        .arg(format!("http://127.0.0.1:{port}/"))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&served.stdout).trim(), last.id);
    // One replica runs: what earlier leaders started was adopted and
    // replaced, not left behind.
    let owner = format!(
        "gantry.owner=gantry-cluster:{}",
        psql("SELECT holder FROM gantry_lease WHERE name = 'cluster'")
    );
    let running = Command::new("docker")
        .args(["ps", "-q", "--filter", &format!("label={owner}")])
        .output()
        .unwrap();
    let count = String::from_utf8_lossy(&running.stdout).lines().count();
    node.cli(&["env", "down", "staging"]);
    assert_eq!(count, 1, "replicas of the cluster running");
}
