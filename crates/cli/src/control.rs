//! `gantry retry` and `gantry stop`: requests that steer a running or
//! failed execution, sent to a server that outlives the command (one in the
//! background when none runs), so the execution goes on after it returns.
//! `retry` then follows the execution as `run` does and exits by its
//! result; `stop` says what it did.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Result;
use gantry_api::{Ack, ExecutionView, RetryRequest, StopRequest};

use crate::client::Connection;
use crate::hints;
use crate::run::{data_dir_hint, follow};

/// Retries a failed stage (its failed actions, or all of them), then, unless
/// `no_follow`, follows the execution to its end: exit 0 when it succeeds,
/// 1 when the retried stage or a later one fails.
pub(crate) async fn retry(
    data_dir: &Path,
    id: &str,
    stage: String,
    all_actions: bool,
    no_follow: bool,
) -> Result<ExitCode> {
    let conn = Connection::open_lasting(data_dir).await?;
    let body = RetryRequest {
        stage: stage.clone(),
        all_actions,
    };
    let result: Result<Ack> = conn
        .client
        .post(&format!("/api/v1/executions/{id}/retry"), &body)
        .await;
    let code = match result {
        // An embedded server lives only as long as this process: follow
        // whatever was asked, or the retried stage would be abandoned.
        Ok(_) if no_follow && conn.embedded.is_none() => {
            println!(
                "retrying stage {stage} of {id}; follow it with: {} watch {id}",
                crate::paste::gantry_with(&data_dir_hint(&conn.data_dir))
            );
            Ok(ExitCode::SUCCESS)
        }
        Ok(_) => {
            eprintln!("retrying stage {stage} of {id}");
            follow(&conn, id, false).await
        }
        Err(error) => Err(hints::in_execution(&conn, id, &stage, None, error).await),
    };
    conn.close().await;
    code
}

/// Stops an execution, waiting for its running actions or abandoning them,
/// and prints what that did.
pub(crate) async fn stop(
    data_dir: &Path,
    id: &str,
    abandon: bool,
    reason: Option<String>,
) -> Result<ExitCode> {
    let conn = Connection::open_lasting(data_dir).await?;
    let body = StopRequest { abandon, reason };
    let result: Result<Ack> = conn
        .client
        .post(&format!("/api/v1/executions/{id}/stop"), &body)
        .await;
    let result = match result {
        Ok(_) => conn.client.execution(id).await,
        Err(error) => Err(error),
    };
    let code = result.map(|execution| {
        for line in stopped(
            &execution,
            &crate::paste::gantry_with(&data_dir_hint(&conn.data_dir)),
        ) {
            println!("{line}");
        }
        ExitCode::SUCCESS
    });
    conn.close().await;
    code
}

/// What a stop did, for people: stopped, or stopping while actions finish;
/// the actions it abandoned; the reason. `hint` starts the suggested
/// command (`gantry --data-dir DIR`).
fn stopped(execution: &ExecutionView, hint: &str) -> Vec<String> {
    let id = &execution.id;
    let actions = |status: &str| -> Vec<String> {
        execution
            .stages
            .iter()
            .flat_map(|s| {
                s.actions
                    .iter()
                    .filter(|a| a.status.as_deref() == Some(status))
                    .map(move |a| format!("{}/{}", s.name, a.name))
            })
            .collect()
    };
    let mut lines = Vec::new();
    let running = actions("InProgress");
    if execution.is_finished() {
        lines.push(format!("stopped {id}"));
    } else if running.is_empty() {
        lines.push(format!("stopping {id} ({})", execution.status));
    } else {
        lines.push(format!(
            "stopping {id}: waiting for {} to finish (`{hint} stop --abandon {id}` abandons {})",
            running.join(", "),
            if running.len() == 1 { "it" } else { "them" }
        ));
    }
    let abandoned = actions("Abandoned");
    if !abandoned.is_empty() {
        lines.push(format!("  abandoned: {}", abandoned.join(", ")));
    }
    if let Some(reason) = &execution.stop_reason {
        lines.push(format!("  reason: {reason}"));
    }
    lines
}
