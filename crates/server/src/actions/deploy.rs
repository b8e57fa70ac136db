//! `type: deploy`: rolls a service of an environment to the image its
//! container has in the input's `imagedefinitions.json` (CodePipeline's ECS
//! deploy action). The deployer does the rollout; this runner finds the
//! image and forwards the deployment's log.

use std::collections::BTreeMap;

use gantry_spec::pipeline::ActionKind;

use super::{ActionContext, ActionError, ActionOutput, ActionRunner, BoxFuture, read_input_file};

pub struct DeployRunner;

impl ActionRunner for DeployRunner {
    fn run<'a>(
        &'a self,
        ctx: &'a ActionContext,
    ) -> BoxFuture<'a, Result<ActionOutput, ActionError>> {
        Box::pin(async move {
            tokio::select! {
                result = run(ctx) => result,
                () = ctx.cancel.cancelled() => Err(ActionError::new("stopped (the deployment may go on in the server)")),
                () = tokio::time::sleep(ctx.timeout) => Err(ActionError::new(format!("timed out after {:?}", ctx.timeout))),
            }
        })
    }
}

impl gantry_deploy::DeployLog for crate::logs::ActionLog {
    fn line(&self, line: &str) {
        crate::logs::ActionLog::line(self, line);
    }
}

async fn run(ctx: &ActionContext) -> Result<ActionOutput, ActionError> {
    let ActionKind::Deploy {
        environment,
        service,
        file,
    } = &ctx.action.kind
    else {
        return Err(ActionError::new("internal error: not a deploy action"));
    };
    let deployer = ctx
        .deployer
        .as_ref()
        .ok_or_else(|| ActionError::new("this server has no deployer"))?;
    let container = deployer
        .container_of(environment.as_str(), service.as_str())
        .await
        .map_err(|e| ActionError::new(e.to_string()))?;
    let bytes = read_input_file(ctx, file).await?;
    let definitions = gantry_images::parse_image_definitions(&bytes)
        .map_err(|e| ActionError::new(format!("{file}: {e}")))?;
    let Some(definition) = definitions.iter().find(|d| d.name == container) else {
        let names: Vec<&str> = definitions.iter().map(|d| d.name.as_str()).collect();
        return Err(ActionError::new(format!(
            "{file} has no image for container {container} of service {service} (it names: {})",
            names.join(", ")
        )));
    };
    let cause = format!(
        "deploy action {}/{} of execution {}",
        ctx.stage, ctx.action.name, ctx.execution_id
    );
    let outcome = deployer
        .deploy(
            environment.as_str(),
            service.as_str(),
            &definition.image_uri,
            &cause,
            &ctx.log,
        )
        .await
        .map_err(|e| ActionError::new(e.to_string()))?;
    let variables = BTreeMap::from([
        ("Revision".to_string(), outcome.revision.to_string()),
        ("ImageURI".to_string(), outcome.image.clone()),
    ]);
    Ok(ActionOutput {
        variables,
        artifacts: Vec::new(),
    })
}
