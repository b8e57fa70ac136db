//! One attempt of one action, from `StartAction` to its result event.
//!
//! An attempt resolves its `#{...}` references and input artifacts, gets a
//! fresh work dir of its own (`work/<execution>/<stage>-<action>-<attempt>`,
//! removed when it ends, so a leftover one at start-up means it was
//! interrupted), a registry-only token for the embedded registry that lives
//! no longer than the attempt may run, and hands an `ActionContext` to the
//! runner of the action's type. Output dirs are imported into the artifact
//! store, and `ActionSucceeded` or `ActionFailed` is submitted with the
//! attempt's number, so a late result of an abandoned attempt is ignored.
//! Approvals don't run here (see `approvals`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use gantry_clock::now_ms;
use gantry_engine::{ActionRef, Execution};
use tokio_util::sync::CancellationToken;

use super::ControlPlane;
use super::resolution::{find_artifact, resolved_action, source_revision};
use crate::actions::{ActionContext, ActionError, ActionOutput, RegistryLogin};
use crate::definition::Loaded;
use crate::logs::ActionLog;
use crate::notify::{Notices, Subject};

/// Default timeout of every action type but approvals (CodePipeline's 1 h).
const DEFAULT_ACTION_TIMEOUT: Duration = Duration::from_secs(3600);

/// What a successful attempt hands to the engine: its output variables, and
/// its output artifacts by name with their artifact ids.
type Outputs = (BTreeMap<String, String>, BTreeMap<String, String>);

impl ControlPlane {
    /// Runs an attempt and submits its result; `cancel` is the attempt's
    /// entry in the running attempts, which it removes when it ends.
    pub(super) async fn run_action(&self, attempt: ActionRef, cancel: CancellationToken) {
        let result = self.perform(&attempt, cancel).await;
        // No flush: the result's event is committed with the lines before it.
        let at = now_ms();
        let event = match result {
            Ok((output_variables, output_artifacts)) => {
                attempt.succeeded(output_variables, output_artifacts, at)
            }
            Err(error) => attempt.failed(error.0, at),
        };
        if let Err(error) = self.submit(event).await {
            tracing::error!(%error, "Recording an action result failed.");
        }
        self.inner.state.lock().await.running.remove(&attempt);
    }

    /// Runs an attempt, logging its start and its end.
    async fn perform(
        &self,
        attempt: &ActionRef,
        cancel: CancellationToken,
    ) -> Result<Outputs, ActionError> {
        let (loaded, execution) = self
            .snapshot(&attempt.id)
            .await
            .ok_or_else(|| ActionError::new("internal error: execution not loaded"))?;
        let stage = &loaded.pipeline.stages[attempt.stage];
        let spec = &stage.actions[attempt.action];
        let log = self.inner.logs.action(
            &attempt.id,
            stage.name.as_str(),
            spec.name.as_str(),
            attempt.attempt,
        );
        log.line(&format!(
            "Starting {} action {}/{} (attempt {})",
            spec.kind.type_name(),
            stage.name,
            spec.name,
            attempt.attempt
        ));
        let result = self
            .perform_resolved(attempt, &loaded, &execution, &log, cancel)
            .await;
        match &result {
            Ok(_) => log.line("Action succeeded."),
            Err(error) => log.line(&format!("Action failed: {error}")),
        }
        result
    }

    async fn perform_resolved(
        &self,
        attempt: &ActionRef,
        loaded: &Loaded,
        execution: &Execution,
        log: &ActionLog,
        cancel: CancellationToken,
    ) -> Result<Outputs, ActionError> {
        let stage_name = loaded.pipeline.stages[attempt.stage].name.as_str();
        let spec = &loaded.pipeline.stages[attempt.stage].actions[attempt.action];
        let resolved =
            resolved_action(spec, loaded, execution, self.registry()).map_err(ActionError)?;
        let mut inputs = Vec::new();
        for name in &resolved.inputs {
            let artifact = find_artifact(execution, name.as_str()).ok_or_else(|| {
                ActionError::new(format!("input artifact {name} was not produced"))
            })?;
            inputs.push((name.clone(), artifact));
        }
        let runner = self
            .inner
            .runners
            .get(resolved.kind.type_name())
            .ok_or_else(|| {
                ActionError::new(format!(
                    "no runner for action type {}",
                    resolved.kind.type_name()
                ))
            })?;
        let work_dir = work_dir(
            &self.inner.data_dir,
            attempt,
            stage_name,
            spec.name.as_str(),
        );
        fresh_dir(work_dir.clone())
            .await
            .map_err(|e| ActionError::new(format!("cannot create {}: {e}", work_dir.display())))?;
        let timeout = resolved.timeout.unwrap_or(DEFAULT_ACTION_TIMEOUT);
        let registry_login = self.registry_login(
            format!(
                "action:{}/{}/{stage_name}/{}",
                loaded.pipeline.name, attempt.id, resolved.name
            ),
            timeout,
        );
        let ctx = ActionContext {
            execution_id: attempt.id.clone(),
            pipeline: loaded.pipeline.name.to_string(),
            stage: stage_name.to_string(),
            owner: self.inner.data_dir.display().to_string(),
            cache_dir: self
                .inner
                .data_dir
                .join("cache")
                .join(gantry_build::path_component(loaded.pipeline.name.as_str())),
            timeout,
            action: resolved,
            attempt: attempt.attempt,
            work_dir: work_dir.clone(),
            base_dir: loaded.definition.base_dir().to_path_buf(),
            inputs,
            source_revision: source_revision(loaded, execution),
            artifacts: self.inner.artifacts.clone(),
            registry: self.inner.registry.get().cloned(),
            images: self.inner.images.clone(),
            deployer: Some(self.inner.deployer.clone()),
            params: self.inner.params.clone(),
            store: self.inner.store.clone(),
            log: log.clone(),
            cancel,
            registry_login,
            mirrors: self.inner.mirrors.clone(),
            trigger: execution.trigger.clone(),
            pinned_commit: execution.source_revisions.get(spec.name.as_str()).cloned(),
            notices: Notices::new(self.inner.notifier.clone(), Subject::of(loaded, execution)),
            agents: self.inner.agents.clone(),
        };
        let result = runner.run(&ctx).await;
        if let Some(login) = &ctx.registry_login {
            self.inner.auth.forget_ephemeral(&login.token);
        }
        let result = match result {
            Ok(output) => self.import_outputs(output, log).await,
            Err(error) => Err(error),
        };
        // Off the result's path: the engine need not wait for the unlinks.
        tokio::task::spawn_blocking(move || std::fs::remove_dir_all(work_dir));
        result
    }

    /// A registry-only token for one attempt, named `who`, so its image
    /// pushes and `docker push` in builds reach the embedded registry. It
    /// expires ten minutes after the attempt's timeout, and is forgotten as
    /// soon as the attempt ends. None while the registry does not listen.
    fn registry_login(&self, who: String, timeout: Duration) -> Option<RegistryLogin> {
        let registry = self.inner.registry.get()?;
        let identity = gantry_auth::Identity {
            name: who,
            email: None,
            grants: vec![gantry_auth::Grant::new(gantry_auth::Role::Operator)],
        };
        let ttl = i64::try_from(timeout.as_millis())
            .unwrap_or(i64::MAX / 2)
            .saturating_add(600_000);
        self.inner
            .auth
            .issue_ephemeral(identity, gantry_auth::Audience::Registry, ttl, now_ms())
            .ok()
            .map(|token| RegistryLogin {
                registry: registry.clone(),
                token,
            })
    }

    /// Imports the output dirs of a finished attempt into the artifact store.
    async fn import_outputs(
        &self,
        output: ActionOutput,
        log: &ActionLog,
    ) -> Result<Outputs, ActionError> {
        let mut artifacts = BTreeMap::new();
        for (name, dir) in output.artifacts {
            let store = self.inner.artifacts.clone();
            let imported = tokio::task::spawn_blocking(move || store.import_dir(&dir))
                .await
                .map_err(|e| ActionError::new(format!("importing artifact {name} panicked: {e}")))?
                .map_err(|e| ActionError::new(format!("output artifact {name}: {e}")))?;
            log.line(&format!(
                "Output artifact {name}: {} ({} files)",
                imported.id,
                imported.file_count()
            ));
            artifacts.insert(name.to_string(), imported.id);
        }
        for (name, id) in output.stored {
            log.line(&format!("Output artifact {name}: {id} (from the agent)"));
            artifacts.insert(name.to_string(), id);
        }
        Ok((output.variables, artifacts))
    }
}

/// The work dir of an attempt: `work/<execution>/<stage>-<action>-<attempt>`.
fn work_dir(data_dir: &Path, attempt: &ActionRef, stage: &str, action: &str) -> PathBuf {
    data_dir.join("work").join(&attempt.id).join(format!(
        "{}-{}-{}",
        gantry_build::path_component(stage),
        gantry_build::path_component(action),
        attempt.attempt
    ))
}

/// Makes `dir` an empty directory, in one trip to the blocking pool. An
/// attempt's directory exists already only if an earlier server left it.
async fn fresh_dir(dir: PathBuf) -> std::io::Result<()> {
    tokio::task::spawn_blocking(move || {
        if let Some(parent) = dir.parent() {
            std::fs::create_dir_all(parent)?;
        }
        match std::fs::create_dir(&dir) {
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                std::fs::remove_dir_all(&dir)?;
                std::fs::create_dir(&dir)
            }
            other => other,
        }
    })
    .await
    .map_err(std::io::Error::other)?
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;
    use std::time::Duration;

    use tokio::sync::{Notify, mpsc};

    use crate::ControlPlane;
    use crate::actions::{
        ActionContext, ActionError, ActionOutput, ActionRunner, BoxFuture, Runners,
    };

    const PIPELINE: &str = r#"
version: 1
name: parked
stages:
  - name: Build
    actions:
      - name: wait
        type: shell
        commands: ["true"]
"#;

    /// A runner whose attempts run until they are cancelled. The first one
    /// is slow to stop: it ends only when the test releases it.
    struct Parked {
        started: mpsc::UnboundedSender<u32>,
        stopped: mpsc::UnboundedSender<u32>,
        release_first: Arc<Notify>,
    }

    impl ActionRunner for Parked {
        fn run<'a>(
            &'a self,
            ctx: &'a ActionContext,
        ) -> BoxFuture<'a, Result<ActionOutput, ActionError>> {
            Box::pin(async move {
                let _ = self.started.send(ctx.attempt);
                ctx.cancel.cancelled().await;
                if ctx.attempt == 1 {
                    self.release_first.notified().await;
                }
                let _ = self.stopped.send(ctx.attempt);
                Err(ActionError::new("stopped"))
            })
        }
    }

    #[tokio::test]
    async fn the_late_end_of_an_abandoned_attempt_leaves_its_retry_cancellable() {
        let dir = tempfile::tempdir().unwrap();
        let (started_tx, mut started) = mpsc::unbounded_channel();
        let (stopped_tx, mut stopped) = mpsc::unbounded_channel();
        let release_first = Arc::new(Notify::new());
        let mut runners = Runners::default();
        runners.register(
            "shell",
            Arc::new(Parked {
                started: started_tx,
                stopped: stopped_tx,
                release_first: release_first.clone(),
            }),
        );
        let plane = ControlPlane::open_with(&dir.path().join("data"), runners)
            .await
            .unwrap();
        let id = plane
            .start_execution(
                dir.path().join("gantry.yaml"),
                PIPELINE.to_string(),
                BTreeMap::new(),
                BTreeMap::new(),
                None,
            )
            .await
            .unwrap();
        assert_eq!(started.recv().await, Some(1));
        plane.stop(&id, true, None).await.unwrap();
        plane.retry(&id, "Build", false).await.unwrap();
        assert_eq!(started.recv().await, Some(2));

        // Attempt 1 ends after its retry started, and its task ends: it held
        // a clone of the plane until it had dropped its running entry.
        release_first.notify_one();
        assert_eq!(stopped.recv().await, Some(1));
        while Arc::strong_count(&plane.inner) > 2 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }

        plane.stop(&id, true, None).await.unwrap();
        let second = tokio::time::timeout(Duration::from_secs(10), stopped.recv()).await;
        assert_eq!(second, Ok(Some(2)), "the retry was not cancelled");
    }
}
