//! Services (formats.md §4): what ECS splits into a task definition and a
//! service — the image, its command, port, replicas, environment, secrets,
//! health check, deployment settings and resources.
//!
//! A service is defined once, under `services:`, and deployed to any number
//! of environments; an environment may override its fields under
//! `environments.NAME.services`. [`ServiceOverride`] holds such an override
//! and [`Service::with_override`] applies it. The rules that involve several
//! fields (a health-check timeout shorter than its interval, a rolling
//! deployment that can make progress) are checked on the service as written
//! and again, by `assemble`, on every service as an environment overrides it,
//! so that every `Service` a caller can obtain is valid.
//!
//! Defaults, chosen for a machine running a whole project locally rather
//! than for a fleet (AWS's are in parentheses):
//!
//! | field | default | range |
//! |---|---|---|
//! | `container` | the service name | `[A-Za-z0-9_-]{1,255}` |
//! | `port` | 8080 | 1..=65535 |
//! | `protocol` | `http1` | `http1`, `http2`, `grpc` |
//! | `stickiness.duration` | none (no stickiness) | 1s..=7d (ALB's lb_cookie) |
//! | `replicas` | 1 | 0..=100 |
//! | `health_check.path` | `/` (ALB: `/`) | starts with `/` |
//! | `health_check.grpc.service` | `""` (the whole server) | with `protocol: http2` or `grpc` |
//! | `health_check.interval` | 5s (ALB: 30s) | 1s..=5m |
//! | `health_check.timeout` | 2s (ALB: 5s) | 100ms..=2m, less than `interval` |
//! | `health_check.healthy_threshold` | 2 (ALB: 5) | 2..=10 |
//! | `health_check.unhealthy_threshold` | 2 (ALB: 2) | 2..=10 |
//! | `health_check.grace_period` | 10s (ECS: 0s) | 0s..=1h |
//! | `deployment.strategy` | `rolling` | `rolling`, `blue_green`, `canary`, `linear`, `steps` |
//! | `deployment.min_healthy_percent` | 100 | 0..=100 |
//! | `deployment.max_percent` | 200 | 100..=200 |
//! | `deployment.circuit_breaker.threshold` | 3 | 1..=200 |
//! | `deployment.circuit_breaker.rollback` | true | |
//! | `deployment.drain` | 5s (ALB: 300s) | 0s..=1h |
//! | `deployment.blue_green.test_listener` | none | an IP address and a port |
//! | `deployment.blue_green.shift_after` | at once | `manual` or 1s..=7d |
//! | `deployment.blue_green.termination_wait` | 0s | 0s..=2d |
//! | `deployment.canary` | `{percent: 10, interval: 5m}` | percent 1..=100, interval 1s..=7d |
//! | `deployment.linear` | `{percent: 10, every: 1m}` | percent 1..=100, every 1s..=7d |
//! | `deployment.analysis.min_requests` | 50 | 0..=1000000 |
//! | `deployment.analysis.window` | 1m | 1s..=1h |
//! | `deployment.canary_header` | `X-Gantry-Canary` | an HTTP header name |
//! | `resources.cpus`, `resources.memory` | no limit | cpus 0.01..=1024, memory at least 6Mi |
//!
//! The health check's interval and thresholds make a healthy replica known
//! after about 10s, which keeps a local rolling deployment quick; the grace
//! period of 10s spares services that take a few seconds to start from being
//! killed in a loop. `max_percent` stops at 200 because a deployment replaces
//! one revision at a time: with 200% every new replica can already start at
//! once, and more would start nothing.
//!
//! The strategies other than `rolling` start a full new set of replicas
//! beside the old one and move traffic by weight; [`rollout`] describes
//! them as steps.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::location::Location;
pub use crate::names::ServiceName;
use crate::names::{EnvironmentName, NameRule};

pub(crate) mod decode;
pub mod rollout;
pub use decode::is_user;
pub use rollout::{
    Analysis, BlueGreen, Canary, CompareToStable, DEFAULT_CANARY_HEADER, Linear, Pause, Probe,
    ProbeTarget, PrometheusCheck, RolloutStep, Step, StepAnalysis,
};

/// The default container port.
pub const DEFAULT_PORT: u16 = 8080;
/// What `${environment}` in a secret's parameter name stands for.
pub const ENVIRONMENT_PLACEHOLDER: &str = "${environment}";

/// A validated service.
#[derive(Debug, Clone, PartialEq)]
pub struct Service {
    pub name: ServiceName,
    /// The container's name, matched against the `name`s in
    /// imagedefinitions.json; default: the service name.
    pub container: String,
    /// The image to run before any deploy; a deploy replaces it.
    pub image: Option<String>,
    /// Overrides the image's entrypoint and cmd.
    pub command: Option<Vec<String>>,
    /// The user replicas run as: a user name or `uid[:gid]`
    /// (`[A-Za-z_][A-Za-z0-9_.-]{0,31}`, or digits); `None`: gantry's own
    /// user (process runtime) or the image's (docker).
    pub user: Option<String>,
    /// The container port (the process runtime passes `PORT` instead).
    pub port: u16,
    /// What the port speaks, so what the load balancer speaks to it.
    pub protocol: ServiceProtocol,
    /// Sticky sessions (ALB's `lb_cookie` stickiness): how long the load
    /// balancer's cookie keeps a client on one replica; `None`: none.
    pub stickiness: Option<std::time::Duration>,
    /// How many replicas to run; 0 stops the service.
    pub replicas: u32,
    /// Plain environment variables.
    pub environment: BTreeMap<String, String>,
    /// Environment variable → parameter name. In a service as written the
    /// name may hold `${environment}`; `Project::service_in` replaces it.
    pub secrets: BTreeMap<String, String>,
    pub health_check: HealthCheck,
    pub deployment: Deployment,
    pub resources: Resources,
    /// Where the service's name is written.
    pub location: Location,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheck {
    pub kind: HealthCheckKind,
    pub interval: Duration,
    /// Always shorter than `interval`.
    pub timeout: Duration,
    /// Consecutive successes that make a replica healthy.
    pub healthy_threshold: u32,
    /// Consecutive failures that make a replica unhealthy.
    pub unhealthy_threshold: u32,
    /// After a replica starts, failures are ignored for this long.
    pub grace_period: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HealthCheckKind {
    /// `GET path` on the replica's port; 200..=399 is healthy.
    Http { path: String },
    /// A program run inside the replica (exec form, as ECS's `CMD`); exit 0
    /// is healthy. Use `[sh, -c, "..."]` for a shell command.
    Command { command: Vec<String> },
    /// gRPC's `grpc.health.v1.Health/Check` for `service` (`""`: the
    /// server as a whole) over h2c on the replica's port; `SERVING` is
    /// healthy. Only for `protocol: http2` or `grpc`.
    Grpc { service: String },
}

/// What a service's port speaks (ALB's target group protocol version).
/// `http2` and `grpc` are HTTP/2 without TLS (h2c, prior knowledge); with
/// `grpc` the load balancer also answers gRPC calls from HTTP/1.1 clients
/// itself (426), since they could not carry gRPC's trailers.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Default,
    serde::Serialize,
    serde::Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum ServiceProtocol {
    /// HTTP/1.1 (clients on HTTP/2 are translated).
    #[default]
    Http1,
    /// HTTP/2 without TLS (h2c).
    Http2,
    /// gRPC: HTTP/2 without TLS, trailers passed through.
    Grpc,
}

impl ServiceProtocol {
    pub const ALL: [ServiceProtocol; 3] = [
        ServiceProtocol::Http1,
        ServiceProtocol::Http2,
        ServiceProtocol::Grpc,
    ];

    /// The protocol as written in a file.
    pub fn as_str(self) -> &'static str {
        match self {
            ServiceProtocol::Http1 => "http1",
            ServiceProtocol::Http2 => "http2",
            ServiceProtocol::Grpc => "grpc",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Deployment {
    pub strategy: DeploymentStrategy,
    /// Rolling only: the share of `replicas` that must stay healthy (rounded up).
    pub min_healthy_percent: u32,
    /// Rolling only: the share of `replicas` that may run at once (rounded down).
    pub max_percent: u32,
    pub circuit_breaker: CircuitBreaker,
    /// How long a replica taken out of the load balancer keeps serving the
    /// requests it has before it is stopped.
    pub drain: Duration,
    /// `blue_green:` as written; `None`: its defaults. Set only with
    /// `strategy: blue_green`, as each strategy's block is only with its
    /// strategy; [`Deployment::blue_green_settings`] fills in defaults.
    pub blue_green: Option<BlueGreen>,
    /// `canary:` as written; `None`: [`Canary::default`].
    pub canary: Option<Canary>,
    /// `linear:` as written; `None`: [`Linear::default`].
    pub linear: Option<Linear>,
    /// `steps:` as written; set exactly when the strategy is `steps`.
    pub steps: Option<Vec<Step>>,
    /// How the new revision is judged (canary, linear and steps only): in
    /// `{analysis: default}` steps, and after every canary or linear pause.
    pub analysis: Option<Analysis>,
    /// `None`: [`DEFAULT_CANARY_HEADER`]; see [`Deployment::canary_header`].
    /// Not with `rolling`, which runs no separate new revision to route to.
    pub canary_header: Option<String>,
}

#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Default,
    serde::Serialize,
    serde::Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum DeploymentStrategy {
    /// Replace replicas a few at a time, within min_healthy_percent and max_percent.
    #[default]
    Rolling,
    /// Start a full new set beside the old one, then switch the traffic at once.
    BlueGreen,
    /// A share of the traffic for a while, then the rest.
    Canary,
    /// A share more of the traffic at every interval until all of it.
    Linear,
    /// The steps written under `steps:`.
    Steps,
}

impl DeploymentStrategy {
    /// The strategy as written in a file.
    pub fn as_str(self) -> &'static str {
        match self {
            DeploymentStrategy::Rolling => "rolling",
            DeploymentStrategy::BlueGreen => "blue_green",
            DeploymentStrategy::Canary => "canary",
            DeploymentStrategy::Linear => "linear",
            DeploymentStrategy::Steps => "steps",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CircuitBreaker {
    /// Failed replica starts (or health checks) that fail the deployment.
    pub threshold: u32,
    /// Whether a failed deployment returns to the last one that succeeded.
    pub rollback: bool,
}

/// Limits; `None` = no limit.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Resources {
    /// CPUs, fractions allowed (`0.5`).
    pub cpus: Option<f64>,
    /// Bytes.
    pub memory: Option<u64>,
}

/// The fields of a service an environment changes; `None` (or an empty map)
/// leaves the service's value. Maps are merged key by key. `container` is
/// not here: one imagedefinitions.json deploys to every environment, so the
/// container's name cannot differ between them.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ServiceOverride {
    pub image: Option<String>,
    pub command: Option<Vec<String>>,
    pub user: Option<String>,
    pub port: Option<u16>,
    pub protocol: Option<ServiceProtocol>,
    pub stickiness: Option<std::time::Duration>,
    pub replicas: Option<u32>,
    pub environment: BTreeMap<String, String>,
    pub secrets: BTreeMap<String, String>,
    pub health_check: HealthCheckOverride,
    pub deployment: DeploymentOverride,
    /// A limit given here replaces the service's; an absent one keeps it.
    pub resources: Resources,
    /// Where the service's name is written in the environment's `services`.
    pub location: Location,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HealthCheckOverride {
    pub kind: Option<HealthCheckKind>,
    pub interval: Option<Duration>,
    pub timeout: Option<Duration>,
    pub healthy_threshold: Option<u32>,
    pub unhealthy_threshold: Option<u32>,
    pub grace_period: Option<Duration>,
}

/// A strategy block (`blue_green`, `canary`, `linear`, `steps`), the
/// `analysis` and the `canary_header` given here replace the service's
/// whole; a `strategy` given here also drops the service's blocks of the
/// other strategies.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DeploymentOverride {
    pub strategy: Option<DeploymentStrategy>,
    pub min_healthy_percent: Option<u32>,
    pub max_percent: Option<u32>,
    pub circuit_breaker_threshold: Option<u32>,
    pub circuit_breaker_rollback: Option<bool>,
    pub drain: Option<Duration>,
    pub blue_green: Option<BlueGreen>,
    pub canary: Option<Canary>,
    pub linear: Option<Linear>,
    pub steps: Option<Vec<Step>>,
    pub analysis: Option<Analysis>,
    pub canary_header: Option<String>,
}

impl Default for HealthCheck {
    fn default() -> Self {
        HealthCheck {
            kind: HealthCheckKind::Http {
                path: "/".to_owned(),
            },
            interval: Duration::from_secs(5),
            timeout: Duration::from_secs(2),
            healthy_threshold: 2,
            unhealthy_threshold: 2,
            grace_period: Duration::from_secs(10),
        }
    }
}

impl Default for Deployment {
    fn default() -> Self {
        Deployment {
            strategy: DeploymentStrategy::Rolling,
            min_healthy_percent: 100,
            max_percent: 200,
            circuit_breaker: CircuitBreaker {
                threshold: 3,
                rollback: true,
            },
            drain: Duration::from_secs(5),
            blue_green: None,
            canary: None,
            linear: None,
            steps: None,
            analysis: None,
            canary_header: None,
        }
    }
}

/// Which part of a service a problem found by [`Service::problems`] is about,
/// so that the decoder can point at it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Part {
    HealthCheck,
    Deployment,
    /// A key of `deployment` (`canary`, `analysis`, …).
    DeploymentKey(&'static str),
    /// A step of `deployment.steps`, by index.
    Step(usize),
    Secrets,
}

impl Service {
    /// A service with every default: what `NAME: {}` means.
    pub fn new(name: ServiceName, location: Location) -> Service {
        Service {
            container: name.as_str().to_owned(),
            name,
            image: None,
            command: None,
            user: None,
            port: DEFAULT_PORT,
            protocol: ServiceProtocol::Http1,
            stickiness: None,
            replicas: 1,
            environment: BTreeMap::new(),
            secrets: BTreeMap::new(),
            health_check: HealthCheck::default(),
            deployment: Deployment::default(),
            resources: Resources::default(),
            location,
        }
    }

    /// This service with `changes` applied. The result is not checked here:
    /// `assemble` checks every combination a project holds.
    pub fn with_override(&self, changes: &ServiceOverride) -> Service {
        fn set<T: Clone>(target: &mut T, value: &Option<T>) {
            if let Some(value) = value {
                *target = value.clone();
            }
        }
        let mut out = self.clone();
        set(&mut out.image, &changes.image.clone().map(Some));
        set(&mut out.command, &changes.command.clone().map(Some));
        set(&mut out.user, &changes.user.clone().map(Some));
        set(&mut out.port, &changes.port);
        set(&mut out.protocol, &changes.protocol);
        set(&mut out.stickiness, &changes.stickiness.map(Some));
        set(&mut out.replicas, &changes.replicas);
        out.environment.extend(changes.environment.clone());
        out.secrets.extend(changes.secrets.clone());

        let h = &changes.health_check;
        set(&mut out.health_check.kind, &h.kind);
        set(&mut out.health_check.interval, &h.interval);
        set(&mut out.health_check.timeout, &h.timeout);
        set(
            &mut out.health_check.healthy_threshold,
            &h.healthy_threshold,
        );
        set(
            &mut out.health_check.unhealthy_threshold,
            &h.unhealthy_threshold,
        );
        set(&mut out.health_check.grace_period, &h.grace_period);

        let d = &changes.deployment;
        set(&mut out.deployment.strategy, &d.strategy);
        set(
            &mut out.deployment.min_healthy_percent,
            &d.min_healthy_percent,
        );
        set(&mut out.deployment.max_percent, &d.max_percent);
        set(
            &mut out.deployment.circuit_breaker.threshold,
            &d.circuit_breaker_threshold,
        );
        set(
            &mut out.deployment.circuit_breaker.rollback,
            &d.circuit_breaker_rollback,
        );
        set(&mut out.deployment.drain, &d.drain);
        if let Some(strategy) = d.strategy {
            let blocks = &mut out.deployment;
            if strategy != DeploymentStrategy::BlueGreen {
                blocks.blue_green = None;
            }
            if strategy != DeploymentStrategy::Canary {
                blocks.canary = None;
            }
            if strategy != DeploymentStrategy::Linear {
                blocks.linear = None;
            }
            if strategy != DeploymentStrategy::Steps {
                blocks.steps = None;
            }
        }
        set(
            &mut out.deployment.blue_green,
            &d.blue_green.clone().map(Some),
        );
        set(&mut out.deployment.canary, &d.canary.map(Some));
        set(&mut out.deployment.linear, &d.linear.map(Some));
        set(&mut out.deployment.steps, &d.steps.clone().map(Some));
        set(&mut out.deployment.analysis, &d.analysis.clone().map(Some));
        set(
            &mut out.deployment.canary_header,
            &d.canary_header.clone().map(Some),
        );

        if changes.resources.cpus.is_some() {
            out.resources.cpus = changes.resources.cpus;
        }
        if changes.resources.memory.is_some() {
            out.resources.memory = changes.resources.memory;
        }
        out
    }

    /// The secrets' parameter names with `${environment}` replaced.
    pub fn secret_parameters(&self, environment: &EnvironmentName) -> BTreeMap<String, String> {
        self.secrets
            .iter()
            .map(|(variable, name)| (variable.clone(), parameter_name(name, environment)))
            .collect()
    }

    /// The rules that involve several fields, each broken one as the part it
    /// concerns and a message. With `environment`, secrets are checked with
    /// its name in place of `${environment}`.
    pub(crate) fn problems(&self, environment: Option<&EnvironmentName>) -> Vec<(Part, String)> {
        let mut problems = Vec::new();
        let h = &self.health_check;
        if h.timeout >= h.interval {
            problems.push((
                Part::HealthCheck,
                format!(
                    "the health check's timeout ({}) must be shorter than its interval ({})",
                    crate::duration::format_duration(h.timeout),
                    crate::duration::format_duration(h.interval)
                ),
            ));
        }
        if matches!(h.kind, HealthCheckKind::Grpc { .. }) && self.protocol == ServiceProtocol::Http1
        {
            problems.push((
                Part::HealthCheck,
                "a `grpc` health check speaks HTTP/2: it needs `protocol: grpc` (or `http2`) on the service".to_owned(),
            ));
        }
        if let Some(message) = self.stall() {
            problems.push((Part::Deployment, message));
        }
        problems.extend(self.deployment.problems());
        for variable in self.secrets.keys() {
            if self.environment.contains_key(variable) {
                problems.push((
                    Part::Secrets,
                    format!("`{variable}` is both in `environment` and in `secrets`; keep one"),
                ));
            }
        }
        if let Some(environment) = environment {
            for (variable, name) in &self.secrets {
                if !name.contains(ENVIRONMENT_PLACEHOLDER) {
                    // Checked, with the same result, where it is written.
                    continue;
                }
                let name = parameter_name(name, environment);
                if let Err(problem) = check_parameter_name(&name) {
                    problems.push((
                        Part::Secrets,
                        format!(
                            "secret `{variable}` reads parameter `{name}` here, which is not a valid parameter name: {problem}"
                        ),
                    ));
                }
            }
        }
        problems
    }

    /// Why a rolling deployment of this service could never start or stop a
    /// replica, if it could not. ECS rounds the minimum up and the maximum
    /// down, and stalls when neither leaves room.
    fn stall(&self) -> Option<String> {
        let d = &self.deployment;
        if d.strategy != DeploymentStrategy::Rolling || self.replicas == 0 {
            return None;
        }
        let replicas = u64::from(self.replicas);
        // Saturating: a `Service` built by hand may hold any u32.
        let most = replicas.saturating_mul(u64::from(d.max_percent)) / 100;
        let least = replicas
            .saturating_mul(u64::from(d.min_healthy_percent))
            .div_ceil(100);
        if most > replicas || least < replicas {
            return None;
        }
        let plural = if replicas == 1 { "" } else { "s" };
        Some(format!(
            "with {replicas} replica{plural}, min_healthy_percent {} and max_percent {} leave no room to start a new replica first ({}% of {replicas} rounds down to {most}) or to stop an old one first ({}% rounds up to {least}): the deployment would never progress; raise max_percent or lower min_healthy_percent",
            d.min_healthy_percent, d.max_percent, d.max_percent, d.min_healthy_percent
        ))
    }
}

/// `name` with every `${environment}` replaced by `environment`.
pub(crate) fn parameter_name(name: &str, environment: &EnvironmentName) -> String {
    name.replace(ENVIRONMENT_PLACEHOLDER, environment.as_str())
}

/// SSM's rules for a parameter name (the parameter store applies the same):
/// `a-zA-Z0-9_.-` and `/`, a name with a hierarchy starts with `/`, at most
/// 15 levels and 1011 characters, and it does not start with `aws` or `ssm`.
pub(crate) fn check_parameter_name(name: &str) -> Result<(), String> {
    let body = match name.strip_prefix('/') {
        Some(body) => body,
        None if name.contains('/') => {
            return Err("a name with a hierarchy must start with `/`".to_owned());
        }
        None => name,
    };
    if body.is_empty() {
        return Err("it is empty".to_owned());
    }
    if let Some(c) = body
        .chars()
        .find(|&c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-' | '/')))
    {
        return Err(format!(
            "`{c}` is not allowed (only a-z A-Z 0-9 _ . - and /)"
        ));
    }
    if body.split('/').any(str::is_empty) {
        return Err("it has an empty level (`//` or a trailing `/`)".to_owned());
    }
    if body.split('/').count() > 15 {
        return Err("it has more than 15 levels".to_owned());
    }
    if body.len() + 1 > 1011 {
        return Err("it is longer than 1011 characters".to_owned());
    }
    let reserved = body
        .get(..3)
        .is_some_and(|p| p.eq_ignore_ascii_case("aws") || p.eq_ignore_ascii_case("ssm"));
    if reserved {
        return Err("names starting with `aws` or `ssm` are reserved".to_owned());
    }
    Ok(())
}

/// Checks a container name (ECS's rule).
pub(crate) fn check_container(name: &str) -> Result<(), String> {
    NameRule::Container.check(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(replicas: u32, min: u32, max: u32) -> Service {
        let mut s = Service::new(ServiceName("s".into()), Location::default());
        s.replicas = replicas;
        s.deployment.min_healthy_percent = min;
        s.deployment.max_percent = max;
        s
    }

    #[test]
    fn a_rolling_deployment_needs_room_to_start_or_stop_a_replica() {
        assert!(service(1, 100, 200).stall().is_none());
        assert!(service(1, 0, 100).stall().is_none());
        assert!(service(0, 100, 100).stall().is_none());
        assert!(service(4, 75, 100).stall().is_none());
        assert!(service(1, 100, 100).stall().is_some());
        // 150% of 1 rounds down to 1, 100% rounds up to 1.
        assert!(service(1, 100, 150).stall().is_some());
        // 50% of 1 rounds up to 1: no room to stop one first either.
        assert!(service(1, 50, 150).stall().is_some());
        assert!(service(2, 50, 150).stall().is_none());
    }

    #[test]
    fn parameter_names_follow_ssm() {
        for good in ["a", "/shop/production/SERVICE_DNS", "/a.b-c_d", "/Dev/aws"] {
            assert_eq!(check_parameter_name(good), Ok(()), "{good}");
        }
        for bad in [
            "", "/", "a/b", "/a//b", "/a/", "/aws/x", "/SSM", "awsx", "/a b", "/a$b",
        ] {
            assert!(check_parameter_name(bad).is_err(), "{bad:?} was accepted");
        }
        let deep: String = (0..16).map(|i| format!("/l{i}")).collect();
        assert!(check_parameter_name(&deep).is_err());
        assert!(check_parameter_name(&format!("/{}", "a".repeat(1011))).is_err());
    }
}
