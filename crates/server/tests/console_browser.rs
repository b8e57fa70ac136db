//! The web console in a real browser: headless Chromium driven through
//! chromedriver (WebDriver, with fantoccini as the shop's E2E uses it).
//! Signs in with a pasted token, watches an execution reach its approval
//! live (no reload), approves in the dialog, sees it succeed, releases a
//! change, visits the history (filtered through its form), environments,
//! parameters, triggers and audit pages, and saves a PNG screenshot of
//! every page visited under the test's target dir. Gated on `GANTRY_TEST_BROWSER=1`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::json;

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

/// chromedriver, stopped when dropped.
struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct Shots {
    dir: PathBuf,
    n: usize,
}

impl Shots {
    async fn take(&mut self, c: &Client, name: &str) {
        self.n += 1;
        let png = c.screenshot().await.expect("a screenshot");
        let path = self.dir.join(format!("{:02}-{name}.png", self.n));
        std::fs::write(&path, png).unwrap();
        println!("screenshot: {}", path.display());
    }
}

async fn wait_css(c: &Client, css: &str) -> fantoccini::elements::Element {
    c.wait()
        .at_most(Duration::from_secs(30))
        .for_element(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("no {css} within 30 s: {e}"))
}

/// Clicks the element `css` selects. A live page swaps its fragment in
/// again on every change (and once its event stream opens), so an element
/// found a moment ago may be gone: find it again until a click lands.
async fn click_css(c: &Client, css: &str) {
    for _ in 0..50 {
        if wait_css(c, css).await.click().await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{css} could not be clicked");
}

fn start_driver(port: u16, log: &Path) -> Driver {
    let log = std::fs::File::create(log).unwrap();
    let child = Command::new("/usr/bin/chromedriver")
        .arg(format!("--port={port}"))
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("chromedriver at /usr/bin/chromedriver");
    let driver = Driver(child);
    gantry_clock::blocking_poll(Duration::from_secs(20), Duration::from_millis(100), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).ok()
    })
    .expect("chromedriver answers");
    driver
}

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
    let shots_dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("console-screenshots");
    let _ = std::fs::remove_dir_all(&shots_dir);
    std::fs::create_dir_all(&shots_dir).unwrap();
    let mut shots = Shots {
        dir: shots_dir,
        n: 0,
    };

    let port = gantry_testkit::free_port();
    let _driver = start_driver(port, &dir.path().join("chromedriver.log"));
    let caps = json!({
        "browserName": "chrome",
        "goog:chromeOptions": {
            "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--no-first-run", "--window-size=1280,900",
                     format!("--user-data-dir={}", dir.path().join("profile").display())],
        },
    });
    let serde_json::Value::Object(caps) = caps else {
        unreachable!()
    };
    let c = ClientBuilder::new(HttpConnector::new())
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{port}"))
        .await
        .expect("a browser session");
    let base = server.api.trim_end_matches('/').to_string();

    // Not signed in: the sign-in page, then the pipelines page.
    c.goto(&format!("{base}/")).await.unwrap();
    let field = wait_css(&c, "#token").await;
    shots.take(&c, "signin").await;
    field.send_keys(token.secret.expose()).await.unwrap();
    c.find(Locator::Css("form[action='/signin'] button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_css(&c, "nav[aria-label='Main']").await;
    let text = c.source().await.unwrap();
    assert!(text.contains("Signed in as"), "{text}");
    shots.take(&c, "pipelines-empty").await;

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
    wait_css(&c, &format!("a[href='/executions/{id}']")).await;
    shots.take(&c, "pipelines-live").await;
    click_css(&c, &format!("a[href='/executions/{id}']")).await;
    wait_css(&c, "#execution-status").await;
    // A mark that a reload would erase.
    c.execute("window.__stillHere = true; return true;", vec![])
        .await
        .unwrap();
    shots.take(&c, "execution-running").await;
    wait_css(&c, "#review-release").await;
    let still: serde_json::Value = c
        .execute("return window.__stillHere === true;", vec![])
        .await
        .unwrap();
    assert_eq!(still, json!(true), "the approval appeared without a reload");
    shots.take(&c, "execution-waiting").await;

    // The dialog shows what is approved; approve with a comment.
    click_css(&c, "#review-release").await;
    let comment = wait_css(&c, "#comment").await;
    let text = c.source().await.unwrap();
    assert!(
        text.contains("Add the web pipeline"),
        "the commit message is shown"
    );
    shots.take(&c, "approval-dialog").await;
    comment.send_keys("Looks good <b>to me</b>").await.unwrap();
    c.find(Locator::Id("approve"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_css(&c, "#execution-status").await;
    c.execute("window.__stillHere = true; return true;", vec![])
        .await
        .unwrap();
    wait_css(&c, "#execution-status.ok").await;
    let still: serde_json::Value = c
        .execute("return window.__stillHere === true;", vec![])
        .await
        .unwrap();
    assert_eq!(still, json!(true), "success appeared without a reload");
    let text = c.source().await.unwrap();
    assert!(text.contains("Approved by ann"), "{text}");
    assert!(
        text.contains("Looks good &lt;b&gt;to me&lt;/b&gt;"),
        "the comment is escaped"
    );
    shots.take(&c, "execution-succeeded").await;

    // Logs of the build: colours as spans, HTML as text.
    click_css(&c, "article[data-action='Build/build'] .links a").await;
    wait_css(&c, "pre.log .fg2").await;
    shots.take(&c, "logs").await;
    c.back().await.unwrap();

    // Release change starts a new execution of the same definition.
    click_css(&c, "#release").await;
    wait_css(&c, "#execution-status").await;
    let url = c.current_url().await.unwrap();
    assert!(!url.path().ends_with(&id), "a new execution: {url}");
    shots.take(&c, "released").await;

    // The other pages, through the main navigation and the history's form.
    click_css(&c, "nav[aria-label='Main'] a[href='/history']").await;
    wait_css(&c, "form.filters select[name='status']").await;
    click_css(&c, "select[name='status'] option[value='Succeeded']").await;
    click_css(&c, "form.filters button").await;
    wait_css(&c, &format!("a[href='/executions/{id}']")).await;
    let url = c.current_url().await.unwrap();
    assert!(url.as_str().contains("status=Succeeded"), "{url}");
    shots.take(&c, "history").await;
    for (path, name) in [
        ("/environments", "environments"),
        ("/parameters", "parameters"),
        ("/triggers", "triggers"),
        ("/audit", "audit-not-admin"),
    ] {
        c.goto(&format!("{base}{path}")).await.unwrap();
        wait_css(&c, "main h1").await;
        shots.take(&c, name).await;
    }
    let text = c.source().await.unwrap();
    assert!(
        text.contains("Not allowed"),
        "the audit log is the admins': {text}"
    );

    // Narrow screens stack the stages.
    c.set_window_size(360, 800).await.unwrap();
    shots.take(&c, "narrow").await;
    c.goto(&format!("{base}/executions/no-such")).await.unwrap();
    wait_css(&c, "a[href='/']").await;
    shots.take(&c, "not-found").await;
    c.close().await.unwrap();
    server.shutdown().await;
}
