//! Judging a new revision during a progressive deployment: its requests
//! over a sliding window as the load balancer counted them
//! (`Targets::window_stats`), optionally compared with the stable
//! revision's, a PromQL instant query, and an HTTP probe of its replicas.
//!
//! [`judge`] is pure: it turns the window's numbers into a [`Verdict`],
//! whose message carries what was measured ("error rate 19.8% over 412
//! requests > 1%"). The two checks that leave the process ([`prometheus`],
//! [`probe`]) have short timeouts and read a bounded body.

use std::collections::BTreeMap;
use std::time::Duration;

use gantry_proxy::WindowStats;

use crate::revision::StoredAnalysis;

/// The stable revision's error rate counts as at least this much when the
/// new one's is compared with it (docs/formats.md, `compare_to_stable`).
const STABLE_ERROR_RATE_FLOOR: f64 = 0.001;

/// How long an external check (Prometheus, probe) may take.
const CHECK_TIMEOUT: Duration = Duration::from_secs(3);

/// The most of an answer an external check reads.
const MAX_BODY: usize = 1 << 20;

/// What the request metrics say so far.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Verdict {
    /// A limit is broken: the message says which, with the numbers.
    Fail(String),
    /// Every request limit is kept over at least `min_requests` requests
    /// (the message sums up what was measured).
    Kept(String),
    /// Fewer than `min_requests` requests: nothing can be said.
    TooFew { requests: u64 },
}

pub(crate) fn percent(rate: f64) -> String {
    let p = rate * 100.0;
    if p != 0.0 && p < 0.1 {
        format!("{p:.2}%")
    } else {
        format!("{p:.1}%")
    }
}

pub(crate) fn limit_percent(rate: f64) -> String {
    let p = rate * 100.0;
    if (p - p.round()).abs() < 1e-9 {
        format!("{}%", p.round())
    } else {
        format!("{p}%")
    }
}

fn ms(d: Duration) -> String {
    format!("{}ms", d.as_millis())
}

/// Judges the new revision's requests (`new`, by its revision label)
/// against the analysis' request limits. An analysis with no request
/// limit keeps them trivially.
pub(crate) fn judge(
    analysis: &StoredAnalysis,
    windows: &BTreeMap<String, WindowStats>,
    new: &str,
    stable: &str,
) -> Verdict {
    let judged = analysis.max_error_rate.is_some()
        || analysis.max_p99_ms.is_some()
        || analysis.max_error_ratio.is_some()
        || analysis.max_p99_ratio.is_some();
    if !judged {
        return Verdict::Kept("no request limit".to_string());
    }
    let stats = windows.get(new).copied().unwrap_or_default();
    let n = stats.requests;
    if n < u64::from(analysis.min_requests.max(1)) {
        return Verdict::TooFew { requests: n };
    }
    let mut kept = vec![format!(
        "error rate {} over {n} requests",
        percent(stats.error_rate)
    )];
    if let Some(max) = analysis.max_error_rate
        && stats.error_rate > max
    {
        return Verdict::Fail(format!(
            "error rate {} over {n} requests > {}",
            percent(stats.error_rate),
            limit_percent(max)
        ));
    }
    if let Some(max) = analysis.max_p99_ms {
        let max = Duration::from_millis(max);
        if let Some(p99) = stats.p99_latency {
            if p99 > max {
                return Verdict::Fail(format!("p99 {} over {n} requests > {}", ms(p99), ms(max)));
            }
            kept.push(format!("p99 {}", ms(p99)));
        }
    }
    let base = windows.get(stable).copied().unwrap_or_default();
    if let Some(max) = analysis.max_error_ratio {
        let floor = base.error_rate.max(STABLE_ERROR_RATE_FLOOR);
        let ratio = stats.error_rate / floor;
        if ratio > max {
            return Verdict::Fail(format!(
                "error rate {} over {n} requests is {ratio:.1}× the stable revision's {} (> {max}×)",
                percent(stats.error_rate),
                percent(base.error_rate)
            ));
        }
    }
    if let Some(max) = analysis.max_p99_ratio
        && let (Some(p99), Some(base_p99)) = (stats.p99_latency, base.p99_latency)
        && !base_p99.is_zero()
    {
        let ratio = p99.as_secs_f64() / base_p99.as_secs_f64();
        if ratio > max {
            return Verdict::Fail(format!(
                "p99 {} over {n} requests is {ratio:.1}× the stable revision's {} (> {max}×)",
                ms(p99),
                ms(base_p99)
            ));
        }
    }
    Verdict::Kept(kept.join(", "))
}

fn client() -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .timeout(CHECK_TIMEOUT)
        .connect_timeout(CHECK_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| e.to_string())
}

/// Reads at most [`MAX_BODY`] bytes of an answer.
async fn bounded_body(mut response: reqwest::Response) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| e.to_string())? {
        if body.len() + chunk.len() > MAX_BODY {
            return Err(format!("the answer is larger than {MAX_BODY} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Runs the PromQL instant query `query` on the server at `url`; fails
/// when its value (the highest, for a vector) is above `max`. No series
/// counts as 0. `Err` is a check that could not run, which fails too: an
/// analysis that cannot see must not pass.
pub(crate) async fn prometheus(url: &str, query: &str, max: f64) -> Result<Option<String>, String> {
    let mut endpoint = reqwest::Url::parse(&format!("{}/api/v1/query", url.trim_end_matches('/')))
        .map_err(|e| format!("Prometheus URL {url}: {e}"))?;
    endpoint.query_pairs_mut().append_pair("query", query);
    let response = client()?
        .get(endpoint)
        .send()
        .await
        .map_err(|e| format!("Prometheus at {url}: {e}"))?;
    let status = response.status();
    let body = bounded_body(response).await?;
    if !status.is_success() {
        return Err(format!(
            "Prometheus at {url} answered {status}: {}",
            String::from_utf8_lossy(&body[..body.len().min(200)])
        ));
    }
    let value = prometheus_value(&body).map_err(|e| format!("Prometheus at {url}: {e}"))?;
    Ok((value > max).then(|| format!("Prometheus query {query} = {value} > {max}")))
}

/// The value of an instant query's answer: a scalar, or a vector's
/// highest sample (0 for no sample).
pub(crate) fn prometheus_value(body: &[u8]) -> Result<f64, String> {
    let answer: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| format!("an answer that is not JSON: {e}"))?;
    if answer["status"] != "success" {
        return Err(format!("the query failed: {}", answer["error"]));
    }
    let sample = |v: &serde_json::Value| -> Result<f64, String> {
        v[1].as_str()
            .and_then(|s| s.parse::<f64>().ok())
            .ok_or_else(|| format!("a sample that is not a number: {v}"))
    };
    let data = &answer["data"];
    match data["resultType"].as_str() {
        Some("scalar") => sample(&data["result"]),
        Some("vector") => {
            let mut highest: Option<f64> = None;
            for series in data["result"].as_array().into_iter().flatten() {
                let v = sample(&series["value"])?;
                highest = Some(highest.map_or(v, |h: f64| h.max(v)));
            }
            Ok(highest.unwrap_or(0.0))
        }
        other => Err(format!(
            "an answer of type {other:?}, not a scalar or vector"
        )),
    }
}

/// Requests `url`; fails when the status is not `expect`.
pub(crate) async fn probe(url: &str, expect: u16) -> Result<Option<String>, String> {
    let response = client()?
        .get(url)
        .send()
        .await
        .map_err(|e| format!("probe {url}: {e}"))?;
    let status = response.status().as_u16();
    Ok((status != expect).then(|| format!("probe {url} answered {status}, not {expect}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn analysis() -> StoredAnalysis {
        StoredAnalysis {
            max_error_rate: Some(0.01),
            max_p99_ms: Some(500),
            min_requests: 50,
            window_ms: 20_000,
            max_error_ratio: None,
            max_p99_ratio: None,
            prometheus: None,
            probe_path: None,
            probe_url: None,
            probe_status: 200,
        }
    }

    fn stats(requests: u64, errors: u64, p99_ms: u64) -> WindowStats {
        WindowStats {
            requests,
            server_errors: errors,
            error_rate: errors as f64 / requests.max(1) as f64,
            p99_latency: Some(Duration::from_millis(p99_ms)),
            ..WindowStats::default()
        }
    }

    fn windows(new: WindowStats, stable: WindowStats) -> BTreeMap<String, WindowStats> {
        BTreeMap::from([("2".to_string(), new), ("1".to_string(), stable)])
    }

    #[test]
    fn limits_are_judged_with_the_numbers_in_the_message() {
        let a = analysis();
        let w = windows(stats(412, 82, 20), stats(1000, 0, 20));
        assert_eq!(
            judge(&a, &w, "2", "1"),
            Verdict::Fail("error rate 19.9% over 412 requests > 1%".into())
        );
        let w = windows(stats(100, 0, 830), stats(1000, 0, 20));
        assert_eq!(
            judge(&a, &w, "2", "1"),
            Verdict::Fail("p99 830ms over 100 requests > 500ms".into())
        );
        let w = windows(stats(100, 0, 30), stats(1000, 0, 20));
        assert_eq!(
            judge(&a, &w, "2", "1"),
            Verdict::Kept("error rate 0.0% over 100 requests, p99 30ms".into())
        );
        let w = windows(stats(49, 49, 30), stats(1000, 0, 20));
        assert_eq!(
            judge(&a, &w, "2", "1"),
            Verdict::TooFew { requests: 49 },
            "too few requests to judge, however bad"
        );
        assert_eq!(
            judge(&a, &BTreeMap::new(), "2", "1"),
            Verdict::TooFew { requests: 0 }
        );
    }

    #[test]
    fn compared_to_stable_the_stable_error_rate_counts_as_at_least_a_tenth_of_a_percent() {
        let a = StoredAnalysis {
            max_error_rate: None,
            max_p99_ms: None,
            max_error_ratio: Some(2.0),
            max_p99_ratio: Some(1.5),
            ..analysis()
        };
        // 0.2% beside a flawless stable revision: 2× the floor, kept.
        let w = windows(stats(1000, 2, 20), stats(1000, 0, 20));
        assert!(matches!(judge(&a, &w, "2", "1"), Verdict::Kept(_)));
        let w = windows(stats(1000, 5, 20), stats(1000, 1, 20));
        assert_eq!(
            judge(&a, &w, "2", "1"),
            Verdict::Fail(
                "error rate 0.5% over 1000 requests is 5.0× the stable revision's 0.1% (> 2×)"
                    .into()
            )
        );
        let w = windows(stats(1000, 0, 40), stats(1000, 0, 20));
        assert_eq!(
            judge(&a, &w, "2", "1"),
            Verdict::Fail(
                "p99 40ms over 1000 requests is 2.0× the stable revision's 20ms (> 1.5×)".into()
            )
        );
    }

    #[test]
    fn prometheus_answers_are_read_as_a_scalar_or_the_highest_sample() {
        let vector = br#"{"status":"success","data":{"resultType":"vector","result":[
            {"metric":{"a":"1"},"value":[1700000000,"0.25"]},
            {"metric":{"a":"2"},"value":[1700000000,"0.75"]}]}}"#;
        assert_eq!(prometheus_value(vector), Ok(0.75));
        let empty = br#"{"status":"success","data":{"resultType":"vector","result":[]}}"#;
        assert_eq!(prometheus_value(empty), Ok(0.0));
        let scalar = br#"{"status":"success","data":{"resultType":"scalar","result":[1,"3"]}}"#;
        assert_eq!(prometheus_value(scalar), Ok(3.0));
        let failed = br#"{"status":"error","error":"parse error"}"#;
        assert!(
            prometheus_value(failed)
                .unwrap_err()
                .contains("parse error")
        );
        assert!(prometheus_value(b"<html>").is_err());
    }
}
