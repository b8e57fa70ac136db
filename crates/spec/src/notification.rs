//! Notifications (formats.md §7): which events of a pipeline are sent
//! where. Each item of the pipeline's `notifications` list names the events
//! it wants (`on`) and one target: a generic webhook (a JSON body signed
//! with HMAC-SHA256), a Slack-compatible incoming webhook, or a command run
//! without a shell.
//!
//! Secrets stay in the parameter store: the file names the parameter that
//! holds a webhook's signing secret or a Slack URL (which is itself a
//! secret), never the value. Delivering is the server's job; a delivery that
//! fails never changes the pipeline's result.

use crate::location::Location;

pub(crate) mod decode;

/// One item of the pipeline's `notifications` list.
#[derive(Debug, Clone, PartialEq)]
pub struct Notification {
    /// Not empty, no duplicates, in the order written.
    pub on: Vec<NotificationEvent>,
    pub target: NotificationTarget,
    /// Where the item is written.
    pub location: Location,
}

/// What happened, named as in the file (`execution.started`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum NotificationEvent {
    ExecutionStarted,
    ExecutionSucceeded,
    ExecutionFailed,
    ExecutionSuperseded,
    /// An approval action started waiting for a person.
    ApprovalWaiting,
    /// An approval was approved or rejected (or timed out).
    ApprovalDecided,
    DeploymentFailed,
    /// A deployment's circuit breaker rolled a service back.
    DeploymentRolledBack,
}

impl NotificationEvent {
    pub const ALL: [NotificationEvent; 8] = [
        NotificationEvent::ExecutionStarted,
        NotificationEvent::ExecutionSucceeded,
        NotificationEvent::ExecutionFailed,
        NotificationEvent::ExecutionSuperseded,
        NotificationEvent::ApprovalWaiting,
        NotificationEvent::ApprovalDecided,
        NotificationEvent::DeploymentFailed,
        NotificationEvent::DeploymentRolledBack,
    ];

    /// The name written in `on:` and sent in a delivery's `event` field.
    pub fn as_str(self) -> &'static str {
        match self {
            NotificationEvent::ExecutionStarted => "execution.started",
            NotificationEvent::ExecutionSucceeded => "execution.succeeded",
            NotificationEvent::ExecutionFailed => "execution.failed",
            NotificationEvent::ExecutionSuperseded => "execution.superseded",
            NotificationEvent::ApprovalWaiting => "approval.waiting",
            NotificationEvent::ApprovalDecided => "approval.decided",
            NotificationEvent::DeploymentFailed => "deployment.failed",
            NotificationEvent::DeploymentRolledBack => "deployment.rolled_back",
        }
    }

    /// The event named `name`, if there is one.
    pub fn from_name(name: &str) -> Option<NotificationEvent> {
        NotificationEvent::ALL
            .into_iter()
            .find(|event| event.as_str() == name)
    }
}

/// Where a notification goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotificationTarget {
    /// POSTs a JSON body to `url`, signed as generic webhooks are
    /// (`X-Gantry-Signature-256: sha256=HEX`, HMAC-SHA256 of the body).
    Webhook {
        /// `http://` or `https://`.
        url: String,
        /// The parameter holding the signing secret.
        secret_parameter: String,
    },
    /// POSTs `{"text": ...}` (with a link to the execution) to a Slack
    /// incoming webhook or anything that takes its format.
    Slack {
        /// The parameter holding the webhook's URL.
        url_parameter: String,
    },
    /// Runs a program, never through a shell: `argv[0]` is the program, the
    /// rest its arguments.
    Command { argv: Vec<String> },
}

impl NotificationTarget {
    /// The target's key as written in the file.
    pub fn type_name(&self) -> &'static str {
        match self {
            NotificationTarget::Webhook { .. } => "webhook",
            NotificationTarget::Slack { .. } => "slack",
            NotificationTarget::Command { .. } => "command",
        }
    }
}
