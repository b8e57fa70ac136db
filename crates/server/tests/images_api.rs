//! `/api/v1/images…` on a real server: images built into the embedded
//! registry and one deployed to a process environment are listed with the
//! service that runs them, inspected (layers, config, tags, users), and
//! promoted to another repository by digest (operator only; audited), with
//! `image.*` codes for what is refused.
//!
//! The test images hold Debian's static busybox (package busybox-static).

mod support;

use gantry_api::{ErrorBody, ImageDetailView, ImageView, PromoteImageAnswer, PromoteImageRequest};
use gantry_images::Reference;
use gantry_server::RunningServer;
use serde::de::DeserializeOwned;
use support::{Quiet, Replicas, WEB_PROJECT, digest_of, push_web};

struct Api {
    app: axum::Router,
}

impl Api {
    async fn send<T: DeserializeOwned>(
        &self,
        token: &str,
        method: &str,
        path: &str,
        body: Option<&PromoteImageRequest>,
    ) -> (u16, Result<T, ErrorBody>) {
        use tower::ServiceExt;
        let request = axum::http::Request::builder()
            .method(method)
            .uri(path)
            .header("host", "127.0.0.1:7700")
            .header("authorization", format!("Bearer {token}"))
            .header("content-type", "application/json")
            .body(match body {
                Some(b) => axum::body::Body::from(serde_json::to_vec(b).unwrap()),
                None => axum::body::Body::empty(),
            })
            .unwrap();
        let response = self.app.clone().oneshot(request).await.unwrap();
        let status = response.status().as_u16();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        let answer = if status == 200 {
            Ok(serde_json::from_slice(&bytes)
                .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&bytes))))
        } else {
            Err(serde_json::from_slice(&bytes)
                .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&bytes))))
        };
        (status, answer)
    }

    async fn get<T: DeserializeOwned>(
        &self,
        token: &str,
        path: &str,
    ) -> (u16, Result<T, ErrorBody>) {
        self.send(token, "GET", path, None).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn images_are_listed_inspected_and_promoted_by_digest() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let listen = "127.0.0.1:0".parse().unwrap();
    let server = RunningServer::start(&data, listen, listen).await.unwrap();
    let _replicas = Replicas(data.clone());
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let text = WEB_PROJECT.replace("PORT", &port.to_string());
    server
        .plane
        .apply_file(&dir.path().join("env.yaml"), &text, &Default::default())
        .await
        .unwrap();
    let v1 = push_web(
        &server,
        "1",
        "one",
        "",
        &[("GREETING", "a value the API must not show")],
    )
    .await;
    let v2 = push_web(
        &server,
        "2",
        "two",
        "",
        &[("GREETING", "a value the API must not show")],
    )
    .await;
    server
        .plane
        .deployer()
        .deploy("staging", "web", &v1, "test", &Quiet)
        .await
        .unwrap();

    let admin = std::fs::read_to_string(data.join("admin.token")).unwrap();
    let now = gantry_clock::now_ms();
    let auth = server.plane.auth();
    auth.add_user("vic", None, vec!["viewer".parse().unwrap()], now)
        .await
        .unwrap();
    auth.add_user("op", None, vec!["operator".parse().unwrap()], now)
        .await
        .unwrap();
    let viewer = auth.create_token("vic", None, None, now).await.unwrap();
    let viewer = viewer.secret.expose();
    let operator = auth.create_token("op", None, None, now).await.unwrap();
    let operator = operator.secret.expose();
    let api = Api {
        app: gantry_server::api::router(server.plane.clone(), Default::default()),
    };

    // A viewer lists both tags, with who runs what.
    let (status, images) = api.get::<Vec<ImageView>>(viewer, "/api/v1/images").await;
    assert_eq!(status, 200);
    let images = images.unwrap();
    let tags: Vec<(&str, Option<&str>, &str)> = images
        .iter()
        .map(|i| (i.repository.as_str(), i.tag.as_deref(), i.digest.as_str()))
        .collect();
    assert_eq!(
        tags,
        [
            ("test/web", Some("1"), digest_of(&v1)),
            ("test/web", Some("2"), digest_of(&v2))
        ]
    );
    let runs: Vec<String> = images[0]
        .running
        .iter()
        .map(|u| format!("{}/{}", u.environment, u.service))
        .collect();
    assert_eq!(runs, ["staging/web"]);
    assert!(images[1].running.is_empty());
    assert!(images.iter().all(|i| i.size > 0));
    let (_, one) = api
        .get::<Vec<ImageView>>(viewer, "/api/v1/images?repository=test/web")
        .await;
    assert_eq!(one.unwrap().len(), 2);
    let (status, missing) = api
        .get::<Vec<ImageView>>(viewer, "/api/v1/images?repository=no/such")
        .await;
    assert_eq!(status, 404);
    assert_eq!(missing.unwrap_err().code, "image.unknown_repository");

    // Inspect by tag (with the registry's address) and by digest.
    let by_tag = format!(
        "/api/v1/images/inspect?reference={}/test/web:1",
        server.registry
    );
    let (status, image) = api.get::<ImageDetailView>(viewer, &by_tag).await;
    assert_eq!(status, 200);
    let image = image.unwrap();
    assert_eq!(image.digest, digest_of(&v1));
    assert_eq!(image.tags, ["1"]);
    assert!(!image.layers.is_empty());
    assert!(image.config.is_some());
    let layers: u64 = image.layers.iter().map(|l| l.size).sum();
    assert!(image.size > layers && layers > 0);
    let summary = image.config_summary.clone().expect("a config summary");
    assert_eq!(summary.entrypoint[0], "/app/busybox");
    assert_eq!(summary.working_dir.as_deref(), Some("/app"));
    assert!(summary.env_names.contains(&"GREETING".to_string()));
    let shown = serde_json::to_string(&image).unwrap();
    assert!(!shown.contains("must not show"), "{shown}");
    assert_eq!(image.running.len(), 1);
    let (_, same) = api
        .get::<ImageDetailView>(
            viewer,
            &format!(
                "/api/v1/images/inspect?reference=test/web@{}",
                digest_of(&v1)
            ),
        )
        .await;
    assert_eq!(same.unwrap(), image);
    for (reference, status, code) in [
        ("test/web:9", 404, "image.not_found"),
        ("no/such:1", 404, "image.unknown_repository"),
        ("test/web", 400, "image.no_image"),
        ("Test/Web:1", 400, "image.invalid_reference"),
    ] {
        let (got, answer) = api
            .get::<ImageDetailView>(
                viewer,
                &format!("/api/v1/images/inspect?reference={reference}"),
            )
            .await;
        assert_eq!(
            (got, answer.unwrap_err().code.as_str()),
            (status, code),
            "{reference}"
        );
    }

    // Promote: a viewer may not; an operator copies by digest.
    let request = PromoteImageRequest {
        source: "test/web:1".into(),
        destination: "prod/web:1.0".into(),
    };
    let (status, refused) = api
        .send::<PromoteImageAnswer>(viewer, "POST", "/api/v1/images/promote", Some(&request))
        .await;
    assert_eq!(
        (status, refused.unwrap_err().code.as_str()),
        (403, "auth.forbidden")
    );
    let (status, answer) = api
        .send::<PromoteImageAnswer>(operator, "POST", "/api/v1/images/promote", Some(&request))
        .await;
    assert_eq!(status, 200);
    let answer = answer.unwrap();
    assert_eq!(answer.digest, digest_of(&v1));
    assert_eq!(
        answer.destination,
        format!("prod/web:1.0@{}", digest_of(&v1))
    );
    assert_eq!(answer.manifests, 1);
    assert!(answer.blobs_linked >= 2, "{answer:?}");
    // The registry serves it under the new name, the same bytes.
    let promoted = Reference::parse(&format!("{}/prod/web:1.0", server.registry)).unwrap();
    let served = server
        .plane
        .images()
        .get_manifest_raw(&promoted)
        .await
        .unwrap();
    assert_eq!(served.digest.to_string(), digest_of(&v1));
    // Again: nothing more to link. Keeping the source's tag by naming a
    // repository alone works too.
    let (_, again) = api
        .send::<PromoteImageAnswer>(operator, "POST", "/api/v1/images/promote", Some(&request))
        .await;
    assert_eq!(again.unwrap().blobs_linked, 0);
    let keep_tag = PromoteImageRequest {
        source: "test/web:2".into(),
        destination: "prod/web".into(),
    };
    let (_, kept) = api
        .send::<PromoteImageAnswer>(
            admin.trim(),
            "POST",
            "/api/v1/images/promote",
            Some(&keep_tag),
        )
        .await;
    assert_eq!(
        kept.unwrap().destination,
        format!("prod/web:2@{}", digest_of(&v2))
    );
    let mismatch = PromoteImageRequest {
        source: format!("test/web:2@{}", digest_of(&v1)),
        destination: "prod/web:x".into(),
    };
    let (status, refused) = api
        .send::<PromoteImageAnswer>(operator, "POST", "/api/v1/images/promote", Some(&mismatch))
        .await;
    assert_eq!(
        (status, refused.unwrap_err().code.as_str()),
        (409, "image.digest_mismatch")
    );
    let (_, listed) = api
        .get::<Vec<ImageView>>(viewer, "/api/v1/images?repository=prod/web")
        .await;
    let listed = listed.unwrap();
    assert_eq!(listed.len(), 2);
    assert_eq!(
        listed[0].running.len(),
        1,
        "the digest staging runs, under its new name"
    );

    // The promotion is in the audit log, as who did it.
    let log = auth
        .audit_log(&gantry_auth::AuditQuery::default())
        .await
        .unwrap();
    assert!(
        log.iter().any(|r| r.principal.as_deref() == Some("op")
            && r.action == "POST /api/v1/images/promote"
            && r.outcome == "ok"),
        "{log:#?}"
    );
}
