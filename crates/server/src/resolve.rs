//! Resolving `#{namespace.NAME}` in every string field of an action, just
//! before it starts (CodePipeline resolves variables at the same moment).

use std::collections::BTreeMap;

use gantry_spec::buildspec::ArtifactsSpec;
use gantry_spec::pipeline::{Action, ActionKind};
use gantry_spec::template::{VarRef, resolve};

/// A copy of `action` with every reference replaced, or the first
/// reference that has no value.
pub(crate) fn resolve_action(
    action: &Action,
    lookup: impl Fn(&VarRef) -> Option<String>,
) -> Result<Action, String> {
    let r = |s: &str| resolve(s, &lookup).map_err(|e| e.to_string());
    let opt = |s: &Option<String>| s.as_deref().map(r).transpose();
    let mut out = action.clone();
    for value in out.env.values_mut() {
        *value = r(value)?;
    }
    out.kind = match &action.kind {
        ActionKind::Source { repository, branch } => ActionKind::Source {
            repository: r(repository)?,
            branch: opt(branch)?,
        },
        ActionKind::Build { buildspec, image } => ActionKind::Build {
            buildspec: r(buildspec)?,
            image: opt(image)?,
        },
        ActionKind::Test { buildspec, image } => ActionKind::Test {
            buildspec: r(buildspec)?,
            image: opt(image)?,
        },
        ActionKind::Shell {
            commands,
            artifacts,
            exported_variables,
            image,
        } => ActionKind::Shell {
            commands: commands.iter().map(|c| r(c)).collect::<Result<_, _>>()?,
            artifacts: match artifacts {
                Some(a) => Some(ArtifactsSpec {
                    files: a.files.iter().map(|f| r(f)).collect::<Result<_, _>>()?,
                    name: opt(&a.name)?,
                    base_directory: opt(&a.base_directory)?,
                    exclude_paths: a
                        .exclude_paths
                        .iter()
                        .map(|f| r(f))
                        .collect::<Result<_, _>>()?,
                    ..a.clone()
                }),
                None => None,
            },
            exported_variables: exported_variables.clone(),
            image: opt(image)?,
        },
        ActionKind::Approval {
            review_url,
            comments,
        } => ActionKind::Approval {
            review_url: opt(review_url)?,
            comments: opt(comments)?,
        },
        // Environment and service are names, checked when the project is
        // assembled; only the file name may hold references.
        ActionKind::Deploy {
            environment,
            service,
            file,
        } => ActionKind::Deploy {
            environment: environment.clone(),
            service: service.clone(),
            file: r(file)?,
        },
        // The container is a name matched against services; everything else
        // may hold references (the tag defaults to `#{gantry.ExecutionId}`).
        ActionKind::Image {
            context,
            repository,
            tag,
            registry,
            base,
            entrypoint,
            cmd,
            image_env,
            workdir,
            port,
            labels,
            user,
            dest,
            container,
        } => {
            let list = |items: &Option<Vec<String>>| {
                items
                    .as_ref()
                    .map(|items| items.iter().map(|i| r(i)).collect::<Result<Vec<_>, _>>())
                    .transpose()
            };
            let map = |m: &BTreeMap<String, String>| {
                m.iter()
                    .map(|(k, v)| Ok((k.clone(), r(v)?)))
                    .collect::<Result<BTreeMap<_, _>, String>>()
            };
            ActionKind::Image {
                context: r(context)?,
                repository: r(repository)?,
                tag: r(tag)?,
                registry: opt(registry)?,
                base: opt(base)?,
                entrypoint: list(entrypoint)?,
                cmd: list(cmd)?,
                image_env: map(image_env)?,
                workdir: opt(workdir)?,
                port: *port,
                labels: map(labels)?,
                user: opt(user)?,
                dest: r(dest)?,
                container: container.clone(),
            }
        }
        ActionKind::Promote {
            tag,
            repositories,
            registry,
            file,
        } => ActionKind::Promote {
            tag: r(tag)?,
            repositories: repositories
                .iter()
                .map(|(k, v)| Ok((k.clone(), r(v)?)))
                .collect::<Result<_, String>>()?,
            registry: opt(registry)?,
            file: r(file)?,
        },
    };
    Ok(out)
}
