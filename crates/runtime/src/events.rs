//! The event channel every runtime publishes replica events on.

use std::sync::Mutex;

use tokio::sync::broadcast;

use crate::replica::ReplicaEvent;

/// Events buffered per subscriber; a slower one sees `Lagged` and skips ahead.
const CAPACITY: usize = 1024;

/// A broadcast channel whose first subscriber also gets the events sent
/// before it subscribed: a runtime reports re-adoption while it is being
/// created, before anyone could have subscribed.
pub(crate) struct EventHub {
    sender: broadcast::Sender<ReplicaEvent>,
    first: Mutex<Option<broadcast::Receiver<ReplicaEvent>>>,
}

impl EventHub {
    pub(crate) fn new() -> EventHub {
        let (sender, first) = broadcast::channel(CAPACITY);
        EventHub {
            sender,
            first: Mutex::new(Some(first)),
        }
    }

    /// Logs and publishes `event`, so logs and subscribers cannot disagree.
    pub(crate) fn emit(&self, event: ReplicaEvent) {
        match &event {
            ReplicaEvent::Started { id } => tracing::info!(replica = %id, "replica started"),
            ReplicaEvent::Exited { id, code, signal } => {
                tracing::warn!(replica = %id, ?code, ?signal, "replica exited")
            }
            ReplicaEvent::Restarting { id, attempt, delay } => {
                tracing::info!(replica = %id, attempt, ?delay, "replica restarting")
            }
            ReplicaEvent::Stopped { id } => tracing::info!(replica = %id, "replica stopped"),
        }
        // No receiver at all is not an error: nobody is listening yet.
        let _ = self.sender.send(event);
    }

    pub(crate) fn subscribe(&self) -> broadcast::Receiver<ReplicaEvent> {
        let mut first = self
            .first
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        first.take().unwrap_or_else(|| self.sender.subscribe())
    }
}
