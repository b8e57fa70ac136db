//! Webhook deliveries: which forge sent one, whether it carries the shared
//! secret's signature, and what it says, as one normalised [`Delivery`].
//!
//! The endpoint (`POST /hooks/PIPELINE`, in the server) does:
//! 1. refuse a body over [`MAX_BODY_BYTES`] (413) before reading it whole;
//! 2. [`detect_provider`] from the forge's own event header (400 if none);
//! 3. for each of the pipeline's `git` triggers with that provider, read
//!    its secret parameter and call [`receive`]: the first that
//!    authenticates gives the delivery; if none does, 401 and nothing runs;
//! 4. drop a delivery whose [`Delivery::id`] was seen before (a replay), and
//!    answer 202 before doing the work.
//!
//! | provider | event header | signature | delivery id |
//! |---|---|---|---|
//! | GitHub | `X-GitHub-Event` | `X-Hub-Signature-256: sha256=HEX`, HMAC-SHA256 of the body | `X-GitHub-Delivery` |
//! | GitLab | `X-Gitlab-Event` | `X-Gitlab-Token`: the secret itself | `Idempotency-Key`, else `X-Gitlab-Event-UUID` |
//! | Gitea, Forgejo | `X-Gitea-Event` (`X-Forgejo-Event`) | `X-Gitea-Signature` (`X-Forgejo-Signature`): HEX, no prefix | `X-Gitea-Delivery` (`X-Forgejo-Delivery`) |
//! | generic | `X-Gantry-Event` (default `push`) | `X-Gantry-Signature-256: sha256=HEX` | `X-Gantry-Delivery` |
//!
//! Gitea also sends `X-GitHub-Event`, so its own header is looked at first.
//! Signatures are checked over the raw bytes, before any parsing, in
//! constant time ([`crate::signature`]).

use gantry_spec::trigger::{PullRequestEvent, WebhookProvider};
use http::HeaderMap;

use crate::error::{TriggerError, provider_name};
use crate::git::{CommitId, GitRef, RepositoryAddress};
use crate::signature;

mod generic;
mod gitea;
mod github;
mod gitlab;

/// The largest body the webhook endpoint reads: 1 MiB. GitLab lists at most
/// 20 commits and Gitea a few more, so their pushes stay far below it;
/// GitHub lists up to 2,048 commits with their files and may exceed it on a
/// huge push, which is then refused with 413 (a `poll` still finds the
/// commit).
pub const MAX_BODY_BYTES: usize = 1 << 20;

/// One verified delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub provider: WebhookProvider,
    /// The forge's id of this delivery, stable across its retries: the key
    /// of replay protection. `None` when the request carried none.
    pub id: Option<String>,
    /// The event header's value as sent (`push`, `Push Hook`, …).
    pub event_name: String,
    pub event: WebhookEvent,
}

/// What a delivery says, the same for every forge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WebhookEvent {
    Push(Push),
    PullRequest(PullRequest),
    /// GitHub's `ping` when a hook is created, and the generic endpoint's
    /// `X-Gantry-Event: ping`: answered, never a trigger.
    Ping,
    /// A well-formed event that never starts a pipeline (an issue comment,
    /// a pull request labelled).
    Ignored {
        reason: String,
    },
}

/// Where a delivery's repository lives, as the forge spells it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Repository {
    /// `owner/name`, or GitLab's `group/subgroup/name`.
    pub full_name: Option<String>,
    /// Its web page.
    pub web_url: Option<String>,
    /// Addresses to fetch from (https, ssh, git).
    pub clone_urls: Vec<String>,
}

impl Repository {
    /// Whether `url` (a source action's `repository`) names this repository,
    /// by any of its addresses.
    pub fn matches(&self, url: &str) -> bool {
        let wanted = RepositoryAddress::new(url);
        self.clone_urls
            .iter()
            .chain(self.web_url.iter())
            .any(|candidate| RepositoryAddress::new(candidate) == wanted)
    }
}

/// A push to one ref.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Push {
    pub repository: Repository,
    pub git_ref: GitRef,
    /// `None` when the push created the ref.
    pub before: Option<CommitId>,
    /// `None` when the push deleted the ref.
    pub after: Option<CommitId>,
    /// Files added, modified or removed between `before` and `after`,
    /// sorted and without duplicates; `None` when the forge did not say all
    /// of them (a created ref, a forced push, more commits than it lists).
    pub changed_files: Option<Vec<String>>,
    /// Who pushed (a user name), when the forge says.
    pub pusher: Option<String>,
    /// Whether the push rewrote history (GitHub says; others do not).
    pub forced: bool,
    /// The pushed commit's page, when the forge says.
    pub commit_url: Option<String>,
}

impl Push {
    pub fn deleted(&self) -> bool {
        self.after.is_none()
    }

    pub fn created(&self) -> bool {
        self.before.is_none()
    }
}

/// A pull (merge) request event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullRequest {
    /// The base repository (where the pull request is).
    pub repository: Repository,
    /// The number shown on the forge (GitLab's `iid`).
    pub number: u64,
    pub action: PullRequestEvent,
    /// The forge's own name of the action (`synchronize`, `reopen`, …).
    pub forge_action: String,
    /// Whether a closed pull request was merged.
    pub merged: bool,
    pub title: String,
    pub url: Option<String>,
    pub head_branch: String,
    pub head_commit: CommitId,
    /// Where the head branch lives, when it is a fork.
    pub head_clone_url: Option<String>,
    /// The base (target) branch, which `pull_request.branches` matches.
    pub base_branch: String,
    /// The base branch's commit, when the forge says (GitLab does not).
    pub base_commit: Option<CommitId>,
}

/// Which forge sent a request, by its event header; `None` if no known
/// header is present.
pub fn detect_provider(headers: &HeaderMap) -> Option<WebhookProvider> {
    let has = |name: &str| headers.contains_key(name);
    if has("x-gitea-event") || has("x-forgejo-event") {
        Some(WebhookProvider::Gitea)
    } else if has("x-gitlab-event") {
        Some(WebhookProvider::Gitlab)
    } else if has("x-github-event") {
        Some(WebhookProvider::Github)
    } else if has("x-gantry-event") || has("x-gantry-signature-256") {
        Some(WebhookProvider::Generic)
    } else {
        None
    }
}

/// Checks a delivery's size and signature against `secret` (the value of
/// the trigger's secret parameter), then reads it. Nothing is parsed before
/// the signature is known good.
pub fn receive(
    provider: WebhookProvider,
    headers: &HeaderMap,
    body: &[u8],
    secret: &[u8],
) -> Result<Delivery, TriggerError> {
    if body.len() > MAX_BODY_BYTES {
        return Err(TriggerError::BodyTooLarge {
            size: body.len(),
            limit: MAX_BODY_BYTES,
        });
    }
    verify(provider, headers, body, secret)?;
    parse(provider, headers, body)
}

/// Checks a delivery's signature (or token) against `secret`.
pub fn verify(
    provider: WebhookProvider,
    headers: &HeaderMap,
    body: &[u8],
    secret: &[u8],
) -> Result<(), TriggerError> {
    let name = provider_name(provider);
    if secret.is_empty() {
        return Err(TriggerError::EmptySecret { provider: name });
    }
    let (header, check): (&'static str, SignatureCheck) = match provider {
        WebhookProvider::Github => ("X-Hub-Signature-256", prefixed_hmac),
        WebhookProvider::Generic => ("X-Gantry-Signature-256", prefixed_hmac),
        WebhookProvider::Gitea => ("X-Gitea-Signature", bare_hmac),
        WebhookProvider::Gitlab => ("X-Gitlab-Token", |secret, _, token| {
            signature::tokens_equal(secret, token.as_bytes())
        }),
    };
    let value = match header_str(headers, header) {
        Some(value) => Some(value),
        None if provider == WebhookProvider::Gitea => header_str(headers, "X-Forgejo-Signature"),
        None => None,
    };
    let Some(value) = value else {
        return Err(TriggerError::MissingSignature {
            provider: name,
            header,
        });
    };
    if check(secret, body, value) {
        Ok(())
    } else {
        Err(TriggerError::BadSignature {
            provider: name,
            header,
        })
    }
}

/// Whether a signature header's value fits (secret, body).
type SignatureCheck = fn(&[u8], &[u8], &str) -> bool;

fn prefixed_hmac(secret: &[u8], body: &[u8], value: &str) -> bool {
    value
        .strip_prefix("sha256=")
        .is_some_and(|hex| signature::verify_hex(secret, body, hex))
}

fn bare_hmac(secret: &[u8], body: &[u8], value: &str) -> bool {
    signature::verify_hex(secret, body, value)
}

/// Reads a delivery whose signature has been checked.
pub fn parse(
    provider: WebhookProvider,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Delivery, TriggerError> {
    let first = |names: &[&str]| names.iter().find_map(|n| header_str(headers, n));
    let (event_name, id) = match provider {
        WebhookProvider::Github => (first(&["X-GitHub-Event"]), first(&["X-GitHub-Delivery"])),
        WebhookProvider::Gitlab => (
            first(&["X-Gitlab-Event"]),
            first(&["Idempotency-Key", "X-Gitlab-Event-UUID"]),
        ),
        WebhookProvider::Gitea => (
            first(&["X-Gitea-Event", "X-Forgejo-Event"]),
            first(&["X-Gitea-Delivery", "X-Forgejo-Delivery"]),
        ),
        WebhookProvider::Generic => (
            Some(first(&["X-Gantry-Event"]).unwrap_or("push")),
            first(&["X-Gantry-Delivery"]),
        ),
    };
    let event_name = event_name.ok_or(TriggerError::UnknownProvider)?.trim();
    let event = match provider {
        WebhookProvider::Github => github::parse(event_name, body),
        WebhookProvider::Gitlab => gitlab::parse(event_name, body),
        WebhookProvider::Gitea => gitea::parse(event_name, body),
        WebhookProvider::Generic => generic::parse(event_name, body),
    }
    .map_err(|reason| TriggerError::Malformed {
        provider: provider_name(provider),
        event: event_name.chars().take(100).collect(),
        reason,
    })?;
    Ok(Delivery {
        provider,
        id: id
            .map(|id| id.trim().to_owned())
            .filter(|id| !id.is_empty()),
        event_name: event_name.to_owned(),
        event,
    })
}

/// A header's value as text; a value that is not visible ASCII counts as
/// absent.
fn header_str<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Decodes a JSON body into `T`, the error naming what was wrong.
fn json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, String> {
    serde_json::from_slice(body).map_err(|err| format!("invalid JSON body: {err}"))
}

fn commit(value: &str, what: &str) -> Result<CommitId, String> {
    CommitId::parse(value).map_err(|err| format!("`{what}`: {err}"))
}

fn commit_or_zero(value: &str, what: &str) -> Result<Option<CommitId>, String> {
    CommitId::parse_or_zero(value).map_err(|err| format!("`{what}`: {err}"))
}

/// The files a list of commits added, modified or removed, sorted and
/// without duplicates.
fn changed_files<'c>(lists: impl IntoIterator<Item = &'c Vec<String>>) -> Vec<String> {
    let mut files: Vec<String> = lists.into_iter().flatten().cloned().collect();
    files.sort();
    files.dedup();
    files
}

/// The three file lists of a commit as GitHub, GitLab and Gitea write them.
#[derive(Debug, Default, serde::Deserialize)]
struct CommitFiles {
    #[serde(default)]
    added: Vec<String>,
    #[serde(default)]
    modified: Vec<String>,
    #[serde(default)]
    removed: Vec<String>,
}

impl CommitFiles {
    fn lists(&self) -> [&Vec<String>; 3] {
        [&self.added, &self.modified, &self.removed]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, value.parse().expect("header value"));
        }
        map
    }

    #[test]
    fn the_forges_own_header_tells_the_provider() {
        let cases = [
            (
                vec![("x-github-event", "push")],
                Some(WebhookProvider::Github),
            ),
            (
                vec![("x-gitlab-event", "Push Hook")],
                Some(WebhookProvider::Gitlab),
            ),
            // Gitea sends GitHub's header as well as its own.
            (
                vec![("x-github-event", "push"), ("x-gitea-event", "push")],
                Some(WebhookProvider::Gitea),
            ),
            (
                vec![("x-forgejo-event", "push")],
                Some(WebhookProvider::Gitea),
            ),
            (
                vec![("x-gantry-signature-256", "sha256=00")],
                Some(WebhookProvider::Generic),
            ),
            (
                vec![("x-gantry-event", "ping")],
                Some(WebhookProvider::Generic),
            ),
            (vec![("content-type", "application/json")], None),
        ];
        for (pairs, expected) in cases {
            assert_eq!(detect_provider(&headers(&pairs)), expected, "{pairs:?}");
        }
    }

    #[test]
    fn an_oversized_body_is_refused_before_anything_else() {
        let body = vec![b' '; MAX_BODY_BYTES + 1];
        let err = receive(WebhookProvider::Github, &HeaderMap::new(), &body, b"s")
            .expect_err("too large");
        assert_eq!(
            (err.code(), err.http_status()),
            ("webhook.body_too_large", 413)
        );
    }

    #[test]
    fn an_empty_secret_authenticates_nothing() {
        let body = b"{}";
        let signed = headers(&[
            ("x-github-event", "ping"),
            ("x-hub-signature-256", &signature::sign_sha256(b"", body)),
        ]);
        let err = receive(WebhookProvider::Github, &signed, body, b"").expect_err("empty secret");
        assert_eq!(
            (err.code(), err.http_status()),
            ("webhook.empty_secret", 401)
        );
    }
}
