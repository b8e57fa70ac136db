//! The OpenAPI description (`GET /api/v1/openapi.json`) as a fresh
//! `gantry server` serves it: valid OpenAPI 3.1 by PyPI's
//! `openapi-spec-validator`, and true of the server by PyPI's
//! `schemathesis`: every operation fuzzed with schema-valid and invalid
//! input, every check on (no 5xx, every status, content type, header and
//! body as documented, invalid input refused) but one:
//! `positive_data_acceptance`, which wants every schema-valid request
//! accepted. The server checks more than JSON Schema can say (a pipeline
//! file's text, a grant, a parameter name's rules, a decision's words),
//! and refuses the rest with a documented 400 or 422 and an `ErrorBody`,
//! which the other checks hold it to.
//!
//! Both tools live in a Python venv that `scripts/test` creates and names
//! in `GANTRY_PY_VENV`; without it these tests say so and pass.
//!
//! `POST /api/v1/shutdown` is left out of the fuzzing (it stops the server
//! under test; the role matrix in crates/server/tests/trust.rs calls it).
//! The operations that can take the fuzzer's own token away (removing a
//! user, revoking a token, replacing grants) are fuzzed last, on their own,
//! so that the others run with a working admin token. The long poll
//! (`GET /api/v1/changes`, which may wait 60 s by contract) is fuzzed on its
//! own, with few examples and a request timeout above its longest wait.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

/// The venv holding both tools, or `None` (with a note) when unset.
fn venv(test: &str) -> Option<PathBuf> {
    match std::env::var_os("GANTRY_PY_VENV") {
        Some(dir) if Path::new(&dir).join("bin/schemathesis").is_file() => Some(dir.into()),
        _ => {
            println!(
                "skipped {test}: GANTRY_PY_VENV names no venv with openapi-spec-validator and schemathesis (scripts/test creates one)"
            );
            None
        }
    }
}

/// A `gantry server` on a fresh data dir, killed when the test ends.
struct Server {
    child: std::process::Child,
    dir: tempfile::TempDir,
    /// `127.0.0.1:PORT`.
    addr: String,
    token: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    fn start() -> Server {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let log = std::fs::File::create(dir.path().join("server.log")).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_gantry"))
            .env_remove("GANTRY_DATA_DIR")
            .env_remove("GANTRY_TOKEN")
            .env_remove("GANTRY_SERVER")
            .env("GANTRY_LOG", "warn")
            .args(["server", "--data-dir"])
            .arg(&data)
            .args([
                "--listen",
                "127.0.0.1:0",
                "--registry-listen",
                "127.0.0.1:0",
            ])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let api = gantry_clock::blocking_poll(
            Duration::from_secs(60),
            Duration::from_millis(100),
            || {
                let info: Value =
                    serde_json::from_str(&std::fs::read_to_string(data.join("server.json")).ok()?)
                        .ok()?;
                info["api"].as_str().map(str::to_string)
            },
        );
        let mut server = Server {
            child,
            addr: String::new(),
            token: String::new(),
            dir,
        };
        let Some(api) = api else {
            panic!("the server did not start: {}", server.log());
        };
        server.addr = api.trim_start_matches("http://").to_string();
        server.token = std::fs::read_to_string(data.join("admin.token"))
            .unwrap()
            .trim()
            .to_string();
        server
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// `GET path` as the admin: the status and the body.
    fn get(&self, path: &str) -> (u16, String) {
        let mut stream = std::net::TcpStream::connect(&self.addr).unwrap();
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\nConnection: close\r\n\r\n",
            self.addr, self.token
        )
        .unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).unwrap();
        let (head, body) = answer.split_once("\r\n\r\n").unwrap();
        let status = head.split(' ').nth(1).unwrap().parse().unwrap();
        // Chunked or not: the document is one JSON value, from `{` to `}`.
        let body = match (body.find('{'), body.rfind('}')) {
            (Some(start), Some(end)) => body[start..=end].to_string(),
            _ => body.to_string(),
        };
        (status, body)
    }

    /// The served document, written to a file for the tools.
    fn document(&self) -> PathBuf {
        let (status, body) = self.get("/api/v1/openapi.json");
        assert_eq!(status, 200, "{body}");
        let document: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(document["openapi"], "3.1.0");
        let path = self.dir.path().join("openapi.json");
        std::fs::write(&path, body).unwrap();
        path
    }
}

#[test]
fn the_served_description_is_valid_openapi_3_1() {
    let Some(venv) = venv("the OpenAPI validator") else {
        return;
    };
    let server = Server::start();
    let document = server.document();
    let out = Command::new(venv.join("bin/openapi-spec-validator"))
        .arg(&document)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    println!("{text}");
    assert!(out.status.success(), "openapi-spec-validator: {text}");
    assert!(text.contains(": OK"), "{text}");
}

/// The operations that may take the fuzzer's token away.
const SELF_DISARMING: &[&str] = &["removeUser", "revokeToken", "setGrants"];

/// Runs schemathesis on `operations` (`--include` or `--exclude`
/// operation ids), every check on; returns its output, or fails.
fn fuzz(venv: &Path, server: &Server, document: &Path, select: &[String]) -> String {
    let examples = std::env::var("GANTRY_FUZZ_EXAMPLES").unwrap_or_else(|_| "25".into());
    let out = Command::new(venv.join("bin/schemathesis"))
        .arg("run")
        .arg(document)
        .args(["--url", &format!("http://{}", server.addr)])
        .args(["-H", &format!("Authorization: Bearer {}", server.token)])
        .args([
            "--checks",
            "all",
            "--exclude-checks",
            "positive_data_acceptance",
        ])
        .args(["--max-examples", &examples])
        .args(["--workers", "2", "--generation-database", "none"])
        .args(["--no-color", "--suppress-health-check", "all"])
        .args(select)
        .current_dir(server.dir.path())
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "schemathesis found failures:\n{text}\nserver log:\n{}",
        server.log()
    );
    text
}

#[test]
fn schemathesis_finds_every_answer_of_every_operation_as_documented() {
    let Some(venv) = venv("schemathesis") else {
        return;
    };
    let server = Server::start();
    let document = server.document();
    let mut others = Vec::new();
    for id in ["shutdown", "changes"] {
        others.extend(["--exclude-operation-id".to_string(), id.to_string()]);
    }
    let mut last = Vec::new();
    for id in SELF_DISARMING {
        others.extend(["--exclude-operation-id".to_string(), id.to_string()]);
        last.extend(["--include-operation-id".to_string(), id.to_string()]);
    }
    let text = fuzz(&venv, &server, &document, &others);
    println!("{text}");
    let text = fuzz(&venv, &server, &document, &last);
    println!("{text}");
    let long_poll = [
        "--include-operation-id",
        "changes",
        "--phases",
        "fuzzing",
        "--request-timeout",
        "65",
        "--max-response-time",
        "65",
        // The last of a repeated option wins: few examples here.
        "--max-examples",
        "3",
    ];
    let text = fuzz(&venv, &server, &document, &long_poll.map(String::from));
    println!("{text}");
    // The server is still up and answers as documented.
    let (status, _) = server.get("/api/v1/health");
    assert_eq!(status, 200, "{}", server.log());
}
