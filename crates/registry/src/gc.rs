//! Garbage collection: what the registry holds that nothing needs any more.
//!
//! In each repository a manifest is **live** when a tag points at it, when
//! the caller names its digest (gantry keeps the images of every revision
//! an environment runs or could roll back to), or when it was pushed within
//! the grace period; so is every manifest a live index lists, and every
//! manifest whose `subject` is live (its signatures and SBOMs). A blob link
//! is live when a live image manifest of its repository references the
//! blob, or when it was made within the grace period (a push in flight
//! uploads its blobs before the manifest that references them). Everything
//! else goes: manifest rows, links, repositories left empty, and the bytes
//! of blobs no repository links any more, unless the caller says gantry
//! itself uses them (build artifacts share the store).
//!
//! Garbage collection holds the registry's exclusive lock from the first
//! read to the last removal; every request that adds a link or a manifest
//! holds it shared from its checks to its write. So a push never sees its
//! blob vanish between the check that found it and the manifest that
//! references it, and a blob linked again is never removed. A repository
//! whose manifests cannot all be read is left alone.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use crate::manifest;
use crate::metadata::{Inventory, ManifestRecord};
use crate::{Registry, RegistryError};

/// What a garbage collection may remove and must keep.
#[derive(Debug, Clone, Default)]
pub struct GcOptions {
    /// Report what would go; remove nothing.
    pub dry_run: bool,
    /// Manifests pushed, links made and repositories created more recently
    /// than this stay, referenced or not.
    pub grace: Duration,
    /// Manifest digests (`sha256:…`) to keep in every repository holding
    /// them, with all they reference.
    pub keep_manifests: BTreeSet<String>,
    /// Blob digests whose bytes must stay in the shared store even when no
    /// repository links them (files of gantry's artifacts).
    pub keep_bytes: BTreeSet<String>,
}

/// A manifest removed (or that would be).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GcManifest {
    pub repository: String,
    pub digest: String,
    /// Its size, freed from the database.
    pub bytes: u64,
}

/// A blob removed from a repository (or that would be); its bytes go only
/// when no repository links it any more (see [`GcReport::files`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GcBlob {
    pub repository: String,
    pub digest: String,
    pub bytes: u64,
}

/// Bytes removed from the shared store (or that would be).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GcFile {
    pub digest: String,
    pub bytes: u64,
}

/// What a garbage collection removed, or with `dry_run` would remove.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GcReport {
    pub dry_run: bool,
    pub manifests: Vec<GcManifest>,
    pub blobs: Vec<GcBlob>,
    pub files: Vec<GcFile>,
    /// Repositories left with nothing in them.
    pub repositories: Vec<String>,
    /// Repositories left alone because a manifest in them could not be
    /// read, with why.
    pub skipped: Vec<(String, String)>,
}

impl GcReport {
    /// Bytes freed: removed files and manifests.
    pub fn bytes_freed(&self) -> u64 {
        self.files.iter().map(|f| f.bytes).sum::<u64>()
            + self.manifests.iter().map(|m| m.bytes).sum::<u64>()
    }
}

/// What one pass decided, before anything is removed.
#[derive(Debug, Default, PartialEq, Eq)]
struct Plan {
    manifests: Vec<GcManifest>,
    blobs: Vec<GcBlob>,
    repositories: Vec<String>,
    skipped: Vec<(String, String)>,
}

/// Decides what is garbage in `inventory`. Pure: `cutoff` is the Unix ms
/// before which the grace period ended.
fn plan(inventory: &Inventory, keep: &BTreeSet<String>, cutoff: i64) -> Plan {
    let mut by_repo: BTreeMap<&str, Vec<&ManifestRecord>> = BTreeMap::new();
    for m in &inventory.manifests {
        by_repo.entry(m.repository.as_str()).or_default().push(m);
    }
    let mut tagged: BTreeSet<(&str, &str)> = BTreeSet::new();
    for (repo, digest) in &inventory.tags {
        tagged.insert((repo.as_str(), digest.as_str()));
    }
    let mut out = Plan::default();
    // (repository, digest) of the links live manifests need.
    let mut needed: BTreeSet<(&str, String)> = BTreeSet::new();
    let mut skipped: BTreeSet<&str> = BTreeSet::new();
    for (repo, manifests) in &by_repo {
        let mut parsed = BTreeMap::new();
        for m in manifests {
            match manifest::parse(&m.content, Some(&m.media_type)) {
                Ok(p) => {
                    parsed.insert(m.digest.as_str(), (*m, p));
                }
                Err(e) => {
                    out.skipped.push((
                        repo.to_string(),
                        format!("manifest {}: {}", m.digest, e.message),
                    ));
                    skipped.insert(repo);
                    break;
                }
            }
        }
        if skipped.contains(repo) {
            continue;
        }
        let mut referrers: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for (digest, (_, p)) in &parsed {
            if let Some(subject) = &p.subject {
                referrers.entry(subject.as_str()).or_default().push(digest);
            }
        }
        let mut live: BTreeSet<&str> = BTreeSet::new();
        let mut todo: Vec<&str> = parsed
            .iter()
            .filter(|(digest, (m, _))| {
                tagged.contains(&(*repo, **digest))
                    || keep.contains(**digest)
                    || m.pushed_at >= cutoff
            })
            .map(|(digest, _)| *digest)
            .collect();
        while let Some(digest) = todo.pop() {
            if !live.insert(digest) {
                continue;
            }
            let Some((_, p)) = parsed.get(digest) else {
                continue;
            };
            for child in &p.children {
                if let Some((child, _)) = parsed.get_key_value(child.as_str()) {
                    todo.push(child);
                }
            }
            for blob in &p.blobs {
                needed.insert((repo, blob.as_str().to_string()));
            }
            todo.extend(referrers.get(digest).into_iter().flatten().copied());
        }
        for (digest, (m, _)) in &parsed {
            if !live.contains(digest) {
                out.manifests.push(GcManifest {
                    repository: repo.to_string(),
                    digest: digest.to_string(),
                    bytes: m.content.len() as u64,
                });
            }
        }
    }
    for link in &inventory.links {
        let repo = link.repository.as_str();
        if skipped.contains(repo)
            || link.linked_at >= cutoff
            || needed.contains(&(repo, link.digest.clone()))
        {
            continue;
        }
        out.blobs.push(GcBlob {
            repository: link.repository.clone(),
            digest: link.digest.clone(),
            bytes: link.size,
        });
    }
    // A repository is empty once nothing of it stays and nothing is being
    // uploaded into it.
    let gone_manifests: BTreeSet<(&str, &str)> = out
        .manifests
        .iter()
        .map(|m| (m.repository.as_str(), m.digest.as_str()))
        .collect();
    let gone_links: BTreeSet<(&str, &str)> = out
        .blobs
        .iter()
        .map(|b| (b.repository.as_str(), b.digest.as_str()))
        .collect();
    let mut occupied: BTreeSet<&str> = BTreeSet::new();
    for m in &inventory.manifests {
        if !gone_manifests.contains(&(m.repository.as_str(), m.digest.as_str())) {
            occupied.insert(&m.repository);
        }
    }
    for l in &inventory.links {
        if !gone_links.contains(&(l.repository.as_str(), l.digest.as_str())) {
            occupied.insert(&l.repository);
        }
    }
    for (name, created_at) in &inventory.repositories {
        if !occupied.contains(name.as_str())
            && !inventory.uploading.contains(name)
            && *created_at < cutoff
        {
            out.repositories.push(name.clone());
        }
    }
    out
}

impl Registry {
    /// Removes what nothing needs (see the module's documentation), or
    /// with `options.dry_run` only reports it. Pushes wait while it runs.
    pub async fn collect_garbage(&self, options: &GcOptions) -> Result<GcReport, RegistryError> {
        let inner = &self.inner;
        let _exclusive = inner.gc.write().await;
        let grace_ms = i64::try_from(options.grace.as_millis()).unwrap_or(i64::MAX);
        let cutoff = gantry_clock::now_ms().saturating_sub(grace_ms);
        let inventory = inner.metadata.inventory().await?;
        let plan = plan(&inventory, &options.keep_manifests, cutoff);

        // Bytes whose last link goes now, or went earlier (released).
        let gone: BTreeSet<(&str, &str)> = plan
            .blobs
            .iter()
            .map(|b| (b.repository.as_str(), b.digest.as_str()))
            .collect();
        let still_linked: BTreeSet<&str> = inventory
            .links
            .iter()
            .filter(|l| !gone.contains(&(l.repository.as_str(), l.digest.as_str())))
            .map(|l| l.digest.as_str())
            .collect();
        let candidates: BTreeSet<String> = plan
            .blobs
            .iter()
            .map(|b| b.digest.clone())
            .chain(inventory.released.iter().cloned())
            .collect();

        let mut report = GcReport {
            dry_run: options.dry_run,
            manifests: plan.manifests,
            blobs: plan.blobs,
            files: Vec::new(),
            repositories: plan.repositories,
            skipped: plan.skipped,
        };
        if options.dry_run {
            for digest in candidates {
                if still_linked.contains(digest.as_str()) || options.keep_bytes.contains(&digest) {
                    continue;
                }
                if let Some(bytes) = blob_size(inner, &digest).await? {
                    report.files.push(GcFile { digest, bytes });
                }
            }
            return Ok(report);
        }

        let pairs = |items: &mut dyn Iterator<Item = (&String, &String)>| {
            items
                .map(|(r, d)| (r.clone(), d.clone()))
                .collect::<Vec<_>>()
        };
        inner
            .metadata
            .remove_garbage(
                &pairs(&mut report.manifests.iter().map(|m| (&m.repository, &m.digest))),
                &pairs(&mut report.blobs.iter().map(|b| (&b.repository, &b.digest))),
                &report.repositories,
            )
            .await?;
        for digest in candidates {
            // Checked again in the database: the plan's view is the truth
            // only because nothing links while the lock is held.
            if !inner.metadata.linked_anywhere(&digest).await?
                && !options.keep_bytes.contains(&digest)
            {
                let artifacts = inner.artifacts.clone();
                let key = digest.clone();
                let removed = tokio::task::spawn_blocking(move || artifacts.remove_blob(&key))
                    .await
                    .map_err(RegistryError::from)??;
                if let Some(bytes) = removed {
                    report.files.push(GcFile {
                        digest: digest.clone(),
                        bytes,
                    });
                }
            }
            inner.metadata.forget_released(&digest).await?;
        }
        tracing::info!(
            manifests = report.manifests.len(),
            blobs = report.blobs.len(),
            files = report.files.len(),
            repositories = report.repositories.len(),
            bytes_freed = report.bytes_freed(),
            "registry garbage collected"
        );
        Ok(report)
    }
}

/// The size of a blob in the shared store, if it is there.
async fn blob_size(inner: &crate::Inner, digest: &str) -> Result<Option<u64>, RegistryError> {
    let artifacts = inner.artifacts.clone();
    let key = digest.to_string();
    Ok(tokio::task::spawn_blocking(move || {
        artifacts
            .open_blob(&key)
            .ok()
            .and_then(|f| f.metadata().ok())
            .map(|m| m.len())
    })
    .await?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::LinkRecord;

    fn digest(n: u8) -> String {
        format!("sha256:{}", hex::encode([n; 32]))
    }

    fn image(config: &str, layers: &[&str], subject: Option<&str>) -> Vec<u8> {
        let mut m = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": manifest::OCI_MANIFEST,
            "config": {"digest": config},
            "layers": layers.iter().map(|l| serde_json::json!({"digest": l})).collect::<Vec<_>>(),
        });
        if let Some(s) = subject {
            m["subject"] = serde_json::json!({"digest": s});
        }
        serde_json::to_vec(&m).unwrap()
    }

    fn record(repo: &str, content: Vec<u8>, media_type: &str, pushed_at: i64) -> ManifestRecord {
        use sha2::Digest as _;
        ManifestRecord {
            repository: repo.into(),
            digest: format!("sha256:{}", hex::encode(sha2::Sha256::digest(&content))),
            media_type: media_type.into(),
            content,
            pushed_at,
        }
    }

    fn link(repo: &str, digest: &str, linked_at: i64) -> LinkRecord {
        LinkRecord {
            repository: repo.into(),
            digest: digest.into(),
            size: 10,
            linked_at,
        }
    }

    #[test]
    fn what_tags_revisions_indexes_and_subjects_reach_stays() {
        let (c, l1, l2, l3) = (digest(1), digest(2), digest(3), digest(4));
        let tagged = record("r", image(&c, &[&l1], None), manifest::OCI_MANIFEST, 0);
        let kept = record("r", image(&c, &[&l2], None), manifest::OCI_MANIFEST, 0);
        let child = record("r", image(&c, &[], None), manifest::OCI_MANIFEST, 0);
        let index = record(
            "r",
            serde_json::to_vec(&serde_json::json!({
                "schemaVersion": 2, "mediaType": manifest::OCI_INDEX,
                "manifests": [{"digest": child.digest}],
            }))
            .unwrap(),
            manifest::OCI_INDEX,
            0,
        );
        let signature = record(
            "r",
            image(&c, &[], Some(&tagged.digest)),
            manifest::OCI_MANIFEST,
            0,
        );
        let orphan_referrer = record(
            "r",
            image(&c, &[&l3], Some(&digest(9))),
            manifest::OCI_MANIFEST,
            0,
        );
        let untagged = record("r", image(&c, &[&l3], None), manifest::OCI_MANIFEST, 0);
        let fresh = record(
            "r",
            image(&digest(5), &[], None),
            manifest::OCI_MANIFEST,
            100,
        );
        let inventory = Inventory {
            manifests: vec![
                tagged.clone(),
                kept.clone(),
                child.clone(),
                index.clone(),
                signature.clone(),
                orphan_referrer.clone(),
                untagged.clone(),
                fresh.clone(),
            ],
            tags: vec![
                ("r".into(), tagged.digest.clone()),
                ("r".into(), index.digest.clone()),
            ],
            links: vec![
                link("r", &c, 0),
                link("r", &l1, 0),
                link("r", &l2, 0),
                link("r", &l3, 0),
                link("r", &digest(5), 0),
                link("r", &digest(6), 100),
                link("r", &digest(7), 0),
            ],
            repositories: vec![("r".into(), 0), ("empty".into(), 0), ("new".into(), 100)],
            ..Inventory::default()
        };
        let keep = BTreeSet::from([kept.digest.clone()]);
        let plan = plan(&inventory, &keep, 50);
        let mut gone: Vec<&str> = plan.manifests.iter().map(|m| m.digest.as_str()).collect();
        gone.sort();
        let mut want = vec![orphan_referrer.digest.as_str(), untagged.digest.as_str()];
        want.sort();
        assert_eq!(gone, want);
        // l3 only served garbage; digest(5) is the config of the fresh
        // manifest; digest(6) is fresh; digest(7) served nothing.
        let mut links: Vec<String> = plan.blobs.iter().map(|b| b.digest.clone()).collect();
        links.sort();
        let mut want = vec![l3, digest(7)];
        want.sort();
        assert_eq!(links, want);
        assert_eq!(plan.repositories, vec!["empty".to_string()]);
        assert!(plan.skipped.is_empty());
    }

    #[test]
    fn a_repository_with_an_unreadable_manifest_is_left_alone() {
        let mut bad = record("r", b"{}".to_vec(), manifest::OCI_MANIFEST, 0);
        bad.content = b"not json".to_vec();
        let inventory = Inventory {
            manifests: vec![bad],
            links: vec![link("r", &digest(1), 0)],
            repositories: vec![("r".into(), 0)],
            ..Inventory::default()
        };
        let plan = plan(&inventory, &BTreeSet::new(), 50);
        assert!(plan.manifests.is_empty() && plan.blobs.is_empty());
        assert!(plan.repositories.is_empty());
        assert_eq!(plan.skipped.len(), 1);
    }
}
