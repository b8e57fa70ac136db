//! `gantry approve` and `gantry reject`: shows what a waiting approval is
//! bound to, then records the decision under the token's identity, naming
//! that binding's fingerprint so the decision cannot apply to anything else.
//! The decision goes to a server that outlives the command (one in the
//! background when none runs), so the execution goes on after it returns.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Result, bail};
use gantry_api::{ApprovalView, DecideRequest, DecisionAnswer};

use crate::args::Decision;
use crate::client::{ApiError, Connection};
use crate::hints;
use crate::render;
use crate::run::{data_dir_hint, follow};

pub(crate) async fn decide(data_dir: &Path, d: Decision, approve: bool) -> Result<ExitCode> {
    let Some((stage, action)) = d.target.split_once('/') else {
        bail!("{:?} is not STAGE/ACTION", d.target);
    };
    if d.by.is_some() {
        eprintln!("note: --by is ignored; the decision is recorded under your token's identity");
    }
    let conn = Connection::open_lasting(data_dir).await?;
    // What the approval waits for, shown before deciding; the decision names
    // its fingerprint so that it cannot apply to anything else.
    let shown = conn
        .client
        .get::<ApprovalView>(&format!(
            "/api/v1/executions/{}/approvals/{stage}/{action}",
            d.id
        ))
        .await;
    let fingerprint = match &shown {
        Ok(view) if view.status.as_deref() == Some("Waiting") => {
            for line in render::binding(view) {
                eprintln!("{line}");
            }
            Some(view.fingerprint.clone())
        }
        _ => None,
    };
    let request = DecideRequest {
        stage: stage.to_string(),
        action: action.to_string(),
        decision: if approve { "Approved" } else { "Rejected" }.to_string(),
        comment: d.comment,
        by: None,
        fingerprint,
    };
    let result: Result<DecisionAnswer> = conn
        .client
        .post(&format!("/api/v1/executions/{}/approvals", d.id), &request)
        .await;
    let code = match result {
        Ok(answer) => {
            let outcome = &answer.outcome;
            let pending = outcome.status == "Pending";
            println!(
                "{} {}/{} of {} as {}{}",
                if approve { "approved" } else { "rejected" },
                stage,
                action,
                d.id,
                answer.by,
                if pending {
                    format!(
                        " ({} of {} approvals; waiting for more)",
                        outcome.approvals, outcome.required
                    )
                } else {
                    String::new()
                }
            );
            if conn.embedded.is_some() {
                // This process is the server: it must run what follows.
                follow(&conn, &d.id, false).await.map(|_| ExitCode::SUCCESS)
            } else {
                if !pending {
                    eprintln!(
                        "{} goes on in {}; follow it with: {} watch {}",
                        d.id,
                        conn.server_name(),
                        crate::paste::gantry_with(&data_dir_hint(&conn.data_dir)),
                        d.id
                    );
                }
                Ok(ExitCode::SUCCESS)
            }
        }
        Err(error) => {
            if let Some(api) = error.downcast_ref::<ApiError>()
                && matches!(
                    api.body.canonical(),
                    "approval.not_waiting" | "approval.superseded"
                )
            {
                eprintln!("error: {}", api.body.message);
                Ok(ExitCode::FAILURE)
            } else {
                Err(hints::in_execution(&conn, &d.id, stage, Some(action), error).await)
            }
        }
    };
    conn.close().await;
    code
}
