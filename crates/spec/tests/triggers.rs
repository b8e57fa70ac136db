//! gantry.yaml's `triggers` and `notifications`: one test per rule, each a
//! small file and the exact errors `gantry validate` would print for it.

mod common;

use std::time::Duration;

use common::{dedent, lines};
use gantry_spec::notification::{NotificationEvent, NotificationTarget};
use gantry_spec::pipeline::{Pipeline, parse_pipeline};
use gantry_spec::trigger::{
    GitTrigger, GlobFilter, PullRequestEvent, TriggerKind, UpstreamStatus, WebhookProvider,
};

/// A pipeline with two source actions (`app` on `main`, `config` without a
/// branch) and a build; tests append top-level keys to it.
const BASE: &str = "
    version: 1
    name: shop
    stages:
      - name: Source
        actions:
          - name: app
            type: source
            branch: main
            outputs: [App]
          - name: config
            type: source
            outputs: [Config]
      - name: Build
        actions:
          - name: build
            type: shell
            commands: [make]
            inputs: [App]
";

fn with_base(rest: &str) -> String {
    format!("{}{}", dedent(BASE), dedent(rest))
}

/// Parses BASE + `rest` and compares the errors, in order, with `expected`
/// (empty = valid).
fn check(rest: &str, expected: &[&str]) {
    let text = with_base(rest);
    let actual = match parse_pipeline("gantry.yaml", &text) {
        Ok(_) => Vec::new(),
        Err(errors) => lines(&errors),
    };
    assert_eq!(actual, expected, "\n--- file ---\n{text}");
}

fn parse_ok(rest: &str) -> Pipeline {
    let text = with_base(rest);
    match parse_pipeline("gantry.yaml", &text) {
        Ok(pipeline) => pipeline,
        Err(errors) => panic!("expected a valid file, got:\n{}", lines(&errors).join("\n")),
    }
}

fn only_git(pipeline: &Pipeline) -> &GitTrigger {
    match pipeline.triggers.as_slice() {
        [trigger] => match &trigger.kind {
            TriggerKind::Git(git) => git,
            other => panic!("expected a git trigger, got {other:?}"),
        },
        other => panic!("expected one trigger, got {other:?}"),
    }
}

fn patterns(filter: &Option<GlobFilter>) -> (Vec<&str>, Vec<&str>) {
    let filter = filter.as_ref().expect("a filter");
    (
        filter.includes.iter().map(|p| p.as_str()).collect(),
        filter.excludes.iter().map(|p| p.as_str()).collect(),
    )
}

#[test]
fn a_pipeline_without_triggers_has_none_and_no_notifications() {
    let pipeline = parse_ok("");
    assert!(pipeline.triggers.is_empty());
    assert!(pipeline.notifications.is_empty());
    // An empty list, or the key with nothing under it, is the same.
    assert!(
        parse_ok("triggers: []\nnotifications:\n")
            .triggers
            .is_empty()
    );
}

#[test]
fn the_contract_example_parses_as_written() {
    let pipeline = parse_ok(
        r#"
        triggers:
          - git:
              source: app
              push:
                branches: {includes: ["main", "release/*"], excludes: ["wip/*"]}
                tags: {includes: ["v*"]}
                file_paths: {includes: ["services/catalog/**"], excludes: ["**/*.md"]}
              poll: 30s
              webhook: {provider: github, secret: /gantry/webhooks/shop}
          - schedule: {cron: "0 3 * * *", timezone: "Asia/Tokyo"}
        "#,
    );
    let [git, schedule] = pipeline.triggers.as_slice() else {
        panic!("two triggers expected: {:?}", pipeline.triggers);
    };
    let TriggerKind::Git(git) = &git.kind else {
        panic!("not git: {git:?}");
    };
    assert_eq!(git.source.as_str(), "app");
    let push = git.push.as_ref().expect("push");
    assert_eq!(
        patterns(&push.branches),
        (vec!["main", "release/*"], vec!["wip/*"])
    );
    assert_eq!(patterns(&push.tags), (vec!["v*"], vec![]));
    assert_eq!(
        patterns(&push.file_paths),
        (vec!["services/catalog/**"], vec!["**/*.md"])
    );
    assert_eq!(git.poll, Some(Duration::from_secs(30)));
    let webhook = git.webhook.as_ref().expect("webhook");
    assert_eq!(webhook.provider, WebhookProvider::Github);
    assert_eq!(webhook.secret_parameter, "/gantry/webhooks/shop");
    let TriggerKind::Schedule(schedule) = &schedule.kind else {
        panic!("not a schedule: {schedule:?}");
    };
    assert_eq!(schedule.cron.as_str(), "0 3 * * *");
    assert_eq!(schedule.timezone.as_str(), "Asia/Tokyo");
    assert_eq!(schedule.source, None);
}

#[test]
fn a_git_trigger_without_filters_follows_its_sources_branch() {
    let pipeline = parse_ok("triggers:\n  - git: {source: app, poll: 1m}\n");
    let git = only_git(&pipeline);
    let push = git.push.as_ref().expect("a default push filter");
    assert_eq!(patterns(&push.branches), (vec!["main"], vec![]));
    assert_eq!(push.tags, None);
    assert_eq!(git.pull_request, None);

    check(
        "triggers:\n  - git: {source: config, poll: 1m}\n",
        &[
            "gantry.yaml:20:10: without `push` or `pull_request`, a `git` trigger starts on pushes to its source action's `branch`, and `config` names none: add `branch:` to it, or `push.branches` here",
        ],
    );
}

#[test]
fn a_default_branch_with_glob_characters_matches_only_itself() {
    let text = with_base("triggers:\n  - git: {source: app, poll: 1m}\n")
        .replace("branch: main", "branch: \"feature/[x]\"");
    let pipeline = parse_pipeline("gantry.yaml", &text).expect("valid");
    let git = only_git(&pipeline);
    let filter = git.push.as_ref().and_then(|p| p.branches.as_ref());
    let glob = filter.expect("branches").includes[0]
        .glob()
        .compile_matcher();
    assert!(glob.is_match("feature/[x]"));
    assert!(!glob.is_match("feature/x"));
}

#[test]
fn source_must_be_a_source_action_of_the_first_stage() {
    check(
        "triggers:\n  - git: {source: build, poll: 1m}\n  - schedule: {cron: '@daily', source: nope}\n",
        &[
            "gantry.yaml:20:19: `git.source` must name a source action of the first stage, and `build` is not one (source actions: app, config)",
            "gantry.yaml:21:40: `schedule.source` must name a source action of the first stage, and `nope` is not one (source actions: app, config)",
        ],
    );
}

#[test]
fn a_broken_first_stage_does_not_add_guesses_about_sources() {
    let text = dedent(
        "
        version: 1
        name: shop
        stages:
          - name: Source
            actions:
              - name: app
                type: sorce
                outputs: [App]
        triggers:
          - git: {source: app, poll: 1m}
        ",
    );
    let errors = lines(&parse_pipeline("gantry.yaml", &text).expect_err("invalid"));
    assert_eq!(
        errors,
        [
            "gantry.yaml:7:15: unknown action type `sorce` (did you mean `source`?); expected one of: source, build, test, shell, approval, deploy, image, promote"
        ]
    );
}

#[test]
fn something_must_tell_gantry_about_commits() {
    check(
        "triggers:\n  - git: {source: app}\n",
        &[
            "gantry.yaml:20:10: a `git` trigger needs `poll`, `webhook` or both: otherwise nothing tells gantry about new commits",
        ],
    );
}

#[test]
fn poll_is_a_duration_from_one_second_to_a_day() {
    check("triggers:\n  - git: {source: app, poll: 1s}\n", &[]);
    check("triggers:\n  - git: {source: app, poll: 1d}\n", &[]);
    check(
        "triggers:\n  - git: {source: app, poll: 2d}\n",
        &["gantry.yaml:20:30: `git.poll` must be from 1s to 1d, found 2d"],
    );
    check(
        "triggers:\n  - git: {source: app, poll: often}\n",
        &[
            "gantry.yaml:20:30: invalid duration `often`: expected a whole number and a unit ms, s, m, h or d (500ms, 90s, 30m, 2h, 7d), or several with the units largest first (1m30s, 1h30m)",
        ],
    );
}

#[test]
fn push_filters_need_branches_or_tags_and_file_paths_need_branches() {
    check(
        "triggers:\n  - git: {source: app, poll: 1m, push: {file_paths: {includes: [src/**]}}}\n",
        &[
            "gantry.yaml:20:40: `push` needs `branches`, `tags` or both: they say which pushes count",
        ],
    );
    check(
        "triggers:\n  - git: {source: app, poll: 1m, push: {tags: {includes: [v*]}, file_paths: {includes: [src/**]}}}\n",
        &[
            "gantry.yaml:20:65: `file_paths` filters branch pushes (a tag carries no changed files): add `branches`",
        ],
    );
    check(
        "triggers:\n  - git: {source: app, poll: 1m, push: {tags: {includes: [v*]}}}\n",
        &[],
    );
}

#[test]
fn filters_are_not_empty_and_excludes_alone_include_everything() {
    check(
        "triggers:\n  - git: {source: app, poll: 1m, push: {branches: {}}}\n",
        &["gantry.yaml:20:51: `push.branches` needs `includes`, `excludes` or both"],
    );
    check(
        "triggers:\n  - git: {source: app, poll: 1m, push: {branches: {includes: []}}}\n",
        &[
            "gantry.yaml:20:62: `push.branches.includes` lists no pattern, so nothing would match: add patterns, or leave `includes` out to include everything",
        ],
    );
    let pipeline = parse_ok(
        "triggers:\n  - git: {source: app, poll: 1m, push: {branches: {excludes: [wip/*]}}}\n",
    );
    let push = only_git(&pipeline).push.as_ref().expect("push");
    assert_eq!(patterns(&push.branches), (vec![], vec!["wip/*"]));
}

#[test]
fn patterns_are_globs_of_names_and_relative_paths() {
    check(
        r#"
        triggers:
          - git:
              source: app
              poll: 1m
              push:
                branches: {includes: ["refs/heads/main", "a[", "release/{1,2}.*"]}
                tags: {includes: ["refs/tags/v*"], excludes: [""]}
                file_paths: {includes: ["/src/**", "./docs/*", "src/**"]}
        "#,
        &[
            "gantry.yaml:24:31: branch patterns match the branch's name: write `main`, not `refs/heads/main`",
            "gantry.yaml:24:50: invalid glob `a[`: unclosed character class; missing ']'",
            "gantry.yaml:25:27: tag patterns match the tag's name: write `v*`, not `refs/tags/v*`",
            "gantry.yaml:25:55: a pattern cannot be empty",
            "gantry.yaml:26:33: file path patterns are relative to the repository's root: write `src/**`",
            "gantry.yaml:26:44: file path patterns are relative to the repository's root: write `docs/*`",
        ],
    );
}

#[test]
fn pull_requests_need_a_forge_webhook_and_known_events() {
    let pipeline = parse_ok(
        "triggers:\n  - git: {source: app, pull_request: {}, webhook: {provider: gitlab, secret: /s}}\n",
    );
    let pr = only_git(&pipeline)
        .pull_request
        .as_ref()
        .expect("pull_request");
    assert_eq!(
        pr.events,
        [PullRequestEvent::Opened, PullRequestEvent::Updated]
    );
    assert_eq!(pr.branches, None);
    assert_eq!(only_git(&pipeline).push, None);

    check(
        "triggers:\n  - git: {source: app, poll: 1m, pull_request: {events: [closed]}}\n",
        &[
            "gantry.yaml:20:48: pull-request events arrive only by webhook: add `webhook` to this trigger",
        ],
    );
    check(
        "triggers:\n  - git: {source: app, pull_request: {}, webhook: {provider: generic, secret: /s}}\n",
        &[
            "gantry.yaml:20:38: the generic webhook carries pushes only: use the forge's own provider (github, gitlab, gitea) for `pull_request`",
        ],
    );
    check(
        "triggers:\n  - git: {source: app, pull_request: {events: [opened, merged, opened], colour: 1}, webhook: {provider: github, secret: /s}}\n",
        &[
            "gantry.yaml:20:56: unknown pull-request event `merged`; expected one of: opened, updated, closed",
            "gantry.yaml:20:64: event `opened` is listed twice",
            "gantry.yaml:20:73: unknown key `colour` in `pull_request`; expected one of: events, branches",
        ],
    );
}

#[test]
fn webhooks_name_a_provider_and_a_parameter() {
    for provider in WebhookProvider::ALL {
        let pipeline = parse_ok(&format!(
            "triggers:\n  - git: {{source: app, webhook: {{provider: {}, secret: /hooks/x}}}}\n",
            provider.as_str()
        ));
        let webhook = only_git(&pipeline).webhook.as_ref().expect("webhook");
        assert_eq!(webhook.provider, provider);
    }
    check(
        "triggers:\n  - git: {source: app, webhook: {provider: bitbucket}}\n",
        &[
            "gantry.yaml:20:33: missing required key `secret` in `webhook` (the parameter holding the shared secret)",
            "gantry.yaml:20:44: unknown webhook provider `bitbucket`; expected one of: github, gitlab, gitea (also Forgejo), generic",
        ],
    );
    check(
        "triggers:\n  - git: {source: app, webhook: {provider: github, secret: hooks/x}}\n",
        &[
            "gantry.yaml:20:60: `webhook.secret` names a parameter (the value stays in the parameter store), and `hooks/x` is not a valid parameter name: a name with a hierarchy must start with `/`",
        ],
    );
}

#[test]
fn schedules_take_a_five_field_cron_and_an_iana_zone() {
    let pipeline = parse_ok(
        "triggers:\n  - schedule: {cron: '*/15 9-17 * * MON-FRI', timezone: europe/berlin, source: config}\n",
    );
    let TriggerKind::Schedule(schedule) = &pipeline.triggers[0].kind else {
        panic!("not a schedule");
    };
    assert_eq!(schedule.timezone.as_str(), "Europe/Berlin");
    assert_eq!(schedule.source.as_ref().map(|s| s.as_str()), Some("config"));
    let utc = parse_ok("triggers:\n  - schedule: {cron: '@hourly'}\n");
    let TriggerKind::Schedule(schedule) = &utc.triggers[0].kind else {
        panic!("not a schedule");
    };
    assert_eq!(schedule.timezone.as_str(), "UTC");

    check(
        "triggers:\n  - schedule: {cron: '0 3 * * * *', timezone: '+09:00'}\n",
        &[
            "gantry.yaml:20:22: cron expression `0 3 * * * *` has 6 fields; it needs five: minute hour day-of-month month day-of-week",
            "gantry.yaml:20:47: unknown time zone `+09:00`: use an IANA name such as `UTC`, `Europe/Berlin` or `Asia/Tokyo`",
        ],
    );
    check(
        "triggers:\n  - schedule: {cron: '0 0 30 2 *'}\n  - schedule: {cron: '0 25 * * *'}\n",
        &[
            "gantry.yaml:20:22: cron expression `0 0 30 2 *` never fires (no such day in any year)",
            "gantry.yaml:21:22: invalid cron expression `0 25 * * *`: Component error: Number out of bounds.",
        ],
    );
}

#[test]
fn pipeline_triggers_name_another_pipeline_and_final_statuses() {
    let pipeline = parse_ok(
        "triggers:\n  - pipeline: {name: images}\n  - pipeline: {name: tests, status: Failed}\n",
    );
    let statuses: Vec<_> = pipeline
        .triggers
        .iter()
        .map(|t| match &t.kind {
            TriggerKind::Pipeline(p) => (p.name.as_str().to_owned(), p.statuses.clone()),
            other => panic!("not a pipeline trigger: {other:?}"),
        })
        .collect();
    assert_eq!(
        statuses,
        [
            ("images".to_owned(), vec![UpstreamStatus::Succeeded]),
            ("tests".to_owned(), vec![UpstreamStatus::Failed]),
        ]
    );
    check(
        "triggers:\n  - pipeline: {name: shop, status: [Running]}\n",
        &[
            "gantry.yaml:20:22: pipeline `shop` cannot trigger itself: every execution would start another",
            "gantry.yaml:20:37: unknown status `Running`; expected one of: Succeeded, Failed, Stopped, Superseded (an execution's final statuses)",
        ],
    );
}

#[test]
fn a_trigger_is_exactly_one_kind() {
    check(
        "triggers:\n  - git: {source: app, poll: 1m}\n    schedule: {cron: '@daily'}\n  - {}\n  - manual: {}\n  - git\n",
        &[
            "gantry.yaml:21:5: a trigger has one kind, and this one is already `git`; write `schedule` as another item of `triggers`",
            "gantry.yaml:22:5: a trigger needs one of: git, schedule, pipeline",
            "gantry.yaml:23:5: unknown key `manual` in a trigger; expected one of: git, schedule, pipeline",
            "gantry.yaml:24:5: a trigger must be a mapping, found a string",
        ],
    );
    check(
        "triggers: {git: {}}\n",
        &["gantry.yaml:19:11: `triggers` must be a list, found a mapping"],
    );
}

#[test]
fn triggers_make_a_file_a_pipeline_file() {
    let errors = lines(
        &gantry_spec::parse_document("gantry.yaml", "version: 1\ntriggers: []\nservices: {}\n")
            .expect_err("a pipeline key without name and stages"),
    );
    assert_eq!(
        errors,
        [
            "gantry.yaml:1:1: missing required key `name` (the pipeline's name)",
            "gantry.yaml:1:1: missing required key `stages` (the list of stages)",
        ]
    );
}

#[test]
fn notifications_send_named_events_to_one_target() {
    let pipeline = parse_ok(
        r#"
        notifications:
          - on: [execution.failed, deployment.rolled_back]
            slack: {url: /shop/slack}
          - on: approval.waiting
            webhook: {url: "http://127.0.0.1:9000/hook", secret: /shop/hook}
          - on: [execution.succeeded]
            command: {argv: [notify, "--to", "@shop"]}
        "#,
    );
    let summary: Vec<_> = pipeline
        .notifications
        .iter()
        .map(|n| (n.on.clone(), n.target.clone()))
        .collect();
    assert_eq!(
        summary,
        [
            (
                vec![
                    NotificationEvent::ExecutionFailed,
                    NotificationEvent::DeploymentRolledBack
                ],
                NotificationTarget::Slack {
                    url_parameter: "/shop/slack".to_owned()
                }
            ),
            (
                vec![NotificationEvent::ApprovalWaiting],
                NotificationTarget::Webhook {
                    url: "http://127.0.0.1:9000/hook".to_owned(),
                    secret_parameter: "/shop/hook".to_owned()
                }
            ),
            (
                vec![NotificationEvent::ExecutionSucceeded],
                NotificationTarget::Command {
                    argv: vec!["notify".to_owned(), "--to".to_owned(), "@shop".to_owned()]
                }
            ),
        ]
    );
    for event in NotificationEvent::ALL {
        assert_eq!(NotificationEvent::from_name(event.as_str()), Some(event));
    }
}

#[test]
fn notification_problems_are_reported_at_their_place() {
    check(
        r#"
        notifications:
          - on: [execution.done]
            slack: {url: "https://hooks.slack.com/services/T/B/X"}
          - on: execution.failed
            webhook: {url: "127.0.0.1:9000", secret: /s}
          - on: execution.failed
            command: {argv: [""]}
          - on: execution.failed
          - slack: {url: /s}
            colour: red
        "#,
        &[
            "gantry.yaml:20:10: unknown event `execution.done`; expected one of: execution.started, execution.succeeded, execution.failed, execution.superseded, approval.waiting, approval.decided, deployment.failed, deployment.rolled_back",
            "gantry.yaml:21:18: `slack.url` names the parameter that holds the value, not the value itself: store it with `gantry param put NAME --type SecureString` and write NAME here",
            "gantry.yaml:23:20: `webhook.url` must be an http:// or https:// URL, found `127.0.0.1:9000`",
            "gantry.yaml:25:21: `command.argv` needs a program: its first item, not empty",
            "gantry.yaml:26:5: a notification needs one of: webhook, slack, command",
            "gantry.yaml:27:5: missing required key `on` in a notification (the events to send)",
            "gantry.yaml:28:5: unknown key `colour` in a notification; expected one of: on, webhook, slack, command",
        ],
    );
}
