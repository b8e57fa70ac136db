//! Random histories: random plans, executions arriving at random moments,
//! results of the started actions in random order, stops, retries and stray
//! results. After every event the invariants of the crate documentation must
//! hold; at the end, a driver that keeps completing the started actions must see
//! every execution end, and replaying the log must rebuild the same state.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;

use crate::{
    ActionPlan, ActionRef, ActionStatus, Command, Engine, EngineError, Event, ExecutionMode,
    ExecutionStatus, Plan, StagePlan, StageStatus,
};

#[derive(Debug, Clone, Copy)]
enum Outcome {
    Succeed,
    Fail,
    /// An approval reports that it waits (other actions succeed instead).
    Wait,
}

#[derive(Debug, Clone)]
enum Op {
    Request,
    /// Completes one of the running attempts, picked by `pick`.
    Complete {
        pick: usize,
        outcome: Outcome,
    },
    Stop {
        pick: usize,
        abandon: bool,
    },
    /// `stage` may be out of range, to exercise refusals.
    Retry {
        pick: usize,
        stage: usize,
        all_actions: bool,
    },
    /// Retries the failed or stopped stage of an ended execution, which the
    /// engine may still refuse (a newer execution entered it).
    RetryEnded {
        pick: usize,
        all_actions: bool,
    },
    /// A result for any action and attempt, mostly stale or invalid.
    Stray {
        pick: usize,
        stage: usize,
        action: usize,
        attempt: u32,
        succeed: bool,
    },
}

fn plan_strategy() -> impl Strategy<Value = Plan> {
    let action = (1u32..=3, prop::bool::weighted(0.2));
    let stage = prop::collection::vec(action, 1..=4);
    let mode = prop_oneof![
        Just(ExecutionMode::Superseded),
        Just(ExecutionMode::Queued),
        Just(ExecutionMode::Parallel),
    ];
    let rules = (prop::collection::vec(stage, 1..=5), mode, any::<bool>());
    rules.prop_map(|(stages, mode, supersede_approvals)| Plan {
        pipeline: "shop".to_string(),
        mode,
        supersede_approvals,
        stages: stages
            .into_iter()
            .enumerate()
            .map(|(s, actions)| StagePlan {
                name: format!("Stage{s}"),
                actions: actions
                    .into_iter()
                    .enumerate()
                    .map(|(a, (run_order, is_approval))| ActionPlan {
                        name: format!("action{a}"),
                        run_order,
                        is_approval,
                    })
                    .collect(),
            })
            .collect(),
    })
}

fn op_strategy() -> impl Strategy<Value = Op> {
    let outcome = prop_oneof![
        6 => Just(Outcome::Succeed),
        2 => Just(Outcome::Fail),
        2 => Just(Outcome::Wait),
    ];
    prop_oneof![
        3 => Just(Op::Request),
        12 => (any::<usize>(), outcome).prop_map(|(pick, outcome)| Op::Complete { pick, outcome }),
        1 => (any::<usize>(), any::<bool>()).prop_map(|(pick, abandon)| Op::Stop { pick, abandon }),
        1 => (any::<usize>(), 0usize..6, any::<bool>())
            .prop_map(|(pick, stage, all_actions)| Op::Retry { pick, stage, all_actions }),
        2 => (any::<usize>(), any::<bool>())
            .prop_map(|(pick, all_actions)| Op::RetryEnded { pick, all_actions }),
        1 => (any::<usize>(), 0usize..6, 0usize..5, 0u32..4, any::<bool>()).prop_map(
            |(pick, stage, action, attempt, succeed)| Op::Stray { pick, stage, action, attempt, succeed }
        ),
    ]
}

/// Plays the server: feeds events, follows the commands, checks every step.
struct Driver {
    engine: Engine,
    plan: Plan,
    log: Vec<Event>,
    results: Vec<Result<Vec<Command>, EngineError>>,
    /// The attempts the commands started and did not cancel, and no result ended.
    running: BTreeSet<ActionRef>,
    now: i64,
}

impl Driver {
    fn new(plan: Plan) -> Driver {
        Driver {
            engine: Engine::new(),
            plan,
            log: Vec::new(),
            results: Vec::new(),
            running: BTreeSet::new(),
            now: 0,
        }
    }

    fn ids(&self) -> Vec<String> {
        self.engine.executions().map(|e| e.id.clone()).collect()
    }

    fn pick_id(&self, pick: usize) -> String {
        let ids = self.ids();
        if ids.is_empty() {
            "ghost".to_string()
        } else {
            ids[pick % ids.len()].clone()
        }
    }

    fn is_approval(&self, r: &ActionRef) -> bool {
        self.plan.stages[r.stage].actions[r.action].is_approval
    }

    fn action_status(&self, r: &ActionRef) -> Option<ActionStatus> {
        self.engine.execution(&r.id).unwrap().stages[r.stage].actions[r.action].status
    }

    fn op(&mut self, op: Op) {
        self.now += 1;
        let at = self.now;
        let event = match op {
            Op::Request => Event::ExecutionRequested {
                id: format!("e{}", self.engine.executions().len()),
                plan: self.plan.clone(),
                variables: BTreeMap::new(),
                trigger: None,
                source_revisions: BTreeMap::new(),
                at,
            },
            Op::Complete { pick, outcome } => {
                if self.running.is_empty() {
                    return;
                }
                let r = self
                    .running
                    .iter()
                    .nth(pick % self.running.len())
                    .unwrap()
                    .clone();
                self.complete(r, outcome, at)
            }
            Op::Stop { pick, abandon } => Event::Stop {
                id: self.pick_id(pick),
                abandon,
                reason: None,
                at,
            },
            Op::Retry {
                pick,
                stage,
                all_actions,
            } => Event::RetryStage {
                id: self.pick_id(pick),
                stage,
                all_actions,
                at,
            },
            Op::RetryEnded { pick, all_actions } => {
                let ended: Vec<(String, usize)> = self
                    .engine
                    .executions()
                    .filter_map(|e| {
                        let k = e.stages.iter().position(|s| {
                            matches!(s.status, Some(StageStatus::Failed | StageStatus::Stopped))
                        })?;
                        Some((e.id.clone(), k))
                    })
                    .collect();
                if ended.is_empty() {
                    return;
                }
                let (id, stage) = ended[pick % ended.len()].clone();
                Event::RetryStage {
                    id,
                    stage,
                    all_actions,
                    at,
                }
            }
            Op::Stray {
                pick,
                stage,
                action,
                attempt,
                succeed,
            } => {
                let r = ActionRef {
                    id: self.pick_id(pick),
                    stage,
                    action,
                    attempt,
                };
                let outcome = if succeed {
                    Outcome::Succeed
                } else {
                    Outcome::Fail
                };
                self.result(r, outcome, at)
            }
        };
        self.apply(event);
    }

    /// The event that completes a running attempt: an approval first waits.
    fn complete(&self, r: ActionRef, outcome: Outcome, at: i64) -> Event {
        let waits = matches!(outcome, Outcome::Wait)
            && self.is_approval(&r)
            && self.action_status(&r) == Some(ActionStatus::InProgress);
        if waits {
            Event::ActionWaiting {
                id: r.id,
                stage: r.stage,
                action: r.action,
                attempt: r.attempt,
                at,
            }
        } else {
            self.result(r, outcome, at)
        }
    }

    fn result(&self, r: ActionRef, outcome: Outcome, at: i64) -> Event {
        match outcome {
            Outcome::Fail => Event::ActionFailed {
                id: r.id,
                stage: r.stage,
                action: r.action,
                attempt: r.attempt,
                error: "boom".to_string(),
                at,
            },
            Outcome::Succeed | Outcome::Wait => Event::ActionSucceeded {
                id: r.id,
                stage: r.stage,
                action: r.action,
                attempt: r.attempt,
                output_variables: BTreeMap::new(),
                output_artifacts: BTreeMap::new(),
                at,
            },
        }
    }

    fn statuses(&self) -> BTreeMap<String, ExecutionStatus> {
        self.engine
            .executions()
            .map(|e| (e.id.clone(), e.status))
            .collect()
    }

    fn apply(&mut self, event: Event) {
        let state_before = serde_json::to_string(&self.engine).unwrap();
        let before = self.statuses();
        let ends = match &event {
            Event::ActionSucceeded {
                id,
                stage,
                action,
                attempt,
                ..
            }
            | Event::ActionFailed {
                id,
                stage,
                action,
                attempt,
                ..
            } => Some(ActionRef {
                id: id.clone(),
                stage: *stage,
                action: *action,
                attempt: *attempt,
            }),
            _ => None,
        };
        let retried = match &event {
            Event::RetryStage { id, .. } => Some(id.clone()),
            _ => None,
        };

        let result = self.engine.apply(event.clone());
        // Only an accepted retry may bring an ended execution back.
        let retried = retried.filter(|_| result.is_ok());
        self.log.push(event);
        self.results.push(result.clone());

        let mut finished: BTreeMap<String, ExecutionStatus> = BTreeMap::new();
        match result {
            Err(_) => {
                let state_after = serde_json::to_string(&self.engine).unwrap();
                assert_eq!(
                    state_before, state_after,
                    "a refused event changed the state"
                );
            }
            Ok(commands) => {
                if let Some(r) = ends {
                    // Accepted exactly when that attempt was running, which the
                    // check of `running` against the engine below confirms.
                    self.running.remove(&r);
                }
                for command in commands {
                    match command {
                        Command::StartAction {
                            id,
                            stage,
                            action,
                            attempt,
                        } => {
                            let e = self.engine.execution(&id).expect("a known execution");
                            let run = e
                                .stages
                                .get(stage)
                                .and_then(|s| s.actions.get(action))
                                .expect("StartAction names a real action");
                            assert_eq!(run.status, Some(ActionStatus::InProgress));
                            assert_eq!(run.attempt, attempt);
                            let r = ActionRef {
                                id,
                                stage,
                                action,
                                attempt,
                            };
                            assert!(self.running.insert(r), "started twice");
                        }
                        Command::CancelAction {
                            id,
                            stage,
                            action,
                            attempt,
                        } => {
                            let r = ActionRef {
                                id,
                                stage,
                                action,
                                attempt,
                            };
                            assert!(self.running.remove(&r), "cancelled what did not run");
                        }
                        Command::ExecutionFinished { id, status } => {
                            assert!(status.is_terminal());
                            assert!(
                                finished.insert(id, status).is_none(),
                                "finished twice in one event"
                            );
                        }
                    }
                }
            }
        }
        self.check(&before, retried.as_deref(), &finished);
    }

    fn check(
        &self,
        before: &BTreeMap<String, ExecutionStatus>,
        retried: Option<&str>,
        finished: &BTreeMap<String, ExecutionStatus>,
    ) {
        if let Err(problem) = self.engine.check_locks() {
            panic!("{problem}");
        }
        let active: BTreeSet<ActionRef> = self
            .engine
            .waiting_approvals()
            .into_iter()
            .chain(self.engine.interrupted())
            .collect();
        assert_eq!(
            active, self.running,
            "the commands disagree with the engine"
        );

        let mode = self.plan.mode;
        let mut occupied: BTreeMap<usize, &str> = BTreeMap::new();
        for e in self.engine.executions() {
            check_execution(e);
            if mode == ExecutionMode::Parallel {
                assert_eq!(e.waiting_at, None);
            }
            if mode != ExecutionMode::Superseded {
                assert_ne!(e.status, ExecutionStatus::Superseded);
            }
            if mode.locks_stages()
                && let Some(k) = e.current_stage()
                && let Some(other) = occupied.insert(k, &e.id)
            {
                panic!("{other} and {} are both in stage {k}", e.id);
            }

            let was = before
                .get(&e.id)
                .copied()
                .unwrap_or(ExecutionStatus::InProgress);
            let is_retry = retried == Some(e.id.as_str());
            if was.is_terminal() && !is_retry {
                assert_eq!(e.status, was, "{} changed status after ending", e.id);
            }
            let ended = e.status.is_terminal() && (!was.is_terminal() || is_retry);
            assert_eq!(
                finished.get(&e.id),
                ended.then_some(&e.status),
                "ExecutionFinished does not match the status of {}",
                e.id
            );
        }
    }

    /// Keeps completing the started attempts (approvals wait first) until none
    /// runs; then every execution must have ended.
    fn drain(&mut self, failures: &[bool]) {
        let actions: usize = self.plan.stages.iter().map(|s| s.actions.len()).sum();
        // Without retries or new executions, each action starts at most once per
        // execution and needs at most two events (wait, then a decision).
        let limit = 2 * actions * self.engine.executions().len() + 1;
        let mut steps = 0;
        while let Some(r) = self.running.iter().next().cloned() {
            assert!(steps < limit, "the executions do not end");
            self.now += 1;
            let outcome = if failures[steps % failures.len()] {
                Outcome::Fail
            } else {
                Outcome::Wait
            };
            let event = self.complete(r, outcome, self.now);
            self.apply(event);
            steps += 1;
        }
        for e in self.engine.executions() {
            assert!(e.status.is_terminal(), "{} is stuck {}", e.id, e.status);
        }
    }

    fn replay(&self) {
        let mut engine = Engine::new();
        let results: Vec<_> = self.log.iter().map(|e| engine.apply(e.clone())).collect();
        assert_eq!(results, self.results);
        assert_eq!(
            serde_json::to_string(&engine).unwrap(),
            serde_json::to_string(&self.engine).unwrap()
        );
    }
}

/// The invariants of one execution on its own.
fn check_execution(e: &crate::Execution) {
    let statuses: Vec<Option<StageStatus>> = e.stages.iter().map(|s| s.status).collect();
    // Succeeded stages, then at most one stage where the execution is or ended,
    // then stages not reached.
    let reached = statuses
        .iter()
        .take_while(|s| **s == Some(StageStatus::Succeeded))
        .count();
    let rest = &statuses[reached..];
    let unreached = match rest.first() {
        Some(Some(_)) => &rest[1..],
        _ => rest,
    };
    assert!(
        unreached.iter().all(Option::is_none),
        "{}: stages {statuses:?}",
        e.id
    );
    for stage in &e.stages {
        match stage.status {
            None => assert!(
                stage
                    .actions
                    .iter()
                    .all(|a| a.status.is_none() && a.attempt == 0)
            ),
            Some(StageStatus::Succeeded) => assert!(
                stage
                    .actions
                    .iter()
                    .all(|a| a.status == Some(ActionStatus::Succeeded)),
                "{}: a Succeeded stage with an action that did not succeed",
                e.id
            ),
            Some(_) => {}
        }
    }
    let active = e
        .stages
        .iter()
        .flat_map(|s| &s.actions)
        .any(|a| a.is_active());
    match e.status {
        ExecutionStatus::InProgress | ExecutionStatus::Stopping => {
            assert_eq!(e.finished_at, None);
            assert!(
                e.waiting_at.is_some() != e.current_stage().is_some(),
                "{} is neither in a stage nor in front of one",
                e.id
            );
            if e.status == ExecutionStatus::Stopping {
                assert!(e.current_stage().is_some());
            }
            if let Some(k) = e.waiting_at {
                assert_eq!(statuses[k], None);
                assert_eq!(reached, k);
            }
        }
        terminal => {
            assert!(e.finished_at.is_some());
            assert!(!active, "{} ended {terminal} with an action running", e.id);
            assert_eq!((e.waiting_at, e.current_stage()), (None, None));
            match terminal {
                ExecutionStatus::Succeeded => {
                    assert_eq!(
                        reached,
                        e.stages.len(),
                        "{} Succeeded with unfinished stages",
                        e.id
                    )
                }
                ExecutionStatus::Failed => {
                    let failed = &e.stages[reached];
                    assert_eq!(failed.status, Some(StageStatus::Failed));
                    assert!(
                        failed
                            .actions
                            .iter()
                            .any(|a| a.status == Some(ActionStatus::Failed)),
                        "{} Failed without a failed action",
                        e.id
                    );
                }
                ExecutionStatus::Superseded => match statuses.get(reached).copied().flatten() {
                    // Superseded in front of a stage: it never entered it.
                    None => assert!(statuses[reached..].iter().all(Option::is_none)),
                    // Superseded while its approvals waited (the plan's
                    // `supersede_approvals`): the stage is Stopped, and
                    // nothing in it failed or ran on.
                    Some(status) => {
                        assert!(
                            e.plan.supersede_approvals,
                            "{} superseded inside a stage",
                            e.id
                        );
                        assert_eq!(status, StageStatus::Stopped);
                        let actions = &e.stages[reached].actions;
                        assert!(
                            actions
                                .iter()
                                .any(|a| a.status == Some(ActionStatus::Abandoned))
                                && !actions
                                    .iter()
                                    .any(|a| a.status == Some(ActionStatus::Failed)),
                            "{} superseded without an abandoned approval, or with a failure",
                            e.id
                        );
                    }
                },
                _ => {}
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn random_histories_keep_the_invariants(
        plan in plan_strategy(),
        ops in prop::collection::vec(op_strategy(), 1..80),
        failures in prop::collection::vec(prop::bool::weighted(0.15), 1..8),
    ) {
        let mut driver = Driver::new(plan);
        driver.op(Op::Request);
        for op in ops {
            driver.op(op);
        }
        driver.drain(&failures);
        driver.replay();
    }
}
