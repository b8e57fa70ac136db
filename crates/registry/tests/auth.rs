//! The trust boundary: every `/v2` request is authorized by the server's
//! `RegistryAuth`, Docker's token flow works, refusals change nothing, and
//! mutations and refusals reach the audit log without a secret in them.

mod common;

use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode};
use common::fixture::*;
use common::{Allowed, TOKEN, basic};
use serde_json::json;
use tower::ServiceExt as _;

const CHALLENGE_REALM: &str =
    r#"Bearer realm="http://registry.test:5000/v2/token",service="gantry""#;

#[tokio::test]
async fn requests_without_credentials_get_a_bearer_challenge_and_store_nothing() {
    let f = Fixture::new().await;
    let r = f.send_exactly("GET", "/v2/", &[], Body::empty()).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.code(), "UNAUTHORIZED");
    assert_eq!(r.header("www-authenticate"), CHALLENGE_REALM);
    assert_eq!(r.header("docker-distribution-api-version"), "registry/2.0");

    let blob = b"anonymous bytes";
    let d = digest(blob);
    let r = f
        .send_exactly(
            "POST",
            &format!("/v2/test/tiny/blobs/uploads/?digest={d}"),
            &[],
            blob.to_vec(),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        r.header("www-authenticate"),
        format!(r#"{CHALLENGE_REALM},scope="repository:test/tiny:pull,push""#)
    );
    let r = f
        .send_exactly("POST", "/v2/test/tiny/blobs/uploads/", &[], Body::empty())
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let manifest = image_manifest(OCI_MANIFEST, &d, &[&d]);
    let r = f
        .send_exactly(
            "PUT",
            "/v2/test/tiny/manifests/v1",
            &[("content-type", OCI_MANIFEST)],
            manifest,
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let r = f
        .send_exactly("GET", "/v2/test/tiny/manifests/v1", &[], Body::empty())
        .await;
    assert_eq!(
        r.header("www-authenticate"),
        format!(r#"{CHALLENGE_REALM},scope="repository:test/tiny:pull""#)
    );
    let r = f
        .send_exactly(
            "HEAD",
            "/v2/",
            &[("x-forwarded-proto", "https")],
            Body::empty(),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(
        r.header("www-authenticate")
            .starts_with(r#"Bearer realm="https://registry.test:5000/v2/token""#)
    );
    for uri in ["/v2/_catalog", "/v2/a/elsewhere", "/v2/token"] {
        let r = f.send_exactly("GET", uri, &[], Body::empty()).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{uri}");
    }

    assert!(!f.artifacts.blob_exists(&d));
    assert_eq!(f.upload_files(), 0);
    assert_eq!(
        f.get("/v2/_catalog").await.json()["repositories"],
        json!([])
    );
}

#[tokio::test]
async fn wrong_or_malformed_credentials_are_refused() {
    let f = Fixture::new().await;
    for authorization in [
        "Bearer not-a-token".to_string(),
        "Bearer grt_0000".to_string(),
        basic("anyone", "not-a-token"),
        basic(TOKEN, ""),
        "Basic !!!".to_string(),
        "Negotiate abc".to_string(),
        // A user name alone is no credential: only the password counts.
        format!("Basic {}", common::base64(TOKEN.as_bytes())),
    ] {
        let r = f
            .send_exactly(
                "GET",
                "/v2/",
                &[("authorization", &authorization)],
                Body::empty(),
            )
            .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{authorization}");
        assert_eq!(r.code(), "UNAUTHORIZED");
        assert!(r.header("www-authenticate").starts_with("Bearer realm="));
    }
    // The right token, as Bearer or as any user's Basic password.
    for authorization in [format!("Bearer {TOKEN}"), basic("whoever", TOKEN)] {
        let r = f
            .send_exactly(
                "GET",
                "/v2/",
                &[("authorization", &authorization)],
                Body::empty(),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{authorization}");
    }
}

#[tokio::test]
async fn a_forbidden_access_is_denied_and_changes_nothing() {
    let f = Fixture::new().await;
    f.auth.add("reader-token", "reader", Allowed::PullOnly);
    let (manifest, d) = f.push_image("team/app", "v1", b"layer").await;
    let reader = [("authorization", "Bearer reader-token")];

    let r = f
        .send_exactly("GET", "/v2/team/app/manifests/v1", &reader, Body::empty())
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body, manifest);

    let other = image_manifest(OCI_MANIFEST, &d, &[]);
    let refused = [
        (
            "PUT",
            "/v2/team/app/manifests/v1".to_string(),
            other.clone(),
        ),
        ("DELETE", "/v2/team/app/manifests/v1".to_string(), vec![]),
        ("DELETE", format!("/v2/team/app/manifests/{d}"), vec![]),
        ("POST", "/v2/team/app/blobs/uploads/".to_string(), vec![]),
        (
            "POST",
            format!("/v2/team/app/blobs/uploads/?digest={}", digest(b"x")),
            b"x".to_vec(),
        ),
        ("GET", "/v2/_catalog".to_string(), vec![]),
    ];
    for (method, uri, body) in refused {
        let mut headers = reader.to_vec();
        headers.push(("content-type", OCI_MANIFEST));
        let r = f.send_exactly(method, &uri, &headers, body).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{method} {uri}");
        assert_eq!(r.code(), "DENIED", "{method} {uri}");
        assert!(r.header("www-authenticate").is_empty());
    }
    // Still the same image under the same tag, and no upload began.
    let r = f.get("/v2/team/app/manifests/v1").await;
    assert_eq!(r.body, manifest);
    assert_eq!(
        f.get(&format!("/v2/team/app/manifests/{d}")).await.status,
        StatusCode::OK
    );
    assert_eq!(f.upload_files(), 0);
    assert!(!f.artifacts.blob_exists(&digest(b"x")));
    let refusals: Vec<_> = f
        .auth
        .records()
        .into_iter()
        .filter(|r| r.outcome == "auth.forbidden")
        .collect();
    assert_eq!(refusals.len(), 6, "{refusals:#?}");
}

#[tokio::test]
async fn a_repository_grant_reaches_no_other_repository() {
    let f = Fixture::new().await;
    f.auth.add(
        "team-token",
        "team",
        Allowed::Repositories(vec!["mine".into()]),
    );
    let theirs = f.push_blob("theirs", b"their secret layer").await;
    let team = [("authorization", "Bearer team-token")];

    // A mount from a repository the caller may not pull from falls back to
    // an upload: the blob is not linked, and the caller learns nothing.
    let r = f
        .send_exactly(
            "POST",
            &format!("/v2/mine/blobs/uploads/?mount={theirs}&from=theirs"),
            &team,
            Body::empty(),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text());
    let r = f
        .send_exactly(
            "POST",
            &format!("/v2/mine/blobs/uploads/?mount={theirs}"),
            &team,
            Body::empty(),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text());
    // Nor can a manifest link it by digest.
    let mine = f.push_blob("mine", b"{}").await;
    let manifest = image_manifest(OCI_MANIFEST, &mine, &[&theirs]);
    let mut headers = team.to_vec();
    headers.push(("content-type", OCI_MANIFEST));
    let r = f
        .send_exactly("PUT", "/v2/mine/manifests/v1", &headers, manifest.clone())
        .await;
    assert_eq!(r.code(), "MANIFEST_BLOB_UNKNOWN");
    let r = f
        .send_exactly(
            "GET",
            &format!("/v2/mine/blobs/{theirs}"),
            &team,
            Body::empty(),
        )
        .await;
    assert_eq!(r.code(), "BLOB_UNKNOWN");

    // With pull on the source, both work.
    f.auth.add(
        "team-token",
        "team",
        Allowed::Repositories(vec!["mine".into(), "theirs".into()]),
    );
    let r = f
        .send_exactly(
            "POST",
            &format!("/v2/mine/blobs/uploads/?mount={theirs}&from=theirs"),
            &team,
            Body::empty(),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    let r = f
        .send_exactly("PUT", "/v2/mine/manifests/v1", &headers, manifest)
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
}

#[tokio::test]
async fn the_token_flow_trades_basic_credentials_for_a_registry_token() {
    let f = Fixture::new().await;
    let creds = basic("docker-user", TOKEN);
    let r = f
        .send_exactly(
            "GET",
            "/v2/token?service=gantry&scope=repository:test/tiny:pull,push&account=docker-user",
            &[("authorization", &creds)],
            Body::empty(),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let answer = r.json();
    let token = answer["token"].as_str().unwrap().to_string();
    assert_eq!(answer["access_token"], answer["token"]);
    assert_eq!(answer["expires_in"], 300);
    let issued_at = answer["issued_at"].as_str().unwrap();
    assert!(issued_at.parse::<jiff::Timestamp>().is_ok(), "{issued_at}");
    assert_ne!(token, TOKEN);
    assert_eq!(r.header("cache-control"), "no-store");

    // The registry token pushes and pulls like the secret it stands for.
    let bearer = format!("Bearer {token}");
    let auth = [("authorization", bearer.as_str())];
    let r = f.send_exactly("GET", "/v2/", &auth, Body::empty()).await;
    assert_eq!(r.status, StatusCode::OK);
    let blob = b"pushed with a registry token";
    let d = digest(blob);
    let r = f
        .send_exactly(
            "POST",
            &format!("/v2/test/tiny/blobs/uploads/?digest={d}"),
            &auth,
            blob.to_vec(),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    // A registry token may be traded for a fresh one, as Docker does.
    let r = f
        .send_exactly("GET", "/v2/token?service=gantry", &auth, Body::empty())
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let second = r.json()["token"].as_str().unwrap().to_string();
    assert_ne!(second, token);
    // The OAuth2 password grant some clients POST works too.
    let r = f
        .send_exactly(
            "POST",
            "/v2/token",
            &[("content-type", "application/x-www-form-urlencoded")],
            format!("grant_type=password&username=u&password={TOKEN}&service=gantry"),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let r = f
        .send_exactly(
            "POST",
            "/v2/token",
            &[],
            "grant_type=password&username=u&password=wrong",
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);

    // Revoking the gantry token revokes every registry token issued for it.
    f.auth.revoke(TOKEN);
    for t in [&token, &second] {
        let bearer = format!("Bearer {t}");
        let r = f
            .send_exactly(
                "GET",
                &format!("/v2/test/tiny/blobs/{d}"),
                &[("authorization", &bearer)],
                Body::empty(),
            )
            .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    }
    let r = f
        .send_exactly(
            "GET",
            "/v2/token",
            &[("authorization", &creds)],
            Body::empty(),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn mutations_and_refusals_are_audited_with_principal_and_remote() {
    let f = Fixture::new().await;
    let (_, d) = f.push_image("team/app", "v1", b"layer").await;
    let records = f.auth.records();
    let actions: Vec<_> = records
        .iter()
        .map(|r| {
            (
                r.action.as_str(),
                r.outcome.as_str(),
                r.principal.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        actions,
        [
            ("registry.push_blob", "ok", Some("tester")),
            ("registry.push_blob", "ok", Some("tester")),
            ("registry.push_manifest", "ok", Some("tester")),
        ]
    );
    assert_eq!(records[2].target, "team/app:v1");
    assert!(records[0].target.starts_with("team/app@sha256:"));
    // Reads are not audited.
    f.get("/v2/team/app/manifests/v1").await;
    assert_eq!(f.auth.records().len(), 3);

    // The server's ConnectInfo gives the client's address.
    let remote: SocketAddr = "192.0.2.7:41000".parse().unwrap();
    let mut request = Request::builder()
        .method("DELETE")
        .uri(format!("/v2/team/app/manifests/{d}"))
        .header("authorization", "Bearer wrong")
        .body(Body::empty())
        .unwrap();
    request.extensions_mut().insert(ConnectInfo(remote));
    let response = f.app.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let refused = f.auth.records().pop().unwrap();
    assert_eq!(refused.action, "registry.delete_manifest");
    assert_eq!(refused.outcome, "auth.unauthenticated");
    assert_eq!(refused.principal, None);
    assert_eq!(refused.remote, Some(remote));
    assert_eq!(refused.target, format!("team/app@{d}"));

    // A failed mutation is recorded with its error code.
    let r = f
        .put_manifest("team/app", "v2", OCI_MANIFEST, b"{not json")
        .await;
    assert_eq!(r.code(), "MANIFEST_INVALID");
    let failed = f.auth.records().pop().unwrap();
    assert_eq!(failed.outcome, "registry.manifest_invalid");
    assert_eq!(failed.principal.as_deref(), Some("tester"));

    let r = f
        .send(
            "DELETE",
            &format!("/v2/team/app/manifests/{d}"),
            &[],
            Body::empty(),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    let deleted = f.auth.records().pop().unwrap();
    assert_eq!(
        (deleted.action.as_str(), deleted.outcome.as_str()),
        ("registry.delete_manifest", "ok")
    );

    // The anonymous first request of every docker login is no incident.
    let before = f.auth.records().len();
    f.send_exactly("GET", "/v2/", &[], Body::empty()).await;
    f.send_exactly("GET", "/v2/team/app/manifests/v1", &[], Body::empty())
        .await;
    assert_eq!(f.auth.records().len(), before);
    // An anonymous attempt to change something is.
    f.send_exactly("DELETE", "/v2/team/app/manifests/v1", &[], Body::empty())
        .await;
    assert_eq!(f.auth.records().len(), before + 1);
}

#[tokio::test]
async fn a_secret_never_appears_in_answers_or_audit_records() {
    let f = Fixture::new().await;
    let secret = "s3cr3t-gantry-token-d41d8cd98f";
    f.auth
        .add(secret, "owner", Allowed::Repositories(vec!["own".into()]));
    let r = f
        .send_exactly(
            "GET",
            "/v2/token",
            &[("authorization", &basic("u", secret))],
            Body::empty(),
        )
        .await;
    let registry_token = r.json()["token"].as_str().unwrap().to_string();
    let wrong = format!("{secret}-but-wrong");
    let mut bodies = Vec::new();
    for authorization in [
        format!("Bearer {secret}"),
        basic("u", secret),
        format!("Bearer {registry_token}"),
        format!("Bearer {wrong}"),
        basic(secret, &wrong),
    ] {
        let h = [
            ("authorization", authorization.as_str()),
            ("content-type", OCI_MANIFEST),
        ];
        for (method, uri, body) in [
            ("GET", "/v2/".to_string(), vec![]),
            ("GET", "/v2/token".to_string(), vec![]),
            (
                "POST",
                "/v2/own/blobs/uploads/?digest=sha256:00".to_string(),
                b"x".to_vec(),
            ),
            (
                "POST",
                format!("/v2/own/blobs/uploads/?digest={}", digest(b"y")),
                b"y".to_vec(),
            ),
            ("PUT", "/v2/own/manifests/v1".to_string(), b"{bad".to_vec()),
            ("PUT", "/v2/other/manifests/v1".to_string(), b"{}".to_vec()),
            ("DELETE", "/v2/own/manifests/v1".to_string(), vec![]),
            ("GET", "/v2/_catalog".to_string(), vec![]),
        ] {
            let r = f.send_exactly(method, &uri, &h, body).await;
            let mut seen = r.text();
            for (name, value) in &r.headers {
                seen.push_str(&format!("\n{name}: {}", value.to_str().unwrap_or("")));
            }
            bodies.push((method, uri, seen));
        }
    }
    for (method, uri, seen) in &bodies {
        for s in [secret, registry_token.as_str()] {
            assert!(!seen.contains(s), "{method} {uri} echoed a secret: {seen}");
        }
    }
    let records = format!("{:?}", f.auth.records());
    assert!(!f.auth.records().is_empty());
    assert!(!records.contains(secret), "{records}");
    assert!(!records.contains(&registry_token), "{records}");
}
