//! Unpacking image layers into a root directory, as a container engine would.
//!
//! Layers apply in order, each a tar (gzip-compressed or not). Three rules keep
//! the result faithful and the host safe:
//!
//! - **Nothing lands outside the root.** An entry path with `..` or a leading
//!   `/` is refused outright. A symlink met on the way to an entry (say a layer
//!   holds `etc -> /host-etc`, then `etc/passwd`) is resolved as it would be
//!   inside the container: absolute targets start again at the root and `..`
//!   stops at it. The same resolution serves whiteouts and hard-link targets.
//! - **Whiteouts hide lower layers only.** `.wh.NAME` deletes `NAME`;
//!   `.wh..wh..opq` empties its directory. The OCI spec says a whiteout never
//!   hides an entry of its own layer, while a tar may list the whiteout after
//!   such entries (`dir/a-b` sorts before `dir/.wh..wh..opq`), so each layer is
//!   read twice: first its whiteouts are applied, then its entries written.
//! - **Modes are kept**, except setuid and setgid (the files belong to gantry's
//!   user; a setuid bit would only grant that user's rights to whoever runs
//!   the file, which is nothing an image should ask for) and write access for
//!   others (any local user could change what a replica runs; a replica's
//!   `/tmp` is the host's anyway). Directories stay
//!   writable by their owner until every layer is in, because a later layer may
//!   write into a directory an earlier one made read-only; their own modes are
//!   applied last, deepest first. Owners are not changed (that needs root).
//!   A later entry may have put a symlink where such a directory was (or
//!   where one of its ancestors was), so the final modes are set through
//!   handles opened component by component without following any symlink:
//!   a mode meant for the image never lands on a host file. A directory that
//!   a later entry replaced or whited out keeps no saved mode.
//!
//! Device files are skipped: creating them needs privileges, and a process on
//! the host uses the host's `/dev` anyway.

use std::collections::{BTreeMap, VecDeque};
use std::ffi::{OsStr, OsString};
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use tar::EntryType;

/// Linux's limit on symlinks followed while resolving one path.
const MAX_SYMLINK_HOPS: u32 = 40;
/// The marker that makes a directory opaque.
const OPAQUE: &str = ".wh..wh..opq";
/// The prefix of a whiteout file.
const WHITEOUT_PREFIX: &str = ".wh.";
/// The permission bits kept: no setuid, no setgid, not writable by others
/// (see the module doc).
const KEPT_MODE_BITS: u32 = 0o1775;

/// Applies layers to one root; [`Unpacker::finish`] sets directory modes.
pub(crate) struct Unpacker {
    root: PathBuf,
    /// Final modes of the directories the layers created, applied by `finish`.
    dir_modes: BTreeMap<PathBuf, u32>,
}

impl Unpacker {
    /// An unpacker writing into `root`, which must exist.
    pub(crate) fn new(root: &Path) -> Unpacker {
        Unpacker {
            root: root.to_path_buf(),
            dir_modes: BTreeMap::new(),
        }
    }

    /// Applies the layer in file `layer` (a tar, gzip-compressed or not).
    /// Errors name the entry they are about.
    pub(crate) fn apply_layer(&mut self, layer: &Path) -> Result<(), String> {
        // Pass 1: whiteouts, against what the lower layers left.
        let mut archive = tar::Archive::new(open_layer(layer)?);
        for entry in archive
            .entries()
            .map_err(|e| format!("reading the tar: {e}"))?
        {
            let entry = entry.map_err(|e| format!("reading the tar: {e}"))?;
            let path = clean_entry_path(&entry.path_bytes())?;
            if is_whiteout(&path) {
                self.whiteout(&path)
                    .map_err(|e| format!("whiteout {}: {e}", path.display()))?;
            }
        }
        // Pass 2: everything else.
        let mut archive = tar::Archive::new(open_layer(layer)?);
        for entry in archive
            .entries()
            .map_err(|e| format!("reading the tar: {e}"))?
        {
            let mut entry = entry.map_err(|e| format!("reading the tar: {e}"))?;
            let path = clean_entry_path(&entry.path_bytes())?;
            if is_whiteout(&path) {
                continue;
            }
            self.write(&mut entry, &path)
                .map_err(|e| format!("entry {}: {e}", path.display()))?;
        }
        Ok(())
    }

    /// Gives every directory the layers made its own mode, deepest first so a
    /// read-only parent does not block its children. Each directory is opened
    /// from the root without following symlinks (see the module doc); one
    /// that is no longer a directory there was replaced, and is skipped.
    pub(crate) fn finish(self) -> Result<(), String> {
        let root = File::open(&self.root)
            .map_err(|e| format!("opening the root {}: {e}", self.root.display()))?;
        for (dir, mode) in self.dir_modes.iter().rev() {
            let Ok(relative) = dir.strip_prefix(&self.root) else {
                continue;
            };
            let handle = match open_dir_beneath(&root, relative) {
                Ok(handle) => handle,
                Err(e) if is_replaced(&e) => continue,
                Err(e) => return Err(format!("opening {}: {e}", dir.display())),
            };
            handle
                .set_permissions(fs::Permissions::from_mode(*mode))
                .map_err(|e| format!("setting the mode of {}: {e}", dir.display()))?;
        }
        Ok(())
    }

    /// Removes whatever is at `path` and forgets the saved modes of the
    /// directories that went with it.
    fn remove(&mut self, path: &Path) -> io::Result<()> {
        self.forget(path);
        remove_any(path)
    }

    /// Drops the saved modes of `path` and everything below it.
    fn forget(&mut self, path: &Path) {
        // Paths order component by component, so `path`'s descendants
        // follow it directly.
        let gone: Vec<PathBuf> = self
            .dir_modes
            .range(path.to_path_buf()..)
            .map(|(dir, _)| dir)
            .take_while(|dir| dir.starts_with(path))
            .cloned()
            .collect();
        for dir in gone {
            self.dir_modes.remove(&dir);
        }
    }

    fn whiteout(&mut self, path: &Path) -> io::Result<()> {
        let parent = resolve_in_root(&self.root, path.parent().unwrap_or(Path::new("")), true)?;
        let name = path.file_name().unwrap_or_default();
        if name == OPAQUE {
            let entries = match fs::read_dir(&parent) {
                Ok(entries) => entries,
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
                Err(e) => return Err(e),
            };
            for entry in entries {
                self.remove(&entry?.path())?;
            }
            return Ok(());
        }
        let hidden = name
            .to_str()
            .and_then(|n| n.strip_prefix(WHITEOUT_PREFIX))
            .map(OsString::from)
            .unwrap_or_default();
        if hidden.is_empty() || hidden == "." || hidden == ".." {
            return Err(io::Error::other("names no file"));
        }
        self.remove(&parent.join(hidden))
    }

    fn write<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>, path: &Path) -> io::Result<()> {
        let Some(name) = path.file_name() else {
            // The root itself (`./`): its mode is the data dir's business.
            return Ok(());
        };
        let parent = resolve_in_root(&self.root, path.parent().unwrap_or(Path::new("")), true)?;
        fs::create_dir_all(&parent)?;
        let dest = parent.join(name);
        let (entry_type, mode, mtime) = {
            let header = entry.header();
            let mode = header.mode()? & KEPT_MODE_BITS;
            (header.entry_type(), mode, header.mtime().unwrap_or(0))
        };
        let existing = fs::symlink_metadata(&dest).ok();
        match entry_type {
            EntryType::Directory => {
                match existing {
                    Some(meta) if meta.is_dir() => {}
                    Some(_) => {
                        self.remove(&dest)?;
                        fs::create_dir(&dest)?;
                    }
                    None => fs::create_dir(&dest)?,
                }
                // Owner-writable until `finish`, so later entries can go in.
                fs::set_permissions(&dest, fs::Permissions::from_mode(mode | 0o700))?;
                self.dir_modes.insert(dest, mode);
            }
            EntryType::Regular | EntryType::Continuous => {
                if existing.is_some() {
                    self.remove(&dest)?;
                }
                let mut file = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&dest)?;
                io::copy(entry, &mut file)?;
                file.set_permissions(fs::Permissions::from_mode(mode))?;
                file.set_modified(UNIX_EPOCH + Duration::from_secs(mtime))?;
            }
            EntryType::Symlink => {
                let target = entry
                    .link_name()?
                    .ok_or_else(|| io::Error::other("symlink without a target"))?;
                if existing.is_some() {
                    self.remove(&dest)?;
                }
                std::os::unix::fs::symlink(target, &dest)?;
            }
            EntryType::Link => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| io::Error::other("hard link without a target"))?;
                let target = clean_entry_path(&target).map_err(io::Error::other)?;
                // A hard link names an entry, not what a symlink there points to.
                let source = resolve_in_root(&self.root, &target, false)?;
                if fs::symlink_metadata(&source)?.is_dir() {
                    return Err(io::Error::other("hard link to a directory"));
                }
                if source == dest {
                    return Ok(());
                }
                if existing.is_some() {
                    self.remove(&dest)?;
                }
                fs::hard_link(&source, &dest)?;
            }
            EntryType::Char | EntryType::Block | EntryType::Fifo => {
                tracing::debug!(entry = %path.display(), "skipping a device or fifo entry");
            }
            // Pax and GNU headers the tar reader did not fold into an entry carry
            // no file of their own.
            EntryType::XGlobalHeader
            | EntryType::XHeader
            | EntryType::GNULongName
            | EntryType::GNULongLink => {}
            other => {
                return Err(io::Error::other(format!(
                    "unsupported entry type {other:?}"
                )));
            }
        }
        Ok(())
    }
}

/// Opens a layer file, decompressing it if it is gzip (told by its magic bytes,
/// which is more reliable than a media type some registries get wrong).
fn open_layer(layer: &Path) -> Result<Box<dyn Read>, String> {
    let open_error = |e: io::Error| format!("opening the layer: {e}");
    let mut file = File::open(layer).map_err(open_error)?;
    let mut magic = [0u8; 4];
    let mut read = 0;
    while read < magic.len() {
        match file.read(&mut magic[read..]) {
            Ok(0) => break,
            Ok(n) => read += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(open_error(e)),
        }
    }
    let file = File::open(layer).map_err(open_error)?;
    if magic[..read].starts_with(&[0x1f, 0x8b]) {
        Ok(Box::new(flate2::read::GzDecoder::new(BufReader::new(file))))
    } else if magic[..read] == [0x28, 0xb5, 0x2f, 0xfd] {
        Err("zstd-compressed layers are not supported (push the image with gzip layers)".to_owned())
    } else {
        Ok(Box::new(BufReader::new(file)))
    }
}

/// An entry's path as a relative path of plain names; `..` and absolute paths
/// are refused, `.` components dropped.
pub(crate) fn clean_entry_path(raw: &[u8]) -> Result<PathBuf, String> {
    let path = Path::new(<OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(raw));
    let mut clean = PathBuf::new();
    for component in path.components() {
        match component {
            Component::Normal(name) => clean.push(name),
            Component::CurDir => {}
            Component::ParentDir => {
                return Err(format!(
                    "entry {}: '..' would escape the root; refused",
                    path.display()
                ));
            }
            Component::RootDir | Component::Prefix(_) => {
                return Err(format!(
                    "entry {}: absolute paths are refused in a layer",
                    path.display()
                ));
            }
        }
    }
    Ok(clean)
}

fn is_whiteout(path: &Path) -> bool {
    path.file_name()
        .and_then(OsStr::to_str)
        .is_some_and(|name| name.starts_with(WHITEOUT_PREFIX))
}

/// The directory at `relative` below `root`, opened one component at a time
/// with `O_NOFOLLOW`: a symlink anywhere on the way is an error (`ELOOP`),
/// never followed, so the handle is always inside the root.
fn open_dir_beneath(root: &File, relative: &Path) -> io::Result<File> {
    use nix::fcntl::{OFlag, openat};
    use nix::sys::stat::Mode;
    use std::os::fd::OwnedFd;

    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let mut current = OwnedFd::from(root.try_clone()?);
    for component in relative.components() {
        let Component::Normal(name) = component else {
            return Err(io::Error::other(format!(
                "{} is not a plain relative path",
                relative.display()
            )));
        };
        current = openat(&current, name, flags, Mode::empty()).map_err(io::Error::from)?;
    }
    Ok(File::from(current))
}

/// Whether opening a saved directory failed because something else took its
/// place: it is gone, a symlink (`ELOOP` under `O_NOFOLLOW`) or not a
/// directory.
fn is_replaced(error: &io::Error) -> bool {
    error.kind() == io::ErrorKind::NotFound
        || error.kind() == io::ErrorKind::NotADirectory
        || error.raw_os_error() == Some(nix::errno::Errno::ELOOP as i32)
}

/// Removes a file, symlink or directory tree; an absent path is fine.
fn remove_any(path: &Path) -> io::Result<()> {
    match fs::symlink_metadata(path) {
        // `remove_dir_all` does not follow symlinks, so it stays inside the tree.
        Ok(meta) if meta.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// `path` (relative, or absolute meaning relative to the root) resolved inside
/// `root` the way a chroot would: symlinks are followed with absolute targets
/// starting again at the root and `..` stopping at it. The last component is
/// followed only with `follow_last`. Components that do not exist are kept as
/// they are, so the result may name something still to be created.
pub(crate) fn resolve_in_root(root: &Path, path: &Path, follow_last: bool) -> io::Result<PathBuf> {
    let mut resolved: Vec<OsString> = Vec::new();
    let mut pending: VecDeque<OsString> = components(path).collect();
    let mut hops = 0;
    while let Some(name) = pending.pop_front() {
        if name == ".." {
            resolved.pop();
            continue;
        }
        let mut candidate = root.to_path_buf();
        candidate.extend(&resolved);
        candidate.push(&name);
        if pending.is_empty() && !follow_last {
            resolved.push(name);
            break;
        }
        match fs::symlink_metadata(&candidate) {
            Ok(meta) if meta.file_type().is_symlink() => {
                hops += 1;
                if hops > MAX_SYMLINK_HOPS {
                    return Err(io::Error::other(format!(
                        "too many levels of symbolic links at {}",
                        path.display()
                    )));
                }
                let target = fs::read_link(&candidate)?;
                if target.is_absolute() {
                    resolved.clear();
                }
                let mut next: VecDeque<OsString> = components(&target).collect();
                next.extend(pending);
                pending = next;
            }
            _ => resolved.push(name),
        }
    }
    let mut out = root.to_path_buf();
    out.extend(&resolved);
    Ok(out)
}

/// A path's names, with `..` kept as a name for [`resolve_in_root`] to apply.
fn components(path: &Path) -> impl Iterator<Item = OsString> + '_ {
    path.components().filter_map(|c| match c {
        Component::Normal(name) => Some(name.to_os_string()),
        Component::ParentDir => Some(OsString::from("..")),
        Component::RootDir | Component::CurDir | Component::Prefix(_) => None,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::io::Write;

    /// One entry of a hand-made layer.
    pub(crate) enum Item<'a> {
        Dir(&'a str, u32),
        File(&'a str, &'a str, u32),
        Symlink(&'a str, &'a str),
        HardLink(&'a str, &'a str),
    }

    /// A tar with exactly these entries, written without the tar crate's own
    /// path checks (so `..` and absolute names can be made).
    pub(crate) fn layer_tar(items: &[Item<'_>]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for item in items {
            let mut header = tar::Header::new_gnu();
            let (name, data): (&str, &[u8]) = match item {
                Item::Dir(name, mode) => {
                    header.set_entry_type(EntryType::Directory);
                    header.set_mode(*mode);
                    (name, b"")
                }
                Item::File(name, content, mode) => {
                    header.set_entry_type(EntryType::Regular);
                    header.set_mode(*mode);
                    (name, content.as_bytes())
                }
                Item::Symlink(name, target) | Item::HardLink(name, target) => {
                    header.set_entry_type(if matches!(item, Item::Symlink(..)) {
                        EntryType::Symlink
                    } else {
                        EntryType::Link
                    });
                    header.set_mode(0o777);
                    let link = &mut header.as_old_mut().linkname;
                    link[..target.len()].copy_from_slice(target.as_bytes());
                    (name, b"")
                }
            };
            header.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
            header.set_size(data.len() as u64);
            header.set_cksum();
            builder.append(&header, data).unwrap();
        }
        builder.into_inner().unwrap()
    }

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder.write_all(bytes).unwrap();
        encoder.finish().unwrap()
    }

    /// Unpacks `layers` into a fresh root; returns (temp dir, root, result).
    fn unpack(layers: &[Vec<u8>]) -> (tempfile::TempDir, PathBuf, Result<(), String>) {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        fs::create_dir(&root).unwrap();
        let mut unpacker = Unpacker::new(&root);
        for (i, layer) in layers.iter().enumerate() {
            let file = dir.path().join(format!("layer{i}"));
            fs::write(&file, layer).unwrap();
            if let Err(e) = unpacker.apply_layer(&file) {
                return (dir, root, Err(e));
            }
        }
        let result = unpacker.finish();
        (dir, root, result)
    }

    #[test]
    fn files_directories_and_links_are_written_with_their_modes() {
        let layer = gzip(&layer_tar(&[
            Item::Dir("app/", 0o755),
            Item::File("app/run", "#!/bin/sh\n", 0o4755),
            Item::File("app/data.txt", "data", 0o640),
            Item::Symlink("app/latest", "data.txt"),
            Item::HardLink("app/copy", "app/data.txt"),
            Item::File("implicit/dir/file", "x", 0o644),
            Item::Dir("tmp/", 0o1777),
            Item::File("tmp/open", "x", 0o666),
        ]));
        let (_dir, root, result) = unpack(&[layer]);
        result.unwrap();
        let mode = |p: &str| fs::metadata(root.join(p)).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode("app/run"), 0o755, "setuid is dropped");
        assert_eq!(mode("tmp"), 0o1775, "nothing is writable by others");
        assert_eq!(mode("tmp/open"), 0o664);
        assert_eq!(mode("app/data.txt"), 0o640);
        assert_eq!(mode("app"), 0o755);
        assert_eq!(
            fs::read_link(root.join("app/latest")).unwrap(),
            Path::new("data.txt")
        );
        assert_eq!(fs::read_to_string(root.join("app/copy")).unwrap(), "data");
        assert_eq!(
            fs::read_to_string(root.join("implicit/dir/file")).unwrap(),
            "x"
        );
    }

    #[test]
    fn plain_tar_layers_are_read_too() {
        let (_dir, root, result) = unpack(&[layer_tar(&[Item::File("a", "plain", 0o644)])]);
        result.unwrap();
        assert_eq!(fs::read_to_string(root.join("a")).unwrap(), "plain");
    }

    #[test]
    fn a_dot_dot_entry_is_refused_and_nothing_escapes() {
        let (dir, root, result) = unpack(&[layer_tar(&[Item::File("../evil", "x", 0o644)])]);
        let error = result.unwrap_err();
        assert!(error.contains("'..'"), "{error}");
        assert!(!dir.path().join("evil").exists());
        assert!(fs::read_dir(&root).unwrap().next().is_none());
    }

    #[test]
    fn absolute_entries_are_refused() {
        let (_dir, _root, result) = unpack(&[layer_tar(&[Item::File("/etc/evil", "x", 0o644)])]);
        assert!(result.unwrap_err().contains("absolute"));
    }

    #[test]
    fn writing_through_a_symlink_stays_inside_the_root() {
        let outside = tempfile::tempdir().unwrap();
        let target = outside.path().to_str().unwrap().to_owned();
        let layer = layer_tar(&[
            Item::Symlink("abs", &target),
            Item::Symlink("up", "../../../.."),
            Item::File("abs/through-abs", "a", 0o644),
            Item::File("up/through-up", "b", 0o644),
        ]);
        let (_dir, root, result) = unpack(&[layer]);
        result.unwrap();
        assert!(
            fs::read_dir(outside.path()).unwrap().next().is_none(),
            "nothing written outside"
        );
        // The absolute target is taken as a path inside the root.
        let inside = root
            .join(target.trim_start_matches('/'))
            .join("through-abs");
        assert_eq!(fs::read_to_string(inside).unwrap(), "a");
        // `..` stops at the root.
        assert_eq!(fs::read_to_string(root.join("through-up")).unwrap(), "b");
    }

    #[test]
    fn a_hard_link_to_a_symlinked_path_outside_is_resolved_inside() {
        let layer = layer_tar(&[
            Item::Symlink("etc", "/etc"),
            Item::HardLink("passwd", "etc/passwd"),
        ]);
        let (_dir, _root, result) = unpack(&[layer]);
        // root/etc/passwd does not exist inside the root: the link fails rather than
        // linking the host's /etc/passwd.
        assert!(result.is_err());
    }

    #[test]
    fn whiteouts_delete_lower_files_and_opaque_dirs_empty_them() {
        let lower = layer_tar(&[
            Item::File("keep", "k", 0o644),
            Item::File("gone", "g", 0o644),
            Item::File("tree/sub/deep", "d", 0o644),
            Item::File("opaque/old", "o", 0o644),
        ]);
        let upper = layer_tar(&[
            Item::File(".wh.gone", "", 0o644),
            Item::File(".wh.tree", "", 0o644),
            // Sorted before the marker, yet of the same layer: it must survive.
            Item::File("opaque/a-new", "n", 0o644),
            Item::File("opaque/.wh..wh..opq", "", 0o644),
        ]);
        let (_dir, root, result) = unpack(&[lower, upper]);
        result.unwrap();
        assert!(root.join("keep").exists());
        assert!(!root.join("gone").exists());
        assert!(
            !root.join(".wh.gone").exists(),
            "whiteout files are not written"
        );
        assert!(!root.join("tree").exists());
        assert!(!root.join("opaque/old").exists());
        assert_eq!(fs::read_to_string(root.join("opaque/a-new")).unwrap(), "n");
        assert!(!root.join("opaque/.wh..wh..opq").exists());
    }

    #[test]
    fn an_upper_layer_may_write_into_a_read_only_directory_and_replace_types() {
        let lower = layer_tar(&[
            Item::Dir("ro/", 0o555),
            Item::File("ro/a", "a", 0o444),
            Item::Dir("was-dir/", 0o755),
            Item::File("was-dir/x", "x", 0o644),
        ]);
        let upper = layer_tar(&[
            Item::File("ro/a", "replaced", 0o444),
            Item::File("ro/b", "b", 0o644),
            Item::File("was-dir", "now a file", 0o644),
        ]);
        let (_dir, root, result) = unpack(&[lower, upper]);
        result.unwrap();
        assert_eq!(fs::read_to_string(root.join("ro/a")).unwrap(), "replaced");
        assert_eq!(fs::read_to_string(root.join("ro/b")).unwrap(), "b");
        assert_eq!(
            fs::read_to_string(root.join("was-dir")).unwrap(),
            "now a file"
        );
        let mode = fs::metadata(root.join("ro")).unwrap().permissions().mode() & 0o777;
        assert_eq!(
            mode, 0o555,
            "the directory's own mode is applied at the end"
        );
        // Let the temp dir be removed.
        fs::set_permissions(root.join("ro"), fs::Permissions::from_mode(0o755)).unwrap();
    }

    #[test]
    fn a_directory_replaced_by_a_symlink_does_not_pass_its_mode_to_the_target() {
        // The attack from the security review: a layer makes `d` a directory,
        // a later one puts a symlink to a host file in its place. Setting the
        // saved mode of `d` at the end must not reach the host file.
        let outside = tempfile::tempdir().unwrap();
        let secret = outside.path().join("params-master.key");
        fs::write(&secret, "key").unwrap();
        fs::set_permissions(&secret, fs::Permissions::from_mode(0o600)).unwrap();
        let deep = outside.path().join("deep");
        fs::create_dir(&deep).unwrap();
        fs::create_dir(deep.join("b")).unwrap();
        fs::set_permissions(deep.join("b"), fs::Permissions::from_mode(0o700)).unwrap();
        let lower = layer_tar(&[
            Item::Dir("d/", 0o755),
            Item::Dir("a/", 0o755),
            Item::Dir("a/b/", 0o777),
        ]);
        let upper = layer_tar(&[
            Item::Symlink("d", secret.to_str().unwrap()),
            // An ancestor replaced: `a/b` would now name `deep/b` outside.
            Item::Symlink("a", deep.to_str().unwrap()),
        ]);
        let (_dir, root, result) = unpack(&[lower, upper]);
        result.unwrap();
        let mode = |p: &Path| fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777;
        assert_eq!(
            mode(&secret),
            0o600,
            "the file outside the root kept its mode"
        );
        assert_eq!(
            mode(&deep.join("b")),
            0o700,
            "the directory outside kept its mode"
        );
        assert!(fs::symlink_metadata(root.join("d")).unwrap().is_symlink());
    }

    #[test]
    fn a_directory_replaced_by_a_file_or_whited_out_keeps_no_saved_mode() {
        let lower = layer_tar(&[Item::Dir("d/", 0o555), Item::Dir("w/", 0o555)]);
        let upper = layer_tar(&[
            Item::File("d", "now a file", 0o640),
            Item::File(".wh.w", "", 0o644),
            // `w` comes back as an implicit parent, with no mode of its own.
            Item::File("w/x", "x", 0o644),
        ]);
        let (_dir, root, result) = unpack(&[lower, upper]);
        result.unwrap();
        let mode = |p: &str| fs::metadata(root.join(p)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode("d"), 0o640, "the file keeps its own mode");
        assert_ne!(
            mode("w"),
            0o555,
            "the whited-out directory's mode is not applied"
        );
    }

    #[test]
    fn resolution_follows_symlinks_inside_the_root_and_clamps_dot_dot() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir_all(root.join("usr/bin")).unwrap();
        std::os::unix::fs::symlink("usr/bin", root.join("bin")).unwrap();
        std::os::unix::fs::symlink("/usr/bin/busybox", root.join("usr/bin/sh")).unwrap();
        std::os::unix::fs::symlink("loop", root.join("loop")).unwrap();
        assert_eq!(
            resolve_in_root(root, Path::new("/bin/sh"), true).unwrap(),
            root.join("usr/bin/busybox")
        );
        assert_eq!(
            resolve_in_root(root, Path::new("/bin/sh"), false).unwrap(),
            root.join("usr/bin/sh")
        );
        assert_eq!(
            resolve_in_root(root, Path::new("../../x"), true).unwrap(),
            root.join("x")
        );
        assert!(resolve_in_root(root, Path::new("loop/x"), true).is_err());
    }
}
