//! The BFF's executable: see the library for its pages.

use std::process::ExitCode;

use bff::{Backends, Bff};
use shop_http::ServiceInfo;
use shop_http::server::log_line;

const USAGE: &str = "bff: the shop's web front end (server-rendered HTML, no JavaScript)

Usage: bff [--version]

Environment:
  SERVICE_DNS         the load balancer that routes /api/catalog/* and /api/orders* to
                      the backends, as http://IP:PORT (no DNS lookups); required
  CATALOG_URL, ORDERS_URL
                      local runs only, used when SERVICE_DNS is unset: each backend's
                      own http://IP:PORT
  PORT                listen on 0.0.0.0:PORT (default 8080)
  GANTRY_ENVIRONMENT  environment name shown on every page (default local)
  GANTRY_REVISION     deployment revision shown on every page (default dev)
  FAIL_HEALTH=1       make GET /health answer 500 (demo of a broken deploy)";

fn main() -> ExitCode {
    let info = ServiceInfo::from_env("bff");
    if let Some(code) = shop_http::handle_args(&info, USAGE) {
        return code;
    }
    // A BFF without backends cannot serve a page: fail at start-up, where a
    // deploy's health check sees it, not on every request.
    let backends = match Backends::from_env() {
        Ok(backends) => backends,
        Err(e) => {
            eprintln!("bff: {e}");
            return ExitCode::from(2);
        }
    };
    log_line(
        "bff",
        format_args!(
            "backends: catalog at {}, orders at {} (SERVICE_DNS: {})",
            backends.catalog.url(),
            backends.orders.url(),
            backends.service_dns
        ),
    );
    let bff = Bff::new(info.clone(), backends);
    shop_http::run(&info, move |req| bff.handle(req))
}
