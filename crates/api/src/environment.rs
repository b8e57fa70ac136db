//! Environments and services: applying a project, an environment's status,
//! deploying and rolling back a service, stopping an environment, and
//! shutting the server down.
//!
//! Answers declare their fields in alphabetical order, the order the JSON
//! had when the server built it as a `serde_json::Value` (a sorted map), so
//! they keep their bytes.

use std::collections::BTreeMap;
use std::path::PathBuf;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// `POST /api/v1/apply`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ApplyRequest {
    pub file: PathBuf,
    pub text: Option<String>,
    #[serde(default)]
    pub includes: BTreeMap<String, String>,
}

/// What `apply` registered, one line per pipeline, environment or service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Applied {
    pub applied: Vec<String>,
}

/// `GET /api/v1/environments/{env}` and `gantry env status --json`: one
/// environment, its runtime, its load balancer and its services.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct EnvironmentStatus {
    pub environment: String,
    /// Where the load balancer listens (`127.0.0.1:8080`).
    pub load_balancer: String,
    /// The load balancer's path rules, by ascending priority (absent from
    /// servers before issue 12).
    #[serde(default)]
    pub rules: Vec<LoadBalancerRule>,
    /// The load balancer's listeners with the certificate versions an https
    /// one serves (issue 19; absent when the environment has none, and
    /// from older servers).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub listeners: Vec<ListenerStatus>,
    /// `process` or `docker`.
    pub runtime: String,
    /// In the order of the project's services.
    pub services: Vec<ServiceStatus>,
    /// `http://` (or `https://` when the serving listener is https) + the
    /// load balancer's address + `/`.
    pub url: String,
}

/// One listener of an environment's load balancer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ListenerStatus {
    pub name: String,
    /// The address it listens on (`127.0.0.1:18443`).
    pub listen: String,
    /// `http` or `https`.
    pub protocol: String,
    /// For https: the parameters it serves, at the versions pinned by the
    /// last apply; never the key's value.
    #[serde(default)]
    pub certificates: Vec<ListenerCertificate>,
    /// For an https listener with `acme`: its certificate's state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acme: Option<AcmeStatus>,
}

/// Lines of an environment's access log (`GET
/// /api/v1/environments/{env}/access-log`), oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct AccessLogLines {
    /// Whole lines, in the format formats.md gives.
    pub lines: Vec<String>,
    /// Pass as `after` to get the lines written since.
    pub cursor: u64,
    /// Whether the environment's `load_balancer.access_log` is on now.
    pub enabled: bool,
}

/// What an https listener's ACME renewal task knows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct AcmeStatus {
    pub domains: Vec<String>,
    /// The CA's directory URL.
    pub directory: String,
    /// `issued` (it serves a certificate the CA issued for every domain),
    /// `ordering` (an order is under way; the previous certificate or a
    /// self-signed placeholder serves), `failed` (the last order failed; it
    /// is tried again).
    pub state: String,
    /// The end of the issued certificate it serves (Unix ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_after: Option<i64>,
    /// When the next order is due (Unix ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renews_at: Option<i64>,
    /// Why the last order failed, as the CA or the connection said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A certificate an https listener serves, by parameter name and version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ListenerCertificate {
    pub cert: String,
    pub cert_version: u64,
    pub key: String,
    pub key_version: u64,
}

/// One path rule of an environment's load balancer: requests whose path
/// matches go to the service's target group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct LoadBalancerRule {
    /// `*` any run of characters, `?` one character.
    pub path: String,
    /// Lower first.
    pub priority: u32,
    /// The service it forwards to; a weighted forward's services joined by
    /// `,`; empty for a redirect or a fixed response.
    pub service: String,
}

/// The share of a service's traffic one revision takes: the weights of its
/// replicas that may take requests over those of all the service's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct TrafficShare {
    /// Whole percent; the shares of a service add up to 100 when any
    /// replica may take requests.
    pub percent: u32,
    pub revision: u64,
    /// The sum of the weights of the revision's replicas that may take
    /// requests.
    pub weight: u32,
}

/// One service: its current revision (all null before its first
/// deployment), its replicas and its last ten deployments, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ServiceStatus {
    /// What made the current revision: `deploy action STAGE/ACTION of
    /// execution ID`, `gantry deploy`, `rollback to 3`.
    #[serde(default)]
    pub cause: Option<String>,
    pub deployments: Vec<DeploymentRecord>,
    /// The current revision's replica count.
    pub desired: Option<u32>,
    /// The image's digest (`sha256:…`).
    pub digest: Option<String>,
    /// The pipeline execution whose deploy action made the current
    /// revision (or the revision a rollback returned to); null when a
    /// person deployed the image.
    #[serde(default)]
    pub execution: Option<String>,
    /// `registry/repo@sha256:…`
    pub image: Option<String>,
    pub name: String,
    /// The secrets the current revision reads, with their pinned versions.
    pub parameters: Vec<SecretRef>,
    pub replicas: Vec<ReplicaStatus>,
    /// The current revision's number.
    pub revision: Option<u64>,
    /// Which revisions take the service's requests, and how much of them:
    /// one revision at 100 outside a deployment, two during a blue/green
    /// switch or a canary shift. Empty when no replica may take requests.
    #[serde(default)]
    pub traffic: Vec<TrafficShare>,
}

/// One replica a service runs, with its health as the load balancer sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ReplicaStatus {
    pub addr: String,
    /// `initial`, `healthy`, `unhealthy` or `draining`; null when the
    /// replica is not in its target group.
    pub health: Option<String>,
    pub id: String,
    /// How its latest run that nobody asked to stop ended, while this
    /// server watched it; null when it has not exited so (or the runtime
    /// does not say). Absent from servers before issue 18.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_exit: Option<ReplicaExit>,
    /// Why its latest health check failed, if the latest one did.
    pub last_failure: Option<String>,
    /// How many times the runtime restarted it after it exited (0 from
    /// servers before issue 18).
    #[serde(default)]
    pub restarts: u32,
    pub revision: u64,
    /// Its weight in the target group (its share of requests relative to
    /// the others'); null when it is not in the target group.
    #[serde(default)]
    pub weight: Option<u32>,
}

/// How a replica's process (or container) ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ReplicaExit {
    /// The exit code, when it exited and the code is known.
    pub code: Option<i32>,
    /// The signal that killed it, when one did and it is known.
    pub signal: Option<i32>,
}

/// One row of a service's deployment history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct DeploymentRecord {
    /// Unix milliseconds; null while it runs.
    pub finished_at: Option<i64>,
    pub from_revision: Option<i64>,
    pub id: i64,
    /// Why it ended as it did (the circuit breaker's reason, say).
    pub message: Option<String>,
    /// Unix milliseconds.
    pub started_at: i64,
    /// `InProgress`, `Succeeded`, `Failed`, `RolledBack` or `Interrupted`.
    pub status: String,
    pub to_revision: i64,
}

/// A secret a revision reads: which parameter, which version; never its
/// value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SecretRef {
    pub parameter: String,
    /// Whether the parameter is a SecureString.
    pub secure: bool,
    /// The environment variable it fills.
    pub var: String,
    pub version: u64,
}

/// `GET /api/v1/environments/{env}/services/{service}/revisions/{revision}`:
/// one revision of a service as it was made, its definition flattened into
/// named fields so that two revisions can be compared field by field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct RevisionDetail {
    /// What made it (see [`ServiceStatus::cause`]).
    pub cause: String,
    /// Unix milliseconds.
    pub created_at: i64,
    pub environment: String,
    /// The execution whose deploy action made it (or the revision a
    /// rollback returned to), if one did.
    pub execution: Option<String>,
    /// `image`, `command`, `port`, `replicas`, `user`,
    /// `environment.NAME`, `secret.VAR` (`PARAMETER:VERSION`, never a
    /// value), `health_check.*`, `deployment.*`, `resources.*`.
    pub fields: BTreeMap<String, String>,
    /// `registry/repo@sha256:…`
    pub image: String,
    pub revision: u64,
    pub service: String,
}

/// `POST /api/v1/environments/{env}/services/{service}/deploy`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct DeployRequest {
    /// An image reference; the deployment pins it by digest.
    pub image: String,
}

/// `POST /api/v1/environments/{env}/services/{service}/rollback`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
pub struct RollbackRequest {
    /// The revision to return to; default the one before the current.
    #[serde(default)]
    pub to: Option<u64>,
}

/// `POST /api/v1/environments/{env}/services/{service}/promote`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
pub struct PromoteRequest {
    /// All the traffic to the new revision now, rather than on to the
    /// next step.
    #[serde(default)]
    pub full: bool,
}

/// The answer to promote, abort, pause and resume: where the service's
/// progressive deployment (a shift of traffic) is once the command took
/// effect (or, while the new replicas still start, where it is while the
/// command waits its turn).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ShiftAnswer {
    /// The deployment's id (as `env status` lists deployments).
    pub deployment: i64,
    /// The stable revision, which traffic moves from.
    pub from_revision: u64,
    /// Held: timers and analysis windows stop until a resume.
    pub paused: bool,
    /// The step it is at, from 1 (0 while the new replicas start).
    pub step: u64,
    pub steps: u64,
    pub to_revision: u64,
    /// What the step waits for, in words (`a promote`, `pause 30s`,
    /// `analysis over 20s`, `aborted`, …).
    pub waiting: String,
    /// The new revision's share of the requests, in percent.
    pub weight: u32,
}

/// What a successful deployment left running.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct DeployOutcome {
    pub environment: String,
    /// `registry/repo@sha256:…`
    pub image: String,
    /// The ids of the replicas it runs.
    pub replicas: Vec<String>,
    pub revision: u64,
    pub service: String,
}

/// The answer to a deploy or a rollback: how it ended, and its log. A
/// deployment that failed (and was rolled back or not) is an answer, not an
/// error: it is `Failed` with the error's code; an unknown environment,
/// service or revision is an error answer.
///
/// Written with its keys in alphabetical order (`status` last), as the
/// answer was when the server built it as a `serde_json::Value`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(tag = "status")]
pub enum DeploymentAnswer {
    Succeeded {
        log: Vec<String>,
        outcome: DeployOutcome,
    },
    Failed {
        /// The deployment error's code (`deploy.circuit_breaker`).
        code: String,
        error: String,
        log: Vec<String>,
    },
}

impl DeploymentAnswer {
    pub fn succeeded(&self) -> bool {
        matches!(self, DeploymentAnswer::Succeeded { .. })
    }

    /// What the deployment did, step by step.
    pub fn log(&self) -> &[String] {
        match self {
            DeploymentAnswer::Succeeded { log, .. } | DeploymentAnswer::Failed { log, .. } => log,
        }
    }
}

impl Serialize for DeploymentAnswer {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(None)?;
        match self {
            DeploymentAnswer::Succeeded { log, outcome } => {
                map.serialize_entry("log", log)?;
                map.serialize_entry("outcome", outcome)?;
                map.serialize_entry("status", "Succeeded")?;
            }
            DeploymentAnswer::Failed { code, error, log } => {
                map.serialize_entry("code", code)?;
                map.serialize_entry("error", error)?;
                map.serialize_entry("log", log)?;
                map.serialize_entry("status", "Failed")?;
            }
        }
        map.end()
    }
}

/// `POST /api/v1/environments/{env}/down`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct EnvironmentDown {
    pub environment: String,
    pub stopped_replicas: u64,
}

/// `POST /api/v1/shutdown`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
pub struct ShutdownRequest {
    /// Also stop every service's replicas (they survive a plain shutdown).
    #[serde(default)]
    pub stop_services: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ShutdownAnswer {
    pub ok: bool,
    pub stopped_replicas: u64,
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::tests::same_bytes;

    fn status() -> EnvironmentStatus {
        EnvironmentStatus {
            environment: "staging".into(),
            load_balancer: "127.0.0.1:8080".into(),
            rules: vec![LoadBalancerRule {
                path: "/*".into(),
                priority: 10,
                service: "web".into(),
            }],
            listeners: Vec::new(),
            runtime: "process".into(),
            services: vec![ServiceStatus {
                cause: Some("gantry deploy".into()),
                deployments: vec![DeploymentRecord {
                    finished_at: Some(20),
                    from_revision: Some(1),
                    id: 7,
                    message: Some("2 replica(s) healthy; 0 replaced on the way".into()),
                    started_at: 10,
                    status: "Succeeded".into(),
                    to_revision: 2,
                }],
                desired: Some(2),
                digest: Some("sha256:abc".into()),
                execution: None,
                image: Some("127.0.0.1:5000/web@sha256:abc".into()),
                name: "web".into(),
                parameters: vec![SecretRef {
                    parameter: "/shop/db-password".into(),
                    secure: true,
                    var: "DB_PASSWORD".into(),
                    version: 3,
                }],
                replicas: vec![ReplicaStatus {
                    addr: "127.0.0.1:40001".into(),
                    health: Some("healthy".into()),
                    id: "staging-web-r2-1-abcdef".into(),
                    last_exit: None,
                    last_failure: None,
                    restarts: 0,
                    revision: 2,
                    weight: Some(1),
                }],
                revision: Some(2),
                traffic: vec![TrafficShare {
                    percent: 100,
                    revision: 2,
                    weight: 1,
                }],
            }],
            url: "http://127.0.0.1:8080/".into(),
        }
    }

    /// The contract of `gantry env status --json`, as the deployer built it
    /// with `json!` before it had types, and what issue 12 added (`rules`,
    /// `cause`, `execution`, `traffic`, each replica's `weight`).
    #[test]
    fn environment_status_keeps_its_bytes() {
        same_bytes(
            &status(),
            json!({
                "environment": "staging",
                "runtime": "process",
                "load_balancer": "127.0.0.1:8080",
                "url": "http://127.0.0.1:8080/",
                "rules": [{"priority": 10, "path": "/*", "service": "web"}],
                "services": [{
                    "cause": "gantry deploy", "execution": null,
                    "traffic": [{"revision": 2, "percent": 100, "weight": 1}],
                    "name": "web", "revision": 2, "image": "127.0.0.1:5000/web@sha256:abc",
                    "digest": "sha256:abc", "desired": 2,
                    "parameters": [{"var": "DB_PASSWORD", "parameter": "/shop/db-password", "version": 3, "secure": true}],
                    "replicas": [{
                        "id": "staging-web-r2-1-abcdef", "revision": 2, "addr": "127.0.0.1:40001",
                        "health": "healthy", "last_failure": null, "restarts": 0,
                        "weight": 1,
                    }],
                    "deployments": [{
                        "id": 7, "from_revision": 1, "to_revision": 2, "status": "Succeeded",
                        "started_at": 10, "finished_at": 20,
                        "message": "2 replica(s) healthy; 0 replaced on the way",
                    }],
                }],
            }),
        );
    }

    #[test]
    fn deployment_answers_keep_their_bytes() {
        let outcome = DeployOutcome {
            environment: "staging".into(),
            image: "r/web@sha256:abc".into(),
            replicas: vec!["r1".into()],
            revision: 2,
            service: "web".into(),
        };
        same_bytes(
            &DeploymentAnswer::Succeeded {
                log: vec!["started r1".into()],
                outcome,
            },
            json!({"status": "Succeeded", "log": ["started r1"], "outcome": {
                "environment": "staging", "service": "web", "revision": 2,
                "image": "r/web@sha256:abc", "replicas": ["r1"]}}),
        );
        same_bytes(
            &DeploymentAnswer::Failed {
                code: "deploy.circuit_breaker".into(),
                error: "3 replicas failed".into(),
                log: vec![],
            },
            json!({"status": "Failed", "code": "deploy.circuit_breaker",
                   "error": "3 replicas failed", "log": []}),
        );
    }

    /// The hand-written `Serialize` writes what the derived schema says:
    /// one shape per `status`.
    #[test]
    fn the_deployment_answers_schema_tells_the_shapes_apart_by_status() {
        let schema = serde_json::to_value(schemars::schema_for!(DeploymentAnswer)).unwrap();
        let shapes = schema["oneOf"].as_array().unwrap();
        let statuses: Vec<&serde_json::Value> = shapes
            .iter()
            .map(|s| &s["properties"]["status"]["const"])
            .collect();
        assert_eq!(statuses, [&json!("Succeeded"), &json!("Failed")]);
    }

    #[test]
    fn other_environment_answers_keep_their_bytes() {
        same_bytes(
            &Applied {
                applied: vec!["environment staging".into()],
            },
            json!({"applied": ["environment staging"]}),
        );
        same_bytes(
            &EnvironmentDown {
                environment: "staging".into(),
                stopped_replicas: 2,
            },
            json!({"environment": "staging", "stopped_replicas": 2}),
        );
        same_bytes(
            &ShutdownAnswer {
                ok: true,
                stopped_replicas: 0,
            },
            json!({"ok": true, "stopped_replicas": 0}),
        );
    }

    #[test]
    fn a_service_never_deployed_shows_nulls_and_empty_lists() {
        let status = ServiceStatus {
            cause: None,
            deployments: vec![],
            desired: None,
            digest: None,
            execution: None,
            image: None,
            name: "web".into(),
            parameters: vec![],
            replicas: vec![],
            revision: None,
            traffic: vec![],
        };
        assert_eq!(
            serde_json::to_value(status).unwrap(),
            json!({"name": "web", "revision": null, "image": null, "digest": null,
                   "desired": null, "parameters": [], "replicas": [], "deployments": [],
                   "cause": null, "execution": null, "traffic": []})
        );
    }
}

/// `GET /api/v1/environments/{environment}/services/{service}/logs`: what
/// a service's replicas wrote (`gantry env logs`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ServiceLogsQuery {
    /// Only this replica's output.
    #[serde(default)]
    pub replica: Option<String>,
    /// Only output written at or after this time (Unix ms; on the process
    /// runtime, whose lines carry no time, a log not written since is
    /// skipped).
    #[serde(default)]
    pub since_ms: Option<i64>,
    /// A `cursor` of an earlier answer (with `replica`): only what came
    /// after it.
    #[serde(default)]
    pub after: Option<String>,
    /// At most this many bytes per replica, from the end (default and most
    /// 1048576).
    #[serde(default)]
    pub max_bytes: Option<u64>,
}

/// `GET /api/v1/environments/{environment}/access-log`: the load
/// balancer's access log (`gantry env logs ENV --access`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct AccessLogQuery {
    /// The last this many lines (default 100, at most 10000); ignored with
    /// `after`.
    #[serde(default)]
    pub tail: Option<usize>,
    /// A `cursor` of an earlier answer: only the lines written since.
    #[serde(default)]
    pub after: Option<u64>,
}

/// One replica's output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ReplicaLogView {
    pub replica: String,
    /// Its stdout and stderr, as written.
    pub text: String,
    /// Give it back as `after` to read only what came after.
    pub cursor: String,
}
