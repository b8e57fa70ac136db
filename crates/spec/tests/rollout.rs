//! Progressive delivery (issue 13, formats.md §4 "Deployment strategies"):
//! the strategy blocks, steps and analyses a service's `deployment` takes,
//! each rule with the exact errors `gantry validate` prints, and the step
//! list every strategy expands to.

mod common;

use std::time::Duration;

use common::{dedent, lines};
use gantry_spec::environment::EnvironmentName;
use gantry_spec::service::{
    Analysis, BlueGreen, CompareToStable, DeploymentStrategy, Pause, Probe, ProbeTarget,
    PrometheusCheck, RolloutStep, Service, ServiceName,
};
use gantry_spec::{Document, Project, assemble, parse_document};

/// Parses `yaml` (dedented) as `gantry.yaml` and compares the errors, in
/// order, with `expected` (empty = valid).
fn check(yaml: &str, expected: &[&str]) {
    let text = dedent(yaml);
    let actual = match parse_document("gantry.yaml", &text) {
        Ok(_) => Vec::new(),
        Err(errors) => lines(&errors),
    };
    assert_eq!(actual, expected, "\n--- file ---\n{text}");
}

fn document(yaml: &str) -> Document {
    match parse_document("gantry.yaml", &dedent(yaml)) {
        Ok(document) => document,
        Err(errors) => panic!("not valid:\n{}", lines(&errors).join("\n")),
    }
}

fn assembled(yaml: &str) -> Result<Project, Vec<String>> {
    assemble(vec![("gantry.yaml".to_owned(), document(yaml))]).map_err(|e| lines(&e))
}

/// The one service `yaml` defines.
fn service(yaml: &str) -> Service {
    let document = document(yaml);
    let mut services = document.services.into_values();
    services.next().expect("a service")
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

#[test]
fn the_issue_example_parses_and_expands_into_steps() {
    let s = service(
        "
        version: 1
        services:
          catalog:
            deployment:
              strategy: steps
              steps: [{weight: 5}, {pause: 10s}, {analysis: default}, {weight: 50}, {pause: manual}, {weight: 100}]
              analysis: {max_error_rate: 1%, max_p99: 500ms, min_requests: 50, window: 20s}
              canary_header: X-Shop-Canary
        ",
    );
    let analysis = Analysis {
        max_error_rate: Some(0.01),
        max_p99: Some(Duration::from_millis(500)),
        min_requests: 50,
        window: secs(20),
        ..Analysis::default()
    };
    assert_eq!(s.deployment.strategy, DeploymentStrategy::Steps);
    assert_eq!(s.deployment.canary_header(), "X-Shop-Canary");
    assert_eq!(
        s.deployment.rollout_steps(),
        [
            RolloutStep::Weight(5),
            RolloutStep::Pause(Pause::For(secs(10))),
            RolloutStep::Analysis(analysis),
            RolloutStep::Weight(50),
            RolloutStep::Pause(Pause::Manual),
            RolloutStep::Weight(100),
        ]
    );
}

#[test]
fn canary_and_linear_are_shorthands_for_steps() {
    let canary = service(
        "
        version: 1
        services:
          catalog: {deployment: {strategy: canary, canary: {percent: 10, interval: 30s}}}
        ",
    );
    assert_eq!(
        canary.deployment.rollout_steps(),
        [
            RolloutStep::Weight(10),
            RolloutStep::Pause(Pause::For(secs(30))),
            RolloutStep::Weight(100)
        ]
    );
    let linear = service(
        "
        version: 1
        services:
          catalog:
            deployment:
              strategy: linear
              linear: {percent: 25, every: 10s}
              analysis: {max_error_rate: 0.02}
        ",
    );
    let wait = RolloutStep::Pause(Pause::For(secs(10)));
    let judge = RolloutStep::Analysis(Analysis {
        max_error_rate: Some(0.02),
        ..Analysis::default()
    });
    assert_eq!(
        linear.deployment.rollout_steps(),
        [
            RolloutStep::Weight(25),
            wait.clone(),
            judge.clone(),
            RolloutStep::Weight(50),
            wait.clone(),
            judge.clone(),
            RolloutStep::Weight(75),
            wait,
            judge,
            RolloutStep::Weight(100)
        ]
    );
    // Without their block, the strategies take CodeDeploy's defaults.
    let bare = service(
        "
        version: 1
        services:
          catalog: {deployment: {strategy: canary}}
        ",
    );
    assert_eq!(
        bare.deployment.rollout_steps(),
        [
            RolloutStep::Weight(10),
            RolloutStep::Pause(Pause::For(secs(300))),
            RolloutStep::Weight(100)
        ]
    );
}

#[test]
fn blue_green_without_its_block_switches_at_once_as_before() {
    let s = service(
        "
        version: 1
        services:
          catalog: {deployment: {strategy: blue_green}}
        ",
    );
    assert_eq!(s.deployment.blue_green, None);
    assert_eq!(s.deployment.blue_green_settings(), BlueGreen::default());
    assert_eq!(s.deployment.rollout_steps(), [RolloutStep::Weight(100)]);

    let s = service(
        "
        version: 1
        services:
          catalog:
            deployment:
              strategy: blue_green
              blue_green: {test_listener: 127.0.0.1:18090, shift_after: manual, termination_wait: 5m}
        ",
    );
    assert_eq!(
        s.deployment.blue_green_settings(),
        BlueGreen {
            test_listener: Some("127.0.0.1:18090".parse().unwrap()),
            shift_after: Some(Pause::Manual),
            termination_wait: secs(300),
        }
    );
    assert_eq!(
        s.deployment.rollout_steps(),
        [RolloutStep::Pause(Pause::Manual), RolloutStep::Weight(100)]
    );
}

#[test]
fn analyses_take_comparisons_prometheus_and_probes() {
    let s = service(
        "
        version: 1
        services:
          catalog:
            deployment:
              strategy: canary
              analysis:
                compare_to_stable: {max_error_ratio: 2, max_p99_ratio: 1.5}
                prometheus: {url: 'http://127.0.0.1:9090', query: 'sum(rate(errors[1m]))', max: 0.5}
                probe: {path: /ready}
        ",
    );
    let analysis = s.deployment.analysis.expect("an analysis");
    assert_eq!(
        analysis.compare_to_stable,
        Some(CompareToStable {
            max_error_ratio: Some(2.0),
            max_p99_ratio: Some(1.5)
        })
    );
    assert_eq!(
        analysis.prometheus,
        Some(PrometheusCheck {
            url: "http://127.0.0.1:9090".to_owned(),
            query: "sum(rate(errors[1m]))".to_owned(),
            max: 0.5
        })
    );
    assert_eq!(
        analysis.probe,
        Some(Probe {
            target: ProbeTarget::Path("/ready".to_owned()),
            expect_status: 200
        })
    );
    assert_eq!((analysis.min_requests, analysis.window), (50, secs(60)));
}

#[test]
fn steps_rise_to_a_final_hundred() {
    check(
        "
        version: 1
        services:
          a: {deployment: {strategy: steps, steps: [{weight: 10}, {pause: 1m}]}}
          b: {deployment: {strategy: steps, steps: [{weight: 50}, {weight: 20}, {weight: 100}]}}
          c: {deployment: {strategy: steps, steps: [{weight: 100}, {pause: 1m}, {weight: 100}]}}
          d: {deployment: {strategy: steps, steps: [{weight: 101}, {pause: soon}, {pause: 0s}, {weight: 100}]}}
          e: {deployment: {strategy: steps, steps: []}}
          f: {deployment: {strategy: steps}}
        ",
        &[
            "gantry.yaml:3:44: `steps` must end with `{weight: 100}`: a rollout ends with all the traffic on the new revision",
            "gantry.yaml:4:59: step 2 lowers the weight to 20 after step 1 set 50: weights may not decrease (a failed rollout goes back by rolling back)",
            "gantry.yaml:5:45: step 1 sends all the traffic to the new revision, which ends the rollout: it must be the last step (put pauses and analyses before it)",
            "gantry.yaml:6:54: a step's `weight` must be from 0 to 100, found 101",
            "gantry.yaml:6:68: a step's `pause` must be `manual` or a duration such as 30s, found `soon`",
            "gantry.yaml:6:83: invalid duration `0s`: it must be longer than zero",
            "gantry.yaml:7:44: `steps` must end with `{weight: 100}`: a rollout ends with all the traffic on the new revision",
            "gantry.yaml:8:20: `strategy: steps` needs a `steps` list, such as [{weight: 10}, {pause: 1m}, {weight: 100}]",
        ],
    );
}

#[test]
fn each_step_is_one_weight_pause_or_analysis() {
    check(
        "
        version: 1
        services:
          a:
            deployment:
              strategy: steps
              steps:
                - {weight: 10, pause: 1m}
                - {}
                - {wait: 1m}
                - weight
                - {analysis: sometimes}
                - {weight: 100}
        ",
        &[
            "gantry.yaml:7:11: a step has exactly one of `weight`, `pause` or `analysis`, found `weight` and `pause`",
            "gantry.yaml:8:11: a step has exactly one of `weight`, `pause` or `analysis`, found none",
            "gantry.yaml:9:11: a step has exactly one of `weight`, `pause` or `analysis`, found none",
            "gantry.yaml:9:12: unknown key `wait` in a step; expected one of: weight, pause, analysis",
            "gantry.yaml:10:11: each step must be a mapping, found a string",
            "gantry.yaml:11:22: a step's `analysis` must be `default` (the service's `analysis`) or an analysis mapping, found `sometimes`",
        ],
    );
}

#[test]
fn a_default_analysis_step_needs_the_services_analysis() {
    check(
        "
        version: 1
        services:
          a: {deployment: {strategy: steps, steps: [{weight: 10}, {analysis: default}, {weight: 100}]}}
          b: {deployment: {strategy: steps, steps: [{weight: 10}, {analysis: {max_p99: 1s}}, {weight: 100}]}}
        ",
        &[
            "gantry.yaml:3:59: step 2 runs the service's analysis (`{analysis: default}`), but `deployment.analysis` is not set; add one, or write the analysis in the step",
        ],
    );
}

#[test]
fn an_analysis_sets_at_least_one_limit() {
    check(
        "
        version: 1
        services:
          a: {deployment: {strategy: canary, analysis: {min_requests: 10, window: 30s}}}
          b: {deployment: {strategy: steps, steps: [{analysis: {window: 1m}}, {weight: 100}]}}
        ",
        &[
            "gantry.yaml:3:48: `deployment.analysis` sets no limit to judge by: give at least one of max_error_rate, max_p99, compare_to_stable, prometheus, probe",
            "gantry.yaml:4:56: `analysis` sets no limit to judge by: give at least one of max_error_rate, max_p99, compare_to_stable, prometheus, probe",
        ],
    );
}

#[test]
fn analysis_limits_are_checked_each_on_its_own() {
    check(
        "
        version: 1
        services:
          a:
            deployment:
              strategy: canary
              analysis:
                max_error_rate: 5
                max_p99: 20m
                min_requests: -1
                window: 2h
                compare_to_stable: {max_error_ratio: 0.5}
                prometheus: {url: 'localhost:9090', max: high}
                probe: {path: /ready, url: 'http://x/ready', expect_status: 42}
        ",
        &[
            "gantry.yaml:7:25: `deployment.analysis.max_error_rate` must be a percentage from 0% to 100% (such as 1%) or a fraction from 0 to 1 (such as 0.01), found `5`",
            "gantry.yaml:8:18: `deployment.analysis.max_p99` must be from 1ms to 10m, found 20m",
            "gantry.yaml:9:23: `deployment.analysis.min_requests` must be from 0 to 1000000, found -1",
            "gantry.yaml:10:17: `deployment.analysis.window` must be from 1s to 1h, found 2h",
            "gantry.yaml:11:46: `max_error_ratio` must be a number from 1 to 1000, found `0.5`",
            "gantry.yaml:12:21: missing required key `query` in `deployment.analysis.prometheus`",
            "gantry.yaml:12:27: `prometheus.url` must be an http:// or https:// URL, found `localhost:9090`",
            "gantry.yaml:12:50: `prometheus.max` must be a number, found `high`",
            "gantry.yaml:13:16: `deployment.analysis.probe` takes `path` (on each new replica) or `url`, not both",
        ],
    );
}

#[test]
fn a_strategy_block_goes_with_its_strategy() {
    check(
        "
        version: 1
        services:
          a: {deployment: {strategy: linear, canary: {percent: 10, interval: 30s}}}
          b: {deployment: {blue_green: {shift_after: 5m}}}
          c: {deployment: {strategy: canary, steps: [{weight: 100}]}}
          d: {deployment: {analysis: {max_p99: 1s}, canary_header: X-Try}}
          e: {deployment: {strategy: blue_green, analysis: {max_p99: 1s}, canary_header: X-Try}}
        ",
        &[
            "gantry.yaml:3:38: `canary` configures a canary deployment, but the strategy is `linear`: remove it or set `strategy: canary`",
            "gantry.yaml:4:20: `blue_green` configures a blue_green deployment, but the strategy is `rolling`: remove it or set `strategy: blue_green`",
            "gantry.yaml:5:38: `steps` configures a steps deployment, but the strategy is `canary`: remove it or set `strategy: steps`",
            "gantry.yaml:6:20: `analysis` judges a new revision while it takes a share of the traffic, which only canary, linear and steps deployments give it; the strategy is `rolling`",
            "gantry.yaml:6:45: `canary_header` routes requests to a new revision running beside the old one, which a rolling deployment does not start; use it with blue_green, canary, linear or steps",
            "gantry.yaml:7:42: `analysis` judges a new revision while it takes a share of the traffic, which only canary, linear and steps deployments give it; the strategy is `blue_green`",
        ],
    );
}

#[test]
fn strategy_settings_are_checked_each_on_its_own() {
    check(
        "
        version: 1
        services:
          a: {deployment: {strategy: canary, canary: {percent: 0, interval: 0s}}}
          b: {deployment: {strategy: linear, linear: {percent: 101, every: 8d, by: 1}}}
          c: {deployment: {strategy: blue_green, blue_green: {test_listener: localhost, shift_after: later, termination_wait: 3d}}}
          d: {deployment: {strategy: canary, canary_header: 'X Canary'}}
        ",
        &[
            "gantry.yaml:3:56: `canary.percent` must be from 1 to 100, found 0",
            "gantry.yaml:3:69: invalid duration `0s`: it must be longer than zero",
            "gantry.yaml:4:56: `linear.percent` must be from 1 to 100, found 101",
            "gantry.yaml:4:68: `linear.every` must be from 1s to 7d, found 8d",
            "gantry.yaml:4:72: unknown key `by` in `linear`; expected one of: percent, every",
            "gantry.yaml:5:70: `blue_green.test_listener` must be an IP address and a port, such as 127.0.0.1:18090, found `localhost`",
            "gantry.yaml:5:94: `blue_green.shift_after` must be `manual` or a duration such as 30s, found `later`",
            "gantry.yaml:5:119: `blue_green.termination_wait` must be from 0s to 2d, found 3d",
            "gantry.yaml:6:53: `deployment.canary_header` must be an HTTP header name such as X-Gantry-Canary, found `X Canary`",
        ],
    );
}

#[test]
fn a_health_check_may_run_every_second_with_a_sub_second_timeout() {
    let s = service(
        "
        version: 1
        services:
          catalog: {health_check: {interval: 1s, timeout: 500ms}}
        ",
    );
    assert_eq!(s.health_check.interval, secs(1));
    assert_eq!(s.health_check.timeout, Duration::from_millis(500));
    check(
        "
        version: 1
        services:
          a: {health_check: {interval: 1s, timeout: 1s}}
          b: {health_check: {interval: 900ms, timeout: 50ms}}
        ",
        &[
            "gantry.yaml:3:21: the health check's timeout (1s) must be shorter than its interval (1s)",
            "gantry.yaml:4:32: `health_check.interval` must be from 1s to 5m, found 900ms",
            "gantry.yaml:4:48: `health_check.timeout` must be from 100ms to 2m, found 50ms",
        ],
    );
}

#[test]
fn an_environment_switches_a_service_to_canary_with_one_line() {
    let project = assembled(
        "
        version: 1
        environments:
          staging: {}
          production:
            services:
              catalog: {deployment: {strategy: canary, canary: {percent: 10, interval: 30s}}}
        services:
          catalog:
            deployment: {strategy: blue_green, blue_green: {shift_after: 1m}}
        ",
    )
    .expect("valid");
    let name = ServiceName::new("catalog").unwrap();
    let in_env = |env: &str| {
        project
            .service_in(&EnvironmentName::new(env).unwrap(), &name)
            .expect("the service")
    };
    let production = in_env("production");
    assert_eq!(production.deployment.strategy, DeploymentStrategy::Canary);
    // The override's strategy drops the service's blue_green block.
    assert_eq!(production.deployment.blue_green, None);
    assert_eq!(
        production.deployment.rollout_steps(),
        [
            RolloutStep::Weight(10),
            RolloutStep::Pause(Pause::For(secs(30))),
            RolloutStep::Weight(100)
        ]
    );
    assert_eq!(
        in_env("staging").deployment.rollout_steps(),
        [
            RolloutStep::Pause(Pause::For(secs(60))),
            RolloutStep::Weight(100)
        ]
    );
}

#[test]
fn overrides_are_checked_against_the_strategy_they_end_with() {
    assert_eq!(
        assembled(
            "
            version: 1
            environments:
              production:
                services:
                  catalog: {deployment: {linear: {percent: 20}}}
                  basket: {deployment: {strategy: steps, steps: [{analysis: default}, {weight: 100}]}}
            services:
              catalog: {deployment: {strategy: canary}}
              basket: {}
            ",
        )
        .err(),
        Some(vec![
            "gantry.yaml:5:7: in environment `production`, service `catalog`: `linear` configures a linear deployment, but the strategy is `canary`: remove it or set `strategy: linear`".to_owned(),
            "gantry.yaml:6:7: in environment `production`, service `basket`: step 1 runs the service's analysis (`{analysis: default}`), but `deployment.analysis` is not set; add one, or write the analysis in the step".to_owned(),
        ])
    );
}
