//! The one path from "this ref points at this commit" (a webhook delivery
//! or a poll) to an execution pinned to that commit.
//!
//! In order: the trigger's ref filter; a fetch into the repository's
//! mirror; the commit must be there afterwards (a webhook can outrun the
//! forge's replication, and a force-push can make a commit vanish); the
//! changed files, worked out in the mirror when `file_paths` decides and
//! the news did not list them; then the commit's dedup key is claimed in
//! the store, and only the claimant starts the execution. A failure before
//! the claim is an [`Unready`]: the caller records it and tries again
//! later, with backoff; nothing starts on another commit meanwhile.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use gantry_clock::now_ms;
use gantry_engine::{PullRequest, Trigger, TriggerType};
use gantry_store::TriggerOutcome;
use gantry_triggers::{CommitId, DedupKey, GitRef, Skip, Verdict};

use super::{Armed, GitWatch};
use crate::control::ControlPlane;
use crate::mirror::RepoCredentials;

/// News that a watched ref points at a commit.
#[derive(Debug, Clone)]
pub(super) struct Sighting {
    pub git_ref: GitRef,
    pub commit: CommitId,
    /// Where the ref pointed before, when known (a created ref: `None`).
    pub before: Option<CommitId>,
    /// The files the push changed, when the news listed all of them.
    pub changed_files: Option<Vec<String>>,
    /// `Webhook` or `Poll`.
    pub how: TriggerType,
    /// What arrived, as a sentence; the execution's trigger detail.
    pub event: String,
    /// For a pull-request event: its kind (with its number, its own dedup
    /// key) and what the execution is told of it.
    pub pull_request: Option<(gantry_spec::trigger::PullRequestEvent, PullRequest)>,
}

/// What came of a sighting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Outcome {
    Started(String),
    /// Something started this commit before (its execution, once known).
    Duplicate(Option<String>),
    Skipped(Skip),
}

impl Outcome {
    pub(super) fn result(&self) -> String {
        match self {
            Outcome::Started(_) => "started".to_string(),
            Outcome::Duplicate(Some(id)) => format!("duplicate: {id} started this commit"),
            Outcome::Duplicate(None) => "duplicate: this commit is being started".to_string(),
            Outcome::Skipped(skip) => format!("skipped: {skip}"),
        }
    }

    fn execution(&self) -> Option<&str> {
        match self {
            Outcome::Started(id) | Outcome::Duplicate(Some(id)) => Some(id),
            _ => None,
        }
    }
}

/// Why a sighting could not be decided yet (the repository is unreachable,
/// the commit is not there): retried with backoff.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Unready(pub String);

/// Decides a sighting and, when it matches, starts the pipeline on it.
pub(super) async fn consider(
    plane: &ControlPlane,
    armed: &Armed,
    watch: &GitWatch,
    sighting: &Sighting,
) -> Result<Outcome, Unready> {
    let verdict = match sighting.pull_request {
        Some(_) => Verdict::Start,
        None => ref_verdict(watch, sighting, sighting.changed_files.as_deref()),
    };
    if let Verdict::Skip(skip) = verdict {
        return Ok(Outcome::Skipped(skip));
    }
    let mirrors = plane.mirrors();
    let creds = RepoCredentials::from_params(plane.params(), &watch.url)
        .await
        .map_err(|e| Unready(e.to_string()))?;
    let repo = mirrors
        .fetch(&watch.url, &creds)
        .await
        .map_err(|e| Unready(e.to_string()))?;
    let commit = sighting.commit.as_str();
    if !mirrors.has_commit(&repo, commit).await {
        // A commit no branch holds any more may still be served by id.
        let fetched = mirrors.fetch_commit(&watch.url, &creds, commit).await;
        if fetched.is_err() || !mirrors.has_commit(&repo, commit).await {
            return Err(Unready(format!(
                "commit {commit} of {} is not in the repository after a fetch: it was \
                 force-pushed away or deleted, or the forge has not replicated it yet",
                sighting.git_ref
            )));
        }
    }
    if verdict == Verdict::NeedChangedFiles {
        let before = sighting
            .before
            .as_ref()
            .map(|c| c.as_str().to_string())
            .unwrap_or_else(|| "0".repeat(commit.len()));
        let files = mirrors
            .changed_files(&repo, &before, commit)
            .await
            .map_err(|e| Unready(e.to_string()))?;
        if let Verdict::Skip(skip) = ref_verdict(watch, sighting, Some(&files)) {
            return Ok(Outcome::Skipped(skip));
        }
    }
    start_once(plane, armed, watch, sighting).await
}

fn ref_verdict(watch: &GitWatch, sighting: &Sighting, files: Option<&[String]>) -> Verdict {
    match watch.matcher.push() {
        None => Verdict::Skip(Skip::PushesNotWatched),
        Some(push) => push.check(&sighting.git_ref, false, files),
    }
}

/// Claims the commit's dedup key and, if this is the first claim, starts
/// the execution pinned to the commit.
async fn start_once(
    plane: &ControlPlane,
    armed: &Armed,
    watch: &GitWatch,
    sighting: &Sighting,
) -> Result<Outcome, Unready> {
    let pipeline = armed.pipeline.name.clone();
    let source = watch.trigger.source.clone();
    let commit = sighting.commit.clone();
    let key = match &sighting.pull_request {
        Some((action, pr)) => DedupKey::PullRequest {
            pipeline,
            source,
            number: pr.number,
            action: *action,
            commit,
        },
        None => DedupKey::Commit {
            pipeline,
            source,
            commit,
        },
    }
    .as_string();
    let store = plane.store();
    let claimed = store
        .claim_dedup(&key, &armed.name, now_ms())
        .await
        .map_err(|e| Unready(e.to_string()))?;
    if !claimed {
        let execution = store.dedup_execution(&key).await.ok().flatten().flatten();
        return Ok(Outcome::Duplicate(execution));
    }
    let pins = BTreeMap::from([(
        watch.trigger.source.to_string(),
        sighting.commit.as_str().to_string(),
    )]);
    let trigger = Trigger {
        kind: sighting.how,
        detail: sighting.event.clone(),
        by: None,
        pull_request: sighting
            .pull_request
            .as_ref()
            .map(|(_, pr)| Box::new(pr.clone())),
    };
    match plane
        .start_triggered(
            armed.file.clone(),
            armed.text.clone(),
            armed.includes.clone(),
            trigger,
            pins,
        )
        .await
    {
        Ok(id) => {
            if let Err(error) = store.set_dedup_execution(&key, &id).await {
                tracing::warn!(%error, "Recording a triggered execution's dedup key failed.");
            }
            tracing::info!(pipeline = %armed.name, execution = %id, event = %sighting.event,
                "A trigger started an execution.");
            Ok(Outcome::Started(id))
        }
        Err(error) => {
            // Give the key back, so that a later try may start it.
            let _ = store.release_dedup(&key).await;
            Err(Unready(format!("starting the pipeline failed: {error}")))
        }
    }
}

/// Records a sighting's outcome (or its error) on its trigger; returns the
/// trigger's failures in a row.
pub(super) async fn record(
    plane: &ControlPlane,
    armed: &Armed,
    index: usize,
    sighting: &Sighting,
    result: &Result<Outcome, Unready>,
) -> i64 {
    let store = plane.store();
    let trigger = i64::try_from(index).unwrap_or(i64::MAX);
    let at = now_ms();
    let written = match result {
        Ok(outcome) => {
            let text = outcome.result();
            store
                .record_trigger_outcome(
                    &armed.name,
                    trigger,
                    &TriggerOutcome {
                        event: &sighting.event,
                        commit: Some(sighting.commit.as_str()),
                        result: &text,
                        execution: outcome.execution(),
                        at,
                    },
                )
                .await
                .map(|()| 0)
        }
        Err(Unready(error)) => {
            tracing::warn!(pipeline = %armed.name, trigger = index, %error,
                "A trigger could not act on a commit yet.");
            store
                .record_trigger_error(&armed.name, trigger, Some(&sighting.event), error, at)
                .await
        }
    };
    written.unwrap_or_else(|error| {
        tracing::error!(%error, "Recording a trigger's state failed.");
        1
    })
}

/// The first wait before a webhook's sighting is tried again; it doubles
/// per failure (with jitter) up to [`RETRY_ATTEMPTS`] tries.
const RETRY_BASE: Duration = Duration::from_secs(2);
/// How many times a webhook's sighting is tried before it is left to the
/// poller (if any) or to the next push: 2 + 4 + … + 64 s ≈ 2 minutes.
const RETRY_ATTEMPTS: u32 = 7;

/// Considers a webhook's sighting, retrying with backoff while it is
/// [`Unready`], for as long as the pipeline stays armed as it was.
pub(super) async fn consider_with_retries(
    plane: ControlPlane,
    armed: Arc<Armed>,
    index: usize,
    sighting: Sighting,
) {
    for attempt in 0..RETRY_ATTEMPTS {
        if !plane.triggers().is_current(&armed) {
            return;
        }
        let Some(watch) = armed.git_trigger(index) else {
            return;
        };
        let result = consider(&plane, &armed, watch, &sighting).await;
        record(&plane, &armed, index, &sighting, &result).await;
        if result.is_ok() {
            return;
        }
        if attempt + 1 < RETRY_ATTEMPTS {
            let delay = gantry_triggers::poll::next_delay(RETRY_BASE, attempt, super::random());
            tokio::time::sleep(delay).await;
        }
    }
}
