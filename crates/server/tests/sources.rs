//! Source actions on real git repositories: bare repositories on disk, a
//! `git daemon` for `git://`, a fake HTTP forge for credentials. What an
//! execution is pinned to is what it runs, whatever the branch did since;
//! a commit that is gone fails the action; credentials never show.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gantry_api::ExecutionView;
use gantry_engine::{Trigger, TriggerType};
use gantry_server::ControlPlane;
use gantry_server::mirror::{Mirrors, RepoCredentials};
use gantry_testkit::{free_port, git};

mod common;
use common::open_plane;

/// A bare repository `NAME.git` under `dir` with one commit on `main`
/// holding `file`; returns it and a working clone to push from.
fn bare_repo(dir: &Path, name: &str, file: &str, content: &str) -> (PathBuf, PathBuf) {
    let bare = dir.join(format!("{name}.git"));
    git(
        dir,
        &["init", "-q", "--bare", "-b", "main", bare.to_str().unwrap()],
    );
    let work = dir.join(format!("{name}-work"));
    git(dir, &["init", "-q", "-b", "main", work.to_str().unwrap()]);
    commit(&work, file, content, "first");
    git(&work, &["remote", "add", "origin", bare.to_str().unwrap()]);
    git(&work, &["push", "-q", "origin", "main"]);
    (bare, work)
}

/// Writes `file` and commits it; returns the commit id.
fn commit(work: &Path, file: &str, content: &str, message: &str) -> String {
    std::fs::write(work.join(file), content).unwrap();
    git(work, &["add", "-A"]);
    git(work, &["commit", "-q", "-m", message]);
    head(work)
}

fn head(work: &Path) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(work)
        .args(["rev-parse", "HEAD"])
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// A `git daemon` serving every repository under `base` on a free port;
/// killed when dropped.
struct GitDaemon {
    child: Child,
    port: u16,
}

impl GitDaemon {
    fn start(base: &Path) -> GitDaemon {
        let port = free_port();
        let child = Command::new("git")
            .args([
                "daemon",
                "--reuseaddr",
                "--export-all",
                "--listen=127.0.0.1",
                &format!("--port={port}"),
                &format!("--base-path={}", base.display()),
            ])
            .arg(base)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("git daemon runs");
        let ready =
            gantry_clock::blocking_poll(Duration::from_secs(20), Duration::from_millis(20), || {
                std::net::TcpStream::connect(("127.0.0.1", port))
                    .is_ok()
                    .then_some(())
            });
        assert!(ready.is_some(), "git daemon did not listen");
        GitDaemon { child, port }
    }

    fn url(&self, name: &str) -> String {
        format!("git://127.0.0.1:{}/{name}.git", self.port)
    }
}

impl Drop for GitDaemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn pipeline(sources: &[(&str, &str)]) -> String {
    let mut text =
        String::from("version: 1\nname: pinned\nstages:\n  - name: Source\n    actions:\n");
    for (name, repository) in sources {
        text.push_str(&format!(
            "      - name: {name}\n        type: source\n        repository: {repository}\n        branch: main\n        outputs: [{name}Files]\n"
        ));
    }
    text.push_str("  - name: Build\n    actions:\n      - name: show\n        type: shell\n        commands: [\"cat *.txt\", \"cat ../inputs/*/*.txt 2>/dev/null || true\"]\n        inputs: [");
    text.push_str(
        &sources
            .iter()
            .map(|(n, _)| format!("{n}Files"))
            .collect::<Vec<_>>()
            .join(", "),
    );
    text.push_str("]\n");
    text
}

async fn view(plane: &ControlPlane, id: &str) -> ExecutionView {
    let (execution, loaded) = plane.execution(id).await.unwrap();
    gantry_server::view::execution_view(&execution, loaded.as_deref())
}

async fn finish(plane: &ControlPlane, id: &str) -> ExecutionView {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut changes = plane.changes();
    loop {
        let v = view(plane, id).await;
        if v.is_finished() {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not finished: {v:#?}"
        );
        let _ = tokio::time::timeout(Duration::from_millis(200), changes.changed()).await;
    }
}

async fn log_text(plane: &ControlPlane, id: &str) -> String {
    plane
        .logs(id, None, 0, 100_000)
        .await
        .unwrap()
        .into_iter()
        .map(|l| l.line)
        .collect::<Vec<_>>()
        .join("\n")
}

fn trigger(kind: TriggerType, detail: &str) -> Trigger {
    Trigger {
        kind,
        detail: detail.to_string(),
        by: None,
        pull_request: None,
    }
}

async fn start_pinned(
    plane: &ControlPlane,
    dir: &Path,
    text: &str,
    pins: &[(&str, &str)],
) -> String {
    let pins = pins
        .iter()
        .map(|(a, c)| (a.to_string(), c.to_string()))
        .collect();
    plane
        .start_triggered(
            dir.join("gantry.yaml"),
            text.to_string(),
            BTreeMap::new(),
            trigger(TriggerType::Webhook, "github delivery 72d3162e"),
            pins,
        )
        .await
        .unwrap()
}

fn source_output<'a>(v: &'a ExecutionView, action: &str, name: &str) -> &'a str {
    v.action("Source", action).unwrap().output_variables[name].as_str()
}

#[tokio::test]
async fn a_pinned_run_takes_its_commit_after_the_branch_moved_local_and_git_daemon() {
    let dir = tempfile::tempdir().unwrap();
    let repos = dir.path().join("repos");
    std::fs::create_dir_all(&repos).unwrap();
    let (bare, work) = bare_repo(&repos, "app", "app.txt", "version A\n");
    let a = head(&work);
    let b = commit(&work, "app.txt", "version B\n", "second");
    git(&work, &["push", "-q", "origin", "main"]);
    let daemon = GitDaemon::start(&repos);
    let plane = open_plane(&dir.path().join("data")).await.unwrap();

    for repository in [bare.display().to_string(), daemon.url("app")] {
        let text = pipeline(&[("app", &repository)]);
        let id = start_pinned(&plane, dir.path(), &text, &[("app", &a)]).await;
        let v = finish(&plane, &id).await;
        assert_eq!(v.status, "Succeeded", "{repository}: {v:#?}");
        assert_eq!(source_output(&v, "app", "CommitId"), a);
        assert_eq!(source_output(&v, "app", "TriggerType"), "webhook");
        assert_eq!(
            source_output(&v, "app", "TriggerDetail"),
            "github delivery 72d3162e"
        );
        assert_eq!(v.source_revisions["app"], a);
        let trigger = v.trigger.as_ref().unwrap();
        assert_eq!(trigger.trigger_type, "webhook");
        let logs = log_text(&plane, &id).await;
        assert!(logs.contains("version A"), "{repository}: {logs}");
        assert!(!logs.contains("version B"), "{repository}: {logs}");

        // Unpinned, the same pipeline takes the branch's head.
        let id = plane
            .start_execution(
                dir.path().join("gantry.yaml"),
                text.clone(),
                BTreeMap::new(),
                BTreeMap::new(),
                Some("alice".to_string()),
            )
            .await
            .unwrap();
        let v = finish(&plane, &id).await;
        assert_eq!(v.status, "Succeeded", "{repository}: {v:#?}");
        assert_eq!(source_output(&v, "app", "CommitId"), b);
        assert_eq!(v.source_revisions["app"], b);
        let trigger = v.trigger.as_ref().unwrap();
        assert_eq!(
            (trigger.trigger_type.as_str(), trigger.by.as_deref()),
            ("manual", Some("alice"))
        );
        assert_eq!(source_output(&v, "app", "TriggerType"), "manual");
    }
}

#[tokio::test]
async fn a_pinned_commit_that_vanished_fails_the_action_and_runs_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let repos = dir.path().join("repos");
    std::fs::create_dir_all(&repos).unwrap();
    let (bare, work) = bare_repo(&repos, "app", "app.txt", "version A\n");
    let a = head(&work);
    let gone = commit(&work, "app.txt", "force-pushed away\n", "doomed");
    git(&work, &["push", "-q", "origin", "main"]);
    // Force-push main back to A, and let the repository forget the commit.
    git(
        &work,
        &[
            "push",
            "-q",
            "--force",
            "origin",
            &format!("{a}:refs/heads/main"),
        ],
    );
    git(&bare, &["reflog", "expire", "--expire=now", "--all"]);
    git(&bare, &["gc", "-q", "--prune=now"]);
    let daemon = GitDaemon::start(&repos);
    let plane = open_plane(&dir.path().join("data")).await.unwrap();

    for repository in [bare.display().to_string(), daemon.url("app")] {
        let text = pipeline(&[("app", &repository)]);
        let id = start_pinned(&plane, dir.path(), &text, &[("app", &gone)]).await;
        let v = finish(&plane, &id).await;
        assert_eq!(v.status, "Failed", "{repository}");
        let error = v.action("Source", "app").unwrap().error.clone().unwrap();
        assert!(
            error.contains(&format!("pinned to commit {gone}")) && error.contains("no longer has"),
            "{repository}: {error}"
        );
        assert_eq!(v.action("Build", "show").unwrap().status, None);
        assert!(!log_text(&plane, &id).await.contains("version A"));
    }
}

#[tokio::test]
async fn two_source_actions_pin_their_own_commits() {
    let dir = tempfile::tempdir().unwrap();
    let repos = dir.path().join("repos");
    std::fs::create_dir_all(&repos).unwrap();
    let (app_bare, app_work) = bare_repo(&repos, "app", "app.txt", "app 1\n");
    let (config_bare, config_work) = bare_repo(&repos, "config", "config.txt", "config 1\n");
    let app1 = head(&app_work);
    let config1 = head(&config_work);
    let config2 = commit(&config_work, "config.txt", "config 2\n", "second");
    git(&config_work, &["push", "-q", "origin", "main"]);
    commit(&app_work, "app.txt", "app 2\n", "second");
    git(&app_work, &["push", "-q", "origin", "main"]);
    let daemon = GitDaemon::start(&repos);
    let plane = open_plane(&dir.path().join("data")).await.unwrap();
    let config_url = daemon.url("config");
    let text = pipeline(&[("app", app_bare.to_str().unwrap()), ("config", &config_url)]);

    // The app is pinned to its first commit, the config to its second.
    let id = start_pinned(
        &plane,
        dir.path(),
        &text,
        &[("app", &app1), ("config", &config2)],
    )
    .await;
    let v = finish(&plane, &id).await;
    assert_eq!(v.status, "Succeeded", "{v:#?}");
    assert_eq!(source_output(&v, "app", "CommitId"), app1);
    assert_eq!(source_output(&v, "config", "CommitId"), config2);
    assert_eq!(
        v.source_revisions,
        BTreeMap::from([("app".to_string(), app1), ("config".to_string(), config2)])
    );
    let logs = log_text(&plane, &id).await;
    assert!(
        logs.contains("app 1") && logs.contains("config 2"),
        "{logs}"
    );

    // Only the config pinned: the app takes its head.
    let id = start_pinned(&plane, dir.path(), &text, &[("config", &config1)]).await;
    let v = finish(&plane, &id).await;
    assert_eq!(v.status, "Succeeded", "{v:#?}");
    assert_eq!(source_output(&v, "app", "CommitId"), head(&app_work));
    assert_eq!(source_output(&v, "config", "CommitId"), config1);
    drop(config_bare);
}

#[tokio::test]
async fn pins_must_name_source_actions_and_commits() {
    let dir = tempfile::tempdir().unwrap();
    let (bare, _) = bare_repo(dir.path(), "app", "app.txt", "x\n");
    let plane = open_plane(&dir.path().join("data")).await.unwrap();
    let text = pipeline(&[("app", bare.to_str().unwrap())]);
    for pins in [
        [("show", "abcdef1")],
        [("app", "--upload-pack=x")],
        [("nope", "abcdef1")],
    ] {
        let pins = pins
            .iter()
            .map(|(a, c)| (a.to_string(), c.to_string()))
            .collect();
        let error = plane
            .start_triggered(
                dir.path().join("gantry.yaml"),
                text.clone(),
                BTreeMap::new(),
                trigger(TriggerType::Poll, "refs/heads/main"),
                pins,
            )
            .await
            .unwrap_err();
        assert_eq!(error.code(), "request.invalid", "{error}");
    }
}

/// A fake forge answering every request 401, recording request heads.
fn fake_forge() -> (u16, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let heads = Arc::new(Mutex::new(Vec::new()));
    let seen = heads.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut head = String::new();
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                head.push_str(&line);
            }
            seen.lock().unwrap().push(head);
            let _ = stream.write_all(
                b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"forge\"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            );
        }
    });
    (port, heads)
}

/// Regression: a repository token goes to the forge as an
/// `Authorization` header and nowhere else: not in the action's error, its
/// log, the execution view, a mirror error, or a file of the data dir.
#[tokio::test]
async fn repository_credentials_never_show_in_logs_or_errors() {
    const TOKEN: &str = "ghp_s3cr3t_7Yq2LxVb9KmWd4";
    let dir = tempfile::tempdir().unwrap();
    let (port, heads) = fake_forge();
    let data = dir.path().join("data");
    let plane = open_plane(&data).await.unwrap();
    let name = gantry_params::ParamName::parse(&format!(
        "/gantry/repositories/127.0.0.1_{port}/acme/shop/token"
    ))
    .unwrap();
    plane
        .params()
        .put(gantry_params::PutParameter::new(
            &name,
            TOKEN,
            gantry_params::ParamType::SecureString,
            "test",
        ))
        .await
        .unwrap();
    let url = format!("http://127.0.0.1:{port}/acme/shop.git");
    let text = pipeline(&[("app", &url)]);
    let id = start_pinned(&plane, dir.path(), &text, &[]).await;
    let v = finish(&plane, &id).await;
    assert_eq!(v.status, "Failed");

    let basic = base64_of(&format!("x-access-token:{TOKEN}"));
    let heads = heads.lock().unwrap().join("\n");
    assert!(
        heads.contains(&format!("Authorization: Basic {basic}")),
        "the token was not sent: {heads}"
    );
    let error = v.action("Source", "app").unwrap().error.clone().unwrap();
    let everything = format!(
        "{error}\n{}\n{}",
        log_text(&plane, &id).await,
        serde_json::to_string(&v).unwrap()
    );
    assert!(error.contains(&format!("127.0.0.1:{port}")), "{error}");
    for secret in [TOKEN, basic.as_str()] {
        assert!(!everything.contains(secret), "{everything}");
    }

    // The mirror's own errors, and what it leaves on disk.
    let mirrors = Mirrors::new(&data);
    let creds = RepoCredentials::from_params(plane.params(), &url)
        .await
        .unwrap();
    assert!(!format!("{creds:?}").contains(TOKEN));
    let error = mirrors.ls_remote(&url, &creds).await.unwrap_err();
    assert_eq!(error.code(), "source.unreachable");
    let error = format!("{error} {error:?}");
    assert!(!error.contains(TOKEN) && !error.contains(&basic), "{error}");
    for file in walk(&data.join("mirrors")) {
        let bytes = std::fs::read(&file).unwrap_or_default();
        let text = String::from_utf8_lossy(&bytes);
        assert!(
            !text.contains(TOKEN) && !text.contains(&basic),
            "{} holds the token",
            file.display()
        );
    }
}

/// Credentials in a URL are refused before git sees the URL.
#[tokio::test]
async fn a_url_holding_a_password_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let plane = open_plane(&dir.path().join("data")).await.unwrap();
    let text = pipeline(&[("app", "https://alice:hunter2@127.0.0.1:9/acme/shop.git")]);
    let id = start_pinned(&plane, dir.path(), &text, &[]).await;
    let v = finish(&plane, &id).await;
    let error = v.action("Source", "app").unwrap().error.clone().unwrap();
    assert!(error.contains("parameter store"), "{error}");
}

#[tokio::test]
async fn mirrors_list_fetch_and_diff_a_git_daemon_repository() {
    let dir = tempfile::tempdir().unwrap();
    let repos = dir.path().join("repos");
    std::fs::create_dir_all(&repos).unwrap();
    let (_bare, work) = bare_repo(&repos, "app", "app.txt", "one\n");
    let first = head(&work);
    std::fs::create_dir_all(work.join("docs")).unwrap();
    std::fs::write(work.join("docs/readme.md"), "docs\n").unwrap();
    let second = commit(&work, "app.txt", "two\n", "second\n\nwith a body");
    git(&work, &["tag", "-a", "v1", "-m", "release"]);
    git(&work, &["push", "-q", "origin", "main", "v1"]);
    let daemon = GitDaemon::start(&repos);
    let url = daemon.url("app");
    let mirrors = Mirrors::new(&dir.path().join("data"));
    let none = RepoCredentials::none();

    let refs = mirrors.ls_remote(&url, &none).await.unwrap();
    assert_eq!(
        refs,
        [
            ("refs/heads/main".to_string(), second.clone()),
            ("refs/tags/v1".to_string(), second.clone()),
        ]
    );
    assert_eq!(mirrors.default_branch(&url, &none).await.unwrap(), "main");
    let repo = mirrors.fetch(&url, &none).await.unwrap();
    assert!(repo.starts_with(dir.path().join("data/mirrors")));
    assert!(mirrors.has_commit(&repo, &first).await);
    assert_eq!(mirrors.branch_head(&repo, "main").await.unwrap(), second);
    assert_eq!(
        mirrors.changed_files(&repo, &first, &second).await.unwrap(),
        ["app.txt", "docs/readme.md"]
    );
    let zero = "0".repeat(40);
    assert_eq!(
        mirrors.changed_files(&repo, &zero, &first).await.unwrap(),
        ["app.txt"]
    );
    let info = mirrors.commit_info(&repo, &second).await.unwrap();
    assert_eq!(info.id, second);
    assert_eq!(info.message, "second\n\nwith a body");
    assert_eq!(
        (info.author_name.as_str(), info.author_email.as_str()),
        ("Test", "test@example.com")
    );
    let out = dir.path().join("out");
    mirrors.archive(&repo, &first, &out).await.unwrap();
    assert_eq!(
        std::fs::read_to_string(out.join("app.txt")).unwrap(),
        "one\n"
    );

    // A deleted branch is pruned from the mirror; its commit stays (the
    // mirror logs its refs), so a run pinned to it still has it.
    git(&work, &["push", "-q", "origin", "HEAD:refs/heads/feature"]);
    let repo = mirrors.fetch(&url, &none).await.unwrap();
    assert!(mirrors.branch_head(&repo, "feature").await.is_ok());
    git(&work, &["push", "-q", "origin", ":refs/heads/feature"]);
    let again = mirrors.fetch(&url, &none).await.unwrap();
    assert_eq!(again, repo, "one mirror per repository");
    assert_eq!(
        mirrors
            .branch_head(&repo, "feature")
            .await
            .unwrap_err()
            .code(),
        "source.branch_not_found"
    );
    let missing = "1".repeat(40);
    assert_eq!(
        mirrors
            .commit_info(&repo, &missing)
            .await
            .unwrap_err()
            .code(),
        "source.commit_not_found"
    );

    // Another spelling of the same URL shares the mirror.
    let other = url.replace("git://", "GIT://").replace("app.git", "app/");
    assert_eq!(mirrors.location(&other).unwrap(), repo);
}

#[tokio::test]
async fn an_unreachable_repository_fails_fast_with_its_code() {
    let dir = tempfile::tempdir().unwrap();
    let mirrors = Mirrors::new(dir.path());
    let url = format!("git://127.0.0.1:{}/nothing.git", free_port());
    let error = mirrors
        .fetch(&url, &RepoCredentials::none())
        .await
        .unwrap_err();
    assert_eq!(error.code(), "source.unreachable", "{error}");
    assert_eq!(error.http_status(), 502);
}

/// Regression: an SSH key is written for one call and removed after it,
/// and a key file a killed server left behind (its removal never ran) is
/// removed before the next key is written, instead of outliving the call
/// for good.
#[tokio::test]
async fn ssh_key_files_do_not_outlive_their_call_nor_a_crash() {
    const KEY: &str = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA_not_a_real_key\n-----END OPENSSH PRIVATE KEY-----\n";
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let keys = data.join("mirrors/.keys");
    std::fs::create_dir_all(&keys).unwrap();
    // What a server killed during an SSH fetch leaves.
    std::fs::write(keys.join("0190a000-dead-7000-8000-000000000000.key"), KEY).unwrap();
    std::fs::write(keys.join("0190a000-dead-7000-8000-000000000001.tmp"), KEY).unwrap();

    let mirrors = Mirrors::new(&data);
    let url = format!("ssh://git@127.0.0.1:{}/acme/shop.git", free_port());
    let error = mirrors
        .ls_remote(&url, &RepoCredentials::ssh_key(KEY))
        .await
        .unwrap_err();
    assert_eq!(error.code(), "source.unreachable", "{error}");
    let error = format!("{error} {error:?}");
    assert!(!error.contains("not_a_real_key"), "{error}");
    let left: Vec<PathBuf> = walk(&data.join("mirrors"))
        .into_iter()
        .filter(|f| std::fs::read_to_string(f).is_ok_and(|text| text.contains("not_a_real_key")))
        .collect();
    assert!(left.is_empty(), "key files left: {left:?}");
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return files;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}

fn base64_of(text: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(text)
}

/// An event log written before executions had triggers and pins replays:
/// the old execution shows no trigger and no revisions, and is recovered
/// as any interrupted one; a new execution's trigger and pins survive a
/// reopen of the data dir.
#[tokio::test]
async fn an_event_log_from_before_triggers_replays() {
    let dir = tempfile::tempdir().unwrap();
    let (bare, work) = bare_repo(dir.path(), "app", "app.txt", "version A\n");
    let a = head(&work);
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let file = dir.path().join("gantry.yaml");
    let text = pipeline(&[("app", bare.to_str().unwrap())]);
    {
        // (Written into the data dir's SQLite file: this test stays on SQLite.)
        // What a server before triggers wrote: a definition without
        // `includes` and `started_by`, and an `execution_requested` event
        // without `trigger` and `source_revisions`.
        let store = gantry_store::Store::open(&data.join("gantry.db"))
            .await
            .unwrap();
        let definition = serde_json::json!({"file": file, "text": text, "variables": {}});
        store
            .put_definition("old", &definition.to_string())
            .await
            .unwrap();
        let event = r#"{"type": "execution_requested", "id": "old", "variables": {}, "at": 1000,
            "plan": {"pipeline": "pinned", "mode": "superseded", "stages": [
              {"name": "Source", "actions": [{"name": "app", "run_order": 1, "is_approval": false}]},
              {"name": "Build", "actions": [{"name": "show", "run_order": 1, "is_approval": false}]}]}}"#;
        store
            .record_event("pinned", "old", 1000, event, &[])
            .await
            .unwrap();
    }
    let new = {
        let plane = ControlPlane::open(&data).await.unwrap();
        let v = view(&plane, "old").await;
        assert_eq!(v.trigger, None);
        assert!(v.source_revisions.is_empty());
        assert_eq!(v.status, "Failed", "recovered as interrupted: {v:#?}");
        let id = start_pinned(&plane, dir.path(), &text, &[("app", &a)]).await;
        assert_eq!(finish(&plane, &id).await.status, "Succeeded");
        id
    };
    let plane = ControlPlane::open(&data).await.unwrap();
    let v = view(&plane, &new).await;
    assert_eq!(v.trigger.unwrap().trigger_type, "webhook");
    assert_eq!(v.source_revisions["app"], a);
    assert_eq!(view(&plane, "old").await.trigger, None);
}

/// A forge that answers every request with a redirect to `to`.
fn redirecting_forge(to: String) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut path = String::new();
            let _ = reader.read_line(&mut path);
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
            }
            let path = path.split_whitespace().nth(1).unwrap_or("/").to_string();
            let _ = stream.write_all(
                format!(
                    "HTTP/1.1 301 Moved Permanently\r\nLocation: {to}{path}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                )
                .as_bytes(),
            );
        }
    });
    port
}

/// Regression: with repository credentials, no redirect is followed at all
/// (git follows the first one by default): the host it points to never
/// hears from gantry, so it cannot collect the credentials.
#[tokio::test]
async fn a_redirect_is_not_followed_with_repository_credentials() {
    const TOKEN: &str = "ghp_redirect_7Yq2LxVb9KmWd4";
    let dir = tempfile::tempdir().unwrap();
    let (elsewhere, heads) = fake_forge();
    let port = redirecting_forge(format!("http://localhost:{elsewhere}"));
    let data = dir.path().join("data");
    let plane = open_plane(&data).await.unwrap();
    let name = gantry_params::ParamName::parse(&format!(
        "/gantry/repositories/127.0.0.1_{port}/acme/shop/token"
    ))
    .unwrap();
    plane
        .params()
        .put(gantry_params::PutParameter::new(
            &name,
            TOKEN,
            gantry_params::ParamType::SecureString,
            "test",
        ))
        .await
        .unwrap();
    let url = format!("http://127.0.0.1:{port}/acme/shop.git");
    let mirrors = Mirrors::new(&data);
    let creds = RepoCredentials::from_params(plane.params(), &url)
        .await
        .unwrap();
    assert!(mirrors.ls_remote(&url, &creds).await.is_err());
    assert!(mirrors.fetch(&url, &creds).await.is_err());
    let heads = heads.lock().unwrap().join("\n");
    assert!(heads.is_empty(), "a redirect was followed: {heads}");
}
