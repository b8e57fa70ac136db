//! dev-router: a stand-in for the load balancer, for running the shop on one
//! machine without gantry. Routes by path, as the pipeline's load balancer
//! does: `/api/catalog` and `/api/catalog/*` to the catalog, `/api/orders`
//! and `/api/orders/*` to orders, everything else to the BFF.
//!
//! ```sh
//! cargo run -p shop-http --example dev_router -- 127.0.0.1:18080 \
//!     http://127.0.0.1:18081 http://127.0.0.1:18082 http://127.0.0.1:18083
//! ```
//!
//! Not part of any image: the services never need it in a pipeline.

use std::process::ExitCode;
use std::time::Duration;

use shop_http::client::{self, Endpoint};
use shop_http::server::{Server, ServerConfig};
use shop_http::{Request, Response};

/// Headers that describe one hop, not the message (RFC 9110 §7.6.1), plus
/// the ones the server and client set themselves.
const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "proxy-connection",
    "content-length",
    "host",
];

fn route<'a>(
    path: &str,
    catalog: &'a Endpoint,
    orders: &'a Endpoint,
    bff: &'a Endpoint,
) -> (&'static str, &'a Endpoint) {
    let under = |prefix: &str| path == prefix || path.starts_with(&format!("{prefix}/"));
    if under("/api/catalog") {
        ("catalog", catalog)
    } else if under("/api/orders") {
        ("orders", orders)
    } else {
        ("bff", bff)
    }
}

fn forward(req: &Request, upstream: &Endpoint) -> Response {
    let headers: Vec<(&str, &str)> = req
        .headers
        .iter()
        .filter(|(n, _)| !HOP_BY_HOP.iter().any(|h| n.eq_ignore_ascii_case(h)) && !n.eq_ignore_ascii_case("date"))
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    match client::request(
        upstream,
        &req.method,
        &req.target(),
        &headers,
        &req.body,
        Duration::from_secs(10),
    ) {
        Ok(r) => {
            let mut response = Response::new(r.status).with_body(r.body);
            for (name, value) in &r.headers {
                if !HOP_BY_HOP.iter().any(|h| name.eq_ignore_ascii_case(h)) {
                    response = response.with_header(name, value);
                }
            }
            response
        }
        Err(e) => Response::text(502, format!("dev-router: {e}\n")),
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [listen, catalog, orders, bff] = args.as_slice() else {
        eprintln!("usage: dev_router LISTEN_ADDR CATALOG_URL ORDERS_URL BFF_URL");
        return ExitCode::from(2);
    };
    let parse = |what: &str, url: &str| Endpoint::parse(url).map_err(|e| format!("{what}: {e}"));
    let (catalog, orders, bff) = match (parse("catalog", catalog), parse("orders", orders), parse("bff", bff)) {
        (Ok(c), Ok(o), Ok(b)) => (c, o, b),
        (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => {
            eprintln!("dev_router: {e}");
            return ExitCode::from(2);
        }
    };
    let Ok(addr) = listen.parse() else {
        eprintln!("dev_router: {listen:?} is not an IP:PORT");
        return ExitCode::from(2);
    };
    let server = Server::bind(addr, ServerConfig::new("dev-router"), move |req: &Request| {
        let (_, upstream) = route(&req.path, &catalog, &orders, &bff);
        forward(req, upstream)
    });
    match server {
        Ok(server) => {
            println!("dev-router listening on {addr}");
            match server.run_until_signal() {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("dev_router: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Err(e) => {
            eprintln!("dev_router: cannot listen on {addr}: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_like_the_load_balancer() {
        let e = |p: u16| Endpoint::parse(&format!("http://127.0.0.1:{p}")).unwrap();
        let (c, o, b) = (e(1), e(2), e(3));
        for (path, want) in [
            ("/api/catalog/products", "catalog"),
            ("/api/catalog", "catalog"),
            ("/api/orders", "orders"),
            ("/api/orders/o-1", "orders"),
            ("/api/ordersx", "bff"),
            ("/", "bff"),
            ("/products/p1", "bff"),
            ("/health", "bff"),
        ] {
            assert_eq!(route(path, &c, &o, &b).0, want, "{path}");
        }
    }
}
