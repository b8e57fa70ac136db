//! `gantry retry` and `gantry stop`: requests that steer a running or
//! failed execution. With an embedded server, the command follows the
//! execution afterwards, since the server lives only as long as this process.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Result;
use gantry_api::{Ack, RetryRequest, StopRequest};
use serde::Serialize;

use crate::client::Connection;
use crate::run::follow;

/// Retries a failed stage: its failed actions, or all of them.
pub(crate) async fn retry(
    data_dir: &Path,
    id: &str,
    stage: String,
    all_actions: bool,
) -> Result<ExitCode> {
    let body = RetryRequest { stage, all_actions };
    act_then_follow(
        data_dir,
        id,
        &format!("/api/v1/executions/{id}/retry"),
        &body,
    )
    .await
}

/// Stops an execution, waiting for its running actions or abandoning them.
pub(crate) async fn stop(
    data_dir: &Path,
    id: &str,
    abandon: bool,
    reason: Option<String>,
) -> Result<ExitCode> {
    let body = StopRequest { abandon, reason };
    act_then_follow(
        data_dir,
        id,
        &format!("/api/v1/executions/{id}/stop"),
        &body,
    )
    .await
}

/// Sends a request about an execution; with an embedded server, keeps it
/// running until the execution ends or waits for a person again.
async fn act_then_follow(
    data_dir: &Path,
    id: &str,
    path: &str,
    body: &impl Serialize,
) -> Result<ExitCode> {
    let conn = Connection::open(data_dir).await?;
    let result: Result<Ack> = conn.client.post(path, body).await;
    let code = match result {
        Ok(_) if conn.embedded.is_some() => {
            follow(&conn, id, false).await.map(|_| ExitCode::SUCCESS)
        }
        Ok(_) => Ok(ExitCode::SUCCESS),
        Err(error) => Err(error),
    };
    conn.close().await;
    code
}
