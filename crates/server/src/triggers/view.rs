//! `gantry triggers`: every trigger of every armed pipeline, what it
//! watches, and what it last saw and did.

use gantry_api::TriggerView;
use gantry_spec::trigger::{GitTrigger, GlobFilter, TriggerKind};
use gantry_triggers::Schedule;

use super::without_credentials;
use crate::clock::rfc3339;
use crate::control::ControlPlane;
use crate::error::ControlError;

impl ControlPlane {
    /// Every trigger of every armed pipeline, by pipeline and index.
    pub async fn trigger_views(&self) -> Result<Vec<TriggerView>, ControlError> {
        let states = self.store().trigger_states(None).await?;
        let mut views = Vec::new();
        for armed in self.triggers().all() {
            for (index, trigger) in armed.pipeline.triggers.iter().enumerate() {
                let state = states.iter().find(|s| {
                    s.pipeline == armed.name && s.trigger == i64::try_from(index).unwrap_or(-1)
                });
                let mut view = TriggerView {
                    pipeline: armed.name.clone(),
                    index: u32::try_from(index).unwrap_or(u32::MAX),
                    trigger_type: trigger.kind.type_name().to_string(),
                    watches: watches(&trigger.kind),
                    source: None,
                    repository: None,
                    next_fire: None,
                    last_event: None,
                    last_event_at: None,
                    last_commit: None,
                    last_result: None,
                    last_execution: None,
                    last_error: None,
                    last_error_at: None,
                    consecutive_failures: 0,
                    bad_signatures: 0,
                };
                match &trigger.kind {
                    TriggerKind::Git(git) => {
                        view.source = Some(git.source.to_string());
                        view.repository = armed
                            .git_trigger(index)
                            .map(|w| without_credentials(&w.url));
                    }
                    TriggerKind::Schedule(schedule) => {
                        let now = jiff::Timestamp::from_millisecond(gantry_clock::now_ms())
                            .unwrap_or(jiff::Timestamp::UNIX_EPOCH);
                        view.source = schedule.source.as_ref().map(ToString::to_string);
                        view.next_fire = Schedule::new(schedule)
                            .next_after(now)
                            .map(|t| rfc3339(t.as_millisecond()));
                    }
                    TriggerKind::Pipeline(_) => {}
                }
                if let Some(state) = state {
                    view.last_event.clone_from(&state.last_event);
                    view.last_event_at = state.last_event_at.map(rfc3339);
                    view.last_commit.clone_from(&state.last_commit);
                    view.last_result.clone_from(&state.last_result);
                    view.last_execution.clone_from(&state.last_execution);
                    view.last_error.clone_from(&state.last_error);
                    view.last_error_at = state.last_error_at.map(rfc3339);
                    view.consecutive_failures =
                        u32::try_from(state.consecutive_failures).unwrap_or(u32::MAX);
                    view.bad_signatures = u32::try_from(state.bad_signatures).unwrap_or(u32::MAX);
                }
                views.push(view);
            }
        }
        Ok(views)
    }
}

/// What a trigger watches, in one line.
fn watches(kind: &TriggerKind) -> String {
    match kind {
        TriggerKind::Git(git) => git_watches(git),
        TriggerKind::Schedule(s) => format!(
            "schedule {} ({}) on {}",
            s.cron.as_str(),
            s.timezone.as_str(),
            s.source
                .as_ref()
                .map_or("every source's branch".to_string(), |s| format!(
                    "{s}'s branch"
                ))
        ),
        TriggerKind::Pipeline(p) => format!(
            "pipeline {} ends {}",
            p.name,
            p.statuses
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(" or ")
        ),
    }
}

fn git_watches(git: &GitTrigger) -> String {
    let mut parts = Vec::new();
    if let Some(push) = &git.push {
        let mut push_parts = Vec::new();
        if let Some(branches) = &push.branches {
            push_parts.push(format!("branches {}", filter(branches)));
        }
        if let Some(tags) = &push.tags {
            push_parts.push(format!("tags {}", filter(tags)));
        }
        if let Some(files) = &push.file_paths {
            push_parts.push(format!("files {}", filter(files)));
        }
        parts.push(format!("pushes to {}", push_parts.join(", ")));
    }
    if let Some(pr) = &git.pull_request {
        let events: Vec<&str> = pr.events.iter().map(|e| e.as_str()).collect();
        let mut text = format!("pull requests {}", events.join("/"));
        if let Some(branches) = &pr.branches {
            text.push_str(&format!(" into {}", filter(branches)));
        }
        parts.push(text);
    }
    if let Some(poll) = git.poll {
        parts.push(format!(
            "poll {}",
            gantry_spec::duration::format_duration(poll)
        ));
    }
    if let Some(webhook) = &git.webhook {
        parts.push(format!("{} webhook", webhook.provider.as_str()));
    }
    format!("git {}: {}", git.source, parts.join("; "))
}

fn filter(filter: &GlobFilter) -> String {
    let list = |patterns: &[gantry_spec::trigger::GlobPattern]| {
        patterns
            .iter()
            .map(|p| p.as_str())
            .collect::<Vec<_>>()
            .join(" ")
    };
    match (filter.includes.is_empty(), filter.excludes.is_empty()) {
        (false, true) => list(&filter.includes),
        (true, false) => format!("all but {}", list(&filter.excludes)),
        _ => format!(
            "{} but not {}",
            list(&filter.includes),
            list(&filter.excludes)
        ),
    }
}
