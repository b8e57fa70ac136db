//! gantry.yaml: one test per rule, each a small file and the exact errors
//! `gantry validate` would print for it.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{dedent, lines};
use gantry_spec::environment::EnvironmentName;
use gantry_spec::pipeline::{ActionKind, ExecutionMode, Pipeline, parse_pipeline};
use gantry_spec::service::ServiceName;

/// Parses `yaml` (dedented) and compares the errors, in order, with `expected`
/// (empty = valid).
fn check(yaml: &str, expected: &[&str]) {
    let text = dedent(yaml);
    let actual = match parse_pipeline("gantry.yaml", &text) {
        Ok(_) => Vec::new(),
        Err(errors) => lines(&errors),
    };
    assert_eq!(actual, expected, "\n--- file ---\n{text}");
}

fn parse_ok(yaml: &str) -> Pipeline {
    let text = dedent(yaml);
    match parse_pipeline("gantry.yaml", &text) {
        Ok(pipeline) => pipeline,
        Err(errors) => panic!("expected a valid file, got:\n{}", lines(&errors).join("\n")),
    }
}

/// A valid two-stage pipeline; tests append stages or actions to it.
const BASE: &str = "
    version: 1
    name: shop
    stages:
      - name: Source
        actions:
          - name: checkout
            type: source
            outputs: [Src]
            namespace: Source
";

/// BASE followed by `rest` as written (dedented): top-level keys, or stages
/// followed by a top-level key that sets the indentation.
fn with_base(rest: &str) -> String {
    format!("{}{}", dedent(BASE), dedent(rest))
}

/// BASE followed by `rest` (dedented) indented by `indent` spaces: 2 for
/// more stages, 6 for more actions in the first stage.
fn with_base_indented(rest: &str, indent: usize) -> String {
    let pad = " ".repeat(indent);
    let rest: String = dedent(rest)
        .lines()
        .map(|l| format!("{pad}{l}\n"))
        .collect();
    format!("{}{rest}", dedent(BASE))
}

/// BASE followed by more stages.
fn with_stages(rest: &str) -> String {
    with_base_indented(rest, 2)
}

#[test]
fn minimal_file_is_valid_with_defaults() {
    let p = parse_ok(BASE);
    assert_eq!(p.name.as_str(), "shop");
    assert_eq!(p.execution_mode, ExecutionMode::Superseded);
    let action = &p.stages[0].actions[0];
    assert_eq!(action.run_order, 1);
    assert_eq!(action.timeout, None);
    assert_eq!(
        action.kind,
        ActionKind::Source {
            repository: ".".into(),
            branch: None
        }
    );
    assert_eq!((action.location.line, action.location.col), (6, 9));
    assert_eq!(
        (p.stages[0].location.line, p.stages[0].location.col),
        (4, 5)
    );
}

#[test]
fn invalid_yaml_is_one_error_at_the_parsers_location() {
    check(
        "
        version: 1
        name: [shop
        stages: []
        ",
        &["gantry.yaml:3:7: illegal placement of ':' indicator"],
    );
    check("name: \"shop\n", &["gantry.yaml:1:7: unclosed quote"]);
}

#[test]
fn duplicate_yaml_keys_are_errors() {
    check(
        "
        version: 1
        version: 1
        ",
        &["gantry.yaml:2:1: duplicate mapping key `version` is not allowed here"],
    );
}

#[test]
fn top_must_be_a_mapping() {
    check(
        "",
        &["gantry.yaml:1:1: a pipeline file must be a mapping, found nothing (null)"],
    );
    check(
        "- a\n",
        &["gantry.yaml:1:1: a pipeline file must be a mapping, found a list"],
    );
}

#[test]
fn missing_required_keys() {
    check(
        "
        execution_mode: queued
        ",
        &[
            "gantry.yaml:1:1: missing required key `version` (write `version: 1`)",
            "gantry.yaml:1:1: missing required key `name` (the pipeline's name)",
            "gantry.yaml:1:1: missing required key `stages` (the list of stages)",
        ],
    );
}

#[test]
fn version_must_be_1() {
    check(
        "
        version: 2
        name: shop
        stages: []
        ",
        &[
            "gantry.yaml:1:10: unsupported version `2`: the only version is 1",
            "gantry.yaml:3:9: a pipeline needs at least one stage",
        ],
    );
    // Quoted, it means the same.
    check(&dedent(BASE).replace("version: 1", "version: \"1\""), &[]);
}

#[test]
fn unknown_top_level_keys() {
    check(
        &with_base(
            "
            schedule: []
        ",
        ),
        &[
            "gantry.yaml:10:1: unknown key `schedule` in a pipeline file; expected one of: version, name, execution_mode, variables, stages, triggers, notifications, environments, services, include",
        ],
    );
}

#[test]
fn environments_services_and_include_are_validated_beside_the_pipeline() {
    check(
        &with_base(
            "
            environments: {staging: {runtime: process}}
            services:
              catalog: {image: x, replicas: many}
            include: [envs.yaml]
        ",
        ),
        &["gantry.yaml:12:33: `replicas` must be a whole number from 0 to 100, found `many`"],
    );
    check(
        &with_base(
            "
            environments: {staging: {runtime: process}}
            services:
              catalog: {image: x}
            include: [envs.yaml]
        ",
        ),
        &[],
    );
}

#[test]
fn a_file_without_a_pipeline_is_an_error_for_parse_pipeline() {
    check(
        "
        version: 1
        services:
          catalog: {}
        ",
        &[
            "gantry.yaml:1:1: missing required key `name` (the pipeline's name)",
            "gantry.yaml:1:1: missing required key `stages` (the list of stages)",
        ],
    );
}

#[test]
fn execution_mode_values() {
    for mode in ["superseded", "queued", "parallel"] {
        check(&format!("execution_mode: {mode}\n{}", dedent(BASE)), &[]);
    }
    assert_eq!(
        parse_ok(&format!("execution_mode: queued\n{}", dedent(BASE))).execution_mode,
        ExecutionMode::Queued
    );
    check(
        &format!("execution_mode: fast\n{}", dedent(BASE)),
        &[
            "gantry.yaml:1:17: unknown execution_mode `fast`; expected one of: superseded, queued, parallel",
        ],
    );
}

#[test]
fn names_follow_codepipeline_charsets() {
    let long = "a".repeat(101);
    check(
        &format!(
            "
            version: 1
            name: {long}
            stages:
              - name: 'Source stage'
                actions:
                  - name: check/out
                    type: source
                    outputs: [Src.zip]
                    namespace: Source.ns
            "
        ),
        &[
            &format!(
                "gantry.yaml:2:7: invalid pipeline name `{long}`: use 1 to 100 characters from A-Z a-z 0-9 . @ _ -"
            ),
            "gantry.yaml:4:11: invalid stage name `Source stage`: use 1 to 100 characters from A-Z a-z 0-9 . @ _ -",
            "gantry.yaml:6:15: invalid action name `check/out`: use 1 to 100 characters from A-Z a-z 0-9 . @ _ -",
            "gantry.yaml:8:19: invalid artifact name `Src.zip`: use 1 to 100 characters from A-Z a-z 0-9 _ -",
            "gantry.yaml:9:20: invalid namespace `Source.ns`: use 1 to 100 characters from A-Z a-z 0-9 @ _ -",
        ],
    );
    // The longest allowed names, and every allowed character.
    let max = "a".repeat(100);
    check(
        &format!(
            "
            version: 1
            name: {max}
            stages:
              - name: A.b@c_d-9
                actions:
                  - name: x.Y@z_-0
                    type: source
                    outputs: [A_b-9]
                    namespace: N@s_-1
            "
        ),
        &[],
    );
}

#[test]
fn pipeline_variables() {
    let p = parse_ok(&format!(
        "{}{}",
        dedent(BASE),
        dedent(
            "
            variables:
              REGISTRY: 127.0.0.1:7701
              PORT: 8080
              EMPTY:
            "
        )
    ));
    assert_eq!(p.variables["REGISTRY"], "127.0.0.1:7701");
    assert_eq!(p.variables["PORT"], "8080");
    assert_eq!(p.variables["EMPTY"], "");
    check(
        &with_base(
            "
            variables:
              'NOT OK': x
              LIST: [a]
        ",
        ),
        &[
            "gantry.yaml:11:3: invalid variable name `NOT OK`: use 1 to 128 characters from A-Z a-z 0-9 @ _ -",
            "gantry.yaml:12:9: the value of `LIST` in `variables` must be a string, found a list",
        ],
    );
}

#[test]
fn at_least_one_stage_and_one_action_per_stage() {
    check(
        "
        version: 1
        name: shop
        stages: []
        ",
        &["gantry.yaml:3:9: a pipeline needs at least one stage"],
    );
    check(
        &with_stages(
            "
              - name: Empty
                actions: []
        ",
        ),
        &["gantry.yaml:10:5: stage `Empty` has no actions"],
    );
}

#[test]
fn stage_names_are_unique() {
    check(
        &with_stages(
            "
              - name: Source
                actions:
                  - {name: wait, type: approval}
        ",
        ),
        &["gantry.yaml:10:11: duplicate stage name `Source` (first at 4:11)"],
    );
}

#[test]
fn action_names_are_unique_in_their_stage_only() {
    check(
        &with_stages(
            "
              - name: Build
                actions:
                  - {name: checkout, type: build, inputs: [Src]}
                  - {name: x, type: build, inputs: [Src]}
                  - {name: x, type: build, inputs: [Src]}
        ",
        ),
        &["gantry.yaml:14:16: duplicate action name `x` in stage `Build` (first at 13:16)"],
    );
}

#[test]
fn stage_keys() {
    check(
        &with_stages(
            "
              - name: Build
                blockers: []
              - actions: []
        ",
        ),
        &[
            "gantry.yaml:10:5: missing required key `actions` in a stage",
            "gantry.yaml:11:5: unknown key `blockers` in a stage; expected one of: name, actions",
            "gantry.yaml:12:5: missing required key `name` in a stage",
            "gantry.yaml:12:5: this stage has no actions",
        ],
    );
}

#[test]
fn output_artifacts_are_unique_in_the_pipeline() {
    check(
        &with_stages(
            "
              - name: Build
                actions:
                  - {name: b, type: build, inputs: [Src], outputs: [Out]}
                  - {name: c, type: build, inputs: [Src], outputs: [Src, Out]}
        ",
        ),
        &[
            "gantry.yaml:13:57: output artifact `Src` is already an output of `Source/checkout`",
            "gantry.yaml:13:62: output artifact `Out` is already an output of `Build/b`",
        ],
    );
}

#[test]
fn inputs_come_from_earlier_stages_or_lower_run_order() {
    let p = parse_ok(&with_stages(
        "
          - name: Build
            actions:
              - {name: a, type: build, inputs: [Src], outputs: [A], run_order: 1}
              - {name: b, type: build, inputs: [Src, A], outputs: [B], run_order: 3}
          - name: Test
            actions:
              - {name: t, type: test, inputs: [B, Src]}
    ",
    ));
    let test = &p.stages[2].actions[0];
    let inputs: Vec<&str> = test.inputs.iter().map(|a| a.as_str()).collect();
    assert_eq!(inputs, ["B", "Src"]);
    assert_eq!(
        test.kind,
        ActionKind::Test {
            buildspec: "buildspec.yml".into(),
            image: None
        }
    );
}

#[test]
fn inputs_that_do_not_run_before_are_errors() {
    check(
        &with_stages(
            "
              - name: Build
                actions:
                  - {name: a, type: build, inputs: [Src], outputs: [A]}
                  - {name: b, type: build, inputs: [A, Later, Missing, Src, Src], outputs: [B]}
                  - {name: self, type: build, inputs: [Src, Own], outputs: [Own], run_order: 2}
              - name: Deploy
                actions:
                  - {name: d, type: build, inputs: [Src], outputs: [Later]}
        ",
        ),
        &[
            "gantry.yaml:13:41: input artifact `A` is an output of `Build/a`, which does not run before this action",
            "gantry.yaml:13:44: input artifact `Later` is an output of `Deploy/d`, which does not run before this action",
            "gantry.yaml:13:51: input artifact `Missing` is not an output of any action",
            "gantry.yaml:13:65: input artifact `Src` is listed twice",
            "gantry.yaml:14:49: input artifact `Own` is an output of `Build/self`, which does not run before this action",
        ],
    );
}

#[test]
fn references_to_earlier_namespaces_variables_and_reserved_ones() {
    let p = parse_ok(&with_base("
          - name: Build
            actions:
              - name: lint
                type: shell
                inputs: [Src]
                namespace: Lint
                exported_variables: [STATUS]
                commands: ['echo #{Source.CommitId} #{codepipeline.PipelineExecutionId} #{gantry.ExecutionId}']
              - name: build
                type: build
                run_order: 2
                inputs: [Src]
                env:
                  STATUS: '#{Lint.STATUS}'
                  REGISTRY: '#{variables.REGISTRY}'
        variables:
          REGISTRY: localhost
    "));
    let build = &p.stages[1].actions[1];
    assert_eq!(build.env["STATUS"], "#{Lint.STATUS}");
}

#[test]
fn references_that_cannot_resolve_are_errors() {
    check(
        &with_stages("
              - name: Build
                actions:
                  - name: lint
                    type: shell
                    inputs: [Src]
                    namespace: Lint
                    exported_variables: [STATUS]
                    commands: ['echo #{Lint.STATUS} #{Later.X}']
                  - name: build
                    type: build
                    inputs: [Src]
                    run_order: 2
                    env: {A: '#{Lint.OTHER}', B: '#{variables.NOPE}', C: '#{Nobody.X}', D: 'x #{Source', E: '#{x}'}
              - name: Late
                actions:
                  - {name: late, type: build, inputs: [Src], namespace: Later}
        "),
        &[
            "gantry.yaml:17:20: `#{Lint.STATUS}` names namespace `Lint` of `Build/lint`, which does not run before this action",
            "gantry.yaml:17:20: `#{Later.X}` names namespace `Later` of `Late/late`, which does not run before this action",
            "gantry.yaml:22:18: `#{Lint.OTHER}` names `OTHER`, which `Build/lint` does not export (exported_variables: STATUS)",
            "gantry.yaml:22:38: `#{variables.NOPE}` names pipeline variable `NOPE`, but `variables` declares none",
            "gantry.yaml:22:62: `#{Nobody.X}` names an unknown namespace `Nobody` (known here: Lint, Source, variables, gantry, codepipeline)",
            "gantry.yaml:22:80: unterminated `#{Source`: a reference is `#{namespace.NAME}`, and `##{` is a literal `#{`",
            "gantry.yaml:22:97: `#{x}` is not a variable reference: expected `#{namespace.NAME}` (letters, digits, @, _ and -), or `##{` for a literal `#{`",
        ],
    );
}

#[test]
fn undeclared_pipeline_variable_lists_the_declared_ones() {
    check(
        &with_base(
            "
              - name: Approve
                actions:
                  - {name: ok, type: approval, comments: '#{variables.B}'}
            variables: {A: 1, C: 2}
        ",
        ),
        &[
            "gantry.yaml:12:46: `#{variables.B}` names pipeline variable `B`, which is not declared (declared: A, C)",
        ],
    );
}

#[test]
fn references_are_checked_in_every_string_field() {
    check(
        "
        version: 1
        name: shop
        stages:
          - name: Source
            actions:
              - name: checkout
                type: source
                outputs: [Src]
                repository: '#{a.repo}'
                branch: '#{a.branch}'
          - name: Build
            actions:
              - name: b
                type: build
                inputs: [Src]
                buildspec: '#{a.buildspec}'
                image: '#{a.image}'
                env: {E: '#{a.env}'}
              - name: s
                type: shell
                inputs: [Src]
                outputs: [Out]
                commands: ['#{a.command}']
                artifacts: {files: ['#{a.files}']}
                image: '#{a.image}'
          - name: Approve
            actions:
              - name: ok
                type: approval
                review_url: '#{a.url}'
                comments: '#{a.comments}'
        ",
        &[
            "gantry.yaml:9:21: `#{a.repo}` names an unknown namespace `a` (known here: variables, gantry, codepipeline)",
            "gantry.yaml:10:17: `#{a.branch}` names an unknown namespace `a` (known here: variables, gantry, codepipeline)",
            "gantry.yaml:16:20: `#{a.buildspec}` names an unknown namespace `a` (known here: variables, gantry, codepipeline)",
            "gantry.yaml:17:16: `#{a.image}` names an unknown namespace `a` (known here: variables, gantry, codepipeline)",
            "gantry.yaml:18:18: `#{a.env}` names an unknown namespace `a` (known here: variables, gantry, codepipeline)",
            "gantry.yaml:23:20: `#{a.command}` names an unknown namespace `a` (known here: variables, gantry, codepipeline)",
            "gantry.yaml:24:20: `#{a.files}` names an unknown namespace `a` (known here: variables, gantry, codepipeline)",
            "gantry.yaml:25:16: `#{a.image}` names an unknown namespace `a` (known here: variables, gantry, codepipeline)",
            "gantry.yaml:30:21: `#{a.url}` names an unknown namespace `a` (known here: variables, gantry, codepipeline)",
            "gantry.yaml:31:19: `#{a.comments}` names an unknown namespace `a` (known here: variables, gantry, codepipeline)",
        ],
    );
}

#[test]
fn escaped_hash_brace_is_not_a_reference() {
    check(
        &with_stages("
              - name: Build
                actions:
                  - {name: s, type: shell, inputs: [Src], commands: [\"ruby -e 'puts \\\"##{1+1}\\\"'\"]}
        "),
        &[],
    );
}

#[test]
fn namespaces_are_unique_unreserved_and_not_artifact_names() {
    check(
        &with_stages(
            "
              - name: Build
                actions:
                  - {name: a, type: build, inputs: [Src], namespace: Source}
                  - {name: b, type: build, inputs: [Src], namespace: gantry}
                  - {name: c, type: build, inputs: [Src], namespace: Src}
                  - {name: d, type: build, inputs: [Src], namespace: Out, outputs: [Out]}
        ",
        ),
        &[
            "gantry.yaml:12:58: namespace `Source` is already the namespace of `Source/checkout`",
            "gantry.yaml:13:58: namespace `gantry` is reserved",
            "gantry.yaml:14:58: namespace `Src` is also the name of an artifact; namespaces and artifact names must differ",
            "gantry.yaml:15:58: namespace `Out` is also the name of an artifact; namespaces and artifact names must differ",
        ],
    );
}

#[test]
fn source_actions_only_in_the_first_stage() {
    check(
        &with_stages(
            "
              - name: Build
                actions:
                  - {name: more, type: source, outputs: [More]}
        ",
        ),
        &["gantry.yaml:12:28: `source` actions are only allowed in the first stage"],
    );
}

#[test]
fn a_first_stage_with_sources_holds_only_sources() {
    check(
        &with_base_indented(
            "
            - {name: other, type: source, outputs: [Other]}
            - {name: wait, type: approval}
            ",
            6,
        ),
        &[
            "gantry.yaml:11:28: the first stage holds source actions, so it may hold only source actions, not an `approval` action",
        ],
    );
    // Without any source action, the first stage may hold anything.
    check(
        "
        version: 1
        name: shop
        stages:
          - name: Gate
            actions:
              - {name: wait, type: approval}
        ",
        &[],
    );
}

#[test]
fn run_order_is_1_to_999() {
    let p = parse_ok(&with_stages(
        "
          - name: Build
            actions:
              - {name: a, type: build, inputs: [Src], run_order: 999}
    ",
    ));
    assert_eq!(p.stages[1].actions[0].run_order, 999);
    check(
        &with_stages(
            "
              - name: Build
                actions:
                  - {name: a, type: build, inputs: [Src], run_order: 0}
                  - {name: b, type: build, inputs: [Src], run_order: 1000}
                  - {name: c, type: build, inputs: [Src], run_order: -1}
                  - {name: d, type: build, inputs: [Src], run_order: 1.5}
                  - {name: e, type: build, inputs: [Src], run_order: first}
        ",
        ),
        &[
            "gantry.yaml:12:58: `run_order` must be from 1 to 999, found 0",
            "gantry.yaml:13:58: `run_order` must be from 1 to 999, found 1000",
            "gantry.yaml:14:58: `run_order` must be from 1 to 999, found -1",
            "gantry.yaml:15:58: `run_order` must be a whole number from 1 to 999, found `1.5`",
            "gantry.yaml:16:58: `run_order` must be a whole number from 1 to 999, found `first`",
        ],
    );
}

#[test]
fn timeouts_are_durations() {
    let p = parse_ok(&with_stages(
        "
          - name: Build
            actions:
              - {name: a, type: build, inputs: [Src], timeout: 90s}
              - {name: b, type: approval, timeout: 5m}
              - {name: c, type: approval, timeout: 60d}
    ",
    ));
    let timeouts: Vec<_> = p.stages[1].actions.iter().map(|a| a.timeout).collect();
    assert_eq!(
        timeouts,
        [
            Some(Duration::from_secs(90)),
            Some(Duration::from_secs(300)),
            Some(Duration::from_secs(60 * 86_400))
        ]
    );
    check(
        &with_stages(
            "
              - name: Build
                actions:
                  - {name: a, type: build, inputs: [Src], timeout: 30m1h}
                  - {name: b, type: approval, timeout: 4m}
                  - {name: c, type: approval, timeout: 61d}
                  - {name: d, type: build, inputs: [Src], timeout: 30}
        ",
        ),
        &[
            "gantry.yaml:12:56: invalid duration `30m1h`: expected a whole number and a unit ms, s, m, h or d (500ms, 90s, 30m, 2h, 7d), or several with the units largest first (1m30s, 1h30m)",
            "gantry.yaml:13:44: an approval's timeout must be from 5m to 60d, found 4m",
            "gantry.yaml:14:44: an approval's timeout must be from 5m to 60d, found 61d",
            "gantry.yaml:15:56: invalid duration `30`: expected a whole number and a unit ms, s, m, h or d (500ms, 90s, 30m, 2h, 7d), or several with the units largest first (1m30s, 1h30m)",
        ],
    );
}

#[test]
fn source_actions_have_one_output_and_no_input() {
    check(
        "
        version: 1
        name: shop
        stages:
          - name: Source
            actions:
              - {name: none, type: source}
              - {name: two, type: source, outputs: [A, B]}
              - {name: in, type: source, outputs: [C], inputs: [A]}
        ",
        &[
            "gantry.yaml:6:9: a `source` action needs exactly one output artifact, found 0",
            "gantry.yaml:7:9: a `source` action needs exactly one output artifact, found 2",
            "gantry.yaml:8:57: a `source` action takes no inputs",
        ],
    );
}

#[test]
fn build_and_test_need_an_input_and_shell_may_run_without() {
    check(
        &with_stages(
            "
              - name: Build
                actions:
                  - {name: b, type: build}
                  - {name: t, type: test, inputs: []}
                  - {name: s, type: shell, commands: [make]}
        ",
        ),
        &[
            "gantry.yaml:12:9: a `build` action needs at least one input artifact in `inputs`",
            "gantry.yaml:13:9: a `test` action needs at least one input artifact in `inputs`",
        ],
    );
}

#[test]
fn buildspec_defaults_and_must_stay_inside_the_input() {
    let p = parse_ok(&with_stages(
        "
          - name: Build
            actions:
              - {name: a, type: build, inputs: [Src]}
              - {name: b, type: build, inputs: [Src], buildspec: ci/build.yml, image: 'rust:1'}
    ",
    ));
    assert_eq!(
        p.stages[1].actions[0].kind,
        ActionKind::Build {
            buildspec: "buildspec.yml".into(),
            image: None
        }
    );
    assert_eq!(
        p.stages[1].actions[1].kind,
        ActionKind::Build {
            buildspec: "ci/build.yml".into(),
            image: Some("rust:1".into())
        }
    );
    check(
        &with_stages(
            "
              - name: Build
                actions:
                  - {name: a, type: build, inputs: [Src], buildspec: /etc/buildspec.yml}
                  - {name: b, type: build, inputs: [Src], buildspec: ../buildspec.yml}
        ",
        ),
        &[
            "gantry.yaml:12:58: `buildspec` must be a relative path inside the first input artifact, found `/etc/buildspec.yml`",
            "gantry.yaml:13:58: `buildspec` must be a relative path inside the first input artifact, found `../buildspec.yml`",
        ],
    );
}

#[test]
fn shell_actions() {
    let p = parse_ok(&with_stages(
        "
          - name: Build
            actions:
              - name: lint
                type: shell
                inputs: [Src]
                outputs: [Lint]
                commands:
                  - cargo fmt --check > lint.txt
                  - |
                    echo one
                    echo two
                artifacts: {files: lint.txt, discard-paths: yes}
                exported_variables: [LINT_STATUS]
                env: {RUST_LOG: debug, LEVEL: 3}
    ",
    ));
    let lint = &p.stages[1].actions[0];
    let ActionKind::Shell {
        commands,
        artifacts,
        exported_variables,
        image,
    } = &lint.kind
    else {
        panic!("not a shell action: {:?}", lint.kind);
    };
    assert_eq!(
        commands,
        &["cargo fmt --check > lint.txt", "echo one\necho two\n"]
    );
    let artifacts = artifacts.as_ref().expect("artifacts");
    assert_eq!(artifacts.files, ["lint.txt"]);
    assert!(artifacts.discard_paths);
    assert_eq!(exported_variables, &["LINT_STATUS"]);
    assert_eq!(image, &None);
    assert_eq!(lint.env["LEVEL"], "3");
}

#[test]
fn shell_action_rules() {
    check(
        &with_stages("
              - name: Build
                actions:
                  - {name: a, type: shell, inputs: [Src], commands: []}
                  - {name: b, type: shell, inputs: [Src], commands: [x], outputs: [B]}
                  - {name: c, type: shell, inputs: [Src], commands: [x], artifacts: {files: x}}
                  - {name: d, type: shell, inputs: [Src], commands: [x], outputs: [D1, D2], artifacts: {files: x}}
                  - {name: e, type: shell, inputs: [Src], commands: [x], artifacts: {files: [], s3-prefix: p}}
                  - {name: f, type: shell, inputs: [Src], commands: [x], exported_variables: [OK, 'not ok'], env: {1X: y}}
        "),
        &[
            "gantry.yaml:12:9: a `shell` action needs at least one command in `commands`",
            "gantry.yaml:13:9: a `shell` action with an output needs `artifacts` to say which files it holds",
            "gantry.yaml:14:73: `artifacts` needs an output artifact to go to; name one in `outputs`",
            "gantry.yaml:15:9: a `shell` action has at most one output artifact, found 2",
            "gantry.yaml:16:81: `files` of `artifacts` must list at least one glob",
            "gantry.yaml:16:85: unknown key `s3-prefix` in `artifacts`; expected one of: files, name, base-directory, discard-paths, exclude-paths, enable-symlinks",
            "gantry.yaml:17:87: invalid variable name `not ok`: use letters, digits and _, not starting with a digit",
            "gantry.yaml:17:104: invalid variable name `1X`: use letters, digits and _, not starting with a digit",
        ],
    );
}

#[test]
fn approval_actions() {
    let p = parse_ok(&with_stages(
        "
          - name: Approve
            actions:
              - name: release
                type: approval
                review_url: http://127.0.0.1:18080/
                comments: 'Staging runs #{Source.CommitId}'
    ",
    ));
    assert_eq!(
        p.stages[1].actions[0].kind,
        ActionKind::Approval {
            review_url: Some("http://127.0.0.1:18080/".into()),
            comments: Some("Staging runs #{Source.CommitId}".into()),
            policy: None,
        }
    );
    check(
        &with_stages(
            "
              - name: Approve
                actions:
                  - {name: a, type: approval, inputs: [Src], outputs: [X]}
        ",
        ),
        &[
            "gantry.yaml:12:44: an `approval` action takes no inputs",
            "gantry.yaml:12:60: an `approval` action has no outputs",
        ],
    );
}

#[test]
fn keys_of_other_types_are_errors() {
    check(
        &with_stages(
            "
              - name: Build
                actions:
                  - {name: a, type: build, inputs: [Src], commands: [make], review_url: x}
                  - {name: b, type: approval, env: {A: b}, image: x, buildspec: y}
                  - {name: c, type: build, inputs: [Src], colour: blue}
        ",
        ),
        &[
            "gantry.yaml:12:47: `commands` is not a key of a `build` action (only of: shell)",
            "gantry.yaml:12:65: `review_url` is not a key of a `build` action (only of: approval)",
            "gantry.yaml:13:35: `env` is not a key of an `approval` action (only of: build, test, shell)",
            "gantry.yaml:13:48: `image` is not a key of an `approval` action (only of: build, test, shell)",
            "gantry.yaml:13:58: `buildspec` is not a key of an `approval` action (only of: build, test)",
            "gantry.yaml:14:47: unknown key `colour` in a `build` action; expected one of: name, type, run_order, inputs, outputs, namespace, timeout, buildspec, image, env, agent",
        ],
    );
}

#[test]
fn agent_picks_build_agents_by_label_on_build_test_and_shell_actions() {
    let pipeline = parse_ok(&with_stages(
        "
          - name: Build
            actions:
              - {name: a, type: build, inputs: [Src], agent: {labels: [linux, gpu, linux]}}
              - {name: b, type: shell, commands: [make], agent: {}}
              - {name: c, type: shell, commands: [make]}
    ",
    ));
    let actions = &pipeline.stages[1].actions;
    let labels = |i: usize| actions[i].agent.as_ref().map(|a| a.labels.clone());
    assert_eq!(
        labels(0),
        Some(vec!["linux".to_string(), "gpu".to_string()])
    );
    assert_eq!(labels(1), Some(Vec::new()));
    assert_eq!(labels(2), None);
    check(
        &with_stages(
            "
              - name: Build
                actions:
                  - {name: a, type: approval, agent: {labels: [x]}}
                  - {name: b, type: shell, commands: [x], agent: {labels: [\"a b\"]}}
                  - {name: c, type: shell, commands: [x], agent: {label: [x]}}
        ",
        ),
        &[
            "gantry.yaml:12:35: `agent` is not a key of an `approval` action (only of: build, test, shell)",
            "gantry.yaml:13:64: agent label `a b` may hold only A-Z a-z 0-9 . _ -",
            "gantry.yaml:14:55: unknown key `label` in `agent` (did you mean `labels`?); expected one of: labels",
        ],
    );
}

#[test]
fn action_type_is_required_and_known() {
    check(
        &with_stages(
            "
              - name: Build
                actions:
                  - {name: a, inputs: [Src]}
                  - {name: b, type: lambda, commands: [x], colour: blue}
        ",
        ),
        &[
            "gantry.yaml:12:9: missing required key `type` in an action (one of: source, build, test, shell, approval, deploy, image, promote)",
            "gantry.yaml:13:25: unknown action type `lambda`; expected one of: source, build, test, shell, approval, deploy, image, promote",
            "gantry.yaml:13:48: unknown key `colour` in an action",
        ],
    );
}

#[test]
fn wrong_types_are_errors_with_locations() {
    check(
        &with_stages(
            "
              - name: Build
                actions:
                  - name: [a]
                    type: build
                    inputs: Src
                    env: [A]
                    outputs: {a: b}
                  - just a string
              - name: Test
                actions: {a: 1}
              - 5
        ",
        ),
        &[
            "gantry.yaml:12:15: an action's `name` must be a string, found a list",
            "gantry.yaml:14:17: `inputs` must be a list of strings, found a string",
            "gantry.yaml:15:14: `env` must be a mapping, found a list",
            "gantry.yaml:16:18: `outputs` must be a list of strings, found a mapping",
            "gantry.yaml:17:9: an action must be a mapping, found a string",
            "gantry.yaml:19:14: `actions` must be a list, found a mapping",
            "gantry.yaml:20:5: a stage must be a mapping, found a number",
        ],
    );
    check(
        "
        version: 1
        name: shop
        stages: {Source: []}
        ",
        &["gantry.yaml:3:9: `stages` must be a list, found a mapping"],
    );
}

#[test]
fn all_errors_are_reported_at_once() {
    check(
        "
        version: 1
        name: shop
        stages:
          - name: Source
            actions:
              - {name: checkout, type: source, outputs: [Src], colour: red}
          - name: Build
            actions:
              - {name: b, type: build, inputs: [Nope], run_order: 0}
              - {name: b, type: build, inputs: [Src], timeout: soon}
        ",
        &[
            "gantry.yaml:6:56: unknown key `colour` in a `source` action; expected one of: name, type, run_order, inputs, outputs, namespace, timeout, repository, branch",
            "gantry.yaml:9:41: input artifact `Nope` is not an output of any action",
            "gantry.yaml:9:59: `run_order` must be from 1 to 999, found 0",
            "gantry.yaml:10:16: duplicate action name `b` in stage `Build` (first at 9:16)",
            "gantry.yaml:10:56: invalid duration `soon`: expected a whole number and a unit ms, s, m, h or d (500ms, 90s, 30m, 2h, 7d), or several with the units largest first (1m30s, 1h30m)",
        ],
    );
}

#[test]
fn anchors_aliases_and_merge_keys() {
    let p = parse_ok(&with_stages(
        "
          - name: Build
            actions:
              - &build
                name: a
                type: build
                inputs: [Src]
                env: &env {A: '1'}
              - <<: *build
                name: b
                env: *env
    ",
    ));
    let names: Vec<&str> = p.stages[1]
        .actions
        .iter()
        .map(|a| a.name.as_str())
        .collect();
    assert_eq!(names, ["a", "b"]);
    assert_eq!(p.stages[1].actions[1].env["A"], "1");
}

#[test]
fn the_formats_md_example_is_valid() {
    let p = parse_ok(include_str!("fixtures/pipeline/formats-example.yaml"));
    assert_eq!(p.stages.len(), 3);
}

#[test]
fn name_types_can_only_be_built_valid() {
    use gantry_spec::pipeline::{ArtifactName, Namespace, StageName};
    assert_eq!(
        StageName::new("Build").map(|n| n.to_string()),
        Ok("Build".to_owned())
    );
    assert_eq!(
        ArtifactName::new("a.zip"),
        Err(
            "invalid artifact name `a.zip`: use 1 to 100 characters from A-Z a-z 0-9 _ -"
                .to_owned()
        )
    );
    assert!(Namespace::new("").is_err());
}

/// BASE with an `image` action that makes `Img` (holding imagedefinitions.json).
fn with_image(rest: &str) -> String {
    let image = "
          - name: Build
            actions:
              - {name: catalog, type: image, inputs: [Src], outputs: [Img], repository: shop/catalog}
    ";
    format!("{}{}", with_stages(image), {
        let rest: String = dedent(rest).lines().map(|l| format!("  {l}\n")).collect();
        rest
    })
}

#[test]
fn deploy_actions() {
    let p = parse_ok(&with_image(
        "
        - name: Staging
          actions:
            - {name: d, type: deploy, environment: staging, service: catalog, inputs: [Img]}
            - {name: e, type: deploy, environment: staging, service: catalog, inputs: [Img], file: out/defs.json, timeout: 20m}
        ",
    ));
    let actions = &p.stages[2].actions;
    assert_eq!(
        actions[0].kind,
        ActionKind::Deploy {
            environment: EnvironmentName::new("staging").expect("valid"),
            service: ServiceName::new("catalog").expect("valid"),
            file: "imagedefinitions.json".into(),
        }
    );
    assert_eq!(actions[0].kind.type_name(), "deploy");
    assert_eq!(actions[0].timeout, None);
    assert!(matches!(&actions[1].kind, ActionKind::Deploy { file, .. } if file == "out/defs.json"));
    assert_eq!(actions[1].timeout, Some(Duration::from_secs(1200)));
}

#[test]
fn deploy_action_rules() {
    check(
        &with_image(
            "
            - name: Staging
              actions:
                - {name: a, type: deploy}
                - {name: b, type: deploy, environment: Staging, service: cat_alog, inputs: [Img, Src], outputs: [X]}
                - {name: c, type: deploy, environment: staging, service: catalog, inputs: [Img], file: /etc/x.json, image: x}
                - {name: d, type: deploy, environment: staging, service: catalog, inputs: [Img], file: '#{Nope.X}'}
            ",
        ),
        &[
            "gantry.yaml:16:9: missing required key `environment` in a `deploy` action",
            "gantry.yaml:16:9: missing required key `service` in a `deploy` action",
            "gantry.yaml:16:9: a `deploy` action needs exactly one input artifact (holding imagedefinitions.json), found 0",
            "gantry.yaml:17:9: a `deploy` action needs exactly one input artifact (holding imagedefinitions.json), found 2",
            "gantry.yaml:17:46: invalid environment name `Staging`: use 1 to 63 characters from a-z 0-9 -, starting and ending with a letter or digit",
            "gantry.yaml:17:64: invalid service name `cat_alog`: use 1 to 63 characters from a-z 0-9 -, starting and ending with a letter or digit",
            "gantry.yaml:17:104: a `deploy` action has no outputs",
            "gantry.yaml:18:94: `file` must be a relative path inside the input artifact, found `/etc/x.json`",
            "gantry.yaml:18:107: `image` is not a key of a `deploy` action (only of: build, test, shell)",
            "gantry.yaml:19:94: `#{Nope.X}` names an unknown namespace `Nope` (known here: Source, variables, gantry, codepipeline)",
        ],
    );
}

#[test]
fn image_actions_have_defaults() {
    let p = parse_ok(&with_image(""));
    assert_eq!(
        p.stages[1].actions[0].kind,
        ActionKind::Image {
            context: ".".into(),
            repository: "shop/catalog".into(),
            tag: "#{gantry.ExecutionId}".into(),
            registry: None,
            base: None,
            entrypoint: None,
            cmd: None,
            image_env: BTreeMap::new(),
            workdir: None,
            port: None,
            labels: BTreeMap::new(),
            user: None,
            dest: "/app".into(),
            container: "catalog".into(),
        }
    );
    assert_eq!(p.stages[1].actions[0].kind.type_name(), "image");
}

#[test]
fn image_action_rules() {
    check(
        &with_stages(
            "
              - name: Build
                actions:
                  - {name: a, type: image}
                  - {name: b, type: image, inputs: [Src], outputs: [B1, B2], repository: Shop/Catalog, tag: .bad, registry: 'http://x', base: 'a b'}
                  - {name: c.d, type: image, inputs: [Src], outputs: [C], repository: 'shop/#{Source.CommitId}', tag: 'v-#{Source.CommitId}'}
                  - {name: e, type: image, inputs: [Src], outputs: [E], repository: r, context: ../up, workdir: rel, dest: /a/../b, port: 0, container: 'x y'}
                  - {name: f, type: image, inputs: [Src], outputs: [F], repository: r, image_env: {1A: x}, labels: {'': x}, user: '', env: {A: b}}
                  - {name: g, type: image, inputs: [Src], outputs: [G], repository: r, tag: '#{Nope.X}', cmd: ['#{Source.Missing}'], entrypoint: x}
        ",
        ),
        &[
            "gantry.yaml:12:9: missing required key `repository` in an `image` action (such as shop/catalog)",
            "gantry.yaml:12:9: an `image` action needs at least one input artifact in `inputs`",
            "gantry.yaml:12:9: an `image` action needs exactly one output artifact (it receives imagedefinitions.json and imageDetail.json), found 0",
            "gantry.yaml:13:9: an `image` action needs exactly one output artifact (it receives imagedefinitions.json and imageDetail.json), found 2",
            "gantry.yaml:13:78: invalid repository `Shop/Catalog`: lowercase letters and digits in `/`-separated parts, joined inside a part by `.`, `_`, `__` or `-` (such as shop/catalog)",
            "gantry.yaml:13:97: invalid tag `.bad`: use 1 to 128 characters from A-Z a-z 0-9 _ . -, not starting with . or -",
            "gantry.yaml:13:113: invalid registry `http://x`: write a host and an optional port, such as 127.0.0.1:7701 or registry.example.com",
            "gantry.yaml:13:131: invalid base image `a b`: write an image reference such as debian:bookworm-slim or registry/repository@sha256:…",
            "gantry.yaml:14:16: the action name `c.d` is not a valid container name for imagedefinitions.json (A-Z a-z 0-9 _ -); set `container`",
            "gantry.yaml:15:85: `context` must be a relative path inside the first input artifact, found `../up`",
            "gantry.yaml:15:101: `workdir` must be an absolute path inside the image, found `rel`",
            "gantry.yaml:15:112: `dest` must be an absolute path inside the image, found `/a/../b`",
            "gantry.yaml:15:127: `port` must be from 1 to 65535, found 0",
            "gantry.yaml:15:141: invalid container name `x y`: use 1 to 255 characters from A-Z a-z 0-9 _ -",
            "gantry.yaml:16:88: invalid variable name `1A`: use letters, digits and _, not starting with a digit",
            "gantry.yaml:16:105: a label's key cannot be empty",
            "gantry.yaml:16:119: `user` cannot be empty",
            "gantry.yaml:16:123: `env` is not a key of an `image` action (only of: build, test, shell)",
            "gantry.yaml:17:81: `#{Nope.X}` names an unknown namespace `Nope` (known here: Source, variables, gantry, codepipeline)",
            "gantry.yaml:17:134: `entrypoint` must be a list of strings, found a string",
        ],
    );
}

#[test]
fn promote_actions() {
    let p = parse_ok(&with_image(
        "
        - name: Release
          actions:
            - name: promote
              type: promote
              inputs: [Img]
              outputs: [Release]
              tag: 'release-#{Source.CommitId}'
              repositories: {catalog: release/catalog}
              registry: 127.0.0.1:7702
        ",
    ));
    let mut repositories = BTreeMap::new();
    repositories.insert("catalog".to_owned(), "release/catalog".to_owned());
    assert_eq!(
        p.stages[2].actions[0].kind,
        ActionKind::Promote {
            tag: "release-#{Source.CommitId}".into(),
            repositories,
            registry: Some("127.0.0.1:7702".into()),
            file: "imagedefinitions.json".into(),
        }
    );
    assert_eq!(p.stages[2].actions[0].kind.type_name(), "promote");
}

#[test]
fn promote_action_rules() {
    check(
        &with_image(
            "
            - name: Release
              actions:
                - {name: a, type: promote}
                - {name: b, type: promote, inputs: [Img], outputs: [B], tag: 'a:b', repositories: {'c.d': UPPER}, registry: 'x/y', file: ../x}
                - {name: c, type: promote, inputs: [Img], outputs: [C], tag: '#{variables.TAG}'}
            ",
        ),
        &[
            "gantry.yaml:16:9: missing required key `tag` in a `promote` action",
            "gantry.yaml:16:9: a `promote` action needs exactly one input artifact (holding imagedefinitions.json), found 0",
            "gantry.yaml:16:9: a `promote` action needs exactly one output artifact (it receives the new imagedefinitions.json), found 0",
            "gantry.yaml:17:68: invalid tag `a:b`: use 1 to 128 characters from A-Z a-z 0-9 _ . -, not starting with . or -",
            "gantry.yaml:17:90: invalid container name `c.d`: use 1 to 255 characters from A-Z a-z 0-9 _ -",
            "gantry.yaml:17:97: invalid repository `UPPER`: lowercase letters and digits in `/`-separated parts, joined inside a part by `.`, `_`, `__` or `-` (such as shop/catalog)",
            "gantry.yaml:17:115: invalid registry `x/y`: write a host and an optional port, such as 127.0.0.1:7701 or registry.example.com",
            "gantry.yaml:17:128: `file` must be a relative path inside the input artifact, found `../x`",
            "gantry.yaml:18:68: `#{variables.TAG}` names pipeline variable `TAG`, but `variables` declares none",
        ],
    );
}

/// `auto_approve_after`: a bake time after which the approval approves by
/// itself; it must come before the approval's timeout.
#[test]
fn an_approval_may_approve_by_itself_before_its_timeout() {
    let p = parse_ok(&with_stages(
        "
          - name: Approve
            actions:
              - {name: bake, type: approval, policy: {auto_approve_after: 30m}}
              - {name: now, type: approval, timeout: 10m, policy: {auto_approve_after: 0s}}
    ",
    ));
    let after = |a: usize| match &p.stages[1].actions[a].kind {
        ActionKind::Approval { policy, .. } => policy.as_ref().unwrap().auto_approve_after,
        _ => panic!("not an approval"),
    };
    assert_eq!(after(0), Some(std::time::Duration::from_secs(1800)));
    assert_eq!(after(1), Some(std::time::Duration::ZERO));
    check(
        &with_stages(
            "
              - name: Approve
                actions:
                  - {name: a, type: approval, policy: {auto_approve_after: 7d}}
                  - {name: b, type: approval, timeout: 1h, policy: {auto_approve_after: 2h}}
                  - {name: c, type: approval, policy: {auto_approve_after: soon}}
        ",
        ),
        &[
            "gantry.yaml:12:43: `policy.auto_approve_after` (7d) must be less than the approval's timeout (7d), or it never approves",
            "gantry.yaml:13:56: `policy.auto_approve_after` (2h) must be less than the approval's timeout (1h), or it never approves",
            "gantry.yaml:14:64: invalid duration `soon`: expected a whole number and a unit ms, s, m, h or d (500ms, 90s, 30m, 2h, 7d), or several with the units largest first (1m30s, 1h30m)",
        ],
    );
}

#[test]
fn approval_policies_name_roles_users_and_counts() {
    let p = parse_ok(&with_stages(
        "
          - name: Approve
            actions:
              - name: release
                type: approval
                policy:
                  roles: [approver]
                  users: [alice]
                  required: 2
                  require_comment: yes
              - {name: plain, type: approval}
    ",
    ));
    let ActionKind::Approval { policy, .. } = &p.stages[1].actions[0].kind else {
        panic!("not an approval")
    };
    let policy = policy.as_ref().expect("a policy");
    assert_eq!(policy.roles, ["approver"]);
    assert_eq!(policy.users, ["alice"]);
    assert_eq!(policy.required, 2);
    assert!(policy.require_comment);
    assert!(
        !policy.allow_self_approval,
        "self-approval is off by default"
    );
    let ActionKind::Approval { policy, .. } = &p.stages[1].actions[1].kind else {
        panic!("not an approval")
    };
    assert!(policy.is_none());
    check(
        &with_stages(
            "
              - name: Approve
                actions:
                  - name: a
                    type: approval
                    policy: {roles: [root], required: 0, self: true}
                  - name: b
                    type: approval
                    policy: {users: [alice], required: 2, allow_self_approval: maybe}
        ",
        ),
        &[
            "gantry.yaml:14:26: unknown role `root` (roles: viewer, operator, approver, secrets, admin)",
            "gantry.yaml:14:43: `policy.required` must be from 1 to 20, found 0",
            "gantry.yaml:14:46: unknown key `self` in an approval's `policy`; expected one of: roles, users, required, allow_self_approval, require_comment, auto_approve_after",
            "gantry.yaml:17:44: `policy.required` is 2 but only 1 users may decide",
            "gantry.yaml:17:68: `policy.allow_self_approval` must be yes, no, true or false, found `maybe`",
        ],
    );
}
