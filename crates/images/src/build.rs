//! Daemonless, reproducible image builds: files in, an OCI image in a registry out.
//!
//! An image is a context layer (see [`crate::layer`]) on top of an optional base
//! image's layers, a config JSON and an OCI manifest. Everything that goes into
//! the config and manifest is derived from the inputs alone: a fixed `created`
//! time, history entries without timestamps, JSON with sorted keys. So the same
//! context, spec and base give the same digest on any machine, and pushing it
//! again transfers nothing: each blob is looked for (`HEAD`) before it is sent,
//! and the manifest is not re-sent when the tag already names the same digest.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde_json::{Map, Value, json};

use crate::client::{RegistryClient, RegistryError};
use crate::digest::Digest;
use crate::layer::{LayerDigests, LayerError, write_layer};
use crate::manifest::{
    DOCKER_LAYER_GZIP, Descriptor, ImageIndex, ImageManifest, ManifestKind, OCI_CONFIG,
    OCI_LAYER_GZIP, OCI_LAYER_TAR, OCI_MANIFEST, canonical_json, manifest_kind,
};
use crate::promote::{TransferCounts, transfer_blobs};
use crate::reference::Reference;

/// The platform of images without a base, and the one picked from a base index.
pub const DEFAULT_OS: &str = "linux";
/// See [`DEFAULT_OS`].
pub const DEFAULT_ARCHITECTURE: &str = "amd64";
/// The largest base config read into memory; real ones are a few KiB.
const MAX_CONFIG_BYTES: u64 = 16 * 1024 * 1024;

/// What to build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageSpec {
    /// The directory (or single file) that becomes the image's one new layer.
    pub context: PathBuf,
    /// Where the context goes in the image; absolute. Default `/app`.
    pub dest: String,
    /// The image to build on; `None` starts from an empty file system.
    pub base: Option<Reference>,
    /// `Entrypoint`; when set without `cmd`, the base's `Cmd` is dropped, as in a Dockerfile.
    pub entrypoint: Option<Vec<String>>,
    /// `Cmd`.
    pub cmd: Option<Vec<String>>,
    /// Environment variables, added to (or replacing those of) the base.
    pub env: Vec<(String, String)>,
    /// `WorkingDir`; absolute.
    pub workdir: Option<String>,
    /// Ports such as `8080` or `8080/tcp`, `53/udp`.
    pub exposed_ports: Vec<String>,
    /// Labels, merged over the base's.
    pub labels: BTreeMap<String, String>,
    /// `User` (`name`, `uid`, `uid:gid`).
    pub user: Option<String>,
    /// Every time in the image (file mtimes, `created`); `None` means 1970-01-01.
    /// Callers pass `SOURCE_DATE_EPOCH` here when it is set.
    pub source_date_epoch: Option<u64>,
}

impl ImageSpec {
    /// A spec that puts `context` at `/app` with nothing else set.
    pub fn new(context: impl Into<PathBuf>) -> ImageSpec {
        ImageSpec {
            context: context.into(),
            dest: "/app".to_owned(),
            base: None,
            entrypoint: None,
            cmd: None,
            env: Vec::new(),
            workdir: None,
            exposed_ports: Vec::new(),
            labels: BTreeMap::new(),
            user: None,
            source_date_epoch: None,
        }
    }

    /// Every problem with the spec, each naming its field.
    pub fn validate(&self) -> Result<(), Vec<String>> {
        let mut errors = Vec::new();
        if !self.dest.starts_with('/') || self.dest.split('/').any(|c| c == "..") {
            errors.push(format!(
                "dest {:?}: must be an absolute path without '..'",
                self.dest
            ));
        }
        if let Some(workdir) = &self.workdir
            && !workdir.starts_with('/')
        {
            errors.push(format!("workdir {workdir:?}: must be an absolute path"));
        }
        for (name, _) in &self.env {
            if name.is_empty() || name.contains('=') || name.contains('\0') {
                errors.push(format!(
                    "env {name:?}: a name must be non-empty without '=' or NUL"
                ));
            }
        }
        for port in &self.exposed_ports {
            if normalise_port(port).is_none() {
                errors.push(format!(
                    "exposed port {port:?}: expected PORT or PORT/tcp|udp|sctp, PORT 1-65535"
                ));
            }
        }
        if self.labels.keys().any(String::is_empty) {
            errors.push("labels: a label key must not be empty".to_owned());
        }
        if let Some(user) = &self.user
            && user.is_empty()
        {
            errors.push("user: must not be empty when set".to_owned());
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }
}

/// What a build produced and how much it had to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageResult {
    /// The manifest's digest: the image's identity.
    pub digest: Digest,
    /// The target pinned at the digest (`registry/repo@sha256:…`).
    pub reference: Reference,
    /// The manifest's bytes (an OCI image manifest).
    pub manifest: Vec<u8>,
    /// The config and all layers, compressed, in bytes (what a pull downloads).
    pub size: u64,
    /// Blobs sent to the registry.
    pub uploaded_blobs: usize,
    /// Base blobs linked from the base repository.
    pub mounted_blobs: usize,
    /// Blobs the registry already had.
    pub skipped_blobs: usize,
    /// Whether the manifest was sent (false when the tag already named it).
    pub manifest_pushed: bool,
}

/// Why a build failed; each names the image being built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The spec is invalid; every problem is listed.
    #[error("building {image}: invalid image spec: {}", errors.join("; "))]
    InvalidSpec {
        /// The target image.
        image: String,
        /// Every problem found.
        errors: Vec<String>,
    },
    /// The context could not be turned into a layer.
    #[error("building {image}: {source}")]
    Layer {
        /// The target image.
        image: String,
        /// What went wrong.
        source: LayerError,
    },
    /// The base image cannot be used.
    #[error("building {image}: base image {base}: {reason}")]
    Base {
        /// The target image.
        image: String,
        /// The base image.
        base: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A registry call failed.
    #[error("building {image}: {source}")]
    Registry {
        /// The target image.
        image: String,
        /// The failed call.
        source: RegistryError,
    },
}

/// A base image's contributions: its config, layers and repository.
struct Base {
    reference: Reference,
    config: Map<String, Value>,
    layers: Vec<Descriptor>,
}

/// Builds the image `spec` describes and pushes it to `target`.
pub async fn build_image(
    spec: &ImageSpec,
    target: &Reference,
    client: &RegistryClient,
) -> Result<ImageResult, BuildError> {
    let image = target.to_string();
    spec.validate().map_err(|errors| BuildError::InvalidSpec {
        image: image.clone(),
        errors,
    })?;
    let registry = |source| BuildError::Registry {
        image: image.clone(),
        source,
    };
    let epoch = spec.source_date_epoch.unwrap_or(0);

    // The layer goes to a temp file: a context can be far larger than memory.
    let (layer_file, layer) = {
        let context = spec.context.clone();
        let dest = spec.dest.clone();
        let joined = tokio::task::spawn_blocking(move || -> Result<_, LayerError> {
            let io = |source| LayerError::Io {
                path: std::env::temp_dir(),
                source,
            };
            let mut file = tempfile::NamedTempFile::new().map_err(io)?;
            let digests = write_layer(
                &context,
                &dest,
                epoch,
                std::io::BufWriter::new(file.as_file_mut()),
            )?;
            Ok((file.into_temp_path(), digests))
        })
        .await;
        match joined {
            Ok(result) => result.map_err(|source| BuildError::Layer {
                image: image.clone(),
                source,
            })?,
            Err(join) => {
                return Err(BuildError::Layer {
                    image: image.clone(),
                    source: LayerError::Io {
                        path: spec.context.clone(),
                        source: std::io::Error::other(join.to_string()),
                    },
                });
            }
        }
    };

    let base = match &spec.base {
        Some(base) => Some(fetch_base(client, base, &image).await?),
        None => None,
    };
    let config = image_config(spec, base.as_ref(), &layer, epoch);
    let config_bytes = canonical_json(&config);
    let config_descriptor = Descriptor {
        media_type: OCI_CONFIG.to_owned(),
        digest: Digest::of(&config_bytes),
        size: config_bytes.len() as u64,
        urls: Vec::new(),
        platform: None,
    };
    let layer_descriptor = Descriptor {
        media_type: OCI_LAYER_GZIP.to_owned(),
        digest: layer.digest.clone(),
        size: layer.size,
        urls: Vec::new(),
        platform: None,
    };
    let mut layers: Vec<Descriptor> = base.as_ref().map(|b| b.layers.clone()).unwrap_or_default();
    layers.push(layer_descriptor);
    let manifest = image_manifest(&config_descriptor, &layers);

    let mut counts = TransferCounts::default();
    let mut uploaded = 0;
    if let Some(base) = &base {
        transfer_blobs(client, &base.reference, target, &base.layers, &mut counts)
            .await
            .map_err(registry)?;
    }
    // Copies of base blobs from another registry count as uploads to this one.
    uploaded += counts.copied;
    if client
        .blob_exists(target, &layer.digest)
        .await
        .map_err(registry)?
    {
        counts.skipped += 1;
    } else {
        client
            .push_blob(target, &layer.digest, &layer_file)
            .await
            .map_err(registry)?;
        uploaded += 1;
    }
    if client
        .blob_exists(target, &config_descriptor.digest)
        .await
        .map_err(registry)?
    {
        counts.skipped += 1;
    } else {
        client
            .push_blob_bytes(target, &config_descriptor.digest, &config_bytes)
            .await
            .map_err(registry)?;
        uploaded += 1;
    }
    let digest = Digest::of(&manifest);
    let manifest_pushed = if client
        .manifest_digest(target)
        .await
        .map_err(registry)?
        .as_ref()
        == Some(&digest)
    {
        false
    } else {
        // The client checks that the registry stored these bytes under `digest`.
        client
            .put_manifest_raw(target, &manifest, OCI_MANIFEST)
            .await
            .map_err(registry)?;
        true
    };
    let size = config_descriptor.size + layers.iter().map(|l| l.size).sum::<u64>();
    tracing::info!(image = %target, digest = %digest, uploaded, mounted = counts.mounted, skipped = counts.skipped, manifest_pushed, "built image");
    Ok(ImageResult {
        reference: target.with_digest(&digest),
        digest,
        manifest,
        size,
        uploaded_blobs: uploaded,
        mounted_blobs: counts.mounted,
        skipped_blobs: counts.skipped,
        manifest_pushed,
    })
}

/// Reads the base's manifest (picking linux/amd64 from an index) and config.
async fn fetch_base(
    client: &RegistryClient,
    base: &Reference,
    image: &str,
) -> Result<Base, BuildError> {
    let error = |reason: String| BuildError::Base {
        image: image.to_owned(),
        base: base.to_string(),
        reason,
    };
    let registry = |source| BuildError::Registry {
        image: image.to_owned(),
        source,
    };
    let mut reference = base.clone();
    let mut raw = client
        .get_manifest_raw(&reference)
        .await
        .map_err(registry)?;
    if manifest_kind(&raw.media_type) == Some(ManifestKind::Index) {
        let index: ImageIndex =
            serde_json::from_slice(&raw.bytes).map_err(|e| error(format!("invalid index: {e}")))?;
        let chosen = index.manifests.iter().find(|m| {
            m.platform
                .as_ref()
                .is_some_and(|p| p.os == DEFAULT_OS && p.architecture == DEFAULT_ARCHITECTURE)
        });
        let Some(chosen) = chosen else {
            let platforms: Vec<String> = index
                .manifests
                .iter()
                .filter_map(|m| m.platform.as_ref())
                .map(|p| format!("{}/{}", p.os, p.architecture))
                .collect();
            return Err(error(format!(
                "has no {DEFAULT_OS}/{DEFAULT_ARCHITECTURE} image (it has: {})",
                platforms.join(", ")
            )));
        };
        reference = base.with_digest(&chosen.digest);
        raw = client
            .get_manifest_raw(&reference)
            .await
            .map_err(registry)?;
    }
    if manifest_kind(&raw.media_type) != Some(ManifestKind::Image) {
        return Err(error(format!(
            "unsupported manifest media type {:?}",
            raw.media_type
        )));
    }
    let manifest: ImageManifest =
        serde_json::from_slice(&raw.bytes).map_err(|e| error(format!("invalid manifest: {e}")))?;
    if manifest.config.size > MAX_CONFIG_BYTES {
        return Err(error(format!(
            "config is larger than {MAX_CONFIG_BYTES} bytes"
        )));
    }
    let mut config_bytes = Vec::new();
    client
        .get_blob(&reference, &manifest.config.digest, &mut config_bytes)
        .await
        .map_err(registry)?;
    let config = match serde_json::from_slice::<Value>(&config_bytes) {
        Ok(Value::Object(config)) => config,
        Ok(_) => return Err(error("config is not a JSON object".to_owned())),
        Err(e) => return Err(error(format!("invalid config: {e}"))),
    };
    let layers = manifest
        .layers
        .into_iter()
        .map(|mut layer| {
            // The same bytes under the OCI name, so the new manifest is pure OCI.
            layer.media_type = match layer.media_type.as_str() {
                DOCKER_LAYER_GZIP => OCI_LAYER_GZIP.to_owned(),
                "application/vnd.docker.image.rootfs.diff.tar" => OCI_LAYER_TAR.to_owned(),
                "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip" => {
                    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip".to_owned()
                }
                other => other.to_owned(),
            };
            layer.platform = None;
            layer
        })
        .collect();
    Ok(Base {
        reference,
        config,
        layers,
    })
}

/// The image config: the base's, with the spec's settings, the new layer and a
/// fixed creation time layered on.
fn image_config(spec: &ImageSpec, base: Option<&Base>, layer: &LayerDigests, epoch: u64) -> Value {
    let mut config = base.map(|b| b.config.clone()).unwrap_or_default();
    config
        .entry("architecture")
        .or_insert_with(|| json!(DEFAULT_ARCHITECTURE));
    config.entry("os").or_insert_with(|| json!(DEFAULT_OS));
    config.insert("created".to_owned(), json!(rfc3339(epoch)));

    let mut runtime = match config.remove("config") {
        Some(Value::Object(runtime)) => runtime,
        _ => Map::new(),
    };
    if let Some(entrypoint) = &spec.entrypoint {
        runtime.insert("Entrypoint".to_owned(), json!(entrypoint));
        if spec.cmd.is_none() {
            runtime.remove("Cmd");
        }
    }
    if let Some(cmd) = &spec.cmd {
        runtime.insert("Cmd".to_owned(), json!(cmd));
    }
    if !spec.env.is_empty() {
        let mut env: Vec<String> = match runtime.remove("Env") {
            Some(Value::Array(items)) => items
                .into_iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect(),
            _ => Vec::new(),
        };
        for (name, value) in &spec.env {
            let prefix = format!("{name}=");
            let entry = format!("{name}={value}");
            match env.iter_mut().find(|e| e.starts_with(&prefix)) {
                Some(existing) => *existing = entry,
                None => env.push(entry),
            }
        }
        runtime.insert("Env".to_owned(), json!(env));
    }
    if let Some(workdir) = &spec.workdir {
        runtime.insert("WorkingDir".to_owned(), json!(workdir));
    }
    if let Some(user) = &spec.user {
        runtime.insert("User".to_owned(), json!(user));
    }
    if !spec.exposed_ports.is_empty() {
        let ports = spec.exposed_ports.iter().filter_map(|p| normalise_port(p));
        merge_object(
            &mut runtime,
            "ExposedPorts",
            ports.map(|port| (port, json!({}))),
        );
    }
    if !spec.labels.is_empty() {
        let labels = spec
            .labels
            .iter()
            .map(|(key, value)| (key.clone(), json!(value)));
        merge_object(&mut runtime, "Labels", labels);
    }
    if !runtime.is_empty() {
        config.insert("config".to_owned(), Value::Object(runtime));
    }

    let mut rootfs = match config.remove("rootfs") {
        Some(Value::Object(rootfs)) => rootfs,
        _ => Map::new(),
    };
    rootfs.insert("type".to_owned(), json!("layers"));
    let mut diff_ids = match rootfs.remove("diff_ids") {
        Some(Value::Array(ids)) => ids,
        _ => Vec::new(),
    };
    diff_ids.push(json!(layer.diff_id.as_str()));
    rootfs.insert("diff_ids".to_owned(), Value::Array(diff_ids));
    config.insert("rootfs".to_owned(), Value::Object(rootfs));

    let mut history = match config.remove("history") {
        Some(Value::Array(history)) => history,
        _ => Vec::new(),
    };
    // No timestamp, and no host path: only what is the same on every machine.
    history.push(json!({ "created_by": format!("gantry: COPY context {}", spec.dest) }));
    config.insert("history".to_owned(), Value::Array(history));
    Value::Object(config)
}

/// The OCI image manifest for a config and layers, as canonical JSON.
fn image_manifest(config: &Descriptor, layers: &[Descriptor]) -> Vec<u8> {
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": config,
        "layers": layers,
    });
    canonical_json(&manifest)
}

/// Inserts `entries` into the object at `key` (made an object if it is not one).
fn merge_object(
    map: &mut Map<String, Value>,
    key: &str,
    entries: impl IntoIterator<Item = (String, Value)>,
) {
    let mut inner = match map.remove(key) {
        Some(Value::Object(inner)) => inner,
        _ => Map::new(),
    };
    inner.extend(entries);
    map.insert(key.to_owned(), Value::Object(inner));
}

/// `8080` → `8080/tcp`; `53/udp` stays; anything else is `None`.
fn normalise_port(port: &str) -> Option<String> {
    let (number, protocol) = port.split_once('/').unwrap_or((port, "tcp"));
    let number: u16 = number.parse().ok().filter(|n| *n > 0)?;
    matches!(protocol, "tcp" | "udp" | "sctp").then(|| format!("{number}/{protocol}"))
}

/// Seconds since the Unix epoch as `YYYY-MM-DDTHH:MM:SSZ` (proleptic Gregorian).
fn rfc3339(secs: u64) -> String {
    let days = secs / 86_400;
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days, on unsigned days since 1970-01-01.
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_seconds_format_as_rfc3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339(4_102_444_799), "2099-12-31T23:59:59Z");
    }

    #[test]
    fn ports_normalise_to_number_and_protocol() {
        assert_eq!(normalise_port("8080").as_deref(), Some("8080/tcp"));
        assert_eq!(normalise_port("53/udp").as_deref(), Some("53/udp"));
        for bad in ["0", "65536", "80/icmp", "http", "", "/tcp"] {
            assert_eq!(normalise_port(bad), None, "{bad}");
        }
    }

    #[test]
    fn validate_lists_every_problem() {
        let mut spec = ImageSpec::new("/ctx");
        spec.dest = "app".into();
        spec.workdir = Some("rel".into());
        spec.env = vec![("A=B".into(), "x".into()), ("OK".into(), "y".into())];
        spec.exposed_ports = vec!["80".into(), "99999".into()];
        let errors = spec.validate().unwrap_err();
        assert_eq!(errors.len(), 4, "{errors:?}");
        assert!(ImageSpec::new("/ctx").validate().is_ok());
    }

    fn layer() -> LayerDigests {
        LayerDigests {
            digest: Digest::of(b"gz"),
            diff_id: Digest::of(b"tar"),
            size: 2,
        }
    }

    #[test]
    fn config_without_base_has_platform_fixed_time_and_settings() {
        let mut spec = ImageSpec::new("/ctx");
        spec.cmd = Some(vec!["/app/run".into()]);
        spec.env = vec![("MODE".into(), "prod".into())];
        spec.exposed_ports = vec!["8080".into()];
        spec.labels.insert("team".into(), "core".into());
        spec.workdir = Some("/app".into());
        spec.user = Some("1000".into());
        let config = image_config(&spec, None, &layer(), 0);
        let text = String::from_utf8(canonical_json(&config)).unwrap();
        assert_eq!(
            text,
            format!(
                concat!(
                    r#"{{"architecture":"amd64","config":{{"Cmd":["/app/run"],"Env":["MODE=prod"],"#,
                    r#""ExposedPorts":{{"8080/tcp":{{}}}},"Labels":{{"team":"core"}},"User":"1000","WorkingDir":"/app"}},"#,
                    r#""created":"1970-01-01T00:00:00Z","history":[{{"created_by":"gantry: COPY context /app"}}],"#,
                    r#""os":"linux","rootfs":{{"diff_ids":["{}"],"type":"layers"}}}}"#
                ),
                Digest::of(b"tar")
            )
        );
    }

    #[test]
    fn config_on_a_base_keeps_its_platform_and_merges_settings() {
        let base_config = json!({
            "architecture": "arm64", "os": "linux", "variant": "v8",
            "created": "2024-01-01T00:00:00Z",
            "config": {"Env": ["PATH=/bin", "MODE=dev"], "Cmd": ["sh"], "Labels": {"a": "1"}},
            "rootfs": {"type": "layers", "diff_ids": ["sha256:base"]},
            "history": [{"created": "2024-01-01T00:00:00Z", "created_by": "base"}]
        });
        let Value::Object(config) = base_config else {
            unreachable!()
        };
        let base = Base {
            reference: Reference::parse("127.0.0.1:5000/base").unwrap(),
            config,
            layers: Vec::new(),
        };
        let mut spec = ImageSpec::new("/ctx");
        spec.entrypoint = Some(vec!["/app/run".into()]);
        spec.env = vec![("MODE".into(), "prod".into()), ("X".into(), "1".into())];
        spec.labels.insert("b".into(), "2".into());
        let config = image_config(&spec, Some(&base), &layer(), 60);
        assert_eq!(config["architecture"], "arm64");
        assert_eq!(config["variant"], "v8");
        assert_eq!(config["created"], "1970-01-01T00:01:00Z");
        assert_eq!(
            config["config"]["Env"],
            json!(["PATH=/bin", "MODE=prod", "X=1"])
        );
        assert_eq!(config["config"]["Entrypoint"], json!(["/app/run"]));
        assert!(
            config["config"].get("Cmd").is_none(),
            "an entrypoint resets the base's Cmd"
        );
        assert_eq!(config["config"]["Labels"], json!({"a": "1", "b": "2"}));
        assert_eq!(
            config["rootfs"]["diff_ids"],
            json!(["sha256:base", Digest::of(b"tar").as_str()])
        );
        assert_eq!(config["history"].as_array().unwrap().len(), 2);
    }
}
