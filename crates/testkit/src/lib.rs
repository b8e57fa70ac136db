//! Test support shared by gantry's crates (a dev-dependency only): gates on
//! the environment variables that turn heavy tests on, and a real Debian
//! `docker-registry` on a free loopback port; [`browser`]: headless
//! Chromium through chromedriver; [`database`]: the SQLite or PostgreSQL
//! database a store test runs on.

pub mod browser;
pub mod database;

use std::io::{Read, Write};
use std::net::TcpListener as StdListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use gantry_clock::blocking_poll;

/// Whether the tests needing `docker-registry` should run; prints why not.
pub fn registry_tests_enabled(test: &str) -> bool {
    gate("GANTRY_TEST_REGISTRY", test)
}

/// Whether the tests needing dockerd should run; prints why not.
pub fn docker_tests_enabled(test: &str) -> bool {
    gate("GANTRY_TEST_DOCKER", test)
}

/// Whether the tests needing an initialised Docker swarm (`docker swarm
/// init`) should run; prints why not.
pub fn swarm_tests_enabled(test: &str) -> bool {
    gate("GANTRY_TEST_SWARM", test)
}

/// Whether the test may run: `var` is `1`; otherwise prints why it is skipped.
pub fn gate(var: &str, test: &str) -> bool {
    if std::env::var(var).as_deref() == Ok("1") {
        true
    } else {
        println!("skipped {test}: set {var}=1 to run it");
        false
    }
}

/// A `docker-registry` on a free loopback port, storing into a temp dir, killed on drop.
pub struct TestRegistry {
    pub addr: String,
    child: Child,
    pub dir: tempfile::TempDir,
}

impl TestRegistry {
    pub fn start() -> TestRegistry {
        TestRegistry::start_with_tls(None)
    }

    /// With `Some((cert, key))` the registry serves HTTPS with that certificate.
    pub fn start_with_tls(tls: Option<(&Path, &Path)>) -> TestRegistry {
        let mut last_log = String::new();
        // A free port can be taken between finding it and the registry binding it;
        // a few tries make that race harmless.
        for _ in 0..5 {
            let dir = tempfile::tempdir().expect("temp dir");
            let port = free_port();
            let storage = dir.path().join("storage");
            let config = dir.path().join("config.yml");
            std::fs::write(
                &config,
                format!(
                    "version: 0.1\nlog: {{level: warn}}\nstorage: {{filesystem: {{rootdirectory: {}}}, delete: {{enabled: true}}}}\nhttp: {{addr: 127.0.0.1:{port}{}}}\n",
                    storage.display(),
                    match tls {
                        Some((cert, key)) => format!(", tls: {{certificate: {}, key: {}}}", cert.display(), key.display()),
                        None => String::new(),
                    }
                ),
            )
            .expect("write registry config");
            let log = std::fs::File::create(dir.path().join("registry.log")).expect("log file");
            let mut child = Command::new("docker-registry")
                .arg("serve")
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("log file"))
                .stderr(log)
                .spawn()
                .expect("start docker-registry (apt-get install docker-registry)");
            let addr = format!("127.0.0.1:{port}");
            let up = if tls.is_some() {
                wait_for_port(&addr, &mut child)
            } else {
                wait_for_v2(&addr, &mut child)
            };
            if up {
                return TestRegistry { addr, child, dir };
            }
            let _ = child.kill();
            let _ = child.wait();
            last_log = std::fs::read_to_string(dir.path().join("registry.log")).unwrap_or_default();
        }
        panic!("docker-registry did not start:\n{last_log}");
    }
}

impl Drop for TestRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

fn wait_for_port(addr: &str, child: &mut Child) -> bool {
    blocking_poll(Duration::from_secs(20), Duration::from_millis(50), || {
        if let Ok(Some(_)) = child.try_wait() {
            return Some(false);
        }
        std::net::TcpStream::connect(addr).is_ok().then_some(true)
    })
    .unwrap_or(false)
}

fn wait_for_v2(addr: &str, child: &mut Child) -> bool {
    blocking_poll(Duration::from_secs(20), Duration::from_millis(50), || {
        if let Ok(Some(_)) = child.try_wait() {
            return Some(false);
        }
        let mut stream = std::net::TcpStream::connect(addr).ok()?;
        let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
        let request = format!("GET /v2/ HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        let mut answer = String::new();
        (stream.write_all(request.as_bytes()).is_ok()
            && stream.read_to_string(&mut answer).is_ok()
            && answer.starts_with("HTTP/1.1 200"))
        .then_some(true)
    })
    .unwrap_or(false)
}

/// Runs `git -C dir ARGS` as the author "Test <test@example.com>", without
/// signing, and asserts it succeeded: the one way the tests make commits.
pub fn git(dir: &Path, args: &[&str]) {
    git_as(dir, ("Test", "test@example.com"), args);
}

/// [`git`] as another author. The identity is set through the environment,
/// which beats a `GIT_AUTHOR_*` the test runner may export (scripts/test
/// does) as well as any `user.*` config.
pub fn git_as(dir: &Path, (name, email): (&str, &str), args: &[&str]) {
    let status = std::process::Command::new("git")
        .env("GIT_AUTHOR_NAME", name)
        .env("GIT_AUTHOR_EMAIL", email)
        .env("GIT_COMMITTER_NAME", name)
        .env("GIT_COMMITTER_EMAIL", email)
        .arg("-C")
        .arg(dir)
        .args(["-c", "commit.gpgsign=false"])
        .args(args)
        .status()
        .expect("git runs");
    assert!(status.success(), "git {args:?} in {}", dir.display());
}
