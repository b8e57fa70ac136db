//! The control plane: feeds the engine, persists what it decides, and runs
//! what it asks for.
//!
//! Every change goes through [`ControlPlane::submit`]: under one lock, the
//! event is applied to the pipeline's engine (an invalid request changes
//! nothing and is returned as an error), appended to the event log together
//! with the execution states it changed, and then the engine's commands are
//! carried out by spawning tasks. Tasks report back with more events. So the
//! log's order is the order the engine saw, and replaying it on start-up
//! rebuilds exactly the state the previous process had.
//!
//! Recovery: after the replay, every action that was `InProgress` is failed
//! with an "interrupted" error (it may have half-run; running it again
//! silently could repeat side effects), and every approval still waiting gets
//! its timeout timer back. Nothing is left stuck `InProgress`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use gantry_engine::{ActionStatus, Command, Engine, Event, Execution};
use gantry_spec::pipeline::{Action, ActionKind};
use gantry_spec::template::{VarRef, resolve};
use gantry_store::{ApprovalRecord, ArtifactStore, ExecutionRow, LogLine, Store};
use tokio::sync::{Mutex, watch};
use tokio::task::AbortHandle;
use tokio_util::sync::CancellationToken;

use crate::actions::{ActionContext, ActionError, ActionOutput, BoxFuture, Runners};
use crate::clock::now_ms;
use crate::definition::{Definition, Loaded, plan};
use crate::error::ControlError;
use crate::logs::LogWriter;
use crate::parameters::KeySource;
use crate::resolve::resolve_action;
use gantry_params::ParamStore;

mod approvals;
pub use approvals::{ApprovalBinding, ApprovalView, Decision, DecisionOutcome};

/// Default timeout of every action type but approvals (CodePipeline's 1 h).
const DEFAULT_ACTION_TIMEOUT: Duration = Duration::from_secs(3600);
/// Default approval timeout (CodePipeline's 7 days).
const DEFAULT_APPROVAL_TIMEOUT: Duration = Duration::from_secs(7 * 24 * 3600);

type ActionKey = (String, usize, usize);

#[derive(Clone)]
pub struct ControlPlane {
    inner: Arc<Inner>,
}

struct Inner {
    data_dir: PathBuf,
    /// Notified when a client asks the server to stop.
    shutdown: tokio::sync::Notify,
    deployer: gantry_deploy::Deployer,
    /// The embedded registry's `host:port`, once it listens.
    registry: std::sync::OnceLock<String>,
    images: gantry_images::RegistryClient,
    store: Store,
    params: Arc<ParamStore>,
    key_source: KeySource,
    auth: gantry_auth::Auth,
    artifacts: ArtifactStore,
    logs: LogWriter,
    runners: Runners,
    state: Mutex<State>,
    changes: watch::Sender<u64>,
    /// Serialises approval decisions (see `approvals`).
    decisions: Mutex<()>,
}

#[derive(Default)]
struct State {
    engines: HashMap<String, Engine>,
    pipeline_of: HashMap<String, String>,
    loaded: HashMap<String, Arc<Loaded>>,
    running: HashMap<ActionKey, CancellationToken>,
    timers: HashMap<ActionKey, AbortHandle>,
    /// Executions whose last persisted state was not terminal, with that
    /// state's JSON: only these can change, so only these are re-serialised.
    open: HashMap<String, String>,
}

impl ControlPlane {
    /// Opens the data dir, replays the event log and recovers interrupted work.
    pub async fn open(data_dir: &Path) -> Result<ControlPlane, ControlError> {
        Self::open_with(data_dir, Runners::standard()).await
    }

    pub async fn open_with(
        data_dir: &Path,
        runners: Runners,
    ) -> Result<ControlPlane, ControlError> {
        std::fs::create_dir_all(data_dir).map_err(|e| ControlError::io(data_dir, e))?;
        let data_dir = data_dir
            .canonicalize()
            .map_err(|e| ControlError::io(data_dir, e))?;
        let store = Store::open(&data_dir.join("gantry.db")).await?;
        let (params, key_source) = crate::parameters::open(&store, &data_dir).await?;
        let auth = gantry_auth::Auth::open(store.pool().clone()).await?;
        let artifacts = ArtifactStore::open(data_dir.join("artifacts"))?;
        // Nothing runs yet, so every leftover work directory is garbage from
        // an earlier process, and processes of its actions may live on. An
        // attempt's work directory lives as long as the attempt, so without
        // one no action can have been interrupted, and /proc is not scanned.
        let work = data_dir.join("work");
        let interrupted = std::fs::read_dir(&work).is_ok_and(|mut d| d.next().is_some());
        if interrupted {
            let orphans = crate::orphans::kill_orphans(&data_dir);
            if orphans > 0 {
                tracing::warn!(
                    orphans,
                    "Killed processes left behind by an earlier server."
                );
            }
        }
        if work.exists() {
            let _ = tokio::fs::remove_dir_all(&work).await;
        }
        let logs = LogWriter::start(store.clone());
        let mut state = State::default();
        for record in store.events().await? {
            let event: Event =
                serde_json::from_str(&record.body).map_err(|e| ControlError::CorruptLog {
                    seq: record.seq,
                    reason: e.to_string(),
                })?;
            let engine = state.engines.entry(record.pipeline.clone()).or_default();
            if let Err(error) = engine.apply(event) {
                // The log only holds events the engine accepted; a refusal
                // here means the engine's rules changed. Skipping keeps the
                // server usable; the warning makes it visible.
                tracing::warn!(seq = record.seq, %error, "Replayed event was refused.");
            }
            state
                .pipeline_of
                .insert(record.execution_id, record.pipeline);
        }
        let mut to_load = Vec::new();
        for engine in state.engines.values() {
            for execution in engine.executions() {
                if !execution.status.is_terminal() {
                    let json = serde_json::to_string(execution).unwrap_or_default();
                    state.open.insert(execution.id.clone(), json);
                    to_load.push(execution.id.clone());
                }
            }
        }
        for id in to_load {
            if let Some(text) = store.definition(&id).await? {
                let definition: Definition =
                    serde_json::from_str(&text).map_err(|e| ControlError::CorruptLog {
                        seq: 0,
                        reason: format!("definition of {id}: {e}"),
                    })?;
                match definition.load() {
                    Ok(loaded) => {
                        state.loaded.insert(id, Arc::new(loaded));
                    }
                    Err(errors) => {
                        tracing::warn!(execution = %id, errors = errors.len(), "Stored definition is invalid.")
                    }
                }
            }
        }
        let (changes, _) = watch::channel(0);
        let images = gantry_images::RegistryClient::new(gantry_images::ClientOptions::default())
            .map_err(|e| ControlError::Internal(format!("registry client: {e}")))?;
        let adopt_docker = gantry_deploy::uses_docker(&store).await.unwrap_or(true);
        let runtimes = crate::runtimes::open(&data_dir, &images, adopt_docker).await;
        let deployer =
            gantry_deploy::Deployer::open(store.clone(), params.clone(), images.clone(), runtimes)
                .await?;
        let plane = ControlPlane {
            inner: Arc::new(Inner {
                shutdown: tokio::sync::Notify::new(),
                deployer,
                data_dir,
                registry: std::sync::OnceLock::new(),
                images,
                store,
                params,
                key_source,
                auth,
                artifacts,
                logs,
                runners,
                state: Mutex::new(state),
                changes,
                decisions: Mutex::new(()),
            }),
        };
        plane.recover().await?;
        Ok(plane)
    }

    async fn recover(&self) -> Result<(), ControlError> {
        let (interrupted, waiting) = {
            let state = self.inner.state.lock().await;
            let mut interrupted = Vec::new();
            let mut waiting = Vec::new();
            for engine in state.engines.values() {
                for action in engine.interrupted() {
                    let names = engine.execution(&action.id).and_then(|e| {
                        let stage = e.stages.get(action.stage)?;
                        Some((
                            stage.name.clone(),
                            stage.actions.get(action.action)?.name.clone(),
                        ))
                    });
                    interrupted.push((action, names));
                }
                for execution in engine.executions() {
                    for (s, stage) in execution.stages.iter().enumerate() {
                        for (a, action) in stage.actions.iter().enumerate() {
                            if action.status == Some(ActionStatus::Waiting) {
                                waiting.push((execution.id.clone(), s, a, action.attempt));
                            }
                        }
                    }
                }
            }
            (interrupted, waiting)
        };
        for (action, names) in interrupted {
            if let Some((stage, name)) = names {
                let log = self
                    .inner
                    .logs
                    .action(&action.id, &stage, &name, action.attempt);
                log.line(gantry_engine::INTERRUPTED);
            }
            tracing::warn!(execution = %action.id, stage = action.stage, action = action.action, "Action was interrupted by a restart.");
            self.submit(action.interrupted(now_ms())).await?;
        }
        for (id, s, a, attempt) in waiting {
            self.arm_approval_timer(&id, s, a, attempt).await;
        }
        Ok(())
    }

    pub fn data_dir(&self) -> &Path {
        &self.inner.data_dir
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    pub fn artifacts(&self) -> &ArtifactStore {
        &self.inner.artifacts
    }

    /// Asks the process that serves this control plane to shut down.
    pub fn request_shutdown(&self) {
        self.inner.shutdown.notify_one();
    }

    /// Resolves when a client asked for a shutdown.
    pub async fn shutdown_requested(&self) {
        self.inner.shutdown.notified().await;
    }

    pub fn deployer(&self) -> &gantry_deploy::Deployer {
        &self.inner.deployer
    }

    /// Users, tokens and the audit log.
    pub fn auth(&self) -> &gantry_auth::Auth {
        &self.inner.auth
    }

    /// Registers a file's environments and services (and those of the files
    /// it includes, whose text the client sent) with the deployer. A file
    /// without any is left alone.
    pub async fn apply_file(
        &self,
        file: &Path,
        text: &str,
        includes: &BTreeMap<String, String>,
    ) -> Result<Vec<String>, ControlError> {
        let files = project_files(file, text, includes)?;
        if files.len() == 1 {
            let document = gantry_spec::parse_document(&files[0].0, text)
                .map_err(ControlError::InvalidPipeline)?;
            if document.environments.is_empty() && document.services.is_empty() {
                return Ok(Vec::new());
            }
        }
        Ok(self.inner.deployer.apply(files).await?)
    }

    /// Records where the embedded registry listens (`host:port`).
    pub fn set_registry(&self, addr: String) {
        let _ = self.inner.registry.set(addr);
    }

    pub fn registry(&self) -> Option<&str> {
        self.inner.registry.get().map(String::as_str)
    }

    pub fn images(&self) -> &gantry_images::RegistryClient {
        &self.inner.images
    }

    pub fn params(&self) -> &ParamStore {
        &self.inner.params
    }

    /// Re-encrypts every SecureString version under a new master key. With
    /// a key file, a new key is generated and the file replaced after the
    /// database holds only the new key's ciphertexts; with
    /// `GANTRY_MASTER_KEY`, the caller must name the new key (and then set
    /// the variable to it). Returns the re-encrypted count and the new key id.
    pub async fn rotate_master_key(
        &self,
        new_key: Option<&str>,
    ) -> Result<(usize, String), ControlError> {
        let key = match (new_key, self.inner.key_source) {
            (Some(hex), _) => gantry_params::MasterKey::from_hex(hex)?,
            (None, KeySource::File) => gantry_params::MasterKey::generate()?,
            (None, KeySource::Environment) => {
                return Err(ControlError::BadRequest(format!(
                    "the master key comes from {}: give the new key to rotate to",
                    gantry_params::MASTER_KEY_ENV
                )));
            }
        };
        let id = key.id().to_string();
        let hex = key.to_hex();
        crate::parameters::mask_master_key(&key);
        let rotated = self.inner.params.rotate_key(key).await?;
        if self.inner.key_source == KeySource::File {
            let path = self.inner.data_dir.join(gantry_params::MASTER_KEY_FILE);
            let tmp = path.with_extension("key.new");
            write_private(&tmp, hex.as_bytes()).map_err(|e| ControlError::io(&tmp, e))?;
            std::fs::rename(&tmp, &path).map_err(|e| ControlError::io(&path, e))?;
        }
        Ok((rotated, id))
    }

    /// Where the master key came from.
    pub fn key_source(&self) -> KeySource {
        self.inner.key_source
    }

    /// A receiver that changes whenever any execution changes.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.inner.changes.subscribe()
    }

    /// Starts an execution of a pipeline definition.
    /// `overrides` replace pipeline variables' defaults (`--var NAME=VALUE`);
    /// naming a variable the pipeline does not declare is an error.
    pub async fn start_execution(
        &self,
        file: PathBuf,
        text: String,
        includes: BTreeMap<String, String>,
        overrides: BTreeMap<String, String>,
        started_by: Option<String>,
    ) -> Result<String, ControlError> {
        let pipeline = gantry_spec::pipeline::parse_pipeline(&file.display().to_string(), &text)
            .map_err(ControlError::InvalidPipeline)?;
        let mut variables = pipeline.variables.clone();
        for (name, value) in overrides {
            if !variables.contains_key(&name) {
                return Err(ControlError::UnknownVariable(name));
            }
            variables.insert(name, value);
        }
        // `gantry run` applies the file's environments and services first.
        self.apply_file(&file, &text, &includes).await?;
        let loaded = Loaded {
            definition: Definition {
                file,
                text,
                variables,
                includes,
                started_by,
            },
            pipeline,
        };
        let id = uuid::Uuid::now_v7().to_string();
        let text = serde_json::to_string(&loaded.definition)
            .map_err(|e| ControlError::Internal(e.to_string()))?;
        self.inner.store.put_definition(&id, &text).await?;
        let plan = plan(&loaded.pipeline);
        let variables = loaded.definition.variables.clone();
        self.inner
            .state
            .lock()
            .await
            .loaded
            .insert(id.clone(), Arc::new(loaded));
        self.submit(Event::ExecutionRequested {
            id: id.clone(),
            plan,
            variables,
            at: now_ms(),
        })
        .await?;
        Ok(id)
    }

    /// Applies one event: engine, then log, then commands.
    ///
    /// Boxed because it is recursive through spawned tasks (a result is
    /// submitted by a task that an earlier submit spawned), and the compiler
    /// needs the `Send` bound written down to break that cycle.
    pub fn submit(&self, event: Event) -> BoxFuture<'_, Result<(), ControlError>> {
        Box::pin(self.submit_inner(event))
    }

    async fn submit_inner(&self, event: Event) -> Result<(), ControlError> {
        let mut state = self.inner.state.lock().await;
        let id = event.execution_id().to_string();
        let pipeline = match &event {
            Event::ExecutionRequested { plan, .. } => plan.pipeline.clone(),
            _ => state
                .pipeline_of
                .get(&id)
                .cloned()
                .ok_or_else(|| ControlError::NotFound(id.clone()))?,
        };
        let body =
            serde_json::to_string(&event).map_err(|e| ControlError::Internal(e.to_string()))?;
        let at = event.at();
        let waiting = match &event {
            Event::ActionWaiting {
                stage,
                action,
                attempt,
                ..
            } => Some((*stage, *action, *attempt)),
            _ => None,
        };
        let engine = state.engines.entry(pipeline.clone()).or_default();
        let commands = engine.apply(event)?;
        state.pipeline_of.insert(id.clone(), pipeline.clone());
        let rows = changed_rows(&mut state, &pipeline, &id);
        self.inner
            .store
            .record_event(&pipeline, &id, at, &body, &rows)
            .await?;
        for command in commands {
            self.execute(&mut state, command);
        }
        drop(state);
        if let Some((s, a, attempt)) = waiting {
            self.arm_approval_timer(&id, s, a, attempt).await;
        }
        self.inner.changes.send_modify(|n| *n += 1);
        Ok(())
    }

    fn execute(&self, state: &mut State, command: Command) {
        match command {
            Command::StartAction {
                id,
                stage,
                action,
                attempt,
            } => {
                let Some(loaded) = state.loaded.get(&id).cloned() else {
                    let plane = self.clone();
                    tokio::spawn(async move {
                        let error =
                            "the pipeline definition of this execution is missing".to_string();
                        let event = Event::ActionFailed {
                            id,
                            stage,
                            action,
                            attempt,
                            error,
                            at: now_ms(),
                        };
                        let _ = plane.submit(event).await;
                    });
                    return;
                };
                let is_approval = matches!(
                    loaded
                        .pipeline
                        .stages
                        .get(stage)
                        .and_then(|s| s.actions.get(action))
                        .map(|a| &a.kind),
                    Some(ActionKind::Approval { .. })
                );
                let plane = self.clone();
                if is_approval {
                    tokio::spawn(
                        async move { plane.begin_approval(id, stage, action, attempt).await },
                    );
                } else {
                    let cancel = CancellationToken::new();
                    state
                        .running
                        .insert((id.clone(), stage, action), cancel.clone());
                    tokio::spawn(async move {
                        plane.run_action(id, stage, action, attempt, cancel).await
                    });
                }
            }
            Command::CancelAction {
                id, stage, action, ..
            } => {
                let key = (id, stage, action);
                if let Some(cancel) = state.running.remove(&key) {
                    cancel.cancel();
                }
                if let Some(timer) = state.timers.remove(&key) {
                    timer.abort();
                }
            }
            Command::ExecutionFinished { id, status } => {
                tracing::info!(execution = %id, %status, "Execution finished.");
            }
        }
    }

    async fn begin_approval(&self, id: String, stage: usize, action: usize, attempt: u32) {
        let Some((loaded, execution)) = self.snapshot(&id).await else {
            return;
        };
        let spec = &loaded.pipeline.stages[stage].actions[action];
        let log = self.inner.logs.action(
            &id,
            loaded.pipeline.stages[stage].name.as_str(),
            spec.name.as_str(),
            attempt,
        );
        let resolved = resolve_action(spec, |r| lookup(r, &loaded, &execution, self.registry()));
        let event = match resolved {
            Ok(resolved) => {
                if let ActionKind::Approval {
                    review_url,
                    comments,
                    ..
                } = &resolved.kind
                {
                    log.line("Waiting for approval.");
                    if let Some(url) = review_url {
                        log.line(&format!("Review: {url}"));
                    }
                    if let Some(comments) = comments {
                        log.line(&format!("Comments: {comments}"));
                    }
                }
                log.line(&format!(
                    "Approve with: gantry approve {id} {}/{}",
                    loaded.pipeline.stages[stage].name, spec.name
                ));
                Event::ActionWaiting {
                    id,
                    stage,
                    action,
                    attempt,
                    at: now_ms(),
                }
            }
            Err(error) => {
                log.line(&format!("Action failed: {error}"));
                Event::ActionFailed {
                    id,
                    stage,
                    action,
                    attempt,
                    error,
                    at: now_ms(),
                }
            }
        };
        self.inner.logs.flush().await;
        if let Err(error) = self.submit(event).await {
            tracing::error!(%error, "Recording an approval wait failed.");
        }
    }

    async fn arm_approval_timer(&self, id: &str, stage: usize, action: usize, attempt: u32) {
        let Some((loaded, execution)) = self.snapshot(id).await else {
            return;
        };
        let timeout = loaded.pipeline.stages[stage].actions[action]
            .timeout
            .unwrap_or(DEFAULT_APPROVAL_TIMEOUT);
        let started = execution.stages[stage].actions[action]
            .started_at
            .unwrap_or_else(now_ms);
        let deadline_ms =
            started.saturating_add(i64::try_from(timeout.as_millis()).unwrap_or(i64::MAX));
        let remaining = Duration::from_millis(u64::try_from(deadline_ms - now_ms()).unwrap_or(0));
        let plane = self.clone();
        let id_owned = id.to_string();
        let task = tokio::spawn(async move {
            tokio::time::sleep(remaining).await;
            let error = format!(
                "approval timed out after {}",
                gantry_spec::duration::format_duration(timeout)
            );
            let event = Event::ActionFailed {
                id: id_owned,
                stage,
                action,
                attempt,
                error,
                at: now_ms(),
            };
            if let Err(error) = plane.submit(event).await {
                tracing::warn!(%error, "Recording an approval timeout failed.");
            }
        });
        let mut state = self.inner.state.lock().await;
        if let Some(old) = state
            .timers
            .insert((id.to_string(), stage, action), task.abort_handle())
        {
            old.abort();
        }
    }

    /// The definition and a copy of the current state of an execution.
    async fn snapshot(&self, id: &str) -> Option<(Arc<Loaded>, Execution)> {
        let state = self.inner.state.lock().await;
        let loaded = state.loaded.get(id)?.clone();
        let pipeline = state.pipeline_of.get(id)?;
        let execution = state.engines.get(pipeline)?.execution(id)?.clone();
        Some((loaded, execution))
    }

    async fn run_action(
        &self,
        id: String,
        stage: usize,
        action: usize,
        attempt: u32,
        cancel: CancellationToken,
    ) {
        let result = self.perform(&id, stage, action, attempt, cancel).await;
        self.inner.logs.flush().await;
        let at = now_ms();
        let event = match result {
            Ok((output_variables, output_artifacts)) => Event::ActionSucceeded {
                id: id.clone(),
                stage,
                action,
                attempt,
                output_variables,
                output_artifacts,
                at,
            },
            Err(error) => Event::ActionFailed {
                id: id.clone(),
                stage,
                action,
                attempt,
                error: error.0,
                at,
            },
        };
        if let Err(error) = self.submit(event).await {
            tracing::error!(%error, "Recording an action result failed.");
        }
        self.inner
            .state
            .lock()
            .await
            .running
            .remove(&(id, stage, action));
    }

    async fn perform(
        &self,
        id: &str,
        stage: usize,
        action: usize,
        attempt: u32,
        cancel: CancellationToken,
    ) -> Result<(BTreeMap<String, String>, BTreeMap<String, String>), ActionError> {
        let (loaded, execution) = self
            .snapshot(id)
            .await
            .ok_or_else(|| ActionError::new("internal error: execution not loaded"))?;
        let stage_spec = &loaded.pipeline.stages[stage];
        let spec = &stage_spec.actions[action];
        let log = self
            .inner
            .logs
            .action(id, stage_spec.name.as_str(), spec.name.as_str(), attempt);
        log.line(&format!(
            "Starting {} action {}/{} (attempt {attempt})",
            spec.kind.type_name(),
            stage_spec.name,
            spec.name
        ));
        let result = self
            .perform_resolved(
                id,
                &loaded,
                &execution,
                spec,
                stage_spec.name.as_str(),
                attempt,
                &log,
                cancel,
            )
            .await;
        match &result {
            Ok(_) => log.line("Action succeeded."),
            Err(error) => log.line(&format!("Action failed: {error}")),
        }
        result
    }

    #[allow(clippy::too_many_arguments)]
    async fn perform_resolved(
        &self,
        id: &str,
        loaded: &Loaded,
        execution: &Execution,
        spec: &Action,
        stage_name: &str,
        attempt: u32,
        log: &crate::logs::ActionLog,
        cancel: CancellationToken,
    ) -> Result<(BTreeMap<String, String>, BTreeMap<String, String>), ActionError> {
        let resolved = resolve_action(spec, |r| lookup(r, loaded, execution, self.registry()))
            .map_err(ActionError)?;
        let mut inputs = Vec::new();
        for name in &resolved.inputs {
            let artifact = find_artifact(execution, name.as_str()).ok_or_else(|| {
                ActionError::new(format!("input artifact {name} was not produced"))
            })?;
            inputs.push((name.clone(), artifact));
        }
        let runner = self
            .inner
            .runners
            .get(resolved.kind.type_name())
            .ok_or_else(|| {
                ActionError::new(format!(
                    "no runner for action type {}",
                    resolved.kind.type_name()
                ))
            })?;
        let work_dir = self.inner.data_dir.join("work").join(id).join(format!(
            "{}-{}-{attempt}",
            sanitize(stage_name),
            sanitize(spec.name.as_str())
        ));
        let _ = tokio::fs::remove_dir_all(&work_dir).await;
        tokio::fs::create_dir_all(&work_dir)
            .await
            .map_err(|e| ActionError::new(format!("cannot create {}: {e}", work_dir.display())))?;
        // A registry-only token for this attempt, so its image pushes and
        // `docker push` in builds reach the embedded registry; it lives no
        // longer than the action may run.
        let timeout = resolved.timeout.unwrap_or(DEFAULT_ACTION_TIMEOUT);
        let registry_login = self.inner.registry.get().and_then(|registry| {
            let identity = gantry_auth::Identity {
                name: format!(
                    "action:{}/{id}/{stage_name}/{}",
                    loaded.pipeline.name, resolved.name
                ),
                email: None,
                grants: vec![gantry_auth::Grant::new(gantry_auth::Role::Operator)],
            };
            let ttl = i64::try_from(timeout.as_millis())
                .unwrap_or(i64::MAX / 2)
                .saturating_add(600_000);
            self.inner
                .auth
                .issue_ephemeral(identity, gantry_auth::Audience::Registry, ttl, now_ms())
                .ok()
                .map(|token| crate::actions::RegistryLogin {
                    registry: registry.clone(),
                    token,
                })
        });
        let ctx = ActionContext {
            execution_id: id.to_string(),
            pipeline: loaded.pipeline.name.to_string(),
            stage: stage_name.to_string(),
            owner: self.inner.data_dir.display().to_string(),
            cache_dir: self
                .inner
                .data_dir
                .join("cache")
                .join(sanitize(loaded.pipeline.name.as_str())),
            timeout,
            action: resolved,
            attempt,
            work_dir: work_dir.clone(),
            base_dir: loaded.definition.base_dir().to_path_buf(),
            inputs,
            source_revision: source_revision(loaded, execution),
            artifacts: self.inner.artifacts.clone(),
            registry: self.inner.registry.get().cloned(),
            images: self.inner.images.clone(),
            deployer: Some(self.inner.deployer.clone()),
            params: self.inner.params.clone(),
            store: self.inner.store.clone(),
            log: log.clone(),
            cancel,
            registry_login,
        };
        let result = runner.run(&ctx).await;
        if let Some(login) = &ctx.registry_login {
            self.inner.auth.forget_ephemeral(&login.token);
        }
        let result = match result {
            Ok(output) => self.import_outputs(output, log).await,
            Err(error) => Err(error),
        };
        let _ = tokio::fs::remove_dir_all(&work_dir).await;
        result
    }

    async fn import_outputs(
        &self,
        output: ActionOutput,
        log: &crate::logs::ActionLog,
    ) -> Result<(BTreeMap<String, String>, BTreeMap<String, String>), ActionError> {
        let mut artifacts = BTreeMap::new();
        for (name, dir) in output.artifacts {
            let store = self.inner.artifacts.clone();
            let imported = tokio::task::spawn_blocking(move || store.import_dir(&dir))
                .await
                .map_err(|e| ActionError::new(format!("importing artifact {name} panicked: {e}")))?
                .map_err(|e| ActionError::new(format!("output artifact {name}: {e}")))?;
            log.line(&format!(
                "Output artifact {name}: {} ({} files)",
                imported.id,
                imported.file_count()
            ));
            artifacts.insert(name.to_string(), imported.id);
        }
        Ok((output.variables, artifacts))
    }

    /// Stops the timeout timer of an approval that was decided.
    async fn cancel_approval_timer(&self, id: &str, stage: usize, action: usize) {
        if let Some(timer) =
            self.inner
                .state
                .lock()
                .await
                .timers
                .remove(&(id.to_string(), stage, action))
        {
            timer.abort();
        }
    }

    /// Loads an execution's definition if it is not in memory (only those
    /// of unfinished executions are loaded at start-up).
    async fn ensure_loaded(&self, id: &str) -> Result<(), ControlError> {
        if self.inner.state.lock().await.loaded.contains_key(id) {
            return Ok(());
        }
        let text = self
            .inner
            .store
            .definition(id)
            .await?
            .ok_or_else(|| ControlError::NotFound(id.to_string()))?;
        let definition: Definition =
            serde_json::from_str(&text).map_err(|e| ControlError::CorruptLog {
                seq: 0,
                reason: format!("definition of {id}: {e}"),
            })?;
        let loaded = definition.load().map_err(ControlError::InvalidPipeline)?;
        self.inner
            .state
            .lock()
            .await
            .loaded
            .entry(id.to_string())
            .or_insert_with(|| Arc::new(loaded));
        Ok(())
    }

    pub async fn retry(
        &self,
        id: &str,
        stage: &str,
        all_actions: bool,
    ) -> Result<(), ControlError> {
        self.ensure_loaded(id).await?;
        let (_, execution) = self
            .snapshot(id)
            .await
            .ok_or_else(|| ControlError::NotFound(id.to_string()))?;
        let s = execution
            .stage_index(stage)
            .ok_or_else(|| ControlError::UnknownStage(stage.to_string()))?;
        self.submit(Event::RetryStage {
            id: id.to_string(),
            stage: s,
            all_actions,
            at: now_ms(),
        })
        .await
    }

    pub async fn stop(
        &self,
        id: &str,
        abandon: bool,
        reason: Option<String>,
    ) -> Result<(), ControlError> {
        self.submit(Event::Stop {
            id: id.to_string(),
            abandon,
            reason,
            at: now_ms(),
        })
        .await
    }

    /// One execution with its definition, if it is loaded.
    pub async fn execution(&self, id: &str) -> Option<(Execution, Option<Arc<Loaded>>)> {
        let state = self.inner.state.lock().await;
        let pipeline = state.pipeline_of.get(id)?;
        let execution = state.engines.get(pipeline)?.execution(id)?.clone();
        Some((execution, state.loaded.get(id).cloned()))
    }

    /// Executions, newest first.
    pub async fn executions(&self, pipeline: Option<&str>, limit: usize) -> Vec<Execution> {
        let state = self.inner.state.lock().await;
        let mut all: Vec<Execution> = state
            .engines
            .iter()
            .filter(|(name, _)| pipeline.is_none_or(|p| p == name.as_str()))
            .flat_map(|(_, engine)| engine.executions().cloned())
            .collect();
        all.sort_by(|a, b| {
            b.started_at
                .cmp(&a.started_at)
                .then_with(|| b.id.cmp(&a.id))
        });
        all.truncate(limit);
        all
    }

    pub async fn logs(
        &self,
        id: &str,
        stage_action: Option<(&str, &str)>,
        after: i64,
        limit: i64,
    ) -> Result<Vec<LogLine>, ControlError> {
        Ok(self
            .inner
            .store
            .logs(id, stage_action, after, limit)
            .await?)
    }

    pub async fn approvals(&self, id: &str) -> Result<Vec<ApprovalRecord>, ControlError> {
        Ok(self.inner.store.approvals(id).await?)
    }

    /// Whether any action is running (approvals waiting for a person don't
    /// count). An embedded server may stop only when nothing runs.
    pub async fn busy(&self) -> bool {
        let state = self.inner.state.lock().await;
        state
            .engines
            .values()
            .flat_map(|e| e.executions())
            .any(|execution| {
                execution
                    .stages
                    .iter()
                    .flat_map(|s| s.actions.iter())
                    .any(|a| a.status == Some(ActionStatus::InProgress))
            })
    }

    /// Whether services run replicas behind this server's load balancers.
    pub async fn serving(&self) -> bool {
        self.inner.deployer.serving().await
    }

    /// Cancels every running action (server shutdown).
    pub async fn cancel_all(&self) {
        let state = self.inner.state.lock().await;
        for cancel in state.running.values() {
            cancel.cancel();
        }
    }
}

/// Writes a file only its owner can read.
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// The states that changed since they were last persisted.
fn changed_rows(state: &mut State, pipeline: &str, event_id: &str) -> Vec<ExecutionRow> {
    let Some(engine) = state.engines.get(pipeline) else {
        return Vec::new();
    };
    let mut candidates: HashSet<&str> = state
        .open
        .keys()
        .filter(|id| state.pipeline_of.get(*id).is_some_and(|p| p == pipeline))
        .map(String::as_str)
        .collect();
    candidates.insert(event_id);
    let mut rows = Vec::new();
    let mut updates = Vec::new();
    for id in candidates {
        let Some(execution) = engine.execution(id) else {
            continue;
        };
        let json = serde_json::to_string(execution).unwrap_or_default();
        if state.open.get(id) == Some(&json) {
            continue;
        }
        rows.push(ExecutionRow {
            id: execution.id.clone(),
            pipeline: execution.pipeline.clone(),
            status: execution.status.as_str().to_string(),
            started_at: execution.started_at,
            finished_at: execution.finished_at,
            state: json.clone(),
        });
        updates.push((execution.id.clone(), json, execution.status.is_terminal()));
    }
    for (id, json, terminal) in updates {
        if terminal {
            state.open.remove(&id);
        } else {
            state.open.insert(id, json);
        }
    }
    rows
}

/// The value of a `#{namespace.NAME}` reference for an execution.
fn lookup(
    r: &VarRef,
    loaded: &Loaded,
    execution: &Execution,
    registry: Option<&str>,
) -> Option<String> {
    match r.namespace.as_str() {
        "variables" => loaded.definition.variables.get(&r.name).cloned(),
        "gantry" | "codepipeline" => match r.name.as_str() {
            "ExecutionId" | "PipelineExecutionId" => Some(execution.id.clone()),
            "PipelineName" => Some(execution.pipeline.clone()),
            "Registry" => registry.map(str::to_string),
            _ => None,
        },
        namespace => {
            for (s, stage) in loaded.pipeline.stages.iter().enumerate() {
                for (a, action) in stage.actions.iter().enumerate() {
                    if action
                        .namespace
                        .as_ref()
                        .is_some_and(|n| n.as_str() == namespace)
                    {
                        return execution
                            .stages
                            .get(s)?
                            .actions
                            .get(a)?
                            .output_variables
                            .get(&r.name)
                            .cloned();
                    }
                }
            }
            None
        }
    }
}

/// The artifact id of an output, from whichever action of the execution made it.
fn find_artifact(execution: &Execution, name: &str) -> Option<String> {
    execution
        .stages
        .iter()
        .flat_map(|s| s.actions.iter())
        .find_map(|a| a.output_artifacts.get(name).cloned())
}

/// The commit the execution's first source action took.
fn source_revision(loaded: &Loaded, execution: &Execution) -> Option<String> {
    for (s, stage) in loaded.pipeline.stages.iter().enumerate() {
        for (a, action) in stage.actions.iter().enumerate() {
            if matches!(action.kind, ActionKind::Source { .. }) {
                return execution
                    .stages
                    .get(s)?
                    .actions
                    .get(a)?
                    .output_variables
                    .get("CommitId")
                    .cloned();
            }
        }
    }
    None
}

fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Resolves a `#{...}` template against an execution (for the API).
pub fn resolve_in(text: &str, loaded: &Loaded, execution: &Execution) -> Result<String, String> {
    resolve(text, |r| lookup(r, loaded, execution, None)).map_err(|e| e.to_string())
}

/// A file and the files it includes, as `(name, text)` pairs for the
/// deployer, from the texts a client sent. An include the client did not
/// send is an error: the server never reads a path a request names.
pub fn project_files(
    file: &Path,
    text: &str,
    includes: &BTreeMap<String, String>,
) -> Result<Vec<(String, String)>, ControlError> {
    let name = file.display().to_string();
    let document =
        gantry_spec::parse_document(&name, text).map_err(ControlError::InvalidPipeline)?;
    let base = file.parent().unwrap_or(Path::new("."));
    let mut files = vec![(name.clone(), text.to_string())];
    for include in &document.includes {
        let Some(included) = includes.get(&include.value) else {
            return Err(ControlError::MissingInclude {
                file: name,
                include: include.value.clone(),
            });
        };
        files.push((
            base.join(&include.value).display().to_string(),
            included.clone(),
        ));
    }
    Ok(files)
}
