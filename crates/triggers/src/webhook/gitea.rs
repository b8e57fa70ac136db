//! Gitea's (and Forgejo's) `push` and `pull_request` events, as Gitea's
//! webhook documentation and its `modules/structs` payloads define them.
//! They follow GitHub's shapes, without `created`, `deleted` or `forced`
//! (a deleted ref is a separate `delete` event), and with `total_commits`.

use gantry_spec::trigger::PullRequestEvent;
use serde::Deserialize;

use super::github::{PullRequestFields, RepositoryBody};
use super::{
    CommitFiles, PullRequest, Push, WebhookEvent, changed_files, commit, commit_or_zero, json,
};
use crate::git::GitRef;

pub(super) fn parse(event: &str, body: &[u8]) -> Result<WebhookEvent, String> {
    match event {
        "push" => push(json(body)?),
        "pull_request" => pull_request(json(body)?),
        other => Ok(WebhookEvent::Ignored {
            reason: format!("Gitea event `{other}` does not start pipelines"),
        }),
    }
}

#[derive(Deserialize)]
struct PushBody {
    #[serde(rename = "ref")]
    git_ref: String,
    before: String,
    after: String,
    #[serde(default)]
    commits: Vec<CommitFiles>,
    total_commits: Option<usize>,
    head_commit: Option<HeadCommit>,
    repository: RepositoryBody,
    pusher: Option<Pusher>,
}

#[derive(Deserialize)]
struct HeadCommit {
    url: Option<String>,
}

#[derive(Deserialize)]
struct Pusher {
    login: Option<String>,
    username: Option<String>,
}

fn push(body: PushBody) -> Result<WebhookEvent, String> {
    let before = commit_or_zero(&body.before, "before")?;
    let after = commit_or_zero(&body.after, "after")?;
    // Gitea lists a limited number of commits; `total_commits` says whether
    // some were left out.
    let listed_all = body
        .total_commits
        .is_none_or(|total| total <= body.commits.len());
    let complete = before.is_some() && after.is_some() && listed_all;
    let changed = complete.then(|| changed_files(body.commits.iter().flat_map(CommitFiles::lists)));
    Ok(WebhookEvent::Push(Push {
        repository: body.repository.into_repository(),
        git_ref: GitRef::parse(&body.git_ref),
        before,
        after,
        changed_files: changed,
        pusher: body.pusher.and_then(|p| p.login.or(p.username)),
        forced: false,
        commit_url: body.head_commit.and_then(|c| c.url),
    }))
}

#[derive(Deserialize)]
struct PullRequestBody {
    action: String,
    number: u64,
    pull_request: PullRequestFields,
    repository: RepositoryBody,
}

fn pull_request(body: PullRequestBody) -> Result<WebhookEvent, String> {
    let action = match body.action.as_str() {
        "opened" | "reopened" => PullRequestEvent::Opened,
        "synchronized" => PullRequestEvent::Updated,
        "closed" => PullRequestEvent::Closed,
        other => {
            return Ok(WebhookEvent::Ignored {
                reason: format!("pull-request action `{other}` is not opened, updated or closed"),
            });
        }
    };
    let pr = body.pull_request;
    Ok(WebhookEvent::PullRequest(PullRequest {
        repository: body.repository.into_repository(),
        number: body.number,
        action,
        forge_action: body.action,
        merged: pr.merged.unwrap_or(false),
        title: pr.title,
        url: pr.html_url,
        head_commit: commit(&pr.head.sha, "pull_request.head.sha")?,
        head_clone_url: pr.head.repo.and_then(|r| r.clone_url),
        head_branch: pr.head.name,
        base_commit: Some(commit(&pr.base.sha, "pull_request.base.sha")?),
        base_branch: pr.base.name,
    }))
}
