//! The orders service: takes orders and keeps them in memory.
//!
//! - `POST /api/orders` with `{"product_id": "p1", "quantity": 2}` → 201
//!   `{"id": "o-1", "product_id", "quantity", environment, service, revision}`;
//!   400 (JSON) for a body that is not such an object, a missing or empty
//!   `product_id`, or a `quantity` that is not a whole number in 1..=99
//! - `GET /api/orders/{id}` → the order, or 404
//! - `GET /api/orders` → the most recent orders (up to 20)
//! - `GET /health` → `ok` (500 with `FAIL_HEALTH=1`)
//!
//! Products are not checked against the catalog: the services stay
//! independent, and the BFF only offers catalog products anyway.

use std::collections::BTreeMap;
use std::sync::Mutex;

use shop_http::{Json, Request, Response, ServiceInfo, method_not_allowed, route_path};

/// Orders kept at most; the oldest are forgotten first, so memory stays
/// bounded however long the service runs.
pub const MAX_ORDERS: usize = 10_000;
/// Longest `product_id` accepted, in characters.
pub const MAX_PRODUCT_ID: usize = 64;

/// An order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Order {
    /// `o-<n>`.
    pub id: String,
    /// The product ordered.
    pub product_id: String,
    /// How many, 1..=99.
    pub quantity: i64,
}

#[derive(Debug, Default)]
struct Store {
    next: u64,
    orders: BTreeMap<u64, Order>,
}

/// The orders service's request handler and in-memory store.
#[derive(Debug)]
pub struct Orders {
    info: ServiceInfo,
    store: Mutex<Store>,
}

impl Orders {
    /// An empty store answering as `info`.
    pub fn new(info: ServiceInfo) -> Orders {
        Orders {
            info,
            store: Mutex::new(Store {
                next: 1,
                orders: BTreeMap::new(),
            }),
        }
    }

    fn store(&self) -> std::sync::MutexGuard<'_, Store> {
        // A panic while holding the lock cannot leave the map half-updated
        // (each insert is one call), so a poisoned lock is safe to reuse.
        self.store.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn order_json(&self, status: u16, order: &Order) -> Response {
        let members = vec![
            ("id".into(), Json::str(&order.id)),
            ("product_id".into(), Json::str(&order.product_id)),
            ("quantity".into(), Json::int(order.quantity)),
        ];
        self.info.json(status, members)
    }

    /// Answers one request.
    pub fn handle(&self, req: &Request) -> Response {
        let path = route_path(req);
        match path {
            "/health" if req.method == "GET" => self.info.health(),
            "/health" => method_not_allowed(&self.info, "GET"),
            "/api/orders" => match req.method.as_str() {
                "POST" => self.create(req),
                "GET" => self.list(),
                _ => method_not_allowed(&self.info, "GET, POST"),
            },
            _ => match path.strip_prefix("/api/orders/") {
                Some(id) if req.method == "GET" => self.show(id),
                Some(_) => method_not_allowed(&self.info, "GET"),
                None => self.info.json_error(404, &format!("no route for {}", req.path)),
            },
        }
    }

    fn create(&self, req: &Request) -> Response {
        if let Some(ct) = req.header("content-type") {
            let media = ct.split(';').next().unwrap_or("").trim();
            if !media.eq_ignore_ascii_case("application/json") {
                return self
                    .info
                    .json_error(415, &format!("content-type must be application/json, not {media:?}"));
            }
        }
        let (product_id, quantity) = match parse_order(&req.body) {
            Ok(fields) => fields,
            Err(why) => return self.info.json_error(400, &why),
        };
        let order = {
            let mut store = self.store();
            let n = store.next;
            store.next += 1;
            let order = Order {
                id: format!("o-{n}"),
                product_id,
                quantity,
            };
            store.orders.insert(n, order.clone());
            while store.orders.len() > MAX_ORDERS {
                store.orders.pop_first();
            }
            order
        };
        self.order_json(201, &order)
            .with_header("Location", &format!("/api/orders/{}", order.id))
    }

    fn show(&self, id: &str) -> Response {
        let number = id.strip_prefix("o-").and_then(|n| n.parse::<u64>().ok());
        let found = number.and_then(|n| self.store().orders.get(&n).cloned());
        match found {
            Some(order) => self.order_json(200, &order),
            None => self.info.json_error(404, &format!("no order with id {id:?}")),
        }
    }

    fn list(&self) -> Response {
        let recent: Vec<Json> = self
            .store()
            .orders
            .values()
            .rev()
            .take(20)
            .map(|o| {
                Json::obj([
                    ("id", Json::str(&o.id)),
                    ("product_id", Json::str(&o.product_id)),
                    ("quantity", Json::int(o.quantity)),
                ])
            })
            .collect();
        self.info.json(200, vec![("orders".into(), Json::Array(recent))])
    }
}

/// Validates an order body; the error text is shown to the user by the BFF.
pub fn parse_order(body: &[u8]) -> Result<(String, i64), String> {
    let text = std::str::from_utf8(body).map_err(|_| "body is not UTF-8".to_string())?;
    if text.trim().is_empty() {
        return Err("body is empty; expected {\"product_id\": \"p1\", \"quantity\": 1}".into());
    }
    let v = Json::parse(text).map_err(|e| format!("body is not valid JSON: {e}"))?;
    if !matches!(v, Json::Object(_)) {
        return Err("body must be a JSON object".into());
    }
    let product_id = match v.get("product_id") {
        None => return Err("product_id is missing".into()),
        Some(Json::String(s)) => s.trim().to_string(),
        Some(_) => return Err("product_id must be a string".into()),
    };
    if product_id.is_empty() {
        return Err("product_id must not be empty".into());
    }
    if product_id.chars().count() > MAX_PRODUCT_ID || product_id.chars().any(char::is_control) {
        return Err(format!(
            "product_id must be at most {MAX_PRODUCT_ID} printable characters"
        ));
    }
    let quantity = match v.get("quantity") {
        None => return Err("quantity is missing".into()),
        Some(q @ Json::Number(_)) => q.as_i64().ok_or("quantity must be a whole number between 1 and 99")?,
        Some(_) => return Err("quantity must be a number".into()),
    };
    if !(1..=99).contains(&quantity) {
        return Err(format!("quantity must be between 1 and 99, not {quantity}"));
    }
    Ok((product_id, quantity))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn orders() -> Orders {
        Orders::new(ServiceInfo::fixed("orders", "production"))
    }

    fn post(o: &Orders, body: &str) -> Response {
        o.handle(
            &Request::new("POST", "/api/orders")
                .with_header("Content-Type", "application/json")
                .with_body(body),
        )
    }

    fn json(r: &Response) -> Json {
        Json::parse(&r.body_text()).unwrap()
    }

    #[test]
    fn creates_and_reads_back_orders() {
        let o = orders();
        let r = post(&o, r#"{"product_id": "p1", "quantity": 2}"#);
        assert_eq!(r.status, 201, "{}", r.body_text());
        assert_eq!(r.header("location"), Some("/api/orders/o-1"));
        let v = json(&r);
        assert_eq!(v.get("id").and_then(Json::as_str), Some("o-1"));
        assert_eq!(v.get("product_id").and_then(Json::as_str), Some("p1"));
        assert_eq!(v.get("quantity").and_then(Json::as_i64), Some(2));
        assert_eq!(v.get("environment").and_then(Json::as_str), Some("production"));
        assert_eq!(v.get("service").and_then(Json::as_str), Some("orders"));

        assert_eq!(
            json(&post(&o, r#"{"product_id":"p2","quantity":99}"#))
                .get("id")
                .and_then(Json::as_str),
            Some("o-2")
        );
        let r = o.handle(&Request::new("GET", "/api/orders/o-1"));
        assert_eq!(r.status, 200);
        assert_eq!(json(&r).get("quantity").and_then(Json::as_i64), Some(2));
        let list = json(&o.handle(&Request::new("GET", "/api/orders")));
        let ids: Vec<_> = list
            .get("orders")
            .and_then(Json::as_array)
            .unwrap()
            .iter()
            .filter_map(|o| o.get("id")?.as_str())
            .collect();
        assert_eq!(ids, ["o-2", "o-1"]);
    }

    #[test]
    fn unknown_orders_are_404() {
        let o = orders();
        for id in ["o-1", "o-x", "1", "o-99999999999999999999999"] {
            let r = o.handle(&Request::new("GET", &format!("/api/orders/{id}")));
            assert_eq!(r.status, 404, "{id}");
            assert_eq!(json(&r).get("environment").and_then(Json::as_str), Some("production"));
        }
    }

    #[test]
    fn validates_bodies() {
        let o = orders();
        for (body, why) in [
            ("", "body is empty"),
            ("not json", "not valid JSON"),
            ("[1]", "must be a JSON object"),
            (r#"{"quantity": 1}"#, "product_id is missing"),
            (r#"{"product_id": "", "quantity": 1}"#, "must not be empty"),
            (r#"{"product_id": "  ", "quantity": 1}"#, "must not be empty"),
            (r#"{"product_id": 7, "quantity": 1}"#, "must be a string"),
            (r#"{"product_id": "p1"}"#, "quantity is missing"),
            (r#"{"product_id": "p1", "quantity": "2"}"#, "must be a number"),
            (r#"{"product_id": "p1", "quantity": 2.5}"#, "whole number"),
            (r#"{"product_id": "p1", "quantity": 1e2}"#, "whole number"),
            (r#"{"product_id": "p1", "quantity": 0}"#, "between 1 and 99"),
            (r#"{"product_id": "p1", "quantity": 100}"#, "between 1 and 99"),
            (r#"{"product_id": "p1", "quantity": -1}"#, "between 1 and 99"),
            (
                r#"{"product_id": "p1", "quantity": 99999999999999999999}"#,
                "whole number",
            ),
            (r#"{"product_id": "p\u0000", "quantity": 1}"#, "printable"),
        ] {
            let r = post(&o, body);
            assert_eq!(r.status, 400, "{body}");
            let err = json(&r).get("error").and_then(Json::as_str).unwrap().to_string();
            assert!(err.contains(why), "{body}: {err}");
        }
        let long = format!(r#"{{"product_id": "{}", "quantity": 1}}"#, "x".repeat(65));
        assert_eq!(post(&o, &long).status, 400);
        let r = o.handle(&Request::new("POST", "/api/orders").with_body(vec![0xff, 0xfe]));
        assert_eq!(r.status, 400);
        let r = o.handle(
            &Request::new("POST", "/api/orders")
                .with_header("Content-Type", "text/plain")
                .with_body("{}"),
        );
        assert_eq!(r.status, 415);
        // Nothing was stored by the failures.
        assert_eq!(
            json(&o.handle(&Request::new("GET", "/api/orders")))
                .get("orders")
                .and_then(Json::as_array)
                .map(<[Json]>::len),
            Some(0)
        );
    }

    #[test]
    fn methods_health_and_routes() {
        let o = orders();
        assert_eq!(
            o.handle(&Request::new("DELETE", "/api/orders")).header("allow"),
            Some("GET, POST")
        );
        assert_eq!(o.handle(&Request::new("POST", "/api/orders/o-1")).status, 405);
        assert_eq!(o.handle(&Request::new("GET", "/api/catalog/products")).status, 404);
        assert_eq!(o.handle(&Request::new("GET", "/health")).status, 200);
        let mut failing = ServiceInfo::fixed("orders", "staging");
        failing.fail_health = true;
        let r = Orders::new(failing).handle(&Request::new("GET", "/health"));
        assert_eq!(r.status, 500);
        assert!(r.body_text().contains("FAIL_HEALTH"));
    }

    #[test]
    fn the_store_is_bounded() {
        let o = orders();
        for _ in 0..MAX_ORDERS + 5 {
            assert_eq!(post(&o, r#"{"product_id":"p1","quantity":1}"#).status, 201);
        }
        assert_eq!(o.store().orders.len(), MAX_ORDERS);
        assert_eq!(o.handle(&Request::new("GET", "/api/orders/o-1")).status, 404);
        assert_eq!(
            o.handle(&Request::new("GET", &format!("/api/orders/o-{}", MAX_ORDERS + 5)))
                .status,
            200
        );
    }
}
