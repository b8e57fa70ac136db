//! Reading `services:` (and the per-environment overrides, which take the
//! same keys but `container`) from the YAML tree, every problem recorded.
//!
//! Services have no wiring to check inside one file, so decoding and
//! validating are one pass: each key is decoded straight into its validated
//! value. The `Raw*` types here only describe the keys for the JSON Schema;
//! a test keeps them and the key lists below in step.

use std::collections::BTreeMap;
use std::time::Duration;

use schemars::JsonSchema;

mod rollout;
#[cfg(test)]
pub(crate) use rollout::{
    ANALYSIS_KEYS, BLUE_GREEN_KEYS, CANARY_KEYS, COMPARE_KEYS, LINEAR_KEYS, PROBE_KEYS,
    PROMETHEUS_KEYS,
};
use rollout::{RawAnalysis, RawBlueGreen, RawCanary, RawLinear, RawStep};

use super::{
    DeploymentOverride, DeploymentStrategy, ENVIRONMENT_PLACEHOLDER, HealthCheckKind,
    HealthCheckOverride, Part, Resources, Service, ServiceName, ServiceOverride, ServiceProtocol,
    check_container, check_parameter_name,
};
use crate::duration::DURATION_PATTERN;
use crate::location::Location;
use crate::names::{NameRule, variable_name_problem};
use crate::pipeline::raw::ScalarText;
use crate::yaml::{Diagnostics, Fields, Located, Node, Value};

/// Keys of a service.
pub(crate) const SERVICE_KEYS: &[&str] = &[
    "container",
    "image",
    "command",
    "user",
    "port",
    "protocol",
    "stickiness",
    "replicas",
    "environment",
    "secrets",
    "health_check",
    "deployment",
    "resources",
];
/// Keys of a service override: all but `container`.
pub(crate) const OVERRIDE_KEYS: &[&str] = &[
    "image",
    "command",
    "user",
    "port",
    "protocol",
    "stickiness",
    "replicas",
    "environment",
    "secrets",
    "health_check",
    "deployment",
    "resources",
];
pub(crate) const HEALTH_CHECK_KEYS: &[&str] = &[
    "path",
    "command",
    "grpc",
    "interval",
    "timeout",
    "healthy_threshold",
    "unhealthy_threshold",
    "grace_period",
];
pub(crate) const DEPLOYMENT_KEYS: &[&str] = &[
    "strategy",
    "min_healthy_percent",
    "max_percent",
    "circuit_breaker",
    "drain",
    "blue_green",
    "canary",
    "linear",
    "steps",
    "analysis",
    "canary_header",
];
pub(crate) const GRPC_CHECK_KEYS: &[&str] = &["service"];
pub(crate) const CIRCUIT_BREAKER_KEYS: &[&str] = &["threshold", "rollback"];
pub(crate) const RESOURCES_KEYS: &[&str] = &["cpus", "memory"];

/// Docker refuses a memory limit below 6 MiB.
const MIN_MEMORY: u64 = 6 * 1024 * 1024;

/// A service: a task definition and the ECS service that runs it.
#[derive(JsonSchema)]
#[schemars(rename = "Service", deny_unknown_fields)]
#[allow(dead_code)] // Only its schema is used; the decoder builds a Service.
pub(crate) struct RawService {
    /// Its name in imagedefinitions.json; default: the service name.
    #[schemars(length(min = 1, max = 255), pattern(r"^[A-Za-z0-9_-]+$"))]
    container: Option<String>,
    #[schemars(flatten)]
    fields: RawServiceFields,
}

/// The fields of a service an environment may change.
#[derive(JsonSchema)]
#[schemars(rename = "ServiceOverride", deny_unknown_fields)]
#[allow(dead_code)] // Only its schema is used.
pub(crate) struct RawServiceFields {
    /// The image to run before any deploy; deploys replace it.
    image: Option<String>,
    /// Overrides the image's entrypoint and cmd.
    #[schemars(length(min = 1))]
    command: Option<Vec<String>>,
    /// The user replicas run as: a user name or uid[:gid]; default: gantry's
    /// own user (process runtime) or the image's (docker).
    #[schemars(pattern(r"^([A-Za-z_][A-Za-z0-9_.-]{0,31}|[0-9]{1,10}(:[0-9]{1,10})?)$"))]
    user: Option<String>,
    /// The container port, default 8080; the process runtime passes `PORT` instead.
    #[schemars(range(min = 1))]
    port: Option<u16>,
    /// What the port speaks: `http1` (default), `http2` or `grpc` (both
    /// HTTP/2 without TLS); the load balancer speaks it to the replicas.
    protocol: Option<ServiceProtocol>,
    /// Sticky sessions: the load balancer's cookie keeps a client on one
    /// replica for `duration` (1s to 7d), as ALB's lb_cookie stickiness.
    stickiness: Option<RawStickiness>,
    /// How many replicas run, default 1; 0 stops the service.
    #[schemars(range(max = 100))]
    replicas: Option<u32>,
    /// Plain environment variables.
    environment: Option<BTreeMap<String, ScalarText>>,
    /// Environment variables read from the parameter store: variable →
    /// parameter name, which may hold `${environment}`.
    secrets: Option<BTreeMap<String, String>>,
    /// How a replica is known to be healthy.
    health_check: Option<RawHealthCheck>,
    /// How a new image replaces the running one.
    deployment: Option<RawDeployment>,
    /// Limits; none by default.
    resources: Option<RawResources>,
}

/// An HTTP `path` or a `command`, checked every `interval`.
#[derive(JsonSchema)]
#[schemars(rename = "HealthCheck", deny_unknown_fields)]
#[allow(dead_code)] // Only its schema is used.
struct RawHealthCheck {
    /// `GET` this path on the replica's port (default `/`); 200 to 399 is healthy.
    #[schemars(pattern(r"^/"))]
    path: Option<String>,
    /// Instead of `path`: a program run in the replica; exit 0 is healthy.
    #[schemars(length(min = 1))]
    command: Option<Vec<String>>,
    /// Instead of `path`: gRPC's health check (`grpc.health.v1.Health/Check`);
    /// SERVING is healthy. Needs `protocol: grpc` or `http2`.
    grpc: Option<RawGrpcCheck>,
    /// 1s to 5m, default 5s.
    #[schemars(pattern(DURATION_PATTERN))]
    interval: Option<String>,
    /// 100ms to 2m, shorter than the interval, default 2s.
    #[schemars(pattern(DURATION_PATTERN))]
    timeout: Option<String>,
    /// Successes in a row that make a replica healthy, default 2.
    #[schemars(range(min = 2, max = 10))]
    healthy_threshold: Option<u32>,
    /// Failures in a row that make a replica unhealthy, default 2.
    #[schemars(range(min = 2, max = 10))]
    unhealthy_threshold: Option<u32>,
    /// Failures are ignored this long after a replica starts, default 10s.
    #[schemars(pattern(DURATION_PATTERN))]
    grace_period: Option<String>,
}

/// A gRPC health check.
#[derive(JsonSchema)]
#[schemars(rename = "GrpcHealthCheck", deny_unknown_fields)]
#[allow(dead_code)] // Only its schema is used.
struct RawGrpcCheck {
    /// The service name asked about; default `""`, the server as a whole.
    #[schemars(length(max = 256))]
    service: Option<String>,
}

#[derive(JsonSchema)]
#[schemars(rename = "Deployment", deny_unknown_fields)]
#[allow(dead_code)] // Only its schema is used.
struct RawDeployment {
    /// `rolling` (default), `blue_green`, `canary`, `linear` or `steps`.
    strategy: Option<DeploymentStrategy>,
    /// Rolling: the share of replicas that stays healthy, default 100.
    #[schemars(range(max = 100))]
    min_healthy_percent: Option<u32>,
    /// Rolling: the share of replicas that may run at once, default 200.
    #[schemars(range(min = 100, max = 200))]
    max_percent: Option<u32>,
    /// When a deployment gives up.
    circuit_breaker: Option<RawCircuitBreaker>,
    /// How long a replica leaving the load balancer finishes its requests, default 5s.
    #[schemars(pattern(DURATION_PATTERN))]
    drain: Option<String>,
    /// `strategy: blue_green` only: test listener, when to switch, how long the old revision stays.
    blue_green: Option<RawBlueGreen>,
    /// `strategy: canary` only, default `{percent: 10, interval: 5m}`.
    canary: Option<RawCanary>,
    /// `strategy: linear` only, default `{percent: 10, every: 1m}`.
    linear: Option<RawLinear>,
    /// `strategy: steps` only (and required there): the steps, the last `{weight: 100}`.
    steps: Option<Vec<RawStep>>,
    /// How the new revision is judged (canary, linear, steps): in
    /// `{analysis: default}` steps and after every canary or linear pause.
    analysis: Option<RawAnalysis>,
    /// A request with this header set to `always` goes to the new revision
    /// at any weight (`never`: to the old one); default X-Gantry-Canary.
    #[schemars(length(min = 1, max = 128), pattern(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$"))]
    canary_header: Option<String>,
}

#[derive(JsonSchema)]
#[schemars(rename = "CircuitBreaker", deny_unknown_fields)]
#[allow(dead_code)] // Only its schema is used.
struct RawCircuitBreaker {
    /// Failed replicas that fail the deployment, default 3.
    #[schemars(range(min = 1, max = 200))]
    threshold: Option<u32>,
    /// Return to the last deployment that succeeded, default true.
    rollback: Option<bool>,
}

#[derive(JsonSchema)]
#[schemars(rename = "Resources", deny_unknown_fields)]
#[allow(dead_code)] // Only its schema is used.
struct RawResources {
    /// CPUs, fractions allowed (0.5).
    #[schemars(range(min = 0.01, max = 1024.0))]
    cpus: Option<f64>,
    /// Bytes, or with a unit: 256Mi, 1Gi (powers of 1024), 512M (powers of 1000).
    memory: Option<MemorySize>,
}

/// A memory size: bytes, or a number and a unit.
struct MemorySize;

impl JsonSchema for MemorySize {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "MemorySize".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "Bytes, or a whole number and Ki, Mi, Gi, Ti (powers of 1024) or K, M, G, T (powers of 1000).",
            "anyOf": [
                {"type": "integer", "minimum": MIN_MEMORY},
                {"type": "string", "pattern": "^[0-9]+([KMGT]i?|k)?$"}
            ]
        })
    }
}

/// Where the parts of a service are written, to point at them from the
/// rules that involve several fields.
#[derive(Default)]
pub(crate) struct Spots {
    health_check: Option<Location>,
    deployment: Option<Location>,
    /// The keys written in `deployment`, each where it is written.
    deployment_keys: Vec<(&'static str, Location)>,
    /// Each step of `deployment.steps`.
    steps: Vec<Location>,
    secrets: Option<Location>,
}

impl Spots {
    pub(crate) fn of(&self, part: Part, fallback: Location) -> Location {
        let key = |name: &str| {
            self.deployment_keys
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, at)| *at)
        };
        match part {
            Part::HealthCheck => self.health_check,
            Part::Deployment => self.deployment,
            Part::DeploymentKey(name) => key(name).or(self.deployment),
            Part::Step(index) => self
                .steps
                .get(index)
                .copied()
                .or_else(|| key("steps"))
                .or(self.deployment),
            Part::Secrets => self.secrets,
        }
        .unwrap_or(fallback)
    }
}

/// Decodes `services:`. The map may be incomplete when there were errors,
/// which the caller knows from the diagnostics.
pub(crate) fn decode_services(
    diag: &mut Diagnostics<'_>,
    node: &Node,
) -> BTreeMap<ServiceName, Service> {
    let mut out = BTreeMap::new();
    let Some(map) = diag.map_or_empty(node, "`services`") else {
        return out;
    };
    for field in &map.fields {
        let location = field.key_node.location;
        let errors_before = diag.errors.len();
        let name = match NameRule::ServiceName.check(&field.key) {
            Ok(()) => Some(ServiceName(field.key.clone())),
            Err(message) => {
                diag.error(location, message);
                None
            }
        };
        let Some(fields) = diag.map_or_empty(field.value, &format!("service `{}`", field.key))
        else {
            continue;
        };
        fields.deny_unknown(diag, SERVICE_KEYS, &format!("in service `{}`", field.key));
        let container = fields
            .get("container")
            .and_then(|n| diag.string(n, "`container`"))
            .filter(|c| match check_container(&c.value) {
                Ok(()) => true,
                Err(message) => {
                    diag.error(c.location, message);
                    false
                }
            });
        let (changes, spots) = decode_fields(diag, &fields);
        let Some(name) = name else {
            continue;
        };
        let mut service = Service::new(name.clone(), location).with_override(&changes);
        if let Some(container) = container {
            service.container = container.value;
        }
        // With a field already refused, its default stands in for it, and a
        // rule involving it would only add a confusing second error.
        if diag.errors.len() == errors_before {
            for (part, message) in service.problems(None) {
                diag.error(spots.of(part, location), message);
            }
        }
        out.insert(name, service);
    }
    out
}

/// Decodes one environment's override of a service.
pub(crate) fn decode_override(
    diag: &mut Diagnostics<'_>,
    fields: &Fields<'_>,
    location: Location,
    context: &str,
) -> ServiceOverride {
    for field in &fields.fields {
        if field.key == "container" {
            diag.error(
                field.key_node.location,
                "`container` cannot change per environment: the same imagedefinitions.json deploys to every environment",
            );
        } else if !OVERRIDE_KEYS.contains(&field.key.as_str()) {
            diag.error(
                field.key_node.location,
                format!(
                    "unknown key `{}` {context}{}; expected one of: {}",
                    field.key,
                    crate::suggest::did_you_mean(&field.key, OVERRIDE_KEYS.iter().copied()),
                    OVERRIDE_KEYS.join(", ")
                ),
            );
        }
    }
    let (mut changes, _spots) = decode_fields(diag, fields);
    changes.location = location;
    changes
}

/// Decodes the keys services and overrides share, each checked on its own.
fn decode_fields(diag: &mut Diagnostics<'_>, fields: &Fields<'_>) -> (ServiceOverride, Spots) {
    let mut out = ServiceOverride {
        location: fields.location,
        ..ServiceOverride::default()
    };
    let mut spots = Spots::default();
    if let Some(image) = fields.get("image").and_then(|n| diag.string(n, "`image`")) {
        if image.value.is_empty() || image.value.contains(char::is_whitespace) {
            diag.error(
                image.location,
                format!(
                    "`image` must be an image reference such as `registry/repository:tag`, found `{}`",
                    image.value
                ),
            );
        }
        out.image = Some(image.value);
    }
    if let Some(node) = fields.get("command") {
        out.command = command(diag, node, "`command`");
    }
    if let Some(user) = fields.get("user").and_then(|n| diag.string(n, "`user`")) {
        if is_user(&user.value) {
            out.user = Some(user.value);
        } else {
            diag.error(
                user.location,
                format!(
                    "`user` must be a user name or uid[:gid] (such as `app` or `1000:1000`), found `{}`",
                    user.value
                ),
            );
        }
    }
    out.port = fields
        .get("port")
        .and_then(|n| diag.whole_number(n, "`port`", 1, 65_535))
        .and_then(|p| u16::try_from(p.value).ok());
    if let Some(text) = fields
        .get("protocol")
        .and_then(|n| diag.string(n, "`protocol`"))
    {
        out.protocol = ServiceProtocol::ALL
            .into_iter()
            .find(|p| p.as_str() == text.value);
        if out.protocol.is_none() {
            let names = ServiceProtocol::ALL.map(ServiceProtocol::as_str);
            diag.error(
                text.location,
                format!(
                    "unknown protocol `{}`{}; expected one of: {}",
                    text.value,
                    crate::suggest::did_you_mean(&text.value, names.iter().copied()),
                    names.join(", ")
                ),
            );
        }
    }
    if let Some(node) = fields.get("stickiness") {
        out.stickiness = stickiness(diag, node);
    }
    out.replicas = fields
        .get("replicas")
        .and_then(|n| diag.whole_number(n, "`replicas`", 0, 100))
        .and_then(|r| u32::try_from(r.value).ok());
    if let Some(node) = fields.get("environment") {
        out.environment = variables(diag, node, "`environment`", |diag, n| {
            diag.string_or_empty(n, "a value of `environment`")
        });
    }
    if let Some(node) = fields.get("secrets") {
        spots.secrets = Some(node.location);
        out.secrets = variables(diag, node, "`secrets`", |diag, n| {
            let name = diag.string(n, "a parameter name in `secrets`")?;
            match check_secret(&name.value) {
                Ok(()) => Some(name),
                Err(problem) => {
                    diag.error(
                        name.location,
                        format!("invalid parameter name `{}`: {problem}", name.value),
                    );
                    None
                }
            }
        });
    }
    if let Some(node) = fields.get("health_check") {
        spots.health_check = Some(node.location);
        if let Some(map) = diag.map(node, "`health_check`") {
            out.health_check = health_check(diag, &map);
        }
    }
    if let Some(node) = fields.get("deployment") {
        spots.deployment = Some(node.location);
        if let Some(map) = diag.map(node, "`deployment`") {
            out.deployment = deployment(diag, &map, &mut spots);
        }
    }
    if let Some(node) = fields.get("resources")
        && let Some(map) = diag.map(node, "`resources`")
    {
        out.resources = resources(diag, &map);
    }
    (out, spots)
}

/// A user name (`[A-Za-z_][A-Za-z0-9_.-]*`, at most 32 characters) or
/// `uid[:gid]`, as `docker run --user` and the process runtime take it.
/// The runtimes check replica specs with it too.
pub fn is_user(user: &str) -> bool {
    let number = |s: &str| !s.is_empty() && s.len() <= 10 && s.bytes().all(|b| b.is_ascii_digit());
    let name = |s: &str| {
        s.len() <= 32
            && s.chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
    };
    match user.split_once(':') {
        Some((uid, gid)) => number(uid) && number(gid),
        None => number(user) || name(user),
    }
}

/// A program and its arguments: a non-empty list whose first item is not empty.
fn command(diag: &mut Diagnostics<'_>, node: &Node, what: &str) -> Option<Vec<String>> {
    let items = diag.string_list(node, what, false)?;
    if items.first().is_none_or(|program| program.value.is_empty()) {
        diag.error(
            node.location,
            format!("{what} must name a program: a list whose first item is not empty"),
        );
        return None;
    }
    Some(items.into_iter().map(|i| i.value).collect())
}

/// A mapping of environment variable names to values, each decoded by `value`.
fn variables(
    diag: &mut Diagnostics<'_>,
    node: &Node,
    what: &str,
    value: impl Fn(&mut Diagnostics<'_>, &Node) -> Option<Located<String>>,
) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let Some(map) = diag.map_or_empty(node, what) else {
        return out;
    };
    for field in &map.fields {
        if let Some(problem) = variable_name_problem(&field.key) {
            diag.error(field.key_node.location, problem);
        }
        if let Some(v) = value(diag, field.value) {
            out.insert(field.key.clone(), v.value);
        }
    }
    out
}

/// A secret's parameter name: `${environment}` is the only placeholder, and
/// the name must be valid with any environment's name in its place.
fn check_secret(name: &str) -> Result<(), String> {
    let mut rest = name;
    while let Some(at) = rest.find("${") {
        let from = &rest[at..];
        if !from.starts_with(ENVIRONMENT_PLACEHOLDER) {
            let shown: String = from.chars().take(30).take_while(|&c| c != '}').collect();
            return Err(format!(
                "`{shown}...` is not a placeholder: only `{ENVIRONMENT_PLACEHOLDER}` is replaced"
            ));
        }
        rest = &from[ENVIRONMENT_PLACEHOLDER.len()..];
    }
    // "environment" stands for any environment's name: every name is made
    // of characters a parameter name allows.
    check_parameter_name(&name.replace(ENVIRONMENT_PLACEHOLDER, "environment"))
}

fn health_check(diag: &mut Diagnostics<'_>, map: &Fields<'_>) -> HealthCheckOverride {
    map.deny_unknown(diag, HEALTH_CHECK_KEYS, "in `health_check`");
    let mut out = HealthCheckOverride::default();
    if let (Some(_), Some(command)) = (map.field("path"), map.field("command")) {
        diag.error(
            command.key_node.location,
            "`health_check` takes `path` (HTTP) or `command`, not both",
        );
    }
    if let Some(path) = map
        .get("path")
        .and_then(|n| diag.string(n, "`health_check.path`"))
    {
        if !path.value.starts_with('/') || path.value.contains(char::is_whitespace) {
            diag.error(
                path.location,
                format!(
                    "`health_check.path` must be a URL path starting with `/`, found `{}`",
                    path.value
                ),
            );
        }
        out.kind = Some(HealthCheckKind::Http { path: path.value });
    }
    if let Some(command) = map
        .get("command")
        .and_then(|n| command(diag, n, "`health_check.command`"))
    {
        out.kind = Some(HealthCheckKind::Command { command });
    }
    if let Some(grpc) = map.field("grpc") {
        if map.field("path").is_some() || map.field("command").is_some() {
            diag.error(
                grpc.key_node.location,
                "`health_check` takes one of `path` (HTTP), `command` and `grpc`",
            );
        }
        if let Some(fields) = diag.map_or_empty(grpc.value, "`health_check.grpc`") {
            fields.deny_unknown(diag, GRPC_CHECK_KEYS, "in `health_check.grpc`");
            let service = fields
                .get("service")
                .and_then(|n| diag.string_or_empty(n, "`health_check.grpc.service`"));
            if let Some(service) = &service
                && (service.value.len() > 256 || service.value.chars().any(char::is_control))
            {
                diag.error(
                    service.location,
                    "`health_check.grpc.service` must be a service name of at most 256 characters",
                );
            }
            out.kind = Some(HealthCheckKind::Grpc {
                service: service.map(|s| s.value).unwrap_or_default(),
            });
        }
    }
    let secs = Duration::from_secs;
    let mut duration = |key: &str, min: Duration, max: Duration| {
        map.get(key)
            .and_then(|n| diag.duration(n, &format!("`health_check.{key}`"), min, max))
            .map(|d| d.value)
    };
    out.interval = duration("interval", secs(1), secs(300));
    // A check every second needs a timeout under a second.
    out.timeout = duration("timeout", Duration::from_millis(100), secs(120));
    out.grace_period = duration("grace_period", Duration::ZERO, secs(3600));
    let mut threshold = |key: &str| {
        map.get(key)
            .and_then(|n| diag.whole_number(n, &format!("`health_check.{key}`"), 2, 10))
            .and_then(|t| u32::try_from(t.value).ok())
    };
    out.healthy_threshold = threshold("healthy_threshold");
    out.unhealthy_threshold = threshold("unhealthy_threshold");
    out
}

fn deployment(
    diag: &mut Diagnostics<'_>,
    map: &Fields<'_>,
    spots: &mut Spots,
) -> DeploymentOverride {
    map.deny_unknown(diag, DEPLOYMENT_KEYS, "in `deployment`");
    for field in &map.fields {
        if let Some(key) = DEPLOYMENT_KEYS.iter().find(|k| **k == field.key) {
            spots.deployment_keys.push((key, field.key_node.location));
        }
    }
    let mut out = DeploymentOverride::default();
    if let Some(text) = map
        .get("strategy")
        .and_then(|n| diag.string(n, "`deployment.strategy`"))
    {
        const STRATEGIES: [DeploymentStrategy; 5] = [
            DeploymentStrategy::Rolling,
            DeploymentStrategy::BlueGreen,
            DeploymentStrategy::Canary,
            DeploymentStrategy::Linear,
            DeploymentStrategy::Steps,
        ];
        out.strategy = STRATEGIES.into_iter().find(|s| s.as_str() == text.as_str());
        if out.strategy.is_none() {
            let names: Vec<&str> = STRATEGIES.iter().map(|s| s.as_str()).collect();
            diag.error(
                text.location,
                format!(
                    "unknown deployment strategy `{}`{}; expected one of: {}",
                    text.value,
                    crate::suggest::did_you_mean(&text.value, names.iter().copied()),
                    names.join(", ")
                ),
            );
        }
    }
    let mut percent = |key: &str, min: i128, max: i128| {
        map.get(key)
            .and_then(|n| diag.whole_number(n, &format!("`deployment.{key}`"), min, max))
            .and_then(|p| u32::try_from(p.value).ok())
    };
    out.min_healthy_percent = percent("min_healthy_percent", 0, 100);
    out.max_percent = percent("max_percent", 100, 200);
    if let Some(strategy) = out.strategy
        && strategy != DeploymentStrategy::Rolling
    {
        // Written beside another strategy, these would be silently ignored.
        for key in ["min_healthy_percent", "max_percent"] {
            if let Some(field) = map.field(key) {
                diag.error(
                    field.key_node.location,
                    format!(
                        "`{key}` applies to rolling deployments only: a {} deployment starts a full new set of replicas",
                        strategy.as_str()
                    ),
                );
            }
        }
    }
    if let Some(node) = map.get("circuit_breaker")
        && let Some(breaker) = diag.map(node, "`deployment.circuit_breaker`")
    {
        breaker.deny_unknown(diag, CIRCUIT_BREAKER_KEYS, "in `circuit_breaker`");
        out.circuit_breaker_threshold = breaker
            .get("threshold")
            .and_then(|n| diag.whole_number(n, "`circuit_breaker.threshold`", 1, 200))
            .and_then(|t| u32::try_from(t.value).ok());
        out.circuit_breaker_rollback = breaker
            .get("rollback")
            .and_then(|n| diag.boolean(n, "`circuit_breaker.rollback`"));
    }
    out.drain = map
        .get("drain")
        .and_then(|n| {
            diag.duration(
                n,
                "`deployment.drain`",
                Duration::ZERO,
                Duration::from_secs(3600),
            )
        })
        .map(|d| d.value);
    if let Some(node) = map.get("blue_green") {
        out.blue_green = rollout::blue_green(diag, node);
    }
    if let Some(node) = map.get("canary") {
        out.canary = rollout::canary(diag, node);
    }
    if let Some(node) = map.get("linear") {
        out.linear = rollout::linear(diag, node);
    }
    if let Some(node) = map.get("steps")
        && let Some((steps, locations)) = rollout::steps(diag, node)
    {
        out.steps = Some(steps);
        spots.steps = locations;
    }
    if let Some(node) = map.get("analysis") {
        out.analysis = rollout::analysis(diag, node, "deployment.analysis");
    }
    if let Some(node) = map.get("canary_header") {
        out.canary_header = rollout::canary_header(diag, node);
    }
    out
}

fn resources(diag: &mut Diagnostics<'_>, map: &Fields<'_>) -> Resources {
    map.deny_unknown(diag, RESOURCES_KEYS, "in `resources`");
    let mut out = Resources::default();
    if let Some(node) = map.get("cpus") {
        let cpus = match node.value {
            Value::Int(i) => Some(i as f64),
            Value::Float(f) => Some(f),
            _ => None,
        };
        match cpus {
            Some(cpus) if (0.01..=1024.0).contains(&cpus) => out.cpus = Some(cpus),
            _ => {
                let found = node
                    .scalar_text()
                    .map_or_else(|| node.kind().to_owned(), |t| format!("`{t}`"));
                diag.error(
                    node.location,
                    format!("`resources.cpus` must be a number from 0.01 to 1024, found {found}"),
                );
            }
        }
    }
    if let Some(node) = map.get("memory") {
        let parsed = match &node.value {
            Value::Int(i) => u64::try_from(*i).map_err(|_| memory_format(&i.to_string())),
            Value::Str(s) => parse_memory(s),
            _ => Err(memory_format(&node.scalar_text().unwrap_or_default())),
        };
        match parsed {
            Ok(bytes) if bytes >= MIN_MEMORY => out.memory = Some(bytes),
            Ok(_) => diag.error(
                node.location,
                format!(
                    "`resources.memory` must be at least 6Mi (Docker's minimum), found `{}`",
                    node.scalar_text().unwrap_or_default()
                ),
            ),
            Err(message) => diag.error(node.location, message),
        }
    }
    out
}

fn memory_format(found: &str) -> String {
    format!(
        "invalid memory size `{found}`: write bytes, or a whole number and Ki, Mi, Gi, Ti (powers of 1024) or K, M, G, T (powers of 1000), as in 256Mi"
    )
}

/// `256Mi`, `1Gi`, `512M`, `1048576`. Docker's lowercase `m` and `g` mean
/// powers of 1024 and Kubernetes' `m` means a thousandth, so they are refused
/// rather than guessed.
pub(crate) fn parse_memory(text: &str) -> Result<u64, String> {
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let multiplier: u64 = match unit {
        "" => 1,
        "k" | "K" => 1000,
        "M" => 1000_u64.pow(2),
        "G" => 1000_u64.pow(3),
        "T" => 1000_u64.pow(4),
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        "Ti" => 1 << 40,
        _ => return Err(memory_format(text)),
    };
    let count: u64 = digits.parse().map_err(|_| memory_format(text))?;
    count
        .checked_mul(multiplier)
        .ok_or_else(|| format!("memory size `{text}` is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_sizes() {
        assert_eq!(parse_memory("256Mi"), Ok(256 << 20));
        assert_eq!(parse_memory("1Gi"), Ok(1 << 30));
        assert_eq!(parse_memory("512M"), Ok(512_000_000));
        assert_eq!(parse_memory("2k"), Ok(2000));
        assert_eq!(parse_memory("1048576"), Ok(1_048_576));
        for bad in [
            "",
            "Mi",
            "512m",
            "1g",
            "1.5Gi",
            "-1",
            "1 Gi",
            "99999999999999Ti",
        ] {
            assert!(parse_memory(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn secret_names_take_only_the_environment_placeholder() {
        assert_eq!(check_secret("/shop/${environment}/DNS"), Ok(()));
        assert_eq!(check_secret("PLAIN"), Ok(()));
        assert!(check_secret("/shop/${env}/DNS").is_err());
        assert!(check_secret("/shop/${environment").is_err());
        assert!(check_secret("/aws/${environment}").is_err());
        assert!(check_secret("${environment}/x").is_err());
    }
}

/// `stickiness`: ALB's load-balancer cookie stickiness.
#[derive(JsonSchema)]
#[schemars(rename = "Stickiness", deny_unknown_fields)]
#[allow(dead_code)] // Only its schema is used.
pub(crate) struct RawStickiness {
    /// How long the cookie keeps a client on its replica: 1s to 7d.
    duration: String,
}

fn stickiness(diag: &mut Diagnostics<'_>, node: &Node) -> Option<std::time::Duration> {
    let fields = diag.map(node, "`stickiness`")?;
    fields.deny_unknown(diag, &["duration"], "in `stickiness`");
    fields
        .required(diag, "duration", "in `stickiness` (such as 1h)")
        .and_then(|n| {
            diag.duration(
                n,
                "`stickiness.duration`",
                std::time::Duration::from_secs(1),
                std::time::Duration::from_secs(7 * 86_400),
            )
        })
        .map(|d| d.value)
}
