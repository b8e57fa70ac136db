//! `type: deploy`: rolls a service of an environment to the image its
//! container has in the input's `imagedefinitions.json` (CodePipeline's ECS
//! deploy action). The deployer does the rollout; this runner finds the
//! image and forwards the deployment's log. A deployment the deployer
//! fails or rolls back is told to the pipeline's notifications.

use std::collections::BTreeMap;

use gantry_deploy::DeployError;
use gantry_spec::pipeline::ActionKind;

use crate::notify::{DeploymentFailed, DeploymentRolledBack};

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
    let cause = gantry_deploy::Cause {
        text: format!(
            "deploy action {}/{} of execution {}",
            ctx.stage, ctx.action.name, ctx.execution_id
        ),
        execution: Some(ctx.execution_id.to_string()),
    };
    let outcome = deployer
        .deploy(
            environment.as_str(),
            service.as_str(),
            &definition.image_uri,
            cause,
            &ctx.log,
        )
        .await
        .map_err(|error| {
            notify_failure(
                ctx,
                environment.as_str(),
                service.as_str(),
                &definition.image_uri,
                &error,
            );
            ActionError::new(error.to_string())
        })?;
    let variables = BTreeMap::from([
        ("Revision".to_string(), outcome.revision.to_string()),
        ("ImageURI".to_string(), outcome.image.clone()),
    ]);
    Ok(ActionOutput {
        variables,
        artifacts: Vec::new(),
        stored: Vec::new(),
    })
}

/// Tells the notifications that a deployment failed, or was rolled back.
fn notify_failure(
    ctx: &ActionContext,
    environment: &str,
    service: &str,
    image: &str,
    error: &DeployError,
) {
    let (stage, action, attempt) = (ctx.stage.clone(), ctx.action.name.to_string(), ctx.attempt);
    let (environment, service, image) = (
        environment.to_string(),
        service.to_string(),
        image.to_string(),
    );
    match error {
        DeployError::CircuitBreaker {
            revision,
            rolled_back_to: Some(to),
            ..
        }
        | DeployError::AnalysisFailed {
            revision,
            rolled_back_to: to,
            ..
        }
        | DeployError::Aborted {
            revision,
            rolled_back_to: to,
            ..
        } => ctx.notices.emit(&DeploymentRolledBack {
            stage,
            action,
            attempt,
            environment,
            service,
            image,
            revision: *revision,
            rolled_back_to: *to,
            error: error.to_string(),
        }),
        _ => ctx.notices.emit(&DeploymentFailed {
            stage,
            action,
            attempt,
            environment,
            service,
            image,
            revision: match error {
                DeployError::CircuitBreaker { revision, .. }
                | DeployError::AnalysisFailed { revision, .. }
                | DeployError::Aborted { revision, .. } => Some(*revision),
                _ => None,
            },
            error: error.to_string(),
        }),
    }
}
