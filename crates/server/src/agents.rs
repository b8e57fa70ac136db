//! Build agents: the server's side of `gantry agent`.
//!
//! A `build`, `test` or `shell` action with `agent: {labels}` does not run
//! here: its runner (`actions::build`) resolves it as for a local build
//! (buildspec, parameters, secrets, registry token), puts it into the
//! [`Agents`] queue as one job, and waits. Agents long-poll
//! (`POST /api/v1/agent/poll`); the first whose labels cover the action's
//! takes the job. The job's events (claimed, log lines, finished) come back
//! to the waiting runner through a channel, so the attempt's log, details
//! and result are recorded exactly as for a local build.
//!
//! A job lives as long as its attempt's runner waits for it: the
//! [`JobHandle`] removes it when dropped (the attempt ended, was stopped,
//! timed out), and from then on every call about it answers 409
//! `agent.job_gone` and the agent's next heartbeat tells it to stop, so a
//! late agent never reports into a newer attempt (each attempt is a new
//! job with a new random id). A claimed job whose agent sends no heartbeat
//! for `lost_after` fails as interrupted; a retry makes a new job.
//!
//! Agents fetch only the blobs of their job's inputs and upload blobs that
//! are stored only when whole and of the digest named; an output becomes
//! an artifact only at `finish`, from a manifest every blob of which is
//! already stored ([`gantry_store::ArtifactStore::import_manifest`]): an
//! upload cut halfway leaves nothing behind but a temp file, removed.
//!
//! The queue lives in the leader's memory: a server that stops fails its
//! attempts as interrupted by the restart rule, and agents find their jobs
//! gone.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gantry_api::{AgentFinishRequest, AgentJob, AgentView};
use gantry_clock::now_ms;
use tokio::sync::{Notify, mpsc};

/// How often agents heartbeat (told to them in every poll's answer).
pub const HEARTBEAT: Duration = Duration::from_secs(2);

/// How long a claimed job's agent may be silent before the job fails as
/// interrupted (`gantry server --agent-timeout`).
pub const DEFAULT_LOST_AFTER: Duration = Duration::from_secs(30);

/// The gantry version an agent must run: jobs carry a parsed buildspec.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The longest a poll waits for a job.
pub const MAX_POLL_WAIT: Duration = Duration::from_secs(30);

/// The most agents the server remembers (the ones heard from longest ago
/// are forgotten first).
const MAX_AGENTS: usize = 1000;

/// What a waiting runner hears about its job.
#[derive(Debug)]
pub enum JobEvent {
    /// An agent took the job.
    Claimed(String),
    /// Lines of the build's log.
    Lines(Vec<String>),
    /// The build ended; its outputs are stored artifacts by identifier.
    Finished(Box<AgentFinishRequest>, Vec<(Option<String>, String)>),
}

/// Why an agent's call about a job is refused.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("job {0} is gone: its attempt ended, or another agent took it")]
    JobGone(String),
    #[error("blob {0} is not an input of this job")]
    NotAnInput(String),
    #[error("agent version {agent} is not the server's ({server}): run the same gantry on both")]
    VersionMismatch { agent: String, server: String },
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    DigestMismatch(String),
    #[error("{0}")]
    OutputInvalid(String),
}

impl AgentError {
    pub fn code(&self) -> &'static str {
        match self {
            AgentError::JobGone(_) => "agent.job_gone",
            AgentError::NotAnInput(_) => "agent.not_an_input",
            AgentError::VersionMismatch { .. } => "agent.version_mismatch",
            AgentError::Invalid(_) => "agent.invalid",
            AgentError::DigestMismatch(_) => "agent.digest_mismatch",
            AgentError::OutputInvalid(_) => "agent.output_invalid",
        }
    }

    pub fn http_status(&self) -> u16 {
        match self {
            AgentError::JobGone(_) | AgentError::VersionMismatch { .. } => 409,
            AgentError::NotAnInput(_) => 404,
            AgentError::Invalid(_)
            | AgentError::DigestMismatch(_)
            | AgentError::OutputInvalid(_) => 400,
        }
    }
}

/// The queue of agent jobs and the agents heard from.
#[derive(Clone)]
pub struct Agents {
    hub: Arc<Hub>,
}

struct Hub {
    state: Mutex<HubState>,
    /// Woken when a job is queued.
    work: Notify,
    lost_after_ms: AtomicU64,
}

#[derive(Default)]
struct HubState {
    /// Ids of the jobs no agent took yet, oldest first.
    queue: VecDeque<String>,
    jobs: HashMap<String, Job>,
    agents: BTreeMap<String, Seen>,
}

struct Job {
    spec: AgentJob,
    labels: Vec<String>,
    /// The blobs an agent of this job may fetch: its inputs' manifests and
    /// files.
    blobs: HashSet<String>,
    /// The token's identity and agent name that took it.
    taken_by: Option<(String, String)>,
    /// When its agent last spoke of it.
    seen_ms: i64,
    finished: bool,
    events: mpsc::UnboundedSender<JobEvent>,
}

struct Seen {
    labels: Vec<String>,
    version: String,
    last_ms: i64,
}

impl Default for Agents {
    fn default() -> Self {
        Agents {
            hub: Arc::new(Hub {
                state: Mutex::new(HubState::default()),
                work: Notify::new(),
                lost_after_ms: AtomicU64::new(duration_ms(DEFAULT_LOST_AFTER)),
            }),
        }
    }
}

fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl Agents {
    fn state(&self) -> std::sync::MutexGuard<'_, HubState> {
        self.hub
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// How often agents must heartbeat: every [`HEARTBEAT`], or a third
    /// of `lost_after` when that is shorter.
    pub fn heartbeat_every(&self) -> Duration {
        HEARTBEAT.min(self.lost_after() / 3)
    }

    /// How long a claimed job's agent may be silent.
    pub fn lost_after(&self) -> Duration {
        Duration::from_millis(self.hub.lost_after_ms.load(Ordering::Relaxed))
    }

    pub fn set_lost_after(&self, after: Duration) {
        self.hub
            .lost_after_ms
            .store(duration_ms(after).max(1), Ordering::Relaxed);
    }

    /// Queues a job for an agent that has all `labels`; `blobs` are what
    /// its agent may fetch. The job lives as long as the handle.
    pub fn enqueue(
        &self,
        spec: AgentJob,
        labels: Vec<String>,
        blobs: HashSet<String>,
    ) -> JobHandle {
        let (events, receiver) = mpsc::unbounded_channel();
        let id = spec.id.clone();
        {
            let mut state = self.state();
            state.queue.push_back(id.clone());
            state.jobs.insert(
                id.clone(),
                Job {
                    spec,
                    labels,
                    blobs,
                    taken_by: None,
                    seen_ms: now_ms(),
                    finished: false,
                    events,
                },
            );
        }
        self.hub.work.notify_waiters();
        JobHandle {
            agents: self.clone(),
            id,
            events: receiver,
        }
    }

    /// An agent asks for work: the oldest queued job its labels cover, as
    /// soon as there is one, or `None` after `wait`.
    pub async fn poll(
        &self,
        identity: &str,
        name: &str,
        labels: &[String],
        version: &str,
        wait: Duration,
    ) -> Result<Option<AgentJob>, AgentError> {
        let server = VERSION;
        if version != server {
            return Err(AgentError::VersionMismatch {
                agent: version.to_string(),
                server: server.to_string(),
            });
        }
        let deadline = tokio::time::Instant::now() + wait.min(MAX_POLL_WAIT);
        loop {
            // Armed before the queue is read, so a job queued in between
            // still wakes this poll.
            let woken = self.hub.work.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            if let Some(job) = self.take(identity, name, labels, version) {
                return Ok(Some(job));
            }
            if tokio::time::timeout_at(deadline, woken).await.is_err() {
                // A last look: a job taken now must be handed out now.
                return Ok(self.take(identity, name, labels, version));
            }
        }
    }

    /// Records that the agent was seen, and takes the oldest job it may run.
    fn take(
        &self,
        identity: &str,
        name: &str,
        labels: &[String],
        version: &str,
    ) -> Option<AgentJob> {
        let now = now_ms();
        let mut state = self.state();
        state.agents.insert(
            name.to_string(),
            Seen {
                labels: labels.to_vec(),
                version: version.to_string(),
                last_ms: now,
            },
        );
        if state.agents.len() > MAX_AGENTS
            && let Some(oldest) = state
                .agents
                .iter()
                .min_by_key(|(_, seen)| seen.last_ms)
                .map(|(name, _)| name.clone())
        {
            state.agents.remove(&oldest);
        }
        let HubState { queue, jobs, .. } = &mut *state;
        let position = queue.iter().position(|id| {
            jobs.get(id)
                .is_some_and(|job| job.labels.iter().all(|l| labels.contains(l)))
        })?;
        let id = queue.remove(position)?;
        let job = jobs.get_mut(&id)?;
        job.taken_by = Some((identity.to_string(), name.to_string()));
        job.seen_ms = now;
        let _ = job.events.send(JobEvent::Claimed(name.to_string()));
        Some(job.spec.clone())
    }

    /// An agent is alive and runs `jobs`: the ones of those it must stop.
    pub fn heartbeat(&self, identity: &str, name: &str, jobs: &[String]) -> Vec<String> {
        let now = now_ms();
        let mut state = self.state();
        if let Some(seen) = state.agents.get_mut(name) {
            seen.last_ms = now;
        }
        let mut stop = Vec::new();
        for id in jobs {
            match state.jobs.get_mut(id) {
                Some(job) if taken_by(job, identity, name) => job.seen_ms = now,
                _ => stop.push(id.clone()),
            }
        }
        stop
    }

    /// Runs `f` on a job taken by `identity` that is not finished.
    fn with_job<T>(
        &self,
        identity: &str,
        id: &str,
        f: impl FnOnce(&mut Job) -> Result<T, AgentError>,
    ) -> Result<T, AgentError> {
        let mut state = self.state();
        match state.jobs.get_mut(id) {
            Some(job)
                if !job.finished
                    && job
                        .taken_by
                        .as_ref()
                        .is_some_and(|(who, _)| who == identity) =>
            {
                job.seen_ms = now_ms();
                f(job)
            }
            _ => Err(AgentError::JobGone(id.to_string())),
        }
    }

    /// Lines of a job's log.
    pub fn log(&self, identity: &str, id: &str, lines: Vec<String>) -> Result<(), AgentError> {
        self.with_job(identity, id, |job| {
            let _ = job.events.send(JobEvent::Lines(lines));
            Ok(())
        })
    }

    /// Whether the job's agent may fetch `digest`.
    pub fn may_fetch(&self, identity: &str, id: &str, digest: &str) -> Result<(), AgentError> {
        self.with_job(identity, id, |job| {
            if job.blobs.contains(digest) {
                Ok(())
            } else {
                Err(AgentError::NotAnInput(digest.to_string()))
            }
        })
    }

    /// Whether the job is still the caller's to upload into.
    pub fn may_upload(&self, identity: &str, id: &str) -> Result<(), AgentError> {
        self.with_job(identity, id, |_| Ok(()))
    }

    /// The build ended; `outputs` are its artifacts, already stored.
    pub fn finish(
        &self,
        identity: &str,
        id: &str,
        request: AgentFinishRequest,
        outputs: Vec<(Option<String>, String)>,
    ) -> Result<(), AgentError> {
        self.with_job(identity, id, |job| {
            job.finished = true;
            let _ = job
                .events
                .send(JobEvent::Finished(Box::new(request), outputs));
            Ok(())
        })
    }

    /// The agent that took a job, once its silence has lasted `lost_after`.
    fn lost(&self, id: &str) -> Option<String> {
        let state = self.state();
        let job = state.jobs.get(id)?;
        let (_, agent) = job.taken_by.as_ref()?;
        let silent = now_ms().saturating_sub(job.seen_ms);
        (u64::try_from(silent).unwrap_or(0) > self.hub.lost_after_ms.load(Ordering::Relaxed))
            .then(|| agent.clone())
    }

    /// The agents heard from, by name.
    pub fn list(&self) -> Vec<AgentView> {
        let now = now_ms();
        let lost_after = self.hub.lost_after_ms.load(Ordering::Relaxed);
        let state = self.state();
        state
            .agents
            .iter()
            .map(|(name, seen)| AgentView {
                name: name.clone(),
                labels: seen.labels.clone(),
                version: seen.version.clone(),
                last_seen: crate::clock::rfc3339(seen.last_ms),
                alive: u64::try_from(now.saturating_sub(seen.last_ms)).unwrap_or(0) <= lost_after,
                running: state
                    .jobs
                    .values()
                    .filter(|job| {
                        !job.finished
                            && job
                                .taken_by
                                .as_ref()
                                .is_some_and(|(_, agent)| agent == name)
                    })
                    .map(|job| {
                        format!(
                            "{}/{}/{}#{}",
                            job.spec.execution_id,
                            job.spec.stage,
                            job.spec.action,
                            job.spec.attempt
                        )
                    })
                    .collect(),
            })
            .collect()
    }

    fn remove(&self, id: &str) {
        let mut state = self.state();
        state.jobs.remove(id);
        state.queue.retain(|queued| queued != id);
    }
}

fn taken_by(job: &Job, identity: &str, name: &str) -> bool {
    job.taken_by
        .as_ref()
        .is_some_and(|(who, agent)| who == identity && agent == name)
}

/// A queued job, held by the runner that waits for it; dropping it ends
/// the job for the agents.
pub struct JobHandle {
    agents: Agents,
    pub id: String,
    pub events: mpsc::UnboundedReceiver<JobEvent>,
}

impl JobHandle {
    /// The agent that took the job, once it has been silent too long.
    pub fn lost(&self) -> Option<String> {
        self.agents.lost(&self.id)
    }
}

impl Drop for JobHandle {
    fn drop(&mut self) {
        self.agents.remove(&self.id);
    }
}

/// 128 random bits in hex: agent job ids, upload temp names, the log
/// writer's batch names.
pub fn unique_id() -> String {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).unwrap_or_else(|_| {
        // The clock and a counter, should the OS refuse randomness: ids
        // stay unique, which is what these ids need above all.
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        bytes[..8].copy_from_slice(&now_ms().to_le_bytes());
        bytes[8..].copy_from_slice(&n.to_le_bytes());
    });
    hex::encode(bytes)
}

/// Runs a resolved build on an agent: queues it, relays its log, and
/// waits for its end, its agent's loss, the attempt's timeout or a stop.
pub(crate) async fn run_on_agent(
    ctx: &crate::actions::ActionContext,
    labels: &[String],
    buildspec: &gantry_spec::buildspec::Buildspec,
    image: Option<String>,
    env: Vec<(String, String)>,
    secrets: Vec<(String, String)>,
) -> Result<crate::actions::build::Ended, crate::actions::ActionError> {
    use crate::actions::ActionError;
    use crate::actions::build::{Ended, Output};

    let buildspec = serde_json::to_value(buildspec)
        .map_err(|e| ActionError::new(format!("internal error: buildspec: {e}")))?;
    let mut blobs = HashSet::new();
    for (name, artifact) in &ctx.inputs {
        let store = ctx.artifacts.clone();
        let id = artifact.clone();
        let manifest = tokio::task::spawn_blocking(move || store.artifact(&id))
            .await
            .map_err(|e| ActionError::new(format!("reading {name} panicked: {e}")))?
            .map_err(|e| ActionError::new(format!("input artifact {name}: {e}")))?;
        blobs.insert(manifest.id.clone());
        for entry in manifest.entries {
            if let gantry_store::ArtifactEntry::File { digest, .. } = entry {
                blobs.insert(digest);
            }
        }
    }
    let variables = |pairs: Vec<(String, String)>| {
        pairs
            .into_iter()
            // The server's docker config is of no use on another host: the
            // agent writes its own from `registry`.
            .filter(|(name, _)| name != "DOCKER_CONFIG")
            .map(|(name, value)| gantry_api::AgentVariable { name, value })
            .collect()
    };
    let job = AgentJob {
        id: unique_id(),
        execution_id: ctx.execution_id.clone(),
        pipeline: ctx.pipeline.clone(),
        stage: ctx.stage.clone(),
        action: ctx.action.name.to_string(),
        attempt: ctx.attempt,
        action_type: ctx.action.kind.type_name().to_string(),
        buildspec,
        inputs: ctx
            .inputs
            .iter()
            .map(|(name, artifact)| gantry_api::AgentInput {
                name: name.to_string(),
                artifact: artifact.clone(),
            })
            .collect(),
        env: variables(env),
        secrets: variables(secrets),
        build_id: format!("{}:{}", ctx.pipeline, ctx.execution_id),
        build_number: u64::from(ctx.attempt),
        initiator: format!("gantry/{}", ctx.pipeline),
        source_version: ctx.source_revision.clone(),
        timeout_ms: duration_ms(ctx.timeout),
        image,
        registry: ctx
            .registry_login
            .as_ref()
            .map(|login| gantry_api::AgentRegistryLogin {
                registry: login.registry.clone(),
                token: login.token.expose().to_string(),
            }),
    };
    let shown = if labels.is_empty() {
        "any agent".to_string()
    } else {
        format!("an agent with labels {}", labels.join(", "))
    };
    ctx.log.line(&format!("Waiting for {shown}."));
    let mut handle = ctx.agents.enqueue(job, labels.to_vec(), blobs);
    // The agent ends the build at the timeout; this one is in case it
    // cannot say so.
    let deadline = tokio::time::Instant::now() + ctx.timeout + HEARTBEAT * 5;
    let mut check = tokio::time::interval(Duration::from_millis(500));
    let mut running_on = None;
    loop {
        tokio::select! {
            event = handle.events.recv() => match event {
                Some(JobEvent::Claimed(agent)) => {
                    ctx.log.line(&format!("Running on agent {agent}."));
                    running_on = Some(agent);
                }
                Some(JobEvent::Lines(lines)) => {
                    for line in lines {
                        ctx.log.line(&line);
                    }
                }
                Some(JobEvent::Finished(end, outputs)) => {
                    let end = *end;
                    return Ok(Ended {
                        status: end.status,
                        error: end.error,
                        failed_phases: end.failed_phases,
                        exported_variables: end.exported_variables,
                        reports: end.reports,
                        outputs: outputs
                            .into_iter()
                            .map(|(identifier, id)| (identifier, Output::Stored(id)))
                            .collect(),
                    });
                }
                None => return Err(ActionError::new("internal error: the agent job vanished")),
            },
            () = ctx.cancel.cancelled() => {
                return Err(ActionError::new("stopped: the agent is told to stop the build"));
            }
            _ = check.tick() => {
                if let Some(agent) = handle.lost() {
                    return Err(ActionError::new(format!(
                        "interrupted: agent {agent} sent no heartbeat for {} s",
                        ctx.agents.lost_after().as_secs_f64()
                    )));
                }
            }
            () = tokio::time::sleep_until(deadline) => {
                let waiting = match &running_on {
                    Some(agent) => format!("agent {agent} did not end the build"),
                    None => format!("no agent took it (waiting for {shown})"),
                };
                return Err(ActionError::new(format!(
                    "timed out after {} s: {waiting}",
                    ctx.timeout.as_secs()
                )));
            }
        }
    }
}
