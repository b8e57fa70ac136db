//! Notifications: what happened to an execution, sent where its pipeline's
//! `notifications` ask (formats.md §7, "Notification deliveries").
//!
//! The control plane reports typed events — [`ExecutionStarted`],
//! [`ExecutionFinished`], [`ApprovalWaiting`], [`ApprovalDecided`],
//! [`DeploymentFailed`], [`DeploymentRolledBack`] — through
//! [`Notifier::emit`] at the place where they happen. Each event writes its
//! own server log line and becomes one delivery per notification whose `on`
//! names it, so the log and the notifications cannot disagree.
//!
//! Emitting never waits and never fails: a delivery goes into a bounded
//! queue (when it is full the oldest delivery is dropped, with a warning)
//! and runs in the background, a few at a time, retried with exponential
//! backoff. A receiver that is down, slow or hostile can therefore neither
//! change nor delay a pipeline's result. Deliveries live in memory: those
//! still pending when the server stops (after a short drain) are lost.
//!
//! What became of a delivery is written to the server log, and, for the
//! events of one action (approvals, deployments), to that action attempt's
//! log as well. Execution events have no action, so only the server log
//! tells about theirs.
//!
//! Secrets are read from the parameter store at each try, never kept in the
//! queue and never written anywhere: a Slack URL is a credential, so a Slack
//! target is named by its parameter, HTTP errors are shown without their
//! URL, and redirects are not followed (nor is a `Referer` sent). A webhook
//! is named by its URL without query or user info. Every request has a
//! connect and a total timeout, and at most `max_response_bytes` of an
//! answer are read. Commands run without a shell, from a cleared
//! environment plus gantry's allowlist, in their own process group that is
//! killed at their timeout, with their output read up to a cap.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use gantry_clock::now_ms;
use gantry_engine::{Execution, ExecutionStatus};
use gantry_params::{ParamStore, Selector};
use gantry_spec::notification::{Notification, NotificationEvent, NotificationTarget};
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::sync::{Notify, Semaphore, watch};

use crate::definition::Loaded;
use crate::error::ControlError;
use crate::logs::LogWriter;

/// Deliveries that run at once (each with its retries); the rest wait in
/// the queue.
const MAX_IN_FLIGHT: usize = 8;
/// Error text and comments are cut to this many bytes in a body.
const MAX_TEXT_BYTES: usize = 2048;
/// Bytes of a receiver's answer or a command's stderr shown in a failure.
const EXCERPT_BYTES: usize = 200;

/// Bounds and timing of deliveries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotifyOptions {
    /// Deliveries waiting to run; beyond it the oldest is dropped.
    /// Default 1024.
    pub queue_capacity: usize,
    /// Tries of one delivery, the first included. Default 5.
    pub max_tries: u32,
    /// The wait after the first failed try, doubled after each further
    /// one. Default 2 s.
    pub first_backoff: Duration,
    /// The longest wait between two tries. Default 60 s.
    pub max_backoff: Duration,
    /// Connecting to a receiver. Default 5 s.
    pub connect_timeout: Duration,
    /// One request, from connecting to the end of the answer. Default 15 s.
    pub request_timeout: Duration,
    /// One run of a command target; it is killed after. Default 30 s.
    pub command_timeout: Duration,
    /// Bytes of an answer read (the rest is not). Default 64 KiB.
    pub max_response_bytes: usize,
    /// Bytes of a command's stderr kept (the rest, and all of its stdout,
    /// is read and dropped). Default 16 KiB.
    pub max_output_bytes: usize,
}

impl Default for NotifyOptions {
    fn default() -> Self {
        NotifyOptions {
            queue_capacity: 1024,
            max_tries: 5,
            first_backoff: Duration::from_secs(2),
            max_backoff: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(15),
            command_timeout: Duration::from_secs(30),
            max_response_bytes: 64 << 10,
            max_output_bytes: 16 << 10,
        }
    }
}

impl NotifyOptions {
    /// The wait after the `tries`-th failed try.
    fn backoff(&self, tries: u32) -> Duration {
        let factor = 1u32
            .checked_shl(tries.saturating_sub(1))
            .unwrap_or(u32::MAX);
        self.first_backoff
            .saturating_mul(factor)
            .min(self.max_backoff)
    }
}

/// Counts of deliveries since the server started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NotifyStats {
    /// Deliveries queued.
    pub queued: u64,
    /// Deliveries a receiver took.
    pub delivered: u64,
    /// Deliveries given up (tries exhausted, or a failure no retry mends).
    pub failed: u64,
    /// Deliveries dropped from a full queue.
    pub dropped: u64,
    /// Tries that failed and were tried again.
    pub retried: u64,
    /// Deliveries queued or running now.
    pub pending: u64,
}

/// Sends the notifications of every pipeline. Owned by the control plane;
/// clones share the queue.
#[derive(Clone)]
pub struct Notifier {
    inner: Arc<Inner>,
}

struct Inner {
    params: Arc<ParamStore>,
    logs: LogWriter,
    settings: Mutex<Arc<Settings>>,
    /// The first `--public-url`, without a trailing `/`: links point there.
    public_url: OnceLock<String>,
    queue: Mutex<VecDeque<Delivery>>,
    wake: Notify,
    stats: watch::Sender<NotifyStats>,
}

/// Options with the HTTP client built from them.
struct Settings {
    options: NotifyOptions,
    http: reqwest::Client,
}

impl Settings {
    fn new(options: NotifyOptions) -> Result<Settings, ControlError> {
        let http = reqwest::Client::builder()
            .connect_timeout(options.connect_timeout)
            .timeout(options.request_timeout)
            // A redirect would carry a Slack URL's secret path to wherever it
            // points (as `Referer`); receivers answer where they are asked.
            .redirect(reqwest::redirect::Policy::none())
            .referer(false)
            .user_agent(concat!("gantry/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ControlError::Internal(format!("notification client: {e}")))?;
        Ok(Settings { options, http })
    }
}

impl Notifier {
    /// Starts the task that runs deliveries.
    pub fn start(
        params: Arc<ParamStore>,
        logs: LogWriter,
        options: NotifyOptions,
    ) -> Result<Notifier, ControlError> {
        let (stats, _) = watch::channel(NotifyStats::default());
        let inner = Arc::new(Inner {
            params,
            logs,
            settings: Mutex::new(Arc::new(Settings::new(options)?)),
            public_url: OnceLock::new(),
            queue: Mutex::new(VecDeque::new()),
            wake: Notify::new(),
            stats,
        });
        tokio::spawn(dispatch(inner.clone()));
        Ok(Notifier { inner })
    }

    /// Replaces the options; deliveries that start afterwards use them.
    pub fn configure(&self, options: NotifyOptions) -> Result<(), ControlError> {
        let settings = Arc::new(Settings::new(options)?);
        *self
            .inner
            .settings
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = settings;
        Ok(())
    }

    /// Where the server is reached (`--public-url`): notifications link to
    /// `URL/api/v1/executions/ID`. Only the first call counts.
    pub fn set_public_url(&self, url: &str) {
        let _ = self
            .inner
            .public_url
            .set(url.trim_end_matches('/').to_string());
    }

    /// The counts of deliveries, updated as they change.
    pub fn stats(&self) -> watch::Receiver<NotifyStats> {
        self.inner.stats.subscribe()
    }

    /// Waits until no delivery is pending, for at most `within`; tells
    /// whether none is. For a server that stops.
    pub async fn drain(&self, within: Duration) -> bool {
        let mut stats = self.stats();
        let drained = tokio::time::timeout(within, stats.wait_for(|s| s.pending == 0)).await;
        let pending = self.inner.stats.borrow().pending;
        if drained.is_err() && pending > 0 {
            tracing::warn!(
                pending,
                "Notification deliveries were still pending when the server stopped; they are lost."
            );
        }
        pending == 0
    }

    /// Logs an event and queues a delivery to each of the subject's
    /// notifications that asks for it. Never waits.
    pub(crate) fn emit(&self, subject: &Subject, event: &impl PipelineEvent) {
        event.log(subject);
        let Some(kind) = event.kind() else {
            return;
        };
        let mut wanted = subject
            .notifications
            .iter()
            .filter(|n| n.on.contains(&kind))
            .peekable();
        if wanted.peek().is_none() {
            return;
        }
        let time = crate::clock::rfc3339(now_ms());
        let url = self
            .inner
            .public_url
            .get()
            .map(|base| format!("{base}/api/v1/executions/{}", subject.execution_id));
        let message = event.message(subject);
        let (approval, deployment) = match event.part() {
            Part::Execution => (None, None),
            Part::Approval(approval) => (Some(approval), None),
            Part::Deployment(deployment) => (None, Some(deployment)),
        };
        for notification in wanted {
            let id = uuid::Uuid::now_v7().to_string();
            let body = match &notification.target {
                NotificationTarget::Slack { .. } => serde_json::to_vec(&SlackBody {
                    text: slack_text(&message, url.as_deref(), &subject.execution_id),
                }),
                NotificationTarget::Webhook { .. } | NotificationTarget::Command { .. } => {
                    serde_json::to_vec(&NotificationBody {
                        event: kind.as_str(),
                        delivery: id.clone(),
                        time: time.clone(),
                        pipeline: subject.pipeline.clone(),
                        execution: ExecutionPart {
                            id: subject.execution_id.clone(),
                            status: event.status().as_str(),
                            url: url.clone(),
                            trigger: subject.trigger.clone(),
                        },
                        approval: approval.clone(),
                        deployment: deployment.clone(),
                        message: message.clone(),
                    })
                }
            };
            let body = body.unwrap_or_default();
            self.enqueue(Delivery {
                id,
                event: kind,
                target: notification.target.clone(),
                body,
                pipeline: subject.pipeline.clone(),
                execution_id: subject.execution_id.clone(),
                action: event.action(),
                work_dir: subject.work_dir.clone(),
            });
        }
    }

    fn enqueue(&self, delivery: Delivery) {
        let capacity = self.inner.settings().options.queue_capacity.max(1);
        let dropped = {
            let mut queue = self
                .inner
                .queue
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let dropped = if queue.len() >= capacity {
                queue.pop_front()
            } else {
                None
            };
            queue.push_back(delivery);
            dropped
        };
        self.inner.stats.send_modify(|s| {
            s.queued += 1;
            s.pending += 1;
            if dropped.is_some() {
                s.dropped += 1;
                s.pending -= 1;
            }
        });
        if let Some(old) = dropped {
            tracing::warn!(
                capacity,
                event = old.event.as_str(),
                pipeline = %old.pipeline,
                execution = %old.execution_id,
                target = %old.target_name(),
                delivery = %old.id,
                "The notification queue is full: dropped its oldest delivery."
            );
        }
        self.inner.wake.notify_one();
    }
}

impl Inner {
    fn settings(&self) -> Arc<Settings> {
        self.settings
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The oldest queued delivery, once there is one.
    async fn next(&self) -> Delivery {
        loop {
            let popped = self
                .queue
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .pop_front();
            if let Some(delivery) = popped {
                return delivery;
            }
            // `notify_one` keeps a permit when nobody waits, so a delivery
            // queued between the pop and this wait is not missed.
            self.wake.notified().await;
        }
    }
}

/// Runs queued deliveries, at most `MAX_IN_FLIGHT` at a time.
async fn dispatch(inner: Arc<Inner>) {
    let slots = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let delivery = inner.next().await;
        let inner = inner.clone();
        tokio::spawn(async move {
            deliver(&inner, delivery).await;
            drop(slot);
        });
    }
}

/// What a pipeline's execution is, for its notifications.
#[derive(Debug, Clone)]
pub struct Subject {
    pipeline: String,
    execution_id: String,
    trigger: Option<TriggerPart>,
    notifications: Vec<Notification>,
    /// The pipeline file's directory: command targets run there when it
    /// exists on this machine (looked at when they run, not here, where
    /// the engine's lock may be held).
    work_dir: Option<PathBuf>,
}

impl Subject {
    /// An execution with its definition.
    pub(crate) fn of(loaded: &Loaded, execution: &Execution) -> Subject {
        Subject {
            pipeline: loaded.pipeline.name.to_string(),
            execution_id: execution.id.clone(),
            trigger: execution.trigger.as_ref().map(|t| TriggerPart {
                kind: t.kind.as_str(),
                detail: t.detail.clone(),
                by: t.by.clone(),
            }),
            notifications: loaded.pipeline.notifications.clone(),
            work_dir: Some(loaded.definition.base_dir().to_path_buf()),
        }
    }

    /// An execution whose definition is not at hand: logged, not notified.
    pub(crate) fn bare(pipeline: &str, execution_id: &str) -> Subject {
        Subject {
            pipeline: pipeline.to_string(),
            execution_id: execution_id.to_string(),
            trigger: None,
            notifications: Vec::new(),
            work_dir: None,
        }
    }
}

/// A notifier with the execution an action runs in, for action runners.
#[derive(Clone)]
pub struct Notices {
    notifier: Notifier,
    subject: Subject,
}

impl Notices {
    pub(crate) fn new(notifier: Notifier, subject: Subject) -> Notices {
        Notices { notifier, subject }
    }

    pub(crate) fn emit(&self, event: &impl PipelineEvent) {
        self.notifier.emit(&self.subject, event);
    }
}

// ---------------------------------------------------------------------------
// Events

/// One thing that happened to an execution, as the server log and the
/// notifications tell it.
pub(crate) trait PipelineEvent {
    /// The notification it is, if any (a stopped execution is only logged).
    fn kind(&self) -> Option<NotificationEvent>;
    /// Writes the server log's line.
    fn log(&self, subject: &Subject);
    /// The execution's status once it happened.
    fn status(&self) -> ExecutionStatus;
    /// One line for people: a body's `message`, Slack's `text`.
    fn message(&self, subject: &Subject) -> String;
    /// The approval or deployment it is about.
    fn part(&self) -> Part;
    /// The action attempt whose log tells what became of its deliveries.
    fn action(&self) -> Option<ActionPlace> {
        None
    }
}

/// What an event is about, beside its execution.
pub(crate) enum Part {
    Execution,
    Approval(ApprovalPart),
    Deployment(DeploymentPart),
}

/// An action attempt, to write in its log.
#[derive(Debug, Clone)]
pub(crate) struct ActionPlace {
    pub(crate) stage: String,
    pub(crate) action: String,
    pub(crate) attempt: u32,
}

impl ActionPlace {
    /// The attempt of an action event (approvals, deployments).
    fn of(stage: &str, action: &str, attempt: u32) -> Option<ActionPlace> {
        Some(ActionPlace {
            stage: stage.to_string(),
            action: action.to_string(),
            attempt,
        })
    }
}

/// An execution was requested (it may wait in front of its first stage).
pub(crate) struct ExecutionStarted;

impl PipelineEvent for ExecutionStarted {
    fn kind(&self) -> Option<NotificationEvent> {
        Some(NotificationEvent::ExecutionStarted)
    }
    fn log(&self, subject: &Subject) {
        tracing::info!(pipeline = %subject.pipeline, execution = %subject.execution_id, "Execution started.");
    }
    fn status(&self) -> ExecutionStatus {
        ExecutionStatus::InProgress
    }
    fn message(&self, subject: &Subject) -> String {
        let by = match &subject.trigger {
            Some(TriggerPart { by: Some(who), .. }) => format!(" by {who}"),
            Some(TriggerPart { kind, detail, .. }) if !detail.is_empty() => {
                format!(" by {kind} {detail}")
            }
            Some(TriggerPart { kind, .. }) => format!(" by {kind}"),
            None => String::new(),
        };
        format!(
            "{}: execution {} started{by}",
            subject.pipeline, subject.execution_id
        )
    }
    fn part(&self) -> Part {
        Part::Execution
    }
}

/// An execution reached a terminal status (again, after a retry).
pub(crate) struct ExecutionFinished {
    pub(crate) status: ExecutionStatus,
}

impl PipelineEvent for ExecutionFinished {
    fn kind(&self) -> Option<NotificationEvent> {
        match self.status {
            ExecutionStatus::Succeeded => Some(NotificationEvent::ExecutionSucceeded),
            ExecutionStatus::Failed => Some(NotificationEvent::ExecutionFailed),
            ExecutionStatus::Superseded => Some(NotificationEvent::ExecutionSuperseded),
            ExecutionStatus::Stopped | ExecutionStatus::InProgress | ExecutionStatus::Stopping => {
                None
            }
        }
    }
    fn log(&self, subject: &Subject) {
        tracing::info!(pipeline = %subject.pipeline, execution = %subject.execution_id, status = %self.status, "Execution finished.");
    }
    fn status(&self) -> ExecutionStatus {
        self.status
    }
    fn message(&self, subject: &Subject) -> String {
        let what = match self.status {
            ExecutionStatus::Succeeded => "succeeded",
            ExecutionStatus::Failed => "failed",
            ExecutionStatus::Superseded => "was superseded by a newer one",
            ExecutionStatus::Stopped => "was stopped",
            ExecutionStatus::InProgress | ExecutionStatus::Stopping => "is in progress",
        };
        format!(
            "{}: execution {} {what}",
            subject.pipeline, subject.execution_id
        )
    }
    fn part(&self) -> Part {
        Part::Execution
    }
}

/// An approval action started waiting for a person.
pub(crate) struct ApprovalWaiting {
    pub(crate) stage: String,
    pub(crate) action: String,
    pub(crate) attempt: u32,
}

impl PipelineEvent for ApprovalWaiting {
    fn kind(&self) -> Option<NotificationEvent> {
        Some(NotificationEvent::ApprovalWaiting)
    }
    fn log(&self, subject: &Subject) {
        tracing::info!(pipeline = %subject.pipeline, execution = %subject.execution_id, stage = %self.stage, action = %self.action, attempt = self.attempt, "Approval is waiting.");
    }
    fn status(&self) -> ExecutionStatus {
        ExecutionStatus::InProgress
    }
    fn message(&self, subject: &Subject) -> String {
        format!(
            "{}: approval {}/{} of execution {} is waiting; approve with: gantry approve {} {}/{}",
            subject.pipeline,
            self.stage,
            self.action,
            subject.execution_id,
            subject.execution_id,
            self.stage,
            self.action
        )
    }
    fn part(&self) -> Part {
        Part::Approval(ApprovalPart {
            stage: self.stage.clone(),
            action: self.action.clone(),
            attempt: self.attempt,
            decision: None,
            by: None,
            comment: None,
        })
    }
    fn action(&self) -> Option<ActionPlace> {
        ActionPlace::of(&self.stage, &self.action, self.attempt)
    }
}

/// How an approval ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ApprovalDecision {
    Approved,
    Rejected,
    TimedOut,
}

impl ApprovalDecision {
    fn as_str(self) -> &'static str {
        match self {
            ApprovalDecision::Approved => "Approved",
            ApprovalDecision::Rejected => "Rejected",
            ApprovalDecision::TimedOut => "TimedOut",
        }
    }
}

/// An approval was approved, rejected, or timed out.
pub(crate) struct ApprovalDecided {
    pub(crate) stage: String,
    pub(crate) action: String,
    pub(crate) attempt: u32,
    pub(crate) decision: ApprovalDecision,
    /// Who decided (every deciding voter, comma-separated); none for a timeout.
    pub(crate) by: Option<String>,
    pub(crate) comment: Option<String>,
    /// The execution's status after the decision.
    pub(crate) status: ExecutionStatus,
}

impl PipelineEvent for ApprovalDecided {
    fn kind(&self) -> Option<NotificationEvent> {
        Some(NotificationEvent::ApprovalDecided)
    }
    fn log(&self, subject: &Subject) {
        tracing::info!(pipeline = %subject.pipeline, execution = %subject.execution_id, stage = %self.stage, action = %self.action, attempt = self.attempt, decision = self.decision.as_str(), by = self.by.as_deref().unwrap_or(""), "Approval decided.");
    }
    fn status(&self) -> ExecutionStatus {
        self.status
    }
    fn message(&self, subject: &Subject) -> String {
        let by = self.by.as_deref().unwrap_or("nobody");
        let what = match self.decision {
            ApprovalDecision::Approved => format!("was approved by {by}"),
            ApprovalDecision::Rejected => format!("was rejected by {by}"),
            ApprovalDecision::TimedOut => "timed out".to_string(),
        };
        let said = self
            .comment
            .as_deref()
            .map(|c| format!(": {}", cut(c)))
            .unwrap_or_default();
        format!(
            "{}: approval {}/{} of execution {} {what}{said}",
            subject.pipeline, self.stage, self.action, subject.execution_id
        )
    }
    fn part(&self) -> Part {
        Part::Approval(ApprovalPart {
            stage: self.stage.clone(),
            action: self.action.clone(),
            attempt: self.attempt,
            decision: Some(self.decision.as_str()),
            by: self.by.clone(),
            comment: self.comment.as_deref().map(cut),
        })
    }
    fn action(&self) -> Option<ActionPlace> {
        ActionPlace::of(&self.stage, &self.action, self.attempt)
    }
}

/// A deploy action's deployment failed, and no rollback took place (the
/// deployer refused it, or it failed with nothing to roll back to, or with
/// rollback off).
pub(crate) struct DeploymentFailed {
    pub(crate) stage: String,
    pub(crate) action: String,
    pub(crate) attempt: u32,
    pub(crate) environment: String,
    pub(crate) service: String,
    pub(crate) image: String,
    /// The revision that failed, when the deployer made one.
    pub(crate) revision: Option<u64>,
    pub(crate) error: String,
}

impl PipelineEvent for DeploymentFailed {
    fn kind(&self) -> Option<NotificationEvent> {
        Some(NotificationEvent::DeploymentFailed)
    }
    fn log(&self, subject: &Subject) {
        tracing::warn!(pipeline = %subject.pipeline, execution = %subject.execution_id, stage = %self.stage, action = %self.action, environment = %self.environment, service = %self.service, revision = ?self.revision, error = %self.error, "Deployment failed.");
    }
    fn status(&self) -> ExecutionStatus {
        ExecutionStatus::InProgress
    }
    fn message(&self, subject: &Subject) -> String {
        let revision = self
            .revision
            .map(|r| format!(" (revision {r})"))
            .unwrap_or_default();
        format!(
            "{}: deploy action {}/{} of execution {} failed to deploy {} to {}{revision}: {}",
            subject.pipeline,
            self.stage,
            self.action,
            subject.execution_id,
            self.service,
            self.environment,
            cut(&self.error)
        )
    }
    fn part(&self) -> Part {
        Part::Deployment(DeploymentPart {
            stage: self.stage.clone(),
            action: self.action.clone(),
            attempt: self.attempt,
            environment: self.environment.clone(),
            service: self.service.clone(),
            image: self.image.clone(),
            revision: self.revision,
            rolled_back_to: None,
            error: cut(&self.error),
        })
    }
    fn action(&self) -> Option<ActionPlace> {
        ActionPlace::of(&self.stage, &self.action, self.attempt)
    }
}

/// A deploy action's deployment tripped the circuit breaker and the
/// service was rolled back to the revision it had.
pub(crate) struct DeploymentRolledBack {
    pub(crate) stage: String,
    pub(crate) action: String,
    pub(crate) attempt: u32,
    pub(crate) environment: String,
    pub(crate) service: String,
    pub(crate) image: String,
    pub(crate) revision: u64,
    pub(crate) rolled_back_to: u64,
    pub(crate) error: String,
}

impl PipelineEvent for DeploymentRolledBack {
    fn kind(&self) -> Option<NotificationEvent> {
        Some(NotificationEvent::DeploymentRolledBack)
    }
    fn log(&self, subject: &Subject) {
        tracing::warn!(pipeline = %subject.pipeline, execution = %subject.execution_id, stage = %self.stage, action = %self.action, environment = %self.environment, service = %self.service, revision = self.revision, rolled_back_to = self.rolled_back_to, "Deployment rolled back.");
    }
    fn status(&self) -> ExecutionStatus {
        ExecutionStatus::InProgress
    }
    fn message(&self, subject: &Subject) -> String {
        format!(
            "{}: deploy action {}/{} of execution {}: {} in {} was rolled back to revision {} (revision {} failed): {}",
            subject.pipeline,
            self.stage,
            self.action,
            subject.execution_id,
            self.service,
            self.environment,
            self.rolled_back_to,
            self.revision,
            cut(&self.error)
        )
    }
    fn part(&self) -> Part {
        Part::Deployment(DeploymentPart {
            stage: self.stage.clone(),
            action: self.action.clone(),
            attempt: self.attempt,
            environment: self.environment.clone(),
            service: self.service.clone(),
            image: self.image.clone(),
            revision: Some(self.revision),
            rolled_back_to: Some(self.rolled_back_to),
            error: cut(&self.error),
        })
    }
    fn action(&self) -> Option<ActionPlace> {
        ActionPlace::of(&self.stage, &self.action, self.attempt)
    }
}

// ---------------------------------------------------------------------------
// Bodies (formats.md §7, "Notification deliveries")

/// The JSON body of webhook and command targets.
#[derive(Debug, Serialize)]
struct NotificationBody {
    event: &'static str,
    delivery: String,
    time: String,
    pipeline: String,
    execution: ExecutionPart,
    #[serde(skip_serializing_if = "Option::is_none")]
    approval: Option<ApprovalPart>,
    #[serde(skip_serializing_if = "Option::is_none")]
    deployment: Option<DeploymentPart>,
    message: String,
}

#[derive(Debug, Serialize)]
struct ExecutionPart {
    id: String,
    status: &'static str,
    url: Option<String>,
    trigger: Option<TriggerPart>,
}

/// What started an execution.
#[derive(Debug, Clone, Serialize)]
struct TriggerPart {
    #[serde(rename = "type")]
    kind: &'static str,
    detail: String,
    by: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct ApprovalPart {
    stage: String,
    action: String,
    attempt: u32,
    decision: Option<&'static str>,
    by: Option<String>,
    comment: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct DeploymentPart {
    stage: String,
    action: String,
    attempt: u32,
    environment: String,
    service: String,
    image: String,
    revision: Option<u64>,
    rolled_back_to: Option<u64>,
    error: String,
}

/// A Slack incoming webhook's body.
#[derive(Serialize)]
struct SlackBody {
    text: String,
}

/// The message with Slack's three characters escaped, and a link to the
/// execution when the server has a public URL.
fn slack_text(message: &str, url: Option<&str>, execution_id: &str) -> String {
    let escaped = message
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;");
    match url {
        Some(url) => format!("{escaped} <{url}|execution {execution_id}>"),
        None => escaped,
    }
}

/// Text cut to `MAX_TEXT_BYTES`, on a character boundary.
fn cut(text: &str) -> String {
    if text.len() <= MAX_TEXT_BYTES {
        return text.to_string();
    }
    let mut end = MAX_TEXT_BYTES;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

// ---------------------------------------------------------------------------
// Deliveries

/// One notification to one target, with its body made once: every try
/// sends the same bytes under the same delivery id.
struct Delivery {
    id: String,
    event: NotificationEvent,
    target: NotificationTarget,
    body: Vec<u8>,
    pipeline: String,
    execution_id: String,
    action: Option<ActionPlace>,
    work_dir: Option<PathBuf>,
}

impl Delivery {
    /// The target as logs may show it: never a secret.
    fn target_name(&self) -> String {
        match &self.target {
            NotificationTarget::Webhook { url, .. } => format!("webhook {}", shown_url(url)),
            NotificationTarget::Slack { url_parameter } => {
                format!("slack (URL in parameter {url_parameter})")
            }
            NotificationTarget::Command { argv } => format!(
                "command {}",
                argv.first().map(String::as_str).unwrap_or_default()
            ),
        }
    }
}

/// A URL without user info, query or fragment (they may hold credentials).
fn shown_url(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(url) => {
            let port = url.port().map(|p| format!(":{p}")).unwrap_or_default();
            format!(
                "{}://{}{port}{}",
                url.scheme(),
                url.host_str().unwrap_or_default(),
                url.path()
            )
        }
        Err(_) => "(an invalid URL)".to_string(),
    }
}

/// Why a try failed, and whether trying again may help.
enum Failure {
    /// The receiver was unreachable, slow, or answered 5xx, 408 or 429; a
    /// command failed or timed out.
    Transient(String),
    /// Trying again cannot help: a 4xx answer, a missing parameter, a
    /// program that does not exist.
    Permanent(String),
}

/// A server log line about `$delivery`: its event, pipeline, execution,
/// target and id, then the fields and message given.
macro_rules! delivery_log {
    ($level:ident, $delivery:expr, $($rest:tt)+) => {
        tracing::$level!(
            event = $delivery.event.as_str(),
            pipeline = %$delivery.pipeline,
            execution = %$delivery.execution_id,
            target = %$delivery.target_name(),
            delivery = %$delivery.id,
            $($rest)+
        )
    };
}

/// Runs a delivery to its end, with retries, and tells the logs.
async fn deliver(inner: &Inner, delivery: Delivery) {
    let settings = inner.settings();
    let options = &settings.options;
    let max_tries = options.max_tries.max(1);
    let mut tries = 0;
    let outcome = loop {
        tries += 1;
        match try_once(inner, &settings, &delivery).await {
            Ok(()) => break Ok(()),
            Err(Failure::Permanent(reason)) => break Err(reason),
            Err(Failure::Transient(reason)) if tries >= max_tries => break Err(reason),
            Err(Failure::Transient(reason)) => {
                let wait = options.backoff(tries);
                delivery_log!(
                    warn,
                    delivery,
                    tries,
                    %reason,
                    retry_in = ?wait,
                    "A notification delivery failed; it will be tried again."
                );
                inner.stats.send_modify(|s| s.retried += 1);
                tokio::time::sleep(wait).await;
            }
        }
    };
    let line = match &outcome {
        Ok(()) => {
            delivery_log!(info, delivery, tries, "Notification delivered.");
            format!(
                "Notification {} to {}: delivered (delivery {}, try {tries})",
                delivery.event.as_str(),
                delivery.target_name(),
                delivery.id
            )
        }
        Err(reason) => {
            delivery_log!(
                warn,
                delivery,
                tries,
                %reason,
                "A notification delivery failed; it is given up."
            );
            format!(
                "Notification {} to {}: not delivered after {tries} {}: {reason} (delivery {})",
                delivery.event.as_str(),
                delivery.target_name(),
                if tries == 1 { "try" } else { "tries" },
                delivery.id
            )
        }
    };
    if let Some(place) = &delivery.action {
        inner
            .logs
            .action(
                &delivery.execution_id,
                &place.stage,
                &place.action,
                place.attempt,
            )
            .line(&line);
    }
    inner.stats.send_modify(|s| {
        match outcome {
            Ok(()) => s.delivered += 1,
            Err(_) => s.failed += 1,
        }
        s.pending -= 1;
    });
}

async fn try_once(inner: &Inner, settings: &Settings, delivery: &Delivery) -> Result<(), Failure> {
    let event = delivery.event.as_str();
    match &delivery.target {
        NotificationTarget::Webhook {
            url,
            secret_parameter,
        } => {
            let secret = read_parameter(&inner.params, secret_parameter).await?;
            if secret.is_empty() {
                return Err(Failure::Permanent(format!(
                    "parameter {secret_parameter} (the signing secret) is empty"
                )));
            }
            let signature =
                gantry_triggers::signature::sign_sha256(secret.as_bytes(), &delivery.body);
            let headers = [
                ("x-gantry-event", event.to_string()),
                ("x-gantry-delivery", delivery.id.clone()),
                ("x-gantry-signature-256", signature),
            ];
            post(settings, url, &headers, &delivery.body).await
        }
        NotificationTarget::Slack { url_parameter } => {
            let url = read_parameter(&inner.params, url_parameter).await?;
            let scheme_ok = reqwest::Url::parse(&url)
                .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.has_host());
            if !scheme_ok {
                // The value is a credential: say where it is, not what it is.
                return Err(Failure::Permanent(format!(
                    "parameter {url_parameter} does not hold an http:// or https:// URL"
                )));
            }
            post(settings, &url, &[], &delivery.body).await
        }
        NotificationTarget::Command { argv } => run_command(settings, argv, delivery).await,
    }
}

/// A parameter's value (decrypted); its name is shown in errors, never its value.
async fn read_parameter(params: &ParamStore, name: &str) -> Result<String, Failure> {
    let selector =
        Selector::parse(name).map_err(|e| Failure::Permanent(format!("parameter {name}: {e}")))?;
    let parameter = params
        .get(&selector, true)
        .await
        .map_err(|e| Failure::Permanent(format!("parameter {name} cannot be read: {e}")))?;
    parameter
        .value
        .expose()
        .map(str::to_string)
        .ok_or_else(|| Failure::Permanent(format!("parameter {name} cannot be decrypted")))
}

/// POSTs a JSON body; a 2xx answer delivers it.
async fn post(
    settings: &Settings,
    url: &str,
    headers: &[(&str, String)],
    body: &[u8],
) -> Result<(), Failure> {
    let mut request = settings
        .http
        .post(url)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(body.to_vec());
    for (name, value) in headers {
        request = request.header(*name, value);
    }
    let mut response = request
        .send()
        .await
        .map_err(|e| Failure::Transient(http_error(e)))?;
    let status = response.status();
    let answer = read_answer(&mut response, settings.options.max_response_bytes).await;
    if status.is_success() {
        return Ok(());
    }
    let excerpt = excerpt(&answer);
    let reason = if excerpt.is_empty() {
        format!("the receiver answered {status}")
    } else {
        format!("the receiver answered {status}: {excerpt}")
    };
    let retry = status.is_server_error()
        || status == http::StatusCode::REQUEST_TIMEOUT
        || status == http::StatusCode::TOO_MANY_REQUESTS;
    Err(if retry {
        Failure::Transient(reason)
    } else {
        Failure::Permanent(reason)
    })
}

/// At most `cap` bytes of an answer; the rest is never read.
async fn read_answer(response: &mut reqwest::Response, cap: usize) -> Vec<u8> {
    let mut answer = Vec::new();
    while answer.len() < cap {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                let room = cap - answer.len();
                answer.extend_from_slice(&chunk[..chunk.len().min(room)]);
            }
            Ok(None) | Err(_) => break,
        }
    }
    answer
}

/// An HTTP error with its causes, without the URL (a Slack URL is a
/// credential).
fn http_error(error: reqwest::Error) -> String {
    let error = error.without_url();
    let mut text = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// The start of some bytes as one printable line.
fn excerpt(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(EXCERPT_BYTES)]);
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect::<String>()
        .trim()
        .to_string()
}

/// Runs a command target: argv as it is (no shell), the body on stdin,
/// `GANTRY_*` variables beside gantry's allowlisted ones; killed with its
/// process group at the timeout. Exit status 0 delivers.
async fn run_command(
    settings: &Settings,
    argv: &[String],
    delivery: &Delivery,
) -> Result<(), Failure> {
    let options = &settings.options;
    let Some((program, args)) = argv.split_first() else {
        return Err(Failure::Permanent(
            "the command's argv is empty".to_string(),
        ));
    };
    let mut command = tokio::process::Command::new(program);
    command
        .args(args)
        .env_clear()
        .envs(gantry_build::passed_host_env())
        .env("GANTRY_EVENT", delivery.event.as_str())
        .env("GANTRY_DELIVERY", &delivery.id)
        .env("GANTRY_PIPELINE", &delivery.pipeline)
        .env("GANTRY_EXECUTION_ID", &delivery.execution_id)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    if let Some(dir) = &delivery.work_dir
        && tokio::fs::metadata(dir).await.is_ok_and(|m| m.is_dir())
    {
        command.current_dir(dir);
    }
    let mut child = command.spawn().map_err(|e| {
        let reason = format!("cannot run {program}: {e}");
        if e.kind() == std::io::ErrorKind::NotFound
            || e.kind() == std::io::ErrorKind::PermissionDenied
        {
            Failure::Permanent(reason)
        } else {
            Failure::Transient(reason)
        }
    })?;
    let pid = child.id();
    // A delivery dropped half-way (the server shutting down) takes the
    // whole group with it, not only the command (`kill_on_drop`).
    let mut group = GroupGuard(pid);
    let stdin = child.stdin.take();
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let body = &delivery.body;
    let feed = async move {
        if let Some(mut stdin) = stdin {
            // A program that does not read its stdin may close it first.
            let _ = stdin.write_all(body).await;
        }
    };
    let cap = options.max_output_bytes;
    let ran = tokio::time::timeout(options.command_timeout, async {
        let ((), _out, err, status) = tokio::join!(
            feed,
            // Nothing reads it: drained, so the command never blocks.
            read_capped(stdout, 0),
            read_capped(stderr, cap),
            child.wait()
        );
        (err, status)
    })
    .await;
    let (stderr, status) = match ran {
        Ok(ran) => {
            group.disarm();
            ran
        }
        Err(_) => {
            group.disarm();
            kill_group(pid);
            let _ = child.wait().await;
            return Err(Failure::Transient(format!(
                "{program} did not finish within {:?}; it was killed",
                options.command_timeout
            )));
        }
    };
    let status = status.map_err(|e| Failure::Transient(format!("waiting for {program}: {e}")))?;
    if status.success() {
        return Ok(());
    }
    let last = String::from_utf8_lossy(&stderr)
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .map(|l| excerpt(l.as_bytes()))
        .unwrap_or_default();
    Err(Failure::Transient(if last.is_empty() {
        format!("{program} {status}")
    } else {
        format!("{program} {status}: {last}")
    }))
}

/// Reads a pipe to its end, keeping the first `cap` bytes.
async fn read_capped(pipe: Option<impl AsyncRead + Unpin>, cap: usize) -> Vec<u8> {
    let mut kept = Vec::new();
    let Some(mut pipe) = pipe else {
        return kept;
    };
    let mut buf = [0u8; 8192];
    loop {
        match pipe.read(&mut buf).await {
            Ok(0) | Err(_) => return kept,
            Ok(n) => {
                let room = cap.saturating_sub(kept.len());
                kept.extend_from_slice(&buf[..n.min(room)]);
            }
        }
    }
}

/// Kills a command's process group when dropped before the command ended
/// (its delivery cancelled); disarmed once it has.
struct GroupGuard(Option<u32>);

impl GroupGuard {
    fn disarm(&mut self) {
        self.0 = None;
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        kill_group(self.0.take());
    }
}

/// Kills a command's process group (it leads its own, see `run_command`).
fn kill_group(pid: Option<u32>) {
    let Some(pid) = pid.and_then(|p| i32::try_from(p).ok()) else {
        return;
    };
    let _ = nix::sys::signal::killpg(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A command whose delivery is dropped before it ends (the server
    /// shutting down) leaves no process behind: its whole group is killed,
    /// the grandchild it started included.
    #[tokio::test]
    async fn a_cancelled_command_takes_its_process_group_with_it() {
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("grandchild.pid");
        let script = format!("sleep 300 & echo $! > {}; wait", pid_file.display());
        let settings = Settings::new(NotifyOptions::default()).unwrap();
        let argv = vec!["sh".to_string(), "-c".to_string(), script];
        let delivery = Delivery {
            id: "d-1".into(),
            event: NotificationEvent::ExecutionStarted,
            target: NotificationTarget::Command { argv: argv.clone() },
            body: b"{}".to_vec(),
            pipeline: "p".into(),
            execution_id: "e".into(),
            action: None,
            work_dir: None,
        };
        let run = run_command(&settings, &argv, &delivery);
        let waited = tokio::time::timeout(Duration::from_secs(2), run).await;
        assert!(waited.is_err(), "the command runs until cancelled");
        let pid: i32 = std::fs::read_to_string(&pid_file)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let gone =
            gantry_clock::blocking_poll(Duration::from_secs(5), Duration::from_millis(20), || {
                let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok();
                // Gone, or a zombie waiting for init to reap it.
                stat.is_none_or(|s| s.split_whitespace().nth(2) == Some("Z"))
                    .then_some(())
            });
        assert!(gone.is_some(), "the grandchild {pid} outlived its delivery");
    }

    #[test]
    fn backoff_doubles_up_to_its_cap() {
        let options = NotifyOptions {
            first_backoff: Duration::from_secs(2),
            max_backoff: Duration::from_secs(10),
            ..NotifyOptions::default()
        };
        let waits: Vec<u64> = (1..=5).map(|n| options.backoff(n).as_secs()).collect();
        assert_eq!(waits, [2, 4, 8, 10, 10]);
        assert_eq!(options.backoff(200), Duration::from_secs(10));
    }

    #[test]
    fn shown_urls_lose_credentials_query_and_fragment() {
        assert_eq!(
            shown_url("https://user:pw@hooks.example.com:8443/gantry/x?token=abc#f"),
            "https://hooks.example.com:8443/gantry/x"
        );
        assert_eq!(shown_url("not a url"), "(an invalid URL)");
    }

    #[test]
    fn slack_text_escapes_and_links() {
        assert_eq!(
            slack_text(
                "a <b> & c",
                Some("https://g.example/api/v1/executions/E"),
                "E"
            ),
            "a &lt;b&gt; &amp; c <https://g.example/api/v1/executions/E|execution E>"
        );
        assert_eq!(slack_text("plain", None, "E"), "plain");
    }

    #[test]
    fn long_text_is_cut_on_a_character_boundary() {
        let long = "é".repeat(MAX_TEXT_BYTES);
        let cut = cut(&long);
        assert!(cut.len() <= MAX_TEXT_BYTES + '…'.len_utf8());
        assert!(cut.ends_with('…'));
    }
}
