//! The control plane of gantry: it wires the engine, the store and the
//! action runners together and serves the HTTP API.
//!
//! - [`control::ControlPlane`]: the only owner of executions' state. Every
//!   change is an engine event, persisted before its commands run.
//! - [`actions`]: what each action type does; new types register a runner.
//! - [`api`]: the HTTP JSON API (`router(plane, hosts)`), testable without
//!   sockets, behind [`guard`]: host and origin checks, tokens, roles, audit.
//! - [`mirror`]: one bare mirror per git repository URL, fetched with
//!   credentials from the parameter store; what source actions and
//!   triggers read.
//! - [`server_info`]: `server.json` and the data dir lock.
//! - [`view`]: the execution JSON contract.
//! - [`notify`]: notifications of executions, approvals and deployments
//!   (webhook, Slack, command), delivered in the background.
//!
//! Invariant: only this crate speaks HTTP; only the CLI prints for people.

pub mod actions;
pub mod agents;
pub mod api;
mod api_agents;
mod api_auth;
mod api_deploy;
mod api_env_logs;
mod api_images;
mod api_metrics;
mod api_params;
mod api_pipelines;
mod api_registry;
mod api_triggers;
pub mod clock;
pub mod console;
pub mod control;
pub mod definition;
pub mod error;
pub mod guard;
pub mod leader;
pub mod listen;
pub mod logs;
mod metrics;
pub mod migrate;
pub mod mirror;
pub mod notify;
pub mod orphans;
pub mod parameters;
pub mod registry_gc;
mod registry_port;
mod resolve;
mod runtimes;
pub mod server_info;
mod standby;
pub mod triggers;
pub mod view;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, OnceLock};

pub use control::ControlPlane;
pub use error::ControlError;
use server_info::{DataDirLock, ServerInfo};
use tokio_util::sync::CancellationToken;

/// A server running in this process: its control plane, API address and
/// embedded registry. Dropping it (after `shutdown`) releases the data dir.
pub struct RunningServer {
    pub plane: ControlPlane,
    pub api: String,
    /// The embedded registry's `host:port`.
    pub registry: String,
    shutdown: CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    leadership: Option<leader::Leadership>,
    _lock: DataDirLock,
}

/// How a server listens and whom it answers.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// The API's address (default 127.0.0.1:7700).
    pub listen: SocketAddr,
    /// The embedded registry's address (default 127.0.0.1:7701).
    pub registry_listen: SocketAddr,
    /// URLs the server is reached by besides its own addresses
    /// (`https://gantry.example.com`): their hosts are accepted in `Host`,
    /// their origins in `Origin`.
    pub public_urls: Vec<String>,
    /// A certificate chain and private key (PEM) to serve TLS with.
    pub tls: Option<(std::path::PathBuf, std::path::PathBuf)>,
    /// Serve plain HTTP on a non-loopback address anyway (a warning).
    pub insecure_http: bool,
    /// The database (`postgres://…`); `None` keeps it in the data dir
    /// (SQLite). With a database, the server leads or stands by
    /// ([`leader`]).
    pub database: Option<String>,
    /// Where blobs and artifacts are kept (`None`: the data dir's
    /// `artifacts/`); the servers of one database share one.
    pub blob_dir: Option<std::path::PathBuf>,
    /// How long the leader's lease lasts unrenewed (a standby takes over
    /// this long after the leader stops).
    pub lease: std::time::Duration,
    /// How long a build agent running a job may be silent before the job
    /// fails as interrupted.
    pub agent_timeout: std::time::Duration,
    /// With a database: the URL the other servers reach this one's API at
    /// (`None`: its listen address, an unspecified IP as the host name).
    pub advertise_url: Option<String>,
}

/// The leader's lease by default: failover within about this long.
pub const DEFAULT_LEASE: std::time::Duration = std::time::Duration::from_secs(3);

impl ServerOptions {
    /// Loopback listeners on the given addresses, no TLS.
    pub fn local(listen: SocketAddr, registry_listen: SocketAddr) -> ServerOptions {
        ServerOptions {
            listen,
            registry_listen,
            public_urls: Vec::new(),
            tls: None,
            insecure_http: false,
            database: None,
            blob_dir: None,
            lease: DEFAULT_LEASE,
            agent_timeout: agents::DEFAULT_LOST_AFTER,
            advertise_url: None,
        }
    }
}

/// The file, in the data dir, holding a token of the `admin` user (0600).
/// The CLI on this machine reads it, so one person needs no setup.
pub const ADMIN_TOKEN_FILE: &str = "admin.token";
/// The docker config dir the server writes for its Docker runtime: it
/// holds the server's own credentials for the embedded registry.
pub const DOCKER_CONFIG_DIR: &str = "docker-config";
pub use gantry_build::{REGISTRY_USER, docker_config_json};
/// How long a stopping server waits for pending notification deliveries.
const NOTIFY_DRAIN: std::time::Duration = std::time::Duration::from_secs(5);

impl RunningServer {
    /// Takes the data dir, opens the control plane (replaying and recovering),
    /// serves the API on `listen` and the embedded OCI registry on
    /// `registry_listen`, and publishes `server.json`.
    pub async fn start(
        data_dir: &Path,
        listen: SocketAddr,
        registry_listen: SocketAddr,
    ) -> Result<RunningServer, ControlError> {
        Self::start_with(data_dir, ServerOptions::local(listen, registry_listen)).await
    }

    /// [`RunningServer::start`] with every option.
    pub async fn start_with(
        data_dir: &Path,
        options: ServerOptions,
    ) -> Result<RunningServer, ControlError> {
        let tls = match &options.tls {
            Some((cert, key)) => Some(listen::load_tls(cert, key).map_err(ControlError::Options)?),
            None => None,
        };
        for addr in [options.listen, options.registry_listen] {
            if !addr.ip().is_loopback() && tls.is_none() {
                if !options.insecure_http {
                    return Err(ControlError::Options(format!(
                        "{addr} is not a loopback address: serve it with --tls-cert and --tls-key, \
                         or accept plain HTTP with --insecure-http"
                    )));
                }
                tracing::warn!(%addr, "Serving plain HTTP on a non-loopback address (--insecure-http): tokens cross the network in the clear.");
            }
        }
        let hosts = guard::HostPolicy::with_public_urls(&options.public_urls)
            .map_err(ControlError::Options)?;
        if let Some(url) = &options.advertise_url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            return Err(ControlError::Options(format!(
                "--advertise-url {url}: an http:// or https:// URL"
            )));
        }
        let mut lock = DataDirLock::acquire(data_dir)?;
        // With a shared database, connect first: the lease is taken once
        // the listeners are bound (they forward to the leader meanwhile).
        let store = match &options.database {
            Some(url) => {
                let db = gantry_db::Db::connect(url)
                    .await
                    .map_err(gantry_store::StoreError::from)?;
                Some(gantry_store::Store::connect(db).await?)
            }
            None => None,
        };
        let bind = |addr: SocketAddr, flag: &'static str| async move {
            tokio::net::TcpListener::bind(addr).await.map_err(|e| {
                if e.kind() == std::io::ErrorKind::AddrInUse {
                    ControlError::PortInUse {
                        addr: addr.to_string(),
                        ip: match addr {
                            SocketAddr::V4(v4) => v4.ip().to_string(),
                            SocketAddr::V6(v6) => format!("[{}]", v6.ip()),
                        },
                        port: addr.port(),
                        flag,
                    }
                } else {
                    ControlError::Options(format!("cannot listen on {addr}: {e}"))
                }
            })
        };
        let api_listener = bind(options.listen, "--listen").await?;
        let registry_listener = registry_port::listen(data_dir, options.registry_listen, |addr| {
            bind(addr, "--registry-listen")
        })
        .await?;
        let api_addr = api_listener
            .local_addr()
            .map_err(|e| ControlError::Internal(e.to_string()))?;
        let registry_addr = registry_listener
            .local_addr()
            .map_err(|e| ControlError::Internal(e.to_string()))?;
        let scheme = if tls.is_some() { "https" } else { "http" };
        let shutdown = CancellationToken::new();
        let serve_options = listen::ServeOptions {
            tls,
            ..listen::ServeOptions::default()
        };
        let mut tasks = Vec::new();
        // A standby's listeners forward to the leader until this server
        // leads; then they serve its own routers (`standby_slots`).
        let mut standby_slots = None;
        let mut leadership = None;
        let mut listeners = Some((api_listener, registry_listener));
        if let Some(store) = &store
            && let Some((api_listener, registry_listener)) = listeners.take()
        {
            let ca = match &options.tls {
                Some((cert, _)) => {
                    Some(std::fs::read(cert).map_err(|e| ControlError::io(cert, e))?)
                }
                None => None,
            };
            let slots = (Arc::new(OnceLock::new()), Arc::new(OnceLock::new()));
            for (listener, slot, kind, what) in [
                (api_listener, slots.0.clone(), standby::Listener::Api, "API"),
                (
                    registry_listener,
                    slots.1.clone(),
                    standby::Listener::Registry,
                    "registry",
                ),
            ] {
                let forward = standby::Forward::new(
                    store.clone(),
                    kind,
                    Arc::new(hosts.clone()),
                    ca.as_deref(),
                )?;
                let app = standby::dispatch(slot, Arc::new(forward));
                let (token, options) = (shutdown.clone(), serve_options.clone());
                tasks.push(tokio::spawn(async move {
                    if let Err(error) = listen::serve(listener, app, options, token).await {
                        tracing::error!(%error, what, "A server stopped.");
                    }
                }));
            }
            standby_slots = Some(slots);
            let advertised = standby::Advertised {
                // Not a public URL: that may be a load balancer in front of
                // every server, standbys included.
                api: options
                    .advertise_url
                    .as_deref()
                    .map(|u| u.trim_end_matches('/').to_string())
                    .unwrap_or_else(|| format!("{scheme}://{}", reachable(api_addr))),
                registry: reachable(registry_addr),
            };
            leadership = Some(leader::Leadership::take(store, options.lease, &advertised).await?);
        }
        let (api_listener, registry_listener) = listeners.unzip();
        // The server's own registry credentials exist before the control
        // plane opens, so that its Docker runtime finds them at once.
        let own = gantry_auth::Secret::generate()?;
        write_docker_config(data_dir, &registry_addr.to_string(), &own)?;
        let plane = ControlPlane::open_at(
            data_dir,
            store,
            options.blob_dir.as_deref(),
            actions::Runners::standard(),
        )
        .await?;
        plane.agents().set_lost_after(options.agent_timeout);
        if let Some(leadership) = &mut leadership {
            if leadership.is_lost() {
                // Another server took over while this one opened: it must
                // not serve (its environments' ports are the leader's).
                plane.deployer().shutdown().await;
                return Err(ControlError::Options(
                    "lost the leadership to another server while starting".into(),
                ));
            }
            leadership.keep(plane.clone());
        }
        plane.auth().register_ephemeral(
            &own,
            gantry_auth::Identity {
                name: "gantry-server".to_string(),
                email: None,
                grants: vec![gantry_auth::Grant::new(gantry_auth::Role::Operator)],
            },
            gantry_auth::Audience::Registry,
            i64::MAX / 2,
            gantry_clock::now_ms(),
        );
        plane.images().set_credentials(
            &registry_addr.to_string(),
            gantry_images::Credentials {
                username: REGISTRY_USER.to_string(),
                password: own.expose().to_string(),
            },
        );
        ensure_admin_token(&plane).await?;
        let registry = gantry_registry::Registry::open(
            plane.store(),
            plane.artifacts().clone(),
            plane.data_dir(),
            gantry_registry::RegistryOptions {
                auth: std::sync::Arc::new(guard::RegistryGuard {
                    auth: plane.auth().clone(),
                }),
                limits: gantry_registry::RegistryLimits::default(),
            },
        )
        .await
        .map_err(|e| ControlError::Internal(format!("embedded registry: {e}")))?;
        plane.set_registry(registry_addr.to_string());
        plane.set_embedded_registry(registry.clone());
        if let Some(url) = options.public_urls.first() {
            plane.notifier().set_public_url(url);
        }
        // Registered pipelines watch for their triggers again.
        let armed = plane.arm_triggers().await?;
        if armed > 0 {
            tracing::info!(
                pipelines = armed,
                "Armed the triggers of registered pipelines."
            );
        }
        let api = format!("{scheme}://{api_addr}");
        lock.publish(&ServerInfo {
            pid: std::process::id(),
            api: api.clone(),
            registry: Some(registry_addr.to_string()),
            tls_cert: options
                .tls
                .as_ref()
                .and_then(|(cert, _)| std::fs::canonicalize(cert).ok()),
        })?;
        let guard_state = guard::Guard {
            auth: plane.auth().clone(),
            hosts: std::sync::Arc::new(hosts.clone()),
        };
        let registry_app = gantry_registry::router(registry)
            .layer(axum::middleware::from_fn_with_state(
                plane.metrics().clone(),
                metrics::count_registry_bytes,
            ))
            .layer(axum::middleware::from_fn_with_state(
                guard_state,
                guard::check_registry_host,
            ));
        let api_app = api::router(
            plane.clone(),
            guard::HostPolicy {
                tls: serve_options.tls.is_some(),
                ..hosts
            },
        );
        match standby_slots {
            Some((api_slot, registry_slot)) => {
                let _ = api_slot.set(api_app);
                let _ = registry_slot.set(registry_app);
            }
            None => {
                for (listener, app, what) in [
                    (api_listener, api_app, "API"),
                    (registry_listener, registry_app, "registry"),
                ] {
                    let Some(listener) = listener else { continue };
                    let token = shutdown.clone();
                    let options = serve_options.clone();
                    tasks.push(tokio::spawn(async move {
                        if let Err(error) = listen::serve(listener, app, options, token).await {
                            tracing::error!(%error, what, "A server stopped.");
                        }
                    }));
                }
            }
        }
        Ok(RunningServer {
            plane,
            api,
            registry: registry_addr.to_string(),
            shutdown,
            tasks,
            leadership,
            _lock: lock,
        })
    }

    /// Stops serving and cancels running actions. Replicas keep running:
    /// the next server re-adopts them.
    pub async fn shutdown(self) {
        self.plane.disarm_triggers();
        self.plane.cancel_all().await;
        self.plane.deployer().shutdown().await;
        // An embedded server stops as soon as its run ends: give the run's
        // last notifications a moment to go out.
        self.plane.notifier().drain(NOTIFY_DRAIN).await;
        self.shutdown.cancel();
        for task in self.tasks {
            let _ = task.await;
        }
        if let Some(leadership) = self.leadership {
            leadership.release().await;
        }
    }
}

/// An address another host can reach this listener at: an unspecified IP
/// (`0.0.0.0`, `::`) becomes the host's name.
fn reachable(addr: SocketAddr) -> String {
    if addr.ip().is_unspecified() {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "localhost".to_string());
        format!("{host}:{}", addr.port())
    } else {
        addr.to_string()
    }
}

/// Makes sure `DATA_DIR/admin.token` holds a valid admin token, writing a
/// new one (mode 0600, owner only) when it is missing or no longer valid.
async fn ensure_admin_token(plane: &ControlPlane) -> Result<(), ControlError> {
    let path = plane.data_dir().join(ADMIN_TOKEN_FILE);
    let existing = std::fs::read_to_string(&path).ok();
    if let Some(secret) = plane
        .auth()
        .ensure_admin_token(existing.as_deref(), gantry_clock::now_ms())
        .await?
    {
        write_private(&path, secret.expose().as_bytes())?;
        tracing::info!(path = %path.display(), "Wrote a new admin token.");
    }
    Ok(())
}

/// Writes a file only its owner can read (0600), atomically (by rename).
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<(), ControlError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| ControlError::io(&tmp, e))?;
    // No fsync: these files are small and re-creatable (a lost admin
    // token is replaced at the next start), and an action writes one per
    // attempt, where a sync would cost milliseconds.
    file.write_all(bytes)
        .map_err(|e| ControlError::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| ControlError::io(path, e))
}

/// The docker config (`DATA_DIR/docker-config/config.json`, 0600) that
/// lets the Docker runtime pull from the embedded registry with the
/// server's own token.
fn write_docker_config(
    data_dir: &Path,
    registry: &str,
    secret: &gantry_auth::Secret,
) -> Result<(), ControlError> {
    use std::os::unix::fs::DirBuilderExt;
    let dir = data_dir.join(DOCKER_CONFIG_DIR);
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .map_err(|e| ControlError::io(&dir, e))?;
    write_private(
        &dir.join("config.json"),
        docker_config_json(registry, secret.expose()).as_bytes(),
    )
}
