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
mod api_params;
pub mod clock;
pub mod control;
pub mod definition;
pub mod error;
pub mod logs;
pub mod orphans;
pub mod parameters;
mod resolve;
pub mod server_info;
pub mod view;

use std::net::SocketAddr;
use std::path::Path;

pub use control::ControlPlane;
pub use error::ControlError;
use server_info::{DataDirLock, ServerInfo};
use tokio_util::sync::CancellationToken;

/// A server running in this process: its control plane and API address.
/// Dropping it (after `shutdown`) releases the data dir.
pub struct RunningServer {
    pub plane: ControlPlane,
    pub api: String,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<()>,
    _lock: DataDirLock,
}

impl RunningServer {
    /// Takes the data dir, opens the control plane (replaying and recovering),
    /// serves the API on `listen`, and publishes `server.json`.
    pub async fn start(data_dir: &Path, listen: SocketAddr) -> Result<RunningServer, ControlError> {
        let mut lock = DataDirLock::acquire(data_dir)?;
        let plane = ControlPlane::open(data_dir).await?;
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .map_err(|e| ControlError::Internal(format!("cannot listen on {listen}: {e}")))?;
        let addr = listener
            .local_addr()
            .map_err(|e| ControlError::Internal(e.to_string()))?;
        let api = format!("http://{addr}");
        lock.publish(&ServerInfo {
            pid: std::process::id(),
            api: api.clone(),
            registry: None,
        })?;
        let shutdown = CancellationToken::new();
        let app = api::router(plane.clone());
        let token = shutdown.clone();
        let task = tokio::spawn(async move {
            let serve = axum::serve(listener, app)
                .with_graceful_shutdown(async move { token.cancelled().await });
            if let Err(error) = serve.await {
                tracing::error!(%error, "The API server stopped.");
            }
        });
        Ok(RunningServer {
            plane,
            api,
            shutdown,
            task,
            _lock: lock,
        })
    }

    /// Stops serving and cancels running actions.
    pub async fn shutdown(self) {
        self.plane.cancel_all().await;
        self.shutdown.cancel();
        let _ = self.task.await;
    }
}
