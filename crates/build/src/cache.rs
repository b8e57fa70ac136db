//! `cache.paths`: files a build keeps for the next build of the same
//! action, as CodeBuild's local custom cache keeps directories.
//!
//! - **Selection**: the paths are the buildspec's `cache.paths`, globs as
//!   artifacts take them (`node_modules/**/*`, `.m2/**/*`), relative to the
//!   source directory; an absolute one must be inside it. Nothing outside
//!   the source directory is read or written (in container mode an absolute
//!   path is the container's, and gantry works on the mounted source
//!   directory only); a symbolic link is never followed out of the tree,
//!   and links are not kept.
//! - **Save**: after a build that succeeded (so a broken state is never
//!   kept), the selected files are copied into a new directory that then
//!   replaces the kept one at once (a rename): a build that stops halfway
//!   leaves the previous cache. A cache over [`MAX_CACHE_BYTES`] is not
//!   saved (the log says so).
//! - **Restore**: before the first phase, every kept file that the source
//!   directory does not have is copied in (what the source holds wins),
//!   with its permission bits; a file whose directory in the source is not
//!   a real directory (a link, a file) is skipped.
//!
//! The kept files live in a directory the caller names
//! ([`crate::BuildRequest::cache_dir`]); the server gives each action of
//! each pipeline its own.

use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::artifacts::{self, Selection, SourceView};

/// The most a cache may hold; a larger one is not saved.
pub const MAX_CACHE_BYTES: u64 = 2 * 1024 * 1024 * 1024;

/// The kept files, under the cache directory.
const CURRENT: &str = "current";

/// Copies the kept files the source directory lacks into it; returns the
/// log's notes.
pub(crate) fn restore(cache_dir: &Path, source_root: &Path) -> Vec<String> {
    let kept = cache_dir.join(CURRENT);
    // A real directory: the pipeline's cache directory is the builds' too
    // (GANTRY_CACHE_DIR), and a link planted there must not be read
    // through with gantry's rights.
    if !std::fs::symlink_metadata(&kept).is_ok_and(|m| m.is_dir()) {
        return vec!["Cache: nothing kept yet".to_owned()];
    }
    let mut restored = Restored::default();
    restore_dir(&kept, source_root, "", &mut restored);
    let mut notes = vec![format!(
        "Cache: restored {} file(s), {} byte(s); {} the source already had",
        restored.files, restored.bytes, restored.present
    )];
    if !restored.skipped.is_empty() {
        notes.push(format!(
            "Cache: not restored (a link or a file where a directory goes, or unreadable): {}",
            restored.skipped.join(", ")
        ));
    }
    notes
}

#[derive(Default)]
struct Restored {
    files: u64,
    bytes: u64,
    present: u64,
    skipped: Vec<String>,
}

/// Restores the kept directory `from` into `to` (a real directory of the
/// source tree), `rel` being its path there.
fn restore_dir(from: &Path, to: &Path, rel: &str, out: &mut Restored) {
    let Ok(entries) = std::fs::read_dir(from) else {
        out.skipped.push(display(rel));
        return;
    };
    let mut entries: Vec<_> = entries.flatten().collect();
    entries.sort_by_key(std::fs::DirEntry::file_name);
    for entry in entries {
        let name = entry.file_name();
        let child_rel = join(rel, &name.to_string_lossy());
        let target = to.join(&name);
        // The kept tree holds only what `save` wrote: directories and
        // regular files. Anything else is not ours to restore.
        let Ok(kind) = entry.file_type() else {
            out.skipped.push(child_rel);
            continue;
        };
        if kind.is_dir() {
            match std::fs::symlink_metadata(&target) {
                Ok(m) if m.is_dir() => {}
                Ok(_) => {
                    out.skipped.push(child_rel);
                    continue;
                }
                Err(_) => {
                    if std::fs::create_dir(&target).is_err() {
                        out.skipped.push(child_rel);
                        continue;
                    }
                }
            }
            restore_dir(&entry.path(), &target, &child_rel, out);
        } else if kind.is_file() {
            if std::fs::symlink_metadata(&target).is_ok() {
                out.present += 1;
                continue;
            }
            match restore_file(&entry.path(), &target) {
                Ok(bytes) => {
                    out.files += 1;
                    out.bytes += bytes;
                }
                Err(_) => out.skipped.push(child_rel),
            }
        } else {
            out.skipped.push(child_rel);
        }
    }
}

/// A new file at `target` (never through a link) with `from`'s content and
/// permission bits.
fn restore_file(from: &Path, target: &Path) -> std::io::Result<u64> {
    let mut source = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(from)?;
    let mode = source.metadata()?.permissions().mode() & 0o777;
    let mut out = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode | 0o200)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(target)?;
    let bytes = std::io::copy(&mut source, &mut out)?;
    out.set_permissions(std::fs::Permissions::from_mode(mode))?;
    Ok(bytes)
}

/// Keeps the files `paths` select in the source directory as the cache
/// for the next build; returns the log's notes.
pub(crate) fn save(cache_dir: &Path, paths: &[String], source_root: &Path) -> Vec<String> {
    let view = SourceView {
        root: source_root,
        aliases: Vec::new(),
        outside: Err("cache.paths are kept from the source directory only".to_owned()),
        skip: None,
    };
    let mut notes = Vec::new();
    let mut selected = Vec::new();
    for path in paths {
        let sel = Selection {
            artifact: "cache",
            base_directory: None,
            files: std::slice::from_ref(path),
            exclude: &[],
            discard_paths: false,
            enable_symlinks: false,
            require_matches: false,
            skip_symlinks: true,
        };
        // Links are not kept: a restored link could point anywhere.
        match artifacts::select(&sel, &view) {
            Ok(found) => selected.extend(found),
            Err(e) => notes.push(format!("Cache: {path} is not kept: {e}")),
        }
    }
    selected.sort_by(|a, b| a.dest.cmp(&b.dest));
    selected.dedup_by(|a, b| a.dest == b.dest);
    let bytes: u64 = selected
        .iter()
        .filter_map(|s| std::fs::symlink_metadata(&s.source).ok())
        .map(|m| m.len())
        .sum();
    if bytes > MAX_CACHE_BYTES {
        notes.push(format!(
            "Cache: not saved: {bytes} bytes is more than the {MAX_CACHE_BYTES} a cache may hold"
        ));
        return notes;
    }
    // Never written through a link someone planted where the cache goes.
    for dir in [Some(cache_dir), cache_dir.parent()].into_iter().flatten() {
        if std::fs::symlink_metadata(dir).is_ok_and(|m| !m.is_dir()) {
            notes.push(format!(
                "Cache: not saved: {} is not a directory",
                dir.display()
            ));
            return notes;
        }
    }
    let fresh = cache_dir.join(format!(".new-{}", unique()));
    let kept = (|| -> Result<usize, String> {
        std::fs::create_dir_all(cache_dir).map_err(|e| e.to_string())?;
        let written =
            artifacts::copy("cache", &selected, &fresh.join(CURRENT)).map_err(|e| e.to_string())?;
        let current = cache_dir.join(CURRENT);
        let old = cache_dir.join(format!(".old-{}", unique()));
        if current.exists() {
            std::fs::rename(&current, &old).map_err(|e| e.to_string())?;
        }
        std::fs::rename(fresh.join(CURRENT), &current).map_err(|e| e.to_string())?;
        let _ = std::fs::remove_dir_all(&old);
        Ok(written.len())
    })();
    let _ = std::fs::remove_dir_all(&fresh);
    match kept {
        Ok(files) => notes.push(format!("Cache: saved {files} file(s), {bytes} byte(s)")),
        Err(e) => notes.push(format!("Cache: not saved: {e}")),
    }
    notes
}

/// A name no other save of this process (nor of another) uses now.
fn unique() -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{}-{}-{n}", std::process::id(), gantry_clock::now_ms())
}

fn join(rel: &str, name: &str) -> String {
    if rel.is_empty() {
        name.to_owned()
    } else {
        format!("{rel}/{name}")
    }
}

fn display(rel: &str) -> String {
    if rel.is_empty() {
        ".".to_owned()
    } else {
        rel.to_owned()
    }
}

/// A name made safe as one path component: every character but ASCII
/// letters, digits, `-` and `_` becomes `_` (a pipeline's cache directory
/// is named so, by the server and by build agents alike).
pub fn path_component(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The cache directory of one action under a pipeline's cache directory:
/// `paths/STAGE--ACTION`, each character outside `[A-Za-z0-9_.-]` as `_`.
pub fn action_cache_dir(pipeline_cache: &Path, stage: &str, action: &str) -> PathBuf {
    let clean = |s: &str| -> String {
        s.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-') {
                    c
                } else {
                    '_'
                }
            })
            .collect()
    };
    pipeline_cache
        .join("paths")
        .join(format!("{}--{}", clean(stage), clean(action)))
}
