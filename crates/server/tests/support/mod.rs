//! What the server tests that deploy share: a deploy log printed to the
//! test's output, and a guard that kills the replicas a test's server
//! started (replicas outlive servers by design).

#![allow(dead_code)]

use std::path::PathBuf;

/// A deploy log that prints each line, for the test's output.
pub(crate) struct Quiet;

impl gantry_deploy::DeployLog for Quiet {
    fn line(&self, line: &str) {
        eprintln!("deploy: {line}");
    }
}

/// Kills, when dropped, every process whose environment names the data
/// dir's `replicas/` (the replicas the test's server started).
pub(crate) struct Replicas(pub(crate) PathBuf);

impl Drop for Replicas {
    fn drop(&mut self) {
        let marker = self.0.join("replicas").display().to_string();
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let environ = std::fs::read(entry.path().join("environ")).unwrap_or_default();
            if String::from_utf8_lossy(&environ).contains(&marker)
                && let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>()
            {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
    }
}

/// An environment `staging` (process runtime, load balancer on PORT, to be
/// replaced) with one service `web` behind `/*`, health-checked on
/// `/health`.
pub(crate) const WEB_PROJECT: &str = r#"
version: 1
environments:
  staging:
    runtime: process
    load_balancer:
      listen: 127.0.0.1:PORT
      rules:
        - {priority: 10, path: "/*", service: web}
services:
  web:
    replicas: 1
    health_check: {path: /health, interval: 2s, timeout: 1s, healthy_threshold: 2, unhealthy_threshold: 2, grace_period: 0s}
    deployment: {min_healthy_percent: 100, max_percent: 200, drain: 0s}
"#;

/// A busybox httpd image serving `body` at `/` (and `ok` at `/health`),
/// which runs the shell text `before` first and has `env` in its config,
/// built into the embedded registry as `test/web:TAG`; returns it pinned
/// by digest. Needs Debian's busybox-static.
pub(crate) async fn push_web(
    server: &gantry_server::RunningServer,
    tag: &str,
    body: &str,
    before: &str,
    env: &[(&str, &str)],
) -> String {
    let dir = tempfile::tempdir().unwrap();
    let site = dir.path().join("site");
    std::fs::create_dir_all(site.join("www")).unwrap();
    std::fs::copy("/bin/busybox", site.join("busybox"))
        .expect("these tests need Debian's busybox-static: apt-get install busybox-static");
    std::fs::write(site.join("www/index.html"), body).unwrap();
    std::fs::write(site.join("www/health"), "ok").unwrap();
    let mut spec = gantry_images::ImageSpec::new(&site);
    spec.workdir = Some("/app".into());
    spec.env = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    spec.entrypoint = Some(vec![
        "/app/busybox".into(),
        "sh".into(),
        "-c".into(),
        format!("{before}exec $GANTRY_ROOTFS/app/busybox httpd -f -p $PORT -h www"),
    ]);
    let target =
        gantry_images::Reference::parse(&format!("{}/test/web:{tag}", server.registry)).unwrap();
    let built = gantry_images::build_image(&spec, &target, server.plane.images())
        .await
        .unwrap();
    target.with_digest(&built.digest).to_string()
}

/// The digest of an image reference pinned by digest.
pub(crate) fn digest_of(image: &str) -> &str {
    image.split_once('@').unwrap().1
}
