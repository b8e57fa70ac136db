//! Webhook deliveries (`POST /hooks/PIPELINE`), after the HTTP layer read
//! the body within its size and time limits.
//!
//! 1. The pipeline must be registered with triggers (else 404), and have a
//!    `git` trigger with a webhook of the delivery's forge (else 404).
//! 2. Each such trigger's secret (a parameter) is tried: the first whose
//!    signature fits authenticates the delivery. None: 401, and every one
//!    of them counts a bad signature; nothing else happens.
//! 3. A delivery id seen before is a replay: 200, ignored. A ping: 200.
//! 4. Otherwise 202, and the work is spawned: the event goes through the
//!    trigger's filters and [`super::git`] for every trigger that
//!    authenticated it and watches its repository.

use std::sync::Arc;

use gantry_api::WebhookAnswer;
use gantry_clock::now_ms;
use gantry_engine::{PullRequest, TriggerType};
use gantry_params::{ParamName, Selector};
use gantry_triggers::webhook::{detect_provider, receive};
use gantry_triggers::{Delivery, TriggerError, Verdict, WebhookEvent};
use http::HeaderMap;

use super::git::{Outcome, Sighting};
use super::{Armed, GitWatch, WebhookError};
use crate::control::ControlPlane;

/// Delivery ids are remembered this long (a forge retries within hours).
const DELIVERY_MEMORY_MS: i64 = 7 * 24 * 3600 * 1000;

/// One delivery as the HTTP layer read it.
pub struct HookRequest<'a> {
    pub pipeline: &'a str,
    pub headers: &'a HeaderMap,
    pub body: &'a [u8],
}

/// The answer to an authenticated delivery, with its HTTP status (200 or
/// 202) and what to audit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookReply {
    pub status: u16,
    pub answer: WebhookAnswer,
}

impl ControlPlane {
    /// Receives one webhook delivery: authenticates it, answers, and spawns
    /// the work. Never logs or returns a secret.
    pub async fn receive_webhook(
        &self,
        request: HookRequest<'_>,
    ) -> Result<WebhookReply, WebhookError> {
        let HookRequest {
            pipeline,
            headers,
            body,
        } = request;
        let armed = self
            .triggers()
            .get(pipeline)
            .ok_or_else(|| WebhookError::UnknownPipeline(pipeline.chars().take(100).collect()))?;
        let provider = detect_provider(headers).ok_or(TriggerError::UnknownProvider)?;
        let candidates: Vec<&GitWatch> = armed
            .git
            .iter()
            .filter(|w| {
                w.trigger
                    .webhook
                    .as_ref()
                    .is_some_and(|h| h.provider == provider)
            })
            .collect();
        if candidates.is_empty() {
            return Err(WebhookError::NoWebhook {
                pipeline: armed.name.clone(),
                provider: provider.as_str(),
            });
        }
        let mut delivery: Option<Delivery> = None;
        let mut signed_by = Vec::new();
        let mut refusal = None;
        for watch in &candidates {
            let Some(webhook) = &watch.trigger.webhook else {
                continue;
            };
            let secret = match self.webhook_secret(&webhook.secret_parameter).await {
                Ok(secret) => secret,
                Err(error) => {
                    // Recorded on the trigger; the sender only learns 401.
                    let _ = self
                        .store()
                        .record_trigger_error(
                            &armed.name,
                            index(watch.index),
                            None,
                            &error,
                            now_ms(),
                        )
                        .await;
                    continue;
                }
            };
            match receive(provider, headers, body, secret.expose().as_bytes()) {
                Ok(read) => {
                    signed_by.push(watch.index);
                    delivery.get_or_insert(read);
                }
                Err(error) if error.is_unauthenticated() => {
                    refusal.get_or_insert(error);
                }
                Err(error) => return Err(error.into()),
            }
        }
        let Some(delivery) = delivery else {
            for watch in &candidates {
                self.store()
                    .count_bad_signature(&armed.name, index(watch.index))
                    .await?;
            }
            tracing::warn!(pipeline = %armed.name, provider = provider.as_str(),
                "Refused a webhook delivery without a valid signature.");
            return Err(refusal
                .unwrap_or(TriggerError::BadSignature {
                    provider: provider.as_str(),
                    header: "signature",
                })
                .into());
        };
        let answer = |status: &str, reason: Option<String>| WebhookAnswer {
            status: status.to_string(),
            delivery: delivery.id.clone(),
            reason,
        };
        if let Some(id) = &delivery.id {
            let store = self.store();
            let at = now_ms();
            if !store
                .record_delivery(&armed.name, provider.as_str(), id, at)
                .await?
            {
                return Ok(WebhookReply {
                    status: 200,
                    answer: answer("replayed", None),
                });
            }
            // Forget old ids now and then (one delivery in 64).
            if super::random().is_multiple_of(64) {
                let _ = store.prune_deliveries(at - DELIVERY_MEMORY_MS).await;
            }
        }
        match &delivery.event {
            WebhookEvent::Ping => Ok(WebhookReply {
                status: 200,
                answer: answer("pong", None),
            }),
            WebhookEvent::Ignored { reason } => Ok(WebhookReply {
                status: 200,
                answer: answer("ignored", Some(reason.clone())),
            }),
            WebhookEvent::Push(_) | WebhookEvent::PullRequest(_) => {
                let reply = WebhookReply {
                    status: 202,
                    answer: answer("accepted", None),
                };
                tokio::spawn(act_on(self.clone(), armed, signed_by, delivery));
                Ok(reply)
            }
        }
    }

    /// A webhook's shared secret, from the parameter store. The error names
    /// the parameter and why, never a value.
    async fn webhook_secret(&self, name: &str) -> Result<gantry_params::SecretValue, String> {
        let cannot = |reason: String| format!("cannot read the webhook secret {name}: {reason}");
        let name = ParamName::parse(name).map_err(|e| cannot(e.to_string()))?;
        let parameter = self
            .params()
            .get(&Selector::latest(name), true)
            .await
            .map_err(|e| cannot(format!("{} ({})", e, e.code())))?;
        parameter
            .value
            .expose()
            .map(gantry_params::SecretValue::new)
            .ok_or_else(|| cannot("it has no value".to_string()))
    }
}

fn index(i: usize) -> i64 {
    i64::try_from(i).unwrap_or(i64::MAX)
}

/// The work after the answer: for each trigger that authenticated the
/// delivery (and watches its repository, when several did), decide the
/// event and act on it.
async fn act_on(plane: ControlPlane, armed: Arc<Armed>, signed_by: Vec<usize>, delivery: Delivery) {
    let provider = delivery.provider.as_str();
    let id = delivery.id.as_deref().unwrap_or("without an id");
    let repository = match &delivery.event {
        WebhookEvent::Push(push) => Some(&push.repository),
        WebhookEvent::PullRequest(pr) => Some(&pr.repository),
        _ => None,
    };
    // Several triggers share a secret: the delivery's repository tells
    // which of them it is for (when it names one at all).
    let mut watches: Vec<&GitWatch> = signed_by
        .iter()
        .filter_map(|&i| armed.git_trigger(i))
        .collect();
    if watches.len() > 1
        && let Some(repository) = repository
    {
        let named: Vec<&GitWatch> = watches
            .iter()
            .copied()
            .filter(|w| repository.matches(&w.url))
            .collect();
        if !named.is_empty() {
            watches = named;
        }
    }
    for watch in watches {
        let index = watch.index;
        let sighting = match &delivery.event {
            WebhookEvent::Push(push) => {
                let event = format!(
                    "{provider} delivery {id}: {} {}",
                    push.git_ref,
                    push.after.as_ref().map_or("(deleted)", |c| c.as_str())
                );
                let Some(after) = push.after.clone() else {
                    let skip = match watch.matcher.check_push(push) {
                        Verdict::Skip(skip) => skip,
                        _ => gantry_triggers::Skip::RefDeleted {
                            git_ref: push.git_ref.full_name(),
                        },
                    };
                    record_skip(&plane, &armed, index, &event, None, skip).await;
                    continue;
                };
                Sighting {
                    git_ref: push.git_ref.clone(),
                    commit: after,
                    before: push.before.clone(),
                    changed_files: push.changed_files.clone(),
                    how: TriggerType::Webhook,
                    event,
                    pull_request: None,
                }
            }
            WebhookEvent::PullRequest(pr) => {
                let event = format!(
                    "{provider} delivery {id}: pull request #{} {} ({} → {}) {}",
                    pr.number, pr.forge_action, pr.head_branch, pr.base_branch, pr.head_commit
                );
                if let Verdict::Skip(skip) = watch.matcher.check_pull_request(pr) {
                    let commit = Some(pr.head_commit.as_str());
                    record_skip(&plane, &armed, index, &event, commit, skip).await;
                    continue;
                }
                Sighting {
                    git_ref: gantry_triggers::GitRef::Branch(pr.head_branch.clone()),
                    commit: pr.head_commit.clone(),
                    before: None,
                    changed_files: None,
                    how: TriggerType::Webhook,
                    event,
                    pull_request: Some((
                        pr.action,
                        PullRequest {
                            source: watch.trigger.source.to_string(),
                            number: pr.number,
                            event: pr.action.as_str().to_string(),
                            title: pr.title.clone(),
                            url: pr.url.clone(),
                            source_branch: pr.head_branch.clone(),
                            destination_branch: pr.base_branch.clone(),
                            merged: pr.merged,
                        },
                    )),
                }
            }
            WebhookEvent::Ping | WebhookEvent::Ignored { .. } => return,
        };
        tokio::spawn(super::git::consider_with_retries(
            plane.clone(),
            armed.clone(),
            index,
            sighting,
        ));
    }
}

async fn record_skip(
    plane: &ControlPlane,
    armed: &Armed,
    index: usize,
    event: &str,
    commit: Option<&str>,
    skip: gantry_triggers::Skip,
) {
    let result = Outcome::Skipped(skip).result();
    let outcome = gantry_store::TriggerOutcome {
        event,
        commit,
        result: &result,
        execution: None,
        at: now_ms(),
    };
    if let Err(error) = plane
        .store()
        .record_trigger_outcome(&armed.name, self::index(index), &outcome)
        .await
    {
        tracing::error!(%error, "Recording a trigger's state failed.");
    }
}
