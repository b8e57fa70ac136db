//! Whether a symlink stays inside the directory tree it belongs to, judged
//! the way the kernel will resolve it, not by its text. Artifacts (on
//! import into the store, and when a build collects them) hold symlinks
//! written by builds; each must resolve inside its artifact once
//! materialized, through every other link of the tree.

use std::path::{Component, Path};

/// Linux's limit on symlinks followed while resolving one path.
const MAX_SYMLINK_HOPS: u32 = 40;

/// Whether the symlink `link` (relative to `root`) resolves inside `root`.
///
/// The target is resolved the way the kernel will resolve it once the
/// artifact is materialized: component by component from the link's
/// directory, following every symlink met on the way (each must itself stay
/// inside). Judging the text alone is not enough: with `a/s1 -> ..`, the
/// target `a/s1/..` reads as `a` but is the root's parent. An absolute
/// target, `..` above the root, or more than [`MAX_SYMLINK_HOPS`] links (a
/// loop) count as leaving. Components that do not exist (a dangling link)
/// are taken as plain names.
pub fn resolves_inside(root: &Path, link: &Path) -> bool {
    use std::collections::VecDeque;
    use std::ffi::OsString;

    fn names(path: &Path) -> Option<VecDeque<OsString>> {
        path.components()
            .filter_map(|c| match c {
                Component::Normal(name) => Some(Some(name.to_os_string())),
                Component::ParentDir => Some(Some(OsString::from(".."))),
                Component::CurDir => None,
                Component::RootDir | Component::Prefix(_) => Some(None),
            })
            .collect()
    }

    let mut resolved: Vec<OsString> = link
        .parent()
        .and_then(names)
        .map(Vec::from)
        .unwrap_or_default();
    let mut pending = VecDeque::from([link.file_name().map(OsString::from).unwrap_or_default()]);
    let mut hops = 0;
    while let Some(name) = pending.pop_front() {
        if name == ".." {
            if resolved.pop().is_none() {
                return false;
            }
            continue;
        }
        let mut candidate = root.to_path_buf();
        candidate.extend(&resolved);
        candidate.push(&name);
        match std::fs::symlink_metadata(&candidate) {
            Ok(meta) if meta.file_type().is_symlink() => {
                hops += 1;
                if hops > MAX_SYMLINK_HOPS {
                    return false;
                }
                let Ok(target) = std::fs::read_link(&candidate) else {
                    return false;
                };
                let Some(mut next) = names(&target) else {
                    return false;
                };
                next.extend(pending);
                pending = next;
            }
            _ => resolved.push(name),
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn links_are_judged_by_where_they_resolve_not_by_their_text() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir_all(root.join("a/b")).unwrap();
        symlink("..", root.join("a/s1")).unwrap();
        symlink("b", root.join("a/down")).unwrap();
        symlink("../a/down", root.join("a/b/up")).unwrap();
        symlink("/etc/passwd", root.join("abs")).unwrap();
        symlink("loop2", root.join("loop1")).unwrap();
        symlink("loop1", root.join("loop2")).unwrap();
        // `a/s1/..` reads like `a` but is the root's parent.
        symlink("a/s1/..", root.join("x")).unwrap();
        symlink("missing/file", root.join("dangling")).unwrap();
        for (link, inside) in [
            ("a/down", true),
            ("a/b/up", true),
            ("a/s1", true),
            ("dangling", true),
            ("x", false),
            ("abs", false),
            ("loop1", false),
        ] {
            assert_eq!(resolves_inside(&root, Path::new(link)), inside, "{link}");
        }
    }
}
