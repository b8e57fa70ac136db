//! Running a command inside a replica, as a command health check does
//! (`health_check.command`, Docker's `HEALTHCHECK CMD`): argv as given (no
//! shell unless the argv names one), in the replica's root, environment and
//! user, killed with its process group at the timeout, its output kept
//! only as a short tail for the check's failure message.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};

/// How a command run inside a replica ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecOutput {
    /// Its exit code; `None` when a signal ended it.
    pub code: Option<i32>,
    /// The last line it wrote (stdout or stderr), at most [`TAIL`] bytes.
    pub output: String,
}

impl ExecOutput {
    /// Exit code 0, as Docker's `HEALTHCHECK` reads it.
    pub fn succeeded(&self) -> bool {
        self.code == Some(0)
    }
}

/// The most of a command's output kept.
pub(crate) const TAIL: usize = 4096;

/// Runs `command` (made by the runtime) until it ends or `timeout` passes;
/// at the timeout its whole process group is killed. `Err` is why it could
/// not run or did not end in time.
pub(crate) async fn run(
    mut command: tokio::process::Command,
    timeout: Duration,
) -> Result<ExecOutput, String> {
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let mut child = command.spawn().map_err(|e| format!("cannot run it: {e}"))?;
    let pid = child.id();
    let (stdout, stderr) = (child.stdout.take(), child.stderr.take());
    let ran = tokio::time::timeout(timeout, async {
        let (out, err, status) = tokio::join!(tail(stdout), tail(stderr), child.wait());
        (out, err, status)
    })
    .await;
    let Ok((out, err, status)) = ran else {
        if let Some(pid) = pid.and_then(|p| i32::try_from(p).ok()) {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        let _ = child.wait().await;
        return Err(format!("it did not end within {timeout:?}"));
    };
    let status = status.map_err(|e| format!("waiting for it: {e}"))?;
    let text = if err.trim().is_empty() { out } else { err };
    Ok(ExecOutput {
        code: status.code(),
        output: text
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or_default()
            .to_string(),
    })
}

/// The last [`TAIL`] bytes a pipe carries, read to its end.
async fn tail(pipe: Option<impl AsyncRead + Unpin>) -> String {
    let Some(mut pipe) = pipe else {
        return String::new();
    };
    let mut kept: Vec<u8> = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match pipe.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                kept.extend_from_slice(&buf[..n]);
                if kept.len() > TAIL {
                    kept.drain(..kept.len() - TAIL);
                }
            }
        }
    }
    String::from_utf8_lossy(&kept).into_owned()
}
