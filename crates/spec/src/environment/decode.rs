//! Reading `environments:` from the YAML tree, every problem recorded.
//!
//! As for services, decoding and validating are one pass, and the `Raw*`
//! types only describe the keys for the JSON Schema. Whether the services
//! that rules and overrides name exist is a question for the whole project
//! (they may be defined in an included file), answered by `assemble`.

use std::collections::BTreeMap;

use schemars::JsonSchema;

use std::time::Duration;

use super::{
    ACME_RENEW_BEFORE, Acme, Action, CertificateRef, Conditions, Environment, EnvironmentName,
    FIXED_RESPONSE_CONTENT_TYPES, FixedResponse, KubeServiceType, Kubernetes, Listener,
    ListenerLimits, LoadBalancer, MAX_CONDITION_VALUES, MAX_FIXED_RESPONSE_BODY, MAX_TARGET_WEIGHT,
    MAX_WEIGHTED_TARGETS, Network, PathPattern, Protocol, Redirect, Rule, RuntimeKind, check_cidr,
};
use crate::location::Location;
use crate::names::{ByLabel, NameRule, ServiceName};
use crate::service::decode::{RawServiceFields, decode_override};
use crate::yaml::{Diagnostics, Fields, Node, Value};

pub(crate) const ENVIRONMENT_KEYS: &[&str] = &[
    "runtime",
    "network",
    "kubernetes",
    "load_balancer",
    "services",
];
const KUBERNETES_KEYS: &[&str] = &[
    "namespace",
    "context",
    "kubeconfig",
    "service_type",
    "node_address",
];
pub(crate) const LOAD_BALANCER_KEYS: &[&str] = &["listen", "listeners", "rules", "access_log"];
pub(crate) const RULE_KEYS: &[&str] = &[
    "priority",
    "path",
    "service",
    "listener",
    "conditions",
    "action",
];
const LISTENER_KEYS: &[&str] = &[
    "name",
    "listen",
    "protocol",
    "certificates",
    "acme",
    "redirect_to",
    "http2",
    "default_action",
    "idle_timeout",
    "header_timeout",
    "max_header_size",
    "max_body_size",
];
const ACME_KEYS: &[&str] = &[
    "domains",
    "directory",
    "contact",
    "challenge_listener",
    "store",
    "renew_before",
    "directory_ca",
];
const CONDITION_KEYS: &[&str] = &["host", "path", "header", "method", "query", "source_ip"];
const ACTION_KEYS: &[&str] = &["forward", "redirect", "fixed_response"];
const REDIRECT_KEYS: &[&str] = &["protocol", "host", "port", "path", "query", "status"];
const FIXED_RESPONSE_KEYS: &[&str] = &["status", "content_type", "body"];

/// An environment: a runtime, a load balancer and service overrides.
#[derive(JsonSchema)]
#[schemars(rename = "Environment", deny_unknown_fields)]
#[allow(dead_code)] // Only its schema is used; the decoder builds an Environment.
pub(crate) struct RawEnvironment {
    /// `process` (default: on the host, no isolation), `docker`, `swarm`
    /// or `kubernetes`.
    runtime: Option<RuntimeKind>,
    /// `bridge` (default) or `host`: how docker containers are networked.
    network: Option<Network>,
    /// Namespace, kubeconfig and Service type for `runtime: kubernetes`
    /// (and `gantry env render --kubernetes`); any runtime may carry it.
    kubernetes: Option<RawKubernetes>,
    /// A listener that routes request paths to services.
    load_balancer: Option<RawLoadBalancer>,
    /// Changes to service fields in this environment, by service name.
    services: Option<ByLabel<RawServiceFields>>,
}

#[derive(JsonSchema)]
#[schemars(rename = "Kubernetes", deny_unknown_fields)]
#[allow(dead_code)] // Only its schema is used.
struct RawKubernetes {
    /// The namespace of the environment's objects (default: gantry-ENV).
    #[schemars(pattern(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"))]
    namespace: Option<String>,
    /// A kubeconfig context (default: the kubeconfig's current context).
    context: Option<String>,
    /// A SecureString parameter holding the kubeconfig (default: the
    /// default kubeconfig).
    kubeconfig: Option<String>,
    /// `ClusterIP` (default) or `NodePort`.
    service_type: Option<KubeServiceType>,
    /// The node host name or address where gantry's load balancer reaches
    /// NodePort services.
    node_address: Option<String>,
}

#[derive(JsonSchema)]
#[schemars(rename = "LoadBalancer", deny_unknown_fields)]
#[allow(dead_code)] // Only its schema is used.
struct RawLoadBalancer {
    /// One http listener's address and port, such as 127.0.0.1:18080 (or
    /// use `listeners`).
    listen: Option<String>,
    /// Several listeners, http or https.
    #[schemars(length(min = 1))]
    listeners: Option<Vec<RawListener>>,
    /// Rules, lowest priority number first.
    rules: Option<Vec<RawRule>>,
    /// Write a line per request to the data dir's access log (default
    /// false), read with `gantry env logs ENV --access`.
    access_log: Option<bool>,
}

#[derive(JsonSchema)]
#[schemars(rename = "Listener", deny_unknown_fields)]
#[allow(dead_code)] // Only its schema is used.
struct RawListener {
    /// Unique in the load balancer; rules and `redirect_to` name it.
    #[schemars(pattern(r"^[a-z0-9-]{1,32}$"))]
    name: String,
    /// The address and port, such as 127.0.0.1:18443.
    listen: String,
    /// `http` (default) or `https`.
    protocol: Option<String>,
    /// For https: certificate chain and key parameters; the first is the default.
    certificates: Option<Vec<RawCertificate>>,
    /// For https: a certificate an ACME CA issues and renews.
    acme: Option<RawAcme>,
    /// For http: redirect every request (301) to this https listener.
    redirect_to: Option<String>,
    /// For http: also serve HTTP/2 without TLS to clients that start with
    /// its preface (h2c, prior knowledge); default false. https offers
    /// HTTP/2 by ALPN anyway.
    http2: Option<bool>,
    /// What requests no rule matches get (default: a fixed 404).
    default_action: Option<RawAction>,
    /// How long a client connection may stay idle between requests
    /// (ALB's idle timeout): 1s to 4000s, default 60s.
    idle_timeout: Option<String>,
    /// How long a new connection may take to send its first request head
    /// (TLS handshake included): 1s to 5m, default 10s.
    header_timeout: Option<String>,
    /// The longest request head, such as 64Ki (8Ki to 1Mi, default 64Ki):
    /// longer gets 431.
    max_header_size: Option<String>,
    /// The largest request body, such as 10Mi (default: no limit, as
    /// ALB): larger gets 413.
    max_body_size: Option<String>,
}

#[derive(JsonSchema)]
#[schemars(rename = "Certificate", deny_unknown_fields)]
#[allow(dead_code)] // Only its schema is used.
struct RawCertificate {
    /// A String parameter holding the PEM certificate chain.
    cert: String,
    /// A SecureString parameter holding the PEM private key.
    key: String,
}

#[derive(JsonSchema)]
#[schemars(rename = "Acme", deny_unknown_fields)]
#[allow(dead_code)] // Only its schema is used.
struct RawAcme {
    /// DNS names the certificate is for; the first is its subject.
    #[schemars(length(min = 1, max = 100))]
    domains: Vec<String>,
    /// The CA's ACME directory URL, such as
    /// https://acme-v02.api.letsencrypt.org/directory.
    directory: String,
    /// Contact URLs for the account, such as mailto:ops@example.com.
    contact: Option<Vec<String>>,
    /// The http listener that answers HTTP-01 challenges (default: the
    /// only http listener).
    challenge_listener: Option<String>,
    /// Parameter path keeping the account key and the certificate
    /// (default: /gantry/acme/ENVIRONMENT/LISTENER).
    store: Option<String>,
    /// How long before expiry the certificate is renewed (default 30d).
    renew_before: Option<String>,
    /// A String parameter holding the PEM root the directory's TLS is
    /// checked against (a private CA).
    directory_ca: Option<String>,
}

#[derive(JsonSchema)]
#[schemars(rename = "Rule", deny_unknown_fields)]
#[allow(dead_code)] // Only its schema is used.
struct RawRule {
    /// 1 to 50000, unique per listener; lower is tried first.
    #[schemars(range(min = 1, max = 50_000))]
    priority: u32,
    /// Shorthand: an ALB path pattern (`*` any characters, `?` one).
    #[schemars(length(min = 1, max = 128))]
    path: Option<String>,
    /// Shorthand: the service requests go to.
    #[schemars(pattern(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"))]
    service: Option<String>,
    /// The listener the rule belongs to (default: every listener).
    listener: Option<String>,
    /// What a request must match: every condition, any value of each.
    conditions: Option<RawConditions>,
    /// What a matched request gets.
    action: Option<RawAction>,
}

#[derive(JsonSchema)]
#[schemars(rename = "RuleConditions", deny_unknown_fields)]
#[allow(dead_code)] // Only its schema is used.
struct RawConditions {
    /// Host patterns (`*`, `?`, any case, port ignored).
    host: Option<Vec<String>>,
    /// ALB path patterns.
    path: Option<Vec<String>>,
    /// Header name to value patterns.
    header: Option<BTreeMap<String, Vec<String>>>,
    /// HTTP methods, such as GET.
    method: Option<Vec<String>>,
    /// Query key to value patterns.
    query: Option<BTreeMap<String, Vec<String>>>,
    /// CIDR blocks of the client's address.
    source_ip: Option<Vec<String>>,
}

#[derive(JsonSchema)]
#[schemars(rename = "RuleAction", deny_unknown_fields)]
#[allow(dead_code)] // Only its schema is used.
struct RawAction {
    /// `{service: NAME}`.
    forward: Option<BTreeMap<String, String>>,
    /// protocol, host, port, path, query (with #{...} placeholders), status.
    redirect: Option<BTreeMap<String, serde_json::Value>>,
    /// status, content_type, body.
    fixed_response: Option<BTreeMap<String, serde_json::Value>>,
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
        let kubernetes = match fields.get("kubernetes") {
            Some(node) => kubernetes(diag, node, &field.key),
            None => Some(Kubernetes::defaults(&field.key, location)),
        };
        if let Some(settings) = &kubernetes
            && runtime == RuntimeKind::Kubernetes
            && NameRule::KubeNamespace.check(&settings.namespace).is_err()
        {
            diag.error(
                location,
                format!(
                    "the default namespace `{}` is longer than 63 characters; set `kubernetes.namespace`",
                    settings.namespace
                ),
            );
        }
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
                    kubernetes: kubernetes
                        .unwrap_or_else(|| Kubernetes::defaults(&field.key, location)),
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
        "kubernetes" => Some(RuntimeKind::Kubernetes),
        other => {
            diag.error(
                text.location,
                format!(
                    "unknown runtime `{other}`; expected one of: process, docker, swarm, kubernetes"
                ),
            );
            None
        }
    }
}

/// An environment's `kubernetes` block, defaults filled in.
fn kubernetes(diag: &mut Diagnostics<'_>, node: &Node, environment: &str) -> Option<Kubernetes> {
    let fields = diag.map_or_empty(node, "`kubernetes`")?;
    fields.deny_unknown(diag, KUBERNETES_KEYS, "in `kubernetes`");
    let mut settings = Kubernetes::defaults(environment, node.location);
    let mut ok = true;
    if let Some(n) = fields.get("namespace") {
        match diag.string(n, "`kubernetes.namespace`") {
            Some(name) => match NameRule::KubeNamespace.check(&name.value) {
                Ok(()) => settings.namespace = name.value,
                Err(message) => {
                    diag.error(name.location, message);
                    ok = false;
                }
            },
            None => ok = false,
        }
    }
    if let Some(n) = fields.get("context") {
        match diag.string(n, "`kubernetes.context`") {
            Some(context) if !context.value.is_empty() => settings.context = Some(context.value),
            Some(context) => {
                diag.error(context.location, "`kubernetes.context` cannot be empty");
                ok = false;
            }
            None => ok = false,
        }
    }
    if let Some(n) = fields.get("kubeconfig") {
        match diag.string(n, "`kubernetes.kubeconfig`") {
            Some(name) if name.value.starts_with('/') && name.value.len() <= 1011 => {
                settings.kubeconfig = Some(name.value);
            }
            Some(name) => {
                diag.error(
                    name.location,
                    format!(
                        "`kubeconfig` must be the name of a SecureString parameter holding a kubeconfig, such as /shop/production/kubeconfig, found `{}`",
                        name.value
                    ),
                );
                ok = false;
            }
            None => ok = false,
        }
    }
    if let Some(n) = fields.get("service_type") {
        match diag.string(n, "`kubernetes.service_type`") {
            Some(text) => match text.as_str() {
                "ClusterIP" => settings.service_type = KubeServiceType::ClusterIP,
                "NodePort" => settings.service_type = KubeServiceType::NodePort,
                other => {
                    diag.error(
                        text.location,
                        format!(
                            "unknown service_type `{other}`; expected one of: ClusterIP, NodePort"
                        ),
                    );
                    ok = false;
                }
            },
            None => ok = false,
        }
    }
    if let Some(n) = fields.get("node_address") {
        match diag.string(n, "`kubernetes.node_address`") {
            Some(host) if valid_host(&host.value) => settings.node_address = Some(host.value),
            Some(host) => {
                diag.error(
                    host.location,
                    format!(
                        "`node_address` must be a host name or IP address (no port, no scheme), found `{}`",
                        host.value
                    ),
                );
                ok = false;
            }
            None => ok = false,
        }
    }
    if let Some(address) = &settings.node_address
        && settings.service_type != KubeServiceType::NodePort
        && let Some(n) = fields.get("node_address")
    {
        diag.error(
            n.location,
            format!(
                "`node_address` {address} is where NodePort services are reached; set `service_type: NodePort` too"
            ),
        );
        ok = false;
    }
    ok.then_some(settings)
}

/// A host name (letters, digits, `-`, `.`) or an IP address.
fn valid_host(host: &str) -> bool {
    if host.parse::<std::net::IpAddr>().is_ok() {
        return true;
    }
    !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

fn load_balancer(diag: &mut Diagnostics<'_>, node: &Node) -> Option<LoadBalancer> {
    let map = diag.map(node, "`load_balancer`")?;
    map.deny_unknown(diag, LOAD_BALANCER_KEYS, "in `load_balancer`");
    let listeners = match (map.get("listen"), map.get("listeners")) {
        (Some(_), Some(node)) => {
            diag.error(
                node.location,
                "`load_balancer` takes `listen` (one http listener) or `listeners`, not both",
            );
            None
        }
        (None, Some(node)) => listeners(diag, node),
        _ => {
            let listen = map
                .required(
                    diag,
                    "listen",
                    "in `load_balancer` (such as 127.0.0.1:18080)",
                )
                .and_then(|n| address(diag, n, "`load_balancer.listen`"));
            listen.map(|listen| {
                vec![Listener {
                    name: "default".to_owned(),
                    listen,
                    protocol: Protocol::Http,
                    certificates: Vec::new(),
                    acme: None,
                    redirect_to: None,
                    http2: false,
                    limits: ListenerLimits::default(),
                    default_action: None,
                    location: map.location,
                }]
            })
        }
    };
    let rules = match map.get("rules") {
        Some(node) => rules(diag, node, map.get("listeners").is_none()),
        None if map.get("listeners").is_some() => Some(Vec::new()),
        None => map
            .required(diag, "rules", "in `load_balancer`")
            .and_then(|n| rules(diag, n, true)),
    };
    let access_log = match map.get("access_log") {
        None => Some(false),
        Some(n) => diag.boolean(n, "`access_log`"),
    };
    let (listeners, rules, access_log) = (listeners?, rules?, access_log?);
    check_references(diag, &listeners, &rules);
    Some(LoadBalancer {
        listen: listeners.first()?.listen,
        listeners,
        rules,
        access_log,
        location: map.location,
    })
}

fn address(diag: &mut Diagnostics<'_>, node: &Node, what: &str) -> Option<std::net::SocketAddr> {
    let text = diag.string(node, what)?;
    match text.value.parse() {
        Ok(address) => Some(address),
        Err(_) => {
            diag.error(
                text.location,
                format!(
                    "{what} must be an IP address and a port, such as 127.0.0.1:18080, found `{}`",
                    text.value
                ),
            );
            None
        }
    }
}

fn listeners(diag: &mut Diagnostics<'_>, node: &Node) -> Option<Vec<Listener>> {
    let Value::Seq(items) = &node.value else {
        diag.error(
            node.location,
            format!("`listeners` must be a list, found {}", node.kind()),
        );
        return None;
    };
    if items.is_empty() {
        diag.error(node.location, "`listeners` needs at least one listener");
        return None;
    }
    let mut out: Vec<Listener> = Vec::new();
    for item in items {
        let Some(fields) = diag.map(item, "a listener") else {
            continue;
        };
        fields.deny_unknown(diag, LISTENER_KEYS, "in a listener");
        let name = fields
            .required(diag, "name", "in a listener")
            .and_then(|n| diag.string(n, "`name`"))
            .and_then(|name| {
                let ok = !name.value.is_empty()
                    && name.value.len() <= 32
                    && name
                        .value
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
                if !ok {
                    diag.error(
                        name.location,
                        format!(
                            "listener name `{}` must be 1 to 32 of a-z, 0-9 and -",
                            name.value
                        ),
                    );
                    return None;
                }
                if let Some(other) = out.iter().find(|l| l.name == name.value) {
                    diag.error(
                        name.location,
                        format!(
                            "listener `{}` is already defined at {}:{}",
                            name.value, other.location.line, other.location.col
                        ),
                    );
                    return None;
                }
                Some(name.value)
            });
        let listen = fields
            .required(diag, "listen", "in a listener (such as 127.0.0.1:18080)")
            .and_then(|n| address(diag, n, "`listen`"));
        let protocol = match fields.get("protocol") {
            None => Some(Protocol::Http),
            Some(n) => diag.string(n, "`protocol`").and_then(|p| match p.as_str() {
                "http" => Some(Protocol::Http),
                "https" => Some(Protocol::Https),
                other => {
                    diag.error(
                        p.location,
                        format!("unknown protocol `{other}`; expected http or https"),
                    );
                    None
                }
            }),
        };
        let certificates = fields
            .get("certificates")
            .map(|n| certificates(diag, n))
            .unwrap_or(Some(Vec::new()));
        let acme_node = fields.get("acme");
        let acme = acme_node.map(|n| acme(diag, n));
        let redirect_to = fields
            .get("redirect_to")
            .and_then(|n| diag.string(n, "`redirect_to`"));
        let http2_node = fields.get("http2");
        let http2 = http2_node.and_then(|n| diag.boolean(n, "`http2`"));
        let limits = listener_limits(diag, &fields);
        let default_action = fields.get("default_action").map(|n| action(diag, n));
        let (Some(name), Some(listen), Some(protocol), Some(certificates)) =
            (name, listen, protocol, certificates)
        else {
            continue;
        };
        let acme = match acme {
            Some(None) => continue,
            Some(Some(acme)) => Some(acme),
            None => None,
        };
        match protocol {
            Protocol::Https if certificates.is_empty() && acme.is_none() => diag.error(
                fields.location,
                format!(
                    "https listener `{name}` needs `certificates` (a cert and a key parameter) or `acme`"
                ),
            ),
            Protocol::Http if !certificates.is_empty() => diag.error(
                fields.location,
                format!("http listener `{name}` takes no `certificates`; use protocol: https"),
            ),
            Protocol::Http if acme.is_some() => diag.error(
                acme_node.map_or(fields.location, |n| n.location),
                format!("http listener `{name}` takes no `acme`; use protocol: https"),
            ),
            _ => {}
        }
        if let (Some(target), Protocol::Https) = (&redirect_to, protocol) {
            diag.error(
                target.location,
                format!("`redirect_to` applies to http listeners; `{name}` is https"),
            );
        }
        if http2 == Some(true) && protocol == Protocol::Https {
            diag.error(
                http2_node.map_or(fields.location, |n| n.location),
                format!(
                    "`http2` applies to http listeners (h2c); https listener `{name}` offers HTTP/2 by ALPN already"
                ),
            );
        }
        let default_action = match default_action {
            Some(None) => continue,
            Some(Some(action)) => Some(action),
            None => None,
        };
        out.push(Listener {
            name,
            listen,
            protocol,
            certificates,
            acme,
            redirect_to: redirect_to.map(|t| t.value),
            http2: http2.unwrap_or(false),
            default_action,
            limits,
            location: fields.location,
        });
    }
    for (index, listener) in out.iter().enumerate() {
        if let Some(other) = out[..index].iter().find(|o| o.listen == listener.listen) {
            diag.error(
                listener.location,
                format!(
                    "listener `{}` listens on {}, as listener `{}` does",
                    listener.name, listener.listen, other.name
                ),
            );
        }
    }
    Some(out)
}

fn certificates(diag: &mut Diagnostics<'_>, node: &Node) -> Option<Vec<CertificateRef>> {
    let Value::Seq(items) = &node.value else {
        diag.error(
            node.location,
            format!("`certificates` must be a list, found {}", node.kind()),
        );
        return None;
    };
    if items.len() > 25 {
        diag.error(node.location, "a listener takes at most 25 certificates");
        return None;
    }
    let mut out = Vec::new();
    for item in items {
        let fields = diag.map(item, "a certificate")?;
        fields.deny_unknown(diag, &["cert", "key"], "in a certificate");
        let mut parameter = |key: &str, what: &str| {
            fields
                .required(diag, key, &format!("in a certificate ({what})"))
                .and_then(|n| diag.string(n, &format!("`{key}`")))
                .and_then(|name| {
                    if !name.value.starts_with('/') || name.value.len() > 1011 {
                        diag.error(
                            name.location,
                            format!("`{key}` must be a parameter name such as /shop/production/tls/{key}, found `{}`", name.value),
                        );
                        return None;
                    }
                    Some(name.value)
                })
        };
        let cert = parameter("cert", "a String parameter holding the PEM chain");
        let key = parameter("key", "a SecureString parameter holding the PEM key");
        out.push(CertificateRef {
            cert: cert?,
            key: key?,
        });
    }
    Some(out)
}

/// A listener's timeouts and sizes; each absent one keeps the load
/// balancer's default.
fn listener_limits(diag: &mut Diagnostics<'_>, fields: &Fields<'_>) -> ListenerLimits {
    let mut duration = |key: &str, min: u64, max: u64| {
        fields
            .get(key)
            .and_then(|n| {
                diag.duration(
                    n,
                    &format!("`{key}`"),
                    Duration::from_secs(min),
                    Duration::from_secs(max),
                )
            })
            .map(|d| d.value)
    };
    let idle_timeout = duration("idle_timeout", 1, 4000);
    let header_timeout = duration("header_timeout", 1, 300);
    let mut size = |key: &str, min: u64, max: u64| {
        let text = fields
            .get(key)
            .and_then(|n| diag.string(n, &format!("`{key}`")))?;
        match crate::service::decode::parse_memory(&text.value) {
            Ok(bytes) if (min..=max).contains(&bytes) => Some(bytes),
            Ok(bytes) => {
                diag.error(
                    text.location,
                    format!("`{key}` must be from {min} to {max} bytes, found {bytes}"),
                );
                None
            }
            Err(_) => {
                diag.error(
                    text.location,
                    format!(
                        "`{key}` must be a size such as 64Ki or 10Mi, found `{}`",
                        text.value
                    ),
                );
                None
            }
        }
    };
    ListenerLimits {
        idle_timeout,
        header_timeout,
        max_header_size: size("max_header_size", 8 << 10, 1 << 20),
        max_body_size: size("max_body_size", 1, 1 << 40),
    }
}

/// A listener's `acme` block.
fn acme(diag: &mut Diagnostics<'_>, node: &Node) -> Option<Acme> {
    let fields = diag.map(node, "`acme`")?;
    fields.deny_unknown(diag, ACME_KEYS, "in `acme`");
    let domains = fields
        .required(diag, "domains", "in `acme` (the DNS names to certify)")
        .and_then(|n| diag.string_list(n, "`domains`", false))
        .and_then(|domains| {
            if domains.is_empty() || domains.len() > 100 {
                diag.error(
                    fields.location,
                    format!(
                        "`acme.domains` takes 1 to 100 names, found {}",
                        domains.len()
                    ),
                );
                return None;
            }
            let mut ok = true;
            for domain in &domains {
                if let Err(reason) = check_domain(&domain.value) {
                    diag.error(domain.location, reason);
                    ok = false;
                }
            }
            ok.then(|| {
                domains
                    .into_iter()
                    .map(|d| d.value.to_ascii_lowercase())
                    .collect()
            })
        });
    let directory = fields
        .required(diag, "directory", "in `acme` (the CA's directory URL)")
        .and_then(|n| diag.string(n, "`directory`"))
        .and_then(|url| {
            let rest = url.value.strip_prefix("https://");
            if rest.is_none_or(|r| r.is_empty() || r.starts_with('/')) || url.value.len() > 2048 {
                diag.error(
                    url.location,
                    format!(
                        "`directory` must be an https URL such as https://acme-v02.api.letsencrypt.org/directory, found `{}`",
                        url.value
                    ),
                );
                return None;
            }
            Some(url.value)
        });
    let contact = match fields.get("contact") {
        None => Some(Vec::new()),
        Some(n) => diag.string_list(n, "`contact`", true).and_then(|items| {
            let mut ok = true;
            for item in &items {
                if !item.value.starts_with("mailto:") || item.value.len() > 256 {
                    diag.error(
                        item.location,
                        format!(
                            "a contact must be a mailto: URL such as mailto:ops@example.com, found `{}`",
                            item.value
                        ),
                    );
                    ok = false;
                }
            }
            ok.then(|| items.into_iter().map(|i| i.value).collect())
        }),
    };
    let challenge_listener = fields
        .get("challenge_listener")
        .and_then(|n| diag.string(n, "`challenge_listener`"))
        .map(|l| l.value);
    let mut parameter = |key: &str| {
        fields
            .get(key)
            .and_then(|n| diag.string(n, &format!("`{key}`")))
            .and_then(|name| {
                if !name.value.starts_with('/') || name.value.len() > 1000 {
                    diag.error(
                        name.location,
                        format!(
                            "`{key}` must be a parameter name such as /shop/production/acme, found `{}`",
                            name.value
                        ),
                    );
                    return None;
                }
                Some(name.value)
            })
    };
    let store = parameter("store");
    let directory_ca = parameter("directory_ca");
    let renew_before = match fields.get("renew_before") {
        None => Some(ACME_RENEW_BEFORE),
        Some(n) => diag
            .duration(
                n,
                "`renew_before`",
                Duration::from_secs(60),
                Duration::from_secs(365 * 86_400),
            )
            .map(|d| d.value),
    };
    Some(Acme {
        domains: domains?,
        directory: directory?,
        contact: contact?,
        challenge_listener,
        store,
        renew_before: renew_before?,
        directory_ca,
    })
}

/// A DNS name an HTTP-01 challenge can prove: no wildcard, no IP address.
fn check_domain(name: &str) -> Result<(), String> {
    if name.starts_with("*.") {
        return Err(format!(
            "`{name}`: a wildcard name needs a DNS-01 challenge; gantry answers HTTP-01 only"
        ));
    }
    let labels_ok = name.len() <= 253
        && name.split('.').count() >= 2
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    if !labels_ok || name.parse::<std::net::IpAddr>().is_ok() {
        return Err(format!(
            "`{name}` is not a DNS name such as shop.example.com"
        ));
    }
    Ok(())
}

/// Rules and `redirect_to` name listeners that exist; priorities are
/// unique on each listener (a rule without `listener` is on all).
fn check_references(diag: &mut Diagnostics<'_>, listeners: &[Listener], rules: &[Rule]) {
    let names: Vec<&str> = listeners.iter().map(|l| l.name.as_str()).collect();
    for listener in listeners {
        if let Some(target) = &listener.redirect_to {
            let https = listeners
                .iter()
                .any(|l| &l.name == target && l.protocol == Protocol::Https);
            if !https {
                diag.error(
                    listener.location,
                    format!(
                        "listener `{}` redirects to `{target}`, which is no https listener of this load balancer (listeners: {})",
                        listener.name,
                        names.join(", ")
                    ),
                );
            }
        }
        if let (Some(acme), Protocol::Https) = (&listener.acme, listener.protocol) {
            let http: Vec<&str> = listeners
                .iter()
                .filter(|l| l.protocol == Protocol::Http)
                .map(|l| l.name.as_str())
                .collect();
            match &acme.challenge_listener {
                Some(name) if !http.contains(&name.as_str()) => diag.error(
                    listener.location,
                    format!(
                        "listener `{}`: `acme.challenge_listener` is `{name}`, which is no http listener of this load balancer (http listeners: {})",
                        listener.name,
                        if http.is_empty() { "none".to_owned() } else { http.join(", ") }
                    ),
                ),
                Some(_) => {}
                None if http.len() != 1 => diag.error(
                    listener.location,
                    format!(
                        "listener `{}`: `acme` needs an http listener to answer HTTP-01 challenges; {} (add one, or name it in `acme.challenge_listener`)",
                        listener.name,
                        if http.is_empty() {
                            "this load balancer has none".to_owned()
                        } else {
                            format!("this load balancer has several ({})", http.join(", "))
                        }
                    ),
                ),
                None => {}
            }
        }
    }
    for rule in rules {
        if let Some(name) = &rule.listener
            && !names.contains(&name.as_str())
        {
            diag.error(
                rule.location,
                format!(
                    "the rule with priority {} names listener `{name}`, which this load balancer does not have (listeners: {})",
                    rule.priority,
                    names.join(", ")
                ),
            );
        }
        // ALB refuses a redirect from HTTPS down to HTTP.
        let on_https = listeners.iter().find(|l| {
            l.protocol == Protocol::Https && rule.listener.as_ref().is_none_or(|n| *n == l.name)
        });
        if let (Some(listener), true) = (on_https, downgrades(&rule.action)) {
            diag.error(
                rule.location,
                format!(
                    "the rule with priority {} redirects https listener `{}` to http; a redirect may not go from HTTPS to HTTP (as ALB refuses)",
                    rule.priority, listener.name
                ),
            );
        }
    }
    for listener in listeners {
        if listener.protocol == Protocol::Https
            && listener.default_action.as_ref().is_some_and(downgrades)
        {
            diag.error(
                listener.location,
                format!(
                    "the default action of https listener `{}` redirects to http; a redirect may not go from HTTPS to HTTP (as ALB refuses)",
                    listener.name
                ),
            );
        }
    }
}

/// Whether an action redirects to plain http.
fn downgrades(action: &Action) -> bool {
    matches!(action, Action::Redirect(r) if r.protocol.as_deref().is_some_and(|p| p.eq_ignore_ascii_case("http")))
}

fn rules(diag: &mut Diagnostics<'_>, node: &Node, required: bool) -> Option<Vec<Rule>> {
    let Value::Seq(items) = &node.value else {
        diag.error(
            node.location,
            format!("`rules` must be a list, found {}", node.kind()),
        );
        return None;
    };
    if items.is_empty() && required {
        diag.error(
            node.location,
            "a load balancer needs at least one rule in `rules`",
        );
    }
    let mut out = Vec::with_capacity(items.len());
    // Each rule's priority, listener and where its priority is written.
    let mut seen: Vec<(u32, Option<String>, Location)> = Vec::new();
    for item in items {
        let Some(fields) = diag.map(item, "a rule") else {
            continue;
        };
        if let Some(rule) = rule(diag, &fields, &mut seen) {
            out.push(rule);
        }
    }
    // Stable: equal priorities (an error reported later) keep file order.
    out.sort_by_key(|rule| rule.priority);
    Some(out)
}

/// A rule; `seen` holds the priorities, listeners and priority locations
/// of the rules before it. A rule without `listener` is on every
/// listener, so it clashes with any rule of its priority.
fn rule(
    diag: &mut Diagnostics<'_>,
    fields: &Fields<'_>,
    seen: &mut Vec<(u32, Option<String>, Location)>,
) -> Option<Rule> {
    fields.deny_unknown(diag, RULE_KEYS, "in a rule");
    let listener = fields
        .get("listener")
        .and_then(|n| diag.string(n, "`listener`"))
        .map(|l| l.value);
    let priority = fields
        .required(diag, "priority", "in a rule")
        .and_then(|n| diag.whole_number(n, "`priority`", 1, 50_000))
        .and_then(|p| {
            let value = u32::try_from(p.value).ok()?;
            let clash = seen.iter().find(|(priority, other, _)| {
                *priority == value && (other.is_none() || listener.is_none() || *other == listener)
            });
            if let Some((_, _, first)) = clash {
                diag.error(
                    p.location,
                    format!(
                        "priority {value} is already the priority of the rule at {}:{}",
                        first.line, first.col
                    ),
                );
                return None;
            }
            seen.push((value, listener.clone(), p.location));
            Some(value)
        });
    let new_form = ["conditions", "action", "listener"]
        .iter()
        .any(|key| fields.get(key).is_some());
    if !new_form {
        let path = fields
            .required(diag, "path", "in a rule")
            .and_then(|n| path_pattern(diag, n));
        let service = fields
            .required(diag, "service", "in a rule")
            .and_then(|n| service(diag, n));
        return Some(Rule {
            priority: priority?,
            listener: None,
            conditions: Conditions {
                path: vec![path?],
                ..Conditions::default()
            },
            action: Action::Forward { service: service? },
            location: fields.location,
        });
    }
    for key in ["path", "service"] {
        if let Some(node) = fields.get(key) {
            diag.error(
                node.location,
                format!("`{key}` belongs in `conditions` or `action` in a rule that has them"),
            );
        }
    }
    let conditions = fields
        .required(
            diag,
            "conditions",
            "in a rule (at least one of host, path, header, method, query, source_ip)",
        )
        .and_then(|n| conditions(diag, n));
    let action = fields
        .required(
            diag,
            "action",
            "in a rule (forward, redirect or fixed_response)",
        )
        .and_then(|n| action(diag, n));
    Some(Rule {
        priority: priority?,
        listener,
        conditions: conditions?,
        action: action?,
        location: fields.location,
    })
}

fn path_pattern(diag: &mut Diagnostics<'_>, node: &Node) -> Option<PathPattern> {
    let text = diag.string(node, "`path`")?;
    match PathPattern::new(&text.value) {
        Ok(pattern) => Some(pattern),
        Err(message) => {
            diag.error(text.location, message);
            None
        }
    }
}

fn service(diag: &mut Diagnostics<'_>, node: &Node) -> Option<ServiceName> {
    let text = diag.string(node, "`service`")?;
    match NameRule::ServiceName.check(&text.value) {
        Ok(()) => Some(ServiceName(text.value)),
        Err(message) => {
            diag.error(text.location, message);
            None
        }
    }
}

/// A list of 1 to 5 strings (one string stands for a list of one), each at
/// most 128 characters, as ALB's condition values.
fn values(diag: &mut Diagnostics<'_>, node: &Node, what: &str) -> Option<Vec<String>> {
    let list = diag.string_list(node, what, true)?;
    if list.is_empty() || list.len() > MAX_CONDITION_VALUES {
        diag.error(
            node.location,
            format!(
                "{what} takes 1 to {MAX_CONDITION_VALUES} values, found {}",
                list.len()
            ),
        );
        return None;
    }
    let mut out = Vec::with_capacity(list.len());
    for value in list {
        if value.value.is_empty() || value.value.chars().count() > 128 {
            diag.error(
                value.location,
                format!("each value of {what} must be 1 to 128 characters"),
            );
            return None;
        }
        out.push(value.value);
    }
    Some(out)
}

fn conditions(diag: &mut Diagnostics<'_>, node: &Node) -> Option<Conditions> {
    let fields = diag.map(node, "`conditions`")?;
    fields.deny_unknown(diag, CONDITION_KEYS, "in `conditions`");
    let mut out = Conditions::default();
    let mut ok = true;
    if let Some(n) = fields.get("host") {
        match values(diag, n, "`host`") {
            Some(hosts) => out.host = hosts,
            None => ok = false,
        }
    }
    if let Some(n) = fields.get("path") {
        match values(diag, n, "`path`") {
            Some(paths) => {
                for path in paths {
                    match PathPattern::new(&path) {
                        Ok(pattern) => out.path.push(pattern),
                        Err(message) => {
                            diag.error(n.location, message);
                            ok = false;
                        }
                    }
                }
            }
            None => ok = false,
        }
    }
    if let Some(n) = fields.get("method") {
        match values(diag, n, "`method`") {
            Some(methods) => {
                for method in &methods {
                    if !method
                        .bytes()
                        .all(|b| b.is_ascii_uppercase() || b == b'_' || b == b'-')
                    {
                        diag.error(
                            n.location,
                            format!("method `{method}` must be A-Z, _ and - (such as GET)"),
                        );
                        ok = false;
                    }
                }
                out.method = methods;
            }
            None => ok = false,
        }
    }
    if let Some(n) = fields.get("source_ip") {
        match values(diag, n, "`source_ip`") {
            Some(blocks) => {
                for block in &blocks {
                    if let Err(message) = check_cidr(block) {
                        diag.error(n.location, message);
                        ok = false;
                    }
                }
                out.source_ip = blocks;
            }
            None => ok = false,
        }
    }
    for (key, is_header) in [("header", true), ("query", false)] {
        let Some(n) = fields.get(key) else { continue };
        let Some(map) = diag.map(n, &format!("`{key}`")) else {
            ok = false;
            continue;
        };
        if map.fields.is_empty() || map.fields.len() > MAX_CONDITION_VALUES {
            diag.error(
                n.location,
                format!("`{key}` takes 1 to {MAX_CONDITION_VALUES} names"),
            );
            ok = false;
        }
        for field in &map.fields {
            let name_ok = if is_header {
                !field.key.is_empty()
                    && field.key.len() <= 40
                    && field
                        .key
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b))
            } else {
                !field.key.is_empty() && field.key.chars().count() <= 128
            };
            if !name_ok {
                diag.error(
                    field.key_node.location,
                    format!("`{}` is not a valid {key} name", field.key),
                );
                ok = false;
                continue;
            }
            match values(diag, field.value, &format!("`{key}.{}`", field.key)) {
                Some(list) if is_header => out.header.push((field.key.clone(), list)),
                Some(list) => out
                    .query
                    .extend(list.into_iter().map(|v| (field.key.clone(), v))),
                None => ok = false,
            }
        }
    }
    if ok && out.is_empty() {
        diag.error(
            fields.location,
            "a rule needs at least one condition (host, path, header, method, query or source_ip)",
        );
        return None;
    }
    ok.then_some(out)
}

fn action(diag: &mut Diagnostics<'_>, node: &Node) -> Option<Action> {
    let fields = diag.map(node, "`action`")?;
    fields.deny_unknown(diag, ACTION_KEYS, "in `action`");
    let given: Vec<&str> = ACTION_KEYS
        .iter()
        .copied()
        .filter(|key| fields.get(key).is_some())
        .collect();
    // Unknown keys alone were already reported.
    if given.is_empty() && !fields.fields.is_empty() {
        return None;
    }
    if given.len() != 1 {
        diag.error(
            fields.location,
            format!(
                "an action is exactly one of forward, redirect, fixed_response; found {}",
                if given.is_empty() {
                    "none".to_owned()
                } else {
                    given.join(" and ")
                }
            ),
        );
        return None;
    }
    let node = fields.get(given[0])?;
    let fields = diag.map(node, &format!("`{}`", given[0]))?;
    match given[0] {
        "forward" => {
            fields.deny_unknown(diag, &["service", "targets"], "in `forward`");
            if let Some(n) = fields.get("targets") {
                if fields.get("service").is_some() {
                    diag.error(
                        fields.location,
                        "`forward` takes `service` or weighted `targets`, not both",
                    );
                    return None;
                }
                return weighted_targets(diag, n)
                    .map(|targets| Action::WeightedForward { targets });
            }
            let service = fields
                .required(diag, "service", "in `forward`")
                .and_then(|n| service(diag, n))?;
            Some(Action::Forward { service })
        }
        "redirect" => redirect(diag, &fields).map(Action::Redirect),
        _ => fixed_response(diag, &fields).map(Action::FixedResponse),
    }
}

/// `forward.targets`: `[{service, weight}]` as ALB's weighted target
/// groups.
fn weighted_targets(diag: &mut Diagnostics<'_>, node: &Node) -> Option<Vec<(ServiceName, u32)>> {
    let Value::Seq(items) = &node.value else {
        diag.error(
            node.location,
            format!("`targets` must be a list, found {}", node.kind()),
        );
        return None;
    };
    if items.is_empty() || items.len() > MAX_WEIGHTED_TARGETS {
        diag.error(
            node.location,
            format!(
                "`targets` takes 1 to {MAX_WEIGHTED_TARGETS} services, found {}",
                items.len()
            ),
        );
        return None;
    }
    let mut out: Vec<(ServiceName, u32)> = Vec::new();
    let mut ok = true;
    for item in items {
        let Some(fields) = diag.map(item, "a weighted target") else {
            ok = false;
            continue;
        };
        fields.deny_unknown(diag, &["service", "weight"], "in a weighted target");
        let name = fields
            .required(diag, "service", "in a weighted target")
            .and_then(|n| service(diag, n));
        let weight = fields
            .required(diag, "weight", "in a weighted target (0 to 999)")
            .and_then(|n| diag.whole_number(n, "`weight`", 0, i128::from(MAX_TARGET_WEIGHT)))
            .and_then(|w| u32::try_from(w.value).ok());
        let (Some(name), Some(weight)) = (name, weight) else {
            ok = false;
            continue;
        };
        if out.iter().any(|(other, _)| *other == name) {
            diag.error(
                fields.location,
                format!("service `{name}` is named twice in `targets`"),
            );
            ok = false;
            continue;
        }
        out.push((name, weight));
    }
    if ok && out.iter().all(|(_, weight)| *weight == 0) {
        diag.error(
            node.location,
            "every weight in `targets` is 0: at least one must be above 0",
        );
        return None;
    }
    ok.then_some(out)
}

fn redirect(diag: &mut Diagnostics<'_>, fields: &Fields<'_>) -> Option<Redirect> {
    fields.deny_unknown(diag, REDIRECT_KEYS, "in `redirect`");
    let mut text = |key: &str| -> Option<Option<String>> {
        match fields.get(key) {
            None => Some(None),
            Some(n) => {
                let value = diag.string(n, &format!("`redirect.{key}`"))?;
                if value.value.chars().count() > 128 {
                    diag.error(
                        value.location,
                        format!("`redirect.{key}` is at most 128 characters"),
                    );
                    return None;
                }
                Some(Some(value.value))
            }
        }
    };
    let (protocol, host, port, path, query) = (
        text("protocol"),
        text("host"),
        text("port"),
        text("path"),
        text("query"),
    );
    let status = match fields.get("status") {
        None => Some(301),
        Some(n) => match n.scalar_text().as_deref() {
            Some("301" | "HTTP_301") => Some(301),
            Some("302" | "HTTP_302") => Some(302),
            _ => {
                diag.error(
                    n.location,
                    "`redirect.status` must be 301 or 302 (HTTP_301, HTTP_302)",
                );
                None
            }
        },
    };
    let redirect = Redirect {
        protocol: protocol?,
        host: host?,
        port: port?,
        path: path?,
        query: query?,
        status: status?,
    };
    if let Some(protocol) = &redirect.protocol
        && !["http", "https", "#{protocol}"].contains(&protocol.to_ascii_lowercase().as_str())
    {
        diag.error(
            fields.location,
            format!("`redirect.protocol` must be http, https or #{{protocol}}, found `{protocol}`"),
        );
        return None;
    }
    if let Some(path) = &redirect.path
        && !path.starts_with('/')
    {
        diag.error(
            fields.location,
            format!("`redirect.path` must start with /, found `{path}`"),
        );
        return None;
    }
    let keeps = |value: &Option<String>, own: &str| value.as_deref().is_none_or(|v| v == own);
    if keeps(&redirect.protocol, "#{protocol}")
        && keeps(&redirect.host, "#{host}")
        && keeps(&redirect.port, "#{port}")
        && keeps(&redirect.path, "/#{path}")
        && keeps(&redirect.query, "#{query}")
    {
        diag.error(
            fields.location,
            "this redirect changes nothing (protocol, host, port, path and query all the request's own), so it would loop",
        );
        return None;
    }
    Some(redirect)
}

fn fixed_response(diag: &mut Diagnostics<'_>, fields: &Fields<'_>) -> Option<FixedResponse> {
    fields.deny_unknown(diag, FIXED_RESPONSE_KEYS, "in `fixed_response`");
    let status = fields
        .required(diag, "status", "in `fixed_response`")
        .and_then(|n| diag.whole_number(n, "`fixed_response.status`", 200, 599))
        .and_then(|s| {
            if (300..400).contains(&s.value) {
                diag.error(
                    s.location,
                    "`fixed_response.status` must be 2xx, 4xx or 5xx; use a redirect for 3xx",
                );
                return None;
            }
            u16::try_from(s.value).ok()
        });
    let content_type = match fields.get("content_type") {
        None => Some(None),
        Some(n) => diag.string(n, "`content_type`").and_then(|c| {
            if FIXED_RESPONSE_CONTENT_TYPES.contains(&c.as_str()) {
                Some(Some(c.value))
            } else {
                diag.error(
                    c.location,
                    format!(
                        "content type `{}` is not one ALB allows: {}",
                        c.value,
                        FIXED_RESPONSE_CONTENT_TYPES.join(", ")
                    ),
                );
                None
            }
        }),
    };
    let body = match fields.get("body") {
        None => Some(String::new()),
        Some(n) => diag.string_or_empty(n, "`body`").and_then(|b| {
            if b.value.len() > MAX_FIXED_RESPONSE_BODY {
                diag.error(
                    b.location,
                    format!(
                        "a fixed response body is at most {MAX_FIXED_RESPONSE_BODY} bytes, found {}",
                        b.value.len()
                    ),
                );
                return None;
            }
            Some(b.value)
        }),
    };
    Some(FixedResponse {
        status: status?,
        content_type: content_type?,
        body: body?,
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
