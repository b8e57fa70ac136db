//! Conformance cases: each directory under `tests/conformance/` is one
//! CodeBuild behaviour, as files:
//!
//! - `buildspec.yml`: parsed with `gantry_spec::buildspec::parse_buildspec`;
//! - `src/` (optional): copied to a fresh source directory;
//! - `request.json` (optional): `env`, `secrets` (objects), `secondary_sources`
//!   (name → directory relative to the case's temporary directory, created
//!   empty), `build_id`, `build_number`, `initiator`, `resolved_source_version`,
//!   `timeout_secs`, `read_outside_source` (a bool), and `container`:
//!   `false` for a case that cannot run in
//!   the test image (it has no bash), or an object for a container-only
//!   case: `privileged`, `docker_socket`, `network` set the
//!   [`ContainerSpec`];
//! - `expected.json`: `start_error` (optional) is the whole error of a
//!   build that must not start (nothing may be logged then); `warnings`
//!   (optional) are the parser's warnings, one
//!   substring each, in order (`[]`: none); `outcome` is matched against
//!   `outcome_json` (objects:
//!   every expected key must match, other keys are ignored; arrays: same
//!   length, items matched the same way), `error_contains` is a substring
//!   of the error, `log_contains` are substrings found on log lines *in
//!   that order*, `log_lacks` substrings found on no line, `out_files` maps
//!   paths in the output directory to their exact content.
//!
//! Every case runs on the host, and again in a container of the test image
//! (`in_container::*`) when `GANTRY_TEST_DOCKER=1`.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use gantry_build::{BuildRequest, ContainerSpec, outcome_json};
use serde_json::Value;

fn cases_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/conformance")
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// `expected` is contained in `actual` (see the module docs); failures
/// are described with their JSON path.
fn matches(expected: &Value, actual: &Value, path: &str, problems: &mut Vec<String>) {
    match (expected, actual) {
        (Value::Object(e), Value::Object(a)) => {
            for (k, v) in e {
                match a.get(k) {
                    Some(av) => matches(v, av, &format!("{path}.{k}"), problems),
                    None => problems.push(format!("{path}.{k}: missing")),
                }
            }
        }
        (Value::Array(e), Value::Array(a)) => {
            if e.len() != a.len() {
                problems.push(format!("{path}: expected {expected}, got {actual}"));
                return;
            }
            for (i, (ev, av)) in e.iter().zip(a).enumerate() {
                matches(ev, av, &format!("{path}[{i}]"), problems);
            }
        }
        _ if expected == actual => {}
        _ => problems.push(format!("{path}: expected {expected}, got {actual}")),
    }
}

fn strings(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn pairs(v: Option<&Value>) -> Vec<(String, String)> {
    v.and_then(Value::as_object)
        .map(|o| {
            o.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                .collect()
        })
        .unwrap_or_default()
}

/// Where a case runs.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Host,
    Container,
}

async fn check(case: &str, mode: Mode) {
    let dir = cases_dir().join(case);
    let request: Option<Value> = std::fs::read_to_string(dir.join("request.json"))
        .ok()
        .map(|text| serde_json::from_str(&text).unwrap());
    let container = request.as_ref().and_then(|r| r.get("container"));
    let container = match (mode, container) {
        (Mode::Host, Some(Value::Object(_))) => {
            eprintln!("{case}: container-only case");
            return;
        }
        (Mode::Host, _) => None,
        (Mode::Container, Some(Value::Bool(false))) => {
            eprintln!("{case}: host-only case");
            return;
        }
        (Mode::Container, _) if !support::docker_tests_enabled() => {
            eprintln!("{case}: skipped, set GANTRY_TEST_DOCKER=1 to run it in a container");
            return;
        }
        (Mode::Container, options) => {
            let mut spec = ContainerSpec::new(support::test_image());
            if let Some(o) = options {
                if let Some(v) = o.get("privileged").and_then(Value::as_bool) {
                    spec.privileged = v;
                }
                if let Some(v) = o.get("docker_socket").and_then(Value::as_bool) {
                    spec.docker_socket = v;
                }
                if let Some(v) = o.get("network").and_then(Value::as_str) {
                    spec.network = Some(v.to_owned());
                }
            }
            Some(spec)
        }
    };
    let text = std::fs::read_to_string(dir.join("buildspec.yml")).unwrap();
    let (buildspec, warnings) = gantry_spec::buildspec::parse_buildspec("buildspec.yml", &text)
        .unwrap_or_else(|errors| panic!("{case}: buildspec does not parse: {errors:?}"));
    let expected: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json")).unwrap()).unwrap();
    if let Some(want) = expected.get("warnings") {
        let want = strings(Some(want));
        let got: Vec<String> = warnings.iter().map(ToString::to_string).collect();
        let same = want.len() == got.len() && want.iter().zip(&got).all(|(w, g)| g.contains(w));
        assert!(same, "{case}: warnings {got:#?}, expected {want:#?}");
    }

    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    if dir.join("src").is_dir() {
        copy_tree(&dir.join("src"), &src);
    }
    let out = tmp.path().join("out");
    let mut req = BuildRequest::new(buildspec, src, out.clone());
    req.container = container;
    if let Some(r) = request {
        req.env = pairs(r.get("env"));
        req.secrets = pairs(r.get("secrets"));
        for (name, rel) in pairs(r.get("secondary_sources")) {
            let path = tmp.path().join(rel);
            std::fs::create_dir_all(&path).unwrap();
            req.secondary_sources.push((name, path));
        }
        if let Some(v) = r.get("build_id").and_then(Value::as_str) {
            req.build_id = v.to_owned();
        }
        if let Some(v) = r.get("build_number").and_then(Value::as_u64) {
            req.build_number = v;
        }
        if let Some(v) = r.get("initiator").and_then(Value::as_str) {
            req.initiator = v.to_owned();
        }
        if let Some(v) = r.get("resolved_source_version").and_then(Value::as_str) {
            req.resolved_source_version = Some(v.to_owned());
        }
        if let Some(v) = r.get("timeout_secs").and_then(Value::as_u64) {
            req.timeout = Duration::from_secs(v);
        }
        if let Some(v) = r.get("read_outside_source").and_then(Value::as_bool) {
            req.read_outside_source = v;
        }
    }

    if let Some(want) = expected.get("start_error").and_then(Value::as_str) {
        // A build that must not start: `run` refuses it before anything runs.
        let lines = support::Lines::default();
        let err = gantry_build::run(req, &lines)
            .await
            .err()
            .unwrap_or_else(|| panic!("{case}: the build started"));
        assert_eq!(err.to_string(), want, "{case}");
        assert!(lines.all().is_empty(), "{case}: {:?}", lines.all());
        return;
    }
    let (outcome, lines) = support::build(req).await;
    let json = outcome_json(&outcome, &out);
    let log = lines.all();
    let mut problems = Vec::new();
    if let Some(e) = expected.get("outcome") {
        matches(e, &json, "outcome", &mut problems);
    }
    if let Some(want) = expected.get("error_contains").and_then(Value::as_str) {
        let got = outcome.error.clone().unwrap_or_default();
        if !got.contains(want) {
            problems.push(format!("error: expected to contain {want:?}, got {got:?}"));
        }
    }
    let mut from = 0;
    for want in strings(expected.get("log_contains")) {
        match log[from..].iter().position(|l| l.contains(&want)) {
            Some(i) => from += i + 1,
            None => problems.push(format!("log: no line containing {want:?} (in order)")),
        }
    }
    for unwanted in strings(expected.get("log_lacks")) {
        if let Some(l) = log.iter().find(|l| l.contains(&unwanted)) {
            problems.push(format!("log: line {l:?} contains {unwanted:?}"));
        }
    }
    let files: BTreeMap<String, String> = pairs(expected.get("out_files")).into_iter().collect();
    for (rel, content) in files {
        match std::fs::read_to_string(out.join(&rel)) {
            Ok(got) if got == content => {}
            Ok(got) => problems.push(format!("out/{rel}: expected {content:?}, got {got:?}")),
            Err(e) => problems.push(format!("out/{rel}: {e}")),
        }
    }
    let where_ = if mode == Mode::Host {
        "host"
    } else {
        "container"
    };
    assert!(
        problems.is_empty(),
        "case {case} ({where_}):\n  {}\noutcome: {json:#}\nlog:\n{}",
        problems.join("\n  "),
        log.join("\n")
    );
}

macro_rules! cases {
    ($($name:ident => $dir:literal,)*) => {
        $(
            #[tokio::test]
            async fn $name() {
                check($dir, Mode::Host).await;
            }
        )*

        /// The same cases in a container (`GANTRY_TEST_DOCKER=1`).
        mod in_container {
            use super::{Mode, check};
            $(
                #[tokio::test]
                async fn $name() {
                    check($dir, Mode::Container).await;
                }
            )*
        }

        #[test]
        fn every_case_directory_has_a_test() {
            let listed = [$($dir),*];
            for entry in std::fs::read_dir(cases_dir()).unwrap() {
                let name = entry.unwrap().file_name().to_string_lossy().into_owned();
                assert!(listed.contains(&name.as_str()), "case {name} has no test in cases!");
            }
        }
    };
}

cases! {
    cd_and_variables_carry_across_commands_and_phases => "cd-and-variables-carry",
    failing_command_skips_rest_of_phase_and_finally_runs => "failing-command-skips-rest",
    install_failure_ends_the_build => "install-failure-ends-build",
    pre_build_failure_ends_the_build => "pre-build-failure-ends-build",
    build_failure_runs_post_build_with_succeeding_0 => "build-failure-runs-post-build",
    multi_line_command_status_is_its_last_statement => "multi-line-command-status",
    on_failure_continue_moves_to_the_next_phase => "on-failure-continue",
    exported_variables_are_read_after_post_build_even_when_failed => "exported-variables",
    version_0_1_runs_each_command_in_a_fresh_shell => "version-0.1-fresh-shell",
    shell_exit_fails_the_command_and_later_commands_get_a_fresh_shell => "shell-exit-fresh-shell",
    syntax_error_fails_the_command_but_keeps_the_shell => "syntax-error-keeps-shell",
    commands_cannot_read_the_shell_input => "commands-cannot-read-shell-input",
    output_and_runner_lines_are_logged_in_order => "log-order",
    environment_precedence_and_builtins => "env-precedence-and-builtins",
    secrets_are_masked_in_log_error_and_exports => "masking",
    env_shell_bash_is_honoured => "shell-bash",
    artifacts_all_files_keep_their_paths => "artifacts-all-files",
    artifacts_base_directory_is_stripped => "artifacts-base-directory",
    artifacts_discard_paths_flattens => "artifacts-discard-paths",
    artifacts_exclude_paths => "artifacts-exclude-paths",
    artifacts_dir_star_is_not_recursive => "artifacts-dir-star",
    artifacts_secondary_go_to_their_identifier => "artifacts-secondary",
    artifacts_glob_matching_nothing_fails_naming_the_pattern => "artifacts-no-match",
    artifacts_dotdot_pattern_is_rejected => "artifacts-dotdot",
    artifacts_are_uploaded_when_build_failed => "artifacts-after-failed-build",
    junit_reports_are_summarised_and_masked => "reports-junit",
    container_has_the_docker_socket => "container-docker-socket",
    container_without_the_docker_socket => "container-no-docker-socket",
    container_runs_in_the_image_environment => "container-image-environment",
    version_0_1_names_environment_variables_and_plaintext => "version-0.1-environment-variables",
    artifacts_type_is_accepted_with_a_warning => "artifacts-type-is-ignored",
    on_failure_abort_written_ends_the_build_without_post_build => "on-failure-abort-ends-the-build",
    on_failure_retry_count_reruns_the_phase_until_it_succeeds => "on-failure-retry-until-success",
    on_failure_retry_spent_follows_the_default_transitions => "on-failure-retry-spent-follows-transitions",
    on_failure_retry_regex_retries_only_matching_failures => "on-failure-retry-regex",
    artifact_paths_expand_variables_from_the_final_environment => "artifacts-variables-expanded",
    artifacts_base_directory_pattern_merges_matching_directories => "artifacts-base-directory-pattern",
    absolute_paths_inside_the_source_are_relative_paths => "artifacts-absolute-paths-in-source",
    absolute_paths_outside_the_source_are_read_by_a_local_run => "artifacts-absolute-outside-local-run",
    absolute_paths_outside_the_source_are_refused_in_a_pipeline => "artifacts-absolute-outside-refused-in-pipeline",
    a_link_out_of_an_outside_directory_is_refused => "artifacts-outside-symlink-refused",
    missing_parameter_values_are_all_named_before_anything_runs => "parameters-missing",
}
