//! The scenario over plain HTTP: the same user path as the browser mode
//! (home page, product link, order form, confirmation), with GET and POST
//! requests and assertions on the returned HTML. For machines without a
//! browser; it checks the pages and the services behind them, not what a
//! browser makes of them.

use std::time::Duration;

use shop_http::client::{self, ClientResponse, Endpoint};
use shop_http::form;

use crate::page::{self, Tag};
use crate::report::{Report, StepError, ensure};
use crate::{
    Options, STEP_CONFIRMATION_ENV, STEP_CONFIRMATION_ID, STEP_FOOTER, STEP_HOME, STEP_LIST, STEP_ORDER, STEP_PRODUCT,
};
use crate::{check_environment, check_order_id, check_product_links};

const TIMEOUT: Duration = Duration::from_secs(15);

/// A fetched page.
struct Page {
    path: String,
    html: String,
    tags: Vec<Tag>,
}

impl Page {
    fn text(&self, id: &str) -> Option<String> {
        page::text_by_id(&self.html, &self.tags, id)
    }

    fn excerpt(&self) -> String {
        format!("{}: {}", self.path, page::excerpt(&self.html))
    }
}

fn fetch(bff: &Endpoint, method: &str, path: &str, form_body: Option<String>) -> Result<Page, StepError> {
    let response: ClientResponse = match &form_body {
        None => client::request(bff, method, path, &[("Accept", "text/html")], &[], TIMEOUT),
        Some(body) => client::request(
            bff,
            method,
            path,
            &[
                ("Accept", "text/html"),
                ("Content-Type", "application/x-www-form-urlencoded"),
            ],
            body.as_bytes(),
            TIMEOUT,
        ),
    }
    .map_err(|e| StepError::new(e.to_string()))?;
    let html = response.text();
    let tags = page::tags(&html);
    let page = Page {
        path: path.to_string(),
        html,
        tags,
    };
    if response.status != 200 {
        return Err(
            StepError::new(format!("{method} {path} answered {}", response.status)).with_details(page.excerpt())
        );
    }
    let html_type = response
        .header("content-type")
        .is_some_and(|ct| ct.starts_with("text/html"));
    ensure(html_type, || {
        format!("{method} {path} is not HTML: {:?}", response.header("content-type"))
    })?;
    Ok(page)
}

/// Runs the scenario against `opts.url`.
pub(crate) fn run(opts: &Options, report: &mut Report) {
    let bff = match Endpoint::parse(&opts.url) {
        Ok(bff) => bff,
        Err(e) => {
            report.record(
                STEP_HOME,
                true,
                Duration::ZERO,
                Err(StepError::new(format!("--url: {e}"))),
            );
            return;
        }
    };
    let mut home: Option<Page> = None;
    report.step(STEP_HOME, true, || {
        let page = fetch(&bff, "GET", "/", None)?;
        ensure(page::by_id(&page.tags, "product-list").is_some(), || {
            "no #product-list on the home page".into()
        })
        .map_err(|e| e.with_details(page.excerpt()))?;
        home = Some(page);
        Ok(())
    });

    // (id, text, href) of the product links.
    let mut links: Vec<(String, String, String)> = Vec::new();
    report.step(STEP_LIST, false, || {
        let home = home.as_ref().ok_or("no home page")?;
        let list = page::by_id(&home.tags, "product-list").ok_or("no #product-list")?;
        links = page::inside(&home.html, &home.tags, list)
            .into_iter()
            .filter(|t| t.name == "a" && t.attr("id").is_some_and(|id| id.starts_with("product-")))
            .map(|t| {
                let id = t.attr("id").unwrap_or_default().to_string();
                (
                    id,
                    page::text(&home.html, t),
                    t.attr("href").unwrap_or_default().to_string(),
                )
            })
            .collect();
        check_product_links(&links).map_err(|e| e.with_details(home.excerpt()))
    });

    report.step(STEP_FOOTER, false, || {
        let home = home.as_ref().ok_or("no home page")?;
        let bff_env = home.text("environment");
        let catalog_env = home.text("catalog-environment");
        let dns = home.text("service-dns");
        check_environment(
            opts,
            "catalog",
            bff_env.as_deref(),
            catalog_env.as_deref(),
            dns.as_deref(),
        )
        .map_err(|e| e.with_details(home.excerpt()))
    });

    let mut product: Option<Page> = None;
    report.step(STEP_PRODUCT, true, || {
        let (_, name, href) = links.first().ok_or("the home page has no product link to follow")?;
        ensure(href.starts_with('/'), || {
            format!("product link {href:?} is not a path on the BFF")
        })?;
        let page = fetch(&bff, "GET", href, None)?;
        let shown = page.text("product-name").unwrap_or_default();
        ensure(&shown == name, || {
            format!("#product-name is {shown:?}, the link said {name:?}")
        })
        .map_err(|e| e.with_details(page.excerpt()))?;
        for id in ["quantity", "place-order", "catalog-environment"] {
            ensure(page::by_id(&page.tags, id).is_some(), || {
                format!("no #{id} on the product page")
            })
            .map_err(|e| e.with_details(page.excerpt()))?;
        }
        product = Some(page);
        Ok(())
    });

    let mut confirmation: Option<Page> = None;
    report.step(STEP_ORDER, true, || {
        let page = product.as_ref().ok_or("no product page")?;
        // The form that holds #place-order, as a browser would submit it.
        let form_tag = page
            .tags
            .iter()
            .filter(|t| t.name == "form")
            .find(|f| {
                page::inside(&page.html, &page.tags, f)
                    .iter()
                    .any(|t| t.attr("id") == Some("place-order"))
            })
            .ok_or("#place-order is not inside a form")?;
        let method = form_tag.attr("method").unwrap_or("get").to_ascii_uppercase();
        let action = form_tag.attr("action").unwrap_or(&page.path).to_string();
        ensure(method == "POST", || {
            format!("the order form's method is {method}, expected POST")
        })?;
        let mut fields: Vec<(String, String)> = page::inside(&page.html, &page.tags, form_tag)
            .into_iter()
            .filter(|t| t.name == "input")
            .filter_map(|t| Some((t.attr("name")?.to_string(), t.attr("value").unwrap_or("").to_string())))
            .collect();
        let quantity = fields
            .iter_mut()
            .find(|(n, _)| n == "quantity")
            .ok_or("the form has no quantity field")?;
        quantity.1 = "2".into();
        let pairs: Vec<(&str, &str)> = fields.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
        let page = fetch(&bff, "POST", &action, Some(form::encode(&pairs)))?;
        ensure(page::by_id(&page.tags, "order-id").is_some(), || {
            "no #order-id on the confirmation page".into()
        })
        .map_err(|e| e.with_details(page.excerpt()))?;
        confirmation = Some(page);
        Ok(())
    });

    report.step(STEP_CONFIRMATION_ID, false, || {
        let page = confirmation.as_ref().ok_or("no confirmation page")?;
        check_order_id(page.text("order-id").as_deref(), page.text("order-quantity").as_deref())
            .map_err(|e| e.with_details(page.excerpt()))
    });

    report.step(STEP_CONFIRMATION_ENV, false, || {
        let page = confirmation.as_ref().ok_or("no confirmation page")?;
        let bff_env = page.text("environment");
        let orders_env = page.text("order-environment");
        let dns = page.text("service-dns");
        check_environment(
            opts,
            "orders",
            bff_env.as_deref(),
            orders_env.as_deref(),
            dns.as_deref(),
        )
        .map_err(|e| e.with_details(page.excerpt()))
    });
}
