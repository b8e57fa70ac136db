//! The webhook endpoint's refusals, each with a stable code and status. A
//! refusal never says which secret was tried or what it was.

use gantry_triggers::TriggerError;

use crate::error::ControlError;

#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    /// A delivery refused by gantry-triggers: too large (413), unsigned or
    /// wrongly signed (401), unreadable (400).
    #[error(transparent)]
    Delivery(#[from] TriggerError),
    /// No registered pipeline of that name has triggers.
    #[error("no pipeline named {0} is registered with triggers (gantry apply -f FILE)")]
    UnknownPipeline(String),
    /// The pipeline has no `git` trigger with a webhook of the delivery's
    /// forge.
    #[error("pipeline {pipeline} has no {provider} webhook")]
    NoWebhook {
        pipeline: String,
        provider: &'static str,
    },
    /// The body did not arrive within the time limit.
    #[error("the webhook body did not arrive within {0} s")]
    BodyTimeout(u64),
    #[error(transparent)]
    Control(#[from] ControlError),
}

impl WebhookError {
    pub fn code(&self) -> &'static str {
        match self {
            WebhookError::Delivery(e) => e.code(),
            WebhookError::UnknownPipeline(_) => "webhook.unknown_pipeline",
            WebhookError::NoWebhook { .. } => "webhook.no_webhook",
            WebhookError::BodyTimeout(_) => "webhook.body_timeout",
            WebhookError::Control(e) => e.code(),
        }
    }

    pub fn http_status(&self) -> u16 {
        match self {
            WebhookError::Delivery(e) => e.http_status(),
            WebhookError::UnknownPipeline(_) | WebhookError::NoWebhook { .. } => 404,
            WebhookError::BodyTimeout(_) => 408,
            WebhookError::Control(e) => e.http_status(),
        }
    }
}

impl From<gantry_store::StoreError> for WebhookError {
    fn from(e: gantry_store::StoreError) -> Self {
        WebhookError::Control(e.into())
    }
}
