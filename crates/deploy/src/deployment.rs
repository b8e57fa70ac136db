//! Deployments: a new revision of a service (from an image, for `deploy`,
//! or from an earlier revision, for `rollback`), pinned to an image digest
//! and to parameter versions, rolled out, and recorded with its outcome.
//! When the circuit breaker trips, the previous revision keeps serving and,
//! with rollback on, gets back any replica the rollout had already stopped.

use std::sync::Arc;
use std::time::Duration;

use gantry_clock::now_ms;
use gantry_images::{Digest, Reference, RegistryClient};
use gantry_params::Selector;
use gantry_runtime::BoxFuture;

use crate::deployer::{DeployLog, DeployOutcome, Deployer, EnvState, ServiceState};
use crate::error::DeployError;
use crate::revision::{Cause, Revision, SecretRef};
use crate::rollout::Rollout;

/// A deployment ended, as its record in the history says; for whoever
/// counts them (the server's metrics), through [`Deployer::on_finished`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeploymentFinished {
    pub environment: String,
    pub service: String,
    /// The deployment of a `rollback` command rather than of a `deploy`.
    pub rollback: bool,
    /// `Succeeded`, `Failed` or `RolledBack` (the circuit breaker tripped
    /// and the previous revision serves again).
    pub status: &'static str,
    /// From the deployment's start (its record) to its end.
    pub duration: Duration,
    /// What rolled it back, when something did: `circuit_breaker`,
    /// `analysis` (a progressive deployment's analysis or the health of
    /// its new replicas) or `abort` (an operator).
    pub rolled_back_by: Option<&'static str>,
}

/// Called with every finished deployment.
pub(crate) type FinishedHook = Box<dyn Fn(&DeploymentFinished) + Send + Sync>;

/// Where images are looked up to pin them by digest: the registry client,
/// or a fake in tests.
pub(crate) trait ImageRegistry: Send + Sync {
    /// The digest of the manifest `image` names, or `None` if it is absent.
    fn manifest_digest<'a>(
        &'a self,
        image: &'a Reference,
    ) -> BoxFuture<'a, Result<Option<Digest>, String>>;
}

impl ImageRegistry for RegistryClient {
    fn manifest_digest<'a>(
        &'a self,
        image: &'a Reference,
    ) -> BoxFuture<'a, Result<Option<Digest>, String>> {
        Box::pin(async move {
            RegistryClient::manifest_digest(self, image)
                .await
                .map_err(|e| e.to_string())
        })
    }
}

impl Deployer {
    /// The environment variables of a revision's replicas: its plain
    /// environment, its secrets read at their pinned versions, and gantry's.
    pub(crate) async fn replica_env(
        &self,
        r: &Revision,
    ) -> Result<Vec<(String, String)>, DeployError> {
        let mut env: Vec<(String, String)> = r
            .environment_vars
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        for secret in &r.secrets {
            let selector = Selector::parse(&format!("{}:{}", secret.parameter, secret.version))
                .map_err(|e| secret_error(r, secret, e))?;
            let resolved = self
                .inner
                .params
                .resolve(&[(secret.var.as_str(), selector)])
                .await
                .map_err(|e| secret_error(r, secret, e))?;
            for value in resolved {
                env.push((secret.var.clone(), value.value.expose().to_string()));
            }
        }
        env.push(("GANTRY_ENVIRONMENT".into(), r.environment.clone()));
        env.push(("GANTRY_SERVICE".into(), r.service.clone()));
        env.push(("GANTRY_REVISION".into(), r.number.to_string()));
        Ok(env)
    }

    /// Pins an image reference to its digest, asking its registry.
    async fn pin(&self, image: &str) -> Result<String, DeployError> {
        let parsed = match self.inner.local_registry.get() {
            Some(local) => Reference::parse_local(image, local),
            None => Reference::parse(image),
        };
        let reference = parsed.map_err(|e| DeployError::Image {
            image: image.to_string(),
            reason: e.to_string(),
        })?;
        // Errors name the reference as resolved (`shop/web:1` is looked up in
        // the embedded registry), so they say where gantry looked.
        let resolved = reference.to_string();
        let found = self.inner.images.manifest_digest(&reference).await;
        match found {
            // Still made sure it exists: a deploy of a missing image must
            // fail before anything stops.
            Ok(Some(_)) if reference.digest().is_some() => Ok(resolved),
            Ok(Some(digest)) => Ok(reference.with_digest(&digest).to_string()),
            Ok(None) => Err(DeployError::ImageNotFound { image: resolved }),
            Err(e) => Err(DeployError::Image {
                image: resolved,
                reason: e.to_string(),
            }),
        }
    }

    /// Deploys `image` to a service: a new revision from the applied
    /// definition, rolled out with health checks and the circuit breaker.
    pub async fn deploy(
        &self,
        environment: &str,
        service: &str,
        image: &str,
        cause: impl Into<Cause>,
        log: &dyn DeployLog,
    ) -> Result<DeployOutcome, DeployError> {
        let cause = cause.into();
        let (env, project) = self.environment(environment).await?;
        let env_name = gantry_spec::environment::EnvironmentName::new(environment)
            .map_err(DeployError::Spec)?;
        let service_name =
            gantry_spec::service::ServiceName::new(service).map_err(DeployError::Spec)?;
        let spec = project
            .service_in(&env_name, &service_name)
            .ok_or_else(|| DeployError::UnknownService {
                environment: environment.to_string(),
                service: service.to_string(),
            })?;
        let pinned = self.pin(image).await?;
        log.line(&format!("Image {image} is {pinned}"));
        let mut secrets = Vec::new();
        for (var, parameter) in &spec.secrets {
            let selector = Selector::parse(parameter).map_err(|e| DeployError::Secret {
                environment: environment.to_string(),
                service: service.to_string(),
                var: var.clone(),
                parameter: parameter.clone(),
                reason: e.to_string(),
            })?;
            let resolved = self
                .inner
                .params
                .resolve(&[(var.as_str(), selector)])
                .await
                .map_err(|e| DeployError::Secret {
                    environment: environment.to_string(),
                    service: service.to_string(),
                    var: var.clone(),
                    parameter: parameter.clone(),
                    reason: match &e {
                        gantry_params::ParamError::Unresolved { source, .. } => {
                            match source.how_to_fix() {
                                Some(fix) => format!("{source}; {fix}"),
                                None => source.to_string(),
                            }
                        }
                        other => other.to_string(),
                    },
                })?;
            for r in resolved {
                log.line(&format!(
                    "Secret {var} = {} (version {})",
                    r.name, r.version
                ));
                secrets.push(SecretRef {
                    var: var.clone(),
                    parameter: r.name.to_string(),
                    version: r.version,
                    secure: r.secret,
                });
            }
        }
        let state = env.service(service).await;
        refuse_during_shift(&state, environment, service)?;
        let _guard = state.deploying.lock().await;
        let number = self
            .inner
            .db
            .last_revision_number(environment, service)
            .await?
            + 1;
        let revision = Revision::new(
            number,
            environment,
            &spec,
            pinned,
            secrets,
            now_ms(),
            cause.text,
        )
        .map_err(DeployError::Spec)?;
        let revision = Revision {
            execution: cause.execution,
            host_network: env.spec.lock().await.network == gantry_spec::environment::Network::Host,
            ..revision
        };
        // Build once, deploy once: the same image with the same definition and
        // parameter versions, already serving in full, is left alone.
        let current = state.current.lock().await.clone();
        let serving: Vec<String> = state
            .replicas
            .lock()
            .await
            .iter()
            .map(|r| r.id.clone())
            .collect();
        // A cluster keeps its Deployment's replicas itself: there, the
        // same revision is enough.
        let kubernetes = crate::kubernetes::is_kubernetes(&*env.spec.lock().await);
        if let Some(current) = current
            && current.same_as(&revision)
            && (kubernetes || serving.len() >= current.replicas as usize)
        {
            log.line(&format!(
                "Unchanged: {service} in {environment} already runs {} (revision {}) with the same definition and parameters; nothing to deploy",
                current.image, current.number
            ));
            return Ok(DeployOutcome {
                environment: environment.to_string(),
                service: service.to_string(),
                revision: current.number,
                image: current.image.clone(),
                replicas: serving,
            });
        }
        self.roll(&env, &state, revision, false, log).await
    }

    /// Has `hook` called with every deployment that ends from now on. Only
    /// the first hook set is kept.
    pub fn on_finished(&self, hook: impl Fn(&DeploymentFinished) + Send + Sync + 'static) {
        let _ = self.inner.on_finished.set(Box::new(hook));
    }

    /// Records the end of a deployment and tells the hook.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn finish(
        &self,
        deployment: i64,
        revision: &Revision,
        rollback: bool,
        started: tokio::time::Instant,
        status: &'static str,
        message: &str,
        rolled_back_by: Option<&'static str>,
    ) -> Result<(), DeployError> {
        self.inner
            .db
            .finish_deployment(deployment, status, Some(message), now_ms())
            .await?;
        if let Some(hook) = self.inner.on_finished.get() {
            hook(&DeploymentFinished {
                environment: revision.environment.clone(),
                service: revision.service.clone(),
                rollback,
                status,
                duration: started.elapsed(),
                rolled_back_by,
            });
        }
        Ok(())
    }

    /// Returns a service to an earlier revision (the one before the current
    /// by default): a new revision with that one's image, definition and
    /// parameter versions.
    pub async fn rollback(
        &self,
        environment: &str,
        service: &str,
        to: Option<u64>,
        log: &dyn DeployLog,
    ) -> Result<DeployOutcome, DeployError> {
        let (env, _) = self.environment(environment).await?;
        let state = env.service(service).await;
        refuse_during_shift(&state, environment, service)?;
        let _guard = state.deploying.lock().await;
        let current = state.current.lock().await.clone();
        let target = match to {
            Some(n) => n,
            None => {
                let current_number = current.as_ref().map_or(0, |c| c.number);
                let history = self.inner.db.deployments(environment, service, 200).await?;
                history
                    .iter()
                    .filter(|d| d.status == "Succeeded" && (d.to_revision as u64) < current_number)
                    .map(|d| d.to_revision as u64)
                    .max()
                    .ok_or_else(|| DeployError::NothingToRollBackTo {
                        environment: environment.to_string(),
                        service: service.to_string(),
                    })?
            }
        };
        let old = self
            .inner
            .db
            .revision(environment, service, target)
            .await?
            .ok_or(DeployError::UnknownRevision {
                environment: environment.to_string(),
                service: service.to_string(),
                revision: target,
            })?;
        let number = self
            .inner
            .db
            .last_revision_number(environment, service)
            .await?
            + 1;
        let revision = Revision {
            number,
            created_at: now_ms(),
            cause: format!("rollback to revision {target}"),
            ..old
        };
        log.line(&format!(
            "Rolling back {service} in {environment} to revision {target} as revision {number}"
        ));
        self.roll(&env, &state, revision, true, log).await
    }

    async fn roll(
        &self,
        env: &Arc<EnvState>,
        state: &Arc<ServiceState>,
        revision: Revision,
        rollback: bool,
        log: &dyn DeployLog,
    ) -> Result<DeployOutcome, DeployError> {
        if crate::kubernetes::is_kubernetes(&*env.spec.lock().await) {
            return self
                .roll_kubernetes(env, state, revision, rollback, log)
                .await;
        }
        let started = tokio::time::Instant::now();
        let runtime = env
            .runtime
            .clone()
            .ok_or_else(|| DeployError::RuntimeUnavailable(env.name.clone()))?;
        let env_vars = self.replica_env(&revision).await?;
        self.inner.db.save_revision(&revision).await?;
        let previous = state.current.lock().await.clone();
        let deployment = self
            .inner
            .db
            .start_deployment(
                &revision.environment,
                &revision.service,
                previous.as_ref().map(|p| p.number),
                revision.number,
                now_ms(),
            )
            .await?;
        let group = env.lb.target_group(&revision.service);
        group
            .set_health_check(revision.health_check(env.runtime.as_ref()))
            .map_err(|e| DeployError::LoadBalancer {
                environment: env.name.clone(),
                reason: e.to_string(),
            })?;
        group.set_stickiness(revision.stickiness());
        let old = state.replicas.lock().await.clone();
        let rollout = Rollout {
            runtime: &runtime,
            group: &*group,
            revision: &revision,
            env_vars: &env_vars,
            log,
            breaker: true,
        };
        let plan = revision.shift_plan().filter(|_| !old.is_empty());
        let outcome = match (&plan, &previous) {
            (Some(plan), Some(stable)) => {
                // A rollback returns at once: the switch without its waits.
                let plan = if rollback {
                    crate::revision::ShiftPlan {
                        steps: vec![crate::revision::ShiftStep::Weight(100)],
                        test_listener: None,
                        termination_wait_ms: 0,
                        ..plan.clone()
                    }
                } else {
                    plan.clone()
                };
                self.shift_to(env, state, &rollout, stable, &plan, deployment, old)
                    .await
            }
            _ => rollout.run(old).await,
        };
        let result = match outcome {
            Ok(result) => result,
            Err(error) => {
                let (status, by) = match &error {
                    DeployError::AnalysisFailed { .. } => ("RolledBack", Some("analysis")),
                    DeployError::Aborted { .. } => ("RolledBack", Some("abort")),
                    _ => ("Failed", None),
                };
                self.finish(
                    deployment,
                    &revision,
                    rollback,
                    started,
                    status,
                    &error.to_string(),
                    by,
                )
                .await?;
                log.line(&format!(
                    "Deployment of revision {} failed: {error}",
                    revision.number
                ));
                return Err(error);
            }
        };
        match result {
            Ok(done) => {
                self.promoted(state, &revision, deployment, rollback, started, done, log)
                    .await
            }
            Err(tripped) => {
                let mut serving = tripped.remaining_old.clone();
                let outcome = match (&previous, revision.rollback) {
                    (Some(prev), true) => {
                        // The old replicas never left unless the floor
                        // allowed it; restore any that did.
                        if let Err(e) =
                            group.set_health_check(prev.health_check(env.runtime.as_ref()))
                        {
                            tracing::warn!(%e, "Restoring health check settings failed.");
                        }
                        group.set_stickiness(prev.stickiness());
                        let prev_env = self.replica_env(prev).await?;
                        let restore = Rollout {
                            runtime: &runtime,
                            group: &*group,
                            revision: prev,
                            env_vars: &prev_env,
                            log,
                            breaker: false,
                        };
                        serving.extend(restore.top_up(serving.len()).await);
                        format!(
                            "rolled back: revision {} keeps serving with {} replica(s)",
                            prev.number,
                            serving.len()
                        )
                    }
                    (Some(prev), false) => format!(
                        "rollback is off: revision {} serves with the {} replica(s) left",
                        prev.number,
                        serving.len()
                    ),
                    (None, _) => "nothing to roll back to: this was the service's first deployment"
                        .to_string(),
                };
                log.line(&format!(
                    "Deployment of revision {} failed; {outcome}",
                    revision.number
                ));
                *state.replicas.lock().await = serving;
                let rolled_back_to = previous
                    .as_ref()
                    .filter(|_| revision.rollback)
                    .map(|prev| prev.number);
                let status = if rolled_back_to.is_some() {
                    "RolledBack"
                } else {
                    "Failed"
                };
                let error = DeployError::CircuitBreaker {
                    revision: revision.number,
                    failures: tripped.failures,
                    last: tripped.last,
                    outcome,
                    rolled_back_to,
                };
                self.finish(
                    deployment,
                    &revision,
                    rollback,
                    started,
                    status,
                    &error.to_string(),
                    rolled_back_to.map(|_| "circuit_breaker"),
                )
                .await?;
                Err(error)
            }
        }
    }
}

impl Deployer {
    /// Records a deployment whose new revision now serves everything.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn promoted(
        &self,
        state: &ServiceState,
        revision: &Revision,
        deployment: i64,
        rollback: bool,
        started: tokio::time::Instant,
        done: crate::rollout::RolloutResult,
        log: &dyn DeployLog,
    ) -> Result<DeployOutcome, DeployError> {
        *state.replicas.lock().await = done.serving.clone();
        *state.current.lock().await = Some(revision.clone());
        self.inner
            .db
            .set_current(&revision.environment, &revision.service, revision.number)
            .await?;
        let message = format!(
            "{} replica(s) healthy; {} replaced on the way",
            done.serving.len(),
            done.failures
        );
        self.finish(
            deployment,
            revision,
            rollback,
            started,
            "Succeeded",
            &message,
            None,
        )
        .await?;
        log.line(&format!(
            "Deployment of revision {} succeeded: {message}",
            revision.number
        ));
        Ok(DeployOutcome {
            environment: revision.environment.clone(),
            service: revision.service.clone(),
            revision: revision.number,
            image: revision.image.clone(),
            replicas: done.serving.iter().map(|r| r.id.clone()).collect(),
        })
    }
}

/// A deployment asked for while a progressive one shifts the service's
/// traffic is refused at once, naming the one in progress (rolling ones
/// wait their turn on the service's lock instead).
fn refuse_during_shift(
    state: &ServiceState,
    environment: &str,
    service: &str,
) -> Result<(), DeployError> {
    match state.shifting() {
        Some(deployment) => Err(DeployError::ShiftInProgress {
            environment: environment.to_string(),
            service: service.to_string(),
            deployment,
        }),
        None => Ok(()),
    }
}

fn secret_error(r: &Revision, secret: &SecretRef, e: gantry_params::ParamError) -> DeployError {
    DeployError::Secret {
        environment: r.environment.clone(),
        service: r.service.clone(),
        var: secret.var.clone(),
        parameter: format!("{}:{}", secret.parameter, secret.version),
        reason: e.to_string(),
    }
}
