//! Start-up: the state is rebuilt from the event log, then the work the
//! previous process left behind is recovered.
//!
//! Replaying applies every logged event, in order, to fresh engines; the
//! engine is deterministic, so this gives exactly the state the previous
//! process had, and the commands of the replay are discarded (that process
//! carried them out already). Only unfinished executions can change, so only
//! their definitions are loaded.
//!
//! Recovery: every action that was `InProgress` is failed with an
//! "interrupted" error (it may have half-run; running it again silently could
//! repeat side effects), and every approval still waiting gets its timeout
//! timer back. Nothing is left stuck `InProgress`. Before any of that (and
//! after the log is read), the work dirs of the interrupted attempts are
//! removed and their processes killed.

use std::path::Path;
use std::sync::Arc;

use gantry_clock::now_ms;
use gantry_engine::Event;
use gantry_store::Store;

use super::{ControlPlane, State};
use crate::definition::Definition;
use crate::error::ControlError;

/// Kills the processes of an earlier server's actions and removes their
/// work dirs.
///
/// Nothing runs yet, so every leftover work directory is garbage from an
/// earlier process, and processes of its actions may live on. An attempt's
/// work directory lives as long as the attempt, so without one no action can
/// have been interrupted, and /proc is not scanned.
pub(super) async fn clear_interrupted_work(data_dir: &Path) {
    let work = data_dir.join("work");
    let interrupted = std::fs::read_dir(&work).is_ok_and(|mut d| d.next().is_some());
    if interrupted {
        let orphans = crate::orphans::kill_orphans(data_dir);
        if orphans > 0 {
            tracing::warn!(
                orphans,
                "Killed processes left behind by an earlier server."
            );
        }
    }
    if work.exists() {
        let _ = tokio::fs::remove_dir_all(&work).await;
    }
}

/// A stored definition of an execution, read back.
pub(super) fn parse_definition(id: &str, text: &str) -> Result<Definition, ControlError> {
    serde_json::from_str(text).map_err(|e| ControlError::CorruptLog {
        seq: 0,
        reason: format!("definition of {id}: {e}"),
    })
}

impl State {
    /// The state the event log describes, with the definitions of the
    /// executions that have not finished.
    pub(super) async fn replay(store: &Store) -> Result<State, ControlError> {
        let mut state = State::default();
        for record in store.events().await? {
            let event: Event =
                serde_json::from_str(&record.body).map_err(|e| ControlError::CorruptLog {
                    seq: record.seq,
                    reason: e.to_string(),
                })?;
            let engine = state.engines.entry(record.pipeline.clone()).or_default();
            if let Err(error) = engine.apply(event) {
                // The log only holds events the engine accepted; a refusal
                // here means the engine's rules changed. Skipping keeps the
                // server usable; the warning makes it visible.
                tracing::warn!(seq = record.seq, %error, "Replayed event was refused.");
            }
            state
                .pipeline_of
                .insert(record.execution_id, record.pipeline);
        }
        let mut to_load = Vec::new();
        for engine in state.engines.values() {
            for execution in engine.executions() {
                if !execution.status.is_terminal() {
                    let json = serde_json::to_string(execution).unwrap_or_default();
                    state.open.insert(execution.id.clone(), json);
                    to_load.push(execution.id.clone());
                }
            }
        }
        for id in to_load {
            if let Some(text) = store.definition(&id).await? {
                match parse_definition(&id, &text)?.load() {
                    Ok(loaded) => {
                        state.loaded.insert(id, Arc::new(loaded));
                    }
                    Err(errors) => {
                        tracing::warn!(execution = %id, errors = errors.len(), "Stored definition is invalid.")
                    }
                }
            }
        }
        Ok(state)
    }
}

impl ControlPlane {
    /// Fails the attempts the replayed state shows running, and arms the
    /// timers of the approvals it shows waiting.
    pub(super) async fn recover(&self) -> Result<(), ControlError> {
        let (interrupted, waiting) = {
            let state = self.inner.state.lock().await;
            let mut interrupted = Vec::new();
            let mut waiting = Vec::new();
            for engine in state.engines.values() {
                for attempt in engine.interrupted() {
                    let names = engine.execution(&attempt.id).and_then(|e| {
                        let stage = e.stages.get(attempt.stage)?;
                        Some((
                            stage.name.clone(),
                            stage.actions.get(attempt.action)?.name.clone(),
                        ))
                    });
                    interrupted.push((attempt, names));
                }
                waiting.extend(engine.waiting_approvals());
            }
            (interrupted, waiting)
        };
        for (attempt, names) in interrupted {
            if let Some((stage, name)) = names {
                let log = self
                    .inner
                    .logs
                    .action(&attempt.id, &stage, &name, attempt.attempt);
                log.line(gantry_engine::INTERRUPTED);
            }
            tracing::warn!(execution = %attempt.id, stage = attempt.stage, action = attempt.action, "Action was interrupted by a restart.");
            self.submit(attempt.interrupted(now_ms())).await?;
        }
        for approval in waiting {
            self.arm_approval_timer(&approval).await;
        }
        Ok(())
    }
}
