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
//!
//! In container mode the process we start is `docker exec -i` (see
//! `container.rs`); its stdin, stdout and stderr are the shell's, so the
//! protocol is unchanged, with two additions:
//!
//! - the build's variables are sent as `export` lines before anything else
//!   (the exec'd shell starts with the image's environment), followed by a
//!   status record, so a shell that cannot start fails here, by name;
//! - Docker carries the container's stdout and stderr on separate streams,
//!   so a status record can overtake the command's last output on its way
//!   to the log. After each command the shell therefore also writes a *sync
//!   record* (`\0TOKEN\x01<n>`) to the log stream, through fd 4, a copy of
//!   its original stderr hidden from commands like fd 3. The log reader
//!   counts these records, and [`ShellSession::run`] returns only once the
//!   command's own record went past, so the next `[Container]` line comes
//!   after the command's output, as in host mode.

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
use tokio::sync::watch;

use crate::container::BuildContainer;
use crate::env::is_shell_name;

/// How long processes get between SIGTERM and SIGKILL.
pub(crate) const KILL_GRACE: Duration = Duration::from_secs(2);

/// Bytes the status channel may carry for one request (exported variables
/// are the only large payload; CodePipeline caps them at 120 KiB).
const MAX_STATUS_PAYLOAD: usize = 1024 * 1024;

/// How long a container session waits for a command's sync record in the
/// log. It only ever waits for output already in flight; should the record
/// be lost, the build goes on with the log possibly out of order.
pub(crate) const SYNC_WAIT: Duration = Duration::from_secs(2);

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
    pub(crate) launch: Launch<'a>,
}

/// Where the shell runs.
pub(crate) enum Launch<'a> {
    /// On this host, as the current user or `user`.
    Host { user: Option<&'a RunAs> },
    /// In the build's container (`docker exec`), as the image's user or
    /// `user` (`--user`); `synced` is the count of sync records the log
    /// reader has seen.
    Container {
        container: &'a BuildContainer,
        user: Option<&'a str>,
        synced: watch::Receiver<u64>,
    },
}

impl Launch<'_> {
    /// The user the shell was switched to, by `run-as` name (`None`: no
    /// switch). A phase with another user needs another shell.
    pub(crate) fn user_name(&self) -> Option<String> {
        match self {
            Launch::Host { user } => user.map(|u| u.name.clone()),
            Launch::Container { user, .. } => user.map(str::to_owned),
        }
    }
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
    /// See [`Launch::user_name`].
    pub(crate) user: Option<String>,
    /// Container mode: the log reader's count of sync records.
    synced: Option<watch::Receiver<u64>>,
}

impl ShellSession {
    pub(crate) async fn start(spec: &ShellSpec<'_>) -> io::Result<ShellSession> {
        let log = std::fs::OpenOptions::new()
            .write(true)
            .open(spec.log_fifo)?;
        let user = spec.launch.user_name();
        let (mut command, exports, synced) = match &spec.launch {
            Launch::Host { user } => (host_command(spec, *user), String::new(), None),
            Launch::Container {
                container,
                user,
                synced,
            } => {
                let (command, exports) = container_command(spec, container, *user);
                (command, exports, Some(synced.clone()))
            }
        };
        command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .process_group(0);
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
            user,
            synced,
        };
        if session.synced.is_none() {
            session.send("exec 3>&1 1>&2\n").await?;
            return Ok(session);
        }
        // Container: set the variables, then prove the shell answers.
        let text = format!("exec 3>&1 1>&2 4>&2\n{exports}{}", session.status_line());
        let answered = match session.send(&text).await {
            Ok(()) => session.next_record().await?.is_some(),
            Err(_) => false,
        };
        if !answered {
            let code = session.exit_code().await;
            session.terminate().await;
            return Err(io::Error::other(format!(
                "the shell did not start in the container (docker exec exit status {code}; \
                 the log shows Docker's reason)"
            )));
        }
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
    /// `seq` numbers the command's sync record (container mode); it must
    /// grow from one command to the next within a build.
    pub(crate) async fn run(
        &mut self,
        prelude: &str,
        script: &Path,
        seq: u64,
    ) -> io::Result<Ended> {
        let script = sh_quote(&script.to_string_lossy());
        let text = if self.synced.is_some() {
            format!(
                "{prelude}command . {script} 3>&- 4>&- </dev/null\n{}{}",
                self.status_line(),
                self.sync_line(seq)
            )
        } else {
            format!(
                "{prelude}command . {script} 3>&- </dev/null\n{}",
                self.status_line()
            )
        };
        if self.send(&text).await.is_err() {
            // The shell is gone (its stdin is closed): report how it ended.
            return Ok(Ended::ShellDied(self.exit_code().await));
        }
        match self.next_record().await? {
            Some((_, status)) => {
                self.await_sync(seq).await;
                Ok(Ended::Exited(status))
            }
            None => Ok(Ended::ShellDied(self.exit_code().await)),
        }
    }

    /// `printf` writing sync record `seq` to the log stream: the token's
    /// mark with its closing NUL replaced by `\x01` (see `log.rs`).
    fn sync_line(&self, seq: u64) -> String {
        format!(
            "printf '\\000%s\\001%d\\n' {} {seq} >&4\n",
            String::from_utf8_lossy(&self.marker).trim_end()
        )
    }

    /// Waits until the log reader has seen sync record `seq`.
    async fn await_sync(&mut self, seq: u64) {
        if let Some(synced) = &mut self.synced {
            let _ = tokio::time::timeout(SYNC_WAIT, synced.wait_for(|&n| n >= seq)).await;
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
        if self.synced.is_some() {
            // Killing a `docker exec` client leaves its shell running in
            // the container; closing its input ends an idle shell. A busy
            // one is the container's to kill (timeout, stop, end of build).
            let _ = tokio::time::timeout(KILL_GRACE, self.child.wait()).await;
        }
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

/// The shell on this host, with exactly the build's environment.
fn host_command(spec: &ShellSpec<'_>, user: Option<&RunAs>) -> Command {
    let mut command = Command::new(program_path(spec.program, spec.env));
    command.env_clear().envs(spec.env).current_dir(spec.cwd);
    if let Some(user) = user {
        command
            .uid(user.uid)
            .gid(user.gid)
            .env("HOME", &user.home)
            .env("USER", &user.name)
            .env("LOGNAME", &user.name);
    }
    command
}

/// Where `program` is, looked up in the build's own `PATH` as the shell's
/// `exec` would look it up (unchanged when it names a path or is not
/// found, so the spawn fails as it would have). Given a path, std starts
/// the shell with `posix_spawn` (a vfork) instead of a fork that copies
/// the server's page tables: a fork cost more than the rest of starting
/// the shell (issue 17's per-action overhead).
fn program_path(program: &str, env: &BTreeMap<OsString, OsString>) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    if program.contains('/') {
        return program.into();
    }
    let path = env
        .get(std::ffi::OsStr::new("PATH"))
        .cloned()
        .unwrap_or_else(|| OsString::from("/usr/local/bin:/usr/bin:/bin"));
    for dir in std::env::split_paths(&path) {
        if dir.as_os_str().is_empty() {
            // An empty entry means the child's working directory: leave
            // that lookup to exec.
            break;
        }
        let candidate = dir.join(program);
        if std::fs::metadata(&candidate)
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        {
            return candidate;
        }
    }
    program.into()
}

/// `docker exec` of the shell, and the `export` lines that give it the
/// build's variables. Names a shell cannot export (`a.b`) go through
/// `--env NAME`, valued from the client's environment, so no value ever
/// appears on a command line.
fn container_command(
    spec: &ShellSpec<'_>,
    container: &BuildContainer,
    user: Option<&str>,
) -> (Command, String) {
    let mut exports = String::new();
    let mut passed = Vec::new();
    for (name, value) in spec.env {
        match name.to_str() {
            // `command` keeps a failing export (a name the shell holds
            // read-only, like bash's `UID`) from ending a POSIX shell; the
            // shell keeps its own value, as when it inherits the name.
            Some(n) if is_shell_name(n) => {
                exports.push_str(&format!(
                    "command export {n}={} 2>/dev/null\n",
                    sh_quote(&value.to_string_lossy())
                ));
            }
            // An empty name or one holding `=` cannot be a variable.
            _ if name.is_empty() || name.to_string_lossy().contains('=') => {}
            _ => passed.push((name, value)),
        }
    }
    let names: Vec<&std::ffi::OsStr> = passed.iter().map(|(n, _)| n.as_os_str()).collect();
    let mut command = container.exec_command(spec.program, spec.cwd, user, &names);
    command.envs(passed);
    (command, exports)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn env(path: &str) -> BTreeMap<OsString, OsString> {
        BTreeMap::from([(OsString::from("PATH"), OsString::from(path))])
    }

    #[test]
    fn the_shell_is_found_in_the_builds_own_path() {
        assert_eq!(
            program_path("sh", &env("/nonexistent:/bin")),
            Path::new("/bin/sh")
        );
        // Not found, or a path already: left to exec, which fails or
        // runs it as before.
        assert_eq!(program_path("sh", &env("/nonexistent")), Path::new("sh"));
        assert_eq!(program_path("/bin/sh", &env("")), Path::new("/bin/sh"));
        // An empty entry is the child's working directory: exec decides.
        assert_eq!(program_path("sh", &env(":/bin")), Path::new("sh"));
    }
}
