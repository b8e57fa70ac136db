//! What the registry holds, for people (`gantry image ls|inspect|promote`
//! through the control plane's API, not `/v2`): the tagged and untagged
//! images of a repository, one image's layers and config, and the copy of
//! an image between repositories and tags by digest.
//!
//! A copy never moves bytes: the destination repository links the blobs
//! the source already links (same digest, same file in the shared store),
//! then stores the same manifest bytes, so the digest is the same on both
//! sides. An index's child manifests are copied first, as a client pushing
//! them would, so that every manifest stored still has everything it
//! references. Quotas apply as to a push.

use serde::Deserialize;
use sqlx::Row;

use crate::Registry;
use crate::metadata::{LinkError, NewManifest, Quotas, Referrer};
use crate::names::{Digest, RepoName, Tag};

/// An image reference as people write it: `REPO:TAG`, `REPO@sha256:…`, or
/// either after the registry's address (`127.0.0.1:7701/shop/web:1`), which
/// is dropped: only the embedded registry is looked in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageName {
    pub repository: String,
    pub tag: Option<String>,
    pub digest: Option<String>,
}

impl ImageName {
    /// Reads a reference; a repository alone names no image but is
    /// accepted (`tag` and `digest` both `None`) as a promotion's target.
    pub fn parse(text: &str) -> Result<ImageName, ImageError> {
        let invalid = |why: &str| ImageError::InvalidReference {
            reference: printable(text),
            why: why.to_string(),
        };
        if text.is_empty() || text.len() > 512 {
            return Err(invalid("it must be 1 to 512 characters"));
        }
        // A first component with a '.' or ':' (or `localhost`) is a
        // registry's address, as docker reads it.
        let rest = match text.split_once('/') {
            Some((first, rest))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                rest
            }
            _ => text,
        };
        let (rest, digest) = match rest.split_once('@') {
            Some((name, digest)) => {
                Digest::parse(digest).map_err(|_| invalid("its digest is not sha256:<64 hex>"))?;
                (name, Some(digest.to_string()))
            }
            None => (rest, None),
        };
        let (repository, tag) = match rest.rsplit_once(':') {
            Some((name, tag)) if !tag.contains('/') => {
                Tag::parse(tag).ok_or_else(|| invalid("its tag is not a valid tag"))?;
                (name, Some(tag.to_string()))
            }
            _ => (rest, None),
        };
        RepoName::parse(repository).map_err(|_| invalid("its repository name is not valid"))?;
        Ok(ImageName {
            repository: repository.to_string(),
            tag,
            digest,
        })
    }
}

impl std::fmt::Display for ImageName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

/// At most 200 characters of `s`, without control characters, for an
/// error message.
fn printable(s: &str) -> String {
    s.chars().filter(|c| !c.is_control()).take(200).collect()
}

/// What the image API refuses, and why. Codes are stable (`image.*`).
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("invalid image reference {reference:?}: {why}")]
    InvalidReference { reference: String, why: String },
    #[error("repository {0} does not exist in the embedded registry")]
    UnknownRepository(String),
    #[error("image {0} does not exist in the embedded registry")]
    NotFound(String),
    #[error("{0} names no image: give a tag or a digest")]
    NoImage(String),
    #[error("{source_image} is {digest}, not the digest asked for")]
    DigestMismatch {
        source_image: String,
        digest: String,
    },
    #[error("the copy would exceed a quota: {0}")]
    Quota(String),
    #[error("image {image}: {why}")]
    Corrupt { image: String, why: String },
    #[error(transparent)]
    Registry(#[from] crate::RegistryError),
}

impl From<sqlx::Error> for ImageError {
    fn from(e: sqlx::Error) -> ImageError {
        ImageError::Registry(e.into())
    }
}

impl ImageError {
    /// A stable `area.snake_case` identifier, for scripts and the API.
    pub fn code(&self) -> &'static str {
        match self {
            ImageError::InvalidReference { .. } => "image.invalid_reference",
            ImageError::UnknownRepository(_) => "image.unknown_repository",
            ImageError::NotFound(_) => "image.not_found",
            ImageError::NoImage(_) => "image.no_image",
            ImageError::DigestMismatch { .. } => "image.digest_mismatch",
            ImageError::Quota(_) => "image.quota_exceeded",
            ImageError::Corrupt { .. } => "image.corrupt",
            ImageError::Registry(_) => "image.registry_error",
        }
    }

    /// The HTTP status the API answers it with.
    pub fn http_status(&self) -> u16 {
        match self {
            ImageError::InvalidReference { .. } | ImageError::NoImage(_) => 400,
            ImageError::UnknownRepository(_) | ImageError::NotFound(_) => 404,
            ImageError::DigestMismatch { .. } => 409,
            ImageError::Quota(_) => 403,
            ImageError::Corrupt { .. } | ImageError::Registry(_) => 500,
        }
    }
}

/// One tag of a repository (or, with `tag` `None`, a manifest no tag names).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedImage {
    pub repository: String,
    pub tag: Option<String>,
    pub digest: String,
    pub media_type: String,
    /// The manifest's bytes plus those of the blobs it references directly.
    pub size: u64,
    /// When the manifest was pushed (Unix ms); for a tag, when it last moved.
    pub updated_at: i64,
}

/// A blob an image manifest references.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageBlob {
    pub digest: String,
    pub media_type: String,
    pub size: u64,
}

/// One image, as `gantry image inspect` shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageDetails {
    pub repository: String,
    pub digest: String,
    pub media_type: String,
    /// The manifest's own size.
    pub manifest_size: u64,
    /// The manifest's size plus its config's and layers' (an index: its
    /// children's manifests).
    pub size: u64,
    /// The tags of `repository` that point at it.
    pub tags: Vec<String>,
    pub config: Option<ImageBlob>,
    pub layers: Vec<ImageBlob>,
    /// An index's images: their digests, media types, sizes.
    pub manifests: Vec<ImageBlob>,
    /// The config blob's JSON, when it is an image config of at most 1 MiB.
    pub config_json: Option<serde_json::Value>,
}

/// What a copy did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopiedImage {
    pub digest: String,
    pub media_type: String,
    /// Manifests stored in the destination (the image, and an index's
    /// children), counting those already there.
    pub manifests: u64,
    /// Blobs the destination links that it did not before.
    pub blobs_linked: u64,
}

/// The largest config blob read for `inspect`.
const MAX_CONFIG: u64 = 1024 * 1024;
/// How deep an index may nest indexes in a copy (OCI allows nesting; a
/// real one is one or two levels).
const MAX_DEPTH: usize = 4;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Descriptor {
    media_type: Option<String>,
    digest: String,
    size: Option<u64>,
}

#[derive(Deserialize)]
struct Manifest {
    config: Option<Descriptor>,
    #[serde(default)]
    layers: Vec<Descriptor>,
    #[serde(default)]
    manifests: Vec<Descriptor>,
}

fn blob(d: &Descriptor) -> ImageBlob {
    ImageBlob {
        digest: d.digest.clone(),
        media_type: d.media_type.clone().unwrap_or_default(),
        size: d.size.unwrap_or(0),
    }
}

fn parse_manifest(image: &str, content: &[u8]) -> Result<Manifest, ImageError> {
    serde_json::from_slice(content).map_err(|e| ImageError::Corrupt {
        image: image.to_string(),
        why: format!("its stored manifest does not read: {e}"),
    })
}

impl Registry {
    /// Every tag (and every manifest no tag names) of `repository`, or of
    /// every repository, ordered by repository then tag.
    pub async fn images(&self, repository: Option<&str>) -> Result<Vec<ListedImage>, ImageError> {
        let pool = self.inner.metadata.pool();
        if let Some(name) = repository {
            let repo = ImageName::parse(name)?;
            if !self
                .inner
                .metadata
                .repository_exists(
                    &RepoName::parse(&repo.repository)
                        .map_err(|_| ImageError::UnknownRepository(printable(name)))?,
                )
                .await?
            {
                return Err(ImageError::UnknownRepository(repo.repository));
            }
        }
        let repository = repository
            .map(|r| ImageName::parse(r).map(|n| n.repository))
            .transpose()?;
        let rows = sqlx::query(
            "SELECT m.repository, t.tag, m.digest, m.media_type, m.content,
                    COALESCE(t.updated_at, m.pushed_at) AS updated_at
             FROM registry_manifests m
             LEFT JOIN registry_tags t ON t.repository = m.repository AND t.digest = m.digest
             WHERE ($1 IS NULL OR m.repository = $1)
               AND (t.tag IS NOT NULL OR NOT EXISTS (
                     SELECT 1 FROM registry_referrers r
                     WHERE r.repository = m.repository AND r.digest = m.digest))
             ORDER BY m.repository, t.tag IS NULL, t.tag, m.pushed_at, m.digest",
        )
        .bind(repository)
        .fetch_all(pool)
        .await?;
        let mut images = Vec::new();
        for row in rows {
            let repository: String = row.try_get("repository")?;
            let digest: String = row.try_get("digest")?;
            let content: Vec<u8> = row.try_get("content")?;
            let size = match parse_manifest(&format!("{repository}@{digest}"), &content) {
                Ok(m) => {
                    content.len() as u64
                        + m.config
                            .iter()
                            .chain(&m.layers)
                            .chain(&m.manifests)
                            .map(|d| d.size.unwrap_or(0))
                            .sum::<u64>()
                }
                Err(_) => content.len() as u64,
            };
            images.push(ListedImage {
                repository,
                tag: row.try_get("tag")?,
                digest,
                media_type: row.try_get("media_type")?,
                size,
                updated_at: row.try_get("updated_at")?,
            });
        }
        Ok(images)
    }

    /// The digest `name` points at in its repository.
    async fn resolve_image(&self, name: &ImageName) -> Result<(RepoName, Digest), ImageError> {
        let unknown_repo = || ImageError::UnknownRepository(name.repository.clone());
        let repo = RepoName::parse(&name.repository).map_err(|_| unknown_repo())?;
        let metadata = &self.inner.metadata;
        if !metadata.repository_exists(&repo).await? {
            return Err(unknown_repo());
        }
        let by_tag = match &name.tag {
            Some(tag) => Some(
                metadata
                    .tag(&repo, tag)
                    .await?
                    .ok_or_else(|| ImageError::NotFound(name.to_string()))?,
            ),
            None => None,
        };
        let digest = match (&name.digest, by_tag) {
            (Some(asked), Some(tagged)) if tagged.as_str() != asked => {
                return Err(ImageError::DigestMismatch {
                    source_image: format!(
                        "{}:{}",
                        name.repository,
                        name.tag.as_deref().unwrap_or("")
                    ),
                    digest: tagged.as_str().to_string(),
                });
            }
            (_, Some(tagged)) => tagged,
            (Some(asked), None) => {
                Digest::parse(asked).map_err(|_| ImageError::NotFound(name.to_string()))?
            }
            (None, None) => return Err(ImageError::NoImage(name.to_string())),
        };
        if !metadata.manifest_exists(&repo, &digest).await? {
            return Err(ImageError::NotFound(name.to_string()));
        }
        Ok((repo, digest))
    }

    /// One image: its manifest's descriptors, its tags, and its config.
    pub async fn inspect(&self, name: &ImageName) -> Result<ImageDetails, ImageError> {
        let (repo, digest) = self.resolve_image(name).await?;
        let metadata = &self.inner.metadata;
        let stored = metadata
            .manifest(&repo, &digest)
            .await?
            .ok_or_else(|| ImageError::NotFound(name.to_string()))?;
        let manifest = parse_manifest(&name.to_string(), &stored.content)?;
        let tags: Vec<String> = sqlx::query_scalar(
            "SELECT tag FROM registry_tags WHERE repository = $1 AND digest = $2 ORDER BY tag",
        )
        .bind(repo.as_str())
        .bind(digest.as_str())
        .fetch_all(metadata.pool())
        .await?;
        let config = manifest.config.as_ref().map(blob);
        let config_json = match &config {
            Some(c) if c.size <= MAX_CONFIG => self.read_config(&c.digest).await,
            _ => None,
        };
        let layers: Vec<ImageBlob> = manifest.layers.iter().map(blob).collect();
        let manifests: Vec<ImageBlob> = manifest.manifests.iter().map(blob).collect();
        let manifest_size = stored.content.len() as u64;
        let size = manifest_size
            + config.iter().map(|c| c.size).sum::<u64>()
            + layers.iter().chain(&manifests).map(|b| b.size).sum::<u64>();
        Ok(ImageDetails {
            repository: repo.as_str().to_string(),
            digest: digest.as_str().to_string(),
            media_type: stored.media_type,
            manifest_size,
            size,
            tags,
            config,
            layers,
            manifests,
            config_json,
        })
    }

    /// The config blob as JSON, if the store has it and it reads as JSON
    /// of at most [`MAX_CONFIG`] bytes.
    async fn read_config(&self, digest: &str) -> Option<serde_json::Value> {
        let artifacts = self.inner.artifacts.clone();
        let key = digest.to_string();
        tokio::task::spawn_blocking(move || {
            use std::io::Read;
            let file = artifacts.open_blob(&key).ok()?;
            let mut bytes = Vec::new();
            file.take(MAX_CONFIG + 1).read_to_end(&mut bytes).ok()?;
            if bytes.len() as u64 > MAX_CONFIG {
                return None;
            }
            serde_json::from_slice(&bytes).ok()
        })
        .await
        .ok()
        .flatten()
    }

    /// Copies the image `source` names into `destination`'s repository,
    /// under `destination`'s tag (or `source`'s tag when it has none), by
    /// digest: the same manifest bytes, the same blobs, no byte moved.
    pub async fn copy_image(
        &self,
        source: &ImageName,
        destination: &ImageName,
    ) -> Result<CopiedImage, ImageError> {
        let (from, digest) = self.resolve_image(source).await?;
        if let Some(asked) = &destination.digest
            && asked != digest.as_str()
        {
            return Err(ImageError::DigestMismatch {
                source_image: source.to_string(),
                digest: digest.as_str().to_string(),
            });
        }
        let to =
            RepoName::parse(&destination.repository).map_err(|_| ImageError::InvalidReference {
                reference: destination.to_string(),
                why: "its repository name is not valid".into(),
            })?;
        let tag = destination.tag.as_deref().or(source.tag.as_deref());
        // From the reads of what the source references to the write that
        // references it in the destination, garbage collection waits.
        let _referencing = self.inner.gc.read().await;
        let mut copied = CopiedImage {
            digest: digest.as_str().to_string(),
            media_type: String::new(),
            manifests: 0,
            blobs_linked: 0,
        };
        copied.media_type = self
            .copy_manifest(&from, &to, &digest, tag, 0, &mut copied)
            .await?;
        tracing::info!(from = %from, to = %to, tag = tag.unwrap_or(""), digest = %digest, "image copied");
        Ok(copied)
    }

    /// Copies one manifest (its children first) and links its blobs;
    /// answers its media type.
    async fn copy_manifest(
        &self,
        from: &RepoName,
        to: &RepoName,
        digest: &Digest,
        tag: Option<&str>,
        depth: usize,
        copied: &mut CopiedImage,
    ) -> Result<String, ImageError> {
        let image = format!("{from}@{digest}");
        let metadata = &self.inner.metadata;
        let stored = metadata
            .manifest(from, digest)
            .await?
            .ok_or_else(|| ImageError::NotFound(image.clone()))?;
        let parsed =
            crate::manifest::parse(&stored.content, Some(&stored.media_type)).map_err(|e| {
                ImageError::Corrupt {
                    image: image.clone(),
                    why: format!("its stored manifest does not parse: {}", e.message),
                }
            })?;
        for child in &parsed.children {
            if depth >= MAX_DEPTH {
                return Err(ImageError::Corrupt {
                    image,
                    why: format!("its indexes nest more than {MAX_DEPTH} deep"),
                });
            }
            Box::pin(self.copy_manifest(from, to, child, None, depth + 1, copied)).await?;
        }
        let mut links = Vec::new();
        for blob in &parsed.blobs {
            if metadata.blob_size(to, blob).await?.is_some() {
                continue;
            }
            let size =
                metadata
                    .blob_size(from, blob)
                    .await?
                    .ok_or_else(|| ImageError::Corrupt {
                        image: image.clone(),
                        why: format!("blob {blob} it references is not in its repository"),
                    })?;
            links.push((blob.clone(), size));
        }
        let referrer = Referrer::of(&parsed);
        let quotas = Quotas {
            repository: self.inner.limits.repository_quota,
            total: self.inner.limits.total_quota,
        };
        metadata
            .put_manifest(
                NewManifest {
                    repo: to,
                    digest,
                    media_type: &stored.media_type,
                    content: &stored.content,
                    tag,
                    links: &links,
                    referrer: referrer.as_ref(),
                },
                quotas,
            )
            .await
            .map_err(|e| match e {
                LinkError::Database(e) => ImageError::from(e),
                LinkError::Quota(q) => ImageError::Quota(q.to_string()),
            })?;
        copied.manifests += 1;
        copied.blobs_linked += links.len() as u64;
        Ok(stored.media_type)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(text: &str) -> ImageName {
        ImageName::parse(text).unwrap()
    }

    #[test]
    fn references_read_as_docker_writes_them() {
        let digest = format!("sha256:{}", "a".repeat(64));
        assert_eq!(
            name("shop/web:1.0"),
            ImageName {
                repository: "shop/web".into(),
                tag: Some("1.0".into()),
                digest: None
            }
        );
        assert_eq!(name("127.0.0.1:7701/shop/web:1.0"), name("shop/web:1.0"));
        assert_eq!(name("localhost/shop/web"), name("shop/web"));
        let by_digest = name(&format!("127.0.0.1:7701/shop/web@{digest}"));
        assert_eq!(by_digest.digest.as_deref(), Some(digest.as_str()));
        assert_eq!(by_digest.tag, None);
        assert_eq!(name("web").tag, None);
        for bad in [
            "",
            "Shop/Web:1",
            "shop/web:",
            "shop/web@sha256:12",
            "shop/../x:1",
        ] {
            let e = ImageName::parse(bad).unwrap_err();
            assert_eq!(e.code(), "image.invalid_reference", "{bad}");
        }
    }
}
