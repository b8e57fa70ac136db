//! Webhook deliveries, data-driven: every `tests/fixtures/webhooks/*.http`
//! file holds a delivery's headers, a blank line, and its body exactly as
//! the forge sends it (shapes from each forge's webhook documentation). The
//! file name's first word names the provider. Each is signed with
//! `SECRET` the way its provider signs, received, and the result compared
//! with the checked-in `<file>.expected`.
//!
//! After an intended change, regenerate the expectations with
//! `UPDATE_EXPECT=1 cargo test -p gantry-triggers --test webhooks` and
//! review the diff before committing it.

mod common;

use std::fs;
use std::path::Path;

use common::{SECRET, file_name, fixture_dir, fixtures, load, provider_of, sign};
use gantry_spec::trigger::WebhookProvider;
use gantry_triggers::webhook::{self, detect_provider, receive};
use http::{HeaderMap, HeaderValue};

fn render(path: &Path) -> String {
    let name = file_name(path);
    let provider = provider_of(&name);
    let (mut headers, body) = load(path);
    sign(provider, &mut headers, &body, SECRET);
    assert_eq!(detect_provider(&headers), Some(provider), "{name}");
    match receive(provider, &headers, &body, SECRET) {
        Ok(delivery) => format!("OK\n{delivery:#?}\n"),
        Err(err) => format!("ERROR {} ({}): {err}\n", err.code(), err.http_status()),
    }
}

#[test]
fn webhook_fixtures_match_their_expectations() {
    let update = std::env::var_os("UPDATE_EXPECT").is_some_and(|v| v == "1");
    let mut mismatches = Vec::new();
    for path in fixtures() {
        let actual = render(&path);
        let expected_path = path.with_file_name(format!("{}.expected", file_name(&path)));
        if update {
            fs::write(&expected_path, &actual).expect("write expectation");
            continue;
        }
        let expected = fs::read_to_string(&expected_path).unwrap_or_default();
        if expected != actual {
            mismatches.push(format!(
                "--- {}\n--- expected:\n{expected}--- actual:\n{actual}",
                path.display()
            ));
        }
    }
    assert!(
        mismatches.is_empty(),
        "{}\n{} fixture(s) differ; if the change is intended, run \
         `UPDATE_EXPECT=1 cargo test -p gantry-triggers --test webhooks` and review the diff",
        mismatches.join("\n"),
        mismatches.len()
    );
}

/// For each provider: the right signature passes; none, another secret's,
/// or a body changed after signing is a 401 and nothing is read.
#[test]
fn only_the_shared_secrets_signature_over_the_exact_body_passes() {
    for fixture in [
        "github-push.http",
        "gitlab-push.http",
        "gitea-push.http",
        "forgejo-push.http",
        "generic-push.http",
    ] {
        let path = fixture_dir().join(fixture);
        let provider = provider_of(fixture);
        let (headers, body) = load(&path);

        let mut signed = headers.clone();
        sign(provider, &mut signed, &body, SECRET);
        assert!(
            receive(provider, &signed, &body, SECRET).is_ok(),
            "{fixture}"
        );

        let outcome = |headers: &HeaderMap, body: &[u8]| {
            receive(provider, headers, body, SECRET)
                .map(|_| ())
                .map_err(|e| (e.code(), e.http_status()))
        };
        assert_eq!(
            outcome(&headers, &body),
            Err(("webhook.missing_signature", 401)),
            "{fixture} unsigned"
        );
        let mut other = headers.clone();
        sign(provider, &mut other, &body, b"another secret");
        assert_eq!(
            outcome(&other, &body),
            Err(("webhook.bad_signature", 401)),
            "{fixture} signed with another secret"
        );
        let mut tampered = body.clone();
        let last = tampered.len() - 2;
        tampered[last] ^= 0x01;
        let expected = if provider == WebhookProvider::Gitlab {
            // A GitLab token does not cover the body: only TLS protects it.
            Ok(())
        } else {
            Err(("webhook.bad_signature", 401))
        };
        let result = outcome(&signed, &tampered);
        match expected {
            Ok(()) => assert_ne!(result, Err(("webhook.bad_signature", 401)), "{fixture}"),
            Err(e) => assert_eq!(result, Err(e), "{fixture} tampered"),
        }
    }
}

/// "Validating webhook deliveries" in GitHub's documentation publishes this
/// vector; checked through the same path a delivery takes.
#[test]
fn githubs_documented_signature_vector_verifies() {
    let mut headers = HeaderMap::new();
    headers.insert(
        "x-hub-signature-256",
        HeaderValue::from_static(
            "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
        ),
    );
    let secret = b"It's a Secret to Everybody";
    assert_eq!(
        webhook::verify(WebhookProvider::Github, &headers, b"Hello, World!", secret),
        Ok(())
    );
    assert!(webhook::verify(WebhookProvider::Github, &headers, b"Hello, World?", secret).is_err());
    // The same HMAC without GitHub's `sha256=` prefix is not GitHub's header.
    headers.insert(
        "x-hub-signature-256",
        HeaderValue::from_static(
            "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
        ),
    );
    assert!(webhook::verify(WebhookProvider::Github, &headers, b"Hello, World!", secret).is_err());
}

#[test]
fn a_delivery_with_no_known_event_header_is_a_400() {
    let err = webhook::parse(WebhookProvider::Github, &HeaderMap::new(), b"{}")
        .expect_err("no event header");
    assert_eq!(
        (err.code(), err.http_status()),
        ("webhook.unknown_provider", 400)
    );
    assert_eq!(detect_provider(&HeaderMap::new()), None);
}
