//! Reading `environments:` from the YAML tree, every problem recorded.
//!
//! As for services, decoding and validating are one pass, and the `Raw*`
//! types only describe the keys for the JSON Schema. Whether the services
//! that rules and overrides name exist is a question for the whole project
//! (they may be defined in an included file), answered by `assemble`.

use std::collections::BTreeMap;

use schemars::JsonSchema;

use super::{Environment, EnvironmentName, LoadBalancer, Network, PathPattern, Rule, RuntimeKind};
use crate::location::Location;
use crate::names::{ByLabel, NameRule, ServiceName};
use crate::service::decode::{RawServiceFields, decode_override};
use crate::yaml::{Diagnostics, Fields, Node, Value};

pub(crate) const ENVIRONMENT_KEYS: &[&str] = &["runtime", "network", "load_balancer", "services"];
pub(crate) const LOAD_BALANCER_KEYS: &[&str] = &["listen", "rules"];
pub(crate) const RULE_KEYS: &[&str] = &["priority", "path", "service"];
/// Runtimes formats.md announces for later.
const FUTURE_RUNTIMES: &[&str] = &["kubernetes"];

/// An environment: a runtime, a load balancer and service overrides.
#[derive(JsonSchema)]
#[schemars(rename = "Environment", deny_unknown_fields)]
#[allow(dead_code)] // Only its schema is used; the decoder builds an Environment.
pub(crate) struct RawEnvironment {
    /// `process` (default: on the host, no isolation) or `docker`.
    runtime: Option<RuntimeKind>,
    /// `bridge` (default) or `host`: how docker containers are networked.
    network: Option<Network>,
    /// A listener that routes request paths to services.
    load_balancer: Option<RawLoadBalancer>,
    /// Changes to service fields in this environment, by service name.
    services: Option<ByLabel<RawServiceFields>>,
}

#[derive(JsonSchema)]
#[schemars(rename = "LoadBalancer", deny_unknown_fields)]
#[allow(dead_code)] // Only its schema is used.
struct RawLoadBalancer {
    /// The address and port to listen on, such as 127.0.0.1:18080.
    listen: String,
    /// Path rules, lowest priority number first.
    #[schemars(length(min = 1))]
    rules: Vec<RawRule>,
}

#[derive(JsonSchema)]
#[schemars(rename = "Rule", deny_unknown_fields)]
#[allow(dead_code)] // Only its schema is used.
struct RawRule {
    /// 1 to 50000, unique in the load balancer; lower is tried first.
    #[schemars(range(min = 1, max = 50_000))]
    priority: u32,
    /// An ALB path pattern: `*` any characters, `?` one; case-sensitive.
    #[schemars(length(min = 1, max = 128))]
    path: String,
    /// The service requests go to.
    #[schemars(pattern(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"))]
    service: String,
}

/// Decodes `environments:`. The map may be incomplete when there were
/// errors, which the caller knows from the diagnostics.
pub(crate) fn decode_environments(
    diag: &mut Diagnostics<'_>,
    node: &Node,
) -> BTreeMap<EnvironmentName, Environment> {
    let mut out = BTreeMap::new();
    let Some(map) = diag.map_or_empty(node, "`environments`") else {
        return out;
    };
    for field in &map.fields {
        let location = field.key_node.location;
        let name = match NameRule::EnvironmentName.check(&field.key) {
            Ok(()) => Some(EnvironmentName(field.key.clone())),
            Err(message) => {
                diag.error(location, message);
                None
            }
        };
        let Some(fields) = diag.map_or_empty(field.value, &format!("environment `{}`", field.key))
        else {
            continue;
        };
        fields.deny_unknown(
            diag,
            ENVIRONMENT_KEYS,
            &format!("in environment `{}`", field.key),
        );
        let runtime = fields
            .get("runtime")
            .and_then(|n| runtime(diag, n))
            .unwrap_or_default();
        let network = fields
            .get("network")
            .and_then(|n| network(diag, n, runtime))
            .unwrap_or_default();
        let load_balancer = fields
            .get("load_balancer")
            .and_then(|n| load_balancer(diag, n));
        let services = fields
            .get("services")
            .map(|n| overrides(diag, n, &field.key))
            .unwrap_or_default();
        if let Some(name) = name {
            out.insert(
                name.clone(),
                Environment {
                    name,
                    runtime,
                    network,
                    load_balancer,
                    services,
                    location,
                },
            );
        }
    }
    out
}

fn network(diag: &mut Diagnostics<'_>, node: &Node, runtime: RuntimeKind) -> Option<Network> {
    let text = diag.string(node, "`network`")?;
    let network = match text.as_str() {
        "bridge" => Network::Bridge,
        "host" => Network::Host,
        other => {
            diag.error(
                text.location,
                format!("unknown network `{other}`; expected one of: bridge, host"),
            );
            return None;
        }
    };
    if !matches!(runtime, RuntimeKind::Docker | RuntimeKind::Swarm) {
        diag.error(
            text.location,
            "`network` applies to the docker and swarm runtimes only".to_string(),
        );
        return None;
    }
    Some(network)
}

fn runtime(diag: &mut Diagnostics<'_>, node: &Node) -> Option<RuntimeKind> {
    let text = diag.string(node, "`runtime`")?;
    match text.as_str() {
        "process" => Some(RuntimeKind::Process),
        "docker" => Some(RuntimeKind::Docker),
        "swarm" => Some(RuntimeKind::Swarm),
        other if FUTURE_RUNTIMES.contains(&other) => {
            diag.error(
                text.location,
                format!(
                    "runtime `{other}` is not supported yet; expected one of: process, docker, swarm"
                ),
            );
            None
        }
        other => {
            diag.error(
                text.location,
                format!("unknown runtime `{other}`; expected one of: process, docker, swarm"),
            );
            None
        }
    }
}

fn load_balancer(diag: &mut Diagnostics<'_>, node: &Node) -> Option<LoadBalancer> {
    let map = diag.map(node, "`load_balancer`")?;
    map.deny_unknown(diag, LOAD_BALANCER_KEYS, "in `load_balancer`");
    let listen = map
        .required(diag, "listen", "in `load_balancer` (such as 127.0.0.1:18080)")
        .and_then(|n| diag.string(n, "`load_balancer.listen`"))
        .and_then(|text| match text.value.parse() {
            Ok(address) => Some(address),
            Err(_) => {
                diag.error(
                    text.location,
                    format!(
                        "`load_balancer.listen` must be an IP address and a port, such as 127.0.0.1:18080, found `{}`",
                        text.value
                    ),
                );
                None
            }
        });
    let rules = map
        .required(diag, "rules", "in `load_balancer`")
        .and_then(|n| rules(diag, n));
    Some(LoadBalancer {
        listen: listen?,
        rules: rules?,
        location: map.location,
    })
}

fn rules(diag: &mut Diagnostics<'_>, node: &Node) -> Option<Vec<Rule>> {
    let Value::Seq(items) = &node.value else {
        diag.error(
            node.location,
            format!("`rules` must be a list, found {}", node.kind()),
        );
        return None;
    };
    if items.is_empty() {
        diag.error(
            node.location,
            "a load balancer needs at least one rule in `rules`",
        );
    }
    let mut priorities: BTreeMap<u32, Location> = BTreeMap::new();
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        let Some(fields) = diag.map(item, "a rule") else {
            continue;
        };
        if let Some(rule) = rule(diag, &fields, &mut priorities) {
            out.push(rule);
        }
    }
    out.sort_by_key(|rule| rule.priority);
    Some(out)
}

fn rule(
    diag: &mut Diagnostics<'_>,
    fields: &Fields<'_>,
    priorities: &mut BTreeMap<u32, Location>,
) -> Option<Rule> {
    fields.deny_unknown(diag, RULE_KEYS, "in a rule");
    let priority = fields
        .required(diag, "priority", "in a rule")
        .and_then(|n| diag.whole_number(n, "`priority`", 1, 50_000))
        .and_then(|p| {
            let value = u32::try_from(p.value).ok()?;
            if let Some(first) = priorities.get(&value) {
                diag.error(
                    p.location,
                    format!(
                        "priority {value} is already the priority of the rule at {}:{}",
                        first.line, first.col
                    ),
                );
                return None;
            }
            priorities.insert(value, p.location);
            Some(value)
        });
    let path = fields
        .required(diag, "path", "in a rule")
        .and_then(|n| diag.string(n, "`path`"))
        .and_then(|text| match PathPattern::new(&text.value) {
            Ok(pattern) => Some(pattern),
            Err(message) => {
                diag.error(text.location, message);
                None
            }
        });
    let service = fields
        .required(diag, "service", "in a rule")
        .and_then(|n| diag.string(n, "`service`"))
        .and_then(|text| match NameRule::ServiceName.check(&text.value) {
            Ok(()) => Some(ServiceName(text.value)),
            Err(message) => {
                diag.error(text.location, message);
                None
            }
        });
    Some(Rule {
        priority: priority?,
        path: path?,
        service: service?,
        location: fields.location,
    })
}

fn overrides(
    diag: &mut Diagnostics<'_>,
    node: &Node,
    environment: &str,
) -> BTreeMap<ServiceName, crate::service::ServiceOverride> {
    let mut out = BTreeMap::new();
    let Some(map) = diag.map_or_empty(node, "`services`") else {
        return out;
    };
    for field in &map.fields {
        let location = field.key_node.location;
        let name = match NameRule::ServiceName.check(&field.key) {
            Ok(()) => Some(ServiceName(field.key.clone())),
            Err(message) => {
                diag.error(location, message);
                None
            }
        };
        let what = format!(
            "the override of service `{}` in environment `{environment}`",
            field.key
        );
        let Some(fields) = diag.map_or_empty(field.value, &what) else {
            continue;
        };
        let changes = decode_override(diag, &fields, location, &format!("in {what}"));
        if let Some(name) = name {
            out.insert(name, changes);
        }
    }
    out
}
