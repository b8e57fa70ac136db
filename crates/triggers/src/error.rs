//! The one error type of the trigger crate.
//!
//! Every variant names what it is about and never carries a secret or a
//! signature, so an error can be logged, stored on a trigger and returned
//! over the API as it is. Codes are stable (`webhook.*` for a delivery the
//! webhook endpoint refuses, `trigger.*` for values a trigger works on);
//! messages may change.

use gantry_spec::trigger::WebhookProvider;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TriggerError {
    /// The caller refuses bodies over [`crate::webhook::MAX_BODY_BYTES`]
    /// before reading them whole; this is the same check, for callers that
    /// already hold the body.
    #[error("the webhook body is {size} bytes, over the limit of {limit}")]
    BodyTooLarge { size: usize, limit: usize },

    #[error(
        "no webhook event header: expected X-GitHub-Event, X-Gitlab-Event, X-Gitea-Event or X-Gantry-Event"
    )]
    UnknownProvider,

    #[error("the {provider} delivery has no {header} header")]
    MissingSignature {
        provider: &'static str,
        header: &'static str,
    },

    #[error("the {provider} delivery's {header} does not match the shared secret")]
    BadSignature {
        provider: &'static str,
        header: &'static str,
    },

    /// An empty secret would let anyone sign; a trigger with one takes no
    /// delivery.
    #[error("the {provider} webhook's shared secret is empty, so no delivery can be trusted")]
    EmptySecret { provider: &'static str },

    #[error("malformed {provider} `{event}` delivery: {reason}")]
    Malformed {
        provider: &'static str,
        event: String,
        reason: String,
    },

    #[error("`{value}` is not a commit id (40 or 64 hexadecimal digits)")]
    InvalidCommitId { value: String },
}

impl TriggerError {
    /// The stable code API clients match on.
    pub fn code(&self) -> &'static str {
        match self {
            TriggerError::BodyTooLarge { .. } => "webhook.body_too_large",
            TriggerError::UnknownProvider => "webhook.unknown_provider",
            TriggerError::MissingSignature { .. } => "webhook.missing_signature",
            TriggerError::BadSignature { .. } => "webhook.bad_signature",
            TriggerError::EmptySecret { .. } => "webhook.empty_secret",
            TriggerError::Malformed { .. } => "webhook.malformed",
            TriggerError::InvalidCommitId { .. } => "trigger.invalid_commit_id",
        }
    }

    /// The HTTP status the webhook endpoint answers with: 401 for anything
    /// that fails authentication (nothing is triggered, and the sender
    /// learns nothing more), 400 for what cannot be read, 413 for too much.
    pub fn http_status(&self) -> u16 {
        match self {
            TriggerError::BodyTooLarge { .. } => 413,
            TriggerError::MissingSignature { .. }
            | TriggerError::BadSignature { .. }
            | TriggerError::EmptySecret { .. } => 401,
            TriggerError::UnknownProvider
            | TriggerError::Malformed { .. }
            | TriggerError::InvalidCommitId { .. } => 400,
        }
    }

    /// Whether the delivery failed authentication (a 401).
    pub fn is_unauthenticated(&self) -> bool {
        self.http_status() == 401
    }
}

/// The provider's name in messages.
pub(crate) fn provider_name(provider: WebhookProvider) -> &'static str {
    match provider {
        WebhookProvider::Github => "GitHub",
        WebhookProvider::Gitlab => "GitLab",
        WebhookProvider::Gitea => "Gitea",
        WebhookProvider::Generic => "generic",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_stable_area_names_with_their_statuses() {
        let cases = [
            (
                TriggerError::BodyTooLarge { size: 2, limit: 1 },
                "webhook.body_too_large",
                413,
            ),
            (
                TriggerError::UnknownProvider,
                "webhook.unknown_provider",
                400,
            ),
            (
                TriggerError::MissingSignature {
                    provider: "GitHub",
                    header: "X-Hub-Signature-256",
                },
                "webhook.missing_signature",
                401,
            ),
            (
                TriggerError::BadSignature {
                    provider: "GitHub",
                    header: "X-Hub-Signature-256",
                },
                "webhook.bad_signature",
                401,
            ),
            (
                TriggerError::EmptySecret { provider: "GitLab" },
                "webhook.empty_secret",
                401,
            ),
            (
                TriggerError::Malformed {
                    provider: "Gitea",
                    event: "push".into(),
                    reason: "x".into(),
                },
                "webhook.malformed",
                400,
            ),
            (
                TriggerError::InvalidCommitId { value: "x".into() },
                "trigger.invalid_commit_id",
                400,
            ),
        ];
        for (error, code, status) in cases {
            assert_eq!(
                (error.code(), error.http_status()),
                (code, status),
                "{error}"
            );
            assert_eq!(error.is_unauthenticated(), status == 401);
        }
    }
}
