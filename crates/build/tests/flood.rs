//! A build printing 100 MB streams it: memory stays bounded, every byte
//! reaches the sink, over-long lines are split, and masking still applies.
//! Alone in its test binary so the process's peak RSS measures this build.

mod support;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use gantry_build::{BuildStatus, LogSink, run};
use gantry_clock::Instant;
use gantry_spec::buildspec::PhaseName;
use support::{phase, request, spec};

/// Counts instead of keeping, so the test itself stays small.
#[derive(Default)]
struct Counter {
    bytes: AtomicUsize,
    lines: AtomicUsize,
    longest: AtomicUsize,
    leaked: AtomicBool,
}

impl LogSink for Counter {
    fn line(&self, line: &str) {
        self.bytes.fetch_add(line.len(), Ordering::Relaxed);
        self.lines.fetch_add(1, Ordering::Relaxed);
        self.longest.fetch_max(line.len(), Ordering::Relaxed);
        if line.contains("hunter2") {
            self.leaked.store(true, Ordering::Relaxed);
        }
    }
}

fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[tokio::test]
async fn a_100_mb_flood_streams_in_bounded_memory() {
    // 100 MB of 100-byte lines carrying a secret, then a 10 MB line
    // without a newline.
    let line = format!("{:<86}hunter2-secret", "flood line with a secret:");
    let commands = [
        format!("yes '{line}' | head -c 100000000"),
        "head -c 10000000 /dev/zero | tr '\\0' a".to_owned(),
    ];
    let tmp = tempfile::tempdir().unwrap();
    let bs = spec(vec![phase(PhaseName::Build, &[&commands[0], &commands[1]])]);
    let mut req = request(tmp.path(), bs);
    req.secrets = vec![("TOKEN".into(), "hunter2-secret".into())];
    req.timeout = Duration::from_secs(300);
    let sink = Counter::default();
    let started = Instant::now();
    let outcome = run(req, &sink).await.unwrap();
    let took = started.elapsed();

    assert_eq!(
        outcome.status,
        BuildStatus::Succeeded,
        "{:?}",
        outcome.error
    );
    let bytes = sink.bytes.load(Ordering::Relaxed);
    // Each 101-byte line loses its newline and gets its secret (14 bytes)
    // replaced by `***`: 100 - 14 + 3 = 89 bytes per line.
    let flood_lines = 100_000_000 / 101;
    let expected = flood_lines * 89 + (100_000_000 % 101) + 10_000_000;
    assert!(
        bytes >= expected && bytes < expected + 10_000,
        "bytes {bytes}, expected ~{expected}"
    );
    assert!(
        !sink.leaked.load(Ordering::Relaxed),
        "a secret reached the sink"
    );
    let longest = sink.longest.load(Ordering::Relaxed);
    assert!(longest <= 64 * 1024 + 64, "longest line {longest}");
    let peak = peak_rss_kib();
    assert!(peak < 64 * 1024, "peak RSS {peak} KiB");
    assert!(took < Duration::from_secs(120), "took {took:?}");
    eprintln!(
        "100 MB flood: {took:?}, peak RSS {peak} KiB, {} lines",
        sink.lines.load(Ordering::Relaxed)
    );
}
