//! The web console in a real browser: headless Chromium driven through
//! chromedriver (WebDriver, with fantoccini as the shop's E2E uses it).
//! Signs in with a pasted token, watches an execution reach its approval
//! live (no reload), approves in the dialog, sees it succeed, releases a
//! change and watches its build's log stream, visits the history
//! (filtered through its form), environments, parameters, images,
//! triggers and audit pages, and saves a PNG screenshot of every page
//! visited under the test's target dir. Gated on `GANTRY_TEST_BROWSER=1`.
//! The sample shop's run in a browser is `crates/cli/tests/console_shop.rs`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use fantoccini::Locator;
use gantry_testkit::browser::{Browser, Shots};

const PIPELINE: &str = r##"
version: 1
name: web
stages:
  - name: Source
    actions:
      - {name: checkout, type: source, repository: ., outputs: [Src], namespace: Source}
  - name: Build
    actions:
      - name: build
        type: shell
        commands:
          - sleep 3
          - printf '\033[32mbuilt\033[0m <b>not bold</b>\n'
      - {name: test, type: shell, run_order: 2, commands: ["echo tests pass"]}
  - name: Approve
    actions:
      - {name: release, type: approval}
  - name: Deploy
    actions:
      - {name: ship, type: shell, commands: ["echo shipped"]}
"##;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_watch_an_execution_reach_its_approval_live_approve_and_release() {
    if !gantry_testkit::gate("GANTRY_TEST_BROWSER", "the console's browser test") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    std::fs::create_dir_all(&repo).unwrap();
    let git = |args: &[&str]| gantry_testkit::git_as(&repo, ("Carol", "carol@example.com"), args);
    git(&["init", "-q", "-b", "main"]);
    std::fs::write(repo.join("gantry.yaml"), PIPELINE).unwrap();
    git(&["add", "-A"]);
    git(&["commit", "-q", "-m", "Add the web pipeline"]);
    let listen = "127.0.0.1:0".parse().unwrap();
    let server = gantry_server::RunningServer::start(&dir.path().join("data"), listen, listen)
        .await
        .unwrap();
    let plane = server.plane.clone();
    let now = gantry_clock::now_ms();
    plane
        .auth()
        .add_user(
            "ann",
            None,
            vec!["operator".parse().unwrap(), "approver".parse().unwrap()],
            now,
        )
        .await
        .unwrap();
    let token = plane
        .auth()
        .create_token("ann", None, None, now)
        .await
        .unwrap();
    let mut shots =
        Shots::new(PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("console-screenshots"));
    let b = Browser::start(dir.path()).await;
    let c = &b.client;
    let base = server.api.trim_end_matches('/').to_string();

    // Not signed in: the sign-in page, then the pipelines page.
    c.goto(&format!("{base}/")).await.unwrap();
    let field = b.wait_css("#token").await;
    shots.take(c, "signin").await;
    field.send_keys(token.secret.expose()).await.unwrap();
    c.find(Locator::Css("form[action='/signin'] button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    b.wait_css("nav[aria-label='Main']").await;
    let text = c.source().await.unwrap();
    assert!(text.contains("Signed in as"), "{text}");
    shots.take(c, "pipelines-empty").await;

    // An execution starts (as a trigger would) while the page is open.
    let id = plane
        .start_execution(
            repo.join("gantry.yaml"),
            PIPELINE.to_string(),
            BTreeMap::new(),
            BTreeMap::new(),
            Some("carol".into()),
        )
        .await
        .unwrap();
    b.wait_css(&format!("a[href='/executions/{id}']")).await;
    shots.take(c, "pipelines-live").await;
    b.click_css(&format!("a[href='/executions/{id}']")).await;
    b.wait_css("#execution-status").await;
    // A mark that a reload would erase.
    b.mark().await;
    shots.take(c, "execution-running").await;
    b.wait_css("#review-release").await;
    assert!(
        b.still_marked().await,
        "the approval appeared without a reload"
    );
    shots.take(c, "execution-waiting").await;

    // The dialog shows what is approved; approve with a comment.
    b.click_css("#review-release").await;
    let comment = b.wait_css("#comment").await;
    let text = c.source().await.unwrap();
    assert!(
        text.contains("Add the web pipeline"),
        "the commit message is shown"
    );
    shots.take(c, "approval-dialog").await;
    comment.send_keys("Looks good <b>to me</b>").await.unwrap();
    c.find(Locator::Id("approve"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    b.wait_css("#execution-status").await;
    b.mark().await;
    b.wait_css("#execution-status.ok").await;
    assert!(b.still_marked().await, "success appeared without a reload");
    let text = c.source().await.unwrap();
    assert!(text.contains("Approved by ann"), "{text}");
    assert!(
        text.contains("Looks good &lt;b&gt;to me&lt;/b&gt;"),
        "the comment is escaped"
    );
    shots.take(c, "execution-succeeded").await;

    // Logs of the build: colours as spans, HTML as text.
    b.click_css("article[data-action='Build/build'] .links a")
        .await;
    b.wait_css("pre.log .fg2").await;
    shots.take(c, "logs").await;
    c.back().await.unwrap();

    // Release change starts a new execution of the same definition.
    b.click_css("#release").await;
    let url = b
        .wait_url(|at| at.starts_with("/executions/") && !at.ends_with(id.as_str()))
        .await;
    b.wait_css("#execution-status").await;
    shots.take(c, "released").await;
    // Its build's log streams: opened while the build sleeps, the line it
    // prints afterwards appears without a reload.
    c.goto(&format!("{url}/logs?stage=Build&action=build"))
        .await
        .unwrap();
    b.wait_css("pre.log").await;
    b.mark().await;
    b.wait_css("pre.log .fg2").await;
    assert!(b.still_marked().await, "the log grew without a reload");
    shots.take(c, "logs-streamed").await;

    // The other pages, through the main navigation and the history's form.
    b.click_css("nav[aria-label='Main'] a[href='/history']")
        .await;
    b.wait_css("form.filters select[name='status']").await;
    b.click_css("select[name='status'] option[value='Succeeded']")
        .await;
    b.click_css("form.filters button").await;
    // The unfiltered page lists the execution too: wait for the form's
    // navigation itself.
    b.wait_url(|at| at.contains("status=Succeeded")).await;
    b.wait_css(&format!("a[href='/executions/{id}']")).await;
    shots.take(c, "history").await;
    for (path, name) in [
        ("/environments", "environments"),
        ("/parameters", "parameters"),
        ("/images", "images"),
        ("/triggers", "triggers"),
        ("/agents", "agents"),
        ("/audit", "audit-not-admin"),
    ] {
        c.goto(&format!("{base}{path}")).await.unwrap();
        b.wait_css("main h1").await;
        shots.take(c, name).await;
    }
    let text = c.source().await.unwrap();
    assert!(
        text.contains("Not allowed"),
        "the audit log is the admins': {text}"
    );

    // Narrow screens stack the stages.
    c.set_window_size(360, 800).await.unwrap();
    shots.take(c, "narrow").await;
    c.goto(&format!("{base}/executions/no-such")).await.unwrap();
    b.wait_css("a[href='/']").await;
    shots.take(c, "not-found").await;
    b.client.clone().close().await.unwrap();
    server.shutdown().await;
}
