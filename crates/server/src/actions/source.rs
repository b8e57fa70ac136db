//! `type: source`: a snapshot of a git repository at one commit.
//!
//! Uses the `git` program, which every machine that has a repository has.
//! The snapshot is `git archive` of the commit, so it holds exactly what was
//! committed: uncommitted changes are not part of a run (the log says so).
//!
//! Which commit: the one the execution is pinned to, when a trigger pinned
//! this action (see `ControlPlane::start_triggered`); else the branch head,
//! resolved once when the action starts and output as `CommitId`. A URL
//! repository is read through its mirror ([`crate::mirror`]), fetched
//! first; a local path is read in place, and without a pin keeps what it
//! always did: the checked-out `HEAD`, or the tip of a named branch other
//! than the current one. A pinned commit the repository no longer has
//! (force-pushed away before gantry fetched it) fails the action: it never
//! runs another commit in its place.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use gantry_engine::PullRequest;
use gantry_spec::pipeline::ActionKind;
use tokio::process::Command;

use super::{ActionContext, ActionError, ActionOutput, ActionRunner, BoxFuture};
use crate::mirror::{MirrorError, RepoCredentials, Repository, resolve_repository};

pub struct SourceRunner;

impl ActionRunner for SourceRunner {
    fn run<'a>(
        &'a self,
        ctx: &'a ActionContext,
    ) -> BoxFuture<'a, Result<ActionOutput, ActionError>> {
        Box::pin(async move {
            let ActionKind::Source { repository, branch } = &ctx.action.kind else {
                return Err(ActionError::new("internal error: not a source action"));
            };
            tokio::select! {
                result = snapshot(ctx, repository, branch.as_deref()) => result,
                () = ctx.cancel.cancelled() => Err(ActionError::new("stopped")),
                () = tokio::time::sleep(ctx.timeout) => Err(ActionError::new(format!("timed out after {:?}", ctx.timeout))),
            }
        })
    }
}

/// The commit to snapshot, where to read it, and what to call its branch.
struct Resolved {
    repo: PathBuf,
    commit: String,
    branch_name: String,
    repository_name: String,
    commit_url: Option<String>,
}

async fn snapshot(
    ctx: &ActionContext,
    repository: &str,
    branch: Option<&str>,
) -> Result<ActionOutput, ActionError> {
    let location = resolve_repository(&ctx.base_dir, repository);
    let pin = ctx.pinned_commit.as_deref();
    let resolved = match Repository::parse(&location).map_err(mirror_error)? {
        Repository::Remote(remote) => {
            let creds = RepoCredentials::from_params(&ctx.params, &location)
                .await
                .map_err(mirror_error)?;
            remote_commit(ctx, &location, branch, pin, &creds)
                .await
                .map(|(repo, commit, branch_name)| Resolved {
                    commit_url: remote.commit_url(&commit),
                    repository_name: repository_name(remote.as_str()),
                    repo,
                    commit,
                    branch_name,
                })?
        }
        Repository::Local(path) => {
            if !path.exists() {
                return Err(ActionError::new(format!(
                    "repository {} does not exist",
                    path.display()
                )));
            }
            let (commit, branch_name) = match pin {
                Some(pin) => (pinned_commit(ctx, &path, &location, pin).await?, {
                    match branch {
                        Some(b) => b.to_string(),
                        None => current_branch(&path).await.unwrap_or_default(),
                    }
                }),
                None => local_head(ctx, &path, branch).await?,
            };
            let repository_name = path
                .canonicalize()
                .ok()
                .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
                .unwrap_or_default();
            Resolved {
                repo: path,
                commit,
                branch_name,
                repository_name: repository_name
                    .strip_suffix(".git")
                    .map(str::to_string)
                    .unwrap_or(repository_name),
                commit_url: None,
            }
        }
    };
    let Resolved {
        repo,
        commit,
        branch_name,
        repository_name,
        commit_url,
    } = resolved;
    let info = ctx
        .mirrors
        .commit_info(&repo, &commit)
        .await
        .map_err(mirror_error)?;
    let out = ctx.work_dir.join("snapshot");
    ctx.mirrors
        .archive(&repo, &commit, &out)
        .await
        .map_err(mirror_error)?;
    let short: String = commit.chars().take(12).collect();
    ctx.log.line(&format!(
        "Snapshot of {location} at {short} ({branch_name})"
    ));

    let mut variables = BTreeMap::from([
        ("CommitId".to_string(), commit),
        ("BranchName".to_string(), branch_name),
        ("CommitMessage".to_string(), info.message),
        ("AuthorDate".to_string(), info.author_date),
        ("AuthorEmail".to_string(), info.author_email),
        ("AuthorName".to_string(), info.author_name),
        ("RepositoryName".to_string(), repository_name),
    ]);
    if let Some(url) = commit_url {
        variables.insert("CommitUrl".to_string(), url);
    }
    if let Some(trigger) = &ctx.trigger {
        variables.insert("TriggerType".to_string(), trigger.kind.as_str().to_string());
        variables.insert("TriggerDetail".to_string(), trigger.detail.clone());
        if let Some(pr) = trigger
            .pull_request
            .as_ref()
            .filter(|pr| pr.source == ctx.action.name.as_str())
        {
            variables.extend(pull_request_variables(pr));
        }
    }
    let artifacts = ctx
        .action
        .outputs
        .iter()
        .take(1)
        .map(|name| (name.clone(), out.clone()))
        .collect();
    Ok(ActionOutput {
        variables,
        artifacts,
        stored: Vec::new(),
    })
}

/// What the source action pinned to a pull request's head tells the
/// actions after it. `BranchName` is the head branch: the one whose commit
/// the execution runs.
fn pull_request_variables(pr: &PullRequest) -> BTreeMap<String, String> {
    let mut variables = BTreeMap::from([
        ("BranchName".to_string(), pr.source_branch.clone()),
        ("PullRequestId".to_string(), pr.number.to_string()),
        ("PullRequestEvent".to_string(), pr.event.clone()),
        ("PullRequestTitle".to_string(), pr.title.clone()),
        ("PullRequestMerged".to_string(), pr.merged.to_string()),
        ("SourceBranchName".to_string(), pr.source_branch.clone()),
        (
            "DestinationBranchName".to_string(),
            pr.destination_branch.clone(),
        ),
    ]);
    if let Some(url) = &pr.url {
        variables.insert("PullRequestUrl".to_string(), url.clone());
    }
    variables
}

/// Fetches a URL repository's mirror and picks the commit: the pin, or the
/// branch's head (the remote's default branch when none is named).
async fn remote_commit(
    ctx: &ActionContext,
    url: &str,
    branch: Option<&str>,
    pin: Option<&str>,
    creds: &RepoCredentials,
) -> Result<(PathBuf, String, String), ActionError> {
    ctx.log.line(&format!("Fetching {url}"));
    let repo = ctx.mirrors.fetch(url, creds).await.map_err(mirror_error)?;
    if let Some(pin) = pin {
        if !ctx.mirrors.has_commit(&repo, pin).await {
            // No branch or tag holds it any more: ask for it by id, which
            // servers that allow it answer.
            let _ = ctx.mirrors.fetch_commit(url, creds, pin).await;
        }
        let commit = pinned_commit(ctx, &repo, url, pin).await?;
        let branch_name = branch.unwrap_or_default().to_string();
        return Ok((repo, commit, branch_name));
    }
    let branch = match branch {
        Some(b) => b.to_string(),
        None => ctx
            .mirrors
            .default_branch(url, creds)
            .await
            .map_err(mirror_error)?,
    };
    let commit = ctx
        .mirrors
        .branch_head(&repo, &branch)
        .await
        .map_err(mirror_error)?;
    Ok((repo, commit, branch))
}

/// The full id of the commit the execution is pinned to, or the error
/// that says it is gone.
async fn pinned_commit(
    ctx: &ActionContext,
    repo: &Path,
    location: &str,
    pin: &str,
) -> Result<String, ActionError> {
    match ctx.mirrors.full_commit(repo, pin).await {
        Ok(commit) => {
            let by = ctx
                .trigger
                .as_ref()
                .map(|t| format!(" by its {} trigger", t.kind))
                .unwrap_or_default();
            ctx.log
                .line(&format!("The execution is pinned to commit {commit}{by}."));
            Ok(commit)
        }
        Err(MirrorError::CommitNotFound { .. }) => Err(ActionError::new(format!(
            "the execution is pinned to commit {pin}, which {location} no longer has \
             (force-pushed away or deleted before gantry fetched it); it does not run \
             another commit instead"
        ))),
        Err(e) => Err(mirror_error(e)),
    }
}

/// A local repository without a pin: what the person has checked out, or
/// the tip of a named branch other than the current one.
async fn local_head(
    ctx: &ActionContext,
    repo: &Path,
    branch: Option<&str>,
) -> Result<(String, String), ActionError> {
    let current_branch = git(repo, &["rev-parse", "--abbrev-ref", "HEAD"]).await?;
    let rev = match branch {
        Some(b) if b != current_branch => format!("refs/heads/{b}"),
        _ => "HEAD".to_string(),
    };
    let commit = git(
        repo,
        &[
            "rev-parse",
            "--verify",
            "--quiet",
            &format!("{rev}^{{commit}}"),
        ],
    )
    .await
    .map_err(|_| ActionError::new(format!("{rev} names no commit in {}", repo.display())))?;
    let branch_name = match branch {
        Some(b) => b.to_string(),
        None if current_branch == "HEAD" => String::new(),
        None => current_branch.clone(),
    };
    if rev == "HEAD" {
        // A bare repository has no working tree to be dirty.
        let bare = git(repo, &["rev-parse", "--is-bare-repository"]).await?;
        if bare != "true" {
            let dirty = git(repo, &["status", "--porcelain", "--untracked-files=no"]).await?;
            if !dirty.is_empty() {
                ctx.log.line(
                    "Note: the working tree has uncommitted changes; they are not part of this run.",
                );
            }
        }
    }
    Ok((commit, branch_name))
}

async fn current_branch(repo: &Path) -> Option<String> {
    let name = git(repo, &["rev-parse", "--abbrev-ref", "HEAD"])
        .await
        .ok()?;
    (name != "HEAD").then_some(name)
}

/// The last part of a URL's path, without `.git`.
fn repository_name(url: &str) -> String {
    let path = url.trim_end_matches('/');
    let last = path.rsplit(['/', ':']).next().unwrap_or(path);
    last.strip_suffix(".git").unwrap_or(last).to_string()
}

fn mirror_error(error: MirrorError) -> ActionError {
    ActionError::new(error.to_string())
}

async fn git(dir: &Path, args: &[&str]) -> Result<String, ActionError> {
    let output = git_command()
        .arg("-C")
        .arg(dir)
        .args(args)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| ActionError::new(format!("cannot run git: {e}")))?;
    if !output.status.success() {
        return Err(ActionError::new(format!(
            "git {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_string())
}

/// `git`, started from a cleared environment plus the variables every
/// child of gantry's may see: the server's own (`GANTRY_MASTER_KEY`, …)
/// never reach it.
fn git_command() -> Command {
    let mut command = Command::new("git");
    command.env_clear().envs(gantry_build::passed_host_env());
    command
}

#[cfg(test)]
mod tests {
    use super::repository_name;

    #[test]
    fn repository_names_come_from_the_url_path() {
        assert_eq!(repository_name("https://github.com/acme/shop.git"), "shop");
        assert_eq!(repository_name("git@github.com:acme/shop.git"), "shop");
        assert_eq!(repository_name("git@host:shop"), "shop");
        assert_eq!(repository_name("file:///srv/git/shop.git/"), "shop");
    }
}
