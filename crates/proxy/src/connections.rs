//! The client connections of a listener, held to two limits: the
//! listener's `max_connections`, and a budget for the whole process derived
//! from its file-descriptor limit, so that a flood on one listener can
//! never take the descriptors that health checks, upstream connections,
//! other listeners and the control plane need.
//!
//! At a limit, the listener makes room rather than turning the newcomer
//! away: it closes its oldest connection that has not yet sent a whole
//! request head (a slow-header attacker, most likely), else its oldest one
//! idle between requests. Only when every connection has a request in
//! flight is the new one refused. So a slow-header flood larger than the
//! limit costs its own connections, not the real clients'.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::task::{Context, Waker};

/// Connections of every listener of this process.
static PROCESS_OPEN: AtomicUsize = AtomicUsize::new(0);

/// How many client connections all listeners of this process may hold
/// together. Computed once, after raising the soft descriptor limit to the
/// hard one: each proxied connection may use two descriptors (the client's
/// and a pooled upstream one), and an eighth of the limit (at least 256)
/// is left for everything else.
pub(crate) fn process_budget() -> usize {
    static BUDGET: OnceLock<usize> = OnceLock::new();
    *BUDGET.get_or_init(|| {
        let limit = raise_descriptor_limit();
        let reserve = (limit / 8).max(256);
        let budget = (limit.saturating_sub(reserve) / 2).max(16);
        tracing::info!(
            descriptors = limit,
            budget,
            "client connections of all load balancers"
        );
        budget
    })
}

/// Raises the soft limit on open files to the hard one (a no-op where they
/// are equal) and returns the limit in force.
fn raise_descriptor_limit() -> usize {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    // Linux refuses more than fs.nr_open (1 Mi by default) even when the
    // hard limit is unlimited.
    const CEILING: u64 = 1 << 20;
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return 1024;
    };
    let wanted = hard.min(CEILING);
    if soft < wanted {
        match setrlimit(Resource::RLIMIT_NOFILE, wanted, hard) {
            Ok(()) => return usize::try_from(wanted).unwrap_or(usize::MAX),
            Err(error) => {
                tracing::warn!(%error, soft, hard, "raising the open-file limit failed");
            }
        }
    }
    usize::try_from(soft).unwrap_or(usize::MAX)
}

/// The open connections of one listener, oldest first.
pub(crate) struct ClientConnections {
    max: usize,
    budget: usize,
    open: Mutex<BTreeMap<u64, Arc<ClientConnection>>>,
    next_id: AtomicU64,
}

/// What the listener knows of one client connection. Its counters are
/// written only by the connection's own task; the accept loop reads them
/// to choose whom to close, and asks by setting `evicted`.
#[derive(Default)]
pub(crate) struct ClientConnection {
    /// Requests whose head has been read.
    requests: AtomicU64,
    /// Requests whose response has not finished.
    in_flight: AtomicU64,
    evicted: AtomicBool,
    waker: Mutex<Option<Waker>>,
}

/// Whether `admit` made room by closing another connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admitted {
    Freely,
    ByEviction,
}

impl ClientConnections {
    pub(crate) fn new(max: usize) -> Self {
        Self {
            max: max.max(1),
            budget: process_budget(),
            open: Mutex::new(BTreeMap::new()),
            next_id: AtomicU64::new(0),
        }
    }

    /// Counts a new connection in, closing an older one first if a limit is
    /// reached; `None` if there is no room (every connection is busy).
    pub(crate) fn admit(self: &Arc<Self>) -> Option<(Registration, Admitted)> {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let mut admitted = Admitted::Freely;
        if open.len() >= self.max || PROCESS_OPEN.load(Relaxed) >= self.budget {
            let victim = open
                .values()
                .find(|c| !c.is_evicted() && c.requests.load(Relaxed) == 0)
                .or_else(|| {
                    open.values()
                        .find(|c| !c.is_evicted() && c.in_flight.load(Relaxed) == 0)
                })?;
            victim.evict();
            admitted = Admitted::ByEviction;
        }
        let id = self.next_id.fetch_add(1, Relaxed);
        let connection = Arc::new(ClientConnection::default());
        open.insert(id, connection.clone());
        PROCESS_OPEN.fetch_add(1, Relaxed);
        Some((
            Registration {
                connections: self.clone(),
                id,
                connection,
            },
            admitted,
        ))
    }

    /// Connections open now.
    pub(crate) fn open(&self) -> usize {
        self.len()
    }

    fn len(&self) -> usize {
        self.open
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

impl ClientConnection {
    fn is_evicted(&self) -> bool {
        self.evicted.load(Relaxed)
    }

    fn evict(&self) {
        self.evicted.store(true, Relaxed);
        let waker = self
            .waker
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// True once the listener wants this connection closed. The first call
    /// registers the task to be woken; a task's waker does not change.
    pub(crate) fn poll_evicted(&self, cx: &mut Context<'_>, registered: &mut bool) -> bool {
        if !*registered {
            *registered = true;
            *self.waker.lock().unwrap_or_else(PoisonError::into_inner) = Some(cx.waker().clone());
        }
        // Read after registering, so an eviction between the two is seen.
        self.is_evicted()
    }

    pub(crate) fn requests(&self) -> u64 {
        self.requests.load(Relaxed)
    }

    pub(crate) fn in_flight(&self) -> u64 {
        self.in_flight.load(Relaxed)
    }

    /// Counts a request from its head until the returned guard (held by
    /// the response body) is dropped.
    pub(crate) fn begin_request(self: &Arc<Self>) -> RequestGuard {
        self.requests.fetch_add(1, Relaxed);
        self.in_flight.fetch_add(1, Relaxed);
        RequestGuard(self.clone())
    }
}

pub(crate) struct RequestGuard(Arc<ClientConnection>);

impl Drop for RequestGuard {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Relaxed);
    }
}

/// A connection's place in its listener's table, given up on drop.
pub(crate) struct Registration {
    connections: Arc<ClientConnections>,
    id: u64,
    pub(crate) connection: Arc<ClientConnection>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.connections
            .open
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.id);
        PROCESS_OPEN.fetch_sub(1, Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_the_limit_the_oldest_connection_without_a_request_head_makes_room() {
        let table = Arc::new(ClientConnections::new(3));
        let (busy, _) = table.admit().unwrap();
        let _request = busy.connection.begin_request();
        let (idle, _) = table.admit().unwrap();
        drop(idle.connection.begin_request()); // one request, finished
        let (slow, _) = table.admit().unwrap();

        let (fourth, how) = table.admit().unwrap();
        assert_eq!(how, Admitted::ByEviction);
        assert!(slow.connection.is_evicted());
        assert!(!idle.connection.is_evicted() && !busy.connection.is_evicted());
        drop(slow);
        drop(fourth.connection.begin_request());

        // No head-less connection left: the oldest idle one goes next.
        let (_fifth, how) = table.admit().unwrap();
        assert_eq!(how, Admitted::ByEviction);
        assert!(idle.connection.is_evicted());
        drop(idle);
        assert_eq!(table.len(), 3);
        assert!(!fourth.connection.is_evicted());
    }

    #[test]
    fn when_every_connection_is_busy_a_new_one_is_refused() {
        let table = Arc::new(ClientConnections::new(1));
        let (busy, _) = table.admit().unwrap();
        let _request = busy.connection.begin_request();
        assert!(table.admit().is_none());
        drop(_request);
        assert!(table.admit().is_some());
    }
}
