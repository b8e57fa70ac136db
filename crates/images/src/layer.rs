//! Reproducible layers: a directory (or one file) as a gzip-compressed tar.
//!
//! Nothing of the build machine may leak into the bytes, or the same sources
//! would give a new digest on every build and promotion by digest would mean
//! nothing. So: entries are sorted by name (bytes), every mtime is the given epoch
//! (0 unless `SOURCE_DATE_EPOCH` is passed in), owner is 0:0 with no user or group
//! names, permission bits are kept, and the gzip header carries no time and no
//! file name at a fixed compression level. The layer is written in one pass while
//! hashing both the tar (the `diff_id`) and the gzip stream (the blob digest).
//!
//! Symlinks are stored as symlinks. A relative one must resolve inside the
//! context; an absolute one, or one climbing out with `..`, is refused: its meaning
//! would depend on what else is in the image, which this layer cannot promise.

use std::ffi::OsString;
use std::fs::{self, File, Metadata};
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use flate2::{Compression, GzBuilder};
use sha2::{Digest as _, Sha256};
use tar::{EntryType, Header};

use crate::digest::Digest;

/// The gzip level of every layer gantry builds. Changing it changes every digest.
pub const GZIP_LEVEL: u32 = 6;

/// The mode of the directories leading to (and including) the destination: the
/// context directory's own mode is an accident of where it was checked out (a
/// temp dir is 0700) and would make `/app` unreadable to a non-root user.
const DEST_DIR_MODE: u32 = 0o755;

/// Why a layer could not be built.
#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    /// A symlink is absolute or resolves outside the context.
    #[error("symlink {path} -> {target} leaves the build context")]
    EscapingSymlink {
        /// The symlink, relative to the context.
        path: PathBuf,
        /// Where it points.
        target: PathBuf,
    },
    /// A socket, fifo or device file: not content an image can carry reproducibly.
    #[error("{path} is a {kind}, which an image layer cannot hold")]
    UnsupportedFile {
        /// The file, relative to the context.
        path: PathBuf,
        /// What kind of file it is.
        kind: &'static str,
    },
    /// The destination is not an absolute path without `..`.
    #[error("layer destination {dest:?} must be an absolute path without '..'")]
    Destination {
        /// The rejected destination.
        dest: String,
    },
    /// Reading the context or writing the layer failed.
    #[error("{path}: {source}")]
    Io {
        /// The file being read or written.
        path: PathBuf,
        /// The IO error.
        source: io::Error,
    },
}

/// What building a layer produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerDigests {
    /// The digest of the compressed blob, as a manifest lists it.
    pub digest: Digest,
    /// The digest of the uncompressed tar, as the config's `rootfs.diff_ids` lists it.
    pub diff_id: Digest,
    /// The compressed size in bytes.
    pub size: u64,
}

/// Writes the layer for `context` (a directory, or a single file) placed at
/// `dest` into `out`, with every mtime set to `mtime`.
pub fn write_layer<W: Write>(
    context: &Path,
    dest: &str,
    mtime: u64,
    out: W,
) -> Result<LayerDigests, LayerError> {
    let dest_components = dest_components(dest)?;
    let io_at = |path: &Path| {
        let path = path.to_path_buf();
        move |source| LayerError::Io { path, source }
    };
    let compressed = HashingWriter::new(out);
    let gzip = GzBuilder::new()
        .operating_system(255)
        .mtime(0)
        .write(compressed, Compression::new(GZIP_LEVEL));
    let mut tar = tar::Builder::new(HashingWriter::new(gzip));
    let mut layer = LayerWriter {
        context,
        mtime,
        tar: &mut tar,
    };

    // The directories leading to the destination, outermost first.
    let mut prefix = PathBuf::new();
    for component in &dest_components {
        prefix.push(component);
        layer.directory(&prefix, DEST_DIR_MODE)?;
    }
    let root_meta = fs::metadata(context).map_err(io_at(context))?;
    if root_meta.is_dir() {
        layer.directory_contents(Path::new(""), &prefix)?;
    } else {
        // A single file (a static binary, a script) lands inside the destination.
        let name = context
            .file_name()
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("file"));
        layer.entry(&name, &prefix.join(&name), context, &root_meta)?;
    }

    let hashed_tar = tar.into_inner().map_err(io_at(context))?;
    let diff_id = Digest::from_hasher(hashed_tar.hasher);
    let compressed = hashed_tar.inner.finish().map_err(io_at(context))?;
    let mut compressed_inner = compressed;
    compressed_inner.flush().map_err(io_at(context))?;
    Ok(LayerDigests {
        digest: Digest::from_hasher(compressed_inner.hasher),
        diff_id,
        size: compressed_inner.written,
    })
}

/// The path components of `dest`, which must be absolute and free of `..`.
fn dest_components(dest: &str) -> Result<Vec<OsString>, LayerError> {
    let error = || LayerError::Destination {
        dest: dest.to_owned(),
    };
    let path = Path::new(dest);
    if !path.is_absolute() {
        return Err(error());
    }
    let mut components = Vec::new();
    for component in path.components() {
        match component {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(name) => components.push(name.to_os_string()),
            Component::ParentDir | Component::Prefix(_) => return Err(error()),
        }
    }
    Ok(components)
}

struct LayerWriter<'a, W: Write> {
    context: &'a Path,
    mtime: u64,
    tar: &'a mut tar::Builder<W>,
}

impl<W: Write> LayerWriter<'_, W> {
    fn header(&self, entry_type: EntryType, mode: u32, size: u64) -> Header {
        let mut header = Header::new_gnu();
        header.set_entry_type(entry_type);
        header.set_mode(mode & 0o7777);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(self.mtime);
        header.set_size(size);
        header
    }

    fn io_error(&self, relative: &Path) -> impl FnOnce(io::Error) -> LayerError + use<W> {
        let path = self.context.join(relative);
        move |source| LayerError::Io { path, source }
    }

    fn directory(&mut self, in_layer: &Path, mode: u32) -> Result<(), LayerError> {
        let mut header = self.header(EntryType::Directory, mode, 0);
        let on_error = self.io_error(in_layer);
        self.tar
            .append_data(&mut header, in_layer, io::empty())
            .map_err(on_error)
    }

    /// Adds the entries under `relative` (a directory of the context), sorted.
    fn directory_contents(&mut self, relative: &Path, in_layer: &Path) -> Result<(), LayerError> {
        let source = self.context.join(relative);
        let mut names: Vec<OsString> = fs::read_dir(&source)
            .map_err(self.io_error(relative))?
            .map(|entry| entry.map(|e| e.file_name()))
            .collect::<Result<_, _>>()
            .map_err(self.io_error(relative))?;
        // Byte order, not the file system's order, so every machine writes the same tar.
        names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        for name in names {
            let child = relative.join(&name);
            let path = self.context.join(&child);
            let meta = fs::symlink_metadata(&path).map_err(self.io_error(&child))?;
            self.entry(&child, &in_layer.join(&name), &path, &meta)?;
        }
        Ok(())
    }

    /// Adds one file system object (and, for a directory, what it holds).
    fn entry(
        &mut self,
        relative: &Path,
        in_layer: &Path,
        path: &Path,
        meta: &Metadata,
    ) -> Result<(), LayerError> {
        let file_type = meta.file_type();
        let mode = meta.permissions().mode();
        if file_type.is_dir() {
            self.directory(in_layer, mode)?;
            self.directory_contents(relative, in_layer)
        } else if file_type.is_symlink() {
            let target = fs::read_link(path).map_err(self.io_error(relative))?;
            check_symlink(relative, &target)?;
            let mut header = self.header(EntryType::Symlink, mode, 0);
            let on_error = self.io_error(relative);
            self.tar
                .append_link(&mut header, in_layer, &target)
                .map_err(on_error)
        } else if file_type.is_file() {
            let size = meta.len();
            let file = File::open(path).map_err(self.io_error(relative))?;
            let mut header = self.header(EntryType::Regular, mode, size);
            let on_error = self.io_error(relative);
            let reader = ExactReader {
                inner: file.take(size),
                remaining: size,
            };
            self.tar
                .append_data(&mut header, in_layer, reader)
                .map_err(on_error)
        } else {
            let kind = if file_type.is_socket() {
                "socket"
            } else if file_type.is_fifo() {
                "fifo"
            } else if file_type.is_block_device() || file_type.is_char_device() {
                "device file"
            } else {
                "special file"
            };
            Err(LayerError::UnsupportedFile {
                path: relative.to_path_buf(),
                kind,
            })
        }
    }
}

/// Refuses a symlink at `relative` (inside the context) whose target is absolute
/// or resolves, lexically, outside the context.
pub(crate) fn check_symlink(relative: &Path, target: &Path) -> Result<(), LayerError> {
    let escaping = || LayerError::EscapingSymlink {
        path: relative.to_path_buf(),
        target: target.to_path_buf(),
    };
    if target.is_absolute() || target.as_os_str().is_empty() {
        return Err(escaping());
    }
    // Start in the link's directory, then walk the target's components.
    let mut depth: Vec<&std::ffi::OsStr> = relative
        .parent()
        .map(|p| {
            p.components()
                .filter_map(|c| match c {
                    Component::Normal(name) => Some(name),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    for component in target.components() {
        match component {
            Component::Normal(name) => depth.push(name),
            Component::CurDir => {}
            Component::ParentDir => {
                if depth.pop().is_none() {
                    return Err(escaping());
                }
            }
            Component::RootDir | Component::Prefix(_) => return Err(escaping()),
        }
    }
    Ok(())
}

/// A reader that fails instead of ending early, so a file shrinking while it is
/// archived gives an error rather than a tar whose header lies about the size.
struct ExactReader<R> {
    inner: R,
    remaining: u64,
}

impl<R: Read> Read for ExactReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 && self.remaining > 0 && !buf.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "file shrank while it was being archived",
            ));
        }
        self.remaining = self.remaining.saturating_sub(n as u64);
        Ok(n)
    }
}

/// A writer that hashes and counts what passes through it.
pub(crate) struct HashingWriter<W> {
    pub(crate) inner: W,
    pub(crate) hasher: Sha256,
    pub(crate) written: u64,
}

impl<W> HashingWriter<W> {
    pub(crate) fn new(inner: W) -> Self {
        HashingWriter {
            inner,
            hasher: Sha256::new(),
            written: 0,
        }
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        // A writer claiming more than it was given breaks its contract; hash what exists.
        self.hasher.update(buf.get(..n).unwrap_or(buf));
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn layer_bytes(context: &Path, dest: &str, mtime: u64) -> (Vec<u8>, LayerDigests) {
        let mut out = Vec::new();
        let digests = write_layer(context, dest, mtime, &mut out).unwrap();
        (out, digests)
    }

    /// One tar entry as read back.
    #[derive(Debug, Clone)]
    struct Entry {
        path: String,
        kind: char,
        mode: u32,
        owner: (u64, u64),
        mtime: u64,
        size: u64,
        link: String,
    }

    fn entries(gz: &[u8]) -> Vec<Entry> {
        let mut tar_bytes = Vec::new();
        flate2::read::GzDecoder::new(gz)
            .read_to_end(&mut tar_bytes)
            .unwrap();
        let mut archive = tar::Archive::new(&tar_bytes[..]);
        archive
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let h = e.header();
                Entry {
                    path: e.path().unwrap().display().to_string(),
                    kind: h.entry_type().as_byte() as char,
                    mode: h.mode().unwrap(),
                    owner: (h.uid().unwrap(), h.gid().unwrap()),
                    mtime: h.mtime().unwrap(),
                    size: h.size().unwrap(),
                    link: e
                        .link_name()
                        .unwrap()
                        .map(|l| l.display().to_string())
                        .unwrap_or_default(),
                }
            })
            .collect()
    }

    fn sample_context() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir_all(root.join("bin")).unwrap();
        fs::write(root.join("bin/run.sh"), "#!/bin/sh\necho hi\n").unwrap();
        fs::set_permissions(root.join("bin/run.sh"), fs::Permissions::from_mode(0o755)).unwrap();
        fs::write(root.join("b.txt"), "bee").unwrap();
        fs::write(root.join("a.txt"), "a").unwrap();
        fs::set_permissions(root.join("a.txt"), fs::Permissions::from_mode(0o600)).unwrap();
        symlink("bin/run.sh", root.join("run")).unwrap();
        fs::create_dir_all(root.join("deep/er")).unwrap();
        symlink("../../a.txt", root.join("deep/er/link")).unwrap();
        dir
    }

    #[test]
    fn building_twice_gives_the_same_bytes_even_after_touching_files() {
        let context = sample_context();
        let (first, digests) = layer_bytes(context.path(), "/app", 0);
        // New mtimes and a new inode order must not matter.
        fs::remove_file(context.path().join("b.txt")).unwrap();
        fs::write(context.path().join("b.txt"), "bee").unwrap();
        let touched = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000_000);
        fs::File::options()
            .write(true)
            .open(context.path().join("b.txt"))
            .unwrap()
            .set_modified(touched)
            .unwrap();
        let (second, again) = layer_bytes(context.path(), "/app", 0);
        assert_eq!(first, second);
        assert_eq!(digests, again);
        assert_eq!(digests.digest, Digest::of(&first));
        assert_eq!(digests.size, first.len() as u64);
        // The gzip header: no mtime, no name, OS "unknown".
        assert_eq!(&first[..10], &[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255]);
        // A different epoch is a different layer.
        let (epoch, _) = layer_bytes(context.path(), "/app", 1_700_000_000);
        assert_ne!(first, epoch);
    }

    #[test]
    fn entries_are_sorted_owned_by_root_with_modes_and_symlinks_kept() {
        let context = sample_context();
        let (bytes, digests) = layer_bytes(context.path(), "/srv/app", 7);
        let mut tar_bytes = Vec::new();
        flate2::read::GzDecoder::new(&bytes[..])
            .read_to_end(&mut tar_bytes)
            .unwrap();
        assert_eq!(digests.diff_id, Digest::of(&tar_bytes));
        let listed = entries(&bytes);
        let names: Vec<&str> = listed.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            names,
            [
                "srv",
                "srv/app",
                "srv/app/a.txt",
                "srv/app/b.txt",
                "srv/app/bin",
                "srv/app/bin/run.sh",
                "srv/app/deep",
                "srv/app/deep/er",
                "srv/app/deep/er/link",
                "srv/app/run",
            ]
        );
        for entry in &listed {
            assert_eq!((entry.owner, entry.mtime), ((0, 0), 7), "{}", entry.path);
        }
        let find = |name: &str| listed.iter().find(|e| e.path == name).unwrap().clone();
        assert_eq!((find("srv").kind, find("srv/app").kind), ('5', '5'));
        assert_eq!(find("srv/app").mode, 0o755);
        assert_eq!(find("srv/app/a.txt").mode, 0o600);
        assert_eq!(find("srv/app/bin/run.sh").mode, 0o755);
        assert_eq!(find("srv/app/bin/run.sh").size, 18);
        assert_eq!(find("srv/app/run").kind, '2');
        assert_eq!(find("srv/app/run").link, "bin/run.sh");
        assert_eq!(find("srv/app/deep/er/link").link, "../../a.txt");
    }

    #[test]
    fn a_single_file_context_lands_inside_the_destination() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("tool");
        fs::write(&file, "bin").unwrap();
        let (bytes, _) = layer_bytes(&file, "/app", 0);
        let names: Vec<String> = entries(&bytes).into_iter().map(|e| e.path).collect();
        assert_eq!(names, ["app", "app/tool"]);
        let (bytes, _) = layer_bytes(&file, "/", 0);
        let names: Vec<String> = entries(&bytes).into_iter().map(|e| e.path).collect();
        assert_eq!(names, ["tool"]);
    }

    #[test]
    fn escaping_and_absolute_symlinks_are_refused() {
        for target in ["../outside", "/etc/passwd", "a/../../x"] {
            let context = tempfile::tempdir().unwrap();
            symlink(target, context.path().join("link")).unwrap();
            let err = write_layer(context.path(), "/app", 0, Vec::new()).unwrap_err();
            assert!(
                matches!(&err, LayerError::EscapingSymlink { path, .. } if path == Path::new("link")),
                "{target}: {err}"
            );
            assert!(
                err.to_string().contains("leaves the build context"),
                "{err}"
            );
        }
        // Climbing out of a subdirectory by one more level than it is deep escapes too.
        let context = tempfile::tempdir().unwrap();
        fs::create_dir(context.path().join("sub")).unwrap();
        symlink("../../x", context.path().join("sub/link")).unwrap();
        assert!(matches!(
            write_layer(context.path(), "/app", 0, Vec::new()),
            Err(LayerError::EscapingSymlink { .. })
        ));
        assert!(check_symlink(Path::new("sub/link"), Path::new("../x")).is_ok());
        assert!(check_symlink(Path::new("link"), Path::new("./sub/../x")).is_ok());
    }

    #[test]
    fn bad_destinations_and_special_files_are_refused() {
        let context = tempfile::tempdir().unwrap();
        for dest in ["app", "/app/../etc", ""] {
            assert!(matches!(
                write_layer(context.path(), dest, 0, Vec::new()),
                Err(LayerError::Destination { .. })
            ));
        }
        let socket = context.path().join("sock");
        let _listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
        let err = write_layer(context.path(), "/app", 0, Vec::new()).unwrap_err();
        assert!(
            matches!(err, LayerError::UnsupportedFile { kind: "socket", .. }),
            "{err}"
        );
        let missing =
            write_layer(&context.path().join("missing"), "/app", 0, Vec::new()).unwrap_err();
        assert!(matches!(missing, LayerError::Io { .. }));
    }
}
