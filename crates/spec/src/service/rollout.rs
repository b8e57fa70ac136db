//! Progressive delivery (issue 13): how traffic moves from the running
//! revision of a service to a new one, and how the new one is judged on
//! the way.
//!
//! Every strategy is a list of steps (Argo Rollouts' shape): `weight`
//! sends a share of the requests to the new revision, `pause` waits (for a
//! time, or for an operator), `analysis` watches the new revision and
//! fails the deployment when it misbehaves. `strategy: steps` writes the
//! list out; the other strategies are shorthands for one, and
//! [`Deployment::rollout_steps`] expands any of them, so that a deployer
//! executes steps only. A rollout always starts with the new revision at
//! weight 0 and ends at `{weight: 100}`.
//!
//! The expansion, with `P` the percent and `I` the interval:
//!
//! | strategy | steps |
//! |---|---|
//! | `rolling` | `[weight 100]` (replicas are replaced in place, within `min_healthy_percent` and `max_percent`) |
//! | `blue_green` | `[weight 100]`, or `[pause shift_after, weight 100]` |
//! | `canary` | `[weight P, pause I, weight 100]` |
//! | `linear` | `[weight P, pause I, weight 2P, pause I, …, weight 100]` |
//! | `steps` | the list as written, `{analysis: default}` replaced by the service's `analysis` |
//!
//! The rule for `analysis` with `canary` and `linear`: each timed pause is
//! followed by an analysis step, so the new revision holds each share for
//! the interval and then for the analysis `window` while it is judged, and
//! the expansion is itself a list one could write under `steps:`.

use std::net::SocketAddr;
use std::time::Duration;

use super::{Deployment, DeploymentStrategy, Part};

/// The header that sends a request to the new revision whatever its weight
/// (`X-Gantry-Canary: always`), unless `canary_header` names another.
pub const DEFAULT_CANARY_HEADER: &str = "X-Gantry-Canary";

/// `blue_green:`. Green (the new revision) starts beside blue with no
/// production traffic, then takes all of it at once.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BlueGreen {
    /// A listener of its own on the environment's load balancer that sends
    /// every request to green while blue still serves production, so tests
    /// can reach green before the switch (CodeDeploy's test traffic route).
    pub test_listener: Option<SocketAddr>,
    /// When production traffic switches to green once it is healthy:
    /// `None` at once (the default), else after a time or an operator.
    pub shift_after: Option<Pause>,
    /// How long blue keeps running after the switch, ready to take the
    /// traffic back at once, before it is stopped; default 0s.
    pub termination_wait: Duration,
}

/// `canary:`: `percent` of the traffic for `interval`, then the rest
/// (CodeDeploy's `Canary10Percent5Minutes` is the default).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Canary {
    /// 1..=100.
    pub percent: u32,
    pub interval: Duration,
}

impl Default for Canary {
    fn default() -> Self {
        Canary {
            percent: 10,
            interval: Duration::from_secs(5 * 60),
        }
    }
}

/// `linear:`: `percent` more of the traffic every `every` until all of it
/// (CodeDeploy's `Linear10PercentEvery1Minute` is the default).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Linear {
    /// 1..=100.
    pub percent: u32,
    pub every: Duration,
}

impl Default for Linear {
    fn default() -> Self {
        Linear {
            percent: 10,
            every: Duration::from_secs(60),
        }
    }
}

/// How long a `pause` step (or a blue/green switch) waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pause {
    For(Duration),
    /// Until an operator continues the deployment (or rolls it back).
    Manual,
}

/// A step as written under `steps:`.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// `{weight: N}`: N% of the requests go to the new revision.
    Weight(u32),
    /// `{pause: DURATION | manual}`.
    Pause(Pause),
    /// `{analysis: default}` or `{analysis: {…}}`.
    Analysis(StepAnalysis),
}

/// Which analysis an `analysis` step runs.
#[derive(Debug, Clone, PartialEq)]
pub enum StepAnalysis {
    /// `default`: the service's `deployment.analysis`.
    Default,
    Inline(Analysis),
}

/// A step of a rollout as a deployer executes it: [`Step`] with the
/// analysis resolved.
#[derive(Debug, Clone, PartialEq)]
pub enum RolloutStep {
    /// Send this percentage of the requests to the new revision.
    Weight(u32),
    Pause(Pause),
    /// Watch the new revision for the analysis' `window`: the first limit
    /// it breaks fails the deployment; too few requests to judge leaves the
    /// rollout waiting as at `pause: manual`.
    Analysis(Analysis),
}

/// How a new revision is judged. Each limit is optional, but an analysis
/// has at least one.
#[derive(Debug, Clone, PartialEq)]
pub struct Analysis {
    /// The highest share of the new revision's requests that may fail (a
    /// 5xx answer or no answer), as a fraction: `1%` is 0.01.
    pub max_error_rate: Option<f64>,
    /// The highest 99th percentile of the new revision's response time.
    pub max_p99: Option<Duration>,
    /// Requests to the new revision in the window before the error rate,
    /// p99 and comparison are judged; default 50.
    pub min_requests: u32,
    /// The sliding window the request metrics cover; default 1m.
    pub window: Duration,
    pub compare_to_stable: Option<CompareToStable>,
    pub prometheus: Option<PrometheusCheck>,
    pub probe: Option<Probe>,
}

impl Default for Analysis {
    /// No limit yet: not a valid analysis on its own.
    fn default() -> Self {
        Analysis {
            max_error_rate: None,
            max_p99: None,
            min_requests: 50,
            window: Duration::from_secs(60),
            compare_to_stable: None,
            prometheus: None,
            probe: None,
        }
    }
}

impl Analysis {
    /// Whether it sets any limit at all.
    pub fn has_metric(&self) -> bool {
        self.max_error_rate.is_some()
            || self.max_p99.is_some()
            || self.compare_to_stable.is_some()
            || self.prometheus.is_some()
            || self.probe.is_some()
    }
}

/// The new revision measured against the stable one over the same window.
/// The stable revision's error rate counts as at least 0.1%, so that a
/// single error beside a flawless stable revision does not fail it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CompareToStable {
    /// New error rate / stable error rate, at most this (1..=1000).
    pub max_error_ratio: Option<f64>,
    /// New p99 / stable p99, at most this (1..=1000).
    pub max_p99_ratio: Option<f64>,
}

/// A PromQL instant query whose value must stay at most `max`.
#[derive(Debug, Clone, PartialEq)]
pub struct PrometheusCheck {
    /// The Prometheus server, `http://` or `https://`.
    pub url: String,
    pub query: String,
    pub max: f64,
}

/// An HTTP `GET` whose status must be `expect_status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    pub target: ProbeTarget,
    /// Default 200.
    pub expect_status: u16,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeTarget {
    /// Requested on each replica of the new revision, as its health check is.
    Path(String),
    /// An absolute `http://` or `https://` URL.
    Url(String),
}

impl Deployment {
    /// The deployment as the steps a deployer executes (see the module's
    /// table). A validated service always ends at `weight 100`; a
    /// `{analysis: default}` step without an `analysis` block, which only a
    /// hand-built `Deployment` can hold, is left out.
    pub fn rollout_steps(&self) -> Vec<RolloutStep> {
        use RolloutStep::{Pause as Wait, Weight};
        let watched = |out: &mut Vec<RolloutStep>, pause: Duration| {
            out.push(Wait(Pause::For(pause)));
            if let Some(analysis) = &self.analysis {
                out.push(RolloutStep::Analysis(analysis.clone()));
            }
        };
        let mut out = Vec::new();
        match self.strategy {
            DeploymentStrategy::Rolling => {}
            DeploymentStrategy::BlueGreen => {
                if let Some(pause) = self.blue_green_settings().shift_after {
                    out.push(Wait(pause));
                }
            }
            DeploymentStrategy::Canary => {
                let canary = self.canary.unwrap_or_default();
                if canary.percent < 100 {
                    out.push(Weight(canary.percent));
                    watched(&mut out, canary.interval);
                }
            }
            DeploymentStrategy::Linear => {
                let linear = self.linear.unwrap_or_default();
                // Zero would never reach 100; validation refuses it.
                let step = linear.percent.max(1);
                let mut weight = step;
                while weight < 100 {
                    out.push(Weight(weight));
                    watched(&mut out, linear.every);
                    weight += step;
                }
            }
            DeploymentStrategy::Steps => {
                for step in self.steps.iter().flatten() {
                    match step {
                        Step::Weight(weight) => out.push(Weight(*weight)),
                        Step::Pause(pause) => out.push(Wait(*pause)),
                        Step::Analysis(StepAnalysis::Inline(analysis)) => {
                            out.push(RolloutStep::Analysis(analysis.clone()));
                        }
                        Step::Analysis(StepAnalysis::Default) => {
                            if let Some(analysis) = &self.analysis {
                                out.push(RolloutStep::Analysis(analysis.clone()));
                            }
                        }
                    }
                }
                return out;
            }
        }
        out.push(Weight(100));
        out
    }

    /// The blue/green settings, defaults for what `blue_green:` leaves out.
    pub fn blue_green_settings(&self) -> BlueGreen {
        self.blue_green.clone().unwrap_or_default()
    }

    /// The header that routes a request to the new revision at any weight.
    pub fn canary_header(&self) -> &str {
        self.canary_header
            .as_deref()
            .unwrap_or(DEFAULT_CANARY_HEADER)
    }
}

impl Deployment {
    /// The rules between the strategy and the other keys of `deployment`,
    /// each broken one as the part it concerns and a message.
    pub(crate) fn problems(&self) -> Vec<(Part, String)> {
        let mut problems = Vec::new();
        let strategy = self.strategy;
        let blocks = [
            (
                "blue_green",
                DeploymentStrategy::BlueGreen,
                self.blue_green.is_some(),
            ),
            ("canary", DeploymentStrategy::Canary, self.canary.is_some()),
            ("linear", DeploymentStrategy::Linear, self.linear.is_some()),
            ("steps", DeploymentStrategy::Steps, self.steps.is_some()),
        ];
        for (key, owner, written) in blocks {
            if written && strategy != owner {
                problems.push((
                    Part::DeploymentKey(key),
                    format!(
                        "`{key}` configures a {key} deployment, but the strategy is `{}`: remove it or set `strategy: {key}`",
                        strategy.as_str()
                    ),
                ));
            }
        }
        if strategy == DeploymentStrategy::Steps && self.steps.is_none() {
            problems.push((
                Part::DeploymentKey("strategy"),
                "`strategy: steps` needs a `steps` list, such as [{weight: 10}, {pause: 1m}, {weight: 100}]".to_owned(),
            ));
        }
        let progressive = matches!(
            strategy,
            DeploymentStrategy::Canary | DeploymentStrategy::Linear | DeploymentStrategy::Steps
        );
        if self.analysis.is_some() && !progressive {
            problems.push((
                Part::DeploymentKey("analysis"),
                format!(
                    "`analysis` judges a new revision while it takes a share of the traffic, which only canary, linear and steps deployments give it; the strategy is `{}`",
                    strategy.as_str()
                ),
            ));
        }
        if self.canary_header.is_some() && strategy == DeploymentStrategy::Rolling {
            problems.push((
                Part::DeploymentKey("canary_header"),
                "`canary_header` routes requests to a new revision running beside the old one, which a rolling deployment does not start; use it with blue_green, canary, linear or steps".to_owned(),
            ));
        }
        if self.analysis.is_none() {
            for (index, step) in self.steps.iter().flatten().enumerate() {
                if *step == Step::Analysis(StepAnalysis::Default) {
                    problems.push((
                        Part::Step(index),
                        format!(
                            "step {} runs the service's analysis (`{{analysis: default}}`), but `deployment.analysis` is not set; add one, or write the analysis in the step",
                            index + 1
                        ),
                    ));
                }
            }
        }
        problems
    }
}

/// Why a `steps:` list cannot be executed, each problem as the index of
/// the step it concerns (`None`: the list as a whole) and a message.
/// Weights never decrease (a rollout that sends traffic back is a
/// rollback, which the circuit breaker does), and the list ends with the
/// only `{weight: 100}`.
pub(crate) fn step_problems(steps: &[Step]) -> Vec<(Option<usize>, String)> {
    let mut problems = Vec::new();
    let mut highest: Option<(usize, u32)> = None;
    for (index, step) in steps.iter().enumerate() {
        let Step::Weight(weight) = *step else {
            continue;
        };
        if let Some((at, before)) = highest
            && weight < before
        {
            problems.push((
                Some(index),
                format!(
                    "step {} lowers the weight to {weight} after step {} set {before}: weights may not decrease (a failed rollout goes back by rolling back)",
                    index + 1,
                    at + 1
                ),
            ));
            continue;
        }
        if weight == 100 && index + 1 < steps.len() {
            problems.push((
                Some(index),
                format!(
                    "step {} sends all the traffic to the new revision, which ends the rollout: it must be the last step (put pauses and analyses before it)",
                    index + 1
                ),
            ));
        }
        highest = Some((index, weight));
    }
    if steps.last() != Some(&Step::Weight(100)) {
        problems.push((
            None,
            "`steps` must end with `{weight: 100}`: a rollout ends with all the traffic on the new revision".to_owned(),
        ));
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;
    use RolloutStep::{Pause as Wait, Weight};

    fn deployment(strategy: DeploymentStrategy) -> Deployment {
        Deployment {
            strategy,
            ..Deployment::default()
        }
    }

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    fn analysis() -> Analysis {
        Analysis {
            max_error_rate: Some(0.01),
            ..Analysis::default()
        }
    }

    #[test]
    fn canary_is_one_share_then_the_rest() {
        let mut d = deployment(DeploymentStrategy::Canary);
        d.canary = Some(Canary {
            percent: 10,
            interval: secs(30),
        });
        assert_eq!(
            d.rollout_steps(),
            [Weight(10), Wait(Pause::For(secs(30))), Weight(100)]
        );
        // The default is CodeDeploy's Canary10Percent5Minutes.
        d.canary = None;
        assert_eq!(
            d.rollout_steps(),
            [Weight(10), Wait(Pause::For(secs(300))), Weight(100)]
        );
        d.canary = Some(Canary {
            percent: 100,
            interval: secs(30),
        });
        assert_eq!(d.rollout_steps(), [Weight(100)]);
    }

    #[test]
    fn linear_adds_its_percent_every_interval_until_all() {
        let mut d = deployment(DeploymentStrategy::Linear);
        d.linear = Some(Linear {
            percent: 25,
            every: secs(10),
        });
        let wait = Wait(Pause::For(secs(10)));
        assert_eq!(
            d.rollout_steps(),
            [
                Weight(25),
                wait.clone(),
                Weight(50),
                wait.clone(),
                Weight(75),
                wait,
                Weight(100)
            ]
        );
        // A percent that does not divide 100 ends with a smaller last share.
        d.linear = Some(Linear {
            percent: 40,
            every: secs(1),
        });
        let weights: Vec<_> = d
            .rollout_steps()
            .into_iter()
            .filter(|s| matches!(s, Weight(_)))
            .collect();
        assert_eq!(weights, [Weight(40), Weight(80), Weight(100)]);
    }

    #[test]
    fn with_an_analysis_each_timed_pause_is_followed_by_one() {
        let mut d = deployment(DeploymentStrategy::Linear);
        d.linear = Some(Linear {
            percent: 50,
            every: secs(10),
        });
        d.analysis = Some(analysis());
        assert_eq!(
            d.rollout_steps(),
            [
                Weight(50),
                Wait(Pause::For(secs(10))),
                RolloutStep::Analysis(analysis()),
                Weight(100)
            ]
        );
    }

    #[test]
    fn blue_green_switches_at_once_unless_told_to_wait() {
        let mut d = deployment(DeploymentStrategy::BlueGreen);
        assert_eq!(d.rollout_steps(), [Weight(100)]);
        assert_eq!(d.blue_green_settings(), BlueGreen::default());
        d.blue_green = Some(BlueGreen {
            shift_after: Some(Pause::Manual),
            ..BlueGreen::default()
        });
        assert_eq!(d.rollout_steps(), [Wait(Pause::Manual), Weight(100)]);
        assert_eq!(
            deployment(DeploymentStrategy::Rolling).rollout_steps(),
            [Weight(100)]
        );
    }

    #[test]
    fn written_steps_resolve_the_default_analysis() {
        let mut d = deployment(DeploymentStrategy::Steps);
        let inline = Analysis {
            max_p99: Some(Duration::from_millis(500)),
            ..Analysis::default()
        };
        d.steps = Some(vec![
            Step::Weight(5),
            Step::Pause(Pause::For(secs(10))),
            Step::Analysis(StepAnalysis::Default),
            Step::Weight(50),
            Step::Analysis(StepAnalysis::Inline(inline.clone())),
            Step::Pause(Pause::Manual),
            Step::Weight(100),
        ]);
        d.analysis = Some(analysis());
        assert_eq!(
            d.rollout_steps(),
            [
                Weight(5),
                Wait(Pause::For(secs(10))),
                RolloutStep::Analysis(analysis()),
                Weight(50),
                RolloutStep::Analysis(inline),
                Wait(Pause::Manual),
                Weight(100)
            ]
        );
    }

    #[test]
    fn the_header_defaults_to_x_gantry_canary() {
        let mut d = deployment(DeploymentStrategy::Canary);
        assert_eq!(d.canary_header(), "X-Gantry-Canary");
        d.canary_header = Some("X-Try".to_owned());
        assert_eq!(d.canary_header(), "X-Try");
    }

    #[test]
    fn step_lists_rise_to_a_final_hundred() {
        use Step::Weight as W;
        let pause = Step::Pause(Pause::Manual);
        assert!(step_problems(&[W(0), pause.clone(), W(10), W(10), W(100)]).is_empty());
        let found = |steps: &[Step]| -> Vec<Option<usize>> {
            step_problems(steps).into_iter().map(|(at, _)| at).collect()
        };
        assert_eq!(found(&[W(50), W(20), W(100)]), [Some(1)]);
        assert_eq!(found(&[W(100), pause.clone(), W(100)]), [Some(0)]);
        assert_eq!(found(&[W(10), pause]), [None]);
        assert_eq!(found(&[]), [None]);
    }
}
