//! Promotion: the tested image, byte for byte, under another name.
//!
//! gantry builds an image once; every later environment gets that same image,
//! named by its digest. Promotion therefore never rebuilds and never re-encodes:
//! it makes the destination hold every blob the source manifest refers to (skipped
//! when already there, mounted within one registry, streamed across registries),
//! then stores the source's manifest bytes unchanged under the new name. Equal
//! bytes mean an equal digest, and that is checked, not assumed.

use crate::client::{RawManifest, RegistryClient, RegistryError};
use crate::digest::{Digest, DigestError};
use crate::manifest::{Descriptor, ImageIndex, ImageManifest, ManifestKind, manifest_kind};
use crate::reference::Reference;

/// Indexes nest (an index of indexes is legal); the bound stops a hostile
/// registry from leading the walk on forever with ever new manifests.
const MAX_INDEX_DEPTH: usize = 4;

/// What a promotion did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PromoteResult {
    /// The digest of the promoted manifest, equal to the source's.
    pub digest: Digest,
    /// The destination pinned at that digest (`registry/repo@sha256:…`).
    pub reference: Reference,
    /// Blobs streamed from the source registry.
    pub copied_blobs: usize,
    /// Blobs linked from the source repository by the registry.
    pub mounted_blobs: usize,
    /// Blobs the destination already had.
    pub skipped_blobs: usize,
}

/// Why a promotion failed.
#[derive(Debug, thiserror::Error)]
pub enum PromoteError {
    /// A registry call failed (this includes a source tag that does not exist).
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// The expected digest given is not a digest.
    #[error("promoting {image}: {source}")]
    InvalidDigest {
        /// The source image.
        image: String,
        /// What is wrong with the expected digest.
        source: DigestError,
    },
    /// The source tag no longer points at the tested image.
    #[error("promoting {image}: the tag moved: expected {expected}, it now points at {actual}")]
    TagMoved {
        /// The source image.
        image: String,
        /// The digest that was tested.
        expected: Digest,
        /// The digest the tag names now.
        actual: Digest,
    },
    /// The source manifest is of a kind gantry cannot copy (e.g. Docker schema 1).
    #[error("promoting {image}: unsupported manifest media type {media_type:?}")]
    UnsupportedManifest {
        /// The image whose manifest it is.
        image: String,
        /// Its media type.
        media_type: String,
    },
    /// The source manifest does not parse.
    #[error("promoting {image}: invalid manifest: {reason}")]
    BadManifest {
        /// The image whose manifest it is.
        image: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The destination stored the manifest under another digest.
    #[error("promoting to {image}: digest changed from {expected} to {actual}")]
    DigestChanged {
        /// The destination image.
        image: String,
        /// The source digest.
        expected: Digest,
        /// The digest the destination reported.
        actual: Digest,
    },
}

/// How many blobs move at once: enough to overlap round trips and keep a link
/// busy, few enough not to swamp a small registry.
const PARALLEL_BLOBS: usize = 4;

/// Counts of what happened to blobs.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TransferCounts {
    pub(crate) copied: usize,
    pub(crate) mounted: usize,
    pub(crate) skipped: usize,
}

/// What happened to one blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Transfer {
    Copied,
    Mounted,
    Skipped,
    /// A foreign layer, which lives outside registries and is left alone.
    Foreign,
}

impl TransferCounts {
    fn add(&mut self, transfer: Transfer) {
        match transfer {
            Transfer::Copied => self.copied += 1,
            Transfer::Mounted => self.mounted += 1,
            Transfer::Skipped => self.skipped += 1,
            Transfer::Foreign => {}
        }
    }
}

/// Promotes the image `src` names to `dst`.
///
/// With `expected_digest`, the source must still be that image: a tag that moved
/// since the image was tested fails, naming both digests. The result's digest is
/// always the source's.
pub async fn promote(
    client: &RegistryClient,
    src: &Reference,
    dst: &Reference,
    expected_digest: Option<&str>,
) -> Result<PromoteResult, PromoteError> {
    let expected = expected_digest
        .map(Digest::parse)
        .transpose()
        .map_err(|source| PromoteError::InvalidDigest {
            image: src.to_string(),
            source,
        })?;
    let raw = client.get_manifest_raw(src).await?;
    if let Some(expected) = expected
        && expected != raw.digest
    {
        return Err(PromoteError::TagMoved {
            image: src.to_string(),
            expected,
            actual: raw.digest,
        });
    }
    let mut counts = TransferCounts::default();
    // Within one repository every blob and child manifest is already there.
    if !src.same_repository(dst) {
        copy_referents(client, src, dst, &raw, &mut counts, 0).await?;
    }
    let digest = client
        .put_manifest_raw(dst, &raw.bytes, &raw.media_type)
        .await?;
    if digest != raw.digest {
        return Err(PromoteError::DigestChanged {
            image: dst.to_string(),
            expected: raw.digest,
            actual: digest,
        });
    }
    tracing::info!(src = %src, dst = %dst, digest = %digest, copied = counts.copied, mounted = counts.mounted, skipped = counts.skipped, "promoted image");
    Ok(PromoteResult {
        reference: dst.with_digest(&digest),
        digest,
        copied_blobs: counts.copied,
        mounted_blobs: counts.mounted,
        skipped_blobs: counts.skipped,
    })
}

/// Makes `dst` hold everything `raw` (fetched from `src`) refers to: blobs for an
/// image manifest, child manifests (and their blobs) for an index.
async fn copy_referents(
    client: &RegistryClient,
    src: &Reference,
    dst: &Reference,
    raw: &RawManifest,
    counts: &mut TransferCounts,
    depth: usize,
) -> Result<(), PromoteError> {
    let bad = |reason: String| PromoteError::BadManifest {
        image: src.to_string(),
        reason,
    };
    match manifest_kind(&raw.media_type) {
        Some(ManifestKind::Image) => {
            let manifest: ImageManifest =
                serde_json::from_slice(&raw.bytes).map_err(|e| bad(e.to_string()))?;
            let blobs: Vec<Descriptor> = std::iter::once(manifest.config)
                .chain(manifest.layers)
                .collect();
            transfer_blobs(client, src, dst, &blobs, counts).await?;
            Ok(())
        }
        Some(ManifestKind::Index) => {
            if depth >= MAX_INDEX_DEPTH {
                return Err(bad(format!("indexes nested deeper than {MAX_INDEX_DEPTH}")));
            }
            let index: ImageIndex =
                serde_json::from_slice(&raw.bytes).map_err(|e| bad(e.to_string()))?;
            for child in &index.manifests {
                let child_dst = dst.with_digest(&child.digest);
                // A child already at the destination brings its blobs with it.
                if client.manifest_digest(&child_dst).await?.is_some() {
                    continue;
                }
                let child_src = src.with_digest(&child.digest);
                let child_raw = client.get_manifest_raw(&child_src).await?;
                Box::pin(copy_referents(
                    client,
                    &child_src,
                    &child_dst,
                    &child_raw,
                    counts,
                    depth + 1,
                ))
                .await?;
                // Registries refuse an index whose children they do not hold, so each
                // child goes in first, by digest, with its bytes unchanged.
                client
                    .put_manifest_raw(&child_dst, &child_raw.bytes, &child_raw.media_type)
                    .await?;
            }
            Ok(())
        }
        None => Err(PromoteError::UnsupportedManifest {
            image: src.to_string(),
            media_type: raw.media_type.clone(),
        }),
    }
}

/// Makes `dst`'s repository hold every blob in `blobs` (taken from `src`'s),
/// [`PARALLEL_BLOBS`] at a time. On the first failure the others are abandoned.
pub(crate) async fn transfer_blobs(
    client: &RegistryClient,
    src: &Reference,
    dst: &Reference,
    blobs: &[Descriptor],
    counts: &mut TransferCounts,
) -> Result<(), RegistryError> {
    // A manifest may list one blob twice (empty layers); moving it twice at once
    // would race two uploads of the same content.
    let mut seen = std::collections::HashSet::new();
    let mut pending = blobs
        .iter()
        .filter(|d| seen.insert(d.digest.clone()))
        .cloned();
    let mut running = tokio::task::JoinSet::new();
    loop {
        while running.len() < PARALLEL_BLOBS
            && let Some(descriptor) = pending.next()
        {
            let (client, src, dst) = (client.clone(), src.clone(), dst.clone());
            running.spawn(async move { transfer_blob(&client, &src, &dst, &descriptor).await });
        }
        match running.join_next().await {
            None => return Ok(()),
            Some(Ok(Ok(transfer))) => counts.add(transfer),
            // Returning drops the JoinSet, which aborts the transfers still running.
            Some(Ok(Err(error))) => return Err(error),
            Some(Err(join)) => {
                return Err(RegistryError::Io {
                    image: dst.to_string(),
                    what: "blob transfer task".to_owned(),
                    source: std::io::Error::other(join.to_string()),
                });
            }
        }
    }
}

/// Makes `dst`'s repository hold the blob `descriptor` names, taking it from
/// `src`'s: skip if present, mount within one registry, else stream a copy.
async fn transfer_blob(
    client: &RegistryClient,
    src: &Reference,
    dst: &Reference,
    descriptor: &Descriptor,
) -> Result<Transfer, RegistryError> {
    if descriptor.is_foreign() {
        return Ok(Transfer::Foreign);
    }
    let digest = &descriptor.digest;
    if client.blob_exists(dst, digest).await? {
        Ok(Transfer::Skipped)
    } else if src.same_registry(dst) && client.mount_blob(src, dst, digest).await? {
        Ok(Transfer::Mounted)
    } else {
        client.copy_blob(src, dst, digest, descriptor.size).await?;
        Ok(Transfer::Copied)
    }
}
