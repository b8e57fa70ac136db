//! The phase state machine: runs the buildspec's commands in shell
//! sessions, decides which phases run, and reads the exported variables.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use gantry_spec::buildspec::{BuildspecVersion, OnFailure, Phase, PhaseName};
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::container::BuildContainer;
use crate::env::{SUCCEEDING_VARS, is_shell_name};
use crate::log::{FrameWriter, OutputWatch};
use crate::outcome::{BuildStatus, PhaseOutcome};
use crate::shell::{Ended, Launch, RunAs, ShellSession, ShellSpec};
use crate::{BuildError, BuildRequest};

/// Why the build stopped before its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Interrupt {
    TimedOut,
    Stopped,
}

impl Interrupt {
    pub(crate) fn status(self) -> BuildStatus {
        match self {
            Interrupt::TimedOut => BuildStatus::TimedOut,
            Interrupt::Stopped => BuildStatus::Stopped,
        }
    }

    /// The build's error; `timeout` is the build's.
    pub(crate) fn error(self, timeout: Duration) -> BuildError {
        match self {
            Interrupt::TimedOut => BuildError::TimedOut { after: timeout },
            Interrupt::Stopped => BuildError::Stopped,
        }
    }
}

/// Resolves when the build's deadline passes or it is cancelled.
pub(crate) async fn interrupted(deadline: Instant, cancel: &CancellationToken) -> Interrupt {
    tokio::select! {
        () = tokio::time::sleep_until(deadline) => Interrupt::TimedOut,
        () = cancel.cancelled() => Interrupt::Stopped,
    }
}

/// What the phases did.
pub(crate) struct Driven {
    pub(crate) phases: Vec<PhaseOutcome>,
    pub(crate) interrupted: Option<Interrupt>,
    /// The first failure.
    pub(crate) error: Option<BuildError>,
    /// A failed phase ended the build (INSTALL or PRE_BUILD without
    /// `CONTINUE`, or any phase with an explicit `ABORT`): no artifacts.
    pub(crate) aborted_early: bool,
    pub(crate) exported: BTreeMap<String, String>,
    /// The build's final values of the variables named in artifact and
    /// report paths (unset ones absent).
    pub(crate) path_vars: BTreeMap<String, String>,
}

/// How one command, or one phase, went.
enum Step {
    Failed(BuildError),
    Interrupted(Interrupt),
}

pub(crate) struct PhaseRunner<'a> {
    pub(crate) req: &'a BuildRequest,
    pub(crate) env: BTreeMap<OsString, OsString>,
    pub(crate) frames: FrameWriter,
    /// Where command files are written (seen at the same path by shells).
    pub(crate) commands_dir: &'a Path,
    /// The shells' working directory, `CODEBUILD_SRC_DIR`.
    pub(crate) src_dir: PathBuf,
    pub(crate) log_fifo: PathBuf,
    pub(crate) token: String,
    pub(crate) deadline: Instant,
    /// Host mode: `run-as` names resolved, `None` = the current user, no
    /// switch. Empty in container mode, where Docker resolves names.
    pub(crate) users: BTreeMap<String, Option<RunAs>>,
    /// Container mode: the build's container, and the log reader's count
    /// of sync records.
    pub(crate) container: Option<(&'a BuildContainer, watch::Receiver<u64>)>,
    /// The log reader's highest sync record, in either mode (see
    /// [`PhaseRunner::sync_log`]).
    pub(crate) log_synced: watch::Receiver<u64>,
    /// Looks for a `RETRY-<regex>` expression in a phase attempt's log.
    pub(crate) output_watch: &'a OutputWatch,
    /// Lines to log before the first phase (warnings found while preparing).
    pub(crate) notes: Vec<String>,
    pub(crate) session: Option<ShellSession>,
    pub(crate) succeeding: bool,
    /// Whether the current session still needs this phase's
    /// `CODEBUILD_BUILD_SUCCEEDING` exported.
    pub(crate) prelude_pending: bool,
    pub(crate) commands_run: u64,
}

impl PhaseRunner<'_> {
    pub(crate) async fn run_phases(mut self) -> Driven {
        let mut driven = Driven {
            phases: Vec::new(),
            interrupted: None,
            error: None,
            aborted_early: false,
            exported: BTreeMap::new(),
            path_vars: BTreeMap::new(),
        };
        for note in std::mem::take(&mut self.notes) {
            self.frames.container(&note).await;
        }
        let bs = &self.req.buildspec;
        for phase in &bs.phases {
            let started = Instant::now();
            let result = self.run_phase_with_retries(phase).await;
            let status = match &result {
                Ok(()) => BuildStatus::Succeeded,
                Err(Step::Failed(_)) => BuildStatus::Failed,
                Err(Step::Interrupted(i)) => i.status(),
            };
            driven.phases.push(PhaseOutcome {
                name: phase.name,
                status,
                duration: started.elapsed(),
            });
            match result {
                Ok(()) => {}
                Err(Step::Interrupted(i)) => {
                    driven.interrupted = Some(i);
                    driven.error = Some(i.error(self.req.timeout));
                    break;
                }
                Err(Step::Failed(e)) => {
                    self.succeeding = false;
                    driven.error.get_or_insert(e);
                    if aborts_the_build(phase) {
                        driven.aborted_early = true;
                        break;
                    }
                }
            }
        }
        if driven.interrupted.is_none() {
            match self.read_final_env().await {
                Ok((exported, path_vars)) => {
                    driven.exported = exported;
                    driven.path_vars = path_vars;
                }
                Err(Step::Interrupted(i)) => {
                    driven.interrupted = Some(i);
                    driven.error = Some(i.error(self.req.timeout));
                }
                Err(Step::Failed(e)) => {
                    driven.error.get_or_insert(e);
                }
            }
        }
        if let Some((container, _)) = self.container {
            // Whatever still runs in the container (background jobs) ends
            // with the build, as on CodeBuild; removing the container first
            // also spares the session's close Docker's wait for streams
            // that such jobs hold open.
            if let Some(why) = container.remove().await {
                self.frames
                    .container(&format!(
                        "Could not remove container {}: {why}",
                        container.name
                    ))
                    .await;
            }
        }
        if let Some(session) = self.session.take() {
            session.close().await;
        }
        driven
    }

    /// Runs a phase, and again as its `on-failure: RETRY…` allows: while
    /// retries are left and the expression matches a line the failed
    /// attempt printed (masked) or its error message (`Error while
    /// executing command: <command>. Reason: exit status N`). Each attempt
    /// runs the phase's `commands` and `finally` in the build's shell, as
    /// the last attempt left it.
    async fn run_phase_with_retries(&mut self, phase: &Phase) -> Result<(), Step> {
        let OnFailure::Retry { retries, pattern } = &phase.on_failure else {
            return self.run_phase(phase).await;
        };
        // The parser checked the expression; one that still does not
        // compile retries on any failure, as a bare RETRY does.
        let regex = pattern
            .as_deref()
            .and_then(|p| regex_automata::meta::Regex::new(p).ok());
        let name = phase.name.as_str();
        let mut retried = 0;
        loop {
            if regex.is_some() {
                // Lines still on their way belong to what ran before.
                self.sync_log().await;
                self.output_watch.arm(regex.clone());
            }
            let result = self.run_phase(phase).await;
            let failure = match &result {
                Err(Step::Failed(e)) if retried < *retries => e.to_string(),
                _ => {
                    self.output_watch.arm(None);
                    return result;
                }
            };
            let matched = match &regex {
                None => true,
                Some(re) => {
                    self.sync_log().await;
                    self.output_watch.matched() || re.is_match(&failure)
                }
            };
            self.output_watch.arm(None);
            if !matched {
                let pattern = pattern.as_deref().unwrap_or_default();
                self.frames
                    .container(&format!(
                        "Phase {name} is not retried: `{pattern}` matches neither its output nor its error"
                    ))
                    .await;
                return result;
            }
            retried += 1;
            self.frames
                .container(&format!(
                    "Phase {name} failed; retrying it (retry {retried} of {retries})"
                ))
                .await;
        }
    }

    /// Waits (briefly) until the log reader has emitted every line written
    /// so far: the runner writes a sync record into the log and waits for
    /// the reader to see it. Its number continues the container shells'
    /// numbering, so the reader's count keeps growing.
    async fn sync_log(&mut self) {
        self.commands_run += 1;
        let seq = self.commands_run;
        self.frames.sync(seq).await;
        let _ = tokio::time::timeout(
            crate::shell::SYNC_WAIT,
            self.log_synced.wait_for(|&n| n >= seq),
        )
        .await;
    }

    async fn run_phase(&mut self, phase: &Phase) -> Result<(), Step> {
        let name = phase.name.as_str();
        self.frames
            .container(&format!("Entering phase {name}"))
            .await;
        self.prelude_pending = true;
        let user = self.phase_user(phase);
        if self.session.as_ref().is_some_and(|s| s.user != user) {
            self.frames
                .container(&format!(
                    "Phase {name} runs as another user: starting a new shell; \
                     shell state from earlier phases does not carry over"
                ))
                .await;
            if let Some(session) = self.session.take() {
                session.close().await;
            }
        }
        let started = Instant::now();
        let mut failure = None;
        for command in &phase.commands {
            match self.run_command(phase.name, command, user.as_deref()).await {
                Ok(()) => {}
                Err(Step::Failed(e)) => {
                    failure = Some(e);
                    break;
                }
                Err(Step::Interrupted(i)) => return Err(self.phase_interrupted(name, i).await),
            }
        }
        // `finally` runs whether or not `commands` failed.
        for command in &phase.finally {
            match self.run_command(phase.name, command, user.as_deref()).await {
                Ok(()) => {}
                Err(Step::Failed(e)) => {
                    failure.get_or_insert(e);
                    break;
                }
                Err(Step::Interrupted(i)) => return Err(self.phase_interrupted(name, i).await),
            }
        }
        let took = format_duration(started.elapsed());
        match failure {
            None => {
                self.frames
                    .container(&format!(
                        "Phase complete: {name} State: SUCCEEDED Duration: {took}"
                    ))
                    .await;
                self.frames
                    .container("Phase context status code:  Message: ")
                    .await;
                Ok(())
            }
            Some(e) => {
                self.frames
                    .container(&format!(
                        "Phase complete: {name} State: FAILED Duration: {took}"
                    ))
                    .await;
                let (code, message) = match &e {
                    BuildError::CommandFailed { command, exit, .. }
                    | BuildError::ShellExited { command, exit, .. } => (
                        "COMMAND_EXECUTION_ERROR",
                        format!(
                            "Error while executing command: {command}. Reason: exit status {exit}"
                        ),
                    ),
                    other => ("CLIENT_ERROR", other.to_string()),
                };
                self.frames
                    .container(&format!(
                        "Phase context status code: {code} Message: {message}"
                    ))
                    .await;
                Err(Step::Failed(e))
            }
        }
    }

    async fn phase_interrupted(&mut self, name: &str, i: Interrupt) -> Step {
        let (state, code, message) = match i {
            Interrupt::TimedOut => (
                "TIMED_OUT",
                "BUILD_TIMED_OUT",
                format!(
                    "Build has timed out. Timeout: {}",
                    format_duration(self.req.timeout)
                ),
            ),
            Interrupt::Stopped => ("STOPPED", "BUILD_STOPPED", "Build was stopped".to_owned()),
        };
        self.frames
            .container(&format!("Phase complete: {name} State: {state}"))
            .await;
        self.frames
            .container(&format!(
                "Phase context status code: {code} Message: {message}"
            ))
            .await;
        Step::Interrupted(i)
    }

    /// The user a phase's shell is switched to, by `run-as` name (`None`:
    /// no switch).
    fn phase_user(&self, phase: &Phase) -> Option<String> {
        let name = phase
            .run_as
            .as_ref()
            .or(self.req.buildspec.run_as.as_ref())?;
        if self.container.is_some() {
            return Some(name.clone());
        }
        self.users
            .get(name)
            .and_then(|u| u.as_ref())
            .map(|u| u.name.clone())
    }

    async fn ensure_session(&mut self, user: Option<&str>) -> std::io::Result<&mut ShellSession> {
        if self.session.is_none() {
            let succeeding = if self.succeeding { "1" } else { "0" };
            let mut env = self.env.clone();
            for var in SUCCEEDING_VARS {
                env.insert(var.into(), succeeding.into());
            }
            let launch = match &self.container {
                Some((container, synced)) => Launch::Container {
                    container,
                    user,
                    synced: synced.clone(),
                },
                None => Launch::Host {
                    user: user
                        .and_then(|name| self.users.get(name))
                        .and_then(Option::as_ref),
                },
            };
            let spec = ShellSpec {
                program: self.shell_program(),
                cwd: &self.src_dir,
                env: &env,
                log_fifo: &self.log_fifo,
                token: &self.token,
                launch,
            };
            self.session = Some(ShellSession::start(&spec).await?);
        }
        self.session
            .as_mut()
            .ok_or_else(|| std::io::Error::other("no shell"))
    }

    fn shell_program(&self) -> &str {
        crate::shell_program(&self.req.buildspec)
    }

    async fn run_command(
        &mut self,
        phase: PhaseName,
        command: &str,
        user: Option<&str>,
    ) -> Result<(), Step> {
        let phase_name = phase.as_str();
        // A YAML block (`|`) ends with a newline that is not worth showing.
        let command = command.trim_end_matches(['\n', '\r']);
        self.frames
            .container(&format!("Running command {command}"))
            .await;
        let fresh_per_command = self.req.buildspec.version == BuildspecVersion::V01;

        self.commands_run += 1;
        let seq = self.commands_run;
        let script = self.commands_dir.join(format!("cmd-{seq}.sh"));
        if let Err(e) = write_script(&script, command) {
            return Err(Step::Failed(BuildError::ShellIo {
                phase: phase_name,
                source: e,
            }));
        }
        let prelude = if self.prelude_pending {
            let value = if self.succeeding { "1" } else { "0" };
            SUCCEEDING_VARS
                .iter()
                .map(|v| format!("export {v}={value}\n"))
                .collect::<String>()
        } else {
            String::new()
        };
        let shell = self.shell_program().to_owned();
        let (cancel, deadline) = (self.req.cancel.clone(), self.deadline);
        // Starting a container shell talks to the engine, so it is bounded
        // by the deadline too.
        let work = async {
            let session = self.ensure_session(user).await.map_err(|e| (true, e))?;
            session
                .run(&prelude, &script, seq)
                .await
                .map_err(|e| (false, e))
        };
        let result = tokio::select! {
            r = work => Ok(r),
            i = interrupted(deadline, &cancel) => Err(i),
        };
        let _ = std::fs::remove_file(&script);
        self.prelude_pending = false;
        let result = match result {
            Ok(r) => r,
            Err(i) => {
                self.interrupt_container().await;
                self.end_session().await;
                return Err(Step::Interrupted(i));
            }
        };
        let ended = match result {
            Ok(ended) => ended,
            Err((true, e)) => {
                return Err(Step::Failed(BuildError::ShellStart {
                    phase: phase_name,
                    shell,
                    source: e,
                }));
            }
            Err((false, e)) => {
                self.end_session().await;
                return Err(Step::Failed(BuildError::ShellIo {
                    phase: phase_name,
                    source: e,
                }));
            }
        };
        if fresh_per_command {
            // 0.1: every command has a shell of its own, and its exit
            // status is the command's, whether it ran `exit` or not.
            self.end_session().await;
            let status = match ended {
                Ended::Exited(s) | Ended::ShellDied(s) => s,
            };
            if status == 0 {
                return Ok(());
            }
            self.frames
                .container(&format!(
                    "Command did not exit successfully {command} exit status {status}"
                ))
                .await;
            return Err(Step::Failed(BuildError::CommandFailed {
                phase: phase_name,
                command: command.to_owned(),
                exit: status,
            }));
        }
        match ended {
            Ended::Exited(0) => Ok(()),
            Ended::Exited(status) => {
                self.frames
                    .container(&format!(
                        "Command did not exit successfully {command} exit status {status}"
                    ))
                    .await;
                Err(Step::Failed(BuildError::CommandFailed {
                    phase: phase_name,
                    command: command.to_owned(),
                    exit: status,
                }))
            }
            Ended::ShellDied(status) => {
                // The session's state (cwd, variables) is gone. The command
                // fails even with status 0, since what follows relied on
                // that state; phases that still run get a fresh shell.
                self.end_session().await;
                self.frames
                    .container(&format!(
                        "Command did not exit successfully {command} exit status {status}: \
                         the shell exited; later commands run in a new shell"
                    ))
                    .await;
                Err(Step::Failed(BuildError::ShellExited {
                    phase: phase_name,
                    command: command.to_owned(),
                    exit: status,
                }))
            }
        }
    }

    async fn end_session(&mut self) {
        if let Some(mut session) = self.session.take() {
            session.terminate().await;
        }
    }

    /// On a timeout or stop, kills everything in the container at once:
    /// ending the local `docker exec` client would leave its processes
    /// running.
    async fn interrupt_container(&self) {
        if let Some((container, _)) = self.container {
            container.kill().await;
        }
    }

    /// Reads `env.exported-variables`, and the variables artifact and
    /// report paths name, from the shell (a fresh one if the build's shell
    /// is gone, which then only knows the initial environment). Variables
    /// holding parameter-store or secret values are never exported
    /// (CodeBuild refuses them too), nor are unset ones; a path may use
    /// them (its text is masked in the log like any other).
    async fn read_final_env(
        &mut self,
    ) -> Result<(BTreeMap<String, String>, BTreeMap<String, String>), Step> {
        let bs = &self.req.buildspec;
        let path_names = crate::artifacts::path_variables(bs);
        if bs.exported_variables.is_empty() && path_names.is_empty() {
            return Ok((BTreeMap::new(), BTreeMap::new()));
        }
        let secret: BTreeSet<&str> = bs
            .parameter_store
            .iter()
            .chain(&bs.secrets_manager)
            .chain(&self.req.secrets)
            .map(|(k, _)| k.as_str())
            .collect();
        let mut exported = BTreeSet::new();
        let mut notes = Vec::new();
        for name in &bs.exported_variables {
            if !is_shell_name(name) {
                notes.push(format!(
                    "Exported variable {name} is not a valid variable name; skipped"
                ));
            } else if secret.contains(name.as_str()) {
                notes.push(format!(
                    "Exported variable {name} holds a secret; not exported"
                ));
            } else {
                exported.insert(name.as_str());
            }
        }
        for note in notes {
            self.frames.container(&note).await;
        }
        let mut names: Vec<&str> = exported.iter().copied().collect();
        for name in &path_names {
            if !exported.contains(name.as_str()) {
                names.push(name);
            }
        }
        if names.is_empty() {
            return Ok((BTreeMap::new(), BTreeMap::new()));
        }
        let user = bs.phases.last().and_then(|p| self.phase_user(p));
        let (cancel, deadline) = (self.req.cancel.clone(), self.deadline);
        let work = async {
            let session = self.ensure_session(user.as_deref()).await?;
            session.read_variables(&names).await
        };
        let result = tokio::select! {
            r = work => Ok(r),
            i = interrupted(deadline, &cancel) => Err(i),
        };
        let result = match result {
            Ok(r) => r,
            Err(i) => {
                self.interrupt_container().await;
                self.end_session().await;
                return Err(Step::Interrupted(i));
            }
        };
        match result {
            Ok(Some(vars)) => {
                let mut exports = BTreeMap::new();
                let mut paths = BTreeMap::new();
                for (name, value) in vars {
                    if path_names.contains(&name) {
                        paths.insert(name.clone(), value.clone());
                    }
                    if exported.contains(name.as_str()) {
                        exports.insert(name, value);
                    }
                }
                Ok((exports, paths))
            }
            Ok(None) => {
                self.end_session().await;
                self.frames
                    .container("Could not read exported variables: the shell exited")
                    .await;
                Ok((BTreeMap::new(), BTreeMap::new()))
            }
            Err(e) => {
                self.end_session().await;
                Err(Step::Failed(BuildError::ExportedVariables(e)))
            }
        }
    }
}

/// Whether a phase's (final) failure ends the build. Written `ABORT` does,
/// whichever the phase; `CONTINUE` never does; otherwise (not written, or
/// retries spent) CodeBuild's transitions decide: INSTALL and PRE_BUILD
/// end the build, BUILD goes on to POST_BUILD, and POST_BUILD is last.
fn aborts_the_build(phase: &Phase) -> bool {
    match phase.on_failure {
        OnFailure::Abort => true,
        OnFailure::Continue => false,
        OnFailure::Unspecified | OnFailure::Retry { .. } => {
            matches!(phase.name, PhaseName::Install | PhaseName::PreBuild)
        }
    }
}

/// Writes a command file readable by any user: a shell running as a
/// `run-as` user, or as a container's user, reads it.
fn write_script(path: &Path, command: &str) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, format!("{command}\n"))?;
    // Explicitly, since the umask may be stricter.
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644))
}

/// `1.234s`.
pub(crate) fn format_duration(d: Duration) -> String {
    format!("{:.3}s", d.as_secs_f64())
}
