//! The content-addressed artifact store.
//!
//! Layout under the root: `blobs/sha256/<2 hex>/<62 hex>` holds file bytes
//! and artifact manifests alike. A blob is written to a temporary file, hashed
//! while written, then renamed into place read-only, so a blob that exists is
//! complete and immutable, and writing the same bytes twice stores them once.

use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Component, Path, PathBuf};

use sha2::{Digest, Sha256};

#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    #[error("artifact store IO error at {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("artifact {0} does not exist")]
    NotFound(String),
    #[error("artifact {id} is corrupt: {reason}")]
    Corrupt { id: String, reason: String },
    #[error("symlink {path} points outside the artifact ({target})")]
    SymlinkEscapes { path: String, target: String },
    #[error("{path} is neither a file, a directory nor a symlink")]
    UnsupportedFileType { path: String },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> ArtifactError + '_ {
    move |source| ArtifactError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// One entry of an artifact's manifest.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ArtifactEntry {
    File {
        path: String,
        digest: String,
        size: u64,
        executable: bool,
    },
    Dir {
        path: String,
    },
    Symlink {
        path: String,
        target: String,
    },
}

/// An artifact: a tree of files, identified by the digest of its manifest.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Artifact {
    pub id: String,
    pub entries: Vec<ArtifactEntry>,
}

impl Artifact {
    pub fn file_count(&self) -> usize {
        self.entries
            .iter()
            .filter(|e| matches!(e, ArtifactEntry::File { .. }))
            .count()
    }
}

#[derive(Debug, Clone)]
pub struct ArtifactStore {
    root: PathBuf,
}

impl ArtifactStore {
    pub fn open(root: impl Into<PathBuf>) -> Result<ArtifactStore, ArtifactError> {
        let root = root.into();
        let blobs = root.join("blobs").join("sha256");
        fs::create_dir_all(&blobs).map_err(io_err(&blobs))?;
        fs::create_dir_all(root.join("tmp")).map_err(io_err(&root))?;
        Ok(ArtifactStore { root })
    }

    fn blob_path(&self, digest: &str) -> Option<PathBuf> {
        let hex = digest.strip_prefix("sha256:")?;
        if hex.len() != 64
            || !hex
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        {
            return None;
        }
        Some(
            self.root
                .join("blobs")
                .join("sha256")
                .join(&hex[..2])
                .join(&hex[2..]),
        )
    }

    /// Stores bytes from a reader; returns their digest `sha256:<hex>`.
    pub fn put_blob(&self, mut reader: impl Read) -> Result<(String, u64), ArtifactError> {
        let tmp_dir = self.root.join("tmp");
        let mut tmp = tempfile_in(&tmp_dir)?;
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 64 * 1024];
        let mut size = 0u64;
        loop {
            let n = reader.read(&mut buf).map_err(io_err(&tmp.path))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            tmp.file.write_all(&buf[..n]).map_err(io_err(&tmp.path))?;
            size += n as u64;
        }
        let digest = format!("sha256:{}", hex::encode(hasher.finalize()));
        let dest = self
            .blob_path(&digest)
            .ok_or_else(|| ArtifactError::NotFound(digest.clone()))?;
        if dest.exists() {
            return Ok((digest, size));
        }
        if let Some(parent) = dest.parent() {
            fs::create_dir_all(parent).map_err(io_err(parent))?;
        }
        tmp.file.sync_all().map_err(io_err(&tmp.path))?;
        fs::set_permissions(&tmp.path, fs::Permissions::from_mode(0o444))
            .map_err(io_err(&tmp.path))?;
        fs::rename(&tmp.path, &dest).map_err(io_err(&dest))?;
        tmp.keep = true;
        Ok((digest, size))
    }

    /// Moves the file at `path` into the store as the blob `digest`, without
    /// reading it again. This is for large files that were hashed while they
    /// arrived (the registry's uploads): re-reading a gigabyte only to hash
    /// it twice would double the cost of every push. The caller vouches that
    /// `digest` is the SHA-256 of the file's bytes and that nothing writes to
    /// the file any more. If the blob already exists the file is removed and
    /// the stored blob kept. Returns the blob's size.
    pub fn put_verified_file(&self, path: &Path, digest: &str) -> Result<u64, ArtifactError> {
        let dest = self
            .blob_path(digest)
            .ok_or_else(|| ArtifactError::Corrupt {
                id: digest.to_string(),
                reason: "not a sha256 digest".to_string(),
            })?;
        let file = fs::File::open(path).map_err(io_err(path))?;
        let size = file.metadata().map_err(io_err(path))?.len();
        if dest.exists() {
            fs::remove_file(path).map_err(io_err(path))?;
            return Ok(size);
        }
        if let Some(parent) = dest.parent() {
            fs::create_dir_all(parent).map_err(io_err(parent))?;
        }
        // The same guarantee as put_blob: a blob that exists is complete on
        // disk, even after a power loss.
        file.sync_all().map_err(io_err(path))?;
        drop(file);
        fs::set_permissions(path, fs::Permissions::from_mode(0o444)).map_err(io_err(path))?;
        match fs::rename(path, &dest) {
            Ok(()) => Ok(size),
            // A file on another file system can't be renamed into place:
            // copy it through the store's own temp dir, which is on ours.
            Err(e) if e.kind() == io::ErrorKind::CrossesDevices => {
                let mut tmp = tempfile_in(&self.root.join("tmp"))?;
                let mut src = fs::File::open(path).map_err(io_err(path))?;
                io::copy(&mut src, &mut tmp.file).map_err(io_err(&tmp.path))?;
                tmp.file.sync_all().map_err(io_err(&tmp.path))?;
                fs::set_permissions(&tmp.path, fs::Permissions::from_mode(0o444))
                    .map_err(io_err(&tmp.path))?;
                fs::rename(&tmp.path, &dest).map_err(io_err(&dest))?;
                tmp.keep = true;
                fs::remove_file(path).map_err(io_err(path))?;
                Ok(size)
            }
            Err(e) => Err(ArtifactError::Io {
                path: dest.display().to_string(),
                source: e,
            }),
        }
    }

    pub fn blob_exists(&self, digest: &str) -> bool {
        self.blob_path(digest).is_some_and(|p| p.exists())
    }

    /// Deletes a blob's bytes; returns how many there were, `None` when the
    /// blob did not exist. Only for garbage collection: the caller must know
    /// that nothing (no artifact, no registry link) uses the blob any more.
    pub fn remove_blob(&self, digest: &str) -> Result<Option<u64>, ArtifactError> {
        let Some(path) = self.blob_path(digest) else {
            return Ok(None);
        };
        let size = match fs::symlink_metadata(&path) {
            Ok(meta) => meta.len(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err(&path)(e)),
        };
        match fs::remove_file(&path) {
            Ok(()) => Ok(Some(size)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err(&path)(e)),
        }
    }

    pub fn open_blob(&self, digest: &str) -> Result<fs::File, ArtifactError> {
        let path = self
            .blob_path(digest)
            .ok_or_else(|| ArtifactError::NotFound(digest.to_string()))?;
        fs::File::open(&path).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => ArtifactError::NotFound(digest.to_string()),
            _ => ArtifactError::Io {
                path: path.display().to_string(),
                source: e,
            },
        })
    }

    /// Stores the tree under `dir` as an artifact. Symlinks are kept as
    /// symlinks when they stay inside the tree, resolved for real (through
    /// the other links of the tree, see [`resolves_inside`]); one that points
    /// outside is an error, so an artifact can never smuggle in a host path.
    pub fn import_dir(&self, dir: &Path) -> Result<Artifact, ArtifactError> {
        let mut entries = Vec::new();
        self.walk(dir, dir, &mut entries)?;
        entries.sort_by(|a, b| entry_path(a).cmp(entry_path(b)));
        let manifest = serde_json::to_vec(&entries).map_err(|e| ArtifactError::Corrupt {
            id: dir.display().to_string(),
            reason: e.to_string(),
        })?;
        let (id, _) = self.put_blob(manifest.as_slice())?;
        Ok(Artifact { id, entries })
    }

    fn walk(
        &self,
        root: &Path,
        dir: &Path,
        out: &mut Vec<ArtifactEntry>,
    ) -> Result<(), ArtifactError> {
        let mut children: Vec<_> = fs::read_dir(dir)
            .map_err(io_err(dir))?
            .collect::<Result<_, _>>()
            .map_err(io_err(dir))?;
        children.sort_by_key(|e| e.file_name());
        for child in children {
            let path = child.path();
            let rel = relative(root, &path);
            let meta = fs::symlink_metadata(&path).map_err(io_err(&path))?;
            let ft = meta.file_type();
            if ft.is_symlink() {
                let target = fs::read_link(&path).map_err(io_err(&path))?;
                let target_str = target.to_string_lossy().into_owned();
                if !resolves_inside(root, Path::new(&rel)) {
                    return Err(ArtifactError::SymlinkEscapes {
                        path: rel,
                        target: target_str,
                    });
                }
                out.push(ArtifactEntry::Symlink {
                    path: rel,
                    target: target_str,
                });
            } else if ft.is_dir() {
                out.push(ArtifactEntry::Dir { path: rel });
                self.walk(root, &path, out)?;
            } else if ft.is_file() {
                let file = fs::File::open(&path).map_err(io_err(&path))?;
                let (digest, size) = self.put_blob(file)?;
                let executable = meta.permissions().mode() & 0o111 != 0;
                out.push(ArtifactEntry::File {
                    path: rel,
                    digest,
                    size,
                    executable,
                });
            } else {
                return Err(ArtifactError::UnsupportedFileType { path: rel });
            }
        }
        Ok(())
    }

    /// Stores an artifact whose files are already blobs of the store, from
    /// its manifest alone: what a build agent made and uploaded. The
    /// manifest is held to what [`ArtifactStore::import_dir`] would have
    /// written and more, since it comes from another host: every path is
    /// relative and plain and named once; no entry lies under a file or a
    /// link; every file's blob is here with the size claimed; a link's
    /// target is relative, may climb with leading `..` only, and stays
    /// inside the artifact. Nothing is stored unless all of it holds.
    pub fn import_manifest(&self, entries: Vec<ArtifactEntry>) -> Result<Artifact, ArtifactError> {
        let invalid = |path: &str, reason: &str| ArtifactError::Corrupt {
            id: "(uploaded manifest)".to_string(),
            reason: format!("{path}: {reason}"),
        };
        let mut entries = entries;
        entries.sort_by(|a, b| entry_path(a).cmp(entry_path(b)));
        let mut leaves = std::collections::BTreeSet::new();
        for (i, entry) in entries.iter().enumerate() {
            let path = entry_path(entry);
            let plain = path
                .split('/')
                .all(|c| !c.is_empty() && c != "." && c != "..");
            if !plain || !is_safe_relative(path) || path.len() > 4096 {
                return Err(invalid(path, "not a plain relative path"));
            }
            if i > 0 && entry_path(&entries[i - 1]) == path {
                return Err(invalid(path, "named twice"));
            }
            let mut prefix = PathBuf::new();
            for component in Path::new(path)
                .parent()
                .into_iter()
                .flat_map(Path::components)
            {
                prefix.push(component);
                if leaves.contains(prefix.as_path()) {
                    return Err(invalid(path, "lies under a file or a link"));
                }
            }
            match entry {
                ArtifactEntry::Dir { .. } => {}
                ArtifactEntry::File { digest, size, .. } => {
                    let blob = self
                        .blob_path(digest)
                        .ok_or_else(|| invalid(path, "not a sha256 digest"))?;
                    let stored = fs::metadata(&blob)
                        .map_err(|_| invalid(path, &format!("blob {digest} was not uploaded")))?;
                    if stored.len() != *size {
                        return Err(invalid(path, "its size is not its blob's"));
                    }
                    leaves.insert(PathBuf::from(path));
                }
                ArtifactEntry::Symlink { target, .. } => {
                    if !link_stays_inside(path, target) {
                        return Err(invalid(
                            path,
                            &format!("link to {target} leaves the artifact"),
                        ));
                    }
                    leaves.insert(PathBuf::from(path));
                }
            }
        }
        let manifest =
            serde_json::to_vec(&entries).map_err(|e| invalid("manifest", &e.to_string()))?;
        let (id, _) = self.put_blob(manifest.as_slice())?;
        Ok(Artifact { id, entries })
    }

    /// Reads an artifact's manifest.
    pub fn artifact(&self, id: &str) -> Result<Artifact, ArtifactError> {
        let mut bytes = Vec::new();
        self.open_blob(id)?
            .read_to_end(&mut bytes)
            .map_err(io_err(Path::new(id)))?;
        let entries: Vec<ArtifactEntry> =
            serde_json::from_slice(&bytes).map_err(|e| ArtifactError::Corrupt {
                id: id.to_string(),
                reason: e.to_string(),
            })?;
        for e in &entries {
            if !is_safe_relative(entry_path(e)) {
                return Err(ArtifactError::Corrupt {
                    id: id.to_string(),
                    reason: format!("unsafe path {}", entry_path(e)),
                });
            }
        }
        Ok(Artifact {
            id: id.to_string(),
            entries,
        })
    }

    /// Writes a fresh, writable copy of an artifact into `dest` (created if
    /// missing), so an action can change its working copy freely.
    pub fn materialize(&self, id: &str, dest: &Path) -> Result<Artifact, ArtifactError> {
        let artifact = self.artifact(id)?;
        fs::create_dir_all(dest).map_err(io_err(dest))?;
        for entry in &artifact.entries {
            match entry {
                ArtifactEntry::Dir { path } => {
                    let p = dest.join(path);
                    fs::create_dir_all(&p).map_err(io_err(&p))?;
                }
                ArtifactEntry::File {
                    path,
                    digest,
                    executable,
                    ..
                } => {
                    let p = dest.join(path);
                    if let Some(parent) = p.parent() {
                        fs::create_dir_all(parent).map_err(io_err(parent))?;
                    }
                    let mut src = self.open_blob(digest)?;
                    let mut out = fs::File::create(&p).map_err(io_err(&p))?;
                    io::copy(&mut src, &mut out).map_err(io_err(&p))?;
                    let mode = if *executable { 0o755 } else { 0o644 };
                    fs::set_permissions(&p, fs::Permissions::from_mode(mode))
                        .map_err(io_err(&p))?;
                }
                ArtifactEntry::Symlink { path, target } => {
                    let p = dest.join(path);
                    symlink(target, &p).map_err(io_err(&p))?;
                }
            }
        }
        Ok(artifact)
    }

    /// Reads one file of an artifact, e.g. `imagedefinitions.json`.
    pub fn read_file(&self, id: &str, path: &str) -> Result<Option<Vec<u8>>, ArtifactError> {
        let artifact = self.artifact(id)?;
        for entry in &artifact.entries {
            if let ArtifactEntry::File {
                path: p, digest, ..
            } = entry
                && p == path
            {
                let mut bytes = Vec::new();
                self.open_blob(digest)?
                    .read_to_end(&mut bytes)
                    .map_err(io_err(Path::new(p)))?;
                return Ok(Some(bytes));
            }
        }
        Ok(None)
    }
}

fn entry_path(e: &ArtifactEntry) -> &str {
    match e {
        ArtifactEntry::File { path, .. }
        | ArtifactEntry::Dir { path }
        | ArtifactEntry::Symlink { path, .. } => path,
    }
}

fn relative(root: &Path, path: &Path) -> String {
    path.strip_prefix(root)
        .unwrap_or(path)
        .to_string_lossy()
        .into_owned()
}

/// Whether a link at `path` to `target` stays inside the artifact by its
/// text alone: a relative target whose only `..` come first, no more of
/// them than `path` has parent directories. (A `..` after a name could
/// climb out of where a link in the middle points.)
fn link_stays_inside(path: &str, target: &str) -> bool {
    if target.is_empty() || target.starts_with('/') || target.len() > 4096 {
        return false;
    }
    let depth = Path::new(path).components().count().saturating_sub(1);
    let mut climbs = 0;
    let mut named = false;
    for component in Path::new(target).components() {
        match component {
            Component::ParentDir if !named => climbs += 1,
            Component::Normal(_) => named = true,
            Component::CurDir => {}
            _ => return false,
        }
    }
    climbs <= depth
}

fn is_safe_relative(path: &str) -> bool {
    !path.is_empty()
        && Path::new(path)
            .components()
            .all(|c| matches!(c, Component::Normal(_)))
}

use gantry_confine::resolves_inside;

struct TempFile {
    path: PathBuf,
    file: fs::File,
    keep: bool,
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.keep {
            let _ = fs::remove_file(&self.path);
        }
    }
}

fn tempfile_in(dir: &Path) -> Result<TempFile, ArtifactError> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    for _ in 0..100 {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = dir.join(format!("blob-{}-{n}", std::process::id()));
        match fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
        {
            Ok(file) => {
                return Ok(TempFile {
                    path,
                    file,
                    keep: false,
                });
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => {
                return Err(ArtifactError::Io {
                    path: path.display().to_string(),
                    source: e,
                });
            }
        }
    }
    Err(ArtifactError::Io {
        path: dir.display().to_string(),
        source: io::Error::other("no free temporary name"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (path, content) in files {
            let p = dir.path().join(path);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(p, content).unwrap();
        }
        dir
    }

    #[test]
    fn identical_trees_share_one_id_and_each_content_is_stored_once() {
        let store_dir = tempfile::tempdir().unwrap();
        let store = ArtifactStore::open(store_dir.path()).unwrap();
        let a = store
            .import_dir(tree(&[("x.txt", "same"), ("d/y.txt", "same")]).path())
            .unwrap();
        let b = store
            .import_dir(tree(&[("x.txt", "same"), ("d/y.txt", "same")]).path())
            .unwrap();
        assert_eq!(a.id, b.id);
        let c = store
            .import_dir(tree(&[("x.txt", "other")]).path())
            .unwrap();
        assert_ne!(a.id, c.id);
        // One blob for "same", one for "other", and two manifests.
        let count = walk_count(&store_dir.path().join("blobs"));
        assert_eq!(count, 4);
    }

    #[test]
    fn a_removed_blob_is_gone_and_removing_it_again_finds_nothing() {
        let store_dir = tempfile::tempdir().unwrap();
        let store = ArtifactStore::open(store_dir.path()).unwrap();
        let (digest, size) = store.put_blob(&b"garbage"[..]).unwrap();
        assert_eq!(store.remove_blob(&digest).unwrap(), Some(size));
        assert!(!store.blob_exists(&digest));
        assert_eq!(store.remove_blob(&digest).unwrap(), None);
        assert_eq!(store.remove_blob("sha256:../../x").unwrap(), None);
        // The same bytes can be stored again.
        assert_eq!(store.put_blob(&b"garbage"[..]).unwrap().0, digest);
        assert!(store.blob_exists(&digest));
    }

    fn walk_count(dir: &Path) -> usize {
        fs::read_dir(dir)
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                if e.file_type().unwrap().is_dir() {
                    walk_count(&e.path())
                } else {
                    1
                }
            })
            .sum()
    }

    #[test]
    fn materialize_gives_a_writable_copy_that_leaves_the_store_untouched() {
        let store_dir = tempfile::tempdir().unwrap();
        let store = ArtifactStore::open(store_dir.path()).unwrap();
        let src = tree(&[("a/b.txt", "hello")]);
        let art = store.import_dir(src.path()).unwrap();
        let out = tempfile::tempdir().unwrap();
        store.materialize(&art.id, out.path()).unwrap();
        let p = out.path().join("a/b.txt");
        assert_eq!(fs::read_to_string(&p).unwrap(), "hello");
        fs::write(&p, "changed").unwrap();
        assert_eq!(
            store.read_file(&art.id, "a/b.txt").unwrap().unwrap(),
            b"hello"
        );
    }

    #[test]
    fn a_symlink_out_of_the_tree_is_refused() {
        let store_dir = tempfile::tempdir().unwrap();
        let store = ArtifactStore::open(store_dir.path()).unwrap();
        let src = tree(&[("a.txt", "x")]);
        symlink("/etc/passwd", src.path().join("evil")).unwrap();
        assert!(matches!(
            store.import_dir(src.path()),
            Err(ArtifactError::SymlinkEscapes { .. })
        ));
        let src2 = tree(&[("d/a.txt", "x")]);
        symlink("../../x", src2.path().join("d/up")).unwrap();
        assert!(matches!(
            store.import_dir(src2.path()),
            Err(ArtifactError::SymlinkEscapes { .. })
        ));
        let ok = tree(&[("d/a.txt", "x")]);
        symlink("a.txt", ok.path().join("d/link")).unwrap();
        assert!(store.import_dir(ok.path()).is_ok());
    }

    #[test]
    fn a_symlink_escaping_through_another_symlink_is_refused() {
        // The attack from the security review: `a/s1 -> ..` is the root, so
        // `x -> a/s1/..` is the root's parent, while `a/s1/..` reads as `a`.
        let store_dir = tempfile::tempdir().unwrap();
        let store = ArtifactStore::open(store_dir.path()).unwrap();
        let src = tree(&[("a/file", "x")]);
        symlink("..", src.path().join("a/s1")).unwrap();
        symlink("a/s1/..", src.path().join("x")).unwrap();
        match store.import_dir(src.path()) {
            Err(ArtifactError::SymlinkEscapes { path, .. }) => assert_eq!(path, "x"),
            other => panic!("expected SymlinkEscapes, got {other:?}"),
        }
        // A link to a directory that is itself a link, going one level deeper
        // each time, climbs out step by step.
        let chain = tree(&[("d/e/f", "x")]);
        symlink(".", chain.path().join("d/here")).unwrap();
        symlink("d/here/here/../..", chain.path().join("up")).unwrap();
        assert!(matches!(
            store.import_dir(chain.path()),
            Err(ArtifactError::SymlinkEscapes { .. })
        ));
        // Links through links that stay inside, and dangling ones inside, are kept.
        let ok = tree(&[("a/file", "x"), ("b/c/file", "y")]);
        symlink("../b/c", ok.path().join("a/s1")).unwrap();
        symlink("a/s1/..", ok.path().join("x")).unwrap();
        symlink("a/s1/../../a/file", ok.path().join("y")).unwrap();
        symlink("not-yet/there", ok.path().join("dangling")).unwrap();
        let artifact = store.import_dir(ok.path()).unwrap();
        assert!(artifact.entries.contains(&ArtifactEntry::Symlink {
            path: "x".into(),
            target: "a/s1/..".into()
        }));
        // A loop is refused rather than followed forever.
        let looped = tree(&[("a", "x")]);
        symlink("l2", looped.path().join("l1")).unwrap();
        symlink("l1", looped.path().join("l2")).unwrap();
        assert!(store.import_dir(looped.path()).is_err());
    }

    #[test]
    fn put_verified_file_moves_the_file_in_read_only_and_keeps_one_copy() {
        let store_dir = tempfile::tempdir().unwrap();
        let store = ArtifactStore::open(store_dir.path()).unwrap();
        let digest = format!("sha256:{}", hex::encode(Sha256::digest(b"layer")));
        let upload = store_dir.path().join("upload");
        fs::write(&upload, b"layer").unwrap();
        assert_eq!(store.put_verified_file(&upload, &digest).unwrap(), 5);
        assert!(!upload.exists());
        let mut bytes = Vec::new();
        store
            .open_blob(&digest)
            .unwrap()
            .read_to_end(&mut bytes)
            .unwrap();
        assert_eq!(bytes, b"layer");
        let meta = store.open_blob(&digest).unwrap().metadata().unwrap();
        assert_eq!(meta.permissions().mode() & 0o222, 0);
        // The same bytes again: the new file goes away, the blob stays.
        fs::write(&upload, b"layer").unwrap();
        assert_eq!(store.put_verified_file(&upload, &digest).unwrap(), 5);
        assert!(!upload.exists());
        assert_eq!(walk_count(&store_dir.path().join("blobs")), 1);
        // A digest that is not sha256 never becomes a path.
        fs::write(&upload, b"x").unwrap();
        assert!(store.put_verified_file(&upload, "sha256:../../x").is_err());
        assert!(upload.exists());
    }

    #[test]
    fn resolution_follows_links_and_stops_at_the_root() {
        let dir = tree(&[("d/a", "x")]);
        symlink("../d/a", dir.path().join("d/up")).unwrap();
        symlink("../../a", dir.path().join("d/out")).unwrap();
        symlink("/a", dir.path().join("abs")).unwrap();
        assert!(resolves_inside(dir.path(), Path::new("d/up")));
        assert!(!resolves_inside(dir.path(), Path::new("d/out")));
        assert!(!resolves_inside(dir.path(), Path::new("abs")));
    }

    #[test]
    fn an_uploaded_manifest_makes_the_artifact_import_dir_would() {
        let src = tree(&[("a/b.txt", "hello"), ("c.txt", "world")]);
        std::os::unix::fs::symlink("../c.txt", src.path().join("a/link")).unwrap();
        let here = tempfile::tempdir().unwrap();
        let local = ArtifactStore::open(here.path()).unwrap();
        let made = local.import_dir(src.path()).unwrap();
        // The server's store gets the file blobs, then the manifest.
        let there = tempfile::tempdir().unwrap();
        let server = ArtifactStore::open(there.path()).unwrap();
        for entry in &made.entries {
            if let ArtifactEntry::File { digest, .. } = entry {
                server.put_blob(local.open_blob(digest).unwrap()).unwrap();
            }
        }
        let mut shuffled = made.entries.clone();
        shuffled.reverse();
        let imported = server.import_manifest(shuffled).unwrap();
        assert_eq!(imported, made);
        let out = tempfile::tempdir().unwrap();
        server.materialize(&imported.id, out.path()).unwrap();
        assert_eq!(
            fs::read_to_string(out.path().join("a/link")).unwrap(),
            "world"
        );
    }

    #[test]
    fn an_uploaded_manifest_that_climbs_out_or_lacks_a_blob_stores_nothing() {
        let there = tempfile::tempdir().unwrap();
        let server = ArtifactStore::open(there.path()).unwrap();
        let (digest, size) = server.put_blob(&b"x"[..]).unwrap();
        let file = |path: &str| ArtifactEntry::File {
            path: path.into(),
            digest: digest.clone(),
            size,
            executable: false,
        };
        let link = |path: &str, target: &str| ArtifactEntry::Symlink {
            path: path.into(),
            target: target.into(),
        };
        let bad: Vec<Vec<ArtifactEntry>> = vec![
            vec![file("../x")],
            vec![file("/etc/x")],
            vec![file("a/./b")],
            vec![link("out", "..")],
            vec![link("a/out", "../..")],
            vec![link("abs", "/etc/passwd")],
            // A `..` after a name: `self` points at the root, so
            // `self/..` would be the root's parent.
            vec![link("self", "."), link("up", "self/..")],
            // A file written through a link that points out.
            vec![link("d", "."), file("d/x")],
            vec![file("f"), file("f/x")],
            vec![file("x"), file("x")],
            vec![ArtifactEntry::File {
                path: "big".into(),
                digest: digest.clone(),
                size: size + 1,
                executable: false,
            }],
            vec![ArtifactEntry::File {
                path: "missing".into(),
                digest: format!("sha256:{}", "0".repeat(64)),
                size: 1,
                executable: false,
            }],
        ];
        let blobs = |dir: &Path| {
            let mut n = 0;
            let mut stack = vec![dir.to_path_buf()];
            while let Some(d) = stack.pop() {
                for e in fs::read_dir(&d).unwrap() {
                    let p = e.unwrap().path();
                    if p.is_dir() {
                        stack.push(p);
                    } else {
                        n += 1;
                    }
                }
            }
            n
        };
        let before = blobs(there.path());
        for entries in bad {
            let shown = format!("{entries:?}");
            assert!(server.import_manifest(entries).is_err(), "{shown}");
        }
        assert_eq!(blobs(there.path()), before, "no manifest was stored");
        // Leading `..` within the depth are fine.
        server
            .import_manifest(vec![file("a/b/x"), link("a/b/l", "../../a/b/x")])
            .unwrap();
    }
}
