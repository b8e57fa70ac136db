//! GitLab's `Push Hook`, `Tag Push Hook` and `Merge Request Hook` events, as
//! "Webhook events" in GitLab's documentation describes them. GitLab lists
//! at most 20 commits (`total_commits_count` says how many there were) and
//! sends no ping: a hook's "Test" button sends a real push.

use gantry_spec::trigger::PullRequestEvent;
use serde::Deserialize;

use super::{
    CommitFiles, PullRequest, Push, Repository, WebhookEvent, changed_files, commit,
    commit_or_zero, json,
};
use crate::git::GitRef;

pub(super) fn parse(event: &str, body: &[u8]) -> Result<WebhookEvent, String> {
    match event {
        "Push Hook" | "Tag Push Hook" => push(json(body)?),
        "Merge Request Hook" => merge_request(json(body)?),
        other => Ok(WebhookEvent::Ignored {
            reason: format!("GitLab event `{other}` does not start pipelines"),
        }),
    }
}

#[derive(Deserialize)]
struct PushBody {
    #[serde(rename = "ref")]
    git_ref: String,
    before: String,
    after: String,
    user_username: Option<String>,
    project: Project,
    #[serde(default)]
    commits: Vec<Commit>,
    total_commits_count: Option<usize>,
}

#[derive(Deserialize)]
struct Commit {
    id: String,
    url: Option<String>,
    #[serde(flatten)]
    files: CommitFiles,
}

#[derive(Deserialize)]
struct Project {
    path_with_namespace: Option<String>,
    web_url: Option<String>,
    git_http_url: Option<String>,
    git_ssh_url: Option<String>,
}

impl Project {
    fn into_repository(self) -> Repository {
        Repository {
            full_name: self.path_with_namespace,
            web_url: self.web_url,
            clone_urls: [self.git_http_url, self.git_ssh_url]
                .into_iter()
                .flatten()
                .collect(),
        }
    }
}

fn push(body: PushBody) -> Result<WebhookEvent, String> {
    let before = commit_or_zero(&body.before, "before")?;
    let after = commit_or_zero(&body.after, "after")?;
    let listed_all = body
        .total_commits_count
        .is_none_or(|total| total <= body.commits.len());
    let complete = before.is_some() && after.is_some() && listed_all;
    let changed = complete.then(|| {
        changed_files(
            body.commits
                .iter()
                .map(|c| &c.files)
                .flat_map(CommitFiles::lists),
        )
    });
    let commit_url = after
        .as_ref()
        .and_then(|after| {
            body.commits
                .iter()
                .find(|c| c.id.eq_ignore_ascii_case(after.as_str()))
        })
        .and_then(|c| c.url.clone());
    Ok(WebhookEvent::Push(Push {
        repository: body.project.into_repository(),
        git_ref: GitRef::parse(&body.git_ref),
        before,
        after,
        changed_files: changed,
        pusher: body.user_username,
        forced: false,
        commit_url,
    }))
}

#[derive(Deserialize)]
struct MergeRequestBody {
    project: Project,
    object_attributes: Attributes,
}

#[derive(Deserialize)]
struct Attributes {
    iid: u64,
    title: String,
    url: Option<String>,
    /// Absent on events that GitLab sends without a user action (rare).
    action: Option<String>,
    /// Present on an `update` that pushed new commits.
    oldrev: Option<String>,
    source_branch: String,
    target_branch: String,
    last_commit: LastCommit,
    source: Option<Project>,
}

#[derive(Deserialize)]
struct LastCommit {
    id: String,
}

fn merge_request(body: MergeRequestBody) -> Result<WebhookEvent, String> {
    let attributes = body.object_attributes;
    let forge_action = attributes.action.clone().unwrap_or_default();
    let action = match forge_action.as_str() {
        "open" | "reopen" => PullRequestEvent::Opened,
        // An update without `oldrev` changed the title, labels or the like,
        // not the code.
        "update" if attributes.oldrev.is_some() => PullRequestEvent::Updated,
        "close" | "merge" => PullRequestEvent::Closed,
        other => {
            return Ok(WebhookEvent::Ignored {
                reason: format!(
                    "merge-request action `{other}` is not opened, updated (with new commits) or closed"
                ),
            });
        }
    };
    Ok(WebhookEvent::PullRequest(PullRequest {
        repository: body.project.into_repository(),
        number: attributes.iid,
        action,
        merged: forge_action == "merge",
        forge_action,
        title: attributes.title,
        url: attributes.url,
        head_branch: attributes.source_branch,
        head_commit: commit(
            &attributes.last_commit.id,
            "object_attributes.last_commit.id",
        )?,
        head_clone_url: attributes.source.and_then(|s| s.git_http_url),
        base_branch: attributes.target_branch,
        base_commit: None,
    }))
}
