//! Action logs stay bounded: a flood keeps its head, a line saying what was
//! cut, and its tail; long lines are cut; old executions' logs are deleted.

use std::time::Duration;

use gantry_server::logs::{LogLimits, LogWriter};
use gantry_store::{ExecutionRow, LogLine, Store};
use tokio::time::Instant;

async fn all_lines(store: &Store, execution: &str) -> Vec<LogLine> {
    let mut lines = Vec::new();
    loop {
        let after = lines.last().map_or(0, |l: &LogLine| l.seq);
        let page = store.logs(execution, None, after, 10_000).await.unwrap();
        if page.is_empty() {
            return lines;
        }
        lines.extend(page);
    }
}

fn db_bytes(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().metadata().unwrap().len())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_build_printing_100_mb_keeps_its_head_a_cut_marker_and_its_tail_in_bounded_space() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("gantry.db")).await.unwrap();
    let logs = LogWriter::start(store.clone());
    let log = logs.action("e1", "Build", "compile", 1);
    let filler = "x".repeat(1000);
    let count = 100_000;
    for i in 0..count {
        log.line(&format!("line {i:07} {filler}"));
    }
    drop(log);
    logs.flush().await;

    let lines = all_lines(&store, "e1").await;
    let text: Vec<&str> = lines.iter().map(|l| l.line.as_str()).collect();
    assert!(text[0].starts_with("line 0000000 "));
    assert!(text.last().unwrap().starts_with("line 0099999 "));
    let marker = text
        .iter()
        .position(|l| l.starts_with("[gantry] "))
        .expect("a cut marker");
    assert!(text[marker].contains("cut here"), "{}", text[marker]);
    // Head and tail are contiguous runs around the marker.
    let number = |l: &str| l[5..12].parse::<usize>().unwrap();
    assert_eq!(number(text[marker - 1]), marker - 1);
    let tail_start = number(text[marker + 1]);
    assert_eq!(tail_start + (text.len() - marker - 1), count);
    let cut = tail_start - marker;
    assert!(
        text[marker].contains(&format!("{cut} lines")) || cut >= 1000,
        "{}",
        text[marker]
    );
    let kept: usize = text.iter().map(|l| l.len()).sum();
    assert!(kept <= (10 << 20) + 1000, "kept {kept} bytes");

    // About 100 MB went in; the database holds about 10.
    let on_disk = db_bytes(dir.path());
    assert!(on_disk < 30 << 20, "the database takes {on_disk} bytes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beyond_the_line_limit_the_first_and_last_halves_are_kept() {
    let store = Store::in_memory().await.unwrap();
    let logs = LogWriter::start_with(
        store.clone(),
        LogLimits {
            max_lines_per_attempt: 1000,
            max_line_bytes: 100,
            ..LogLimits::default()
        },
    );
    let log = logs.action("e1", "Build", "compile", 1);
    let other = log.clone();
    for i in 0..12_345 {
        other.line(&format!("{i}"));
    }
    log.line(&"y".repeat(5000));
    drop(other);
    // Not written until the last clone is gone.
    logs.flush().await;
    assert_eq!(all_lines(&store, "e1").await.len(), 500);
    drop(log);
    logs.flush().await;

    let lines = all_lines(&store, "e1").await;
    let text: Vec<&str> = lines.iter().map(|l| l.line.as_str()).collect();
    assert_eq!(text.len(), 1001);
    assert_eq!(text[..3], ["0", "1", "2"]);
    assert_eq!(text[499], "499");
    assert_eq!(
        text[500],
        "[gantry] 11,346 lines (45.6 KiB) cut here; the log keeps the first 500 and the last 500 lines of this attempt (limits: 1,000 lines, 10.0 MiB per attempt)."
    );
    assert_eq!(text[501], "11846");
    assert_eq!(text[999], "12344");
    assert!(
        text[1000].starts_with(&"y".repeat(100))
            && text[1000].ends_with("… [gantry] line cut at 100 bytes of 4.9 KiB"),
        "{}",
        text[1000]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_within_its_limits_is_kept_whole() {
    let store = Store::in_memory().await.unwrap();
    let logs = LogWriter::start_with(
        store.clone(),
        LogLimits {
            max_lines_per_attempt: 10,
            ..LogLimits::default()
        },
    );
    let log = logs.action("e1", "Build", "compile", 1);
    for i in 0..10 {
        log.line(&format!("{i}"));
    }
    drop(log);
    logs.flush().await;
    let lines = all_lines(&store, "e1").await;
    let text: Vec<&str> = lines.iter().map(|l| l.line.as_str()).collect();
    assert_eq!(text, ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_at_start_deletes_logs_of_old_and_surplus_executions() {
    let store = Store::in_memory().await.unwrap();
    let now = gantry_clock::now_ms();
    let day = 24 * 3600 * 1000;
    // (id, started, finished): old finished 40 days ago; three recent ones.
    let executions = [
        ("old", now - 41 * day, Some(now - 40 * day)),
        ("r1", now - 3000, Some(now - 2500)),
        ("r2", now - 2000, Some(now - 1500)),
        ("r3", now - 1000, None),
    ];
    for (id, started_at, finished_at) in executions {
        let row = ExecutionRow {
            id: id.into(),
            pipeline: "p".into(),
            status: "x".into(),
            started_at,
            finished_at,
            state: "{}".into(),
        };
        store
            .record_event("p", id, started_at, "{}", &[row])
            .await
            .unwrap();
        let line = LogLine {
            seq: 0,
            execution_id: id.into(),
            stage: "S".into(),
            action: "a".into(),
            attempt: 1,
            at: started_at,
            line: "hello".into(),
        };
        store.append_logs(&[line]).await.unwrap();
    }
    let _logs = LogWriter::start_with(
        store.clone(),
        LogLimits {
            retention_executions: 2,
            ..LogLimits::default()
        },
    );
    let started = Instant::now();
    while !all_lines(&store, "r1").await.is_empty() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "retention did not run"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(all_lines(&store, "old").await.is_empty());
    assert_eq!(all_lines(&store, "r2").await.len(), 1);
    assert_eq!(all_lines(&store, "r3").await.len(), 1);
}
