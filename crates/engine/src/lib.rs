//! gantry's execution state machine: the executions of one pipeline, moved on by
//! events, re-creating the semantics of AWS CodePipeline (DESIGN.md "Execution
//! semantics", aws-seed-system.md §1.3, §1.6, §1.8, §1.9, §2).
//!
//! # Concepts
//!
//! - A [`Plan`] is what one execution runs: stages in order, each with actions
//!   grouped by `run_order`. The server converts a validated pipeline file into
//!   it; the engine knows names, run orders and which actions are approvals, and
//!   nothing else about the work.
//! - An [`Event`] is a recorded fact: an execution was requested, an action
//!   succeeded, failed or began to wait for a person, someone asked to retry a
//!   stage or to stop an execution. Each carries its time, `at`, in unix
//!   milliseconds: the engine never reads a clock.
//! - A [`Command`] is work for the server: start an action's attempt, cancel an
//!   abandoned one, and tell that an execution finished.
//! - [`Engine::apply`] is the only way state changes: `(state, event) → (state,
//!   commands)`. It does no IO and has no randomness, so the server persists the
//!   events in an append-only log and rebuilds the same state by applying them
//!   again on restart (and discards the commands of the replay). Then
//!   [`Engine::interrupted`] lists the attempts that were running, which the
//!   server fails with [`ActionRef::interrupted`].
//! - A [`Trigger`] says what started an execution (a person, a webhook, a
//!   poll, a schedule, another pipeline); `ExecutionRequested` may pin
//!   source actions to commits. The engine stores both on the execution and
//!   never acts on them.
//! - An [`Execution`] is the read-only view of one run: statuses, attempts, times,
//!   errors and outputs, in the JSON shape of formats.md §3.
//!
//! # Running a stage
//!
//! The lowest `run_order` group of a stage starts together; the next group starts
//! when every action of the previous one succeeded. When an action fails, the
//! actions still running in the stage (an approval waiting for a person counts)
//! finish first; then the stage and the execution are `Failed`, and nothing more
//! starts. When every action succeeded, the execution moves to the next stage, or
//! ends `Succeeded` after the last one.
//!
//! Every attempt of an action has a number, starting at 1. Result events name the
//! attempt they report on: a result for an attempt that no longer runs (abandoned,
//! or superseded by a retry) is ignored and never an error, since the server
//! cannot prevent such late messages.
//!
//! # Stage locks and execution modes
//!
//! Stages are locked per pipeline, by stage name. In the `Superseded` (default)
//! and `Queued` modes a stage holds one execution at a time. An execution that
//! wants a held stage (its first stage, or the next one after finishing a stage,
//! whose lock it gives up when leaving) waits in front of it as the stage's
//! "inbound" execution. In `Superseded` mode a newer execution coming to wait
//! there ends the older waiting one as `Superseded`; superseding happens in
//! front of a stage, and to an execution inside one only under the rule for
//! approvals below. In `Queued` mode the waiting executions enter one
//! by one in arrival order. When the holder leaves the stage (it succeeded, failed
//! or stopped), the first waiting execution enters. `Parallel` executions take no
//! locks. If a pipeline changes mode between executions, each execution follows
//! its own plan's mode: a `Parallel` one ignores locks, and a `Superseded` one
//! that comes to wait supersedes whatever waits in front of the stage.
//!
//! The rule for approvals (issue 11; a plan's `supersede_approvals`, which
//! the server sets for every new `Superseded` execution): an older execution
//! that holds a stage only to wait for approvals there (an approval waits,
//! nothing runs, nothing failed) is superseded by a newer execution waiting
//! in front of it, as soon as both are true. Its waiting approvals are
//! abandoned (a `CancelAction` each) with an error naming the newer
//! execution, the stage is `Stopped`, the execution ends `Superseded`, and the
//! newer one enters. So nobody approves an old revision once a newer one has
//! reached the approval (CodePipeline keeps the old one, complaint #3).
//! Plans logged before the rule lack the field and keep their stage, so old
//! event logs replay as they ran.
//!
//! # Retry and stop
//!
//! `RetryStage` re-runs a `Failed` or `Stopped` stage of a `Failed` or `Stopped`
//! execution, unless a newer execution has entered that stage (any mode) or the
//! stage is held. Without `all_actions` it re-runs the actions that did not
//! succeed (failed, abandoned, or never started because of the failure or the
//! stop), group by group, skipping groups that already succeeded; with it, every
//! action from the first group. The execution is `InProgress` again and goes on to
//! the later stages.
//!
//! `Stop` without `abandon` lets the running actions finish and starts nothing
//! new; the execution is `Stopping`, then `Stopped`, and the stage it was in
//! `Stopped` (even when all its actions happened to succeed, so that a retry can
//! resume the execution). Approvals waiting for a person are abandoned at once
//! even then: they hold no work that could finish by itself, and waiting days for
//! a decision nobody needs would keep the stage locked. With `abandon`, every
//! running action is `Abandoned` at once (a `CancelAction` each) and the execution
//! is `Stopped`; this is allowed while `Stopping` too. Every action a stop
//! abandons says why in its `error` (`abandoned: the execution was stopped:
//! REASON`). An execution waiting in
//! front of a stage just leaves the queue, `Stopped`, and cannot be retried.
//!
//! # Invariants
//!
//! The property tests check these after every event of random histories:
//! - An execution is never `Succeeded` with an action that did not succeed.
//! - A terminal execution has no running or waiting action, and changes status
//!   again only through `RetryStage`.
//! - In `Superseded` and `Queued` mode no two executions are inside one stage.
//! - A `Superseded` execution never entered the stage it was superseded at,
//!   or (under the rule for approvals) left it `Stopped` with an abandoned
//!   approval and no failure.
//! - The actions the commands started and did not cancel are exactly the actions
//!   the engine sees running or waiting; every `StartAction` names a real action.
//! - If the server keeps completing the started actions, every execution ends.
//! - `apply` never panics; on `Err` the state is unchanged; the same events give
//!   the same state and commands.

mod engine;
mod error;
mod event;
mod execution;
mod plan;
mod trigger;

pub use engine::Engine;
pub use error::EngineError;
pub use event::{ActionRef, Command, Event, INTERRUPTED};
pub use execution::{ActionRun, ActionStatus, Execution, ExecutionStatus, StageRun, StageStatus};
pub use plan::{ActionPlan, ExecutionMode, Plan, StagePlan};
pub use trigger::{PullRequest, Trigger, TriggerType};

#[cfg(test)]
mod tests;
