//! GitHub's `push`, `pull_request` and `ping` events, as "Webhook events and
//! payloads" documents them. Only the fields gantry uses are read; GitHub
//! adds fields freely, so unknown ones are ignored.

use gantry_spec::trigger::PullRequestEvent;
use serde::Deserialize;

use super::{
    CommitFiles, PullRequest, Push, Repository, WebhookEvent, changed_files, commit,
    commit_or_zero, json,
};
use crate::git::GitRef;

/// GitHub lists at most this many commits in a push; with that many, some
/// may be missing, and so may their files.
const MAX_LISTED_COMMITS: usize = 2048;

pub(super) fn parse(event: &str, body: &[u8]) -> Result<WebhookEvent, String> {
    match event {
        "ping" => Ok(WebhookEvent::Ping),
        "push" => push(json(body)?),
        "pull_request" => pull_request(json(body)?),
        other => Ok(WebhookEvent::Ignored {
            reason: format!("GitHub event `{other}` does not start pipelines"),
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
    created: bool,
    #[serde(default)]
    deleted: bool,
    #[serde(default)]
    forced: bool,
    #[serde(default)]
    commits: Vec<CommitFiles>,
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
    name: Option<String>,
}

#[derive(Deserialize)]
pub(super) struct RepositoryBody {
    full_name: Option<String>,
    html_url: Option<String>,
    clone_url: Option<String>,
    ssh_url: Option<String>,
    git_url: Option<String>,
}

impl RepositoryBody {
    pub(super) fn into_repository(self) -> Repository {
        Repository {
            full_name: self.full_name,
            web_url: self.html_url,
            clone_urls: [self.clone_url, self.ssh_url, self.git_url]
                .into_iter()
                .flatten()
                .collect(),
        }
    }
}

fn push(body: PushBody) -> Result<WebhookEvent, String> {
    let before = commit_or_zero(&body.before, "before")?;
    let after = commit_or_zero(&body.after, "after")?;
    // A created ref has nothing to compare with, and a forced push's
    // commits leave out what it dropped: in both, the list is not the diff.
    let complete = !(body.created
        || body.deleted
        || body.forced
        || before.is_none()
        || body.commits.len() >= MAX_LISTED_COMMITS);
    let changed = complete.then(|| changed_files(body.commits.iter().flat_map(CommitFiles::lists)));
    Ok(WebhookEvent::Push(Push {
        repository: body.repository.into_repository(),
        git_ref: GitRef::parse(&body.git_ref),
        before,
        after: if body.deleted { None } else { after },
        changed_files: changed,
        pusher: body.pusher.and_then(|p| p.name),
        forced: body.forced,
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

#[derive(Deserialize)]
pub(super) struct PullRequestFields {
    pub(super) title: String,
    pub(super) html_url: Option<String>,
    #[serde(default)]
    pub(super) merged: Option<bool>,
    pub(super) head: Branch,
    pub(super) base: Branch,
}

#[derive(Deserialize)]
pub(super) struct Branch {
    #[serde(rename = "ref")]
    pub(super) name: String,
    pub(super) sha: String,
    /// `null` when the fork was deleted.
    pub(super) repo: Option<BranchRepository>,
}

#[derive(Deserialize)]
pub(super) struct BranchRepository {
    pub(super) clone_url: Option<String>,
}

fn pull_request(body: PullRequestBody) -> Result<WebhookEvent, String> {
    let action = match body.action.as_str() {
        "opened" | "reopened" => PullRequestEvent::Opened,
        "synchronize" => PullRequestEvent::Updated,
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
