//! Measures promotion of a ~1 GB image (4 layers of 256 MiB random bytes):
//!
//! (a) gantry promote to another repository of the same registry: manifest
//!     plus cross-repository mounts (target < 0.1 s);
//! (b) gantry promote to a second registry: every blob streamed across;
//! (c) for comparison, `docker pull` + `docker tag` + `docker push` to another
//!     repository (when dockerd answers), and `skopeo copy` between
//!     repositories and between registries.
//!
//! It also prints the time to push the image in the first place and the
//! process's peak RSS, which stays far below the image size because blobs are
//! streamed. Two `docker-registry` instances are started on loopback ports and
//! removed afterwards.
//!
//! Run: `cargo run --release -p gantry-images --example bench_promote [MiB per layer] [layers]`

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use flate2::{Compression, GzBuilder};
use gantry_clock::Instant;
use gantry_images::manifest::{OCI_CONFIG, OCI_LAYER_GZIP, OCI_MANIFEST, canonical_json};
use gantry_images::{ClientOptions, Digest, PromoteResult, Reference, RegistryClient, promote};
use sha2::{Digest as _, Sha256};

struct Registry {
    addr: String,
    child: Child,
}

impl Registry {
    fn start(root: &Path, name: &str) -> Registry {
        let dir = root.join(name);
        std::fs::create_dir_all(&dir).expect("registry dir");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("free port");
        let config = dir.join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog: {{level: warn}}\nstorage: {{filesystem: {{rootdirectory: {}}}, delete: {{enabled: true}}}}\nhttp: {{addr: 127.0.0.1:{port}}}\n",
                dir.join("storage").display()
            ),
        )
        .expect("config");
        let log = std::fs::File::create(dir.join("registry.log")).expect("log");
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("docker-registry");
        let addr = format!("127.0.0.1:{port}");
        let up =
            gantry_clock::blocking_poll(Duration::from_secs(20), Duration::from_millis(50), || {
                std::net::TcpStream::connect(&addr).ok()
            });
        assert!(up.is_some(), "docker-registry on {addr} did not start");
        Registry { addr, child }
    }

    fn image(&self, name: &str) -> Reference {
        Reference::parse(&format!("{}/{name}", self.addr)).expect("reference")
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A writer that hashes and counts what passes through.
struct Hashing<W> {
    inner: W,
    hasher: Sha256,
    len: u64,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Writes a layer of one file of `size` random bytes; returns (path, digest, diff_id, size).
/// Gzip level 0 ("stored") keeps it a valid `tar+gzip` without spending a minute
/// compressing bytes that do not compress.
fn random_layer(dir: &Path, index: usize, size: u64) -> (PathBuf, Digest, Digest, u64) {
    let path = dir.join(format!("layer{index}.tar.gz"));
    let file = std::io::BufWriter::with_capacity(
        1 << 20,
        std::fs::File::create(&path).expect("layer file"),
    );
    let compressed = Hashing {
        inner: file,
        hasher: Sha256::new(),
        len: 0,
    };
    let gzip = GzBuilder::new()
        .mtime(0)
        .write(compressed, Compression::none());
    let mut tar = tar::Builder::new(Hashing {
        inner: gzip,
        hasher: Sha256::new(),
        len: 0,
    });
    let mut header = tar::Header::new_gnu();
    header.set_size(size);
    header.set_mode(0o644);
    header.set_mtime(0);
    header.set_entry_type(tar::EntryType::Regular);
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15 ^ (index as u64 + 1);
    let mut remaining = size;
    let random = std::iter::from_fn(move || {
        if remaining == 0 {
            return None;
        }
        let mut chunk = vec![0u8; remaining.min(1 << 20) as usize];
        for word in chunk.chunks_mut(8) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let bytes = state.to_le_bytes();
            word.copy_from_slice(&bytes[..word.len()]);
        }
        remaining -= chunk.len() as u64;
        Some(chunk)
    });
    let reader = ChunkReader {
        chunks: Box::new(random),
        current: Vec::new(),
        pos: 0,
    };
    tar.append_data(&mut header, format!("data/layer{index}.bin"), reader)
        .expect("write layer");
    let hashed_tar = tar.into_inner().expect("finish tar");
    let diff_id = format!("sha256:{}", hex::encode(hashed_tar.hasher.finalize()));
    let mut compressed = hashed_tar.inner.finish().expect("finish gzip");
    compressed.flush().expect("flush");
    let digest = format!("sha256:{}", hex::encode(compressed.hasher.finalize()));
    (
        path,
        Digest::parse(&digest).expect("digest"),
        Digest::parse(&diff_id).expect("diff id"),
        compressed.len,
    )
}

struct ChunkReader {
    chunks: Box<dyn Iterator<Item = Vec<u8>>>,
    current: Vec<u8>,
    pos: usize,
}

impl std::io::Read for ChunkReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.pos == self.current.len() {
            match self.chunks.next() {
                Some(chunk) => {
                    self.current = chunk;
                    self.pos = 0;
                }
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len() - self.pos);
        buf[..n].copy_from_slice(&self.current[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

fn run(program: &str, args: &[&str]) -> Result<Duration, String> {
    let start = Instant::now();
    let output = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{program}: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "{program} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    Ok(start.elapsed())
}

/// Promotes `src` (expected at `digest`) to `to`, and how long it took.
async fn timed_promote(
    client: &RegistryClient,
    src: &Reference,
    to: &Reference,
    digest: &Digest,
) -> (PromoteResult, Duration) {
    let started = Instant::now();
    let result = promote(client, src, to, Some(digest.as_str()))
        .await
        .unwrap_or_else(|e| panic!("promote {src} to {to}: {e}"));
    (result, started.elapsed())
}

fn secs(d: Duration) -> String {
    format!("{:.3} s", d.as_secs_f64())
}

fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib: f64 = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    kib / 1024.0
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let layer_mib: u64 = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(256);
    let layers: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(4);
    let work = tempfile::tempdir().expect("temp dir");
    let a = Registry::start(work.path(), "registry-a");
    let b = Registry::start(work.path(), "registry-b");
    let client = RegistryClient::new(ClientOptions::default()).expect("client");

    println!("image: {layers} layers x {layer_mib} MiB of random bytes");
    let started = Instant::now();
    let blobs: Vec<_> = (0..layers)
        .map(|i| random_layer(work.path(), i, layer_mib << 20))
        .collect();
    println!(
        "generate layers                         {}",
        secs(started.elapsed())
    );

    let src = a.image("bench/app:v1");
    let config = serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "created": "1970-01-01T00:00:00Z",
        "config": {"Cmd": ["/data"]},
        "rootfs": {"type": "layers", "diff_ids": blobs.iter().map(|b| b.2.as_str()).collect::<Vec<_>>()},
    });
    let config_bytes = canonical_json(&config);
    let config_digest = Digest::of(&config_bytes);
    let manifest = canonical_json(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": config_bytes.len()},
        "layers": blobs.iter().map(|(_, digest, _, size)| serde_json::json!({
            "mediaType": OCI_LAYER_GZIP, "digest": digest, "size": size
        })).collect::<Vec<_>>(),
    }));
    let total: u64 = blobs.iter().map(|b| b.3).sum();

    let started = Instant::now();
    for (path, digest, _, _) in &blobs {
        client
            .push_blob(&src, digest, path)
            .await
            .expect("push layer");
    }
    client
        .push_blob_bytes(&src, &config_digest, &config_bytes)
        .await
        .expect("push config");
    let digest = client
        .put_manifest_raw(&src, &manifest, OCI_MANIFEST)
        .await
        .expect("push manifest");
    let push = started.elapsed();
    println!(
        "gantry push {:.0} MiB to registry A          {} ({:.0} MiB/s)",
        total as f64 / 1048576.0,
        secs(push),
        total as f64 / 1048576.0 / push.as_secs_f64()
    );
    for (path, ..) in &blobs {
        let _ = std::fs::remove_file(path);
    }

    let (same, within) = timed_promote(&client, &src, &a.image("prod/app:v1"), &digest).await;
    assert_eq!(same.digest, digest);
    println!(
        "(a) gantry promote, same registry       {}  (mounted {}, copied {}, skipped {}) target < 0.1 s: {}",
        secs(within),
        same.mounted_blobs,
        same.copied_blobs,
        same.skipped_blobs,
        if within < Duration::from_millis(100) {
            "met"
        } else {
            "MISSED"
        }
    );

    let (again, elapsed) = timed_promote(&client, &src, &a.image("prod/app:v1"), &digest).await;
    println!(
        "    gantry promote again (all present)  {}  (skipped {})",
        secs(elapsed),
        again.skipped_blobs
    );

    let (across, copy) = timed_promote(&client, &src, &b.image("prod/app:v1"), &digest).await;
    assert_eq!(across.digest, digest);
    println!(
        "(b) gantry promote, second registry     {}  (copied {}, {:.0} MiB/s)",
        secs(copy),
        across.copied_blobs,
        total as f64 / 1048576.0 / copy.as_secs_f64()
    );

    for (label, to) in [
        (
            "(c) skopeo copy, same registry       ",
            a.image("skopeo/app:v1"),
        ),
        (
            "    skopeo copy, second registry     ",
            b.image("skopeo/app:v1"),
        ),
    ] {
        let copied = run(
            "skopeo",
            &[
                "copy",
                "--src-tls-verify=false",
                "--dest-tls-verify=false",
                &format!("docker://{src}"),
                &format!("docker://{to}"),
            ],
        );
        match copied {
            Ok(t) => println!("{label}   {}", secs(t)),
            Err(e) => println!("{label}   failed: {e}"),
        }
    }

    if run("docker", &["info"]).is_ok() {
        let name = src.to_string();
        let retagged = a.image("docker/app:v1").to_string();
        let result = (|| -> Result<(Duration, Duration, Duration), String> {
            let pull = run("docker", &["pull", "-q", &name])?;
            let tag = run("docker", &["tag", &name, &retagged])?;
            let push = run("docker", &["push", "-q", &retagged])?;
            Ok((pull, tag, push))
        })();
        match result {
            Ok((pull, tag, push)) => println!(
                "(c) docker pull + tag + push            {}  (pull {}, tag {}, push {})",
                secs(pull + tag + push),
                secs(pull),
                secs(tag),
                secs(push)
            ),
            Err(e) => println!("(c) docker pull + tag + push            failed: {e}"),
        }
        let _ = Command::new("docker")
            .args(["rmi", "-f", &name, &retagged])
            .output();
    } else {
        println!("(c) docker pull + tag + push            skipped: dockerd does not answer");
    }
    println!(
        "peak RSS of this process                {:.1} MiB",
        peak_rss_mib()
    );
}
