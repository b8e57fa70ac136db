//! Target groups: membership, health state, weighted selection, in-flight
//! accounting and draining.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed, Ordering::SeqCst};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Duration;

use http::HeaderValue;
use tokio::runtime::Handle;
use tokio::sync::{Notify, broadcast, watch};
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::{CancellationToken, DropGuard};

use crate::error::ProxyError;
use crate::health::{self, HealthCheckConfig};
use crate::stats::{self, LatencyHistogram, Outcome, RevisionWindow, TargetCounters, WindowStats};

/// A backend to register: `id` names it within its group (a task id, say),
/// `weight` is its share of the group's traffic relative to the others
/// (0 = registered but sent nothing). `revision` labels the version of
/// the service it runs, so statistics can compare revisions (a canary with
/// its baseline); targets without one are counted under the empty label.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub id: String,
    pub addr: SocketAddr,
    pub weight: u32,
    pub revision: Option<String>,
    /// What the target speaks; HTTP/1.1 unless set.
    pub protocol: Protocol,
}

/// The protocol the load balancer speaks to a target, as the service
/// declares it. `Http2` and `Grpc` are both h2c with prior knowledge
/// (HTTP/2 without TLS, no upgrade dance); `Grpc` also refuses gRPC
/// requests from HTTP/1.1 clients, which could not carry its trailers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Protocol {
    #[default]
    Http1,
    Http2,
    Grpc,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Http1 => "http1",
            Self::Http2 => "http2",
            Self::Grpc => "grpc",
        }
    }
}

impl Target {
    pub fn new(id: impl Into<String>, addr: SocketAddr) -> Self {
        Self {
            id: id.into(),
            addr,
            weight: 1,
            revision: None,
            protocol: Protocol::Http1,
        }
    }

    pub fn with_protocol(mut self, protocol: Protocol) -> Self {
        self.protocol = protocol;
        self
    }

    pub fn with_weight(mut self, weight: u32) -> Self {
        self.weight = weight;
        self
    }

    pub fn with_revision(mut self, revision: impl Into<String>) -> Self {
        self.revision = Some(revision.into());
        self
    }
}

/// A target's state as ALB names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Health {
    /// Registered, health checks not yet passed: no traffic while any target
    /// of the group is Healthy.
    Initial,
    Healthy,
    /// Failed `unhealthy_threshold` checks in a row (after its grace period).
    Unhealthy,
    /// Deregistered: takes no new requests, its in-flight ones finish.
    Draining,
}

impl fmt::Display for Health {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Initial => "initial",
            Self::Healthy => "healthy",
            Self::Unhealthy => "unhealthy",
            Self::Draining => "draining",
        })
    }
}

/// A snapshot of one target, for `gantry` status views and deploy logic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TargetStatus {
    pub id: String,
    pub addr: SocketAddr,
    pub health: Health,
    pub in_flight: usize,
    pub weight: u32,
    /// Why the latest failed health check failed, if the latest one did.
    pub last_failure: Option<String>,
}

/// A snapshot of one target with its cumulative request counters since
/// registration, for metrics.
#[derive(Clone, Debug, PartialEq)]
pub struct TargetStats {
    pub id: String,
    pub revision: Option<String>,
    pub health: Health,
    pub in_flight: usize,
    pub weight: u32,
    /// Attempts by outcome, in the order of [`crate::OutcomeClass::ALL`].
    pub outcomes: [u64; 7],
    /// Latency of the answered attempts.
    pub latency: LatencyHistogram,
}

/// A target changed state. Sent to every `subscribe`r, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HealthEvent {
    pub target_group: String,
    pub target: String,
    pub addr: SocketAddr,
    pub previous: Health,
    pub current: Health,
    /// The failed check's reason when the target became Unhealthy.
    pub reason: Option<String>,
}

/// A named set of targets that rules forward to. Cheap to clone: clones
/// share the same targets.
#[derive(Clone)]
pub struct TargetGroup {
    inner: Arc<GroupInner>,
}

impl fmt::Debug for TargetGroup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TargetGroup")
            .field("name", &self.inner.name)
            .finish_non_exhaustive()
    }
}

struct GroupInner {
    name: String,
    state: Mutex<GroupState>,
    events: broadcast::Sender<HealthEvent>,
    /// Bumped on every state change so `wait_healthy` wakes up without
    /// having to keep up with the event stream.
    changes: watch::Sender<()>,
    /// Health checkers and drain timers run here: registering and
    /// deregistering are plain methods and may be called from any thread.
    runtime: Handle,
    /// Parent of every checker's token; cancelled when the listener stops.
    checks: CancellationToken,
    /// Whether `state.stickiness` is set: read without the lock on every
    /// answer, so a group without stickiness costs its responses nothing.
    sticky: AtomicBool,
}

#[derive(Default)]
struct GroupState {
    /// In registration order, which breaks weighted round-robin ties.
    targets: Vec<Entry>,
    health_check: Option<Arc<HealthCheckConfig>>,
    /// Each revision's sliding window, by revision label (`""` for targets
    /// without one); shared with the revision's endpoints, which record
    /// into it. Outlives the targets so a canary's baseline keeps its
    /// history while its replicas are replaced.
    windows: HashMap<String, Arc<RevisionWindow>>,
    /// Header routing during a canary (see [`TargetGroup::set_canary_route`]).
    canary: Option<CanaryRoute>,
    /// Sticky sessions (see [`TargetGroup::set_stickiness`]).
    stickiness: Option<Stickiness>,
}

/// The name of the load balancer's stickiness cookie (ALB's is `AWSALB`).
pub const STICKY_COOKIE: &str = "GANTRYLB";

/// ALB's `lb_cookie` stickiness: the cookie's lifetime, and the key its
/// values are made with, so they name a target without showing it.
struct Stickiness {
    max_age: u64,
    key: std::hash::RandomState,
}

impl Stickiness {
    /// The cookie value of a target: a keyed hash of its id.
    fn token(&self, endpoint: &Endpoint) -> u64 {
        std::hash::BuildHasher::hash_one(&self.key, endpoint.id.as_str())
    }
}

/// The value of the stickiness cookie in a request's `Cookie` headers.
fn sticky_token(headers: &http::HeaderMap) -> Option<u64> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|line| line.split(';'))
        .find_map(|pair| {
            let (name, value) = pair.trim().split_once('=')?;
            (name == STICKY_COOKIE)
                .then(|| u64::from_str_radix(value, 16).ok())
                .flatten()
        })
}

/// Which header routes a request to (or away from) the new revision.
struct CanaryRoute {
    header: http::HeaderName,
    revision: String,
}

/// What a request's canary header asks for.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Preference {
    Canary,
    Stable,
}

struct Entry {
    endpoint: Arc<Endpoint>,
    weight: u32,
    health: Health,
    /// Smooth weighted round-robin state (nginx's `current_weight`).
    current_weight: i64,
    successes: u32,
    failures: u32,
    registered_at: Instant,
    last_failure: Option<String>,
    /// Dropping the entry (or replacing this) stops its health checker.
    _checker: Option<DropGuard>,
}

/// The part of a target that requests hold on to while in flight, so it
/// outlives the target's removal from its group.
pub(crate) struct Endpoint {
    pub(crate) id: String,
    pub(crate) addr: SocketAddr,
    /// The Host header for clients that sent none (HTTP/1.0), prebuilt so
    /// forwarding a request doesn't format the address.
    pub(crate) host: HeaderValue,
    pub(crate) protocol: Protocol,
    revision: Option<String>,
    counters: TargetCounters,
    window: Arc<RevisionWindow>,
    in_flight: AtomicUsize,
    draining: AtomicBool,
    drained: Notify,
    removed: watch::Sender<bool>,
}

impl Endpoint {
    fn new(
        id: String,
        addr: SocketAddr,
        protocol: Protocol,
        revision: Option<String>,
        window: Arc<RevisionWindow>,
    ) -> Self {
        // Formatted without a v6 scope id, which is not valid in a Host
        // header. The fallback is unreachable: digits, dots, colons and
        // brackets are all valid header bytes.
        let text = match addr {
            SocketAddr::V4(a) => a.to_string(),
            SocketAddr::V6(a) => format!("[{}]:{}", a.ip(), a.port()),
        };
        let host =
            HeaderValue::try_from(text).unwrap_or_else(|_| HeaderValue::from_static("localhost"));
        Self {
            id,
            addr,
            host,
            protocol,
            revision,
            counters: TargetCounters::default(),
            window,
            in_flight: AtomicUsize::new(0),
            draining: AtomicBool::new(false),
            drained: Notify::new(),
            removed: watch::Sender::new(false),
        }
    }
}

/// Counts one request (or one upgraded connection) against its target until
/// dropped. Draining waits for every guard of the target to drop.
pub(crate) struct InFlight {
    endpoint: Arc<Endpoint>,
}

impl InFlight {
    /// Only called under the group lock, so a target marked draining under
    /// the same lock never gains a request afterwards.
    fn new(endpoint: Arc<Endpoint>) -> Self {
        endpoint.in_flight.fetch_add(1, SeqCst);
        Self { endpoint }
    }

    pub(crate) fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// Counts one attempt on this target, begun at `started`.
    pub(crate) fn record(&self, outcome: Outcome, started: Instant) {
        let endpoint = &self.endpoint;
        stats::record(&endpoint.counters, &endpoint.window, outcome, started);
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let endpoint = &self.endpoint;
        // SeqCst pairs with `wait_drained`: either this load sees `draining`
        // and wakes the waiter, or the waiter's load sees the count at zero.
        if endpoint.in_flight.fetch_sub(1, SeqCst) == 1 && endpoint.draining.load(SeqCst) {
            endpoint.drained.notify_waiters();
        }
    }
}

impl TargetGroup {
    pub(crate) fn new(name: &str, runtime: Handle, checks: CancellationToken) -> Self {
        Self {
            inner: Arc::new(GroupInner {
                sticky: AtomicBool::new(false),
                name: name.to_owned(),
                state: Mutex::new(GroupState::default()),
                events: broadcast::Sender::new(256),
                changes: watch::Sender::new(()),
                runtime,
                checks,
            }),
        }
    }

    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// Adds a target. With a health check configured it starts Initial and
    /// gets traffic once it passes `healthy_threshold` checks; without one it
    /// is Healthy at once. Registering an id again with the same address only
    /// updates the weight; with a new address it replaces the target (the old
    /// one takes no new requests, its in-flight ones finish).
    pub fn register(&self, target: Target) {
        let mut state = self.inner.lock();
        let state = &mut *state;
        if let Some(i) = state
            .targets
            .iter()
            .position(|e| e.endpoint.id == target.id && e.health != Health::Draining)
        {
            if state.targets[i].endpoint.addr == target.addr {
                state.targets[i].weight = target.weight;
                self.inner.changes.send_replace(());
                return;
            }
            let old = state.targets.remove(i);
            old.endpoint.draining.store(true, SeqCst);
            old.endpoint.removed.send_replace(true);
        }
        let now = Instant::now();
        // Revisions without targets are forgotten once their window is empty.
        state
            .windows
            .retain(|_, window| Arc::strong_count(window) > 1 || !window.is_idle(now));
        let window = state
            .windows
            .entry(target.revision.clone().unwrap_or_default())
            .or_insert_with(|| Arc::new(RevisionWindow::new(now)))
            .clone();
        let endpoint = Arc::new(Endpoint::new(
            target.id,
            target.addr,
            target.protocol,
            target.revision,
            window,
        ));
        let (health, checker) = match &state.health_check {
            Some(config) => (Health::Initial, Some(self.start_checker(&endpoint, config))),
            None => (Health::Healthy, None),
        };
        tracing::info!(
            target_group = %self.inner.name, target = %endpoint.id, addr = %endpoint.addr,
            weight = target.weight, %health, "target registered"
        );
        state.targets.push(Entry {
            endpoint,
            weight: target.weight,
            health,
            current_weight: 0,
            successes: 0,
            failures: 0,
            registered_at: now,
            last_failure: None,
            _checker: checker,
        });
        self.inner.changes.send_replace(());
    }

    /// Routes requests carrying `header` to the targets labelled `revision`
    /// whatever their weight (even 0) when its value is `always`, and away
    /// from them when it is `never` (case-insensitive); other values and
    /// requests without the header follow the weights. `None` ends it. When
    /// no target of the asked side may take the request, the weights decide.
    pub fn set_canary_route(&self, route: Option<(http::HeaderName, String)>) {
        self.inner.lock().canary = route.map(|(header, revision)| CanaryRoute { header, revision });
    }

    /// Sticky sessions, as ALB's `lb_cookie` stickiness: every answer sets
    /// the [`STICKY_COOKIE`] (lasting `duration`, refreshed by each
    /// answer) naming the target that gave it, and a request carrying it
    /// goes back to that target while it is Healthy with a weight above 0;
    /// otherwise (replaced, draining, unhealthy, weighted out by a canary)
    /// the weights pick anew and the cookie follows. The canary header
    /// still wins over the cookie. `None` ends stickiness; changing the
    /// duration keeps the cookies' values.
    pub fn set_stickiness(&self, duration: Option<Duration>) {
        let mut state = self.inner.lock();
        self.inner.sticky.store(duration.is_some(), SeqCst);
        state.stickiness = match (duration, state.stickiness.take()) {
            (None, _) => None,
            (Some(duration), kept) => Some(Stickiness {
                max_age: duration.as_secs().max(1),
                key: kept.map_or_else(std::hash::RandomState::new, |k| k.key),
            }),
        };
    }

    /// The `Set-Cookie` value that keeps a client on `endpoint`, when the
    /// group is sticky.
    pub(crate) fn sticky_cookie(&self, endpoint: &Endpoint) -> Option<HeaderValue> {
        if !self.inner.sticky.load(Relaxed) {
            return None;
        }
        let state = self.inner.lock();
        let sticky = state.stickiness.as_ref()?;
        HeaderValue::from_str(&format!(
            "{STICKY_COOKIE}={:016x}; Max-Age={}; Path=/; HttpOnly",
            sticky.token(endpoint),
            sticky.max_age
        ))
        .ok()
    }

    /// Changes a target's share of traffic (blue/green and canary shifts).
    pub fn set_weight(&self, id: &str, weight: u32) -> Result<(), ProxyError> {
        let mut state = self.inner.lock();
        let entry = state
            .targets
            .iter_mut()
            .find(|e| e.endpoint.id == id && e.health != Health::Draining)
            .ok_or_else(|| self.inner.unknown(id))?;
        entry.weight = weight;
        Ok(())
    }

    /// Stops sending new requests to the target at once (before the future
    /// is first polled), then resolves when its in-flight requests have
    /// finished or `drain` has elapsed, whichever comes first; the target is
    /// then gone from the group. Requests still running at the deadline are
    /// not cut: whoever stops the backend ends them. The drain runs even if
    /// the future is dropped. An unknown id resolves at once.
    pub fn deregister(
        &self,
        id: &str,
        drain: Duration,
    ) -> impl Future<Output = ()> + Send + 'static {
        let removed = {
            let mut state = self.inner.lock();
            let active = state
                .targets
                .iter_mut()
                .find(|e| e.endpoint.id == id && e.health != Health::Draining);
            match active {
                Some(entry) => {
                    entry.endpoint.draining.store(true, SeqCst);
                    entry._checker = None;
                    self.inner.transition(entry, Health::Draining, None);
                    let endpoint = entry.endpoint.clone();
                    let removed = endpoint.removed.subscribe();
                    let group = self.inner.clone();
                    self.inner.runtime.spawn(async move {
                        wait_drained(&endpoint, drain).await;
                        group.remove(&endpoint);
                    });
                    Some(removed)
                }
                // Deregistering twice waits for the first drain to finish.
                None => state
                    .targets
                    .iter()
                    .find(|e| e.endpoint.id == id)
                    .map(|e| e.endpoint.removed.subscribe()),
            }
        };
        async move {
            if let Some(mut removed) = removed {
                let _ = removed.wait_for(|gone| *gone).await;
            }
        }
    }

    /// Starts (or restarts, with fresh counters) active checks of every
    /// target. Targets keep their current state until the checks move them.
    pub fn set_health_check(&self, config: HealthCheckConfig) -> Result<(), ProxyError> {
        config
            .validate()
            .map_err(|problems| ProxyError::InvalidHealthCheck {
                group: self.inner.name.clone(),
                reason: problems.join("; "),
            })?;
        let config = Arc::new(config);
        let mut state = self.inner.lock();
        let state = &mut *state;
        state.health_check = Some(config.clone());
        for entry in &mut state.targets {
            if entry.health == Health::Draining {
                continue;
            }
            entry.successes = 0;
            entry.failures = 0;
            // Replacing the guard cancels the checker of the old config.
            entry._checker = Some(self.start_checker(&entry.endpoint, &config));
        }
        Ok(())
    }

    pub fn targets(&self) -> Vec<TargetStatus> {
        let state = self.inner.lock();
        state
            .targets
            .iter()
            .map(|e| TargetStatus {
                id: e.endpoint.id.clone(),
                addr: e.endpoint.addr,
                health: e.health,
                in_flight: e.endpoint.in_flight.load(SeqCst),
                weight: e.weight,
                last_failure: e.last_failure.clone(),
            })
            .collect()
    }

    /// Every target with its request counters, for metrics.
    pub fn stats(&self) -> Vec<TargetStats> {
        let state = self.inner.lock();
        state
            .targets
            .iter()
            .map(|e| TargetStats {
                id: e.endpoint.id.clone(),
                revision: e.endpoint.revision.clone(),
                health: e.health,
                in_flight: e.endpoint.in_flight.load(SeqCst),
                weight: e.weight,
                outcomes: e.endpoint.counters.outcomes(),
                latency: e.endpoint.counters.latency(),
            })
            .collect()
    }

    /// Each revision's requests over the last `window` (whole seconds up
    /// to now, at most [`crate::MAX_WINDOW`]), by revision label: every
    /// revision with a registered target, and those without one whose
    /// requests are recent. Reads tokio's clock, so a paused clock drives
    /// it in tests. What a canary analysis compares.
    pub fn window_stats(&self, window: Duration) -> BTreeMap<String, WindowStats> {
        let windows: Vec<(String, Arc<RevisionWindow>)> = {
            let state = self.inner.lock();
            state
                .windows
                .iter()
                .map(|(revision, w)| (revision.clone(), w.clone()))
                .collect()
        };
        let now = Instant::now();
        windows
            .into_iter()
            // Two references: the map's and ours; none from a target.
            .filter(|(_, w)| Arc::strong_count(w) > 2 || !w.is_idle(now))
            .map(|(revision, w)| (revision, w.stats(now, window)))
            .collect()
    }

    /// Resolves once the target is Healthy. Fails as soon as it is
    /// Unhealthy (which only happens after its grace period) or draining,
    /// rather than waiting out `timeout`, so a deploy can roll back early.
    pub async fn wait_healthy(&self, id: &str, timeout: Duration) -> Result<(), ProxyError> {
        let deadline = later(Instant::now(), timeout);
        let mut changes = self.inner.changes.subscribe();
        loop {
            // Mark the current version seen before reading the state, so a
            // change after the read wakes `changed()` below.
            changes.borrow_and_update();
            match self.inner.health_of(id) {
                None => return Err(self.inner.unknown(id)),
                Some((Health::Healthy, _)) => return Ok(()),
                Some((Health::Unhealthy, reason)) => {
                    return Err(ProxyError::TargetUnhealthy {
                        group: self.inner.name.clone(),
                        target: id.to_owned(),
                        reason: reason.unwrap_or_else(|| "failed health checks".to_owned()),
                    });
                }
                Some((Health::Draining, _)) => {
                    return Err(ProxyError::TargetDraining {
                        group: self.inner.name.clone(),
                        target: id.to_owned(),
                    });
                }
                Some((Health::Initial, _)) => {}
            }
            match tokio::time::timeout_at(deadline, changes.changed()).await {
                Ok(Ok(())) => {}
                // The sender lives as long as the group, which `self` holds;
                // treat the impossible like a timeout rather than spin.
                Ok(Err(_)) | Err(_) => {
                    return Err(ProxyError::HealthTimeout {
                        group: self.inner.name.clone(),
                        target: id.to_owned(),
                        timeout,
                    });
                }
            }
        }
    }

    /// Every state change of every target of this group, in order. A
    /// receiver that falls more than 256 events behind gets `Lagged`.
    pub fn subscribe(&self) -> broadcast::Receiver<HealthEvent> {
        self.inner.events.subscribe()
    }

    /// Chooses the target for a new request, or `None` when no target may
    /// take one. Among Healthy targets by smooth weighted round-robin; when
    /// none is Healthy, among Initial and Unhealthy ones (ALB's fail-open);
    /// never a Draining one or one of weight 0. `exclude` is the target a
    /// failed attempt just used.
    #[cfg(test)]
    pub(crate) fn pick(&self, exclude: Option<&Endpoint>) -> Option<InFlight> {
        self.pick_for(exclude, None)
    }

    /// As `pick`, honouring the canary header among `headers` (see
    /// [`TargetGroup::set_canary_route`]).
    pub(crate) fn pick_for(
        &self,
        exclude: Option<&Endpoint>,
        headers: Option<&http::HeaderMap>,
    ) -> Option<InFlight> {
        let mut state = self.inner.lock();
        let preference = match (&state.canary, headers) {
            (Some(canary), Some(headers)) => headers.get(&canary.header).and_then(|value| {
                let value = value.as_bytes();
                if value.eq_ignore_ascii_case(b"always") {
                    Some((Preference::Canary, canary.revision.clone()))
                } else if value.eq_ignore_ascii_case(b"never") {
                    Some((Preference::Stable, canary.revision.clone()))
                } else {
                    None
                }
            }),
            _ => None,
        };
        if let Some((preference, revision)) = preference {
            let side = |e: &Entry| {
                (e.endpoint.revision.as_deref() == Some(revision.as_str()))
                    == (preference == Preference::Canary)
            };
            if let Some(picked) = Self::pick_among(&mut state, exclude, true, &side) {
                return Some(picked);
            }
        } else if let (Some(sticky), Some(token)) =
            (&state.stickiness, headers.and_then(sticky_token))
        {
            let kept = state.targets.iter().find(|e| {
                e.health == Health::Healthy
                    && e.weight > 0
                    && !exclude.is_some_and(|x| std::ptr::eq(x, Arc::as_ptr(&e.endpoint)))
                    && sticky.token(&e.endpoint) == token
            });
            if let Some(entry) = kept {
                return Some(InFlight::new(entry.endpoint.clone()));
            }
        }
        Self::pick_among(&mut state, exclude, false, &|_| true)
    }

    /// Smooth weighted round-robin among the entries `side` admits. For a
    /// request the header `routed`, a weight of 0 counts as 1: the header
    /// reaches the new revision before it takes traffic, and the old one
    /// while it waits at weight 0 to be stopped.
    fn pick_among(
        state: &mut GroupState,
        exclude: Option<&Endpoint>,
        routed: bool,
        side: &dyn Fn(&Entry) -> bool,
    ) -> Option<InFlight> {
        let weight_of = |e: &Entry| if routed { e.weight.max(1) } else { e.weight };
        let usable = |e: &Entry| {
            weight_of(e) > 0
                && e.health != Health::Draining
                && side(e)
                && !exclude.is_some_and(|x| std::ptr::eq(x, Arc::as_ptr(&e.endpoint)))
        };
        let any_healthy = state
            .targets
            .iter()
            .any(|e| e.health == Health::Healthy && usable(e));
        let mut total: i64 = 0;
        let mut best: Option<(usize, i64)> = None;
        for (i, e) in state.targets.iter_mut().enumerate() {
            if !usable(e) || (any_healthy && e.health != Health::Healthy) {
                continue;
            }
            let weight = weight_of(e);
            e.current_weight += i64::from(weight);
            total += i64::from(weight);
            if best.is_none_or(|(_, w)| e.current_weight > w) {
                best = Some((i, e.current_weight));
            }
        }
        let (i, _) = best?;
        let entry = &mut state.targets[i];
        entry.current_weight -= total;
        Some(InFlight::new(entry.endpoint.clone()))
    }

    fn start_checker(
        &self,
        endpoint: &Arc<Endpoint>,
        config: &Arc<HealthCheckConfig>,
    ) -> DropGuard {
        let token = self.inner.checks.child_token();
        let guard = token.clone().drop_guard();
        self.inner.runtime.spawn(run_checker(
            Arc::downgrade(&self.inner),
            endpoint.clone(),
            config.clone(),
            token,
        ));
        guard
    }
}

impl GroupInner {
    /// A panic elsewhere must not take routing down with it; the state is
    /// kept consistent by every critical section, so a poisoned lock's data
    /// is still good.
    fn lock(&self) -> MutexGuard<'_, GroupState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn unknown(&self, id: &str) -> ProxyError {
        ProxyError::UnknownTarget {
            group: self.name.clone(),
            target: id.to_owned(),
        }
    }

    fn health_of(&self, id: &str) -> Option<(Health, Option<String>)> {
        let state = self.lock();
        let mut found = None;
        for e in state.targets.iter().filter(|e| e.endpoint.id == id) {
            found = Some((e.health, e.last_failure.clone()));
            // An active target wins over a draining one with the same id.
            if e.health != Health::Draining {
                break;
            }
        }
        found
    }

    /// Called with the state locked, so events go out in transition order.
    fn transition(&self, entry: &mut Entry, to: Health, reason: Option<String>) {
        let from = entry.health;
        if from == to {
            return;
        }
        entry.health = to;
        if to == Health::Unhealthy {
            tracing::warn!(
                target_group = %self.name, target = %entry.endpoint.id, addr = %entry.endpoint.addr,
                %from, reason = reason.as_deref().unwrap_or(""), "target unhealthy"
            );
        } else {
            tracing::info!(
                target_group = %self.name, target = %entry.endpoint.id, addr = %entry.endpoint.addr,
                %from, %to, "target health changed"
            );
        }
        // No subscriber is not an error: the circuit breaker is optional.
        let _ = self.events.send(HealthEvent {
            target_group: self.name.clone(),
            target: entry.endpoint.id.clone(),
            addr: entry.endpoint.addr,
            previous: from,
            current: to,
            reason,
        });
        self.changes.send_replace(());
    }

    fn record_check(
        &self,
        endpoint: &Arc<Endpoint>,
        config: &Arc<HealthCheckConfig>,
        result: Result<(), String>,
    ) {
        let mut state = self.lock();
        let state = &mut *state;
        // A checker of a replaced config may finish one last probe.
        if !state
            .health_check
            .as_ref()
            .is_some_and(|current| Arc::ptr_eq(current, config))
        {
            return;
        }
        let Some(entry) = state
            .targets
            .iter_mut()
            .find(|e| Arc::ptr_eq(&e.endpoint, endpoint))
        else {
            return;
        };
        if entry.health == Health::Draining {
            return;
        }
        match result {
            Ok(()) => {
                entry.failures = 0;
                entry.last_failure = None;
                entry.successes = entry.successes.saturating_add(1);
                if entry.health != Health::Healthy && entry.successes >= config.healthy_threshold {
                    self.transition(entry, Health::Healthy, None);
                }
            }
            Err(reason) => {
                entry.successes = 0;
                entry.last_failure = Some(reason.clone());
                if Instant::now() < later(entry.registered_at, config.grace) {
                    tracing::debug!(
                        target_group = %self.name, target = %endpoint.id, %reason,
                        "health check failed within the grace period"
                    );
                    return;
                }
                entry.failures = entry.failures.saturating_add(1);
                if entry.health != Health::Unhealthy && entry.failures >= config.unhealthy_threshold
                {
                    self.transition(entry, Health::Unhealthy, Some(reason));
                }
            }
        }
    }

    fn remove(&self, endpoint: &Arc<Endpoint>) {
        let mut state = self.lock();
        state
            .targets
            .retain(|e| !Arc::ptr_eq(&e.endpoint, endpoint));
        endpoint.removed.send_replace(true);
        self.changes.send_replace(());
        tracing::info!(target_group = %self.name, target = %endpoint.id, "target deregistered");
    }
}

/// Checks one target on its interval until cancelled or its group is gone.
/// Holds the group weakly so a forgotten group doesn't live on through it.
async fn run_checker(
    group: Weak<GroupInner>,
    endpoint: Arc<Endpoint>,
    config: Arc<HealthCheckConfig>,
    cancel: CancellationToken,
) {
    let mut ticks = tokio::time::interval(config.interval);
    // A slow probe delays the next one instead of firing a burst to catch up.
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            _ = ticks.tick() => {}
        }
        let result = tokio::select! {
            () = cancel.cancelled() => return,
            result = health::probe(&endpoint.id, endpoint.addr, &config) => result,
        };
        let Some(group) = group.upgrade() else { return };
        group.record_check(&endpoint, &config, result);
    }
}

/// `start + duration`, saturating: durations come from callers, and
/// `Duration::MAX` means "never" rather than a panic.
pub(crate) fn later(start: Instant, duration: Duration) -> Instant {
    start
        .checked_add(duration)
        .unwrap_or_else(|| start + Duration::from_secs(100 * 365 * 24 * 3600))
}

async fn wait_drained(endpoint: &Endpoint, drain: Duration) {
    let deadline = later(Instant::now(), drain);
    loop {
        // Created before the count is read: a notify between the read and
        // the await still wakes it.
        let notified = endpoint.drained.notified();
        if endpoint.in_flight.load(SeqCst) == 0 {
            return;
        }
        if tokio::time::timeout_at(deadline, notified).await.is_err() {
            tracing::info!(
                target = %endpoint.id, in_flight = endpoint.in_flight.load(SeqCst),
                "deregistration delay elapsed with requests in flight"
            );
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group() -> TargetGroup {
        TargetGroup::new("web", Handle::current(), CancellationToken::new())
    }

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    fn picks(group: &TargetGroup, n: usize) -> String {
        (0..n)
            .map(|_| {
                group
                    .pick(None)
                    .map_or('-', |g| g.endpoint().id.chars().next().unwrap_or('?'))
            })
            .collect()
    }

    #[tokio::test]
    async fn smooth_weighted_round_robin_interleaves_like_nginx() {
        let g = group();
        g.register(Target::new("a", addr(1)).with_weight(5));
        g.register(Target::new("b", addr(2)).with_weight(1));
        g.register(Target::new("c", addr(3)).with_weight(1));
        // nginx's documented sequence for weights 5, 1, 1.
        assert_eq!(picks(&g, 14), "aabacaaaabacaa");
    }

    #[tokio::test]
    async fn the_canary_header_picks_a_revision_whatever_its_weight() {
        let g = group();
        g.register(Target::new("a", addr(1)).with_revision("1"));
        g.register(Target::new("b", addr(2)).with_revision("2").with_weight(0));
        let header = http::HeaderName::from_static("x-gantry-canary");
        let with = |value: &'static str| {
            let mut headers = http::HeaderMap::new();
            headers.insert(header.clone(), http::HeaderValue::from_static(value));
            headers
        };
        let pick = |headers: &http::HeaderMap| {
            g.pick_for(None, Some(headers))
                .map(|f| f.endpoint().id.clone())
                .unwrap()
        };
        // No route set: the header means nothing.
        assert_eq!(pick(&with("always")), "a");
        g.set_canary_route(Some((header.clone(), "2".into())));
        assert_eq!(pick(&with("always")), "b", "weight 0 is no obstacle");
        assert_eq!(pick(&with("ALWAYS")), "b");
        assert_eq!(pick(&with("never")), "a");
        assert_eq!(pick(&with("sometimes")), "a", "other values follow weights");
        assert_eq!(picks(&g, 3), "aaa");
        // At 100% the old revision, at weight 0, still answers `never`.
        g.set_weight("a", 0).unwrap();
        g.set_weight("b", 1).unwrap();
        assert_eq!(pick(&with("never")), "a");
        assert_eq!(picks(&g, 2), "bb");
        // A side with no target left falls back to the weights.
        let gone = g.deregister("a", Duration::ZERO);
        gone.await;
        assert_eq!(pick(&with("never")), "b");
        g.set_canary_route(None);
        assert_eq!(picks(&g, 1), "b");
    }

    #[tokio::test]
    async fn weight_zero_and_draining_targets_get_nothing() {
        let g = group();
        g.register(Target::new("a", addr(1)));
        g.register(Target::new("b", addr(2)).with_weight(0));
        assert_eq!(picks(&g, 3), "aaa");
        let drained = g.deregister("a", Duration::from_secs(10));
        assert!(
            g.pick(None).is_none(),
            "only a draining and a weight-0 target are left"
        );
        drained.await;
        assert_eq!(g.targets().len(), 1);
    }

    #[tokio::test]
    async fn deregister_waits_for_in_flight_requests() {
        let g = group();
        g.register(Target::new("a", addr(1)));
        let request = g.pick(None).unwrap();
        let drained = tokio::spawn(g.deregister("a", Duration::from_secs(30)));
        tokio::task::yield_now().await;
        assert_eq!(g.targets()[0].health, Health::Draining);
        assert_eq!(g.targets()[0].in_flight, 1);
        assert!(!drained.is_finished());
        drop(request);
        drained.await.unwrap();
        assert!(g.targets().is_empty());
    }

    // Real time rather than a paused clock: tokio's `test-util` would make
    // every `Instant::now` of the benchmark examples take a lock.
    #[tokio::test]
    async fn deregister_gives_up_after_the_drain_timeout() {
        let g = group();
        g.register(Target::new("a", addr(1)));
        let _stuck = g.pick(None).unwrap();
        let started = Instant::now();
        g.deregister("a", Duration::from_millis(200)).await;
        assert!(started.elapsed() >= Duration::from_millis(200));
        assert!(g.targets().is_empty());
    }

    #[tokio::test]
    async fn window_stats_are_kept_per_revision_beyond_a_targets_life() {
        let g = group();
        g.register(Target::new("a", addr(1)).with_revision("1"));
        g.register(Target::new("b", addr(2)).with_revision("2"));
        for _ in 0..4 {
            let request = g.pick(None).unwrap();
            let outcome = if request.endpoint().id == "a" {
                Outcome::Answered(200)
            } else {
                Outcome::Answered(502)
            };
            request.record(outcome, Instant::now());
        }
        g.deregister("b", Duration::ZERO).await;
        let stats = g.window_stats(Duration::from_secs(20));
        assert_eq!(stats.keys().collect::<Vec<_>>(), ["1", "2"]);
        assert_eq!((stats["1"].requests, stats["1"].server_errors), (2, 0));
        assert_eq!((stats["2"].requests, stats["2"].error_rate), (2, 1.0));
        let targets = g.stats();
        assert_eq!(targets.len(), 1);
        assert_eq!(targets[0].revision.as_deref(), Some("1"));
        assert_eq!(targets[0].outcomes[1], 2, "two 2xx");
    }

    #[tokio::test]
    async fn reregistering_the_same_address_only_changes_the_weight() {
        let g = group();
        g.register(Target::new("a", addr(1)));
        g.register(Target::new("a", addr(1)).with_weight(7));
        let targets = g.targets();
        assert_eq!(targets.len(), 1);
        assert_eq!(targets[0].weight, 7);
    }
}
