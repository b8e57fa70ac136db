//! Helpers shared by the integration tests: the webhook fixtures, loaded
//! and signed as their forge would send them.

#![allow(dead_code)] // Each test crate uses only some of the helpers.

use std::fs;
use std::path::{Path, PathBuf};

use gantry_spec::trigger::WebhookProvider;
use gantry_triggers::signature::sign_sha256;
use gantry_triggers::webhook::{Delivery, PullRequest, WebhookEvent, receive};
use http::{HeaderMap, HeaderName, HeaderValue};

pub(crate) const SECRET: &[u8] = b"fixture secret: It's a Secret to Everybody";

pub(crate) fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/webhooks")
}

pub(crate) fn fixtures() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(fixture_dir())
        .expect("fixture directory")
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| path.extension().is_some_and(|e| e == "http"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no webhook fixtures");
    files
}

pub(crate) fn file_name(path: &Path) -> String {
    path.file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("?")
        .to_owned()
}

/// The provider a fixture's name starts with.
pub(crate) fn provider_of(name: &str) -> WebhookProvider {
    match name.split('-').next() {
        Some("github") => WebhookProvider::Github,
        Some("gitlab") => WebhookProvider::Gitlab,
        Some("gitea" | "forgejo") => WebhookProvider::Gitea,
        Some("generic") => WebhookProvider::Generic,
        _ => panic!("{name}: name a fixture after its provider"),
    }
}

/// A fixture's headers and body, unsigned.
pub(crate) fn load(path: &Path) -> (HeaderMap, Vec<u8>) {
    let text = fs::read_to_string(path).expect("fixture");
    let (head, body) = text
        .split_once("\n\n")
        .expect("a blank line after the headers");
    let mut headers = HeaderMap::new();
    for line in head.lines() {
        let (name, value) = line.split_once(':').expect("Name: value");
        headers.append(
            HeaderName::from_bytes(name.trim().as_bytes()).expect("header name"),
            HeaderValue::from_str(value.trim()).expect("header value"),
        );
    }
    (headers, body.as_bytes().to_vec())
}

/// Adds the signature (or token) `provider` sends, made with `secret`.
pub(crate) fn sign(provider: WebhookProvider, headers: &mut HeaderMap, body: &[u8], secret: &[u8]) {
    let prefixed = sign_sha256(secret, body);
    let (name, value) = match provider {
        WebhookProvider::Github => ("x-hub-signature-256", prefixed),
        WebhookProvider::Generic => ("x-gantry-signature-256", prefixed),
        WebhookProvider::Gitlab => (
            "x-gitlab-token",
            String::from_utf8(secret.to_vec()).expect("text"),
        ),
        WebhookProvider::Gitea => {
            let bare = prefixed.trim_start_matches("sha256=").to_owned();
            if headers.contains_key("x-forgejo-event") && !headers.contains_key("x-gitea-event") {
                ("x-forgejo-signature", bare)
            } else {
                ("x-gitea-signature", bare)
            }
        }
    };
    headers.insert(name, HeaderValue::from_str(&value).expect("signature"));
}

/// The delivery a fixture holds, signed and received.
pub(crate) fn delivery(name: &str) -> Delivery {
    let path = fixture_dir().join(name);
    let provider = provider_of(name);
    let (mut headers, body) = load(&path);
    sign(provider, &mut headers, &body, SECRET);
    match receive(provider, &headers, &body, SECRET) {
        Ok(delivery) => delivery,
        Err(err) => panic!("{name}: {err}"),
    }
}

/// The pull request a fixture holds.
pub(crate) fn pull_request(name: &str) -> PullRequest {
    match delivery(name).event {
        WebhookEvent::PullRequest(pull_request) => pull_request,
        other => panic!("{name} holds {other:?}"),
    }
}
