//! Reading `triggers:` from the YAML tree, every problem recorded.
//!
//! As for environments and services, decoding and validating are one pass:
//! each key is decoded straight into its validated value, and a trigger is
//! kept only if nothing in it was wrong. The one rule that needs the rest
//! of the pipeline, that `source` names a source action of the first stage,
//! is checked against [`FirstStageSources`], which the pipeline's decoder
//! hands over. The `Raw*` types only describe the keys for the JSON Schema;
//! a test keeps them and the key lists below in step.

use std::time::Duration;

use schemars::JsonSchema;

use super::{
    CronExpression, GitTrigger, GitWebhook, GlobFilter, GlobPattern, PipelineTrigger,
    PullRequestEvent, PullRequestFilter, PushFilter, ScheduleTrigger, TimeZoneName, Trigger,
    TriggerKind, UpstreamStatus, WebhookProvider,
};
use crate::names::{ActionName, NameRule, PipelineName};
use crate::service::check_parameter_name;
use crate::yaml::{Diagnostics, Fields, Located, Node, Value};

/// The keys of a trigger item: exactly one of them.
pub(crate) const TRIGGER_KINDS: &[&str] = &["git", "schedule", "pipeline"];
pub(crate) const GIT_KEYS: &[&str] = &["source", "push", "pull_request", "poll", "webhook"];
pub(crate) const PUSH_KEYS: &[&str] = &["branches", "tags", "file_paths"];
pub(crate) const PULL_REQUEST_KEYS: &[&str] = &["events", "branches"];
pub(crate) const FILTER_KEYS: &[&str] = &["includes", "excludes"];
pub(crate) const WEBHOOK_KEYS: &[&str] = &["provider", "secret"];
pub(crate) const SCHEDULE_KEYS: &[&str] = &["cron", "timezone", "source"];
pub(crate) const PIPELINE_TRIGGER_KEYS: &[&str] = &["name", "status"];

const POLL_MIN: Duration = Duration::from_secs(1);
const POLL_MAX: Duration = Duration::from_secs(86_400);

/// A source action of the first stage, as a trigger may name it.
pub(crate) struct SourceAction {
    pub(crate) name: String,
    pub(crate) branch: Option<String>,
}

/// What the triggers need to know of the rest of the pipeline.
pub(crate) struct PipelineContext<'a> {
    /// The first stage's source actions; `None` when the first stage could
    /// not be decoded whole, so "not a source action" would be guesswork.
    pub(crate) sources: Option<Vec<SourceAction>>,
    /// The pipeline's own name, when it decoded.
    pub(crate) pipeline: Option<&'a str>,
}

/// One trigger: exactly one of its kinds.
#[derive(JsonSchema)]
#[schemars(rename = "Trigger", rename_all = "snake_case")]
#[allow(dead_code)] // Only its schema is used; the decoder builds a Trigger.
pub(crate) enum RawTrigger {
    /// Starts the pipeline on pushes or pull requests to the repository of
    /// a source action, learnt by webhook, polling or both.
    Git(Box<RawGitTrigger>),
    /// Starts the pipeline at the times of a cron expression.
    Schedule(RawSchedule),
    /// Starts the pipeline when an execution of another pipeline ends.
    Pipeline(RawPipelineTrigger),
}

#[derive(JsonSchema)]
#[schemars(rename = "GitTrigger", deny_unknown_fields)]
#[allow(dead_code)] // Only its schema is used.
pub(crate) struct RawGitTrigger {
    /// The source action of the first stage whose repository is watched;
    /// executions are pinned to the commit that triggered them.
    source: String,
    /// Which pushes start the pipeline. Without `push` and `pull_request`:
    /// pushes to the source action's `branch`.
    push: Option<RawPush>,
    /// Which pull-request events start the pipeline (needs `webhook`).
    pull_request: Option<RawPullRequest>,
    /// How often to look for new commits: `30s`, `5m`; 1s to 1d.
    #[schemars(pattern(crate::duration::DURATION_PATTERN))]
    poll: Option<String>,
    /// Where the forge's deliveries arrive: `POST /hooks/PIPELINE`.
    webhook: Option<RawWebhook>,
}

#[derive(JsonSchema)]
#[schemars(rename = "PushFilter", deny_unknown_fields)]
#[allow(dead_code)] // Only its schema is used.
pub(crate) struct RawPush {
    /// Branch names (`main`, `release/*`), not `refs/heads/...`.
    branches: Option<RawGlobFilter>,
    /// Tag names (`v*`), not `refs/tags/...`.
    tags: Option<RawGlobFilter>,
    /// Changed files, relative to the repository's root; a branch push
    /// matches only if at least one changed file matches. Needs `branches`.
    file_paths: Option<RawGlobFilter>,
}

#[derive(JsonSchema)]
#[schemars(rename = "PullRequestFilter", deny_unknown_fields)]
#[allow(dead_code)] // Only its schema is used.
pub(crate) struct RawPullRequest {
    /// Default `[opened, updated]`.
    #[schemars(length(min = 1))]
    events: Option<Vec<PullRequestEventName>>,
    /// The pull request's base (target) branch.
    branches: Option<RawGlobFilter>,
}

#[derive(JsonSchema)]
#[schemars(rename = "PullRequestEvent", rename_all = "snake_case")]
#[allow(dead_code)] // Only its schema is used.
pub(crate) enum PullRequestEventName {
    /// Opened or reopened.
    Opened,
    /// New commits on the head branch.
    Updated,
    /// Closed, merged or not.
    Closed,
}

/// Globs: a name matches when it matches an include (or no includes are
/// given) and no exclude. Excludes win. `*` stays within one `/`-separated
/// part, `**` spans parts.
#[derive(JsonSchema)]
#[schemars(rename = "GlobFilter", deny_unknown_fields)]
#[allow(dead_code)] // Only its schema is used.
pub(crate) struct RawGlobFilter {
    #[schemars(length(min = 1))]
    includes: Option<Vec<String>>,
    excludes: Option<Vec<String>>,
}

#[derive(JsonSchema)]
#[schemars(rename = "Webhook", deny_unknown_fields)]
#[allow(dead_code)] // Only its schema is used.
pub(crate) struct RawWebhook {
    /// Whose delivery format and signature scheme.
    provider: ProviderName,
    /// The parameter holding the shared secret, such as /gantry/webhooks/shop.
    secret: String,
}

#[derive(JsonSchema)]
#[schemars(rename = "WebhookProvider", rename_all = "snake_case")]
#[allow(dead_code)] // Only its schema is used.
pub(crate) enum ProviderName {
    /// X-Hub-Signature-256.
    Github,
    /// X-Gitlab-Token.
    Gitlab,
    /// Gitea and Forgejo: X-Gitea-Signature.
    Gitea,
    /// gantry's JSON body with X-Gantry-Signature-256.
    Generic,
}

#[derive(JsonSchema)]
#[schemars(rename = "Schedule", deny_unknown_fields)]
#[allow(dead_code)] // Only its schema is used.
pub(crate) struct RawSchedule {
    /// Five fields: minute hour day-of-month month day-of-week, such as
    /// `0 3 * * *`; or @hourly, @daily, @weekly, @monthly, @yearly.
    cron: String,
    /// An IANA time zone such as Asia/Tokyo; default UTC.
    timezone: Option<String>,
    /// The source action whose branch head the execution runs on; default:
    /// each source action's own branch head.
    source: Option<String>,
}

#[derive(JsonSchema)]
#[schemars(rename = "PipelineTrigger", deny_unknown_fields)]
#[allow(dead_code)] // Only its schema is used.
pub(crate) struct RawPipelineTrigger {
    /// The upstream pipeline.
    #[schemars(length(min = 1, max = 100), pattern(r"^[A-Za-z0-9.@_-]+$"))]
    name: String,
    /// The final status (or statuses) of its executions that start this
    /// pipeline; default Succeeded.
    status: Option<StatusNames>,
}

#[derive(JsonSchema)]
#[schemars(untagged)]
#[allow(dead_code)] // Only its schema is used.
pub(crate) enum StatusNames {
    One(StatusName),
    Many(Vec<StatusName>),
}

#[derive(JsonSchema)]
#[allow(dead_code)] // Only its schema is used.
pub(crate) enum StatusName {
    Succeeded,
    Failed,
    Stopped,
    Superseded,
}

/// Decodes `triggers:`. The list holds only the triggers without problems;
/// the caller knows from the diagnostics whether there were any.
pub(crate) fn decode_triggers(
    diag: &mut Diagnostics<'_>,
    node: &Node,
    context: &PipelineContext<'_>,
) -> Vec<Trigger> {
    let items = match &node.value {
        Value::Seq(items) => items.as_slice(),
        // `triggers:` with nothing under it: no triggers, as with `[]`.
        Value::Null => &[],
        _ => {
            diag.error(
                node.location,
                format!("`triggers` must be a list, found {}", node.kind()),
            );
            &[]
        }
    };
    let mut triggers = Vec::with_capacity(items.len());
    for item in items {
        let errors_before = diag.errors.len();
        let Some(fields) = diag.map(item, "a trigger") else {
            continue;
        };
        let Some(field) = one_kind(diag, &fields) else {
            continue;
        };
        let kind = match field.key.as_str() {
            "git" => git(diag, field.value, context).map(TriggerKind::Git),
            "schedule" => schedule(diag, field.value, context).map(TriggerKind::Schedule),
            _ => pipeline(diag, field.value, context).map(TriggerKind::Pipeline),
        };
        if let Some(kind) = kind
            && diag.errors.len() == errors_before
        {
            triggers.push(Trigger {
                kind,
                location: item.location,
            });
        }
    }
    triggers
}

/// The one key of a trigger item, which says its kind.
fn one_kind<'f, 'n>(
    diag: &mut Diagnostics<'_>,
    fields: &'f Fields<'n>,
) -> Option<&'f crate::yaml::Field<'n>> {
    fields.deny_unknown(diag, TRIGGER_KINDS, "in a trigger");
    let kinds: Vec<_> = fields
        .fields
        .iter()
        .filter(|f| TRIGGER_KINDS.contains(&f.key.as_str()))
        .collect();
    match kinds.as_slice() {
        [] => {
            if fields.fields.is_empty() {
                diag.error(
                    fields.location,
                    format!("a trigger needs one of: {}", TRIGGER_KINDS.join(", ")),
                );
            }
            None
        }
        [one] => Some(*one),
        [first, rest @ ..] => {
            for extra in rest {
                diag.error(
                    extra.key_node.location,
                    format!(
                        "a trigger has one kind, and this one is already `{}`; write `{}` as another item of `triggers`",
                        first.key, extra.key
                    ),
                );
            }
            None
        }
    }
}

fn git(
    diag: &mut Diagnostics<'_>,
    node: &Node,
    context: &PipelineContext<'_>,
) -> Option<GitTrigger> {
    let errors_before = diag.errors.len();
    let fields = diag.map(node, "`git`")?;
    fields.deny_unknown(diag, GIT_KEYS, "in a `git` trigger");
    let source = fields
        .required(
            diag,
            "source",
            "in a `git` trigger (the source action whose repository it watches)",
        )
        .and_then(|n| source(diag, n, context, "git.source"));
    let push = fields.get("push").and_then(|n| push(diag, n));
    let pull_request = fields
        .get("pull_request")
        .and_then(|n| pull_request(diag, n));
    let poll = fields
        .get("poll")
        .and_then(|n| diag.duration(n, "`git.poll`", POLL_MIN, POLL_MAX))
        .map(|p| p.value);
    let webhook = fields.get("webhook").and_then(|n| webhook(diag, n));

    if fields.get("poll").is_none() && fields.get("webhook").is_none() {
        diag.error(
            fields.location,
            "a `git` trigger needs `poll`, `webhook` or both: otherwise nothing tells gantry about new commits",
        );
    }
    if let Some(n) = fields.get("pull_request") {
        match &webhook {
            None if fields.get("webhook").is_none() => diag.error(
                n.location,
                "pull-request events arrive only by webhook: add `webhook` to this trigger",
            ),
            Some(w) if w.provider == WebhookProvider::Generic => diag.error(
                n.location,
                "the generic webhook carries pushes only: use the forge's own provider (github, gitlab, gitea) for `pull_request`",
            ),
            _ => {}
        }
    }
    // Without `push` or `pull_request`, pushes to the source's branch count.
    let push = match (push, fields.get("push"), fields.get("pull_request")) {
        (None, None, None) => match &source {
            Some((_, Some(Some(branch)))) => {
                match GlobPattern::literal(branch) {
                    Ok(pattern) => Some(PushFilter {
                        branches: Some(GlobFilter {
                            includes: vec![pattern],
                            excludes: Vec::new(),
                        }),
                        tags: None,
                        file_paths: None,
                    }),
                    Err(message) => {
                        // A branch name is never an invalid escaped glob; say so
                        // rather than pass silently if it ever is.
                        diag.error(fields.location, message);
                        None
                    }
                }
            }
            Some((name, Some(None))) => {
                diag.error(
                    fields.location,
                    format!(
                        "without `push` or `pull_request`, a `git` trigger starts on pushes to its source action's `branch`, and `{name}` names none: add `branch:` to it, or `push.branches` here"
                    ),
                );
                None
            }
            // Unknown: the first stage has errors of its own.
            Some((_, None)) | None => None,
        },
        (push, ..) => push,
    };
    let source = source?.0;
    (diag.errors.len() == errors_before).then_some(GitTrigger {
        source,
        push,
        pull_request,
        poll,
        webhook,
    })
}

/// A `source` key: the name of a source action of the first stage, and that
/// action's branch: `Some(None)` when it names none, `None` when the first
/// stage did not decode, so it is unknown.
fn source(
    diag: &mut Diagnostics<'_>,
    node: &Node,
    context: &PipelineContext<'_>,
    what: &str,
) -> Option<(ActionName, Option<Option<String>>)> {
    let name = diag.string(node, &format!("`{what}`"))?;
    if let Err(message) = NameRule::ActionName.check(&name.value) {
        diag.error(name.location, message);
        return None;
    }
    let action = ActionName(name.value.clone());
    let Some(sources) = &context.sources else {
        return Some((action, None));
    };
    match sources.iter().find(|s| s.name == name.value) {
        Some(found) => Some((action, Some(found.branch.clone()))),
        None => {
            let known = if sources.is_empty() {
                "the first stage has none".to_owned()
            } else {
                let names: Vec<&str> = sources.iter().map(|s| s.name.as_str()).collect();
                format!("source actions: {}", names.join(", "))
            };
            diag.error(
                name.location,
                format!(
                    "`{what}` must name a source action of the first stage, and `{}` is not one ({known})",
                    name.value
                ),
            );
            None
        }
    }
}

fn push(diag: &mut Diagnostics<'_>, node: &Node) -> Option<PushFilter> {
    let fields = diag.map(node, "`push`")?;
    fields.deny_unknown(diag, PUSH_KEYS, "in `push`");
    let branches = fields
        .get("branches")
        .and_then(|n| glob_filter(diag, n, "push.branches", Names::Refs("branch")));
    let tags = fields
        .get("tags")
        .and_then(|n| glob_filter(diag, n, "push.tags", Names::Refs("tag")));
    let file_paths = fields
        .get("file_paths")
        .and_then(|n| glob_filter(diag, n, "push.file_paths", Names::Paths));
    if fields.get("branches").is_none() && fields.get("tags").is_none() {
        diag.error(
            fields.location,
            "`push` needs `branches`, `tags` or both: they say which pushes count",
        );
    } else if let Some(f) = fields.field("file_paths")
        && fields.get("branches").is_none()
    {
        diag.error(
            f.key_node.location,
            "`file_paths` filters branch pushes (a tag carries no changed files): add `branches`",
        );
    }
    Some(PushFilter {
        branches,
        tags,
        file_paths,
    })
}

fn pull_request(diag: &mut Diagnostics<'_>, node: &Node) -> Option<PullRequestFilter> {
    let fields = diag.map_or_empty(node, "`pull_request`")?;
    fields.deny_unknown(diag, PULL_REQUEST_KEYS, "in `pull_request`");
    let events = match fields.get("events") {
        None => vec![PullRequestEvent::Opened, PullRequestEvent::Updated],
        Some(n) => {
            let names = diag.string_list(n, "`pull_request.events`", false)?;
            if names.is_empty() {
                diag.error(
                    n.location,
                    "`pull_request.events` lists no event, so no pull request would start the pipeline (events: opened, updated, closed)",
                );
            }
            let mut events = Vec::with_capacity(names.len());
            for name in &names {
                match PullRequestEvent::ALL
                    .into_iter()
                    .find(|e| e.as_str() == name.value)
                {
                    Some(event) if events.contains(&event) => diag.error(
                        name.location,
                        format!("event `{}` is listed twice", name.value),
                    ),
                    Some(event) => events.push(event),
                    None => diag.error(
                        name.location,
                        format!(
                            "unknown pull-request event `{}`; expected one of: opened, updated, closed",
                            name.value
                        ),
                    ),
                }
            }
            events
        }
    };
    let branches = fields
        .get("branches")
        .and_then(|n| glob_filter(diag, n, "pull_request.branches", Names::Refs("branch")));
    Some(PullRequestFilter { events, branches })
}

/// What a filter's globs are matched against, for the checks that catch
/// patterns that could never match.
#[derive(Clone, Copy)]
enum Names {
    /// Branch or tag names.
    Refs(&'static str),
    /// Paths relative to the repository's root.
    Paths,
}

fn glob_filter(
    diag: &mut Diagnostics<'_>,
    node: &Node,
    what: &str,
    names: Names,
) -> Option<GlobFilter> {
    let fields = diag.map(node, &format!("`{what}`"))?;
    fields.deny_unknown(diag, FILTER_KEYS, &format!("in `{what}`"));
    let includes = fields
        .get("includes")
        .map(|n| patterns(diag, n, &format!("{what}.includes"), names));
    let excludes = fields
        .get("excludes")
        .map(|n| patterns(diag, n, &format!("{what}.excludes"), names));
    if includes.is_none() && excludes.is_none() {
        diag.error(
            fields.location,
            format!("`{what}` needs `includes`, `excludes` or both"),
        );
    }
    // Only a list written empty; patterns that failed are reported as such.
    if let Some(n) = fields.get("includes")
        && match &n.value {
            Value::Null => true,
            Value::Seq(items) => items.is_empty(),
            _ => false,
        }
    {
        diag.error(
            n.location,
            format!(
                "`{what}.includes` lists no pattern, so nothing would match: add patterns, or leave `includes` out to include everything"
            ),
        );
    }
    Some(GlobFilter {
        includes: includes.flatten().unwrap_or_default(),
        excludes: excludes.flatten().unwrap_or_default(),
    })
}

fn patterns(
    diag: &mut Diagnostics<'_>,
    node: &Node,
    what: &str,
    names: Names,
) -> Option<Vec<GlobPattern>> {
    let texts = diag.string_list(node, &format!("`{what}`"), false)?;
    let mut out = Vec::with_capacity(texts.len());
    for text in &texts {
        let problem = match names {
            Names::Refs(kind) => {
                let prefix = if kind == "tag" {
                    "refs/tags/"
                } else {
                    "refs/heads/"
                };
                text.value.strip_prefix(prefix).map(|name| {
                    format!(
                        "{kind} patterns match the {kind}'s name: write `{name}`, not `{}`",
                        text.value
                    )
                })
            }
            Names::Paths => {
                (text.value.starts_with('/') || text.value.starts_with("./")).then(|| {
                    format!(
                        "file path patterns are relative to the repository's root: write `{}`",
                        text.value.trim_start_matches("./").trim_start_matches('/')
                    )
                })
            }
        };
        if let Some(problem) = problem {
            diag.error(text.location, problem);
            continue;
        }
        match GlobPattern::new(&text.value) {
            Ok(pattern) => out.push(pattern),
            Err(message) => diag.error(text.location, message),
        }
    }
    Some(out)
}

fn webhook(diag: &mut Diagnostics<'_>, node: &Node) -> Option<GitWebhook> {
    let fields = diag.map(node, "`webhook`")?;
    fields.deny_unknown(diag, WEBHOOK_KEYS, "in `webhook`");
    let provider = fields
        .required(diag, "provider", "in `webhook` (github, gitlab, gitea or generic)")
        .and_then(|n| diag.string(n, "`webhook.provider`"))
        .and_then(|text| {
            let found = WebhookProvider::ALL
                .into_iter()
                .find(|p| p.as_str() == text.value);
            if found.is_none() {
                diag.error(
                    text.location,
                    format!(
                        "unknown webhook provider `{}`; expected one of: github, gitlab, gitea (also Forgejo), generic",
                        text.value
                    ),
                );
            }
            found
        });
    let secret = fields
        .required(
            diag,
            "secret",
            "in `webhook` (the parameter holding the shared secret)",
        )
        .and_then(|n| parameter_name(diag, n, "webhook.secret"));
    Some(GitWebhook {
        provider: provider?,
        secret_parameter: secret?,
    })
}

/// A key whose value names a parameter of the parameter store.
pub(crate) fn parameter_name(
    diag: &mut Diagnostics<'_>,
    node: &Node,
    what: &str,
) -> Option<String> {
    let name = diag.string(node, &format!("`{what}`"))?;
    match check_parameter_name(&name.value) {
        Ok(()) => Some(name.value),
        Err(_) if name.value.contains("://") => {
            diag.error(
                name.location,
                format!(
                    "`{what}` names the parameter that holds the value, not the value itself: store it with `gantry param put NAME --type SecureString` and write NAME here"
                ),
            );
            None
        }
        Err(problem) => {
            diag.error(
                name.location,
                format!(
                    "`{what}` names a parameter (the value stays in the parameter store), and `{}` is not a valid parameter name: {problem}",
                    name.value
                ),
            );
            None
        }
    }
}

fn schedule(
    diag: &mut Diagnostics<'_>,
    node: &Node,
    context: &PipelineContext<'_>,
) -> Option<ScheduleTrigger> {
    let fields = diag.map(node, "`schedule`")?;
    fields.deny_unknown(diag, SCHEDULE_KEYS, "in a `schedule` trigger");
    let cron = fields
        .required(
            diag,
            "cron",
            "in a `schedule` trigger (such as \"0 3 * * *\")",
        )
        .and_then(|n| diag.string(n, "`schedule.cron`"))
        .and_then(|text| located(diag, &text, CronExpression::new));
    let timezone = match fields.get("timezone") {
        None => Some(TimeZoneName::utc()),
        Some(n) => diag
            .string(n, "`schedule.timezone`")
            .and_then(|text| located(diag, &text, TimeZoneName::new)),
    };
    let source = match fields.get("source") {
        None => Some(None),
        Some(n) => source(diag, n, context, "schedule.source").map(|(name, _)| Some(name)),
    };
    Some(ScheduleTrigger {
        cron: cron?,
        timezone: timezone?,
        source: source?,
    })
}

/// Builds a value from text, reporting the builder's message at the text.
fn located<T>(
    diag: &mut Diagnostics<'_>,
    text: &Located<String>,
    build: impl FnOnce(&str) -> Result<T, String>,
) -> Option<T> {
    match build(&text.value) {
        Ok(value) => Some(value),
        Err(message) => {
            diag.error(text.location, message);
            None
        }
    }
}

fn pipeline(
    diag: &mut Diagnostics<'_>,
    node: &Node,
    context: &PipelineContext<'_>,
) -> Option<PipelineTrigger> {
    let fields = diag.map(node, "`pipeline`")?;
    fields.deny_unknown(diag, PIPELINE_TRIGGER_KEYS, "in a `pipeline` trigger");
    let name = fields
        .required(
            diag,
            "name",
            "in a `pipeline` trigger (the upstream pipeline)",
        )
        .and_then(|n| diag.string(n, "`pipeline.name`"))
        .and_then(|text| {
            let name = located(diag, &text, |t| {
                NameRule::PipelineName
                    .check(t)
                    .map(|()| PipelineName(t.to_owned()))
            })?;
            if context.pipeline == Some(text.as_str()) {
                diag.error(
                    text.location,
                    format!(
                        "pipeline `{}` cannot trigger itself: every execution would start another",
                        text.value
                    ),
                );
                return None;
            }
            Some(name)
        });
    let statuses = match fields.get("status") {
        None => Some(vec![UpstreamStatus::Succeeded]),
        Some(n) => statuses(diag, n),
    };
    Some(PipelineTrigger {
        name: name?,
        statuses: statuses?,
    })
}

fn statuses(diag: &mut Diagnostics<'_>, node: &Node) -> Option<Vec<UpstreamStatus>> {
    let names = diag.string_list(node, "`pipeline.status`", true)?;
    if names.is_empty() {
        diag.error(
            node.location,
            "`pipeline.status` lists no status (statuses: Succeeded, Failed, Stopped, Superseded)",
        );
        return None;
    }
    let mut out = Vec::with_capacity(names.len());
    let mut ok = true;
    for name in &names {
        match UpstreamStatus::ALL
            .into_iter()
            .find(|s| s.as_str() == name.value)
        {
            Some(status) if out.contains(&status) => {
                diag.error(
                    name.location,
                    format!("status `{}` is listed twice", name.value),
                );
                ok = false;
            }
            Some(status) => out.push(status),
            None => {
                diag.error(
                    name.location,
                    format!(
                        "unknown status `{}`; expected one of: Succeeded, Failed, Stopped, Superseded (an execution's final statuses)",
                        name.value
                    ),
                );
                ok = false;
            }
        }
    }
    ok.then_some(out)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use serde_json::Value;

    use super::*;

    fn property_names(schema: &Value) -> BTreeSet<String> {
        schema["properties"]
            .as_object()
            .map(|p| p.keys().cloned().collect())
            .unwrap_or_default()
    }

    fn set(keys: &[&str]) -> BTreeSet<String> {
        keys.iter().map(|k| (*k).to_owned()).collect()
    }

    /// The schema is derived from the `Raw*` types and the decoder has its
    /// own key lists; this keeps the two describing the same keys.
    #[test]
    fn schema_and_decoder_know_the_same_trigger_keys() {
        let schema = crate::pipeline::pipeline_schema();
        let defs = &schema["$defs"];
        for (def, keys) in [
            ("GitTrigger", GIT_KEYS),
            ("PushFilter", PUSH_KEYS),
            ("PullRequestFilter", PULL_REQUEST_KEYS),
            ("GlobFilter", FILTER_KEYS),
            ("Webhook", WEBHOOK_KEYS),
            ("Schedule", SCHEDULE_KEYS),
            ("PipelineTrigger", PIPELINE_TRIGGER_KEYS),
        ] {
            assert_eq!(property_names(&defs[def]), set(keys), "{def}");
        }
        let kinds: BTreeSet<String> = defs["Trigger"]["oneOf"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(property_names)
            .collect();
        assert_eq!(kinds, set(TRIGGER_KINDS));
        let providers: BTreeSet<String> = WebhookProvider::ALL
            .iter()
            .map(|p| p.as_str().to_owned())
            .collect();
        let in_schema: BTreeSet<String> = defs["WebhookProvider"]["oneOf"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v["const"].as_str().map(str::to_owned))
            .collect();
        assert_eq!(in_schema, providers);
    }
}
