//! `gantry approve` and `gantry reject`: shows what a waiting approval is
//! bound to, then records the decision under the token's identity, naming
//! that binding's fingerprint so the decision cannot apply to anything else.
//! With an embedded server, follows the execution afterwards so it goes on.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Result, bail};
use gantry_api::{ApprovalView, DecideRequest, DecisionAnswer};

use crate::args::Decision;
use crate::client::{ApiError, Connection};
use crate::render;
use crate::run::follow;

pub(crate) async fn decide(data_dir: &Path, d: Decision, approve: bool) -> Result<ExitCode> {
    let Some((stage, action)) = d.target.split_once('/') else {
        bail!("{:?} is not STAGE/ACTION", d.target);
    };
    if d.by.is_some() {
        eprintln!("note: --by is ignored; the decision is recorded under your token's identity");
    }
    let conn = Connection::open(data_dir).await?;
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
        Ok(view) => {
            for line in render::binding(view) {
                eprintln!("{line}");
            }
            Some(view.fingerprint.clone())
        }
        Err(_) => None,
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
                follow(&conn, &d.id, false).await.map(|_| ExitCode::SUCCESS)
            } else {
                Ok(ExitCode::SUCCESS)
            }
        }
        Err(error) => {
            if let Some(ApiError(body)) = error.downcast_ref::<ApiError>()
                && matches!(
                    body.canonical(),
                    "approval.not_waiting" | "approval.superseded"
                )
            {
                eprintln!("error: {}", body.message);
                Ok(ExitCode::FAILURE)
            } else {
                Err(error)
            }
        }
    };
    conn.close().await;
    code
}
