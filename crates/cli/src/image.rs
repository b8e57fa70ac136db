//! `gantry image ls [REPO]`, `gantry image inspect REF` and `gantry image
//! promote SRC DST`: the embedded registry's images through the API
//! (`/api/v1/images…`; promote needs an operator).

use anyhow::Result;
use clap::Subcommand;
use gantry_api::{
    ImageBlobView, ImageDetailView, ImageUse, ImageView, PromoteImageAnswer, PromoteImageRequest,
};

use crate::buildspec::query;
use crate::client::Connection;
use crate::registry::size;
use crate::render::print_json;

#[derive(Subcommand)]
pub(crate) enum ImageCommand {
    /// Lists repositories' tags (and untagged images) with their digests,
    /// sizes and the services that run them.
    Ls {
        /// Only this repository (`shop/web`).
        repository: Option<String>,
        /// Prints a JSON array of images.
        #[arg(long)]
        json: bool,
    },
    /// Shows one image: digest, media type, size, layers, config, tags, and
    /// which environments run it.
    Inspect {
        /// The image: REPO:TAG or REPO@sha256:… (the registry's address
        /// before it is allowed).
        reference: String,
        /// Prints the image as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Copies an image to another repository or tag of the embedded
    /// registry, by digest: the same manifest and blobs, nothing pulled or
    /// pushed (operator).
    Promote {
        /// The image: REPO:TAG or REPO@sha256:….
        source: String,
        /// Where to: REPO:TAG, or REPO to keep the source's tag.
        destination: String,
        /// Prints the answer as JSON.
        #[arg(long)]
        json: bool,
    },
}

pub(crate) async fn image(conn: &Connection, command: ImageCommand) -> Result<()> {
    match command {
        ImageCommand::Ls { repository, json } => {
            let path = match &repository {
                Some(r) => format!("/api/v1/images?repository={}", query(r)),
                None => "/api/v1/images".to_string(),
            };
            let images: Vec<ImageView> = conn.client.get(&path).await?;
            if json {
                return print_json(&images);
            }
            for line in table(&images) {
                println!("{line}");
            }
            Ok(())
        }
        ImageCommand::Inspect { reference, json } => {
            let path = format!("/api/v1/images/inspect?reference={}", query(&reference));
            let image: ImageDetailView = conn.client.get(&path).await?;
            if json {
                return print_json(&image);
            }
            for line in details(&image) {
                println!("{line}");
            }
            Ok(())
        }
        ImageCommand::Promote {
            source,
            destination,
            json,
        } => {
            let request = PromoteImageRequest {
                source,
                destination,
            };
            let answer: PromoteImageAnswer =
                conn.client.post("/api/v1/images/promote", &request).await?;
            if json {
                return print_json(&answer);
            }
            println!(
                "promoted {} to {} ({} manifest{}, {} blob{} linked)",
                answer.source,
                answer.destination,
                answer.manifests,
                if answer.manifests == 1 { "" } else { "s" },
                answer.blobs_linked,
                if answer.blobs_linked == 1 { "" } else { "s" },
            );
            Ok(())
        }
    }
}

/// `staging/web, production/web`, or `-`.
fn uses(running: &[ImageUse]) -> String {
    if running.is_empty() {
        return "-".to_string();
    }
    running
        .iter()
        .map(|u| format!("{}/{}", u.environment, u.service))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `sha256:` and the first 12 hex digits.
fn short(digest: &str) -> &str {
    &digest[..digest.len().min("sha256:".len() + 12)]
}

/// One line per image under a header, columns aligned.
fn table(images: &[ImageView]) -> Vec<String> {
    if images.is_empty() {
        return vec!["no images".to_string()];
    }
    let rows: Vec<[String; 5]> = images
        .iter()
        .map(|i| {
            [
                i.repository.clone(),
                i.tag.clone().unwrap_or_else(|| "<none>".to_string()),
                short(&i.digest).to_string(),
                size(i.size),
                uses(&i.running),
            ]
        })
        .collect();
    let header = ["REPOSITORY", "TAG", "DIGEST", "SIZE", "RUNNING IN"].map(String::from);
    let mut widths = [0; 5];
    for row in std::iter::once(&header).chain(&rows) {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    std::iter::once(&header)
        .chain(&rows)
        .map(|row| {
            let cells: Vec<String> = row
                .iter()
                .zip(widths)
                .map(|(cell, w)| format!("{cell:<w$}"))
                .collect();
            cells.join("  ").trim_end().to_string()
        })
        .collect()
}

fn blob_line(b: &ImageBlobView) -> String {
    format!("  {}  {}  {}", b.digest, size(b.size), b.media_type)
}

/// `gantry image inspect`'s lines.
fn details(image: &ImageDetailView) -> Vec<String> {
    let mut lines = vec![
        format!("repository: {}", image.repository),
        format!("digest:     {}", image.digest),
        format!("media type: {}", image.media_type),
        format!(
            "size:       {} (manifest {})",
            size(image.size),
            size(image.manifest_size)
        ),
        format!(
            "tags:       {}",
            if image.tags.is_empty() {
                "-".to_string()
            } else {
                image.tags.join(", ")
            }
        ),
        format!("running in: {}", uses(&image.running)),
    ];
    if let Some(c) = &image.config_summary {
        let platform = [c.os.as_deref(), c.architecture.as_deref()]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join("/");
        if !platform.is_empty() {
            lines.push(format!("platform:   {platform}"));
        }
        if let Some(created) = &c.created {
            lines.push(format!("created:    {created}"));
        }
        if !c.entrypoint.is_empty() {
            lines.push(format!("entrypoint: {}", c.entrypoint.join(" ")));
        }
        if !c.cmd.is_empty() {
            lines.push(format!("cmd:        {}", c.cmd.join(" ")));
        }
        if let Some(dir) = &c.working_dir {
            lines.push(format!("workdir:    {dir}"));
        }
        if let Some(user) = &c.user {
            lines.push(format!("user:       {user}"));
        }
        if !c.exposed_ports.is_empty() {
            lines.push(format!("ports:      {}", c.exposed_ports.join(", ")));
        }
        if !c.env_names.is_empty() {
            lines.push(format!("env:        {}", c.env_names.join(", ")));
        }
        for (k, v) in &c.labels {
            lines.push(format!("label:      {k}={v}"));
        }
    }
    if let Some(config) = &image.config {
        lines.push("config:".to_string());
        lines.push(blob_line(config));
    }
    if !image.layers.is_empty() {
        lines.push(format!("layers ({}):", image.layers.len()));
        lines.extend(image.layers.iter().map(blob_line));
    }
    if !image.manifests.is_empty() {
        lines.push(format!("manifests ({}):", image.manifests.len()));
        lines.extend(image.manifests.iter().map(blob_line));
    }
    lines
}
