//! `type: image`: a daemonless image build from files of the first input
//! artifact, pushed to a registry (the embedded one by default), handed on
//! as `imagedefinitions.json` and `imageDetail.json` pinned by digest.
//!
//! Builds are reproducible (fixed times, sorted entries, canonical JSON), so
//! an unchanged service yields the same digest and nothing is pushed again.

use std::collections::BTreeMap;

use gantry_images::{ImageDefinition, ImageDetail, ImageSpec, Reference, build_image};
use gantry_spec::pipeline::ActionKind;

use super::{
    ActionContext, ActionError, ActionOutput, ActionRunner, BoxFuture, materialize_inputs,
};

pub struct ImageRunner;

impl ActionRunner for ImageRunner {
    fn run<'a>(
        &'a self,
        ctx: &'a ActionContext,
    ) -> BoxFuture<'a, Result<ActionOutput, ActionError>> {
        Box::pin(async move {
            tokio::select! {
                result = run(ctx) => result,
                () = ctx.cancel.cancelled() => Err(ActionError::new("stopped")),
                () = tokio::time::sleep(ctx.timeout) => Err(ActionError::new(format!("timed out after {:?}", ctx.timeout))),
            }
        })
    }
}

async fn run(ctx: &ActionContext) -> Result<ActionOutput, ActionError> {
    let ActionKind::Image {
        context,
        repository,
        tag,
        registry,
        base,
        entrypoint,
        cmd,
        image_env,
        workdir,
        port,
        labels,
        user,
        dest,
        container,
    } = &ctx.action.kind
    else {
        return Err(ActionError::new("internal error: not an image action"));
    };
    let src = materialize_inputs(ctx).await?;
    let context_dir = src.join(context);
    if !context_dir.starts_with(&src) || context.split('/').any(|c| c == "..") {
        return Err(ActionError::new(format!(
            "context {context} leaves the input artifact"
        )));
    }
    if !context_dir.exists() {
        return Err(ActionError::new(format!(
            "context {context} does not exist in the input artifact"
        )));
    }
    let registry = registry
        .clone()
        .or_else(|| ctx.registry.clone())
        .ok_or_else(|| {
            ActionError::new(
                "no registry: name one with `registry:` or run gantry with its embedded registry",
            )
        })?;
    let target = Reference::parse(&format!("{registry}/{repository}:{tag}"))
        .map_err(|e| ActionError::new(format!("image name {registry}/{repository}:{tag}: {e}")))?;
    let mut spec = ImageSpec::new(&context_dir);
    spec.dest = dest.clone();
    spec.base = match base {
        Some(b) => Some(
            Reference::parse(b).map_err(|e| ActionError::new(format!("base image {b}: {e}")))?,
        ),
        None => None,
    };
    spec.entrypoint = entrypoint.clone();
    spec.cmd = cmd.clone();
    spec.env = image_env
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    spec.workdir = workdir.clone();
    spec.exposed_ports = port.iter().map(|p| p.to_string()).collect();
    spec.labels = labels.clone();
    spec.user = user.clone();
    // No revision label is added: an image must depend only on its inputs,
    // so a commit that does not touch a service leaves its digest unchanged.
    ctx.log.line(&format!(
        "Building image {target} from {context} (no Docker daemon)"
    ));
    let result = build_image(&spec, &target, &ctx.registry_client().await?)
        .await
        .map_err(|e| ActionError::new(e.to_string()))?;
    ctx.log.line(&format!(
        "Image {} ({} bytes): {} blobs uploaded, {} mounted, {} already present{}",
        result.reference,
        result.size,
        result.uploaded_blobs,
        result.mounted_blobs,
        result.skipped_blobs,
        if result.manifest_pushed {
            ""
        } else {
            "; the tag already named this digest"
        }
    ));

    let out = ctx.work_dir.join("image-out");
    tokio::fs::create_dir_all(&out)
        .await
        .map_err(|e| ActionError::new(format!("cannot create {}: {e}", out.display())))?;
    let pinned = target.with_digest(&result.digest);
    let definitions = vec![ImageDefinition::new(container.clone(), &pinned)];
    gantry_images::write_image_definitions(
        &out.join(gantry_images::IMAGE_DEFINITIONS_FILE),
        &definitions,
    )
    .map_err(|e| ActionError::new(e.to_string()))?;
    let mut detail = ImageDetail::new(&target, &result.digest, Some(result.size));
    detail.image_tags = vec![tag.clone()];
    gantry_images::write_image_detail(&out.join(gantry_images::IMAGE_DETAIL_FILE), &detail)
        .map_err(|e| ActionError::new(e.to_string()))?;

    let variables = BTreeMap::from([
        ("ImageURI".to_string(), pinned.to_string()),
        ("ImageDigest".to_string(), result.digest.to_string()),
        ("ImageTag".to_string(), tag.clone()),
        (
            "RepositoryName".to_string(),
            target.repository().to_string(),
        ),
    ]);
    let artifacts = ctx
        .action
        .outputs
        .iter()
        .take(1)
        .map(|name| (name.clone(), out.clone()))
        .collect();
    Ok(ActionOutput {
        variables,
        artifacts,
        stored: Vec::new(),
    })
}
