//! The state machine: every execution of one pipeline, and its stage locks.

use std::collections::{BTreeMap, VecDeque};

use serde::Serialize;

use crate::execution::Request;
use crate::{
    ActionRef, ActionRun, ActionStatus, Command, EngineError, Event, Execution, ExecutionMode,
    ExecutionStatus, StageStatus,
};

/// All executions of one pipeline. See the crate documentation for the rules.
///
/// It serializes (with its stage locks) so that tests and operators can compare
/// two engines; it has no `Deserialize` on purpose: the event log is the only
/// persisted form, which keeps one way to rebuild the state.
#[derive(Debug, Default, Serialize)]
pub struct Engine {
    /// In arrival order; an execution's index is its age, so "newer" means a
    /// higher index.
    executions: Vec<Execution>,
    /// Rebuilt from `executions`, so not part of the serialized state.
    #[serde(skip)]
    by_id: BTreeMap<String, usize>,
    /// Keyed by stage name, shared by every execution of the pipeline.
    locks: BTreeMap<String, StageLock>,
}

/// The lock of one stage of the pipeline. Invariant: when `holder` is `None`,
/// `inbound` is empty, because releasing a lock lets the first waiting execution
/// in at once.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
struct StageLock {
    /// The execution inside the stage, for the modes that lock stages.
    holder: Option<usize>,
    /// The executions waiting in front of the stage, oldest first. In
    /// `Superseded` mode there is at most one.
    inbound: VecDeque<usize>,
    /// The newest execution that ever entered the stage, in any mode: an older
    /// execution may not retry the stage after it (CodePipeline's rule, which
    /// keeps an old revision from overwriting a newer one).
    latest_entrant: Option<usize>,
}

/// What a result event reports about an action.
enum Outcome {
    Succeeded {
        output_variables: BTreeMap<String, String>,
        output_artifacts: BTreeMap<String, String>,
    },
    Failed {
        error: String,
    },
}

impl Engine {
    pub fn new() -> Engine {
        Engine::default()
    }

    /// Applies one event and returns the commands it causes, in order.
    ///
    /// Deterministic: the same events in the same order give the same state and
    /// the same commands. Atomic: on `Err` nothing has changed. A result for an
    /// action that no longer runs (abandoned, or an older attempt) is `Ok` with no
    /// command, so a late message can never wedge the server's event loop.
    pub fn apply(&mut self, event: Event) -> Result<Vec<Command>, EngineError> {
        let mut out = Vec::new();
        match event {
            Event::ExecutionRequested {
                id,
                plan,
                variables,
                trigger,
                source_revisions,
                at,
            } => {
                let request = Request {
                    id,
                    plan,
                    variables,
                    trigger,
                    source_revisions,
                };
                self.request(request, at, &mut out)?;
            }
            Event::ActionWaiting {
                id,
                stage,
                action,
                attempt,
                at,
            } => self.action_waiting(&id, stage, action, attempt, at, &mut out)?,
            Event::ActionSucceeded {
                id,
                stage,
                action,
                attempt,
                output_variables,
                output_artifacts,
                at,
            } => {
                let outcome = Outcome::Succeeded {
                    output_variables,
                    output_artifacts,
                };
                let r = ActionRef {
                    id,
                    stage,
                    action,
                    attempt,
                };
                self.action_finished(&r, outcome, at, &mut out)?
            }
            Event::ActionFailed {
                id,
                stage,
                action,
                attempt,
                error,
                at,
            } => {
                let outcome = Outcome::Failed { error };
                let r = ActionRef {
                    id,
                    stage,
                    action,
                    attempt,
                };
                self.action_finished(&r, outcome, at, &mut out)?
            }
            Event::RetryStage {
                id,
                stage,
                all_actions,
                at,
            } => self.retry(&id, stage, all_actions, at, &mut out)?,
            Event::Stop {
                id,
                abandon,
                reason,
                at,
            } => self.stop(&id, abandon, reason, at, &mut out)?,
        }
        Ok(out)
    }

    pub fn execution(&self, id: &str) -> Option<&Execution> {
        self.by_id.get(id).map(|&x| &self.executions[x])
    }

    /// Every execution, oldest first.
    pub fn executions(&self) -> impl DoubleEndedIterator<Item = &Execution> + ExactSizeIterator {
        self.executions.iter()
    }

    /// The action attempts that were running (not waiting for a person) when the
    /// state was saved. After replaying its log on restart, the server feeds
    /// [`ActionRef::interrupted`] for each, since nothing runs them anymore.
    pub fn interrupted(&self) -> Vec<ActionRef> {
        self.actions_with(ActionStatus::InProgress)
    }

    /// The approvals waiting for a person, so that a restarted server can arm
    /// their timeouts again (they survive restarts: they hold no work).
    pub fn waiting_approvals(&self) -> Vec<ActionRef> {
        self.actions_with(ActionStatus::Waiting)
    }

    /// Checks that a person may approve or reject this action now, and returns the
    /// attempt to name in the `ActionSucceeded` or `ActionFailed` that does it.
    ///
    /// Result events are lenient (a stale one is ignored), so the server calls
    /// this first to tell the person that nothing waits. An approval that started
    /// but has not reported `ActionWaiting` yet may be decided too.
    pub fn pending_approval(
        &self,
        id: &str,
        stage: usize,
        action: usize,
    ) -> Result<u32, EngineError> {
        let x = self.lookup(id)?;
        self.check_action(x, stage, action)?;
        let e = &self.executions[x];
        let run = &e.stages[stage].actions[action];
        if !e.plan.stages[stage].actions[action].is_approval {
            return Err(EngineError::NotAnApproval {
                id: id.to_string(),
                stage: e.stages[stage].name.clone(),
                action: run.name.clone(),
            });
        }
        if !run.is_active() {
            return Err(EngineError::ApprovalNotWaiting {
                id: id.to_string(),
                stage: e.stages[stage].name.clone(),
                action: run.name.clone(),
                status: run.status,
            });
        }
        Ok(run.attempt)
    }

    fn actions_with(&self, status: ActionStatus) -> Vec<ActionRef> {
        let mut found = Vec::new();
        for e in &self.executions {
            for (s, stage) in e.stages.iter().enumerate() {
                for (a, run) in stage.actions.iter().enumerate() {
                    if run.status == Some(status) {
                        found.push(ActionRef {
                            id: e.id.clone(),
                            stage: s,
                            action: a,
                            attempt: run.attempt,
                        });
                    }
                }
            }
        }
        found
    }

    fn lookup(&self, id: &str) -> Result<usize, EngineError> {
        self.by_id
            .get(id)
            .copied()
            .ok_or_else(|| EngineError::UnknownExecution { id: id.to_string() })
    }

    /// Checks indices that come from outside, so that the code after it may index.
    fn check_action(&self, x: usize, stage: usize, action: usize) -> Result<(), EngineError> {
        let e = &self.executions[x];
        let Some(run) = e.stages.get(stage) else {
            return Err(EngineError::UnknownStage {
                id: e.id.clone(),
                stage,
            });
        };
        if action >= run.actions.len() {
            return Err(EngineError::UnknownAction {
                id: e.id.clone(),
                stage,
                action,
            });
        }
        Ok(())
    }

    // Event handlers. Each one checks everything that can be refused before it
    // changes anything, which is what makes `apply` atomic.

    fn request(
        &mut self,
        request: Request,
        at: i64,
        out: &mut Vec<Command>,
    ) -> Result<(), EngineError> {
        request.plan.validate()?;
        if self.by_id.contains_key(&request.id) {
            return Err(EngineError::DuplicateExecution { id: request.id });
        }
        if let Some(first) = self.executions.first()
            && first.pipeline != request.plan.pipeline
        {
            return Err(EngineError::WrongPipeline {
                expected: first.pipeline.clone(),
                found: request.plan.pipeline,
            });
        }
        let x = self.executions.len();
        self.by_id.insert(request.id.clone(), x);
        self.executions.push(Execution::new(request, at));
        self.want_stage(x, 0, at, out);
        Ok(())
    }

    fn action_waiting(
        &mut self,
        id: &str,
        stage: usize,
        action: usize,
        attempt: u32,
        at: i64,
        out: &mut Vec<Command>,
    ) -> Result<(), EngineError> {
        let x = self.lookup(id)?;
        self.check_action(x, stage, action)?;
        let e = &mut self.executions[x];
        if !e.plan.stages[stage].actions[action].is_approval {
            return Err(EngineError::NotAnApproval {
                id: id.to_string(),
                stage: e.stages[stage].name.clone(),
                action: e.stages[stage].actions[action].name.clone(),
            });
        }
        let stopping = e.status == ExecutionStatus::Stopping;
        let run = &mut e.stages[stage].actions[action];
        // Only a running attempt can start to wait; anything else is late or
        // repeated, and changes nothing.
        if run.attempt != attempt || run.status != Some(ActionStatus::InProgress) {
            return Ok(());
        }
        if stopping {
            // A stop abandons waiting approvals at once, even without `abandon`:
            // they hold no work that could finish on its own.
            run.status = Some(ActionStatus::Abandoned);
            run.finished_at = Some(at);
            run.error = Some(abandoned_by_stop(e.stop_reason.as_deref()));
            out.push(Command::CancelAction {
                id: id.to_string(),
                stage,
                action,
                attempt,
            });
            self.advance(x, stage, at, out);
        } else {
            run.status = Some(ActionStatus::Waiting);
            let name = self.executions[x].plan.stages[stage].name.clone();
            self.supersede_waiting_holder(&name, at, out);
        }
        Ok(())
    }

    fn action_finished(
        &mut self,
        r: &ActionRef,
        outcome: Outcome,
        at: i64,
        out: &mut Vec<Command>,
    ) -> Result<(), EngineError> {
        let &ActionRef {
            ref id,
            stage,
            action,
            attempt,
        } = r;
        let x = self.lookup(id)?;
        self.check_action(x, stage, action)?;
        let run = &mut self.executions[x].stages[stage].actions[action];
        if run.attempt != attempt || !run.is_active() {
            return Ok(());
        }
        run.finished_at = Some(at);
        match outcome {
            Outcome::Succeeded {
                output_variables,
                output_artifacts,
            } => {
                run.status = Some(ActionStatus::Succeeded);
                run.output_variables = output_variables;
                run.output_artifacts = output_artifacts;
            }
            Outcome::Failed { error } => {
                run.status = Some(ActionStatus::Failed);
                run.error = Some(error);
            }
        }
        self.advance(x, stage, at, out);
        // An approval beside the action that ended may be all that is left.
        let name = self.executions[x].plan.stages[stage].name.clone();
        self.supersede_waiting_holder(&name, at, out);
        Ok(())
    }

    fn retry(
        &mut self,
        id: &str,
        stage: usize,
        all_actions: bool,
        at: i64,
        out: &mut Vec<Command>,
    ) -> Result<(), EngineError> {
        let x = self.lookup(id)?;
        let e = &self.executions[x];
        let Some(run) = e.stages.get(stage) else {
            return Err(EngineError::UnknownStage {
                id: id.to_string(),
                stage,
            });
        };
        if !matches!(e.status, ExecutionStatus::Failed | ExecutionStatus::Stopped) {
            return Err(EngineError::ExecutionNotRetryable {
                id: id.to_string(),
                status: e.status,
            });
        }
        if !matches!(run.status, Some(StageStatus::Failed | StageStatus::Stopped)) {
            return Err(EngineError::StageNotRetryable {
                id: id.to_string(),
                stage: run.name.clone(),
                status: run.status,
            });
        }
        if let Some(lock) = self.locks.get(&run.name) {
            if let Some(newer) = lock.latest_entrant
                && newer > x
            {
                return Err(EngineError::NewerExecutionEntered {
                    id: id.to_string(),
                    stage: run.name.clone(),
                    newer: self.executions[newer].id.clone(),
                });
            }
            // Only an older execution could still hold the stage here, and only
            // after an unusual history (a retry of an earlier stage); wait for it
            // rather than share the stage.
            if e.plan.mode.locks_stages()
                && let Some(holder) = lock.holder
                && holder != x
            {
                return Err(EngineError::StageBusy {
                    id: id.to_string(),
                    stage: run.name.clone(),
                    holder: self.executions[holder].id.clone(),
                });
            }
        }

        let e = &mut self.executions[x];
        e.status = ExecutionStatus::InProgress;
        e.finished_at = None;
        e.stop_reason = None;
        // Failed-actions mode keeps what succeeded and re-runs everything else:
        // the failed and abandoned actions, and the groups a failure or a stop
        // kept from starting. Succeeded groups are then skipped by `advance`.
        for run in &mut e.stages[stage].actions {
            if all_actions || run.status != Some(ActionStatus::Succeeded) {
                run.reset();
            }
        }
        self.enter(x, stage, at, out);
        Ok(())
    }

    fn stop(
        &mut self,
        id: &str,
        abandon: bool,
        reason: Option<String>,
        at: i64,
        out: &mut Vec<Command>,
    ) -> Result<(), EngineError> {
        let x = self.lookup(id)?;
        let e = &mut self.executions[x];
        match (e.status, abandon) {
            (ExecutionStatus::InProgress, _) | (ExecutionStatus::Stopping, true) => {}
            (status, _) => {
                return Err(EngineError::NotStoppable {
                    id: id.to_string(),
                    status,
                });
            }
        }
        if reason.is_some() {
            e.stop_reason = reason;
        }
        // An execution waiting in front of a stage holds nothing: it just leaves
        // the queue. It has no failed or stopped stage, so it cannot be retried,
        // as in CodePipeline.
        if let Some(k) = e.waiting_at {
            if let Some(lock) = self.locks.get_mut(&e.plan.stages[k].name) {
                lock.inbound.retain(|&y| y != x);
            }
            self.finish(x, ExecutionStatus::Stopped, at, out);
            return Ok(());
        }
        let Some(k) = e.current_stage() else {
            // Not reachable: an execution in progress is always inside a stage or
            // in front of one. Ending it is the safe answer all the same.
            self.finish(x, ExecutionStatus::Stopped, at, out);
            return Ok(());
        };
        e.status = ExecutionStatus::Stopping;
        for (a, run) in e.stages[k].actions.iter_mut().enumerate() {
            let give_up = match run.status {
                Some(ActionStatus::InProgress) => abandon,
                Some(ActionStatus::Waiting) => true,
                _ => false,
            };
            if give_up {
                run.status = Some(ActionStatus::Abandoned);
                run.finished_at = Some(at);
                run.error = Some(abandoned_by_stop(e.stop_reason.as_deref()));
                out.push(Command::CancelAction {
                    id: id.to_string(),
                    stage: k,
                    action: a,
                    attempt: run.attempt,
                });
            }
        }
        if e.stages[k].actions.iter().any(ActionRun::is_active) {
            e.stages[k].status = Some(StageStatus::Stopping);
        }
        // With nothing left running, this ends the stop at once.
        self.advance(x, k, at, out);
        Ok(())
    }

    // Transitions. They cannot fail: the handlers checked the event, and the
    // indices they pass come from the engine's own consistent state.

    /// Execution `x` wants to enter its stage `k`: it enters, or waits in front.
    fn want_stage(&mut self, x: usize, k: usize, at: i64, out: &mut Vec<Command>) {
        let e = &self.executions[x];
        let mode = e.plan.mode;
        if !mode.locks_stages() {
            self.enter(x, k, at, out);
            return;
        }
        let lock = self.locks.entry(e.plan.stages[k].name.clone()).or_default();
        if lock.holder.is_none() {
            self.enter(x, k, at, out);
            return;
        }
        // In Superseded mode the newest waiting execution replaces the older
        // ones; an execution inside a stage is superseded only when it waits
        // there for approvals and the newer one's plan says so (below).
        let superseded: Vec<usize> = if mode == ExecutionMode::Superseded {
            lock.inbound.drain(..).collect()
        } else {
            Vec::new()
        };
        lock.inbound.push_back(x);
        self.executions[x].waiting_at = Some(k);
        for y in superseded {
            self.finish(y, ExecutionStatus::Superseded, at, out);
        }
        let name = self.executions[x].plan.stages[k].name.clone();
        self.supersede_waiting_holder(&name, at, out);
    }

    /// The rule for approvals of `Plan::supersede_approvals`: the execution
    /// waiting in front of stage `name` replaces the stage's holder when the
    /// holder is older, in `Superseded` mode too, and only waits there for
    /// people (an approval waits; nothing runs or failed). The holder's waiting
    /// approvals are abandoned with the reason, the stage is `Stopped`, the
    /// holder ends `Superseded`, and the waiting execution enters. Called
    /// whenever one of those conditions may have become true: an execution
    /// came to wait, an approval began to wait, an action beside it ended.
    fn supersede_waiting_holder(&mut self, name: &str, at: i64, out: &mut Vec<Command>) {
        let Some(lock) = self.locks.get(name) else {
            return;
        };
        let (Some(holder), Some(&newer)) = (lock.holder, lock.inbound.back()) else {
            return;
        };
        let (h, n) = (&self.executions[holder], &self.executions[newer]);
        let applies = newer > holder
            && n.plan.mode == ExecutionMode::Superseded
            && n.plan.supersede_approvals
            && h.plan.mode == ExecutionMode::Superseded
            && h.status == ExecutionStatus::InProgress;
        let Some(k) = h
            .current_stage()
            .filter(|&k| applies && h.stages[k].name == name)
        else {
            return;
        };
        let actions = &h.stages[k].actions;
        let waits = actions
            .iter()
            .any(|a| a.status == Some(ActionStatus::Waiting));
        // A stage where something failed fails when its approvals end: it
        // is left to do so (and stays retryable) rather than superseded.
        let runs_or_failed = actions.iter().any(|a| {
            matches!(
                a.status,
                Some(ActionStatus::InProgress | ActionStatus::Failed | ActionStatus::Abandoned)
            )
        });
        if !waits || runs_or_failed {
            return;
        }
        let reason = format!(
            "superseded by execution {}, a newer revision that reached this stage: \
             this approval can no longer be given",
            n.id
        );
        let h = &mut self.executions[holder];
        for (a, run) in h.stages[k].actions.iter_mut().enumerate() {
            if run.status == Some(ActionStatus::Waiting) {
                run.status = Some(ActionStatus::Abandoned);
                run.finished_at = Some(at);
                run.error = Some(reason.clone());
                out.push(Command::CancelAction {
                    id: h.id.clone(),
                    stage: k,
                    action: a,
                    attempt: run.attempt,
                });
            }
        }
        // Releasing the stage lets the newer execution in.
        self.settle(
            holder,
            k,
            ExecutionStatus::Superseded,
            StageStatus::Stopped,
            at,
            out,
        );
    }

    fn enter(&mut self, x: usize, k: usize, at: i64, out: &mut Vec<Command>) {
        let e = &mut self.executions[x];
        e.waiting_at = None;
        e.stages[k].status = Some(StageStatus::InProgress);
        let lock = self.locks.entry(e.plan.stages[k].name.clone()).or_default();
        if e.plan.mode.locks_stages() {
            lock.holder = Some(x);
        }
        lock.latest_entrant = lock.latest_entrant.max(Some(x));
        self.advance(x, k, at, out);
    }

    /// Moves stage `k` of execution `x` on after anything in it changed: waits
    /// while an action is active, then ends a stop, fails the stage, starts the
    /// next run-order group, or completes the stage.
    fn advance(&mut self, x: usize, k: usize, at: i64, out: &mut Vec<Command>) {
        let e = &mut self.executions[x];
        let run = &e.stages[k];
        // Siblings in flight finish first, whatever happened to the others.
        if run.actions.iter().any(ActionRun::is_active) {
            return;
        }
        if e.status == ExecutionStatus::Stopping {
            // The stage is Stopped even when every action in it succeeded, so a
            // retry can resume the execution from here.
            self.settle(
                x,
                k,
                ExecutionStatus::Stopped,
                StageStatus::Stopped,
                at,
                out,
            );
            return;
        }
        let failed = run.actions.iter().any(|a| {
            matches!(
                a.status,
                Some(ActionStatus::Failed | ActionStatus::Abandoned)
            )
        });
        if failed {
            self.settle(x, k, ExecutionStatus::Failed, StageStatus::Failed, at, out);
            return;
        }
        let plan = &e.plan.stages[k];
        let next_group = plan
            .actions
            .iter()
            .zip(&run.actions)
            .filter(|(_, a)| a.status != Some(ActionStatus::Succeeded))
            .map(|(p, _)| p.run_order)
            .min();
        if let Some(order) = next_group {
            // Only never-started or reset actions remain in that group: every
            // other status was handled above.
            for (a, (p, run)) in plan
                .actions
                .iter()
                .zip(e.stages[k].actions.iter_mut())
                .enumerate()
            {
                if p.run_order == order && run.status.is_none() {
                    run.start(at);
                    out.push(Command::StartAction {
                        id: e.id.clone(),
                        stage: k,
                        action: a,
                        attempt: run.attempt,
                    });
                }
            }
            return;
        }
        e.stages[k].status = Some(StageStatus::Succeeded);
        if k + 1 < e.stages.len() {
            self.want_stage(x, k + 1, at, out);
        } else {
            self.finish(x, ExecutionStatus::Succeeded, at, out);
        }
        self.release(x, k, at, out);
    }

    /// Ends execution `x` inside its stage `k` without success.
    fn settle(
        &mut self,
        x: usize,
        k: usize,
        status: ExecutionStatus,
        stage_status: StageStatus,
        at: i64,
        out: &mut Vec<Command>,
    ) {
        self.executions[x].stages[k].status = Some(stage_status);
        self.finish(x, status, at, out);
        self.release(x, k, at, out);
    }

    fn finish(&mut self, x: usize, status: ExecutionStatus, at: i64, out: &mut Vec<Command>) {
        let e = &mut self.executions[x];
        e.status = status;
        e.finished_at = Some(at);
        e.waiting_at = None;
        out.push(Command::ExecutionFinished {
            id: e.id.clone(),
            status,
        });
    }

    /// Execution `x` leaves its stage `k`: the stage's lock, if `x` holds it, goes
    /// to the first execution waiting in front.
    fn release(&mut self, x: usize, k: usize, at: i64, out: &mut Vec<Command>) {
        let Some(lock) = self.locks.get_mut(&self.executions[x].plan.stages[k].name) else {
            return;
        };
        if lock.holder != Some(x) {
            return;
        }
        lock.holder = None;
        let Some(next) = lock.inbound.pop_front() else {
            return;
        };
        if let Some(nk) = self.executions[next].waiting_at {
            self.enter(next, nk, at, out);
        }
    }
}

#[cfg(test)]
impl Engine {
    /// Checks the invariants that only the private state shows; the tests call
    /// it after every event.
    pub(crate) fn check_locks(&self) -> Result<(), String> {
        for (name, lock) in &self.locks {
            if lock.holder.is_none() && !lock.inbound.is_empty() {
                return Err(format!("stage {name} is free but has waiting executions"));
            }
            if let Some(h) = lock.holder {
                let e = &self.executions[h];
                let k = e.stage_index(name);
                if k.is_none() || e.current_stage() != k {
                    return Err(format!("{} holds {name} without being in it", e.id));
                }
            }
            for &y in &lock.inbound {
                let e = &self.executions[y];
                let k = e.waiting_at.map(|k| e.plan.stages[k].name.as_str());
                if k != Some(name.as_str()) || e.status != ExecutionStatus::InProgress {
                    return Err(format!(
                        "{} is queued at {name} but does not wait there",
                        e.id
                    ));
                }
            }
            let superseded_mode = lock
                .inbound
                .iter()
                .all(|&y| self.executions[y].plan.mode == ExecutionMode::Superseded);
            if superseded_mode && lock.inbound.len() > 1 {
                return Err(format!("{} executions wait at {name}", lock.inbound.len()));
            }
        }
        for (x, e) in self.executions.iter().enumerate() {
            if self.by_id.get(&e.id) != Some(&x) {
                return Err(format!("{} is missing from the index", e.id));
            }
            if let Some(k) = e.waiting_at {
                let queued = self
                    .locks
                    .get(&e.plan.stages[k].name)
                    .is_some_and(|lock| lock.inbound.contains(&x));
                if !queued {
                    return Err(format!("{} waits but is not queued", e.id));
                }
            }
            if e.plan.mode.locks_stages()
                && let Some(k) = e.current_stage()
                && self
                    .locks
                    .get(&e.plan.stages[k].name)
                    .and_then(|l| l.holder)
                    != Some(x)
            {
                return Err(format!("{} is in a stage without holding it", e.id));
            }
        }
        Ok(())
    }
}

/// The error of an action a stop abandoned: why it never finished.
fn abandoned_by_stop(reason: Option<&str>) -> String {
    match reason {
        Some(reason) => format!("abandoned: the execution was stopped: {reason}"),
        None => "abandoned: the execution was stopped".to_string(),
    }
}
