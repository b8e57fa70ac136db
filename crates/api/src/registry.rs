//! The embedded registry's garbage collection (`gantry registry gc`,
//! `POST /api/v1/registry/gc`, admin only).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// `POST /api/v1/registry/gc`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct RegistryGcRequest {
    /// Report what would be removed; remove nothing.
    #[serde(default)]
    pub dry_run: bool,
    /// Keep whatever was pushed (manifests, blobs, repositories) within
    /// this many seconds, referenced or not: pushes in flight upload their
    /// blobs before the manifest that references them. Default 3600.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grace_seconds: Option<u64>,
}

/// A manifest removed from a repository.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct GcManifestView {
    pub repository: String,
    pub digest: String,
    pub bytes: u64,
}

/// A blob removed from a repository (its bytes are in `files` once no
/// repository links it and gantry does not use it otherwise).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct GcBlobView {
    pub repository: String,
    pub digest: String,
    pub bytes: u64,
}

/// Bytes removed from the data dir: a blob's file in the shared store, or
/// an unpacked image root of the process runtime.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct GcFileView {
    pub digest: String,
    pub bytes: u64,
}

/// A repository garbage collection did not touch, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct GcSkippedView {
    pub repository: String,
    pub reason: String,
}

/// What garbage collection removed, or with `dry_run` would remove.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct RegistryGcAnswer {
    pub dry_run: bool,
    pub grace_seconds: u64,
    /// Manifests, blob files and image roots, in bytes.
    pub bytes_freed: u64,
    pub manifests: Vec<GcManifestView>,
    pub blobs: Vec<GcBlobView>,
    /// Blob files removed from the shared store.
    pub files: Vec<GcFileView>,
    /// Unpacked image roots (`DATA_DIR/rootfs/<hex>/`) no replica used.
    pub images: Vec<GcFileView>,
    /// Repositories left with nothing in them.
    pub repositories: Vec<String>,
    pub skipped: Vec<GcSkippedView>,
    /// Manifest digests kept because a revision or an unfinished execution
    /// names them, whether or not a tag does.
    pub kept_digests: u64,
}
