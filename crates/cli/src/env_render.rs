//! `gantry env render ENV --kubernetes`: the manifests gantry would apply
//! to a Kubernetes cluster for an environment, read from the project's
//! files (no server needed), as one multi-document YAML to diff with
//! `kubectl apply --dry-run=server -f -` or `kubectl diff -f -`.
//!
//! Whatever the environment's runtime, it is rendered as if it were
//! `kubernetes`. Secret values are never printed: each Secret's data keys
//! are empty, and its comment and annotation name the parameter versions.

use std::collections::BTreeMap;

use anyhow::{Context, Result, bail};
use clap::Args;

use crate::project::ProjectFiles;

#[derive(Args)]
pub(crate) struct RenderArgs {
    /// The environment, as the file defines it.
    pub(crate) environment: String,
    /// Renders Kubernetes manifests (Namespace, Secrets, Deployments,
    /// Services); the only format today, and required.
    #[arg(long)]
    pub(crate) kubernetes: bool,
    /// The project file.
    #[arg(short = 'f', long = "file", default_value = "gantry.yaml")]
    pub(crate) file: std::path::PathBuf,
    /// SERVICE=IMAGE: the image a service runs, pinned by digest
    /// (`registry/repo@sha256:…`); repeatable. Without one, the file's
    /// `image` or a placeholder is shown.
    #[arg(long = "image", value_name = "SERVICE=IMAGE")]
    pub(crate) images: Vec<String>,
}

pub(crate) fn render(args: &RenderArgs) -> Result<()> {
    if !args.kubernetes {
        bail!("say which manifests to render: --kubernetes (the only kind today)");
    }
    let mut images = BTreeMap::new();
    for pair in &args.images {
        let (service, image) = pair
            .split_once('=')
            .with_context(|| format!("--image {pair}: expected SERVICE=IMAGE"))?;
        images.insert(service.to_owned(), image.to_owned());
    }
    let files = ProjectFiles::read(&args.file)?;
    let name = files.file.display().to_string();
    let mut documents = Vec::new();
    let mut errors = Vec::new();
    for (file, text) in std::iter::once((&name, &files.text)).chain(files.includes.iter()) {
        match gantry_spec::parse_document(file, text) {
            Ok(document) => documents.push((file.clone(), document)),
            Err(e) => errors.extend(e.iter().map(ToString::to_string)),
        }
    }
    if errors.is_empty() {
        match gantry_spec::assemble(documents) {
            Ok(project) => {
                let manifests = gantry_kube::project::environment_manifests(
                    &project,
                    &args.environment,
                    &images,
                )
                .map_err(|e| anyhow::anyhow!("{e} [{}]", e.code()))?;
                let text = gantry_kube::render::to_yaml(&manifests)?;
                print!("{text}");
                return Ok(());
            }
            Err(e) => errors.extend(e.iter().map(ToString::to_string)),
        }
    }
    bail!("{}", errors.join("\n"))
}
