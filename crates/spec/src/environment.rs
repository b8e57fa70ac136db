//! Environments (formats.md §4): where services run — a runtime, an optional
//! load balancer routing requests to services as an ALB does, and
//! per-environment overrides of service fields.
//!
//! A load balancer is one or more [`Listener`]s (today's single `listen` is
//! one http listener named `default`) and the [`Rule`]s they share, kept in
//! ascending priority, the order in which they are tried; the first whose
//! [`Conditions`] all match gets its [`Action`] (forward to a service,
//! redirect, fixed response). A request that no rule matches gets the
//! listener's default action, a 404 unless set. Certificates are named by
//! parameter (`routing.rs`); reading them is the server's job at apply.
//! Health-check settings are the services' (the target group's in AWS), so
//! a load balancer has none of its own.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;

use crate::location::Location;
pub use crate::names::EnvironmentName;
use crate::names::ServiceName;
use crate::service::ServiceOverride;

pub(crate) mod decode;
mod routing;

pub use routing::{
    ACME_RENEW_BEFORE, Acme, Action, CertificateRef, Conditions, FIXED_RESPONSE_CONTENT_TYPES,
    FixedResponse, Listener, ListenerLimits, MAX_CONDITION_VALUES, MAX_FIXED_RESPONSE_BODY,
    MAX_TARGET_WEIGHT, MAX_WEIGHTED_TARGETS, Protocol, Redirect, check_cidr,
};

/// A validated environment.
#[derive(Debug, Clone, PartialEq)]
pub struct Environment {
    pub name: EnvironmentName,
    pub runtime: RuntimeKind,
    /// How docker replicas are networked; `Bridge` unless `network: host`.
    pub network: Network,
    pub load_balancer: Option<LoadBalancer>,
    /// Where and how the kubernetes runtime (and `gantry env render
    /// --kubernetes`) runs the environment's services: defaults unless the
    /// file has a `kubernetes` block, which any runtime may carry so that
    /// only the `runtime` line changes between runtimes.
    pub kubernetes: Kubernetes,
    /// Changes to services in this environment, by service name.
    pub services: BTreeMap<ServiceName, ServiceOverride>,
    /// Where the environment's name is written.
    pub location: Location,
}

/// What runs an environment's replicas.
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
pub enum RuntimeKind {
    /// The image's program runs on the host, in its unpacked root, without isolation.
    #[default]
    Process,
    /// The local Docker Engine.
    Docker,
    /// Docker Swarm mode, through a manager's Docker Engine: each replica a
    /// one-task Swarm service, its port published in host mode.
    Swarm,
    /// A Kubernetes cluster, through its API server: per service a
    /// Deployment and a Service in the environment's namespace.
    Kubernetes,
}

/// An environment's kubernetes settings (formats.md §4, `kubernetes`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kubernetes {
    /// The namespace the environment's objects live in; `gantry-ENV`
    /// unless set.
    pub namespace: String,
    /// The kubeconfig context to use; `None`: the kubeconfig's current one.
    pub context: Option<String>,
    /// A SecureString parameter holding the kubeconfig; `None`: the
    /// default kubeconfig (`KUBECONFIG`, `~/.kube/config`, or the
    /// in-cluster service account).
    pub kubeconfig: Option<String>,
    pub service_type: KubeServiceType,
    /// Where gantry's load balancer reaches a NodePort service (a node's
    /// host name or address); `None`: the cluster's own Ingress routes
    /// traffic.
    pub node_address: Option<String>,
    /// Where the block is written (the environment's name when absent).
    pub location: Location,
}

impl Kubernetes {
    /// The settings of an environment without a `kubernetes` block.
    pub fn defaults(environment: &str, location: Location) -> Kubernetes {
        Kubernetes {
            namespace: format!("gantry-{environment}"),
            context: None,
            kubeconfig: None,
            service_type: KubeServiceType::ClusterIP,
            node_address: None,
            location,
        }
    }
}

/// The type of the Service in front of a kubernetes Deployment.
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
pub enum KubeServiceType {
    /// Reachable inside the cluster only (an Ingress routes to it).
    #[default]
    ClusterIP,
    /// Also on a port of every node, where gantry's load balancer can
    /// reach it (`node_address`).
    NodePort,
}

impl KubeServiceType {
    pub fn as_str(self) -> &'static str {
        match self {
            KubeServiceType::ClusterIP => "ClusterIP",
            KubeServiceType::NodePort => "NodePort",
        }
    }
}

/// How an environment's docker containers are networked.
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
pub enum Network {
    /// Each container in its own network namespace, its `port` published on
    /// 127.0.0.1; `PORT` is the service's port.
    #[default]
    Bridge,
    /// Containers share the host's network, as process replicas do: each
    /// replica gets its own port (in `PORT`), and `127.0.0.1` addresses
    /// (such as the environment's load balancer) are reachable from inside.
    Host,
}

/// Listeners and the rules they share.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadBalancer {
    /// The first listener's address (today's single `listen`).
    pub listen: SocketAddr,
    /// At least one; today's `listen` is one named `default`, protocol http.
    pub listeners: Vec<Listener>,
    /// In ascending priority; priorities are unique per listener.
    pub rules: Vec<Rule>,
    /// Whether every request is written to the environment's access log.
    pub access_log: bool,
    pub location: Location,
}

impl LoadBalancer {
    /// The first rule whose path condition matches `path` (a query string
    /// is ignored), looking at paths only.
    pub fn route(&self, path: &str) -> Option<&Rule> {
        self.rules
            .iter()
            .find(|rule| rule.conditions.path.iter().any(|p| p.matches(path)))
    }

    /// The rules that apply to listener `name`, by priority.
    pub fn rules_of<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Rule> + 'a {
        self.rules
            .iter()
            .filter(move |rule| rule.listener.as_deref().is_none_or(|l| l == name))
    }
}

/// Requests that meet `conditions` get `action`. Today's
/// `{priority, path, service}` is `{conditions: {path: [P]}, action:
/// {forward: {service: S}}}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// 1..=50000; lower is tried first.
    pub priority: u32,
    /// The listener it belongs to; `None`: every listener.
    pub listener: Option<String>,
    pub conditions: Conditions,
    pub action: Action,
    pub location: Location,
}

impl Rule {
    /// The service a forward rule sends requests to.
    pub fn service(&self) -> Option<&ServiceName> {
        match &self.action {
            Action::Forward { service } => Some(service),
            _ => None,
        }
    }
}

/// An ALB path pattern: at most 128 characters, case-sensitive, `*` matches
/// any run of characters (none included, `/` included) and `?` exactly one.
/// The characters allowed are ALB's: `A-Z a-z 0-9 _ - . $ / ~ " ' @ : + &`
/// and the two wildcards.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PathPattern(String);

/// The longest pattern an ALB accepts.
const MAX_PATTERN: usize = 128;

impl PathPattern {
    /// Checks a pattern; the message says what is wrong.
    pub fn new(pattern: &str) -> Result<PathPattern, String> {
        if pattern.is_empty() {
            return Err("a path pattern cannot be empty".to_owned());
        }
        let length = pattern.chars().count();
        if length > MAX_PATTERN {
            return Err(format!(
                "path pattern `{pattern}` is {length} characters long; the most is {MAX_PATTERN}"
            ));
        }
        let allowed = |c: char| c.is_ascii_alphanumeric() || "_-.$/~\"'@:+&*?".contains(c);
        if let Some(c) = pattern.chars().find(|&c| !allowed(c)) {
            return Err(format!(
                "path pattern `{pattern}` holds `{c}`; use A-Z a-z 0-9 _ - . $ / ~ \" ' @ : + & and the wildcards * and ?"
            ));
        }
        Ok(PathPattern(pattern.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether a request path matches. Everything from the first `?` on is
    /// the query string, which path patterns do not see.
    pub fn matches(&self, path: &str) -> bool {
        let path = path.split_once('?').map_or(path, |(path, _query)| path);
        wildcard_match(&self.0, path)
    }
}

impl fmt::Display for PathPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Glob matching with `*` and `?`, in O(pattern × text) at worst: on a
/// mismatch it returns to the last `*` and lets it take one more character,
/// instead of recursing (which a pattern like `*a*a*a*b` would make
/// exponential).
fn wildcard_match(pattern: &str, text: &str) -> bool {
    let pattern: Vec<char> = pattern.chars().collect();
    let text: Vec<char> = text.chars().collect();
    let (mut p, mut t) = (0, 0);
    // The last `*` seen, and where in the text it started to match.
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some('*') => {
                star = Some((p, t));
                p += 1;
            }
            Some(&c) if c == '?' || c == text[t] => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((star_p, star_t)) => {
                    p = star_p + 1;
                    t = star_t + 1;
                    star = Some((star_p, star_t + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matches(pattern: &str, path: &str) -> bool {
        PathPattern::new(pattern).expect("valid").matches(path)
    }

    #[test]
    fn wildcards_behave_as_alb_path_patterns() {
        assert!(matches("/api/catalog/*", "/api/catalog/1"));
        assert!(matches("/api/catalog/*", "/api/catalog/1/items"));
        assert!(!matches("/api/catalog/*", "/api/catalogs"));
        // `*` matches nothing too.
        assert!(matches("/api/catalog/*", "/api/catalog/"));
        assert!(matches("/*", "/"));
        assert!(matches("*", ""));
        // `?` is exactly one character.
        assert!(matches("/v?/x", "/v1/x"));
        assert!(!matches("/v?/x", "/v/x"));
        assert!(!matches("/v?/x", "/v12/x"));
        // Case-sensitive.
        assert!(!matches("/API/*", "/api/x"));
        // The query string is not part of the path.
        assert!(matches("/a", "/a?b=1"));
        assert!(!matches("/a*b", "/a?b"));
        assert!(matches("*.jpg", "/img/x.jpg"));
        assert!(matches("/a*b*c", "/aXbYbZc"));
        assert!(!matches("/a*b*c", "/aXbYbZ"));
        assert!(matches("/*", "/é"));
    }

    #[test]
    fn hostile_patterns_stay_fast() {
        let pattern = format!("{}b", "*a".repeat(60));
        let text = "a".repeat(10_000);
        assert!(!matches(&pattern, &text));
    }

    #[test]
    fn patterns_are_checked() {
        assert!(PathPattern::new("/api/catalog/*").is_ok());
        assert!(PathPattern::new("").is_err());
        assert!(PathPattern::new("/a b").is_err());
        assert!(PathPattern::new("/a?x").is_ok());
        assert!(PathPattern::new("/é").is_err());
        assert!(PathPattern::new(&format!("/{}", "a".repeat(127))).is_ok());
        assert!(PathPattern::new(&format!("/{}", "a".repeat(128))).is_err());
    }

    #[test]
    fn route_picks_the_lowest_priority_rule_that_matches() {
        let rule = |priority, path: &str, service: &str| Rule {
            priority,
            listener: None,
            conditions: Conditions {
                path: vec![PathPattern::new(path).expect("valid")],
                ..Conditions::default()
            },
            action: Action::Forward {
                service: ServiceName(service.into()),
            },
            location: Location::default(),
        };
        let lb = LoadBalancer {
            listen: "127.0.0.1:0".parse().expect("address"),
            listeners: Vec::new(),
            rules: vec![
                rule(10, "/api/catalog/*", "catalog"),
                rule(100, "/*", "bff"),
            ],
            access_log: false,
            location: Location::default(),
        };
        let service = |path| {
            lb.route(path)
                .and_then(Rule::service)
                .map(ServiceName::as_str)
        };
        assert_eq!(service("/api/catalog/7"), Some("catalog"));
        assert_eq!(service("/api/catalogs"), Some("bff"));
        assert_eq!(service("nopath"), None);
    }
}
