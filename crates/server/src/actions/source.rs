//! `type: source`: a snapshot of a git repository at one commit.
//!
//! Uses the `git` program, which every machine that has a repository has.
//! The snapshot is `git archive` of the commit, so it holds exactly what was
//! committed: uncommitted changes are not part of a run (the log says so).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use gantry_spec::pipeline::ActionKind;
use tokio::process::Command;

use super::{ActionContext, ActionError, ActionOutput, ActionRunner, BoxFuture};

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

fn is_url(repository: &str) -> bool {
    repository.contains("://") || repository.starts_with("git@")
}

async fn snapshot(
    ctx: &ActionContext,
    repository: &str,
    branch: Option<&str>,
) -> Result<ActionOutput, ActionError> {
    let repo: PathBuf = if is_url(repository) {
        let dest = ctx.work_dir.join("clone");
        let mut args = vec!["clone", "--quiet", "--no-checkout", "--single-branch"];
        if let Some(b) = branch {
            args.extend(["--branch", b]);
        }
        let dest_str = dest.display().to_string();
        args.extend(["--", repository, &dest_str]);
        ctx.log.line(&format!("Cloning {repository}"));
        git(&ctx.work_dir, &args).await?;
        dest
    } else {
        ctx.base_dir.join(repository)
    };
    if !repo.exists() {
        return Err(ActionError::new(format!(
            "repository {} does not exist",
            repo.display()
        )));
    }
    let current_branch = git(&repo, &["rev-parse", "--abbrev-ref", "HEAD"]).await?;
    // A local run takes what the person has checked out; a named branch
    // other than the current one is taken at its tip.
    let rev = match branch {
        Some(b) if b != current_branch && !is_url(repository) => format!("refs/heads/{b}"),
        _ => "HEAD".to_string(),
    };
    let commit = git(
        &repo,
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
    let message = git(&repo, &["log", "-1", "--format=%B", &commit]).await?;
    // One git call for the author's date, e-mail and name (unit-separated).
    let author = git(&repo, &["log", "-1", "--format=%aI%x1f%ae%x1f%an", &commit]).await?;
    let mut author = author.split('\u{1f}').map(str::to_string);
    let author_date = author.next().unwrap_or_default();
    let author_email = author.next().unwrap_or_default();
    let author_name = author.next().unwrap_or_default();
    if rev == "HEAD" && !is_url(repository) {
        let dirty = git(&repo, &["status", "--porcelain", "--untracked-files=no"]).await?;
        if !dirty.is_empty() {
            ctx.log.line(
                "Note: the working tree has uncommitted changes; they are not part of this run.",
            );
        }
    }
    let out = ctx.work_dir.join("snapshot");
    tokio::fs::create_dir_all(&out)
        .await
        .map_err(|e| ActionError::new(format!("cannot create {}: {e}", out.display())))?;
    archive(&repo, &commit, &out).await?;
    let short: String = commit.chars().take(12).collect();
    ctx.log.line(&format!(
        "Snapshot of {} at {short} ({branch_name})",
        repo.display()
    ));

    let repository_name = repo
        .canonicalize()
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_default();
    let variables = BTreeMap::from([
        ("CommitId".to_string(), commit),
        ("BranchName".to_string(), branch_name),
        ("CommitMessage".to_string(), message),
        ("AuthorDate".to_string(), author_date),
        ("AuthorEmail".to_string(), author_email),
        ("AuthorName".to_string(), author_name),
        ("RepositoryName".to_string(), repository_name),
    ]);
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
    })
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

async fn archive(repo: &Path, commit: &str, out: &Path) -> Result<(), ActionError> {
    let mut git = git_command()
        .arg("-C")
        .arg(repo)
        .args(["archive", "--format=tar", commit])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| ActionError::new(format!("cannot run git archive: {e}")))?;
    let stdout: Stdio = git
        .stdout
        .take()
        .ok_or_else(|| ActionError::new("git archive has no output"))?
        .try_into()
        .map_err(|e| ActionError::new(format!("cannot pipe git archive: {e}")))?;
    let tar = Command::new("tar")
        .arg("-x")
        .arg("-C")
        .arg(out)
        .stdin(stdout)
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| ActionError::new(format!("cannot run tar: {e}")))?;
    let git_out = git
        .wait_with_output()
        .await
        .map_err(|e| ActionError::new(format!("git archive: {e}")))?;
    if !git_out.status.success() {
        return Err(ActionError::new(format!(
            "git archive failed: {}",
            String::from_utf8_lossy(&git_out.stderr).trim()
        )));
    }
    if !tar.status.success() {
        return Err(ActionError::new(format!(
            "tar failed: {}",
            String::from_utf8_lossy(&tar.stderr).trim()
        )));
    }
    Ok(())
}

/// `git`, started from a cleared environment plus the variables every
/// child of gantry's may see: the server's own (`GANTRY_MASTER_KEY`, …)
/// never reach it.
fn git_command() -> Command {
    let mut command = Command::new("git");
    command.env_clear().envs(gantry_build::passed_host_env());
    command
}
