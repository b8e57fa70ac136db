//! `gantry registry gc`: the embedded registry's garbage collection, with
//! what only the control plane knows.
//!
//! The registry keeps what its tags reach; the control plane adds the
//! images that must stay although no tag may name them any more (every
//! revision's image: environments run them or could roll back to them; and
//! every image digest an unfinished execution names, such as one an
//! approval is bound to), and the blobs gantry uses outside the registry
//! (the files of every artifact an execution produced share the store).
//! Then the process runtime's unpacked images that no replica uses go too.
//!
//! Artifacts are found in the executions' state: an artifact id is a
//! `sha256:` digest there, and so is every image digest. A digest that
//! merely looks like one keeps a little more than needed, never less.

use std::collections::BTreeSet;
use std::time::Duration;

use gantry_api::{
    GcBlobView, GcFileView, GcManifestView, GcSkippedView, RegistryGcAnswer, RegistryGcRequest,
};
use gantry_store::ArtifactEntry;

use crate::control::ControlPlane;
use crate::error::ControlError;

/// How long what was pushed stays, referenced or not, unless the request
/// says otherwise: a push uploads its blobs before the manifest that
/// references them, and a multi-platform push its images before their index.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(60 * 60);

/// The `sha256:<64 hex>` digests in `text`, each once.
fn digests_in(text: &str) -> BTreeSet<String> {
    const PREFIX: &str = "sha256:";
    let mut found = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find(PREFIX) {
        let hex = &rest[at + PREFIX.len()..];
        let len = hex
            .bytes()
            .take_while(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b))
            .count();
        if len == 64 {
            found.insert(format!("{PREFIX}{}", &hex[..64]));
        }
        rest = &hex[len..];
    }
    found
}

impl ControlPlane {
    /// Collects the embedded registry's garbage and the unpacked images no
    /// replica uses (see the module's documentation); with `dry_run`,
    /// reports what would go and removes nothing.
    pub async fn collect_registry_garbage(
        &self,
        request: &RegistryGcRequest,
    ) -> Result<RegistryGcAnswer, ControlError> {
        let registry = self
            .embedded_registry()
            .ok_or_else(|| ControlError::Internal("the embedded registry is not open".into()))?;
        let grace = request
            .grace_seconds
            .map_or(DEFAULT_GRACE, Duration::from_secs);

        let mut keep_manifests = BTreeSet::new();
        for image in self.deployer().revision_images().await? {
            keep_manifests.extend(digests_in(&image));
        }
        let mut named = BTreeSet::new();
        for row in self.store().executions(None, i64::MAX).await? {
            let digests = digests_in(&row.state);
            if row.finished_at.is_none() {
                keep_manifests.extend(digests.iter().cloned());
            }
            named.extend(digests);
        }
        let kept_digests = keep_manifests.len() as u64;
        let artifacts = self.artifacts().clone();
        let keep_bytes = tokio::task::spawn_blocking(move || {
            let mut keep = BTreeSet::new();
            for digest in named {
                // Digests that are no artifact (images, commits' trees) fail
                // to read as one and keep only themselves.
                if let Ok(artifact) = artifacts.artifact(&digest) {
                    keep.extend(artifact.entries.into_iter().filter_map(|e| match e {
                        ArtifactEntry::File { digest, .. } => Some(digest),
                        _ => None,
                    }));
                }
                keep.insert(digest);
            }
            keep
        })
        .await
        .map_err(|e| ControlError::Internal(format!("reading artifacts: {e}")))?;

        let report = registry
            .collect_garbage(&gantry_registry::GcOptions {
                dry_run: request.dry_run,
                grace,
                keep_manifests,
                keep_bytes,
            })
            .await
            .map_err(|e| ControlError::Internal(format!("registry garbage collection: {e}")))?;
        let images = self.deployer().prune_images(request.dry_run).await?;

        let images: Vec<GcFileView> = images
            .into_iter()
            .map(|i| GcFileView {
                digest: i.digest,
                bytes: i.bytes,
            })
            .collect();
        Ok(RegistryGcAnswer {
            dry_run: request.dry_run,
            grace_seconds: grace.as_secs(),
            bytes_freed: report.bytes_freed() + images.iter().map(|i| i.bytes).sum::<u64>(),
            manifests: report
                .manifests
                .into_iter()
                .map(|m| GcManifestView {
                    repository: m.repository,
                    digest: m.digest,
                    bytes: m.bytes,
                })
                .collect(),
            blobs: report
                .blobs
                .into_iter()
                .map(|b| GcBlobView {
                    repository: b.repository,
                    digest: b.digest,
                    bytes: b.bytes,
                })
                .collect(),
            files: report
                .files
                .into_iter()
                .map(|f| GcFileView {
                    digest: f.digest,
                    bytes: f.bytes,
                })
                .collect(),
            images,
            repositories: report.repositories,
            skipped: report
                .skipped
                .into_iter()
                .map(|(repository, reason)| GcSkippedView { repository, reason })
                .collect(),
            kept_digests,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_are_found_anywhere_in_the_text_and_only_whole() {
        let a = format!("sha256:{}", "a".repeat(64));
        let b = format!("sha256:{}", "0123456789abcdef".repeat(4));
        let text = format!(
            r#"{{"x":"reg/app@{a}","y":["{b}","sha256:{short}","sha256:{upper}"],"z":"{a}"}}"#,
            short = "a".repeat(63),
            upper = "A".repeat(64),
        );
        assert_eq!(digests_in(&text), BTreeSet::from([a, b]));
        // 65 hex digits are no digest.
        assert!(digests_in(&format!("sha256:{}", "a".repeat(65))).is_empty());
    }
}
