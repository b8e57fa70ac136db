//! shop-e2e: the shop's end-to-end test, through the BFF, as a user would.
//!
//! Opens the home page, checks that it lists the catalog's five products and
//! says which environment's catalog answered, opens a product, orders two,
//! and checks that the confirmation shows an order id from the orders
//! service and the environment it runs in. Each step is a test case in the
//! console output and the JUnit report.
//!
//! By default it drives headless Chromium through chromedriver (starting
//! chromedriver itself when nothing answers at `--webdriver`); `--http` runs
//! the same path with plain HTTP requests and HTML assertions instead.

mod browser;
mod http_mode;
mod page;
mod report;

use std::path::PathBuf;
use std::process::ExitCode;

use report::{Report, StepError, ensure};

/// The test cases, in order (both modes).
pub(crate) const STEP_HOME: &str = "home page opens";
pub(crate) const STEP_LIST: &str = "product list shows the catalog's 5 products";
pub(crate) const STEP_FOOTER: &str = "footer shows which environment's catalog answered";
pub(crate) const STEP_PRODUCT: &str = "product page opens from the list";
pub(crate) const STEP_ORDER: &str = "order for quantity 2 is placed from the product page";
pub(crate) const STEP_CONFIRMATION_ID: &str = "confirmation shows the order id from the orders service";
pub(crate) const STEP_CONFIRMATION_ENV: &str = "confirmation shows which environment's orders service answered";

/// How many products the catalog serves.
const EXPECTED_PRODUCTS: usize = 5;

const USAGE: &str = "shop-e2e: end-to-end test of the shop through its BFF

Usage: shop-e2e --url BFF_URL [--webdriver URL] [--junit FILE] [--http]
                [--expect-environment ENV]

  --url URL                 the BFF (or the load balancer in front of it), e.g.
                            http://127.0.0.1:18080; defaults to $BFF_URL
  --webdriver URL           the WebDriver server (default http://127.0.0.1:9515);
                            when nothing answers there, chromedriver is started
                            on that port and stopped at the end
  --junit FILE              write a JUnit XML report (testsuite shop-e2e); failure
                            screenshots go next to it
  --http                    no browser: the same user path with plain HTTP GET/POST
                            and assertions on the HTML
  --expect-environment ENV  require the BFF and both backends to report ENV
                            (default: the backends must report the BFF's own)

Browser mode needs chromium and chromedriver (apt-get install chromium chromium-driver);
$CHROME_BIN and $CHROMEDRIVER override their paths.
Exit status: 0 when every step passed, 1 when one failed, 2 for bad arguments.";

/// Command-line options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Options {
    pub(crate) url: String,
    pub(crate) webdriver: String,
    pub(crate) junit: Option<PathBuf>,
    pub(crate) http: bool,
    pub(crate) expect_environment: Option<String>,
}

fn parse_args(args: &[String], bff_url_env: Option<String>) -> Result<Option<Options>, String> {
    let mut url = None;
    let mut webdriver = "http://127.0.0.1:9515".to_string();
    let mut junit = None;
    let mut http = false;
    let mut expect_environment = None;
    let mut i = 0;
    while let Some(arg) = args.get(i) {
        i += 1;
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f, Some(v.to_string())),
            _ => (arg.as_str(), None),
        };
        let mut value = || -> Result<String, String> {
            if let Some(v) = inline.clone() {
                return Ok(v);
            }
            let v = args.get(i).cloned().ok_or_else(|| format!("{flag} needs a value"))?;
            i += 1;
            Ok(v)
        };
        match flag {
            "--url" => url = Some(value()?),
            "--webdriver" => webdriver = value()?,
            "--junit" => junit = Some(PathBuf::from(value()?)),
            "--expect-environment" => expect_environment = Some(value()?).filter(|v| !v.is_empty()),
            "--http" if inline.is_none() => http = true,
            "-h" | "--help" => return Ok(None),
            other => return Err(format!("unexpected argument {other:?}")),
        }
    }
    let url = url
        .or(bff_url_env)
        .map(|u| u.trim().trim_end_matches('/').to_string())
        .filter(|u| !u.is_empty())
        .ok_or("--url is required (or set BFF_URL)")?;
    if !url.starts_with("http://") && !url.starts_with("https://") {
        return Err(format!("--url {url:?} must start with http://"));
    }
    Ok(Some(Options {
        url,
        webdriver,
        junit,
        http,
        expect_environment,
    }))
}

/// The product links on the home page: the catalog's five, each
/// `product-<id>` linking to `/products/<id>` with a name.
pub(crate) fn check_product_links(links: &[(String, String, String)]) -> Result<(), StepError> {
    let names: Vec<&str> = links.iter().map(|(_, name, _)| name.as_str()).collect();
    ensure(links.len() == EXPECTED_PRODUCTS, || {
        format!(
            "the list shows {} product(s), expected the catalog's {EXPECTED_PRODUCTS}: {names:?}",
            links.len()
        )
    })?;
    for (id, name, href) in links {
        let product = id.strip_prefix("product-").unwrap_or_default();
        ensure(!product.is_empty(), || format!("link id {id:?} names no product"))?;
        ensure(!name.is_empty(), || format!("link #{id} has no product name"))?;
        ensure(href.ends_with(&format!("/products/{product}")), || {
            format!("link #{id} points at {href:?}, not /products/{product}")
        })?;
    }
    println!("        products: {}", names.join(", "));
    Ok(())
}

/// The environments a page reports: the BFF's own, and the backend's that
/// answered. They must be there, and agree (with each other, or with
/// `--expect-environment`): a staging BFF wired to production backends is
/// exactly what this catches.
pub(crate) fn check_environment(
    opts: &Options,
    backend: &str,
    bff_env: Option<&str>,
    backend_env: Option<&str>,
    service_dns: Option<&str>,
) -> Result<(), StepError> {
    let bff_env = bff_env
        .filter(|e| !e.is_empty())
        .ok_or("the page shows no #environment")?;
    let backend_env = backend_env
        .filter(|e| !e.is_empty() && *e != "unknown")
        .ok_or_else(|| format!("the page does not say which environment's {backend} service answered"))?;
    let dns = service_dns
        .filter(|d| !d.is_empty())
        .ok_or("the page shows no #service-dns")?;
    match &opts.expect_environment {
        Some(want) => {
            ensure(bff_env == want, || {
                format!("the BFF runs in {bff_env:?}, expected {want:?}")
            })?;
            ensure(backend_env == want, || {
                format!(
                    "the {backend} service that answered runs in {backend_env:?}, expected {want:?} (SERVICE_DNS: {dns})"
                )
            })?;
        }
        None => ensure(backend_env == bff_env, || {
            format!(
                "the BFF runs in {bff_env:?} but its {backend} service answered from {backend_env:?} (SERVICE_DNS: {dns})"
            )
        })?,
    }
    println!("        bff: {bff_env}, {backend}: {backend_env}, SERVICE_DNS: {dns}");
    Ok(())
}

/// The confirmation: an order id like `o-12` and the quantity ordered.
pub(crate) fn check_order_id(id: Option<&str>, quantity: Option<&str>) -> Result<(), StepError> {
    let id = id.ok_or("the confirmation shows no #order-id")?;
    let well_formed = id
        .strip_prefix("o-")
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
    ensure(well_formed, || {
        format!("#order-id is {id:?}, not an orders-service id like o-1")
    })?;
    ensure(quantity == Some("2"), || {
        format!("#order-quantity is {quantity:?}, expected 2")
    })?;
    println!("        order: {id}");
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let opts = match parse_args(&args, std::env::var("BFF_URL").ok()) {
        Ok(Some(opts)) => opts,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("shop-e2e: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let mode = if opts.http { "http" } else { "browser" };
    let mut report = Report::new(mode);
    report.properties.push(("mode".into(), mode.into()));
    report.properties.push(("url".into(), opts.url.clone()));
    if opts.http {
        println!(
            "shop-e2e: HTTP mode (no browser): plain GET/POST requests and HTML assertions against {}",
            opts.url
        );
        http_mode::run(&opts, &mut report);
    } else {
        report.properties.push(("webdriver".into(), opts.webdriver.clone()));
        println!(
            "shop-e2e: browser mode: headless Chromium via WebDriver at {}, against {}",
            opts.webdriver, opts.url
        );
        let evidence = opts.junit.as_ref().and_then(|j| j.parent()).map(|d| {
            if d.as_os_str().is_empty() {
                PathBuf::from(".")
            } else {
                d.to_path_buf()
            }
        });
        browser::run(&opts, &mut report, evidence);
        if report
            .cases
            .first()
            .is_some_and(|c| matches!(c.outcome, report::Outcome::Failed(..)))
        {
            eprintln!("shop-e2e: the browser could not be used (--http runs the plain-HTTP check, which needs none)");
        }
    }
    println!("{}", report.summary());
    let mut ok = report.success();
    if let Some(path) = &opts.junit {
        match report.write_junit(path) {
            Ok(()) => println!("shop-e2e: JUnit report written to {}", path.display()),
            Err(e) => {
                eprintln!("shop-e2e: {e}");
                ok = false;
            }
        }
    }
    if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    fn opts(expect: Option<&str>) -> Options {
        Options {
            url: "http://127.0.0.1:1".into(),
            webdriver: String::new(),
            junit: None,
            http: true,
            expect_environment: expect.map(str::to_string),
        }
    }

    #[test]
    fn parses_arguments() {
        let o = parse_args(
            &args(&["--url", "http://127.0.0.1:8080/", "--junit=reports/e2e.xml", "--http"]),
            None,
        )
        .unwrap()
        .unwrap();
        assert_eq!(o.url, "http://127.0.0.1:8080");
        assert_eq!(o.webdriver, "http://127.0.0.1:9515");
        assert_eq!(o.junit, Some(PathBuf::from("reports/e2e.xml")));
        assert!(o.http);
        let o = parse_args(
            &args(&["--expect-environment", "staging"]),
            Some("http://10.0.0.1".into()),
        )
        .unwrap()
        .unwrap();
        assert_eq!(o.url, "http://10.0.0.1");
        assert_eq!(o.expect_environment.as_deref(), Some("staging"));
        assert!(!o.http);
        assert_eq!(parse_args(&args(&["--help"]), None), Ok(None));
        assert!(parse_args(&args(&[]), None).is_err());
        assert!(parse_args(&args(&["--url"]), None).is_err());
        assert!(parse_args(&args(&["--url", "127.0.0.1:1"]), None).is_err());
        assert!(parse_args(&args(&["--url", "http://a", "--bogus"]), None).is_err());
        assert!(parse_args(&args(&["--url", "http://a", "--http=yes"]), None).is_err());
    }

    #[test]
    fn checks_product_links() {
        let link = |i: usize| {
            (
                format!("product-p{i}"),
                format!("Product {i}"),
                format!("/products/p{i}"),
            )
        };
        let five: Vec<_> = (1..=5).map(link).collect();
        assert!(check_product_links(&five).is_ok());
        assert!(
            check_product_links(&five[..4])
                .unwrap_err()
                .message
                .contains("shows 4 product(s)")
        );
        let mut bad = five.clone();
        bad[2].2 = "/products/other".into();
        assert!(check_product_links(&bad).unwrap_err().message.contains("points at"));
        let mut nameless = five;
        nameless[0].1.clear();
        assert!(check_product_links(&nameless).is_err());
    }

    #[test]
    fn checks_environments() {
        let dns = Some("http://127.0.0.1:1");
        assert!(check_environment(&opts(None), "catalog", Some("staging"), Some("staging"), dns).is_ok());
        let e = check_environment(&opts(None), "catalog", Some("staging"), Some("production"), dns).unwrap_err();
        assert!(e.message.contains("answered from \"production\""), "{e:?}");
        assert!(check_environment(&opts(Some("staging")), "orders", Some("staging"), Some("staging"), dns).is_ok());
        assert!(
            check_environment(
                &opts(Some("production")),
                "orders",
                Some("staging"),
                Some("staging"),
                dns
            )
            .is_err()
        );
        assert!(check_environment(&opts(None), "orders", Some("x"), Some("unknown"), dns).is_err());
        assert!(check_environment(&opts(None), "orders", None, Some("x"), dns).is_err());
        assert!(check_environment(&opts(None), "orders", Some("x"), Some("x"), None).is_err());
    }

    #[test]
    fn checks_order_ids() {
        assert!(check_order_id(Some("o-12"), Some("2")).is_ok());
        for (id, q) in [
            (Some("o-"), Some("2")),
            (Some("x-1"), Some("2")),
            (None, Some("2")),
            (Some("o-1"), Some("3")),
        ] {
            assert!(check_order_id(id, q).is_err(), "{id:?} {q:?}");
        }
    }
}
