//! Action logs: lines are timestamped as they arrive and written to the
//! store in batches by one writer task, so a build that floods its output
//! costs one transaction per batch, not per line. The channel is bounded:
//! a producer faster than the database waits, memory does not grow.

use gantry_store::{LogLine, Store};
use tokio::sync::{mpsc, oneshot};

use crate::clock::now_ms;

const CHANNEL_CAPACITY: usize = 8192;
const BATCH: usize = 2000;

enum Message {
    Line(LogLine),
    Flush(oneshot::Sender<()>),
}

/// The handle every action's log goes through.
#[derive(Clone)]
pub struct LogWriter {
    tx: mpsc::Sender<Message>,
}

impl LogWriter {
    /// Starts the writer task.
    pub fn start(store: Store) -> LogWriter {
        let (tx, mut rx) = mpsc::channel::<Message>(CHANNEL_CAPACITY);
        tokio::spawn(async move {
            let mut batch = Vec::with_capacity(BATCH);
            let mut waiters = Vec::new();
            while let Some(first) = rx.recv().await {
                let mut next = Some(first);
                while let Some(message) = next {
                    match message {
                        Message::Line(line) => batch.push(line),
                        Message::Flush(done) => waiters.push(done),
                    }
                    next = if batch.len() < BATCH {
                        rx.try_recv().ok()
                    } else {
                        None
                    };
                }
                if let Err(error) = store.append_logs(&batch).await {
                    tracing::error!(%error, lines = batch.len(), "Writing action logs failed.");
                }
                batch.clear();
                for done in waiters.drain(..) {
                    let _ = done.send(());
                }
            }
        });
        LogWriter { tx }
    }

    pub fn action(&self, execution_id: &str, stage: &str, action: &str, attempt: u32) -> ActionLog {
        ActionLog {
            tx: self.tx.clone(),
            execution_id: execution_id.to_string(),
            stage: stage.to_string(),
            action: action.to_string(),
            attempt: i64::from(attempt),
        }
    }

    /// Waits until every line sent before this call is in the store.
    pub async fn flush(&self) {
        let (done, wait) = oneshot::channel();
        if self.tx.send(Message::Flush(done)).await.is_ok() {
            let _ = wait.await;
        }
    }
}

/// The log of one action attempt.
#[derive(Clone)]
pub struct ActionLog {
    tx: mpsc::Sender<Message>,
    execution_id: String,
    stage: String,
    action: String,
    attempt: i64,
}

impl ActionLog {
    /// Appends one line (without its newline).
    pub fn line(&self, text: &str) {
        let message = Message::Line(LogLine {
            seq: 0,
            execution_id: self.execution_id.clone(),
            stage: self.stage.clone(),
            action: self.action.clone(),
            attempt: self.attempt,
            at: now_ms(),
            line: text.to_string(),
        });
        match self.tx.try_send(message) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Closed(_)) => {}
            Err(mpsc::error::TrySendError::Full(message)) => self.send_waiting(message),
        }
    }

    fn send_waiting(&self, message: Message) {
        let multi_thread = tokio::runtime::Handle::try_current()
            .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
        if multi_thread {
            // Back-pressure: the producer (a build's output reader) waits for
            // the writer instead of buffering without bound.
            let tx = self.tx.clone();
            tokio::task::block_in_place(move || {
                let _ = tx.blocking_send(message);
            });
        } else {
            let tx = self.tx.clone();
            tokio::spawn(async move {
                let _ = tx.send(message).await;
            });
        }
    }
}

impl gantry_build::LogSink for ActionLog {
    fn line(&self, line: &str) {
        ActionLog::line(self, line);
    }
}
