//! What every shop service shares: its identity from the environment, the
//! `/health` answer, and `main`'s start-up.

use std::net::{Ipv4Addr, SocketAddr};
use std::process::ExitCode;

use crate::json::Json;
use crate::request::Request;
use crate::response::Response;
use crate::server::{Server, ServerConfig, log_line};

/// A service's identity, read from the environment gantry's runtime sets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceInfo {
    /// The service's name: `catalog`, `orders`, `bff`.
    pub service: String,
    /// `GANTRY_ENVIRONMENT` (`staging`, `production`, …), `local` if unset.
    pub environment: String,
    /// `GANTRY_REVISION`, the deployment revision, `dev` if unset.
    pub revision: String,
    /// `FAIL_HEALTH=1`: `/health` answers 500, to demo a broken deploy.
    pub fail_health: bool,
}

impl ServiceInfo {
    /// Reads `GANTRY_ENVIRONMENT`, `GANTRY_REVISION` and `FAIL_HEALTH`.
    pub fn from_env(service: &str) -> ServiceInfo {
        let var = |name: &str| {
            std::env::var(name)
                .ok()
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        ServiceInfo {
            service: service.to_string(),
            environment: var("GANTRY_ENVIRONMENT").unwrap_or_else(|| "local".into()),
            revision: var("GANTRY_REVISION").unwrap_or_else(|| "dev".into()),
            fail_health: var("FAIL_HEALTH").is_some_and(|v| is_truthy(&v)),
        }
    }

    /// A fixed identity, for tests.
    pub fn fixed(service: &str, environment: &str) -> ServiceInfo {
        ServiceInfo {
            service: service.into(),
            environment: environment.into(),
            revision: "test".into(),
            fail_health: false,
        }
    }

    /// The `/health` response: 200 `ok`, or 500 when `FAIL_HEALTH` is set.
    pub fn health(&self) -> Response {
        if self.fail_health {
            Response::text(500, "failing on purpose (FAIL_HEALTH is set)\n")
        } else {
            Response::text(200, "ok")
        }
    }

    /// The members every JSON response carries, so a page or a test can tell
    /// which environment's backend answered.
    pub fn identity(&self) -> Vec<(String, Json)> {
        vec![
            ("environment".into(), Json::str(&self.environment)),
            ("service".into(), Json::str(&self.service)),
            ("revision".into(), Json::str(&self.revision)),
        ]
    }

    /// A JSON response with `members` followed by the identity members.
    pub fn json(&self, status: u16, members: Vec<(String, Json)>) -> Response {
        let mut all = members;
        all.extend(self.identity());
        Response::json(status, &Json::Object(all)).with_header("X-Shop-Service", &self.label())
    }

    /// A JSON error: `{"error": why, environment, service, revision}`.
    pub fn json_error(&self, status: u16, why: &str) -> Response {
        self.json(status, vec![("error".into(), Json::str(why))])
    }

    /// `catalog@staging (revision 3)`.
    pub fn label(&self) -> String {
        format!("{}@{} (revision {})", self.service, self.environment, self.revision)
    }
}

fn is_truthy(v: &str) -> bool {
    matches!(v.to_ascii_lowercase().as_str(), "1" | "true" | "yes" | "on")
}

/// `PORT`, default 8080.
pub fn port_from_env() -> Result<u16, String> {
    match std::env::var("PORT") {
        Err(_) => Ok(8080),
        Ok(p) if p.trim().is_empty() => Ok(8080),
        Ok(p) => p
            .trim()
            .parse::<u16>()
            .map_err(|_| format!("PORT={p:?} is not a port number")),
    }
}

/// Normalises a path for routing: one trailing `/` is ignored.
pub fn route_path(req: &Request) -> &str {
    let p = req.path.as_str();
    if p.len() > 1 {
        p.strip_suffix('/').unwrap_or(p)
    } else {
        p
    }
}

/// A 405 JSON response naming the allowed methods.
pub fn method_not_allowed(info: &ServiceInfo, allow: &str) -> Response {
    info.json_error(405, &format!("method not allowed; use {allow}"))
        .with_header("Allow", allow)
}

/// Handles `--version` / `--help`; `Some(code)` means exit now.
pub fn handle_args(info: &ServiceInfo, usage: &str) -> Option<ExitCode> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        None => None,
        Some("--version" | "-V") => {
            println!("{} {}", info.service, env!("CARGO_PKG_VERSION"));
            Some(ExitCode::SUCCESS)
        }
        Some("--help" | "-h") => {
            println!("{usage}");
            Some(ExitCode::SUCCESS)
        }
        Some(other) => {
            eprintln!("{}: unexpected argument {other:?}\n\n{usage}", info.service);
            Some(ExitCode::from(2))
        }
    }
}

/// `main` for a service: binds `0.0.0.0:$PORT`, serves until SIGTERM.
pub fn run<H>(info: &ServiceInfo, handler: H) -> ExitCode
where
    H: Fn(&Request) -> Response + Send + Sync + 'static,
{
    let port = match port_from_env() {
        Ok(port) => port,
        Err(e) => {
            eprintln!("{}: {e}", info.service);
            return ExitCode::from(2);
        }
    };
    let addr = SocketAddr::from((Ipv4Addr::UNSPECIFIED, port));
    let server = match Server::bind(addr, ServerConfig::new(&info.service), handler) {
        Ok(server) => server,
        Err(e) => {
            eprintln!("{}: cannot listen on {addr}: {e}", info.service);
            return ExitCode::FAILURE;
        }
    };
    log_line(
        &info.service,
        format_args!(
            "{} listening on {addr}: environment={} revision={}{}",
            env!("CARGO_PKG_VERSION"),
            info.environment,
            info.revision,
            if info.fail_health {
                " FAIL_HEALTH=1 (/health answers 500)"
            } else {
                ""
            }
        ),
    );
    match server.run_until_signal() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{}: {e}", info.service);
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_and_identity() {
        let mut info = ServiceInfo::fixed("orders", "staging");
        assert_eq!(info.health().status, 200);
        info.fail_health = true;
        assert_eq!(info.health().status, 500);
        let r = info.json_error(404, "nope");
        assert_eq!(r.status, 404);
        assert_eq!(
            r.body_text(),
            r#"{"error":"nope","environment":"staging","service":"orders","revision":"test"}"#
        );
        assert_eq!(r.header("x-shop-service"), Some("orders@staging (revision test)"));
        assert!(is_truthy("TRUE") && !is_truthy("0"));
    }

    #[test]
    fn route_path_ignores_one_trailing_slash() {
        assert_eq!(route_path(&Request::new("GET", "/")), "/");
        assert_eq!(route_path(&Request::new("GET", "/a/?x")), "/a");
        assert_eq!(route_path(&Request::new("GET", "/a")), "/a");
    }
}
