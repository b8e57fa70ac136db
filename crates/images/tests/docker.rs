//! Docker runs what gantry builds. Run with GANTRY_TEST_DOCKER=1 (needs dockerd,
//! docker-registry and a static busybox).

mod common;

use std::process::Command;

use common::{ImageName, TestRegistry, docker_tests_enabled};
use gantry_images::{ImageSpec, Reference, build_image, promote};

fn docker(args: &[&str]) -> String {
    let output = Command::new("docker")
        .args(args)
        .output()
        .expect("run docker");
    assert!(
        output.status.success(),
        "docker {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Pulls `image`, runs it, removes it again; returns what it printed.
fn pull_and_run(image: &Reference) -> String {
    let name = image.to_string();
    docker(&["pull", "-q", &name]);
    let printed = docker(&["run", "--rm", &name]);
    let _ = Command::new("docker").args(["rmi", "-f", &name]).output();
    printed
}

#[tokio::test]
async fn docker_runs_a_busybox_image_built_without_a_base() {
    if !docker_tests_enabled("docker_runs_a_busybox_image_built_without_a_base") {
        return;
    }
    let registry = TestRegistry::start();
    let client = common::client();
    let context = common::busybox_context();
    let mut spec = ImageSpec::new(context.path());
    spec.cmd = Some(vec!["/app/busybox".into(), "echo".into(), "hi".into()]);
    let target = registry.image("gantry-test/hi:v1");
    let built = build_image(&spec, &target, &client).await.unwrap();
    assert_eq!(pull_and_run(&target), "hi\n");

    // The promoted copy in another repository is the same image, and runs too.
    let prod = registry.image("gantry-test/prod-hi:v1");
    promote(&client, &target, &prod, Some(built.digest.as_str()))
        .await
        .unwrap();
    assert_eq!(pull_and_run(&prod.with_digest(&built.digest)), "hi\n");
}

#[tokio::test]
async fn docker_runs_a_script_on_a_busybox_base_with_env_and_workdir() {
    if !docker_tests_enabled("docker_runs_a_script_on_a_busybox_base_with_env_and_workdir") {
        return;
    }
    let registry = TestRegistry::start();
    let client = common::client();
    let busybox = common::busybox_context();
    let mut base_spec = ImageSpec::new(busybox.path());
    base_spec.dest = "/bin".into();
    base_spec.env = vec![("PATH".into(), "/bin".into())];
    let base = registry.image("gantry-test/busybox:1");
    build_image(&base_spec, &base, &client).await.unwrap();

    let app = tempfile::tempdir().unwrap();
    std::fs::write(
        app.path().join("run.sh"),
        "#!/bin/busybox sh\necho \"$GREETING from $(/bin/busybox pwd) as $(/bin/busybox id -u)\"\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        app.path().join("run.sh"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    let mut spec = ImageSpec::new(app.path());
    spec.base = Some(base);
    spec.entrypoint = Some(vec!["/app/run.sh".into()]);
    spec.env = vec![("GREETING".into(), "hello".into())];
    spec.workdir = Some("/app".into());
    spec.user = Some("1000".into());
    let target = registry.image("gantry-test/script:v1");
    build_image(&spec, &target, &client).await.unwrap();
    assert_eq!(pull_and_run(&target), "hello from /app as 1000\n");
}
