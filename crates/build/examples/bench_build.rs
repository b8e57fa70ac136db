//! Measures the build runner against its targets:
//!
//! (a) overhead of an empty buildspec (one `true` per phase) over running
//!     `sh -c 'true;true;true;true'` directly (target < 20 ms);
//! (b) log throughput of a build printing 100 MB of lines with masking on
//!     (target >= 50 MB/s), and the process's peak RSS (target < 100 MB).
//!
//! Run: `cargo run --release -p gantry-build --example bench_build`

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use gantry_build::{BuildRequest, BuildStatus, LogSink, run, shell_buildspec};
use gantry_clock::Instant;
use gantry_spec::buildspec::{OnFailure, Phase, PhaseName};

struct Counter(AtomicUsize);

impl LogSink for Counter {
    fn line(&self, line: &str) {
        self.0.fetch_add(line.len() + 1, Ordering::Relaxed);
    }
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
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

fn request(commands_per_phase: &[&[&str]], dir: &std::path::Path) -> BuildRequest {
    let names = [
        PhaseName::Install,
        PhaseName::PreBuild,
        PhaseName::Build,
        PhaseName::PostBuild,
    ];
    let mut bs = shell_buildspec(Vec::new(), None, Vec::new());
    bs.phases = commands_per_phase
        .iter()
        .zip(names)
        .map(|(commands, name)| Phase {
            name,
            commands: commands.iter().map(|c| (*c).to_owned()).collect(),
            finally: Vec::new(),
            on_failure: OnFailure::Unspecified,
            run_as: None,
        })
        .collect();
    let mut req = BuildRequest::new(bs, dir.join("src"), dir.join("out"));
    req.secrets = vec![("TOKEN".to_owned(), "hunter2-secret".to_owned())];
    req.timeout = Duration::from_secs(600);
    req
}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(tmp.path().join("src")).unwrap();
    const RUNS: usize = 30;

    // (a) Overhead.
    let sink = Counter(AtomicUsize::new(0));
    let mut builds = Vec::new();
    let mut direct = Vec::new();
    for _ in 0..RUNS {
        let req = request(&[&["true"], &["true"], &["true"], &["true"]], tmp.path());
        let started = Instant::now();
        let outcome = rt.block_on(run(req, &sink)).unwrap();
        builds.push(started.elapsed());
        assert_eq!(outcome.status, BuildStatus::Succeeded);

        let started = Instant::now();
        let status = std::process::Command::new("sh")
            .args(["-c", "true;true;true;true"])
            .status()
            .unwrap();
        direct.push(started.elapsed());
        assert!(status.success());
    }
    let (build, direct) = (median(builds), median(direct));
    let overhead = build.saturating_sub(direct);
    println!(
        "(a) empty buildspec (4 phases x `true`): median {:.2} ms; `sh -c 'true;true;true;true'`: \
         median {:.2} ms; overhead {:.2} ms (target < 20 ms) over {RUNS} runs",
        build.as_secs_f64() * 1e3,
        direct.as_secs_f64() * 1e3,
        overhead.as_secs_f64() * 1e3,
    );

    // (b) Throughput with masking on: 100 MB of 100-byte lines, one secret
    // per line.
    let line = format!("{:<85}hunter2-secret", "flood line with a secret:");
    let flood = format!("yes '{line}' | head -c 100000000");
    let req = request(&[&[], &[], &[&flood]], tmp.path());
    let sink = Counter(AtomicUsize::new(0));
    let started = Instant::now();
    let outcome = rt.block_on(run(req, &sink)).unwrap();
    let took = started.elapsed();
    assert_eq!(outcome.status, BuildStatus::Succeeded);
    let produced = 100_000_000_f64;
    println!(
        "(b) 100 MB of log lines with masking: {:.2} s, {:.0} MB/s of child output \
         (target >= 50 MB/s); {} bytes reached the sink; peak RSS {:.1} MiB (target < 100 MB)",
        took.as_secs_f64(),
        produced / 1e6 / took.as_secs_f64(),
        sink.0.load(Ordering::Relaxed),
        peak_rss_mib(),
    );
}
