//! `type: build`, `type: test` and `type: shell`: the buildspec runner.
//!
//! A `build`/`test` reads its buildspec from the first input artifact; a
//! `shell` is a buildspec with one build phase made from its `commands`.
//! The first input is the working directory (`CODEBUILD_SRC_DIR`); every
//! input is also at `GANTRY_INPUT_<NAME>` / `CODEBUILD_SRC_DIR_<NAME>`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use gantry_build::{BuildRequest, BuildStatus};
use gantry_spec::buildspec::parse_buildspec;
use gantry_spec::pipeline::{ActionKind, ArtifactName};

use super::{
    ActionContext, ActionError, ActionOutput, ActionRunner, BoxFuture, materialize_inputs,
    read_input_file, secondary_inputs,
};

pub struct BuildRunner;

impl ActionRunner for BuildRunner {
    fn run<'a>(
        &'a self,
        ctx: &'a ActionContext,
    ) -> BoxFuture<'a, Result<ActionOutput, ActionError>> {
        Box::pin(run(ctx))
    }
}

async fn run(ctx: &ActionContext) -> Result<ActionOutput, ActionError> {
    // An agent's build gets its inputs on the agent: only the buildspec is
    // read here, from the artifact store.
    let src = match &ctx.action.agent {
        None => Some(materialize_inputs(ctx).await?),
        Some(_) => None,
    };

    let (buildspec, image) = match &ctx.action.kind {
        ActionKind::Build { buildspec, image } | ActionKind::Test { buildspec, image } => {
            if buildspec.starts_with('/') || buildspec.split('/').any(|c| c == "..") {
                return Err(ActionError::new(format!(
                    "buildspec path {buildspec} leaves the input artifact"
                )));
            }
            let text = match &src {
                Some(src) => tokio::fs::read_to_string(src.join(buildspec))
                    .await
                    .map_err(|e| e.to_string()),
                None => read_input_file(ctx, buildspec)
                    .await
                    .map_err(|e| e.to_string())
                    .and_then(|bytes| String::from_utf8(bytes).map_err(|e| e.to_string())),
            }
            .map_err(|e| {
                ActionError::new(format!(
                    "cannot read buildspec {buildspec} in the input artifact: {e}"
                ))
            })?;
            let (spec, warnings) = parse_buildspec(buildspec, &text).map_err(|errors| {
                let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
                ActionError::new(format!("invalid buildspec:\n{}", lines.join("\n")))
            })?;
            for warning in warnings {
                ctx.log.line(&format!("Warning: {warning}"));
            }
            (spec, image.clone())
        }
        ActionKind::Shell {
            commands,
            artifacts,
            exported_variables,
            image,
        } => (
            gantry_build::shell_buildspec(
                commands.clone(),
                artifacts.clone(),
                exported_variables.clone(),
            ),
            image.clone(),
        ),
        other => {
            return Err(ActionError::new(format!(
                "internal error: {} is not a build action",
                other.type_name()
            )));
        }
    };
    // `image:` runs the build inside a container of that image on the local
    // Docker Engine, with the source mounted and the engine's socket passed
    // through, like CodeBuild's privileged builds.
    let container = image.clone().map(gantry_build::ContainerSpec::new);

    // Parameters are read now, just before the build, so the build sees the
    // values current at its start (as CodeBuild does) and records which.
    // The values of `#{…}` references in commands are data: they skip the
    // `{{param:…}}` resolution (a commit message must not read a parameter).
    let (references, declared): (BTreeMap<String, String>, BTreeMap<String, String>) = ctx
        .action
        .env
        .clone()
        .into_iter()
        .partition(|(name, _)| name.starts_with(crate::resolve::REF_ENV_PREFIX));
    let mut resolved = crate::parameters::resolve_env(&ctx.params, &declared).await;
    if let Ok(env) = &mut resolved {
        env.env.extend(references);
    }
    if let Ok(env) = &mut resolved {
        match crate::parameters::resolve_buildspec(&ctx.params, &buildspec).await {
            Ok(more) => {
                env.secrets.extend(more.secrets);
                env.records.extend(more.records);
            }
            Err(error) => resolved = Err(error),
        }
    }
    let mut resolved = resolved.map_err(ActionError)?;
    ctx.record_parameters(&resolved.records).await;
    // `docker push #{gantry.Registry}/…` in a host build authenticates with
    // this attempt's registry-only token, through a docker config of its
    // own; the token is masked like every secret.
    if let Some(login) = &ctx.registry_login {
        let dir = login.docker_config(&ctx.work_dir)?;
        resolved
            .env
            .push(("DOCKER_CONFIG".to_string(), dir.display().to_string()));
        resolved.secrets.push((
            "GANTRY_REGISTRY_TOKEN".to_string(),
            login.token.expose().to_string(),
        ));
    }

    if let Some(agent) = &ctx.action.agent {
        let ended = crate::agents::run_on_agent(
            ctx,
            &agent.labels,
            &buildspec,
            image,
            resolved.env,
            resolved.secrets,
        )
        .await?;
        return finish(ctx, ended).await;
    }
    let src = src.unwrap_or_else(|| ctx.work_dir.join("src"));
    let secondary = secondary_inputs(ctx);
    let out_dir = ctx.work_dir.join("out");
    let request = BuildRequest {
        buildspec,
        source_dir: src,
        secondary_sources: secondary,
        env: resolved
            .env
            .into_iter()
            .chain([
                (crate::orphans::OWNER_ENV.to_string(), ctx.owner.clone()),
                // A directory that outlives the build, per pipeline, for
                // compiler caches and the like (CodeBuild's local cache).
                (
                    "GANTRY_CACHE_DIR".to_string(),
                    ctx.cache_dir.display().to_string(),
                ),
            ])
            .collect(),
        secrets: resolved.secrets,
        build_id: format!("{}:{}", ctx.pipeline, ctx.execution_id),
        build_number: u64::from(ctx.attempt),
        initiator: format!("gantry/{}", ctx.pipeline),
        resolved_source_version: ctx.source_revision.clone(),
        timeout: ctx.timeout,
        out_dir: out_dir.clone(),
        // The work dir is the attempt's, removed with it: no directory of
        // the build's own.
        scratch_dir: Some(ctx.work_dir.clone()),
        cancel: ctx.cancel.clone(),
        container,
        // A pipeline build's outputs come from its source directory only:
        // gantry collects them with the server's rights.
        read_outside_source: false,
        cache_dir: Some(gantry_build::action_cache_dir(
            &ctx.cache_dir,
            ctx.stage.as_str(),
            ctx.action.name.as_str(),
        )),
    };
    let outcome = gantry_build::run(request, &ctx.log)
        .await
        .map_err(|e| ActionError::new(e.to_string()))?;
    let ended = Ended {
        status: outcome.status.as_str().to_string(),
        failed_phases: outcome.failed_phases(),
        error: outcome.error,
        exported_variables: outcome.exported_variables,
        reports: outcome
            .reports
            .iter()
            .map(gantry_build::TestReport::to_json)
            .collect(),
        outputs: outcome
            .artifacts
            .into_iter()
            .map(|a| (a.identifier, Output::Dir(a.dir)))
            .collect(),
    };
    finish(ctx, ended).await
}

/// How a build ended, here or on an agent.
pub(crate) struct Ended {
    /// CodeBuild's status (`SUCCEEDED`, `FAILED`, …).
    pub status: String,
    pub error: Option<String>,
    pub failed_phases: Vec<String>,
    pub exported_variables: BTreeMap<String, String>,
    pub reports: Vec<serde_json::Value>,
    /// The artifacts by buildspec identifier (`None`: the primary one).
    pub outputs: Vec<(Option<String>, Output)>,
}

/// An artifact a build made: a directory here, or stored from an agent.
pub(crate) enum Output {
    Dir(PathBuf),
    Stored(String),
}

/// Records the reports, and maps the outputs to the declared artifacts.
async fn finish(ctx: &ActionContext, ended: Ended) -> Result<ActionOutput, ActionError> {
    if !ended.reports.is_empty() {
        for r in &ended.reports {
            let count = |key: &str| r.get(key).and_then(serde_json::Value::as_u64).unwrap_or(0);
            ctx.log.line(&format!(
                "Tests {}: {} passed, {} failed, {} skipped",
                r.get("group")
                    .and_then(serde_json::Value::as_str)
                    .unwrap_or(""),
                count("passed"),
                count("failed"),
                count("skipped")
            ));
        }
        ctx.record_detail("reports", &ended.reports).await;
    }
    if ended.status != BuildStatus::Succeeded.as_str() {
        let detail = ended
            .error
            .clone()
            .unwrap_or_else(|| format!("phase {} failed", ended.failed_phases.join(", ")));
        return Err(ActionError::new(format!(
            "build {}: {detail}",
            status_word(&ended.status)
        )));
    }
    let mut output = ActionOutput {
        variables: ended.exported_variables,
        ..ActionOutput::default()
    };
    let mut named: Vec<ArtifactName> = Vec::new();
    for (identifier, artifact) in ended.outputs {
        let target = match &identifier {
            None => ctx.action.outputs.first(),
            Some(identifier) => ctx.action.outputs.iter().find(|o| o.as_str() == identifier),
        };
        let Some(name) = target else {
            ctx.log.line(&format!(
                "Note: artifact {} matches no declared output and is dropped.",
                identifier.as_deref().unwrap_or("(primary)")
            ));
            continue;
        };
        named.push(name.clone());
        match artifact {
            Output::Dir(dir) => output.artifacts.push((name.clone(), dir)),
            Output::Stored(id) => output.stored.push((name.clone(), id)),
        }
    }
    for declared in &ctx.action.outputs {
        if !named.contains(declared) {
            return Err(ActionError::new(format!(
                "output artifact {declared} is declared but the build produced no artifact for it"
            )));
        }
    }
    Ok(output)
}

/// A status as the failure message has always said it (`Failed`,
/// `TimedOut`), from CodeBuild's spelling.
fn status_word(status: &str) -> String {
    status
        .split('_')
        .map(|w| {
            let lower = w.to_ascii_lowercase();
            let mut chars = lower.chars();
            chars
                .next()
                .map(|c| c.to_ascii_uppercase().to_string() + chars.as_str())
                .unwrap_or_default()
        })
        .collect()
}
