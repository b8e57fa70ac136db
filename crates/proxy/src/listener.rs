//! The listener: accepts client connections, hands them to its workers, and
//! owns the rules and target groups.
//!
//! Workers are threads with a single-threaded Tokio runtime each, like
//! nginx's worker processes. A client connection, the requests on it and
//! the upstream connections they use all live on one worker, so forwarding
//! a request wakes no other thread. An HTTP/2 connection's streams are
//! tasks of their own (hyper's HTTP/2 needs an executor), spawned on the
//! same worker's runtime (`http2.rs`), so this holds for HTTP/2 too. On a multi-threaded runtime the same
//! proxy spent about a third more CPU per request, most of it in thread
//! wake-ups and context switches (see `bench/proxy.sh`). Health checks,
//! drains and the accept loop run on the runtime that started the listener.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::{Future, poll_fn};
use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use arc_swap::ArcSwap;
use http::HeaderValue;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Handle;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::access_log::AccessLogSink;
use crate::body::ResponseBody;
use crate::connections::{Admitted, ClientConnections, Registration, RequestGuard};
use crate::error::ProxyError;
use crate::forward::Forwarder;
use crate::http2;
use crate::rule::{Action, RouteTable, Rule};
use crate::target_group::{TargetGroup, TargetStats};
use crate::tls::{Certificate, Certificates};
use tokio_rustls::TlsAcceptor;

/// Settings of a listener that are not rules.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListenerConfig {
    /// How long a target may take to send response headers (connect
    /// included) before the client gets a 504. ALB's idle timeout default.
    pub upstream_timeout: Duration,
    /// How long `shutdown` lets in-flight requests finish before it closes
    /// their connections.
    pub shutdown_timeout: Duration,
    /// Worker threads serving connections. Defaults to the number of CPUs.
    pub workers: NonZeroUsize,
    /// How long a new connection may take to send its first request head
    /// before it is closed. Default 10 s.
    pub header_read_timeout: Duration,
    /// How long a connection may go without starting a request once it has
    /// sent one (idle keep-alive, or the next head trickling in) before it
    /// is closed: between one and two times this. Default 60 s, ALB's.
    pub idle_timeout: Duration,
    /// Client connections open at once. At the limit the oldest connection
    /// that has not sent a request head, else the oldest idle one, is
    /// closed to make room; a new connection is refused only when every
    /// open one has a request in flight. The process also caps all its
    /// listeners together by its open-file limit. Default 10,000.
    pub max_connections: usize,
    /// On an HTTP listener, also serve HTTP/2 to clients that start with
    /// its connection preface (h2c with prior knowledge, as gRPC clients
    /// do without TLS); HTTP/1.1 clients are served as before. Ignored on
    /// HTTPS, where ALPN decides. Default off.
    pub h2c: bool,
    /// The longest HTTP/1.1 request head (request line and headers) a
    /// client may send; a longer one is answered 431. At least 8 KiB.
    /// Default 64 KiB (HTTP/2's header list is held to 64 KiB too).
    pub max_header_size: usize,
    /// The largest request body the listener forwards: a longer
    /// `Content-Length` is answered 413 at once, and a chunked body that
    /// grows past it is cut there (413 when no answer began). `None` (the
    /// default, as ALB): no limit.
    pub max_body_size: Option<u64>,
}

impl Default for ListenerConfig {
    fn default() -> Self {
        Self {
            upstream_timeout: Duration::from_secs(60),
            shutdown_timeout: Duration::from_secs(30),
            workers: std::thread::available_parallelism().unwrap_or(NonZeroUsize::MIN),
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_connections: 10_000,
            h2c: false,
            max_header_size: 64 * 1024,
            max_body_size: None,
        }
    }
}

/// A listener's counters and its targets, for metrics.
#[derive(Clone, Debug, PartialEq)]
pub struct ListenerStats {
    /// Client connections open now.
    pub open_connections: usize,
    /// The current rules, by priority, with the requests each matched
    /// since it was first set.
    pub rules: Vec<RuleStats>,
    /// Requests no rule matched (answered 404 by the default action).
    pub unmatched_requests: u64,
    /// Every target group by name, with its targets.
    pub target_groups: Vec<(String, Vec<TargetStats>)>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleStats {
    pub rule: Rule,
    pub requests: u64,
}

/// One environment's load balancer: a listener, its rules, and the target
/// groups they forward to. Dropping it without `shutdown` closes every
/// connection at once.
pub struct LoadBalancer {
    local_addr: SocketAddr,
    routes: Arc<ArcSwap<RouteTable>>,
    /// Shared with its siblings (see [`LoadBalancer::start_sibling`]).
    groups: Arc<Mutex<HashMap<String, TargetGroup>>>,
    /// Whether its target groups are its own (else a sibling's, whose
    /// health checks it must not stop).
    owns_groups: bool,
    /// The current rules with their request counters, by priority.
    rules: Mutex<Vec<(Rule, Arc<AtomicU64>)>>,
    /// The action for requests no rule matches; `None` is the fixed 404.
    default_action: Mutex<Option<Action>>,
    /// Where access records go (see [`LoadBalancer::set_access_log`]).
    access_log: Mutex<Option<Arc<dyn AccessLogSink>>>,
    /// An HTTPS listener's certificates, replaceable while it serves.
    certificates: Option<Arc<Certificates>>,
    unmatched: Arc<AtomicU64>,
    connections: Arc<ClientConnections>,
    runtime: Handle,
    /// Graceful phase: stop accepting, end tunnels.
    closing: CancellationToken,
    /// Graceful phase, as client connections see it: finish the request in
    /// flight, then close.
    draining: Arc<Draining>,
    /// Health checkers of every group of this listener.
    checks: CancellationToken,
    /// Hard stop: drop every connection.
    stop: CancellationToken,
    /// Every connection and tunnel, on whichever worker.
    tasks: TaskTracker,
    /// Yields `None` once every worker thread has finished.
    workers_done: mpsc::Receiver<()>,
    shutdown_timeout: Duration,
}

type Accepted = (std::net::TcpStream, SocketAddr, Registration);

impl LoadBalancer {
    /// Binds `listen` and serves until `shutdown`, with the default
    /// [`ListenerConfig`]. Must be called within a Tokio runtime, which then
    /// runs the accept loop, health checks and drains.
    pub async fn start(listen: SocketAddr, rules: Vec<Rule>) -> Result<Self, ProxyError> {
        Self::start_with(listen, rules, ListenerConfig::default()).await
    }

    pub async fn start_with(
        listen: SocketAddr,
        rules: Vec<Rule>,
        config: ListenerConfig,
    ) -> Result<Self, ProxyError> {
        Self::start_inner(listen, rules, config, None).await
    }

    /// An HTTPS listener: TLS 1.2/1.3 with `certificates`, the first the
    /// default (`tls.rs` says how SNI picks one). Every certificate is
    /// checked before the socket is bound.
    pub async fn start_https(
        listen: SocketAddr,
        rules: Vec<Rule>,
        config: ListenerConfig,
        certificates: &[Certificate],
    ) -> Result<Self, ProxyError> {
        let certificates = Arc::new(Certificates::new(certificates)?);
        Self::start_inner(listen, rules, config, Some(certificates)).await
    }

    /// Replaces an HTTPS listener's certificates at once, without touching
    /// open connections; on an error (or on an HTTP listener) nothing
    /// changes.
    pub fn set_certificates(&self, certificates: &[Certificate]) -> Result<(), ProxyError> {
        match &self.certificates {
            Some(current) => current.replace(certificates),
            None => Err(ProxyError::Tls {
                certificate: String::new(),
                reason: format!(
                    "the listener on {} is not an https listener",
                    self.local_addr
                ),
            }),
        }
    }

    /// Whether this listener terminates TLS.
    pub fn is_https(&self) -> bool {
        self.certificates.is_some()
    }

    /// Another listener (another address, its own rules, protocol and
    /// certificates) that forwards to this one's target groups: a target
    /// registered, weighted, drained or health-checked once counts for
    /// both, as an ALB's target group does for all its listeners. Health
    /// checks belong to this listener: shut the sibling down first.
    pub async fn start_sibling(
        &self,
        listen: SocketAddr,
        rules: Vec<Rule>,
        config: ListenerConfig,
        certificates: Option<&[Certificate]>,
    ) -> Result<Self, ProxyError> {
        let certificates = match certificates {
            Some(certificates) => Some(Arc::new(Certificates::new(certificates)?)),
            None => None,
        };
        let shared = SharedGroups {
            groups: self.groups.clone(),
            runtime: self.runtime.clone(),
            checks: self.checks.clone(),
        };
        Self::start_shared(listen, rules, config, certificates, Some(shared)).await
    }

    async fn start_inner(
        listen: SocketAddr,
        rules: Vec<Rule>,
        config: ListenerConfig,
        certificates: Option<Arc<Certificates>>,
    ) -> Result<Self, ProxyError> {
        Self::start_shared(listen, rules, config, certificates, None).await
    }

    async fn start_shared(
        listen: SocketAddr,
        rules: Vec<Rule>,
        config: ListenerConfig,
        certificates: Option<Arc<Certificates>>,
        shared: Option<SharedGroups>,
    ) -> Result<Self, ProxyError> {
        let acceptor = match &certificates {
            Some(certificates) => Some(TlsAcceptor::from(certificates.server_config()?)),
            None => None,
        };
        let bind_error = |source| ProxyError::Bind {
            addr: listen,
            source,
        };
        let listener = TcpListener::bind(listen).await.map_err(bind_error)?;
        let local_addr = listener.local_addr().map_err(bind_error)?;
        let stop = CancellationToken::new();
        let closing = stop.child_token();
        let tasks = TaskTracker::new();
        let unmatched = Arc::new(AtomicU64::new(0));
        let routes = Arc::new(ArcSwap::from_pointee(RouteTable::empty(unmatched.clone())));
        let (done_tx, workers_done) = mpsc::channel(1);
        let draining = Arc::new(Draining::default());
        let mut workers = Vec::with_capacity(config.workers.get());
        for index in 0..config.workers.get() {
            let (tx, rx) = mpsc::unbounded_channel();
            let worker = Worker {
                routes: routes.clone(),
                tls: acceptor.clone(),
                local_port: local_addr.port(),
                upstream_timeout: config.upstream_timeout,
                timeouts: ClientTimeouts {
                    header_read: config.header_read_timeout,
                    idle: config.idle_timeout,
                    max_head: config.max_header_size.max(MIN_HEADER_SIZE),
                },
                max_body: config.max_body_size,
                // Built once per worker; a connection clones it.
                h2: http2::server_builder(tasks.clone()),
                h2c: config.h2c,
                incoming: rx,
                tasks: tasks.clone(),
                closing: closing.clone(),
                draining: draining.clone(),
                stop: stop.clone(),
                _done: done_tx.clone(),
            };
            if let Err(source) = worker.spawn(index) {
                // Workers already started end when their channel closes.
                stop.cancel();
                tasks.close();
                return Err(ProxyError::Worker { source });
            }
            workers.push(tx);
        }
        let connections = Arc::new(ClientConnections::new(config.max_connections));
        let owns_groups = shared.is_none();
        let (groups, runtime, checks) = match shared {
            Some(shared) => (shared.groups, shared.runtime, shared.checks),
            None => (Arc::default(), Handle::current(), stop.child_token()),
        };
        let lb = Self {
            local_addr,
            routes,
            groups,
            owns_groups,
            rules: Mutex::new(Vec::new()),
            default_action: Mutex::new(None),
            access_log: Mutex::new(None),
            certificates,
            unmatched,
            connections: connections.clone(),
            runtime,
            closing: closing.clone(),
            draining,
            checks,
            stop,
            tasks,
            workers_done,
            shutdown_timeout: config.shutdown_timeout,
        };
        lb.set_rules(rules);
        tokio::spawn(accept(listener, workers, connections, closing));
        tracing::info!(addr = %local_addr, workers = config.workers, "load balancer listening");
        Ok(lb)
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Replaces every rule at once, keeping the default action. Requests
    /// already routed keep their target; new ones see only the new rules.
    /// Target groups named by the rules are created if needed.
    pub fn set_rules(&self, rules: Vec<Rule>) {
        let default = self
            .default_action
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        self.set_routing(rules, default);
    }

    /// Replaces the rules and the default action (`None`: a fixed 404) in
    /// one atomic swap.
    pub fn set_routing(&self, mut rules: Vec<Rule>, default_action: Option<Action>) {
        rules.sort_by_key(|rule| rule.priority);
        let mut current = self.rules.lock().unwrap_or_else(PoisonError::into_inner);
        let mut default = self
            .default_action
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let counted: Vec<(Rule, Arc<AtomicU64>)> = rules
            .into_iter()
            .map(|rule| {
                // A rule that stays keeps counting where it was.
                let requests = current
                    .iter()
                    .find(|(old, _)| *old == rule)
                    .map_or_else(Arc::default, |(_, requests)| requests.clone());
                (rule, requests)
            })
            .collect();
        let table = RouteTable::new(
            counted.clone(),
            default_action.as_ref(),
            |name| self.target_group(name),
            self.unmatched.clone(),
        )
        .with_access_log(
            self.access_log
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
        );
        self.routes.store(Arc::new(table));
        *current = counted;
        *default = default_action;
    }

    /// Sends a record of every request from now on to `sink` (when its
    /// answer's body ends), or stops with `None`. Rules stay as they are.
    pub fn set_access_log(&self, sink: Option<Arc<dyn AccessLogSink>>) {
        *self
            .access_log
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = sink;
        let rules = self
            .rules
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(rule, _)| rule.clone())
            .collect();
        let default = self
            .default_action
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        self.set_routing(rules, default);
    }

    /// Request counters of the rules and targets, and open connections.
    pub fn stats(&self) -> ListenerStats {
        let rules = self
            .rules
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(rule, requests)| RuleStats {
                rule: rule.clone(),
                requests: requests.load(SeqCst),
            })
            .collect();
        let groups: Vec<TargetGroup> = self
            .groups
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .cloned()
            .collect();
        let mut target_groups: Vec<(String, Vec<TargetStats>)> = groups
            .iter()
            .map(|group| (group.name().to_owned(), group.stats()))
            .collect();
        target_groups.sort_by(|a, b| a.0.cmp(&b.0));
        ListenerStats {
            open_connections: self.connections.open(),
            rules,
            unmatched_requests: self.unmatched.load(SeqCst),
            target_groups,
        }
    }

    /// The target group called `name`, created empty on first use.
    pub fn target_group(&self, name: &str) -> TargetGroup {
        let mut groups = self.groups.lock().unwrap_or_else(PoisonError::into_inner);
        groups
            .entry(name.to_owned())
            .or_insert_with(|| TargetGroup::new(name, self.runtime.clone(), self.checks.clone()))
            .clone()
    }

    /// Stops accepting, lets in-flight requests finish (up to the shutdown
    /// timeout), closes keep-alive and upgraded connections, stops health
    /// checks, and returns once the worker threads have exited.
    pub async fn shutdown(mut self) {
        self.closing.cancel();
        self.draining.start();
        if self.owns_groups {
            self.checks.cancel();
        }
        self.tasks.close();
        if tokio::time::timeout(self.shutdown_timeout, self.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                addr = %self.local_addr, timeout = ?self.shutdown_timeout,
                "requests still in flight at the shutdown timeout; closing their connections"
            );
            self.stop.cancel();
            self.tasks.wait().await;
        }
        while self.workers_done.recv().await.is_some() {}
        tracing::info!(addr = %self.local_addr, "load balancer stopped");
    }
}

/// A listener's target groups as its siblings share them: the map, and
/// where their health checks run and are stopped.
struct SharedGroups {
    groups: Arc<Mutex<HashMap<String, TargetGroup>>>,
    runtime: Handle,
    checks: CancellationToken,
}

impl Drop for LoadBalancer {
    fn drop(&mut self) {
        // Without a graceful shutdown, end everything now; worker threads
        // then exit on their own.
        self.draining.start();
        self.stop.cancel();
        self.tasks.close();
    }
}

/// Round-robins accepted connections over the workers until the listener
/// starts closing; dropping the senders then tells the workers to finish.
/// Nothing here waits on a connection: a connection beyond the limits
/// either displaces an older one or is closed at once.
async fn accept(
    listener: TcpListener,
    workers: Vec<mpsc::UnboundedSender<Accepted>>,
    connections: Arc<ClientConnections>,
    closing: CancellationToken,
) {
    let mut next = 0;
    // Warnings at most every 10 s, so a flood does not flood the log too.
    let mut last_warning: Option<tokio::time::Instant> = None;
    let mut evicted = 0u64;
    let mut refused = 0u64;
    loop {
        let accepted = tokio::select! {
            () = closing.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of file descriptors and the like: errors that persist
                // for a while, so pause instead of spinning on them.
                tracing::warn!(%error, "accepting a connection failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let registration = match connections.admit() {
            Some((registration, Admitted::Freely)) => registration,
            Some((registration, Admitted::ByEviction)) => {
                evicted += 1;
                registration
            }
            None => {
                refused += 1;
                drop(stream);
                continue;
            }
        };
        if evicted + refused > 0
            && last_warning.is_none_or(|at| at.elapsed() >= Duration::from_secs(10))
        {
            tracing::warn!(
                evicted,
                refused,
                "connection limit reached: closed idle or slow-header connections to make room, refused new ones when all were busy"
            );
            last_warning = Some(tokio::time::Instant::now());
            (evicted, refused) = (0, 0);
        }
        // Responses go out in few writes; Nagle would delay the last one.
        let _ = stream.set_nodelay(true);
        // Moved to the worker's reactor: deregistered here, registered there.
        match stream.into_std() {
            Ok(stream) => {
                if let Some(worker) = workers.get(next % workers.len()) {
                    // A worker only goes away at shutdown.
                    let _ = worker.send((stream, peer, registration));
                }
                next = next.wrapping_add(1);
            }
            Err(error) => tracing::warn!(%peer, %error, "handing a connection to a worker failed"),
        }
    }
}

struct Worker {
    routes: Arc<ArcSwap<RouteTable>>,
    /// Set on an HTTPS listener.
    tls: Option<TlsAcceptor>,
    local_port: u16,
    upstream_timeout: Duration,
    timeouts: ClientTimeouts,
    max_body: Option<u64>,
    /// The HTTP/2 server settings of this worker's connections.
    h2: hyper::server::conn::http2::Builder<http2::Tracked>,
    /// Whether a plain connection may speak HTTP/2 with prior knowledge.
    h2c: bool,
    incoming: mpsc::UnboundedReceiver<Accepted>,
    tasks: TaskTracker,
    closing: CancellationToken,
    draining: Arc<Draining>,
    stop: CancellationToken,
    /// Dropped when the thread ends, which is how `shutdown` knows.
    _done: mpsc::Sender<()>,
}

impl Worker {
    fn spawn(self, index: usize) -> std::io::Result<()> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        std::thread::Builder::new()
            .name(format!("gantry-lb-{index}"))
            .spawn(move || runtime.block_on(self.run()))?;
        Ok(())
    }

    async fn run(mut self) {
        let forwarder = Arc::new(Forwarder::new(
            self.routes.clone(),
            self.tls.is_some(),
            self.local_port,
            self.upstream_timeout,
            self.max_body,
            self.tasks.clone(),
            self.closing.clone(),
        ));
        while let Some((stream, peer, registration)) = self.incoming.recv().await {
            match TcpStream::from_std(stream) {
                Ok(stream) => {
                    let (timeouts, forwarder, draining, stop) = (
                        self.timeouts,
                        forwarder.clone(),
                        self.draining.watch(),
                        self.stop.clone(),
                    );
                    match &self.tls {
                        None if self.h2c => {
                            let h2 = self.h2.clone();
                            self.tasks.spawn(async move {
                                // Waiting for the preface counts as waiting
                                // for the first request head.
                                let sniffed = tokio::select! {
                                    () = stop.cancelled() => return,
                                    sniffed = tokio::time::timeout(
                                        timeouts.header_read,
                                        http2::sniff_preface(stream),
                                    ) => sniffed,
                                };
                                let (protocol, stream) = match sniffed {
                                    Ok(Ok((true, stream))) => (ClientProtocol::Http2(h2), stream),
                                    Ok(Ok((false, stream))) => (ClientProtocol::Http1, stream),
                                    Ok(Err(_)) | Err(_) => return,
                                };
                                serve(
                                    stream,
                                    peer,
                                    registration,
                                    timeouts,
                                    forwarder,
                                    draining,
                                    stop,
                                    protocol,
                                )
                                .await;
                            });
                        }
                        None => {
                            self.tasks.spawn(serve(
                                stream,
                                peer,
                                registration,
                                timeouts,
                                forwarder,
                                draining,
                                stop,
                                ClientProtocol::Http1,
                            ));
                        }
                        Some(acceptor) => {
                            let accept = acceptor.accept(stream);
                            let h2 = self.h2.clone();
                            self.tasks.spawn(async move {
                                // The handshake counts as the first request
                                // head's wait, so a stalled one is closed
                                // at the header-read timeout too.
                                let handshake = tokio::select! {
                                    () = stop.cancelled() => return,
                                    done = tokio::time::timeout(timeouts.header_read, accept) => done,
                                };
                                match handshake {
                                    Ok(Ok(stream)) => {
                                        let protocol =
                                            if stream.get_ref().1.alpn_protocol() == Some(b"h2") {
                                                ClientProtocol::Http2(h2)
                                            } else {
                                                ClientProtocol::Http1
                                            };
                                        serve(
                                            stream,
                                            peer,
                                            registration,
                                            timeouts,
                                            forwarder,
                                            draining,
                                            stop,
                                            protocol,
                                        )
                                        .await;
                                    }
                                    Ok(Err(error)) => {
                                        tracing::debug!(%peer, %error, "TLS handshake failed");
                                    }
                                    Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                                }
                            });
                        }
                    }
                }
                Err(error) => tracing::warn!(%peer, %error, "registering a connection failed"),
            }
        }
        // The runtime must outlive every connection it drives, so wait for
        // all of them (those of other workers end at the same time anyway).
        self.tasks.wait().await;
    }
}

#[derive(Clone, Copy)]
struct ClientTimeouts {
    header_read: Duration,
    idle: Duration,
    /// The longest HTTP/1.1 request head (its buffer): longer gets 431.
    max_head: usize,
}

/// hyper's smallest request-head buffer.
const MIN_HEADER_SIZE: usize = 8192;

/// Which protocol a client connection speaks: HTTP/1.1 unless TLS's ALPN
/// chose `h2`, or an h2c listener's client began with HTTP/2's preface.
enum ClientProtocol {
    Http1,
    Http2(hyper::server::conn::http2::Builder<http2::Tracked>),
}

/// Serves one client connection until it ends, times out, is evicted or
/// the listener stops.
#[allow(clippy::too_many_arguments)] // One call site per protocol, all named.
async fn serve<S>(
    stream: S,
    peer: SocketAddr,
    registration: Registration,
    timeouts: ClientTimeouts,
    forwarder: Arc<Forwarder>,
    draining: DrainingWatch,
    stop: CancellationToken,
    protocol: ClientProtocol,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    // Formatted once per connection rather than once per request.
    let client_ip = HeaderValue::try_from(peer.ip().to_canonical().to_string())
        .unwrap_or_else(|_| HeaderValue::from_static("unknown"));
    let state = registration.connection.clone();
    let service = service_fn({
        let state = state.clone();
        move |request| {
            let guard = state.begin_request();
            let response = forwarder
                .clone()
                .handle(client_ip.clone(), peer.ip(), request);
            async move {
                let response = response.await?;
                Ok::<_, Infallible>(response.map(|body| Counted {
                    body,
                    _request: guard,
                }))
            }
        }
    });
    let io = TokioIo::new(stream);
    let result = match protocol {
        ClientProtocol::Http1 => {
            let connection = http1::Builder::new()
                .max_buf_size(timeouts.max_head)
                .serve_connection(io, service)
                .with_upgrades();
            drive(
                pin!(connection),
                |c| c.graceful_shutdown(),
                &registration,
                timeouts,
                draining,
                stop,
            )
            .await
        }
        ClientProtocol::Http2(builder) => {
            let connection = builder.serve_connection(io, service);
            drive(
                pin!(connection),
                |c| c.graceful_shutdown(),
                &registration,
                timeouts,
                draining,
                stop,
            )
            .await
        }
    };
    if let Err(error) = result {
        tracing::debug!(%peer, %error, "client connection ended with an error");
    }
    drop(registration);
}

/// Drives a client connection of either protocol under the listener's
/// timeouts, eviction and shutdown.
///
/// One timer per connection, pushed on when it fires, watches both
/// timeouts: hyper's own header-read timeout does the same with a fresh
/// timer per request, which costs more (see `upstream.rs`). A connection
/// with nothing in flight is dropped outright when it times out or is
/// evicted: hyper's graceful shutdown would wait for a head that is still
/// trickling in. On HTTP/2 a "request" is a stream, so an HTTP/2
/// connection that opens no stream within a period, with none open, is
/// closed the same way; a graceful close there sends GOAWAY.
async fn drive<C>(
    mut connection: std::pin::Pin<&mut C>,
    graceful_shutdown: impl Fn(std::pin::Pin<&mut C>),
    registration: &Registration,
    timeouts: ClientTimeouts,
    mut draining: DrainingWatch,
    stop: CancellationToken,
) -> Result<(), hyper::Error>
where
    C: Future<Output = Result<(), hyper::Error>>,
{
    let state = &registration.connection;
    let mut stopped = pin!(stop.cancelled());
    let mut timer = pin!(tokio::time::sleep(timeouts.header_read));
    let mut requests_seen = 0;
    let mut graceful = false;
    let mut eviction_registered = false;
    // One future rather than a `select!`, so the shutdown signals cost an
    // atomic load per wake-up instead of a poll of each: the hard stop is
    // only watched once the graceful phase has begun.
    poll_fn(|cx| {
        if !graceful && timer.as_mut().poll(cx).is_ready() {
            let started = state.requests();
            if started == requests_seen && state.in_flight() == 0 {
                // No request head completed in a whole period.
                return Poll::Ready(Ok(()));
            }
            requests_seen = started;
            timer
                .as_mut()
                .reset(tokio::time::Instant::now() + timeouts.idle);
            // Registers the reset timer with this task.
            let _ = timer.as_mut().poll(cx);
        }
        if !graceful
            && (draining.poll_started(cx) || state.poll_evicted(cx, &mut eviction_registered))
        {
            if state.in_flight() == 0 {
                return Poll::Ready(Ok(()));
            }
            // Closes after the response in flight.
            graceful_shutdown(connection.as_mut());
            graceful = true;
        }
        if graceful && stopped.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Ok(()));
        }
        connection.as_mut().poll(cx)
    })
    .await
}

/// A response body that keeps its request counted as in flight on its
/// connection until the body is done.
struct Counted {
    body: ResponseBody,
    _request: RequestGuard,
}

impl http_body::Body for Counted {
    type Data = bytes::Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        std::pin::Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

/// The start of a graceful shutdown, as client connections see it.
/// Checking it is one atomic load per wake-up of a connection; polling a
/// `CancellationToken` there took a lock every time, which showed in
/// profiles at tens of thousands of requests per second.
#[derive(Default)]
struct Draining {
    started: AtomicBool,
    /// Connections to wake when it starts, by id.
    waiting: Mutex<HashMap<u64, Waker>>,
    next_id: AtomicU64,
}

impl Draining {
    fn start(&self) {
        self.started.store(true, SeqCst);
        let waiting: Vec<Waker> = self
            .waiting
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .drain()
            .map(|(_, waker)| waker)
            .collect();
        for waker in waiting {
            waker.wake();
        }
    }

    fn watch(self: &Arc<Self>) -> DrainingWatch {
        DrainingWatch {
            draining: self.clone(),
            id: self.next_id.fetch_add(1, SeqCst),
            registered: false,
        }
    }
}

struct DrainingWatch {
    draining: Arc<Draining>,
    id: u64,
    registered: bool,
}

impl DrainingWatch {
    /// True once draining has started. The first call registers the task
    /// to be woken then; a task's waker does not change, so once is enough.
    fn poll_started(&mut self, cx: &mut Context<'_>) -> bool {
        if !self.registered {
            self.registered = true;
            self.draining
                .waiting
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(self.id, cx.waker().clone());
        }
        // Read after registering, so a start between the two is not missed.
        self.draining.started.load(SeqCst)
    }
}

impl Drop for DrainingWatch {
    fn drop(&mut self) {
        if self.registered {
            self.draining
                .waiting
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(&self.id);
        }
    }
}
