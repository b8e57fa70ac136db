//! Measures container mode against host mode:
//!
//! (a) the overhead of an empty buildspec (one `true` per phase) in a
//!     container over the same build on the host: engine check, `docker
//!     run` of the container, one `docker exec` shell, `docker rm -f`;
//! (b) the cost per command in the container (200 `true` commands), which
//!     adds Docker's stream round trip and the log sync to each command;
//! (c) log throughput of 20 MB of lines through Docker's streams.
//!
//! Run with an image that has `sh` (the container tests build one,
//! `gantry-test/busybox:1`):
//! `cargo run --release -p gantry-build --example bench_container -- IMAGE`

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use gantry_build::{BuildRequest, BuildStatus, ContainerSpec, LogSink, run, shell_buildspec};
use gantry_clock::Instant;
use gantry_spec::buildspec::{OnFailure, Phase, PhaseName};

struct Counter(AtomicUsize);

impl LogSink for Counter {
    fn line(&self, line: &str) {
        self.0.fetch_add(line.len() + 1, Ordering::Relaxed);
    }
}

/// When each `Running command` line arrived.
struct CommandTimes(std::sync::Mutex<Vec<Instant>>);

impl LogSink for CommandTimes {
    fn line(&self, line: &str) {
        if line.contains("Running command") {
            self.0.lock().unwrap().push(Instant::now());
        }
    }
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn request(phases: &[Vec<String>], dir: &std::path::Path, image: Option<&str>) -> BuildRequest {
    let names = [
        PhaseName::Install,
        PhaseName::PreBuild,
        PhaseName::Build,
        PhaseName::PostBuild,
    ];
    let mut bs = shell_buildspec(Vec::new(), None, Vec::new());
    bs.phases = phases
        .iter()
        .zip(names)
        .map(|(commands, name)| Phase {
            name,
            commands: commands.clone(),
            finally: Vec::new(),
            on_failure: OnFailure::Unspecified,
            run_as: None,
        })
        .collect();
    let mut req = BuildRequest::new(bs, dir.join("src"), dir.join("out"));
    req.timeout = Duration::from_secs(600);
    req.container = image.map(ContainerSpec::new);
    req
}

fn time_builds(
    rt: &tokio::runtime::Runtime,
    runs: usize,
    phases: &[Vec<String>],
    dir: &std::path::Path,
    image: Option<&str>,
) -> Duration {
    let sink = Counter(AtomicUsize::new(0));
    let mut samples = Vec::new();
    for _ in 0..runs {
        let req = request(phases, dir, image);
        let started = Instant::now();
        let outcome = rt.block_on(run(req, &sink)).expect("the build starts");
        samples.push(started.elapsed());
        assert_eq!(outcome.status, BuildStatus::Succeeded);
    }
    median(samples)
}

fn main() {
    let image = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "gantry-test/busybox:1".to_owned());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(tmp.path().join("src")).unwrap();
    const RUNS: usize = 15;

    // (a) Overhead of an empty buildspec.
    let empty: Vec<Vec<String>> = (0..4).map(|_| vec!["true".to_owned()]).collect();
    // One warm-up each, so neither pays for a cold page cache.
    time_builds(&rt, 1, &empty, tmp.path(), None);
    time_builds(&rt, 1, &empty, tmp.path(), Some(&image));
    let host = time_builds(&rt, RUNS, &empty, tmp.path(), None);
    let container = time_builds(&rt, RUNS, &empty, tmp.path(), Some(&image));
    println!(
        "(a) empty buildspec (4 phases x `true`), median of {RUNS}: host {:.1} ms, \
         container {:.1} ms; container overhead {:.1} ms",
        ms(host),
        ms(container),
        ms(container.saturating_sub(host))
    );

    // (b) Per command: the time between consecutive `Running command`
    // lines of one build, which the container's start does not blur.
    let many: Vec<Vec<String>> = vec![vec!["true".to_owned(); 200]];
    for (label, image) in [("host", None), ("container", Some(image.as_str()))] {
        let mut per_command = Vec::new();
        for _ in 0..5 {
            let sink = CommandTimes(std::sync::Mutex::new(Vec::new()));
            let req = request(&many, tmp.path(), image);
            let outcome = rt.block_on(run(req, &sink)).expect("the build starts");
            assert_eq!(outcome.status, BuildStatus::Succeeded);
            let times = sink.0.into_inner().unwrap();
            let span = *times.last().unwrap() - times[0];
            per_command.push(span / (times.len() as u32 - 1));
        }
        println!(
            "(b) per command (200 `true`), {label}: median {:.3} ms",
            ms(median(per_command))
        );
    }

    // (c) Throughput through Docker's streams.
    let flood = vec![vec![
        "yes 'a line of build output, about eighty bytes long, repeated many times' | head -c 20000000"
            .to_owned(),
    ]];
    for (label, image) in [("host", None), ("container", Some(image.as_str()))] {
        let sink = Counter(AtomicUsize::new(0));
        let req = request(&flood, tmp.path(), image);
        let started = Instant::now();
        let outcome = rt.block_on(run(req, &sink)).expect("the build starts");
        let took = started.elapsed();
        assert_eq!(outcome.status, BuildStatus::Succeeded);
        println!(
            "(c) 20 MB of log lines, {label}: {:.2} s, {:.0} MB/s",
            took.as_secs_f64(),
            20.0 / took.as_secs_f64()
        );
    }
}
