//! Processes left behind by a server that died without stopping its builds.
//!
//! Every action process gets `GANTRY_OWNER=<data dir>` in its environment,
//! and children inherit it. A server starting on a data dir kills every
//! process that still carries that mark: they belong to actions the engine
//! has just declared interrupted, and letting them run on would repeat their
//! side effects behind the new server's back.

use std::path::Path;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// The environment variable that marks a process as an action's.
pub const OWNER_ENV: &str = "GANTRY_OWNER";

/// Kills the processes marked as belonging to `data_dir`; returns how many.
pub fn kill_orphans(data_dir: &Path) -> usize {
    let mark = format!("{OWNER_ENV}={}", data_dir.display());
    let own = std::process::id();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0;
    };
    let mut killed = 0;
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        if pid == own as i32 {
            continue;
        }
        let Ok(environ) = std::fs::read(entry.path().join("environ")) else {
            continue;
        };
        if environ.split(|b| *b == 0).any(|var| var == mark.as_bytes())
            && kill(Pid::from_raw(pid), Signal::SIGKILL).is_ok()
        {
            killed += 1;
        }
    }
    killed
}
