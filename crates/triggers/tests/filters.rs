//! Which pushes and pull requests start a pipeline: `git` triggers written
//! as in a pipeline file (parsed by gantry-spec), each checked against a
//! table of refs and changed files, and against the webhook fixtures.

mod common;

use gantry_spec::pipeline::parse_pipeline;
use gantry_spec::trigger::{PullRequestEvent, TriggerKind};
use gantry_triggers::{GitRef, GitTriggerMatcher, PullRequestMatcher, Verdict};

/// The `git` trigger whose keys (besides `source` and `webhook`) are
/// `keys`, a YAML mapping's lines indented by six spaces.
fn trigger(keys: &str) -> GitTriggerMatcher {
    let text = format!(
        "version: 1
name: shop
stages:
  - name: Source
    actions:
      - name: app
        type: source
        branch: main
        outputs: [App]
triggers:
  - git:
      source: app
      webhook: {{provider: github, secret: /hooks/shop}}
{keys}"
    );
    let pipeline = match parse_pipeline("gantry.yaml", &text) {
        Ok(pipeline) => pipeline,
        Err(errors) => panic!("{errors:?}\n{text}"),
    };
    match &pipeline.triggers[0].kind {
        TriggerKind::Git(git) => GitTriggerMatcher::new(git),
        other => panic!("not a git trigger: {other:?}"),
    }
}

/// The filter of the issue's contract.
const CONTRACT: &str = r#"      push:
        branches: {includes: ["main", "release/*"], excludes: ["wip/*"]}
        tags: {includes: ["v*"]}
        file_paths: {includes: ["services/catalog/**"], excludes: ["**/*.md"]}
"#;

fn show(verdict: Verdict) -> String {
    match verdict {
        Verdict::Start => "start".to_owned(),
        Verdict::NeedChangedFiles => "need changed files".to_owned(),
        Verdict::Skip(skip) => format!("skip: {skip}"),
    }
}

/// (ref, deleted, changed files or None when unknown, expected)
type PushCase<'a> = (&'a str, bool, Option<&'a [&'a str]>, &'a str);

fn check_pushes(matcher: &GitTriggerMatcher, cases: &[PushCase<'_>]) {
    let push = matcher.push().expect("a push filter");
    for &(git_ref, deleted, files, expected) in cases {
        let files: Option<Vec<String>> = files.map(|f| f.iter().map(|s| (*s).to_owned()).collect());
        let verdict = push.check(&GitRef::parse(git_ref), deleted, files.as_deref());
        assert_eq!(show(verdict), expected, "{git_ref} {files:?}");
    }
}

#[test]
fn the_contract_filter_decides_branches_tags_and_files() {
    let catalog: &[&str] = &["services/catalog/src/main.rs"];
    check_pushes(
        &trigger(CONTRACT),
        &[
            ("refs/heads/main", false, Some(catalog), "start"),
            ("refs/heads/release/1.4", false, Some(catalog), "start"),
            // One matching file is enough.
            (
                "refs/heads/main",
                false,
                Some(&["docs/a.md", "services/catalog/Cargo.toml"]),
                "start",
            ),
            // Excluded files do not count, even under an included directory.
            (
                "refs/heads/main",
                false,
                Some(&["services/catalog/README.md", "services/orders/src/main.rs"]),
                "skip: no file changed on branch `main` matches the file path filter",
            ),
            (
                "refs/heads/main",
                false,
                Some(&[]),
                "skip: no file changed on branch `main` matches the file path filter",
            ),
            ("refs/heads/main", false, None, "need changed files"),
            // `*` stays within one part of the name.
            (
                "refs/heads/release/1.4/hotfix",
                false,
                Some(catalog),
                "skip: branch `release/1.4/hotfix` does not match the branch filter",
            ),
            (
                "refs/heads/Main",
                false,
                Some(catalog),
                "skip: branch `Main` does not match the branch filter",
            ),
            // Tags carry no changed files: the tag filter alone decides.
            ("refs/tags/v1.4.0", false, None, "start"),
            (
                "refs/tags/1.4.0",
                false,
                None,
                "skip: tag `1.4.0` does not match the tag filter",
            ),
            (
                "refs/heads/main",
                true,
                None,
                "skip: refs/heads/main was deleted",
            ),
            (
                "refs/notes/commits",
                false,
                None,
                "skip: refs/notes/commits is neither a branch nor a tag",
            ),
        ],
    );
}

#[test]
fn excludes_win_over_includes() {
    let matcher = trigger(
        r#"      push:
        branches: {includes: ["**"], excludes: ["wip/*", "main"]}
"#,
    );
    check_pushes(
        &matcher,
        &[
            ("refs/heads/feature/x", false, None, "start"),
            (
                "refs/heads/wip/x",
                false,
                None,
                "skip: branch `wip/x` does not match the branch filter",
            ),
            (
                "refs/heads/main",
                false,
                None,
                "skip: branch `main` does not match the branch filter",
            ),
        ],
    );
    let only_excludes = trigger("      push:\n        branches: {excludes: [\"wip/**\"]}\n");
    check_pushes(
        &only_excludes,
        &[
            ("refs/heads/anything/at/all", false, None, "start"),
            (
                "refs/heads/wip/a/b",
                false,
                None,
                "skip: branch `wip/a/b` does not match the branch filter",
            ),
        ],
    );
}

#[test]
fn a_filter_without_branches_or_tags_skips_them() {
    check_pushes(
        &trigger("      push:\n        tags: {includes: [\"v*\"]}\n"),
        &[
            (
                "refs/heads/main",
                false,
                None,
                "skip: branch `main` does not match the branch filter",
            ),
            ("refs/tags/v2", false, None, "start"),
        ],
    );
    check_pushes(
        &trigger("      push:\n        branches: {includes: [main]}\n"),
        &[
            // Without file_paths, the changed files do not matter.
            ("refs/heads/main", false, None, "start"),
            (
                "refs/tags/v2",
                false,
                None,
                "skip: tag `v2` does not match the tag filter",
            ),
        ],
    );
}

#[test]
fn without_filters_pushes_to_the_sources_branch_start() {
    check_pushes(
        &trigger(""),
        &[
            ("refs/heads/main", false, None, "start"),
            (
                "refs/heads/main2",
                false,
                None,
                "skip: branch `main2` does not match the branch filter",
            ),
        ],
    );
}

#[test]
fn pull_requests_match_on_event_and_base_branch() {
    let filter = trigger(
        "      pull_request:\n        events: [opened, closed]\n        branches: {includes: [main]}\n",
    );
    let matcher = |event, base: &str| {
        let mut pr = common::pull_request("github-pull-request-opened.http");
        pr.action = event;
        pr.base_branch = base.to_owned();
        show(filter.check_pull_request(&pr))
    };
    assert_eq!(matcher(PullRequestEvent::Opened, "main"), "start");
    assert_eq!(matcher(PullRequestEvent::Closed, "main"), "start");
    assert_eq!(
        matcher(PullRequestEvent::Updated, "main"),
        "skip: pull-request event `updated` is not watched"
    );
    assert_eq!(
        matcher(PullRequestEvent::Opened, "release/1"),
        "skip: the pull request's base branch `release/1` does not match the branch filter"
    );
    assert!(filter.push().is_none());
}

/// The contract trigger and a pull-request trigger against every delivery
/// of the fixtures that could start something.
#[test]
fn triggers_decide_the_fixture_deliveries() {
    let contract = trigger(CONTRACT);
    let pull_requests = trigger("      pull_request: {branches: {includes: [main]}}\n");
    let cases: &[(&str, &str, &str)] = &[
        (
            "github-push.http",
            "start",
            "skip: the trigger watches pull requests, not pushes",
        ),
        (
            "github-push-tag.http",
            "start",
            "skip: the trigger watches pull requests, not pushes",
        ),
        // A forced push's commit list is not its diff.
        (
            "github-push-forced.http",
            "need changed files",
            "skip: the trigger watches pull requests, not pushes",
        ),
        (
            "github-push-deleted.http",
            "skip: refs/heads/wip/prices was deleted",
            "skip: the trigger watches pull requests, not pushes",
        ),
        (
            "github-ping.http",
            "skip: the event does not start pipelines",
            "skip: the event does not start pipelines",
        ),
        (
            "github-pull-request-opened.http",
            "skip: the trigger watches pushes, not pull requests",
            "start",
        ),
        (
            "github-pull-request-synchronize.http",
            "skip: the trigger watches pushes, not pull requests",
            "start",
        ),
        (
            "github-pull-request-closed.http",
            "skip: the trigger watches pushes, not pull requests",
            "skip: pull-request event `closed` is not watched",
        ),
        (
            "github-pull-request-labeled.http",
            "skip: the event does not start pipelines",
            "skip: the event does not start pipelines",
        ),
        (
            "gitlab-push.http",
            "skip: no file changed on branch `main` matches the file path filter",
            "skip: the trigger watches pull requests, not pushes",
        ),
        (
            "gitlab-push-many-commits.http",
            "need changed files",
            "skip: the trigger watches pull requests, not pushes",
        ),
        (
            "gitlab-tag-push.http",
            "start",
            "skip: the trigger watches pull requests, not pushes",
        ),
        (
            "gitlab-merge-request-open.http",
            "skip: the trigger watches pushes, not pull requests",
            "start",
        ),
        (
            "gitlab-merge-request-update.http",
            "skip: the trigger watches pushes, not pull requests",
            "start",
        ),
        (
            "gitlab-merge-request-retitled.http",
            "skip: the event does not start pipelines",
            "skip: the event does not start pipelines",
        ),
        (
            "gitea-push.http",
            "skip: no file changed on branch `main` matches the file path filter",
            "skip: the trigger watches pull requests, not pushes",
        ),
        (
            "gitea-push-new-branch.http",
            "skip: branch `feature/cache` does not match the branch filter",
            "skip: the trigger watches pull requests, not pushes",
        ),
        (
            "gitea-pull-request-synchronized.http",
            "skip: the trigger watches pushes, not pull requests",
            "start",
        ),
        (
            "generic-push.http",
            "start",
            "skip: the trigger watches pull requests, not pushes",
        ),
    ];
    for (fixture, push_verdict, pull_request_verdict) in cases {
        let delivery = common::delivery(fixture);
        assert_eq!(
            show(contract.check_event(&delivery.event)),
            *push_verdict,
            "{fixture}: contract"
        );
        assert_eq!(
            show(pull_requests.check_event(&delivery.event)),
            *pull_request_verdict,
            "{fixture}: pull requests"
        );
    }
}

#[test]
fn changed_files_worked_out_later_decide_as_listed_ones_do() {
    let contract = trigger(CONTRACT);
    let delivery = common::delivery("github-push-forced.http");
    let gantry_triggers::WebhookEvent::Push(push) = &delivery.event else {
        panic!("a push");
    };
    assert_eq!(show(contract.check_push(push)), "need changed files");
    let files = vec!["services/catalog/src/main.rs".to_owned()];
    assert_eq!(show(contract.check_push_with_files(push, &files)), "start");
    let files = vec!["services/catalog/CHANGELOG.md".to_owned()];
    assert_eq!(
        show(contract.check_push_with_files(push, &files)),
        "skip: no file changed on branch `main` matches the file path filter"
    );
    // A poller asks the same matcher which refs to watch.
    let push_filter = contract.push().expect("push filter");
    assert!(push_filter.ref_matches(&GitRef::parse("refs/heads/release/2")));
    assert!(!push_filter.ref_matches(&GitRef::parse("refs/heads/wip/x")));
    assert!(push_filter.needs_changed_files(&GitRef::parse("refs/heads/main")));
    assert!(!push_filter.needs_changed_files(&GitRef::parse("refs/tags/v1")));
}

#[test]
fn a_pull_request_matcher_works_alone() {
    let filter = gantry_spec::trigger::PullRequestFilter {
        events: vec![PullRequestEvent::Updated],
        branches: None,
    };
    let matcher = PullRequestMatcher::new(&filter);
    assert_eq!(
        show(matcher.check(PullRequestEvent::Updated, "any/branch")),
        "start"
    );
    assert_eq!(
        show(matcher.check(PullRequestEvent::Opened, "main")),
        "skip: pull-request event `opened` is not watched"
    );
}
