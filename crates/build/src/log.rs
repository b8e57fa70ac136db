//! The build log: one channel (a FIFO) carrying the shell's output and the
//! runner's own `[Container]` lines, cut into complete, masked lines.
//!
//! The runner writes its lines into the same FIFO as the shell, prefixed by
//! a mark holding the build's random token. That keeps the log in the order
//! things happened (a `Running command` line can't overtake the previous
//! command's output, which sits earlier in the same pipe) and lets the
//! reader end a partial output line before a runner line. The child never
//! sees the token, so it cannot forge runner lines.
//!
//! A container shell also writes *sync records* into the log (see
//! `shell.rs`): the same mark with its closing NUL replaced by `\x01`,
//! then a number. They are never shown; the reader publishes the highest
//! number seen, and everything before a record has been emitted by then.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::unix::pipe;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::LogSink;
use crate::mask::Masker;

/// Output lines longer than this are split, so a child printing gigabytes
/// without a newline can't grow the reader's memory.
pub(crate) const MAX_LINE: usize = 64 * 1024;

/// How long the reader keeps draining after the build ended, for output
/// still held by processes that escaped the build's process group.
const DRAIN: Duration = Duration::from_millis(500);

/// A `[Container] 2026/11/29 00:00:00.000000 ` prefixed line, as CodeBuild
/// prints its own messages.
pub(crate) fn container_line(text: &str) -> String {
    format!("[Container] {} {text}", timestamp(gantry_clock::now()))
}

/// `YYYY/MM/DD HH:MM:SS.ffffff` in UTC.
pub(crate) fn timestamp(at: SystemTime) -> String {
    let since = at.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{y:04}/{m:02}/{d:02} {:02}:{:02}:{:02}.{:06}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        since.subsec_micros()
    )
}

/// Days since 1970-01-01 to (year, month, day), Howard Hinnant's algorithm.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Looks for a regular expression in the build's output while the runner
/// wants it (`on-failure: RETRY-<regex>`): the runner arms it when an
/// attempt of a phase starts and asks, once the attempt failed, whether an
/// output line matched. Lines are matched as the log shows them, masked, so
/// an expression cannot probe a secret.
#[derive(Default)]
pub(crate) struct OutputWatch {
    armed: AtomicBool,
    pattern: Mutex<Option<regex_automata::meta::Regex>>,
    matched: AtomicBool,
}

impl OutputWatch {
    /// Starts looking for `pattern` (`None`: stops looking).
    pub(crate) fn arm(&self, pattern: Option<regex_automata::meta::Regex>) {
        let armed = pattern.is_some();
        *self.pattern.lock().unwrap_or_else(|e| e.into_inner()) = pattern;
        self.matched.store(false, Ordering::SeqCst);
        self.armed.store(armed, Ordering::SeqCst);
    }

    /// Whether a line matched since the watch was armed.
    pub(crate) fn matched(&self) -> bool {
        self.matched.load(Ordering::SeqCst)
    }

    /// Notes whether `line` matches; costs an atomic load when unarmed.
    pub(crate) fn see(&self, line: &str) {
        if !self.armed.load(Ordering::Relaxed) || self.matched.load(Ordering::Relaxed) {
            return;
        }
        let pattern = self.pattern.lock().unwrap_or_else(|e| e.into_inner());
        if pattern.as_ref().is_some_and(|re| re.is_match(line)) {
            self.matched.store(true, Ordering::SeqCst);
        }
    }
}

/// Masks lines and hands them to the sink.
pub(crate) struct Emitter<'a> {
    pub(crate) masker: &'a Masker,
    pub(crate) sink: &'a dyn LogSink,
    pub(crate) watch: &'a OutputWatch,
}

impl Emitter<'_> {
    /// A line read from the log FIFO: the build's output, or (`runner`)
    /// one of the runner's own lines, which the output watch skips (they
    /// quote commands, not what the commands printed).
    pub(crate) fn emit_bytes(&self, line: &[u8], runner: bool) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let text = String::from_utf8_lossy(line);
        let masked = self.masker.mask(&text);
        if !runner {
            self.watch.see(&masked);
        }
        self.sink.line(&masked);
    }

    /// A runner line written outside the FIFO.
    pub(crate) fn emit(&self, line: &str) {
        self.sink.line(&self.masker.mask(line));
    }

    /// A runner line written after the FIFO reader finished.
    pub(crate) fn container(&self, text: &str) {
        for (i, part) in text.split('\n').enumerate() {
            if i == 0 {
                self.emit(&container_line(part));
            } else {
                self.emit(part);
            }
        }
    }
}

/// Cuts a byte stream into lines, recognising runner lines by their mark.
pub(crate) struct LineAssembler {
    /// Received bytes; those before `start` are already emitted. Emitted
    /// bytes are dropped once per chunk, not once per line, so a chunk of
    /// many short lines costs one move of its tail.
    pending: Vec<u8>,
    start: usize,
    /// Bytes before this index hold neither `\n` nor a mark (`>= start`).
    scanned: usize,
    mark: Vec<u8>,
    /// `mark` with `\x01` for its last byte: a sync record follows.
    sync_mark: Vec<u8>,
    /// The highest sync record number seen.
    synced: u64,
    masker: Masker,
    /// Bytes kept past a cut so a secret or a mark spanning it is seen whole.
    overlap: usize,
}

impl LineAssembler {
    pub(crate) fn new(mark: Vec<u8>, masker: Masker) -> LineAssembler {
        let overlap = masker.longest().max(mark.len()) + 4;
        let mut sync_mark = mark.clone();
        if let Some(last) = sync_mark.last_mut() {
            *last = 0x01;
        }
        LineAssembler {
            pending: Vec::new(),
            start: 0,
            scanned: 0,
            mark,
            sync_mark,
            synced: 0,
            masker,
            overlap,
        }
    }

    /// The highest sync record number seen so far.
    pub(crate) fn synced(&self) -> u64 {
        self.synced
    }

    pub(crate) fn push(&mut self, chunk: &[u8], out: &mut dyn FnMut(&[u8], bool)) {
        self.pending.extend_from_slice(chunk);
        self.process(false, out);
        self.compact();
    }

    /// Emits whatever is left, complete line or not.
    pub(crate) fn finish(&mut self, out: &mut dyn FnMut(&[u8], bool)) {
        self.process(true, out);
        if self.start < self.pending.len() {
            out(&self.pending[self.start..], false);
        }
        self.pending.clear();
        self.start = 0;
        self.scanned = 0;
    }

    fn compact(&mut self) {
        self.pending.drain(..self.start);
        self.scanned -= self.start;
        self.start = 0;
    }

    /// Marks everything before `upto` as emitted.
    fn consume(&mut self, upto: usize) {
        self.start = upto;
        self.scanned = upto;
    }

    fn process(&mut self, at_eof: bool, out: &mut dyn FnMut(&[u8], bool)) {
        loop {
            let found = self.pending[self.scanned..]
                .iter()
                .position(|&b| b == b'\n' || b == 0);
            let Some(rel) = found else {
                self.scanned = self.pending.len();
                if self.cut_long_line(self.pending.len(), out) {
                    continue;
                }
                return;
            };
            let at = self.scanned + rel;
            if self.pending[at] == b'\n' {
                out(&self.pending[self.start..at], false);
                self.consume(at + 1);
                continue;
            }
            // A NUL: the start of a runner line or sync record, or just a
            // NUL in the output.
            let rest = &self.pending[at..];
            if rest.len() < self.mark.len() {
                let maybe = self.mark.starts_with(rest) || self.sync_mark.starts_with(rest);
                if maybe && !at_eof {
                    // Possibly a mark whose end has not arrived yet.
                    self.scanned = at;
                    if self.cut_long_line(at, out) {
                        continue;
                    }
                    return;
                }
                self.scanned = at + 1;
                continue;
            }
            let sync = rest.starts_with(&self.sync_mark);
            if !sync && !rest.starts_with(&self.mark) {
                self.scanned = at + 1;
                continue;
            }
            let body = at + self.mark.len();
            let end = match self.pending[body..].iter().position(|&b| b == b'\n') {
                Some(len) => body + len,
                None if at_eof => self.pending.len(),
                None => {
                    self.scanned = at;
                    return;
                }
            };
            if at > self.start {
                // Output that did not end its line before the runner line:
                // end it here rather than glue the two together.
                out(&self.pending[self.start..at], false);
            }
            if sync {
                let number = std::str::from_utf8(&self.pending[body..end])
                    .ok()
                    .and_then(|n| n.trim().parse::<u64>().ok());
                if let Some(n) = number {
                    self.synced = self.synced.max(n);
                }
            } else {
                out(&self.pending[body..end], true);
            }
            self.consume((end + 1).min(self.pending.len()));
        }
    }

    /// Splits off the head of an over-long line. The cut lands on a UTF-8
    /// character boundary and never inside a secret: a secret straddling it
    /// moves the cut to the secret's end, so masking each piece hides it.
    /// Nothing at or after `before` (a possible mark) is cut off.
    fn cut_long_line(&mut self, before: usize, out: &mut dyn FnMut(&[u8], bool)) -> bool {
        let line = &self.pending[self.start..];
        // Room for two overlapping secrets past the cut.
        let window = MAX_LINE + 2 * self.overlap;
        if line.len() < window {
            return false;
        }
        let mut cut = MAX_LINE;
        while cut > 1 && (line[cut] & 0xC0) == 0x80 {
            cut -= 1;
        }
        let matches = self.masker.byte_matches(&line[..window]);
        // Moving the cut past one secret may land it inside another.
        while let Some(end) = matches
            .iter()
            .filter(|&&(s, e)| s < cut && cut < e)
            .map(|&(_, e)| e)
            .max()
        {
            cut = end;
        }
        let cut = cut.min(before - self.start);
        if cut == 0 {
            return false;
        }
        out(&line[..cut], false);
        let upto = self.start + cut;
        self.consume(upto);
        true
    }
}

/// Writes runner lines into the log FIFO.
pub(crate) struct FrameWriter {
    tx: pipe::Sender,
    mark: Vec<u8>,
}

impl FrameWriter {
    pub(crate) fn new(tx: pipe::Sender, mark: Vec<u8>) -> FrameWriter {
        FrameWriter { tx, mark }
    }

    /// One `[Container]` line; a multi-line text (a multi-line command)
    /// becomes several log lines, only the first prefixed.
    pub(crate) async fn container(&mut self, text: &str) {
        let mut record = Vec::with_capacity(text.len() + 64);
        for (i, part) in text.split('\n').enumerate() {
            record.extend_from_slice(&self.mark);
            if i == 0 {
                record.extend_from_slice(container_line(part).as_bytes());
            } else {
                record.extend_from_slice(part.as_bytes());
            }
            record.push(b'\n');
        }
        // The reader holds the other end for the whole build, so a write
        // error means the log is gone; the build itself goes on.
        let _ = self.tx.write_all(&record).await;
    }

    /// Writes sync record `seq` (never shown): once the reader has seen it,
    /// every line written before it has been emitted.
    pub(crate) async fn sync(&mut self, seq: u64) {
        let mut record = self.mark.clone();
        if let Some(last) = record.last_mut() {
            *last = 0x01;
        }
        record.extend_from_slice(format!("{seq}\n").as_bytes());
        let _ = self.tx.write_all(&record).await;
    }
}

/// Reads the log FIFO until every writer closed it, or until `finished`
/// plus a short drain (a background process that left the build's process
/// group may hold it open forever), emitting masked lines and publishing
/// the sync records seen to `synced`.
pub(crate) async fn pump(
    mut rx: pipe::Receiver,
    mut assembler: LineAssembler,
    emitter: &Emitter<'_>,
    finished: &CancellationToken,
    synced: &watch::Sender<u64>,
) {
    let mut buf = vec![0u8; 64 * 1024];
    let drain = tokio::time::sleep(Duration::MAX);
    tokio::pin!(drain);
    let mut draining = false;
    let mut out = |line: &[u8], runner: bool| emitter.emit_bytes(line, runner);
    loop {
        tokio::select! {
            read = rx.read(&mut buf) => match read {
                Ok(0) => break,
                Ok(n) => {
                    assembler.push(&buf[..n], &mut out);
                    if assembler.synced() > *synced.borrow() {
                        synced.send_replace(assembler.synced());
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => break,
            },
            () = finished.cancelled(), if !draining => {
                draining = true;
                drain.as_mut().reset(tokio::time::Instant::now() + DRAIN);
            }
            () = &mut drain, if draining => break,
        }
    }
    assembler.finish(&mut out);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(assembler: &mut LineAssembler, chunks: &[&[u8]]) -> Vec<String> {
        let mut got = Vec::new();
        for chunk in chunks {
            assembler.push(chunk, &mut |l, _| {
                got.push(String::from_utf8_lossy(l).into_owned())
            });
        }
        assembler.finish(&mut |l, _| got.push(String::from_utf8_lossy(l).into_owned()));
        got
    }

    #[test]
    fn timestamps_look_like_codebuild() {
        let at = UNIX_EPOCH + Duration::from_micros(1_795_910_400_000_123);
        assert_eq!(timestamp(at), "2026/11/29 00:00:00.000123");
        assert_eq!(timestamp(UNIX_EPOCH), "1970/01/01 00:00:00.000000");
    }

    #[test]
    fn lines_split_across_chunks_are_joined() {
        let mut a = LineAssembler::new(b"\0MARK\0".to_vec(), Masker::default());
        assert_eq!(
            lines(&mut a, &[b"he", b"llo\nwor", b"ld\n", b"tail"]),
            ["hello", "world", "tail"]
        );
    }

    #[test]
    fn a_runner_line_ends_a_partial_output_line() {
        let mut a = LineAssembler::new(b"\0MARK\0".to_vec(), Masker::default());
        let got = lines(&mut a, &[b"partial\0MA", b"RK\0[Container] x\nnext\n"]);
        assert_eq!(got, ["partial", "[Container] x", "next"]);
    }

    #[test]
    fn sync_records_are_counted_not_shown_and_end_a_partial_line() {
        let mut a = LineAssembler::new(b"\0MARK\0".to_vec(), Masker::default());
        let got = lines(
            &mut a,
            &[b"out\npartial\0MA", b"RK\x017\n", b"\0MARK\x013\nnext\n"],
        );
        assert_eq!(got, ["out", "partial", "next"]);
        assert_eq!(a.synced(), 7);
    }

    #[test]
    fn a_forged_sync_record_is_output() {
        let mut a = LineAssembler::new(b"\0MARK\0".to_vec(), Masker::default());
        let got = lines(&mut a, &[b"\0MASK\x019\n"]);
        assert_eq!(got, ["\0MASK\x019"]);
        assert_eq!(a.synced(), 0);
    }

    #[test]
    fn a_nul_that_is_not_a_mark_is_output() {
        let mut a = LineAssembler::new(b"\0MARK\0".to_vec(), Masker::default());
        let got = lines(&mut a, &[b"a\0b\n", b"\0\0\n"]);
        assert_eq!(got, ["a\0b", "\0\0"]);
    }

    #[test]
    fn a_mark_split_after_a_long_line_is_never_cut() {
        let mark = b"\0MARKMARK\0".to_vec();
        let mut a = LineAssembler::new(mark.clone(), Masker::default());
        let mut data = vec![b'x'; MAX_LINE * 2 + 100];
        data.extend_from_slice(&mark[..4]);
        let mut got: Vec<Vec<u8>> = Vec::new();
        a.push(&data, &mut |l, _| got.push(l.to_vec()));
        a.push(&[&mark[4..], b"[Container] hi\n"].concat(), &mut |l, _| {
            got.push(l.to_vec())
        });
        a.finish(&mut |l, _| got.push(l.to_vec()));
        assert_eq!(got.last().unwrap(), b"[Container] hi");
        let xs: usize = got[..got.len() - 1].iter().map(Vec::len).sum();
        assert_eq!(xs, MAX_LINE * 2 + 100);
        assert!(got.iter().all(|l| !l.contains(&0)));
    }

    #[test]
    fn long_lines_are_cut_outside_secrets() {
        let secret = "s3cr3t-value";
        let mut a = LineAssembler::new(b"\0M\0".to_vec(), Masker::new([secret]));
        // Place the secret right across the cut point.
        let mut text = "x".repeat(MAX_LINE - 5).into_bytes();
        text.extend_from_slice(secret.as_bytes());
        text.extend_from_slice(&b"y".repeat(MAX_LINE));
        let mut got: Vec<Vec<u8>> = Vec::new();
        for chunk in text.chunks(1000) {
            a.push(chunk, &mut |l, _| got.push(l.to_vec()));
        }
        a.finish(&mut |l, _| got.push(l.to_vec()));
        assert!(got.len() >= 2);
        assert!(got.iter().all(|l| l.len() <= MAX_LINE + secret.len()));
        let masker = Masker::new([secret]);
        for line in &got {
            let masked = masker.mask(std::str::from_utf8(line).unwrap()).into_owned();
            assert!(!masked.contains("s3cr"), "fragment leaked");
            assert!(!masked.contains("value"), "fragment leaked");
        }
        assert_eq!(got.iter().map(Vec::len).sum::<usize>(), text.len());
    }
}
