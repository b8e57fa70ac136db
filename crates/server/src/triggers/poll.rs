//! Pollers: one task per `git` trigger with `poll`, looking for new
//! commits on the refs it watches.
//!
//! A poll lists the repository's branches and tags (`ls-remote`: a few
//! hundred bytes, no fetch) and compares the watched ones with what it saw
//! last; only a moved or new ref costs more (the sighting's fetch). So a
//! hundred repositories polled every 10 s cost a process start each per
//! poll and nothing else. Between polls it waits the trigger's interval
//! with jitter, longer while the repository is unreachable
//! (`gantry_triggers::poll`).
//!
//! What a poller saw is stored with its trigger (`known_refs`), so a
//! restarted server notices what was pushed while it was down. A trigger
//! polled for the first time takes note of what is there and starts
//! nothing: arming a tag filter must not start the pipeline on every old
//! tag. A sighting that cannot be decided yet (the commit is not there,
//! the start failed) leaves its ref as it was, so the next poll tries it
//! again.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use gantry_clock::now_ms;
use gantry_engine::TriggerType;
use gantry_triggers::poll::{first_delay, next_delay};
use gantry_triggers::{CommitId, GitRef};

use super::git::{Outcome, Sighting, consider, record};
use super::{Armed, random};
use crate::control::ControlPlane;
use crate::mirror::RepoCredentials;

/// A ref → commit map, as stored (JSON) and compared.
type Refs = BTreeMap<String, String>;

pub(super) async fn run(plane: ControlPlane, armed: Arc<Armed>, index: usize, interval: Duration) {
    let mut known = stored_refs(&plane, &armed.name, index).await;
    let mut failures: u32 = 0;
    let mut creds: Option<RepoCredentials> = None;
    tokio::time::sleep(first_delay(interval, random())).await;
    loop {
        if !plane.triggers().is_current(&armed) {
            return;
        }
        let ok = poll_once(&plane, &armed, index, &mut known, &mut creds).await;
        failures = if ok { 0 } else { failures.saturating_add(1) };
        tokio::time::sleep(next_delay(interval, failures, random())).await;
    }
}

async fn stored_refs(plane: &ControlPlane, pipeline: &str, index: usize) -> Option<Refs> {
    let states = plane.store().trigger_states(Some(pipeline)).await.ok()?;
    let state = states
        .into_iter()
        .find(|s| s.trigger == i64::try_from(index).unwrap_or(-1))?;
    serde_json::from_str(state.known_refs.as_deref()?).ok()
}

/// One poll; `false` when the repository could not be listed or a moved
/// ref could not be acted on (the next poll backs off).
async fn poll_once(
    plane: &ControlPlane,
    armed: &Armed,
    index: usize,
    known: &mut Option<Refs>,
    creds: &mut Option<RepoCredentials>,
) -> bool {
    let Some(watch) = armed.git_trigger(index) else {
        return true;
    };
    let trigger = i64::try_from(index).unwrap_or(i64::MAX);
    let listed = async {
        // Credentials are read once, and again after a failure (they may
        // have been rotated).
        if creds.is_none() {
            *creds = Some(RepoCredentials::from_params(plane.params(), &watch.url).await?);
        }
        let creds = creds.as_ref().expect("just set");
        plane.mirrors().ls_remote(&watch.url, creds).await
    }
    .await;
    let refs = match listed {
        Ok(refs) => refs,
        Err(error) => {
            *creds = None;
            let error = error.to_string();
            tracing::warn!(pipeline = %armed.name, trigger = index, %error, "A poll failed.");
            let _ = plane
                .store()
                .record_trigger_error(&armed.name, trigger, None, &error, now_ms())
                .await;
            return false;
        }
    };
    if let Some(branch) = &watch.branch
        && !refs
            .iter()
            .any(|(name, _)| name.strip_prefix("refs/heads/") == Some(branch))
    {
        let error = format!(
            "{} has no branch {branch} (the source action's branch): deleted or not pushed yet",
            super::without_credentials(&watch.url)
        );
        let _ = plane
            .store()
            .record_trigger_error(&armed.name, trigger, None, &error, now_ms())
            .await;
        return false;
    }
    let Some(push) = watch.matcher.push() else {
        return true;
    };
    let watched: Refs = refs
        .into_iter()
        .filter(|(name, _)| push.ref_matches(&GitRef::parse(name)))
        .collect();
    let Some(seen) = known.as_mut() else {
        // The first poll of this trigger: note what is there.
        *known = Some(watched);
        save(plane, &armed.name, trigger, known.as_ref()).await;
        return true;
    };
    let mut ok = true;
    let mut changed = false;
    let gone: Vec<String> = seen
        .keys()
        .filter(|name| !watched.contains_key(*name))
        .cloned()
        .collect();
    for name in gone {
        if let Some(commit) = seen.remove(&name) {
            let event = format!("poll: {name} deleted");
            let result = format!("skipped: {name} was deleted");
            let outcome = gantry_store::TriggerOutcome {
                event: &event,
                commit: Some(&commit),
                result: &result,
                execution: None,
                at: now_ms(),
            };
            let _ = plane
                .store()
                .record_trigger_outcome(&armed.name, trigger, &outcome)
                .await;
        }
        changed = true;
    }
    for (name, commit) in &watched {
        let before = seen.get(name);
        if before == Some(commit) {
            continue;
        }
        let Ok(commit_id) = CommitId::parse(commit) else {
            continue;
        };
        let sighting = Sighting {
            git_ref: GitRef::parse(name),
            commit: commit_id,
            before: before.and_then(|c| CommitId::parse(c).ok()),
            changed_files: None,
            how: TriggerType::Poll,
            event: format!("poll: {name} {commit}"),
            pull_request: None,
        };
        let result = consider(plane, armed, watch, &sighting).await;
        record(plane, armed, index, &sighting, &result).await;
        match result {
            Ok(Outcome::Started(_) | Outcome::Duplicate(_) | Outcome::Skipped(_)) => {
                seen.insert(name.clone(), commit.clone());
                changed = true;
            }
            Err(_) => ok = false,
        }
    }
    if changed {
        save(plane, &armed.name, trigger, known.as_ref()).await;
    }
    ok
}

async fn save(plane: &ControlPlane, pipeline: &str, trigger: i64, refs: Option<&Refs>) {
    let Some(refs) = refs else { return };
    let text = serde_json::to_string(refs).unwrap_or_default();
    if let Err(error) = plane.store().set_known_refs(pipeline, trigger, &text).await {
        tracing::error!(%error, "Recording what a poller saw failed.");
    }
}
