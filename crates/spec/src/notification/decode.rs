//! Reading `notifications:` from the YAML tree, every problem recorded;
//! decoding and validating are one pass, as for triggers. The `Raw*` types
//! only describe the keys for the JSON Schema.

use schemars::JsonSchema;

use super::{Notification, NotificationEvent, NotificationTarget};
use crate::trigger::decode::parameter_name;
use crate::yaml::{Diagnostics, Node, Value};

/// The keys of a notification: `on` and exactly one target.
pub(crate) const NOTIFICATION_KEYS: &[&str] = &["on", "webhook", "slack", "command"];
const TARGETS: &[&str] = &["webhook", "slack", "command"];
pub(crate) const WEBHOOK_TARGET_KEYS: &[&str] = &["url", "secret"];
pub(crate) const SLACK_KEYS: &[&str] = &["url"];
pub(crate) const COMMAND_KEYS: &[&str] = &["argv"];

/// One notification: the events it sends and exactly one target.
#[derive(JsonSchema)]
#[schemars(rename = "Notification", deny_unknown_fields)]
#[allow(dead_code)] // Only its schema is used; the decoder builds a Notification.
pub(crate) struct RawNotification {
    /// The events to send, such as execution.failed (one, or a list).
    on: EventNames,
    #[schemars(flatten)]
    target: RawTarget,
}

#[derive(JsonSchema)]
#[schemars(untagged)]
#[allow(dead_code)] // Only its schema is used.
pub(crate) enum EventNames {
    One(EventName),
    Many(Vec<EventName>),
}

#[derive(JsonSchema)]
#[allow(dead_code)] // Only its schema is used.
pub(crate) enum EventName {
    #[schemars(rename = "execution.started")]
    ExecutionStarted,
    #[schemars(rename = "execution.succeeded")]
    ExecutionSucceeded,
    #[schemars(rename = "execution.failed")]
    ExecutionFailed,
    #[schemars(rename = "execution.superseded")]
    ExecutionSuperseded,
    #[schemars(rename = "approval.waiting")]
    ApprovalWaiting,
    #[schemars(rename = "approval.decided")]
    ApprovalDecided,
    #[schemars(rename = "deployment.failed")]
    DeploymentFailed,
    #[schemars(rename = "deployment.rolled_back")]
    DeploymentRolledBack,
}

#[derive(JsonSchema)]
#[schemars(rename_all = "snake_case")]
#[allow(dead_code)] // Only its schema is used.
pub(crate) enum RawTarget {
    /// POSTs the event as JSON, signed with X-Gantry-Signature-256.
    Webhook(RawWebhookTarget),
    /// POSTs a Slack-compatible `{"text": ...}` message.
    Slack(RawSlack),
    /// Runs a program (never through a shell), the event as JSON on stdin.
    Command(RawCommand),
}

#[derive(JsonSchema)]
#[schemars(rename = "WebhookTarget", deny_unknown_fields)]
#[allow(dead_code)] // Only its schema is used.
pub(crate) struct RawWebhookTarget {
    /// An http:// or https:// URL.
    #[schemars(pattern(r"^https?://[^\s/]+"))]
    url: String,
    /// The parameter holding the signing secret.
    secret: String,
}

#[derive(JsonSchema)]
#[schemars(rename = "Slack", deny_unknown_fields)]
#[allow(dead_code)] // Only its schema is used.
pub(crate) struct RawSlack {
    /// The parameter holding the incoming webhook's URL (the URL is a secret).
    url: String,
}

#[derive(JsonSchema)]
#[schemars(rename = "Command", deny_unknown_fields)]
#[allow(dead_code)] // Only its schema is used.
pub(crate) struct RawCommand {
    /// The program and its arguments.
    #[schemars(length(min = 1))]
    argv: Vec<String>,
}

/// Decodes `notifications:`. The list holds only the notifications without
/// problems; the caller knows from the diagnostics whether there were any.
pub(crate) fn decode_notifications(diag: &mut Diagnostics<'_>, node: &Node) -> Vec<Notification> {
    let items = match &node.value {
        Value::Seq(items) => items.as_slice(),
        Value::Null => &[],
        _ => {
            diag.error(
                node.location,
                format!("`notifications` must be a list, found {}", node.kind()),
            );
            &[]
        }
    };
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        let errors_before = diag.errors.len();
        let Some(fields) = diag.map(item, "a notification") else {
            continue;
        };
        fields.deny_unknown(diag, NOTIFICATION_KEYS, "in a notification");
        let on = fields
            .required(diag, "on", "in a notification (the events to send)")
            .and_then(|n| events(diag, n));
        let targets: Vec<_> = fields
            .fields
            .iter()
            .filter(|f| TARGETS.contains(&f.key.as_str()))
            .collect();
        let target = match targets.as_slice() {
            [] => {
                diag.error(
                    fields.location,
                    format!("a notification needs one of: {}", TARGETS.join(", ")),
                );
                None
            }
            [one] => target(diag, &one.key, one.value),
            [first, rest @ ..] => {
                // Each target is still read, so its own problems show too.
                for field in &targets {
                    target(diag, &field.key, field.value);
                }
                for extra in rest {
                    diag.error(
                        extra.key_node.location,
                        format!(
                            "a notification has one target, and this one is already `{}`; write `{}` as another item of `notifications`",
                            first.key, extra.key
                        ),
                    );
                }
                None
            }
        };
        if let (Some(on), Some(target)) = (on, target)
            && diag.errors.len() == errors_before
        {
            out.push(Notification {
                on,
                target,
                location: item.location,
            });
        }
    }
    out
}

fn events(diag: &mut Diagnostics<'_>, node: &Node) -> Option<Vec<NotificationEvent>> {
    let names = diag.string_list(node, "`on`", true)?;
    let known = || {
        NotificationEvent::ALL
            .iter()
            .map(|e| e.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    if names.is_empty() {
        diag.error(
            node.location,
            format!(
                "`on` lists no event, so nothing would be sent (events: {})",
                known()
            ),
        );
        return None;
    }
    let mut out = Vec::with_capacity(names.len());
    let mut ok = true;
    for name in &names {
        match NotificationEvent::from_name(&name.value) {
            Some(event) if out.contains(&event) => {
                diag.error(
                    name.location,
                    format!("event `{}` is listed twice", name.value),
                );
                ok = false;
            }
            Some(event) => out.push(event),
            None => {
                diag.error(
                    name.location,
                    format!(
                        "unknown event `{}`; expected one of: {}",
                        name.value,
                        known()
                    ),
                );
                ok = false;
            }
        }
    }
    ok.then_some(out)
}

fn target(diag: &mut Diagnostics<'_>, key: &str, node: &Node) -> Option<NotificationTarget> {
    let fields = diag.map(node, &format!("`{key}`"))?;
    match key {
        "webhook" => {
            fields.deny_unknown(diag, WEBHOOK_TARGET_KEYS, "in a notification's `webhook`");
            let url = fields
                .required(diag, "url", "in a notification's `webhook`")
                .and_then(|n| diag.string(n, "`webhook.url`"))
                .and_then(|url| {
                    let rest = url
                        .value
                        .strip_prefix("https://")
                        .or_else(|| url.value.strip_prefix("http://"));
                    let has_host = rest.is_some_and(|r| !r.is_empty() && !r.starts_with('/'));
                    if !has_host || url.value.chars().any(char::is_whitespace) {
                        diag.error(
                            url.location,
                            format!(
                                "`webhook.url` must be an http:// or https:// URL, found `{}`",
                                url.value
                            ),
                        );
                        return None;
                    }
                    Some(url.value)
                });
            let secret = fields
                .required(
                    diag,
                    "secret",
                    "in a notification's `webhook` (the parameter holding the signing secret)",
                )
                .and_then(|n| parameter_name(diag, n, "webhook.secret"));
            Some(NotificationTarget::Webhook {
                url: url?,
                secret_parameter: secret?,
            })
        }
        "slack" => {
            fields.deny_unknown(diag, SLACK_KEYS, "in `slack`");
            let url = fields
                .required(
                    diag,
                    "url",
                    "in `slack` (the parameter holding the incoming webhook's URL)",
                )
                .and_then(|n| parameter_name(diag, n, "slack.url"));
            Some(NotificationTarget::Slack {
                url_parameter: url?,
            })
        }
        _ => {
            fields.deny_unknown(diag, COMMAND_KEYS, "in `command`");
            let argv_node =
                fields.required(diag, "argv", "in `command` (the program and its arguments)")?;
            let argv = diag.string_list(argv_node, "`command.argv`", false)?;
            if argv.first().is_none_or(|program| program.value.is_empty()) {
                diag.error(
                    argv_node.location,
                    "`command.argv` needs a program: its first item, not empty",
                );
                return None;
            }
            Some(NotificationTarget::Command {
                argv: argv.into_iter().map(|a| a.value).collect(),
            })
        }
    }
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

    #[test]
    fn schema_and_decoder_know_the_same_notification_keys() {
        let schema = crate::pipeline::pipeline_schema();
        let defs = &schema["$defs"];
        for (def, keys) in [
            ("WebhookTarget", WEBHOOK_TARGET_KEYS),
            ("Slack", SLACK_KEYS),
            ("Command", COMMAND_KEYS),
        ] {
            assert_eq!(property_names(&defs[def]), set(keys), "{def}");
        }
        let notification = &defs["Notification"];
        let mut keys = property_names(notification);
        for variant in notification["oneOf"].as_array().into_iter().flatten() {
            keys.extend(property_names(variant));
        }
        assert_eq!(keys, set(NOTIFICATION_KEYS));
        let events: BTreeSet<String> = defs["EventName"]["enum"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect();
        let known: BTreeSet<String> = NotificationEvent::ALL
            .iter()
            .map(|e| e.as_str().to_owned())
            .collect();
        assert_eq!(events, known);
    }
}
