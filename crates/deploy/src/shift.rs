//! Progressive delivery at run time (issue 13): how a blue_green, canary,
//! linear or steps deployment moves the traffic from the running (stable)
//! revision to the new one, step by step, and back when it must.
//!
//! The new revision's full set starts beside the stable one at weight 0
//! (`Rollout::start_beside`: every replica healthy first, circuit breaker
//! on). Then [`Shift`] executes the revision's [`ShiftPlan`]:
//!
//! - `Weight(N)` gives the new revision's replicas weights summing to N
//!   parts and the stable ones 100 − N parts, split evenly (exactly: each
//!   new replica weighs `N × stable`, each stable one `(100 − N) × new`,
//!   divided by their common divisor), raising the gaining side first so
//!   the replicas taking traffic never drop.
//! - `Pause` waits for its time, or (manual) for a promote.
//! - `Analysis` judges the new revision every second over its sliding
//!   window (`crate::analysis`); the first broken limit rolls back.
//! - At `Weight(100)` the stable replicas stay registered at weight 0 for
//!   blue/green's `termination_wait` (an abort switches back at once),
//!   then leave the group together, drain and stop.
//!
//! In every wait an operator's [`ShiftCommand`] is answered at once:
//! promote (skip the wait, or go to 100% now), abort, pause (timers stop)
//! and resume; and a new replica that fails its health checks fails the
//! deployment. Rolling back sets the stable weights back first, then stops
//! the new replicas: traffic is never left split with nobody watching. The
//! shift's place (deployment, step, weight, paused) is kept in the deploy
//! store, so a restarted server resumes it (`crate::readopt`).

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use gantry_proxy::{Health, Target};
use gantry_runtime::Runtime;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::analysis::{self, Verdict};
use crate::deployer::{DeployLog, Deployer, EnvState, ServiceState};
use crate::error::DeployError;
use crate::revision::{Revision, ShiftPlan, ShiftStep, StoredAnalysis};
use crate::rollout::{ReplicaRef, Rollout, RolloutResult, Tripped};
use crate::store::ShiftRow;
use crate::traffic::{Balancer, Targets};

/// How often a wait judges the new revision and checks its health.
const TICK: Duration = Duration::from_secs(1);

/// External checks (Prometheus, probe) run every this many ticks, and at
/// the end of the window.
const EXTERNAL_EVERY: u32 = 5;

/// How long a control request waits for the shift to take it.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

/// What an operator asks of a shift in progress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShiftCommand {
    /// Ends the current pause or analysis wait (or blue/green's
    /// termination wait); `full`: all the traffic to the new revision now.
    Promote {
        full: bool,
    },
    /// All the traffic back to the stable revision at once; the deployment
    /// ends RolledBack, "aborted by" the name given.
    Abort {
        by: String,
    },
    /// Holds the current weight: timers and the analysis window stop.
    Pause,
    Resume,
}

/// Where a shift is, as a control command answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShiftProgress {
    pub deployment: i64,
    /// The stable revision.
    pub from_revision: u64,
    pub to_revision: u64,
    /// The step it is at, counted from 1 (0 while the new replicas start).
    pub step: usize,
    pub steps: usize,
    /// The new revision's share of the traffic, in percent.
    pub weight: u32,
    pub paused: bool,
    /// What the step waits for, in words.
    pub waiting: String,
}

type Request = (ShiftCommand, oneshot::Sender<ShiftProgress>);

/// A service's shift in progress, as its [`ServiceState`] holds it.
pub(crate) struct ShiftHandle {
    pub(crate) deployment: i64,
    control: mpsc::UnboundedSender<Request>,
    progress: Arc<Mutex<ShiftProgress>>,
}

/// The shift's end of its handle.
pub(crate) struct ShiftControl {
    requests: mpsc::UnboundedReceiver<Request>,
    progress: Arc<Mutex<ShiftProgress>>,
}

/// Keeps a shift's handle in its service's state while it lives, so that
/// control commands reach it and other deployments are refused.
pub(crate) struct Installed {
    state: Arc<ServiceState>,
}

impl Installed {
    pub(crate) fn new(
        state: Arc<ServiceState>,
        progress: ShiftProgress,
    ) -> (Installed, ShiftControl) {
        let (tx, rx) = mpsc::unbounded_channel();
        let progress = Arc::new(Mutex::new(progress));
        let deployment = progress
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .deployment;
        *state.shift.lock().unwrap_or_else(PoisonError::into_inner) = Some(ShiftHandle {
            deployment,
            control: tx,
            progress: progress.clone(),
        });
        (
            Installed { state },
            ShiftControl {
                requests: rx,
                progress,
            },
        )
    }
}

impl Drop for Installed {
    fn drop(&mut self) {
        *self
            .state
            .shift
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = None;
    }
}

impl ServiceState {
    /// The deployment shifting this service's traffic, if one is.
    pub(crate) fn shifting(&self) -> Option<i64> {
        self.shift
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .map(|h| h.deployment)
    }
}

/// What ended a wait.
enum Flow {
    Next,
    /// Promoted with `full`: straight to 100%.
    Full,
    Abort(String),
    /// An analysis or health failure, with its numbers.
    Fail(String),
}

/// What a step waits for.
#[derive(Clone, Copy)]
enum Hold<'b> {
    Timer(Duration),
    Manual,
    Analysis(&'b StoredAnalysis),
}

/// The new revision's weight per replica and the stable one's, for `n`%
/// of the traffic to the new revision: exact, in the smallest integers.
pub(crate) fn split(n: u32, stable: usize, new: usize) -> (u32, u32) {
    let n = n.min(100);
    let stable = u32::try_from(stable.max(1)).unwrap_or(u32::MAX);
    let new = u32::try_from(new.max(1)).unwrap_or(u32::MAX);
    let stable_each = (100 - n).saturating_mul(new);
    let new_each = n.saturating_mul(stable);
    let divisor = gcd(stable_each, new_each).max(1);
    (stable_each / divisor, new_each / divisor)
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 { a } else { gcd(b, a % b) }
}

fn seconds(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

/// One shift: the two replica sets, where it is, and what it needs.
pub(crate) struct Shift<'a> {
    pub(crate) deployer: &'a Deployer,
    pub(crate) env: &'a EnvState,
    pub(crate) group: &'a dyn Targets,
    pub(crate) runtime: &'a Arc<dyn Runtime>,
    pub(crate) revision: &'a Revision,
    pub(crate) stable: &'a Revision,
    pub(crate) plan: &'a ShiftPlan,
    pub(crate) deployment: i64,
    pub(crate) log: &'a dyn DeployLog,
    pub(crate) old: Vec<ReplicaRef>,
    pub(crate) green: Vec<ReplicaRef>,
    pub(crate) control: ShiftControl,
    pub(crate) paused: bool,
    /// The new revision's share now, in percent.
    pub(crate) weight: u32,
    pub(crate) test_listener: Option<Box<dyn Balancer>>,
}

impl Shift<'_> {
    /// Executes the plan from step `from`. `Ok`: the new revision takes all
    /// the traffic and the stable replicas are stopped. `Err`: the stable
    /// revision takes all the traffic again and the new replicas are
    /// stopped (`AnalysisFailed` and `Aborted` say why; any other error
    /// too, after the same restoration).
    pub(crate) async fn run(mut self, from: usize) -> Result<(), DeployError> {
        let route = Some((
            self.plan.canary_header.clone(),
            self.revision.number.to_string(),
        ));
        if let Err(e) = self.group.set_canary_route(route) {
            self.log
                .line(&format!("The canary header does not route: {e}"));
        }
        if self.weight < 100 {
            self.open_test_listener().await;
        }
        match self.steps(from).await {
            Ok(Flow::Next | Flow::Full) => self.promote_fully().await,
            Ok(Flow::Abort(by)) => {
                self.log.line(&format!(
                    "Aborted by {by}: all the traffic goes back to revision {}",
                    self.stable.number
                ));
                self.restore().await;
                Err(DeployError::Aborted {
                    revision: self.revision.number,
                    by,
                    rolled_back_to: self.stable.number,
                })
            }
            Ok(Flow::Fail(reason)) => {
                self.log.line(&format!(
                    "Analysis of revision {} failed: {reason}; all the traffic goes back to revision {}",
                    self.revision.number, self.stable.number
                ));
                self.restore().await;
                Err(DeployError::AnalysisFailed {
                    revision: self.revision.number,
                    reason,
                    rolled_back_to: self.stable.number,
                })
            }
            Err(error) => {
                self.log.line(&format!(
                    "The shift stopped: {error}; all the traffic goes back to revision {}",
                    self.stable.number
                ));
                self.restore().await;
                Err(error)
            }
        }
    }

    async fn steps(&mut self, from: usize) -> Result<Flow, DeployError> {
        let steps = self.plan.steps.clone();
        let mut i = from;
        while i < steps.len() {
            let step = &steps[i];
            self.at(i, &describe(step));
            self.save(i).await?;
            let flow = match step {
                ShiftStep::Weight(n) => {
                    self.set_weights(*n);
                    let wait = self.plan.termination_wait();
                    if *n >= 100 {
                        self.close_test_listener().await;
                    }
                    if *n >= 100 && !wait.is_zero() {
                        self.log.line(&format!(
                            "Revision {} stays registered at weight 0 for {} (termination_wait): an abort switches back at once",
                            self.stable.number,
                            seconds(wait)
                        ));
                        self.hold(Hold::Timer(wait)).await?
                    } else {
                        Flow::Next
                    }
                }
                ShiftStep::Pause(Some(ms)) => {
                    let d = Duration::from_millis(*ms);
                    self.log.line(&format!(
                        "Holding {}% on revision {} for {}",
                        self.weight,
                        self.revision.number,
                        seconds(d)
                    ));
                    self.hold(Hold::Timer(d)).await?
                }
                ShiftStep::Pause(None) => {
                    self.log.line(&format!(
                        "Holding {}% on revision {} until a promote (gantry deploy promote {} {})",
                        self.weight,
                        self.revision.number,
                        self.revision.environment,
                        self.revision.service
                    ));
                    self.hold(Hold::Manual).await?
                }
                ShiftStep::Analysis(a) => {
                    self.log.line(&format!(
                        "Analysing revision {} at {}% over a {} window{}",
                        self.revision.number,
                        self.weight,
                        seconds(a.window()),
                        limits(a)
                    ));
                    self.hold(Hold::Analysis(a)).await?
                }
            };
            match flow {
                Flow::Next => i += 1,
                Flow::Full if self.weight >= 100 => i += 1,
                // The last step is the one weight 100.
                Flow::Full => i = steps.len().saturating_sub(1).max(i + 1),
                other => return Ok(other),
            }
        }
        Ok(Flow::Next)
    }

    /// Waits as `hold` says, judging and answering commands meanwhile.
    async fn hold(&mut self, hold: Hold<'_>) -> Result<Flow, DeployError> {
        let mut remaining = match hold {
            Hold::Timer(d) => d,
            Hold::Analysis(a) => a.window(),
            Hold::Manual => Duration::MAX,
        };
        let new_label = self.revision.number.to_string();
        let stable_label = self.stable.number.to_string();
        let mut ticks = 0u32;
        let mut inconclusive = false;
        let mut last = Instant::now();
        loop {
            if let Some(reason) = self.unhealthy_replica() {
                return Ok(Flow::Fail(reason));
            }
            if let Hold::Analysis(a) = hold {
                let windows = self.group.window_stats(a.window());
                let verdict = analysis::judge(a, &windows, &new_label, &stable_label);
                if let Verdict::Fail(reason) = verdict {
                    return Ok(Flow::Fail(reason));
                }
                if (ticks.is_multiple_of(EXTERNAL_EVERY) || remaining.is_zero())
                    && let Some(reason) = self.external_checks(a).await
                {
                    return Ok(Flow::Fail(reason));
                }
                if remaining.is_zero() {
                    match verdict {
                        Verdict::Kept(summary) => {
                            self.log.line(&format!(
                                "Analysis of revision {} passed: {summary}{}",
                                self.revision.number,
                                limits(a)
                            ));
                            return Ok(Flow::Next);
                        }
                        Verdict::TooFew { requests } if !inconclusive => {
                            inconclusive = true;
                            self.log.line(&format!(
                                "Analysis of revision {} is inconclusive: {requests} request(s) in the window, fewer than min_requests {}; holding {}% until a promote (or an abort)",
                                self.revision.number, a.min_requests, self.weight
                            ));
                            self.waiting("an analysis too few requests judge: a promote");
                        }
                        _ => {}
                    }
                }
            } else if remaining.is_zero() {
                return Ok(Flow::Next);
            }
            let timed = !self.paused && !inconclusive && !matches!(hold, Hold::Manual);
            let nap = if timed { remaining.min(TICK) } else { TICK };
            tokio::select! {
                request = self.control.requests.recv() => {
                    let Some((command, reply)) = request else {
                        // The handle outlives the shift; a closed channel
                        // would only mean nobody can command it.
                        tokio::time::sleep(nap).await;
                        continue;
                    };
                    if let Some(flow) = self.command(command, reply).await? {
                        return Ok(flow);
                    }
                }
                () = tokio::time::sleep(nap) => {}
            }
            let now = Instant::now();
            if !self.paused {
                remaining = remaining.saturating_sub(now - last);
            }
            last = now;
            ticks = ticks.wrapping_add(1);
        }
    }

    /// Carries out an operator's command; `Some` ends the wait.
    async fn command(
        &mut self,
        command: ShiftCommand,
        reply: oneshot::Sender<ShiftProgress>,
    ) -> Result<Option<Flow>, DeployError> {
        let flow = match command {
            ShiftCommand::Promote { full } => {
                self.log.line(&if full {
                    format!(
                        "Promoted: all the traffic to revision {} now",
                        self.revision.number
                    )
                } else {
                    "Promoted: on to the next step".to_string()
                });
                self.waiting(if full { "promoted to 100%" } else { "promoted" });
                Some(if full { Flow::Full } else { Flow::Next })
            }
            ShiftCommand::Abort { by } => {
                self.waiting("aborted");
                Some(Flow::Abort(by))
            }
            ShiftCommand::Pause => {
                if !self.paused {
                    self.paused = true;
                    self.log.line(&format!(
                        "Paused at {}%: timers stop until a resume",
                        self.weight
                    ));
                    self.progress(|p| p.paused = true);
                    self.save(self.step()).await?;
                }
                None
            }
            ShiftCommand::Resume => {
                if self.paused {
                    self.paused = false;
                    self.log.line(&format!("Resumed at {}%", self.weight));
                    self.progress(|p| p.paused = false);
                    self.save(self.step()).await?;
                }
                None
            }
        };
        let _ = reply.send(self.snapshot());
        Ok(flow)
    }

    fn snapshot(&self) -> ShiftProgress {
        self.control
            .progress
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn progress(&self, f: impl FnOnce(&mut ShiftProgress)) {
        f(&mut self
            .control
            .progress
            .lock()
            .unwrap_or_else(PoisonError::into_inner));
    }

    fn step(&self) -> usize {
        self.snapshot().step.saturating_sub(1)
    }

    fn at(&self, index: usize, waiting: &str) {
        let weight = self.weight;
        self.progress(|p| {
            p.step = index + 1;
            p.weight = weight;
            p.waiting = waiting.to_string();
        });
    }

    fn waiting(&self, waiting: &str) {
        self.progress(|p| p.waiting = waiting.to_string());
    }

    async fn save(&self, step: usize) -> Result<(), DeployError> {
        self.deployer
            .inner
            .db
            .save_shift(&ShiftRow {
                environment: self.revision.environment.clone(),
                service: self.revision.service.clone(),
                deployment: self.deployment,
                from_revision: self.stable.number,
                to_revision: self.revision.number,
                step,
                weight: self.weight,
                paused: self.paused,
            })
            .await
    }

    /// Sends `n`% of the requests to the new revision.
    fn set_weights(&mut self, n: u32) {
        let (stable_each, new_each) = split(n, self.old.len(), self.green.len());
        let green: Vec<(String, u32)> = self
            .green
            .iter()
            .map(|r| (r.id.clone(), new_each))
            .collect();
        let old: Vec<(String, u32)> = self
            .old
            .iter()
            .map(|r| (r.id.clone(), stable_each))
            .collect();
        // The gaining side first, so the replicas taking traffic never drop.
        let order = if n >= self.weight {
            [green, old]
        } else {
            [old, green]
        };
        for (id, weight) in order.iter().flatten() {
            if let Err(e) = self.group.set_weight(id, *weight) {
                self.log.line(&format!("Could not weigh {id}: {e}"));
            }
        }
        self.weight = n.min(100);
        let weight = self.weight;
        self.progress(|p| p.weight = weight);
        self.log.line(&format!(
            "Weight: revision {} takes {}% ({} replica(s) at weight {new_each}), revision {} {}% ({} at weight {stable_each})",
            self.revision.number,
            self.weight,
            self.green.len(),
            self.stable.number,
            100 - self.weight,
            self.old.len()
        ));
    }

    /// A new replica the load balancer found Unhealthy, as a failure.
    fn unhealthy_replica(&self) -> Option<String> {
        let targets = self.group.targets();
        self.green.iter().find_map(|r| {
            let t = targets.iter().find(|t| t.id == r.id)?;
            (t.health == Health::Unhealthy).then(|| {
                format!(
                    "replica {} of revision {} failed its health checks ({})",
                    r.id,
                    self.revision.number,
                    t.last_failure.as_deref().unwrap_or("unhealthy")
                )
            })
        })
    }

    /// Prometheus and the probe: the first failure, if any.
    async fn external_checks(&self, a: &StoredAnalysis) -> Option<String> {
        if let Some((url, query, max)) = &a.prometheus {
            match analysis::prometheus(url, query, *max).await {
                Ok(None) => {}
                Ok(Some(failure)) => return Some(failure),
                Err(error) => return Some(error),
            }
        }
        let mut urls = Vec::new();
        if let Some(path) = &a.probe_path {
            urls.extend(
                self.green
                    .iter()
                    .map(|r| format!("http://{}{path}", r.addr)),
            );
        }
        if let Some(url) = &a.probe_url {
            urls.push(url.clone());
        }
        for url in urls {
            match analysis::probe(&url, a.probe_status).await {
                Ok(None) => {}
                Ok(Some(failure)) => return Some(failure),
                Err(error) => return Some(error),
            }
        }
        None
    }

    async fn open_test_listener(&mut self) {
        let Some(addr) = self.plan.test_listener else {
            return;
        };
        let rules = crate::apply::rules_of(&*self.env.spec.lock().await);
        match self.deployer.inner.balancers.start(addr, rules).await {
            Ok(lb) => {
                let group = lb.target_group(&self.revision.service);
                for r in &self.green {
                    group.register(
                        Target::new(r.id.clone(), r.addr)
                            .with_revision(self.revision.number.to_string())
                            .with_protocol(self.revision.target_protocol()),
                    );
                }
                self.log.line(&format!(
                    "Test listener on {} sends every request to revision {}",
                    lb.local_addr(),
                    self.revision.number
                ));
                self.test_listener = Some(lb);
            }
            Err(e) => self
                .log
                .line(&format!("The test listener on {addr} did not start: {e}")),
        }
    }

    async fn close_test_listener(&mut self) {
        if let Some(lb) = self.test_listener.take() {
            let addr = lb.local_addr();
            lb.shutdown().await;
            self.log.line(&format!("Test listener on {addr} closed"));
        }
    }

    /// All the traffic on the new revision; the stable replicas leave
    /// the group together, drain and stop.
    async fn promote_fully(mut self) -> Result<(), DeployError> {
        if self.weight < 100 {
            self.set_weights(100);
        }
        self.close_test_listener().await;
        let _ = self.group.set_canary_route(None);
        let drain = self.revision.drain();
        let drains: Vec<_> = self
            .old
            .iter()
            .map(|o| self.group.deregister(&o.id, drain))
            .collect();
        self.log.line(&format!(
            "Revision {} takes all the traffic; draining the {} replica(s) of revision {}",
            self.revision.number,
            self.old.len(),
            self.stable.number
        ));
        futures_util::future::join_all(drains).await;
        for o in &self.old {
            if let Err(e) = self
                .runtime
                .stop(&o.id, drain.max(Duration::from_secs(2)))
                .await
            {
                self.log
                    .line(&format!("Stopping replica {} failed: {e}", o.id));
            }
        }
        self.deployer
            .inner
            .db
            .clear_shift(&self.revision.environment, &self.revision.service)
            .await
    }

    /// All the traffic back on the stable revision at once, then the new
    /// replicas drain and stop.
    async fn restore(&mut self) {
        for o in &self.old {
            if let Err(e) = self.group.set_weight(&o.id, 1) {
                self.log.line(&format!("Could not weigh {}: {e}", o.id));
            }
        }
        for g in &self.green {
            let _ = self.group.set_weight(&g.id, 0);
        }
        self.weight = 0;
        self.progress(|p| p.weight = 0);
        let _ = self.group.set_canary_route(None);
        self.close_test_listener().await;
        if let Err(e) = self
            .group
            .set_health_check(self.stable.health_check(Some(self.runtime)))
        {
            tracing::warn!(%e, "Restoring health check settings failed.");
        }
        self.group.set_stickiness(self.stable.stickiness());
        self.log.line(&format!(
            "Revision {} takes all the traffic again ({} replica(s)); stopping the {} replica(s) of revision {}",
            self.stable.number,
            self.old.len(),
            self.green.len(),
            self.revision.number
        ));
        let drain = self.revision.drain();
        let drains: Vec<_> = self
            .green
            .iter()
            .map(|g| self.group.deregister(&g.id, drain))
            .collect();
        futures_util::future::join_all(drains).await;
        for g in &self.green {
            let _ = self
                .runtime
                .stop(&g.id, drain.max(Duration::from_secs(2)))
                .await;
        }
        if let Err(e) = self
            .deployer
            .inner
            .db
            .clear_shift(&self.revision.environment, &self.revision.service)
            .await
        {
            tracing::error!(%e, "Forgetting a finished shift failed.");
        }
    }
}

fn describe(step: &ShiftStep) -> String {
    match step {
        ShiftStep::Weight(n) => format!("weight {n}"),
        ShiftStep::Pause(Some(ms)) => format!("pause {}", seconds(Duration::from_millis(*ms))),
        ShiftStep::Pause(None) => "a promote".to_string(),
        ShiftStep::Analysis(a) => format!("analysis over {}", seconds(a.window())),
    }
}

/// The limits of an analysis, for the log.
fn limits(a: &StoredAnalysis) -> String {
    let mut out = Vec::new();
    if let Some(max) = a.max_error_rate {
        out.push(format!("error rate ≤ {}", analysis::limit_percent(max)));
    }
    if let Some(max) = a.max_p99_ms {
        out.push(format!("p99 ≤ {max}ms"));
    }
    if let Some(max) = a.max_error_ratio {
        out.push(format!("error rate ≤ {max}× stable"));
    }
    if let Some(max) = a.max_p99_ratio {
        out.push(format!("p99 ≤ {max}× stable"));
    }
    if let Some((_, query, max)) = &a.prometheus {
        out.push(format!("{query} ≤ {max}"));
    }
    if a.probe_path.is_some() || a.probe_url.is_some() {
        out.push(format!("probe answers {}", a.probe_status));
    }
    if out.is_empty() {
        String::new()
    } else {
        format!(
            " (limits: {}; judged over at least {} requests)",
            out.join(", "),
            a.min_requests
        )
    }
}

impl Deployer {
    /// A progressive deployment, from `roll`: the new set starts beside
    /// `old`, then the plan moves the traffic. `Ok(Err)`: the new set did
    /// not start (the breaker tripped; `old` never lost a request).
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn shift_to(
        &self,
        env: &Arc<EnvState>,
        state: &Arc<ServiceState>,
        rollout: &Rollout<'_>,
        stable: &Revision,
        plan: &ShiftPlan,
        deployment: i64,
        old: Vec<ReplicaRef>,
    ) -> Result<Result<RolloutResult, Tripped>, DeployError> {
        let revision = rollout.revision;
        let (_installed, control) = Installed::new(
            state.clone(),
            ShiftProgress {
                deployment,
                from_revision: stable.number,
                to_revision: revision.number,
                step: 0,
                steps: plan.steps.len(),
                weight: 0,
                paused: false,
                waiting: "the new replicas to turn healthy".to_string(),
            },
        );
        let green = match rollout.start_beside(&old).await {
            Ok(green) => green,
            Err(tripped) => return Ok(Err(tripped)),
        };
        state.replicas.lock().await.extend(green.iter().cloned());
        let shift = Shift {
            deployer: self,
            env,
            group: rollout.group,
            runtime: rollout.runtime,
            revision,
            stable,
            plan,
            deployment,
            log: rollout.log,
            old: old.clone(),
            green: green.clone(),
            control,
            paused: false,
            weight: 0,
            test_listener: None,
        };
        match shift.run(0).await {
            Ok(()) => Ok(Ok(RolloutResult {
                serving: green,
                failures: 0,
            })),
            Err(error) => {
                *state.replicas.lock().await = old;
                Err(error)
            }
        }
    }

    /// Sends an operator's command to the shift of `service` in
    /// `environment`; answers where the shift is then.
    pub async fn control_shift(
        &self,
        environment: &str,
        service: &str,
        command: ShiftCommand,
    ) -> Result<ShiftProgress, DeployError> {
        let (env, project) = self.environment(environment).await?;
        if !project.services.keys().any(|s| s.as_str() == service) {
            return Err(DeployError::UnknownService {
                environment: environment.to_string(),
                service: service.to_string(),
            });
        }
        let state = env.service(service).await;
        let nothing = || DeployError::NothingToPromote {
            environment: environment.to_string(),
            service: service.to_string(),
        };
        let (control, progress) = {
            let handle = state.shift.lock().unwrap_or_else(PoisonError::into_inner);
            let handle = handle.as_ref().ok_or_else(nothing)?;
            (handle.control.clone(), handle.progress.clone())
        };
        let (reply, answer) = oneshot::channel();
        control.send((command, reply)).map_err(|_| nothing())?;
        match tokio::time::timeout(ANSWER_TIMEOUT, answer).await {
            Ok(Ok(progress)) => Ok(progress),
            // Still starting the new replicas: the command waits its turn.
            _ => Ok(progress
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::split;

    #[test]
    fn weights_split_exactly_in_the_smallest_integers() {
        assert_eq!(split(10, 2, 2), (9, 1));
        // 3 stable at 6 and 2 new at 1: 2 parts in 20.
        assert_eq!(split(10, 3, 2), (6, 1));
        assert_eq!(split(0, 2, 2), (1, 0));
        assert_eq!(split(100, 2, 3), (0, 1));
        assert_eq!(split(25, 1, 1), (3, 1));
        assert_eq!(split(50, 2, 1), (1, 2));
    }
}
