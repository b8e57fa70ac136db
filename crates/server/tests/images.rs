//! The `image` and `promote` actions against the embedded registry of a
//! real server: a daemonless build pinned by digest, reproducible across
//! runs, and a promotion that keeps the digest.

use gantry_testkit::git;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use gantry_api::ExecutionView;
use gantry_images::Reference;
use gantry_server::RunningServer;

const PIPELINE: &str = r##"
version: 1
name: images
stages:
  - name: Source
    actions:
      - {name: checkout, type: source, outputs: [Src], namespace: Source}
  - name: Build
    actions:
      - name: web
        type: image
        inputs: [Src]
        context: site
        repository: shop/web
        tag: "build-#{Source.CommitId}"
        cmd: ["/app/run.sh"]
        port: 8080
        outputs: [WebImage]
        namespace: Web
  - name: Release
    actions:
      - name: promote
        type: promote
        inputs: [WebImage]
        tag: release-1
        repositories: {web: shop/web-release}
        outputs: [WebRelease]
      - name: check
        type: shell
        inputs: [WebImage]
        run_order: 2
        commands:
          - 'grep -q web imagedefinitions.json'
          - 'grep -q "#{Web.ImageDigest}" imagedefinitions.json' 
"##;

async fn run_to_end(server: &RunningServer, repo: &Path) -> ExecutionView {
    let file = repo.join("gantry.yaml");
    let id = server
        .plane
        .start_execution(
            file.clone(),
            std::fs::read_to_string(&file).unwrap(),
            Default::default(),
            Default::default(),
            None,
        )
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let (execution, loaded) = server.plane.execution(&id).await.unwrap();
        let v = gantry_server::view::execution_view(&execution, loaded.as_deref());
        if execution.status.is_terminal() {
            return v;
        }
        assert!(tokio::time::Instant::now() < deadline, "{v:#?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_is_built_without_docker_and_promoted_by_digest() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    std::fs::create_dir_all(repo.join("site")).unwrap();
    std::fs::write(repo.join("gantry.yaml"), PIPELINE).unwrap();
    std::fs::write(repo.join("site/run.sh"), "#!/bin/sh\necho hi\n").unwrap();
    git(&repo, &["init", "-q", "-b", "main"]);
    git(&repo, &["add", "-A"]);
    git(&repo, &["commit", "-q", "-m", "one"]);
    let listen = "127.0.0.1:0".parse().unwrap();
    let server = RunningServer::start(&dir.path().join("data"), listen, listen)
        .await
        .unwrap();

    let first = run_to_end(&server, &repo).await;
    assert_eq!(first.status, "Succeeded", "{first:#?}");
    let web = first.action("Build", "web").unwrap();
    let digest = web.output_variables["ImageDigest"].to_string();
    assert!(web.output_variables["ImageURI"].ends_with(&digest));
    assert!(web.output_variables["ImageURI"].starts_with(&server.registry));
    let promoted = first.action("Release", "promote").unwrap();
    assert_eq!(
        promoted.output_variables["web_ImageDigest"], digest,
        "promotion keeps the digest"
    );

    // The registry serves the release tag at the same digest.
    let client = server.plane.images().clone();
    let release =
        gantry_images::Reference::parse(&format!("{}/shop/web-release:release-1", server.registry))
            .unwrap();
    let found = client.manifest_digest(&release).await.unwrap().unwrap();
    assert_eq!(found.to_string(), digest);

    // Another commit that does not touch the site: same image, same digest.
    std::fs::write(repo.join("README"), "docs\n").unwrap();
    git(&repo, &["add", "-A"]);
    git(&repo, &["commit", "-q", "-m", "docs only"]);
    let second = run_to_end(&server, &repo).await;
    assert_eq!(second.status, "Succeeded", "{second:#?}");
    assert_eq!(
        second.action("Build", "web").unwrap().output_variables["ImageDigest"],
        digest
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_is_promoted_from_the_embedded_registry_to_an_external_one() {
    if !gantry_testkit::registry_tests_enabled(
        "a_release_is_promoted_from_the_embedded_registry_to_an_external_one",
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let external = gantry_testkit::TestRegistry::start();
    let external_addr = external.addr.clone();
    let repo = dir.path().join("repo");
    std::fs::create_dir_all(repo.join("site")).unwrap();
    let pipeline = PIPELINE.replace(
        "        repositories: {web: shop/web-release}\n",
        &format!("        registry: {external_addr}\n"),
    );
    std::fs::write(repo.join("gantry.yaml"), pipeline).unwrap();
    std::fs::write(repo.join("site/run.sh"), "#!/bin/sh\necho hi\n").unwrap();
    git(&repo, &["init", "-q", "-b", "main"]);
    git(&repo, &["add", "-A"]);
    git(&repo, &["commit", "-q", "-m", "one"]);
    let listen = "127.0.0.1:0".parse().unwrap();
    let server = RunningServer::start(&dir.path().join("data"), listen, listen)
        .await
        .unwrap();
    let v = run_to_end(&server, &repo).await;
    assert_eq!(v.status, "Succeeded", "{v:#?}");
    let digest = v.action("Build", "web").unwrap().output_variables["ImageDigest"].to_string();
    let promoted = v.action("Release", "promote").unwrap();
    assert_eq!(promoted.output_variables["web_ImageDigest"], digest);
    assert!(promoted.output_variables["web_ImageURI"].starts_with(&external_addr));
    let inspect = Command::new("skopeo")
        .args([
            "inspect",
            "--tls-verify=false",
            "--format",
            "{{.Digest}}",
            &format!("docker://{external_addr}/shop/web:release-1"),
        ])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&inspect.stdout).trim(),
        digest,
        "{}",
        String::from_utf8_lossy(&inspect.stderr)
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_buildspec_builds_and_pushes_with_docker_to_the_embedded_registry() {
    if !gantry_testkit::docker_tests_enabled(
        "a_buildspec_builds_and_pushes_with_docker_to_the_embedded_registry",
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    std::fs::create_dir_all(repo.join("app")).unwrap();
    std::fs::copy("/bin/busybox", repo.join("app/busybox")).unwrap();
    std::fs::write(
        repo.join("app/Dockerfile"),
        "FROM scratch\nCOPY busybox /bin/busybox\nCMD [\"/bin/busybox\", \"echo\", \"hi\"]\n",
    )
    .unwrap();
    let pipeline = r##"
version: 1
name: docker-path
stages:
  - name: Source
    actions:
      - {name: checkout, type: source, outputs: [Src]}
  - name: Build
    actions:
      - name: docker
        type: shell
        inputs: [Src]
        env: {IMAGE: "#{gantry.Registry}/shop/docker-built:#{gantry.ExecutionId}"}
        commands:
          - docker build -q -t "$IMAGE" app
          - docker push "$IMAGE"
          - printf '[{"name":"app","imageUri":"%s"}]' "$IMAGE" > imagedefinitions.json
        outputs: [Defs]
        artifacts: {files: [imagedefinitions.json]}
"##;
    std::fs::write(repo.join("gantry.yaml"), pipeline).unwrap();
    git(&repo, &["init", "-q", "-b", "main"]);
    git(&repo, &["add", "-A"]);
    git(&repo, &["commit", "-q", "-m", "one"]);
    let listen = "127.0.0.1:0".parse().unwrap();
    let server = RunningServer::start(&dir.path().join("data"), listen, listen)
        .await
        .unwrap();
    let v = run_to_end(&server, &repo).await;
    assert_eq!(v.status, "Succeeded", "{v:#?}");
    let image =
        Reference::parse(&format!("{}/shop/docker-built:{}", server.registry, v.id)).unwrap();
    let client = server.plane.images().clone();
    assert!(
        client.manifest_digest(&image).await.unwrap().is_some(),
        "docker push reached the embedded registry"
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deploy_whose_image_definitions_name_no_container_of_the_service_fails_naming_them() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    std::fs::create_dir_all(&repo).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let pipeline = format!(
        r##"
version: 1
name: mismatch
environments:
  staging:
    load_balancer: {{listen: "127.0.0.1:{port}", rules: [{{priority: 10, path: "/*", service: web}}]}}
services:
  web: {{container: web}}
stages:
  - name: Build
    actions:
      - name: defs
        type: shell
        commands: ["printf '[{{\"name\":\"other\",\"imageUri\":\"127.0.0.1:1/x@sha256:%064d\"}}]' 0 > imagedefinitions.json"]
        outputs: [Defs]
        artifacts: {{files: [imagedefinitions.json]}}
  - name: Deploy
    actions:
      - {{name: web, type: deploy, environment: staging, service: web, inputs: [Defs]}}
"##
    );
    std::fs::write(repo.join("gantry.yaml"), pipeline).unwrap();
    let listen = "127.0.0.1:0".parse().unwrap();
    let server = RunningServer::start(&dir.path().join("data"), listen, listen)
        .await
        .unwrap();
    let v = run_to_end(&server, &repo).await;
    assert_eq!(v.status, "Failed", "{v:#?}");
    let error = v
        .action("Deploy", "web")
        .unwrap()
        .error
        .as_deref()
        .unwrap()
        .to_string();
    assert!(
        error.contains("no image for container web") && error.contains("other"),
        "{error}"
    );
    server.shutdown().await;
}
