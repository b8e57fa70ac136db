//! The orders service's executable: see the library for its endpoints.

use std::process::ExitCode;

use orders::Orders;
use shop_http::ServiceInfo;

const USAGE: &str = "orders: the shop's order service (HTTP, JSON, in-memory store)

Usage: orders [--version]

Environment:
  PORT                listen on 0.0.0.0:PORT (default 8080)
  GANTRY_ENVIRONMENT  environment name reported in every response (default local)
  GANTRY_REVISION     deployment revision reported in every response (default dev)
  FAIL_HEALTH=1       make GET /health answer 500 (demo of a broken deploy)";

fn main() -> ExitCode {
    let info = ServiceInfo::from_env("orders");
    if let Some(code) = shop_http::handle_args(&info, USAGE) {
        return code;
    }
    let orders = Orders::new(info.clone());
    shop_http::run(&info, move |req| orders.handle(req))
}
