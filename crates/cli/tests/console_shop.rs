//! The web console on the sample shop, in a real browser: `gantry demo`
//! (without `--auto-approve`) prints a one-time sign-in link; headless
//! Chromium opens it, follows the shop's pipeline from the pipelines page
//! to its execution, watches it reach the approval live (no reload),
//! opens the approval dialog (commit, image digests, parameter versions,
//! the E2E result), approves there, sees the execution succeed, then reads
//! the staging and production environment pages: production runs the
//! digests staging tested. Finally "Release change" starts the shop's
//! pipeline again from the browser. Every page is saved as a PNG under the
//! test's target dir (`console-shop-screenshots/`).
//!
//! Heavy (it builds and runs the whole shop, and drives Chromium): needs
//! GANTRY_TEST_DEMO=1 and GANTRY_TEST_BROWSER=1.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use gantry_testkit::browser::{Browser, Shots};
use serde_json::Value;

fn gantry(data: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_gantry"))
        .arg("--data-dir")
        .arg(data)
        .args(args)
        .output()
        .unwrap()
}

/// The demo process; stopped with its services when dropped.
struct Demo {
    child: std::process::Child,
    data: PathBuf,
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = gantry(&self.data, &["shutdown", "--stop-services"]);
        let _ =
            gantry_clock::blocking_poll(Duration::from_secs(10), Duration::from_millis(50), || {
                self.child.try_wait().ok().flatten()
            });
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Each service's digest as `gantry env status --json` gives it.
fn digests(data: &Path, env: &str) -> BTreeMap<String, String> {
    let out = gantry(data, &["env", "status", env, "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let status: Value = serde_json::from_slice(&out.stdout).unwrap();
    status["services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["name"].as_str().unwrap().to_string(),
                s["digest"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

/// Each service's digest as an environment page shows it: the `Digest`
/// fact under the service's heading.
fn page_digests(html: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for section in html.split("<section class=\"card\"").skip(1) {
        let name = section
            .split_once("\">")
            .and_then(|(_, rest)| rest.split_once("</h2>"))
            .map(|(name, _)| name.rsplit('>').next().unwrap_or(name).to_string());
        let digest = section
            .split_once("<dt>Digest</dt><dd class=\"mono small\">")
            .and_then(|(_, rest)| rest.split_once("</dd>"))
            .map(|(d, _)| d.to_string());
        if let (Some(name), Some(digest)) = (name, digest) {
            out.insert(name, digest);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approve_the_shop_in_the_console_and_production_runs_what_staging_tested() {
    if !gantry_testkit::gate("GANTRY_TEST_DEMO", "the console's shop test")
        || !gantry_testkit::gate("GANTRY_TEST_BROWSER", "the console's shop test")
    {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("demo");
    let mut child = Command::new(env!("CARGO_BIN_EXE_gantry"))
        .arg("--data-dir")
        .arg(&data)
        .args(["demo", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (lines, said) = mpsc::channel::<String>();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            eprintln!("demo: {line}");
            let _ = lines.send(line);
        }
    });
    let stdout = child.stdout.take().unwrap();
    let (done, finished) = mpsc::channel::<Value>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Ok(v) = serde_json::from_str::<Value>(&line) {
                let _ = done.send(v);
            }
        }
    });
    let _demo = Demo {
        child,
        data: data.clone(),
    };
    let link = loop {
        let line = said
            .recv_timeout(Duration::from_secs(120))
            .expect("the demo prints its console link");
        if let Some(rest) = line.strip_prefix("Console: ") {
            break rest.split_whitespace().next().unwrap().to_string();
        }
    };
    let base = link.split("/signin").next().unwrap().to_string();

    let b = Browser::start(dir.path()).await;
    let c = &b.client;
    let mut shots =
        Shots::new(PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("console-shop-screenshots"));
    // The one-time link signs in and lands on the pipelines page, where
    // the shop's execution shows up live once the demo starts it.
    c.goto(&link).await.unwrap();
    b.wait_css("nav[aria-label='Main']").await;
    let execution = b
        .wait_css_for("a[href^='/executions/']", Duration::from_secs(120))
        .await;
    shots.take(c, "shop-pipelines").await;
    let href = execution.attr("href").await.unwrap().unwrap();
    let id = href.trim_start_matches("/executions/").to_string();
    c.goto(&format!("{base}{href}")).await.unwrap();
    b.wait_css("#execution-status").await;
    b.mark().await;
    shots.take(c, "shop-running").await;
    // Building, deploying to staging and the E2E tests take minutes.
    b.wait_css_for("#review-release", Duration::from_secs(900))
        .await;
    assert!(
        b.still_marked().await,
        "the approval appeared without a reload"
    );
    shots.take(c, "shop-waiting").await;

    // The dialog shows what is approved: the commit, the digests staging
    // runs, the parameter versions and the E2E result.
    let staging = digests(&data, "staging");
    b.click_css("#review-release").await;
    let comment = b.wait_css("#comment").await;
    let dialog = c.source().await.unwrap();
    assert!(
        dialog.contains("The shop: catalog, orders, bff"),
        "the commit message: {dialog}"
    );
    for (service, digest) in &staging {
        assert!(
            dialog.contains(digest.as_str()),
            "{service}'s digest {digest} in the dialog"
        );
    }
    assert!(
        dialog.contains("/shop/staging/SERVICE_DNS"),
        "a parameter version"
    );
    assert!(
        dialog.contains("E2E/browser-tests") && dialog.contains("0 failed"),
        "the E2E result: {dialog}"
    );
    shots.take(c, "shop-approval-dialog").await;
    comment.send_keys("Tested in staging").await.unwrap();
    b.click_css("#approve").await;
    b.wait_css("#execution-status").await;
    b.mark().await;
    b.wait_css_for("#execution-status.ok", Duration::from_secs(600))
        .await;
    assert!(b.still_marked().await, "success appeared without a reload");
    shots.take(c, "shop-succeeded").await;
    let execution = finished
        .recv_timeout(Duration::from_secs(60))
        .expect("the demo prints the finished execution");
    assert_eq!(execution["id"], id.as_str());
    assert_eq!(execution["status"], "Succeeded", "{execution:#}");

    // Production runs exactly what staging tested, as the pages show it.
    let mut shown = BTreeMap::new();
    for env in ["staging", "production"] {
        c.goto(&format!("{base}/environments/{env}")).await.unwrap();
        b.wait_css("main h1").await;
        shots.take(c, &format!("shop-{env}")).await;
        let page = page_digests(&c.source().await.unwrap());
        assert_eq!(page.len(), 3, "catalog, orders and bff in {env}: {page:?}");
        shown.insert(env, page);
    }
    assert_eq!(shown["staging"], shown["production"]);
    assert_eq!(shown["production"], digests(&data, "production"));
    assert_eq!(shown["staging"], staging);
    let production = c.source().await.unwrap();
    assert!(
        production.contains(&format!("href=\"/executions/{id}\"")),
        "production names the execution that made it"
    );

    // Release change starts the shop's pipeline again, from the browser.
    c.goto(&format!("{base}{href}")).await.unwrap();
    b.click_css("#release").await;
    b.wait_url(|at| at.starts_with("/executions/") && !at.ends_with(id.as_str()))
        .await;
    b.wait_css("#execution-status").await;
    shots.take(c, "shop-released").await;
    c.clone().close().await.unwrap();
}
