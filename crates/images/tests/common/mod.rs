//! Test support: real `docker-registry` instances, a scriptable HTTP server for
//! retry and auth behaviour, and gates on environment variables.

#![allow(dead_code, unreachable_pub, unused_imports)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use gantry_images::{ClientOptions, Digest, Reference, RegistryClient};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub use gantry_testkit::{TestRegistry, docker_tests_enabled, registry_tests_enabled};

/// `registry.image("name")`: `ADDR/name` of a test registry, parsed.
pub trait ImageName {
    fn image(&self, name: &str) -> Reference;
}

impl ImageName for TestRegistry {
    fn image(&self, name: &str) -> Reference {
        Reference::parse(&format!("{}/{name}", self.addr)).expect("test reference")
    }
}

/// A throwaway CA and a server certificate for 127.0.0.1 signed by it, made with
/// the openssl CLI: (dir, ca.pem, server cert, server key).
pub fn test_certificates() -> (tempfile::TempDir, PathBuf, PathBuf, PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let p = |name: &str| dir.path().join(name);
    let openssl = |args: &[&str]| {
        let output = Command::new("openssl")
            .args(args)
            .output()
            .expect("run openssl");
        assert!(
            output.status.success(),
            "openssl {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr)
        );
    };
    let s = |path: PathBuf| path.display().to_string();
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "1",
        "-subj",
        "/CN=gantry test CA",
        "-keyout",
        &s(p("ca.key")),
        "-out",
        &s(p("ca.pem")),
    ]);
    std::fs::write(p("ext.cnf"), "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n").unwrap();
    openssl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        &s(p("server.key")),
        "-out",
        &s(p("server.csr")),
    ]);
    openssl(&[
        "x509",
        "-req",
        "-in",
        &s(p("server.csr")),
        "-CA",
        &s(p("ca.pem")),
        "-CAkey",
        &s(p("ca.key")),
        "-CAcreateserial",
        "-days",
        "1",
        "-extfile",
        &s(p("ext.cnf")),
        "-out",
        &s(p("server.pem")),
    ]);
    let (ca, cert, key) = (p("ca.pem"), p("server.pem"), p("server.key"));
    (dir, ca, cert, key)
}

pub fn client() -> RegistryClient {
    RegistryClient::new(ClientOptions::default()).expect("client")
}

/// `skopeo inspect` of an image: its manifest digest.
pub fn skopeo_digest(image: &Reference) -> Digest {
    let output = Command::new("skopeo")
        .args([
            "inspect",
            "--tls-verify=false",
            &format!("docker://{image}"),
        ])
        .output()
        .expect("run skopeo (apt-get install skopeo)");
    assert!(
        output.status.success(),
        "skopeo inspect {image}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).expect("skopeo json");
    Digest::parse(json["Digest"].as_str().expect("Digest field")).expect("digest")
}

/// A context directory with a few files, a subdirectory and a symlink.
pub fn sample_context(marker: &str) -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("temp dir");
    let root = dir.path();
    std::fs::create_dir_all(root.join("bin")).unwrap();
    std::fs::write(
        root.join("bin/run.sh"),
        format!("#!/bin/sh\necho {marker}\n"),
    )
    .unwrap();
    std::fs::set_permissions(
        root.join("bin/run.sh"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    std::fs::write(root.join("config.txt"), marker).unwrap();
    std::os::unix::fs::symlink("bin/run.sh", root.join("run")).unwrap();
    dir
}

/// A context holding only a copy of the static busybox binary.
pub fn busybox_context() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    let busybox = which("busybox").expect("busybox (apt-get install busybox-static)");
    std::fs::copy(&busybox, dir.path().join("busybox")).expect("copy busybox");
    dir
}

pub fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| Path::new(d).join(program))
        .find(|p| p.is_file())
}

/// One HTTP answer of a [`ScriptedServer`].
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Answer {
    pub fn new(status: u16, body: &str) -> Answer {
        Answer {
            status,
            headers: vec![("Content-Type".into(), "application/json".into())],
            body: body.to_owned(),
        }
    }

    pub fn header(mut self, name: &str, value: &str) -> Answer {
        self.headers.push((name.into(), value.into()));
        self
    }
}

/// A request as the scripted server saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub headers: String,
}

type Script = dyn Fn(usize, &Seen) -> Answer + Send + Sync;

/// A loopback HTTP server answering each request with `script(n, request)`,
/// counting requests. It stands in for a misbehaving registry (5xx, 4xx, auth
/// challenges), which a real `docker-registry` cannot be made to be.
pub struct ScriptedServer {
    pub addr: String,
    pub count: Arc<AtomicUsize>,
    pub seen: Arc<std::sync::Mutex<Vec<Seen>>>,
    task: tokio::task::JoinHandle<()>,
}

impl ScriptedServer {
    pub async fn start(
        script: impl Fn(usize, &Seen) -> Answer + Send + Sync + 'static,
    ) -> ScriptedServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        let count = Arc::new(AtomicUsize::new(0));
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let script: Arc<Script> = Arc::new(script);
        let (count2, seen2) = (count.clone(), seen.clone());
        let task = tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let (count, seen, script) = (count2.clone(), seen2.clone(), script.clone());
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                        match stream.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let text = String::from_utf8_lossy(&buf).to_string();
                    let (head, _) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
                    let (line, headers) = head.split_once("\r\n").unwrap_or((head, ""));
                    let mut parts = line.split(' ');
                    let request = Seen {
                        method: parts.next().unwrap_or_default().to_owned(),
                        path: parts.next().unwrap_or_default().to_owned(),
                        headers: headers.to_owned(),
                    };
                    let n = count.fetch_add(1, Ordering::SeqCst);
                    seen.lock().unwrap().push(request.clone());
                    let answer = script(n, &request);
                    let mut out = format!(
                        "HTTP/1.1 {} X\r\nContent-Length: {}\r\nConnection: close\r\n",
                        answer.status,
                        answer.body.len()
                    );
                    for (name, value) in &answer.headers {
                        out.push_str(&format!("{name}: {value}\r\n"));
                    }
                    out.push_str("\r\n");
                    out.push_str(&answer.body);
                    let _ = stream.write_all(out.as_bytes()).await;
                    let _ = stream.shutdown().await;
                });
            }
        });
        ScriptedServer {
            addr,
            count,
            seen,
            task,
        }
    }

    pub fn requests(&self) -> usize {
        self.count.load(Ordering::SeqCst)
    }
}

impl Drop for ScriptedServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}
