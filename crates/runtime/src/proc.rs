//! What `/proc` says about processes: liveness with pid-reuse protection,
//! process groups, and the replica mark in a process's environment.
//!
//! A pid alone does not identify a process across a gantry restart: the
//! replica may have died and the pid gone to another program. The start time
//! (`/proc/PID/stat` field 22, clock ticks since boot) does, together with the
//! pid. Zombies count as dead: they run nothing and hold no port.

use std::fs;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// The fields of `/proc/PID/stat` gantry reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ProcStat {
    /// `R`, `S`, `D`, `Z`, `X`, ….
    pub(crate) state: char,
    /// The process group.
    pub(crate) pgrp: i32,
    /// Start time in clock ticks after boot.
    pub(crate) start_time: u64,
}

impl ProcStat {
    fn is_dead(&self) -> bool {
        matches!(self.state, 'Z' | 'X' | 'x')
    }
}

/// Parses the text of `/proc/PID/stat`.
pub(crate) fn parse_stat(text: &str) -> Option<ProcStat> {
    // The command name (field 2) is in parentheses and may itself hold spaces and
    // parentheses, so the fields are counted from the last ')'.
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state is field 3, pgrp field 5, starttime field 22.
    Some(ProcStat {
        state: fields.first()?.chars().next()?,
        pgrp: fields.get(2)?.parse().ok()?,
        start_time: fields.get(19)?.parse().ok()?,
    })
}

/// The stat of process `pid`, if it exists.
pub(crate) fn stat(pid: i32) -> Option<ProcStat> {
    parse_stat(&fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// Whether `pid` is the very process that started at `start_time`, and runs.
pub(crate) fn is_alive(pid: i32, start_time: u64) -> bool {
    stat(pid).is_some_and(|s| s.start_time == start_time && !s.is_dead())
}

/// Every pid in `/proc`.
fn pids() -> Vec<i32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|s| s.parse().ok()))
        .collect()
}

/// Whether any live (non-zombie) process is in group `pgid`.
pub(crate) fn group_alive(pgid: i32) -> bool {
    pids()
        .into_iter()
        .any(|pid| stat(pid).is_some_and(|s| s.pgrp == pgid && !s.is_dead()))
}

/// Kills what is left of a replica's process group after its leader (`pgid`,
/// started at `start_time`) died, as a container engine kills a container's
/// processes when its first process exits.
///
/// Only when no other process has taken the pid: while any member of group
/// `pgid` lives the kernel does not hand pid `pgid` out again, so if the pid is
/// free, every process still in that group is the replica's. If the pid now
/// belongs to another process, the group was empty when it was reused, and
/// the processes in a group of that number are someone else's.
pub(crate) fn kill_leftovers(pgid: i32, start_time: u64) {
    if let Some(s) = stat(pgid)
        && s.start_time != start_time
    {
        return;
    }
    for pid in pids() {
        if stat(pid).is_some_and(|s| s.pgrp == pgid && !s.is_dead()) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
    }
}

/// Processes whose environment holds `NAME=VALUE` with `VALUE` starting with
/// `prefix`: (pid, process group, the value after the prefix).
pub(crate) fn marked(name: &str, prefix: &str) -> Vec<(i32, i32, String)> {
    let mark = format!("{name}={prefix}");
    let own = std::process::id() as i32;
    let mut found = Vec::new();
    for pid in pids() {
        if pid == own {
            continue;
        }
        // Other users' processes cannot be read, and are none of ours anyway.
        let Ok(environ) = fs::read(format!("/proc/{pid}/environ")) else {
            continue;
        };
        let Some(value) = environ
            .split(|b| *b == 0)
            .find_map(|var| var.strip_prefix(mark.as_bytes()))
        else {
            continue;
        };
        if let Some(s) = stat(pid).filter(|s| !s.is_dead()) {
            found.push((pid, s.pgrp, String::from_utf8_lossy(value).into_owned()));
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_from_the_last_parenthesis() {
        let text = "4242 (we (ird) name) S 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 100";
        assert_eq!(
            parse_stat(text),
            Some(ProcStat {
                state: 'S',
                pgrp: 4242,
                start_time: 987654
            })
        );
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn this_process_is_alive_only_with_its_own_start_time() {
        let pid = std::process::id() as i32;
        let own = stat(pid).unwrap();
        assert!(is_alive(pid, own.start_time));
        assert!(!is_alive(pid, own.start_time + 1));
        assert!(group_alive(own.pgrp));
    }
}
