//! The embedded registry's images for people: `gantry image ls [REPO]`
//! (`GET /api/v1/images`), `gantry image inspect REF`
//! (`GET /api/v1/images/inspect`), both for any grant, and `gantry image
//! promote SRC DST` (`POST /api/v1/images/promote`, operator; audited).
//! A reference is `REPO:TAG` or `REPO@sha256:…`, optionally after the
//! registry's address.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// `GET /api/v1/images`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ImagesQuery {
    /// Only this repository's images (`shop/web`).
    #[serde(default)]
    pub repository: Option<String>,
}

/// `GET /api/v1/images/inspect`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ImageQuery {
    /// The image: `REPO:TAG` or `REPO@sha256:…`.
    pub reference: String,
}

/// A service of an environment whose current revision runs an image.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
pub struct ImageUse {
    pub environment: String,
    pub service: String,
}

/// One tag of a repository, or (`tag` null) a manifest no tag names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ImageView {
    pub repository: String,
    pub tag: Option<String>,
    pub digest: String,
    pub media_type: String,
    /// The manifest's bytes plus those of the blobs it references directly.
    pub size: u64,
    /// When the tag last moved, or the manifest was pushed (RFC 3339).
    pub updated_at: String,
    /// The services whose current revision runs this digest.
    pub running: Vec<ImageUse>,
}

/// A blob or child manifest an image references.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ImageBlobView {
    pub digest: String,
    pub media_type: String,
    pub size: u64,
}

/// What an image's config says, in short. Environment variables are given
/// by name only: their values may be secrets baked into an image.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ImageConfigSummary {
    pub os: Option<String>,
    pub architecture: Option<String>,
    pub created: Option<String>,
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub working_dir: Option<String>,
    pub user: Option<String>,
    pub exposed_ports: Vec<String>,
    pub env_names: Vec<String>,
    pub labels: std::collections::BTreeMap<String, String>,
}

/// `GET /api/v1/images/inspect`: one image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ImageDetailView {
    pub repository: String,
    pub digest: String,
    pub media_type: String,
    /// The manifest's own size.
    pub manifest_size: u64,
    /// The manifest's, config's and layers' sizes (an index: its
    /// children's manifests').
    pub size: u64,
    /// The repository's tags that point at this digest.
    pub tags: Vec<String>,
    pub config: Option<ImageBlobView>,
    pub layers: Vec<ImageBlobView>,
    /// An index's images.
    pub manifests: Vec<ImageBlobView>,
    /// The config's summary, when the config is an image config.
    pub config_summary: Option<ImageConfigSummary>,
    /// The services whose current revision runs this digest.
    pub running: Vec<ImageUse>,
}

/// `POST /api/v1/images/promote`: copy an image between repositories or
/// tags of the embedded registry, by digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PromoteImageRequest {
    /// `REPO:TAG` or `REPO@sha256:…`.
    pub source: String,
    /// `REPO:TAG`, or `REPO` to keep the source's tag (none when the
    /// source is named by digest).
    pub destination: String,
}

/// What a promotion did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PromoteImageAnswer {
    /// `REPO@DIGEST` of the source.
    pub source: String,
    /// `REPO:TAG@DIGEST` (or `REPO@DIGEST`) in the destination.
    pub destination: String,
    pub digest: String,
    pub media_type: String,
    /// Manifests stored in the destination (an index counts its images).
    pub manifests: u64,
    /// Blobs the destination repository links now that it did not before.
    pub blobs_linked: u64,
}
