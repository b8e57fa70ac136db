//! The control plane of gantry: it wires the engine, the store and the
//! action runners together and serves the HTTP API.
//!
//! - [`control::ControlPlane`]: the only owner of executions' state. Every
//!   change is an engine event, persisted before its commands run.
//! - [`actions`]: what each action type does; new types register a runner.
//! - [`api`]: the HTTP JSON API (`router(plane)`), testable without sockets.
//! - [`server_info`]: `server.json` and the data dir lock.
//! - [`view`]: the execution JSON contract.
//!
//! Invariant: only this crate speaks HTTP; only the CLI prints for people.

pub mod actions;
pub mod api;
mod api_deploy;
mod api_params;
pub mod clock;
pub mod control;
pub mod definition;
pub mod error;
pub mod listen;
pub mod logs;
pub mod orphans;
pub mod parameters;
mod resolve;
mod runtimes;
pub mod server_info;
pub mod view;

use std::net::SocketAddr;
use std::path::Path;

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
    _lock: DataDirLock,
}

impl RunningServer {
    /// Takes the data dir, opens the control plane (replaying and recovering),
    /// serves the API on `listen` and the embedded OCI registry on
    /// `registry_listen`, and publishes `server.json`.
    pub async fn start(
        data_dir: &Path,
        listen: SocketAddr,
        registry_listen: SocketAddr,
    ) -> Result<RunningServer, ControlError> {
        let mut lock = DataDirLock::acquire(data_dir)?;
        let plane = ControlPlane::open(data_dir).await?;
        let bind = |addr: SocketAddr| async move {
            tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|e| ControlError::Internal(format!("cannot listen on {addr}: {e}")))
        };
        let api_listener = bind(listen).await?;
        let registry_listener = bind(registry_listen).await?;
        let api_addr = api_listener
            .local_addr()
            .map_err(|e| ControlError::Internal(e.to_string()))?;
        let registry_addr = registry_listener
            .local_addr()
            .map_err(|e| ControlError::Internal(e.to_string()))?;
        let registry = gantry_registry::Registry::open(
            plane.store(),
            plane.artifacts().clone(),
            plane.data_dir(),
        )
        .await
        .map_err(|e| ControlError::Internal(format!("embedded registry: {e}")))?;
        plane.set_registry(registry_addr.to_string());
        let api = format!("http://{api_addr}");
        lock.publish(&ServerInfo {
            pid: std::process::id(),
            api: api.clone(),
            registry: Some(registry_addr.to_string()),
        })?;
        let shutdown = CancellationToken::new();
        let mut tasks = Vec::new();
        for (listener, app, what) in [
            (api_listener, api::router(plane.clone()), "API"),
            (
                registry_listener,
                gantry_registry::router(registry),
                "registry",
            ),
        ] {
            let token = shutdown.clone();
            tasks.push(tokio::spawn(async move {
                let serve = axum::serve(listener, app)
                    .with_graceful_shutdown(async move { token.cancelled().await });
                if let Err(error) = serve.await {
                    tracing::error!(%error, what, "A server stopped.");
                }
            }));
        }
        Ok(RunningServer {
            plane,
            api,
            registry: registry_addr.to_string(),
            shutdown,
            tasks,
            _lock: lock,
        })
    }

    /// Stops serving and cancels running actions. Replicas keep running:
    /// the next server re-adopts them.
    pub async fn shutdown(self) {
        self.plane.cancel_all().await;
        self.plane.deployer().shutdown().await;
        self.shutdown.cancel();
        for task in self.tasks {
            let _ = task.await;
        }
    }
}
