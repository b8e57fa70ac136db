//! The referrers API (OCI Distribution 1.1): manifests with a `subject`
//! are announced with `OCI-Subject` and listed by
//! `GET /v2/<name>/referrers/<digest>`, filtered by `artifactType`, paged,
//! and indexed again from stored manifests when a database predates it.

mod common;

use axum::body::Body;
use axum::http::StatusCode;
use common::fixture::*;
use serde_json::{Value, json};

const SBOM: &str = "application/vnd.example.sbom.v1";
const SIGNATURE: &str = "application/vnd.example.signature.v1";
const EMPTY: &str = "application/vnd.oci.empty.v1+json";

/// An artifact manifest referring to `subject`: with `artifact_type` set,
/// an empty config; without, the config's media type is `config_type`.
fn artifact(
    config: &str,
    config_type: &str,
    artifact_type: Option<&str>,
    subject: &str,
    note: &str,
) -> Vec<u8> {
    let mut m = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": config_type, "digest": config, "size": 2},
        "layers": [],
        "subject": {"mediaType": OCI_MANIFEST, "digest": subject, "size": 1},
        "annotations": {"org.example.note": note},
    });
    if let Some(t) = artifact_type {
        m["artifactType"] = t.into();
    }
    serde_json::to_vec_pretty(&m).unwrap()
}

/// Pushes a manifest by digest and checks the `OCI-Subject` answer.
async fn push_referrer(f: &Fixture, repo: &str, manifest: &[u8], subject: &str) -> String {
    let d = digest(manifest);
    let r = f.put_manifest(repo, &d, OCI_MANIFEST, manifest).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    assert_eq!(r.header("oci-subject"), subject);
    d
}

fn digests(index: &Value) -> Vec<String> {
    index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["digest"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn referrers_are_listed_with_their_artifact_type_and_annotations() {
    let f = Fixture::new().await;
    let (_, image) = f.push_image("r", "1", b"layer").await;
    let empty = f.push_blob("r", b"{}").await;
    // Pushed before its subject exists: the specification allows either order.
    let ghost = digest(b"not pushed yet");
    let early = push_referrer(
        &f,
        "r",
        &artifact(&empty, EMPTY, Some(SBOM), &ghost, "early"),
        &ghost,
    )
    .await;
    let sbom = push_referrer(
        &f,
        "r",
        &artifact(&empty, EMPTY, Some(SBOM), &image, "sbom"),
        &image,
    )
    .await;
    let signature = push_referrer(
        &f,
        "r",
        &artifact(&empty, SIGNATURE, None, &image, "signature"),
        &image,
    )
    .await;
    // An index may refer too; without an artifactType it lists none.
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [],
        "subject": {"mediaType": OCI_MANIFEST, "digest": image, "size": 1},
    }))
    .unwrap();
    let index_digest = digest(&index);
    let r = f.put_manifest("r", &index_digest, OCI_INDEX, &index).await;
    assert_eq!(r.header("oci-subject"), image);
    // A manifest without a subject gets no OCI-Subject.
    let (plain, _) = f.push_image("r", "2", b"other").await;
    let r = f.put_manifest("r", "3", OCI_MANIFEST, &plain).await;
    assert_eq!(r.header("oci-subject"), "");

    let r = f.get(&format!("/v2/r/referrers/{image}")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header("content-type"), OCI_INDEX);
    assert_eq!(r.header("oci-filters-applied"), "");
    let body = r.json();
    assert_eq!(body["schemaVersion"], 2);
    assert_eq!(body["mediaType"], OCI_INDEX);
    let mut want = vec![sbom.clone(), signature.clone(), index_digest.clone()];
    want.sort();
    assert_eq!(digests(&body), want);
    for m in body["manifests"].as_array().unwrap() {
        let d = m["digest"].as_str().unwrap();
        if d == sbom {
            assert_eq!(m["artifactType"], SBOM);
            assert_eq!(m["annotations"], json!({"org.example.note": "sbom"}));
            assert_eq!(m["mediaType"], OCI_MANIFEST);
        } else if d == signature {
            // No artifactType of its own: the config's media type.
            assert_eq!(m["artifactType"], SIGNATURE);
        } else {
            assert_eq!(m["mediaType"], OCI_INDEX);
            assert!(m.get("artifactType").is_none());
            assert!(m.get("annotations").is_none());
            assert_eq!(m["size"], index.len());
        }
    }

    let r = f
        .get(&format!("/v2/r/referrers/{image}?artifactType={SBOM}"))
        .await;
    assert_eq!(r.header("oci-filters-applied"), "artifactType");
    assert_eq!(digests(&r.json()), vec![sbom.clone()]);

    let r = f.get(&format!("/v2/r/referrers/{ghost}")).await;
    assert_eq!(digests(&r.json()), vec![early]);

    // Referrers belong to their repository.
    let r = f.get(&format!("/v2/other/referrers/{image}")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(digests(&r.json()), Vec::<String>::new());

    // A deleted referrer is no longer listed; the subject's deletion
    // leaves its referrers listed.
    let r = f
        .send(
            "DELETE",
            &format!("/v2/r/manifests/{sbom}"),
            &[],
            Body::empty(),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    let r = f
        .send(
            "DELETE",
            &format!("/v2/r/manifests/{image}"),
            &[],
            Body::empty(),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    let r = f.get(&format!("/v2/r/referrers/{image}")).await;
    let mut want = vec![signature, index_digest];
    want.sort();
    assert_eq!(digests(&r.json()), want);
}

#[tokio::test]
async fn an_unknown_subject_has_an_empty_list_and_a_bad_digest_is_a_400() {
    let f = Fixture::new().await;
    f.push_blob("r", b"x").await;
    let unknown = digest(b"hello world");
    for repo in ["r", "never/pushed"] {
        let r = f.get(&format!("/v2/{repo}/referrers/{unknown}")).await;
        assert_eq!(r.status, StatusCode::OK, "{repo}");
        assert_eq!(r.header("content-type"), OCI_INDEX);
        assert_eq!(
            r.json(),
            json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []})
        );
    }
    let r = f.get("/v2/r/referrers/sha256:nothex").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.code(), "DIGEST_INVALID");
    let r = f.get(&format!("/v2/r/referrers/{unknown}?n=x")).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn a_long_referrers_list_is_paged_with_a_link() {
    let f = Fixture::new().await;
    let (_, image) = f.push_image("r", "1", b"layer").await;
    let empty = f.push_blob("r", b"{}").await;
    let mut all = Vec::new();
    for i in 0..5 {
        let kind = if i % 2 == 0 { SBOM } else { SIGNATURE };
        let m = artifact(&empty, EMPTY, Some(kind), &image, &i.to_string());
        all.push(push_referrer(&f, "r", &m, &image).await);
    }
    all.sort();
    let r = f.get(&format!("/v2/r/referrers/{image}?n=2")).await;
    assert_eq!(digests(&r.json()), all[..2].to_vec());
    assert_eq!(
        r.header("link"),
        format!(
            "</v2/r/referrers/{image}?n=2&last={}>; rel=\"next\"",
            all[1]
        )
    );
    let r = f
        .get(&format!("/v2/r/referrers/{image}?n=2&last={}", all[3]))
        .await;
    assert_eq!(digests(&r.json()), all[4..].to_vec());
    assert_eq!(r.header("link"), "");
    // The filter goes with the link, encoded.
    let r = f
        .get(&format!("/v2/r/referrers/{image}?n=1&artifactType={SBOM}"))
        .await;
    let page = digests(&r.json());
    assert_eq!(page.len(), 1);
    assert_eq!(
        r.header("link"),
        format!(
            "</v2/r/referrers/{image}?n=1&last={}&artifactType=application%2Fvnd.example.sbom.v1>; rel=\"next\"",
            page[0]
        )
    );
}

#[tokio::test]
async fn manifests_stored_before_the_referrers_index_are_indexed_when_it_is_created() {
    let mut f = Fixture::new().await;
    let (_, image) = f.push_image("r", "1", b"layer").await;
    let empty = f.push_blob("r", b"{}").await;
    let sbom = push_referrer(
        &f,
        "r",
        &artifact(&empty, EMPTY, Some(SBOM), &image, "old"),
        &image,
    )
    .await;
    // A database from before the referrers API: no index table.
    sqlx::query("DROP TABLE registry_referrers")
        .execute(f.store.pool())
        .await
        .unwrap();
    f.reopen().await;
    let r = f.get(&format!("/v2/r/referrers/{image}")).await;
    let listed = r.json();
    assert_eq!(digests(&listed), vec![sbom]);
    assert_eq!(listed["manifests"][0]["artifactType"], SBOM);
    assert_eq!(
        listed["manifests"][0]["annotations"],
        json!({"org.example.note": "old"})
    );
}
