//! `gantry agent`: runs the `build`, `test` and `shell` actions that ask for
//! an agent (`agent: {labels}`) on this machine, for a gantry server.
//!
//! The agent long-polls the server for a job while it has a free slot
//! (`--concurrency`), and for each job: fetches the blobs of its input
//! artifacts into a content-addressed store of its own (each checked
//! against its digest, so a blob fetched once serves every later job),
//! materializes them as the server would (`src/`, `inputs/<name>/`), runs
//! the buildspec with the same runner as the server (`gantry-build`: host
//! or container mode, phases, finally, exported variables, reports,
//! masking), streams its log as it comes, uploads the blobs of its
//! outputs, and ends the job with their manifests. Every couple of seconds
//! it heartbeats the jobs it runs, and stops those the server names (the
//! execution was stopped, the attempt ended, the server no longer knows
//! them). A job's calls that answer 409 `agent.job_gone` end it the same
//! way: the attempt it belonged to is over.
//!
//! The protocol is in `gantry_api::agent`; the server's side in
//! `gantry_server::agents`.

mod client;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gantry_api::{AgentFinishRequest, AgentJob, AgentOutput};
use gantry_build::{BuildRequest, BuildStatus};
use gantry_store::{ArtifactEntry, ArtifactStore};
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

pub use client::{Client, ClientError};

/// The longest log line sent; the server keeps 64 KiB of a line too.
const MAX_LINE_BYTES: usize = 64 << 10;

/// The gantry version this agent runs, sent with every poll.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// How an agent runs.
#[derive(Debug, Clone)]
pub struct AgentOptions {
    /// The server's URL (`http://host:7700`).
    pub server: String,
    /// The agent's token (a user with the `agent` grant).
    pub token: String,
    /// The agent's name (default: the host name).
    pub name: String,
    pub labels: Vec<String>,
    /// How many jobs run at once.
    pub concurrency: usize,
    /// Where jobs run, the blob store and caches live.
    pub work_dir: PathBuf,
    /// A CA certificate (PEM) to trust for an https server.
    pub ca_cert: Option<PathBuf>,
    /// How long one poll waits for work.
    pub poll_wait: Duration,
}

/// Why the agent stopped.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("{0}")]
    Client(#[from] ClientError),
    #[error("cannot use the work dir {path}: {source}")]
    WorkDir {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the artifact store in the work dir: {0}")]
    Store(#[from] gantry_store::ArtifactError),
}

/// The jobs running now, each with what stops it.
type Running = Arc<Mutex<HashMap<String, CancellationToken>>>;

/// Runs the agent until `stop` is cancelled, or until the server refuses
/// it for good (a bad token, another version). Running jobs are stopped
/// and reported as such when the agent stops.
pub async fn run(options: AgentOptions, stop: CancellationToken) -> Result<(), AgentError> {
    let work = &options.work_dir;
    for dir in [work.join("jobs"), work.join("tmp"), work.join("cache")] {
        std::fs::create_dir_all(&dir).map_err(|source| AgentError::WorkDir {
            path: dir.display().to_string(),
            source,
        })?;
    }
    // Jobs left by an agent that was killed: nobody will report them.
    if let Ok(entries) = std::fs::read_dir(work.join("jobs")) {
        for entry in entries.flatten() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
    let store = ArtifactStore::open(work.join("store"))?;
    let client = Client::new(&options.server, &options.token, options.ca_cert.as_deref())?;
    let running: Running = Arc::default();
    let heartbeat_ms = Arc::new(std::sync::atomic::AtomicU64::new(2000));
    let beats = tokio::spawn(heartbeats(
        client.clone(),
        options.name.clone(),
        running.clone(),
        heartbeat_ms.clone(),
        stop.clone(),
    ));
    let slots = Arc::new(Semaphore::new(options.concurrency.max(1)));
    let mut tasks = tokio::task::JoinSet::new();
    let mut backoff = Duration::from_millis(250);
    let result = loop {
        let permit = tokio::select! {
            permit = slots.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break Ok(()),
            },
            () = stop.cancelled() => break Ok(()),
        };
        let answer = tokio::select! {
            answer = client.poll(&options.name, &options.labels, VERSION, options.poll_wait) => answer,
            () = stop.cancelled() => break Ok(()),
        };
        match answer {
            Ok(answer) => {
                backoff = Duration::from_millis(250);
                heartbeat_ms.store(
                    answer.heartbeat_ms.clamp(100, 60_000),
                    std::sync::atomic::Ordering::Relaxed,
                );
                let Some(job) = answer.job else { continue };
                let cancel = stop.child_token();
                lock(&running).insert(job.id.clone(), cancel.clone());
                let (client, store, running, work) = (
                    client.clone(),
                    store.clone(),
                    running.clone(),
                    options.work_dir.clone(),
                );
                tasks.spawn(async move {
                    let id = job.id.clone();
                    run_job(&client, &store, &work, job, cancel).await;
                    lock(&running).remove(&id);
                    drop(permit);
                });
            }
            Err(error) if error.is_fatal() => break Err(error.into()),
            Err(error) => {
                tracing::warn!(%error, "Polling the server failed; trying again.");
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {}
                    () = stop.cancelled() => break Ok(()),
                }
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
        }
        // Finished tasks are reaped as they end.
        while tasks.try_join_next().is_some() {}
    };
    for cancel in lock(&running).values() {
        cancel.cancel();
    }
    while tasks.join_next().await.is_some() {}
    beats.abort();
    result
}

fn lock(running: &Running) -> std::sync::MutexGuard<'_, HashMap<String, CancellationToken>> {
    running
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Tells the server every `heartbeat_ms` which jobs run, and stops those
/// it names.
async fn heartbeats(
    client: Client,
    name: String,
    running: Running,
    heartbeat_ms: Arc<std::sync::atomic::AtomicU64>,
    stop: CancellationToken,
) {
    loop {
        let every = Duration::from_millis(heartbeat_ms.load(std::sync::atomic::Ordering::Relaxed));
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            () = stop.cancelled() => return,
        }
        let jobs: Vec<String> = lock(&running).keys().cloned().collect();
        match client.heartbeat(&name, jobs).await {
            Ok(answer) => {
                let running = lock(&running);
                for id in answer.stop {
                    if let Some(cancel) = running.get(&id) {
                        tracing::info!(job = %id, "The server stops this job.");
                        cancel.cancel();
                    }
                }
            }
            Err(error) => tracing::warn!(%error, "A heartbeat failed."),
        }
    }
}

/// Runs one job to its end and reports it; a job the server gave up is
/// dropped quietly.
async fn run_job(
    client: &Client,
    store: &ArtifactStore,
    work: &Path,
    job: AgentJob,
    cancel: CancellationToken,
) {
    let dir = work.join("jobs").join(&job.id);
    let id = job.id.clone();
    tracing::info!(
        job = %id,
        execution = %job.execution_id,
        action = %format!("{}/{}", job.stage, job.action),
        "Running a job."
    );
    let finish = match run_build(client, store, work, &dir, job, &cancel).await {
        Ok(finish) => finish,
        Err(JobError::Gone) => {
            tracing::info!(job = %id, "The job is gone: its attempt ended.");
            let _ = tokio::fs::remove_dir_all(&dir).await;
            return;
        }
        Err(JobError::Failed(message)) => AgentFinishRequest {
            status: "FAULT".into(),
            error: Some(message),
            failed_phases: Vec::new(),
            exported_variables: Default::default(),
            reports: Vec::new(),
            outputs: Vec::new(),
        },
    };
    if let Err(error) = client.finish(&id, &finish).await {
        tracing::warn!(job = %id, %error, "Reporting the end of a job failed.");
    }
    let _ = tokio::fs::remove_dir_all(&dir).await;
}

/// Why a job did not come to a report of its own.
enum JobError {
    /// The server no longer knows the job.
    Gone,
    /// The agent could not run it: the build's `FAULT`.
    Failed(String),
}

impl From<ClientError> for JobError {
    fn from(error: ClientError) -> Self {
        if error.is_gone() {
            JobError::Gone
        } else {
            JobError::Failed(error.to_string())
        }
    }
}

async fn run_build(
    client: &Client,
    store: &ArtifactStore,
    work: &Path,
    dir: &Path,
    job: AgentJob,
    cancel: &CancellationToken,
) -> Result<AgentFinishRequest, JobError> {
    let failed = |what: &str, e: &dyn std::fmt::Display| JobError::Failed(format!("{what}: {e}"));
    tokio::fs::create_dir_all(dir)
        .await
        .map_err(|e| failed(&format!("cannot create {}", dir.display()), &e))?;
    let buildspec: gantry_spec::buildspec::Buildspec = serde_json::from_value(job.buildspec)
        .map_err(|e| failed("the job's buildspec does not read", &e))?;

    // Inputs, as the server lays them out: the first at src/, the others
    // at inputs/<name>/.
    let src = dir.join("src");
    let mut secondary = Vec::new();
    for (i, input) in job.inputs.iter().enumerate() {
        let dest = if i == 0 {
            src.clone()
        } else {
            dir.join("inputs").join(&input.name)
        };
        fetch_artifact(client, store, work, &job.id, &input.artifact).await?;
        let (store, artifact, at) = (store.clone(), input.artifact.clone(), dest.clone());
        tokio::task::spawn_blocking(move || store.materialize(&artifact, &at))
            .await
            .map_err(|e| failed("materializing panicked", &e))?
            .map_err(|e| failed(&format!("input artifact {}", input.name), &e))?;
        if i > 0 {
            secondary.push((input.name.clone(), dest));
        }
    }
    tokio::fs::create_dir_all(&src)
        .await
        .map_err(|e| failed(&format!("cannot create {}", src.display()), &e))?;

    let mut env: Vec<(String, String)> = job.env.into_iter().map(|v| (v.name, v.value)).collect();
    let secrets: Vec<(String, String)> =
        job.secrets.into_iter().map(|v| (v.name, v.value)).collect();
    let cache = work
        .join("cache")
        .join(gantry_build::path_component(&job.pipeline));
    env.push(("GANTRY_CACHE_DIR".into(), cache.display().to_string()));
    env.push(("GANTRY_AGENT_WORK_DIR".into(), work.display().to_string()));
    if let Some(login) = &job.registry {
        let config = gantry_build::docker_config_json(&login.registry, &login.token);
        write_private(&dir.join("config.json"), config.as_bytes())
            .map_err(|e| failed("cannot write the docker config", &e))?;
        env.push(("DOCKER_CONFIG".into(), dir.display().to_string()));
    }

    // The log goes out as it comes: each send takes what has queued.
    let (lines, queued) = mpsc::unbounded_channel::<String>();
    let gone = CancellationToken::new();
    let shipper = tokio::spawn(ship_log(
        client.clone(),
        job.id.clone(),
        queued,
        gone.clone(),
    ));
    let build_cancel = cancel.child_token();
    let stop_on_gone = {
        let (gone, build_cancel) = (gone.clone(), build_cancel.clone());
        tokio::spawn(async move {
            gone.cancelled().await;
            build_cancel.cancel();
        })
    };
    let sink = move |line: &str| {
        let _ = lines.send(line.to_string());
    };
    let out_dir = dir.join("out");
    let request = BuildRequest {
        buildspec,
        source_dir: src,
        secondary_sources: secondary,
        env,
        secrets,
        build_id: job.build_id,
        build_number: job.build_number,
        initiator: job.initiator,
        resolved_source_version: job.source_version,
        timeout: Duration::from_millis(job.timeout_ms),
        out_dir,
        scratch_dir: Some(dir.to_path_buf()),
        cancel: build_cancel,
        container: job.image.map(gantry_build::ContainerSpec::new),
        read_outside_source: false,
        cache_dir: Some(gantry_build::action_cache_dir(
            &cache,
            &job.stage,
            &job.action,
        )),
    };
    let outcome = gantry_build::run(request, &sink).await;
    drop(sink);
    // Every line is sent before the end is.
    let _ = shipper.await;
    stop_on_gone.abort();
    if gone.is_cancelled() {
        return Err(JobError::Gone);
    }
    let outcome = outcome.map_err(|e| JobError::Failed(e.to_string()))?;

    let mut outputs = Vec::new();
    if outcome.status == BuildStatus::Succeeded {
        for artifact in &outcome.artifacts {
            let (local, at) = (store.clone(), artifact.dir.clone());
            let made = tokio::task::spawn_blocking(move || local.import_dir(&at))
                .await
                .map_err(|e| failed("collecting an artifact panicked", &e))?
                .map_err(|e| failed("output artifact", &e))?;
            let mut sent = std::collections::HashSet::new();
            for entry in &made.entries {
                if let ArtifactEntry::File { digest, .. } = entry
                    && sent.insert(digest.clone())
                {
                    let file = store
                        .open_blob(digest)
                        .map_err(|e| failed("output artifact", &e))?;
                    client.put_blob(&job.id, digest, file).await?;
                }
            }
            outputs.push(AgentOutput {
                identifier: artifact.identifier.clone(),
                entries: made
                    .entries
                    .iter()
                    .map(|e| serde_json::to_value(e).unwrap_or_default())
                    .collect(),
            });
        }
    }
    Ok(AgentFinishRequest {
        status: outcome.status.as_str().to_string(),
        failed_phases: outcome.failed_phases(),
        error: outcome.error,
        exported_variables: outcome.exported_variables,
        reports: outcome
            .reports
            .iter()
            .map(gantry_build::TestReport::to_json)
            .collect(),
        outputs,
    })
}

/// Sends the log's lines in batches of what has queued, until the build's
/// side closes; cancels `gone` when the server says the job is gone.
async fn ship_log(
    client: Client,
    job: String,
    mut queued: mpsc::UnboundedReceiver<String>,
    gone: CancellationToken,
) {
    // Well under the server's 2 MiB for a JSON body, whatever the lines.
    const BATCH_LINES: usize = 1000;
    const BATCH_BYTES: usize = 512 << 10;
    let cap = |mut line: String| {
        if line.len() > MAX_LINE_BYTES {
            let mut end = MAX_LINE_BYTES;
            while !line.is_char_boundary(end) {
                end -= 1;
            }
            line.truncate(end);
        }
        line
    };
    while let Some(first) = queued.recv().await {
        let mut batch = vec![cap(first)];
        let mut bytes = batch[0].len();
        while batch.len() < BATCH_LINES && bytes < BATCH_BYTES {
            match queued.try_recv() {
                Ok(line) => {
                    let line = cap(line);
                    bytes += line.len();
                    batch.push(line);
                }
                Err(_) => break,
            }
        }
        if gone.is_cancelled() {
            continue;
        }
        let mut tries = 0;
        loop {
            match client.log(&job, batch.clone()).await {
                Ok(()) => break,
                Err(error) if error.is_gone() => {
                    gone.cancel();
                    break;
                }
                Err(error) => {
                    tries += 1;
                    if tries >= 5 {
                        tracing::warn!(%job, %error, "Log lines were lost.");
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(200 * tries)).await;
                }
            }
        }
    }
}

/// Brings an artifact's manifest and every file blob it lacks into the
/// local store, each checked against its digest.
async fn fetch_artifact(
    client: &Client,
    store: &ArtifactStore,
    work: &Path,
    job: &str,
    artifact: &str,
) -> Result<(), JobError> {
    if !store.blob_exists(artifact) {
        client
            .fetch_blob(job, artifact, store, &work.join("tmp"))
            .await?;
    }
    let manifest = store
        .artifact(artifact)
        .map_err(|e| JobError::Failed(format!("input artifact {artifact}: {e}")))?;
    for entry in manifest.entries {
        if let ArtifactEntry::File { digest, .. } = entry
            && !store.blob_exists(&digest)
        {
            client
                .fetch_blob(job, &digest, store, &work.join("tmp"))
                .await?;
        }
    }
    Ok(())
}

/// Writes a file only its owner reads (0600), created fresh.
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(bytes)
}
