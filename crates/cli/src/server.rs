//! `gantry server`: runs the control plane in the foreground until Ctrl-C,
//! SIGTERM, `gantry shutdown`, or (with the hidden `--idle-exit`, which a
//! background server started by `run`, `watch`, `approve`, `retry`, … gets)
//! a stretch of seconds with nothing running, nothing served and nobody
//! following an execution.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};

pub(crate) async fn serve(
    data_dir: &Path,
    options: gantry_server::ServerOptions,
    idle_exit: Option<u64>,
) -> Result<ExitCode> {
    let server = gantry_server::RunningServer::start_with(data_dir, options).await?;
    tracing::info!(api = %server.api, data_dir = %data_dir.display(), "gantry server is listening.");
    eprintln!(
        "gantry server: API {}, registry {} (data dir {})",
        server.api,
        server.registry,
        data_dir.display()
    );
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("signal handler")?;
    let plane = server.plane.clone();
    let idle = async move {
        let Some(limit) = idle_exit else {
            return std::future::pending().await;
        };
        let mut idle_for = 0;
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            // Someone following an execution (a `gantry run` waiting at an
            // approval) keeps the server, so the decision reaches it.
            idle_for = if plane.busy().await || plane.serving().await || plane.followers() > 0 {
                0
            } else {
                idle_for + 1
            };
            if idle_for >= limit {
                return;
            }
        }
    };
    let asked = server.plane.clone();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
        () = asked.shutdown_requested() => eprintln!("gantry server: shutdown requested"),
        () = idle => eprintln!("gantry server: idle for {}s", idle_exit.unwrap_or_default()),
    }
    eprintln!("gantry server: shutting down");
    server.shutdown().await;
    Ok(ExitCode::SUCCESS)
}
