//! Pollers: one task per `git` trigger with `poll`, looking for new
//! commits on the refs it watches.
//!
//! A poll lists the repository's branches and tags (`ls-remote`: a few
//! hundred bytes, no fetch) and compares the watched ones with what it saw
//! last; only a moved or new ref costs more (the sighting's fetch). So a
//! hundred repositories polled every 10 s cost a process start each per
//! poll and nothing else. Between polls it waits the trigger's interval
//! with jitter, longer while the repository is unreachable
//! (`gantry_triggers::poll`).
//!
//! What a poller saw is stored with its trigger (`known_refs`), so a
//! restarted server notices what was pushed while it was down. A trigger
//! polled for the first time takes note of what is there and starts
//! nothing: arming a tag filter must not start the pipeline on every old
//! tag. That first listing is made before `apply` answers (or, when the
//! repository does not answer then, as soon as the poller starts), so a
//! commit pushed after `apply` starts the pipeline. A sighting that cannot be decided yet (the commit is not there,
//! the start failed) leaves its ref as it was, so the next poll tries it
//! again.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use gantry_clock::now_ms;
use gantry_engine::TriggerType;
use gantry_triggers::poll::{first_delay, next_delay};
use gantry_triggers::{CommitId, GitRef};

use super::git::{Outcome, Sighting, consider, record};
use super::{Armed, random};
use crate::control::ControlPlane;
use crate::mirror::{RepoCredentials, Repository};

/// A ref → commit map, as stored (JSON) and compared.
type Refs = BTreeMap<String, String>;

/// A repository on this machine is listed in full at least every this many
/// polls, even when its refs' files look unchanged.
const FULL_POLL_EVERY: u32 = 30;

pub(super) async fn run(plane: ControlPlane, armed: Arc<Armed>, index: usize, interval: Duration) {
    let mut known = stored_refs(&plane, &armed.name, index).await;
    let mut failures: u32 = 0;
    let mut creds: Option<RepoCredentials> = None;
    let local = armed.git_trigger(index).and_then(|w| local_git_dir(&w.url));
    // The local refs' look when they were last listed and acted on.
    let mut listed_look: Option<u64> = None;
    let mut since_full: u32 = 0;
    if known.is_none() {
        // Never polled: note what is there now, when it is armed, so that
        // a commit pushed before the first poll is one the poll sees.
        if poll_once(&plane, &armed, index, &mut known, &mut creds).await {
            failures = 0;
        }
    }
    tokio::time::sleep(first_delay(interval, random())).await;
    loop {
        if !plane.triggers().is_current(&armed) {
            return;
        }
        let look = match &local {
            Some(dir) => {
                let dir = dir.clone();
                tokio::task::spawn_blocking(move || refs_look(&dir))
                    .await
                    .ok()
                    .flatten()
            }
            None => None,
        };
        let unchanged = look.is_some() && look == listed_look && since_full < FULL_POLL_EVERY;
        if unchanged {
            since_full += 1;
        } else {
            let ok = poll_once(&plane, &armed, index, &mut known, &mut creds).await;
            failures = if ok { 0 } else { failures.saturating_add(1) };
            // Only a poll that acted on everything it saw may be skipped
            // next time; one that left a sighting for later is repeated.
            listed_look = if ok { look } else { None };
            since_full = 0;
        }
        tokio::time::sleep(next_delay(interval, failures, random())).await;
    }
}

/// The git directory of a repository on this machine (a path, or a
/// `file://` URL), whose ref files a poll may look at before listing the
/// refs; `None` for remote repositories and layouts it does not know.
fn local_git_dir(url: &str) -> Option<PathBuf> {
    let path = match Repository::parse(url).ok()? {
        Repository::Local(path) => path,
        Repository::Remote(_) => PathBuf::from(url.strip_prefix("file://")?),
    };
    if path.join("refs").is_dir() && path.join("HEAD").is_file() {
        Some(path)
    } else if path.join(".git/refs").is_dir() {
        Some(path.join(".git"))
    } else {
        None
    }
}

/// A digest of how a git directory's ref storage looks on disk: every
/// file under `refs/heads` and `refs/tags`, `packed-refs` and reftable's
/// `tables.list`, each by path, inode, size and modification time. git
/// writes a ref by renaming a new file into place, so any ref update
/// changes it. `None` when something cannot be read (then the poll lists
/// the refs).
fn refs_look(git_dir: &Path) -> Option<u64> {
    use std::hash::{Hash, Hasher};
    use std::os::unix::fs::MetadataExt;
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    let stat = |path: &Path, hasher: &mut std::collections::hash_map::DefaultHasher| {
        match std::fs::symlink_metadata(path) {
            Ok(m) => (m.ino(), m.size(), m.mtime(), m.mtime_nsec()).hash(hasher),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0u8.hash(hasher),
            Err(_) => return false,
        }
        true
    };
    for file in ["packed-refs", "reftable/tables.list"] {
        if !stat(&git_dir.join(file), &mut hasher) {
            return None;
        }
    }
    let mut dirs = vec![git_dir.join("refs/heads"), git_dir.join("refs/tags")];
    let mut entries = 0usize;
    while let Some(dir) = dirs.pop() {
        let mut names: Vec<PathBuf> = match std::fs::read_dir(&dir) {
            Ok(read) => read.filter_map(|e| e.ok().map(|e| e.path())).collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(_) => return None,
        };
        names.sort();
        for path in names {
            entries += 1;
            // A repository with this many loose refs is listed instead.
            if entries > 10_000 {
                return None;
            }
            path.hash(&mut hasher);
            if path.is_dir() {
                dirs.push(path);
            } else if !stat(&path, &mut hasher) {
                return None;
            }
        }
    }
    Some(hasher.finish())
}

async fn stored_refs(plane: &ControlPlane, pipeline: &str, index: usize) -> Option<Refs> {
    let states = plane.store().trigger_states(Some(pipeline)).await.ok()?;
    let state = states
        .into_iter()
        .find(|s| s.trigger == i64::try_from(index).unwrap_or(-1))?;
    serde_json::from_str(state.known_refs.as_deref()?).ok()
}

/// How long `apply` waits for a new poll trigger's first listing.
const BASELINE_LIMIT: Duration = Duration::from_secs(15);

/// A trigger never polled lists the refs there are now and keeps them, so
/// its first poll compares with what was there when it was armed. A
/// repository that does not answer within [`BASELINE_LIMIT`] is left to
/// the poller, whose first poll then takes note instead (and the error is
/// the trigger's).
pub(super) async fn baseline(plane: &ControlPlane, armed: &Arc<Armed>, index: usize) {
    let mut known = stored_refs(plane, &armed.name, index).await;
    if known.is_some() {
        return;
    }
    let mut creds = None;
    let listed = poll_once(plane, armed, index, &mut known, &mut creds);
    if tokio::time::timeout(BASELINE_LIMIT, listed).await.is_err() {
        tracing::warn!(pipeline = %armed.name, trigger = index,
            "A new poll trigger's repository did not answer in time; its first poll notes its refs.");
    }
}

/// One poll; `false` when the repository could not be listed or a moved
/// ref could not be acted on (the next poll backs off).
async fn poll_once(
    plane: &ControlPlane,
    armed: &Armed,
    index: usize,
    known: &mut Option<Refs>,
    creds: &mut Option<RepoCredentials>,
) -> bool {
    let Some(watch) = armed.git_trigger(index) else {
        return true;
    };
    let trigger = i64::try_from(index).unwrap_or(i64::MAX);
    let listed = async {
        // Credentials are read once, and again after a failure (they may
        // have been rotated).
        if creds.is_none() {
            *creds = Some(RepoCredentials::from_params(plane.params(), &watch.url).await?);
        }
        let creds = creds.as_ref().expect("just set");
        plane.mirrors().ls_remote(&watch.url, creds).await
    }
    .await;
    let refs = match listed {
        Ok(refs) => refs,
        Err(error) => {
            *creds = None;
            let error = error.to_string();
            tracing::warn!(pipeline = %armed.name, trigger = index, %error, "A poll failed.");
            let _ = plane
                .store()
                .record_trigger_error(&armed.name, trigger, None, &error, now_ms())
                .await;
            return false;
        }
    };
    if let Some(branch) = &watch.branch
        && !refs
            .iter()
            .any(|(name, _)| name.strip_prefix("refs/heads/") == Some(branch))
    {
        let error = format!(
            "{} has no branch {branch} (the source action's branch): deleted or not pushed yet",
            super::without_credentials(&watch.url)
        );
        let _ = plane
            .store()
            .record_trigger_error(&armed.name, trigger, None, &error, now_ms())
            .await;
        return false;
    }
    let Some(push) = watch.matcher.push() else {
        return true;
    };
    let watched: Refs = refs
        .into_iter()
        .filter(|(name, _)| push.ref_matches(&GitRef::parse(name)))
        .collect();
    let Some(seen) = known.as_mut() else {
        // The first poll of this trigger: note what is there.
        *known = Some(watched);
        save(plane, &armed.name, trigger, known.as_ref()).await;
        return true;
    };
    let mut ok = true;
    let mut changed = false;
    let gone: Vec<String> = seen
        .keys()
        .filter(|name| !watched.contains_key(*name))
        .cloned()
        .collect();
    for name in gone {
        if let Some(commit) = seen.remove(&name) {
            let event = format!("poll: {name} deleted");
            let result = format!("skipped: {name} was deleted");
            let outcome = gantry_store::TriggerOutcome {
                event: &event,
                commit: Some(&commit),
                result: &result,
                execution: None,
                at: now_ms(),
            };
            let _ = plane
                .store()
                .record_trigger_outcome(&armed.name, trigger, &outcome)
                .await;
        }
        changed = true;
    }
    for (name, commit) in &watched {
        let before = seen.get(name);
        if before == Some(commit) {
            continue;
        }
        let Ok(commit_id) = CommitId::parse(commit) else {
            continue;
        };
        let sighting = Sighting {
            git_ref: GitRef::parse(name),
            commit: commit_id,
            before: before.and_then(|c| CommitId::parse(c).ok()),
            changed_files: None,
            how: TriggerType::Poll,
            event: format!("poll: {name} {commit}"),
            pull_request: None,
        };
        let result = consider(plane, armed, watch, &sighting).await;
        record(plane, armed, index, &sighting, &result).await;
        match result {
            Ok(Outcome::Started(_) | Outcome::Duplicate(_) | Outcome::Skipped(_)) => {
                seen.insert(name.clone(), commit.clone());
                changed = true;
            }
            Err(_) => ok = false,
        }
    }
    if changed {
        save(plane, &armed.name, trigger, known.as_ref()).await;
    }
    ok
}

async fn save(plane: &ControlPlane, pipeline: &str, trigger: i64, refs: Option<&Refs>) {
    let Some(refs) = refs else { return };
    let text = serde_json::to_string(refs).unwrap_or_default();
    if let Err(error) = plane.store().set_known_refs(pipeline, trigger, &text).await {
        tracing::error!(%error, "Recording what a poller saw failed.");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gantry_testkit::git;

    /// The cheap check sees every kind of ref update: a new commit on a
    /// branch, a new nested branch, a tag, a deleted branch, packing.
    #[test]
    fn the_look_of_a_repositorys_refs_changes_with_every_ref_update() {
        let dir = tempfile::tempdir().unwrap();
        let origin = dir.path().join("origin.git");
        let work = dir.path().join("work");
        std::fs::create_dir_all(&origin).unwrap();
        std::fs::create_dir_all(&work).unwrap();
        git(&origin, &["init", "-q", "--bare", "-b", "main"]);
        git(&work, &["init", "-q", "-b", "main"]);
        git(
            &work,
            &["remote", "add", "origin", &origin.display().to_string()],
        );
        git(&work, &["commit", "-q", "--allow-empty", "-m", "one"]);
        git(&work, &["push", "-q", "origin", "main"]);
        let url = format!("file://{}", origin.display());
        let git_dir = local_git_dir(&url).unwrap();
        assert_eq!(git_dir, origin);
        assert_eq!(local_git_dir("https://example.com/shop.git"), None);
        let mut looks = vec![refs_look(&git_dir).unwrap()];
        assert_eq!(refs_look(&git_dir), Some(looks[0]), "nothing changed");
        let steps: [&[&str]; 5] = [
            &["commit", "-q", "--allow-empty", "-m", "two"],
            &["push", "-q", "origin", "main:release/1"],
            &["push", "-q", "origin", "HEAD:refs/tags/v1"],
            &["push", "-q", "origin", ":release/1"],
            &["push", "-q", "origin", "main"],
        ];
        for step in steps {
            git(&work, step);
            if step[0] == "commit" {
                continue;
            }
            let look = refs_look(&git_dir).unwrap();
            assert!(!looks.contains(&look), "{step:?} left the look as it was");
            looks.push(look);
        }
        git(&origin, &["pack-refs", "--all"]);
        let look = refs_look(&git_dir).unwrap();
        assert!(!looks.contains(&look), "pack-refs left the look as it was");
    }
}
