//! The BFF (backend for frontend): the shop's web pages, rendered on the
//! server from the catalog's and the orders service's JSON. No JavaScript.
//!
//! - `GET /` → the product list (from `GET $SERVICE_DNS/api/catalog/products`)
//! - `GET /products/{id}` → one product and an order form
//! - `POST /orders` (form: `product_id`, `quantity`) → places the order with
//!   `POST $SERVICE_DNS/api/orders` and shows the confirmation
//! - `GET /health` → `ok`
//!
//! Backends are found through `SERVICE_DNS`, the load balancer's address,
//! which routes `/api/catalog/*` and `/api/orders*` to the services. Every
//! page's footer says which environment the BFF runs in, which environment
//! the backend that answered runs in, and the `SERVICE_DNS` in use, so a
//! staging BFF wired to production backends is visible at a glance.
//!
//! A backend that cannot be reached, fails, or answers nonsense gives a 502
//! page with the reason; a backend's 4xx (an invalid order) gives a 400 page
//! with the backend's message, and an unknown product a 404 page.

use std::time::Duration;

use shop_http::client::{self, ClientResponse, Endpoint};
use shop_http::html::escape;
use shop_http::server::log_line;
use shop_http::{Json, Request, Response, ServiceInfo, form, route_path};

/// How long one backend call may take.
pub const BACKEND_TIMEOUT: Duration = Duration::from_secs(5);

/// Where the backends are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backends {
    /// The catalog service (normally the load balancer).
    pub catalog: Endpoint,
    /// The orders service (normally the load balancer).
    pub orders: Endpoint,
    /// What the footer shows as `SERVICE_DNS`.
    pub service_dns: String,
}

impl Backends {
    /// From `SERVICE_DNS`, or, only when it is unset, from `CATALOG_URL`
    /// and `ORDERS_URL` (local runs without a load balancer).
    pub fn from_env() -> Result<Backends, String> {
        let var = |name: &str| std::env::var(name).ok();
        Backends::from_vars(
            var("SERVICE_DNS").as_deref(),
            var("CATALOG_URL").as_deref(),
            var("ORDERS_URL").as_deref(),
        )
    }

    /// [`Backends::from_env`] on given values.
    pub fn from_vars(
        service_dns: Option<&str>,
        catalog_url: Option<&str>,
        orders_url: Option<&str>,
    ) -> Result<Backends, String> {
        let present = |v: Option<&str>| v.map(str::trim).filter(|v| !v.is_empty()).map(str::to_string);
        if let Some(dns) = present(service_dns) {
            let endpoint = Endpoint::parse(&dns).map_err(|e| format!("SERVICE_DNS: {e}"))?;
            return Ok(Backends {
                catalog: endpoint.clone(),
                orders: endpoint,
                service_dns: dns,
            });
        }
        match (present(catalog_url), present(orders_url)) {
            (Some(c), Some(o)) => Ok(Backends {
                catalog: Endpoint::parse(&c).map_err(|e| format!("CATALOG_URL: {e}"))?,
                orders: Endpoint::parse(&o).map_err(|e| format!("ORDERS_URL: {e}"))?,
                service_dns: format!("(unset; CATALOG_URL={c}, ORDERS_URL={o})"),
            }),
            _ => Err("SERVICE_DNS is not set: set it to the load balancer's address, like \
                      http://127.0.0.1:18080 (for a local run without a load balancer, set \
                      CATALOG_URL and ORDERS_URL instead)"
                .into()),
        }
    }
}

/// What a page's footer says about the backend that answered it.
struct BackendSeen<'a> {
    service: &'a str,
    environment: String,
    /// The id of the span holding the environment, if tests look for it.
    id: Option<&'a str>,
}

/// A backend call that did not give a usable answer.
enum Failure {
    /// The backend refused the request (4xx): the user's input was wrong.
    Refused { status: u16, message: String },
    /// The backend could not be reached or failed: 502.
    Broken(String),
}

/// The BFF's request handler.
#[derive(Debug, Clone)]
pub struct Bff {
    info: ServiceInfo,
    backends: Backends,
    timeout: Duration,
}

impl Bff {
    /// A BFF answering as `info`, calling `backends`.
    pub fn new(info: ServiceInfo, backends: Backends) -> Bff {
        Bff {
            info,
            backends,
            timeout: BACKEND_TIMEOUT,
        }
    }

    /// Changes the backend timeout (tests).
    pub fn with_timeout(mut self, timeout: Duration) -> Bff {
        self.timeout = timeout;
        self
    }

    /// Answers one request.
    pub fn handle(&self, req: &Request) -> Response {
        let path = route_path(req);
        let response = match (req.method.as_str(), path) {
            ("GET", "/health") => return self.info.health(),
            ("GET", "/") => self.home(),
            ("GET", p) if p.starts_with("/products/") => self.product(&p["/products/".len()..]),
            ("POST", "/orders") => self.place_order(req),
            (_, "/" | "/health") => self.method_not_allowed("GET"),
            (_, "/orders") => self.method_not_allowed("POST"),
            (_, p) if p.starts_with("/products/") => self.method_not_allowed("GET"),
            _ => self.error_page(404, "Not found", &format!("There is no page at {}.", req.path)),
        };
        // Pages show live state (which environment answered): never cache.
        response
            .with_header("Cache-Control", "no-store")
            .with_header("X-Shop-Service", &self.info.label())
    }

    fn method_not_allowed(&self, allow: &str) -> Response {
        self.error_page(405, "Method not allowed", &format!("Use {allow} here."))
            .with_header("Allow", allow)
    }

    /// Calls a backend and returns its JSON when it answered `ok_status`.
    fn call(
        &self,
        service: &str,
        result: Result<ClientResponse, client::ClientError>,
        ok: &[u16],
    ) -> Result<Json, Failure> {
        let response =
            result.map_err(|e| Failure::Broken(format!("the {service} service could not be reached: {e}")))?;
        let json = response.json();
        let message = |json: &Result<Json, String>| {
            json.as_ref()
                .ok()
                .and_then(|j| j.get("error").and_then(Json::as_str).map(str::to_string))
                .unwrap_or_else(|| excerpt(&response.text()))
        };
        if ok.contains(&response.status) {
            return json
                .map_err(|e| Failure::Broken(format!("the {service} service answered {}, but {e}", response.status)));
        }
        if (400..500).contains(&response.status) {
            return Err(Failure::Refused {
                status: response.status,
                message: message(&json),
            });
        }
        Err(Failure::Broken(format!(
            "the {service} service answered {}: {}",
            response.status,
            message(&json)
        )))
    }

    fn failure_page(&self, failure: Failure, not_found: &str) -> Response {
        match failure {
            Failure::Refused { status: 404, message } => {
                self.error_page(404, "Not found", &format!("{not_found} ({message})"))
            }
            Failure::Refused { status, message } => self.error_page(
                400,
                "Request refused",
                &format!("The backend refused the request ({status}): {message}"),
            ),
            Failure::Broken(reason) => {
                log_line(&self.info.service, format_args!("backend failure: {reason}"));
                self.error_page(502, "Backend unavailable", &reason)
            }
        }
    }

    fn home(&self) -> Response {
        let fetched = client::get(&self.backends.catalog, "/api/catalog/products", self.timeout);
        let json = match self.call("catalog", fetched, &[200]) {
            Ok(json) => json,
            Err(failure) => return self.failure_page(failure, "The catalog has no product list"),
        };
        let Some(products) = json.get("products").and_then(Json::as_array) else {
            return self.failure_page(
                Failure::Broken("the catalog service answered without a \"products\" list".into()),
                "",
            );
        };
        let mut items = String::new();
        for p in products {
            let (Some(id), Some(name)) = (p.get("id").and_then(Json::as_str), p.get("name").and_then(Json::as_str))
            else {
                continue; // a malformed entry is left out rather than failing the page
            };
            if !valid_id(id) {
                continue;
            }
            let price = p
                .get("price_cents")
                .and_then(Json::as_i64)
                .map(money)
                .unwrap_or_default();
            let description = p.get("description").and_then(Json::as_str).unwrap_or("");
            items.push_str(&format!(
                "<li class=\"product\"><a id=\"product-{id}\" href=\"/products/{id}\">{name}</a> \
                 <span class=\"price\">{price}</span><br><small>{description}</small></li>\n",
                id = escape(id),
                name = escape(name),
                price = escape(&price),
                description = escape(description),
            ));
        }
        let body = format!(
            "<h1>Products</h1>\n<ul id=\"product-list\" data-count=\"{count}\">\n{items}</ul>\n",
            count = items.matches("<li").count()
        );
        let seen = BackendSeen {
            service: "catalog",
            environment: env_of(&json),
            id: Some("catalog-environment"),
        };
        Response::html(200, self.layout("Products", &body, Some(seen)))
    }

    fn product(&self, id: &str) -> Response {
        // Only plain ids go into the backend URL: nothing can steer the
        // request elsewhere (`..`, `?`, `%2F`).
        if !valid_id(id) {
            return self.error_page(404, "Not found", &format!("There is no product {id:?}."));
        }
        let fetched = client::get(
            &self.backends.catalog,
            &format!("/api/catalog/products/{id}"),
            self.timeout,
        );
        let json = match self.call("catalog", fetched, &[200]) {
            Ok(json) => json,
            Err(failure) => return self.failure_page(failure, &format!("There is no product {id:?} in the catalog")),
        };
        let name = json.get("name").and_then(Json::as_str).unwrap_or(id);
        let price = json
            .get("price_cents")
            .and_then(Json::as_i64)
            .map(money)
            .unwrap_or_default();
        let description = json.get("description").and_then(Json::as_str).unwrap_or("");
        let body = format!(
            "<h1 id=\"product-name\">{name}</h1>\n\
             <p class=\"price\" id=\"product-price\">{price}</p>\n\
             <p id=\"product-description\">{description}</p>\n\
             <form id=\"order-form\" method=\"post\" action=\"/orders\">\n\
             <input type=\"hidden\" name=\"product_id\" value=\"{id}\">\n\
             <label for=\"quantity\">Quantity</label>\n\
             <input id=\"quantity\" name=\"quantity\" type=\"number\" min=\"1\" max=\"99\" value=\"1\" required>\n\
             <button id=\"place-order\" type=\"submit\">Place order</button>\n\
             </form>\n<p><a id=\"back\" href=\"/\">&larr; All products</a></p>\n",
            name = escape(name),
            price = escape(&price),
            description = escape(description),
            id = escape(id),
        );
        let seen = BackendSeen {
            service: "catalog",
            environment: env_of(&json),
            id: Some("catalog-environment"),
        };
        Response::html(200, self.layout(name, &body, Some(seen)))
    }

    fn place_order(&self, req: &Request) -> Response {
        let fields = form::parse(&req.body);
        let product_id = form::get(&fields, "product_id").unwrap_or("").trim();
        let quantity_text = form::get(&fields, "quantity").unwrap_or("").trim();
        if product_id.is_empty() {
            return self.error_page(400, "Invalid order", "The order names no product.");
        }
        let Ok(quantity) = quantity_text.parse::<i64>() else {
            return self.error_page(
                400,
                "Invalid order",
                &format!("The quantity must be a whole number, not {quantity_text:?}."),
            );
        };
        let body = Json::obj([("product_id", Json::str(product_id)), ("quantity", Json::int(quantity))]);
        let placed = client::post_json(&self.backends.orders, "/api/orders", &body, self.timeout);
        let json = match self.call("orders", placed, &[200, 201]) {
            Ok(json) => json,
            Err(failure) => return self.failure_page(failure, "The orders service does not take orders"),
        };
        let Some(order_id) = json.get("id").and_then(Json::as_str) else {
            return self.failure_page(
                Failure::Broken("the orders service answered without an order id".into()),
                "",
            );
        };
        let environment = env_of(&json);
        let revision = json.get("revision").and_then(Json::as_str).unwrap_or("?");
        let shown_product = json.get("product_id").and_then(Json::as_str).unwrap_or(product_id);
        let shown_quantity = json.get("quantity").and_then(Json::as_i64).unwrap_or(quantity);
        let product_link = if valid_id(shown_product) {
            format!(
                "<a id=\"order-product\" href=\"/products/{0}\">{0}</a>",
                escape(shown_product)
            )
        } else {
            format!("<span id=\"order-product\">{}</span>", escape(shown_product))
        };
        let body = format!(
            "<h1>Thank you!</h1>\n\
             <p>Order <strong id=\"order-id\">{order_id}</strong>: \
             <span id=\"order-quantity\">{shown_quantity}</span> &times; {product_link}</p>\n\
             <p>Taken by the orders service in <strong id=\"order-environment\">{environment}</strong> \
             (revision <span id=\"order-revision\">{revision}</span>).</p>\n\
             <p><a id=\"back\" href=\"/\">&larr; Continue shopping</a></p>\n",
            order_id = escape(order_id),
            environment = escape(&environment),
            revision = escape(revision),
        );
        let seen = BackendSeen {
            service: "orders",
            environment,
            id: None,
        };
        Response::html(200, self.layout("Order placed", &body, Some(seen)))
    }

    fn error_page(&self, status: u16, title: &str, message: &str) -> Response {
        let body = format!(
            "<h1>{status} {title}</h1>\n<p id=\"error\">{message}</p>\n<p><a id=\"back\" href=\"/\">&larr; Home</a></p>\n",
            title = escape(title),
            message = escape(message),
        );
        Response::html(status, self.layout(title, &body, None))
    }

    fn layout(&self, title: &str, main: &str, seen: Option<BackendSeen<'_>>) -> String {
        let env = escape(&self.info.environment);
        let backend = match seen {
            Some(s) => {
                let id = s.id.map(|id| format!(" id=\"{id}\"")).unwrap_or_default();
                format!(
                    " &middot; {} answered from: <span{id}>{}</span>",
                    escape(s.service),
                    escape(&s.environment)
                )
            }
            None => String::new(),
        };
        format!(
            "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
             <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
             <link rel=\"icon\" href=\"data:,\">\n<title>{title} &middot; Gantry Coffee</title>\n\
             <style>{STYLE}</style>\n</head>\n<body class=\"env-{env_class}\">\n\
             <header><a id=\"home\" href=\"/\">Gantry Coffee</a> <span class=\"badge\">{env}</span></header>\n\
             <main>\n{main}</main>\n\
             <footer id=\"footer\">environment: <span id=\"environment\">{env}</span>{backend} \
             &middot; SERVICE_DNS: <span id=\"service-dns\">{dns}</span> \
             &middot; bff revision <span id=\"revision\">{revision}</span></footer>\n</body>\n</html>\n",
            title = escape(title),
            env_class = css_class(&self.info.environment),
            dns = escape(&self.backends.service_dns),
            revision = escape(&self.info.revision),
        )
    }
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;max-width:46rem;margin:0 auto;padding:0 1rem;color:#222}\
header{padding:1rem 0;border-bottom:3px solid #888;font-size:1.3rem}header a{color:inherit;text-decoration:none;font-weight:bold}\
.badge{font-size:.8rem;padding:.1rem .5rem;border-radius:.6rem;background:#888;color:#fff;vertical-align:middle}\
.env-staging header{border-color:#d97706}.env-staging .badge{background:#d97706}\
.env-production header{border-color:#15803d}.env-production .badge{background:#15803d}\
ul{padding-left:1.2rem}li{margin:.6rem 0}.price{font-weight:bold}\
input,button{font-size:1rem;padding:.3rem .6rem;margin:.3rem .3rem .3rem 0}\
footer{margin-top:3rem;padding:1rem 0;border-top:1px solid #ccc;font-size:.85rem;color:#555}";

/// Product ids that may go into a backend URL: 1 to 64 of `[A-Za-z0-9_-]`.
pub fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// `1299` → `$12.99`.
pub fn money(cents: i64) -> String {
    let sign = if cents < 0 { "-" } else { "" };
    let abs = cents.unsigned_abs();
    format!("{sign}${}.{:02}", abs / 100, abs % 100)
}

fn env_of(json: &Json) -> String {
    json.get("environment")
        .and_then(Json::as_str)
        .unwrap_or("unknown")
        .to_string()
}

fn css_class(environment: &str) -> String {
    environment
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .collect::<String>()
        .to_ascii_lowercase()
}

/// The start of a body, for error messages.
fn excerpt(text: &str) -> String {
    let one_line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.is_empty() {
        return "(empty body)".into();
    }
    match one_line.char_indices().nth(200) {
        Some((i, _)) => format!("{}…", &one_line[..i]),
        None => one_line,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shop_http::server::{RunningServer, Server, ServerConfig};

    fn quiet(name: &str) -> ServerConfig {
        let mut c = ServerConfig::new(name);
        c.log_requests = false;
        c
    }

    fn spawn(name: &str, handler: impl Fn(&Request) -> Response + Send + Sync + 'static) -> RunningServer {
        Server::bind("127.0.0.1:0".parse().unwrap(), quiet(name), handler)
            .unwrap()
            .spawn()
            .unwrap()
    }

    /// The real catalog and orders services behind a path-routing stand-in
    /// for the load balancer, all in-process.
    fn shop(backend_env: &str) -> (Bff, RunningServer) {
        let catalog = catalog::Catalog::new(ServiceInfo::fixed("catalog", backend_env));
        let orders = orders::Orders::new(ServiceInfo::fixed("orders", backend_env));
        let lb = spawn("lb", move |req| {
            if req.path.starts_with("/api/catalog") {
                catalog.handle(req)
            } else {
                orders.handle(req)
            }
        });
        let backends = Backends::from_vars(Some(&lb.url()), None, None).unwrap();
        (Bff::new(ServiceInfo::fixed("bff", "staging"), backends), lb)
    }

    fn text_of(html: &str, id: &str) -> Option<String> {
        let start = html.find(&format!("id=\"{id}\""))?;
        let open = start + html[start..].find('>')? + 1;
        let close = open + html[open..].find('<')?;
        Some(shop_http::html::unescape(&html[open..close]))
    }

    #[test]
    fn home_lists_products_and_the_catalogs_environment() {
        let (bff, _lb) = shop("staging");
        let r = bff.handle(&Request::new("GET", "/"));
        assert_eq!(r.status, 200);
        assert_eq!(r.header("cache-control"), Some("no-store"));
        let html = r.body_text();
        assert!(html.contains("<ul id=\"product-list\" data-count=\"5\">"), "{html}");
        for p in catalog::PRODUCTS {
            assert_eq!(text_of(&html, &format!("product-{}", p.id)).as_deref(), Some(p.name));
            assert!(html.contains(&format!("href=\"/products/{}\"", p.id)));
        }
        assert!(html.contains("$12.99"));
        assert_eq!(text_of(&html, "environment").as_deref(), Some("staging"));
        assert_eq!(text_of(&html, "catalog-environment").as_deref(), Some("staging"));
        assert!(text_of(&html, "service-dns").unwrap().starts_with("http://127.0.0.1:"));
        assert!(html.contains("catalog answered from:"));
    }

    #[test]
    fn product_page_has_the_order_form() {
        let (bff, _lb) = shop("production");
        let html = bff.handle(&Request::new("GET", "/products/p2")).body_text();
        assert_eq!(text_of(&html, "product-name").as_deref(), Some("Pour-Over Kettle"));
        assert_eq!(text_of(&html, "catalog-environment").as_deref(), Some("production"));
        assert!(html.contains("<form id=\"order-form\" method=\"post\" action=\"/orders\">"));
        assert!(html.contains("<input type=\"hidden\" name=\"product_id\" value=\"p2\">"));
        assert!(html.contains("id=\"quantity\" name=\"quantity\""));
        assert!(html.contains("<button id=\"place-order\""));
        assert_eq!(bff.handle(&Request::new("GET", "/products/p9")).status, 404);
        for bad in ["/products/..%2Fhealth", "/products/a?b", "/products/%00", "/products/"] {
            assert_eq!(bff.handle(&Request::new("GET", bad)).status, 404, "{bad}");
        }
    }

    #[test]
    fn placing_an_order_shows_its_id_and_environment() {
        let (bff, _lb) = shop("staging");
        let req = Request::new("POST", "/orders")
            .with_header("Content-Type", "application/x-www-form-urlencoded")
            .with_body("product_id=p1&quantity=2");
        let r = bff.handle(&req);
        assert_eq!(r.status, 200, "{}", r.body_text());
        let html = r.body_text();
        assert_eq!(text_of(&html, "order-id").as_deref(), Some("o-1"));
        assert_eq!(text_of(&html, "order-quantity").as_deref(), Some("2"));
        assert_eq!(text_of(&html, "order-environment").as_deref(), Some("staging"));
        assert!(html.contains("orders answered from: <span>staging</span>"), "{html}");
        assert_eq!(
            text_of(&bff.handle(&req).body_text(), "order-id").as_deref(),
            Some("o-2")
        );
    }

    #[test]
    fn invalid_orders_are_400_with_the_reason() {
        let (bff, _lb) = shop("staging");
        let post = |body: &str| bff.handle(&Request::new("POST", "/orders").with_body(body.to_string()));
        let r = post("product_id=p1&quantity=0");
        assert_eq!(r.status, 400);
        assert!(
            r.body_text().contains("quantity must be between 1 and 99"),
            "{}",
            r.body_text()
        );
        let r = post("product_id=p1&quantity=two");
        assert_eq!(r.status, 400);
        assert!(
            r.body_text().contains("whole number, not &quot;two&quot;"),
            "{}",
            r.body_text()
        );
        assert_eq!(post("quantity=1").status, 400);
        assert_eq!(post("").status, 400);
        // Hostile input is escaped, never echoed as markup.
        let r = post("product_id=p1&quantity=%3Cscript%3E");
        assert!(!r.body_text().contains("<script>"));
    }

    #[test]
    fn unreachable_or_broken_backends_give_502_with_the_reason() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dead = Backends::from_vars(Some(&format!("http://127.0.0.1:{port}")), None, None).unwrap();
        let bff = Bff::new(ServiceInfo::fixed("bff", "staging"), dead).with_timeout(Duration::from_secs(2));
        let r = bff.handle(&Request::new("GET", "/"));
        assert_eq!(r.status, 502);
        assert!(
            r.body_text().contains("catalog service could not be reached"),
            "{}",
            r.body_text()
        );
        let r = bff.handle(&Request::new("POST", "/orders").with_body("product_id=p1&quantity=1"));
        assert_eq!(r.status, 502);
        assert!(r.body_text().contains("orders service could not be reached"));

        let broken = spawn("broken", |req: &Request| {
            if req.path.starts_with("/api/catalog") {
                Response::text(200, "<html>not json</html>")
            } else {
                Response::text(500, "database on fire")
            }
        });
        let bff = Bff::new(
            ServiceInfo::fixed("bff", "staging"),
            Backends::from_vars(Some(&broken.url()), None, None).unwrap(),
        );
        let r = bff.handle(&Request::new("GET", "/"));
        assert_eq!(r.status, 502);
        assert!(r.body_text().contains("not JSON"), "{}", r.body_text());
        let r = bff.handle(&Request::new("POST", "/orders").with_body("product_id=p1&quantity=1"));
        assert_eq!(r.status, 502);
        assert!(
            r.body_text().contains("answered 500: database on fire"),
            "{}",
            r.body_text()
        );
    }

    #[test]
    fn routes_methods_and_health() {
        let (bff, _lb) = shop("staging");
        assert_eq!(bff.handle(&Request::new("GET", "/health")).body_text(), "ok");
        assert_eq!(bff.handle(&Request::new("GET", "/nope")).status, 404);
        assert_eq!(
            bff.handle(&Request::new("GET", "/orders")).header("allow"),
            Some("POST")
        );
        assert_eq!(bff.handle(&Request::new("POST", "/")).status, 405);
        assert_eq!(bff.handle(&Request::new("DELETE", "/products/p1")).status, 405);
    }

    #[test]
    fn backend_configuration() {
        let b = Backends::from_vars(Some(" http://10.1.2.3:80/ "), Some("http://127.0.0.1:1"), None).unwrap();
        assert_eq!(b.catalog, b.orders);
        assert_eq!(b.service_dns, "http://10.1.2.3:80/");
        let b = Backends::from_vars(Some(""), Some("http://127.0.0.1:1"), Some("http://127.0.0.1:2")).unwrap();
        assert_eq!(b.orders.addr.port(), 2);
        assert!(b.service_dns.starts_with("(unset"));
        assert!(
            Backends::from_vars(None, Some("http://127.0.0.1:1"), None)
                .unwrap_err()
                .contains("SERVICE_DNS is not set")
        );
        assert!(
            Backends::from_vars(Some("http://lb.internal"), None, None)
                .unwrap_err()
                .contains("IP address")
        );
    }

    #[test]
    fn helpers() {
        assert_eq!(money(1299), "$12.99");
        assert_eq!(money(5), "$0.05");
        assert_eq!(money(-150), "-$1.50");
        assert!(
            valid_id("p1") && valid_id("a_b-C9") && !valid_id("") && !valid_id("a/b") && !valid_id(&"x".repeat(65))
        );
        assert_eq!(css_class("Staging 2\"><x"), "staging2x");
        assert_eq!(excerpt("  a \n b  "), "a b");
        assert_eq!(excerpt(""), "(empty body)");
        assert_eq!(excerpt(&"é".repeat(300)).chars().count(), 201);
    }
}
