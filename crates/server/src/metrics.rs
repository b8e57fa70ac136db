//! Prometheus metrics, served at `GET /metrics` in the Prometheus text
//! format 0.0.4 (which `promtool check metrics` reads without remarks).
//!
//! Counters the server keeps itself (executions, actions, queue waits,
//! deployments, registry bytes) live in [`Metrics`], one per control plane,
//! and are updated where the event happens. The load balancers' numbers
//! are not copied: each scrape reads them from the proxy
//! ([`gantry_proxy::LoadBalancer::stats`]) through the deployer, so the
//! request path pays nothing for metrics beyond the proxy's own counters.
//!
//! Every label has bounded values: names from the applied project
//! (pipelines, environments, services, rules), fixed vocabularies
//! (statuses, classes, kinds), and the load balancer's current targets
//! (whose series go when the target does). No execution id, commit,
//! token or parameter value is ever a label.

use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use gantry_engine::Execution;
use gantry_proxy::{Health, LATENCY_BUCKETS, ListenerStats, OutcomeClass};
use http_body::Frame;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

/// The content type of what [`Metrics::render`] returns.
pub(crate) const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

type Labels = Vec<(&'static str, String)>;

/// Seconds, from a quick build to a pipeline that waits hours for an
/// approval.
const RUN_BUCKETS: [f64; 14] = [
    1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0, 7200.0, 14400.0,
    86400.0,
];

/// Seconds an execution waits in front of a stage another one holds.
const WAIT_BUCKETS: [f64; 12] = [
    0.1, 0.5, 1.0, 5.0, 15.0, 30.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 14400.0,
];

type Histograms = Family<Labels, Histogram, fn() -> Histogram>;

fn run_histograms() -> Histograms {
    Family::new_with_constructor(|| Histogram::new(RUN_BUCKETS))
}

/// The server's own counters. Cheap to clone: clones share the values.
#[derive(Clone)]
pub(crate) struct Metrics {
    executions_started: Family<Labels, Counter>,
    executions_finished: Family<Labels, Counter>,
    execution_duration: Histograms,
    actions_finished: Family<Labels, Counter>,
    action_duration: Histograms,
    stage_queue_wait: Histograms,
    deployments: Family<Labels, Counter>,
    deployment_duration: Histograms,
    rollbacks: Family<Labels, Counter>,
    registry_received: Family<Labels, Counter>,
    registry_sent: Family<Labels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            executions_started: Family::default(),
            executions_finished: Family::default(),
            execution_duration: run_histograms(),
            actions_finished: Family::default(),
            action_duration: run_histograms(),
            stage_queue_wait: Family::new_with_constructor(|| Histogram::new(WAIT_BUCKETS)),
            deployments: Family::default(),
            deployment_duration: run_histograms(),
            rollbacks: Family::default(),
            registry_received: Family::default(),
            registry_sent: Family::default(),
        }
    }
}

fn seconds_between(from_ms: i64, to_ms: i64) -> f64 {
    (to_ms - from_ms).max(0) as f64 / 1000.0
}

impl Metrics {
    pub(crate) fn execution_started(&self, pipeline: &str) {
        self.executions_started
            .get_or_create(&vec![("pipeline", pipeline.to_owned())])
            .inc();
    }

    /// A finished execution, by its final status and duration.
    pub(crate) fn execution_finished(&self, execution: &Execution) {
        let labels = vec![
            ("pipeline", execution.pipeline.clone()),
            ("status", execution.status.as_str().to_owned()),
        ];
        self.executions_finished.get_or_create(&labels).inc();
        if let Some(finished) = execution.finished_at {
            self.execution_duration
                .get_or_create(&labels)
                .observe(seconds_between(execution.started_at, finished));
        }
    }

    /// An action attempt that ended (succeeded, failed or was abandoned).
    /// `action_type` is the spec's type name (`build`, `deploy`, …).
    pub(crate) fn action_finished(
        &self,
        execution: &Execution,
        stage: usize,
        action: usize,
        action_type: &str,
    ) {
        let Some(run) = execution
            .stages
            .get(stage)
            .and_then(|s| s.actions.get(action))
        else {
            return;
        };
        let Some(status) = run.status.filter(|s| !s.is_active()) else {
            return;
        };
        let labels = vec![
            ("pipeline", execution.pipeline.clone()),
            ("action_type", action_type.to_owned()),
            ("status", format!("{status:?}")),
        ];
        self.actions_finished.get_or_create(&labels).inc();
        if let (Some(started), Some(finished)) = (run.started_at, run.finished_at) {
            self.action_duration
                .get_or_create(&labels)
                .observe(seconds_between(started, finished));
        }
    }

    /// An action attempt started: if it is the first of its stage in this
    /// execution, the time since the execution could enter the stage (it
    /// started, or the previous stage ended) is the stage's queue wait.
    pub(crate) fn action_started(&self, execution: &Execution, stage: usize, action: usize) {
        if let Some(wait_ms) = stage_entry_wait(execution, stage, action) {
            self.stage_queue_wait
                .get_or_create(&vec![("pipeline", execution.pipeline.clone())])
                .observe(seconds_between(0, wait_ms));
        }
    }

    pub(crate) fn deployment_finished(&self, finished: &gantry_deploy::DeploymentFinished) {
        let status = match finished.status {
            "Succeeded" => "succeeded",
            "RolledBack" => "rolled_back",
            _ => "failed",
        };
        let kind = if finished.rollback {
            "rollback"
        } else {
            "deploy"
        };
        let labels = vec![
            ("environment", finished.environment.clone()),
            ("service", finished.service.clone()),
            ("kind", kind.to_owned()),
            ("status", status.to_owned()),
        ];
        self.deployments.get_or_create(&labels).inc();
        self.deployment_duration
            .get_or_create(&labels)
            .observe(finished.duration.as_secs_f64());
        // A progressive deployment's analysis and an operator's abort are
        // told apart from the circuit breaker.
        let trigger = match (finished.rollback, finished.status, finished.rolled_back_by) {
            (true, _, _) => "manual",
            (false, "RolledBack", Some("analysis")) => "analysis",
            (false, "RolledBack", Some("abort")) => "abort",
            (false, "RolledBack", _) => "automatic",
            _ => return,
        };
        self.rollbacks
            .get_or_create(&vec![
                ("environment", finished.environment.clone()),
                ("service", finished.service.clone()),
                ("trigger", trigger.to_owned()),
            ])
            .inc();
    }

    /// The text of a scrape: the server's counters, then each load
    /// balancer's as `lb` reports them now.
    pub(crate) fn render(&self, lb: Vec<(String, ListenerStats)>) -> String {
        let mut registry = Registry::with_prefix("gantry");
        registry.register(
            "executions_started",
            "Executions started, by pipeline",
            self.executions_started.clone(),
        );
        registry.register(
            "executions_finished",
            "Executions that ended, by pipeline and final status",
            self.executions_finished.clone(),
        );
        registry.register_with_unit(
            "execution_duration",
            "Time from an execution's start to its end",
            Unit::Seconds,
            self.execution_duration.clone(),
        );
        registry.register(
            "actions_finished",
            "Action attempts that ended, by pipeline, action type and status",
            self.actions_finished.clone(),
        );
        registry.register_with_unit(
            "action_duration",
            "Time an action attempt ran (an approval: waited for its decision)",
            Unit::Seconds,
            self.action_duration.clone(),
        );
        registry.register_with_unit(
            "stage_queue_wait",
            "Time an execution waited to enter a stage once it could (0 when the stage was free)",
            Unit::Seconds,
            self.stage_queue_wait.clone(),
        );
        registry.register(
            "deployments",
            "Deployments that ended, by environment, service, kind (deploy, rollback) and status",
            self.deployments.clone(),
        );
        registry.register_with_unit(
            "deployment_duration",
            "Time a deployment took, from its start to its recorded end",
            Unit::Seconds,
            self.deployment_duration.clone(),
        );
        registry.register(
            "rollbacks",
            "Rollbacks: manual (a rollback command's deployment) or automatic (the circuit breaker)",
            self.rollbacks.clone(),
        );
        registry.register_with_unit(
            "registry_received",
            "Bytes of request bodies the embedded registry received, by kind (blob, manifest, other)",
            Unit::Bytes,
            self.registry_received.clone(),
        );
        registry.register_with_unit(
            "registry_sent",
            "Bytes of response bodies the embedded registry sent, by kind (blob, manifest, other)",
            Unit::Bytes,
            self.registry_sent.clone(),
        );
        registry.register_collector(Box::new(LoadBalancers(lb)));
        let mut text = String::new();
        // Writing to a String cannot fail, nor can our collector.
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut text, &registry);
        text
    }
}

/// How long the execution waited to enter `stage`, in ms, if `action` is
/// the stage's first action to start there (first attempt, no other
/// action of the stage started before it).
fn stage_entry_wait(execution: &Execution, stage: usize, action: usize) -> Option<i64> {
    let run = execution.stages.get(stage)?;
    let this = run.actions.get(action)?;
    if this.attempt != 1 {
        return None;
    }
    let started = this.started_at?;
    let earlier = run.actions.iter().enumerate().any(|(i, other)| {
        i != action
            && other
                .started_at
                .is_some_and(|s| s < started || (s == started && i < action))
    });
    if earlier {
        return None;
    }
    let ready = match stage.checked_sub(1) {
        None => execution.started_at,
        Some(previous) => execution
            .stages
            .get(previous)?
            .actions
            .iter()
            .filter_map(|a| a.finished_at)
            .max()?,
    };
    Some((started - ready).max(0))
}

/// One scrape's snapshot of every environment's load balancer.
#[derive(Debug)]
struct LoadBalancers(Vec<(String, ListenerStats)>);

const HEALTH_STATES: [Health; 4] = [
    Health::Initial,
    Health::Healthy,
    Health::Unhealthy,
    Health::Draining,
];

impl Collector for LoadBalancers {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let listeners = &self.0;
        let target_labels = |env: &str, group: &str, t: &gantry_proxy::TargetStats| -> Labels {
            vec![
                ("environment", env.to_owned()),
                ("target_group", group.to_owned()),
                ("revision", t.revision.clone().unwrap_or_default()),
                ("target", t.id.clone()),
            ]
        };
        let targets = || {
            listeners.iter().flat_map(|(env, stats)| {
                stats
                    .target_groups
                    .iter()
                    .flat_map(move |(group, targets)| {
                        targets
                            .iter()
                            .map(move |t| (env.as_str(), group.as_str(), t))
                    })
            })
        };

        let mut family = encoder.encode_descriptor(
            "lb_open_connections",
            "Client connections open on the environment's load balancer.",
            None,
            MetricType::Gauge,
        )?;
        for (env, stats) in listeners {
            let labels: Labels = vec![("environment", env.clone())];
            let gauge = ConstGauge::new(i64::try_from(stats.open_connections).unwrap_or(i64::MAX));
            gauge.encode(family.encode_family(&labels)?)?;
        }

        let mut family = encoder.encode_descriptor(
            "lb_rule_requests",
            "Requests a listener rule matched.",
            None,
            MetricType::Counter,
        )?;
        for (env, stats) in listeners {
            for rule in &stats.rules {
                let labels: Labels = vec![
                    ("environment", env.clone()),
                    ("priority", rule.rule.priority.to_string()),
                    ("rule", rule.rule.label()),
                    (
                        "target_group",
                        rule.rule.target_group().unwrap_or_default().to_owned(),
                    ),
                ];
                ConstCounter::new(rule.requests).encode(family.encode_family(&labels)?)?;
            }
        }

        let mut family = encoder.encode_descriptor(
            "lb_unmatched_requests",
            "Requests no listener rule matched, answered 404 by the default action.",
            None,
            MetricType::Counter,
        )?;
        for (env, stats) in listeners {
            let labels: Labels = vec![("environment", env.clone())];
            ConstCounter::new(stats.unmatched_requests).encode(family.encode_family(&labels)?)?;
        }

        let mut family = encoder.encode_descriptor(
            "lb_target_requests",
            "Attempts to send a request to a target, by outcome class: 1xx-5xx (the target's status), connection_failure (502), timeout (504).",
            None,
            MetricType::Counter,
        )?;
        for (env, group, t) in targets() {
            for (class, n) in OutcomeClass::ALL.iter().zip(t.outcomes) {
                let mut labels = target_labels(env, group, t);
                labels.push(("class", class.as_str().to_owned()));
                ConstCounter::new(n).encode(family.encode_family(&labels)?)?;
            }
        }

        let mut family = encoder.encode_descriptor(
            "lb_target_response",
            "Time from sending a request to a target to its response head, answered attempts only.",
            Some(&Unit::Seconds),
            MetricType::Histogram,
        )?;
        for (env, group, t) in targets() {
            let buckets: Vec<(f64, u64)> = LATENCY_BUCKETS
                .iter()
                .copied()
                .chain([f64::INFINITY])
                .zip(t.latency.buckets)
                .collect();
            family
                .encode_family(&target_labels(env, group, t))?
                .encode_histogram::<NoLabelSet>(
                    t.latency.sum.as_secs_f64(),
                    t.latency.count,
                    &buckets,
                    None,
                )?;
        }

        let mut family = encoder.encode_descriptor(
            "lb_target_in_flight",
            "Requests (and upgraded connections) a target is serving now.",
            None,
            MetricType::Gauge,
        )?;
        for (env, group, t) in targets() {
            let gauge = ConstGauge::new(i64::try_from(t.in_flight).unwrap_or(i64::MAX));
            gauge.encode(family.encode_family(&target_labels(env, group, t))?)?;
        }

        let mut family = encoder.encode_descriptor(
            "lb_target_weight",
            "A target's share of its group's traffic, relative to the others.",
            None,
            MetricType::Gauge,
        )?;
        for (env, group, t) in targets() {
            let gauge = ConstGauge::new(i64::from(t.weight));
            gauge.encode(family.encode_family(&target_labels(env, group, t))?)?;
        }

        let mut family = encoder.encode_descriptor(
            "lb_target_health",
            "1 for a target's health state (initial, healthy, unhealthy, draining), 0 for the others.",
            None,
            MetricType::Gauge,
        )?;
        for (env, group, t) in targets() {
            for state in HEALTH_STATES {
                let mut labels = target_labels(env, group, t);
                labels.push(("state", state.to_string()));
                let gauge = ConstGauge::new(i64::from(t.health == state));
                gauge.encode(family.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }
}

/// What a registry request moves: a blob, a manifest or anything else
/// (the catalog, tags, tokens, upload session bookkeeping).
fn registry_kind(path: &str) -> &'static str {
    if path.contains("/blobs/") {
        "blob"
    } else if path.contains("/manifests/") {
        "manifest"
    } else {
        "other"
    }
}

/// Middleware of the registry listener: counts the bytes of request and
/// response bodies as they stream, without buffering them.
pub(crate) async fn count_registry_bytes(
    State(metrics): State<Metrics>,
    request: Request,
    next: Next,
) -> Response {
    let kind = registry_kind(request.uri().path());
    let labels: Labels = vec![("kind", kind.to_owned())];
    let received = metrics.registry_received.get_or_create_owned(&labels);
    let sent = metrics.registry_sent.get_or_create_owned(&labels);
    let request = request.map(|body| Body::new(Counted::new(body, received)));
    next.run(request)
        .await
        .map(|body| Body::new(Counted::new(body, sent)))
}

/// A body that adds the length of each data frame to a counter as it
/// passes, and reports the inner body's size hint unchanged (so a
/// response keeps its Content-Length).
struct Counted {
    inner: Body,
    counter: Counter,
}

impl Counted {
    fn new(inner: Body, counter: Counter) -> Self {
        Self { inner, counter }
    }
}

impl http_body::Body for Counted {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled
            && let Some(data) = frame.data_ref()
        {
            self.counter.inc_by(data.len() as u64);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_paths_are_classified_without_their_names() {
        assert_eq!(registry_kind("/v2/shop/web/blobs/sha256:ab"), "blob");
        assert_eq!(registry_kind("/v2/shop/web/blobs/uploads/u1"), "blob");
        assert_eq!(registry_kind("/v2/shop/web/manifests/1"), "manifest");
        assert_eq!(registry_kind("/v2/_catalog"), "other");
    }
}
