//! Selecting build outputs by glob and copying them out of the source dir.
//!
//! Patterns (`files`, `exclude-paths`) are relative to `base-directory`, or
//! to the source directory without one: `*` stays within one path segment,
//! `**` crosses segments, and a pattern naming a directory selects
//! everything below it. Nothing outside the source directory is ever read:
//! absolute patterns, `..`, a base directory resolving outside it, and a
//! selected symbolic link pointing outside it are errors. Symbolic links to
//! directories are not followed (no loops, no escapes). With
//! `enable-symlinks`, a link is copied as a link, and must also stay inside
//! the artifact once written there: its root may be a base directory, and
//! a target like `a/s1/..` goes wherever the link `a/s1` leads, so each
//! written link is resolved for real, through the artifact's other links.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use gantry_spec::buildspec::ArtifactsSpec;
use globset::{Glob, GlobBuilder, GlobSet, GlobSetBuilder};

use crate::BuildError;

/// One file chosen for an artifact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Selected {
    /// Where it is now.
    pub(crate) source: PathBuf,
    /// Its path inside the artifact, `/`-separated.
    pub(crate) dest: String,
    /// `Some(target)` to recreate a symbolic link (`enable-symlinks`).
    pub(crate) link: Option<PathBuf>,
}

/// A file found under the base directory.
struct Found {
    rel: String,
    path: PathBuf,
    is_symlink: bool,
}

/// What to select: an artifact's or a report group's keys.
pub(crate) struct Selection<'a> {
    /// Names the artifact (or report group) in errors.
    pub(crate) artifact: &'a str,
    pub(crate) base_directory: Option<&'a str>,
    pub(crate) files: &'a [String],
    pub(crate) exclude: &'a [String],
    pub(crate) discard_paths: bool,
    pub(crate) enable_symlinks: bool,
    /// A pattern matching nothing is an error (artifacts, as CodeBuild
    /// does) rather than an empty selection (reports).
    pub(crate) require_matches: bool,
}

/// Which files of `root` (the canonical source directory) `sel` selects.
/// `skip` is a directory never descended into (the output directory, when
/// it lies inside the source directory).
pub(crate) fn select(
    sel: &Selection<'_>,
    root: &Path,
    skip: Option<&Path>,
) -> Result<Vec<Selected>, BuildError> {
    let Selection {
        artifact,
        base_directory,
        files,
        exclude,
        discard_paths,
        enable_symlinks,
        require_matches,
    } = *sel;
    let escapes = |path: &str| BuildError::PathEscapes {
        artifact: artifact.to_owned(),
        path: path.to_owned(),
    };
    let base = match base_directory {
        Some(dir) if !dir.is_empty() && dir != "." => {
            let rel = safe_relative(dir).ok_or_else(|| escapes(dir))?;
            let joined = root.join(rel);
            let canonical = match joined.canonicalize() {
                Ok(c) => c,
                // A base directory the build did not create selects nothing.
                Err(_) if !require_matches => return Ok(Vec::new()),
                Err(_) => {
                    return Err(BuildError::NoMatchingFiles {
                        artifact: artifact.to_owned(),
                        pattern: format!("{dir}/ (base-directory)"),
                    });
                }
            };
            if !canonical.starts_with(root) {
                return Err(escapes(dir));
            }
            canonical
        }
        _ => root.to_path_buf(),
    };

    let include = compile(artifact, files)?;
    let excluded = compile(artifact, exclude)?;
    let mut found = Vec::new();
    walk(&base, "", skip, &mut found).map_err(|e| BuildError::ArtifactIo {
        artifact: artifact.to_owned(),
        path: base.to_string_lossy().into_owned(),
        source: e,
    })?;

    let mut matched_by = vec![false; files.len()];
    let mut chosen: BTreeMap<String, Selected> = BTreeMap::new();
    let mut any_before_exclude = false;
    for f in found {
        let hits = include.set.matches(&f.rel);
        if hits.is_empty() {
            continue;
        }
        for hit in hits {
            matched_by[include.owner[hit]] = true;
        }
        any_before_exclude = true;
        if excluded.set.is_match(&f.rel) {
            continue;
        }
        let mut link = None;
        let mut source = f.path.clone();
        if f.is_symlink {
            let target = f
                .path
                .canonicalize()
                .map_err(|_| BuildError::BrokenSymlink {
                    artifact: artifact.to_owned(),
                    path: f.rel.clone(),
                })?;
            if !target.starts_with(root) {
                return Err(escapes(&f.rel));
            }
            if enable_symlinks {
                link = std::fs::read_link(&f.path).ok();
            } else if target.is_dir() {
                // A link to a directory inside the source: not followed.
                continue;
            } else {
                source = target;
            }
        }
        let dest = if discard_paths {
            f.rel.rsplit('/').next().unwrap_or(&f.rel).to_owned()
        } else {
            f.rel.clone()
        };
        if chosen.contains_key(&dest) {
            return Err(BuildError::DuplicatePath {
                artifact: artifact.to_owned(),
                path: dest,
            });
        }
        chosen.insert(dest.clone(), Selected { source, dest, link });
    }
    if require_matches {
        if let Some(i) = matched_by.iter().position(|m| !m) {
            return Err(BuildError::NoMatchingFiles {
                artifact: artifact.to_owned(),
                pattern: files[i].clone(),
            });
        }
        if any_before_exclude && chosen.is_empty() {
            return Err(BuildError::AllFilesExcluded {
                artifact: artifact.to_owned(),
            });
        }
    }
    Ok(chosen.into_values().collect())
}

/// Selects the files of one artifact spec.
pub(crate) fn select_artifact(
    artifact: &str,
    root: &Path,
    spec: &ArtifactsSpec,
    skip: Option<&Path>,
) -> Result<Vec<Selected>, BuildError> {
    let sel = Selection {
        artifact,
        base_directory: spec.base_directory.as_deref(),
        files: &spec.files,
        exclude: &spec.exclude_paths,
        discard_paths: spec.discard_paths,
        enable_symlinks: spec.enable_symlinks,
        require_matches: true,
    };
    select(&sel, root, skip)
}

/// Copies the selection into `dest_dir`; returns the relative paths written.
pub(crate) fn copy(
    artifact: &str,
    selected: &[Selected],
    dest_dir: &Path,
) -> Result<Vec<String>, BuildError> {
    let io = |path: &str, e: std::io::Error| BuildError::ArtifactIo {
        artifact: artifact.to_owned(),
        path: path.to_owned(),
        source: e,
    };
    std::fs::create_dir_all(dest_dir).map_err(|e| io("", e))?;
    let mut written = Vec::with_capacity(selected.len());
    for s in selected {
        let dest = dest_dir.join(&s.dest);
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent).map_err(|e| io(&s.dest, e))?;
        }
        // Replace what a previous run left, without following a link there.
        if dest.symlink_metadata().is_ok() {
            std::fs::remove_file(&dest).map_err(|e| io(&s.dest, e))?;
        }
        match &s.link {
            Some(target) => {
                std::os::unix::fs::symlink(target, &dest).map_err(|e| io(&s.dest, e))?
            }
            None => {
                std::fs::copy(&s.source, &dest).map_err(|e| io(&s.dest, e))?;
            }
        }
        written.push(s.dest.clone());
    }
    // Only now are all the links in place that a link's target may go through.
    for s in selected.iter().filter(|s| s.link.is_some()) {
        if !resolves_inside(dest_dir, Path::new(&s.dest)) {
            let _ = std::fs::remove_file(dest_dir.join(&s.dest));
            return Err(BuildError::SymlinkLeavesArtifact {
                artifact: artifact.to_owned(),
                path: s.dest.clone(),
            });
        }
    }
    Ok(written)
}

use gantry_confine::resolves_inside;

/// The relative path `text` denotes, or `None` if it is absolute or climbs
/// with `..`.
fn safe_relative(text: &str) -> Option<PathBuf> {
    let path = Path::new(text);
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::Normal(part) => out.push(part),
            Component::CurDir => {}
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(out)
}

struct Compiled {
    set: GlobSet,
    /// Pattern index (in the user's list) of each glob in `set`.
    owner: Vec<usize>,
}

fn compile(artifact: &str, patterns: &[String]) -> Result<Compiled, BuildError> {
    let mut builder = GlobSetBuilder::new();
    let mut owner = Vec::new();
    for (i, pattern) in patterns.iter().enumerate() {
        let invalid = |message: String| BuildError::InvalidPattern {
            artifact: artifact.to_owned(),
            pattern: pattern.clone(),
            message,
        };
        let Some(normal) = normalize_pattern(pattern) else {
            return Err(BuildError::PathEscapes {
                artifact: artifact.to_owned(),
                path: pattern.clone(),
            });
        };
        // A plain path such as `dist` also selects everything below a
        // directory of that name; a glob (`dist/*`) means only what it says.
        let literal = !normal.contains(['*', '?', '[', '{']);
        let below = literal.then(|| format!("{normal}/**"));
        for text in std::iter::once(normal).chain(below) {
            builder.add(glob(&text).map_err(|e| invalid(e.to_string()))?);
            owner.push(i);
        }
    }
    let set = builder.build().map_err(|e| BuildError::InvalidPattern {
        artifact: artifact.to_owned(),
        pattern: patterns.join(", "),
        message: e.to_string(),
    })?;
    Ok(Compiled { set, owner })
}

fn glob(text: &str) -> Result<Glob, globset::Error> {
    GlobBuilder::new(text)
        .literal_separator(true)
        .backslash_escape(true)
        .build()
}

/// `./a//b/` → `a/b`; `None` for absolute patterns or ones using `..`.
fn normalize_pattern(pattern: &str) -> Option<String> {
    if pattern.starts_with('/') {
        return None;
    }
    let mut parts = Vec::new();
    for part in pattern.split('/') {
        match part {
            "" | "." => {}
            ".." => return None,
            other => parts.push(other),
        }
    }
    if parts.is_empty() {
        return Some("**".to_owned());
    }
    Some(parts.join("/"))
}

/// Every non-directory entry below `dir`, with `/`-separated relative paths,
/// in a stable order. Symbolic links are reported, never descended.
fn walk(
    dir: &Path,
    prefix: &str,
    skip: Option<&Path>,
    out: &mut Vec<Found>,
) -> std::io::Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let name = entry.file_name().to_string_lossy().into_owned();
        let rel = if prefix.is_empty() {
            name
        } else {
            format!("{prefix}/{name}")
        };
        let path = entry.path();
        let kind = entry.file_type()?;
        if kind.is_dir() {
            if skip.is_some_and(|s| s == path) {
                continue;
            }
            walk(&path, &rel, skip, out)?;
        } else {
            out.push(Found {
                rel,
                path,
                is_symlink: kind.is_symlink(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_are_normalized_and_escapes_refused() {
        assert_eq!(normalize_pattern("./a//b/").as_deref(), Some("a/b"));
        assert_eq!(normalize_pattern("**/*").as_deref(), Some("**/*"));
        assert_eq!(normalize_pattern("../x"), None);
        assert_eq!(normalize_pattern("a/../../x"), None);
        assert_eq!(normalize_pattern("/etc/passwd"), None);
        assert_eq!(safe_relative("a/./b"), Some(PathBuf::from("a/b")));
        assert_eq!(safe_relative("../b"), None);
    }

    #[test]
    fn star_stays_in_its_segment() {
        let c = compile("primary", &["dir/*".to_owned()]).unwrap();
        assert!(c.set.is_match("dir/a.txt"));
        assert!(!c.set.is_match("dir/sub/a.txt"));
        let c = compile("primary", &["**/*".to_owned()]).unwrap();
        assert!(c.set.is_match("top.txt"));
        assert!(c.set.is_match("a/b/c.txt"));
    }
}
