//! A revision: one immutable version of a service in an environment.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use gantry_runtime::Runtime;
use gantry_spec::service::{HealthCheckKind, Service, ServiceProtocol};

/// A secret as a revision keeps it: which parameter, which version.
/// (Fields in alphabetical order: see [`crate::DeploymentRecord`].)
#[derive(
    Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema,
)]
pub struct SecretRef {
    pub parameter: String,
    /// Whether the parameter is a SecureString.
    pub secure: bool,
    /// The environment variable it fills.
    pub var: String,
    pub version: u64,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Revision {
    pub number: u64,
    pub environment: String,
    pub service: String,
    /// The container name matched in `imagedefinitions.json`.
    pub container: String,
    /// `registry/repo@sha256:…`
    pub image: String,
    pub command: Option<Vec<String>>,
    pub port: u16,
    pub replicas: u32,
    pub environment_vars: BTreeMap<String, String>,
    pub secrets: Vec<SecretRef>,
    pub health_path: String,
    /// A command health check's argv, run inside each replica; `None`: the
    /// HTTP GET of `health_path`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_command: Option<Vec<String>>,
    /// A gRPC health check's service name (`""`: the whole server);
    /// `None`: not a gRPC check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_grpc: Option<String>,
    /// What the replicas' port speaks; absent from revisions stored before
    /// it existed, which were all HTTP/1.1.
    #[serde(default, skip_serializing_if = "is_http1")]
    pub protocol: ServiceProtocol,
    /// Sticky sessions' cookie duration (ms); `None`: no stickiness (and
    /// absent from revisions stored before it existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sticky_ms: Option<u64>,
    pub health_interval_ms: u64,
    pub health_timeout_ms: u64,
    pub healthy_threshold: u32,
    pub unhealthy_threshold: u32,
    pub grace_ms: u64,
    /// `rolling` or `blue_green`.
    #[serde(default)]
    pub blue_green: bool,
    /// How traffic moves to this revision when it replaces a running one
    /// (blue_green, canary, linear, steps): its steps, resolved. `None`
    /// (and absent from revisions stored before issue 13): rolling, or a
    /// blue/green switch as [`Revision::shift`] makes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shift: Option<ShiftPlan>,
    pub min_healthy_percent: u32,
    pub max_percent: u32,
    pub breaker_threshold: u32,
    pub rollback: bool,
    pub drain_ms: u64,
    pub memory: Option<u64>,
    pub cpus: Option<f64>,
    /// Docker replicas share the host's network (`network: host`).
    #[serde(default)]
    pub host_network: bool,
    /// The user replicas run as (a name or `uid[:gid]`); `None`: the
    /// server's user.
    #[serde(default)]
    pub user: Option<String>,
    /// Unix milliseconds.
    pub created_at: i64,
    /// What made it: `deploy action …`, `gantry deploy`, `rollback to 3`.
    pub cause: String,
    /// The pipeline execution whose deploy action made it (or the
    /// revision a rollback returned to), if one did.
    #[serde(default)]
    pub execution: Option<String>,
}

/// What asks for a deployment: the revision's `cause`, and the pipeline
/// execution whose deploy action asks, if one does.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Cause {
    pub text: String,
    pub execution: Option<String>,
}

impl From<&str> for Cause {
    fn from(text: &str) -> Cause {
        Cause {
            text: text.to_string(),
            execution: None,
        }
    }
}

impl Revision {
    /// A revision of `service` running `image`, with secrets pinned.
    pub fn new(
        number: u64,
        environment: &str,
        service: &Service,
        image: String,
        secrets: Vec<SecretRef>,
        created_at: i64,
        cause: String,
    ) -> Result<Revision, String> {
        let (health_path, health_command, health_grpc) = match &service.health_check.kind {
            HealthCheckKind::Http { path } => (path.clone(), None, None),
            HealthCheckKind::Command { command } => (String::new(), Some(command.clone()), None),
            HealthCheckKind::Grpc { service } => (String::new(), None, Some(service.clone())),
        };
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        Ok(Revision {
            number,
            environment: environment.to_string(),
            service: service.name.to_string(),
            container: service.container.clone(),
            image,
            command: service.command.clone(),
            port: service.port,
            replicas: service.replicas,
            environment_vars: service.environment.clone(),
            secrets,
            health_path,
            health_command,
            health_grpc,
            protocol: service.protocol,
            sticky_ms: service.stickiness.map(ms),
            health_interval_ms: ms(service.health_check.interval),
            health_timeout_ms: ms(service.health_check.timeout),
            healthy_threshold: service.health_check.healthy_threshold,
            unhealthy_threshold: service.health_check.unhealthy_threshold,
            grace_ms: ms(service.health_check.grace_period),
            blue_green: matches!(
                service.deployment.strategy,
                gantry_spec::service::DeploymentStrategy::BlueGreen
            ),
            shift: ShiftPlan::of(&service.deployment),
            min_healthy_percent: service.deployment.min_healthy_percent,
            max_percent: service.deployment.max_percent,
            breaker_threshold: service.deployment.circuit_breaker.threshold,
            rollback: service.deployment.circuit_breaker.rollback,
            drain_ms: ms(service.deployment.drain),
            memory: service.resources.memory,
            cpus: service.resources.cpus,
            host_network: false,
            user: service.user.clone(),
            created_at,
            cause,
            execution: None,
        })
    }

    /// Whether `other` would run exactly what this revision runs: the same
    /// image, definition and parameter versions (number, time and cause
    /// aside).
    pub fn same_as(&self, other: &Revision) -> bool {
        let strip = |r: &Revision| Revision {
            number: 0,
            created_at: 0,
            cause: String::new(),
            execution: None,
            ..r.clone()
        };
        strip(self) == strip(other)
    }

    /// The steps that move traffic to this revision, or `None` for a
    /// rolling deployment. A blue/green revision stored before the plan
    /// existed switches at once, as it always did.
    pub fn shift_plan(&self) -> Option<ShiftPlan> {
        match &self.shift {
            Some(plan) => Some(plan.clone()),
            None if self.blue_green => Some(ShiftPlan {
                steps: vec![ShiftStep::Weight(100)],
                ..ShiftPlan::default()
            }),
            None => None,
        }
    }

    pub fn drain(&self) -> Duration {
        Duration::from_millis(self.drain_ms)
    }

    /// The load balancer's health check of this revision's replicas; a
    /// command check runs through `runtime` inside each replica (exit 0 is
    /// healthy, as Docker's `HEALTHCHECK` reads it).
    /// How long the load balancer's cookie keeps a client on one replica.
    pub fn stickiness(&self) -> Option<Duration> {
        self.sticky_ms.map(Duration::from_millis)
    }

    pub fn health_check(
        &self,
        runtime: Option<&Arc<dyn Runtime>>,
    ) -> gantry_proxy::HealthCheckConfig {
        let command = self.health_command.clone().map(|argv| {
            let runtime = runtime.cloned();
            let argv = Arc::new(argv);
            let check = move |id: String| {
                let (runtime, argv) = (runtime.clone(), argv.clone());
                let probe = async move {
                    let Some(runtime) = runtime else {
                        return Err("no runtime to run the check in".to_owned());
                    };
                    // The proxy bounds the whole check by its timeout.
                    let ran = runtime.exec(&id, &argv, Duration::from_secs(3600)).await?;
                    if ran.succeeded() {
                        Ok(())
                    } else {
                        let how = ran
                            .code
                            .map_or("was killed".to_owned(), |c| format!("exited {c}"));
                        Err(if ran.output.is_empty() {
                            format!("the health command {how}")
                        } else {
                            format!("the health command {how}: {}", ran.output)
                        })
                    }
                };
                Box::pin(probe)
                    as std::pin::Pin<
                        Box<dyn std::future::Future<Output = Result<(), String>> + Send>,
                    >
            };
            gantry_proxy::CommandCheck(Arc::new(check))
        });
        gantry_proxy::HealthCheckConfig {
            command,
            grpc: self.health_grpc.clone(),
            path: self.health_path.clone(),
            interval: Duration::from_millis(self.health_interval_ms),
            timeout: Duration::from_millis(self.health_timeout_ms),
            healthy_threshold: self.healthy_threshold,
            unhealthy_threshold: self.unhealthy_threshold,
            grace: Duration::from_millis(self.grace_ms),
            ..Default::default()
        }
    }

    /// What the load balancer speaks to this revision's replicas.
    pub fn target_protocol(&self) -> gantry_proxy::Protocol {
        match self.protocol {
            ServiceProtocol::Http1 => gantry_proxy::Protocol::Http1,
            ServiceProtocol::Http2 => gantry_proxy::Protocol::Http2,
            ServiceProtocol::Grpc => gantry_proxy::Protocol::Grpc,
        }
    }

    /// How long a new replica may take to turn healthy before it counts as
    /// failed (a replica that fails its checks fails sooner: the load
    /// balancer says so as soon as it is Unhealthy).
    pub fn start_timeout(&self) -> Duration {
        let checks = u64::from(self.healthy_threshold.max(self.unhealthy_threshold) + 2);
        Duration::from_millis(
            self.grace_ms + self.health_interval_ms * checks + self.health_timeout_ms,
        ) + Duration::from_secs(10)
    }

    /// ECS's rounding: the healthy floor rounds up, the ceiling rounds down.
    pub fn bounds(&self) -> (usize, usize) {
        let n = self.replicas as usize;
        let min = (n * self.min_healthy_percent as usize).div_ceil(100);
        let max = (n * self.max_percent as usize / 100).max(n);
        (min, max)
    }
}

fn is_http1(protocol: &ServiceProtocol) -> bool {
    *protocol == ServiceProtocol::Http1
}

/// A progressive deployment's plan as a revision keeps it: the spec's
/// [`gantry_spec::service::RolloutStep`]s in a stored form (durations in
/// milliseconds), and the strategy's settings the deployer needs while it
/// shifts traffic.
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize, serde::Deserialize)]
pub struct ShiftPlan {
    pub steps: Vec<ShiftStep>,
    /// Blue/green: a listener that sends every request to the new revision
    /// until the switch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_listener: Option<std::net::SocketAddr>,
    /// How long the old revision stays registered at weight 0 after the
    /// new one took all the traffic (blue/green's `termination_wait`).
    #[serde(default)]
    pub termination_wait_ms: u64,
    /// The header that routes a request to either revision at any weight.
    #[serde(default = "default_canary_header")]
    pub canary_header: String,
}

fn default_canary_header() -> String {
    gantry_spec::service::DEFAULT_CANARY_HEADER.to_string()
}

/// One step of a [`ShiftPlan`].
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ShiftStep {
    /// This percentage of the requests goes to the new revision.
    Weight(u32),
    /// Wait this many milliseconds, or (`None`) for an operator's promote.
    Pause(Option<u64>),
    Analysis(StoredAnalysis),
}

/// [`gantry_spec::service::Analysis`] as a revision stores it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct StoredAnalysis {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_error_rate: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_p99_ms: Option<u64>,
    pub min_requests: u32,
    pub window_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_error_ratio: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_p99_ratio: Option<f64>,
    /// `(url, query, max)`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prometheus: Option<(String, String, f64)>,
    /// A path requested on each new replica, or an absolute URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probe_path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probe_url: Option<String>,
    #[serde(default = "default_expect_status")]
    pub probe_status: u16,
}

fn default_expect_status() -> u16 {
    200
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl StoredAnalysis {
    fn of(a: &gantry_spec::service::Analysis) -> StoredAnalysis {
        use gantry_spec::service::ProbeTarget;
        let (probe_path, probe_url) = match a.probe.as_ref().map(|p| &p.target) {
            Some(ProbeTarget::Path(path)) => (Some(path.clone()), None),
            Some(ProbeTarget::Url(url)) => (None, Some(url.clone())),
            None => (None, None),
        };
        StoredAnalysis {
            max_error_rate: a.max_error_rate,
            max_p99_ms: a.max_p99.map(millis),
            min_requests: a.min_requests,
            window_ms: millis(a.window),
            max_error_ratio: a.compare_to_stable.and_then(|c| c.max_error_ratio),
            max_p99_ratio: a.compare_to_stable.and_then(|c| c.max_p99_ratio),
            prometheus: a
                .prometheus
                .as_ref()
                .map(|p| (p.url.clone(), p.query.clone(), p.max)),
            probe_path,
            probe_url,
            probe_status: a.probe.as_ref().map_or(200, |p| p.expect_status),
        }
    }

    pub fn window(&self) -> Duration {
        Duration::from_millis(self.window_ms)
    }
}

impl ShiftPlan {
    /// The plan of a deployment block; `None` for `rolling`.
    pub fn of(deployment: &gantry_spec::service::Deployment) -> Option<ShiftPlan> {
        use gantry_spec::service::{DeploymentStrategy, Pause, RolloutStep};
        if deployment.strategy == DeploymentStrategy::Rolling {
            return None;
        }
        let steps = deployment
            .rollout_steps()
            .iter()
            .map(|step| match step {
                RolloutStep::Weight(w) => ShiftStep::Weight(*w),
                RolloutStep::Pause(Pause::For(d)) => ShiftStep::Pause(Some(millis(*d))),
                RolloutStep::Pause(Pause::Manual) => ShiftStep::Pause(None),
                RolloutStep::Analysis(a) => ShiftStep::Analysis(StoredAnalysis::of(a)),
            })
            .collect();
        let blue_green = (deployment.strategy == DeploymentStrategy::BlueGreen)
            .then(|| deployment.blue_green_settings());
        Some(ShiftPlan {
            steps,
            test_listener: blue_green.as_ref().and_then(|b| b.test_listener),
            termination_wait_ms: blue_green.map_or(0, |b| millis(b.termination_wait)),
            canary_header: deployment.canary_header().to_string(),
        })
    }

    pub fn termination_wait(&self) -> Duration {
        Duration::from_millis(self.termination_wait_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gantry_spec::location::Location;
    use gantry_spec::service::ServiceName;

    fn revision_of(service: &Service) -> Revision {
        Revision::new(
            1,
            "qa",
            service,
            "r/x@sha256:0".into(),
            vec![],
            0,
            "t".into(),
        )
        .unwrap()
    }

    #[test]
    fn the_protocol_and_a_grpc_check_reach_the_load_balancer() {
        let mut service = Service::new(ServiceName::new("api").unwrap(), Location::default());
        service.protocol = ServiceProtocol::Grpc;
        service.health_check.kind = HealthCheckKind::Grpc {
            service: "shop.Catalog".into(),
        };
        let revision = revision_of(&service);
        assert_eq!(revision.target_protocol(), gantry_proxy::Protocol::Grpc);
        let check = revision.health_check(None);
        assert_eq!(check.grpc.as_deref(), Some("shop.Catalog"));
        assert!(check.command.is_none());
    }

    #[test]
    fn revisions_stored_before_protocols_read_as_http1() {
        let service = Service::new(ServiceName::new("web").unwrap(), Location::default());
        let revision = revision_of(&service);
        let json = serde_json::to_value(&revision).unwrap();
        // HTTP/1.1 and an HTTP check are written as before: not at all.
        assert!(json.get("protocol").is_none() && json.get("health_grpc").is_none());
        let read: Revision = serde_json::from_value(json).unwrap();
        assert_eq!(read.protocol, ServiceProtocol::Http1);
        assert_eq!(read.target_protocol(), gantry_proxy::Protocol::Http1);
        assert!(read.health_check(None).grpc.is_none());
    }
}
