//! `type: promote`: gives the exact images of an `imagedefinitions.json` a
//! new tag (in the same or another repository or registry) without pulling
//! or rebuilding them: the manifest bytes are copied, blobs are mounted or
//! copied only where missing, and the digest is checked to be unchanged.
//! The output `imagedefinitions.json` points at the same digests.

use std::collections::BTreeMap;

use gantry_images::{ImageDefinition, Reference, promote};
use gantry_spec::pipeline::ActionKind;

use super::{ActionContext, ActionError, ActionOutput, ActionRunner, BoxFuture, read_input_file};

pub struct PromoteRunner;

impl ActionRunner for PromoteRunner {
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
    let ActionKind::Promote {
        tag,
        repositories,
        registry,
        file,
    } = &ctx.action.kind
    else {
        return Err(ActionError::new("internal error: not a promote action"));
    };
    let bytes = read_input_file(ctx, file).await?;
    let definitions = gantry_images::parse_image_definitions(&bytes)
        .map_err(|e| ActionError::new(format!("{file}: {e}")))?;
    let client = ctx.registry_client().await?;
    let mut promoted = Vec::new();
    let mut variables = BTreeMap::new();
    for definition in &definitions {
        let src = definition
            .reference()
            .map_err(|e| ActionError::new(format!("{file}: {}: {e}", definition.name)))?;
        let expected = src.digest().map(ToString::to_string);
        let mut dst = src.clone();
        if let Some(registry) = registry {
            dst = Reference::parse(&format!("{registry}/{}", dst.repository()))
                .map_err(|e| ActionError::new(format!("target registry {registry}: {e}")))?;
        }
        if let Some(repository) = repositories.get(&definition.name) {
            dst = dst
                .with_repository(repository)
                .map_err(|e| ActionError::new(format!("repository {repository}: {e}")))?;
        }
        let dst = dst
            .with_tag(tag)
            .map_err(|e| ActionError::new(format!("tag {tag}: {e}")))?;
        ctx.log
            .line(&format!("Promoting {} ({}) to {dst}", definition.name, src));
        let result = promote(&client, &src, &dst, expected.as_deref())
            .await
            .map_err(|e| ActionError::new(format!("{}: {e}", definition.name)))?;
        ctx.log.line(&format!(
            "Promoted {} as {} — digest unchanged; blobs: {} mounted, {} copied, {} already there",
            definition.name,
            result.reference,
            result.mounted_blobs,
            result.copied_blobs,
            result.skipped_blobs
        ));
        variables.insert(
            format!("{}_ImageURI", definition.name),
            result.reference.to_string(),
        );
        variables.insert(
            format!("{}_ImageDigest", definition.name),
            result.digest.to_string(),
        );
        promoted.push(ImageDefinition::new(
            definition.name.clone(),
            &result.reference,
        ));
    }
    let out = ctx.work_dir.join("promote-out");
    tokio::fs::create_dir_all(&out)
        .await
        .map_err(|e| ActionError::new(format!("cannot create {}: {e}", out.display())))?;
    gantry_images::write_image_definitions(
        &out.join(gantry_images::IMAGE_DEFINITIONS_FILE),
        &promoted,
    )
    .map_err(|e| ActionError::new(e.to_string()))?;
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
