//! What each action type does when the engine starts it.
//!
//! The engine knows only that an action started and how it ended. The
//! control plane resolves the action's `#{...}` references, prepares a work
//! directory, and hands an [`ActionContext`] to the [`ActionRunner`]
//! registered for its type. New types (`deploy`, `promote`, `image`) plug in
//! by registering a runner; neither the engine nor the control plane changes.
//! Approvals are not runners: they wait for a person, which the control plane
//! handles without holding a task.

pub(crate) mod build;
mod deploy;
mod image;
mod promote;
mod source;

use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;

use gantry_params::ParamStore;
use gantry_spec::pipeline::{Action, ArtifactName};
use gantry_store::{ArtifactStore, Store};
use tokio_util::sync::CancellationToken;

pub use build::BuildRunner;
pub use deploy::DeployRunner;
pub use image::ImageRunner;
pub use promote::PromoteRunner;

/// Where registry credentials live in the parameter store:
/// `/gantry/registries/<host>/username` and `…/password`, with `:` in the
/// host written as `_` (`127.0.0.1_5000`), since parameter names have no `:`.
pub const REGISTRY_CREDENTIALS_PATH: &str = "/gantry/registries";

impl ActionContext {
    /// A registry client with the credentials kept in the parameter store
    /// (read now, so a rotated password applies to the next action).
    pub async fn registry_client(&self) -> Result<gantry_images::RegistryClient, ActionError> {
        let path = gantry_params::ParamPath::parse(REGISTRY_CREDENTIALS_PATH)
            .map_err(|e| ActionError::new(e.to_string()))?;
        let params = self
            .params
            .list(&path, true, true)
            .await
            .map_err(|e| ActionError::new(format!("registry credentials: {e}")))?;
        if params.is_empty() {
            // The shared client already holds the server's own credentials
            // for the embedded registry.
            return Ok(self.images.clone());
        }
        let mut found: BTreeMap<String, (Option<String>, Option<String>)> = BTreeMap::new();
        for p in &params {
            let name = p.name.to_string();
            let rest = name
                .trim_start_matches(REGISTRY_CREDENTIALS_PATH)
                .trim_start_matches('/');
            let Some((host, key)) = rest.rsplit_once('/') else {
                continue;
            };
            let entry = found.entry(host.replace('_', ":")).or_default();
            let value = p.value.expose().map(str::to_string);
            match key {
                "username" => entry.0 = value,
                "password" => entry.1 = value,
                _ => {}
            }
        }
        let mut options = gantry_images::ClientOptions::default();
        if let Some(login) = &self.registry_login {
            options
                .credentials
                .insert(login.registry.clone(), login.credentials());
        }
        for (host, (user, password)) in found {
            if let (Some(username), Some(password)) = (user, password) {
                options
                    .credentials
                    .insert(host, gantry_images::Credentials { username, password });
            }
        }
        gantry_images::RegistryClient::new(options)
            .map_err(|e| ActionError::new(format!("registry client: {e}")))
    }

    /// Records a detail of this attempt (shown with the action by the API).
    pub async fn record_detail(&self, kind: &str, value: &impl serde::Serialize) {
        let detail = gantry_store::ActionDetail {
            execution_id: self.execution_id.clone(),
            stage: self.stage.clone(),
            action: self.action.name.to_string(),
            attempt: i64::from(self.attempt),
            kind: kind.to_string(),
            body: serde_json::to_string(value).unwrap_or_default(),
        };
        if let Err(error) = self.store.record_action_detail(&detail).await {
            tracing::error!(%error, kind, "Recording an action detail failed.");
        }
    }

    /// Records the parameters this attempt resolved, and logs each one
    /// (name and version, never the value).
    pub async fn record_parameters(&self, records: &[crate::parameters::ParamRecord]) {
        if records.is_empty() {
            return;
        }
        for r in records {
            self.log.line(&format!(
                "Parameter {} = {} (version {}{}) from {}",
                r.var,
                r.name,
                r.version,
                if r.secure { ", SecureString" } else { "" },
                r.source
            ));
        }
        self.record_detail("parameters", &records).await;
    }
}
pub use source::SourceRunner;

use crate::logs::ActionLog;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Everything an action needs to run, with its references already resolved.
pub struct ActionContext {
    pub execution_id: String,
    pub pipeline: String,
    pub stage: String,
    /// The action as declared, every `#{...}` resolved.
    pub action: Action,
    pub attempt: u32,
    /// A fresh directory owned by this attempt; removed afterwards.
    pub work_dir: PathBuf,
    /// The directory of the pipeline file (paths in it are relative to it).
    pub base_dir: PathBuf,
    /// The input artifacts, in declared order, with their artifact ids.
    pub inputs: Vec<(ArtifactName, String)>,
    /// The commit the execution's source action took, if any.
    pub source_revision: Option<String>,
    pub artifacts: ArtifactStore,
    /// The embedded registry (`host:port`), the default for images.
    pub registry: Option<String>,
    /// The client for every registry.
    pub images: gantry_images::RegistryClient,
    /// Environments and services, for `deploy` actions.
    pub deployer: Option<gantry_deploy::Deployer>,
    /// The parameter store, for `env.parameter-store` and `{{param:…}}`.
    pub params: Arc<ParamStore>,
    /// The database, to record which parameters the attempt used.
    pub store: Store,
    pub log: ActionLog,
    pub cancel: CancellationToken,
    /// The data dir, as the value of `GANTRY_OWNER` for the action's
    /// processes (see [`crate::orphans`]).
    pub owner: String,
    /// A directory kept between runs of the pipeline (`GANTRY_CACHE_DIR`).
    pub cache_dir: PathBuf,
    /// The action's timeout (its own or its type's default).
    pub timeout: std::time::Duration,
    /// This attempt's credentials for the embedded registry.
    pub registry_login: Option<RegistryLogin>,
    /// The mirrors of git repositories, for `source` actions.
    pub mirrors: crate::mirror::Mirrors,
    /// What started the execution (`None` for executions older than
    /// triggers).
    pub trigger: Option<gantry_engine::Trigger>,
    /// The commit the execution pins this action to (source actions).
    pub pinned_commit: Option<String>,
    /// Notifications of the execution (deploy actions tell of failed and
    /// rolled-back deployments).
    pub notices: crate::notify::Notices,
    /// The queue of build agents (`agent:` actions run there).
    pub agents: crate::agents::Agents,
}

/// A registry-only token for the embedded registry, issued for one action
/// attempt and forgotten when it ends (see `ControlPlane::run_action`).
#[derive(Clone)]
pub struct RegistryLogin {
    /// The embedded registry's `host:port`.
    pub registry: String,
    pub token: gantry_auth::Secret,
}

impl RegistryLogin {
    pub fn credentials(&self) -> gantry_images::Credentials {
        gantry_images::Credentials {
            username: crate::REGISTRY_USER.to_string(),
            password: self.token.expose().to_string(),
        }
    }

    /// Writes a docker config holding this login (`config.json`, 0600)
    /// into `work_dir`, which then serves as `DOCKER_CONFIG` for `docker
    /// push` in builds (a directory of its own would cost a `mkdir` and an
    /// `rmdir` per attempt); returns the dir.
    pub fn docker_config(&self, work_dir: &std::path::Path) -> Result<PathBuf, ActionError> {
        crate::write_private(
            &work_dir.join("config.json"),
            crate::docker_config_json(&self.registry, self.token.expose()).as_bytes(),
        )
        .map_err(|e| ActionError::new(e.to_string()))?;
        Ok(work_dir.to_path_buf())
    }
}

/// Materializes the inputs into the work dir: the first at `src/` (the
/// working directory), the others at `inputs/<name>/`. Returns `src/`.
pub async fn materialize_inputs(ctx: &ActionContext) -> Result<PathBuf, ActionError> {
    let src = ctx.work_dir.join("src");
    for (i, (name, artifact)) in ctx.inputs.iter().enumerate() {
        let dest = if i == 0 {
            src.clone()
        } else {
            ctx.work_dir.join("inputs").join(name.as_str())
        };
        let store = ctx.artifacts.clone();
        let id = artifact.clone();
        tokio::task::spawn_blocking(move || store.materialize(&id, &dest))
            .await
            .map_err(|e| ActionError::new(format!("materializing {name} panicked: {e}")))?
            .map_err(|e| ActionError::new(format!("input artifact {name}: {e}")))?;
    }
    tokio::fs::create_dir_all(&src)
        .await
        .map_err(|e| ActionError::new(format!("cannot create {}: {e}", src.display())))?;
    Ok(src)
}

/// The secondary inputs' directories, as [`materialize_inputs`] placed them.
pub fn secondary_inputs(ctx: &ActionContext) -> Vec<(String, PathBuf)> {
    ctx.inputs
        .iter()
        .skip(1)
        .map(|(name, _)| {
            (
                name.to_string(),
                ctx.work_dir.join("inputs").join(name.as_str()),
            )
        })
        .collect()
}

/// Reads one file of the first input artifact without materializing it.
pub async fn read_input_file(ctx: &ActionContext, file: &str) -> Result<Vec<u8>, ActionError> {
    let (name, artifact) = ctx
        .inputs
        .first()
        .ok_or_else(|| ActionError::new("the action has no input artifact"))?;
    let store = ctx.artifacts.clone();
    let (id, path) = (artifact.clone(), file.to_string());
    tokio::task::spawn_blocking(move || store.read_file(&id, &path))
        .await
        .map_err(|e| ActionError::new(format!("reading {name} panicked: {e}")))?
        .map_err(|e| ActionError::new(format!("input artifact {name}: {e}")))?
        .ok_or_else(|| ActionError::new(format!("input artifact {name} holds no {file}")))
}

/// What a finished action hands back.
#[derive(Debug, Default)]
pub struct ActionOutput {
    /// Output variables, readable by later actions as `#{namespace.NAME}`.
    pub variables: BTreeMap<String, String>,
    /// Output artifacts: each declared output name with the directory
    /// holding its files, imported into the artifact store by the caller.
    pub artifacts: Vec<(ArtifactName, PathBuf)>,
    /// Output artifacts already in the artifact store (a build agent's),
    /// by name with their artifact ids.
    pub stored: Vec<(ArtifactName, String)>,
}

/// Why an action failed, in words for the person reading the status.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ActionError(pub String);

impl ActionError {
    pub fn new(message: impl Into<String>) -> ActionError {
        ActionError(message.into())
    }
}

/// Runs one action type.
pub trait ActionRunner: Send + Sync {
    fn run<'a>(
        &'a self,
        ctx: &'a ActionContext,
    ) -> BoxFuture<'a, Result<ActionOutput, ActionError>>;
}

/// The runners by `type:` name.
#[derive(Clone, Default)]
pub struct Runners {
    by_type: BTreeMap<&'static str, Arc<dyn ActionRunner>>,
}

impl Runners {
    /// The runners of the action types this build of gantry knows.
    pub fn standard() -> Runners {
        let mut runners = Runners::default();
        runners.register("source", Arc::new(SourceRunner));
        runners.register("build", Arc::new(BuildRunner));
        runners.register("test", Arc::new(BuildRunner));
        runners.register("shell", Arc::new(BuildRunner));
        runners.register("image", Arc::new(ImageRunner));
        runners.register("promote", Arc::new(PromoteRunner));
        runners.register("deploy", Arc::new(DeployRunner));
        runners
    }

    pub fn register(&mut self, type_name: &'static str, runner: Arc<dyn ActionRunner>) {
        self.by_type.insert(type_name, runner);
    }

    pub fn get(&self, type_name: &str) -> Option<Arc<dyn ActionRunner>> {
        self.by_type.get(type_name).cloned()
    }
}
