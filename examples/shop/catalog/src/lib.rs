//! The catalog service: five fixed products, as JSON.
//!
//! - `GET /api/catalog/products` → `{"products": [...], environment, service, revision}`
//! - `GET /api/catalog/products/{id}` → `{id, name, price_cents, description, environment, service, revision}`, or 404
//! - `GET /api/catalog` → which service, environment and revision answered
//! - `GET /health` → `ok`

use shop_http::{Json, Request, Response, ServiceInfo, method_not_allowed, route_path};

/// A product.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Product {
    /// Stable id, used in URLs: `p1` … `p5`.
    pub id: &'static str,
    /// Display name.
    pub name: &'static str,
    /// Price in cents.
    pub price_cents: u32,
    /// One line of description.
    pub description: &'static str,
}

impl Product {
    /// The product as JSON.
    pub fn to_json(&self) -> Json {
        Json::obj([
            ("id", Json::str(self.id)),
            ("name", Json::str(self.name)),
            ("price_cents", Json::int(i64::from(self.price_cents))),
            ("description", Json::str(self.description)),
        ])
    }
}

/// The whole catalog.
pub const PRODUCTS: [Product; 5] = [
    Product {
        id: "p1",
        name: "Espresso Beans",
        price_cents: 1299,
        description: "Dark roast, 1 kg bag, for a strong morning.",
    },
    Product {
        id: "p2",
        name: "Pour-Over Kettle",
        price_cents: 4550,
        description: "Gooseneck kettle, 0.8 l, stainless steel.",
    },
    Product {
        id: "p3",
        name: "Ceramic Mug",
        price_cents: 899,
        description: "Hand-glazed, 350 ml, dishwasher safe.",
    },
    Product {
        id: "p4",
        name: "Burr Grinder",
        price_cents: 8900,
        description: "Conical burrs, 40 grind settings.",
    },
    Product {
        id: "p5",
        name: "Paper Filters",
        price_cents: 499,
        description: "Pack of 100, unbleached.",
    },
];

/// Finds a product by id.
pub fn find(id: &str) -> Option<&'static Product> {
    PRODUCTS.iter().find(|p| p.id == id)
}

/// The catalog service's request handler.
#[derive(Debug, Clone)]
pub struct Catalog {
    info: ServiceInfo,
}

const PREFIX: &str = "/api/catalog/products";

impl Catalog {
    /// A catalog answering as `info`.
    pub fn new(info: ServiceInfo) -> Catalog {
        Catalog { info }
    }

    /// Answers one request.
    pub fn handle(&self, req: &Request) -> Response {
        let path = route_path(req);
        let get = req.method == "GET";
        if path == "/health" {
            return if get {
                self.info.health()
            } else {
                method_not_allowed(&self.info, "GET")
            };
        }
        if path == "/api/catalog" {
            if !get {
                return method_not_allowed(&self.info, "GET");
            }
            let endpoints = ["GET /api/catalog/products", "GET /api/catalog/products/{id}"];
            return self.info.json(
                200,
                vec![(
                    "endpoints".into(),
                    Json::Array(endpoints.iter().map(|e| Json::str(*e)).collect()),
                )],
            );
        }
        if path == PREFIX {
            if !get {
                return method_not_allowed(&self.info, "GET");
            }
            let products = PRODUCTS.iter().map(Product::to_json).collect();
            return self.info.json(200, vec![("products".into(), Json::Array(products))]);
        }
        if let Some(id) = path.strip_prefix(PREFIX).and_then(|rest| rest.strip_prefix('/')) {
            if !get {
                return method_not_allowed(&self.info, "GET");
            }
            return match find(id) {
                Some(product) => {
                    // The product's members, then the identity members.
                    let members = match product.to_json() {
                        Json::Object(m) => m,
                        _ => Vec::new(),
                    };
                    self.info.json(200, members)
                }
                None => self.info.json_error(404, &format!("no product with id {id:?}")),
            };
        }
        self.info.json_error(404, &format!("no route for {}", req.path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn catalog() -> Catalog {
        Catalog::new(ServiceInfo::fixed("catalog", "staging"))
    }

    fn json(r: &Response) -> Json {
        Json::parse(&r.body_text()).unwrap()
    }

    #[test]
    fn lists_five_products_with_identity() {
        let r = catalog().handle(&Request::new("GET", "/api/catalog/products"));
        assert_eq!(r.status, 200);
        assert_eq!(r.header("content-type"), Some("application/json"));
        let v = json(&r);
        assert_eq!(v.get("environment").and_then(Json::as_str), Some("staging"));
        assert_eq!(v.get("service").and_then(Json::as_str), Some("catalog"));
        let products = v.get("products").and_then(Json::as_array).unwrap();
        assert_eq!(products.len(), 5);
        assert_eq!(products[0].get("id").and_then(Json::as_str), Some("p1"));
        assert_eq!(products[0].get("price_cents").and_then(Json::as_i64), Some(1299));
        // Trailing slash and query are fine.
        assert_eq!(
            catalog()
                .handle(&Request::new("GET", "/api/catalog/products/?x=1"))
                .status,
            200
        );
    }

    #[test]
    fn one_product_or_404() {
        let r = catalog().handle(&Request::new("GET", "/api/catalog/products/p3"));
        assert_eq!(r.status, 200);
        let v = json(&r);
        assert_eq!(v.get("name").and_then(Json::as_str), Some("Ceramic Mug"));
        assert_eq!(v.get("id").and_then(Json::as_str), Some("p3"));
        assert_eq!(v.get("environment").and_then(Json::as_str), Some("staging"));

        let r = catalog().handle(&Request::new("GET", "/api/catalog/products/nope%22"));
        assert_eq!(r.status, 404);
        let v = json(&r);
        assert_eq!(
            v.get("error").and_then(Json::as_str),
            Some("no product with id \"nope%22\"")
        );
        assert_eq!(v.get("service").and_then(Json::as_str), Some("catalog"));
        assert_eq!(
            catalog()
                .handle(&Request::new("GET", "/api/catalog/products/p1/x"))
                .status,
            404
        );
    }

    #[test]
    fn health_methods_and_unknown_paths() {
        let c = catalog();
        assert_eq!(c.handle(&Request::new("GET", "/health")).body_text(), "ok");
        let r = c.handle(&Request::new("POST", "/api/catalog/products"));
        assert_eq!(r.status, 405);
        assert_eq!(r.header("allow"), Some("GET"));
        assert_eq!(c.handle(&Request::new("GET", "/")).status, 404);
        assert_eq!(c.handle(&Request::new("GET", "/api/catalog")).status, 200);
        let mut failing = ServiceInfo::fixed("catalog", "x");
        failing.fail_health = true;
        assert_eq!(
            Catalog::new(failing).handle(&Request::new("GET", "/health")).status,
            500
        );
    }

    #[test]
    fn product_ids_are_unique() {
        for (i, p) in PRODUCTS.iter().enumerate() {
            assert_eq!(PRODUCTS.iter().position(|q| q.id == p.id), Some(i));
            assert!(p.id.bytes().all(|b| b.is_ascii_alphanumeric()));
        }
    }
}
