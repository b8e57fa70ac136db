//! buildspec.yml: the 0.2 grammar, CodeBuild's leniencies, and the exact
//! errors and warnings for what gantry refuses or ignores.

mod common;

use common::{dedent, lines};
use gantry_spec::buildspec::{
    ArtifactsSpec, Buildspec, BuildspecVersion, OnFailure, PhaseName, is_buildspec, parse_buildspec,
};

/// Parses `yaml` (dedented) and compares errors, or warnings when it is
/// valid, with `expected`.
fn check(yaml: &str, expected: &[&str]) {
    let text = dedent(yaml);
    let actual = match parse_buildspec("buildspec.yml", &text) {
        Ok((_, warnings)) => lines(&warnings)
            .into_iter()
            .map(|w| format!("warning: {w}"))
            .collect(),
        Err(errors) => lines(&errors),
    };
    assert_eq!(actual, expected, "\n--- file ---\n{text}");
}

fn parse_ok(yaml: &str) -> Buildspec {
    let text = dedent(yaml);
    match parse_buildspec("buildspec.yml", &text) {
        Ok((buildspec, _)) => buildspec,
        Err(errors) => panic!("expected a valid file, got:\n{}", lines(&errors).join("\n")),
    }
}

#[test]
fn minimal_buildspec_and_defaults() {
    let b = parse_ok(
        "
        version: 0.2
        phases:
          build:
            commands: [make]
        ",
    );
    assert_eq!(b.version, BuildspecVersion::V02);
    assert_eq!(b.shell, "sh");
    assert_eq!(b.run_as, None);
    assert_eq!(b.phases.len(), 1);
    assert_eq!(b.phases[0].name, PhaseName::Build);
    assert_eq!(b.phases[0].commands, ["make"]);
    assert_eq!(b.phases[0].on_failure, OnFailure::Unspecified);
    assert_eq!(b.artifacts, None);
    assert!(b.reports.is_empty() && b.cache_paths.is_empty() && b.secondary_artifacts.is_empty());
}

#[test]
fn version_as_number_or_string_and_only_01_or_02() {
    for text in ["0.2", "\"0.2\"", "'0.2'"] {
        assert_eq!(
            parse_ok(&format!("version: {text}\n")).version,
            BuildspecVersion::V02
        );
    }
    assert_eq!(parse_ok("version: 0.1\n").version, BuildspecVersion::V01);
    check(
        "version: 0.3\n",
        &["buildspec.yml:1:10: unsupported buildspec version `0.3`: only 0.1 and 0.2 exist"],
    );
    check(
        "version: [0.2]\n",
        &["buildspec.yml:1:10: unsupported buildspec version a list: only 0.1 and 0.2 exist"],
    );
    check(
        "phases: {}\n",
        &["buildspec.yml:1:1: missing required key `version` (the buildspec version, 0.2)"],
    );
}

#[test]
fn empty_file_and_non_mapping() {
    check(
        "",
        &["buildspec.yml:1:1: a buildspec must be a mapping, found nothing (null)"],
    );
    check(
        "just text\n",
        &["buildspec.yml:1:1: a buildspec must be a mapping, found a string"],
    );
}

#[test]
fn invalid_yaml_is_one_error() {
    check(
        "
        version: 0.2
        phases:
          build:
            commands:
              - \"echo unclosed
        ",
        &["buildspec.yml:5:9: unclosed quote"],
    );
}

#[test]
fn env_values_are_text_as_written() {
    let b = parse_ok(
        "
        version: 0.2
        env:
          variables:
            PORT: 8080
            RATIO: 5.10
            MODE: 0755
            ON: yes
            FLAG: true
            EMPTY:
            QUOTED: \"x: y\"
            N: no
        ",
    );
    let vars: Vec<(&str, &str)> = b
        .variables
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(
        vars,
        [
            ("PORT", "8080"),
            ("RATIO", "5.10"),
            ("MODE", "0755"),
            ("ON", "yes"),
            ("FLAG", "true"),
            ("EMPTY", ""),
            ("QUOTED", "x: y"),
            ("N", "no"),
        ]
    );
}

#[test]
fn env_keys() {
    let b = parse_ok(
        "
        version: 0.2
        env:
          shell: bash
          parameter-store: {DB_PASSWORD: /shop/db/password}
          secrets-manager: {TOKEN: 'prod/token:api-key::'}
          exported-variables: [IMAGE_TAG, STATUS]
        ",
    );
    assert_eq!(b.shell, "bash");
    assert_eq!(
        b.parameter_store,
        [("DB_PASSWORD".to_owned(), "/shop/db/password".to_owned())]
    );
    assert_eq!(
        b.secrets_manager,
        [("TOKEN".to_owned(), "prod/token:api-key::".to_owned())]
    );
    assert_eq!(b.exported_variables, ["IMAGE_TAG", "STATUS"]);
}

#[test]
fn version_0_1_names_of_env_and_variables_are_read() {
    let b = parse_ok(
        "
        version: 0.1
        environment_variables:
          plaintext:
            JAVA_HOME: /usr/lib/jvm/java-8-openjdk-amd64
            STAGE: prod
        ",
    );
    assert_eq!(b.version, BuildspecVersion::V01);
    assert_eq!(
        b.variables,
        [
            (
                "JAVA_HOME".to_owned(),
                "/usr/lib/jvm/java-8-openjdk-amd64".to_owned()
            ),
            ("STAGE".to_owned(), "prod".to_owned()),
        ]
    );
    // Silent in 0.1, where they are the names; a note in 0.2.
    check(
        "
        version: 0.1
        environment_variables:
          plaintext: {A: b}
        ",
        &[],
    );
    check(
        "
        version: 0.2
        environment_variables:
          plaintext: {A: b}
        ",
        &[
            "warning: buildspec.yml:2:1: `environment_variables` is the version 0.1 name of `env`; read as `env`",
            "warning: buildspec.yml:3:3: `plaintext` is the version 0.1 name of `variables`; read as `variables`",
        ],
    );
    check(
        "
        version: 0.1
        env:
          variables: {A: b}
          plaintext: {A: c}
        environment_variables: {}
        ",
        &[
            "buildspec.yml:4:3: `plaintext` is the 0.1 name of `variables`; write only one of them",
            "buildspec.yml:5:1: `environment_variables` is the 0.1 name of `env`; write only one of them",
        ],
    );
}

#[test]
fn booleans_are_yes_no_true_false() {
    for (text, value) in [
        ("yes", true),
        ("no", false),
        ("true", true),
        ("false", false),
        ("Yes", true),
    ] {
        let b = parse_ok(&format!(
            "version: 0.2\nartifacts:\n  files: x\n  discard-paths: {text}\n"
        ));
        assert_eq!(b.artifacts.map(|a| a.discard_paths), Some(value), "{text}");
    }
    check(
        "
        version: 0.2
        artifacts:
          files: x
          discard-paths: 1
          enable-symlinks: maybe
        ",
        &[
            "buildspec.yml:4:18: `discard-paths` of `artifacts` must be yes, no, true or false, found `1`",
            "buildspec.yml:5:20: `enable-symlinks` of `artifacts` must be yes, no, true or false, found `maybe`",
        ],
    );
}

#[test]
fn phases_run_in_execution_order_whatever_the_file_order() {
    let b = parse_ok(
        "
        version: 0.2
        phases:
          post_build: {commands: [c]}
          build: {commands: [b]}
          install: {commands: [i]}
          pre_build: {commands: [p]}
        ",
    );
    let order: Vec<PhaseName> = b.phases.iter().map(|p| p.name).collect();
    assert_eq!(order, PhaseName::ALL);
}

#[test]
fn phase_keys() {
    let b = parse_ok(
        "
        version: 0.2
        run-as: root
        phases:
          install:
          pre_build:
            run-as: builder
            on-failure: CONTINUE
            commands:
              - |
                echo one
                echo two
              - echo three
            finally:
              - echo done
          build:
            on-failure: continue
            commands:
        ",
    );
    assert_eq!(b.run_as.as_deref(), Some("root"));
    let [install, pre_build, build] = b.phases.as_slice() else {
        panic!("three phases expected: {:?}", b.phases);
    };
    assert!(install.commands.is_empty());
    assert_eq!(pre_build.run_as.as_deref(), Some("builder"));
    assert_eq!(pre_build.on_failure, OnFailure::Continue);
    assert_eq!(pre_build.commands, ["echo one\necho two\n", "echo three"]);
    assert_eq!(pre_build.finally, ["echo done"]);
    assert_eq!(build.on_failure, OnFailure::Continue);
    assert!(build.commands.is_empty());
}

#[test]
fn phase_errors() {
    check(
        "
        version: 0.2
        phases:
          build:
            commands: 5
            finally: echo done
            on-failure: SOMETIMES
            timeout: 5
          deploy:
            commands: [x]
          post_build: [echo]
        ",
        &[
            "buildspec.yml:4:15: `phases.build.commands` must be a list of strings, found a number",
            "buildspec.yml:5:14: `phases.build.finally` must be a list of strings, found a string",
            "buildspec.yml:6:17: `phases.build.on-failure` must be ABORT, CONTINUE, RETRY, RETRY-<count>, RETRY-<regex> or RETRY-<count>-<regex>, found `SOMETIMES`",
            "buildspec.yml:7:5: unknown key `timeout` in phase `build`; expected one of: run-as, on-failure, runtime-versions, commands, finally",
            "buildspec.yml:8:3: unknown phase `deploy`; expected one of: install, pre_build, build, post_build",
            "buildspec.yml:10:15: phase `post_build` must be a mapping, found a list",
        ],
    );
}

/// The reference's values: ABORT, CONTINUE, RETRY, RETRY-count,
/// RETRY-regex, RETRY-count-regex; not writing it is a value of its own.
#[test]
fn on_failure_values() {
    let on_failure = |value: &str| {
        let b = parse_ok(&format!(
            "version: 0.2\nphases:\n  build:\n    on-failure: '{value}'\n"
        ));
        b.phases[0].on_failure.clone()
    };
    let retry = |retries, pattern: Option<&str>| OnFailure::Retry {
        retries,
        pattern: pattern.map(str::to_owned),
    };
    assert_eq!(
        parse_ok("version: 0.2\nphases:\n  build: {}\n").phases[0].on_failure,
        OnFailure::Unspecified
    );
    assert_eq!(on_failure("ABORT"), OnFailure::Abort);
    assert_eq!(on_failure("abort"), OnFailure::Abort);
    assert_eq!(on_failure("CONTINUE"), OnFailure::Continue);
    assert_eq!(on_failure("RETRY"), retry(3, None));
    assert_eq!(on_failure("RETRY-4"), retry(4, None));
    assert_eq!(on_failure("RETRY-0"), retry(0, None));
    assert_eq!(on_failure("RETRY-100"), retry(100, None));
    assert_eq!(
        on_failure("RETRY-.*Error: Unable to connect to database.*"),
        retry(3, Some(".*Error: Unable to connect to database.*"))
    );
    assert_eq!(
        on_failure("RETRY-3-.*connection timed out.*"),
        retry(3, Some(".*connection timed out.*"))
    );
    assert_eq!(on_failure("retry-8-^Error.*"), retry(8, Some("^Error.*")));
    // Digits not followed by `-` are part of the expression.
    assert_eq!(on_failure("RETRY-5xx"), retry(3, Some("5xx")));
    check(
        "
        version: 0.2
        phases:
          install: {on-failure: RETRY-101}
          pre_build: {on-failure: 'RETRY-(unclosed'}
          build: {on-failure: RETRY-}
          post_build: {on-failure: RETRY-2-}
        ",
        &[
            "buildspec.yml:3:25: `phases.install.on-failure` `RETRY-101`: the retry count must be between 0 and 100, found 101",
            "buildspec.yml:4:27: `phases.pre_build.on-failure` `RETRY-(unclosed`: `(unclosed` is not a valid regular expression: unclosed group",
            "buildspec.yml:5:23: `phases.build.on-failure` `RETRY-`: a count or a regular expression must follow `RETRY-`",
            "buildspec.yml:6:28: `phases.post_build.on-failure` `RETRY-2-`: a regular expression must follow `RETRY-2-`",
        ],
    );
}

#[test]
fn commands_may_hold_numbers_and_booleans_as_written() {
    let b = parse_ok(
        "
        version: 0.2
        phases:
          build:
            commands: [true, 1.50, 'echo \"#{not.a.template}\"']
        ",
    );
    assert_eq!(
        b.phases[0].commands,
        ["true", "1.50", "echo \"#{not.a.template}\""]
    );
}

#[test]
fn aws_only_keys_are_warnings() {
    check(
        "
        version: 0.2
        env:
          git-credential-helper: yes
        proxy:
          upload-artifacts: yes
        batch:
          fast-fail: false
          build-list: [{identifier: a}]
        phases:
          install:
            runtime-versions: {nodejs: 18, python: 3.12}
        artifacts:
          files: '**/*'
          s3-prefix: builds
          secondary-artifacts:
            Extra: {files: x, s3-prefix: extra}
        cache:
          paths: [x]
          key: k
          fallback-keys: [a]
          action: restore
        ",
        &[
            "warning: buildspec.yml:3:3: `env.git-credential-helper` is ignored by gantry (AWS only)",
            "warning: buildspec.yml:4:1: `proxy` is ignored by gantry (AWS only)",
            "warning: buildspec.yml:6:1: `batch` is ignored by gantry (AWS only)",
            "warning: buildspec.yml:11:5: `phases.install.runtime-versions` is ignored by gantry (AWS only)",
            "warning: buildspec.yml:14:3: `artifacts.s3-prefix` is ignored by gantry (AWS only)",
            "warning: buildspec.yml:16:23: `Extra.s3-prefix` is ignored by gantry (AWS only)",
            "warning: buildspec.yml:19:3: `cache.key` is ignored by gantry (AWS only)",
            "warning: buildspec.yml:20:3: `cache.fallback-keys` is ignored by gantry (AWS only)",
            "warning: buildspec.yml:21:3: `cache.action` is ignored by gantry (AWS only)",
        ],
    );
}

#[test]
fn single_strings_stand_for_lists_of_globs() {
    let b = parse_ok(
        "
        version: 0.2
        reports:
          unit:
            files: junit.xml
        artifacts:
          files: '**/*'
          exclude-paths: '*.tmp'
        cache:
          paths: /root/.cargo/**/*
        ",
    );
    assert_eq!(b.reports[0].files, ["junit.xml"]);
    let artifacts = b.artifacts.expect("artifacts");
    assert_eq!(artifacts.files, ["**/*"]);
    assert_eq!(artifacts.exclude_paths, ["*.tmp"]);
    assert_eq!(b.cache_paths, ["/root/.cargo/**/*"]);
}

#[test]
fn reports() {
    let b = parse_ok(
        "
        version: 0.2
        reports:
          arn:aws:codebuild:eu-west-1:123:report-group/unit:
            files: ['**/*.xml']
            base-directory: target/reports
            discard-paths: yes
          coverage:
            files: [cobertura.xml]
            file-format: CoberturaXml
        ",
    );
    assert_eq!(b.reports.len(), 2);
    assert_eq!(
        b.reports[0].name,
        "arn:aws:codebuild:eu-west-1:123:report-group/unit"
    );
    assert_eq!(b.reports[0].file_format, "JUNITXML");
    assert_eq!(
        b.reports[0].base_directory.as_deref(),
        Some("target/reports")
    );
    assert!(b.reports[0].discard_paths);
    assert_eq!(b.reports[1].file_format, "COBERTURAXML");
    check(
        "
        version: 0.2
        reports:
          unit:
            file-format: XML
            paths: [x]
          other: [x]
        ",
        &[
            "buildspec.yml:4:5: missing required key `files` in report `unit`",
            "buildspec.yml:4:18: unknown file-format `XML` in report `unit`; expected one of: JUNITXML, CUCUMBERJSON, NUNITXML, NUNIT3XML, TESTNGXML, VISUALSTUDIOTRX, CLOVERXML, COBERTURAXML, JACOCOXML, SIMPLECOV",
            "buildspec.yml:5:5: unknown key `paths` in report `unit`; expected one of: files, base-directory, discard-paths, file-format",
            "buildspec.yml:6:10: report `other` must be a mapping, found a list",
        ],
    );
}

#[test]
fn artifacts() {
    let b = parse_ok(
        "
        version: 0.2
        artifacts:
          files:
            - imagedefinitions.json
            - 'dist/**/*'
          name: build-$(date +%Y-%m-%d)
          base-directory: out
          discard-paths: no
          exclude-paths: ['**/*.map']
          enable-symlinks: yes
          secondary-artifacts:
            CatalogBuild:
              files: [catalog.json]
            BffBuild:
              files: bff.json
              base-directory: bff
        ",
    );
    assert_eq!(
        b.artifacts,
        Some(ArtifactsSpec {
            files: vec!["imagedefinitions.json".into(), "dist/**/*".into()],
            name: Some("build-$(date +%Y-%m-%d)".into()),
            base_directory: Some("out".into()),
            discard_paths: false,
            exclude_paths: vec!["**/*.map".into()],
            enable_symlinks: true,
        })
    );
    let ids: Vec<&str> = b
        .secondary_artifacts
        .iter()
        .map(|(id, _)| id.as_str())
        .collect();
    assert_eq!(ids, ["CatalogBuild", "BffBuild"]);
    assert_eq!(
        b.secondary_artifacts[1].1.base_directory.as_deref(),
        Some("bff")
    );
}

#[test]
fn artifacts_type_from_codestar_templates_is_a_warning() {
    check(
        "
        version: 0.2
        artifacts:
          type: zip
          files: [template-export.yml]
          secondary-artifacts:
            Site: {type: zip, files: site}
        ",
        &[
            "warning: buildspec.yml:3:3: `artifacts.type` is ignored by gantry (not part of buildspec 0.2; an artifact is a directory of files)",
            "warning: buildspec.yml:6:12: `Site.type` is ignored by gantry (not part of buildspec 0.2; an artifact is a directory of files)",
        ],
    );
}

#[test]
fn secondary_artifacts_alone_leave_no_primary_artifact() {
    let b = parse_ok(
        "
        version: 0.2
        artifacts:
          secondary-artifacts:
            A: {files: a}
        ",
    );
    assert_eq!(b.artifacts, None);
    assert_eq!(b.secondary_artifacts.len(), 1);
}

#[test]
fn artifact_errors() {
    check(
        "
        version: 0.2
        artifacts:
          name: x
          files: []
          packaging: zip
          secondary-artifacts:
            A: {base-directory: a}
            B: files
        ",
        &[
            "buildspec.yml:4:10: `files` of `artifacts` must list at least one glob",
            "buildspec.yml:5:3: unknown key `packaging` in `artifacts`; expected one of: files, name, base-directory, discard-paths, exclude-paths, enable-symlinks, s3-prefix, secondary-artifacts, type",
            "buildspec.yml:7:8: missing required key `files` in secondary artifact `A`",
            "buildspec.yml:8:8: secondary artifact `B` must be a mapping, found a string",
        ],
    );
}

#[test]
fn unknown_keys_and_wrong_types_everywhere_all_at_once() {
    check(
        "
        version: 0.2
        environment: {}
        env:
          variables: [A]
          parameter-store: {X: [1]}
          exported-variables: A
          colour: red
        cache:
          paths: {a: 1}
          dirs: [x]
        ",
        &[
            "buildspec.yml:2:1: unknown key `environment` in a buildspec; expected one of: version, run-as, env, environment_variables, proxy, batch, phases, reports, artifacts, cache",
            "buildspec.yml:4:14: `env.variables` must be a mapping, found a list",
            "buildspec.yml:5:24: the value of `X` in `env.parameter-store` must be a string, found a list",
            "buildspec.yml:6:23: `env.exported-variables` must be a list of strings, found a string",
            "buildspec.yml:7:3: unknown key `colour` in `env`; expected one of: shell, variables, plaintext, parameter-store, secrets-manager, exported-variables, git-credential-helper",
            "buildspec.yml:9:10: `cache.paths` must be a list of strings or one string, found a mapping",
            "buildspec.yml:10:3: unknown key `dirs` in `cache`; expected one of: paths, key, fallback-keys, action",
        ],
    );
}

#[test]
fn anchors_aliases_and_comments_in_any_language() {
    let b = parse_ok(
        "
        # Construire l'image — イメージをビルドする ✓
        version: 0.2
        env:
          variables: &vars
            REGION: eu-west-1   # région
        phases:
          pre_build:
            commands: &login
              - echo login   # connexion
          build:
            commands:
              - echo build # 构建
          post_build:
            commands: *login
        reports:
          unit: &report
            files: x
          coverage:
            <<: *report
            file-format: COBERTURAXML
        ",
    );
    assert_eq!(b.reports[1].files, ["x"]);
    assert_eq!(b.phases[2].commands, ["echo login"]);
    assert_eq!(b.variables, [("REGION".to_owned(), "eu-west-1".to_owned())]);
}

/// `gantry validate` tells buildspecs from gantry files by their content.
#[test]
fn buildspecs_are_told_from_gantry_files() {
    for text in [
        "version: 0.2\nphases: {}\n",
        "version: '0.1'\n",
        "version: 0.3\nphases: {build: {commands: [x]}}\n",
        "phases: {build: {commands: [x]}}\n",
    ] {
        assert_eq!(is_buildspec(text), Some(true), "{text}");
    }
    for text in [
        "version: 1\nname: p\nstages: []\n",
        "version: 1\nenvironments: {}\n",
        "stages: []\nphases: {}\n",
        "[1, 2]\n",
        "",
    ] {
        assert_eq!(is_buildspec(text), Some(false), "{text}");
    }
    assert_eq!(is_buildspec("version: [\n"), None);
}
