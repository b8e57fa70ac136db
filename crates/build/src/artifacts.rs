//! Selecting build outputs by glob and copying them out of the source dir.
//!
//! Patterns (`files`, `exclude-paths`) are relative to `base-directory`, or
//! to the source directory without one: `*` stays within one path segment,
//! `**` crosses segments, and a pattern naming a directory selects
//! everything below it. A `base-directory` may itself be a pattern (`dist*`,
//! the reference's `'my-directory*'`): every directory it matches is a base,
//! and their contents are merged.
//!
//! Variables (`$NAME`, `${NAME}`) in these paths are expanded by the caller
//! from the build's final environment ([`expand_vars`]), never by a shell.
//!
//! Absolute paths are taken, as CodeBuild takes them. One inside the source
//! directory (under any spelling of it: as given, canonical, as the build's
//! shell sees it) is the relative path it names. One outside it is read
//! only when the caller allows it ([`SourceView::outside`]: `gantry
//! buildspec run` on the host, as the user who runs it); a pipeline build
//! reads nothing outside its source directory. `..` is refused everywhere.
//! Symbolic links to directories are not followed (no loops, no escapes),
//! and a selected link must resolve inside the tree it was found in (the
//! source directory, or the outside directory named). With
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

/// What to select: an artifact's or a report group's keys, variables
/// already expanded.
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
    /// Leave symbolic links out rather than follow or copy them (the
    /// cache keeps no link).
    pub(crate) skip_symlinks: bool,
}

/// The source directory as selection sees it.
pub(crate) struct SourceView<'a> {
    /// The canonical source directory.
    pub(crate) root: &'a Path,
    /// Other absolute spellings of it (as given; as the build's shell sees
    /// it), so `$CODEBUILD_SRC_DIR/out` is inside it whatever it resolves to.
    pub(crate) aliases: Vec<PathBuf>,
    /// Whether absolute paths outside the source directory may be read,
    /// or why not.
    pub(crate) outside: Result<(), String>,
    /// A directory never descended into (the output directory).
    pub(crate) skip: Option<&'a Path>,
}

impl SourceView<'_> {
    /// A view of `root` alone: no aliases, nothing outside it.
    #[cfg(test)]
    pub(crate) fn confined(root: &Path) -> SourceView<'_> {
        SourceView {
            root,
            aliases: Vec::new(),
            outside: Err("only the source directory is read".to_owned()),
            skip: None,
        }
    }

    /// `path` (absolute, lexically normal) relative to the source
    /// directory, if it is inside it under one of its spellings.
    fn relative(&self, path: &Path) -> Option<PathBuf> {
        std::iter::once(self.root)
            .chain(self.aliases.iter().map(PathBuf::as_path))
            .find_map(|dir| path.strip_prefix(dir).ok())
            .map(Path::to_path_buf)
    }
}

/// One directory files are selected from.
struct Tree {
    /// Canonical.
    dir: PathBuf,
    /// Selected links must resolve inside this (canonical) directory.
    confine: PathBuf,
    /// Absolute spellings of `dir`, to make absolute patterns relative.
    spellings: Vec<PathBuf>,
    /// Prepended to a selected file's path inside the artifact.
    dest_prefix: String,
    /// (index in the user's `files`, pattern relative to `dir`).
    patterns: Vec<(usize, String)>,
    excludes: Vec<String>,
}

/// Which files `sel` selects (see the module docs).
pub(crate) fn select(
    sel: &Selection<'_>,
    view: &SourceView<'_>,
) -> Result<Vec<Selected>, BuildError> {
    let Selection {
        artifact,
        base_directory,
        files,
        exclude,
        discard_paths,
        enable_symlinks,
        require_matches,
        skip_symlinks,
    } = *sel;
    let escapes = |path: &str| BuildError::PathEscapes {
        artifact: artifact.to_owned(),
        path: path.to_owned(),
    };
    let outside = |path: &str| match &view.outside {
        Ok(()) => Ok(()),
        Err(reason) => Err(BuildError::OutsideSource {
            artifact: artifact.to_owned(),
            path: path.to_owned(),
            reason: reason.clone(),
        }),
    };
    let base_given = base_directory.filter(|d| !d.is_empty() && *d != ".");
    let mut trees = match base_given {
        None => vec![source_tree(view, view.root.to_path_buf(), PathBuf::new())],
        Some(dir) => {
            let found = base_trees(artifact, dir, view, &escapes, &outside)?;
            if found.is_empty() {
                if !require_matches {
                    // A base directory the build did not create selects nothing.
                    return Ok(Vec::new());
                }
                return Err(BuildError::NoMatchingFiles {
                    artifact: artifact.to_owned(),
                    pattern: format!("{dir}/ (base-directory)"),
                });
            }
            found
        }
    };
    let bases = trees.len();

    for (i, pattern) in files.iter().enumerate() {
        if !pattern.starts_with('/') {
            let normal = normalize_pattern(pattern).ok_or_else(|| escapes(pattern))?;
            for tree in &mut trees[..bases] {
                tree.patterns.push((i, normal.clone()));
            }
            continue;
        }
        let absolute = lexical(pattern).ok_or_else(|| escapes(pattern))?;
        let mut placed = false;
        for tree in &mut trees[..bases] {
            if let Some(rel) = strip_any(&absolute, &tree.spellings) {
                tree.patterns.push((i, rel));
                placed = true;
            }
        }
        if placed {
            continue;
        }
        if let Some(dir) = base_given {
            return Err(BuildError::PatternOutsideBase {
                artifact: artifact.to_owned(),
                pattern: pattern.clone(),
                base: dir.to_owned(),
            });
        }
        // Outside the source directory, with no base: the pattern's
        // leading plain directories are where it is looked for.
        outside(pattern)?;
        let (prefix, rest) = split_literal_prefix(&absolute);
        let Ok(dir) = prefix.canonicalize() else {
            // Nothing there: the pattern matches nothing.
            trees.push(Tree {
                dir: PathBuf::new(),
                confine: PathBuf::new(),
                spellings: Vec::new(),
                dest_prefix: String::new(),
                patterns: vec![(i, String::new())],
                excludes: Vec::new(),
            });
            continue;
        };
        let dest_prefix = prefix.to_string_lossy().trim_start_matches('/').to_owned();
        trees.push(Tree {
            confine: dir.clone(),
            spellings: vec![prefix.clone(), dir.clone()],
            dir,
            dest_prefix,
            patterns: vec![(i, rest)],
            excludes: Vec::new(),
        });
    }
    for pattern in exclude {
        if !pattern.starts_with('/') {
            let normal = normalize_pattern(pattern).ok_or_else(|| escapes(pattern))?;
            for tree in &mut trees[..bases] {
                tree.excludes.push(normal.clone());
            }
            continue;
        }
        let absolute = lexical(pattern).ok_or_else(|| escapes(pattern))?;
        for tree in &mut trees {
            if let Some(rel) = strip_any(&absolute, &tree.spellings) {
                tree.excludes.push(rel);
            }
        }
    }

    let mut matched_by = vec![false; files.len()];
    let mut chosen: BTreeMap<String, Selected> = BTreeMap::new();
    let mut any_before_exclude = false;
    for tree in &trees {
        if tree.dir.as_os_str().is_empty() {
            continue;
        }
        let texts: Vec<String> = tree.patterns.iter().map(|(_, p)| p.clone()).collect();
        let include = compile(artifact, &texts)?;
        let excluded = compile(artifact, &tree.excludes)?;
        let mut found = Vec::new();
        walk(&tree.dir, "", view.skip, &mut found).map_err(|e| BuildError::ArtifactIo {
            artifact: artifact.to_owned(),
            path: tree.dir.to_string_lossy().into_owned(),
            source: e,
        })?;
        for f in found {
            let hits = include.set.matches(&f.rel);
            if hits.is_empty() {
                continue;
            }
            for hit in hits {
                matched_by[tree.patterns[include.owner[hit]].0] = true;
            }
            any_before_exclude = true;
            if excluded.set.is_match(&f.rel) {
                continue;
            }
            let shown = join_dest(&tree.dest_prefix, &f.rel);
            let mut link = None;
            let mut source = f.path.clone();
            if f.is_symlink && skip_symlinks {
                continue;
            }
            if f.is_symlink {
                let target = f
                    .path
                    .canonicalize()
                    .map_err(|_| BuildError::BrokenSymlink {
                        artifact: artifact.to_owned(),
                        path: shown.clone(),
                    })?;
                if !target.starts_with(&tree.confine) {
                    return Err(escapes(&shown));
                }
                if enable_symlinks {
                    link = std::fs::read_link(&f.path).ok();
                } else if target.is_dir() {
                    // A link to a directory inside the tree: not followed.
                    continue;
                } else {
                    source = target;
                }
            }
            let dest = if discard_paths {
                f.rel.rsplit('/').next().unwrap_or(&f.rel).to_owned()
            } else {
                shown
            };
            if chosen.contains_key(&dest) {
                return Err(BuildError::DuplicatePath {
                    artifact: artifact.to_owned(),
                    path: dest,
                });
            }
            chosen.insert(dest.clone(), Selected { source, dest, link });
        }
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

/// The tree of `dir` (canonical, inside the source directory), which is
/// `rel` below it.
fn source_tree(view: &SourceView<'_>, dir: PathBuf, rel: PathBuf) -> Tree {
    let mut spellings = vec![dir.clone(), view.root.join(&rel)];
    spellings.extend(view.aliases.iter().map(|a| a.join(&rel)));
    Tree {
        dir,
        confine: view.root.to_path_buf(),
        spellings,
        dest_prefix: String::new(),
        patterns: Vec::new(),
        excludes: Vec::new(),
    }
}

/// The directories a `base-directory` names: a path, or a pattern whose
/// segments may hold `*`, `?`, `[...]`, `{...}` (not `**`).
fn base_trees(
    artifact: &str,
    dir: &str,
    view: &SourceView<'_>,
    escapes: &dyn Fn(&str) -> BuildError,
    outside: &dyn Fn(&str) -> Result<(), BuildError>,
) -> Result<Vec<Tree>, BuildError> {
    let (start, rel, in_source) = if dir.starts_with('/') {
        let absolute = lexical(dir).ok_or_else(|| escapes(dir))?;
        match view.relative(&absolute) {
            Some(rel) => (view.root.to_path_buf(), rel, true),
            None => {
                outside(dir)?;
                (
                    PathBuf::from("/"),
                    absolute
                        .strip_prefix("/")
                        .unwrap_or(&absolute)
                        .to_path_buf(),
                    false,
                )
            }
        }
    } else {
        (
            view.root.to_path_buf(),
            safe_relative(dir).ok_or_else(|| escapes(dir))?,
            true,
        )
    };
    let segments: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if segments.iter().any(|s| s.contains("**")) {
        return Err(BuildError::InvalidPattern {
            artifact: artifact.to_owned(),
            pattern: dir.to_owned(),
            message: "`**` cannot be used in base-directory".to_owned(),
        });
    }
    let mut trees = Vec::new();
    for (found, found_rel) in expand_dirs(&start, &segments) {
        let Ok(canonical) = found.canonicalize() else {
            continue;
        };
        if in_source {
            if !canonical.starts_with(view.root) {
                return Err(escapes(dir));
            }
            trees.push(source_tree(view, canonical, found_rel));
        } else {
            trees.push(Tree {
                confine: canonical.clone(),
                spellings: vec![found, canonical.clone()],
                dir: canonical,
                dest_prefix: String::new(),
                patterns: Vec::new(),
                excludes: Vec::new(),
            });
        }
    }
    Ok(trees)
}

/// The directories below `start` that `segments` name, each with its path
/// relative to `start`, in a stable order; a segment with glob characters
/// matches the names in its directory.
fn expand_dirs(start: &Path, segments: &[String]) -> Vec<(PathBuf, PathBuf)> {
    let mut current = vec![(start.to_path_buf(), PathBuf::new())];
    for segment in segments {
        let mut next = Vec::new();
        let is_glob = segment.contains(['*', '?', '[', '{']);
        let matcher = if is_glob {
            match glob(segment) {
                Ok(g) => Some(g.compile_matcher()),
                Err(_) => return Vec::new(),
            }
        } else {
            None
        };
        for (dir, rel) in current {
            match &matcher {
                None => next.push((dir.join(segment), rel.join(segment))),
                Some(m) => {
                    let Ok(entries) = std::fs::read_dir(&dir) else {
                        continue;
                    };
                    let mut names: Vec<_> = entries
                        .filter_map(Result::ok)
                        .map(|e| e.file_name())
                        .filter(|n| m.is_match(Path::new(n)))
                        .collect();
                    names.sort();
                    for name in names {
                        next.push((dir.join(&name), rel.join(&name)));
                    }
                }
            }
        }
        current = next;
    }
    current.retain(|(dir, _)| dir.is_dir());
    current
}

/// `text` as an absolute path without `.` and empty segments; `None` when
/// it climbs with `..`.
fn lexical(text: &str) -> Option<PathBuf> {
    let mut out = PathBuf::from("/");
    for component in Path::new(text).components() {
        match component {
            Component::Normal(part) => out.push(part),
            Component::CurDir | Component::RootDir => {}
            Component::ParentDir | Component::Prefix(_) => return None,
        }
    }
    Some(out)
}

/// `path` relative to the first of `dirs` it lies in, as a pattern (`**`
/// for the directory itself).
fn strip_any(path: &Path, dirs: &[PathBuf]) -> Option<String> {
    dirs.iter().find_map(|dir| {
        let rel = path.strip_prefix(dir).ok()?;
        let text = rel.to_string_lossy().into_owned();
        Some(if text.is_empty() {
            "**".to_owned()
        } else {
            text
        })
    })
}

/// An absolute pattern split into its leading plain directories and the
/// rest (at least its last segment).
fn split_literal_prefix(pattern: &Path) -> (PathBuf, String) {
    let parts: Vec<String> = pattern
        .components()
        .filter_map(|c| match c {
            Component::Normal(p) => Some(p.to_string_lossy().into_owned()),
            _ => None,
        })
        .collect();
    let literal = parts
        .iter()
        .take(parts.len().saturating_sub(1))
        .take_while(|p| !p.contains(['*', '?', '[', '{']))
        .count();
    let mut prefix = PathBuf::from("/");
    prefix.extend(&parts[..literal]);
    (prefix, parts[literal..].join("/"))
}

fn join_dest(prefix: &str, rel: &str) -> String {
    if prefix.is_empty() {
        rel.to_owned()
    } else {
        format!("{prefix}/{rel}")
    }
}

/// `$NAME` and `${NAME}` in `text`, replaced by their values in `vars`.
/// Names not in `vars` are kept as written and returned (a `$` in a file
/// name, such as Java's `Outer$Inner.class`, stays what it was); a `$`
/// followed by anything else is text.
pub(crate) fn expand_vars(text: &str, vars: &BTreeMap<String, String>) -> (String, Vec<String>) {
    let mut out = String::with_capacity(text.len());
    let mut unset = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        let (name, used) = match after.strip_prefix('{') {
            Some(inner) => match inner.find('}') {
                Some(end) if crate::env::is_shell_name(&inner[..end]) => (&inner[..end], end + 2),
                _ => ("", 0),
            },
            None => {
                let len = after
                    .bytes()
                    .take_while(|b| b.is_ascii_alphanumeric() || *b == b'_')
                    .count();
                if after.starts_with(|c: char| c.is_ascii_digit()) {
                    ("", 0)
                } else {
                    (&after[..len], len)
                }
            }
        };
        if name.is_empty() {
            out.push('$');
            rest = after;
            continue;
        }
        match vars.get(name) {
            Some(value) => out.push_str(value),
            None => {
                out.push_str(&rest[at..at + 1 + used]);
                if !unset.iter().any(|n| n == name) {
                    unset.push(name.to_owned());
                }
            }
        }
        rest = &after[used..];
    }
    out.push_str(rest);
    (out, unset)
}

/// The variables the paths of a buildspec's artifacts and reports name
/// (`files`, `base-directory`, `exclude-paths`), each once.
pub(crate) fn path_variables(bs: &gantry_spec::buildspec::Buildspec) -> Vec<String> {
    let mut texts: Vec<&str> = Vec::new();
    let specs = bs
        .artifacts
        .iter()
        .chain(bs.secondary_artifacts.iter().map(|(_, spec)| spec));
    for spec in specs {
        texts.extend(spec.files.iter().map(String::as_str));
        texts.extend(spec.exclude_paths.iter().map(String::as_str));
        texts.extend(spec.base_directory.as_deref());
    }
    for group in &bs.reports {
        texts.extend(group.files.iter().map(String::as_str));
        texts.extend(group.base_directory.as_deref());
    }
    let mut names: Vec<String> = Vec::new();
    for text in texts {
        for name in expand_vars(text, &BTreeMap::new()).1 {
            if !names.contains(&name) {
                names.push(name);
            }
        }
    }
    names
}

/// An artifact spec with the variables of its paths expanded; `unset`
/// receives the names that were not set.
pub(crate) fn expand_spec(
    spec: &ArtifactsSpec,
    vars: &BTreeMap<String, String>,
    unset: &mut Vec<String>,
) -> ArtifactsSpec {
    let mut one = |text: &str| {
        let (out, missing) = expand_vars(text, vars);
        for name in missing {
            if !unset.contains(&name) {
                unset.push(name);
            }
        }
        out
    };
    ArtifactsSpec {
        files: spec.files.iter().map(|f| one(f)).collect(),
        base_directory: spec.base_directory.as_deref().map(&mut one),
        exclude_paths: spec.exclude_paths.iter().map(|f| one(f)).collect(),
        ..spec.clone()
    }
}

/// Selects the files of one artifact spec (variables already expanded).
pub(crate) fn select_artifact(
    artifact: &str,
    spec: &ArtifactsSpec,
    view: &SourceView<'_>,
) -> Result<Vec<Selected>, BuildError> {
    let sel = Selection {
        artifact,
        base_directory: spec.base_directory.as_deref(),
        files: &spec.files,
        exclude: &spec.exclude_paths,
        discard_paths: spec.discard_paths,
        enable_symlinks: spec.enable_symlinks,
        require_matches: true,
        skip_symlinks: false,
    };
    select(&sel, view)
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
    fn variables_expand_as_written_and_unset_ones_stay() {
        let vars: BTreeMap<String, String> = [("A", "x"), ("SRC", "/s"), ("V1", "2")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        let expand = |t: &str| expand_vars(t, &vars);
        assert_eq!(
            expand("$A/${A}b/$Ab"),
            ("x/xb/$Ab".to_owned(), vec!["Ab".to_owned()])
        );
        assert_eq!(expand("$SRC/out"), ("/s/out".to_owned(), vec![]));
        assert_eq!(expand("v$V1.js"), ("v2.js".to_owned(), vec![]));
        // Not variables: a lone `$`, `$1`, `$(...)`, `${...}` that is not a name.
        for text in ["a$", "$1", "$(touch x)", "${A:-b}", "$$", "${"] {
            assert_eq!(expand(text), (text.to_owned(), vec![]), "{text}");
        }
        assert_eq!(
            expand("Outer$Inner.class"),
            ("Outer$Inner.class".to_owned(), vec!["Inner".to_owned()])
        );
    }

    #[test]
    fn absolute_patterns_split_at_their_first_glob() {
        let split = |t: &str| split_literal_prefix(&lexical(t).unwrap());
        assert_eq!(
            split("/tmp/out/*.zip"),
            (PathBuf::from("/tmp/out"), "*.zip".to_owned())
        );
        assert_eq!(
            split("/tmp/a.zip"),
            (PathBuf::from("/tmp"), "a.zip".to_owned())
        );
        assert_eq!(split("/t/*/x/y"), (PathBuf::from("/t"), "*/x/y".to_owned()));
        assert_eq!(lexical("/a/./b//c"), Some(PathBuf::from("/a/b/c")));
        assert_eq!(lexical("/a/../b"), None);
    }

    #[test]
    fn a_base_directory_pattern_needs_no_double_star() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().canonicalize().unwrap();
        std::fs::create_dir_all(root.join("d1")).unwrap();
        let sel = Selection {
            artifact: "primary",
            base_directory: Some("**/d1"),
            files: &["*".to_owned()],
            exclude: &[],
            discard_paths: false,
            enable_symlinks: false,
            require_matches: true,
            skip_symlinks: false,
        };
        let err = select(&sel, &SourceView::confined(&root)).unwrap_err();
        assert!(
            err.to_string()
                .contains("`**` cannot be used in base-directory"),
            "{err}"
        );
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
