//! Images unpacked for the process runtime: pulled once per digest, unpacked
//! into `DATA_DIR/rootfs/<hex>/`, with the parts of the config a launch needs
//! beside it in `<hex>.json`.
//!
//! A root appears only complete: layers are unpacked into a temp dir under
//! `rootfs/` and renamed into place, after the config file is written, so a
//! root directory with its config file is a finished unpack. Concurrent starts
//! of one digest share one unpack through a per-digest lock; a gantry that
//! died mid-unpack leaves only a `.unpack-*` temp dir, removed at start-up.
//! The directory is named by the hex part of the digest alone because a root
//! path with a `:` would split in two inside `PATH`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use gantry_images::manifest::{ImageIndex, ImageManifest, ManifestKind, manifest_kind};
use gantry_images::{DEFAULT_ARCHITECTURE, DEFAULT_OS, Digest, Reference, RegistryClient};
use serde::{Deserialize, Serialize};

use crate::PrunedImage;
use crate::error::RuntimeError;
use crate::unpack::Unpacker;

/// The largest image config read into memory; real ones are a few KiB.
const MAX_CONFIG_BYTES: u64 = 16 * 1024 * 1024;
/// The prefix of unpacks in progress (and of roots being pruned): what
/// [`ImageCache::open`] finds with it was left by a gantry that died.
const TEMP_PREFIX: &str = ".unpack-";

/// What a launch needs from an image config (`config` in the OCI config JSON).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct RunConfig {
    #[serde(default)]
    pub(crate) entrypoint: Option<Vec<String>>,
    #[serde(default)]
    pub(crate) cmd: Option<Vec<String>>,
    #[serde(default)]
    pub(crate) env: Option<Vec<String>>,
    #[serde(default)]
    pub(crate) working_dir: Option<String>,
    #[serde(default)]
    pub(crate) user: Option<String>,
}

/// The OCI image config, as far as it is read here.
#[derive(Deserialize)]
struct ConfigFile {
    #[serde(default)]
    config: Option<RunConfig>,
}

/// An image ready to run: its root and config.
#[derive(Debug, Clone)]
pub(crate) struct UnpackedImage {
    pub(crate) root: PathBuf,
    pub(crate) config: RunConfig,
}

/// The unpacked images under one data dir.
pub(crate) struct ImageCache {
    dir: PathBuf,
    client: RegistryClient,
    /// One lock per digest being unpacked, so concurrent starts unpack once.
    locks: Mutex<HashMap<Digest, Arc<tokio::sync::Mutex<()>>>>,
}

impl ImageCache {
    /// The cache in `dir` (created); removes unpacks a dead gantry left behind.
    pub(crate) fn open(dir: PathBuf, client: RegistryClient) -> Result<ImageCache, RuntimeError> {
        std::fs::create_dir_all(&dir).map_err(RuntimeError::state("creating", &dir))?;
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755))
                .map_err(RuntimeError::state("setting the mode of", &dir))?;
        }
        let entries = std::fs::read_dir(&dir).map_err(RuntimeError::state("reading", &dir))?;
        for entry in entries.flatten() {
            let is_file = entry.file_type().is_ok_and(|t| !t.is_dir());
            if entry.file_name().to_string_lossy().starts_with(TEMP_PREFIX)
                && let Err(e) = if is_file {
                    std::fs::remove_file(entry.path())
                } else {
                    remove_tree(&entry.path())
                }
            {
                tracing::warn!(path = %entry.path().display(), error = %e, "could not remove an interrupted unpack");
            }
        }
        Ok(ImageCache {
            dir,
            client,
            locks: Mutex::new(HashMap::new()),
        })
    }

    /// The root an image of `digest` is (or would be) unpacked into.
    pub(crate) fn root(&self, digest: &Digest) -> PathBuf {
        self.dir.join(digest.hex())
    }

    fn config_path(&self, digest: &Digest) -> PathBuf {
        self.dir.join(format!("{}.json", digest.hex()))
    }

    /// The image unpacked, pulling and unpacking it first if needed. An image
    /// pinned by digest that is already unpacked needs no registry at all.
    pub(crate) async fn unpacked(&self, image: &Reference) -> Result<UnpackedImage, RuntimeError> {
        let pull_error = |e: gantry_images::RegistryError| RuntimeError::ImagePull {
            image: image.to_string(),
            reason: e.to_string(),
        };
        let digest = match image.digest() {
            Some(digest) => digest.clone(),
            None => {
                self.client
                    .get_manifest_raw(image)
                    .await
                    .map_err(pull_error)?
                    .digest
            }
        };
        if let Some(ready) = self.ready(&digest) {
            return Ok(ready);
        }
        let lock = {
            let mut locks = self
                .locks
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            locks.entry(digest.clone()).or_default().clone()
        };
        let _guard = lock.lock().await;
        if let Some(ready) = self.ready(&digest) {
            return Ok(ready);
        }
        // The lock stays in the map (one small entry per image ever run): removing
        // it could let a late waiter and a newcomer unpack the same digest at once.
        self.pull(image, &digest).await
    }

    /// Removes the unpacked images `in_use` does not claim (by the hex of
    /// their digest), or with `dry_run` only measures them.
    ///
    /// Safe against starts: each image is removed under its unpack lock,
    /// and its config file (which makes a root ready) is moved aside
    /// before `in_use` is asked again. A start registers its replica (what
    /// `in_use` reads) before it looks for the root, so either it is seen
    /// here and the image stays, or it finds the image not ready, waits for
    /// the lock and unpacks it again.
    pub(crate) async fn prune(
        &self,
        in_use: impl Fn(&str) -> bool,
        dry_run: bool,
    ) -> Result<Vec<PrunedImage>, RuntimeError> {
        let mut found = std::collections::BTreeSet::new();
        let entries =
            std::fs::read_dir(&self.dir).map_err(RuntimeError::state("reading", &self.dir))?;
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let hex = name.strip_suffix(".json").unwrap_or(&name);
            if let Ok(digest) = Digest::parse(&format!("sha256:{hex}")) {
                found.insert(digest);
            }
        }
        let mut pruned = Vec::new();
        for digest in found {
            if in_use(digest.hex()) {
                continue;
            }
            let lock = {
                let mut locks = self
                    .locks
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                locks.entry(digest.clone()).or_default().clone()
            };
            let _guard = lock.lock().await;
            let (root, config) = (self.root(&digest), self.config_path(&digest));
            let measured = (root.clone(), config.clone());
            let bytes = tokio::task::spawn_blocking(move || {
                tree_size(&measured.0) + tree_size(&measured.1)
            })
            .await
            .unwrap_or(0);
            if dry_run {
                if !in_use(digest.hex()) {
                    pruned.push(PrunedImage {
                        digest: digest.to_string(),
                        bytes,
                    });
                }
                continue;
            }
            let aside = self.dir.join(format!("{TEMP_PREFIX}gc-{}", digest.hex()));
            let aside_config = aside.with_extension("json");
            let moved = match std::fs::rename(&config, &aside_config) {
                Ok(()) => true,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
                Err(e) => return Err(RuntimeError::state("moving aside", &config)(e)),
            };
            if in_use(digest.hex()) {
                if moved {
                    std::fs::rename(&aside_config, &config)
                        .map_err(RuntimeError::state("restoring", &config))?;
                }
                continue;
            }
            if root.exists() {
                std::fs::rename(&root, &aside)
                    .map_err(RuntimeError::state("moving aside", &root))?;
            }
            let removed = tokio::task::spawn_blocking(move || {
                let _ = std::fs::remove_file(&aside_config);
                if aside.exists() {
                    remove_tree(&aside).map_err(RuntimeError::state("removing", &aside))
                } else {
                    Ok(())
                }
            })
            .await
            .map_err(|e| RuntimeError::state("removing", &root)(std::io::Error::other(e)))?;
            removed?;
            tracing::info!(image = %digest, bytes, "removed an unpacked image no replica uses");
            pruned.push(PrunedImage {
                digest: digest.to_string(),
                bytes,
            });
        }
        Ok(pruned)
    }

    /// The image if it is completely unpacked.
    fn ready(&self, digest: &Digest) -> Option<UnpackedImage> {
        let root = self.root(digest);
        let config = std::fs::read(self.config_path(digest)).ok()?;
        let config = serde_json::from_slice(&config).ok()?;
        root.is_dir().then_some(UnpackedImage { root, config })
    }

    async fn pull(
        &self,
        image: &Reference,
        digest: &Digest,
    ) -> Result<UnpackedImage, RuntimeError> {
        let name = image.to_string();
        let pull_error = |reason: String| RuntimeError::ImagePull {
            image: name.clone(),
            reason,
        };
        let pinned = image.with_digest(digest);
        let mut reference = pinned.clone();
        let mut raw = self
            .client
            .get_manifest_raw(&reference)
            .await
            .map_err(|e| pull_error(e.to_string()))?;
        if manifest_kind(&raw.media_type) == Some(ManifestKind::Index) {
            let index: ImageIndex = serde_json::from_slice(&raw.bytes)
                .map_err(|e| pull_error(format!("invalid index: {e}")))?;
            let chosen = index.manifests.iter().find(|m| {
                m.platform
                    .as_ref()
                    .is_some_and(|p| p.os == DEFAULT_OS && p.architecture == DEFAULT_ARCHITECTURE)
            });
            let Some(chosen) = chosen else {
                return Err(pull_error(format!(
                    "the index has no {DEFAULT_OS}/{DEFAULT_ARCHITECTURE} image"
                )));
            };
            reference = pinned.with_digest(&chosen.digest);
            raw = self
                .client
                .get_manifest_raw(&reference)
                .await
                .map_err(|e| pull_error(e.to_string()))?;
        }
        if manifest_kind(&raw.media_type) != Some(ManifestKind::Image) {
            return Err(pull_error(format!(
                "unsupported manifest media type {:?}",
                raw.media_type
            )));
        }
        let manifest: ImageManifest = serde_json::from_slice(&raw.bytes)
            .map_err(|e| pull_error(format!("invalid manifest: {e}")))?;
        if manifest.config.size > MAX_CONFIG_BYTES {
            return Err(pull_error(format!(
                "config is larger than {MAX_CONFIG_BYTES} bytes"
            )));
        }
        let mut config_bytes = Vec::new();
        self.client
            .get_blob(&reference, &manifest.config.digest, &mut config_bytes)
            .await
            .map_err(|e| pull_error(e.to_string()))?;
        let config = serde_json::from_slice::<ConfigFile>(&config_bytes)
            .map_err(|e| pull_error(format!("invalid image config: {e}")))?
            .config
            .unwrap_or_default();

        let temp = tempfile::Builder::new()
            .prefix(TEMP_PREFIX)
            .tempdir_in(&self.dir)
            .map_err(RuntimeError::state("creating a temp dir in", &self.dir))?;
        let temp_root = temp.path().join("root");
        std::fs::create_dir(&temp_root).map_err(RuntimeError::state("creating", &temp_root))?;
        let mut unpacker = Unpacker::new(&temp_root);
        for (i, layer) in manifest.layers.iter().enumerate() {
            if layer.is_foreign() {
                return Err(RuntimeError::Unpack {
                    image: name.clone(),
                    reason: format!("layer {} is non-distributable", layer.digest),
                });
            }
            let file = temp.path().join(format!("layer-{i}"));
            self.client
                .get_blob_to_file(&reference, &layer.digest, &file)
                .await
                .map_err(|e| pull_error(e.to_string()))?;
            let layer_digest = layer.digest.clone();
            let joined = tokio::task::spawn_blocking(move || {
                let result = unpacker.apply_layer(&file);
                let _ = std::fs::remove_file(&file);
                (unpacker, result)
            })
            .await;
            let result;
            (unpacker, result) = joined.map_err(|e| RuntimeError::Unpack {
                image: name.clone(),
                reason: format!("the unpack task failed: {e}"),
            })?;
            result.map_err(|reason| RuntimeError::Unpack {
                image: name.clone(),
                reason: format!("layer {layer_digest}: {reason}"),
            })?;
        }
        unpacker.finish().map_err(|reason| RuntimeError::Unpack {
            image: name.clone(),
            reason,
        })?;
        // Readable by a replica's own user (a service's `user:`), writable by
        // gantry's only, whatever the umask.
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&temp_root, std::fs::Permissions::from_mode(0o755))
                .map_err(RuntimeError::state("setting the mode of", &temp_root))?;
        }

        let config_json = serde_json::to_vec(&config).map_err(|e| RuntimeError::Unpack {
            image: name.clone(),
            reason: format!("encoding the config: {e}"),
        })?;
        let temp_config = temp.path().join("config.json");
        std::fs::write(&temp_config, config_json)
            .map_err(RuntimeError::state("writing", &temp_config))?;
        let (root, config_path) = (self.root(digest), self.config_path(digest));
        // The config goes first: a root directory next to its config is a finished unpack.
        std::fs::rename(&temp_config, &config_path)
            .map_err(RuntimeError::state("renaming the config to", &config_path))?;
        if root.is_dir() {
            // A root is renamed into place only when complete, so one already there
            // (its config file lost) is as good as this one, and replicas may run
            // from it: it stays, and this unpack is dropped with the temp dir.
            let _ = remove_tree(&temp_root);
        } else {
            std::fs::rename(&temp_root, &root)
                .map_err(RuntimeError::state("renaming the root to", &root))?;
        }
        tracing::info!(image = %name, root = %root.display(), layers = manifest.layers.len(), "unpacked image");
        Ok(UnpackedImage { root, config })
    }
}

/// The bytes of the files under `path` (or of the file `path`), symlinks
/// not followed; 0 for nothing there.
fn tree_size(path: &Path) -> u64 {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return 0;
    };
    if !meta.is_dir() {
        return meta.len();
    }
    let mut total = 0;
    let mut dirs = vec![path.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            match entry.metadata() {
                Ok(m) if m.is_dir() => dirs.push(entry.path()),
                Ok(m) => total += m.len(),
                Err(_) => {}
            }
        }
    }
    total
}

/// Removes a tree whose directories may be read-only (an image may make them so).
pub(crate) fn remove_tree(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    if std::fs::remove_dir_all(path).is_ok() {
        return Ok(());
    }
    let mut dirs = vec![path.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700));
        if let Ok(entries) = std::fs::read_dir(&dir) {
            for entry in entries.flatten() {
                if entry.file_type().is_ok_and(|t| t.is_dir()) {
                    dirs.push(entry.path());
                }
            }
        }
    }
    std::fs::remove_dir_all(path)
}
