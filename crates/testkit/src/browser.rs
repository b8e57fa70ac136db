//! Headless Chromium through Debian's chromedriver, for the console's
//! browser tests: a WebDriver session (fantoccini, as the shop's E2E
//! drives it), waits and clicks that survive live pages swapping their
//! fragments, and numbered PNG screenshots kept as test artifacts.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::elements::Element;
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;

/// chromedriver, stopped when dropped.
struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// chromedriver and one browser session in it; the driver is stopped when
/// this is dropped.
pub struct Browser {
    pub client: Client,
    _driver: Driver,
}

impl Browser {
    /// Starts chromedriver on a free port (its output in `dir/chromedriver.log`)
    /// and a headless Chromium session with a fresh profile under `dir`.
    pub async fn start(dir: &Path) -> Browser {
        let port = crate::free_port();
        let log = std::fs::File::create(dir.join("chromedriver.log")).unwrap();
        let driver = Driver(
            Command::new("/usr/bin/chromedriver")
                .arg(format!("--port={port}"))
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .expect("chromedriver at /usr/bin/chromedriver (apt-get install chromium-driver)"),
        );
        gantry_clock::blocking_poll(Duration::from_secs(20), Duration::from_millis(100), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).ok()
        })
        .unwrap_or_else(|| panic!("chromedriver did not answer on port {port}"));
        let caps = serde_json::json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--no-first-run", "--disable-background-networking",
                         "--disable-component-update", "--disable-sync", "--window-size=1280,900",
                         format!("--user-data-dir={}", dir.join("profile").display())],
            },
        });
        let serde_json::Value::Object(caps) = caps else {
            unreachable!("a JSON object")
        };
        let client = ClientBuilder::new(HttpConnector::new())
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
            .unwrap_or_else(|e| panic!("no browser session: {e}"));
        Browser {
            client,
            _driver: driver,
        }
    }

    /// The element `css` selects, once there is one (30 s at most).
    pub async fn wait_css(&self, css: &str) -> Element {
        self.client
            .wait()
            .at_most(Duration::from_secs(30))
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no {css} within 30 s: {e}"))
    }

    /// Like [`Browser::wait_css`], waiting up to `at_most`.
    pub async fn wait_css_for(&self, css: &str, at_most: Duration) -> Element {
        self.client
            .wait()
            .at_most(at_most)
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no {css} within {at_most:?}: {e}"))
    }

    /// Clicks the element `css` selects. A live page swaps its fragment in
    /// again on every change (and once its event stream opens), so an
    /// element found a moment ago may be gone: find it again until a click
    /// lands.
    pub async fn click_css(&self, css: &str) {
        for _ in 0..50 {
            if self.wait_css(css).await.click().await.is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("{css} could not be clicked");
    }

    /// The page's URL once `done` holds for it (30 s at most): a click
    /// that navigates returns before the browser has left the old page,
    /// whose elements may match what the next page is waited for by.
    /// `done` gets the URL's path and query (`/history?status=Succeeded`).
    pub async fn wait_url(&self, done: impl Fn(&str) -> bool) -> String {
        let read = || async {
            let url = self.client.current_url().await.unwrap();
            let mut at = url.path().to_owned();
            if let Some(query) = url.query() {
                at.push('?');
                at.push_str(query);
            }
            (url.to_string(), at)
        };
        let (mut url, mut at) = read().await;
        for _ in 0..300 {
            if done(&at) {
                return url;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            (url, at) = read().await;
        }
        panic!("the page stayed at {url}");
    }

    /// Whether a mark set by [`Browser::mark`] is still there: the page was
    /// not reloaded since.
    pub async fn still_marked(&self) -> bool {
        self.client
            .execute("return window.__gantryMark === true;", vec![])
            .await
            .unwrap()
            == serde_json::Value::Bool(true)
    }

    /// Sets a mark on the page that a reload would erase.
    pub async fn mark(&self) {
        self.client
            .execute("window.__gantryMark = true; return true;", vec![])
            .await
            .unwrap();
    }
}

/// Numbered screenshots in a directory (emptied first), kept after the test.
pub struct Shots {
    pub dir: PathBuf,
    n: usize,
}

impl Shots {
    pub fn new(dir: PathBuf) -> Shots {
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Shots { dir, n: 0 }
    }

    pub async fn take(&mut self, c: &Client, name: &str) {
        self.n += 1;
        let png = c.screenshot().await.expect("a screenshot");
        let path = self.dir.join(format!("{:02}-{name}.png", self.n));
        std::fs::write(&path, png).unwrap();
        println!("screenshot: {}", path.display());
    }
}
