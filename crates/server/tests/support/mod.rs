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
