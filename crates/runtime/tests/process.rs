//! The process runtime against real processes and a real registry. Run with
//! GANTRY_TEST_REGISTRY=1 (needs docker-registry and a static busybox).

mod common;

use std::io::Write;
use std::time::Duration;

use common::{
    DataDir, INDEX, ImageName, SERVE, TestRegistry, busybox_context, client, http_get, is_dead,
    next_event_of, registry_tests_enabled, spec, wait_event, wait_http, wait_until, web_image,
    write_files,
};
use gantry_images::manifest::{OCI_CONFIG, OCI_LAYER_GZIP, OCI_MANIFEST};
use gantry_images::{Digest, ImageSpec, build_image};
use gantry_runtime::{
    ProcessOptions, ProcessRuntime, ReplicaEvent, ReplicaState, RestartPolicy, Runtime,
};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::time::Instant;

const STARTUP: Duration = Duration::from_secs(20);

fn sh(script: &str) -> Option<Vec<String>> {
    Some(vec![
        "/app/busybox".into(),
        "sh".into(),
        "-c".into(),
        script.into(),
    ])
}

/// The log once it holds `needle` (panics after a while).
async fn log_with(runtime: &ProcessRuntime, id: &str, needle: &str) -> String {
    let path = runtime.log_path(id);
    let deadline = Instant::now() + STARTUP;
    loop {
        let log = std::fs::read_to_string(&path).unwrap_or_default();
        if log.contains(needle) {
            return log;
        }
        assert!(
            Instant::now() < deadline,
            "{needle:?} never appeared in {}:\n{log}",
            path.display()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_serves_its_image_with_the_contract_environment_and_stops() {
    if !registry_tests_enabled("a_replica_serves_its_image_with_the_contract_environment_and_stops")
    {
        return;
    }
    let registry = TestRegistry::start();
    let client = client();
    let image = web_image(&registry, &client, "web").await;
    let data = DataDir::new();
    let runtime = ProcessRuntime::new(data.path(), client).await.unwrap();
    let mut events = runtime.subscribe();

    let mut s = spec("web-1", &image);
    s.env = vec![
        ("GREETING".into(), "hi".into()),
        // Replicas must never carry the server's orphan mark, even when asked to.
        ("GANTRY_OWNER".into(), "/somewhere".into()),
    ];
    let replica = runtime.start(s).await.unwrap();
    assert_eq!(replica.state, ReplicaState::Running);
    assert!(replica.addr.ip().is_loopback());
    assert_ne!(
        replica.addr.port(),
        8080,
        "each process replica gets its own port"
    );
    assert_eq!(
        next_event_of(&mut events, "web-1", STARTUP).await,
        ReplicaEvent::Started { id: "web-1".into() }
    );

    assert_eq!(
        wait_http(replica.addr, "/", STARTUP).await,
        (200, INDEX.to_owned())
    );
    assert_eq!(
        http_get(replica.addr, "/health").await.map(|a| a.0),
        Some(200)
    );

    let root = runtime.image_root(image.digest().unwrap());
    let root = root.display();
    let host_path = std::env::var("PATH").unwrap();
    let log = log_with(&runtime, "web-1", "pid=").await;
    for expected in [
        format!("PATH={root}/app:{host_path} "),
        format!("PORT={} ", replica.addr.port()),
        format!("ROOTFS={root} "),
        format!("PWD={root}/app/www "),
        "OWNER=none ".to_owned(),
        "GREETING=hi".to_owned(),
    ] {
        assert!(log.contains(&expected), "{expected:?} not in {log}");
    }
    assert_eq!(runtime.list().await.unwrap(), vec![replica.clone()]);

    runtime.stop("web-1", Duration::from_secs(5)).await.unwrap();
    assert_eq!(
        next_event_of(&mut events, "web-1", STARTUP).await,
        ReplicaEvent::Stopped { id: "web-1".into() }
    );
    assert!(runtime.list().await.unwrap().is_empty());
    assert!(!data.path().join("replicas/web-1.json").exists());
    assert_eq!(http_get(replica.addr, "/").await, None);
    // Stopping again, or stopping what never existed, is fine.
    runtime.stop("web-1", Duration::from_secs(1)).await.unwrap();
    runtime.stop("never", Duration::from_secs(1)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_of_one_digest_share_one_unpack_even_when_started_together() {
    if !registry_tests_enabled("replicas_of_one_digest_share_one_unpack_even_when_started_together")
    {
        return;
    }
    let registry = TestRegistry::start();
    let client = client();
    let image = web_image(&registry, &client, "shared").await;
    let data = DataDir::new();
    let runtime = ProcessRuntime::new(data.path(), client).await.unwrap();

    let (a, b) = tokio::join!(
        runtime.start(spec("a", &image)),
        runtime.start(spec("b", &image))
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_ne!(a.addr, b.addr);
    assert_eq!(wait_http(a.addr, "/", STARTUP).await.1, INDEX);
    assert_eq!(wait_http(b.addr, "/", STARTUP).await.1, INDEX);

    let hex = image.digest().unwrap().hex().to_owned();
    let mut entries: Vec<String> = std::fs::read_dir(data.path().join("rootfs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    entries.sort();
    assert_eq!(
        entries,
        [hex.clone(), format!("{hex}.json")],
        "one root, no temp dirs left"
    );

    // A third replica uses the root as it is: nothing is unpacked again.
    let marker = runtime.image_root(image.digest().unwrap()).join("marker");
    std::fs::write(&marker, "still here").unwrap();
    let c = runtime.start(spec("c", &image)).await.unwrap();
    assert_eq!(wait_http(c.addr, "/", STARTUP).await.1, INDEX);
    assert!(marker.exists());

    assert!(matches!(
        runtime.start(spec("a", &image)).await.unwrap_err().code(),
        "replica_exists"
    ));
    for id in ["a", "b", "c"] {
        runtime.stop(id, Duration::from_secs(5)).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pruning_removes_only_the_roots_no_replica_uses() {
    if !registry_tests_enabled("pruning_removes_only_the_roots_no_replica_uses") {
        return;
    }
    let registry = TestRegistry::start();
    let client = client();
    let kept = web_image(&registry, &client, "kept").await;
    // Builds are reproducible: the other image needs other content.
    let context = busybox_context(&[("www/index.html", "other\n"), ("www/health", "ok\n")]);
    let mut image = ImageSpec::new(context.path());
    image.entrypoint = Some(vec!["/app/busybox".into(), "sh".into(), "-c".into()]);
    image.cmd = Some(vec![SERVE.into()]);
    image.workdir = Some("/app/www".into());
    let dropped = build_image(&image, &registry.image("gantry-test/dropped:v1"), &client)
        .await
        .unwrap()
        .reference;
    assert_ne!(kept.digest(), dropped.digest());
    let data = DataDir::new();
    let runtime = ProcessRuntime::new(data.path(), client).await.unwrap();
    runtime.start(spec("kept-1", &kept)).await.unwrap();
    runtime.start(spec("dropped-1", &dropped)).await.unwrap();
    runtime
        .stop("dropped-1", Duration::from_secs(5))
        .await
        .unwrap();
    let kept_root = runtime.image_root(kept.digest().unwrap());
    let dropped_root = runtime.image_root(dropped.digest().unwrap());

    // A dry run measures and removes nothing.
    let would = runtime.prune_images(true).await.unwrap();
    assert_eq!(would.len(), 1, "{would:?}");
    assert_eq!(would[0].digest, dropped.digest().unwrap().to_string());
    assert!(would[0].bytes > 0);
    assert!(dropped_root.is_dir());

    let pruned = runtime.prune_images(false).await.unwrap();
    assert_eq!(pruned, would);
    assert!(!dropped_root.exists());
    assert!(kept_root.is_dir(), "a running replica's root stays");
    let mut entries: Vec<String> = std::fs::read_dir(data.path().join("rootfs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    entries.sort();
    let hex = kept.digest().unwrap().hex().to_owned();
    assert_eq!(entries, [hex.clone(), format!("{hex}.json")]);

    // The pruned image unpacks again for the next replica that needs it.
    let again = runtime.start(spec("dropped-2", &dropped)).await.unwrap();
    assert_eq!(wait_http(again.addr, "/", STARTUP).await.1, "other\n");
    assert!(runtime.prune_images(false).await.unwrap().is_empty());
    for id in ["kept-1", "dropped-2"] {
        runtime.stop(id, Duration::from_secs(5)).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whiteouts_of_an_upper_layer_delete_files_of_the_base() {
    if !registry_tests_enabled("whiteouts_of_an_upper_layer_delete_files_of_the_base") {
        return;
    }
    let registry = TestRegistry::start();
    let client = client();
    let base_context = busybox_context(&[
        ("gone.txt", "from the base"),
        ("kept.txt", "from the base"),
        ("dir/old.txt", "from the base"),
    ]);
    let base = registry.image("gantry-test/base:v1");
    build_image(&ImageSpec::new(base_context.path()), &base, &client)
        .await
        .unwrap();
    let upper_context = tempfile::tempdir().unwrap();
    write_files(
        upper_context.path(),
        &[
            (".wh.gone.txt", ""),
            ("dir/.wh..wh..opq", ""),
            ("dir/new.txt", "from the upper layer"),
        ],
    );
    let mut upper_spec = ImageSpec::new(upper_context.path());
    upper_spec.base = Some(base);
    upper_spec.cmd = sh(SERVE);
    upper_spec.workdir = Some("/app".into());
    upper_spec.env = vec![("PATH".into(), "/app".into())];
    let upper = build_image(
        &upper_spec,
        &registry.image("gantry-test/upper:v1"),
        &client,
    )
    .await
    .unwrap()
    .reference;

    let data = DataDir::new();
    let runtime = ProcessRuntime::new(data.path(), client).await.unwrap();
    let replica = runtime.start(spec("w", &upper)).await.unwrap();
    // Served from /app: the base's kept file is there, the whited-out one is not.
    assert_eq!(
        wait_http(replica.addr, "/kept.txt", STARTUP).await,
        (200, "from the base".to_owned())
    );
    assert_eq!(
        http_get(replica.addr, "/gone.txt").await.map(|a| a.0),
        Some(404)
    );

    let app = runtime.image_root(upper.digest().unwrap()).join("app");
    assert!(app.join("busybox").is_file());
    assert!(app.join("kept.txt").is_file());
    assert!(!app.join("gone.txt").exists());
    assert!(!app.join(".wh.gone.txt").exists());
    assert!(
        !app.join("dir/old.txt").exists(),
        "the opaque dir hides the base's files"
    );
    assert_eq!(
        std::fs::read_to_string(app.join("dir/new.txt")).unwrap(),
        "from the upper layer"
    );
    runtime.stop("w", Duration::from_secs(5)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entrypoint_that_exits_at_once_is_restarted_with_backoff_and_events() {
    if !registry_tests_enabled(
        "an_entrypoint_that_exits_at_once_is_restarted_with_backoff_and_events",
    ) {
        return;
    }
    let registry = TestRegistry::start();
    let client = client();
    let image = web_image(&registry, &client, "crash").await;
    let data = DataDir::new();
    let runtime = ProcessRuntime::new(data.path(), client).await.unwrap();
    let mut events = runtime.subscribe();
    let mut s = spec("crash", &image);
    s.command = sh("echo crashing; exit 3");
    runtime.start(s).await.unwrap();

    let within = Duration::from_secs(10);
    let mut expected = vec![ReplicaEvent::Started { id: "crash".into() }];
    for (attempt, secs) in [(1, 1), (2, 2)] {
        expected.push(ReplicaEvent::Exited {
            id: "crash".into(),
            code: Some(3),
            signal: None,
        });
        expected.push(ReplicaEvent::Restarting {
            id: "crash".into(),
            attempt,
            delay: Duration::from_secs(secs),
        });
        expected.push(ReplicaEvent::Started { id: "crash".into() });
    }
    let mut seen = Vec::new();
    let mut restarted_at = Vec::new();
    for _ in 0..expected.len() {
        let event = next_event_of(&mut events, "crash", within).await;
        restarted_at.push(Instant::now());
        seen.push(event);
    }
    assert_eq!(seen, expected);
    // The second restart waited its 2 s after being announced (with slack for a
    // test thread that received the announcement late).
    assert!(restarted_at[6] - restarted_at[5] >= Duration::from_millis(1500));
    let listed = runtime.list().await.unwrap();
    assert!(listed[0].restarts >= 2, "{listed:?}");
    // How the last run ended is kept for `gantry env status`.
    assert_eq!(
        listed[0].last_exit,
        Some(gantry_runtime::ReplicaExit {
            code: Some(3),
            signal: None
        }),
        "{listed:?}"
    );
    // Each run wrote to the same log (the third may still be writing).
    let log = runtime.log_path("crash");
    wait_until("three runs in the log", within, || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .matches("crashing")
            .count()
            >= 3
    })
    .await;

    runtime.stop("crash", Duration::from_secs(1)).await.unwrap();
    wait_event(&mut events, within, |e| {
        matches!(e, ReplicaEvent::Stopped { .. })
    })
    .await;
    // Nothing restarts a stopped replica.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(matches!(
        events.try_recv(),
        Err(tokio::sync::broadcast::error::TryRecvError::Empty)
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_kills_the_whole_process_group_after_the_grace_period() {
    if !registry_tests_enabled("stop_kills_the_whole_process_group_after_the_grace_period") {
        return;
    }
    let registry = TestRegistry::start();
    let client = client();
    let image = web_image(&registry, &client, "group").await;
    let data = DataDir::new();
    let runtime = ProcessRuntime::new(data.path(), client).await.unwrap();
    let mut s = spec("group", &image);
    // A child that ignores SIGTERM, then the server in the foreground.
    s.command = sh(
        "(trap '' TERM; exec busybox sleep 1000) & echo child=$!; exec busybox httpd -f -p $PORT -h .",
    );
    let replica = runtime.start(s).await.unwrap();
    wait_http(replica.addr, "/", STARTUP).await;
    let leader = data.recorded_pid("group");
    let log = log_with(&runtime, "group", "child=").await;
    let child: i32 = log
        .split("child=")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|pid| pid.parse().ok())
        .unwrap();
    assert!(!is_dead(leader) && !is_dead(child));

    let began = Instant::now();
    runtime.stop("group", Duration::from_secs(1)).await.unwrap();
    assert!(
        began.elapsed() >= Duration::from_millis(900),
        "the grace period is given"
    );
    assert!(is_dead(leader), "the leader got SIGTERM");
    assert!(is_dead(child), "the child that ignored SIGTERM got SIGKILL");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_runtime_adopts_running_replicas_and_forgets_dead_ones() {
    if !registry_tests_enabled("a_new_runtime_adopts_running_replicas_and_forgets_dead_ones") {
        return;
    }
    let registry = TestRegistry::start();
    let client = client();
    let image = web_image(&registry, &client, "adopt").await;
    let data = DataDir::new();
    let first = ProcessRuntime::new(data.path(), client.clone())
        .await
        .unwrap();
    let keep = first.start(spec("keep", &image)).await.unwrap();
    let dies = first.start(spec("dies", &image)).await.unwrap();
    wait_http(keep.addr, "/", STARTUP).await;
    wait_http(dies.addr, "/", STARTUP).await;
    let keep_pid = data.recorded_pid("keep");
    let dies_pid = data.recorded_pid("dies");
    // gantry goes away; its replicas stay.
    drop(first);
    killpg(Pid::from_raw(dies_pid), Signal::SIGKILL).unwrap();
    wait_until("the killed replica to die", STARTUP, || is_dead(dies_pid)).await;

    let second = ProcessRuntime::new(data.path(), client).await.unwrap();
    let mut events = second.subscribe();
    assert_eq!(
        next_event_of(&mut events, "dies", STARTUP).await,
        ReplicaEvent::Exited {
            id: "dies".into(),
            code: None,
            signal: None
        },
        "the first subscriber learns about the dead replica"
    );
    let listed = second.list().await.unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0].id, "keep");
    assert_eq!(listed[0].addr, keep.addr);
    assert_eq!(listed[0].state, ReplicaState::Running);
    assert_eq!(
        data.recorded_pid("keep"),
        keep_pid,
        "the same process, not a new one"
    );
    assert!(!data.path().join("replicas/dies.json").exists());
    assert_eq!(wait_http(keep.addr, "/", STARTUP).await.1, INDEX);
    let log = std::fs::read_to_string(second.log_path("keep")).unwrap();
    assert_eq!(log.matches("pid=").count(), 1, "started once: {log}");

    // The adopted replica is supervised too: killed, it is restarted on its address.
    killpg(Pid::from_raw(keep_pid), Signal::SIGKILL).unwrap();
    let within = Duration::from_secs(10);
    assert!(matches!(
        next_event_of(&mut events, "keep", within).await,
        ReplicaEvent::Exited { code: None, .. }
    ));
    assert!(matches!(
        next_event_of(&mut events, "keep", within).await,
        ReplicaEvent::Restarting { attempt: 1, .. }
    ));
    assert_eq!(
        next_event_of(&mut events, "keep", within).await,
        ReplicaEvent::Started { id: "keep".into() }
    );
    assert_eq!(wait_http(keep.addr, "/", STARTUP).await.1, INDEX);
    assert_ne!(data.recorded_pid("keep"), keep_pid);
    assert_eq!(second.list().await.unwrap()[0].restarts, 1);
    second.stop("keep", Duration::from_secs(5)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_that_does_not_exist_is_an_image_pull_error_naming_it() {
    if !registry_tests_enabled("an_image_that_does_not_exist_is_an_image_pull_error_naming_it") {
        return;
    }
    let registry = TestRegistry::start();
    let data = DataDir::new();
    let runtime = ProcessRuntime::new(data.path(), client()).await.unwrap();
    let missing = registry
        .image("gantry-test/missing")
        .with_digest(&Digest::of(b"no such image"));
    let error = runtime.start(spec("m", &missing)).await.unwrap_err();
    assert_eq!(error.code(), "image_pull", "{error}");
    assert!(error.to_string().contains(&missing.to_string()), "{error}");
    assert!(runtime.list().await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_program_is_a_spawn_error() {
    if !registry_tests_enabled("a_missing_program_is_a_spawn_error") {
        return;
    }
    let registry = TestRegistry::start();
    let client = client();
    let image = web_image(&registry, &client, "noprog").await;
    let data = DataDir::new();
    let runtime = ProcessRuntime::new(data.path(), client).await.unwrap();
    let mut s = spec("p", &image);
    s.command = Some(vec!["/app/does-not-exist".into()]);
    let error = runtime.start(s).await.unwrap_err();
    assert_eq!(error.code(), "spawn", "{error}");
    assert!(error.to_string().contains("/app/does-not-exist"), "{error}");
    assert!(runtime.list().await.unwrap().is_empty());
    assert!(!data.path().join("replicas/p.json").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_script_runs_under_an_interpreter_only_the_image_has_and_a_missing_one_is_named() {
    if !registry_tests_enabled(
        "a_script_runs_under_an_interpreter_only_the_image_has_and_a_missing_one_is_named",
    ) {
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let registry = TestRegistry::start();
    let client = client();
    // Built from scratch: busybox at /app/busybox (no host has that path),
    // a script using it as its interpreter, and one whose interpreter is gone.
    let context = busybox_context(&[
        ("www/index.html", INDEX),
        (
            "bin/serve",
            // The script's own paths are the host's: it reaches the image
            // through PATH and GANTRY_ROOTFS.
            "#!/app/busybox sh\necho \"serving as $0\"\nexec busybox httpd -f -p $PORT -h \"$GANTRY_ROOTFS/app/www\"\n",
        ),
        (
            "bin/broken",
            "#!/usr/local/bin/no-such-python3 -u\nprint('hi')\n",
        ),
    ]);
    for script in ["bin/serve", "bin/broken"] {
        std::fs::set_permissions(
            context.path().join(script),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();
    }
    let mut image_spec = ImageSpec::new(context.path());
    image_spec.entrypoint = Some(vec!["/app/bin/serve".into()]);
    image_spec.env = vec![("PATH".into(), "/app".into())];
    let image = build_image(
        &image_spec,
        &registry.image("gantry-test/script:v1"),
        &client,
    )
    .await
    .unwrap()
    .reference;
    let data = DataDir::new();
    let runtime = ProcessRuntime::new(data.path(), client).await.unwrap();

    let replica = runtime.start(spec("script", &image)).await.unwrap();
    assert_eq!(
        wait_http(replica.addr, "/", STARTUP).await,
        (200, INDEX.to_owned())
    );
    let root = runtime.image_root(image.digest().unwrap());
    log_with(
        &runtime,
        "script",
        &format!("serving as {}", root.join("app/bin/serve").display()),
    )
    .await;
    runtime
        .stop("script", Duration::from_secs(5))
        .await
        .unwrap();

    let mut broken = spec("broken", &image);
    broken.command = Some(vec!["/app/bin/broken".into()]);
    let error = runtime.start(broken).await.unwrap_err();
    assert_eq!(error.code(), "spawn", "{error}");
    assert!(
        error
            .to_string()
            .contains("/app/bin/broken is a script whose interpreter /usr/local/bin/no-such-python3 (its #! line) does not exist in the image"),
        "{error}"
    );
    assert!(runtime.list().await.unwrap().is_empty());
}

/// A layer tar holding `../evil`, which the tar crate's builder would refuse to write.
fn escaping_layer() -> Vec<u8> {
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(tar::EntryType::Regular);
    header.set_mode(0o644);
    header.set_size(4);
    header.as_old_mut().name[..7].copy_from_slice(b"../evil");
    header.set_cksum();
    let mut builder = tar::Builder::new(Vec::new());
    builder.append(&header, &b"evil"[..]).unwrap();
    builder.into_inner().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_layer_entry_with_dot_dot_is_refused() {
    if !registry_tests_enabled("a_layer_entry_with_dot_dot_is_refused") {
        return;
    }
    let registry = TestRegistry::start();
    let client = client();
    let target = registry.image("gantry-test/evil:v1");
    let tar = escaping_layer();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&tar).unwrap();
    let layer = gz.finish().unwrap();
    let layer_digest = Digest::of(&layer);
    let config = serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "config": {"Cmd": ["/bin/true"]},
        "rootfs": {"type": "layers", "diff_ids": [Digest::of(&tar).to_string()]},
    });
    let config = serde_json::to_vec(&config).unwrap();
    let config_digest = Digest::of(&config);
    client
        .push_blob_bytes(&target, &layer_digest, &layer)
        .await
        .unwrap();
    client
        .push_blob_bytes(&target, &config_digest, &config)
        .await
        .unwrap();
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": config_digest.to_string(), "size": config.len()},
        "layers": [{"mediaType": OCI_LAYER_GZIP, "digest": layer_digest.to_string(), "size": layer.len()}],
    }))
    .unwrap();
    let digest = client
        .put_manifest_raw(&target, &manifest, OCI_MANIFEST)
        .await
        .unwrap();

    let data = DataDir::new();
    let runtime = ProcessRuntime::new(data.path(), client).await.unwrap();
    let error = runtime
        .start(spec("evil", &target.with_digest(&digest)))
        .await
        .unwrap_err();
    assert_eq!(error.code(), "image_unpack", "{error}");
    assert!(error.to_string().contains("'..'"), "{error}");
    assert!(!data.path().join("evil").exists());
    assert!(!data.path().join("rootfs/evil").exists());
    let rootfs: Vec<_> = std::fs::read_dir(data.path().join("rootfs"))
        .unwrap()
        .collect();
    assert!(
        rootfs.is_empty(),
        "no root and no temp dir left: {rootfs:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_growing_log_is_rotated() {
    if !registry_tests_enabled("a_growing_log_is_rotated") {
        return;
    }
    let registry = TestRegistry::start();
    let client = client();
    let image = web_image(&registry, &client, "chatty").await;
    let data = DataDir::new();
    let options = ProcessOptions {
        restart: RestartPolicy::default(),
        log_max_bytes: 1000,
    };
    let runtime = ProcessRuntime::with_options(data.path(), client, options)
        .await
        .unwrap();
    let mut s = spec("chatty", &image);
    s.command = sh(
        "i=0; while [ $i -lt 100 ]; do echo 0123456789012345678901234567890123456789; i=$((i+1)); done; exec busybox sleep 1000",
    );
    runtime.start(s).await.unwrap();
    let rotated = data.path().join("replicas/chatty.log.1");
    wait_until("the log to be rotated", Duration::from_secs(15), || {
        rotated.exists()
    })
    .await;
    assert!(std::fs::metadata(&rotated).unwrap().len() >= 4000);
    assert!(std::fs::metadata(runtime.log_path("chatty")).unwrap().len() < 1000);
    runtime
        .stop("chatty", Duration::from_secs(1))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_with_a_user_runs_as_that_user_with_private_logs() {
    if !registry_tests_enabled("a_replica_with_a_user_runs_as_that_user_with_private_logs") {
        return;
    }
    if !nix::unistd::geteuid().is_root() {
        println!("skipped: running as another user needs root");
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let nobody = nix::unistd::User::from_name("nobody")
        .unwrap()
        .expect("a nobody user");
    let registry = TestRegistry::start();
    let client = client();
    let image = web_image(&registry, &client, "web-user").await;
    let data = DataDir::new();
    // The user must be able to reach the unpacked root inside the data dir.
    std::fs::set_permissions(data.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
    let runtime = ProcessRuntime::new(data.path(), client).await.unwrap();
    let replica = runtime
        .start(spec("as-nobody", &image).with_user(Some("nobody".into())))
        .await
        .unwrap();
    assert_eq!(
        wait_http(replica.addr, "/", STARTUP).await,
        (200, INDEX.to_owned())
    );
    let pid = data.recorded_pid("as-nobody");
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let ids = |key: &str| -> Vec<u32> {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .unwrap()
            .split_whitespace()
            .map(|n| n.parse().unwrap())
            .collect()
    };
    assert!(
        ids("Uid:").iter().all(|&u| u == nobody.uid.as_raw()),
        "{status}"
    );
    assert!(
        ids("Gid:").iter().all(|&g| g == nobody.gid.as_raw()),
        "{status}"
    );
    assert!(
        ids("Groups:").is_empty(),
        "no supplementary groups: {status}"
    );

    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&runtime.log_path("as-nobody")), 0o600);
    assert_eq!(mode(&data.path().join("replicas/as-nobody.json")), 0o600);
    assert_eq!(mode(&data.path().join("replicas")), 0o700);
    let root = runtime.image_root(image.digest().unwrap());
    assert_eq!(
        mode(&root) & 0o022,
        0,
        "the root is writable by gantry only"
    );
    runtime
        .stop("as-nobody", Duration::from_secs(5))
        .await
        .unwrap();
}
