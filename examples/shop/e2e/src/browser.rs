//! The scenario in a real browser: headless Chromium driven through
//! chromedriver (WebDriver), clicking through the BFF like a user.

use std::fs::File;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::elements::Element;
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::json;
use shop_http::client::{self as http, Endpoint};

use crate::report::{Report, StepError, ensure};
use crate::{
    Options, STEP_CONFIRMATION_ENV, STEP_CONFIRMATION_ID, STEP_FOOTER, STEP_HOME, STEP_LIST, STEP_ORDER, STEP_PRODUCT,
};
use crate::{check_environment, check_order_id, check_product_links};

/// The extra test case of this mode.
pub(crate) const STEP_SESSION: &str = "browser session starts (chromedriver + headless Chromium)";
/// What to install when the browser is missing.
pub(crate) const INSTALL_HINT: &str = "install them with: apt-get install chromium chromium-driver";

/// Where Debian and others put the browser.
const BROWSERS: [&str; 3] = [
    "/usr/bin/chromium",
    "/usr/bin/chromium-browser",
    "/usr/bin/google-chrome",
];

/// How long one step may take.
const STEP_TIMEOUT: Duration = Duration::from_secs(60);
/// How long to wait for an element to appear after a navigation.
const ELEMENT_WAIT: Duration = Duration::from_secs(15);
/// How long a chromedriver we started may take to answer.
const DRIVER_START: Duration = Duration::from_secs(20);

/// The Chromium flags. The background-networking ones matter on machines
/// with no outside network: without them Chromium's own update and sync
/// connections fail and can stall or refuse the session.
const CHROMIUM_ARGS: [&str; 9] = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--window-size=1280,1000",
];

/// A chromedriver process we started; stopped when dropped.
struct Chromedriver {
    child: Option<Child>,
    endpoint: Option<Endpoint>,
}

impl Drop for Chromedriver {
    fn drop(&mut self) {
        let Some(child) = self.child.as_mut() else {
            return;
        };
        // chromedriver's /shutdown also quits any browser it still runs,
        // which a plain kill would leave behind; kill only as a fallback.
        if let Some(endpoint) = &self.endpoint {
            let _ = http::get(endpoint, "/shutdown", Duration::from_secs(2));
            let deadline = Instant::now() + Duration::from_secs(3);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// A fresh Chromium profile directory, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Result<TempDir, String> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let dir = std::env::temp_dir().join(format!("shop-e2e-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        Ok(TempDir(dir))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The program named by `$env_var` when that is set (and only it: an
/// explicit choice is not second-guessed), else the first existing file
/// among `candidates`, then `name` on `PATH`.
fn find_program(env_var: &str, candidates: &[&str], name: &str) -> Option<PathBuf> {
    if let Some(p) = std::env::var_os(env_var).filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(p)).filter(|p| p.is_file());
    }
    if let Some(p) = candidates.iter().map(PathBuf::from).find(|p| p.is_file()) {
        return Some(p);
    }
    std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).map(|d| d.join(name)).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .find(|p| p.is_file())
}

fn driver_answers(endpoint: &Endpoint) -> bool {
    http::get(endpoint, "/status", Duration::from_secs(2)).is_ok_and(|r| r.status == 200)
}

/// Uses the WebDriver at `url`, or starts chromedriver there when nothing
/// answers and the address is on this machine.
fn ensure_driver(url: &str, scratch: &Path, browser: Option<&Path>) -> Result<Chromedriver, String> {
    let endpoint = Endpoint::parse(url).map_err(|e| format!("--webdriver: {e}"))?;
    if driver_answers(&endpoint) {
        println!("shop-e2e: using the WebDriver already answering at {url}");
        return Ok(Chromedriver {
            child: None,
            endpoint: None,
        });
    }
    if !endpoint.addr.ip().is_loopback() {
        return Err(format!(
            "no WebDriver answers at {url}, and it is not on this machine to start one"
        ));
    }
    if browser.is_none() {
        return Err(format!("Chromium is not installed; {INSTALL_HINT}"));
    }
    let program = find_program(
        "CHROMEDRIVER",
        &["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"],
        "chromedriver",
    )
    .ok_or_else(|| format!("chromedriver is not installed (nothing answers at {url}); {INSTALL_HINT}"))?;
    let log_path = scratch.join("chromedriver.log");
    let log = File::create(&log_path).map_err(|e| format!("cannot create {}: {e}", log_path.display()))?;
    let log_err = log.try_clone().map_err(|e| e.to_string())?;
    let child = Command::new(&program)
        .arg(format!("--port={}", endpoint.addr.port()))
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err)
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", program.display()))?;
    let mut driver = Chromedriver {
        child: Some(child),
        endpoint: Some(endpoint.clone()),
    };
    println!(
        "shop-e2e: started {} --port={}",
        program.display(),
        endpoint.addr.port()
    );
    let started = Instant::now();
    loop {
        if driver_answers(&endpoint) {
            return Ok(driver);
        }
        if let Some(Ok(Some(status))) = driver.child.as_mut().map(Child::try_wait) {
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            return Err(format!(
                "chromedriver exited ({status}) before answering: {}",
                log.trim()
            ));
        }
        if started.elapsed() > DRIVER_START {
            return Err(format!("chromedriver did not answer at {url} within {DRIVER_START:?}"));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Where failure screenshots go, if anywhere.
struct Evidence {
    dir: Option<PathBuf>,
}

impl Evidence {
    /// Adds the page's URL, title and text, and a screenshot file, to a
    /// failure: what someone reading the report needs to see what happened.
    async fn add(&self, client: &Client, step: &str, e: StepError) -> StepError {
        let mut details = e.details.clone();
        if let Ok(url) = client.current_url().await {
            details.push_str(&format!("\nurl: {url}"));
        }
        if let Ok(title) = client.title().await {
            details.push_str(&format!("\ntitle: {title:?}"));
        }
        if let Ok(body) = client.find(Locator::Css("body")).await
            && let Ok(text) = body.text().await
        {
            let text: String = text
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
                .chars()
                .take(400)
                .collect();
            details.push_str(&format!("\npage text: {text:?}"));
        }
        if let Some(dir) = &self.dir
            && let Ok(png) = client.screenshot().await
        {
            let slug: String = step
                .chars()
                .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
                .collect();
            let path = dir.join(format!("e2e-{}.png", slug.trim_matches('-')));
            if std::fs::create_dir_all(dir)
                .and_then(|()| std::fs::write(&path, png))
                .is_ok()
            {
                details.push_str(&format!("\nscreenshot: {}", path.display()));
            }
        }
        StepError {
            message: e.message,
            details: details.trim_start().to_string(),
        }
    }
}

/// Runs one step with a timeout, adding evidence to a failure.
async fn step<F>(report: &mut Report, evidence: &Evidence, client: &Client, name: &str, critical: bool, fut: F)
where
    F: Future<Output = Result<(), StepError>>,
{
    if report.blocked().is_some() {
        report.skip(name);
        return;
    }
    let started = Instant::now();
    let result = match tokio::time::timeout(STEP_TIMEOUT, fut).await {
        Ok(result) => result,
        Err(_) => Err(StepError::new(format!("the step took over {STEP_TIMEOUT:?}"))),
    };
    let result = match result {
        Err(e) => Err(evidence.add(client, name, e).await),
        ok => ok,
    };
    report.record(name, critical, started.elapsed(), result);
}

fn wd(context: &str) -> impl Fn(fantoccini::error::CmdError) -> StepError + '_ {
    move |e| StepError::new(format!("{context}: {e}"))
}

async fn wait_for(client: &Client, css: &str) -> Result<Element, StepError> {
    client
        .wait()
        .at_most(ELEMENT_WAIT)
        .for_element(Locator::Css(css))
        .await
        .map_err(|e| {
            StepError::new(format!(
                "no element matching {css:?} appeared within {ELEMENT_WAIT:?}: {e}"
            ))
        })
}

async fn text_of(client: &Client, id: &str) -> Option<String> {
    let el = client.find(Locator::Id(id)).await.ok()?;
    el.text().await.ok().map(|t| t.trim().to_string())
}

/// Runs the scenario in a browser.
pub(crate) fn run(opts: &Options, report: &mut Report, evidence_dir: Option<PathBuf>) {
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            report.record(
                STEP_SESSION,
                true,
                Duration::ZERO,
                Err(StepError::new(format!("tokio runtime: {e}"))),
            );
            return;
        }
    };
    let started = Instant::now();
    let browser = find_program("CHROME_BIN", &BROWSERS, "chromium");
    let setup = (|| {
        let profile = TempDir::new()?;
        let driver = ensure_driver(&opts.webdriver, &profile.0, browser.as_deref())?;
        Ok::<_, String>((profile, driver))
    })();
    let (profile, _driver) = match setup {
        Ok(v) => v,
        Err(e) => {
            eprintln!("shop-e2e: {e}");
            report.record(STEP_SESSION, true, started.elapsed(), Err(StepError::new(e)));
            return;
        }
    };
    runtime.block_on(async {
        let client = match connect(opts, &profile.0, browser.as_deref()).await {
            Ok(client) => client,
            Err(e) => {
                eprintln!("shop-e2e: {e}");
                report.record(STEP_SESSION, true, started.elapsed(), Err(StepError::new(e)));
                return;
            }
        };
        report.record(STEP_SESSION, true, started.elapsed(), Ok(()));
        scenario(opts, report, &Evidence { dir: evidence_dir }, &client).await;
        if let Err(e) = client.close().await {
            eprintln!("shop-e2e: closing the browser session: {e}");
        }
    });
    // `_driver` (chromedriver) and `profile` are cleaned up here, in that order.
}

async fn connect(opts: &Options, profile: &Path, browser: Option<&Path>) -> Result<Client, String> {
    let mut chrome = json!({
        "args": CHROMIUM_ARGS.iter().map(|a| a.to_string())
            .chain([format!("--user-data-dir={}", profile.join("profile").display())])
            .collect::<Vec<_>>(),
    });
    // Without a local binary (a WebDriver that was already running, maybe
    // elsewhere), chromedriver looks for the browser itself.
    if let Some(b) = browser {
        chrome["binary"] = json!(b.display().to_string());
    }
    let mut caps = serde_json::Map::new();
    caps.insert("browserName".into(), json!("chrome"));
    caps.insert("goog:chromeOptions".into(), chrome);
    caps.insert("pageLoadStrategy".into(), json!("normal"));
    caps.insert(
        "timeouts".into(),
        json!({"pageLoad": 30_000, "script": 10_000, "implicit": 0}),
    );
    ClientBuilder::new(HttpConnector::new())
        .capabilities(caps)
        .connect(&opts.webdriver)
        .await
        .map_err(|e| format!("cannot start a browser session through {}: {e}", opts.webdriver))
}

async fn scenario(opts: &Options, report: &mut Report, ev: &Evidence, c: &Client) {
    let base = opts.url.trim_end_matches('/').to_string();

    step(report, ev, c, STEP_HOME, true, async {
        c.goto(&format!("{base}/")).await.map_err(wd("open the home page"))?;
        wait_for(c, "#product-list").await?;
        let title = c.title().await.map_err(wd("title"))?;
        ensure(title.starts_with("Products"), || {
            format!("the home page's title is {title:?}")
        })
    })
    .await;

    let mut links: Vec<(String, String, String)> = Vec::new();
    step(report, ev, c, STEP_LIST, false, async {
        let list = c.find(Locator::Id("product-list")).await.map_err(wd("#product-list"))?;
        let anchors = list
            .find_all(Locator::Css("a[id^='product-']"))
            .await
            .map_err(wd("product links"))?;
        for a in anchors {
            let id = a.attr("id").await.map_err(wd("link id"))?.unwrap_or_default();
            let text = a.text().await.map_err(wd("link text"))?;
            let href = a.attr("href").await.map_err(wd("link href"))?.unwrap_or_default();
            links.push((id, text.trim().to_string(), href));
        }
        check_product_links(&links)
    })
    .await;

    step(report, ev, c, STEP_FOOTER, false, async {
        let bff_env = text_of(c, "environment").await;
        let catalog_env = text_of(c, "catalog-environment").await;
        let dns = text_of(c, "service-dns").await;
        check_environment(
            opts,
            "catalog",
            bff_env.as_deref(),
            catalog_env.as_deref(),
            dns.as_deref(),
        )
    })
    .await;

    step(report, ev, c, STEP_PRODUCT, true, async {
        let (id, name, _) = links.first().ok_or("the home page has no product link to follow")?;
        let link = c.find(Locator::Id(id)).await.map_err(wd("the first product link"))?;
        link.click().await.map_err(wd("click the product link"))?;
        let heading = wait_for(c, "#product-name").await?;
        let shown = heading.text().await.map_err(wd("#product-name"))?;
        ensure(shown.trim() == name, || {
            format!("#product-name is {shown:?}, the link said {name:?}")
        })?;
        wait_for(c, "#place-order").await?;
        Ok(())
    })
    .await;

    step(report, ev, c, STEP_ORDER, true, async {
        let quantity = c.find(Locator::Id("quantity")).await.map_err(wd("#quantity"))?;
        quantity.clear().await.map_err(wd("clear #quantity"))?;
        quantity.send_keys("2").await.map_err(wd("type into #quantity"))?;
        let value = quantity
            .prop("value")
            .await
            .map_err(wd("#quantity value"))?
            .unwrap_or_default();
        ensure(value == "2", || format!("#quantity holds {value:?} after typing 2"))?;
        let button = c.find(Locator::Id("place-order")).await.map_err(wd("#place-order"))?;
        button.click().await.map_err(wd("click #place-order"))?;
        // The confirmation, or the BFF's error page.
        let shown = wait_for(c, "#order-id, #error").await?;
        if shown.attr("id").await.map_err(wd("id"))?.as_deref() == Some("error") {
            let why = shown.text().await.unwrap_or_default();
            return Err(StepError::new(format!("the BFF showed an error page: {why}")));
        }
        Ok(())
    })
    .await;

    step(report, ev, c, STEP_CONFIRMATION_ID, false, async {
        let id = text_of(c, "order-id").await;
        let quantity = text_of(c, "order-quantity").await;
        check_order_id(id.as_deref(), quantity.as_deref())
    })
    .await;

    step(report, ev, c, STEP_CONFIRMATION_ENV, false, async {
        let bff_env = text_of(c, "environment").await;
        let orders_env = text_of(c, "order-environment").await;
        let dns = text_of(c, "service-dns").await;
        check_environment(
            opts,
            "orders",
            bff_env.as_deref(),
            orders_env.as_deref(),
            dns.as_deref(),
        )
    })
    .await;
}
