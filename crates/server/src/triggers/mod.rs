//! The trigger runtime: what starts a registered pipeline by itself
//! (formats.md §7, issue 11). `gantry-triggers` decides (filters,
//! signatures, schedules, dedup keys, backoff) without IO; this module
//! brings the IO: the store, the repository mirrors, tokio's timers, the
//! HTTP endpoint's bodies, and the control plane that starts executions.
//!
//! The concepts:
//!
//! - **Registration.** `gantry apply -f FILE` registers the file's pipeline
//!   (its text and included files' texts, as the client sent them) when it
//!   has `triggers`, and **arms** them; a file without `triggers`
//!   unregisters and disarms it. Registered pipelines are kept in the store
//!   and armed again when a server starts ([`ControlPlane::arm_triggers`]).
//!   An [`Armed`] pipeline holds its parsed triggers and the tasks that
//!   watch for them.
//! - **A sighting** is news that a ref of a watched repository points at a
//!   commit: from a webhook delivery or from a poll. Every sighting takes
//!   one path (`git`): the trigger's filters, a fetch into the mirror, the
//!   commit must be there (a webhook may outrun the forge's replication; a
//!   force-push may have made it vanish), changed files worked out in the
//!   mirror when `file_paths` decides, then the dedup key is claimed in the
//!   store, and only the claimant starts the execution, pinned to that
//!   commit. So a commit starts a pipeline once, however many times and
//!   ways it is announced, and never on another commit.
//! - **Webhooks** (`webhook`): `POST /hooks/PIPELINE` is checked against
//!   the secret of each of the pipeline's `git` triggers of the delivery's
//!   forge (a parameter), refused (401, counted per trigger) when none
//!   signed it, answered 200 for a replayed delivery id or a ping, and 202
//!   otherwise; the work happens after the answer, retrying with backoff
//!   while the repository or the commit is not there.
//! - **Polls** (`poll`): one task per `git` trigger with `poll`, listing
//!   the repository's refs (`ls-remote`, no fetch unless a watched ref
//!   moved) with jitter, backing off while the repository is unreachable.
//!   The refs a poller saw are stored, so a restarted server notices what
//!   was pushed while it was down. The first poll of a new trigger only
//!   takes note of what is there.
//! - **Schedules** (`schedule`): one task per `schedule` trigger, sleeping
//!   on tokio's clock (tests pause and advance it) until the next fire
//!   time; the execution runs on the branch heads of its source(s).
//! - **Upstream pipelines** (`upstream`): when an execution ends, the
//!   control plane tells the runtime, which starts the pipelines whose
//!   `pipeline` trigger names it with that status.
//!
//! What each trigger last saw and did, and its errors, is in the store
//! (`trigger_state`) and shown by `gantry triggers`. Nothing here logs or
//! answers a secret: webhook secrets and repository credentials stay in
//! the parameter store, and repository URLs are shown without their
//! user-info.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use gantry_engine::ExecutionStatus;
use gantry_spec::pipeline::{ActionKind, ActionName, Pipeline};
use gantry_spec::trigger::{GitTrigger, TriggerKind};
use gantry_store::RegisteredPipeline;
use gantry_triggers::GitTriggerMatcher;
use tokio::task::AbortHandle;

use crate::control::{ControlPlane, project_files};
use crate::error::ControlError;
use crate::mirror::resolve_repository;

mod error;
mod git;
mod poll;
mod schedule;
mod upstream;
mod view;
mod webhook;

pub use error::WebhookError;
pub use webhook::{HookRequest, WebhookReply};

/// The armed pipelines of one control plane.
pub struct Triggers {
    armed: Mutex<BTreeMap<String, Arming>>,
    /// Executions that ended before the registered pipelines were armed
    /// (failed as interrupted while the control plane opened): their
    /// `pipeline` triggers are looked at once arming is done. `None` once
    /// armed.
    ended_before_arming: Mutex<Option<Vec<(String, String, ExecutionStatus)>>>,
}

impl Default for Triggers {
    fn default() -> Triggers {
        Triggers {
            armed: Mutex::default(),
            ended_before_arming: Mutex::new(Some(Vec::new())),
        }
    }
}

/// An armed pipeline and the tasks that watch for it.
struct Arming {
    pipeline: Arc<Armed>,
    tasks: Vec<AbortHandle>,
}

impl Drop for Arming {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// A registered pipeline with triggers, ready to start.
pub(crate) struct Armed {
    pub name: String,
    /// The file, text and included files' texts that executions start with.
    pub file: PathBuf,
    pub text: String,
    pub includes: BTreeMap<String, String>,
    pub pipeline: Pipeline,
    /// The `git` triggers, compiled.
    pub git: Vec<GitWatch>,
}

/// One `git` trigger, ready to match.
pub(crate) struct GitWatch {
    /// Its index in the pipeline's `triggers`.
    pub index: usize,
    pub trigger: GitTrigger,
    pub matcher: GitTriggerMatcher,
    /// The source action's repository as the mirrors take it: a URL, or an
    /// absolute path (a path in the file is relative to the file).
    pub url: String,
    /// The source action's `branch`, if it names one.
    pub branch: Option<String>,
}

impl Armed {
    fn new(registered: &RegisteredPipeline, pipeline: Pipeline) -> Result<Armed, ControlError> {
        let file = PathBuf::from(&registered.file);
        let includes: BTreeMap<String, String> = serde_json::from_str(&registered.includes)
            .map_err(|e| ControlError::Internal(format!("registered includes: {e}")))?;
        let base = file.parent().unwrap_or(Path::new(".")).to_path_buf();
        let git = pipeline
            .triggers
            .iter()
            .enumerate()
            .filter_map(|(index, t)| match &t.kind {
                TriggerKind::Git(trigger) => Some((index, trigger)),
                _ => None,
            })
            .filter_map(|(index, trigger)| {
                let (repository, branch) = source_of(&pipeline, &trigger.source)?;
                Some(GitWatch {
                    index,
                    trigger: trigger.clone(),
                    matcher: GitTriggerMatcher::new(trigger),
                    url: resolve_repository(&base, repository),
                    branch: branch.map(str::to_string),
                })
            })
            .collect();
        Ok(Armed {
            name: registered.name.clone(),
            file,
            text: registered.text.clone(),
            includes,
            pipeline,
            git,
        })
    }

    /// The `git` trigger at this index.
    pub(crate) fn git_trigger(&self, index: usize) -> Option<&GitWatch> {
        self.git.iter().find(|w| w.index == index)
    }
}

/// A source action's repository and branch, by the action's name.
pub(crate) fn source_of<'p>(
    pipeline: &'p Pipeline,
    source: &ActionName,
) -> Option<(&'p str, Option<&'p str>)> {
    pipeline
        .stages
        .first()?
        .actions
        .iter()
        .find(|a| &a.name == source)
        .and_then(|a| match &a.kind {
            ActionKind::Source { repository, branch } => {
                Some((repository.as_str(), branch.as_deref()))
            }
            _ => None,
        })
}

/// The source actions of the first stage, by name.
pub(crate) fn sources(pipeline: &Pipeline) -> Vec<&ActionName> {
    pipeline
        .stages
        .first()
        .map(|stage| {
            stage
                .actions
                .iter()
                .filter(|a| matches!(a.kind, ActionKind::Source { .. }))
                .map(|a| &a.name)
                .collect()
        })
        .unwrap_or_default()
}

/// A repository address fit to show: a URL's user-info (which may hold a
/// token) is cut out.
pub(crate) fn without_credentials(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let host = authority.rsplit('@').next().unwrap_or(authority);
    if path.is_empty() && !rest.contains('/') {
        format!("{scheme}://{host}")
    } else {
        format!("{scheme}://{host}/{path}")
    }
}

/// A random number for jitter (the std hasher's per-process random keys,
/// mixed with a counter so that each call differs).
pub(crate) fn random() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    hasher.finish()
}

impl Triggers {
    /// The armed pipeline of this name.
    pub(crate) fn get(&self, name: &str) -> Option<Arc<Armed>> {
        self.lock().get(name).map(|a| a.pipeline.clone())
    }

    /// Every armed pipeline, by name.
    pub(crate) fn all(&self) -> Vec<Arc<Armed>> {
        self.lock().values().map(|a| a.pipeline.clone()).collect()
    }

    /// Whether `armed` is still the armed version of its pipeline (a task
    /// of a replaced or disarmed one stops).
    pub(crate) fn is_current(&self, armed: &Arc<Armed>) -> bool {
        self.lock()
            .get(&armed.name)
            .is_some_and(|a| Arc::ptr_eq(&a.pipeline, armed))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Arming>> {
        // A panic while holding this lock leaves a map that is still whole.
        self.armed.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Replaces (or removes, with `None`) a pipeline's arming; the old
    /// one's tasks are aborted when it drops.
    fn set(&self, name: &str, arming: Option<Arming>) {
        let old = match arming {
            Some(arming) => self.lock().insert(name.to_string(), arming),
            None => self.lock().remove(name),
        };
        drop(old);
    }

    /// Disarms everything (server shutdown).
    pub fn disarm_all(&self) {
        let old = std::mem::take(&mut *self.lock());
        drop(old);
    }
}

impl ControlPlane {
    /// Registers a file's pipeline and arms its triggers (`gantry apply`);
    /// a pipeline without triggers is unregistered and disarmed. Returns a
    /// line for apply's summary, or `None` for a file without a pipeline.
    pub async fn register_triggers(
        &self,
        file: &Path,
        text: &str,
        includes: &BTreeMap<String, String>,
        by: Option<&str>,
    ) -> Result<Option<String>, ControlError> {
        let name = file.display().to_string();
        let document =
            gantry_spec::parse_document(&name, text).map_err(ControlError::InvalidPipeline)?;
        let Some(pipeline) = document.pipeline else {
            return Ok(None);
        };
        // Every include must be there, as it must to run.
        project_files(file, text, includes)?;
        let pipeline_name = pipeline.name.to_string();
        if pipeline.triggers.is_empty() {
            let was = self.store().unregister_pipeline(&pipeline_name).await?;
            self.triggers().set(&pipeline_name, None);
            return Ok(Some(if was {
                format!("pipeline {pipeline_name}: no triggers; disarmed")
            } else {
                format!("pipeline {pipeline_name}: no triggers")
            }));
        }
        let registered = RegisteredPipeline {
            name: pipeline_name.clone(),
            file: name,
            text: text.to_string(),
            includes: serde_json::to_string(includes)
                .map_err(|e| ControlError::Internal(e.to_string()))?,
            registered_at: gantry_clock::now_ms(),
            registered_by: by.map(str::to_string),
        };
        let count = pipeline.triggers.len();
        self.store().register_pipeline(&registered, count).await?;
        let armed = Arc::new(Armed::new(&registered, pipeline)?);
        // A new poll trigger notes the refs there are before apply answers:
        // whatever is pushed after it is news to its first poll. All at
        // once, so slow repositories cost apply one time limit, not one each.
        futures_util::future::join_all(
            armed
                .git
                .iter()
                .filter(|w| w.trigger.poll.is_some())
                .map(|w| poll::baseline(self, &armed, w.index)),
        )
        .await;
        self.arm_prepared(armed);
        self.armed_at_last();
        tracing::info!(pipeline = %pipeline_name, triggers = count, "Armed a pipeline's triggers.");
        Ok(Some(format!(
            "pipeline {pipeline_name}: {count} trigger{} armed",
            if count == 1 { "" } else { "s" }
        )))
    }

    /// Arms every registered pipeline (at start-up). A registered text that
    /// no longer validates (a newer gantry's file) is logged and skipped.
    pub async fn arm_triggers(&self) -> Result<usize, ControlError> {
        let mut armed = 0;
        for registered in self.store().registered_pipelines().await? {
            let pipeline =
                match gantry_spec::pipeline::parse_pipeline(&registered.file, &registered.text) {
                    Ok(pipeline) => pipeline,
                    Err(errors) => {
                        tracing::error!(pipeline = %registered.name, errors = errors.len(),
                        "A registered pipeline no longer validates; its triggers stay disarmed.");
                        continue;
                    }
                };
            match self.arm(&registered, pipeline) {
                Ok(()) => armed += 1,
                Err(error) => {
                    tracing::error!(pipeline = %registered.name, %error, "Arming a pipeline failed.");
                }
            }
        }
        self.armed_at_last();
        Ok(armed)
    }

    /// Ends the time before arming (at start-up, or the first `apply` of a
    /// control plane that arms nothing at start): the executions that ended
    /// meanwhile start the pipelines waiting for them now.
    fn armed_at_last(&self) {
        let ended = self
            .triggers()
            .ended_before_arming
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
            .unwrap_or_default();
        for (pipeline, id, status) in ended {
            upstream::execution_finished(self, &pipeline, &id, status);
        }
    }

    /// Stops every trigger's tasks (server shutdown).
    pub fn disarm_triggers(&self) {
        self.triggers().disarm_all();
    }

    /// Arms one pipeline: its pollers and schedules start; webhooks and
    /// upstream pipelines find it through [`Triggers::get`].
    fn arm(&self, registered: &RegisteredPipeline, pipeline: Pipeline) -> Result<(), ControlError> {
        self.arm_prepared(Arc::new(Armed::new(registered, pipeline)?));
        Ok(())
    }

    fn arm_prepared(&self, armed: Arc<Armed>) {
        let mut tasks = Vec::new();
        for watch in &armed.git {
            if let Some(interval) = watch.trigger.poll {
                let task = tokio::spawn(poll::run(
                    self.clone(),
                    armed.clone(),
                    watch.index,
                    interval,
                ));
                tasks.push(task.abort_handle());
            }
        }
        for (index, trigger) in armed.pipeline.triggers.iter().enumerate() {
            if let TriggerKind::Schedule(schedule) = &trigger.kind {
                let task = tokio::spawn(schedule::run(
                    self.clone(),
                    armed.clone(),
                    index,
                    schedule.clone(),
                    schedule::WallClock::start(),
                ));
                tasks.push(task.abort_handle());
            }
        }
        let name = armed.name.clone();
        self.triggers().set(
            &name,
            Some(Arming {
                pipeline: armed,
                tasks,
            }),
        );
    }

    /// Called when an execution of `pipeline` ends: starts the pipelines
    /// whose `pipeline` trigger waits for it (after the caller's lock is
    /// released; this only spawns).
    pub(crate) fn trigger_downstream(&self, pipeline: &str, id: &str, status: ExecutionStatus) {
        let mut waiting = self
            .triggers()
            .ended_before_arming
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        match waiting.as_mut() {
            Some(ended) => ended.push((pipeline.to_string(), id.to_string(), status)),
            None => upstream::execution_finished(self, pipeline, id, status),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shown_repository_urls_carry_no_credentials() {
        let cases = [
            (
                "https://x-token:s3cret@github.com/org/shop.git",
                "https://github.com/org/shop.git",
            ),
            ("https://github.com/org/shop", "https://github.com/org/shop"),
            ("ssh://git@host:22/org/shop", "ssh://host:22/org/shop"),
            ("git://host", "git://host"),
            ("/srv/git/shop.git", "/srv/git/shop.git"),
            ("git@github.com:org/shop.git", "git@github.com:org/shop.git"),
        ];
        for (url, shown) in cases {
            assert_eq!(without_credentials(url), shown, "{url}");
        }
    }

    #[test]
    fn random_numbers_differ_from_call_to_call() {
        let a: std::collections::BTreeSet<u64> = (0..100).map(|_| random()).collect();
        assert_eq!(a.len(), 100);
    }
}
