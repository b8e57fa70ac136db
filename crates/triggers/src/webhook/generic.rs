//! gantry's own webhook format (formats.md §7), for a `post-receive` hook,
//! a CI system or a script: a small JSON body of one push.
//!
//! ```json
//! {"ref": "refs/heads/main", "after": "<commit>", "before": "<commit>",
//!  "changed_files": ["src/main.rs"], "repository": "https://…", "pusher": "alice"}
//! ```
//!
//! `ref` and `after` are required; an all-zero `after` deletes the ref.
//! Without `before` or `changed_files`, the changed files are unknown (and
//! worked out from the mirror when a file filter needs them). Unknown keys
//! are errors, so a misspelt key is not silently dropped.

use serde::Deserialize;

use super::{Push, Repository, WebhookEvent, commit_or_zero, json};
use crate::git::GitRef;

pub(super) fn parse(event: &str, body: &[u8]) -> Result<WebhookEvent, String> {
    match event {
        "ping" => Ok(WebhookEvent::Ping),
        "push" => push(json(body)?),
        other => Err(format!(
            "unknown X-Gantry-Event `{other}`; expected push or ping"
        )),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PushBody {
    #[serde(rename = "ref")]
    git_ref: String,
    after: String,
    before: Option<String>,
    changed_files: Option<Vec<String>>,
    repository: Option<String>,
    pusher: Option<String>,
}

fn push(body: PushBody) -> Result<WebhookEvent, String> {
    let git_ref = GitRef::parse(&body.git_ref);
    if let GitRef::Other(full) = &git_ref {
        return Err(format!(
            "`ref` must be a full branch or tag ref (refs/heads/NAME, refs/tags/NAME), found `{full}`"
        ));
    }
    let before = match &body.before {
        Some(before) => commit_or_zero(before, "before")?,
        None => None,
    };
    let changed_files = body.changed_files.map(|mut files| {
        files.sort();
        files.dedup();
        files
    });
    Ok(WebhookEvent::Push(Push {
        repository: Repository {
            full_name: None,
            web_url: None,
            clone_urls: body.repository.into_iter().collect(),
        },
        git_ref,
        before,
        after: commit_or_zero(&body.after, "after")?,
        changed_files,
        pusher: body.pusher,
        forced: false,
        commit_url: None,
    }))
}
