//! Reading the progressive-delivery keys of `deployment` (`blue_green`,
//! `canary`, `linear`, `steps`, `analysis`, `canary_header`), each checked
//! on its own; the rules between them and `strategy` are
//! `Deployment::problems`, run on the service as written and as each
//! environment overrides it.
//!
//! As in the parent module, the `Raw*` types only describe the keys for
//! the JSON Schema.

use std::net::SocketAddr;
use std::time::Duration;

use schemars::JsonSchema;

use super::super::rollout::{
    Analysis, BlueGreen, Canary, CompareToStable, Linear, Pause, Probe, ProbeTarget,
    PrometheusCheck, Step, StepAnalysis, step_problems,
};
use crate::duration::DURATION_PATTERN;
use crate::location::Location;
use crate::yaml::{Diagnostics, Node, Value};

pub(crate) const BLUE_GREEN_KEYS: &[&str] = &["test_listener", "shift_after", "termination_wait"];
pub(crate) const CANARY_KEYS: &[&str] = &["percent", "interval"];
pub(crate) const LINEAR_KEYS: &[&str] = &["percent", "every"];
pub(crate) const STEP_KEYS: &[&str] = &["weight", "pause", "analysis"];
pub(crate) const ANALYSIS_KEYS: &[&str] = &[
    "max_error_rate",
    "max_p99",
    "min_requests",
    "window",
    "compare_to_stable",
    "prometheus",
    "probe",
];
/// The keys of an analysis that set a limit: it needs one.
const METRIC_KEYS: &[&str] = &[
    "max_error_rate",
    "max_p99",
    "compare_to_stable",
    "prometheus",
    "probe",
];
pub(crate) const COMPARE_KEYS: &[&str] = &["max_error_ratio", "max_p99_ratio"];
pub(crate) const PROMETHEUS_KEYS: &[&str] = &["url", "query", "max"];
pub(crate) const PROBE_KEYS: &[&str] = &["path", "url", "expect_status"];

/// The longest a pause, a canary interval or a blue/green wait may be.
const LONGEST_WAIT: Duration = Duration::from_secs(7 * 86_400);

/// `strategy: blue_green`'s settings.
#[derive(JsonSchema)]
#[schemars(rename = "BlueGreen", deny_unknown_fields)]
#[allow(dead_code)] // Only its schema is used.
pub(crate) struct RawBlueGreen {
    /// A listener of its own on the environment's load balancer (such as
    /// 127.0.0.1:18090) that sends every request to the new revision before
    /// the switch, for tests; default: none.
    test_listener: Option<String>,
    /// When the traffic switches once the new revision is healthy: `manual`
    /// or after a duration (1s to 7d); default: at once.
    shift_after: Option<ManualOrDuration>,
    /// How long the old revision keeps running after the switch, ready to
    /// take the traffic back, 0s to 2d; default 0s.
    #[schemars(pattern(DURATION_PATTERN))]
    termination_wait: Option<String>,
}

/// `strategy: canary`'s settings: `percent` of the traffic for `interval`,
/// then the rest.
#[derive(JsonSchema)]
#[schemars(rename = "Canary", deny_unknown_fields)]
#[allow(dead_code)] // Only its schema is used.
pub(crate) struct RawCanary {
    /// 1 to 100, default 10.
    #[schemars(range(min = 1, max = 100))]
    percent: Option<u32>,
    /// 1s to 7d, default 5m.
    #[schemars(pattern(DURATION_PATTERN))]
    interval: Option<String>,
}

/// `strategy: linear`'s settings: `percent` more of the traffic `every`
/// interval until all of it.
#[derive(JsonSchema)]
#[schemars(rename = "Linear", deny_unknown_fields)]
#[allow(dead_code)] // Only its schema is used.
pub(crate) struct RawLinear {
    /// 1 to 100, default 10.
    #[schemars(range(min = 1, max = 100))]
    percent: Option<u32>,
    /// 1s to 7d, default 1m.
    #[schemars(pattern(DURATION_PATTERN))]
    every: Option<String>,
}

/// How a new revision is judged; at least one of max_error_rate, max_p99,
/// compare_to_stable, prometheus and probe.
#[derive(JsonSchema)]
#[schemars(rename = "Analysis", deny_unknown_fields)]
#[allow(dead_code)] // Only its schema is used.
pub(crate) struct RawAnalysis {
    /// The highest share of failed requests: a percentage (1%) or a fraction (0.01).
    max_error_rate: Option<ErrorRate>,
    /// The highest 99th percentile response time, 1ms to 10m.
    #[schemars(pattern(DURATION_PATTERN))]
    max_p99: Option<String>,
    /// Requests in the window before the request metrics are judged, default 50.
    #[schemars(range(max = 1_000_000))]
    min_requests: Option<u32>,
    /// The sliding window of the request metrics, 1s to 1h, default 1m.
    #[schemars(pattern(DURATION_PATTERN))]
    window: Option<String>,
    /// Limits relative to the stable revision over the same window.
    compare_to_stable: Option<RawCompareToStable>,
    /// A PromQL query whose value must stay at most `max`.
    prometheus: Option<RawPrometheus>,
    /// An HTTP probe of the new revision.
    probe: Option<RawProbe>,
}

#[derive(JsonSchema)]
#[schemars(rename = "CompareToStable", deny_unknown_fields)]
#[allow(dead_code)] // Only its schema is used.
struct RawCompareToStable {
    /// The new error rate may be at most this many times the stable one (at least 0.1%).
    #[schemars(range(min = 1.0, max = 1000.0))]
    max_error_ratio: Option<f64>,
    /// The new p99 may be at most this many times the stable one.
    #[schemars(range(min = 1.0, max = 1000.0))]
    max_p99_ratio: Option<f64>,
}

#[derive(JsonSchema)]
#[schemars(rename = "Prometheus", deny_unknown_fields)]
#[allow(dead_code)] // Only its schema is used.
struct RawPrometheus {
    /// The Prometheus server, http:// or https://.
    #[schemars(pattern(r"^https?://"))]
    url: String,
    /// A PromQL instant query.
    #[schemars(length(min = 1))]
    query: String,
    /// The highest value the query may return.
    max: f64,
}

/// A `path` requested on each new replica, or an absolute `url`.
#[derive(JsonSchema)]
#[schemars(rename = "Probe", deny_unknown_fields)]
#[allow(dead_code)] // Only its schema is used.
struct RawProbe {
    #[schemars(pattern(r"^/"))]
    path: Option<String>,
    #[schemars(pattern(r"^https?://"))]
    url: Option<String>,
    /// Default 200.
    #[schemars(range(min = 100, max = 599))]
    expect_status: Option<u16>,
}

/// `manual`, or a duration.
struct ManualOrDuration;

impl JsonSchema for ManualOrDuration {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "ManualOrDuration".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "`manual` (an operator continues) or a duration.",
            "anyOf": [
                {"const": "manual"},
                {"type": "string", "pattern": DURATION_PATTERN}
            ]
        })
    }
}

/// A percentage or a fraction.
struct ErrorRate;

impl JsonSchema for ErrorRate {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "ErrorRate".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "A percentage (1%, 0.5%) or a fraction from 0 to 1 (0.01).",
            "anyOf": [
                {"type": "number", "minimum": 0, "maximum": 1},
                {"type": "string", "pattern": r"^[0-9]+(\.[0-9]+)?%$"}
            ]
        })
    }
}

/// One step: `{weight: N}`, `{pause: DURATION | manual}` or
/// `{analysis: default | {…}}`.
pub(crate) struct RawStep;

impl JsonSchema for RawStep {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Step".into()
    }

    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let analysis = generator.subschema_for::<RawAnalysis>();
        let pause = generator.subschema_for::<ManualOrDuration>();
        let one = |key: &str, value: serde_json::Value| {
            serde_json::json!({
                "type": "object",
                "properties": {key: value},
                "required": [key],
                "additionalProperties": false
            })
        };
        schemars::json_schema!({
            "description": "`{weight: N}` (0 to 100, never lower than before, the last step 100), `{pause: DURATION | manual}` or `{analysis: default | {…}}`.",
            "oneOf": [
                one("weight", serde_json::json!({"type": "integer", "minimum": 0, "maximum": 100})),
                one("pause", serde_json::to_value(pause).unwrap_or_default()),
                one("analysis", serde_json::json!({"anyOf": [{"const": "default"}, analysis]}))
            ]
        })
    }
}

pub(crate) fn blue_green(diag: &mut Diagnostics<'_>, node: &Node) -> Option<BlueGreen> {
    let map = diag.map_or_empty(node, "`deployment.blue_green`")?;
    map.deny_unknown(diag, BLUE_GREEN_KEYS, "in `blue_green`");
    let mut out = BlueGreen::default();
    if let Some(text) = map
        .get("test_listener")
        .and_then(|n| diag.string(n, "`blue_green.test_listener`"))
    {
        match text.value.parse::<SocketAddr>() {
            Ok(address) => out.test_listener = Some(address),
            Err(_) => diag.error(
                text.location,
                format!(
                    "`blue_green.test_listener` must be an IP address and a port, such as 127.0.0.1:18090, found `{}`",
                    text.value
                ),
            ),
        }
    }
    out.shift_after = map
        .get("shift_after")
        .and_then(|n| pause(diag, n, "`blue_green.shift_after`"));
    if let Some(wait) = map.get("termination_wait").and_then(|n| {
        diag.duration(
            n,
            "`blue_green.termination_wait`",
            Duration::ZERO,
            Duration::from_secs(2 * 86_400),
        )
    }) {
        out.termination_wait = wait.value;
    }
    Some(out)
}

pub(crate) fn canary(diag: &mut Diagnostics<'_>, node: &Node) -> Option<Canary> {
    let map = diag.map_or_empty(node, "`deployment.canary`")?;
    map.deny_unknown(diag, CANARY_KEYS, "in `canary`");
    let mut out = Canary::default();
    if let Some(p) = map.get("percent").and_then(|n| percent(diag, n, "canary")) {
        out.percent = p;
    }
    if let Some(d) = map
        .get("interval")
        .and_then(|n| diag.duration(n, "`canary.interval`", Duration::from_secs(1), LONGEST_WAIT))
    {
        out.interval = d.value;
    }
    Some(out)
}

pub(crate) fn linear(diag: &mut Diagnostics<'_>, node: &Node) -> Option<Linear> {
    let map = diag.map_or_empty(node, "`deployment.linear`")?;
    map.deny_unknown(diag, LINEAR_KEYS, "in `linear`");
    let mut out = Linear::default();
    if let Some(p) = map.get("percent").and_then(|n| percent(diag, n, "linear")) {
        out.percent = p;
    }
    if let Some(d) = map
        .get("every")
        .and_then(|n| diag.duration(n, "`linear.every`", Duration::from_secs(1), LONGEST_WAIT))
    {
        out.every = d.value;
    }
    Some(out)
}

fn percent(diag: &mut Diagnostics<'_>, node: &Node, block: &str) -> Option<u32> {
    diag.whole_number(node, &format!("`{block}.percent`"), 1, 100)
        .and_then(|p| u32::try_from(p.value).ok())
}

/// `manual` or a duration from 1s to 7d.
fn pause(diag: &mut Diagnostics<'_>, node: &Node, what: &str) -> Option<Pause> {
    if matches!(&node.value, Value::Str(s) if s == "manual") {
        return Some(Pause::Manual);
    }
    if let Value::Str(text) = &node.value
        && !text.starts_with(|c: char| c.is_ascii_digit())
    {
        diag.error(
            node.location,
            format!("{what} must be `manual` or a duration such as 30s, found `{text}`"),
        );
        return None;
    }
    diag.duration(node, what, Duration::from_secs(1), LONGEST_WAIT)
        .map(|d| Pause::For(d.value))
}

/// `deployment.steps`, with the location of each step; `None` when a step
/// or the list's shape is wrong (all of it reported).
pub(crate) fn steps(diag: &mut Diagnostics<'_>, node: &Node) -> Option<(Vec<Step>, Vec<Location>)> {
    let Value::Seq(items) = &node.value else {
        diag.error(
            node.location,
            format!(
                "`deployment.steps` must be a list of steps such as [{{weight: 10}}, {{pause: 1m}}, {{weight: 100}}], found {}",
                node.kind()
            ),
        );
        return None;
    };
    let errors_before = diag.errors.len();
    let mut out = Vec::with_capacity(items.len());
    let mut locations = Vec::with_capacity(items.len());
    for item in items {
        locations.push(item.location);
        let Some(map) = diag.map(item, "each step") else {
            continue;
        };
        map.deny_unknown(diag, STEP_KEYS, "in a step");
        let known: Vec<_> = map
            .fields
            .iter()
            .filter(|f| STEP_KEYS.contains(&f.key.as_str()))
            .collect();
        let [field] = known.as_slice() else {
            diag.error(
                item.location,
                format!(
                    "a step has exactly one of `weight`, `pause` or `analysis`, found {}",
                    if known.is_empty() {
                        "none".to_owned()
                    } else {
                        known
                            .iter()
                            .map(|f| format!("`{}`", f.key))
                            .collect::<Vec<_>>()
                            .join(" and ")
                    }
                ),
            );
            continue;
        };
        let step = match field.key.as_str() {
            "weight" => diag
                .whole_number(field.value, "a step's `weight`", 0, 100)
                .and_then(|w| u32::try_from(w.value).ok())
                .map(Step::Weight),
            "pause" => pause(diag, field.value, "a step's `pause`").map(Step::Pause),
            _ => match &field.value.value {
                Value::Str(s) if s == "default" => Some(Step::Analysis(StepAnalysis::Default)),
                Value::Map(_) => analysis(diag, field.value, "analysis")
                    .map(|a| Step::Analysis(StepAnalysis::Inline(a))),
                _ => {
                    diag.error(
                        field.value.location,
                        format!(
                            "a step's `analysis` must be `default` (the service's `analysis`) or an analysis mapping, found {}",
                            field
                                .value
                                .scalar_text()
                                .map_or_else(|| field.value.kind().to_owned(), |t| format!("`{t}`"))
                        ),
                    );
                    None
                }
            },
        };
        out.extend(step);
    }
    if diag.errors.len() != errors_before {
        return None;
    }
    for (index, message) in step_problems(&out) {
        let location = index.map_or(node.location, |i| locations[i]);
        diag.error(location, message);
    }
    Some((out, locations))
}

/// An analysis mapping; `prefix` names its keys in messages
/// (`deployment.analysis`, or `analysis` in a step). `None` when any of
/// it is wrong.
pub(crate) fn analysis(diag: &mut Diagnostics<'_>, node: &Node, prefix: &str) -> Option<Analysis> {
    let map = diag.map(node, &format!("`{prefix}`"))?;
    map.deny_unknown(diag, ANALYSIS_KEYS, &format!("in `{prefix}`"));
    let errors_before = diag.errors.len();
    if !METRIC_KEYS.iter().any(|k| map.get(k).is_some()) {
        diag.error(
            node.location,
            format!(
                "`{prefix}` sets no limit to judge by: give at least one of {}",
                METRIC_KEYS.join(", ")
            ),
        );
    }
    let what = |key: &str| format!("`{prefix}.{key}`");
    let mut out = Analysis {
        max_error_rate: map
            .get("max_error_rate")
            .and_then(|n| error_rate(diag, n, &what("max_error_rate"))),
        max_p99: map
            .get("max_p99")
            .and_then(|n| {
                diag.duration(
                    n,
                    &what("max_p99"),
                    Duration::from_millis(1),
                    Duration::from_secs(600),
                )
            })
            .map(|d| d.value),
        ..Analysis::default()
    };
    if let Some(n) = map
        .get("min_requests")
        .and_then(|n| diag.whole_number(n, &what("min_requests"), 0, 1_000_000))
        .and_then(|n| u32::try_from(n.value).ok())
    {
        out.min_requests = n;
    }
    if let Some(window) = map.get("window").and_then(|n| {
        diag.duration(
            n,
            &what("window"),
            Duration::from_secs(1),
            Duration::from_secs(3600),
        )
    }) {
        out.window = window.value;
    }
    if let Some(node) = map.get("compare_to_stable") {
        out.compare_to_stable = compare_to_stable(diag, node, &what("compare_to_stable"));
    }
    if let Some(node) = map.get("prometheus") {
        out.prometheus = prometheus(diag, node, &what("prometheus"));
    }
    if let Some(node) = map.get("probe") {
        out.probe = probe(diag, node, &what("probe"));
    }
    (diag.errors.len() == errors_before).then_some(out)
}

/// `1%`, `0.5%` or a fraction from 0 to 1, as a fraction.
fn error_rate(diag: &mut Diagnostics<'_>, node: &Node, what: &str) -> Option<f64> {
    let rate = match &node.value {
        Value::Int(i @ 0..=1) => Some(*i as f64),
        Value::Float(f) if (0.0..=1.0).contains(f) => Some(*f),
        Value::Str(s) => s
            .strip_suffix('%')
            .filter(|n| {
                n.split_once('.')
                    .map_or(n.len(), |(a, b)| a.len().min(b.len()))
                    > 0
                    && n.bytes().all(|b| b.is_ascii_digit() || b == b'.')
            })
            .and_then(|n| n.parse::<f64>().ok())
            .filter(|p| (0.0..=100.0).contains(p))
            .map(|p| p / 100.0),
        _ => None,
    };
    if rate.is_none() {
        let found = node
            .scalar_text()
            .map_or_else(|| node.kind().to_owned(), |t| format!("`{t}`"));
        diag.error(
            node.location,
            format!(
                "{what} must be a percentage from 0% to 100% (such as 1%) or a fraction from 0 to 1 (such as 0.01), found {found}"
            ),
        );
    }
    rate
}

/// A number (whole or not), within `range` when there is one.
fn number(
    diag: &mut Diagnostics<'_>,
    node: &Node,
    what: &str,
    range: Option<(f64, f64)>,
) -> Option<f64> {
    let value = match node.value {
        Value::Int(i) => Some(i as f64),
        Value::Float(f) if f.is_finite() => Some(f),
        _ => None,
    };
    match (value, range) {
        (Some(v), None) => Some(v),
        (Some(v), Some((min, max))) if (min..=max).contains(&v) => Some(v),
        _ => {
            let found = node
                .scalar_text()
                .map_or_else(|| node.kind().to_owned(), |t| format!("`{t}`"));
            let range =
                range.map_or_else(String::new, |(min, max)| format!(" from {min} to {max}"));
            diag.error(
                node.location,
                format!("{what} must be a number{range}, found {found}"),
            );
            None
        }
    }
}

fn compare_to_stable(
    diag: &mut Diagnostics<'_>,
    node: &Node,
    what: &str,
) -> Option<CompareToStable> {
    let map = diag.map(node, what)?;
    map.deny_unknown(diag, COMPARE_KEYS, &format!("in {what}"));
    if !COMPARE_KEYS.iter().any(|k| map.get(k).is_some()) {
        diag.error(
            node.location,
            format!("{what} needs `max_error_ratio` or `max_p99_ratio` (or both)"),
        );
        return None;
    }
    let mut ratio = |key: &str| {
        map.get(key)
            .and_then(|n| number(diag, n, &format!("`{key}`"), Some((1.0, 1000.0))))
    };
    Some(CompareToStable {
        max_error_ratio: ratio("max_error_ratio"),
        max_p99_ratio: ratio("max_p99_ratio"),
    })
}

fn prometheus(diag: &mut Diagnostics<'_>, node: &Node, what: &str) -> Option<PrometheusCheck> {
    let map = diag.map(node, what)?;
    map.deny_unknown(diag, PROMETHEUS_KEYS, &format!("in {what}"));
    let context = format!("in {what}");
    let url = map
        .required(diag, "url", &context)
        .and_then(|n| http_url(diag, n, "`prometheus.url`"));
    let query = map
        .required(diag, "query", &context)
        .and_then(|n| diag.string(n, "`prometheus.query`"))
        .and_then(|q| {
            if q.value.trim().is_empty() {
                diag.error(
                    q.location,
                    "`prometheus.query` must be a PromQL query, found nothing",
                );
                None
            } else {
                Some(q.value)
            }
        });
    let max = map
        .required(diag, "max", &context)
        .and_then(|n| number(diag, n, "`prometheus.max`", None));
    Some(PrometheusCheck {
        url: url?,
        query: query?,
        max: max?,
    })
}

fn probe(diag: &mut Diagnostics<'_>, node: &Node, what: &str) -> Option<Probe> {
    let map = diag.map(node, what)?;
    map.deny_unknown(diag, PROBE_KEYS, &format!("in {what}"));
    let target = match (map.get("path"), map.get("url")) {
        (Some(path), None) => {
            let path = diag.string(path, "`probe.path`")?;
            if !path.value.starts_with('/') || path.value.contains(char::is_whitespace) {
                diag.error(
                    path.location,
                    format!(
                        "`probe.path` must be a URL path starting with `/`, found `{}`",
                        path.value
                    ),
                );
                return None;
            }
            ProbeTarget::Path(path.value)
        }
        (None, Some(url)) => ProbeTarget::Url(http_url(diag, url, "`probe.url`")?),
        (path, _) => {
            let message = if path.is_some() {
                format!("{what} takes `path` (on each new replica) or `url`, not both")
            } else {
                format!("{what} needs a `path` (on each new replica) or a `url`")
            };
            diag.error(node.location, message);
            return None;
        }
    };
    let mut out = Probe {
        target,
        expect_status: 200,
    };
    if let Some(status) = map
        .get("expect_status")
        .and_then(|n| diag.whole_number(n, "`probe.expect_status`", 100, 599))
        .and_then(|s| u16::try_from(s.value).ok())
    {
        out.expect_status = status;
    }
    Some(out)
}

fn http_url(diag: &mut Diagnostics<'_>, node: &Node, what: &str) -> Option<String> {
    let url = diag.string(node, what)?;
    let rest = url
        .value
        .strip_prefix("http://")
        .or_else(|| url.value.strip_prefix("https://"));
    if rest.is_none_or(|r| r.is_empty() || r.contains(char::is_whitespace)) {
        diag.error(
            url.location,
            format!(
                "{what} must be an http:// or https:// URL, found `{}`",
                url.value
            ),
        );
        return None;
    }
    Some(url.value)
}

/// An HTTP header name (RFC 9110's token), at most 128 characters.
pub(crate) fn canary_header(diag: &mut Diagnostics<'_>, node: &Node) -> Option<String> {
    let name = diag.string(node, "`deployment.canary_header`")?;
    let token = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
    if name.value.is_empty() || name.value.len() > 128 || !name.value.chars().all(token) {
        diag.error(
            name.location,
            format!(
                "`deployment.canary_header` must be an HTTP header name such as X-Gantry-Canary, found `{}`",
                name.value
            ),
        );
        return None;
    }
    Some(name.value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rate(yaml: &str) -> Option<f64> {
        let node = crate::yaml::parse("t.yaml", yaml).expect("YAML");
        let mut diag = Diagnostics::new("t.yaml");
        error_rate(&mut diag, &node, "rate")
    }

    #[test]
    fn error_rates_are_percentages_or_fractions() {
        assert_eq!(rate("1%"), Some(0.01));
        assert_eq!(rate("0.5%"), Some(0.005));
        assert_eq!(rate("100%"), Some(1.0));
        assert_eq!(rate("0.02"), Some(0.02));
        assert_eq!(rate("0"), Some(0.0));
        assert_eq!(rate("1"), Some(1.0));
        for bad in [
            "5", "1.5", "101%", "'%'", ".5%", "5.%", "-1%", "1 %", "1e1%", "x",
        ] {
            assert_eq!(rate(bad), None, "{bad:?} was accepted");
        }
    }
}
