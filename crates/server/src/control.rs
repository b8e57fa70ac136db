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
//! This file holds the plane's state, `submit` and the commands, and what
//! the API asks of it. The rest has one module per concept: `replay`
//! rebuilds the state from the log at start-up and recovers interrupted
//! work; `attempts` runs one attempt of an action; `resolution` tells what
//! `#{...}` references, input artifacts and included files stand for;
//! `approvals` makes an approval wait, times it out and decides it. An
//! attempt is named everywhere by the engine's [`ActionRef`].

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use gantry_clock::now_ms;
use gantry_engine::{ActionRef, ActionStatus, Command, Engine, Event, Execution, Trigger};
use gantry_params::ParamStore;
use gantry_spec::pipeline::ActionKind;
use gantry_store::{ApprovalRecord, ArtifactStore, ExecutionRow, LogLine, Store};
use tokio::sync::{Mutex, watch};
use tokio::task::AbortHandle;
use tokio_util::sync::CancellationToken;

use crate::actions::{BoxFuture, Runners};
use crate::definition::{Definition, Loaded, plan};
use crate::error::ControlError;
use crate::logs::LogWriter;
use crate::mirror::Mirrors;
use crate::notify::{ExecutionFinished, ExecutionStarted, Notifier, NotifyOptions, Subject};
use crate::parameters::KeySource;

mod approvals;
mod attempts;
mod replay;
mod resolution;

pub use approvals::{ApprovalBinding, ApprovalView, Decision, DecisionOutcome};
pub use resolution::{project_files, resolve_in};

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
    /// The embedded registry itself, once it is open (garbage collection).
    embedded_registry: std::sync::OnceLock<gantry_registry::Registry>,
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
    /// Sends what happens to executions where their pipelines ask.
    notifier: Notifier,
    /// The armed triggers of registered pipelines (see `crate::triggers`).
    triggers: crate::triggers::Triggers,
    /// The mirrors of git repositories (source actions).
    mirrors: Mirrors,
    /// What `GET /metrics` reports besides the load balancers.
    metrics: crate::metrics::Metrics,
    /// The jobs waiting for build agents, and the agents heard from.
    agents: crate::agents::Agents,
}

/// Which executions [`ControlPlane::executions_page`] lists; `None` is any.
#[derive(Debug, Default, Clone, Copy)]
pub struct ExecutionFilter<'a> {
    pub pipeline: Option<&'a str>,
    /// The execution's status, as `ExecutionStatus::as_str` spells it.
    pub status: Option<&'a str>,
    /// How it was started, as `TriggerType::as_str` spells it.
    pub trigger: Option<&'a str>,
    /// The start of a commit one of its source actions is pinned to or
    /// took (a first-stage action's `CommitId`, as the execution view's
    /// `source_revisions`).
    pub commit: Option<&'a str>,
}

impl ExecutionFilter<'_> {
    fn matches(&self, execution: &Execution) -> bool {
        self.status.is_none_or(|s| execution.status.as_str() == s)
            && self.trigger.is_none_or(|t| {
                execution
                    .trigger
                    .as_ref()
                    .is_some_and(|trigger| trigger.kind.as_str() == t)
            })
            && self.commit.is_none_or(|c| {
                let took = execution.stages.first().into_iter().flat_map(|stage| {
                    stage
                        .actions
                        .iter()
                        .filter_map(|a| a.output_variables.get("CommitId"))
                });
                execution
                    .source_revisions
                    .values()
                    .chain(took)
                    .any(|revision| revision.starts_with(c))
            })
    }
}

#[derive(Default)]
struct State {
    engines: HashMap<String, Engine>,
    pipeline_of: HashMap<String, String>,
    loaded: HashMap<String, Arc<Loaded>>,
    /// The attempts that run, to cancel them. Keyed by attempt, so the late
    /// end of an abandoned attempt never drops the entry of its retry.
    running: HashMap<ActionRef, CancellationToken>,
    /// The timeout timers of the approvals that wait, by attempt.
    timers: HashMap<ActionRef, AbortHandle>,
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
        Self::open_in(data_dir, None, runners).await
    }

    /// Opens the control plane with its database at `database`
    /// (`postgres://…`), or, with `None`, in the data dir's SQLite file.
    /// The data dir keeps the rest either way: artifacts, registry blobs,
    /// the master key, work dirs.
    pub async fn open_in(
        data_dir: &Path,
        database: Option<&str>,
        runners: Runners,
    ) -> Result<ControlPlane, ControlError> {
        let store = match database {
            Some(url) => Some(
                Store::connect(
                    gantry_db::Db::connect(url)
                        .await
                        .map_err(gantry_store::StoreError::from)?,
                )
                .await?,
            ),
            None => None,
        };
        Self::open_at(data_dir, store, None, runners).await
    }

    /// Opens the control plane on a store already open (`None`: the data
    /// dir's SQLite file), with its blobs in `blob_dir` (`None`: the data
    /// dir's `artifacts/`; several servers of one database share one).
    pub async fn open_at(
        data_dir: &Path,
        store: Option<Store>,
        blob_dir: Option<&Path>,
        runners: Runners,
    ) -> Result<ControlPlane, ControlError> {
        std::fs::create_dir_all(data_dir).map_err(|e| ControlError::io(data_dir, e))?;
        let data_dir = data_dir
            .canonicalize()
            .map_err(|e| ControlError::io(data_dir, e))?;
        let store = match store {
            Some(store) => store,
            None => Store::open(&data_dir.join("gantry.db")).await?,
        };
        let (params, key_source) = crate::parameters::open(&store, &data_dir).await?;
        let auth = gantry_auth::Auth::open(store.db().clone()).await?;
        let artifacts = ArtifactStore::open(
            blob_dir.map_or_else(|| data_dir.join("artifacts"), Path::to_path_buf),
        )?;
        // The log is read before the earlier server's processes are killed:
        // were that server still alive (a paused leader, a test's plane), it
        // could otherwise record their deaths as ordinary failures first,
        // and the interrupted executions would not end here (nor start the
        // pipelines waiting for them).
        let state = State::replay(&store).await?;
        replay::clear_interrupted_work(&data_dir).await;
        let logs = LogWriter::start(store.clone());
        let notifier = Notifier::start(params.clone(), logs.clone(), NotifyOptions::default())?;
        let (changes, _) = watch::channel(0);
        let images = gantry_images::RegistryClient::new(gantry_images::ClientOptions::default())
            .map_err(|e| ControlError::Internal(format!("registry client: {e}")))?;
        let adopt_docker = gantry_deploy::uses_docker(&store).await.unwrap_or(true);
        let owner = match store.db().backend() {
            gantry_db::Backend::Postgres => format!(
                "gantry-cluster:{}",
                store
                    .cluster_id(&uuid::Uuid::now_v7().simple().to_string())
                    .await?
            ),
            _ => data_dir.display().to_string(),
        };
        let runtimes = crate::runtimes::open(&data_dir, &images, adopt_docker, owner).await;
        let deployer = gantry_deploy::Deployer::open(
            store.clone(),
            params.clone(),
            images.clone(),
            runtimes,
            Some(data_dir.join("access-logs")),
        )
        .await?;
        let mirrors = Mirrors::new(&data_dir);
        let metrics = crate::metrics::Metrics::default();
        deployer.on_finished({
            let metrics = metrics.clone();
            move |finished| metrics.deployment_finished(finished)
        });
        let plane = ControlPlane {
            inner: Arc::new(Inner {
                shutdown: tokio::sync::Notify::new(),
                deployer,
                data_dir,
                registry: std::sync::OnceLock::new(),
                embedded_registry: std::sync::OnceLock::new(),
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
                notifier,
                triggers: crate::triggers::Triggers::default(),
                mirrors,
                metrics,
                agents: crate::agents::Agents::default(),
            }),
        };
        plane.recover().await?;
        Ok(plane)
    }

    pub fn data_dir(&self) -> &Path {
        &self.inner.data_dir
    }

    pub(crate) fn metrics(&self) -> &crate::metrics::Metrics {
        &self.inner.metrics
    }

    /// The metrics in the Prometheus text format, load balancers included.
    pub async fn render_metrics(&self) -> String {
        let lb = self.inner.deployer.load_balancer_stats().await;
        self.inner.metrics.render(lb)
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    pub fn artifacts(&self) -> &ArtifactStore {
        &self.inner.artifacts
    }

    /// The jobs waiting for build agents, and the agents heard from.
    pub fn agents(&self) -> &crate::agents::Agents {
        &self.inner.agents
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

    /// The armed triggers of registered pipelines.
    pub(crate) fn triggers(&self) -> &crate::triggers::Triggers {
        &self.inner.triggers
    }

    /// The mirrors of git repositories.
    pub fn mirrors(&self) -> &Mirrors {
        &self.inner.mirrors
    }

    /// Where executions' notifications go out.
    pub fn notifier(&self) -> &Notifier {
        &self.inner.notifier
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
            if !gantry_spec::document::is_assembled(&document) {
                return Ok(Vec::new());
            }
        }
        Ok(self.inner.deployer.apply(files).await?)
    }

    /// Records where the embedded registry listens (`host:port`).
    pub fn set_registry(&self, addr: String) {
        // Short references given to deploys (`shop/web:1`) are in it.
        self.inner.deployer.set_local_registry(addr.clone());
        let _ = self.inner.registry.set(addr);
    }

    pub fn registry(&self) -> Option<&str> {
        self.inner.registry.get().map(String::as_str)
    }

    /// Hands the control plane the embedded registry it serves, for
    /// `gantry registry gc`.
    pub fn set_embedded_registry(&self, registry: gantry_registry::Registry) {
        let _ = self.inner.embedded_registry.set(registry);
    }

    /// The embedded registry, once the server opened it.
    pub fn embedded_registry(&self) -> Option<&gantry_registry::Registry> {
        self.inner.embedded_registry.get()
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
            // A malformed key is the caller's mistake (400), not the
            // server's; the error names no part of the key.
            (Some(hex), _) => gantry_params::MasterKey::from_hex(hex)
                .map_err(|e| ControlError::BadRequest(format!("new_key: {e}")))?,
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

    /// Starts an execution of a pipeline definition, by a person.
    /// `overrides` replace pipeline variables' defaults (`--var NAME=VALUE`);
    /// naming a variable the pipeline does not declare is an error. The
    /// execution's trigger is `manual`, by `started_by`; its source actions
    /// take their branch heads.
    pub async fn start_execution(
        &self,
        file: PathBuf,
        text: String,
        includes: BTreeMap<String, String>,
        overrides: BTreeMap<String, String>,
        started_by: Option<String>,
    ) -> Result<String, ControlError> {
        let trigger = Trigger::manual(started_by.clone());
        let start = Start {
            file,
            text,
            includes,
            overrides,
            started_by,
            trigger,
            pins: BTreeMap::new(),
        };
        self.start(start).await
    }

    /// Starts an execution that something other than a person asked for
    /// (a webhook, a poll, a schedule, another pipeline): `trigger` says
    /// what, and `pins` (source action name → commit) the commit each
    /// named source action must take; a source action without a pin takes
    /// its branch head when it runs. A pin must name a source action of the
    /// first stage and be a commit id (4 to 64 hexadecimal digits).
    pub async fn start_triggered(
        &self,
        file: PathBuf,
        text: String,
        includes: BTreeMap<String, String>,
        trigger: Trigger,
        pins: BTreeMap<String, String>,
    ) -> Result<String, ControlError> {
        let start = Start {
            file,
            text,
            includes,
            overrides: BTreeMap::new(),
            started_by: None,
            trigger,
            pins,
        };
        self.start(start).await
    }

    async fn start(&self, start: Start) -> Result<String, ControlError> {
        let Start {
            file,
            text,
            includes,
            overrides,
            started_by,
            trigger,
            pins,
        } = start;
        let pipeline = gantry_spec::pipeline::parse_pipeline(&file.display().to_string(), &text)
            .map_err(ControlError::InvalidPipeline)?;
        let mut variables = pipeline.variables.clone();
        for (name, value) in overrides {
            if !variables.contains_key(&name) {
                return Err(ControlError::UnknownVariable(name));
            }
            variables.insert(name, value);
        }
        check_pins(&pipeline, &pins)?;
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
            trigger: Some(trigger),
            source_revisions: pins,
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
        let requested = matches!(event, Event::ExecutionRequested { .. });
        let ended = match &event {
            Event::ActionSucceeded { stage, action, .. }
            | Event::ActionFailed { stage, action, .. } => Some((*stage, *action)),
            _ => None,
        };
        let waiting = match &event {
            Event::ActionWaiting {
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
        let engine = state.engines.entry(pipeline.clone()).or_default();
        let commands = engine.apply(event)?;
        state.pipeline_of.insert(id.clone(), pipeline.clone());
        if requested {
            // Under the lock, so it is queued before the execution's end.
            let subject = state.subject(&pipeline, &id);
            self.inner.notifier.emit(&subject, &ExecutionStarted);
        }
        count(
            &self.inner.metrics,
            &state,
            &pipeline,
            &id,
            requested,
            ended,
            &commands,
        );
        let rows = changed_rows(&mut state, &pipeline, &id);
        // Queued under the lock, so the log holds events in the engine's
        // order, with the lines the action logged before it; written after
        // the lock is released, so events that arrive meanwhile share the
        // transaction. The commands run before the event is durable: a
        // crash in between leaves the event's action to be recovered as
        // interrupted and what the commands started to be reaped as
        // orphans, as for a crash a moment earlier.
        let committed = self
            .inner
            .logs
            .commit(gantry_store::NewEvent {
                pipeline,
                execution_id: id.clone(),
                at,
                body,
                states: rows,
            })
            .await?;
        for command in commands {
            self.execute(&mut state, command);
        }
        drop(state);
        committed.written().await?;
        if let Some(approval) = waiting {
            self.arm_approval_timer(&approval).await;
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
                let attempt = ActionRef {
                    id,
                    stage,
                    action,
                    attempt,
                };
                let plane = self.clone();
                let Some(loaded) = state.loaded.get(&attempt.id).cloned() else {
                    tokio::spawn(async move {
                        let error = "the pipeline definition of this execution is missing";
                        let _ = plane.submit(attempt.failed(error, now_ms())).await;
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
                if is_approval {
                    tokio::spawn(async move { plane.begin_approval(attempt).await });
                } else {
                    let cancel = CancellationToken::new();
                    state.running.insert(attempt.clone(), cancel.clone());
                    tokio::spawn(async move { plane.run_action(attempt, cancel).await });
                }
            }
            Command::CancelAction {
                id,
                stage,
                action,
                attempt,
            } => {
                let attempt = ActionRef {
                    id,
                    stage,
                    action,
                    attempt,
                };
                if let Some(cancel) = state.running.remove(&attempt) {
                    cancel.cancel();
                }
                if let Some(timer) = state.timers.remove(&attempt) {
                    timer.abort();
                }
            }
            Command::ExecutionFinished { id, status } => {
                if let Some(pipeline) = state.pipeline_of.get(&id) {
                    self.trigger_downstream(pipeline, &id, status);
                }
                let pipeline = state.pipeline_of.get(&id).cloned().unwrap_or_default();
                let subject = state.subject(&pipeline, &id);
                self.inner
                    .notifier
                    .emit(&subject, &ExecutionFinished { status });
            }
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
        let definition = replay::parse_definition(id, &text)?;
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
        let filter = ExecutionFilter {
            pipeline,
            ..ExecutionFilter::default()
        };
        self.executions_page(&filter, 0, limit)
            .await
            .into_iter()
            .map(|(execution, _)| execution)
            .collect()
    }

    /// The executions `filter` matches, newest first, after skipping
    /// `offset` of them, at most `limit`. Only those are copied: the rest
    /// are compared in place, and only the first `offset + limit` sorted.
    /// Each comes with its definition when that is loaded.
    pub async fn executions_page(
        &self,
        filter: &ExecutionFilter<'_>,
        offset: usize,
        limit: usize,
    ) -> Vec<(Execution, Option<Arc<Loaded>>)> {
        let state = self.inner.state.lock().await;
        let mut matching: Vec<&Execution> = state
            .engines
            .iter()
            .filter(|(name, _)| filter.pipeline.is_none_or(|p| p == name.as_str()))
            .flat_map(|(_, engine)| engine.executions())
            .filter(|execution| filter.matches(execution))
            .collect();
        let newest_first = |a: &&Execution, b: &&Execution| {
            b.started_at
                .cmp(&a.started_at)
                .then_with(|| b.id.cmp(&a.id))
        };
        let wanted = offset.saturating_add(limit);
        if wanted == 0 {
            return Vec::new();
        }
        if wanted < matching.len() {
            matching.select_nth_unstable_by(wanted - 1, newest_first);
            matching.truncate(wanted);
        }
        matching.sort_unstable_by(newest_first);
        matching
            .into_iter()
            .skip(offset)
            .map(|execution| {
                let loaded = state.loaded.get(&execution.id).cloned();
                (execution.clone(), loaded)
            })
            .collect()
    }

    /// Every pipeline with executions: its name, how many it has, and its
    /// newest (the first of [`ControlPlane::executions`] for it), by name.
    pub async fn newest_executions(&self) -> Vec<(String, usize, Execution)> {
        let state = self.inner.state.lock().await;
        let mut out: Vec<(String, usize, Execution)> = state
            .engines
            .iter()
            .filter_map(|(name, engine)| {
                let newest = engine.executions().max_by(|a, b| {
                    a.started_at
                        .cmp(&b.started_at)
                        .then_with(|| a.id.cmp(&b.id))
                })?;
                Some((name.clone(), engine.executions().len(), newest.clone()))
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// An execution's log lines after `after`, at most `limit`. Lines sent
    /// before the call are written first, so whoever saw an action end (its
    /// state changes before its lines are in the store) reads all of them.
    pub async fn logs(
        &self,
        id: &str,
        stage_action: Option<(&str, &str)>,
        after: i64,
        limit: i64,
    ) -> Result<Vec<LogLine>, ControlError> {
        self.inner.logs.flush().await;
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

    /// How many clients follow executions right now (long polls of
    /// `/api/v1/changes` in flight): a background server does not exit
    /// idle while someone watches.
    pub fn followers(&self) -> usize {
        self.inner.changes.receiver_count()
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

/// What starting an execution takes (see `ControlPlane::start_execution`
/// and `ControlPlane::start_triggered`).
struct Start {
    file: PathBuf,
    text: String,
    includes: BTreeMap<String, String>,
    overrides: BTreeMap<String, String>,
    started_by: Option<String>,
    trigger: Trigger,
    pins: BTreeMap<String, String>,
}

/// Refuses pins that name no source action of the first stage, or that are
/// not commit ids.
/// Counts in the metrics what an event just applied did: an execution
/// requested, an action ended (`ended`), and what the commands start or
/// finish (possibly of other executions of the pipeline: one leaving a
/// stage lets a waiting one in).
fn count(
    metrics: &crate::metrics::Metrics,
    state: &State,
    pipeline: &str,
    id: &str,
    requested: bool,
    ended: Option<(usize, usize)>,
    commands: &[Command],
) {
    let Some(engine) = state.engines.get(pipeline) else {
        return;
    };
    if requested {
        metrics.execution_started(pipeline);
    }
    if let Some((stage, action)) = ended
        && let Some(execution) = engine.execution(id)
    {
        let action_type = state
            .loaded
            .get(id)
            .and_then(|l| l.pipeline.stages.get(stage))
            .and_then(|s| s.actions.get(action))
            .map_or("unknown", |a| a.kind.type_name());
        metrics.action_finished(execution, stage, action, action_type);
    }
    for command in commands {
        match command {
            Command::StartAction {
                id, stage, action, ..
            } => {
                if let Some(execution) = engine.execution(id) {
                    metrics.action_started(execution, *stage, *action);
                }
            }
            Command::ExecutionFinished { id, .. } => {
                if let Some(execution) = engine.execution(id) {
                    metrics.execution_finished(execution);
                }
            }
            Command::CancelAction { .. } => {}
        }
    }
}

fn check_pins(
    pipeline: &gantry_spec::pipeline::Pipeline,
    pins: &BTreeMap<String, String>,
) -> Result<(), ControlError> {
    for (action, commit) in pins {
        let is_source = pipeline.stages.first().is_some_and(|stage| {
            stage
                .actions
                .iter()
                .any(|a| a.name.as_str() == action && matches!(a.kind, ActionKind::Source { .. }))
        });
        if !is_source {
            return Err(ControlError::BadRequest(format!(
                "{action:?} is not a source action of the first stage: it cannot be pinned"
            )));
        }
        crate::mirror::check_commit(commit)
            .map_err(|e| ControlError::BadRequest(format!("the pin of {action}: {e}")))?;
    }
    Ok(())
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

impl State {
    /// An execution, for its notifications.
    fn subject(&self, pipeline: &str, id: &str) -> Subject {
        let execution = self.engines.get(pipeline).and_then(|e| e.execution(id));
        match (self.loaded.get(id), execution) {
            (Some(loaded), Some(execution)) => Subject::of(loaded, execution),
            _ => Subject::bare(pipeline, id),
        }
    }
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
