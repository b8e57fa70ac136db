//! Access logs of environments' load balancers (formats.md §4,
//! `load_balancer.access_log`): one line per request in
//! `DATA_DIR/access-logs/ENVIRONMENT.log`, rotated to `.log.1` at 64 MiB.
//!
//! The listeners' workers hand records to a bounded queue and go on; one
//! thread per environment formats and appends them, a batch per write.
//! When the queue is full (the disk cannot keep up) records are dropped
//! and counted, never waited for: the log must not slow the traffic it
//! describes. Every field a client sends is escaped, so a request cannot
//! forge a line.

use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};

use gantry_proxy::{AccessLogSink, AccessRecord};

/// Records waiting to be written before new ones are dropped.
const QUEUE: usize = 16_384;

/// The size at which the log is rotated.
const ROTATE_AT: u64 = 64 * 1024 * 1024;

/// The most an answer to [`read`] reads of the file.
const MAX_READ: u64 = 1024 * 1024;

/// One environment's log: the queue to its writer thread.
pub(crate) struct AccessWriter {
    queue: SyncSender<(Arc<str>, AccessRecord)>,
    dropped: Arc<AtomicU64>,
}

impl AccessWriter {
    /// Starts the writer of `DIR/ENVIRONMENT.log`.
    pub(crate) fn start(dir: &Path, environment: &str) -> io::Result<Arc<Self>> {
        std::fs::create_dir_all(dir)?;
        let path = path_of(dir, environment);
        let (queue, records) = sync_channel(QUEUE);
        let dropped = Arc::new(AtomicU64::new(0));
        let counted = dropped.clone();
        std::thread::Builder::new()
            .name(format!("access-log-{environment}"))
            .spawn(move || {
                if let Err(error) = write_all(&path, &records, &counted) {
                    tracing::error!(path = %path.display(), %error, "The access log stopped.");
                }
            })?;
        Ok(Arc::new(Self { queue, dropped }))
    }

    /// The sink of one listener: its records carry `ENVIRONMENT/LISTENER`.
    pub(crate) fn sink(
        self: &Arc<Self>,
        environment: &str,
        listener: &str,
    ) -> Arc<dyn AccessLogSink> {
        Arc::new(ListenerSink {
            writer: self.clone(),
            name: Arc::from(format!("{environment}/{listener}")),
        })
    }
}

struct ListenerSink {
    writer: Arc<AccessWriter>,
    name: Arc<str>,
}

impl AccessLogSink for ListenerSink {
    fn record(&self, record: AccessRecord) {
        match self.writer.queue.try_send((self.name.clone(), record)) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.writer.dropped.fetch_add(1, Relaxed);
            }
        }
    }
}

/// Where an environment's log is.
pub(crate) fn path_of(dir: &Path, environment: &str) -> PathBuf {
    dir.join(format!("{environment}.log"))
}

/// The writer thread: appends batches until every sender is gone.
fn write_all(
    path: &Path,
    records: &Receiver<(Arc<str>, AccessRecord)>,
    dropped: &AtomicU64,
) -> io::Result<()> {
    let mut file = open(path)?;
    let mut size = file.metadata()?.len();
    let mut batch = String::new();
    let mut reported = 0;
    while let Ok(first) = records.recv() {
        batch.clear();
        line(&mut batch, &first.0, &first.1);
        while let Ok((name, record)) = records.try_recv() {
            line(&mut batch, &name, &record);
            if batch.len() > 256 * 1024 {
                break;
            }
        }
        let lost = dropped.load(Relaxed);
        if lost > reported {
            tracing::warn!(
                path = %path.display(),
                dropped = lost - reported,
                "Access records were dropped: the log could not keep up."
            );
            reported = lost;
        }
        if size + batch.len() as u64 > ROTATE_AT {
            drop(file);
            std::fs::rename(path, path.with_extension("log.1"))?;
            file = open(path)?;
            size = 0;
        }
        file.write_all(batch.as_bytes())?;
        size += batch.len() as u64;
    }
    Ok(())
}

/// Opens the log for appending, readable by its owner only (it holds
/// clients' addresses and the paths they asked for), never through a
/// symlink planted at its path.
fn open(path: &Path) -> io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(path)
}

/// Appends one record as a line:
///
/// `TYPE TIME ENV/LISTENER CLIENT TARGET RESPONSE_TIME TOTAL_TIME STATUS
/// BYTES "METHOD PATH VERSION" "USER_AGENT" RULE COMPLETE`
pub(crate) fn line(out: &mut String, listener: &str, r: &AccessRecord) {
    use std::fmt::Write as _;
    let kind = match (r.tls, r.version.as_str()) {
        (true, "HTTP/2.0") => "h2",
        (true, _) => "https",
        (false, "HTTP/2.0") => "h2c",
        (false, _) => "http",
    };
    let time = jiff::Timestamp::try_from(r.time)
        .map(|t| t.round(jiff::Unit::Millisecond).unwrap_or(t).to_string())
        .unwrap_or_else(|_| "-".to_owned());
    let target = r.target.map_or_else(|| "-".to_owned(), |t| t.to_string());
    let rule = r
        .rule
        .map_or_else(|| "default".to_owned(), |p| p.to_string());
    let _ = write!(
        out,
        "{kind} {time} {listener} {} {target} {:.3} {:.3} {} {} \"",
        r.client,
        r.response_time.as_secs_f64(),
        r.total_time.as_secs_f64(),
        r.status,
        r.bytes_sent,
    );
    escape(out, &r.method);
    out.push(' ');
    escape(out, &r.target_path);
    out.push(' ');
    escape(out, &r.version);
    out.push_str("\" \"");
    escape(out, &r.user_agent);
    let _ = writeln!(
        out,
        "\" {rule} {}",
        if r.complete { "complete" } else { "incomplete" }
    );
}

/// Writes `text` with `"`, `\` and anything outside printable ASCII as
/// `\xNN`, so one record is one line whatever a client sent.
fn escape(out: &mut String, text: &str) {
    use std::fmt::Write as _;
    for byte in text.bytes() {
        match byte {
            b'"' | b'\\' | ..=0x1f | 0x7f.. => {
                let _ = write!(out, "\\x{byte:02x}");
            }
            _ => out.push(char::from(byte)),
        }
    }
}

/// What [`read`] answers: whole lines, and where the next read starts.
pub(crate) struct Lines {
    pub(crate) lines: Vec<String>,
    pub(crate) cursor: u64,
}

/// The last `tail` lines of an environment's log, or, with `after` (a
/// cursor of an earlier answer), the lines written since, at most 1 MiB a
/// call. A cursor beyond the file's end (it was rotated) reads the new
/// file from its start. No log yet: no lines.
pub(crate) fn read(path: &Path, tail: usize, after: Option<u64>) -> io::Result<Lines> {
    let mut file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Ok(Lines {
                lines: Vec::new(),
                cursor: 0,
            });
        }
        Err(e) => return Err(e),
    };
    let len = file.metadata()?.len();
    let start = match after {
        Some(after) if after <= len => after,
        Some(_) => 0,
        None => len.saturating_sub(MAX_READ),
    };
    let end = len.min(start + MAX_READ);
    file.seek(SeekFrom::Start(start))?;
    let mut bytes = Vec::new();
    file.take(end - start).read_to_end(&mut bytes)?;
    // Only whole lines; a partial last one waits for the next call.
    let whole = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    let text = String::from_utf8_lossy(&bytes[..whole]);
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    if after.is_none() {
        if start > 0 && !lines.is_empty() {
            // The first line was cut by where the read began.
            lines.remove(0);
        }
        let skip = lines.len().saturating_sub(tail);
        lines.drain(..skip);
    }
    Ok(Lines {
        lines,
        cursor: start + whole as u64,
    })
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use super::*;

    fn record() -> AccessRecord {
        AccessRecord {
            time: SystemTime::UNIX_EPOCH + Duration::from_millis(1_764_974_400_123),
            client: "10.0.0.7".parse().unwrap(),
            tls: true,
            version: "HTTP/1.1".to_owned(),
            method: "GET".to_owned(),
            target_path: "/api/items?page=2".to_owned(),
            user_agent: "evil\"\n agent\\".to_owned(),
            rule: Some(5),
            target: Some("127.0.0.1:9000".parse().unwrap()),
            status: 200,
            bytes_sent: 42,
            response_time: Duration::from_millis(3),
            total_time: Duration::from_millis(12),
            complete: true,
        }
    }

    #[test]
    fn a_record_is_one_line_whatever_the_client_sent() {
        let mut out = String::new();
        line(&mut out, "production/web", &record());
        assert_eq!(
            out,
            "https 2025-12-05T22:40:00.123Z production/web 10.0.0.7 127.0.0.1:9000 0.003 0.012 200 42 \"GET /api/items?page=2 HTTP/1.1\" \"evil\\x22\\x0a agent\\x5c\" 5 complete\n"
        );
        let mut own = record();
        (own.rule, own.target, own.complete, own.tls) = (None, None, false, false);
        let mut out = String::new();
        line(&mut out, "staging/default", &own);
        assert_eq!(
            out,
            "http 2025-12-05T22:40:00.123Z staging/default 10.0.0.7 - 0.003 0.012 200 42 \"GET /api/items?page=2 HTTP/1.1\" \"evil\\x22\\x0a agent\\x5c\" default incomplete\n"
        );
    }

    #[test]
    fn reads_give_the_tail_then_what_came_after() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("e.log");
        assert!(read(&path, 10, None).unwrap().lines.is_empty());
        std::fs::write(&path, "a\nb\nc\npartial").unwrap();
        let first = read(&path, 2, None).unwrap();
        assert_eq!(first.lines, ["b", "c"]);
        std::fs::write(&path, "a\nb\nc\npartial line\nd\n").unwrap();
        let next = read(&path, 2, Some(first.cursor)).unwrap();
        assert_eq!(next.lines, ["partial line", "d"]);
        // Rotated: the cursor is past the new file's end.
        std::fs::write(&path, "e\n").unwrap();
        assert_eq!(read(&path, 2, Some(next.cursor)).unwrap().lines, ["e"]);
    }

    #[test]
    fn a_symlink_at_the_logs_path_is_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let outside = dir.path().join("outside");
        std::fs::write(&outside, "kept\n").unwrap();
        std::os::unix::fs::symlink(&outside, path_of(dir.path(), "staging")).unwrap();
        assert!(open(&path_of(dir.path(), "staging")).is_err());
        assert_eq!(std::fs::read_to_string(&outside).unwrap(), "kept\n");
    }

    #[test]
    fn the_writer_appends_and_rotates_nothing_small() {
        let dir = tempfile::tempdir().unwrap();
        let writer = AccessWriter::start(dir.path(), "staging").unwrap();
        let sink = writer.sink("staging", "web");
        for _ in 0..3 {
            sink.record(record());
        }
        drop((sink, writer));
        let path = path_of(dir.path(), "staging");
        for _ in 0..100 {
            if std::fs::read_to_string(&path).is_ok_and(|t| t.lines().count() == 3) {
                use std::os::unix::fs::PermissionsExt;
                let mode = std::fs::metadata(&path).unwrap().permissions().mode();
                assert_eq!(mode & 0o777, 0o600);
                return;
            }
            gantry_clock::blocking_sleep(Duration::from_millis(10));
        }
        panic!("three lines were not written");
    }
}
