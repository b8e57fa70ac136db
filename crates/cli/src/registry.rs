//! `gantry registry gc`: the embedded registry's garbage collection,
//! through the API (admin).

use anyhow::{Result, anyhow};
use clap::Subcommand;
use gantry_api::{RegistryGcAnswer, RegistryGcRequest};

use crate::client::Connection;
use crate::render::print_json;

#[derive(Subcommand)]
pub(crate) enum RegistryCommand {
    /// Removes blobs and manifests that no tag, no revision an environment
    /// runs or could roll back to, and no referrer needs, and unpacked
    /// images no replica uses; prints what went and the bytes freed (admin).
    Gc {
        /// Prints what would be removed; removes nothing.
        #[arg(long)]
        dry_run: bool,
        /// Keeps whatever was pushed within this long, referenced or not
        /// (pushes in flight): 90s, 30m, 2h, 0s.
        #[arg(long, value_name = "DURATION", default_value = "1h")]
        grace: String,
        /// Prints the answer as JSON.
        #[arg(long)]
        json: bool,
    },
}

pub(crate) async fn registry(conn: &Connection, command: RegistryCommand) -> Result<()> {
    match command {
        RegistryCommand::Gc {
            dry_run,
            grace,
            json,
        } => {
            let grace = gantry_spec::duration::parse_duration_or_zero(&grace)
                .map_err(|e| anyhow!("--grace: {e}"))?;
            let request = RegistryGcRequest {
                dry_run,
                // The API counts whole seconds; rounding up never shortens the grace.
                grace_seconds: Some(grace.as_secs() + u64::from(grace.subsec_nanos() > 0)),
            };
            let answer: RegistryGcAnswer =
                conn.client.post("/api/v1/registry/gc", &request).await?;
            if json {
                print_json(&answer)
            } else {
                for line in report(&answer) {
                    println!("{line}");
                }
                Ok(())
            }
        }
    }
}

/// `12 B`, `3.4 KiB`, `1.2 GiB`.
pub(crate) fn size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// What a collection removed, one line each, then the total.
fn report(answer: &RegistryGcAnswer) -> Vec<String> {
    let verb = if answer.dry_run {
        "would remove"
    } else {
        "removed"
    };
    let mut lines = Vec::new();
    for m in &answer.manifests {
        lines.push(format!(
            "{verb} manifest {}@{} ({})",
            m.repository,
            m.digest,
            size(m.bytes)
        ));
    }
    for b in &answer.blobs {
        lines.push(format!("{verb} blob {}@{}", b.repository, b.digest));
    }
    for f in &answer.files {
        lines.push(format!("{verb} blob file {} ({})", f.digest, size(f.bytes)));
    }
    for i in &answer.images {
        lines.push(format!(
            "{verb} unpacked image {} ({})",
            i.digest,
            size(i.bytes)
        ));
    }
    for r in &answer.repositories {
        lines.push(format!("{verb} empty repository {r}"));
    }
    for s in &answer.skipped {
        lines.push(format!(
            "left repository {} alone: {}",
            s.repository, s.reason
        ));
    }
    let what = format!(
        "{} manifests, {} blobs ({} files), {} unpacked images, {} repositories",
        answer.manifests.len(),
        answer.blobs.len(),
        answer.files.len(),
        answer.images.len(),
        answer.repositories.len()
    );
    lines.push(if answer.dry_run {
        format!(
            "dry run: would remove {what} and free {}; kept {} images that revisions or running executions name, and anything pushed within {}s",
            size(answer.bytes_freed),
            answer.kept_digests,
            answer.grace_seconds
        )
    } else {
        format!(
            "removed {what}: {} freed; kept {} images that revisions or running executions name, and anything pushed within {}s",
            size(answer.bytes_freed),
            answer.kept_digests,
            answer.grace_seconds
        )
    });
    lines
}

#[cfg(test)]
mod tests {
    use super::*;
    use gantry_api::{GcFileView, GcManifestView};

    #[test]
    fn sizes_read_as_people_write_them() {
        assert_eq!(size(12), "12 B");
        assert_eq!(size(1536), "1.5 KiB");
        assert_eq!(size(5 * 1024 * 1024), "5.0 MiB");
    }

    #[test]
    fn a_report_names_each_removal_and_the_total() {
        let answer = RegistryGcAnswer {
            dry_run: true,
            grace_seconds: 3600,
            bytes_freed: 2048,
            manifests: vec![GcManifestView {
                repository: "app".into(),
                digest: "sha256:aa".into(),
                bytes: 1024,
            }],
            blobs: Vec::new(),
            files: vec![GcFileView {
                digest: "sha256:bb".into(),
                bytes: 1024,
            }],
            images: Vec::new(),
            repositories: Vec::new(),
            skipped: Vec::new(),
            kept_digests: 2,
        };
        assert_eq!(
            report(&answer),
            [
                "would remove manifest app@sha256:aa (1.0 KiB)",
                "would remove blob file sha256:bb (1.0 KiB)",
                "dry run: would remove 1 manifests, 0 blobs (1 files), 0 unpacked images, 0 repositories and free 2.0 KiB; kept 2 images that revisions or running executions name, and anything pushed within 3600s",
            ]
        );
    }
}
