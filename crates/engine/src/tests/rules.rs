//! One test per rule of the crate documentation.

use std::collections::BTreeMap;

use super::{Harness, cancel, failed, finished, plan, start, succeeded};
use crate::ExecutionMode::{Parallel, Queued, Superseded};
use crate::ExecutionStatus as E;
use crate::{ActionStatus as A, Engine, EngineError, Event, INTERRUPTED, StageStatus as S};

/// Two stages: Build (one action), Deploy (one action).
fn two_stages(mode: crate::ExecutionMode) -> crate::Plan {
    plan(
        mode,
        &[
            ("Build", &[("build", 1, false)]),
            ("Deploy", &[("deploy", 1, false)]),
        ],
    )
}

fn status(h: &Harness, id: &str) -> E {
    h.engine.execution(id).unwrap().status
}

fn stage_status(h: &Harness, id: &str, stage: usize) -> Option<S> {
    h.engine.execution(id).unwrap().stages[stage].status
}

fn action_status(h: &Harness, id: &str, stage: usize, action: usize) -> Option<A> {
    h.engine.execution(id).unwrap().stages[stage].actions[action].status
}

#[test]
fn actions_with_the_lowest_run_order_start_together() {
    let mut h = Harness::new();
    let p = plan(
        Superseded,
        &[(
            "Build",
            &[("a", 2, false), ("b", 1, false), ("c", 1, false)],
        )],
    );
    assert_eq!(
        h.request("e1", &p),
        vec![start("e1", 0, 1, 1), start("e1", 0, 2, 1)]
    );
    assert_eq!(action_status(&h, "e1", 0, 0), None);
    assert_eq!(stage_status(&h, "e1", 0), Some(S::InProgress));
}

#[test]
fn next_group_starts_only_when_every_action_of_the_previous_succeeded() {
    let mut h = Harness::new();
    let p = plan(
        Superseded,
        &[(
            "Build",
            &[("a", 1, false), ("b", 1, false), ("c", 5, false)],
        )],
    );
    h.request("e1", &p);
    assert_eq!(h.succeed("e1", 0, 0, 1), vec![]);
    assert_eq!(h.succeed("e1", 0, 1, 1), vec![start("e1", 0, 2, 1)]);
    assert_eq!(h.succeed("e1", 0, 2, 1), vec![finished("e1", E::Succeeded)]);
    let e = h.engine.execution("e1").unwrap();
    assert_eq!(e.finished_at, Some(h.now));
    assert_eq!(e.stages[0].status, Some(S::Succeeded));
}

#[test]
fn stages_run_in_order_and_outputs_are_recorded() {
    let mut h = Harness::new();
    h.request("e1", &two_stages(Superseded));
    let vars = BTreeMap::from([("IMAGE_TAG".to_string(), "abc".to_string())]);
    let arts = BTreeMap::from([("image".to_string(), "sha256:1".to_string())]);
    let commands = h.apply(|at| Event::ActionSucceeded {
        id: "e1".to_string(),
        stage: 0,
        action: 0,
        attempt: 1,
        output_variables: vars.clone(),
        output_artifacts: arts.clone(),
        at,
    });
    assert_eq!(commands, vec![start("e1", 1, 0, 1)]);
    let run = &h.engine.execution("e1").unwrap().stages[0].actions[0];
    assert_eq!(
        (&run.output_variables, &run.output_artifacts),
        (&vars, &arts)
    );
    assert_eq!(stage_status(&h, "e1", 1), Some(S::InProgress));
    assert_eq!(h.succeed("e1", 1, 0, 1), vec![finished("e1", E::Succeeded)]);
}

#[test]
fn a_failure_waits_for_in_flight_siblings_then_fails_stage_and_execution() {
    let mut h = Harness::new();
    let p = plan(
        Superseded,
        &[
            (
                "Build",
                &[("a", 1, false), ("b", 1, false), ("c", 2, false)],
            ),
            ("Deploy", &[("deploy", 1, false)]),
        ],
    );
    h.request("e1", &p);
    assert_eq!(h.fail("e1", 0, 0, 1), vec![]);
    assert_eq!(status(&h, "e1"), E::InProgress);
    assert_eq!(stage_status(&h, "e1", 0), Some(S::InProgress));
    // The sibling's result is recorded, and nothing else starts.
    assert_eq!(h.succeed("e1", 0, 1, 1), vec![finished("e1", E::Failed)]);
    let e = h.engine.execution("e1").unwrap();
    assert_eq!(e.stages[0].status, Some(S::Failed));
    assert_eq!(
        e.stages[0].actions[0].error.as_deref(),
        Some("exit status 1")
    );
    assert_eq!(e.stages[0].actions[1].status, Some(A::Succeeded));
    assert_eq!(e.stages[0].actions[2].status, None);
    assert_eq!(e.stages[1].status, None);
}

#[test]
fn a_waiting_approval_is_an_in_flight_sibling_too() {
    let mut h = Harness::new();
    let p = plan(
        Superseded,
        &[("Gate", &[("build", 1, false), ("approve", 1, true)])],
    );
    h.request("e1", &p);
    h.wait("e1", 0, 1, 1);
    assert_eq!(h.fail("e1", 0, 0, 1), vec![]);
    assert_eq!(status(&h, "e1"), E::InProgress);
    assert_eq!(h.fail("e1", 0, 1, 1), vec![finished("e1", E::Failed)]);
}

#[test]
fn a_newer_execution_supersedes_the_one_waiting_in_front_of_a_stage() {
    let mut h = Harness::new();
    let p = two_stages(Superseded);
    h.request("e1", &p);
    assert_eq!(h.request("e2", &p), vec![]);
    assert_eq!(h.engine.execution("e2").unwrap().waiting_at, Some(0));
    assert_eq!(h.request("e3", &p), vec![finished("e2", E::Superseded)]);
    assert_eq!(status(&h, "e2"), E::Superseded);
    // e1 leaves Build for Deploy, and the newest waiting execution enters Build.
    assert_eq!(
        h.succeed("e1", 0, 0, 1),
        vec![start("e1", 1, 0, 1), start("e3", 0, 0, 1)]
    );
    assert_eq!(status(&h, "e1"), E::InProgress);
}

#[test]
fn superseding_happens_between_stages_never_inside_one() {
    let mut h = Harness::new();
    let p = two_stages(Superseded);
    h.request("e1", &p);
    h.succeed("e1", 0, 0, 1); // e1 is in Deploy.
    h.request("e2", &p);
    h.succeed("e2", 0, 0, 1); // e2 waits in front of Deploy.
    assert_eq!(h.engine.execution("e2").unwrap().waiting_at, Some(1));
    h.request("e3", &p);
    // e3 finishing Build supersedes e2 in front of Deploy, not e1 inside it.
    assert_eq!(
        h.succeed("e3", 0, 0, 1),
        vec![finished("e2", E::Superseded)]
    );
    assert_eq!(status(&h, "e1"), E::InProgress);
    assert_eq!(
        h.succeed("e1", 1, 0, 1),
        vec![finished("e1", E::Succeeded), start("e3", 1, 0, 1)]
    );
}

#[test]
fn an_approval_waiting_inside_a_stage_keeps_it_locked() {
    let mut h = Harness::new();
    let p = plan(
        Superseded,
        &[
            ("Build", &[("build", 1, false)]),
            ("Gate", &[("approve", 1, true)]),
        ],
    );
    h.request("e1", &p);
    h.succeed("e1", 0, 0, 1);
    h.wait("e1", 1, 0, 1);
    h.request("e2", &p);
    h.succeed("e2", 0, 0, 1);
    h.request("e3", &p);
    assert_eq!(
        h.succeed("e3", 0, 0, 1),
        vec![finished("e2", E::Superseded)]
    );
    assert_eq!(action_status(&h, "e1", 1, 0), Some(A::Waiting));
    assert_eq!(h.engine.execution("e3").unwrap().waiting_at, Some(1));
    // Approving lets e1 finish and e3 in.
    assert_eq!(h.engine.pending_approval("e1", 1, 0), Ok(1));
    assert_eq!(
        h.succeed("e1", 1, 0, 1),
        vec![finished("e1", E::Succeeded), start("e3", 1, 0, 1)]
    );
}

/// Build, then a Gate holding an approval, with issue 11's rule for
/// approvals (`supersede_approvals`) in `mode`.
fn gated(mode: crate::ExecutionMode, gate: &[(&str, u32, bool)]) -> crate::Plan {
    let mut p = plan(mode, &[("Build", &[("build", 1, false)]), ("Gate", gate)]);
    p.supersede_approvals = true;
    p
}

#[test]
fn a_newer_execution_supersedes_an_older_one_waiting_at_an_approval() {
    let mut h = Harness::new();
    let p = gated(Superseded, &[("approve", 1, true)]);
    h.request("e1", &p);
    h.succeed("e1", 0, 0, 1);
    h.wait("e1", 1, 0, 1);
    h.request("e2", &p);
    // e2 reaching the Gate ends e1's wait there: its approval is abandoned
    // (cancelled), e1 ends Superseded, and e2 enters.
    assert_eq!(
        h.succeed("e2", 0, 0, 1),
        vec![
            cancel("e1", 1, 0, 1),
            finished("e1", E::Superseded),
            start("e2", 1, 0, 1)
        ]
    );
    assert_eq!(stage_status(&h, "e1", 1), Some(S::Stopped));
    assert_eq!(action_status(&h, "e1", 1, 0), Some(A::Abandoned));
    let error = h.engine.execution("e1").unwrap().stages[1].actions[0]
        .error
        .clone()
        .unwrap();
    assert!(error.contains("superseded by execution e2"), "{error}");
    // The old approval can no longer be decided; a late decision is ignored.
    assert!(matches!(
        h.engine.pending_approval("e1", 1, 0),
        Err(EngineError::ApprovalNotWaiting { .. })
    ));
    assert_eq!(h.succeed("e1", 1, 0, 1), vec![]);
    assert_eq!(status(&h, "e1"), E::Superseded);
    // e1 cannot be retried: it was superseded, not failed.
    assert!(h.retry("e1", 1, false).is_err());
}

#[test]
fn an_approval_that_begins_to_wait_behind_a_newer_execution_is_superseded_at_once() {
    let mut h = Harness::new();
    let p = gated(Superseded, &[("approve", 1, true)]);
    h.request("e1", &p);
    h.succeed("e1", 0, 0, 1); // e1's approval started, not waiting yet.
    h.request("e2", &p);
    assert_eq!(h.succeed("e2", 0, 0, 1), vec![]);
    assert_eq!(h.engine.execution("e2").unwrap().waiting_at, Some(1));
    assert_eq!(
        h.wait("e1", 1, 0, 1),
        vec![
            cancel("e1", 1, 0, 1),
            finished("e1", E::Superseded),
            start("e2", 1, 0, 1)
        ]
    );
}

#[test]
fn an_approval_beside_a_running_action_is_superseded_once_the_action_succeeds() {
    let mut h = Harness::new();
    let p = gated(Superseded, &[("smoke", 1, false), ("approve", 1, true)]);
    h.request("e1", &p);
    h.succeed("e1", 0, 0, 1);
    h.wait("e1", 1, 1, 1);
    h.request("e2", &p);
    // The smoke test still runs: e1 keeps the Gate.
    assert_eq!(h.succeed("e2", 0, 0, 1), vec![]);
    assert_eq!(
        h.succeed("e1", 1, 0, 1),
        vec![
            cancel("e1", 1, 1, 1),
            finished("e1", E::Superseded),
            start("e2", 1, 0, 1),
            start("e2", 1, 1, 1)
        ]
    );
}

#[test]
fn a_stage_that_failed_beside_a_waiting_approval_is_not_superseded() {
    let mut h = Harness::new();
    let p = gated(Superseded, &[("smoke", 1, false), ("approve", 1, true)]);
    h.request("e1", &p);
    h.succeed("e1", 0, 0, 1);
    h.wait("e1", 1, 1, 1);
    h.request("e2", &p);
    h.succeed("e2", 0, 0, 1);
    // The Gate fails once its approval ends, and stays retryable.
    assert_eq!(h.fail("e1", 1, 0, 1), vec![]);
    assert_eq!(
        h.fail("e1", 1, 1, 1),
        vec![
            finished("e1", E::Failed),
            start("e2", 1, 0, 1),
            start("e2", 1, 1, 1)
        ]
    );
}

#[test]
fn approvals_are_never_superseded_in_queued_mode_or_by_older_plans() {
    for p in [
        gated(Queued, &[("approve", 1, true)]),
        plan(
            Superseded,
            &[
                ("Build", &[("build", 1, false)]),
                ("Gate", &[("approve", 1, true)]),
            ],
        ),
    ] {
        let mut h = Harness::new();
        h.request("e1", &p);
        h.succeed("e1", 0, 0, 1);
        h.wait("e1", 1, 0, 1);
        h.request("e2", &p);
        assert_eq!(h.succeed("e2", 0, 0, 1), vec![]);
        assert_eq!(action_status(&h, "e1", 1, 0), Some(A::Waiting));
        assert_eq!(h.engine.execution("e2").unwrap().waiting_at, Some(1));
    }
}

#[test]
fn queued_executions_enter_in_arrival_order_and_are_never_superseded() {
    let mut h = Harness::new();
    let p = two_stages(Queued);
    h.request("e1", &p);
    h.request("e2", &p);
    h.request("e3", &p);
    assert_eq!(status(&h, "e2"), E::InProgress);
    assert_eq!(
        h.succeed("e1", 0, 0, 1),
        vec![start("e1", 1, 0, 1), start("e2", 0, 0, 1)]
    );
    // e2 waits in front of Deploy; e3 enters Build.
    assert_eq!(h.succeed("e2", 0, 0, 1), vec![start("e3", 0, 0, 1)]);
    assert_eq!(h.succeed("e3", 0, 0, 1), vec![]);
    assert_eq!(
        h.succeed("e1", 1, 0, 1),
        vec![finished("e1", E::Succeeded), start("e2", 1, 0, 1)]
    );
    assert_eq!(
        h.succeed("e2", 1, 0, 1),
        vec![finished("e2", E::Succeeded), start("e3", 1, 0, 1)]
    );
    assert_eq!(h.succeed("e3", 1, 0, 1), vec![finished("e3", E::Succeeded)]);
}

#[test]
fn parallel_executions_share_stages_and_never_wait() {
    let mut h = Harness::new();
    let p = two_stages(Parallel);
    assert_eq!(h.request("e1", &p), vec![start("e1", 0, 0, 1)]);
    assert_eq!(h.request("e2", &p), vec![start("e2", 0, 0, 1)]);
    assert_eq!(h.succeed("e2", 0, 0, 1), vec![start("e2", 1, 0, 1)]);
    assert_eq!(h.succeed("e1", 0, 0, 1), vec![start("e1", 1, 0, 1)]);
    assert_eq!(h.fail("e1", 1, 0, 1), vec![finished("e1", E::Failed)]);
    assert_eq!(h.succeed("e2", 1, 0, 1), vec![finished("e2", E::Succeeded)]);
}

#[test]
fn a_failure_releases_the_stage_lock() {
    let mut h = Harness::new();
    let p = two_stages(Superseded);
    h.request("e1", &p);
    h.request("e2", &p);
    assert_eq!(
        h.fail("e1", 0, 0, 1),
        vec![finished("e1", E::Failed), start("e2", 0, 0, 1)]
    );
}

#[test]
fn retry_of_failed_actions_keeps_what_succeeded() {
    let mut h = Harness::new();
    let p = plan(
        Superseded,
        &[
            (
                "Build",
                &[("a", 1, false), ("b", 1, false), ("c", 2, false)],
            ),
            ("Deploy", &[("deploy", 1, false)]),
        ],
    );
    h.request("e1", &p);
    h.succeed("e1", 0, 0, 1);
    h.fail("e1", 0, 1, 1);
    assert_eq!(h.retry("e1", 0, false), Ok(vec![start("e1", 0, 1, 2)]));
    let e = h.engine.execution("e1").unwrap();
    assert_eq!((e.status, e.finished_at), (E::InProgress, None));
    assert_eq!(e.stages[0].status, Some(S::InProgress));
    assert_eq!(
        (
            e.stages[0].actions[0].status,
            e.stages[0].actions[0].attempt
        ),
        (Some(A::Succeeded), 1)
    );
    // The group the failure held back runs after the retried one, then the
    // execution goes on to the later stages.
    assert_eq!(h.succeed("e1", 0, 1, 2), vec![start("e1", 0, 2, 1)]);
    assert_eq!(h.succeed("e1", 0, 2, 1), vec![start("e1", 1, 0, 1)]);
    assert_eq!(h.succeed("e1", 1, 0, 1), vec![finished("e1", E::Succeeded)]);
}

#[test]
fn retry_of_failed_actions_skips_groups_that_succeeded() {
    let mut h = Harness::new();
    let p = plan(
        Superseded,
        &[(
            "Build",
            &[("a", 1, false), ("b", 2, false), ("c", 3, false)],
        )],
    );
    h.request("e1", &p);
    h.succeed("e1", 0, 0, 1);
    h.fail("e1", 0, 1, 1);
    assert_eq!(h.retry("e1", 0, false), Ok(vec![start("e1", 0, 1, 2)]));
}

#[test]
fn retry_of_all_actions_restarts_the_stage_from_its_first_group() {
    let mut h = Harness::new();
    let p = plan(
        Superseded,
        &[("Build", &[("a", 1, false), ("b", 2, false)])],
    );
    h.request("e1", &p);
    h.succeed("e1", 0, 0, 1);
    h.fail("e1", 0, 1, 1);
    assert_eq!(h.retry("e1", 0, true), Ok(vec![start("e1", 0, 0, 2)]));
    assert_eq!(action_status(&h, "e1", 0, 1), None);
    assert_eq!(h.succeed("e1", 0, 0, 2), vec![start("e1", 0, 1, 2)]);
    assert_eq!(h.succeed("e1", 0, 1, 2), vec![finished("e1", E::Succeeded)]);
}

#[test]
fn retry_is_refused_unless_the_stage_and_execution_failed_or_stopped() {
    let mut h = Harness::new();
    let p = two_stages(Superseded);
    h.request("e1", &p);
    assert!(matches!(
        h.retry("e1", 0, false),
        Err(EngineError::ExecutionNotRetryable { .. })
    ));
    h.succeed("e1", 0, 0, 1);
    h.fail("e1", 1, 0, 1);
    assert!(matches!(
        h.retry("e1", 0, false),
        Err(EngineError::StageNotRetryable { .. })
    ));
    assert!(matches!(
        h.retry("e1", 7, false),
        Err(EngineError::UnknownStage { .. })
    ));
    assert!(matches!(
        h.retry("nope", 0, false),
        Err(EngineError::UnknownExecution { .. })
    ));
    assert!(h.retry("e1", 1, false).is_ok());
}

#[test]
fn retry_is_refused_once_a_newer_execution_entered_the_stage() {
    let mut h = Harness::new();
    let p = two_stages(Superseded);
    h.request("e1", &p);
    h.request("e2", &p);
    h.fail("e1", 0, 0, 1); // e2 enters Build.
    let refused = h.retry("e1", 0, false);
    assert!(
        matches!(refused, Err(EngineError::NewerExecutionEntered { ref newer, .. }) if newer == "e2")
    );
    // An older failed execution does not block a newer one's retry.
    h.fail("e2", 0, 0, 1);
    assert_eq!(h.retry("e2", 0, false), Ok(vec![start("e2", 0, 0, 2)]));
}

#[test]
fn retry_is_allowed_when_the_newer_execution_has_not_entered_yet() {
    let mut h = Harness::new();
    let p = two_stages(Superseded);
    h.request("e1", &p);
    h.succeed("e1", 0, 0, 1);
    h.fail("e1", 1, 0, 1);
    h.request("e2", &p); // Runs Build, has not reached Deploy.
    assert_eq!(h.retry("e1", 1, false), Ok(vec![start("e1", 1, 0, 2)]));
    // e2 now waits in front of Deploy behind the retried e1.
    h.succeed("e2", 0, 0, 1);
    assert_eq!(h.engine.execution("e2").unwrap().waiting_at, Some(1));
    assert_eq!(
        h.succeed("e1", 1, 0, 2),
        vec![finished("e1", E::Succeeded), start("e2", 1, 0, 1)]
    );
}

#[test]
fn stop_lets_running_actions_finish_and_starts_nothing_new() {
    let mut h = Harness::new();
    let p = plan(
        Superseded,
        &[
            (
                "Build",
                &[("a", 1, false), ("b", 1, false), ("c", 2, false)],
            ),
            ("Deploy", &[("d", 1, false)]),
        ],
    );
    h.request("e1", &p);
    h.request("e2", &p);
    assert_eq!(h.stop("e1", false), Ok(vec![]));
    assert_eq!(status(&h, "e1"), E::Stopping);
    assert_eq!(stage_status(&h, "e1", 0), Some(S::Stopping));
    assert!(matches!(
        h.stop("e1", false),
        Err(EngineError::NotStoppable {
            status: E::Stopping,
            ..
        })
    ));
    assert_eq!(h.succeed("e1", 0, 0, 1), vec![]);
    // The last running action ends the stop, releases Build, and lets e2 in.
    assert_eq!(
        h.fail("e1", 0, 1, 1),
        vec![
            finished("e1", E::Stopped),
            start("e2", 0, 0, 1),
            start("e2", 0, 1, 1)
        ]
    );
    let e = h.engine.execution("e1").unwrap();
    assert_eq!(e.stages[0].status, Some(S::Stopped));
    assert_eq!(e.stages[0].actions[0].status, Some(A::Succeeded));
    assert_eq!(e.stages[0].actions[1].status, Some(A::Failed));
    assert_eq!(e.stages[0].actions[2].status, None);
    assert_eq!(e.stop_reason.as_deref(), Some("test"));
}

#[test]
fn a_stopped_stage_can_be_retried_to_resume_the_execution() {
    let mut h = Harness::new();
    let p = plan(
        Superseded,
        &[
            ("Build", &[("a", 1, false), ("b", 2, false)]),
            ("Deploy", &[("d", 1, false)]),
        ],
    );
    h.request("e1", &p);
    h.stop("e1", false).unwrap();
    assert_eq!(h.succeed("e1", 0, 0, 1), vec![finished("e1", E::Stopped)]);
    // Every action that ran succeeded; the retry runs the group the stop held back.
    assert_eq!(h.retry("e1", 0, false), Ok(vec![start("e1", 0, 1, 1)]));
    assert_eq!(h.succeed("e1", 0, 1, 1), vec![start("e1", 1, 0, 1)]);
}

#[test]
fn stop_with_abandon_cancels_running_actions_at_once() {
    let mut h = Harness::new();
    let p = plan(
        Superseded,
        &[("Build", &[("a", 1, false), ("b", 1, false)])],
    );
    h.request("e1", &p);
    h.request("e2", &p);
    h.succeed("e1", 0, 0, 1);
    assert_eq!(
        h.stop("e1", true),
        Ok(vec![
            cancel("e1", 0, 1, 1),
            finished("e1", E::Stopped),
            start("e2", 0, 0, 1),
            start("e2", 0, 1, 1)
        ])
    );
    assert_eq!(action_status(&h, "e1", 0, 1), Some(A::Abandoned));
    assert_eq!(stage_status(&h, "e1", 0), Some(S::Stopped));
    assert!(matches!(
        h.stop("e1", true),
        Err(EngineError::NotStoppable {
            status: E::Stopped,
            ..
        })
    ));
}

#[test]
fn every_action_a_stop_abandons_records_why() {
    let mut h = Harness::new();
    let p = plan(
        Superseded,
        &[("Gate", &[("approve", 1, true), ("build", 1, false)])],
    );
    h.request("e1", &p);
    h.wait("e1", 0, 0, 1);
    h.stop("e1", true).unwrap();
    let e = h.engine.execution("e1").unwrap();
    for action in &e.stages[0].actions {
        assert_eq!(action.status, Some(A::Abandoned), "{}", action.name);
        assert_eq!(
            action.error.as_deref(),
            Some("abandoned: the execution was stopped: test"),
            "{}",
            action.name
        );
    }
}

#[test]
fn abandon_is_allowed_while_stopping() {
    let mut h = Harness::new();
    h.request("e1", &two_stages(Superseded));
    h.stop("e1", false).unwrap();
    assert_eq!(
        h.stop("e1", true),
        Ok(vec![cancel("e1", 0, 0, 1), finished("e1", E::Stopped)])
    );
}

#[test]
fn stop_without_abandon_abandons_waiting_approvals() {
    let mut h = Harness::new();
    let p = plan(
        Superseded,
        &[(
            "Gate",
            &[
                ("approve", 1, true),
                ("check", 1, true),
                ("build", 1, false),
            ],
        )],
    );
    h.request("e1", &p);
    h.wait("e1", 0, 0, 1);
    // "check" has started but not reported waiting yet: it counts as running.
    assert_eq!(h.stop("e1", false), Ok(vec![cancel("e1", 0, 0, 1)]));
    assert_eq!(action_status(&h, "e1", 0, 0), Some(A::Abandoned));
    // When it reports waiting, it is abandoned too.
    assert_eq!(h.wait("e1", 0, 1, 1), vec![cancel("e1", 0, 1, 1)]);
    assert_eq!(h.succeed("e1", 0, 2, 1), vec![finished("e1", E::Stopped)]);
}

#[test]
fn an_execution_stopped_while_waiting_in_front_of_a_stage_leaves_the_queue() {
    let mut h = Harness::new();
    let p = two_stages(Queued);
    h.request("e1", &p);
    h.request("e2", &p);
    h.request("e3", &p);
    assert_eq!(h.stop("e2", false), Ok(vec![finished("e2", E::Stopped)]));
    assert_eq!(h.engine.execution("e2").unwrap().waiting_at, None);
    assert!(matches!(
        h.retry("e2", 0, false),
        Err(EngineError::StageNotRetryable { .. })
    ));
    assert_eq!(
        h.succeed("e1", 0, 0, 1),
        vec![start("e1", 1, 0, 1), start("e3", 0, 0, 1)]
    );
}

#[test]
fn late_results_are_ignored() {
    let mut h = Harness::new();
    let p = plan(Superseded, &[("Gate", &[("approve", 1, true)])]);
    h.request("e1", &p);
    h.stop("e1", true).unwrap();
    let before = serde_json::to_string(&h.engine).unwrap();
    assert_eq!(h.succeed("e1", 0, 0, 1), vec![]);
    assert_eq!(h.fail("e1", 0, 0, 1), vec![]);
    assert_eq!(h.wait("e1", 0, 0, 1), vec![]);
    assert_eq!(before, serde_json::to_string(&h.engine).unwrap());
}

#[test]
fn a_result_from_an_older_attempt_is_ignored() {
    let mut h = Harness::new();
    let p = plan(Superseded, &[("Build", &[("a", 1, false)])]);
    h.request("e1", &p);
    h.fail("e1", 0, 0, 1);
    h.retry("e1", 0, false).unwrap();
    assert_eq!(h.succeed("e1", 0, 0, 1), vec![]);
    assert_eq!(action_status(&h, "e1", 0, 0), Some(A::InProgress));
    assert_eq!(h.succeed("e1", 0, 0, 2), vec![finished("e1", E::Succeeded)]);
}

#[test]
fn results_for_actions_that_do_not_exist_are_refused() {
    let mut h = Harness::new();
    h.request("e1", &two_stages(Superseded));
    assert!(matches!(
        h.try_apply(succeeded("e1", 0, 9, 1)),
        Err(EngineError::UnknownAction { .. })
    ));
    assert!(matches!(
        h.try_apply(failed("e1", 9, 0, 1)),
        Err(EngineError::UnknownStage { .. })
    ));
    assert!(matches!(
        h.try_apply(succeeded("e9", 0, 0, 1)),
        Err(EngineError::UnknownExecution { .. })
    ));
}

#[test]
fn an_approval_is_approved_or_rejected() {
    let mut h = Harness::new();
    let p = plan(
        Superseded,
        &[
            ("Gate", &[("approve", 1, true)]),
            ("Deploy", &[("d", 1, false)]),
        ],
    );
    h.request("e1", &p);
    assert_eq!(h.wait("e1", 0, 0, 1), vec![]);
    assert_eq!(action_status(&h, "e1", 0, 0), Some(A::Waiting));
    // A repeated wait changes nothing.
    assert_eq!(h.wait("e1", 0, 0, 1), vec![]);
    assert_eq!(h.succeed("e1", 0, 0, 1), vec![start("e1", 1, 0, 1)]);
    let refused = h.engine.pending_approval("e1", 0, 0);
    assert!(matches!(
        refused,
        Err(EngineError::ApprovalNotWaiting {
            status: Some(A::Succeeded),
            ..
        })
    ));
    assert!(matches!(
        h.engine.pending_approval("e1", 1, 0),
        Err(EngineError::NotAnApproval { .. })
    ));

    h.request("e2", &p);
    h.fail("e1", 1, 0, 1);
    h.wait("e2", 0, 0, 1);
    assert_eq!(h.fail("e2", 0, 0, 1), vec![finished("e2", E::Failed)]);
}

#[test]
fn an_approval_may_be_decided_before_it_reports_waiting() {
    let mut h = Harness::new();
    let p = plan(Superseded, &[("Gate", &[("approve", 1, true)])]);
    h.request("e1", &p);
    assert_eq!(h.engine.pending_approval("e1", 0, 0), Ok(1));
    assert_eq!(h.succeed("e1", 0, 0, 1), vec![finished("e1", E::Succeeded)]);
}

#[test]
fn only_approvals_can_wait() {
    let mut h = Harness::new();
    h.request("e1", &two_stages(Superseded));
    let refused = h.try_apply(|at| Event::ActionWaiting {
        id: "e1".to_string(),
        stage: 0,
        action: 0,
        attempt: 1,
        at,
    });
    assert!(matches!(refused, Err(EngineError::NotAnApproval { .. })));
}

#[test]
fn interrupted_lists_running_actions_but_not_waiting_approvals() {
    let mut h = Harness::new();
    let p = plan(
        Parallel,
        &[("Gate", &[("build", 1, false), ("approve", 1, true)])],
    );
    h.request("e1", &p);
    h.request("e2", &p);
    h.wait("e1", 0, 1, 1);
    let interrupted = h.engine.interrupted();
    let listed: Vec<_> = interrupted
        .iter()
        .map(|r| (r.id.as_str(), r.stage, r.action))
        .collect();
    assert_eq!(listed, vec![("e1", 0, 0), ("e2", 0, 0), ("e2", 0, 1)]);
    assert_eq!(h.engine.waiting_approvals().len(), 1);
    let event = interrupted[0].interrupted(h.now + 1);
    // The approval beside it still waits, so the execution goes on for now.
    assert_eq!(h.apply(|_| event), vec![]);
    let run = &h.engine.execution("e1").unwrap().stages[0].actions[0];
    assert_eq!(
        (run.status, run.error.as_deref()),
        (Some(A::Failed), Some(INTERRUPTED))
    );
}

#[test]
fn invalid_plans_and_duplicate_ids_are_refused() {
    let mut h = Harness::new();
    let request = |id: &str, plan: crate::Plan| {
        let id = id.to_string();
        move |at| Event::ExecutionRequested {
            id,
            plan,
            variables: BTreeMap::new(),
            trigger: None,
            source_revisions: BTreeMap::new(),
            at,
        }
    };
    let empty = plan(Superseded, &[]);
    assert!(matches!(
        h.try_apply(request("e1", empty)),
        Err(EngineError::InvalidPlan { .. })
    ));
    let no_action = plan(Superseded, &[("Build", &[])]);
    assert!(matches!(
        h.try_apply(request("e1", no_action)),
        Err(EngineError::InvalidPlan { .. })
    ));
    let twice = plan(
        Superseded,
        &[("Build", &[("a", 1, false)]), ("Build", &[("b", 1, false)])],
    );
    assert!(matches!(
        h.try_apply(request("e1", twice)),
        Err(EngineError::InvalidPlan { .. })
    ));
    h.request("e1", &two_stages(Superseded));
    assert!(matches!(
        h.try_apply(request("e1", two_stages(Superseded))),
        Err(EngineError::DuplicateExecution { .. })
    ));
    let mut other = two_stages(Superseded);
    other.pipeline = "other".to_string();
    assert!(matches!(
        h.try_apply(request("e2", other)),
        Err(EngineError::WrongPipeline { .. })
    ));
}

#[test]
fn a_terminal_execution_cannot_be_stopped() {
    let mut h = Harness::new();
    h.request("e1", &plan(Superseded, &[("Build", &[("a", 1, false)])]));
    h.succeed("e1", 0, 0, 1);
    assert!(matches!(
        h.stop("e1", false),
        Err(EngineError::NotStoppable {
            status: E::Succeeded,
            ..
        })
    ));
}

#[test]
fn replaying_the_same_events_gives_the_same_state() {
    let p = two_stages(Superseded);
    let events = vec![
        Event::ExecutionRequested {
            id: "e1".into(),
            plan: p.clone(),
            variables: BTreeMap::new(),
            trigger: None,
            source_revisions: BTreeMap::new(),
            at: 1,
        },
        Event::ExecutionRequested {
            id: "e2".into(),
            plan: p.clone(),
            variables: BTreeMap::new(),
            trigger: None,
            source_revisions: BTreeMap::new(),
            at: 2,
        },
        succeeded("e1", 0, 0, 1)(3),
        failed("e2", 0, 0, 1)(4),
        Event::RetryStage {
            id: "e2".into(),
            stage: 0,
            all_actions: false,
            at: 5,
        },
        Event::Stop {
            id: "e1".into(),
            abandon: true,
            reason: None,
            at: 6,
        },
    ];
    let run = |events: &[Event]| {
        let mut engine = Engine::new();
        let results: Vec<_> = events.iter().map(|e| engine.apply(e.clone())).collect();
        (serde_json::to_string(&engine).unwrap(), results)
    };
    assert_eq!(run(&events), run(&events));
    // Events survive the log's serialization unchanged.
    let logged: Vec<Event> = events
        .iter()
        .map(|e| serde_json::from_str(&serde_json::to_string(e).unwrap()).unwrap())
        .collect();
    assert_eq!(logged, events);
}

#[test]
fn statuses_serialize_as_the_formats_say() {
    assert_eq!(json(&E::InProgress), "\"InProgress\"");
    assert_eq!(json(&E::Superseded), "\"Superseded\"");
    assert_eq!(json(&S::Stopping), "\"Stopping\"");
    assert_eq!(json(&A::Waiting), "\"Waiting\"");
    assert_eq!(json(&A::Abandoned), "\"Abandoned\"");
    assert_eq!(json(&crate::ExecutionMode::Queued), "\"queued\"");
    let mut h = Harness::new();
    h.request("e1", &two_stages(Superseded));
    let value = serde_json::to_value(h.engine.execution("e1").unwrap()).unwrap();
    assert_eq!(value["status"], "InProgress");
    assert_eq!(value["stages"][1]["status"], serde_json::Value::Null);
    assert_eq!(value["stages"][0]["actions"][0]["attempt"], 1);
}

fn json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap()
}
