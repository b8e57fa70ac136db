//! Tests of the engine: one test per rule (`rules`), and random histories
//! checked against the invariants after every event (`properties`).

mod properties;
mod rules;

use std::collections::BTreeMap;

use crate::{ActionPlan, Command, Engine, EngineError, Event, ExecutionMode, Plan, StagePlan};

/// `(action, run_order, is_approval)`.
type ActionSketch<'a> = (&'a str, u32, bool);

/// A plan from `(stage, actions)` pairs.
fn plan(mode: ExecutionMode, stages: &[(&str, &[ActionSketch<'_>])]) -> Plan {
    Plan {
        pipeline: "shop".to_string(),
        mode,
        supersede_approvals: false,
        stages: stages
            .iter()
            .map(|(name, actions)| StagePlan {
                name: name.to_string(),
                actions: actions
                    .iter()
                    .map(|&(name, run_order, is_approval)| ActionPlan {
                        name: name.to_string(),
                        run_order,
                        is_approval,
                    })
                    .collect(),
            })
            .collect(),
    }
}

/// Applies events with an increasing clock, and checks the private invariants
/// after each one.
struct Harness {
    engine: Engine,
    now: i64,
}

impl Harness {
    fn new() -> Harness {
        Harness {
            engine: Engine::new(),
            now: 0,
        }
    }

    fn try_apply(&mut self, event: impl FnOnce(i64) -> Event) -> Result<Vec<Command>, EngineError> {
        self.now += 1;
        let before = serde_json::to_string(&self.engine).unwrap();
        let result = self.engine.apply(event(self.now));
        if result.is_err() {
            assert_eq!(
                before,
                serde_json::to_string(&self.engine).unwrap(),
                "an error changed the state"
            );
        }
        if let Err(problem) = self.engine.check_locks() {
            panic!("{problem}");
        }
        result
    }

    fn apply(&mut self, event: impl FnOnce(i64) -> Event) -> Vec<Command> {
        self.try_apply(event).expect("the event is accepted")
    }

    fn request(&mut self, id: &str, plan: &Plan) -> Vec<Command> {
        let (id, plan) = (id.to_string(), plan.clone());
        self.apply(|at| Event::ExecutionRequested {
            id,
            plan,
            variables: BTreeMap::new(),
            trigger: None,
            source_revisions: BTreeMap::new(),
            at,
        })
    }

    fn succeed(&mut self, id: &str, stage: usize, action: usize, attempt: u32) -> Vec<Command> {
        self.apply(succeeded(id, stage, action, attempt))
    }

    fn fail(&mut self, id: &str, stage: usize, action: usize, attempt: u32) -> Vec<Command> {
        self.apply(failed(id, stage, action, attempt))
    }

    fn wait(&mut self, id: &str, stage: usize, action: usize, attempt: u32) -> Vec<Command> {
        let id = id.to_string();
        self.apply(move |at| Event::ActionWaiting {
            id,
            stage,
            action,
            attempt,
            at,
        })
    }

    fn retry(
        &mut self,
        id: &str,
        stage: usize,
        all_actions: bool,
    ) -> Result<Vec<Command>, EngineError> {
        let id = id.to_string();
        self.try_apply(move |at| Event::RetryStage {
            id,
            stage,
            all_actions,
            at,
        })
    }

    fn stop(&mut self, id: &str, abandon: bool) -> Result<Vec<Command>, EngineError> {
        let id = id.to_string();
        self.try_apply(move |at| Event::Stop {
            id,
            abandon,
            reason: Some("test".to_string()),
            at,
        })
    }
}

fn succeeded(id: &str, stage: usize, action: usize, attempt: u32) -> impl FnOnce(i64) -> Event {
    let id = id.to_string();
    move |at| Event::ActionSucceeded {
        id,
        stage,
        action,
        attempt,
        output_variables: BTreeMap::new(),
        output_artifacts: BTreeMap::new(),
        at,
    }
}

fn failed(id: &str, stage: usize, action: usize, attempt: u32) -> impl FnOnce(i64) -> Event {
    let id = id.to_string();
    move |at| Event::ActionFailed {
        id,
        stage,
        action,
        attempt,
        error: "exit status 1".to_string(),
        at,
    }
}

fn start(id: &str, stage: usize, action: usize, attempt: u32) -> Command {
    Command::StartAction {
        id: id.to_string(),
        stage,
        action,
        attempt,
    }
}

fn cancel(id: &str, stage: usize, action: usize, attempt: u32) -> Command {
    Command::CancelAction {
        id: id.to_string(),
        stage,
        action,
        attempt,
    }
}

fn finished(id: &str, status: crate::ExecutionStatus) -> Command {
    Command::ExecutionFinished {
        id: id.to_string(),
        status,
    }
}
