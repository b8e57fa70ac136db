//! Action logs: lines are timestamped as they arrive and written to the
//! store in batches by one writer task, so a build that floods its output
//! costs one transaction per batch, not per line. The channel is bounded:
//! a producer faster than the database waits, memory does not grow.
//!
//! Logs are bounded too ([`LogLimits`]). A line longer than
//! `max_line_bytes` is cut and says so. An action attempt's log keeps its
//! first half (by lines and bytes) as it comes; after that only the newest
//! lines are held, in a ring of the other half's size, and written when the
//! attempt's log is dropped, behind one `[gantry]` line telling what was
//! cut. The writer task also deletes the logs of old executions (by age,
//! and beyond the newest N per pipeline) at start and then periodically.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use gantry_clock::now_ms;
use gantry_store::{BatchName, LogLine, NewEvent, Store, StoreError};
use tokio::sync::{mpsc, oneshot};

const CHANNEL_CAPACITY: usize = 8192;
const BATCH: usize = 2000;
/// How long lines may wait for more before they are written, when nobody
/// waits for them. `gantry logs --follow` shows lines this much later.
const LINGER: std::time::Duration = std::time::Duration::from_millis(25);

/// Bounds on what action logs keep.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogLimits {
    /// Lines one action attempt keeps: the first half and the last half.
    /// Default 100,000.
    pub max_lines_per_attempt: usize,
    /// Bytes of line text one action attempt keeps, split the same way.
    /// Default 10 MiB.
    pub max_bytes_per_attempt: usize,
    /// Longer lines are cut to this many bytes. Default 64 KiB.
    pub max_line_bytes: usize,
    /// Logs of executions that finished longer ago are deleted.
    /// Default 30 days.
    pub retention_age: Duration,
    /// Logs of finished executions beyond the newest this many of their
    /// pipeline are deleted. Default 100.
    pub retention_executions: usize,
    /// How often retention runs (also once at start). Default 1 hour.
    pub retention_interval: Duration,
}

impl Default for LogLimits {
    fn default() -> Self {
        Self {
            max_lines_per_attempt: 100_000,
            max_bytes_per_attempt: 10 << 20,
            max_line_bytes: 64 << 10,
            retention_age: Duration::from_secs(30 * 24 * 3600),
            retention_executions: 100,
            retention_interval: Duration::from_secs(3600),
        }
    }
}

enum Message {
    Line(LogLine),
    /// The tail of a cut log, its marker first: one message so nothing
    /// sent after it can come between.
    Lines(Vec<LogLine>),
    Flush(oneshot::Sender<()>),
    /// An engine event to append after every line sent before it, in the
    /// same transaction; answers the event's sequence number.
    Commit(NewEvent, oneshot::Sender<Result<i64, StoreError>>),
}

/// The handle every action's log goes through.
#[derive(Clone)]
pub struct LogWriter {
    tx: mpsc::Sender<Message>,
    limits: Arc<LogLimits>,
}

impl LogWriter {
    /// Starts the writer task with the default [`LogLimits`].
    pub fn start(store: Store) -> LogWriter {
        Self::start_with(store, LogLimits::default())
    }

    /// Starts the writer task, and the retention task beside it.
    ///
    /// The writer is the store's one writer of logs and engine events. It
    /// lets lines gather for up to `LINGER` (a build's output comes in
    /// bursts), but a flush or an event is written at once, with the lines
    /// before it: an action's lines and the event that ends it are one
    /// transaction.
    pub fn start_with(store: Store, limits: LogLimits) -> LogWriter {
        let (tx, mut rx) = mpsc::channel::<Message>(CHANNEL_CAPACITY);
        tokio::spawn(retention(store.clone(), limits.clone(), tx.downgrade()));
        tokio::spawn(async move {
            let mut batch = Batch::default();
            while let Some(first) = rx.recv().await {
                batch.add(first);
                let linger = tokio::time::sleep(LINGER);
                tokio::pin!(linger);
                while !batch.urgent() && batch.lines.len() < BATCH {
                    tokio::select! {
                        biased;
                        message = rx.recv() => match message {
                            Some(message) => batch.add(message),
                            None => break,
                        },
                        () = &mut linger => break,
                    }
                }
                // Whatever else is already queued goes in the same write.
                while batch.lines.len() < BATCH {
                    match rx.try_recv() {
                        Ok(message) => batch.add(message),
                        Err(_) => break,
                    }
                }
                batch.write(&store).await;
            }
        });
        LogWriter {
            tx,
            limits: Arc::new(limits),
        }
    }

    /// Queues an engine event after every line sent before this call, to
    /// be written in one transaction with them (and with whatever other
    /// events are queued by then: a group commit). Events are written in
    /// the order they are queued; await the answer to know this one is
    /// in the store.
    pub async fn commit(&self, event: NewEvent) -> Result<Committed, StoreError> {
        let (done, wait) = oneshot::channel();
        self.tx
            .send(Message::Commit(event, done))
            .await
            .map_err(|_| StoreError::Closed)?;
        Ok(Committed(wait))
    }

    pub fn action(&self, execution_id: &str, stage: &str, action: &str, attempt: u32) -> ActionLog {
        let attempt = Attempt {
            tx: self.tx.clone(),
            execution_id: execution_id.to_string(),
            stage: stage.to_string(),
            action: action.to_string(),
            attempt: i64::from(attempt),
            limits: self.limits.clone(),
            cap: Mutex::new(Cap::default()),
        };
        ActionLog {
            attempt: Arc::new(attempt),
        }
    }

    /// Waits until every line sent before this call is in the store. The
    /// kept tail of a cut log is sent when its last `ActionLog` is dropped.
    pub async fn flush(&self) {
        let (done, wait) = oneshot::channel();
        if self.tx.send(Message::Flush(done)).await.is_ok() {
            let _ = wait.await;
        }
    }
}

/// An event queued by [`LogWriter::commit`]; resolves to its sequence
/// number once it is in the store.
pub struct Committed(oneshot::Receiver<Result<i64, StoreError>>);

impl Committed {
    /// Waits until the event is in the store.
    pub async fn written(self) -> Result<i64, StoreError> {
        self.0.await.map_err(|_| StoreError::Closed)?
    }
}

/// What the writer holds between two writes.
#[derive(Default)]
struct Batch {
    lines: Vec<LogLine>,
    events: Vec<(NewEvent, oneshot::Sender<Result<i64, StoreError>>)>,
    flushes: Vec<oneshot::Sender<()>>,
}

impl Batch {
    fn add(&mut self, message: Message) {
        match message {
            Message::Line(line) => self.lines.push(line),
            Message::Lines(lines) => self.lines.extend(lines),
            Message::Flush(done) => self.flushes.push(done),
            Message::Commit(event, done) => self.events.push((event, done)),
        }
    }

    /// Someone waits for this batch: no lingering.
    fn urgent(&self) -> bool {
        !self.events.is_empty() || !self.flushes.is_empty()
    }

    /// One transaction for all of it; answers every waiter. While the
    /// database cannot be reached the same batch is tried again, backing
    /// off to every 5 s, so events keep their order and none is lost; the
    /// store is marked unavailable meanwhile, and the API refuses changes
    /// (`store.unavailable`) until a write reaches it again.
    async fn write(&mut self, store: &Store) {
        let (events, answers): (Vec<NewEvent>, Vec<_>) = self.events.drain(..).unzip();
        let mut pause = std::time::Duration::from_millis(250);
        // Named, so that a retry after a COMMIT whose answer was lost
        // finds it landed instead of writing it twice.
        let name = crate::agents::unique_id();
        let mut batch = BatchName {
            writer: "log",
            name: &name,
            retry: false,
        };
        let result = loop {
            match store.write_named_batch(&batch, &self.lines, &events).await {
                Err(StoreError::Database(error)) if gantry_db::is_unavailable(&error) => {
                    batch.retry = true;
                    if store.db().available() {
                        tracing::error!(%error, "The database cannot be reached: changes are refused and events wait until it is back.");
                    }
                    store.db().set_available(false);
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(std::time::Duration::from_secs(5));
                }
                result => break result,
            }
        };
        if result.is_ok() && !store.db().available() {
            tracing::info!("The database is reachable again.");
            store.db().set_available(true);
        }
        match result {
            Ok(seqs) => {
                for (answer, seq) in answers.into_iter().zip(seqs) {
                    let _ = answer.send(Ok(seq));
                }
            }
            Err(error) => {
                tracing::error!(%error, lines = self.lines.len(), events = events.len(), "Writing action logs and events failed.");
                for answer in answers {
                    let _ = answer.send(Err(StoreError::WriteFailed(error.to_string())));
                }
            }
        }
        self.lines.clear();
        for done in self.flushes.drain(..) {
            let _ = done.send(());
        }
    }
}

/// Deletes old logs at start and every `retention_interval`, until the
/// writer is gone.
async fn retention(store: Store, limits: LogLimits, writer: mpsc::WeakSender<Message>) {
    let mut interval = tokio::time::interval(limits.retention_interval);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        if writer.upgrade().is_none() {
            return;
        }
        let age_ms = i64::try_from(limits.retention_age.as_millis()).unwrap_or(i64::MAX);
        let keep = i64::try_from(limits.retention_executions).unwrap_or(i64::MAX);
        match store
            .prune_logs(now_ms().saturating_sub(age_ms), keep)
            .await
        {
            Ok(0) => {}
            Ok(lines) => tracing::info!(lines, "Deleted the logs of old executions."),
            Err(error) => tracing::warn!(%error, "Deleting old logs failed."),
        }
    }
}

/// The log of one action attempt. Clones share its limits: they count
/// together, and the kept tail is written when the last one is dropped.
#[derive(Clone)]
pub struct ActionLog {
    attempt: Arc<Attempt>,
}

struct Attempt {
    tx: mpsc::Sender<Message>,
    execution_id: String,
    stage: String,
    action: String,
    attempt: i64,
    limits: Arc<LogLimits>,
    cap: Mutex<Cap>,
}

/// What an attempt's log has let through, and the tail it holds back.
#[derive(Default)]
struct Cap {
    head_lines: usize,
    head_bytes: usize,
    /// Once the head is full, the newest lines.
    tail: VecDeque<LogLine>,
    tail_bytes: usize,
    cut_lines: usize,
    cut_bytes: usize,
}

impl ActionLog {
    /// Appends one line (without its newline).
    pub fn line(&self, text: &str) {
        let a = &*self.attempt;
        let text = cap_line(text, a.limits.max_line_bytes);
        let line = LogLine {
            seq: 0,
            execution_id: a.execution_id.clone(),
            stage: a.stage.clone(),
            action: a.action.clone(),
            attempt: a.attempt,
            at: now_ms(),
            line: text.into_owned(),
        };
        let (head_lines, head_bytes) = a.head_limits();
        let tail_lines = a.limits.max_lines_per_attempt - head_lines;
        let tail_bytes = a.limits.max_bytes_per_attempt - head_bytes;
        {
            let mut cap = a.cap.lock().unwrap_or_else(PoisonError::into_inner);
            let len = line.line.len();
            let head_open = cap.tail.is_empty()
                && cap.cut_lines == 0
                && cap.head_lines < head_lines
                && cap.head_bytes + len <= head_bytes;
            if !head_open {
                cap.tail_bytes += len;
                cap.tail.push_back(line);
                while cap.tail.len() > tail_lines || cap.tail_bytes > tail_bytes {
                    let Some(dropped) = cap.tail.pop_front() else {
                        break;
                    };
                    cap.tail_bytes -= dropped.line.len();
                    cap.cut_lines += 1;
                    cap.cut_bytes += dropped.line.len();
                }
                return;
            }
            cap.head_lines += 1;
            cap.head_bytes += len;
        }
        a.send(Message::Line(line));
    }
}

impl Attempt {
    /// Lines and bytes of the head: half of each limit.
    fn head_limits(&self) -> (usize, usize) {
        (
            self.limits.max_lines_per_attempt.div_ceil(2),
            self.limits.max_bytes_per_attempt.div_ceil(2),
        )
    }

    fn send(&self, message: Message) {
        match self.tx.try_send(message) {
            Ok(()) | Err(mpsc::error::TrySendError::Closed(_)) => {}
            Err(mpsc::error::TrySendError::Full(message)) => {
                let tx = self.tx.clone();
                match tokio::runtime::Handle::try_current() {
                    // Back-pressure: the producer (a build's output reader)
                    // waits for the writer instead of buffering without bound.
                    Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
                        tokio::task::block_in_place(move || {
                            let _ = tx.blocking_send(message);
                        });
                    }
                    Ok(_) => {
                        tokio::spawn(async move {
                            let _ = tx.send(message).await;
                        });
                    }
                    Err(_) => {
                        let _ = tx.blocking_send(message);
                    }
                }
            }
        }
    }
}

impl Drop for Attempt {
    fn drop(&mut self) {
        let cap = std::mem::take(self.cap.get_mut().unwrap_or_else(PoisonError::into_inner));
        if cap.tail.is_empty() && cap.cut_lines == 0 {
            return;
        }
        let mut lines = Vec::with_capacity(cap.tail.len() + 1);
        if cap.cut_lines > 0 {
            let first = cap.tail.front().map_or_else(now_ms, |l| l.at);
            lines.push(LogLine {
                seq: 0,
                execution_id: self.execution_id.clone(),
                stage: self.stage.clone(),
                action: self.action.clone(),
                attempt: self.attempt,
                at: first,
                line: format!(
                    "[gantry] {} lines ({}) cut here; the log keeps the first {} and the last {} lines of this attempt (limits: {} lines, {} per attempt).",
                    thousands(cap.cut_lines),
                    bytes(cap.cut_bytes),
                    thousands(cap.head_lines),
                    thousands(cap.tail.len()),
                    thousands(self.limits.max_lines_per_attempt),
                    bytes(self.limits.max_bytes_per_attempt),
                ),
            });
        }
        lines.extend(cap.tail);
        self.send(Message::Lines(lines));
    }
}

/// `text`, cut at `max` bytes (on a character boundary) with a note of
/// how long it was.
fn cap_line(text: &str, max: usize) -> Cow<'_, str> {
    if text.len() <= max {
        return Cow::Borrowed(text);
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    Cow::Owned(format!(
        "{}… [gantry] line cut at {} of {}",
        &text[..end],
        bytes(max),
        bytes(text.len())
    ))
}

fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn bytes(n: usize) -> String {
    const KIB: usize = 1 << 10;
    const MIB: usize = 1 << 20;
    if n >= MIB {
        format!("{:.1} MiB", n as f64 / MIB as f64)
    } else if n >= KIB {
        format!("{:.1} KiB", n as f64 / KIB as f64)
    } else {
        format!("{n} bytes")
    }
}

impl gantry_build::LogSink for ActionLog {
    fn line(&self, line: &str) {
        ActionLog::line(self, line);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_well() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(123_456), "123,456");
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(bytes(12), "12 bytes");
        assert_eq!(bytes(64 << 10), "64.0 KiB");
        assert_eq!(bytes(98 << 20), "98.0 MiB");
    }

    fn event(body: &str) -> NewEvent {
        NewEvent {
            pipeline: "p".into(),
            execution_id: "e".into(),
            at: 0,
            body: body.into(),
            states: Vec::new(),
        }
    }

    #[tokio::test]
    async fn an_event_is_written_after_the_lines_sent_before_it() {
        let store = Store::in_memory().await.unwrap();
        let writer = LogWriter::start(store.clone());
        let log = writer.action("e", "S", "a", 1);
        log.line("one");
        log.line("two");
        let first = writer.commit(event("done")).await.unwrap();
        let second = writer.commit(event("again")).await.unwrap();
        let (first, second) = (
            first.written().await.unwrap(),
            second.written().await.unwrap(),
        );
        assert_eq!(second, first + 1);
        let lines: Vec<String> = store
            .logs("e", None, 0, 10)
            .await
            .unwrap()
            .into_iter()
            .map(|l| l.line)
            .collect();
        assert_eq!(lines, ["one", "two"]);
        let bodies: Vec<String> = store
            .events()
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.body)
            .collect();
        assert_eq!(bodies, ["done", "again"]);
    }

    #[tokio::test]
    async fn lines_nobody_waits_for_are_written_all_the_same() {
        let store = Store::in_memory().await.unwrap();
        let writer = LogWriter::start(store.clone());
        writer.action("e", "S", "a", 1).line("alone");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while store.logs("e", None, 0, 10).await.unwrap().is_empty() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the line was never written"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    #[test]
    fn a_long_line_is_cut_on_a_character_boundary_and_says_so() {
        let line = "é".repeat(100); // 200 bytes
        let cut = cap_line(&line, 51);
        assert!(cut.starts_with(&"é".repeat(25)));
        assert!(cut.ends_with("… [gantry] line cut at 51 bytes of 200 bytes"));
        assert_eq!(cap_line("short", 51), "short");
    }
}
