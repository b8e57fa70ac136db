//! Environments, services and includes (formats.md §4): one test per rule,
//! each a small file (or a few) and the exact errors `gantry validate` would
//! print; then what a valid project holds.

mod common;

use std::time::Duration;

use common::{dedent, lines};
use gantry_spec::environment::{EnvironmentName, KubeServiceType, PathPattern, RuntimeKind};
use gantry_spec::pipeline::parse_pipeline;
use gantry_spec::service::{DeploymentStrategy, HealthCheckKind, ServiceName, ServiceProtocol};
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

fn document(file: &str, yaml: &str) -> Document {
    match parse_document(file, &dedent(yaml)) {
        Ok(document) => document,
        Err(errors) => panic!("{file} is not valid:\n{}", lines(&errors).join("\n")),
    }
}

/// Parses each `(file, yaml)` and assembles them; compares the errors.
fn check_project(files: &[(&str, &str)], expected: &[&str]) {
    let documents = files
        .iter()
        .map(|(file, yaml)| ((*file).to_owned(), document(file, yaml)))
        .collect();
    let actual = match assemble(documents) {
        Ok(_) => Vec::new(),
        Err(errors) => lines(&errors),
    };
    assert_eq!(actual, expected);
}

fn project(files: &[(&str, &str)]) -> Project {
    let documents = files
        .iter()
        .map(|(file, yaml)| ((*file).to_owned(), document(file, yaml)))
        .collect();
    match assemble(documents) {
        Ok(project) => project,
        Err(errors) => panic!("not a valid project:\n{}", lines(&errors).join("\n")),
    }
}

fn env(name: &str) -> EnvironmentName {
    EnvironmentName::new(name).expect("valid environment name")
}

fn svc(name: &str) -> ServiceName {
    ServiceName::new(name).expect("valid service name")
}

/// formats.md §4, with the `bff` service its rules name defined in a second file.
const FORMATS_EXAMPLE: &str = include_str!("fixtures/document/formats-example.yaml");
const BFF: &str = "
    version: 1
    services:
      bff: {}
";

#[test]
fn the_formats_md_example_parses_and_assembles() {
    let doc = document("gantry.yaml", FORMATS_EXAMPLE);
    assert!(doc.pipeline.is_none());
    let staging = &doc.environments[&env("staging")];
    assert_eq!(staging.runtime, RuntimeKind::Process);
    let lb = staging.load_balancer.as_ref().expect("a load balancer");
    assert_eq!(lb.listen.to_string(), "127.0.0.1:18080");
    let route = |path| {
        lb.route(path)
            .and_then(|rule| rule.service())
            .map(|s| s.as_str())
    };
    assert_eq!(route("/api/catalog/42"), Some("catalog"));
    assert_eq!(route("/index.html"), Some("bff"));
    let catalog = &doc.services[&svc("catalog")];
    assert_eq!(
        catalog.command.as_deref(),
        Some(&["/app/catalog".to_owned()][..])
    );
    assert_eq!(catalog.resources.memory, Some(256 * 1024 * 1024));
    assert_eq!(catalog.resources.cpus, Some(0.5));
    assert_eq!(catalog.health_check.interval, Duration::from_secs(2));
    assert_eq!(catalog.deployment.drain, Duration::from_secs(2));

    // Its rules name `bff`, which the example leaves to another file.
    check_project(
        &[("gantry.yaml", FORMATS_EXAMPLE)],
        &[
            "gantry.yaml:10:11: the rule with priority 100 sends requests to service `bff`, which no file defines (defined: catalog)",
        ],
    );
    project(&[("gantry.yaml", FORMATS_EXAMPLE), ("bff.yaml", BFF)]);
}

#[test]
fn a_file_may_hold_only_environments_and_services() {
    let doc = document(
        "services.yaml",
        "
        version: 1
        environments:
          staging:
        services:
          catalog:
        ",
    );
    assert_eq!(doc.pipeline, None);
    assert_eq!(doc.environments.len(), 1);
    let catalog = &doc.services[&svc("catalog")];
    // Every default.
    assert_eq!(catalog.container, "catalog");
    assert_eq!(catalog.port, 8080);
    assert_eq!(catalog.replicas, 1);
    assert_eq!(
        catalog.health_check.kind,
        HealthCheckKind::Http { path: "/".into() }
    );
    assert_eq!(catalog.health_check.interval, Duration::from_secs(5));
    assert_eq!(catalog.health_check.timeout, Duration::from_secs(2));
    assert_eq!(catalog.health_check.grace_period, Duration::from_secs(10));
    assert_eq!(catalog.deployment.strategy, DeploymentStrategy::Rolling);
    assert_eq!(
        (
            catalog.deployment.min_healthy_percent,
            catalog.deployment.max_percent
        ),
        (100, 200)
    );
    assert_eq!(catalog.deployment.circuit_breaker.threshold, 3);
    assert!(catalog.deployment.circuit_breaker.rollback);
    assert_eq!(catalog.deployment.drain, Duration::from_secs(5));

    // parse_pipeline wants a pipeline.
    let errors = parse_pipeline("services.yaml", "version: 1\nservices: {catalog: {}}\n")
        .expect_err("no pipeline");
    assert_eq!(
        lines(&errors),
        [
            "services.yaml:1:1: missing required key `name` (the pipeline's name)",
            "services.yaml:1:1: missing required key `stages` (the list of stages)",
        ]
    );
}

#[test]
fn any_pipeline_key_makes_the_file_a_pipeline() {
    check(
        "
        version: 1
        execution_mode: queued
        services: {catalog: {}}
        ",
        &[
            "gantry.yaml:1:1: missing required key `name` (the pipeline's name)",
            "gantry.yaml:1:1: missing required key `stages` (the list of stages)",
        ],
    );
    check(
        "
        services: {catalog: {}}
        ",
        &["gantry.yaml:1:1: missing required key `version` (write `version: 1`)"],
    );
}

#[test]
fn environment_and_service_names_are_labels() {
    check(
        "
        version: 1
        environments: {Prod: {}, -x: {}, ok-1: {}}
        services: {web_1: {}, a.b: {}, '': {}}
        ",
        &[
            "gantry.yaml:2:16: invalid environment name `Prod`: use 1 to 63 characters from a-z 0-9 -, starting and ending with a letter or digit",
            "gantry.yaml:2:26: invalid environment name `-x`: use 1 to 63 characters from a-z 0-9 -, starting and ending with a letter or digit",
            "gantry.yaml:3:12: invalid service name `web_1`: use 1 to 63 characters from a-z 0-9 -, starting and ending with a letter or digit",
            "gantry.yaml:3:23: invalid service name `a.b`: use 1 to 63 characters from a-z 0-9 -, starting and ending with a letter or digit",
            "gantry.yaml:3:32: invalid service name ``: use 1 to 63 characters from a-z 0-9 -, starting and ending with a letter or digit",
        ],
    );
}

#[test]
fn runtimes() {
    let doc = document(
        "gantry.yaml",
        "
        version: 1
        environments: {a: {runtime: docker}, b: {runtime: process}, c: {}, d: {runtime: swarm, network: host}}
        ",
    );
    let runtimes: Vec<RuntimeKind> = doc.environments.values().map(|e| e.runtime).collect();
    assert_eq!(
        runtimes,
        [
            RuntimeKind::Docker,
            RuntimeKind::Process,
            RuntimeKind::Process,
            RuntimeKind::Swarm
        ]
    );
    check(
        "
        version: 1
        environments: {a: {runtime: kubernetes}, b: {runtime: lxc}, c: {runtime: [docker]}}
        ",
        &[
            "gantry.yaml:2:55: unknown runtime `lxc`; expected one of: process, docker, swarm, kubernetes",
            "gantry.yaml:2:74: `runtime` must be a string, found a list",
        ],
    );
}

#[test]
fn kubernetes_settings_default_to_a_namespace_per_environment() {
    let doc = document(
        "gantry.yaml",
        "
        version: 1
        environments:
          staging: {runtime: kubernetes}
          production:
            runtime: process
            kubernetes: {namespace: shop, context: prod, kubeconfig: /shop/kubeconfig, service_type: NodePort, node_address: node1.internal}
        ",
    );
    let staging = &doc.environments[&EnvironmentName::new("staging").expect("name")];
    assert_eq!(staging.runtime, RuntimeKind::Kubernetes);
    assert_eq!(staging.kubernetes.namespace, "gantry-staging");
    assert_eq!(staging.kubernetes.context, None);
    assert_eq!(staging.kubernetes.kubeconfig, None);
    assert_eq!(staging.kubernetes.service_type, KubeServiceType::ClusterIP);
    let production = &doc.environments[&EnvironmentName::new("production").expect("name")];
    let k = &production.kubernetes;
    assert_eq!(k.namespace, "shop");
    assert_eq!(k.context.as_deref(), Some("prod"));
    assert_eq!(k.kubeconfig.as_deref(), Some("/shop/kubeconfig"));
    assert_eq!(k.service_type, KubeServiceType::NodePort);
    assert_eq!(k.node_address.as_deref(), Some("node1.internal"));
}

#[test]
fn kubernetes_settings_are_checked() {
    check(
        "
        version: 1
        environments:
          a: {runtime: kubernetes, kubernetes: {namespace: Shop_1, colour: x}}
          b: {kubernetes: {kubeconfig: kubeconfig, service_type: LoadBalancer}}
          c: {kubernetes: {node_address: 'http://node:30080'}}
          d: {kubernetes: {context: '', node_address: node1}}
          e: {kubernetes: [x]}
        ",
        &[
            "gantry.yaml:3:52: invalid kubernetes namespace `Shop_1`: use 1 to 63 characters from a-z 0-9 -, starting and ending with a letter or digit",
            "gantry.yaml:3:60: unknown key `colour` in `kubernetes`; expected one of: namespace, context, kubeconfig, service_type, node_address",
            "gantry.yaml:4:32: `kubeconfig` must be the name of a SecureString parameter holding a kubeconfig, such as /shop/production/kubeconfig, found `kubeconfig`",
            "gantry.yaml:4:58: unknown service_type `LoadBalancer`; expected one of: ClusterIP, NodePort",
            "gantry.yaml:5:34: `node_address` must be a host name or IP address (no port, no scheme), found `http://node:30080`",
            "gantry.yaml:6:29: `kubernetes.context` cannot be empty",
            "gantry.yaml:6:47: `node_address` node1 is where NodePort services are reached; set `service_type: NodePort` too",
            "gantry.yaml:7:19: `kubernetes` must be a mapping, found a list",
        ],
    );
}

#[test]
fn load_balancer_rules() {
    let doc = document(
        "gantry.yaml",
        "
        version: 1
        environments:
          staging:
            load_balancer:
              listen: '[::1]:8080'
              rules:
                - {priority: 100, path: '/*', service: bff}
                - {priority: 10, path: '/api/catalog/*', service: catalog}
                - {priority: 50000, path: '*.css', service: static}
        ",
    );
    let lb = doc.environments[&env("staging")]
        .load_balancer
        .clone()
        .expect("a load balancer");
    let order: Vec<u32> = lb.rules.iter().map(|r| r.priority).collect();
    assert_eq!(
        order,
        [10, 100, 50000],
        "rules are kept lowest priority first"
    );
    assert_eq!(lb.listen.port(), 8080);
    check(
        "
        version: 1
        environments:
          a:
            load_balancer:
              listen: 'localhost:80'
              rules:
                - {priority: 10, path: '/a', service: x}
                - {priority: 10, path: '/b', service: y}
                - {priority: 50001, path: '', service: z}
                - {path: '/a b', service: Web, weight: 1}
          b:
            load_balancer: {rules: []}
          c:
            load_balancer: {listen: 127.0.0.1, rules: {a: 1}}
        ",
        &[
            "gantry.yaml:5:15: `load_balancer.listen` must be an IP address and a port, such as 127.0.0.1:18080, found `localhost:80`",
            "gantry.yaml:8:22: priority 10 is already the priority of the rule at 7:22",
            "gantry.yaml:9:22: `priority` must be from 1 to 50000, found 50001",
            "gantry.yaml:9:35: a path pattern cannot be empty",
            "gantry.yaml:10:11: missing required key `priority` in a rule",
            "gantry.yaml:10:18: path pattern `/a b` holds ` `; use A-Z a-z 0-9 _ - . $ / ~ \" ' @ : + & and the wildcards * and ?",
            "gantry.yaml:10:35: invalid service name `Web`: use 1 to 63 characters from a-z 0-9 -, starting and ending with a letter or digit",
            "gantry.yaml:10:40: unknown key `weight` in a rule; expected one of: priority, path, service, listener, conditions, action",
            "gantry.yaml:12:20: missing required key `listen` in `load_balancer` (such as 127.0.0.1:18080)",
            "gantry.yaml:12:28: a load balancer needs at least one rule in `rules`",
            "gantry.yaml:14:29: `load_balancer.listen` must be an IP address and a port, such as 127.0.0.1:18080, found `127.0.0.1`",
            "gantry.yaml:14:47: `rules` must be a list, found a mapping",
        ],
    );
}

#[test]
fn path_patterns_match_as_alb_does() {
    let pattern = |p: &str| PathPattern::new(p).expect("valid pattern");
    let catalog = pattern("/api/catalog/*");
    assert!(catalog.matches("/api/catalog/1"));
    assert!(!catalog.matches("/api/catalogs"));
    // `*` matches nothing at all, and across `/`.
    assert!(catalog.matches("/api/catalog/"));
    assert!(catalog.matches("/api/catalog/1/items/2"));
    // `?` is exactly one character.
    assert!(pattern("/v?/x").matches("/v2/x"));
    assert!(!pattern("/v?/x").matches("/v/x"));
    assert!(!pattern("/v?/x").matches("/v10/x"));
    // Case-sensitive.
    assert!(!catalog.matches("/API/catalog/1"));
    // The query string is not part of the path.
    assert!(pattern("/health").matches("/health?verbose=1"));
    assert!(!pattern("/health*1").matches("/health?verbose=1"));
    assert_eq!(catalog.as_str(), "/api/catalog/*");
    assert!(PathPattern::new(&format!("/{}", "a".repeat(128))).is_err());
}

#[test]
fn service_fields_are_checked_each_on_its_own() {
    check(
        "
        version: 1
        services:
          catalog:
            container: 'no.dots'
            image: ''
            command: ['', x]
            port: 65536
            replicas: 1.5
            environment: {A: 1, B:, bad-name: x}
            secrets: {S: /ssm/x, T: '/shop/${environment}/T', U: 'a//b'}
            health_check: {command: [curl, -f, localhost], interval: 6m, grace_period: 0s}
            resources: {cpus: 2000, memory: 5Mi}
            replica: 2
        ",
        &[
            "gantry.yaml:4:16: invalid container name `no.dots`: use 1 to 255 characters from A-Z a-z 0-9 _ -",
            "gantry.yaml:5:12: `image` must be an image reference such as `registry/repository:tag`, found ``",
            "gantry.yaml:6:14: `command` must name a program: a list whose first item is not empty",
            "gantry.yaml:7:11: `port` must be from 1 to 65535, found 65536",
            "gantry.yaml:8:15: `replicas` must be a whole number from 0 to 100, found `1.5`",
            "gantry.yaml:9:29: invalid variable name `bad-name`: use letters, digits and _, not starting with a digit",
            "gantry.yaml:10:18: invalid parameter name `/ssm/x`: names starting with `aws` or `ssm` are reserved",
            "gantry.yaml:10:58: invalid parameter name `a//b`: a name with a hierarchy must start with `/`",
            "gantry.yaml:11:62: `health_check.interval` must be from 1s to 5m, found 6m",
            "gantry.yaml:12:23: `resources.cpus` must be a number from 0.01 to 1024, found `2000`",
            "gantry.yaml:12:37: `resources.memory` must be at least 6Mi (Docker's minimum), found `5Mi`",
            "gantry.yaml:13:5: unknown key `replica` in service `catalog` (did you mean `replicas`?); expected one of: container, image, command, user, port, protocol, stickiness, replicas, environment, secrets, health_check, deployment, resources",
        ],
    );
}

#[test]
fn a_services_user_is_a_name_or_uid_and_gid() {
    check(
        "
        version: 1
        services:
          a: {user: nobody}
          b: {user: '1000'}
          c: {user: '1000:1000'}
          d: {user: 'root; rm -rf /'}
          e: {user: 'app:'}
          f: {user: [x]}
        environments:
          staging:
            services:
              a: {user: '-x'}
        ",
        &[
            "gantry.yaml:6:13: `user` must be a user name or uid[:gid] (such as `app` or `1000:1000`), found `root; rm -rf /`",
            "gantry.yaml:7:13: `user` must be a user name or uid[:gid] (such as `app` or `1000:1000`), found `app:`",
            "gantry.yaml:8:13: `user` must be a string, found a list",
            "gantry.yaml:12:17: `user` must be a user name or uid[:gid] (such as `app` or `1000:1000`), found `-x`",
        ],
    );
}

#[test]
fn health_check_rules() {
    check(
        "
        version: 1
        services:
          a: {health_check: {path: /health, command: [x]}}
          b: {health_check: {path: health}}
          c: {health_check: {interval: 2s, timeout: 2s}}
          d: {health_check: {timeout: 10s}}
          e: {health_check: {healthy_threshold: 1, unhealthy_threshold: 11}}
          f: {health_check: [path]}
        ",
        &[
            "gantry.yaml:3:37: `health_check` takes `path` (HTTP) or `command`, not both",
            "gantry.yaml:4:28: `health_check.path` must be a URL path starting with `/`, found `health`",
            "gantry.yaml:5:21: the health check's timeout (2s) must be shorter than its interval (2s)",
            "gantry.yaml:6:21: the health check's timeout (10s) must be shorter than its interval (5s)",
            "gantry.yaml:7:41: `health_check.healthy_threshold` must be from 2 to 10, found 1",
            "gantry.yaml:7:65: `health_check.unhealthy_threshold` must be from 2 to 10, found 11",
            "gantry.yaml:8:21: `health_check` must be a mapping, found a list",
        ],
    );
    let doc = document(
        "gantry.yaml",
        "
        version: 1
        services:
          worker: {health_check: {command: [sh, -c, 'test -f /tmp/ready'], grace_period: 0s}}
        ",
    );
    let worker = &doc.services[&svc("worker")];
    assert_eq!(
        worker.health_check.kind,
        HealthCheckKind::Command {
            command: vec!["sh".into(), "-c".into(), "test -f /tmp/ready".into()]
        }
    );
    assert_eq!(worker.health_check.grace_period, Duration::ZERO);
}

#[test]
fn protocols_and_grpc_health_checks() {
    check(
        "
        version: 1
        services:
          a: {protocol: http3}
          b: {health_check: {grpc: {}}}
          c: {protocol: grpc, health_check: {grpc: {service: x}, path: /}}
          d: {protocol: grpc, health_check: {grpc: {name: x}}}
          e: {protocol: grpc, health_check: {grpc: [x]}}
        ",
        &[
            "gantry.yaml:3:17: unknown protocol `http3`; expected one of: http1, http2, grpc",
            "gantry.yaml:4:21: a `grpc` health check speaks HTTP/2: it needs `protocol: grpc` (or `http2`) on the service",
            "gantry.yaml:5:38: `health_check` takes one of `path` (HTTP), `command` and `grpc`",
            "gantry.yaml:6:45: unknown key `name` in `health_check.grpc`; expected one of: service",
            "gantry.yaml:7:44: `health_check.grpc` must be a mapping, found a list",
        ],
    );
    let doc = project(&[(
        "gantry.yaml",
        "
        version: 1
        services:
          api: {protocol: grpc, health_check: {grpc: {service: shop.Catalog}}}
          web: {protocol: http2, health_check: {grpc: }}
          old: {}
        environments:
          qa:
            services:
              old: {protocol: http2}
        ",
    )]);
    let api = &doc.services[&svc("api")];
    assert_eq!(api.protocol, ServiceProtocol::Grpc);
    assert_eq!(
        api.health_check.kind,
        HealthCheckKind::Grpc {
            service: "shop.Catalog".into()
        }
    );
    let web = &doc.services[&svc("web")];
    assert_eq!(web.protocol, ServiceProtocol::Http2);
    assert_eq!(
        web.health_check.kind,
        HealthCheckKind::Grpc { service: "".into() }
    );
    assert_eq!(doc.services[&svc("old")].protocol, ServiceProtocol::Http1);
    let old = doc.service_in(&env("qa"), &svc("old")).unwrap();
    assert_eq!(old.protocol, ServiceProtocol::Http2);
}

#[test]
fn deployment_rules() {
    check(
        "
        version: 1
        services:
          a: {deployment: {min_healthy_percent: 100, max_percent: 100}}
          b: {replicas: 3, deployment: {min_healthy_percent: 100, max_percent: 130}}
          c: {replicas: 3, deployment: {min_healthy_percent: 67, max_percent: 100}}
          d: {deployment: {strategy: blue_green, min_healthy_percent: 50}}
          e: {deployment: {strategy: canery, max_percent: 99, drain: 2h, circuit_breaker: {threshold: 201, rollback: sometimes}}}
        ",
        &[
            "gantry.yaml:3:19: with 1 replica, min_healthy_percent 100 and max_percent 100 leave no room to start a new replica first (100% of 1 rounds down to 1) or to stop an old one first (100% rounds up to 1): the deployment would never progress; raise max_percent or lower min_healthy_percent",
            "gantry.yaml:4:32: with 3 replicas, min_healthy_percent 100 and max_percent 130 leave no room to start a new replica first (130% of 3 rounds down to 3) or to stop an old one first (100% rounds up to 3): the deployment would never progress; raise max_percent or lower min_healthy_percent",
            "gantry.yaml:5:32: with 3 replicas, min_healthy_percent 67 and max_percent 100 leave no room to start a new replica first (100% of 3 rounds down to 3) or to stop an old one first (67% rounds up to 3): the deployment would never progress; raise max_percent or lower min_healthy_percent",
            "gantry.yaml:6:42: `min_healthy_percent` applies to rolling deployments only: a blue_green deployment starts a full new set of replicas",
            "gantry.yaml:7:30: unknown deployment strategy `canery` (did you mean `canary`?); expected one of: rolling, blue_green, canary, linear, steps",
            "gantry.yaml:7:51: `deployment.max_percent` must be from 100 to 200, found 99",
            "gantry.yaml:7:62: `deployment.drain` must be from 0s to 1h, found 2h",
            "gantry.yaml:7:95: `circuit_breaker.threshold` must be from 1 to 200, found 201",
            "gantry.yaml:7:110: `circuit_breaker.rollback` must be yes, no, true or false, found `sometimes`",
        ],
    );
    // Zero replicas have nothing to roll; 66% of 3 rounds up to 2, so one
    // replica may stop first.
    check(
        "
        version: 1
        services:
          a: {replicas: 0, deployment: {min_healthy_percent: 100, max_percent: 100}}
          b: {replicas: 3, deployment: {min_healthy_percent: 66, max_percent: 100}}
          c: {deployment: {strategy: blue_green, drain: 0s}}
        ",
        &[],
    );
}

#[test]
fn a_variable_is_either_plain_or_secret() {
    check(
        "
        version: 1
        services:
          a: {environment: {DNS: x}, secrets: {DNS: /shop/DNS}}
        ",
        &["gantry.yaml:3:39: `DNS` is both in `environment` and in `secrets`; keep one"],
    );
}

#[test]
fn secrets_take_only_the_environment_placeholder() {
    check(
        "
        version: 1
        services:
          a:
            secrets:
              A: '/shop/${environment}/A'
              B: '/shop/${ENVIRONMENT}/B'
              C: '/shop/${environment'
              D: '${environment}/D'
        ",
        &[
            "gantry.yaml:6:10: invalid parameter name `/shop/${ENVIRONMENT}/B`: `${ENVIRONMENT...` is not a placeholder: only `${environment}` is replaced",
            "gantry.yaml:7:10: invalid parameter name `/shop/${environment`: `${environment...` is not a placeholder: only `${environment}` is replaced",
            "gantry.yaml:8:10: invalid parameter name `${environment}/D`: a name with a hierarchy must start with `/`",
        ],
    );
}

#[test]
fn overrides_take_the_service_keys_but_container() {
    check(
        "
        version: 1
        environments:
          staging:
            services:
              catalog: {container: x, replicas: 500, colour: red}
              Bad: {}
              list: [1]
        ",
        &[
            "gantry.yaml:5:17: `container` cannot change per environment: the same imagedefinitions.json deploys to every environment",
            "gantry.yaml:5:41: `replicas` must be from 0 to 100, found 500",
            "gantry.yaml:5:46: unknown key `colour` in the override of service `catalog` in environment `staging`; expected one of: image, command, user, port, protocol, stickiness, replicas, environment, secrets, health_check, deployment, resources",
            "gantry.yaml:6:7: invalid service name `Bad`: use 1 to 63 characters from a-z 0-9 -, starting and ending with a letter or digit",
            "gantry.yaml:7:13: the override of service `list` in environment `staging` must be a mapping, found a list",
        ],
    );
}

#[test]
fn includes_are_relative_paths_listed_once() {
    let doc = document(
        "gantry.yaml",
        "
        version: 1
        include: [envs/staging.yaml, services.yaml]
        ",
    );
    let includes: Vec<(&str, usize, usize)> = doc
        .includes
        .iter()
        .map(|i| (i.as_str(), i.location.line, i.location.col))
        .collect();
    assert_eq!(
        includes,
        [("envs/staging.yaml", 2, 11), ("services.yaml", 2, 30)]
    );
    check(
        "
        version: 1
        include: [/etc/gantry.yaml, a.yaml, a.yaml]
        ",
        &[
            "gantry.yaml:2:11: `include` lists paths relative to this file's directory, found `/etc/gantry.yaml`",
            "gantry.yaml:2:37: `a.yaml` is already included at 2:29",
        ],
    );
    check(
        "
        version: 1
        include: [../../etc/shadow, envs/../../x.yaml]
        ",
        &[
            "gantry.yaml:2:11: `include` stays inside this file's directory tree, found `../../etc/shadow` (no `..`)",
            "gantry.yaml:2:29: `include` stays inside this file's directory tree, found `envs/../../x.yaml` (no `..`)",
        ],
    );
    check(
        "
        version: 1
        include: a.yaml
        ",
        &["gantry.yaml:2:10: `include` must be a list of strings, found a string"],
    );
}

const PIPELINE: &str = "
    version: 1
    name: shop
    include: [services.yaml]
    stages:
      - name: Source
        actions:
          - {name: checkout, type: source, outputs: [Src]}
      - name: Build
        actions:
          - {name: catalog, type: image, inputs: [Src], outputs: [Img], repository: shop/catalog}
      - name: Deploy
        actions:
          - {name: staging, type: deploy, environment: staging, service: catalog, inputs: [Img]}
          - {name: prod, type: deploy, environment: production, service: basket, inputs: [Img]}
";

const SERVICES: &str = "
    version: 1
    environments:
      staging:
        load_balancer:
          listen: 127.0.0.1:18080
          rules:
            - {priority: 1, path: '/*', service: catalog}
    services:
      catalog: {image: 'r/catalog:1'}
";

#[test]
fn includes_assemble_into_one_project() {
    let project = project(&[
        (
            "gantry.yaml",
            PIPELINE
                .replace("production", "staging")
                .replace("basket", "catalog")
                .as_str(),
        ),
        ("services.yaml", SERVICES),
    ]);
    assert_eq!(
        project.pipeline.as_ref().map(|p| p.name.as_str()),
        Some("shop")
    );
    assert!(project.environments.contains_key(&env("staging")));
    assert!(project.services.contains_key(&svc("catalog")));
}

#[test]
fn deploy_actions_name_an_existing_environment_and_service() {
    check_project(
        &[("gantry.yaml", PIPELINE), ("services.yaml", SERVICES)],
        &[
            "gantry.yaml:14:9: `deploy` action `Deploy/prod` deploys to environment `production`, which no file defines (defined: staging)",
            "gantry.yaml:14:9: `deploy` action `Deploy/prod` deploys service `basket`, which no file defines (defined: catalog)",
        ],
    );
}

#[test]
fn a_duplicate_service_names_both_places() {
    check_project(
        &[
            ("services.yaml", SERVICES),
            (
                "more.yaml",
                "
                version: 1
                environments:
                  staging: {}
                services:
                  basket: {}
                  catalog: {replicas: 2}
                ",
            ),
        ],
        &[
            "more.yaml:3:3: environment `staging` is already defined at services.yaml:3:3",
            "more.yaml:6:3: service `catalog` is already defined at services.yaml:9:3",
        ],
    );
}

#[test]
fn a_project_has_at_most_one_pipeline() {
    let pipeline = "
        version: 1
        name: other
        stages:
          - name: Gate
            actions:
              - {name: wait, type: approval}
    ";
    check_project(
        &[
            ("a.yaml", pipeline),
            ("b.yaml", &pipeline.replace("other", "again")),
        ],
        &[
            "b.yaml:2:7: a project has one pipeline, and pipeline `other` is already defined at a.yaml:2:7",
        ],
    );
}

#[test]
fn rules_and_overrides_name_existing_services() {
    check_project(
        &[(
            "gantry.yaml",
            "
            version: 1
            environments:
              staging:
                load_balancer:
                  listen: 127.0.0.1:0
                  rules: [{priority: 5, path: '/*', service: web}]
                services:
                  web: {replicas: 2}
            services:
              web: {}
            ",
        )],
        &[],
    );
    check_project(
        &[(
            "gantry.yaml",
            "
            version: 1
            environments:
              staging:
                load_balancer:
                  listen: 127.0.0.1:0
                  rules: [{priority: 5, path: '/*', service: wbe}]
                services:
                  wbe: {replicas: 2}
            services:
              web: {}
            ",
        )],
        &[
            "gantry.yaml:6:15: the rule with priority 5 sends requests to service `wbe`, which no file defines (defined: web)",
            "gantry.yaml:8:7: environment `staging` overrides service `wbe`, which no file defines (defined: web)",
        ],
    );
}

#[test]
fn two_load_balancers_cannot_share_an_address() {
    check_project(
        &[
            (
                "a.yaml",
                "
                version: 1
                environments:
                  staging: {load_balancer: {listen: '127.0.0.1:8080', rules: [{priority: 1, path: '/*', service: web}]}}
                  test: {load_balancer: {listen: '127.0.0.1:0', rules: [{priority: 1, path: '/*', service: web}]}}
                  qa: {load_balancer: {listen: '127.0.0.1:0', rules: [{priority: 1, path: '/*', service: web}]}}
                services:
                  web: {}
                ",
            ),
            (
                "b.yaml",
                "
                version: 1
                environments:
                  production: {load_balancer: {listen: '0.0.0.0:8080', rules: [{priority: 1, path: '/*', service: web}]}}
                ",
            ),
        ],
        &[
            "b.yaml:3:31: environment `production` listens on 0.0.0.0:8080, as environment `staging` does (at a.yaml:3:28)",
        ],
    );
}

#[test]
fn overrides_are_checked_on_the_service_they_make() {
    check_project(
        &[(
            "gantry.yaml",
            "
            version: 1
            environments:
              staging:
                services:
                  catalog: {health_check: {interval: 1s}, deployment: {max_percent: 100}}
                  basket: {environment: {DNS: x}}
            services:
              catalog: {health_check: {interval: 5s, timeout: 2s}}
              basket: {secrets: {DNS: /shop/DNS}}
            ",
        )],
        &[
            "gantry.yaml:5:7: in environment `staging`, service `catalog`: the health check's timeout (2s) must be shorter than its interval (1s)",
            "gantry.yaml:5:7: in environment `staging`, service `catalog`: with 1 replica, min_healthy_percent 100 and max_percent 100 leave no room to start a new replica first (100% of 1 rounds down to 1) or to stop an old one first (100% rounds up to 1): the deployment would never progress; raise max_percent or lower min_healthy_percent",
            "gantry.yaml:6:7: in environment `staging`, service `basket`: `DNS` is both in `environment` and in `secrets`; keep one",
        ],
    );
}

#[test]
fn secrets_are_checked_with_each_environments_name() {
    check_project(
        &[(
            "gantry.yaml",
            "
            version: 1
            environments:
              ssm-test: {}
              staging: {}
            services:
              catalog: {secrets: {DNS: '${environment}-dns'}}
            ",
        )],
        &[
            "gantry.yaml:3:3: in environment `ssm-test`, service `catalog`: secret `DNS` reads parameter `ssm-test-dns` here, which is not a valid parameter name: names starting with `aws` or `ssm` are reserved",
        ],
    );
}

#[test]
fn service_in_applies_the_environments_overrides() {
    let project = project(&[(
        "gantry.yaml",
        "
        version: 1
        environments:
          staging:
            services:
              catalog:
                replicas: 2
                image: r/catalog:staging
                environment: {RUST_LOG: debug, EXTRA: '1'}
                secrets: {TOKEN: '/shop/${environment}/TOKEN'}
                health_check: {path: /ready, interval: 10s}
                deployment: {strategy: blue_green, circuit_breaker: {rollback: false}}
                resources: {memory: 1Gi}
          production: {}
        services:
          catalog:
            image: r/catalog:1
            environment: {RUST_LOG: info, PORT_NAME: http}
            secrets: {DNS: '/shop/${environment}/DNS'}
            health_check: {path: /health, timeout: 3s}
            deployment: {drain: 1s, circuit_breaker: {threshold: 5}}
            resources: {cpus: 0.5, memory: 256Mi}
        ",
    )]);
    let staging = project
        .service_in(&env("staging"), &svc("catalog"))
        .expect("catalog in staging");
    assert_eq!(staging.replicas, 2);
    assert_eq!(staging.image.as_deref(), Some("r/catalog:staging"));
    assert_eq!(staging.environment["RUST_LOG"], "debug");
    assert_eq!(staging.environment["EXTRA"], "1");
    assert_eq!(staging.environment["PORT_NAME"], "http", "maps are merged");
    assert_eq!(staging.secrets["DNS"], "/shop/staging/DNS");
    assert_eq!(staging.secrets["TOKEN"], "/shop/staging/TOKEN");
    assert_eq!(
        staging.health_check.kind,
        HealthCheckKind::Http {
            path: "/ready".into()
        }
    );
    assert_eq!(staging.health_check.interval, Duration::from_secs(10));
    assert_eq!(staging.health_check.timeout, Duration::from_secs(3));
    assert_eq!(staging.deployment.strategy, DeploymentStrategy::BlueGreen);
    assert!(!staging.deployment.circuit_breaker.rollback);
    assert_eq!(staging.deployment.circuit_breaker.threshold, 5);
    assert_eq!(staging.deployment.drain, Duration::from_secs(1));
    assert_eq!(staging.resources.memory, Some(1 << 30));
    assert_eq!(staging.resources.cpus, Some(0.5));

    let production = project
        .service_in(&env("production"), &svc("catalog"))
        .expect("catalog in production");
    assert_eq!(production.replicas, 1);
    assert_eq!(production.image.as_deref(), Some("r/catalog:1"));
    assert_eq!(production.secrets["DNS"], "/shop/production/DNS");
    assert_eq!(production.resources.memory, Some(256 << 20));

    assert_eq!(project.service_in(&env("qa"), &svc("catalog")), None);
    assert_eq!(project.service_in(&env("staging"), &svc("basket")), None);
}

/// A deploy action whose input comes from an `image` action (perhaps
/// through `promote`) finds its service's container in that action's
/// imagedefinitions.json, or the project is invalid before anything runs.
#[test]
fn a_deploy_fed_by_an_image_action_names_the_services_container() {
    let pipeline = |container: &str| {
        format!(
            "
            version: 1
            name: shop
            stages:
              - name: Source
                actions:
                  - {{name: checkout, type: source, repository: ., outputs: [Src]}}
              - name: Image
                actions:
                  - {{name: image, type: image, inputs: [Src], repository: shop/catalog, container: {container}, outputs: [Img]}}
                  - {{name: promote, type: promote, run_order: 2, inputs: [Img], tag: release, outputs: [Rel]}}
              - name: Deploy
                actions:
                  - {{name: staging, type: deploy, environment: staging, service: catalog, inputs: [Rel]}}
            "
        )
    };
    check_project(
        &[
            ("gantry.yaml", &pipeline("web")),
            ("services.yaml", SERVICES),
        ],
        &[
            "gantry.yaml:13:9: `deploy` action `Deploy/staging`: service `catalog` runs container `catalog`, but its input `Rel` comes from `image` action `Image/image`, whose imagedefinitions.json names container `web`: set `container: catalog` on the image action (or on the service)",
        ],
    );
    check_project(
        &[
            ("gantry.yaml", &pipeline("catalog")),
            ("services.yaml", SERVICES),
        ],
        &[],
    );
}

#[test]
fn an_http_listener_may_serve_h2c_and_an_https_one_refuses_the_key() {
    check(
        r#"
        version: 1
        environments:
          staging:
            load_balancer:
              listeners:
                - {name: web, listen: "127.0.0.1:18443", protocol: https, http2: true,
                   certificates: [{cert: /c, key: /k}]}
                - {name: plain, listen: "127.0.0.1:18081", http2: sometimes}
        "#,
        &[
            "gantry.yaml:6:74: `http2` applies to http listeners (h2c); https listener `web` offers HTTP/2 by ALPN already",
            "gantry.yaml:8:59: `http2` must be yes, no, true or false, found `sometimes`",
        ],
    );
    let doc = document(
        "gantry.yaml",
        r#"
        version: 1
        environments:
          staging:
            load_balancer:
              listeners:
                - {name: grpc, listen: "127.0.0.1:18082", http2: true}
                - {name: plain, listen: "127.0.0.1:18081"}
        "#,
    );
    let lb = doc.environments[&env("staging")]
        .load_balancer
        .as_ref()
        .unwrap();
    assert!(lb.listeners[0].http2);
    assert!(!lb.listeners[1].http2);
}

#[test]
fn listeners_conditions_and_actions_as_alb_has_them() {
    let doc = document(
        "gantry.yaml",
        r##"
        version: 1
        environments:
          production:
            load_balancer:
              listeners:
                - {name: web, listen: "127.0.0.1:18443", protocol: https,
                   certificates: [{cert: /shop/production/tls/cert, key: /shop/production/tls/key}]}
                - {name: plain, listen: "127.0.0.1:18081", protocol: http, redirect_to: web}
              rules:
                - priority: 5
                  listener: web
                  conditions: {host: ["api.*"], path: ["/v1/*"], header: {X-Tenant: ["a", "b"]},
                               method: [GET], query: {v: ["1", "2"]}, source_ip: ["10.0.0.0/8", "2001:db8::/32"]}
                  action: {forward: {service: catalog}}
                - priority: 9
                  conditions: {path: ["/old/*"]}
                  action: {redirect: {path: "/new/#{path}", status: HTTP_301}}
                - priority: 99
                  conditions: {path: ["/maintenance"]}
                  action: {fixed_response: {status: 503, content_type: text/plain, body: "back soon"}}
        "##,
    );
    let lb = doc.environments[&env("production")]
        .load_balancer
        .clone()
        .expect("a load balancer");
    let names: Vec<&str> = lb.listeners.iter().map(|l| l.name.as_str()).collect();
    assert_eq!(names, ["web", "plain"]);
    assert_eq!(lb.listen.port(), 18443);
    assert_eq!(
        lb.listeners[0].certificates[0].key,
        "/shop/production/tls/key"
    );
    assert_eq!(lb.listeners[1].redirect_to.as_deref(), Some("web"));
    assert_eq!(lb.rules_of("web").count(), 3);
    assert_eq!(lb.rules_of("plain").count(), 2);
    let first = &lb.rules[0].conditions;
    assert_eq!(
        first.query,
        [
            ("v".to_owned(), "1".to_owned()),
            ("v".to_owned(), "2".to_owned())
        ]
    );
    assert_eq!(first.header[0].0, "X-Tenant");

    check(
        r##"
        version: 1
        environments:
          a:
            load_balancer:
              listeners:
                - {name: web, listen: "127.0.0.1:1", protocol: https}
                - {name: plain, listen: "127.0.0.1:2", redirect_to: nowhere}
              rules:
                - {priority: 1, conditions: {}, action: {forward: {service: x}}}
                - {priority: 2, listener: other, conditions: {path: /a}, action: {forward: {service: x}}}
                - {priority: 3, conditions: {path: /a}, action: {forward: {service: x}, redirect: {path: /b}}}
                - {priority: 4, conditions: {path: /a}, action: {proxy: {}}}
                - {priority: 5, listener: web, conditions: {path: /a}, action: {forward: {service: x}}}
                - {priority: 5, listener: web, conditions: {path: /b}, action: {forward: {service: x}}}
                - {priority: 6, conditions: {source_ip: [10.0.0.1/8]}, action: {forward: {service: x}}}
                - {priority: 7, conditions: {path: /a}, action: {redirect: {path: "/#{path}"}}}
                - {priority: 8, conditions: {path: /a}, action: {fixed_response: {status: 200, body: "{{}}"}}}
                - {priority: 9, conditions: {method: [a, b, c, d, e, f]}, action: {forward: {service: x}}}
                - {priority: 10, conditions: {path: /a}, action: {fixed_response: {status: 302}}}
                - {priority: 11, conditions: {path: /a}, action: {forward: {targets: []}}}
        "##
        .replace("{{}}", &"x".repeat(1025))
        .as_str(),
        &[
            "gantry.yaml:6:11: https listener `web` needs `certificates` (a cert and a key parameter) or `acme`",
            "gantry.yaml:7:11: listener `plain` redirects to `nowhere`, which is no https listener of this load balancer (listeners: web, plain)",
            "gantry.yaml:9:37: a rule needs at least one condition (host, path, header, method, query or source_ip)",
            "gantry.yaml:10:11: the rule with priority 2 names listener `other`, which this load balancer does not have (listeners: web, plain)",
            "gantry.yaml:11:57: an action is exactly one of forward, redirect, fixed_response; found forward and redirect",
            "gantry.yaml:12:58: unknown key `proxy` in `action`; expected one of: forward, redirect, fixed_response",
            "gantry.yaml:14:22: priority 5 is already the priority of the rule at 13:22",
            "gantry.yaml:15:49: `10.0.0.1/8` has bits set after its /8 prefix",
            "gantry.yaml:16:68: this redirect changes nothing (protocol, host, port, path and query all the request's own), so it would loop",
            "gantry.yaml:17:94: a fixed response body is at most 1024 bytes, found 1025",
            "gantry.yaml:18:46: `method` takes 1 to 5 values, found 6",
            "gantry.yaml:19:84: `fixed_response.status` must be 2xx, 4xx or 5xx; use a redirect for 3xx",
            "gantry.yaml:20:78: `targets` takes 1 to 5 services, found 0",
        ],
    );
}

#[test]
fn a_weighted_forward_names_services_and_weights_as_alb_does() {
    let text = r#"
version: 1
environments:
  production:
    load_balancer:
      listen: "127.0.0.1:18080"
      rules:
        - priority: 1
          conditions: {path: ["/*"]}
          action: {forward: {targets: [{service: catalog, weight: 90}, {service: next, weight: 10}]}}
"#;
    let doc = gantry_spec::parse_document("gantry.yaml", text).unwrap();
    let env = doc.environments.values().next().unwrap();
    let rule = &env.load_balancer.as_ref().unwrap().rules[0];
    let gantry_spec::environment::Action::WeightedForward { targets } = &rule.action else {
        panic!("{:?}", rule.action);
    };
    let targets: Vec<(String, u32)> = targets.iter().map(|(s, w)| (s.to_string(), *w)).collect();
    assert_eq!(
        targets,
        [("catalog".to_owned(), 90), ("next".to_owned(), 10)]
    );
    assert_eq!(rule.action.services().len(), 2);

    check(
        r#"
        version: 1
        environments:
          a:
            load_balancer:
              listen: "127.0.0.1:1"
              rules:
                - {priority: 1, conditions: {path: /a}, action: {forward: {targets: [{service: x, weight: 0}]}}}
                - {priority: 2, conditions: {path: /b}, action: {forward: {targets: [{service: x, weight: 1}, {service: x, weight: 2}, {service: y}, {service: z, weight: 1000}]}}}
                - {priority: 3, conditions: {path: /c}, action: {forward: {service: x, targets: [{service: x, weight: 1}]}}}
                - {priority: 4, conditions: {path: /d}, action: {forward: {targets: [{service: a, weight: 1}, {service: b, weight: 1}, {service: c, weight: 1}, {service: d, weight: 1}, {service: e, weight: 1}, {service: f, weight: 1}]}}}
        "#,
        &[
            "gantry.yaml:7:77: every weight in `targets` is 0: at least one must be above 0",
            "gantry.yaml:8:103: service `x` is named twice in `targets`",
            "gantry.yaml:8:128: missing required key `weight` in a weighted target (0 to 999)",
            "gantry.yaml:8:163: `weight` must be from 0 to 999, found 1000",
            "gantry.yaml:9:67: `forward` takes `service` or weighted `targets`, not both",
            "gantry.yaml:10:77: `targets` takes 1 to 5 services, found 6",
        ],
    );
}

#[test]
fn a_redirect_from_https_to_http_is_refused_as_alb_does() {
    check(
        r#"
        version: 1
        environments:
          a:
            load_balancer:
              listeners:
                - {name: web, listen: "127.0.0.1:1", protocol: https, certificates: [{cert: /c, key: /k}], default_action: {redirect: {protocol: HTTP}}}
                - {name: plain, listen: "127.0.0.1:2"}
              rules:
                - {priority: 1, conditions: {path: /a}, action: {redirect: {protocol: http}}}
                - {priority: 2, listener: plain, conditions: {path: /b}, action: {redirect: {protocol: http, path: /c}}}
                - {priority: 3, listener: plain, conditions: {path: /d}, action: {redirect: {protocol: https}}}
        "#,
        &[
            "gantry.yaml:6:11: the default action of https listener `web` redirects to http; a redirect may not go from HTTPS to HTTP (as ALB refuses)",
            "gantry.yaml:9:11: the rule with priority 1 redirects https listener `web` to http; a redirect may not go from HTTPS to HTTP (as ALB refuses)",
        ],
    );
}

#[test]
fn acme_listeners_name_their_ca_domains_and_challenge_listener() {
    let text = r#"
version: 1
environments:
  production:
    load_balancer:
      listeners:
        - name: web
          listen: "127.0.0.1:18443"
          protocol: https
          acme:
            domains: [shop.example.com, www.shop.example.com]
            directory: https://acme-v02.api.letsencrypt.org/directory
            contact: mailto:ops@example.com
            renew_before: 20d
        - {name: plain, listen: "127.0.0.1:18080", redirect_to: web}
"#;
    let doc = gantry_spec::parse_document("gantry.yaml", text).unwrap();
    let env = doc.environments.values().next().unwrap();
    let lb = env.load_balancer.as_ref().unwrap();
    let acme = lb.listeners[0].acme.as_ref().unwrap();
    assert_eq!(acme.domains, ["shop.example.com", "www.shop.example.com"]);
    assert_eq!(acme.contact, ["mailto:ops@example.com"]);
    assert_eq!(
        acme.renew_before,
        std::time::Duration::from_secs(20 * 86_400)
    );
    assert_eq!(acme.challenge_listener, None);
    assert_eq!(acme.store, None);
    assert!(lb.listeners[0].certificates.is_empty());

    check(
        r#"
        version: 1
        environments:
          a:
            load_balancer:
              listeners:
                - name: web
                  listen: "127.0.0.1:1"
                  protocol: https
                  acme: {domains: ["*.example.com", 10.0.0.1, shop], directory: http://ca.example/dir, contact: [ops@example.com], store: acme, renew_before: 1s, challenge_listener: web, colour: red}
          b:
            load_balancer:
              listeners:
                - {name: web, listen: "127.0.0.1:3", protocol: https, acme: {domains: [a.example.com], directory: "https://ca.example/dir"}}
                - {name: plain, listen: "127.0.0.1:4", acme: {domains: [a.example.com], directory: "https://ca.example/dir"}}
                - {name: other, listen: "127.0.0.1:5"}
        "#,
        &[
            "gantry.yaml:9:28: `*.example.com`: a wildcard name needs a DNS-01 challenge; gantry answers HTTP-01 only",
            "gantry.yaml:9:45: `10.0.0.1` is not a DNS name such as shop.example.com",
            "gantry.yaml:9:55: `shop` is not a DNS name such as shop.example.com",
            "gantry.yaml:9:73: `directory` must be an https URL such as https://acme-v02.api.letsencrypt.org/directory, found `http://ca.example/dir`",
            "gantry.yaml:9:106: a contact must be a mailto: URL such as mailto:ops@example.com, found `ops@example.com`",
            "gantry.yaml:9:131: `store` must be a parameter name such as /shop/production/acme, found `acme`",
            "gantry.yaml:9:151: `renew_before` must be from 1m to 365d, found 1s",
            "gantry.yaml:9:180: unknown key `colour` in `acme`; expected one of: domains, directory, contact, challenge_listener, store, renew_before, directory_ca",
            "gantry.yaml:13:11: listener `web`: `acme` needs an http listener to answer HTTP-01 challenges; this load balancer has several (plain, other) (add one, or name it in `acme.challenge_listener`)",
            "gantry.yaml:14:54: http listener `plain` takes no `acme`; use protocol: https",
        ],
    );
}
