//! `cache.paths`: kept after a build that succeeded, restored into the next
//! build's fresh source directory (what the source has wins), never saved
//! from a failed build, never written or read through a link out of the
//! source tree.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use gantry_build::BuildStatus;
use gantry_spec::buildspec::PhaseName;
use support::{build, phase, request, spec};

/// A build in a fresh `dir/src` with `cache.paths: [deps/**/*]` kept in
/// `cache`, running `commands`.
async fn cached_build(
    dir: &Path,
    cache: &Path,
    commands: &[&str],
) -> (gantry_build::BuildOutcome, support::Lines) {
    let _ = std::fs::remove_dir_all(dir.join("src"));
    let mut bs = spec(vec![phase(PhaseName::Build, commands)]);
    bs.cache_paths = vec!["deps/**/*".to_owned()];
    let mut req = request(dir, bs);
    req.cache_dir = Some(cache.to_path_buf());
    build(req).await
}

const FILL: &str = "if [ -f deps/lib.txt ]; then echo HIT; else mkdir -p deps/bin && echo lib > deps/lib.txt && printf '#!/bin/sh\\necho tool\\n' > deps/bin/tool && chmod 755 deps/bin/tool && echo MISS; fi";

#[tokio::test]
async fn kept_paths_come_back_in_the_next_build_with_their_modes() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let (first, lines) = cached_build(dir.path(), &cache, &[FILL]).await;
    assert_eq!(first.status, BuildStatus::Succeeded, "{}", lines.text());
    assert!(lines.output().contains(&"MISS".to_owned()));
    assert!(lines.text().contains("Cache: nothing kept yet"));
    assert!(
        lines.text().contains("Cache: saved 2 file(s)"),
        "{}",
        lines.text()
    );

    // A new checkout: the kept files are there before the first command.
    let (second, lines) = cached_build(dir.path(), &cache, &[FILL, "deps/bin/tool"]).await;
    assert_eq!(second.status, BuildStatus::Succeeded, "{}", lines.text());
    assert_eq!(lines.output(), ["HIT", "tool"], "{}", lines.text());
    assert!(
        lines.text().contains("Cache: restored 2 file(s)"),
        "{}",
        lines.text()
    );
    let mode = std::fs::metadata(dir.path().join("src/deps/bin/tool"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o755);
}

#[tokio::test]
async fn what_the_source_has_wins_and_a_failed_build_keeps_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let (first, _) = cached_build(dir.path(), &cache, &[FILL]).await;
    assert_eq!(first.status, BuildStatus::Succeeded);

    // A failed build that changed the file: its state is not kept.
    let (failed, lines) = cached_build(
        dir.path(),
        &cache,
        &["mkdir -p deps && echo broken > deps/lib.txt", "false"],
    )
    .await;
    assert_eq!(failed.status, BuildStatus::Failed, "{}", lines.text());
    assert!(!lines.text().contains("Cache: saved"), "{}", lines.text());
    let (_, lines) = cached_build(dir.path(), &cache, &["cat deps/lib.txt"]).await;
    assert_eq!(lines.output(), ["lib"], "{}", lines.text());

    // A file the source already holds is not replaced by the kept one.
    let _ = std::fs::remove_dir_all(dir.path().join("src"));
    std::fs::create_dir_all(dir.path().join("src/deps")).unwrap();
    std::fs::write(dir.path().join("src/deps/lib.txt"), "from the source").unwrap();
    let mut bs = spec(vec![phase(PhaseName::Build, &["cat deps/lib.txt"])]);
    bs.cache_paths = vec!["deps/**/*".to_owned()];
    let mut req = support::request(dir.path(), bs);
    req.cache_dir = Some(cache.clone());
    let (_, lines) = build(req).await;
    assert_eq!(lines.output(), ["from the source"], "{}", lines.text());
}

/// Regression: a link in the cached paths is not kept (a restored link
/// could point anywhere), and a restore never writes through a link the
/// source directory holds where a kept directory goes.
#[tokio::test]
async fn links_are_neither_kept_nor_followed() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let outside = dir.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("secret.txt"), "not the build's").unwrap();
    let link = format!(
        "mkdir -p deps && echo lib > deps/lib.txt && ln -s {} deps/escape && ln -s {}/secret.txt deps/secret.txt",
        outside.display(),
        outside.display()
    );
    let (first, lines) = cached_build(dir.path(), &cache, &[&link]).await;
    assert_eq!(first.status, BuildStatus::Succeeded, "{}", lines.text());
    let kept: Vec<String> = walk(&cache);
    assert!(
        kept.iter().any(|p| p.ends_with("deps/lib.txt")),
        "{kept:?}\n{}",
        lines.text()
    );
    assert!(
        kept.iter()
            .all(|p| !p.contains("escape") && !p.contains("secret")),
        "links were kept: {kept:?}"
    );

    // The next checkout holds `deps` as a link out of the tree: nothing is
    // written through it.
    let _ = std::fs::remove_dir_all(dir.path().join("src"));
    std::fs::create_dir_all(dir.path().join("src")).unwrap();
    std::os::unix::fs::symlink(&outside, dir.path().join("src/deps")).unwrap();
    let mut bs = spec(vec![phase(PhaseName::Build, &["true"])]);
    bs.cache_paths = vec!["deps/**/*".to_owned()];
    let mut req = support::request(dir.path(), bs);
    req.cache_dir = Some(cache.clone());
    let (_, lines) = build(req).await;
    assert!(
        lines.text().contains("Cache: not restored"),
        "{}",
        lines.text()
    );
    assert!(!outside.join("lib.txt").exists(), "written through a link");
}

/// A build without a cache directory says it keeps nothing.
#[tokio::test]
async fn without_a_cache_directory_the_log_says_nothing_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let mut bs = spec(vec![phase(PhaseName::Build, &["true"])]);
    bs.cache_paths = vec!["deps/**/*".to_owned()];
    let (outcome, lines) = build(request(dir.path(), bs)).await;
    assert_eq!(outcome.status, BuildStatus::Succeeded);
    assert!(
        lines.text().contains("this build keeps no cache.paths"),
        "{}",
        lines.text()
    );
}

fn walk(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        out.push(path.display().to_string());
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            out.extend(walk(&path));
        }
    }
    out
}

/// Regression: the kept cache replaced by a link (a build can write to the
/// pipeline's cache directory) is not read through.
#[tokio::test]
async fn a_kept_cache_replaced_by_a_link_is_not_read() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let outside = dir.path().join("outside/deps");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("lib.txt"), "not the cache's").unwrap();
    std::fs::create_dir_all(&cache).unwrap();
    std::os::unix::fs::symlink(dir.path().join("outside"), cache.join("current")).unwrap();
    let (_, lines) = cached_build(dir.path(), &cache, &["test ! -e deps/lib.txt"]).await;
    assert!(
        lines.text().contains("Cache: nothing kept yet"),
        "{}",
        lines.text()
    );
    assert!(!dir.path().join("src/deps/lib.txt").exists());
}
