//! The OpenAPI 3.1 description of the JSON API (`GET /api/v1/openapi.json`),
//! made from this crate's types rather than written by hand.
//!
//! [`ROUTES`] is the route table: for each route its method, path (with
//! `{param}` segments, as the server's router spells them), summary, the
//! role it needs, the types of its query string, request body and answer,
//! and the error statuses of its own. [`document`] turns the table into the
//! document: every type's JSON Schema (schemars, draft 2020-12, the
//! dialect of OpenAPI 3.1) goes into `components/schemas` and is
//! referenced from there, the bearer-token security scheme applies to every
//! route but the public ones, and every error status answers an
//! [`ErrorBody`].
//!
//! The server's tests keep the table honest: `crates/server/tests/trust.rs`
//! fails when the router serves a route the table lacks, when the table
//! names one the router does not serve, or when a route's role differs from
//! the role matrix; the schemathesis run (`scripts/test`) checks every
//! answer of a live server against the document.

use schemars::generate::{SchemaGenerator, SchemaSettings};
use schemars::{JsonSchema, Schema};
use serde_json::{Map, Value, json};

use crate::*;

/// An HTTP method of a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
    Put,
    Delete,
}

impl Method {
    /// The method as HTTP spells it (`GET`).
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Delete => "DELETE",
        }
    }
}

/// The role a route needs (docs/formats.md, the role table). Scoped
/// grants (`operator:env=staging`) narrow the role to what they cover.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// No token: liveness only.
    Public,
    /// A delivery signed with the webhook's shared secret, no token.
    Signature,
    /// Any valid token, whatever its grants.
    Anyone,
    /// Any grant (`viewer` and up).
    Viewer,
    Operator,
    Approver,
    Admin,
    /// A build agent's token (`agent` grant), and no other.
    Agent,
}

impl Role {
    /// The role's name as grants spell it, or what stands for it.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Public => "none",
            Role::Signature => "webhook signature",
            Role::Anyone => "any token",
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Approver => "approver",
            Role::Admin => "admin",
            Role::Agent => "agent",
        }
    }

    fn needs_token(self) -> bool {
        !matches!(self, Role::Public | Role::Signature)
    }
}

/// A schema-writing function: [`of`] for a body (referenced from
/// `components/schemas`), [`fields`] for a query string (its fields become
/// parameters).
pub type SchemaFn = fn(&mut SchemaGenerator) -> Schema;

/// The schema of `T` as a body: a `$ref` into `components/schemas`.
pub fn of<T: JsonSchema>(generator: &mut SchemaGenerator) -> Schema {
    generator.subschema_for::<T>()
}

/// The schema of `T` inline, for a query string's fields.
pub fn fields<T: JsonSchema>(generator: &mut SchemaGenerator) -> Schema {
    T::json_schema(generator)
}

/// Any JSON object: a forge's webhook delivery.
fn any_object(_: &mut SchemaGenerator) -> Schema {
    schemars::json_schema!({"type": "object"})
}

/// One route of the API.
#[derive(Debug, Clone, Copy)]
pub struct Route {
    pub method: Method,
    /// As the router spells it: `/api/v1/executions/{id}`.
    pub path: &'static str,
    /// The OpenAPI `operationId`.
    pub id: &'static str,
    pub summary: &'static str,
    pub role: Role,
    pub query: Option<SchemaFn>,
    pub request: Option<SchemaFn>,
    /// The status of a successful answer.
    pub status: u16,
    pub response: SchemaFn,
    /// The media type of a successful answer: `application/json` but for
    /// the few routes that answer text.
    pub media_type: &'static str,
    /// The error statuses of the route's own, beside those every route of
    /// its kind may answer (see [`common_errors`]).
    pub errors: &'static [u16],
}

/// A route with no query, no body, answering 200: the rest is set by
/// struct update.
const fn route(
    method: Method,
    path: &'static str,
    id: &'static str,
    summary: &'static str,
    role: Role,
    response: SchemaFn,
) -> Route {
    Route {
        method,
        path,
        id,
        summary,
        role,
        query: None,
        request: None,
        status: 200,
        response,
        media_type: "application/json",
        errors: &[],
    }
}

use Method::{Delete, Get, Post, Put};

/// Every route the server serves (the test in `crates/server/tests/trust.rs`
/// holds the router to this list), in the order of docs/api.md.
pub const ROUTES: &[Route] = &[
    route(
        Get,
        "/api/v1/health",
        "health",
        "Liveness: answers without a token, saying only that the server is up.",
        Role::Public,
        of::<Ack>,
    ),
    route(
        Get,
        "/api/v1/openapi.json",
        "openapi",
        "This description of the API (OpenAPI 3.1).",
        Role::Viewer,
        of::<Value>,
    ),
    Route {
        media_type: "text/plain",
        ..route(
            Get,
            "/metrics",
            "metrics",
            "Prometheus metrics in the text format 0.0.4 (families: docs/operations.md).",
            Role::Viewer,
            of::<String>,
        )
    },
    route(
        Get,
        "/api/v1/whoami",
        "whoami",
        "The identity of the token: its user's name, email and grants.",
        Role::Anyone,
        of::<IdentityView>,
    ),
    Route {
        query: Some(fields::<ChangesQuery>),
        ..route(
            Get,
            "/api/v1/changes",
            "changes",
            "Long poll: answers once anything changed after version `after`, or at the timeout.",
            Role::Viewer,
            of::<Changes>,
        )
    },
    Route {
        query: Some(fields::<ExecutionsQuery>),
        ..route(
            Get,
            "/api/v1/executions",
            "listExecutions",
            "The latest executions, newest first.",
            Role::Viewer,
            of::<Vec<ExecutionView>>,
        )
    },
    Route {
        request: Some(of::<StartRequest>),
        status: 201,
        errors: &[404, 409],
        ..route(
            Post,
            "/api/v1/executions",
            "startExecution",
            "Starts an execution of the pipeline file sent as text (with its included files' text). \
             Needs the operator role for the pipeline and for every environment the files define.",
            Role::Operator,
            of::<Started>,
        )
    },
    Route {
        errors: &[404],
        ..route(
            Get,
            "/api/v1/executions/{id}",
            "getExecution",
            "One execution: stages, actions, their details and decisions.",
            Role::Viewer,
            of::<ExecutionView>,
        )
    },
    Route {
        query: Some(fields::<LogsQuery>),
        errors: &[404],
        ..route(
            Get,
            "/api/v1/executions/{id}/logs",
            "executionLogs",
            "A page of an execution's log lines, oldest first.",
            Role::Viewer,
            of::<LogsPage>,
        )
    },
    Route {
        errors: &[404],
        ..route(
            Get,
            "/api/v1/executions/{id}/approvals",
            "listApprovals",
            "The approval decisions taken in an execution.",
            Role::Viewer,
            of::<Vec<ApprovalRecordView>>,
        )
    },
    Route {
        request: Some(of::<DecideRequest>),
        errors: &[404, 409],
        ..route(
            Post,
            "/api/v1/executions/{id}/approvals",
            "decideApproval",
            "Approves or rejects a waiting approval, under its policy (who may decide, how many, \
             with a comment or not).",
            Role::Approver,
            of::<DecisionAnswer>,
        )
    },
    Route {
        errors: &[404, 409],
        ..route(
            Get,
            "/api/v1/executions/{id}/approvals/{stage}/{action}",
            "getApproval",
            "One approval action: what it is bound to, its fingerprint, policy and votes.",
            Role::Viewer,
            of::<ApprovalView>,
        )
    },
    Route {
        request: Some(of::<RetryRequest>),
        errors: &[404, 409],
        ..route(
            Post,
            "/api/v1/executions/{id}/retry",
            "retryStage",
            "Retries a failed stage's failed actions (or all of its actions).",
            Role::Operator,
            of::<Ack>,
        )
    },
    Route {
        request: Some(of::<StopRequest>),
        errors: &[404, 409],
        ..route(
            Post,
            "/api/v1/executions/{id}/stop",
            "stopExecution",
            "Stops an execution: lets running actions finish, or abandons them.",
            Role::Operator,
            of::<Ack>,
        )
    },
    Route {
        request: Some(of::<PutParameterRequest>),
        errors: &[409],
        ..route(
            Post,
            "/api/v1/params/put",
            "putParameter",
            "Writes a new version of a parameter.",
            Role::Operator,
            of::<ParameterPut>,
        )
    },
    Route {
        query: Some(fields::<ParameterQuery>),
        errors: &[404],
        ..route(
            Get,
            "/api/v1/params/get",
            "getParameter",
            "One parameter (by name, version or label). A SecureString shows `***` unless \
             `decrypt` is set and a `secrets` grant covers it.",
            Role::Viewer,
            of::<ParameterView>,
        )
    },
    Route {
        query: Some(fields::<ParametersQuery>),
        ..route(
            Get,
            "/api/v1/params/list",
            "listParameters",
            "The parameters under a path.",
            Role::Viewer,
            of::<Vec<ParameterView>>,
        )
    },
    Route {
        query: Some(fields::<ParameterQuery>),
        errors: &[404],
        ..route(
            Get,
            "/api/v1/params/history",
            "parameterHistory",
            "Every version of a parameter.",
            Role::Viewer,
            of::<Vec<ParameterView>>,
        )
    },
    Route {
        request: Some(of::<LabelParameterRequest>),
        errors: &[404, 409],
        ..route(
            Post,
            "/api/v1/params/label",
            "labelParameter",
            "Moves labels to a version of a parameter.",
            Role::Operator,
            of::<ParameterLabelled>,
        )
    },
    Route {
        request: Some(of::<DeleteParameterRequest>),
        errors: &[404],
        ..route(
            Post,
            "/api/v1/params/delete",
            "deleteParameter",
            "Deletes a parameter and its history.",
            Role::Operator,
            of::<ParameterDeleted>,
        )
    },
    Route {
        request: Some(of::<RotateKeyRequest>),
        ..route(
            Post,
            "/api/v1/params/rotate-key",
            "rotateKey",
            "Re-encrypts every SecureString under a new master key.",
            Role::Admin,
            of::<KeyRotated>,
        )
    },
    Route {
        request: Some(of::<ApplyRequest>),
        errors: &[404],
        ..route(
            Post,
            "/api/v1/apply",
            "apply",
            "Applies a file's environments and services, and registers its pipeline's triggers. \
             Needs the operator role for each.",
            Role::Operator,
            of::<Applied>,
        )
    },
    route(
        Get,
        "/api/v1/environments",
        "listEnvironments",
        "The names of the environments applied to the server.",
        Role::Viewer,
        of::<Vec<String>>,
    ),
    Route {
        errors: &[404],
        ..route(
            Get,
            "/api/v1/environments/{env}",
            "environmentStatus",
            "An environment's services, revisions, replicas and deployments.",
            Role::Viewer,
            of::<EnvironmentStatus>,
        )
    },
    Route {
        errors: &[404],
        ..route(
            Get,
            "/api/v1/environments/{env}/services/{service}/revisions/{revision}",
            "revisionDetail",
            "One revision of a service as it was made: its image, cause, execution and \
             definition as named fields (secrets as parameter and version, never a value).",
            Role::Viewer,
            of::<RevisionDetail>,
        )
    },
    Route {
        errors: &[404],
        ..route(
            Post,
            "/api/v1/environments/{env}/down",
            "environmentDown",
            "Stops every replica of an environment.",
            Role::Operator,
            of::<EnvironmentDown>,
        )
    },
    Route {
        request: Some(of::<DeployRequest>),
        errors: &[404],
        ..route(
            Post,
            "/api/v1/environments/{env}/services/{service}/deploy",
            "deploy",
            "Deploys an image to a service. A deployment that fails is an answer (`Failed`), \
             not an error.",
            Role::Operator,
            of::<DeploymentAnswer>,
        )
    },
    Route {
        request: Some(of::<RollbackRequest>),
        errors: &[404],
        ..route(
            Post,
            "/api/v1/environments/{env}/services/{service}/rollback",
            "rollback",
            "Rolls a service back to its previous revision, or to the one named.",
            Role::Operator,
            of::<DeploymentAnswer>,
        )
    },
    Route {
        request: Some(of::<PromoteRequest>),
        errors: &[404, 409],
        ..route(
            Post,
            "/api/v1/environments/{env}/services/{service}/promote",
            "promoteShift",
            "Moves a progressive deployment past its current pause or analysis wait, or \
             (`full`) sends all the traffic to the new revision now; 409 \
             `deploy.nothing_to_promote` when none is shifting the service's traffic.",
            Role::Operator,
            of::<ShiftAnswer>,
        )
    },
    Route {
        errors: &[404, 409],
        ..route(
            Post,
            "/api/v1/environments/{env}/services/{service}/abort",
            "abortShift",
            "Sends all the traffic back to the stable revision at once and stops the new one; \
             the deployment ends RolledBack, aborted by the caller.",
            Role::Operator,
            of::<ShiftAnswer>,
        )
    },
    Route {
        errors: &[404, 409],
        ..route(
            Post,
            "/api/v1/environments/{env}/services/{service}/pause",
            "pauseShift",
            "Holds a progressive deployment at its current weight: its timers and analysis \
             window stop until a resume.",
            Role::Operator,
            of::<ShiftAnswer>,
        )
    },
    Route {
        errors: &[404, 409],
        ..route(
            Post,
            "/api/v1/environments/{env}/services/{service}/resume",
            "resumeShift",
            "Lets a paused progressive deployment go on.",
            Role::Operator,
            of::<ShiftAnswer>,
        )
    },
    Route {
        request: Some(of::<ShutdownRequest>),
        ..route(
            Post,
            "/api/v1/shutdown",
            "shutdown",
            "Asks the server to stop (and, when asked, every replica first).",
            Role::Admin,
            of::<ShutdownAnswer>,
        )
    },
    route(
        Get,
        "/api/v1/users",
        "listUsers",
        "Every user and their grants.",
        Role::Admin,
        of::<Vec<UserView>>,
    ),
    Route {
        request: Some(of::<NewUserRequest>),
        status: 201,
        errors: &[409],
        ..route(
            Post,
            "/api/v1/users",
            "addUser",
            "Adds a user with grants.",
            Role::Admin,
            of::<UserView>,
        )
    },
    Route {
        errors: &[404],
        ..route(
            Delete,
            "/api/v1/users/{name}",
            "removeUser",
            "Removes a user and revokes their tokens.",
            Role::Admin,
            of::<UserRemoved>,
        )
    },
    Route {
        request: Some(of::<GrantsRequest>),
        errors: &[404],
        ..route(
            Put,
            "/api/v1/users/{name}/grants",
            "setGrants",
            "Replaces a user's grants.",
            Role::Admin,
            of::<UserView>,
        )
    },
    Route {
        query: Some(fields::<TokensQuery>),
        ..route(
            Get,
            "/api/v1/tokens",
            "listTokens",
            "Tokens (never their values): one's own, or anyone's for an admin.",
            Role::Anyone,
            of::<Vec<TokenView>>,
        )
    },
    Route {
        request: Some(of::<NewTokenRequest>),
        status: 201,
        errors: &[404],
        ..route(
            Post,
            "/api/v1/tokens",
            "createToken",
            "Creates a token of one's own (another user's needs admin); the only answer that \
             holds its value.",
            Role::Anyone,
            of::<CreatedToken>,
        )
    },
    Route {
        errors: &[404],
        ..route(
            Delete,
            "/api/v1/tokens/{id}",
            "revokeToken",
            "Revokes a token of one's own (another user's needs admin).",
            Role::Anyone,
            of::<TokenView>,
        )
    },
    route(
        Post,
        "/api/v1/console/links",
        "createConsoleLink",
        "A one-time sign-in link to the web console for the caller's own token (it works once, \
         for 5 minutes).",
        Role::Viewer,
        of::<ConsoleLink>,
    ),
    Route {
        query: Some(fields::<AuditLogQuery>),
        ..route(
            Get,
            "/api/v1/audit",
            "auditLog",
            "The audit log: every mutation and every refusal.",
            Role::Admin,
            of::<Vec<AuditRecordView>>,
        )
    },
    route(
        Get,
        "/api/v1/pipelines",
        "listPipelines",
        "The pipelines the server knows (with executions, or registered), each with its \
         newest execution.",
        Role::Viewer,
        of::<Vec<PipelineSummary>>,
    ),
    route(
        Get,
        "/api/v1/triggers",
        "listTriggers",
        "The triggers of registered pipelines: what each watches, last saw and did.",
        Role::Viewer,
        of::<Vec<TriggerView>>,
    ),
    Route {
        query: Some(fields::<ServiceLogsQuery>),
        errors: &[404],
        ..route(
            Get,
            "/api/v1/environments/{environment}/services/{service}/logs",
            "serviceLogs",
            "What a service's replicas wrote to stdout and stderr (not masked: an operator of \
             the environment), the end of it or what came after a cursor.",
            Role::Operator,
            of::<Vec<ReplicaLogView>>,
        )
    },
    Route {
        query: Some(fields::<AccessLogQuery>),
        errors: &[404],
        ..route(
            Get,
            "/api/v1/environments/{environment}/access-log",
            "accessLog",
            "The environment's load balancer access log (with `load_balancer.access_log` on): \
             one line per request, the last lines or those after a cursor; an operator of the \
             environment, since lines hold clients' addresses and the paths they asked for.",
            Role::Operator,
            of::<AccessLogLines>,
        )
    },
    Route {
        query: Some(fields::<ImagesQuery>),
        errors: &[404],
        ..route(
            Get,
            "/api/v1/images",
            "listImages",
            "The embedded registry's images: every tag (and untagged manifest) of every \
             repository, or of one, with the services that run each digest.",
            Role::Viewer,
            of::<Vec<ImageView>>,
        )
    },
    Route {
        query: Some(fields::<ImageQuery>),
        errors: &[404],
        ..route(
            Get,
            "/api/v1/images/inspect",
            "inspectImage",
            "One image: digest, media type, size, layers, config summary, tags, and the \
             services that run it.",
            Role::Viewer,
            of::<ImageDetailView>,
        )
    },
    Route {
        request: Some(of::<PromoteImageRequest>),
        errors: &[403, 404, 409],
        ..route(
            Post,
            "/api/v1/images/promote",
            "promoteImage",
            "Copies an image to another repository or tag of the embedded registry, by \
             digest (its manifest and the blobs it references; no byte moves).",
            Role::Operator,
            of::<PromoteImageAnswer>,
        )
    },
    Route {
        request: Some(of::<RegistryGcRequest>),
        ..route(
            Post,
            "/api/v1/registry/gc",
            "registryGc",
            "Removes from the embedded registry what nothing needs (or, with `dry_run`, says \
             what it would remove).",
            Role::Admin,
            of::<RegistryGcAnswer>,
        )
    },
    route(
        Get,
        "/api/v1/agents",
        "listAgents",
        "The build agents the server heard from, with their labels and what they run.",
        Role::Viewer,
        of::<Vec<AgentView>>,
    ),
    Route {
        request: Some(of::<AgentPollRequest>),
        errors: &[409],
        ..route(
            Post,
            "/api/v1/agent/poll",
            "agentPoll",
            "An agent with a free slot asks for a job; the answer waits up to `wait_ms` for \
             one whose `agent.labels` the agent has. 409 `agent.version_mismatch` for an agent \
             of another gantry version.",
            Role::Agent,
            of::<AgentPollAnswer>,
        )
    },
    Route {
        request: Some(of::<AgentHeartbeatRequest>),
        ..route(
            Post,
            "/api/v1/agent/heartbeat",
            "agentHeartbeat",
            "The agent is alive and runs these jobs; the answer names those it must stop.",
            Role::Agent,
            of::<AgentHeartbeatAnswer>,
        )
    },
    Route {
        request: Some(of::<AgentLogRequest>),
        errors: &[409],
        ..route(
            Post,
            "/api/v1/agent/jobs/{id}/log",
            "agentLog",
            "Lines of a job's log. 409 `agent.job_gone` once the job's attempt ended.",
            Role::Agent,
            of::<Ack>,
        )
    },
    Route {
        media_type: "application/octet-stream",
        errors: &[404, 409],
        ..route(
            Get,
            "/api/v1/agent/jobs/{id}/blobs/{digest}",
            "agentGetBlob",
            "A blob of one of the job's input artifacts (a manifest or a file), by its \
             sha256 digest; no other blob.",
            Role::Agent,
            of::<String>,
        )
    },
    Route {
        status: 201,
        errors: &[409, 413],
        ..route(
            Put,
            "/api/v1/agent/jobs/{id}/blobs/{digest}",
            "agentPutBlob",
            "A blob of the job's outputs: the body is its bytes, stored only when they are \
             whole and hash to `digest` (400 `agent.digest_mismatch` otherwise).",
            Role::Agent,
            of::<Ack>,
        )
    },
    Route {
        request: Some(of::<AgentFinishRequest>),
        errors: &[409],
        ..route(
            Post,
            "/api/v1/agent/jobs/{id}/finish",
            "agentFinish",
            "How the job's build ended, with its outputs' manifests (every blob uploaded \
             before); 400 `agent.output_invalid` for a manifest with an unsafe path, a \
             missing blob or a link out of the artifact.",
            Role::Agent,
            of::<Ack>,
        )
    },
    Route {
        request: Some(any_object),
        status: 202,
        errors: &[404, 408, 413],
        ..route(
            Post,
            "/hooks/{pipeline}",
            "webhook",
            "A forge's webhook delivery (GitHub, GitLab, Gitea/Forgejo, generic), authenticated \
             by its signature with the trigger's shared secret, not by a token. 202 `accepted`; \
             200 for a redelivery, a ping or an event that starts nothing.",
            Role::Signature,
            of::<WebhookAnswer>,
        )
    },
];

/// The error statuses every route of `route`'s kind may answer: the
/// guard's (a foreign host 421, a foreign origin 403, a missing or bad
/// token 401, a role that does not allow it 403) and the request's
/// (an unreadable query or body 400, a body that is not JSON 415, a body
/// of the wrong shape 422, one too large 413).
pub fn common_errors(route: &Route) -> Vec<u16> {
    let mut statuses = vec![421];
    if route.role != Role::Public {
        statuses.extend([400, 403]);
    }
    if route.role.needs_token() {
        statuses.push(401);
    }
    if route.request.is_some() {
        statuses.extend([413, 415, 422]);
    }
    statuses
}

/// Every error status `route` may answer, sorted.
pub fn error_statuses(route: &Route) -> Vec<u16> {
    let mut statuses = common_errors(route);
    statuses.extend(route.errors);
    statuses.sort_unstable();
    statuses.dedup();
    statuses
}

/// The `{param}` names of a path, in order.
pub fn path_params(path: &str) -> Vec<&str> {
    path.split('/')
        .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
        .collect()
}

/// The reason phrase of the statuses the API answers.
fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        400 => "Bad Request",
        401 => "Unauthorized: no token, or a bad, expired or revoked one",
        403 => "Forbidden: the token's grants do not allow it, or a foreign Origin",
        404 => "Not Found",
        408 => "Request Timeout",
        409 => "Conflict",
        413 => "Content Too Large",
        415 => "Unsupported Media Type: the body is not `application/json`",
        421 => "Misdirected Request: a Host that does not name this server",
        422 => "Unprocessable Content",
        _ => "Error",
    }
}

/// A query string's fields as OpenAPI parameters: each property of the
/// inline object schema, `null` left out of its type (a query string has
/// no null: an absent field is).
fn query_parameters(schema: &Schema) -> Vec<Value> {
    let object = schema.as_object().cloned().unwrap_or_default();
    let required: Vec<&str> = object
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let Some(Value::Object(properties)) = object.get("properties") else {
        return Vec::new();
    };
    properties
        .iter()
        .map(|(name, property)| {
            let mut property = property.clone();
            let description = property
                .as_object_mut()
                .and_then(|p| p.remove("description"));
            // An absent field is the default; a null one cannot be sent.
            if let Some(p) = property.as_object_mut()
                && p.get("default") == Some(&Value::Null)
            {
                p.remove("default");
            }
            if let Some(Value::Array(types)) = property.get_mut("type") {
                types.retain(|t| t != "null");
                if types.len() == 1 {
                    let only = types[0].clone();
                    property["type"] = only;
                }
            }
            let mut parameter = json!({
                "name": name,
                "in": "query",
                "required": required.contains(&name.as_str()),
                "schema": property,
            });
            if let Some(description) = description {
                parameter["description"] = description;
            }
            parameter
        })
        .collect()
}

fn json_content(schema: Value) -> Value {
    content("application/json", schema)
}

fn content(media_type: &str, schema: Value) -> Value {
    let mut content = Map::new();
    content.insert(media_type.to_string(), json!({"schema": schema}));
    Value::Object(content)
}

/// One operation of the document.
fn operation(route: &Route, generator: &mut SchemaGenerator, error: &Value) -> Value {
    let mut parameters: Vec<Value> = path_params(route.path)
        .into_iter()
        .map(|name| {
            json!({
                "name": name,
                "in": "path",
                "required": true,
                "schema": {"type": "string"},
            })
        })
        .collect();
    if let Some(query) = route.query {
        parameters.extend(query_parameters(&query(generator)));
    }
    let mut responses = Map::new();
    responses.insert(
        route.status.to_string(),
        json!({
            "description": reason(route.status),
            "content": content(route.media_type, (route.response)(generator).to_value()),
        }),
    );
    if route.role == Role::Signature {
        // A redelivery, a ping, an event that starts nothing.
        responses.insert(
            "200".to_string(),
            json!({
                "description": reason(200),
                "content": json_content((route.response)(generator).to_value()),
            }),
        );
    }
    for status in error_statuses(route) {
        responses.insert(
            status.to_string(),
            json!({"description": reason(status), "content": json_content(error.clone())}),
        );
    }
    let mut op = json!({
        "operationId": route.id,
        "summary": route.summary,
        "description": format!("Role: {}.", route.role.as_str()),
        "x-gantry-role": route.role.as_str(),
        "responses": responses,
    });
    if !parameters.is_empty() {
        op["parameters"] = Value::Array(parameters);
    }
    if let Some(request) = route.request {
        op["requestBody"] = json!({
            "required": true,
            "content": json_content(request(generator).to_value()),
        });
    }
    if !route.role.needs_token() {
        op["security"] = json!([]);
    }
    op
}

/// The OpenAPI 3.1 document of [`ROUTES`].
pub fn document() -> Value {
    let mut generator = SchemaSettings::draft2020_12()
        .with(|s| {
            s.definitions_path = "/components/schemas".into();
            s.meta_schema = None;
        })
        .into_generator();
    let error = of::<ErrorBody>(&mut generator).to_value();
    let mut paths = Map::new();
    for route in ROUTES {
        let item = paths
            .entry(route.path.to_string())
            .or_insert_with(|| json!({}));
        item[route.method.as_str().to_ascii_lowercase()] = operation(route, &mut generator, &error);
    }
    let schemas = generator.take_definitions(true);
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "gantry",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "The JSON API of `gantry server`, the control plane. Every route but \
                the health check and the webhook endpoint needs a gantry token as a Bearer token; \
                each route's role is in its description (and `x-gantry-role`). Every error \
                answers an `ErrorBody` with a stable `code` (docs/error-codes.md).",
        },
        "jsonSchemaDialect": "https://json-schema.org/draft/2020-12/schema",
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "A gantry token (`gantry token create`; `DATA_DIR/admin.token`).",
                },
            },
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reference_points_at_a_schema_of_the_document() {
        let doc = document();
        let schemas = doc["components"]["schemas"].as_object().unwrap();
        let text = doc.to_string();
        for (i, _) in text.match_indices("\"$ref\":\"") {
            let rest = &text[i + 8..];
            let target = &rest[..rest.find('"').unwrap()];
            let name = target
                .strip_prefix("#/components/schemas/")
                .unwrap_or_else(|| panic!("{target} is not a component"));
            assert!(schemas.contains_key(name), "{target} is not defined");
        }
    }

    #[test]
    fn each_route_is_listed_once_with_a_unique_operation_id() {
        for (i, route) in ROUTES.iter().enumerate() {
            for other in &ROUTES[..i] {
                assert!(
                    (route.method, route.path) != (other.method, other.path),
                    "{} {} is listed twice",
                    route.method.as_str(),
                    route.path
                );
                assert_ne!(route.id, other.id, "operationId {} twice", route.id);
            }
        }
    }
}
