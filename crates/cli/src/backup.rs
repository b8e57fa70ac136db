//! `gantry backup --out FILE [--with-master-key]` and `gantry restore FILE`:
//! a data dir in one tar file, and back.
//!
//! A backup is taken online, on the machine of the data dir: the database
//! is copied with `VACUUM INTO` (one consistent read; the server goes on),
//! then every blob of the artifact store (registry layers, artifacts) is
//! added. Blobs are immutable and written before any row names them, so a
//! blob the snapshot references was on disk when the snapshot was taken.
//! The tar holds `gantry-backup.json` (what it is), `gantry.db`, the blobs
//! under `artifacts/blobs/sha256/`, and `params-master.key` only when asked:
//! without it, SecureString parameters can only be read again with the key
//! kept elsewhere. The admin token is never in it (a restored data dir's
//! first server writes a new one); mirrors, unpacked images and replicas
//! are re-made, not restored. The file is written 0600.
//!
//! A restore reads the tar twice: first every entry is checked (only
//! regular files and directories, only the names above, no absolute path,
//! no `..`, no link of any kind, bounded counts and sizes), then, into an
//! empty or new data dir, files are created anew (`O_EXCL`, never through a
//! symlink) with owner-only modes (blobs read-only). Every blob's content
//! must hash to the digest its name spells, or nothing is restored.

use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

/// What a backup file says about itself.
#[derive(Debug, Serialize, Deserialize)]
struct BackupInfo {
    format: u32,
    version: String,
    commit: String,
    created_at: String,
    with_master_key: bool,
    blobs: u64,
}

const INFO: &str = "gantry-backup.json";
const DATABASE: &str = "gantry.db";
const BLOBS: &str = "artifacts/blobs/sha256";
/// Most entries a restore accepts (blobs are a few thousand in practice).
const MAX_ENTRIES: u64 = 10_000_000;
/// The largest `gantry-backup.json` and master key read.
const MAX_SMALL_FILE: u64 = 64 * 1024;

/// Writes the backup of `data_dir` to `out` (which must not exist).
pub(crate) async fn backup(data_dir: &Path, out: &Path, with_master_key: bool) -> Result<()> {
    let key = data_dir.join(gantry_params::MASTER_KEY_FILE);
    if with_master_key && !key.is_file() {
        bail!(
            "--with-master-key: {} does not exist (a key given in {} is not in the data dir: keep it yourself)",
            key.display(),
            gantry_params::MASTER_KEY_ENV
        );
    }
    let database = data_dir.join(DATABASE);
    if !database.is_file() {
        bail!(
            "{} holds no database ({DATABASE}); a store kept in PostgreSQL (--database) \
             is backed up with pg_dump, its blobs by copying the blob dir",
            data_dir.display()
        );
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(out)
        .with_context(|| format!("cannot create {}", out.display()))?;
    let result = write_backup(data_dir, &database, &mut file, with_master_key).await;
    if result.is_err() {
        let _ = std::fs::remove_file(out);
    }
    let info = result?;
    println!(
        "backed up {} to {} (database, {} blobs{})",
        data_dir.display(),
        out.display(),
        info.blobs,
        if with_master_key {
            ", master key"
        } else {
            "; no master key: SecureStrings need the key you keep"
        }
    );
    Ok(())
}

async fn write_backup(
    data_dir: &Path,
    database: &Path,
    out: &mut File,
    with_master_key: bool,
) -> Result<BackupInfo> {
    // The snapshot goes in a private directory of the data dir (the same
    // filesystem, owner-only), removed whatever happens.
    let scratch = data_dir.join(format!(".backup-{}", std::process::id()));
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&scratch)
        .with_context(|| format!("cannot create {}", scratch.display()))?;
    let result = async {
        let snapshot = scratch.join(DATABASE);
        gantry_store::snapshot_database(database, &snapshot)
            .await
            .context("snapshot of the database")?;
        let blobs = blob_files(&data_dir.join(BLOBS))?;
        let info = BackupInfo {
            format: 1,
            version: crate::version::VERSION.to_string(),
            commit: crate::version::COMMIT.to_string(),
            created_at: jiff::Timestamp::from_millisecond(gantry_clock::now_ms())
                .map(|t| t.to_string())
                .unwrap_or_default(),
            with_master_key,
            blobs: blobs.len() as u64,
        };
        let mut tar = tar::Builder::new(&mut *out);
        tar.follow_symlinks(false);
        let json = serde_json::to_vec_pretty(&info)?;
        append_bytes(&mut tar, INFO, &json, 0o600)?;
        append_file(&mut tar, DATABASE, &snapshot, 0o600)?;
        if with_master_key {
            let key = data_dir.join(gantry_params::MASTER_KEY_FILE);
            append_file(&mut tar, gantry_params::MASTER_KEY_FILE, &key, 0o600)?;
        }
        for (name, path) in &blobs {
            append_file(&mut tar, name, path, 0o444)?;
        }
        tar.finish()?;
        drop(tar);
        out.sync_all()?;
        Ok(info)
    }
    .await;
    let _ = std::fs::remove_dir_all(&scratch);
    result
}

/// `(name in the tar, path)` of every blob file, by name.
fn blob_files(root: &Path) -> Result<Vec<(String, PathBuf)>> {
    let mut found = Vec::new();
    let Ok(dirs) = std::fs::read_dir(root) else {
        return Ok(found);
    };
    for dir in dirs {
        let dir = dir?;
        if !dir.file_type()?.is_dir() {
            continue;
        }
        for file in std::fs::read_dir(dir.path())? {
            let file = file?;
            // Only regular files: a symlink here is no blob of gantry's.
            if file.file_type()?.is_file() {
                let name = format!(
                    "{BLOBS}/{}/{}",
                    dir.file_name().to_string_lossy(),
                    file.file_name().to_string_lossy()
                );
                if blob_name(&name) {
                    found.push((name, file.path()));
                }
            }
        }
    }
    found.sort();
    Ok(found)
}

fn append_bytes<W: Write>(
    tar: &mut tar::Builder<W>,
    name: &str,
    bytes: &[u8],
    mode: u32,
) -> Result<()> {
    let mut header = tar::Header::new_ustar();
    header.set_size(bytes.len() as u64);
    header.set_mode(mode);
    header.set_entry_type(tar::EntryType::Regular);
    header.set_mtime(0);
    tar.append_data(&mut header, name, bytes)?;
    Ok(())
}

fn append_file<W: Write>(
    tar: &mut tar::Builder<W>,
    name: &str,
    path: &Path,
    mode: u32,
) -> Result<()> {
    let mut file = File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let len = file.metadata()?.len();
    let mut header = tar::Header::new_ustar();
    header.set_size(len);
    header.set_mode(mode);
    header.set_entry_type(tar::EntryType::Regular);
    header.set_mtime(0);
    tar.append_data(&mut header, name, (&mut file).take(len))
        .with_context(|| format!("cannot add {}", path.display()))?;
    Ok(())
}

/// `artifacts/blobs/sha256/<2 hex>/<62 hex>`.
fn blob_name(name: &str) -> bool {
    let Some(rest) = name.strip_prefix(BLOBS).and_then(|r| r.strip_prefix('/')) else {
        return false;
    };
    let hex = |s: &str, n: usize| {
        s.len() == n
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    matches!(rest.split_once('/'), Some((a, b)) if hex(a, 2) && hex(b, 62))
}

/// Where an entry may go, and with which mode; `None` for a name a backup
/// never holds.
fn entry_mode(name: &str) -> Option<u32> {
    match name {
        INFO | DATABASE => Some(0o600),
        n if n == gantry_params::MASTER_KEY_FILE => Some(0o600),
        n if blob_name(n) => Some(0o444),
        _ => None,
    }
}

/// Whether a directory entry is one a backup holds (a parent of a blob).
fn directory_allowed(name: &str) -> bool {
    let name = name.trim_end_matches('/');
    ["artifacts", "artifacts/blobs", BLOBS].contains(&name)
        || name
            .strip_prefix(BLOBS)
            .and_then(|r| r.strip_prefix('/'))
            .is_some_and(|r| {
                r.len() == 2
                    && r.bytes()
                        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
            })
}

/// An entry's path as plain relative components, or why not.
fn checked_path(raw: &[u8]) -> Result<String> {
    let text = std::str::from_utf8(raw).context("an entry's name is not UTF-8")?;
    let path = Path::new(text);
    for component in path.components() {
        match component {
            Component::Normal(_) | Component::CurDir => {}
            Component::ParentDir => bail!("entry {text:?} climbs out with `..`"),
            Component::RootDir | Component::Prefix(_) => {
                bail!("entry {text:?} is an absolute path")
            }
        }
    }
    let clean: Vec<&str> = text
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect();
    Ok(clean.join("/"))
}

/// Checks every entry of the backup at `file` without writing anything.
fn check_archive(file: &Path) -> Result<BackupInfo> {
    let mut archive = tar::Archive::new(
        File::open(file).with_context(|| format!("cannot read {}", file.display()))?,
    );
    let mut info = None;
    let mut database = false;
    let mut count = 0u64;
    for entry in archive.entries().context("not a tar file")? {
        let mut entry = entry.context("a damaged tar entry")?;
        count += 1;
        if count > MAX_ENTRIES {
            bail!("more than {MAX_ENTRIES} entries: not a gantry backup");
        }
        let name = checked_path(&entry.path_bytes())?;
        let kind = entry.header().entry_type();
        match kind {
            tar::EntryType::Directory => {
                if !directory_allowed(&name) {
                    bail!("entry {name:?} is no directory of a gantry backup");
                }
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                if entry_mode(&name).is_none() {
                    bail!("entry {name:?} is no file of a gantry backup");
                }
                if name == INFO {
                    let mut text = Vec::new();
                    (&mut entry).take(MAX_SMALL_FILE).read_to_end(&mut text)?;
                    info = Some(
                        serde_json::from_slice::<BackupInfo>(&text)
                            .context("gantry-backup.json does not read")?,
                    );
                }
                database |= name == DATABASE;
                if blob_name(&name) {
                    check_blob(&name, &mut entry)?;
                }
            }
            other => bail!("entry {name:?} is a {other:?}, not a file: links are refused"),
        }
    }
    let Some(info) = info else {
        bail!("{} is not a gantry backup (no {INFO})", file.display());
    };
    if info.format != 1 {
        bail!(
            "backup format {} is newer than this gantry knows (1)",
            info.format
        );
    }
    if !database {
        bail!("the backup holds no database");
    }
    Ok(info)
}

/// A blob's content must hash to the digest its name spells
/// (`…/sha256/ab/cdef…` is `sha256:abcdef…`): a backup altered after it
/// was made must not put content under a digest it does not have.
fn check_blob(name: &str, content: &mut impl Read) -> Result<()> {
    use sha2::Digest;
    let mut hasher = sha2::Sha256::new();
    let mut buf = [0u8; 64 * 1024];
    loop {
        let n = content
            .read(&mut buf)
            .with_context(|| format!("cannot read {name}"))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    let actual = hex::encode(hasher.finalize());
    let expected: String = name
        .strip_prefix(BLOBS)
        .unwrap_or_default()
        .chars()
        .filter(|c| *c != '/')
        .collect();
    if actual != expected {
        bail!(
            "blob {name} does not hold what its digest says (its content is sha256:{actual}): the backup was altered or damaged"
        );
    }
    Ok(())
}

/// Restores the backup at `file` into `data_dir` (new, or empty).
pub(crate) fn restore(file: &Path, data_dir: &Path) -> Result<()> {
    let info = check_archive(file)?;
    match std::fs::read_dir(data_dir) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                bail!(
                    "{} is not empty: restore only into a new or empty data dir",
                    data_dir.display()
                );
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::DirBuilder::new()
                .mode(0o700)
                .recursive(true)
                .create(data_dir)
                .with_context(|| format!("cannot create {}", data_dir.display()))?;
        }
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", data_dir.display())),
    }
    std::fs::set_permissions(data_dir, std::fs::Permissions::from_mode(0o700))?;
    let mut archive = tar::Archive::new(File::open(file)?);
    for entry in archive.entries()? {
        let mut entry = entry?;
        let name = checked_path(&entry.path_bytes())?;
        if name.is_empty() {
            continue;
        }
        let target = data_dir.join(&name);
        if entry.header().entry_type() == tar::EntryType::Directory {
            make_dirs(data_dir, &name)?;
            continue;
        }
        let Some(mode) = entry_mode(&name) else {
            bail!("entry {name:?} is no file of a gantry backup");
        };
        if let Some(parent) = Path::new(&name)
            .parent()
            .and_then(Path::to_str)
            .filter(|p| !p.is_empty())
        {
            make_dirs(data_dir, parent)?;
        }
        // A new file, never through a symlink (the tree is ours, but say so).
        let mut out = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(nix::libc::O_NOFOLLOW)
            .open(&target)
            .with_context(|| format!("cannot create {}", target.display()))?;
        std::io::copy(&mut entry, &mut out)
            .with_context(|| format!("cannot write {}", target.display()))?;
        out.sync_all()?;
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(mode))?;
    }
    println!(
        "restored {} into {} (gantry {} {}, made {}{})",
        file.display(),
        data_dir.display(),
        info.version,
        info.commit,
        info.created_at,
        if info.with_master_key {
            ""
        } else {
            "; without the master key: give it in GANTRY_MASTER_KEY or params-master.key to read SecureStrings"
        }
    );
    Ok(())
}

/// Creates `relative`'s directories under `root`, owner-only; an existing
/// one must be a real directory.
fn make_dirs(root: &Path, relative: &str) -> Result<()> {
    let mut path = root.to_path_buf();
    for part in relative.split('/') {
        path.push(part);
        match std::fs::symlink_metadata(&path) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => bail!("{} exists and is not a directory", path.display()),
            Err(_) => std::fs::DirBuilder::new()
                .mode(0o700)
                .create(&path)
                .with_context(|| format!("cannot create {}", path.display()))?,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_names_of_a_backup_are_accepted() {
        let blob = format!("{BLOBS}/ab/{}", "c".repeat(62));
        assert_eq!(entry_mode(&blob), Some(0o444));
        assert_eq!(entry_mode("gantry.db"), Some(0o600));
        assert_eq!(entry_mode("params-master.key"), Some(0o600));
        assert_eq!(entry_mode("admin.token"), None);
        assert_eq!(entry_mode(&format!("{BLOBS}/ab/{}", "C".repeat(62))), None);
        assert!(directory_allowed("artifacts/"));
        assert!(directory_allowed(&format!("{BLOBS}/ab")));
        assert!(!directory_allowed("etc"));
        assert!(checked_path(b"../x").is_err());
        assert!(checked_path(b"/etc/passwd").is_err());
        assert!(checked_path(b"artifacts/../../x").is_err());
        assert_eq!(checked_path(b"./gantry.db").unwrap(), "gantry.db");
    }
}
