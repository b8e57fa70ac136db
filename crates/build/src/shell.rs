//! One shell process and the protocol that feeds it commands.
//!
//! The shell starts with stdin and stdout as pipes to us and stderr on the
//! log FIFO. Its first instruction, `exec 3>&1 1>&2`, turns the stdout pipe
//! into fd 3, the *status channel*, and sends fd 1 to the log as well. Each
//! command is written to a file and run as
//!
//! ```sh
//! command . /scratch/cmd-7.sh 3>&- </dev/null
//! printf '%s %d\n' TOKEN "$?" >&3
//! ```
//!
//! - `.` runs the file in the shell itself, so `cd` and variables persist;
//!   a multi-line command is one file whose status is its last statement's.
//! - `command` strips `.` of its special-builtin status, so a syntax error
//!   in a command fails that command instead of killing the shell.
//! - `3>&-` hides the status channel from the command and `</dev/null`
//!   keeps it from reading the instructions that follow on the shell's
//!   stdin, so user code can neither forge nor swallow a status.
//!
//! The shell runs in its own process group, so the whole tree a command
//! starts can be signalled at once.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io;
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

/// How long processes get between SIGTERM and SIGKILL.
pub(crate) const KILL_GRACE: Duration = Duration::from_secs(2);

/// Bytes the status channel may carry for one request (exported variables
/// are the only large payload; CodePipeline caps them at 120 KiB).
const MAX_STATUS_PAYLOAD: usize = 1024 * 1024;

/// The Unix user a shell runs as (`run-as`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RunAs {
    pub(crate) name: String,
    pub(crate) uid: u32,
    pub(crate) gid: u32,
    pub(crate) home: String,
}

pub(crate) struct ShellSpec<'a> {
    pub(crate) program: &'a str,
    pub(crate) cwd: &'a Path,
    pub(crate) env: &'a BTreeMap<OsString, OsString>,
    pub(crate) log_fifo: &'a Path,
    pub(crate) token: &'a str,
    pub(crate) user: Option<&'a RunAs>,
}

/// How a command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ended {
    /// The command finished with this status; the shell lives on.
    Exited(i32),
    /// The shell itself exited (the command ran `exit`, or was killed), with
    /// this status.
    ShellDied(i32),
}

pub(crate) struct ShellSession {
    child: Child,
    stdin: Option<ChildStdin>,
    status: ChildStdout,
    buf: Vec<u8>,
    marker: Vec<u8>,
    pgid: Option<Pid>,
    pub(crate) user: Option<RunAs>,
}

impl ShellSession {
    pub(crate) async fn start(spec: &ShellSpec<'_>) -> io::Result<ShellSession> {
        let log = std::fs::OpenOptions::new()
            .write(true)
            .open(spec.log_fifo)?;
        let mut command = Command::new(spec.program);
        command
            .env_clear()
            .envs(spec.env)
            .current_dir(spec.cwd)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .process_group(0);
        if let Some(user) = spec.user {
            command
                .uid(user.uid)
                .gid(user.gid)
                .env("HOME", &user.home)
                .env("USER", &user.name)
                .env("LOGNAME", &user.name);
        }
        let mut child = command.spawn()?;
        let pgid = child
            .id()
            .and_then(|id| i32::try_from(id).ok())
            .map(Pid::from_raw);
        let (Some(stdin), Some(status)) = (child.stdin.take(), child.stdout.take()) else {
            return Err(io::Error::other("shell started without pipes"));
        };
        let mut session = ShellSession {
            child,
            stdin: Some(stdin),
            status,
            buf: Vec::new(),
            marker: format!("{} ", spec.token).into_bytes(),
            pgid,
            user: spec.user.cloned(),
        };
        session.send("exec 3>&1 1>&2\n").await?;
        Ok(session)
    }

    async fn send(&mut self, text: &str) -> io::Result<()> {
        let stdin = self
            .stdin
            .as_mut()
            .ok_or_else(|| io::Error::other("shell input closed"))?;
        stdin.write_all(text.as_bytes()).await?;
        stdin.flush().await
    }

    /// Runs the command stored in `script`, after `prelude` (shell text run
    /// in the session first, such as exports).
    pub(crate) async fn run(&mut self, prelude: &str, script: &Path) -> io::Result<Ended> {
        let text = format!(
            "{prelude}command . {} 3>&- </dev/null\n{}",
            sh_quote(&script.to_string_lossy()),
            self.status_line()
        );
        if self.send(&text).await.is_err() {
            // The shell is gone (its stdin is closed): report how it ended.
            return Ok(Ended::ShellDied(self.exit_code().await));
        }
        match self.next_record().await? {
            Some((_, status)) => Ok(Ended::Exited(status)),
            None => Ok(Ended::ShellDied(self.exit_code().await)),
        }
    }

    /// The values of the `names` that are set in the shell (unset ones are
    /// absent). Names must be valid shell names.
    pub(crate) async fn read_variables(
        &mut self,
        names: &[&str],
    ) -> io::Result<Option<Vec<(String, String)>>> {
        let mut text = String::from("{\n");
        for name in names {
            text.push_str(&format!(
                "if [ -n \"${{{name}+x}}\" ]; then printf '%s\\0%s\\0' {name} \"${name}\"; fi\n"
            ));
        }
        text.push_str("} >&3\n");
        text.push_str(&self.status_line());
        if self.send(&text).await.is_err() {
            return Ok(None);
        }
        let Some((payload, _)) = self.next_record().await? else {
            return Ok(None);
        };
        let mut fields = payload.split(|&b| b == 0);
        let mut vars = Vec::new();
        while let (Some(name), Some(value)) = (fields.next(), fields.next()) {
            vars.push((
                String::from_utf8_lossy(name).into_owned(),
                String::from_utf8_lossy(value).into_owned(),
            ));
        }
        Ok(Some(vars))
    }

    fn status_line(&self) -> String {
        format!(
            "printf '%s %d\\n' {} \"$?\" >&3\n",
            String::from_utf8_lossy(&self.marker).trim_end()
        )
    }

    /// The next `payload TOKEN status\n` record on the status channel, or
    /// `None` when the shell closed it (it exited).
    async fn next_record(&mut self) -> io::Result<Option<(Vec<u8>, i32)>> {
        let mut chunk = [0u8; 4096];
        loop {
            if let Some(at) = crate::mask::find_bytes(&self.buf, &self.marker) {
                let digits_at = at + self.marker.len();
                if let Some(nl) = self.buf[digits_at..].iter().position(|&b| b == b'\n') {
                    let status = std::str::from_utf8(&self.buf[digits_at..digits_at + nl])
                        .ok()
                        .and_then(|s| s.trim().parse::<i32>().ok())
                        .ok_or_else(|| {
                            io::Error::new(io::ErrorKind::InvalidData, "malformed status record")
                        })?;
                    let payload = self.buf[..at].to_vec();
                    self.buf.drain(..digits_at + nl + 1);
                    return Ok(Some((payload, status)));
                }
            }
            if self.buf.len() > MAX_STATUS_PAYLOAD {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "more than 1 MiB on the status channel",
                ));
            }
            let n = self.status.read(&mut chunk).await?;
            if n == 0 {
                return Ok(None);
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// The shell's exit status as a shell would report it (128 + signal).
    async fn exit_code(&mut self) -> i32 {
        self.stdin = None;
        match self.child.wait().await {
            Ok(status) => status_code(status),
            Err(_) => -1,
        }
    }

    /// Ends the session normally: closes the shell's input, waits for it,
    /// then kills whatever it left running in its process group (background
    /// jobs die with their build, as they do with CodeBuild's container).
    pub(crate) async fn close(mut self) {
        self.stdin = None;
        let _ = tokio::time::timeout(KILL_GRACE, self.child.wait()).await;
        self.terminate().await;
    }

    /// SIGTERM to the whole process group, SIGKILL to what is left after
    /// [`KILL_GRACE`]; returns once the group is gone.
    pub(crate) async fn terminate(&mut self) {
        let Some(pgid) = self.pgid else { return };
        self.stdin = None;
        if group_alive(pgid) {
            let _ = killpg(pgid, Signal::SIGTERM);
            let deadline = tokio::time::Instant::now() + KILL_GRACE;
            while group_alive(pgid) && tokio::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            if group_alive(pgid) {
                let _ = killpg(pgid, Signal::SIGKILL);
            }
        }
        let _ = tokio::time::timeout(KILL_GRACE, self.child.wait()).await;
        self.pgid = None;
    }
}

impl Drop for ShellSession {
    /// A session dropped without [`ShellSession::terminate`] (the build
    /// future was dropped) must not leave processes behind.
    fn drop(&mut self) {
        if let Some(pgid) = self.pgid {
            let _ = killpg(pgid, Signal::SIGKILL);
        }
    }
}

pub(crate) fn status_code(status: ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(-1)
}

/// Whether any live (non-zombie) process is in the group. Zombies count as
/// gone: they hold no resources, and where PID 1 does not reap orphans
/// (some containers) they never disappear. Falls back to `kill(0)` without
/// `/proc`.
fn group_alive(pgid: Pid) -> bool {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return killpg(pgid, None).is_ok();
    };
    if killpg(pgid, None).is_err() {
        return false;
    }
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .filter(|s| s.bytes().all(|b| b.is_ascii_digit()))
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // Fields after the command name, which is in parentheses and may
        // itself contain spaces: state, ppid, pgrp, ...
        let Some(after) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
            continue;
        };
        let mut fields = after.split_whitespace();
        let (Some(state), Some(_ppid), Some(pgrp)) = (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        if pgrp.parse::<i32>().ok() == Some(pgid.as_raw()) && state != "Z" && state != "X" {
            return true;
        }
    }
    false
}

/// `'text'` for sh, with embedded quotes escaped.
pub(crate) fn sh_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}
