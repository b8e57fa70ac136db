//! HTTP/2 through `apply`: an http listener with `http2: true` serves
//! curl's h2c (prior knowledge) and HTTP/1.1 on the same port; one without
//! it answers HTTP/1.1 only.

use std::process::Command;

use gantry_server::RunningServer;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// curl's `(http_version, status, body)`, or `None` when curl failed.
fn curl(port: u16, flag: &str) -> Option<(String, String, String)> {
    let output = Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "5",
            flag,
            "-w",
            "\n%{http_version} %{http_code}",
        ])
        .arg(format!("http://127.0.0.1:{port}/anything"))
        .output()
        .unwrap();
    if !output.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let (body, tail) = text.rsplit_once('\n')?;
    let (version, status) = tail.split_once(' ')?;
    Some((version.to_owned(), status.to_owned(), body.to_owned()))
}

fn project(name: &str, port: u16, http2: bool) -> String {
    format!(
        r#"
version: 1
environments:
  {name}:
    runtime: process
    load_balancer:
      listeners:
        - name: main
          listen: "127.0.0.1:{port}"
          http2: {http2}
          default_action: {{fixed_response: {{status: 200, content_type: text/plain, body: "{name}"}}}}
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_listener_with_http2_serves_h2c_beside_http1() {
    let dir = tempfile::tempdir().unwrap();
    let listen = "127.0.0.1:0".parse().unwrap();
    let server = RunningServer::start(&dir.path().join("data"), listen, listen)
        .await
        .unwrap();
    let (h2c, plain) = (free_port(), free_port());
    for (name, port, http2) in [("grpc", h2c, true), ("web", plain, false)] {
        let file = dir.path().join(format!("{name}.yaml"));
        let text = project(name, port, http2);
        std::fs::write(&file, &text).unwrap();
        server
            .plane
            .apply_file(&file, &text, &Default::default())
            .await
            .unwrap();
    }
    tokio::task::spawn_blocking(move || {
        let ok = |version: &str, body: &str| {
            Some((version.to_owned(), "200".to_owned(), body.to_owned()))
        };
        assert_eq!(curl(h2c, "--http2-prior-knowledge"), ok("2", "grpc"));
        assert_eq!(curl(h2c, "--http1.1"), ok("1.1", "grpc"));
        assert_eq!(curl(plain, "--http1.1"), ok("1.1", "web"));
        // Without `http2`, the preface is not HTTP/1.1: no answer.
        assert_eq!(curl(plain, "--http2-prior-knowledge"), None);
    })
    .await
    .unwrap();
}
