//! Schedules: one task per `schedule` trigger, sleeping until the next
//! instant its cron expression names, then starting the pipeline on the
//! branch heads of its source (every source action, if it names none).
//!
//! The task sleeps on tokio's clock, so tests pause and advance it. The
//! wall-clock time it asks the cron expression about is the time it was
//! armed plus what tokio's clock says has passed since ([`WallClock`]):
//! under a paused clock the schedule moves with `advance`, and in real
//! life it follows the system clock, re-anchored when the system clock
//! runs ahead (a suspended laptop waking up). Each fire time is a dedup
//! key, so a server restarted at that instant does not run it twice; fire
//! times missed while no server ran are not caught up.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use gantry_clock::now_ms;
use gantry_engine::{Trigger, TriggerType};
use gantry_spec::trigger::ScheduleTrigger;
use gantry_store::TriggerOutcome;
use gantry_triggers::{DedupKey, Schedule};
use jiff::Timestamp;

use super::{Armed, source_of, sources};
use crate::control::ControlPlane;
use crate::mirror::RepoCredentials;

/// The longest single sleep, so a system clock that jumps is noticed.
const MAX_SLEEP: Duration = Duration::from_secs(60);

/// Wall-clock time that moves with tokio's clock.
pub(super) struct WallClock {
    anchor_ms: i64,
    anchor: tokio::time::Instant,
    /// The system's wall clock (`gantry_clock::now_ms`; a fixed time in
    /// tests).
    system: fn() -> i64,
}

impl WallClock {
    pub(super) fn start() -> WallClock {
        WallClock::with_system(now_ms)
    }

    fn with_system(system: fn() -> i64) -> WallClock {
        WallClock {
            anchor_ms: system(),
            anchor: tokio::time::Instant::now(),
            system,
        }
    }

    /// Now, in Unix milliseconds.
    pub(super) fn now_ms(&mut self) -> i64 {
        let elapsed = i64::try_from(self.anchor.elapsed().as_millis()).unwrap_or(i64::MAX);
        let derived = self.anchor_ms.saturating_add(elapsed);
        let system = (self.system)();
        // The system clock ran ahead by more than drift explains (a
        // suspend): follow it. Behind it (a paused test clock) is fine.
        if system > derived + 5_000 {
            *self = WallClock::with_system(self.system);
            return system;
        }
        derived
    }
}

/// Fires the schedule until the pipeline is disarmed. `clock` is taken
/// when the pipeline is armed, so the wait counts from then even if the
/// task first runs later.
pub(super) async fn run(
    plane: ControlPlane,
    armed: Arc<Armed>,
    index: usize,
    trigger: ScheduleTrigger,
    mut clock: WallClock,
) {
    let schedule = Schedule::new(&trigger);
    let mut after = timestamp(clock.now_ms());
    while let Some(next) = next_fire(&schedule, &mut clock, after).await {
        if !plane.triggers().is_current(&armed) {
            return;
        }
        fire(&plane, &armed, index, &trigger, next).await;
        after = next;
    }
}

/// Sleeps until the schedule's first fire time after `after`, and returns
/// it (`None`: it never fires again).
async fn next_fire(
    schedule: &Schedule,
    clock: &mut WallClock,
    after: Timestamp,
) -> Option<Timestamp> {
    let next = schedule.next_after(after)?;
    // Sleep in steps, so a jump of the system clock is seen.
    loop {
        let left = next.as_millisecond() - clock.now_ms();
        if left <= 0 {
            return Some(next);
        }
        let step = Duration::from_millis(u64::try_from(left).unwrap_or(0)).min(MAX_SLEEP);
        tokio::time::sleep(step).await;
    }
}

fn timestamp(ms: i64) -> Timestamp {
    Timestamp::from_millisecond(ms).unwrap_or(Timestamp::UNIX_EPOCH)
}

/// Starts the pipeline for one fire time, once.
async fn fire(
    plane: &ControlPlane,
    armed: &Armed,
    index: usize,
    trigger: &ScheduleTrigger,
    at: Timestamp,
) {
    let store = plane.store();
    let event = format!(
        "schedule {} ({}) at {at}",
        trigger.cron.as_str(),
        trigger.timezone.as_str()
    );
    let key = DedupKey::Schedule {
        pipeline: armed.pipeline.name.clone(),
        trigger: index,
        at,
    }
    .as_string();
    let row = i64::try_from(index).unwrap_or(i64::MAX);
    let record = |result: String, execution: Option<String>, commit: Option<String>| {
        let event = event.clone();
        async move {
            let outcome = TriggerOutcome {
                event: &event,
                commit: commit.as_deref(),
                result: &result,
                execution: execution.as_deref(),
                at: now_ms(),
            };
            if let Err(error) = store
                .record_trigger_outcome(&armed.name, row, &outcome)
                .await
            {
                tracing::error!(%error, "Recording a trigger's state failed.");
            }
        }
    };
    match store.claim_dedup(&key, &armed.name, now_ms()).await {
        Ok(true) => {}
        Ok(false) => {
            record(
                "duplicate: this fire time already started".into(),
                None,
                None,
            )
            .await;
            return;
        }
        Err(error) => {
            let _ = store
                .record_trigger_error(&armed.name, row, Some(&event), &error.to_string(), now_ms())
                .await;
            return;
        }
    }
    let pins = branch_heads(plane, armed, trigger).await;
    let commit = match &trigger.source {
        Some(source) => pins.get(source.as_str()).cloned(),
        None => None,
    };
    let start = Trigger {
        kind: TriggerType::Schedule,
        detail: event.clone(),
        by: None,
        pull_request: None,
    };
    match plane
        .start_triggered(
            armed.file.clone(),
            armed.text.clone(),
            armed.includes.clone(),
            start,
            pins,
        )
        .await
    {
        Ok(id) => {
            let _ = store.set_dedup_execution(&key, &id).await;
            tracing::info!(pipeline = %armed.name, execution = %id, "A schedule started an execution.");
            record("started".into(), Some(id), commit).await;
        }
        Err(error) => {
            let _ = store.release_dedup(&key).await;
            let _ = store
                .record_trigger_error(
                    &armed.name,
                    row,
                    Some(&event),
                    &format!("starting the pipeline failed: {error}"),
                    now_ms(),
                )
                .await;
        }
    }
}

/// The branch head of each source the schedule runs on, by source action
/// name. A source whose head cannot be read is left unpinned: its action
/// takes the branch when it runs, and reports what went wrong there.
async fn branch_heads(
    plane: &ControlPlane,
    armed: &Armed,
    trigger: &ScheduleTrigger,
) -> BTreeMap<String, String> {
    let names = match &trigger.source {
        Some(source) => vec![source],
        None => sources(&armed.pipeline),
    };
    let base = armed
        .file
        .parent()
        .unwrap_or(std::path::Path::new("."))
        .to_path_buf();
    let mut pins = BTreeMap::new();
    for name in names {
        let Some((repository, Some(branch))) = source_of(&armed.pipeline, name) else {
            continue;
        };
        let url = crate::mirror::resolve_repository(&base, repository);
        let Ok(creds) = RepoCredentials::from_params(plane.params(), &url).await else {
            continue;
        };
        let wanted = format!("refs/heads/{branch}");
        match plane.mirrors().ls_remote(&url, &creds).await {
            Ok(refs) => {
                if let Some((_, commit)) = refs.into_iter().find(|(r, _)| *r == wanted) {
                    pins.insert(name.to_string(), commit);
                }
            }
            Err(error) => {
                tracing::warn!(pipeline = %armed.name, source = %name, %error,
                    "A schedule could not read its source's branch head.");
            }
        }
    }
    pins
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 02:59:30 in Tokyo on 2 January 2026, as Unix milliseconds.
    fn tokyo_before_three() -> i64 {
        "2026-01-01T17:59:30Z"
            .parse::<Timestamp>()
            .unwrap()
            .as_millisecond()
    }

    /// A schedule fires at its instant under a paused clock: not a moment
    /// before, and a day's advance is instant.
    #[tokio::test(start_paused = true)]
    async fn a_schedule_fires_at_its_instant_under_a_paused_clock() {
        let trigger = ScheduleTrigger {
            cron: gantry_spec::trigger::CronExpression::new("0 3 * * *").unwrap(),
            timezone: gantry_spec::trigger::TimeZoneName::new("Asia/Tokyo").unwrap(),
            source: None,
        };
        let schedule = Schedule::new(&trigger);
        let task = tokio::spawn(async move {
            let mut clock = WallClock::with_system(tokyo_before_three);
            let start = timestamp(clock.now_ms());
            let first = next_fire(&schedule, &mut clock, start).await.unwrap();
            let second = next_fire(&schedule, &mut clock, first).await.unwrap();
            (first, second)
        });
        tokio::time::advance(Duration::from_secs(29)).await;
        tokio::task::yield_now().await;
        assert!(!task.is_finished(), "fired before 03:00");
        tokio::time::advance(Duration::from_secs(24 * 3600)).await;
        let (first, second) = task.await.unwrap();
        assert_eq!(first.to_string(), "2026-01-01T18:00:00Z");
        assert_eq!(second.to_string(), "2026-01-02T18:00:00Z");
    }

    /// Under a paused clock, the wall clock moves with `advance`.
    #[tokio::test(start_paused = true)]
    async fn the_wall_clock_moves_with_a_paused_tokio_clock() {
        let mut clock = WallClock::start();
        let start = clock.now_ms();
        tokio::time::advance(Duration::from_secs(3600)).await;
        let later = clock.now_ms();
        assert!(
            (later - start - 3_600_000).abs() < 1_000,
            "{}",
            later - start
        );
    }
}
